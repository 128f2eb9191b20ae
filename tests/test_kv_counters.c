/*  test_kv_counters.c: the per-object counter registry. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kv_counters.h"

Test(kv_counters, registered_counters_start_at_zero_and_count) {
    kv_counters_t *c = kv_counters_new();
    cr_assert_not_null(c);
    size_t h = kv_counters_register(c, "kv_resyncs_total", "partitions resynced");
    cr_assert_neq(h, KV_COUNTER_INVALID);
    cr_expect_eq(kv_counters_value(c, h), 0);
    kv_counters_inc(c, h);
    kv_counters_add(c, h, 41);
    cr_expect_eq(kv_counters_value(c, h), 42);
    cr_expect_eq(kv_counters_get(c, "kv_resyncs_total"), 42);
    cr_expect_eq(kv_counters_get(c, "kv_unknown_total"), 0);
    cr_expect_str_eq(kv_counters_help(c, h), "partitions resynced");
    kv_counters_destroy(&c);
    cr_expect_null(c);
    kv_counters_destroy(&c); /* twice is safe */
}

Test(kv_counters, same_name_gives_same_handle) {
    kv_counters_t *c = kv_counters_new();
    size_t a = kv_counters_register(c, "a_total", NULL);
    size_t b = kv_counters_register(c, "b_total", NULL);
    cr_expect_neq(a, b);
    cr_expect_eq(kv_counters_register(c, "a_total", "again"), a);
    cr_expect_eq(kv_counters_count(c), 2);
    cr_expect_str_eq(kv_counters_name(c, 1), "b_total");
    cr_expect_null(kv_counters_name(c, 2));
    kv_counters_destroy(&c);
}

Test(kv_counters, bad_names_and_a_full_registry_are_refused) {
    kv_counters_t *c = kv_counters_new();
    char name[KV_COUNTER_NAME_MAX + 2];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    cr_expect_eq(kv_counters_register(c, name, NULL), KV_COUNTER_INVALID);
    cr_expect_eq(kv_counters_register(c, "", NULL), KV_COUNTER_INVALID);
    cr_expect_eq(kv_counters_register(c, NULL, NULL), KV_COUNTER_INVALID);
    for (int i = 0; i < KV_COUNTERS_MAX; i++) {
        char n[32];
        snprintf(n, sizeof(n), "c%d_total", i);
        cr_assert_neq(kv_counters_register(c, n, NULL), KV_COUNTER_INVALID);
    }
    cr_expect_eq(kv_counters_register(c, "one_more_total", NULL), KV_COUNTER_INVALID);
    kv_counters_inc(c, KV_COUNTER_INVALID); /* ignored, no crash */
    cr_expect_eq(kv_counters_value(c, KV_COUNTER_INVALID), 0);
    kv_counters_destroy(&c);
}

static void *s_bump(void *arg) {
    kv_counters_t *c = arg;
    for (int i = 0; i < 100000; i++) kv_counters_inc(c, 0);
    return NULL;
}

Test(kv_counters, concurrent_increments_are_not_lost) {
    kv_counters_t *c = kv_counters_new();
    cr_assert_eq(kv_counters_register(c, "hits_total", NULL), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, s_bump, c);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    cr_expect_eq(kv_counters_value(c, 0), 400000);
    kv_counters_destroy(&c);
}
