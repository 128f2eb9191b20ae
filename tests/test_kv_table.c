/*  test_kv_table.c: the routing table and its encoding.
 *
 *  The first tests show how the coordinator builds a table: add nodes, give
 *  each partition a primary and replicas, a learner where a partition moves
 *  (with the hand-off flags), mark nodes active, and ask whether the cluster
 *  is healthy. The rest hold the decoder to its promise: a table
 *  arrives from the network inside HELLO and TABLE messages, so every cut
 *  and every corrupted byte of a frame must be rejected, or decode into a
 *  table that is internally consistent (owners name real nodes, strings are
 *  terminated) and re-encodes to the very same bytes. Each candidate sits in
 *  a malloc'd buffer of exactly its length, so AddressSanitizer reports any
 *  read past the end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_limits.h"
#include "kv_table.h"
#include "kv_wire.h"

/* A table of 8 partitions x 2 slots over three nodes, as the coordinator
 * would build it: primaries spread round robin, replicas on the next node. */
static kv_table_t *s_sample_table(void) {
    kv_table_t *table = kv_table_new(8, 2);
    cr_assert_not_null(table);
    kv_table_set_epoch(table, 0x0102030405060708);
    cr_assert_eq(kv_table_upsert(table, "node-a", "tcp://a:5601", "tcp://a:5602"), 0);
    cr_assert_eq(kv_table_upsert(table, "node-b", "tcp://b:5601", "tcp://b:5602"), 1);
    cr_assert_eq(kv_table_upsert(table, "c", "ipc:///tmp/c", ""), 2);
    kv_table_set_node_state(table, 0, KV_NODE_ACTIVE);
    kv_table_set_node_state(table, 1, KV_NODE_LEAVING);
    kv_table_set_node_state(table, 2, KV_NODE_DOWN);
    for (uint32_t p = 0; p < 7; p++) { /* partition 7's replica stays unset */
        kv_table_set_owner(table, p, 0, (uint16_t)(p % 3));
        kv_table_set_owner(table, p, 1, (uint16_t)((p + 1) % 3));
    }
    kv_table_set_owner(table, 7, 0, 0);
    kv_table_set_learner(table, 1, 0); /* a copy to a new replica */
    kv_table_set_learner(table, 3, 1); /* a fenced primary hand-off */
    kv_table_set_flags(table, 3, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    return table;
}

static uint8_t *s_encode(const kv_table_t *table, size_t *len) {
    size_t size = kv_table_encoded_size(table);
    cr_assert_gt(size, 0);
    uint8_t *frame = malloc(size);
    cr_assert_not_null(frame);
    cr_assert_eq(kv_table_encode(table, frame, size), size);
    *len = size;
    return frame;
}

/* Decodes a copy of frame[0..len) held in a buffer of exactly len bytes. */
static kv_table_t *s_decode_exact(const uint8_t *frame, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len) memcpy(copy, frame, len);
    kv_table_t *table = kv_table_decode(copy, len);
    free(copy);
    return table;
}

/* strcmp, not cr_expect_str_eq: the analyzer then knows both are strings. */
static void s_expect_text(const char *got, const char *want) {
    cr_expect(strcmp(got, want) == 0, "\"%s\", want \"%s\"", got, want);
}

static void s_assert_same(const kv_table_t *got, const kv_table_t *want) {
    cr_assert_eq(kv_table_epoch(got), kv_table_epoch(want));
    cr_assert_eq(kv_table_partitions(got), kv_table_partitions(want));
    cr_assert_eq(kv_table_replication(got), kv_table_replication(want));
    cr_assert_eq(kv_table_node_count(got), kv_table_node_count(want));
    for (uint32_t i = 0; i < kv_table_node_count(want); i++) {
        const kv_table_node_t *a = kv_table_node(got, i), *b = kv_table_node(want, i);
        s_expect_text(a->id, b->id);
        s_expect_text(a->endpoint, b->endpoint);
        s_expect_text(a->pub_endpoint, b->pub_endpoint);
        cr_expect_eq(a->state, b->state);
    }
    for (uint32_t p = 0; p < kv_table_partitions(want); p++) {
        for (uint32_t slot = 0; slot < kv_table_replication(want); slot++)
            cr_expect_eq(kv_table_owner(got, p, slot), kv_table_owner(want, p, slot), "p %u s %u",
                         p, slot);
        cr_expect_eq(kv_table_learner(got, p), kv_table_learner(want, p), "p %u", p);
        cr_expect_eq(kv_table_flags(got, p), kv_table_flags(want, p), "p %u", p);
    }
}

/* What a decoded table promises, whatever bytes it came from. */
static void s_assert_consistent(const kv_table_t *t) {
    cr_assert(kv_table_partitions(t) >= 1 && kv_table_partitions(t) <= KV_PARTITIONS_MAX);
    cr_assert(kv_table_replication(t) >= 1 && kv_table_replication(t) <= KV_REPLICATION_MAX);
    cr_assert_leq(kv_table_node_count(t), KV_MAX_NODES);
    for (uint32_t i = 0; i < kv_table_node_count(t); i++) {
        const kv_table_node_t *node = kv_table_node(t, i);
        cr_assert_not_null(memchr(node->id, '\0', sizeof node->id));
        cr_assert_not_null(memchr(node->endpoint, '\0', sizeof node->endpoint));
        cr_assert_not_null(memchr(node->pub_endpoint, '\0', sizeof node->pub_endpoint));
        cr_assert_neq(node->id[0], '\0', "a node without an id");
        cr_assert_leq(node->state, KV_NODE_LEFT);
    }
    uint32_t nodes = kv_table_node_count(t);
    for (uint32_t p = 0; p < kv_table_partitions(t); p++) {
        for (uint32_t slot = 0; slot < kv_table_replication(t); slot++) {
            uint16_t owner = kv_table_owner(t, p, slot);
            cr_assert(owner == KV_NO_NODE || owner < nodes, "owner %u of %u nodes", owner, nodes);
        }
        uint16_t learner = kv_table_learner(t, p);
        cr_assert(learner == KV_NO_NODE || learner < nodes, "learner %u of %u nodes", learner,
                  nodes);
        cr_assert_eq(kv_table_flags(t, p) & ~KV_PART_FLAGS_ALL, 0);
    }
}

/* The fixed part of an encoding, before the nodes. */
static void s_put_head(kv_writer_t *w, uint32_t partitions, uint32_t replication, uint32_t nodes) {
    kv_wire_put_uint(w, 2, 1); /* version */
    kv_wire_put_uint(w, 9, 8); /* epoch */
    kv_wire_put_uint(w, partitions, 4);
    kv_wire_put_uint(w, replication, 1);
    kv_wire_put_uint(w, nodes, 2);
}

static void s_put_node(kv_writer_t *w, const char *id, size_t idlen, uint8_t state) {
    kv_wire_put_str(w, id, idlen, 1);
    kv_wire_put_str(w, "tcp://x:1", 9, 2);
    kv_wire_put_str(w, "", 0, 2);
    kv_wire_put_uint(w, state, 1);
}

/* One partition of a table with one owner slot. */
static void s_put_partition(kv_writer_t *w, uint16_t owner, uint16_t learner, uint8_t flags) {
    kv_wire_put_uint(w, owner, 2);
    kv_wire_put_uint(w, learner, 2);
    kv_wire_put_uint(w, flags, 1);
}

//  --------------------------------------------------------------------------
//  Building a table

Test(kv_table, new_rejects_bad_arguments) {
    cr_expect_null(kv_table_new(0, 1), "no partitions");
    cr_expect_null(kv_table_new(KV_PARTITIONS_MAX + 1, 1), "too many partitions");
    cr_expect_null(kv_table_new(UINT32_MAX, 1));
    cr_expect_null(kv_table_new(16, 0), "no owner slots");
    cr_expect_null(kv_table_new(16, KV_REPLICATION_MAX + 1), "too many replicas");
    kv_table_t *largest = kv_table_new(KV_PARTITIONS_MAX, KV_REPLICATION_MAX);
    cr_expect_not_null(largest);
    kv_table_destroy(&largest);
}

Test(kv_table, new_table_is_empty_and_unassigned) {
    kv_table_t *table = kv_table_new(16, 3);
    cr_assert_not_null(table);
    cr_expect_eq(kv_table_epoch(table), 0);
    cr_expect_eq(kv_table_partitions(table), 16);
    cr_expect_eq(kv_table_replication(table), 3);
    cr_expect_eq(kv_table_node_count(table), 0);
    for (uint32_t p = 0; p < 16; p++) {
        for (uint32_t slot = 0; slot < 3; slot++)
            cr_expect_eq(kv_table_owner(table, p, slot), KV_NO_NODE);
        cr_expect_eq(kv_table_learner(table, p), KV_NO_NODE, "nothing moves");
        cr_expect_eq(kv_table_flags(table, p), 0);
    }
    cr_expect_not(kv_table_healthy(table));
    kv_table_destroy(&table);
}

Test(kv_table, destroy_sets_null_and_is_safe_twice) {
    kv_table_t *table = kv_table_new(4, 1);
    kv_table_destroy(&table);
    cr_expect_null(table);
    kv_table_destroy(&table);
    kv_table_destroy(NULL);
}

Test(kv_table, upsert_adds_nodes_in_order_and_find_returns_their_index) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_find(table, "node-a"), -1, "empty table");
    cr_expect_eq(kv_table_upsert(table, "node-a", "tcp://a:1", "tcp://a:2"), 0);
    cr_expect_eq(kv_table_upsert(table, "node-b", "tcp://b:1", "tcp://b:2"), 1);
    cr_expect_eq(kv_table_node_count(table), 2);
    cr_expect_eq(kv_table_find(table, "node-a"), 0);
    cr_expect_eq(kv_table_find(table, "node-b"), 1);
    cr_expect_eq(kv_table_find(table, "node-"), -1, "ids match whole");
    cr_expect_eq(kv_table_find(table, "node-c"), -1);
    cr_expect_eq(kv_table_node_state(table, 1), KV_NODE_JOINING, "new nodes join first");
    s_expect_text(kv_table_node(table, 1)->endpoint, "tcp://b:1");
    s_expect_text(kv_table_node(table, 1)->pub_endpoint, "tcp://b:2");
    kv_table_destroy(&table);
}

/* A node that restarts on new ports keeps its index, and so its partitions
 * and state. */
Test(kv_table, upsert_existing_updates_endpoints_only) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_assert_eq(kv_table_upsert(table, "node-a", "tcp://a:1", "tcp://a:2"), 0);
    kv_table_set_node_state(table, 0, KV_NODE_ACTIVE);
    kv_table_set_owner(table, 3, 0, 0);
    cr_expect_eq(kv_table_upsert(table, "node-a", "tcp://a:7", "tcp://a:8"), 0);
    cr_expect_eq(kv_table_node_count(table), 1);
    s_expect_text(kv_table_node(table, 0)->endpoint, "tcp://a:7");
    s_expect_text(kv_table_node(table, 0)->pub_endpoint, "tcp://a:8");
    cr_expect_eq(kv_table_node_state(table, 0), KV_NODE_ACTIVE);
    cr_expect_eq(kv_table_owner(table, 3, 0), 0);
    kv_table_destroy(&table);
}

Test(kv_table, upsert_rejects_empty_id_and_long_strings) {
    char id[KV_NODE_ID_MAX + 2];
    char endpoint[KV_ENDPOINT_MAX + 2];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    memset(endpoint, 'e', sizeof endpoint - 1);
    endpoint[sizeof endpoint - 1] = '\0';
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_upsert(table, "", "tcp://a:1", ""), -1, "empty id");
    cr_expect_eq(kv_table_upsert(table, id, "tcp://a:1", ""), -1, "id of 65 bytes");
    cr_expect_eq(kv_table_upsert(table, "a", endpoint, ""), -1, "endpoint of 257 bytes");
    cr_expect_eq(kv_table_upsert(table, "a", "", endpoint), -1, "pub endpoint of 257 bytes");
    cr_expect_eq(kv_table_node_count(table), 0, "nothing was added");

    id[KV_NODE_ID_MAX] = '\0';
    endpoint[KV_ENDPOINT_MAX] = '\0';
    cr_expect_eq(kv_table_upsert(table, id, endpoint, endpoint), 0, "the longest strings fit");
    cr_expect_eq(strlen(kv_table_node(table, 0)->id), KV_NODE_ID_MAX);
    cr_expect_eq(strlen(kv_table_node(table, 0)->pub_endpoint), KV_ENDPOINT_MAX);
    kv_table_destroy(&table);
}

Test(kv_table, upsert_into_full_table_fails_but_updates_still_work) {
    kv_table_t *table = kv_table_new(4, 1);
    char id[16];
    for (int i = 0; i < KV_MAX_NODES; i++) {
        snprintf(id, sizeof id, "n%d", i);
        cr_assert_eq(kv_table_upsert(table, id, "tcp://x:1", ""), i);
    }
    cr_expect_eq(kv_table_upsert(table, "one-more", "tcp://x:1", ""), -1);
    cr_expect_eq(kv_table_node_count(table), KV_MAX_NODES);
    cr_expect_eq(kv_table_upsert(table, "n17", "tcp://y:2", ""), 17);
    s_expect_text(kv_table_node(table, 17)->endpoint, "tcp://y:2");
    kv_table_destroy(&table);
}

Test(kv_table, epoch_reads_back_what_was_set) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_epoch(table), 0, "a new table");
    kv_table_set_epoch(table, 7);
    cr_expect_eq(kv_table_epoch(table), 7);
    kv_table_set_epoch(table, kv_table_epoch(table) + 1); /* how the coordinator bumps it */
    cr_expect_eq(kv_table_epoch(table), 8);
    kv_table_set_epoch(table, UINT64_MAX);
    cr_expect_eq(kv_table_epoch(table), UINT64_MAX, "all 64 bits");
    kv_table_destroy(&table);
}

Test(kv_table, partitions_and_replication_are_fixed_at_creation) {
    kv_table_t *smallest = kv_table_new(1, 1);
    kv_table_t *largest = kv_table_new(KV_PARTITIONS_MAX, KV_REPLICATION_MAX);
    cr_expect_eq(kv_table_partitions(smallest), 1);
    cr_expect_eq(kv_table_replication(smallest), 1);
    cr_expect_eq(kv_table_partitions(largest), KV_PARTITIONS_MAX);
    cr_expect_eq(kv_table_replication(largest), KV_REPLICATION_MAX);
    kv_table_upsert(largest, "a", "tcp://a:1", "");
    kv_table_set_epoch(largest, 3);
    cr_expect_eq(kv_table_partitions(largest), KV_PARTITIONS_MAX, "nodes and epochs leave P");
    cr_expect_eq(kv_table_replication(largest), KV_REPLICATION_MAX);
    kv_table_destroy(&smallest);
    kv_table_destroy(&largest);
}

Test(kv_table, node_count_counts_new_ids_only) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_node_count(table), 0);
    kv_table_upsert(table, "a", "tcp://a:1", "");
    kv_table_upsert(table, "b", "tcp://b:1", "");
    kv_table_upsert(table, "a", "tcp://a:2", ""); /* an update */
    kv_table_upsert(table, "", "tcp://c:1", "");  /* refused */
    cr_expect_eq(kv_table_node_count(table), 2);
    kv_table_destroy(&table);
}

Test(kv_table, node_is_null_out_of_range) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_null(kv_table_node(table, 0), "no nodes yet");
    kv_table_upsert(table, "a", "tcp://a:1", "tcp://a:2");
    const kv_table_node_t *node = kv_table_node(table, 0);
    cr_assert_not_null(node);
    s_expect_text(node->id, "a");
    s_expect_text(node->endpoint, "tcp://a:1");
    s_expect_text(node->pub_endpoint, "tcp://a:2");
    cr_expect_eq(node->state, KV_NODE_JOINING);
    cr_expect_null(kv_table_node(table, 1), "one past the last node");
    cr_expect_null(kv_table_node(table, KV_MAX_NODES));
    cr_expect_null(kv_table_node(table, KV_NO_NODE), "an unset owner slot");
    cr_expect_null(kv_table_node(table, UINT32_MAX));
    kv_table_upsert(table, "a", "tcp://a:3", "");
    s_expect_text(node->endpoint, "tcp://a:3"); /* the record is updated in place */
    kv_table_destroy(&table);
}

Test(kv_table, node_state_reads_left_out_of_range) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_node_state(table, 0), KV_NODE_LEFT, "no nodes yet");
    kv_table_upsert(table, "a", "tcp://a:1", "");
    cr_expect_eq(kv_table_node_state(table, 0), KV_NODE_JOINING);
    cr_expect_eq(kv_table_node_state(table, 1), KV_NODE_LEFT);
    cr_expect_eq(kv_table_node_state(table, KV_NO_NODE), KV_NODE_LEFT, "an unset owner slot");
    cr_expect_eq(kv_table_node_state(table, UINT32_MAX), KV_NODE_LEFT);
    kv_table_destroy(&table);
}

Test(kv_table, set_node_state_rejects_bad_index_and_state) {
    kv_table_t *table = kv_table_new(4, 1);
    cr_expect_eq(kv_table_set_node_state(table, 0, KV_NODE_ACTIVE), -1, "no nodes yet");
    kv_table_upsert(table, "a", "tcp://a:1", "");
    for (int state = KV_NODE_JOINING; state <= KV_NODE_LEFT; state++) {
        cr_expect_eq(kv_table_set_node_state(table, 0, state), 0, "%s", kv_node_state_name(state));
        cr_expect_eq(kv_table_node_state(table, 0), state);
        cr_expect_eq(kv_table_node(table, 0)->state, state);
    }
    kv_table_set_node_state(table, 0, KV_NODE_ACTIVE);
    cr_expect_eq(kv_table_set_node_state(table, 1, KV_NODE_DOWN), -1, "past the last node");
    cr_expect_eq(kv_table_set_node_state(table, UINT32_MAX, KV_NODE_DOWN), -1);
    cr_expect_eq(kv_table_set_node_state(table, 0, KV_NODE_LEFT + 1), -1, "not a state");
    cr_expect_eq(kv_table_set_node_state(table, 0, -1), -1);
    cr_expect_eq(kv_table_node_state(table, 0), KV_NODE_ACTIVE, "refusals change nothing");
    cr_expect_eq(kv_table_node_count(table), 1);
    kv_table_destroy(&table);
}

Test(kv_table, owners_are_set_per_partition_and_slot) {
    kv_table_t *table = kv_table_new(4, 3);
    kv_table_set_owner(table, 2, 0, 5);
    kv_table_set_owner(table, 2, 2, 6);
    cr_expect_eq(kv_table_owner(table, 2, 0), 5);
    cr_expect_eq(kv_table_owner(table, 2, 1), KV_NO_NODE);
    cr_expect_eq(kv_table_owner(table, 2, 2), 6);
    cr_expect_eq(kv_table_owner(table, 1, 0), KV_NO_NODE, "neighbours untouched");
    cr_expect_eq(kv_table_owner(table, 3, 0), KV_NO_NODE);
    kv_table_set_owner(table, 2, 0, KV_NO_NODE);
    cr_expect_eq(kv_table_owner(table, 2, 0), KV_NO_NODE, "unassigning");
    kv_table_destroy(&table);
}

Test(kv_table, owner_out_of_range_is_no_node_and_set_is_ignored) {
    kv_table_t *table = kv_table_new(4, 2);
    kv_table_set_owner(table, 4, 0, 1);
    kv_table_set_owner(table, 0, 2, 1);
    kv_table_set_owner(table, UINT32_MAX, UINT32_MAX, 1);
    cr_expect_eq(kv_table_owner(table, 4, 0), KV_NO_NODE);
    cr_expect_eq(kv_table_owner(table, 0, 2), KV_NO_NODE);
    cr_expect_eq(kv_table_owner(table, UINT32_MAX, 0), KV_NO_NODE);
    for (uint32_t p = 0; p < 4; p++)
        for (uint32_t slot = 0; slot < 2; slot++)
            cr_expect_eq(kv_table_owner(table, p, slot), KV_NO_NODE, "p %u s %u", p, slot);
    kv_table_destroy(&table);
}

Test(kv_table, learner_and_flags_are_set_per_partition) {
    kv_table_t *table = kv_table_new(4, 2);
    kv_table_set_learner(table, 1, 3);
    kv_table_set_flags(table, 1, KV_PART_MOVE_PRIMARY);
    cr_expect_eq(kv_table_learner(table, 1), 3);
    cr_expect_eq(kv_table_flags(table, 1), KV_PART_MOVE_PRIMARY);
    cr_expect_eq(kv_table_learner(table, 0), KV_NO_NODE, "neighbours untouched");
    cr_expect_eq(kv_table_learner(table, 2), KV_NO_NODE);
    cr_expect_eq(kv_table_flags(table, 2), 0);
    kv_table_set_flags(table, 1, KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    cr_expect_eq(kv_table_flags(table, 1), KV_PART_FLAGS_ALL);
    kv_table_set_learner(table, 1, KV_NO_NODE);
    kv_table_set_flags(table, 1, 0);
    cr_expect_eq(kv_table_learner(table, 1), KV_NO_NODE, "the move is over");
    cr_expect_eq(kv_table_flags(table, 1), 0);
    kv_table_destroy(&table);
}

Test(kv_table, learner_and_flags_out_of_range_read_empty_and_set_is_ignored) {
    kv_table_t *table = kv_table_new(4, 2);
    kv_table_set_learner(table, 4, 1);
    kv_table_set_flags(table, 4, KV_PART_FENCED);
    kv_table_set_learner(table, UINT32_MAX, 1);
    kv_table_set_flags(table, UINT32_MAX, KV_PART_FENCED);
    cr_expect_eq(kv_table_learner(table, 4), KV_NO_NODE);
    cr_expect_eq(kv_table_flags(table, 4), 0);
    cr_expect_eq(kv_table_learner(table, UINT32_MAX), KV_NO_NODE);
    for (uint32_t p = 0; p < 4; p++) {
        cr_expect_eq(kv_table_learner(table, p), KV_NO_NODE, "p %u", p);
        cr_expect_eq(kv_table_flags(table, p), 0, "p %u", p);
    }
    kv_table_destroy(&table);
}

/* What a node asks of a table: am I primary, replica, learner, or none? */
Test(kv_table, role_tells_primary_replica_learner_or_none) {
    kv_table_t *table = kv_table_new(4, 3);
    kv_table_set_owner(table, 2, 0, 5);
    kv_table_set_owner(table, 2, 1, 6);
    kv_table_set_owner(table, 2, 2, 7);
    kv_table_set_learner(table, 2, 8);
    cr_expect_eq(kv_table_role(table, 2, 5), 0, "primary");
    cr_expect_eq(kv_table_role(table, 2, 6), 1, "first replica");
    cr_expect_eq(kv_table_role(table, 2, 7), 2, "second replica");
    cr_expect_eq(kv_table_role(table, 2, 8), 3, "learner: R");
    cr_expect_eq(kv_table_role(table, 2, 9), -1, "none");
    cr_expect_eq(kv_table_role(table, 1, 5), -1, "other partitions are separate");
    cr_expect_eq(kv_table_role(table, 2, KV_NO_NODE), -1, "empty slots are nobody's");
    cr_expect_eq(kv_table_role(table, 4, 5), -1, "partition out of range");

    /* A replica that learns to become primary answers as the replica. */
    kv_table_set_learner(table, 2, 6);
    kv_table_set_flags(table, 2, KV_PART_MOVE_PRIMARY);
    cr_expect_eq(kv_table_role(table, 2, 6), 1);
    kv_table_destroy(&table);
}

Test(kv_table, counts_primaries_and_replicas) {
    kv_table_t *table = s_sample_table();
    /* Primaries: p%3 for p<7, and node 0 for p 7. Replicas: (p+1)%3 for p<7. */
    cr_expect_eq(kv_table_count_primaries(table, 0), 4); /* 0, 3, 6, 7 */
    cr_expect_eq(kv_table_count_primaries(table, 1), 2); /* 1, 4 */
    cr_expect_eq(kv_table_count_primaries(table, 2), 2); /* 2, 5 */
    cr_expect_eq(kv_table_count_replicas(table, 0), 2);  /* 2, 5 */
    cr_expect_eq(kv_table_count_replicas(table, 1), 3);  /* 0, 3, 6 */
    cr_expect_eq(kv_table_count_replicas(table, 2), 2);  /* 1, 4 */
    cr_expect_eq(kv_table_count_replicas(table, KV_NO_NODE), 1, "partition 7's replica");
    cr_expect_eq(kv_table_count_primaries(table, 9), 0);
    kv_table_destroy(&table);
}

Test(kv_table, replication_one_has_no_replicas) {
    kv_table_t *table = kv_table_new(4, 1);
    kv_table_upsert(table, "a", "tcp://a:1", "");
    for (uint32_t p = 0; p < 4; p++) kv_table_set_owner(table, p, 0, 0);
    cr_expect_eq(kv_table_count_primaries(table, 0), 4);
    cr_expect_eq(kv_table_count_replicas(table, 0), 0);
    kv_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  Health

static kv_table_t *s_two_active_nodes(void) {
    kv_table_t *table = kv_table_new(4, 2);
    kv_table_upsert(table, "a", "tcp://a:1", "");
    kv_table_upsert(table, "b", "tcp://b:1", "");
    kv_table_set_node_state(table, 0, KV_NODE_ACTIVE);
    kv_table_set_node_state(table, 1, KV_NODE_ACTIVE);
    for (uint32_t p = 0; p < 4; p++) {
        kv_table_set_owner(table, p, 0, (uint16_t)(p % 2));
        kv_table_set_owner(table, p, 1, (uint16_t)((p + 1) % 2));
    }
    return table;
}

Test(kv_table, healthy_when_every_primary_is_active) {
    kv_table_t *table = s_two_active_nodes();
    cr_expect(kv_table_healthy(table));
    kv_table_destroy(&table);
}

Test(kv_table, unhealthy_with_an_unassigned_partition) {
    kv_table_t *table = s_two_active_nodes();
    kv_table_set_owner(table, 3, 0, KV_NO_NODE);
    cr_expect_not(kv_table_healthy(table));
    kv_table_destroy(&table);
}

Test(kv_table, unhealthy_with_an_owner_index_past_the_nodes) {
    kv_table_t *table = s_two_active_nodes();
    kv_table_set_owner(table, 0, 0, 2);
    cr_expect_not(kv_table_healthy(table));
    kv_table_destroy(&table);
}

Test(kv_table, unhealthy_when_a_primary_is_not_active) {
    const uint8_t states[] = {KV_NODE_DOWN, KV_NODE_JOINING, KV_NODE_LEAVING, KV_NODE_LEFT};
    for (size_t i = 0; i < sizeof states; i++) {
        kv_table_t *table = s_two_active_nodes();
        kv_table_set_node_state(table, 1, states[i]);
        cr_expect_not(kv_table_healthy(table), "primary %s", kv_node_state_name(states[i]));
        kv_table_destroy(&table);
    }
}

/* Replicas do not count: a down replica leaves reads and writes possible. */
Test(kv_table, healthy_with_a_down_replica) {
    kv_table_t *table = s_two_active_nodes();
    kv_table_upsert(table, "c", "tcp://c:1", "");
    kv_table_set_node_state(table, 2, KV_NODE_DOWN);
    for (uint32_t p = 0; p < 4; p++) kv_table_set_owner(table, p, 1, 2);
    cr_expect(kv_table_healthy(table));
    kv_table_destroy(&table);
}

Test(kv_table, dup_is_an_independent_copy) {
    kv_table_t *table = s_sample_table();
    kv_table_t *copy = kv_table_dup(table);
    cr_assert_not_null(copy);
    s_assert_same(copy, table);
    cr_expect_neq(kv_table_node(copy, 0), kv_table_node(table, 0), "nodes are copied");

    kv_table_set_epoch(copy, kv_table_epoch(copy) + 1);
    kv_table_set_owner(copy, 0, 0, 2);
    kv_table_set_learner(copy, 3, KV_NO_NODE);
    kv_table_set_flags(copy, 3, 0);
    kv_table_upsert(copy, "node-d", "tcp://d:1", "");
    kv_table_set_node_state(copy, 0, KV_NODE_DOWN);
    kv_table_upsert(copy, "node-b", "changed", "");
    cr_expect_eq(kv_table_epoch(table), 0x0102030405060708);
    cr_expect_eq(kv_table_owner(table, 0, 0), 0);
    cr_expect_eq(kv_table_learner(table, 3), 1);
    cr_expect_eq(kv_table_flags(table, 3), KV_PART_MOVE_PRIMARY | KV_PART_FENCED);
    cr_expect_eq(kv_table_node_count(table), 3);
    cr_expect_eq(kv_table_node_state(table, 0), KV_NODE_ACTIVE);
    s_expect_text(kv_table_node(table, 1)->endpoint, "tcp://b:5601");

    kv_table_destroy(&table);
    cr_expect_eq(kv_table_owner(copy, 0, 0), 2, "the copy outlives the original");
    kv_table_destroy(&copy);
}

//  --------------------------------------------------------------------------
//  Encoding

Test(kv_table, round_trip_keeps_everything) {
    kv_table_t *table = s_sample_table();
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    kv_table_t *decoded = s_decode_exact(frame, len);
    cr_assert_not_null(decoded);
    s_assert_same(decoded, table);
    kv_table_destroy(&decoded);
    kv_table_destroy(&table);
    free(frame);
}

Test(kv_table, round_trip_of_an_empty_table) {
    kv_table_t *table = kv_table_new(1, 1);
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    cr_expect_eq(len, 1 + 8 + 4 + 1 + 2 + (2 + 2 + 1), "head, then one owner, learner, flags");
    kv_table_t *decoded = s_decode_exact(frame, len);
    cr_assert_not_null(decoded);
    s_assert_same(decoded, table);
    kv_table_destroy(&decoded);
    kv_table_destroy(&table);
    free(frame);
}

/* The largest table the limits allow: every partition, slot and node. */
Test(kv_table, round_trip_of_the_largest_table) {
    kv_table_t *table = kv_table_new(KV_PARTITIONS_MAX, KV_REPLICATION_MAX);
    char id[KV_NODE_ID_MAX + 1];
    char endpoint[KV_ENDPOINT_MAX + 1];
    memset(endpoint, 'e', KV_ENDPOINT_MAX);
    endpoint[KV_ENDPOINT_MAX] = '\0';
    for (int i = 0; i < KV_MAX_NODES; i++) {
        memset(id, 'a' + i % 26, KV_NODE_ID_MAX);
        id[KV_NODE_ID_MAX - 2] = (char)(1 + i / 16); /* unique, never NUL */
        id[KV_NODE_ID_MAX - 1] = (char)(1 + i % 16);
        id[KV_NODE_ID_MAX] = '\0';
        cr_assert_eq(kv_table_upsert(table, id, endpoint, endpoint), i);
        kv_table_set_node_state(table, (uint32_t)i, i % (KV_NODE_LEFT + 1));
    }
    for (uint32_t p = 0; p < KV_PARTITIONS_MAX; p++) {
        for (uint32_t slot = 0; slot < KV_REPLICATION_MAX; slot++)
            kv_table_set_owner(table, p, slot, (uint16_t)((p + slot) % KV_MAX_NODES));
        kv_table_set_learner(table, p, (uint16_t)((p + KV_REPLICATION_MAX) % KV_MAX_NODES));
        kv_table_set_flags(table, p, (uint8_t)(p % (KV_PART_FLAGS_ALL + 1)));
    }
    kv_table_set_epoch(table, UINT64_MAX);
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    kv_table_t *decoded = s_decode_exact(frame, len);
    cr_assert_not_null(decoded);
    s_assert_same(decoded, table);
    kv_table_destroy(&decoded);
    kv_table_destroy(&table);
    free(frame);
}

Test(kv_table, encode_into_too_small_buffer_returns_zero) {
    kv_table_t *table = s_sample_table();
    size_t size = kv_table_encoded_size(table);
    for (size_t cap = 0; cap < size; cap++) {
        uint8_t *buf = malloc(cap ? cap : 1);
        cr_assert_eq(kv_table_encode(table, buf, cap), 0, "%zu of %zu bytes", cap, size);
        free(buf);
    }
    cr_expect_eq(kv_table_encode(table, NULL, size), 0, "no buffer");
    kv_table_destroy(&table);
}

Test(kv_table, decode_null_fails) {
    cr_expect_null(kv_table_decode(NULL, 0));
    cr_expect_null(kv_table_decode(NULL, 100));
}

Test(kv_table, every_truncation_fails) {
    kv_table_t *table = s_sample_table();
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    for (size_t cut = 0; cut < len; cut++)
        cr_assert_null(s_decode_exact(frame, cut), "cut to %zu of %zu bytes", cut, len);
    kv_table_destroy(&table);
    free(frame);
}

Test(kv_table, trailing_byte_fails) {
    kv_table_t *table = s_sample_table();
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, frame, len);
    longer[len] = 0;
    cr_expect_null(s_decode_exact(longer, len + 1));
    free(longer);
    kv_table_destroy(&table);
    free(frame);
}

Test(kv_table, wrong_version_fails) {
    kv_table_t *table = s_sample_table();
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    for (int version = 0; version < 256; version++) {
        if (version == 2) continue;
        frame[0] = (uint8_t)version;
        cr_assert_null(kv_table_decode(frame, len), "version %d", version);
    }
    kv_table_destroy(&table);
    free(frame);
}

Test(kv_table, partitions_or_replication_out_of_range_fail) {
    const uint32_t bad[][2] = {
        {0, 1}, {1, 0}, {KV_PARTITIONS_MAX + 1, 1}, {1, KV_REPLICATION_MAX + 1}, {1, 255}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t slots = (size_t)bad[i][0] * bad[i][1];
        size_t cap = 16 + 2 * slots + 3 * (size_t)bad[i][0];
        uint8_t *frame = malloc(cap);
        kv_writer_t w = {frame, cap, 0, 0};
        s_put_head(&w, bad[i][0], bad[i][1], 0);
        for (uint32_t p = 0; p < bad[i][0]; p++) {
            for (uint32_t s = 0; s < bad[i][1]; s++) kv_wire_put_uint(&w, KV_NO_NODE, 2);
            kv_wire_put_uint(&w, KV_NO_NODE, 2);
            kv_wire_put_uint(&w, 0, 1);
        }
        cr_assert_not(w.failed);
        cr_expect_null(s_decode_exact(frame, w.pos), "P %u R %u", bad[i][0], bad[i][1]);
        free(frame);
    }
}

Test(kv_table, more_nodes_than_the_limit_fail) {
    size_t cap = 16 + (KV_MAX_NODES + 1) * 32 + 2;
    uint8_t *frame = malloc(cap);
    kv_writer_t w = {frame, cap, 0, 0};
    s_put_head(&w, 1, 1, KV_MAX_NODES + 1);
    char id[8];
    for (int i = 0; i <= KV_MAX_NODES; i++)
        s_put_node(&w, id, (size_t)snprintf(id, sizeof id, "n%d", i), KV_NODE_ACTIVE);
    s_put_partition(&w, 0, KV_NO_NODE, 0);
    cr_assert_not(w.failed);
    cr_expect_null(s_decode_exact(frame, w.pos), "257 nodes");

    w = (kv_writer_t){frame, cap, 0, 0}; /* the same with a node count of 0xFFFF */
    s_put_head(&w, 1, 1, 0xFFFF);
    s_put_partition(&w, 0, KV_NO_NODE, 0);
    cr_expect_null(s_decode_exact(frame, w.pos), "65535 nodes");
    free(frame);
}

/* Owners must name one of the table's nodes, or be KV_NO_NODE. */
Test(kv_table, owner_index_out_of_range_fails) {
    const uint16_t owners[] = {0, 1, 2, 3, 255, 256, 0xFFFE, KV_NO_NODE};
    uint8_t frame[128];
    for (size_t i = 0; i < sizeof owners / sizeof owners[0]; i++) {
        kv_writer_t w = {frame, sizeof frame, 0, 0};
        s_put_head(&w, 2, 1, 2);
        s_put_node(&w, "a", 1, KV_NODE_ACTIVE);
        s_put_node(&w, "b", 1, KV_NODE_ACTIVE);
        s_put_partition(&w, 0, KV_NO_NODE, 0);
        s_put_partition(&w, owners[i], KV_NO_NODE, 0);
        cr_assert_not(w.failed);
        kv_table_t *table = s_decode_exact(frame, w.pos);
        int valid = owners[i] < 2 || owners[i] == KV_NO_NODE;
        cr_expect_eq(table != NULL, valid, "owner %u of 2 nodes", owners[i]);
        if (table) cr_expect_eq(kv_table_owner(table, 1, 0), owners[i]);
        kv_table_destroy(&table);
    }
}

/* A learner, like an owner, names one of the table's nodes or nobody. */
Test(kv_table, learner_index_out_of_range_fails) {
    const uint16_t learners[] = {0, 1, 2, 3, 255, 256, 0xFFFE, KV_NO_NODE};
    uint8_t frame[128];
    for (size_t i = 0; i < sizeof learners / sizeof learners[0]; i++) {
        kv_writer_t w = {frame, sizeof frame, 0, 0};
        s_put_head(&w, 2, 1, 2);
        s_put_node(&w, "a", 1, KV_NODE_ACTIVE);
        s_put_node(&w, "b", 1, KV_NODE_JOINING);
        s_put_partition(&w, 0, KV_NO_NODE, 0);
        s_put_partition(&w, 0, learners[i], KV_PART_MOVE_PRIMARY);
        cr_assert_not(w.failed);
        kv_table_t *table = s_decode_exact(frame, w.pos);
        int valid = learners[i] < 2 || learners[i] == KV_NO_NODE;
        cr_expect_eq(table != NULL, valid, "learner %u of 2 nodes", learners[i]);
        if (table) {
            cr_expect_eq(kv_table_learner(table, 1), learners[i]);
            cr_expect_eq(kv_table_flags(table, 1), KV_PART_MOVE_PRIMARY);
        }
        kv_table_destroy(&table);
    }
}

/* Flags this version does not know are an error, not something to skip:
 * a node that ignored a new hand-off flag could take writes it must not. */
Test(kv_table, unknown_flag_bits_fail) {
    uint8_t frame[64];
    for (int flags = 0; flags < 256; flags++) {
        kv_writer_t w = {frame, sizeof frame, 0, 0};
        s_put_head(&w, 1, 1, 2);
        s_put_node(&w, "a", 1, KV_NODE_ACTIVE);
        s_put_node(&w, "b", 1, KV_NODE_ACTIVE);
        s_put_partition(&w, 0, 1, (uint8_t)flags);
        cr_assert_not(w.failed);
        kv_table_t *table = s_decode_exact(frame, w.pos);
        cr_expect_eq(table != NULL, flags <= KV_PART_FLAGS_ALL, "flags 0x%02x", flags);
        if (table) cr_expect_eq(kv_table_flags(table, 0), flags);
        kv_table_destroy(&table);
    }
}

Test(kv_table, every_node_state_round_trips) {
    for (int state = KV_NODE_JOINING; state <= KV_NODE_LEFT; state++) {
        kv_table_t *table = kv_table_new(1, 1);
        kv_table_upsert(table, "a", "tcp://a:1", "");
        kv_table_set_node_state(table, 0, state);
        size_t len;
        uint8_t *frame = s_encode(table, &len);
        kv_table_t *decoded = s_decode_exact(frame, len);
        cr_assert_not_null(decoded, "%s", kv_node_state_name(state));
        cr_expect_eq(kv_table_node_state(decoded, 0), state);
        kv_table_destroy(&decoded);
        kv_table_destroy(&table);
        free(frame);
    }
}

Test(kv_table, malformed_nodes_fail) {
    static char long_id[KV_NODE_ID_MAX + 1];
    memset(long_id, 'x', sizeof long_id);
    struct {
        const char *id;
        size_t idlen;
        uint8_t state;
        const char *why;
    } cases[] = {
        {"", 0, KV_NODE_ACTIVE, "empty id"},
        {long_id, KV_NODE_ID_MAX + 1, KV_NODE_ACTIVE, "id of 65 bytes"},
        {"a\0b", 3, KV_NODE_ACTIVE, "NUL inside the id"},
        {"a", 1, KV_NODE_LEFT + 1, "unknown state"},
        {"a", 1, 0xFF, "state 255"},
    };
    uint8_t frame[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kv_writer_t w = {frame, sizeof frame, 0, 0};
        s_put_head(&w, 1, 1, 1);
        s_put_node(&w, cases[i].id, cases[i].idlen, cases[i].state);
        s_put_partition(&w, 0, KV_NO_NODE, 0);
        cr_assert_not(w.failed);
        cr_expect_null(s_decode_exact(frame, w.pos), "%s", cases[i].why);
    }
    kv_writer_t w = {frame, sizeof frame, 0, 0}; /* the longest id is fine */
    s_put_head(&w, 1, 1, 1);
    s_put_node(&w, long_id, KV_NODE_ID_MAX, KV_NODE_LEFT);
    s_put_partition(&w, 0, KV_NO_NODE, 0);
    kv_table_t *table = s_decode_exact(frame, w.pos);
    cr_expect_not_null(table);
    kv_table_destroy(&table);
}

Test(kv_table, endpoint_longer_than_the_limit_fails) {
    static char endpoint[KV_ENDPOINT_MAX + 1];
    memset(endpoint, 'e', sizeof endpoint);
    uint8_t frame[600];
    for (size_t len = KV_ENDPOINT_MAX; len <= KV_ENDPOINT_MAX + 1; len++) {
        kv_writer_t w = {frame, sizeof frame, 0, 0};
        s_put_head(&w, 1, 1, 1);
        kv_wire_put_str(&w, "a", 1, 1);
        kv_wire_put_str(&w, endpoint, len, 2);
        kv_wire_put_str(&w, "", 0, 2);
        kv_wire_put_uint(&w, KV_NODE_ACTIVE, 1);
        s_put_partition(&w, KV_NO_NODE, KV_NO_NODE, 0);
        cr_assert_not(w.failed);
        kv_table_t *table = s_decode_exact(frame, w.pos);
        cr_expect_eq(table != NULL, len == KV_ENDPOINT_MAX, "endpoint of %zu bytes", len);
        kv_table_destroy(&table);
    }
}

#ifdef __SANITIZE_ADDRESS__
/* AddressSanitizer calls these on every allocation: the largest size tells
 * whether a decoder believed a size claim before checking it. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
static size_t s_largest_malloc;
static void s_malloc_hook(const volatile void *ptr, size_t size) {
    if (size > s_largest_malloc) s_largest_malloc = size;
}
static void s_free_hook(const volatile void *ptr) {}
#endif

/* A 16-byte frame claiming 65536 partitions x 5 slots (640 KiB of owners)
 * is rejected by its length alone, before the owners are allocated. Each
 * partition takes R x 2 bytes of owners, 2 of learner and 1 of flags. */
Test(kv_table, size_claim_larger_than_the_frame_fails_without_allocating_it) {
    uint8_t frame[16];
    kv_writer_t w = {frame, sizeof frame, 0, 0};
    s_put_head(&w, KV_PARTITIONS_MAX, KV_REPLICATION_MAX, 0);
    kv_wire_put_uint(&w, KV_NO_NODE, 2);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_install_malloc_and_free_hooks(s_malloc_hook, s_free_hook);
    s_largest_malloc = 0;
#endif
    cr_expect_null(s_decode_exact(frame, w.pos));
#ifdef __SANITIZE_ADDRESS__
    size_t owners = (size_t)KV_PARTITIONS_MAX * KV_REPLICATION_MAX * sizeof(uint16_t);
    cr_expect_gt(s_largest_malloc, 0, "the hook saw the frame's copy");
    cr_expect_lt(s_largest_malloc, owners, "allocated %zu bytes for a 16-byte frame",
                 s_largest_malloc);
#endif

    /* A claim the frame can hold passes that check; one byte short fails. */
    const size_t claim = 18; /* 2 partitions x (3 slots x 2 + 2 + 1) bytes */
    uint8_t *exact = malloc(16 + claim);
    w = (kv_writer_t){exact, 16 + claim, 0, 0};
    s_put_head(&w, 2, 3, 0);
    for (int p = 0; p < 2; p++) {
        for (int s = 0; s < 3; s++) kv_wire_put_uint(&w, KV_NO_NODE, 2);
        kv_wire_put_uint(&w, KV_NO_NODE, 2);
        kv_wire_put_uint(&w, 0, 1);
    }
    cr_assert_not(w.failed);
    kv_table_t *table = s_decode_exact(exact, w.pos);
    cr_expect_not_null(table);
    kv_table_destroy(&table);
    cr_expect_null(s_decode_exact(exact, w.pos - 1));
    free(exact);
}

/* Every byte of the sample's encoding, corrupted by each single-bit flip
 * and by 0x00 and 0xFF. */
Test(kv_table, every_corruption_fails_or_decodes_consistently) {
    kv_table_t *table = s_sample_table();
    size_t len;
    uint8_t *frame = s_encode(table, &len);
    uint8_t *copy = malloc(len);
    size_t accepted = 0, rejected = 0;
    for (size_t at = 0; at < len; at++) {
        uint8_t corruptions[10];
        for (int bit = 0; bit < 8; bit++) corruptions[bit] = frame[at] ^ (uint8_t)(1u << bit);
        corruptions[8] = 0x00;
        corruptions[9] = 0xFF;
        for (size_t c = 0; c < sizeof corruptions; c++) {
            memcpy(copy, frame, len);
            copy[at] = corruptions[c];
            kv_table_t *decoded = kv_table_decode(copy, len);
            if (!decoded) {
                rejected++;
                continue;
            }
            accepted++;
            s_assert_consistent(decoded);
            kv_table_healthy(decoded); /* safe on anything decode accepts */
            size_t again_len;
            uint8_t *again = s_encode(decoded, &again_len);
            cr_assert_eq(again_len, len, "byte %zu = 0x%02x", at, copy[at]);
            cr_assert_arr_eq(again, copy, len, "the encoding is canonical");
            free(again);
            kv_table_destroy(&decoded);
        }
    }
    cr_expect_gt(rejected, 0);
    cr_expect_gt(accepted, 0, "epoch, state and endpoint bytes stay decodable");
    free(copy);
    free(frame);
    kv_table_destroy(&table);
}

Test(kv_table, node_state_names) {
    cr_expect_str_eq(kv_node_state_name(KV_NODE_JOINING), "joining");
    cr_expect_str_eq(kv_node_state_name(KV_NODE_ACTIVE), "active");
    cr_expect_str_eq(kv_node_state_name(KV_NODE_LEAVING), "leaving");
    cr_expect_str_eq(kv_node_state_name(KV_NODE_DOWN), "down");
    cr_expect_str_eq(kv_node_state_name(KV_NODE_LEFT), "left");
    cr_expect_str_eq(kv_node_state_name(-1), "unknown");
    cr_expect_str_eq(kv_node_state_name(KV_NODE_LEFT + 1), "unknown");
}
