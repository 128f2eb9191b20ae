/*  kv_msg.h: the wire messages every process of the store speaks.
 *
 *  Every message is ONE ZeroMQ frame (after any ROUTER identity frames), so
 *  a request costs one zmq_msg and the codec never juggles multipart state.
 *  Integers are big-endian. str8/str16 are a length (u8/u16) then bytes,
 *  never NUL-terminated. Every frame starts with a two-byte header:
 *
 *      u8 version (KV_MSG_VERSION), u8 type
 *
 *  Then, by type:
 *
 *  GET, SET, RM, IS (gateway -> node primary)
 *      u64 req_id     gateway-chosen, echoed in the reply
 *      u64 epoch      routing epoch the gateway routed with
 *      u32 partition  kv_partition_of(key)
 *      str16 key
 *      str16 value    SET only
 *  CLEAR (gateway -> every node): u64 req_id, u64 epoch
 *  SCAN (gateway -> node primary): key-ordered page of one partition
 *      u64 req_id, u64 epoch, u32 partition, u32 limit,
 *      u8 has_after, str16 after   entries with keys strictly after this
 *  STATS (gateway -> node): u64 req_id
 *  REPLY (node -> gateway): u64 req_id, u8 status, u64 epoch, str16 value
 *  SCAN_REPLY: u64 req_id, u8 status, u64 epoch, u8 more, u32 count,
 *      then count x (str16 key, str16 value)
 *  STATS_REPLY: u64 req_id, u8 status, u64 epoch, u64 keys (held),
 *      u64 primary_keys (in partitions it is primary of), u64 memory,
 *      u32 primaries, u32 replicas
 *  HELLO (node -> coordinator, on start and when asked): registration
 *      str8 node_id, str16 endpoint, str16 pub_endpoint,
 *      u64 keys, u64 memory, blob32 table   the node's last table (may be empty)
 *  HEARTBEAT (node -> coordinator): str8 node_id, u64 epoch, u64 keys, u64 memory
 *  TABLE_REQ (anyone -> coordinator): u64 epoch   the asker's epoch
 *  TABLE (coordinator -> nodes, gateways): blob32 table (kv_table encoding)
 *  WHO (coordinator -> node): empty; "I do not know you, send HELLO"
 *
 *  Decoders validate every length against the frame and reject trailing
 *  bytes, unknown versions and types: a malformed frame is an error, never a
 *  crash or an out-of-bounds read. Decoded strings point into the frame.
 */
#ifndef KV_MSG_H
#define KV_MSG_H

#include <stddef.h>
#include <stdint.h>

#define KV_MSG_VERSION 1
#define KV_MSG_HEADER 2 /* version + type */

typedef enum {
    KV_MSG_GET = 1,
    KV_MSG_SET = 2,
    KV_MSG_RM = 3,
    KV_MSG_IS = 4,
    KV_MSG_CLEAR = 5,
    KV_MSG_SCAN = 6,
    KV_MSG_STATS = 7,
    KV_MSG_REPLY = 16,
    KV_MSG_SCAN_REPLY = 17,
    KV_MSG_STATS_REPLY = 18,
    KV_MSG_HELLO = 32,
    KV_MSG_HEARTBEAT = 33,
    KV_MSG_TABLE_REQ = 34,
    KV_MSG_TABLE = 35,
    KV_MSG_WHO = 36,
} kv_msg_type_t;

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
    KV_STATUS_MAX = 7,
} kv_status_t;

/* A byte string inside a frame. */
typedef struct {
    const char *ptr; /* not NUL-terminated; NULL when empty */
    size_t len;      /* bytes */
} kv_bytes_t;

/* One decoded (or to-be-encoded) message: the fields its type uses. */
typedef struct {
    uint8_t type;            /* kv_msg_type_t */
    uint8_t status;          /* replies: kv_status_t */
    uint8_t has_after;       /* SCAN: after is set */
    uint8_t more;            /* SCAN_REPLY: the partition has entries after these */
    uint32_t partition;      /* keyed requests, SCAN */
    uint32_t limit;          /* SCAN: entries wanted */
    uint32_t count;          /* SCAN_REPLY: entries in entries */
    uint32_t primaries;      /* STATS_REPLY */
    uint32_t replicas;       /* STATS_REPLY */
    uint64_t req_id;         /* requests and replies */
    uint64_t epoch;          /* routing epoch */
    uint64_t keys;           /* STATS_REPLY, HELLO, HEARTBEAT */
    uint64_t primary_keys;   /* STATS_REPLY */
    uint64_t memory;         /* STATS_REPLY, HELLO, HEARTBEAT */
    kv_bytes_t key;          /* keyed requests */
    kv_bytes_t value;        /* SET, REPLY */
    kv_bytes_t after;        /* SCAN */
    kv_bytes_t entries;      /* SCAN_REPLY: count encoded (key, value) pairs */
    kv_bytes_t node_id;      /* HELLO, HEARTBEAT */
    kv_bytes_t endpoint;     /* HELLO */
    kv_bytes_t pub_endpoint; /* HELLO */
    kv_bytes_t table;        /* HELLO, TABLE: kv_table encoding */
} kv_msg_t;

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

/* Appends one (key, value) entry to a SCAN_REPLY entries buffer at *pos.
 * Returns 0, or -1 when it does not fit in cap. */
int kv_msg_entry_put(uint8_t *buf, size_t cap, size_t *pos, const char *key, size_t klen,
                     const char *value, size_t vlen);

/* Bytes one entry takes in a SCAN_REPLY. */
size_t kv_msg_entry_size(size_t klen, size_t vlen);

/* Reads the entry at *pos of a decoded SCAN_REPLY's entries and advances
 * *pos. Returns 0, or -1 at the end. (Decoding already checked bounds.) */
int kv_msg_entry_next(const kv_bytes_t *entries, size_t *pos, kv_bytes_t *key, kv_bytes_t *value);

#endif
