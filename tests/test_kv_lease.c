/*  test_kv_lease.c: the node side of primary leases. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "kv_lease.h"

#define MS INT64_C(1000) /* microseconds */

Test(kv_lease, none_until_a_grant) {
    kv_lease_t lease;
    kv_lease_init(&lease, 1, 100);
    cr_expect_not(kv_lease_valid(&lease, 0));
    cr_expect_not(kv_lease_valid(&lease, 1000 * MS));
    cr_expect_eq(kv_lease_remaining_ms(&lease, 0), 0);
}

Test(kv_lease, counts_from_the_heartbeat_send_minus_the_margin) {
    kv_lease_t lease;
    kv_lease_init(&lease, 1, 100);
    uint64_t no = kv_lease_heartbeat(&lease, 1000 * MS);
    /* the grant arrives 300 ms later: still counted from the send */
    cr_assert(kv_lease_grant(&lease, no, 5, 500, 5));
    cr_expect(kv_lease_valid(&lease, 1399 * MS));
    cr_expect_not(kv_lease_valid(&lease, 1400 * MS), "500 ms - 100 ms margin from the send");
    cr_expect_eq(kv_lease_remaining_ms(&lease, 1300 * MS), 100);
}

Test(kv_lease, a_late_grant_for_an_old_heartbeat_never_shortens_it) {
    kv_lease_t lease;
    kv_lease_init(&lease, 1, 0);
    uint64_t first = kv_lease_heartbeat(&lease, 0);
    uint64_t second = kv_lease_heartbeat(&lease, 100 * MS);
    cr_assert(kv_lease_grant(&lease, second, 1, 500, 1));
    cr_expect_not(kv_lease_grant(&lease, first, 1, 500, 1), "older heartbeat: no extension");
    cr_expect(kv_lease_valid(&lease, 599 * MS));
    cr_expect_not(kv_lease_valid(&lease, 600 * MS));
}

Test(kv_lease, unknown_and_forgotten_heartbeats_are_ignored) {
    kv_lease_t lease;
    kv_lease_init(&lease, 1, 0);
    cr_expect_not(kv_lease_grant(&lease, 0, 1, 500, 1));
    cr_expect_not(kv_lease_grant(&lease, 7, 1, 500, 1), "never sent");
    uint64_t old = kv_lease_heartbeat(&lease, 0);
    for (int i = 0; i < KV_LEASE_RING; i++) kv_lease_heartbeat(&lease, (i + 1) * MS);
    cr_expect_not(kv_lease_grant(&lease, old, 1, 500, 1), "fell out of the ring");
    cr_expect_not(kv_lease_valid(&lease, 10 * MS));
}

Test(kv_lease, a_grant_for_a_newer_table_waits_for_that_table) {
    kv_lease_t lease;
    kv_lease_init(&lease, 1, 0);
    uint64_t no = kv_lease_heartbeat(&lease, 0);
    cr_expect_not(kv_lease_grant(&lease, no, 9, 500, 8), "our table is older than the grant");
    cr_expect_not(kv_lease_valid(&lease, 10 * MS));
    kv_lease_on_table(&lease, 8);
    cr_expect_not(kv_lease_valid(&lease, 10 * MS), "still older");
    kv_lease_on_table(&lease, 9);
    cr_expect(kv_lease_valid(&lease, 10 * MS));
    cr_expect_not(kv_lease_valid(&lease, 500 * MS));
}

Test(kv_lease, switched_off_is_always_valid) {
    kv_lease_t lease;
    kv_lease_init(&lease, 0, 100);
    cr_expect(kv_lease_valid(&lease, 0));
    cr_expect_eq(kv_lease_remaining_ms(&lease, 0), -1);
}
