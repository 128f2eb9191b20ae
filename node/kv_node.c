/*  kv_node.c: the node actor (see kv_node.h for the sockets and rules).
 *
 *  Requests are drained from the ROUTER in batches of up to KV_NODE_BATCH
 *  per wake-up: under load one wait of the poller (kv_poller: epoll over the
 *  sockets' ZMQ_FDs) serves many requests and ZeroMQ batches the replies
 *  into few syscalls. Replies are encoded on the stack
 *  (a value is at most 1 KiB); only scan pages allocate. Writes go through
 *  the replication engine (kv_repl), which answers them once they are safe.
 *
 *  Life cycle (s_life_t, changed only by s_life_execute):
 *
 *      REGISTERING --table--> SERVING --drain--> DRAINING
 *      REGISTERING, SERVING, DRAINING --gone--> LINGERING --lingered--> LEFT
 *
 *  REGISTERING sends HELLO to the coordinator until a table arrives; SERVING
 *  heartbeats (with a report per partition). "DRAIN" from the owner (on
 *  SIGTERM) sends LEAVE and waits until the table says LEFT; a node that owns
 *  nothing (or has no coordinator) is gone at once, and so is one whose
 *  drain is refused or times out, or one the table says LEFT (a /leave).
 *  LINGERING still answers requests routed with an older table (MOVED) for
 *  KV_NODE_LINGER_MS, then "LEFT" tells the owner it may exit. A node
 *  started without a coordinator waits for an INVITE (/join) to learn where
 *  it is.
 */
#include "kv_node.h"

#include <assert.h>

#include "kv_actor.h"
#include "kv_clock.h"
#include "kv_counters.h"
#include "kv_hash.h"
#include "kv_lease.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_mem.h"
#include "kv_msg.h"
#include "kv_msg_counts.h"
#include "kv_peers.h"
#include "kv_poller.h"
#include "kv_repl.h"
#include "kv_store.h"
#include "kv_table.h"
#include "kv_tx.h"

#define KV_NODE_BATCH 1024          /* requests served per wake-up at most */
#define KV_NODE_SCAN_MAX 4096       /* entries per scan page at most */
#define KV_NODE_TABLE_ASK_MS 100    /* at most one table request per this */
#define KV_NODE_IDLE_REHASH_US 1000 /* rehash work per idle wake-up */
#define KV_NODE_REPORT_MS 20        /* earliest heartbeat after a report changed */
#define KV_NODE_WAKE_MS 20          /* longest sleep: replication housekeeping */
#define KV_NODE_FIXED_ITEMS 3       /* pipe, router, dealer */
#define KV_NODE_LINGER_MS 1000      /* answer MOVED this long after leaving */

/* A node's life (see the top of this file). */
typedef enum {
    LIFE_REGISTERING, /* no table yet: HELLO until one comes */
    LIFE_SERVING,     /* in the cluster */
    LIFE_DRAINING,    /* LEAVE sent: waiting for the table to say LEFT */
    LIFE_LINGERING,   /* owns nothing: answers MOVED a moment before leaving */
    LIFE_LEFT,        /* "LEFT" sent to the owner */
    LIFE_STATES       /* count */
} s_life_t;

typedef enum {
    LIFE_EV_TABLE,    /* a first table arrived */
    LIFE_EV_DRAIN,    /* the owner asked us to drain, and we own partitions */
    LIFE_EV_GONE,     /* we own nothing any more (or gave up draining) */
    LIFE_EV_LINGERED, /* the linger delay is over */
    LIFE_EVENTS       /* count */
} s_life_event_t;

typedef struct {
    zsock_t *pipe;   /* to the actor's owner */
    zsock_t *router; /* gateways' requests; peers' acks and snapshot requests */
    zsock_t *dealer; /* to the coordinator */
    zsock_t *pub;    /* replication stream */
    void *router_h;  /* raw handles for the hot path */
    void *dealer_h;
    kv_node_config_t config;               /* strings owned by the caller */
    char coordinator[KV_ENDPOINT_MAX + 1]; /* where dealer is connected, "" nowhere */
    uint64_t incarnation;                  /* random per process: tells a restart from a return */
    uint64_t memory_limit;                 /* cgroup memory limit in bytes, 0 when none */
    kv_table_t *table;                     /* latest routing table, NULL before the first */
    int self;                              /* our index in table, -1 when not listed */
    kv_store_t *store;                     /* created with the first table (P is in it) */
    kv_repl_t *repl;                       /* replication engine, created with the store */
    zmq_pollitem_t items[KV_NODE_FIXED_ITEMS + 1 + KV_MAX_NODES]; /* + repl sockets */
    kv_poller_t *poller;                                          /* waits on items */
    int item_count;
    int64_t next_heartbeat;   /* mono ms of the next heartbeat */
    int64_t last_heartbeat;   /* mono ms of the last one */
    int64_t last_table_ask;   /* mono ms of the last table request */
    int64_t drain_deadline;   /* mono ms; 0 until a drain is asked */
    size_t bad_frames;        /* counter: malformed requests dropped */
    kv_msg_counts_t received; /* counters: requests received, by type */
    s_life_t life;            /* where the node is in its life */
    int64_t left_at;          /* LINGERING: mono ms to send "LEFT" */
    kv_counters_t *counters;  /* this node's registry: life, replication */
    size_t count_transitions; /* counter handles */
    size_t count_illegal;
    size_t count_expired; /* keys expired (kv_repl_ttl.c counts them) */
    size_t count_evicted; /* keys evicted (--eviction, to come) */
    kv_lease_t lease;     /* our right to serve as a primary */
    int64_t lease_warned; /* mono ms of the last "no lease" warning */
    int terminated;       /* $TERM received */
} s_node_t;

/* --- memory (docs/memory.md) ---------------------------------------------- */

/* Every byte the node accounts against --max-memory (kv_repl_used_memory:
 * the store, the engine's queues, the frames libzmq holds for us). */
static uint64_t s_used_memory(const s_node_t *self) {
    if (self->repl) return kv_repl_used_memory(self->repl);
    return kv_mem_frame_bytes() + (self->store ? kv_store_memory(self->store) : 0);
}

/* The bytes libzmq's queues may hold, which we cannot account: what the
 * cgroup's limit leaves beyond ours, half of it (the rest is the process's
 * own: code, stacks, allocator slack); 0 (no bound) without both limits. */
static uint64_t s_queue_budget(const s_node_t *self) {
    uint64_t max = self->config.max_memory;
    if (!max || self->memory_limit <= max) return 0;
    return (self->memory_limit - max) / 2;
}

/* High-water marks from the budgets: the request socket's queues (in and
 * out, KV_MEM_PIPES peers each) share the unaccounted budget; the
 * replication stream's queue per replica is accounted (kv_mem_frame) and
 * bounded to an eighth of our limit, so a slow replica is dropped from the
 * stream (it resyncs) before its queue refuses our writes. */
static void s_size_queues(s_node_t *self) {
    const size_t frame = KV_MAX_KEY_BYTES + KV_MAX_VALUE_BYTES + 128;
    int hwm = kv_mem_hwm(s_queue_budget(self) / 2, frame, KV_MEM_PIPES, 1000000);
    zsock_set_sndhwm(self->router, hwm);
    zsock_set_rcvhwm(self->router, hwm);
    int repl =
        kv_mem_hwm(self->config.max_memory / 8, frame, KV_MEM_PIPES, (int)self->config.repl_hwm);
    zsock_set_sndhwm(self->pub, repl);
    if (self->config.max_memory)
        kv_log_info("node %s: memory limit %" PRIu64 " bytes (cgroup %" PRIu64
                    "), queues of %d messages, replication %d",
                    self->config.id, self->config.max_memory, self->memory_limit, hwm, repl);
    uint64_t max = self->config.max_memory, cgroup = self->memory_limit;
    if (cgroup && max && max + KV_MEM_RESERVE_MIN > cgroup)
        kv_log_warn("node %s: --max-memory %" PRIu64 " leaves less than %llu bytes of the cgroup's "
                    "limit %" PRIu64 " for the process itself: it may be killed for memory; "
                    "lower --max-memory",
                    self->config.id, max, KV_MEM_RESERVE_MIN, cgroup);
}

/* --- life cycle ------------------------------------------------------------ */

static const char *s_life_names[LIFE_STATES] = {"registering", "serving", "draining", "lingering",
                                                "left"};
static const char *s_life_event_names[LIFE_EVENTS] = {"table", "drain", "gone", "lingered"};

/* The state event leads to from state, or LIFE_STATES when it is illegal
 * there. */
static s_life_t s_life_next(s_life_t state, s_life_event_t event) {
    switch (event) {
    case LIFE_EV_TABLE:
        return state == LIFE_REGISTERING ? LIFE_SERVING : LIFE_STATES;
    case LIFE_EV_DRAIN:
        return state == LIFE_SERVING ? LIFE_DRAINING : LIFE_STATES;
    case LIFE_EV_GONE:
        return state <= LIFE_DRAINING ? LIFE_LINGERING : LIFE_STATES;
    case LIFE_EV_LINGERED:
        return state == LIFE_LINGERING ? LIFE_LEFT : LIFE_STATES;
    default:
        return LIFE_STATES;
    }
}

/* The one place the node's life changes: logs (debug) and counts a legal
 * transition; refuses an illegal one (error log, counted, asserted in
 * debug builds). Returns 0 or -1. */
static int s_life_execute(s_node_t *self, s_life_event_t event) {
    s_life_t next = s_life_next(self->life, event);
    uint64_t epoch = self->table ? kv_table_epoch(self->table) : 0;
    if (next == LIFE_STATES) {
        kv_log_error("node %s: illegal life event %s in state %s (epoch %" PRIu64 ")",
                     self->config.id, s_life_event_names[event], s_life_names[self->life], epoch);
        kv_counters_inc(self->counters, self->count_illegal);
#ifndef NDEBUG
        assert(!"illegal node life event");
#endif
        return -1;
    }
    kv_log_debug("node %s: %s -> %s on %s (epoch %" PRIu64 ")", self->config.id,
                 s_life_names[self->life], s_life_names[next], s_life_event_names[event], epoch);
    self->life = next;
    kv_counters_inc(self->counters, self->count_transitions);
    return 0;
}

/* --- coordinator side ---------------------------------------------------- */

static void s_send_dealer(s_node_t *self, const kv_msg_t *msg) {
    if (!self->coordinator[0]) return; /* not invited anywhere yet */
    size_t size = kv_msg_encoded_size(msg);
    uint8_t *buf = size ? malloc(size) : NULL;
    if (!buf) return;
    size = kv_msg_encode(msg, buf, size);
    /* IMMEDIATE + DONTWAIT: while the coordinator is away, drop rather than
     * queue stale heartbeats; the next one carries fresher facts. */
    if (zmq_send(self->dealer_h, buf, size, ZMQ_DONTWAIT) < 0 && errno != EAGAIN)
        kv_log_warn("send %s to coordinator failed: %s", kv_msg_type_name(msg->type),
                    zmq_strerror(errno));
    free(buf);
}

static kv_bytes_t s_text(const char *text) {
    return (kv_bytes_t){text, strlen(text)};
}

static void s_send_hello(s_node_t *self) {
    kv_msg_t msg = {.type = KV_MSG_HELLO, .incarnation = self->incarnation};
    msg.node_id = s_text(self->config.id);
    msg.endpoint = s_text(self->config.advertise);
    msg.pub_endpoint = s_text(self->config.pub_advertise);
    uint8_t *table = NULL;
    if (self->store) {
        msg.keys = kv_store_size(self->store);
        msg.memory = kv_store_memory(self->store);
    }
    if (self->table) { /* lets a restarted coordinator rebuild its view */
        size_t size = kv_table_encoded_size(self->table);
        table = malloc(size);
        if (table)
            msg.table = (kv_bytes_t){(char *)table, kv_table_encode(self->table, table, size)};
    }
    s_send_dealer(self, &msg);
    free(table);
}

static void s_send_heartbeat(s_node_t *self) {
    kv_msg_t msg = {.type = KV_MSG_HEARTBEAT, .node_id = s_text(self->config.id)};
    msg.incarnation = self->incarnation;
    msg.epoch = self->table ? kv_table_epoch(self->table) : 0;
    msg.memory_limit = self->memory_limit;
    msg.req_id = kv_lease_heartbeat(&self->lease, kv_clock_mono_us());
    uint8_t *reports = NULL;
    if (self->store) {
        msg.keys = kv_store_size(self->store);
        msg.memory = kv_store_memory(self->store);
    }
    if (self->repl) {
        size_t len = 0;
        reports = kv_repl_reports(self->repl, &len);
        if (reports) msg.reports = (kv_bytes_t){(const char *)reports, len};
    }
    s_send_dealer(self, &msg);
    free(reports);
    self->last_heartbeat = kv_clock_mono_ms();
}

static void s_ask_table(s_node_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now - self->last_table_ask < KV_NODE_TABLE_ASK_MS) return; /* one is on its way */
    self->last_table_ask = now;
    kv_msg_t msg = {.type = KV_MSG_TABLE_REQ,
                    .epoch = self->table ? kv_table_epoch(self->table) : 0};
    s_send_dealer(self, &msg);
}

/* The first LEAVE asks for an answer (req_id 1): the coordinator says at
 * once when no other node can take our partitions. Repeats (for a
 * coordinator that restarted) do not; the table tells us when we are LEFT. */
static void s_send_leave(s_node_t *self, int first) {
    kv_msg_t msg = {.type = KV_MSG_LEAVE, .node_id = s_text(self->config.id)};
    msg.req_id = first ? 1 : 0;
    s_send_dealer(self, &msg);
}

/* We own nothing any more. Requests a gateway routed with an older table
 * may still be on their way: stay a moment to answer them MOVED (the
 * gateway retries at the new owner) before telling the owner to exit. */
static void s_announce_left(s_node_t *self) {
    if (self->life >= LIFE_LINGERING) return; /* on our way out already */
    s_life_execute(self, LIFE_EV_GONE);
    self->left_at = kv_clock_mono_ms() + KV_NODE_LINGER_MS;
}

static void s_check_linger(s_node_t *self) {
    if (self->life != LIFE_LINGERING || kv_clock_mono_ms() < self->left_at) return;
    s_life_execute(self, LIFE_EV_LINGERED);
    zstr_send(self->pipe, "LEFT");
}

static void s_on_cluster_reply(s_node_t *self, const kv_msg_t *msg) {
    if (!self->drain_deadline || msg->status == KV_STATUS_OK) return; /* LEFT comes in a table */
    kv_log_warn("node %s: cannot drain (%s): no other node can take its partitions; leaving",
                self->config.id, kv_status_name(msg->status));
    s_announce_left(self);
}

static int s_connect_coordinator(s_node_t *self, const char *endpoint) {
    if (streq(self->coordinator, endpoint)) return 0;
    if (self->coordinator[0]) zsock_disconnect(self->dealer, "%s", self->coordinator);
    self->coordinator[0] = '\0';
    if (!*endpoint) return 0;
    if (zsock_connect(self->dealer, "%s", endpoint) != 0) {
        kv_log_error("node %s: bad coordinator endpoint %s", self->config.id, endpoint);
        return -1;
    }
    snprintf(self->coordinator, sizeof(self->coordinator), "%s", endpoint);
    return 0;
}

static void s_rebuild_items(s_node_t *self) {
    self->item_count = KV_NODE_FIXED_ITEMS;
    if (self->repl)
        self->item_count += kv_repl_poll_items(self->repl, self->items + KV_NODE_FIXED_ITEMS);
}

/* Tells the owner we own nothing any more and may exit. */
static void s_check_left(s_node_t *self) {
    if (self->life >= LIFE_LINGERING || !self->table || self->self < 0) return;
    if (kv_table_node_state(self->table, (uint32_t)self->self) != KV_NODE_LEFT) return;
    kv_log_info("node %s: drained, leaving the cluster (epoch %" PRIu64 ")", self->config.id,
                kv_table_epoch(self->table));
    s_announce_left(self);
}

/* Installs a newer table. Tables only move forward: an older or equal
 * epoch is ignored, so a delayed message can never roll routing back. */
static void s_adopt_table(s_node_t *self, kv_bytes_t bytes) {
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) {
        kv_log_warn("node %s: malformed table from coordinator dropped", self->config.id);
        return;
    }
    if (self->table && kv_table_epoch(table) <= kv_table_epoch(self->table)) {
        kv_table_destroy(&table);
        return;
    }
    if (self->store && self->table &&
        kv_table_partitions(table) != kv_table_partitions(self->table)) {
        kv_log_error("node %s: table epoch %" PRIu64 " has %u partitions, we hold %u; ignored",
                     self->config.id, kv_table_epoch(table), kv_table_partitions(table),
                     kv_table_partitions(self->table));
        kv_table_destroy(&table);
        return;
    }
    if (!self->store) {
        self->store = kv_store_new(kv_table_partitions(table));
        if (self->store) kv_store_set_clock_offset(self->store, self->config.clock_offset_ms);
    }
    if (self->store && !self->repl) {
        kv_repl_config_t config = {self->config.id,
                                   self->router_h,
                                   zsock_resolve(self->pub),
                                   self->config.write_acks,
                                   self->config.repl_hwm,
                                   self->counters,
                                   &self->lease,
                                   self->config.max_memory,
                                   self->config.eviction};
        self->repl = kv_repl_new(&config, self->store, kv_table_partitions(table));
    }
    kv_table_destroy(&self->table);
    self->table = table;
    self->self = kv_table_find(table, self->config.id);
    if (self->life == LIFE_REGISTERING) s_life_execute(self, LIFE_EV_TABLE);
    kv_lease_on_table(&self->lease, kv_table_epoch(table));
    if (self->repl) {
        kv_repl_on_table(self->repl, table, self->self);
        s_rebuild_items(self);
    }
    uint16_t me = self->self < 0 ? KV_NO_NODE : (uint16_t)self->self;
    kv_log_info("node %s: table epoch %" PRIu64 ": primary of %u, replica of %u of %u partitions",
                self->config.id, kv_table_epoch(table), kv_table_count_primaries(table, me),
                kv_table_count_replicas(table, me), kv_table_partitions(table));
    s_check_left(self);
}

static void s_drain_dealer(s_node_t *self) {
    for (int i = 0; i < KV_NODE_BATCH; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, self->dealer_h, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        kv_msg_t msg;
        if (kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) != 0)
            kv_log_warn("node %s: malformed frame from coordinator dropped", self->config.id);
        else if (msg.type == KV_MSG_TABLE)
            s_adopt_table(self, msg.table);
        else if (msg.type == KV_MSG_WHO)
            s_send_hello(self);
        else if (msg.type == KV_MSG_CLUSTER_REPLY)
            s_on_cluster_reply(self, &msg);
        else if (msg.type == KV_MSG_LEASE)
            kv_lease_grant(&self->lease, msg.req_id, msg.epoch, msg.lease_ms,
                           self->table ? kv_table_epoch(self->table) : 0);
        zmq_msg_close(&frame);
    }
}

/* --- serving requests ---------------------------------------------------- */

/* Whether our lease lets us answer as a primary right now; warns (once a
 * second at most) when it does not, since that means the coordinator is
 * out of reach or not granting. */
static int s_leased(s_node_t *self) {
    if (kv_lease_valid(&self->lease, kv_clock_mono_us())) return 1;
    int64_t now = kv_clock_mono_ms();
    if (now - self->lease_warned >= 1000) {
        self->lease_warned = now;
        kv_log_warn("node %s: no valid lease from the coordinator: refusing to serve as primary",
                    self->config.id);
    }
    return 0;
}

/* Whether we may serve partition at the request's epoch. */
static kv_status_t s_route_status(s_node_t *self, uint32_t partition, uint64_t epoch) {
    if (!self->table || self->self < 0 || !self->repl) return KV_STATUS_NOT_READY;
    if (epoch > kv_table_epoch(self->table)) {
        s_ask_table(self); /* the gateway knows a newer table than we do */
        return KV_STATUS_STALE_EPOCH;
    }
    if (partition >= kv_table_partitions(self->table)) return KV_STATUS_BAD_REQUEST;
    if (kv_table_owner(self->table, partition, 0) != self->self) return KV_STATUS_MOVED;
    if (!s_leased(self)) return KV_STATUS_NO_LEASE;
    return KV_STATUS_OK;
}

static void s_send_reply(s_node_t *self, zmq_msg_t *identity, const uint8_t *buf, size_t size) {
    if (zmq_msg_send(identity, self->router_h, ZMQ_SNDMORE) < 0) return;
    zmq_send(self->router_h, buf, size, ZMQ_DONTWAIT); /* an unroutable reply is dropped */
}

/* Replies to a request that failed before reaching the store. */
static void s_reply(s_node_t *self, zmq_msg_t *identity, uint64_t req_id, kv_status_t status,
                    const char *value, size_t vlen) {
    uint8_t buf[KV_MAX_VALUE_BYTES + 64];
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = (uint8_t)status};
    reply.epoch = self->table ? kv_table_epoch(self->table) : 0;
    reply.value = (kv_bytes_t){value, vlen};
    size_t size = kv_msg_encode(&reply, buf, sizeof(buf));
    if (size) s_send_reply(self, identity, buf, size);
}

/* A keyed request the gateway could not have sent: we check again rather
 * than trust the network, since a bad key would corrupt the partition. */
static int s_keyed_is_valid(s_node_t *self, const kv_msg_t *req) {
    if (req->key.len == 0 || req->key.len > KV_MAX_KEY_BYTES) return 0;
    if (req->value.len > KV_MAX_VALUE_BYTES) return 0;
    if (req->ttl > KV_MAX_TTL_S) return 0;
    return kv_partition_of(req->key.ptr, req->key.len, kv_table_partitions(self->table)) ==
           req->partition;
}

static void s_serve_keyed(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = s_route_status(self, req->partition, req->epoch);
    if (status == KV_STATUS_OK && !s_keyed_is_valid(self, req)) status = KV_STATUS_BAD_REQUEST;
    int write = req->type == KV_MSG_SET || req->type == KV_MSG_RM || req->type == KV_MSG_EXPIRE;
    /* Handing the partition over: retry at the new primary. Reads too: the
     * new primary takes writes as soon as it flips, before we see the
     * table that says so, and a read here would then be stale. */
    if (status == KV_STATUS_OK && kv_repl_is_fenced(self->repl, req->partition))
        status = KV_STATUS_MOVED;
    if (status != KV_STATUS_OK) {
        s_reply(self, identity, req->req_id, status, NULL, 0);
        return;
    }
    if (write) {
        kv_repl_write(self->repl, identity, req);
        return;
    }
    kv_repl_read(self->repl, identity, req);
}

/* Whether we may answer an MGET: its keys as s_keyed_is_valid checks
 * them (at most KV_MGET_MAX_KEYS, no values), each of a partition we
 * may serve (s_route_status) and not handing over. */
static kv_status_t s_mget_status(s_node_t *self, const kv_msg_t *req) {
    if (!self->table || self->self < 0 || !self->repl) return KV_STATUS_NOT_READY;
    if (req->count == 0 || req->count > KV_MGET_MAX_KEYS) return KV_STATUS_BAD_REQUEST;
    uint32_t partitions = kv_table_partitions(self->table);
    kv_status_t status = KV_STATUS_OK;
    size_t pos = 0;
    kv_msg_entry_t entry;
    while (status == KV_STATUS_OK && kv_msg_entry_next(req, &pos, &entry) == 0) {
        if (entry.key.len == 0 || entry.key.len > KV_MAX_KEY_BYTES || entry.value.len)
            return KV_STATUS_BAD_REQUEST;
        uint32_t partition = kv_partition_of(entry.key.ptr, entry.key.len, partitions);
        status = s_route_status(self, partition, req->epoch);
        if (status == KV_STATUS_OK && kv_repl_is_fenced(self->repl, partition))
            status = KV_STATUS_MOVED; /* as a GET: the new primary may take writes already */
    }
    return status;
}

static void s_serve_mget(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = s_mget_status(self, req);
    if (status == KV_STATUS_OK)
        kv_repl_mget(self->repl, identity, req);
    else
        s_reply(self, identity, req->req_id, status, NULL, 0);
}

/* A TX_PREPARE the gateway could not have sent (kv_tx.h's limits, keys
 * of this partition): checked again rather than trusted. */
static int s_prepare_is_valid(s_node_t *self, const kv_msg_t *req) {
    uint32_t partitions = kv_table_partitions(self->table);
    if (req->record >= partitions) return 0;
    size_t pos = 0, count = 0;
    kv_msg_txop_t op;
    while (kv_msg_txop_next(req, &pos, &op) == 0) {
        if (++count > KV_TX_MAX_OPS || op.key.len == 0 || op.key.len > KV_MAX_KEY_BYTES ||
            op.value.len > KV_MAX_VALUE_BYTES || (op.write != KV_TXOP_SET && op.value.len) ||
            kv_partition_of(op.key.ptr, op.key.len, partitions) != req->partition)
            return 0;
    }
    return count > 0;
}

/* A transaction's request for a partition we are primary of (kv_tx.h).
 * Refusals are answered like a keyed request's, except to a RESOLVE (it
 * wants no reply: its sender asks again). */
static void s_serve_tx(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = s_route_status(self, req->partition, req->epoch);
    if (status == KV_STATUS_OK && req->type == KV_MSG_TX_PREPARE && !s_prepare_is_valid(self, req))
        status = KV_STATUS_BAD_REQUEST;
    if (status == KV_STATUS_OK && kv_repl_is_fenced(self->repl, req->partition))
        status = KV_STATUS_MOVED; /* handing over: the new primary gets our intents */
    if (status != KV_STATUS_OK) {
        if (req->req_id && req->type != KV_MSG_TX_RESOLVE)
            s_reply(self, identity, req->req_id, status, NULL, 0);
        return;
    }
    switch (req->type) {
    case KV_MSG_TX_PREPARE:
        kv_repl_tx_prepare(self->repl, identity, req);
        break;
    case KV_MSG_TX_COMMIT:
        kv_repl_tx_commit(self->repl, identity, req);
        break;
    case KV_MSG_TX_FINISH:
        kv_repl_tx_finish(self->repl, identity, req);
        break;
    default:
        kv_repl_tx_resolve(self->repl, identity, req);
    }
}

/* Clears the partitions we are primary of; the gateway sends CLEAR to every
 * node, so together the whole cluster is cleared. */
static void s_serve_clear(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = KV_STATUS_NOT_READY;
    if (self->table && self->self >= 0 && self->repl)
        status = req->epoch > kv_table_epoch(self->table) ? KV_STATUS_STALE_EPOCH : KV_STATUS_OK;
    if (status == KV_STATUS_STALE_EPOCH) s_ask_table(self);
    if (status == KV_STATUS_OK && !s_leased(self)) status = KV_STATUS_NO_LEASE;
    if (status == KV_STATUS_OK)
        kv_repl_clear(self->repl, identity, req);
    else
        s_reply(self, identity, req->req_id, status, NULL, 0);
}

/* /join: the coordinator tells a node started without one where it is. */
static void s_serve_invite(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    char endpoint[KV_ENDPOINT_MAX + 1];
    snprintf(endpoint, sizeof(endpoint), "%.*s", (int)req->endpoint.len,
             req->endpoint.ptr ? req->endpoint.ptr : "");
    int ok = *endpoint && s_connect_coordinator(self, endpoint) == 0;
    kv_log_info("node %s: invited by coordinator %s", self->config.id, endpoint);
    s_reply(self, identity, req->req_id, ok ? KV_STATUS_OK : KV_STATUS_BAD_REQUEST, self->config.id,
            strlen(self->config.id));
    if (ok) s_send_hello(self);
}

typedef struct {
    uint8_t *buf;   /* encoded entries */
    size_t cap;     /* allocated */
    size_t pos;     /* used */
    uint32_t count; /* entries */
    int failed;     /* out of memory */
} s_page_t;

static int s_page_add(const kv_entry_t *entry, void *arg) {
    s_page_t *page = arg;
    size_t need = kv_msg_entry_size(kv_entry_klen(entry), kv_entry_vlen(entry));
    if (page->cap - page->pos < need) {
        size_t cap = (page->cap + need) * 2;
        uint8_t *buf = realloc(page->buf, cap);
        if (!buf) {
            page->failed = 1;
            return 1;
        }
        page->buf = buf;
        page->cap = cap;
    }
    const kv_msg_entry_t put = kv_store_entry_wire(entry);
    kv_msg_entry_put(page->buf, page->cap, &page->pos, &put);
    page->count++;
    return 0;
}

static void s_send_scan_reply(s_node_t *self, zmq_msg_t *identity, kv_msg_t *reply) {
    size_t size = kv_msg_encoded_size(reply);
    zmq_msg_t frame;
    if (!size || zmq_msg_init_size(&frame, size) != 0) return;
    kv_msg_encode(reply, zmq_msg_data(&frame), size);
    if (zmq_msg_send(identity, self->router_h, ZMQ_SNDMORE) < 0 ||
        zmq_msg_send(&frame, self->router_h, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
}

static void s_serve_scan(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_msg_t reply = {.type = KV_MSG_SCAN_REPLY, .req_id = req->req_id};
    reply.status = (uint8_t)s_route_status(self, req->partition, req->epoch);
    reply.epoch = self->table ? kv_table_epoch(self->table) : 0;
    s_page_t page = {NULL, 0, 0, 0, 0};
    if (reply.status == KV_STATUS_OK) {
        uint32_t limit = req->limit < KV_NODE_SCAN_MAX ? req->limit : KV_NODE_SCAN_MAX;
        int more = kv_store_scan_sorted(self->store, req->partition, req->has_after, req->after.ptr,
                                        req->after.len, limit, s_page_add, &page);
        if (more < 0 || page.failed) {
            reply.status = KV_STATUS_NO_MEMORY;
            page.count = 0;
            page.pos = 0;
        }
        reply.more = more > 0;
        reply.count = page.count;
        reply.entries = (kv_bytes_t){(const char *)page.buf, page.pos};
    }
    s_send_scan_reply(self, identity, &reply);
    free(page.buf);
}

static void s_serve_stats(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_msg_t reply = {.type = KV_MSG_STATS_REPLY, .req_id = req->req_id};
    reply.status = self->table ? KV_STATUS_OK : KV_STATUS_NOT_READY;
    if (self->table && self->store) {
        reply.epoch = kv_table_epoch(self->table);
        reply.keys = kv_store_size(self->store);
        reply.memory = kv_store_memory(self->store);
        reply.memory_limit = self->memory_limit;
        reply.max_memory = self->config.max_memory;
        reply.used_memory = s_used_memory(self);
        uint32_t partitions = self->self >= 0 ? kv_table_partitions(self->table) : 0;
        for (uint32_t p = 0; p < partitions; p++) {
            int primary = kv_table_owner(self->table, p, 0) == self->self;
            reply.primaries += primary;
            if (primary) reply.primary_keys += kv_store_partition_size(self->store, p);
        }
        if (self->self >= 0)
            reply.replicas = kv_table_count_replicas(self->table, (uint16_t)self->self);
    }
    uint8_t *counters = NULL;
    reply.counters = kv_msg_counts_blob(self->counters, &counters);
    size_t size = kv_msg_encoded_size(&reply);
    uint8_t *buf = size ? malloc(size) : NULL;
    if (buf && kv_msg_encode(&reply, buf, size) == size) s_send_reply(self, identity, buf, size);
    free(buf);
    free(counters);
}

static void s_serve(s_node_t *self, zmq_msg_t *identity, zmq_msg_t *body) {
    kv_msg_t req;
    if (kv_msg_decode(zmq_msg_data(body), zmq_msg_size(body), &req) != 0) {
        kv_counters_inc(self->counters, self->bad_frames);
        uint64_t dropped = kv_counters_value(self->counters, self->bad_frames);
        if (dropped % 1000 == 1) /* one line per 1000: a bad peer must not flood */
            kv_log_warn("node %s: malformed request dropped (%" PRIu64 " so far)", self->config.id,
                        dropped);
        return;
    }
    kv_msg_counts_inc(&self->received, req.type);
    switch (req.type) {
    case KV_MSG_GET:
    case KV_MSG_SET:
    case KV_MSG_RM:
    case KV_MSG_IS:
    case KV_MSG_EXPIRE:
        s_serve_keyed(self, identity, &req);
        break;
    case KV_MSG_MGET:
        s_serve_mget(self, identity, &req);
        break;
    case KV_MSG_CLEAR:
        s_serve_clear(self, identity, &req);
        break;
    case KV_MSG_SCAN:
        s_serve_scan(self, identity, &req);
        break;
    case KV_MSG_STATS:
        s_serve_stats(self, identity, &req);
        break;
    case KV_MSG_ACK:
        if (self->repl) kv_repl_on_ack(self->repl, &req);
        break;
    case KV_MSG_SNAPSHOT_REQ:
        if (self->repl) kv_repl_on_snapshot_req(self->repl, identity, &req);
        break;
    case KV_MSG_INVITE:
        s_serve_invite(self, identity, &req);
        break;
    case KV_MSG_TX_PREPARE:
    case KV_MSG_TX_COMMIT:
    case KV_MSG_TX_FINISH:
    case KV_MSG_TX_RESOLVE:
        s_serve_tx(self, identity, &req);
        break;
    default:
        kv_log_warn("node %s: unexpected %s on the request socket dropped", self->config.id,
                    kv_msg_type_name(req.type));
    }
}

/* Receives [identity][body] and serves it. Returns 0, or -1 when empty. */
static int s_serve_one(s_node_t *self) {
    zmq_msg_t identity, body;
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, self->router_h, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&identity);
        return -1;
    }
    zmq_msg_init(&body);
    int complete = zmq_msg_more(&identity) && zmq_msg_recv(&body, self->router_h, 0) >= 0;
    int extra = complete && zmq_msg_more(&body);
    while (zmq_msg_more(complete ? &body : &identity)) { /* drop frames we never send */
        zmq_msg_t skip;
        zmq_msg_init(&skip);
        int more = zmq_msg_recv(&skip, self->router_h, 0) >= 0 && zmq_msg_more(&skip);
        zmq_msg_close(&skip);
        if (!more) break;
    }
    if (complete && !extra) s_serve(self, &identity, &body);
    zmq_msg_close(&body);
    zmq_msg_close(&identity);
    return 0;
}

/* --- the actor ----------------------------------------------------------- */

static int s_bind(zsock_t *sock, const char *endpoint, const char *what) {
    if (zsock_bind(sock, "%s", endpoint) >= 0) return 0;
    kv_log_error("cannot bind %s socket to %s: %s", what, endpoint, zmq_strerror(errno));
    return -1;
}

static int s_node_init(s_node_t *self, zsock_t *pipe, const kv_node_config_t *config) {
    memset(self, 0, sizeof(*self));
    self->pipe = pipe;
    self->config = *config;
    self->self = -1;
    self->incarnation =
        ((uint64_t)randof(0x7fffffff) << 32) ^ (uint64_t)kv_clock_mono_us() ^ (uint64_t)getpid();
    self->memory_limit = kv_mem_cgroup_limit();
    kv_lease_init(&self->lease, config->leases != 0, 0); /* the grant has the margin off */
    self->router = zsock_new(ZMQ_ROUTER);
    self->dealer = zsock_new(ZMQ_DEALER);
    self->pub = zsock_new(ZMQ_PUB);
    self->poller = kv_poller_new(KV_NODE_FIXED_ITEMS + 1 + KV_MAX_NODES);
    self->counters = kv_counters_new();
    if (!self->router || !self->dealer || !self->pub || !self->poller || !self->counters) return -1;
    self->count_transitions = kv_counters_register(self->counters, "kv_node_life_transitions_total",
                                                   "changes of this node's life state");
    self->count_illegal = kv_counters_register(self->counters, "kv_node_illegal_transitions_total",
                                               "node life events refused as illegal");
    self->bad_frames = kv_counters_register(self->counters, "kv_node_bad_frames_total",
                                            "malformed requests dropped");
    kv_msg_counts_register(&self->received, self->counters, "kv_node_messages");
    /* /status's expiredKeys and evictedKeys read these (0 until TTL and
     * eviction count them; registering again finds the same counter) */
    self->count_expired = kv_counters_register(self->counters, "kv_node_expired_keys_total",
                                               "keys removed because their TTL ran out");
    self->count_evicted = kv_counters_register(self->counters, "kv_node_evicted_keys_total",
                                               "keys evicted to make room (--eviction)");
    s_size_queues(self);
    zsock_set_immediate(self->dealer, 1);
    kv_peers_set_heartbeats(self->dealer);
    zsock_set_sndhwm(self->dealer, 64);
    zsock_set_linger(self->dealer, 0);
    zsock_set_linger(self->pub, 0);
    if (s_bind(self->router, config->bind, "request") || s_bind(self->pub, config->pub_bind, "pub"))
        return -1;
    self->router_h = zsock_resolve(self->router);
    self->dealer_h = zsock_resolve(self->dealer);
    self->items[0] = (zmq_pollitem_t){zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0};
    self->items[1] = (zmq_pollitem_t){self->router_h, 0, ZMQ_POLLIN, 0};
    self->items[2] = (zmq_pollitem_t){self->dealer_h, 0, ZMQ_POLLIN, 0};
    self->item_count = KV_NODE_FIXED_ITEMS;
    return s_connect_coordinator(self, config->coordinator ? config->coordinator : "");
}

static void s_node_destroy(s_node_t *self) {
    kv_poller_destroy(&self->poller);
    kv_repl_destroy(&self->repl);
    zsock_destroy(&self->router);
    zsock_destroy(&self->dealer);
    zsock_destroy(&self->pub);
    kv_table_destroy(&self->table);
    kv_store_destroy(&self->store);
    kv_counters_destroy(&self->counters);
}

/* DRAIN: ask to leave; a node that owns nothing (or has no cluster) can go
 * at once. */
static void s_start_drain(s_node_t *self) {
    if (self->life > LIFE_SERVING) return; /* leaving already */
    uint16_t me = self->self < 0 ? KV_NO_NODE : (uint16_t)self->self;
    int owns =
        self->table && me != KV_NO_NODE &&
        (kv_table_count_primaries(self->table, me) || kv_table_count_replicas(self->table, me));
    if (!owns || !self->coordinator[0]) {
        s_announce_left(self);
        return;
    }
    kv_log_info("node %s: draining before exit", self->config.id);
    s_life_execute(self, LIFE_EV_DRAIN);
    self->drain_deadline = kv_clock_mono_ms() + self->config.drain_timeout_ms;
    s_send_leave(self, 1);
}

static void s_handle_pipe(s_node_t *self) {
    char *command = zstr_recv(self->pipe);
    if (!command || streq(command, "$TERM"))
        self->terminated = 1;
    else if (streq(command, "DRAIN"))
        s_start_drain(self);
    zstr_free(&command);
}

/* Heartbeats (early when a partition report changed: the coordinator waits
 * for it to move partitions), or HELLO until a table arrives. */
static void s_tick(s_node_t *self) {
    int64_t now = kv_clock_mono_ms();
    int early = self->repl && kv_repl_reports_dirty(self->repl) &&
                now - self->last_heartbeat >= KV_NODE_REPORT_MS;
    if (self->life == LIFE_DRAINING && now >= self->drain_deadline) {
        kv_log_warn("node %s: drain did not finish in %ld ms, leaving anyway", self->config.id,
                    self->config.drain_timeout_ms);
        s_announce_left(self);
    }
    if (now < self->next_heartbeat && !early) return;
    self->next_heartbeat = now + self->config.heartbeat_ms;
    if (self->drain_deadline) s_send_leave(self, 0); /* repeated: the coordinator may restart */
    if (self->table)
        s_send_heartbeat(self);
    else
        s_send_hello(self);
}

static void s_loop(s_node_t *self) {
    while (!self->terminated) {
        long timeout = (long)(self->next_heartbeat - kv_clock_mono_ms());
        if (timeout > KV_NODE_WAKE_MS) timeout = KV_NODE_WAKE_MS;
        if (self->repl && kv_repl_busy(self->repl)) timeout = 0;
        int rc =
            kv_poller_wait(self->poller, self->items, self->item_count, timeout < 0 ? 0 : timeout);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) break; /* context terminated */
        zmq_pollitem_t items[KV_NODE_FIXED_ITEMS + 1 + KV_MAX_NODES];
        int count = self->item_count; /* a table below may rebuild self->items */
        memcpy(items, self->items, (size_t)count * sizeof(items[0]));
        if (items[0].revents & ZMQ_POLLIN) s_handle_pipe(self);
        for (int served = 0; (items[1].revents & ZMQ_POLLIN) && served < KV_NODE_BATCH; served++)
            if (s_serve_one(self) != 0) break;
        if (items[2].revents & ZMQ_POLLIN) s_drain_dealer(self);
        if (self->repl && count > KV_NODE_FIXED_ITEMS && self->item_count == count)
            kv_repl_on_readable(self->repl, items + KV_NODE_FIXED_ITEMS,
                                count - KV_NODE_FIXED_ITEMS);
        if (self->repl) kv_repl_tick(self->repl);
        if (self->repl && kv_repl_items_changed(self->repl)) s_rebuild_items(self);
        s_tick(self);
        s_check_linger(self);
        if (rc == 0 && self->store) kv_store_rehash_for(self->store, KV_NODE_IDLE_REHASH_US);
    }
}

void kv_node_actor(zsock_t *pipe, void *args) {
    s_node_t self;
    zsock_signal(pipe, 0);
    int ok = s_node_init(&self, pipe, args) == 0;
    kv_actor_ready(pipe, ok);
    if (!ok) {
        s_node_destroy(&self);
        return;
    }
    kv_log_info("node %s: serving %s, replication %s, coordinator %s", self.config.id,
                self.config.advertise, self.config.pub_advertise,
                self.coordinator[0] ? self.coordinator : "(none: waiting for /join)");
    s_loop(&self);
    kv_log_info("node %s: stopping", self.config.id);
    s_node_destroy(&self);
}
