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
 *      u64 memory_limit (cgroup limit, 0 when none), u32 primaries, u32 replicas
 *  HELLO (node -> coordinator, on start and when asked): registration
 *      str8 node_id, u64 incarnation (random per process start: a new one
 *      means the node lost its data), str16 endpoint, str16 pub_endpoint,
 *      u64 keys, u64 memory, blob32 table   the node's last table (may be empty)
 *  HEARTBEAT (node -> coordinator): str8 node_id, u64 incarnation, u64 epoch,
 *      u64 keys, u64 memory, u64 memory_limit, blob32 reports: n x KV_MSG_REPORT_SIZE
 *      (u32 partition, u8 role, u8 state bits KV_REPORT_*, u64 seq)
 *  TABLE_REQ (anyone -> coordinator): u64 epoch   the asker's epoch
 *  TABLE (coordinator -> nodes, gateways): blob32 table (kv_table encoding)
 *  WHO (coordinator -> node): empty; "I do not know you, send HELLO"
 *  JOIN (gateway -> coordinator): u64 req_id, str16 endpoint of a node to invite
 *  LEAVE (gateway or node -> coordinator): u64 req_id, str8 node_id to drain
 *  INVITE (coordinator -> node request socket): u64 req_id, str16 coordinator
 *      endpoint; the node answers REPLY (value: its id) and registers there
 *  CLUSTER_REPLY (coordinator -> gateway): u64 req_id, u8 status, str8 node_id
 *
 *  Replication (see node/kv_repl.h for the protocol):
 *  UPDATE (primary PUB, topic frame = u32 partition): u32 partition,
 *      u16 sender, u64 epoch, u64 seq, u8 op (KV_OP_*), str16 key, str16 value
 *  BEACON (primary PUB, topic KV_TOPIC_BEACON): u16 sender, u64 epoch,
 *      blob32 items: n x KV_MSG_ITEM_SIZE (u32 partition, u64 seq, u8 fenced)
 *  ACK (replica -> primary request socket): u16 sender, blob32 items:
 *      n x KV_MSG_ITEM_SIZE (u32 partition, u64 seq applied, u8 0)
 *  SNAPSHOT_REQ (replica -> primary): u64 req_id, u32 partition, u16 sender
 *  SNAPSHOT (primary -> replica): u64 req_id, u32 partition, u8 status,
 *      u64 seq (the snapshot is the partition at exactly this sequence),
 *      u32 chunk (0, 1, ...), u8 more, u32 count, count x (str16 key, str16 value)
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
    KV_MSG_JOIN = 37,
    KV_MSG_LEAVE = 38,
    KV_MSG_INVITE = 39,
    KV_MSG_CLUSTER_REPLY = 40,
    KV_MSG_UPDATE = 48,
    KV_MSG_BEACON = 49,
    KV_MSG_ACK = 50,
    KV_MSG_SNAPSHOT_REQ = 51,
    KV_MSG_SNAPSHOT = 52,
} kv_msg_type_t;

/* Operations carried by UPDATE. */
typedef enum {
    KV_OP_SET = 1,   /* key = value */
    KV_OP_RM = 2,    /* remove key */
    KV_OP_CLEAR = 3, /* remove every key of the partition */
    KV_OP_FENCE = 4, /* end of this primary's stream for the partition */
    KV_OP_MAX = 4,
} kv_op_t;

#define KV_TOPIC_BEACON 0xFFFFFFFFu /* PUB topic of beacons */
#define KV_MSG_ITEM_SIZE 13         /* u32 partition, u64 seq, u8 flag */
#define KV_MSG_REPORT_SIZE 14       /* u32 partition, u8 role, u8 state, u64 seq */

#define KV_ROLE_LEARNER 0xFF /* report role of a learner */

/* Report state bits. */
#define KV_REPORT_LIVE 0x01  /* replica/learner: following the stream */
#define KV_REPORT_READY 0x02 /* learner: applied the fenced stream to its end */

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
    uint8_t status;          /* replies, CLUSTER_REPLY, SNAPSHOT: kv_status_t */
    uint8_t has_after;       /* SCAN: after is set */
    uint8_t more;            /* SCAN_REPLY, SNAPSHOT: more entries follow */
    uint32_t partition;      /* keyed requests, SCAN, UPDATE, SNAPSHOT_REQ, SNAPSHOT */
    uint32_t limit;          /* SCAN: entries wanted */
    uint32_t count;          /* SCAN_REPLY, SNAPSHOT: entries in entries */
    uint32_t primaries;      /* STATS_REPLY */
    uint32_t replicas;       /* STATS_REPLY */
    uint64_t req_id;         /* requests and replies */
    uint64_t epoch;          /* requests, replies, HEARTBEAT, UPDATE, BEACON: routing epoch */
    uint64_t keys;           /* STATS_REPLY, HELLO, HEARTBEAT */
    uint64_t primary_keys;   /* STATS_REPLY */
    uint64_t memory;         /* STATS_REPLY, HELLO, HEARTBEAT */
    kv_bytes_t key;          /* keyed requests */
    kv_bytes_t value;        /* SET, REPLY */
    kv_bytes_t after;        /* SCAN */
    kv_bytes_t entries;      /* SCAN_REPLY, SNAPSHOT: count encoded (key, value) pairs */
    kv_bytes_t node_id;      /* HELLO, HEARTBEAT, LEAVE, CLUSTER_REPLY */
    kv_bytes_t endpoint;     /* HELLO, JOIN, INVITE */
    kv_bytes_t pub_endpoint; /* HELLO */
    kv_bytes_t table;        /* HELLO, TABLE: kv_table encoding */
    uint64_t incarnation;    /* HELLO, HEARTBEAT */
    uint64_t memory_limit;   /* HEARTBEAT, STATS_REPLY: bytes, 0 when unlimited */
    uint64_t seq;            /* UPDATE, SNAPSHOT */
    uint32_t chunk;          /* SNAPSHOT */
    uint16_t sender;         /* UPDATE, BEACON, ACK, SNAPSHOT_REQ: node index */
    uint8_t op;              /* UPDATE: kv_op_t */
    kv_bytes_t items;        /* BEACON, ACK: KV_MSG_ITEM_SIZE records */
    kv_bytes_t reports;      /* HEARTBEAT: KV_MSG_REPORT_SIZE records */
} kv_msg_t;

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
