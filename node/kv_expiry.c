/*  kv_expiry.c: see kv_expiry.h. A binary min-heap in one array.
 *
 *  An item is 8 bytes: the deadline in whole seconds since
 *  KV_EXPIRY_EPOCH_MS, rounded up, and the low 32 bits of the bucket hash
 *  (a bucket index never needs more: a partition's table is far below 2^32
 *  buckets). Whole seconds are enough to find what expired (the entry's own
 *  trailer holds the deadline to the millisecond and decides visibility);
 *  32 bits of them last until 2156. */
#include "kv_expiry.h"

#include <assert.h>

#include <stdlib.h>

#define KV_EXPIRY_MIN_CAP 16               /* items of the first allocation */
#define KV_EXPIRY_EPOCH_MS 1600000000000LL /* 2020-09-13: second 0 of the items */

typedef struct {
    uint32_t at;   /* deadline: seconds since KV_EXPIRY_EPOCH_MS, rounded up */
    uint32_t hash; /* the entry's bucket hash, low 32 bits */
} s_item_t;

_Static_assert(sizeof(s_item_t) == 8, "an index item is 8 bytes");

/* A deadline in ms as an item's seconds, rounded up (0 before the epoch,
 * the largest value past its range: due then, visited, kept, visited
 * again a second later). */
static uint32_t s_seconds(int64_t ms) {
    if (ms <= KV_EXPIRY_EPOCH_MS) return 0;
    int64_t seconds = (ms - KV_EXPIRY_EPOCH_MS + 999) / 1000;
    return seconds > UINT32_MAX ? UINT32_MAX : (uint32_t)seconds;
}

static int64_t s_ms(uint32_t seconds) {
    return KV_EXPIRY_EPOCH_MS + (int64_t)seconds * 1000;
}

struct _kv_expiry_t {
    s_item_t *items; /* the heap: items[0] is the earliest */
    size_t count;    /* items in use */
    size_t cap;      /* items allocated */
};

kv_expiry_t *kv_expiry_new(void) {
    return calloc(1, sizeof(kv_expiry_t));
}

void kv_expiry_destroy(kv_expiry_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

static void s_swap(s_item_t *a, s_item_t *b) {
    s_item_t t = *a;
    *a = *b;
    *b = t;
}

static void s_sift_up(s_item_t *items, size_t i) {
    while (i > 0 && items[(i - 1) / 2].at > items[i].at) {
        s_swap(&items[(i - 1) / 2], &items[i]);
        i = (i - 1) / 2;
    }
}

static void s_sift_down(s_item_t *items, size_t count, size_t i) {
    for (;;) {
        size_t least = i, left = 2 * i + 1, right = left + 1;
        if (left < count && items[left].at < items[least].at) least = left;
        if (right < count && items[right].at < items[least].at) least = right;
        if (least == i) return;
        s_swap(&items[least], &items[i]);
        i = least;
    }
}

/* Grows by half (not double): the heap is per-key memory, so its slack is
 * kept at a third at most. */
static int s_reserve(kv_expiry_t *self) {
    if (self->count < self->cap) return 0;
    size_t cap = self->cap < KV_EXPIRY_MIN_CAP ? KV_EXPIRY_MIN_CAP : self->cap + self->cap / 2;
    s_item_t *items = realloc(self->items, cap * sizeof(*items));
    if (!items) return -1;
    self->items = items;
    self->cap = cap;
    return 0;
}

int kv_expiry_push(kv_expiry_t *self, int64_t at, uint64_t hash) {
    if (s_reserve(self) != 0) return -1;
    self->items[self->count] = (s_item_t){s_seconds(at), (uint32_t)hash};
    s_sift_up(self->items, self->count++);
    return 0;
}

int64_t kv_expiry_next(const kv_expiry_t *self) {
    return self->count ? s_ms(self->items[0].at) : 0;
}

/* Halves the array once three quarters are unused, so memory follows the
 * deadlines still to come after a wave of expiries. A failed realloc keeps
 * the bigger array. */
static void s_shrink(kv_expiry_t *self) {
    if (self->count == 0) {
        kv_expiry_clear(self);
        return;
    }
    if (self->cap <= KV_EXPIRY_MIN_CAP || self->count >= self->cap / 4) return;
    s_item_t *items = realloc(self->items, (self->cap / 2) * sizeof(*items));
    if (!items) return;
    self->items = items;
    self->cap /= 2;
}

int kv_expiry_pop_due(kv_expiry_t *self, int64_t now, uint64_t *hash) {
    if (!self->count || s_ms(self->items[0].at) > now) return 0;
    *hash = self->items[0].hash;
    self->items[0] = self->items[--self->count];
    s_sift_down(self->items, self->count, 0);
    s_shrink(self);
    return 1;
}

uint64_t kv_expiry_hash_at(const kv_expiry_t *self, size_t i) {
    assert(i < self->count);
    return self->items[i].hash;
}

size_t kv_expiry_size(const kv_expiry_t *self) {
    return self->count;
}

/* An emptied heap gives its memory back: a partition whose keys all
 * expired costs nothing. */
void kv_expiry_clear(kv_expiry_t *self) {
    free(self->items);
    self->items = NULL;
    self->count = 0;
    self->cap = 0;
}

size_t kv_expiry_memory(const kv_expiry_t *self) {
    return sizeof(*self) + self->cap * sizeof(s_item_t);
}
