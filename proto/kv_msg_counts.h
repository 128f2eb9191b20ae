/*  kv_msg_counts.h: messages received, counted by type; and a counter
 *  registry as the counters of a STATS_REPLY.
 *
 *  A process object (a node, the coordinator) registers one counter per
 *  wire message type in its kv_counters registry, named
 *  "<prefix>_<type>_total" with the type's name in lower case
 *  ("kv_node_messages_set_total"), and bumps the one of every message it
 *  decodes. The counts travel with its other counters in STATS_REPLY, so a
 *  test can tell how many messages of each kind a scenario cost a process.
 */
#ifndef KV_MSG_COUNTS_H
#define KV_MSG_COUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "kv_counters.h"
#include "kv_msg.h"

#define KV_MSG_COUNTS_TYPES 256 /* a type is one byte */

typedef struct {
    kv_counters_t *counters;             /* where they are registered */
    size_t handles[KV_MSG_COUNTS_TYPES]; /* by type byte; KV_COUNTER_INVALID for no type */
} kv_msg_counts_t;

/* Registers "<prefix>_<type>_total" in counters for every type of
 * KV_MSG_TYPES. Not thread-safe (kv_counters_register). */
void kv_msg_counts_register(kv_msg_counts_t *self, kv_counters_t *counters, const char *prefix);

/* Counts one message of type (an unknown type counts nothing). Thread-safe. */
void kv_msg_counts_inc(const kv_msg_counts_t *self, int type);

/* Every counter of counters, as STATS_REPLY counter records, in a malloc'd
 * buffer stored in *buf_p (the caller frees it). Out of memory: empty
 * bytes and *buf_p NULL, so the reply goes without. */
kv_bytes_t kv_msg_counts_blob(const kv_counters_t *counters, uint8_t **buf_p);

#endif
