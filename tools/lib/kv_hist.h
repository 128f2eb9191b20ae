/*  kv_hist.h: a latency histogram with log-spaced buckets, HDR style.
 *
 *  A load generator records millions of latencies and needs p50/p99/max at
 *  the end; sorting them all would cost memory and time proportional to the
 *  run. Instead each value lands in a bucket: exact below 128, then 128
 *  sub-buckets per power of two, so any reported percentile is within 1/128
 *  (0.8 %) of the true value, whatever the range. Recording is a few
 *  instructions and the whole histogram is a fixed 59 KiB.
 *
 *  Values are unsigned 64-bit integers in any unit (the tools use
 *  nanoseconds). Not thread-safe: one histogram per thread, then merge.
 */
#ifndef KV_HIST_H
#define KV_HIST_H

#include <stdint.h>

typedef struct _kv_hist_t kv_hist_t;

/* Creates an empty histogram, or NULL when out of memory. */
kv_hist_t *kv_hist_new(void);

/* Frees the histogram; sets *self_p to NULL. Safe on NULL and twice. */
void kv_hist_destroy(kv_hist_t **self_p);

/* Counts one value. */
void kv_hist_record(kv_hist_t *self, uint64_t value);

/* Adds every value counted in other to self. */
void kv_hist_merge(kv_hist_t *self, const kv_hist_t *other);

/* Forgets every value. */
void kv_hist_reset(kv_hist_t *self);

/* Values counted. */
uint64_t kv_hist_count(const kv_hist_t *self);

/* Smallest and largest value counted, exactly; 0 when empty. */
uint64_t kv_hist_min(const kv_hist_t *self);
uint64_t kv_hist_max(const kv_hist_t *self);

/* Mean of the values counted, exactly (integer division); 0 when empty. */
uint64_t kv_hist_mean(const kv_hist_t *self);

/* The value below or at which percent (0 to 100) of the values lie: the
 * highest value of the bucket holding that rank, never above the maximum.
 * 0 when empty. */
uint64_t kv_hist_percentile(const kv_hist_t *self, double percent);

#endif
