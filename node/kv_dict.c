/*  kv_dict.c: the node's hash table, one per partition.
 *
 *  Chained hashing over power-of-two bucket arrays, in the manner of Redis's
 *  dict.c. A dict has two tables: ht[0] serves requests, and ht[1] exists only
 *  while the dict is being resized. Resizing moves ht[0]'s buckets into ht[1]
 *  a few at a time: every put, get, delete and scan moves one bucket (or skips
 *  a bounded run of empty ones), and kv_dict_rehash_for moves more when the
 *  node is idle. No request ever pays for a whole table. While both tables
 *  exist, lookups try both and inserts go to ht[1] only, so ht[0] only drains.
 *  When it is empty, ht[1] becomes ht[0].
 *
 *  The table doubles when it holds as many entries as buckets (load factor 1)
 *  and halves, to a quarter-to-half full size, when fewer than one bucket in
 *  eight is used, never below KV_DICT_MIN_BUCKETS. A failed allocation of a
 *  bigger or smaller table is not an error: chains get longer or stay sparse
 *  until the next attempt.
 *
 *  Entries are not malloc'd one by one: each dict cuts them from blocks of its
 *  own (an arena), 8-byte aligned, with no per-entry allocator header. A
 *  malloc'd 55-byte entry costs a 64-byte chunk; cut from a block it costs
 *  56. A deleted or replaced entry is only marked dead in its block; once
 *  the dead bytes exceed a quarter of the live ones, the dict compacts,
 *  incrementally like the rehash: each put and delete (and idle time) walks
 *  the oldest block a few entries further, moves its live entries to the
 *  newest block, relinks them, and frees the block once it is empty. An
 *  emptied dict frees every block at once.
 *
 *  Bucket arrays of 64 KB and more are mapped rather than malloc'd, so the
 *  old array a finished rehash frees goes back to the system instead of
 *  staying resident as a hole in the heap. Memory is counted as allocated
 *  (malloc_usable_size, or the mapped size), so kv_dict_memory is what the
 *  dict really holds: dead entries and unused block tails included.
 */
#include "kv_dict.h"
#include "kv_clock.h"
#include "kv_hash.h"
#include "kv_limits.h"

#include <assert.h>
#include <malloc.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KV_DICT_MIN_BUCKETS 4     /* the smallest table; shrinking stops here */
#define KV_DICT_SHRINK_RATIO 8    /* shrink when entries < buckets / this */
#define KV_DICT_EMPTY_VISITS 10   /* empty buckets a rehash step may skip per bucket */
#define KV_DICT_IDLE_BATCH 100    /* buckets moved between clock reads when idle */
#define KV_DICT_SCAN_EMPTY_MAX 64 /* empty scan steps one kv_dict_scan call may take */
#define KV_DICT_BLOCK_MIN 256     /* bytes of entries in the smallest block */
#define KV_DICT_BLOCK_MAX 16352   /* ... and in the largest: a 16 KB malloc chunk */
#define KV_DICT_BLOCK_SHARE 8     /* a new block holds about live bytes / this */
#define KV_DICT_GARBAGE_RATIO 4   /* compact when dead bytes > live bytes / this */
#define KV_DICT_GARBAGE_MIN 1024  /* ... and more than this many */
#define KV_DICT_GARBAGE_STOP 8    /* stop once dead bytes <= live bytes / this */
#define KV_DICT_COMPACT_MOVES 8   /* live entries one compaction step may move */
#define KV_DICT_COMPACT_VISITS 64 /* entries, live or dead, one step may pass */
#define KV_DICT_MAP_MIN 65536     /* bucket arrays this big are mapped, not malloc'd */
#define KV_DICT_SAMPLE_STEPS 64   /* buckets one sampled entry may look through */

/* AddressSanitizer cannot see inside the blocks: tell it which bytes are
 * free (block tails) or dead (deleted entries, past their header), so a
 * stale kv_entry_t pointer still trips it. */
#if defined(__SANITIZE_ADDRESS__)
#define KV_DICT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KV_DICT_ASAN 1
#endif
#endif
#ifdef KV_DICT_ASAN
#include <sanitizer/asan_interface.h>
#define S_POISON(addr, size) ASAN_POISON_MEMORY_REGION((addr), (size))
#define S_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#else
#define S_POISON(addr, size) ((void)(addr), (void)(size))
#define S_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

/* One key/value pair in one piece: a 12-byte header, the key, the value,
 * then optional trailers. An 11-byte key with a 32-byte value needs 55 bytes
 * and takes 56 in a block; malloc'd it would take a 64-byte glibc chunk (80
 * with the former 20-byte header), and a separate key, value and node three.
 *
 * Metadata that only some entries need lives in fixed-size trailers after
 * the value bytes, each announced by a flags bit, so entries without it pay
 * nothing and adding one needs no new layout. The version (the base for
 * conditional writes) is the first: stored only when the caller passes one.
 * The expiry time (TTL) is the next. Trailers are unaligned: copy them
 * with memcpy, in bit order.
 *
 * The access clock (lru) costs no byte at all: the four bytes after the
 * chain pointer were a 16-bit value length, an 8-bit key length and an
 * 8-bit flags byte, but values are at most KV_MAX_VALUE_BYTES (1024: 11
 * bits) and only three flags were in use. Packed as bit-fields of one
 * 32-bit word they leave 8 bits for the clock and two spare flags for
 * future trailers. A trailer would have cost every entry whose size is a
 * multiple of 8 a whole 8 more bytes (1 byte per entry on average, and the
 * benchmark's 11-byte key with a 32-byte value and a version sits at 63
 * bytes, just under such a step). Why 8 bits suffice: docs/eviction.md. */
struct _kv_entry_t {
    kv_entry_t *next;     /* next entry in the same bucket, or NULL */
    uint32_t vlen : 11;   /* value bytes, 0..KV_MAX_VALUE_BYTES */
    uint32_t klen_m1 : 8; /* key bytes minus one: keys are 1..KV_MAX_KEY_BYTES bytes */
    uint32_t flags : 5;   /* KV_ENTRY_F_* bits: which trailers follow the value */
    uint32_t lru : 8;     /* the dict's access clock when last read or written */
    char data[];          /* klen key bytes, vlen value bytes, then the trailers */
};

#define KV_ENTRY_F_VERSION 0x01 /* a uint64_t version follows the value */
#define KV_ENTRY_F_EXPIRY 0x02  /* an int64_t expiry (wall clock ms) follows */
#define KV_ENTRY_F_DEAD 0x10    /* internal: deleted or replaced, awaiting compaction */

#define KV_ENTRY_HEADER offsetof(kv_entry_t, data)
#define KV_ENTRY_ALIGN alignof(kv_entry_t) /* entries start at multiples of this */

_Static_assert(KV_ENTRY_HEADER == 12, "the entry header should stay 12 bytes");
_Static_assert(KV_MAX_KEY_BYTES - 1 <= UINT8_MAX, "klen_m1 must hold every key length");
_Static_assert(KV_MAX_VALUE_BYTES < (1u << 11), "vlen must hold every value length");

/* A run of entries cut one after the other. Entries are walked in order by
 * their own lengths (every one is s_cut_bytes long), so a dead entry keeps
 * its header until the block is freed. */
typedef struct _dict_block_t {
    struct _dict_block_t *next;          /* the next newer block, or NULL */
    uint32_t size;                       /* bytes of data */
    uint32_t used;                       /* bytes cut so far, from the start of data */
    alignas(KV_ENTRY_ALIGN) char data[]; /* the entries */
} dict_block_t;

/* One bucket array with its chains. */
typedef struct {
    kv_entry_t **buckets; /* chain heads; NULL when the table is not allocated */
    size_t size;          /* number of buckets: a power of two, or 0 */
    size_t used;          /* entries chained in this table */
    bool mapped;          /* buckets came from mmap, not calloc */
} dict_table_t;

struct _kv_dict_t {
    dict_table_t ht[2];   /* ht[0] serves; ht[1] is the resize target while rehashing */
    size_t rehash_idx;    /* next ht[0] bucket to move while rehashing */
    size_t memory;        /* usable bytes of all blocks and bucket arrays */
    dict_block_t *oldest; /* entry blocks, oldest first: compaction empties this one */
    dict_block_t *newest; /* where new entries are cut */
    size_t live;          /* bytes of linked entries */
    size_t dead;          /* bytes of dead entries still in blocks */
    size_t expiring;      /* linked entries with an expiry trailer */
    uint32_t compact_pos; /* offset in oldest of the next entry to compact */
    bool compacting;      /* evacuating the oldest blocks until dead is low */
    uint8_t clock;        /* the access clock puts and gets stamp (kv_dict_set_clock) */
    uint8_t seed[16];     /* SipHash key of the bucket hash */
};

//  --------------------------------------------------------------------------
//  Entry layout

static inline size_t s_klen(const kv_entry_t *entry) {
    return (size_t)entry->klen_m1 + 1;
}

/* Bytes of the trailers flags announces. */
static inline size_t s_trailer_bytes(uint8_t flags) {
    return ((flags & KV_ENTRY_F_VERSION) ? sizeof(uint64_t) : 0) +
           ((flags & KV_ENTRY_F_EXPIRY) ? sizeof(int64_t) : 0);
}

/* Never less than the struct itself: a 1-byte key with an empty value would
 * otherwise be a block smaller than its type. */
static inline size_t s_entry_bytes(size_t klen, size_t vlen, uint8_t flags) {
    size_t bytes = KV_ENTRY_HEADER + klen + vlen + s_trailer_bytes(flags);
    return bytes < sizeof(kv_entry_t) ? sizeof(kv_entry_t) : bytes;
}

/* What a put stores besides key and value; a zero member stores nothing. */
typedef struct {
    uint64_t version; /* the version trailer */
    int64_t expiry;   /* the expiry trailer */
    uint8_t lru;      /* the access clock (not a trailer: always stored) */
} s_meta_t;

/* The trailer flags for meta. */
static inline uint8_t s_flags_for(const s_meta_t *meta) {
    return (uint8_t)((meta->version ? KV_ENTRY_F_VERSION : 0) |
                     (meta->expiry ? KV_ENTRY_F_EXPIRY : 0));
}

/* Fills in everything after the key: value bytes, flags, trailers. The block
 * must be s_entry_bytes(klen, vlen, s_flags_for(meta)) bytes at least. */
static void s_entry_fill(kv_entry_t *entry, size_t klen, const char *value, size_t vlen,
                         const s_meta_t *meta) {
    char *end = entry->data + klen;
    if (vlen) memcpy(end, value, vlen); /* value may be NULL when empty */
    entry->vlen = (uint16_t)vlen;
    entry->flags = s_flags_for(meta);
    entry->lru = meta->lru;
    end += vlen;
    if (meta->version) {
        memcpy(end, &meta->version, sizeof meta->version);
        end += sizeof meta->version;
    }
    if (meta->expiry) memcpy(end, &meta->expiry, sizeof meta->expiry);
}

/* Bytes an entry occupies in its block: whole KV_ENTRY_ALIGN units. */
static inline size_t s_cut_bytes(size_t bytes) {
    return (bytes + KV_ENTRY_ALIGN - 1) & ~(KV_ENTRY_ALIGN - 1);
}

static inline size_t s_entry_cut_bytes(const kv_entry_t *entry) {
    return s_cut_bytes(s_entry_bytes(s_klen(entry), entry->vlen, entry->flags));
}

static inline bool s_entry_matches(const kv_entry_t *entry, const char *key, size_t klen) {
    return s_klen(entry) == klen && memcmp(entry->data, key, klen) == 0;
}

//  --------------------------------------------------------------------------
//  Blocks: the dict's arena

/* Appends a block with room for at least need bytes, sized to about
 * 1/KV_DICT_BLOCK_SHARE of the live data (so a small dict stays small and a
 * big one has few blocks and at most one partly used). Returns it or NULL. */
static dict_block_t *s_block_new(kv_dict_t *self, size_t need) {
    size_t size = self->live / KV_DICT_BLOCK_SHARE;
    if (size < KV_DICT_BLOCK_MIN) size = KV_DICT_BLOCK_MIN;
    if (size > KV_DICT_BLOCK_MAX) size = KV_DICT_BLOCK_MAX;
    if (size < need) size = need;
    dict_block_t *block = malloc(offsetof(dict_block_t, data) + size);
    if (!block) return NULL;
    block->next = NULL;
    block->size = (uint32_t)size;
    block->used = 0;
    S_POISON(block->data, size);
    if (self->newest)
        self->newest->next = block;
    else
        self->oldest = block;
    self->newest = block;
    self->memory += malloc_usable_size(block);
    return block;
}

/* Frees the oldest block; what it still holds must be dead or moved. */
static void s_block_pop(kv_dict_t *self) {
    dict_block_t *block = self->oldest;
    self->oldest = block->next;
    if (!self->oldest) self->newest = NULL;
    self->memory -= malloc_usable_size(block);
    free(block);
    self->compact_pos = 0;
}

static void s_blocks_free(kv_dict_t *self) {
    while (self->oldest) s_block_pop(self);
    self->live = 0;
    self->dead = 0;
    self->compacting = false;
}

/* Cuts bytes (a multiple of KV_ENTRY_ALIGN) for a live entry from the newest
 * block, or from a new one. Never from the block being compacted. Returns
 * NULL when out of memory. */
static kv_entry_t *s_cut(kv_dict_t *self, size_t bytes) {
    dict_block_t *block = self->newest;
    if (!block || block->size - block->used < bytes || (self->compacting && block == self->oldest))
        block = s_block_new(self, bytes);
    if (!block) return NULL;
    char *at = block->data + block->used;
    block->used += (uint32_t)bytes;
    S_UNPOISON(at, bytes);
    self->live += bytes;
    return (kv_entry_t *)(void *)at;
}

/* Marks an entry nobody links to any more as dead: its bytes wait in the
 * block for compaction, and only its header stays readable for the walk. */
static void s_entry_retire(kv_dict_t *self, kv_entry_t *entry) {
    size_t bytes = s_entry_cut_bytes(entry);
    entry->flags |= KV_ENTRY_F_DEAD;
    self->live -= bytes;
    self->dead += bytes;
    S_POISON(entry->data, bytes - KV_ENTRY_HEADER);
}

//  --------------------------------------------------------------------------
//  Entries

/* Cuts an entry for key and value. Returns NULL when out of memory; the
 * entry is not linked anywhere yet. */
static kv_entry_t *s_entry_new(kv_dict_t *self, const char *key, size_t klen, const char *value,
                               size_t vlen, const s_meta_t *meta) {
    kv_entry_t *entry = s_cut(self, s_cut_bytes(s_entry_bytes(klen, vlen, s_flags_for(meta))));
    if (!entry) return NULL;
    entry->next = NULL;
    entry->klen_m1 = (uint8_t)(klen - 1);
    memcpy(entry->data, key, klen);
    s_entry_fill(entry, klen, value, vlen, meta);
    return entry;
}

/* Writes a new value into the entry *link points to: in place when it needs
 * the same number of bytes, else into a new entry that takes the old one's
 * place in its chain (the old one dies). Returns -1, with the entry
 * untouched, only when out of memory. */
static int s_entry_overwrite(kv_dict_t *self, kv_entry_t **link, const char *value, size_t vlen,
                             const s_meta_t *meta) {
    kv_entry_t *entry = *link;
    size_t klen = s_klen(entry);
    size_t need = s_cut_bytes(s_entry_bytes(klen, vlen, s_flags_for(meta)));
    int had = (entry->flags & KV_ENTRY_F_EXPIRY) != 0;
    if (need != s_entry_cut_bytes(entry)) {
        kv_entry_t *moved = s_cut(self, need);
        if (!moved) return -1;
        moved->next = entry->next;
        moved->klen_m1 = entry->klen_m1;
        memcpy(moved->data, entry->data, klen);
        *link = moved;
        s_entry_retire(self, entry);
        entry = moved;
    }
    s_entry_fill(entry, klen, value, vlen, meta);
    if (had && !meta->expiry) self->expiring--;
    if (!had && meta->expiry) self->expiring++;
    return 0;
}

//  --------------------------------------------------------------------------
//  Tables

static inline bool s_is_rehashing(const kv_dict_t *self) {
    return self->ht[1].buckets != NULL;
}

static inline uint64_t s_hash(const kv_dict_t *self, const char *key, size_t klen) {
    return kv_siphash(key, klen, self->seed);
}

/* Bytes of a table's bucket array as allocated. */
static size_t s_table_bytes(const dict_table_t *table) {
    if (!table->buckets) return 0;
    return table->mapped ? table->size * sizeof(kv_entry_t *) : malloc_usable_size(table->buckets);
}

/* Fresh zero-filled pages, or NULL. */
static void *s_map_zeroed(size_t bytes) {
    /* cppcheck-suppress invalidFunctionArg ; fd -1 is what MAP_ANONYMOUS asks for */
    void *pages = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* cppcheck-suppress memleak ; MAP_FAILED is not a mapping: nothing to unmap */
    if (pages == MAP_FAILED) return NULL;
    return pages;
}

/* Allocates size empty buckets into an unallocated table. Returns 0 or -1.
 * Big arrays (whole pages: KV_DICT_MAP_MIN is a multiple of any page size
 * in use) are mapped, so the one a finished rehash frees goes back to the
 * system at once: from the heap it would stay resident as a hole. */
static int s_table_alloc(kv_dict_t *self, dict_table_t *table, size_t size) {
    size_t bytes = size * sizeof(kv_entry_t *);
    kv_entry_t **buckets = NULL;
    bool mapped = false;
    if (bytes >= KV_DICT_MAP_MIN) {
        buckets = s_map_zeroed(bytes);
        mapped = buckets != NULL; /* on failure, try the heap */
    }
    if (!mapped) buckets = calloc(size, sizeof(kv_entry_t *));
    if (!buckets) return -1;
    *table = (dict_table_t){buckets, size, 0, mapped};
    self->memory += s_table_bytes(table);
    return 0;
}

/* Frees the bucket array (not the entries) and leaves the table unallocated. */
static void s_table_release(kv_dict_t *self, dict_table_t *table) {
    self->memory -= s_table_bytes(table);
    if (table->mapped)
        munmap(table->buckets, table->size * sizeof(kv_entry_t *));
    else
        free(table->buckets);
    *table = (dict_table_t){0};
}

/* The link (bucket head or a next field) that points to key's entry, or
 * NULL. Stores the table holding it in *table_p when table_p is given. */
static kv_entry_t **s_find_link(kv_dict_t *self, uint64_t hash, const char *key, size_t klen,
                                dict_table_t **table_p) {
    for (int t = 0; t < 2; t++) {
        dict_table_t *table = &self->ht[t];
        if (!table->buckets) continue;
        kv_entry_t **link = &table->buckets[hash & (table->size - 1)];
        for (; *link; link = &(*link)->next) {
            if (!s_entry_matches(*link, key, klen)) continue;
            if (table_p) *table_p = table;
            return link;
        }
    }
    return NULL;
}

/* Links a new entry at the head of its bucket: in ht[1] while rehashing, so
 * that ht[0] only ever drains. */
static void s_link(kv_dict_t *self, kv_entry_t *entry, uint64_t hash) {
    dict_table_t *table = s_is_rehashing(self) ? &self->ht[1] : &self->ht[0];
    kv_entry_t **head = &table->buckets[hash & (table->size - 1)];
    entry->next = *head;
    *head = entry;
    table->used++;
}

//  --------------------------------------------------------------------------
//  Incremental rehash

/* The smallest power of two >= n, and at least KV_DICT_MIN_BUCKETS. */
static size_t s_bucket_count_for(size_t n) {
    size_t size = KV_DICT_MIN_BUCKETS;
    while (size < n) size *= 2;
    return size;
}

/* Starts moving ht[0] into a new table of size buckets. Returns 0, or -1 when
 * the new table cannot be allocated (then nothing changes). */
static int s_resize_start(kv_dict_t *self, size_t size) {
    if (s_table_alloc(self, &self->ht[1], size) == -1) return -1;
    self->rehash_idx = 0;
    return 0;
}

static int s_shrink_if_needed(kv_dict_t *self);

/* ht[0] is empty: ht[1] takes its place and the rehash is over. Deletes made
 * during the rehash could not start a shrink, so check for one now: after a
 * mass delete, reads alone then keep shrinking the table. */
static void s_rehash_finish(kv_dict_t *self) {
    s_table_release(self, &self->ht[0]);
    self->ht[0] = self->ht[1];
    self->ht[1] = (dict_table_t){0};
    self->rehash_idx = 0;
    s_shrink_if_needed(self);
}

/* Moves the chain of ht[0]'s bucket idx into ht[1]. When shrinking, every
 * entry of bucket idx lands in bucket idx & (smaller mask), so the chain is
 * spliced whole without hashing a key; when growing, each key is rehashed to
 * pick one of the buckets idx splits into. */
static void s_rehash_bucket(kv_dict_t *self, size_t idx) {
    dict_table_t *from = &self->ht[0];
    dict_table_t *to = &self->ht[1];
    kv_entry_t *entry = from->buckets[idx];
    from->buckets[idx] = NULL;
    while (entry) {
        kv_entry_t *next = entry->next;
        size_t dest = to->size < from->size
                          ? idx & (to->size - 1)
                          : s_hash(self, entry->data, s_klen(entry)) & (to->size - 1);
        entry->next = to->buckets[dest];
        to->buckets[dest] = entry;
        from->used--;
        to->used++;
        entry = next;
    }
}

/* Moves up to n non-empty buckets from ht[0] to ht[1]. It will visit at most
 * n * KV_DICT_EMPTY_VISITS empty buckets in total, otherwise the work of one
 * step after a mass delete (a big, nearly empty ht[0]) would be unbounded.
 * Returns 1 while a rehash remains in progress (possibly a shrink that the
 * finished one started), else 0. */
static int s_rehash(kv_dict_t *self, size_t n) {
    if (!s_is_rehashing(self)) return 0;
    dict_table_t *from = &self->ht[0];
    size_t empty_visits = n * KV_DICT_EMPTY_VISITS;
    while (n-- > 0 && from->used > 0) {
        /* rehash_idx cannot run past the end: a used bucket lies ahead. */
        while (!from->buckets[self->rehash_idx]) {
            self->rehash_idx++;
            if (--empty_visits == 0) return 1;
        }
        s_rehash_bucket(self, self->rehash_idx++);
    }
    if (from->used > 0) return 1;
    s_rehash_finish(self);
    return s_is_rehashing(self);
}

/* The bounded step every operation pays while a rehash is in progress. */
static inline void s_rehash_step(kv_dict_t *self) {
    if (s_is_rehashing(self)) s_rehash(self, 1);
}

/* Makes room for one more entry. Only the first table is required (returns
 * -1 when it cannot be allocated); growing beyond it is best effort. No
 * second resize starts while one is running: each insert moves at least one
 * bucket, so ht[0] drains before the doubled ht[1] fills. */
static int s_reserve(kv_dict_t *self) {
    dict_table_t *table = &self->ht[0];
    if (!table->buckets) return s_table_alloc(self, table, KV_DICT_MIN_BUCKETS);
    if (s_is_rehashing(self)) return 0;
    if (table->used < table->size) return 0; /* load factor still below 1 */
    if (table->size > SIZE_MAX / 2 / sizeof(kv_entry_t *)) return 0;
    s_resize_start(self, table->size * 2); /* on failure, chains just grow longer */
    return 0;
}

/* Starts shrinking ht[0] when fewer than one bucket in KV_DICT_SHRINK_RATIO
 * is used. The new table is a quarter to half full, so it takes many inserts
 * before the dict grows again. Returns 1 if a shrink started, else 0. */
static int s_shrink_if_needed(kv_dict_t *self) {
    dict_table_t *table = &self->ht[0];
    if (s_is_rehashing(self)) return 0;
    if (table->size <= KV_DICT_MIN_BUCKETS) return 0;
    if (table->used >= table->size / KV_DICT_SHRINK_RATIO) return 0;
    return s_resize_start(self, s_bucket_count_for(table->used * 2)) == 0;
}

//  --------------------------------------------------------------------------
//  Incremental compaction

/* The link that points to entry (which is linked), found through its key. */
static kv_entry_t **s_link_to(kv_dict_t *self, const kv_entry_t *entry) {
    uint64_t hash = s_hash(self, entry->data, s_klen(entry));
    for (int t = 0; t < 2; t++) {
        dict_table_t *table = &self->ht[t];
        if (!table->buckets) continue;
        kv_entry_t **link = &table->buckets[hash & (table->size - 1)];
        for (; *link; link = &(*link)->next)
            if (*link == entry) return link;
    }
    return NULL;
}

/* Moves a live entry of the block being compacted to the newest block and
 * relinks it. Returns 0, or -1 when no block could be allocated. */
static int s_entry_move(kv_dict_t *self, kv_entry_t *entry, size_t bytes) {
    kv_entry_t **link = s_link_to(self, entry);
    assert(link); /* a live entry is always linked */
    kv_entry_t *copy = s_cut(self, bytes);
    if (!copy) return -1;
    memcpy(copy, entry, bytes);
    *link = copy;
    self->live -= bytes; /* the old copy goes with its block */
    return 0;
}

/* Starts compacting when dead bytes pass their share of the live ones. */
static void s_compact_check(kv_dict_t *self) {
    if (self->compacting || self->dead <= KV_DICT_GARBAGE_MIN) return;
    if (self->dead <= self->live / KV_DICT_GARBAGE_RATIO) return;
    self->compacting = true;
    self->compact_pos = 0;
}

/* The entry at the compaction position of the oldest block, or NULL when
 * the block is walked to its end. */
static kv_entry_t *s_compact_at(const kv_dict_t *self) {
    const dict_block_t *block = self->oldest;
    if (self->compact_pos >= block->used) return NULL;
    return (kv_entry_t *)(void *)(block->data + self->compact_pos);
}

/* Passes the entry at the compaction position, moving it when live, or
 * frees the oldest block once walked to its end. Returns 1 when it freed
 * the block, 0 when it passed an entry, -1 when a move found no memory
 * (nothing changed: later). A block is only ever left walked part way
 * while compacting: moved entries keep no mark of their own in it. */
static int s_compact_visit(kv_dict_t *self) {
    kv_entry_t *entry = s_compact_at(self);
    if (!entry) {
        s_block_pop(self);
        return 1;
    }
    size_t bytes = s_entry_cut_bytes(entry);
    if (entry->flags & KV_ENTRY_F_DEAD)
        self->dead -= bytes;
    else if (s_entry_move(self, entry, bytes) == -1)
        return -1;
    self->compact_pos += (uint32_t)bytes;
    return 0;
}

/* Walks the oldest block past up to visits entries, moving at most moves
 * live ones; a block walked to its end is freed. Compaction stops once the
 * dead bytes are down to half the share that started it, so it does not
 * chase a trickle of deletes. Returns 1 while compaction remains, else 0. */
static int s_compact(kv_dict_t *self, int moves, int visits) {
    while (self->compacting && visits-- > 0) {
        const kv_entry_t *entry = s_compact_at(self);
        if (entry && !(entry->flags & KV_ENTRY_F_DEAD) && moves-- == 0) break;
        int step = s_compact_visit(self);
        if (step == -1) break; /* out of memory: later */
        if (step == 1 && (!self->oldest || self->dead <= self->live / KV_DICT_GARBAGE_STOP))
            self->compacting = false;
    }
    return self->compacting;
}

int kv_dict_compact(kv_dict_t *self) {
    assert(self);
    const dict_block_t *last = self->newest; /* moved entries land after it */
    if (!last || self->dead == 0) return 0;
    self->compacting = true; /* compact_pos: 0, or where an incremental one stopped */
    for (;;) {
        int was_last = self->oldest == last, step;
        while ((step = s_compact_visit(self)) == 0) continue;
        if (step == -1) return -1; /* stays compacting: idle time and writes go on */
        if (was_last || !self->oldest || self->dead == 0) break;
    }
    self->compacting = false;
    s_compact_check(self);
    return 0;
}

size_t kv_dict_garbage(const kv_dict_t *self) {
    assert(self);
    return self->dead;
}

/* The bounded compaction step every put and delete pays while one runs. */
static inline void s_compact_step(kv_dict_t *self) {
    if (self->compacting) s_compact(self, KV_DICT_COMPACT_MOVES, KV_DICT_COMPACT_VISITS);
}

/* After an entry died: an emptied dict frees its blocks at once, else a
 * compaction may be due. */
static void s_after_retire(kv_dict_t *self) {
    if (kv_dict_size(self) == 0)
        s_blocks_free(self);
    else
        s_compact_check(self);
}

//  --------------------------------------------------------------------------
//  Reverse-binary scan
//
//  Scanning is stateless: the cursor is all the caller keeps. It names a
//  bucket by its low bits, but is advanced by incrementing its bits in
//  reverse order (most significant bucket bit first). Why: in a table of 2^n
//  buckets, bucket b splits into b and b + 2^n when the table doubles, and
//  those are exactly the buckets whose low n bits equal b. Incrementing from
//  the top bit down makes each visited set close under that: at any moment
//  the buckets already visited are those whose reversed low bits are below
//  the reversed cursor, in a table of any size. So, between calls:
//
//  - if the table grew, the expansions of the visited buckets all sort below
//    the cursor: nothing is missed and nothing is repeated;
//  - if it shrank, the cursor's bucket in the smaller table merges a visited
//    and an unvisited one: nothing is missed, but a few entries repeat.
//
//  While rehashing, entries live in both tables. A call visits the cursor's
//  bucket in the smaller table and then every bucket it expands to in the
//  larger one, advancing the cursor through the extra bits, so it returns
//  with those bits clear: a cursor that is valid for either table, whatever
//  the rehash does before the next call.

/* Reverses the 64 bits of v. */
static inline uint64_t s_rev64(uint64_t v) {
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0f0f0f0f0f0f0f0fULL) | ((v & 0x0f0f0f0f0f0f0f0fULL) << 4);
    return __builtin_bswap64(v);
}

/* The next cursor after v in a table of mask + 1 buckets. Setting the bits
 * above the mask makes the reversed increment carry straight into the
 * bucket bits, and leaves the bits above the mask clear afterwards. */
static inline uint64_t s_cursor_next(uint64_t v, uint64_t mask) {
    v |= ~mask;
    return s_rev64(s_rev64(v) + 1);
}

/* Calls fn on each entry of one chain and returns how many there were. */
static size_t s_scan_chain(const kv_entry_t *entry, kv_dict_scan_fn *fn, void *arg) {
    size_t count = 0;
    for (; entry; entry = entry->next, count++) fn(entry, arg);
    return count;
}

/* One scan step: the cursor's bucket (and its expansions while rehashing).
 * Adds the entries seen to *seen and returns the next cursor. */
static uint64_t s_scan_step(kv_dict_t *self, uint64_t v, kv_dict_scan_fn *fn, void *arg,
                            size_t *seen) {
    const dict_table_t *small = &self->ht[0];
    if (!s_is_rehashing(self)) {
        *seen += s_scan_chain(small->buckets[v & (small->size - 1)], fn, arg);
        return s_cursor_next(v, small->size - 1);
    }
    const dict_table_t *large = &self->ht[1];
    if (small->size > large->size) {
        small = &self->ht[1];
        large = &self->ht[0];
    }
    uint64_t m0 = small->size - 1;
    uint64_t m1 = large->size - 1;
    *seen += s_scan_chain(small->buckets[v & m0], fn, arg);
    do {
        *seen += s_scan_chain(large->buckets[v & m1], fn, arg);
        v = s_cursor_next(v, m1);
    } while (v & (m0 ^ m1)); /* until the extra bits wrap back to zero */
    return v;
}

//  --------------------------------------------------------------------------
//  Public API

kv_dict_t *kv_dict_new(const uint8_t seed[16]) {
    assert(seed);
    kv_dict_t *self = calloc(1, sizeof(kv_dict_t));
    if (!self) return NULL;
    memcpy(self->seed, seed, sizeof self->seed);
    return self;
}

void kv_dict_destroy(kv_dict_t **self_p) {
    assert(self_p);
    if (!*self_p) return;
    kv_dict_clear(*self_p);
    free(*self_p);
    *self_p = NULL;
}

/* Keys must be 1..KV_MAX_KEY_BYTES and values 0..KV_MAX_VALUE_BYTES bytes;
 * the gateway enforces that, and anything else is refused here with -1 rather
 * than truncated into the entry's length fields. */
int kv_dict_put(kv_dict_t *self, const char *key, size_t klen, const char *value, size_t vlen,
                uint64_t version, int64_t expiry) {
    const s_meta_t meta = {version, expiry, self->clock};
    assert(self);
    if (klen == 0 || klen > (size_t)KV_MAX_KEY_BYTES) return -1;
    if (vlen > (size_t)KV_MAX_VALUE_BYTES) return -1;
    s_rehash_step(self);
    s_compact_step(self);
    uint64_t hash = s_hash(self, key, klen);
    kv_entry_t **link = s_find_link(self, hash, key, klen, NULL);
    if (link) {
        if (s_entry_overwrite(self, link, value, vlen, &meta) == -1) return -1;
        s_compact_check(self); /* a resized value left a dead copy */
        return 0;
    }
    if (s_reserve(self) == -1) return -1; /* no table at all: the dict is unchanged */
    kv_entry_t *entry = s_entry_new(self, key, klen, value, vlen, &meta);
    if (!entry) return -1;
    s_link(self, entry, hash);
    if (expiry) self->expiring++;
    return 0;
}

const kv_entry_t *kv_dict_get(kv_dict_t *self, const char *key, size_t klen) {
    assert(self);
    s_rehash_step(self);
    if (kv_dict_size(self) == 0) return NULL; /* spare the hash on empty partitions */
    kv_entry_t **link = s_find_link(self, s_hash(self, key, klen), key, klen, NULL);
    if (!link) return NULL;
    (*link)->lru = self->clock; /* a read is an access: one store to a line just read */
    return *link;
}

int kv_dict_delete(kv_dict_t *self, const char *key, size_t klen) {
    assert(self);
    s_rehash_step(self);
    if (kv_dict_size(self) == 0) return -1;
    s_compact_step(self);
    dict_table_t *table = NULL;
    kv_entry_t **link = s_find_link(self, s_hash(self, key, klen), key, klen, &table);
    if (!link) return -1;
    kv_entry_t *entry = *link;
    *link = entry->next;
    table->used--;
    if (entry->flags & KV_ENTRY_F_EXPIRY) self->expiring--;
    s_entry_retire(self, entry);
    s_after_retire(self);
    s_shrink_if_needed(self);
    return 0;
}

/* Frees every block and both bucket arrays, so an emptied partition costs
 * nothing until its next put. O(blocks): entries are not visited. */
void kv_dict_clear(kv_dict_t *self) {
    assert(self);
    s_blocks_free(self);
    for (int t = 0; t < 2; t++) s_table_release(self, &self->ht[t]);
    self->rehash_idx = 0;
    self->expiring = 0;
}

size_t kv_dict_size(const kv_dict_t *self) {
    assert(self);
    return self->ht[0].used + self->ht[1].used;
}

size_t kv_dict_expiring(const kv_dict_t *self) {
    assert(self);
    return self->expiring;
}

size_t kv_dict_memory(const kv_dict_t *self) {
    assert(self);
    return self->memory;
}

/* Moves buckets in batches of KV_DICT_IDLE_BATCH and compacts in steps of
 * as many entries, reading the clock between batches, so it always does at
 * least one batch (max_us <= 0 included) and overruns max_us by at most one
 * batch. */
int kv_dict_rehash_for(kv_dict_t *self, long max_us) {
    assert(self);
    s_shrink_if_needed(self); /* retries a shrink that an allocation failure skipped */
    if (!s_is_rehashing(self) && !self->compacting) return 0; /* usual: no clock read */
    int64_t deadline = kv_clock_mono_us() + max_us;
    for (;;) {
        int more = s_rehash(self, KV_DICT_IDLE_BATCH);
        more |= s_compact(self, KV_DICT_IDLE_BATCH, KV_DICT_IDLE_BATCH * 8);
        if (!more || kv_clock_mono_us() >= deadline) break;
    }
    return s_is_rehashing(self) || self->compacting;
}

/* Skips runs of empty buckets (up to KV_DICT_SCAN_EMPTY_MAX steps) so a
 * sparse table does not cost the caller one call per bucket. A call may
 * return the cursor with no entry seen; only 0 means the end. */
uint64_t kv_dict_scan(kv_dict_t *self, uint64_t cursor, kv_dict_scan_fn *fn, void *arg) {
    assert(self);
    assert(fn);
    if (kv_dict_size(self) == 0) return 0; /* nothing to visit: the scan is complete */
    /* Rehash before visiting, never during, so fn never sees the tables move. */
    s_rehash_step(self);
    size_t seen = 0;
    for (int steps = 0; steps < KV_DICT_SCAN_EMPTY_MAX && seen == 0; steps++) {
        cursor = s_scan_step(self, cursor, fn, arg, &seen);
        if (cursor == 0) break;
    }
    return cursor;
}

void kv_dict_set_clock(kv_dict_t *self, uint8_t clock) {
    assert(self);
    self->clock = clock;
}

uint8_t kv_dict_clock(const kv_dict_t *self) {
    assert(self);
    return self->clock;
}

/* The pick-th entry chained at bucket idx of either table (ht[0]'s buckets
 * below rehash_idx are empty), or NULL past the last; *count gets how many
 * are chained there when pick is SIZE_MAX. */
static const kv_entry_t *s_bucket_entry(const kv_dict_t *self, size_t idx, size_t pick,
                                        size_t *count) {
    size_t seen = 0;
    for (int t = 0; t < 2; t++) {
        const dict_table_t *table = &self->ht[t];
        if (!table->buckets || idx >= table->size) continue;
        for (const kv_entry_t *e = table->buckets[idx]; e; e = e->next)
            if (seen++ == pick) return e;
    }
    if (count) *count = seen;
    return NULL;
}

/* One random entry: the first non-empty bucket from a random one (of the
 * larger table's index space while rehashing), and a random entry of its
 * chains; NULL when KV_DICT_SAMPLE_STEPS buckets were all empty. Entries
 * after a run of empty buckets, or in short chains, come up a little more
 * often: no entry is out of reach. */
static const kv_entry_t *s_sample_one(const kv_dict_t *self, size_t size, uint64_t *state) {
    size_t idx = (size_t)kv_splitmix64(state) & (size - 1);
    for (int steps = 0; steps < KV_DICT_SAMPLE_STEPS; steps++, idx = (idx + 1) & (size - 1)) {
        size_t count = 0;
        s_bucket_entry(self, idx, SIZE_MAX, &count);
        if (count) return s_bucket_entry(self, idx, kv_splitmix64(state) % count, NULL);
    }
    return NULL;
}

/* Every entry of a small dict, in bucket order: random draws would repeat
 * some and miss others. */
static size_t s_sample_all(const kv_dict_t *self, const kv_entry_t **out) {
    size_t got = 0;
    for (int t = 0; t < 2; t++)
        for (size_t idx = 0; idx < self->ht[t].size; idx++)
            for (const kv_entry_t *e = self->ht[t].buckets[idx]; e; e = e->next) out[got++] = e;
    return got;
}

/* Unlike Redis's dictGetSomeKeys, which takes whole chains of consecutive
 * buckets, each entry comes from a bucket of its own: a walk cut off in
 * the middle of a chain never reaches the entries behind, and chain heads
 * are the newest entries of their bucket, so consecutive chains would
 * lean the sample towards young keys, which LRU looks for least. */
size_t kv_dict_sample(kv_dict_t *self, uint64_t random, const kv_entry_t **out, size_t n) {
    assert(self);
    assert(out || n == 0);
    if (n > kv_dict_size(self)) n = kv_dict_size(self);
    if (n == 0) return 0;
    s_rehash_step(self);
    size_t size = self->ht[0].size;
    if (s_is_rehashing(self) && self->ht[1].size > size) size = self->ht[1].size;
    uint64_t state = random;
    size_t got = 0;
    if (n == kv_dict_size(self) && self->ht[0].size + self->ht[1].size <= KV_DICT_SAMPLE_STEPS * n)
        return s_sample_all(self, out);
    for (size_t tries = 0; got < n && tries < 2 * n; tries++) {
        const kv_entry_t *entry = s_sample_one(self, size, &state);
        if (entry) out[got++] = entry;
    }
    return got;
}

const char *kv_entry_key(const kv_entry_t *entry) {
    return entry->data;
}

size_t kv_entry_klen(const kv_entry_t *entry) {
    return s_klen(entry);
}

const char *kv_entry_value(const kv_entry_t *entry) {
    return entry->data + s_klen(entry);
}

size_t kv_entry_vlen(const kv_entry_t *entry) {
    return entry->vlen;
}

size_t kv_entry_bytes(const kv_entry_t *entry) {
    return s_entry_cut_bytes(entry) + sizeof(kv_entry_t *);
}

uint8_t kv_entry_lru(const kv_entry_t *entry) {
    return (uint8_t)entry->lru;
}

uint64_t kv_entry_version(const kv_entry_t *entry) {
    if (!(entry->flags & KV_ENTRY_F_VERSION)) return 0;
    uint64_t version;
    memcpy(&version, entry->data + s_klen(entry) + entry->vlen, sizeof version);
    return version;
}

int64_t kv_entry_expiry(const kv_entry_t *entry) {
    if (!(entry->flags & KV_ENTRY_F_EXPIRY)) return 0;
    int64_t expiry;
    const char *trailer = entry->data + s_klen(entry) + entry->vlen;
    if (entry->flags & KV_ENTRY_F_VERSION) trailer += sizeof(uint64_t);
    memcpy(&expiry, trailer, sizeof expiry);
    return expiry;
}

uint64_t kv_dict_hash(const kv_dict_t *self, const char *key, size_t klen) {
    assert(self);
    return s_hash(self, key, klen);
}

void kv_dict_bucket_foreach(kv_dict_t *self, uint64_t hash, kv_dict_scan_fn *fn, void *arg) {
    assert(self);
    assert(fn);
    for (int t = 0; t < 2; t++) {
        const dict_table_t *table = &self->ht[t];
        if (!table->buckets) continue;
        for (const kv_entry_t *e = table->buckets[hash & (table->size - 1)]; e; e = e->next)
            fn(e, arg);
    }
}

/* Bytes of the block s_block_new would allocate for an entry of cut
 * bytes, as malloc rounds them (to 16, plus its 8-byte header). */
static size_t s_block_bytes(const kv_dict_t *self, size_t cut) {
    size_t size = self ? self->live / KV_DICT_BLOCK_SHARE : 0;
    if (size < KV_DICT_BLOCK_MIN) size = KV_DICT_BLOCK_MIN;
    if (size > KV_DICT_BLOCK_MAX) size = KV_DICT_BLOCK_MAX;
    if (size < cut) size = cut;
    return (offsetof(dict_block_t, data) + size + 8 + 15) & ~(size_t)15;
}

size_t kv_dict_insert_cost(const kv_dict_t *self, size_t klen, size_t vlen, int expiring) {
    size_t bytes = kv_dict_entry_bytes(klen, vlen, expiring);
    size_t cut = bytes - sizeof(kv_entry_t *);
    if (!self) /* the dict itself, its first table and block */
        return bytes + sizeof(kv_dict_t) + KV_DICT_MIN_BUCKETS * sizeof(kv_entry_t *) +
               s_block_bytes(NULL, cut);
    const dict_block_t *block = self->newest;
    if (!block || block->size - block->used < cut || self->compacting) /* moves may cut too */
        bytes += s_block_bytes(self, cut);
    const dict_table_t *table = &self->ht[0];
    if (!table->buckets)
        bytes += KV_DICT_MIN_BUCKETS * sizeof(kv_entry_t *);
    else if (!s_is_rehashing(self) && table->used >= table->size)
        bytes += 2 * table->size * sizeof(kv_entry_t *); /* the doubled table */
    return bytes;
}

size_t kv_dict_entry_bytes(size_t klen, size_t vlen, int expiring) {
    uint8_t flags = (uint8_t)(KV_ENTRY_F_VERSION | (expiring ? KV_ENTRY_F_EXPIRY : 0));
    return s_cut_bytes(s_entry_bytes(klen, vlen, flags)) + sizeof(kv_entry_t *);
}
