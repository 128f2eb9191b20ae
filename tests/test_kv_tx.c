/*  test_kv_tx.c: a transaction's intents, records and decisions (kv_tx.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "kv_tx.h"

#define BYTES(literal) ((kv_bytes_t){(literal), sizeof(literal) - 1})

Test(kv_tx, intent_keys_are_metadata_and_parse_back) {
    char meta[KV_TX_INTENT_KEY_MAX];
    size_t len = kv_tx_intent_key(meta, "acct:1", 6);
    cr_expect_eq(len, 8);
    cr_expect_eq(meta[0], '\0', "metadata starts with NUL, which no client key holds");
    kv_bytes_t key;
    cr_assert(kv_tx_intent_key_parse(meta, len, &key));
    cr_expect_eq(key.len, 6);
    cr_expect_arr_eq(key.ptr, "acct:1", 6);
    char record[KV_TX_RECORD_KEY_LEN];
    kv_tx_record_key(record, 42);
    cr_expect_not(kv_tx_intent_key_parse(record, sizeof record, &key), "a record is no intent");
    cr_expect_not(kv_tx_intent_key_parse("acct", 4, &key));
}

Test(kv_tx, records_of_two_transactions_differ) {
    char a[KV_TX_RECORD_KEY_LEN], b[KV_TX_RECORD_KEY_LEN];
    kv_tx_record_key(a, 1);
    kv_tx_record_key(b, 1ull << 56);
    cr_expect_neq(memcmp(a, b, sizeof a), 0);
}

Test(kv_tx, intents_round_trip) {
    const kv_tx_intent_t intent = {0x1122334455667788ull, 1023, KV_TXOP_SET, 77, 1700000000123,
                                   BYTES("balance=90"),   0};
    uint8_t buf[KV_TX_INTENT_HEAD + 32];
    size_t len = kv_tx_intent_encode(&intent, buf, sizeof buf);
    cr_assert_eq(len, KV_TX_INTENT_HEAD + 10);
    kv_tx_intent_t got;
    cr_assert_eq(kv_tx_intent_decode((const char *)buf, len, &got), 0);
    cr_expect_eq(got.txid, intent.txid);
    cr_expect_eq(got.record, 1023);
    cr_expect_eq(got.write, KV_TXOP_SET);
    cr_expect_eq(got.version, 77);
    cr_expect_eq(got.deadline_ms, intent.deadline_ms);
    cr_expect_eq(got.value.len, 10);
    cr_expect_arr_eq(got.value.ptr, "balance=90", 10);
    cr_expect_eq(got.expiry, 0);
}

/* An expiry (ttl. in /tx) adds 8 bytes after the head, announced by the
 * write byte's top bit; an intent without one is as it always was. */
Test(kv_tx, intents_carry_an_expiry) {
    const kv_tx_intent_t intent = {7, 3, KV_TXOP_SET, 9, 1700000000123, BYTES("v"), 1700000060000};
    uint8_t buf[KV_TX_INTENT_HEAD + 16];
    size_t len = kv_tx_intent_encode(&intent, buf, sizeof buf);
    cr_assert_eq(len, KV_TX_INTENT_HEAD + 8 + 1);
    cr_expect_eq(buf[12], KV_TXOP_SET | 0x80);
    kv_tx_intent_t got;
    cr_assert_eq(kv_tx_intent_decode((const char *)buf, len, &got), 0);
    cr_expect_eq(got.write, KV_TXOP_SET);
    cr_expect_eq(got.expiry, 1700000060000);
    cr_expect_eq(got.value.len, 1);
    cr_expect_eq(got.value.ptr[0], 'v');
    cr_expect_eq(kv_tx_intent_decode((const char *)buf, KV_TX_INTENT_HEAD + 4, &got), -1,
                 "an expiry cut short");
}

Test(kv_tx, malformed_intents_are_refused) {
    const kv_tx_intent_t intent = {1, 2, KV_TXOP_RM, 0, 3, {NULL, 0}, 0};
    uint8_t buf[KV_TX_INTENT_HEAD];
    cr_assert_eq(kv_tx_intent_encode(&intent, buf, sizeof buf), KV_TX_INTENT_HEAD);
    kv_tx_intent_t got;
    cr_expect_eq(kv_tx_intent_decode((const char *)buf, KV_TX_INTENT_HEAD - 1, &got), -1);
    buf[12] = KV_TXOP_MAX + 1; /* the write kind */
    cr_expect_eq(kv_tx_intent_decode((const char *)buf, KV_TX_INTENT_HEAD, &got), -1);
    cr_expect_eq(kv_tx_intent_encode(&intent, buf, KV_TX_INTENT_HEAD - 1), 0, "too small");
}

/* --- a prepare's check of one key ------------------------------------------ */

Test(kv_tx, a_free_key_without_condition_is_ok) {
    const kv_msg_txop_t op = {.write = KV_TXOP_SET, .key = BYTES("a")};
    cr_expect_eq(kv_tx_check_key(NULL, 1, &op, 5), KV_TX_KEY_OK);
}

Test(kv_tx, a_condition_must_name_the_current_version) {
    kv_msg_txop_t op = {.has_if = 1, .if_version = 5, .key = BYTES("a")};
    cr_expect_eq(kv_tx_check_key(NULL, 1, &op, 5), KV_TX_KEY_OK);
    cr_expect_eq(kv_tx_check_key(NULL, 1, &op, 6), KV_TX_KEY_CONFLICT);
    op.if_version = 0; /* absent */
    cr_expect_eq(kv_tx_check_key(NULL, 1, &op, 0), KV_TX_KEY_OK);
    cr_expect_eq(kv_tx_check_key(NULL, 1, &op, 6), KV_TX_KEY_CONFLICT);
}

Test(kv_tx, another_transactions_intent_aborts_before_any_condition) {
    const kv_tx_intent_t held = {.txid = 2, .write = KV_TXOP_NONE};
    const kv_msg_txop_t op = {.has_if = 1, .if_version = 9, .get = 1, .key = BYTES("a")};
    cr_expect_eq(kv_tx_check_key(&held, 1, &op, 5), KV_TX_KEY_ABORT,
                 "even a read lock: nobody waits, so nobody deadlocks");
}

Test(kv_tx, our_own_intent_is_no_obstacle) {
    const kv_tx_intent_t held = {.txid = 1, .write = KV_TXOP_SET};
    const kv_msg_txop_t op = {.write = KV_TXOP_SET, .key = BYTES("a")};
    cr_expect_eq(kv_tx_check_key(&held, 1, &op, 5), KV_TX_KEY_OK, "a prepare sent again");
}

/* --- the record partition's decisions ---------------------------------------- */

Test(kv_tx, state_comes_from_the_record_then_the_intents) {
    cr_expect_eq(kv_tx_state(1, 0), KV_TX_COMMITTED);
    cr_expect_eq(kv_tx_state(1, 3), KV_TX_COMMITTED, "written, not yet applied here");
    cr_expect_eq(kv_tx_state(0, 2), KV_TX_PREPARED);
    cr_expect_eq(kv_tx_state(0, 0), KV_TX_ABORTED);
}

Test(kv_tx, a_prepared_transaction_commits_on_commit) {
    cr_expect_eq(kv_tx_decide(KV_TX_PREPARED, KV_TX_EV_COMMIT, 0), KV_TX_ACT_COMMIT);
    cr_expect_eq(kv_tx_decide(KV_TX_PREPARED, KV_TX_EV_COMMIT, 1), KV_TX_ACT_COMMIT,
                 "late, but nobody decided otherwise yet");
}

Test(kv_tx, a_question_about_a_live_transaction_waits) {
    cr_expect_eq(kv_tx_decide(KV_TX_PREPARED, KV_TX_EV_RESOLVE, 0), KV_TX_ACT_WAIT);
}

Test(kv_tx, a_dead_owners_transaction_is_aborted) {
    cr_expect_eq(kv_tx_decide(KV_TX_PREPARED, KV_TX_EV_RESOLVE, 1), KV_TX_ACT_ABORT);
    cr_expect_eq(kv_tx_decide(KV_TX_PREPARED, KV_TX_EV_EXPIRE, 1), KV_TX_ACT_ABORT);
}

Test(kv_tx, a_committed_transaction_stays_committed) {
    for (int event = KV_TX_EV_COMMIT; event <= KV_TX_EV_EXPIRE; event++)
        for (int expired = 0; expired <= 1; expired++)
            cr_expect_eq(kv_tx_decide(KV_TX_COMMITTED, (kv_tx_event_t)event, expired),
                         KV_TX_ACT_COMMIT, "event %d expired %d", event, expired);
}

Test(kv_tx, an_aborted_transaction_stays_aborted) {
    for (int event = KV_TX_EV_COMMIT; event <= KV_TX_EV_EXPIRE; event++)
        for (int expired = 0; expired <= 1; expired++)
            cr_expect_eq(kv_tx_decide(KV_TX_ABORTED, (kv_tx_event_t)event, expired),
                         KV_TX_ACT_ABORTED, "a late COMMIT finds it aborted (event %d)", event);
}

Test(kv_tx, names_for_logs) {
    cr_expect_str_eq(kv_tx_state_name(KV_TX_COMMITTED), "committed");
    cr_expect_str_eq(kv_tx_action_name(KV_TX_ACT_WAIT), "wait");
    cr_expect_str_eq(kv_tx_state_name((kv_tx_state_t)9), "?");
}

Test(kv_tx, records_list_the_other_participants) {
    uint8_t items[3 * KV_MSG_ITEM_SIZE];
    for (uint32_t i = 0; i < 3; i++) {
        const kv_msg_item_t item = {100 + i, 0, 0};
        kv_msg_item_write(items, i, &item);
    }
    uint8_t value[KV_TX_RECORD_MAX];
    size_t len =
        kv_tx_record_encode(value, 1700000000000, (kv_bytes_t){(const char *)items, sizeof items});
    cr_assert_eq(len, KV_TX_RECORD_HEAD + 12);
    int64_t written = 0;
    uint32_t parts[KV_TX_MAX_OPS];
    cr_assert_eq(kv_tx_record_decode((const char *)value, len, &written, parts), 3);
    cr_expect_eq(written, 1700000000000);
    cr_expect_eq(parts[0], 100);
    cr_expect_eq(parts[2], 102);
    cr_expect_eq(kv_tx_record_decode((const char *)value, len - 1, &written, parts), -1);
    value[0] = 9; /* not a state a record has */
    cr_expect_eq(kv_tx_record_decode((const char *)value, len, &written, parts), -1);
    len = kv_tx_record_encode(value, 5, (kv_bytes_t){NULL, 0});
    cr_expect_eq(kv_tx_record_decode((const char *)value, len, &written, parts), 0);
}
