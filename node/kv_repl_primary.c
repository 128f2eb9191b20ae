/*  kv_repl_primary.c: the primary side of the replication engine.
 *
 *  A primary numbers, applies and publishes every write of its partitions,
 *  holds each write's reply until enough replicas confirmed it (ACK), serves
 *  snapshots to replicas that ask (queued, a time budget per wake-up) and
 *  beacons its latest sequences. The protocol is in kv_repl.h.
 */
#include "kv_repl_int.h"

#include "kv_clock.h"
#include "kv_hash.h"
#include "kv_log.h"

/* Confirmations a write of this partition needs. */
static uint32_t s_required(const kv_repl_t *self) {
    uint32_t replication = self->table ? kv_table_replication(self->table) : 0;
    if (replication < 2) return 0;
    uint32_t cap = replication - 1;
    return (uint32_t)self->config.write_acks < cap ? (uint32_t)self->config.write_acks : cap;
}

/* The nodes that may confirm writes of partition: replicas and learner. */
static uint32_t s_ackers(const kv_repl_t *self, uint32_t partition, uint16_t *nodes) {
    uint32_t count = 0;
    uint32_t replication = kv_table_replication(self->table);
    for (uint32_t slot = 1; slot < replication; slot++) {
        uint16_t node = kv_table_owner(self->table, partition, slot);
        if (node != KV_NO_NODE && kv_repl_usable(self, node)) nodes[count++] = node;
    }
    uint16_t learner = kv_table_learner(self->table, partition);
    for (uint32_t i = 0; i < count; i++)
        if (nodes[i] == learner) return count; /* a replica taking the primary slot: once */
    if (learner != KV_NO_NODE && kv_repl_usable(self, learner)) nodes[count++] = learner;
    return count;
}

/* --- pending writes and confirmations ----------------------------------- */

static kv_repl_group_t *s_group_new(zmq_msg_t *identity, uint64_t req_id) {
    kv_repl_group_t *group = calloc(1, sizeof(*group));
    if (!group) return NULL;
    zmq_msg_init(&group->identity);
    if (identity) zmq_msg_copy(&group->identity, identity);
    group->req_id = identity ? req_id : 0;
    return group;
}

static void s_group_destroy(kv_repl_group_t **group_p) {
    zmq_msg_close(&(*group_p)->identity);
    free((*group_p)->frame);
    free(*group_p);
    *group_p = NULL;
}

/* One partition of group is confirmed (or abandoned: then no reply). */
/* Whether the lease lets an answer leave now. A write confirmed after our
 * lease ran out (we were frozen or cut off meanwhile, and may have been
 * replaced) gets no answer: the gateway says 504, "may or may not have
 * happened", which is the truth; NO_LEASE would claim nothing was written. */
static int s_leased(const kv_repl_t *self) {
    return !self->config.lease || kv_lease_valid(self->config.lease, kv_clock_mono_us());
}

static void s_group_done(kv_repl_t *self, kv_repl_group_t *group, int confirmed) {
    if (confirmed && group->req_id && group->waiting == 1 && s_leased(self)) {
        if (group->frame)
            kv_repl_send_frame(self, &group->identity, group->frame, group->frame_len);
        else
            kv_repl_reply(self, &group->identity, group->req_id, KV_STATUS_OK, NULL, 0,
                          group->version);
    }
    if (!confirmed) group->req_id = 0; /* never answer: the gateway times out */
    if (--group->waiting == 0) s_group_destroy(&group);
}

/* Holds the reply of the write of key (NULL: every key, a /clear) applied
 * at seq until replicas confirm it. */
static int s_pending_add(kv_repl_t *self, kv_repl_part_t *part, uint64_t seq,
                         kv_repl_group_t *group, kv_bytes_t key) {
    kv_repl_pending_t *pending = calloc(1, sizeof(*pending));
    if (!pending) return -1;
    self->buffer_bytes += sizeof(*pending);
    pending->seq = seq;
    pending->any_key = key.ptr == NULL;
    pending->key_hash = key.ptr ? kv_hash64(key.ptr, key.len, 0) : 0;
    pending->since = kv_clock_mono_ms();
    pending->group = group;
    group->waiting++;
    if (part->pending_tail)
        part->pending_tail->next = pending;
    else
        part->pending = pending;
    part->pending_tail = pending;
    return 0;
}

static void s_pending_free(kv_repl_t *self, kv_repl_pending_t *pending) {
    self->buffer_bytes -= sizeof(*pending);
    free(pending);
}

kv_repl_group_t *kv_repl_group_begin(zmq_msg_t *identity, uint64_t req_id, uint8_t *frame,
                                     size_t frame_len) {
    kv_repl_group_t *group = s_group_new(identity, req_id);
    if (!group) {
        free(frame);
        return NULL;
    }
    group->frame = frame;
    group->frame_len = frame_len;
    group->waiting = 1; /* held until every write is queued (kv_repl_group_end) */
    return group;
}

void kv_repl_group_write(kv_repl_t *self, kv_repl_part_t *part, kv_repl_group_t *group,
                         uint64_t seq, kv_bytes_t key) {
    if (group && s_required(self) > 0 && s_pending_add(self, part, seq, group, key) != 0)
        group->req_id = 0; /* out of memory: never answer, the gateway says 504 */
}

void kv_repl_group_end(kv_repl_t *self, kv_repl_group_t *group) {
    if (group) s_group_done(self, group, 1);
}

/* Answers the pending writes up to seq (confirmed) or all of them
 * (abandoned, when the partition changes hands: the gateway times out and
 * says the write may or may not have happened, which is the truth). */
void kv_repl_primary_release(kv_repl_t *self, kv_repl_part_t *part, uint64_t seq, int confirmed) {
    while (part->pending && (!confirmed || part->pending->seq <= seq)) {
        kv_repl_pending_t *pending = part->pending;
        part->pending = pending->next;
        if (!part->pending) part->pending_tail = NULL;
        s_group_done(self, pending->group, confirmed);
        s_pending_free(self, pending);
    }
}

/* The highest seq that `required` ackers have all applied. */
static uint64_t s_confirmed_seq(const kv_repl_t *self, uint32_t partition,
                                const kv_repl_part_t *part) {
    uint16_t nodes[KV_ACKERS];
    uint32_t count = s_ackers(self, partition, nodes);
    uint32_t required = s_required(self);
    if (required == 0) return part->seq;
    if (count < required) return 0;
    uint64_t seqs[KV_ACKERS] = {0};
    for (uint32_t i = 0; i < count; i++) {
        seqs[i] = 0;
        for (int a = 0; a < KV_ACKERS; a++)
            if (part->acker[a] == nodes[i]) seqs[i] = part->acked[a];
    }
    for (uint32_t i = 1; i < count; i++) /* insertion sort, descending: count <= 6 */
        for (uint32_t j = i; j > 0 && seqs[j] > seqs[j - 1]; j--) {
            uint64_t swap = seqs[j];
            seqs[j] = seqs[j - 1];
            seqs[j - 1] = swap;
        }
    return seqs[required - 1];
}

static void s_record_ack(kv_repl_part_t *part, uint16_t node, uint64_t seq) {
    int free_slot = -1;
    for (int a = 0; a < KV_ACKERS; a++) {
        if (part->acker[a] == node) {
            if (seq > part->acked[a]) part->acked[a] = seq;
            return;
        }
        if (part->acker[a] == KV_NO_NODE && free_slot < 0) free_slot = a;
    }
    if (free_slot < 0) free_slot = 0; /* a stale acker: the table changed */
    part->acker[free_slot] = node;
    part->acked[free_slot] = seq;
}

/* --- held reads ------------------------------------------------------------ */

/* Answers a read (GET, IS) from the store as it is now, or a write's
 * answer decided earlier (a conflict, a remove that found nothing), under
 * the lease: the lease is checked as the answer leaves, not when the
 * request arrived. */
static void s_answer(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id, uint32_t partition,
                     const kv_repl_held_t *what) {
    if (!s_leased(self)) {
        kv_repl_reply(self, identity, req_id, KV_STATUS_NO_LEASE, NULL, 0, 0);
        return;
    }
    if (what->frame) {
        kv_repl_send_frame(self, identity, what->frame, what->frame_len);
        return;
    }
    if (what->type != KV_MSG_GET && what->type != KV_MSG_IS) { /* decided when it came */
        kv_repl_reply(self, identity, req_id, (kv_status_t)what->status, NULL, 0, what->version);
        return;
    }
    const kv_entry_t *found = kv_store_get(self->store, partition, what->key, what->klen);
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = KV_STATUS_NOT_FOUND};
    /* An absent key's witness: it was absent throughout between two reads
     * that show the same last removal (a set after the first would still
     * be there). Confirmed like the answer: reads wait for what they see. */
    reply.seq = self->parts[partition].removed_seq;
    if (found) {
        reply.status = KV_STATUS_OK;
        reply.meta.version = kv_entry_version(found);
        reply.ttl_ms = kv_repl_ttl_left(self, found);
        if (what->type == KV_MSG_GET)
            reply.value = (kv_bytes_t){kv_entry_value(found), kv_entry_vlen(found)};
    }
    kv_repl_send_reply(self, identity, &reply);
}

/* Held reads are queued in two FIFOs per partition: waiting for
 * confirmation (held), and waiting for a transaction's commit (locked). */
static kv_repl_held_t *s_list_pop(kv_repl_held_t **head, kv_repl_held_t **tail) {
    kv_repl_held_t *held = *head;
    *head = held->next;
    if (!*head) *tail = NULL;
    return held;
}

static void s_list_append(kv_repl_held_t **head, kv_repl_held_t **tail, kv_repl_held_t *held) {
    held->next = NULL;
    if (*tail)
        (*tail)->next = held;
    else
        *head = held;
    *tail = held;
}

static kv_repl_held_t *s_held_pop(kv_repl_part_t *part) {
    return s_list_pop(&part->held, &part->held_tail);
}

static void s_held_free(kv_repl_t *self, kv_repl_held_t *held) {
    self->buffer_bytes -= sizeof(*held) + held->frame_len;
    zmq_msg_close(&held->identity);
    free(held->frame);
    free(held);
}

/* Whether a write of held's key applied after the confirmed seq is still
 * unconfirmed: the store holds its value, which a failover could lose. */
static int s_key_unconfirmed(const kv_repl_part_t *part, const kv_repl_held_t *held) {
    uint64_t hash = kv_hash64(held->key, held->klen, 0);
    for (const kv_repl_pending_t *p = part->pending; p; p = p->next)
        if (p->seq > part->confirmed && (p->any_key || p->key_hash == hash)) return 1;
    return 0;
}

static void s_held_append(kv_repl_part_t *part, kv_repl_held_t *held) {
    s_list_append(&part->held, &part->held_tail, held);
}

/* Answers the held reads the confirmed seq now covers (FIFO: wait_seq only
 * grows along the list). The store is read as it is now: a read whose key
 * was written again since it was held, and not yet confirmed, waits for
 * that write too (to the tail, with everything applied so far), so no
 * answer ever shows an unconfirmed write. A hash collision only delays. */
static void s_serve_held(kv_repl_t *self, uint32_t partition, kv_repl_part_t *part) {
    while (part->held && part->held->wait_seq <= part->confirmed) {
        kv_repl_held_t *held = s_held_pop(part);
        int decided = held->type != KV_MSG_GET && held->type != KV_MSG_IS;
        if (!decided && s_key_unconfirmed(part, held)) {
            held->wait_seq = part->seq;
            s_held_append(part, held);
            continue;
        }
        s_answer(self, &held->identity, held->req_id, partition, held);
        s_held_free(self, held);
    }
}

void kv_repl_primary_refuse_held(kv_repl_t *self, kv_repl_part_t *part, int status) {
    while (part->held || part->locked) {
        kv_repl_held_t *held =
            part->held ? s_held_pop(part) : s_list_pop(&part->locked, &part->locked_tail);
        if (status >= 0)
            kv_repl_reply(self, &held->identity, held->req_id, (kv_status_t)status, NULL, 0, 0);
        s_held_free(self, held);
    }
}

/* A copy of what, waiting for identity's request req_id; NULL when out of
 * memory. */
static kv_repl_held_t *s_held_new(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id,
                                  const kv_repl_held_t *what) {
    kv_repl_held_t *held = malloc(sizeof(*held));
    if (!held) return NULL;
    *held = *what;
    self->buffer_bytes += sizeof(*held) + held->frame_len;
    zmq_msg_init(&held->identity);
    zmq_msg_copy(&held->identity, identity);
    held->req_id = req_id;
    held->since = kv_clock_mono_ms();
    return held;
}

int kv_repl_primary_wait_unlock(kv_repl_t *self, zmq_msg_t *identity, uint32_t partition,
                                uint64_t req_id, const kv_repl_held_t *what) {
    kv_repl_held_t *held = s_held_new(self, identity, req_id, what);
    if (!held) return -1;
    kv_repl_part_t *part = &self->parts[partition];
    s_list_append(&part->locked, &part->locked_tail, held);
    return 0;
}

/* A reader's prepare that waited: run again (it may wait again). */
static void s_prepare_again(kv_repl_t *self, kv_repl_held_t *held) {
    kv_msg_t req;
    if (kv_msg_decode(held->frame, held->frame_len, &req) == 0)
        kv_repl_tx_prepare(self, &held->identity, &req);
    s_held_free(self, held);
}

void kv_repl_primary_unlocked(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_repl_held_t *waiting = part->locked;
    part->locked = part->locked_tail = NULL;
    while (waiting) {
        kv_repl_held_t *held = waiting;
        waiting = held->next;
        if (held->type == KV_MSG_TX_PREPARE) {
            s_prepare_again(self, held);
            continue;
        }
        if (kv_repl_tx_locked(self, partition, held->key, held->klen, 0)) {
            s_list_append(&part->locked, &part->locked_tail, held); /* another commit */
            continue;
        }
        kv_repl_answer_or_hold(self, &held->identity, partition, held->req_id, held);
        held->frame = NULL; /* taken */
        s_held_free(self, held);
    }
}

/* Answers what (a read, or a write's answer decided now) at once when every
 * write applied so far is confirmed; otherwise holds it until they are:
 * the answer could show one of them, which a failover could still lose. */
void kv_repl_answer_or_hold(kv_repl_t *self, zmq_msg_t *identity, uint32_t partition,
                            uint64_t req_id, kv_repl_held_t *what) {
    kv_repl_part_t *part = &self->parts[partition];
    if (s_required(self) == 0 || part->confirmed >= part->seq) { /* all confirmed */
        s_answer(self, identity, req_id, partition, what);
        free(what->frame);
        return;
    }
    kv_repl_held_t *held = s_held_new(self, identity, req_id, what);
    if (!held) {
        free(what->frame);
        kv_repl_reply(self, identity, req_id, KV_STATUS_UNAVAILABLE, NULL, 0, 0);
        return;
    }
    held->wait_seq = part->seq;
    s_held_append(part, held);
}

static void s_answer_or_hold(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req,
                             kv_repl_held_t *what) {
    kv_repl_answer_or_hold(self, identity, req->partition, req->req_id, what);
}

/* What the answer to req needs: for a write, the status and version
 * decided now; for a read, the key (read when answered). */
static kv_repl_held_t s_what(const kv_msg_t *req, kv_status_t decided, uint64_t version) {
    kv_repl_held_t what = {.type = req->type, .status = (uint8_t)decided, .version = version};
    if (req->type == KV_MSG_GET || req->type == KV_MSG_IS) {
        what.klen = (uint16_t)req->key.len; /* checked by the node: <= KV_MAX_KEY_BYTES */
        memcpy(what.key, req->key.ptr, req->key.len);
    }
    return what;
}

void kv_repl_read(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    if (req->key.len > KV_MAX_KEY_BYTES) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_BAD_REQUEST, NULL, 0, 0);
        return;
    }
    kv_repl_held_t what = s_what(req, KV_STATUS_OK, 0);
    if (kv_repl_tx_locked(self, req->partition, req->key.ptr, req->key.len, 0)) {
        /* a transaction will write it: wait for its commit here rather
         * than have the gateway ask again */
        if (kv_repl_primary_wait_unlock(self, identity, req->partition, req->req_id, &what) != 0)
            kv_repl_reply(self, identity, req->req_id, KV_STATUS_LOCKED, NULL, 0, 0);
        return;
    }
    s_answer_or_hold(self, identity, req, &what);
}

/* Why the keys of an MGET cannot all be answered now from the store: OK
 * when they can (every key's partition ours as primary, not fenced, every
 * write applied to it confirmed, the key held by no transaction that will
 * write it); LOCKED when some key must wait (a GET waits for both: the
 * gateway reads such batches key by key); MOVED or NO_LEASE. The store
 * entry of each key goes to found[i] (NULL when absent). */
static kv_status_t s_mget_check(kv_repl_t *self, const kv_msg_t *req, const kv_entry_t **found,
                                uint32_t *parts, size_t *size) {
    if (!s_leased(self)) return KV_STATUS_NO_LEASE;
    size_t pos = 0, i = 0;
    kv_msg_entry_t key;
    while (kv_msg_entry_next(req, &pos, &key) == 0) {
        uint32_t partition = kv_partition_of(key.key.ptr, key.key.len, self->partitions);
        const kv_repl_part_t *part = &self->parts[partition];
        if (part->state != KV_REPL_PRIMARY) return KV_STATUS_MOVED;
        if ((s_required(self) > 0 && part->confirmed < part->seq) ||
            kv_repl_tx_locked(self, partition, key.key.ptr, key.key.len, 0))
            return KV_STATUS_LOCKED;
        found[i] = kv_store_get(self->store, partition, key.key.ptr, key.key.len);
        parts[i++] = partition;
        *size += kv_msg_entry_size(key.key.len, found[i - 1] ? kv_entry_vlen(found[i - 1]) : 0);
    }
    return KV_STATUS_OK;
}

/* The MGET_REPLY of req, every key read now (checked by s_mget_check):
 * entries and items in request order. Returns 0, or -1 out of memory. */
static int s_mget_answer(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req,
                         const kv_entry_t **found, const uint32_t *parts, size_t size) {
    uint8_t *entries = malloc(size ? size : 1);
    uint8_t *items = malloc(req->count ? (size_t)req->count * KV_MSG_ITEM_SIZE : 1);
    kv_msg_t reply = {.type = KV_MSG_MGET_REPLY, .req_id = req->req_id, .count = req->count};
    size_t pos = 0, at = 0, i = 0, frame_len = 0;
    kv_msg_entry_t key;
    while (entries && items && kv_msg_entry_next(req, &pos, &key) == 0) {
        const kv_entry_t *entry = found[i];
        kv_msg_entry_t put = {.key = key.key};
        if (entry) {
            put.value = (kv_bytes_t){kv_entry_value(entry), kv_entry_vlen(entry)};
            put.meta.version = kv_entry_version(entry);
        }
        kv_msg_entry_put(entries, size, &at, &put);
        /* An absent key's witness, as a GET's (s_answer) */
        kv_msg_item_t item = {parts[i], self->parts[parts[i]].removed_seq, entry != NULL};
        kv_msg_item_write(items, i++, &item);
    }
    reply.entries = (kv_bytes_t){(const char *)entries, at};
    reply.items = (kv_bytes_t){(const char *)items, i * KV_MSG_ITEM_SIZE};
    uint8_t *frame = entries && items ? kv_repl_encode(self, &reply, &frame_len) : NULL;
    if (frame) kv_repl_send_frame(self, identity, frame, frame_len);
    free(frame);
    free(items);
    free(entries);
    return frame ? 0 : -1;
}

void kv_repl_mget(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    const kv_entry_t **found = calloc(req->count ? req->count : 1, sizeof(*found));
    uint32_t *parts = calloc(req->count ? req->count : 1, sizeof(*parts));
    size_t size = 0;
    kv_status_t status =
        found && parts ? s_mget_check(self, req, found, parts, &size) : KV_STATUS_UNAVAILABLE;
    if (status == KV_STATUS_OK && s_mget_answer(self, identity, req, found, parts, size) != 0)
        status = KV_STATUS_UNAVAILABLE; /* out of memory */
    if (status != KV_STATUS_OK) kv_repl_reply(self, identity, req->req_id, status, NULL, 0, 0);
    free(parts);
    free(found);
}

/* Replicas confirmed partition up to seq: answer the writes and the reads
 * waiting for it. Confirmation only grows: what a replica applied stays
 * applied (it leaves the partition only through a new table, which resets
 * this one's role too). */
static void s_confirm(kv_repl_t *self, uint32_t partition, kv_repl_part_t *part, uint64_t seq) {
    if (seq > part->confirmed) part->confirmed = seq;
    kv_repl_primary_release(self, part, part->confirmed, 1);
    s_serve_held(self, partition, part);
}

void kv_repl_primary_on_ack(kv_repl_t *self, const kv_msg_t *ack) {
    if (!self->table) return;
    if (ack->sender < KV_MAX_NODES) /* what it applied is in its room: start over from it */
        self->room_of[ack->sender] = ack->has_room ? ack->room : KV_MEM_NO_LIMIT;
    size_t count = ack->items.len / KV_MSG_ITEM_SIZE;
    for (size_t i = 0; i < count; i++) {
        kv_msg_item_t item = kv_msg_item_read(&ack->items, i);
        if (item.partition >= self->partitions) continue;
        kv_repl_part_t *part = &self->parts[item.partition];
        if (!kv_repl_is_primary(part)) continue; /* a late ack for a past role */
        s_record_ack(part, ack->sender, item.seq);
        s_confirm(self, item.partition, part, s_confirmed_seq(self, item.partition, part));
    }
}

/* --- writes ------------------------------------------------------------------ */

void kv_repl_primary_publish(kv_repl_t *self, uint32_t partition, uint8_t op, uint64_t seq,
                             kv_bytes_t key, kv_bytes_t value) {
    /* a key's version is its write's seq */
    kv_repl_primary_publish_meta(self, partition, op, seq, key, value,
                                 (kv_msg_meta_t){op == KV_OP_SET ? seq : 0, 0});
}

void kv_repl_primary_remove(kv_repl_t *self, uint32_t partition, const char *key, size_t klen) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_store_delete(self->store, partition, key, klen);
    part->removed_seq = ++part->seq;
    kv_repl_primary_publish(self, partition, KV_OP_RM, part->seq, (kv_bytes_t){key, klen},
                            (kv_bytes_t){NULL, 0});
}

void kv_repl_primary_publish_meta(kv_repl_t *self, uint32_t partition, uint8_t op, uint64_t seq,
                                  kv_bytes_t key, kv_bytes_t value, kv_msg_meta_t meta) {
    uint8_t topic[4], buf[KV_UPDATE_MAX];
    kv_repl_topic(partition, topic);
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = partition, .op = op, .seq = seq};
    update.meta = meta;
    update.sender = (uint16_t)self->self;
    update.epoch = kv_repl_epoch(self);
    update.key = key;
    update.value = value;
    size_t size = kv_msg_encode(&update, buf, sizeof(buf));
    zmq_msg_t frame; /* counted until every subscriber's queue let it go (kv_mem.h) */
    if (!size || kv_mem_frame(&frame, size) != 0) return;
    memcpy(zmq_msg_data(&frame), buf, size);
    if (zmq_send(self->config.pub, topic, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 4 ||
        zmq_msg_send(&frame, self->config.pub, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
}

/* Enough live ackers for a safe write of partition? */
int kv_repl_can_write(const kv_repl_t *self, uint32_t partition) {
    uint16_t nodes[KV_ACKERS];
    return s_ackers(self, partition, nodes) >= s_required(self);
}

/* The key's version in the store (0 when absent): what a condition is
 * checked against, unconfirmed writes included (they come first in the
 * partition's order; an answer showing one waits for its confirmation). */
static uint64_t s_version_of(kv_repl_t *self, const kv_msg_t *req) {
    const kv_entry_t *found = kv_store_get(self->store, req->partition, req->key.ptr, req->key.len);
    return found ? kv_entry_version(found) : 0;
}

/* What a write publishes: the op, and the entry's value and metadata. */
typedef struct {
    uint8_t op;                         /* KV_OP_SET or KV_OP_RM */
    kv_bytes_t value;                   /* SET: the value */
    kv_msg_meta_t meta;                 /* SET: version and expiry */
    char value_buf[KV_MAX_VALUE_BYTES]; /* EXPIRE: the value, copied */
} s_update_t;

/* The absolute deadline of a write given ttl seconds to live now, 0 for
 * none: decided here, by the primary's clock, and carried as it is. */
static int64_t s_expiry_of(const kv_repl_t *self, uint32_t ttl) {
    return ttl ? kv_store_now(self->store) + (int64_t)ttl * 1000 : 0;
}

/* EXPIRE: the key's value again, with a new version and deadline. The
 * value is copied first: the put may move the entry it points into. */
static kv_status_t s_apply_expire(kv_repl_t *self, const kv_msg_t *req, uint64_t version,
                                  s_update_t *update) {
    const kv_entry_t *found = kv_store_get(self->store, req->partition, req->key.ptr, req->key.len);
    if (!found) return KV_STATUS_NOT_FOUND;
    size_t vlen = kv_entry_vlen(found);
    memcpy(update->value_buf, kv_entry_value(found), vlen);
    update->value = (kv_bytes_t){update->value_buf, vlen};
    update->meta = (kv_msg_meta_t){version, (uint64_t)s_expiry_of(self, req->ttl)};
    if (kv_store_put(self->store, req->partition, req->key.ptr, req->key.len, update->value_buf,
                     vlen, version, (int64_t)update->meta.expiry) != 0)
        return KV_STATUS_NO_MEMORY;
    return KV_STATUS_OK;
}

/* Applies a write as version (the seq it will be published at), and lays
 * out in update what the replicas are sent. */
static kv_status_t s_apply_write(kv_repl_t *self, const kv_msg_t *req, uint64_t version,
                                 s_update_t *update) {
    update->op = req->type == KV_MSG_RM ? KV_OP_RM : KV_OP_SET;
    update->value = req->value;
    update->meta = (kv_msg_meta_t){0, 0};
    if (req->type == KV_MSG_EXPIRE) return s_apply_expire(self, req, version, update);
    if (req->type == KV_MSG_SET) {
        update->meta = (kv_msg_meta_t){version, (uint64_t)s_expiry_of(self, req->ttl)};
        if (kv_store_put(self->store, req->partition, req->key.ptr, req->key.len, req->value.ptr,
                         req->value.len, version, (int64_t)update->meta.expiry) != 0)
            return KV_STATUS_NO_MEMORY;
        return KV_STATUS_OK;
    }
    if (!kv_store_get(self->store, req->partition, req->key.ptr, req->key.len))
        return KV_STATUS_NOT_FOUND; /* absent, or expired: its removal is the expirer's */
    if (kv_store_delete(self->store, req->partition, req->key.ptr, req->key.len) != 0)
        return KV_STATUS_NOT_FOUND;
    kv_repl_reclaim(self, req->partition); /* at the limit, /rm makes room at once */
    self->parts[req->partition].removed_seq = version;
    return KV_STATUS_OK;
}

void kv_repl_primary_write(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_repl_part_t *part = &self->parts[req->partition];
    if (!kv_repl_can_write(self, req->partition)) { /* refuse before applying anything */
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_UNAVAILABLE, NULL, 0, 0);
        return;
    }
    if (kv_repl_tx_locked(self, req->partition, req->key.ptr, req->key.len, 1)) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_LOCKED, NULL, 0, 0);
        return;
    }
    if (req->has_if_version) {
        uint64_t current = s_version_of(self, req);
        if (current != req->if_version) { /* nothing written; the answer shows current */
            kv_repl_held_t what = s_what(req, KV_STATUS_CONFLICT, current);
            s_answer_or_hold(self, identity, req, &what);
            return;
        }
    }
    if (req->type == KV_MSG_SET &&
        kv_repl_room_take(self, req->partition,
                          kv_store_put_growth(self->store, req->partition, req->key.ptr,
                                              req->key.len, req->value.len, req->ttl != 0)) != 0) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_NO_MEMORY, NULL, 0, 0);
        return; /* nothing applied, nothing replicated */
    }
    s_update_t update;
    kv_status_t status = s_apply_write(self, req, part->seq + 1, &update);
    /* A remove that found nothing wrote nothing but read the key: its 404
     * may show an unconfirmed removal (or /clear), so it waits like a read. */
    if (status == KV_STATUS_NOT_FOUND) {
        kv_repl_held_t what = s_what(req, status, 0);
        s_answer_or_hold(self, identity, req, &what);
        return;
    }
    if (status != KV_STATUS_OK) { /* nothing changed, nothing to replicate */
        kv_repl_reply(self, identity, req->req_id, status, NULL, 0, 0);
        return;
    }
    uint64_t seq = ++part->seq;
    uint64_t version = update.meta.version;
    kv_repl_primary_publish_meta(self, req->partition, update.op, seq, req->key, update.value,
                                 update.meta);
    if (s_required(self) == 0) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_OK, NULL, 0, version);
        return;
    }
    kv_repl_group_t *group = s_group_new(identity, req->req_id);
    if (group) group->version = version;
    if (!group || s_pending_add(self, part, seq, group, req->key) != 0) {
        if (group) s_group_destroy(&group);
        return; /* out of memory: no reply, the gateway answers 504 */
    }
}

void kv_repl_primary_clear(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    for (uint32_t p = 0; p < self->partitions; p++) { /* all or nothing */
        if (!kv_repl_is_primary(&self->parts[p])) continue;
        if (self->parts[p].state == KV_REPL_FENCED || !kv_repl_can_write(self, p)) {
            kv_repl_reply(self, identity, req->req_id,
                          self->parts[p].state == KV_REPL_FENCED ? KV_STATUS_MOVED
                                                                 : KV_STATUS_UNAVAILABLE,
                          NULL, 0, 0);
            return;
        }
    }
    kv_repl_group_t *group = s_group_new(identity, req->req_id);
    if (!group) return;
    group->waiting = 1; /* held until every partition is queued */
    for (uint32_t p = 0; p < self->partitions; p++) {
        kv_repl_part_t *part = &self->parts[p];
        if (!kv_repl_is_primary(part)) continue;
        kv_store_clear_data(self->store, p);
        part->removed_seq = ++part->seq;
        kv_repl_primary_publish(self, p, KV_OP_CLEAR, part->seq, (kv_bytes_t){NULL, 0},
                                (kv_bytes_t){NULL, 0});
        if (s_required(self) > 0)
            s_pending_add(self, part, part->seq, group, (kv_bytes_t){NULL, 0});
    }
    s_group_done(self, group, 1);
}

/* --- snapshots served ------------------------------------------------------ */

typedef struct {
    kv_repl_t *repl;     /* engine */
    zmq_msg_t *identity; /* the replica's DEALER */
    kv_msg_t msg;        /* SNAPSHOT header being filled */
    uint8_t *entries;    /* encoded entries of the current chunk */
    size_t cap, pos;     /* their buffer */
    int failed;          /* out of memory */
} s_snapshot_t;

static void s_snapshot_send(s_snapshot_t *snap, int more) {
    snap->msg.more = (uint8_t)more;
    snap->msg.entries = (kv_bytes_t){(const char *)snap->entries, snap->pos};
    size_t size = kv_msg_encoded_size(&snap->msg);
    zmq_msg_t frame, copy;
    if (!size || kv_mem_frame(&frame, size) != 0) {
        snap->failed = 1;
        return;
    }
    kv_msg_encode(&snap->msg, zmq_msg_data(&frame), size);
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, snap->identity);
    if (zmq_msg_send(&copy, snap->repl->config.router, ZMQ_SNDMORE) < 0 ||
        zmq_msg_send(&frame, snap->repl->config.router, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
    zmq_msg_close(&copy);
    snap->msg.chunk++;
    snap->msg.count = 0;
    snap->pos = 0;
}

static int s_snapshot_entry(const kv_entry_t *entry, void *arg) {
    s_snapshot_t *snap = arg;
    size_t need = kv_msg_entry_size(kv_entry_klen(entry), kv_entry_vlen(entry));
    if (snap->msg.count >= KV_SNAPSHOT_CHUNK || snap->cap - snap->pos < need)
        s_snapshot_send(snap, 1);
    if (snap->cap - snap->pos < need) {
        size_t cap = snap->cap * 2 + need;
        uint8_t *grown = realloc(snap->entries, cap);
        if (!grown) {
            snap->failed = 1;
            return 1;
        }
        snap->entries = grown;
        snap->cap = cap;
    }
    const kv_msg_entry_t put = kv_store_entry_wire(entry);
    kv_msg_entry_put(snap->entries, snap->cap, &snap->pos, &put);
    snap->msg.count++;
    return snap->failed;
}

/* The whole partition goes out within this call: no write can interleave,
 * so the chunks are the partition at exactly msg.seq. */
static void s_serve_snapshot(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id,
                             uint32_t partition) {
    s_snapshot_t snap = {self, identity, {.type = KV_MSG_SNAPSHOT}, NULL, 0, 0, 0};
    snap.msg.req_id = req_id;
    snap.msg.partition = partition;
    int primary = partition < self->partitions && kv_repl_is_primary(&self->parts[partition]);
    snap.msg.status = primary ? KV_STATUS_OK : KV_STATUS_MOVED;
    if (primary) {
        snap.msg.seq = self->parts[partition].seq;
        kv_store_foreach(self->store, partition, s_snapshot_entry, &snap);
    }
    if (snap.failed) {
        snap.msg.status = KV_STATUS_NO_MEMORY;
        snap.msg.count = 0;
        snap.pos = 0;
    }
    s_snapshot_send(&snap, 0);
    free(snap.entries);
    if (snap.msg.status == KV_STATUS_OK)
        kv_counters_inc(self->config.counters, self->count_snapshots_served);
}

static int s_same_peer(zmq_msg_t *a, zmq_msg_t *b) {
    return zmq_msg_size(a) == zmq_msg_size(b) &&
           memcmp(zmq_msg_data(a), zmq_msg_data(b), zmq_msg_size(a)) == 0;
}

/* Requests are queued, not served at once: a learner taking many
 * partitions asks for all of them together, and copying them all in one
 * turn of the loop would starve our heartbeats (the coordinator would think
 * us dead). A request repeated while queued (the replica retried) replaces
 * the queued one instead of adding a second copy. */
void kv_repl_primary_queue_snapshot(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    for (kv_repl_job_t *job = self->jobs; job; job = job->next)
        if (job->partition == req->partition && s_same_peer(&job->identity, identity)) {
            job->req_id = req->req_id;
            return;
        }
    kv_repl_job_t *job = calloc(1, sizeof(*job));
    if (!job) return; /* out of memory: the replica asks again after a silence */
    self->buffer_bytes += sizeof(*job);
    zmq_msg_init(&job->identity);
    zmq_msg_copy(&job->identity, identity);
    job->req_id = req->req_id;
    job->partition = req->partition;
    if (self->jobs_tail)
        self->jobs_tail->next = job;
    else
        self->jobs = job;
    self->jobs_tail = job;
}

static kv_repl_job_t *s_job_pop(kv_repl_t *self) {
    kv_repl_job_t *job = self->jobs;
    if (!job) return NULL;
    self->jobs = job->next;
    if (!self->jobs) self->jobs_tail = NULL;
    return job;
}

static void s_job_free(kv_repl_t *self, kv_repl_job_t *job) {
    self->buffer_bytes -= sizeof(*job);
    zmq_msg_close(&job->identity);
    free(job);
}

void kv_repl_primary_serve_jobs(kv_repl_t *self, int64_t budget_us) {
    int64_t start = kv_clock_mono_us();
    kv_repl_job_t *job;
    /* Chunks sent wait in libzmq until the replica takes them: while more
     * than KV_SNAPSHOT_BYTES_MAX of them wait, the next jobs wait too (a
     * slow replica must not make its primary run out of memory). */
    while (kv_mem_frame_bytes() < KV_SNAPSHOT_BYTES_MAX && (job = s_job_pop(self)) != NULL) {
        s_serve_snapshot(self, &job->identity, job->req_id, job->partition);
        s_job_free(self, job);
        if (kv_clock_mono_us() - start >= budget_us) break;
    }
}

void kv_repl_primary_drop_jobs(kv_repl_t *self) {
    kv_repl_job_t *job;
    while ((job = s_job_pop(self)) != NULL) s_job_free(self, job);
}

void kv_repl_primary_beacon(kv_repl_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now < self->next_beacon || self->self < 0) return;
    self->next_beacon = now + KV_BEACON_MS;
    uint8_t *items = malloc((size_t)self->partitions * KV_MSG_ITEM_SIZE);
    if (!items) return;
    size_t count = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        if (!kv_repl_is_primary(&self->parts[p])) continue;
        kv_msg_item_t item = {p, self->parts[p].seq, self->parts[p].state == KV_REPL_FENCED};
        kv_msg_item_write(items, count++, &item);
    }
    kv_msg_t beacon = {.type = KV_MSG_BEACON, .sender = (uint16_t)self->self};
    beacon.epoch = kv_repl_epoch(self);
    beacon.items = (kv_bytes_t){(const char *)items, count * KV_MSG_ITEM_SIZE};
    size_t size = kv_msg_encoded_size(&beacon);
    uint8_t *buf = malloc(size);
    uint8_t topic[4];
    kv_repl_topic(KV_TOPIC_BEACON, topic);
    if (buf && kv_msg_encode(&beacon, buf, size) == size &&
        zmq_send(self->config.pub, topic, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 4)
        zmq_send(self->config.pub, buf, size, ZMQ_DONTWAIT);
    free(buf);
    free(items);
}

void kv_repl_primary_expire(kv_repl_t *self, kv_repl_part_t *part, int64_t now) {
    while (part->held && now - part->held->since > KV_HOLD_MS) { /* replicas silent */
        kv_repl_held_t *held = s_held_pop(part);
        kv_repl_reply(self, &held->identity, held->req_id, KV_STATUS_UNAVAILABLE, NULL, 0, 0);
        s_held_free(self, held);
    }
    /* a commit whose gateway died: resolved in about 2 s, the gateway asks again */
    while (part->locked && now - part->locked->since > KV_HOLD_MS) {
        kv_repl_held_t *held = s_list_pop(&part->locked, &part->locked_tail);
        kv_repl_reply(self, &held->identity, held->req_id, KV_STATUS_LOCKED, NULL, 0, 0);
        s_held_free(self, held);
    }
    while (part->pending && now - part->pending->since > KV_PENDING_EXPIRY_MS) {
        kv_repl_pending_t *pending = part->pending;
        part->pending = pending->next;
        if (!part->pending) part->pending_tail = NULL;
        s_group_done(self, pending->group, 0);
        s_pending_free(self, pending);
    }
}
