/*  it_partition.c: issue 12's scenarios, linearizability under network
 *  partitions, kills and freezes.
 *
 *  Every process runs in its own network namespace (kv_netns): host 0 the
 *  coordinator, 1-3 the nodes (R = 2), 4-5 two gateways; they talk over
 *  TCP on 10.200.S.x. Eight client threads (kv_history), half through each
 *  gateway, loop over sets, gets and removes of eight keys, with unique
 *  values, recording every operation. Each scenario cuts links (kv_netns),
 *  freezes or kills processes on a schedule, heals everything, waits for
 *  the cluster to be healthy with every partition at R copies, lets the
 *  clients go on to the end, then reads every key once more (recorded too:
 *  a lost acknowledged write makes the history non-linearizable), and
 *  hands the history to kv-lincheck (porcupine).
 *
 *  "The primary" is node-1; the keys are chosen so that node-1 is the
 *  primary of four of them (the coordinator's table tells), the other
 *  four spread over node-2 and node-3.
 *
 *  Printed per scenario: ok / failed / unknown operations, the checker's
 *  verdict per key, keys whose final value no acknowledged history
 *  explains (acknowledged writes lost), and the time to healthy after the
 *  last heal. Each scenario runs KV_PARTITION_SECONDS (default 60).
 *  KV_PARTITION_{NODE,COORDINATOR,GATEWAY}_ARGS add flags (space
 *  separated) to every process of that kind: the lease switch for the
 *  check that the checker catches a fault, say. KV_PARTITION_KEEP keeps
 *  the directory with logs and history. Needs root; only built into ctest
 *  with -DKV_PARTITION_TESTS=ON (make partition-test).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "kv_harness.h"
#include "kv_hash.h"
#include "kv_history.h"
#include "kv_msg.h"
#include "kv_netns.h"
#include "kv_table.h"

#define S_HOSTS 6
#define S_COORD 0
#define S_N1 1 /* the primary of the scenarios */
#define S_N2 2
#define S_N3 3
#define S_G1 4
#define S_G2 5
#define S_CLIENTS 8
#define S_KEYS 8
#define S_REPLICATION "2"
#define S_NODE_TIMEOUT_MS 1000L
#define S_CLIENT_TIMEOUT_MS 5000 /* beyond the gateway's 2 s: its 504 comes first */
#define S_HEALTHY_MS 5000        /* the bound after the last heal */
#define S_FINAL_CLIENT 100       /* client id of the final reads */

#define S_COORD_PORT 7550
#define S_COORD_PUB_PORT 7551
#define S_NODE_PORT 7601
#define S_NODE_PUB_PORT 7602
#define S_HTTP_PORT 7080

/* Client threads leak nothing of their own, but libcurl's and
 * ZeroMQ's process-wide state is freed at exit only. */

typedef struct s_run_t s_run_t;

typedef struct {
    s_run_t *run; /* shared */
    int id;       /* client id */
    pthread_t thread;
} s_client_t;

struct s_run_t {
    const char *name;      /* scenario */
    kv_netns_t *net;       /* the hosts */
    char dir[256];         /* logs, history, visualization */
    pid_t pids[S_HOSTS];   /* per host, 0 when not running */
    char keys[S_KEYS][32]; /* the keys */
    kv_history_t *history; /* every operation */
    s_client_t clients[S_CLIENTS];
    atomic_int stop;        /* clients stop */
    long long start_ms;     /* clients started */
    long long last_heal_ms; /* last heal (or thaw, or restart) */
    long long healthy_ms;   /* time to healthy after it, -1 when never */
    int problems;           /* setup or teardown failures */
    int g2_reads_only;      /* clients of gateway 2 only read */
};

static void s_sleep_ms(long long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) continue;
}

static long s_seconds(void) {
    const char *text = getenv("KV_PARTITION_SECONDS");
    long seconds = text ? strtol(text, NULL, 10) : 60;
    return seconds >= 5 ? seconds : 5;
}

/* --- processes ---------------------------------------------------------- */

/* Appends the space-separated words of the environment variable name to
 * argv (argc in/out); the words live in a static buffer per variable. */
static void s_extra_args(const char *name, const char **argv, int *argc, char *store, size_t cap) {
    const char *text = getenv(name);
    if (!text) return;
    snprintf(store, cap, "%s", text);
    char *save = NULL;
    for (char *word = strtok_r(store, " ", &save); word && *argc < 62;
         word = strtok_r(NULL, " ", &save))
        argv[(*argc)++] = word;
}

static const char *s_role(int host) {
    static const char *const roles[S_HOSTS] = {"coordinator", "node-1",    "node-2",
                                               "node-3",      "gateway-1", "gateway-2"};
    return roles[host];
}

/* Starts the process of host (again, after a kill: same id and ports, a
 * new incarnation). */
static void s_start(s_run_t *run, int host) {
    static char coord_extra[512], node_extra[512], gateway_extra[512];
    char binary[512], bind[64], pub[64], coord[64], coord_pub[64], port[16], log[320];
    const char *me = kv_netns_address(run->net, host);
    const char *coordinator = kv_netns_address(run->net, S_COORD);
    snprintf(coord, sizeof(coord), "tcp://%s:%d", coordinator, S_COORD_PORT);
    snprintf(coord_pub, sizeof(coord_pub), "tcp://%s:%d", coordinator, S_COORD_PUB_PORT);
    snprintf(log, sizeof(log), "%s/%s.log", run->dir, s_role(host));
    const char *argv[64];
    int argc = 0;
    if (host == S_COORD) {
        snprintf(binary, sizeof(binary), "%s/coordinator/kv-coordinator", KV_BIN_DIR);
        const char *args[] = {
            binary,        "--bind", coord,           "--pub",       coord_pub,
            "--min-nodes", "3",      "--replication", S_REPLICATION, "--node-timeout-ms",
            "1000"};
        for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) argv[argc++] = args[i];
        s_extra_args("KV_PARTITION_COORDINATOR_ARGS", argv, &argc, coord_extra,
                     sizeof(coord_extra));
    } else if (host <= S_N3) {
        snprintf(binary, sizeof(binary), "%s/node/kv-node", KV_BIN_DIR);
        snprintf(bind, sizeof(bind), "tcp://%s:%d", me, S_NODE_PORT);
        snprintf(pub, sizeof(pub), "tcp://%s:%d", me, S_NODE_PUB_PORT);
        const char *args[] = {binary, "--id",           s_role(host), "--bind",
                              bind,   "--pub",          pub,          "--coordinator",
                              coord,  "--heartbeat-ms", "100"};
        for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) argv[argc++] = args[i];
        s_extra_args("KV_PARTITION_NODE_ARGS", argv, &argc, node_extra, sizeof(node_extra));
    } else {
        snprintf(binary, sizeof(binary), "%s/gateway/kv-gateway", KV_BIN_DIR);
        snprintf(port, sizeof(port), "%d", S_HTTP_PORT);
        const char *args[] = {binary,    "--host",        me,    "--port",
                              port,      "--coordinator", coord, "--coordinator-pub",
                              coord_pub, "--threads",     "2"};
        for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) argv[argc++] = args[i];
        s_extra_args("KV_PARTITION_GATEWAY_ARGS", argv, &argc, gateway_extra,
                     sizeof(gateway_extra));
    }
    argv[argc] = NULL;
    run->pids[host] = kv_netns_spawn(run->net, host, argv, log);
    if (run->pids[host] <= 0) run->problems++;
}

static int s_wait_exit(pid_t pid, int ms) {
    for (int waited = 0; waited <= ms; waited += 10) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return 1;
        s_sleep_ms(10);
    }
    return 0;
}

/* Sends sig to host's process; SIGKILL reaps it; SIGSTOP waits until
 * every thread stopped (kill() only queues it). */
static void s_signal(s_run_t *run, int host, int sig) {
    pid_t pid = run->pids[host];
    if (pid <= 0) return;
    kill(pid, sig);
    if (sig == SIGKILL) {
        s_wait_exit(pid, 5000);
        run->pids[host] = 0;
    }
    if (sig == SIGSTOP) s_sleep_ms(20);
}

/* Stops every process: SIGCONT (a frozen one), SIGKILL, reaped. Nothing
 * of the cluster's shutdown is under test here. */
static void s_stop_all(s_run_t *run) {
    for (int host = 0; host < S_HOSTS; host++) {
        if (run->pids[host] <= 0) continue;
        kill(run->pids[host], SIGCONT);
        s_signal(run, host, SIGKILL);
    }
}

/* --- the coordinator's table -------------------------------------------- */

/* The coordinator's table, asked on its ROUTER like a gateway does; NULL
 * when it did not answer within wait_ms. */
static kv_table_t *s_table(const s_run_t *run, int wait_ms) {
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof(linger));
    char endpoint[64];
    snprintf(endpoint, sizeof(endpoint), "tcp://%s:%d", kv_netns_address(run->net, S_COORD),
             S_COORD_PORT);
    kv_table_t *table = NULL;
    uint8_t buf[32];
    kv_msg_t req = {.type = KV_MSG_TABLE_REQ};
    size_t size = kv_msg_encode(&req, buf, sizeof(buf));
    if (zmq_connect(dealer, endpoint) == 0 && zmq_send(dealer, buf, size, 0) == (int)size) {
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        kv_msg_t msg;
        if (zmq_poll(&item, 1, wait_ms) > 0 && zmq_msg_recv(&frame, dealer, 0) >= 0 &&
            kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0 &&
            msg.type == KV_MSG_TABLE)
            table = kv_table_decode((const uint8_t *)msg.table.ptr, msg.table.len);
        zmq_msg_close(&frame);
    }
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return table;
}

/* The id of the primary of key in table, or "" when none. */
static const char *s_primary_of(const kv_table_t *table, const char *key) {
    uint32_t partition = kv_partition_of(key, strlen(key), kv_table_partitions(table));
    uint16_t owner = kv_table_owner(table, partition, 0);
    const kv_table_node_t *node = kv_table_node(table, owner);
    return node ? node->id : "";
}

/* Picks the keys: four whose primary is node-1, two each of node-2 and
 * node-3 (as many as the first 10,000 candidates give). */
static int s_pick_keys(s_run_t *run) {
    kv_table_t *table = s_table(run, 2000);
    if (!table) return -1;
    static const char *const owners[S_KEYS] = {"node-1", "node-1", "node-1", "node-1",
                                               "node-2", "node-2", "node-3", "node-3"};
    int filled[S_KEYS] = {0};
    for (int n = 0; n < 10000; n++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%d", n);
        const char *primary = s_primary_of(table, key);
        for (int i = 0; i < S_KEYS; i++) {
            if (filled[i] || strcmp(owners[i], primary) != 0) continue;
            snprintf(run->keys[i], sizeof(run->keys[i]), "%s", key);
            filled[i] = 1;
            break;
        }
    }
    kv_table_destroy(&table);
    for (int i = 0; i < S_KEYS; i++)
        if (!filled[i]) return -1;
    return 0;
}

/* --- health ------------------------------------------------------------- */

static int s_gateway_healthy(const s_run_t *run, int host) {
    kv_reply_t reply;
    int ok = kv_request_at(kv_netns_address(run->net, host), S_HTTP_PORT, NULL, "/healthcheck",
                           &reply) == 0 &&
             reply.status == 200;
    kv_reply_free(&reply);
    return ok;
}

/* Both gateways healthy, /status healthy with nothing moving, and the
 * coordinator's table at R ACTIVE owners everywhere. */
static int s_healthy(const s_run_t *run) {
    if (!s_gateway_healthy(run, S_G1) || !s_gateway_healthy(run, S_G2)) return 0;
    kv_reply_t reply;
    int ok = 0;
    if (kv_request_at(kv_netns_address(run->net, S_G1), S_HTTP_PORT, NULL, "/status", &reply) ==
            0 &&
        reply.status == 200) {
        json_t *status = kv_reply_json(&reply);
        json_t *moving = json_object_get(status, "movingPartitions");
        ok = json_is_true(json_object_get(status, "healthy")) &&
             (!moving || json_integer_value(moving) == 0);
        json_decref(status);
    }
    kv_reply_free(&reply);
    if (!ok) return 0;
    kv_table_t *table = s_table(run, 1000);
    ok = table && kv_cluster_fully_replicated(table);
    kv_table_destroy(&table);
    return ok;
}

/* Polls s_healthy up to ms; returns the ms it took from since, or -1. */
static long long s_wait_healthy(const s_run_t *run, long long since, int ms) {
    long long deadline = kv_now_ms() + ms;
    while (kv_now_ms() < deadline) {
        if (s_healthy(run)) return kv_now_ms() - since;
        s_sleep_ms(50);
    }
    return -1;
}

/* --- clients ------------------------------------------------------------ */

static void *s_client_run(void *arg) {
    s_client_t *client = arg;
    s_run_t *run = client->run;
    char url[64];
    int gateway = client->id % 2 ? S_G2 : S_G1;
    snprintf(url, sizeof(url), "http://%s:%d", kv_netns_address(run->net, gateway), S_HTTP_PORT);
    kv_history_client_t *http =
        kv_history_client_new(run->history, client->id, url, S_CLIENT_TIMEOUT_MS);
    unsigned seed = (unsigned)client->id * 7919u + (unsigned)time(NULL);
    for (long n = 0; http && !atomic_load(&run->stop); n++) {
        const char *key = run->keys[rand_r(&seed) % S_KEYS];
        int dice = rand_r(&seed) % 10;
        char value[48];
        snprintf(value, sizeof(value), "c%d-%ld", client->id, n);
        kv_history_op_t op = dice < 4 ? KV_HISTORY_SET : dice < 9 ? KV_HISTORY_GET : KV_HISTORY_RM;
        if (gateway == S_G2 && run->g2_reads_only) op = KV_HISTORY_GET;
        kv_history_record_t record = kv_history_client_do(http, op, key, value);
        if (record.outcome != KV_HISTORY_OK) s_sleep_ms(20); /* no hot loop on refusals */
    }
    kv_history_client_destroy(&http);
    return NULL;
}

static void s_clients_start(s_run_t *run) {
    atomic_store(&run->stop, 0);
    run->start_ms = kv_now_ms();
    for (int i = 0; i < S_CLIENTS; i++) {
        run->clients[i] = (s_client_t){run, i, 0};
        pthread_create(&run->clients[i].thread, NULL, s_client_run, &run->clients[i]);
    }
}

static void s_clients_stop(s_run_t *run) {
    atomic_store(&run->stop, 1);
    for (int i = 0; i < S_CLIENTS; i++) pthread_join(run->clients[i].thread, NULL);
}

/* Reads every key once more through gateway 1 (retrying until an answer
 * is known), recorded with the others. */
static void s_final_reads(s_run_t *run) {
    char url[64];
    snprintf(url, sizeof(url), "http://%s:%d", kv_netns_address(run->net, S_G1), S_HTTP_PORT);
    kv_history_client_t *http =
        kv_history_client_new(run->history, S_FINAL_CLIENT, url, S_CLIENT_TIMEOUT_MS);
    for (int i = 0; http && i < S_KEYS; i++) {
        long long deadline = kv_now_ms() + 20000;
        while (kv_history_client_do(http, KV_HISTORY_GET, run->keys[i], NULL).outcome !=
                   KV_HISTORY_OK &&
               kv_now_ms() < deadline)
            s_sleep_ms(100);
    }
    kv_history_client_destroy(&http);
}

/* --- lost acknowledged writes ---------------------------------------------- */

/* A direct count besides the checker: the final read of a key must return
 * the effect of a write that nothing acknowledged came strictly after (or
 * of one whose outcome is unknown). */
typedef struct {
    const char *key;                       /* the key */
    const kv_history_record_t *final_read; /* its final read */
    long long last_acked_call;             /* latest call of an acknowledged write */
    int explained;                         /* some candidate write matches */
    int pass;                              /* 0: find the last call; 1: match */
} s_lost_t;

static int s_is_write(const kv_history_record_t *r) {
    return r->op != KV_HISTORY_GET && r->outcome != KV_HISTORY_FAIL;
}

static void s_lost_visit(const kv_history_record_t *r, void *arg) {
    s_lost_t *lost = arg;
    if (strcmp(r->key, lost->key) != 0 || !s_is_write(r)) return;
    if (r->client == S_FINAL_CLIENT) return;
    if (lost->pass == 0) {
        if (r->outcome == KV_HISTORY_OK && r->call_ns > lost->last_acked_call)
            lost->last_acked_call = r->call_ns;
        return;
    }
    int candidate = r->outcome == KV_HISTORY_UNKNOWN || r->return_ns >= lost->last_acked_call;
    const kv_history_record_t *f = lost->final_read;
    int matches = r->op == KV_HISTORY_SET ? f->found && strcmp(f->value, r->value) == 0 : !f->found;
    if (candidate && matches) lost->explained = 1;
}

static void s_find_final(const kv_history_record_t *r, void *arg) {
    s_lost_t *lost = arg;
    if (r->client == S_FINAL_CLIENT && r->outcome == KV_HISTORY_OK &&
        strcmp(r->key, lost->key) == 0)
        lost->final_read = r;
}

/* Keys whose final value no candidate write explains; -1 per key whose
 * final read never got an answer counts as lost too. */
static int s_lost_keys(s_run_t *run) {
    int lost_keys = 0;
    for (int i = 0; i < S_KEYS; i++) {
        s_lost_t lost = {.key = run->keys[i], .last_acked_call = -1};
        kv_history_each(run->history, s_find_final, &lost);
        if (!lost.final_read) {
            fprintf(stderr, "[%s] key %s: no final read answered\n", run->name, run->keys[i]);
            lost_keys++;
            continue;
        }
        kv_history_each(run->history, s_lost_visit, &lost);
        lost.pass = 1;
        kv_history_each(run->history, s_lost_visit, &lost);
        /* Nothing acknowledged or unknown: absent is the initial state. */
        if (lost.last_acked_call < 0 && !lost.final_read->found) lost.explained = 1;
        if (!lost.explained) {
            fprintf(stderr, "[%s] key %s: final value %s%s%s is not the last acknowledged write\n",
                    run->name, run->keys[i], lost.final_read->found ? "\"" : "(absent)",
                    lost.final_read->found ? lost.final_read->value : "",
                    lost.final_read->found ? "\"" : "");
            lost_keys++;
        }
    }
    return lost_keys;
}

/* Runs argv (argv[0] a path) and waits; its exit status, -1 when it could
 * not run or died of a signal. */
static int s_exec(const char *const *argv) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (pid < 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) continue;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* --- the checker ------------------------------------------------------------ */

/* Runs kv-lincheck on the history; its output goes to stdout. Returns its
 * exit code (0 linearizable, 1 not, 2 error). */
static int s_check(s_run_t *run) {
    char history[320], viz[320];
    snprintf(history, sizeof(history), "%s/history.jsonl", run->dir);
    snprintf(viz, sizeof(viz), "%s/viz", run->dir);
    if (kv_history_write(run->history, history) != 0) return 2;
    const char *argv[] = {KV_LINCHECK, "-viz", viz, history, NULL};
    int rc = s_exec(argv);
    return rc < 0 ? 2 : rc;
}

/* --- one scenario ------------------------------------------------------------ */

typedef void (*s_faults_fn)(s_run_t *run, long long fault_ms);

/* Heals every cut, thaws every process, restarts the dead ones; the time
 * of the last heal. */
static void s_heal_everything(s_run_t *run) {
    run->problems += kv_netns_heal_all(run->net);
    for (int host = 0; host < S_HOSTS; host++) {
        if (run->pids[host] > 0)
            kill(run->pids[host], SIGCONT);
        else
            s_start(run, host);
    }
    run->last_heal_ms = kv_now_ms();
}

static int s_setup(s_run_t *run) {
    snprintf(run->dir, sizeof(run->dir), "/tmp/kvpartition-%s-%d-XXXXXX", run->name, (int)getpid());
    if (!mkdtemp(run->dir)) return -1;
    chmod(run->dir, 0755);
    run->net = kv_netns_new(S_HOSTS);
    if (!run->net) return -1;
    run->history = kv_history_new();
    for (int host = 0; host < S_HOSTS; host++) s_start(run, host);
    if (s_wait_healthy(run, kv_now_ms(), 30000) < 0) {
        fprintf(stderr, "[%s] cluster did not become healthy\n", run->name);
        return -1;
    }
    return s_pick_keys(run);
}

static void s_teardown(s_run_t *run) {
    s_stop_all(run);
    kv_netns_destroy(&run->net);
    kv_history_destroy(&run->history);
    if (!getenv("KV_PARTITION_KEEP") && run->problems == 0) {
        const char *argv[] = {"/bin/rm", "-rf", run->dir, NULL};
        if (s_exec(argv) != 0) fprintf(stderr, "could not remove %s\n", run->dir);
    } else
        printf("[%s] logs and history kept in %s\n", run->name, run->dir);
}

/* What a scenario must show: the store's guarantees, or (leases off) that
 * the checker catches the fault the leases prevent. */
typedef enum { S_EXPECT_SAFE, S_EXPECT_CAUGHT } s_expect_t;

typedef struct {
    s_expect_t expect; /* what the run must show */
    int g2_reads_only; /* the workload: gateway 2's clients only read */
} s_options_t;

/* Runs a scenario: clients for the whole duration; faults(run, ms) from a
 * sixth of it for up to two thirds of it; then everything healed, the
 * time to healthy measured, the clients run to the end, final reads, the
 * check. Asserts only after the teardown, so nothing is left behind. */
static void s_scenario_with(const char *name, s_faults_fn faults, s_options_t options) {
    const char *why = kv_netns_unavailable();
    if (*why) cr_skip_test("network namespaces unavailable: %s", why);
    s_run_t run = {.name = name, .healthy_ms = -1, .g2_reads_only = options.g2_reads_only};
    long long total_ms = (long long)s_seconds() * 1000;
    int setup = s_setup(&run);
    int verdict = 2, lost = -1;
    size_t ok = 0, failed = 0, unknown = 0;
    if (setup == 0) {
        printf("[%s] keys:", name);
        for (int i = 0; i < S_KEYS; i++) printf(" %s", run.keys[i]);
        printf(" (the first four on node-1)\n");
        s_clients_start(&run);
        s_sleep_ms(total_ms / 6);
        faults(&run, total_ms * 2 / 3);
        s_heal_everything(&run);
        run.healthy_ms = s_wait_healthy(&run, run.last_heal_ms, 30000);
        long long left = run.start_ms + total_ms - kv_now_ms();
        if (left > 0) s_sleep_ms(left);
        s_clients_stop(&run);
        kv_history_counts(run.history, &ok, &failed, &unknown);
        s_final_reads(&run);
        lost = s_lost_keys(&run);
        printf("[%s] %zu ok, %zu failed, %zu unknown operations; checker:\n", name, ok, failed,
               unknown);
        verdict = s_check(&run);
        printf("[%s] verdict %s, keys with an acknowledged write lost: %d, healthy %lld ms "
               "after the last heal\n",
               name,
               verdict == 0   ? "linearizable"
               : verdict == 1 ? "NOT LINEARIZABLE"
                              : "error",
               lost, run.healthy_ms);
        fflush(stdout);
    }
    if (options.expect == S_EXPECT_CAUGHT) {
        s_teardown(&run);
        cr_assert_eq(setup, 0, "[%s] setup failed", name);
        cr_expect_eq(verdict, 1, "[%s] the checker did not catch the stale reads (%d)", name,
                     verdict);
        return;
    }
    run.problems += verdict != 0 || lost != 0 || run.healthy_ms < 0 ||
                    run.healthy_ms > S_HEALTHY_MS; /* keep the evidence */
    s_teardown(&run);
    cr_assert_eq(setup, 0, "[%s] setup failed", name);
    cr_expect_eq(verdict, 0, "[%s] history not linearizable (or check error %d)", name, verdict);
    cr_expect_eq(lost, 0, "[%s] %d keys lost an acknowledged write", name, lost);
    cr_expect(run.healthy_ms >= 0 && run.healthy_ms <= S_HEALTHY_MS,
              "[%s] healthy %lld ms after the last heal (bound %d)", name, run.healthy_ms,
              S_HEALTHY_MS);
    cr_expect(ok > 0, "[%s] no operation succeeded", name);
}

static void s_scenario(const char *name, s_faults_fn faults) {
    s_scenario_with(name, faults, (s_options_t){S_EXPECT_SAFE, 0});
}

/* --- the faults ------------------------------------------------------------- */

static void s_cut_from(s_run_t *run, int host, const int *others, int count) {
    for (int i = 0; i < count; i++) run->problems += kv_netns_cut_both(run->net, host, others[i]);
}

/* The primary cut off from the coordinator only, 5 s at a time (the
 * coordinator fails it over each time), with the second gateway cut off
 * from the coordinator too: that gateway keeps the old table and goes on
 * sending the primary's keys to the old primary, while the first gateway
 * writes them to the new one. Its clients only read: a write through it
 * would leave the old primary waiting for a confirmation that never comes,
 * and hold every later read of that partition there (the guard against
 * reading unconfirmed writes), which would hide what leases must prevent.
 * Without leases the old primary answers those reads from a store the
 * new primary has moved past. */
static void s_primary_from_coordinator(s_run_t *run, long long ms) {
    long long end = kv_now_ms() + ms;
    do {
        run->problems += kv_netns_cut_both(run->net, S_N1, S_COORD);
        run->problems += kv_netns_cut_both(run->net, S_G2, S_COORD);
        s_sleep_ms(5000);
        run->problems += kv_netns_heal_both(run->net, S_N1, S_COORD);
        run->problems += kv_netns_heal_both(run->net, S_G2, S_COORD);
        s_sleep_ms(3000);
    } while (kv_now_ms() + 5000 < end);
}

static void s_primary_from_coordinator_and_replicas(s_run_t *run, long long ms) {
    const int others[] = {S_COORD, S_N2, S_N3};
    s_cut_from(run, S_N1, others, 3);
    s_sleep_ms(ms);
}

/* The primary keeps one gateway, and that gateway keeps only the primary:
 * the two are a minority side ({node-1, gateway-1} | the rest). */
static void s_primary_with_one_gateway(s_run_t *run, long long ms) {
    const int from_primary[] = {S_COORD, S_N2, S_N3, S_G2};
    const int from_gateway[] = {S_COORD, S_N2, S_N3};
    s_cut_from(run, S_N1, from_primary, 4);
    s_cut_from(run, S_G1, from_gateway, 3);
    s_sleep_ms(ms);
}

static void s_coordinator_from_nodes(s_run_t *run, long long ms) {
    const int nodes[] = {S_N1, S_N2, S_N3};
    s_cut_from(run, S_COORD, nodes, 3);
    s_sleep_ms(ms > 3 * S_NODE_TIMEOUT_MS ? ms : 3 * S_NODE_TIMEOUT_MS);
}

/* Cut and healed every 500 ms for 30 s (or the fault window if shorter). */
static void s_flapping(s_run_t *run, long long ms) {
    long long end = kv_now_ms() + (ms < 30000 ? ms : 30000);
    for (int cut = 1; kv_now_ms() < end; cut = !cut) {
        run->problems += cut ? kv_netns_cut_both(run->net, S_N1, S_COORD)
                             : kv_netns_heal_both(run->net, S_N1, S_COORD);
        s_sleep_ms(500);
    }
}

/* The node hears the coordinator but cannot answer it. */
static void s_node_cannot_answer(s_run_t *run, long long ms) {
    run->problems += kv_netns_cut(run->net, S_N1, S_COORD);
    s_sleep_ms(ms);
}

/* The node can talk to the coordinator but hears nothing from it. */
static void s_node_cannot_hear(s_run_t *run, long long ms) {
    run->problems += kv_netns_cut(run->net, S_COORD, S_N1);
    s_sleep_ms(ms);
}

/* Partitions, kills and freezes together: the primary cut off from the
 * coordinator, a replica frozen past the failure timeout, then another
 * node killed and restarted, then the coordinator's links flapping. */
static void s_combined(s_run_t *run, long long ms) {
    long long end = kv_now_ms() + ms;
    run->problems += kv_netns_cut_both(run->net, S_N1, S_COORD);
    s_sleep_ms(ms / 4);
    s_signal(run, S_N2, SIGSTOP);
    s_sleep_ms(2 * S_NODE_TIMEOUT_MS);
    s_signal(run, S_N2, SIGCONT);
    s_sleep_ms(ms / 8);
    s_signal(run, S_N3, SIGKILL);
    s_sleep_ms(S_NODE_TIMEOUT_MS);
    s_start(run, S_N3);
    run->problems += kv_netns_heal_both(run->net, S_N1, S_COORD);
    run->problems += kv_netns_cut(run->net, S_COORD, S_N2); /* one way */
    s_sleep_ms(ms / 8);
    for (int cut = 1; kv_now_ms() < end; cut = !cut) {
        run->problems += cut ? kv_netns_cut_both(run->net, S_N3, S_COORD)
                             : kv_netns_heal_both(run->net, S_N3, S_COORD);
        s_sleep_ms(500);
    }
}

/* The node index (1-3) of node id, or -1. */
static int s_host_of(const char *id) {
    for (int host = S_N1; host <= S_N3; host++)
        if (strcmp(id, s_role(host)) == 0) return host;
    return -1;
}

/* Rounds of: the primary P of a key and its replicas stop hearing it (their
 * inbound link from P cut, and frozen for 300 ms), so P applies writes it
 * cannot get confirmed, which readers on the same keys see or not; then P
 * is killed, the replicas thawed and healed, and P restarted once the
 * cluster recovered. A read that returned one of those writes is followed
 * by reads that miss it: not linearizable. */
static void s_kill_unconfirmed(s_run_t *run, long long ms) {
    long long end = kv_now_ms() + ms;
    for (int round = 0; kv_now_ms() + 6 * S_NODE_TIMEOUT_MS < end; round++) {
        kv_table_t *table = s_table(run, 2000);
        if (!table) break;
        const char *key = run->keys[round % S_KEYS];
        int primary = s_host_of(s_primary_of(table, key));
        kv_table_destroy(&table);
        if (primary < 0) break;
        for (int host = S_N1; host <= S_N3; host++) {
            if (host == primary) continue;
            run->problems += kv_netns_cut(run->net, primary, host);
            s_signal(run, host, SIGSTOP);
        }
        s_sleep_ms(300);
        s_signal(run, primary, SIGKILL);
        for (int host = S_N1; host <= S_N3; host++)
            if (host != primary) s_signal(run, host, SIGCONT);
        /* The dead primary's kernel keeps retransmitting what it sent: the
         * links stay cut until a replica took over (and ignores it). */
        s_sleep_ms(3 * S_NODE_TIMEOUT_MS);
        for (int host = S_N1; host <= S_N3; host++)
            if (host != primary) run->problems += kv_netns_heal(run->net, primary, host);
        s_wait_healthy(run, kv_now_ms(), 10000);
        s_start(run, primary);
        s_wait_healthy(run, kv_now_ms(), 10000);
    }
    long long left = end - kv_now_ms();
    if (left > 0) s_sleep_ms(left);
}

TestSuite(partition, .timeout = 1800);

Test(partition, primary_cut_from_coordinator) {
    s_scenario_with("primary-from-coordinator", s_primary_from_coordinator,
                    (s_options_t){S_EXPECT_SAFE, 1});
}

/* The checker is shown to catch a fault: the same cuts with leases off
 * (a test-only switch on nodes and coordinator) must read stale values. */
Test(partition, leases_off_fails_the_check) {
    setenv("KV_PARTITION_NODE_ARGS", "--leases 0", 1);
    setenv("KV_PARTITION_COORDINATOR_ARGS", "--lease-ms 0", 1);
    s_scenario_with("leases-off", s_primary_from_coordinator, (s_options_t){S_EXPECT_CAUGHT, 1});
}

Test(partition, primary_cut_from_coordinator_and_replicas) {
    s_scenario("primary-from-coordinator-and-replicas", s_primary_from_coordinator_and_replicas);
}

Test(partition, primary_cut_from_all_but_one_gateway) {
    s_scenario("primary-with-one-gateway", s_primary_with_one_gateway);
}

Test(partition, coordinator_cut_from_nodes) {
    s_scenario("coordinator-from-nodes", s_coordinator_from_nodes);
}

Test(partition, flapping_link) {
    s_scenario("flapping", s_flapping);
}

Test(partition, one_way_node_cannot_answer) {
    s_scenario("node-cannot-answer", s_node_cannot_answer);
}

Test(partition, one_way_node_cannot_hear) {
    s_scenario("node-cannot-hear", s_node_cannot_hear);
}

Test(partition, combined_with_kills_and_freezes) {
    s_scenario("combined", s_combined);
}

Test(partition, kill_primary_with_unconfirmed_writes) {
    s_scenario("kill-unconfirmed", s_kill_unconfirmed);
}
