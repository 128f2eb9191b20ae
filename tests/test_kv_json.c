/*  test_kv_json.c: the JSON strings and error bodies the gateway writes.
 *
 *  kv_json_string is the hot path of /get and the bulk reads, so it is
 *  shown on each kind of character it must escape (or leave alone), and
 *  then checked against jansson as the reference reader: for thousands of
 *  random valid UTF-8 strings, including every control character, parsing
 *  the output gives back exactly the input bytes.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_json.h"

/* A string literal that may hold a NUL, as the (bytes, length) pair. */
#define BYTES(literal) (literal), (sizeof(literal) - 1)

/* Writes s as a JSON string into a buffer of exactly the worst-case size
 * (so AddressSanitizer sees any overrun) and returns it NUL-terminated. */
static char *s_quote(const char *s, size_t len, size_t *out_len) {
    size_t cap = KV_JSON_STRING_MAX(len);
    char *out = malloc(cap + 1);
    cr_assert_not_null(out);
    size_t n = kv_json_string(out, cap, s, len);
    cr_assert_gt(n, 0);
    cr_assert_leq(n, cap);
    out[n] = '\0';
    if (out_len) *out_len = n;
    return out;
}

static void s_expect_quoted(const char *s, size_t len, const char *want) {
    char *got = s_quote(s, len, NULL);
    cr_expect_str_eq(got, want);
    free(got);
}

//  --------------------------------------------------------------------------
//  kv_json_string

Test(kv_json, plain_text_is_quoted_as_is) {
    s_expect_quoted(BYTES("hello world"), "\"hello world\"");
    s_expect_quoted(BYTES("a/b'c<d>&"), "\"a/b'c<d>&\"");
    s_expect_quoted(BYTES("\x7f"), "\"\x7f\"");
}

Test(kv_json, empty_string_is_two_quotes) {
    size_t n;
    char *got = s_quote("", 0, &n);
    cr_expect_eq(n, 2);
    cr_expect_str_eq(got, "\"\"");
    free(got);
}

Test(kv_json, quote_and_backslash_are_escaped) {
    s_expect_quoted(BYTES("say \"hi\""), "\"say \\\"hi\\\"\"");
    s_expect_quoted(BYTES("C:\\dir\\"), "\"C:\\\\dir\\\\\"");
    s_expect_quoted(BYTES("\\\""), "\"\\\\\\\"\"");
}

Test(kv_json, control_characters_with_short_escapes) {
    s_expect_quoted(BYTES("\n"), "\"\\n\"");
    s_expect_quoted(BYTES("\t"), "\"\\t\"");
    s_expect_quoted(BYTES("\b"), "\"\\b\"");
    s_expect_quoted(BYTES("\f"), "\"\\f\"");
    s_expect_quoted(BYTES("\r"), "\"\\r\"");
    s_expect_quoted(BYTES("line1\r\nline2"), "\"line1\\r\\nline2\"");
}

Test(kv_json, other_control_characters_become_unicode_escapes) {
    s_expect_quoted(BYTES("\x01"), "\"\\u0001\"");
    s_expect_quoted(BYTES("\x1f"), "\"\\u001f\"");
    s_expect_quoted(BYTES("\x0b"), "\"\\u000b\"");
    s_expect_quoted(BYTES("\x1b[0m"), "\"\\u001b[0m\"");
    s_expect_quoted(BYTES("a\0b"), "\"a\\u0000b\"");
}

/* Every byte below 0x20 is escaped; nothing raw below 0x20 reaches the output. */
Test(kv_json, every_control_character_is_escaped) {
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c;
        size_t n;
        char *got = s_quote(&in, 1, &n);
        cr_expect(n == 4 || n == 8, "0x%02x became %zu bytes", c, n);
        for (size_t i = 0; i < n; i++)
            cr_expect_geq((unsigned char)got[i], 0x20, "raw 0x%02x in output", c);
        free(got);
    }
}

Test(kv_json, utf8_multibyte_is_left_alone) {
    s_expect_quoted(BYTES("caf\xc3\xa9"), "\"caf\xc3\xa9\"");                           /* é */
    s_expect_quoted(BYTES("\xe2\x82\xac"), "\"\xe2\x82\xac\"");                         /* € */
    s_expect_quoted(BYTES("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");                 /* 😀 */
    s_expect_quoted(BYTES("\xe6\x97\xa5\xe6\x9c\xac"), "\"\xe6\x97\xa5\xe6\x9c\xac\""); /* 日本 */
}

/* The worst case, all six-byte escapes, fills KV_JSON_STRING_MAX exactly. */
Test(kv_json, worst_case_fits_the_documented_size) {
    char in[64];
    memset(in, 0x01, sizeof in);
    size_t n;
    char *got = s_quote(in, sizeof in, &n);
    cr_expect_eq(n, KV_JSON_STRING_MAX(sizeof in));
    free(got);
}

/* cap is checked against the worst case up front, so a short buffer is
 * refused even when this particular string would have fit, and untouched. */
Test(kv_json, cap_below_the_worst_case_returns_zero) {
    char out[64];
    for (size_t cap = 0; cap < KV_JSON_STRING_MAX(3); cap++) {
        memset(out, '#', sizeof out);
        cr_expect_eq(kv_json_string(out, cap, "abc", 3), 0, "cap %zu", cap);
        for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], '#', "byte %zu written", i);
    }
    cr_expect_eq(kv_json_string(out, 1, "", 0), 0, "an empty string needs 2 bytes");
    cr_expect_eq(kv_json_string(out, KV_JSON_STRING_MAX(3), "abc", 3), 5);
}

//  --------------------------------------------------------------------------
//  Against jansson

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t s_rand(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

static size_t s_put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A random code point, weighted towards the characters that need care:
 * controls (NUL included), '"', '\\', then ASCII and every UTF-8 length. */
static uint32_t s_random_code_point(uint64_t *state) {
    uint32_t pick = s_rand(state) % 8;
    uint32_t r = s_rand(state);
    switch (pick) {
    case 0:
    case 1:
        return r % 0x20;
    case 2:
        return r % 2 ? '"' : '\\';
    case 3:
        return 0x20 + r % 0x60;
    case 4:
        return 0x80 + r % (0x800 - 0x80);
    case 5: {
        uint32_t cp = 0x800 + r % (0x10000 - 0x800);
        return cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp; /* no surrogates */
    }
    case 6:
        return 0x10000 + r % (0x110000 - 0x10000);
    default:
        return r % 2 ? 0x7F : 0x10FFFF;
    }
}

static void s_expect_jansson_reads_back(const char *in, size_t len) {
    size_t n;
    char *out = s_quote(in, len, &n);
    json_error_t error;
    json_t *parsed = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    cr_assert_not_null(parsed, "jansson rejects %s: %s", out, error.text);
    cr_assert(json_is_string(parsed));
    cr_assert_eq(json_string_length(parsed), len, "%s", out);
    cr_assert_eq(memcmp(json_string_value(parsed), in, len), 0, "%s", out);
    json_decref(parsed);
    free(out);
}

Test(kv_json, every_single_ascii_character_reads_back) {
    for (int c = 0; c < 0x80; c++) {
        char in = (char)c;
        s_expect_jansson_reads_back(&in, 1);
    }
}

Test(kv_json, random_utf8_reads_back_exactly_through_jansson) {
    uint64_t state = 0x6b76736a736f6e31ULL;
    char in[4 * 300];
    for (int round = 0; round < 5000; round++) {
        size_t chars = s_rand(&state) % 300;
        size_t len = 0;
        for (size_t i = 0; i < chars; i++) len += s_put_utf8(in + len, s_random_code_point(&state));
        s_expect_jansson_reads_back(in, len);
    }
}

//  --------------------------------------------------------------------------
//  kv_json_error

static json_t *s_parse_object(const char *text) {
    cr_assert_not_null(text);
    json_error_t error;
    json_t *body = json_loads(text, 0, &error);
    cr_assert_not_null(body, "%s: %s", text, error.text);
    cr_assert(json_is_object(body));
    return body;
}

Test(kv_json, error_body_has_error_and_message) {
    char *text = kv_json_error("MISSING_RECORD", "no record for this key");
    json_t *body = s_parse_object(text);
    cr_expect_eq(json_object_size(body), 2);
    cr_expect_str_eq(json_string_value(json_object_get(body, "error")), "MISSING_RECORD");
    cr_expect_str_eq(json_string_value(json_object_get(body, "message")), "no record for this key");
    json_decref(body);
    free(text);
}

Test(kv_json, error_body_escapes_its_strings) {
    const char *message = "bad \"key\"\n\tat \\ caf\xc3\xa9 \x01";
    char *text = kv_json_error("BAD_REQUEST", message);
    json_t *body = s_parse_object(text);
    cr_expect_str_eq(json_string_value(json_object_get(body, "message")), message);
    json_decref(body);
    free(text);
}

Test(kv_json, error_body_is_compact) {
    char *text = kv_json_error("E", "m");
    cr_expect_str_eq(text, "{\"error\":\"E\",\"message\":\"m\"}");
    free(text);
}

/* jansson refuses to build a body from a NULL or non-UTF-8 string, and
 * kv_json_error reports that as NULL, like out of memory. */
Test(kv_json, error_body_from_bad_strings_is_null) {
    cr_expect_null(kv_json_error(NULL, "message"));
    cr_expect_null(kv_json_error("CODE", NULL));
    cr_expect_null(kv_json_error("CODE", "bad \xff byte"));
}
