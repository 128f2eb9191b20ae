/*  kv_repl_role.c: the role this node holds for each partition.
 *
 *  Roles come from the routing table: kv_repl_role_apply_table walks the
 *  partitions and makes this node primary, replica (or learner) or nothing
 *  of each, with what each change implies (subscriptions, snapshots asked,
 *  data dropped, waiting writes answered or abandoned).
 */
#include "kv_repl_int.h"

#include "kv_log.h"

static void s_drop(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    if (part->role == KV_REPL_ROLE_REPLICA) kv_repl_subscribe(self, partition, 0);
    /* A fenced primary hands over to its learner only once the learner has
     * applied the whole stream (kv_plan.h): when the table makes that
     * learner primary while we are up, our waiting writes are safe, confirm
     * them. Any other loss of the role (a failover while we were fenced
     * included: we are down in that table, and whoever was promoted may
     * lack them) leaves them unanswered (504: may have happened). */
    int handed_over = part->fenced && part->heir != KV_NO_NODE && self->self >= 0 &&
                      kv_table_owner(self->table, partition, 0) == part->heir &&
                      self->table->nodes[self->self].state != KV_NODE_DOWN;
    kv_repl_primary_release(self, part, UINT64_MAX, handed_over);
    kv_repl_replica_buffer_clear(part);
    kv_store_clear_partition(self->store, partition);
    kv_repl_role_reset(part);
}

static void s_become_primary(kv_repl_t *self, uint32_t partition, const kv_table_t *table) {
    kv_repl_part_t *part = &self->parts[partition];
    if (part->role == KV_REPL_ROLE_REPLICA) {
        kv_repl_subscribe(self, partition, 0);
        kv_repl_replica_buffer_clear(part);
        kv_log_info("node %s: primary of partition %u at epoch %" PRIu64 ", seq %" PRIu64 "%s",
                    self->config.node_id, partition, table->epoch, part->seq,
                    part->live ? "" : " (was not in sync)");
    }
    if (part->role != KV_REPL_ROLE_PRIMARY) {
        for (int a = 0; a < KV_ACKERS; a++) part->acker[a] = KV_NO_NODE;
        part->role = KV_REPL_ROLE_PRIMARY;
        part->live = part->learner = part->ready = 0;
        part->snap_req = 0;
        part->primary = (uint16_t)self->self;
        kv_repl_report_changed(self);
    }
    int fenced = (kv_table_flags(table, partition) & KV_PART_FENCED) != 0;
    if (fenced && !part->fenced) /* mark the end of our stream for the learner */
        kv_repl_primary_publish(self, partition, KV_OP_FENCE, part->seq, (kv_bytes_t){NULL, 0},
                                (kv_bytes_t){NULL, 0});
    part->fenced = (uint8_t)fenced;
    part->heir = fenced ? kv_table_learner(table, partition) : KV_NO_NODE;
}

static void s_become_replica(kv_repl_t *self, uint32_t partition, const kv_table_t *table,
                             int learner) {
    kv_repl_part_t *part = &self->parts[partition];
    uint16_t primary = kv_table_owner(table, partition, 0);
    if (part->role == KV_REPL_ROLE_PRIMARY) { /* demoted: we may hold unacknowledged writes */
        kv_log_info("node %s: no longer primary of partition %u (epoch %" PRIu64 "), resyncing",
                    self->config.node_id, partition, table->epoch);
        s_drop(self, partition);
    }
    if (part->role != KV_REPL_ROLE_REPLICA) {
        part->role = KV_REPL_ROLE_REPLICA;
        part->live = 0;
        kv_repl_subscribe(self, partition, 1);
        kv_repl_report_changed(self);
    }
    if ((uint8_t)learner != part->learner || (part->ready && !learner)) {
        part->learner = (uint8_t)learner;
        part->ready = 0;
        kv_repl_report_changed(self);
    }
    if (part->primary != primary) {
        part->primary = primary;
        part->snap_req = 0; /* a request to the old primary will never be answered */
        if (!part->live) kv_repl_replica_buffer_clear(part);
    }
    if (!part->live && !part->snap_req) kv_repl_replica_ask_snapshot(self, partition);
}

void kv_repl_role_reset(kv_repl_part_t *part) {
    memset(part, 0, sizeof(*part));
    for (int a = 0; a < KV_ACKERS; a++) part->acker[a] = KV_NO_NODE;
    part->primary = part->heir = KV_NO_NODE;
}

void kv_repl_role_apply_table(kv_repl_t *self, const kv_table_t *table, int node) {
    for (uint32_t p = 0; p < self->partitions; p++) {
        int role = node < 0 ? -1 : kv_table_role(table, p, (uint16_t)node);
        if (role == 0)
            s_become_primary(self, p, table);
        else if (role > 0) /* a replica may also be the learner: taking the primary slot */
            s_become_replica(self, p, table, kv_table_learner(table, p) == (uint16_t)node);
        else if (self->parts[p].role != KV_REPL_ROLE_NONE) {
            s_drop(self, p);
            kv_repl_report_changed(self);
        }
    }
}
