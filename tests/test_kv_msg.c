/*  test_kv_msg.c: the wire codec every process speaks.
 *
 *  The first half reads as a catalogue of the messages: one round trip per
 *  type, with the boundary values each field can hold (empty strings and
 *  blobs, the longest key and value, a SCAN_REPLY or SNAPSHOT with no entries
 *  and with many, BEACONs with no items and with many, entries and updates
 *  with and without their version 2 metadata), and every sample checked
 *  byte for byte against the layout kv_msg_schema.h declares, written out
 *  here by a writer of the test's own from the same field lists. The BEACON
 *  / ACK item and HEARTBEAT report records get the same treatment.
 *
 *  The second half is the codec's promise that a malformed frame is an
 *  error, never a crash: every sample frame is cut at every length, every
 *  enum, flag and length field the schema declares gets out-of-range
 *  values, and
 *  every byte of it is replaced by every other byte value. Each candidate is
 *  held in a malloc'd buffer of exactly its length, so AddressSanitizer
 *  reports any read past the end, and any frame that still decodes must have
 *  all of its strings inside the buffer, its enums in range, its record blobs
 *  whole, and must encode back to exactly the bytes it was decoded from.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_limits.h"
#include "kv_msg.h"
#include "kv_msg_schema.h"

/* A string literal that may hold a NUL, as a kv_bytes_t. */
#define BYTES(literal) ((kv_bytes_t){(literal), sizeof(literal) - 1})

#define MAX_CASES 96

/* Every message type of the schema, with the name kv_msg_type_name gives it. */
#define S_TYPE(NAME, code) {KV_MSG_##NAME, #NAME},
static const struct {
    uint8_t type;
    const char *name;
} s_types[] = {KV_MSG_TYPES(S_TYPE)};
#define TYPE_COUNT (sizeof(s_types) / sizeof(s_types[0]))

static int s_is_known_type(int type) {
    for (size_t i = 0; i < TYPE_COUNT; i++)
        if (s_types[i].type == type) return 1;
    return 0;
}

/* Byte strings the samples point at. */
#define ITEMS 64  /* records in s_items_buf */
#define REPORTS 4 /* records in s_reports_buf */
static char s_max_key[KV_MAX_KEY_BYTES];
static char s_max_value[KV_MAX_VALUE_BYTES];
static char s_node_id_255[255];
static char s_endpoint_max[KV_ENDPOINT_MAX];
static uint8_t s_entries_buf[256];
static uint8_t s_meta_entries_buf[256];
static uint8_t s_counters_buf[256];
static uint8_t s_items_buf[ITEMS * KV_MSG_ITEM_SIZE];
static uint8_t s_reports_buf[REPORTS * KV_MSG_REPORT_SIZE];

static void s_fill_pattern(char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)((i * 31 + seed) & 0xFF);
}

/* The first n records of s_items_buf / s_reports_buf, as a blob. */
static kv_bytes_t s_items(size_t n) {
    return (kv_bytes_t){(const char *)s_items_buf, n * KV_MSG_ITEM_SIZE};
}

static kv_bytes_t s_reports(size_t n) {
    return (kv_bytes_t){(const char *)s_reports_buf, n * KV_MSG_REPORT_SIZE};
}

/* Items with distinct fields, the second one at every maximum; reports of a
 * primary, a replica, a ready learner and one at every maximum. */
static void s_fill_records(void) {
    for (size_t i = 0; i < ITEMS; i++) {
        kv_msg_item_t item = {(uint32_t)(i * 7 + 3), i * 1000003 + 11, (uint8_t)(i & 1)};
        if (i == 1) item = (kv_msg_item_t){UINT32_MAX, UINT64_MAX, 1};
        kv_msg_item_write(s_items_buf, i, &item);
    }
    const kv_msg_report_t reports[REPORTS] = {
        {5, 0, KV_REPORT_LIVE, 100},
        {6, 1, KV_REPORT_LIVE, 200},
        {7, KV_ROLE_LEARNER, KV_REPORT_LIVE | KV_REPORT_READY, 300},
        {UINT32_MAX, 0xFE, 0xFF, UINT64_MAX},
    };
    for (size_t i = 0; i < REPORTS; i++) kv_msg_report_write(s_reports_buf, i, &reports[i]);
}

/* Three entries (one with an empty value, one with a binary key), without
 * metadata, or with a version and an expiry on some. */
static kv_bytes_t s_three_entries_in(uint8_t *buf, size_t cap, int meta) {
    const kv_msg_entry_t entries[] = {
        {BYTES("a"), BYTES("1"), {meta ? 7 : 0, 0}},
        {BYTES("b\0c"), BYTES(""), {0, meta ? 1700000000000ull : 0}},
        {BYTES("zz"), BYTES("val"), {meta ? UINT64_MAX : 0, meta ? UINT64_MAX : 0}},
    };
    size_t pos = 0;
    for (size_t i = 0; i < 3; i++) cr_assert_eq(kv_msg_entry_put(buf, cap, &pos, &entries[i]), 0);
    return (kv_bytes_t){(const char *)buf, pos};
}

static kv_bytes_t s_three_entries(void) {
    return s_three_entries_in(s_entries_buf, sizeof s_entries_buf, 0);
}

static kv_bytes_t s_meta_entries(void) {
    return s_three_entries_in(s_meta_entries_buf, sizeof s_meta_entries_buf, 1);
}

/* Two transaction ops: a conditional read-and-set, a bare remove. */
static uint8_t s_txops_buf[256];
static kv_bytes_t s_two_txops(void) {
    const kv_msg_txop_t ops[] = {
        {KV_TXOP_SET, 1, 7, 1, BYTES("acct:1"), BYTES("90")},
        {KV_TXOP_RM, 0, 0, 0, BYTES("acct:2"), {NULL, 0}},
    };
    size_t pos = 0;
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(kv_msg_txop_put(s_txops_buf, sizeof s_txops_buf, &pos, &ops[i]), 0);
    return (kv_bytes_t){(const char *)s_txops_buf, pos};
}

/* Two counters, one at every maximum. */
static kv_bytes_t s_two_counters(void) {
    size_t pos = 0;
    cr_assert_eq(kv_msg_counter_put(s_counters_buf, sizeof s_counters_buf, &pos,
                                    "kv_node_bad_frames_total", 3),
                 0);
    cr_assert_eq(kv_msg_counter_put(s_counters_buf, sizeof s_counters_buf, &pos, "x", UINT64_MAX),
                 0);
    return (kv_bytes_t){(const char *)s_counters_buf, pos};
}

static kv_msg_t s_keyed(uint8_t type) {
    kv_msg_t m = {.type = type, .req_id = 42, .epoch = 7, .partition = 1023};
    m.key = BYTES("user:1");
    if (type == KV_MSG_SET) m.value = BYTES("alice");
    return m;
}

static void s_add(kv_msg_t *out, size_t *n, kv_msg_t msg) {
    cr_assert_lt(*n, MAX_CASES, "raise MAX_CASES");
    out[(*n)++] = msg;
}

/* Requests a gateway sends, and the replies it gets back. */
static void s_client_samples(kv_msg_t *out, size_t *n) {
    s_add(out, n, s_keyed(KV_MSG_GET));
    s_add(out, n, s_keyed(KV_MSG_SET));
    s_add(out, n, s_keyed(KV_MSG_RM));
    s_add(out, n, s_keyed(KV_MSG_IS));
    s_add(out, n, (kv_msg_t){.type = KV_MSG_CLEAR, .req_id = 1, .epoch = 2});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SCAN,
                     .req_id = 3,
                     .epoch = 4,
                     .partition = 5,
                     .limit = 100,
                     .has_after = 1,
                     .after = BYTES("k\0ey")});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_STATS, .req_id = 9});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_REPLY,
                     .req_id = 10,
                     .status = KV_STATUS_OK,
                     .epoch = 11,
                     .value = BYTES("hello")});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SCAN_REPLY,
                     .req_id = 12,
                     .status = KV_STATUS_OK,
                     .epoch = 13,
                     .more = 1,
                     .count = 3,
                     .entries = s_three_entries()});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                     .req_id = 14,
                     .status = KV_STATUS_OK,
                     .epoch = 15,
                     .keys = 1000,
                     .primary_keys = 600,
                     .memory = 1u << 20,
                     .memory_limit = 3ull << 30,
                     .primaries = 512,
                     .replicas = 256});
}

/* Membership: nodes, the coordinator, and the gateway's cluster requests. */
static void s_cluster_samples(kv_msg_t *out, size_t *n) {
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_HELLO,
                     .node_id = BYTES("node-1"),
                     .incarnation = 0x0123456789ABCDEFull,
                     .endpoint = BYTES("tcp://node-1:5601"),
                     .pub_endpoint = BYTES("tcp://node-1:5602"),
                     .keys = 5,
                     .memory = 4096,
                     .table = BYTES("\x01\x00\xff table bytes")});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_HEARTBEAT,
                     .node_id = BYTES("node-2"),
                     .incarnation = 0xFEDCBA9876543210ull,
                     .epoch = 8,
                     .keys = 9,
                     .memory = 10,
                     .memory_limit = 11,
                     .reports = s_reports(3)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TABLE_REQ, .epoch = 77});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TABLE, .table = BYTES("\x01\x02\x03")});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_WHO});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_JOIN, .req_id = 20, .endpoint = BYTES("tcp://10.0.0.7:5601")});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_LEAVE, .req_id = 21, .node_id = BYTES("node-3")});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_INVITE, .req_id = 22, .endpoint = BYTES("tcp://coord:5600")});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_CLUSTER_REPLY,
                     .req_id = 23,
                     .status = KV_STATUS_OK,
                     .node_id = BYTES("node-4")});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_LEASE, .req_id = 24, .epoch = 9, .lease_ms = 400});
}

/* Replication: one UPDATE per op, beacons, acks, snapshots. */
static void s_replication_samples(kv_msg_t *out, size_t *n) {
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = 17, .sender = 2, .epoch = 30};
    update.seq = 31;
    update.op = KV_OP_SET;
    update.key = BYTES("user:2");
    update.value = BYTES("b\0b");
    s_add(out, n, update);
    update.seq = 32;
    update.op = KV_OP_RM;
    update.value = (kv_bytes_t){NULL, 0};
    s_add(out, n, update);
    update.seq = 33;
    update.op = KV_OP_CLEAR;
    update.key = (kv_bytes_t){NULL, 0};
    s_add(out, n, update);
    update.seq = 34;
    update.op = KV_OP_FENCE;
    s_add(out, n, update);
    s_add(out, n, (kv_msg_t){.type = KV_MSG_BEACON, .sender = 3, .epoch = 40, .items = s_items(3)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_ACK, .sender = 4, .items = s_items(2)});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT_REQ, .req_id = 24, .partition = 18, .sender = 5});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .req_id = 25,
                     .partition = 19,
                     .status = KV_STATUS_OK,
                     .seq = 1000,
                     .chunk = 2,
                     .more = 1,
                     .count = 3,
                     .entries = s_three_entries()});
}

/* Version 2: per-entry metadata and node counters, and frames of version
 * 2 that carry none (a later encoder may write them). */
static void s_metadata_samples(kv_msg_t *out, size_t *n) {
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = 17, .sender = 2, .epoch = 30};
    update.seq = 35;
    update.op = KV_OP_SET;
    update.key = BYTES("user:3");
    update.value = BYTES("v");
    update.meta = (kv_msg_meta_t){.version = 9, .expiry = 1700000000000ull};
    s_add(out, n, update);
    update.meta = (kv_msg_meta_t){.version = 0, .expiry = UINT64_MAX};
    s_add(out, n, update);
    update.meta = (kv_msg_meta_t){.version = 0, .expiry = 0};
    update.version = 2;
    s_add(out, n, update);
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SCAN_REPLY,
                     .req_id = 12,
                     .epoch = 13,
                     .count = 3,
                     .entries = s_meta_entries()});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .req_id = 25,
                     .partition = 19,
                     .seq = 1000,
                     .count = 3,
                     .entries = s_meta_entries()});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .version = 2,
                     .req_id = 25,
                     .count = 3,
                     .entries = s_three_entries()});
    s_add(out, n,
          (kv_msg_t){
              .type = KV_MSG_STATS_REPLY, .req_id = 14, .keys = 5, .counters = s_two_counters()});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_STATS_REPLY, .version = 2}); /* no counters */
    kv_msg_t get = s_keyed(KV_MSG_GET);
    get.version = 2;
    s_add(out, n, get);
}

/* A transaction's messages (/tx). */
static void s_tx_samples(kv_msg_t *out, size_t *n) {
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_TX_PREPARE,
                     .req_id = 30,
                     .epoch = 31,
                     .partition = 32,
                     .txid = UINT64_MAX,
                     .record = 33,
                     .commit = 1,
                     .ops = s_two_txops()});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TX_COMMIT, .req_id = 34, .partition = 1, .txid = 2});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TX_FINISH, .txid = 3, .status = KV_STATUS_TX_ABORTED});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TX_RESOLVE, .epoch = 4, .txid = 5, .participant = 6});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_TX_REPLY,
                     .req_id = 35,
                     .status = KV_STATUS_OK,
                     .seq = 36,
                     .count = 3,
                     .entries = s_meta_entries()});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TX_PREPARE}); /* no ops */
}

/* /mget's batch: keys as entries without values; the answer with each
 * key's value and version, and (partition, last removal, found) items. */
static void s_mget_samples(kv_msg_t *out, size_t *n) {
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_MGET,
                     .req_id = 40,
                     .epoch = 41,
                     .count = 3,
                     .entries = s_three_entries()});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_MGET_REPLY,
                     .req_id = 42,
                     .status = KV_STATUS_OK,
                     .epoch = 43,
                     .count = 3,
                     .entries = s_meta_entries(),
                     .items = s_items(3)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_MGET_REPLY, .status = KV_STATUS_LOCKED});
}

/* Version 4: expiry. SET's ttl, EXPIRE (ttl 0: persist), REPLY's ms to
 * live, TX_PREPARE's per-op ttls. */
static const uint8_t s_two_ttls[8] = {0, 0, 0, 60, 0, 0, 0, 0};
static void s_expiry_samples(kv_msg_t *out, size_t *n) {
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SET,
                     .req_id = 50,
                     .partition = 3,
                     .key = BYTES("session"),
                     .value = BYTES("x"),
                     .ttl = KV_MAX_TTL_S});
    s_add(out, n,
          (kv_msg_t){
              .type = KV_MSG_EXPIRE, .req_id = 51, .epoch = 52, .key = BYTES("session"), .ttl = 1});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_EXPIRE, .key = BYTES("session")}); /* persist */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_REPLY,
                     .req_id = 53,
                     .status = KV_STATUS_OK,
                     .value = BYTES("x"),
                     .ttl_ms = UINT64_MAX});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_TX_PREPARE,
                     .txid = 54,
                     .ops = s_two_txops(),
                     .ttls = {(const char *)s_two_ttls, sizeof s_two_ttls}});
}

/* Boundaries of the gateway's messages: empty strings, the longest key and
 * value, extreme numbers. */
static void s_client_edges(kv_msg_t *out, size_t *n) {
    s_add(out, n, (kv_msg_t){.type = KV_MSG_GET}); /* empty key, zero everything */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SET,
                     .req_id = UINT64_MAX,
                     .epoch = UINT64_MAX,
                     .partition = UINT32_MAX,
                     .key = {s_max_key, sizeof s_max_key},
                     .value = {s_max_value, sizeof s_max_value}});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_SET, .key = BYTES("k")}); /* empty value */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_CLEAR, .req_id = UINT64_MAX, .epoch = UINT64_MAX});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_SCAN, .limit = UINT32_MAX}); /* no after */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_STATS, .req_id = UINT64_MAX});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_REPLY, .status = KV_STATUS_MAX, .value = BYTES("")});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_SCAN_REPLY, .status = KV_STATUS_NOT_FOUND}); /* none */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                     .status = KV_STATUS_NOT_READY,
                     .keys = UINT64_MAX,
                     .primary_keys = UINT64_MAX,
                     .memory = UINT64_MAX,
                     .memory_limit = UINT64_MAX,
                     .primaries = UINT32_MAX,
                     .replicas = UINT32_MAX});
}

static void s_cluster_edges(kv_msg_t *out, size_t *n) {
    const kv_bytes_t id_255 = {s_node_id_255, sizeof s_node_id_255};
    const kv_bytes_t endpoint_max = {s_endpoint_max, sizeof s_endpoint_max};
    s_add(out, n, (kv_msg_t){.type = KV_MSG_HELLO, .node_id = id_255}); /* empty table */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_HELLO,
                     .node_id = id_255,
                     .incarnation = UINT64_MAX,
                     .endpoint = endpoint_max,
                     .pub_endpoint = endpoint_max,
                     .keys = UINT64_MAX,
                     .memory = UINT64_MAX,
                     .table = {s_max_value, 300}});      /* length above one byte */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_HEARTBEAT}); /* no reports */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_HEARTBEAT,
                     .node_id = id_255,
                     .incarnation = UINT64_MAX,
                     .epoch = UINT64_MAX,
                     .keys = UINT64_MAX,
                     .memory = UINT64_MAX,
                     .memory_limit = UINT64_MAX,
                     .reports = s_reports(REPORTS)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TABLE_REQ, .epoch = UINT64_MAX});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_TABLE}); /* empty table */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_JOIN});  /* empty endpoint */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_JOIN, .req_id = UINT64_MAX, .endpoint = endpoint_max});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_LEAVE}); /* empty node id */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_LEAVE, .req_id = UINT64_MAX, .node_id = id_255});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_INVITE});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_INVITE, .req_id = UINT64_MAX, .endpoint = endpoint_max});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_CLUSTER_REPLY, .status = KV_STATUS_MAX});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_CLUSTER_REPLY,
                     .req_id = UINT64_MAX,
                     .status = KV_STATUS_NOT_FOUND,
                     .node_id = id_255});
}

static void s_replication_edges(kv_msg_t *out, size_t *n) {
    s_add(out, n, (kv_msg_t){.type = KV_MSG_UPDATE, .op = KV_OP_SET}); /* empty key and value */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_UPDATE,
                     .partition = UINT32_MAX,
                     .sender = UINT16_MAX,
                     .epoch = UINT64_MAX,
                     .seq = UINT64_MAX,
                     .op = KV_OP_SET,
                     .key = {s_max_key, sizeof s_max_key},
                     .value = {s_max_value, sizeof s_max_value}});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_UPDATE,
                     .partition = UINT32_MAX,
                     .sender = UINT16_MAX,
                     .epoch = UINT64_MAX,
                     .seq = UINT64_MAX,
                     .op = KV_OP_MAX});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_BEACON}); /* no items */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_BEACON,
                     .sender = UINT16_MAX,
                     .epoch = UINT64_MAX,
                     .items = s_items(ITEMS)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_ACK}); /* no items */
    s_add(out, n, (kv_msg_t){.type = KV_MSG_ACK, .sender = UINT16_MAX, .items = s_items(1)});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_SNAPSHOT_REQ});
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT_REQ,
                     .req_id = UINT64_MAX,
                     .partition = UINT32_MAX,
                     .sender = UINT16_MAX});
    s_add(out, n, (kv_msg_t){.type = KV_MSG_SNAPSHOT, .status = KV_STATUS_NOT_READY}); /* none */
    s_add(out, n,
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .req_id = UINT64_MAX,
                     .partition = UINT32_MAX,
                     .status = KV_STATUS_MAX,
                     .seq = UINT64_MAX,
                     .chunk = UINT32_MAX});
}

/* One representative message of every type, then boundary variants. Only
 * the fields a type encodes are set, so a decoded copy compares equal field
 * by field. Returns the number of samples. */
static size_t s_samples(kv_msg_t *out) {
    s_fill_pattern(s_max_key, sizeof s_max_key, 1);
    s_fill_pattern(s_max_value, sizeof s_max_value, 2);
    s_fill_pattern(s_endpoint_max, sizeof s_endpoint_max, 3);
    memset(s_node_id_255, 'n', sizeof s_node_id_255);
    s_fill_records();
    size_t n = 0;
    s_client_samples(out, &n);
    s_cluster_samples(out, &n);
    s_replication_samples(out, &n);
    s_metadata_samples(out, &n);
    s_tx_samples(out, &n);
    s_mget_samples(out, &n);
    s_expiry_samples(out, &n);
    s_client_edges(out, &n);
    s_cluster_edges(out, &n);
    s_replication_edges(out, &n);
    return n;
}

/* The first sample of a type. */
static const kv_msg_t *s_sample_of(const kv_msg_t *samples, size_t n, uint8_t type) {
    for (size_t i = 0; i < n; i++)
        if (samples[i].type == type) return &samples[i];
    cr_assert_fail("no sample of %s", kv_msg_type_name(type));
    return NULL;
}

static int s_bytes_equal(kv_bytes_t a, kv_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void s_assert_same_numbers(const kv_msg_t *got, const kv_msg_t *want) {
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
    cr_expect_eq(got->incarnation, want->incarnation, "%s", name);
    cr_expect_eq(got->memory_limit, want->memory_limit, "%s", name);
    cr_expect_eq(got->seq, want->seq, "%s", name);
    cr_expect_eq(got->chunk, want->chunk, "%s", name);
    cr_expect_eq(got->sender, want->sender, "%s", name);
    cr_expect_eq(got->op, want->op, "%s", name);
    cr_expect_eq(got->meta.version, want->meta.version, "%s", name);
    cr_expect_eq(got->meta.expiry, want->meta.expiry, "%s", name);
    if (want->version) cr_expect_eq(got->version, want->version, "%s", name);
}

/* The entries of got (as decoded) and want (as built) hold the same
 * records, whatever version each is laid out in. */
static void s_assert_same_entries(const kv_msg_t *got, const kv_msg_t *want) {
    size_t gpos = 0, wpos = 0;
    kv_msg_entry_t g, w;
    while (kv_msg_entry_next(want, &wpos, &w) == 0) {
        cr_assert_eq(kv_msg_entry_next(got, &gpos, &g), 0, "an entry short");
        cr_expect(s_bytes_equal(g.key, w.key));
        cr_expect(s_bytes_equal(g.value, w.value));
        cr_expect_eq(g.meta.version, w.meta.version);
        cr_expect_eq(g.meta.expiry, w.meta.expiry);
    }
    cr_expect_eq(kv_msg_entry_next(got, &gpos, &g), -1, "an entry too many");
}

static void s_assert_same_bytes(const kv_msg_t *got, const kv_msg_t *want) {
    const char *name = kv_msg_type_name(want->type);
    cr_expect(s_bytes_equal(got->key, want->key), "%s key", name);
    cr_expect(s_bytes_equal(got->value, want->value), "%s value", name);
    cr_expect(s_bytes_equal(got->after, want->after), "%s after", name);
    if (got->version == (want->version ? want->version : KV_MSG_VERSION))
        cr_expect(s_bytes_equal(got->entries, want->entries), "%s entries", name);
    else /* laid out in another version: compare record by record */
        s_assert_same_entries(got, want);
    cr_expect(s_bytes_equal(got->node_id, want->node_id), "%s node_id", name);
    cr_expect(s_bytes_equal(got->endpoint, want->endpoint), "%s endpoint", name);
    cr_expect(s_bytes_equal(got->pub_endpoint, want->pub_endpoint), "%s pub_endpoint", name);
    cr_expect(s_bytes_equal(got->table, want->table), "%s table", name);
    cr_expect(s_bytes_equal(got->items, want->items), "%s items", name);
    cr_expect(s_bytes_equal(got->reports, want->reports), "%s reports", name);
    cr_expect(s_bytes_equal(got->counters, want->counters), "%s counters", name);
}

/* got decoded to exactly want, field by field. */
static void s_assert_same(const kv_msg_t *got, const kv_msg_t *want) {
    s_assert_same_numbers(got, want);
    s_assert_same_bytes(got, want);
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

/* Writes value big-endian in width bytes at frame + at (a length field). */
static void s_poke(uint8_t *frame, size_t at, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; i++) frame[at + i] = (uint8_t)(value >> (8 * (width - 1 - i)));
}

/* A decoded string lies inside the frame; an empty one is NULL. */
static void s_assert_inside(kv_bytes_t field, const uint8_t *buf, size_t len, const char *what) {
    if (field.len == 0) {
        cr_assert_null(field.ptr, "%s: an empty field is NULL", what);
        return;
    }
    cr_assert_not_null(field.ptr, "%s: a non-empty field without bytes", what);
    uintptr_t start = (uintptr_t)buf;
    uintptr_t ptr = (uintptr_t)field.ptr;
    cr_assert(ptr >= start && field.len <= len && ptr - start <= len - field.len,
              "%s lies outside the frame", what);
}

/* The (key, value) entries of a SCAN_REPLY or SNAPSHOT walk to exactly
 * count, each inside the frame. */
static void s_assert_entries(const kv_msg_t *m, const uint8_t *buf, size_t len) {
    size_t pos = 0;
    uint32_t seen = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(m, &pos, &entry) == 0) {
        s_assert_inside(entry.key, buf, len, "entry key");
        s_assert_inside(entry.value, buf, len, "entry value");
        if (m->version < 2) cr_assert(!entry.meta.version && !entry.meta.expiry);
        seen++;
    }
    cr_assert_eq(seen, m->count, "entries walk to %u, count says %u", seen, m->count);
    cr_assert_eq(pos, m->entries.len);
}

/* Items and reports hold whole records, each readable inside the frame
 * (AddressSanitizer watches the reads). */
static void s_assert_records(const kv_msg_t *m) {
    cr_assert_eq(m->items.len % KV_MSG_ITEM_SIZE, 0, "items of %zu bytes", m->items.len);
    cr_assert_eq(m->reports.len % KV_MSG_REPORT_SIZE, 0, "reports of %zu bytes", m->reports.len);
    uint64_t sum = 0;
    for (size_t i = 0; i < m->items.len / KV_MSG_ITEM_SIZE; i++)
        sum += kv_msg_item_read(&m->items, i).seq;
    for (size_t i = 0; i < m->reports.len / KV_MSG_REPORT_SIZE; i++)
        sum += kv_msg_report_read(&m->reports, i).seq;
    (void)sum;
}

/* Counters walk to exactly the end of their blob, each name inside the
 * frame. */
static void s_assert_counters(const kv_msg_t *m, const uint8_t *buf, size_t len) {
    size_t pos = 0;
    kv_msg_counter_t counter;
    while (kv_msg_counter_next(m, &pos, &counter) == 0)
        s_assert_inside(counter.name, buf, len, "counter name");
    cr_assert_eq(pos, m->counters.len);
}

/* A frame the decoder accepted is one the encoder writes: the same bytes. */
static void s_assert_reencodes(const kv_msg_t *m, const uint8_t *buf, size_t len) {
    static uint8_t again[4096];
    cr_assert_eq(kv_msg_encoded_size(m), len, "%s re-encodes to another size",
                 kv_msg_type_name(m->type));
    cr_assert_leq(len, sizeof again);
    cr_assert_eq(kv_msg_encode(m, again, len), len);
    cr_assert_eq(memcmp(again, buf, len), 0, "%s re-encodes to other bytes",
                 kv_msg_type_name(m->type));
}

/* What the header promises about a frame that decoded: every string is
 * inside it, enums are in range, entries walk to exactly count, record
 * blobs are whole, and encoding it again gives back the frame. */
static void s_assert_sane(const kv_msg_t *m, const uint8_t *buf, size_t len) {
    cr_assert(s_is_known_type(m->type));
    cr_assert(m->version >= KV_MSG_VERSION_MIN && m->version <= KV_MSG_VERSION);
    cr_assert_leq(m->status, KV_STATUS_MAX);
    cr_assert_leq(m->has_after, 1);
    cr_assert_leq(m->more, 1);
    if (m->type == KV_MSG_UPDATE)
        cr_assert(m->op >= 1 && m->op <= KV_OP_MAX, "op %u", m->op);
    else
        cr_assert_eq(m->op, 0);
    s_assert_inside(m->key, buf, len, "key");
    s_assert_inside(m->value, buf, len, "value");
    s_assert_inside(m->after, buf, len, "after");
    s_assert_inside(m->entries, buf, len, "entries");
    s_assert_inside(m->node_id, buf, len, "node_id");
    s_assert_inside(m->endpoint, buf, len, "endpoint");
    s_assert_inside(m->pub_endpoint, buf, len, "pub_endpoint");
    s_assert_inside(m->table, buf, len, "table");
    s_assert_inside(m->items, buf, len, "items");
    s_assert_inside(m->reports, buf, len, "reports");
    s_assert_inside(m->counters, buf, len, "counters");
    s_assert_inside(m->ops, buf, len, "ops");
    s_assert_inside(m->ttls, buf, len, "ttls");
    s_assert_records(m);
    s_assert_counters(m, buf, len);
    if (m->type != KV_MSG_UPDATE) cr_assert(!m->meta.expiry); /* REPLY has a version */
    if (m->type != KV_MSG_UPDATE && m->type != KV_MSG_REPLY) cr_assert(!m->meta.version);
    if (m->type == KV_MSG_SCAN_REPLY || m->type == KV_MSG_SNAPSHOT || m->type == KV_MSG_TX_REPLY ||
        m->type == KV_MSG_MGET || m->type == KV_MSG_MGET_REPLY)
        s_assert_entries(m, buf, len);
    else
        cr_assert_eq(m->count, 0);
    s_assert_reencodes(m, buf, len);
}

//  --------------------------------------------------------------------------
//  The layout kv_msg_schema.h declares, written out by the test's own
//  writer (not the codec's) from the same field lists: the kinds as the
//  schema's header describes them, field by field. Each field's position is
//  kept, so the malformed-frame tests below can aim at every enum, flag and
//  length of every message.

typedef struct {
    uint8_t buf[4096];
    size_t len;
} s_frame_t;

#define MAX_SLOTS 16

/* Where a field of a frame sits. */
typedef struct {
    const char *kind;   /* its schema kind */
    const char *member; /* its kv_msg_t member */
    size_t at;          /* offset of its first byte (the length, for strings) */
    size_t width;       /* bytes of the integer, or of the length field */
    size_t len;         /* strings and blobs: bytes behind the length */
    size_t record;      /* blobs of fixed records: their size; else 1 */
} s_slot_t;

typedef struct {
    s_frame_t frame;           /* the bytes */
    s_slot_t slots[MAX_SLOTS]; /* its fields, in order */
    size_t n;                  /* slots used */
    uint8_t version;           /* the version written */
    const kv_msg_t *msg;       /* the message (for its entries) */
} s_layout_t;

static void s_be(s_frame_t *f, uint64_t value, size_t width) {
    cr_assert_leq(width, sizeof f->buf - f->len);
    s_poke(f->buf, f->len, value, width);
    f->len += width;
}

static void s_raw(s_frame_t *f, kv_bytes_t bytes) {
    cr_assert_leq(bytes.len, sizeof f->buf - f->len);
    if (bytes.len) memcpy(f->buf + f->len, bytes.ptr, bytes.len);
    f->len += bytes.len;
}

/* Records the field about to be written (none inside records). */
static void s_slot(s_layout_t *l, const char *kind, const char *member, size_t width, size_t len,
                   size_t record) {
    if (!member) return;
    cr_assert_lt(l->n, MAX_SLOTS);
    l->slots[l->n++] = (s_slot_t){kind, member, l->frame.len, width, len, record};
}

static void s_int(s_layout_t *l, const char *kind, const char *member, uint64_t v, size_t width) {
    s_slot(l, kind, member, width, 0, 1);
    s_be(&l->frame, v, width);
}

static void s_str(s_layout_t *l, const char *kind, const char *member, const kv_bytes_t *v,
                  size_t width, size_t record) {
    s_slot(l, kind, member, width, v->len, record);
    s_be(&l->frame, v->len, width);
    s_raw(&l->frame, *v);
}

/* One writer per kind, named after it. */
static void t_U8(s_layout_t *l, const char *member, const uint8_t *v) {
    s_int(l, "U8", member, *v, 1);
}
static void t_U16(s_layout_t *l, const char *member, const uint16_t *v) {
    s_int(l, "U16", member, *v, 2);
}
static void t_U32(s_layout_t *l, const char *member, const uint32_t *v) {
    s_int(l, "U32", member, *v, 4);
}
static void t_U64(s_layout_t *l, const char *member, const uint64_t *v) {
    s_int(l, "U64", member, *v, 8);
}
static void t_STATUS(s_layout_t *l, const char *member, const uint8_t *v) {
    s_int(l, "STATUS", member, *v, 1);
}
static void t_FLAG(s_layout_t *l, const char *member, const uint8_t *v) {
    s_int(l, "FLAG", member, *v, 1);
}
static void t_OP(s_layout_t *l, const char *member, const uint8_t *v) {
    s_int(l, "OP", member, *v, 1);
}
static void t_STR8(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "STR8", member, v, 1, 1);
}
static void t_STR16(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "STR16", member, v, 2, 1);
}
static void t_BLOB32(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "BLOB32", member, v, 4, 1);
}
static void t_ITEMS(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "ITEMS", member, v, 4, KV_MSG_ITEM_SIZE);
}
static void t_REPORTS(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "REPORTS", member, v, 4, KV_MSG_REPORT_SIZE);
}
static void t_COUNTERS(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "COUNTERS", member, v, 4, 1);
}
static void t_TXOPS(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_str(l, "TXOPS", member, v, 4, 1);
}

/* A field of m (a message or an entry), from the version that added it. */
#define T_FIELD(member, KIND, since)                                                               \
    if ((since) <= l->version) t_##KIND(l, #member, &m->member);
#define T_RECORD_FIELD(member, KIND, since)                                                        \
    if ((since) <= l->version) t_##KIND(l, NULL, &m->member);

/* Entries: each record in the frame's version, whatever the caller's. */
static void t_ENTRIES(s_layout_t *l, const char *member, const kv_bytes_t *v) {
    s_slot(l, "ENTRIES", member, 0, v->len, 1);
    size_t pos = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(l->msg, &pos, &entry) == 0) {
        const kv_msg_entry_t *m = &entry;
        KV_MSG_ENTRY_FIELDS(T_RECORD_FIELD)
    }
}

/* The version the schema's rule 3 picks: the lowest holding every
 * non-zero field (and entry field). */
static uint8_t s_need(int nonzero, uint8_t since) {
    return nonzero ? since : KV_MSG_VERSION_MIN;
}
static uint8_t s_max8(uint8_t a, uint8_t b) {
    return a > b ? a : b;
}
#define T_NEED_INT(member, since) need = s_max8(need, s_need(m->member != 0, since));
#define T_NEED_STR(member, since) need = s_max8(need, s_need(m->member.len != 0, since));
#define T_NEED_U8 T_NEED_INT
#define T_NEED_U16 T_NEED_INT
#define T_NEED_U32 T_NEED_INT
#define T_NEED_U64 T_NEED_INT
#define T_NEED_STATUS T_NEED_INT
#define T_NEED_FLAG T_NEED_INT
#define T_NEED_OP T_NEED_INT
#define T_NEED_STR8 T_NEED_STR
#define T_NEED_STR16 T_NEED_STR
#define T_NEED_BLOB32 T_NEED_STR
#define T_NEED_ITEMS T_NEED_STR
#define T_NEED_REPORTS T_NEED_STR
#define T_NEED_COUNTERS T_NEED_STR
#define T_NEED_TXOPS T_NEED_STR
#define T_NEED_ENTRIES(member, since) need = s_max8(need, s_entries_need(m));
#define T_NEED(member, KIND, since) T_NEED_##KIND(member, since)

static uint8_t s_entries_need(const kv_msg_t *msg) {
    uint8_t need = KV_MSG_VERSION_MIN;
    size_t pos = 0;
    kv_msg_entry_t entry;
    while (kv_msg_entry_next(msg, &pos, &entry) == 0) {
        const kv_msg_entry_t *m = &entry;
        // cppcheck-suppress unknownMacro
        KV_MSG_ENTRY_FIELDS(T_NEED)
    }
    return need;
}

#define T_NEED_CASE(NAME, code)                                                                    \
    case KV_MSG_##NAME:                                                                            \
        KV_MSG_##NAME##_FIELDS(T_NEED) break;
static uint8_t s_version_of(const kv_msg_t *m) {
    if (m->version) return m->version;
    uint8_t need = KV_MSG_VERSION_MIN;
    switch (m->type) {
        /* messages share layouts */
        KV_MSG_TYPES(T_NEED_CASE) // NOLINT(bugprone-branch-clone)
    default:
        cr_assert_fail("type %u is not in the schema", m->type);
    }
    return need;
}

/* The frame the schema says m is, and where each of its fields sits. */
#define T_CASE(NAME, code)                                                                         \
    case KV_MSG_##NAME:                                                                            \
        KV_MSG_##NAME##_FIELDS(T_FIELD) break;
static void s_layout(s_layout_t *l, const kv_msg_t *m) {
    memset(l, 0, sizeof(*l));
    l->msg = m;
    l->version = s_version_of(m);
    s_be(&l->frame, l->version, 1);
    s_be(&l->frame, m->type, 1);
    switch (m->type) {
        KV_MSG_TYPES(T_CASE) // NOLINT(bugprone-branch-clone)
    default:
        cr_assert_fail("type %u is not in the schema", m->type);
    }
}

/* The slot of member in m's layout. */
static s_slot_t s_slot_of(const kv_msg_t *m, const char *member) {
    static s_layout_t l;
    s_layout(&l, m);
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.slots[i].member, member) == 0) return l.slots[i];
    cr_assert_fail("%s has no %s", kv_msg_type_name(m->type), member);
    return l.slots[0];
}

//  --------------------------------------------------------------------------
//  Round trips

Test(kv_msg, samples_cover_every_type_and_op) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t t = 0; t < TYPE_COUNT; t++) {
        int found = 0;
        for (size_t i = 0; i < n; i++) found |= samples[i].type == s_types[t].type;
        cr_expect(found, "no sample of %s", s_types[t].name);
    }
    for (int op = 1; op <= KV_OP_MAX; op++) {
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= samples[i].type == KV_MSG_UPDATE && samples[i].op == op;
        cr_expect(found, "no UPDATE with op %d", op);
    }
}

Test(kv_msg, every_type_round_trips) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        cr_expect_eq(frame[0], s_version_of(&samples[i]));
        cr_expect_eq(frame[1], samples[i].type);
        uint8_t roomy[4096]; /* a larger buffer changes nothing */
        cr_assert_eq(kv_msg_encode(&samples[i], roomy, sizeof roomy), len);
        cr_expect_eq(memcmp(roomy, frame, len), 0);
        kv_msg_t decoded;
        memset(&decoded, 0xAB, sizeof decoded); /* the decoder zeroes what it does not set */
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0, "sample %zu (%s)", i,
                     kv_msg_type_name(samples[i].type));
        s_assert_same(&decoded, &samples[i]);
        s_assert_sane(&decoded, frame, len);
        free(frame);
    }
}

/* Every sample, byte for byte, against the layout written out above. */
Test(kv_msg, every_type_matches_the_schema_layout) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    static s_layout_t want;
    for (size_t i = 0; i < n; i++) {
        s_layout(&want, &samples[i]);
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        cr_assert_eq(len, want.frame.len, "sample %zu (%s)", i, kv_msg_type_name(samples[i].type));
        cr_expect_arr_eq(frame, want.frame.buf, len, "sample %zu (%s)", i,
                         kv_msg_type_name(samples[i].type));
        free(frame);
    }
}

/* Rule 3 of the schema: metadata of zeros costs nothing and changes
 * nothing; a frame carries version 2 only when a version 2 field is set. */
Test(kv_msg, frames_take_the_lowest_version_that_fits) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    size_t v1 = 0, v2 = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        cr_expect_eq(frame[0], s_version_of(&samples[i]), "%s", kv_msg_type_name(samples[i].type));
        v1 += frame[0] == 1;
        v2 += frame[0] == 2;
        free(frame);
    }
    cr_expect_gt(v1, 0);
    cr_expect_gt(v2, 0);
    kv_msg_t update = {.type = KV_MSG_UPDATE, .op = KV_OP_SET, .key = BYTES("k")};
    size_t v1_len = kv_msg_encoded_size(&update);
    update.meta.expiry = 1;
    cr_expect_eq(kv_msg_encoded_size(&update), v1_len + 16, "version and expiry appended");
}

/* A message that uses a field its requested version lacks, or asks for a
 * version this codec does not know, cannot be encoded. */
Test(kv_msg, explicit_version_too_old_or_unknown_cannot_be_encoded) {
    uint8_t frame[256];
    kv_msg_t update = {.type = KV_MSG_UPDATE, .op = KV_OP_SET, .version = 1};
    cr_expect_gt(kv_msg_encode(&update, frame, sizeof frame), 0);
    update.meta.version = 1;
    cr_expect_eq(kv_msg_encode(&update, frame, sizeof frame), 0, "version 1 has no meta");
    update.version = 2;
    cr_expect_gt(kv_msg_encode(&update, frame, sizeof frame), 0);
    update.version = KV_MSG_VERSION + 1;
    cr_expect_eq(kv_msg_encode(&update, frame, sizeof frame), 0);
    kv_msg_t stats = {.type = KV_MSG_STATS_REPLY, .version = 1, .counters = s_two_counters()};
    cr_expect_eq(kv_msg_encode(&stats, frame, sizeof frame), 0, "version 1 has no counters");
}

/* Entries built in this version's layout, without metadata, travel as
 * version 1 entries and read back with zero metadata. */
Test(kv_msg, entries_without_metadata_travel_as_version_1) {
    kv_msg_t scan = {.type = KV_MSG_SCAN_REPLY, .count = 3, .entries = s_three_entries()};
    size_t len;
    uint8_t *frame = s_encode(&scan, &len);
    cr_expect_eq(frame[0], 1);
    cr_expect_eq(len, s_slot_of(&scan, "entries").at + scan.entries.len - (size_t)3 * 16);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_eq(decoded.version, 1);
    s_assert_same_entries(&decoded, &scan);
    free(frame);
}

Test(kv_msg, counters_round_trip) {
    kv_msg_t stats = {.type = KV_MSG_STATS_REPLY, .counters = s_two_counters()};
    size_t len;
    uint8_t *frame = s_encode(&stats, &len);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    size_t pos = 0;
    kv_msg_counter_t counter;
    cr_assert_eq(kv_msg_counter_next(&decoded, &pos, &counter), 0);
    cr_expect(s_bytes_equal(counter.name, BYTES("kv_node_bad_frames_total")));
    cr_expect_eq(counter.value, 3);
    cr_assert_eq(kv_msg_counter_next(&decoded, &pos, &counter), 0);
    cr_expect(s_bytes_equal(counter.name, BYTES("x")));
    cr_expect_eq(counter.value, UINT64_MAX);
    cr_expect_eq(kv_msg_counter_next(&decoded, &pos, &counter), -1);
    free(frame);

    uint8_t buf[1 + 255 + 8 + 9]; /* one byte short of a second counter named "y" */
    pos = 0;
    char name[257];
    memset(name, 'n', sizeof name - 1);
    name[256] = '\0';
    cr_expect_eq(kv_msg_counter_put(buf, sizeof buf, &pos, name, 1), -1, "name over 255 bytes");
    name[255] = '\0';
    cr_expect_eq(kv_msg_counter_put(buf, sizeof buf, &pos, name, 1), 0);
    cr_expect_eq(pos, 1 + 255 + 8);
    cr_expect_eq(kv_msg_counter_put(buf, sizeof buf, &pos, "y", 1), -1, "does not fit");
    cr_expect_eq(pos, 1 + 255 + 8);
}

/* Counters that do not walk to the end of their blob are rejected. */
Test(kv_msg, counters_must_walk_to_their_end) {
    static char blob[12];
    for (size_t len = 1; len <= sizeof blob; len++) {
        memset(blob, 0, sizeof blob);
        blob[0] = 2; /* a 2-byte name, then 8 bytes of value: 11 bytes */
        kv_msg_t stats = {.type = KV_MSG_STATS_REPLY, .version = 2, .counters = {blob, len}};
        size_t flen;
        uint8_t *frame = s_encode(&stats, &flen); /* the encoder trusts the caller */
        kv_msg_t decoded;
        int want = len == 11 ? 0 : -1;
        cr_expect_eq(kv_msg_decode(frame, flen, &decoded), want, "counters of %zu bytes", len);
        free(frame);
    }
}

Test(kv_msg, decoded_strings_point_into_the_frame) {
    kv_msg_t set = s_keyed(KV_MSG_SET);
    size_t len;
    uint8_t *frame = s_encode(&set, &len);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    const s_slot_t key = s_slot_of(&set, "key");
    cr_expect_eq((const uint8_t *)decoded.key.ptr, frame + key.at + key.width);
    cr_expect_eq((const uint8_t *)decoded.value.ptr, frame + len - set.value.len);
    free(frame);

    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    const kv_msg_t *beacon = s_sample_of(samples, n, KV_MSG_BEACON);
    frame = s_encode(beacon, &len);
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    cr_expect_eq((const uint8_t *)decoded.items.ptr, frame + len - beacon->items.len);
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

    /* Empty blobs too; s_assert_sane checks every field of every sample. */
    const uint8_t blobs[] = {KV_MSG_HEARTBEAT, KV_MSG_BEACON, KV_MSG_ACK, KV_MSG_TABLE};
    for (size_t i = 0; i < sizeof blobs; i++) {
        kv_msg_t empty = {.type = blobs[i]};
        len = kv_msg_encode(&empty, frame, sizeof frame);
        cr_assert_gt(len, 0);
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
        cr_expect_null(decoded.items.ptr);
        cr_expect_null(decoded.reports.ptr);
        cr_expect_null(decoded.table.ptr);
        s_assert_sane(&decoded, frame, len);
    }
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
    cr_expect_null(decoded.items.ptr);
    cr_expect_null(decoded.reports.ptr);

    memset(&decoded, 0xAB, sizeof decoded); /* a failed decode leaves no garbage either */
    cr_assert_eq(kv_msg_decode(frame, 1, &decoded), -1);
    cr_expect_eq(decoded.incarnation, 0);
    cr_expect_eq(decoded.seq, 0);
    cr_expect_null(decoded.items.ptr);
}

Test(kv_msg, max_key_and_value_round_trip) {
    s_fill_pattern(s_max_key, sizeof s_max_key, 1);
    s_fill_pattern(s_max_value, sizeof s_max_value, 2);
    kv_msg_t set = {.type = KV_MSG_SET, .key = {s_max_key, KV_MAX_KEY_BYTES}};
    set.value = (kv_bytes_t){s_max_value, KV_MAX_VALUE_BYTES};
    size_t len;
    uint8_t *frame = s_encode(&set, &len);
    const s_slot_t set_value = s_slot_of(&(kv_msg_t){.type = KV_MSG_SET}, "value");
    cr_expect_eq(len, set_value.at + KV_MAX_KEY_BYTES + 2 + KV_MAX_VALUE_BYTES);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    s_assert_same(&decoded, &set);
    free(frame);

    kv_msg_t update = {.type = KV_MSG_UPDATE, .op = KV_OP_SET, .key = set.key, .value = set.value};
    frame = s_encode(&update, &len);
    const kv_msg_t empty = {.type = KV_MSG_UPDATE, .op = KV_OP_SET};
    cr_expect_eq(len, kv_msg_encoded_size(&empty) + KV_MAX_KEY_BYTES + KV_MAX_VALUE_BYTES);
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    s_assert_same(&decoded, &update);
    free(frame);
}

/* Sets *field (a string of msg) to max bytes, then max + 1: the first
 * encodes, the second cannot be encoded at all. */
static void s_expect_string_limit(kv_msg_t *msg, kv_bytes_t *field, size_t max, const char *ptr) {
    const char *name = kv_msg_type_name(msg->type);
    uint8_t small[16];
    *field = (kv_bytes_t){ptr, max + 1};
    cr_expect_eq(kv_msg_encoded_size(msg), 0, "%s with %zu bytes", name, max + 1);
    cr_expect_eq(kv_msg_encode(msg, small, sizeof small), 0, "%s", name);
    field->len = max;
    size_t size = kv_msg_encoded_size(msg);
    cr_expect_gt(size, max, "%s with %zu bytes", name, max);
    if (max > UINT16_MAX) return; /* only counted: no buffer that large */
    uint8_t *frame = malloc(size);
    cr_assert_not_null(frame);
    cr_expect_eq(kv_msg_encode(msg, frame, size), size, "%s", name);
    free(frame);
}

/* str8 holds 255 bytes, str16 65535, blob32 4 GiB - 1; one more cannot be
 * encoded at all. */
Test(kv_msg, strings_over_their_length_field_cannot_be_encoded) {
    static char big[65536];
    kv_msg_t m = {.type = KV_MSG_HELLO};
    s_expect_string_limit(&m, &m.node_id, 255, big);
    s_expect_string_limit(&m, &m.endpoint, 65535, big);
    s_expect_string_limit(&m, &m.pub_endpoint, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_HEARTBEAT};
    s_expect_string_limit(&m, &m.node_id, 255, big);
    m = (kv_msg_t){.type = KV_MSG_LEAVE};
    s_expect_string_limit(&m, &m.node_id, 255, big);
    m = (kv_msg_t){.type = KV_MSG_CLUSTER_REPLY};
    s_expect_string_limit(&m, &m.node_id, 255, big);
    m = (kv_msg_t){.type = KV_MSG_GET};
    s_expect_string_limit(&m, &m.key, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_SET};
    s_expect_string_limit(&m, &m.value, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_SCAN};
    s_expect_string_limit(&m, &m.after, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_REPLY};
    s_expect_string_limit(&m, &m.value, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_JOIN};
    s_expect_string_limit(&m, &m.endpoint, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_INVITE};
    s_expect_string_limit(&m, &m.endpoint, 65535, big);
    m = (kv_msg_t){.type = KV_MSG_UPDATE, .op = KV_OP_SET};
    s_expect_string_limit(&m, &m.key, 65535, big);
    s_expect_string_limit(&m, &m.value, 65535, big);

    cr_expect_eq(kv_msg_encoded_size(&(kv_msg_t){.type = KV_MSG_GET, .key = {big, 65535}}),
                 kv_msg_encoded_size(&(kv_msg_t){.type = KV_MSG_GET}) + 65535);
#if SIZE_MAX > UINT32_MAX
    /* blob32: sizes are only counted, the bytes behind them never read. */
    m = (kv_msg_t){.type = KV_MSG_TABLE};
    s_expect_string_limit(&m, &m.table, UINT32_MAX, big);
    m = (kv_msg_t){.type = KV_MSG_HELLO};
    s_expect_string_limit(&m, &m.table, UINT32_MAX, big);
    m = (kv_msg_t){.type = KV_MSG_HEARTBEAT};
    s_expect_string_limit(&m, &m.reports, UINT32_MAX, big);
    m = (kv_msg_t){.type = KV_MSG_BEACON};
    s_expect_string_limit(&m, &m.items, UINT32_MAX, big);
    m = (kv_msg_t){.type = KV_MSG_ACK};
    s_expect_string_limit(&m, &m.items, UINT32_MAX, big);
#endif
}

Test(kv_msg, unknown_type_cannot_be_encoded) {
    uint8_t frame[64];
    for (int type = 0; type < 256; type++) {
        kv_msg_t msg = {.type = (uint8_t)type};
        if (msg.type == KV_MSG_UPDATE) msg.op = KV_OP_SET;
        size_t want = s_is_known_type(type) ? kv_msg_encode(&msg, frame, sizeof frame) : 0;
        if (s_is_known_type(type)) cr_expect_gt(want, 0, "known type %d", type);
        cr_expect_eq(kv_msg_encoded_size(&msg), want, "type %d", type);
        cr_expect_eq(kv_msg_encode(&msg, frame, sizeof frame), want, "type %d", type);
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
//  SCAN_REPLY and SNAPSHOT entries

/* Bytes before the entries. */
static size_t s_entries_at(uint8_t type) {
    return s_slot_of(&(kv_msg_t){.type = type}, "entries").at;
}

static const uint8_t s_paged[] = {KV_MSG_SCAN_REPLY, KV_MSG_SNAPSHOT};

Test(kv_msg, pages_with_no_entries) {
    for (size_t t = 0; t < sizeof s_paged; t++) {
        kv_msg_t reply = {.type = s_paged[t], .req_id = 5, .more = 0, .count = 0};
        size_t len;
        uint8_t *frame = s_encode(&reply, &len);
        cr_expect_eq(len, s_entries_at(s_paged[t]));
        kv_msg_t decoded;
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
        cr_expect_eq(decoded.count, 0);
        cr_expect_eq(decoded.entries.len, 0);
        cr_expect_null(decoded.entries.ptr);
        size_t pos = 0;
        kv_msg_entry_t entry;
        cr_expect_eq(kv_msg_entry_next(&decoded, &pos, &entry), -1);
        cr_expect_eq(pos, 0);
        free(frame);
    }
}

/* A node builds a page with kv_msg_entry_put; the gateway (or a replica)
 * walks it with kv_msg_entry_next and gets every entry back in order. */
Test(kv_msg, pages_with_many_entries) {
    enum { ENTRIES = 2000 };
    size_t cap = 0;
    for (int i = 0; i < ENTRIES; i++) cap += kv_msg_entry_size(16, (size_t)(i % 40));
    uint8_t *entries = malloc(cap);
    cr_assert_not_null(entries);
    size_t pos = 0;
    for (int i = 0; i < ENTRIES; i++) {
        char key[17];
        char value[40];
        snprintf(key, sizeof key, "key:%011d", i);
        memset(value, 'a' + i % 26, sizeof value);
        const kv_msg_entry_t entry = {{key, 16}, {value, (size_t)(i % 40)}, {(uint64_t)i, 0}};
        cr_assert_eq(kv_msg_entry_put(entries, cap, &pos, &entry), 0);
    }
    cr_assert_eq(pos, cap, "kv_msg_entry_size predicts the bytes entry_put writes");

    for (size_t t = 0; t < sizeof s_paged; t++) {
        kv_msg_t reply = {.type = s_paged[t], .req_id = 1, .more = 1, .count = ENTRIES};
        reply.entries = (kv_bytes_t){(const char *)entries, pos};
        size_t len;
        uint8_t *frame = s_encode(&reply, &len);
        cr_expect_eq(len, s_entries_at(s_paged[t]) + cap);
        kv_msg_t decoded;
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
        cr_expect_eq(decoded.count, ENTRIES);
        cr_expect_eq(decoded.more, 1);

        size_t at = 0;
        kv_msg_entry_t entry;
        for (int i = 0; i < ENTRIES; i++) {
            char want[17];
            snprintf(want, sizeof want, "key:%011d", i);
            cr_assert_eq(kv_msg_entry_next(&decoded, &at, &entry), 0, "entry %d", i);
            cr_assert_eq(entry.key.len, 16);
            cr_assert_eq(memcmp(entry.key.ptr, want, 16), 0);
            cr_assert_eq(entry.value.len, (size_t)(i % 40));
            for (size_t b = 0; b < entry.value.len; b++)
                cr_assert_eq(entry.value.ptr[b], 'a' + i % 26);
            cr_assert_eq(entry.meta.version, (uint64_t)i);
        }
        cr_expect_eq(kv_msg_entry_next(&decoded, &at, &entry), -1, "end of page");
        free(frame);
    }
    free(entries);
}

Test(kv_msg, entry_put_that_does_not_fit_changes_nothing) {
    uint8_t buf[64];
    const kv_msg_entry_t first = {BYTES("key"), BYTES("value"), {1, 2}};
    const kv_msg_entry_t second = {BYTES("k"), BYTES("v"), {0, 0}};
    const kv_msg_entry_t empty = {{NULL, 0}, {NULL, 0}, {0, 0}};
    size_t pos = 0;
    cr_assert_eq(kv_msg_entry_put(buf, sizeof buf, &pos, &first), 0);
    cr_assert_eq(pos, kv_msg_entry_size(3, 5));
    size_t before = pos;
    size_t cap = before + kv_msg_entry_size(1, 1) - 1;
    cr_expect_eq(kv_msg_entry_put(buf, cap, &pos, &second), -1, "one byte short");
    cr_expect_eq(pos, before);
    cr_expect_eq(kv_msg_entry_put(buf, before + kv_msg_entry_size(0, 0), &pos, &empty), 0);
    cr_expect_eq(pos, before + kv_msg_entry_size(0, 0));
}

Test(kv_msg, page_count_must_match_the_entries) {
    for (size_t t = 0; t < sizeof s_paged; t++) {
        const char *name = kv_msg_type_name(s_paged[t]);
        kv_msg_t reply = {.type = s_paged[t], .count = 3, .entries = s_three_entries()};
        for (uint32_t count = 0; count < 8; count++) {
            reply.count = count;
            size_t len;
            uint8_t *frame = s_encode(&reply, &len); /* the encoder trusts count */
            kv_msg_t decoded;
            int want = count == 3 ? 0 : -1;
            cr_expect_eq(kv_msg_decode(frame, len, &decoded), want, "%s: count %u for 3 entries",
                         name, count);
            free(frame);
        }
        reply.count = UINT32_MAX;
        size_t len;
        uint8_t *frame = s_encode(&reply, &len);
        kv_msg_t decoded;
        cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "%s", name);
        free(frame);
    }
}

//  --------------------------------------------------------------------------
//  BEACON / ACK items and HEARTBEAT reports

/* Record i of a blob, big-endian as kv_msg.h lays it out; neighbours and
 * the bytes around them untouched. */
Test(kv_msg, item_layout_matches_the_header) {
    uint8_t buf[3 * KV_MSG_ITEM_SIZE];
    memset(buf, 0xEE, sizeof buf);
    const kv_msg_item_t item = {0x01020304, 0x05060708090A0B0C, 0x0D};
    kv_msg_item_write(buf, 1, &item);
    uint8_t want[3 * KV_MSG_ITEM_SIZE];
    memset(want, 0xEE, sizeof want);
    for (size_t b = 0; b < KV_MSG_ITEM_SIZE; b++) want[KV_MSG_ITEM_SIZE + b] = (uint8_t)(b + 1);
    cr_expect_arr_eq(buf, want, sizeof want);
    static s_layout_t layout; /* and as the schema's record lists it */
    s_layout_t *l = &layout;
    l->version = KV_MSG_VERSION;
    const kv_msg_item_t *m = &item;
    KV_MSG_ITEM_FIELDS(T_RECORD_FIELD)
    cr_assert_eq(l->frame.len, KV_MSG_ITEM_SIZE);
    cr_expect_arr_eq(buf + KV_MSG_ITEM_SIZE, l->frame.buf, KV_MSG_ITEM_SIZE);

    const kv_bytes_t blob = {(const char *)buf, sizeof buf};
    kv_msg_item_t got = kv_msg_item_read(&blob, 1);
    cr_expect_eq(got.partition, item.partition);
    cr_expect_eq(got.seq, item.seq);
    cr_expect_eq(got.flag, item.flag);
}

Test(kv_msg, report_layout_matches_the_header) {
    uint8_t buf[3 * KV_MSG_REPORT_SIZE];
    memset(buf, 0xEE, sizeof buf);
    const kv_msg_report_t report = {0x01020304, 0x05, 0x06, 0x0708090A0B0C0D0E};
    kv_msg_report_write(buf, 1, &report);
    uint8_t want[3 * KV_MSG_REPORT_SIZE];
    memset(want, 0xEE, sizeof want);
    for (size_t b = 0; b < KV_MSG_REPORT_SIZE; b++) want[KV_MSG_REPORT_SIZE + b] = (uint8_t)(b + 1);
    cr_expect_arr_eq(buf, want, sizeof want);
    static s_layout_t layout; /* and as the schema's record lists it */
    s_layout_t *l = &layout;
    l->version = KV_MSG_VERSION;
    const kv_msg_report_t *m = &report;
    KV_MSG_REPORT_FIELDS(T_RECORD_FIELD)
    cr_assert_eq(l->frame.len, KV_MSG_REPORT_SIZE);
    cr_expect_arr_eq(buf + KV_MSG_REPORT_SIZE, l->frame.buf, KV_MSG_REPORT_SIZE);

    const kv_bytes_t blob = {(const char *)buf, sizeof buf};
    kv_msg_report_t got = kv_msg_report_read(&blob, 1);
    cr_expect_eq(got.partition, report.partition);
    cr_expect_eq(got.role, report.role);
    cr_expect_eq(got.state, report.state);
    cr_expect_eq(got.seq, report.seq);
}

/* Boundary records written into an exactly sized buffer, carried by a
 * BEACON, an ACK and a HEARTBEAT, and read back from the decoded frames. */
Test(kv_msg, items_and_reports_round_trip_through_frames) {
    const kv_msg_item_t items[] = {{0, 0, 0},
                                   {UINT32_MAX, UINT64_MAX, 1},
                                   {1023, 1, 0xFF},
                                   {KV_TOPIC_BEACON - 1, 1u << 31, 1}};
    const size_t nitems = sizeof items / sizeof items[0];
    uint8_t *ibuf = malloc(nitems * KV_MSG_ITEM_SIZE);
    cr_assert_not_null(ibuf);
    for (size_t i = 0; i < nitems; i++) kv_msg_item_write(ibuf, i, &items[i]);
    const uint8_t carriers[] = {KV_MSG_BEACON, KV_MSG_ACK};
    for (size_t c = 0; c < sizeof carriers; c++) {
        kv_msg_t m = {.type = carriers[c], .sender = 7, .epoch = 8};
        if (m.type == KV_MSG_ACK) m.epoch = 0;
        m.items = (kv_bytes_t){(const char *)ibuf, nitems * KV_MSG_ITEM_SIZE};
        size_t len;
        uint8_t *frame = s_encode(&m, &len);
        kv_msg_t decoded;
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
        s_assert_same(&decoded, &m);
        cr_assert_eq(decoded.items.len / KV_MSG_ITEM_SIZE, nitems);
        for (size_t i = 0; i < nitems; i++) {
            kv_msg_item_t got = kv_msg_item_read(&decoded.items, i);
            cr_expect_eq(got.partition, items[i].partition, "item %zu", i);
            cr_expect_eq(got.seq, items[i].seq, "item %zu", i);
            cr_expect_eq(got.flag, items[i].flag, "item %zu", i);
        }
        free(frame);
    }
    free(ibuf);

    const kv_msg_report_t reports[] = {
        {0, 0, 0, 0},
        {1, 1, KV_REPORT_LIVE, 1},
        {2, KV_ROLE_LEARNER, KV_REPORT_READY, 2},
        {3, KV_ROLE_LEARNER, KV_REPORT_LIVE | KV_REPORT_READY, 3},
        {UINT32_MAX, 0xFF, 0xFF, UINT64_MAX},
    };
    const size_t nreports = sizeof reports / sizeof reports[0];
    uint8_t *rbuf = malloc(nreports * KV_MSG_REPORT_SIZE);
    cr_assert_not_null(rbuf);
    for (size_t i = 0; i < nreports; i++) kv_msg_report_write(rbuf, i, &reports[i]);
    kv_msg_t heartbeat = {.type = KV_MSG_HEARTBEAT, .node_id = BYTES("n"), .incarnation = 1};
    heartbeat.reports = (kv_bytes_t){(const char *)rbuf, nreports * KV_MSG_REPORT_SIZE};
    size_t len;
    uint8_t *frame = s_encode(&heartbeat, &len);
    kv_msg_t decoded;
    cr_assert_eq(kv_msg_decode(frame, len, &decoded), 0);
    s_assert_same(&decoded, &heartbeat);
    cr_assert_eq(decoded.reports.len / KV_MSG_REPORT_SIZE, nreports);
    for (size_t i = 0; i < nreports; i++) {
        kv_msg_report_t got = kv_msg_report_read(&decoded.reports, i);
        cr_expect_eq(got.partition, reports[i].partition, "report %zu", i);
        cr_expect_eq(got.role, reports[i].role, "report %zu", i);
        cr_expect_eq(got.state, reports[i].state, "report %zu", i);
        cr_expect_eq(got.seq, reports[i].seq, "report %zu", i);
    }
    free(frame);
    free(rbuf);
}

/* A HEARTBEAT's reports and a BEACON's or ACK's items hold whole records:
 * any other length is rejected (the encoder trusts the caller). */
Test(kv_msg, record_blobs_must_hold_whole_records) {
    static char blob[4 * KV_MSG_REPORT_SIZE + 1];
    const struct {
        uint8_t type;
        size_t size;
    } cases[] = {
        {KV_MSG_HEARTBEAT, KV_MSG_REPORT_SIZE},
        {KV_MSG_BEACON, KV_MSG_ITEM_SIZE},
        {KV_MSG_ACK, KV_MSG_ITEM_SIZE},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t len = 0; len <= 3 * cases[c].size + 1; len++) {
            kv_msg_t m = {.type = cases[c].type, .node_id = BYTES("id"), .sender = 1};
            if (m.type != KV_MSG_HEARTBEAT) m.node_id = (kv_bytes_t){NULL, 0};
            kv_bytes_t records = {len ? blob : NULL, len};
            if (m.type == KV_MSG_HEARTBEAT)
                m.reports = records;
            else
                m.items = records;
            size_t flen;
            uint8_t *frame = s_encode(&m, &flen);
            kv_msg_t decoded;
            int want = len % cases[c].size == 0 ? 0 : -1;
            cr_expect_eq(kv_msg_decode(frame, flen, &decoded), want, "%s with %zu record bytes",
                         kv_msg_type_name(m.type), len);
            free(frame);
        }
    }
}

/* A routing table is opaque to the codec: any length goes. */
Test(kv_msg, table_blobs_take_any_length) {
    static char blob[40];
    for (size_t len = 0; len <= sizeof blob; len++) {
        kv_bytes_t table = {len ? blob : NULL, len};
        kv_msg_t msgs[] = {{.type = KV_MSG_TABLE, .table = table},
                           {.type = KV_MSG_HELLO, .node_id = BYTES("n"), .table = table}};
        for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
            size_t flen;
            uint8_t *frame = s_encode(&msgs[i], &flen);
            kv_msg_t decoded;
            cr_expect_eq(kv_msg_decode(frame, flen, &decoded), 0, "%s with a %zu-byte table",
                         kv_msg_type_name(msgs[i].type), len);
            cr_expect_eq(decoded.table.len, len);
            free(frame);
        }
    }
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
        for (int extra = 0; extra < 256; extra++) {
            longer[len] = (uint8_t)extra;
            kv_msg_t decoded;
            cr_assert_eq(kv_msg_decode(longer, len + 1, &decoded), -1, "%s + 0x%02x",
                         kv_msg_type_name(samples[i].type), extra);
        }
        free(longer);
        free(frame);
    }
}

/* Versions outside KV_MSG_VERSION_MIN .. KV_MSG_VERSION fail; a frame
 * relabelled with another known version either fails or decodes to a
 * sane message (schema rule 4). */
Test(kv_msg, unknown_version_fails) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        for (int version = 0; version < 256; version++) {
            frame[0] = (uint8_t)version;
            kv_msg_t decoded;
            int rc = kv_msg_decode(frame, len, &decoded);
            if (version < KV_MSG_VERSION_MIN || version > KV_MSG_VERSION)
                cr_assert_eq(rc, -1, "%s with version %d", kv_msg_type_name(samples[i].type),
                             version);
            else if (rc == 0)
                s_assert_sane(&decoded, frame, len);
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

/* Every u8 enum and flag the schema declares, in every sample, set to each
 * of the 256 byte values: the ones in range decode to that value, the
 * others fail. */
static void s_expect_enum_range(const kv_msg_t *m, const s_slot_t *slot, int lo, int hi) {
    size_t len;
    uint8_t *frame = s_encode(m, &len);
    for (int value = 0; value < 256; value++) {
        frame[slot->at] = (uint8_t)value;
        kv_msg_t decoded;
        int want = value >= lo && value <= hi ? 0 : -1;
        cr_assert_eq(kv_msg_decode(frame, len, &decoded), want, "%s with %s %d",
                     kv_msg_type_name(m->type), slot->member, value);
    }
    free(frame);
}

Test(kv_msg, enums_and_flags_out_of_range_fail) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    size_t status = 0, flags = 0, ops = 0;
    static s_layout_t l;
    for (size_t i = 0; i < n; i++) {
        s_layout(&l, &samples[i]);
        for (size_t f = 0; f < l.n; f++) {
            const s_slot_t *slot = &l.slots[f];
            if (strcmp(slot->kind, "STATUS") == 0) {
                s_expect_enum_range(&samples[i], slot, 0, KV_STATUS_MAX);
                status++;
            } else if (strcmp(slot->kind, "FLAG") == 0) {
                s_expect_enum_range(&samples[i], slot, 0, 1);
                flags++;
            } else if (strcmp(slot->kind, "OP") == 0) {
                s_expect_enum_range(&samples[i], slot, KV_OP_SET, KV_OP_MAX);
                ops++;
            }
        }
    }
    cr_expect_gt(status, 0);
    cr_expect_gt(flags, 0);
    cr_expect_geq(ops, KV_OP_MAX);
}

/* Claims a length field can make about the bytes behind it: one more than
 * there are, a whole record more, and up to the largest its width holds;
 * also one record fewer (leaving trailing bytes). Of a field the frame does
 * not end with, only the claims that run past the frame are sure to fail
 * (the every-corruption test below covers the rest). */
static void s_expect_bad_claims(const kv_msg_t *m, const s_slot_t *slot) {
    size_t len;
    uint8_t *frame = s_encode(m, &len);
    const size_t width = slot->width, actual = slot->len, record = slot->record;
    const size_t left = len - slot->at - width; /* bytes after the length field */
    const int last = left == actual;
    const uint64_t top = width == 4 ? UINT32_MAX : (1ull << (8 * width)) - 1;
    uint64_t claims[] = {actual + 1, actual + record, top / 2 + 1, top, top - top % record};
    for (size_t c = 0; c < sizeof claims / sizeof claims[0]; c++) {
        if (claims[c] > top || claims[c] == actual || (!last && claims[c] <= left)) continue;
        s_poke(frame, slot->at, claims[c], width);
        kv_msg_t decoded;
        uint8_t *copy;
        cr_expect_eq(s_decode_exact(frame, len, &decoded, &copy), -1, "%s %s claiming %llu bytes",
                     kv_msg_type_name(m->type), slot->member, (unsigned long long)claims[c]);
        free(copy);
    }
    if (last && actual >= record) {
        s_poke(frame, slot->at, actual - record, width);
        kv_msg_t decoded;
        cr_expect_eq(kv_msg_decode(frame, len, &decoded), -1, "%s %s claiming fewer bytes",
                     kv_msg_type_name(m->type), slot->member);
    }
    free(frame);
}

/* Every length field of every sample. */
Test(kv_msg, oversized_length_fields_fail) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    static s_layout_t l;
    size_t tried = 0;
    for (size_t i = 0; i < n; i++) {
        s_layout(&l, &samples[i]);
        for (size_t f = 0; f < l.n; f++) {
            if (l.slots[f].width == 0 || strncmp(l.slots[f].kind, "U", 1) == 0) continue;
            if (strcmp(l.slots[f].kind, "STATUS") == 0 || strcmp(l.slots[f].kind, "FLAG") == 0 ||
                strcmp(l.slots[f].kind, "OP") == 0)
                continue;
            s_expect_bad_claims(&samples[i], &l.slots[f]);
            tried++;
        }
    }
    cr_expect_gt(tried, n / 2); /* most samples have some */
}

/* Every byte of every sample frame, replaced by each of the 255 other byte
 * values: a frame that still decodes must be one the decoder could have
 * produced from valid input, with every string in the buffer, and must
 * encode back to exactly its bytes. */
Test(kv_msg, every_corruption_fails_or_stays_in_bounds) {
    kv_msg_t samples[MAX_CASES];
    size_t n = s_samples(samples);
    size_t decoded_ok = 0, rejected = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *frame = s_encode(&samples[i], &len);
        uint8_t *copy = malloc(len);
        cr_assert_not_null(copy);
        memcpy(copy, frame, len);
        size_t sample_ok = 0, sample_rejected = 0;
        for (size_t at = 0; at < len; at++) {
            for (int value = 0; value < 256; value++) {
                if (value == frame[at]) continue;
                copy[at] = (uint8_t)value;
                kv_msg_t decoded;
                if (kv_msg_decode(copy, len, &decoded) != 0) {
                    sample_rejected++;
                    continue;
                }
                sample_ok++;
                s_assert_sane(&decoded, copy, len);
            }
            copy[at] = frame[at];
        }
        cr_expect_gt(sample_rejected, 0, "%s: no corruption rejected",
                     kv_msg_type_name(samples[i].type));
        decoded_ok += sample_ok;
        rejected += sample_rejected;
        free(copy);
        free(frame);
    }
    cr_expect_gt(rejected, 0);
    cr_expect_gt(decoded_ok, 0, "changing a payload byte still decodes");
}

//  --------------------------------------------------------------------------
//  Names for logs

Test(kv_msg, type_names) {
    for (size_t i = 0; i < TYPE_COUNT; i++)
        cr_expect_str_eq(kv_msg_type_name(s_types[i].type), s_types[i].name);
    cr_expect_str_eq(kv_msg_type_name(0), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(KV_MSG_EXPIRE + 1), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(KV_MSG_LEASE + 1), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(KV_MSG_SNAPSHOT + 1), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(-1), "UNKNOWN");
    cr_expect_str_eq(kv_msg_type_name(256 + KV_MSG_GET), "UNKNOWN");
}

Test(kv_msg, status_names) {
    const char *names[] = {"OK",        "NOT_FOUND", "MOVED",       "STALE_EPOCH",
                           "NOT_READY", "NO_MEMORY", "UNAVAILABLE", "BAD_REQUEST",
                           "NO_LEASE",  "CONFLICT",  "TX_ABORTED",  "LOCKED"};
    cr_assert_eq(sizeof names / sizeof names[0], KV_STATUS_MAX + 1);
    for (int status = 0; status <= KV_STATUS_MAX; status++)
        cr_expect_str_eq(kv_status_name(status), names[status]);
    cr_expect_str_eq(kv_status_name(-1), "UNKNOWN");
    cr_expect_str_eq(kv_status_name(KV_STATUS_MAX + 1), "UNKNOWN");
    cr_expect_str_eq(kv_status_name(256), "UNKNOWN");
    cr_expect_str_eq(kv_status_name(255), "UNKNOWN");
}
