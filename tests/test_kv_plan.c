/*  test_kv_plan.c: the coordinator's placement rules.
 *
 *  The planner is a pure function of a table and the nodes' reports, so a
 *  whole cluster's life is simulated here: a "cluster" is a table plus a
 *  report per node and partition. s_settle plays the nodes: after each
 *  step it reports every owner and learner live (and every learner of a
 *  fenced partition ready), then steps again, until the plan stops
 *  changing. Every step, in every test, is followed by s_assert_sound: no
 *  partition ever has one node twice, a learner is always an active node,
 *  a fence always belongs to a hand-off, and no node holds anything once
 *  it has left.
 *
 *  The scenario tests print the moves they measured (primary moves and
 *  copies, against the fewest possible) so a change to the rules shows its
 *  cost in the test log.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_counters.h"
#include "kv_limits.h"
#include "kv_plan.h"
#include "kv_table.h"

#define UNLIMITED UINT32_MAX

typedef struct {
    kv_table_t *table;         /* the routing table under test */
    kv_plan_report_t *reports; /* KV_MAX_NODES x partitions */
    kv_plan_facts_t facts;     /* points at reports */
    uint32_t max_moves;        /* passed to every step */
    uint32_t primary_moves;    /* partitions whose primary changed to a live node */
    uint32_t copies;           /* learners set */
} s_cluster_t;

//  --------------------------------------------------------------------------
//  The simulated cluster

/* A cluster of P partitions, R slots, and nodes nodes in state. */
static s_cluster_t s_cluster(uint32_t partitions, uint32_t replication, uint32_t nodes,
                             uint8_t state) {
    s_cluster_t c = {0};
    c.table = kv_table_new(partitions, replication);
    cr_assert_not_null(c.table);
    c.reports = calloc((size_t)KV_MAX_NODES * partitions, sizeof(*c.reports));
    cr_assert_not_null(c.reports);
    c.facts.reports = c.reports;
    c.facts.node_count = KV_MAX_NODES;
    c.max_moves = UNLIMITED;
    char id[16];
    for (uint32_t i = 0; i < nodes; i++) {
        snprintf(id, sizeof id, "n%u", i);
        cr_assert_eq(kv_table_upsert(c.table, id, "tcp://x:1", "tcp://x:2"), (int)i);
        kv_table_set_node_state(c.table, i, state);
    }
    return c;
}

static void s_cluster_free(s_cluster_t *c) {
    kv_table_destroy(&c->table);
    free(c->reports);
}

static uint16_t s_add_node(s_cluster_t *c, uint8_t state) {
    char id[16];
    snprintf(id, sizeof id, "n%u", kv_table_node_count(c->table));
    int index = kv_table_upsert(c->table, id, "tcp://x:1", "tcp://x:2");
    cr_assert_geq(index, 0);
    kv_table_set_node_state(c->table, index, state);
    return (uint16_t)index;
}

static kv_plan_report_t *s_rep(s_cluster_t *c, uint16_t node, uint32_t p) {
    return &c->reports[(size_t)node * kv_table_partitions(c->table) + p];
}

static void s_set_report(s_cluster_t *c, uint16_t node, uint32_t p, int live, uint64_t seq) {
    kv_plan_report_t *report = s_rep(c, node, p);
    report->held = 1;
    report->live = (uint8_t)live;
    report->seq = seq;
}

static void s_set_owners(kv_table_t *t, uint32_t p, uint16_t a, uint16_t b, uint16_t c) {
    const uint16_t list[3] = {a, b, c};
    for (uint32_t slot = 0; slot < kv_table_replication(t); slot++)
        kv_table_set_owner(t, p, slot, slot < 3 ? list[slot] : KV_NO_NODE);
}

static uint32_t s_owner_count(const kv_table_t *t, uint32_t p) {
    uint32_t count = 0;
    for (uint32_t slot = 0; slot < kv_table_replication(t); slot++)
        count += kv_table_owner(t, p, slot) != KV_NO_NODE;
    return count;
}

/* got and want encode to the same bytes: the same owners, learners and
 * flags, node states and epoch. */
static void s_expect_same_table(const kv_table_t *got, const kv_table_t *want) {
    size_t size = kv_table_encoded_size(want);
    uint8_t *mine = malloc(size), *theirs = malloc(size);
    cr_assert(mine && theirs);
    cr_expect_eq(kv_table_encoded_size(got), size);
    cr_expect_eq(kv_table_encode(got, mine, size), size);
    cr_expect_eq(kv_table_encode(want, theirs, size), size);
    cr_expect_arr_eq(mine, theirs, size);
    free(mine);
    free(theirs);
}

/* Slots (and learner roles) node holds. */
static uint32_t s_holds(const kv_table_t *t, uint16_t node) {
    uint32_t count = 0;
    for (uint32_t p = 0; p < kv_table_partitions(t); p++) count += kv_table_role(t, p, node) >= 0;
    return count;
}

/* What the planner promises after every step. */
static void s_assert_sound(const kv_table_t *t) {
    for (uint32_t p = 0; p < kv_table_partitions(t); p++) {
        int seen_empty = 0;
        for (uint32_t slot = 0; slot < kv_table_replication(t); slot++) {
            uint16_t o = kv_table_owner(t, p, slot);
            if (o == KV_NO_NODE) {
                seen_empty = 1;
                continue;
            }
            cr_assert_not(seen_empty, "p %u: slot %u after an empty slot", p, slot);
            cr_assert_lt(o, kv_table_node_count(t), "p %u slot %u", p, slot);
            uint8_t state = kv_table_node_state(t, o);
            cr_assert_neq(state, KV_NODE_JOINING, "p %u: a joining owner", p);
            cr_assert_neq(state, KV_NODE_LEFT, "p %u: a left owner", p);
            if (slot > 0) cr_assert_neq(state, KV_NODE_DOWN, "p %u: a down replica", p);
            for (uint32_t other = 0; other < slot; other++)
                cr_assert_neq(kv_table_owner(t, p, other), o, "p %u: node %u twice", p, o);
        }
        uint16_t learner = kv_table_learner(t, p);
        uint8_t flags = kv_table_flags(t, p);
        cr_assert_eq(flags & ~KV_PART_FLAGS_ALL, 0);
        if (flags & KV_PART_FENCED) cr_assert(flags & KV_PART_MOVE_PRIMARY, "p %u", p);
        if (learner == KV_NO_NODE) {
            cr_assert_eq(flags, 0, "p %u: flags without a learner", p);
            continue;
        }
        cr_assert_lt(learner, kv_table_node_count(t));
        cr_assert_eq(kv_table_node_state(t, learner), KV_NODE_ACTIVE, "p %u: learner %u", p,
                     learner);
        int role = kv_table_role(t, p, learner);
        cr_assert_neq(role, 0, "p %u: the primary learns", p);
        if (!(flags & KV_PART_MOVE_PRIMARY))
            cr_assert_eq(role, (int)kv_table_replication(t), "p %u: a replica learns", p);
    }
    for (uint32_t i = 0; i < kv_table_node_count(t); i++) {
        uint8_t state = kv_table_node_state(t, i);
        if (state == KV_NODE_LEFT || state == KV_NODE_JOINING)
            cr_assert_eq(s_holds(t, (uint16_t)i), 0, "node %u %s holds partitions", i,
                         kv_node_state_name(state));
    }
}

/* One step, checked; counts primary moves and copies started. */
static int s_step(s_cluster_t *c) {
    kv_table_t *before = kv_table_dup(c->table);
    uint32_t moves_before = kv_plan_moves(c->table);
    int changes = kv_plan_step(c->table, &c->facts, c->max_moves);
    cr_assert_geq(changes, 0);
    s_assert_sound(c->table);
    uint32_t moves = kv_plan_moves(c->table);
    if (moves_before <= c->max_moves)
        cr_assert_leq(moves, c->max_moves, "%u learners, %u allowed", moves, c->max_moves);
    for (uint32_t p = 0; p < kv_table_partitions(c->table); p++) {
        uint16_t was = kv_table_owner(before, p, 0), now = kv_table_owner(c->table, p, 0);
        c->primary_moves += was != KV_NO_NODE && now != was;
        uint16_t learner = kv_table_learner(c->table, p);
        c->copies += learner != KV_NO_NODE && learner != kv_table_learner(before, p) &&
                     kv_table_role(before, p, learner) < 0;
    }
    kv_table_destroy(&before);
    return changes;
}

/* The nodes' side: owners and learners in sync, fenced learners done. */
static void s_report_all(s_cluster_t *c) {
    const kv_table_t *t = c->table;
    memset(c->reports, 0, (size_t)KV_MAX_NODES * kv_table_partitions(t) * sizeof(*c->reports));
    for (uint32_t p = 0; p < kv_table_partitions(t); p++) {
        for (uint32_t slot = 0; slot < kv_table_replication(t); slot++) {
            uint16_t o = kv_table_owner(t, p, slot);
            if (o != KV_NO_NODE) s_set_report(c, o, p, 1, 100);
        }
        uint16_t learner = kv_table_learner(t, p);
        if (learner == KV_NO_NODE) continue;
        s_set_report(c, learner, p, 1, 100);
        s_rep(c, learner, p)->ready = (kv_table_flags(t, p) & KV_PART_FENCED) != 0;
    }
}

/* Steps until the plan stops changing; returns the steps taken. */
static int s_settle(s_cluster_t *c) {
    for (int steps = 1; steps < 10000; steps++) {
        s_report_all(c);
        if (s_step(c) == 0) return steps;
    }
    cr_assert_fail("the plan never settles");
    return -1;
}

static void s_spread(const kv_table_t *t, uint32_t *prim_min, uint32_t *prim_max,
                     uint32_t *load_min, uint32_t *load_max) {
    *prim_min = *load_min = UINT32_MAX;
    *prim_max = *load_max = 0;
    for (uint32_t i = 0; i < kv_table_node_count(t); i++) {
        if (kv_table_node_state(t, i) != KV_NODE_ACTIVE) continue;
        uint32_t prim = kv_table_count_primaries(t, (uint16_t)i);
        uint32_t load = prim + kv_table_count_replicas(t, (uint16_t)i);
        if (prim < *prim_min) *prim_min = prim;
        if (prim > *prim_max) *prim_max = prim;
        if (load < *load_min) *load_min = load;
        if (load > *load_max) *load_max = load;
    }
}

/* Every partition has min(R, active) owners, all active, and no move is
 * left; primaries and slots differ by at most one between active nodes. */
static void s_assert_balanced(const kv_table_t *t) {
    uint32_t active = 0;
    for (uint32_t i = 0; i < kv_table_node_count(t); i++)
        active += kv_table_node_state(t, i) == KV_NODE_ACTIVE;
    uint32_t want = active < kv_table_replication(t) ? active : kv_table_replication(t);
    for (uint32_t p = 0; p < kv_table_partitions(t); p++) {
        cr_assert_eq(s_owner_count(t, p), want, "p %u", p);
        cr_assert_eq(kv_table_learner(t, p), KV_NO_NODE, "p %u", p);
        for (uint32_t slot = 0; slot < want; slot++)
            cr_assert_eq(kv_table_node_state(t, kv_table_owner(t, p, slot)), KV_NODE_ACTIVE);
    }
    cr_assert(kv_table_healthy(t));
    uint32_t prim_min, prim_max, load_min, load_max;
    s_spread(t, &prim_min, &prim_max, &load_min, &load_max);
    cr_assert_leq(prim_max - prim_min, 1, "primaries %u..%u", prim_min, prim_max);
    cr_assert_leq(load_max - load_min, 1, "slots %u..%u", load_min, load_max);
}

/* The fewest primary moves that take the current primaries to a spread of
 * at most one over nodes nodes: the nodes with the most keep the larger
 * shares, every primary above a node's share moves. */
static uint32_t s_fewest_primary_moves(const kv_table_t *t, uint32_t nodes) {
    uint32_t counts[KV_MAX_NODES] = {0}, n = 0;
    for (uint32_t i = 0; i < kv_table_node_count(t); i++) {
        uint8_t state = kv_table_node_state(t, i);
        if (state == KV_NODE_ACTIVE || state == KV_NODE_LEAVING) {
            uint32_t prim = kv_table_count_primaries(t, (uint16_t)i);
            if (state == KV_NODE_LEAVING) continue; /* all of it moves */
            counts[n++] = prim;
        }
    }
    for (uint32_t i = 1; i < n; i++) /* descending */
        for (uint32_t j = i; j > 0 && counts[j] > counts[j - 1]; j--) {
            uint32_t swap = counts[j];
            counts[j] = counts[j - 1];
            counts[j - 1] = swap;
        }
    uint32_t partitions = kv_table_partitions(t);
    uint32_t share = partitions / nodes, extra = partitions % nodes, kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t target = share + (i < extra);
        kept += counts[i] < target ? counts[i] : target;
    }
    return partitions - kept;
}

//  --------------------------------------------------------------------------
//  A new cluster

Test(kv_plan, fresh_cluster_assigns_every_partition_directly) {
    const uint32_t sizes[] = {1, 3};
    for (size_t s = 0; s < 2; s++)
        for (uint32_t r = 1; r <= 3; r++) {
            s_cluster_t c = s_cluster(64, r, sizes[s], KV_NODE_JOINING);
            c.max_moves = 0; /* no data to copy: not a move */
            cr_assert_eq(s_step(&c), 64 + (int)sizes[s], "every partition and node changed");
            cr_expect_eq(kv_plan_moves(c.table), 0);
            for (uint32_t i = 0; i < sizes[s]; i++)
                cr_expect_eq(kv_table_node_state(c.table, i), KV_NODE_ACTIVE);
            s_assert_balanced(c.table);
            cr_expect_eq(s_step(&c), 0, "settled at once");
            s_cluster_free(&c);
        }
}

Test(kv_plan, no_assignment_without_a_node_to_serve) {
    s_cluster_t c = s_cluster(16, 2, 0, KV_NODE_ACTIVE);
    cr_expect_eq(s_step(&c), 0, "no nodes");
    s_add_node(&c, KV_NODE_DOWN);
    s_add_node(&c, KV_NODE_LEAVING);
    cr_expect_eq(s_step(&c), 1, "the leaving node, holding nothing, has left");
    cr_expect_eq(kv_table_node_state(c.table, 1), KV_NODE_LEFT);
    for (uint32_t p = 0; p < 16; p++) cr_expect_eq(kv_table_owner(c.table, p, 0), KV_NO_NODE);
    s_cluster_free(&c);
}

Test(kv_plan, settled_cluster_changes_nothing) {
    s_cluster_t c = s_cluster(256, 2, 4, KV_NODE_JOINING);
    s_settle(&c);
    kv_table_t *before = kv_table_dup(c.table);
    s_report_all(&c);
    for (int i = 0; i < 3; i++) cr_expect_eq(s_step(&c), 0);
    s_expect_same_table(c.table, before);
    kv_table_destroy(&before);
    s_cluster_free(&c);
}

Test(kv_plan, same_table_and_facts_give_the_same_plan) {
    s_cluster_t c = s_cluster(512, 3, 3, KV_NODE_JOINING);
    s_settle(&c);
    s_add_node(&c, KV_NODE_JOINING);
    s_add_node(&c, KV_NODE_JOINING);
    kv_table_set_node_state(c.table, 1, KV_NODE_LEAVING);
    kv_table_t *twin = kv_table_dup(c.table);
    c.max_moves = 40;
    s_step(&c);
    kv_plan_step(twin, &c.facts, 40);
    s_expect_same_table(twin, c.table);
    kv_table_destroy(&twin);
    s_cluster_free(&c);
}

//  --------------------------------------------------------------------------
//  Nodes join

/* Grows a cluster node by node and checks each stage is balanced and cost
 * about the fewest primary moves possible. */
static void s_grow(uint32_t replication, const uint32_t *stages, size_t count) {
    s_cluster_t c = s_cluster(1024, replication, stages[0], KV_NODE_JOINING);
    c.max_moves = 64;
    s_settle(&c);
    s_assert_balanced(c.table);
    for (size_t s = 1; s < count; s++) {
        while (kv_table_node_count(c.table) < stages[s]) s_add_node(&c, KV_NODE_JOINING);
        uint32_t fewest = s_fewest_primary_moves(c.table, stages[s]);
        c.primary_moves = c.copies = 0;
        int steps = s_settle(&c);
        s_assert_balanced(c.table);
        fprintf(stderr,
                "join R=%u %u->%u nodes, 1024 partitions: %u primary moves (fewest %u), "
                "%u copies, %d steps\n",
                replication, stages[s - 1], stages[s], c.primary_moves, fewest, c.copies, steps);
        cr_expect_leq(c.primary_moves, fewest + 2, "%u primary moves, fewest %u", c.primary_moves,
                      fewest);
    }
    s_cluster_free(&c);
}

Test(kv_plan, joins_one_to_five_balance_primaries_with_the_fewest_moves) {
    const uint32_t stages[] = {1, 2, 3, 5};
    for (uint32_t r = 1; r <= 3; r++) s_grow(r, stages, 4);
}

Test(kv_plan, join_three_to_five_moves_the_fewest_primaries) {
    const uint32_t stages[] = {3, 5};
    for (uint32_t r = 1; r <= 3; r++) s_grow(r, stages, 2);
}

Test(kv_plan, joining_node_turns_active_when_given_work) {
    s_cluster_t c = s_cluster(8, 1, 1, KV_NODE_JOINING);
    s_settle(&c);
    uint16_t joiner = s_add_node(&c, KV_NODE_JOINING);
    s_step(&c);
    cr_expect_eq(kv_table_node_state(c.table, joiner), KV_NODE_ACTIVE);
    cr_expect_eq(kv_plan_moves(c.table), 4, "half the primaries start moving");
    s_cluster_free(&c);
}

Test(kv_plan, joining_node_with_nothing_to_take_stays_joining) {
    s_cluster_t c = s_cluster(2, 1, 2, KV_NODE_JOINING);
    s_settle(&c);
    uint16_t joiner = s_add_node(&c, KV_NODE_JOINING);
    cr_expect_eq(s_step(&c), 0, "one primary each: already balanced");
    cr_expect_eq(kv_table_node_state(c.table, joiner), KV_NODE_JOINING);
    s_cluster_free(&c);
}

/* With a replica on the least-loaded node, a primary moves without a copy. */
Test(kv_plan, balance_hands_a_primary_to_a_node_that_already_replicates_it) {
    s_cluster_t c = s_cluster(4, 2, 2, KV_NODE_ACTIVE);
    s_set_owners(c.table, 0, 0, 1, 0);
    s_set_owners(c.table, 1, 0, 1, 0);
    s_set_owners(c.table, 2, 0, 1, 0);
    s_set_owners(c.table, 3, 1, 0, 0);
    s_step(&c);
    cr_expect_eq(kv_table_learner(c.table, 0), 1);
    cr_expect_eq(kv_table_flags(c.table, 0), KV_PART_MOVE_PRIMARY);
    cr_expect_eq(kv_plan_moves(c.table), 1, "3 against 1 needs one move");
    s_settle(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 0, "the old primary stays as the replica");
    cr_expect_eq(c.copies, 0);
    s_assert_balanced(c.table);
    s_cluster_free(&c);
}

//  --------------------------------------------------------------------------
//  Nodes leave

static void s_shrink(uint32_t replication) {
    s_cluster_t c = s_cluster(1024, replication, 5, KV_NODE_JOINING);
    s_settle(&c);
    for (uint16_t i = 2; i < 5; i++) kv_table_set_node_state(c.table, i, KV_NODE_LEAVING);
    uint32_t fewest = s_fewest_primary_moves(c.table, 2);
    c.max_moves = 64;
    c.primary_moves = c.copies = 0;
    int steps = s_settle(&c);
    for (uint16_t i = 2; i < 5; i++) {
        cr_expect_eq(kv_table_node_state(c.table, i), KV_NODE_LEFT, "node %u", i);
        cr_expect_eq(s_holds(c.table, i), 0);
    }
    s_assert_balanced(c.table);
    fprintf(stderr,
            "leave R=%u 5->2 nodes, 1024 partitions: %u primary moves (fewest %u), "
            "%u copies, %d steps\n",
            replication, c.primary_moves, fewest, c.copies, steps);
    cr_expect_leq(c.primary_moves, fewest + 2);
    s_cluster_free(&c);
}

Test(kv_plan, leaving_nodes_drain_then_leave_keeping_replication) {
    for (uint32_t r = 1; r <= 3; r++) s_shrink(r);
}

Test(kv_plan, leaving_primary_hands_off_to_a_replica_first) {
    s_cluster_t c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
    s_set_owners(c.table, 0, 0, 1, 0);
    kv_table_set_node_state(c.table, 0, KV_NODE_LEAVING);
    s_step(&c);
    cr_expect_eq(kv_table_learner(c.table, 0), 1);
    cr_expect_eq(kv_table_flags(c.table, 0), KV_PART_MOVE_PRIMARY);
    s_settle(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 2, "re-replicated to the third node");
    cr_expect_eq(kv_table_node_state(c.table, 0), KV_NODE_LEFT);
    s_cluster_free(&c);
}

Test(kv_plan, leaving_replica_is_replaced_then_dropped) {
    s_cluster_t c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
    s_set_owners(c.table, 0, 0, 1, 0);
    kv_table_set_node_state(c.table, 1, KV_NODE_LEAVING);
    s_step(&c);
    cr_expect_eq(kv_table_learner(c.table, 0), 2);
    cr_expect_eq(kv_table_flags(c.table, 0), 0);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 1, "the leaving replica serves until the flip");
    s_settle(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 2);
    cr_expect_eq(kv_table_node_state(c.table, 1), KV_NODE_LEFT);
    s_cluster_free(&c);
}

Test(kv_plan, leaving_replica_with_nowhere_to_go_is_dropped) {
    s_cluster_t c = s_cluster(4, 2, 2, KV_NODE_JOINING);
    s_settle(&c);
    kv_table_set_node_state(c.table, 1, KV_NODE_LEAVING);
    s_settle(&c);
    for (uint32_t p = 0; p < 4; p++) {
        cr_expect_eq(kv_table_owner(c.table, p, 0), 0);
        cr_expect_eq(kv_table_owner(c.table, p, 1), KV_NO_NODE);
    }
    cr_expect_eq(kv_table_node_state(c.table, 1), KV_NODE_LEFT);
    s_cluster_free(&c);
}

Test(kv_plan, last_node_leaving_keeps_its_primaries) {
    s_cluster_t c = s_cluster(4, 1, 1, KV_NODE_JOINING);
    s_settle(&c);
    kv_table_set_node_state(c.table, 0, KV_NODE_LEAVING);
    cr_expect_eq(s_step(&c), 0, "nowhere to go: the data stays");
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0);
    s_cluster_free(&c);
}

//  --------------------------------------------------------------------------
//  Failures

/* Partition 0 of a 4-node R=3 table with owners 0, 1, 2 and node 0 down. */
static s_cluster_t s_failed_primary(void) {
    s_cluster_t c = s_cluster(1, 3, 4, KV_NODE_ACTIVE);
    s_set_owners(c.table, 0, 0, 1, 2);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    c.max_moves = 0;
    return c;
}

Test(kv_plan, down_primary_gives_way_to_the_live_replica_with_the_highest_seq) {
    s_cluster_t c = s_failed_primary();
    s_set_report(&c, 1, 0, 1, 5);
    s_set_report(&c, 2, 0, 1, 9);
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 2);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 2), KV_NO_NODE);
    s_cluster_free(&c);
}

Test(kv_plan, replica_that_is_not_live_is_never_promoted) {
    s_cluster_t c = s_failed_primary();
    s_set_report(&c, 1, 0, 1, 5);
    s_set_report(&c, 2, 0, 0, 9); /* ahead, but out of sync */
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 2);
    s_cluster_free(&c);
}

Test(kv_plan, equal_seqs_promote_the_lowest_slot) {
    s_cluster_t c = s_failed_primary();
    s_set_owners(c.table, 0, 0, 2, 1);
    s_set_report(&c, 1, 0, 1, 7);
    s_set_report(&c, 2, 0, 1, 7);
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 2);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 1);
    s_cluster_free(&c);
}

Test(kv_plan, down_primary_without_a_live_replica_stays_primary) {
    s_cluster_t c = s_failed_primary();
    s_set_report(&c, 1, 0, 0, 5);
    s_set_report(&c, 2, 0, 0, 9);
    cr_expect_eq(s_step(&c), 0);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0);
    cr_expect_not(kv_table_healthy(c.table));
    c.max_moves = UNLIMITED;
    s_step(&c);
    cr_expect_eq(kv_plan_moves(c.table), 0, "nobody to copy from");
    s_cluster_free(&c);

    c = s_cluster(4, 1, 2, KV_NODE_JOINING); /* R = 1: nothing else to do */
    s_settle(&c);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    cr_expect_eq(s_settle(&c), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0, "the down node keeps its partitions");
    cr_expect_eq(kv_table_owner(c.table, 1, 0), 1);
    s_cluster_free(&c);
}

Test(kv_plan, down_replica_is_dropped_and_replication_restored) {
    s_cluster_t c = s_cluster(256, 3, 4, KV_NODE_JOINING);
    s_settle(&c);
    kv_table_set_node_state(c.table, 3, KV_NODE_DOWN);
    s_step(&c);
    for (uint32_t p = 0; p < 256; p++) {
        cr_expect_neq(kv_table_role(c.table, p, 3), 0, "node 3 holds nothing...");
        cr_expect_lt(kv_table_role(c.table, p, 3), 0, "...at all");
    }
    s_settle(&c);
    s_assert_balanced(c.table);
    s_cluster_free(&c);
}

Test(kv_plan, failover_then_rereplication_restores_R_in_a_large_cluster) {
    s_cluster_t c = s_cluster(1024, 2, 4, KV_NODE_JOINING);
    s_settle(&c);
    s_report_all(&c);
    kv_table_set_node_state(c.table, 1, KV_NODE_DOWN);
    c.max_moves = 32;
    c.primary_moves = 0;
    s_settle(&c);
    s_assert_balanced(c.table);
    cr_expect_eq(kv_table_node_state(c.table, 1), KV_NODE_DOWN,
                 "the planner leaves down nodes down");
    fprintf(stderr, "failure R=2 4->3 nodes: %u primary moves, %u copies\n", c.primary_moves,
            c.copies);
    s_cluster_free(&c);
}

/* A move of p 0 (node 0 primary, node 1 replica) to learner node 2, with
 * each of the hand-off's flags, that hopeless makes hopeless: one step
 * cancels it, lifts the fence and leaves the owners as they were. */
static void s_expect_cancelled(void (*hopeless)(s_cluster_t *c)) {
    const uint8_t flags[] = {0, KV_PART_MOVE_PRIMARY, KV_PART_MOVE_PRIMARY | KV_PART_FENCED};
    for (size_t i = 0; i < 3; i++) {
        s_cluster_t c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
        c.max_moves = 0;
        s_set_owners(c.table, 0, 0, 1, 0);
        kv_table_set_learner(c.table, 0, 2);
        kv_table_set_flags(c.table, 0, flags[i]);
        hopeless(&c);
        cr_expect_eq(s_step(&c), 1, "flags %u", flags[i]);
        cr_expect_eq(kv_table_learner(c.table, 0), KV_NO_NODE);
        cr_expect_eq(kv_table_flags(c.table, 0), 0, "the fence is lifted");
        cr_expect_eq(kv_table_owner(c.table, 0, 0), 0);
        cr_expect_eq(kv_table_owner(c.table, 0, 1), 1);
        s_cluster_free(&c);
    }
}

/* The learner went down (though it had said live and ready). */
static void s_learner_down(s_cluster_t *c) {
    kv_table_set_node_state(c->table, 2, KV_NODE_DOWN);
    s_set_report(c, 2, 0, 1, 1);
    s_rep(c, 2, 0)->ready = 1;
}

Test(kv_plan, down_learner_cancels_the_move) {
    s_expect_cancelled(s_learner_down);
}

/* A learner whose snapshot did not fit its memory limit reports full:
 * the move is cancelled (the partition stays where it is, fence lifted),
 * and while the facts say the node is full it is given no new work: the
 * next learner goes elsewhere, or nowhere. */
/* The learner's snapshot did not fit its memory limit. */
static void s_learner_full(s_cluster_t *c) {
    s_rep(c, 2, 0)->held = 1;
    s_rep(c, 2, 0)->full = 1;
}

Test(kv_plan, a_full_learner_cancels_the_move_and_gets_no_more) {
    s_expect_cancelled(s_learner_full);
    /* R = 2, node 1's replica slot lost: the copy goes to node 2 unless it is full */
    uint8_t full[KV_MAX_NODES] = {0};
    full[1] = 1;
    s_cluster_t c = s_cluster(4, 2, 3, KV_NODE_ACTIVE);
    c.facts.full = full;
    for (uint32_t p = 0; p < 4; p++) s_set_owners(c.table, p, 0, KV_NO_NODE, 0);
    s_step(&c);
    for (uint32_t p = 0; p < 4; p++) {
        uint16_t learner = kv_table_learner(c.table, p);
        cr_expect(learner == 2 || kv_table_owner(c.table, p, 1) == 2,
                  "p %u: a copy for the full node 1 (learner %u)", p, learner);
        cr_expect_neq(kv_table_role(c.table, p, 1), 1);
    }
    s_cluster_free(&c);
}

Test(kv_plan, failover_during_a_hand_off_cancels_it) {
    s_cluster_t c = s_cluster(1, 3, 4, KV_NODE_ACTIVE);
    c.max_moves = 0;
    s_set_owners(c.table, 0, 0, 1, 2);
    kv_table_set_learner(c.table, 0, 3);
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    s_set_report(&c, 1, 0, 1, 4);
    s_set_report(&c, 3, 0, 1, 4);
    s_rep(&c, 3, 0)->ready = 1;
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 2);
    cr_expect_eq(kv_table_learner(c.table, 0), KV_NO_NODE);
    cr_expect_eq(kv_table_flags(c.table, 0), 0);
    s_cluster_free(&c);
}

/* A node that will never return: R = 1 partitions start afresh elsewhere,
 * R = 2 ones take the most advanced replica even if it is not live. */
Test(kv_plan, forgotten_node_stops_holding_its_partitions) {
    s_cluster_t c = s_cluster(8, 1, 2, KV_NODE_JOINING);
    s_settle(&c);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    s_settle(&c);
    cr_expect_eq(kv_table_count_primaries(c.table, 0), 4, "waiting for node 0");
    cr_expect_eq(kv_plan_forget_node(c.table, 1), -1, "only a down node can be forgotten");
    cr_expect_eq(kv_plan_forget_node(c.table, 2), -1, "no such node");
    cr_expect_eq(kv_plan_forget_node(NULL, 0), -1);
    cr_expect_eq(kv_plan_forget_node(c.table, 0), 0);
    cr_expect_eq(kv_table_node_state(c.table, 0), KV_NODE_LEFT);
    s_settle(&c);
    cr_expect_eq(kv_table_count_primaries(c.table, 1), 8);
    s_cluster_free(&c);

    c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
    s_set_owners(c.table, 0, 0, 1, 0);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    s_set_report(&c, 1, 0, 0, 5); /* not live: lost the primary's stream */
    c.max_moves = 0;
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0, "a down primary may come back");
    kv_plan_forget_node(c.table, 0);
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1, "a forgotten one will not");
    cr_expect_eq(kv_table_owner(c.table, 0, 1), KV_NO_NODE);
    s_cluster_free(&c);
}

Test(kv_plan, left_node_in_a_table_is_dropped_like_a_down_one) {
    s_cluster_t c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
    c.max_moves = 0;
    s_set_owners(c.table, 0, 0, 1, 0);
    kv_table_set_node_state(c.table, 1, KV_NODE_LEFT);
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), KV_NO_NODE);
    s_cluster_free(&c);
}

//  --------------------------------------------------------------------------
//  The hand-off, step by step

/* Node 0 is primary of the only partition; node 1 learns it to take over. */
static s_cluster_t s_hand_off(void) {
    s_cluster_t c = s_cluster(1, 1, 2, KV_NODE_ACTIVE);
    c.max_moves = 0;
    kv_table_set_owner(c.table, 0, 0, 0);
    kv_table_set_learner(c.table, 0, 1);
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY);
    return c;
}

Test(kv_plan, fence_comes_only_after_the_learner_is_live) {
    s_cluster_t c = s_hand_off();
    s_set_report(&c, 1, 0, 0, 3); /* still copying */
    cr_expect_eq(s_step(&c), 0);
    cr_expect_eq(kv_table_flags(c.table, 0), KV_PART_MOVE_PRIMARY);
    s_rep(&c, 1, 0)->ready = 1; /* ready without live means nothing yet */
    cr_expect_eq(s_step(&c), 0);
    s_rep(&c, 1, 0)->live = 1;
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_table_flags(c.table, 0), KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0, "no flip in the fencing step");
    s_cluster_free(&c);
}

Test(kv_plan, flip_comes_only_after_the_fenced_learner_is_ready) {
    s_cluster_t c = s_hand_off();
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    s_set_report(&c, 1, 0, 1, 3);
    cr_expect_eq(s_step(&c), 0, "live is not ready");
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 0);
    s_rep(&c, 1, 0)->ready = 1;
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 1);
    cr_expect_eq(kv_table_learner(c.table, 0), KV_NO_NODE);
    cr_expect_eq(kv_table_flags(c.table, 0), 0);
    s_cluster_free(&c);
}

/* A whole hand-off, read through the planner's state machine: its named
 * states from the table, and its transitions from the counters. */
Test(kv_plan, hand_off_goes_learning_fencing_stable_and_is_counted) {
    s_cluster_t c = s_cluster(1, 1, 2, KV_NODE_ACTIVE);
    kv_counters_t *counters = kv_counters_new();
    c.facts.counters = counters;
    c.max_moves = 0;
    kv_table_set_owner(c.table, 0, 0, 0);
    cr_expect_eq(kv_plan_handoff(c.table, 0), KV_PLAN_STABLE);
    kv_table_set_learner(c.table, 0, 1);
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY);
    cr_expect_eq(kv_plan_handoff(c.table, 0), KV_PLAN_LEARNING);
    s_set_report(&c, 1, 0, 1, 3);
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_plan_handoff(c.table, 0), KV_PLAN_FENCING);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_handoff_fence_total"), 1);
    s_rep(&c, 1, 0)->ready = 1;
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_plan_handoff(c.table, 0), KV_PLAN_STABLE);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_handoff_flip_total"), 1);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_handoff_transitions_total"), 2);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_illegal_transitions_total"), 0);
    cr_expect_str_eq(kv_plan_handoff_name(KV_PLAN_FENCING), "fencing");
    cr_expect_str_eq(kv_plan_event_name(KV_PLAN_EV_TAKEOVER), "takeover");
    kv_counters_destroy(&counters);
    s_cluster_free(&c);
}

/* A dead primary replaced by its replica is a failover; a learner that can
 * no longer finish is a cancelled hand-off. */
Test(kv_plan, failover_and_cancelled_moves_are_counted) {
    s_cluster_t c = s_cluster(1, 3, 4, KV_NODE_ACTIVE);
    kv_counters_t *counters = kv_counters_new();
    kv_plan_register_counters(counters);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_failovers_total"), 0);
    c.facts.counters = counters;
    c.max_moves = 0;
    s_set_owners(c.table, 0, 0, 1, 2);
    kv_table_set_learner(c.table, 0, 3);
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    kv_table_set_node_state(c.table, 0, KV_NODE_DOWN);
    s_set_report(&c, 1, 0, 1, 4);
    s_set_report(&c, 3, 0, 1, 4);
    s_step(&c);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_failovers_total"), 1);
    cr_expect_eq(kv_counters_get(counters, "kv_plan_handoff_cancel_total"), 1);
    cr_expect_eq(kv_plan_handoff(c.table, 0), KV_PLAN_STABLE);
    kv_counters_destroy(&counters);
    s_cluster_free(&c);
}

Test(kv_plan, plain_learner_becomes_a_replica_once_live) {
    s_cluster_t c = s_cluster(1, 3, 3, KV_NODE_ACTIVE);
    c.max_moves = 0;
    s_set_owners(c.table, 0, 0, 1, KV_NO_NODE);
    kv_table_set_learner(c.table, 0, 2);
    cr_expect_eq(s_step(&c), 0);
    s_set_report(&c, 2, 0, 1, 3);
    cr_expect_eq(s_step(&c), 1);
    cr_expect_eq(kv_table_owner(c.table, 0, 2), 2);
    cr_expect_eq(kv_table_learner(c.table, 0), KV_NO_NODE);
    s_cluster_free(&c);
}

Test(kv_plan, surplus_old_primary_drops_out_of_a_full_partition) {
    s_cluster_t c = s_cluster(1, 2, 3, KV_NODE_ACTIVE);
    c.max_moves = 0;
    s_set_owners(c.table, 0, 0, 1, 0);
    kv_table_set_learner(c.table, 0, 2);
    kv_table_set_flags(c.table, 0, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    s_set_report(&c, 2, 0, 1, 3);
    s_rep(&c, 2, 0)->ready = 1;
    s_step(&c);
    cr_expect_eq(kv_table_owner(c.table, 0, 0), 2);
    cr_expect_eq(kv_table_owner(c.table, 0, 1), 1);
    s_cluster_free(&c);
}

Test(kv_plan, lone_fence_and_meaningless_learners_are_cleared) {
    s_cluster_t c = s_cluster(3, 2, 3, KV_NODE_ACTIVE);
    c.max_moves = 0;
    for (uint32_t p = 0; p < 3; p++) s_set_owners(c.table, p, 0, 1, 0);
    kv_table_set_flags(c.table, 0, KV_PART_FENCED); /* a fence without a hand-off */
    kv_table_set_learner(c.table, 1, 1);            /* a plain learner already a replica */
    kv_table_set_learner(c.table, 2, 0);            /* the primary learning */
    kv_table_set_flags(c.table, 2, KV_PART_MOVE_PRIMARY);
    cr_expect_eq(s_step(&c), 3);
    s_cluster_free(&c);
}

//  --------------------------------------------------------------------------
//  The move budget

Test(kv_plan, max_moves_bounds_the_learners_at_once) {
    s_cluster_t c = s_cluster(512, 2, 1, KV_NODE_JOINING);
    s_settle(&c);
    for (int i = 0; i < 3; i++) s_add_node(&c, KV_NODE_JOINING);
    c.max_moves = 5;
    s_step(&c);
    cr_expect_eq(kv_plan_moves(c.table), 5);
    s_settle(&c); /* s_step asserts the bound on every step */
    s_assert_balanced(c.table);

    s_add_node(&c, KV_NODE_JOINING);
    c.max_moves = 0;
    cr_expect_eq(s_step(&c), 0, "no budget: nothing moves");
    s_cluster_free(&c);
}

Test(kv_plan, moves_counts_the_learners) {
    kv_table_t *table = kv_table_new(8, 1);
    cr_expect_eq(kv_plan_moves(table), 0);
    kv_table_set_learner(table, 2, 0);
    kv_table_set_learner(table, 7, 1);
    cr_expect_eq(kv_plan_moves(table), 2);
    kv_table_destroy(&table);
}

Test(kv_plan, step_without_facts_still_assigns_and_repairs) {
    kv_table_t *table = kv_table_new(4, 2);
    kv_table_upsert(table, "a", "tcp://a:1", "");
    cr_expect_eq(kv_plan_step(table, NULL, 4), 5);
    cr_expect_eq(kv_table_owner(table, 3, 0), 0);
    cr_expect_eq(kv_plan_step(NULL, NULL, 4), 0);
    kv_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  Anything goes

static uint32_t s_random(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

/* Nodes join, fail, come back, are forgotten and leave at random, while
 * the nodes report at random and the budget changes: every step stays
 * sound, and once the failed nodes return the cluster settles balanced. */
Test(kv_plan, random_events_never_break_the_rules) {
    uint64_t seed = 42;
    for (uint32_t r = 1; r <= 3; r++) {
        s_cluster_t c = s_cluster(64, r, 3, KV_NODE_JOINING);
        for (int event = 0; event < 1500; event++) {
            uint32_t dice = s_random(&seed) % 100, n = kv_table_node_count(c.table), serving = 0;
            uint16_t node = (uint16_t)(s_random(&seed) % n);
            uint8_t state = kv_table_node_state(c.table, node);
            for (uint32_t i = 0; i < n; i++)
                serving += kv_table_node_state(c.table, i) <= KV_NODE_ACTIVE;
            if ((dice < 3 || serving < 3) && n < 48)
                s_add_node(&c, KV_NODE_JOINING);
            else if (dice < 6 && state == KV_NODE_ACTIVE)
                kv_table_set_node_state(c.table, node, KV_NODE_DOWN);
            else if (dice < 9 && state == KV_NODE_DOWN)
                kv_table_set_node_state(c.table, node, KV_NODE_ACTIVE); /* back, data intact */
            else if (dice < 11 && state == KV_NODE_ACTIVE)
                kv_table_set_node_state(c.table, node, KV_NODE_LEAVING);
            else if (dice < 12 && state == KV_NODE_DOWN)
                cr_assert_eq(kv_plan_forget_node(c.table, node), 0);
            for (uint32_t i = 0; i < KV_MAX_NODES * 64 / 8; i++) {
                kv_plan_report_t *report = &c.reports[s_random(&seed) % (KV_MAX_NODES * 64)];
                report->live = (uint8_t)(s_random(&seed) % 2);
                report->ready = (uint8_t)(s_random(&seed) % 2);
                report->seq = s_random(&seed) % 8;
            }
            c.max_moves = s_random(&seed) % 12;
            s_step(&c);
        }
        for (uint32_t i = 0; i < kv_table_node_count(c.table); i++)
            if (kv_table_node_state(c.table, i) == KV_NODE_DOWN)
                kv_table_set_node_state(c.table, i, KV_NODE_ACTIVE);
        s_add_node(&c, KV_NODE_JOINING); /* someone to serve, whoever left */
        c.max_moves = 8;
        s_settle(&c);
        s_assert_balanced(c.table);
        for (uint32_t i = 0; i < kv_table_node_count(c.table); i++)
            cr_expect_neq(kv_table_node_state(c.table, i), KV_NODE_LEAVING, "node %u still leaving",
                          i);
        s_cluster_free(&c);
    }
}

//  --------------------------------------------------------------------------
//  Scale

static double s_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The largest table: fresh assignment, then a join with an unbounded
 * budget (the most one step can schedule), each in one step. */
Test(kv_plan, step_over_the_largest_table_stays_fast) {
    s_cluster_t c = s_cluster(KV_PARTITIONS_MAX, 3, KV_MAX_NODES - 1, KV_NODE_JOINING);
    double start = s_seconds();
    kv_plan_step(c.table, &c.facts, UNLIMITED);
    double assign = s_seconds() - start;
    s_assert_sound(c.table);
    s_add_node(&c, KV_NODE_JOINING);
    start = s_seconds();
    kv_plan_step(c.table, &c.facts, UNLIMITED);
    double join = s_seconds() - start;
    s_assert_sound(c.table);
    fprintf(stderr,
            "65536 partitions, R=3, 256 nodes: assign %.3f s, join step %.3f s (%u moves)\n",
            assign, join, kv_plan_moves(c.table));
    cr_expect_gt(kv_plan_moves(c.table), 0);
    cr_expect_lt(join, 5.0, "a step must not be quadratic in partitions");
    s_cluster_free(&c);
}
