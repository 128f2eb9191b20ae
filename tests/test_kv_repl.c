/*  test_kv_repl.c: the replication engine (kv_repl) in one process.
 *
 *  Engines run with hand-made tables over inproc:// sockets, with a DEALER
 *  standing for the gateway; tests read what happened from each engine's
 *  counter registry (kv_counters), never from logs. Two kinds of test:
 *
 *  - the role state machine (kv_repl_role.c): transitions counted, an
 *    illegal event refused;
 *  - orders of events that real clusters (it_replication.c) reach only by
 *    rare timing, made exact: a primary frozen in the middle of a hand-off,
 *    a learner confirming before the replica and the primary dying right
 *    then, a replica that misses an update and resyncs. Some also ask the
 *    planner (kv_plan) what a failover would do next.
 */
#include <criterion/criterion.h>
#include <czmq.h>
#include <signal.h>
#include <string.h>

#include "kv_clock.h"
#include "kv_counters.h"
#include "kv_msg.h"
#include "kv_plan.h"
#include "kv_repl.h"
#include "kv_repl_int.h"
#include "kv_store.h"
#include "kv_table.h"

/* --- engines ---------------------------------------------------------------- */

/* One node's replication engine with a fake gateway: the engine's ROUTER,
 * its PUB, and a DEALER standing for the gateway. The sockets live in
 * czmq's context, like the engine's own SUB and peer DEALERs, so that two
 * engines reach each other over inproc://. */
typedef struct {
    kv_store_t *store;
    kv_repl_t *repl;
    kv_counters_t *counters; /* the engine's registry */
    void *ctx;               /* for the sockets below (czmq's) */
    void *router;            /* the node's request socket */
    void *pub;               /* its replication stream */
    void *gateway;           /* DEALER to router */
    zmq_msg_t identity;      /* the gateway as router sees it */
} s_engine_t;

static void s_engine_open_partitions(s_engine_t *engine, const char *name, long write_acks,
                                     kv_evict_policy_t eviction, uint32_t partitions) {
    char endpoint[64];
    int linger = 0;
    engine->ctx = zsys_init();
    engine->router = zmq_socket(engine->ctx, ZMQ_ROUTER);
    engine->pub = zmq_socket(engine->ctx, ZMQ_PUB);
    engine->gateway = zmq_socket(engine->ctx, ZMQ_DEALER);
    void *sockets[] = {engine->router, engine->pub, engine->gateway};
    for (int i = 0; i < 3; i++) zmq_setsockopt(sockets[i], ZMQ_LINGER, &linger, sizeof(linger));
    snprintf(endpoint, sizeof(endpoint), "inproc://%s", name);
    cr_assert_eq(zmq_bind(engine->router, endpoint), 0);
    cr_assert_eq(zmq_connect(engine->gateway, endpoint), 0);
    snprintf(endpoint, sizeof(endpoint), "inproc://%s-pub", name);
    cr_assert_eq(zmq_bind(engine->pub, endpoint), 0);
    /* The router learns the gateway's identity from a first frame. */
    cr_assert_eq(zmq_send(engine->gateway, "hi", 2, 0), 2);
    zmq_msg_init(&engine->identity);
    cr_assert_geq(zmq_msg_recv(&engine->identity, engine->router, 0), 0);
    char body[8];
    cr_assert_eq(zmq_recv(engine->router, body, sizeof(body), 0), 2);
    engine->store = kv_store_new(partitions);
    engine->counters = kv_counters_new();
    kv_repl_config_t config = {name,         engine->router,   engine->pub, write_acks,
                               1000,         engine->counters, NULL,        0,
                               (int)eviction};
    engine->repl = kv_repl_new(&config, engine->store, partitions);
    cr_assert_not_null(engine->repl);
}

static void s_engine_open_evicting(s_engine_t *engine, const char *name, long write_acks,
                                   kv_evict_policy_t eviction) {
    s_engine_open_partitions(engine, name, write_acks, eviction, 1);
}

static void s_engine_open(s_engine_t *engine, const char *name, long write_acks) {
    s_engine_open_evicting(engine, name, write_acks, KV_EVICT_NOEVICTION);
}

static void s_engine_close(s_engine_t *engine) {
    kv_repl_destroy(&engine->repl);
    kv_store_destroy(&engine->store);
    zmq_msg_close(&engine->identity);
    zmq_close(engine->gateway);
    zmq_close(engine->pub);
    zmq_close(engine->router);
    kv_counters_destroy(&engine->counters);
}

/* The value of the engine's counter name. */
static uint64_t s_count(const s_engine_t *engine, const char *name) {
    return kv_counters_get(engine->counters, name);
}

/* A table of partitions partitions with R slots: node-a (index 0),
 * node-b, node-c. */
static kv_table_t *s_table_abc_of(uint32_t partitions, uint64_t epoch, uint32_t replication) {
    kv_table_t *table = kv_table_new(partitions, replication);
    const char *names[] = {"node-a", "node-b", "node-c"};
    for (int i = 0; i < 3; i++) {
        char endpoint[64], pub[64];
        snprintf(endpoint, sizeof(endpoint), "inproc://test-repl-%s", names[i]);
        snprintf(pub, sizeof(pub), "inproc://test-repl-%s-pub", names[i]);
        cr_assert_eq(kv_table_upsert(table, names[i], endpoint, pub), i);
        kv_table_set_node_state(table, i, KV_NODE_ACTIVE);
    }
    kv_table_set_epoch(table, epoch);
    return table;
}

/* The same with one partition. */
static kv_table_t *s_table_abc(uint64_t epoch, uint32_t replication) {
    return s_table_abc_of(1, epoch, replication);
}

/* A table of one partition: node-a (a) primary, node-b (b) its replica. */
static kv_table_t *s_table_ab(void) {
    kv_table_t *table = s_table_abc(1, 2);
    kv_table_set_owner(table, 0, 0, 0);
    kv_table_set_owner(table, 0, 1, 1);
    return table;
}

/* node-a (a) and node-b (b) over inproc, both with write_acks and
 * eviction, and the table of s_table_ab (the caller destroys it). */
static kv_table_t *s_pair_open(s_engine_t *a, s_engine_t *b, long write_acks,
                               kv_evict_policy_t eviction) {
    s_engine_open_evicting(a, "test-repl-node-a", write_acks, eviction);
    s_engine_open_evicting(b, "test-repl-node-b", write_acks, eviction);
    return s_table_ab();
}

/* Epoch 1: node-a primary, node-b replica (slot 1), the primary slot
 * moving to learner (MOVE_PRIMARY); with R = 3 node-c holds slot 2. */
static kv_table_t *s_table_primary_moving(uint32_t replication, uint16_t learner) {
    kv_table_t *table = s_table_abc(1, replication);
    kv_table_set_owner(table, 0, 0, 0);
    kv_table_set_owner(table, 0, 1, 1);
    if (replication > 2) kv_table_set_owner(table, 0, 2, 2);
    kv_table_set_learner(table, 0, learner);
    kv_table_set_flags(table, 0, KV_PART_MOVE_PRIMARY);
    return table;
}

/* The reply for req_id at the gateway within ms, decoded into *msg (its
 * strings in s_reply_frame): its status, or -1 when none came (replies to
 * other requests are dropped on the way). */
static uint8_t s_reply_frame[2048];

static int s_reply_msg(s_engine_t *engine, uint64_t req_id, int ms, kv_msg_t *msg) {
    zmq_pollitem_t item = {engine->gateway, 0, ZMQ_POLLIN, 0};
    while (zmq_poll(&item, 1, ms) > 0) {
        int size = zmq_recv(engine->gateway, s_reply_frame, sizeof(s_reply_frame), 0);
        if (size > 0 && kv_msg_decode(s_reply_frame, (size_t)size, msg) == 0 &&
            msg->req_id == req_id)
            return msg->status;
    }
    return -1;
}

/* The same with its version in *version (when not NULL) and its seq in
 * s_last_seq. */
static uint64_t s_last_seq;

static int s_reply_version(s_engine_t *engine, uint64_t req_id, int ms, uint64_t *version) {
    kv_msg_t msg;
    int status = s_reply_msg(engine, req_id, ms, &msg);
    if (status >= 0 && version) *version = msg.meta.version;
    if (status >= 0) s_last_seq = msg.seq;
    return status;
}

/* The status of the reply for req_id at the gateway within ms, or -1. */
static int s_reply_status(s_engine_t *engine, uint64_t req_id, int ms) {
    return s_reply_version(engine, req_id, ms, NULL);
}

static void s_write(s_engine_t *engine, uint64_t req_id, const char *key, uint64_t epoch) {
    kv_msg_t req = {.type = KV_MSG_SET, .req_id = req_id, .epoch = epoch, .partition = 0};
    req.key = (kv_bytes_t){key, strlen(key)};
    req.value = (kv_bytes_t){"v", 1};
    kv_repl_write(engine->repl, &engine->identity, &req);
}

static void s_ack(s_engine_t *engine, uint16_t from, uint64_t seq) {
    uint8_t items[KV_MSG_ITEM_SIZE];
    kv_msg_item_t item = {0, seq, 0};
    kv_msg_item_write(items, 0, &item);
    kv_msg_t ack = {.type = KV_MSG_ACK, .sender = from};
    ack.items = (kv_bytes_t){(const char *)items, sizeof(items)};
    kv_repl_on_ack(engine->repl, &ack);
}

/* node-a is primary, node-b its replica, node-c learning to take over
 * (MOVE_PRIMARY). Write 1 is confirmed by node-b; write 2 by nobody (the
 * update was lost on the way, or both were slow). Then the partition is
 * fenced. Returns the engine ready for the next table (epoch 3). */
static void s_handoff_with_unconfirmed_write(s_engine_t *engine, const char *name) {
    s_engine_open(engine, name, 1);
    kv_table_t *table = s_table_primary_moving(2, 2);
    kv_repl_on_table(engine->repl, table, 0);
    s_write(engine, 1, "first", 1);
    cr_expect_eq(s_reply_status(engine, 1, 50), -1, "acknowledged before any replica confirmed");
    s_ack(engine, 1, 1);
    cr_expect_eq(s_reply_status(engine, 1, 500), KV_STATUS_OK, "confirmed write not acknowledged");
    s_write(engine, 2, "second", 1);
    kv_table_set_epoch(table, 2);
    kv_table_set_flags(table, 0, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    kv_repl_on_table(engine->repl, table, 0);
    cr_expect(kv_repl_is_fenced(engine->repl, 0));
    cr_expect_eq(s_count(engine, "kv_repl_role_primary_total"), 1);
    cr_expect_eq(s_count(engine, "kv_repl_role_fenced_total"), 1);
    cr_expect_eq(s_reply_status(engine, 2, 50), -1, "unconfirmed write acknowledged");
    kv_table_destroy(&table);
}

/* The hand-off completes: node-c took over only after applying the whole
 * stream up to the fence, so node-a's waiting write is safe on it and may
 * be acknowledged. */
Test(kv_repl, handoff_confirms_the_old_primarys_waiting_writes) {
    s_engine_t engine;
    s_handoff_with_unconfirmed_write(&engine, "test-repl-handoff");
    kv_table_t *table = s_table_abc(3, 2);
    kv_table_set_owner(table, 0, 0, 2); /* the flip: [learner, replica] */
    kv_table_set_owner(table, 0, 1, 1);
    kv_repl_on_table(engine.repl, table, 0);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_OK);
    cr_expect_eq(s_count(&engine, "kv_repl_role_none_total"), 1, "the old primary dropped it");
    cr_expect_eq(s_count(&engine, "kv_repl_role_transitions_total"), 3);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* The hand-off does not complete: node-a froze while fenced, was declared
 * down, and its replica node-b (which never applied write 2) was promoted;
 * the move was cancelled. When node-a wakes and learns it, write 2 exists
 * nowhere but on node-a, which drops the partition: it must not be
 * acknowledged (the gateway answers 504: it may or may not have happened,
 * and it did not). */
Test(kv_repl, failover_during_handoff_acknowledges_no_unconfirmed_write) {
    s_engine_t engine;
    s_handoff_with_unconfirmed_write(&engine, "test-repl-failover");
    kv_table_t *table = s_table_abc(3, 2);
    kv_table_set_node_state(table, 0, KV_NODE_DOWN);
    kv_table_set_owner(table, 0, 0, 1); /* failover: node-b promoted, move cancelled */
    kv_repl_on_table(engine.repl, table, 0);
    cr_expect_neq(s_reply_status(&engine, 2, 500), KV_STATUS_OK,
                  "a write no replica ever applied was acknowledged (lost with node-a's copy)");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* node-a is primary, node-b its replica, node-c learning to take over;
 * node-c confirms write 1 before node-b. If node-a dies now, the node the
 * coordinator promotes (kv_plan) must hold write 1 if it was acknowledged:
 * either node-c's word alone is not enough, or node-c is the one promoted
 * (a learner whose move is cancelled drops the partition, and one kept
 * resyncs from the new primary: either way its copy is gone). */
Test(kv_repl, write_confirmed_by_the_learner_alone_survives_a_failover) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-learner", 1);
    kv_table_t *table = s_table_primary_moving(2, 2);
    kv_repl_on_table(engine.repl, table, 0);
    s_write(&engine, 1, "k", 1);
    s_ack(&engine, 2, 1); /* node-c applied it; node-b has not yet */
    int status = s_reply_status(&engine, 1, 300);
    /* What the coordinator does when node-a dies at this point. */
    kv_table_set_node_state(table, 0, KV_NODE_DOWN);
    kv_plan_report_t reports[3] = {
        {.held = 0}, {.held = 1, .live = 1, .seq = 0}, {.held = 1, .live = 1, .seq = 1}};
    kv_plan_facts_t facts = {.reports = reports, .node_count = 3};
    cr_assert_geq(kv_plan_step(table, &facts, 64), 0);
    uint16_t promoted = kv_table_owner(table, 0, 0);
    cr_expect(status != KV_STATUS_OK || promoted == 2,
              "acknowledged on node-c's word alone, then lost: node %u is promoted without it",
              promoted);
    s_ack(&engine, 1, 1); /* node-b applies it too: now it is safe */
    if (status != KV_STATUS_OK)
        cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK, "confirmed, not acknowledged");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* R = 3, two confirmations per write (--write-acks 2): node-b is a replica
 * and also the learner taking over the primary slot (the planner prefers
 * moving a primary to one of its replicas). Its confirmation is one copy,
 * not two. */
Test(kv_repl, a_replica_that_is_also_the_learner_confirms_once) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-twice", 2);
    kv_table_t *table = s_table_primary_moving(3, 1);
    kv_repl_on_table(engine.repl, table, 0);
    s_write(&engine, 1, "k", 1);
    s_ack(&engine, 1, 1);
    int status = s_reply_status(&engine, 1, 300);
    cr_expect_eq(status, -1, "acknowledged with one replica's confirmation counted twice");
    s_ack(&engine, 2, 1);
    if (status == -1)
        cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK, "two confirmations, no answer");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* node-b, the replica, dies while write 1 waits for it. node-c copies the
 * partition (its snapshot holds write 1), confirms, and takes node-b's
 * slot: the write is acknowledged, at the latest when node-c holds the
 * slot, without waiting for another write to carry a new confirmation. */
Test(kv_repl, a_write_waiting_for_a_dead_replica_completes_on_its_successor) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-successor", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    s_write(&engine, 1, "k", 1);
    cr_expect_eq(s_reply_status(&engine, 1, 50), -1, "acknowledged before any replica confirmed");
    kv_table_set_epoch(table, 2); /* node-b down: dropped, node-c learns the partition */
    kv_table_set_node_state(table, 1, KV_NODE_DOWN);
    kv_table_set_owner(table, 0, 1, KV_NO_NODE);
    kv_table_set_learner(table, 0, 2);
    kv_repl_on_table(engine.repl, table, 0);
    s_ack(&engine, 2, 1); /* node-c applied the snapshot, write 1 included */
    int status = s_reply_status(&engine, 1, 100);
    kv_table_set_epoch(table, 3); /* node-c live: it takes the replica slot */
    kv_table_set_owner(table, 0, 1, 2);
    kv_table_set_learner(table, 0, KV_NO_NODE);
    kv_repl_on_table(engine.repl, table, 0);
    if (status != KV_STATUS_OK) status = s_reply_status(&engine, 1, 500);
    cr_expect_eq(status, KV_STATUS_OK, "the write waits for a confirmation that already came");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A read held behind write 1 of its key must not be answered from the
 * store once write 1 is confirmed if write 2 of the same key, applied
 * meanwhile, is not: the answer would show a write a failover can lose.
 * It waits for write 2; a read of another key is answered at once. */
static void s_read(s_engine_t *engine, uint64_t req_id, const char *key) {
    kv_msg_t req = {.type = KV_MSG_GET, .req_id = req_id, .epoch = 1, .partition = 0};
    req.key = (kv_bytes_t){key, strlen(key)};
    kv_repl_read(engine->repl, &engine->identity, &req);
    cr_assert_eq(s_reply_status(engine, req_id, 20), -1, "read not held");
}

Test(kv_repl, a_held_read_never_shows_a_later_unconfirmed_write) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-held", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    s_write(&engine, 1, "k", 1);
    s_read(&engine, 10, "k");     /* held behind write 1 */
    s_read(&engine, 11, "other"); /* held behind write 1 too */
    s_write(&engine, 2, "k", 1);  /* applied, unconfirmed */
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_status(&engine, 11, 500), KV_STATUS_NOT_FOUND, "other key not answered");
    cr_expect_eq(s_reply_status(&engine, 10, 50), -1, "answered while write 2 is unconfirmed");
    s_ack(&engine, 1, 2);
    cr_expect_eq(s_reply_status(&engine, 10, 500), KV_STATUS_OK, "not answered once confirmed");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* --- versions and conditional writes ------------------------------------------ */

/* A SET (value "v") or RM of key on the condition if_version, when has. */
static void s_write_if(s_engine_t *engine, uint8_t type, uint64_t req_id, const char *key, int has,
                       uint64_t if_version) {
    kv_msg_t req = {.type = type, .req_id = req_id, .epoch = 1, .partition = 0};
    req.key = (kv_bytes_t){key, strlen(key)};
    if (type == KV_MSG_SET) req.value = (kv_bytes_t){"v", 1};
    req.has_if_version = (uint8_t)has;
    req.if_version = if_version;
    kv_repl_write(engine->repl, &engine->identity, &req);
}

/* Status of a GET of key answered at once, its version in *version. */
static int s_get_version(s_engine_t *engine, uint64_t req_id, const char *key, uint64_t *version) {
    kv_msg_t req = {.type = KV_MSG_GET, .req_id = req_id, .epoch = 1, .partition = 0};
    req.key = (kv_bytes_t){key, strlen(key)};
    kv_repl_read(engine->repl, &engine->identity, &req);
    return s_reply_version(engine, req_id, 500, version);
}

/* A key's version is the seq of the write that stored it: answered by the
 * SET once confirmed, by GET, kept in the store and carried by UPDATE. */
Test(kv_repl, a_write_gives_its_key_its_seq_as_version) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-version", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    uint64_t version = 0;
    s_write_if(&engine, KV_MSG_SET, 1, "k", 0, 0);
    s_write_if(&engine, KV_MSG_SET, 2, "other", 0, 0);
    s_write_if(&engine, KV_MSG_SET, 3, "k", 0, 0);
    s_ack(&engine, 1, 3);
    cr_expect_eq(s_reply_version(&engine, 1, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 1);
    cr_expect_eq(s_reply_version(&engine, 2, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 2);
    cr_expect_eq(s_reply_version(&engine, 3, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 3, "a later write of the key gets a larger version");
    cr_expect_eq(s_get_version(&engine, 4, "k", &version), KV_STATUS_OK);
    cr_expect_eq(version, 3);
    cr_expect_eq(kv_entry_version(kv_store_get(engine.store, 0, "k", 1)), 3);
    s_write_if(&engine, KV_MSG_RM, 5, "k", 0, 0); /* seq 4 */
    s_write_if(&engine, KV_MSG_SET, 6, "k", 0, 0);
    s_ack(&engine, 1, 5);
    cr_expect_eq(s_reply_version(&engine, 6, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 5, "removed and set again: above every earlier version");
    cr_expect_eq(s_get_version(&engine, 7, "gone", &version), KV_STATUS_NOT_FOUND);
    cr_expect_eq(s_last_seq, 4, "an absent key's witness: the last removal's seq");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* ifVersion: a failing condition writes nothing (no seq spent) and names
 * the current version, 0 when absent; a holding one writes. */
Test(kv_repl, a_condition_decides_the_write) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-condition", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    uint64_t version = 0;
    s_write_if(&engine, KV_MSG_SET, 1, "k", 1, 0); /* only if absent: it is */
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_version(&engine, 1, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 1);
    s_write_if(&engine, KV_MSG_SET, 2, "k", 1, 0); /* only if absent: it is not */
    cr_expect_eq(s_reply_version(&engine, 2, 500, &version), KV_STATUS_CONFLICT);
    cr_expect_eq(version, 1);
    s_write_if(&engine, KV_MSG_SET, 3, "k", 1, 7);
    cr_expect_eq(s_reply_version(&engine, 3, 500, &version), KV_STATUS_CONFLICT);
    cr_expect_eq(version, 1);
    s_write_if(&engine, KV_MSG_RM, 4, "absent", 1, 1);
    cr_expect_eq(s_reply_version(&engine, 4, 500, &version), KV_STATUS_CONFLICT);
    cr_expect_eq(version, 0, "an absent key's version is 0");
    cr_expect_eq(engine.repl->parts[0].seq, 1, "a refused write spent a seq");
    s_write_if(&engine, KV_MSG_SET, 5, "k", 1, 1); /* holds: seq 2 */
    s_write_if(&engine, KV_MSG_RM, 6, "k", 1, 2);  /* holds: seq 3 */
    s_ack(&engine, 1, 3);
    cr_expect_eq(s_reply_version(&engine, 5, 500, &version), KV_STATUS_OK);
    cr_expect_eq(version, 2);
    cr_expect_eq(s_reply_status(&engine, 6, 500), KV_STATUS_OK);
    cr_expect_null(kv_store_get(engine.store, 0, "k", 1));
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A conflict that names a version not confirmed yet is answered once it
 * is: a failover could still lose that version. */
Test(kv_repl, a_conflict_waits_for_the_version_it_shows) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-conflict-held", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    uint64_t version = 0;
    s_write_if(&engine, KV_MSG_SET, 1, "k", 0, 0);  /* seq 1, unconfirmed */
    s_write_if(&engine, KV_MSG_SET, 2, "k", 1, 42); /* conflicts with version 1 */
    cr_expect_eq(s_reply_version(&engine, 2, 50, &version), -1, "answered before confirmed");
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_version(&engine, 2, 500, &version), KV_STATUS_CONFLICT);
    cr_expect_eq(version, 1);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A remove that finds nothing answers 404 from the store. When an
 * unconfirmed removal is why the key is absent, that 404 shows a write a
 * failover can lose: a primary cut off from its replicas took one remove,
 * answered a second one 404 within its lease, and the promoted replica
 * then served the value the first had removed. The 404 waits for the
 * writes applied before it, like a read, and spends no seq. */
Test(kv_repl, a_remove_that_finds_nothing_waits_for_the_removal_it_shows) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-rm-held", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    s_write_if(&engine, KV_MSG_SET, 1, "k", 0, 0); /* seq 1 */
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    s_write_if(&engine, KV_MSG_RM, 2, "k", 0, 0); /* seq 2, unconfirmed */
    s_write_if(&engine, KV_MSG_RM, 3, "k", 0, 0); /* finds nothing */
    cr_expect_eq(s_reply_status(&engine, 3, 50), -1, "404 shows an unconfirmed removal");
    s_ack(&engine, 1, 2);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_OK);
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_NOT_FOUND);
    cr_expect_eq(engine.repl->parts[0].seq, 2, "a remove that found nothing spent a seq");
    s_write_if(&engine, KV_MSG_RM, 4, "k", 0, 0); /* all confirmed: answered at once */
    cr_expect_eq(s_reply_status(&engine, 4, 500), KV_STATUS_NOT_FOUND);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* --- the role state machine ------------------------------------------------- */

/* Every role a table gives is one transition, counted by target state;
 * a table that changes nothing for us is none. */
Test(kv_repl, role_changes_are_counted_by_state) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-roles", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    kv_repl_on_table(engine.repl, table, 0);
    cr_expect_eq(s_count(&engine, "kv_repl_role_primary_total"), 1);
    cr_expect_eq(s_count(&engine, "kv_repl_role_transitions_total"), 1);
    kv_table_set_epoch(table, 2); /* demoted: node-b is primary, we are its replica */
    kv_table_set_owner(table, 0, 0, 1);
    kv_table_set_owner(table, 0, 1, 0);
    kv_repl_on_table(engine.repl, table, 0);
    cr_expect_eq(s_count(&engine, "kv_repl_role_none_total"), 1, "a demoted primary drops first");
    cr_expect_eq(s_count(&engine, "kv_repl_role_syncing_total"), 1);
    cr_expect_eq(s_count(&engine, "kv_repl_role_transitions_total"), 3);
    kv_table_set_epoch(table, 3); /* the partition is taken from us */
    kv_table_set_owner(table, 0, 1, 2);
    kv_repl_on_table(engine.repl, table, 0);
    cr_expect_eq(s_count(&engine, "kv_repl_role_none_total"), 2);
    cr_expect_eq(s_count(&engine, "kv_repl_illegal_transitions_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* SYNCED is legal only while waiting for a snapshot: in NONE it is
 * refused, logged and counted (and asserted in a debug build). */
#ifndef NDEBUG
Test(kv_repl, an_illegal_role_event_is_asserted_in_debug_builds, .signal = SIGABRT) {
#else
Test(kv_repl, an_illegal_role_event_is_refused_and_counted) {
#endif
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-illegal", 1);
    cr_expect_eq(kv_repl_role_execute(engine.repl, 0, KV_REPL_EV_SYNCED), -1);
    cr_expect_eq(s_count(&engine, "kv_repl_illegal_transitions_total"), 1);
    cr_expect_eq(s_count(&engine, "kv_repl_role_transitions_total"), 0);
    s_engine_close(&engine);
}

Test(kv_repl, states_and_events_have_names) {
    for (int state = 0; state < KV_REPL_STATES; state++)
        cr_expect_neq(strcmp(kv_repl_state_name((kv_repl_state_t)state), "?"), 0);
    for (int event = 0; event < KV_REPL_EVENTS; event++)
        cr_expect_neq(strcmp(kv_repl_event_name((kv_repl_event_t)event), "?"), 0);
    cr_expect_str_eq(kv_repl_state_name(KV_REPL_STATES), "?");
}

/* --- two engines: a primary and its replica ---------------------------------- */

/* Serves what arrived on engine's ROUTER from the other engine (ACK,
 * SNAPSHOT_REQ), as the node loop does. */
static void s_serve_router(s_engine_t *engine) {
    for (;;) {
        zmq_msg_t identity, body;
        zmq_msg_init(&identity);
        zmq_msg_init(&body);
        int got = zmq_msg_recv(&identity, engine->router, ZMQ_DONTWAIT) >= 0 &&
                  zmq_msg_recv(&body, engine->router, 0) >= 0;
        kv_msg_t msg;
        if (got && kv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg) == 0) {
            if (msg.type == KV_MSG_ACK) kv_repl_on_ack(engine->repl, &msg);
            if (msg.type == KV_MSG_SNAPSHOT_REQ)
                kv_repl_on_snapshot_req(engine->repl, &identity, &msg);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&identity);
        if (!got) return;
    }
}

/* One turn of a node loop for engine, without waiting. */
static void s_turn(s_engine_t *engine) {
    zmq_pollitem_t items[KV_MAX_NODES + 1];
    s_serve_router(engine);
    int count = kv_repl_poll_items(engine->repl, items);
    for (int i = 0; i < count; i++) items[i].events &= ZMQ_POLLIN;
    if (zmq_poll(items, count, 0) >= 0) kv_repl_on_readable(engine->repl, items, count);
    kv_repl_tick(engine->repl);
}

/* Runs both engines until engine's counter name reaches at least value or
 * ms pass. Returns the counter's value. */
static uint64_t s_run_until(s_engine_t *a, s_engine_t *b, s_engine_t *engine, const char *name,
                            uint64_t value, int ms) {
    int64_t deadline = kv_clock_mono_ms() + ms;
    while (s_count(engine, name) < value && kv_clock_mono_ms() < deadline) {
        s_turn(a);
        s_turn(b);
        zclock_sleep(1);
    }
    return s_count(engine, name);
}

/* The replica copies the partition (one snapshot served, one applied),
 * follows the stream, and confirms writes: the primary acknowledges them.
 * An update that skips a sequence makes it resync: a second snapshot. */
Test(kv_repl, a_replica_syncs_confirms_and_resyncs_on_a_gap, .timeout = 30) {
    s_engine_t a, b;
    kv_table_t *table = s_pair_open(&a, &b, 1, KV_EVICT_NOEVICTION);
    kv_repl_on_table(a.repl, table, 0);
    kv_repl_on_table(b.repl, table, 1);
    cr_assert_eq(s_run_until(&a, &b, &b, "kv_repl_snapshots_applied_total", 1, 10000), 1);
    cr_expect_eq(s_count(&a, "kv_repl_snapshots_served_total"), 1);
    cr_expect_eq(s_count(&b, "kv_repl_role_replica_total"), 1);
    s_write(&a, 1, "k", 1);
    int status = -1;
    for (int i = 0; i < 2000 && status < 0; i++) {
        s_turn(&a);
        s_turn(&b);
        status = s_reply_status(&a, 1, 1);
    }
    cr_expect_eq(status, KV_STATUS_OK, "a write the replica applied was not acknowledged");
    cr_expect_eq(s_count(&b, "kv_repl_resyncs_total"), 0);
    /* node-a's stream skips seq 2: node-b cannot trust what it holds */
    uint8_t topic[4], buf[256];
    kv_repl_topic(0, topic);
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = 0, .op = KV_OP_SET, .seq = 3};
    update.sender = 0;
    update.epoch = 1;
    update.key = (kv_bytes_t){"x", 1};
    update.value = (kv_bytes_t){"y", 1};
    size_t size = kv_msg_encode(&update, buf, sizeof(buf));
    cr_assert_gt(size, 0);
    cr_assert_eq(zmq_send(a.pub, topic, 4, ZMQ_SNDMORE), 4);
    cr_assert_eq(zmq_send(a.pub, buf, size, 0), (int)size);
    cr_expect_eq(s_run_until(&a, &b, &b, "kv_repl_resyncs_total", 1, 10000), 1);
    cr_expect_eq(s_run_until(&a, &b, &b, "kv_repl_snapshots_applied_total", 2, 10000), 2);
    cr_expect_eq(s_count(&a, "kv_repl_snapshots_served_total"), 2);
    cr_expect_eq(s_count(&b, "kv_repl_role_syncing_total"), 2);
    cr_expect_eq(s_count(&b, "kv_repl_illegal_transitions_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&b);
    s_engine_close(&a);
}

/* --- transactions at the primary (kv_repl_tx.c) ------------------------------ */

/* A TX_PREPARE of one op on key (write: KV_TXOP_*), at partition 0, whose
 * record is partition 0 too. */
static void s_prepare(s_engine_t *engine, uint64_t req_id, uint64_t txid, const char *key,
                      uint8_t write, int has_if, uint64_t if_version, int commit) {
    uint8_t ops[256];
    size_t len = 0;
    const kv_msg_txop_t op = {write,
                              (uint8_t)has_if,
                              if_version,
                              1,
                              {key, strlen(key)},
                              write == KV_TXOP_SET ? (kv_bytes_t){"tx", 2} : (kv_bytes_t){NULL, 0}};
    cr_assert_eq(kv_msg_txop_put(ops, sizeof ops, &len, &op), 0);
    kv_msg_t req = {.type = KV_MSG_TX_PREPARE, .req_id = req_id, .epoch = 1, .txid = txid};
    req.commit = (uint8_t)commit;
    req.ops = (kv_bytes_t){(const char *)ops, len};
    kv_repl_tx_prepare(engine->repl, &engine->identity, &req);
}

/* A TX_COMMIT (finish: TX_FINISH with decision) of txid at partition 0. */
static void s_decide(s_engine_t *engine, uint8_t type, uint64_t req_id, uint64_t txid,
                     uint8_t decision) {
    kv_msg_t req = {.type = type, .req_id = req_id, .epoch = 1, .txid = txid, .status = decision};
    if (type == KV_MSG_TX_COMMIT) kv_repl_tx_commit(engine->repl, &engine->identity, &req);
    if (type == KV_MSG_TX_FINISH) kv_repl_tx_finish(engine->repl, &engine->identity, &req);
    if (type == KV_MSG_TX_RESOLVE) kv_repl_tx_resolve(engine->repl, &engine->identity, &req);
}

static void s_tx_engine(s_engine_t *engine, kv_table_t **table, const char *name) {
    s_engine_open(engine, name, 0); /* no confirmations: answers come at once */
    *table = s_table_ab();
    kv_repl_on_table(engine->repl, *table, 0);
}

/* Every way a prepare or a commit refuses: another transaction's intent
 * (gave way), a failed condition (conflict, nothing left behind), a late
 * commit of an aborted transaction; and a plain write of a locked key. */
Test(kv_repl, every_transaction_refusal_leaves_nothing) {
    s_engine_t engine;
    kv_table_t *table;
    s_tx_engine(&engine, &table, "test-repl-tx-refusals");
    s_prepare(&engine, 1, 100, "k", KV_TXOP_SET, 0, 0, 0);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK, "prepared");
    s_prepare(&engine, 2, 200, "k", KV_TXOP_NONE, 0, 0, 0);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_TX_ABORTED, "gave way, no wait");
    s_write_if(&engine, KV_MSG_SET, 3, "k", 0, 0);
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_LOCKED, "a plain write waits");
    s_prepare(&engine, 4, 300, "other", KV_TXOP_SET, 1, 7, 0);
    cr_expect_eq(s_reply_status(&engine, 4, 500), KV_STATUS_CONFLICT, "absent is version 0");
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 1, "the conflict left no intent");
    s_decide(&engine, KV_MSG_TX_FINISH, 5, 100, KV_STATUS_TX_ABORTED);
    cr_expect_eq(s_reply_status(&engine, 5, 500), KV_STATUS_OK);
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 0, "abort removes the intent");
    cr_expect_null(kv_store_get(engine.store, 0, "k", 1), "and writes nothing");
    s_decide(&engine, KV_MSG_TX_COMMIT, 6, 100, 0);
    cr_expect_eq(s_reply_status(&engine, 6, 500), KV_STATUS_TX_ABORTED, "a late commit");
    cr_expect_eq(s_count(&engine, "kv_tx_gave_way_total"), 1);
    cr_expect_eq(s_count(&engine, "kv_tx_conflicts_total"), 1);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* The commit point: the record is written and the intents applied with the
 * versions the prepare gave; a read waiting on the key is answered with the
 * committed value; a question about it is answered commit. */
Test(kv_repl, a_commit_applies_the_intents_and_wakes_waiting_reads) {
    s_engine_t engine;
    kv_table_t *table;
    s_tx_engine(&engine, &table, "test-repl-tx-commit");
    s_prepare(&engine, 1, 100, "k", KV_TXOP_SET, 1, 0, 0);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    uint64_t version = s_last_seq; /* TX_REPLY's seq: the first write's version */
    kv_msg_t read = {.type = KV_MSG_GET, .req_id = 2, .epoch = 1, .key = {"k", 1}};
    kv_repl_read(engine.repl, &engine.identity, &read);
    cr_expect_eq(s_reply_status(&engine, 2, 50), -1, "a read of a key being written waits");
    s_decide(&engine, KV_MSG_TX_COMMIT, 3, 100, 0);
    uint64_t seen = 0;
    cr_expect_eq(s_reply_version(&engine, 2, 500, &seen), KV_STATUS_OK, "woken by the commit");
    cr_expect_eq(seen, version, "the version the prepare gave");
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_OK, "committed");
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 1, "the record stays until forgotten");
    s_decide(&engine, KV_MSG_TX_COMMIT, 4, 100, 0);
    cr_expect_eq(s_reply_status(&engine, 4, 500), KV_STATUS_OK, "a repeated commit: committed");
    s_decide(&engine, KV_MSG_TX_FINISH, 5, 100, KV_STATUS_TX_ABORTED);
    cr_expect_eq(s_reply_status(&engine, 5, 500), KV_STATUS_OK);
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 0, "forgotten");
    cr_expect_not_null(kv_store_get(engine.store, 0, "k", 1), "an abort after the record: no");
    cr_expect_eq(s_count(&engine, "kv_tx_commits_total"), 1);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A one-partition transaction applies at once, leaving no intent. */
Test(kv_repl, a_one_partition_transaction_applies_at_once) {
    s_engine_t engine;
    kv_table_t *table;
    s_tx_engine(&engine, &table, "test-repl-tx-one");
    s_prepare(&engine, 1, 100, "k", KV_TXOP_SET, 1, 0, 1);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 0);
    const kv_entry_t *entry = kv_store_get(engine.store, 0, "k", 1);
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_version(entry), s_last_seq);
    s_prepare(&engine, 2, 200, "k", KV_TXOP_RM, 1, 0, 1);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_CONFLICT, "it exists now");
    cr_expect_eq(s_count(&engine, "kv_tx_one_phase_total"), 1);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* /mget's batch: the keys, as MGET carries them; the answer decoded into
 * *reply, its status, or -1 when none came. */
static int s_mget(s_engine_t *engine, uint64_t req_id, const char *const *keys, uint32_t n,
                  kv_msg_t *reply) {
    uint8_t entries[256];
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        kv_msg_entry_t entry = {.key = {keys[i], strlen(keys[i])}};
        cr_assert_eq(kv_msg_entry_put(entries, sizeof entries, &pos, &entry), 0);
    }
    kv_msg_t req = {.type = KV_MSG_MGET, .req_id = req_id, .epoch = 1, .count = n};
    req.entries = (kv_bytes_t){(const char *)entries, pos};
    kv_repl_mget(engine->repl, &engine->identity, &req);
    return s_reply_msg(engine, req_id, 200, reply);
}

/* A batch is answered whole and at once when every key's partition has
 * all its writes confirmed: values, versions, and (partition, last
 * removal, found) per key, in request order. While a write waits for its
 * replica, the batch is refused LOCKED (nothing held: the gateway reads
 * the keys one by one, and those GETs wait). */
Test(kv_repl, a_batch_read_shows_only_confirmed_writes) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-mget", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    s_write(&engine, 1, "k", 1);
    s_ack(&engine, 1, 1);
    cr_assert_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    const char *keys[] = {"absent", "k"};
    kv_msg_t reply;
    cr_assert_eq(s_mget(&engine, 10, keys, 2, &reply), KV_STATUS_OK);
    cr_expect_eq(reply.type, KV_MSG_MGET_REPLY);
    cr_assert_eq(reply.count, 2);
    cr_assert_eq(reply.items.len, (size_t)2 * KV_MSG_ITEM_SIZE);
    size_t pos = 0;
    kv_msg_entry_t entry;
    cr_assert_eq(kv_msg_entry_next(&reply, &pos, &entry), 0);
    cr_expect(entry.key.len == 6 && memcmp(entry.key.ptr, "absent", 6) == 0);
    cr_expect_eq(kv_msg_item_read(&reply.items, 0).flag, 0, "absent key found");
    cr_assert_eq(kv_msg_entry_next(&reply, &pos, &entry), 0);
    cr_expect(entry.value.len == 1 && entry.value.ptr[0] == 'v');
    cr_expect_eq(entry.meta.version, 1);
    cr_expect_eq(kv_msg_item_read(&reply.items, 1).flag, 1, "k not found");
    s_write(&engine, 2, "other", 1); /* applied, unconfirmed: the partition's reads wait */
    cr_expect_eq(s_mget(&engine, 11, keys, 2, &reply), KV_STATUS_LOCKED);
    s_ack(&engine, 1, 2);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_OK);
    cr_expect_eq(s_mget(&engine, 12, keys, 2, &reply), KV_STATUS_OK, "refused once confirmed");
    cr_expect_eq(kv_msg_item_read(&reply.items, 0).seq, 0, "no removal yet");
    kv_msg_t rm = {.type = KV_MSG_RM, .req_id = 3, .epoch = 1, .partition = 0};
    rm.key = (kv_bytes_t){"k", 1};
    kv_repl_write(engine.repl, &engine.identity, &rm); /* seq 3 */
    s_ack(&engine, 1, 3);
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_OK);
    cr_assert_eq(s_mget(&engine, 13, keys, 2, &reply), KV_STATUS_OK);
    for (size_t i = 0; i < 2; i++) {
        kv_msg_item_t item = kv_msg_item_read(&reply.items, i);
        cr_expect(item.flag == 0 && item.seq == 3, "key %zu: the removal is its witness", i);
    }
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* --- memory (docs/memory.md) ------------------------------------------------- */

/* An ACK from node from carrying its room (has_room) at seq. */
static void s_ack_room(s_engine_t *engine, uint16_t from, uint64_t seq, uint64_t room) {
    uint8_t items[KV_MSG_ITEM_SIZE];
    kv_msg_item_t item = {0, seq, 0};
    kv_msg_item_write(items, 0, &item);
    kv_msg_t ack = {.type = KV_MSG_ACK, .sender = from, .has_room = 1, .room = room};
    ack.items = (kv_bytes_t){(const char *)items, sizeof(items)};
    kv_repl_on_ack(engine->repl, &ack);
}

/* A SET of key with a value of vlen bytes. */
static void s_write_size(s_engine_t *engine, uint64_t req_id, const char *key, size_t vlen) {
    static const char value[KV_MAX_VALUE_BYTES];
    kv_msg_t req = {.type = KV_MSG_SET, .req_id = req_id, .epoch = 1, .partition = 0};
    req.key = (kv_bytes_t){key, strlen(key)};
    req.value = (kv_bytes_t){value, vlen};
    kv_repl_write(engine->repl, &engine->identity, &req);
}

/* At our own limit: a SET that grows is refused NO_MEMORY with nothing
 * applied or published (no seq spent); a smaller value, a removal and
 * /clear go through; room back, writes go through again. */
Test(kv_repl, a_write_past_the_limit_is_refused_and_writes_nothing) {
    s_engine_t engine;
    kv_table_t *table;
    s_tx_engine(&engine, &table, "test-repl-mem-own");
    s_write_size(&engine, 1, "k", 100);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    size_t bytes = kv_store_memory(engine.store);
    engine.repl->config.max_memory = kv_repl_used_memory(engine.repl) + 10; /* 10 bytes left */
    s_write_size(&engine, 2, "new", 10);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_NO_MEMORY, "more than 10 bytes");
    s_write_size(&engine, 3, "k", 200);
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_NO_MEMORY, "a larger value grows");
    cr_expect_null(kv_store_get(engine.store, 0, "new", 3), "nothing written");
    cr_expect_eq(kv_entry_vlen(kv_store_get(engine.store, 0, "k", 1)), 100);
    cr_expect_eq(kv_store_memory(engine.store), bytes);
    cr_expect_eq(engine.repl->parts[0].seq, 1, "nothing published: no seq spent");
    s_write_size(&engine, 4, "k", 50);
    cr_expect_eq(s_reply_status(&engine, 4, 500), KV_STATUS_OK, "a smaller value shrinks");
    engine.repl->config.max_memory = 1; /* far past it */
    s_write_if(&engine, KV_MSG_RM, 5, "k", 0, 0);
    cr_expect_eq(s_reply_status(&engine, 5, 500), KV_STATUS_OK, "a removal is never refused");
    kv_msg_t clear = {.type = KV_MSG_CLEAR, .req_id = 6, .epoch = 1};
    kv_repl_clear(engine.repl, &engine.identity, &clear);
    cr_expect_eq(s_reply_status(&engine, 6, 500), KV_STATUS_OK, "nor is /clear");
    s_prepare(&engine, 7, 100, "t", KV_TXOP_SET, 0, 0, 0);
    cr_expect_eq(s_reply_status(&engine, 7, 500), KV_STATUS_NO_MEMORY);
    cr_expect_eq(kv_store_meta_size(engine.store, 0), 0, "a refused prepare leaves no intent");
    s_prepare(&engine, 8, 101, "t", KV_TXOP_SET, 0, 0, 1);
    cr_expect_eq(s_reply_status(&engine, 8, 500), KV_STATUS_NO_MEMORY, "one phase too");
    s_prepare(&engine, 9, 102, "t", KV_TXOP_RM, 0, 0, 0);
    cr_expect_eq(s_reply_status(&engine, 9, 500), KV_STATUS_OK, "a removing one goes through");
    s_decide(&engine, KV_MSG_TX_FINISH, 10, 102, KV_STATUS_TX_ABORTED);
    cr_expect_eq(s_reply_status(&engine, 10, 500), KV_STATUS_OK);
    engine.repl->config.max_memory = 0; /* no limit */
    s_write_size(&engine, 11, "new", 1000);
    cr_expect_eq(s_reply_status(&engine, 11, 500), KV_STATUS_OK);
    cr_expect_eq(s_count(&engine, "kv_repl_memory_refusals_total"), 4);
    cr_expect_eq(s_count(&engine, "kv_repl_memory_refusals_copy_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* Only primaries decide: a replica reports its room in ACKs, and its
 * primary refuses a write the replica has no room for, though it has room
 * itself; it counts what it sent against that room until the next ACK. */
Test(kv_repl, a_replica_at_its_limit_makes_the_primary_refuse) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-mem-copy", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    /* node-b: room for what "a" costs (its entry, the dict's first table and block) */
    int64_t grow = kv_store_put_growth(engine.store, 0, "a", 1, 100, 0);
    cr_assert_gt(grow, (int64_t)kv_dict_entry_bytes(1, 100, 0), "the dict's first block");
    s_ack_room(&engine, 1, 0, (uint64_t)grow);
    s_write_size(&engine, 1, "a", 100);
    s_write_size(&engine, 2, "b", 1);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_NO_MEMORY,
                 "the second does not fit node-b's room less the first sent");
    s_write_size(&engine, 3, "a", 50);
    s_ack_room(&engine, 1, 2, 0);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    cr_expect_eq(s_reply_status(&engine, 3, 500), KV_STATUS_OK, "a shrinking write is sent");
    s_write_size(&engine, 4, "d", 1);
    cr_expect_eq(s_reply_status(&engine, 4, 500), KV_STATUS_NO_MEMORY, "node-b is full");
    s_write_if(&engine, KV_MSG_RM, 5, "a", 0, 0);
    s_ack_room(&engine, 1, 3, 4096); /* it applied the removal: room again */
    cr_expect_eq(s_reply_status(&engine, 5, 500), KV_STATUS_OK);
    s_write_size(&engine, 6, "d", 1);
    s_ack_room(&engine, 1, 4, 4096);
    cr_expect_eq(s_reply_status(&engine, 6, 500), KV_STATUS_OK);
    cr_expect_eq(engine.repl->parts[0].seq, 4, "the refused writes spent no seq");
    cr_expect_eq(s_count(&engine, "kv_repl_memory_refusals_copy_total"), 2);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* The engine's queues are accounted: a held read counts until answered. */
Test(kv_repl, held_reads_are_counted_in_the_buffer_bytes) {
    s_engine_t engine;
    s_engine_open(&engine, "test-repl-mem-held", 1);
    kv_table_t *table = s_table_ab();
    kv_repl_on_table(engine.repl, table, 0);
    size_t idle = kv_repl_buffer_bytes(engine.repl);
    s_write(&engine, 1, "k", 1);
    cr_expect_gt(kv_repl_buffer_bytes(engine.repl), idle, "a write awaiting confirmation");
    s_read(&engine, 2, "k");
    size_t holding = kv_repl_buffer_bytes(engine.repl);
    cr_expect_geq(holding, idle + sizeof(kv_repl_held_t), "a read held behind it");
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    cr_expect_eq(s_reply_status(&engine, 2, 500), KV_STATUS_OK);
    cr_expect_eq(kv_repl_buffer_bytes(engine.repl), idle, "all answered: back to idle");
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A replica (or learner) whose snapshot does not fit its limit gives the
 * partition up: it holds none of it, says so in its reports (FULL, for
 * the coordinator to cancel the move), asks no more; dropped from the
 * table, it forgets it, and could be sent the partition again. */
Test(kv_repl, a_snapshot_past_the_limit_is_given_up, .timeout = 30) {
    s_engine_t a, b;
    kv_table_t *table = s_pair_open(&a, &b, 0, KV_EVICT_NOEVICTION);
    kv_repl_on_table(a.repl, table, 0);
    char key[16];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%03d", i);
        s_write_size(&a, (uint64_t)i + 1, key, 100);
        cr_assert_eq(s_reply_status(&a, (uint64_t)i + 1, 500), KV_STATUS_OK);
    }
    b.repl->config.max_memory = kv_repl_used_memory(b.repl) + 2000; /* a dozen keys */
    kv_repl_on_table(b.repl, table, 1);
    cr_assert_eq(s_run_until(&a, &b, &b, "kv_repl_snapshots_full_total", 1, 10000), 1);
    cr_expect_eq(kv_store_partition_size(b.store, 0), 0, "it kept part of it");
    cr_expect_eq(s_count(&b, "kv_repl_snapshots_applied_total"), 0);
    cr_expect_leq(kv_repl_used_memory(b.repl), b.repl->config.max_memory);
    size_t len = 0;
    uint8_t *blob = kv_repl_reports(b.repl, &len);
    cr_assert_eq(len, KV_MSG_REPORT_SIZE);
    kv_msg_report_t report = kv_msg_report_read(&(kv_bytes_t){(const char *)blob, len}, 0);
    cr_expect_eq(report.state & (KV_REPORT_FULL | KV_REPORT_LIVE), KV_REPORT_FULL);
    free(blob);
    uint64_t served = s_count(&a, "kv_repl_snapshots_served_total");
    int64_t until = kv_clock_mono_ms() + 2500; /* past the snapshot retry */
    while (kv_clock_mono_ms() < until) {
        s_turn(&a);
        s_turn(&b);
        zclock_sleep(2);
    }
    cr_expect_eq(s_count(&a, "kv_repl_snapshots_served_total"), served, "it asked again");
    kv_table_t *alone = kv_table_dup(table); /* the move cancelled: b holds nothing */
    kv_table_set_owner(alone, 0, 1, KV_NO_NODE);
    kv_table_set_epoch(alone, 2);
    kv_repl_on_table(b.repl, alone, 1);
    cr_expect_eq(b.repl->parts[0].full, 0, "dropped, the partition is forgotten");
    blob = kv_repl_reports(b.repl, &len);
    cr_expect_eq(len, 0);
    free(blob);
    kv_table_destroy(&alone);
    kv_table_destroy(&table);
    s_engine_close(&b);
    s_engine_close(&a);
}

/* --- eviction (kv_repl_evict.c) ------------------------------------------------ */

/* Runs both engines until their stores hold as many keys, or ms pass. */
static void s_run_until_same_size(s_engine_t *a, s_engine_t *b, int ms) {
    int64_t deadline = kv_clock_mono_ms() + ms;
    while (kv_store_size(a->store) != kv_store_size(b->store) && kv_clock_mono_ms() < deadline) {
        s_turn(a);
        s_turn(b);
        zclock_sleep(1);
    }
}

/* The primary evicts as it removes expired keys: each victim an RM with
 * its own seq that the replica applies, so both hold the same keys; a key
 * a transaction holds stays; the replica, and a node without a policy,
 * evict nothing. */
Test(kv_repl, an_eviction_is_a_replicated_removal, .timeout = 30) {
    s_engine_t a, b;
    kv_table_t *table = s_pair_open(&a, &b, 1, KV_EVICT_ALLKEYS_LRU);
    kv_repl_on_table(a.repl, table, 0);
    kv_repl_on_table(b.repl, table, 1);
    cr_assert_eq(s_run_until(&a, &b, &b, "kv_repl_snapshots_applied_total", 1, 10000), 1);
    char key[16];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "key-%02d", i);
        s_write(&a, (uint64_t)i + 1, key, 1);
    }
    s_prepare(&a, 100, 700, "key-00", KV_TXOP_SET, 0, 0, 0); /* holds key-00 */
    s_run_until_same_size(&a, &b, 10000);
    cr_assert_eq(kv_store_size(b.store), 40);
    uint64_t seq = a.repl->parts[0].seq;
    cr_expect_eq(kv_repl_evict(b.repl, 1000), 0, "a replica evicted");
    const kv_entry_t *one = kv_store_get(a.store, 0, "key-01", 6);
    cr_assert_not_null(one);
    size_t bytes = kv_entry_bytes(one);
    cr_expect_geq(kv_repl_evict(a.repl, 3 * bytes), 3 * bytes);
    cr_expect_eq(s_count(&a, "kv_node_evicted_keys_total"), 3);
    cr_expect_eq(kv_store_size(a.store), 37);
    cr_expect_eq(kv_repl_evict(a.repl, SIZE_MAX), 36 * bytes, "all but the held key go");
    cr_expect_eq(s_count(&a, "kv_node_evicted_keys_total"), 39);
    cr_expect_eq(kv_store_size(a.store), 1);
    cr_expect_not_null(kv_store_get(a.store, 0, "key-00", 6), "a key a transaction holds went");
    cr_expect_eq(kv_repl_evict(a.repl, 1), 0, "nothing evictable is left");
    s_run_until_same_size(&a, &b, 10000);
    cr_expect_eq(kv_store_size(b.store), 1, "the replica did not apply the evictions");
    cr_expect_not_null(kv_store_get(b.store, 0, "key-00", 6));
    cr_expect_eq(s_count(&b, "kv_repl_resyncs_total"), 0, "the removals' seqs left a gap");
    cr_expect_eq(s_count(&b, "kv_node_evicted_keys_total"), 0);
    cr_expect_eq(a.repl->parts[0].seq, seq + 39, "each eviction takes its own seq");
    cr_expect_eq(a.repl->parts[0].removed_seq, seq + 39);
    kv_table_destroy(&table);
    s_engine_close(&b);
    s_engine_close(&a);
}

/* A table of partitions partitions: node-a primary of each, node-b its
 * replica. */
static kv_table_t *s_table_ab_of(uint32_t partitions) {
    kv_table_t *table = s_table_abc_of(partitions, 1, 2);
    for (uint32_t p = 0; p < partitions; p++) {
        kv_table_set_owner(table, p, 0, 0);
        kv_table_set_owner(table, p, 1, 1);
    }
    return table;
}

/* A SET of key with a value of vlen bytes in partition. */
static void s_write_in(s_engine_t *engine, uint32_t partition, uint64_t req_id, const char *key,
                       size_t vlen) {
    static const char value[KV_MAX_VALUE_BYTES];
    kv_msg_t req = {.type = KV_MSG_SET, .req_id = req_id, .epoch = 1, .partition = partition};
    req.key = (kv_bytes_t){key, strlen(key)};
    req.value = (kv_bytes_t){value, vlen};
    kv_repl_write(engine->repl, &engine->identity, &req);
}

#define S_EVICT_PARTS 4
#define S_EVICT_KEYS 2000

/* Reads the hot tenth of the first S_EVICT_KEYS keys at the primary (as
 * GETs do: stamps their access clock). */
static void s_read_hot(s_engine_t *engine) {
    char key[16];
    for (int i = 0; i < S_EVICT_KEYS; i += 10) {
        snprintf(key, sizeof key, "key-%05d", i);
        (void)kv_store_get(engine->store, (uint32_t)i % S_EVICT_PARTS, key, strlen(key));
    }
}

/* At its own limit with allkeys-lru, a primary makes room: each write
 * goes through, evicting batches from other partitions than the write's,
 * compacted at once, so the store stays within the limit (one block of
 * overshoot) and its running total right; the keys read all along
 * survive. */
Test(kv_repl, at_the_limit_a_primary_evicts_and_stays_under_it, .timeout = 60) {
    s_engine_t engine;
    s_engine_open_partitions(&engine, "test-repl-evict-own", 0, KV_EVICT_ALLKEYS_LRU,
                             S_EVICT_PARTS);
    kv_table_t *table = s_table_ab_of(S_EVICT_PARTS);
    kv_repl_on_table(engine.repl, table, 0);
    char key[16];
    uint64_t req = 1;
    for (int i = 0; i < S_EVICT_KEYS; i++, req++) {
        snprintf(key, sizeof key, "key-%05d", i);
        s_write_in(&engine, (uint32_t)i % S_EVICT_PARTS, req, key, 100);
        cr_assert_eq(s_reply_status(&engine, req, 500), KV_STATUS_OK);
        if (i % 100 == 99) s_read_hot(&engine);
    }
    uint64_t limit = kv_repl_used_memory(engine.repl) + 10;
    engine.repl->config.max_memory = limit;
    for (int i = S_EVICT_KEYS; i < 3 * S_EVICT_KEYS; i++, req++) {
        snprintf(key, sizeof key, "key-%05d", i);
        s_write_in(&engine, (uint32_t)i % S_EVICT_PARTS, req, key, 100);
        cr_assert_eq(s_reply_status(&engine, req, 500), KV_STATUS_OK, "write %d refused", i);
        cr_assert_not_null(kv_store_get(engine.store, (uint32_t)i % S_EVICT_PARTS, key, 9));
        cr_assert_leq(kv_repl_used_memory(engine.repl), limit + 16384, "past the limit at %d", i);
        if (i % 10 == 0) s_read_hot(&engine);
    }
    int hot = 0;
    for (int i = 0; i < S_EVICT_KEYS; i += 10) {
        snprintf(key, sizeof key, "key-%05d", i);
        hot += kv_store_get(engine.store, (uint32_t)i % S_EVICT_PARTS, key, 9) != NULL;
    }
    cr_expect_geq(hot, 190, "%d of 200 hot keys left", hot);
    uint64_t evicted = s_count(&engine, "kv_node_evicted_keys_total");
    cr_expect_geq(evicted, S_EVICT_KEYS, "%" PRIu64 " evicted for %d written", evicted,
                  2 * S_EVICT_KEYS);
    cr_expect_eq(kv_store_memory(engine.store), kv_store_memory_walk(engine.store));
    cr_expect_eq(s_count(&engine, "kv_repl_memory_refusals_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

/* A replica at its limit: the primary evicts from partitions the replica
 * holds (never the written one), credits the replica's room with what it
 * evicted, and the write goes through (noeviction refuses it:
 * a_replica_at_its_limit_makes_the_primary_refuse). */
Test(kv_repl, a_replica_at_its_limit_makes_the_primary_evict) {
    s_engine_t engine;
    s_engine_open_partitions(&engine, "test-repl-evict-copy", 1, KV_EVICT_ALLKEYS_LRU, 2);
    kv_table_t *table = s_table_ab_of(2);
    kv_repl_on_table(engine.repl, table, 0);
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key-%05d", i);
        s_write_in(&engine, 1, (uint64_t)i + 1, key, 100); /* not confirmed: no matter */
    }
    cr_assert_eq(kv_store_partition_size(engine.store, 1), 100);
    s_ack_room(&engine, 1, 0, 10); /* node-b: 10 bytes left */
    s_write_in(&engine, 0, 1000, "new", 100);
    s_ack(&engine, 1, 1);
    cr_expect_eq(s_reply_status(&engine, 1000, 500), KV_STATUS_OK, "no room made");
    cr_expect_lt(kv_store_partition_size(engine.store, 1), 100, "nothing evicted");
    cr_expect_eq(kv_store_partition_size(engine.store, 0), 1);
    cr_expect_eq(s_count(&engine, "kv_repl_memory_refusals_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}

Test(kv_repl, noeviction_evicts_nothing) {
    s_engine_t engine;
    kv_table_t *table;
    s_tx_engine(&engine, &table, "test-repl-noeviction");
    s_write(&engine, 1, "k", 1);
    cr_assert_eq(s_reply_status(&engine, 1, 500), KV_STATUS_OK);
    cr_expect_eq(kv_repl_evict(engine.repl, 1), 0);
    cr_expect_eq(kv_store_size(engine.store), 1);
    cr_expect_eq(s_count(&engine, "kv_node_evicted_keys_total"), 0);
    kv_table_destroy(&table);
    s_engine_close(&engine);
}
