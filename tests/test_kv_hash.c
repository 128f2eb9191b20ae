/*  test_kv_hash.c: the partition hash and the bucket hash.
 *
 *  kv_hash64 must never change once a cluster holds data, so golden values
 *  pin it; the statistical tests check it spreads keys evenly and that every
 *  input bit reaches every output bit. The SipHash core is checked against
 *  the paper's SipHash-2-4 vectors (key 00..0f, message 00..len-1), and its
 *  1-3 variant against vectors of the reference implementation.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kv_hash.h"
#include "kv_limits.h"

/* A string literal that may hold a NUL, as the (bytes, length) pair. */
#define BYTES(literal) (literal), (sizeof(literal) - 1)

/* xorshift64: reproducible test inputs without touching rand()'s state. */
static uint64_t s_next_random(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

Test(kv_hash, hash64_is_deterministic) {
    const char *key = "user:1000";
    uint64_t first = kv_hash64(key, strlen(key), KV_HASH_SEED);
    char copy[16];
    memcpy(copy, key, strlen(key) + 1); /* same bytes at another address */
    cr_expect_eq(kv_hash64(copy, strlen(copy), KV_HASH_SEED), first);
    cr_expect_eq(kv_hash64(key, strlen(key), KV_HASH_SEED), first);
}

/* Changing any of these is a data migration: every key of a running cluster
 * would move partition. Update them only together with a new KV_HASH_SEED
 * and a migration plan. */
Test(kv_hash, hash64_golden_values_never_change) {
    cr_expect_eq(kv_hash64(BYTES(""), KV_HASH_SEED), 0x0a9cb6cd4960556bULL);
    cr_expect_eq(kv_hash64(BYTES("a"), KV_HASH_SEED), 0xdc1519df552851a2ULL);
    cr_expect_eq(kv_hash64(BYTES("user:1000"), KV_HASH_SEED), 0x6ad9fc76cfc1d31fULL);
    cr_expect_eq(kv_hash64(BYTES("0123456789abcdef0123"), KV_HASH_SEED), 0xa99926a869835800ULL);
    cr_expect_eq(kv_partition_of(BYTES("user:1000"), KV_PARTITIONS_DEFAULT), 799);
}

Test(kv_hash, hash64_depends_on_seed_length_and_every_byte) {
    uint64_t base = kv_hash64(BYTES("abcdefghij"), KV_HASH_SEED);
    cr_expect_neq(kv_hash64(BYTES("abcdefghij"), KV_HASH_SEED + 1), base);
    cr_expect_neq(kv_hash64(BYTES("abcdefghiJ"), KV_HASH_SEED), base);
    cr_expect_neq(kv_hash64(BYTES("Abcdefghij"), KV_HASH_SEED), base);
    /* Zero padding of the tail must not make lengths collide. */
    cr_expect_neq(kv_hash64(BYTES("a"), KV_HASH_SEED), kv_hash64(BYTES("a\0"), KV_HASH_SEED));
    cr_expect_neq(kv_hash64(BYTES("12345678"), KV_HASH_SEED),
                  kv_hash64(BYTES("12345678\0"), KV_HASH_SEED));
}

Test(kv_hash, partition_is_within_range) {
    const uint32_t counts[] = {1, 2, 3, 7, 1000, KV_PARTITIONS_DEFAULT, KV_PARTITIONS_MAX};
    char key[32];
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        for (int i = 0; i < 10000; i++) {
            int len = snprintf(key, sizeof key, "key:%d", i);
            cr_assert_lt(kv_partition_of(key, (size_t)len, counts[c]), counts[c]);
        }
    }
    cr_expect_eq(kv_partition_of(BYTES("any"), 0), 0, "zero partitions must not divide by 0");
}

/* 100k keys over 1024 partitions: about 97.7 per partition. For a uniform
 * hash the chi-square statistic has 1023 degrees of freedom, so mean 1023
 * and standard deviation sqrt(2 * 1023) = 45; 1250 is five deviations up. */
Test(kv_hash, partitions_are_roughly_uniform) {
    enum { KEYS = 100000, PARTS = 1024 };
    static unsigned counts[PARTS];
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        int len = snprintf(key, sizeof key, "user:%d", i);
        counts[kv_partition_of(key, (size_t)len, PARTS)]++;
    }
    double expected = (double)KEYS / PARTS;
    double chi2 = 0;
    for (int p = 0; p < PARTS; p++) {
        double diff = counts[p] - expected;
        chi2 += diff * diff / expected;
        cr_expect_gt(counts[p], 40, "partition %d has only %u keys", p, counts[p]);
    }
    cr_expect_lt(chi2, 1250.0, "chi-square %.1f for 1023 degrees of freedom", chi2);
}

/* Flipping one input bit should flip each output bit with probability 1/2.
 * Over 200 random 12-byte inputs x 96 bits, each output bit's flip rate must
 * stay within 0.40..0.60 (its standard error is 0.004). */
Test(kv_hash, hash64_avalanches) {
    enum { INPUTS = 200, LEN = 12 };
    static unsigned flips[64];
    uint64_t state = 0x1234567887654321ULL;
    unsigned trials = 0;
    for (int n = 0; n < INPUTS; n++) {
        unsigned char input[LEN];
        for (int i = 0; i < LEN; i++) input[i] = (unsigned char)s_next_random(&state);
        uint64_t base = kv_hash64(input, LEN, KV_HASH_SEED);
        for (int bit = 0; bit < LEN * 8; bit++, trials++) {
            input[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            uint64_t diff = base ^ kv_hash64(input, LEN, KV_HASH_SEED);
            input[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            for (int out = 0; out < 64; out++) flips[out] += (diff >> out) & 1;
        }
    }
    for (int out = 0; out < 64; out++) {
        double rate = (double)flips[out] / trials;
        cr_expect(rate > 0.40 && rate < 0.60, "output bit %d flips at rate %.3f", out, rate);
    }
}

/* The paper's vectors: key 00 01 .. 0f, message 00 01 .. len-1, SipHash-2-4.
 * Lengths 0, 7, 8, 15, 16 and 63 cover the empty message, a lone tail, a
 * lone block, block plus full tail, two blocks, and the longest vector. */
Test(kv_hash, siphash_core_matches_paper_vectors) {
    uint8_t key[16];
    unsigned char message[64];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) message[i] = (unsigned char)i;
    cr_expect_eq(kv_siphash_rounds(message, 0, key, 2, 4), 0x726fdb47dd0e0e31ULL);
    cr_expect_eq(kv_siphash_rounds(message, 7, key, 2, 4), 0xab0200f58b01d137ULL);
    cr_expect_eq(kv_siphash_rounds(message, 8, key, 2, 4), 0x93f5f5799a932462ULL);
    cr_expect_eq(kv_siphash_rounds(message, 15, key, 2, 4), 0xa129ca6149be45e5ULL);
    cr_expect_eq(kv_siphash_rounds(message, 16, key, 2, 4), 0x3f2acc7f57c29bdbULL);
    cr_expect_eq(kv_siphash_rounds(message, 63, key, 2, 4), 0x958a324ceb064572ULL);
}

/* SipHash-1-3 under the all-zero key, message 00 01 .. len-1, as computed by
 * the reference implementation (github.com/veorq/SipHash, cROUNDS=1,
 * dROUNDS=3). */
Test(kv_hash, siphash13_matches_reference_vectors) {
    const uint8_t zero_key[16] = {0};
    unsigned char message[16];
    for (int i = 0; i < 16; i++) message[i] = (unsigned char)i;
    cr_expect_eq(kv_siphash(message, 0, zero_key), 0xd1fba762150c532cULL);
    cr_expect_eq(kv_siphash(message, 1, zero_key), 0x68a914128e01e473ULL);
    cr_expect_eq(kv_siphash(message, 3, zero_key), 0x4d4c9a4a8ef6e0adULL);
    cr_expect_eq(kv_siphash(message, 15, zero_key), 0xf30eb725bb91c9eaULL);
    cr_expect_eq(kv_siphash(message, 16, zero_key), 0x8972188433a5c5b7ULL);
    cr_expect_eq(kv_siphash(message, 16, zero_key), kv_siphash_rounds(message, 16, zero_key, 1, 3));
}

Test(kv_hash, siphash_depends_on_key) {
    uint8_t key_a[16] = {0};
    uint8_t key_b[16] = {0};
    key_b[15] = 1;
    cr_expect_neq(kv_siphash(BYTES("user:1000"), key_a), kv_siphash(BYTES("user:1000"), key_b));
}

Test(kv_hash, random_keys_differ) {
    uint8_t first[16];
    uint8_t second[16];
    kv_siphash_random_key(first);
    kv_siphash_random_key(second);
    /* Equal 128-bit draws would mean the source is broken, not bad luck. */
    cr_expect_neq(memcmp(first, second, sizeof first), 0);
}
