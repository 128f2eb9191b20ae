/*  kv_repl.c: the replication engine (protocol in kv_repl.h).
 *
 *  This file holds the engine's life cycle, its public entry points and
 *  the helpers its sides share; the primary side is in kv_repl_primary.c,
 *  the replica side in kv_repl_replica.c and the roles in kv_repl_role.c
 *  (kv_repl_int.h says who does what).
 */
#include "kv_repl_int.h"

#include "kv_clock.h"
#include "kv_poller.h"

/* The peer DEALERs only ever receive SNAPSHOT chunks, so they are polled
 * only while some replica waits for one: we also send on them (ACK,
 * SNAPSHOT_REQ), so the node's poller must ask each its ZMQ_EVENTS on every
 * wait (kv_poller.h), a system call per peer per wake-up that the request
 * path would pay for nothing. */
void kv_repl_want_peers(kv_repl_t *self, int want) {
    if (self->want_peers == want) return;
    self->want_peers = want;
    self->items_changed = 1;
}

/* --- shared helpers -------------------------------------------------------- */

uint64_t kv_repl_epoch(const kv_repl_t *self) {
    return self->table ? kv_table_epoch(self->table) : 0;
}

int kv_repl_usable(const kv_repl_t *self, uint16_t node) {
    if (!self->table) return 0;
    uint8_t state = kv_table_node_state(self->table, node); /* LEFT when out of range */
    return state != KV_NODE_DOWN && state != KV_NODE_LEFT;
}

void kv_repl_topic(uint32_t partition, uint8_t topic[4]) {
    topic[0] = (uint8_t)(partition >> 24);
    topic[1] = (uint8_t)(partition >> 16);
    topic[2] = (uint8_t)(partition >> 8);
    topic[3] = (uint8_t)partition;
}

void kv_repl_subscribe(kv_repl_t *self, uint32_t partition, int on) {
    uint8_t topic[4];
    kv_repl_topic(partition, topic);
    zmq_setsockopt(zsock_resolve(self->sub), on ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, topic, 4);
}

void kv_repl_report_changed(kv_repl_t *self) {
    self->reports_dirty = 1;
}

void kv_repl_reply(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id, kv_status_t status,
                   const char *value, size_t vlen, uint64_t version) {
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = (uint8_t)status};
    reply.value = (kv_bytes_t){value, vlen};
    reply.meta.version = version;
    kv_repl_send_reply(self, identity, &reply);
}

void kv_repl_send_reply(kv_repl_t *self, zmq_msg_t *identity, kv_msg_t *reply) {
    uint8_t buf[KV_MAX_VALUE_BYTES + 64];
    reply->epoch = kv_repl_epoch(self);
    size_t size = kv_msg_encode(reply, buf, sizeof(buf));
    if (size) kv_repl_send_frame(self, identity, buf, size);
}

uint8_t *kv_repl_encode(kv_repl_t *self, kv_msg_t *msg, size_t *len) {
    msg->epoch = kv_repl_epoch(self);
    *len = kv_msg_encoded_size(msg);
    uint8_t *frame = *len ? malloc(*len) : NULL;
    if (frame && kv_msg_encode(msg, frame, *len) != *len) {
        free(frame);
        frame = NULL;
    }
    return frame;
}

void kv_repl_send_frame(kv_repl_t *self, zmq_msg_t *identity, const uint8_t *frame, size_t size) {
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, identity);
    if (zmq_msg_send(&copy, self->config.router, ZMQ_SNDMORE) >= 0)
        zmq_send(self->config.router, frame, size, ZMQ_DONTWAIT);
    zmq_msg_close(&copy);
}

/* --- public entry points ------------------------------------------------- */

void kv_repl_write(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_repl_primary_write(self, identity, req);
}

void kv_repl_clear(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_repl_primary_clear(self, identity, req);
}

void kv_repl_on_ack(kv_repl_t *self, const kv_msg_t *ack) {
    kv_repl_primary_on_ack(self, ack);
}

void kv_repl_on_snapshot_req(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_repl_primary_queue_snapshot(self, identity, req);
}

int kv_repl_busy(const kv_repl_t *self) {
    return self->jobs != NULL || self->ttl_backlog;
}

int kv_repl_is_fenced(const kv_repl_t *self, uint32_t partition) {
    return partition < self->partitions && self->parts[partition].state == KV_REPL_FENCED;
}

int kv_repl_poll_items(kv_repl_t *self, zmq_pollitem_t *items) {
    uint16_t nodes[KV_MAX_NODES];
    self->items_changed = 0;
    items[0] = (zmq_pollitem_t){zsock_resolve(self->sub), 0, ZMQ_POLLIN | KV_POLLER_RECV_ONLY, 0};
    return 1 + (self->want_peers ? kv_peers_poll_items(self->peers, items + 1, nodes) : 0);
}

int kv_repl_items_changed(const kv_repl_t *self) {
    return self->items_changed;
}

void kv_repl_on_readable(kv_repl_t *self, const zmq_pollitem_t *items, int count) {
    if (count > 0 && (items[0].revents & ZMQ_POLLIN)) kv_repl_replica_drain_sub(self);
    for (int i = 1; i < count; i++)
        if (items[i].revents & ZMQ_POLLIN) kv_repl_replica_drain_peer(self, items[i].socket);
    kv_repl_replica_flush_acks(self);
}

static void s_connect_subs(kv_repl_t *self, const kv_table_t *table) {
    for (uint32_t i = 0; i < kv_table_node_count(table) && i < KV_MAX_NODES; i++) {
        const char *endpoint = kv_table_node(table, i)->pub_endpoint;
        if ((int)i == self->self || !*endpoint || streq(self->subscribed_to[i], endpoint)) continue;
        if (self->subscribed_to[i][0]) zsock_disconnect(self->sub, "%s", self->subscribed_to[i]);
        if (zsock_connect(self->sub, "%s", endpoint) == 0)
            snprintf(self->subscribed_to[i], sizeof(self->subscribed_to[i]), "%s", endpoint);
    }
}

int kv_repl_on_table(kv_repl_t *self, const kv_table_t *table, int node) {
    kv_table_t *copy = kv_table_dup(table);
    if (!copy) return 0;
    kv_table_destroy(&self->table);
    self->table = copy;
    self->self = node;
    s_connect_subs(self, table);
    int changed = kv_peers_update(self->peers, table);
    kv_repl_role_apply_table(self, table, node);
    return changed;
}

/* --- ticks, reports, life cycle -------------------------------------------- */

void kv_repl_tick(kv_repl_t *self) {
    int64_t now = kv_clock_mono_ms();
    kv_repl_primary_beacon(self);
    kv_repl_replica_flush_acks(self);
    kv_repl_primary_serve_jobs(self, KV_WORK_BUDGET_US);
    kv_repl_ttl_tick(self);
    if (self->config.max_memory && now >= self->next_room) {
        self->next_room = now + KV_ROOM_MS;
        kv_repl_replica_report_room(self);
    }
    if (self->trim_due && now >= self->next_trim) { /* the holes compaction left */
        self->trim_due = 0;
        self->next_trim = now + KV_MEM_TRIM_MS;
        kv_mem_trim();
        kv_counters_inc(self->config.counters, self->count_trims);
    }
    if (now < self->next_scan) return; /* the walk below costs O(P): not every wake-up */
    self->next_scan = now + KV_SCAN_MS;
    int syncing = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        kv_repl_part_t *part = &self->parts[p];
        if (kv_repl_is_primary(part)) kv_repl_primary_expire(self, part, now);
        if (part->state != KV_REPL_SYNCING || part->full) continue;
        syncing = 1;
        int64_t wait = part->snap_req ? KV_SNAPSHOT_RETRY_MS : KV_SCAN_MS;
        if (now - part->snap_asked >= wait) kv_repl_replica_ask_snapshot(self, p);
    }
    kv_repl_tx_tick(self);
    /* in sync, and no answer to a RESOLVE due: what still comes is stale, drop it */
    if (!syncing && self->want_peers && now > self->tx_asking_until) {
        zmq_pollitem_t items[KV_MAX_NODES];
        uint16_t nodes[KV_MAX_NODES];
        int count = kv_peers_poll_items(self->peers, items, nodes);
        for (int i = 0; i < count; i++) kv_repl_replica_drain_peer(self, items[i].socket);
        kv_repl_want_peers(self, 0);
    }
}

uint8_t *kv_repl_reports(kv_repl_t *self, size_t *len) {
    self->reports_dirty = 0;
    uint8_t *blob = malloc((size_t)self->partitions * KV_MSG_REPORT_SIZE + 1);
    size_t count = 0;
    for (uint32_t p = 0; blob && p < self->partitions; p++) {
        const kv_repl_part_t *part = &self->parts[p];
        if (part->state == KV_REPL_NONE) continue;
        kv_msg_report_t report = {p, 0, 0, part->seq};
        if (kv_repl_is_follower(part)) {
            report.role = part->learner ? KV_ROLE_LEARNER : 1;
            report.state = (uint8_t)((kv_repl_is_live(part) ? KV_REPORT_LIVE : 0) |
                                     (part->state == KV_REPL_READY ? KV_REPORT_READY : 0) |
                                     (part->full ? KV_REPORT_FULL : 0));
        }
        kv_msg_report_write(blob, count++, &report);
    }
    *len = count * KV_MSG_REPORT_SIZE;
    return blob;
}

int kv_repl_reports_dirty(const kv_repl_t *self) {
    return self->reports_dirty;
}

kv_repl_t *kv_repl_new(const kv_repl_config_t *config, kv_store_t *store, uint32_t partitions) {
    kv_repl_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->config = *config;
    self->store = store;
    self->partitions = partitions;
    self->self = -1;
    self->parts = calloc(partitions, sizeof(*self->parts));
    self->dirty_list = calloc(partitions, sizeof(*self->dirty_list));
    self->sub = zsock_new(ZMQ_SUB);
    self->peers = kv_peers_new(KV_NO_NODE);
    if (!self->parts || !self->dirty_list || !self->sub || !self->peers ||
        kv_repl_evict_init(self) != 0) {
        kv_repl_destroy(&self);
        return NULL;
    }
    for (uint32_t p = 0; p < partitions; p++) kv_repl_role_reset(&self->parts[p]);
    for (int n = 0; n < KV_MAX_NODES; n++) self->room_of[n] = KV_MEM_NO_LIMIT;
    kv_repl_role_register_counters(self);
    kv_repl_ttl_register_counters(self);
    kv_repl_tx_register_counters(self);
    kv_peers_set_heartbeats(self->sub);
    uint8_t topic[4];
    kv_repl_topic(KV_TOPIC_BEACON, topic);
    zmq_setsockopt(zsock_resolve(self->sub), ZMQ_SUBSCRIBE, topic, 4);
    return self;
}

void kv_repl_destroy(kv_repl_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_repl_t *self = *self_p;
    for (uint32_t p = 0; self->parts && p < self->partitions; p++) {
        kv_repl_primary_release(self, &self->parts[p], 0, 0);
        kv_repl_primary_refuse_held(self, &self->parts[p], -1);
        kv_repl_replica_buffer_clear(self, &self->parts[p]);
    }
    kv_repl_primary_drop_jobs(self);
    kv_repl_evict_destroy(self);
    free(self->parts);
    free(self->dirty_list);
    zsock_destroy(&self->sub);
    kv_peers_destroy(&self->peers);
    kv_table_destroy(&self->table);
    free(self);
    *self_p = NULL;
}

/* --- memory (docs/memory.md) ---------------------------------------------- */

size_t kv_repl_buffer_bytes(const kv_repl_t *self) {
    return self->buffer_bytes;
}

uint64_t kv_repl_used_memory(const kv_repl_t *self) {
    return kv_store_memory(self->store) + self->buffer_bytes + kv_mem_frame_bytes();
}

uint64_t kv_repl_room(const kv_repl_t *self) {
    return kv_mem_room(self->config.max_memory, kv_repl_used_memory(self));
}

size_t kv_repl_copies(const kv_repl_t *self, uint32_t partition, uint16_t *copies) {
    size_t count = 0;
    if (!self->table || partition >= self->partitions) return 0;
    for (uint32_t slot = 1; slot < kv_table_replication(self->table); slot++)
        copies[count++] = kv_table_owner(self->table, partition, slot);
    copies[count++] = kv_table_learner(self->table, partition);
    return count;
}

int kv_repl_lacking(const kv_repl_t *self, int64_t grow, const uint16_t *copies, size_t count,
                    uint64_t *lack) {
    uint64_t room = kv_repl_room(self);
    int node = -1;
    if (!kv_mem_fits(room, grow)) {
        node = self->self;
    } else {
        for (size_t i = 0; i < count && node < 0; i++)
            if (copies[i] < KV_MAX_NODES && kv_repl_usable(self, copies[i]) &&
                !kv_mem_fits(self->room_of[copies[i]], grow)) {
                node = copies[i];
                room = self->room_of[copies[i]];
            }
    }
    if (node >= 0 && lack) *lack = (uint64_t)grow - room;
    return node;
}

int kv_repl_room_take(kv_repl_t *self, uint32_t partition, int64_t grow) {
    if (grow <= 0 || !self->table || partition >= self->partitions) return 0;
    uint16_t copies[KV_REPLICATION_MAX + 1];
    size_t count = kv_repl_copies(self, partition, copies);
    int lacking = kv_repl_evict_room(self, partition, grow, copies, count);
    if (lacking >= 0) {
        if (lacking != self->self) kv_counters_inc(self->config.counters, self->count_refused_copy);
        kv_counters_inc(self->config.counters, self->count_refused);
        return -1;
    }
    for (size_t i = 0; i < count; i++) /* what it takes there until its next report */
        if (copies[i] < KV_MAX_NODES && self->room_of[copies[i]] != KV_MEM_NO_LIMIT)
            self->room_of[copies[i]] -= (uint64_t)grow;
    return 0;
}

void kv_repl_reclaim(kv_repl_t *self, uint32_t partition) {
    uint64_t limit = self->config.max_memory;
    if (!limit || kv_repl_room(self) >= limit / KV_REPL_TIGHT_SHARE) return;
    size_t garbage = kv_store_garbage(self->store, partition);
    if (garbage > 0 &&
        garbage >= kv_store_partition_memory(self->store, partition) / KV_REPL_RECLAIM_SHARE) {
        kv_store_compact(self->store, partition);
        self->trim_due = 1;
    }
}
