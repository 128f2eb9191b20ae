/*  kv_mget.c: /mget (see kv_mget.h for the protocol). */
#include "kv_mget.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_hash.h"
#include "kv_json.h"
#include "kv_limits.h"

/* One distinct key: how this round read it, what it saw and what the
 * previous round saw. */
typedef struct {
    kv_param_t key;          /* decoded, in the read's buffer */
    kv_mget_t *mget;         /* the read it is part of (for its GET's callback) */
    kv_call_t call;          /* this round's GET, when not read in a batch */
    uint32_t batch;          /* this round: index of its batch, or S_NO_BATCH */
    kv_call_result_t result; /* this round: OK, NOT_FOUND or a failure */
    kv_bytes_t value;        /* this round, found: inside this round's reply */
    uint64_t version;        /* this round, found: its version */
    uint64_t removed;        /* this round, absent: its partition's last removal */
    kv_call_result_t seen;   /* previous round: OK or NOT_FOUND */
    uint64_t seen_version;   /* previous round: the version when found */
    uint64_t seen_removed;   /* previous round: the last removal, when absent */
} s_key_t;

#define S_NO_BATCH UINT32_MAX

/* The keys of one round whose partitions one node is primary of: one
 * MGET. Its slices of the read's members and entries are this round's. */
typedef struct {
    kv_mget_t *mget;   /* the read it is part of */
    kv_call_t call;    /* the MGET */
    uint16_t node;     /* where it goes */
    uint32_t *members; /* its keys (indexes in keys), request order */
    uint32_t count;    /* how many */
    uint8_t *entries;  /* their ENTRY records */
    size_t cap, len;   /* bytes reserved, written */
} s_batch_t;

struct _kv_mget_t {
    size_t count;                    /* keys asked, repeats included */
    size_t distinct;                 /* entries in keys */
    uint32_t *order;                 /* count entries: position -> keys index */
    s_key_t *keys;                   /* distinct entries */
    char *decoded;                   /* the keys' decoded bytes */
    s_batch_t *batches;              /* batch_room: this round's come first */
    uint32_t batch_room;             /* min(distinct, KV_MAX_NODES): a batch has a key at least */
    uint32_t batch_count;            /* in use this round */
    uint32_t *members;               /* distinct entries: the batches' members */
    uint8_t *entries;                /* every key's ENTRY record: the batches' entries */
    uint32_t batch_of[KV_MAX_NODES]; /* this round: node -> batch, or S_NO_BATCH */
    kv_backend_t *backend;           /* where the rounds go */
    kv_mget_done_fn *done;           /* called when over */
    void *arg;                       /* for done */
    size_t outstanding;              /* calls of this round not finished */
    int submitting;                  /* a round is being submitted: completions wait */
    int rounds;                      /* rounds started */
    kv_call_result_t result;         /* the outcome */
};

/* --- parsing ------------------------------------------------------------------ */

/* The index of key among the first n distinct keys, or n. */
static size_t s_find(const s_key_t *keys, size_t n, const kv_param_t *key) {
    for (size_t i = 0; i < n; i++)
        if (keys[i].key.len == key->len && memcmp(keys[i].key.ptr, key->ptr, key->len) == 0)
            return i;
    return n;
}

/* Counts the k fields; -1 past KV_MGET_MAX_KEYS. */
static long s_count_keys(const char *query, size_t len, char *scratch) {
    kv_query_iter_t it;
    kv_query_field_t field;
    long count = 0;
    kv_query_iter_init(&it, query, len, scratch);
    while (kv_query_next(&it, &field))
        if (kv_query_name_is(&field, "k") && ++count > KV_MGET_MAX_KEYS) return -1;
    return count;
}

/* Reads every k into self (validated, in order, repeats merged). */
static kv_query_err_t s_parse(kv_mget_t *self, const char *query, size_t len) {
    kv_query_iter_t it;
    kv_query_field_t field;
    kv_query_iter_init(&it, query, len, self->decoded);
    while (kv_query_next(&it, &field)) {
        if (!kv_query_name_is(&field, "k")) continue;
        kv_param_t key = field.value;
        if (!key.present) key = (kv_param_t){"", 0, true, false}; /* a bare k: as on /get */
        kv_query_err_t err = kv_query_check_key(&key);
        if (err != KV_QUERY_OK) return err;
        size_t index = s_find(self->keys, self->distinct, &key);
        if (index == self->distinct) self->keys[self->distinct++].key = key;
        self->order[self->count++] = (uint32_t)index;
    }
    return KV_QUERY_OK;
}

/* Room for the rounds' batches, once the keys are known: 0, or -1 when
 * out of memory. */
static int s_prepare(kv_mget_t *self) {
    size_t bytes = 0;
    self->batch_room = (uint32_t)(self->distinct < KV_MAX_NODES ? self->distinct : KV_MAX_NODES);
    for (size_t i = 0; i < self->distinct; i++) {
        self->keys[i].mget = self;
        bytes += kv_msg_entry_size(self->keys[i].key.len, 0);
    }
    for (size_t n = 0; n < KV_MAX_NODES; n++) self->batch_of[n] = S_NO_BATCH;
    self->batches = calloc(self->batch_room ? self->batch_room : 1, sizeof(*self->batches));
    self->members = calloc(self->distinct ? self->distinct : 1, sizeof(*self->members));
    self->entries = malloc(bytes ? bytes : 1);
    for (uint32_t b = 0; self->batches && b < self->batch_room; b++) {
        kv_call_init(&self->batches[b].call);
        self->batches[b].mget = self;
    }
    return self->batches && self->members && self->entries ? 0 : -1;
}

kv_mget_t *kv_mget_new(const char *query, size_t len, kv_query_err_t *err) {
    kv_mget_t *self = calloc(1, sizeof(*self));
    char *scratch = malloc(len + 1);
    *err = (kv_query_err_t)(KV_QUERY_ERR_LAST + 1);
    if (!self || !scratch) {
        free(self);
        free(scratch);
        return NULL;
    }
    long count = s_count_keys(query, len, scratch);
    self->decoded = scratch; /* each field decodes after the previous one */
    *err = count < 0 ? KV_QUERY_TOO_MANY_KEYS : count == 0 ? KV_QUERY_MISSING_KEY : KV_QUERY_OK;
    if (*err == KV_QUERY_OK) {
        self->order = calloc((size_t)count, sizeof(*self->order));
        self->keys = calloc((size_t)count, sizeof(*self->keys));
        for (long i = 0; self->keys && i < count; i++) kv_call_init(&self->keys[i].call);
        *err = self->order && self->keys ? s_parse(self, query, len)
                                         : (kv_query_err_t)(KV_QUERY_ERR_LAST + 1);
    }
    if (*err == KV_QUERY_OK && s_prepare(self) != 0) *err = (kv_query_err_t)(KV_QUERY_ERR_LAST + 1);
    if (*err != KV_QUERY_OK) kv_mget_destroy(&self);
    return self;
}

kv_mget_t *kv_mget_of(const kv_param_t *keys, size_t n) {
    kv_mget_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->order = calloc(n ? n : 1, sizeof(*self->order));
    self->keys = calloc(n ? n : 1, sizeof(*self->keys));
    if (!self->order || !self->keys) {
        kv_mget_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        kv_call_init(&self->keys[i].call);
        self->keys[i].key = keys[i];
        self->order[i] = (uint32_t)i;
    }
    self->count = self->distinct = n;
    if (s_prepare(self) != 0) kv_mget_destroy(&self);
    return self;
}

int kv_mget_entry(const kv_mget_t *self, size_t i, kv_bytes_t *value, uint64_t *version) {
    const s_key_t *key = &self->keys[i];
    int found = key->result == KV_CALL_OK;
    *value = found ? key->value : (kv_bytes_t){NULL, 0};
    *version = found ? key->version : 0;
    return found;
}

void kv_mget_destroy(kv_mget_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_mget_t *self = *self_p;
    for (size_t i = 0; self->keys && i < self->distinct; i++) kv_call_reset(&self->keys[i].call);
    for (uint32_t b = 0; self->batches && b < self->batch_room; b++)
        kv_call_reset(&self->batches[b].call);
    free(self->batches);
    free(self->members);
    free(self->entries);
    free(self->keys);
    free(self->order);
    free(self->decoded);
    free(self);
    *self_p = NULL;
}

/* --- rounds -------------------------------------------------------------------- */

static void s_round(kv_mget_t *self);

static void s_finish(kv_mget_t *self, kv_call_result_t result) {
    self->result = result;
    self->done(self, self->arg);
}

/* The round's first failure, worst first: a timeout (a node may be slow)
 * before anything else; KV_CALL_OK when every key was answered. */
static kv_call_result_t s_round_failure(const kv_mget_t *self) {
    kv_call_result_t failure = KV_CALL_OK;
    for (size_t i = 0; i < self->distinct; i++) {
        kv_call_result_t result = self->keys[i].result;
        if (result == KV_CALL_OK || result == KV_CALL_NOT_FOUND) continue;
        if (failure == KV_CALL_OK || result == KV_CALL_TIMEOUT) failure = result;
    }
    return failure;
}

/* Whether this round saw what the previous one saw, for every key; then
 * records this round as the previous one. */
static int s_agrees(kv_mget_t *self) {
    int agree = self->rounds > 1;
    for (size_t i = 0; i < self->distinct; i++) {
        s_key_t *key = &self->keys[i];
        int found = key->result == KV_CALL_OK;
        if (key->result != key->seen ||
            (found ? key->version != key->seen_version : key->removed != key->seen_removed))
            agree = 0;
        key->seen = key->result;
        key->seen_version = found ? key->version : 0;
        key->seen_removed = found ? 0 : key->removed;
    }
    return agree;
}

static void s_round_done(kv_mget_t *self) {
    kv_call_result_t failure = s_round_failure(self);
    if (failure != KV_CALL_OK)
        s_finish(self, failure);
    else if (s_agrees(self))
        s_finish(self, KV_CALL_OK);
    else if (self->rounds >= KV_MGET_ROUNDS)
        s_finish(self, KV_CALL_CONTENDED); /* writes keep landing */
    else
        s_round(self);
}

/* One call of the round is over. */
static void s_count_down(kv_mget_t *self) {
    if (--self->outstanding == 0 && !self->submitting) s_round_done(self);
}

static void s_get_done(kv_call_t *call) {
    s_key_t *key = call->arg;
    key->result = call->result;
    key->value = call->msg.value;
    key->version = call->version;
    key->removed = call->seq;
    s_count_down(key->mget);
}

/* Reads key with a GET of its own (which waits for unconfirmed writes and
 * transactions where a batch gives up). A call the backend finishes at
 * once (no route) only counts down. */
static void s_submit(kv_mget_t *self, kv_call_t *call) {
    self->outstanding++;
    if (kv_backend_submit(self->backend, call) != 0) {
        call->result = KV_CALL_UNAVAILABLE;
        call->done(call);
    }
}

static void s_get(kv_mget_t *self, s_key_t *key) {
    kv_call_t *call = &key->call;
    kv_call_reset(call);
    call->op = KV_CALL_GET;
    call->key = key->key.ptr;
    call->klen = key->key.len;
    call->done = s_get_done;
    call->arg = key;
    s_submit(self, call);
}

/* Takes each key's answer from batch's MGET_REPLY: 0, or -1 when the
 * reply does not answer exactly its keys, in order. */
static int s_take_batch(kv_mget_t *self, const s_batch_t *batch) {
    const kv_msg_t *reply = &batch->call.msg;
    if (reply->type != KV_MSG_MGET_REPLY || reply->count != batch->count ||
        reply->items.len != (size_t)batch->count * KV_MSG_ITEM_SIZE)
        return -1;
    size_t pos = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        s_key_t *key = &self->keys[batch->members[i]];
        kv_msg_entry_t entry;
        kv_msg_item_t item = kv_msg_item_read(&reply->items, i);
        if (kv_msg_entry_next(reply, &pos, &entry) != 0 || entry.key.len != key->key.len ||
            memcmp(entry.key.ptr, key->key.ptr, key->key.len) != 0)
            return -1;
        key->result = item.flag ? KV_CALL_OK : KV_CALL_NOT_FOUND;
        key->value = entry.value;
        key->version = entry.meta.version;
        key->removed = item.seq;
    }
    return 0;
}

/* A batch that did not answer (refused, lost, or some key would have had
 * to wait) is read again key by key, within this round. */
static void s_batch_done(kv_call_t *call) {
    s_batch_t *batch = call->arg;
    kv_mget_t *self = batch->mget;
    if (call->result != KV_CALL_OK || s_take_batch(self, batch) != 0)
        for (uint32_t i = 0; i < batch->count; i++) s_get(self, &self->keys[batch->members[i]]);
    s_count_down(self);
}

/* The batch of key at node, a new one on its first key this round. */
static uint32_t s_batch_for(kv_mget_t *self, uint16_t node) {
    if (self->batch_of[node] == S_NO_BATCH) {
        s_batch_t *batch = &self->batches[self->batch_count];
        kv_call_reset(&batch->call);
        batch->node = node;
        batch->count = 0;
        batch->cap = 0;
        self->batch_of[node] = self->batch_count++;
    }
    return self->batch_of[node];
}

/* Groups this round's keys by their partition's primary (KV_NO_NODE: no
 * route now, read by a GET, which waits for one) and lays out each
 * batch's keys. */
static void s_plan(kv_mget_t *self) {
    for (uint32_t b = 0; b < self->batch_count; b++)
        self->batch_of[self->batches[b].node] = S_NO_BATCH;
    self->batch_count = 0;
    uint32_t partitions = kv_backend_partitions(self->backend);
    for (size_t i = 0; i < self->distinct; i++) {
        s_key_t *key = &self->keys[i];
        uint16_t node =
            partitions ? kv_backend_primary_of(
                             self->backend, kv_partition_of(key->key.ptr, key->key.len, partitions))
                       : KV_NO_NODE;
        key->batch = node < KV_MAX_NODES ? s_batch_for(self, node) : S_NO_BATCH;
        if (key->batch == S_NO_BATCH) continue;
        self->batches[key->batch].count++;
        self->batches[key->batch].cap += kv_msg_entry_size(key->key.len, 0);
    }
    uint32_t *members = self->members;
    uint8_t *entries = self->entries;
    for (uint32_t b = 0; b < self->batch_count; b++) { /* each batch's slices */
        s_batch_t *batch = &self->batches[b];
        batch->members = members;
        batch->entries = entries;
        members += batch->count;
        entries += batch->cap;
        batch->count = 0;
        batch->len = 0;
    }
    for (size_t i = 0; i < self->distinct; i++) {
        s_key_t *key = &self->keys[i];
        if (key->batch == S_NO_BATCH) continue;
        s_batch_t *batch = &self->batches[key->batch];
        const kv_msg_entry_t entry = {.key = {key->key.ptr, key->key.len}};
        batch->members[batch->count++] = (uint32_t)i;
        kv_msg_entry_put(batch->entries, batch->cap, &batch->len, &entry);
    }
}

static void s_submit_batch(kv_mget_t *self, s_batch_t *batch) {
    kv_call_t *call = &batch->call;
    call->op = KV_CALL_MGET;
    call->node = batch->node;
    call->count = batch->count;
    call->entries = batch->entries;
    call->entries_len = batch->len;
    call->done = s_batch_done;
    call->arg = batch;
    s_submit(self, call);
}

/* Reads every distinct key: one MGET per node that is primary of some of
 * them, a GET for each key without a primary now. A call finished at once
 * only counts down: the round ends after the loops. */
static void s_round(kv_mget_t *self) {
    self->rounds++;
    self->submitting = 1;
    self->outstanding = 0;
    s_plan(self);
    for (uint32_t b = 0; b < self->batch_count; b++) s_submit_batch(self, &self->batches[b]);
    for (size_t i = 0; i < self->distinct; i++)
        if (self->keys[i].batch == S_NO_BATCH) s_get(self, &self->keys[i]);
    self->submitting = 0;
    if (self->outstanding == 0) s_round_done(self);
}

void kv_mget_start(kv_mget_t *self, kv_backend_t *backend, kv_mget_done_fn *done, void *arg) {
    self->backend = backend;
    self->done = done;
    self->arg = arg;
    s_round(self);
}

kv_call_result_t kv_mget_result(const kv_mget_t *self) {
    return self->result;
}

int kv_mget_rounds(const kv_mget_t *self) {
    return self->rounds;
}

/* --- the answer --------------------------------------------------------------- */

/* Appends one {"k":...,"v":...,"version":N} at out + *pos (room checked
 * by the caller: KV_MGET_ENTRY_MAX). */
#define KV_MGET_ENTRY_MAX                                                                          \
    (KV_JSON_STRING_MAX(KV_MAX_KEY_BYTES) + KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES) + 64)

static void s_put_entry(char *out, size_t *pos, const s_key_t *key) {
    *pos += (size_t)snprintf(out + *pos, 8, "{\"k\":");
    *pos += kv_json_string(out + *pos, KV_JSON_STRING_MAX(KV_MAX_KEY_BYTES), key->key.ptr,
                           key->key.len);
    *pos += (size_t)snprintf(out + *pos, 8, ",\"v\":");
    if (key->result == KV_CALL_OK) {
        const kv_bytes_t *value = &key->value;
        *pos += kv_json_string(out + *pos, KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES),
                               value->ptr ? value->ptr : "", value->len);
    } else {
        *pos += (size_t)snprintf(out + *pos, 8, "null");
    }
    *pos += (size_t)snprintf(out + *pos, 40, ",\"version\":%" PRIu64 "}",
                             key->result == KV_CALL_OK ? key->version : 0);
}

char *kv_mget_body(const kv_mget_t *self, size_t *len) {
    char *out = malloc(self->count * (KV_MGET_ENTRY_MAX + 1) + 3);
    if (!out) return NULL;
    size_t pos = 0;
    out[pos++] = '[';
    for (size_t i = 0; i < self->count; i++) {
        if (i) out[pos++] = ',';
        s_put_entry(out, &pos, &self->keys[self->order[i]]);
    }
    out[pos++] = ']';
    out[pos] = '\0';
    *len = pos;
    return out;
}
