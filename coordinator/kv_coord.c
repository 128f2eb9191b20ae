/*  kv_coord.c: the coordinator actor (see kv_coord.h). */
#include "kv_coord.h"

#include "kv_actor.h"
#include "kv_clock.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_msg.h"
#include "kv_table.h"

#define KV_COORD_REPUBLISH_MS 1000 /* repeat the table for late subscribers */
#define KV_COORD_TICK_MS 50        /* liveness check period */

typedef struct {
    zframe_t *routing_id; /* the node's ROUTER identity, to send it tables */
    int64_t last_seen;    /* mono ms of its last HELLO or heartbeat */
    uint64_t keys;        /* keys it reported */
    uint64_t memory;      /* bytes it reported */
} s_member_t;

typedef struct {
    zsock_t *pipe;                    /* to the actor's owner */
    zsock_t *router;                  /* nodes and gateways */
    zsock_t *pub;                     /* table broadcasts */
    kv_coord_config_t config;         /* settings */
    kv_table_t *table;                /* the routing table we own */
    s_member_t members[KV_MAX_NODES]; /* by table node index */
    int64_t next_publish;             /* mono ms of the next repeat */
    int terminated;                   /* $TERM received */
} s_coord_t;

/* --- sending ------------------------------------------------------------- */

/* Encodes the TABLE message for the current table into a frame. */
static zframe_t *s_table_frame(s_coord_t *self) {
    size_t tsize = kv_table_encoded_size(self->table);
    uint8_t *tbuf = malloc(tsize);
    if (!tbuf) return NULL;
    kv_msg_t msg = {.type = KV_MSG_TABLE};
    msg.table = (kv_bytes_t){(const char *)tbuf, kv_table_encode(self->table, tbuf, tsize)};
    size_t size = kv_msg_encoded_size(&msg);
    zframe_t *frame = zframe_new(NULL, size);
    if (frame) kv_msg_encode(&msg, zframe_data(frame), size);
    free(tbuf);
    return frame;
}

static void s_send_to(s_coord_t *self, zframe_t *routing_id, zframe_t *body) {
    zframe_t *id = zframe_dup(routing_id);
    zframe_t *copy = zframe_dup(body);
    if (zframe_send(&id, self->router, ZFRAME_MORE | ZFRAME_DONTWAIT) == 0)
        zframe_send(&copy, self->router, ZFRAME_DONTWAIT);
    zframe_destroy(&id);
    zframe_destroy(&copy);
}

static void s_send_table(s_coord_t *self, zframe_t *routing_id) {
    zframe_t *frame = s_table_frame(self);
    if (!frame) return;
    s_send_to(self, routing_id, frame);
    zframe_destroy(&frame);
}

/* Publishes the table and pushes it to every node we can reach. */
static void s_broadcast(s_coord_t *self) {
    zframe_t *frame = s_table_frame(self);
    if (!frame) return;
    for (uint32_t i = 0; i < self->table->node_count; i++)
        if (self->members[i].routing_id) s_send_to(self, self->members[i].routing_id, frame);
    zframe_send(&frame, self->pub, ZFRAME_DONTWAIT);
    zframe_destroy(&frame);
    self->next_publish = kv_clock_mono_ms() + KV_COORD_REPUBLISH_MS;
}

static void s_bump(s_coord_t *self, const char *why) {
    self->table->epoch++;
    kv_log_info("epoch %" PRIu64 ": %s", self->table->epoch, why);
    s_broadcast(self);
}

/* --- membership ---------------------------------------------------------- */

static int s_assigned(const kv_table_t *table) {
    return kv_table_owner(table, 0, 0) != KV_NO_NODE;
}

/* Round-robin over the nodes in table order: primaries differ by at most
 * one per node, and replicas of a partition sit on distinct nodes. */
static void s_assign(s_coord_t *self) {
    kv_table_t *table = self->table;
    uint32_t nodes = table->node_count;
    for (uint32_t p = 0; p < table->partitions; p++)
        for (uint32_t slot = 0; slot < table->replication; slot++)
            kv_table_set_owner(table, p, slot,
                               slot < nodes ? (uint16_t)((p + slot) % nodes) : KV_NO_NODE);
    for (uint32_t i = 0; i < nodes; i++) table->nodes[i].state = KV_NODE_ACTIVE;
    s_bump(self, "partitions assigned");
}

/* After a restart the nodes know the routing better than we do: adopt the
 * newest table one of them reports. */
static void s_adopt_reported(s_coord_t *self, kv_bytes_t bytes, const char *from) {
    if (!bytes.len) return;
    kv_table_t *table = kv_table_decode((const uint8_t *)bytes.ptr, bytes.len);
    if (!table) return;
    if (table->epoch <= self->table->epoch || table->partitions != self->table->partitions) {
        kv_table_destroy(&table);
        return;
    }
    kv_log_info("adopting table epoch %" PRIu64 " reported by node %s", table->epoch, from);
    /* Members are indexed like the table's nodes: re-index them by id. */
    s_member_t members[KV_MAX_NODES];
    memset(members, 0, sizeof(members));
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < table->node_count; i++) {
        int old = kv_table_find(self->table, table->nodes[i].id);
        if (old >= 0) {
            members[i] = self->members[old];
            self->members[old].routing_id = NULL;
        } else
            members[i].last_seen = now; /* give it time to check in */
    }
    for (int i = 0; i < KV_MAX_NODES; i++) zframe_destroy(&self->members[i].routing_id);
    memcpy(self->members, members, sizeof(members));
    kv_table_destroy(&self->table);
    self->table = table;
}

static void s_set_routing_id(s_member_t *member, zframe_t *routing_id) {
    zframe_destroy(&member->routing_id);
    member->routing_id = zframe_dup(routing_id);
}

static void s_on_hello(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char id[KV_NODE_ID_MAX + 1], endpoint[KV_ENDPOINT_MAX + 1], pub[KV_ENDPOINT_MAX + 1];
    if (msg->node_id.len == 0 || msg->node_id.len > KV_NODE_ID_MAX ||
        msg->endpoint.len > KV_ENDPOINT_MAX || msg->pub_endpoint.len > KV_ENDPOINT_MAX)
        return;
    snprintf(id, sizeof(id), "%.*s", (int)msg->node_id.len, msg->node_id.ptr);
    snprintf(endpoint, sizeof(endpoint), "%.*s", (int)msg->endpoint.len,
             msg->endpoint.ptr ? msg->endpoint.ptr : "");
    snprintf(pub, sizeof(pub), "%.*s", (int)msg->pub_endpoint.len,
             msg->pub_endpoint.ptr ? msg->pub_endpoint.ptr : "");
    s_adopt_reported(self, msg->table, id);
    int known = kv_table_find(self->table, id) >= 0;
    int index = kv_table_upsert(self->table, id, endpoint, pub);
    if (index < 0) {
        kv_log_warn("node %s refused: table full or bad endpoint", id);
        return;
    }
    s_member_t *member = &self->members[index];
    s_set_routing_id(member, routing_id);
    member->last_seen = kv_clock_mono_ms();
    member->keys = msg->keys;
    member->memory = msg->memory;
    if (!known) kv_log_info("node %s registered at %s", id, endpoint);
    if (!s_assigned(self->table) && self->table->node_count >= (uint32_t)self->config.min_nodes)
        s_assign(self);
    else if (self->table->nodes[index].state == KV_NODE_DOWN && s_assigned(self->table)) {
        self->table->nodes[index].state = KV_NODE_ACTIVE;
        s_bump(self, "node back");
    }
    s_send_table(self, routing_id);
}

static void s_on_heartbeat(s_coord_t *self, zframe_t *routing_id, const kv_msg_t *msg) {
    char id[KV_NODE_ID_MAX + 1];
    snprintf(id, sizeof(id), "%.*s", (int)msg->node_id.len,
             msg->node_id.ptr ? msg->node_id.ptr : "");
    int index = kv_table_find(self->table, id);
    if (index < 0) { /* we restarted, or it was never registered */
        kv_msg_t who = {.type = KV_MSG_WHO};
        uint8_t buf[8];
        zframe_t *frame = zframe_new(buf, kv_msg_encode(&who, buf, sizeof(buf)));
        s_send_to(self, routing_id, frame);
        zframe_destroy(&frame);
        return;
    }
    s_member_t *member = &self->members[index];
    s_set_routing_id(member, routing_id);
    member->last_seen = kv_clock_mono_ms();
    member->keys = msg->keys;
    member->memory = msg->memory;
    if (self->table->nodes[index].state == KV_NODE_DOWN && s_assigned(self->table)) {
        self->table->nodes[index].state = KV_NODE_ACTIVE;
        kv_log_info("node %s: heartbeats again", id);
        s_bump(self, "node back");
    } else if (msg->epoch < self->table->epoch)
        s_send_table(self, routing_id); /* it missed a table */
}

/* Marks nodes down once silent for node_timeout_ms. */
static void s_check_liveness(s_coord_t *self) {
    int64_t now = kv_clock_mono_ms();
    for (uint32_t i = 0; i < self->table->node_count; i++) {
        kv_table_node_t *node = &self->table->nodes[i];
        if (node->state == KV_NODE_DOWN) continue;
        if (now - self->members[i].last_seen <= self->config.node_timeout_ms) continue;
        node->state = KV_NODE_DOWN;
        kv_log_warn("node %s: no heartbeat for %" PRId64 " ms, marked down", node->id,
                    now - self->members[i].last_seen);
        s_bump(self, "node down");
    }
}

static void s_on_router(s_coord_t *self) {
    zmsg_t *request = zmsg_recv(self->router);
    if (!request) return;
    zframe_t *routing_id = zmsg_pop(request);
    zframe_t *body = zmsg_pop(request);
    kv_msg_t msg;
    if (!routing_id || !body || zmsg_size(request) != 0 ||
        kv_msg_decode(zframe_data(body), zframe_size(body), &msg) != 0)
        kv_log_warn("malformed message on the coordinator socket dropped");
    else if (msg.type == KV_MSG_HELLO)
        s_on_hello(self, routing_id, &msg);
    else if (msg.type == KV_MSG_HEARTBEAT)
        s_on_heartbeat(self, routing_id, &msg);
    else if (msg.type == KV_MSG_TABLE_REQ)
        s_send_table(self, routing_id);
    else
        kv_log_warn("unexpected %s on the coordinator socket dropped", kv_msg_type_name(msg.type));
    zframe_destroy(&routing_id);
    zframe_destroy(&body);
    zmsg_destroy(&request);
}

/* --- the actor ----------------------------------------------------------- */

static int s_coord_init(s_coord_t *self, zsock_t *pipe, const kv_coord_config_t *config) {
    memset(self, 0, sizeof(*self));
    self->pipe = pipe;
    self->config = *config;
    self->table = kv_table_new((uint32_t)config->partitions, (uint32_t)config->replication);
    self->router = zsock_new(ZMQ_ROUTER);
    self->pub = zsock_new(ZMQ_PUB);
    if (!self->table || !self->router || !self->pub) return -1;
    if (zsock_bind(self->router, "%s", config->bind) < 0) {
        kv_log_error("cannot bind %s: %s", config->bind, zmq_strerror(errno));
        return -1;
    }
    if (zsock_bind(self->pub, "%s", config->pub_bind) < 0) {
        kv_log_error("cannot bind %s: %s", config->pub_bind, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static void s_coord_destroy(s_coord_t *self) {
    for (int i = 0; i < KV_MAX_NODES; i++) zframe_destroy(&self->members[i].routing_id);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pub);
    kv_table_destroy(&self->table);
}

static void s_loop(s_coord_t *self) {
    zpoller_t *poller = zpoller_new(self->pipe, self->router, NULL);
    while (!self->terminated && poller) {
        zsock_t *which = zpoller_wait(poller, KV_COORD_TICK_MS);
        if (zpoller_terminated(poller)) break;
        if (which == self->pipe) {
            char *command = zstr_recv(self->pipe);
            self->terminated = !command || streq(command, "$TERM");
            zstr_free(&command);
        } else if (which == self->router)
            s_on_router(self);
        s_check_liveness(self);
        if (kv_clock_mono_ms() >= self->next_publish) s_broadcast(self);
    }
    zpoller_destroy(&poller);
}

void kv_coord_actor(zsock_t *pipe, void *args) {
    s_coord_t self;
    zsock_signal(pipe, 0);
    int ok = s_coord_init(&self, pipe, args) == 0;
    kv_actor_ready(pipe, ok);
    if (ok) {
        kv_log_info("coordinator: %s (tables on %s), %ld partitions, replication %ld, "
                    "waiting for %ld node(s)",
                    self.config.bind, self.config.pub_bind, self.config.partitions,
                    self.config.replication, self.config.min_nodes);
        s_loop(&self);
    }
    s_coord_destroy(&self);
}
