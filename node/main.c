/*  main.c of kv-node: flags, then the node actor until SIGINT or SIGTERM. */
#include <czmq.h>
#include <signal.h>
#include <unistd.h>

#include "kv_actor.h"
#include "kv_endpoint.h"
#include "kv_evict.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_mem.h"
#include "kv_node.h"
#include "kv_opts.h"
#include "kv_sched.h"

static const char *s_summary =
    "kv-node: holds partitions of the key-value store in memory and serves them\n"
    "to gateways over ZeroMQ; registers with the coordinator and heartbeats.";

int main(int argc, char **argv) {
    char hostname[KV_NODE_ID_MAX + 1] = "node";
    gethostname(hostname, sizeof(hostname) - 1);
    const char *id = hostname, *bind = "tcp://*:5601", *pub = "tcp://*:5602";
    const char *advertise = NULL, *pub_advertise = NULL;
    const char *coordinator = "tcp://127.0.0.1:5550", *log_level = "info";
    const char *max_memory_text = "";
    const char *eviction = "noeviction";
    long heartbeat_ms = KV_HEARTBEAT_MS, write_acks = 1, repl_hwm = 1000000;
    long drain_timeout_ms = 120000, sched_batch = 1, leases = 1, clock_offset_ms = 0;
    const kv_opt_t opts[] = {
        {"id", "KV_NODE_ID", KV_OPT_STRING, &id, 0, 0, "unique node id (default: host name)"},
        {"bind", "KV_NODE_BIND", KV_OPT_STRING, &bind, 0, 0, "ZeroMQ endpoint for requests"},
        {"advertise", "KV_NODE_ADVERTISE", KV_OPT_STRING, &advertise, 0, 0,
         "request endpoint others connect to (default: bind, '*' as host name)"},
        {"pub", "KV_NODE_PUB", KV_OPT_STRING, &pub, 0, 0, "ZeroMQ endpoint for replication"},
        {"pub-advertise", "KV_NODE_PUB_ADVERTISE", KV_OPT_STRING, &pub_advertise, 0, 0,
         "replication endpoint others connect to (default: derived from --pub)"},
        {"coordinator", "KV_COORDINATOR", KV_OPT_STRING, &coordinator, 0, 0,
         "coordinator ROUTER endpoint; empty: wait to be invited with /join"},
        {"heartbeat-ms", "KV_HEARTBEAT_MS", KV_OPT_LONG, &heartbeat_ms, 10, 60000,
         "heartbeat period in milliseconds"},
        {"write-acks", "KV_WRITE_ACKS", KV_OPT_LONG, &write_acks, 0, KV_REPLICATION_MAX - 1,
         "replicas that must confirm a write before it is acknowledged (capped at R-1)"},
        {"repl-hwm", "KV_REPL_HWM", KV_OPT_LONG, &repl_hwm, 1, 100000000,
         "replication PUB high-water mark, in messages (a replica that falls further behind "
         "resyncs)"},
        {"drain-timeout-ms", "KV_DRAIN_TIMEOUT_MS", KV_OPT_LONG, &drain_timeout_ms, 0, 3600000,
         "on SIGTERM, longest wait for the partitions to move away"},
        {"sched-batch", "KV_SCHED_BATCH", KV_OPT_LONG, &sched_batch, 0, 1,
         "1: run under SCHED_BATCH, batches per wake-up instead of a switch per message"},
        {"leases", "KV_LEASES", KV_OPT_LONG, &leases, 0, 1,
         "1: serve as primary only while the coordinator's lease holds (0: tests only)"},
        {"max-memory", "KV_MAX_MEMORY", KV_OPT_STRING, &max_memory_text, 0, 0,
         "memory limit: bytes (k, m, g suffixes), N% of the cgroup's limit, or none "
         "(default: 90% of the cgroup's limit, none without one); writes past it get 507"},
        {"log-level", "KV_LOG_LEVEL", KV_OPT_STRING, &log_level, 0, 0,
         "error, warn, info or debug"},
        {"eviction", "KV_EVICTION", KV_OPT_STRING, &eviction, 0, 0,
         "what a node at its memory limit gives up to make room: noeviction (refuse the "
         "write), allkeys-lru, volatile-lru or volatile-ttl"},
        {"clock-offset-ms", "KV_CLOCK_OFFSET_MS", KV_OPT_LONG, &clock_offset_ms, -86400000,
         86400000, "tests only: shifts the clock expiry deadlines use (a skewed node)"},
    };
    int parsed = kv_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, s_summary);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    int level = kv_log_level_parse(log_level);
    if (level < 0) {
        fprintf(stderr, "invalid --log-level '%s'\n", log_level);
        return 2;
    }
    kv_evict_policy_t policy;
    if (kv_evict_policy_parse(eviction, &policy) != 0) {
        fprintf(stderr,
                "invalid --eviction '%s' (noeviction, allkeys-lru, volatile-lru, volatile-ttl)\n",
                eviction);
        return 2;
    }
    char advertise_buf[KV_ENDPOINT_MAX + 1], pub_buf[KV_ENDPOINT_MAX + 1];
    if (!advertise && kv_endpoint_advertise(bind, advertise_buf, sizeof(advertise_buf)) == 0)
        advertise = advertise_buf;
    if (!pub_advertise && kv_endpoint_advertise(pub, pub_buf, sizeof(pub_buf)) == 0)
        pub_advertise = pub_buf;
    if (!advertise || !pub_advertise || !*id || strlen(id) > KV_NODE_ID_MAX) {
        fprintf(stderr, "invalid node id or endpoints\n");
        return 2;
    }
    uint64_t max_memory = 0;
    if (kv_mem_parse_limit(max_memory_text, kv_mem_cgroup_limit(), &max_memory) != 0) {
        fprintf(stderr, "invalid --max-memory '%s'\n", max_memory_text);
        return 2;
    }
    kv_log_init(id, (kv_log_level_t)level);
    if (sched_batch && kv_sched_batch() != 0) /* before any thread: they inherit it */
        kv_log_warn("cannot switch to SCHED_BATCH: %s", strerror(errno));
    zsys_init();
    zsys_set_logstream(NULL);
    kv_signals_init();
    kv_node_config_t config = {
        id,         bind,     advertise,        pub,    pub_advertise,   coordinator, heartbeat_ms,
        write_acks, repl_hwm, drain_timeout_ms, leases, clock_offset_ms, max_memory,  (int)policy};
    zactor_t *node = kv_actor_start(kv_node_actor, &config);
    if (!node) return 1;
    /* SIGTERM drains first; SIGINT (or a second signal) stops at once. */
    for (int draining = 0;;) {
        char *message = NULL;
        int signal = kv_actor_wait(node, &message);
        int left = message && streq(message, "LEFT");
        zstr_free(&message);
        if (left || signal == SIGINT || (signal && draining)) break;
        if (signal == SIGTERM) {
            draining = 1;
            zstr_send(node, "DRAIN");
        }
    }
    zactor_destroy(&node);
    return 0;
}
