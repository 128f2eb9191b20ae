/*  kv_tx.h: a node's share of a transaction (/tx): its intents, its commit
 *  record, and the decisions the record's partition takes.
 *
 *  The protocol (docs/transactions.md has it whole, with its safety
 *  argument): the gateway PREPAREs at every partition the transaction
 *  touches, which leaves an intent on each of its keys there (a lock naming
 *  the transaction, its record partition, what the commit does to the key
 *  and the version it gives it), then COMMITs at the record partition (the
 *  partition of the first key written), which writes the commit record: the
 *  commit point. Then FINISH at each other partition applies the intents
 *  and removes them, and a last FINISH at the record partition forgets the
 *  record. A participant whose intents outlive KV_TX_INTENT_MS (their owner,
 *  the gateway, is presumed dead) asks the record partition (RESOLVE), which
 *  answers with a FINISH: commit when its record exists, abort otherwise.
 *
 *  Intents and records are metadata entries of the store (kv_store.h: keys
 *  starting with NUL), written and removed like any key: numbered in the
 *  partition's sequence, replicated, confirmed, carried by snapshots and
 *  moves. So a promoted replica holds exactly the intents and records its
 *  predecessor had confirmed, and the decisions below read nothing else.
 *
 *  This module is the pure part: encodings and decision functions, tested
 *  alone; node/kv_repl_tx.c applies them to a primary's partitions.
 */
#ifndef KV_TX_H
#define KV_TX_H

#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"
#include "kv_msg.h"

#define KV_TX_INTENT_MS 2000 /* an intent's owner is presumed dead this long after prepare */
#define KV_TX_RESOLVE_MS 200 /* a participant asks again about expired intents this often */
#define KV_TX_MAX_OPS 100    /* keys per transaction */

/* Metadata keys: "\0i" + the key (an intent), "\0r" + txid (a record). */
#define KV_TX_INTENT_KEY_MAX (KV_MAX_KEY_BYTES + 2)
#define KV_TX_RECORD_KEY_LEN 10

/* An intent: one key locked by one transaction. */
typedef struct {
    uint64_t txid;       /* the owner */
    uint32_t record;     /* its commit record's partition */
    uint8_t write;       /* kv_txop_write_t: NONE only locks (a read, a condition) */
    uint64_t version;    /* SET: the version the commit gives the key */
    int64_t deadline_ms; /* wall clock: past it the owner is presumed dead */
    kv_bytes_t value;    /* SET: the value */
    int64_t expiry;      /* SET: the entry's expiry (wall clock ms), 0: none */
} kv_tx_intent_t;

#define KV_TX_INTENT_HEAD 29 /* encoded bytes before the value (8 more with an expiry) */

/* Writes the intent key of key into out (room for KV_TX_INTENT_KEY_MAX);
 * returns its length. */
size_t kv_tx_intent_key(char *out, const char *key, size_t klen);

/* Whether meta is an intent key; then *key is the key it locks. */
int kv_tx_intent_key_parse(const char *meta, size_t mlen, kv_bytes_t *key);

/* Writes the record key of txid into out (KV_TX_RECORD_KEY_LEN bytes). */
void kv_tx_record_key(char *out, uint64_t txid);

/* Encodes intent into out (cap >= KV_TX_INTENT_HEAD + value length);
 * returns the length, 0 when it does not fit. */
size_t kv_tx_intent_encode(const kv_tx_intent_t *intent, uint8_t *out, size_t cap);

/* Decodes an intent's stored value; intent->value points into it. Returns
 * 0, or -1 when malformed. */
int kv_tx_intent_decode(const char *value, size_t vlen, kv_tx_intent_t *intent);

/* A record's stored value: its state, when it was written (wall clock),
 * and the other participants' partitions, which its partition asks
 * before it forgets a record no gateway finished (KV_TX_SWEEP_MS). */
#define KV_TX_SWEEP_MS 5000
#define KV_TX_RECORD_HEAD 9
#define KV_TX_RECORD_MAX (KV_TX_RECORD_HEAD + 4 * KV_TX_MAX_OPS)

/* Encodes a record with the partitions of participants (ITEM records);
 * returns its length (out: KV_TX_RECORD_MAX bytes). */
size_t kv_tx_record_encode(uint8_t *out, int64_t written_ms, kv_bytes_t participants);

/* Decodes a record: when it was written, and up to KV_TX_MAX_OPS
 * participants into parts. Returns their count, or -1 when malformed. */
int kv_tx_record_decode(const char *value, size_t vlen, int64_t *written_ms, uint32_t *parts);

/* --- decisions -------------------------------------------------------------- */

/* What a prepare finds on one key. */
typedef enum {
    KV_TX_KEY_OK,       /* free (or ours already), condition holds */
    KV_TX_KEY_CONFLICT, /* the condition does not hold */
    KV_TX_KEY_ABORT,    /* another transaction holds it: give way (nobody waits) */
} kv_tx_check_t;

/* Checks op of transaction txid against the key's intent (NULL: none) and
 * current version (0: absent). Another's intent wins over a condition: its
 * commit may change the version. */
kv_tx_check_t kv_tx_check_key(const kv_tx_intent_t *held, uint64_t txid, const kv_msg_txop_t *op,
                              uint64_t current);

/* A transaction as its record partition sees it. */
typedef enum {
    KV_TX_PREPARED,  /* its intents here, no record: undecided */
    KV_TX_COMMITTED, /* its record here: committed */
    KV_TX_ABORTED,   /* neither: aborted (or committed, finished everywhere and forgotten) */
} kv_tx_state_t;

typedef enum {
    KV_TX_EV_COMMIT,  /* the gateway commits */
    KV_TX_EV_RESOLVE, /* a participant with expired intents asks */
    KV_TX_EV_EXPIRE,  /* our own intents of it expired */
} kv_tx_event_t;

typedef enum {
    KV_TX_ACT_COMMIT,  /* write the record (if absent), apply our intents; answer committed */
    KV_TX_ACT_ABORT,   /* remove our intents; answer aborted */
    KV_TX_ACT_ABORTED, /* nothing to do; answer aborted */
    KV_TX_ACT_WAIT,    /* no answer yet: the owner may still commit */
} kv_tx_action_t;

/* The state from what the record partition holds. */
kv_tx_state_t kv_tx_state(int has_record, size_t own_intents);

/* The one place a transaction's fate is decided: the action for event in
 * state, expired telling whether our own intents of it are past their
 * deadline. Once the record partition has answered commit it answers
 * commit forever (until every participant finished); once abort, abort
 * (its intents are gone, so a late COMMIT finds ABORTED). */
kv_tx_action_t kv_tx_decide(kv_tx_state_t state, kv_tx_event_t event, int expired);

const char *kv_tx_state_name(kv_tx_state_t state);
const char *kv_tx_action_name(kv_tx_action_t action);

#endif
