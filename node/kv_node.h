/*  kv_node.h: the node actor, which owns partitions and serves them.
 *
 *  One czmq actor holds the node's whole state (store, routing table) and
 *  runs one loop (kv_poller) over three sockets, plus the replication
 *  engine's (kv_repl.h: a SUB, and a DEALER per peer while a snapshot is
 *  awaited):
 *    - ROUTER (bind): requests from gateways, answered in arrival order;
 *      drained in batches per wake-up so one poll serves many requests;
 *    - DEALER (connect): registration, heartbeats and tables to and from the
 *      coordinator;
 *    - PUB (bind): replication stream of the partitions it is primary of.
 *  A request for a partition the node is not primary of at its epoch gets
 *  MOVED; one carrying a newer epoch than the node's gets STALE_EPOCH and
 *  makes the node ask the coordinator for the table. A primary whose lease
 *  from the coordinator has run out (kv_lease.h) answers NO_LEASE and
 *  writes nothing: it may have been replaced by now. Either way the gateway
 *  refreshes its table and retries, so ownership can change under traffic.
 *
 *  Start with kv_actor_start(kv_node_actor, &config), which returns once the
 *  sockets are bound, or NULL when they could not be. Stop with
 *  zactor_destroy. Send "DRAIN" to have the node hand its partitions to the
 *  others first; the actor sends "LEFT" on its pipe once it owns nothing
 *  (after a drain, or a /leave), and the owner then destroys it.
 */
#ifndef KV_NODE_H
#define KV_NODE_H

#include <czmq.h>

typedef struct {
    const char *id;            /* unique node id */
    const char *bind;          /* ROUTER endpoint to bind for requests */
    const char *advertise;     /* ROUTER endpoint others connect to */
    const char *pub_bind;      /* PUB endpoint to bind for replication */
    const char *pub_advertise; /* PUB endpoint others connect to */
    const char *coordinator;   /* coordinator ROUTER endpoint; "" waits for /join */
    long heartbeat_ms;         /* heartbeat period */
    long write_acks;           /* replica confirmations per write */
    long repl_hwm;             /* replication PUB/SUB high-water mark */
    long drain_timeout_ms;     /* longest wait for a drain on SIGTERM */
    long leases;               /* 1: serve as primary only under a lease (kv_lease.h); 0: tests */
    long clock_offset_ms;      /* tests: added to the wall clock expiry uses (a skewed clock) */
    uint64_t max_memory;       /* bytes the node may account (docs/memory.md), 0: no limit */
    int eviction;              /* kv_evict_policy_t: what a full node gives up (--eviction) */
} kv_node_config_t;

/* The actor body; args is a kv_node_config_t * read before the handshake. */
void kv_node_actor(zsock_t *pipe, void *args);

#endif
