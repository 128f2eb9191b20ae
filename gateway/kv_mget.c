/*  kv_mget.c: /mget (see kv_mget.h for the protocol). */
#include "kv_mget.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_json.h"
#include "kv_limits.h"

/* One distinct key: its call of the current round and what the previous
 * round saw. */
typedef struct {
    kv_param_t key;        /* decoded, in the read's buffer */
    kv_call_t call;        /* this round's GET */
    kv_call_result_t seen; /* previous round: OK or NOT_FOUND */
    uint64_t version;      /* previous round: the version when found */
    uint64_t removed;      /* previous round: the last removal, when absent */
} s_key_t;

struct _kv_mget_t {
    size_t count;            /* keys asked, repeats included */
    size_t distinct;         /* entries in keys */
    uint32_t *order;         /* count entries: position -> keys index */
    s_key_t *keys;           /* distinct entries */
    char *decoded;           /* the keys' decoded bytes */
    kv_backend_t *backend;   /* where the rounds go */
    kv_mget_done_fn *done;   /* called when over */
    void *arg;               /* for done */
    size_t outstanding;      /* calls of this round not finished */
    int submitting;          /* a round is being submitted: completions wait */
    int rounds;              /* rounds started */
    kv_call_result_t result; /* the outcome */
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
    return self;
}

int kv_mget_entry(const kv_mget_t *self, size_t i, kv_bytes_t *value, uint64_t *version) {
    const kv_call_t *call = &self->keys[i].call;
    if (call->result != KV_CALL_OK) {
        *value = (kv_bytes_t){NULL, 0};
        *version = 0;
        return 0;
    }
    *value = call->msg.value;
    *version = call->version;
    return 1;
}

void kv_mget_destroy(kv_mget_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_mget_t *self = *self_p;
    for (size_t i = 0; self->keys && i < self->distinct; i++) kv_call_reset(&self->keys[i].call);
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
        kv_call_result_t result = self->keys[i].call.result;
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
        const kv_call_t *call = &key->call;
        int found = call->result == KV_CALL_OK;
        if (call->result != key->seen ||
            (found ? call->version != key->version : call->seq != key->removed))
            agree = 0;
        key->seen = call->result;
        key->version = found ? call->version : 0;
        key->removed = found ? 0 : call->seq;
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

static void s_call_done(kv_call_t *call) {
    kv_mget_t *self = call->arg;
    if (--self->outstanding == 0 && !self->submitting) s_round_done(self);
}

/* Sends one GET per distinct key. A call the backend finishes at once
 * (no table, no route) only counts down: the round ends after the loop. */
static void s_round(kv_mget_t *self) {
    self->rounds++;
    self->submitting = 1;
    self->outstanding = self->distinct;
    for (size_t i = 0; i < self->distinct; i++) {
        kv_call_t *call = &self->keys[i].call;
        kv_call_reset(call);
        call->op = KV_CALL_GET;
        call->key = self->keys[i].key.ptr;
        call->klen = self->keys[i].key.len;
        call->done = s_call_done;
        call->arg = self;
        if (kv_backend_submit(self->backend, call) != 0) {
            call->result = KV_CALL_UNAVAILABLE;
            self->outstanding--;
        }
    }
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
    const kv_call_t *call = &key->call;
    *pos += (size_t)snprintf(out + *pos, 8, "{\"k\":");
    *pos += kv_json_string(out + *pos, KV_JSON_STRING_MAX(KV_MAX_KEY_BYTES), key->key.ptr,
                           key->key.len);
    *pos += (size_t)snprintf(out + *pos, 8, ",\"v\":");
    if (call->result == KV_CALL_OK) {
        const kv_bytes_t *value = &call->msg.value;
        *pos += kv_json_string(out + *pos, KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES),
                               value->ptr ? value->ptr : "", value->len);
    } else {
        *pos += (size_t)snprintf(out + *pos, 8, "null");
    }
    *pos += (size_t)snprintf(out + *pos, 40, ",\"version\":%" PRIu64 "}",
                             call->result == KV_CALL_OK ? call->version : 0);
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
