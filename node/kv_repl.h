/*  kv_repl.h: a node's replication engine (primary and replica sides).
 *
 *  The protocol, per partition (the ZeroMQ Guide's Clone pattern, with
 *  per-partition sequences, gap detection and epochs added):
 *
 *  - The primary numbers every change of the partition (seq, one sequence
 *    per partition that continues across primaries), applies it, and
 *    publishes UPDATE on its PUB socket with the partition as topic. A write
 *    (SET, RM, CLEAR) is acknowledged to the gateway only once write_acks
 *    replicas (capped at R-1) have confirmed it with ACK; with fewer live
 *    replicas than that in the table it is refused UNAVAILABLE before it is
 *    applied. Every 100 ms the primary publishes a BEACON with the latest
 *    seq of each of its partitions, so an idle replica also learns when it
 *    is behind.
 *  - A replica (or learner) subscribes to the partition's topic, then asks
 *    the primary for a SNAPSHOT (the partition at exactly one seq, sent in
 *    chunks within one turn of the primary's loop, so nothing interleaves;
 *    requests queue and are served a few milliseconds' worth per turn, and
 *    chunks are applied the same way, so heartbeats are never starved),
 *    buffers the updates that arrive meanwhile, applies the snapshot, drops
 *    buffered updates at or below its seq and applies the rest. It applies
 *    updates strictly in order: seq != applied + 1, a beacon ahead of it, or
 *    one behind it (it holds writes the primary never had) means resync:
 *    a new snapshot. It acknowledges what it applied (ACK, batched per wake
 *    up) and only accepts updates from the node its table names primary.
 *  - Roles come from the routing table (kv_repl_on_table); each partition's
 *    role is a named state changed in one place (kv_repl_role.c), counted
 *    in the node's registry (config.counters). A replica that
 *    becomes primary continues the sequence from what it applied; a primary
 *    that is demoted drops the partition and resyncs from the new primary
 *    (it may hold writes nobody acknowledged); a node that loses a partition
 *    drops its data.
 *  - Hand-off (kv_plan.h): when the table fences a partition, the primary
 *    refuses writes (MOVED; the gateway retries) and publishes FENCE with its
 *    last seq: the end of its stream. A learner that has applied up to there
 *    reports ready; the coordinator then makes it primary.
 *  - Fencing of a stale primary: a primary frozen and replaced keeps its old
 *    table for a moment after it wakes, but the replicas follow the new
 *    table, refuse its updates and never ACK them, so none of its writes is
 *    acknowledged; its next table demotes it.
 */
#ifndef KV_REPL_H
#define KV_REPL_H

#include <czmq.h>

#include "kv_counters.h"
#include "kv_lease.h"
#include "kv_msg.h"
#include "kv_store.h"
#include "kv_table.h"

typedef struct _kv_repl_t kv_repl_t;

typedef struct {
    const char *node_id;     /* for logs */
    void *router;            /* the node's request socket: replies go out there */
    void *pub;               /* the node's bound PUB socket */
    long write_acks;         /* replica confirmations a write needs (capped at R-1) */
    long hwm;                /* PUB high-water mark (tests make it tiny) */
    kv_counters_t *counters; /* the node's registry (borrowed; may be NULL): role
                                transitions, resyncs, snapshots */
    const kv_lease_t *lease; /* the node's lease, checked as held reads are answered */
    uint64_t max_memory;     /* the node's memory limit (docs/memory.md), 0: none */
    int eviction;            /* kv_evict_policy_t: what a full node gives up (--eviction) */
} kv_repl_config_t;

/* Creates the engine for store (borrowed, P partitions). NULL on failure. */
kv_repl_t *kv_repl_new(const kv_repl_config_t *config, kv_store_t *store, uint32_t partitions);

/* Frees it; pending writes are dropped unanswered. Sets *self_p to NULL. */
void kv_repl_destroy(kv_repl_t **self_p);

/* Applies a new routing table (borrowed until the next call): role changes,
 * subscriptions, snapshots, peers. self is our index in it. Returns 1 when
 * the sockets to poll changed. */
int kv_repl_on_table(kv_repl_t *self, const kv_table_t *table, int node);

/* Serves a SET or RM the caller routed to us as primary: applies,
 * replicates, and replies now or once replicas confirm. */
void kv_repl_write(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* A read (GET or IS) of a partition we are primary of, answered with the
 * entry's version. Answered from the store now when every write applied
 * there is confirmed by the replicas a write needs; otherwise held and
 * answered once the writes applied before it are confirmed, or refused
 * (MOVED when the role changes or the partition is fenced, UNAVAILABLE
 * after KV_HOLD_MS), so no client ever reads a write that a failover could
 * still lose. A conditional write whose condition fails is answered
 * CONFLICT with the key's version the same way. The lease is checked as
 * the answer leaves, not when the request arrived. */
void kv_repl_read(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* /mget's reads at this node (MGET: keys validated by the caller, of
 * partitions the caller found us primary of): answered all at once from
 * the store, MGET_REPLY, only when each could be answered now as a GET
 * (kv_repl_read): every write applied to its partition confirmed, no
 * transaction about to write it, the lease valid. Otherwise nothing is
 * held: the answer is a REPLY, LOCKED (some key would wait: the gateway
 * reads these keys one by one), MOVED, or NO_LEASE. */
void kv_repl_mget(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* Eviction (--eviction, docs/eviction.md): as primary of each partition it
 * evicts from, removes keys the policy picks (approximate LRU by sampling,
 * or nearest deadline), each a replicated RM like any (its own seq,
 * published, counted in kv_node_evicted_keys_total), until bytes bytes of
 * entries are freed or nothing evictable is left: noeviction, no key the
 * policy takes in a partition we are primary of (not fenced), or only keys
 * a transaction holds. Evicts from one partition at a time and compacts
 * it after (kv_store_compact), so the store's memory drops at once.
 * Returns the bytes freed (kv_entry_bytes of the keys removed); fewer than
 * bytes means nothing evictable is left. */
size_t kv_repl_evict(kv_repl_t *self, size_t bytes);

/* Serves CLEAR for every partition we are primary of. */
void kv_repl_clear(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* Handles ACK and SNAPSHOT_REQ arriving on the request socket. */
void kv_repl_on_ack(kv_repl_t *self, const kv_msg_t *ack);
void kv_repl_on_snapshot_req(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* True when queued work (snapshots to serve) waits: poll without sleeping. */
int kv_repl_busy(const kv_repl_t *self);

/* True when the partition refuses writes (fenced for a hand-off). */
int kv_repl_is_fenced(const kv_repl_t *self, uint32_t partition);

/* Fills items (room for KV_MAX_NODES + 1) with the sockets to poll. */
int kv_repl_poll_items(kv_repl_t *self, zmq_pollitem_t *items);

/* True when kv_repl_poll_items would now give other sockets (call it again). */
int kv_repl_items_changed(const kv_repl_t *self);

/* Drains whatever is readable on the items kv_repl_poll_items gave. */
void kv_repl_on_readable(kv_repl_t *self, const zmq_pollitem_t *items, int count);

/* Periodic work: beacons, snapshot retries, expiry, and queued snapshots
 * served within a time budget. Call every wake-up. */
void kv_repl_tick(kv_repl_t *self);

/* The per-partition report for a heartbeat: a malloc'd blob of
 * KV_MSG_REPORT_SIZE records (caller frees), its length in *len. */
uint8_t *kv_repl_reports(kv_repl_t *self, size_t *len);

/* True when a report changed since the last kv_repl_reports (send one
 * early: the coordinator waits for it to move partitions). */
int kv_repl_reports_dirty(const kv_repl_t *self);

/* Replies REPLY(req_id, status, value, version) to the gateway behind
 * identity. */
void kv_repl_reply(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id, kv_status_t status,
                   const char *value, size_t vlen, uint64_t version);

/* Sends reply (a REPLY; its epoch is set here) to the gateway behind
 * identity. */
void kv_repl_send_reply(kv_repl_t *self, zmq_msg_t *identity, kv_msg_t *reply);

/* Sends an encoded frame to the peer behind identity. */
void kv_repl_send_frame(kv_repl_t *self, zmq_msg_t *identity, const uint8_t *frame, size_t size);

/* Memory (docs/memory.md). The bytes of the engine's own queues: reads
 * held, writes awaiting confirmation, snapshots asked of us, updates
 * buffered while a snapshot arrives (kept as they change: no walk). */
size_t kv_repl_buffer_bytes(const kv_repl_t *self);

/* Every byte the node accounts against config.max_memory: the store, the
 * engine's queues, and the frames libzmq holds (kv_mem_frame_bytes). No
 * walk: asked per write. Our ACKs report the room it leaves to the
 * primaries we follow (every KV_ROOM_MS at least). */
uint64_t kv_repl_used_memory(const kv_repl_t *self);

/* Whether every other copy of partition (its replicas and learner, as the
 * table names them) has room for grow more bytes, as their last ACKs said
 * less what we sent them since: 0, and the bytes are counted against
 * them; -1 when one has not (the write must be refused: only primaries
 * decide, so the stream must never push a replica past its limit). A
 * write that does not grow (grow <= 0) always passes. */
int kv_repl_room_take(kv_repl_t *self, uint32_t partition, int64_t grow);

/* Transactions (kv_repl_tx.c, protocol in kv_tx.h): the requests of a
 * partition we are primary of (checked by the caller, not fenced), and a
 * FINISH that came back on a peer socket (an answer to our RESOLVE:
 * identity NULL, nothing answered). */
void kv_repl_tx_prepare(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);
void kv_repl_tx_commit(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);
void kv_repl_tx_finish(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);
void kv_repl_tx_resolve(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req);

/* Whether a plain request on key must wait (LOCKED) for a transaction: a
 * write while any transaction holds the key, a read while one will write
 * it. */
int kv_repl_tx_locked(kv_repl_t *self, uint32_t partition, const char *key, size_t klen, int write);

#endif
