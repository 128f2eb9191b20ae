/*  test_kv_intents.c: transaction intents (kv_intents). */
#include <criterion/criterion.h>
#include <string.h>

#include "kv_intents.h"
#include "kv_limits.h"

static kv_intent_t s_intent(uint64_t txid, uint8_t kind, const char *value, int64_t deadline) {
    return (kv_intent_t){.txid = txid,
                         .record_partition = 7,
                         .kind = kind,
                         .version = 100 + txid,
                         .deadline_ms = deadline,
                         .value = value,
                         .vlen = value ? strlen(value) : 0};
}

#define KEY(text) text, sizeof(text) - 1

Test(kv_intents, a_key_holds_one_transactions_intent) {
    kv_intents_t *intents = kv_intents_new();
    cr_assert_not_null(intents);
    cr_expect_null(kv_intents_get(intents, 1, KEY("a")), "empty");
    kv_intent_t mine = s_intent(1, KV_INTENT_SET, "new", 1000);
    cr_expect_eq(kv_intents_put(intents, 1, KEY("a"), &mine), 0);
    kv_intent_t theirs = s_intent(2, KV_INTENT_READ, NULL, 1000);
    cr_expect_eq(kv_intents_put(intents, 1, KEY("a"), &theirs), 1, "locked: refused");
    cr_expect_eq(kv_intents_put(intents, 2, KEY("a"), &theirs), 0, "another partition");
    const kv_intent_t *held = kv_intents_get(intents, 1, KEY("a"));
    cr_assert_not_null(held);
    cr_expect_eq(held->txid, 1);
    cr_expect_eq(held->record_partition, 7);
    cr_expect_eq(held->version, 101);
    cr_expect_eq(held->vlen, 3);
    cr_expect_eq(memcmp(held->value, "new", 3), 0, "the value is copied");
    kv_intent_t again = s_intent(1, KV_INTENT_RM, NULL, 2000);
    cr_expect_eq(kv_intents_put(intents, 1, KEY("a"), &again), 0, "the owner may replace it");
    cr_expect_eq(kv_intents_get(intents, 1, KEY("a"))->kind, KV_INTENT_RM);
    cr_expect_eq(kv_intents_size(intents), 2);
    kv_intents_destroy(&intents);
    cr_expect_null(intents);
    kv_intents_destroy(&intents);
}

Test(kv_intents, bad_keys_are_refused) {
    kv_intents_t *intents = kv_intents_new();
    kv_intent_t intent = s_intent(1, KV_INTENT_READ, NULL, 0);
    char long_key[KV_MAX_KEY_BYTES + 1];
    memset(long_key, 'x', sizeof(long_key));
    cr_expect_eq(kv_intents_put(intents, 0, "", 0, &intent), -1);
    cr_expect_eq(kv_intents_put(intents, 0, long_key, sizeof(long_key), &intent), -1);
    cr_expect_eq(kv_intents_put(intents, 0, "a\0b", 3, &intent), -1);
    cr_expect_eq(kv_intents_put(intents, 0, long_key, KV_MAX_KEY_BYTES, &intent), 0);
    cr_expect_null(kv_intents_get(intents, 0, "", 0));
    kv_intents_destroy(&intents);
}

typedef struct {
    int calls;
    char keys[8][8];
} s_seen_t;

static void s_see(uint32_t partition, const char *key, size_t klen, const kv_intent_t *intent,
                  void *arg) {
    s_seen_t *seen = arg;
    (void)partition;
    (void)intent;
    if (seen->calls < 8) memcpy(seen->keys[seen->calls], key, klen < 7 ? klen : 7);
    seen->calls++;
}

/* A commit or abort takes the transaction's intents of one partition, and
 * hands each out first (to be applied); the others stay. */
Test(kv_intents, take_removes_one_transaction_of_one_partition) {
    kv_intents_t *intents = kv_intents_new();
    kv_intent_t one = s_intent(1, KV_INTENT_SET, "v", 0), two = s_intent(2, KV_INTENT_SET, "w", 0);
    kv_intents_put(intents, 3, KEY("a"), &one);
    kv_intents_put(intents, 3, KEY("b"), &one);
    kv_intents_put(intents, 4, KEY("c"), &one);
    kv_intents_put(intents, 3, KEY("d"), &two);
    s_seen_t seen = {0};
    cr_expect_eq(kv_intents_take(intents, 3, 1, s_see, &seen), 2);
    cr_expect_eq(seen.calls, 2);
    cr_expect_null(kv_intents_get(intents, 3, KEY("a")));
    cr_expect_null(kv_intents_get(intents, 3, KEY("b")));
    cr_expect_not_null(kv_intents_get(intents, 4, KEY("c")), "another partition stays");
    cr_expect_not_null(kv_intents_get(intents, 3, KEY("d")), "another transaction stays");
    cr_expect_eq(kv_intents_take(intents, 3, 1, NULL, NULL), 0, "twice is nothing");
    kv_intents_drop_partition(intents, 3);
    cr_expect_eq(kv_intents_size(intents), 1);
    cr_expect_null(kv_intents_get(intents, 3, KEY("d")));
    kv_intents_destroy(&intents);
}

/* The housekeeping walk finds the intents whose owner is presumed dead. */
Test(kv_intents, expired_intents_are_found) {
    kv_intents_t *intents = kv_intents_new();
    kv_intent_t old = s_intent(1, KV_INTENT_READ, NULL, 100);
    kv_intent_t fresh = s_intent(2, KV_INTENT_READ, NULL, 300);
    kv_intents_put(intents, 0, KEY("old"), &old);
    kv_intents_put(intents, 0, KEY("fresh"), &fresh);
    s_seen_t seen = {0};
    cr_expect_eq(kv_intents_expired(intents, 200, s_see, &seen), 1);
    cr_expect_str_eq(seen.keys[0], "old");
    cr_expect_eq(kv_intents_expired(intents, 100, NULL, NULL), 0,
                 "the deadline itself is not past");
    cr_expect_eq(kv_intents_size(intents), 2, "finding removes nothing");
    kv_intents_destroy(&intents);
}
