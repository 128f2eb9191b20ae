/*  kv_expiry.h: a partition's expiry index, the deadlines still to come.
 *
 *  Active expiry must cost in proportion to the keys that expire, not to
 *  the keys stored, so the store keeps, per partition, a min-heap of
 *  (deadline, bucket hash) pairs: one per write that gave an entry an
 *  expiry. Popping the earliest deadlines leads to the buckets where the
 *  expired entries are; the entry itself (its expiry trailer) is the truth,
 *  the heap only a guide. An item can go stale (its key was written again,
 *  with another expiry or none, or removed): it is popped in its turn and
 *  finds nothing to reclaim. 8 bytes per item (the deadline rounded up to
 *  a whole second, the hash's low 32 bits: enough to find the bucket), no
 *  pointer into the dict, so the dict may move its entries (compaction,
 *  rehash) freely.
 *
 *  Not thread-safe: owned by the store, which the node actor owns.
 */
#ifndef KV_EXPIRY_H
#define KV_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

typedef struct _kv_expiry_t kv_expiry_t;

/* An empty index; NULL when out of memory. */
kv_expiry_t *kv_expiry_new(void);

/* Frees it; sets *self_p to NULL. Safe on NULL. */
void kv_expiry_destroy(kv_expiry_t **self_p);

/* Adds a deadline (wall-clock ms) for the entry of bucket hash. Returns 0,
 * or -1 when out of memory (the index is unchanged). */
int kv_expiry_push(kv_expiry_t *self, int64_t at, uint64_t hash);

/* The earliest deadline (rounded up to a whole second), or 0 when the
 * index is empty. */
int64_t kv_expiry_next(const kv_expiry_t *self);

/* Removes the earliest item when its deadline (rounded up to a whole
 * second) is at or before now: returns 1 with its hash (low 32 bits) in
 * *hash, else 0. */
int kv_expiry_pop_due(kv_expiry_t *self, int64_t now, uint64_t *hash);

/* The bucket hash (low 32 bits) of item i (0 <= i < kv_expiry_size, in
 * heap order: for a random draw any index is as good as another). */
uint64_t kv_expiry_hash_at(const kv_expiry_t *self, size_t i);

/* Items held (stale ones included). */
size_t kv_expiry_size(const kv_expiry_t *self);

/* Forgets every item and frees their memory. */
void kv_expiry_clear(kv_expiry_t *self);

/* Bytes allocated. */
size_t kv_expiry_memory(const kv_expiry_t *self);

#endif
