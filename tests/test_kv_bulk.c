/*  test_kv_bulk.c: bulk-read cursors and the entries of a bulk response.
 *
 *  A cursor travels to the client in X-Next-Cursor and comes back in the
 *  cursor parameter, so kv_cursor_parse reads untrusted text: each way it
 *  can be malformed is shown rejected, and every text kv_cursor_format
 *  writes is shown to parse back to the same cursor. Texts are parsed from
 *  buffers of exactly their length (no NUL), so AddressSanitizer reports
 *  any read past the end. kv_bulk_entry's output is checked by joining
 *  entries into an array and parsing it with jansson.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_bulk.h"
#include "kv_limits.h"

#define PARTITIONS 1024

/* Parses text (without its NUL) from a buffer of exactly its length. */
static int s_parse(const char *text, uint32_t partitions, kv_cursor_t *cursor) {
    size_t len = strlen(text);
    char *exact = malloc(len ? len : 1);
    cr_assert_not_null(exact);
    memcpy(exact, text, len);
    int rc = kv_cursor_parse(exact, len, partitions, cursor);
    free(exact);
    return rc;
}

static void s_expect_rejected(const char *text, uint32_t partitions) {
    kv_cursor_t cursor;
    cr_expect_eq(s_parse(text, partitions, &cursor), -1, "\"%s\" with %u partitions", text,
                 partitions);
}

/* Formats cursor into a buffer of exactly KV_CURSOR_TEXT_MAX bytes, parses
 * it back and checks both agree. */
static void s_expect_round_trip(const kv_cursor_t *cursor, uint32_t partitions) {
    char *text = malloc(KV_CURSOR_TEXT_MAX);
    cr_assert_not_null(text);
    kv_cursor_format(cursor, text);
    cr_assert_lt(strlen(text), KV_CURSOR_TEXT_MAX);
    kv_cursor_t back;
    cr_assert_eq(s_parse(text, partitions, &back), 0, "%s", text);
    cr_expect_eq(back.partition, cursor->partition, "%s", text);
    cr_expect_eq(back.has_after, cursor->has_after, "%s", text);
    cr_expect_eq(back.alen, cursor->has_after ? cursor->alen : 0, "%s", text);
    if (cursor->has_after) cr_expect_eq(memcmp(back.after, cursor->after, cursor->alen), 0);
    free(text);
}

//  --------------------------------------------------------------------------
//  Parsing

Test(kv_bulk, cursor_with_partition_only) {
    kv_cursor_t cursor;
    cr_assert_eq(s_parse("17", PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.partition, 17);
    cr_expect_eq(cursor.has_after, 0);
    cr_expect_eq(cursor.alen, 0);
    cr_assert_eq(s_parse("0", PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.partition, 0);
}

Test(kv_bulk, cursor_with_partition_and_key) {
    kv_cursor_t cursor;
    cr_assert_eq(s_parse("17.6b6579", PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.partition, 17);
    cr_expect_eq(cursor.has_after, 1);
    cr_expect_eq(cursor.alen, 3);
    cr_expect_eq(memcmp(cursor.after, "key", 3), 0);
}

Test(kv_bulk, cursor_hex_is_case_insensitive) {
    kv_cursor_t cursor;
    cr_assert_eq(s_parse("3.C3A9fF00", PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.alen, 4);
    cr_expect_eq(memcmp(cursor.after, "\xc3\xa9\xff\x00", 4), 0);
}

/* partition == partitions is the cursor of a finished read. */
Test(kv_bulk, cursor_at_the_end_is_accepted) {
    kv_cursor_t cursor;
    cr_expect_eq(s_parse("1024", PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.partition, PARTITIONS);
    cr_expect_eq(s_parse("1", 1, &cursor), 0);
    cr_expect_eq(s_parse("4294967295", UINT32_MAX, &cursor), 0, "the largest u32");
    cr_expect_eq(cursor.partition, UINT32_MAX);
}

Test(kv_bulk, cursor_only_reads_len_bytes) {
    kv_cursor_t cursor;
    cr_assert_eq(kv_cursor_parse("17.6b6579", 2, PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.partition, 17);
    cr_expect_eq(cursor.has_after, 0);
    cr_assert_eq(kv_cursor_parse("17.6b6579", 7, PARTITIONS, &cursor), 0);
    cr_expect_eq(cursor.alen, 2);
}

Test(kv_bulk, cursor_rejects_empty_and_non_digits) {
    s_expect_rejected("", PARTITIONS);
    s_expect_rejected("x", PARTITIONS);
    s_expect_rejected("-1", PARTITIONS);
    s_expect_rejected("+1", PARTITIONS);
    s_expect_rejected(" 1", PARTITIONS);
    s_expect_rejected(".6b", PARTITIONS);
    s_expect_rejected("0x10", PARTITIONS);
    kv_cursor_t cursor;
    cr_expect_eq(kv_cursor_parse(NULL, 0, PARTITIONS, &cursor), -1);
}

Test(kv_bulk, cursor_rejects_partition_past_the_end) {
    s_expect_rejected("1025", PARTITIONS);
    s_expect_rejected("2", 1);
    s_expect_rejected("1.61", 0);
    s_expect_rejected("4294967296", UINT32_MAX);
    s_expect_rejected("9999999999", UINT32_MAX);
}

Test(kv_bulk, cursor_rejects_more_than_ten_digits) {
    s_expect_rejected("12345678901", UINT32_MAX);
    s_expect_rejected("00000000001", UINT32_MAX);
    s_expect_rejected("000000000001.61", UINT32_MAX);
    kv_cursor_t cursor;
    cr_expect_eq(s_parse("0000000001", UINT32_MAX, &cursor), 0, "ten digits are fine");
    cr_expect_eq(cursor.partition, 1);
}

Test(kv_bulk, cursor_rejects_bad_key_hex) {
    s_expect_rejected("17.", PARTITIONS);
    s_expect_rejected("17.6", PARTITIONS);
    s_expect_rejected("17.6b6", PARTITIONS);
    s_expect_rejected("17.zz", PARTITIONS);
    s_expect_rejected("17.6g", PARTITIONS);
    s_expect_rejected("17.g6", PARTITIONS);
    s_expect_rejected("17. 6", PARTITIONS);
    s_expect_rejected("17.6b.65", PARTITIONS);
}

Test(kv_bulk, cursor_rejects_trailing_garbage) {
    s_expect_rejected("17x", PARTITIONS);
    s_expect_rejected("17 ", PARTITIONS);
    s_expect_rejected("17,6b", PARTITIONS);
    s_expect_rejected("17.6b65 ", PARTITIONS);
    s_expect_rejected("17..6b", PARTITIONS);
}

Test(kv_bulk, cursor_key_length_limit) {
    char text[8 + 2 * (KV_MAX_KEY_BYTES + 1) + 1];
    strcpy(text, "5.");
    memset(text + 2, 'a', 2 * KV_MAX_KEY_BYTES);
    text[2 + 2 * KV_MAX_KEY_BYTES] = '\0';
    kv_cursor_t cursor;
    cr_expect_eq(s_parse(text, PARTITIONS, &cursor), 0, "256 bytes");
    cr_expect_eq(cursor.alen, KV_MAX_KEY_BYTES);
    memset(text + 2, 'a', 2 * (KV_MAX_KEY_BYTES + 1));
    text[2 + 2 * (KV_MAX_KEY_BYTES + 1)] = '\0';
    s_expect_rejected(text, PARTITIONS);
}

//  --------------------------------------------------------------------------
//  Formatting

Test(kv_bulk, format_writes_partition_and_lowercase_hex) {
    kv_cursor_t cursor = {.partition = 17, .has_after = 1, .alen = 3};
    memcpy(cursor.after, "\x00\xab\xff", 3);
    char text[KV_CURSOR_TEXT_MAX];
    kv_cursor_format(&cursor, text);
    cr_expect_str_eq(text, "17.00abff");
    cursor.has_after = 0;
    kv_cursor_format(&cursor, text);
    cr_expect_str_eq(text, "17");
}

Test(kv_bulk, cursor_round_trips) {
    kv_cursor_t cursor = {.partition = 0};
    s_expect_round_trip(&cursor, PARTITIONS);
    cursor.partition = PARTITIONS;
    s_expect_round_trip(&cursor, PARTITIONS);

    cursor = (kv_cursor_t){.partition = 99, .has_after = 1, .alen = 5};
    memcpy(cursor.after, "hello", 5);
    s_expect_round_trip(&cursor, PARTITIONS);

    cursor.alen = 256; /* every byte value once */
    for (int i = 0; i < 256; i++) cursor.after[i] = (char)i;
    s_expect_round_trip(&cursor, PARTITIONS);
}

/* The longest cursor there is: the largest partition and a 256-byte key. */
Test(kv_bulk, longest_cursor_fits_the_text_max) {
    kv_cursor_t cursor = {.partition = UINT32_MAX, .has_after = 1, .alen = KV_MAX_KEY_BYTES};
    memset(cursor.after, 0xEE, sizeof cursor.after);
    char *text = malloc(KV_CURSOR_TEXT_MAX);
    kv_cursor_format(&cursor, text);
    cr_expect_eq(strlen(text) + 1, KV_CURSOR_TEXT_MAX);
    free(text);
    s_expect_round_trip(&cursor, UINT32_MAX);
}

//  --------------------------------------------------------------------------
//  Entries

/* Writes entry into a buffer of exactly KV_BULK_ENTRY_MAX bytes and
 * returns it NUL-terminated. */
static char *s_entry(kv_bulk_kind_t kind, int first, const char *key, size_t klen,
                     const char *value, size_t vlen) {
    char *out = malloc(KV_BULK_ENTRY_MAX);
    cr_assert_not_null(out);
    size_t n = kv_bulk_entry(kind, first, key, klen, value, vlen, out, KV_BULK_ENTRY_MAX);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, KV_BULK_ENTRY_MAX);
    out[n] = '\0';
    return out;
}

static void s_expect_entry(kv_bulk_kind_t kind, int first, const char *want) {
    char *got = s_entry(kind, first, "key", 3, "value", 5);
    cr_expect_str_eq(got, want);
    free(got);
}

Test(kv_bulk, keys_entries) {
    s_expect_entry(KV_BULK_KEYS, 1, "\"key\"");
    s_expect_entry(KV_BULK_KEYS, 0, ",\"key\"");
}

Test(kv_bulk, values_entries) {
    s_expect_entry(KV_BULK_VALUES, 1, "\"value\"");
    s_expect_entry(KV_BULK_VALUES, 0, ",\"value\"");
}

Test(kv_bulk, all_entries) {
    s_expect_entry(KV_BULK_ALL, 1, "{\"k\":\"key\",\"v\":\"value\"}");
    s_expect_entry(KV_BULK_ALL, 0, ",{\"k\":\"key\",\"v\":\"value\"}");
}

Test(kv_bulk, entry_with_cap_below_the_max_returns_zero) {
    char *out = malloc(KV_BULK_ENTRY_MAX);
    cr_expect_eq(kv_bulk_entry(KV_BULK_ALL, 1, "k", 1, "v", 1, out, KV_BULK_ENTRY_MAX - 1), 0);
    cr_expect_eq(kv_bulk_entry(KV_BULK_KEYS, 0, "k", 1, "v", 1, out, 0), 0);
    free(out);
}

/* Joins three entries of kind into "[...]" and parses it with jansson. */
static json_t *s_parse_array(kv_bulk_kind_t kind, const char *key, size_t klen, const char *value,
                             size_t vlen) {
    size_t cap = 2 + 3 * KV_BULK_ENTRY_MAX;
    char *body = malloc(cap);
    cr_assert_not_null(body);
    size_t len = 0;
    body[len++] = '[';
    for (int i = 0; i < 3; i++)
        len += kv_bulk_entry(kind, i == 0, key, klen, value, vlen, body + len, cap - len);
    body[len++] = ']';
    json_error_t error;
    json_t *array = json_loadb(body, len, JSON_ALLOW_NUL, &error);
    cr_assert_not_null(array, "%.*s: %s", (int)len, body, error.text);
    cr_assert(json_is_array(array));
    cr_assert_eq(json_array_size(array), 3);
    free(body);
    return array;
}

static int s_string_is(const json_t *string, const char *bytes, size_t len) {
    return json_is_string(string) && json_string_length(string) == len &&
           memcmp(json_string_value(string), bytes, len) == 0;
}

static void s_expect_entries_parse(const char *key, size_t klen, const char *value, size_t vlen) {
    json_t *keys = s_parse_array(KV_BULK_KEYS, key, klen, value, vlen);
    json_t *values = s_parse_array(KV_BULK_VALUES, key, klen, value, vlen);
    json_t *all = s_parse_array(KV_BULK_ALL, key, klen, value, vlen);
    for (size_t i = 0; i < 3; i++) {
        cr_expect(s_string_is(json_array_get(keys, i), key, klen));
        cr_expect(s_string_is(json_array_get(values, i), value, vlen));
        json_t *pair = json_array_get(all, i);
        cr_expect_eq(json_object_size(pair), 2);
        cr_expect(s_string_is(json_object_get(pair, "k"), key, klen));
        cr_expect(s_string_is(json_object_get(pair, "v"), value, vlen));
    }
    json_decref(keys);
    json_decref(values);
    json_decref(all);
}

Test(kv_bulk, entries_parse_as_json_array_elements) {
    s_expect_entries_parse("key", 3, "value", 5);
    s_expect_entries_parse("k\"e\\y", 5, "", 0);
    s_expect_entries_parse("caf\xc3\xa9", 5, "line\nbreak\x01\x1f", 13);
}

/* The largest key and value, made only of characters that need six-byte
 * escapes, still fit in KV_BULK_ENTRY_MAX and parse. */
Test(kv_bulk, worst_case_entry_fits_the_max) {
    static char key[KV_MAX_KEY_BYTES];
    static char value[KV_MAX_VALUE_BYTES];
    memset(key, 0x01, sizeof key);
    memset(value, 0x1f, sizeof value);
    char *out = s_entry(KV_BULK_ALL, 0, key, sizeof key, value, sizeof value);
    cr_expect_eq(strlen(out),
                 1 + 5 + KV_JSON_STRING_MAX(sizeof key) + 5 + KV_JSON_STRING_MAX(sizeof value) + 1);
    free(out);
    s_expect_entries_parse(key, sizeof key, value, sizeof value);
}
