/*  it_ttl.c: keys expire, everywhere at once, and are reclaimed.
 *
 *  Real clusters (3 nodes, R=2):
 *  - a key past its deadline is absent for every route (/get, /is, /mget,
 *    /tx, the bulk reads, /ttl, /rm, /expire) and a conditional "only if
 *    absent" /set succeeds on it; /expire and /persist move the deadline;
 *  - many keys with ttls of 1 to 3 s (20,000; 1,000,000 with
 *    KV_BIG_TESTS=1): 10 s after the load none is readable, every node
 *    (replicas too) holds no key, and each node's memory is back within
 *    10 % of what it held empty;
 *  - a ttl key whose primary is SIGKILLed keeps its deadline on the new
 *    primary: it disappears within 100 ms of the instant its first primary
 *    gave it.
 *
 *  Figures (keys, times, memory) go to stderr, one "ttl:" line each.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv_harness.h"
#include "kv_hash.h"

#define S_NODES 3
#define S_RECLAIM_MS 10000      /* the bound: none readable 10 s after the load */
#define S_DEADLINE_SLACK_MS 100 /* a deadline kept across failover, within this */
#define S_MANY_KEYS (getenv("KV_BIG_TESTS") ? 1000000 : 20000)
#define S_SEED 11 /* kv-stress names the keys k11-<n> */

static void s_sleep_ms(long ms) {
    struct timespec wait = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) != 0) continue;
}

static kv_cluster_t *s_start(void) {
    static const char *const node_args[] = {NULL};
    kv_cluster_options_t options = {.nodes = S_NODES, .replication = 2, .node_args = node_args};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster, "the cluster did not start");
    /* no partition moving: a read then answers in a millisecond */
    cr_assert_geq(kv_cluster_wait_balanced(cluster, 60000), 0, "the cluster did not balance");
    return cluster;
}

/* GET target: the status (body in reply, freed by the caller). */
static long s_get(kv_cluster_t *cluster, const char *target, kv_reply_t *reply) {
    cr_assert_eq(kv_get(cluster->http_port, target, reply), 0, "no answer to %s", target);
    return reply->status;
}

/* GET target, expecting status and (when body is not NULL) that body. */
static void s_expect(kv_cluster_t *cluster, const char *target, long status, const char *body) {
    kv_reply_t reply;
    long got = s_get(cluster, target, &reply);
    cr_expect_eq(got, status, "%s: %ld %s", target, got, reply.body);
    if (body) cr_expect_str_eq(reply.body, body, "%s", target);
    kv_reply_free(&reply);
}

/* Whether the body of GET target contains text. */
static int s_body_has(kv_cluster_t *cluster, const char *target, const char *text) {
    kv_reply_t reply;
    s_get(cluster, target, &reply);
    int has = reply.body && strstr(reply.body, text) != NULL;
    kv_reply_free(&reply);
    return has;
}

/* When a key expired, as reads see it. The deadline D lies between the
 * /set's send and its answer (set_start + ttl, set_end + ttl, the primary's
 * clock), and a read takes effect between its own send and answer: a 404
 * ending before D - slack would be an early expiry, a 200 sent after
 * D + slack a late one. Reads every 5 ms until a 404 (at most 8 s). */
typedef struct {
    long long last_seen; /* send time of the last 200, ms after set_start */
    long long gone;      /* answer time of the first 404, ms after set_start */
    long long span;      /* the /set's round trip */
} s_expiry_t;

static s_expiry_t s_watch_expiry(kv_cluster_t *cluster, const char *key, long long set_start,
                                 long long set_end) {
    char target[96];
    snprintf(target, sizeof target, "/get?k=%s", key);
    s_expiry_t seen = {0, 0, set_end - set_start};
    while (!seen.gone && kv_now_ms() - set_start < 8000) {
        long long sent = kv_now_ms();
        kv_reply_t reply;
        long status = s_get(cluster, target, &reply);
        kv_reply_free(&reply);
        cr_assert(status == 200 || status == 404, "%s: %ld", target, status);
        if (status == 200) seen.last_seen = sent - set_start;
        if (status == 404) seen.gone = kv_now_ms() - set_start;
        s_sleep_ms(5);
    }
    cr_assert_neq(seen.gone, 0, "%s never expired", key);
    return seen;
}

/* The bounds of s_watch_expiry for a deadline ttl_ms after the write (as
 * the reading node's clock has it). */
static void s_expect_deadline(const s_expiry_t *seen, long long ttl_ms, const char *what) {
    fprintf(stderr,
            "ttl: %s: last read present %lld ms after the /set was sent, first absent by %lld ms "
            "(deadline %lld ms, /set round trip %lld ms)\n",
            what, seen->last_seen, seen->gone, ttl_ms, seen->span);
    cr_expect_geq(seen->gone, ttl_ms - S_DEADLINE_SLACK_MS, "%s: expired early", what);
    cr_expect_leq(seen->last_seen, ttl_ms + seen->span + S_DEADLINE_SLACK_MS,
                  "%s: still present after its deadline", what);
}

/* --- every route ------------------------------------------------------------- */

Test(ttl, an_expired_key_is_absent_for_every_route, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    long long set_start = kv_now_ms();
    s_expect(cluster, "/set?k=brief&v=soon-gone&ttl=1", 200, NULL);
    long long set_end = kv_now_ms();
    s_expect(cluster, "/set?k=stays&v=here", 200, NULL);
    s_expect(cluster, "/tx?set.brief-tx=1&ttl.brief-tx=1&set.stays-tx=2", 200, NULL);
    s_expect(cluster, "/get?k=brief", 200, "\"soon-gone\"");
    s_expect(cluster, "/ttl?k=brief", 200, "{\"ttl\":1}");
    cr_expect(s_body_has(cluster, "/getKeys", "\"brief\""));
    /* gone at its deadline, not before */
    s_expiry_t seen = s_watch_expiry(cluster, "brief", set_start, set_end);
    s_expect_deadline(&seen, 1000, "a 1 s key");
    s_sleep_ms(50); /* brief-tx was written after brief */
    const char *const absent[] = {"brief", "brief-tx"};
    for (size_t i = 0; i < 2; i++) {
        char target[128];
        const char *k = absent[i];
        snprintf(target, sizeof target, "/get?k=%s", k);
        s_expect(cluster, target, 404, NULL);
        snprintf(target, sizeof target, "/is?k=%s", k);
        s_expect(cluster, target, 404, NULL);
        snprintf(target, sizeof target, "/ttl?k=%s", k);
        s_expect(cluster, target, 404, NULL);
        snprintf(target, sizeof target, "/expire?k=%s&ttl=100", k);
        s_expect(cluster, target, 404, NULL);
        snprintf(target, sizeof target, "/persist?k=%s", k);
        s_expect(cluster, target, 404, NULL);
        snprintf(target, sizeof target, "/mget?k=%s&k=stays", k);
        char body[128];
        snprintf(body, sizeof body, "[{\"k\":\"%s\",\"v\":null,\"version\":0},", k);
        cr_expect(s_body_has(cluster, target, body), "%s", target);
        snprintf(target, sizeof target, "/tx?get.%s&get.stays", k);
        snprintf(body, sizeof body, "\"%s\":{\"v\":null,\"version\":0}", k);
        cr_expect(s_body_has(cluster, target, body), "%s", target);
        for (const char *const *bulk = (const char *const[]){"/getKeys", "/getAll", NULL}; *bulk;
             bulk++) {
            snprintf(body, sizeof body, "\"%s\"", k);
            cr_expect(!s_body_has(cluster, *bulk, body), "%s lists %s", *bulk, k);
        }
    }
    cr_expect(!s_body_has(cluster, "/getValues", "soon-gone"));
    s_expect(cluster, "/rm?k=brief", 404, NULL);
    s_expect(cluster, "/get?k=stays", 200, "\"here\"");
    s_expect(cluster, "/get?k=stays-tx", 200, "\"2\"");
    /* absent means absent for a condition too */
    s_expect(cluster, "/set?k=brief&v=again&ifVersion=0", 200, NULL);
    s_expect(cluster, "/ttl?k=brief", 200, "{\"ttl\":-1}");
    /* /expire moves a deadline, /persist removes it */
    s_expect(cluster, "/expire?k=stays&ttl=1", 200, NULL);
    s_expect(cluster, "/persist?k=stays", 200, NULL);
    s_expect(cluster, "/expire?k=stays-tx&ttl=1", 200, NULL);
    s_sleep_ms(1500);
    s_expect(cluster, "/get?k=stays", 200, "\"here\"");
    s_expect(cluster, "/get?k=stays-tx", 404, NULL);
    cr_assert_eq(kv_cluster_stop(&cluster), 0);
}

/* --- many keys ---------------------------------------------------------------- */

/* Each node's "keys" and "memoryBytes" from /status, by harness index
 * order of the answer; returns how many nodes answered. */
static int s_node_figures(kv_cluster_t *cluster, uint64_t *keys, uint64_t *memory,
                          uint64_t *expired) {
    kv_reply_t reply;
    cr_assert_eq(s_get(cluster, "/status", &reply), 200);
    json_t *status = kv_reply_json(&reply);
    kv_reply_free(&reply);
    cr_assert_not_null(status);
    json_t *nodes = json_object_get(status, "nodes");
    int n = 0;
    for (size_t i = 0; i < json_array_size(nodes) && n < S_NODES; i++, n++) {
        json_t *node = json_array_get(nodes, i);
        keys[n] = (uint64_t)json_integer_value(json_object_get(node, "keys"));
        memory[n] = (uint64_t)json_integer_value(json_object_get(node, "memoryBytes"));
        json_t *counters = json_object_get(node, "counters");
        expired[n] =
            (uint64_t)json_integer_value(json_object_get(counters, "kv_node_expired_keys_total"));
    }
    json_decref(status);
    return n;
}

/* kv-stress: keys new keys, ttls of 1 to 3 s; 0 when every set succeeded. */
static int s_load_expiring(kv_cluster_t *cluster, int keys) {
    char binary[512], url[64], requests[16], seed[16], log[192];
    snprintf(binary, sizeof binary, "%s/tools/kv-stress", KV_BIN_DIR);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", cluster->http_port);
    snprintf(requests, sizeof requests, "%d", keys);
    snprintf(seed, sizeof seed, "%d", S_SEED);
    snprintf(log, sizeof log, "%s/kv-stress.log", cluster->dir);
    const char *argv[] = {binary, "--url",         url,  "--requests", requests, "--seed",
                          seed,   "--ttl-min",     "1",  "--ttl-max",  "3",      "--progress",
                          "0",    "--concurrency", "32", NULL};
    int status = 0;
    pid_t pid = kv_spawn(argv, log);
    cr_assert_gt(pid, 0);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

typedef struct {
    kv_cluster_t *cluster;
    uint64_t keys[S_NODES], memory[S_NODES], expired[S_NODES];
    const uint64_t *empty; /* memory of each node before the load */
} s_figures_t;

/* No node holds a key, and each one's memory is within 10 % of empty (a
 * replica drops the last deadlines it indexed once its primary's removals
 * arrived: up to KV_STORE_EXPIRE_RETRY_MS after them). */
static int s_all_reclaimed(void *arg) {
    s_figures_t *f = arg;
    int n = s_node_figures(f->cluster, f->keys, f->memory, f->expired);
    for (int i = 0; i < n; i++)
        if (f->keys[i] != 0 || f->memory[i] > f->empty[i] + f->empty[i] / 10) return 0;
    return n == S_NODES;
}

Test(ttl, many_keys_expire_everywhere_and_memory_returns, .timeout = 600) {
    kv_cluster_t *cluster = s_start();
    s_figures_t empty = {.cluster = cluster}, after = {.cluster = cluster};
    cr_assert_eq(s_node_figures(cluster, empty.keys, empty.memory, empty.expired), S_NODES);
    after.empty = empty.memory;
    int keys = S_MANY_KEYS;
    long long start = kv_now_ms();
    cr_assert_eq(s_load_expiring(cluster, keys), 0, "kv-stress reported failed sets");
    long long loaded = kv_now_ms();
    fprintf(stderr, "ttl: %d keys with ttls of 1 to 3 s loaded in %lld ms\n", keys, loaded - start);
    /* Reclaimed on every node within S_RECLAIM_MS of the load: primaries
     * removed them, replicas applied the removals; and nothing readable. */
    cr_assert_eq(kv_wait_until(s_all_reclaimed, &after, S_RECLAIM_MS, 100), 0,
                 "keys left on nodes: %lu %lu %lu, bytes %lu %lu %lu", (unsigned long)after.keys[0],
                 (unsigned long)after.keys[1], (unsigned long)after.keys[2],
                 (unsigned long)after.memory[0], (unsigned long)after.memory[1],
                 (unsigned long)after.memory[2]);
    long long reclaimed = kv_now_ms();
    for (int n = 0; n < keys; n += keys / 200) {
        char target[64];
        snprintf(target, sizeof target, "/get?k=k%d-%d", S_SEED, n);
        s_expect(cluster, target, 404, NULL);
    }
    s_expect(cluster, "/getKeys", 200, "[]");
    uint64_t expired = 0;
    for (int i = 0; i < S_NODES; i++) {
        expired += after.expired[i];
        fprintf(stderr, "ttl: node %d: memory %lu bytes empty, %lu after, %lu keys expired\n", i,
                (unsigned long)empty.memory[i], (unsigned long)after.memory[i],
                (unsigned long)after.expired[i]);
        cr_expect_leq(after.memory[i], empty.memory[i] + empty.memory[i] / 10,
                      "node %d holds %lu bytes, %lu when empty", i, (unsigned long)after.memory[i],
                      (unsigned long)empty.memory[i]);
    }
    fprintf(stderr, "ttl: all reclaimed %lld ms after the load; %lu removals by primaries\n",
            reclaimed - loaded, (unsigned long)expired);
    cr_expect_eq(expired, (uint64_t)keys, "each key removed once, by its primary");
    cr_assert_eq(kv_cluster_stop(&cluster), 0);
}

/* --- failover ------------------------------------------------------------------ */

/* The harness index of the node that is primary of key, or -1. */
static int s_primary_of(kv_cluster_t *cluster, kv_probe_t *probe, const char *key) {
    kv_table_t *table = kv_probe_table(probe, 1000);
    if (!table) return -1;
    uint32_t p = kv_partition_of(key, strlen(key), kv_table_partitions(table));
    const char *id = kv_table_node(table, kv_table_owner(table, p, 0))->id;
    int found = -1;
    for (int i = 0; i < cluster->node_count; i++)
        if (cluster->nodes[i].pid > 0 && strcmp(cluster->nodes[i].id, id) == 0) found = i;
    kv_table_destroy(&table);
    return found;
}

Test(ttl, a_deadline_survives_the_primary_s_death, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    int victim = s_primary_of(cluster, &probe, "doomed");
    cr_assert_geq(victim, 0);
    long long set_start = kv_now_ms();
    s_expect(cluster, "/set?k=doomed&v=1&ttl=4", 200, NULL);
    long long set_at = kv_now_ms();
    kv_cluster_signal_node(cluster, victim, SIGKILL);
    /* the replica takes over; the key is read there with the same deadline */
    cr_assert_eq(kv_wait_status(cluster->http_port, "/get?k=doomed", 200, 3500), 0,
                 "not readable after the failover");
    long long read_at = kv_now_ms();
    cr_assert_neq(s_primary_of(cluster, &probe, "doomed"), victim);
    fprintf(stderr, "ttl: read on the new primary %lld ms after the /set answered\n",
            read_at - set_at);
    s_expiry_t seen = s_watch_expiry(cluster, "doomed", set_start, set_at);
    s_expect_deadline(&seen, 4000, "a 4 s key whose primary was killed");
    kv_probe_close(&probe);
    cr_assert_eq(kv_cluster_stop(&cluster), 0);
}

/* --- clock skew ------------------------------------------------------------------ */

#define S_SKEW_MS 500 /* the second node's clock runs this far ahead */

/* A key whose deadline its first primary set, read by a new primary whose
 * clock is S_SKEW_MS ahead: it expires S_SKEW_MS early in real time, and
 * by no more (docs/expiry.md: deadlines move by the skew between the two
 * nodes' clocks, nothing else). */
Test(ttl, clock_skew_moves_a_deadline_by_the_skew_only, .timeout = 120) {
    static const char *const node_args[] = {NULL};
    kv_cluster_options_t options = {
        .nodes = 1, .replication = 2, .min_nodes = 1, .node_args = node_args};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    char skew[16];
    snprintf(skew, sizeof skew, "%d", S_SKEW_MS);
    setenv("KV_CLOCK_OFFSET_MS", skew, 1); /* the next node only (kv_opts reads the env) */
    int skewed = kv_cluster_add_node(cluster, 1);
    unsetenv("KV_CLOCK_OFFSET_MS");
    cr_assert_geq(skewed, 0);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    kv_table_t *table = NULL;
    for (long long until = kv_now_ms() + 60000; kv_now_ms() < until; s_sleep_ms(100)) {
        kv_table_destroy(&table);
        table = kv_probe_table(&probe, 1000);
        if (table && kv_cluster_fully_replicated(table)) break;
    }
    cr_assert(table && kv_cluster_fully_replicated(table), "never fully replicated");
    kv_table_destroy(&table);
    char key[32] = "";
    for (int n = 0; n < 1000 && !*key; n++) { /* a key the unskewed node is primary of */
        char candidate[32];
        snprintf(candidate, sizeof candidate, "skewed-%d", n);
        if (s_primary_of(cluster, &probe, candidate) == 0)
            snprintf(key, sizeof key, "%s", candidate);
    }
    cr_assert(*key, "the first node is primary of nothing");
    char target[96];
    snprintf(target, sizeof target, "/set?k=%s&v=1&ttl=4", key);
    long long set_start = kv_now_ms();
    s_expect(cluster, target, 200, NULL);
    long long set_at = kv_now_ms();
    kv_cluster_signal_node(cluster, 0, SIGKILL);
    snprintf(target, sizeof target, "/get?k=%s", key);
    cr_assert_eq(kv_wait_status(cluster->http_port, target, 200, 3000), 0);
    s_expiry_t seen = s_watch_expiry(cluster, key, set_start, set_at);
    s_expect_deadline(&seen, 4000 - S_SKEW_MS, "a 4 s key read by a node 500 ms ahead");
    kv_probe_close(&probe);
    cr_assert_eq(kv_cluster_stop(&cluster), 0);
}
