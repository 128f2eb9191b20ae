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
