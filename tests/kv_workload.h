/*  kv_workload.h: a client that keeps a cluster busy and remembers what
 *  the cluster acknowledged, to check later that nothing was lost.
 *
 *  Threads own disjoint key ranges and loop over random sets, gets and
 *  removes of their keys through the gateway. For every key the model keeps
 *  the last acknowledged state (a value number, or absent) and, when a write
 *  failed in a way that leaves its outcome unknown (504, a dropped
 *  connection), the range of values that may have landed. Values only grow
 *  per key, so "which writes might have happened" is a simple interval.
 *
 *  While running, every read is checked against the model (a read after an
 *  acknowledged write must see it); every failed request is counted by
 *  kind, and the longest stretch during which writes kept failing is timed.
 *  kv_workload_verify reads every key at the end.
 */
#ifndef KV_WORKLOAD_H
#define KV_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct _kv_workload_t kv_workload_t;

typedef struct {
    uint64_t requests;            /* requests sent */
    uint64_t ok;                  /* 2xx and expected 404s */
    uint64_t acked_writes;        /* sets and removes acknowledged */
    uint64_t failed_5xx;          /* 5xx answers */
    uint64_t failed_503;          /* of those, 503 UNAVAILABLE: nothing was written */
    uint64_t failed_conn;         /* no answer at all */
    uint64_t failed_other;        /* unexpected 4xx or body */
    uint64_t stale_reads;         /* a read that missed an acknowledged write */
    long long longest_refusal_ms; /* longest run of consecutive failed writes, per thread */
} kv_workload_stats_t;

/* Starts threads threads on port, over keys keys (named "wl-<seed>-<n>"),
 * with sets / gets / removes in the ratio 5 : 4 : 1. NULL on failure. */
kv_workload_t *kv_workload_start(int port, int keys, int threads, unsigned seed);

/* Stops the threads (after their current request). */
void kv_workload_stop(kv_workload_t *self);

/* Counters so far (safe while running). */
kv_workload_stats_t kv_workload_stats(kv_workload_t *self);

/* Reads every key on port (after stop) and compares with the model.
 * Returns the number of keys whose state is not one the model allows;
 * prints up to 10 of them. *checked gets the number of keys read. */
int kv_workload_verify(kv_workload_t *self, int port, int *checked);

/* Names of the keys the model says are present, for /getKeys checks: a
 * callback per key that must be present (acked, no uncertain write since). */
void kv_workload_each_present(kv_workload_t *self, void (*fn)(const char *key, void *arg),
                              void *arg);

/* Frees the workload (stopping it first). Safe on NULL. */
void kv_workload_destroy(kv_workload_t **self_p);

#endif
