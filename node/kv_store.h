/*  kv_store.h: a node's data, one kv_dict per partition.
 *
 *  One dict per partition makes a partition the unit of ownership: it can be
 *  counted, cleared, scanned and copied to another node (a snapshot, through
 *  kv_store_foreach) without touching the rest. Dicts are created on first write, so a node that
 * owns a few partitions of a large table pays for those only.
 *
 *  kv_store_scan_sorted serves the API's paged bulk reads: it returns the
 *  entries of one partition in key order after a given key. Key order (not
 *  bucket order) is what lets a cursor of (partition, last key) return every
 *  key exactly once across pages even while the table grows, shrinks or the
 *  partition moves to another node between pages.
 *
 *  Metadata: a key whose first byte is NUL is the store's own (a
 *  transaction's intent or commit record, kv_tx.h). Clients' keys never hold
 *  a NUL (the gateway refuses it), so the two never meet. Metadata lives in
 *  a second dict per partition: bulk reads, key counts and scans never see
 *  it, while snapshots (kv_store_foreach) and replication carry it like any
 *  entry, so a replica or a new owner of the partition has it too.
 *
 *  Expiry (TTL): an entry may carry an absolute deadline (wall-clock ms,
 *  the node's clock). Past it the entry is invisible at once: kv_store_get
 *  and the key-ordered scans leave it out. Reclaiming it is not the store's
 *  decision but its caller's (a partition's primary removes it and
 *  replicates the removal; a replica waits for that), which kv_store_expire
 *  serves: a per-partition index of deadlines (kv_expiry.h) leads to the
 *  expired entries, so the work follows the keys that expire, and a store
 *  without expiring keys does none. Key counts include expired entries not
 *  yet reclaimed; snapshots (kv_store_foreach) carry them with their
 *  deadlines, so the receiver hides them too.
 *
 *  Not thread-safe: owned by the node actor.
 */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_dict.h"
#include "kv_msg.h"

typedef struct _kv_store_t kv_store_t;

/* Whether key is metadata (starts with a NUL byte). */
static inline int kv_store_is_meta(const char *key, size_t klen) {
    return klen > 0 && key[0] == '\0';
}

/* Creates an empty store for partitions partitions. NULL when out of memory. */
kv_store_t *kv_store_new(uint32_t partitions);

/* Frees the store and all its data; sets *self_p to NULL. Safe on NULL. */
void kv_store_destroy(kv_store_t **self_p);

/* The number of partitions it was created for. */
uint32_t kv_store_partitions(const kv_store_t *self);

/* Creates or overwrites, with the entry's version (the partition seq of the
 * write; 0 stores none, for tests of the store alone) and expiry (absolute,
 * wall-clock ms; 0: none, ignored for metadata). Returns 0, or -1 when out
 * of memory (the entry unchanged) or the partition is out of range. */
int kv_store_put(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                 const char *value, size_t vlen, uint64_t version, int64_t expiry);

/* The store's wall clock in ms (what deadlines are compared with). */
int64_t kv_store_now(const kv_store_t *self);

/* Tests: fixes the clock at now (0: the real clock again). */
void kv_store_set_now(kv_store_t *self, int64_t now);

/* Tests: shifts the real clock by offset ms (a node whose clock is skewed). */
void kv_store_set_clock_offset(kv_store_t *self, int64_t offset);

/* Whether entry's deadline has passed. */
int kv_store_expired(const kv_store_t *self, const kv_entry_t *entry);

/* Bytes a put of a vlen-byte value (with a version, and an expiry when
 * expiring) under key would add to the partition: for a new key, all it
 * makes the dict allocate (its entry, and a new block or the doubled
 * bucket array when it needs one: kv_dict_insert_cost); for an existing
 * one, its entry less the one it replaces (negative when it shrinks: the
 * old copy comes back as the dict compacts); plus its expiry index item.
 * The index's own growth is not foreseen (docs/memory.md). */
int64_t kv_store_put_growth(kv_store_t *self, uint32_t partition, const char *key, size_t klen,
                            size_t vlen, int expiring);

/* An entry as SNAPSHOT and SCAN_REPLY carry it: key, value, version
 * (pointing into the entry: valid until the store is next modified). */
kv_msg_entry_t kv_store_entry_wire(const kv_entry_t *entry);

/* The entry, or NULL (absent or expired). Valid until the store is next
 * modified. */
const kv_entry_t *kv_store_get(kv_store_t *self, uint32_t partition, const char *key, size_t klen);

/* Removes key, expired or not. Returns 0, or -1 when not stored. */
int kv_store_delete(kv_store_t *self, uint32_t partition, const char *key, size_t klen);

/* Removes every key of one partition, metadata included (the partition
 * leaves the node). */
void kv_store_clear_partition(kv_store_t *self, uint32_t partition);

/* Removes every data key of one partition, keeping its metadata (a /clear:
 * transactions in progress keep their intents and records). */
void kv_store_clear_data(kv_store_t *self, uint32_t partition);

/* Bytes one partition holds (its part of kv_store_memory). */
size_t kv_store_partition_memory(const kv_store_t *self, uint32_t partition);

/* Bytes of removed or replaced data entries one partition still holds in
 * its dict's blocks until compaction frees them (kv_dict_garbage). */
size_t kv_store_garbage(const kv_store_t *self, uint32_t partition);

/* Compacts one partition's data now (kv_dict_compact): a node at its
 * memory limit gets the blocks of the keys it removed back at once.
 * Returns the bytes kv_store_memory dropped by (0 when none). */
size_t kv_store_compact(kv_store_t *self, uint32_t partition);

/* Metadata entries of one partition. */
size_t kv_store_meta_size(const kv_store_t *self, uint32_t partition);

/* Data keys in one partition, and in the whole store. */
size_t kv_store_partition_size(const kv_store_t *self, uint32_t partition);
size_t kv_store_size(const kv_store_t *self);

/* Bytes held by all dicts and expiry indexes, kept up to date as they
 * change (no walk). */
size_t kv_store_memory(const kv_store_t *self);

/* The same figure by a walk over every partition: what tests check the
 * running total against. */
size_t kv_store_memory_walk(const kv_store_t *self);

/* Spends up to max_us finishing incremental rehashes (idle time). */
void kv_store_rehash_for(kv_store_t *self, long max_us);

typedef int(kv_store_entry_fn)(const kv_entry_t *entry, void *arg);

/* Calls fn on up to limit data entries of partition whose keys sort strictly
 * after (after, alen) when has_after, in key order (bytewise, shorter first
 * on a common prefix). Stops early when fn returns non-zero. Returns 1 when
 * the partition holds further entries after the last one given, 0 when not,
 * -1 when out of memory. */
int kv_store_scan_sorted(kv_store_t *self, uint32_t partition, int has_after, const char *after,
                         size_t alen, uint32_t limit, kv_store_entry_fn *fn, void *arg);

/* Calls fn on every entry of partition, metadata first, in no particular
 * order, until fn returns non-zero. fn must not modify the store. */
void kv_store_foreach(kv_store_t *self, uint32_t partition, kv_store_entry_fn *fn, void *arg);

/* Likewise over the partition's metadata only. */
void kv_store_foreach_meta(kv_store_t *self, uint32_t partition, kv_store_entry_fn *fn, void *arg);

#define KV_STORE_EXPIRE_RETRY_MS 1000 /* a kept expired entry is visited again after */

/* Called with the key of an expired data entry of the partition; returns 1
 * when it removed the entry, 0 when it keeps it for now. */
typedef int(kv_store_expire_fn)(const char *key, size_t klen, void *arg);

/* Visits up to max deadlines of partition's index that have passed, calling
 * fn on each expired entry they lead to (fn may modify the store); a
 * deadline whose entries fn kept is visited again KV_STORE_EXPIRE_RETRY_MS
 * later. fn may remove that key (kv_store_delete) and must change nothing
 * else. Returns the deadlines visited (max: maybe more are due). */
size_t kv_store_expire(kv_store_t *self, uint32_t partition, size_t max, kv_store_expire_fn *fn,
                       void *arg);

/* The partition's earliest indexed deadline, 0 when none. */
int64_t kv_store_next_expiry(const kv_store_t *self, uint32_t partition);

/* Deadlines indexed in the whole store (0: nothing will ever expire). */
size_t kv_store_expiry_items(const kv_store_t *self);

/* The access clock (docs/eviction.md): an 8-bit counter every data entry
 * is stamped with when put or read (kv_store_get), which ticks as data is
 * written: after 1/64 of the store's memory, at least every 4 KB. */
uint8_t kv_store_lru_clock(const kv_store_t *self);

/* Ticks the access clock now (tests; puts tick it as they write). */
void kv_store_lru_advance(kv_store_t *self);

/* Ticks since entry was last put or read, modulo 256. */
uint8_t kv_store_idle(const kv_store_t *self, const kv_entry_t *entry);

/* Up to n random data entries of partition (kv_dict_sample; expired ones
 * included): valid until the store is next modified. */
size_t kv_store_sample(kv_store_t *self, uint32_t partition, uint64_t random,
                       const kv_entry_t **out, size_t n);

/* Likewise among the entries with a deadline only, found through the
 * partition's index of deadlines rather than by chance. */
size_t kv_store_sample_expiring(kv_store_t *self, uint32_t partition, uint64_t random,
                                const kv_entry_t **out, size_t n);

/* Data entries of partition with a deadline (expired or not). */
size_t kv_store_partition_expiring(const kv_store_t *self, uint32_t partition);

/* Orders two keys the way scans do. */
int kv_store_key_compare(const char *a, size_t alen, const char *b, size_t blen);

#endif
