/*  kv_mem.h: a node's memory limit, and the bytes it hands to libzmq.
 *
 *  The node is never killed for memory (docs/memory.md): it refuses a
 *  write that would take what it accounts past its limit (--max-memory,
 *  by default 90 % of its cgroup's limit, none without one) and bounds
 *  what it cannot account (libzmq's queues) to fit in the rest of the
 *  cgroup's limit. This module holds the arithmetic, so the node's
 *  request path only adds a few numbers:
 *
 *  - kv_mem_parse_limit reads --max-memory: bytes ("268435456", "256m"),
 *    a percentage of the cgroup's limit ("90%"), or "0"/"none" for none;
 *  - kv_mem_fits decides a write: one that grows the data by more than
 *    the room left is refused; one that shrinks or keeps it never is;
 *  - kv_mem_frame builds a ZeroMQ frame whose bytes are counted from the
 *    moment it is built until libzmq frees it (after the last subscriber
 *    or peer got it): replication updates and snapshot chunks waiting in
 *    libzmq's queues are then part of the node's used memory, exactly;
 *  - kv_mem_hwm sizes a socket's high-water mark (in messages, which is
 *    all libzmq offers) so its queues fit in a byte budget.
 *
 *  The frame count is process-wide (libzmq frees frames from its I/O
 *  thread, possibly after the node actor has gone): it is atomic, and in
 *  a test that runs several nodes in one process it is their sum.
 */
#ifndef KV_MEM_H
#define KV_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define KV_MEM_DEFAULT_PERCENT 90  /* default limit: this share of the cgroup's */
#define KV_MEM_NO_LIMIT UINT64_MAX /* kv_mem_room when there is no limit */
#define KV_MEM_PIPES 16            /* peers (gateways, nodes) a socket's queues are sized for */
/* What the process needs beyond what it accounts, at the least: code,
 * libraries, libzmq's threads, allocator slack (11 MB measured at a 64 MiB
 * limit, docs/memory.md), with a margin. A cgroup that leaves less than
 * this beyond --max-memory is warned about at start. */
#define KV_MEM_RESERVE_MIN (32ULL << 20)

/* The cgroup (v2, then v1) memory limit of this process, 0 when none. */
uint64_t kv_mem_cgroup_limit(void);

/* Parses --max-memory into *limit (bytes, 0 for none) given the cgroup's
 * limit (0 when none): NULL or "" is the default (KV_MEM_DEFAULT_PERCENT of
 * cgroup); "N%" (1..100) that share of cgroup (none without a cgroup
 * limit); "N" bytes, with an optional k, m or g suffix (KiB, MiB, GiB);
 * "0" or "none": no limit. Returns 0, or -1 when text is not one of these. */
int kv_mem_parse_limit(const char *text, uint64_t cgroup, uint64_t *limit);

/* Bytes left under limit when used are in use: 0 at or past it,
 * KV_MEM_NO_LIMIT when limit is 0 (none). */
uint64_t kv_mem_room(uint64_t limit, uint64_t used);

/* Whether a change of grow bytes (negative: shrinks) fits in room. A
 * change that does not grow always fits. */
int kv_mem_fits(uint64_t room, int64_t grow);

/* Gives the allocator's free pages back to the system (glibc's
 * malloc_trim: free chunks inside the heap, not only at its top). A node
 * that evicts or removes at its limit frees blocks all over the heap
 * while new ones are cut: the holes stay resident unless given back, and
 * RSS ran 35 % past what the node counts (100 MiB limit, allkeys-lru
 * churn: 140 MB RSS; 118 MB with a trim every few hundred ms). Costs a
 * walk of the heap's free chunks: call it at most every KV_MEM_TRIM_MS. */
void kv_mem_trim(void);

#define KV_MEM_TRIM_MS 200 /* at most one kv_mem_trim this often */

/* Initialises frame with size bytes of its own, counted in
 * kv_mem_frame_bytes until libzmq (or zmq_msg_close) frees it. Returns 0,
 * or -1 when out of memory (frame untouched). */
int kv_mem_frame(zmq_msg_t *frame, size_t size);

/* Bytes of kv_mem_frame frames not yet freed, in this process. */
uint64_t kv_mem_frame_bytes(void);

/* A high-water mark (messages per pipe) so that pipes queues of frames of
 * frame_bytes each stay within budget bytes: at least KV_MEM_HWM_MIN, at
 * most cap (the configured one). budget 0 (no limit): cap. */
#define KV_MEM_HWM_MIN 256 /* below this a burst would drop updates (a resync) */
int kv_mem_hwm(uint64_t budget, size_t frame_bytes, int pipes, int cap);

#endif
