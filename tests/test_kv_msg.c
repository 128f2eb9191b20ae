/*  test_kv_msg.c: the wire codec every process speaks.
 *
 *  The first half reads as a catalogue of the messages: one round trip per
 *  type, with the boundary values each field can hold (empty strings, the
 *  longest key and value, a SCAN_REPLY with no entries and with many).
 *
 *  The second half is the codec's promise that a malformed frame is an
 *  error, never a crash: every sample frame is cut at every length, and
 *  every byte of it is corrupted in several ways. Each candidate is copied
 *  into a malloc'd buffer of exactly its length, so AddressSanitizer reports
 *  any read past the end, and any frame that still decodes must have all of
 *  its strings inside the buffer.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_limits.h"
#include "kv_msg.h"

/* A string literal that may hold a NUL, as a kv_bytes_t. */
#define BYTES(literal) ((kv_bytes_t){(literal), sizeof(literal) - 1})

#define MAX_CASES 64

static const uint8_t s_types[] = {
    KV_MSG_GET,   KV_MSG_SET,       KV_MSG_RM,        KV_MSG_IS,         KV_MSG_CLEAR,
    KV_MSG_SCAN,  KV_MSG_STATS,     KV_MSG_REPLY,     KV_MSG_SCAN_REPLY, KV_MSG_STATS_REPLY,
    KV_MSG_HELLO, KV_MSG_HEARTBEAT, KV_MSG_TABLE_REQ, KV_MSG_TABLE,      KV_MSG_WHO,
};
#define TYPE_COUNT (sizeof(s_types) / sizeof(s_types[0]))

static int s_is_known_type(int type) {
    for (size_t i = 0; i < TYPE_COUNT; i++)
        if (s_types[i] == type) return 1;
    return 0;
}

/* Byte strings the samples point at. */
static char s_max_key[KV_MAX_KEY_BYTES];
static char s_max_value[KV_MAX_VALUE_BYTES];
static char s_node_id_255[255];
static uint8_t s_entries_buf[256];

static void s_fill_pattern(char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)((i * 31 + seed) & 0xFF);
}

/* Three entries (one with an empty value, one with a binary key). */
static kv_bytes_t s_three_entries(void) {
    size_t pos = 0;
    cr_assert_eq(kv_msg_entry_put(s_entries_buf, sizeof s_entries_buf, &pos, "a", 1, "1", 1), 0);
    cr_assert_eq(kv_msg_entry_put(s_entries_buf, sizeof s_entries_buf, &pos, "b\0c", 3, "", 0), 0);
    cr_assert_eq(kv_msg_entry_put(s_entries_buf, sizeof s_entries_buf, &pos, "zz", 2, "val", 3), 0);
    return (kv_bytes_t){(const char *)s_entries_buf, pos};
}

static kv_msg_t s_keyed(uint8_t type) {
    kv_msg_t m = {.type = type, .req_id = 42, .epoch = 7, .partition = 1023};
    m.key = BYTES("user:1");
    if (type == KV_MSG_SET) m.value = BYTES("alice");
    return m;
}

/* One representative message of every type, then boundary variants. Only
 * the fields a type encodes are set, so a decoded copy compares equal field
 * by field. Returns the number of samples. */
static size_t s_samples(kv_msg_t *out) {
    s_fill_pattern(s_max_key, sizeof s_max_key, 1);
    s_fill_pattern(s_max_value, sizeof s_max_value, 2);
    memset(s_node_id_255, 'n', sizeof s_node_id_255);
    size_t n = 0;
    out[n++] = s_keyed(KV_MSG_GET);
    out[n++] = s_keyed(KV_MSG_SET);
    out[n++] = s_keyed(KV_MSG_RM);
    out[n++] = s_keyed(KV_MSG_IS);
    out[n++] = (kv_msg_t){.type = KV_MSG_CLEAR, .req_id = 1, .epoch = 2};
    out[n++] = (kv_msg_t){.type = KV_MSG_SCAN,
                          .req_id = 3,
                          .epoch = 4,
                          .partition = 5,
                          .limit = 100,
                          .has_after = 1,
                          .after = BYTES("k\0ey")};
    out[n++] = (kv_msg_t){.type = KV_MSG_STATS, .req_id = 9};
    out[n++] = (kv_msg_t){.type = KV_MSG_REPLY,
                          .req_id = 10,
                          .status = KV_STATUS_OK,
                          .epoch = 11,
                          .value = BYTES("hello")};
    out[n++] = (kv_msg_t){.type = KV_MSG_SCAN_REPLY,
                          .req_id = 12,
                          .status = KV_STATUS_OK,
                          .epoch = 13,
                          .more = 1,
                          .count = 3,
                          .entries = s_three_entries()};
    out[n++] = (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                          .req_id = 14,
                          .status = KV_STATUS_OK,
                          .epoch = 15,
                          .keys = 1000,
                          .primary_keys = 600,
                          .memory = 1u << 20,
                          .primaries = 512,
                          .replicas = 256};
    out[n++] = (kv_msg_t){.type = KV_MSG_HELLO,
                          .node_id = BYTES("node-1"),
                          .endpoint = BYTES("tcp://node-1:5601"),
                          .pub_endpoint = BYTES("tcp://node-1:5602"),
                          .keys = 5,
                          .memory = 4096,
                          .table = BYTES("\x01\x00\xff table bytes")};
    out[n++] = (kv_msg_t){
        .type = KV_MSG_HEARTBEAT, .node_id = BYTES("node-2"), .epoch = 8, .keys = 9, .memory = 10};
    out[n++] = (kv_msg_t){.type = KV_MSG_TABLE_REQ, .epoch = 77};
    out[n++] = (kv_msg_t){.type = KV_MSG_TABLE, .table = BYTES("\x01\x02\x03")};
    out[n++] = (kv_msg_t){.type = KV_MSG_WHO};

    /* Boundaries: empty strings, the longest key and value, extreme numbers. */
    out[n++] = (kv_msg_t){.type = KV_MSG_GET}; /* empty key, zero everything */
    out[n++] = (kv_msg_t){.type = KV_MSG_SET,
                          .req_id = UINT64_MAX,
                          .epoch = UINT64_MAX,
                          .partition = UINT32_MAX,
                          .key = {s_max_key, sizeof s_max_key},
                          .value = {s_max_value, sizeof s_max_value}};
    out[n++] = (kv_msg_t){.type = KV_MSG_SET, .key = BYTES("k")};    /* empty value */
    out[n++] = (kv_msg_t){.type = KV_MSG_SCAN, .limit = UINT32_MAX}; /* no after */
    out[n++] = (kv_msg_t){.type = KV_MSG_REPLY, .status = KV_STATUS_MAX, .value = BYTES("")};
    out[n++] = (kv_msg_t){.type = KV_MSG_SCAN_REPLY, .status = KV_STATUS_NOT_FOUND}; /* 0 entries */
    out[n++] = (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                          .status = KV_STATUS_NOT_READY,
                          .keys = UINT64_MAX,
                          .primary_keys = UINT64_MAX,
                          .memory = UINT64_MAX,
                          .primaries = UINT32_MAX,
                          .replicas = UINT32_MAX};
    out[n++] = (kv_msg_t){.type = KV_MSG_HELLO, .node_id = {s_node_id_255, 255}}; /* empty table */
    out[n++] = (kv_msg_t){.type = KV_MSG_HEARTBEAT};
    out[n++] = (kv_msg_t){.type = KV_MSG_TABLE}; /* empty table */
    cr_assert_leq(n, MAX_CASES);
    return n;
}

static int s_bytes_equal(kv_bytes_t a, kv_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void s_assert_same(const kv_msg_t *got, const kv_msg_t *want) {
    const char *name = kv_msg_type_name(want->type);
    cr_assert_eq(got->type, want->type, "%s", name);
    cr_expect_eq(got->status, want->status, "%s", name);
    cr_expect_eq(got->has_after, want->has_after, "%s", name);
    cr_expect_eq(got->more, want->more, "%s", name);
    cr_expect_eq(got->partition, want->partition, "%s", name);
    cr_expect_eq(got->limit, want->limit, "%s", name);
    cr_expect_eq(got->count, want->count, "%s", name);
    cr_expect_eq(got->primaries, want->primaries, "%s", name);
    cr_expect_eq(got->replicas, want->replicas, "%s", name);
    cr_expect_eq(got->req_id, want->req_id, "%s", name);
    cr_expect_eq(got->epoch, want->epoch, "%s", name);
    cr_expect_eq(got->keys, want->keys, "%s", name);
    cr_expect_eq(got->primary_keys, want->primary_keys, "%s", name);
    cr_expect_eq(got->memory, want->memory, "%s", name);
    cr_expect(s_bytes_equal(got->key, want->key), "%s key", name);
    cr_expect(s_bytes_equal(got->value, want->value), "%s value", name);
    cr_expect(s_bytes_equal(got->after, want->after), "%s after", name);
    cr_expect(s_bytes_equal(got->entries, want->entries), "%s entries", name);
    cr_expect(s_bytes_equal(got->node_id, want->node_id), "%s node_id", name);
    cr_expect(s_bytes_equal(got->endpoint, want->endpoint), "%s endpoint", name);
    cr_expect(s_bytes_equal(got->pub_endpoint, want->pub_endpoint), "%s pub_endpoint", name);
    cr_expect(s_bytes_equal(got->table, want->table), "%s table", name);
}

/* Encodes msg into a malloc'd buffer of exactly its size; checks that the
 * size kv_msg_encoded_size predicts is what kv_msg_encode writes. */
static uint8_t *s_encode(const kv_msg_t *msg, size_t *len) {
    size_t size = kv_msg_encoded_size(msg);
    cr_assert_gt(size, 0, "%s cannot be encoded", kv_msg_type_name(msg->type));
    uint8_t *frame = malloc(size);
    cr_assert_not_null(frame);
    cr_assert_eq(kv_msg_encode(msg, frame, size), size, "%s", kv_msg_type_name(msg->type));
    *len = size;
    return frame;
}

/* Decodes a copy of frame[0..len) held in a buffer of exactly len bytes. */
static int s_decode_exact(const uint8_t *frame, size_t len, kv_msg_t *msg, uint8_t **copy_p) {
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len) memcpy(copy, frame, len);
    int rc = kv_msg_decode(copy, len, msg);
    *copy_p = copy;
    return rc;
}

static void s_assert_inside(kv_bytes_t field, const uint8_t *buf, size_t len, const char *what) {
    if (field.len == 0) return;
    cr_assert_not_null(field.ptr, "%s: a non-empty field without bytes", what);
    uintptr_t start = (uintptr_t)buf;
    uintptr_t ptr = (uintptr_t)field.ptr;
    cr_assert(ptr >= start && field.len <= len && ptr - start <= len - field.len,
              "%s lies outside the frame", what);
}

/* What the header promises about a frame that decoded: every string is
 * inside it, enums are in range, and the entries walk to exactly count. */
static void s_assert_sane(const kv_msg_t *m, const uint8_t *buf, size_t len) {
    cr_assert(s_is_known_type(m->type));
    cr_assert_leq(m->status, KV_STATUS_MAX);
    cr_assert_leq(m->has_after, 1);
    cr_assert_leq(m->more, 1);
    s_assert_inside(m->key, buf, len, "key");
    s_assert_inside(m->value, buf, len, "value");
    s_assert_inside(m->after, buf, len, "after");
    s_assert_inside(m->entries, buf, len, "entries");
    s_assert_inside(m->node_id, buf, len, "node_id");
    s_assert_inside(m->endpoint, buf, len, "endpoint");
    s_assert_inside(m->pub_endpoint, buf, len, "pub_endpoint");
    s_assert_inside(m->table, buf, len, "table");
    if (m->type != KV_MSG_SCAN_REPLY) return;
    size_t pos = 0;
    uint32_t seen = 0;
    kv_bytes_t key, value;
    while (kv_msg_entry_next(&m->entries, &pos, &key, &value) == 0) {
        s_assert_inside(key, buf, len, "entry key");
        s_assert_inside(value, buf, len, "entry value");
        seen++;
    }
    cr_assert_eq(seen, m->count, "entries walk to %u, count says %u", seen, m->count);
    cr_assert_eq(pos, m->entries.len);
}

//  --------------------------------------------------------------------------
//  Round trips

Test(kv_msg, samples_cover_every_type) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        int found = 0;
        for (size_t i = 0; i < n; i++) found |= samples[i].type == s_types[t];
        cr_expect(found, "no sample of %s", kv_msg_type_name(s_types[t]));
    }
}

Test(kv_msg, every_type_round_trips) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        cr_expect_eq(frame[0], KV_MSG_VERSION);
        cr_expect_eq(frame[1], samples[i].type);
        kv_msg_t decoded;
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0, "sample %zu (%s)", i,
                     kv_msg_type_name(samples[i].type));
        s_assert_same(&decoded, &samples[i]);
        s_assert_sane(&decoded, frame, len);
        free(frame);
    }
}

/* The layout in kv_msg.h, byte for byte, for one keyed request. */
Test(kv_msg, get_layout_matches_the_header) {
    kv_msg_t get = {.type = KV_MSG_GET, .req_id = 0x0102030405060708, .epoch = 9, .partition = 10};
    get.key = BYTES("ab");
    const uint8_t want[] = {KV_MSG_VERSION,
                            KV_MSG_GET,
                            1,
                            2,
                            3,
                            4,
                            5,
                            6,
                            7,
                            8,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            9,
                            0,
                            0,
                            0,
                            10,
                            0,
                            2,
                            'a',
                            'b'};
    uint8_t frame[64];
    cr_assert_eq(kv_msg_encode(&get, frame, sizeof frame), sizeof want);
    cr_expect_arr_eq(frame, want, sizeof want);
}

Test(kv_msg, decoded_strings_point_into_the_frame) {
    kv_msg_t set = s_keyed(KV_MSG_SET);
    size_t len;
    uint8_t *frame = s_encode(&set, &len);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_eq((const uint8_t *)decoded.key.ptr, frame + 2 + 8 + 8 + 4 + 2);
    cr_expect_eq((const uint8_t *)decoded.value.ptr, frame + len - set.value.len);
    free(frame);
}

Test(kv_msg, empty_strings_decode_as_null) {
    kv_msg_t get = {.type = KV_MSG_GET};
    uint8_t frame[64];
    size_t len = kv_msg_encode(&get, frame, sizeof frame);
    cr_assert_gt(len, 0);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_null(decoded.key.ptr);
    cr_expect_eq(decoded.key.len, 0);
}

Test(kv_msg, decode_zeroes_fields_the_type_does_not_use) {
    kv_msg_t who = {.type = KV_MSG_WHO};
    uint8_t frame[8];
    size_t len = kv_msg_encode(&who, frame, sizeof frame);
    cr_assert_eq(len, KV_MSG_HEADER);
    kv_msg_t decoded;
    memset(&decoded, 0xAB, sizeof decoded);
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    kv_msg_t zero = {.type = KV_MSG_WHO};
    s_assert_same(&decoded, &zero);
    cr_expect_null(decoded.key.ptr);
}

Test(kv_msg, max_key_and_value_round_trip) {
    s_fill_pattern(s_max_key, sizeof s_max_key, 1);
    s_fill_pattern(s_max_value, sizeof s_max_value, 2);
    kv_msg_t set = {.type = KV_MSG_SET, .key = {s_max_key, KV_MAX_KEY_BYTES}};
    set.value = (kv_bytes_t){s_max_value, KV_MAX_VALUE_BYTES};
    size_t len;
    uint8_t *frame = s_encode(&set, &len);
    cr_expect_eq(len, KV_MSG_HEADER + 8 + 8 + 4 + 2 + KV_MAX_KEY_BYTES + 2 + KV_MAX_VALUE_BYTES);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    s_assert_same(&decoded, &set);
    free(frame);
}

/* str8 holds 255 bytes, str16 65535; one more cannot be encoded at all. */
Test(kv_msg, strings_over_their_length_field_cannot_be_encoded) {
    static char big[65536];
    uint8_t frame[16];
    kv_msg_t hello = {.type = KV_MSG_HELLO, .node_id = {big, 256}};
    cr_expect_eq(kv_msg_encoded_size(&hello), 0);
    cr_expect_eq(kv_msg_encode(&hello, frame, sizeof frame), 0);
    hello.node_id.len = 255;
    cr_expect_gt(kv_msg_encoded_size(&hello), 0);

    kv_msg_t get = {.type = KV_MSG_GET, .key = {big, 65536}};
    cr_expect_eq(kv_msg_encoded_size(&get), 0);
    get.key.len = 65535;
    cr_expect_eq(kv_msg_encoded_size(&get), KV_MSG_HEADER + 8 + 8 + 4 + 2 + 65535);
}

Test(kv_msg, unknown_type_cannot_be_encoded) {
    uint8_t frame[64];
    for (int type = 0; type < 256; type++) {
        if (s_is_known_type(type)) continue;
        kv_msg_t msg = {.type = (uint8_t)type};
        cr_expect_eq(kv_msg_encoded_size(&msg), 0, "type %d", type);
        cr_expect_eq(kv_msg_encode(&msg, frame, sizeof frame), 0, "type %d", type);
    }
}

Test(kv_msg, encode_into_too_small_buffer_returns_zero) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t size = kv_msg_encoded_size(&samples[i]);
        for (size_t cap = 0; cap < size; cap++) {
            uint8_t *buf = malloc(cap ? cap : 1);
            cr_assert_not_null(buf);
            cr_expect_eq(kv_msg_encode(&samples[i], buf, cap), 0, "%s into %zu of %zu bytes",
                         kv_msg_type_name(samples[i].type), cap, size);
            free(buf);
        }
    }
}

Test(kv_msg, encode_without_buffer_returns_zero) {
    kv_msg_t stats = {.type = KV_MSG_STATS, .req_id = 1};
    cr_expect_eq(kv_msg_encode(&stats, NULL, 100), 0);
}

//  --------------------------------------------------------------------------
//  SCAN_REPLY entries

Test(kv_msg, scan_reply_with_no_entries) {
    kv_msg_t reply = {.type = KV_MSG_SCAN_REPLY, .req_id = 5, .more = 0, .count = 0};
    size_t len;
    uint8_t *frame = s_encode(&reply, &len);
    cr_expect_eq(len, KV_MSG_HEADER + 8 + 1 + 8 + 1 + 4);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_eq(decoded.count, 0);
    cr_expect_eq(decoded.entries.len, 0);
    size_t pos = 0;
    kv_bytes_t key, value;
    cr_expect_eq(kv_msg_entry_next(&decoded.entries, &pos, &key, &value), -1);
    cr_expect_eq(pos, 0);
    free(frame);
}

/* A node builds a page with kv_msg_entry_put; the gateway walks it with
 * kv_msg_entry_next and gets every entry back in order. */
Test(kv_msg, scan_reply_with_many_entries) {
    enum { ENTRIES = 2000 };
    size_t cap = 0;
    for (int i = 0; i < ENTRIES; i++) cap += kv_msg_entry_size(16, (size_t)(i % 40));
    uint8_t *entries = malloc(cap);
    cr_assert_not_null(entries);
    size_t pos = 0;
    for (int i = 0; i < ENTRIES; i++) {
        char key[16];
        char value[40];
        snprintf(key, sizeof key, "key:%011d", i);
        memset(value, 'a' + i % 26, sizeof value);
        cr_assert_eq(kv_msg_entry_put(entries, cap, &pos, key, 16, value, (size_t)(i % 40)), 0);
    }
    cr_assert_eq(pos, cap, "kv_msg_entry_size predicts the bytes entry_put writes");

    kv_msg_t reply = {.type = KV_MSG_SCAN_REPLY, .req_id = 1, .more = 1, .count = ENTRIES};
    reply.entries = (kv_bytes_t){(const char *)entries, pos};
    size_t len;
    uint8_t *frame = s_encode(&reply, &len);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_eq(decoded.count, ENTRIES);
    cr_expect_eq(decoded.more, 1);

    size_t at = 0;
    kv_bytes_t key, value;
    for (int i = 0; i < ENTRIES; i++) {
        char want[17];
        snprintf(want, sizeof want, "key:%011d", i);
        cr_assert_eq(kv_msg_entry_next(&decoded.entries, &at, &key, &value), 0, "entry %d", i);
        cr_assert_eq(key.len, 16);
        cr_assert_eq(memcmp(key.ptr, want, 16), 0);
        cr_assert_eq(value.len, (size_t)(i % 40));
        for (size_t b = 0; b < value.len; b++) cr_assert_eq(value.ptr[b], 'a' + i % 26);
    }
    cr_expect_eq(kv_msg_entry_next(&decoded.entries, &at, &key, &value), -1, "end of page");
    free(frame);
    free(entries);
}

Test(kv_msg, entry_put_that_does_not_fit_changes_nothing) {
    uint8_t buf[16];
    size_t pos = 0;
    cr_assert_eq(kv_msg_entry_put(buf, sizeof buf, &pos, "key", 3, "value", 5), 0);
    cr_assert_eq(pos, kv_msg_entry_size(3, 5));
    size_t before = pos;
    cr_expect_eq(kv_msg_entry_put(buf, sizeof buf, &pos, "k", 1, "v", 1), -1, "6 bytes, 4 left");
    cr_expect_eq(pos, before);
    cr_expect_eq(kv_msg_entry_put(buf, before + kv_msg_entry_size(0, 0), &pos, "", 0, "", 0), 0);
    cr_expect_eq(pos, before + 4);
}

Test(kv_msg, scan_reply_count_must_match_the_entries) {
    kv_msg_t reply = {.type = KV_MSG_SCAN_REPLY, .count = 3, .entries = s_three_entries()};
    for (uint32_t count = 0; count < 8; count++) {
        reply.count = count;
        size_t len;
        uint8_t *frame = s_encode(&reply, &len); /* the encoder trusts count */
        kv_msg_t decoded;
        int want = count == 3 ? 0 : -1;
        cr_expect_eq(kv_msg_decode(frame, len, &decoded), want, "count %u for 3 entries", count);
        free(frame);
    }
    reply.count = UINT32_MAX;
    size_t len;
    uint8_t *frame = s_encode(&reply, &len);
    kv_msg_t decoded;
    cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1);
    free(frame);
}

//  --------------------------------------------------------------------------
//  Malformed frames

Test(kv_msg, decode_null_or_empty_frame_fails) {
    kv_msg_t msg;
    cr_expect_eq(kv_msg_decode(NULL, 0, &msg), -1);
    cr_expect_eq(kv_msg_decode(NULL, 10, &msg), -1);
    uint8_t one[1] = {KV_MSG_VERSION};
    cr_expect_eq(kv_msg_decode(one, 0, &msg), -1);
    cr_expect_eq(kv_msg_decode(one, 1, &msg), -1);
}

Test(kv_msg, every_truncation_fails) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        for (size_t cut = 0; cut < len; cut++) {
            kv_msg_t decoded;
            uint8_t *copy;
            int rc = s_decode_exact(frame, cut, &decoded, &copy);
            cr_assert_eq(rc, -1, "%s cut to %zu of %zu bytes decoded",
                         kv_msg_type_name(samples[i].type), cut, len);
            free(copy);
        }
        free(frame);
    }
}

Test(kv_msg, trailing_byte_fails) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        uint8_t *longer = malloc(len + 1);
        cr_assert_not_null(longer);
        memcpy(longer, frame, len);
        for (int extra = 0; extra < 256; extra += 85) {
            longer[len] = (uint8_t)extra;
            kv_msg_t decoded;
            uint8_t *copy;
            cr_expect_eq(s_decode_exact(longer, len + 1, &decoded, &copy), -1, "%s + 0x%02x",
                         kv_msg_type_name(samples[i].type), extra);
            free(copy);
        }
        free(longer);
        free(frame);
    }
}

Test(kv_msg, wrong_version_fails) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        for (int version = 0; version < 256; version++) {
            if (version == KV_MSG_VERSION) continue;
            frame[0] = (uint8_t)version;
            kv_msg_t decoded;
            cr_assert_eq(kv_msg_decode(frame, len, &decoded), -1, "%s with version %d",
                         kv_msg_type_name(samples[i].type), version);
        }
        free(frame);
    }
}

Test(kv_msg, unknown_type_fails) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (int type = 0; type < 256; type++) {
        if (s_is_known_type(type)) continue;
        uint8_t header[KV_MSG_HEADER] = {KV_MSG_VERSION, (uint8_t)type};
        kv_msg_t decoded;
        cr_assert_eq(kv_msg_decode(header, sizeof header, &decoded), -1, "type %d", type);
        for (size_t i = 0; i < n; i++) { /* with some other type's body behind it */
            size_t len;
            uint8_t *frame = s_encode(&samples[i], &len);
            frame[1] = (uint8_t)type;
            cr_assert_eq(kv_msg_decode(frame, len, &decoded), -1, "type %d", type);
            free(frame);
        }
    }
}

/* Replies carry the status right after version, type and req_id. */
Test(kv_msg, status_above_max_fails) {
    const uint8_t replies[] = {KV_MSG_REPLY, KV_MSG_SCAN_REPLY, KV_MSG_STATS_REPLY};
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t r = 0; r < sizeof replies; r++) {
        kv_msg_t *reply = NULL;
        for (size_t i = 0; i < n && !reply; i++)
            if (samples[i].type == replies[r]) reply = &samples[i];
        cr_assert_not_null(reply);
        size_t len;
        uint8_t *frame = s_encode(reply, &len);
        const size_t at = KV_MSG_HEADER + 8;
        kv_msg_t decoded;
        for (int status = 0; status < 256; status++) {
            frame[at] = (uint8_t)status;
            int want = status <= KV_STATUS_MAX ? 0 : -1;
            cr_assert_eq(kv_msg_decode(frame, len, &decoded), want, "%s with status %d",
                         kv_msg_type_name(replies[r]), status);
        }
        free(frame);
    }
}

Test(kv_msg, flag_bytes_above_one_fail) {
    kv_msg_t scan = {.type = KV_MSG_SCAN, .has_after = 1, .after = BYTES("k")};
    size_t len;
    uint8_t *frame = s_encode(&scan, &len);
    const size_t has_after_at = KV_MSG_HEADER + 8 + 8 + 4 + 4;
    kv_msg_t decoded;
    frame[has_after_at] = 2;
    cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "has_after 2");
    frame[has_after_at] = 0;
    cr_expect_eq(kv_msg_decode(frame, len, &decoded), 0, "has_after 0");
    free(frame);

    kv_msg_t reply = {.type = KV_MSG_SCAN_REPLY, .more = 1};
    frame = s_encode(&reply, &len);
    const size_t more_at = KV_MSG_HEADER + 8 + 1 + 8;
    frame[more_at] = 2;
    cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "more 2");
    frame[more_at] = 0xFF;
    cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "more 255");
    free(frame);
}

/* A string length claiming more than the frame holds, up to the largest
 * value each width can carry. */
Test(kv_msg, oversized_length_fields_fail) {
    kv_msg_t table = {.type = KV_MSG_TABLE, .table = BYTES("abc")};
    size_t len;
    uint8_t *frame = s_encode(&table, &len);
    kv_msg_t decoded;
    const uint8_t claims[][4] = {
        {0, 0, 0, 4}, {0, 1, 0, 0}, {0x7F, 0xFF, 0xFF, 0xFF}, {0xFF, 0xFF, 0xFF, 0xFF}};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        memcpy(frame + KV_MSG_HEADER, claims[i], 4);
        cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "claim %zu", i);
    }
    free(frame);
}

/* Every byte of every sample frame, corrupted by each single-bit flip and
 * by 0x00 and 0xFF: a frame that still decodes must be one the decoder
 * could have produced from valid input, with every string in the buffer. */
Test(kv_msg, every_corruption_fails_or_stays_in_bounds) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    size_t decoded_ok = 0, rejected = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        uint8_t *copy = malloc(len);
        cr_assert_not_null(copy);
        for (size_t at = 0; at < len; at++) {
            uint8_t corruptions[10];
            for (int bit = 0; bit < 8; bit++) corruptions[bit] = frame[at] ^ (uint8_t)(1u << bit);
            corruptions[8] = 0x00;
            corruptions[9] = 0xFF;
            for (size_t c = 0; c < sizeof corruptions; c++) {
                memcpy(copy, frame, len);
                copy[at] = corruptions[c];
                kv_msg_t decoded;
                if (kv_msg_decode(copy, len, &decoded) != 0) {
                    rejected++;
                    continue;
                }
                decoded_ok++;
                s_assert_sane(&decoded, copy, len);
            }
        }
        free(copy);
        free(frame);
    }
    cr_expect_gt(rejected, 0);
    cr_expect_gt(decoded_ok, 0, "flipping a payload byte still decodes");
}

//  --------------------------------------------------------------------------
//  Names for logs

Test(kv_msg, type_names) {
    const char *names[] = {"GET",   "SET",       "RM",        "IS",         "CLEAR",
                           "SCAN",  "STATS",     "REPLY",     "SCAN_REPLY", "STATS_REPLY",
                           "HELLO", "HEARTBEAT", "TABLE_REQ", "TABLE",      "WHO"};
    for (size_t i = 0; i < TYPE_COUNT; i++)
        cr_expect_str_eq(kv_msg_type_name(s_types[i]), names[i]);
    cr_expect_str_eq(kv_msg_type_name(0), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(8), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(-1), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(256 + KV_MSG_GET), "UNKNOWN");
}

Test(kv_msg, status_names) {
    const char *names[] = {"OK",        "NOT_FOUND", "MOVED",       "STALE_EPOCH",
                           "NOT_READY", "NO_MEMORY", "UNAVAILABLE", "BAD_REQUEST"};
    cr_assert_eq(sizeof names / sizeof names[0], KV_STATUS_MAX + 1);
    for (int status = 0; status <= KV_STATUS_MAX; status++)
        cr_expect_str_eq(kv_status_name(status), names[status]);
    cr_expect_str_eq(kv_status_name(-1), "UNKNOWN");
    cr_expect_str_eq(kv_status_name(KV_STATUS_MAX + 1), "UNKNOWN");
    cr_expect_str_eq(kv_status_name(255), "UNKNOWN");
}
