/*  kv_txq.c: /tx's parameters (see kv_txq.h).
 *
 *  Which 400 wins. The API's precedence for a route's 400s is "the order
 *  of the validation table, per parameter in request order, TOO_MANY_KEYS
 *  before the keys". Implemented as:
 *
 *  1. TOO_MANY_KEYS: more than KV_TX_MAX_KEYS distinct keys, counting the
 *     key of every prefixed parameter whether valid or not (as /mget counts
 *     every k before looking at any).
 *  2. Then each parameter in request order; the first one with a problem
 *     decides. An unprefixed name other than token is INVALID_TRANSACTION
 *     there. For a prefixed one, in this order:
 *     a. the validation table on its key and, for set., its value, exactly
 *        as /set checks k and v: EMPTY_KEY, INVALID_ENCODING (key or
 *        value), MAXIMUM_KEY_LENGTH_REACHED, MISSING_VALUE_PARAM ("set.a"
 *        without '='), MAXIMUM_VALUE_LENGTH_REACHED;
 *     b. its value's own form, as /set checks ifVersion after k and v:
 *        if. INVALID_VERSION (0 allowed: "absent"), ttl. INVALID_TTL,
 *        get. and rm. with a value ("get.a=", even empty) INVALID_TRANSACTION;
 *     c. how it fits with the rest, INVALID_TRANSACTION: the same name
 *        again (names compared decoded: "get.a&get.%61" reads a twice),
 *        a second write of the key (set. or rm.), a ttl. whose key has no
 *        set. anywhere in the request (known from the first pass, so that
 *        error too sits at the ttl.'s own position).
 *  3. MISSING_KEY_PARAM: no key at all, and nothing else wrong: "/tx",
 *     "/tx?token=t". That is the validation table's "no key", as /mget
 *     answers without a k. It comes last because it belongs to no
 *     parameter: "/tx?k=a" or "/tx?set%2Ea=1" names no key, but the
 *     precise diagnosis is the parameter that is not a /tx one
 *     (INVALID_TRANSACTION), found in step 2.
 *
 *  Two passes over the query: the first finds the distinct keys (in order
 *  of first appearance) and which of them have a set., the second
 *  validates. Both decode into the same buffer from its start; decoding is
 *  deterministic, so the second pass writes the bytes the first one wrote,
 *  at the same places, and the keys found first stay valid.
 */
#include "kv_txq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NAME_SHOWN 64 /* bytes of a parameter's name quoted in a detail */

struct _kv_txq_t {
    size_t count;                      /* distinct keys */
    size_t writes;                     /* keys with a set. or rm. */
    size_t reads;                      /* keys with a get. */
    kv_txq_key_t keys[KV_TX_MAX_KEYS]; /* in order of first appearance */
    bool has_set[KV_TX_MAX_KEYS];      /* first pass: some set. names the key */
    char *decoded;                     /* decoded names and values */
};

/* One parse: where it goes and where its message goes. */
typedef struct {
    kv_txq_t *tx;
    char *detail; /* for people; NULL when size is 0 */
    size_t size;
} s_parse_t;

/* --- messages ------------------------------------------------------------------ */

/* Writes text to the detail and returns err. */
static kv_query_err_t s_say(s_parse_t *p, kv_query_err_t err, const char *text) {
    if (p->size) snprintf(p->detail, p->size, "%s", text);
    return err;
}

/* Copies the raw name into out (S_NAME_SHOWN + 4 bytes) as printable
 * ASCII: other bytes become '?', a longer name ends in "...". The detail
 * goes into a JSON answer, which must be valid UTF-8. */
static void s_show_name(const kv_query_field_t *field, char *out) {
    size_t n = field->raw_name_len < S_NAME_SHOWN ? field->raw_name_len : S_NAME_SHOWN;
    for (size_t i = 0; i < n; i++) {
        char c = field->raw_name[i];
        out[i] = c >= 0x20 && c <= 0x7e ? c : '?';
    }
    snprintf(out + n, 4, "%s", field->raw_name_len > n ? "..." : "");
}

/* Writes "NAME" followed by what (or ": " and err's message when what is
 * NULL) to the detail, and returns err. */
static kv_query_err_t s_fail(s_parse_t *p, kv_query_err_t err, const kv_query_field_t *field,
                             const char *what) {
    if (!p->size) return err;
    char name[S_NAME_SHOWN + 4];
    s_show_name(field, name);
    snprintf(p->detail, p->size, "%s%s%s", name, what ? "" : ": ",
             what ? what : kv_query_err_message(err));
    return err;
}

/* --- first pass: the keys ---------------------------------------------------------- */

/* The index of key among self's keys, or self->count. */
static size_t s_find(const kv_txq_t *self, const kv_param_t *key) {
    for (size_t i = 0; i < self->count; i++)
        if (self->keys[i].key.len == key->len &&
            memcmp(self->keys[i].key.ptr, key->ptr, key->len) == 0)
            return i;
    return self->count;
}

/* Records the distinct keys and which have a set.; false past
 * KV_TX_MAX_KEYS. */
static bool s_collect(kv_txq_t *self, const char *query, size_t len) {
    kv_query_iter_t it;
    kv_query_field_t field;
    kv_query_iter_init(&it, query, len, self->decoded);
    while (kv_query_next(&it, &field)) {
        if (field.prefix == KV_QUERY_PREFIX_NONE) continue;
        size_t i = s_find(self, &field.key);
        if (i == self->count) {
            if (self->count == KV_TX_MAX_KEYS) return false;
            self->keys[self->count++].key = field.key;
        }
        if (field.prefix == KV_QUERY_PREFIX_SET) self->has_set[i] = true;
    }
    return true;
}

/* --- second pass: each parameter ------------------------------------------------ */

static kv_query_err_t s_twice(s_parse_t *p, const kv_query_field_t *field) {
    return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field, " given twice");
}

static kv_query_err_t s_if(s_parse_t *p, const kv_query_field_t *field, kv_txq_key_t *key) {
    uint64_t version = 0;
    kv_query_err_t err = kv_query_version(&field->value, true, &version);
    if (err != KV_QUERY_OK) return s_fail(p, err, field, NULL);
    if (key->has_if) return s_twice(p, field);
    key->has_if = true;
    key->if_version = version;
    return KV_QUERY_OK;
}

static kv_query_err_t s_get(s_parse_t *p, const kv_query_field_t *field, kv_txq_key_t *key) {
    if (field->value.present)
        return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field, " takes no value");
    if (key->get) return s_twice(p, field);
    key->get = true;
    return KV_QUERY_OK;
}

/* set. and rm.: a key is written once. The value was validated before. */
static kv_query_err_t s_write(s_parse_t *p, const kv_query_field_t *field, kv_txq_key_t *key,
                              kv_txq_write_t write) {
    if (write == KV_TXQ_RM && field->value.present)
        return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field, " takes no value");
    if (key->write == write) return s_twice(p, field);
    if (key->write != KV_TXQ_NONE)
        return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field,
                      write == KV_TXQ_RM ? ": the key is already written by set."
                                         : ": the key is already written by rm.");
    key->write = (uint8_t)write;
    if (write == KV_TXQ_SET) key->value = field->value;
    return KV_QUERY_OK;
}

static kv_query_err_t s_ttl(s_parse_t *p, const kv_query_field_t *field, kv_txq_key_t *key) {
    uint64_t seconds = 0;
    kv_query_err_t err = kv_query_ttl(&field->value, &seconds);
    if (err != KV_QUERY_OK) return s_fail(p, err, field, NULL);
    if (key->has_ttl) return s_twice(p, field);
    if (!p->tx->has_set[key - p->tx->keys])
        return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field, " without set. of the same key");
    key->has_ttl = true;
    key->ttl = seconds;
    return KV_QUERY_OK;
}

/* Validates one parameter and records it in its key (the order of checks:
 * see the top of this file). */
static kv_query_err_t s_field(s_parse_t *p, const kv_query_field_t *field) {
    if (field->prefix == KV_QUERY_PREFIX_NONE) {
        if (kv_query_name_is(field, "token")) return KV_QUERY_OK; /* access control's */
        return s_fail(p, KV_QUERY_INVALID_TRANSACTION, field,
                      ": not a /tx parameter (if., get., set., rm., ttl., token)");
    }
    kv_query_t q = {.k = field->key, .v = field->value};
    kv_query_err_t err = kv_query_check(&q, field->prefix == KV_QUERY_PREFIX_SET);
    if (err != KV_QUERY_OK) return s_fail(p, err, field, NULL);
    kv_txq_key_t *key = &p->tx->keys[s_find(p->tx, &field->key)]; /* the first pass found it */
    switch (field->prefix) {
    case KV_QUERY_PREFIX_IF:
        return s_if(p, field, key);
    case KV_QUERY_PREFIX_GET:
        return s_get(p, field, key);
    case KV_QUERY_PREFIX_SET:
        return s_write(p, field, key, KV_TXQ_SET);
    case KV_QUERY_PREFIX_RM:
        return s_write(p, field, key, KV_TXQ_RM);
    default:
        return s_ttl(p, field, key);
    }
}

static kv_query_err_t s_parse(s_parse_t *p, const char *query, size_t len) {
    if (!s_collect(p->tx, query, len))
        return s_say(p, KV_QUERY_TOO_MANY_KEYS, "a /tx names at most 100 distinct keys");
    kv_query_iter_t it;
    kv_query_field_t field;
    kv_query_iter_init(&it, query, len, p->tx->decoded);
    while (kv_query_next(&it, &field)) {
        kv_query_err_t err = s_field(p, &field);
        if (err != KV_QUERY_OK) return err;
    }
    if (p->tx->count == 0)
        return s_say(p, KV_QUERY_MISSING_KEY,
                     "a /tx names at least one key (if.KEY, get.KEY, set.KEY, rm.KEY)");
    for (size_t i = 0; i < p->tx->count; i++) {
        p->tx->writes += p->tx->keys[i].write != KV_TXQ_NONE;
        p->tx->reads += p->tx->keys[i].get;
    }
    return KV_QUERY_OK;
}

/* --- the API ------------------------------------------------------------------------ */

kv_txq_t *kv_txq_parse_detail(const char *query, size_t len, kv_query_err_t *err, char *detail,
                              size_t size) {
    s_parse_t p = {.detail = detail, .size = detail ? size : 0};
    s_say(&p, KV_QUERY_OK, "");
    kv_txq_t *self = calloc(1, sizeof(*self));
    char *decoded = malloc(len + 1); /* decoding only shrinks text */
    if (!self || !decoded) {
        free(self);
        free(decoded);
        *err = s_say(&p, (kv_query_err_t)(KV_QUERY_ERR_LAST + 1), "out of memory");
        return NULL;
    }
    self->decoded = decoded;
    p.tx = self;
    *err = s_parse(&p, query, len);
    if (*err != KV_QUERY_OK) kv_txq_destroy(&self);
    return self;
}

kv_txq_t *kv_txq_parse(const char *query, size_t len, kv_query_err_t *err) {
    return kv_txq_parse_detail(query, len, err, NULL, 0);
}

void kv_txq_destroy(kv_txq_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->decoded);
    free(*self_p);
    *self_p = NULL;
}

size_t kv_txq_count(const kv_txq_t *self) {
    return self->count;
}

const kv_txq_key_t *kv_txq_key(const kv_txq_t *self, size_t i) {
    return i < self->count ? &self->keys[i] : NULL;
}

size_t kv_txq_writes(const kv_txq_t *self) {
    return self->writes;
}

size_t kv_txq_reads(const kv_txq_t *self) {
    return self->reads;
}
