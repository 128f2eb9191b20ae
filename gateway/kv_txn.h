/*  kv_txn.h: /tx, an atomic, serializable transaction over any keys.
 *
 *  The gateway drives the protocol of the nodes' node/kv_tx.h (written out
 *  with its safety argument in docs/transactions.md):
 *
 *  - Keys are grouped by partition. A transaction that writes nothing is
 *    first a consistent read (kv_mget's rounds) whose conditions are then
 *    checked: serializable at the instant the snapshot shows, no locks;
 *    when writes keep changing the keys, it prepares with `wait` set: read
 *    locks that wait at the primaries for writers' commits, released by a
 *    one-way abort once every partition answered.
 *  - One partition: one TX_PREPARE with commit set; its primary checks and
 *    applies everything at once (one message, one round trip).
 *  - Several: TX_PREPARE to every partition's primary in parallel (each
 *    locks its keys with replicated intents, checks the conditions, reads);
 *    if all agree, TX_COMMIT at the record partition (the first written
 *    key's): the commit point; then TX_FINISH at the other partitions; once
 *    they all confirmed, a last one-way FINISH lets the record go. The
 *    client is answered after the FINISHes: every write is visible by then.
 *  - Any refusal before the commit point aborts: one-way FINISH(abort) to
 *    the partitions that may hold intents (lost ones expire and are
 *    aborted by their record partition), and the answer says nothing was
 *    written (409 CONFLICT, 409 TX_ABORTED, 503). A commit whose answer
 *    never came is 504: decided one way or the other, all or nothing.
 *
 *  Messages go to the keys' primaries only: no coordinator, no global
 *  lock, and transactions on disjoint keys never wait for each other.
 */
#ifndef KV_TXN_H
#define KV_TXN_H

#include <stddef.h>

#include "kv_backend.h"
#include "kv_query.h"

typedef struct _kv_txn_t kv_txn_t;

/* Called on the backend's thread when the transaction is over. */
typedef void(kv_txn_done_fn)(kv_txn_t *txn, void *arg);

/* Parses the raw query of a /tx (kv_txq.h). NULL with *err set (and a
 * message in detail) on a 400, or *err = KV_QUERY_ERR_LAST + 1 when out of
 * memory. */
kv_txn_t *kv_txn_new(const char *query, size_t len, kv_query_err_t *err, char *detail, size_t size);

/* Frees it; sets *self_p to NULL. Not while it runs. */
void kv_txn_destroy(kv_txn_t **self_p);

/* Runs it on backend; done(self, arg) runs once, when it is over. */
void kv_txn_start(kv_txn_t *self, kv_backend_t *backend, kv_txn_done_fn *done, void *arg);

/* The outcome: KV_CALL_OK (committed), KV_CALL_CONFLICT (a condition
 * failed), KV_CALL_TX_ABORTED (contention), KV_CALL_UNAVAILABLE (nothing
 * written), KV_CALL_TIMEOUT (unknown), KV_CALL_FAILED. */
kv_call_result_t kv_txn_result(const kv_txn_t *self);

/* The JSON body of a KV_CALL_OK ({"success":true,"versions":..,"values":..})
 * or KV_CALL_CONFLICT ({"error":"CONFLICT",..,"conflicts":[..]}) outcome,
 * malloc'd, NUL-terminated, *len bytes; NULL when out of memory. */
char *kv_txn_body(const kv_txn_t *self, size_t *len);

#endif
