/*  kv_coord.h: the coordinator actor, owner of membership and routing.
 *
 *  Nodes register (HELLO) and heartbeat over the coordinator's ROUTER;
 *  gateways ask for the table there too (TABLE_REQ) and subscribe to its PUB
 *  socket, where every new table is published and the current one repeated
 *  every second for late subscribers.
 *
 *  The coordinator decides every route but is not a hop on the data path.
 *  It keeps no disk state: after a restart it adopts the newest table the
 *  nodes report in their HELLO (nodes it does not know are asked WHO, and
 *  answer with HELLO), so routing survives its restart unchanged.
 *
 *  Membership: partitions are first assigned once min_nodes nodes have
 *  registered; from then on kv_plan decides every change (joins, leaves,
 *  failures, balance) from the nodes' heartbeat reports, and each change is
 *  a new epoch. A node silent for node_timeout_ms is marked down and its
 *  partitions fail over to their replicas, but never before its primary
 *  lease has run out (node/kv_lease.h): every heartbeat is answered with a
 *  LEASE grant of lease_ms - margin, counted by the node from when it sent
 *  the heartbeat, and by us from when we received it plus lease_ms +
 *  margin, so a node cut off from us stops serving before anyone replaces
 *  it. A restarted coordinator promotes nothing for one lease period (it
 *  cannot know what its predecessor granted). /join invites a node (INVITE on
 *  its request socket); /leave and a node's own LEAVE (on SIGTERM) drain it.
 *  STATS answers its counters (STATS_REPLY), among them every message it
 *  received by type (kv_msg_counts.h), for tests to count.
 */
#ifndef KV_COORD_H
#define KV_COORD_H

#include <czmq.h>

typedef struct {
    const char *bind;      /* ROUTER endpoint to bind */
    const char *pub_bind;  /* PUB endpoint to bind */
    const char *advertise; /* ROUTER endpoint nodes connect to (sent on /join) */
    long partitions;       /* P, fixed for the cluster's life */
    long replication;      /* R */
    long min_nodes;        /* registrations needed before the first assignment */
    long node_timeout_ms;  /* silence after which a node is down */
    long max_moves;        /* partitions moving at once */
    long lease_ms;         /* primary lease granted per heartbeat; 0: leases off (tests) */
    long lease_margin_ms;  /* drift margin: taken off grants, added to our wait */
} kv_coord_config_t;

/* The actor body: start with kv_actor_start(kv_coord_actor, &config). */
void kv_coord_actor(zsock_t *pipe, void *args);

#endif
