/*  it_txmsg.c: /tx talks to its keys' primaries only.
 *
 *  Four clients run transactions on disjoint keys in parallel (each on
 *  keys of its own: a pair on two partitions, written with conditions on
 *  the versions it read), on a real cluster (R = 2, 4 nodes). Then the
 *  messages every process received, by type, tell the protocol's cost:
 *  each two-partition transaction is exactly two TX_PREPARE, one TX_COMMIT
 *  and two TX_FINISH over all nodes (no broadcast, no retry), the
 *  coordinator receives none of them (it is not on the path), and no
 *  transaction gave way to another or waited for a lock: disjoint
 *  transactions never wait for each other.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kv_harness.h"
#include "kv_hash.h"
#include "kv_limits.h"

#define S_NODES 4
#define S_CLIENTS 4
#define S_ROUNDS 50 /* transactions per client */

typedef struct {
    int port;
    int client;
    int ok, other; /* answers */
} s_client_t;

static void *s_run(void *arg) {
    s_client_t *client = arg;
    char a[32], b[32], target[256];
    char prefix[16];
    snprintf(prefix, sizeof prefix, "c%d", client->client);
    kv_keys_apart(prefix, a, b);
    uint64_t va = 0, vb = 0;
    for (int round = 0; round < S_ROUNDS; round++) {
        snprintf(target, sizeof target,
                 "/tx?if.%s=%" PRIu64 "&if.%s=%" PRIu64 "&set.%s=%d&set.%s=%d", a, va, b, vb, a,
                 round, b, round);
        kv_reply_t reply;
        if (kv_get(client->port, target, &reply) != 0 || reply.status != 200) {
            client->other++;
            if (reply.body)
                fprintf(stderr, "client %d: %ld %s\n", client->client, reply.status, reply.body);
            kv_reply_free(&reply);
            return NULL; /* the next conditions would fail anyway */
        }
        json_t *body = kv_reply_json(&reply);
        json_t *versions = json_object_get(body, "versions");
        va = (uint64_t)json_integer_value(json_object_get(versions, a));
        vb = (uint64_t)json_integer_value(json_object_get(versions, b));
        json_decref(body);
        kv_reply_free(&reply);
        client->ok++;
    }
    return NULL;
}

static uint64_t s_coordinator(kv_cluster_t *cluster, const char *name) {
    uint64_t value = 0;
    cr_assert_eq(kv_cluster_coordinator_counter(cluster, name, &value), 0, "%s", name);
    return value;
}

static const char *const s_types[] = {"tx_prepare", "tx_commit", "tx_finish", "tx_resolve"};

Test(txmsg, disjoint_transactions_reach_their_primaries_only, .timeout = 120) {
    kv_cluster_options_t options = {.nodes = S_NODES, .replication = 2};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster, "cluster did not start");
    cr_assert_eq(kv_cluster_wait_balanced(cluster, 20000), 0);
    uint64_t before[4], coordinator_before = 0;
    char name[96];
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name, "kv_node_messages_%s_total", s_types[t]);
        before[t] = kv_cluster_nodes_counter(cluster, name);
    }
    uint64_t gave_way = kv_cluster_nodes_counter(cluster, "kv_tx_gave_way_total");
    uint64_t heartbeats = s_coordinator(cluster, "kv_coord_messages_heartbeat_total");
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name, "kv_coord_messages_%s_total", s_types[t]);
        coordinator_before += s_coordinator(cluster, name);
    }

    s_client_t clients[S_CLIENTS];
    pthread_t threads[S_CLIENTS];
    for (int c = 0; c < S_CLIENTS; c++) {
        clients[c] = (s_client_t){cluster->http_port, c, 0, 0};
        pthread_create(&threads[c], NULL, s_run, &clients[c]);
    }
    int ok = 0;
    for (int c = 0; c < S_CLIENTS; c++) {
        pthread_join(threads[c], NULL);
        cr_expect_eq(clients[c].other, 0, "client %d: every transaction commits", c);
        ok += clients[c].ok;
    }
    cr_assert_eq(ok, S_CLIENTS * S_ROUNDS);

    uint64_t got[4];
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name, "kv_node_messages_%s_total", s_types[t]);
        got[t] = kv_cluster_nodes_counter(cluster, name) - before[t];
    }
    fprintf(stderr,
            "%d transactions on 2 partitions: %" PRIu64 " TX_PREPARE, %" PRIu64
            " TX_COMMIT, %" PRIu64 " TX_FINISH, %" PRIu64 " TX_RESOLVE at the nodes\n",
            ok, got[0], got[1], got[2], got[3]);
    cr_expect_eq(got[0], 2 * (uint64_t)ok, "one prepare per partition");
    cr_expect_eq(got[1], (uint64_t)ok, "one commit, at the record partition");
    cr_expect_eq(got[2], 2 * (uint64_t)ok, "a finish at the other partition, then the record's");
    cr_expect_eq(got[3], 0, "no intent orphaned");
    cr_expect_eq(kv_cluster_nodes_counter(cluster, "kv_tx_gave_way_total"), gave_way,
                 "disjoint transactions never meet");
    uint64_t coordinator_after = 0;
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name, "kv_coord_messages_%s_total", s_types[t]);
        coordinator_after += s_coordinator(cluster, name);
    }
    cr_expect_eq(coordinator_after, coordinator_before, "the coordinator is not on the path");
    fprintf(stderr, "coordinator meanwhile: %" PRIu64 " heartbeats, 0 transaction messages\n",
            s_coordinator(cluster, "kv_coord_messages_heartbeat_total") - heartbeats);
    cr_expect_eq(kv_cluster_stop(&cluster), 0);
}
