/*  kv_txq.h: the parameters of a /tx (what it reads, writes and checks),
 *  parsed from the raw query and validated as the API says.
 *
 *  A /tx's parameters, in any order (the part of the name after the prefix
 *  is the key; the prefix is matched on the raw name, so "set%2Ea" has
 *  none, and "set.a.b" names the key "a.b"):
 *
 *      if.KEY=N        condition: KEY's version is N (0: KEY is absent)
 *      get.KEY         read KEY (no value)
 *      set.KEY=VALUE   write KEY
 *      rm.KEY          remove KEY (no value)
 *      ttl.KEY=S       the set. of KEY expires after S seconds
 *      token=...       the client token: ignored here (access control)
 *
 *  The result is one entry per distinct key, in the order of each key's
 *  first appearance in the request, merging what every parameter says of
 *  that key. The order of the 400s is documented in kv_txq.c.
 */
#ifndef KV_TXQ_H
#define KV_TXQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_query.h"

#define KV_TX_MAX_KEYS 100 /* distinct keys per /tx (400 TOO_MANY_KEYS beyond) */

typedef enum { KV_TXQ_NONE = 0, KV_TXQ_SET = 1, KV_TXQ_RM = 2 } kv_txq_write_t;

/* What a /tx does with one key. */
typedef struct {
    kv_param_t key;      /* decoded key (points into the parse's buffer) */
    bool has_if;         /* if.KEY=N given */
    uint64_t if_version; /* N (0: the key must be absent) */
    bool get;            /* get.KEY given */
    uint8_t write;       /* kv_txq_write_t */
    kv_param_t value;    /* set.KEY=VALUE: the value (decoded); absent otherwise */
    bool has_ttl;        /* ttl.KEY=S given (only with set.) */
    uint64_t ttl;        /* S seconds, 1 to KV_TTL_MAX */
} kv_txq_key_t;

typedef struct _kv_txq_t kv_txq_t;

/* Parses and validates the raw query (not decoded, without '?') of a /tx.
 * Returns the parameters, or NULL with *err set: the route's 400 (see
 * kv_txq.c for which one wins), or, out of memory, KV_QUERY_ERR_LAST + 1
 * (as kv_mget_new). */
kv_txq_t *kv_txq_parse(const char *query, size_t len, kv_query_err_t *err);

/* kv_txq_parse that also writes, when it fails, a message for people into
 * detail (size bytes, always NUL-terminated when size > 0; printable ASCII
 * only), naming the parameter and what is wrong with it, such as
 * "set.a given twice" or "ttl.b without set. of the same key"; "" on
 * success. detail may be NULL. */
kv_txq_t *kv_txq_parse_detail(const char *query, size_t len, kv_query_err_t *err, char *detail,
                              size_t size);

/* Frees the parameters; sets *self_p to NULL. Safe on NULL. */
void kv_txq_destroy(kv_txq_t **self_p);

/* Distinct keys: 1 to KV_TX_MAX_KEYS. */
size_t kv_txq_count(const kv_txq_t *self);

/* The i-th distinct key (i < kv_txq_count), in the order of each key's
 * first appearance in the request; NULL past the last. */
const kv_txq_key_t *kv_txq_key(const kv_txq_t *self, size_t i);

/* Keys written (write != KV_TXQ_NONE). */
size_t kv_txq_writes(const kv_txq_t *self);

/* Keys read (get). */
size_t kv_txq_reads(const kv_txq_t *self);

#endif
