/*  mhd_fixed.c: kv-bench-mhd, libmicrohttpd alone answering a fixed body.
 *
 *  The ceiling of the benchmark (tools/bench/bench.sh): every GET gets
 *  200 "x" (3 bytes of JSON) with no backend behind it, from the same MHD
 *  set-up as the gateway (internal polling thread, epoll, a thread pool of
 *  --threads, the same connection memory and timeout). Whatever the gateway
 *  does beyond this server is the cost of the store: parsing, the hop to the
 *  node, suspend and resume.
 *
 *  Runs until SIGINT or SIGTERM. The signals are blocked before MHD starts
 *  its threads, so they all inherit the mask and only sigwait sees them.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kv_opts.h"

#define S_CONNECTION_MEMORY (16 * 1024) /* as the gateway */
#define S_CONNECTION_TIMEOUT 60u        /* seconds, as the gateway */

static const char s_body[] = "\"x\"";

static enum MHD_Result s_answer(void *cls, struct MHD_Connection *connection, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **request) {
    /* The first call comes with the headers: answering then makes MHD close
     * the connection (it cannot know the body is empty). Answer on the
     * second call, as the gateway does, so keep-alive survives. */
    static int seen;
    if (*request != &seen) {
        *request = &seen;
        return MHD_YES;
    }
    return MHD_queue_response(connection, MHD_HTTP_OK, (struct MHD_Response *)cls);
}

static const char *s_summary =
    "kv-bench-mhd: libmicrohttpd answering every request with 200 \"x\" (JSON),\n"
    "no backend; the ceiling tools/bench/bench.sh measures the gateway against.";

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 19082, threads = 2;
    const kv_opt_t opts[] = {
        {"host", NULL, KV_OPT_STRING, &host, 0, 0, "IPv4 address to listen on"},
        {"port", NULL, KV_OPT_LONG, &port, 1, 65535, "HTTP port"},
        {"threads", NULL, KV_OPT_LONG, &threads, 1, 64, "MHD thread pool size (gateway: 2)"},
    };
    int parsed = kv_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, s_summary);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "kv-bench-mhd: --host must be an IPv4 address (got '%s')\n", host);
        return 2;
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(sizeof(s_body) - 1, (void *)s_body, MHD_RESPMEM_PERSISTENT);
    if (!response ||
        MHD_add_response_header(response, "Content-Type", "application/json") != MHD_YES)
        return 1;

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
        NULL, s_answer, response, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
        MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)S_CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, S_CONNECTION_TIMEOUT,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "kv-bench-mhd: cannot listen on %s:%ld\n", host, port);
        MHD_destroy_response(response);
        return 1;
    }
    printf("kv-bench-mhd: listening on http://%s:%ld with %ld threads\n", host, port, threads);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    MHD_stop_daemon(daemon);
    MHD_destroy_response(response);
    return 0;
}
