/*  kv_hash.h: the two hashes of the store.
 *
 *  kv_hash64 is the partition hash: fixed and seeded with KV_HASH_SEED so
 *  every process on every machine maps a key to the same partition for the
 *  life of a cluster. It must never change once a cluster holds data.
 *
 *  kv_siphash is the bucket hash of the node's tables: keyed with a random
 *  per-process secret so clients cannot choose keys that all collide in one
 *  bucket (hash flooding). It is SipHash-1-3, as in Redis.
 */
#ifndef KV_HASH_H
#define KV_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Seeded 64-bit hash of len bytes; stable across processes and builds. */
uint64_t kv_hash64(const void *data, size_t len, uint64_t seed);

/* The partition of a key: kv_hash64 with KV_HASH_SEED, modulo partitions. */
uint32_t kv_partition_of(const void *key, size_t len, uint32_t partitions);

/* SipHash-1-3 of len bytes under a 16-byte key. */
uint64_t kv_siphash(const void *data, size_t len, const uint8_t key[16]);

/* SipHash-c-d: the same core with c compression and d finalization rounds.
 * kv_siphash is (1, 3); (2, 4) is the variant the paper's test vectors cover,
 * which is how the tests check the core. */
uint64_t kv_siphash_rounds(const void *data, size_t len, const uint8_t key[16], int c_rounds,
                           int d_rounds);

/* The next number of a splitmix64 sequence whose state is *state (any
 * value): fast, statistically sound, not secret. For sampling. */
uint64_t kv_splitmix64(uint64_t *state);

/* Fills key with 16 random bytes (getrandom, falling back to time + pid). */
void kv_siphash_random_key(uint8_t key[16]);

#endif
