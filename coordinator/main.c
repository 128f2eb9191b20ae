/*  main.c of kv-coordinator: flags, then the coordinator actor until SIGINT
 *  or SIGTERM. */
#include <czmq.h>

#include "kv_actor.h"
#include "kv_coord.h"
#include "kv_endpoint.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_opts.h"

static const char *s_summary =
    "kv-coordinator: tracks the nodes of the key-value store, assigns hash\n"
    "partitions to them and publishes the routing table to gateways and nodes.";

int main(int argc, char **argv) {
    kv_coord_config_t config = {"tcp://*:5550",
                                "tcp://*:5551",
                                NULL,
                                KV_PARTITIONS_DEFAULT,
                                KV_REPLICATION_DEFAULT,
                                1,
                                KV_NODE_TIMEOUT_MS,
                                64,
                                KV_LEASE_MS,
                                KV_LEASE_MARGIN_MS};
    const char *log_level = "info";
    const kv_opt_t opts[] = {
        {"bind", "KV_COORD_BIND", KV_OPT_STRING, &config.bind, 0, 0,
         "ZeroMQ endpoint for nodes and gateways (ROUTER)"},
        {"pub", "KV_COORD_PUB", KV_OPT_STRING, &config.pub_bind, 0, 0,
         "ZeroMQ endpoint where routing tables are published (PUB)"},
        {"advertise", "KV_COORD_ADVERTISE", KV_OPT_STRING, &config.advertise, 0, 0,
         "ROUTER endpoint nodes invited by /join connect to (default: bind, '*' as host name)"},
        {"partitions", "KV_PARTITIONS", KV_OPT_LONG, &config.partitions, 1, KV_PARTITIONS_MAX,
         "hash partitions, fixed for the life of the cluster"},
        {"replication", "KV_REPLICATION", KV_OPT_LONG, &config.replication, 1, KV_REPLICATION_MAX,
         "owners per partition: one primary and R-1 replicas"},
        {"min-nodes", "KV_MIN_NODES", KV_OPT_LONG, &config.min_nodes, 1, KV_MAX_NODES,
         "nodes that must register before partitions are first assigned"},
        {"node-timeout-ms", "KV_NODE_TIMEOUT_MS", KV_OPT_LONG, &config.node_timeout_ms, 50, 600000,
         "heartbeat silence after which a node is marked down"},
        {"max-moves", "KV_MAX_MOVES", KV_OPT_LONG, &config.max_moves, 1, 65536,
         "partitions copied to new owners at once"},
        {"lease-ms", "KV_LEASE_MS", KV_OPT_LONG, &config.lease_ms, 0, 600000,
         "primary lease granted with each heartbeat; failover waits for it (0: off, tests only)"},
        {"lease-margin-ms", "KV_LEASE_MARGIN_MS", KV_OPT_LONG, &config.lease_margin_ms, 0, 60000,
         "clock-drift margin: taken off each grant, added to the wait before a failover"},
        {"log-level", "KV_LOG_LEVEL", KV_OPT_STRING, &log_level, 0, 0,
         "error, warn, info or debug"},
    };
    int parsed = kv_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, s_summary);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    int level = kv_log_level_parse(log_level);
    if (level < 0) {
        fprintf(stderr, "invalid --log-level '%s'\n", log_level);
        return 2;
    }
    char advertise[KV_ENDPOINT_MAX + 1];
    if (!config.advertise && kv_endpoint_advertise(config.bind, advertise, sizeof(advertise)) == 0)
        config.advertise = advertise;
    if (!config.advertise) {
        fprintf(stderr, "invalid --bind or --advertise\n");
        return 2;
    }
    if (config.lease_ms > 0 && config.lease_margin_ms >= config.lease_ms) {
        fprintf(stderr, "--lease-margin-ms must be below --lease-ms\n");
        return 2;
    }
    kv_log_init("coordinator", (kv_log_level_t)level);
    zsys_init();
    zsys_set_logstream(NULL);
    kv_signals_init();
    zactor_t *coord = kv_actor_start(kv_coord_actor, &config);
    if (!coord) return 1;
    kv_actor_wait(NULL, NULL);
    zactor_destroy(&coord);
    return 0;
}
