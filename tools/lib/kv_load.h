/*  kv_load.h: the workload the load tools share: what to ask, for which key.
 *
 *  kv-stress (HTTP) and kv-zstress (ZeroMQ) generate the same workload so
 *  their figures compare: an operation mix such as "set=50,get=40,rm=10",
 *  keys named "k<seed>-<n>" and, for each key, one deterministic value of
 *  the requested size made of URL-safe characters. Because a key's value is
 *  a function of (seed, n), a read can be checked byte for byte even after
 *  concurrent overwrites, and a later run (or wrk) can read keys an earlier
 *  run wrote by knowing only the seed and the range of n.
 *
 *  kv_keyset_t is the set of keys known to be present, with O(1) add,
 *  remove and uniform random pick, so reads and removals target keys that
 *  were written.
 */
#ifndef KV_LOAD_H
#define KV_LOAD_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    KV_LOAD_SET = 0,
    KV_LOAD_GET = 1,
    KV_LOAD_RM = 2,
    KV_LOAD_OPS = 3,
} kv_load_op_t;

/* Relative weights of the operations, e.g. set=50,get=40,rm=10. */
typedef struct {
    unsigned weight[KV_LOAD_OPS]; /* per kv_load_op_t */
    unsigned total;               /* sum of the weights, > 0 */
} kv_mix_t;

/* Parses "op=weight[,op=weight...]" with op one of set, get, rm and weights
 * 0 to 1000000; ops not named weigh 0. Returns 0, or -1 when malformed or
 * every weight is 0. */
int kv_mix_parse(const char *text, kv_mix_t *mix);

/* Writes the mix back as text ("set=50,get=50"). */
void kv_mix_format(const kv_mix_t *mix, char *buf, size_t cap);

/* Picks an operation with probability weight / total. */
kv_load_op_t kv_mix_pick(const kv_mix_t *mix, uint64_t *rng);

/* "set", "get", "rm". */
const char *kv_load_op_name(kv_load_op_t op);

/* Next number of a splitmix64 generator whose state is *rng. */
uint64_t kv_rand(uint64_t *rng);

/* A number uniformly drawn from [0, bound) (bound > 0). */
uint64_t kv_rand_below(uint64_t *rng, uint64_t bound);

/* Writes "k<seed>-<n>" NUL-terminated into buf. Returns its length, or 0
 * when it does not fit in cap. */
size_t kv_load_key(char *buf, size_t cap, long seed, uint64_t n);

/* Writes the value of key n (size bytes of [A-Za-z0-9], no NUL) into buf. */
void kv_load_value(char *buf, size_t size, long seed, uint64_t n);

typedef struct _kv_keyset_t kv_keyset_t;

/* Creates an empty set of key numbers. NULL when out of memory. */
kv_keyset_t *kv_keyset_new(void);

/* Frees the set; sets *self_p to NULL. Safe on NULL and twice. */
void kv_keyset_destroy(kv_keyset_t **self_p);

/* Adds key n (no-op when present). Returns 0, or -1 when out of memory. */
int kv_keyset_add(kv_keyset_t *self, uint32_t n);

/* Removes key n (no-op when absent). */
void kv_keyset_remove(kv_keyset_t *self, uint32_t n);

/* True when key n is in the set. */
int kv_keyset_contains(const kv_keyset_t *self, uint32_t n);

/* Keys in the set. */
uint32_t kv_keyset_size(const kv_keyset_t *self);

/* A key drawn uniformly from the set, or -1 when it is empty. */
int64_t kv_keyset_pick(const kv_keyset_t *self, uint64_t *rng);

#endif
