/*  kv_msg_schema.h: every wire message, declared once.
 *
 *  This file is the wire format and its documentation. kv_msg.h expands it
 *  into the type enum and kv_msg_t; kv_msg.c into the encoder, the decoder,
 *  the encoded size and the type names; tests/test_kv_msg.c into the
 *  layouts it checks frames against. Adding a message is one line in
 *  KV_MSG_TYPES, one KV_MSG_<NAME>_FIELDS list (and a KV_MSG_MEMBERS line
 *  for a field no message had before), then its handler and its test.
 *
 *  Frames. Every message is ONE ZeroMQ frame (after any ROUTER identity
 *  frames), so a request costs one zmq_msg. It starts with a two-byte
 *  header, u8 version then u8 type, followed by the fields of its type in
 *  the order listed, nothing between them and nothing after. Integers are
 *  big-endian. Each field is X(member, KIND, since):
 *
 *      U8 U16 U32 U64  unsigned integer of that width
 *      STATUS          u8 kv_status_t, at most KV_STATUS_MAX
 *      FLAG            u8, 0 or 1
 *      OP              u8 kv_op_t, KV_OP_SET .. KV_OP_MAX
 *      STR8 STR16      u8 / u16 length, then the bytes (never NUL-terminated)
 *      BLOB32          u32 length, then the bytes
 *      ITEMS REPORTS   BLOB32 of whole KV_MSG_ITEM / KV_MSG_REPORT records
 *      COUNTERS        BLOB32 of KV_MSG_COUNTER records, back to back
 *      TXOPS           BLOB32 of KV_MSG_TXOP records, back to back
 *      ENTRIES         `count` KV_MSG_ENTRY records back to back, no length
 *                      (count is the message's U32 count field, before it)
 *
 *  Versions, so that old and new processes can talk during a rolling
 *  upgrade (a Helm rollout replaces pods one at a time):
 *
 *  1. KV_MSG_VERSION is the version of this schema; `since` is the version
 *     that added a field.
 *  2. Fields are only ever appended: at the end of a message or at the end
 *     of a variable record (ENTRY, COUNTER). Never removed, reordered,
 *     resized or given another meaning. Fixed-size records (ITEM, REPORT)
 *     never grow: a new per-record field needs a new blob field.
 *  3. A frame's version byte is the lowest version that carries every
 *     non-zero field of the message (kv_msg_t.version overrides it; decode
 *     sets it, so a decoded frame encodes back to its own bytes). A message
 *     that does not use what a version added is written exactly as before,
 *     byte for byte, and an older process reads it.
 *  4. A decoder accepts every version from KV_MSG_VERSION_MIN to
 *     KV_MSG_VERSION, reads the fields with since <= the frame's version and
 *     leaves the later ones 0. A newer version is rejected.
 *  5. So a release decodes a field as soon as it declares it, and a feature
 *     sets the field only from a later release on, once no process of an
 *     older release is left: decoders ship one release before the encoders
 *     that need them. Version 2's per-entry version and expiry travelled
 *     as zeros (version 1 frames) for a release; version 3 fills the
 *     version (UPDATE, SNAPSHOT, SCAN_REPLY entries) and adds the
 *     condition of SET and RM and the version of REPLY. A conditional
 *     write sent to a node of an older release is dropped (the gateway
 *     answers 504): upgrade the nodes before using ifVersion. Version 4
 *     adds expiry (TTL): SET's ttl, REPLY's ttl_ms, TX_PREPARE's ttls, and
 *     the EXPIRE message; likewise, upgrade the nodes before using TTLs.
 *     One exception, for /status only:
 *     STATS_REPLY's counters are filled at once, so a version 1 gateway
 *     shows an upgraded node as unreachable until it is upgraded too.
 *     Version 4's memory fields (docs/memory.md) break rule 5 the same
 *     way: STATS_REPLY's max_memory and used_memory, and ACK's room, which
 *     a replica with a memory limit sends at once; a version 3 primary
 *     drops such ACKs, so its writes time out until it is upgraded too
 *     (upgrade primaries first, or run replicas with --max-memory=none
 *     during the upgrade).
 *  6. KV_MSG_VERSION_MIN rises only when no release in service writes it.
 *  7. A new message type needs no new version (its fields are since 1): a
 *     process that does not know the type drops it, whatever the version,
 *     so its sender must cope with silence from older processes, as with a
 *     lost message, until none is left.
 *
 *  tests/golden/kv_msg_v<N>.hex pins the frames of each version byte for
 *  byte; a later codec must still read them.
 */
#ifndef KV_MSG_SCHEMA_H
#define KV_MSG_SCHEMA_H

#define KV_MSG_VERSION 4     /* the version this schema describes */
#define KV_MSG_VERSION_MIN 1 /* the oldest version decoders accept */
#define KV_MSG_HEADER 2      /* u8 version, u8 type */

/* Bytes of the fixed-size kinds, for fixed-size records. */
#define KV_MSG_SIZE_U8 1
#define KV_MSG_SIZE_U16 2
#define KV_MSG_SIZE_U32 4
#define KV_MSG_SIZE_U64 8

// clang-format off

/* Every message: X(NAME, type byte). KV_MSG_<NAME> is its kv_msg_type_t. */
#define KV_MSG_TYPES(X)                                                                  \
    X(GET, 1)            /* gateway -> node primary: read a key */                       \
    X(SET, 2)            /* gateway -> node primary: write a key */                      \
    X(RM, 3)             /* gateway -> node primary: remove a key */                     \
    X(IS, 4)             /* gateway -> node primary: does a key exist */                 \
    X(CLEAR, 5)          /* gateway -> every node: remove every key */                   \
    X(SCAN, 6)           /* gateway -> node primary: key-ordered page of a partition */  \
    X(STATS, 7)          /* gateway -> node, test -> coordinator: what do you hold */    \
    X(TX_PREPARE, 8)     /* gateway -> participant primary: lock, check, read (/tx) */   \
    X(TX_COMMIT, 9)      /* gateway -> record primary: the commit point */               \
    X(TX_FINISH, 10)     /* gateway, record primary -> participant: apply the decision */ \
    X(TX_RESOLVE, 11)    /* participant primary -> record primary: decided yet? */       \
    X(MGET, 12)          /* gateway -> node: read keys of partitions it is primary of */ \
    X(EXPIRE, 13)        /* gateway -> node primary: set or remove a key's expiry */     \
    X(REPLY, 16)         /* node -> gateway: answer to GET SET RM IS CLEAR */            \
    X(SCAN_REPLY, 17)    /* node -> gateway: a page of entries */                        \
    X(STATS_REPLY, 18)   /* node, coordinator -> asker: its figures and counters */      \
    X(TX_REPLY, 19)      /* node -> gateway: answer to TX_PREPARE */                     \
    X(MGET_REPLY, 20)    /* node -> gateway: answer to MGET */                           \
    X(HELLO, 32)         /* node -> coordinator: registration, on start and on WHO */    \
    X(HEARTBEAT, 33)     /* node -> coordinator: alive, with partition reports */        \
    X(TABLE_REQ, 34)     /* anyone -> coordinator: send me the table */                  \
    X(TABLE, 35)         /* coordinator -> nodes, gateways: the routing table */         \
    X(WHO, 36)           /* coordinator -> node: I do not know you, send HELLO */        \
    X(JOIN, 37)          /* gateway -> coordinator: invite a node */                     \
    X(LEAVE, 38)         /* gateway or node -> coordinator: drain a node */              \
    X(INVITE, 39)        /* coordinator -> node: register with me; REPLY: your id */     \
    X(CLUSTER_REPLY, 40) /* coordinator -> gateway: answer to JOIN, LEAVE */             \
    X(LEASE, 41)         /* coordinator -> node: primary lease, answer to a HEARTBEAT */  \
    X(UPDATE, 48)        /* primary PUB (topic: u32 partition): one write */             \
    X(BEACON, 49)        /* primary PUB (topic KV_TOPIC_BEACON): stream positions */     \
    X(ACK, 50)           /* replica -> primary: applied positions */                     \
    X(SNAPSHOT_REQ, 51)  /* replica -> primary: send me a partition */                   \
    X(SNAPSHOT, 52)      /* primary -> replica: one chunk of a partition */

/* Fields of GET, RM, IS (and SET, which adds a value). */
#define KV_MSG_KEYED_FIELDS(X)                                                           \
    X(req_id, U64, 1)    /* gateway-chosen, echoed in the reply */                       \
    X(epoch, U64, 1)     /* routing epoch the gateway routed with */                     \
    X(partition, U32, 1) /* kv_partition_of(key) */                                      \
    X(key, STR16, 1)     /* the key */
/* A conditional write's condition (SET, RM): ifVersion. */
#define KV_MSG_CONDITION_FIELDS(X)                                                       \
    X(has_if_version, FLAG, 3) /* apply only if the key's version is if_version */       \
    X(if_version, U64, 3) /* that version; 0: only if the key is absent */
#define KV_MSG_GET_FIELDS(X) KV_MSG_KEYED_FIELDS(X)
#define KV_MSG_RM_FIELDS(X)                                                              \
    KV_MSG_KEYED_FIELDS(X)                                                               \
    KV_MSG_CONDITION_FIELDS(X)
#define KV_MSG_IS_FIELDS(X) KV_MSG_KEYED_FIELDS(X)
#define KV_MSG_SET_FIELDS(X)                                                             \
    KV_MSG_KEYED_FIELDS(X)                                                               \
    X(value, STR16, 1)   /* the value to store */                                        \
    KV_MSG_CONDITION_FIELDS(X)                                                           \
    X(ttl, U32, 4)       /* seconds to live from the write (primary's clock); 0: none */
/* /expire (ttl > 0) and /persist (ttl 0) of an existing key: a write that
 * keeps the value and gives a new version. Answered like SET (REPLY, the
 * new version), NOT_FOUND when the key is absent. */
#define KV_MSG_EXPIRE_FIELDS(X)                                                          \
    KV_MSG_KEYED_FIELDS(X)                                                               \
    X(ttl, U32, 1)       /* seconds to live from now; 0: never expires */

#define KV_MSG_CLEAR_FIELDS(X)                                                           \
    X(req_id, U64, 1)    /* echoed in the reply */                                       \
    X(epoch, U64, 1)     /* routing epoch of the gateway */

#define KV_MSG_SCAN_FIELDS(X)                                                            \
    X(req_id, U64, 1)    /* echoed in the reply */                                       \
    X(epoch, U64, 1)     /* routing epoch of the gateway */                              \
    X(partition, U32, 1) /* the partition to page through */                             \
    X(limit, U32, 1)     /* entries wanted */                                            \
    X(has_after, FLAG, 1) /* after is set */                                             \
    X(after, STR16, 1)   /* entries with keys strictly after this one */

#define KV_MSG_STATS_FIELDS(X)                                                           \
    X(req_id, U64, 1)    /* echoed in the reply */

/* Transactions (/tx): see node/kv_tx.h and docs/transactions.md. Each
 * addresses one partition at its primary and names the transaction. */
#define KV_MSG_TX_HEAD(X)                                                                \
    X(req_id, U64, 1)    /* echoed in the reply; 0: no reply wanted */                   \
    X(epoch, U64, 1)     /* routing epoch of the sender */                               \
    X(partition, U32, 1) /* the partition addressed */                                   \
    X(txid, U64, 1)      /* the transaction, unique per cluster (gateway-chosen) */
#define KV_MSG_TX_PREPARE_FIELDS(X)                                                      \
    KV_MSG_TX_HEAD(X)                                                                    \
    X(record, U32, 1)    /* the partition of its commit record */                        \
    X(commit, FLAG, 1)   /* its only partition: check and apply at once, no intents */   \
    X(ops, TXOPS, 1)     /* one TXOP per key of this partition, request order */        \
    X(wait, FLAG, 3)     /* a reader: wait for writers' intents instead of giving way */ \
    X(ttls, BLOB32, 4)   /* u32 seconds to live per op, in ops' order (0: none); empty: none */
#define KV_MSG_TX_COMMIT_FIELDS(X)                                                       \
    KV_MSG_TX_HEAD(X)                                                                    \
    X(items, ITEMS, 3)   /* the other participants' partitions (partition, 0, 0) */
#define KV_MSG_TX_FINISH_FIELDS(X)                                                       \
    KV_MSG_TX_HEAD(X)                                                                    \
    X(status, STATUS, 1) /* OK: commit; TX_ABORTED: abort */
#define KV_MSG_TX_RESOLVE_FIELDS(X)                                                      \
    KV_MSG_TX_HEAD(X)                                                                    \
    X(participant, U32, 1) /* the asker's partition: the answer is a TX_FINISH of it */

/* /mget's reads of one round at one node (gateway/kv_mget.h): the keys
 * of any partitions the node is primary of, answered all at once or not
 * at all. Refusals are a REPLY (as TX_PREPARE's): MOVED, STALE_EPOCH,
 * NO_LEASE, NOT_READY, BAD_REQUEST; LOCKED when some key's partition has
 * writes not yet confirmed or a transaction holds some key, so the gateway
 * reads those keys one by one (GET waits for both). */
#define KV_MSG_MGET_FIELDS(X)                                                            \
    X(req_id, U64, 1)    /* echoed in the reply */                                       \
    X(epoch, U64, 1)     /* routing epoch the gateway routed with */                     \
    X(count, U32, 1)     /* keys */                                                      \
    X(entries, ENTRIES, 1) /* the keys, empty values, KV_MGET_MAX_KEYS at most */

/* Every node reply starts so. */
#define KV_MSG_REPLY_HEAD(X)                                                             \
    X(req_id, U64, 1)    /* the request's */                                             \
    X(status, STATUS, 1) /* outcome */                                                   \
    X(epoch, U64, 1)     /* the node's routing epoch */
#define KV_MSG_REPLY_FIELDS(X)                                                           \
    KV_MSG_REPLY_HEAD(X)                                                                 \
    X(value, STR16, 1)   /* GET: the value; INVITE: the node's id */                     \
    X(meta.version, U64, 3) /* GET, IS: the entry's; SET: the new; CONFLICT: the current */ \
    X(seq, U64, 3)       /* GET, IS: the partition's last removal seq (absent keys, /mget) */ \
    X(ttl_ms, U64, 4)    /* GET, IS: ms before the entry expires (at least 1); 0: never */
#define KV_MSG_TX_REPLY_FIELDS(X)                                                        \
    KV_MSG_REPLY_HEAD(X)                                                                 \
    X(seq, U64, 1)       /* OK: the version of the first write; each next write +1 */    \
    X(count, U32, 1)     /* entries */                                                   \
    X(entries, ENTRIES, 1) /* OK: each op's key, value read, version; CONFLICT: failed */
#define KV_MSG_MGET_REPLY_FIELDS(X)                                                      \
    KV_MSG_REPLY_HEAD(X)                                                                 \
    X(count, U32, 1)     /* the request's */                                             \
    X(entries, ENTRIES, 1) /* request order: key, value (empty if absent), version */    \
    X(items, ITEMS, 1)   /* request order: (partition, last removal seq, found) */
#define KV_MSG_SCAN_REPLY_FIELDS(X)                                                      \
    KV_MSG_REPLY_HEAD(X)                                                                 \
    X(more, FLAG, 1)     /* more entries follow in this partition */                     \
    X(count, U32, 1)     /* entries in this page */                                      \
    X(entries, ENTRIES, 1) /* key order */
#define KV_MSG_STATS_REPLY_FIELDS(X)                                                     \
    KV_MSG_REPLY_HEAD(X)                                                                 \
    X(keys, U64, 1)      /* keys the node holds */                                       \
    X(primary_keys, U64, 1) /* keys in partitions it is primary of */                    \
    X(memory, U64, 1)    /* bytes its store holds */                                     \
    X(memory_limit, U64, 1) /* its cgroup memory limit, 0 when none */                   \
    X(primaries, U32, 1) /* partitions it is primary of */                               \
    X(replicas, U32, 1)  /* partitions it is a replica of */                             \
    X(counters, COUNTERS, 2) /* the node's event counters */                          \
    X(max_memory, U64, 4) /* its enforced memory limit (--max-memory), 0 when none */    \
    X(used_memory, U64, 4) /* bytes it accounts against it (docs/memory.md) */

#define KV_MSG_HELLO_FIELDS(X)                                                           \
    X(node_id, STR8, 1)  /* the node's name */                                           \
    X(incarnation, U64, 1) /* random per process start: a new one means data lost */     \
    X(endpoint, STR16, 1) /* its request (ROUTER) endpoint */                            \
    X(pub_endpoint, STR16, 1) /* its replication PUB endpoint */                         \
    X(keys, U64, 1)      /* keys it holds */                                             \
    X(memory, U64, 1)    /* bytes its store holds */                                     \
    X(table, BLOB32, 1)  /* its last routing table (kv_table encoding), may be empty */

#define KV_MSG_HEARTBEAT_FIELDS(X)                                                       \
    X(node_id, STR8, 1)  /* the node's name */                                           \
    X(incarnation, U64, 1) /* as in HELLO */                                             \
    X(epoch, U64, 1)     /* the node's routing epoch */                                  \
    X(keys, U64, 1)      /* keys it holds */                                             \
    X(memory, U64, 1)    /* bytes its store holds */                                     \
    X(memory_limit, U64, 1) /* its cgroup memory limit, 0 when none */                   \
    X(reports, REPORTS, 1) /* one per partition it holds */                               \
    X(req_id, U64, 2)    /* heartbeat number, echoed in the LEASE it gets (kv_lease.h) */

#define KV_MSG_TABLE_REQ_FIELDS(X)                                                       \
    X(epoch, U64, 1)     /* the asker's epoch */
#define KV_MSG_TABLE_FIELDS(X)                                                           \
    X(table, BLOB32, 1)  /* kv_table encoding */
#define KV_MSG_WHO_FIELDS(X)
#define KV_MSG_JOIN_FIELDS(X)                                                            \
    X(req_id, U64, 1)    /* echoed in CLUSTER_REPLY */                                   \
    X(endpoint, STR16, 1) /* request endpoint of the node to invite */
#define KV_MSG_LEAVE_FIELDS(X)                                                           \
    X(req_id, U64, 1)    /* echoed in CLUSTER_REPLY */                                   \
    X(node_id, STR8, 1)  /* the node to drain */
#define KV_MSG_INVITE_FIELDS(X)                                                          \
    X(req_id, U64, 1)    /* echoed in the REPLY */                                       \
    X(endpoint, STR16, 1) /* the coordinator's endpoint to register at */
#define KV_MSG_CLUSTER_REPLY_FIELDS(X)                                                   \
    X(req_id, U64, 1)    /* the request's */                                             \
    X(status, STATUS, 1) /* outcome */                                                   \
    X(node_id, STR8, 1)  /* the node concerned */

#define KV_MSG_LEASE_FIELDS(X)                                                           \
    X(req_id, U64, 1)    /* the heartbeat answered: the lease counts from its send */    \
    X(epoch, U64, 1)     /* the coordinator's epoch: covers tables at least this new */  \
    X(lease_ms, U32, 1)  /* duration the node may serve as primary (margin taken off) */

/* Replication: see node/kv_repl.h for the protocol. */
#define KV_MSG_UPDATE_FIELDS(X)                                                          \
    X(partition, U32, 1) /* the partition written (also the PUB topic) */                \
    X(sender, U16, 1)    /* the primary's node index */                                  \
    X(epoch, U64, 1)     /* the primary's routing epoch */                               \
    X(seq, U64, 1)       /* position in the partition's stream */                        \
    X(op, OP, 1)         /* what happened */                                             \
    X(key, STR16, 1)     /* SET, RM: the key */                                          \
    X(value, STR16, 1)   /* SET: the value */                                            \
    X(meta.version, U64, 2) /* SET: the entry's version, 0 until versions exist */       \
    X(meta.expiry, U64, 2) /* SET: absolute expiry in ms, 0 for none */

#define KV_MSG_BEACON_FIELDS(X)                                                          \
    X(sender, U16, 1)    /* the primary's node index */                                  \
    X(epoch, U64, 1)     /* its routing epoch */                                         \
    X(items, ITEMS, 1)   /* (partition, last seq, fenced) of each stream */

#define KV_MSG_ACK_FIELDS(X)                                                             \
    X(sender, U16, 1)    /* the replica's node index */                                  \
    X(items, ITEMS, 1)   /* (partition, seq applied, 0) */                               \
    X(has_room, FLAG, 4) /* the replica has a memory limit: room is set */               \
    X(room, U64, 4)      /* bytes it can still take under its limit (docs/memory.md) */

#define KV_MSG_SNAPSHOT_REQ_FIELDS(X)                                                    \
    X(req_id, U64, 1)    /* echoed in every chunk */                                     \
    X(partition, U32, 1) /* the partition wanted */                                      \
    X(sender, U16, 1)    /* the replica's node index */

#define KV_MSG_SNAPSHOT_FIELDS(X)                                                        \
    X(req_id, U64, 1)    /* the request's */                                             \
    X(partition, U32, 1) /* the partition */                                             \
    X(status, STATUS, 1) /* outcome */                                                   \
    X(seq, U64, 1)       /* the snapshot is the partition at exactly this seq */         \
    X(chunk, U32, 1)     /* 0, 1, ... */                                                 \
    X(more, FLAG, 1)     /* more chunks follow */                                        \
    X(count, U32, 1)     /* entries in this chunk */                                     \
    X(entries, ENTRIES, 1) /* the partition's entries */

/* Records inside blobs; each is its own C struct (kv_msg.h). */
#define KV_MSG_ENTRY_FIELDS(X)                                                           \
    X(key, STR16, 1)     /* the key */                                                   \
    X(value, STR16, 1)   /* the value */                                                 \
    X(meta.version, U64, 2) /* the entry's version, 0 until versions exist */            \
    X(meta.expiry, U64, 2) /* absolute expiry in ms, 0 for none */

/* One key of a TX_PREPARE: what the transaction does with it. */
#define KV_MSG_TXOP_FIELDS(X)                                                            \
    X(write, U8, 1)      /* KV_TXOP_NONE, KV_TXOP_SET, KV_TXOP_RM */                      \
    X(has_if, FLAG, 1)   /* a condition: the key's version must be if_version */         \
    X(if_version, U64, 1) /* 0: the key must be absent */                                \
    X(get, FLAG, 1)      /* the key's value is read */                                   \
    X(key, STR16, 1)     /* the key */                                                   \
    X(value, STR16, 1)   /* SET: the value */

#define KV_MSG_ITEM_FIELDS(X)                                                            \
    X(partition, U32, 1) /* the stream */                                                \
    X(seq, U64, 1)       /* BEACON: last seq sent; ACK: applied; MGET_REPLY: last removal */ \
    X(flag, U8, 1)       /* BEACON: the stream is fenced; ACK: 0; MGET_REPLY: found */

#define KV_MSG_REPORT_FIELDS(X)                                                          \
    X(partition, U32, 1) /* the partition */                                             \
    X(role, U8, 1)       /* slot: 0 primary, 1.. replica, KV_ROLE_LEARNER */             \
    X(state, U8, 1)      /* KV_REPORT_* bits */                                          \
    X(seq, U64, 1)       /* last seq applied */

#define KV_MSG_COUNTER_FIELDS(X)                                                         \
    X(name, STR8, 2)     /* Prometheus-style name */                                     \
    X(value, U64, 2)     /* its count */

/* The members of kv_msg_t: X(C type, member). A member is shared by every
 * message that has a field of that name. */
#define KV_MSG_MEMBERS(X)                                                                \
    X(uint8_t, status)       /* replies, CLUSTER_REPLY, SNAPSHOT: kv_status_t */         \
    X(uint8_t, has_after)    /* SCAN: after is set */                                    \
    X(uint8_t, more)         /* SCAN_REPLY, SNAPSHOT: more entries follow */             \
    X(uint8_t, op)           /* UPDATE: kv_op_t */                                       \
    X(uint8_t, has_if_version) /* SET, RM: a condition is set */                         \
    X(uint8_t, commit)       /* TX_PREPARE: one-partition transaction */                 \
    X(uint8_t, wait)         /* TX_PREPARE: a read-only transaction waits for writers */ \
    X(uint32_t, record)      /* TX_PREPARE: the commit record's partition */             \
    X(uint32_t, participant) /* TX_RESOLVE: the asker's partition */                     \
    X(uint64_t, txid)        /* TX_*: the transaction */                                 \
    X(kv_bytes_t, ops)       /* TX_PREPARE: TXOP records */                              \
    X(uint16_t, sender)      /* UPDATE, BEACON, ACK, SNAPSHOT_REQ: node index */         \
    X(uint32_t, partition)   /* keyed requests, SCAN, UPDATE, SNAPSHOT_REQ, SNAPSHOT */  \
    X(uint32_t, limit)       /* SCAN: entries wanted */                                  \
    X(uint32_t, count)       /* SCAN_REPLY, SNAPSHOT, MGET*, TX_REPLY: records in entries */ \
    X(uint32_t, primaries)   /* STATS_REPLY */                                           \
    X(uint32_t, replicas)    /* STATS_REPLY */                                           \
    X(uint32_t, chunk)       /* SNAPSHOT */                                              \
    X(uint32_t, lease_ms)    /* LEASE: duration granted */                               \
    X(uint32_t, ttl)         /* SET, EXPIRE: seconds to live, 0: none */                 \
    X(uint64_t, ttl_ms)      /* REPLY: ms to live, 0: none */                            \
    X(kv_bytes_t, ttls)      /* TX_PREPARE: u32 seconds per op */                        \
    X(uint64_t, req_id)      /* requests and their replies */                            \
    X(uint64_t, epoch)       /* routing epoch */                                         \
    X(uint64_t, keys)        /* STATS_REPLY, HELLO, HEARTBEAT */                         \
    X(uint64_t, primary_keys) /* STATS_REPLY */                                          \
    X(uint64_t, memory)      /* STATS_REPLY, HELLO, HEARTBEAT */                         \
    X(uint64_t, memory_limit) /* HEARTBEAT, STATS_REPLY: bytes, 0 when unlimited */      \
    X(uint64_t, max_memory)  /* STATS_REPLY: enforced limit, 0 when none */              \
    X(uint64_t, used_memory) /* STATS_REPLY: bytes accounted against it */               \
    X(uint8_t, has_room)     /* ACK: room is set */                                      \
    X(uint64_t, room)        /* ACK: the replica's memory room in bytes */               \
    X(uint64_t, incarnation) /* HELLO, HEARTBEAT */                                      \
    X(uint64_t, seq)         /* UPDATE, SNAPSHOT */                                      \
    X(uint64_t, if_version)  /* SET, RM: the condition's version */                      \
    X(kv_msg_meta_t, meta)   /* UPDATE: the written entry's metadata; REPLY: version */  \
    X(kv_bytes_t, key)       /* keyed requests, UPDATE */                                \
    X(kv_bytes_t, value)     /* SET, REPLY, UPDATE */                                    \
    X(kv_bytes_t, after)     /* SCAN */                                                  \
    X(kv_bytes_t, entries)   /* SCAN_REPLY, SNAPSHOT: count ENTRY records */             \
    X(kv_bytes_t, counters)  /* STATS_REPLY: COUNTER records */                          \
    X(kv_bytes_t, node_id)   /* HELLO, HEARTBEAT, LEAVE, CLUSTER_REPLY */                \
    X(kv_bytes_t, endpoint)  /* HELLO, JOIN, INVITE */                                   \
    X(kv_bytes_t, pub_endpoint) /* HELLO */                                              \
    X(kv_bytes_t, table)     /* HELLO, TABLE: kv_table encoding */                       \
    X(kv_bytes_t, items)     /* BEACON, ACK, MGET_REPLY: ITEM records */                 \
    X(kv_bytes_t, reports)   /* HEARTBEAT: REPORT records */

// clang-format on

#endif
