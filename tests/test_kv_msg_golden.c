/*  test_kv_msg_golden.c: the wire format, pinned byte for byte.
 *
 *  tests/golden/kv_msg_v1.hex holds one frame of every message type (and of
 *  the empty-string and empty-blob variants), as the codec of wire version 1
 *  wrote them; tests/golden/kv_msg_v2.hex the frames of the messages version
 *  2 extended, with their new fields set; kv_msg_v3.hex likewise for
 *  version 3 (conditional SET and RM, REPLY's version), kv_msg_v4.hex for
 *  version 4 (expiry). Processes of different releases
 *  run side by side during a rolling upgrade, so a frame an older release
 *  wrote must keep meaning the same thing: the codec must still produce
 *  these bytes for these messages (version 1 frames whenever the version 2
 *  fields are zero) and decode them back to the same fields, the fields a
 *  frame's version lacks reading 0.
 *
 *  Each line of a golden file is "label hex"; '#' starts a comment line. To
 *  record a new file (only when a new wire version is born, never to make a
 *  failing test pass), run with KV_MSG_GOLDEN_WRITE=<path>.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_msg.h"

#define BYTES(literal) ((kv_bytes_t){(literal), sizeof(literal) - 1})
#define GOLDEN_DIR KV_SOURCE_DIR "/tests/golden/"
#define MAX_SAMPLES 64
#define MAX_FRAME 1024

typedef struct {
    const char *label; /* unique within a golden file */
    kv_msg_t msg;      /* what the frame encodes */
} s_sample_t;

static uint8_t s_entries_buf[128];
static uint8_t s_meta_entries_buf[128];
static uint8_t s_counters_buf[128];
static uint8_t s_items_buf[2 * KV_MSG_ITEM_SIZE];
static uint8_t s_reports_buf[2 * KV_MSG_REPORT_SIZE];

/* Two entries: one plain, one with a binary key and an empty value. */
static kv_bytes_t s_two_entries(void) {
    const kv_msg_entry_t entries[] = {{BYTES("a"), BYTES("1"), {0, 0}},
                                      {BYTES("b\0c"), BYTES(""), {0, 0}}};
    size_t pos = 0;
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(kv_msg_entry_put(s_entries_buf, sizeof s_entries_buf, &pos, &entries[i]), 0);
    return (kv_bytes_t){(const char *)s_entries_buf, pos};
}

/* The same two entries with a version on one and an expiry on the other. */
static kv_bytes_t s_two_meta_entries(void) {
    const kv_msg_entry_t entries[] = {{BYTES("a"), BYTES("1"), {7, 0}},
                                      {BYTES("b\0c"), BYTES(""), {0, 1700000000000ull}}};
    size_t pos = 0;
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(
            kv_msg_entry_put(s_meta_entries_buf, sizeof s_meta_entries_buf, &pos, &entries[i]), 0);
    return (kv_bytes_t){(const char *)s_meta_entries_buf, pos};
}

static kv_bytes_t s_two_counters(void) {
    size_t pos = 0;
    cr_assert_eq(kv_msg_counter_put(s_counters_buf, sizeof s_counters_buf, &pos,
                                    "kv_node_bad_frames_total", 3),
                 0);
    cr_assert_eq(kv_msg_counter_put(s_counters_buf, sizeof s_counters_buf, &pos, "b", 0), 0);
    return (kv_bytes_t){(const char *)s_counters_buf, pos};
}

static kv_bytes_t s_two_items(void) {
    const kv_msg_item_t items[] = {{7, 0x0102030405060708ull, 1}, {8, 9, 0}};
    for (size_t i = 0; i < 2; i++) kv_msg_item_write(s_items_buf, i, &items[i]);
    return (kv_bytes_t){(const char *)s_items_buf, sizeof s_items_buf};
}

static kv_bytes_t s_two_reports(void) {
    const kv_msg_report_t reports[] = {{5, 0, KV_REPORT_LIVE, 100},
                                       {6, KV_ROLE_LEARNER, KV_REPORT_LIVE | KV_REPORT_READY, 200}};
    for (size_t i = 0; i < 2; i++) kv_msg_report_write(s_reports_buf, i, &reports[i]);
    return (kv_bytes_t){(const char *)s_reports_buf, sizeof s_reports_buf};
}

static void s_add(s_sample_t *out, size_t *n, const char *label, kv_msg_t msg) {
    cr_assert_lt(*n, MAX_SAMPLES, "raise MAX_SAMPLES");
    out[(*n)++] = (s_sample_t){label, msg};
}

static void s_v1_requests(s_sample_t *out, size_t *n) {
    kv_msg_t keyed = {.req_id = 0x1122334455667788ull, .epoch = 7, .partition = 1023};
    keyed.key = BYTES("user:1");
    keyed.type = KV_MSG_GET;
    s_add(out, n, "GET", keyed);
    keyed.type = KV_MSG_RM;
    s_add(out, n, "RM", keyed);
    keyed.type = KV_MSG_IS;
    s_add(out, n, "IS", keyed);
    keyed.type = KV_MSG_SET;
    keyed.value = BYTES("alice");
    s_add(out, n, "SET", keyed);
    s_add(out, n, "SET/empty", (kv_msg_t){.type = KV_MSG_SET});
    s_add(out, n, "CLEAR", (kv_msg_t){.type = KV_MSG_CLEAR, .req_id = 1, .epoch = 2});
    s_add(out, n, "SCAN",
          (kv_msg_t){.type = KV_MSG_SCAN,
                     .req_id = 3,
                     .epoch = 4,
                     .partition = 5,
                     .limit = 100,
                     .has_after = 1,
                     .after = BYTES("k\0ey")});
    s_add(out, n, "SCAN/empty", (kv_msg_t){.type = KV_MSG_SCAN, .limit = 10});
    s_add(out, n, "STATS", (kv_msg_t){.type = KV_MSG_STATS, .req_id = 9});
}

static void s_v1_replies(s_sample_t *out, size_t *n) {
    s_add(out, n, "REPLY",
          (kv_msg_t){.type = KV_MSG_REPLY,
                     .req_id = 10,
                     .status = KV_STATUS_NOT_FOUND,
                     .epoch = 11,
                     .value = BYTES("hello")});
    s_add(out, n, "REPLY/empty", (kv_msg_t){.type = KV_MSG_REPLY, .req_id = 10});
    s_add(out, n, "SCAN_REPLY",
          (kv_msg_t){.type = KV_MSG_SCAN_REPLY,
                     .req_id = 12,
                     .epoch = 13,
                     .more = 1,
                     .count = 2,
                     .entries = s_two_entries()});
    s_add(out, n, "SCAN_REPLY/empty",
          (kv_msg_t){.type = KV_MSG_SCAN_REPLY, .req_id = 12, .status = KV_STATUS_MOVED});
    s_add(out, n, "STATS_REPLY",
          (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                     .req_id = 14,
                     .epoch = 15,
                     .keys = 1000,
                     .primary_keys = 600,
                     .memory = 1u << 20,
                     .memory_limit = 3ull << 30,
                     .primaries = 512,
                     .replicas = 256});
}

static void s_v1_cluster(s_sample_t *out, size_t *n) {
    s_add(out, n, "HELLO",
          (kv_msg_t){.type = KV_MSG_HELLO,
                     .node_id = BYTES("node-1"),
                     .incarnation = 0x0123456789ABCDEFull,
                     .endpoint = BYTES("tcp://node-1:5601"),
                     .pub_endpoint = BYTES("tcp://node-1:5602"),
                     .keys = 5,
                     .memory = 4096,
                     .table = BYTES("\x01\x00\xff")});
    s_add(out, n, "HELLO/empty", (kv_msg_t){.type = KV_MSG_HELLO});
    s_add(out, n, "HEARTBEAT",
          (kv_msg_t){.type = KV_MSG_HEARTBEAT,
                     .node_id = BYTES("node-2"),
                     .incarnation = 0xFEDCBA9876543210ull,
                     .epoch = 8,
                     .keys = 9,
                     .memory = 10,
                     .memory_limit = 11,
                     .reports = s_two_reports()});
    s_add(out, n, "HEARTBEAT/empty", (kv_msg_t){.type = KV_MSG_HEARTBEAT});
    /* A type added after version 2 was born; its fields are all since 1. */
    s_add(out, n, "LEASE",
          (kv_msg_t){.type = KV_MSG_LEASE, .req_id = 4242, .epoch = 8, .lease_ms = 400});
    s_add(out, n, "TABLE_REQ", (kv_msg_t){.type = KV_MSG_TABLE_REQ, .epoch = 77});
    s_add(out, n, "TABLE", (kv_msg_t){.type = KV_MSG_TABLE, .table = BYTES("\x01\x02\x03")});
    s_add(out, n, "TABLE/empty", (kv_msg_t){.type = KV_MSG_TABLE});
    s_add(out, n, "WHO", (kv_msg_t){.type = KV_MSG_WHO});
    s_add(out, n, "JOIN",
          (kv_msg_t){.type = KV_MSG_JOIN, .req_id = 20, .endpoint = BYTES("tcp://10.0.0.7:5601")});
    s_add(out, n, "LEAVE",
          (kv_msg_t){.type = KV_MSG_LEAVE, .req_id = 21, .node_id = BYTES("node-3")});
    s_add(out, n, "INVITE",
          (kv_msg_t){.type = KV_MSG_INVITE, .req_id = 22, .endpoint = BYTES("tcp://coord:5600")});
    s_add(out, n, "CLUSTER_REPLY",
          (kv_msg_t){.type = KV_MSG_CLUSTER_REPLY,
                     .req_id = 23,
                     .status = KV_STATUS_UNAVAILABLE,
                     .node_id = BYTES("node-4")});
}

static void s_v1_replication(s_sample_t *out, size_t *n) {
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = 17, .sender = 2, .epoch = 30};
    update.seq = 31;
    update.op = KV_OP_SET;
    update.key = BYTES("user:2");
    update.value = BYTES("b\0b");
    s_add(out, n, "UPDATE/set", update);
    update.op = KV_OP_RM;
    update.value = (kv_bytes_t){NULL, 0};
    s_add(out, n, "UPDATE/rm", update);
    update.op = KV_OP_CLEAR;
    update.key = (kv_bytes_t){NULL, 0};
    s_add(out, n, "UPDATE/clear", update);
    update.op = KV_OP_FENCE;
    s_add(out, n, "UPDATE/fence", update);
    s_add(out, n, "BEACON",
          (kv_msg_t){.type = KV_MSG_BEACON, .sender = 3, .epoch = 40, .items = s_two_items()});
    s_add(out, n, "BEACON/empty", (kv_msg_t){.type = KV_MSG_BEACON, .sender = 3, .epoch = 40});
    s_add(out, n, "ACK", (kv_msg_t){.type = KV_MSG_ACK, .sender = 4, .items = s_two_items()});
    s_add(out, n, "SNAPSHOT_REQ",
          (kv_msg_t){.type = KV_MSG_SNAPSHOT_REQ, .req_id = 24, .partition = 18, .sender = 5});
    s_add(out, n, "SNAPSHOT",
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .req_id = 25,
                     .partition = 19,
                     .seq = 1000,
                     .chunk = 2,
                     .more = 1,
                     .count = 2,
                     .entries = s_two_entries()});
    s_add(out, n, "SNAPSHOT/empty",
          (kv_msg_t){.type = KV_MSG_SNAPSHOT, .req_id = 26, .status = KV_STATUS_NOT_READY});
}

/* Every message type of wire version 1, in type order. */
static size_t s_v1_samples(s_sample_t *out) {
    size_t n = 0;
    s_v1_requests(out, &n);
    s_v1_replies(out, &n);
    s_v1_cluster(out, &n);
    s_v1_replication(out, &n);
    return n;
}

/* The messages version 2 extended, with their version 2 fields set. */
static size_t s_v2_samples(s_sample_t *out) {
    size_t n = 0;
    s_add(out, &n, "SCAN_REPLY",
          (kv_msg_t){.type = KV_MSG_SCAN_REPLY,
                     .req_id = 12,
                     .epoch = 13,
                     .more = 1,
                     .count = 2,
                     .entries = s_two_meta_entries()});
    s_add(out, &n, "STATS_REPLY",
          (kv_msg_t){.type = KV_MSG_STATS_REPLY,
                     .req_id = 14,
                     .epoch = 15,
                     .keys = 1000,
                     .primary_keys = 600,
                     .memory = 1u << 20,
                     .memory_limit = 3ull << 30,
                     .primaries = 512,
                     .replicas = 256,
                     .counters = s_two_counters()});
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = 17, .sender = 2, .epoch = 30};
    update.seq = 31;
    update.op = KV_OP_SET;
    update.key = BYTES("user:2");
    update.value = BYTES("b\0b");
    update.meta = (kv_msg_meta_t){.version = 5, .expiry = 1700000000000ull};
    s_add(out, &n, "UPDATE/set", update);
    s_add(out, &n, "HEARTBEAT",
          (kv_msg_t){.type = KV_MSG_HEARTBEAT,
                     .node_id = BYTES("node-2"),
                     .incarnation = 0xFEDCBA9876543210ull,
                     .epoch = 8,
                     .keys = 9,
                     .memory = 10,
                     .memory_limit = 11,
                     .reports = s_two_reports(),
                     .req_id = 4242}); /* the heartbeat number a LEASE answers */
    s_add(out, &n, "SNAPSHOT",
          (kv_msg_t){.type = KV_MSG_SNAPSHOT,
                     .req_id = 25,
                     .partition = 19,
                     .seq = 1000,
                     .chunk = 2,
                     .more = 1,
                     .count = 2,
                     .entries = s_two_meta_entries()});
    return n;
}

/* The types born with version 3's release (/tx): version 1 frames, as
 * every field of a new type is (rule 7), pinned in kv_msg_v3.hex. */
static uint8_t s_txops_buf[64];
static size_t s_v3_new_types(s_sample_t *out) {
    size_t n = 0, pos = 0;
    const kv_msg_txop_t op = {KV_TXOP_SET, 1, 7, 1, BYTES("a"), BYTES("1")};
    cr_assert_eq(kv_msg_txop_put(s_txops_buf, sizeof s_txops_buf, &pos, &op), 0);
    kv_msg_t tx = {.req_id = 1, .epoch = 2, .partition = 3, .txid = 0x1122334455667788ull};
    tx.type = KV_MSG_TX_COMMIT;
    s_add(out, &n, "TX_COMMIT", tx);
    tx.type = KV_MSG_TX_FINISH;
    tx.status = KV_STATUS_TX_ABORTED;
    s_add(out, &n, "TX_FINISH", tx);
    tx.type = KV_MSG_TX_RESOLVE;
    tx.status = 0;
    tx.participant = 4;
    s_add(out, &n, "TX_RESOLVE", tx);
    tx.type = KV_MSG_TX_PREPARE;
    tx.participant = 0;
    tx.record = 5;
    tx.commit = 1;
    tx.ops = (kv_bytes_t){(const char *)s_txops_buf, pos};
    s_add(out, &n, "TX_PREPARE", tx);
    kv_msg_t reply = {.type = KV_MSG_TX_REPLY, .req_id = 10, .status = KV_STATUS_LOCKED};
    reply.seq = 11;
    s_add(out, &n, "TX_REPLY", reply);
    /* /mget's batch (born after /tx, in the same version) */
    kv_msg_t mget = {.type = KV_MSG_MGET, .req_id = 12, .epoch = 13, .count = 2};
    mget.entries = s_two_entries();
    s_add(out, &n, "MGET", mget);
    mget.type = KV_MSG_MGET_REPLY;
    mget.status = KV_STATUS_OK;
    mget.items = s_two_items();
    s_add(out, &n, "MGET_REPLY", mget);
    return n;
}

/* An MGET_REPLY as nodes send it: its entries' versions (an ENTRY field
 * of version 2) make it a version 2 frame. */
static size_t s_v3_new_types_versioned(s_sample_t *out) {
    size_t n = 0;
    kv_msg_t reply = {.type = KV_MSG_MGET_REPLY, .req_id = 14, .epoch = 15, .count = 2};
    reply.entries = s_two_meta_entries();
    reply.items = s_two_items();
    s_add(out, &n, "MGET_REPLY_VERSIONS", reply);
    return n;
}

/* The messages version 3 extended, with their version 3 fields set. */
static size_t s_v3_samples(s_sample_t *out) {
    size_t n = 0;
    kv_msg_t keyed = {.req_id = 0x1122334455667788ull, .epoch = 7, .partition = 1023};
    keyed.key = BYTES("user:1");
    keyed.has_if_version = 1;
    keyed.if_version = 0x1FFFFFFFFFFFFFull; /* the largest version */
    keyed.type = KV_MSG_RM;
    s_add(out, &n, "RM", keyed);
    keyed.type = KV_MSG_SET;
    keyed.value = BYTES("alice");
    keyed.if_version = 0; /* only if absent */
    s_add(out, &n, "SET", keyed);
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = 10, .status = KV_STATUS_CONFLICT};
    reply.epoch = 11;
    reply.value = BYTES("hello");
    reply.meta.version = 42;
    reply.seq = 43;
    s_add(out, &n, "REPLY", reply);
    return n;
}

/* Version 4 (expiry): the messages it extended, with their new fields set,
 * and EXPIRE, a new type (so a version 1 frame), pinned in kv_msg_v4.hex. */
static uint8_t s_v4_txops_buf[64];
static const uint8_t s_v4_ttls[4] = {0, 0, 0x0e, 0x10}; /* 3600 s */
static uint8_t s_v4_items_buf[KV_MSG_ITEM_SIZE];
static size_t s_v4_samples(s_sample_t *out) {
    size_t n = 0, pos = 0;
    kv_msg_t keyed = {.req_id = 0x1122334455667788ull, .epoch = 7, .partition = 1023};
    keyed.key = BYTES("user:1");
    keyed.type = KV_MSG_SET;
    keyed.value = BYTES("alice");
    keyed.ttl = 60;
    s_add(out, &n, "SET", keyed);
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = 10, .status = KV_STATUS_OK};
    reply.epoch = 11;
    reply.value = BYTES("hello");
    reply.meta.version = 42;
    reply.ttl_ms = 59999;
    s_add(out, &n, "REPLY", reply);
    const kv_msg_txop_t op = {KV_TXOP_SET, 0, 0, 0, BYTES("a"), BYTES("1")};
    cr_assert_eq(kv_msg_txop_put(s_v4_txops_buf, sizeof s_v4_txops_buf, &pos, &op), 0);
    kv_msg_t tx = {.type = KV_MSG_TX_PREPARE, .req_id = 1, .epoch = 2, .partition = 3, .txid = 4};
    tx.record = 3;
    tx.commit = 1;
    tx.ops = (kv_bytes_t){(const char *)s_v4_txops_buf, pos};
    tx.ttls = (kv_bytes_t){(const char *)s_v4_ttls, sizeof s_v4_ttls};
    s_add(out, &n, "TX_PREPARE", tx);
    const kv_msg_item_t item = {5, 6, 0}; /* a replica's room (docs/memory.md) */
    kv_msg_item_write(s_v4_items_buf, 0, &item);
    kv_msg_t ack = {.type = KV_MSG_ACK, .sender = 2, .has_room = 1, .room = 1048576};
    ack.items = (kv_bytes_t){(const char *)s_v4_items_buf, sizeof s_v4_items_buf};
    s_add(out, &n, "ACK", ack);
    kv_msg_t stats = {.type = KV_MSG_STATS_REPLY, .req_id = 9, .status = KV_STATUS_OK, .epoch = 3};
    stats.keys = 5;
    stats.memory = 4096;
    stats.max_memory = 2097152;
    stats.used_memory = 8192;
    s_add(out, &n, "STATS_REPLY", stats);
    return n;
}

static size_t s_v4_new_types(s_sample_t *out) {
    size_t n = 0;
    kv_msg_t expire = {.type = KV_MSG_EXPIRE, .req_id = 5, .epoch = 6, .partition = 7};
    expire.key = BYTES("user:1");
    expire.ttl = 3600;
    s_add(out, &n, "EXPIRE", expire);
    return n;
}

static void s_hex(const uint8_t *buf, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[buf[i] >> 4];
        out[2 * i + 1] = digits[buf[i] & 0xF];
    }
    out[2 * len] = '\0';
}

/* The hex of sample's frame, into out (2 * MAX_FRAME + 1 bytes). */
static void s_encode_hex(const s_sample_t *sample, char *out) {
    uint8_t frame[MAX_FRAME];
    size_t len = kv_msg_encode(&sample->msg, frame, sizeof frame);
    cr_assert_gt(len, 0, "%s cannot be encoded", sample->label);
    s_hex(frame, len, out);
}

/* Writes samples as a golden file (KV_MSG_GOLDEN_WRITE). */
static void s_write_golden(const char *path, const s_sample_t *samples, size_t n) {
    FILE *file = fopen(path, "w");
    cr_assert_not_null(file, "cannot write %s", path);
    fprintf(file,
            "# kv_msg golden frames: label, then the frame in hex (tests/test_kv_msg_golden.c)\n");
    static char hex[2 * MAX_FRAME + 1];
    for (size_t i = 0; i < n; i++) {
        s_encode_hex(&samples[i], hex);
        fprintf(file, "%s %s\n", samples[i].label, hex);
    }
    fclose(file);
}

/* The hex recorded under label in a golden file, into out; 0 when found. */
static int s_golden_hex(const char *path, const char *label, char *out, size_t cap) {
    FILE *file = fopen(path, "r");
    cr_assert_not_null(file, "cannot read %s", path);
    static char line[2 * MAX_FRAME + 128];
    int found = -1;
    while (found && fgets(line, sizeof line, file)) {
        if (line[0] == '#') continue;
        char *space = strchr(line, ' ');
        if (!space) continue;
        *space = '\0';
        if (strcmp(line, label) != 0) continue;
        char *hex = space + 1;
        hex[strcspn(hex, "\r\n")] = '\0';
        cr_assert_lt(strlen(hex), cap);
        memcpy(out, hex, strlen(hex) + 1);
        found = 0;
    }
    fclose(file);
    return found;
}

/* Every sample encodes to the bytes recorded for it. */
static void s_expect_golden(const char *file, const s_sample_t *samples, size_t n) {
    const char *write = getenv("KV_MSG_GOLDEN_WRITE");
    if (write && *write) s_write_golden(write, samples, n);
    static char want[2 * MAX_FRAME + 1];
    static char got[2 * MAX_FRAME + 1];
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(s_golden_hex(file, samples[i].label, want, sizeof want), 0,
                     "%s: no frame recorded for %s", file, samples[i].label);
        s_encode_hex(&samples[i], got);
        cr_expect_str_eq(got, want, "%s differs from %s", samples[i].label, file);
    }
}

/* Every message type has a golden frame (a type added later, in the
 * golden file of the version current then). */
Test(kv_msg_golden, samples_cover_every_type) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v1_samples(samples);
    n += s_v2_samples(samples + n);
    n += s_v3_new_types(samples + n);
    n += s_v4_new_types(samples + n);
    for (int type = 0; type < 256; type++) {
        if (strcmp(kv_msg_type_name(type), "UNKNOWN") == 0) continue;
        int found = 0;
        for (size_t i = 0; i < n; i++) found |= samples[i].msg.type == type;
        cr_expect(found, "no golden sample of %s", kv_msg_type_name(type));
    }
}

Test(kv_msg_golden, v1_frames_byte_for_byte) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v1_samples(samples);
    s_expect_golden(GOLDEN_DIR "kv_msg_v1.hex", samples, n);
}

/* hex (even length, lowercase) into buf; returns the byte count. */
static size_t s_unhex(const char *hex, uint8_t *buf, size_t cap) {
    size_t len = strlen(hex) / 2;
    cr_assert_leq(len, cap);
    for (size_t i = 0; i < len; i++) {
        char pair[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
        char *end = NULL;
        unsigned long byte = strtoul(pair, &end, 16);
        cr_assert(end == pair + 2, "bad hex at %zu", 2 * i);
        buf[i] = (uint8_t)byte;
    }
    return len;
}

/* The frame recorded under label in file, into frame; its length. */
static size_t s_golden_frame(const char *file, const char *label, uint8_t *frame, size_t cap) {
    static char hex[2 * MAX_FRAME + 1];
    cr_assert_eq(s_golden_hex(file, label, hex, sizeof hex), 0, "%s: no %s", file, label);
    return s_unhex(hex, frame, cap);
}

static int s_bytes_equal(kv_bytes_t a, kv_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* got's entries (decoded) are want's (built), record by record. */
static void s_expect_same_entries(const kv_msg_t *got, const kv_msg_t *want, const char *label) {
    size_t gpos = 0, wpos = 0;
    kv_msg_entry_t g, w;
    while (kv_msg_entry_next(want, &wpos, &w) == 0) {
        cr_assert_eq(kv_msg_entry_next(got, &gpos, &g), 0, "%s: an entry short", label);
        cr_expect(s_bytes_equal(g.key, w.key) && s_bytes_equal(g.value, w.value), "%s", label);
        cr_expect_eq(g.meta.version, w.meta.version, "%s", label);
        cr_expect_eq(g.meta.expiry, w.meta.expiry, "%s", label);
    }
    cr_expect_eq(kv_msg_entry_next(got, &gpos, &g), -1, "%s: an entry too many", label);
}

/* Every recorded frame decodes to its sample's fields (entries and
 * counters compared record by record), and encodes back to its bytes. */
static void s_expect_decodes(const char *file, const s_sample_t *samples, size_t n,
                             uint8_t version) {
    static uint8_t frame[MAX_FRAME], again[MAX_FRAME];
    for (size_t i = 0; i < n; i++) {
        const kv_msg_t *want = &samples[i].msg;
        size_t len = s_golden_frame(file, samples[i].label, frame, sizeof frame);
        kv_msg_t got;
        cr_assert_eq(kv_msg_decode(frame, len, &got), 0, "%s", samples[i].label);
        cr_expect_eq(got.version, version, "%s", samples[i].label);
        cr_expect_eq(got.type, want->type, "%s", samples[i].label);
        cr_expect_eq(got.req_id, want->req_id, "%s", samples[i].label);
        cr_expect_eq(got.epoch, want->epoch, "%s", samples[i].label);
        cr_expect_eq(got.seq, want->seq, "%s", samples[i].label);
        cr_expect_eq(got.meta.version, want->meta.version, "%s", samples[i].label);
        cr_expect_eq(got.meta.expiry, want->meta.expiry, "%s", samples[i].label);
        cr_expect_eq(got.count, want->count, "%s", samples[i].label);
        s_expect_same_entries(&got, want, samples[i].label);
        cr_expect_eq(got.counters.len, want->counters.len, "%s", samples[i].label);
        cr_expect_eq(kv_msg_encode(&got, again, sizeof again), len, "%s", samples[i].label);
        cr_expect_arr_eq(again, frame, len, "%s", samples[i].label);
    }
}

Test(kv_msg_golden, v1_frames_decode_and_encode_back) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v1_samples(samples);
    s_expect_decodes(GOLDEN_DIR "kv_msg_v1.hex", samples, n, 1);
}

Test(kv_msg_golden, v2_frames_byte_for_byte) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v2_samples(samples);
    s_expect_golden(GOLDEN_DIR "kv_msg_v2.hex", samples, n);
}

Test(kv_msg_golden, v2_frames_decode_and_encode_back) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v2_samples(samples);
    s_expect_decodes(GOLDEN_DIR "kv_msg_v2.hex", samples, n, 2);
}

Test(kv_msg_golden, v3_frames_byte_for_byte) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v3_samples(samples);
    s_expect_golden(GOLDEN_DIR "kv_msg_v3.hex", samples, n);
}

/* Decodes each recorded frame of samples from file and hands it to check
 * with its sample: the fields a version added, compared one by one. */
typedef void(s_fields_fn)(const kv_msg_t *got, const kv_msg_t *want, const char *label);
static void s_expect_fields(const char *file, const s_sample_t *samples, size_t n,
                            s_fields_fn *check) {
    static uint8_t frame[MAX_FRAME];
    for (size_t i = 0; i < n; i++) {
        size_t len = s_golden_frame(file, samples[i].label, frame, sizeof frame);
        kv_msg_t got;
        cr_assert_eq(kv_msg_decode(frame, len, &got), 0, "%s", samples[i].label);
        check(&got, &samples[i].msg, samples[i].label);
    }
}

static void s_v3_fields(const kv_msg_t *got, const kv_msg_t *want, const char *label) {
    cr_expect_eq(got->has_if_version, want->has_if_version, "%s", label);
    cr_expect_eq(got->if_version, want->if_version, "%s", label);
    cr_expect_eq(got->status, want->status, "%s", label);
}

static void s_v4_fields(const kv_msg_t *got, const kv_msg_t *want, const char *label) {
    cr_expect_eq(got->ttl, want->ttl, "%s", label);
    cr_expect_eq(got->ttl_ms, want->ttl_ms, "%s", label);
    cr_expect_eq(got->ttls.len, want->ttls.len, "%s", label);
    cr_expect_eq(got->has_room, want->has_room, "%s", label);
    cr_expect_eq(got->room, want->room, "%s", label);
    cr_expect_eq(got->max_memory, want->max_memory, "%s", label);
    cr_expect_eq(got->used_memory, want->used_memory, "%s", label);
}

Test(kv_msg_golden, v3_frames_decode_and_encode_back) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v3_samples(samples);
    s_expect_decodes(GOLDEN_DIR "kv_msg_v3.hex", samples, n, 3);
    s_expect_fields(GOLDEN_DIR "kv_msg_v3.hex", samples, n, s_v3_fields);
}

/* The samples make gives encode to the frames pinned in file, which
 * decode as frames of version. */
static void s_expect_pinned(const char *file, size_t (*make)(s_sample_t *), uint8_t version) {
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = make(samples);
    s_expect_golden(file, samples, n);
    s_expect_decodes(file, samples, n, version);
}

Test(kv_msg_golden, v3_new_types_byte_for_byte) {
    s_expect_pinned(GOLDEN_DIR "kv_msg_v3.hex", s_v3_new_types, 1);
}

Test(kv_msg_golden, v3_new_types_versioned_byte_for_byte) {
    s_expect_pinned(GOLDEN_DIR "kv_msg_v3.hex", s_v3_new_types_versioned, 2);
}

Test(kv_msg_golden, v4_frames_byte_for_byte) {
    s_expect_pinned(GOLDEN_DIR "kv_msg_v4.hex", s_v4_samples, 4);
    static s_sample_t samples[MAX_SAMPLES];
    size_t n = s_v4_samples(samples);
    s_expect_fields(GOLDEN_DIR "kv_msg_v4.hex", samples, n, s_v4_fields);
}

Test(kv_msg_golden, v4_new_types_byte_for_byte) {
    s_expect_pinned(GOLDEN_DIR "kv_msg_v4.hex", s_v4_new_types, 1);
}

/* Rolling upgrades: a version 3 gateway's plain SET, RM and REPLY are the
 * version 1 frames an older node reads; and the version 1 frames decode
 * with no condition and version 0. */
Test(kv_msg_golden, v1_frames_of_v3_messages_read_no_condition) {
    static s_sample_t v3[MAX_SAMPLES];
    size_t n = s_v3_samples(v3);
    static uint8_t frame[MAX_FRAME];
    for (size_t i = 0; i < n; i++) {
        size_t len = s_golden_frame(GOLDEN_DIR "kv_msg_v1.hex", v3[i].label, frame, sizeof frame);
        kv_msg_t got;
        cr_assert_eq(kv_msg_decode(frame, len, &got), 0, "%s", v3[i].label);
        cr_expect_eq(got.version, 1, "%s", v3[i].label);
        cr_expect_eq(got.has_if_version, 0, "%s", v3[i].label);
        cr_expect_eq(got.if_version, 0, "%s", v3[i].label);
        cr_expect_eq(got.meta.version, 0, "%s", v3[i].label);
    }
}

/* Rolling upgrades: the version 1 frames of every message version 2
 * extended decode with the fields version 2 added at 0, and the same
 * messages with those fields set are the version 2 frames. */
Test(kv_msg_golden, v1_frames_of_extended_messages_read_zero_metadata) {
    static s_sample_t v2[MAX_SAMPLES];
    size_t n = s_v2_samples(v2);
    static uint8_t frame[MAX_FRAME];
    for (size_t i = 0; i < n; i++) {
        size_t len = s_golden_frame(GOLDEN_DIR "kv_msg_v1.hex", v2[i].label, frame, sizeof frame);
        kv_msg_t got;
        cr_assert_eq(kv_msg_decode(frame, len, &got), 0, "%s", v2[i].label);
        cr_expect_eq(got.version, 1);
        cr_expect_eq(got.meta.version, 0, "%s", v2[i].label);
        cr_expect_eq(got.meta.expiry, 0, "%s", v2[i].label);
        cr_expect_null(got.counters.ptr, "%s", v2[i].label);
        size_t pos = 0;
        kv_msg_entry_t entry;
        uint32_t seen = 0;
        while (kv_msg_entry_next(&got, &pos, &entry) == 0) {
            cr_expect_eq(entry.meta.version, 0, "%s", v2[i].label);
            cr_expect_eq(entry.meta.expiry, 0, "%s", v2[i].label);
            seen++;
        }
        cr_expect_eq(seen, got.count, "%s", v2[i].label);
    }
}
