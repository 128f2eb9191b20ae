/*  test_kv_load.c: the workload of the load tools (mix, keys, values, key set). */
#include <criterion/criterion.h>
#include <string.h>

#include "kv_load.h"

Test(kv_mix, parses_weights_and_formats_them_back) {
    kv_mix_t mix;
    cr_assert_eq(kv_mix_parse("set=50,get=40,rm=10", &mix), 0);
    cr_expect_eq(mix.weight[KV_LOAD_SET], 50);
    cr_expect_eq(mix.weight[KV_LOAD_GET], 40);
    cr_expect_eq(mix.weight[KV_LOAD_RM], 10);
    cr_expect_eq(mix.total, 100);
    char text[64];
    kv_mix_format(&mix, text, sizeof(text));
    cr_expect_str_eq(text, "set=50,get=40,rm=10");
}

Test(kv_mix, rejects_malformed_text) {
    kv_mix_t mix;
    const char *bad[] = {"",       "set",    "set=",  "=5",     "put=5",
                         "set=5,", "set=-1", "set=0", "set=1x", "set=2000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(kv_mix_parse(bad[i], &mix), -1, "'%s' accepted", bad[i]);
}

Test(kv_mix, picks_in_proportion) {
    kv_mix_t mix;
    cr_assert_eq(kv_mix_parse("set=25,get=75", &mix), 0);
    uint64_t rng = 42, counts[KV_LOAD_OPS] = {0};
    for (int i = 0; i < 100000; i++) counts[kv_mix_pick(&mix, &rng)]++;
    cr_expect(counts[KV_LOAD_SET] > 24000 && counts[KV_LOAD_SET] < 26000);
    cr_expect_eq(counts[KV_LOAD_RM], 0);
}

Test(kv_load, keys_and_values_are_deterministic) {
    char key[32], a[32], b[32];
    cr_expect_eq(kv_load_key(key, sizeof(key), 7, 12345), strlen("k7-12345"));
    cr_expect_str_eq(key, "k7-12345");
    cr_expect_eq(kv_load_key(key, 4, 7, 12345), 0); /* does not fit */
    kv_load_value(a, sizeof(a), 7, 99);
    kv_load_value(b, sizeof(b), 7, 99);
    cr_expect_eq(memcmp(a, b, sizeof(a)), 0);
    kv_load_value(b, sizeof(b), 7, 100);
    cr_expect_neq(memcmp(a, b, sizeof(a)), 0);
    for (size_t i = 0; i < sizeof(a); i++)
        cr_expect(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", a[i]));
}

Test(kv_keyset, add_remove_pick) {
    kv_keyset_t *set = kv_keyset_new();
    uint64_t rng = 1;
    cr_expect_eq(kv_keyset_pick(set, &rng), -1);
    for (uint32_t n = 0; n < 5000; n += 2) cr_assert_eq(kv_keyset_add(set, n), 0);
    cr_expect_eq(kv_keyset_add(set, 10), 0); /* already there */
    cr_expect_eq(kv_keyset_size(set), 2500);
    kv_keyset_remove(set, 10);
    kv_keyset_remove(set, 11); /* absent */
    cr_expect_not(kv_keyset_contains(set, 10));
    cr_expect(kv_keyset_contains(set, 12));
    cr_expect_eq(kv_keyset_size(set), 2499);
    for (int i = 0; i < 10000; i++) {
        int64_t n = kv_keyset_pick(set, &rng);
        cr_assert(n >= 0 && n % 2 == 0 && n != 10 && n < 5000);
    }
    kv_keyset_destroy(&set);
    cr_expect_null(set);
}
