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
 *
 *  The bank: 20 accounts of 100 on a cluster with two gateways. Tellers
 *  read two accounts with /tx, then move a random amount between them in
 *  one /tx conditioned on both versions, writing a receipt
 *  (receipt:<teller>:<n> = "from,to,amount") in the same transaction;
 *  auditors read every balance in one /mget or one read-only /tx, and
 *  every snapshot must add up to 2000. Meanwhile ten nodes are SIGKILLed
 *  and one drained (SIGTERM: its partitions move), one at a time, each
 *  replaced by a fresh node once every partition is back at R copies, and
 *  the second gateway is SIGKILLed (its clients move to the first). At
 *  the end the balances must be the opening ones moved by exactly the
 *  receipts in the store; every acknowledged receipt is there, none that
 *  was refused (409, 503) or never attempted is; unknown outcomes (504, or
 *  no answer from the killed gateway) may go either way. A last /tx over
 *  every account must then commit within S_UNLOCK_MS: no key stays
 *  locked. KV_BANK_SECONDS sets the transfer phase (default 60 s);
 *  KV_TEST_SEED replays the random choices (not the timing).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
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

/* Seconds from the environment variable name, else fallback. */
static int s_seconds(const char *name, int fallback) {
    const char *text = getenv(name);
    long seconds = text ? strtol(text, NULL, 10) : fallback;
    return seconds > 0 && seconds < 3600 ? (int)seconds : fallback;
}

Test(tx, conditional_increments_lose_no_update, .timeout = 150) {
    kv_cluster_t *cluster = s_start();
    kv_reply_t reply;
    cr_assert_eq(kv_get(cluster->http_port, "/set?k=counter&v=0&ifVersion=0", &reply), 0);
    cr_assert_eq(reply.status, 200, "creating the counter: %ld %s", reply.status, reply.body);
    kv_reply_free(&reply);

    int seconds = s_seconds("KV_TX_SECONDS", S_SECONDS);
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

Test(tx, message_counters_count_by_type, .timeout = 60) {
    kv_cluster_t *cluster = s_start();
    uint64_t sets_before = kv_cluster_nodes_counter(cluster, "kv_node_messages_set_total");
    for (int i = 0; i < S_SETS; i++) {
        char target[64];
        kv_reply_t reply;
        snprintf(target, sizeof(target), "/set?k=key%d&v=%d", i, i);
        cr_assert_eq(kv_get(cluster->http_port, target, &reply), 0);
        cr_assert_eq(reply.status, 200, "%.200s: %ld %.200s", target, reply.status, reply.body);
        kv_reply_free(&reply);
    }
    uint64_t sets = kv_cluster_nodes_counter(cluster, "kv_node_messages_set_total") - sets_before;
    uint64_t acks = kv_cluster_nodes_counter(cluster, "kv_node_messages_ack_total");
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

/* --- the bank ---------------------------------------------------------------- */

#define S_ACCOUNTS 20                          /* acct:0..19 */
#define S_BALANCE 100                          /* each account's opening balance */
#define S_TELLERS 8                            /* transfer clients */
#define S_AUDITORS 2                           /* snapshot readers */
#define S_KILLS 10                             /* nodes SIGKILLed, one at a time */
#define S_BANK_SECONDS 60                      /* default transfer phase (KV_BANK_SECONDS) */
#define S_TOTAL ((long)S_ACCOUNTS * S_BALANCE) /* the money in the bank */
#define S_MAX_AMOUNT 20                        /* a transfer moves 1..S_MAX_AMOUNT */
#define S_BANK_SETTLE_MS 60000 /* longest wait for R copies after a kill (sanitized build) */
#define S_UNLOCK_MS 10000      /* the closing transfer's deadline: orphans resolve in ~3 s */
#define S_RECEIPT_BATCH 50     /* receipts per /mget at the end */
#define S_REPORTED 10          /* violations printed of each kind */

/* What an attempted transfer answered. A receipt may be in the store only
 * for the last three: acknowledged, or unknown (504, or no answer from a
 * gateway being killed). */
enum { S_CONFLICT, S_ABORTED, S_UNAVAILABLE, S_FAILED, S_ACKED, S_TIMEOUT, S_NO_ANSWER, S_KINDS };

typedef struct {
    int port[2];        /* the two gateways */
    atomic_int dead[2]; /* set just before that gateway is killed */
    atomic_int stop;    /* the clients stop */
} s_bank_t;

/* The gateway client id uses: its own half's, or the other once it died.
 * *gateway says which. */
static int s_bank_port(s_bank_t *bank, int id, int *gateway) {
    *gateway = id % 2;
    if (atomic_load(&bank->dead[*gateway])) *gateway = 1 - *gateway;
    return bank->port[*gateway];
}

/* The entry of key in a /tx answer ("values" object) or an /mget answer
 * (array of {"k", "v", "version"}); NULL when absent. */
static json_t *s_entry(json_t *body, const char *key) {
    if (!json_is_array(body)) return json_object_get(json_object_get(body, "values"), key);
    size_t i;
    json_t *entry;
    json_array_foreach(body, i, entry) {
        const char *k = json_string_value(json_object_get(entry, "k"));
        if (k && strcmp(k, key) == 0) return entry;
    }
    return NULL;
}

/* Account a's balance and version in a /tx or /mget answer. Returns 0, or
 * -1 when it is missing, null or not a number. */
static int s_balance(json_t *body, int a, long *balance, long long *version) {
    char key[32];
    snprintf(key, sizeof(key), "acct:%d", a);
    json_t *entry = s_entry(body, key);
    const char *text = json_string_value(json_object_get(entry, "v"));
    char *end = NULL;
    if (!text || !*text) return -1;
    *balance = strtol(text, &end, 10);
    *version = (long long)json_integer_value(json_object_get(entry, "version"));
    return *end || *version <= 0 ? -1 : 0;
}

/* Every account's balance and version from an answer; 0, or -1. */
static int s_balances(json_t *body, long *balances, long long *versions) {
    for (int a = 0; a < S_ACCOUNTS; a++)
        if (s_balance(body, a, &balances[a], &versions[a]) != 0) return -1;
    return 0;
}

/* The target reading every account: /mget?k=acct:0&... or /tx?get.acct:0&... */
static void s_read_all_target(int tx, char *out, size_t cap) {
    size_t len = (size_t)snprintf(out, cap, "%s", tx ? "/tx?" : "/mget?");
    for (int a = 0; a < S_ACCOUNTS && len < cap; a++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s%d", a ? "&" : "",
                                tx ? "get.acct:" : "k=acct:", a);
}

/* --- a teller: transfers --------------------------------------------------- */

typedef struct {
    uint8_t from, to; /* accounts */
    uint8_t amount;   /* moved */
    uint8_t outcome;  /* S_CONFLICT..S_NO_ANSWER */
} s_transfer_t;

typedef struct {
    s_bank_t *bank;
    int id;                  /* in its receipts' keys: receipt:<id>:<n> */
    unsigned seed;           /* rand_r */
    s_transfer_t *transfers; /* every attempt; transfers[n] wrote receipt n */
    size_t count, cap;       /* of transfers */
    long outcomes[S_KINDS];  /* attempts by outcome */
    long failed_reads;       /* reads before a transfer that did not answer 200 */
    char last_error[512];    /* the last S_FAILED answer */
} s_teller_t;

/* Reads accounts from and to in one /tx: 0 with balances and versions. */
static int s_read_pair(s_teller_t *teller, int from, int to, long *balances, long long *versions) {
    char target[96];
    int gateway;
    snprintf(target, sizeof(target), "/tx?get.acct:%d&get.acct:%d", from, to);
    kv_reply_t reply;
    int port = s_bank_port(teller->bank, teller->id, &gateway), rc = -1;
    if (kv_get(port, target, &reply) == 0 && reply.status == 200) {
        json_t *body = kv_reply_json(&reply);
        rc = s_balance(body, from, &balances[0], &versions[0]) == 0 &&
                     s_balance(body, to, &balances[1], &versions[1]) == 0
                 ? 0
                 : -1;
        if (rc) snprintf(teller->last_error, sizeof(teller->last_error), "read: %s", reply.body);
        json_decref(body);
    }
    kv_reply_free(&reply);
    return rc;
}

/* The outcome of a /tx answer: status, and the error code on 409. A
 * missing answer from a gateway being killed is unknown; from a live one
 * it is a failure. */
static int s_outcome(const kv_reply_t *reply, int answered, int gateway_dead) {
    if (!answered) return gateway_dead ? S_NO_ANSWER : S_FAILED;
    if (reply->status == 200) return S_ACKED;
    if (reply->status == 503) return S_UNAVAILABLE;
    if (reply->status == 504) return S_TIMEOUT;
    if (reply->status == 409 && strstr(reply->body, "\"TX_ABORTED\"")) return S_ABORTED;
    if (reply->status == 409 && strstr(reply->body, "\"CONFLICT\"")) return S_CONFLICT;
    return S_FAILED;
}

static s_transfer_t *s_new_transfer(s_teller_t *teller) {
    if (teller->count == teller->cap) {
        size_t cap = teller->cap ? teller->cap * 2 : 1024;
        s_transfer_t *grown = realloc(teller->transfers, cap * sizeof(*grown));
        if (!grown) return NULL;
        teller->transfers = grown;
        teller->cap = cap;
    }
    return &teller->transfers[teller->count];
}

/* One transfer: read both accounts, then move a random amount with both
 * versions as conditions and the receipt written in the same /tx. */
static void s_transfer(s_teller_t *teller) {
    int from = (int)(rand_r(&teller->seed) % S_ACCOUNTS);
    int to = (int)((unsigned)(from + 1 + rand_r(&teller->seed) % (S_ACCOUNTS - 1)) % S_ACCOUNTS);
    int amount = 1 + (int)(rand_r(&teller->seed) % S_MAX_AMOUNT), gateway;
    long balances[2];
    long long versions[2];
    s_transfer_t *transfer = s_new_transfer(teller);
    if (!transfer) return; /* checked: attempts counted == count */
    if (s_read_pair(teller, from, to, balances, versions) != 0) {
        teller->failed_reads++;
        s_sleep_ms(10); /* a partition failing over: do not spin */
        return;
    }
    char target[256];
    snprintf(target, sizeof(target),
             "/tx?if.acct:%d=%lld&if.acct:%d=%lld&set.acct:%d=%ld&set.acct:%d=%ld"
             "&set.receipt:%d:%zu=%d,%d,%d",
             from, versions[0], to, versions[1], from, balances[0] - amount, to,
             balances[1] + amount, teller->id, teller->count, from, to, amount);
    *transfer = (s_transfer_t){(uint8_t)from, (uint8_t)to, (uint8_t)amount, S_FAILED};
    teller->count++;
    kv_reply_t reply;
    int port = s_bank_port(teller->bank, teller->id, &gateway);
    int answered = kv_get(port, target, &reply) == 0;
    transfer->outcome =
        (uint8_t)s_outcome(&reply, answered, atomic_load(&teller->bank->dead[gateway]));
    teller->outcomes[transfer->outcome]++;
    if (transfer->outcome == S_FAILED)
        snprintf(teller->last_error, sizeof(teller->last_error), "%.200s: %ld %.200s", target,
                 reply.status, reply.body);
    kv_reply_free(&reply);
}

static void *s_teller_run(void *arg) {
    s_teller_t *teller = arg;
    while (!atomic_load(&teller->bank->stop)) s_transfer(teller);
    return NULL;
}

/* --- an auditor: snapshots of every balance ---------------------------------- */

typedef struct {
    s_bank_t *bank;
    int id;
    long snapshots[2];      /* consistent snapshots read: by /mget, by /tx */
    long refused[4];        /* 503, 504, 409 TX_ABORTED, no answer from a killed gateway */
    long wrong_sums;        /* snapshots whose total was not the opening total */
    long failed;            /* any other answer */
    char last_error[512];   /* the last wrong sum or failure */
    char last_refusal[256]; /* the last refusal's answer, for the report */
} s_auditor_t;

/* Which refusal of a snapshot read an answer is (the index in
 * s_auditor_t.refused), or -1 when it is none. */
static int s_refusal(const kv_reply_t *reply, int answered, int gateway_dead) {
    if (!answered) return gateway_dead ? 3 : -1;
    if (reply->status == 503 || reply->status == 504) return reply->status == 503 ? 0 : 1;
    return reply->status == 409 && strstr(reply->body, "\"TX_ABORTED\"") ? 2 : -1;
}

static void s_audit(s_auditor_t *auditor, int tx) {
    char target[512];
    int gateway;
    s_read_all_target(tx, target, sizeof(target));
    kv_reply_t reply;
    int port = s_bank_port(auditor->bank, auditor->id, &gateway);
    int answered = kv_get(port, target, &reply) == 0;
    json_t *body = answered && reply.status == 200 ? kv_reply_json(&reply) : NULL;
    long balances[S_ACCOUNTS], sum = 0;
    long long versions[S_ACCOUNTS];
    if (body && s_balances(body, balances, versions) == 0) {
        auditor->snapshots[tx]++;
        for (int a = 0; a < S_ACCOUNTS; a++) sum += balances[a];
        if (sum != S_TOTAL) {
            auditor->wrong_sums++;
            snprintf(auditor->last_error, sizeof(auditor->last_error), "sum %ld: %s", sum,
                     reply.body);
        }
    } else if (s_refusal(&reply, answered, atomic_load(&auditor->bank->dead[gateway])) >= 0) {
        auditor->refused[s_refusal(&reply, answered, 1)]++;
        snprintf(auditor->last_refusal, sizeof(auditor->last_refusal), "%.16s: %ld %.200s", target,
                 reply.status, reply.body);
    } else {
        auditor->failed++;
        snprintf(auditor->last_error, sizeof(auditor->last_error), "%.200s: %ld %.200s", target,
                 reply.status, reply.body);
    }
    json_decref(body);
    kv_reply_free(&reply);
}

static void *s_auditor_run(void *arg) {
    s_auditor_t *auditor = arg;
    for (int n = 0; !atomic_load(&auditor->bank->stop); n++) s_audit(auditor, n % 2);
    return NULL;
}

/* --- the faults ------------------------------------------------------------- */

typedef struct {
    kv_probe_t probe;
    const char *gone;  /* id of the node killed or drained */
    const char *fresh; /* id of the node added */
} s_recovery_wait_t;

/* The table shows gone out of service, fresh ACTIVE, and every partition
 * with R ACTIVE owners and nothing moving. */
static int s_recovered(void *arg) {
    s_recovery_wait_t *wait = arg;
    kv_table_t *table = kv_probe_table(&wait->probe, 500);
    int gone = table ? kv_table_find(table, wait->gone) : -1;
    int fresh = table ? kv_table_find(table, wait->fresh) : -1;
    int done = table &&
               (gone < 0 || kv_table_node_state(table, (uint32_t)gone) != KV_NODE_ACTIVE) &&
               fresh >= 0 && kv_table_node_state(table, (uint32_t)fresh) == KV_NODE_ACTIVE &&
               kv_cluster_fully_replicated(table);
    kv_table_destroy(&table);
    return done;
}

/* Takes a random node away, with SIGKILL, or with SIGTERM (it drains: its
 * partitions move to the others, then it exits 0), adds a fresh node and
 * waits until every partition is back at R ACTIVE copies. Returns the ms
 * that took. */
static long long s_replace_node(kv_cluster_t *cluster, unsigned *seed, int drain) {
    int victim = kv_cluster_random_node(cluster, seed);
    cr_assert_geq(victim, 0, "no node left");
    long long start = kv_now_ms();
    kv_cluster_signal_node(cluster, victim, drain ? SIGTERM : SIGKILL);
    if (drain)
        cr_assert(kv_cluster_wait_node_exit(cluster, victim, S_BANK_SETTLE_MS),
                  "%s did not exit 0 after its drain", cluster->nodes[victim].id);
    int fresh = kv_cluster_add_node(cluster, 1);
    cr_assert_geq(fresh, 0, "no fresh node");
    s_recovery_wait_t wait = {.gone = cluster->nodes[victim].id, .fresh = cluster->nodes[fresh].id};
    cr_assert_eq(kv_probe_open(&wait.probe, cluster), 0);
    int rc = kv_wait_until(s_recovered, &wait, S_BANK_SETTLE_MS, 50);
    kv_probe_close(&wait.probe);
    cr_assert_eq(rc, 0, "%s %s, %s added: no R copies of every partition within %d ms", wait.gone,
                 drain ? "drained" : "killed", wait.fresh, S_BANK_SETTLE_MS);
    fprintf(stderr, "bank: %s %s, %s added: R copies after %lld ms\n", wait.gone,
            drain ? "drained (SIGTERM)" : "SIGKILLed", wait.fresh, kv_now_ms() - start);
    return kv_now_ms() - start;
}

/* --- the books at the end ------------------------------------------------------ */

/* GET target until it answers 200 with JSON, for up to 10 s (a partition
 * may still resolve an orphaned transaction). The body, or NULL. */
static json_t *s_get_json(int port, const char *target) {
    long long deadline = kv_now_ms() + 10000;
    for (;;) {
        kv_reply_t reply;
        long status = kv_get(port, target, &reply) == 0 ? reply.status : 0;
        json_t *body = status == 200 ? kv_reply_json(&reply) : NULL;
        int late = kv_now_ms() >= deadline;
        if (!body && late) fprintf(stderr, "bank: %s: %ld %s\n", target, status, reply.body);
        kv_reply_free(&reply);
        if (body || late) return body;
        s_sleep_ms(50);
    }
}

/* The receipt keys worth reading: every one /getKeys lists, and every one
 * a transfer acknowledged or left unknown. As an object used as a set. */
static json_t *s_receipt_keys(int port, const s_teller_t *tellers) {
    json_t *keys = json_object(), *listed = s_get_json(port, "/getKeys");
    cr_assert_not_null(listed, "/getKeys did not answer");
    size_t i;
    json_t *key;
    json_array_foreach(listed, i, key) {
        const char *text = json_string_value(key);
        if (text && strncmp(text, "receipt:", 8) == 0) json_object_set_new(keys, text, json_null());
    }
    json_decref(listed);
    for (int t = 0; t < S_TELLERS; t++)
        for (size_t n = 0; n < tellers[t].count; n++) {
            char name[48];
            snprintf(name, sizeof(name), "receipt:%d:%zu", t, n);
            if (tellers[t].transfers[n].outcome >= S_ACKED)
                json_object_set_new(keys, name, json_null());
        }
    return keys;
}

/* /mget of names[first..last): the receipts present go into present. */
static void s_read_batch(int port, const char **names, size_t first, size_t last, json_t *present) {
    char target[S_RECEIPT_BATCH * 40 + 8];
    size_t len = (size_t)snprintf(target, sizeof(target), "/mget?");
    for (size_t i = first; i < last; i++)
        len += (size_t)snprintf(target + len, sizeof(target) - len, "%sk=%s", i > first ? "&" : "",
                                names[i]);
    json_t *body = s_get_json(port, target);
    cr_assert_not_null(body, "reading receipts failed");
    size_t i;
    json_t *entry;
    json_array_foreach(body, i, entry) {
        json_t *value = json_object_get(entry, "v");
        const char *k = json_string_value(json_object_get(entry, "k"));
        if (k && json_is_string(value)) json_object_set(present, k, value);
    }
    json_decref(body);
}

/* Reads keys with /mget in batches: the receipts present, key -> value. */
static json_t *s_read_receipts(int port, json_t *keys) {
    json_t *present = json_object(), *unused;
    size_t count = 0, total = json_object_size(keys);
    const char **names = malloc((total ? total : 1) * sizeof(*names)), *name;
    cr_assert_not_null(names);
    json_object_foreach(keys, name, unused) names[count++] = name;
    for (size_t first = 0; first < count; first += S_RECEIPT_BATCH)
        s_read_batch(port, names, first,
                     first + S_RECEIPT_BATCH < count ? first + S_RECEIPT_BATCH : count, present);
    free(names);
    return present;
}

typedef struct {
    long present;              /* receipts in the store */
    long acked_missing;        /* acknowledged transfers without their receipt */
    long maybe_present;        /* unknown outcomes that happened */
    long maybe_absent;         /* unknown outcomes that did not */
    long unattempted;          /* receipts no transfer wrote, or with other content */
    long refused_present;      /* receipts of transfers answered 409 or 503 */
    long expected[S_ACCOUNTS]; /* balances the receipts present account for */
} s_books_t;

/* The transfer a receipt (key, value) stands for; NULL when none was
 * attempted with that key and content. */
static const s_transfer_t *s_receipt_transfer(const s_teller_t *tellers, const char *key,
                                              const char *value) {
    char *end = NULL, *last = NULL, expected[48];
    if (strncmp(key, "receipt:", 8) != 0) return NULL;
    long t = strtol(key + 8, &end, 10);
    if (end == key + 8 || *end != ':' || t < 0 || t >= S_TELLERS) return NULL;
    unsigned long n = strtoul(end + 1, &last, 10);
    if (last == end + 1 || *last || n >= tellers[t].count) return NULL;
    const s_transfer_t *transfer = &tellers[t].transfers[n];
    snprintf(expected, sizeof(expected), "%d,%d,%d", transfer->from, transfer->to,
             transfer->amount);
    return strcmp(value, expected) == 0 ? transfer : NULL;
}

/* Checks every receipt present against the attempts, and every attempt
 * against the receipts; the expected balances are the opening ones moved
 * by exactly the receipts present. */
static void s_check_receipts(const s_teller_t *tellers, json_t *present, s_books_t *books) {
    for (int a = 0; a < S_ACCOUNTS; a++) books->expected[a] = S_BALANCE;
    const char *key;
    json_t *value;
    json_object_foreach(present, key, value) {
        const char *text = json_string_value(value);
        const s_transfer_t *transfer = s_receipt_transfer(tellers, key, text);
        books->present++;
        if (!transfer) {
            if (books->unattempted++ < S_REPORTED)
                fprintf(stderr, "bank: receipt %s = %s was never attempted\n", key, text);
            continue;
        }
        if (transfer->outcome < S_ACKED && books->refused_present++ < S_REPORTED)
            fprintf(stderr, "bank: receipt %s = %s present, but its /tx answered %d\n", key, text,
                    transfer->outcome);
        books->expected[transfer->from] -= transfer->amount;
        books->expected[transfer->to] += transfer->amount;
    }
    for (int t = 0; t < S_TELLERS; t++)
        for (size_t n = 0; n < tellers[t].count; n++) {
            char name[48];
            int outcome = tellers[t].transfers[n].outcome, found;
            snprintf(name, sizeof(name), "receipt:%d:%zu", t, n);
            found = json_object_get(present, name) != NULL;
            if (outcome == S_ACKED && !found && books->acked_missing++ < S_REPORTED)
                fprintf(stderr, "bank: acknowledged %s is missing\n", name);
            if (outcome > S_ACKED) found ? books->maybe_present++ : books->maybe_absent++;
        }
}

/* The closing transfer: if. on all versions, set. on all accounts (the
 * same balances), retried on TX_ABORTED only. Returns the ms until it was
 * acknowledged, -1 when it was not within S_UNLOCK_MS. */
static long long s_touch_every_account(int port, const long *balances, const long long *versions,
                                       int *attempts) {
    char target[2048];
    size_t len = (size_t)snprintf(target, sizeof(target), "/tx?");
    for (int a = 0; a < S_ACCOUNTS; a++)
        len += (size_t)snprintf(target + len, sizeof(target) - len,
                                "%sif.acct:%d=%lld&set.acct:%d=%ld", a ? "&" : "", a, versions[a],
                                a, balances[a]);
    long long start = kv_now_ms();
    for (*attempts = 1;; ++*attempts) {
        kv_reply_t reply;
        long status = kv_get(port, target, &reply) == 0 ? reply.status : 0;
        int aborted = status == 409 && strstr(reply.body, "\"TX_ABORTED\"");
        if (status != 200 && !aborted)
            fprintf(stderr, "bank: the closing transfer: %ld %s\n", status, reply.body);
        kv_reply_free(&reply);
        if (status == 200) return kv_now_ms() - start;
        if (!aborted || kv_now_ms() - start > S_UNLOCK_MS) return -1;
        s_sleep_ms(20);
    }
}

/* --- the test --------------------------------------------------------------- */

static unsigned s_seed(void) {
    const char *text = getenv("KV_TEST_SEED");
    unsigned seed = text ? (unsigned)strtoul(text, NULL, 10) : (unsigned)time(NULL);
    fprintf(stderr, "bank: seed %u (set KV_TEST_SEED to replay)\n", seed);
    return seed;
}

/* Opens every account with S_BALANCE, alternating the gateways. */
static void s_open_accounts(const s_bank_t *bank) {
    for (int a = 0; a < S_ACCOUNTS; a++) {
        char target[64];
        kv_reply_t reply;
        snprintf(target, sizeof(target), "/tx?if.acct:%d=0&set.acct:%d=%d", a, a, S_BALANCE);
        cr_assert_eq(kv_get(bank->port[a % 2], target, &reply), 0, "%s: no answer", target);
        cr_assert_eq(reply.status, 200, "%.200s: %ld %.200s", target, reply.status, reply.body);
        kv_reply_free(&reply);
    }
}

/* The faults, paced over the transfer phase (seconds): S_KILLS SIGKILLs
 * and one drain, each followed by a fresh node and R copies again; the
 * second gateway SIGKILLed after the third. Returns the SIGKILLs done. */
static int s_faults(kv_cluster_t *cluster, s_bank_t *bank, unsigned *seed, long long start,
                    int seconds) {
    int events = S_KILLS + 1, kills = 0;
    long long period = seconds * 1000LL / (events + 1);
    for (int i = 0; i < events; i++) {
        long long wait = start + (i + 1) * period - kv_now_ms();
        if (wait > 0) s_sleep_ms((long)wait);
        int drain = i == events / 2;
        s_replace_node(cluster, seed, drain);
        kills += !drain;
        if (i != 2) continue;
        atomic_store(&bank->dead[1], 1); /* first: its clients' failures are expected */
        kv_cluster_kill_gateway(cluster, bank->port[1]);
        fprintf(stderr, "bank: gateway on port %d SIGKILLed; its clients moved to %d\n",
                bank->port[1], bank->port[0]);
    }
    long long left = start + seconds * 1000LL - kv_now_ms();
    if (left > 0) s_sleep_ms((long)left);
    return kills;
}

Test(tx, bank_under_faults, .timeout = 240) {
    unsigned seed = s_seed();
    int seconds = s_seconds("KV_BANK_SECONDS", S_BANK_SECONDS);
    kv_cluster_t *cluster = s_start();
    static s_bank_t bank;
    bank.port[0] = cluster->http_port;
    bank.port[1] = kv_cluster_add_gateway(cluster);
    cr_assert_gt(bank.port[1], 0, "the second gateway did not start");
    s_open_accounts(&bank);

    static s_teller_t tellers[S_TELLERS];
    static s_auditor_t auditors[S_AUDITORS];
    pthread_t teller_threads[S_TELLERS], auditor_threads[S_AUDITORS];
    for (int t = 0; t < S_TELLERS; t++) {
        tellers[t] = (s_teller_t){.bank = &bank, .id = t, .seed = seed + (unsigned)t};
        cr_assert_eq(pthread_create(&teller_threads[t], NULL, s_teller_run, &tellers[t]), 0);
    }
    for (int r = 0; r < S_AUDITORS; r++) {
        auditors[r] = (s_auditor_t){.bank = &bank, .id = r};
        cr_assert_eq(pthread_create(&auditor_threads[r], NULL, s_auditor_run, &auditors[r]), 0);
    }
    long long start = kv_now_ms();
    int kills = s_faults(cluster, &bank, &seed, start, seconds);
    atomic_store(&bank.stop, 1);
    for (int t = 0; t < S_TELLERS; t++) pthread_join(teller_threads[t], NULL);
    for (int r = 0; r < S_AUDITORS; r++) pthread_join(auditor_threads[r], NULL);
    long long elapsed = kv_now_ms() - start;

    long outcomes[S_KINDS] = {0}, failed_reads = 0, attempts = 0;
    for (int t = 0; t < S_TELLERS; t++) {
        for (int k = 0; k < S_KINDS; k++) outcomes[k] += tellers[t].outcomes[k];
        failed_reads += tellers[t].failed_reads;
        attempts += (long)tellers[t].count;
        if (tellers[t].outcomes[S_FAILED])
            fprintf(stderr, "bank: teller %d: unexpected answer: %s\n", t, tellers[t].last_error);
    }
    s_auditor_t audit = {0};
    for (int r = 0; r < S_AUDITORS; r++) {
        audit.snapshots[0] += auditors[r].snapshots[0];
        audit.snapshots[1] += auditors[r].snapshots[1];
        for (int k = 0; k < 4; k++) audit.refused[k] += auditors[r].refused[k];
        audit.wrong_sums += auditors[r].wrong_sums;
        audit.failed += auditors[r].failed;
        if (auditors[r].wrong_sums || auditors[r].failed)
            fprintf(stderr, "bank: auditor %d: %s\n", r, auditors[r].last_error);
        if (auditors[r].last_refusal[0])
            fprintf(stderr, "bank: auditor %d: last refusal: %s\n", r, auditors[r].last_refusal);
    }

    int port = bank.port[0];
    json_t *keys = s_receipt_keys(port, tellers);
    json_t *present = s_read_receipts(port, keys);
    s_books_t books = {0};
    s_check_receipts(tellers, present, &books);
    char target[512];
    s_read_all_target(0, target, sizeof(target));
    json_t *final = s_get_json(port, target);
    long balances[S_ACCOUNTS], sum = 0, off = 0;
    long long versions[S_ACCOUNTS];
    cr_assert(final && s_balances(final, balances, versions) == 0, "final balances unreadable");
    for (int a = 0; a < S_ACCOUNTS; a++) {
        sum += balances[a];
        if (balances[a] != books.expected[a] && off++ < S_REPORTED)
            fprintf(stderr, "bank: acct:%d holds %ld, its receipts say %ld\n", a, balances[a],
                    books.expected[a]);
    }
    int closing_attempts = 0;
    long long closing_ms = s_touch_every_account(port, balances, versions, &closing_attempts);

    fprintf(stderr,
            "bank: %d tellers, %d auditors, 2 gateways (1 SIGKILLed), R=%d, %d nodes, %lld ms, "
            "%d node SIGKILLs + 1 drain: %ld transfers attempted (%ld failed reads before one): "
            "committed %ld, conflicts %ld, aborted %ld, 503 %ld, 504 %ld, no answer (killed "
            "gateway) %ld, other %ld; snapshots read %ld by /mget + %ld by /tx (refused: %ld 503, "
            "%ld 504, %ld TX_ABORTED, %ld no answer; %ld wrong sums, %ld other); receipts present "
            "%ld (unknown outcomes: %ld happened, "
            "%ld did not); acknowledged missing %ld, never attempted %ld, refused but present "
            "%ld; final total %ld, accounts off %ld; closing transfer: %lld ms, %d attempt(s)\n",
            S_TELLERS, S_AUDITORS, S_REPLICATION, S_NODES, elapsed, kills, attempts, failed_reads,
            outcomes[S_ACKED], outcomes[S_CONFLICT], outcomes[S_ABORTED], outcomes[S_UNAVAILABLE],
            outcomes[S_TIMEOUT], outcomes[S_NO_ANSWER], outcomes[S_FAILED], audit.snapshots[0],
            audit.snapshots[1], audit.refused[0], audit.refused[1], audit.refused[2],
            audit.refused[3], audit.wrong_sums, audit.failed, books.present, books.maybe_present,
            books.maybe_absent, books.acked_missing, books.unattempted, books.refused_present, sum,
            off, closing_ms, closing_attempts);
    json_decref(final);
    json_decref(present);
    json_decref(keys);
    for (int t = 0; t < S_TELLERS; t++) free(tellers[t].transfers);

    cr_expect_gt(outcomes[S_ACKED], 0, "no transfer committed");
    cr_expect_eq(outcomes[S_FAILED], 0, "unexpected answers to transfers");
    cr_expect_gt(audit.snapshots[0] + audit.snapshots[1], 0, "no snapshot read");
    cr_expect_eq(audit.wrong_sums, 0, "a snapshot did not add up to %ld", S_TOTAL);
    cr_expect_eq(audit.failed, 0, "unexpected answers to snapshot reads");
    cr_expect_eq(books.acked_missing, 0, "acknowledged transfers lost");
    cr_expect_eq(books.unattempted, 0, "receipts nobody wrote");
    cr_expect_eq(books.refused_present, 0, "transfers answered 409 or 503 were written");
    cr_expect_eq(off, 0, "balances disagree with the receipts");
    cr_expect_eq(sum, S_TOTAL, "money created or destroyed");
    cr_expect_geq(closing_ms, 0, "a transfer over every account failed: a key stays locked?");
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}
