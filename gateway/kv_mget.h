/*  kv_mget.h: /mget, a consistent read of many keys across partitions.
 *
 *  Each key is read at its partition's primary, which answers the value,
 *  the version and, for an absent key, the partition's last removal seq;
 *  all keys in parallel. The keys of one round go to each node in one
 *  MGET (the keys of every partition it is primary of, in our table), which
 *  it answers for all of them at once or refuses; the keys of a refused or
 *  lost batch, and a key without a primary now, are read in the same round
 *  by a GET of their own, which waits where a batch gives up (a write not
 *  yet confirmed, a transaction's lock) and follows the partition when it
 *  moves. Either way a key's read is a read at its primary that began
 *  after the round began and ended before it ended, which is all the
 *  argument below uses. One round of such reads is not a snapshot:
 *  the reads land at different moments on different nodes, so a round can
 *  show a write and miss one that came before it. So the keys are read
 *  again, and the answer is given once two rounds in a row agree on every
 *  key: the same version, or absent with the same last removal. Every read
 *  of the second round began after every read of the first ended, so each
 *  key held its value through the gap between the rounds: the answer is
 *  the whole store at any instant of that gap. Otherwise the later round
 *  becomes the first of the next pair, up to KV_MGET_ROUNDS rounds, then
 *  503 (contention). Nodes answer reads only with confirmed writes, so
 *  what /mget shows survives a failover.
 *
 *  Repeated keys are read once and answered at each position.
 *
 *  A node of an older release drops MGET (a type it does not know): its
 *  keys are read by GETs once the batch times out, so upgrade the nodes
 *  before the gateways. A node that stays silent costs up to twice the
 *  call timeout before 504 (the batch's, then its GETs').
 */
#ifndef KV_MGET_H
#define KV_MGET_H

#include <stddef.h>

#include "kv_backend.h"
#include "kv_limits.h"
#include "kv_query.h"

#define KV_MGET_ROUNDS 32 /* rounds before giving up on agreement: 503 */

typedef struct _kv_mget_t kv_mget_t;

/* Called on the backend's thread when the read is over (kv_mget_result). */
typedef void(kv_mget_done_fn)(kv_mget_t *mget, void *arg);

/* Parses the raw query (not decoded, without '?') of a /mget: every k, in
 * request order. Returns the read, or NULL with *err set: TOO_MANY_KEYS
 * (checked first), MISSING_KEY (no k), the first key's validation error,
 * or (out of memory) KV_QUERY_ERR_LAST + 1. Other parameters are ignored. */
kv_mget_t *kv_mget_new(const char *query, size_t len, kv_query_err_t *err);

/* A read of the n distinct, validated keys (pointing into the caller's
 * memory, which must outlive the read): /tx's read-only transactions.
 * NULL when out of memory. */
kv_mget_t *kv_mget_of(const kv_param_t *keys, size_t n);

/* After a KV_CALL_OK result: whether key i (of kv_mget_of's keys) was
 * found, with its value and version. */
int kv_mget_entry(const kv_mget_t *self, size_t i, kv_bytes_t *value, uint64_t *version);

/* Frees the read; sets *self_p to NULL. Not while a round is out. */
void kv_mget_destroy(kv_mget_t **self_p);

/* Starts the first round on backend; done(self, arg) runs once, when the
 * read is over (possibly before this returns). */
void kv_mget_start(kv_mget_t *self, kv_backend_t *backend, kv_mget_done_fn *done, void *arg);

/* The outcome: KV_CALL_OK, or the error to answer (CONTENDED, UNAVAILABLE,
 * TIMEOUT, FAILED). */
kv_call_result_t kv_mget_result(const kv_mget_t *self);

/* The answer's JSON array (malloc'd, *len bytes, NUL-terminated), or NULL
 * when out of memory. Only after a KV_CALL_OK result. */
char *kv_mget_body(const kv_mget_t *self, size_t *len);

/* Rounds run so far (for counters and tests). */
int kv_mget_rounds(const kv_mget_t *self);

#endif
