/*  kv_peers.c: see kv_peers.h. */
#include "kv_peers.h"

#include "kv_log.h"

#define KV_PEER_HWM 100000        /* frames queued per peer before sends fail */
#define KV_ZMTP_HEARTBEAT_MS 1000 /* ZMTP ping period on long-lived connections */
#define KV_ZMTP_DEAD_MS 3000      /* no traffic for this long: reconnect */
#define KV_ZMTP_CONNECT_MS 500    /* a connect unanswered this long: try again */

typedef struct {
    char endpoint[KV_ENDPOINT_MAX + 1]; /* where sock is connected */
    zsock_t *sock;                      /* DEALER, or NULL */
} s_peer_t;

struct _kv_peers_t {
    uint16_t skip;                /* never connect to this index */
    s_peer_t peers[KV_MAX_NODES]; /* by table index */
};

kv_peers_t *kv_peers_new(uint16_t skip) {
    kv_peers_t *self = calloc(1, sizeof(*self));
    if (self) self->skip = skip;
    return self;
}

void kv_peers_destroy(kv_peers_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_peers_t *self = *self_p;
    for (int i = 0; i < KV_MAX_NODES; i++) zsock_destroy(&self->peers[i].sock);
    free(self);
    *self_p = NULL;
}

static int s_connect(s_peer_t *peer, const char *endpoint) {
    peer->sock = zsock_new(ZMQ_DEALER);
    if (!peer->sock) return -1;
    zsock_set_linger(peer->sock, 0);
    zsock_set_sndhwm(peer->sock, KV_PEER_HWM);
    kv_peers_set_heartbeats(peer->sock);
    if (zsock_connect(peer->sock, "%s", endpoint) != 0) {
        kv_log_warn("cannot connect to %s", endpoint);
        zsock_destroy(&peer->sock);
        return -1;
    }
    snprintf(peer->endpoint, sizeof(peer->endpoint), "%s", endpoint);
    return 0;
}

void kv_peers_set_heartbeats(zsock_t *sock) {
    /* A socket with ZMTP heartbeats must never stop reading its connection:
     * libzmq 4.3.4 aborts when a ping arrives while a full receive queue has
     * paused input (zeromq/libzmq#3937, seen here while a learner was busy
     * applying snapshots). So no receive limit: what the senders may queue
     * is bounded on their side (send high-water marks, requests in flight). */
    zsock_set_rcvhwm(sock, 0);
    zsock_set_heartbeat_ivl(sock, KV_ZMTP_HEARTBEAT_MS);
    zsock_set_heartbeat_timeout(sock, KV_ZMTP_DEAD_MS);
    /* Across a cut link the kernel retries an unanswered SYN after 1, 2,
     * 4, 8, 16 ... s, and libzmq waits for the kernel: a link healed after
     * 40 s was used again only 13 s later (it_partition). Abandoning the
     * attempt after KV_ZMTP_CONNECT_MS makes libzmq start a fresh one every
     * reconnect interval, so a healed link carries traffic within a second. */
    zsock_set_connect_timeout(sock, KV_ZMTP_CONNECT_MS);
}

int kv_peers_update(kv_peers_t *self, const kv_table_t *table) {
    int changed = 0;
    for (uint32_t i = 0; i < KV_MAX_NODES; i++) {
        s_peer_t *peer = &self->peers[i];
        const kv_table_node_t *node = kv_table_node(table, i);
        const char *want = "";
        if (node && i != self->skip && node->state != KV_NODE_LEFT) want = node->endpoint;
        if (peer->sock && streq(peer->endpoint, want)) continue;
        if (!peer->sock && !*want) continue;
        zsock_destroy(&peer->sock);
        peer->endpoint[0] = '\0';
        changed = 1;
        if (*want) s_connect(peer, want);
    }
    return changed;
}

zsock_t *kv_peers_socket(kv_peers_t *self, uint16_t node) {
    return node < KV_MAX_NODES ? self->peers[node].sock : NULL;
}

int kv_peers_send(kv_peers_t *self, uint16_t node, const void *data, size_t size) {
    zsock_t *sock = kv_peers_socket(self, node);
    if (!sock) return -1;
    return zmq_send(zsock_resolve(sock), data, size, ZMQ_DONTWAIT) == (int)size ? 0 : -1;
}

int kv_peers_poll_items(kv_peers_t *self, zmq_pollitem_t *items, uint16_t *nodes) {
    int count = 0;
    for (uint16_t i = 0; i < KV_MAX_NODES; i++) {
        if (!self->peers[i].sock) continue;
        items[count] = (zmq_pollitem_t){zsock_resolve(self->peers[i].sock), 0, ZMQ_POLLIN, 0};
        nodes[count++] = i;
    }
    return count;
}
