/*  kv_backend.c: the gateway's I/O actor (see kv_backend.h).
 *
 *  Bookkeeping of calls in flight: every request sent to a node occupies a
 *  slot; its req_id is (generation << 16 | slot index), so a reply that
 *  comes after its slot was reused (late, after a timeout) finds a different
 *  generation and is dropped. Slots are timed out from a FIFO in send order:
 *  every slot gets the same timeout, so the FIFO is also deadline order and
 *  expiry costs O(1) per request.
 */
#include "kv_backend.h"

#include <pthread.h>
#include <stdatomic.h>

#include "kv_actor.h"
#include "kv_clock.h"
#include "kv_hash.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_peers.h"

#define KV_SLOT_BITS 16
#define KV_SLOTS (1u << KV_SLOT_BITS) /* requests in flight at most */
#define KV_BACKEND_BATCH 4096         /* messages drained per socket per wake-up */
#define KV_RETRY_MS 20                /* parked calls are retried this often */
#define KV_TABLE_ASK_MS 100           /* table requests while we need one */
#define KV_TABLE_REFRESH_MS 5000      /* table requests when all is well */
#define KV_REQUEST_MAX (KV_MAX_KEY_BYTES * 2 + KV_MAX_VALUE_BYTES + 64)
#define KV_SUBMITTERS_MAX 256 /* HTTP threads that may submit */
#define KV_JOIN_TIMEOUT_MS 5000    /* the coordinator gives a node 2 s to answer */
#define KV_LEAVE_TIMEOUT_MS 600000 /* a drain copies the node's data away */

typedef struct {
    kv_call_t *call;  /* the call this request serves; NULL when free */
    uint32_t gen;     /* bumped on every use */
    uint16_t node;    /* table index the request went to (STATUS stats) */
    int64_t deadline; /* mono ms */
} s_slot_t;

typedef struct {
    zsock_t *pipe;  /* to kv_backend_new's thread */
    zsock_t *pull;  /* submitted calls */
    zsock_t *coord; /* DEALER to the coordinator */
    zsock_t *sub;   /* table broadcasts */
    kv_backend_config_t config;
    kv_table_t *table;            /* current routing table, NULL before the first */
    kv_peers_t *peers;         /* a DEALER per node, by table index */
    uint16_t item_nodes[KV_MAX_NODES]; /* node index of each peer poll item */
    s_slot_t *slots;              /* KV_SLOTS */
    uint32_t *free_slots;         /* stack of free slot indexes */
    uint32_t free_count;
    uint64_t *fifo; /* (gen << 16 | index) in send order, a ring */
    uint32_t fifo_head, fifo_count;
    kv_call_t *parked;      /* calls waiting for a route */
    kv_call_t *cluster_calls; /* JOIN and LEAVE waiting for the coordinator */
    uint64_t cluster_ids;     /* their request ids */
    int64_t next_retry;     /* mono ms */
    int64_t next_table_ask; /* mono ms */
    zmq_pollitem_t *items;  /* rebuilt when peers change */
    int item_count;
    _Atomic uint32_t *partitions; /* P for other threads, 0 before a table */
    int terminated;
} s_backend_t;

struct _kv_backend_t {
    zactor_t *actor;                     /* the s_backend_t thread */
    _Atomic uint32_t partitions;         /* P of the current table, 0 before one */
    char endpoint[64];                   /* inproc endpoint of its PULL socket */
    pthread_mutex_t lock;                /* guards submitters */
    void *submitters[KV_SUBMITTERS_MAX]; /* every thread's PUSH socket */
    int submitter_count;
};

typedef struct {
    kv_backend_config_t config;   /* copied for the actor */
    const char *endpoint;         /* PULL endpoint to bind */
    _Atomic uint32_t *partitions; /* where to publish P */
} s_start_args_t;

/* --- calls ---------------------------------------------------------------- */

void kv_call_init(kv_call_t *call) {
    memset(call, 0, sizeof(*call));
    zmq_msg_init(&call->reply);
}

void kv_call_reset(kv_call_t *call) {
    zmq_msg_close(&call->reply);
    kv_table_destroy(&call->table);
    free(call->stats);
    kv_call_init(call);
}

static void s_finish(kv_call_t *call, kv_call_result_t result) {
    call->result = result;
    call->done(call);
}

/* --- slots ---------------------------------------------------------------- */

static int s_slot_take(s_backend_t *self, kv_call_t *call, uint16_t node, uint64_t *req_id) {
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

static void s_slot_release(s_backend_t *self, uint32_t index) {
    self->slots[index].call = NULL;
    self->free_slots[self->free_count++] = index;
}

/* The slot a reply belongs to, or NULL when it is stale or unknown. */
static s_slot_t *s_slot_find(s_backend_t *self, uint64_t req_id) {
    s_slot_t *slot = &self->slots[req_id & (KV_SLOTS - 1)];
    if (!slot->call || slot->gen != (uint32_t)(req_id >> KV_SLOT_BITS)) return NULL;
    return slot;
}

/* --- sending -------------------------------------------------------------- */

static void s_park(s_backend_t *self, kv_call_t *call) {
    call->next_parked = self->parked;
    self->parked = call;
}

/* Sends msg to node for call. Returns 0, or -1 when the node cannot be
 * reached or no slot is free (nothing was sent). */
static int s_send(s_backend_t *self, kv_call_t *call, uint16_t node, kv_msg_t *msg) {
    if (!kv_peers_socket(self->peers, node)) return -1;
    if (s_slot_take(self, call, node, &msg->req_id) != 0) return -1;
    uint8_t buf[KV_REQUEST_MAX];
    size_t size = kv_msg_encode(msg, buf, sizeof(buf));
    if (size && kv_peers_send(self->peers, node, buf, size) == 0) {
        call->sent = 1;
        return 0;
    }
    s_slot_release(self, (uint32_t)(msg->req_id & (KV_SLOTS - 1))); /* the FIFO entry goes stale */
    return -1;
}

/* The live primary of partition, or KV_NO_NODE. */
static uint16_t s_primary(const s_backend_t *self, uint32_t partition) {
    if (!self->table) return KV_NO_NODE;
    uint16_t node = kv_table_owner(self->table, partition, 0);
    if (node >= self->table->node_count) return KV_NO_NODE;
    if (self->table->nodes[node].state == KV_NODE_DOWN) return KV_NO_NODE;
    return node;
}

static void s_dispatch_single(s_backend_t *self, kv_call_t *call) {
    static const uint8_t types[] = {[KV_CALL_GET] = KV_MSG_GET,
                                    [KV_CALL_SET] = KV_MSG_SET,
                                    [KV_CALL_RM] = KV_MSG_RM,
                                    [KV_CALL_IS] = KV_MSG_IS,
                                    [KV_CALL_SCAN] = KV_MSG_SCAN};
    if (!self->table) {
        s_park(self, call);
        return;
    }
    kv_msg_t msg = {.type = types[call->op], .epoch = self->table->epoch};
    if (call->op == KV_CALL_SCAN) {
        msg.partition = call->partition;
        msg.limit = call->limit;
        msg.has_after = (uint8_t)(call->has_after != 0);
        msg.after = (kv_bytes_t){call->after, call->alen};
    } else {
        msg.partition = kv_partition_of(call->key, call->klen, self->table->partitions);
        msg.key = (kv_bytes_t){call->key, call->klen};
        msg.value = (kv_bytes_t){call->value, call->vlen};
    }
    if (msg.partition >= self->table->partitions) {
        s_finish(call, KV_CALL_FAILED);
        return;
    }
    call->pending = 1;
    if (s_send(self, call, s_primary(self, msg.partition), &msg) != 0) {
        call->pending = 0;
        s_park(self, call); /* no live primary right now: wait for one */
    }
}

/* Sends msg to every node selected by want; returns how many were sent. */
static uint32_t s_fan_out(s_backend_t *self, kv_call_t *call, kv_msg_t *msg,
                          int (*want)(const kv_table_t *, uint16_t)) {
    uint32_t sent = 0;
    for (uint32_t i = 0; i < self->table->node_count; i++) {
        if (!want(self->table, (uint16_t)i)) continue;
        kv_msg_t copy = *msg;
        sent += s_send(self, call, (uint16_t)i, &copy) == 0;
    }
    return sent;
}

static int s_is_live(const kv_table_t *table, uint16_t node) {
    return table->nodes[node].state != KV_NODE_DOWN;
}

static int s_is_primary_somewhere(const kv_table_t *table, uint16_t node) {
    return kv_table_count_primaries(table, node) > 0;
}

/* CLEAR goes to every node that is primary of something; all must be live
 * or the clear would be partial. */
static void s_dispatch_clear(s_backend_t *self, kv_call_t *call) {
    if (!self->table || !kv_table_healthy(self->table)) {
        s_park(self, call);
        return;
    }
    kv_msg_t msg = {.type = KV_MSG_CLEAR, .epoch = self->table->epoch};
    call->result = KV_CALL_OK;
    call->pending = s_fan_out(self, call, &msg, s_is_primary_somewhere);
    if (call->pending == 0) s_park(self, call);
}

static void s_dispatch_status(s_backend_t *self, kv_call_t *call) {
    call->table = self->table ? kv_table_dup(self->table) : NULL;
    if (!call->table) {
        s_finish(call, KV_CALL_OK);
        return;
    }
    call->stats = calloc(call->table->node_count + 1, sizeof(*call->stats));
    kv_msg_t msg = {.type = KV_MSG_STATS};
    call->pending = call->stats ? s_fan_out(self, call, &msg, s_is_live) : 0;
    if (call->pending == 0) s_finish(call, KV_CALL_OK);
}

/* JOIN and LEAVE go to the coordinator and wait there, with their own
 * deadlines (a drain may take minutes), outside the per-node slots. */
static void s_dispatch_cluster(s_backend_t *self, kv_call_t *call) {
    kv_msg_t msg = {.type = call->op == KV_CALL_JOIN ? KV_MSG_JOIN : KV_MSG_LEAVE};
    msg.req_id = call->cluster_id = ++self->cluster_ids;
    if (call->op == KV_CALL_JOIN)
        msg.endpoint = (kv_bytes_t){call->key, call->klen};
    else
        msg.node_id = (kv_bytes_t){call->key, call->klen};
    uint8_t buf[KV_REQUEST_MAX];
    size_t size = kv_msg_encode(&msg, buf, sizeof(buf));
    if (!size) {
        s_finish(call, KV_CALL_BAD_REQUEST);
        return;
    }
    if (zmq_send(zsock_resolve(self->coord), buf, size, ZMQ_DONTWAIT) != (int)size) {
        s_finish(call, KV_CALL_UNAVAILABLE); /* no coordinator right now */
        return;
    }
    int64_t wait = call->op == KV_CALL_JOIN ? KV_JOIN_TIMEOUT_MS : KV_LEAVE_TIMEOUT_MS;
    call->deadline = kv_clock_mono_ms() + wait;
    call->next_parked = self->cluster_calls;
    self->cluster_calls = call;
}

/* Takes the cluster call with this id out of the list, or returns NULL. */
static kv_call_t *s_take_cluster_call(s_backend_t *self, uint64_t id, int64_t expired_before) {
    for (kv_call_t **link = &self->cluster_calls; *link; link = &(*link)->next_parked) {
        kv_call_t *call = *link;
        if (call->cluster_id != id && call->deadline >= expired_before) continue;
        *link = call->next_parked;
        call->next_parked = NULL;
        return call;
    }
    return NULL;
}

static void s_expire_cluster_calls(s_backend_t *self) {
    kv_call_t *call;
    while ((call = s_take_cluster_call(self, 0, kv_clock_mono_ms())) != NULL)
        s_finish(call, KV_CALL_TIMEOUT);
}

static void s_on_cluster_reply(s_backend_t *self, zmq_msg_t *frame, const kv_msg_t *msg) {
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

static void s_dispatch(s_backend_t *self, kv_call_t *call) {
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
    default:
        s_dispatch_single(self, call);
    }
}

/* Re-dispatches parked calls, failing those past their deadline. */
static void s_retry_parked(s_backend_t *self) {
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

static void s_ask_table(s_backend_t *self) {
    uint8_t buf[16];
    kv_msg_t msg = {.type = KV_MSG_TABLE_REQ, .epoch = self->table ? self->table->epoch : 0};
    size_t size = kv_msg_encode(&msg, buf, sizeof(buf));
    zmq_send(zsock_resolve(self->coord), buf, size, ZMQ_DONTWAIT);
    int64_t wait = self->table && !self->parked ? KV_TABLE_REFRESH_MS : KV_TABLE_ASK_MS;
    self->next_table_ask = kv_clock_mono_ms() + wait;
}

static void s_rebuild_items(s_backend_t *self);

static void s_adopt_table(s_backend_t *self, kv_bytes_t bytes) {
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) {
        kv_log_warn("malformed table dropped");
        return;
    }
    if (self->table && table->epoch <= self->table->epoch) {
        kv_table_destroy(&table);
        return;
    }
    kv_log_info("table epoch %" PRIu64 ": %u nodes, %u partitions, %s", table->epoch,
                table->node_count, table->partitions,
                kv_table_healthy(table) ? "healthy" : "some partition has no live primary");
    kv_table_destroy(&self->table);
    self->table = table;
    atomic_store(self->partitions, table->partitions);
    if (kv_peers_update(self->peers, table)) s_rebuild_items(self);
    s_retry_parked(self); /* routes may exist now */
}

static void s_drain_tables(s_backend_t *self, zsock_t *sock) {
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
    default:
        return KV_CALL_FAILED;
    }
}

/* The node answered "not me, not now": the request was not applied. */
static int s_is_reroute(uint8_t status) {
    return status == KV_STATUS_MOVED || status == KV_STATUS_STALE_EPOCH ||
           status == KV_STATUS_NOT_READY;
}

static void s_on_single_reply(s_backend_t *self, kv_call_t *call, zmq_msg_t *frame,
                              const kv_msg_t *msg) {
    if (s_is_reroute(msg->status)) {
        if (!self->table || msg->epoch >= self->table->epoch || msg->status != KV_STATUS_MOVED)
            s_ask_table(self);
        s_park(self, call);
        return;
    }
    if (call->op == KV_CALL_GET || call->op == KV_CALL_SCAN) {
        /* Decode again after the move: ZeroMQ keeps small frames inside the
         * zmq_msg_t itself, so msg's pointers went stale with the move. */
        zmq_msg_move(&call->reply, frame);
        kv_msg_decode(zmq_msg_data(&call->reply), zmq_msg_size(&call->reply), &call->msg);
    }
    s_finish(call, s_result_of(msg->status));
}

static void s_on_part_reply(s_backend_t *self, kv_call_t *call, uint16_t node,
                            const kv_msg_t *msg) {
    if (call->op == KV_CALL_STATUS && msg->status == KV_STATUS_OK &&
        node < call->table->node_count) {
        kv_node_stats_t *stats = &call->stats[node];
        stats->answered = 1;
        stats->keys = msg->keys;
        stats->primary_keys = msg->primary_keys;
        stats->memory = msg->memory;
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

static void s_on_reply(s_backend_t *self, zmq_msg_t *frame) {
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

static void s_drain_peer(s_backend_t *self, void *handle) {
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
static void s_expire(s_backend_t *self) {
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
        kv_log_warn("node %s did not answer within %ld ms",
                    self->table && node < self->table->node_count ? self->table->nodes[node].id
                                                                  : "?",
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

/* --- submission ----------------------------------------------------------- */

static __thread kv_backend_t *s_tls_owner; /* backend this thread's socket feeds */
static __thread void *s_tls_push;          /* this thread's PUSH socket */

int kv_backend_submit(kv_backend_t *self, kv_call_t *call) {
    if (s_tls_owner != self || !s_tls_push) {
        void *push = zsys_socket(ZMQ_PUSH, NULL, 0);
        if (!push) return -1;
        zsock_set_sndhwm(push, 0); /* never drop or block a call */
        if (zmq_connect(push, self->endpoint) != 0) {
            zsys_close(push, NULL, 0);
            return -1;
        }
        pthread_mutex_lock(&self->lock);
        int registered = self->submitter_count < KV_SUBMITTERS_MAX;
        if (registered) self->submitters[self->submitter_count++] = push;
        pthread_mutex_unlock(&self->lock);
        if (!registered) {
            zsys_close(push, NULL, 0);
            return -1;
        }
        s_tls_owner = self;
        s_tls_push = push;
    }
    return zmq_send(s_tls_push, &call, sizeof(call), 0) == sizeof(call) ? 0 : -1;
}

static void s_drain_submitted(s_backend_t *self) {
    void *handle = zsock_resolve(self->pull);
    for (int i = 0; i < KV_BACKEND_BATCH; i++) {
        kv_call_t *call = NULL;
        if (zmq_recv(handle, &call, sizeof(call), ZMQ_DONTWAIT) != sizeof(call)) return;
        call->deadline = kv_clock_mono_ms() + self->config.timeout_ms;
        s_dispatch(self, call);
    }
}

/* --- the actor ------------------------------------------------------------ */

#define KV_FIXED_ITEMS 4 /* pipe, pull, coord, sub */

static void s_rebuild_items(s_backend_t *self) {
    free(self->items);
    self->items = calloc(KV_FIXED_ITEMS + KV_MAX_NODES, sizeof(*self->items));
    self->item_count = 0;
    if (!self->items) return;
    zsock_t *fixed[KV_FIXED_ITEMS] = {self->pipe, self->pull, self->coord, self->sub};
    for (int i = 0; i < KV_FIXED_ITEMS; i++)
        self->items[self->item_count++] =
            (zmq_pollitem_t){zsock_resolve(fixed[i]), 0, ZMQ_POLLIN, 0};
    self->item_count +=
        kv_peers_poll_items(self->peers, self->items + self->item_count, self->item_nodes);
}

static int s_backend_init(s_backend_t *self, zsock_t *pipe, const s_start_args_t *args) {
    memset(self, 0, sizeof(*self));
    self->pipe = pipe;
    self->config = args->config;
    self->partitions = args->partitions;
    self->slots = calloc(KV_SLOTS, sizeof(*self->slots));
    self->free_slots = malloc(KV_SLOTS * sizeof(*self->free_slots));
    self->fifo = malloc(KV_SLOTS * sizeof(*self->fifo));
    if (!self->slots || !self->free_slots || !self->fifo) return -1;
    for (uint32_t i = 0; i < KV_SLOTS; i++) self->free_slots[i] = KV_SLOTS - 1 - i;
    self->free_count = KV_SLOTS;
    self->peers = kv_peers_new(KV_NO_NODE);
    self->pull = zsock_new_pull(NULL);
    self->coord = zsock_new(ZMQ_DEALER);
    self->sub = zsock_new(ZMQ_SUB);
    if (!self->peers || !self->pull || !self->coord || !self->sub) return -1;
    zsock_set_rcvhwm(self->pull, 0);
    zsock_set_linger(self->coord, 0);
    zsock_set_sndhwm(self->coord, 16);
    zsock_set_immediate(self->coord, 1);
    zsock_set_subscribe(self->sub, "");
    if (zsock_bind(self->pull, "%s", args->endpoint) != 0) return -1;
    if (zsock_connect(self->coord, "%s", self->config.coordinator) != 0 ||
        zsock_connect(self->sub, "%s", self->config.coordinator_pub) != 0) {
        kv_log_error("bad coordinator endpoint %s or %s", self->config.coordinator,
                     self->config.coordinator_pub);
        return -1;
    }
    s_rebuild_items(self);
    return self->items ? 0 : -1;
}

static void s_backend_destroy(s_backend_t *self) {
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
    zsock_destroy(&self->pull);
    zsock_destroy(&self->coord);
    zsock_destroy(&self->sub);
    kv_table_destroy(&self->table);
    free(self->items);
    free(self->slots);
    free(self->free_slots);
    free(self->fifo);
}

static long s_poll_timeout(const s_backend_t *self) {
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

static void s_loop(s_backend_t *self) {
    s_ask_table(self);
    while (!self->terminated) {
        int rc = zmq_poll(self->items, self->item_count, s_poll_timeout(self));
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) break;
        if (self->items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(self->pipe);
            self->terminated = !command || streq(command, "$TERM");
            zstr_free(&command);
        }
        zmq_pollitem_t *items = self->items; /* peers may be rebuilt below */
        int count = self->item_count;
        int tables = (items[2].revents | items[3].revents) & ZMQ_POLLIN;
        for (int i = KV_FIXED_ITEMS; i < count; i++)
            if (items[i].revents & ZMQ_POLLIN) s_drain_peer(self, items[i].socket);
        if (items[1].revents & ZMQ_POLLIN) s_drain_submitted(self);
        if (tables) {
            s_drain_tables(self, self->coord);
            s_drain_tables(self, self->sub);
        }
        int64_t now = kv_clock_mono_ms();
        s_expire(self);
        if (self->cluster_calls) s_expire_cluster_calls(self);
        if (self->parked && now >= self->next_retry) s_retry_parked(self);
        if (now >= self->next_table_ask) s_ask_table(self);
    }
}

static void s_backend_actor(zsock_t *pipe, void *args) {
    s_backend_t self;
    zsock_signal(pipe, 0);
    int ok = s_backend_init(&self, pipe, args) == 0;
    kv_actor_ready(pipe, ok);
    if (ok) s_loop(&self);
    s_backend_destroy(&self);
}

kv_backend_t *kv_backend_new(const kv_backend_config_t *config) {
    kv_backend_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    pthread_mutex_init(&self->lock, NULL);
    snprintf(self->endpoint, sizeof(self->endpoint), "inproc://kv-backend-%p", (void *)self);
    s_start_args_t args = {*config, self->endpoint, &self->partitions};
    self->actor = kv_actor_start(s_backend_actor, &args);
    if (!self->actor) kv_backend_destroy(&self);
    return self;
}

void kv_backend_destroy(kv_backend_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_backend_t *self = *self_p;
    for (int i = 0; i < self->submitter_count; i++) zsys_close(self->submitters[i], NULL, 0);
    zactor_destroy(&self->actor);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

uint32_t kv_backend_partitions(kv_backend_t *self) {
    return atomic_load(&self->partitions);
}
