/*  test_kv_dict.c: the node's hash table.
 *
 *  Besides the plain put/get/delete contract, these tests drive the dict into
 *  the states that make it hard: a rehash in progress while keys are read and
 *  written, a mass delete that shrinks it, and scans during which the table
 *  grows or shrinks between calls. Keys are "key:%08d" so a scan callback can
 *  tell which key it saw from the key alone.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_dict.h"
#include "kv_limits.h"

/* A string literal that may hold a NUL, as the (bytes, length) pair. */
#define BYTES(literal) (literal), (sizeof(literal) - 1)

static const uint8_t s_seed[16] = {7, 1, 4, 2, 8, 5, 7, 1, 4, 2, 8, 5, 7, 1, 4, 2};

/* Formats key number id into buf and returns its length. */
static size_t s_key(char *buf, size_t size, int id) {
    return (size_t)snprintf(buf, size, "key:%08d", id);
}

static int s_put_id(kv_dict_t *dict, int id, uint64_t version) {
    char key[32];
    char value[32];
    size_t klen = s_key(key, sizeof key, id);
    int vlen = snprintf(value, sizeof value, "value-%d", id);
    return kv_dict_put(dict, key, klen, value, (size_t)vlen, version, 0);
}

static const kv_entry_t *s_get_id(kv_dict_t *dict, int id) {
    char key[32];
    size_t klen = s_key(key, sizeof key, id);
    return kv_dict_get(dict, key, klen);
}

static int s_delete_id(kv_dict_t *dict, int id) {
    char key[32];
    size_t klen = s_key(key, sizeof key, id);
    return kv_dict_delete(dict, key, klen);
}

/* True when the entry holds exactly the value s_put_id wrote for id. */
static bool s_holds_id(const kv_entry_t *entry, int id) {
    char value[32];
    int vlen = snprintf(value, sizeof value, "value-%d", id);
    return entry && kv_entry_vlen(entry) == (size_t)vlen &&
           memcmp(kv_entry_value(entry), value, (size_t)vlen) == 0;
}

/* Finishes any rehash (and the shrinks that follow it). */
static void s_settle(kv_dict_t *dict) {
    while (kv_dict_rehash_for(dict, 100000))
        ;
}

static bool s_value_is(const kv_entry_t *entry, const char *value, size_t vlen) {
    return entry && kv_entry_vlen(entry) == vlen && memcmp(kv_entry_value(entry), value, vlen) == 0;
}

//  --------------------------------------------------------------------------
//  Scan helpers: count how often each key id was seen.

typedef struct {
    unsigned *seen; /* visit count per key id */
    int ids;        /* length of seen */
    size_t calls;   /* callback invocations */
} scan_tally_t;

static void s_tally(const kv_entry_t *entry, void *arg) {
    scan_tally_t *tally = arg;
    char key[32];
    size_t klen = kv_entry_klen(entry);
    cr_assert_lt(klen, sizeof key);
    memcpy(key, kv_entry_key(entry), klen);
    key[klen] = '\0';
    int id = (int)strtol(key + 4, NULL, 10);
    cr_assert(id >= 0 && id < tally->ids, "unexpected key %s", key);
    tally->seen[id]++;
    tally->calls++;
}

static scan_tally_t s_tally_new(int ids) {
    scan_tally_t tally = {calloc((size_t)ids, sizeof(unsigned)), ids, 0};
    cr_assert_not_null(tally.seen);
    return tally;
}

//  --------------------------------------------------------------------------
//  Basic contract

Test(kv_dict, new_dict_is_empty_and_costs_nothing) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_not_null(dict);
    cr_expect_eq(kv_dict_size(dict), 0);
    cr_expect_eq(kv_dict_memory(dict), 0, "tables are allocated on the first put");
    cr_expect_null(kv_dict_get(dict, BYTES("missing")));
    kv_dict_destroy(&dict);
}

Test(kv_dict, destroy_sets_null_and_is_safe_twice) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(s_put_id(dict, 1, 1), 0);
    kv_dict_destroy(&dict);
    cr_expect_null(dict);
    kv_dict_destroy(&dict);
}

Test(kv_dict, put_then_get_returns_the_entry) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("user:1"), BYTES("alice"), 42, 0), 0);
    const kv_entry_t *entry = kv_dict_get(dict, BYTES("user:1"));
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_klen(entry), 6);
    cr_expect_eq(memcmp(kv_entry_key(entry), "user:1", 6), 0);
    cr_expect(s_value_is(entry, BYTES("alice")));
    cr_expect_eq(kv_entry_version(entry), 42);
    cr_expect_eq(kv_dict_size(dict), 1);
    kv_dict_destroy(&dict);
}

Test(kv_dict, overwrite_keeps_one_entry) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("first"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("second"), 2, 0), 0);
    cr_expect_eq(kv_dict_size(dict), 1);
    const kv_entry_t *entry = kv_dict_get(dict, BYTES("k"));
    cr_expect(s_value_is(entry, BYTES("second")));
    cr_expect_eq(kv_entry_version(entry), 2);
    kv_dict_destroy(&dict);
}

/* A value that needs more room moves the entry (and relinks it), and a much
 * shorter value gives the memory back once the dead copy is compacted. */
Test(kv_dict, overwrite_resizes_the_entry_as_needed) {
    static char big[KV_MAX_VALUE_BYTES];
    memset(big, 'x', sizeof big);
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < 100; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    size_t before = kv_dict_memory(dict);

    char key[32];
    size_t klen = s_key(key, sizeof key, 50);
    cr_assert_eq(kv_dict_put(dict, key, klen, big, sizeof big, 2, 0), 0);
    cr_expect(s_value_is(kv_dict_get(dict, key, klen), big, sizeof big));
    cr_expect_geq(kv_dict_memory(dict), before + sizeof big - 32);

    cr_assert_eq(kv_dict_put(dict, key, klen, BYTES("tiny"), 3, 0), 0);
    cr_expect(s_value_is(kv_dict_get(dict, key, klen), BYTES("tiny")));
    s_settle(dict); /* the dead 1 KB copy goes with compaction, in idle time */
    cr_expect_lt(kv_dict_memory(dict), before + 512, "the 1 KB entry was not reclaimed");
    cr_expect_eq(kv_entry_version(kv_dict_get(dict, key, klen)), 3);
    cr_expect_eq(kv_dict_size(dict), 100);
    for (int id = 0; id < 100; id++)
        cr_expect(id == 50 || s_holds_id(s_get_id(dict, id), id), "key %d damaged", id);
    kv_dict_destroy(&dict);
}

/* The version is an optional trailer: 0 stores none, and a later put may add
 * one, change it or drop it, whatever the value's length does meanwhile. */
Test(kv_dict, version_is_stored_only_when_given) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("plain"), 0, 0), 0);
    cr_expect_eq(kv_entry_version(kv_dict_get(dict, BYTES("k"))), 0);

    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("a longer value than before"), 7, 0), 0);
    const kv_entry_t *entry = kv_dict_get(dict, BYTES("k"));
    cr_expect(s_value_is(entry, BYTES("a longer value than before")));
    cr_expect_eq(kv_entry_version(entry), 7);

    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("x"), 0xFFFFFFFFFFFFFFFFULL, 0), 0);
    entry = kv_dict_get(dict, BYTES("k"));
    cr_expect(s_value_is(entry, BYTES("x")));
    cr_expect_eq(kv_entry_version(entry), 0xFFFFFFFFFFFFFFFFULL);

    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES(""), 0, 0), 0);
    entry = kv_dict_get(dict, BYTES("k"));
    cr_expect(s_value_is(entry, BYTES("")));
    cr_expect_eq(kv_entry_version(entry), 0, "an overwrite without a version drops it");
    cr_expect_eq(kv_dict_size(dict), 1);
    kv_dict_destroy(&dict);
}

/* Adds keys "key:%07d" (11 bytes) first .. first + count - 1 with 32-byte
 * values and the version given, and returns how much memory grew. */
static size_t s_growth_of(kv_dict_t *dict, int first, int count, uint64_t version) {
    static const char value[32] = "0123456789abcdef0123456789abcdef";
    size_t before = kv_dict_memory(dict);
    char key[16];
    for (int id = first; id < first + count; id++) {
        cr_assert_eq(snprintf(key, sizeof key, "key:%07d", id), 11);
        cr_assert_eq(kv_dict_put(dict, key, 11, value, sizeof value, version, 0), 0);
    }
    return kv_dict_memory(dict) - before;
}

/* The benchmark's shape, an 11-byte key with a 32-byte value, is 55 bytes
 * without a version and takes 56 in a block (a malloc'd one would take a
 * 64-byte chunk). A version costs its 8 bytes only to entries that have one.
 * Measured over 20,000 inserts into a table that does not resize meanwhile
 * (40,000 to 60,000 entries in 65,536 buckets); block headers and the last
 * block's free tail add under 2 bytes per entry. */
Test(kv_dict, entry_without_version_takes_56_bytes) {
    kv_dict_t *plain = kv_dict_new(s_seed);
    kv_dict_t *versioned = kv_dict_new(s_seed);
    s_growth_of(plain, 0, 40000, 0);
    s_growth_of(versioned, 0, 40000, 9);
    s_settle(plain);
    s_settle(versioned);
    double per_plain = (double)s_growth_of(plain, 40000, 20000, 0) / 20000;
    double per_versioned = (double)s_growth_of(versioned, 40000, 20000, 9) / 20000;
    cr_expect(per_plain >= 55.0 && per_plain < 58.0, "%.2f bytes per entry", per_plain);
    cr_expect(per_versioned >= 63.0 && per_versioned < 66.0, "%.2f bytes per versioned entry",
              per_versioned);
    cr_expect_eq(kv_entry_version(kv_dict_get(versioned, BYTES("key:0050000"))), 9);
    cr_expect_eq(kv_entry_version(kv_dict_get(plain, BYTES("key:0050000"))), 0);
    kv_dict_destroy(&plain);
    kv_dict_destroy(&versioned);
}

/* A 1-byte key with an empty value is the smallest entry there is. */
Test(kv_dict, smallest_entry) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), NULL, 0, 0, 0), 0);
    const kv_entry_t *entry = kv_dict_get(dict, BYTES("k"));
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_klen(entry), 1);
    cr_expect_eq(kv_entry_vlen(entry), 0);
    cr_expect_eq(kv_entry_version(entry), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), NULL, 0, 3, 0), 0);
    cr_expect_eq(kv_entry_version(kv_dict_get(dict, BYTES("k"))), 3);
    kv_dict_destroy(&dict);
}

Test(kv_dict, delete_present_and_absent) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_expect_eq(kv_dict_delete(dict, BYTES("k")), -1, "empty dict");
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("v"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("other"), BYTES("v"), 1, 0), 0);
    cr_expect_eq(kv_dict_delete(dict, BYTES("absent")), -1);
    cr_expect_eq(kv_dict_delete(dict, BYTES("k")), 0);
    cr_expect_eq(kv_dict_delete(dict, BYTES("k")), -1, "already deleted");
    cr_expect_null(kv_dict_get(dict, BYTES("k")));
    cr_expect_not_null(kv_dict_get(dict, BYTES("other")));
    cr_expect_eq(kv_dict_size(dict), 1);
    kv_dict_destroy(&dict);
}

/* Keys are bytes compared by length and memcmp: NULs, prefixes and bytes
 * above 0x7f are all distinct keys. */
Test(kv_dict, binary_keys_with_embedded_bytes) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("a"), BYTES("1"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("a\0"), BYTES("2"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("a\0b"), BYTES("3"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("a\0c"), BYTES("4\0x"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("ab"), BYTES("5"), 1, 0), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("\xff\xfe\x00\x01"), BYTES(""), 1, 0), 0);
    cr_expect_eq(kv_dict_size(dict), 6);
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("a")), BYTES("1")));
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("a\0")), BYTES("2")));
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("a\0b")), BYTES("3")));
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("a\0c")), BYTES("4\0x")));
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("ab")), BYTES("5")));
    cr_expect(s_value_is(kv_dict_get(dict, BYTES("\xff\xfe\x00\x01")), BYTES("")));
    cr_expect_null(kv_dict_get(dict, BYTES("a\0d")));
    cr_expect_null(kv_dict_get(dict, BYTES("abc")));
    kv_dict_destroy(&dict);
}

/* Keys of 1..256 bytes and values of 0..1024 bytes fit; the rest is refused
 * rather than truncated, and a refused put changes nothing. */
Test(kv_dict, length_limits) {
    enum { MAX_KEY = KV_MAX_KEY_BYTES, MAX_VALUE = KV_MAX_VALUE_BYTES };
    static char key[MAX_KEY + 1];
    static char value[MAX_VALUE + 1];
    memset(key, 'k', sizeof key);
    memset(value, 'v', sizeof value);
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_expect_eq(kv_dict_put(dict, key, MAX_KEY, value, MAX_VALUE, 1, 0), 0);
    const kv_entry_t *entry = kv_dict_get(dict, key, MAX_KEY);
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_klen(entry), MAX_KEY);
    cr_expect_eq(kv_entry_vlen(entry), MAX_VALUE);
    size_t memory = kv_dict_memory(dict);

    cr_expect_eq(kv_dict_put(dict, key, 0, value, 1, 1, 0), -1, "empty key");
    cr_expect_eq(kv_dict_put(dict, key, MAX_KEY + 1, value, 1, 1, 0), -1);
    cr_expect_eq(kv_dict_put(dict, key, 1, value, MAX_VALUE + 1, 1, 0), -1);
    cr_expect_eq(kv_dict_put(dict, key, MAX_KEY, value, MAX_VALUE + 1, 2, 0), -1);
    cr_expect_eq(kv_dict_size(dict), 1);
    cr_expect_eq(kv_dict_memory(dict), memory);
    cr_expect_eq(kv_entry_version(kv_dict_get(dict, key, MAX_KEY)), 1);
    kv_dict_destroy(&dict);
}

Test(kv_dict, dicts_with_different_seeds_agree) {
    const uint8_t other_seed[16] = {1};
    kv_dict_t *a = kv_dict_new(s_seed);
    kv_dict_t *b = kv_dict_new(other_seed);
    for (int id = 0; id < 1000; id++) {
        cr_assert_eq(s_put_id(a, id, 1), 0);
        cr_assert_eq(s_put_id(b, id, 1), 0);
    }
    for (int id = 0; id < 1000; id++)
        cr_expect(s_holds_id(s_get_id(a, id), id) && s_holds_id(s_get_id(b, id), id));
    kv_dict_destroy(&a);
    kv_dict_destroy(&b);
}

//  --------------------------------------------------------------------------
//  Growth, rehash, shrink

Test(kv_dict, lookup_after_growth_to_150k_entries) {
    enum { KEYS = 150000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, (uint64_t)id), 0);
    cr_expect_eq(kv_dict_size(dict), KEYS);
    for (int id = 0; id < KEYS; id++) {
        const kv_entry_t *entry = s_get_id(dict, id);
        cr_assert(s_holds_id(entry, id), "key %d lost after growth", id);
        cr_assert_eq(kv_entry_version(entry), (uint64_t)id);
    }
    cr_expect_null(s_get_id(dict, KEYS));
    kv_dict_destroy(&dict);
}

/* 65,536 keys fill 65,536 buckets exactly; one more starts a rehash into
 * 131,072 buckets, which each operation advances by one bucket. While both
 * tables exist, memory counts both bucket arrays, which is how the test knows
 * the rehash is still running while it reads, overwrites, deletes and adds. */
Test(kv_dict, lookup_during_rehash) {
    enum { KEYS = 65536 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    s_settle(dict);
    cr_assert_eq(s_put_id(dict, KEYS, 1), 0);
    cr_assert_eq(kv_dict_rehash_for(dict, 0), 1, "the extra key should start a rehash");
    size_t during = kv_dict_memory(dict);

    int read_during = 0;
    for (int id = 0; id <= KEYS; id++) {
        cr_assert(s_holds_id(s_get_id(dict, id), id), "key %d lost during rehash", id);
        if (kv_dict_memory(dict) == during) read_during++;
    }
    cr_expect_gt(read_during, KEYS / 4, "only %d reads overlapped the rehash", read_during);

    /* Writes while (possibly still) rehashing: overwrite, delete, insert. */
    cr_assert_eq(kv_dict_put(dict, BYTES("key:00000007"), BYTES("seven"), 2, 0), 0);
    cr_assert_eq(s_delete_id(dict, 8), 0);
    cr_assert_eq(s_put_id(dict, KEYS + 1, 1), 0);
    s_settle(dict);
    cr_expect_lt(kv_dict_memory(dict), during, "the old bucket array was not freed");
    cr_expect(s_value_is(s_get_id(dict, 7), BYTES("seven")));
    cr_expect_null(s_get_id(dict, 8));
    cr_expect(s_holds_id(s_get_id(dict, KEYS + 1), KEYS + 1));
    cr_expect_eq(kv_dict_size(dict), KEYS + 1);
    kv_dict_destroy(&dict);
}

Test(kv_dict, operations_interleaved_with_rehash_keep_every_key) {
    enum { KEYS = 20000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    /* Insert, and delete every third key soon after: the table grows and
     * shrinks-checks while rehashes are in flight. */
    for (int id = 0; id < KEYS; id++) {
        cr_assert_eq(s_put_id(dict, id, 1), 0);
        if (id % 3 == 0 && id >= 30) cr_assert_eq(s_delete_id(dict, id - 30), 0);
    }
    for (int id = 0; id < KEYS; id++) {
        bool deleted = id % 3 == 0 && id < KEYS - 30;
        if (deleted)
            cr_assert_null(s_get_id(dict, id), "key %d survived its delete", id);
        else
            cr_assert(s_holds_id(s_get_id(dict, id), id), "key %d lost", id);
    }
    kv_dict_destroy(&dict);
}

Test(kv_dict, shrink_after_mass_delete) {
    enum { KEYS = 100000, KEEP = 100 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    size_t peak = kv_dict_memory(dict);
    for (int id = KEEP; id < KEYS; id++) cr_assert_eq(s_delete_id(dict, id), 0);
    s_settle(dict);
    cr_expect_eq(kv_dict_size(dict), KEEP);
    /* 100 entries and 256 buckets: a few KB, against about 9 MB at peak. */
    cr_expect_lt(kv_dict_memory(dict), 16384, "memory %zu after mass delete (peak %zu)",
                 kv_dict_memory(dict), peak);
    for (int id = 0; id < KEEP; id++)
        cr_expect(s_holds_id(s_get_id(dict, id), id), "key %d lost in the shrink", id);
    cr_expect_null(s_get_id(dict, KEEP));
    kv_dict_destroy(&dict);
}

Test(kv_dict, memory_grows_and_falls_back) {
    enum { KEYS = 10000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_memory(dict), 0);
    size_t last = 0;
    for (int id = 0; id < KEYS; id++) {
        cr_assert_eq(s_put_id(dict, id, 1), 0);
        if (id % 2000 != 0) continue; /* a finished rehash frees a bucket array: check coarsely */
        cr_assert_gt(kv_dict_memory(dict), last, "memory did not grow by key %d", id);
        last = kv_dict_memory(dict);
    }
    last = kv_dict_memory(dict);
    /* Each entry holds at least its header, "key:%08d" + "value-%d" and the
     * version trailer. */
    cr_expect_geq(last, (size_t)KEYS * (12 + 12 + 6 + 8));
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_delete_id(dict, id), 0);
    s_settle(dict);
    cr_expect_leq(kv_dict_memory(dict), 64, "only the 4 minimum buckets should remain");
    kv_dict_clear(dict);
    cr_expect_eq(kv_dict_memory(dict), 0);
    kv_dict_destroy(&dict);
}

Test(kv_dict, clear_then_reuse) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < 5000; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    cr_assert_eq(s_put_id(dict, 5000, 1), 0); /* likely mid-rehash: clear both tables */
    kv_dict_clear(dict);
    cr_expect_eq(kv_dict_size(dict), 0);
    cr_expect_eq(kv_dict_memory(dict), 0);
    cr_expect_null(s_get_id(dict, 1));
    cr_expect_eq(kv_dict_rehash_for(dict, 10), 0);
    for (int id = 0; id < 5000; id += 2) cr_assert_eq(s_put_id(dict, id, 2), 0);
    cr_expect_eq(kv_dict_size(dict), 2500);
    cr_expect(s_holds_id(s_get_id(dict, 4998), 4998));
    cr_expect_null(s_get_id(dict, 4999));
    kv_dict_destroy(&dict);
}

/* The node's idle loop: rehash_for finishes a rehash no operation drives. */
Test(kv_dict, rehash_for_finishes_an_idle_rehash) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id <= 4096; id++)
        cr_assert_eq(s_put_id(dict, id, 1), 0); /* the 4097th key starts a rehash */
    cr_expect_eq(kv_dict_rehash_for(dict, 1000000), 0, "a second is plenty for 4096 buckets");
    cr_expect_eq(kv_dict_rehash_for(dict, 0), 0);
    kv_dict_destroy(&dict);
}

//  --------------------------------------------------------------------------
//  Compaction: deleted and replaced entries wait in their blocks until the
//  dict moves the live ones out and frees the blocks.

/* Deleting half the keys, scattered, leaves half the blocks' bytes dead;
 * compaction (driven by the deletes, then idle time) gives them back, and
 * every remaining key keeps its value through the moves. */
Test(kv_dict, compaction_reclaims_deleted_entries) {
    enum { KEYS = 50000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 0), 0);
    s_settle(dict);
    size_t full = kv_dict_memory(dict);
    for (int id = 0; id < KEYS; id += 2) {
        cr_assert_eq(s_delete_id(dict, id), 0);
        if (id % 1000 == 0) /* reads between the moves */
            cr_assert(s_holds_id(s_get_id(dict, id + 1), id + 1), "key %d lost", id + 1);
    }
    s_settle(dict);
    size_t half = kv_dict_memory(dict);
    cr_expect_lt(half, full * 7 / 10, "memory %zu after deleting half of %zu", half, full);
    for (int id = 0; id < KEYS; id++) {
        if (id % 2)
            cr_assert(s_holds_id(s_get_id(dict, id), id), "key %d lost in compaction", id);
        else
            cr_assert_null(s_get_id(dict, id), "key %d came back", id);
    }
    kv_dict_destroy(&dict);
}

/* A few deletes leave too little garbage for compaction to start on its
 * own; kv_dict_compact gives their bytes back at once, keeps every other
 * key, and again in the middle of an incremental compaction. */
Test(kv_dict, compact_now_gives_back_what_deletes_left) {
    enum { KEYS = 20000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_expect_eq(kv_dict_compact(dict), 0, "an empty dict");
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 7), 0);
    s_settle(dict);
    cr_expect_eq(kv_dict_garbage(dict), 0);
    size_t full = kv_dict_memory(dict);
    cr_expect_eq(kv_dict_compact(dict), 0);
    cr_expect_eq(kv_dict_memory(dict), full, "nothing dead: nothing moved");
    for (int id = 0; id < KEYS / 10; id++) cr_assert_eq(s_delete_id(dict, id * 10), 0);
    s_settle(dict);
    size_t dead = kv_dict_garbage(dict); /* a tenth, not compacted yet */
    cr_expect_geq(dead, (size_t)KEYS / 10 * 32);
    cr_expect_eq(kv_dict_memory(dict), full);
    cr_expect_eq(kv_dict_compact(dict), 0);
    cr_expect_eq(kv_dict_garbage(dict), 0);
    size_t after = kv_dict_memory(dict);
    cr_expect_leq(after, full - dead + 16384, "%zu of %zu back", full - after, dead);
    for (int id = 0; id < KEYS; id++) {
        if (id % 10)
            cr_assert(s_holds_id(s_get_id(dict, id), id), "key %d lost", id);
        else
            cr_assert_null(s_get_id(dict, id), "key %d came back", id);
    }
    for (int id = 1; id < KEYS; id += 2) /* past a quarter: an incremental one starts */
        if (id % 10) cr_assert_eq(s_delete_id(dict, id), 0);
    cr_expect_gt(kv_dict_garbage(dict), 0);
    cr_expect_eq(kv_dict_compact(dict), 0, "in the middle of an incremental compaction");
    cr_expect_eq(kv_dict_garbage(dict), 0);
    for (int id = 0; id < KEYS; id++)
        if (id % 10 && id % 2 == 0)
            cr_assert(s_holds_id(s_get_id(dict, id), id), "key %d lost", id);
    cr_expect_eq(kv_dict_size(dict), KEYS * 4 / 10);
    kv_dict_destroy(&dict);
}

/* Values that keep changing size leave a dead copy per overwrite; memory
 * stays bounded, and the latest value is always the one read. */
Test(kv_dict, resizing_overwrites_keep_memory_bounded) {
    enum { KEYS = 2000, ROUNDS = 40 };
    static char value[200];
    memset(value, 'v', sizeof value);
    kv_dict_t *dict = kv_dict_new(s_seed);
    char key[32];
    size_t peak = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t vlen = round % 2 ? sizeof value : 10 + (size_t)round;
        for (int id = 0; id < KEYS; id++) {
            size_t klen = s_key(key, sizeof key, id);
            value[0] = (char)('a' + round % 26);
            cr_assert_eq(kv_dict_put(dict, key, klen, value, vlen, 0, 0), 0);
        }
        for (int id = 0; id < KEYS; id += 97) {
            size_t klen = s_key(key, sizeof key, id);
            const kv_entry_t *entry = kv_dict_get(dict, key, klen);
            cr_assert(s_value_is(entry, value, vlen), "round %d key %d", round, id);
        }
        if (kv_dict_memory(dict) > peak) peak = kv_dict_memory(dict);
    }
    /* 2,000 entries of about 230 bytes are 460 KB live; dead copies may add
     * a quarter before compaction starts, and a round adds up to one more
     * full set while compaction catches up. */
    cr_expect_lt(peak, (size_t)KEYS * 232 * 5 / 2, "peak memory %zu", peak);
    cr_expect_eq(kv_dict_size(dict), KEYS);
    kv_dict_destroy(&dict);
}

/* An overwrite with a value of the same size stays in place: no dead copy,
 * no new memory. */
Test(kv_dict, same_size_overwrite_stays_in_place) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("12345678"), 0, 0), 0);
    const kv_entry_t *before = kv_dict_get(dict, BYTES("k"));
    size_t memory = kv_dict_memory(dict);
    cr_assert_eq(kv_dict_put(dict, BYTES("k"), BYTES("abcdefgh"), 0, 0), 0);
    cr_expect_eq(kv_dict_get(dict, BYTES("k")), before, "the entry moved");
    cr_expect(s_value_is(before, BYTES("abcdefgh")));
    cr_expect_eq(kv_dict_memory(dict), memory);
    kv_dict_destroy(&dict);
}

/* Compaction moves entries, never bucket membership: a scan between whose
 * calls keys are deleted (so entries move) still returns every key that is
 * never deleted. */
Test(kv_dict, scan_returns_every_entry_while_compacting) {
    enum { KEYS = 20000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 0), 0);
    scan_tally_t tally = s_tally_new(KEYS);
    int next_delete = 0; /* deletes the even keys, from the start */
    uint64_t cursor = 0;
    size_t calls = 0;
    do {
        cursor = kv_dict_scan(dict, cursor, s_tally, &tally);
        for (int i = 0; i < 20 && next_delete < KEYS; i++, next_delete += 2)
            cr_assert_eq(s_delete_id(dict, next_delete), 0);
        cr_assert_lt(++calls, 1000000, "the scan does not terminate");
    } while (cursor != 0);
    for (int id = 1; id < KEYS; id += 2)
        cr_expect_geq(tally.seen[id], 1, "key %d was never returned", id);
    free(tally.seen);
    kv_dict_destroy(&dict);
}

//  --------------------------------------------------------------------------
//  Scan

Test(kv_dict, scan_of_empty_dict_returns_0) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    scan_tally_t tally = s_tally_new(1);
    cr_expect_eq(kv_dict_scan(dict, 0, s_tally, &tally), 0);
    cr_assert_eq(s_put_id(dict, 0, 1), 0);
    cr_assert_eq(s_delete_id(dict, 0), 0);
    cr_expect_eq(kv_dict_scan(dict, 0, s_tally, &tally), 0, "emptied, tables still allocated");
    kv_dict_clear(dict);
    cr_expect_eq(kv_dict_scan(dict, 0, s_tally, &tally), 0);
    cr_expect_eq(tally.calls, 0);
    free(tally.seen);
    kv_dict_destroy(&dict);
}

/* A table that does not change returns each entry exactly once, even when
 * the scan starts in the middle of a rehash (which its calls then finish). */
Test(kv_dict, scan_of_a_still_table_returns_each_entry_once) {
    enum { KEYS = 4097 }; /* the last key starts a rehash from 4096 buckets */
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    scan_tally_t tally = s_tally_new(KEYS);
    uint64_t cursor = 0;
    size_t calls = 0;
    do {
        cursor = kv_dict_scan(dict, cursor, s_tally, &tally);
        cr_assert_lt(++calls, 100000, "the scan does not terminate");
    } while (cursor != 0);
    for (int id = 0; id < KEYS; id++)
        cr_expect_eq(tally.seen[id], 1, "key %d seen %u times", id, tally.seen[id]);
    free(tally.seen);
    kv_dict_destroy(&dict);
}

/* Growing between calls: 4 new keys after every call, so the table doubles
 * about four times (and is mostly mid-rehash) during the scan. The scan
 * chases a growing table, so many more keys per call would make it endless. Every original
 * key is returned, and since the table only grows, exactly once. */
Test(kv_dict, scan_returns_every_entry_while_growing) {
    enum { KEYS = 1000, MAX_IDS = 1000000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    size_t start_memory = kv_dict_memory(dict);
    scan_tally_t tally = s_tally_new(MAX_IDS);
    int next_id = KEYS;
    uint64_t cursor = 0;
    do {
        cursor = kv_dict_scan(dict, cursor, s_tally, &tally);
        for (int i = 0; i < 4; i++) cr_assert_eq(s_put_id(dict, next_id++, 1), 0);
        cr_assert_lt(next_id, MAX_IDS - 20, "the scan does not terminate");
    } while (cursor != 0);
    cr_expect_gt(kv_dict_memory(dict), 8 * start_memory, "the table should have grown a lot");
    for (int id = 0; id < KEYS; id++)
        cr_expect_eq(tally.seen[id], 1, "key %d seen %u times", id, tally.seen[id]);
    for (int id = KEYS; id < next_id; id++)
        cr_expect_leq(tally.seen[id], 1, "new key %d seen %u times", id, tally.seen[id]);
    free(tally.seen);
    kv_dict_destroy(&dict);
}

/* Shrinking between calls: 200 deletes and a slice of idle rehash (as the
 * node's loop does) after every call take 20,000 keys down to the 500 that
 * are never deleted, through several shrinks. A shrink may return an entry
 * twice, but never misses one. */
Test(kv_dict, scan_returns_every_entry_while_shrinking) {
    enum { KEYS = 20000, KEEP = 500 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < KEYS; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    size_t start_memory = kv_dict_memory(dict);
    scan_tally_t tally = s_tally_new(KEYS);
    int next_delete = KEEP;
    uint64_t cursor = 0;
    size_t calls = 0;
    do {
        cursor = kv_dict_scan(dict, cursor, s_tally, &tally);
        for (int i = 0; i < 200 && next_delete < KEYS; i++)
            cr_assert_eq(s_delete_id(dict, next_delete++), 0);
        kv_dict_rehash_for(dict, 0);
        cr_assert_lt(++calls, 1000000, "the scan does not terminate");
    } while (cursor != 0);
    cr_expect_lt(kv_dict_memory(dict), start_memory / 8, "the table should have shrunk");
    for (int id = 0; id < KEEP; id++)
        cr_expect_geq(tally.seen[id], 1, "key %d was never returned", id);
    free(tally.seen);
    kv_dict_destroy(&dict);
}

/* Churn between calls: phases of inserts and of deletes, a random number per
 * call, grow the table and shrink it again, so calls land mid-rehash in both
 * directions and right after rehashes finish. The keys that are never
 * touched must all come back, whatever the table did. */
Test(kv_dict, scan_returns_every_entry_under_churn) {
    enum { STABLE = 100, POOL = 6000, IDS = STABLE + POOL };
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < STABLE; id++) cr_assert_eq(s_put_id(dict, id, 1), 0);
    uint64_t random = 0x9e3779b97f4a7c15ULL;
    int live = 0; /* churn keys STABLE .. STABLE + live - 1 are present */
    for (int round = 0; round < 10; round++) {
        scan_tally_t tally = s_tally_new(IDS);
        uint64_t cursor = 0;
        size_t calls = 0;
        do {
            cursor = kv_dict_scan(dict, cursor, s_tally, &tally);
            random ^= random << 13, random ^= random >> 7, random ^= random << 17;
            bool growing = (calls / 30 + (size_t)round) % 2 == 0; /* 30 calls each way */
            int ops = (int)(random % 300);
            for (int i = 0; i < ops && growing && live < POOL; i++)
                cr_assert_eq(s_put_id(dict, STABLE + live++, 1), 0);
            for (int i = 0; i < ops && !growing && live > 0; i++)
                cr_assert_eq(s_delete_id(dict, STABLE + --live), 0);
            cr_assert_lt(++calls, 1000000, "the scan does not terminate");
        } while (cursor != 0);
        for (int id = 0; id < STABLE; id++)
            cr_assert_geq(tally.seen[id], 1, "round %d: key %d never returned", round, id);
        free(tally.seen);
    }
    kv_dict_destroy(&dict);
}

/* The layout's cost in the benchmark's shape, stored as the store does (no
 * version): 1,000,000 keys of 11 bytes with 32-byte values. Redis takes
 * 120.5 bytes per key; the target is at most 0.7 of that. */
Test(kv_dict, memory_per_entry_beats_redis, .timeout = 120) {
    enum { KEYS = 1000000 };
    static const char value[32] = "0123456789abcdef0123456789abcdef";
    kv_dict_t *dict = kv_dict_new(s_seed);
    char key[16];
    for (int id = 0; id < KEYS; id++) {
        int klen = snprintf(key, sizeof key, "key:%07d", id);
        cr_assert_eq(klen, 11);
        cr_assert_eq(kv_dict_put(dict, key, 11, value, sizeof value, 0, 0), 0);
    }
    s_settle(dict);
    double per_entry = (double)kv_dict_memory(dict) / (double)kv_dict_size(dict);
    cr_log_info("%.1f bytes per entry for 1M entries (11-byte keys, 32-byte values)", per_entry);
    cr_expect_lt(per_entry, 0.7 * 120.5);
    kv_dict_destroy(&dict);
}

/* --- expiry trailer ------------------------------------------------------------ */

/* The expiry follows the version (or stands alone), survives overwrites
 * that keep it and goes with those that do not; the count of expiring
 * entries follows. */
Test(kv_dict, expiry_trailer_and_count) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("a"), BYTES("1"), 5, 1700000000000), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("b"), BYTES("2"), 0, 1700000000001), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("c"), BYTES("3"), 6, 0), 0);
    cr_expect_eq(kv_dict_expiring(dict), 2);
    const kv_entry_t *a = kv_dict_get(dict, BYTES("a"));
    cr_expect_eq(kv_entry_version(a), 5);
    cr_expect_eq(kv_entry_expiry(a), 1700000000000);
    cr_expect_eq(kv_entry_expiry(kv_dict_get(dict, BYTES("b"))), 1700000000001);
    cr_expect_eq(kv_entry_version(kv_dict_get(dict, BYTES("b"))), 0);
    cr_expect_eq(kv_entry_expiry(kv_dict_get(dict, BYTES("c"))), 0);
    cr_assert_eq(kv_dict_put(dict, BYTES("a"), BYTES("1"), 7, 0), 0); /* persisted */
    cr_expect_eq(kv_entry_expiry(kv_dict_get(dict, BYTES("a"))), 0);
    cr_expect_eq(kv_dict_expiring(dict), 1);
    cr_assert_eq(kv_dict_put(dict, BYTES("c"), BYTES("3"), 8, 42), 0); /* given one */
    cr_expect_eq(kv_dict_expiring(dict), 2);
    cr_assert_eq(kv_dict_delete(dict, BYTES("b")), 0);
    cr_expect_eq(kv_dict_expiring(dict), 1);
    kv_dict_clear(dict);
    cr_expect_eq(kv_dict_expiring(dict), 0);
    kv_dict_destroy(&dict);
}

static void s_collect_key(const kv_entry_t *entry, void *arg) {
    int *seen = arg;
    if (kv_entry_klen(entry) == 4 && memcmp(kv_entry_key(entry), "want", 4) == 0) (*seen)++;
}

/* kv_dict_bucket_foreach finds an entry by its hash alone, also while the
 * table is being resized. */
Test(kv_dict, bucket_foreach_finds_an_entry_by_hash) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_assert_eq(kv_dict_put(dict, BYTES("want"), BYTES("v"), 1, 9), 0);
    uint64_t hash = kv_dict_hash(dict, BYTES("want"));
    for (int i = 0; i < 5000; i++) { /* grows through several resizes */
        char key[16];
        int klen = snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(kv_dict_put(dict, key, (size_t)klen, BYTES("x"), 0, 0), 0);
        int seen = 0;
        kv_dict_bucket_foreach(dict, hash, s_collect_key, &seen);
        cr_assert_eq(seen, 1, "after %d puts", i);
    }
    kv_dict_destroy(&dict);
}

/* --- access clock and sampling (eviction) ---------------------------------------- */

static void s_no_op(const kv_entry_t *entry, void *arg) {
    (void)entry, (void)arg;
}

/* Counts entries whose clock is not their id modulo 200 (as put). */
static void s_check_clock(const kv_entry_t *entry, void *arg) {
    char key[32];
    size_t klen = kv_entry_klen(entry);
    memcpy(key, kv_entry_key(entry), klen);
    key[klen] = '\0';
    long id = strtol(key + 4, NULL, 10);
    if (kv_entry_lru(entry) != id % 200) ++*(size_t *)arg;
}

/* Puts and gets stamp the clock last set; scans do not; compaction and
 * overwrites keep the entry stamped; the entry stays 56 bytes. */
Test(kv_dict, puts_and_gets_stamp_the_access_clock) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    cr_expect_eq(kv_dict_clock(dict), 0);
    kv_dict_set_clock(dict, 5);
    cr_assert_eq(
        kv_dict_put(dict, BYTES("key:0000001"), BYTES("0123456789abcdef0123456789abcdef"), 0, 0),
        0);
    cr_assert_eq(kv_dict_put(dict, BYTES("other"), BYTES("v"), 7, 99), 0);
    kv_dict_set_clock(dict, 255);
    const kv_entry_t *entry = kv_dict_get(dict, BYTES("key:0000001"));
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_lru(entry), 255);
    cr_expect_eq(kv_entry_bytes(entry), 56 + sizeof(void *), "the clock cost a byte");
    cr_expect_eq(kv_entry_vlen(entry), 32);
    cr_expect_eq(kv_entry_klen(entry), 11);
    kv_dict_set_clock(dict, 3);
    uint64_t cursor = 0;
    do cursor = kv_dict_scan(dict, cursor, s_no_op, NULL);
    while (cursor);
    const kv_entry_t *sample[2];
    cr_assert_eq(kv_dict_sample(dict, 1, sample, 2), 2);
    cr_expect_eq(kv_entry_lru(kv_dict_get(dict, BYTES("other"))), 3, "a get stamps");
    cr_assert_eq(kv_dict_put(dict, BYTES("key:0000001"), BYTES("longer value"), 0, 0), 0);
    entry = kv_dict_get(dict, BYTES("key:0000001"));
    cr_expect_eq(kv_entry_lru(entry), 3);
    entry = kv_dict_get(dict, BYTES("other"));
    cr_expect_eq(kv_entry_version(entry), 7, "the clock's bits overlap the flags");
    cr_expect_eq(kv_entry_expiry(entry), 99);
    kv_dict_destroy(&dict);
}

/* The clock outlives compaction: entries moved to a new block keep it. */
Test(kv_dict, compaction_keeps_the_access_clock) {
    kv_dict_t *dict = kv_dict_new(s_seed);
    for (int id = 0; id < 4000; id++) {
        kv_dict_set_clock(dict, (uint8_t)(id % 200));
        cr_assert_eq(s_put_id(dict, id, 0), 0);
    }
    size_t before = kv_dict_memory(dict);
    for (int id = 0; id < 4000; id += 2) cr_assert_eq(s_delete_id(dict, id), 0);
    s_settle(dict);
    cr_assert_lt(kv_dict_memory(dict), before * 3 / 4, "no compaction happened");
    uint64_t cursor = 0;
    size_t wrong = 0;
    do cursor = kv_dict_scan(dict, cursor, s_check_clock, &wrong);
    while (cursor);
    cr_expect_eq(wrong, 0, "%zu entries lost their clock in compaction", wrong);
    kv_dict_destroy(&dict);
}

/* Samples are entries of the dict, as many as asked (the dict's size at
 * most), the same for the same seed, and over many seeds every entry. */
Test(kv_dict, sampling_reaches_every_entry_without_a_walk) {
    enum { IDS = 1000 };
    kv_dict_t *dict = kv_dict_new(s_seed);
    const kv_entry_t *sample[5], *again[5];
    cr_expect_eq(kv_dict_sample(dict, 1, sample, 5), 0, "an empty dict");
    for (int id = 0; id < 3; id++) cr_assert_eq(s_put_id(dict, id, 0), 0);
    cr_expect_eq(kv_dict_sample(dict, 1, sample, 5), 3, "capped at the size");
    cr_expect(sample[0] != sample[1] && sample[1] != sample[2] && sample[0] != sample[2],
              "a dict no bigger than the sample is given whole");
    for (int id = 3; id < IDS; id++) cr_assert_eq(s_put_id(dict, id, 0), 0);
    s_settle(dict);
    scan_tally_t tally = s_tally_new(IDS);
    for (uint64_t seed = 0; seed < 20000; seed++) {
        cr_assert_eq(kv_dict_sample(dict, seed, sample, 5), 5);
        cr_assert_eq(kv_dict_sample(dict, seed, again, 5), 5);
        for (int i = 0; i < 5; i++) {
            cr_assert_eq(sample[i], again[i], "the same seed gave other entries");
            s_tally(sample[i], &tally);
        }
    }
    int missed = 0;
    for (int id = 0; id < IDS; id++) missed += tally.seen[id] == 0;
    cr_expect_eq(missed, 0, "%d entries never sampled in 100,000 draws", missed);
    for (int id = 0; id < IDS; id += 2) cr_assert_eq(s_delete_id(dict, id), 0); /* sparser */
    cr_expect_eq(kv_dict_sample(dict, 7, sample, 5), 5);
    free(tally.seen);
    kv_dict_destroy(&dict);
}
