/*  kv_evict.h: which key a full node gives up (--eviction), by sampling.
 *
 *  Approximate LRU as Redis does it: no list of keys in access order (16
 *  bytes of pointers per key), but a few random keys compared by their
 *  access clock (kv_store_idle), the oldest given up. Policies:
 *
 *  - noeviction: nothing is evictable (a write that needs room is refused);
 *  - allkeys-lru: the least recently used of the keys sampled;
 *  - volatile-lru: likewise among the keys with a deadline only;
 *  - volatile-ttl: the nearest deadline among the keys with one.
 *
 *  An expired key not reclaimed yet is the best victim under every policy
 *  but noeviction. A node holds many partitions: each of a pick's
 *  KV_EVICT_SAMPLES samples comes from one of the partitions the caller
 *  offers, drawn weighted by its keys (its expiring keys for volatile-*),
 *  so keys are drawn about evenly across partitions, however few keys
 *  each partition holds. docs/eviction.md tells why and
 *  how good that is. The caller removes the victim (kv_repl_evict.c: as a
 *  replicated removal). Deterministic for a given seed.
 *
 *  Not thread-safe: owned by the node actor.
 */
#ifndef KV_EVICT_H
#define KV_EVICT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"
#include "kv_store.h"

#define KV_EVICT_SAMPLES 10 /* entries compared per victim (Redis: 5, plus a pool of 16) */

typedef enum {
    KV_EVICT_NOEVICTION,   /* refuse instead (the default) */
    KV_EVICT_ALLKEYS_LRU,  /* least recently used of all keys */
    KV_EVICT_VOLATILE_LRU, /* least recently used of the keys with a deadline */
    KV_EVICT_VOLATILE_TTL, /* nearest deadline */
} kv_evict_policy_t;

/* The policy named name (as --eviction spells it) in *policy. Returns 0,
 * or -1 for an unknown name (*policy unchanged). */
int kv_evict_policy_parse(const char *name, kv_evict_policy_t *policy);

/* The flag's spelling of policy. */
const char *kv_evict_policy_name(kv_evict_policy_t policy);

typedef struct _kv_evict_t kv_evict_t;

/* The key picked: a copy, valid after the store changes. */
typedef struct {
    uint32_t partition;         /* where it is */
    size_t klen;                /* key bytes */
    size_t bytes;               /* what removing it frees (kv_entry_bytes) */
    char key[KV_MAX_KEY_BYTES]; /* the key */
} kv_evict_victim_t;

/* Whether the caller may evict from partition (e.g. is its primary). */
typedef int(kv_evict_partition_fn)(uint32_t partition, void *arg);

/* Whether the caller must keep key (e.g. a transaction holds it). */
typedef int(kv_evict_keep_fn)(uint32_t partition, const char *key, size_t klen, void *arg);

/* Creates a picker for policy whose random draws start from seed. NULL
 * when out of memory. */
kv_evict_t *kv_evict_new(kv_evict_policy_t policy, uint64_t seed);

/* Frees it; sets *self_p to NULL. Safe on NULL. */
void kv_evict_destroy(kv_evict_t **self_p);

kv_evict_policy_t kv_evict_policy(const kv_evict_t *self);

/* Weighs the partitions of store that ours accepts (NULL: all) by their
 * keys, for the picks that follow. Call once per eviction round: picks do
 * not see the counts change (an emptied partition is just skipped).
 * Returns the keys weighed: 0 means nothing is evictable. -1 when out of
 * memory. */
long kv_evict_begin(kv_evict_t *self, kv_store_t *store, kv_evict_partition_fn *ours, void *arg);

/* Narrows the partitions kv_evict_begin weighed to partition (one of
 * them): the picks that follow sample it only. Returns 0, or -1 when
 * partition was not weighed (nothing changed). A caller that evicts a
 * batch from the partition of a first victim can compact that partition
 * once for the whole batch (kv_store_compact); the first victim is the
 * node's best, the rest the partition's best (as good where a partition
 * holds many keys: its keys are a random share of all keys). */
int kv_evict_focus(kv_evict_t *self, uint32_t partition);

/* Picks a victim among the partitions kv_evict_begin weighed, skipping
 * keys keep (may be NULL) holds to. Returns 0 with *victim filled, or -1
 * when nothing evictable was found (noeviction, no weighed key, or 64
 * rounds of samples turned up nothing the policy takes: with a handful of
 * keys with a deadline among thousands, one may be missed). */
int kv_evict_pick(kv_evict_t *self, kv_store_t *store, kv_evict_keep_fn *keep, void *arg,
                  kv_evict_victim_t *victim);

#endif
