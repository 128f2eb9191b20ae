/*  kv_msg.c: the codec, expanded from kv_msg_schema.h.
 *
 *  Each field kind has a writer (s_put_<KIND>), a reader (s_get_<KIND>) and
 *  a test of what version its value needs (s_need_<KIND>), all against
 *  kv_wire.h's bounds-checked cursors. The schema's field lists expand into
 *  one straight-line writer, reader and need function per message and per
 *  record; the compiler checks every member against its kind's C type. A
 *  writer without a buffer only counts, which gives the encoded size.
 */
#include "kv_msg.h"

#include <string.h>

#include "kv_wire.h"

/* How a message or record is being written. */
typedef struct {
    const kv_msg_t *msg; /* the message (NULL inside records) */
    uint8_t version;     /* the version being written: fields since > it are left out */
    uint8_t layout;      /* the version the caller laid its entries / counters out in */
} s_enc_t;

/* How a message or record is being read. */
typedef struct {
    const kv_msg_t *msg; /* the message so far (for ENTRIES' count) */
    uint8_t version;     /* the frame's version: fields since > it stay 0 */
} s_dec_t;

static uint8_t s_max(uint8_t a, uint8_t b) {
    return a > b ? a : b;
}

/* --- integers ----------------------------------------------------------- */

static void s_put_U8(kv_writer_t *w, const uint8_t *v, const s_enc_t *e) {
    (void)e;
    kv_wire_put_uint(w, *v, 1);
}
static void s_put_U16(kv_writer_t *w, const uint16_t *v, const s_enc_t *e) {
    (void)e;
    kv_wire_put_uint(w, *v, 2);
}
static void s_put_U32(kv_writer_t *w, const uint32_t *v, const s_enc_t *e) {
    (void)e;
    kv_wire_put_uint(w, *v, 4);
}
static void s_put_U64(kv_writer_t *w, const uint64_t *v, const s_enc_t *e) {
    (void)e;
    kv_wire_put_uint(w, *v, 8);
}
static void s_get_U8(kv_reader_t *r, uint8_t *v, const s_dec_t *d) {
    (void)d;
    *v = (uint8_t)kv_wire_get_uint(r, 1);
}
static void s_get_U16(kv_reader_t *r, uint16_t *v, const s_dec_t *d) {
    (void)d;
    *v = (uint16_t)kv_wire_get_uint(r, 2);
}
static void s_get_U32(kv_reader_t *r, uint32_t *v, const s_dec_t *d) {
    (void)d;
    *v = (uint32_t)kv_wire_get_uint(r, 4);
}
static void s_get_U64(kv_reader_t *r, uint64_t *v, const s_dec_t *d) {
    (void)d;
    *v = kv_wire_get_uint(r, 8);
}
static uint8_t s_need_U8(const uint8_t *v, const s_enc_t *e) {
    (void)e;
    return *v != 0;
}
static uint8_t s_need_U16(const uint16_t *v, const s_enc_t *e) {
    (void)e;
    return *v != 0;
}
static uint8_t s_need_U32(const uint32_t *v, const s_enc_t *e) {
    (void)e;
    return *v != 0;
}
static uint8_t s_need_U64(const uint64_t *v, const s_enc_t *e) {
    (void)e;
    return *v != 0;
}

/* --- u8 enums and flags: written as they are, range-checked when read --- */

#define s_put_STATUS s_put_U8
#define s_put_FLAG s_put_U8
#define s_put_OP s_put_U8
#define s_need_STATUS s_need_U8
#define s_need_FLAG s_need_U8
#define s_need_OP s_need_U8

static void s_get_STATUS(kv_reader_t *r, uint8_t *v, const s_dec_t *d) {
    s_get_U8(r, v, d);
    if (*v > KV_STATUS_MAX) r->failed = 1;
}
static void s_get_FLAG(kv_reader_t *r, uint8_t *v, const s_dec_t *d) {
    s_get_U8(r, v, d);
    if (*v > 1) r->failed = 1;
}
static void s_get_OP(kv_reader_t *r, uint8_t *v, const s_dec_t *d) {
    s_get_U8(r, v, d);
    if (*v == 0 || *v > KV_OP_MAX) r->failed = 1;
}

/* --- byte strings ------------------------------------------------------- */

static void s_put_str(kv_writer_t *w, const kv_bytes_t *v, size_t width) {
    kv_wire_put_str(w, v->ptr, v->len, width);
}
static void s_get_str(kv_reader_t *r, kv_bytes_t *v, size_t width) {
    v->ptr = kv_wire_get_str(r, width, &v->len);
}
static void s_put_STR8(kv_writer_t *w, const kv_bytes_t *v, const s_enc_t *e) {
    (void)e;
    s_put_str(w, v, 1);
}
static void s_put_STR16(kv_writer_t *w, const kv_bytes_t *v, const s_enc_t *e) {
    (void)e;
    s_put_str(w, v, 2);
}
static void s_put_BLOB32(kv_writer_t *w, const kv_bytes_t *v, const s_enc_t *e) {
    (void)e;
    s_put_str(w, v, 4);
}
static void s_get_STR8(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    (void)d;
    s_get_str(r, v, 1);
}
static void s_get_STR16(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    (void)d;
    s_get_str(r, v, 2);
}
static void s_get_BLOB32(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    (void)d;
    s_get_str(r, v, 4);
}
static uint8_t s_need_STR8(const kv_bytes_t *v, const s_enc_t *e) {
    (void)e;
    return v->len != 0;
}
#define s_need_STR16 s_need_STR8
#define s_need_BLOB32 s_need_STR8

/* Blobs of fixed-size records must hold a whole number of them. */
#define s_put_ITEMS s_put_BLOB32
#define s_put_REPORTS s_put_BLOB32
#define s_need_ITEMS s_need_STR8
#define s_need_REPORTS s_need_STR8

static void s_get_ITEMS(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    s_get_BLOB32(r, v, d);
    if (v->len % KV_MSG_ITEM_SIZE) r->failed = 1;
}
static void s_get_REPORTS(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    s_get_BLOB32(r, v, d);
    if (v->len % KV_MSG_REPORT_SIZE) r->failed = 1;
}

/* --- expanding the schema ------------------------------------------------- */

/* One field of a message or record m: written, read and needed only from
 * the version that added it on. */
#define S_PUT(member, KIND, since)                                                                 \
    if ((since) <= e->version) s_put_##KIND(w, &m->member, e);
#define S_GET(member, KIND, since)                                                                 \
    if ((since) <= d->version) s_get_##KIND(r, &m->member, d);
#define S_NEED(member, KIND, since)                                                                \
    {                                                                                              \
        uint8_t field_need = s_need_##KIND(&m->member, e);                                         \
        if (field_need) need = s_max(need, s_max(field_need, since));                              \
    }

/* A writer and a reader for a record of C type ctype (a type cannot be
 * parenthesized). */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define S_RECORD_CODEC(NAME, ctype)                                                                \
    static void s_put_rec_##NAME(kv_writer_t *w, const ctype *m, const s_enc_t *e) {               \
        KV_MSG_##NAME##_FIELDS(S_PUT)                                                              \
    }                                                                                              \
    static void s_get_rec_##NAME(kv_reader_t *r, ctype *m, const s_dec_t *d) {                     \
        KV_MSG_##NAME##_FIELDS(S_GET)                                                              \
    }

/* NOLINTEND(bugprone-macro-parentheses) */
S_RECORD_CODEC(ENTRY, kv_msg_entry_t)
S_RECORD_CODEC(COUNTER, kv_msg_counter_t)
S_RECORD_CODEC(ITEM, kv_msg_item_t)
S_RECORD_CODEC(REPORT, kv_msg_report_t)
S_RECORD_CODEC(TXOP, kv_msg_txop_t)

/* The version an entry's fields need; 0 when every one is empty. */
static uint8_t s_need_rec_ENTRY(const kv_msg_entry_t *m, const s_enc_t *e) {
    uint8_t need = 0;
    KV_MSG_ENTRY_FIELDS(S_NEED)
    return need;
}

/* --- variable records: entries and counters ------------------------------ */

/* The version whose fields a walk of a blob laid out in layout needs, over
 * its records; 0 for an empty blob. */
static uint8_t s_need_entries(const kv_bytes_t *v, uint8_t layout) {
    kv_reader_t r = {(const uint8_t *)v->ptr, v->len, 0, 0};
    const s_dec_t d = {NULL, layout};
    const s_enc_t e = {NULL, layout, layout};
    uint8_t need = v->len != 0;
    while (r.pos < r.len && !r.failed) {
        kv_msg_entry_t entry = {0};
        s_get_rec_ENTRY(&r, &entry, &d);
        need = s_max(need, s_need_rec_ENTRY(&entry, &e));
    }
    return need;
}

static uint8_t s_need_ENTRIES(const kv_bytes_t *v, const s_enc_t *e) {
    return s_need_entries(v, e->layout);
}

/* Entries laid out as the caller built them, rewritten record by record in
 * the layout of the version being written when the two differ (an older
 * version leaves out the fields it lacks; they are 0, or it would not have
 * been chosen). */
static void s_put_ENTRIES(kv_writer_t *w, const kv_bytes_t *v, const s_enc_t *e) {
    if (e->layout == e->version) {
        kv_wire_put(w, v->ptr, v->len);
        return;
    }
    kv_reader_t r = {(const uint8_t *)v->ptr, v->len, 0, 0};
    const s_dec_t d = {NULL, e->layout};
    while (r.pos < r.len && !r.failed) {
        kv_msg_entry_t entry = {0};
        s_get_rec_ENTRY(&r, &entry, &d);
        s_put_rec_ENTRY(w, &entry, e);
    }
    if (r.failed) w->failed = 1; /* the caller's entries are malformed */
}

/* Exactly count entries of the frame's version; NULL when there are none,
 * like every other empty string. */
static void s_get_ENTRIES(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    size_t start = r->pos;
    for (uint32_t i = 0; i < d->msg->count && !r->failed; i++) {
        kv_msg_entry_t entry;
        s_get_rec_ENTRY(r, &entry, d);
    }
    if (!r->failed && r->pos > start)
        *v = (kv_bytes_t){(const char *)r->buf + start, r->pos - start};
    else
        *v = (kv_bytes_t){NULL, 0};
}

/* Counters: a blob32 of records. Every counter field is as old as the
 * counters field, so a frame that carries counters lays them out as their
 * builder did, and they are copied as they are. */
static void s_put_COUNTERS(kv_writer_t *w, const kv_bytes_t *v, const s_enc_t *e) {
    s_put_BLOB32(w, v, e);
}
#define s_need_COUNTERS s_need_STR8

static void s_get_COUNTERS(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    s_get_BLOB32(r, v, d);
    kv_reader_t blob = {(const uint8_t *)v->ptr, v->len, 0, 0};
    while (blob.pos < blob.len && !blob.failed) {
        kv_msg_counter_t counter;
        s_get_rec_COUNTER(&blob, &counter, d);
    }
    if (blob.failed) r->failed = 1;
}

/* Transaction ops: a blob32 of records, each checked when read (its write
 * kind in range), so a handler walks them without failing. */
#define s_put_TXOPS s_put_BLOB32
#define s_need_TXOPS s_need_STR8

static void s_get_TXOPS(kv_reader_t *r, kv_bytes_t *v, const s_dec_t *d) {
    s_get_BLOB32(r, v, d);
    kv_reader_t blob = {(const uint8_t *)v->ptr, v->len, 0, 0};
    while (blob.pos < blob.len && !blob.failed) {
        kv_msg_txop_t op;
        s_get_rec_TXOP(&blob, &op, d);
        if (op.write > KV_TXOP_MAX) blob.failed = 1;
    }
    if (blob.failed) r->failed = 1;
}

/* --- messages -------------------------------------------------------------- */

/* A writer, a reader and a need function per message. */
#define S_MSG_CODEC(NAME, code)                                                                    \
    static void s_put_msg_##NAME(kv_writer_t *w, const kv_msg_t *m, const s_enc_t *e) {            \
        (void)w, (void)m, (void)e;                                                                 \
        KV_MSG_##NAME##_FIELDS(S_PUT)                                                              \
    }                                                                                              \
    static void s_get_msg_##NAME(kv_reader_t *r, kv_msg_t *m, const s_dec_t *d) {                  \
        (void)r, (void)m, (void)d;                                                                 \
        KV_MSG_##NAME##_FIELDS(S_GET)                                                              \
    }                                                                                              \
    static uint8_t s_need_msg_##NAME(const kv_msg_t *m, const s_enc_t *e) {                        \
        uint8_t need = KV_MSG_VERSION_MIN;                                                         \
        (void)m, (void)e;                                                                          \
        KV_MSG_##NAME##_FIELDS(S_NEED) return need;                                                \
    }
KV_MSG_TYPES(S_MSG_CODEC)

typedef struct {
    const char *name;                                                 /* for logs */
    void (*put)(kv_writer_t *w, const kv_msg_t *m, const s_enc_t *e); /* body writer */
    void (*get)(kv_reader_t *r, kv_msg_t *m, const s_dec_t *d);       /* body reader */
    uint8_t (*need)(const kv_msg_t *m, const s_enc_t *e);             /* lowest version that fits */
} s_codec_t;

#define S_CODEC_ENTRY(NAME, code)                                                                  \
    [code] = {#NAME, s_put_msg_##NAME, s_get_msg_##NAME, s_need_msg_##NAME},
static const s_codec_t s_codecs[256] = {KV_MSG_TYPES(S_CODEC_ENTRY)};

static const s_codec_t *s_codec(int type) {
    if (type < 0 || type > 255 || !s_codecs[type].name) return NULL;
    return &s_codecs[type];
}

/* --- the codec ------------------------------------------------------------- */

static size_t s_encode(const kv_msg_t *msg, uint8_t *buf, size_t cap) {
    const s_codec_t *codec = s_codec(msg->type);
    if (!codec) return 0; /* unknown type: a programming error upstream */
    /* Entries are laid out in msg's version: decoded ones as in their frame,
     * built ones (version 0) in this one's. */
    s_enc_t e = {msg, msg->version, msg->version ? msg->version : KV_MSG_VERSION};
    uint8_t need = codec->need(msg, &e);
    if (!msg->version) e.version = need;
    if (e.version < need || e.version > KV_MSG_VERSION) return 0; /* does not fit */
    kv_writer_t w = {buf, cap, 0, 0};
    kv_wire_put_uint(&w, e.version, 1);
    kv_wire_put_uint(&w, msg->type, 1);
    codec->put(&w, msg, &e);
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
    uint8_t version = (uint8_t)kv_wire_get_uint(&r, 1);
    uint8_t type = (uint8_t)kv_wire_get_uint(&r, 1);
    if (r.failed || version < KV_MSG_VERSION_MIN || version > KV_MSG_VERSION)
        return -1; /* short, or a version this release does not know */
    const s_codec_t *codec = s_codec(type);
    if (!codec) return -1; /* unknown type */
    msg->type = type;
    msg->version = version;
    const s_dec_t d = {msg, version};
    codec->get(&r, msg, &d);
    if (r.failed || r.pos != len) return -1; /* truncated, or trailing bytes */
    return 0;
}

const char *kv_msg_type_name(int type) {
    const s_codec_t *codec = s_codec(type);
    return codec ? codec->name : "UNKNOWN";
}

const char *kv_status_name(int status) {
    static const char *const names[] = {"OK",        "NOT_FOUND", "MOVED",       "STALE_EPOCH",
                                        "NOT_READY", "NO_MEMORY", "UNAVAILABLE", "BAD_REQUEST",
                                        "NO_LEASE",  "CONFLICT",  "TX_ABORTED",  "LOCKED"};
    if (status < 0 || status > KV_STATUS_MAX) return "UNKNOWN";
    return names[status];
}

/* --- records ---------------------------------------------------------------- */

static const s_enc_t s_current = {NULL, KV_MSG_VERSION, KV_MSG_VERSION};

/* The version a built (version 0) or decoded message's blobs are laid out in. */
static uint8_t s_layout(const kv_msg_t *msg) {
    return msg->version ? msg->version : KV_MSG_VERSION;
}

size_t kv_msg_entry_size(size_t klen, size_t vlen) {
    const kv_msg_entry_t entry = {{NULL, klen}, {NULL, vlen}, {0, 0}};
    kv_writer_t w = {NULL, 0, 0, 0}; /* counts only */
    s_put_rec_ENTRY(&w, &entry, &s_current);
    return w.pos;
}

int kv_msg_entry_put(uint8_t *buf, size_t cap, size_t *pos, const kv_msg_entry_t *entry) {
    kv_writer_t w = {buf, cap, *pos, 0};
    if (!buf) return -1;
    s_put_rec_ENTRY(&w, entry, &s_current);
    if (w.failed) return -1;
    *pos = w.pos;
    return 0;
}

int kv_msg_entry_next(const kv_msg_t *msg, size_t *pos, kv_msg_entry_t *entry) {
    kv_reader_t r = {(const uint8_t *)msg->entries.ptr, msg->entries.len, *pos, 0};
    if (r.pos >= r.len) return -1;
    const s_dec_t d = {msg, s_layout(msg)};
    memset(entry, 0, sizeof(*entry));
    s_get_rec_ENTRY(&r, entry, &d);
    if (r.failed) return -1;
    *pos = r.pos;
    return 0;
}

int kv_msg_counter_put(uint8_t *buf, size_t cap, size_t *pos, const char *name, uint64_t value) {
    kv_writer_t w = {buf, cap, *pos, 0};
    if (!buf || !name) return -1;
    const kv_msg_counter_t counter = {{name, strlen(name)}, value};
    s_put_rec_COUNTER(&w, &counter, &s_current);
    if (w.failed) return -1;
    *pos = w.pos;
    return 0;
}

int kv_msg_counter_next(const kv_msg_t *msg, size_t *pos, kv_msg_counter_t *counter) {
    kv_reader_t r = {(const uint8_t *)msg->counters.ptr, msg->counters.len, *pos, 0};
    if (r.pos >= r.len) return -1;
    const s_dec_t d = {msg, s_layout(msg)};
    memset(counter, 0, sizeof(*counter));
    s_get_rec_COUNTER(&r, counter, &d);
    if (r.failed) return -1;
    *pos = r.pos;
    return 0;
}

int kv_msg_txop_put(uint8_t *buf, size_t cap, size_t *pos, const kv_msg_txop_t *op) {
    kv_writer_t w = {buf, cap, *pos, 0};
    if (!buf) return -1;
    s_put_rec_TXOP(&w, op, &s_current);
    if (w.failed) return -1;
    *pos = w.pos;
    return 0;
}

size_t kv_msg_txop_size(size_t klen, size_t vlen) {
    const kv_msg_txop_t op = {.key = {NULL, klen}, .value = {NULL, vlen}};
    kv_writer_t w = {NULL, 0, 0, 0}; /* counts only */
    s_put_rec_TXOP(&w, &op, &s_current);
    return w.pos;
}

int kv_msg_txop_next(const kv_msg_t *msg, size_t *pos, kv_msg_txop_t *op) {
    kv_reader_t r = {(const uint8_t *)msg->ops.ptr, msg->ops.len, *pos, 0};
    if (r.pos >= r.len) return -1;
    const s_dec_t d = {msg, s_layout(msg)};
    memset(op, 0, sizeof(*op));
    s_get_rec_TXOP(&r, op, &d);
    if (r.failed) return -1;
    *pos = r.pos;
    return 0;
}

/* Fixed-size records: every field since version 1, so any version reads
 * them whole. */
void kv_msg_item_write(uint8_t *buf, size_t i, const kv_msg_item_t *item) {
    kv_writer_t w = {buf + i * KV_MSG_ITEM_SIZE, KV_MSG_ITEM_SIZE, 0, 0};
    s_put_rec_ITEM(&w, item, &s_current);
}

void kv_msg_report_write(uint8_t *buf, size_t i, const kv_msg_report_t *report) {
    kv_writer_t w = {buf + i * KV_MSG_REPORT_SIZE, KV_MSG_REPORT_SIZE, 0, 0};
    s_put_rec_REPORT(&w, report, &s_current);
}

kv_msg_item_t kv_msg_item_read(const kv_bytes_t *blob, size_t i) {
    kv_reader_t r = {(const uint8_t *)blob->ptr + i * KV_MSG_ITEM_SIZE, KV_MSG_ITEM_SIZE, 0, 0};
    const s_dec_t d = {NULL, KV_MSG_VERSION};
    kv_msg_item_t item = {0};
    s_get_rec_ITEM(&r, &item, &d);
    return item;
}

kv_msg_report_t kv_msg_report_read(const kv_bytes_t *blob, size_t i) {
    kv_reader_t r = {(const uint8_t *)blob->ptr + i * KV_MSG_REPORT_SIZE, KV_MSG_REPORT_SIZE, 0, 0};
    const s_dec_t d = {NULL, KV_MSG_VERSION};
    kv_msg_report_t report = {0};
    s_get_rec_REPORT(&r, &report, &d);
    return report;
}
