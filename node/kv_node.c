/*  kv_node.c: the node actor (see kv_node.h for the sockets and rules).
 *
 *  Requests are drained from the ROUTER in batches of up to KV_NODE_BATCH
 *  per wake-up: under load one zmq_poll serves many requests and ZeroMQ
 *  batches the replies into few syscalls. Replies are encoded on the stack
 *  (a value is at most 1 KiB); only scan pages allocate.
 */
#include "kv_node.h"

#include "kv_actor.h"
#include "kv_clock.h"
#include "kv_hash.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_msg.h"
#include "kv_store.h"
#include "kv_table.h"

#define KV_NODE_BATCH 1024          /* requests served per wake-up at most */
#define KV_NODE_SCAN_MAX 4096       /* entries per scan page at most */
#define KV_NODE_TABLE_ASK_MS 100    /* at most one table request per this */
#define KV_NODE_IDLE_REHASH_US 1000 /* rehash work per idle wake-up */
#define KV_NODE_REPLY_MAX (KV_MAX_VALUE_BYTES + 64)

typedef struct {
    zsock_t *pipe;   /* to the actor's owner */
    zsock_t *router; /* requests from gateways */
    zsock_t *dealer; /* to the coordinator */
    zsock_t *pub;    /* replication stream */
    void *router_h;  /* raw handles for the hot path */
    void *dealer_h;
    kv_node_config_t config; /* strings owned by the caller, valid for our life */
    kv_table_t *table;       /* latest routing table, NULL before the first */
    int self;                /* our index in table, -1 when not listed */
    kv_store_t *store;       /* created with the first table (P is in it) */
    int64_t next_heartbeat;  /* mono ms of the next heartbeat */
    int64_t last_table_ask;  /* mono ms of the last table request */
    uint64_t bad_frames;     /* malformed frames dropped */
    int terminated;          /* $TERM received */
} s_node_t;

/* --- coordinator side ---------------------------------------------------- */

static void s_send_dealer(s_node_t *self, const kv_msg_t *msg) {
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
    kv_msg_t msg = {.type = KV_MSG_HELLO};
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
    msg.epoch = self->table ? self->table->epoch : 0;
    if (self->store) {
        msg.keys = kv_store_size(self->store);
        msg.memory = kv_store_memory(self->store);
    }
    s_send_dealer(self, &msg);
}

static void s_ask_table(s_node_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now - self->last_table_ask < KV_NODE_TABLE_ASK_MS) return; /* one is on its way */
    self->last_table_ask = now;
    kv_msg_t msg = {.type = KV_MSG_TABLE_REQ, .epoch = self->table ? self->table->epoch : 0};
    s_send_dealer(self, &msg);
}

/* Installs a newer table. Tables only move forward: an older or equal
 * epoch is ignored, so a delayed message can never roll routing back. */
static void s_adopt_table(s_node_t *self, kv_bytes_t bytes) {
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) {
        kv_log_warn("node %s: malformed table from coordinator dropped", self->config.id);
        return;
    }
    if (self->table && table->epoch <= self->table->epoch) {
        kv_table_destroy(&table);
        return;
    }
    if (self->store && self->table && table->partitions != self->table->partitions) {
        kv_log_error("node %s: table epoch %" PRIu64 " has %u partitions, we hold %u; ignored",
                     self->config.id, table->epoch, table->partitions, self->table->partitions);
        kv_table_destroy(&table);
        return;
    }
    if (!self->store) self->store = kv_store_new(table->partitions);
    kv_table_destroy(&self->table);
    self->table = table;
    self->self = kv_table_find(table, self->config.id);
    uint32_t primaries = self->self < 0 ? 0 : kv_table_count_primaries(table, (uint16_t)self->self);
    kv_log_info("node %s: table epoch %" PRIu64 ": primary of %u of %u partitions", self->config.id,
                table->epoch, primaries, table->partitions);
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
        zmq_msg_close(&frame);
    }
}

/* --- serving requests ---------------------------------------------------- */

/* Whether we may serve partition at the request's epoch. */
static kv_status_t s_route_status(s_node_t *self, uint32_t partition, uint64_t epoch) {
    if (!self->table || self->self < 0) return KV_STATUS_NOT_READY;
    if (epoch > self->table->epoch) {
        s_ask_table(self); /* the gateway knows a newer table than we do */
        return KV_STATUS_STALE_EPOCH;
    }
    if (partition >= self->table->partitions) return KV_STATUS_BAD_REQUEST;
    if (kv_table_owner(self->table, partition, 0) != self->self) return KV_STATUS_MOVED;
    return KV_STATUS_OK;
}

static void s_send_reply(s_node_t *self, zmq_msg_t *identity, const uint8_t *buf, size_t size) {
    if (zmq_msg_send(identity, self->router_h, ZMQ_SNDMORE) < 0) return;
    zmq_send(self->router_h, buf, size, ZMQ_DONTWAIT); /* an unroutable reply is dropped */
}

static void s_reply(s_node_t *self, zmq_msg_t *identity, uint64_t req_id, kv_status_t status,
                    const char *value, size_t vlen) {
    uint8_t buf[KV_NODE_REPLY_MAX];
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = (uint8_t)status};
    reply.epoch = self->table ? self->table->epoch : 0;
    reply.value = (kv_bytes_t){value, vlen};
    size_t size = kv_msg_encode(&reply, buf, sizeof(buf));
    if (size) s_send_reply(self, identity, buf, size);
}

/* A keyed request the gateway could not have sent: we check again rather
 * than trust the network, since a bad key would corrupt the partition. */
static int s_keyed_is_valid(s_node_t *self, const kv_msg_t *req) {
    if (req->key.len == 0 || req->key.len > KV_MAX_KEY_BYTES) return 0;
    if (req->value.len > KV_MAX_VALUE_BYTES) return 0;
    return kv_partition_of(req->key.ptr, req->key.len, self->table->partitions) == req->partition;
}

static kv_status_t s_apply_keyed(s_node_t *self, const kv_msg_t *req, const kv_entry_t **found) {
    const kv_msg_t *m = req;
    switch (m->type) {
    case KV_MSG_SET:
        if (kv_store_put(self->store, m->partition, m->key.ptr, m->key.len, m->value.ptr,
                         m->value.len) != 0)
            return KV_STATUS_NO_MEMORY;
        return KV_STATUS_OK;
    case KV_MSG_RM:
        return kv_store_delete(self->store, m->partition, m->key.ptr, m->key.len) == 0
                   ? KV_STATUS_OK
                   : KV_STATUS_NOT_FOUND;
    default: /* GET and IS */
        *found = kv_store_get(self->store, m->partition, m->key.ptr, m->key.len);
        return *found ? KV_STATUS_OK : KV_STATUS_NOT_FOUND;
    }
}

static void s_serve_keyed(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = s_route_status(self, req->partition, req->epoch);
    if (status == KV_STATUS_OK && !s_keyed_is_valid(self, req)) status = KV_STATUS_BAD_REQUEST;
    const kv_entry_t *found = NULL;
    if (status == KV_STATUS_OK) status = s_apply_keyed(self, req, &found);
    if (found && req->type == KV_MSG_GET)
        s_reply(self, identity, req->req_id, status, kv_entry_value(found), kv_entry_vlen(found));
    else
        s_reply(self, identity, req->req_id, status, NULL, 0);
}

/* Clears the partitions we are primary of; the gateway sends CLEAR to every
 * node, so together the whole cluster is cleared. */
static void s_serve_clear(s_node_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    kv_status_t status = KV_STATUS_NOT_READY;
    if (self->table && self->self >= 0)
        status = req->epoch > self->table->epoch ? KV_STATUS_STALE_EPOCH : KV_STATUS_OK;
    if (status == KV_STATUS_STALE_EPOCH) s_ask_table(self);
    if (status == KV_STATUS_OK)
        for (uint32_t p = 0; p < self->table->partitions; p++)
            if (kv_table_owner(self->table, p, 0) == self->self)
                kv_store_clear_partition(self->store, p);
    s_reply(self, identity, req->req_id, status, NULL, 0);
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
    kv_msg_entry_put(page->buf, page->cap, &page->pos, kv_entry_key(entry), kv_entry_klen(entry),
                     kv_entry_value(entry), kv_entry_vlen(entry));
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
    reply.epoch = self->table ? self->table->epoch : 0;
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
    uint8_t buf[128];
    kv_msg_t reply = {.type = KV_MSG_STATS_REPLY, .req_id = req->req_id};
    reply.status = self->table ? KV_STATUS_OK : KV_STATUS_NOT_READY;
    if (self->table && self->store) {
        reply.epoch = self->table->epoch;
        reply.keys = kv_store_size(self->store);
        reply.memory = kv_store_memory(self->store);
        for (uint32_t p = 0; self->self >= 0 && p < self->table->partitions; p++) {
            int primary = kv_table_owner(self->table, p, 0) == self->self;
            reply.primaries += primary;
            if (primary) reply.primary_keys += kv_store_partition_size(self->store, p);
        }
        if (self->self >= 0)
            reply.replicas = kv_table_count_replicas(self->table, (uint16_t)self->self);
    }
    size_t size = kv_msg_encode(&reply, buf, sizeof(buf));
    if (size) s_send_reply(self, identity, buf, size);
}

static void s_serve(s_node_t *self, zmq_msg_t *identity, zmq_msg_t *body) {
    kv_msg_t req;
    if (kv_msg_decode(zmq_msg_data(body), zmq_msg_size(body), &req) != 0) {
        if (self->bad_frames++ % 1000 == 0) /* one line per 1000: a bad peer must not flood */
            kv_log_warn("node %s: malformed request dropped (%" PRIu64 " so far)", self->config.id,
                        self->bad_frames);
        return;
    }
    switch (req.type) {
    case KV_MSG_GET:
    case KV_MSG_SET:
    case KV_MSG_RM:
    case KV_MSG_IS:
        s_serve_keyed(self, identity, &req);
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
    self->router = zsock_new(ZMQ_ROUTER);
    self->dealer = zsock_new(ZMQ_DEALER);
    self->pub = zsock_new(ZMQ_PUB);
    if (!self->router || !self->dealer || !self->pub) return -1;
    zsock_set_sndhwm(self->router, 100000);
    zsock_set_rcvhwm(self->router, 100000);
    zsock_set_immediate(self->dealer, 1);
    zsock_set_sndhwm(self->dealer, 64);
    zsock_set_linger(self->dealer, 0);
    if (s_bind(self->router, config->bind, "request") || s_bind(self->pub, config->pub_bind, "pub"))
        return -1;
    if (zsock_connect(self->dealer, "%s", config->coordinator) < 0) {
        kv_log_error("bad coordinator endpoint %s", config->coordinator);
        return -1;
    }
    self->router_h = zsock_resolve(self->router);
    self->dealer_h = zsock_resolve(self->dealer);
    return 0;
}

static void s_node_destroy(s_node_t *self) {
    zsock_destroy(&self->router);
    zsock_destroy(&self->dealer);
    zsock_destroy(&self->pub);
    kv_table_destroy(&self->table);
    kv_store_destroy(&self->store);
}

static void s_handle_pipe(s_node_t *self) {
    char *command = zstr_recv(self->pipe);
    if (!command || streq(command, "$TERM")) self->terminated = 1;
    zstr_free(&command);
}

/* Heartbeats, or HELLO until a table arrives (the coordinator may have
 * started after us, or restarted). */
static void s_tick(s_node_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now < self->next_heartbeat) return;
    self->next_heartbeat = now + self->config.heartbeat_ms;
    if (self->table)
        s_send_heartbeat(self);
    else
        s_send_hello(self);
}

static void s_loop(s_node_t *self) {
    zmq_pollitem_t items[] = {{zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0},
                              {self->router_h, 0, ZMQ_POLLIN, 0},
                              {self->dealer_h, 0, ZMQ_POLLIN, 0}};
    while (!self->terminated) {
        long timeout = (long)(self->next_heartbeat - kv_clock_mono_ms());
        int rc = zmq_poll(items, 3, timeout < 0 ? 0 : timeout);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) break; /* context terminated */
        if (items[0].revents & ZMQ_POLLIN) s_handle_pipe(self);
        for (int served = 0; (items[1].revents & ZMQ_POLLIN) && served < KV_NODE_BATCH; served++)
            if (s_serve_one(self) != 0) break;
        if (items[2].revents & ZMQ_POLLIN) s_drain_dealer(self);
        s_tick(self);
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
                self.config.advertise, self.config.pub_advertise, self.config.coordinator);
    s_loop(&self);
    kv_log_info("node %s: stopping", self.config.id);
    s_node_destroy(&self);
}
