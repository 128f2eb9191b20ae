/*  kv_msg.h: the wire messages every process of the store speaks.
 *
 *  The messages, their fields, their layout and the version rule for
 *  rolling upgrades are declared once, in kv_msg_schema.h; this header
 *  expands that schema into C types and declares the codec.
 *
 *  Decoders validate every length against the frame and reject trailing
 *  bytes, unknown versions and types: a malformed frame is an error, never a
 *  crash or an out-of-bounds read. Decoded strings point into the frame.
 */
#ifndef KV_MSG_H
#define KV_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "kv_msg_schema.h"

#define KV_MSG_TYPE_(NAME, code) KV_MSG_##NAME = code, /* NOLINT(bugprone-macro-parentheses) */
typedef enum { KV_MSG_TYPES(KV_MSG_TYPE_) } kv_msg_type_t;
#undef KV_MSG_TYPE_

/* Operations carried by UPDATE. */
typedef enum {
    KV_OP_SET = 1,   /* key = value */
    KV_OP_RM = 2,    /* remove key */
    KV_OP_CLEAR = 3, /* remove every key of the partition */
    KV_OP_FENCE = 4, /* end of this primary's stream for the partition */
    KV_OP_MAX = 4,
} kv_op_t;

#define KV_TOPIC_BEACON 0xFFFFFFFFu /* PUB topic of beacons */

/* Bytes of the fixed-size records, summed from their schema. */
/* NOLINTNEXTLINE(bugprone-macro-parentheses): a term of a sum */
#define KV_MSG_FIXED_SIZE_(member, KIND, since) KV_MSG_SIZE_##KIND +
#define KV_MSG_ITEM_SIZE (KV_MSG_ITEM_FIELDS(KV_MSG_FIXED_SIZE_) 0)
#define KV_MSG_REPORT_SIZE (KV_MSG_REPORT_FIELDS(KV_MSG_FIXED_SIZE_) 0)

#define KV_ROLE_LEARNER 0xFF /* report role of a learner */

/* Report state bits. */
#define KV_REPORT_LIVE 0x01  /* replica/learner: following the stream */
#define KV_REPORT_READY 0x02 /* learner: applied the fenced stream to its end */
#define KV_REPORT_FULL                                                                             \
    0x04 /* replica/learner: its snapshot did not fit the node's memory                            \
            limit; it holds none of it and asks no more (older                                     \
            coordinators ignore the bit) */

/* Outcome of a request, as a node reports it. */
typedef enum {
    KV_STATUS_OK = 0,
    KV_STATUS_NOT_FOUND = 1,   /* no such key */
    KV_STATUS_MOVED = 2,       /* not the primary at the node's epoch (in reply) */
    KV_STATUS_STALE_EPOCH = 3, /* the request's epoch is newer than the node's */
    KV_STATUS_NOT_READY = 4,   /* the node has no routing table yet */
    KV_STATUS_NO_MEMORY = 5,   /* at the memory limit; nothing written */
    KV_STATUS_UNAVAILABLE = 6, /* too few replicas for a safe write */
    KV_STATUS_BAD_REQUEST = 7, /* malformed or out-of-range request */
    KV_STATUS_NO_LEASE = 8,    /* primary without a valid lease; nothing written */
    KV_STATUS_CONFLICT = 9,    /* the condition does not hold (REPLY's version: the current) */
    KV_STATUS_TX_ABORTED = 10, /* a transaction gave way to another; nothing written */
    KV_STATUS_LOCKED = 11,     /* the key is in a transaction's commit: ask again shortly */
    KV_STATUS_MAX = 11,
} kv_status_t;

/* A byte string inside a frame. */
typedef struct {
    const char *ptr; /* not NUL-terminated; NULL when empty */
    size_t len;      /* bytes */
} kv_bytes_t;

/* Per-entry metadata (UPDATE, SCAN_REPLY and SNAPSHOT entries; REPLY's
 * version): the version is the partition seq of the write that stored the
 * entry; the expiry is zero until expiry exists. */
typedef struct {
    uint64_t version; /* the entry's version */
    uint64_t expiry;  /* absolute deadline in ms, 0 for none */
} kv_msg_meta_t;

/* One decoded (or to-be-encoded) message: the fields its type uses (see
 * KV_MSG_MEMBERS in kv_msg_schema.h), the others zero. */
#define KV_MSG_MEMBER_(ctype, member) ctype member;
typedef struct {
    uint8_t type;    /* kv_msg_type_t */
    uint8_t version; /* frame version: set by decode; 0 to encode the lowest that fits */
    KV_MSG_MEMBERS(KV_MSG_MEMBER_)
} kv_msg_t;
#undef KV_MSG_MEMBER_

/* One (key, value) record of a SCAN_REPLY or SNAPSHOT. */
typedef struct {
    kv_bytes_t key;
    kv_bytes_t value;
    kv_msg_meta_t meta;
} kv_msg_entry_t;

/* What a transaction does to one key (TXOP's write). */
typedef enum { KV_TXOP_NONE = 0, KV_TXOP_SET = 1, KV_TXOP_RM = 2, KV_TXOP_MAX = 2 } kv_txop_write_t;

/* One key of a TX_PREPARE. */
typedef struct {
    uint8_t write;       /* kv_txop_write_t */
    uint8_t has_if;      /* a condition on the key's version */
    uint64_t if_version; /* the version required, 0: absent */
    uint8_t get;         /* the value is read */
    kv_bytes_t key;
    kv_bytes_t value; /* SET */
} kv_msg_txop_t;

/* One named counter of a STATS_REPLY. */
typedef struct {
    kv_bytes_t name;
    uint64_t value;
} kv_msg_counter_t;

/* One (partition, seq, flag) record of a BEACON or ACK. */
typedef struct {
    uint32_t partition;
    uint64_t seq;
    uint8_t flag;
} kv_msg_item_t;

/* One partition report of a HEARTBEAT. */
typedef struct {
    uint32_t partition;
    uint8_t role;  /* slot: 0 primary, 1.. replica, KV_ROLE_LEARNER */
    uint8_t state; /* KV_REPORT_* bits */
    uint64_t seq;
} kv_msg_report_t;

/* Writes record i of an items / reports blob at buf (caller sized it). */
void kv_msg_item_write(uint8_t *buf, size_t i, const kv_msg_item_t *item);
void kv_msg_report_write(uint8_t *buf, size_t i, const kv_msg_report_t *report);

/* Reads record i; the caller checks i < blob.len / size. */
kv_msg_item_t kv_msg_item_read(const kv_bytes_t *blob, size_t i);
kv_msg_report_t kv_msg_report_read(const kv_bytes_t *blob, size_t i);

/* Bytes kv_msg_encode will write for msg, or 0 when msg cannot be encoded
 * (unknown type, a string over its length field). */
size_t kv_msg_encoded_size(const kv_msg_t *msg);

/* Encodes msg into buf (cap bytes). Returns the length, or 0 when it does
 * not fit or cannot be encoded. */
size_t kv_msg_encode(const kv_msg_t *msg, uint8_t *buf, size_t cap);

/* Decodes one frame into msg (zeroed first). Returns 0, or -1 when the frame
 * is malformed in any way. msg's byte strings point into buf. */
int kv_msg_decode(const uint8_t *buf, size_t len, kv_msg_t *msg);

/* Name of a type or status, for logs. */
const char *kv_msg_type_name(int type);
const char *kv_status_name(int status);

/* Appends one entry, in this version's layout, to a SCAN_REPLY or SNAPSHOT
 * entries buffer at *pos. Returns 0, or -1 when it does not fit in cap. */
int kv_msg_entry_put(uint8_t *buf, size_t cap, size_t *pos, const kv_msg_entry_t *entry);

/* Bytes kv_msg_entry_put writes for an entry of these lengths. */
size_t kv_msg_entry_size(size_t klen, size_t vlen);

/* Reads the entry at *pos of msg's entries (in the layout of msg's version)
 * and advances *pos; fields its version lacks read 0. Returns 0, or -1 at
 * the end. (Decoding already checked bounds.) */
int kv_msg_entry_next(const kv_msg_t *msg, size_t *pos, kv_msg_entry_t *entry);

/* Appends one op to a TX_PREPARE ops buffer at *pos. Returns 0, or -1
 * when it does not fit in cap. kv_msg_txop_size gives its bytes. */
int kv_msg_txop_put(uint8_t *buf, size_t cap, size_t *pos, const kv_msg_txop_t *op);
size_t kv_msg_txop_size(size_t klen, size_t vlen);

/* Reads the op at *pos of msg's ops and advances *pos. Returns 0, or -1 at
 * the end. (Decoding already checked every record.) */
int kv_msg_txop_next(const kv_msg_t *msg, size_t *pos, kv_msg_txop_t *op);

/* Appends one counter to a STATS_REPLY counters buffer at *pos. Returns 0,
 * or -1 when it does not fit in cap or the name is over 255 bytes. */
int kv_msg_counter_put(uint8_t *buf, size_t cap, size_t *pos, const char *name, uint64_t value);

/* Reads the counter at *pos of msg's counters and advances *pos. Returns 0,
 * or -1 at the end. */
int kv_msg_counter_next(const kv_msg_t *msg, size_t *pos, kv_msg_counter_t *counter);

#endif
