/*  test_kv_store.c: a node's data, one dict per partition.
 *
 *  The first part is the map contract per partition (put, get, delete,
 *  clear, sizes, memory) and the isolation between partitions. The second
 *  is kv_store_scan_sorted, which serves the paged bulk reads: a reader
 *  that passes the last key of each page as the next page's cursor must see
 *  every key exactly once, in increasing order, even while keys are written
 *  and deleted between its pages. Keys are "k%05d" so a callback can tell
 *  which key it saw from the key alone.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_limits.h"
#include "kv_store.h"

/* A string literal that may hold a NUL, as the (bytes, length) pair. */
#define BYTES(literal) (literal), (sizeof(literal) - 1)

#define PARTITIONS 8

static size_t s_key(char *buf, size_t size, int id) {
    return (size_t)snprintf(buf, size, "k%05d", id);
}

static int s_put_id(kv_store_t *store, uint32_t partition, int id) {
    char key[32];
    char value[32];
    size_t klen = s_key(key, sizeof key, id);
    int vlen = snprintf(value, sizeof value, "value-%d", id);
    return kv_store_put(store, partition, key, klen, value, (size_t)vlen, 0, 0);
}

static int s_delete_id(kv_store_t *store, uint32_t partition, int id) {
    char key[32];
    size_t klen = s_key(key, sizeof key, id);
    return kv_store_delete(store, partition, key, klen);
}

static bool s_value_is(const kv_entry_t *entry, const char *value, size_t vlen) {
    return entry && kv_entry_vlen(entry) == vlen && memcmp(kv_entry_value(entry), value, vlen) == 0;
}

static kv_store_t *s_store(void) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    cr_assert_not_null(store);
    return store;
}

//  --------------------------------------------------------------------------
//  The map, per partition

Test(kv_store, new_store_is_empty) {
    kv_store_t *store = s_store();
    cr_expect_eq(kv_store_size(store), 0);
    for (uint32_t p = 0; p < PARTITIONS; p++) cr_expect_eq(kv_store_partition_size(store, p), 0);
    cr_expect_null(kv_store_get(store, 0, BYTES("missing")));
    cr_expect_gt(kv_store_memory(store), 0, "the store itself is counted");
    kv_store_destroy(&store);
}

Test(kv_store, destroy_sets_null_and_is_safe_twice) {
    kv_store_t *store = s_store();
    cr_assert_eq(kv_store_put(store, 1, BYTES("k"), BYTES("v"), 0, 0), 0);
    kv_store_destroy(&store);
    cr_expect_null(store);
    kv_store_destroy(&store);
    kv_store_destroy(NULL);
}

Test(kv_store, put_then_get_returns_the_entry) {
    kv_store_t *store = s_store();
    cr_assert_eq(kv_store_put(store, 5, BYTES("user:1"), BYTES("alice"), 0, 0), 0);
    const kv_entry_t *entry = kv_store_get(store, 5, BYTES("user:1"));
    cr_assert_not_null(entry);
    cr_expect_eq(kv_entry_klen(entry), 6);
    cr_expect_eq(memcmp(kv_entry_key(entry), "user:1", 6), 0);
    cr_expect(s_value_is(entry, BYTES("alice")));
    cr_expect_eq(kv_store_partition_size(store, 5), 1);
    cr_expect_eq(kv_store_size(store), 1);
    kv_store_destroy(&store);
}

Test(kv_store, overwrite_keeps_one_entry) {
    kv_store_t *store = s_store();
    cr_assert_eq(kv_store_put(store, 0, BYTES("k"), BYTES("first"), 0, 0), 0);
    cr_assert_eq(kv_store_put(store, 0, BYTES("k"), BYTES("second"), 0, 0), 0);
    cr_expect_eq(kv_store_size(store), 1);
    cr_expect(s_value_is(kv_store_get(store, 0, BYTES("k")), BYTES("second")));
    kv_store_destroy(&store);
}

/* The store stamps no version: nothing reads one yet, and an 8-byte trailer
 * on every entry would be 15 % of the benchmark's 55-byte entry. */
Test(kv_store, entries_carry_no_version) {
    kv_store_t *store = s_store();
    for (int i = 0; i < 20; i++) {
        uint32_t partition = (uint32_t)(i % 3);
        cr_assert_eq(kv_store_put(store, partition, BYTES("k"), BYTES("v"), 0, 0), 0);
        cr_expect_eq(kv_entry_version(kv_store_get(store, partition, BYTES("k"))), 0, "write %d",
                     i);
    }
    kv_store_destroy(&store);
}

Test(kv_store, delete_present_and_absent) {
    kv_store_t *store = s_store();
    cr_expect_eq(kv_store_delete(store, 2, BYTES("k")), -1, "never written partition");
    cr_assert_eq(kv_store_put(store, 2, BYTES("k"), BYTES("v"), 0, 0), 0);
    cr_assert_eq(kv_store_put(store, 2, BYTES("other"), BYTES("v"), 0, 0), 0);
    cr_expect_eq(kv_store_delete(store, 2, BYTES("absent")), -1);
    cr_expect_eq(kv_store_delete(store, 2, BYTES("k")), 0);
    cr_expect_eq(kv_store_delete(store, 2, BYTES("k")), -1, "already deleted");
    cr_expect_null(kv_store_get(store, 2, BYTES("k")));
    cr_expect_not_null(kv_store_get(store, 2, BYTES("other")));
    cr_expect_eq(kv_store_size(store), 1);
    kv_store_destroy(&store);
}

/* The same key in two partitions is two entries. */
Test(kv_store, partitions_are_isolated) {
    kv_store_t *store = s_store();
    cr_assert_eq(kv_store_put(store, 0, BYTES("k"), BYTES("zero"), 0, 0), 0);
    cr_assert_eq(kv_store_put(store, 7, BYTES("k"), BYTES("seven"), 0, 0), 0);
    cr_expect(s_value_is(kv_store_get(store, 0, BYTES("k")), BYTES("zero")));
    cr_expect(s_value_is(kv_store_get(store, 7, BYTES("k")), BYTES("seven")));
    cr_expect_null(kv_store_get(store, 3, BYTES("k")));
    cr_expect_eq(kv_store_delete(store, 0, BYTES("k")), 0);
    cr_expect_null(kv_store_get(store, 0, BYTES("k")));
    cr_expect(s_value_is(kv_store_get(store, 7, BYTES("k")), BYTES("seven")));
    cr_expect_eq(kv_store_partition_size(store, 0), 0);
    cr_expect_eq(kv_store_partition_size(store, 7), 1);
    kv_store_destroy(&store);
}

Test(kv_store, sizes_count_per_partition_and_in_total) {
    kv_store_t *store = s_store();
    for (uint32_t p = 0; p < PARTITIONS; p++)
        for (int id = 0; id < (int)p * 10; id++) cr_assert_eq(s_put_id(store, p, id), 0);
    size_t total = 0;
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        cr_expect_eq(kv_store_partition_size(store, p), (size_t)p * 10);
        total += (size_t)p * 10;
    }
    cr_expect_eq(kv_store_size(store), total);
    kv_store_destroy(&store);
}

Test(kv_store, clear_partition_empties_only_that_partition) {
    kv_store_t *store = s_store();
    for (int id = 0; id < 500; id++) {
        cr_assert_eq(s_put_id(store, 1, id), 0);
        cr_assert_eq(s_put_id(store, 2, id), 0);
    }
    kv_store_clear_partition(store, 1);
    cr_expect_eq(kv_store_partition_size(store, 1), 0);
    cr_expect_eq(kv_store_partition_size(store, 2), 500);
    cr_expect_null(kv_store_get(store, 1, BYTES("k00001")));
    cr_expect_not_null(kv_store_get(store, 2, BYTES("k00001")));
    cr_expect_eq(s_put_id(store, 1, 7), 0, "a cleared partition takes writes again");
    cr_expect_eq(kv_store_partition_size(store, 1), 1);
    kv_store_clear_partition(store, 5); /* never written: nothing to do */
    kv_store_clear_partition(store, PARTITIONS);
    kv_store_clear_partition(store, UINT32_MAX);
    cr_expect_eq(kv_store_size(store), 501);
    kv_store_destroy(&store);
}

Test(kv_store, memory_grows_with_data_and_shrinks_when_it_goes) {
    kv_store_t *store = s_store();
    size_t empty = kv_store_memory(store);
    for (int id = 0; id < 2000; id++) cr_assert_eq(s_put_id(store, 3, id), 0);
    size_t full = kv_store_memory(store);
    cr_expect_gt(full, empty + (size_t)2000 * 20, "at least the entry headers");

    for (int id = 0; id < 2000; id++) cr_assert_eq(s_delete_id(store, 3, id), 0);
    size_t drained = kv_store_memory(store);
    cr_expect_lt(drained, empty + (full - empty) / 10, "deleted entries and tables are freed");

    for (int id = 0; id < 2000; id++) cr_assert_eq(s_put_id(store, 4, id), 0);
    kv_store_clear_partition(store, 4);
    kv_store_clear_partition(store, 3);
    cr_expect_eq(kv_store_memory(store), empty, "a cleared partition costs nothing");
    kv_store_destroy(&store);
}

Test(kv_store, partition_out_of_range_is_refused) {
    kv_store_t *store = s_store();
    const uint32_t bad[] = {PARTITIONS, PARTITIONS + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(kv_store_put(store, bad[i], BYTES("k"), BYTES("v"), 0, 0), -1);
        cr_expect_null(kv_store_get(store, bad[i], BYTES("k")));
        cr_expect_eq(kv_store_delete(store, bad[i], BYTES("k")), -1);
        cr_expect_eq(kv_store_partition_size(store, bad[i]), 0);
    }
    cr_expect_eq(kv_store_size(store), 0);
    kv_store_destroy(&store);
}

/* The dict's limits surface through the store: keys 1..256 bytes, values
 * up to 1024 bytes; anything else is refused and changes nothing. */
Test(kv_store, key_and_value_length_limits) {
    static char key[KV_MAX_KEY_BYTES + 1];
    static char value[KV_MAX_VALUE_BYTES + 1];
    memset(key, 'k', sizeof key);
    memset(value, 'v', sizeof value);
    kv_store_t *store = s_store();
    cr_expect_eq(kv_store_put(store, 0, key, 0, BYTES("v"), 0, 0), -1, "empty key");
    cr_expect_eq(kv_store_put(store, 0, key, sizeof key, BYTES("v"), 0, 0), -1, "257-byte key");
    cr_expect_eq(kv_store_put(store, 0, BYTES("k"), value, sizeof value, 0, 0), -1,
                 "1025-byte value");
    cr_expect_eq(kv_store_size(store), 0);
    cr_expect_eq(kv_store_put(store, 0, key, KV_MAX_KEY_BYTES, value, KV_MAX_VALUE_BYTES, 0, 0), 0);
    cr_expect_eq(kv_store_put(store, 0, BYTES("empty"), "", 0, 0, 0), 0, "empty values are values");
    cr_expect(s_value_is(kv_store_get(store, 0, key, KV_MAX_KEY_BYTES), value, KV_MAX_VALUE_BYTES));
    cr_expect(s_value_is(kv_store_get(store, 0, BYTES("empty")), "", 0));
    kv_store_destroy(&store);
}

Test(kv_store, rehash_for_keeps_every_key) {
    kv_store_t *store = s_store();
    for (int id = 0; id < 5000; id++) cr_assert_eq(s_put_id(store, (uint32_t)id % 3, id), 0);
    kv_store_rehash_for(store, 100000);
    kv_store_rehash_for(store, 0);
    for (int id = 0; id < 5000; id++) {
        char key[32];
        size_t klen = s_key(key, sizeof key, id);
        cr_assert_not_null(kv_store_get(store, (uint32_t)id % 3, key, klen), "key %d", id);
    }
    kv_store_destroy(&store);
}

//  --------------------------------------------------------------------------
//  Key order

Test(kv_store, key_compare_is_bytewise_with_shorter_first) {
    cr_expect_eq(kv_store_key_compare(BYTES("abc"), BYTES("abc")), 0);
    cr_expect_lt(kv_store_key_compare(BYTES("abc"), BYTES("abd")), 0);
    cr_expect_gt(kv_store_key_compare(BYTES("abd"), BYTES("abc")), 0);
    cr_expect_lt(kv_store_key_compare(BYTES("ab"), BYTES("abc")), 0, "prefix first");
    cr_expect_gt(kv_store_key_compare(BYTES("abc"), BYTES("ab")), 0);
    cr_expect_lt(kv_store_key_compare(BYTES("a"), BYTES("a\0")), 0, "NUL is a byte");
    cr_expect_lt(kv_store_key_compare(BYTES("a\0"), BYTES("a\x01")), 0);
    cr_expect_lt(kv_store_key_compare(BYTES("\x7f"), BYTES("\x80")), 0, "bytes are unsigned");
    cr_expect_lt(kv_store_key_compare(BYTES("z"), BYTES("\xc3\xa9")), 0, "UTF-8 after ASCII");
    cr_expect_lt(kv_store_key_compare(BYTES(""), BYTES("a")), 0);
    cr_expect_eq(kv_store_key_compare(BYTES(""), BYTES("")), 0);
}

//  --------------------------------------------------------------------------
//  Sorted scans

/* A reader of one partition: the keys it was given, in order. */
typedef struct {
    char last[KV_MAX_KEY_BYTES]; /* the last key given: the next cursor */
    size_t llen;                 /* its length */
    int has_last;                /* a key was given */
    unsigned *seen;              /* times each original id was given */
    int ids;                     /* length of seen */
    size_t calls;                /* entries given */
    size_t page_calls;           /* entries given in the current page */
    size_t stop_at;              /* return 1 on this call of a page (1-based), 0: never */
} s_reader_t;

static s_reader_t *s_reader_new(int ids) {
    s_reader_t *reader = calloc(1, sizeof(*reader));
    cr_assert_not_null(reader);
    reader->seen = calloc((size_t)(ids ? ids : 1), sizeof(unsigned));
    cr_assert_not_null(reader->seen);
    reader->ids = ids;
    return reader;
}

static void s_reader_destroy(s_reader_t **reader_p) {
    free((*reader_p)->seen);
    free(*reader_p);
    *reader_p = NULL;
}

/* Checks the entry sorts after everything given before, and counts it. Keys
 * "k%05d" are originals; longer ones were written while reading. */
static int s_read(const kv_entry_t *entry, void *arg) {
    s_reader_t *reader = arg;
    const char *key = kv_entry_key(entry);
    size_t klen = kv_entry_klen(entry);
    if (reader->has_last)
        cr_assert_gt(kv_store_key_compare(key, klen, reader->last, reader->llen), 0,
                     "%.*s given after %.*s", (int)klen, key, (int)reader->llen, reader->last);
    memcpy(reader->last, key, klen);
    reader->llen = klen;
    reader->has_last = 1;
    reader->calls++;
    reader->page_calls++;
    if (klen == 6 && key[0] == 'k') {
        int id = (int)strtol(key + 1, NULL, 10);
        cr_assert(id >= 0 && id < reader->ids, "unexpected key %.*s", (int)klen, key);
        reader->seen[id]++;
    }
    return reader->stop_at && reader->page_calls == reader->stop_at;
}

/* Reads one page after the reader's last key; returns what the scan did. */
static int s_read_page(kv_store_t *store, uint32_t partition, s_reader_t *reader, uint32_t limit) {
    reader->page_calls = 0;
    return kv_store_scan_sorted(store, partition, reader->has_last, reader->last, reader->llen,
                                limit, s_read, reader);
}

/* Fills partition with ids 0..count-1 in a scrambled order. */
static void s_fill(kv_store_t *store, uint32_t partition, int count) {
    for (int i = 0; i < count; i++) {
        int id = (int)(((unsigned)i * 7919u) % (unsigned)count);
        cr_assert_eq(s_put_id(store, partition, id), 0);
    }
}

static void s_assert_each_seen_once(const s_reader_t *reader) {
    for (int id = 0; id < reader->ids; id++)
        cr_assert_eq(reader->seen[id], 1, "key %d seen %u times", id, reader->seen[id]);
}

Test(kv_store, scan_gives_a_page_in_key_order) {
    kv_store_t *store = s_store();
    s_fill(store, 2, 300);
    s_reader_t *reader = s_reader_new(300);
    cr_expect_eq(s_read_page(store, 2, reader, 50), 1);
    cr_expect_eq(reader->calls, 50);
    for (int id = 0; id < 50; id++) cr_expect_eq(reader->seen[id], 1, "the 50 smallest keys");
    cr_expect_eq(memcmp(reader->last, "k00049", 6), 0);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

/* A page that holds the whole rest of the partition is sorted too: a caller
 * may stop early in it and resume from the last key it took. */
Test(kv_store, scan_of_the_whole_partition_is_in_key_order) {
    kv_store_t *store = s_store();
    s_fill(store, 2, 300);
    s_reader_t *reader = s_reader_new(300);
    cr_expect_eq(s_read_page(store, 2, reader, 1000), 0, "nothing after the last page");
    cr_expect_eq(reader->calls, 300);
    s_assert_each_seen_once(reader);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_sorts_binary_keys_bytewise_shorter_first) {
    static const struct {
        const char *key;
        size_t len;
    } sorted[] = {{"\x01", 1}, {"a", 1},     {"a\0", 2}, {"a\x01", 2}, {"aa", 2},
                  {"ab", 2},   {"a\x80", 2}, {"b", 1},   {"\xff", 1}};
    enum { COUNT = sizeof sorted / sizeof sorted[0] };
    kv_store_t *store = s_store();
    for (size_t i = COUNT; i-- > 0;) /* written backwards */
        cr_assert_eq(kv_store_put(store, 0, sorted[i].key, sorted[i].len, "", 0, 0, 0), 0);
    s_reader_t *reader = s_reader_new(0);
    for (size_t i = 0; i < COUNT; i++) {
        cr_expect_eq(s_read_page(store, 0, reader, 1), i + 1 < COUNT);
        cr_assert_eq(reader->page_calls, 1);
        cr_expect_eq(reader->llen, sorted[i].len, "position %zu", i);
        cr_expect_eq(memcmp(reader->last, sorted[i].key, sorted[i].len), 0, "position %zu", i);
    }
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_after_is_exclusive) {
    kv_store_t *store = s_store();
    s_fill(store, 1, 10);
    s_reader_t *reader = s_reader_new(10);
    cr_expect_eq(kv_store_scan_sorted(store, 1, 1, BYTES("k00004"), 100, s_read, reader), 0);
    cr_expect_eq(reader->calls, 5, "k00005..k00009");
    cr_expect_eq(reader->seen[4], 0, "the cursor key itself is not given again");
    cr_expect_eq(reader->seen[5], 1);
    s_reader_destroy(&reader);

    reader = s_reader_new(10); /* a cursor key that is not (or no longer) stored */
    cr_expect_eq(kv_store_scan_sorted(store, 1, 1, BYTES("k00004x"), 100, s_read, reader), 0);
    cr_expect_eq(reader->calls, 5);
    s_reader_destroy(&reader);

    reader = s_reader_new(10); /* past every key */
    cr_expect_eq(kv_store_scan_sorted(store, 1, 1, BYTES("k99999"), 100, s_read, reader), 0);
    cr_expect_eq(reader->calls, 0);
    s_reader_destroy(&reader);

    reader = s_reader_new(10); /* has_after 0: after is ignored */
    cr_expect_eq(kv_store_scan_sorted(store, 1, 0, BYTES("k00008"), 100, s_read, reader), 0);
    cr_expect_eq(reader->calls, 10);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_limit_and_more_flag) {
    kv_store_t *store = s_store();
    s_fill(store, 0, 10);
    s_reader_t *reader = s_reader_new(10);
    cr_expect_eq(s_read_page(store, 0, reader, 3), 1, "7 left");
    cr_expect_eq(reader->page_calls, 3);
    cr_expect_eq(s_read_page(store, 0, reader, 6), 1, "1 left");
    cr_expect_eq(reader->page_calls, 6);
    cr_expect_eq(s_read_page(store, 0, reader, 1), 0, "exactly the last one: no more");
    cr_expect_eq(reader->page_calls, 1);
    cr_expect_eq(s_read_page(store, 0, reader, 1), 0, "past the end");
    cr_expect_eq(reader->page_calls, 0);
    s_assert_each_seen_once(reader);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

/* A limit of 0 gives nothing and says whether the partition has entries. */
Test(kv_store, scan_with_limit_zero_gives_nothing) {
    kv_store_t *store = s_store();
    s_reader_t *reader = s_reader_new(10);
    cr_expect_eq(s_read_page(store, 0, reader, 0), 0, "empty partition");
    s_fill(store, 0, 10);
    cr_expect_eq(s_read_page(store, 0, reader, 0), 1);
    cr_expect_eq(reader->calls, 0);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_stops_when_fn_returns_nonzero) {
    kv_store_t *store = s_store();
    s_fill(store, 0, 10);
    s_reader_t *reader = s_reader_new(10);
    reader->stop_at = 3;
    cr_expect_eq(s_read_page(store, 0, reader, 100), 1, "7 entries were not given");
    cr_expect_eq(reader->calls, 3);
    cr_expect_eq(memcmp(reader->last, "k00002", 6), 0, "the smallest three");
    reader->stop_at = 0; /* resume after the last key taken */
    cr_expect_eq(s_read_page(store, 0, reader, 100), 0);
    s_assert_each_seen_once(reader);
    s_reader_destroy(&reader);

    reader = s_reader_new(10); /* stopping on the very last entry leaves nothing */
    reader->stop_at = 10;
    cr_expect_eq(s_read_page(store, 0, reader, 100), 0);
    cr_expect_eq(reader->calls, 10);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_of_an_empty_partition_gives_nothing) {
    kv_store_t *store = s_store();
    s_reader_t *reader = s_reader_new(10);
    cr_expect_eq(s_read_page(store, 3, reader, 100), 0, "never written");
    cr_assert_eq(s_put_id(store, 3, 1), 0);
    cr_assert_eq(s_delete_id(store, 3, 1), 0);
    cr_expect_eq(s_read_page(store, 3, reader, 100), 0, "emptied by deletes");
    cr_assert_eq(s_put_id(store, 3, 1), 0);
    kv_store_clear_partition(store, 3);
    cr_expect_eq(s_read_page(store, 3, reader, 100), 0, "cleared");
    cr_expect_eq(reader->calls, 0);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_of_a_partition_out_of_range_gives_nothing) {
    kv_store_t *store = s_store();
    s_fill(store, 0, 10);
    s_reader_t *reader = s_reader_new(10);
    cr_expect_eq(s_read_page(store, PARTITIONS, reader, 100), 0);
    cr_expect_eq(s_read_page(store, UINT32_MAX, reader, 100), 0);
    cr_expect_eq(reader->calls, 0);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

Test(kv_store, scan_gives_only_its_partition) {
    kv_store_t *store = s_store();
    s_fill(store, 0, 20);
    s_fill(store, 1, 5);
    s_reader_t *reader = s_reader_new(20);
    cr_expect_eq(s_read_page(store, 1, reader, 100), 0);
    cr_expect_eq(reader->calls, 5);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

/* The bulk read's usage: 10,000 keys in pages of 100, each page after the
 * last key of the one before. */
Test(kv_store, paging_visits_every_key_once_in_order) {
    enum { KEYS = 10000, LIMIT = 100 };
    kv_store_t *store = s_store();
    s_fill(store, 6, KEYS);
    s_fill(store, 5, 100); /* neighbours that must not leak in */
    s_reader_t *reader = s_reader_new(KEYS);
    int pages = 0;
    int more;
    do {
        more = s_read_page(store, 6, reader, LIMIT);
        cr_assert_geq(more, 0);
        cr_assert_eq(reader->page_calls, LIMIT, "page %d", pages);
        pages++;
    } while (more);
    cr_expect_eq(pages, KEYS / LIMIT);
    cr_expect_eq(reader->calls, KEYS);
    s_assert_each_seen_once(reader);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

/* Writes between pages (which also grow and rehash the table) must neither
 * hide nor repeat any key that was there when the read began. New keys
 * "k%05d+" sort right after an original: before the cursor they are never
 * given, after it they are given once, in order (s_read checks the order). */
Test(kv_store, paging_while_inserting_still_visits_every_original_once) {
    enum { KEYS = 10000, LIMIT = 100 };
    kv_store_t *store = s_store();
    s_fill(store, 6, KEYS);
    s_reader_t *reader = s_reader_new(KEYS);
    unsigned rng = 12345;
    int pages = 0;
    int inserted = 0;
    int more;
    do {
        more = s_read_page(store, 6, reader, LIMIT);
        cr_assert_geq(more, 0);
        for (int i = 0; i < 60; i++) {
            rng = rng * 1103515245u + 12345u;
            char key[32];
            int klen = snprintf(key, sizeof key, "k%05u+", (rng >> 8) % KEYS);
            inserted += kv_store_get(store, 6, key, (size_t)klen) == NULL;
            cr_assert_eq(kv_store_put(store, 6, key, (size_t)klen, BYTES("new"), 0, 0), 0);
        }
        pages++;
    } while (more);
    cr_expect_gt(inserted, KEYS / 2, "the partition grew well past its size");
    cr_expect_geq(pages, KEYS / LIMIT);
    s_assert_each_seen_once(reader);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

/* Deleting keys already given (which shrinks the table) changes nothing for
 * the keys still ahead of the cursor. */
Test(kv_store, paging_while_deleting_given_keys_visits_the_rest_once) {
    enum { KEYS = 5000, LIMIT = 100 };
    kv_store_t *store = s_store();
    s_fill(store, 0, KEYS);
    s_reader_t *reader = s_reader_new(KEYS);
    int more;
    do {
        more = s_read_page(store, 0, reader, LIMIT);
        cr_assert_geq(more, 0);
        for (int id = 0; id < KEYS; id++)
            if (reader->seen[id]) s_delete_id(store, 0, id);
    } while (more);
    s_assert_each_seen_once(reader);
    cr_expect_eq(kv_store_partition_size(store, 0), 0);
    s_reader_destroy(&reader);
    kv_store_destroy(&store);
}

static int s_count_entry(const kv_entry_t *entry, void *arg) {
    (void)entry;
    (*(int *)arg)++;
    return 0;
}

/* Metadata (keys starting with NUL: transaction intents and records) is
 * carried by snapshots but invisible to counts, scans and /clear. */
Test(kv_store, metadata_is_apart_from_the_data) {
    kv_store_t *store = s_store();
    cr_assert_eq(kv_store_put(store, 2, "\0ia", 3, BYTES("intent"), 0, 0), 0);
    cr_assert_eq(kv_store_put(store, 2, "a", 1, BYTES("1"), 5, 0), 0);
    cr_expect_eq(kv_store_partition_size(store, 2), 1);
    cr_expect_eq(kv_store_size(store), 1);
    cr_expect_eq(kv_store_meta_size(store, 2), 1);
    cr_expect_not_null(kv_store_get(store, 2, "\0ia", 3));
    int walked = 0;
    kv_store_foreach(store, 2, s_count_entry, &walked);
    cr_expect_eq(walked, 2, "snapshots carry metadata");
    walked = 0;
    kv_store_foreach_meta(store, 2, s_count_entry, &walked);
    cr_expect_eq(walked, 1);
    walked = 0;
    cr_expect_eq(kv_store_scan_sorted(store, 2, 0, NULL, 0, 10, s_count_entry, &walked), 0);
    cr_expect_eq(walked, 1, "scans see data only");
    kv_store_clear_data(store, 2);
    cr_expect_eq(kv_store_partition_size(store, 2), 0);
    cr_expect_eq(kv_store_meta_size(store, 2), 1, "a /clear keeps transactions' metadata");
    cr_expect_eq(kv_store_delete(store, 2, "\0ia", 3), 0);
    cr_expect_eq(kv_store_meta_size(store, 2), 0);
    cr_assert_eq(kv_store_put(store, 2, "\0ib", 3, BYTES("intent"), 0, 0), 0);
    kv_store_clear_partition(store, 2);
    cr_expect_eq(kv_store_meta_size(store, 2), 0, "a partition leaving takes everything");
    kv_store_destroy(&store);
}

/* --- expiry ---------------------------------------------------------------------- */

#define NOW 1700000000000 /* the store's clock in these tests (ms) */

typedef struct {
    kv_store_t *store; /* to remove what it is given */
    uint32_t partition;
    int remove;   /* remove (a primary) or keep (a replica) */
    int calls;    /* keys given */
    char last[8]; /* the last key given */
} s_reaper_t;

static int s_reap(const char *key, size_t klen, void *arg) {
    s_reaper_t *reaper = arg;
    reaper->calls++;
    memcpy(reaper->last, key, klen < 7 ? klen : 7);
    reaper->last[klen < 7 ? klen : 7] = '\0';
    if (!reaper->remove) return 0;
    cr_assert_eq(kv_store_delete(reaper->store, reaper->partition, key, klen), 0);
    return 1;
}

/* Past its deadline an entry is absent for reads and key-ordered scans at
 * once, before anything reclaims it; the count still holds it. */
Test(kv_store, expired_entries_are_invisible_at_once) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    kv_store_set_now(store, NOW);
    cr_assert_eq(kv_store_put(store, 1, BYTES("short"), BYTES("v"), 1, NOW + 1000), 0);
    cr_assert_eq(kv_store_put(store, 1, BYTES("long"), BYTES("v"), 2, NOW + 5000), 0);
    cr_assert_eq(kv_store_put(store, 1, BYTES("plain"), BYTES("v"), 3, 0), 0);
    cr_expect_not_null(kv_store_get(store, 1, BYTES("short")));
    kv_store_set_now(store, NOW + 1000); /* a deadline is the first expired instant */
    cr_expect_null(kv_store_get(store, 1, BYTES("short")));
    cr_expect_not_null(kv_store_get(store, 1, BYTES("long")));
    cr_expect_eq(kv_store_partition_size(store, 1), 3, "not reclaimed yet");
    s_reaper_t seen = {0};
    cr_expect_eq(kv_store_scan_sorted(store, 1, 0, NULL, 0, 10, s_count_entry, &seen.calls), 0);
    cr_expect_eq(seen.calls, 2, "the scan leaves the expired entry out");
    kv_store_destroy(&store);
}

/* The index leads to exactly the expired entries, in deadline order; a
 * kept one (a replica's) is visited again later; metadata never expires. */
Test(kv_store, expire_visits_due_deadlines_only) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    kv_store_set_now(store, NOW);
    cr_assert_eq(kv_store_put(store, 2, BYTES("first"), BYTES("v"), 1, NOW + 1000), 0);
    cr_assert_eq(kv_store_put(store, 2, BYTES("second"), BYTES("v"), 2, NOW + 2000), 0);
    cr_assert_eq(kv_store_put(store, 2, BYTES("later"), BYTES("v"), 3, NOW + 60000), 0);
    cr_assert_eq(kv_store_put(store, 2, BYTES("\0meta"), BYTES("v"), 4, NOW + 1000), 0);
    cr_expect_eq(kv_store_expiry_items(store), 3, "metadata is not indexed");
    cr_expect_eq(kv_store_next_expiry(store, 2), NOW + 1000);
    s_reaper_t reaper = {store, 2, 1, 0, ""};
    cr_expect_eq(kv_store_expire(store, 2, 10, s_reap, &reaper), 0, "nothing due yet");
    kv_store_set_now(store, NOW + 1500);
    cr_expect_eq(kv_store_expire(store, 2, 10, s_reap, &reaper), 1);
    cr_expect_eq(reaper.calls, 1);
    cr_expect_str_eq(reaper.last, "first");
    kv_store_set_now(store, NOW + 3000);
    reaper.remove = 0; /* a replica: keeps it for its primary's removal */
    cr_expect_eq(kv_store_expire(store, 2, 10, s_reap, &reaper), 1);
    cr_expect_str_eq(reaper.last, "second");
    cr_expect_eq(kv_store_next_expiry(store, 2), NOW + 3000 + KV_STORE_EXPIRE_RETRY_MS);
    kv_store_set_now(store, NOW + 3000 + KV_STORE_EXPIRE_RETRY_MS);
    reaper.remove = 1; /* promoted: now it removes */
    cr_expect_eq(kv_store_expire(store, 2, 10, s_reap, &reaper), 1);
    cr_expect_eq(reaper.calls, 3);
    cr_expect_eq(kv_store_partition_size(store, 2), 1, "only later is left");
    cr_expect_not_null(kv_store_get(store, 2, BYTES("\0meta")));
    kv_store_destroy(&store);
}

/* An item goes stale when its key is written again without (or with a
 * later) deadline: it is visited and finds nothing. The index is rebuilt
 * once stale items dominate, so rewriting one key forever stays bounded. */
Test(kv_store, stale_deadlines_find_nothing_and_stay_bounded) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    kv_store_set_now(store, NOW);
    cr_assert_eq(kv_store_put(store, 3, BYTES("k"), BYTES("v"), 1, NOW + 1000), 0);
    cr_assert_eq(kv_store_put(store, 3, BYTES("k"), BYTES("v"), 2, 0), 0); /* persisted */
    kv_store_set_now(store, NOW + 2000);
    s_reaper_t reaper = {store, 3, 1, 0, ""};
    cr_expect_eq(kv_store_expire(store, 3, 10, s_reap, &reaper), 1);
    cr_expect_eq(reaper.calls, 0, "the stale item finds no expired entry");
    cr_expect_not_null(kv_store_get(store, 3, BYTES("k")));
    for (int i = 0; i < 100000; i++)
        cr_assert_eq(kv_store_put(store, 3, BYTES("k"), BYTES("v"), 3, NOW + 3600000 + i), 0);
    cr_expect_leq(kv_store_expiry_items(store), 2 + 64 + 1, "rebuilt, not 100000 items");
    cr_assert_eq(kv_store_delete(store, 3, BYTES("k")), 0);
    kv_store_clear_data(store, 3);
    cr_expect_eq(kv_store_expiry_items(store), 0, "a cleared partition forgets its deadlines");
    kv_store_destroy(&store);
}

/* Snapshots and scans carry the deadline, so the receiver hides the entry
 * at the same instant. */
Test(kv_store, the_wire_entry_carries_the_deadline) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    kv_store_set_now(store, NOW);
    cr_assert_eq(kv_store_put(store, 4, BYTES("k"), BYTES("v"), 9, NOW + 1234), 0);
    kv_msg_entry_t wire = kv_store_entry_wire(kv_store_get(store, 4, BYTES("k")));
    cr_expect_eq(wire.meta.version, 9);
    cr_expect_eq(wire.meta.expiry, NOW + 1234);
    size_t before = kv_store_memory(store);
    cr_assert_eq(kv_store_put(store, 4, BYTES("k2"), BYTES("v"), 9, NOW + 1), 0);
    cr_expect_gt(kv_store_memory(store), before - 1, "the index is counted");
    kv_store_destroy(&store);
}

/* --- memory accounting (docs/memory.md) ------------------------------------ */

Test(kv_store, memory_is_kept_without_a_walk_and_returns_when_emptied) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    size_t empty = kv_store_memory(store);
    for (int id = 0; id < 5000; id++)
        cr_assert_eq(s_put_id(store, (uint32_t)id % PARTITIONS, id), 0);
    size_t full = kv_store_memory(store);
    cr_assert_gt(full, empty + (size_t)5000 * 20, "grew by at least the entries");
    for (int id = 0; id < 5000; id += 2) s_delete_id(store, (uint32_t)id % PARTITIONS, id);
    kv_store_rehash_for(store, 100000);
    cr_assert_leq(kv_store_memory(store), full);
    for (uint32_t p = 0; p < PARTITIONS; p++) kv_store_clear_partition(store, p);
    cr_assert_eq(kv_store_memory(store), empty);
    kv_store_destroy(&store);
}

Test(kv_store, put_growth_counts_new_keys_and_value_changes) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    int64_t fresh = kv_store_put_growth(store, 1, BYTES("key"), 100, 0);
    cr_assert_geq(fresh, 3 + 100, "a new key adds at least its bytes");
    cr_assert_eq(kv_store_put(store, 1, BYTES("key"), "v", 1, 7, 0), 0);
    cr_assert_gt(kv_store_put_growth(store, 1, BYTES("key"), 100, 0), 0, "a larger value grows");
    cr_assert_eq(kv_store_put_growth(store, 1, BYTES("key"), 1, 0), 0, "the same size: nothing");
    cr_assert_eq(
        kv_store_put(store, 1, BYTES("key"), fresh > 0 ? "0123456789abcdef0123" : "", 20, 8, 0), 0);
    cr_assert_lt(kv_store_put_growth(store, 1, BYTES("key"), 0, 0), 0, "a smaller value shrinks");
    kv_store_destroy(&store);
}

/* The running total is the walk's figure after every kind of change:
 * puts with and without deadlines, overwrites, removals, scans and
 * lookups (rehash steps), expiry, idle work, clears. */
Test(kv_store, the_running_total_matches_a_walk) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    kv_store_set_now(store, NOW);
    for (int id = 0; id < 3000; id++) {
        char key[16];
        int klen = snprintf(key, sizeof key, "k%d", id);
        int64_t expiry = id % 3 ? 0 : NOW + 1000 + id;
        cr_assert_eq(kv_store_put(store, (uint32_t)id % PARTITIONS, key, (size_t)klen, "value", 5,
                                  (uint64_t)id + 1, expiry),
                     0);
    }
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after puts");
    for (int id = 0; id < 3000; id += 4) s_delete_id(store, (uint32_t)id % PARTITIONS, id);
    for (int id = 1; id < 3000; id += 5) s_put_id(store, (uint32_t)id % PARTITIONS, id);
    cr_assert_eq(kv_store_put(store, 0, BYTES("\0meta"), BYTES("v"), 1, 0), 0);
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after changes");
    int seen = 0;
    kv_store_scan_sorted(store, 3, 0, NULL, 0, 100, s_count_entry, &seen);
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after a scan");
    kv_store_set_now(store, NOW + 10000);
    s_reaper_t reaper = {store, 0, 1, 0, ""};
    for (uint32_t p = 0; p < PARTITIONS; p++) {
        reaper.partition = p;
        kv_store_expire(store, p, 10000, s_reap, &reaper);
    }
    cr_expect_gt(reaper.calls, 0);
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after expiry");
    kv_store_rehash_for(store, 100000);
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after idle work");
    kv_store_clear_data(store, 1);
    kv_store_clear_partition(store, 0);
    cr_expect_eq(kv_store_memory(store), kv_store_memory_walk(store), "after clears");
    kv_store_destroy(&store);
}

/* --- the access clock (eviction) ------------------------------------------------ */

/* The clock ticks as data is written (every 4 KB at first), not as
 * metadata is; a put and a read stamp the entry, in any partition, a
 * partition's first dict included; idle counts ticks since, modulo 256. */
Test(kv_store, the_access_clock_ticks_with_data_written) {
    kv_store_t *store = kv_store_new(PARTITIONS);
    cr_expect_eq(kv_store_lru_clock(store), 0);
    static const char value[100] = {0};
    for (int i = 0; i < 39; i++) /* 39 x 103 bytes: under 4 KB */
        cr_assert_eq(kv_store_put(store, 0, BYTES("abc"), value, sizeof value, 0, 0), 0);
    cr_expect_eq(kv_store_lru_clock(store), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(kv_store_put(store, 1, BYTES("\0meta"), value, sizeof value, 0, 0), 0);
    cr_expect_eq(kv_store_lru_clock(store), 0, "metadata ticked the clock");
    cr_assert_eq(kv_store_put(store, 0, BYTES("abc"), value, sizeof value, 0, 0), 0);
    cr_expect_eq(kv_store_lru_clock(store), 1);
    cr_assert_eq(kv_store_put(store, 5, BYTES("new"), BYTES("v"), 0, 0), 0);
    const kv_entry_t *fresh = kv_store_get(store, 5, BYTES("new"));
    cr_expect_eq(kv_entry_lru(fresh), 1, "a new partition's dict missed the clock");
    for (int i = 0; i < 10; i++) kv_store_lru_advance(store);
    const kv_entry_t *old = kv_store_get(store, 0, BYTES("abc"));
    cr_expect_eq(kv_store_idle(store, old), 0, "a read stamps");
    const kv_entry_t *sample[1];
    cr_assert_eq(kv_store_sample(store, 5, 1, sample, 1), 1);
    cr_expect_eq(kv_store_idle(store, sample[0]), 10, "sampling stamped");
    for (int i = 0; i < 250; i++) kv_store_lru_advance(store);
    cr_expect_eq(kv_store_idle(store, sample[0]), (uint8_t)260);
    cr_expect_eq(kv_store_partition_expiring(store, 5), 0);
    kv_store_destroy(&store);
}
