/*  kv_txn.c: /tx (see kv_txn.h for the protocol). */
#include "kv_txn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_hash.h"
#include "kv_json.h"
#include "kv_limits.h"
#include "kv_mget.h"
#include "kv_txq.h"
#include "kv_wire.h"

/* What the transaction learned about one key. */
typedef struct {
    int found;        /* read: the key exists */
    uint64_t version; /* read, condition: its version (0: absent) */
    uint64_t written; /* set: the version the write gave it */
    int conflict;     /* its condition failed: version is the current one */
    char *value;      /* read: the value (malloc'd), NULL when absent */
    size_t vlen;
} s_result_t;

/* The keys of one partition, and the call that carries them. */
typedef struct {
    uint32_t partition;
    uint32_t *keys; /* indexes into the query's keys, request order */
    uint32_t count;
    uint8_t *ops; /* their TXOP records */
    size_t ops_len;
    uint8_t *ttls; /* their ttl.s, u32 seconds each in ops' order, or NULL: none */
    kv_call_t call;
} s_part_t;

typedef enum { S_PREPARE, S_COMMIT, S_FINISH } s_phase_t;

struct _kv_txn_t {
    kv_txq_t *q;             /* the parameters */
    s_result_t *results;     /* one per key */
    s_part_t *parts;         /* one per partition touched */
    size_t nparts;           /* their count */
    size_t record;           /* the record partition's index in parts */
    uint8_t *others;         /* the other participants, as ITEM records (TX_COMMIT) */
    kv_mget_t *read;         /* a reader's snapshot (kv_mget's rounds) */
    kv_param_t *read_keys;   /* its keys */
    int readonly;            /* no set., no rm.: a reader */
    int attempts;            /* a reader's prepares so far */
    kv_backend_t *backend;   /* where the calls go */
    kv_txn_done_fn *done;    /* called when over */
    void *arg;               /* for done */
    uint64_t txid;           /* the transaction's id */
    s_phase_t phase;         /* where it is */
    size_t outstanding;      /* calls of this phase not finished */
    int submitting;          /* a phase is being submitted: completions wait */
    kv_call_result_t result; /* the outcome */
};

/* --- life cycle ------------------------------------------------------------------ */

kv_txn_t *kv_txn_new(const char *query, size_t len, kv_query_err_t *err, char *detail,
                     size_t size) {
    kv_txq_t *q = kv_txq_parse_detail(query, len, err, detail, size);
    if (!q) return NULL;
    kv_txn_t *self = calloc(1, sizeof(*self));
    if (self) self->results = calloc(kv_txq_count(q), sizeof(*self->results));
    if (!self || !self->results) {
        free(self);
        kv_txq_destroy(&q);
        *err = (kv_query_err_t)(KV_QUERY_ERR_LAST + 1);
        return NULL;
    }
    self->q = q;
    return self;
}

void kv_txn_destroy(kv_txn_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_txn_t *self = *self_p;
    for (size_t i = 0; self->results && i < kv_txq_count(self->q); i++)
        free(self->results[i].value);
    for (size_t i = 0; i < self->nparts; i++) {
        kv_call_reset(&self->parts[i].call);
        free(self->parts[i].keys);
        free(self->parts[i].ops);
        free(self->parts[i].ttls);
    }
    free(self->parts);
    free(self->others);
    kv_mget_destroy(&self->read);
    free(self->read_keys);
    free(self->results);
    kv_txq_destroy(&self->q);
    free(self);
    *self_p = NULL;
}

kv_call_result_t kv_txn_result(const kv_txn_t *self) {
    return self->result;
}

static void s_finish(kv_txn_t *self, kv_call_result_t result) {
    self->result = result;
    self->done(self, self->arg);
}

/* --- what was read ---------------------------------------------------------------- */

static int s_keep_value(s_result_t *r, kv_bytes_t value) {
    free(r->value);
    r->value = malloc(value.len + 1);
    if (!r->value) return -1;
    if (value.len) memcpy(r->value, value.ptr, value.len);
    r->vlen = value.len;
    return 0;
}

/* Checks the conditions against a snapshot: CONFLICT listing each that
 * fails, else OK. */
static kv_call_result_t s_conditions(kv_txn_t *self) {
    kv_call_result_t result = KV_CALL_OK;
    for (size_t i = 0; i < kv_txq_count(self->q); i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, i);
        s_result_t *r = &self->results[i];
        if (key->has_if && key->if_version != r->version) {
            r->conflict = 1;
            result = KV_CALL_CONFLICT;
        }
    }
    return result;
}

static void s_start_locked(kv_txn_t *self);

/* The reader's snapshot is over: checked, or, when writes kept changing
 * the keys, read again under locks that wait for the writers. */
static void s_snapshot_done(kv_mget_t *read, void *arg) {
    kv_txn_t *self = arg;
    kv_call_result_t result = kv_mget_result(read);
    if (result == KV_CALL_CONTENDED) {
        s_start_locked(self);
        return;
    }
    for (size_t i = 0; result == KV_CALL_OK && i < kv_txq_count(self->q); i++) {
        kv_bytes_t value;
        s_result_t *r = &self->results[i];
        r->found = kv_mget_entry(read, i, &value, &r->version);
        if (r->found && kv_txq_key(self->q, i)->get && s_keep_value(r, value) != 0)
            result = KV_CALL_FAILED;
    }
    s_finish(self, result == KV_CALL_OK ? s_conditions(self) : result);
}

/* A reader first tries a snapshot without locks (kv_mget's rounds). */
static void s_start_snapshot(kv_txn_t *self) {
    size_t n = kv_txq_count(self->q);
    self->read_keys = calloc(n, sizeof(*self->read_keys));
    for (size_t i = 0; self->read_keys && i < n; i++)
        self->read_keys[i] = kv_txq_key(self->q, i)->key;
    self->read = self->read_keys ? kv_mget_of(self->read_keys, n) : NULL;
    if (!self->read) {
        s_finish(self, KV_CALL_FAILED);
        return;
    }
    kv_mget_start(self->read, self->backend, s_snapshot_done, self);
}

/* --- the partitions and their ops ------------------------------------------------- */

/* A fresh transaction id: unique across gateways with overwhelming
 * probability (a random per-thread base, stepped through splitmix64). */
static uint64_t s_txid(void) {
    static __thread uint64_t base, counter;
    if (!base) {
        uint8_t random[16];
        kv_siphash_random_key(random);
        memcpy(&base, random, sizeof base);
    }
    uint64_t z = base + ++counter * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

static size_t s_part_of(kv_txn_t *self, uint32_t partition) {
    for (size_t i = 0; i < self->nparts; i++)
        if (self->parts[i].partition == partition) return i;
    s_part_t *part = &self->parts[self->nparts];
    part->partition = partition;
    kv_call_init(&part->call);
    return self->nparts++;
}

/* part's ttl.s, when it has one: a u32 of seconds per key (0: none). */
static int s_encode_ttls(kv_txn_t *self, s_part_t *part) {
    int any = 0;
    for (uint32_t i = 0; i < part->count; i++) any |= kv_txq_key(self->q, part->keys[i])->has_ttl;
    if (!any) return 0;
    part->ttls = malloc((size_t)part->count * 4);
    if (!part->ttls) return -1;
    kv_writer_t w = {part->ttls, (size_t)part->count * 4, 0, 0};
    for (uint32_t i = 0; i < part->count; i++) /* 0 without ttl. */
        kv_wire_put_uint(&w, kv_txq_key(self->q, part->keys[i])->ttl, 4);
    return w.failed ? -1 : 0;
}

/* Encodes part's keys as TXOP records. */
static int s_encode_ops(kv_txn_t *self, s_part_t *part) {
    size_t cap = 0;
    for (uint32_t i = 0; i < part->count; i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, part->keys[i]);
        cap += kv_msg_txop_size(key->key.len, key->value.len);
    }
    part->ops = malloc(cap ? cap : 1); /* a part has at least one key */
    if (!part->ops) return -1;
    for (uint32_t i = 0; i < part->count; i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, part->keys[i]);
        kv_msg_txop_t op = {key->write,
                            key->has_if,
                            key->if_version,
                            key->get,
                            {key->key.ptr, key->key.len},
                            {key->value.ptr, key->value.len}};
        if (kv_msg_txop_put(part->ops, cap, &part->ops_len, &op) != 0) return -1;
    }
    return s_encode_ttls(self, part);
}

/* Groups the keys by partition, in request order; the record partition is
 * the first written key's. */
static int s_plan(kv_txn_t *self, uint32_t partitions) {
    size_t n = kv_txq_count(self->q);
    self->parts = calloc(n, sizeof(*self->parts));
    if (!self->parts) return -1;
    int record_set = 0;
    for (size_t i = 0; i < n; i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, i);
        size_t at = s_part_of(self, kv_partition_of(key->key.ptr, key->key.len, partitions));
        s_part_t *part = &self->parts[at];
        if (!part->keys && !(part->keys = calloc(n, sizeof(*part->keys)))) return -1;
        part->keys[part->count++] = (uint32_t)i;
        if (key->write != KV_TXQ_NONE && !record_set) {
            self->record = at;
            record_set = 1;
        }
    }
    for (size_t i = 0; i < self->nparts; i++)
        if (s_encode_ops(self, &self->parts[i]) != 0) return -1;
    /* The record lists the other participants: its partition asks them
     * before it forgets a record nobody finished (a dead gateway's). */
    self->others = malloc(self->nparts * KV_MSG_ITEM_SIZE + 1); /* never 0 bytes */
    if (!self->others) return -1;
    for (size_t i = 0, other = 0; i < self->nparts; i++)
        if (i != self->record) {
            const kv_msg_item_t item = {self->parts[i].partition, 0, 0};
            kv_msg_item_write(self->others, other++, &item);
        }
    return 0;
}

/* --- phases ------------------------------------------------------------------------ */

#define KV_TXN_READ_TRIES 8 /* a reader meeting another reader's locks tries this often */

static void s_phase_done(kv_txn_t *self);

static void s_call_done(kv_call_t *call) {
    kv_txn_t *self = call->arg;
    if (--self->outstanding == 0 && !self->submitting) s_phase_done(self);
}

/* Sends op to part (decision for a FINISH). */
static void s_submit(kv_txn_t *self, s_part_t *part, kv_call_op_t op, uint8_t decision) {
    kv_call_t *call = &part->call;
    kv_call_reset(call);
    call->op = op;
    call->partition = part->partition;
    call->txid = self->txid;
    call->record = self->parts[self->record].partition;
    call->commit = self->nparts == 1;
    call->wait = self->readonly;
    call->ops = part->ops;
    call->ops_len = part->ops_len;
    call->ttls = part->ttls;
    call->ttls_len = part->ttls ? (size_t)part->count * 4 : 0;
    call->decision = decision;
    if (op == KV_CALL_TX_COMMIT) {
        call->items = self->others;
        call->items_len = (self->nparts - 1) * KV_MSG_ITEM_SIZE;
    }
    call->done = s_call_done;
    call->arg = self;
    self->outstanding++;
    kv_backend_submit(self->backend, call);
}

/* Starts phase: op to every part except `except` (an index, or nparts). */
static void s_phase(kv_txn_t *self, s_phase_t phase, kv_call_op_t op, uint8_t decision, size_t only,
                    size_t except) {
    self->phase = phase;
    self->submitting = 1;
    for (size_t i = 0; i < self->nparts; i++)
        if ((only == self->nparts || i == only) && i != except)
            s_submit(self, &self->parts[i], op, decision);
    self->submitting = 0;
    if (self->outstanding == 0) s_phase_done(self);
}

/* Tells the parts that may hold intents (after a prepare: those that
 * answered OK or not at all; after a commit refused: all) that the
 * transaction is aborted: one-way, as a lost one changes nothing (the
 * intents expire and their record partition aborts them). */
static void s_notify_abort(kv_txn_t *self, size_t except) {
    for (size_t i = 0; i < self->nparts; i++) {
        kv_call_t *call = &self->parts[i].call;
        if (i == except || (self->phase == S_PREPARE && call->result != KV_CALL_OK &&
                            call->result != KV_CALL_TIMEOUT))
            continue;
        kv_call_t notice = {.partition = self->parts[i].partition,
                            .txid = self->txid,
                            .decision = KV_STATUS_TX_ABORTED};
        kv_backend_notify(self->backend, &notice);
    }
}

/* The index of key bytes among part's keys, or -1. */
static long s_find(const kv_txn_t *self, const s_part_t *part, kv_bytes_t bytes) {
    for (uint32_t i = 0; i < part->count; i++) {
        const kv_param_t *key = &kv_txq_key(self->q, part->keys[i])->key;
        if (key->len == bytes.len && memcmp(key->ptr, bytes.ptr, bytes.len) == 0)
            return part->keys[i];
    }
    return -1;
}

/* Takes part's TX_REPLY: each op's version and value (OK), or the failed
 * conditions (CONFLICT). The k-th write got version seq + k. */
static int s_take_reply(kv_txn_t *self, s_part_t *part) {
    const kv_msg_t *reply = &part->call.msg;
    size_t pos = 0, at = 0;
    uint64_t writes = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(reply, &pos, &entry) == 0) {
        long index = part->call.result == KV_CALL_OK && at < part->count
                         ? part->keys[at++]
                         : s_find(self, part, entry.key);
        if (index < 0) continue;
        s_result_t *r = &self->results[index];
        const kv_txq_key_t *key = kv_txq_key(self->q, (size_t)index);
        r->version = entry.meta.version;
        if (part->call.result == KV_CALL_CONFLICT) {
            r->conflict = 1;
            continue;
        }
        r->found = r->version != 0;
        if (key->get && r->found && s_keep_value(r, entry.value) != 0) return -1;
        if (key->write == KV_TXQ_SET) r->written = reply->seq + writes;
        if (key->write != KV_TXQ_NONE) writes++;
    }
    return 0;
}

/* The prepare's outcome over all parts: OK only when every part said OK;
 * else what the answer says: a conflict first (the client must look again),
 * then contention, then a failure, then a node out of memory. */
static kv_call_result_t s_prepared(kv_txn_t *self) {
    int conflict = 0, aborted = 0, failed = 0, timeout = 0, full = 0, other = 0;
    for (size_t i = 0; i < self->nparts; i++) {
        s_part_t *part = &self->parts[i];
        kv_call_result_t result = part->call.result;
        if ((result == KV_CALL_OK || result == KV_CALL_CONFLICT) && s_take_reply(self, part) != 0)
            failed = 1;
        conflict |= result == KV_CALL_CONFLICT;
        aborted |= result == KV_CALL_TX_ABORTED;
        timeout |= result == KV_CALL_TIMEOUT;
        failed |= result == KV_CALL_FAILED;
        full |= result == KV_CALL_NO_MEMORY; /* a participant at its memory limit: 507 */
        other |= result != KV_CALL_OK && result != KV_CALL_CONFLICT;
    }
    if (conflict) return KV_CALL_CONFLICT;
    if (aborted) return KV_CALL_TX_ABORTED;
    if (failed) return KV_CALL_FAILED;
    if (full) return KV_CALL_NO_MEMORY;
    /* One partition applies at once: no answer means it may have. Several
     * commit only later, so a silent prepare leaves nothing written; nor
     * does a reader. */
    if (timeout)
        return self->nparts == 1 && !self->readonly ? KV_CALL_TIMEOUT : KV_CALL_UNAVAILABLE;
    return other ? KV_CALL_UNAVAILABLE : KV_CALL_OK;
}

/* A reader's prepares are over: its locks go (one-way: a lost release
 * expires like any intent); contention with another reader is tried
 * again, a few times, before the client hears TX_ABORTED. */
static void s_read_done(kv_txn_t *self, kv_call_result_t result) {
    if (self->nparts > 1) s_notify_abort(self, self->nparts);
    if (result == KV_CALL_TX_ABORTED && ++self->attempts < KV_TXN_READ_TRIES) {
        self->txid = s_txid();
        s_phase(self, S_PREPARE, KV_CALL_TX_PREPARE, 0, self->nparts, self->nparts);
        return;
    }
    s_finish(self, result);
}

static void s_phase_done(kv_txn_t *self) {
    kv_call_result_t result;
    switch (self->phase) {
    case S_PREPARE:
        result = s_prepared(self);
        if (self->readonly) {
            s_read_done(self, result);
            return;
        }
        if (result == KV_CALL_OK && self->nparts > 1) {
            s_phase(self, S_COMMIT, KV_CALL_TX_COMMIT, 0, self->record, self->nparts);
            return;
        }
        if (result != KV_CALL_OK && self->nparts > 1) s_notify_abort(self, self->nparts);
        s_finish(self, result);
        return;
    case S_COMMIT:
        result = self->parts[self->record].call.result;
        if (result == KV_CALL_OK) {
            s_phase(self, S_FINISH, KV_CALL_TX_FINISH, KV_STATUS_OK, self->nparts, self->record);
            return;
        }
        if (result != KV_CALL_TIMEOUT) { /* the commit point was not passed */
            s_notify_abort(self, self->nparts);
            if (result != KV_CALL_TX_ABORTED) result = KV_CALL_UNAVAILABLE;
        }
        s_finish(self, result);
        return;
    case S_FINISH:
    default: {
        int all = 1;
        for (size_t i = 0; i < self->nparts; i++)
            if (i != self->record && self->parts[i].call.result != KV_CALL_OK) all = 0;
        if (all) { /* every participant applied it: the record may go */
            kv_call_t forget = {.partition = self->parts[self->record].partition,
                                .txid = self->txid,
                                .decision = KV_STATUS_OK};
            kv_backend_notify(self->backend, &forget);
        }
        s_finish(self, KV_CALL_OK); /* committed: the rest resolve by themselves */
        return;
    }
    }
}

void kv_txn_start(kv_txn_t *self, kv_backend_t *backend, kv_txn_done_fn *done, void *arg) {
    self->backend = backend;
    self->done = done;
    self->arg = arg;
    self->readonly = kv_txq_writes(self->q) == 0;
    if (self->readonly) {
        s_start_snapshot(self);
        return;
    }
    s_start_locked(self);
}

/* Prepares at every partition (a reader: locks that wait for writers). */
static void s_start_locked(kv_txn_t *self) {
    kv_backend_t *backend = self->backend;
    uint32_t partitions = kv_backend_partitions(backend);
    if (partitions == 0) {
        s_finish(self, KV_CALL_UNAVAILABLE); /* no table yet */
        return;
    }
    if (s_plan(self, partitions) != 0) {
        s_finish(self, KV_CALL_FAILED);
        return;
    }
    self->txid = s_txid();
    s_phase(self, S_PREPARE, KV_CALL_TX_PREPARE, 0, self->nparts, self->nparts);
}

/* --- the answer ------------------------------------------------------------------------ */

#define S_KEY_JSON KV_JSON_STRING_MAX(KV_MAX_KEY_BYTES)
#define S_ENTRY_MAX (S_KEY_JSON * 2 + KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES) + 96)

static void s_put_key(char *out, size_t *pos, const kv_param_t *key) {
    *pos += kv_json_string(out + *pos, S_KEY_JSON, key->ptr, key->len);
}

static void s_put_text(char *out, size_t *pos, const char *text) {
    size_t len = strlen(text);
    memcpy(out + *pos, text, len);
    *pos += len;
}

static void s_put_u64(char *out, size_t *pos, uint64_t n) {
    *pos += (size_t)snprintf(out + *pos, 24, "%" PRIu64, n);
}

/* {"success":true,"versions":{...},"values":{...}} */
static void s_success(const kv_txn_t *self, char *out, size_t *pos) {
    size_t n = kv_txq_count(self->q);
    s_put_text(out, pos, "{\"success\":true,\"versions\":{");
    for (size_t i = 0, put = 0; i < n; i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, i);
        if (key->write == KV_TXQ_NONE) continue;
        if (put++) s_put_text(out, pos, ",");
        s_put_key(out, pos, &key->key);
        s_put_text(out, pos, ":");
        s_put_u64(out, pos, self->results[i].written);
    }
    s_put_text(out, pos, "},\"values\":{");
    for (size_t i = 0, put = 0; i < n; i++) {
        const kv_txq_key_t *key = kv_txq_key(self->q, i);
        const s_result_t *r = &self->results[i];
        if (!key->get) continue;
        if (put++) s_put_text(out, pos, ",");
        s_put_key(out, pos, &key->key);
        s_put_text(out, pos, ":{\"v\":");
        if (r->found && r->value)
            *pos += kv_json_string(out + *pos, KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES), r->value,
                                   r->vlen);
        else
            s_put_text(out, pos, "null");
        s_put_text(out, pos, ",\"version\":");
        s_put_u64(out, pos, r->found ? r->version : 0);
        s_put_text(out, pos, "}");
    }
    s_put_text(out, pos, "}}");
}

/* {"error":"CONFLICT","message":..,"conflicts":[{"k":..,"version":N},..]} */
static void s_conflicts(const kv_txn_t *self, char *out, size_t *pos) {
    s_put_text(out, pos,
               "{\"error\":\"CONFLICT\",\"message\":\"a condition (if.) does not hold: "
               "nothing written\",\"conflicts\":[");
    for (size_t i = 0, put = 0; i < kv_txq_count(self->q); i++) {
        if (!self->results[i].conflict) continue;
        if (put++) s_put_text(out, pos, ",");
        s_put_text(out, pos, "{\"k\":");
        s_put_key(out, pos, &kv_txq_key(self->q, i)->key);
        s_put_text(out, pos, ",\"version\":");
        s_put_u64(out, pos, self->results[i].version);
        s_put_text(out, pos, "}");
    }
    s_put_text(out, pos, "]}");
}

char *kv_txn_body(const kv_txn_t *self, size_t *len) {
    char *out = malloc(kv_txq_count(self->q) * S_ENTRY_MAX + 160);
    if (!out) return NULL;
    size_t pos = 0;
    if (self->result == KV_CALL_CONFLICT)
        s_conflicts(self, out, &pos);
    else
        s_success(self, out, &pos);
    out[pos] = '\0';
    *len = pos;
    return out;
}
