/*  test_kv_query.c: parsing the raw query string and validating it the way
 *  docs/api.md orders the checks; iterating over every field for the
 *  multi-key routes (repeats, prefixed names, values or none).
 *
 *  Every query is copied into a buffer of exactly its length, without a NUL
 *  after it, so AddressSanitizer catches any read past the end; the exhaustive
 *  test does that for every short query over the characters that matter.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv_limits.h"
#include "kv_query.h"

#define ASCII "a"
#define CYRILLIC "%D0%B6"       /* ж, 2 bytes */
#define CJK "%E4%B8%AD"         /* 中, 3 bytes */
#define EMOJI "%F0%9F%98%80"    /* 😀, 4 bytes */
#define RAW_CYRILLIC "\xD0\xB6" /* ж, sent unescaped */

/* A parsed query and the buffer its parameters point into. */
typedef struct {
    char *buffer; /* the query's bytes, decoded in place, no NUL after them */
    size_t len;   /* the query's length before decoding */
    kv_query_t q; /* the result */
} parsed_t;

static parsed_t s_parse(const char *raw) {
    parsed_t parsed = {.len = strlen(raw)};
    parsed.buffer = malloc(parsed.len ? parsed.len : 1);
    cr_assert_not_null(parsed.buffer);
    memcpy(parsed.buffer, raw, parsed.len);
    kv_query_parse(parsed.buffer, parsed.len, &parsed.q);
    return parsed;
}

static void s_release(parsed_t *parsed) {
    free(parsed->buffer);
    parsed->buffer = NULL;
}

/* The verdict on raw: for /set when with_value, else for /get, /rm, /is. */
static kv_query_err_t s_check(const char *raw, bool with_value) {
    parsed_t parsed = s_parse(raw);
    kv_query_err_t err = kv_query_check(&parsed.q, with_value);
    s_release(&parsed);
    return err;
}

/* Appends count copies of unit to a string of capacity KV_MAX_URI_BYTES. */
static void s_append(char *query, const char *unit, int count) {
    size_t len = strlen(query);
    size_t unit_len = strlen(unit);
    cr_assert_lt(len + unit_len * (size_t)count, KV_MAX_URI_BYTES);
    for (int i = 0; i < count; i++, len += unit_len) memcpy(query + len, unit, unit_len);
    query[len] = '\0';
}

/* The verdict on "k=" followed by key_count key_units and, when value_unit
 * is not NULL, "&v=" followed by value_count value_units. */
static kv_query_err_t s_check_repeated(const char *key_unit, int key_count, const char *value_unit,
                                       int value_count, bool with_value) {
    static char query[KV_MAX_URI_BYTES];
    strcpy(query, "k=");
    s_append(query, key_unit, key_count);
    if (value_unit) {
        s_append(query, "&v=", 1);
        s_append(query, value_unit, value_count);
    }
    return s_check(query, with_value);
}

/* Asserts a verdict and names both codes when it fails. */
#define ASSERT_VERDICT(got, want)                                                                  \
    do {                                                                                           \
        kv_query_err_t got_ = (got);                                                               \
        cr_assert_eq(got_, (want), "got %s, want %s", kv_query_err_code(got_),                     \
                     kv_query_err_code(want));                                                     \
    } while (0)

/* Asserts that a parameter is present and decoded to want[0..want_len). */
#define ASSERT_PARAM_BYTES(param, want, want_len)                                                  \
    do {                                                                                           \
        const kv_param_t *param_ = &(param);                                                       \
        cr_assert(param_->present, #param " is absent");                                           \
        cr_assert(param_->len == (want_len) && memcmp(param_->ptr, (want), (want_len)) == 0,       \
                  #param " is \"%.*s\"", (int)param_->len, param_->ptr);                           \
    } while (0)

#define ASSERT_PARAM(param, text) ASSERT_PARAM_BYTES(param, text, strlen(text))

/* ---- parsing and decoding ---- */

Test(kv_query, plus_decodes_to_space) {
    parsed_t parsed = s_parse("k=hello+big+world");
    ASSERT_PARAM(parsed.q.k, "hello big world");
    cr_assert_not(parsed.q.k.bad_escape);
    s_release(&parsed);
}

Test(kv_query, percent_escapes_decode_in_either_case) {
    parsed_t parsed = s_parse("k=%41%6a%4A%6B%7e");
    ASSERT_PARAM(parsed.q.k, "AjJk~");
    cr_assert_not(parsed.q.k.bad_escape);
    s_release(&parsed);
}

Test(kv_query, escaped_plus_and_percent_are_literal) {
    parsed_t parsed = s_parse("k=1%2B1%3D2&v=100%25");
    ASSERT_PARAM(parsed.q.k, "1+1=2");
    ASSERT_PARAM(parsed.q.v, "100%");
    s_release(&parsed);
}

Test(kv_query, text_is_decoded_once) {
    parsed_t parsed = s_parse("k=%2541&v=%252B");
    ASSERT_PARAM(parsed.q.k, "%41");
    ASSERT_PARAM(parsed.q.v, "%2B");
    s_release(&parsed);
}

Test(kv_query, escaped_separators_are_data) {
    parsed_t parsed = s_parse("k=a%26v%3Db");
    ASSERT_PARAM(parsed.q.k, "a&v=b");
    cr_assert_not(parsed.q.v.present);
    s_release(&parsed);
}

Test(kv_query, value_may_hold_a_raw_equals_sign) {
    parsed_t parsed = s_parse("k=a=b&v===");
    ASSERT_PARAM(parsed.q.k, "a=b");
    ASSERT_PARAM(parsed.q.v, "==");
    s_release(&parsed);
}

Test(kv_query, unescaped_utf8_passes_through) {
    parsed_t parsed = s_parse("k=" RAW_CYRILLIC "+" RAW_CYRILLIC);
    ASSERT_PARAM(parsed.q.k, RAW_CYRILLIC " " RAW_CYRILLIC);
    s_release(&parsed);
}

Test(kv_query, escaped_utf8_decodes_to_its_bytes) {
    parsed_t parsed = s_parse("k=" CYRILLIC CJK EMOJI);
    ASSERT_PARAM(parsed.q.k, "\xD0\xB6\xE4\xB8\xAD\xF0\x9F\x98\x80");
    s_release(&parsed);
}

Test(kv_query, every_known_parameter_is_decoded) {
    parsed_t parsed = s_parse("limit=%31%30&cursor=p%3A7&node=tcp%3A%2F%2Fhost%3A5555&k=a&v=b");
    ASSERT_PARAM(parsed.q.limit, "10");
    ASSERT_PARAM(parsed.q.cursor, "p:7");
    ASSERT_PARAM(parsed.q.node, "tcp://host:5555");
    ASSERT_PARAM(parsed.q.k, "a");
    ASSERT_PARAM(parsed.q.v, "b");
    s_release(&parsed);
}

Test(kv_query, broken_escape_is_kept_and_the_rest_still_decodes) {
    parsed_t parsed = s_parse("k=%zz+%41%");
    ASSERT_PARAM(parsed.q.k, "%zz A%");
    cr_assert(parsed.q.k.bad_escape);
    s_release(&parsed);
}

Test(kv_query, percent_at_the_end_is_a_broken_escape) {
    parsed_t parsed = s_parse("v=1&k=ab%");
    ASSERT_PARAM(parsed.q.k, "ab%");
    cr_assert(parsed.q.k.bad_escape);
    cr_assert_not(parsed.q.v.bad_escape);
    s_release(&parsed);
}

Test(kv_query, percent_and_one_digit_at_the_end_is_a_broken_escape) {
    parsed_t parsed = s_parse("k=ab%4");
    ASSERT_PARAM(parsed.q.k, "ab%4");
    cr_assert(parsed.q.k.bad_escape);
    s_release(&parsed);
}

Test(kv_query, broken_escape_does_not_reach_into_the_next_parameter) {
    parsed_t parsed = s_parse("k=%4&v=1&limit=%");
    ASSERT_PARAM(parsed.q.k, "%4");
    cr_assert(parsed.q.k.bad_escape);
    ASSERT_PARAM(parsed.q.v, "1");
    cr_assert_not(parsed.q.v.bad_escape);
    ASSERT_PARAM(parsed.q.limit, "%");
    cr_assert(parsed.q.limit.bad_escape);
    s_release(&parsed);
}

Test(kv_query, percent_00_decodes_to_a_nul_byte) {
    parsed_t parsed = s_parse("k=a%00b");
    ASSERT_PARAM_BYTES(parsed.q.k, "a\0b", 3);
    cr_assert_not(parsed.q.k.bad_escape);
    s_release(&parsed);
}

Test(kv_query, first_occurrence_of_a_name_wins) {
    parsed_t parsed = s_parse("k=first&v=one&k=second&v=%zz&v");
    ASSERT_PARAM(parsed.q.k, "first");
    ASSERT_PARAM(parsed.q.v, "one");
    cr_assert_not(parsed.q.v.bad_escape);
    s_release(&parsed);
}

Test(kv_query, parameter_without_equals_is_present_and_empty) {
    parsed_t parsed = s_parse("k=a&v");
    ASSERT_PARAM(parsed.q.v, "");
    cr_assert_not_null(parsed.q.v.ptr);
    s_release(&parsed);
}

Test(kv_query, empty_query_has_no_parameters) {
    kv_query_t q;
    memset(&q, 0x5A, sizeof q); /* parsing must not leave anything behind */
    kv_query_parse(NULL, 0, &q);
    const kv_param_t *all[] = {&q.k, &q.v, &q.limit, &q.cursor, &q.node};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        cr_assert_not(all[i]->present);
        cr_assert_null(all[i]->ptr);
        cr_assert_eq(all[i]->len, 0);
        cr_assert_not(all[i]->bad_escape);
    }
}

Test(kv_query, unknown_parameters_are_ignored_and_left_undecoded) {
    parsed_t parsed = s_parse("key=1&kk=%zz&K=3&vv=4&x=%41&k=a");
    ASSERT_PARAM(parsed.q.k, "a");
    cr_assert_not(parsed.q.k.bad_escape);
    cr_assert_not(parsed.q.v.present);
    cr_assert_eq(memcmp(parsed.buffer, "key=1&kk=%zz&K=3&vv=4&x=%41&", 28), 0);
    s_release(&parsed);
}

Test(kv_query, empty_fields_are_skipped) {
    parsed_t parsed = s_parse("&&k=a&&=x&v=b&");
    ASSERT_PARAM(parsed.q.k, "a");
    ASSERT_PARAM(parsed.q.v, "b");
    s_release(&parsed);
}

/* Names are decoded like values before they are compared: "%6B" is k,
 * "k+" is "k " and no known name. */
Test(kv_query, names_are_decoded_before_they_are_matched) {
    parsed_t parsed = s_parse("k+=b&%6B=a&%76=%31&k=c");
    ASSERT_PARAM(parsed.q.k, "a");
    ASSERT_PARAM(parsed.q.v, "1");
    s_release(&parsed);
}

Test(kv_query, name_with_a_broken_escape_is_no_known_name) {
    parsed_t parsed = s_parse("k%=a&%zk=b&k%6=c&v=1");
    cr_assert_not(parsed.q.k.present);
    ASSERT_PARAM(parsed.q.v, "1");
    s_release(&parsed);
}

Test(kv_query, escaped_equals_in_a_name_is_part_of_the_name) {
    parsed_t parsed = s_parse("k%3Da=b&v%3D=c");
    cr_assert_not(parsed.q.k.present);
    cr_assert_not(parsed.q.v.present);
    s_release(&parsed);
}

Test(kv_query, prefixed_names_are_not_single_key_parameters) {
    parsed_t parsed = s_parse("set.k=1&get.k&k.=2&v.=3");
    cr_assert_not(parsed.q.k.present);
    cr_assert_not(parsed.q.v.present);
    s_release(&parsed);
}

/* Every query of up to five characters over an alphabet of names,
 * separators and escapes parses inside its buffer, and every parameter
 * points into it. AddressSanitizer does the rest. */
Test(kv_query, every_short_query_parses_within_its_buffer) {
    static const char alphabet[] = "kv=%&+4z";
    const size_t letters = sizeof alphabet - 1;
    char raw[6];
    for (size_t len = 0; len < sizeof raw; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++) total *= letters;
        for (size_t n = 0; n < total; n++) {
            for (size_t i = 0, rest = n; i < len; i++, rest /= letters)
                raw[i] = alphabet[rest % letters];
            raw[len] = '\0';
            parsed_t parsed = s_parse(raw);
            const kv_param_t *all[] = {&parsed.q.k, &parsed.q.v};
            for (size_t p = 0; p < 2; p++) {
                if (!all[p]->present) continue;
                cr_assert(all[p]->ptr >= parsed.buffer, "%s", raw);
                cr_assert(all[p]->ptr + all[p]->len <= parsed.buffer + parsed.len, "%s", raw);
            }
            kv_query_check(&parsed.q, true);
            s_release(&parsed);
        }
    }
}

/* ---- every field, in order (multi-key routes) ---- */

/* A query read field by field, and the buffers the fields point into. */
typedef struct {
    char *query;                 /* the raw bytes, exactly len, no NUL after them */
    char *out;                   /* the decoded bytes, exactly len */
    size_t len;                  /* of the raw query */
    size_t count;                /* fields read */
    kv_query_field_t fields[16]; /* the first 16 of them */
} fields_t;

static fields_t *s_fields(const char *raw) {
    fields_t *f = calloc(1, sizeof(*f));
    cr_assert_not_null(f);
    f->len = strlen(raw);
    f->query = malloc(f->len ? f->len : 1);
    f->out = malloc(f->len ? f->len : 1);
    cr_assert(f->query && f->out);
    memcpy(f->query, raw, f->len);
    kv_query_iter_t it;
    kv_query_iter_init(&it, f->query, f->len, f->out);
    kv_query_field_t field;
    while (kv_query_next(&it, &field)) {
        if (f->count < sizeof f->fields / sizeof f->fields[0]) f->fields[f->count] = field;
        f->count++;
        cr_assert_leq(it.out_len, f->len, "%s: decoded past the raw length", raw);
    }
    cr_assert_eq(memcmp(f->query, raw, f->len), 0, "%s: the query was modified", raw);
    return f;
}

static void s_fields_free(fields_t **f_p) {
    free((*f_p)->query);
    free((*f_p)->out);
    free(*f_p);
    *f_p = NULL;
}

/* Asserts that a parameter is present, decoded to text, with no broken escape. */
#define ASSERT_CLEAN(param, text)                                                                  \
    do {                                                                                           \
        ASSERT_PARAM(param, text);                                                                 \
        cr_assert_not((param).bad_escape, #param " has a broken escape");                          \
    } while (0)

#define ASSERT_RAW_NAME(field, text)                                                               \
    cr_assert((field).raw_name_len == strlen(text) &&                                              \
                  memcmp((field).raw_name, (text), strlen(text)) == 0,                             \
              "raw name is \"%.*s\"", (int)(field).raw_name_len, (field).raw_name)

Test(kv_query_iter, empty_query_has_no_fields) {
    kv_query_iter_t it;
    kv_query_field_t field;
    kv_query_iter_init(&it, NULL, 0, NULL);
    cr_assert_not(kv_query_next(&it, &field));
    cr_assert_not(kv_query_next(&it, &field)); /* and stays at the end */
    fields_t *f = s_fields("&&&");
    cr_assert_eq(f->count, 0);
    s_fields_free(&f);
}

Test(kv_query_iter, every_occurrence_of_k_comes_in_request_order) {
    fields_t *f = s_fields("k=a&k=b&limit=3&k=a&%6B=c&k=");
    cr_assert_eq(f->count, 6);
    const char *keys[] = {"a", "b", NULL, "a", "c", ""};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(f->fields[i].prefix, KV_QUERY_PREFIX_NONE);
        cr_assert_not(f->fields[i].key.present);
        if (!keys[i]) {
            cr_assert_not(kv_query_name_is(&f->fields[i], "k"));
            continue;
        }
        cr_assert(kv_query_name_is(&f->fields[i], "k"), "field %zu", i);
        ASSERT_CLEAN(f->fields[i].value, keys[i]);
    }
    ASSERT_RAW_NAME(f->fields[4], "%6B");
    s_fields_free(&f);
}

Test(kv_query_iter, each_prefix_gives_its_kind_and_key) {
    fields_t *f = s_fields("if.a=3&get.b&set.c=x&rm.d&ttl.c=60&token=t");
    cr_assert_eq(f->count, 6);
    static const kv_query_prefix_t kinds[] = {KV_QUERY_PREFIX_IF,  KV_QUERY_PREFIX_GET,
                                              KV_QUERY_PREFIX_SET, KV_QUERY_PREFIX_RM,
                                              KV_QUERY_PREFIX_TTL, KV_QUERY_PREFIX_NONE};
    static const char *keys[] = {"a", "b", "c", "d", "c"};
    for (size_t i = 0; i < 6; i++) cr_assert_eq(f->fields[i].prefix, kinds[i], "field %zu", i);
    for (size_t i = 0; i < 5; i++) ASSERT_CLEAN(f->fields[i].key, keys[i]);
    ASSERT_CLEAN(f->fields[0].value, "3");
    ASSERT_CLEAN(f->fields[2].value, "x");
    ASSERT_CLEAN(f->fields[4].value, "60");
    ASSERT_CLEAN(f->fields[1].name, "get.b");
    ASSERT_RAW_NAME(f->fields[2], "set.c");
    cr_assert(kv_query_name_is(&f->fields[5], "token"));
    cr_assert_not(f->fields[5].key.present);
    s_fields_free(&f);
}

Test(kv_query_iter, a_dot_in_the_key_belongs_to_the_key) {
    fields_t *f = s_fields("set.a.b=1&get..x&rm.a.&if...=0");
    cr_assert_eq(f->count, 4);
    ASSERT_CLEAN(f->fields[0].key, "a.b");
    ASSERT_CLEAN(f->fields[0].value, "1");
    ASSERT_CLEAN(f->fields[1].key, ".x");
    ASSERT_CLEAN(f->fields[2].key, "a.");
    ASSERT_CLEAN(f->fields[3].key, "..");
    s_fields_free(&f);
}

Test(kv_query_iter, escaped_dot_is_no_prefix_separator) {
    fields_t *f = s_fields("set%2Ea=1&get%2eb&set%2E.c=2");
    cr_assert_eq(f->count, 3);
    cr_assert_eq(f->fields[0].prefix, KV_QUERY_PREFIX_NONE);
    ASSERT_CLEAN(f->fields[0].name, "set.a"); /* decoded, but matched raw */
    cr_assert_not(f->fields[0].key.present);
    cr_assert_eq(f->fields[1].prefix, KV_QUERY_PREFIX_NONE);
    ASSERT_CLEAN(f->fields[1].name, "get.b");
    cr_assert_eq(f->fields[2].prefix, KV_QUERY_PREFIX_NONE);
    ASSERT_CLEAN(f->fields[2].name, "set..c");
    s_fields_free(&f);
}

Test(kv_query_iter, escaped_prefix_letters_are_no_prefix) {
    fields_t *f = s_fields("%73et.a=1&SET.b=2&Get.c&set=3&sett.d=4&rm=5");
    cr_assert_eq(f->count, 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(f->fields[i].prefix, KV_QUERY_PREFIX_NONE, "field %zu", i);
    ASSERT_CLEAN(f->fields[0].name, "set.a");
    s_fields_free(&f);
}

Test(kv_query_iter, escapes_in_a_prefixed_name_are_decoded_into_the_key) {
    fields_t *f = s_fields("set.a%20b=1&set.a+b=2&get.%D0%B6&set.1%2B1%3D2=3&rm.%26%25");
    cr_assert_eq(f->count, 5);
    ASSERT_CLEAN(f->fields[0].key, "a b");
    ASSERT_CLEAN(f->fields[1].key, "a b");
    ASSERT_CLEAN(f->fields[2].key, "\xD0\xB6");
    ASSERT_CLEAN(f->fields[3].key, "1+1=2");
    ASSERT_CLEAN(f->fields[3].value, "3");
    ASSERT_CLEAN(f->fields[4].key, "&%");
    ASSERT_RAW_NAME(f->fields[3], "set.1%2B1%3D2");
    ASSERT_CLEAN(f->fields[3].name, "set.1+1=2");
    s_fields_free(&f);
}

Test(kv_query_iter, the_first_raw_equals_sign_splits_name_from_value) {
    fields_t *f = s_fields("set.a=b=c&set.x%3Dy=z&k==");
    cr_assert_eq(f->count, 3);
    ASSERT_CLEAN(f->fields[0].key, "a");
    ASSERT_CLEAN(f->fields[0].value, "b=c");
    ASSERT_CLEAN(f->fields[1].key, "x=y");
    ASSERT_CLEAN(f->fields[1].value, "z");
    ASSERT_CLEAN(f->fields[2].value, "=");
    s_fields_free(&f);
}

Test(kv_query_iter, no_value_and_an_empty_value_differ) {
    fields_t *f = s_fields("get.k&get.k=&rm.x&rm.x=&k&k=");
    cr_assert_eq(f->count, 6);
    for (size_t i = 0; i < 6; i += 2) {
        cr_assert_not(f->fields[i].value.present, "field %zu has a value", i);
        cr_assert_null(f->fields[i].value.ptr);
        ASSERT_CLEAN(f->fields[i + 1].value, "");
    }
    s_fields_free(&f);
}

Test(kv_query_iter, empty_key_after_a_prefix_is_present_and_empty) {
    fields_t *f = s_fields("set.=1&get.");
    cr_assert_eq(f->count, 2);
    cr_assert_eq(f->fields[0].prefix, KV_QUERY_PREFIX_SET);
    ASSERT_CLEAN(f->fields[0].key, "");
    ASSERT_VERDICT(kv_query_check_key(&f->fields[0].key), KV_QUERY_EMPTY_KEY);
    ASSERT_CLEAN(f->fields[1].key, "");
    s_fields_free(&f);
}

Test(kv_query_iter, empty_fields_are_skipped_and_an_empty_name_is_kept) {
    fields_t *f = s_fields("&&k=a&&=x&");
    cr_assert_eq(f->count, 2);
    cr_assert(kv_query_name_is(&f->fields[0], "k"));
    ASSERT_CLEAN(f->fields[1].name, "");
    ASSERT_CLEAN(f->fields[1].value, "x");
    s_fields_free(&f);
}

Test(kv_query_iter, broken_escapes_are_flagged_where_they_are) {
    fields_t *f = s_fields("set.%zz=1&set.a=%4&%=2&get.b%&k=%E4%B8");
    cr_assert_eq(f->count, 5);
    cr_assert(f->fields[0].key.bad_escape);
    cr_assert(f->fields[0].name.bad_escape);
    ASSERT_CLEAN(f->fields[0].value, "1");
    ASSERT_PARAM(f->fields[0].key, "%zz");
    ASSERT_CLEAN(f->fields[1].key, "a");
    cr_assert(f->fields[1].value.bad_escape);
    ASSERT_PARAM(f->fields[1].value, "%4");
    cr_assert(f->fields[2].name.bad_escape);
    ASSERT_CLEAN(f->fields[2].value, "2");
    cr_assert(f->fields[3].key.bad_escape);
    cr_assert_not(f->fields[3].value.present);
    ASSERT_CLEAN(f->fields[4].value, "\xE4\xB8"); /* well escaped, not UTF-8: */
    ASSERT_VERDICT(kv_query_check_value(&f->fields[4].value), KV_QUERY_INVALID_ENCODING);
    s_fields_free(&f);
}

Test(kv_query_iter, a_broken_escape_never_reaches_into_the_next_field) {
    fields_t *f = s_fields("set.a=%4&set.b%=%2&k=%");
    cr_assert_eq(f->count, 3);
    ASSERT_PARAM(f->fields[0].value, "%4");
    ASSERT_PARAM(f->fields[1].key, "b%");
    ASSERT_PARAM(f->fields[1].value, "%2");
    ASSERT_PARAM(f->fields[2].value, "%");
    cr_assert(f->fields[2].value.bad_escape);
    s_fields_free(&f);
}

Test(kv_query_iter, decoded_fields_stay_valid_while_later_ones_are_read) {
    fields_t *f = s_fields("set.%41=%42&set.%43=%44&get.%45");
    cr_assert_eq(f->count, 3);
    ASSERT_CLEAN(f->fields[0].key, "A");
    ASSERT_CLEAN(f->fields[0].value, "B");
    ASSERT_CLEAN(f->fields[1].key, "C");
    ASSERT_CLEAN(f->fields[1].value, "D");
    ASSERT_CLEAN(f->fields[2].key, "E");
    s_fields_free(&f);
}

Test(kv_query_iter, keys_and_values_are_validated_as_everywhere) {
    fields_t *f = s_fields("set.a=1&set.%00=1&set.a=%FF&if.b=2&rm.x");
    ASSERT_VERDICT(kv_query_check_key(&f->fields[0].key), KV_QUERY_OK);
    ASSERT_VERDICT(kv_query_check_value(&f->fields[0].value), KV_QUERY_OK);
    ASSERT_VERDICT(kv_query_check_key(&f->fields[1].key), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(kv_query_check_value(&f->fields[2].value), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(kv_query_check_value(&f->fields[4].value), KV_QUERY_MISSING_VALUE);
    kv_param_t absent = {0};
    ASSERT_VERDICT(kv_query_check_key(&absent), KV_QUERY_MISSING_KEY);
    s_fields_free(&f);
}

Test(kv_query_iter, key_and_value_length_limits_count_characters) {
    char query[KV_MAX_URI_BYTES] = "set.";
    s_append(query, CYRILLIC, 64);
    s_append(query, "=", 1);
    s_append(query, EMOJI, 256);
    s_append(query, "&get.", 1);
    s_append(query, ASCII, 65);
    s_append(query, "&set.a=", 1);
    s_append(query, ASCII, 257);
    fields_t *f = s_fields(query);
    cr_assert_eq(f->count, 3);
    ASSERT_VERDICT(kv_query_check_key(&f->fields[0].key), KV_QUERY_OK);
    ASSERT_VERDICT(kv_query_check_value(&f->fields[0].value), KV_QUERY_OK);
    ASSERT_VERDICT(kv_query_check_key(&f->fields[1].key), KV_QUERY_KEY_TOO_LONG);
    ASSERT_VERDICT(kv_query_check_value(&f->fields[2].value), KV_QUERY_VALUE_TOO_LONG);
    s_fields_free(&f);
}

/* Every query of up to five characters over names, prefixes' parts,
 * separators and escapes is read inside its buffers, never modified, and
 * every decoded parameter points into the out buffer. */
Test(kv_query_iter, every_short_query_iterates_within_its_buffers) {
    static const char alphabet[] = "k.=%&+4s";
    const size_t letters = sizeof alphabet - 1;
    char raw[6];
    for (size_t len = 0; len < sizeof raw; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++) total *= letters;
        for (size_t n = 0; n < total; n++) {
            for (size_t i = 0, rest = n; i < len; i++, rest /= letters)
                raw[i] = alphabet[rest % letters];
            raw[len] = '\0';
            fields_t *f = s_fields(raw);
            for (size_t i = 0; i < f->count && i < 16; i++) {
                const kv_param_t *all[] = {&f->fields[i].name, &f->fields[i].value};
                for (size_t p = 0; p < 2; p++) {
                    if (!all[p]->present) continue;
                    cr_assert(all[p]->ptr >= f->out, "%s", raw);
                    cr_assert(all[p]->ptr + all[p]->len <= f->out + f->len, "%s", raw);
                }
            }
            s_fields_free(&f);
        }
    }
}

/* ---- validation, one check at a time ---- */

Test(kv_query, plain_key_is_valid) {
    ASSERT_VERDICT(s_check("k=hello", false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check("k=hello&v=world", true), KV_QUERY_OK);
}

Test(kv_query, key_of_one_space_is_valid) {
    ASSERT_VERDICT(s_check("k=+", false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check("k=%20", false), KV_QUERY_OK);
}

Test(kv_query, query_without_k_is_missing_key) {
    ASSERT_VERDICT(s_check("", false), KV_QUERY_MISSING_KEY);
    ASSERT_VERDICT(s_check("v=1", true), KV_QUERY_MISSING_KEY);
    ASSERT_VERDICT(s_check("key=a&K=b", false), KV_QUERY_MISSING_KEY);
}

Test(kv_query, k_with_nothing_after_it_is_empty_key) {
    ASSERT_VERDICT(s_check("k=", false), KV_QUERY_EMPTY_KEY);
    ASSERT_VERDICT(s_check("k", false), KV_QUERY_EMPTY_KEY);
    ASSERT_VERDICT(s_check("k=&v=x", true), KV_QUERY_EMPTY_KEY);
}

Test(kv_query, broken_escape_in_key_is_invalid_encoding) {
    static const char *queries[] = {"k=%",   "k=%4",   "k=%zz", "k=a%",  "k=a%4",
                                    "k=%G0", "k=%%41", "k=%4g", "k=%-1", "k=% 1"};
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++)
        ASSERT_VERDICT(s_check(queries[i], false), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, nul_in_key_is_invalid_encoding) {
    ASSERT_VERDICT(s_check("k=%00", false), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(s_check("k=a%00", false), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(s_check("k=%00a", false), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, bytes_that_are_not_utf8_in_key_are_invalid_encoding) {
    static const char *queries[] = {
        "k=%FF",          /* never in UTF-8 */
        "k=%C0%AF",       /* overlong '/' */
        "k=%E0%80%AF",    /* overlong '/' */
        "k=%ED%A0%80",    /* surrogate U+D800 */
        "k=%F4%90%80%80", /* U+110000 */
        "k=%D0",          /* truncated ж */
        "k=%E4%B8",       /* truncated 中 */
        "k=%F0%9F%98a",   /* truncated 😀 */
        "k=%80",          /* stray continuation */
        "k=a\xFF",        /* sent unescaped */
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++)
        ASSERT_VERDICT(s_check(queries[i], false), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, bad_value_on_set_is_invalid_encoding) {
    static const char *queries[] = {"k=a&v=%",   "k=a&v=%4",     "k=a&v=%zz",       "k=a&v=x%00",
                                    "k=a&v=%FF", "k=a&v=%C0%AF", "k=a&v=%ED%A0%80", "k=a&v=%E4%B8"};
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++)
        ASSERT_VERDICT(s_check(queries[i], true), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, value_sent_to_get_is_ignored) {
    ASSERT_VERDICT(s_check("k=a&v=%zz", false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check("k=a&v=%00", false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, ASCII, 257, false), KV_QUERY_OK);
}

Test(kv_query, set_without_v_is_missing_value) {
    ASSERT_VERDICT(s_check("k=a", true), KV_QUERY_MISSING_VALUE);
    ASSERT_VERDICT(s_check("k=a&value=1&V=2", true), KV_QUERY_MISSING_VALUE);
}

Test(kv_query, empty_value_is_valid_on_set) {
    ASSERT_VERDICT(s_check("k=a&v=", true), KV_QUERY_OK);
    ASSERT_VERDICT(s_check("k=a&v", true), KV_QUERY_OK);
}

/* ---- which check wins ---- */

Test(kv_query, missing_key_wins_over_a_bad_value) {
    ASSERT_VERDICT(s_check("v=%zz", true), KV_QUERY_MISSING_KEY);
}

Test(kv_query, empty_key_wins_over_a_bad_value) {
    ASSERT_VERDICT(s_check("k=&v=%zz", true), KV_QUERY_EMPTY_KEY);
    ASSERT_VERDICT(s_check("k=&v=%FF", true), KV_QUERY_EMPTY_KEY);
}

Test(kv_query, empty_key_wins_over_a_missing_value) {
    ASSERT_VERDICT(s_check("k=", true), KV_QUERY_EMPTY_KEY);
}

Test(kv_query, bad_value_wins_over_a_too_long_key) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, "%zz", 1, true), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, "%00", 1, true), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, bad_byte_after_65_key_characters_is_invalid_encoding) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
    ASSERT_VERDICT(s_check_repeated(CYRILLIC, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
    char query[KV_MAX_URI_BYTES] = "k=";
    s_append(query, CYRILLIC, 65);
    s_append(query, "%FF", 1);
    ASSERT_VERDICT(s_check(query, false), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, bad_key_on_set_without_v_is_invalid_encoding) {
    ASSERT_VERDICT(s_check("k=%zz", true), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(s_check("k=%FF", true), KV_QUERY_INVALID_ENCODING);
}

Test(kv_query, too_long_key_on_set_without_v_is_key_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, NULL, 0, true), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, too_long_key_wins_over_a_too_long_value) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, ASCII, 257, true), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, repeated_key_is_judged_by_its_first_occurrence) {
    ASSERT_VERDICT(s_check("k=&k=a", false), KV_QUERY_EMPTY_KEY);
    ASSERT_VERDICT(s_check("k=a&k=%zz", false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check("k=%zz&k=a", false), KV_QUERY_INVALID_ENCODING);
    ASSERT_VERDICT(s_check("k=a&v=%zz&v=b", true), KV_QUERY_INVALID_ENCODING);
}

/* ---- limits count code points, whatever their size ---- */

Test(kv_query, key_of_64_ascii_letters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 64, NULL, 0, false), KV_QUERY_OK);
}

Test(kv_query, key_of_65_ascii_letters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, key_of_64_cyrillic_letters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(CYRILLIC, 64, NULL, 0, false), KV_QUERY_OK);
    ASSERT_VERDICT(s_check_repeated(RAW_CYRILLIC, 64, NULL, 0, false), KV_QUERY_OK);
}

Test(kv_query, key_of_65_cyrillic_letters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(CYRILLIC, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
    ASSERT_VERDICT(s_check_repeated(RAW_CYRILLIC, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, key_of_64_cjk_characters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(CJK, 64, NULL, 0, false), KV_QUERY_OK);
}

Test(kv_query, key_of_65_cjk_characters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(CJK, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, key_of_64_emoji_is_valid) {
    ASSERT_VERDICT(s_check_repeated(EMOJI, 64, NULL, 0, false), KV_QUERY_OK);
}

Test(kv_query, key_of_65_emoji_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(EMOJI, 65, NULL, 0, false), KV_QUERY_KEY_TOO_LONG);
}

Test(kv_query, value_of_256_ascii_letters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, ASCII, 256, true), KV_QUERY_OK);
}

Test(kv_query, value_of_257_ascii_letters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, ASCII, 257, true), KV_QUERY_VALUE_TOO_LONG);
}

Test(kv_query, value_of_256_cyrillic_letters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, CYRILLIC, 256, true), KV_QUERY_OK);
}

Test(kv_query, value_of_257_cyrillic_letters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, CYRILLIC, 257, true), KV_QUERY_VALUE_TOO_LONG);
}

Test(kv_query, value_of_256_cjk_characters_is_valid) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, CJK, 256, true), KV_QUERY_OK);
}

Test(kv_query, value_of_257_cjk_characters_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, CJK, 257, true), KV_QUERY_VALUE_TOO_LONG);
}

Test(kv_query, value_of_256_emoji_is_valid) {
    ASSERT_VERDICT(s_check_repeated(EMOJI, 64, EMOJI, 256, true), KV_QUERY_OK);
}

Test(kv_query, value_of_257_emoji_is_too_long) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, EMOJI, 257, true), KV_QUERY_VALUE_TOO_LONG);
}

Test(kv_query, value_of_256_spaces_written_as_plus_is_valid) {
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, "+", 256, true), KV_QUERY_OK);
    ASSERT_VERDICT(s_check_repeated(ASCII, 1, "+", 257, true), KV_QUERY_VALUE_TOO_LONG);
}

/* ---- codes and messages ---- */

Test(kv_query, every_error_has_its_api_code) {
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_OK), "OK");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_MISSING_KEY), "MISSING_KEY_PARAM");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_EMPTY_KEY), "EMPTY_KEY");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_INVALID_ENCODING), "INVALID_ENCODING");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_KEY_TOO_LONG), "MAXIMUM_KEY_LENGTH_REACHED");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_MISSING_VALUE), "MISSING_VALUE_PARAM");
    cr_assert_str_eq(kv_query_err_code(KV_QUERY_VALUE_TOO_LONG), "MAXIMUM_VALUE_LENGTH_REACHED");
}

Test(kv_query, every_error_has_its_own_message) {
    for (int a = KV_QUERY_OK; a <= KV_QUERY_VALUE_TOO_LONG; a++) {
        const char *message = kv_query_err_message((kv_query_err_t)a);
        cr_assert_not_null(message);
        cr_assert_gt(strlen(message), 0);
        for (int b = KV_QUERY_OK; b < a; b++)
            cr_assert_str_neq(message, kv_query_err_message((kv_query_err_t)b));
    }
}

Test(kv_query, length_messages_name_the_limits) {
    cr_assert_str_eq(kv_query_err_message(KV_QUERY_KEY_TOO_LONG),
                     "key is longer than 64 characters");
    cr_assert_str_eq(kv_query_err_message(KV_QUERY_VALUE_TOO_LONG),
                     "value is longer than 256 characters");
}

/* Key, then value, one at a time gives what the combined check gives,
 * except for a too long key with a broken value: the combined check looks
 * at both encodings before any length (so /tx's set.KEY=VALUE uses the
 * combined check, as /set does). */
Test(kv_query, single_checks_agree_with_the_combined_one) {
    static const char *queries[] = {"k=a&v=b", "k=&v=b", "k=%zz&v=b", "k=a&v=%FF",
                                    "v=1",     "k=a",    "k=a&v="};
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        parsed_t parsed = s_parse(queries[i]);
        kv_query_err_t err = kv_query_check_key(&parsed.q.k);
        if (err == KV_QUERY_OK) err = kv_query_check_value(&parsed.q.v);
        ASSERT_VERDICT(err, kv_query_check(&parsed.q, true));
        s_release(&parsed);
    }
}

Test(kv_query, value_outside_the_enum_gets_an_internal_code) {
    cr_assert_str_eq(kv_query_err_code((kv_query_err_t)99), "INTERNAL_ERROR");
    cr_assert_not_null(kv_query_err_message((kv_query_err_t)99));
}

/* --- versions ---------------------------------------------------------------- */

static kv_query_err_t s_version(const char *text, bool zero_ok, uint64_t *version) {
    kv_param_t param = {text, text ? strlen(text) : 0, text != NULL, false};
    return kv_query_version(&param, zero_ok, version);
}

Test(kv_query, versions_are_decimal_integers_below_2_pow_53) {
    uint64_t version = 0;
    cr_expect_eq(s_version("1", false, &version), KV_QUERY_OK);
    cr_expect_eq(version, 1);
    cr_expect_eq(s_version("9007199254740991", false, &version), KV_QUERY_OK);
    cr_expect_eq(version, KV_VERSION_MAX);
    cr_expect_eq(s_version("007", false, &version), KV_QUERY_OK, "leading zeros are digits");
    cr_expect_eq(version, 7);
    cr_expect_eq(s_version("0", true, &version), KV_QUERY_OK, "0: only if absent");
    cr_expect_eq(version, 0);
    const char *bad[] = {"",
                         "0x1",
                         "-1",
                         "+1",
                         "1.0",
                         "1e3",
                         " 1",
                         "abc",
                         "9007199254740992",
                         "18446744073709551616",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(s_version(bad[i], true, &version), KV_QUERY_INVALID_VERSION, "%s", bad[i]);
    cr_expect_eq(s_version("0", false, &version), KV_QUERY_INVALID_VERSION, "0 where refused");
    cr_expect_eq(s_version(NULL, true, &version), KV_QUERY_INVALID_VERSION, "absent");
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_INVALID_VERSION), "INVALID_VERSION");
}

Test(kv_query, ttls_are_whole_seconds_up_to_ten_years) {
    uint64_t seconds = 0;
    const char *good[] = {"1", "315360000", "0060"};
    const uint64_t values[] = {1, KV_TTL_MAX, 60};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kv_param_t param = {good[i], strlen(good[i]), true, false};
        cr_expect_eq(kv_query_ttl(&param, &seconds), KV_QUERY_OK, "%s", good[i]);
        cr_expect_eq(seconds, values[i], "%s", good[i]);
    }
    const char *bad[] = {"", "0", "315360001", "18446744073709551617", "-1", "1.5", " 1", "1s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv_param_t param = {bad[i], strlen(bad[i]), true, false};
        cr_expect_eq(kv_query_ttl(&param, &seconds), KV_QUERY_INVALID_TTL, "%s", bad[i]);
    }
    kv_param_t absent = {0};
    cr_expect_eq(kv_query_ttl(&absent, &seconds), KV_QUERY_INVALID_TTL);
    kv_param_t broken = {"1", 1, true, true};
    cr_expect_eq(kv_query_ttl(&broken, &seconds), KV_QUERY_INVALID_TTL);
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_INVALID_TTL), "INVALID_TTL");
    cr_expect_str_eq(kv_query_err_code(KV_QUERY_INVALID_TRANSACTION), "INVALID_TRANSACTION");
}

Test(kv_query, if_version_is_parsed_first_occurrence_wins) {
    char query[] = "k=a&ifVersion=5&ifVersion=6";
    kv_query_t q;
    kv_query_parse(query, strlen(query), &q);
    uint64_t version = 0;
    cr_assert(q.if_version.present);
    cr_expect_eq(kv_query_version(&q.if_version, false, &version), KV_QUERY_OK);
    cr_expect_eq(version, 5);
}
