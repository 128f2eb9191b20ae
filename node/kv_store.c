/*  kv_store.c: see kv_store.h. */
#include "kv_store.h"

#include <stdlib.h>
#include <string.h>

#include "kv_clock.h"
#include "kv_expiry.h"
#include "kv_hash.h"
#include "kv_limits.h"

#define KV_STORE_EXPIRY_SLACK 64   /* stale index items tolerated per partition */
#define KV_STORE_EXPIRED_MAX 16    /* expired entries taken from one bucket per visit */
#define KV_STORE_INDEX_ITEM 8      /* bytes of an expiry index item (kv_expiry.h) */
#define KV_STORE_LRU_STEPS 64      /* the access clock ticks 64 times per memory's worth written */
#define KV_STORE_LRU_STEP_MIN 4096 /* ... but not more often than every 4 KB written */

struct _kv_store_t {
    uint32_t partitions;    /* number of partitions */
    kv_dict_t **dicts;      /* one per partition, NULL until first written */
    kv_dict_t **metas;      /* metadata entries (kv_store_is_meta), likewise */
    kv_expiry_t **expiries; /* each partition's deadlines (kv_expiry.h), NULL until one */
    size_t expiry_items;    /* items in all of them: 0 means no expiry work at all */
    int64_t fixed_now;      /* tests: the wall clock, when non-zero */
    int64_t clock_offset;   /* tests: ms added to the wall clock (a skewed node) */
    uint64_t lru_written;   /* key and value bytes put since the access clock last ticked */
    uint64_t lru_step;      /* ... that make it tick again */
    uint8_t lru_clock;      /* the access clock (docs/eviction.md), in every data dict */
    uint8_t seed[16];       /* bucket hash key shared by this store's dicts */
    size_t memory;          /* kv_store_memory, kept as partitions change (no walk) */
};

/* --- memory: a running total -------------------------------------------- */

/* The bytes a dict or an index holds, 0 for none. */
static size_t s_dict_memory(const kv_dict_t *dict) {
    return dict ? kv_dict_memory(dict) : 0;
}

static size_t s_index_memory(const kv_expiry_t *index) {
    return index ? kv_expiry_memory(index) : 0;
}

/* The bytes partition holds: its dicts and its expiry index. O(1). */
static size_t s_part_memory(const kv_store_t *self, uint32_t partition) {
    return s_dict_memory(self->dicts[partition]) + s_dict_memory(self->metas[partition]) +
           s_index_memory(self->expiries[partition]);
}

/* Keeps self->memory right once a partition that held before bytes has
 * changed: every change of a partition is bracketed so (never nested). */
static void s_recount(kv_store_t *self, uint32_t partition, size_t before) {
    self->memory = self->memory - before + s_part_memory(self, partition);
}

kv_store_t *kv_store_new(uint32_t partitions) {
    kv_store_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->partitions = partitions;
    self->dicts = calloc(partitions, sizeof(*self->dicts));
    self->metas = calloc(partitions, sizeof(*self->metas));
    self->expiries = calloc(partitions, sizeof(*self->expiries));
    if (!self->dicts || !self->metas || !self->expiries) {
        free(self->dicts);
        free(self->metas);
        free(self->expiries);
        free(self);
        return NULL;
    }
    kv_siphash_random_key(self->seed);
    self->memory = sizeof(*self) + 3 * (size_t)partitions * sizeof(*self->dicts);
    self->lru_step = KV_STORE_LRU_STEP_MIN;
    return self;
}

void kv_store_destroy(kv_store_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_store_t *self = *self_p;
    for (uint32_t p = 0; p < self->partitions; p++) {
        kv_dict_destroy(&self->dicts[p]);
        kv_dict_destroy(&self->metas[p]);
        kv_expiry_destroy(&self->expiries[p]);
    }
    free(self->dicts);
    free(self->metas);
    free(self->expiries);
    free(self);
    *self_p = NULL;
}

uint32_t kv_store_partitions(const kv_store_t *self) {
    return self->partitions;
}

/* The partition's dict of data or of metadata, created when create is set.
 * NULL when absent. */
static kv_dict_t *s_dict_of(kv_store_t *self, kv_dict_t **dicts, uint32_t partition, int create) {
    if (partition >= self->partitions) return NULL;
    if (!dicts[partition] && create) {
        dicts[partition] = kv_dict_new(self->seed);
        if (dicts[partition]) kv_dict_set_clock(dicts[partition], self->lru_clock);
    }
    return dicts[partition];
}

static kv_dict_t *s_dict(kv_store_t *self, uint32_t partition, int create) {
    return s_dict_of(self, self->dicts, partition, create);
}

/* The dict key belongs in. */
static kv_dict_t *s_dict_for(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                             int create) {
    return s_dict_of(self, kv_store_is_meta(key, klen) ? self->metas : self->dicts, partition,
                     create);
}

int64_t kv_store_now(const kv_store_t *self) {
    return self->fixed_now ? self->fixed_now : kv_clock_wall_ms() + self->clock_offset;
}

void kv_store_set_clock_offset(kv_store_t *self, int64_t offset) {
    self->clock_offset = offset;
}

void kv_store_set_now(kv_store_t *self, int64_t now) {
    self->fixed_now = now;
}

int kv_store_expired(const kv_store_t *self, const kv_entry_t *entry) {
    int64_t expiry = kv_entry_expiry(entry);
    return expiry != 0 && expiry <= kv_store_now(self);
}

/* --- the expiry index ---------------------------------------------------- */

static void s_expiry_forget(kv_store_t *self, uint32_t partition) {
    kv_expiry_t *index = self->expiries[partition];
    if (!index) return;
    self->expiry_items -= kv_expiry_size(index);
    kv_expiry_destroy(&self->expiries[partition]);
}

typedef struct {
    kv_store_t *store;  /* its item count */
    kv_dict_t *dict;    /* the partition's data */
    kv_expiry_t *index; /* its index, being rebuilt */
} s_reindex_t;

static void s_index_entry(const kv_entry_t *entry, void *arg) {
    s_reindex_t *re = arg;
    int64_t expiry = kv_entry_expiry(entry);
    uint64_t hash = kv_dict_hash(re->dict, kv_entry_key(entry), kv_entry_klen(entry));
    if (expiry && kv_expiry_push(re->index, expiry, hash) == 0) re->store->expiry_items++;
}

/* Rebuilds partition's index from its entries once stale items (writes
 * that replaced or removed an expiring entry) outnumber the live ones and
 * an eighth of the partition: the walk then costs at most eight entries
 * per write that made an item stale, and the index stays within twice the
 * expiring entries plus 2 bytes per key. */
static void s_expiry_tidy(kv_store_t *self, uint32_t partition, kv_dict_t *dict) {
    kv_expiry_t *index = self->expiries[partition];
    size_t expiring = kv_dict_expiring(dict);
    if (kv_expiry_size(index) <= 2 * expiring + kv_dict_size(dict) / 8 + KV_STORE_EXPIRY_SLACK)
        return;
    self->expiry_items -= kv_expiry_size(index);
    kv_expiry_clear(index);
    s_reindex_t re = {self, dict, index};
    uint64_t cursor = 0;
    do cursor = kv_dict_scan(dict, cursor, s_index_entry, &re);
    while (cursor != 0);
}

/* Indexes a deadline of key before the put that gives it, so a put never
 * leaves an entry the index cannot find (a put that then fails leaves a
 * stale item, which is harmless). Returns 0, -1 when out of memory. */
static int s_expiry_add(kv_store_t *self, uint32_t partition, kv_dict_t *dict, const char *key,
                        size_t klen, int64_t expiry) {
    if (!self->expiries[partition]) self->expiries[partition] = kv_expiry_new();
    kv_expiry_t *index = self->expiries[partition];
    if (!index || kv_expiry_push(index, expiry, kv_dict_hash(dict, key, klen)) != 0) return -1;
    self->expiry_items++;
    return 0;
}

/* --- the access clock (docs/eviction.md) --------------------------------- */

uint8_t kv_store_lru_clock(const kv_store_t *self) {
    return self->lru_clock;
}

uint8_t kv_store_idle(const kv_store_t *self, const kv_entry_t *entry) {
    return (uint8_t)(self->lru_clock - kv_entry_lru(entry));
}

/* The next tick comes after 1/KV_STORE_LRU_STEPS of what the store holds
 * now has been written: a key written once and never read again ages out
 * of a full node within about that many ticks, well inside the 256 an
 * 8-bit clock tells apart. Metadata dicts keep clock 0: never evicted. */
void kv_store_lru_advance(kv_store_t *self) {
    self->lru_clock++;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->dicts[p]) kv_dict_set_clock(self->dicts[p], self->lru_clock);
    self->lru_written = 0;
    self->lru_step = kv_store_memory(self) / KV_STORE_LRU_STEPS;
    if (self->lru_step < KV_STORE_LRU_STEP_MIN) self->lru_step = KV_STORE_LRU_STEP_MIN;
}

/* Counts a data write towards the next tick. */
static void s_lru_written(kv_store_t *self, size_t bytes) {
    self->lru_written += bytes;
    if (self->lru_written >= self->lru_step) kv_store_lru_advance(self);
}

size_t kv_store_sample(kv_store_t *self, uint32_t partition, uint64_t random,
                       const kv_entry_t **out, size_t n) {
    kv_dict_t *dict = s_dict(self, partition, 0);
    if (!dict) return 0;
    size_t before = s_part_memory(self, partition); /* sampling does a rehash step */
    size_t got = kv_dict_sample(dict, random, out, n);
    s_recount(self, partition, before);
    return got;
}

/* Entries with a deadline of a sampled bucket, up to n in all. */
typedef struct {
    const kv_entry_t **out; /* where they go */
    size_t got;             /* how many so far */
    size_t n;               /* at most */
} s_sampled_t;

static void s_take_expiring(const kv_entry_t *entry, void *arg) {
    s_sampled_t *sampled = arg;
    if (sampled->got < sampled->n && kv_entry_expiry(entry)) sampled->out[sampled->got++] = entry;
}

/* As Redis samples its expires dict: random items of the partition's
 * index lead to the buckets of entries with a deadline, so a partition
 * where few keys have one is sampled as well as one where all do. Items
 * may be stale (the entry lost its deadline or went): twice n draws at
 * most. (The index's root, the nearest deadline, is no better a draw: under
 * volatile-ttl it is the stale item of the key evicted last.) */
size_t kv_store_sample_expiring(kv_store_t *self, uint32_t partition, uint64_t random,
                                const kv_entry_t **out, size_t n) {
    kv_dict_t *dict = s_dict(self, partition, 0);
    const kv_expiry_t *index = dict ? self->expiries[partition] : NULL;
    if (!index || kv_expiry_size(index) == 0) return 0;
    s_sampled_t sampled = {out, 0, n};
    for (size_t draw = 0; draw < 2 * n && sampled.got < n; draw++) {
        size_t i = (size_t)(kv_splitmix64(&random) % kv_expiry_size(index));
        kv_dict_bucket_foreach(dict, kv_expiry_hash_at(index, i), s_take_expiring, &sampled);
    }
    return sampled.got;
}

size_t kv_store_partition_expiring(const kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->dicts[partition]) return 0;
    return kv_dict_expiring(self->dicts[partition]);
}

static int s_put(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                 const char *value, size_t vlen, uint64_t version, int64_t expiry) {
    kv_dict_t *dict = s_dict_for(self, partition, key, klen, 1);
    if (!dict) return -1;
    if (kv_store_is_meta(key, klen)) expiry = 0; /* the store's own keys never expire */
    if (expiry && s_expiry_add(self, partition, dict, key, klen, expiry) != 0) return -1;
    if (kv_dict_put(dict, key, klen, value, vlen, version, expiry) != 0) return -1;
    if (self->expiries[partition]) s_expiry_tidy(self, partition, dict);
    if (!kv_store_is_meta(key, klen)) s_lru_written(self, klen + vlen);
    return 0;
}

int kv_store_put(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                 const char *value, size_t vlen, uint64_t version, int64_t expiry) {
    if (partition >= self->partitions) return -1;
    size_t before = s_part_memory(self, partition);
    int rc = s_put(self, partition, key, klen, value, vlen, version, expiry);
    s_recount(self, partition, before);
    return rc;
}

int64_t kv_store_put_growth(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                            size_t vlen, int expiring) {
    const kv_entry_t *old = kv_store_get(self, partition, key, klen);
    int64_t index = expiring ? KV_STORE_INDEX_ITEM : 0; /* its item in the partition's index */
    if (old) /* the old copy's bytes come back as the dict compacts */
        return (int64_t)kv_dict_entry_bytes(klen, vlen, expiring) + index -
               (int64_t)kv_entry_bytes(old);
    const kv_dict_t *dict = s_dict_for(self, partition, key, klen, 0);
    return (int64_t)kv_dict_insert_cost(dict, klen, vlen, expiring) + index;
}

kv_msg_entry_t kv_store_entry_wire(const kv_entry_t *entry) {
    return (kv_msg_entry_t){{kv_entry_key(entry), kv_entry_klen(entry)},
                            {kv_entry_value(entry), kv_entry_vlen(entry)},
                            {kv_entry_version(entry), (uint64_t)kv_entry_expiry(entry)}};
}

const kv_entry_t *kv_store_get(kv_store_t *self, uint32_t partition, const char *key, size_t klen) {
    kv_dict_t *dict = s_dict_for(self, partition, key, klen, 0);
    if (!dict) return NULL;
    size_t before = s_part_memory(self, partition); /* a lookup does a rehash step */
    const kv_entry_t *entry = kv_dict_get(dict, key, klen);
    s_recount(self, partition, before);
    return entry && kv_store_expired(self, entry) ? NULL : entry;
}

/* The keys of up to KV_STORE_EXPIRED_MAX expired entries of one bucket,
 * copied out: the caller removes them after the walk. */
typedef struct {
    const kv_store_t *store;                           /* its clock */
    size_t count;                                      /* keys taken */
    int more;                                          /* expired entries left behind */
    uint8_t klen[KV_STORE_EXPIRED_MAX];                /* their lengths */
    char keys[KV_STORE_EXPIRED_MAX][KV_MAX_KEY_BYTES]; /* their bytes */
} s_expired_t;

static void s_take_expired(const kv_entry_t *entry, void *arg) {
    s_expired_t *found = arg;
    if (!kv_store_expired(found->store, entry)) return;
    if (found->count == KV_STORE_EXPIRED_MAX) {
        found->more = 1;
        return;
    }
    found->klen[found->count] = (uint8_t)kv_entry_klen(entry);
    memcpy(found->keys[found->count++], kv_entry_key(entry), kv_entry_klen(entry));
}

size_t kv_store_expire(kv_store_t *self, uint32_t partition, size_t max, kv_store_expire_fn *fn,
                       void *arg) {
    if (partition >= self->partitions || !self->expiries[partition]) return 0;
    kv_expiry_t *index = self->expiries[partition];
    size_t index_before = kv_expiry_memory(index); /* fn's removals count themselves */
    int64_t now = kv_store_now(self);
    size_t visited = 0;
    uint64_t hash;
    while (visited < max && kv_expiry_pop_due(index, now, &hash)) {
        visited++;
        self->expiry_items--;
        s_expired_t found = {.store = self};
        kv_dict_t *dict = self->dicts[partition]; /* fn's removals may have freed the last */
        if (dict) kv_dict_bucket_foreach(dict, hash, s_take_expired, &found);
        int kept = found.more;
        for (size_t i = 0; i < found.count; i++)
            if (!fn(found.keys[i], found.klen[i], arg)) kept = 1;
        /* not removed (a replica waits for its primary's removal; a key locked
         * by a transaction): visit this bucket again later */
        if (kept && kv_expiry_push(index, now + KV_STORE_EXPIRE_RETRY_MS, hash) == 0)
            self->expiry_items++;
    }
    self->memory = self->memory - index_before + kv_expiry_memory(index);
    if (kv_expiry_size(index) == 0) {
        self->memory -= kv_expiry_memory(index);
        s_expiry_forget(self, partition);
    }
    return visited;
}

int64_t kv_store_next_expiry(const kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->expiries[partition]) return 0;
    return kv_expiry_next(self->expiries[partition]);
}

size_t kv_store_expiry_items(const kv_store_t *self) {
    return self->expiry_items;
}

/* An emptied dict is freed, tables and all, so a partition whose keys all
 * went (expired, removed) costs what it cost before its first put. Its
 * successor hashes with the same seed: index items stay valid. */
static int s_delete(kv_store_t *self, uint32_t partition, const char *key, size_t klen) {
    kv_dict_t *dict = s_dict_for(self, partition, key, klen, 0);
    if (!dict || kv_dict_delete(dict, key, klen) != 0) return -1;
    if (kv_dict_size(dict) == 0) {
        kv_dict_t **slot =
            kv_store_is_meta(key, klen) ? &self->metas[partition] : &self->dicts[partition];
        kv_dict_destroy(slot);
    } else if (dict == self->dicts[partition] && self->expiries[partition]) {
        /* removals leave stale items too (evictions remove many keys with a
         * deadline, and sample this index): tidy as puts do */
        s_expiry_tidy(self, partition, dict);
    }
    return 0;
}

int kv_store_delete(kv_store_t *self, uint32_t partition, const char *key, size_t klen) {
    if (partition >= self->partitions) return -1;
    size_t before = s_part_memory(self, partition);
    int rc = s_delete(self, partition, key, klen);
    s_recount(self, partition, before);
    return rc;
}

void kv_store_clear_partition(kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions) return;
    size_t before = s_part_memory(self, partition);
    kv_dict_destroy(&self->dicts[partition]); /* frees the tables too */
    kv_dict_destroy(&self->metas[partition]);
    s_expiry_forget(self, partition);
    s_recount(self, partition, before);
}

void kv_store_clear_data(kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions) return;
    size_t before = s_part_memory(self, partition);
    kv_dict_destroy(&self->dicts[partition]);
    s_expiry_forget(self, partition);
    s_recount(self, partition, before);
}

size_t kv_store_partition_memory(const kv_store_t *self, uint32_t partition) {
    return partition < self->partitions ? s_part_memory(self, partition) : 0;
}

size_t kv_store_garbage(const kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->dicts[partition]) return 0;
    return kv_dict_garbage(self->dicts[partition]);
}

size_t kv_store_compact(kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->dicts[partition]) return 0;
    size_t before = s_part_memory(self, partition);
    (void)kv_dict_compact(self->dicts[partition]); /* short of memory: what it freed */
    s_recount(self, partition, before);
    size_t after = s_part_memory(self, partition);
    return before > after ? before - after : 0;
}

size_t kv_store_meta_size(const kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->metas[partition]) return 0;
    return kv_dict_size(self->metas[partition]);
}

size_t kv_store_partition_size(const kv_store_t *self, uint32_t partition) {
    if (partition >= self->partitions || !self->dicts[partition]) return 0;
    return kv_dict_size(self->dicts[partition]);
}

size_t kv_store_size(const kv_store_t *self) {
    size_t size = 0;
    for (uint32_t p = 0; p < self->partitions; p++) size += kv_store_partition_size(self, p);
    return size;
}

size_t kv_store_memory(const kv_store_t *self) {
    return self->memory;
}

size_t kv_store_memory_walk(const kv_store_t *self) {
    size_t bytes = sizeof(*self) + 3 * (size_t)self->partitions * sizeof(*self->dicts);
    for (uint32_t p = 0; p < self->partitions; p++) bytes += s_part_memory(self, p);
    return bytes;
}

void kv_store_rehash_for(kv_store_t *self, long max_us) {
    int64_t deadline = kv_clock_mono_us() + max_us;
    for (uint32_t p = 0; p < self->partitions; p++) {
        long left = (long)(deadline - kv_clock_mono_us());
        if (left <= 0) return;
        if (!self->dicts[p]) continue;
        size_t before = s_part_memory(self, p);
        kv_dict_rehash_for(self->dicts[p], left);
        s_recount(self, p, before);
    }
}

int kv_store_key_compare(const char *a, size_t alen, const char *b, size_t blen) {
    int order = memcmp(a, b, alen < blen ? alen : blen);
    if (order) return order;
    return (alen > blen) - (alen < blen);
}

/* --- key-ordered scans --------------------------------------------------- */

/* kv_dict_scan of one of partition's dicts, whose rehash step may change
 * its bytes (fn must not modify the store). */
static uint64_t s_scan(kv_store_t *self, uint32_t partition, kv_dict_t *dict, uint64_t cursor,
                       kv_dict_scan_fn *fn, void *arg) {
    size_t before = s_part_memory(self, partition);
    cursor = kv_dict_scan(dict, cursor, fn, arg);
    s_recount(self, partition, before);
    return cursor;
}

typedef struct {
    const kv_store_t *store;  /* its clock: expired entries are left out */
    const kv_entry_t **items; /* entries after the cursor key */
    size_t count;             /* used */
    size_t cap;               /* allocated */
    int has_after;            /* filter on after */
    const char *after;        /* the cursor key */
    size_t alen;              /* its length */
    int failed;               /* an allocation failed */
} s_gather_t;

static int s_entry_compare(const void *a, const void *b) {
    const kv_entry_t *x = *(const kv_entry_t *const *)a;
    const kv_entry_t *y = *(const kv_entry_t *const *)b;
    return kv_store_key_compare(kv_entry_key(x), kv_entry_klen(x), kv_entry_key(y),
                                kv_entry_klen(y));
}

/* A scan may meet an entry twice when a rehash step shrinks the table
 * between its calls; pages must not. Drops adjacent duplicates of a sorted
 * array and returns the new count. */
static size_t s_unique(const kv_entry_t **items, size_t count) {
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (kept == 0 || items[kept - 1] != items[i]) items[kept++] = items[i];
    return kept;
}

static void s_gather(const kv_entry_t *entry, void *arg) {
    s_gather_t *gather = arg;
    if (gather->failed || kv_store_expired(gather->store, entry)) return;
    if (gather->has_after && kv_store_key_compare(kv_entry_key(entry), kv_entry_klen(entry),
                                                  gather->after, gather->alen) <= 0)
        return; /* at or before the cursor: an earlier page had it */
    if (gather->count == gather->cap) {
        size_t cap = gather->cap ? gather->cap * 2 : 64;
        const kv_entry_t **items = realloc(gather->items, cap * sizeof(*items));
        if (!items) {
            gather->failed = 1;
            return;
        }
        gather->items = items;
        gather->cap = cap;
    }
    gather->items[gather->count++] = entry;
}

int kv_store_scan_sorted(kv_store_t *self, uint32_t partition, int has_after, const char *after,
                         size_t alen, uint32_t limit, kv_store_entry_fn *fn, void *arg) {
    kv_dict_t *dict = s_dict(self, partition, 0);
    if (!dict || limit == 0) return dict && kv_dict_size(dict) > 0 && limit == 0;
    s_gather_t gather = {self, NULL, 0, 0, has_after, after, alen, 0};
    uint64_t cursor = 0;
    do cursor = s_scan(self, partition, dict, cursor, s_gather, &gather);
    while (cursor != 0 && !gather.failed);
    if (gather.failed) {
        free(gather.items);
        return -1;
    }
    /* Sorted even when the whole rest fits in one page: fn may stop early, and
     * the caller then resumes after the last key it took. */
    if (gather.count > 1) qsort(gather.items, gather.count, sizeof(*gather.items), s_entry_compare);
    gather.count = s_unique(gather.items, gather.count);
    size_t given = 0;
    while (given < gather.count && given < limit)
        if (fn(gather.items[given++], arg)) break;
    int more = given < gather.count;
    free(gather.items);
    return more;
}

typedef struct {
    kv_store_entry_fn *fn; /* the caller's function */
    void *arg;             /* its argument */
    int stopped;           /* fn asked to stop */
} s_foreach_t;

/* (The walk is not called "foreach": clang-format takes that for a macro.) */
static void s_foreach_entry(const kv_entry_t *entry, void *arg) {
    s_foreach_t *walk = arg;
    if (!walk->stopped) walk->stopped = walk->fn(entry, walk->arg);
}

/* Walks one dict of partition; returns whether fn asked to stop. */
static int s_walk(kv_store_t *self, uint32_t partition, kv_dict_t *dict, kv_store_entry_fn *fn,
                  void *arg) {
    if (!dict) return 0;
    s_foreach_t walk = {fn, arg, 0};
    uint64_t cursor = 0;
    do cursor = s_scan(self, partition, dict, cursor, s_foreach_entry, &walk);
    while (cursor != 0 && !walk.stopped);
    return walk.stopped;
}

void kv_store_foreach(kv_store_t *self, uint32_t partition, kv_store_entry_fn *fn, void *arg) {
    if (partition >= self->partitions) return;
    if (!s_walk(self, partition, self->metas[partition], fn, arg))
        s_walk(self, partition, self->dicts[partition], fn, arg);
}

void kv_store_foreach_meta(kv_store_t *self, uint32_t partition, kv_store_entry_fn *fn, void *arg) {
    if (partition < self->partitions) s_walk(self, partition, self->metas[partition], fn, arg);
}
