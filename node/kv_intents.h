/*  kv_intents.h: a node's transaction intents (locks), per partition key.
 *
 *  A transaction prepares at each of its keys' primaries by leaving an
 *  intent on every key it touches: the transaction's id, where its commit
 *  record lives (a partition), what it will do to the key (read only, set,
 *  remove), the value and the version a write will get, and a deadline
 *  after which the owner is presumed dead and the intent must be resolved
 *  from the commit record. While a key holds an intent, no other
 *  transaction may prepare on it (refused at once: nobody waits for a
 *  lock, so there is no deadlock), and reads and writes of it wait for the
 *  intent to go. Intents are replicated like writes, so this table exists
 *  on replicas too, and a promoted replica resolves what it holds.
 *
 *  The table is small (intents live from a prepare to its commit, a few
 *  milliseconds) and keyed by partition and key.
 */
#ifndef KV_INTENTS_H
#define KV_INTENTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    KV_INTENT_READ = 1, /* read (or condition) only: the key must not change */
    KV_INTENT_SET = 2,  /* the commit sets the key to value */
    KV_INTENT_RM = 3,   /* the commit removes the key */
} kv_intent_kind_t;

typedef struct {
    uint64_t txid;             /* the owning transaction */
    uint32_t record_partition; /* where its commit record lives */
    uint8_t kind;              /* kv_intent_kind_t */
    uint64_t version;          /* SET: the version the commit gives the key */
    int64_t deadline_ms;       /* mono ms: past it, resolve from the record */
    const char *value;         /* SET: the value (copied by kv_intents_put) */
    size_t vlen;               /* its bytes */
} kv_intent_t;

typedef struct _kv_intents_t kv_intents_t;

/* An empty table, or NULL when out of memory. */
kv_intents_t *kv_intents_new(void);

/* Frees the table and every intent; sets *self_p to NULL. Safe on NULL. */
void kv_intents_destroy(kv_intents_t **self_p);

/* Leaves intent on key of partition. Returns 0; 1 when the key holds
 * another transaction's intent (nothing changed: the caller aborts); -1
 * when out of memory or the key is empty. The same transaction may put
 * again (its intent is replaced). */
int kv_intents_put(kv_intents_t *self, uint32_t partition, const char *key, size_t klen,
                   const kv_intent_t *intent);

/* The intent on key, or NULL. Valid until the table is next modified. */
const kv_intent_t *kv_intents_get(const kv_intents_t *self, uint32_t partition, const char *key,
                                  size_t klen);

/* Called for each intent handed out by kv_intents_take and _each. */
typedef void(kv_intents_fn)(uint32_t partition, const char *key, size_t klen,
                            const kv_intent_t *intent, void *arg);

/* Removes every intent of txid in partition, calling fn (may be NULL) on
 * each first (to apply it). Returns how many were removed. */
size_t kv_intents_take(kv_intents_t *self, uint32_t partition, uint64_t txid, kv_intents_fn *fn,
                       void *arg);

/* Calls fn on every intent whose deadline is before now_ms (the
 * housekeeping walk: their owners are presumed dead); fn must not change
 * the table (resolutions come back later). Returns how many. */
size_t kv_intents_expired(const kv_intents_t *self, int64_t now_ms, kv_intents_fn *fn, void *arg);

/* Removes every intent of partition (the node no longer holds it). */
void kv_intents_drop_partition(kv_intents_t *self, uint32_t partition);

/* Intents held, in all partitions. */
size_t kv_intents_size(const kv_intents_t *self);

#endif
