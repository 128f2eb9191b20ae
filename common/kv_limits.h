/*  kv_limits.h: the numbers every process of the store agrees on.
 *
 *  The API limits come from docs/api.md and are reported by /settings
 *  and /status; the cluster defaults are the ones docs/design.md names. Keep them
 *  here so the gateway's validation, the wire codec and the node's storage can
 *  never disagree about how long a key may be.
 */
#ifndef KV_LIMITS_H
#define KV_LIMITS_H

#define KV_MAX_KEY_CHARS 64    /* key length limit, in Unicode code points */
#define KV_MAX_VALUE_CHARS 256 /* value length limit, in Unicode code points */
#define KV_MAX_KEY_BYTES ((size_t)KV_MAX_KEY_CHARS * 4)     /* 4 bytes per code point at most */
#define KV_MAX_VALUE_BYTES ((size_t)KV_MAX_VALUE_CHARS * 4) /* idem */
#define KV_MGET_MAX_KEYS 1000 /* keys per /mget (400 TOO_MANY_KEYS beyond), per MGET message */
#define KV_MAX_TTL_S                                                                               \
    315360000u /* the longest ttl=, in seconds (ten years): 400 INVALID_TTL beyond */

#define KV_PARTITIONS_DEFAULT 1024 /* fixed for the life of a cluster */
#define KV_PARTITIONS_MAX 65536    /* partition ids travel as 16 bits in tables */
#define KV_REPLICATION_DEFAULT 1   /* primaries only until replication lands */
#define KV_REPLICATION_MAX 5

#define KV_HASH_SEED 0x6b7673746f726531ULL /* "kvstore1": the partition hash seed */

#define KV_NODE_ID_MAX 64   /* bytes of a node id */
#define KV_ENDPOINT_MAX 256 /* bytes of a ZeroMQ endpoint string */
#define KV_MAX_NODES 256    /* nodes one routing table can name */
#define KV_NO_NODE 0xFFFF   /* "no owner" in a routing table slot */

#define KV_HEARTBEAT_MS 100        /* node -> coordinator heartbeat period */
#define KV_NODE_TIMEOUT_MS 800     /* silence after which a node is down */
#define KV_LEASE_MS 500            /* primary lease per heartbeat grant */
#define KV_LEASE_MARGIN_MS 100     /* clock-drift margin on each side of a lease */
#define KV_REQUEST_TIMEOUT_MS 2000 /* gateway waits this long for a node */
#define KV_MAX_URI_BYTES 8192      /* longer request targets get 414 */

#endif
