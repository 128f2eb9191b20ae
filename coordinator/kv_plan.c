/*  kv_plan.c: the placement rules of kv_plan.h, one bounded step at a time.
 *
 *  A step runs in phases, each one pass over the partitions:
 *
 *      0. JOINING nodes that hold anything become ACTIVE;
 *      1. repair: failed owners and learners are dropped, a dead primary is
 *         replaced by its best live replica, impossible moves are cancelled;
 *      2. progress: learners that reported live or ready advance their move;
 *      3. ownerless partitions (a new cluster) are assigned directly;
 *      4. new moves, while fewer than max_moves learners are set:
 *         a. re-replication, b. drains of leaving nodes, c. primary balance,
 *         d. replica balance (only once primaries are balanced);
 *      5. LEAVING nodes that hold nothing become LEFT.
 *
 *  Why "projected" loads: a move takes several steps (copy, fence, flip),
 *  and the planner must not schedule the same move twice meanwhile. So a
 *  node's load and primary count are computed as if every pending move had
 *  already flipped: the learner holds its future slot, and the owner that
 *  will drop out no longer counts. Balance then converges without
 *  overshooting, whatever the reports do between steps.
 *
 *  Why the indexes in phase 4c/4d: balancing looks for "a partition whose
 *  primary is A and whose replica is B" once per move; scanning all P
 *  partitions for each would make a step quadratic in P. Instead one pass
 *  buckets the candidate partitions by (primary, replica) and by replica,
 *  and each bucket is consumed front to back, so a step stays
 *  O(P * (R + nodes)) however many moves it schedules.
 *
 *  Ties always go to the lowest node index, then the lowest partition, so
 *  the same table and facts always give the same plan.
 */
#include "kv_plan.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_log.h"

typedef struct {
    kv_table_t *table;                /* the table being edited */
    const kv_plan_facts_t *facts;     /* the nodes' reports; NULL means none */
    uint32_t partitions;              /* P */
    uint32_t replication;             /* R */
    uint32_t nodes;                   /* kv_table_node_count(table) */
    uint32_t moves;                   /* learners currently set */
    uint32_t max_moves;               /* learners allowed at once */
    uint32_t load[KV_MAX_NODES];      /* slots + learner roles, projected */
    uint32_t primaries[KV_MAX_NODES]; /* primary slots, projected */
    uint32_t *pairs;                  /* nodes x nodes: [primary][replica] partitions, projected */
    uint8_t taken[KV_MAX_NODES];      /* scratch: nodes holding the partition at hand */
    kv_counters_t *counters;          /* facts->counters, or NULL */
    size_t count_transitions;         /* counter handles */
    size_t count_illegal;
    size_t count_events[KV_PLAN_EVENTS];
    size_t count_failovers;
} s_plan_t;

/* Partitions bucketed by a key, each bucket read front to back once. */
typedef struct {
    uint32_t keys;    /* buckets */
    uint32_t *start;  /* keys + 1 offsets into items */
    uint32_t *cursor; /* per bucket: the next item not yet consumed */
    uint32_t *items;  /* partitions, by bucket, in partition order */
} s_index_t;

/* Writes the bucket keys of partition p into keys; returns how many. */
typedef uint32_t (*s_index_keys_fn)(const s_plan_t *self, uint32_t p, uint32_t *keys);

/* --- node and partition helpers ------------------------------------------ */

/* Out-of-range indexes read as LEFT: nobody to use or to wait for. */
static uint8_t s_state(const s_plan_t *self, uint16_t node) {
    return kv_table_node_state(self->table, node);
}

/* Can hold data it already has: ACTIVE or LEAVING. */
static int s_usable(const s_plan_t *self, uint16_t node) {
    uint8_t state = s_state(self, node);
    return state == KV_NODE_ACTIVE || state == KV_NODE_LEAVING;
}

/* Lately gave up a partition for memory (facts->full). */
static int s_full(const s_plan_t *self, uint16_t node) {
    const kv_plan_facts_t *facts = self->facts;
    return facts && facts->full && node < facts->node_count && facts->full[node];
}

/* Can be given new work: ACTIVE, or JOINING (made ACTIVE when chosen), and
 * not full. */
static int s_target(const s_plan_t *self, uint16_t node) {
    uint8_t state = s_state(self, node);
    return (state == KV_NODE_ACTIVE || state == KV_NODE_JOINING) && !s_full(self, node);
}

/* Copies p's owner slots into own, all KV_REPLICATION_MAX of them: the
 * slots past R read KV_NO_NODE. */
static void s_owners(const s_plan_t *self, uint32_t p, uint16_t *own) {
    for (uint32_t slot = 0; slot < KV_REPLICATION_MAX; slot++)
        own[slot] = kv_table_owner(self->table, p, slot);
}

static uint16_t s_primary(const s_plan_t *self, uint32_t p) {
    return kv_table_owner(self->table, p, 0);
}

static uint32_t s_owner_count(const s_plan_t *self, uint32_t p) {
    uint32_t count = 0;
    for (uint32_t slot = 0; slot < self->replication; slot++)
        count += kv_table_owner(self->table, p, slot) != KV_NO_NODE;
    return count;
}

static void s_set_owners(const s_plan_t *self, uint32_t p, const uint16_t *list, uint32_t count) {
    for (uint32_t slot = 0; slot < self->replication; slot++)
        kv_table_set_owner(self->table, p, slot, slot < count ? list[slot] : KV_NO_NODE);
}

static const kv_plan_report_t *s_report(const s_plan_t *self, uint16_t node, uint32_t p) {
    static const kv_plan_report_t none = {0, 0, 0, 0, 0};
    const kv_plan_facts_t *facts = self->facts;
    if (!facts || !facts->reports || node >= facts->node_count) return &none;
    return &facts->reports[(size_t)node * self->partitions + p];
}

static uint32_t s_target_count(const s_plan_t *self) {
    uint32_t count = 0;
    for (uint32_t i = 0; i < self->nodes; i++) count += s_target(self, (uint16_t)i);
    return count;
}

static void s_activate(const s_plan_t *self, uint16_t node) {
    if (s_state(self, node) == KV_NODE_JOINING)
        kv_table_set_node_state(self->table, node, KV_NODE_ACTIVE);
}

/* --- the flip ------------------------------------------------------------- */

/* The owners partition p gets when its learner takes its place; writes them
 * into out (R entries) and returns how many. A plain learner joins as the
 * last replica, leaving replicas drop out, and when the partition is full
 * the last remaining replica makes room (the planner puts the replica that
 * should go last). A primary learner goes first, followed by the active
 * replicas and then the old primary, which drops out when surplus. */
static uint32_t s_flip_owners(const s_plan_t *self, uint32_t p, uint16_t *out) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    uint16_t learner = kv_table_learner(self->table, p);
    uint32_t r = self->replication, n = 0;
    if (!(kv_table_flags(self->table, p) & KV_PART_MOVE_PRIMARY)) {
        out[n++] = own[0];
        for (uint32_t slot = 1; slot < r; slot++) {
            uint16_t o = own[slot];
            if (o == KV_NO_NODE || o == learner || s_state(self, o) == KV_NODE_LEAVING) continue;
            out[n++] = o;
        }
        if (n == r) n--; /* r >= 2 here: s_repair cancels plain learners when R is 1 */
        out[n++] = learner;
        return n;
    }
    out[n++] = learner;
    for (uint32_t slot = 1; slot < r && n < r; slot++) {
        uint16_t o = own[slot];
        if (o == KV_NO_NODE || o == learner || s_state(self, o) != KV_NODE_ACTIVE) continue;
        out[n++] = o;
    }
    if (n < r && own[0] != learner && s_state(self, own[0]) == KV_NODE_ACTIVE) out[n++] = own[0];
    return n;
}

/* --- the hand-off state machine ------------------------------------------- */

static const char *s_handoff_names[KV_PLAN_HANDOFF_STATES] = {"stable", "learning", "fencing"};
static const char *s_event_names[KV_PLAN_EVENTS] = {"learn", "fence", "flip", "cancel", "takeover"};

kv_plan_handoff_t kv_plan_handoff(const kv_table_t *table, uint32_t p) {
    if (kv_table_learner(table, p) == KV_NO_NODE) return KV_PLAN_STABLE;
    uint8_t both = KV_PART_MOVE_PRIMARY | KV_PART_FENCED;
    return (kv_table_flags(table, p) & both) == both ? KV_PLAN_FENCING : KV_PLAN_LEARNING;
}

const char *kv_plan_handoff_name(kv_plan_handoff_t state) {
    return state < KV_PLAN_HANDOFF_STATES ? s_handoff_names[state] : "?";
}

const char *kv_plan_event_name(kv_plan_event_t event) {
    return event < KV_PLAN_EVENTS ? s_event_names[event] : "?";
}

/* The state event leads to from state (flags: the partition's), or
 * KV_PLAN_HANDOFF_STATES when it is illegal there. */
static kv_plan_handoff_t s_handoff_next(kv_plan_handoff_t state, kv_plan_event_t event,
                                        uint8_t flags) {
    int moves_primary = (flags & KV_PART_MOVE_PRIMARY) != 0;
    switch (event) {
    case KV_PLAN_EV_LEARN:
        return state == KV_PLAN_STABLE ? KV_PLAN_LEARNING : KV_PLAN_HANDOFF_STATES;
    case KV_PLAN_EV_FENCE:
        return state == KV_PLAN_LEARNING && moves_primary ? KV_PLAN_FENCING
                                                          : KV_PLAN_HANDOFF_STATES;
    case KV_PLAN_EV_FLIP: /* a plain learner flips once live, a primary one once ready */
        return state == KV_PLAN_FENCING || (state == KV_PLAN_LEARNING && !moves_primary)
                   ? KV_PLAN_STABLE
                   : KV_PLAN_HANDOFF_STATES;
    case KV_PLAN_EV_CANCEL:
    case KV_PLAN_EV_TAKEOVER:
        return state != KV_PLAN_STABLE ? KV_PLAN_STABLE : KV_PLAN_HANDOFF_STATES;
    default:
        return KV_PLAN_HANDOFF_STATES;
    }
}

/* Registers the step's counters (a lookup once they exist). */
static void s_register_counters(s_plan_t *self) {
    kv_counters_t *counters = self->counters;
    self->count_transitions = kv_counters_register(counters, "kv_plan_handoff_transitions_total",
                                                   "partition hand-off state changes planned");
    self->count_illegal = kv_counters_register(counters, "kv_plan_illegal_transitions_total",
                                               "hand-off events refused as illegal");
    for (int event = 0; event < KV_PLAN_EVENTS; event++) {
        char name[KV_COUNTER_NAME_MAX + 1];
        snprintf(name, sizeof(name), "kv_plan_handoff_%s_total", s_event_names[event]);
        self->count_events[event] = kv_counters_register(counters, name, NULL);
    }
    self->count_failovers = kv_counters_register(counters, "kv_plan_failovers_total",
                                                 "dead primaries replaced by a copy");
}

void kv_plan_register_counters(kv_counters_t *counters) {
    s_plan_t plan = {.counters = counters};
    s_register_counters(&plan);
}

/* The one place a partition's hand-off moves: applies event to p in the
 * table (LEARN places node as learner with flags; FLIP gives the learner
 * its slot), logs it at debug level and counts it. An illegal event
 * changes nothing: logged at error, counted, asserted in debug builds.
 * Returns 0 or -1. */
static int s_handoff(s_plan_t *self, uint32_t p, kv_plan_event_t event, uint16_t node,
                     uint8_t flags) {
    kv_table_t *table = self->table;
    kv_plan_handoff_t state = kv_plan_handoff(table, p);
    kv_plan_handoff_t next = s_handoff_next(state, event, kv_table_flags(table, p));
    uint16_t learner = event == KV_PLAN_EV_LEARN ? node : kv_table_learner(table, p);
    if (next == KV_PLAN_HANDOFF_STATES) {
        kv_log_error("plan: partition %u: illegal hand-off event %s in state %s (epoch %" PRIu64
                     ", learner node %u)",
                     p, kv_plan_event_name(event), kv_plan_handoff_name(state),
                     kv_table_epoch(table), learner);
        kv_counters_inc(self->counters, self->count_illegal);
#ifndef NDEBUG
        assert(!"illegal hand-off event");
#endif
        return -1;
    }
    uint16_t out[KV_REPLICATION_MAX];
    switch (event) {
    case KV_PLAN_EV_LEARN:
        kv_table_set_learner(table, p, node);
        kv_table_set_flags(table, p, flags);
        break;
    case KV_PLAN_EV_FENCE:
        kv_table_set_flags(table, p, kv_table_flags(table, p) | KV_PART_FENCED);
        break;
    case KV_PLAN_EV_FLIP:
        s_set_owners(self, p, out, s_flip_owners(self, p, out));
        kv_table_set_learner(table, p, KV_NO_NODE);
        kv_table_set_flags(table, p, 0);
        break;
    default: /* CANCEL, TAKEOVER: the move is over, the owners stay */
        kv_table_set_learner(table, p, KV_NO_NODE);
        kv_table_set_flags(table, p, 0);
        break;
    }
    kv_log_debug(
        "plan: partition %u: %s -> %s on %s (epoch %" PRIu64 ", learner node %u, seq %" PRIu64 ")",
        p, kv_plan_handoff_name(state), kv_plan_handoff_name(next), kv_plan_event_name(event),
        kv_table_epoch(table), learner, s_report(self, learner, p)->seq);
    kv_counters_inc(self->counters, self->count_transitions);
    kv_counters_inc(self->counters, self->count_events[event]);
    return 0;
}

/* --- projected loads ------------------------------------------------------ */

/* Adds (sign 1) or removes (sign -1) what partition p will hold once its
 * pending move, if any, has flipped. */
static void s_account(s_plan_t *self, uint32_t p, int sign) {
    uint16_t list[KV_REPLICATION_MAX];
    uint32_t count;
    if (kv_table_learner(self->table, p) != KV_NO_NODE)
        count = s_flip_owners(self, p, list);
    else {
        count = self->replication;
        s_owners(self, p, list);
    }
    for (uint32_t i = 0; i < count; i++) {
        if (list[i] >= self->nodes) continue;
        uint32_t *pair = i > 0 && list[0] < self->nodes
                             ? &self->pairs[(size_t)list[0] * self->nodes + list[i]]
                             : NULL;
        if (sign > 0) {
            self->load[list[i]]++;
            self->primaries[list[i]] += i == 0;
            if (pair) (*pair)++;
        } else {
            self->load[list[i]]--;
            self->primaries[list[i]] -= i == 0;
            if (pair) (*pair)--;
        }
    }
}

static void s_count_loads(s_plan_t *self) {
    memset(self->load, 0, sizeof(self->load));
    memset(self->primaries, 0, sizeof(self->primaries));
    memset(self->pairs, 0, (size_t)self->nodes * self->nodes * sizeof(*self->pairs));
    for (uint32_t p = 0; p < self->partitions; p++) s_account(self, p, 1);
}

/* Makes node the learner of p and counts the move. */
static void s_place(s_plan_t *self, uint32_t p, uint16_t node, uint8_t flags) {
    s_account(self, p, -1);
    s_handoff(self, p, KV_PLAN_EV_LEARN, node, flags);
    s_account(self, p, 1);
    s_activate(self, node);
    self->moves++;
}

/* --- choosing nodes ------------------------------------------------------- */

static void s_mark(s_plan_t *self, uint32_t p, uint8_t value) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    for (uint32_t slot = 0; slot < self->replication; slot++)
        if (own[slot] < self->nodes) self->taken[own[slot]] = value;
    uint16_t learner = kv_table_learner(self->table, p);
    if (learner < self->nodes) self->taken[learner] = value;
}

/* Whether node a ranks strictly before node b as a new replica of a
 * partition whose primary is primary: less load, then fewer partitions
 * already shared with that primary. Spreading each node's replicas over
 * all the others spreads its primaries when it fails, and the copies when
 * it is replaced. */
static int s_before(const s_plan_t *self, uint16_t primary, uint16_t a, uint16_t b) {
    if (self->load[a] != self->load[b]) return self->load[a] < self->load[b];
    if (primary >= self->nodes) return 0;
    const uint32_t *row = &self->pairs[(size_t)primary * self->nodes];
    return row[a] < row[b];
}

/* Fills out with up to count target nodes not taken, best first by
 * s_before (ties: lowest index); returns how many. One pass over the
 * nodes, keeping the best count in order. */
static uint32_t s_pick(const s_plan_t *self, uint16_t primary, uint16_t *out, uint32_t count) {
    uint32_t found = 0;
    for (uint32_t i = 0; i < self->nodes && count; i++) {
        uint16_t node = (uint16_t)i;
        if (self->taken[i] || !s_target(self, node)) continue;
        if (found == count && !s_before(self, primary, node, out[found - 1])) continue;
        uint32_t at = found < count ? found++ : found - 1;
        while (at > 0 && s_before(self, primary, node, out[at - 1])) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = node;
    }
    return found;
}

/* The best new target node for p (s_pick), or KV_NO_NODE. */
static uint16_t s_pick_newcomer(s_plan_t *self, uint32_t p) {
    uint16_t node = KV_NO_NODE;
    s_mark(self, p, 1);
    s_pick(self, s_primary(self, p), &node, 1);
    s_mark(self, p, 0);
    return node;
}

/* --- phase 1: repair ------------------------------------------------------ */

/* Whether p's learner can no longer finish its move. */
static int s_learner_hopeless(const s_plan_t *self, uint32_t p, uint16_t old_primary) {
    uint16_t learner = kv_table_learner(self->table, p);
    uint16_t primary = s_primary(self, p);
    uint8_t flags = kv_table_flags(self->table, p);
    if (s_state(self, learner) != KV_NODE_ACTIVE) return 1;          /* leaving, down or gone */
    if (s_report(self, learner, p)->full) return 1;                  /* it cannot hold p */
    if (!s_usable(self, primary) || primary == learner) return 1;    /* nobody to copy from */
    if (flags & KV_PART_MOVE_PRIMARY) return primary != old_primary; /* failed over */
    int role = kv_table_role(self->table, p, learner);               /* R when only the learner */
    return self->replication == 1 || (role > 0 && (uint32_t)role < self->replication);
}

/* Drops down and left owners (and duplicates), replaces a dead primary by
 * the live replica with the highest sequence, cancels hopeless moves. */
static void s_repair(s_plan_t *self, uint32_t p) {
    kv_table_t *table = self->table;
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    uint16_t old_primary = own[0], primary = own[0];
    if (s_state(self, primary) == KV_NODE_LEFT) primary = KV_NO_NODE; /* gone for good */
    uint16_t replicas[KV_REPLICATION_MAX];
    uint32_t n = 0;
    for (uint32_t slot = 1; slot < self->replication; slot++) {
        uint16_t o = own[slot];
        int duplicate = o == primary;
        for (uint32_t i = 0; i < n; i++) duplicate |= replicas[i] == o;
        if (!duplicate && s_usable(self, o)) replicas[n++] = o;
    }
    if (!s_usable(self, primary)) {
        /* With no primary at all (or one forgotten) nobody defines "live":
         * the most advanced copy beats none. */
        int need_live = primary != KV_NO_NODE, best = -1;
        for (uint32_t i = 0; i < n; i++) {
            const kv_plan_report_t *report = s_report(self, replicas[i], p);
            if (need_live && !report->live) continue;
            if (best < 0 || report->seq > s_report(self, replicas[best], p)->seq) best = (int)i;
        }
        /* The learner confirms writes too (kv_repl.h): live and ahead of
         * every replica, it holds acknowledged writes they lack, so it
         * takes over and its move is over. */
        uint16_t learner = kv_table_learner(table, p);
        const kv_plan_report_t *ahead = s_report(self, learner, p);
        int in_slot = 0;
        for (uint32_t i = 0; i < n; i++) in_slot |= replicas[i] == learner;
        if (learner != KV_NO_NODE && !in_slot && s_state(self, learner) == KV_NODE_ACTIVE &&
            ahead->live && (best < 0 || ahead->seq > s_report(self, replicas[best], p)->seq)) {
            primary = learner;
            s_handoff(self, p, KV_PLAN_EV_TAKEOVER, KV_NO_NODE, 0);
            kv_counters_inc(self->counters, self->count_failovers);
        } else if (best >= 0) {
            primary = replicas[best];
            kv_counters_inc(self->counters, self->count_failovers);
            memmove(&replicas[best], &replicas[best + 1],
                    (n - (uint32_t)best - 1) * sizeof(*replicas));
            n--;
        }
    }
    own[0] = primary;
    for (uint32_t slot = 1; slot < self->replication; slot++)
        own[slot] = slot - 1 < n ? replicas[slot - 1] : KV_NO_NODE;
    s_set_owners(self, p, own, self->replication);

    uint8_t flags = kv_table_flags(table, p) & KV_PART_FLAGS_ALL;
    if (!(flags & KV_PART_MOVE_PRIMARY)) flags = 0; /* a lone fence */
    kv_table_set_flags(table, p, flags);
    if (kv_table_learner(table, p) != KV_NO_NODE && s_learner_hopeless(self, p, old_primary))
        s_handoff(self, p, KV_PLAN_EV_CANCEL, KV_NO_NODE, 0);
    if (kv_table_learner(table, p) == KV_NO_NODE)
        kv_table_set_flags(table, p, 0); /* flags of no move */
}

/* --- phase 2: progress ---------------------------------------------------- */

static void s_progress(s_plan_t *self, uint32_t p) {
    uint16_t learner = kv_table_learner(self->table, p);
    if (learner == KV_NO_NODE) return;
    const kv_plan_report_t *report = s_report(self, learner, p);
    uint8_t flags = kv_table_flags(self->table, p);
    if (!(flags & KV_PART_MOVE_PRIMARY)) {
        if (report->live) s_handoff(self, p, KV_PLAN_EV_FLIP, KV_NO_NODE, 0);
    } else if (!(flags & KV_PART_FENCED)) {
        if (report->live) s_handoff(self, p, KV_PLAN_EV_FENCE, KV_NO_NODE, 0);
    } else if (report->ready)
        s_handoff(self, p, KV_PLAN_EV_FLIP, KV_NO_NODE, 0);
}

/* --- phase 3: ownerless partitions ---------------------------------------- */

/* The target not taken with the fewest primaries (then least load, lowest
 * index), or KV_NO_NODE. */
static uint16_t s_pick_primary(const s_plan_t *self) {
    uint16_t best = KV_NO_NODE;
    for (uint32_t i = 0; i < self->nodes; i++) {
        if (self->taken[i] || !s_target(self, (uint16_t)i)) continue;
        if (best != KV_NO_NODE &&
            (self->primaries[i] > self->primaries[best] ||
             (self->primaries[i] == self->primaries[best] && self->load[i] >= self->load[best])))
            continue;
        best = (uint16_t)i;
    }
    return best;
}

/* A partition without any owner holds no data: it gets min(R, targets)
 * owners at once, the primary spread by primaries, replicas by load. */
static void s_assign(s_plan_t *self, uint32_t p, uint32_t count) {
    uint16_t list[KV_REPLICATION_MAX];
    list[0] = s_pick_primary(self);
    self->taken[list[0]] = 1;
    uint32_t n = 1 + s_pick(self, list[0], list + 1, count - 1);
    self->taken[list[0]] = 0;
    s_set_owners(self, p, list, n);
    for (uint32_t i = 0; i < n; i++) s_activate(self, list[i]);
    s_account(self, p, 1);
}

/* --- phase 4: new moves --------------------------------------------------- */

/* a. Partitions with fewer owners than min(R, targets) get a learner. A
 * partition whose primary is down is left alone: nobody to copy from. */
static void s_replicate(s_plan_t *self) {
    uint32_t targets = s_target_count(self);
    uint32_t want = targets < self->replication ? targets : self->replication;
    for (uint32_t p = 0; p < self->partitions && self->moves < self->max_moves; p++) {
        if (kv_table_learner(self->table, p) != KV_NO_NODE) continue;
        if (!s_usable(self, s_primary(self, p)) || s_owner_count(self, p) >= want) continue;
        uint16_t node = s_pick_newcomer(self, p);
        if (node != KV_NO_NODE) s_place(self, p, node, 0);
    }
}

/* The active replica of p with the fewest primaries, or KV_NO_NODE. */
static uint16_t s_pick_heir(const s_plan_t *self, uint32_t p) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    uint16_t best = KV_NO_NODE;
    for (uint32_t slot = 1; slot < self->replication; slot++) {
        uint16_t o = own[slot];
        if (s_state(self, o) != KV_NODE_ACTIVE) continue;
        uint32_t fewest = best == KV_NO_NODE ? UINT32_MAX : self->primaries[best];
        uint32_t mine = self->primaries[o];
        if (mine > fewest || (mine == fewest && best < o)) continue; /* ties: lowest index */
        best = o;
    }
    return best;
}

/* Drops p's leaving replicas without a copy: used when every target node
 * already holds p, so the rest of the owners are all p can have. */
static void s_drop_leaving_replicas(s_plan_t *self, uint32_t p) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    uint16_t list[KV_REPLICATION_MAX];
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < self->replication; slot++)
        if (own[slot] != KV_NO_NODE && (slot == 0 || s_state(self, own[slot]) != KV_NODE_LEAVING))
            list[n++] = own[slot];
    s_account(self, p, -1);
    s_set_owners(self, p, list, n);
    s_account(self, p, 1);
}

/* b. Every partition a leaving node holds gets a learner to replace it: a
 * leaving primary hands off to a replica when it has an active one. */
static void s_drain(s_plan_t *self) {
    for (uint32_t p = 0; p < self->partitions && self->moves < self->max_moves; p++) {
        uint16_t own[KV_REPLICATION_MAX];
        s_owners(self, p, own);
        int leaving = 0;
        for (uint32_t slot = 0; slot < self->replication; slot++)
            leaving |= s_state(self, own[slot]) == KV_NODE_LEAVING;
        if (!leaving || kv_table_learner(self->table, p) != KV_NO_NODE) continue;
        if (s_state(self, own[0]) == KV_NODE_LEAVING) {
            uint16_t heir = s_pick_heir(self, p);
            if (heir == KV_NO_NODE) {
                s_mark(self, p, 1);
                heir = s_pick_primary(self);
                s_mark(self, p, 0);
            }
            if (heir != KV_NO_NODE) s_place(self, p, heir, KV_PART_MOVE_PRIMARY);
            continue;
        }
        if (s_state(self, own[0]) != KV_NODE_ACTIVE) continue; /* primary down: no source */
        uint16_t node = s_pick_newcomer(self, p);
        if (node != KV_NO_NODE)
            s_place(self, p, node, 0);
        else
            s_drop_leaving_replicas(self, p);
    }
}

static void s_index_destroy(s_index_t *index) {
    free(index->start);
    free(index->cursor);
    free(index->items);
    memset(index, 0, sizeof(*index));
}

/* Buckets every partition by the keys fn gives it (each below keys). */
static int s_index_build(const s_plan_t *self, s_index_t *index, uint32_t keys,
                         s_index_keys_fn fn) {
    uint32_t found[KV_REPLICATION_MAX + 1];
    index->keys = keys;
    index->start = calloc((size_t)keys + 1, sizeof(*index->start));
    index->cursor = calloc((size_t)keys + 1, sizeof(*index->cursor));
    if (!index->start || !index->cursor) return -1;
    for (uint32_t p = 0; p < self->partitions; p++) {
        uint32_t n = fn(self, p, found);
        for (uint32_t i = 0; i < n; i++) index->start[found[i] + 1]++;
    }
    for (uint32_t k = 0; k < keys; k++) index->start[k + 1] += index->start[k];
    index->items = malloc(((size_t)index->start[keys] + 1) * sizeof(*index->items));
    if (!index->items) return -1;
    memcpy(index->cursor, index->start, (size_t)keys * sizeof(*index->cursor));
    for (uint32_t p = 0; p < self->partitions; p++) {
        uint32_t n = fn(self, p, found);
        for (uint32_t i = 0; i < n; i++) index->items[index->cursor[found[i]]++] = p;
    }
    memcpy(index->cursor, index->start, (size_t)keys * sizeof(*index->cursor));
    return 0;
}

/* Whether p can take a learner that moves slots from node from to node to. */
typedef int (*s_movable_fn)(const s_plan_t *self, uint32_t p, uint16_t from, uint16_t to);

/* Consumes bucket key up to the first partition movable from -> to;
 * returns it, or UINT32_MAX when the bucket has none left. */
static uint32_t s_index_next(const s_plan_t *self, s_index_t *index, uint32_t key,
                             s_movable_fn movable, uint16_t from, uint16_t to) {
    while (index->cursor[key] < index->start[key + 1]) {
        uint32_t p = index->items[index->cursor[key]++];
        if (movable(self, p, from, to)) return p;
    }
    return UINT32_MAX;
}

/* The most and the least loaded target nodes by counts (ties: lowest
 * index); 0 when fewer than two targets. */
static int s_extremes(const s_plan_t *self, const uint32_t *counts, uint16_t *most,
                      uint16_t *least) {
    *most = *least = KV_NO_NODE;
    for (uint32_t i = 0; i < self->nodes; i++) {
        if (!s_target(self, (uint16_t)i)) continue;
        if (*most == KV_NO_NODE || counts[i] > counts[*most]) *most = (uint16_t)i;
        if (*least == KV_NO_NODE || counts[i] < counts[*least]) *least = (uint16_t)i;
    }
    return *most != *least;
}

/* Primary buckets: (primary, replica) pairs, and (primary, "any") at key
 * primary * (nodes + 1) + nodes. Only settled partitions with a target
 * node as primary qualify. */
static uint32_t s_primary_keys(const s_plan_t *self, uint32_t p, uint32_t *keys) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    if (kv_table_learner(self->table, p) != KV_NO_NODE || !s_target(self, own[0])) return 0;
    uint32_t base = own[0] * (self->nodes + 1), n = 0;
    keys[n++] = base + self->nodes;
    for (uint32_t slot = 1; slot < self->replication; slot++)
        if (own[slot] < self->nodes) keys[n++] = base + own[slot];
    return n;
}

static int s_primary_movable(const s_plan_t *self, uint32_t p, uint16_t from, uint16_t to) {
    return kv_table_learner(self->table, p) == KV_NO_NODE && s_primary(self, p) == from &&
           kv_table_role(self->table, p, to) != 0;
}

/* c. While the serving nodes' primaries differ by more than one, the most
 * loaded hands one to the least loaded, through a partition the latter
 * already replicates when there is one. Returns 1 once balanced. */
static int s_balance_primaries(s_plan_t *self) {
    uint16_t most, least;
    if (!s_extremes(self, self->primaries, &most, &least)) return 1;
    if (self->primaries[most] - self->primaries[least] <= 1) return 1;
    s_index_t index = {0, NULL, NULL, NULL};
    int balanced = 0;
    if (s_index_build(self, &index, self->nodes * (self->nodes + 1), s_primary_keys) != 0) {
        s_index_destroy(&index);
        return 0; /* out of memory: try again next step */
    }
    while (self->moves < self->max_moves) {
        s_extremes(self, self->primaries, &most, &least);
        if (self->primaries[most] - self->primaries[least] <= 1) {
            balanced = 1;
            break;
        }
        uint32_t base = most * (self->nodes + 1);
        uint32_t p = s_index_next(self, &index, base + least, s_primary_movable, most, least);
        if (p == UINT32_MAX)
            p = s_index_next(self, &index, base + self->nodes, s_primary_movable, most, least);
        if (p == UINT32_MAX) break; /* all its partitions are moving already */
        s_place(self, p, least, KV_PART_MOVE_PRIMARY);
    }
    s_index_destroy(&index);
    return balanced;
}

/* Replica buckets: each replica of a settled partition. */
static uint32_t s_replica_keys(const s_plan_t *self, uint32_t p, uint32_t *keys) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    if (kv_table_learner(self->table, p) != KV_NO_NODE) return 0;
    uint32_t n = 0;
    for (uint32_t slot = 1; slot < self->replication; slot++)
        if (own[slot] < self->nodes) keys[n++] = own[slot];
    return n;
}

/* A full partition of active owners, from a replica, to not an owner. */
static int s_replica_movable(const s_plan_t *self, uint32_t p, uint16_t from, uint16_t to) {
    if (kv_table_learner(self->table, p) != KV_NO_NODE) return 0;
    if (kv_table_role(self->table, p, from) < 1 || kv_table_role(self->table, p, to) >= 0) return 0;
    for (uint32_t slot = 0; slot < self->replication; slot++) /* also: not full */
        if (s_state(self, kv_table_owner(self->table, p, slot)) != KV_NODE_ACTIVE) return 0;
    return 1;
}

/* Puts node's replica slot of p last, where the flip makes room. */
static void s_move_replica_last(const s_plan_t *self, uint32_t p, uint16_t node) {
    uint16_t own[KV_REPLICATION_MAX];
    s_owners(self, p, own);
    uint32_t slot = (uint32_t)kv_table_role(self->table, p, node);
    for (; slot + 1 < self->replication; slot++) own[slot] = own[slot + 1];
    own[slot] = node;
    s_set_owners(self, p, own, self->replication);
}

/* d. While the serving nodes' loads differ by more than one, the most
 * loaded hands a replica slot to the least loaded. */
static void s_balance_replicas(s_plan_t *self) {
    uint16_t most, least;
    if (self->replication < 2 || !s_extremes(self, self->load, &most, &least)) return;
    if (self->load[most] - self->load[least] <= 1) return;
    s_index_t index = {0, NULL, NULL, NULL};
    if (s_index_build(self, &index, self->nodes, s_replica_keys) != 0) {
        s_index_destroy(&index);
        return; /* out of memory: try again next step */
    }
    while (self->moves < self->max_moves) {
        s_extremes(self, self->load, &most, &least);
        if (self->load[most] - self->load[least] <= 1) break;
        uint32_t p = s_index_next(self, &index, most, s_replica_movable, most, least);
        if (p == UINT32_MAX) break;
        s_move_replica_last(self, p, most);
        s_place(self, p, least, 0);
    }
    s_index_destroy(&index);
}

/* --- node states ---------------------------------------------------------- */

/* JOINING nodes that hold something become ACTIVE; with settle, LEAVING
 * nodes that hold nothing become LEFT. */
static void s_update_states(s_plan_t *self, int settle) {
    uint8_t holds[KV_MAX_NODES] = {0};
    kv_table_t *table = self->table;
    for (uint32_t p = 0; p < self->partitions; p++) {
        for (uint32_t slot = 0; slot < self->replication; slot++) {
            uint16_t owner = kv_table_owner(table, p, slot);
            if (owner < self->nodes) holds[owner] = 1;
        }
        uint16_t learner = kv_table_learner(table, p);
        if (learner < self->nodes) holds[learner] = 1;
    }
    for (uint32_t i = 0; i < self->nodes; i++) {
        uint8_t state = kv_table_node_state(table, i);
        if (state == KV_NODE_JOINING && holds[i]) kv_table_set_node_state(table, i, KV_NODE_ACTIVE);
        if (settle && state == KV_NODE_LEAVING && !holds[i])
            kv_table_set_node_state(table, i, KV_NODE_LEFT);
    }
}

/* --- the step ------------------------------------------------------------- */

/* Whether partition p's owners, learner or flags differ between two
 * copies of a table. */
static int s_partition_changed(const kv_table_t *before, const kv_table_t *after, uint32_t p) {
    for (uint32_t slot = 0; slot < kv_table_replication(after); slot++)
        if (kv_table_owner(before, p, slot) != kv_table_owner(after, p, slot)) return 1;
    return kv_table_learner(before, p) != kv_table_learner(after, p) ||
           kv_table_flags(before, p) != kv_table_flags(after, p);
}

/* Partitions and node states that differ between before and after. */
static int s_count_changes(const kv_table_t *before, const kv_table_t *after) {
    int changes = 0;
    for (uint32_t p = 0; p < kv_table_partitions(after); p++)
        changes += s_partition_changed(before, after, p);
    for (uint32_t i = 0; i < kv_table_node_count(after); i++)
        changes += kv_table_node_state(before, i) != kv_table_node_state(after, i);
    return changes;
}

int kv_plan_step(kv_table_t *table, const kv_plan_facts_t *facts, uint32_t max_moves) {
    if (!table) return 0;
    kv_table_t *before = kv_table_dup(table);
    if (!before) return -1; /* out of memory: nothing changed */
    s_plan_t *self = calloc(1, sizeof(*self));
    uint32_t nodes = kv_table_node_count(table);
    uint32_t *pairs = calloc((size_t)nodes * nodes + 1, sizeof(*pairs));
    if (!self || !pairs) {
        free(self);
        free(pairs);
        kv_table_destroy(&before);
        return -1;
    }
    self->pairs = pairs;
    self->table = table;
    self->facts = facts;
    self->partitions = kv_table_partitions(table);
    self->replication = kv_table_replication(table);
    self->nodes = nodes;
    self->max_moves = max_moves;
    self->counters = facts ? facts->counters : NULL;
    s_register_counters(self);

    s_update_states(self, 0);
    for (uint32_t p = 0; p < self->partitions; p++) {
        s_repair(self, p);
        s_progress(self, p);
    }
    s_count_loads(self);
    uint32_t targets = s_target_count(self);
    uint32_t want = targets < self->replication ? targets : self->replication;
    for (uint32_t p = 0; p < self->partitions && want; p++)
        if (s_primary(self, p) == KV_NO_NODE) s_assign(self, p, want);
    self->moves = kv_plan_moves(table);
    s_replicate(self);
    s_drain(self);
    if (s_balance_primaries(self)) s_balance_replicas(self);
    s_update_states(self, 1);

    int changes = s_count_changes(before, table);
    free(pairs);
    free(self);
    kv_table_destroy(&before);
    return changes;
}

uint32_t kv_plan_moves(const kv_table_t *table) {
    uint32_t moves = 0;
    uint32_t partitions = kv_table_partitions(table);
    for (uint32_t p = 0; p < partitions; p++) moves += kv_table_learner(table, p) != KV_NO_NODE;
    return moves;
}

int kv_plan_forget_node(kv_table_t *table, uint16_t node) {
    if (!table || kv_table_node_state(table, node) != KV_NODE_DOWN) return -1; /* only the dead */
    kv_table_set_node_state(table, node, KV_NODE_LEFT);
    return 0;
}
