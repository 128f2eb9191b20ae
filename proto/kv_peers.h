/*  kv_peers.h: one DEALER socket per node of the routing table.
 *
 *  Gateways talk to every node, and nodes to each other (acks and snapshot
 *  requests go to the primary's request socket). Both keep one DEALER per
 *  table node, indexed like the table, reconnected only when a node's
 *  endpoint changes, so a new table never costs a reconnect storm.
 */
#ifndef KV_PEERS_H
#define KV_PEERS_H

#include <czmq.h>

#include "kv_table.h"

typedef struct _kv_peers_t kv_peers_t;

/* An empty set; skip is a node index never connected (ourselves), or
 * KV_NO_NODE. NULL when out of memory. */
kv_peers_t *kv_peers_new(uint16_t skip);

/* Closes every socket; sets *self_p to NULL. Safe on NULL. */
void kv_peers_destroy(kv_peers_t **self_p);

/* Connects to the nodes of table (and disconnects from nodes no longer in
 * it, or that are LEFT). Returns 1 when the set of sockets changed (poll
 * items must be rebuilt), else 0. */
int kv_peers_update(kv_peers_t *self, const kv_table_t *table);

/* The socket for node index, or NULL. */
zsock_t *kv_peers_socket(kv_peers_t *self, uint16_t node);

/* Sends one frame to node without blocking. Returns 0, or -1 when there is
 * no socket or the frame could not be queued. */
int kv_peers_send(kv_peers_t *self, uint16_t node, const void *data, size_t size);

/* Appends a ZMQ_POLLIN item per socket to items (room for KV_MAX_NODES)
 * and the node index of each to nodes. Returns the number appended. */
int kv_peers_poll_items(kv_peers_t *self, zmq_pollitem_t *items, uint16_t *nodes);

/* Turns on ZMTP heartbeats on a connecting socket: a peer that vanished
 * (or came back at another address, as containers and pods do) is noticed
 * within seconds and the connection re-made, re-resolving its host name,
 * instead of the socket writing into a dead TCP connection for minutes.
 * Also lifts the socket's receive limit (see kv_peers.c for why) and
 * bounds each connect attempt, so a healed link is used again at once. */
void kv_peers_set_heartbeats(zsock_t *sock);

#endif
