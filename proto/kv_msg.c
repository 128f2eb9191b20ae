/*  kv_msg.c: encoders and decoders for the wire messages (layout in kv_msg.h).
 *
 *  Each message type has one encoder and one decoder, listed in s_codecs,
 *  written against kv_wire.h's bounds-checked cursors.
 */
#include "kv_msg.h"

#include <string.h>

#include "kv_wire.h"

/* Short names for the cursor calls, to keep each codec a list of fields. */
static void s_put_u8(kv_writer_t *w, uint64_t value) {
    kv_wire_put_uint(w, value, 1);
}
static void s_put_u32(kv_writer_t *w, uint64_t value) {
    kv_wire_put_uint(w, value, 4);
}
static void s_put_u64(kv_writer_t *w, uint64_t value) {
    kv_wire_put_uint(w, value, 8);
}
static void s_put_str(kv_writer_t *w, kv_bytes_t str, size_t width) {
    kv_wire_put_str(w, str.ptr, str.len, width);
}
static uint8_t s_get_u8(kv_reader_t *r) {
    return (uint8_t)kv_wire_get_uint(r, 1);
}
static uint32_t s_get_u32(kv_reader_t *r) {
    return (uint32_t)kv_wire_get_uint(r, 4);
}
static uint64_t s_get_u64(kv_reader_t *r) {
    return kv_wire_get_uint(r, 8);
}
static kv_bytes_t s_get_str(kv_reader_t *r, size_t width) {
    kv_bytes_t str;
    str.ptr = kv_wire_get_str(r, width, &str.len);
    return str;
}

/* --- one encoder and one decoder per message --------------------------- */

/* Counts and bounds-checks count (key, value) entries. */
static kv_bytes_t s_get_entries(kv_reader_t *r, uint32_t count) {
    size_t start = r->pos;
    for (uint32_t i = 0; i < count && !r->failed; i++) {
        s_get_str(r, 2);
        s_get_str(r, 2);
    }
    kv_bytes_t entries = {NULL, 0};
    if (!r->failed && count) /* like every other empty string: NULL */
        entries = (kv_bytes_t){(const char *)r->buf + start, r->pos - start};
    return entries;
}

static void s_encode_keyed(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u64(w, m->epoch);
    s_put_u32(w, m->partition);
    s_put_str(w, m->key, 2);
    if (m->type == KV_MSG_SET) s_put_str(w, m->value, 2);
}

static void s_decode_keyed(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->epoch = s_get_u64(r);
    m->partition = s_get_u32(r);
    m->key = s_get_str(r, 2);
    if (m->type == KV_MSG_SET) m->value = s_get_str(r, 2);
}

static void s_encode_clear(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u64(w, m->epoch);
}

static void s_decode_clear(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->epoch = s_get_u64(r);
}

static void s_encode_scan(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u64(w, m->epoch);
    s_put_u32(w, m->partition);
    s_put_u32(w, m->limit);
    s_put_u8(w, m->has_after);
    s_put_str(w, m->after, 2);
}

static void s_decode_scan(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->epoch = s_get_u64(r);
    m->partition = s_get_u32(r);
    m->limit = s_get_u32(r);
    m->has_after = s_get_u8(r);
    m->after = s_get_str(r, 2);
    if (m->has_after > 1) r->failed = 1;
}

static void s_encode_stats(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
}

static void s_decode_stats(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
}

/* Every reply starts with req_id, status, epoch. */
static void s_encode_reply_head(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u8(w, m->status);
    s_put_u64(w, m->epoch);
}

static void s_decode_reply_head(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->status = s_get_u8(r);
    m->epoch = s_get_u64(r);
    if (m->status > KV_STATUS_MAX) r->failed = 1;
}

static void s_encode_reply(kv_writer_t *w, const kv_msg_t *m) {
    s_encode_reply_head(w, m);
    s_put_str(w, m->value, 2);
}

static void s_decode_reply(kv_reader_t *r, kv_msg_t *m) {
    s_decode_reply_head(r, m);
    m->value = s_get_str(r, 2);
}

static void s_encode_scan_reply(kv_writer_t *w, const kv_msg_t *m) {
    s_encode_reply_head(w, m);
    s_put_u8(w, m->more);
    s_put_u32(w, m->count);
    kv_wire_put(w, m->entries.ptr, m->entries.len);
}

static void s_decode_scan_reply(kv_reader_t *r, kv_msg_t *m) {
    s_decode_reply_head(r, m);
    m->more = s_get_u8(r);
    m->count = s_get_u32(r);
    m->entries = s_get_entries(r, m->count);
    if (m->more > 1) r->failed = 1;
}

static void s_encode_stats_reply(kv_writer_t *w, const kv_msg_t *m) {
    s_encode_reply_head(w, m);
    s_put_u64(w, m->keys);
    s_put_u64(w, m->primary_keys);
    s_put_u64(w, m->memory);
    s_put_u64(w, m->memory_limit);
    s_put_u32(w, m->primaries);
    s_put_u32(w, m->replicas);
}

static void s_decode_stats_reply(kv_reader_t *r, kv_msg_t *m) {
    s_decode_reply_head(r, m);
    m->keys = s_get_u64(r);
    m->primary_keys = s_get_u64(r);
    m->memory = s_get_u64(r);
    m->memory_limit = s_get_u64(r);
    m->primaries = s_get_u32(r);
    m->replicas = s_get_u32(r);
}

static void s_encode_hello(kv_writer_t *w, const kv_msg_t *m) {
    s_put_str(w, m->node_id, 1);
    s_put_u64(w, m->incarnation);
    s_put_str(w, m->endpoint, 2);
    s_put_str(w, m->pub_endpoint, 2);
    s_put_u64(w, m->keys);
    s_put_u64(w, m->memory);
    s_put_str(w, m->table, 4);
}

static void s_decode_hello(kv_reader_t *r, kv_msg_t *m) {
    m->node_id = s_get_str(r, 1);
    m->incarnation = s_get_u64(r);
    m->endpoint = s_get_str(r, 2);
    m->pub_endpoint = s_get_str(r, 2);
    m->keys = s_get_u64(r);
    m->memory = s_get_u64(r);
    m->table = s_get_str(r, 4);
}

static void s_encode_heartbeat(kv_writer_t *w, const kv_msg_t *m) {
    s_put_str(w, m->node_id, 1);
    s_put_u64(w, m->incarnation);
    s_put_u64(w, m->epoch);
    s_put_u64(w, m->keys);
    s_put_u64(w, m->memory);
    s_put_u64(w, m->memory_limit);
    s_put_str(w, m->reports, 4);
}

/* A blob of fixed-size records must hold a whole number of them. */
static kv_bytes_t s_get_records(kv_reader_t *r, size_t size) {
    kv_bytes_t blob = s_get_str(r, 4);
    if (blob.len % size) r->failed = 1;
    return blob;
}

static void s_decode_heartbeat(kv_reader_t *r, kv_msg_t *m) {
    m->node_id = s_get_str(r, 1);
    m->incarnation = s_get_u64(r);
    m->epoch = s_get_u64(r);
    m->keys = s_get_u64(r);
    m->memory = s_get_u64(r);
    m->memory_limit = s_get_u64(r);
    m->reports = s_get_records(r, KV_MSG_REPORT_SIZE);
}

static void s_encode_join(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_str(w, m->endpoint, 2);
}

static void s_decode_join(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->endpoint = s_get_str(r, 2);
}

static void s_encode_leave(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_str(w, m->node_id, 1);
}

static void s_decode_leave(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->node_id = s_get_str(r, 1);
}

static void s_encode_cluster_reply(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u8(w, m->status);
    s_put_str(w, m->node_id, 1);
}

static void s_decode_cluster_reply(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->status = s_get_u8(r);
    m->node_id = s_get_str(r, 1);
    if (m->status > KV_STATUS_MAX) r->failed = 1;
}

static void s_encode_update(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u32(w, m->partition);
    kv_wire_put_uint(w, m->sender, 2);
    s_put_u64(w, m->epoch);
    s_put_u64(w, m->seq);
    s_put_u8(w, m->op);
    s_put_str(w, m->key, 2);
    s_put_str(w, m->value, 2);
}

static void s_decode_update(kv_reader_t *r, kv_msg_t *m) {
    m->partition = s_get_u32(r);
    m->sender = (uint16_t)kv_wire_get_uint(r, 2);
    m->epoch = s_get_u64(r);
    m->seq = s_get_u64(r);
    m->op = s_get_u8(r);
    m->key = s_get_str(r, 2);
    m->value = s_get_str(r, 2);
    if (m->op == 0 || m->op > KV_OP_MAX) r->failed = 1;
}

static void s_encode_beacon(kv_writer_t *w, const kv_msg_t *m) {
    kv_wire_put_uint(w, m->sender, 2);
    s_put_u64(w, m->epoch);
    s_put_str(w, m->items, 4);
}

static void s_decode_beacon(kv_reader_t *r, kv_msg_t *m) {
    m->sender = (uint16_t)kv_wire_get_uint(r, 2);
    m->epoch = s_get_u64(r);
    m->items = s_get_records(r, KV_MSG_ITEM_SIZE);
}

static void s_encode_ack(kv_writer_t *w, const kv_msg_t *m) {
    kv_wire_put_uint(w, m->sender, 2);
    s_put_str(w, m->items, 4);
}

static void s_decode_ack(kv_reader_t *r, kv_msg_t *m) {
    m->sender = (uint16_t)kv_wire_get_uint(r, 2);
    m->items = s_get_records(r, KV_MSG_ITEM_SIZE);
}

static void s_encode_snapshot_req(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u32(w, m->partition);
    kv_wire_put_uint(w, m->sender, 2);
}

static void s_decode_snapshot_req(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->partition = s_get_u32(r);
    m->sender = (uint16_t)kv_wire_get_uint(r, 2);
}

static void s_encode_snapshot(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->req_id);
    s_put_u32(w, m->partition);
    s_put_u8(w, m->status);
    s_put_u64(w, m->seq);
    s_put_u32(w, m->chunk);
    s_put_u8(w, m->more);
    s_put_u32(w, m->count);
    kv_wire_put(w, m->entries.ptr, m->entries.len);
}

static void s_decode_snapshot(kv_reader_t *r, kv_msg_t *m) {
    m->req_id = s_get_u64(r);
    m->partition = s_get_u32(r);
    m->status = s_get_u8(r);
    m->seq = s_get_u64(r);
    m->chunk = s_get_u32(r);
    m->more = s_get_u8(r);
    m->count = s_get_u32(r);
    m->entries = s_get_entries(r, m->count);
    if (m->more > 1 || m->status > KV_STATUS_MAX) r->failed = 1;
}

static void s_encode_table_req(kv_writer_t *w, const kv_msg_t *m) {
    s_put_u64(w, m->epoch);
}

static void s_decode_table_req(kv_reader_t *r, kv_msg_t *m) {
    m->epoch = s_get_u64(r);
}

static void s_encode_table(kv_writer_t *w, const kv_msg_t *m) {
    s_put_str(w, m->table, 4);
}

static void s_decode_table(kv_reader_t *r, kv_msg_t *m) {
    m->table = s_get_str(r, 4);
}

static void s_encode_empty(kv_writer_t *w, const kv_msg_t *m) {}

static void s_decode_empty(kv_reader_t *r, kv_msg_t *m) {}

typedef struct {
    uint8_t type;                                      /* kv_msg_type_t */
    const char *name;                                  /* for logs */
    void (*encode)(kv_writer_t *w, const kv_msg_t *m); /* body encoder */
    void (*decode)(kv_reader_t *r, kv_msg_t *m);       /* body decoder */
} s_codec_t;

static const s_codec_t s_codecs[] = {
    {KV_MSG_GET, "GET", s_encode_keyed, s_decode_keyed},
    {KV_MSG_SET, "SET", s_encode_keyed, s_decode_keyed},
    {KV_MSG_RM, "RM", s_encode_keyed, s_decode_keyed},
    {KV_MSG_IS, "IS", s_encode_keyed, s_decode_keyed},
    {KV_MSG_CLEAR, "CLEAR", s_encode_clear, s_decode_clear},
    {KV_MSG_SCAN, "SCAN", s_encode_scan, s_decode_scan},
    {KV_MSG_STATS, "STATS", s_encode_stats, s_decode_stats},
    {KV_MSG_REPLY, "REPLY", s_encode_reply, s_decode_reply},
    {KV_MSG_SCAN_REPLY, "SCAN_REPLY", s_encode_scan_reply, s_decode_scan_reply},
    {KV_MSG_STATS_REPLY, "STATS_REPLY", s_encode_stats_reply, s_decode_stats_reply},
    {KV_MSG_HELLO, "HELLO", s_encode_hello, s_decode_hello},
    {KV_MSG_HEARTBEAT, "HEARTBEAT", s_encode_heartbeat, s_decode_heartbeat},
    {KV_MSG_TABLE_REQ, "TABLE_REQ", s_encode_table_req, s_decode_table_req},
    {KV_MSG_TABLE, "TABLE", s_encode_table, s_decode_table},
    {KV_MSG_WHO, "WHO", s_encode_empty, s_decode_empty},
    {KV_MSG_JOIN, "JOIN", s_encode_join, s_decode_join},
    {KV_MSG_LEAVE, "LEAVE", s_encode_leave, s_decode_leave},
    {KV_MSG_INVITE, "INVITE", s_encode_join, s_decode_join},
    {KV_MSG_CLUSTER_REPLY, "CLUSTER_REPLY", s_encode_cluster_reply, s_decode_cluster_reply},
    {KV_MSG_UPDATE, "UPDATE", s_encode_update, s_decode_update},
    {KV_MSG_BEACON, "BEACON", s_encode_beacon, s_decode_beacon},
    {KV_MSG_ACK, "ACK", s_encode_ack, s_decode_ack},
    {KV_MSG_SNAPSHOT_REQ, "SNAPSHOT_REQ", s_encode_snapshot_req, s_decode_snapshot_req},
    {KV_MSG_SNAPSHOT, "SNAPSHOT", s_encode_snapshot, s_decode_snapshot},
};

static const s_codec_t *s_codec(int type) {
    for (size_t i = 0; i < sizeof(s_codecs) / sizeof(s_codecs[0]); i++)
        if (s_codecs[i].type == type) return &s_codecs[i];
    return NULL;
}

static size_t s_encode(const kv_msg_t *msg, uint8_t *buf, size_t cap) {
    const s_codec_t *codec = s_codec(msg->type);
    if (!codec) return 0; /* unknown type: a programming error upstream */
    kv_writer_t w = {buf, cap, 0, 0};
    s_put_u8(&w, KV_MSG_VERSION);
    s_put_u8(&w, msg->type);
    codec->encode(&w, msg);
    return w.failed ? 0 : w.pos;
}

size_t kv_msg_encoded_size(const kv_msg_t *msg) {
    return s_encode(msg, NULL, 0);
}

size_t kv_msg_encode(const kv_msg_t *msg, uint8_t *buf, size_t cap) {
    if (!buf) return 0;
    return s_encode(msg, buf, cap);
}

int kv_msg_decode(const uint8_t *buf, size_t len, kv_msg_t *msg) {
    memset(msg, 0, sizeof(*msg));
    if (!buf) return -1;
    kv_reader_t r = {buf, len, 0, 0};
    uint8_t version = s_get_u8(&r);
    msg->type = s_get_u8(&r);
    if (r.failed || version != KV_MSG_VERSION) return -1; /* short, or another version */
    const s_codec_t *codec = s_codec(msg->type);
    if (!codec) return -1; /* unknown type */
    codec->decode(&r, msg);
    if (r.failed || r.pos != len) return -1; /* truncated, or trailing bytes */
    return 0;
}

const char *kv_msg_type_name(int type) {
    const s_codec_t *codec = s_codec(type);
    return codec ? codec->name : "UNKNOWN";
}

const char *kv_status_name(int status) {
    static const char *const names[] = {"OK",        "NOT_FOUND", "MOVED",       "STALE_EPOCH",
                                        "NOT_READY", "NO_MEMORY", "UNAVAILABLE", "BAD_REQUEST"};
    if (status < 0 || status > KV_STATUS_MAX) return "UNKNOWN";
    return names[status];
}

size_t kv_msg_entry_size(size_t klen, size_t vlen) {
    return 2 + klen + 2 + vlen;
}

int kv_msg_entry_put(uint8_t *buf, size_t cap, size_t *pos, const char *key, size_t klen,
                     const char *value, size_t vlen) {
    kv_writer_t w = {buf, cap, *pos, 0};
    s_put_str(&w, (kv_bytes_t){key, klen}, 2);
    s_put_str(&w, (kv_bytes_t){value, vlen}, 2);
    if (w.failed) return -1;
    *pos = w.pos;
    return 0;
}

int kv_msg_entry_next(const kv_bytes_t *entries, size_t *pos, kv_bytes_t *key, kv_bytes_t *value) {
    kv_reader_t r = {(const uint8_t *)entries->ptr, entries->len, *pos, 0};
    if (r.pos >= r.len) return -1;
    *key = s_get_str(&r, 2);
    *value = s_get_str(&r, 2);
    if (r.failed) return -1;
    *pos = r.pos;
    return 0;
}

void kv_msg_item_write(uint8_t *buf, size_t i, const kv_msg_item_t *item) {
    kv_writer_t w = {buf + i * KV_MSG_ITEM_SIZE, KV_MSG_ITEM_SIZE, 0, 0};
    s_put_u32(&w, item->partition);
    s_put_u64(&w, item->seq);
    s_put_u8(&w, item->flag);
}

void kv_msg_report_write(uint8_t *buf, size_t i, const kv_msg_report_t *report) {
    kv_writer_t w = {buf + i * KV_MSG_REPORT_SIZE, KV_MSG_REPORT_SIZE, 0, 0};
    s_put_u32(&w, report->partition);
    s_put_u8(&w, report->role);
    s_put_u8(&w, report->state);
    s_put_u64(&w, report->seq);
}

kv_msg_item_t kv_msg_item_read(const kv_bytes_t *blob, size_t i) {
    kv_reader_t r = {(const uint8_t *)blob->ptr + i * KV_MSG_ITEM_SIZE, KV_MSG_ITEM_SIZE, 0, 0};
    kv_msg_item_t item;
    item.partition = s_get_u32(&r);
    item.seq = s_get_u64(&r);
    item.flag = s_get_u8(&r);
    return item;
}

kv_msg_report_t kv_msg_report_read(const kv_bytes_t *blob, size_t i) {
    kv_reader_t r = {(const uint8_t *)blob->ptr + i * KV_MSG_REPORT_SIZE, KV_MSG_REPORT_SIZE, 0, 0};
    kv_msg_report_t report;
    report.partition = s_get_u32(&r);
    report.role = s_get_u8(&r);
    report.state = s_get_u8(&r);
    report.seq = s_get_u64(&r);
    return report;
}
