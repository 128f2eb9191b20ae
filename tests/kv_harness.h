/*  kv_harness.h: real clusters for integration tests.
 *
 *  kv_cluster_start spawns kv-coordinator, N kv-node and one kv-gateway
 *  (the executables of this build) on free loopback ports, waits until
 *  /healthcheck answers 200 (a check, not a sleep) and returns a handle;
 *  more gateways can be added (kv_cluster_add_gateway). kv_cluster_stop
 *  sends SIGINT, waits, and SIGKILLs what is left. Process
 *  output goes to log files in a per-cluster directory under /tmp, printed
 *  on failure to help a reader.
 *
 *  kv_get is a small libcurl client returning status, body, headers.
 */
#ifndef KV_HARNESS_H
#define KV_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv_table.h"

#define KV_HARNESS_MAX_NODES 64
#define KV_HARNESS_MAX_GATEWAYS 4 /* added ones, beside the cluster's own */

typedef struct {
    char id[32];  /* node id */
    pid_t pid;    /* 0 when not running */
    int port;     /* request port */
    int pub_port; /* replication port */
} kv_harness_node_t;

/* How to start a cluster; zeroes are defaults. Argument lists are
 * NULL-terminated and must outlive the cluster (restarts reuse them). */
typedef struct {
    int nodes;                           /* nodes started with the cluster */
    int replication;                     /* R (default 1) */
    int min_nodes;                       /* coordinator --min-nodes (default nodes) */
    const char *const *gateway_args;     /* extra gateway flags */
    const char *const *node_args;        /* extra flags for every node */
    const char *const *coordinator_args; /* extra coordinator flags */
} kv_cluster_options_t;

typedef struct {
    char dir[128];                                 /* log directory */
    kv_cluster_options_t options;                  /* as started */
    pid_t coordinator;                             /* pid */
    int coord_port, coord_pub_port;                /* coordinator ports */
    pid_t gateway;                                 /* pid */
    int http_port;                                 /* gateway port */
    int gateway_count;                             /* gateways added */
    pid_t gateways[KV_HARNESS_MAX_GATEWAYS];       /* their pids, 0 once stopped */
    int gateway_ports[KV_HARNESS_MAX_GATEWAYS];    /* their ports */
    int node_count;                                /* nodes started */
    kv_harness_node_t nodes[KV_HARNESS_MAX_NODES]; /* the nodes */
} kv_cluster_t;

/* Starts a cluster of nodes nodes; extra_gateway_args (may be NULL) is a
 * NULL-terminated list of extra flags for the gateway. Returns NULL when it
 * did not become healthy within 20 s (logs printed). */
kv_cluster_t *kv_cluster_start(int nodes, const char *const *extra_gateway_args);

/* Starts a cluster as options say; NULL when it did not become healthy. */
kv_cluster_t *kv_cluster_start_with(const kv_cluster_options_t *options);

/* Starts one more node and returns its index: registered with the
 * coordinator when registered is set, else waiting for /join at its
 * endpoint (kv_cluster_node_endpoint). -1 on failure. */
int kv_cluster_add_node(kv_cluster_t *self, int registered);

/* Starts one more gateway, on its own free port, connected to the same
 * coordinator, with the cluster's gateway flags; its output goes to
 * gateway-N.log. Waits until its /healthcheck answers 200 (20 s at most).
 * Returns its HTTP port, or -1. kv_cluster_stop stops it too. */
int kv_cluster_add_gateway(kv_cluster_t *self);

/* SIGKILLs the gateway listening on port (the cluster's own or an added
 * one) and reaps it; kv_cluster_stop then leaves it alone. */
void kv_cluster_kill_gateway(kv_cluster_t *self, int port);

/* A random running node's index, chosen with rand_r(seed); -1 when none. */
int kv_cluster_random_node(const kv_cluster_t *self, unsigned *seed);

/* The request endpoint of node i ("tcp://127.0.0.1:PORT"), into out. */
void kv_cluster_node_endpoint(const kv_cluster_t *self, int i, char *out, size_t cap);

/* Sends sig to the coordinator; SIGKILL, SIGINT, SIGTERM wait for the exit. */
void kv_cluster_signal_coordinator(kv_cluster_t *self, int sig);

/* Starts the coordinator again on the same ports (killing it if running). */
void kv_cluster_restart_coordinator(kv_cluster_t *self);

/* Waits up to ms for node i to exit by itself (after a drain). Returns 1
 * when it exited with status 0. */
int kv_cluster_wait_node_exit(kv_cluster_t *self, int i, int ms);

/* Polls /status until the table is healthy and primaries per serving node
 * differ by at most one, or ms pass. Returns 0 when balanced. */
int kv_cluster_wait_balanced(kv_cluster_t *self, int ms);

/* Stops every process with SIGINT (nodes do not drain) and frees the cluster; sets *self_p to
 * NULL. Returns the number of problems: a process that did not exit 0 on
 * SIGINT, or any sanitizer report in the logs (then the logs are printed;
 * else they are removed unless KV_KEEP_LOGS is set). */
int kv_cluster_stop(kv_cluster_t **self_p);

/* Sends sig to node index i (and reaps it on SIGKILL/SIGINT; SIGTERM
 * drains first, see kv_cluster_wait_node_exit). */
void kv_cluster_signal_node(kv_cluster_t *self, int i, int sig);

/* The counter name of the coordinator's registry, into *value: asks it
 * with STATS on a DEALER connected to its request port and reads the
 * STATS_REPLY (waiting up to 2 s). Returns 0, or -1 when it did not answer
 * or has no such counter (e.g. "kv_coord_messages_heartbeat_total"). */
int kv_cluster_coordinator_counter(kv_cluster_t *self, const char *name, uint64_t *value);

/* The same against node i's request port ("kv_node_messages_set_total");
 * -1 also for a node that is not running. */
int kv_cluster_node_counter(kv_cluster_t *self, int i, const char *name, uint64_t *value);

/* Two keys, prefix-a and prefix-bN, on different partitions (of the
 * default partition count): a transaction that needs two partitions. */
void kv_keys_apart(const char *prefix, char a[32], char b[32]);

/* The sum of a counter over the running nodes that answer. */
uint64_t kv_cluster_nodes_counter(kv_cluster_t *self, const char *name);

/* --- the coordinator's table ---------------------------------------------- */

/* A DEALER to the coordinator, asking for its table like a gateway does. */
typedef struct {
    void *ctx;    /* private ZeroMQ context */
    void *dealer; /* connected to the coordinator's ROUTER (reconnects by itself) */
} kv_probe_t;

/* Connects probe to the cluster's coordinator. Returns 0, or -1. */
int kv_probe_open(kv_probe_t *probe, const kv_cluster_t *cluster);

void kv_probe_close(kv_probe_t *probe);

/* The coordinator's current table (the newest of the answers that came
 * within wait_ms; late answers to earlier requests are drained too), or
 * NULL when it did not answer. Free it with kv_table_destroy. */
kv_table_t *kv_probe_table(kv_probe_t *probe, int wait_ms);

/* 1 when every partition of table has R owners, all ACTIVE, and nothing
 * is moving: every partition has a live primary and a full set of copies. */
int kv_cluster_fully_replicated(const kv_table_t *table);

/* Starts a process with argv, output to log (appended). Returns the pid. */
pid_t kv_spawn(const char *const *argv, const char *log);

/* A free TCP port on 127.0.0.1. */
int kv_free_port(void);

typedef struct {
    long status;            /* HTTP status, 0 when the request failed */
    char *body;             /* NUL-terminated body */
    size_t len;             /* body bytes */
    char content_type[64];  /* Content-Type header */
    char next_cursor[1024]; /* X-Next-Cursor header, "" when absent */
    char allow[64];         /* Allow header, "" when absent */
    char version[32];       /* X-Version header, "" when absent */
} kv_reply_t;

/* GET http://127.0.0.1:port + target (path and query, sent as is) with
 * method (NULL for GET). Returns 0 when a response arrived. */
int kv_request(int port, const char *method, const char *target, kv_reply_t *reply);

/* kv_request to host (an IPv4 address) rather than 127.0.0.1: the
 * partition tests reach gateways inside network namespaces. */
int kv_request_at(const char *host, int port, const char *method, const char *target,
                  kv_reply_t *reply);

/* Shorthand for a GET; the reply must be released with kv_reply_free. */
int kv_get(int port, const char *target, kv_reply_t *reply);

/* Percent-encodes text (len bytes) into a new string (malloc). */
char *kv_urlencode(const char *text, size_t len);

/* The body parsed as JSON (any value), or NULL. */
json_t *kv_reply_json(const kv_reply_t *reply);

void kv_reply_free(kv_reply_t *reply);

/* Milliseconds of a monotonic clock. */
long long kv_now_ms(void);

/* Calls cond(arg) every poll_ms until it returns non-zero or timeout_ms
 * pass (cond is asked once more at the deadline). Returns 0 when the
 * condition held, -1 on timeout. Tests wait for what they need to be true,
 * never for a fixed time: a slow machine then costs time, not a failure. */
int kv_wait_until(int (*cond)(void *arg), void *arg, int timeout_ms, int poll_ms);

/* kv_wait_until on "GET target answers status" (any body). */
int kv_wait_status(int port, const char *target, long status, int timeout_ms);

#endif
