/*  it_memory.c: nodes at their memory limit (--max-memory), over HTTP.
 *
 *  A node whose writes would take what it accounts past its limit answers
 *  them 507 OUT_OF_MEMORY and writes nothing; reads, /rm and /clear work
 *  at the limit, and so does a write that does not grow the data; /status
 *  shows each node's maxMemoryBytes, usedMemoryBytes, evictedKeys and
 *  expiredKeys. Then R = 2 with a replica whose limit is lower than its
 *  primary's: only primaries decide, so the primary refuses (507) writes
 *  its replica has no room for, though it has room itself, and the
 *  replica is never pushed past its limit by the stream.
 */
#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_harness.h"

#define S_LIMIT "2m"             /* every node's --max-memory in the first test */
#define S_LIMIT_BYTES (2u << 20) /* ... in bytes */
#define S_VALUE 256              /* value bytes: the longest the API takes */
#define S_MAX_WRITES 40000       /* a node must refuse long before this */
#define S_FULL_STREAK 64         /* refusals in a row: every node is full */
#define S_OVERSHOOT (256u << 10) /* a node may pass its limit by a block and a bucket array */

static const char *const s_node_args[] = {"--max-memory", S_LIMIT, NULL};

static char s_value[S_VALUE + 1];

/* GET target; the status, 0 when no answer came. */
static long s_status(int port, const char *target) {
    kv_reply_t reply;
    long status = kv_get(port, target, &reply) == 0 ? reply.status : 0;
    kv_reply_free(&reply);
    return status;
}

/* /set of key k<id> with the test's value: its status. */
static long s_set(int port, int id) {
    char target[64 + S_VALUE];
    snprintf(target, sizeof target, "/set?k=k%d&v=%s", id, s_value);
    return s_status(port, target);
}

/* Writes new keys from *next on until S_FULL_STREAK refusals in a row (or
 * S_MAX_WRITES); returns the id of the first refused key, -1 if none. A
 * status other than 200 or 507 fails the test. */
static int s_fill(int port, int *next) {
    int first_refused = -1, streak = 0;
    for (; *next < S_MAX_WRITES && streak < S_FULL_STREAK; (*next)++) {
        long status = s_set(port, *next);
        cr_assert(status == 200 || status == 507, "set k%d: %ld", *next, status);
        streak = status == 507 ? streak + 1 : 0;
        if (status == 507 && first_refused < 0) first_refused = *next;
    }
    return first_refused;
}

/* /status's node i as JSON (owned by *root, decref it). */
static json_t *s_node_status(int port, size_t i, json_t **root) {
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, "/status", &reply), 0);
    cr_assert_eq(reply.status, 200);
    *root = kv_reply_json(&reply);
    kv_reply_free(&reply);
    json_t *node = json_array_get(json_object_get(*root, "nodes"), i);
    cr_assert_not_null(node, "no node %zu in /status", i);
    return node;
}

static json_int_t s_int(json_t *node, const char *name) {
    json_t *value = json_object_get(node, name);
    cr_assert(json_is_integer(value), "%s is not an integer", name);
    return json_integer_value(value);
}

Test(it_memory, writes_past_the_limit_get_507_and_the_rest_works, .timeout = 240) {
    memset(s_value, 'v', S_VALUE);
    kv_cluster_options_t options = {2, 1, 2, NULL, s_node_args, NULL};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    int port = cluster->http_port, next = 0;
    int refused = s_fill(port, &next);
    cr_assert_geq(refused, 0, "no write refused in %d", S_MAX_WRITES);
    cr_log_info("first refusal after %d keys, full after %d", refused, next);
    char target[64 + S_VALUE];
    snprintf(target, sizeof target, "/get?k=k%d", refused);
    cr_expect_eq(s_status(port, target), 404, "the refused write wrote something");
    cr_expect_eq(s_status(port, "/get?k=k0"), 200, "reads work at the limit");
    cr_expect_eq(s_status(port, "/is?k=k1"), 200);
    cr_expect_eq(s_set(port, 1), 200, "an overwrite that does not grow works at the limit");
    cr_expect_eq(s_status(port, "/set?k=k2&v=short"), 200, "nor one that shrinks");
    cr_expect_eq(s_status(port, "/rm?k=k0"), 200, "/rm works at the limit");
    for (size_t i = 0; i < 2; i++) {
        json_t *root;
        json_t *node = s_node_status(port, i, &root);
        cr_expect_eq(s_int(node, "maxMemoryBytes"), S_LIMIT_BYTES);
        json_int_t used = s_int(node, "usedMemoryBytes");
        cr_log_info("node %zu: used %lld of %d bytes, store %lld", i, (long long)used,
                    S_LIMIT_BYTES, (long long)s_int(node, "memoryBytes"));
        cr_expect_gt(used, S_LIMIT_BYTES / 2, "node %zu uses %lld", i, (long long)used);
        cr_expect_leq(used, S_LIMIT_BYTES + S_OVERSHOOT, "node %zu past its limit", i);
        cr_expect_eq(s_int(node, "evictedKeys"), 0);
        cr_expect_eq(s_int(node, "expiredKeys"), 0);
        cr_expect_geq(s_int(node, "memoryBytes"), 0);
        cr_expect_not_null(json_object_get(node, "memoryLimitBytes"), "the cgroup's, null or not");
        json_decref(root);
    }
    cr_expect_eq(s_status(port, "/clear"), 200, "/clear works at the limit");
    cr_expect_eq(s_set(port, refused), 200, "room again after /clear");
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}

/* Polls until the table has both nodes holding every partition. */
static int s_replicated(void *arg) {
    kv_probe_t *probe = arg;
    kv_table_t *table = kv_probe_table(probe, 500);
    int ok = table && kv_cluster_fully_replicated(table);
    kv_table_destroy(&table);
    return ok;
}

Test(it_memory, a_replica_lower_limit_makes_its_primary_refuse, .timeout = 240) {
    memset(s_value, 'v', S_VALUE);
    setenv("KV_MAX_MEMORY", "16m", 1); /* node 0: roomy */
    kv_cluster_options_t options = {1, 2, 1, NULL, NULL, NULL};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    setenv("KV_MAX_MEMORY", S_LIMIT, 1); /* node 1: small */
    cr_assert_geq(kv_cluster_add_node(cluster, 1), 0);
    unsetenv("KV_MAX_MEMORY");
    kv_probe_t probe;
    cr_assert_eq(kv_probe_open(&probe, cluster), 0);
    cr_assert_eq(kv_wait_until(s_replicated, &probe, 60000, 200), 0, "never fully replicated");
    kv_probe_close(&probe);
    cr_assert_eq(kv_cluster_wait_balanced(cluster, 60000), 0);
    int next = 0;
    cr_assert_geq(s_fill(cluster->http_port, &next), 0, "no write refused");
    json_t *root;
    json_t *big = s_node_status(cluster->http_port, 0, &root);
    cr_expect_eq(s_int(big, "maxMemoryBytes"), 16u << 20);
    cr_expect_lt(s_int(big, "usedMemoryBytes"), 8u << 20, "node 0 refused only once full itself");
    json_decref(root);
    json_t *small = s_node_status(cluster->http_port, 1, &root);
    cr_expect_leq(s_int(small, "usedMemoryBytes"), S_LIMIT_BYTES + S_OVERSHOOT,
                  "the stream pushed the replica past its limit");
    json_decref(root);
    uint64_t copy = 0;
    cr_expect_eq(kv_cluster_node_counter(cluster, 0, "kv_repl_memory_refusals_copy_total", &copy),
                 0);
    cr_expect_gt(copy, 0, "node 0 never refused for its replica");
    cr_log_info("full after %d keys; node 0 refused %llu writes for node 1", next,
                (unsigned long long)copy);
    cr_expect_eq(s_status(cluster->http_port, "/clear"), 200);
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}

/* --- eviction (--eviction allkeys-lru) ------------------------------------------ */

#define S_EVICT_LIMIT "2m" /* each node's limit */
#define S_EVICT_VALUE 200  /* value bytes */
#define S_EVICT_ROUNDS 2   /* writes past the first eviction: this many times as many */

static const char *const s_evict_args[] = {"--max-memory", S_EVICT_LIMIT, "--eviction",
                                           "allkeys-lru", NULL};

/* /set of e<id> with a value of S_EVICT_VALUE bytes: its status. */
static long s_evict_set(int port, int id) {
    char target[64 + S_EVICT_VALUE];
    snprintf(target, sizeof target, "/set?k=e%d&v=%.*s", id, S_EVICT_VALUE, s_value);
    return s_status(port, target);
}

/* GET of e<id>: its status. */
static long s_evict_get(int port, int id) {
    char target[64];
    snprintf(target, sizeof target, "/get?k=e%d", id);
    return s_status(port, target);
}

/* A node's figure name from /status. */
static json_int_t s_node_int(int port, size_t i, const char *name) {
    json_t *root;
    json_int_t value = s_int(s_node_status(port, i, &root), name);
    json_decref(root);
    return value;
}

/* Both nodes hold every key (R = 2 on 2 nodes): the same count once the
 * stream is applied. */
static int s_same_keys(void *arg) {
    int port = *(int *)arg;
    return s_node_int(port, 0, "keys") == s_node_int(port, 1, "keys");
}

/* The cache test at a real limit: with allkeys-lru, write until
 * the nodes first evict (N keys), then twice as many keys again, while a
 * client keeps reading the hot tenth (one read per write, round robin over
 * the hot keys written so far, then over the hot tenth of the first N). Every write is answered 200
 * (no 507), the nodes stay under their limit, at least 90 % of the hot keys survive (a random
 * victim would keep about a third), and the replica holds exactly what its primary holds. */
Test(it_memory, allkeys_lru_keeps_the_hot_keys_while_twice_the_limit_is_written, .timeout = 600) {
    memset(s_value, 'v', S_VALUE);
    kv_cluster_options_t options = {2, 2, 2, NULL, s_evict_args, NULL};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    int port = cluster->http_port, n = 0, read = 0;
    while (n < S_MAX_WRITES) { /* until the first eviction, reading as it goes */
        cr_assert_eq(s_evict_set(port, n), 200, "set e%d", n);
        cr_assert_eq(s_evict_get(port, (read++ % (n / 10 + 1)) * 10), 200);
        if (++n % 250 == 0 &&
            (s_node_int(port, 0, "evictedKeys") > 0 || s_node_int(port, 1, "evictedKeys") > 0))
            break;
    }
    cr_assert_lt(n, S_MAX_WRITES, "nothing evicted after %d keys", n);
    int hot = n / 10;
    for (int i = 0; i < S_EVICT_ROUNDS * n; i++) {
        long status = s_evict_set(port, n + i);
        cr_assert_eq(status, 200, "set e%d past the limit: %ld", n + i, status);
        status = s_evict_get(port, (read++ % hot) * 10);
        cr_assert(status == 200 || status == 404, "get: %ld", status);
    }
    int left = 0;
    for (int i = 0; i < hot; i++) left += s_evict_get(port, i * 10) == 200;
    cr_log_info("evicting from %d keys on, %d written after: %d of %d hot keys left", n,
                S_EVICT_ROUNDS * n, left, hot);
    cr_expect_geq(left * 10, hot * 9, "%d of %d hot keys left", left, hot);
    cr_expect_eq(kv_wait_until(s_same_keys, &port, 10000, 100), 0,
                 "the replica holds other keys than its primary");
    for (size_t i = 0; i < 2; i++) {
        json_int_t used = s_node_int(port, i, "usedMemoryBytes");
        json_int_t evicted = s_node_int(port, i, "evictedKeys");
        cr_log_info("node %zu: used %lld of %u bytes, %lld keys, %lld evicted", i, (long long)used,
                    S_LIMIT_BYTES, (long long)s_node_int(port, i, "keys"), (long long)evicted);
        cr_expect_leq(used, S_LIMIT_BYTES + S_OVERSHOOT, "node %zu past its limit", i);
        cr_expect_gt(evicted, 0, "node %zu evicted nothing as primary", i);
    }
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}

/* --- a learner that cannot fit a partition --------------------------------------- */

/* Every key e<0..n-1> reads 200: 1, else 0. */
static int s_all_readable(int port, int n) {
    for (int i = 0; i < n; i++)
        if (s_evict_get(port, i) != 200) return 0;
    return 1;
}

/* A node joins with a limit far below what it would be sent: each
 * partition it is to learn does not fit, it gives it up (holding nothing
 * of it, never past its limit), the coordinator cancels the moves and
 * sends it no more; the cluster stays healthy: every key reads, writes
 * work, the first node keeps its partitions. */
Test(it_memory, a_learner_that_cannot_fit_gives_the_partitions_up, .timeout = 300) {
    memset(s_value, 'v', S_VALUE);
    kv_cluster_options_t options = {1, 1, 1, NULL, NULL, NULL};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    int port = cluster->http_port, n = 20000; /* ~5 MB */
    for (int i = 0; i < n; i++) cr_assert_eq(s_evict_set(port, i), 200, "set e%d", i);
    setenv("KV_MAX_MEMORY", "1m", 1);
    cr_assert_geq(kv_cluster_add_node(cluster, 1), 0);
    unsetenv("KV_MAX_MEMORY");
    uint64_t full = 0;
    for (int tries = 0; tries < 300 && full < 2; tries++) {
        kv_cluster_node_counter(cluster, 1, "kv_repl_snapshots_full_total", &full);
        zclock_sleep(100);
    }
    cr_assert_geq(full, 2, "node 1 gave up %llu partitions", (unsigned long long)full);
    zclock_sleep(3000); /* moves cancelled; none sent again */
    uint64_t later = 0;
    kv_cluster_node_counter(cluster, 1, "kv_repl_snapshots_full_total", &later);
    zclock_sleep(3000);
    uint64_t last = 0;
    kv_cluster_node_counter(cluster, 1, "kv_repl_snapshots_full_total", &last);
    cr_expect_eq(last, later, "the coordinator keeps sending partitions to the full node");
    cr_expect_eq(s_status(port, "/healthcheck"), 200);
    cr_expect(s_all_readable(port, n), "a key does not read");
    cr_expect_eq(s_evict_set(port, n), 200, "writes stop");
    json_int_t used = s_node_int(port, 1, "usedMemoryBytes");
    cr_log_info("node 1 gave up %llu partitions, uses %lld of 1 MiB, holds %lld keys",
                (unsigned long long)last, (long long)used, (long long)s_node_int(port, 1, "keys"));
    cr_expect_leq(used, (1 << 20) + S_OVERSHOOT, "node 1 past its limit");
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}
