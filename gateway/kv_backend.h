/*  kv_backend.h: the gateway's door to the cluster, one per HTTP thread.
 *
 *  Not an actor: a plain object owned by one gateway worker thread, whose
 *  event loop (kv_http.c) waits in kv_poller over its libmicrohttpd daemon
 *  and this backend's ZeroMQ sockets. A request is parsed and validated and
 *  a kv_call_t submitted (a keyed request's connection waits without being
 *  suspended, the others' are suspended); the backend owns the routing
 *  table and one DEALER per node, sends the call to the partition's
 *  primary, matches the reply by request id and hands the call back through
 *  its done callback, in the same thread, which wakes the request. Many
 *  calls are in flight at once and each wake-up drains
 *  every ready socket, so ZeroMQ batches messages into few syscalls; and no
 *  request ever crosses a thread of ours, which is what the batched design
 *  of the performance brief still paid for (a hand-off per request).
 *
 *  Not thread-safe: every function is called from the owning thread.
 *
 *  Routing rules: a call waits (parked) while its partition has no live
 *  primary or the node answers MOVED / STALE_EPOCH / NOT_READY; the backend
 *  fetches a fresh table and resends. A parked call that reaches its
 *  deadline fails UNAVAILABLE (it was never applied); a call sent to a node
 *  that stays silent past its deadline fails TIMEOUT (it may have been).
 *  MGET is addressed to a node, not a partition, and is never resent: any
 *  answer but OK (the refusal's table fetched as above), a node that is
 *  down or gone, fail it UNAVAILABLE at once; silence, TIMEOUT. Its
 *  caller reads the keys one by one instead.
 */
#ifndef KV_BACKEND_H
#define KV_BACKEND_H

#include <czmq.h>
#include <stdint.h>

#include "kv_msg.h"
#include "kv_table.h"

typedef enum {
    KV_CALL_GET,
    KV_CALL_SET,
    KV_CALL_RM,
    KV_CALL_IS,
    KV_CALL_CLEAR,      /* every node clears the partitions it is primary of */
    KV_CALL_SCAN,       /* one key-ordered page of one partition */
    KV_CALL_STATUS,     /* a table copy plus every node's STATS */
    KV_CALL_TABLE,      /* a table copy only */
    KV_CALL_JOIN,       /* invite the node at endpoint `key` (coordinator) */
    KV_CALL_LEAVE,      /* drain node id `key` (coordinator) */
    KV_CALL_TX_PREPARE, /* a transaction's keys of `partition` (kv_tx.h of the node) */
    KV_CALL_TX_COMMIT,  /* its commit point, at its record partition */
    KV_CALL_TX_FINISH,  /* apply its decision at `partition` */
    KV_CALL_MGET,       /* /mget's keys of one round at `node` (kv_mget.h) */
    KV_CALL_EXPIRE,     /* set (ttl > 0) or remove (ttl 0) an existing key's expiry */
} kv_call_op_t;

typedef enum {
    KV_CALL_OK,
    KV_CALL_NOT_FOUND,
    KV_CALL_UNAVAILABLE, /* no live owner in time; nothing was applied */
    KV_CALL_TIMEOUT,     /* the owner did not answer in time */
    KV_CALL_NO_MEMORY,   /* the owner is at its memory limit */
    KV_CALL_FAILED,      /* the node refused the request as malformed */
    KV_CALL_BAD_REQUEST, /* JOIN: not an endpoint the coordinator accepts */
    KV_CALL_CONFLICT,    /* SET, RM, TX_PREPARE: a condition does not hold; nothing written */
    KV_CALL_TX_ABORTED,  /* TX_*: gave way to another transaction; nothing written */
    KV_CALL_CONTENDED,   /* /mget: the keys kept changing, no snapshot in time (503) */
} kv_call_result_t;

/* One node's STATS answer, for KV_CALL_STATUS (indexed like table nodes). */
typedef struct {
    int answered;          /* the node replied in time */
    uint64_t keys;         /* keys it holds */
    uint64_t primary_keys; /* keys in partitions it is primary of */
    uint64_t memory;       /* bytes its store holds */
    uint64_t memory_limit; /* its cgroup memory limit, 0 when none */
    uint64_t max_memory;   /* its enforced limit (--max-memory), 0 when none */
    uint64_t used_memory;  /* bytes it accounts against that limit */
    uint8_t version;       /* wire version of its reply, to read counters with */
    uint8_t *counters;     /* its counters, as STATS_REPLY records (owned), or NULL */
    size_t counters_len;   /* bytes */
} kv_node_stats_t;

typedef struct _kv_call_t kv_call_t;
typedef void(kv_call_done_fn)(kv_call_t *call);

struct _kv_call_t {
    /* Set by the submitter. Pointed-to bytes must live until done. */
    kv_call_op_t op; /* what to do */
    const char *key; /* keyed ops */
    size_t klen;
    const char *value; /* SET */
    size_t vlen;
    int has_if_version;  /* SET, RM: apply only if the key's version is if_version */
    uint64_t if_version; /* 0: only if the key is absent */
    uint32_t ttl;        /* SET, EXPIRE: seconds to live (0: none) */
    uint32_t partition;  /* SCAN, TX_*: the partition addressed */
    uint64_t txid;       /* TX_*: the transaction */
    uint32_t record;     /* TX_PREPARE: its record partition */
    int commit;          /* TX_PREPARE: its only partition: apply at once */
    int wait;            /* TX_PREPARE: a reader, waiting for writers' commits */
    const uint8_t *ops;  /* TX_PREPARE: TXOP records */
    size_t ops_len;
    const uint8_t *ttls; /* TX_PREPARE: u32 seconds per op, or NULL */
    size_t ttls_len;
    uint8_t decision;     /* TX_FINISH: KV_STATUS_OK (commit) or KV_STATUS_TX_ABORTED */
    const uint8_t *items; /* TX_COMMIT: the other participants, as ITEM records */
    size_t items_len;
    uint16_t node;          /* MGET: the node addressed (a table index) */
    uint32_t count;         /* MGET: keys */
    const uint8_t *entries; /* MGET: count ENTRY records, the keys (empty values) */
    size_t entries_len;
    uint32_t limit; /* SCAN: entries wanted */
    int has_after;  /* SCAN: only keys after this one */
    const char *after;
    size_t alen;
    kv_call_done_fn *done; /* run on the backend thread when finished */
    void *arg;             /* for done */
    /* Set by the backend before done. */
    kv_call_result_t result; /* outcome */
    uint64_t version;        /* keyed ops: the key's version (SET: the new one) */
    uint64_t seq;            /* GET, IS: the partition's last removal (an absent key's witness) */
    uint64_t ttl_ms;         /* GET, IS: ms before the key expires, 0: never */
    zmq_msg_t reply;         /* GET, SCAN, TX_PREPARE, MGET: the reply (kv_call_reset frees) */
    kv_msg_t msg;            /* GET, SCAN, TX_PREPARE, MGET: decoded reply, pointing into reply */
    kv_table_t *table;       /* STATUS, TABLE: a copy (NULL without a table) */
    kv_node_stats_t *stats;  /* STATUS: kv_table_node_count(table) entries */
    /* Backend bookkeeping. */
    int64_t deadline;       /* mono ms after which the call fails */
    uint32_t pending;       /* replies still awaited (fan-out calls) */
    int sent;               /* some request left for a node */
    kv_call_t *next_parked; /* in the parked list, or the cluster calls list */
    uint64_t cluster_id;    /* JOIN, LEAVE: request id sent to the coordinator */
};

typedef struct {
    const char *coordinator;     /* coordinator ROUTER endpoint */
    const char *coordinator_pub; /* coordinator PUB endpoint */
    long timeout_ms;             /* per call */
} kv_backend_config_t;

typedef struct _kv_backend_t kv_backend_t;

/* Creates a backend for the calling thread and asks for the table. NULL
 * when a socket cannot be made or an endpoint is malformed. */
kv_backend_t *kv_backend_new(const kv_backend_config_t *config);

/* Fails calls still waiting (done runs for each, which resumes suspended
 * connections), closes the sockets; sets
 * *self_p to NULL. Safe on NULL. */
void kv_backend_destroy(kv_backend_t **self_p);

/* Prepares a call for use (zeroes it). */
void kv_call_init(kv_call_t *call);

/* Frees what a finished call holds (reply frame, table copy, stats) and
 * zeroes it for reuse. */
void kv_call_reset(kv_call_t *call);

/* Starts call. done may run before this returns (a table copy, a refusal).
 * Returns 0. */
int kv_backend_submit(kv_backend_t *self, kv_call_t *call);

/* Sends call's message (a TX_FINISH) to its partition's primary without
 * waiting for an answer: lost if there is no primary now. For decisions a
 * participant would also learn by itself (an abort, whose intents expire;
 * a record no longer needed). */
void kv_backend_notify(kv_backend_t *self, const kv_call_t *call);

/* Fills items (room for 2 + KV_MAX_NODES) with the sockets to poll;
 * returns how many. Call again when kv_backend_items_changed says so. */
int kv_backend_poll_items(kv_backend_t *self, zmq_pollitem_t *items);

/* True when the sockets changed since kv_backend_poll_items (new table). */
int kv_backend_items_changed(const kv_backend_t *self);

/* Milliseconds until the backend has timed work to do. */
long kv_backend_timeout(const kv_backend_t *self);

/* Drains the ready sockets among items (from kv_backend_poll_items, after
 * kv_poller_wait) and does the timed work: replies, tables, retries, expiry. */
void kv_backend_process(kv_backend_t *self, const zmq_pollitem_t *items, int count);

/* The live primary of partition in the current table, or KV_NO_NODE
 * (no table, none, or down). */
uint16_t kv_backend_primary_of(const kv_backend_t *self, uint32_t partition);

/* P of the cluster; 0 until the first table arrives. */
uint32_t kv_backend_partitions(const kv_backend_t *self);

#endif
