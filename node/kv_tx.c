/*  kv_tx.c: see kv_tx.h. */
#include "kv_tx.h"

#include <string.h>

#include "kv_wire.h"

size_t kv_tx_intent_key(char *out, const char *key, size_t klen) {
    out[0] = '\0';
    out[1] = 'i';
    memcpy(out + 2, key, klen);
    return klen + 2;
}

int kv_tx_intent_key_parse(const char *meta, size_t mlen, kv_bytes_t *key) {
    if (mlen < 3 || meta[0] != '\0' || meta[1] != 'i') return 0;
    *key = (kv_bytes_t){meta + 2, mlen - 2};
    return 1;
}

void kv_tx_record_key(char *out, uint64_t txid) {
    out[0] = '\0';
    out[1] = 'r';
    kv_writer_t w = {(uint8_t *)out + 2, 8, 0, 0};
    kv_wire_put_uint(&w, txid, 8);
}

/* The write byte's top bit says an expiry follows the head: an intent
 * without one is encoded exactly as before expiry existed, so a node of
 * the previous release reads it. */
#define S_INTENT_F_EXPIRY 0x80

size_t kv_tx_intent_encode(const kv_tx_intent_t *intent, uint8_t *out, size_t cap) {
    kv_writer_t w = {out, cap, 0, 0};
    kv_wire_put_uint(&w, intent->txid, 8);
    kv_wire_put_uint(&w, intent->record, 4);
    kv_wire_put_uint(&w, intent->write | (intent->expiry ? S_INTENT_F_EXPIRY : 0), 1);
    kv_wire_put_uint(&w, intent->version, 8);
    kv_wire_put_uint(&w, (uint64_t)intent->deadline_ms, 8);
    if (intent->expiry) kv_wire_put_uint(&w, (uint64_t)intent->expiry, 8);
    kv_wire_put(&w, intent->value.ptr, intent->value.len);
    return w.failed ? 0 : w.pos;
}

int kv_tx_intent_decode(const char *value, size_t vlen, kv_tx_intent_t *intent) {
    kv_reader_t r = {(const uint8_t *)value, vlen, 0, 0};
    intent->txid = kv_wire_get_uint(&r, 8);
    intent->record = (uint32_t)kv_wire_get_uint(&r, 4);
    uint8_t write = (uint8_t)kv_wire_get_uint(&r, 1);
    intent->write = write & (uint8_t)~S_INTENT_F_EXPIRY;
    intent->version = kv_wire_get_uint(&r, 8);
    intent->deadline_ms = (int64_t)kv_wire_get_uint(&r, 8);
    intent->expiry = (write & S_INTENT_F_EXPIRY) ? (int64_t)kv_wire_get_uint(&r, 8) : 0;
    if (r.failed || intent->write > KV_TXOP_MAX) return -1;
    intent->value = (kv_bytes_t){vlen > r.pos ? value + r.pos : NULL, vlen - r.pos};
    return 0;
}

size_t kv_tx_record_encode(uint8_t *out, int64_t written_ms, kv_bytes_t participants) {
    kv_writer_t w = {out, KV_TX_RECORD_MAX, 0, 0};
    kv_wire_put_uint(&w, KV_TX_COMMITTED, 1);
    kv_wire_put_uint(&w, (uint64_t)written_ms, 8);
    size_t count = participants.len / KV_MSG_ITEM_SIZE;
    for (size_t i = 0; i < count && i < KV_TX_MAX_OPS; i++)
        kv_wire_put_uint(&w, kv_msg_item_read(&participants, i).partition, 4);
    return w.pos;
}

int kv_tx_record_decode(const char *value, size_t vlen, int64_t *written_ms, uint32_t *parts) {
    kv_reader_t r = {(const uint8_t *)value, vlen, 0, 0};
    uint8_t state = (uint8_t)kv_wire_get_uint(&r, 1);
    *written_ms = (int64_t)kv_wire_get_uint(&r, 8);
    if (r.failed || state != KV_TX_COMMITTED || (vlen - r.pos) % 4 ||
        (vlen - r.pos) / 4 > KV_TX_MAX_OPS)
        return -1;
    int count = 0;
    while (r.pos < vlen) parts[count++] = (uint32_t)kv_wire_get_uint(&r, 4);
    return count;
}

kv_tx_check_t kv_tx_check_key(const kv_tx_intent_t *held, uint64_t txid, const kv_msg_txop_t *op,
                              uint64_t current) {
    if (held && held->txid != txid) return KV_TX_KEY_ABORT;
    if (op->has_if && op->if_version != current) return KV_TX_KEY_CONFLICT;
    return KV_TX_KEY_OK;
}

kv_tx_state_t kv_tx_state(int has_record, size_t own_intents) {
    if (has_record) return KV_TX_COMMITTED;
    return own_intents ? KV_TX_PREPARED : KV_TX_ABORTED;
}

kv_tx_action_t kv_tx_decide(kv_tx_state_t state, kv_tx_event_t event, int expired) {
    switch (state) {
    case KV_TX_COMMITTED: /* decided: every event finishes the commit here */
        return KV_TX_ACT_COMMIT;
    case KV_TX_PREPARED:
        if (event == KV_TX_EV_COMMIT) return KV_TX_ACT_COMMIT; /* the commit point */
        if (event == KV_TX_EV_RESOLVE && !expired) return KV_TX_ACT_WAIT;
        return KV_TX_ACT_ABORT; /* its owner is presumed dead: abort it for good */
    case KV_TX_ABORTED:
    default:
        return KV_TX_ACT_ABORTED;
    }
}

const char *kv_tx_state_name(kv_tx_state_t state) {
    static const char *const names[] = {"prepared", "committed", "aborted"};
    return (unsigned)state < 3 ? names[state] : "?";
}

const char *kv_tx_action_name(kv_tx_action_t action) {
    static const char *const names[] = {"commit", "abort", "aborted", "wait"};
    return (unsigned)action < 4 ? names[action] : "?";
}
