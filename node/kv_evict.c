/*  kv_evict.c: see kv_evict.h. */
#include "kv_evict.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kv_hash.h"

#define KV_EVICT_ROUNDS 8       /* samples per candidate wanted while candidates are missing */
#define KV_EVICT_ROUNDS_MAX 320 /* partitions sampled before giving up with none at all */

struct _kv_evict_t {
    kv_evict_policy_t policy;
    uint64_t rng;    /* splitmix64 state */
    uint32_t *parts; /* the partitions weighed by kv_evict_begin */
    uint64_t *cumul; /* their weights, summed up to each */
    uint32_t count;  /* entries in both */
    uint32_t room;   /* entries allocated */
};

static const char *s_names[] = {"noeviction", "allkeys-lru", "volatile-lru", "volatile-ttl"};

int kv_evict_policy_parse(const char *name, kv_evict_policy_t *policy) {
    for (size_t i = 0; name && i < sizeof s_names / sizeof s_names[0]; i++) {
        if (strcmp(name, s_names[i]) != 0) continue;
        *policy = (kv_evict_policy_t)i;
        return 0;
    }
    return -1;
}

const char *kv_evict_policy_name(kv_evict_policy_t policy) {
    return (size_t)policy < sizeof s_names / sizeof s_names[0] ? s_names[policy] : "?";
}

kv_evict_t *kv_evict_new(kv_evict_policy_t policy, uint64_t seed) {
    kv_evict_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->policy = policy;
    self->rng = seed;
    return self;
}

void kv_evict_destroy(kv_evict_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->parts);
    free((*self_p)->cumul);
    free(*self_p);
    *self_p = NULL;
}

kv_evict_policy_t kv_evict_policy(const kv_evict_t *self) {
    return self->policy;
}

static int s_volatile(const kv_evict_t *self) {
    return self->policy == KV_EVICT_VOLATILE_LRU || self->policy == KV_EVICT_VOLATILE_TTL;
}

/* Room for every partition of store, allocated once. */
static int s_reserve(kv_evict_t *self, uint32_t partitions) {
    if (self->room >= partitions) return 0;
    uint32_t *parts = realloc(self->parts, partitions * sizeof(*parts));
    if (parts) self->parts = parts;
    uint64_t *cumul = realloc(self->cumul, partitions * sizeof(*cumul));
    if (cumul) self->cumul = cumul;
    if (!parts || !cumul) return -1;
    self->room = partitions;
    return 0;
}

long kv_evict_begin(kv_evict_t *self, kv_store_t *store, kv_evict_partition_fn *ours, void *arg) {
    assert(self && store);
    self->count = 0;
    if (self->policy == KV_EVICT_NOEVICTION) return 0;
    uint32_t partitions = kv_store_partitions(store);
    if (s_reserve(self, partitions) != 0) return -1;
    uint64_t total = 0;
    for (uint32_t p = 0; p < partitions; p++) {
        size_t keys = s_volatile(self) ? kv_store_partition_expiring(store, p)
                                       : kv_store_partition_size(store, p);
        if (keys == 0 || (ours && !ours(p, arg))) continue;
        total += keys;
        self->parts[self->count] = p;
        self->cumul[self->count++] = total;
    }
    return (long)total;
}

/* A partition drawn with a probability proportional to its weight: the
 * first whose running sum exceeds a random number below the total. */
static uint32_t s_draw_partition(kv_evict_t *self) {
    uint64_t r = kv_splitmix64(&self->rng) % self->cumul[self->count - 1];
    uint32_t lo = 0, hi = self->count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (self->cumul[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return self->parts[lo];
}

int kv_evict_focus(kv_evict_t *self, uint32_t partition) {
    assert(self);
    for (uint32_t i = 0; i < self->count; i++) {
        if (self->parts[i] != partition) continue;
        self->cumul[0] = self->cumul[i] - (i ? self->cumul[i - 1] : 0);
        self->parts[0] = partition;
        self->count = 1;
        return 0;
    }
    return -1;
}

/* How much the policy wants entry gone (higher first); entries it never
 * takes are filtered before. An expired entry beats anything. */
static uint64_t s_score(const kv_evict_t *self, const kv_store_t *store, const kv_entry_t *entry) {
    if (kv_store_expired(store, entry)) return UINT64_MAX;
    if (self->policy == KV_EVICT_VOLATILE_TTL)
        return (uint64_t)INT64_MAX - (uint64_t)kv_entry_expiry(entry);
    return kv_store_idle(store, entry);
}

/* One pick in progress. */
typedef struct {
    kv_store_t *store;         /* where */
    kv_evict_keep_fn *keep;    /* keys the caller keeps, or NULL */
    void *arg;                 /* its argument */
    kv_evict_victim_t *victim; /* the best so far */
    uint64_t best;             /* its score */
    int found;                 /* whether there is one */
    size_t compared;           /* candidates compared so far */
} s_pick_t;

/* Compares entry of partition with the best so far. */
static void s_consider(const kv_evict_t *self, s_pick_t *pick, uint32_t partition,
                       const kv_entry_t *entry) {
    if (s_volatile(self) && !kv_entry_expiry(entry)) return;
    const char *key = kv_entry_key(entry);
    size_t klen = kv_entry_klen(entry);
    if (pick->keep && pick->keep(partition, key, klen, pick->arg)) return;
    pick->compared++;
    uint64_t score = s_score(self, pick->store, entry);
    if (pick->found && score <= pick->best) return; /* ties: the first seen */
    pick->found = 1;
    pick->best = score;
    *pick->victim = (kv_evict_victim_t){partition, klen, kv_entry_bytes(entry), {0}};
    memcpy(pick->victim->key, key, klen);
}

int kv_evict_pick(kv_evict_t *self, kv_store_t *store, kv_evict_keep_fn *keep, void *arg,
                  kv_evict_victim_t *victim) {
    assert(self && store && victim);
    if (self->policy == KV_EVICT_NOEVICTION || self->count == 0) return -1;
    s_pick_t pick = {store, keep, arg, victim, 0, 0, 0};
    /* KV_EVICT_SAMPLES candidates the policy takes at least, each from a
     * partition drawn of its own: a node's partitions may hold a handful
     * of keys each, and the oldest of a few keys of one partition is a
     * poor victim. For volatile-*, a sample of the dict (good where most
     * keys have a deadline) and one of the index of deadlines (where few
     * have: its items may be stale, so with no candidate yet it goes on
     * longer before it gives up). */
    for (int round = 0; round < KV_EVICT_ROUNDS_MAX && pick.compared < KV_EVICT_SAMPLES &&
                        (round < KV_EVICT_ROUNDS * KV_EVICT_SAMPLES || !pick.found);
         round++) {
        uint32_t partition = s_draw_partition(self);
        const kv_entry_t *sample[1];
        if (kv_store_sample(store, partition, kv_splitmix64(&self->rng), sample, 1) == 1)
            s_consider(self, &pick, partition, sample[0]);
        if (s_volatile(self) &&
            kv_store_sample_expiring(store, partition, kv_splitmix64(&self->rng), sample, 1) == 1)
            s_consider(self, &pick, partition, sample[0]);
    }
    return pick.found ? 0 : -1;
}
