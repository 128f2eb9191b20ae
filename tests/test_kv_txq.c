/*  test_kv_txq.c: /tx's parameters (kv_txq): what each prefix means, how
 *  the parameters of one key merge, every 400 and which one wins.
 *
 *  Every query is copied into a buffer of exactly its length, without a NUL
 *  after it, so AddressSanitizer catches any read past the end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_txq.h"

/* A parse of a copy of raw, the copy, and the detail message. */
typedef struct {
    char *query;  /* raw's bytes, exactly len */
    kv_txq_t *tx; /* the result, or NULL */
    kv_query_err_t err;
    char detail[256];
} parsed_t;

static parsed_t *s_parse(const char *raw) {
    parsed_t *p = calloc(1, sizeof(*p));
    cr_assert_not_null(p);
    size_t len = strlen(raw);
    p->query = malloc(len ? len : 1);
    cr_assert_not_null(p->query);
    memcpy(p->query, raw, len);
    p->tx = kv_txq_parse_detail(p->query, len, &p->err, p->detail, sizeof p->detail);
    cr_assert_eq(p->tx != NULL, p->err == KV_QUERY_OK, "%s: a result exactly when valid", raw);
    cr_assert_eq(p->detail[0] == '\0', p->err == KV_QUERY_OK, "%s: a detail exactly on error", raw);
    cr_assert_eq(memcmp(p->query, raw, len), 0, "%s: the query was modified", raw);
    return p;
}

static void s_free(parsed_t **p_p) {
    kv_txq_destroy(&(*p_p)->tx);
    free((*p_p)->query);
    free(*p_p);
    *p_p = NULL;
}

/* The error of raw ("" of a valid query: KV_QUERY_OK). */
static kv_query_err_t s_err(const char *raw) {
    parsed_t *p = s_parse(raw);
    kv_query_err_t err = p->err;
    s_free(&p);
    return err;
}

#define EXPECT_ERR(raw, code)                                                                      \
    cr_expect_eq(s_err(raw), (code), "%s: %s, not %s", (raw), kv_query_err_code(code),             \
                 kv_query_err_code(s_err(raw)))

#define EXPECT_OK(raw) EXPECT_ERR(raw, KV_QUERY_OK)
#define EXPECT_BAD_TX(raw) EXPECT_ERR(raw, KV_QUERY_INVALID_TRANSACTION)

/* Asserts that a parameter is present and decoded to text. */
#define ASSERT_TEXT(param, text)                                                                   \
    cr_assert((param).present && (param).len == strlen(text) &&                                    \
                  memcmp((param).ptr, (text), (param).len) == 0,                                   \
              #param " is \"%.*s\", not \"%s\"", (int)(param).len, (param).ptr ? (param).ptr : "", \
              (text))

/* A parse that must succeed, with count distinct keys. */
static parsed_t *s_valid(const char *raw, size_t count) {
    parsed_t *p = s_parse(raw);
    cr_assert_not_null(p->tx, "%s: %s (%s)", raw, kv_query_err_code(p->err), p->detail);
    cr_assert_eq(kv_txq_count(p->tx), count, "%s: %zu keys", raw, kv_txq_count(p->tx));
    return p;
}

/* ---- what the parameters mean ---- */

Test(kv_txq, each_prefix_gives_its_part_of_a_key) {
    parsed_t *p = s_valid("if.a=3&get.b&set.c=x&rm.d&ttl.c=60&token=t", 4);
    const kv_txq_key_t *a = kv_txq_key(p->tx, 0);
    const kv_txq_key_t *b = kv_txq_key(p->tx, 1);
    const kv_txq_key_t *c = kv_txq_key(p->tx, 2);
    const kv_txq_key_t *d = kv_txq_key(p->tx, 3);
    ASSERT_TEXT(a->key, "a");
    cr_expect(a->has_if && a->if_version == 3 && !a->get && a->write == KV_TXQ_NONE);
    cr_expect_not(a->has_ttl);
    cr_expect_not(a->value.present);
    ASSERT_TEXT(b->key, "b");
    cr_expect(b->get && !b->has_if && b->write == KV_TXQ_NONE);
    ASSERT_TEXT(c->key, "c");
    cr_expect(c->write == KV_TXQ_SET && c->has_ttl && c->ttl == 60 && !c->get && !c->has_if);
    ASSERT_TEXT(c->value, "x");
    ASSERT_TEXT(d->key, "d");
    cr_expect(d->write == KV_TXQ_RM && !d->value.present && !d->has_ttl);
    cr_expect_null(kv_txq_key(p->tx, 4));
    cr_expect_eq(kv_txq_writes(p->tx), 2);
    cr_expect_eq(kv_txq_reads(p->tx), 1);
    s_free(&p);
}

Test(kv_txq, keys_come_in_order_of_first_appearance) {
    parsed_t *p = s_valid("get.b&set.a=1&if.b=2&ttl.a=5&rm.c&if.a=0&get.c", 3);
    static const char *order[] = {"b", "a", "c"};
    for (size_t i = 0; i < 3; i++) ASSERT_TEXT(kv_txq_key(p->tx, i)->key, order[i]);
    cr_expect(kv_txq_key(p->tx, 0)->has_if && kv_txq_key(p->tx, 0)->get);
    cr_expect(kv_txq_key(p->tx, 1)->has_if && kv_txq_key(p->tx, 1)->if_version == 0);
    s_free(&p);
}

Test(kv_txq, one_key_may_be_checked_read_and_written) {
    parsed_t *p = s_valid("if.k=4&get.k&set.k=v&ttl.k=10", 1);
    const kv_txq_key_t *k = kv_txq_key(p->tx, 0);
    cr_expect(k->has_if && k->if_version == 4 && k->get && k->write == KV_TXQ_SET);
    cr_expect(k->has_ttl && k->ttl == 10);
    ASSERT_TEXT(k->value, "v");
    cr_expect_eq(kv_txq_writes(p->tx), 1);
    cr_expect_eq(kv_txq_reads(p->tx), 1);
    s_free(&p);
    p = s_valid("ttl.k=10&set.k=v&if.k=0", 1); /* any order: ttl. before its set. */
    cr_expect(kv_txq_key(p->tx, 0)->has_ttl);
    s_free(&p);
    p = s_valid("if.k=0&rm.k&get.k", 1);
    cr_expect_eq(kv_txq_key(p->tx, 0)->write, KV_TXQ_RM);
    s_free(&p);
}

Test(kv_txq, a_condition_alone_is_a_transaction) {
    parsed_t *p = s_valid("if.a=7", 1);
    cr_expect_eq(kv_txq_writes(p->tx), 0);
    cr_expect_eq(kv_txq_reads(p->tx), 0);
    s_free(&p);
}

Test(kv_txq, prefixes_are_matched_on_the_raw_name) {
    parsed_t *p = s_valid("set.a%2Eb=1", 1);
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->key, "a.b");
    s_free(&p);
    p = s_valid("set.a.b=1&get.a%2eb", 1); /* the same key, decoded */
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->key, "a.b");
    cr_expect(kv_txq_key(p->tx, 0)->get);
    s_free(&p);
    p = s_valid("get..x&rm.rm.", 2);
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->key, ".x");
    ASSERT_TEXT(kv_txq_key(p->tx, 1)->key, "rm.");
    s_free(&p);
    EXPECT_BAD_TX("set%2Ea=1");
    EXPECT_BAD_TX("get.a&get%2Eb");
    EXPECT_BAD_TX("get.a&%73et.b=1");
    EXPECT_BAD_TX("get.a&SET.b=1"); /* prefixes are lower case */
    EXPECT_BAD_TX("get.a&set=1");
    EXPECT_BAD_TX("get.a&get");
}

Test(kv_txq, keys_and_values_are_decoded) {
    parsed_t *p = s_valid("set.a+b=x%26y%3Dz&get.%D0%B6&set.c=", 3);
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->key, "a b");
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->value, "x&y=z");
    ASSERT_TEXT(kv_txq_key(p->tx, 1)->key, "\xD0\xB6");
    ASSERT_TEXT(kv_txq_key(p->tx, 2)->value, ""); /* an empty value is a value */
    s_free(&p);
    p = s_valid("set.k=a=b", 1); /* the first raw '=' splits */
    ASSERT_TEXT(kv_txq_key(p->tx, 0)->value, "a=b");
    s_free(&p);
}

Test(kv_txq, token_and_empty_fields_are_ignored) {
    EXPECT_OK("token=t&get.a");
    EXPECT_OK("get.a&token=t&token=u&token");
    EXPECT_OK("tok%65n=%ZZ&get.a"); /* names are decoded; token's value is not ours */
    EXPECT_OK("&&get.a&&set.b=1&");
}

/* ---- how many keys ---- */

/* Writes n fields "get.kI" (I from first), joined by '&', into query. */
static size_t s_gets(char *query, size_t first, size_t n) {
    size_t pos = 0;
    for (size_t i = first; i < first + n; i++)
        pos += (size_t)sprintf(query + pos, "%sget.k%zu", i > first ? "&" : "", i);
    return pos;
}

Test(kv_txq, one_to_100_distinct_keys) {
    static char query[4096];
    size_t pos = s_gets(query, 0, KV_TX_MAX_KEYS);
    parsed_t *p = s_valid(query, KV_TX_MAX_KEYS);
    ASSERT_TEXT(kv_txq_key(p->tx, 99)->key, "k99");
    s_free(&p);
    pos += (size_t)sprintf(query + pos, "&set.k0=1&if.k5=1&rm.k99"); /* not new keys */
    EXPECT_OK(query);
    sprintf(query + pos, "&get.k100");
    EXPECT_ERR(query, KV_QUERY_TOO_MANY_KEYS);
    sprintf(query + pos, "&get.");
    EXPECT_ERR(query, KV_QUERY_TOO_MANY_KEYS); /* counted before any key is checked */
    query[pos] = '\0';
    query[0] = 'x'; /* "xet.k0": not a parameter; set.k0 keeps k0, 100 keys */
    EXPECT_ERR(query, KV_QUERY_INVALID_TRANSACTION);
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_TOO_MANY_KEYS), "TOO_MANY_KEYS");
}

Test(kv_txq, too_many_keys_comes_before_every_parameter) {
    static char query[4096];
    size_t pos = (size_t)sprintf(query, "x=1&get.%%ZZ&get.a=1&ttl.b=0&");
    s_gets(query + pos, 0, KV_TX_MAX_KEYS);
    EXPECT_ERR(query, KV_QUERY_TOO_MANY_KEYS);
}

Test(kv_txq, no_key_is_missing_key) {
    EXPECT_ERR("", KV_QUERY_MISSING_KEY);
    EXPECT_ERR("&&", KV_QUERY_MISSING_KEY);
    EXPECT_ERR("token=t", KV_QUERY_MISSING_KEY);
    kv_query_err_t err = KV_QUERY_OK;
    kv_txq_t *tx = kv_txq_parse(NULL, 0, &err);
    cr_expect_null(tx);
    cr_expect_eq(err, KV_QUERY_MISSING_KEY);
}

/* ---- INVALID_TRANSACTION ---- */

Test(kv_txq, a_repeated_name_is_invalid) {
    EXPECT_BAD_TX("get.a&get.a");
    EXPECT_BAD_TX("set.a=1&set.a=1");
    EXPECT_BAD_TX("set.a=1&set.a=2");
    EXPECT_BAD_TX("if.a=1&if.a=1");
    EXPECT_BAD_TX("if.a=1&if.a=2");
    EXPECT_BAD_TX("rm.a&rm.a");
    EXPECT_BAD_TX("set.a=1&ttl.a=5&ttl.a=5");
    EXPECT_BAD_TX("get.a&get.%61"); /* the same name once decoded */
    EXPECT_BAD_TX("get.a+b&get.a%20b");
    EXPECT_OK("get.a&get.A&get.a.");
}

Test(kv_txq, a_key_is_written_at_most_once) {
    EXPECT_BAD_TX("set.a=1&rm.a");
    EXPECT_BAD_TX("rm.a&set.a=1");
    EXPECT_BAD_TX("rm.a&get.b&set.%61=1");
    EXPECT_OK("set.a=1&rm.b&get.a&get.b");
}

Test(kv_txq, ttl_needs_a_set_of_the_same_key) {
    EXPECT_BAD_TX("ttl.a=5");
    EXPECT_BAD_TX("ttl.a=5&get.a");
    EXPECT_BAD_TX("ttl.a=5&rm.a");
    EXPECT_BAD_TX("ttl.a=5&if.a=1");
    EXPECT_BAD_TX("ttl.a=5&set.b=1");
    EXPECT_BAD_TX("set.a=1&ttl.A=5");
    EXPECT_OK("ttl.a=5&set.a=1");
    EXPECT_OK("set.a=1&ttl.a=5");
    EXPECT_OK("ttl.%61=5&set.a=1");
}

Test(kv_txq, get_and_rm_take_no_value) {
    EXPECT_BAD_TX("get.a=1");
    EXPECT_BAD_TX("get.a="); /* a '=' makes a value, even an empty one */
    EXPECT_BAD_TX("rm.a=1");
    EXPECT_BAD_TX("rm.a=");
    EXPECT_OK("get.a&rm.b");
}

Test(kv_txq, any_other_parameter_is_invalid) {
    static const char *others[] = {"k=a",    "v=1",     "ifVersion=1", "ttl=5",  "limit=1",
                                   "x",      "=1",      "=",           "if=1",   "get",
                                   "rm",     "ttl",     "if_a=1",      "GET.a",  "Set.a=1",
                                   "tokens", "token.a", "%ZZ=1",       "cursor", "node=x"};
    char query[64];
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        snprintf(query, sizeof query, "get.a&%s", others[i]);
        EXPECT_BAD_TX(query);
        snprintf(query, sizeof query, "%s&get.a", others[i]);
        EXPECT_BAD_TX(query);
    }
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_INVALID_TRANSACTION), "INVALID_TRANSACTION");
}

/* ---- keys, values, versions, expiries: validated as everywhere ---- */

Test(kv_txq, keys_are_validated_as_everywhere) {
    static const char *prefixes[] = {"if.", "get.", "set.", "rm.", "ttl."};
    static const char *values[] = {"=1", "", "=1", "", "=1"};
    char query[512];
    char long_key[70];
    memset(long_key, 'k', 65);
    long_key[65] = '\0';
    for (size_t i = 0; i < 5; i++) {
        snprintf(query, sizeof query, "%s%s", prefixes[i], values[i]);
        EXPECT_ERR(query, KV_QUERY_EMPTY_KEY);
        snprintf(query, sizeof query, "%s%%ZZ%s", prefixes[i], values[i]);
        EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
        snprintf(query, sizeof query, "%sa%%00%s", prefixes[i], values[i]);
        EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
        snprintf(query, sizeof query, "%s%%FF%s", prefixes[i], values[i]);
        EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
        snprintf(query, sizeof query, "%s%%C0%%AF%s", prefixes[i], values[i]);
        EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
        snprintf(query, sizeof query, "%s%s%s", prefixes[i], long_key, values[i]);
        EXPECT_ERR(query, KV_QUERY_KEY_TOO_LONG);
    }
    long_key[64] = '\0';
    snprintf(query, sizeof query, "get.%s", long_key);
    EXPECT_OK(query);
    size_t pos = (size_t)sprintf(query, "set.");
    for (int i = 0; i < 64; i++) pos += (size_t)sprintf(query + pos, "%%D0%%B6");
    sprintf(query + pos, "=1");
    EXPECT_OK(query); /* 64 characters of 2 bytes */
}

Test(kv_txq, values_are_validated_as_everywhere) {
    static char query[2048];
    EXPECT_ERR("set.a", KV_QUERY_MISSING_VALUE);
    EXPECT_ERR("set.a=%ZZ", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("set.a=%4", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("set.a=x%00", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("set.a=%FF", KV_QUERY_INVALID_ENCODING);
    size_t pos = (size_t)sprintf(query, "set.a=");
    for (int i = 0; i < 256; i++) pos += (size_t)sprintf(query + pos, "%%D0%%B6");
    EXPECT_OK(query);
    sprintf(query + pos, "v");
    EXPECT_ERR(query, KV_QUERY_VALUE_TOO_LONG);
}

/* As /set checks k and v: both encodings, then the key's length, then the
 * value's presence and length. */
Test(kv_txq, key_and_value_of_a_set_follow_the_validation_table) {
    static char query[2048];
    char key[66];
    memset(key, 'k', 65);
    key[65] = '\0';
    snprintf(query, sizeof query, "set.%s=%%ZZ", key);
    EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
    snprintf(query, sizeof query, "set.%s", key);
    EXPECT_ERR(query, KV_QUERY_KEY_TOO_LONG);
    EXPECT_ERR("set.=%ZZ", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("set.", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("set.%ZZ", KV_QUERY_INVALID_ENCODING);
    size_t pos = (size_t)sprintf(query, "set.a%%ZZ=");
    for (int i = 0; i < 257; i++) query[pos++] = 'v';
    query[pos] = '\0';
    EXPECT_ERR(query, KV_QUERY_INVALID_ENCODING);
}

Test(kv_txq, conditions_are_versions_zero_included) {
    parsed_t *p = s_valid("if.a=9007199254740991&if.b=0&if.c=007", 3);
    cr_expect_eq(kv_txq_key(p->tx, 0)->if_version, KV_VERSION_MAX);
    cr_expect_eq(kv_txq_key(p->tx, 1)->if_version, 0);
    cr_expect(kv_txq_key(p->tx, 1)->has_if);
    cr_expect_eq(kv_txq_key(p->tx, 2)->if_version, 7);
    s_free(&p);
    static const char *bad[] = {"if.a",    "if.a=",    "if.a=x",      "if.a=-1",
                                "if.a=+1", "if.a=1.0", "if.a=%31%ZZ", "if.a=9007199254740992",
                                "if.a=1+", "if.a=0x1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_ERR(bad[i], KV_QUERY_INVALID_VERSION);
    EXPECT_OK("if.a=%31"); /* decoded first, as every value */
}

Test(kv_txq, expiries_are_whole_seconds_up_to_ten_years) {
    parsed_t *p = s_valid("set.a=1&ttl.a=315360000&set.b=2&ttl.b=1&set.c=&ttl.c=0060", 3);
    cr_expect_eq(kv_txq_key(p->tx, 0)->ttl, KV_TTL_MAX);
    cr_expect_eq(kv_txq_key(p->tx, 1)->ttl, 1);
    cr_expect_eq(kv_txq_key(p->tx, 2)->ttl, 60);
    s_free(&p);
    static const char *bad[] = {"",    "=",    "=0",   "=315360001", "=99999999999999999999999",
                                "=-1", "=1.5", "=1e3", "=+1",        "=%201",
                                "=1s", "=%ZZ", "=0x10"};
    char query[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(query, sizeof query, "set.a=1&ttl.a%s", bad[i]);
        EXPECT_ERR(query, KV_QUERY_INVALID_TTL);
    }
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_INVALID_TTL), "INVALID_TTL");
}

/* ---- which 400 wins ---- */

Test(kv_txq, the_first_failing_parameter_in_request_order_wins) {
    EXPECT_ERR("get.a=1&set.b=%ZZ", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("set.b=%ZZ&get.a=1", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("x=1&get.", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("get.&x=1", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("if.a=x&set.b=1&ttl.b=0", KV_QUERY_INVALID_VERSION);
    EXPECT_ERR("set.b=1&ttl.b=0&if.a=x", KV_QUERY_INVALID_TTL);
    EXPECT_ERR("set.b&set.%ZZ=1", KV_QUERY_MISSING_VALUE);
    EXPECT_ERR("set.%ZZ=1&set.b", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("get.a&get.a&set.b", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("set.b&get.a&get.a", KV_QUERY_MISSING_VALUE);
    /* ttl. without set. fails at the ttl.'s place, though only the whole
     * request tells it */
    EXPECT_ERR("ttl.b=5&set.c=%ZZ", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("set.c=%ZZ&ttl.b=5", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("ttl.b=5&set.b=%ZZ", KV_QUERY_INVALID_ENCODING); /* there is a set.b */
}

Test(kv_txq, within_a_parameter_the_key_then_the_value_then_the_rest) {
    EXPECT_ERR("get.%ZZ=1", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("rm.=1", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("if.=x", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("if.%ZZ=x", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("ttl.=0", KV_QUERY_EMPTY_KEY);
    EXPECT_ERR("if.a=1&if.a=x", KV_QUERY_INVALID_VERSION);
    EXPECT_ERR("set.a=1&ttl.a=5&ttl.a=0", KV_QUERY_INVALID_TTL);
    EXPECT_ERR("ttl.a=0", KV_QUERY_INVALID_TTL); /* before "without set." */
    EXPECT_ERR("set.a=1&set.a=%ZZ", KV_QUERY_INVALID_ENCODING);
    EXPECT_ERR("set.a=1&set.a", KV_QUERY_MISSING_VALUE);
    EXPECT_ERR("set.a=1&rm.a=1", KV_QUERY_INVALID_TRANSACTION);
}

/* No key: MISSING_KEY_PARAM only when nothing else is wrong, since a
 * parameter that is not a /tx one says more. */
Test(kv_txq, no_key_comes_after_the_parameters) {
    EXPECT_ERR("x=1", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("k=a&v=1", KV_QUERY_INVALID_TRANSACTION); /* /set's parameters */
    EXPECT_ERR("token=t&k=%ZZ", KV_QUERY_INVALID_TRANSACTION);
    EXPECT_ERR("set%2Ea=1", KV_QUERY_INVALID_TRANSACTION);
}

/* ---- messages ---- */

static void s_expect_detail(const char *raw, const char *detail) {
    parsed_t *p = s_parse(raw);
    cr_expect(strcmp(p->detail, detail) == 0, "%s: \"%s\", not \"%s\"", raw, p->detail, detail);
    s_free(&p);
}

Test(kv_txq, the_detail_says_what_is_wrong) {
    s_expect_detail("get.a", "");
    s_expect_detail("set.a=1&set.a=2", "set.a given twice");
    s_expect_detail("get.a&get.%61", "get.%61 given twice");
    s_expect_detail("rm.a&set.a=1", "set.a: the key is already written by rm.");
    s_expect_detail("set.a=1&rm.a", "rm.a: the key is already written by set.");
    s_expect_detail("get.a=1", "get.a takes no value");
    s_expect_detail("rm.b=", "rm.b takes no value");
    s_expect_detail("ttl.b=5&set.a=1", "ttl.b without set. of the same key");
    s_expect_detail("get.a&x=1", "x: not a /tx parameter (if., get., set., rm., ttl., token)");
    s_expect_detail("get.", "get.: the key is empty");
    s_expect_detail("", "a /tx names at least one key (if.KEY, get.KEY, set.KEY, rm.KEY)");
    s_expect_detail("get.a&\xFF\x01=1",
                    "??: not a /tx parameter (if., get., set., rm., ttl., token)");
    char query[200];
    memset(query, 'x', 100);
    memcpy(query + 100, "&get.a", sizeof "&get.a");
    parsed_t *p = s_parse(query);
    cr_expect_eq(strncmp(p->detail, query, 64), 0);
    cr_expect_eq(strncmp(p->detail + 64, "...: not a /tx", 14), 0, "%s", p->detail);
    s_free(&p);
}

Test(kv_txq, the_detail_is_cut_to_its_buffer) {
    char detail[8] = "garbage";
    kv_query_err_t err = KV_QUERY_OK;
    kv_txq_t *tx = kv_txq_parse_detail("get.a&get.a", 11, &err, detail, sizeof detail);
    cr_expect_null(tx);
    cr_expect_eq(err, KV_QUERY_INVALID_TRANSACTION);
    cr_expect_str_eq(detail, "get.a g");
    tx = kv_txq_parse_detail("get.a=1", 7, &err, NULL, 100); /* no buffer: no detail */
    cr_expect_eq(err, KV_QUERY_INVALID_TRANSACTION);
    tx = kv_txq_parse_detail("get.a", 5, &err, detail, 0);
    cr_expect_not_null(tx);
    cr_expect_str_eq(detail, "get.a g", "size 0: untouched");
    kv_txq_destroy(&tx);
    cr_expect_null(tx);
    kv_txq_destroy(&tx); /* safe on NULL */
    kv_txq_destroy(NULL);
}

/* ---- robustness ---- */

/* Steps raw (len letters of alphabet, NUL-terminated) to the next query
 * in counting order, growing it by one letter after the last of a length;
 * false past max letters. */
static bool s_next_query(char *raw, size_t max, const char *alphabet) {
    size_t len = strlen(raw);
    for (size_t i = 0; i < len; i++) {
        const char *next = strchr(alphabet, raw[i]) + 1;
        if (*next) {
            raw[i] = *next;
            return true;
        }
        raw[i] = alphabet[0]; /* carry into the next letter */
    }
    if (len == max) return false;
    raw[len] = alphabet[0];
    raw[len + 1] = '\0';
    return true;
}

/* Every query up to 5 characters over the characters that matter parses
 * within its buffer (AddressSanitizer); the valid ones (only rm. can be
 * spelled) give non-empty keys, each removed. */
Test(kv_txq, every_short_query_parses_within_its_buffers) {
    char raw[6] = "";
    size_t valid = 0;
    do {
        parsed_t *p = s_parse(raw);
        for (size_t i = 0; p->tx && i < kv_txq_count(p->tx); i++) {
            const kv_txq_key_t *key = kv_txq_key(p->tx, i);
            cr_assert(key->key.present && key->key.len > 0, "%s", raw);
            cr_assert_eq(key->write, KV_TXQ_RM, "%s", raw);
            valid++;
        }
        s_free(&p);
    } while (s_next_query(raw, sizeof raw - 1, "rm.=&%1a"));
    cr_expect_gt(valid, 0);
}
