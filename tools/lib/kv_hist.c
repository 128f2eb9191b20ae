/*  kv_hist.c: see kv_hist.h.
 *
 *  Bucket layout: values below KV_HIST_SUB (128) have a bucket each. A
 *  larger value v with its highest set bit at position e (e >= 7) keeps its
 *  top 8 bits: it lands in octave e - 7, sub-bucket (v >> (e - 7)) - 128.
 *  So octave o spans [128 << o, 256 << o) in 128 equal steps of 1 << o.
 */
#include "kv_hist.h"

#include <stdlib.h>
#include <string.h>

#define KV_HIST_SUB_BITS 7
#define KV_HIST_SUB (1u << KV_HIST_SUB_BITS)    /* sub-buckets per octave */
#define KV_HIST_OCTAVES (64 - KV_HIST_SUB_BITS) /* octaves of a 64-bit value */
#define KV_HIST_BUCKETS (KV_HIST_SUB * (KV_HIST_OCTAVES + 1))

struct _kv_hist_t {
    uint64_t counts[KV_HIST_BUCKETS]; /* values per bucket */
    uint64_t count;                   /* values counted */
    uint64_t min;                     /* smallest value counted */
    uint64_t max;                     /* largest value counted */
    uint64_t sum; /* of every value, for the mean (wraps after 584 years of ns) */
};

static unsigned s_bucket_of(uint64_t value) {
    if (value < KV_HIST_SUB) return (unsigned)value;
    unsigned top = 63u - (unsigned)__builtin_clzll(value); /* position of the highest set bit */
    unsigned octave = top - KV_HIST_SUB_BITS;
    unsigned sub = (unsigned)(value >> octave) - KV_HIST_SUB;
    return KV_HIST_SUB + octave * KV_HIST_SUB + sub;
}

/* The highest value that falls in bucket. */
static uint64_t s_bucket_high(unsigned bucket) {
    if (bucket < KV_HIST_SUB) return bucket;
    unsigned octave = (bucket - KV_HIST_SUB) / KV_HIST_SUB;
    uint64_t sub = (bucket - KV_HIST_SUB) % KV_HIST_SUB;
    uint64_t low = (KV_HIST_SUB + sub) << octave;
    return low + ((uint64_t)1 << octave) - 1;
}

kv_hist_t *kv_hist_new(void) {
    return calloc(1, sizeof(kv_hist_t));
}

void kv_hist_destroy(kv_hist_t **self_p) {
    if (!self_p || !*self_p) return;
    free(*self_p);
    *self_p = NULL;
}

void kv_hist_record(kv_hist_t *self, uint64_t value) {
    self->counts[s_bucket_of(value)]++;
    if (self->count == 0 || value < self->min) self->min = value;
    if (value > self->max) self->max = value;
    self->count++;
    self->sum += value;
}

void kv_hist_merge(kv_hist_t *self, const kv_hist_t *other) {
    if (other->count == 0) return;
    for (unsigned i = 0; i < KV_HIST_BUCKETS; i++) self->counts[i] += other->counts[i];
    if (self->count == 0 || other->min < self->min) self->min = other->min;
    if (other->max > self->max) self->max = other->max;
    self->count += other->count;
    self->sum += other->sum;
}

void kv_hist_reset(kv_hist_t *self) {
    memset(self, 0, sizeof(*self));
}

uint64_t kv_hist_count(const kv_hist_t *self) {
    return self->count;
}

uint64_t kv_hist_min(const kv_hist_t *self) {
    return self->min;
}

uint64_t kv_hist_max(const kv_hist_t *self) {
    return self->max;
}

uint64_t kv_hist_mean(const kv_hist_t *self) {
    return self->count ? self->sum / self->count : 0;
}

uint64_t kv_hist_percentile(const kv_hist_t *self, double percent) {
    if (self->count == 0) return 0;
    if (percent <= 0) return self->min;
    if (percent >= 100) return self->max;
    /* The rank of the value asked for, 1-based, rounded up. */
    double exact = percent / 100.0 * (double)self->count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact) rank++;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < KV_HIST_BUCKETS; i++) {
        seen += self->counts[i];
        if (seen < rank) continue;
        uint64_t high = s_bucket_high(i);
        return high < self->max ? high : self->max;
    }
    return self->max;
}
