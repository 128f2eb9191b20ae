/*  test_kv_expiry.c: a partition's index of deadlines, a min-heap.
 *
 *  Deadlines come out earliest first, only once due, each with the hash it
 *  was pushed with; the heap grows and gives its memory back as it
 *  empties.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "kv_expiry.h"

#define T0 1700000000000LL /* a wall-clock instant (ms), a whole second */

Test(kv_expiry, empty_index_has_nothing_due) {
    kv_expiry_t *index = kv_expiry_new();
    cr_assert_not_null(index);
    uint64_t hash = 0;
    cr_expect_eq(kv_expiry_next(index), 0);
    cr_expect_eq(kv_expiry_pop_due(index, INT64_MAX, &hash), 0);
    cr_expect_eq(kv_expiry_size(index), 0);
    kv_expiry_destroy(&index);
    cr_expect_null(index);
    kv_expiry_destroy(&index); /* twice is safe */
}

/* Items come out earliest first, once due; deadlines count in whole
 * seconds, rounded up (an entry is never visited before its deadline). */
Test(kv_expiry, deadlines_come_out_earliest_first_once_due) {
    kv_expiry_t *index = kv_expiry_new();
    const int64_t at[] = {5, 1, 3, 1, 9, 2}; /* seconds after T0 */
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        cr_assert_eq(kv_expiry_push(index, T0 + at[i] * 1000, (uint64_t)at[i] * 10 + i), 0);
    cr_expect_eq(kv_expiry_next(index), T0 + 1000);
    uint64_t hash;
    cr_expect_eq(kv_expiry_pop_due(index, T0 + 999, &hash), 0, "nothing due before T0 + 1 s");
    int64_t last = 0;
    size_t popped = 0;
    while (kv_expiry_pop_due(index, T0 + 5000, &hash)) {
        int64_t deadline = (int64_t)(hash / 10);
        cr_expect_geq(deadline, last);
        cr_expect_leq(deadline, 5);
        last = deadline;
        popped++;
    }
    cr_expect_eq(popped, 5);
    cr_expect_eq(kv_expiry_next(index), T0 + 9000);
    cr_assert_eq(kv_expiry_push(index, T0 + 9001, 1), 0); /* rounded up */
    cr_expect_eq(kv_expiry_pop_due(index, T0 + 9999, &hash), 1);
    cr_expect_eq(kv_expiry_pop_due(index, T0 + 9999, &hash), 0, "T0 + 9.001 s is due at 10 s");
    cr_expect_eq(kv_expiry_memory(index) >= 8, 1);
    kv_expiry_destroy(&index);
}

/* The hash an item gives back is the low 32 bits of the one pushed: enough
 * to find a bucket of any table below 2^32 buckets. */
Test(kv_expiry, items_keep_the_low_bits_of_the_hash) {
    kv_expiry_t *index = kv_expiry_new();
    cr_assert_eq(kv_expiry_push(index, T0, 0xABCDEF0123456789ull), 0);
    uint64_t hash = 0;
    cr_assert_eq(kv_expiry_pop_due(index, T0, &hash), 1);
    cr_expect_eq(hash, 0x23456789ull);
    kv_expiry_destroy(&index);
}

/* Many random deadlines: a heap in order, and memory following the count
 * down once they are popped. */
Test(kv_expiry, a_large_heap_stays_ordered_and_shrinks) {
    kv_expiry_t *index = kv_expiry_new();
    uint64_t x = 88172645463325252ull; /* xorshift64: a fixed, reproducible order */
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cr_assert_eq(kv_expiry_push(index, T0 + 1000LL * (int64_t)(1 + x % 100000), 0), 0);
    }
    size_t full = kv_expiry_memory(index);
    cr_expect_geq(full, (size_t)100000 * 8);
    cr_expect_leq(full, (size_t)100000 * 8 * 3 / 2 + 256, "8 bytes an item, a half more at most");
    int64_t last = 0;
    uint64_t hash;
    for (int i = 0; i < 99000; i++) {
        int64_t next = kv_expiry_next(index);
        cr_assert(kv_expiry_pop_due(index, INT64_MAX, &hash));
        cr_assert_geq(next, last);
        last = next;
    }
    cr_expect_lt(kv_expiry_memory(index), full / 8, "memory follows the items down");
    kv_expiry_clear(index);
    cr_expect_eq(kv_expiry_size(index), 0);
    cr_expect_eq(kv_expiry_next(index), 0);
    kv_expiry_destroy(&index);
}
