/*  test_kv_mem.c: a node's memory limit arithmetic (node/kv_mem.h).
 *
 *  --max-memory's forms, the room a limit leaves, the rule that a write
 *  which does not grow the data always fits, the frames whose bytes are
 *  counted while libzmq holds them, and high-water marks sized from a
 *  byte budget.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "kv_mem.h"

#define GIB (1ULL << 30)

Test(kv_mem, default_is_ninety_percent_of_the_cgroup_limit) {
    uint64_t limit = 1;
    cr_assert_eq(kv_mem_parse_limit(NULL, 10 * GIB, &limit), 0);
    cr_assert_eq(limit, 9 * GIB);
    cr_assert_eq(kv_mem_parse_limit("", 0, &limit), 0);
    cr_assert_eq(limit, 0, "no cgroup limit: no limit");
}

Test(kv_mem, bytes_with_suffixes) {
    uint64_t limit = 0;
    cr_assert_eq(kv_mem_parse_limit("268435456", 0, &limit), 0);
    cr_assert_eq(limit, 268435456);
    cr_assert_eq(kv_mem_parse_limit("64k", 0, &limit), 0);
    cr_assert_eq(limit, 64 << 10);
    cr_assert_eq(kv_mem_parse_limit("256M", 0, &limit), 0);
    cr_assert_eq(limit, 256ULL << 20);
    cr_assert_eq(kv_mem_parse_limit("2g", 0, &limit), 0);
    cr_assert_eq(limit, 2 * GIB);
}

Test(kv_mem, percentage_of_the_cgroup_limit) {
    uint64_t limit = 0;
    cr_assert_eq(kv_mem_parse_limit("50%", 4 * GIB, &limit), 0);
    cr_assert_eq(limit, 2 * GIB);
    cr_assert_eq(kv_mem_parse_limit("50%", 0, &limit), 0);
    cr_assert_eq(limit, 0, "a share of no limit is none");
}

Test(kv_mem, none_and_zero_mean_no_limit) {
    uint64_t limit = 1;
    cr_assert_eq(kv_mem_parse_limit("none", GIB, &limit), 0);
    cr_assert_eq(limit, 0);
    limit = 1;
    cr_assert_eq(kv_mem_parse_limit("0", GIB, &limit), 0);
    cr_assert_eq(limit, 0);
}

Test(kv_mem, malformed_limits_are_refused) {
    const char *bad[] = {"-1", "abc", "12x", "10kb", "0%", "101%", "%", "99999999999999999999g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t limit = 7;
        cr_expect_eq(kv_mem_parse_limit(bad[i], GIB, &limit), -1, "%s accepted", bad[i]);
        cr_expect_eq(limit, 7, "%s changed the limit", bad[i]);
    }
}

Test(kv_mem, room_is_what_the_limit_leaves) {
    cr_assert_eq(kv_mem_room(1000, 400), 600);
    cr_assert_eq(kv_mem_room(1000, 1000), 0);
    cr_assert_eq(kv_mem_room(1000, 5000), 0, "past the limit: no room, never negative");
    cr_assert_eq(kv_mem_room(0, 5000), KV_MEM_NO_LIMIT);
}

Test(kv_mem, a_write_that_does_not_grow_always_fits) {
    cr_assert(kv_mem_fits(0, 0));
    cr_assert(kv_mem_fits(0, -100), "a smaller value at the limit");
    cr_assert(kv_mem_fits(100, 100));
    cr_assert_not(kv_mem_fits(100, 101));
    cr_assert(kv_mem_fits(KV_MEM_NO_LIMIT, INT64_MAX));
}

Test(kv_mem, frames_are_counted_until_freed) {
    uint64_t before = kv_mem_frame_bytes();
    zmq_msg_t a, b;
    cr_assert_eq(kv_mem_frame(&a, 1000), 0);
    cr_assert_eq(kv_mem_frame(&b, 24), 0);
    cr_assert_eq(zmq_msg_size(&a), 1000);
    cr_assert_eq(kv_mem_frame_bytes(), before + 1024);
    zmq_msg_t copy; /* a PUB shares one frame among its subscribers */
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, &a);
    zmq_msg_close(&a);
    cr_assert_eq(kv_mem_frame_bytes(), before + 1024, "still held by the copy");
    zmq_msg_close(&copy);
    zmq_msg_close(&b);
    cr_assert_eq(kv_mem_frame_bytes(), before);
}

Test(kv_mem, frames_sent_are_counted_until_received) {
    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PAIR), *pull = zmq_socket(ctx, ZMQ_PAIR);
    cr_assert_eq(zmq_bind(pull, "inproc://kv_mem"), 0);
    cr_assert_eq(zmq_connect(push, "inproc://kv_mem"), 0);
    uint64_t before = kv_mem_frame_bytes();
    zmq_msg_t frame;
    cr_assert_eq(kv_mem_frame(&frame, 4096), 0);
    cr_assert_eq(zmq_msg_send(&frame, push, 0), 4096);
    cr_assert_eq(kv_mem_frame_bytes(), before + 4096, "queued in libzmq: counted");
    zmq_msg_t got;
    zmq_msg_init(&got);
    cr_assert_eq(zmq_msg_recv(&got, pull, 0), 4096);
    zmq_msg_close(&got);
    cr_assert_eq(kv_mem_frame_bytes(), before);
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
}

Test(kv_mem, high_water_marks_fit_the_budget) {
    /* 16 MiB over 16 pipes of 1 KiB frames: 1024 frames each */
    cr_assert_eq(kv_mem_hwm(16u << 20, 1024, 16, 1000000), 1024);
    cr_assert_eq(kv_mem_hwm(0, 1024, 16, 5000), 5000, "no budget: the configured mark");
    cr_assert_eq(kv_mem_hwm(1024, 1024, 16, 5000), KV_MEM_HWM_MIN, "never below the floor");
    cr_assert_eq(kv_mem_hwm(1ULL << 40, 1024, 1, 5000), 5000, "never above the configured");
}
