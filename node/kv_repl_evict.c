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
 *
 *  A removed entry stays in its dict's block, dead, until compaction moves
 *  the block's live entries out and frees it; the limit counts blocks (as
 *  RSS does). So the node evicts a batch from one partition at a time
 *  (KV_REPL_EVICT_SHARE of it: the partition of the best victim sampled
 *  across all, then that partition's best) and compacts that partition at
 *  once: its memory then really drops, and the next write sees the room
 *  it made.
 *  Copies free the same keys when the removals arrive (and compact as
 *  kv_repl_reclaim says): their room is credited with what was evicted
 *  until their next report.
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

/* Where one batch may come from. */
typedef struct {
    kv_repl_t *repl;
    uint32_t spare; /* a partition not to evict from (UINT32_MAX: none) */
    int holder;     /* a node that must hold a copy of it (-1: any) */
} s_scope_t;

/* Partitions we may evict from: ours as primary, taking writes, within the
 * scope. */
static int s_ours(uint32_t partition, void *arg) {
    const s_scope_t *scope = arg;
    const kv_repl_t *self = scope->repl;
    if (self->parts[partition].state != KV_REPL_PRIMARY || partition == scope->spare) return 0;
    if (scope->holder < 0) return 1;
    uint16_t copies[KV_REPLICATION_MAX + 1];
    size_t count = kv_repl_copies(self, partition, copies);
    for (size_t i = 0; i < count; i++)
        if (copies[i] == scope->holder) return 1;
    return 0;
}

/* Keys a transaction holds stay. */
static int s_held(uint32_t partition, const char *key, size_t klen, void *arg) {
    return kv_repl_tx_locked(arg, partition, key, klen, 1);
}

/* The copies of partition will free bytes once its removals arrive. */
static void s_credit(kv_repl_t *self, uint32_t partition, size_t bytes) {
    uint16_t copies[KV_REPLICATION_MAX + 1];
    size_t count = kv_repl_copies(self, partition, copies);
    for (size_t i = 0; i < count; i++) {
        uint64_t *room = copies[i] < KV_MAX_NODES ? &self->room_of[copies[i]] : NULL;
        if (room && *room != KV_MEM_NO_LIMIT && *room < KV_MEM_NO_LIMIT - 1 - bytes) *room += bytes;
    }
}

/* Removes victim as a replicated RM; returns its bytes. */
static size_t s_remove(kv_repl_t *self, const kv_evict_victim_t *victim) {
    kv_repl_primary_remove(self, victim->partition, victim->key, victim->klen);
    kv_counters_inc(self->config.counters, self->count_evicted);
    return victim->bytes;
}

/* Evicts the best victim of scope's partitions, then, when its partition
 * holds KV_REPL_EVICT_FOCUS keys or more, from that partition until want
 * bytes of entries are freed (at least a share of the partition when
 * share is not 0) or nothing evictable is left there;
 * compacts the partition and credits its copies. Returns the bytes of the
 * entries evicted. */
static size_t s_batch(kv_repl_t *self, s_scope_t *scope, size_t want, size_t share) {
    kv_evict_victim_t victim;
    if (kv_evict_begin(self->evict, self->store, s_ours, scope) <= 0 ||
        kv_evict_pick(self->evict, self->store, s_held, self, &victim) != 0)
        return 0;
    uint32_t partition = victim.partition; /* the node's best victim: the rest from there */
    if (share) {
        size_t part = kv_store_partition_memory(self->store, partition) / share;
        if (part > want) want = part;
    }
    size_t freed = s_remove(self, &victim);
    if (freed < want && kv_store_partition_size(self->store, partition) >= KV_REPL_EVICT_FOCUS &&
        kv_evict_focus(self->evict, partition) == 0)
        while (freed < want && kv_evict_pick(self->evict, self->store, s_held, self, &victim) == 0)
            freed += s_remove(self, &victim);
    kv_store_compact(self->store, partition);
    self->trim_due = 1; /* the blocks it freed, back to the system soon */
    s_credit(self, partition, freed);
    return freed;
}

size_t kv_repl_evict(kv_repl_t *self, size_t bytes) {
    s_scope_t scope = {self, UINT32_MAX, -1};
    size_t freed = 0, batch;
    while (freed < bytes && (batch = s_batch(self, &scope, bytes - freed, 0)) > 0) freed += batch;
    return freed;
}

int kv_repl_evict_room(kv_repl_t *self, uint32_t partition, int64_t grow, const uint16_t *copies,
                       size_t count) {
    uint64_t lack = 0;
    int node = kv_repl_lacking(self, grow, copies, count, &lack);
    if (kv_evict_policy(self->evict) == KV_EVICT_NOEVICTION) return node;
    for (int round = 0, idle = 0;
         node >= 0 && round < KV_REPL_EVICT_ROUNDS && idle < KV_REPL_EVICT_IDLE; round++) {
        s_scope_t scope = {self, partition, node == self->self ? -1 : node};
        idle = s_batch(self, &scope, (size_t)lack, KV_REPL_EVICT_SHARE) ? 0 : idle + 1;
        node = kv_repl_lacking(self, grow, copies, count, &lack);
    }
    return node;
}
