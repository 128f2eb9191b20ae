/*  kv_load.c: see kv_load.h. */
#include "kv_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_MIX_WEIGHT_MAX 1000000u

static const char *const s_op_names[KV_LOAD_OPS] = {"set", "get", "rm"};

const char *kv_load_op_name(kv_load_op_t op) {
    return (unsigned)op < KV_LOAD_OPS ? s_op_names[op] : "?";
}

/* Parses one "op=weight" term of length len into mix. Returns 0 or -1. */
static int s_mix_term(const char *term, size_t len, kv_mix_t *mix) {
    const char *eq = memchr(term, '=', len);
    if (!eq || eq == term || eq + 1 == term + len) return -1;
    size_t name_len = (size_t)(eq - term);
    int op = -1;
    for (int i = 0; i < KV_LOAD_OPS; i++)
        if (strlen(s_op_names[i]) == name_len && memcmp(term, s_op_names[i], name_len) == 0) op = i;
    if (op < 0) return -1; /* unknown operation */
    unsigned long weight = 0;
    for (const char *p = eq + 1; p < term + len; p++) {
        if (*p < '0' || *p > '9') return -1;
        weight = weight * 10 + (unsigned long)(*p - '0');
        if (weight > KV_MIX_WEIGHT_MAX) return -1;
    }
    mix->weight[op] = (unsigned)weight;
    return 0;
}

int kv_mix_parse(const char *text, kv_mix_t *mix) {
    memset(mix, 0, sizeof(*mix));
    if (!text || !*text) return -1;
    const char *term = text;
    while (term) {
        const char *comma = strchr(term, ',');
        size_t len = comma ? (size_t)(comma - term) : strlen(term);
        if (s_mix_term(term, len, mix) != 0) return -1;
        term = comma ? comma + 1 : NULL;
    }
    for (int i = 0; i < KV_LOAD_OPS; i++) mix->total += mix->weight[i];
    return mix->total > 0 ? 0 : -1;
}

void kv_mix_format(const kv_mix_t *mix, char *buf, size_t cap) {
    size_t pos = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < KV_LOAD_OPS; i++) {
        if (!mix->weight[i] || pos >= cap) continue;
        int n = snprintf(buf + pos, cap - pos, "%s%s=%u", pos ? "," : "", s_op_names[i],
                         mix->weight[i]);
        if (n > 0) pos += (size_t)n;
    }
}

kv_load_op_t kv_mix_pick(const kv_mix_t *mix, uint64_t *rng) {
    uint64_t ticket = kv_rand_below(rng, mix->total);
    for (int i = 0; i < KV_LOAD_OPS; i++) {
        if (ticket < mix->weight[i]) return (kv_load_op_t)i;
        ticket -= mix->weight[i];
    }
    return KV_LOAD_SET; /* unreachable while total is the sum of the weights */
}

uint64_t kv_rand(uint64_t *rng) {
    uint64_t z = (*rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t kv_rand_below(uint64_t *rng, uint64_t bound) {
    /* Multiply-shift (Lemire) without the rejection step: the bias is below
     * bound / 2^64, far under anything a benchmark can observe. */
    return (uint64_t)(((unsigned __int128)kv_rand(rng) * bound) >> 64);
}

size_t kv_load_key(char *buf, size_t cap, long seed, uint64_t n) {
    int len = snprintf(buf, cap, "k%ld-%llu", seed, (unsigned long long)n);
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

void kv_load_value(char *buf, size_t size, long seed, uint64_t n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t rng = ((uint64_t)seed * 0x9E3779B97F4A7C15ULL) ^ n;
    uint64_t bits = 0;
    for (size_t i = 0; i < size; i++) {
        if (i % 10 == 0) bits = kv_rand(&rng); /* 10 characters of 6 bits per draw */
        buf[i] = alphabet[(bits & 63) % (sizeof(alphabet) - 1)];
        bits >>= 6;
    }
}

/* --- the key set ---------------------------------------------------------- */

#define KV_KEYSET_ABSENT UINT32_MAX

struct _kv_keyset_t {
    uint32_t *members; /* the keys present, in no order */
    uint32_t size;     /* keys in members */
    uint32_t cap;      /* slots in members */
    uint32_t *slot;    /* by key: its index in members, or KV_KEYSET_ABSENT */
    uint32_t span;     /* keys slot covers: [0, span) */
};

kv_keyset_t *kv_keyset_new(void) {
    return calloc(1, sizeof(kv_keyset_t));
}

void kv_keyset_destroy(kv_keyset_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->members);
    free((*self_p)->slot);
    free(*self_p);
    *self_p = NULL;
}

/* Makes slot cover key n. Returns 0 or -1. */
static int s_keyset_cover(kv_keyset_t *self, uint32_t n) {
    if (n < self->span) return 0;
    uint64_t span = self->span ? self->span : 1024;
    while (span <= n) span *= 2;
    if (span > UINT32_MAX) span = UINT32_MAX;
    uint32_t *slot = realloc(self->slot, span * sizeof(*slot));
    if (!slot) return -1;
    for (uint64_t i = self->span; i < span; i++) slot[i] = KV_KEYSET_ABSENT;
    self->slot = slot;
    self->span = (uint32_t)span;
    return n < self->span ? 0 : -1;
}

int kv_keyset_add(kv_keyset_t *self, uint32_t n) {
    if (s_keyset_cover(self, n) != 0) return -1;
    if (self->slot[n] != KV_KEYSET_ABSENT) return 0; /* already present */
    if (self->size == self->cap) {
        uint32_t cap = self->cap ? self->cap * 2 : 1024;
        uint32_t *members = realloc(self->members, (size_t)cap * sizeof(*members));
        if (!members) return -1;
        self->members = members;
        self->cap = cap;
    }
    self->slot[n] = self->size;
    self->members[self->size++] = n;
    return 0;
}

void kv_keyset_remove(kv_keyset_t *self, uint32_t n) {
    if (!kv_keyset_contains(self, n)) return;
    /* Swap the last member into the hole, so members stays dense. */
    uint32_t hole = self->slot[n];
    uint32_t last = self->members[--self->size];
    self->members[hole] = last;
    self->slot[last] = hole;
    self->slot[n] = KV_KEYSET_ABSENT;
}

int kv_keyset_contains(const kv_keyset_t *self, uint32_t n) {
    return n < self->span && self->slot[n] != KV_KEYSET_ABSENT;
}

uint32_t kv_keyset_size(const kv_keyset_t *self) {
    return self->size;
}

int64_t kv_keyset_pick(const kv_keyset_t *self, uint64_t *rng) {
    if (self->size == 0) return -1;
    return self->members[kv_rand_below(rng, self->size)];
}
