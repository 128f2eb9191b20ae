/*  kv_plan.h: the coordinator's placement decisions, as pure functions.
 *
 *  The coordinator calls kv_plan_step on every tick with its routing table
 *  and the latest per-partition facts the nodes reported; the planner edits
 *  the table (the caller bumps the epoch and publishes it when anything
 *  changed). Nothing here does I/O (but for debug logs of hand-off
 *  transitions), so every rule is unit-tested.
 *
 *  How a partition changes hands (the hand-off state machine, per partition:
 *  kv_plan_handoff_t, read from the table's learner and flags; the planner
 *  changes it only through one transition function, which logs and counts):
 *
 *      STABLE --LEARN (need a new owner)--> LEARNING: learner = target node
 *      LEARNING --FLIP (learner reports live, no MOVE_PRIMARY)--> STABLE with
 *          the learner in a replica slot (a leaving or down replica dropped)
 *      LEARNING --FENCE (learner live, MOVE_PRIMARY)--> FENCING: flag FENCED,
 *          the primary stops taking writes and marks the end of its stream
 *      FENCING --FLIP (learner reports ready: it applied the whole stream)-->
 *          STABLE with the learner as primary; the old primary becomes a
 *          replica or, when surplus (or leaving), drops out
 *      LEARNING, FENCING --CANCEL (learner down, move hopeless)--> STABLE
 *      LEARNING, FENCING --TAKEOVER (primary dead, the learner is the most
 *          advanced live copy)--> STABLE with the learner as primary
 *
 *  Why the fence: the old primary may have applied writes the learner has
 *  not seen yet; flipping only once the learner has applied everything up
 *  to the fence means no acknowledged write is lost and no write is taken
 *  by two primaries. Writes refused meanwhile get MOVED and the gateway
 *  retries them at the new primary, so clients do not see the hand-off.
 *
 *  Failure (a node marked down): each partition it was primary of gets the
 *  live replica with the highest applied sequence as primary (acknowledged
 *  writes reached at least one replica, and replicas apply in order, so
 *  that one has them all). Down replicas and learners are dropped. When no
 *  live replica exists the partition keeps its down primary: it has no
 *  owner until that node returns (with R=1 that is all one can do).
 *
 *  Then, in this order, bounded by max_moves learners at once:
 *    1. partitions with fewer than min(R, serving nodes) owners get a
 *       learner (least-loaded node not already an owner); a partition with
 *       no owner at all (a new cluster) is assigned directly, all its
 *       slots at once and beyond max_moves, since there is no data;
 *    2. every slot of a leaving node gets a learner to replace it;
 *    3. primaries are balanced: while the most-loaded serving node has more
 *       than one primary above the least-loaded, one primary moves (to a
 *       node already its replica when possible: no copy needed);
 *    4. once primaries are balanced (and R >= 2), slots are balanced the
 *       same way: the node holding the most slots hands a replica slot to
 *       the one holding the fewest. Without this, nodes that join a
 *       cluster with R >= 2 would only ever receive primaries.
 *  Serving nodes are ACTIVE ones (JOINING nodes become ACTIVE when first
 *  given a slot); LEAVING nodes with nothing left become LEFT.
 *
 *  The details, settled (kv_plan.c implements exactly these):
 *  - Targets of new work are ACTIVE and JOINING nodes, but for those the
 *    facts say are full (a node that gave up a partition for memory is
 *    sent none until the coordinator stops saying so): a JOINING node
 *    counts as serving (for min(R, serving) and for balance) and turns
 *    ACTIVE when it is given a slot or a learner. DOWN, LEFT and LEAVING
 *    nodes are never chosen. ACTIVE and LEAVING owners keep their data.
 *  - A new replica goes to the least-loaded target, then the one sharing
 *    the fewest partitions with the primary (so a node's replicas spread
 *    over all the others, and so do its primaries when it fails). A new
 *    primary (fresh assignment, or a leaving primary without an active
 *    replica) goes to the target with the fewest primaries.
 *  - A partition whose primary is down gets no new learner: nobody to
 *    copy from.
 *  - Loads and primary counts are projected: a node counts what it will
 *    hold once every pending move has flipped (the learner holds its new
 *    slot, an owner the flip drops no longer counts). "Least loaded" means
 *    fewest projected slots, learners included.
 *  - A plain flip (no MOVE_PRIMARY) gives [primary] + [replicas other than
 *    the learner, leaving ones dropped] + [learner]; when that is more
 *    than R, the last replica before the learner drops out (rule 4 puts the
 *    replica it moves last). A primary flip gives [learner] + [active
 *    replicas] + [old primary if active], cut to R.
 *  - A move is cancelled (learner and flags cleared) when the learner is no
 *    longer ACTIVE, when it reports the partition did not fit its memory
 *    limit (full), when the primary is down (nobody to copy from or fence),
 *    when a hand-off's primary changed by failover, or when the move means
 *    nothing (a plain learner that already owns a slot, or with R = 1).
 *    FENCED without MOVE_PRIMARY is cleared.
 *  - A partition whose slot 0 is empty or LEFT (see kv_plan_forget_node)
 *    takes the replica with the highest sequence, live or not (no primary,
 *    no stream to be live on); with no replica either it is ownerless.
 *  - A leaving replica with no node to replace it (every serving node holds
 *    the partition already) is dropped without a copy, so a 2-node R=2
 *    cluster can shrink to one. A leaving primary is never dropped.
 *  - Ties go to the lowest node index, then the lowest partition.
 *  - A step costs O(P * (R + nodes)) time and O(P * R + nodes^2) memory.
 */
#ifndef KV_PLAN_H
#define KV_PLAN_H

#include <stdint.h>

#include "kv_counters.h"
#include "kv_table.h"

/* Where a partition is in a hand-off (see above). */
typedef enum {
    KV_PLAN_STABLE,   /* no learner */
    KV_PLAN_LEARNING, /* a learner copies the partition */
    KV_PLAN_FENCING,  /* the primary refuses writes until the learner is ready */
    KV_PLAN_HANDOFF_STATES
} kv_plan_handoff_t;

/* What moves a hand-off along. */
typedef enum {
    KV_PLAN_EV_LEARN,    /* a learner is placed */
    KV_PLAN_EV_FENCE,    /* a primary-moving learner is live: fence the primary */
    KV_PLAN_EV_FLIP,     /* the learner takes its slot */
    KV_PLAN_EV_CANCEL,   /* the move can no longer finish */
    KV_PLAN_EV_TAKEOVER, /* the primary died and the learner replaces it */
    KV_PLAN_EVENTS
} kv_plan_event_t;

/* The hand-off state of partition p in table. */
kv_plan_handoff_t kv_plan_handoff(const kv_table_t *table, uint32_t p);

/* Names for logs. */
const char *kv_plan_handoff_name(kv_plan_handoff_t state);
const char *kv_plan_event_name(kv_plan_event_t event);

/* What a node last reported about one partition it holds. */
typedef struct {
    uint8_t held;  /* the node reported this partition at all */
    uint8_t live;  /* replica or learner in sync with the primary's stream */
    uint8_t ready; /* learner of a fenced partition with the whole stream applied */
    uint8_t full;  /* replica or learner whose snapshot did not fit its memory limit */
    uint64_t seq;  /* last applied (replica) or assigned (primary) sequence */
} kv_plan_report_t;

/* The reports of all nodes: reports[node * partitions + partition], for
 * the table's node indexes. */
typedef struct {
    const kv_plan_report_t *reports; /* node_count x partitions entries */
    uint32_t node_count;             /* rows in reports */
    const uint8_t *full;             /* node_count flags (may be NULL): nodes that lately gave
                                        up a partition for memory; given no new work */
    kv_counters_t *counters;         /* where the step counts (may be NULL): hand-off
                                        transitions, failovers, illegal events */
} kv_plan_facts_t;

/* Applies one round of the rules above to table; facts may be NULL (no
 * reports). Returns the number of partitions plus node states changed: 0
 * means nothing to publish; -1 when out of memory (table unchanged). */
int kv_plan_step(kv_table_t *table, const kv_plan_facts_t *facts, uint32_t max_moves);

/* Registers the counters kv_plan_step counts in (kv_plan_handoff_*_total,
 * kv_plan_failovers_total, ...): call once before the registry is shared
 * with other threads. */
void kv_plan_register_counters(kv_counters_t *counters);

/* Learners currently set in table. */
uint32_t kv_plan_moves(const kv_table_t *table);

/* Declares a DOWN node gone for good (state LEFT), at an operator's word:
 * the next step stops waiting for it. Each partition it was primary of
 * takes its replica with the highest sequence, live or not, and one with
 * no replica at all is assigned afresh, empty (its data went with the
 * node). Returns 0, or -1 when node is not a DOWN node of table. */
int kv_plan_forget_node(kv_table_t *table, uint16_t node);

#endif
