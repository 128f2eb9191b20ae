/*  kv_hash.c: the partition hash and the bucket hash.
 *
 *  kv_hash64 decides which partition, and so which node, owns a key. Every
 *  process must compute it identically for the life of a cluster, so it reads
 *  input as little-endian words on every platform and any change to it is a
 *  data migration; the golden values in tests/test_kv_hash.c pin it. It is a
 *  multiply-rotate chain over 8-byte words (the shape of MurmurHash3's body)
 *  closed by the splitmix64 finalizer, which gives every input bit an even
 *  chance of flipping every output bit. Keys are short, so one lane suffices.
 *
 *  kv_siphash is the bucket hash of the node's tables. It is keyed with a
 *  per-process secret: a client that cannot learn the key cannot choose keys
 *  that pile into one bucket. SipHash-1-3 (as in Redis) rather than the
 *  paper's 2-4: a hash table needs flooding resistance, not a MAC, and the
 *  fewer rounds are measurably faster on short keys.
 */
#include "kv_hash.h"
#include "kv_limits.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define S_PRIME1 0x9e3779b97f4a7c15ULL /* 2^64 / golden ratio: odd, bits well spread */
#define S_PRIME2 0xc2b2ae3d27d4eb4fULL /* large odd constants for the word mix */
#define S_PRIME3 0x165667b19e3779f9ULL

#define S_SIP_C0 0x736f6d6570736575ULL /* "somepseudorandomlygeneratedbytes" */
#define S_SIP_C1 0x646f72616e646f6dULL
#define S_SIP_C2 0x6c7967656e657261ULL
#define S_SIP_C3 0x7465646279746573ULL

static inline uint64_t s_rotl(uint64_t x, int bits) {
    return (x << bits) | (x >> (64 - bits));
}

/* The first 8 bytes at p as a little-endian number, whatever the host. */
static inline uint64_t s_load64(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, sizeof word); /* unaligned load without UB */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    word = __builtin_bswap64(word);
#endif
    return word;
}

/* The last len (0..7) bytes at p as a little-endian number, zero-padded. */
static inline uint64_t s_load_tail(const unsigned char *p, size_t len) {
    uint64_t word = 0;
    for (size_t i = 0; i < len; i++) word |= (uint64_t)p[i] << (8 * i);
    return word;
}

/* splitmix64's finalizer: a bijection in which every input bit flips each
 * output bit with probability close to one half. */
static inline uint64_t s_fmix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Folds one word into the state. The word is scrambled on its own first so
 * that words differing in a few bits do not cancel against the state. */
static inline uint64_t s_absorb(uint64_t state, uint64_t word) {
    word *= S_PRIME2;
    word = s_rotl(word, 31);
    word *= S_PRIME1;
    state ^= word;
    return s_rotl(state, 27) * S_PRIME1 + S_PRIME3;
}

/* The length enters the initial state, so "a" and "a\0" (same zero-padded
 * tail word) still hash apart. */
uint64_t kv_hash64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t state = (seed + S_PRIME3) ^ (len * S_PRIME1);
    for (; len >= 8; p += 8, len -= 8) state = s_absorb(state, s_load64(p));
    if (len > 0) state = s_absorb(state, s_load_tail(p, len));
    return s_fmix64(state);
}

/* With a power-of-two count (the default 1024) the modulo has no bias; for
 * other counts the bias is below partitions / 2^64, far under any noise. */
uint32_t kv_partition_of(const void *key, size_t len, uint32_t partitions) {
    if (partitions == 0) return 0; /* no partitions: nothing to choose */
    return (uint32_t)(kv_hash64(key, len, KV_HASH_SEED) % partitions);
}

/* SipHash state: four 64-bit words, as named in the paper. */
typedef struct {
    uint64_t v0, v1, v2, v3; /* the internal state v0..v3 */
} sip_state_t;

static inline void s_sip_round(sip_state_t *s) {
    s->v0 += s->v1;
    s->v1 = s_rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = s_rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = s_rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = s_rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = s_rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = s_rotl(s->v2, 32);
}

static inline void s_sip_compress(sip_state_t *s, uint64_t m, int c_rounds) {
    s->v3 ^= m;
    for (int i = 0; i < c_rounds; i++) s_sip_round(s);
    s->v0 ^= m;
}

/* The generic SipHash-c-d of the paper (section 2). The last block carries
 * the message length modulo 256 in its top byte above the 0..7 tail bytes.
 * Inlined into kv_siphash so its constant round counts unroll. */
static inline uint64_t s_siphash(const unsigned char *p, size_t len, const uint8_t key[16],
                                 int c_rounds, int d_rounds) {
    uint64_t k0 = s_load64(key);
    uint64_t k1 = s_load64(key + 8);
    sip_state_t s = {k0 ^ S_SIP_C0, k1 ^ S_SIP_C1, k0 ^ S_SIP_C2, k1 ^ S_SIP_C3};
    uint64_t last = (uint64_t)len << 56;
    for (; len >= 8; p += 8, len -= 8) s_sip_compress(&s, s_load64(p), c_rounds);
    s_sip_compress(&s, last | s_load_tail(p, len), c_rounds);
    s.v2 ^= 0xff;
    for (int i = 0; i < d_rounds; i++) s_sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t kv_siphash(const void *data, size_t len, const uint8_t key[16]) {
    return s_siphash(data, len, key, 1, 3);
}

uint64_t kv_siphash_rounds(const void *data, size_t len, const uint8_t key[16], int c_rounds,
                           int d_rounds) {
    return s_siphash(data, len, key, c_rounds, d_rounds);
}

uint64_t kv_splitmix64(uint64_t *state) {
    *state += S_PRIME1; /* a counter through the finalizer */
    return s_fmix64(*state);
}

/* Fills key from whatever the process can observe that differs between runs.
 * Used only when the kernel offers no getrandom: weaker, yet a flooder
 * would still have to guess the start time to the nanosecond and the pid. */
static void s_fallback_key(uint8_t key[16]) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t state = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
    state ^= (uint64_t)getpid() << 32;
    state ^= (uint64_t)(uintptr_t)&now; /* stack address: varies under ASLR */
    for (size_t offset = 0; offset < 16; offset += sizeof(uint64_t)) {
        uint64_t word = kv_splitmix64(&state);
        memcpy(key + offset, &word, sizeof word);
    }
}

void kv_siphash_random_key(uint8_t key[16]) {
    size_t filled = 0;
    while (filled < 16) {
        ssize_t got = getrandom(key + filled, 16 - filled, 0);
        if (got < 0 && errno == EINTR) continue; /* interrupted before any byte: retry */
        if (got <= 0) break;                     /* ENOSYS and the like: fall back */
        filled += (size_t)got;
    }
    if (filled < 16) s_fallback_key(key);
}
