/*  kv_repl_role.c: the role this node holds for each partition.
 *
 *  Each partition's role is a named state (kv_repl_state_t) changed in one
 *  place, kv_repl_role_execute, by named events, like the Guide's bstar.c:
 *
 *      NONE --FOLLOW--> SYNCING --SYNCED--> REPLICA or LEARNER
 *      REPLICA <--RETABLE--> LEARNER --END--> READY (--RETABLE--> REPLICA)
 *      SYNCING, REPLICA, LEARNER, READY --RESYNC--> SYNCING
 *      any but NONE --DROP--> NONE
 *      any --PRIMARY--> PRIMARY, --FENCE--> FENCED (and back)
 *
 *  A demoted primary goes PRIMARY --DROP--> NONE --FOLLOW--> SYNCING: it
 *  may hold writes nobody acknowledged, so it starts over from a snapshot.
 *  An event that names the current state again is no transition.
 *
 *  kv_repl_role_apply_table turns a new routing table into these events and
 *  does what each change implies (subscriptions, snapshots asked, data
 *  dropped, waiting writes answered or abandoned).
 */
#include "kv_repl_int.h"

#include <assert.h>

#include "kv_log.h"

static const char *s_state_names[KV_REPL_STATES] = {"none",  "syncing", "replica", "learner",
                                                    "ready", "primary", "fenced"};

static const char *s_event_names[KV_REPL_EVENTS] = {"primary", "fence",  "follow", "retable",
                                                    "drop",    "resync", "synced", "end"};

/* Help lines of the per-state counters (kv_repl_role_<state>_total). */
static const char *s_state_helps[KV_REPL_STATES] = {
    "partitions dropped by this node",
    "partitions that started waiting for a snapshot",
    "partitions that became an in-sync replica",
    "partitions that became an in-sync learner",
    "learners that applied a fenced stream to its end",
    "partitions this node became primary of",
    "primaries fenced for a hand-off"};

const char *kv_repl_state_name(kv_repl_state_t state) {
    return state < KV_REPL_STATES ? s_state_names[state] : "?";
}

const char *kv_repl_event_name(kv_repl_event_t event) {
    return event < KV_REPL_EVENTS ? s_event_names[event] : "?";
}

/* --- the state machine ----------------------------------------------------- */

/* The in-sync follower state the learner flag calls for. */
static kv_repl_state_t s_live_state(const kv_repl_part_t *part) {
    return part->learner ? KV_REPL_LEARNER : KV_REPL_REPLICA;
}

/* The state event leads to from part's state, or KV_REPL_STATES when the
 * event is illegal there. */
static kv_repl_state_t s_next(const kv_repl_part_t *part, kv_repl_event_t event) {
    kv_repl_state_t state = (kv_repl_state_t)part->state;
    switch (event) {
    case KV_REPL_EV_PRIMARY:
        return KV_REPL_PRIMARY;
    case KV_REPL_EV_FENCE:
        return KV_REPL_FENCED;
    case KV_REPL_EV_FOLLOW: /* a primary drops its data first */
        if (state == KV_REPL_NONE) return KV_REPL_SYNCING;
        return kv_repl_is_follower(part) ? state : KV_REPL_STATES;
    case KV_REPL_EV_RETABLE:
        if (state == KV_REPL_SYNCING) return state;
        return kv_repl_is_live(part) ? s_live_state(part) : KV_REPL_STATES;
    case KV_REPL_EV_DROP:
        return state == KV_REPL_NONE ? KV_REPL_STATES : KV_REPL_NONE;
    case KV_REPL_EV_RESYNC:
        return kv_repl_is_follower(part) ? KV_REPL_SYNCING : KV_REPL_STATES;
    case KV_REPL_EV_SYNCED:
        return state == KV_REPL_SYNCING ? s_live_state(part) : KV_REPL_STATES;
    case KV_REPL_EV_END:
        return state == KV_REPL_LEARNER ? KV_REPL_READY : KV_REPL_STATES;
    default:
        return KV_REPL_STATES;
    }
}

int kv_repl_role_execute(kv_repl_t *self, uint32_t partition, kv_repl_event_t event) {
    kv_repl_part_t *part = &self->parts[partition];
    kv_repl_state_t state = (kv_repl_state_t)part->state;
    kv_repl_state_t next = s_next(part, event);
    if (next == KV_REPL_STATES) {
        kv_log_error("node %s: partition %u: illegal event %s in state %s (epoch %" PRIu64
                     ", seq %" PRIu64 ")",
                     self->config.node_id, partition, kv_repl_event_name(event),
                     kv_repl_state_name(state), kv_repl_epoch(self), part->seq);
        kv_counters_inc(self->config.counters, self->count_illegal);
#ifndef NDEBUG
        assert(!"illegal replication role event");
#endif
        return -1;
    }
    if (next == state) return 0; /* nothing changes */
    int was_primary = kv_repl_is_primary(part);
    part->state = (uint8_t)next;
    /* A new primary cannot know which of the writes it applied were
     * removals: it assumes the last one was (see removed_seq's readers). */
    if (kv_repl_is_primary(part) && !was_primary) part->removed_seq = part->seq;
    kv_log_debug("node %s: partition %u: %s -> %s on %s (epoch %" PRIu64 ", seq %" PRIu64 ")",
                 self->config.node_id, partition, kv_repl_state_name(state),
                 kv_repl_state_name(next), kv_repl_event_name(event), kv_repl_epoch(self),
                 part->seq);
    kv_counters_inc(self->config.counters, self->count_transitions);
    kv_counters_inc(self->config.counters, self->count_state[next]);
    return 0;
}

void kv_repl_role_register_counters(kv_repl_t *self) {
    kv_counters_t *counters = self->config.counters;
    self->count_transitions = kv_counters_register(counters, "kv_repl_role_transitions_total",
                                                   "partition role changes on this node");
    self->count_illegal = kv_counters_register(counters, "kv_repl_illegal_transitions_total",
                                               "partition role events refused as illegal");
    for (int state = 0; state < KV_REPL_STATES; state++) {
        char name[KV_COUNTER_NAME_MAX + 1];
        snprintf(name, sizeof(name), "kv_repl_role_%s_total", s_state_names[state]);
        self->count_state[state] = kv_counters_register(counters, name, s_state_helps[state]);
    }
    self->count_resyncs = kv_counters_register(counters, "kv_repl_resyncs_total",
                                               "snapshots re-asked: gap, beacon or fence mismatch");
    self->count_resyncs_gap = kv_counters_register(counters, "kv_repl_resyncs_gap_total",
                                                   "snapshots re-asked on a gap in the stream");
    self->count_resyncs_behind = kv_counters_register(counters, "kv_repl_resyncs_behind_total",
                                                      "snapshots re-asked behind a beacon");
    self->count_snapshots_served = kv_counters_register(counters, "kv_repl_snapshots_served_total",
                                                        "partition snapshots sent to replicas");
    self->count_snapshots_applied = kv_counters_register(
        counters, "kv_repl_snapshots_applied_total", "partition snapshots applied here");
    self->count_trims = kv_counters_register(
        counters, "kv_repl_memory_trims_total",
        "times freed heap pages went back to the system after compactions at the limit");
    self->count_snapshots_full = kv_counters_register(
        counters, "kv_repl_snapshots_full_total",
        "partition snapshots given up here: they did not fit the memory limit");
    self->count_refused = kv_counters_register(counters, "kv_repl_memory_refusals_total",
                                               "writes refused at a memory limit (507)");
    self->count_refused_copy =
        kv_counters_register(counters, "kv_repl_memory_refusals_copy_total",
                             "... because a replica or learner of the partition was at its limit");
}

/* --- roles from the table -------------------------------------------------- */

static void s_drop(kv_repl_t *self, uint32_t partition) {
    kv_repl_part_t *part = &self->parts[partition];
    if (kv_repl_is_follower(part)) kv_repl_subscribe(self, partition, 0);
    /* A fenced primary hands over to its learner only once the learner has
     * applied the whole stream (kv_plan.h): when the table makes that
     * learner primary while we are up, our waiting writes are safe, confirm
     * them. Any other loss of the role (a failover while we were fenced
     * included: we are down in that table, and whoever was promoted may
     * lack them) leaves them unanswered (504: may have happened). */
    int handed_over = part->state == KV_REPL_FENCED && part->heir != KV_NO_NODE &&
                      self->self >= 0 && kv_table_owner(self->table, partition, 0) == part->heir &&
                      kv_table_node_state(self->table, (uint32_t)self->self) != KV_NODE_DOWN;
    kv_repl_primary_release(self, part, UINT64_MAX, handed_over);
    kv_repl_primary_refuse_held(self, part, KV_STATUS_MOVED); /* ask the new primary */
    kv_repl_replica_buffer_clear(self, part);
    kv_store_clear_partition(self->store, partition);
    kv_repl_role_execute(self, partition, KV_REPL_EV_DROP);
    kv_repl_role_reset(part);
}

static void s_become_primary(kv_repl_t *self, uint32_t partition, const kv_table_t *table) {
    kv_repl_part_t *part = &self->parts[partition];
    int fenced = (kv_table_flags(table, partition) & KV_PART_FENCED) != 0;
    if (kv_repl_is_follower(part)) {
        kv_repl_subscribe(self, partition, 0);
        kv_repl_replica_buffer_clear(self, part);
        kv_log_info("node %s: primary of partition %u at epoch %" PRIu64 ", seq %" PRIu64 "%s",
                    self->config.node_id, partition, kv_table_epoch(table), part->seq,
                    kv_repl_is_live(part) ? "" : " (was not in sync)");
    }
    if (!kv_repl_is_primary(part)) {
        for (int a = 0; a < KV_ACKERS; a++) part->acker[a] = KV_NO_NODE;
        part->learner = 0;
        part->snap_req = 0;
        part->primary = (uint16_t)self->self;
        /* What we applied as a replica counts as confirmed: the primary
         * before us is gone or handed over, and we are the copy now. */
        part->confirmed = part->seq;
        kv_repl_report_changed(self);
    }
    /* Fenced, our heir takes writes as soon as it flips, before we see
     * that table: a read held here could then be answered stale. */
    if (fenced) kv_repl_primary_refuse_held(self, part, KV_STATUS_MOVED);
    if (fenced && part->state != KV_REPL_FENCED) /* mark the end of our stream for the learner */
        kv_repl_primary_publish(self, partition, KV_OP_FENCE, part->seq, (kv_bytes_t){NULL, 0},
                                (kv_bytes_t){NULL, 0});
    kv_repl_role_execute(self, partition, fenced ? KV_REPL_EV_FENCE : KV_REPL_EV_PRIMARY);
    part->heir = fenced ? kv_table_learner(table, partition) : KV_NO_NODE;
}

static void s_become_replica(kv_repl_t *self, uint32_t partition, const kv_table_t *table,
                             int learner) {
    kv_repl_part_t *part = &self->parts[partition];
    uint16_t primary = kv_table_owner(table, partition, 0);
    if (kv_repl_is_primary(part)) { /* demoted: we may hold unacknowledged writes */
        kv_log_info("node %s: no longer primary of partition %u (epoch %" PRIu64 "), resyncing",
                    self->config.node_id, partition, kv_table_epoch(table));
        s_drop(self, partition);
    }
    if (part->state == KV_REPL_NONE) {
        kv_repl_role_execute(self, partition, KV_REPL_EV_FOLLOW);
        kv_repl_subscribe(self, partition, 1);
        kv_repl_report_changed(self);
    }
    if ((uint8_t)learner != part->learner) { /* a READY learner is never one without the flag */
        part->learner = (uint8_t)learner;
        kv_repl_role_execute(self, partition, KV_REPL_EV_RETABLE);
        kv_repl_report_changed(self);
    }
    int live = kv_repl_is_live(part);
    if (part->primary != primary) {
        part->primary = primary;
        part->snap_req = 0; /* a request to the old primary will never be answered */
        if (!live) kv_repl_replica_buffer_clear(self, part);
    }
    if (!live && !part->snap_req && !part->full) kv_repl_replica_ask_snapshot(self, partition);
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
        else if (self->parts[p].state != KV_REPL_NONE) {
            s_drop(self, p);
            kv_repl_report_changed(self);
        }
    }
}
