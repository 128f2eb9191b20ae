/*  kv_repl_replica.c: the replica side of the replication engine.
 *
 *  A replica (or learner) follows one primary per partition: it asks for a
 *  snapshot, buffers the updates that arrive meanwhile, applies the
 *  snapshot and then the stream strictly in order, resyncs on any gap, and
 *  acknowledges what it applied. The protocol is in kv_repl.h.
 */
#include "kv_repl_int.h"

#include "kv_clock.h"
#include "kv_log.h"

/* Frees one buffered update, its bytes taken off the engine's. */
static void s_buffered_free(kv_repl_t *self, kv_repl_buffered_t *item) {
    self->buffer_bytes -= sizeof(*item) + item->len;
    free(item);
}

void kv_repl_replica_buffer_clear(kv_repl_t *self, kv_repl_part_t *part) {
    while (part->buffer) {
        kv_repl_buffered_t *next = part->buffer->next;
        s_buffered_free(self, part->buffer);
        part->buffer = next;
    }
    part->buffer_tail = NULL;
    part->buffered = 0;
}

void kv_repl_replica_ask_snapshot(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    if (kv_repl_is_live(part)) kv_repl_report_changed(self);
    kv_repl_role_execute(self, partition, KV_REPL_EV_RESYNC);
    part->snap_req = 0;
    part->snap_asked = kv_clock_mono_ms();
    kv_repl_replica_buffer_clear(self, part);
    if (part->primary == KV_NO_NODE || !kv_repl_usable(self, part->primary))
        return; /* retried later */
    kv_msg_t req = {.type = KV_MSG_SNAPSHOT_REQ, .partition = partition};
    req.req_id = ++self->next_req;
    req.sender = (uint16_t)self->self;
    uint8_t buf[64];
    size_t size = kv_msg_encode(&req, buf, sizeof(buf));
    if (kv_peers_send(self->peers, part->primary, buf, size) == 0) {
        part->snap_req = req.req_id;
        part->snap_chunk = 0;
        kv_repl_want_peers(self, 1);
    }
}

/* Asks a snapshot again; counted in total and, when reason is not
 * KV_COUNTER_INVALID, in that reason's counter too (tests read them). */
static void s_resync(kv_repl_t *self, uint32_t partition, size_t reason, const char *why) {
    kv_log_info("node %s: partition %u resyncs from node %u at seq %" PRIu64 ": %s",
                self->config.node_id, partition, self->parts[partition].primary,
                self->parts[partition].seq, why);
    kv_counters_inc(self->config.counters, self->count_resyncs);
    kv_counters_inc(self->config.counters, reason); /* ignored when invalid */
    kv_repl_replica_ask_snapshot(self, partition);
}

static void s_mark_dirty(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    if (part->dirty) return;
    part->dirty = 1;
    self->dirty_list[self->dirty_count++] = partition;
}

/* Applies one in-order update to the store. */
static void s_apply_update(kv_repl_t *self, kv_repl_part_t *part, const kv_msg_t *update) {
    switch (update->op) {
    case KV_OP_SET:
        if (kv_store_put(self->store, update->partition, update->key.ptr, update->key.len,
                         update->value.ptr, update->value.len, update->meta.version,
                         (int64_t)update->meta.expiry) != 0)
            kv_log_error("node %s: out of memory applying partition %u seq %" PRIu64,
                         self->config.node_id, update->partition, update->seq);
        break;
    case KV_OP_RM:
        kv_store_delete(self->store, update->partition, update->key.ptr, update->key.len);
        kv_repl_reclaim(self, update->partition); /* our primary may be evicting for us */
        break;
    case KV_OP_CLEAR:
        kv_store_clear_data(self->store, update->partition);
        break;
    default:
        break;
    }
    part->seq = update->seq;
}

static void s_on_update(kv_repl_t *self, const kv_msg_t *update) {
    if (update->partition >= self->partitions) return;
    kv_repl_part_t *part = &self->parts[update->partition];
    if (!kv_repl_is_follower(part) || update->sender != part->primary)
        return; /* not a partition we follow, or not from its primary: fenced out */
    if (update->op == KV_OP_FENCE) {
        if (part->state == KV_REPL_LEARNER && part->seq == update->seq) {
            kv_repl_role_execute(self, update->partition, KV_REPL_EV_END);
            kv_repl_report_changed(self);
        } else if (kv_repl_is_live(part) && part->seq != update->seq)
            s_resync(self, update->partition, KV_COUNTER_INVALID, "fence mark ahead of us");
        return;
    }
    if (!kv_repl_is_live(part)) return;   /* buffered by the caller while snapshotting */
    if (update->seq <= part->seq) return; /* already applied (snapshot overlap) */
    if (update->seq != part->seq + 1) {
        s_resync(self, update->partition, self->count_resyncs_gap, "gap in the update stream");
        return;
    }
    s_apply_update(self, part, update);
    s_mark_dirty(self, update->partition);
}

static void s_buffer_add(kv_repl_t *self, kv_repl_part_t *part, const uint8_t *data, size_t len,
                         uint32_t partition) {
    /* The snapshot is too slow (or the updates too many bytes to keep):
     * start over rather than let the buffer grow without a bound. */
    if (part->buffered >= KV_BUFFER_MAX || self->buffer_bytes + len > KV_BUFFER_BYTES_MAX) {
        s_resync(self, partition, KV_COUNTER_INVALID, "update buffer full during snapshot");
        return;
    }
    kv_repl_buffered_t *item = malloc(sizeof(*item) + len);
    if (!item) return;
    item->next = NULL;
    item->len = len;
    memcpy(item->data, data, len);
    self->buffer_bytes += sizeof(*item) + len;
    if (part->buffer_tail)
        part->buffer_tail->next = item;
    else
        part->buffer = item;
    part->buffer_tail = item;
    part->buffered++;
}

static void s_on_sub_frame(kv_repl_t *self, const uint8_t *data, size_t len) {
    kv_msg_t msg;
    if (kv_msg_decode(data, len, &msg) != 0) return;
    if (msg.type == KV_MSG_UPDATE && msg.partition < self->partitions) {
        kv_repl_part_t *part = &self->parts[msg.partition];
        if (part->state == KV_REPL_SYNCING && part->snap_req && msg.sender == part->primary)
            s_buffer_add(self, part, data, len, msg.partition);
        else
            s_on_update(self, &msg);
        return;
    }
    if (msg.type != KV_MSG_BEACON) return;
    size_t count = msg.items.len / KV_MSG_ITEM_SIZE;
    for (size_t i = 0; i < count; i++) {
        kv_msg_item_t item = kv_msg_item_read(&msg.items, i);
        if (item.partition >= self->partitions) continue;
        kv_repl_part_t *part = &self->parts[item.partition];
        if (!kv_repl_is_live(part) || part->primary != msg.sender) continue;
        if (part->seq != item.seq) { /* updates were dropped, or we hold extra ones */
            int behind = part->seq < item.seq;
            s_resync(self, item.partition, behind ? self->count_resyncs_behind : KV_COUNTER_INVALID,
                     behind ? "behind the beacon" : "ahead of the beacon");
            continue;
        }
        if (item.flag && part->state == KV_REPL_LEARNER) {
            kv_repl_role_execute(self, item.partition, KV_REPL_EV_END);
            kv_repl_report_changed(self);
        }
    }
}

/* Sends one ACK per primary for the partitions applied since the last. */
void kv_repl_replica_flush_acks(kv_repl_t *self) {
    if (self->dirty_count == 0) return;
    uint8_t *items = malloc((size_t)self->dirty_count * KV_MSG_ITEM_SIZE);
    while (items && self->dirty_count > 0) {
        uint16_t primary = self->parts[self->dirty_list[0]].primary;
        size_t count = 0;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < self->dirty_count; i++) {
            uint32_t p = self->dirty_list[i];
            if (self->parts[p].primary != primary) {
                self->dirty_list[kept++] = p;
                continue;
            }
            kv_msg_item_t item = {p, self->parts[p].seq, 0};
            kv_msg_item_write(items, count++, &item);
            self->parts[p].dirty = 0;
        }
        self->dirty_count = kept;
        kv_msg_t ack = {.type = KV_MSG_ACK, .sender = (uint16_t)self->self};
        ack.has_room = self->config.max_memory != 0; /* room after what it confirms */
        ack.room = ack.has_room ? kv_repl_room(self) : 0;
        ack.items = (kv_bytes_t){(const char *)items, count * KV_MSG_ITEM_SIZE};
        size_t size = kv_msg_encoded_size(&ack);
        uint8_t *buf = malloc(size);
        if (buf && kv_msg_encode(&ack, buf, size) == size)
            kv_peers_send(self->peers, primary, buf, size);
        free(buf);
    }
    if (!items) { /* out of memory: the beacon will make them resync if need be */
        for (uint32_t i = 0; i < self->dirty_count; i++) self->parts[self->dirty_list[i]].dirty = 0;
        self->dirty_count = 0;
    }
    free(items);
}

/* Applies the updates buffered during the snapshot, then resumes live. */
static void s_replay_buffer(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_repl_buffered_t *list = part->buffer;
    part->buffer = part->buffer_tail = NULL;
    part->buffered = 0;
    while (list) {
        kv_repl_buffered_t *next = list->next;
        kv_msg_t msg;
        if (kv_repl_is_live(part) && kv_msg_decode(list->data, list->len, &msg) == 0)
            s_on_update(self, &msg);
        s_buffered_free(self, list);
        list = next;
    }
}

/* Whether the entries of a snapshot chunk (new keys: chunk 0 emptied the
 * partition) fit the room our limit leaves. */
static int s_chunk_fits(const kv_repl_t *self, const kv_msg_t *msg) {
    if (!self->config.max_memory) return 1;
    size_t pos = 0;
    uint64_t grow = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(msg, &pos, &entry) == 0)
        grow += kv_dict_entry_bytes(entry.key.len, entry.value.len, entry.meta.expiry != 0);
    return grow <= kv_repl_room(self);
}

/* A snapshot that does not fit our limit: we give the partition up rather
 * than pass the limit (and be killed at the cgroup's). What we applied of
 * it goes, we ask no more, and our reports say so: the coordinator cancels
 * the move that made us learner and sends it elsewhere (kv_plan.h). */
static void s_snapshot_full(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_store_clear_partition(self->store, partition);
    kv_repl_replica_buffer_clear(self, part);
    part->snap_req = 0;
    part->full = 1;
    kv_counters_inc(self->config.counters, self->count_snapshots_full);
    kv_log_warn("node %s: partition %u does not fit the memory limit (%" PRIu64
                " bytes): giving it up",
                self->config.node_id, partition, self->config.max_memory);
    kv_repl_report_changed(self);
}

static void s_on_snapshot(kv_repl_t *self, const kv_msg_t *msg) {
    if (msg->partition >= self->partitions) return;
    kv_repl_part_t *part = &self->parts[msg->partition];
    if (!kv_repl_is_follower(part) || part->snap_req != msg->req_id) return; /* stale */
    if (msg->status != KV_STATUS_OK || msg->chunk != part->snap_chunk) {
        part->snap_req = 0; /* asked again on the next tick */
        return;
    }
    if (msg->chunk == 0) kv_store_clear_partition(self->store, msg->partition);
    if (!s_chunk_fits(self, msg)) {
        s_snapshot_full(self, msg->partition);
        return;
    }
    size_t pos = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(msg, &pos, &entry) == 0)
        kv_store_put(self->store, msg->partition, entry.key.ptr, entry.key.len, entry.value.ptr,
                     entry.value.len, entry.meta.version, (int64_t)entry.meta.expiry);
    part->snap_chunk++;
    part->snap_asked = kv_clock_mono_ms(); /* the retry measures silence, not total time */
    if (msg->more) return;
    part->snap_req = 0;
    part->seq = msg->seq;
    kv_repl_role_execute(self, msg->partition, KV_REPL_EV_SYNCED);
    kv_counters_inc(self->config.counters, self->count_snapshots_applied);
    kv_log_debug("node %s: partition %u synced at seq %" PRIu64, self->config.node_id,
                 msg->partition, msg->seq);
    kv_repl_report_changed(self);
    s_replay_buffer(self, msg->partition);
    s_mark_dirty(self, msg->partition);
}

void kv_repl_replica_drain_sub(kv_repl_t *self) {
    void *handle = zsock_resolve(self->sub);
    for (int i = 0; i < KV_DRAIN_BATCH; i++) {
        zmq_msg_t topic, body;
        zmq_msg_init(&topic);
        if (zmq_msg_recv(&topic, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&topic);
            break;
        }
        zmq_msg_init(&body);
        if (zmq_msg_more(&topic) && zmq_msg_recv(&body, handle, 0) >= 0 && !zmq_msg_more(&body))
            s_on_sub_frame(self, zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&topic);
    }
}

/* Snapshot chunks are applied within a time budget per wake-up, like they
 * are served: what is left waits in the socket for the next turn. */
/* A record partition's answer to our RESOLVE: its decision, to apply to
 * the intents of ours (if we still are its primary). */
static void s_on_finish(kv_repl_t *self, const kv_msg_t *msg) {
    if (msg->partition < self->partitions && self->parts[msg->partition].state == KV_REPL_PRIMARY)
        kv_repl_tx_finish(self, NULL, msg);
}

void kv_repl_replica_drain_peer(kv_repl_t *self, void *handle) {
    int64_t start = kv_clock_mono_us();
    for (int i = 0; i < KV_DRAIN_BATCH && kv_clock_mono_us() - start < KV_WORK_BUDGET_US; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        kv_msg_t msg;
        if (kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0) {
            if (msg.type == KV_MSG_SNAPSHOT) s_on_snapshot(self, &msg);
            if (msg.type == KV_MSG_TX_FINISH) s_on_finish(self, &msg);
            if (msg.type == KV_MSG_REPLY) kv_repl_tx_on_reply(self, &msg);
        }
        zmq_msg_close(&frame);
    }
}

/* One partition per primary is enough: the room is the node's, and the
 * ACK that carries it repeats a seq the primary has (harmless). */
void kv_repl_replica_report_room(kv_repl_t *self) {
    uint8_t told[KV_MAX_NODES] = {0};
    for (uint32_t p = 0; p < self->partitions; p++) {
        const kv_repl_part_t *part = &self->parts[p];
        if (!kv_repl_is_live(part) || part->primary >= KV_MAX_NODES || told[part->primary])
            continue;
        told[part->primary] = 1;
        s_mark_dirty(self, p);
    }
}
