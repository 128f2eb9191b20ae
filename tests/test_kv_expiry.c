/*  test_kv_expiry.c: a partition's index of deadlines, a min-heap.
 *
 *  Deadlines come out earliest first, only once due, each with the hash it
 *  was pushed with; the heap grows and gives its memory back as it
 *  empties.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kv_expiry.h"

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

Test(kv_expiry, deadlines_come_out_earliest_first_once_due) {
    kv_expiry_t *index = kv_expiry_new();
    const int64_t at[] = {500, 100, 300, 100, 900, 200};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        cr_assert_eq(kv_expiry_push(index, at[i], (uint64_t)at[i] * 10 + i), 0);
    cr_expect_eq(kv_expiry_next(index), 100);
    uint64_t hash;
    cr_expect_eq(kv_expiry_pop_due(index, 99, &hash), 0, "nothing due before 100");
    int64_t last = 0;
    size_t popped = 0;
    while (kv_expiry_pop_due(index, 500, &hash)) {
        int64_t deadline = (int64_t)(hash / 10);
        cr_expect_geq(deadline, last);
        cr_expect_leq(deadline, 500);
        last = deadline;
        popped++;
    }
    cr_expect_eq(popped, 5);
    cr_expect_eq(kv_expiry_next(index), 900);
    kv_expiry_destroy(&index);
}

/* Many random deadlines: a heap in order, and memory following the count
 * down once they are popped. */
Test(kv_expiry, a_large_heap_stays_ordered_and_shrinks) {
    kv_expiry_t *index = kv_expiry_new();
    srand(7);
    for (int i = 0; i < 100000; i++) cr_assert_eq(kv_expiry_push(index, 1 + rand() % 100000, 0), 0);
    size_t full = kv_expiry_memory(index);
    cr_expect_geq(full, 100000 * 16);
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
