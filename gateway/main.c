/*  main.c of kv-gateway: flags, then the HTTP server (its worker threads,
 *  each an event loop with its own backend) until SIGINT or SIGTERM. */
#include <czmq.h>

#include "kv_actor.h"
#include "kv_http.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_opts.h"
#include "kv_sched.h"

static const char *s_summary =
    "kv-gateway: the HTTP door of the key-value store. Validates requests,\n"
    "routes them to the node that owns the key's partition over ZeroMQ and\n"
    "answers JSON (see the API in README.md).";

int main(int argc, char **argv) {
    kv_http_config_t http = {
        "0.0.0.0", 8080, 0, KV_REQUEST_TIMEOUT_MS, "tcp://127.0.0.1:5550", "tcp://127.0.0.1:5551"};
    const char *log_level = "info";
    long sched_batch = 1;
    const kv_opt_t opts[] = {
        {"host", "KV_HTTP_HOST", KV_OPT_STRING, &http.host, 0, 0, "IPv4 address to listen on"},
        {"port", "KV_HTTP_PORT", KV_OPT_LONG, &http.port, 1, 65535, "HTTP port"},
        {"threads", "KV_HTTP_THREADS", KV_OPT_LONG, &http.threads, 0, 64,
         "HTTP worker threads, each an event loop (0: one per CPU it may run on, up to 64)"},
        {"timeout-ms", "KV_TIMEOUT_MS", KV_OPT_LONG, &http.timeout_ms, 10, 600000,
         "how long a request may wait for its node before 504/503"},
        {"coordinator", "KV_COORDINATOR", KV_OPT_STRING, &http.coordinator, 0, 0,
         "coordinator ROUTER endpoint (tables on request)"},
        {"coordinator-pub", "KV_COORDINATOR_PUB", KV_OPT_STRING, &http.coordinator_pub, 0, 0,
         "coordinator PUB endpoint (tables as they change)"},
        {"sched-batch", "KV_SCHED_BATCH", KV_OPT_LONG, &sched_batch, 0, 1,
         "1: run under SCHED_BATCH, batches per wake-up instead of a switch per message"},
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
    kv_log_init("gateway", (kv_log_level_t)level);
    if (http.threads == 0) http.threads = kv_sched_cpus() < 64 ? kv_sched_cpus() : 64;
    if (sched_batch && kv_sched_batch() != 0) /* before any thread: they inherit it */
        kv_log_warn("cannot switch to SCHED_BATCH: %s", strerror(errno));
    zsys_init();
    zsys_set_logstream(NULL);
    kv_signals_init();
    kv_http_t *server = kv_http_new(&http);
    if (!server) return 1;
    kv_actor_wait(NULL, NULL);
    kv_log_info("gateway stopping");
    kv_http_destroy(&server);
    return 0;
}
