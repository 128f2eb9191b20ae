/*  kv_table.h: the routing table, owned by the coordinator, copied by all.
 *
 *  The table maps each of P partitions to R owner slots: slot 0 is the
 *  primary, slots 1..R-1 the replicas, each a node index or KV_NO_NODE.
 *  A partition may also have a learner: a node copying the partition (a
 *  snapshot, then the update stream) before it takes a slot; that is how
 *  partitions move on join, leave and re-replication. Per-partition flags
 *  drive a primary hand-off (see kv_plan.h). The table also lists the nodes
 *  (id, data endpoint, replication endpoint, state). Every change bumps the
 *  epoch; a table with a higher epoch always wins. Node indexes are never
 *  reused for another id, so an index means the same node in every epoch.
 *
 *  Encoding (big-endian), carried in TABLE and HELLO messages:
 *      u8 version, u64 epoch, u32 partitions, u8 replication, u16 nodes,
 *      nodes x (str8 id, str16 endpoint, str16 pub_endpoint, u8 state),
 *      partitions x (replication x u16 owner, u16 learner, u8 flags)
 */
#ifndef KV_TABLE_H
#define KV_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"

typedef enum {
    KV_NODE_JOINING = 0, /* registered, owns nothing yet */
    KV_NODE_ACTIVE = 1,  /* serving the partitions it owns */
    KV_NODE_LEAVING = 2, /* draining its partitions to others */
    KV_NODE_DOWN = 3,    /* missed its heartbeats */
    KV_NODE_LEFT = 4,    /* drained and gone; owns nothing */
} kv_node_state_t;

/* Per-partition flags. */
#define KV_PART_MOVE_PRIMARY 0x01 /* the learner will take the primary slot */
#define KV_PART_FENCED 0x02       /* the primary refuses writes: hand-off underway */
#define KV_PART_FLAGS_ALL 0x03

/* One node of the table, as kv_table_node gives it to readers. */
typedef struct {
    char id[KV_NODE_ID_MAX + 1];            /* unique node id */
    char endpoint[KV_ENDPOINT_MAX + 1];     /* ROUTER endpoint for requests */
    char pub_endpoint[KV_ENDPOINT_MAX + 1]; /* PUB endpoint for replication */
    uint8_t state;                          /* kv_node_state_t */
} kv_table_node_t;

/* Opaque: callers go through the functions below, so the layout can change
 * (per-partition data added, arrays resized) without touching them. */
typedef struct kv_table_s kv_table_t;

/* Creates an empty table (epoch 0, no nodes, no owners). NULL on bad
 * arguments or out of memory. */
kv_table_t *kv_table_new(uint32_t partitions, uint32_t replication);

/* Frees the table; sets *self_p to NULL. Safe on NULL. */
void kv_table_destroy(kv_table_t **self_p);

/* A deep copy, or NULL when out of memory. */
kv_table_t *kv_table_dup(const kv_table_t *self);

/* Index of the node with this id, or -1. */
int kv_table_find(const kv_table_t *self, const char *id);

/* Adds a node (or updates its endpoints) and returns its index, or -1 when
 * the table is full or a string is too long. */
int kv_table_upsert(kv_table_t *self, const char *id, const char *endpoint,
                    const char *pub_endpoint);

/* The epoch: bumped on every change, the higher table wins. */
uint64_t kv_table_epoch(const kv_table_t *self);

/* Sets the epoch (the coordinator publishes each change under a new one). */
void kv_table_set_epoch(kv_table_t *self, uint64_t epoch);

/* P: partitions, fixed for the cluster's life (1..KV_PARTITIONS_MAX). */
uint32_t kv_table_partitions(const kv_table_t *self);

/* R: owner slots per partition (1..KV_REPLICATION_MAX). */
uint32_t kv_table_replication(const kv_table_t *self);

/* Nodes listed: valid node indexes are 0 .. count - 1. */
uint32_t kv_table_node_count(const kv_table_t *self);

/* The node at index, or NULL when index >= kv_table_node_count. The record
 * lives as long as the table (kv_table_upsert updates it in place). */
const kv_table_node_t *kv_table_node(const kv_table_t *self, uint32_t index);

/* The kv_node_state_t of the node at index; KV_NODE_LEFT when index is out
 * of range (no node there: it holds and serves nothing). */
uint8_t kv_table_node_state(const kv_table_t *self, uint32_t index);

/* Sets the state of the node at index. -1, changing nothing, when index is
 * out of range or state is not a kv_node_state_t. */
int kv_table_set_node_state(kv_table_t *self, uint32_t index, int state);

/* Owner slot of partition: slot 0 is the primary. KV_NO_NODE when unset. */
uint16_t kv_table_owner(const kv_table_t *self, uint32_t partition, uint32_t slot);

/* Sets an owner slot. */
void kv_table_set_owner(kv_table_t *self, uint32_t partition, uint32_t slot, uint16_t node);

/* The partition's learner, or KV_NO_NODE. */
uint16_t kv_table_learner(const kv_table_t *self, uint32_t partition);

/* Sets the learner. */
void kv_table_set_learner(kv_table_t *self, uint32_t partition, uint16_t node);

/* The partition's KV_PART_* flags. */
uint8_t kv_table_flags(const kv_table_t *self, uint32_t partition);

/* Sets the flags. */
void kv_table_set_flags(kv_table_t *self, uint32_t partition, uint8_t flags);

/* The slot node holds in partition (0 primary), R for learner, -1 none. */
int kv_table_role(const kv_table_t *self, uint32_t partition, uint16_t node);

/* Partitions whose slot 0 (primary) or other slots (replica) are node. */
uint32_t kv_table_count_primaries(const kv_table_t *self, uint16_t node);
uint32_t kv_table_count_replicas(const kv_table_t *self, uint16_t node);

/* True when every partition has a primary whose node is active. */
int kv_table_healthy(const kv_table_t *self);

/* Encoded size, and encoding into buf. Returns bytes written or 0. */
size_t kv_table_encoded_size(const kv_table_t *self);
size_t kv_table_encode(const kv_table_t *self, uint8_t *buf, size_t cap);

/* Decodes a table; NULL when malformed (bad lengths, owner index out of
 * range, partitions or replication out of range, trailing bytes). */
kv_table_t *kv_table_decode(const uint8_t *buf, size_t len);

/* "joining", "active", "leaving", "down", "left". */
const char *kv_node_state_name(int state);

#endif
