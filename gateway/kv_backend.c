/*  kv_backend.c: a gateway worker's door to the cluster (see kv_backend.h).
 *
 *  Bookkeeping of calls in flight: every request sent to a node occupies a
 *  slot; its req_id is (generation << 16 | slot index), so a reply that
 *  comes after its slot was reused (late, after a timeout) finds a different
 *  generation and is dropped. Slots are timed out from a FIFO in send order:
 *  every slot gets the same timeout, so the FIFO is also deadline order and
 *  expiry costs O(1) per request.
 */
#include "kv_backend.h"

#include "kv_clock.h"
#include "kv_hash.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_peers.h"
#include "kv_poller.h"

#define KV_SLOT_BITS 16
#define KV_SLOTS (1u << KV_SLOT_BITS) /* requests in flight at most */
#define KV_BACKEND_BATCH 4096         /* messages drained per socket per wake-up */
#define KV_RETRY_MS 20                /* parked calls are retried this often */
#define KV_TABLE_ASK_MS 100           /* table requests while we need one */
#define KV_TABLE_REFRESH_MS 5000      /* table requests when all is well */
#define KV_REQUEST_MAX (KV_MAX_KEY_BYTES * 2 + KV_MAX_VALUE_BYTES + 64)
#define KV_JOIN_TIMEOUT_MS 5000    /* the coordinator gives a node 2 s to answer */
#define KV_LEAVE_TIMEOUT_MS 600000 /* a drain copies the node's data away */
#define KV_LEAVE_RESEND_MS 1000    /* a waiting LEAVE is repeated this often */

typedef struct {
    kv_call_t *call;  /* the call this request serves; NULL when free */
    uint32_t gen;     /* bumped on every use */
    uint16_t node;    /* table index the request went to (STATUS stats) */
    int64_t deadline; /* mono ms */
} s_slot_t;

struct _kv_backend_t {
    zsock_t *coord;             /* DEALER to the coordinator */
    zsock_t *sub;               /* table broadcasts */
    kv_backend_config_t config; /* settings */
    kv_table_t *table;          /* current routing table, NULL before the first */
    kv_peers_t *peers;          /* a DEALER per node, by table index */
    int peers_changed;          /* poll items must be rebuilt */
    s_slot_t *slots;            /* KV_SLOTS */
    uint32_t *free_slots;       /* stack of free slot indexes */
    uint32_t free_count;
    uint64_t *fifo; /* (gen << 16 | index) in send order, a ring */
    uint32_t fifo_head, fifo_count;
    kv_call_t *parked;           /* calls waiting for a route */
    kv_call_t *cluster_calls;    /* JOIN and LEAVE waiting for the coordinator */
    uint64_t cluster_ids;        /* their request ids */
    int64_t next_cluster_resend; /* mono ms: repeat waiting LEAVEs */
    int64_t next_retry;          /* mono ms */
    int64_t next_table_ask;      /* mono ms */
};

/* --- calls ---------------------------------------------------------------- */

void kv_call_init(kv_call_t *call) {
    memset(call, 0, sizeof(*call));
    zmq_msg_init(&call->reply);
}

void kv_call_reset(kv_call_t *call) {
    zmq_msg_close(&call->reply);
    for (uint32_t i = 0; call->stats && call->table && i < kv_table_node_count(call->table); i++)
        free(call->stats[i].counters);
    kv_table_destroy(&call->table);
    free(call->stats);
    kv_call_init(call);
}

static void s_finish(kv_call_t *call, kv_call_result_t result) {
    call->result = result;
    call->done(call);
}

/* --- slots ---------------------------------------------------------------- */

static int s_slot_take(kv_backend_t *self, kv_call_t *call, uint16_t node, uint64_t *req_id) {
    if (self->free_count == 0) return -1; /* overloaded: KV_SLOTS in flight */
    uint32_t index = self->free_slots[--self->free_count];
    s_slot_t *slot = &self->slots[index];
    slot->call = call;
    slot->gen++;
    slot->node = node;
    slot->deadline = kv_clock_mono_ms() + self->config.timeout_ms;
    *req_id = (uint64_t)slot->gen << KV_SLOT_BITS | index;
    self->fifo[(self->fifo_head + self->fifo_count++) % KV_SLOTS] = *req_id;
    return 0;
}

static void s_slot_release(kv_backend_t *self, uint32_t index) {
    self->slots[index].call = NULL;
    self->free_slots[self->free_count++] = index;
}

/* The slot a reply belongs to, or NULL when it is stale or unknown. */
static s_slot_t *s_slot_find(kv_backend_t *self, uint64_t req_id) {
    s_slot_t *slot = &self->slots[req_id & (KV_SLOTS - 1)];
    if (!slot->call || slot->gen != (uint32_t)(req_id >> KV_SLOT_BITS)) return NULL;
    return slot;
}

/* --- sending -------------------------------------------------------------- */

static void s_park(kv_backend_t *self, kv_call_t *call) {
    call->next_parked = self->parked;
    self->parked = call;
}

/* Encodes msg and sends it to node: 0, or -1. A transaction's prepare
 * may exceed the stack buffer of every other request. */
static int s_send_msg(kv_backend_t *self, uint16_t node, const kv_msg_t *msg) {
    uint8_t stack[KV_REQUEST_MAX];
    size_t need = kv_msg_encoded_size(msg);
    uint8_t *buf = need > sizeof(stack) ? malloc(need) : stack;
    if (!need || !buf) return -1;
    size_t size = kv_msg_encode(msg, buf, need);
    int rc = size ? kv_peers_send(self->peers, node, buf, size) : -1;
    if (buf != stack) free(buf);
    return rc;
}

/* Sends msg to node for call. Returns 0, or -1 when the node cannot be
 * reached or no slot is free (nothing was sent). */
static int s_send(kv_backend_t *self, kv_call_t *call, uint16_t node, kv_msg_t *msg) {
    if (!kv_peers_socket(self->peers, node)) return -1;
    if (s_slot_take(self, call, node, &msg->req_id) != 0) return -1;
    if (s_send_msg(self, node, msg) == 0) {
        call->sent = 1;
        return 0;
    }
    s_slot_release(self, (uint32_t)(msg->req_id & (KV_SLOTS - 1))); /* the FIFO entry goes stale */
    return -1;
}

/* The live primary of partition, or KV_NO_NODE. */
static uint16_t s_primary(const kv_backend_t *self, uint32_t partition) {
    if (!self->table) return KV_NO_NODE;
    uint16_t node = kv_table_owner(self->table, partition, 0);
    const kv_table_node_t *record = kv_table_node(self->table, node);
    if (!record || record->state == KV_NODE_DOWN) return KV_NO_NODE; /* unset, or down */
    return node;
}

/* The message of a transaction call. */
static void s_tx_msg(const kv_call_t *call, kv_msg_t *msg) {
    msg->partition = call->partition;
    msg->txid = call->txid;
    msg->record = call->record;
    msg->commit = (uint8_t)(call->commit != 0);
    msg->wait = (uint8_t)(call->wait != 0);
    msg->ops = (kv_bytes_t){(const char *)call->ops, call->ops_len};
    msg->ttls = (kv_bytes_t){(const char *)call->ttls, call->ttls_len};
    msg->status = call->decision;
    msg->items = (kv_bytes_t){(const char *)call->items, call->items_len};
}

static int s_is_tx(kv_call_op_t op) {
    return op == KV_CALL_TX_PREPARE || op == KV_CALL_TX_COMMIT || op == KV_CALL_TX_FINISH;
}

static void s_dispatch_single(kv_backend_t *self, kv_call_t *call) {
    static const uint8_t types[] = {[KV_CALL_GET] = KV_MSG_GET,
                                    [KV_CALL_SET] = KV_MSG_SET,
                                    [KV_CALL_RM] = KV_MSG_RM,
                                    [KV_CALL_IS] = KV_MSG_IS,
                                    [KV_CALL_EXPIRE] = KV_MSG_EXPIRE,
                                    [KV_CALL_SCAN] = KV_MSG_SCAN,
                                    [KV_CALL_TX_PREPARE] = KV_MSG_TX_PREPARE,
                                    [KV_CALL_TX_COMMIT] = KV_MSG_TX_COMMIT,
                                    [KV_CALL_TX_FINISH] = KV_MSG_TX_FINISH};
    if (!self->table) {
        s_park(self, call);
        return;
    }
    uint32_t partitions = kv_table_partitions(self->table);
    kv_msg_t msg = {.type = types[call->op], .epoch = kv_table_epoch(self->table)};
    if (s_is_tx(call->op)) {
        s_tx_msg(call, &msg);
    } else if (call->op == KV_CALL_SCAN) {
        msg.partition = call->partition;
        msg.limit = call->limit;
        msg.has_after = (uint8_t)(call->has_after != 0);
        msg.after = (kv_bytes_t){call->after, call->alen};
    } else {
        msg.partition = kv_partition_of(call->key, call->klen, partitions);
        msg.key = (kv_bytes_t){call->key, call->klen};
        msg.value = (kv_bytes_t){call->value, call->vlen};
        msg.has_if_version = (uint8_t)(call->has_if_version != 0);
        msg.if_version = call->if_version;
        msg.ttl = call->ttl;
    }
    if (msg.partition >= partitions) {
        s_finish(call, KV_CALL_FAILED);
        return;
    }
    call->pending = 1;
    if (s_send(self, call, s_primary(self, msg.partition), &msg) != 0) {
        call->pending = 0;
        s_park(self, call); /* no live primary right now: wait for one */
    }
}

/* MGET (see kv_backend.h): to its node while it is up, else UNAVAILABLE. */
static void s_dispatch_mget(kv_backend_t *self, kv_call_t *call) {
    uint8_t state = self->table ? kv_table_node_state(self->table, call->node) : KV_NODE_LEFT;
    kv_msg_t msg = {.type = KV_MSG_MGET, .count = call->count};
    msg.entries = (kv_bytes_t){(const char *)call->entries, call->entries_len};
    call->pending = 1;
    if (state != KV_NODE_DOWN && state != KV_NODE_LEFT) {
        msg.epoch = kv_table_epoch(self->table);
        if (s_send(self, call, call->node, &msg) == 0) return;
    }
    call->pending = 0;
    s_finish(call, KV_CALL_UNAVAILABLE);
}

/* Sends msg to every node selected by want; returns how many were sent. */
static uint32_t s_fan_out(kv_backend_t *self, kv_call_t *call, kv_msg_t *msg,
                          int (*want)(const kv_table_t *, uint16_t)) {
    uint32_t sent = 0;
    for (uint32_t i = 0; i < kv_table_node_count(self->table); i++) {
        if (!want(self->table, (uint16_t)i)) continue;
        kv_msg_t copy = *msg;
        sent += s_send(self, call, (uint16_t)i, &copy) == 0;
    }
    return sent;
}

static int s_is_live(const kv_table_t *table, uint16_t node) {
    return kv_table_node_state(table, node) != KV_NODE_DOWN;
}

static int s_is_primary_somewhere(const kv_table_t *table, uint16_t node) {
    return kv_table_count_primaries(table, node) > 0;
}

/* CLEAR goes to every node that is primary of something; all must be live
 * or the clear would be partial. */
static void s_dispatch_clear(kv_backend_t *self, kv_call_t *call) {
    if (!self->table || !kv_table_healthy(self->table)) {
        s_park(self, call);
        return;
    }
    kv_msg_t msg = {.type = KV_MSG_CLEAR, .epoch = kv_table_epoch(self->table)};
    call->result = KV_CALL_OK;
    call->pending = s_fan_out(self, call, &msg, s_is_primary_somewhere);
    if (call->pending == 0) s_park(self, call);
}

static void s_dispatch_status(kv_backend_t *self, kv_call_t *call) {
    call->table = self->table ? kv_table_dup(self->table) : NULL;
    if (!call->table) {
        s_finish(call, KV_CALL_OK);
        return;
    }
    call->stats = calloc(kv_table_node_count(call->table) + 1, sizeof(*call->stats));
    kv_msg_t msg = {.type = KV_MSG_STATS};
    call->pending = call->stats ? s_fan_out(self, call, &msg, s_is_live) : 0;
    if (call->pending == 0) s_finish(call, KV_CALL_OK);
}

/* JOIN and LEAVE go to the coordinator and wait there, with their own
 * deadlines (a drain may take minutes), outside the per-node slots. */
static int s_send_cluster_call(kv_backend_t *self, kv_call_t *call);

static void s_dispatch_cluster(kv_backend_t *self, kv_call_t *call) {
    call->cluster_id = ++self->cluster_ids;
    int rc = s_send_cluster_call(self, call);
    if (rc != 0) { /* malformed, or no coordinator right now */
        s_finish(call, rc == -1 ? KV_CALL_BAD_REQUEST : KV_CALL_UNAVAILABLE);
        return;
    }
    int64_t wait = call->op == KV_CALL_JOIN ? KV_JOIN_TIMEOUT_MS : KV_LEAVE_TIMEOUT_MS;
    call->deadline = kv_clock_mono_ms() + wait;
    call->next_parked = self->cluster_calls;
    self->cluster_calls = call;
}

/* Takes the cluster call with this id out of the list, or returns NULL. */
static kv_call_t *s_take_cluster_call(kv_backend_t *self, uint64_t id, int64_t expired_before) {
    for (kv_call_t **link = &self->cluster_calls; *link; link = &(*link)->next_parked) {
        kv_call_t *call = *link;
        if (call->cluster_id != id && call->deadline >= expired_before) continue;
        *link = call->next_parked;
        call->next_parked = NULL;
        return call;
    }
    return NULL;
}

/* Sends the JOIN or LEAVE of call (again) to the coordinator. */
static int s_send_cluster_call(kv_backend_t *self, kv_call_t *call) {
    kv_msg_t msg = {.type = call->op == KV_CALL_JOIN ? KV_MSG_JOIN : KV_MSG_LEAVE};
    msg.req_id = call->cluster_id;
    if (call->op == KV_CALL_JOIN)
        msg.endpoint = (kv_bytes_t){call->key, call->klen};
    else
        msg.node_id = (kv_bytes_t){call->key, call->klen};
    uint8_t buf[KV_REQUEST_MAX];
    size_t size = kv_msg_encode(&msg, buf, sizeof(buf));
    if (!size) return -1;
    call->sent = zmq_send(zsock_resolve(self->coord), buf, size, ZMQ_DONTWAIT) == (int)size;
    return call->sent ? 0 : -2;
}

/* A drain can outlast the coordinator (it may restart meanwhile and forget
 * the request): LEAVE is idempotent, so it is repeated every second. */
static void s_expire_cluster_calls(kv_backend_t *self) {
    int64_t now = kv_clock_mono_ms();
    kv_call_t *call;
    while ((call = s_take_cluster_call(self, 0, now)) != NULL) s_finish(call, KV_CALL_TIMEOUT);
    if (now < self->next_cluster_resend) return;
    self->next_cluster_resend = now + KV_LEAVE_RESEND_MS;
    for (call = self->cluster_calls; call; call = call->next_parked)
        if (call->op == KV_CALL_LEAVE) s_send_cluster_call(self, call);
}

static void s_on_cluster_reply(kv_backend_t *self, zmq_msg_t *frame, const kv_msg_t *msg) {
    kv_call_t *call = msg->req_id ? s_take_cluster_call(self, msg->req_id, INT64_MIN) : NULL;
    if (!call) return; /* late */
    zmq_msg_move(&call->reply, frame);
    kv_msg_decode(zmq_msg_data(&call->reply), zmq_msg_size(&call->reply), &call->msg);
    switch (msg->status) {
    case KV_STATUS_OK:
        s_finish(call, KV_CALL_OK);
        break;
    case KV_STATUS_NOT_FOUND:
        s_finish(call, KV_CALL_NOT_FOUND);
        break;
    case KV_STATUS_BAD_REQUEST:
        s_finish(call, KV_CALL_BAD_REQUEST);
        break;
    default:
        s_finish(call, KV_CALL_UNAVAILABLE);
    }
}

static void s_dispatch(kv_backend_t *self, kv_call_t *call) {
    switch (call->op) {
    case KV_CALL_JOIN:
    case KV_CALL_LEAVE:
        s_dispatch_cluster(self, call);
        break;
    case KV_CALL_TABLE:
        call->table = self->table ? kv_table_dup(self->table) : NULL;
        s_finish(call, KV_CALL_OK);
        break;
    case KV_CALL_STATUS:
        s_dispatch_status(self, call);
        break;
    case KV_CALL_CLEAR:
        s_dispatch_clear(self, call);
        break;
    case KV_CALL_MGET:
        s_dispatch_mget(self, call);
        break;
    default:
        s_dispatch_single(self, call);
    }
}

/* Re-dispatches parked calls, failing those past their deadline. */
static void s_retry_parked(kv_backend_t *self) {
    kv_call_t *list = self->parked;
    self->parked = NULL;
    int64_t now = kv_clock_mono_ms();
    while (list) {
        kv_call_t *call = list;
        list = call->next_parked;
        call->next_parked = NULL;
        if (now >= call->deadline)
            s_finish(call, KV_CALL_UNAVAILABLE);
        else
            s_dispatch(self, call);
    }
    self->next_retry = now + KV_RETRY_MS;
}

/* --- table ---------------------------------------------------------------- */

static void s_ask_table(kv_backend_t *self) {
    uint8_t buf[16];
    kv_msg_t msg = {.type = KV_MSG_TABLE_REQ,
                    .epoch = self->table ? kv_table_epoch(self->table) : 0};
    size_t size = kv_msg_encode(&msg, buf, sizeof(buf));
    zmq_send(zsock_resolve(self->coord), buf, size, ZMQ_DONTWAIT);
    int64_t wait = self->table && !self->parked ? KV_TABLE_REFRESH_MS : KV_TABLE_ASK_MS;
    self->next_table_ask = kv_clock_mono_ms() + wait;
}

/* Calls waiting on a node the new table declares down (reads) or gone
 * (all) will never be answered: send them again to the new primary now
 * rather than let them time out. Writes to a down node stay: one that
 * reached it may have been applied, so only its deadline (504, "may or may
 * not have happened") is honest. */
static void s_reroute_reads(kv_backend_t *self) {
    for (uint32_t i = 0; i < self->fifo_count; i++) {
        uint64_t req_id = self->fifo[(self->fifo_head + i) % KV_SLOTS];
        s_slot_t *slot = s_slot_find(self, req_id);
        if (!slot) continue;
        kv_call_t *call = slot->call;
        if (call->op == KV_CALL_STATUS || call->op == KV_CALL_CLEAR) continue; /* fan-outs */
        int read = call->op == KV_CALL_GET || call->op == KV_CALL_IS || call->op == KV_CALL_SCAN ||
                   call->op == KV_CALL_MGET; /* which then fails: its node is gone */
        const kv_table_node_t *node = kv_table_node(self->table, slot->node);
        uint8_t state = node ? node->state : KV_NODE_DOWN;
        /* A LEFT node drained before it left: what it had not answered it
         * would have answered MOVED, and its socket is closed now (its
         * answers are lost), so any call may be sent again. */
        if (state != KV_NODE_LEFT && !(read && state == KV_NODE_DOWN)) continue;
        s_slot_release(self, (uint32_t)(req_id & (KV_SLOTS - 1)));
        s_park(self, call);
    }
}

static void s_adopt_table(kv_backend_t *self, kv_bytes_t bytes) {
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) {
        kv_log_warn("malformed table dropped");
        return;
    }
    if (self->table && kv_table_epoch(table) <= kv_table_epoch(self->table)) {
        kv_table_destroy(&table);
        return;
    }
    kv_log_info("table epoch %" PRIu64 ": %u nodes, %u partitions, %s", kv_table_epoch(table),
                kv_table_node_count(table), kv_table_partitions(table),
                kv_table_healthy(table) ? "healthy" : "some partition has no live primary");
    kv_table_destroy(&self->table);
    self->table = table;
    if (kv_peers_update(self->peers, table)) self->peers_changed = 1;
    s_reroute_reads(self);
    s_retry_parked(self); /* routes may exist now */
}

static void s_drain_tables(kv_backend_t *self, zsock_t *sock) {
    for (int i = 0; i < KV_BACKEND_BATCH; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, zsock_resolve(sock), ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        kv_msg_t msg;
        if (kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0) {
            if (msg.type == KV_MSG_TABLE) s_adopt_table(self, msg.table);
            if (msg.type == KV_MSG_CLUSTER_REPLY) s_on_cluster_reply(self, &frame, &msg);
        }
        zmq_msg_close(&frame);
    }
}

/* --- replies -------------------------------------------------------------- */

static kv_call_result_t s_result_of(uint8_t status) {
    switch (status) {
    case KV_STATUS_OK:
        return KV_CALL_OK;
    case KV_STATUS_NOT_FOUND:
        return KV_CALL_NOT_FOUND;
    case KV_STATUS_NO_MEMORY:
        return KV_CALL_NO_MEMORY;
    case KV_STATUS_UNAVAILABLE:
        return KV_CALL_UNAVAILABLE;
    case KV_STATUS_CONFLICT:
        return KV_CALL_CONFLICT;
    case KV_STATUS_TX_ABORTED:
        return KV_CALL_TX_ABORTED;
    default:
        return KV_CALL_FAILED;
    }
}

/* The node answered "not me, not now": the request was not applied. A
 * primary without a lease (cut off from the coordinator, or about to be
 * replaced) says the same: retried until a new table routes it elsewhere
 * or the lease returns, then 503 at the deadline, never 504. */
static int s_is_reroute(uint8_t status) {
    return status == KV_STATUS_MOVED || status == KV_STATUS_STALE_EPOCH ||
           status == KV_STATUS_NOT_READY || status == KV_STATUS_NO_LEASE;
}

/* A refusal to reroute: a fresh table is asked unless ours is newer than
 * the node's (it will learn it). */
static void s_on_reroute(kv_backend_t *self, const kv_msg_t *msg) {
    if (!self->table || msg->epoch >= kv_table_epoch(self->table) || msg->status != KV_STATUS_MOVED)
        s_ask_table(self);
}

static void s_on_single_reply(kv_backend_t *self, kv_call_t *call, zmq_msg_t *frame,
                              const kv_msg_t *msg) {
    if (call->op == KV_CALL_MGET && msg->status != KV_STATUS_OK) { /* never resent */
        if (s_is_reroute(msg->status)) s_on_reroute(self, msg);
        s_finish(call, KV_CALL_UNAVAILABLE);
        return;
    }
    if (msg->status == KV_STATUS_LOCKED) { /* a transaction is committing it: soon */
        s_park(self, call);
        return;
    }
    if (s_is_reroute(msg->status)) {
        s_on_reroute(self, msg);
        s_park(self, call);
        return;
    }
    if (call->op == KV_CALL_GET || call->op == KV_CALL_SCAN || call->op == KV_CALL_TX_PREPARE ||
        call->op == KV_CALL_MGET) {
        /* Decode again after the move: ZeroMQ keeps small frames inside the
         * zmq_msg_t itself, so msg's pointers went stale with the move. */
        zmq_msg_move(&call->reply, frame);
        kv_msg_decode(zmq_msg_data(&call->reply), zmq_msg_size(&call->reply), &call->msg);
    }
    call->version = msg->meta.version;
    call->seq = msg->seq;
    call->ttl_ms = msg->ttl_ms;
    s_finish(call, s_result_of(msg->status));
}

/* Keeps a node's counters past its reply frame (none when out of memory). */
static void s_copy_counters(kv_node_stats_t *stats, const kv_msg_t *msg) {
    free(stats->counters); /* a duplicate reply replaces the first */
    stats->counters = msg->counters.len ? malloc(msg->counters.len) : NULL;
    stats->counters_len = stats->counters ? msg->counters.len : 0;
    if (stats->counters) memcpy(stats->counters, msg->counters.ptr, stats->counters_len);
    stats->version = msg->version;
}

static void s_on_part_reply(kv_backend_t *self, kv_call_t *call, uint16_t node,
                            const kv_msg_t *msg) {
    if (call->op == KV_CALL_STATUS && msg->status == KV_STATUS_OK &&
        node < kv_table_node_count(call->table)) {
        kv_node_stats_t *stats = &call->stats[node];
        stats->answered = 1;
        stats->keys = msg->keys;
        stats->primary_keys = msg->primary_keys;
        stats->memory = msg->memory;
        stats->memory_limit = msg->memory_limit;
        stats->max_memory = msg->max_memory;
        stats->used_memory = msg->used_memory;
        s_copy_counters(stats, msg);
    }
    if (call->op == KV_CALL_CLEAR && msg->status != KV_STATUS_OK)
        call->result = KV_CALL_UNAVAILABLE;
    if (--call->pending > 0) return;
    if (call->op == KV_CALL_CLEAR && call->result != KV_CALL_OK) {
        s_ask_table(self); /* ownership moved under us: clear again at the new epoch */
        s_park(self, call);
        return;
    }
    s_finish(call, call->result);
}

static void s_on_reply(kv_backend_t *self, zmq_msg_t *frame) {
    kv_msg_t msg;
    if (kv_msg_decode(zmq_msg_data(frame), zmq_msg_size(frame), &msg) != 0) {
        kv_log_warn("malformed reply from a node dropped");
        return;
    }
    s_slot_t *slot = s_slot_find(self, msg.req_id);
    if (!slot) return; /* late: the call already timed out */
    kv_call_t *call = slot->call;
    uint16_t node = slot->node;
    s_slot_release(self, (uint32_t)(msg.req_id & (KV_SLOTS - 1)));
    if (call->op == KV_CALL_CLEAR || call->op == KV_CALL_STATUS)
        s_on_part_reply(self, call, node, &msg);
    else
        s_on_single_reply(self, call, frame, &msg);
}

static void s_drain_peer(kv_backend_t *self, void *handle) {
    for (int i = 0; i < KV_BACKEND_BATCH; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        s_on_reply(self, &frame);
        zmq_msg_close(&frame);
    }
}

/* Fails the requests whose node stayed silent past the deadline. */
static void s_expire(kv_backend_t *self) {
    int64_t now = kv_clock_mono_ms();
    while (self->fifo_count > 0) {
        uint64_t req_id = self->fifo[self->fifo_head];
        s_slot_t *slot = s_slot_find(self, req_id);
        if (slot && slot->deadline > now) return; /* the oldest live one is not due */
        self->fifo_head = (self->fifo_head + 1) % KV_SLOTS;
        self->fifo_count--;
        if (!slot) continue; /* answered already */
        kv_call_t *call = slot->call;
        uint16_t node = slot->node;
        s_slot_release(self, (uint32_t)(req_id & (KV_SLOTS - 1)));
        const kv_table_node_t *record = self->table ? kv_table_node(self->table, node) : NULL;
        kv_log_warn("node %s did not answer within %ld ms", record ? record->id : "?",
                    self->config.timeout_ms);
        if (call->op == KV_CALL_STATUS) {
            if (--call->pending == 0) s_finish(call, KV_CALL_OK); /* partial status is fine */
        } else if (call->op == KV_CALL_CLEAR) {
            call->result = KV_CALL_TIMEOUT;
            if (--call->pending == 0) s_finish(call, KV_CALL_TIMEOUT);
        } else
            s_finish(call, KV_CALL_TIMEOUT);
    }
}

/* --- the engine ----------------------------------------------------------- */

int kv_backend_submit(kv_backend_t *self, kv_call_t *call) {
    call->deadline = kv_clock_mono_ms() + self->config.timeout_ms;
    s_dispatch(self, call);
    return 0;
}

#define KV_FIXED_ITEMS 2 /* coord, sub */

int kv_backend_poll_items(kv_backend_t *self, zmq_pollitem_t *items) {
    uint16_t nodes[KV_MAX_NODES];
    items[0] = (zmq_pollitem_t){zsock_resolve(self->coord), 0, ZMQ_POLLIN, 0};
    items[1] = (zmq_pollitem_t){zsock_resolve(self->sub), 0, ZMQ_POLLIN | KV_POLLER_RECV_ONLY, 0};
    self->peers_changed = 0;
    return KV_FIXED_ITEMS + kv_peers_poll_items(self->peers, items + KV_FIXED_ITEMS, nodes);
}

int kv_backend_items_changed(const kv_backend_t *self) {
    return self->peers_changed;
}

long kv_backend_timeout(const kv_backend_t *self) {
    int64_t now = kv_clock_mono_ms();
    int64_t wake = self->next_table_ask;
    if (self->parked && self->next_retry < wake) wake = self->next_retry;
    if (self->cluster_calls && now + 100 < wake) wake = now + 100;
    if (self->fifo_count) {
        const s_slot_t *slot = &self->slots[self->fifo[self->fifo_head] & (KV_SLOTS - 1)];
        if (slot->deadline < wake) wake = slot->deadline;
    }
    return wake <= now ? 0 : (long)(wake - now);
}

void kv_backend_process(kv_backend_t *self, const zmq_pollitem_t *items, int count) {
    if (!self->peers_changed) { /* the items still name our sockets */
        for (int i = KV_FIXED_ITEMS; i < count; i++)
            if (items[i].revents & ZMQ_POLLIN) s_drain_peer(self, items[i].socket);
        if (count >= KV_FIXED_ITEMS && ((items[0].revents | items[1].revents) & ZMQ_POLLIN)) {
            s_drain_tables(self, self->coord);
            s_drain_tables(self, self->sub);
        }
    }
    int64_t now = kv_clock_mono_ms();
    s_expire(self);
    if (self->cluster_calls) s_expire_cluster_calls(self);
    if (self->parked && now >= self->next_retry) s_retry_parked(self);
    if (now >= self->next_table_ask) s_ask_table(self);
}

kv_backend_t *kv_backend_new(const kv_backend_config_t *config) {
    kv_backend_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->config = *config;
    self->slots = calloc(KV_SLOTS, sizeof(*self->slots));
    self->free_slots = malloc(KV_SLOTS * sizeof(*self->free_slots));
    self->fifo = malloc(KV_SLOTS * sizeof(*self->fifo));
    self->peers = kv_peers_new(KV_NO_NODE);
    self->coord = zsock_new(ZMQ_DEALER);
    self->sub = zsock_new(ZMQ_SUB);
    if (!self->slots || !self->free_slots || !self->fifo || !self->peers || !self->coord ||
        !self->sub) {
        kv_backend_destroy(&self);
        return NULL;
    }
    for (uint32_t i = 0; i < KV_SLOTS; i++) self->free_slots[i] = KV_SLOTS - 1 - i;
    self->free_count = KV_SLOTS;
    zsock_set_linger(self->coord, 0);
    zsock_set_sndhwm(self->coord, 16);
    zsock_set_immediate(self->coord, 1);
    kv_peers_set_heartbeats(self->coord);
    kv_peers_set_heartbeats(self->sub);
    zsock_set_subscribe(self->sub, "");
    if (zsock_connect(self->coord, "%s", config->coordinator) != 0 ||
        zsock_connect(self->sub, "%s", config->coordinator_pub) != 0) {
        kv_log_error("bad coordinator endpoint %s or %s", config->coordinator,
                     config->coordinator_pub);
        kv_backend_destroy(&self);
        return NULL;
    }
    s_ask_table(self);
    return self;
}

void kv_backend_destroy(kv_backend_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_backend_t *self = *self_p;
    while (self->parked) { /* nobody waits for these any more; fail them */
        kv_call_t *call = self->parked;
        self->parked = call->next_parked;
        s_finish(call, KV_CALL_UNAVAILABLE);
    }
    while (self->cluster_calls) {
        kv_call_t *call = self->cluster_calls;
        self->cluster_calls = call->next_parked;
        s_finish(call, KV_CALL_UNAVAILABLE);
    }
    kv_peers_destroy(&self->peers);
    zsock_destroy(&self->coord);
    zsock_destroy(&self->sub);
    kv_table_destroy(&self->table);
    free(self->slots);
    free(self->free_slots);
    free(self->fifo);
    free(self);
    *self_p = NULL;
}

void kv_backend_notify(kv_backend_t *self, const kv_call_t *call) {
    if (!self->table || call->partition >= kv_table_partitions(self->table)) return;
    kv_msg_t msg = {.type = KV_MSG_TX_FINISH, .epoch = kv_table_epoch(self->table)};
    s_tx_msg(call, &msg); /* req_id 0: no answer wanted */
    uint16_t node = s_primary(self, call->partition);
    if (node != KV_NO_NODE && kv_peers_socket(self->peers, node)) s_send_msg(self, node, &msg);
}

uint16_t kv_backend_primary_of(const kv_backend_t *self, uint32_t partition) {
    if (!self->table || partition >= kv_table_partitions(self->table)) return KV_NO_NODE;
    return s_primary(self, partition);
}

uint32_t kv_backend_partitions(const kv_backend_t *self) {
    return self->table ? kv_table_partitions(self->table) : 0;
}
