/*  test_kv_msg_counts.c: messages counted by type, and a registry as the
 *  counters of a STATS_REPLY. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv_msg_counts.h"

Test(kv_msg_counts, one_lower_case_counter_per_type_counts_its_messages) {
    kv_counters_t *c = kv_counters_new();
    kv_msg_counts_t counts;
    kv_msg_counts_register(&counts, c, "kv_test_messages");
    size_t types = 0;
#define S_COUNT_TYPE(NAME, code) types++;
    KV_MSG_TYPES(S_COUNT_TYPE)
#undef S_COUNT_TYPE
    cr_expect_eq(kv_counters_count(c), types);
    kv_msg_counts_inc(&counts, KV_MSG_SET);
    kv_msg_counts_inc(&counts, KV_MSG_SET);
    kv_msg_counts_inc(&counts, KV_MSG_SNAPSHOT_REQ);
    kv_msg_counts_inc(&counts, 200); /* no such type: nothing */
    kv_msg_counts_inc(&counts, -1);
    kv_msg_counts_inc(&counts, 1000);
    cr_expect_eq(kv_counters_get(c, "kv_test_messages_set_total"), 2);
    cr_expect_eq(kv_counters_get(c, "kv_test_messages_snapshot_req_total"), 1);
    cr_expect_eq(kv_counters_get(c, "kv_test_messages_get_total"), 0);
    uint64_t sum = 0;
    for (size_t i = 0; i < kv_counters_count(c); i++) sum += kv_counters_value(c, i);
    cr_expect_eq(sum, 3, "only known types count");
    kv_counters_destroy(&c);
}

Test(kv_msg_counts, blob_carries_every_counter_in_a_stats_reply) {
    kv_counters_t *c = kv_counters_new();
    kv_counters_add(c, kv_counters_register(c, "a_total", NULL), 7);
    kv_counters_register(c, "b_total", NULL);
    uint8_t *buf = NULL;
    kv_msg_t reply = {.type = KV_MSG_STATS_REPLY, .req_id = 1};
    reply.counters = kv_msg_counts_blob(c, &buf);
    cr_assert_not_null(buf);
    uint8_t frame[512];
    size_t size = kv_msg_encode(&reply, frame, sizeof(frame));
    cr_assert_gt(size, 0);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, size, &decoded), 0);
    size_t pos = 0;
    kv_msg_counter_t counter;
    cr_assert_eq(kv_msg_counter_next(&decoded, &pos, &counter), 0);
    cr_expect_eq(counter.name.len, strlen("a_total"));
    cr_expect_eq(memcmp(counter.name.ptr, "a_total", counter.name.len), 0);
    cr_expect_eq(counter.value, 7);
    cr_assert_eq(kv_msg_counter_next(&decoded, &pos, &counter), 0);
    cr_expect_eq(memcmp(counter.name.ptr, "b_total", counter.name.len), 0);
    cr_expect_eq(counter.value, 0);
    cr_expect_neq(kv_msg_counter_next(&decoded, &pos, &counter), 0);
    free(buf);
    kv_counters_destroy(&c);
}

Test(kv_msg_counts, empty_registry_gives_empty_bytes) {
    kv_counters_t *c = kv_counters_new();
    uint8_t *buf = NULL;
    kv_bytes_t blob = kv_msg_counts_blob(c, &buf);
    cr_expect_null(buf);
    cr_expect_eq(blob.len, 0);
    kv_counters_destroy(&c);
}
