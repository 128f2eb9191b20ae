/*  kv_repl_ttl.c: expiry as a partition's primary decides it.
 *
 *  An entry's deadline is absolute (the primary's wall clock when it was
 *  written, plus its ttl) and travels with the entry: replication,
 *  snapshots, moves and failover keep it as it is. Every node hides an
 *  expired entry at once (kv_store_get), but only the partition's primary
 *  removes it: it numbers the removal in the partition's sequence and
 *  publishes it like any RM, so replicas never diverge and a promoted
 *  replica holds the same keys. A replica keeps its expired entries until
 *  that removal arrives (the store visits them again every
 *  KV_STORE_EXPIRE_RETRY_MS), so if the primary dies first, the replica it
 *  promotes finds them in its own index and removes them itself.
 *
 *  The work follows the keys that expire: the store's per-partition index
 *  of deadlines leads to them (kv_store_expire), and a store without
 *  expiring entries costs one comparison per tick. Each tick spends at most
 *  KV_TTL_BUDGET_US, then requests are served again before the rest (the
 *  loop does not sleep while a backlog remains), so a wave of expiries
 *  delays no request by more than the budget.
 */
#include "kv_repl_int.h"

#include "kv_clock.h"

#define KV_TTL_TICK_MS 50     /* how often due deadlines are looked for */
#define KV_TTL_BUDGET_US 1000 /* time one tick may spend reclaiming */
#define KV_TTL_BATCH 64       /* deadlines per partition between clock reads */

uint64_t kv_repl_ttl_left(const kv_repl_t *self, const kv_entry_t *entry) {
    int64_t expiry = kv_entry_expiry(entry);
    if (!expiry) return 0;
    int64_t left = expiry - kv_store_now(self->store);
    return left > 0 ? (uint64_t)left : 1; /* an entry shown is not expired yet */
}

typedef struct {
    kv_repl_t *repl;    /* the engine */
    uint32_t partition; /* the partition being reclaimed */
    int primary;        /* we decide: remove and publish */
} s_reclaim_t;

/* Removes one expired key as the primary: a write like any RM (its own
 * seq, the partition's last removal), published, confirmed by the
 * replicas' ordinary ACKs. A key a transaction holds is left for later:
 * the transaction's commit decides it. */
static int s_reclaim(const char *key, size_t klen, void *arg) {
    s_reclaim_t *r = arg;
    kv_repl_t *self = r->repl;
    if (!r->primary) return 0; /* a replica waits for its primary's removal */
    if (kv_repl_tx_locked(self, r->partition, key, klen, 1)) return 0;
    kv_repl_primary_remove(self, r->partition, key, klen);
    kv_counters_inc(self->config.counters, self->count_expired);
    return 1;
}

/* Reclaims what is due in partition; returns 1 when more may be due. */
static int s_reclaim_partition(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    s_reclaim_t r = {self, partition, part->state == KV_REPL_PRIMARY};
    if (!r.primary && !kv_repl_is_follower(part)) return 0; /* not ours: nothing indexed */
    int more = kv_store_expire(self->store, partition, KV_TTL_BATCH, s_reclaim, &r) == KV_TTL_BATCH;
    kv_repl_reclaim(self, partition); /* near the limit: the blocks back now */
    return more;
}

void kv_repl_ttl_tick(kv_repl_t *self) {
    if (kv_store_expiry_items(self->store) == 0) return; /* nothing will ever expire */
    int64_t now = kv_clock_mono_ms();
    if (!self->ttl_backlog && now < self->next_ttl) return;
    self->next_ttl = now + KV_TTL_TICK_MS;
    self->ttl_backlog = 0;
    int64_t deadline = kv_clock_mono_us() + KV_TTL_BUDGET_US;
    for (uint32_t i = 0; i < self->partitions; i++) {
        uint32_t p = (self->ttl_cursor + i) % self->partitions;
        if (!kv_store_next_expiry(self->store, p)) continue;
        self->ttl_backlog |= s_reclaim_partition(self, p);
        if (kv_clock_mono_us() >= deadline) { /* the rest after the next requests */
            self->ttl_cursor = p;
            self->ttl_backlog = 1;
            return;
        }
    }
}

void kv_repl_ttl_register_counters(kv_repl_t *self) {
    self->count_expired = kv_counters_register(self->config.counters, "kv_node_expired_keys_total",
                                               "keys removed by expiry (as primary)");
}
