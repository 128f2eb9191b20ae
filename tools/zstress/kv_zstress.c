/*  kv_zstress.c: kv-zstress, drives the nodes directly over ZeroMQ.
 *
 *  It measures what a node can serve without HTTP and the gateway in front:
 *  it asks the coordinator for the routing table (TABLE_REQ on its ROUTER),
 *  opens one DEALER per node, and sends GET, SET and RM frames exactly as the
 *  gateway's backend does: one frame each, routed to the partition's primary
 *  (kv_partition_of, then kv_table_owner slot 0) and stamped with the
 *  table's epoch. Each node gets a window of --window requests in flight;
 *  as replies come back the window is refilled, and all replies waiting on a
 *  socket are drained per wake-up, so ZeroMQ batches frames both ways.
 *
 *  Keys are generated per node: a node's stream is the key numbers n whose
 *  "k<seed>-<n>" it is primary of, so --nodes N can load just the first N
 *  nodes, and --scale shows how throughput grows from 1 node to all of them
 *  (one phase per count). A node serves one connection in order, so a read
 *  may target a key whose write was sent but not yet answered; replies are
 *  still checked byte for byte (values come from kv_load_value).
 *
 *  On this 2-core machine the client and the nodes share the CPUs: the
 *  figures say how the whole loop scales, not a node's ceiling alone.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kv_hash.h"
#include "kv_hist.h"
#include "kv_limits.h"
#include "kv_load.h"
#include "kv_msg.h"
#include "kv_opts.h"
#include "kv_table.h"

#define S_NODES_MAX 255       /* node index travels in 8 bits of req_id */
#define S_WINDOW_MAX 65535    /* slot travels in 16 bits of req_id */
#define S_DRAIN_MAX 4096      /* replies read per socket per wake-up */
#define S_TICK_NS 250000000LL /* progress and timeout checks */
#define S_TABLE_WAIT_MS 15000 /* for a healthy table */
#define S_FRAME_MAX (KV_MAX_VALUE_BYTES + 128)
#define S_KEY_TRIES 100000         /* random draws for a key of one node */
#define S_REQUESTS_MAX 1000000000L /* key numbers stay 32-bit */

/* Why a request failed, besides a non-OK status (counted per status). */
typedef enum {
    Z_TIMEOUT = 0, /* no reply within --timeout-ms */
    Z_BAD_REPLY,   /* malformed frame, or not a REPLY */
    Z_BAD_VALUE,   /* OK, but not the value written */
    Z_SEND,        /* the frame could not be queued */
    Z_KINDS,
} s_err_t;

static const char *const s_err_names[Z_KINDS] = {"timeout", "bad reply", "bad value",
                                                 "send failed"};

typedef struct {
    int64_t sent; /* ns */
    uint32_t key; /* key number */
    uint32_t gen; /* bumped per use: a late reply to an older use is ignored */
    uint8_t op;   /* kv_load_op_t */
    uint8_t used; /* in flight */
} s_slot_t;

typedef struct {
    char id[KV_NODE_ID_MAX + 1];        /* node id */
    char endpoint[KV_ENDPOINT_MAX + 1]; /* its ROUTER */
    uint16_t table_index;               /* its index in the routing table */
    void *sock;                         /* DEALER to it */
    s_slot_t *slots;                    /* the window */
    uint32_t *free_slots;               /* stack of unused slot numbers */
    uint32_t free_count;                /* entries in free_slots */
    uint64_t cursor;                    /* next key number to try (distinct keys) */
    kv_keyset_t *live;                  /* keys written to it and not removed */
    uint64_t ok;                        /* this phase: requests that succeeded */
    kv_hist_t *latency;                 /* this phase: ns */
} s_node_t;

typedef struct {
    const char *coordinator; /* ROUTER endpoint */
    const char *mix;         /* operation weights */
    long requests;           /* per phase */
    long window;             /* in flight per node */
    long keys;               /* 0: a new key per set; else key numbers [0, keys) */
    long value_size;         /* bytes per value */
    long seed;               /* names the keys */
    long nodes;              /* drive the first N nodes; 0: all */
    long scale;              /* 1: one phase per node count, 1..nodes */
    long timeout_ms;         /* per request */
    long io_threads;         /* ZeroMQ I/O threads */
    long preload;            /* keys written (spread over all nodes) before the phases */
    long ttl;                /* seconds to live of every set; 0: none */
} s_config_t;

typedef struct {
    s_config_t config;
    kv_mix_t mix;
    void *ctx;                            /* ZeroMQ context */
    kv_table_t *table;                    /* routing table */
    s_node_t nodes[S_NODES_MAX];          /* active nodes, table order */
    int node_count;                       /* entries in nodes */
    int driven;                           /* this phase: nodes [0, driven) get load */
    uint64_t rng;                         /* workload generator */
    uint64_t issued;                      /* this phase: requests sent (or failed to) */
    uint64_t done;                        /* this phase: requests finished */
    uint64_t errors[Z_KINDS];             /* all phases */
    uint64_t statuses[KV_STATUS_MAX + 1]; /* all phases: non-OK replies */
    uint64_t late;                        /* replies after their timeout */
    uint64_t lease_retries;               /* NO_LEASE answers sent again */
    int preloading;                       /* writes go to new keys even with --keys */
} s_zstress_t;

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal(int sig) {
    (void)sig;
    s_interrupted = 1;
}

static int64_t s_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- the routing table ---------------------------------------------------- */

/* Asks once and waits up to wait_ms. Returns the table, or NULL. */
static kv_table_t *s_ask_table(void *dealer, int wait_ms) {
    uint8_t req[32];
    kv_msg_t msg = {.type = KV_MSG_TABLE_REQ, .epoch = 0};
    size_t size = kv_msg_encode(&msg, req, sizeof(req));
    if (!size || zmq_send(dealer, req, size, ZMQ_DONTWAIT) < 0) return NULL;
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, wait_ms) <= 0) return NULL;
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    kv_table_t *table = NULL;
    kv_msg_t reply;
    if (zmq_msg_recv(&frame, dealer, ZMQ_DONTWAIT) >= 0 &&
        kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &reply) == 0 &&
        reply.type == KV_MSG_TABLE)
        table = kv_table_decode((const uint8_t *)reply.table.ptr, reply.table.len);
    zmq_msg_close(&frame);
    return table;
}

/* Fetches the table until every partition has an active primary. Returns 0
 * with self->table set, or -1 after printing why. */
static int s_fetch_table(s_zstress_t *self) {
    void *dealer = zmq_socket(self->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(dealer, self->config.coordinator) != 0) {
        fprintf(stderr, "kv-zstress: bad --coordinator '%s': %s\n", self->config.coordinator,
                zmq_strerror(zmq_errno()));
        zmq_close(dealer);
        return -1;
    }
    int64_t deadline = s_now_ns() + S_TABLE_WAIT_MS * 1000000LL;
    while (s_now_ns() < deadline && !s_interrupted) {
        kv_table_t *table = s_ask_table(dealer, 500);
        if (table && kv_table_healthy(table)) {
            self->table = table;
            zmq_close(dealer);
            return 0;
        }
        kv_table_destroy(&table);
        struct timespec pause = {0, 200000000L};
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "kv-zstress: no healthy routing table from %s within %d ms\n",
            self->config.coordinator, S_TABLE_WAIT_MS);
    zmq_close(dealer);
    return -1;
}

/* --- nodes ---------------------------------------------------------------- */

static int s_node_open(s_zstress_t *self, s_node_t *node, const kv_table_node_t *entry,
                       uint16_t index) {
    snprintf(node->id, sizeof(node->id), "%s", entry->id);
    snprintf(node->endpoint, sizeof(node->endpoint), "%s", entry->endpoint);
    node->table_index = index;
    uint32_t window = (uint32_t)self->config.window;
    node->slots = calloc(window, sizeof(s_slot_t));
    node->free_slots = malloc(window * sizeof(uint32_t));
    node->live = kv_keyset_new();
    node->latency = kv_hist_new();
    node->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!node->slots || !node->free_slots || !node->live || !node->latency || !node->sock)
        return -1;
    for (uint32_t i = 0; i < window; i++) node->free_slots[i] = window - 1 - i;
    node->free_count = window;
    int hwm = (int)window * 2 + 1000, zero = 0;
    zmq_setsockopt(node->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(node->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(node->sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(node->sock, node->endpoint) != 0) {
        fprintf(stderr, "kv-zstress: cannot connect to node %s at %s: %s\n", node->id,
                node->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

static void s_node_close(s_node_t *node) {
    if (node->sock) zmq_close(node->sock);
    node->sock = NULL;
    free(node->slots);
    free(node->free_slots);
    node->slots = NULL;
    node->free_slots = NULL;
    kv_keyset_destroy(&node->live);
    kv_hist_destroy(&node->latency);
}

/* Opens a DEALER to every active node that is primary of something. */
static int s_open_nodes(s_zstress_t *self) {
    const kv_table_t *table = self->table;
    for (uint32_t i = 0; i < kv_table_node_count(table) && self->node_count < S_NODES_MAX; i++) {
        if (kv_table_node_state(table, i) != KV_NODE_ACTIVE) continue;
        if (kv_table_count_primaries(table, (uint16_t)i) == 0) continue;
        s_node_t *node = &self->nodes[self->node_count++];
        if (s_node_open(self, node, kv_table_node(table, i), (uint16_t)i) != 0) return -1;
    }
    if (self->node_count > 0) return 0;
    fprintf(stderr, "kv-zstress: the routing table has no active primary\n");
    return -1;
}

/* --- requests ------------------------------------------------------------- */

static int s_owns(const s_zstress_t *self, const s_node_t *node, uint64_t n) {
    char key[64];
    size_t len = kv_load_key(key, sizeof(key), self->config.seed, n);
    uint32_t p = kv_partition_of(key, len, kv_table_partitions(self->table));
    return kv_table_owner(self->table, p, 0) == node->table_index;
}

/* The key number of the next write to node, or -1 when --keys has none of
 * its keys within a reasonable number of draws. */
static int64_t s_set_key(s_zstress_t *self, s_node_t *node) {
    if (self->config.keys == 0 || self->preloading) {
        while (!s_owns(self, node, node->cursor)) node->cursor++;
        return (int64_t)node->cursor++;
    }
    for (int i = 0; i < S_KEY_TRIES; i++) {
        uint64_t n = kv_rand_below(&self->rng, (uint64_t)self->config.keys);
        if (s_owns(self, node, n)) return (int64_t)n;
    }
    return -1;
}

/* Encodes and sends the request in slot to node. Returns 0 or -1. */
static int s_send(s_zstress_t *self, s_node_t *node, uint32_t slot_no) {
    const s_slot_t *slot = &node->slots[slot_no];
    static const uint8_t types[KV_LOAD_OPS] = {KV_MSG_SET, KV_MSG_GET, KV_MSG_RM};
    char key[64], value[KV_MAX_VALUE_CHARS];
    uint8_t frame[S_FRAME_MAX];
    kv_msg_t msg = {.type = types[slot->op], .epoch = kv_table_epoch(self->table)};
    msg.req_id = ((uint64_t)slot->gen << 24) | ((uint64_t)(node - self->nodes) << 16) | slot_no;
    msg.key.ptr = key;
    msg.key.len = kv_load_key(key, sizeof(key), self->config.seed, slot->key);
    msg.partition = kv_partition_of(key, msg.key.len, kv_table_partitions(self->table));
    if (slot->op == KV_LOAD_SET) {
        kv_load_value(value, (size_t)self->config.value_size, self->config.seed, slot->key);
        msg.value = (kv_bytes_t){value, (size_t)self->config.value_size};
        msg.ttl = (uint32_t)self->config.ttl;
    }
    size_t size = kv_msg_encode(&msg, frame, sizeof(frame));
    if (!size) return -1;
    return zmq_send(node->sock, frame, size, ZMQ_DONTWAIT) == (int)size ? 0 : -1;
}

/* Starts one request on node. Returns 0, or -1 when nothing can be sent. */
static int s_issue(s_zstress_t *self, s_node_t *node) {
    kv_load_op_t op = kv_mix_pick(&self->mix, &self->rng);
    int64_t key = -1;
    if (op != KV_LOAD_SET) key = kv_keyset_pick(node->live, &self->rng);
    if (key < 0) op = KV_LOAD_SET; /* nothing to read yet */
    if (op == KV_LOAD_SET) key = s_set_key(self, node);
    if (key < 0) {
        fprintf(stderr, "kv-zstress: no key in [0, %ld) belongs to node %s; raise --keys\n",
                self->config.keys, node->id);
        s_interrupted = 1;
        return -1;
    }
    uint32_t slot_no = node->free_slots[--node->free_count];
    s_slot_t *slot = &node->slots[slot_no];
    slot->op = (uint8_t)op;
    slot->key = (uint32_t)key;
    slot->gen = (slot->gen + 1) & 0xFFFFFF;
    slot->used = 1;
    slot->sent = s_now_ns();
    self->issued++;
    /* The node serves us in order: a read sent after this write sees it. */
    if (op == KV_LOAD_SET) kv_keyset_add(node->live, (uint32_t)key);
    if (op == KV_LOAD_RM) kv_keyset_remove(node->live, (uint32_t)key);
    if (s_send(self, node, slot_no) == 0) return 0;
    slot->used = 0;
    node->free_slots[node->free_count++] = slot_no;
    self->errors[Z_SEND]++;
    self->done++;
    return -1;
}

/* Fills node's window while the phase has requests left. */
static void s_fill(s_zstress_t *self, s_node_t *node) {
    while (node->free_count > 0 && self->issued < (uint64_t)self->config.requests)
        if (s_issue(self, node) != 0) return;
}

static void s_release(s_zstress_t *self, s_node_t *node, uint32_t slot_no) {
    node->slots[slot_no].used = 0;
    node->free_slots[node->free_count++] = slot_no;
    self->done++;
}

/* Judges one reply frame from node. */
static void s_on_reply(s_zstress_t *self, s_node_t *node, const uint8_t *data, size_t size) {
    kv_msg_t reply;
    if (kv_msg_decode(data, size, &reply) != 0 || reply.type != KV_MSG_REPLY) {
        self->errors[Z_BAD_REPLY]++; /* cannot tell which request: it will time out */
        return;
    }
    uint32_t slot_no = (uint32_t)(reply.req_id & 0xFFFF);
    uint32_t gen = (uint32_t)(reply.req_id >> 24) & 0xFFFFFF;
    if (slot_no >= (uint32_t)self->config.window || !node->slots[slot_no].used ||
        node->slots[slot_no].gen != gen) {
        self->late++; /* its request already timed out */
        return;
    }
    const s_slot_t *slot = &node->slots[slot_no];
    /* A primary between two leases says "not now", as a gateway would hear
     * it: sent again (the first send still times it out). */
    if (reply.status == KV_STATUS_NO_LEASE && s_send(self, node, slot_no) == 0) {
        self->lease_retries++;
        return;
    }
    kv_hist_record(node->latency, (uint64_t)(s_now_ns() - slot->sent));
    if (reply.status != KV_STATUS_OK) {
        self->statuses[reply.status <= KV_STATUS_MAX ? reply.status : KV_STATUS_BAD_REQUEST]++;
    } else if (slot->op == KV_LOAD_GET) {
        char value[KV_MAX_VALUE_CHARS];
        kv_load_value(value, (size_t)self->config.value_size, self->config.seed, slot->key);
        if (reply.value.len == (size_t)self->config.value_size &&
            (reply.value.len == 0 || memcmp(reply.value.ptr, value, reply.value.len) == 0))
            node->ok++;
        else
            self->errors[Z_BAD_VALUE]++;
    } else
        node->ok++;
    s_release(self, node, slot_no);
}

/* Reads every reply waiting on node's socket (up to S_DRAIN_MAX). */
static void s_drain(s_zstress_t *self, s_node_t *node) {
    for (int i = 0; i < S_DRAIN_MAX; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, node->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        s_on_reply(self, node, zmq_msg_data(&frame), zmq_msg_size(&frame));
        zmq_msg_close(&frame);
    }
}

static void s_check_timeouts(s_zstress_t *self, int64_t now) {
    int64_t limit = self->config.timeout_ms * 1000000LL;
    for (int i = 0; i < self->driven; i++) {
        s_node_t *node = &self->nodes[i];
        for (uint32_t s = 0; s < (uint32_t)self->config.window; s++) {
            if (!node->slots[s].used || now - node->slots[s].sent <= limit) continue;
            self->errors[Z_TIMEOUT]++;
            s_release(self, node, s);
        }
    }
}

/* --- phases and reporting ------------------------------------------------- */

static uint64_t s_error_total(const s_zstress_t *self) {
    uint64_t total = 0;
    for (int i = 0; i < Z_KINDS; i++) total += self->errors[i];
    for (int i = 0; i <= KV_STATUS_MAX; i++) total += self->statuses[i];
    return total;
}

static void s_progress(const s_zstress_t *self, int64_t started, int64_t now) {
    double seconds = (double)(now - started) / 1e9;
    fprintf(stderr, "\r\033[K[kv-zstress] %d node%s: left %llu  errors %llu  %.0f ops/s",
            self->driven, self->driven > 1 ? "s" : "",
            (unsigned long long)((uint64_t)self->config.requests - self->done),
            (unsigned long long)s_error_total(self),
            seconds > 0 ? (double)self->done / seconds : 0.0);
}

/* Waits for replies on the driven nodes and handles them. */
static void s_poll(s_zstress_t *self) {
    zmq_pollitem_t items[S_NODES_MAX];
    for (int i = 0; i < self->driven; i++)
        items[i] = (zmq_pollitem_t){self->nodes[i].sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(items, self->driven, 10);
    for (int i = 0; rc > 0 && i < self->driven; i++)
        if (items[i].revents & ZMQ_POLLIN) s_drain(self, &self->nodes[i]);
}

/* Runs one phase on the first driven nodes. Returns its elapsed ns. */
static int64_t s_phase(s_zstress_t *self, int driven) {
    self->driven = driven;
    self->issued = 0;
    self->done = 0;
    for (int i = 0; i < driven; i++) {
        self->nodes[i].ok = 0;
        kv_hist_reset(self->nodes[i].latency);
    }
    int tty = isatty(STDERR_FILENO);
    int64_t started = s_now_ns(), next_tick = started + S_TICK_NS;
    while (self->done < (uint64_t)self->config.requests && !s_interrupted) {
        for (int i = 0; i < driven; i++) s_fill(self, &self->nodes[i]);
        s_poll(self);
        int64_t now = s_now_ns();
        if (now < next_tick) continue;
        next_tick = now + S_TICK_NS;
        s_check_timeouts(self, now);
        if (tty) s_progress(self, started, now);
    }
    int64_t elapsed = s_now_ns() - started;
    if (tty) fprintf(stderr, "\r\033[K");
    /* Replies still due belong to this phase: wait for them (or time out). */
    while (self->done < self->issued && !s_interrupted) {
        s_poll(self);
        s_check_timeouts(self, s_now_ns());
    }
    return elapsed;
}

static double s_rate(uint64_t count, int64_t ns) {
    return ns > 0 ? (double)count * 1e9 / (double)ns : 0.0;
}

/* Prints one phase; returns its total ops/s. */
static double s_report_phase(const s_zstress_t *self, int64_t elapsed) {
    kv_hist_t *all = kv_hist_new();
    uint64_t ok = 0;
    for (int i = 0; i < self->driven; i++) {
        ok += self->nodes[i].ok;
        if (all) kv_hist_merge(all, self->nodes[i].latency);
    }
    double total = s_rate(ok, elapsed);
    printf("%d node%s: %llu ok in %.3f s = %.0f ops/s", self->driven, self->driven > 1 ? "s" : "",
           (unsigned long long)ok, (double)elapsed / 1e9, total);
    if (all)
        printf("  (latency p50 %.3f ms, p99 %.3f ms, max %.3f ms)",
               (double)kv_hist_percentile(all, 50) / 1e6, (double)kv_hist_percentile(all, 99) / 1e6,
               (double)kv_hist_max(all) / 1e6);
    printf("\n");
    for (int i = 0; i < self->driven; i++) {
        const s_node_t *node = &self->nodes[i];
        printf("    %-12s %-28s %10.0f ops/s  p50 %.3f ms  p99 %.3f ms\n", node->id, node->endpoint,
               s_rate(node->ok, elapsed), (double)kv_hist_percentile(node->latency, 50) / 1e6,
               (double)kv_hist_percentile(node->latency, 99) / 1e6);
    }
    kv_hist_destroy(&all);
    fflush(stdout);
    return total;
}

static void s_report_errors(const s_zstress_t *self) {
    uint64_t errors = s_error_total(self);
    printf("errors: %llu", (unsigned long long)errors);
    if (self->late)
        printf(" (and %llu replies after their timeout)", (unsigned long long)self->late);
    if (self->lease_retries)
        printf(" (%llu sent again: NO_LEASE)", (unsigned long long)self->lease_retries);
    printf("\n");
    for (int i = 0; i < Z_KINDS; i++)
        if (self->errors[i])
            printf("    %-14s %llu\n", s_err_names[i], (unsigned long long)self->errors[i]);
    for (int i = 0; i <= KV_STATUS_MAX; i++)
        if (self->statuses[i])
            printf("    status %-7s %llu\n", kv_status_name(i),
                   (unsigned long long)self->statuses[i]);
}

/* --- main ----------------------------------------------------------------- */

static const char *s_summary =
    "kv-zstress: ZeroMQ load generator for the key-value store's nodes. Fetches\n"
    "the routing table from the coordinator, then sends GET/SET/RM frames to each\n"
    "key's primary with --window requests in flight per node, checks every reply\n"
    "and reports ops/s in total and per node. --scale 1 runs one phase per node\n"
    "count (1, 2, ... all) to show how throughput scales. --mix, --keys,\n"
    "--value-size, --seed and --preload work as in kv-stress (keys k<seed>-<n>).";

static int s_setup(s_zstress_t *self) {
    if (kv_mix_parse(self->config.mix, &self->mix) != 0) {
        fprintf(stderr, "kv-zstress: bad --mix '%s' (e.g. set=50,get=50)\n", self->config.mix);
        return -1;
    }
    self->rng = (uint64_t)self->config.seed * 0x2545F4914F6CDD1DULL + 1;
    self->ctx = zmq_ctx_new();
    if (!self->ctx) return -1;
    zmq_ctx_set(self->ctx, ZMQ_IO_THREADS, (int)self->config.io_threads);
    if (s_fetch_table(self) != 0 || s_open_nodes(self) != 0) return -1;
    return 0;
}

static void s_teardown(s_zstress_t *self) {
    for (int i = 0; i < self->node_count; i++) s_node_close(&self->nodes[i]);
    kv_table_destroy(&self->table);
    if (self->ctx) zmq_ctx_term(self->ctx);
}

/* Writes preload new keys over every node, unmeasured, so reads find data. */
static void s_preload(s_zstress_t *self) {
    kv_mix_t mix = self->mix;
    long requests = self->config.requests;
    kv_mix_parse("set=1", &self->mix);
    self->config.requests = self->config.preload;
    self->preloading = 1;
    int64_t elapsed = s_phase(self, self->node_count);
    self->preloading = 0;
    self->mix = mix;
    self->config.requests = requests;
    printf("preloaded %ld keys in %.3f s\n", self->config.preload, (double)elapsed / 1e9);
}

/* Runs the phases and prints the report. */
static void s_run(s_zstress_t *self) {
    int most = self->config.nodes > 0 && self->config.nodes < self->node_count
                   ? (int)self->config.nodes
                   : self->node_count;
    int first = self->config.scale ? 1 : most;
    double rates[S_NODES_MAX + 1] = {0};
    char mix[128];
    kv_mix_format(&self->mix, mix, sizeof(mix));
    printf("kv-zstress: table epoch %llu, %u partitions, %d active nodes; %ld requests per "
           "phase, window %ld per node, mix %s, %ld-byte values\n",
           (unsigned long long)kv_table_epoch(self->table), kv_table_partitions(self->table),
           self->node_count, self->config.requests, self->config.window, mix,
           self->config.value_size);
    if (self->config.preload > 0) s_preload(self);
    for (int n = first; n <= most && !s_interrupted; n++)
        rates[n] = s_report_phase(self, s_phase(self, n));
    if (self->config.scale && most > 1) {
        printf("scaling (ops/s):\n    nodes  total      per node  vs 1 node\n");
        for (int n = first; n <= most; n++)
            printf("    %-5d  %-9.0f  %-8.0f  %.2fx\n", n, rates[n], rates[n] / n,
                   rates[1] > 0 ? rates[n] / rates[1] : 0.0);
    }
    s_report_errors(self);
}

int main(int argc, char **argv) {
    static s_zstress_t self; /* static: the node array is large */
    self.config = (s_config_t){.coordinator = "tcp://127.0.0.1:5550",
                               .mix = "set=100",
                               .requests = 1000000,
                               .window = 256,
                               .value_size = 32,
                               .seed = 1,
                               .timeout_ms = 2000,
                               .io_threads = 1};
    s_config_t *c = &self.config;
    const kv_opt_t opts[] = {
        {"coordinator", "KV_COORDINATOR", KV_OPT_STRING, &c->coordinator, 0, 0,
         "coordinator ROUTER endpoint (routing table)"},
        {"requests", NULL, KV_OPT_LONG, &c->requests, 1, S_REQUESTS_MAX, "requests per phase"},
        {"window", NULL, KV_OPT_LONG, &c->window, 1, S_WINDOW_MAX, "requests in flight per node"},
        {"mix", NULL, KV_OPT_STRING, &c->mix, 0, 0, "operation weights, e.g. set=50,get=50,rm=0"},
        {"keys", NULL, KV_OPT_LONG, &c->keys, 0, S_REQUESTS_MAX,
         "key space for sets; 0: a new key per set"},
        {"value-size", NULL, KV_OPT_LONG, &c->value_size, 0, KV_MAX_VALUE_CHARS, "bytes per value"},
        {"seed", NULL, KV_OPT_LONG, &c->seed, 0, 1000000000,
         "names the keys (k<seed>-<n>) and seeds the mix"},
        {"nodes", NULL, KV_OPT_LONG, &c->nodes, 0, S_NODES_MAX,
         "load only the first N active nodes; 0: all"},
        {"scale", NULL, KV_OPT_LONG, &c->scale, 0, 1, "1: one phase per node count, 1..N"},
        {"timeout-ms", NULL, KV_OPT_LONG, &c->timeout_ms, 1, 600000,
         "a request unanswered this long fails"},
        {"io-threads", NULL, KV_OPT_LONG, &c->io_threads, 1, 16, "ZeroMQ I/O threads"},
        {"preload", NULL, KV_OPT_LONG, &c->preload, 0, S_REQUESTS_MAX,
         "first write this many new keys over all nodes (unmeasured)"},
        {"ttl", NULL, KV_OPT_LONG, &c->ttl, 0, KV_MAX_TTL_S,
         "every set gives its key this many seconds to live; 0: none"},
    };
    int parsed = kv_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, s_summary);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    if (s_setup(&self) != 0) {
        s_teardown(&self);
        return 1;
    }
    s_run(&self);
    int failed = s_error_total(&self) > 0 || s_interrupted;
    s_teardown(&self);
    return failed ? 1 : 0;
}
