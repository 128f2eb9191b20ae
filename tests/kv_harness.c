/*  kv_harness.c: see kv_harness.h. */
#include "kv_harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kv_hash.h"
#include "kv_limits.h"
#include "kv_msg.h"

long long kv_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int kv_wait_until(int (*cond)(void *arg), void *arg, int timeout_ms, int poll_ms) {
    long long deadline = kv_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg)) return 0;
        long long left = deadline - kv_now_ms();
        if (left <= 0) return -1;
        struct timespec pause = {0, (long)(poll_ms < left ? poll_ms : left) * 1000000L};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) continue; /* sleep the rest */
    }
}

typedef struct {
    int port;           /* gateway */
    const char *target; /* path and query */
    long status;        /* wanted */
} s_status_wait_t;

static int s_answers_status(void *arg) {
    s_status_wait_t *wait = arg;
    kv_reply_t reply;
    int match = kv_get(wait->port, wait->target, &reply) == 0 && reply.status == wait->status;
    kv_reply_free(&reply);
    return match;
}

int kv_wait_status(int port, const char *target, long status, int timeout_ms) {
    s_status_wait_t wait = {port, target, status};
    return kv_wait_until(s_answers_status, &wait, timeout_ms, 20);
}

/* Whether port can be bound on loopback now. */
static int s_port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    addr.sin_port = htons((uint16_t)port);
    int free_now = fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0) close(fd);
    return free_now;
}

/* Ports below the kernel's ephemeral range (32768 and up by default): a
 * port the kernel hands out for bind(0) is also one it may give to any
 * outgoing connection (a client's, a ZeroMQ peer's) before our process
 * binds it, which made a cluster fail to start now and then. Random in
 * [20000, 32000), skipping those in use and those this process already
 * handed out (a cluster asks for a dozen before any is bound). */
#define S_PORT_BASE 20000
#define S_PORT_SPAN 12000

int kv_free_port(void) {
    static unsigned next;
    static uint8_t given[S_PORT_SPAN / 8];
    static int given_count;
    if (!next) next = (unsigned)getpid() * 7919u + (unsigned)time(NULL);
    if (given_count > S_PORT_SPAN / 2) { /* long runs: forget the oldest */
        memset(given, 0, sizeof(given));
        given_count = 0;
    }
    for (int tries = 0; tries < 1000; tries++) {
        int slot = (int)((next = next * 1103515245u + 12345u) >> 8) % S_PORT_SPAN;
        if (given[slot / 8] & (1u << (slot % 8)) || !s_port_free(S_PORT_BASE + slot)) continue;
        given[slot / 8] |= (uint8_t)(1u << (slot % 8));
        given_count++;
        return S_PORT_BASE + slot;
    }
    return -1;
}

/* fork + exec rather than posix_spawn: the child asks to be killed when
 * the test process dies, so a failed assertion never leaves a cluster
 * running behind it. */
pid_t kv_spawn(const char *const *argv, const char *log) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* the parent died before prctl */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Waits up to ms for pid to exit. Returns 1 when it did (status in
 * *status when given). */
typedef struct {
    pid_t pid;   /* the child */
    int *status; /* where its exit status goes, or NULL */
} s_exit_wait_t;

static int s_exited(void *arg) {
    s_exit_wait_t *wait = arg;
    return waitpid(wait->pid, wait->status, WNOHANG) == wait->pid;
}

static int s_wait_exit(pid_t pid, int ms, int *status) {
    s_exit_wait_t wait = {pid, status};
    return kv_wait_until(s_exited, &wait, ms, 10) == 0;
}

/* Stops a process with SIGINT (for a node: at once, no drain). Returns 0
 * when it exited cleanly with status 0, -1 when it failed, crashed or had
 * to be killed. */
static int s_stop(pid_t *pid) {
    if (*pid <= 0) return 0;
    int status = 0, rc = 0;
    kill(*pid, SIGINT);
    if (!s_wait_exit(*pid, 5000, &status)) {
        kill(*pid, SIGKILL);
        s_wait_exit(*pid, 5000, NULL);
        rc = -1;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = -1;
    if (rc) fprintf(stderr, "process %d did not stop cleanly (status %d)\n", (int)*pid, status);
    *pid = 0;
    return rc;
}

/* Calls fn on every log file of the cluster; stops when fn returns 1. */
static int s_each_log(const kv_cluster_t *self, int (*fn)(const char *path, FILE *file)) {
    DIR *dir = opendir(self->dir);
    if (!dir) return 0;
    int found = 0;
    struct dirent *entry;
    /* readdir_r is deprecated (glibc); a DIR used by one thread is safe. */
    // cppcheck-suppress readdirCalled
    while (!found && (entry = readdir(dir)) != NULL) {
        if (!strstr(entry->d_name, ".log")) continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", self->dir, entry->d_name);
        FILE *file = fopen(path, "r");
        if (!file) continue;
        found = fn(path, file);
        fclose(file);
    }
    closedir(dir);
    return found;
}

static int s_print_log(const char *path, FILE *file) {
    fprintf(stderr, "==> %s <==\n", path);
    char line[1024];
    while (fgets(line, sizeof(line), file)) fputs(line, stderr);
    return 0;
}

static int s_has_sanitizer_report(const char *path, FILE *file) {
    char line[1024];
    while (fgets(line, sizeof(line), file))
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error")) return 1;
    return 0;
}

static void s_print_logs(const kv_cluster_t *self) {
    s_each_log(self, s_print_log);
}

static int s_remove_log(const char *path, FILE *file) {
    unlink(path);
    return 0;
}

static void s_remove_dir(const kv_cluster_t *self) {
    s_each_log(self, s_remove_log);
    rmdir(self->dir);
}

/* The path of one of this build's executables. */
static const char *s_binary(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", KV_BIN_DIR, name);
    return out;
}

/* argv = fixed flags, then the NULL-terminated extra list. */
static pid_t s_spawn_with(const char **argv, int argc, const char *const *extra, const char *log) {
    for (int i = 0; extra && extra[i] && argc < 62; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    return kv_spawn(argv, log);
}

static pid_t s_start_node(kv_cluster_t *self, kv_harness_node_t *node, int registered) {
    char bind[64], pub[64], coord[64], log[192], binary[512];
    snprintf(bind, sizeof(bind), "tcp://127.0.0.1:%d", node->port);
    snprintf(pub, sizeof(pub), "tcp://127.0.0.1:%d", node->pub_port);
    snprintf(coord, sizeof(coord), "tcp://127.0.0.1:%d", self->coord_port);
    snprintf(log, sizeof(log), "%s/%s.log", self->dir, node->id);
    const char *argv[64] = {s_binary("node/kv-node", binary, sizeof(binary)),
                            "--id",
                            node->id,
                            "--bind",
                            bind,
                            "--pub",
                            pub,
                            "--coordinator",
                            registered ? coord : "",
                            "--heartbeat-ms",
                            "100"};
    return s_spawn_with(argv, 11, self->options.node_args, log);
}

static pid_t s_start_coordinator(kv_cluster_t *self) {
    char bind[64], pub[64], min[16], replication[16], log[192], binary[512];
    snprintf(bind, sizeof(bind), "tcp://127.0.0.1:%d", self->coord_port);
    snprintf(pub, sizeof(pub), "tcp://127.0.0.1:%d", self->coord_pub_port);
    snprintf(min, sizeof(min), "%d", self->options.min_nodes);
    snprintf(replication, sizeof(replication), "%d", self->options.replication);
    snprintf(log, sizeof(log), "%s/coordinator.log", self->dir);
    const char *argv[64] = {s_binary("coordinator/kv-coordinator", binary, sizeof(binary)),
                            "--bind",
                            bind,
                            "--pub",
                            pub,
                            "--min-nodes",
                            min,
                            "--replication",
                            replication,
                            "--node-timeout-ms",
                            "1000"};
    return s_spawn_with(argv, 11, self->options.coordinator_args, log);
}

/* A gateway on port, its output to log_name in the cluster's directory. */
static pid_t s_start_gateway(kv_cluster_t *self, int http_port, const char *log_name) {
    char port[16], coord[64], pub[64], log[192], binary[512];
    snprintf(port, sizeof(port), "%d", http_port);
    snprintf(coord, sizeof(coord), "tcp://127.0.0.1:%d", self->coord_port);
    snprintf(pub, sizeof(pub), "tcp://127.0.0.1:%d", self->coord_pub_port);
    snprintf(log, sizeof(log), "%s/%s", self->dir, log_name);
    const char *argv[64] = {s_binary("gateway/kv-gateway", binary, sizeof(binary)),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            port,
                            "--coordinator",
                            coord,
                            "--coordinator-pub",
                            pub};
    return s_spawn_with(argv, 9, self->options.gateway_args, log);
}

static int s_wait_healthy(kv_cluster_t *self, int ms) {
    return kv_wait_status(self->http_port, "/healthcheck", 200, ms);
}

kv_cluster_t *kv_cluster_start_with(const kv_cluster_options_t *options) {
    if (options->nodes < 1 || options->nodes > KV_HARNESS_MAX_NODES) return NULL;
    kv_cluster_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->options = *options;
    if (self->options.replication < 1) self->options.replication = 1;
    if (self->options.min_nodes < 1) self->options.min_nodes = options->nodes;
    snprintf(self->dir, sizeof(self->dir), "/tmp/kvtest-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(self->dir)) {
        free(self);
        return NULL;
    }
    self->coord_port = kv_free_port();
    self->coord_pub_port = kv_free_port();
    self->http_port = kv_free_port();
    self->coordinator = s_start_coordinator(self);
    for (int i = 0; i < options->nodes; i++) kv_cluster_add_node(self, 1);
    self->gateway = s_start_gateway(self, self->http_port, "gateway.log");
    if (s_wait_healthy(self, 20000) != 0) {
        fprintf(stderr, "cluster of %d nodes did not become healthy\n", options->nodes);
        s_print_logs(self);
        kv_cluster_stop(&self);
        self = NULL;
    }
    return self;
}

kv_cluster_t *kv_cluster_start(int nodes, const char *const *extra_gateway_args) {
    kv_cluster_options_t options = {nodes, 1, nodes, extra_gateway_args, NULL, NULL};
    return kv_cluster_start_with(&options);
}

int kv_cluster_add_node(kv_cluster_t *self, int registered) {
    if (self->node_count >= KV_HARNESS_MAX_NODES) return -1;
    int index = self->node_count++;
    kv_harness_node_t *node = &self->nodes[index];
    snprintf(node->id, sizeof(node->id), "node-%d", index + 1);
    node->port = kv_free_port();
    node->pub_port = kv_free_port();
    node->pid = s_start_node(self, node, registered);
    return node->pid > 0 ? index : -1;
}

int kv_cluster_add_gateway(kv_cluster_t *self) {
    if (self->gateway_count >= KV_HARNESS_MAX_GATEWAYS) return -1;
    int index = self->gateway_count++, port = kv_free_port();
    char log_name[32];
    snprintf(log_name, sizeof(log_name), "gateway-%d.log", index + 2);
    self->gateway_ports[index] = port;
    self->gateways[index] = s_start_gateway(self, port, log_name);
    if (self->gateways[index] <= 0) return -1;
    return kv_wait_status(port, "/healthcheck", 200, 20000) == 0 ? port : -1;
}

/* SIGKILLs *pid and reaps it. */
static void s_kill(pid_t *pid) {
    if (*pid <= 0) return;
    kill(*pid, SIGKILL);
    s_wait_exit(*pid, 5000, NULL);
    *pid = 0;
}

void kv_cluster_kill_gateway(kv_cluster_t *self, int port) {
    if (port == self->http_port) s_kill(&self->gateway);
    for (int i = 0; i < self->gateway_count; i++)
        if (self->gateway_ports[i] == port) s_kill(&self->gateways[i]);
}

int kv_cluster_random_node(const kv_cluster_t *self, unsigned *seed) {
    int live[KV_HARNESS_MAX_NODES] = {0}, count = 0;
    for (int i = 0; i < self->node_count; i++)
        if (self->nodes[i].pid > 0) live[count++] = i;
    return count ? live[rand_r(seed) % (unsigned)count] : -1;
}

void kv_cluster_node_endpoint(const kv_cluster_t *self, int i, char *out, size_t cap) {
    snprintf(out, cap, "tcp://127.0.0.1:%d", self->nodes[i].port);
}

void kv_cluster_signal_coordinator(kv_cluster_t *self, int sig) {
    if (self->coordinator <= 0) return;
    kill(self->coordinator, sig);
    if (sig == SIGKILL || sig == SIGINT || sig == SIGTERM) {
        s_wait_exit(self->coordinator, 5000, NULL);
        self->coordinator = 0;
    }
}

void kv_cluster_restart_coordinator(kv_cluster_t *self) {
    if (self->coordinator > 0) kv_cluster_signal_coordinator(self, SIGKILL);
    self->coordinator = s_start_coordinator(self);
}

int kv_cluster_wait_node_exit(kv_cluster_t *self, int i, int ms) {
    kv_harness_node_t *node = &self->nodes[i];
    int status = -1;
    if (node->pid <= 0) return 0;
    if (!s_wait_exit(node->pid, ms, &status)) return 0;
    node->pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* True when /status shows a healthy table whose serving nodes' primaries
 * differ by at most one and where nothing is moving. */
static int s_balanced(json_t *status) {
    json_t *nodes = json_object_get(status, "nodes");
    json_int_t low = -1, high = -1;
    size_t i;
    json_t *node;
    json_array_foreach(nodes, i, node) {
        const char *state = json_string_value(json_object_get(node, "state"));
        if (!state || strcmp(state, "active") != 0) continue;
        json_int_t primaries = json_integer_value(json_object_get(node, "primaries"));
        if (low < 0 || primaries < low) low = primaries;
        if (primaries > high) high = primaries;
    }
    json_t *moving = json_object_get(status, "movingPartitions");
    return low >= 0 && high - low <= 1 && (!moving || json_integer_value(moving) == 0) &&
           json_is_true(json_object_get(status, "healthy"));
}

static int s_cluster_balanced(void *arg) {
    kv_cluster_t *self = arg;
    kv_reply_t reply;
    int ok = 0;
    if (kv_get(self->http_port, "/status", &reply) == 0 && reply.status == 200) {
        json_t *status = kv_reply_json(&reply);
        ok = status && s_balanced(status);
        json_decref(status);
    }
    kv_reply_free(&reply);
    return ok;
}

int kv_cluster_wait_balanced(kv_cluster_t *self, int ms) {
    return kv_wait_until(s_cluster_balanced, self, ms, 50);
}

/* True once the pid at arg is stopped (state T in /proc/PID/stat). */
static int s_is_stopped(void *arg) {
    pid_t pid = *(pid_t *)arg;
    char path[64], text[256] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    size_t got = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[got] = '\0';
    const char *close = strrchr(text, ')'); /* the name may hold spaces */
    return close && close[1] == ' ' && (close[2] == 'T' || close[2] == 't');
}

void kv_cluster_signal_node(kv_cluster_t *self, int i, int sig) {
    kv_harness_node_t *node = &self->nodes[i];
    if (node->pid <= 0) return;
    kill(node->pid, sig);
    /* kill() only queues SIGSTOP: wait until every thread really stopped,
     * or a request sent next may still be answered. */
    if (sig == SIGSTOP) kv_wait_until(s_is_stopped, &node->pid, 2000, 1);
    if (sig == SIGKILL || sig == SIGINT) {
        s_wait_exit(node->pid, 5000, NULL);
        node->pid = 0;
    }
}

/* --- the coordinator's table ------------------------------------------------ */

int kv_probe_open(kv_probe_t *probe, const kv_cluster_t *cluster) {
    char endpoint[64];
    int linger = 0;
    probe->ctx = zmq_ctx_new();
    probe->dealer = probe->ctx ? zmq_socket(probe->ctx, ZMQ_DEALER) : NULL;
    snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", cluster->coord_port);
    if (probe->dealer && zmq_setsockopt(probe->dealer, ZMQ_LINGER, &linger, sizeof(linger)) == 0 &&
        zmq_connect(probe->dealer, endpoint) == 0)
        return 0;
    kv_probe_close(probe);
    return -1;
}

void kv_probe_close(kv_probe_t *probe) {
    if (probe->dealer) zmq_close(probe->dealer);
    if (probe->ctx) zmq_ctx_term(probe->ctx);
    probe->dealer = probe->ctx = NULL;
}

kv_table_t *kv_probe_table(kv_probe_t *probe, int wait_ms) {
    uint8_t buf[32];
    kv_msg_t req = {.type = KV_MSG_TABLE_REQ};
    size_t size = kv_msg_encode(&req, buf, sizeof(buf));
    zmq_send(probe->dealer, buf, size, ZMQ_DONTWAIT);
    kv_table_t *best = NULL;
    long long deadline = kv_now_ms() + wait_ms;
    for (;;) {
        long long left = deadline - kv_now_ms();
        zmq_pollitem_t item = {probe->dealer, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, best || left < 0 ? 0 : (long)left) <= 0) break;
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        kv_msg_t msg;
        if (zmq_msg_recv(&frame, probe->dealer, ZMQ_DONTWAIT) >= 0 &&
            kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0 &&
            msg.type == KV_MSG_TABLE) {
            kv_table_t *table = kv_table_decode((const uint8_t *)msg.table.ptr, msg.table.len);
            if (table && (!best || kv_table_epoch(table) > kv_table_epoch(best))) {
                kv_table_destroy(&best);
                best = table;
            } else
                kv_table_destroy(&table);
        }
        zmq_msg_close(&frame);
    }
    return best;
}

int kv_cluster_fully_replicated(const kv_table_t *table) {
    for (uint32_t p = 0; p < kv_table_partitions(table); p++) {
        if (kv_table_learner(table, p) != KV_NO_NODE || kv_table_flags(table, p)) return 0;
        for (uint32_t slot = 0; slot < kv_table_replication(table); slot++) {
            uint16_t owner = kv_table_owner(table, p, slot);
            if (kv_table_node_state(table, owner) != KV_NODE_ACTIVE) return 0; /* or unset */
        }
    }
    return 1;
}

/* --- counters (STATS over ZeroMQ) ------------------------------------------- */

#define S_STATS_WAIT_MS 2000 /* a process that answers at all answers in far less */

/* The counter name of a STATS_REPLY into *value. Returns 0, or -1. */
static int s_reply_counter(const kv_msg_t *reply, const char *name, uint64_t *value) {
    size_t pos = 0, len = strlen(name);
    kv_msg_counter_t counter;
    while (kv_msg_counter_next(reply, &pos, &counter) == 0)
        if (counter.name.len == len && memcmp(counter.name.ptr, name, len) == 0) {
            *value = counter.value;
            return 0;
        }
    return -1;
}

/* Sends STATS on dealer and reads the counter from the STATS_REPLY that
 * echoes its req_id. Returns 0, or -1 (no answer in time, no counter). */
static int s_ask_counter(void *dealer, const char *name, uint64_t *value) {
    static _Atomic uint64_t req_ids;
    uint8_t buf[32];
    kv_msg_t req = {.type = KV_MSG_STATS, .req_id = ++req_ids};
    size_t size = kv_msg_encode(&req, buf, sizeof(buf));
    if (!size || zmq_send(dealer, buf, size, 0) < 0) return -1;
    long long deadline = kv_now_ms() + S_STATS_WAIT_MS;
    for (;;) {
        long long left = deadline - kv_now_ms();
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        if (left <= 0) return -1;
        int ready = zmq_poll(&item, 1, (long)left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return -1;
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        kv_msg_t reply;
        int rc = 1; /* not our reply: read on */
        if (zmq_msg_recv(&frame, dealer, ZMQ_DONTWAIT) >= 0 &&
            kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &reply) == 0 &&
            reply.type == KV_MSG_STATS_REPLY && reply.req_id == req.req_id)
            rc = s_reply_counter(&reply, name, value); /* before the frame goes */
        zmq_msg_close(&frame);
        if (rc <= 0) return rc;
    }
}

/* kv_cluster_*_counter against the request port of a process on loopback;
 * a private context and socket per call: tests ask rarely. */
static int s_counter_at(int port, const char *name, uint64_t *value) {
    char endpoint[64];
    int linger = 0, rc = -1;
    snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", port);
    void *ctx = zmq_ctx_new();
    void *dealer = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    if (dealer && zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger)) == 0 &&
        zmq_connect(dealer, endpoint) == 0)
        rc = s_ask_counter(dealer, name, value);
    if (dealer) zmq_close(dealer);
    if (ctx) zmq_ctx_term(ctx);
    return rc;
}

int kv_cluster_coordinator_counter(kv_cluster_t *self, const char *name, uint64_t *value) {
    return self->coordinator > 0 ? s_counter_at(self->coord_port, name, value) : -1;
}

int kv_cluster_node_counter(kv_cluster_t *self, int i, const char *name, uint64_t *value) {
    if (i < 0 || i >= self->node_count || self->nodes[i].pid <= 0) return -1;
    return s_counter_at(self->nodes[i].port, name, value);
}

void kv_keys_apart(const char *prefix, char a[32], char b[32]) {
    snprintf(a, 32, "%s-a", prefix);
    for (int i = 0;; i++) {
        snprintf(b, 32, "%s-b%d", prefix, i);
        if (kv_partition_of(a, strlen(a), KV_PARTITIONS_DEFAULT) !=
            kv_partition_of(b, strlen(b), KV_PARTITIONS_DEFAULT))
            return;
    }
}

uint64_t kv_cluster_nodes_counter(kv_cluster_t *self, const char *name) {
    uint64_t sum = 0;
    for (int i = 0; i < self->node_count; i++) {
        uint64_t value = 0;
        if (kv_cluster_node_counter(self, i, name, &value) == 0) sum += value;
    }
    return sum;
}

int kv_cluster_stop(kv_cluster_t **self_p) {
    if (!self_p || !*self_p) return 0;
    kv_cluster_t *self = *self_p;
    int problems = s_stop(&self->gateway) != 0;
    for (int i = 0; i < self->gateway_count; i++) problems += s_stop(&self->gateways[i]) != 0;
    for (int i = 0; i < self->node_count; i++) {
        if (self->nodes[i].pid > 0) kill(self->nodes[i].pid, SIGCONT); /* a frozen one too */
        problems += s_stop(&self->nodes[i].pid) != 0;
    }
    problems += s_stop(&self->coordinator) != 0;
    problems += s_each_log(self, s_has_sanitizer_report);
    if (problems) {
        fprintf(stderr, "cluster in %s stopped with %d problem(s)\n", self->dir, problems);
        s_print_logs(self);
    } else if (!getenv("KV_KEEP_LOGS"))
        s_remove_dir(self);
    free(self);
    *self_p = NULL;
    return problems;
}

/* --- HTTP ------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
} s_buffer_t;

static size_t s_on_body(char *data, size_t size, size_t count, void *arg) {
    s_buffer_t *buffer = arg;
    size_t bytes = size * count;
    char *grown = realloc(buffer->data, buffer->len + bytes + 1);
    if (!grown) return 0;
    memcpy(grown + buffer->len, data, bytes);
    buffer->data = grown;
    buffer->len += bytes;
    grown[buffer->len] = '\0';
    return bytes;
}

static void s_copy_header(const char *line, size_t len, const char *name, char *out, size_t cap) {
    size_t name_len = strlen(name);
    if (len <= name_len || strncasecmp(line, name, name_len) != 0) return;
    const char *value = line + name_len;
    size_t vlen = len - name_len;
    while (vlen && (*value == ' ')) value++, vlen--;
    while (vlen && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n')) vlen--;
    if (vlen >= cap) vlen = cap - 1;
    memcpy(out, value, vlen);
    out[vlen] = '\0';
}

static size_t s_on_header(char *data, size_t size, size_t count, void *arg) {
    kv_reply_t *reply = arg;
    size_t bytes = size * count;
    s_copy_header(data, bytes, "Content-Type:", reply->content_type, sizeof(reply->content_type));
    s_copy_header(data, bytes, "X-Next-Cursor:", reply->next_cursor, sizeof(reply->next_cursor));
    s_copy_header(data, bytes, "Allow:", reply->allow, sizeof(reply->allow));
    s_copy_header(data, bytes, "X-Version:", reply->version, sizeof(reply->version));
    return bytes;
}

/* One curl handle per thread, reused (keep-alive, like a real client) and
 * cleaned up when the thread exits. */
static pthread_key_t s_curl_key;
static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

static void s_curl_free(void *curl) {
    curl_easy_cleanup(curl);
}

static void s_curl_key_create(void) {
    pthread_key_create(&s_curl_key, s_curl_free);
}

static CURL *s_curl(void) {
    pthread_once(&s_curl_once, s_curl_key_create);
    CURL *curl = pthread_getspecific(s_curl_key);
    if (!curl && (curl = curl_easy_init()) != NULL) pthread_setspecific(s_curl_key, curl);
    return curl;
}

int kv_request(int port, const char *method, const char *target, kv_reply_t *reply) {
    return kv_request_at("127.0.0.1", port, method, target, reply);
}

int kv_request_at(const char *host, int port, const char *method, const char *target,
                  kv_reply_t *reply) {
    memset(reply, 0, sizeof(*reply));
    CURL *curl = s_curl();
    if (!curl) return -1;
    curl_easy_reset(curl);
    char url[16384];
    snprintf(url, sizeof(url), "http://%s:%d%s", host, port, target);
    s_buffer_t body = {NULL, 0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    if (method) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (method && strcmp(method, "HEAD") == 0) curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    reply->body = body.data ? body.data : strdup("");
    reply->len = body.len;
    return rc == CURLE_OK ? 0 : -1;
}

int kv_get(int port, const char *target, kv_reply_t *reply) {
    return kv_request(port, NULL, target, reply);
}

char *kv_urlencode(const char *text, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t pos = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[pos++] = (char)c;
            continue;
        }
        out[pos++] = '%';
        out[pos++] = hex[c >> 4];
        out[pos++] = hex[c & 15];
    }
    out[pos] = '\0';
    return out;
}

json_t *kv_reply_json(const kv_reply_t *reply) {
    if (!reply->body) return NULL;
    return json_loadb(reply->body, reply->len, JSON_DECODE_ANY, NULL);
}

void kv_reply_free(kv_reply_t *reply) {
    free(reply->body);
    reply->body = NULL;
}
