/*  test_kv_hist.c: the latency histogram of the load tools. */
#include <criterion/criterion.h>

#include "kv_hist.h"

Test(kv_hist, empty_reports_zeros) {
    kv_hist_t *hist = kv_hist_new();
    cr_assert_not_null(hist);
    cr_expect_eq(kv_hist_count(hist), 0);
    cr_expect_eq(kv_hist_percentile(hist, 50), 0);
    cr_expect_eq(kv_hist_max(hist), 0);
    cr_expect_eq(kv_hist_mean(hist), 0);
    kv_hist_destroy(&hist);
    cr_expect_null(hist);
    kv_hist_destroy(&hist); /* safe twice */
}

Test(kv_hist, small_values_are_exact) {
    kv_hist_t *hist = kv_hist_new();
    for (uint64_t v = 1; v <= 100; v++) kv_hist_record(hist, v);
    cr_expect_eq(kv_hist_percentile(hist, 50), 50);
    cr_expect_eq(kv_hist_percentile(hist, 99), 99);
    cr_expect_eq(kv_hist_percentile(hist, 100), 100);
    cr_expect_eq(kv_hist_min(hist), 1);
    cr_expect_eq(kv_hist_max(hist), 100);
    cr_expect_eq(kv_hist_mean(hist), 50); /* 5050 / 100, integer division */
    kv_hist_destroy(&hist);
}

Test(kv_hist, large_values_are_within_one_percent) {
    kv_hist_t *hist = kv_hist_new();
    /* 1..1,000,000 microseconds, in nanoseconds. */
    for (uint64_t v = 1; v <= 1000000; v++) kv_hist_record(hist, v * 1000);
    uint64_t p50 = kv_hist_percentile(hist, 50), p99 = kv_hist_percentile(hist, 99);
    cr_expect(p50 >= 500000000ULL && p50 <= 504000000ULL, "p50 %llu", (unsigned long long)p50);
    cr_expect(p99 >= 990000000ULL && p99 <= 998000000ULL, "p99 %llu", (unsigned long long)p99);
    cr_expect_eq(kv_hist_max(hist), 1000000000ULL);
    kv_hist_destroy(&hist);
}

Test(kv_hist, percentile_never_exceeds_the_max) {
    kv_hist_t *hist = kv_hist_new();
    kv_hist_record(hist, 1000001); /* lands in a bucket whose top is higher */
    cr_expect_eq(kv_hist_percentile(hist, 50), 1000001);
    kv_hist_record(hist, UINT64_MAX);
    cr_expect_eq(kv_hist_percentile(hist, 100), UINT64_MAX);
    kv_hist_destroy(&hist);
}

Test(kv_hist, merge_adds_counts_and_keeps_extremes) {
    kv_hist_t *a = kv_hist_new(), *b = kv_hist_new();
    kv_hist_record(a, 10);
    kv_hist_record(b, 5);
    kv_hist_record(b, 2000);
    kv_hist_merge(a, b);
    cr_expect_eq(kv_hist_count(a), 3);
    cr_expect_eq(kv_hist_min(a), 5);
    cr_expect_eq(kv_hist_max(a), 2000);
    kv_hist_reset(a);
    cr_expect_eq(kv_hist_count(a), 0);
    kv_hist_destroy(&a);
    kv_hist_destroy(&b);
}
