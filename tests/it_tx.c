/*  it_tx.c: read-modify-write over HTTP on a real cluster (R = 2, 4 nodes),
 *  and the message counters tests read from nodes and the coordinator.
 *
 *  Lost updates: client threads increment one counter key, each increment
 *  a GET (value and X-Version) then /set?v=value+1&ifVersion=version,
 *  retried on 409, while the counter's primary is SIGKILLed and a fresh
 *  node added midway. Every acknowledged increment (200) must be in the
 *  final value and no two may have written the same value; writes whose
 *  outcome is unknown (504, or no answer) may or may not be:
 *  acknowledged <= final <= acknowledged + unknown. KV_TX_SECONDS sets the
 *  run's length (default 10 s); the counts are printed for the record.
 *
 *  Counters: kv_cluster_node_counter and kv_cluster_coordinator_counter
 *  read one counter of a process's STATS_REPLY, among them the messages it
 *  received by type (kv_msg_counts.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_harness.h"

#define S_NODES 4         /* nodes in every cluster here */
#define S_REPLICATION 2   /* R */
#define S_THREADS 8       /* clients incrementing the counter */
#define S_SECONDS 10      /* default run (KV_TX_SECONDS) */
#define S_SETTLE_MS 30000 /* longest wait for the cluster to settle after the kill */
#define S_SETS 100        /* writes of the counters test */

static const char *const s_coordinator_args[] = {"--node-timeout-ms", "800", NULL};

static kv_cluster_t *s_start(void) {
    kv_cluster_options_t options = {S_NODES, S_REPLICATION, S_NODES,
                                    NULL,    NULL,          s_coordinator_args};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster, "cluster did not start");
    cr_assert_eq(kv_cluster_wait_balanced(cluster, S_SETTLE_MS), 0, "cluster not balanced");
    return cluster;
}

static void s_sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR) continue; /* sleep the rest */
}

/* --- one client ------------------------------------------------------------- */

typedef struct {
    int port;             /* gateway */
    long long until;      /* mono ms to stop at */
    long acked;           /* 200: the increment happened */
    long conflicts;       /* 409: someone else's came first */
    long unknown;         /* 504 or no answer: it may have happened */
    long unavailable;     /* 503: it did not happen */
    long other;           /* any other answer: a failure */
    long failed_reads;    /* GETs that did not answer a value (retried) */
    long *values;         /* the values acknowledged writes wrote */
    size_t count, cap;    /* of values */
    char last_error[256]; /* the last "other" answer, for the report */
} s_client_t;

/* GETs the counter: 0 with its value and version, -1 otherwise. */
static int s_read(int port, long *value, char *version, size_t cap) {
    kv_reply_t reply;
    int rc = -1;
    if (kv_get(port, "/get?k=counter", &reply) == 0 && reply.status == 200 && reply.version[0]) {
        json_t *body = kv_reply_json(&reply);
        const char *text = json_string_value(body);
        char *end = NULL;
        if (text) *value = strtol(text, &end, 10);
        if (text && *text && end && !*end) rc = 0;
        snprintf(version, cap, "%s", reply.version);
        json_decref(body);
    }
    kv_reply_free(&reply);
    return rc;
}

static void s_remember(s_client_t *client, long value) {
    if (client->count == client->cap) {
        size_t cap = client->cap ? client->cap * 2 : 1024;
        long *grown = realloc(client->values, cap * sizeof(*grown));
        if (!grown) return; /* checked: count < acked */
        client->values = grown;
        client->cap = cap;
    }
    client->values[client->count++] = value;
}

/* One increment attempt: GET, then the conditional /set, counted. */
static void s_increment(s_client_t *client) {
    long value = 0;
    char version[32], target[128];
    if (s_read(client->port, &value, version, sizeof(version)) != 0) {
        client->failed_reads++;
        s_sleep_ms(10); /* a partition failing over: do not spin */
        return;
    }
    snprintf(target, sizeof(target), "/set?k=counter&v=%ld&ifVersion=%s", value + 1, version);
    kv_reply_t reply;
    long status = kv_get(client->port, target, &reply) == 0 ? reply.status : 0;
    if (status == 200) {
        client->acked++;
        s_remember(client, value + 1);
    } else if (status == 409)
        client->conflicts++;
    else if (status == 504 || status == 0)
        client->unknown++;
    else if (status == 503)
        client->unavailable++;
    else {
        client->other++;
        snprintf(client->last_error, sizeof(client->last_error), "%ld %s", status, reply.body);
    }
    kv_reply_free(&reply);
}

static void *s_client_run(void *arg) {
    s_client_t *client = arg;
    while (kv_now_ms() < client->until) s_increment(client);
    return NULL;
}

/* --- the failure midway ------------------------------------------------------- */

/* The running node that received the most SETs: with one key written,
 * the counter's primary. */
static int s_busiest_node(kv_cluster_t *cluster) {
    int busiest = -1;
    uint64_t most = 0;
    for (int i = 0; i < cluster->node_count; i++) {
        uint64_t sets = 0;
        if (kv_cluster_node_counter(cluster, i, "kv_node_messages_set_total", &sets) == 0 &&
            (busiest < 0 || sets > most)) {
            busiest = i;
            most = sets;
        }
    }
    return busiest;
}

typedef struct {
    kv_cluster_t *cluster;
    const char *victim; /* id of the killed node */
    const char *fresh;  /* id of the added one */
} s_swap_t;

/* /status shows the victim out of service and the fresh node active. */
static int s_swapped(void *arg) {
    s_swap_t *swap = arg;
    kv_reply_t reply;
    int victim_out = 0, fresh_in = 0;
    if (kv_get(swap->cluster->http_port, "/status", &reply) == 0 && reply.status == 200) {
        json_t *status = kv_reply_json(&reply);
        size_t i;
        json_t *node;
        victim_out = 1; /* a forgotten victim is no longer listed */
        json_array_foreach(json_object_get(status, "nodes"), i, node) {
            const char *id = json_string_value(json_object_get(node, "id"));
            const char *state = json_string_value(json_object_get(node, "state"));
            int active = state && strcmp(state, "active") == 0;
            if (id && strcmp(id, swap->victim) == 0) victim_out = !active;
            if (id && strcmp(id, swap->fresh) == 0) fresh_in = active;
        }
        json_decref(status);
    }
    kv_reply_free(&reply);
    return victim_out && fresh_in;
}

/* SIGKILLs the counter's primary, adds a fresh node and waits until the
 * cluster is balanced again. Returns the ms that took, -1 when it never was. */
static long long s_kill_and_replace(kv_cluster_t *cluster) {
    int victim = s_busiest_node(cluster);
    cr_assert_geq(victim, 0, "no node answered STATS");
    long long start = kv_now_ms();
    kv_cluster_signal_node(cluster, victim, SIGKILL);
    int fresh = kv_cluster_add_node(cluster, 1);
    cr_assert_geq(fresh, 0, "no fresh node");
    s_swap_t swap = {cluster, cluster->nodes[victim].id, cluster->nodes[fresh].id};
    if (kv_wait_until(s_swapped, &swap, S_SETTLE_MS, 50) != 0) return -1;
    long long left = S_SETTLE_MS - (kv_now_ms() - start);
    if (left <= 0 || kv_cluster_wait_balanced(cluster, (int)left) != 0) return -1;
    printf("killed %s (the counter's primary), added %s: balanced after %lld ms\n", swap.victim,
           swap.fresh, kv_now_ms() - start);
    return kv_now_ms() - start;
}

/* --- checks ------------------------------------------------------------------ */

static int s_cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Values written by two acknowledged increments: a lost update each.
 * Also checks that none is above the final value. */
static long s_duplicates(const s_client_t *clients, long final) {
    size_t total = 0;
    for (int t = 0; t < S_THREADS; t++) total += clients[t].count;
    long *all = malloc((total ? total : 1) * sizeof(*all));
    cr_assert_not_null(all);
    size_t pos = 0;
    for (int t = 0; t < S_THREADS; t++) {
        memcpy(all + pos, clients[t].values, clients[t].count * sizeof(*all));
        pos += clients[t].count;
    }
    qsort(all, total, sizeof(*all), s_cmp_long);
    long duplicates = 0;
    for (size_t i = 1; i < total; i++)
        if (all[i] == all[i - 1] && duplicates++ < 10)
            fprintf(stderr, "value %ld acknowledged twice\n", all[i]);
    if (total) cr_expect_leq(all[total - 1], final, "an acknowledged value above the final");
    free(all);
    return duplicates;
}

/* The counter once the cluster settled (reads retried for a while). */
static long s_final_value(int port) {
    long value = -1;
    char version[32];
    long long deadline = kv_now_ms() + 10000;
    while (s_read(port, &value, version, sizeof(version)) != 0 && kv_now_ms() < deadline)
        s_sleep_ms(50);
    return value;
}

static int s_seconds(void) {
    const char *text = getenv("KV_TX_SECONDS");
    long seconds = text ? strtol(text, NULL, 10) : S_SECONDS;
    return seconds > 0 && seconds < 3600 ? (int)seconds : S_SECONDS;
}

Test(tx, conditional_increments_lose_no_update, .timeout = 150) {
    kv_cluster_t *cluster = s_start();
    kv_reply_t reply;
    cr_assert_eq(kv_get(cluster->http_port, "/set?k=counter&v=0&ifVersion=0", &reply), 0);
    cr_assert_eq(reply.status, 200, "creating the counter: %ld %s", reply.status, reply.body);
    kv_reply_free(&reply);

    int seconds = s_seconds();
    long long start = kv_now_ms();
    s_client_t clients[S_THREADS];
    pthread_t threads[S_THREADS];
    memset(clients, 0, sizeof(clients));
    for (int t = 0; t < S_THREADS; t++) {
        clients[t].port = cluster->http_port;
        clients[t].until = start + seconds * 1000LL;
        cr_assert_eq(pthread_create(&threads[t], NULL, s_client_run, &clients[t]), 0);
    }
    s_sleep_ms(seconds * 1000L / 3);
    long long settled = s_kill_and_replace(cluster);
    for (int t = 0; t < S_THREADS; t++) pthread_join(threads[t], NULL);
    long long elapsed = kv_now_ms() - start;

    s_client_t sum;
    memset(&sum, 0, sizeof(sum));
    for (int t = 0; t < S_THREADS; t++) {
        sum.acked += clients[t].acked;
        sum.conflicts += clients[t].conflicts;
        sum.unknown += clients[t].unknown;
        sum.unavailable += clients[t].unavailable;
        sum.other += clients[t].other;
        sum.failed_reads += clients[t].failed_reads;
        sum.count += clients[t].count;
        if (clients[t].other) fprintf(stderr, "unexpected answer: %s\n", clients[t].last_error);
    }
    long final = s_final_value(cluster->http_port);
    long duplicates = s_duplicates(clients, final);
    printf("lost updates: %d clients, %lld ms, R=%d, %d nodes, the counter's primary killed at "
           "%d s: acknowledged %ld, conflicts %ld, unknown %ld, unavailable %ld, other %ld, "
           "failed reads %ld; final value %ld; acknowledged values written twice %ld\n",
           S_THREADS, elapsed, S_REPLICATION, S_NODES, seconds / 3, sum.acked, sum.conflicts,
           sum.unknown, sum.unavailable, sum.other, sum.failed_reads, final, duplicates);
    for (int t = 0; t < S_THREADS; t++) free(clients[t].values);

    cr_expect_geq(settled, 0, "the cluster did not settle within %d ms", S_SETTLE_MS);
    cr_expect_eq(sum.count, (size_t)sum.acked, "out of memory remembering values");
    cr_expect_gt(sum.acked, 0, "no increment acknowledged");
    cr_expect_eq(sum.other, 0, "unexpected answers");
    cr_expect_geq(final, 0, "the counter could not be read at the end");
    cr_expect_geq(final, sum.acked, "lost update: final %ld < acknowledged %ld", final, sum.acked);
    cr_expect_leq(final, sum.acked + sum.unknown, "final %ld > acknowledged %ld + unknown %ld",
                  final, sum.acked, sum.unknown);
    cr_expect_eq(duplicates, 0, "two acknowledged increments wrote the same value");
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}

/* --- message counters -------------------------------------------------------- */

/* The sum of a counter over every running node. */
static uint64_t s_nodes_sum(kv_cluster_t *cluster, const char *name) {
    uint64_t sum = 0;
    for (int i = 0; i < cluster->node_count; i++) {
        uint64_t value = 0;
        cr_assert_eq(kv_cluster_node_counter(cluster, i, name, &value), 0, "node %d: no %s", i,
                     name);
        sum += value;
    }
    return sum;
}

Test(tx, message_counters_count_by_type, .timeout = 60) {
    kv_cluster_t *cluster = s_start();
    uint64_t sets_before = s_nodes_sum(cluster, "kv_node_messages_set_total");
    for (int i = 0; i < S_SETS; i++) {
        char target[64];
        kv_reply_t reply;
        snprintf(target, sizeof(target), "/set?k=key%d&v=%d", i, i);
        cr_assert_eq(kv_get(cluster->http_port, target, &reply), 0);
        cr_assert_eq(reply.status, 200, "%s: %ld %s", target, reply.status, reply.body);
        kv_reply_free(&reply);
    }
    uint64_t sets = s_nodes_sum(cluster, "kv_node_messages_set_total") - sets_before;
    uint64_t acks = s_nodes_sum(cluster, "kv_node_messages_ack_total");
    uint64_t coord_sets = 1, heartbeats = 0, stats = 0;
    cr_assert_eq(
        kv_cluster_coordinator_counter(cluster, "kv_coord_messages_set_total", &coord_sets), 0);
    cr_assert_eq(
        kv_cluster_coordinator_counter(cluster, "kv_coord_messages_heartbeat_total", &heartbeats),
        0);
    cr_assert_eq(kv_cluster_coordinator_counter(cluster, "kv_coord_messages_stats_total", &stats),
                 0);
    printf("after %d /set: nodes received %" PRIu64 " SET, %" PRIu64
           " ACK; the coordinator %" PRIu64 " SET, %" PRIu64 " HEARTBEAT, %" PRIu64 " STATS\n",
           S_SETS, sets, acks, coord_sets, heartbeats, stats);
    cr_expect_geq(sets, S_SETS, "every /set reaches a primary as a SET");
    cr_expect_eq(coord_sets, 0, "the coordinator is not on the data path");
    cr_expect_gt(heartbeats, 0, "nodes heartbeat to the coordinator");
    cr_expect_geq(stats, 3, "the coordinator counts the STATS it answers");
    uint64_t none = 0;
    cr_expect_neq(kv_cluster_node_counter(cluster, 0, "no_such_counter", &none), 0);
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}
