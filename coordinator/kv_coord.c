/*  kv_coord.c: the coordinator actor (see kv_coord.h).
 *
 *  One loop: registrations, heartbeats (with per-partition reports), table
 *  requests, cluster requests (JOIN, LEAVE) and STATS on the ROUTER; invitations
 *  to nodes on short-lived DEALERs; and a tick that detects dead nodes, runs
 *  the planner (kv_plan) and publishes the table whenever it changed.
 */
#include "kv_coord.h"

#include "kv_actor.h"
#include "kv_clock.h"
#include "kv_counters.h"
#include "kv_endpoint.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_msg.h"
#include "kv_msg_counts.h"
#include "kv_plan.h"
#include "kv_table.h"

#define KV_COORD_REPUBLISH_MS 1000 /* repeat the table for late subscribers */
#define KV_COORD_TICK_MS 20        /* liveness and planning period */
#define KV_COORD_INVITE_MS 2000    /* a /join waits this long for the node */
#define KV_COORD_JOINS 16          /* invitations in flight at once */
#define KV_COORD_LEAVES 64         /* /leave requests waiting for a drain */
#define KV_COORD_FORGET_MS 10000   /* a down node holding nothing is gone after this */
#define KV_COORD_FULL_MS 60000     /* no new work this long for a node out of memory */

typedef struct {
    zframe_t *routing_id; /* the node's ROUTER identity, to send it tables */
    int64_t last_seen;    /* mono ms of its last HELLO or heartbeat */
    uint64_t incarnation; /* its process; a new one means its data is gone */
    uint64_t keys;        /* keys it reported */
    uint64_t memory;      /* bytes it reported */
    int64_t down_since;   /* mono ms it was marked down, 0 when up */
    int forgotten;        /* LEFT because down too long, not by a /leave */
    int64_t lease_until;  /* mono ms its last lease grant may last, on our clock */
} s_member_t;

typedef struct {
    zsock_t *dealer;   /* to the invited node; NULL when the slot is free */
    zframe_t *gateway; /* who asked */
    uint64_t req_id;   /* the gateway's request */
    int64_t deadline;  /* mono ms */
} s_join_t;

typedef struct {
    zframe_t *gateway; /* who asked; NULL when the slot is free */
    uint64_t req_id;   /* the gateway's request */
    uint16_t node;     /* the node draining */
} s_leave_t;

typedef struct {
    zsock_t *pipe;                     /* to the actor's owner */
    zsock_t *router;                   /* nodes and gateways */
    zsock_t *pub;                      /* table broadcasts */
    kv_coord_config_t config;          /* settings */
    kv_table_t *table;                 /* the routing table we own */
    s_member_t members[KV_MAX_NODES];  /* by table node index */
    kv_plan_report_t *reports;         /* report_rows x partitions, by node index */
    uint32_t report_rows;              /* rows allocated */
    uint64_t *learner_since;           /* per partition: epoch its learner was set */
    int64_t full_until[KV_MAX_NODES];  /* mono ms: the node gave up a partition for memory
                                          (KV_REPORT_FULL); the planner sends it none till then */
    uint8_t full[KV_MAX_NODES];        /* scratch: the planner's facts.full */
    uint16_t *learners_before;         /* scratch: learners before a planning step */
    s_join_t joins[KV_COORD_JOINS];    /* invitations in flight */
    s_leave_t leaves[KV_COORD_LEAVES]; /* drains a gateway waits for */
    int started;                       /* min_nodes reached once (or a table adopted) */
    int64_t plan_after;                /* mono ms: no planning before (after a restart) */
    int64_t first_assign_after;        /* mono ms: no fresh assignment before */
    int64_t next_publish;              /* mono ms of the next repeat */
    uint64_t invite_ids;               /* INVITE request ids */
    int terminated;                    /* $TERM received */
    kv_counters_t *counters;           /* this coordinator's registry (and the planner's) */
    size_t count_epochs;               /* counter handles */
    size_t count_nodes_down;
    kv_msg_counts_t msg_counts; /* messages received, by type */
} s_coord_t;

/* --- sending ------------------------------------------------------------- */

static zframe_t *s_frame(const kv_msg_t *msg) {
    size_t size = kv_msg_encoded_size(msg);
    zframe_t *frame = size ? zframe_new(NULL, size) : NULL;
    if (frame) kv_msg_encode(msg, zframe_data(frame), size);
    return frame;
}

/* Encodes the TABLE message for the current table into a frame. */
static zframe_t *s_table_frame(s_coord_t *self) {
    size_t tsize = kv_table_encoded_size(self->table);
    uint8_t *tbuf = malloc(tsize);
    if (!tbuf) return NULL;
    kv_msg_t msg = {.type = KV_MSG_TABLE};
    msg.table = (kv_bytes_t){(const char *)tbuf, kv_table_encode(self->table, tbuf, tsize)};
    zframe_t *frame = s_frame(&msg);
    free(tbuf);
    return frame;
}

static void s_send_to(s_coord_t *self, zframe_t *routing_id, zframe_t *body) {
    if (!routing_id || !body) return;
    zframe_t *id = zframe_dup(routing_id);
    zframe_t *copy = zframe_dup(body);
    if (zframe_send(&id, self->router, ZFRAME_MORE | ZFRAME_DONTWAIT) == 0)
        zframe_send(&copy, self->router, ZFRAME_DONTWAIT);
    zframe_destroy(&id);
    zframe_destroy(&copy);
}

static void s_send_msg(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    zframe_t *frame = s_frame(msg);
    s_send_to(self, routing_id, frame);
    zframe_destroy(&frame);
}

static void s_send_table(s_coord_t *self, zframe_t *routing_id) {
    zframe_t *frame = s_table_frame(self);
    s_send_to(self, routing_id, frame);
    zframe_destroy(&frame);
}

static void s_cluster_reply(s_coord_t *self, zframe_t *gateway, uint64_t req_id, kv_status_t status,
                            const char *node_id) {
    kv_msg_t reply = {.type = KV_MSG_CLUSTER_REPLY, .req_id = req_id, .status = (uint8_t)status};
    reply.node_id = (kv_bytes_t){node_id, node_id ? strlen(node_id) : 0};
    s_send_msg(self, gateway, &reply);
}

/* Publishes the table and pushes it to every node we can reach. */
static void s_broadcast(s_coord_t *self) {
    zframe_t *frame = s_table_frame(self);
    if (!frame) return;
    for (uint32_t i = 0; i < kv_table_node_count(self->table); i++)
        if (kv_table_node_state(self->table, i) != KV_NODE_LEFT)
            s_send_to(self, self->members[i].routing_id, frame);
    zframe_send(&frame, self->pub, ZFRAME_DONTWAIT);
    zframe_destroy(&frame);
    self->next_publish = kv_clock_mono_ms() + KV_COORD_REPUBLISH_MS;
}

static void s_bump(s_coord_t *self, const char *why) {
    kv_table_set_epoch(self->table, kv_table_epoch(self->table) + 1);
    kv_counters_inc(self->counters, self->count_epochs);
    kv_log_info("epoch %" PRIu64 ": %s (%u partitions moving)", kv_table_epoch(self->table), why,
                kv_plan_moves(self->table));
    s_broadcast(self);
}

/* --- reports ------------------------------------------------------------- */

static kv_plan_report_t *s_report_row(s_coord_t *self, uint32_t node) {
    uint32_t partitions = kv_table_partitions(self->table);
    if (partitions == 0) return NULL; /* a table always has some */
    if (node >= self->report_rows) {
        uint32_t rows = node + 8;
        size_t bytes = (size_t)rows * partitions * sizeof(kv_plan_report_t);
        kv_plan_report_t *grown = realloc(self->reports, bytes);
        if (!grown) return NULL;
        size_t old = (size_t)self->report_rows * partitions;
        memset(grown + old, 0, bytes - old * sizeof(kv_plan_report_t));
        self->reports = grown;
        self->report_rows = rows;
    }
    return self->reports + (size_t)node * partitions;
}

static void s_clear_reports(s_coord_t *self, uint32_t node) {
    kv_plan_report_t *row = s_report_row(self, node);
    if (row) memset(row, 0, kv_table_partitions(self->table) * sizeof(*row));
}

static void s_store_reports(s_coord_t *self, uint32_t node, const kv_bytes_t *blob,
                            uint64_t epoch) {
    kv_plan_report_t *row = s_report_row(self, node);
    if (!row) return;
    uint32_t partitions = kv_table_partitions(self->table);
    memset(row, 0, partitions * sizeof(*row));
    size_t count = blob->len / KV_MSG_REPORT_SIZE;
    for (size_t i = 0; i < count; i++) {
        kv_msg_report_t report = kv_msg_report_read(blob, i);
        if (report.partition >= partitions) continue;
        kv_plan_report_t *fact = &row[report.partition];
        fact->held = 1;
        fact->live = (report.state & KV_REPORT_LIVE) != 0;
        fact->ready = (report.state & KV_REPORT_READY) != 0;
        fact->full = (report.state & KV_REPORT_FULL) != 0;
        if (fact->full) self->full_until[node] = kv_clock_mono_ms() + KV_COORD_FULL_MS;
        fact->seq = report.seq;
        if (kv_table_learner(self->table, report.partition) == node &&
            epoch < self->learner_since[report.partition])
            fact->live = fact->ready = 0; /* sent before it knew it was learner */
    }
}

/* --- planning ------------------------------------------------------------ */

/* A report is a fact about the past: one sent before a node learned it is
 * a partition's learner may say "live" about a role it no longer has. So a
 * new learner's report starts empty, and reports older than the epoch that
 * made it learner are not believed (s_store_reports). */
static void s_note_new_learners(s_coord_t *self, const uint16_t *before) {
    for (uint32_t p = 0; p < kv_table_partitions(self->table); p++) {
        uint16_t learner = kv_table_learner(self->table, p);
        if (learner == before[p] || learner == KV_NO_NODE) continue;
        self->learner_since[p] = kv_table_epoch(self->table) + 1; /* the epoch s_bump publishes */
        kv_plan_report_t *row = s_report_row(self, learner);
        if (row) row[p].live = row[p].ready = 0;
    }
}

static void s_plan(s_coord_t *self, const char *why) {
    if (!self->started || kv_clock_mono_ms() < self->plan_after) return;
    uint32_t nodes = kv_table_node_count(self->table);
    if (nodes && !s_report_row(self, nodes - 1)) return; /* out of memory: next tick */
    uint32_t partitions = kv_table_partitions(self->table);
    for (uint32_t p = 0; p < partitions; p++)
        self->learners_before[p] = kv_table_learner(self->table, p);
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < nodes && i < KV_MAX_NODES; i++)
        self->full[i] = now < self->full_until[i];
    kv_plan_facts_t facts = {self->reports, nodes, self->full, self->counters};
    if (kv_plan_step(self->table, &facts, (uint32_t)self->config.max_moves) <= 0) return;
    s_note_new_learners(self, self->learners_before);
    s_bump(self, why);
}

/* Answers the /leave requests whose node has drained. */
static void s_check_leaves(s_coord_t *self) {
    for (int i = 0; i < KV_COORD_LEAVES; i++) {
        s_leave_t *leave = &self->leaves[i];
        if (!leave->gateway || kv_table_node_state(self->table, leave->node) != KV_NODE_LEFT)
            continue;
        s_cluster_reply(self, leave->gateway, leave->req_id, KV_STATUS_OK,
                        kv_table_node(self->table, leave->node)->id);
        zframe_destroy(&leave->gateway);
    }
}

/* --- membership ---------------------------------------------------------- */

/* After a restart the nodes know the routing better than we do: adopt the
 * newest table one of them reports. */
static void s_adopt_reported(s_coord_t *self, kv_bytes_t bytes, const char *from) {
    if (!bytes.len) return;
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) return;
    if (kv_table_epoch(table) <= kv_table_epoch(self->table) ||
        kv_table_partitions(table) != kv_table_partitions(self->table)) {
        kv_table_destroy(&table);
        return;
    }
    kv_log_info("adopting table epoch %" PRIu64 " reported by node %s", kv_table_epoch(table),
                from);
    /* Members are indexed like the table's nodes: re-index them by id. */
    s_member_t members[KV_MAX_NODES];
    memset(members, 0, sizeof(members));
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < kv_table_node_count(table); i++) {
        int old = kv_table_find(self->table, kv_table_node(table, i)->id);
        if (old >= 0) {
            members[i] = self->members[old];
            self->members[old].routing_id = NULL;
        } else
            members[i].last_seen = now; /* give it time to check in */
    }
    for (int i = 0; i < KV_MAX_NODES; i++) zframe_destroy(&self->members[i].routing_id);
    memcpy(self->members, members, sizeof(members));
    kv_table_destroy(&self->table);
    self->table = table;
    free(self->reports);
    self->reports = NULL;
    self->report_rows = 0;
    self->started = 1;
    /* Plan once the nodes had time to report (heartbeats come every 100 ms
     * by default); hand-offs that were fenced when we died wait until then,
     * and nothing is promoted before the leases our predecessor may have
     * granted have run out (s_coord_init). */
    int64_t reported = now + self->config.node_timeout_ms / 2;
    if (reported > self->plan_after) self->plan_after = reported;
}

static void s_set_routing_id(s_member_t *member, zframe_t *routing_id) {
    zframe_destroy(&member->routing_id);
    member->routing_id = zframe_dup(routing_id);
}

/* A node came back as a new process: whatever it held is gone. Its
 * partitions fail over as if it had died, then it starts afresh. */
static void s_forget_data(s_coord_t *self, uint32_t index) {
    kv_log_warn("node %s restarted (new incarnation): its data is gone",
                kv_table_node(self->table, index)->id);
    s_clear_reports(self, index);
    uint8_t state = kv_table_node_state(self->table, index);
    kv_table_set_node_state(self->table, index, KV_NODE_DOWN);
    uint32_t nodes = kv_table_node_count(self->table);
    kv_plan_facts_t facts = {self->reports, nodes, NULL, self->counters};
    if (s_report_row(self, nodes - 1)) kv_plan_step(self->table, &facts, 0);
    kv_table_set_node_state(self->table, index,
                            state == KV_NODE_LEFT ? KV_NODE_JOINING : KV_NODE_ACTIVE);
    s_bump(self, "node restarted");
}

static int s_text_of(kv_bytes_t bytes, char *out, size_t cap) {
    if (bytes.len >= cap) return -1;
    if (bytes.len) memcpy(out, bytes.ptr, bytes.len);
    out[bytes.len] = '\0';
    return 0;
}

/* Registers (or re-registers) a node; returns its index or -1. */
static int s_register(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg, const char *id) {
    char endpoint[KV_ENDPOINT_MAX + 1], pub[KV_ENDPOINT_MAX + 1];
    if (s_text_of(msg->endpoint, endpoint, sizeof(endpoint)) ||
        s_text_of(msg->pub_endpoint, pub, sizeof(pub)))
        return -1;
    int known = kv_table_find(self->table, id) >= 0;
    int index = kv_table_upsert(self->table, id, endpoint, pub);
    if (index < 0) {
        kv_log_warn("node %s refused: table full or bad endpoint", id);
        return -1;
    }
    s_member_t *member = &self->members[index];
    s_set_routing_id(member, routing_id);
    member->last_seen = kv_clock_mono_ms();
    member->keys = msg->keys;
    member->memory = msg->memory;
    member->forgotten = 0; /* s_on_hello brings a LEFT node back itself */
    if (!known)
        kv_log_info("node %s registered at %s", id, endpoint);
    else if (member->incarnation && member->incarnation != msg->incarnation)
        s_forget_data(self, (uint32_t)index);
    member->incarnation = msg->incarnation;
    return index;
}

static void s_on_hello(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char id[KV_NODE_ID_MAX + 1];
    if (msg->node_id.len == 0 || s_text_of(msg->node_id, id, sizeof(id))) return;
    s_adopt_reported(self, msg->table, id);
    int index = s_register(self, routing_id, msg, id);
    if (index < 0) return;
    uint8_t state = kv_table_node_state(self->table, (uint32_t)index);
    if (state == KV_NODE_DOWN || state == KV_NODE_LEFT) {
        kv_table_set_node_state(self->table, (uint32_t)index,
                                kv_table_count_primaries(self->table, (uint16_t)index)
                                    ? KV_NODE_ACTIVE
                                    : KV_NODE_JOINING);
        s_bump(self, "node back");
    }
    /* A restarted coordinator first hears from nodes that may still report
     * the cluster's table: wait a little before assigning a fresh one. */
    if (!self->started && kv_table_node_count(self->table) >= (uint32_t)self->config.min_nodes &&
        kv_clock_mono_ms() >= self->first_assign_after) {
        self->started = 1;
        s_plan(self, "partitions assigned");
    } else if (self->started)
        s_plan(self, "node registered");
    s_send_table(self, routing_id);
}

/* Answers a heartbeat with a lease grant. The node counts it from when it
 * sent the heartbeat, for lease - margin; we count it from now (after the
 * send) for lease + margin, so the node's lease always ends first and a
 * failover waits for ours (s_check_liveness). */
static void s_grant_lease(s_coord_t *self, s_member_t *member, zframe_t *routing_id,
                          uint64_t heartbeat) {
    if (self->config.lease_ms <= 0 || heartbeat == 0) return; /* off, or an old node */
    kv_msg_t grant = {
        .type = KV_MSG_LEASE, .req_id = heartbeat, .epoch = kv_table_epoch(self->table)};
    grant.lease_ms = (uint32_t)(self->config.lease_ms - self->config.lease_margin_ms);
    member->lease_until = member->last_seen + self->config.lease_ms + self->config.lease_margin_ms;
    s_send_msg(self, routing_id, &grant);
}

static void s_on_heartbeat(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char id[KV_NODE_ID_MAX + 1];
    int index = s_text_of(msg->node_id, id, sizeof(id)) ? -1 : kv_table_find(self->table, id);
    s_member_t *member = index >= 0 ? &self->members[index] : NULL;
    if (!member || member->incarnation != msg->incarnation) { /* we restarted, or it did */
        kv_msg_t who = {.type = KV_MSG_WHO};
        s_send_msg(self, routing_id, &who);
        return;
    }
    s_set_routing_id(member, routing_id);
    member->last_seen = kv_clock_mono_ms();
    member->keys = msg->keys;
    member->memory = msg->memory;
    s_grant_lease(self, member, routing_id, msg->req_id);
    s_store_reports(self, (uint32_t)index, &msg->reports, msg->epoch);
    uint8_t state = kv_table_node_state(self->table, (uint32_t)index);
    if (state == KV_NODE_DOWN) {
        kv_table_set_node_state(self->table, (uint32_t)index, KV_NODE_ACTIVE);
        member->down_since = 0;
        kv_log_info("node %s: heartbeats again", id);
        s_bump(self, "node back");
    } else if (state == KV_NODE_LEFT && member->forgotten) {
        /* Cut off long enough to be forgotten, not asked to leave: it
         * joins again (owning nothing), before it reads LEFT and exits. */
        kv_table_set_node_state(self->table, (uint32_t)index, KV_NODE_JOINING);
        member->forgotten = 0;
        kv_log_info("node %s: forgotten while silent, heartbeats again: joining", id);
        s_bump(self, "forgotten node back");
    } else if (msg->epoch < kv_table_epoch(self->table))
        s_send_table(self, routing_id); /* it missed a table */
}

/* Marks nodes down once silent for node_timeout_ms. */
static void s_check_liveness(s_coord_t *self) {
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < kv_table_node_count(self->table); i++) {
        const kv_table_node_t *node = kv_table_node(self->table, i);
        if (node->state == KV_NODE_DOWN || node->state == KV_NODE_LEFT) continue;
        if (now - self->members[i].last_seen <= self->config.node_timeout_ms) continue;
        if (now < self->members[i].lease_until) continue; /* it may still serve: wait */
        kv_table_set_node_state(self->table, i, KV_NODE_DOWN);
        self->members[i].down_since = now;
        s_clear_reports(self, i);
        kv_counters_inc(self->counters, self->count_nodes_down);
        kv_log_warn("node %s: no heartbeat for %" PRId64 " ms, marked down", node->id,
                    now - self->members[i].last_seen);
        s_bump(self, "node down");
    }
}

/* --- cluster requests ---------------------------------------------------- */

static int s_serving_others(const s_coord_t *self, uint32_t except) {
    int count = 0;
    for (uint32_t i = 0; i < kv_table_node_count(self->table); i++) {
        uint8_t state = kv_table_node_state(self->table, i);
        count += i != except && (state == KV_NODE_ACTIVE || state == KV_NODE_JOINING);
    }
    return count;
}

/* LEAVE from a gateway (/leave) or from a node draining itself. */
static void s_on_leave(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char id[KV_NODE_ID_MAX + 1] = "";
    int index = s_text_of(msg->node_id, id, sizeof(id)) ? -1 : kv_table_find(self->table, id);
    int from_gateway = msg->req_id != 0;
    if (index < 0) { /* just restarted: the nodes may not have told us who they are yet */
        int rebuilding = !self->started || kv_clock_mono_ms() < self->plan_after;
        if (from_gateway)
            s_cluster_reply(self, routing_id, msg->req_id,
                            rebuilding ? KV_STATUS_NOT_READY : KV_STATUS_NOT_FOUND, id);
        return;
    }
    const kv_table_node_t *node = kv_table_node(self->table, (uint32_t)index);
    self->members[index].forgotten = 0; /* asked to go: LEFT for good */
    uint16_t me = (uint16_t)index;
    int owns = kv_table_count_primaries(self->table, me) + kv_table_count_replicas(self->table, me);
    if (node->state != KV_NODE_LEFT && owns && !s_serving_others(self, (uint32_t)index)) {
        kv_log_warn("node %s cannot leave: no other node to take its partitions", id);
        if (from_gateway) s_cluster_reply(self, routing_id, msg->req_id, KV_STATUS_UNAVAILABLE, id);
        return;
    }
    if (node->state != KV_NODE_LEAVING && node->state != KV_NODE_LEFT) {
        kv_table_set_node_state(self->table, (uint32_t)index,
                                owns ? KV_NODE_LEAVING : KV_NODE_LEFT);
        s_bump(self, owns ? "node leaving" : "node left");
    }
    if (!from_gateway) return; /* the node watches the table for LEFT itself */
    if (node->state == KV_NODE_LEFT) {
        s_cluster_reply(self, routing_id, msg->req_id, KV_STATUS_OK, id);
        return;
    }
    for (int i = 0; i < KV_COORD_LEAVES; i++) /* the gateway repeats its LEAVE: once is enough */
        if (self->leaves[i].gateway && self->leaves[i].req_id == msg->req_id &&
            zframe_eq(self->leaves[i].gateway, routing_id))
            return;
    for (int i = 0; i < KV_COORD_LEAVES; i++)
        if (!self->leaves[i].gateway) {
            self->leaves[i] = (s_leave_t){zframe_dup(routing_id), msg->req_id, me};
            return;
        }
    s_cluster_reply(self, routing_id, msg->req_id, KV_STATUS_UNAVAILABLE, id); /* too many */
}

static void s_join_free(s_join_t *join) {
    zsock_destroy(&join->dealer);
    zframe_destroy(&join->gateway);
}

/* JOIN from a gateway: invite the node at that endpoint to register here. */
static void s_on_join(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char endpoint[KV_ENDPOINT_MAX + 1];
    if (s_text_of(msg->endpoint, endpoint, sizeof(endpoint)) || !kv_endpoint_is_valid(endpoint)) {
        s_cluster_reply(self, routing_id, msg->req_id, KV_STATUS_BAD_REQUEST, NULL);
        return;
    }
    s_join_t *join = NULL;
    for (int i = 0; i < KV_COORD_JOINS && !join; i++)
        if (!self->joins[i].dealer) join = &self->joins[i];
    if (join) join->dealer = zsock_new(ZMQ_DEALER);
    if (!join || !join->dealer || zsock_connect(join->dealer, "%s", endpoint) != 0) {
        if (join) zsock_destroy(&join->dealer);
        s_cluster_reply(self, routing_id, msg->req_id, KV_STATUS_UNAVAILABLE, NULL);
        return;
    }
    zsock_set_linger(join->dealer, 0);
    join->gateway = zframe_dup(routing_id);
    join->req_id = msg->req_id;
    join->deadline = kv_clock_mono_ms() + KV_COORD_INVITE_MS;
    kv_msg_t invite = {.type = KV_MSG_INVITE, .req_id = ++self->invite_ids};
    invite.endpoint = (kv_bytes_t){self->config.advertise, strlen(self->config.advertise)};
    zframe_t *frame = s_frame(&invite);
    if (frame) zframe_send(&frame, join->dealer, ZFRAME_DONTWAIT);
    zframe_destroy(&frame);
    kv_log_info("inviting the node at %s", endpoint);
}

static void s_on_join_reply(s_coord_t *self, s_join_t *join) {
    zframe_t *frame = zframe_recv(join->dealer);
    kv_msg_t msg;
    int decoded = frame && kv_msg_decode(zframe_data(frame), zframe_size(frame), &msg) == 0;
    if (decoded) kv_msg_counts_inc(&self->msg_counts, msg.type);
    if (decoded && msg.type == KV_MSG_REPLY && msg.status == KV_STATUS_OK) {
        char id[KV_NODE_ID_MAX + 1];
        if (s_text_of(msg.value, id, sizeof(id)) == 0) {
            s_cluster_reply(self, join->gateway, join->req_id, KV_STATUS_OK, id);
            s_join_free(join);
        }
    }
    zframe_destroy(&frame);
}

static void s_expire_joins(s_coord_t *self) {
    int64_t now = kv_clock_mono_ms();
    for (int i = 0; i < KV_COORD_JOINS; i++) {
        s_join_t *join = &self->joins[i];
        if (!join->dealer || now < join->deadline) continue;
        s_cluster_reply(self, join->gateway, join->req_id, KV_STATUS_UNAVAILABLE, NULL);
        s_join_free(join);
    }
}

/* STATS: our counters, so tests can count what the coordinator received. */
static void s_on_stats(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    kv_msg_t reply = {.type = KV_MSG_STATS_REPLY, .req_id = msg->req_id, .status = KV_STATUS_OK};
    reply.epoch = kv_table_epoch(self->table);
    uint8_t *counters = NULL;
    reply.counters = kv_msg_counts_blob(self->counters, &counters);
    s_send_msg(self, routing_id, &reply);
    free(counters);
}

static void s_dispatch(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    kv_msg_counts_inc(&self->msg_counts, msg->type);
    switch (msg->type) {
    case KV_MSG_HELLO:
        s_on_hello(self, routing_id, msg);
        break;
    case KV_MSG_HEARTBEAT:
        s_on_heartbeat(self, routing_id, msg);
        break;
    case KV_MSG_TABLE_REQ:
        s_send_table(self, routing_id);
        break;
    case KV_MSG_LEAVE:
        s_on_leave(self, routing_id, msg);
        break;
    case KV_MSG_JOIN:
        s_on_join(self, routing_id, msg);
        break;
    case KV_MSG_STATS:
        s_on_stats(self, routing_id, msg);
        break;
    default:
        kv_log_warn("unexpected %s on the coordinator socket dropped", kv_msg_type_name(msg->type));
    }
}

static void s_on_router(s_coord_t *self) {
    zmsg_t *request = zmsg_recv(self->router);
    if (!request) return;
    zframe_t *routing_id = zmsg_pop(request);
    zframe_t *body = zmsg_pop(request);
    kv_msg_t msg;
    if (!routing_id || !body || zmsg_size(request) != 0 ||
        kv_msg_decode(zframe_data(body), zframe_size(body), &msg) != 0)
        kv_log_warn("malformed message on the coordinator socket dropped");
    else
        s_dispatch(self, routing_id, &msg);
    zframe_destroy(&routing_id);
    zframe_destroy(&body);
    zmsg_destroy(&request);
}

/* --- the actor ----------------------------------------------------------- */

static int s_coord_init(s_coord_t *self, zsock_t *pipe, const kv_coord_config_t *config) {
    memset(self, 0, sizeof(*self));
    self->pipe = pipe;
    self->config = *config;
    self->table = kv_table_new((uint32_t)config->partitions, (uint32_t)config->replication);
    self->first_assign_after = kv_clock_mono_ms() + config->node_timeout_ms / 2;
    /* A coordinator that just started cannot know which leases its
     * predecessor granted: it promotes nothing until any of them ran out. */
    if (config->lease_ms > 0)
        self->plan_after = kv_clock_mono_ms() + config->lease_ms + config->lease_margin_ms;
    self->learner_since = calloc((size_t)config->partitions, sizeof(*self->learner_since));
    self->learners_before = calloc((size_t)config->partitions, sizeof(*self->learners_before));
    if (!self->learner_since || !self->learners_before) return -1;
    self->router = zsock_new(ZMQ_ROUTER);
    self->pub = zsock_new(ZMQ_PUB);
    self->counters = kv_counters_new();
    if (!self->table || !self->router || !self->pub || !self->counters) return -1;
    self->count_epochs = kv_counters_register(self->counters, "kv_coord_epochs_published_total",
                                              "routing tables published with a new epoch");
    self->count_nodes_down = kv_counters_register(self->counters, "kv_coord_nodes_down_total",
                                                  "nodes marked down for silence");
    kv_plan_register_counters(self->counters);
    kv_msg_counts_register(&self->msg_counts, self->counters, "kv_coord_messages");
    zsock_set_sndhwm(self->router, 100000);
    if (zsock_bind(self->router, "%s", config->bind) < 0) {
        kv_log_error("cannot bind %s: %s", config->bind, zmq_strerror(errno));
        return -1;
    }
    if (zsock_bind(self->pub, "%s", config->pub_bind) < 0) {
        kv_log_error("cannot bind %s: %s", config->pub_bind, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static void s_coord_destroy(s_coord_t *self) {
    for (int i = 0; i < KV_MAX_NODES; i++) zframe_destroy(&self->members[i].routing_id);
    for (int i = 0; i < KV_COORD_JOINS; i++) s_join_free(&self->joins[i]);
    for (int i = 0; i < KV_COORD_LEAVES; i++) zframe_destroy(&self->leaves[i].gateway);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pub);
    kv_table_destroy(&self->table);
    free(self->reports);
    free(self->learner_since);
    free(self->learners_before);
    kv_counters_destroy(&self->counters);
}

/* A node down for a while that holds nothing any more (its partitions
 * failed over) is gone: LEFT, so peers stop connecting to it. One still
 * holding a partition nobody else has is kept: it may come back with it. */
static void s_forget_dead(s_coord_t *self) {
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < kv_table_node_count(self->table); i++) {
        s_member_t *member = &self->members[i];
        if (kv_table_node_state(self->table, i) != KV_NODE_DOWN || !member->down_since) continue;
        if (now - member->down_since < KV_COORD_FORGET_MS) continue;
        uint16_t node = (uint16_t)i;
        int holds = kv_table_count_primaries(self->table, node) +
                    kv_table_count_replicas(self->table, node);
        for (uint32_t p = 0; !holds && p < kv_table_partitions(self->table); p++)
            holds = kv_table_learner(self->table, p) == node;
        if (holds || kv_plan_forget_node(self->table, node) != 0) continue;
        member->down_since = 0;
        member->forgotten = 1;
        s_bump(self, "down node forgotten");
    }
}

static void s_tick(s_coord_t *self) {
    s_check_liveness(self);
    s_forget_dead(self);
    if (!self->started && kv_table_node_count(self->table) >= (uint32_t)self->config.min_nodes &&
        kv_clock_mono_ms() >= self->first_assign_after) {
        self->started = 1;
        s_plan(self, "partitions assigned");
    }
    s_plan(self, "partitions moved");
    s_check_leaves(self);
    s_expire_joins(self);
    if (kv_clock_mono_ms() >= self->next_publish) s_broadcast(self);
}

static void s_loop(s_coord_t *self) {
    int64_t next_tick = 0;
    while (!self->terminated) {
        zmq_pollitem_t items[2 + KV_COORD_JOINS];
        s_join_t *owners[2 + KV_COORD_JOINS];
        int count = 0;
        items[count++] = (zmq_pollitem_t){zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0};
        items[count++] = (zmq_pollitem_t){zsock_resolve(self->router), 0, ZMQ_POLLIN, 0};
        for (int i = 0; i < KV_COORD_JOINS; i++)
            if (self->joins[i].dealer) {
                owners[count] = &self->joins[i];
                items[count++] =
                    (zmq_pollitem_t){zsock_resolve(self->joins[i].dealer), 0, ZMQ_POLLIN, 0};
            }
        long timeout = (long)(next_tick - kv_clock_mono_ms());
        int rc = zmq_poll(items, count, timeout < 0 ? 0 : timeout);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(self->pipe);
            self->terminated = !command || streq(command, "$TERM");
            zstr_free(&command);
        }
        for (int n = 0; (items[1].revents & ZMQ_POLLIN) && n < 1000; n++) {
            s_on_router(self);
            if (!(zsock_events(self->router) & ZMQ_POLLIN)) break;
        }
        for (int i = 2; i < count; i++)
            if ((items[i].revents & ZMQ_POLLIN) && owners[i]->dealer)
                s_on_join_reply(self, owners[i]);
        if (kv_clock_mono_ms() >= next_tick) {
            s_tick(self);
            next_tick = kv_clock_mono_ms() + KV_COORD_TICK_MS;
        }
    }
}

void kv_coord_actor(zsock_t *pipe, void *args) {
    s_coord_t self;
    zsock_signal(pipe, 0);
    int ok = s_coord_init(&self, pipe, args) == 0;
    kv_actor_ready(pipe, ok);
    if (ok) {
        kv_log_info("coordinator: %s (tables on %s), %ld partitions, replication %ld, "
                    "waiting for %ld node(s)",
                    self.config.bind, self.config.pub_bind, self.config.partitions,
                    self.config.replication, self.config.min_nodes);
        s_loop(&self);
    }
    s_coord_destroy(&self);
}
