/*  kv_repl_evict.c: eviction as a partition's primary decides it.
 *
 *  Which key goes is kv_evict.h's choice (approximate LRU by sampling, or
 *  the nearest deadline); how it goes is expiry's (kv_repl_ttl.c): the
 *  primary removes it and publishes the removal as an ordinary RM with its
 *  own seq, so replicas free the same key, never diverge, and a promoted
 *  replica holds what its primary held. Replicas never evict on their own:
 *  their access clocks only see writes, and a replica that chose its own
 *  victims would hold other keys than its primary.
 *
 *  Only partitions we are primary of and not fenced are drawn from (a
 *  fenced stream has ended: a learner takes it over at its last seq), and a
 *  key a transaction holds is skipped: its commit decides it.
 */
#include "kv_repl_int.h"

#include <string.h>

#include "kv_hash.h"

int kv_repl_evict_init(kv_repl_t *self) {
    uint8_t seed[16];
    kv_siphash_random_key(seed);
    uint64_t state;
    memcpy(&state, seed, sizeof state);
    self->evict = kv_evict_new((kv_evict_policy_t)self->config.eviction, state);
    self->count_evicted = kv_counters_register(self->config.counters, "kv_node_evicted_keys_total",
                                               "keys evicted to make room (--eviction)");
    return self->evict ? 0 : -1;
}

void kv_repl_evict_destroy(kv_repl_t *self) {
    kv_evict_destroy(&self->evict);
}

/* Partitions we may evict from: ours as primary, taking writes. */
static int s_ours(uint32_t partition, void *arg) {
    const kv_repl_t *self = arg;
    return self->parts[partition].state == KV_REPL_PRIMARY;
}

/* Keys a transaction holds stay. */
static int s_held(uint32_t partition, const char *key, size_t klen, void *arg) {
    return kv_repl_tx_locked(arg, partition, key, klen, 1);
}

size_t kv_repl_evict(kv_repl_t *self, size_t bytes) {
    size_t freed = 0;
    if (bytes == 0 || kv_evict_begin(self->evict, self->store, s_ours, self) <= 0) return 0;
    kv_evict_victim_t victim;
    while (freed < bytes && kv_evict_pick(self->evict, self->store, s_held, self, &victim) == 0) {
        kv_repl_primary_remove(self, victim.partition, victim.key, victim.klen);
        kv_counters_inc(self->config.counters, self->count_evicted);
        freed += victim.bytes;
    }
    return freed;
}
