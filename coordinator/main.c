/*  main.c of kv-coordinator: flags, then the coordinator actor until SIGINT
 *  or SIGTERM. */
#include <czmq.h>

#include "kv_actor.h"
#include "kv_coord.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_opts.h"

static const char *s_summary =
    "kv-coordinator: tracks the nodes of the key-value store, assigns hash\n"
    "partitions to them and publishes the routing table to gateways and nodes.";

int main(int argc, char **argv) {
    kv_coord_config_t config = {
        "tcp://*:5550",    "tcp://*:5551", KV_PARTITIONS_DEFAULT, KV_REPLICATION_DEFAULT, 1,
        KV_NODE_TIMEOUT_MS};
    const char *log_level = "info";
    const kv_opt_t opts[] = {
        {"bind", "KV_COORD_BIND", KV_OPT_STRING, &config.bind, 0, 0,
         "ZeroMQ endpoint for nodes and gateways (ROUTER)"},
        {"pub", "KV_COORD_PUB", KV_OPT_STRING, &config.pub_bind, 0, 0,
         "ZeroMQ endpoint where routing tables are published (PUB)"},
        {"partitions", "KV_PARTITIONS", KV_OPT_LONG, &config.partitions, 1, KV_PARTITIONS_MAX,
         "hash partitions, fixed for the life of the cluster"},
        /* Nodes do not replicate yet: a table naming replicas that hold no
         * data would promise a safety the cluster lacks, so only 1 for now. */
        {"replication", "KV_REPLICATION", KV_OPT_LONG, &config.replication, 1, 1,
         "owners per partition; only 1 until replication lands"},
        {"min-nodes", "KV_MIN_NODES", KV_OPT_LONG, &config.min_nodes, 1, KV_MAX_NODES,
         "nodes that must register before partitions are assigned"},
        {"node-timeout-ms", "KV_NODE_TIMEOUT_MS", KV_OPT_LONG, &config.node_timeout_ms, 50, 600000,
         "heartbeat silence after which a node is marked down"},
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
    kv_log_init("coordinator", (kv_log_level_t)level);
    zsys_init();
    zsys_set_logstream(NULL);
    zactor_t *coord = kv_actor_start(kv_coord_actor, &config);
    if (!coord) return 1;
    kv_actor_wait_interrupt();
    zactor_destroy(&coord);
    return 0;
}
