/*  kv_dict.h: the node's hash table, one per partition.
 *
 *  A chained hash table built for millions of entries:
 *  - growth and shrinking are incremental (two tables while rehashing, a
 *    bounded number of buckets moved per operation), so no request ever pays
 *    for a full rehash;
 *  - an entry is a 12-byte header, the key and the value in one piece, cut
 *    from the dict's own blocks (an arena) rather than malloc'd: an 11-byte
 *    key with a 32-byte value takes 56 bytes; deleted entries are reclaimed
 *    by an incremental compaction, and an emptied dict frees its blocks;
 *  - kv_dict_scan walks the table with a reverse-binary cursor that stays
 *    correct while the table grows or shrinks between calls: every entry
 *    present for the whole scan is returned at least once;
 *  - bucket hashes are SipHash under a per-dict random key (no hash flooding).
 *
 *  Metadata only some entries need rides in optional trailers after the
 *  value, each announced by a bit of the entry's flags byte, so an entry
 *  without it pays nothing and new metadata needs no new layout. A version
 *  (the base for conditional writes) is the first such trailer, an expiry
 *  time (TTL) the next, each stored only when kv_dict_put is given one. The
 *  dict does not interpret expiry times: hiding and reclaiming expired
 *  entries is the store's (kv_store.h), which finds them again through
 *  kv_dict_hash and kv_dict_bucket_foreach.
 *
 *  Every entry also carries an 8-bit access clock (free: spare bits of the
 *  header), stamped by puts and gets with the value kv_dict_set_clock last
 *  gave, and kv_dict_sample picks random entries without a walk: together
 *  an approximate LRU for eviction (docs/eviction.md).
 *
 *  Not thread-safe: a dict belongs to the one actor that owns the partition.
 */
#ifndef KV_DICT_H
#define KV_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct _kv_dict_t kv_dict_t;
typedef struct _kv_entry_t kv_entry_t;

/* Creates an empty dict whose bucket hash is keyed by seed (16 bytes,
 * copied). Returns NULL when out of memory. */
kv_dict_t *kv_dict_new(const uint8_t seed[16]);

/* Frees the dict and every entry; sets *self_p to NULL. Safe on NULL. */
void kv_dict_destroy(kv_dict_t **self_p);

/* Creates or overwrites key with value. A non-zero version is stored in the
 * entry (8 more bytes); 0 stores none, and an overwrite with 0 drops the
 * previous one. Likewise a non-zero expiry (wall-clock milliseconds). Returns
 * 0, or -1 when out of memory (the dict is then unchanged). */
int kv_dict_put(kv_dict_t *self, const char *key, size_t klen, const char *value, size_t vlen,
                uint64_t version, int64_t expiry);

/* The entry for key, or NULL. Valid until the dict is next modified. */
const kv_entry_t *kv_dict_get(kv_dict_t *self, const char *key, size_t klen);

/* Removes key. Returns 0, or -1 when the key was absent. */
int kv_dict_delete(kv_dict_t *self, const char *key, size_t klen);

/* Removes every entry and releases the tables. */
void kv_dict_clear(kv_dict_t *self);

/* Number of entries. */
size_t kv_dict_size(const kv_dict_t *self);

/* Number of entries with an expiry (expired or not). */
size_t kv_dict_expiring(const kv_dict_t *self);

/* Bytes held by the dict: its entry blocks as allocated (live entries, dead
 * ones awaiting compaction, unused tails) plus bucket arrays. */
size_t kv_dict_memory(const kv_dict_t *self);

/* Bytes of dead entries (deleted or replaced) still in blocks, part of
 * kv_dict_memory until compaction frees their blocks. */
size_t kv_dict_garbage(const kv_dict_t *self);

/* Compacts now, whatever the share of dead bytes (a node at its memory
 * limit that removed keys wants their blocks back at once): walks the
 * blocks from the oldest, moving live entries to a new block, until no
 * dead byte is left or the block that was the newest has been walked.
 * Costs the live bytes of the blocks walked. Returns 0, or -1 when out of
 * memory (what was freed stays freed; the incremental compaction goes
 * on). */
int kv_dict_compact(kv_dict_t *self);

/* Bytes an entry of klen key bytes and vlen value bytes, with a version
 * (and an expiry when expiring) takes in a dict: its cut of a block and
 * its bucket pointer. What a new key adds, block and bucket-array growth
 * aside. */
size_t kv_dict_entry_bytes(size_t klen, size_t vlen, int expiring);

/* What inserting a new key of klen and vlen bytes (with an expiry when
 * expiring) into self (NULL: a dict yet to be created) makes it allocate
 * at most: its entry, and the block it is cut from or the doubled bucket
 * array when the insert needs one. What a memory limit checks before a
 * write, so the write cannot take the dict past it. */
size_t kv_dict_insert_cost(const kv_dict_t *self, size_t klen, size_t vlen, int expiring);

/* Does background work for about max_us microseconds (for idle time): moves
 * buckets while a rehash is in progress and entries while a compaction is.
 * Returns 1 if either remains, else 0. */
int kv_dict_rehash_for(kv_dict_t *self, long max_us);

typedef void(kv_dict_scan_fn)(const kv_entry_t *entry, void *arg);

/* Calls fn on the entries of the next bucket(s) after cursor and returns the
 * cursor to pass next; 0 means the scan is complete (start with 0). fn must
 * not modify the dict. */
uint64_t kv_dict_scan(kv_dict_t *self, uint64_t cursor, kv_dict_scan_fn *fn, void *arg);

/* The bucket hash of key (the same for the dict's whole life). */
uint64_t kv_dict_hash(const kv_dict_t *self, const char *key, size_t klen);

/* Calls fn on every entry chained where an entry of hash would be: the
 * entries of hash and any others sharing their bucket(s). fn must not
 * modify the dict. */
void kv_dict_bucket_foreach(kv_dict_t *self, uint64_t hash, kv_dict_scan_fn *fn, void *arg);

/* Sets the access clock: what puts and gets stamp on the entries they
 * write or find from now on (an approximate LRU, docs/eviction.md: the
 * dict only stores it; its owner decides when it advances). */
void kv_dict_set_clock(kv_dict_t *self, uint8_t clock);

/* The access clock last set (0 at first). */
uint8_t kv_dict_clock(const kv_dict_t *self);

/* Stores up to n entries in out, chosen at random from random (a seed: the
 * same seed on the same table gives the same entries) without walking the
 * table: each the first entry found from a random bucket, as Redis samples
 * for eviction. Returns how many: n, or the dict's size when smaller (fewer
 * only when the table is very sparse); an entry may appear twice. Entries
 * are valid until the dict is next modified; sampling does not stamp their
 * clock. */
size_t kv_dict_sample(kv_dict_t *self, uint64_t random, const kv_entry_t **out, size_t n);

/* Entry accessors. Key and value are not NUL-terminated. */
const char *kv_entry_key(const kv_entry_t *entry);
size_t kv_entry_klen(const kv_entry_t *entry);
const char *kv_entry_value(const kv_entry_t *entry);
size_t kv_entry_vlen(const kv_entry_t *entry);
/* kv_dict_entry_bytes of an entry in a dict. */
size_t kv_entry_bytes(const kv_entry_t *entry);
/* The dict's access clock when the entry was last put or got. */
uint8_t kv_entry_lru(const kv_entry_t *entry);
/* The version given to the last put, or 0 when it stored none. */
uint64_t kv_entry_version(const kv_entry_t *entry);
/* The expiry given to the last put, or 0 when it stored none. */
int64_t kv_entry_expiry(const kv_entry_t *entry);

#endif
