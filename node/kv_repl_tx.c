/*  kv_repl_tx.c: transactions at a primary (the protocol is in kv_tx.h and
 *  docs/transactions.md).
 *
 *  Every change a transaction makes here (an intent left or removed, a
 *  record written or forgotten, a key written at commit) is a write of the
 *  partition like any other: numbered, applied, published, and answered
 *  only once the replicas confirmed it. Answers that change nothing (a
 *  conflict, a repeated decision) wait like reads for what was applied
 *  before them. So whatever a gateway or a participant learns from us
 *  survives our failover.
 */
#include "kv_repl_int.h"

#include <inttypes.h>

#include "kv_clock.h"
#include "kv_log.h"
#include "kv_tx.h"
#include "kv_wire.h"

enum {
    C_PREPARES,  /* prepares that left intents */
    C_ONE_PHASE, /* one-partition transactions applied at once */
    C_CONFLICTS, /* prepares refused: a condition failed */
    C_GAVE_WAY,  /* prepares refused: another transaction held a key */
    C_COMMITS,   /* commit records written */
    C_ABORTS,    /* transactions aborted at their record partition */
    C_RESOLVES,  /* RESOLVEs sent about expired intents */
    C_FINISHED,  /* intents applied or removed */
    C_SWEPT,     /* records forgotten by their partition's sweep */
    C_COUNTERS
};

void kv_repl_tx_register_counters(kv_repl_t *self) {
    static const char *const names[C_COUNTERS][2] = {
        {"kv_tx_prepares_total", "transaction prepares that left intents"},
        {"kv_tx_one_phase_total", "one-partition transactions applied at once"},
        {"kv_tx_conflicts_total", "prepares refused: a condition did not hold"},
        {"kv_tx_gave_way_total", "prepares refused: another transaction held a key"},
        {"kv_tx_commits_total", "commit records written (commit points)"},
        {"kv_tx_aborts_total", "transactions aborted at their record partition"},
        {"kv_tx_resolves_total", "questions about expired intents sent to record partitions"},
        {"kv_tx_intents_finished_total", "intents applied or removed"},
        {"kv_tx_records_swept_total", "commit records forgotten by their own partition"},
    };
    for (int i = 0; i < C_COUNTERS; i++)
        self->count_tx[i] = kv_counters_register(self->config.counters, names[i][0], names[i][1]);
}

static void s_count(kv_repl_t *self, int counter, uint64_t n) {
    kv_counters_add(self->config.counters, self->count_tx[counter], n);
}

/* --- what the partition holds -------------------------------------------------- */

/* The intent on key, if any (a lookup only when the partition has
 * metadata at all: the plain requests' path costs one load). */
static int s_intent(kv_repl_t *self, uint32_t partition, const char *key, size_t klen,
                    kv_tx_intent_t *intent) {
    if (klen == 0 || klen > KV_MAX_KEY_BYTES || kv_store_meta_size(self->store, partition) == 0)
        return 0;
    char meta[KV_TX_INTENT_KEY_MAX];
    size_t mlen = kv_tx_intent_key(meta, key, klen);
    const kv_entry_t *entry = kv_store_get(self->store, partition, meta, mlen);
    return entry && kv_tx_intent_decode(kv_entry_value(entry), kv_entry_vlen(entry), intent) == 0;
}

int kv_repl_tx_locked(kv_repl_t *self, uint32_t partition, const char *key, size_t klen,
                      int write) {
    kv_tx_intent_t intent;
    if (!s_intent(self, partition, key, klen, &intent)) return 0;
    return write || intent.write != KV_TXOP_NONE;
}

static const kv_entry_t *s_entry(kv_repl_t *self, uint32_t partition, kv_bytes_t key) {
    return kv_store_get(self->store, partition, key.ptr, key.len);
}

static int s_has_record(kv_repl_t *self, uint32_t partition, uint64_t txid) {
    char key[KV_TX_RECORD_KEY_LEN];
    kv_tx_record_key(key, txid);
    return kv_store_get(self->store, partition, key, sizeof key) != NULL;
}

/* One intent of a transaction, copied out of the store (which the commit
 * then changes). */
typedef struct {
    char key[KV_MAX_KEY_BYTES];
    size_t klen;
    kv_tx_intent_t intent;
    char value[KV_MAX_VALUE_BYTES];
} s_owned_t;

typedef struct {
    uint64_t txid;   /* whose intents */
    s_owned_t *list; /* found so far */
    size_t count, cap;
    int expired;    /* one of them is past its deadline */
    int64_t now_ms; /* wall clock */
    int failed;     /* out of memory */
} s_collect_t;

/* Whether a metadata entry is a well-formed intent; then its key and it. */
static int s_intent_entry(const kv_entry_t *entry, kv_bytes_t *key, kv_tx_intent_t *intent) {
    return kv_tx_intent_key_parse(kv_entry_key(entry), kv_entry_klen(entry), key) &&
           key->len <= KV_MAX_KEY_BYTES &&
           kv_tx_intent_decode(kv_entry_value(entry), kv_entry_vlen(entry), intent) == 0 &&
           intent->value.len <= KV_MAX_VALUE_BYTES;
}

static int s_collect_entry(const kv_entry_t *entry, void *arg) {
    s_collect_t *c = arg;
    kv_bytes_t key;
    kv_tx_intent_t intent;
    if (!s_intent_entry(entry, &key, &intent) || intent.txid != c->txid) return 0;
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        s_owned_t *list = realloc(c->list, cap * sizeof(*list));
        if (!list) {
            c->failed = 1;
            return 1;
        }
        c->list = list;
        c->cap = cap;
    }
    s_owned_t *owned = &c->list[c->count++];
    memcpy(owned->key, key.ptr, key.len);
    owned->klen = key.len;
    owned->intent = intent;
    if (intent.value.len) memcpy(owned->value, intent.value.ptr, intent.value.len);
    owned->intent.value.ptr = owned->value;
    if (intent.deadline_ms < c->now_ms) c->expired = 1;
    return 0;
}

/* The intents txid holds in partition (c->list, freed by the caller). */
static void s_collect(kv_repl_t *self, uint32_t partition, uint64_t txid, s_collect_t *c) {
    *c = (s_collect_t){.txid = txid, .now_ms = kv_clock_wall_ms()};
    if (kv_store_meta_size(self->store, partition) > 0)
        kv_store_foreach_meta(self->store, partition, s_collect_entry, c);
}

/* --- writing as the primary ---------------------------------------------------- */

/* Writes key = value (version 0: the seq it lands at; expiry 0: none):
 * applied, numbered, published, part of group's answer. Returns 0, -1 when
 * out of memory. */
static int s_put(kv_repl_t *self, uint32_t partition, kv_repl_group_t *group, kv_bytes_t key,
                 kv_bytes_t value, uint64_t version, int64_t expiry) {
    kv_repl_part_t *part = &self->parts[partition];
    uint64_t seq = part->seq + 1;
    uint64_t stored = version ? version : seq;
    if (kv_store_put(self->store, partition, key.ptr, key.len, value.ptr, value.len, stored,
                     expiry) != 0)
        return -1;
    part->seq = seq;
    kv_repl_primary_publish_meta(self, partition, KV_OP_SET, seq, key, value,
                                 (kv_msg_meta_t){stored, (uint64_t)expiry});
    kv_repl_group_write(self, part, group, seq, key);
    return 0;
}

/* Removes key (published even when absent: every write of a transaction
 * takes one seq, which is how the gateway knows the versions). */
static void s_del(kv_repl_t *self, uint32_t partition, kv_repl_group_t *group, kv_bytes_t key) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_store_delete(self->store, partition, key.ptr, key.len);
    uint64_t seq = ++part->seq;
    if (!kv_store_is_meta(key.ptr, key.len)) part->removed_seq = seq;
    kv_repl_primary_publish(self, partition, KV_OP_RM, seq, key, (kv_bytes_t){NULL, 0});
    kv_repl_group_write(self, part, group, seq, key);
}

/* Applies (commit) or drops the intents of a transaction collected from
 * partition (c), removing them. */
static void s_finish_intents(kv_repl_t *self, uint32_t partition, const s_collect_t *c, int commit,
                             kv_repl_group_t *group) {
    uint64_t txid = c->txid;
    for (size_t i = 0; i < c->count; i++) {
        const s_owned_t *owned = &c->list[i];
        kv_bytes_t key = {owned->key, owned->klen};
        if (commit && owned->intent.write == KV_TXOP_SET &&
            s_put(self, partition, group, key, owned->intent.value, owned->intent.version,
                  owned->intent.expiry) != 0)
            kv_log_error("out of memory committing transaction %016" PRIx64, txid);
        if (commit && owned->intent.write == KV_TXOP_RM) s_del(self, partition, group, key);
        char meta[KV_TX_INTENT_KEY_MAX];
        s_del(self, partition, group, (kv_bytes_t){meta, kv_tx_intent_key(meta, key.ptr, key.len)});
    }
    s_count(self, C_FINISHED, c->count);
    if (c->count) kv_repl_primary_unlocked(self, partition);
}

/* --- answers ------------------------------------------------------------------- */

static uint8_t *s_status_frame(kv_repl_t *self, uint64_t req_id, kv_status_t status, size_t *len) {
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = (uint8_t)status};
    return kv_repl_encode(self, &reply, len);
}

/* Answers identity (never when NULL) with frame, or a plain status when
 * frame is NULL, once what the partition applied so far is confirmed. */
static void s_decided(kv_repl_t *self, zmq_msg_t *identity, uint32_t partition, uint64_t req_id,
                      kv_status_t status, uint8_t *frame, size_t len) {
    if (!identity) {
        free(frame);
        return;
    }
    kv_repl_held_t what = {.type = KV_MSG_TX_COMMIT, .status = (uint8_t)status};
    what.frame = frame;
    what.frame_len = len;
    kv_repl_answer_or_hold(self, identity, partition, req_id, &what);
}

/* Carries out a decision of the record partition (kv_tx_decide, taken on
 * the intents c holds) and answers with frame (commit: NULL answers OK)
 * once it is confirmed. */
static void s_act(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id, uint32_t partition,
                  const s_collect_t *c, kv_tx_action_t action, kv_bytes_t participants,
                  uint8_t *frame, size_t len) {
    uint64_t txid = c->txid;
    int commit = action == KV_TX_ACT_COMMIT;
    int record = commit && !s_has_record(self, partition, txid);
    int writes = record || ((commit || action == KV_TX_ACT_ABORT) && c->count > 0);
    if (!writes || !kv_repl_can_write(self, partition)) {
        /* nothing to write (or no safe write now: the asker asks again) */
        if (writes) {
            free(frame);
            frame = s_status_frame(self, req_id, KV_STATUS_UNAVAILABLE, &len);
        }
        s_decided(self, identity, partition, req_id, KV_STATUS_OK, frame, len);
        return;
    }
    kv_repl_group_t *group = kv_repl_group_begin(identity, req_id, frame, len);
    if (record) {
        char key[KV_TX_RECORD_KEY_LEN];
        uint8_t value[KV_TX_RECORD_MAX];
        kv_tx_record_key(key, txid);
        size_t vlen = kv_tx_record_encode(value, kv_clock_wall_ms(), participants);
        if (s_put(self, partition, group, (kv_bytes_t){key, sizeof key},
                  (kv_bytes_t){(const char *)value, vlen}, 0, 0) != 0) {
            kv_log_error("out of memory writing the record of %016" PRIx64, txid);
            kv_repl_group_end(self, group); /* nothing written: not answered OK */
            return;
        }
        s_count(self, C_COMMITS, 1);
    }
    s_finish_intents(self, partition, c, commit, group);
    if (action == KV_TX_ACT_ABORT) s_count(self, C_ABORTS, 1);
    kv_log_debug("transaction %016" PRIx64 " at partition %u: %s", txid, partition,
                 kv_tx_action_name(action));
    kv_repl_group_end(self, group);
}

/* Takes event to the record partition's state machine for txid, then
 * carries out what it decides (no answer when identity is NULL, or for a
 * decision to wait: the asker asks again). The intents are collected once,
 * for the decision and the action both. */
static void s_decide_and_act(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id,
                             uint32_t partition, uint64_t txid, kv_tx_event_t event,
                             kv_bytes_t participants, const kv_msg_t *answer) {
    s_collect_t c;
    s_collect(self, partition, txid, &c);
    kv_tx_state_t state = kv_tx_state(s_has_record(self, partition, txid), c.count);
    kv_tx_action_t action = kv_tx_decide(state, event, c.expired);
    size_t len = 0;
    uint8_t *frame = NULL;                    /* a COMMIT that commits: a plain OK */
    if (action != KV_TX_ACT_WAIT && answer) { /* a RESOLVE's: a FINISH with the decision */
        kv_msg_t finish = *answer;
        finish.status = action == KV_TX_ACT_COMMIT ? KV_STATUS_OK : KV_STATUS_TX_ABORTED;
        frame = kv_repl_encode(self, &finish, &len);
    } else if (action != KV_TX_ACT_COMMIT && action != KV_TX_ACT_WAIT && identity) {
        frame = s_status_frame(self, req_id, KV_STATUS_TX_ABORTED, &len);
    }
    if (event == KV_TX_EV_EXPIRE)
        kv_log_info("transaction %016" PRIx64 " orphaned at its record partition %u: %s", txid,
                    partition, kv_tx_action_name(action));
    if (action != KV_TX_ACT_WAIT && (frame || !answer))
        s_act(self, identity, req_id, partition, &c, action, participants, frame, len);
    free(c.list);
}

/* --- prepare -------------------------------------------------------------------- */

typedef struct {
    uint8_t *buf; /* ENTRY records */
    size_t cap, pos;
    uint32_t count;
} s_entries_t;

static int s_entries_add(s_entries_t *e, kv_bytes_t key, kv_bytes_t value, uint64_t version) {
    size_t need = kv_msg_entry_size(key.len, value.len);
    if (e->cap - e->pos < need) {
        size_t cap = e->cap * 2 + need;
        uint8_t *grown = realloc(e->buf, cap);
        if (!grown) return -1;
        e->buf = grown;
        e->cap = cap;
    }
    const kv_msg_entry_t entry = {key, value, {version, 0}};
    e->count++;
    return kv_msg_entry_put(e->buf, e->cap, &e->pos, &entry);
}

/* The TX_REPLY for req with entries (freed here), encoded. */
static uint8_t *s_tx_reply(kv_repl_t *self, const kv_msg_t *req, kv_status_t status, uint64_t seq,
                           s_entries_t *e, size_t *len) {
    kv_msg_t reply = {.type = KV_MSG_TX_REPLY, .req_id = req->req_id, .status = (uint8_t)status};
    reply.seq = seq;
    reply.count = e->count;
    reply.entries = (kv_bytes_t){(const char *)e->buf, e->pos};
    uint8_t *frame = kv_repl_encode(self, &reply, len);
    free(e->buf);
    *e = (s_entries_t){0};
    return frame;
}

static uint64_t s_version(kv_repl_t *self, uint32_t partition, kv_bytes_t key) {
    const kv_entry_t *found = s_entry(self, partition, key);
    return found ? kv_entry_version(found) : 0;
}

/* Checks every op: another transaction's intent (LOCKED when it will
 * write the key, TX_ABORTED when it reads it), or the conditions that fail
 * (CONFLICT, listed in e), or OK. */
static kv_status_t s_check(kv_repl_t *self, const kv_msg_t *req, s_entries_t *e) {
    size_t pos = 0;
    kv_msg_txop_t op;
    kv_status_t status = KV_STATUS_OK;
    while (kv_msg_txop_next(req, &pos, &op) == 0) {
        kv_tx_intent_t held = {0};
        int locked = s_intent(self, req->partition, op.key.ptr, op.key.len, &held);
        uint64_t current = s_version(self, req->partition, op.key);
        kv_tx_check_t check = kv_tx_check_key(locked ? &held : NULL, req->txid, &op, current);
        if (check == KV_TX_KEY_ABORT) /* a writer's lock, or a reader's */
            return held.write != KV_TXOP_NONE ? KV_STATUS_LOCKED : KV_STATUS_TX_ABORTED;
        if (check == KV_TX_KEY_CONFLICT) {
            status = KV_STATUS_CONFLICT;
            if (s_entries_add(e, op.key, (kv_bytes_t){NULL, 0}, current) != 0)
                return KV_STATUS_UNAVAILABLE;
        }
    }
    return status;
}

/* What each op reads, before anything is written: its key, the value when
 * asked (get.), the version. */
static int s_reads(kv_repl_t *self, const kv_msg_t *req, s_entries_t *e) {
    size_t pos = 0;
    kv_msg_txop_t op;
    while (kv_msg_txop_next(req, &pos, &op) == 0) {
        const kv_entry_t *found = s_entry(self, req->partition, op.key);
        kv_bytes_t value = {NULL, 0};
        if (found && op.get) value = (kv_bytes_t){kv_entry_value(found), kv_entry_vlen(found)};
        if (s_entries_add(e, op.key, value, found ? kv_entry_version(found) : 0) != 0) return -1;
    }
    return 0;
}

/* The expiry ttl.'s seconds give op i of req (0: none), decided now by
 * our clock, as a /set's. */
static int64_t s_op_expiry(kv_repl_t *self, const kv_msg_t *req, size_t i) {
    if (req->ttls.len < (i + 1) * 4) return 0;
    kv_reader_t r = {(const uint8_t *)req->ttls.ptr, req->ttls.len, i * 4, 0};
    uint64_t ttl = kv_wire_get_uint(&r, 4);
    return ttl ? kv_store_now(self->store) + (int64_t)ttl * 1000 : 0;
}

/* Leaves the intent of op (its version: the seq it lands at). */
static void s_leave_intent(kv_repl_t *self, const kv_msg_t *req, const kv_msg_txop_t *op,
                           int64_t deadline, int64_t expiry, kv_repl_group_t *group) {
    kv_tx_intent_t intent = {req->txid, req->record, op->write, 0, deadline, op->value, expiry};
    intent.version = self->parts[req->partition].seq + 1;
    uint8_t value[KV_TX_INTENT_HEAD + 8 + KV_MAX_VALUE_BYTES];
    char meta[KV_TX_INTENT_KEY_MAX];
    size_t vlen = kv_tx_intent_encode(&intent, value, sizeof value);
    size_t mlen = kv_tx_intent_key(meta, op->key.ptr, op->key.len);
    if (!vlen || s_put(self, req->partition, group, (kv_bytes_t){meta, mlen},
                       (kv_bytes_t){(const char *)value, vlen}, 0, 0) != 0)
        kv_log_error("out of memory preparing transaction %016" PRIx64, req->txid);
}

/* Writes: the intents (writes first, then the locks of reads and
 * conditions), or for a one-partition transaction the keys themselves.
 * The k-th write of the request takes seq first + k either way. */
static void s_apply_prepare(kv_repl_t *self, const kv_msg_t *req, kv_repl_group_t *group) {
    int64_t deadline = kv_clock_wall_ms() + KV_TX_INTENT_MS;
    for (int writes = 1; writes >= 0; writes--) {
        size_t pos = 0;
        kv_msg_txop_t op;
        for (size_t i = 0; kv_msg_txop_next(req, &pos, &op) == 0; i++) {
            if ((op.write != KV_TXOP_NONE) != writes) continue;
            int64_t expiry = op.write == KV_TXOP_SET ? s_op_expiry(self, req, i) : 0;
            if (!req->commit)
                s_leave_intent(self, req, &op, deadline, expiry, group);
            else if (op.write == KV_TXOP_SET &&
                     s_put(self, req->partition, group, op.key, op.value, 0, expiry) != 0)
                kv_log_error("out of memory applying transaction %016" PRIx64, req->txid);
            else if (op.write == KV_TXOP_RM)
                s_del(self, req->partition, group, op.key);
        }
        if (req->commit) return; /* reads take no lock: nothing else happens in between */
    }
}

/* The bytes a prepare would add: its intents (none for a one-partition
 * transaction) and the values its SETs leave. 0 when its writes do not
 * grow the data (removals, smaller values): those are never refused, the
 * intents' bytes being gone with the transaction. */
static int64_t s_prepare_growth(kv_repl_t *self, const kv_msg_t *req) {
    int64_t data = 0, intents = 0;
    size_t pos = 0, i = 0;
    kv_msg_txop_t op;
    for (; kv_msg_txop_next(req, &pos, &op) == 0; i++) {
        int expiring = s_op_expiry(self, req, i) != 0;
        if (op.write == KV_TXOP_SET)
            data += kv_store_put_growth(self->store, req->partition, op.key.ptr, op.key.len,
                                        op.value.len, expiring);
        size_t value = op.write == KV_TXOP_SET ? op.value.len + (expiring ? 8 : 0) : 0;
        if (!req->commit) /* an intent: "\0i" + the key, never expiring itself */
            intents += (int64_t)kv_dict_entry_bytes(op.key.len + 2, KV_TX_INTENT_HEAD + value, 0);
    }
    return data > 0 ? data + intents : 0;
}

/* Queues a reader's prepare behind a writer's intents (the partition's
 * locked list, run again when intents go). Only readers wait and only for
 * writers, and writers never wait: no cycle of waits, no deadlock. */
static int s_wait(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    size_t len = kv_msg_encoded_size(req);
    uint8_t *frame = len ? malloc(len) : NULL;
    if (!frame || kv_msg_encode(req, frame, len) != len) {
        free(frame);
        return -1;
    }
    kv_repl_held_t what = {.type = KV_MSG_TX_PREPARE, .frame = frame, .frame_len = len};
    if (kv_repl_primary_wait_unlock(self, identity, req->partition, req->req_id, &what) != 0) {
        free(frame);
        return -1;
    }
    return 0;
}

/* ttls, when given, holds one u32 per op, each within KV_MAX_TTL_S. */
static int s_ttls_valid(const kv_msg_t *req) {
    if (req->ttls.len == 0) return 1;
    size_t pos = 0, ops = 0;
    kv_msg_txop_t op;
    while (kv_msg_txop_next(req, &pos, &op) == 0) ops++;
    if (req->ttls.len != ops * 4) return 0;
    kv_reader_t r = {(const uint8_t *)req->ttls.ptr, req->ttls.len, 0, 0};
    for (size_t i = 0; i < ops; i++)
        if (kv_wire_get_uint(&r, 4) > KV_MAX_TTL_S) return 0;
    return 1;
}

void kv_repl_tx_prepare(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    if (!s_ttls_valid(req)) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_BAD_REQUEST, NULL, 0, 0);
        return;
    }
    if (!kv_repl_can_write(self, req->partition)) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_UNAVAILABLE, NULL, 0, 0);
        return;
    }
    s_entries_t e = {0};
    size_t len = 0;
    kv_status_t status = s_check(self, req, &e);
    if (status == KV_STATUS_LOCKED && req->wait && s_wait(self, identity, req) == 0) {
        free(e.buf); /* a reader waits for the writer's commit, then runs again */
        return;
    }
    if (status == KV_STATUS_LOCKED) status = KV_STATUS_TX_ABORTED; /* writers never wait */
    if (status == KV_STATUS_TX_ABORTED || status == KV_STATUS_UNAVAILABLE) {
        free(e.buf);
        if (status == KV_STATUS_TX_ABORTED) s_count(self, C_GAVE_WAY, 1);
        kv_repl_reply(self, identity, req->req_id, status, NULL, 0, 0); /* nothing shown */
        return;
    }
    if (status == KV_STATUS_CONFLICT) { /* shows versions: once they are confirmed */
        s_count(self, C_CONFLICTS, 1);
        uint8_t *frame = s_tx_reply(self, req, status, 0, &e, &len);
        s_decided(self, identity, req->partition, req->req_id, KV_STATUS_CONFLICT, frame, len);
        return;
    }
    if (kv_repl_room_take(self, req->partition, s_prepare_growth(self, req)) != 0) {
        free(e.buf);
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_NO_MEMORY, NULL, 0, 0);
        return; /* before any intent is left */
    }
    uint64_t first = self->parts[req->partition].seq + 1;
    uint8_t *frame =
        s_reads(self, req, &e) == 0 ? s_tx_reply(self, req, status, first, &e, &len) : NULL;
    free(e.buf);
    if (!frame) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_UNAVAILABLE, NULL, 0, 0);
        return;
    }
    kv_repl_group_t *group = kv_repl_group_begin(identity, req->req_id, frame, len);
    s_apply_prepare(self, req, group);
    s_count(self, req->commit ? C_ONE_PHASE : C_PREPARES, 1);
    kv_repl_group_end(self, group);
}

/* --- commit, finish, resolve ---------------------------------------------------- */

void kv_repl_tx_commit(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    s_decide_and_act(self, identity, req->req_id, req->partition, req->txid, KV_TX_EV_COMMIT,
                     req->items, NULL);
}

void kv_repl_tx_finish(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_repl_group_t *group = NULL;
    s_collect_t c;
    s_collect(self, req->partition, req->txid, &c);
    int record = s_has_record(self, req->partition, req->txid);
    /* The record is the decision: where it exists nothing may abort (no
     * sender should ask it, but a decision is never taken twice). */
    int commit = req->status == KV_STATUS_OK || record;
    if ((c.count == 0 && !record) || !kv_repl_can_write(self, req->partition)) {
        s_decided(self, identity, req->partition, req->req_id,
                  c.count || record ? KV_STATUS_UNAVAILABLE : KV_STATUS_OK, NULL, 0);
        free(c.list);
        return;
    }
    group = kv_repl_group_begin(identity, req->req_id, NULL, 0);
    s_finish_intents(self, req->partition, &c, commit, group);
    free(c.list);
    if (record) { /* every participant finished: the record is no longer needed */
        char key[KV_TX_RECORD_KEY_LEN];
        kv_tx_record_key(key, req->txid);
        s_del(self, req->partition, group, (kv_bytes_t){key, sizeof key});
    }
    kv_repl_group_end(self, group);
}

void kv_repl_tx_resolve(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    /* The answer is a FINISH of the asker's partition; req_id 1 means
     * "answer", though the FINISH itself asks for no reply. */
    const kv_msg_t answer = {
        .type = KV_MSG_TX_FINISH, .partition = req->participant, .txid = req->txid};
    s_decide_and_act(self, identity, 1, req->partition, req->txid, KV_TX_EV_RESOLVE,
                     (kv_bytes_t){NULL, 0}, &answer);
}

/* --- expired intents -------------------------------------------------------------- */

typedef struct {
    uint64_t txid;
    uint32_t record;
} s_orphan_t;

#define S_ORPHANS 64 /* per partition per walk: the rest next time */

/* What one walk over a partition's metadata found: the transactions whose
 * intents expired (their owner is presumed dead), and the commit records
 * older than KV_TX_SWEEP_MS (no gateway forgot them). */
typedef struct {
    int64_t now_ms;                /* wall clock */
    s_orphan_t orphans[S_ORPHANS]; /* one per transaction */
    size_t orphan_count;
    uint64_t old_records[S_ORPHANS]; /* their txids */
    size_t old_count;
} s_walk_t;

/* Asks the record partition's primary about txid (it may be us: our
 * DEALERs reach our own socket too); its answer is a FINISH. */
static void s_ask(kv_repl_t *self, uint32_t partition, const s_orphan_t *orphan) {
    if (orphan->record >= self->partitions) return;
    uint16_t node = kv_table_owner(self->table, orphan->record, 0);
    kv_msg_t ask = {.type = KV_MSG_TX_RESOLVE, .partition = orphan->record, .txid = orphan->txid};
    ask.epoch = kv_repl_epoch(self);
    ask.participant = partition;
    uint8_t buf[64];
    size_t size = kv_msg_encode(&ask, buf, sizeof buf);
    if (node == KV_NO_NODE || !size || kv_peers_send(self->peers, node, buf, size) != 0) return;
    s_count(self, C_RESOLVES, 1);
    self->tx_asking_until = kv_clock_mono_ms() + 1000;
    kv_repl_want_peers(self, 1);
}

/* Resolves the intents of partition whose owner is presumed dead. */
static void s_resolve_partition(kv_repl_t *self, uint32_t partition, const s_walk_t *walk) {
    for (size_t i = 0; i < walk->orphan_count; i++) {
        const s_orphan_t *orphan = &walk->orphans[i];
        if (orphan->record != partition) {
            s_ask(self, partition, orphan);
            continue;
        }
        s_decide_and_act(self, NULL, 0, partition, orphan->txid, KV_TX_EV_EXPIRE,
                         (kv_bytes_t){NULL, 0}, NULL);
    }
}

/* --- records no gateway forgot ------------------------------------------------------ */

static void s_forget(kv_repl_t *self, uint32_t partition, uint64_t txid) {
    char key[KV_TX_RECORD_KEY_LEN];
    kv_tx_record_key(key, txid);
    if (partition >= self->partitions || self->parts[partition].state != KV_REPL_PRIMARY ||
        !kv_store_get(self->store, partition, key, sizeof key) ||
        !kv_repl_can_write(self, partition))
        return;
    s_del(self, partition, NULL, (kv_bytes_t){key, sizeof key});
    s_count(self, C_SWEPT, 1);
}

#define S_SWEEP_WAIT_MS 2000 /* a sweep unanswered this long is tried again */

static kv_repl_sweep_t *s_sweep_slot(kv_repl_t *self, uint64_t txid, int64_t now) {
    kv_repl_sweep_t *free_slot = NULL;
    for (int i = 0; i < KV_TX_SWEEPS; i++) {
        kv_repl_sweep_t *sweep = &self->tx_sweeps[i];
        int live = sweep->req_id && now - sweep->sent < S_SWEEP_WAIT_MS;
        if (live && sweep->txid == txid) return NULL; /* already asked */
        if (!live && !free_slot) free_slot = sweep;
    }
    return free_slot;
}

/* A record older than KV_TX_SWEEP_MS: no gateway forgot it (its own died
 * after the commit point). Each participant is sent FINISH(commit): it
 * applies what intents remain and answers once that is confirmed; once
 * all said OK no intent of the transaction is left anywhere, and the
 * record may go. */
static void s_sweep(kv_repl_t *self, uint32_t partition, uint64_t txid, const uint32_t *parts,
                    int count) {
    int64_t now = kv_clock_mono_ms();
    if (count == 0) {
        s_forget(self, partition, txid);
        return;
    }
    kv_repl_sweep_t *sweep = s_sweep_slot(self, txid, now);
    if (!sweep) return; /* in flight, or too many at once: a later walk */
    *sweep = (kv_repl_sweep_t){++self->next_req, txid, partition, (uint32_t)count, now};
    for (int i = 0; i < count; i++) {
        uint16_t node =
            parts[i] < self->partitions ? kv_table_owner(self->table, parts[i], 0) : KV_NO_NODE;
        kv_msg_t finish = {.type = KV_MSG_TX_FINISH, .req_id = sweep->req_id, .txid = txid};
        finish.partition = parts[i];
        finish.epoch = kv_repl_epoch(self);
        finish.status = KV_STATUS_OK;
        uint8_t buf[64];
        size_t size = kv_msg_encode(&finish, buf, sizeof buf);
        if (node != KV_NO_NODE && size) kv_peers_send(self->peers, node, buf, size);
    }
    self->tx_asking_until = now + S_SWEEP_WAIT_MS;
    kv_repl_want_peers(self, 1);
}

void kv_repl_tx_on_reply(kv_repl_t *self, const kv_msg_t *reply) {
    for (int i = 0; reply->req_id && i < KV_TX_SWEEPS; i++) {
        kv_repl_sweep_t *sweep = &self->tx_sweeps[i];
        if (sweep->req_id != reply->req_id) continue;
        if (reply->status == KV_STATUS_OK && --sweep->waiting == 0) {
            s_forget(self, sweep->record, sweep->txid);
            sweep->req_id = 0;
        }
        return;
    }
}

/* The txid of a record key, or 0 when key is no record. */
static uint64_t s_record_txid(const char *key, size_t klen) {
    if (klen != KV_TX_RECORD_KEY_LEN || key[0] != '\0' || key[1] != 'r') return 0;
    kv_reader_t r = {(const uint8_t *)key + 2, 8, 0, 0};
    return kv_wire_get_uint(&r, 8);
}

static void s_walk_intent(s_walk_t *walk, const kv_tx_intent_t *intent) {
    if (intent->deadline_ms >= walk->now_ms || walk->orphan_count == S_ORPHANS) return;
    for (size_t i = 0; i < walk->orphan_count; i++)
        if (walk->orphans[i].txid == intent->txid) return;
    walk->orphans[walk->orphan_count++] = (s_orphan_t){intent->txid, intent->record};
}

static void s_walk_record(s_walk_t *walk, const kv_entry_t *entry, uint64_t txid) {
    uint32_t parts[KV_TX_MAX_OPS];
    int64_t written = 0;
    if (walk->old_count == S_ORPHANS ||
        kv_tx_record_decode(kv_entry_value(entry), kv_entry_vlen(entry), &written, parts) < 0 ||
        walk->now_ms - written < KV_TX_SWEEP_MS)
        return;
    walk->old_records[walk->old_count++] = txid;
}

static int s_walk_entry(const kv_entry_t *entry, void *arg) {
    s_walk_t *walk = arg;
    kv_bytes_t key;
    kv_tx_intent_t intent;
    uint64_t txid = s_record_txid(kv_entry_key(entry), kv_entry_klen(entry));
    if (s_intent_entry(entry, &key, &intent))
        s_walk_intent(walk, &intent);
    else if (txid)
        s_walk_record(walk, entry, txid);
    return walk->orphan_count == S_ORPHANS && walk->old_count == S_ORPHANS;
}

/* Sweeps partition's records that no gateway forgot. */
static void s_sweep_partition(kv_repl_t *self, uint32_t partition, const s_walk_t *walk) {
    for (size_t i = 0; i < walk->old_count; i++) {
        char key[KV_TX_RECORD_KEY_LEN];
        kv_tx_record_key(key, walk->old_records[i]);
        const kv_entry_t *entry = kv_store_get(self->store, partition, key, sizeof key);
        uint32_t parts[KV_TX_MAX_OPS];
        int64_t written = 0;
        int count = entry ? kv_tx_record_decode(kv_entry_value(entry), kv_entry_vlen(entry),
                                                &written, parts)
                          : -1;
        if (count >= 0) s_sweep(self, partition, walk->old_records[i], parts, count);
    }
}

void kv_repl_tx_tick(kv_repl_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now < self->next_tx_walk || !self->table) return;
    self->next_tx_walk = now + KV_TX_RESOLVE_MS;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->parts[p].state == KV_REPL_PRIMARY && kv_store_meta_size(self->store, p) > 0) {
            s_walk_t walk = {.now_ms = kv_clock_wall_ms()}; /* one walk serves both */
            kv_store_foreach_meta(self->store, p, s_walk_entry, &walk);
            s_resolve_partition(self, p, &walk);
            s_sweep_partition(self, p, &walk);
        }
}
