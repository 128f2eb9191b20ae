/*  test_kv_mget.c: /mget's parsing (kv_mget); its rounds run against a
 *  cluster in it_api.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kv_mget.h"

static kv_query_err_t s_parse(const char *query) {
    kv_query_err_t err = KV_QUERY_OK;
    kv_mget_t *mget = kv_mget_new(query, strlen(query), &err);
    cr_expect_eq(mget != NULL, err == KV_QUERY_OK, "%s: a read exactly when valid", query);
    kv_mget_destroy(&mget);
    return err;
}

Test(kv_mget, keys_are_validated_in_request_order) {
    cr_expect_eq(s_parse("k=a&k=b&k=a"), KV_QUERY_OK, "repeats are allowed");
    cr_expect_eq(s_parse("k=a&token=x&other=1"), KV_QUERY_OK, "other parameters are ignored");
    cr_expect_eq(s_parse(""), KV_QUERY_MISSING_KEY);
    cr_expect_eq(s_parse("key=a"), KV_QUERY_MISSING_KEY, "names are exact");
    cr_expect_eq(s_parse("k=a&k="), KV_QUERY_EMPTY_KEY);
    cr_expect_eq(s_parse("k=%ZZ&k="), KV_QUERY_INVALID_ENCODING, "the first failing key wins");
    cr_expect_eq(s_parse("k=a&k"), KV_QUERY_EMPTY_KEY, "a bare k is an empty key");
}

/* TOO_MANY_KEYS comes before any key's own error, repeats counted. */
Test(kv_mget, at_most_1000_keys) {
    static char query[16 * 1024];
    size_t pos = 0;
    for (int i = 0; i < KV_MGET_MAX_KEYS; i++) pos += (size_t)sprintf(query + pos, "k=%d&", i % 7);
    query[pos - 1] = '\0';
    cr_expect_eq(s_parse(query), KV_QUERY_OK);
    sprintf(query + pos - 1, "&k=");
    cr_expect_eq(s_parse(query), KV_QUERY_TOO_MANY_KEYS);
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_TOO_MANY_KEYS), "TOO_MANY_KEYS");
}

Test(kv_mget, keys_are_decoded) {
    const char *query = "k=a%26b&k=x+y";
    kv_query_err_t err = KV_QUERY_OK;
    kv_mget_t *mget = kv_mget_new(query, strlen(query), &err);
    cr_assert_not_null(mget);
    cr_expect_eq(kv_mget_rounds(mget), 0, "nothing sent before start");
    kv_mget_destroy(&mget);
    cr_expect_null(mget);
    kv_mget_destroy(&mget); /* safe on NULL */
}
