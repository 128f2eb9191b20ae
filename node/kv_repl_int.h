/*  kv_repl_int.h: what the files of the replication engine share (private).
 *
 *  The engine (kv_repl.h) is one object split by side: kv_repl.c holds its
 *  life cycle, the public entry points and the shared helpers below;
 *  kv_repl_primary.c the primary side (writes, confirmations, snapshots
 *  served, beacons); kv_repl_replica.c the replica side (updates applied,
 *  snapshots asked and applied, ACKs); kv_repl_role.c the role a node holds
 *  for each partition and how a new table changes it. Nothing outside
 *  node/kv_repl*.c includes this header.
 */
#ifndef KV_REPL_INT_H
#define KV_REPL_INT_H

#include "kv_repl.h"

#include "kv_counters.h"
#include "kv_evict.h"
#include "kv_limits.h"
#include "kv_mem.h"
#include "kv_peers.h"

#define KV_BEACON_MS 100                   /* primary beacon period */
#define KV_SNAPSHOT_RETRY_MS 2000          /* re-ask a snapshot after this silence */
#define KV_WORK_BUDGET_US 5000             /* snapshot work per wake-up: heartbeats go on */
#define KV_SNAPSHOT_CHUNK 2048             /* entries per SNAPSHOT frame */
#define KV_PENDING_EXPIRY_MS 10000         /* forget unconfirmed writes after this */
#define KV_HOLD_MS 1000                    /* a read held this long is refused (503) */
#define KV_BUFFER_MAX 100000               /* updates buffered during a snapshot */
#define KV_BUFFER_BYTES_MAX (64u << 20)    /* ... and their bytes, all partitions together */
#define KV_SNAPSHOT_BYTES_MAX (32u << 20)  /* snapshot chunks in libzmq before we serve more */
#define KV_ROOM_MS 100                     /* a replica with a limit reports its room this often */
#define KV_DRAIN_BATCH 4096                /* frames per socket per wake-up */
#define KV_SCAN_MS 20                      /* period of the per-partition housekeeping walk */
#define KV_ACKERS (KV_REPLICATION_MAX + 1) /* replicas + a learner */
#define KV_UPDATE_MAX (KV_MAX_KEY_BYTES + KV_MAX_VALUE_BYTES + 128) /* room for intents */

/* The replication role of one partition on this node (kv_repl_role.c has
 * the transitions). A replica or learner starts SYNCING (snapshot asked, not
 * applied yet), then follows the stream live; a learner of a fenced
 * partition that applied the stream to its end is READY to take over. */
typedef enum {
    KV_REPL_NONE,    /* not ours: no data */
    KV_REPL_SYNCING, /* replica or learner waiting for a snapshot */
    KV_REPL_REPLICA, /* replica following the primary's stream */
    KV_REPL_LEARNER, /* learner following the stream (a hand-off target) */
    KV_REPL_READY,   /* learner that applied the fenced stream to its end */
    KV_REPL_PRIMARY, /* primary taking writes */
    KV_REPL_FENCED,  /* primary refusing writes: handing the partition over */
    KV_REPL_STATES   /* count */
} kv_repl_state_t;

/* What makes a partition's role change. */
typedef enum {
    KV_REPL_EV_PRIMARY, /* the table makes us primary, not fenced */
    KV_REPL_EV_FENCE,   /* the table makes us primary, fenced */
    KV_REPL_EV_FOLLOW,  /* the table makes us replica or learner */
    KV_REPL_EV_RETABLE, /* the table changed whether we are the learner */
    KV_REPL_EV_DROP,    /* the table takes the partition from us */
    KV_REPL_EV_RESYNC,  /* a snapshot is asked: the stream cannot be trusted */
    KV_REPL_EV_SYNCED,  /* the snapshot is applied */
    KV_REPL_EV_END,     /* a learner applied the fenced stream to its end */
    KV_REPL_EVENTS      /* count */
} kv_repl_event_t;

/* One write waiting for replica confirmations. CLEAR shares one group. */
typedef struct _kv_repl_group_t {
    zmq_msg_t identity; /* the gateway to answer */
    uint64_t req_id;    /* its request; 0: answer nothing */
    uint64_t version;   /* a SET: the version it gave the key, answered */
    uint32_t waiting;   /* writes still unconfirmed */
    uint8_t *frame;     /* a transaction's answer, encoded (owned), sent instead */
    size_t frame_len;   /* its bytes */
} kv_repl_group_t;

typedef struct _kv_repl_pending_t {
    struct _kv_repl_pending_t *next; /* FIFO by seq */
    uint64_t seq;                    /* confirmed once replicas applied this */
    int64_t since;                   /* mono ms, for expiry */
    kv_repl_group_t *group;          /* the reply it is part of */
    uint64_t key_hash;               /* kv_hash64 of the key it wrote */
    int any_key;                     /* a /clear: it wrote every key */
} kv_repl_pending_t;

/* A read waiting until the writes applied before it are confirmed. */
typedef struct _kv_repl_held_t {
    struct _kv_repl_held_t *next; /* FIFO by wait_seq */
    zmq_msg_t identity;           /* the gateway to answer */
    uint64_t req_id;              /* its request */
    uint64_t wait_seq;            /* answerable once this seq is confirmed */
    int64_t since;                /* mono ms, for expiry */
    uint8_t type;                 /* KV_MSG_GET or KV_MSG_IS; SET or RM: a decided answer */
    uint8_t status;               /* a decided answer: CONFLICT, or NOT_FOUND (RM found nothing) */
    uint64_t version;             /* a conflict: the key's version when it was decided */
    uint8_t *frame;               /* a transaction's decided answer, encoded (owned), or NULL */
    size_t frame_len;             /* its bytes */
    uint16_t klen;                /* key bytes */
    char key[KV_MAX_KEY_BYTES];   /* the key */
} kv_repl_held_t;

/* A snapshot asked of us, served when the loop has time. */
typedef struct _kv_repl_job_t {
    struct _kv_repl_job_t *next;
    zmq_msg_t identity; /* the replica's DEALER */
    uint64_t req_id;    /* its latest request */
    uint32_t partition;
} kv_repl_job_t;

/* An update received while a snapshot is on its way. */
typedef struct _kv_repl_buffered_t {
    struct _kv_repl_buffered_t *next;
    size_t len;
    uint8_t data[];
} kv_repl_buffered_t;

/* A commit record no gateway forgot (kv_repl_tx.c's sweep): its
 * participants were each sent a FINISH; the record goes once all said OK. */
#define KV_TX_SWEEPS 64
typedef struct {
    uint64_t req_id;  /* of the FINISHes sent; 0: slot free */
    uint64_t txid;    /* the transaction */
    uint32_t record;  /* its record partition */
    uint32_t waiting; /* participants that have not answered OK */
    int64_t sent;     /* mono ms: unanswered after a while, the slot is reused */
} kv_repl_sweep_t;

/* What this node holds of one partition. */
typedef struct {
    uint8_t state;                             /* kv_repl_state_t */
    uint8_t learner;                           /* replica: the table names us learner */
    uint8_t full;                              /* follower: its snapshot did not fit our
                                                  limit: holds none of it, asks no more */
    uint16_t heir;                             /* primary, fenced: the learner taking over */
    uint16_t primary;                          /* replica: the node we follow */
    uint64_t seq;                              /* primary: last assigned; replica: applied */
    uint64_t snap_req;                         /* snapshot request in progress, 0 when none */
    uint32_t snap_chunk;                       /* next chunk expected */
    int64_t snap_asked;                        /* mono ms of the request */
    kv_repl_buffered_t *buffer, *buffer_tail;  /* updates held during a snapshot */
    uint32_t buffered;                         /* their count */
    kv_repl_pending_t *pending, *pending_tail; /* writes awaiting confirmation */
    uint64_t confirmed;                        /* primary: highest seq replicas confirmed */
    uint64_t removed_seq;                      /* primary: seq of the last RM or CLEAR */
    kv_repl_held_t *held, *held_tail;          /* primary: reads waiting for confirmed */
    kv_repl_held_t *locked, *locked_tail;      /* primary: reads waiting for a commit */
    uint16_t acker[KV_ACKERS];                 /* nodes that confirmed, KV_NO_NODE free */
    uint64_t acked[KV_ACKERS];                 /* the highest seq each confirmed */
    uint8_t dirty;                             /* replica: applied, not yet acknowledged */
} kv_repl_part_t;

struct _kv_repl_t {
    kv_repl_config_t config; /* settings */
    kv_store_t *store;       /* the data (borrowed) */
    uint32_t partitions;     /* P */
    kv_repl_part_t *parts;   /* P entries */
    kv_table_t *table;       /* copy of the current table */
    int self;                /* our index in it, -1 when absent */
    zsock_t *sub;            /* updates and beacons of the primaries we follow */
    kv_peers_t *peers;       /* DEALER to each node: ACK, SNAPSHOT_REQ */
    char subscribed_to[KV_MAX_NODES][KV_ENDPOINT_MAX + 1]; /* SUB connections */
    uint64_t next_req;                                     /* snapshot request ids */
    int64_t next_beacon;                                   /* mono ms */
    int64_t next_scan;        /* mono ms of the next walk over all partitions */
    int reports_dirty;        /* a report changed since the last heartbeat */
    uint32_t *dirty_list;     /* partitions with unacknowledged applies */
    uint32_t dirty_count;     /* entries in dirty_list */
    kv_repl_job_t *jobs;      /* snapshots to serve, FIFO */
    kv_repl_job_t *jobs_tail; /* last of them */
    int want_peers;           /* poll the peer sockets: a snapshot may come */
    int items_changed;        /* want_peers changed since kv_repl_poll_items */
    size_t count_transitions; /* counter handles in config.counters */
    size_t count_illegal;
    size_t count_state[KV_REPL_STATES];
    size_t count_resyncs;
    size_t count_resyncs_gap;    /* ... on a gap in the update stream */
    size_t count_resyncs_behind; /* ... behind a beacon */
    size_t count_snapshots_served;
    size_t count_snapshots_applied;
    size_t count_snapshots_full; /* snapshots given up: they did not fit the memory limit */
    int64_t next_tx_walk;        /* mono ms of the next walk over transaction intents */
    int64_t tx_asking_until;     /* mono ms: answers to our RESOLVEs may come until then */
    size_t count_tx[9];          /* transaction counters (kv_repl_tx.c) */
    size_t count_expired;        /* keys removed by expiry (kv_repl_ttl.c) */
    int64_t next_ttl;            /* mono ms of the next look for due deadlines */
    int ttl_backlog;             /* deadlines were left due: look again at once */
    uint32_t ttl_cursor;         /* the partition the next look starts at */
    size_t count_refused;        /* writes refused for memory (507) */
    size_t count_refused_copy;   /* ... because a replica or learner had no room */
    kv_evict_t *evict;           /* the eviction policy's picker (kv_repl_evict.c) */
    size_t count_evicted;        /* keys evicted to make room */
    kv_repl_sweep_t tx_sweeps[KV_TX_SWEEPS]; /* records being swept */
    size_t buffer_bytes;                     /* held reads, pending writes, snapshot jobs,
                                                buffered updates (kv_repl_buffer_bytes) */
    int64_t next_room;                       /* mono ms of the next room report */
    int trim_due;                            /* partitions were compacted at the limit */
    int64_t next_trim;                       /* mono ms: no kv_mem_trim before */
    size_t count_trims;                      /* kv_mem_trim calls */
    uint64_t room_of[KV_MAX_NODES];          /* primary side: each node's last room, less what
                                                we sent it since; KV_MEM_NO_LIMIT: none known */
};

/* Whether a partition is ours as primary (fenced or not), as replica or
 * learner (in sync or not), or as an in-sync replica or learner. */
static inline int kv_repl_is_primary(const kv_repl_part_t *part) {
    return part->state == KV_REPL_PRIMARY || part->state == KV_REPL_FENCED;
}

static inline int kv_repl_is_follower(const kv_repl_part_t *part) {
    return part->state >= KV_REPL_SYNCING && part->state <= KV_REPL_READY;
}

static inline int kv_repl_is_live(const kv_repl_part_t *part) {
    return part->state >= KV_REPL_REPLICA && part->state <= KV_REPL_READY;
}

/* --- eviction (kv_repl_evict.c) ------------------------------------------- */

/* Creates the picker for config.eviction and registers the counter.
 * Returns 0, or -1 when out of memory. */
int kv_repl_evict_init(kv_repl_t *self);

/* Frees the picker. */
void kv_repl_evict_destroy(kv_repl_t *self);

/* Makes room for a write of grow bytes to partition, whose copies
 * (kv_repl_copies) are copies, by evicting (the policy's victims, as
 * replicated removals) wherever kv_repl_lacking finds none: for our own
 * room, from any partition we are primary of; for a copy's, from those it
 * holds a copy of; never from partition itself (the write has checked its
 * conditions there). Evicts a batch from one partition at a time, compacts
 * it at once and credits its copies' room with what they will free.
 * Returns -1 when every node has room (at once, or once evicted), else
 * the node still lacking it (noeviction, or nothing evictable left). */
int kv_repl_evict_room(kv_repl_t *self, uint32_t partition, int64_t grow, const uint16_t *copies,
                       size_t count);

/* --- memory at the limit (kv_repl.c) ---------------------------------------- */

#define KV_REPL_TIGHT_SHARE 16 /* a node is near its limit with less room than limit / this */
#define KV_REPL_RECLAIM_SHARE                                                                      \
    32                         /* ... where it compacts a partition whose garbage passes its       \
                                  memory / this (a small one: at once) */
#define KV_REPL_EVICT_SHARE 16 /* an eviction batch frees a partition's memory / this */
#define KV_REPL_EVICT_FOCUS                                                                        \
    64                            /* a batch goes on in its first victim's partition when it       \
                                     holds this many keys (fewer: 5 samples of so few make         \
                                     poor victims; each victim is the node's best then) */
#define KV_REPL_EVICT_ROUNDS 1024 /* batches one write may evict before it is refused */
#define KV_REPL_EVICT_IDLE 4      /* ... or batches in a row that found nothing */

/* The copies of partition (replicas and learner; KV_MAX_NODES where none)
 * in copies (room for KV_REPLICATION_MAX + 1). Returns how many. */
size_t kv_repl_copies(const kv_repl_t *self, uint32_t partition, uint16_t *copies);

/* The node without room for grow more bytes: ourselves first, then the
 * first of copies (by their last reports); -1 when all have it. Sets *lack
 * (may be NULL) to the bytes it lacks. */
int kv_repl_lacking(const kv_repl_t *self, int64_t grow, const uint16_t *copies, size_t count,
                    uint64_t *lack);

/* After a removal from partition: near the limit (any role), compacts it
 * when its garbage has passed its share, so what was removed is given back
 * now rather than when the dict's own compaction starts (a quarter). */
void kv_repl_reclaim(kv_repl_t *self, uint32_t partition);

/* --- expiry (kv_repl_ttl.c) ---------------------------------------------- */

/* Milliseconds before entry (not expired) expires, at least 1; 0 when it
 * never does. */
uint64_t kv_repl_ttl_left(const kv_repl_t *self, const kv_entry_t *entry);

/* Removes, as primary, expired entries that are due, within a time budget. */
void kv_repl_ttl_tick(kv_repl_t *self);

/* Registers the expiry counter in config.counters. */
void kv_repl_ttl_register_counters(kv_repl_t *self);

/* --- shared helpers (kv_repl.c) ------------------------------------------ */

/* The room config.max_memory leaves (KV_MEM_NO_LIMIT: none). */
uint64_t kv_repl_room(const kv_repl_t *self);

/* The epoch of our table, 0 before the first. */
uint64_t kv_repl_epoch(const kv_repl_t *self);

/* msg (a reply, its epoch set here) encoded in a malloc'd frame of *len
 * bytes; NULL when out of memory. */
uint8_t *kv_repl_encode(kv_repl_t *self, kv_msg_t *msg, size_t *len);

/* True when node is in the table and neither DOWN nor LEFT. */
int kv_repl_usable(const kv_repl_t *self, uint16_t node);

/* The 4-byte PUB topic of partition (or KV_TOPIC_BEACON). */
void kv_repl_topic(uint32_t partition, uint8_t topic[4]);

/* Subscribes to (on) or unsubscribes from partition's updates. */
void kv_repl_subscribe(kv_repl_t *self, uint32_t partition, int on);

/* A partition report changed: the next heartbeat goes early. */
void kv_repl_report_changed(kv_repl_t *self);

/* Polls the peer DEALERs (want) or not. */
void kv_repl_want_peers(kv_repl_t *self, int want);

/* --- primary side (kv_repl_primary.c) ------------------------------------ */

void kv_repl_primary_write(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);
void kv_repl_primary_clear(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);
void kv_repl_primary_on_ack(kv_repl_t *self, const kv_msg_t *ack);

/* Queues a snapshot request (served by kv_repl_primary_serve_jobs). */
void kv_repl_primary_queue_snapshot(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* Serves queued snapshots until budget_us is spent (one at least). */
void kv_repl_primary_serve_jobs(kv_repl_t *self, int64_t budget_us);

/* Drops every queued snapshot unserved. */
void kv_repl_primary_drop_jobs(kv_repl_t *self);

/* Publishes a BEACON when one is due. */
void kv_repl_primary_beacon(kv_repl_t *self);

/* Publishes one UPDATE (or FENCE mark) of partition. */
void kv_repl_primary_publish(kv_repl_t *self, uint32_t partition, uint8_t op, uint64_t seq,
                             kv_bytes_t key, kv_bytes_t value);

/* Removes key (not a transaction's) as the partition's primary, on its
 * own decision: a write like any RM (its own seq, the partition's last
 * removal), published, confirmed by the replicas' ordinary ACKs, with no
 * one to answer. Expiry and eviction remove keys so. */
void kv_repl_primary_remove(kv_repl_t *self, uint32_t partition, const char *key, size_t klen);

/* Whether partition has enough live replicas for a safe write. */
int kv_repl_can_write(const kv_repl_t *self, uint32_t partition);

/* Publishes an UPDATE whose entry gets meta: its version (a transaction's
 * write carries the version its prepare gave it, not the seq it lands at)
 * and its expiry. */
void kv_repl_primary_publish_meta(kv_repl_t *self, uint32_t partition, uint8_t op, uint64_t seq,
                                  kv_bytes_t key, kv_bytes_t value, kv_msg_meta_t meta);

/* A reply sent once several writes are confirmed: begin (frame: an
 * encoded answer, owned by the group, or NULL for a plain OK; identity
 * NULL or req_id 0: nothing answered), one kv_repl_group_write per write
 * published, then end. NULL when out of memory (then nothing is answered:
 * the gateway says 504, which is the truth). */
kv_repl_group_t *kv_repl_group_begin(zmq_msg_t *identity, uint64_t req_id, uint8_t *frame,
                                     size_t frame_len);
void kv_repl_group_write(kv_repl_t *self, kv_repl_part_t *part, kv_repl_group_t *group,
                         uint64_t seq, kv_bytes_t key);
void kv_repl_group_end(kv_repl_t *self, kv_repl_group_t *group);

/* Answers what (a read, or an answer decided now: status and version, or
 * an encoded frame, which it takes) at once when every write applied to
 * partition so far is confirmed, else once they are. */
void kv_repl_answer_or_hold(kv_repl_t *self, zmq_msg_t *identity, uint32_t partition,
                            uint64_t req_id, kv_repl_held_t *what);

/* Intents of partition were removed: the reads waiting for them go on
 * (answered once what they see is confirmed). */
void kv_repl_primary_unlocked(kv_repl_t *self, uint32_t partition);

/* Queues what (a read, or a reader's TX_PREPARE as its encoded frame, then
 * taken) until partition's intents change. 0, or -1 when out of memory. */
int kv_repl_primary_wait_unlock(kv_repl_t *self, zmq_msg_t *identity, uint32_t partition,
                                uint64_t req_id, const kv_repl_held_t *what);

/* Transactions: the periodic walk over intents, and counter registration. */
void kv_repl_tx_tick(kv_repl_t *self);

/* A REPLY that came back on a peer socket: a participant's answer to a
 * sweep's FINISH. */
void kv_repl_tx_on_reply(kv_repl_t *self, const kv_msg_t *reply);
void kv_repl_tx_register_counters(kv_repl_t *self);

/* Answers the pending writes up to seq (confirmed) or drops them all
 * unanswered (not confirmed). */
void kv_repl_primary_release(kv_repl_t *self, kv_repl_part_t *part, uint64_t seq, int confirmed);

/* Answers every held read with status (a kv_status_t), or frees them
 * unanswered when status is negative. For a role change: MOVED. */
void kv_repl_primary_refuse_held(kv_repl_t *self, kv_repl_part_t *part, int status);

/* Forgets pending writes older than KV_PENDING_EXPIRY_MS and refuses reads
 * held longer than KV_HOLD_MS. */
void kv_repl_primary_expire(kv_repl_t *self, kv_repl_part_t *part, int64_t now);

/* --- replica side (kv_repl_replica.c) ------------------------------------ */

/* Frees the updates buffered during a snapshot. */
void kv_repl_replica_buffer_clear(kv_repl_t *self, kv_repl_part_t *part);

/* Has the next ACKs to every primary we follow carry our room (a replica
 * with a memory limit, every KV_ROOM_MS). */
void kv_repl_replica_report_room(kv_repl_t *self);

/* Asks partition's primary for a snapshot (not live until it is applied). */
void kv_repl_replica_ask_snapshot(kv_repl_t *self, uint32_t partition);

/* Sends one ACK per primary for the partitions applied since the last. */
void kv_repl_replica_flush_acks(kv_repl_t *self);

/* Drains updates and beacons from the SUB socket. */
void kv_repl_replica_drain_sub(kv_repl_t *self);

/* Drains snapshot chunks from one peer DEALER, within a time budget. */
void kv_repl_replica_drain_peer(kv_repl_t *self, void *handle);

/* --- roles (kv_repl_role.c) ---------------------------------------------- */

/* Sets each partition's role from table (our index node, -1 if absent). */
void kv_repl_role_apply_table(kv_repl_t *self, const kv_table_t *table, int node);

/* Resets a partition to no role (its state must be NONE already, or the
 * engine is being created). */
void kv_repl_role_reset(kv_repl_part_t *part);

/* The one place a partition's state changes: applies event to it, logs the
 * transition at debug level and counts it. An event not legal in the
 * current state changes nothing: it is logged at error level, counted
 * (kv_repl_illegal_transitions_total) and asserted in debug builds.
 * Returns 0, or -1 for an illegal event. */
int kv_repl_role_execute(kv_repl_t *self, uint32_t partition, kv_repl_event_t event);

/* The state's and the event's names, for logs. */
const char *kv_repl_state_name(kv_repl_state_t state);
const char *kv_repl_event_name(kv_repl_event_t event);

/* Registers the engine's counters in config.counters (none when NULL). */
void kv_repl_role_register_counters(kv_repl_t *self);

#endif
