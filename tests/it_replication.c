/*  it_replication.c: issue 4's acceptance tests, replication and failover
 *  on real processes (R = 2), with a client (kv_workload) writing and
 *  reading all along and remembering every acknowledged write:
 *
 *  - twenty rounds of: SIGKILL a random node, recovery, a fresh node;
 *  - a primary frozen (SIGSTOP) past the failure timeout, then thawed;
 *  - the coordinator killed together with a node, then restarted;
 *  - replicas that miss updates (PUB/SUB high-water mark 1) and repair
 *    themselves, checked by killing nodes until one holds everything;
 *  - a primary killed in the middle of a hand-off (learning, then fenced).
 *
 *  Each ends with kv_workload_verify: every acknowledged write is read
 *  back with its last acknowledged value (or a later uncertain one), and
 *  no read during the run missed an acknowledged write. Failed requests
 *  (503 while a partition has no live primary or too few replicas, 504
 *  when a node dies under a request) are expected and only counted.
 *
 *  Recovery is read from the coordinator's own table (TABLE_REQ on its
 *  ROUTER socket, like a gateway), which names every partition's owners.
 *  A round has recovered when the killed node is DOWN and every partition
 *  has R owners, all ACTIVE, with no move under way: every partition has a
 *  live primary again (writable) and a full set of copies (safe against
 *  the next failure). The figures are printed for the record.
 *
 *  The same orders of events made exact, in one process, are in
 *  test_kv_repl.c.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kv_harness.h"
#include "kv_hash.h"
#include "kv_table.h"
#include "kv_workload.h"

#if defined(__SANITIZE_ADDRESS__)
#define S_SLOW 1 /* sanitized build: everything is a few times slower */
#else
#define S_SLOW 0
#endif

#define S_NODES 4         /* nodes in every cluster here */
#define S_REPLICATION 2   /* R */
#define S_PARTITIONS 1024 /* the coordinator's default (not passed: printed only) */
#define S_KILL_ROUNDS 20  /* rounds of test 1 */
#define S_KEYS (S_SLOW ? 1500 : 4000)
#define S_THREADS 4         /* workload clients */
#define S_RECOVERY_MS 30000 /* longest wait for a recovery before failing */
#define S_POLL_MS 20        /* table polling period while timing */

/* kv_request (kv_harness.c) keeps a curl handle per thread in a
 * thread-local variable that nothing frees, so every kv_workload thread
 * leaks its handle when it ends and LeakSanitizer fails the run at exit.
 * Until the harness frees it, the leaks of those threads are suppressed;
 * nothing else is (the same suppression as it_membership.c). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:s_worker_run\n";
}

/* The failure detection used everywhere: nodes heartbeat every 100 ms
 * (the harness), the coordinator declares one down after 800 ms of
 * silence (KV_NODE_TIMEOUT_MS, overriding the harness's 1000). */
static const char *const s_coordinator_args[] = {"--node-timeout-ms", "800", NULL};

static void s_sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) continue; /* sleep the rest */
}

/* --- the coordinator's table ------------------------------------------------ */

/* The state of the node with this id in table, or -1 when not listed. */
static int s_state_of(const kv_table_t *table, const char *id) {
    int index = kv_table_find(table, id);
    return index < 0 ? -1 : kv_table_node_state(table, (uint32_t)index);
}

/* Fully replicated, and the ACTIVE nodes' primaries differ by one at most. */
static int s_balanced(const kv_table_t *table) {
    if (!kv_cluster_fully_replicated(table)) return 0;
    uint32_t low = UINT32_MAX, high = 0;
    for (uint32_t i = 0; i < kv_table_node_count(table); i++) {
        if (kv_table_node_state(table, i) != KV_NODE_ACTIVE) continue;
        uint32_t primaries = kv_table_count_primaries(table, (uint16_t)i);
        if (primaries < low) low = primaries;
        if (primaries > high) high = primaries;
    }
    return high >= low && high - low <= 1;
}

/* What the gateway says: /healthcheck is 200. */
static int s_gateway_healthy(const kv_cluster_t *cluster) {
    kv_reply_t reply;
    int healthy = kv_get(cluster->http_port, "/healthcheck", &reply) == 0 && reply.status == 200;
    kv_reply_free(&reply);
    return healthy;
}

/* --- recovery, timed -------------------------------------------------------- */

/* Milliseconds from a kill to each stage of the recovery; -1 if never. */
typedef struct {
    long long down;       /* the coordinator marked the node DOWN */
    long long writable;   /* every partition has an ACTIVE primary again */
    long long replicated; /* every partition has R ACTIVE owners, nothing moving */
} s_recovery_t;

/* Polls the coordinator's table until every node in victims (ids, count
 * of them) is DOWN (an earlier victim may be LEFT: the coordinator forgets
 * a dead node that holds nothing after 10 s, which a slow verification
 * between two kills can outlast) and the table is fully replicated, timing each stage
 * from start (ms). With need_full 0 stops once writable (a cluster too
 * small for R copies). */
static s_recovery_t s_wait_recovery(kv_probe_t *probe, const char *const *victims, int count,
                                    long long start, int need_full) {
    s_recovery_t times = {-1, -1, -1};
    long long deadline = kv_now_ms() + S_RECOVERY_MS;
    while (kv_now_ms() < deadline) {
        kv_table_t *table = kv_probe_table(probe, 500);
        long long now = kv_now_ms() - start;
        int down = table != NULL;
        for (int i = 0; table && i < count; i++) { /* an earlier victim may be forgotten by now */
            int state = s_state_of(table, victims[i]);
            down &= state == KV_NODE_DOWN || (i < count - 1 && state == KV_NODE_LEFT);
        }
        if (down && times.down < 0) times.down = now;
        if (down && times.writable < 0 && kv_table_healthy(table)) times.writable = now;
        if (down && times.replicated < 0 && kv_cluster_fully_replicated(table))
            times.replicated = now;
        kv_table_destroy(&table);
        if (times.writable >= 0 && (times.replicated >= 0 || !need_full)) break;
        s_sleep_ms(S_POLL_MS);
    }
    return times;
}

/* Waits until the node with id is ACTIVE, the table balanced and the
 * gateway healthy. Returns the ms it took, or -1. */
static long long s_wait_balanced_with(kv_probe_t *probe, const kv_cluster_t *cluster,
                                      const char *id) {
    long long start = kv_now_ms(), deadline = start + S_RECOVERY_MS;
    while (kv_now_ms() < deadline) {
        kv_table_t *table = kv_probe_table(probe, 500);
        int done = table && (!id || s_state_of(table, id) == KV_NODE_ACTIVE) && s_balanced(table);
        kv_table_destroy(&table);
        if (done && s_gateway_healthy(cluster)) return kv_now_ms() - start;
        s_sleep_ms(S_POLL_MS);
    }
    return -1;
}

static int s_cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long s_median(long long *values, int count) {
    qsort(values, (size_t)count, sizeof(*values), s_cmp_ll);
    return count ? values[count / 2] : -1;
}

static unsigned s_seed(void) {
    const char *text = getenv("KV_TEST_SEED");
    unsigned seed = text ? (unsigned)strtoul(text, NULL, 10) : (unsigned)time(NULL);
    printf("seed %u (set KV_TEST_SEED to replay)\n", seed);
    return seed;
}

/* --- data checks ------------------------------------------------------------ */

typedef struct {
    json_t *seen; /* keys /getKeys returned, as an object used as a set */
    int missing;  /* present in the model, absent from /getKeys */
} s_presence_t;

static void s_check_present(const char *key, void *arg) {
    s_presence_t *presence = arg;
    if (json_object_get(presence->seen, key)) return;
    if (presence->missing++ < 10) fprintf(stderr, "key %s: acknowledged, not in /getKeys\n", key);
}

/* The cluster's figures once writes have stopped: the sum of every
 * reachable node's keys and availableRecords (primaries' keys). Polls
 * until sum == R x records twice in a row (replicas caught up) or 15 s
 * pass; returns 0 when they agree. */
static int s_settled_counts(const kv_cluster_t *cluster, long long *sum_out,
                            long long *records_out) {
    long long deadline = kv_now_ms() + 15000;
    int agreed = 0;
    while (kv_now_ms() < deadline) {
        kv_reply_t reply;
        long long sum = -1, records = -2;
        if (kv_get(cluster->http_port, "/status", &reply) == 0 && reply.status == 200) {
            json_t *status = kv_reply_json(&reply);
            size_t i;
            json_t *node;
            sum = 0;
            records = json_integer_value(json_object_get(status, "availableRecords"));
            json_array_foreach(json_object_get(status, "nodes"), i, node) {
                sum += json_integer_value(json_object_get(node, "keys"));
            }
            json_decref(status);
        }
        kv_reply_free(&reply);
        *sum_out = sum;
        *records_out = records;
        agreed = sum == S_REPLICATION * records ? agreed + 1 : 0;
        if (agreed == 2) return 0;
        s_sleep_ms(200);
    }
    return -1;
}

/* Every check that ends a scenario, once the workload is stopped and the
 * cluster settled: the model against every key, the counts of copies
 * (each key held by R nodes exactly), /getKeys against the model. */
static void s_check_data(kv_cluster_t *cluster, kv_workload_t *workload, const char *scenario) {
    kv_workload_stats_t stats = kv_workload_stats(workload);
    int checked = 0;
    int lost = kv_workload_verify(workload, cluster->http_port, &checked);
    long long sum = 0, records = 0;
    int agree = s_settled_counts(cluster, &sum, &records);
    kv_reply_t reply;
    cr_assert_eq(kv_get(cluster->http_port, "/getKeys", &reply), 0);
    cr_assert_eq(reply.status, 200, "/getKeys: %ld %s", reply.status, reply.body);
    json_t *keys = kv_reply_json(&reply);
    kv_reply_free(&reply);
    s_presence_t presence = {json_object(), 0};
    size_t i;
    json_t *key;
    json_array_foreach(keys, i, key) {
        json_object_set(presence.seen, json_string_value(key), json_true());
    }
    kv_workload_each_present(workload, s_check_present, &presence);
    printf("%s: %llu requests, %llu acknowledged writes; %d keys checked, %d lost or wrong; "
           "%llu stale reads; failed: %llu 5xx, %llu connection, %llu other; longest write "
           "refusal %lld ms; %lld keys on the nodes = %d x %lld records (%s); /getKeys %zu, "
           "%d acknowledged keys missing\n",
           scenario, (unsigned long long)stats.requests, (unsigned long long)stats.acked_writes,
           checked, lost, (unsigned long long)stats.stale_reads,
           (unsigned long long)stats.failed_5xx, (unsigned long long)stats.failed_conn,
           (unsigned long long)stats.failed_other, stats.longest_refusal_ms, sum, S_REPLICATION,
           records, agree == 0 ? "agree" : "DISAGREE", json_array_size(keys), presence.missing);
    fflush(stdout);
    cr_expect(stats.acked_writes > 0, "%s: nothing was acknowledged", scenario);
    cr_expect_eq(lost, 0, "%s: %d of %d keys lost an acknowledged write", scenario, lost, checked);
    cr_expect_eq(stats.stale_reads, 0, "%s: stale reads", scenario);
    cr_expect_eq(stats.failed_other, 0, "%s: unexpected answers", scenario);
    cr_expect_eq(agree, 0, "%s: nodes hold %lld keys, expected %d x %lld", scenario, sum,
                 S_REPLICATION, records);
    cr_expect_eq((long long)json_array_size(keys), records, "%s: /getKeys vs availableRecords",
                 scenario);
    cr_expect_eq(presence.missing, 0, "%s: acknowledged keys missing from /getKeys", scenario);
    json_decref(presence.seen);
    json_decref(keys);
}

static kv_cluster_t *s_start(const char *const *node_args) {
    kv_cluster_options_t options = {.nodes = S_NODES,
                                    .replication = S_REPLICATION,
                                    .node_args = node_args,
                                    .coordinator_args = s_coordinator_args};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster, "cluster did not start");
    return cluster;
}

static void s_print_settings(void) {
    printf("failure detection: node heartbeat 100 ms, coordinator --node-timeout-ms 800, "
           "gateway --timeout-ms 2000 (default); R=%d, %d partitions, %d nodes, %d keys, "
           "%d client threads%s\n",
           S_REPLICATION, S_PARTITIONS, S_NODES, S_KEYS, S_THREADS,
           S_SLOW ? " (sanitized build)" : "");
}

/* --- 1. kill a node, twenty times ------------------------------------------- */

Test(replication, twenty_node_kills_lose_no_acknowledged_write, .timeout = 400) {
    unsigned seed = s_seed();
    kv_cluster_t *cluster = s_start(NULL);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    s_print_settings();
    cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0, "initial cluster not balanced");
    kv_workload_t *workload = kv_workload_start(cluster->http_port, S_KEYS, S_THREADS, seed);
    cr_assert_not_null(workload);
    s_sleep_ms(500); /* some data before the first kill */
    long long replicated[S_KILL_ROUNDS], writable[S_KILL_ROUNDS], balanced[S_KILL_ROUNDS];
    for (int round = 0; round < S_KILL_ROUNDS; round++) {
        int victim = kv_cluster_random_node(cluster, &seed);
        cr_assert_geq(victim, 0, "no node left to kill");
        const char *id = cluster->nodes[victim].id;
        kv_table_t *before = kv_probe_table(&probe, 1000);
        cr_assert_not_null(before, "round %d: no table from the coordinator", round + 1);
        int index = kv_table_find(before, id);
        uint32_t primaries = index < 0 ? 0 : kv_table_count_primaries(before, (uint16_t)index);
        uint32_t replicas = index < 0 ? 0 : kv_table_count_replicas(before, (uint16_t)index);
        kv_table_destroy(&before);
        long long start = kv_now_ms();
        kv_cluster_signal_node(cluster, victim, SIGKILL);
        s_recovery_t times = s_wait_recovery(&probe, &id, 1, start, 1);
        cr_assert(times.replicated >= 0,
                  "round %d: no recovery after killing %s within %d ms (down %lld, writable %lld)",
                  round + 1, id, S_RECOVERY_MS, times.down, times.writable);
        int fresh = kv_cluster_add_node(cluster, 1);
        cr_assert_geq(fresh, 0);
        long long settle = s_wait_balanced_with(&probe, cluster, cluster->nodes[fresh].id);
        cr_assert_geq(settle, 0, "round %d: %s did not join a balanced cluster", round + 1,
                      cluster->nodes[fresh].id);
        kv_workload_stats_t stats = kv_workload_stats(workload);
        printf("round %2d: killed %s (primary of %u, replica of %u): down after %lld ms, "
               "writable after %lld ms, R copies after %lld ms; %s balanced in %lld ms; "
               "so far %llu requests, %llu acked writes, %llu failed, %llu stale reads, longest "
               "write refusal %lld ms\n",
               round + 1, id, primaries, replicas, times.down, times.writable, times.replicated,
               cluster->nodes[fresh].id, settle, (unsigned long long)stats.requests,
               (unsigned long long)stats.acked_writes,
               (unsigned long long)stats.failed_5xx + (unsigned long long)stats.failed_conn,
               (unsigned long long)stats.stale_reads, stats.longest_refusal_ms);
        fflush(stdout);
        cr_assert_eq(stats.stale_reads, 0, "round %d: a read missed an acknowledged write",
                     round + 1);
        replicated[round] = times.replicated;
        writable[round] = times.writable;
        balanced[round] = settle;
    }
    kv_workload_stop(workload);
    s_check_data(cluster, workload, "20 kills");
    long long worst = 0, worst_writable = 0, worst_balanced = 0;
    for (int i = 0; i < S_KILL_ROUNDS; i++) {
        if (replicated[i] > worst) worst = replicated[i];
        if (writable[i] > worst_writable) worst_writable = writable[i];
        if (balanced[i] > worst_balanced) worst_balanced = balanced[i];
    }
    printf("recovery (kill to R ACTIVE copies of every partition): median %lld ms, worst %lld "
           "ms; writable again: median %lld ms, worst %lld ms; fresh node balanced: median "
           "%lld ms, worst %lld ms\n",
           s_median(replicated, S_KILL_ROUNDS), worst, s_median(writable, S_KILL_ROUNDS),
           worst_writable, s_median(balanced, S_KILL_ROUNDS), worst_balanced);
    fflush(stdout);
    kv_workload_destroy(&workload);
    kv_probe_close(&probe);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

/* --- 2. a frozen primary ---------------------------------------------------- */

/* A key (frozen-<round>-<n>) whose partition's primary is node index. */
static void s_key_owned_by(const kv_table_t *table, uint16_t index, int round, char *out,
                           size_t cap) {
    for (int n = 0; n < 100000; n++) {
        snprintf(out, cap, "frozen-%d-%d", round, n);
        uint32_t p = kv_partition_of(out, strlen(out), kv_table_partitions(table));
        if (kv_table_owner(table, p, 0) == index) return;
    }
    cr_assert_fail("no key maps to node %u", index);
}

/* A GET on its own thread, with its own curl handle (kv_get's handle is
 * thread-local and would outlive the thread). */
typedef struct {
    char url[192]; /* the request */
    long status;   /* its answer, 0 when none */
    pthread_t thread;
} s_async_t;

static size_t s_discard(char *data, size_t size, size_t count, void *arg) {
    return size * count;
}

static void *s_async_run(void *arg) {
    s_async_t *call = arg;
    CURL *curl = curl_easy_init();
    if (!curl) return NULL;
    curl_easy_setopt(curl, CURLOPT_URL, call->url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &call->status);
    curl_easy_cleanup(curl);
    return NULL;
}

/* One freeze: a primary stopped until the coordinator has replaced it
 * (plus margin ms), with a write sent to it the moment it froze; then
 * thawed, and left to rejoin a balanced cluster. */
static void s_freeze_once(kv_cluster_t *cluster, kv_probe_t *probe, int victim, int round,
                          int margin_ms) {
    const char *id = cluster->nodes[victim].id;
    kv_table_t *table = kv_probe_table(probe, 1000);
    cr_assert_not_null(table);
    int index = kv_table_find(table, id);
    cr_assert_geq(index, 0);
    s_async_t call = {.status = 0};
    char key[64];
    s_key_owned_by(table, (uint16_t)index, round, key, sizeof(key));
    kv_table_destroy(&table);
    snprintf(call.url, sizeof(call.url), "http://127.0.0.1:%d/set?k=%s&v=written-while-frozen",
             cluster->http_port, key);
    long long start = kv_now_ms();
    kv_cluster_signal_node(cluster, victim, SIGSTOP);
    pthread_create(&call.thread, NULL, s_async_run, &call);
    s_recovery_t times = s_wait_recovery(probe, &id, 1, start, 0);
    cr_assert(times.writable >= 0, "%s frozen: no failover", id);
    s_sleep_ms(margin_ms);
    long long frozen = kv_now_ms() - start;
    kv_cluster_signal_node(cluster, victim, SIGCONT);
    long long settle = s_wait_balanced_with(probe, cluster, id);
    pthread_join(call.thread, NULL);
    kv_reply_t reply;
    char get[128];
    snprintf(get, sizeof(get), "/get?k=%s", key);
    cr_assert_eq(kv_get(cluster->http_port, get, &reply), 0);
    printf("froze %s for %lld ms (down after %lld ms, replaced after %lld ms), active again "
           "in a balanced cluster %lld ms after the thaw; the write sent to it when it froze "
           "got %ld, reading it back gives %ld %s\n",
           id, frozen, times.down, times.writable, settle, call.status, reply.status, reply.body);
    fflush(stdout);
    cr_assert_geq(settle, 0, "%s did not come back", id);
    /* Sent to a primary that froze at once and woke only once replaced.
     * Its lease ran out meanwhile, so when it wakes it refuses the write
     * (NO_LEASE: nothing written) and the gateway re-routes it to the new
     * primary, which may acknowledge it; or the gateway's deadline passes
     * first (504). Either way the frozen primary itself acknowledges
     * nothing, and an acknowledged write must be readable. */
    cr_expect(call.status == 200 || call.status == 504 || call.status == 503, "the write got %ld",
              call.status);
    if (call.status == 200) cr_expect_eq(reply.status, 200, "acknowledged, then lost");
    kv_reply_free(&reply);
}

Test(replication, frozen_primary_acknowledges_nothing_and_serves_nothing_stale, .timeout = 240) {
    unsigned seed = s_seed();
    kv_cluster_t *cluster = s_start(NULL);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    s_print_settings();
    cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0);
    kv_workload_t *workload = kv_workload_start(cluster->http_port, S_KEYS, S_THREADS, seed);
    cr_assert_not_null(workload);
    s_sleep_ms(500);
    /* Thawed while the gateway still waits for requests queued at the node
     * (2 s), then thawed long after. */
    int margins[] = {150, 1500};
    for (size_t i = 0; i < sizeof(margins) / sizeof(margins[0]); i++) {
        int victim = kv_cluster_random_node(cluster, &seed);
        cr_assert_geq(victim, 0, "no node left to kill");
        s_freeze_once(cluster, &probe, victim, (int)i, margins[i]);
        s_sleep_ms(1000); /* reads against the rebalanced cluster */
        kv_workload_stats_t stats = kv_workload_stats(workload);
        cr_assert_eq(stats.stale_reads, 0, "a read missed an acknowledged write");
    }
    kv_workload_stop(workload);
    s_check_data(cluster, workload, "frozen primary");
    kv_workload_destroy(&workload);
    kv_probe_close(&probe);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

/* --- 3. the coordinator dies with a node ------------------------------------- */

Test(replication, coordinator_killed_with_a_node_recovers, .timeout = 240) {
    unsigned seed = s_seed();
    kv_cluster_t *cluster = s_start(NULL);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    s_print_settings();
    cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0);
    kv_workload_t *workload = kv_workload_start(cluster->http_port, S_KEYS, S_THREADS, seed);
    cr_assert_not_null(workload);
    s_sleep_ms(500);
    for (int order = 0; order < 2; order++) { /* node first, then coordinator first */
        int victim = kv_cluster_random_node(cluster, &seed);
        cr_assert_geq(victim, 0, "no node left to kill");
        const char *id = cluster->nodes[victim].id;
        long long start = kv_now_ms();
        if (order == 0) kv_cluster_signal_node(cluster, victim, SIGKILL);
        kv_cluster_signal_coordinator(cluster, SIGKILL);
        if (order == 1) {
            s_sleep_ms(300);
            kv_cluster_signal_node(cluster, victim, SIGKILL);
        }
        s_sleep_ms(1000); /* no coordinator: no failure detection, no failover */
        kv_cluster_restart_coordinator(cluster);
        s_recovery_t times = s_wait_recovery(&probe, &id, 1, start, 1);
        cr_assert(times.replicated >= 0, "no recovery (down %lld, writable %lld)", times.down,
                  times.writable);
        int fresh = kv_cluster_add_node(cluster, 1);
        long long settle = s_wait_balanced_with(&probe, cluster, cluster->nodes[fresh].id);
        cr_assert_geq(settle, 0, "%s did not join", cluster->nodes[fresh].id);
        printf("killed %s %s the coordinator, restarted it 1 s later: %s down after %lld ms, "
               "writable after %lld ms, R copies after %lld ms; %s balanced in %lld ms\n",
               id, order == 0 ? "then" : "after", id, times.down, times.writable, times.replicated,
               cluster->nodes[fresh].id, settle);
        fflush(stdout);
    }
    kv_workload_stop(workload);
    s_check_data(cluster, workload, "coordinator and node killed");
    kv_workload_destroy(&workload);
    kv_probe_close(&probe);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

/* --- 4. replicas that miss updates ------------------------------------------ */

typedef struct {
    long long resyncs; /* snapshots re-asked */
    long long gaps;    /* ... because of a gap in the stream */
    long long beacons; /* ... because a beacon showed them behind */
} s_resyncs_t;

/* Sums the nodes' resync counters, as /status reports them (each node's
 * registry, through the gateway); -1 in resyncs when /status failed. */
static void s_count_resyncs(const kv_cluster_t *cluster, s_resyncs_t *out) {
    memset(out, 0, sizeof(*out));
    kv_reply_t reply;
    json_t *status = NULL;
    if (kv_request(cluster->http_port, "GET", "/status", &reply) == 0 && reply.status == 200)
        status = kv_reply_json(&reply);
    kv_reply_free(&reply);
    json_t *nodes = json_object_get(status, "nodes");
    if (!json_is_array(nodes)) out->resyncs = -1;
    size_t i;
    json_t *node;
    json_array_foreach(nodes, i, node) {
        json_t *counters = json_object_get(node, "counters");
        out->resyncs += json_integer_value(json_object_get(counters, "kv_repl_resyncs_total"));
        out->gaps += json_integer_value(json_object_get(counters, "kv_repl_resyncs_gap_total"));
        out->beacons +=
            json_integer_value(json_object_get(counters, "kv_repl_resyncs_behind_total"));
    }
    json_decref(status);
}

Test(replication, replicas_missing_updates_repair_themselves, .timeout = 300) {
    static const char *const node_args[] = {"--repl-hwm", "1", NULL};
    unsigned seed = s_seed();
    kv_cluster_t *cluster = s_start(node_args);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    s_print_settings();
    cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0);
    /* A burst: many clients at once, so each primary publishes many
     * updates per wake-up and a high-water mark of 1 drops most. */
    kv_workload_t *workload = kv_workload_start(cluster->http_port, S_KEYS, 16, seed);
    cr_assert_not_null(workload);
    s_sleep_ms(S_SLOW ? 4000 : 3000);
    kv_workload_stop(workload);
    s_resyncs_t resyncs;
    s_count_resyncs(cluster, &resyncs);
    kv_workload_stats_t stats = kv_workload_stats(workload);
    printf("burst with --repl-hwm 1: %llu acknowledged writes, %llu failed; %lld resyncs "
           "counted by the nodes (%lld on a gap in the stream, %lld behind a beacon)\n",
           (unsigned long long)stats.acked_writes,
           (unsigned long long)stats.failed_5xx + (unsigned long long)stats.failed_conn,
           resyncs.resyncs, resyncs.gaps, resyncs.beacons);
    fflush(stdout);
    cr_assert_gt(resyncs.resyncs, 0, "no replica noticed a dropped update: nothing was tested");
    long long sum = 0, records = 0;
    cr_expect_eq(s_settled_counts(cluster, &sum, &records), 0,
                 "replicas did not converge: %lld keys on the nodes, %lld records", sum, records);
    /* The strong check: kill nodes one at a time until one holds it all.
     * Each kill makes replicas primaries, so every acknowledged write must
     * have reached them (or the copies made from them since). */
    const char *killed[S_NODES];
    for (int k = 0; k < S_NODES - 1; k++) {
        int victim = kv_cluster_random_node(cluster, &seed);
        cr_assert_geq(victim, 0, "no node left to kill");
        killed[k] = cluster->nodes[victim].id;
        long long start = kv_now_ms();
        kv_cluster_signal_node(cluster, victim, SIGKILL);
        int last = k == S_NODES - 2; /* one node left: it cannot hold R copies */
        s_recovery_t times = s_wait_recovery(&probe, killed, k + 1, start, !last);
        cr_assert(times.writable >= 0 && (last || times.replicated >= 0),
                  "no recovery after killing %s", killed[k]);
        int checked = 0;
        int lost = kv_workload_verify(workload, cluster->http_port, &checked);
        printf("killed %s: primaries replaced after %lld ms, %s; %d keys read back, %d lost "
               "or wrong\n",
               killed[k], times.writable,
               last ? "one node left: it holds every partition" : "R copies again", checked, lost);
        fflush(stdout);
        cr_expect_eq(lost, 0, "acknowledged writes lost after killing %s", killed[k]);
    }
    kv_workload_destroy(&workload);
    kv_probe_close(&probe);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

/* --- 5. a primary killed in the middle of a hand-off -------------------------- */

/* The node (harness index) that is primary of a partition whose primary
 * is moving to a learner that holds no slot, at the stage asked (fenced or
 * still learning); its partition in *part. -1 when none within ms. */
static int s_moving_primary(const kv_cluster_t *cluster, kv_probe_t *probe, int fenced, int ms,
                            uint32_t *part) {
    long long deadline = kv_now_ms() + ms;
    while (kv_now_ms() < deadline) {
        kv_table_t *table = kv_probe_table(probe, 500);
        int found = -1;
        for (uint32_t p = 0; table && found < 0 && p < kv_table_partitions(table); p++) {
            uint16_t learner = kv_table_learner(table, p);
            uint8_t flags = kv_table_flags(table, p);
            if (learner == KV_NO_NODE ||
                kv_table_role(table, p, learner) != (int)kv_table_replication(table))
                continue; /* no move, or the learner is a replica already */
            if (!(flags & KV_PART_MOVE_PRIMARY) || !(flags & KV_PART_FENCED) != !fenced) continue;
            const char *id = kv_table_node(table, kv_table_owner(table, p, 0))->id;
            for (int i = 0; i < cluster->node_count; i++)
                if (cluster->nodes[i].pid > 0 && strcmp(cluster->nodes[i].id, id) == 0) found = i;
            *part = p;
        }
        kv_table_destroy(&table);
        if (found >= 0) return found;
        s_sleep_ms(2);
    }
    return -1;
}

Test(replication, primary_killed_during_a_hand_off_loses_nothing, .timeout = 300) {
    unsigned seed = s_seed();
    kv_cluster_t *cluster = s_start(NULL);
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    s_print_settings();
    cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0);
    kv_workload_t *workload = kv_workload_start(cluster->http_port, S_KEYS, S_THREADS, seed);
    cr_assert_not_null(workload);
    s_sleep_ms(500);
    int kills = 0;
    for (int round = 0; round < 6; round++) {
        int fresh = kv_cluster_add_node(cluster, 1); /* primaries start moving to it */
        cr_assert_geq(fresh, 0);
        uint32_t part = 0;
        int fenced = round % 2;
        int victim = s_moving_primary(cluster, &probe, fenced, 5000, &part);
        if (victim < 0) { /* the moves went by faster than we looked */
            printf("round %d: no %s hand-off caught\n", round + 1, fenced ? "fenced" : "learning");
            cr_assert_geq(s_wait_balanced_with(&probe, cluster, NULL), 0);
            continue;
        }
        const char *id = cluster->nodes[victim].id;
        long long start = kv_now_ms();
        kv_cluster_signal_node(cluster, victim, SIGKILL);
        kills++;
        s_recovery_t times = s_wait_recovery(&probe, &id, 1, start, 1);
        cr_assert(times.replicated >= 0, "round %d: no recovery after killing %s", round + 1, id);
        long long settle = s_wait_balanced_with(&probe, cluster, NULL);
        cr_assert_geq(settle, 0, "round %d: not balanced again", round + 1);
        kv_workload_stats_t stats = kv_workload_stats(workload);
        printf("round %d: killed %s, primary of partition %u while %s: down after %lld ms, "
               "writable after %lld ms, R copies after %lld ms, balanced %lld ms later; %llu "
               "stale reads\n",
               round + 1, id, part, fenced ? "fenced for its hand-off" : "its learner copied it",
               times.down, times.writable, times.replicated, settle,
               (unsigned long long)stats.stale_reads);
        fflush(stdout);
        cr_assert_eq(stats.stale_reads, 0, "a read missed an acknowledged write");
    }
    cr_expect_gt(kills, 0, "no hand-off was ever caught: nothing was tested");
    kv_workload_stop(workload);
    s_check_data(cluster, workload, "primaries killed during hand-offs");
    kv_workload_destroy(&workload);
    kv_probe_close(&probe);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}
