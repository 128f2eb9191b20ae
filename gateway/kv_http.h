/*  kv_http.h: the gateway's HTTP server (libmicrohttpd).
 *
 *  `threads` worker threads, each running an MHD daemon and a kv_backend in
 *  one event loop. A request is parsed and validated on its worker;
 *  anything that needs the cluster becomes a kv_call_t for the worker's
 *  backend, and the request is answered on the same worker when the
 *  backend's answer arrives (keyed requests wait without suspending their
 *  connection, the others suspended; see kv_http.c). No worker ever blocks
 *  on a node.
 *
 *  Methods: GET on every route; HEAD, like GET without a body, only on
 *  read-only routes (/get /is /getKeys /getValues /getAll /healthcheck
 *  /settings /status). Anything else gets 405 METHOD_NOT_ALLOWED with
 *  `Allow: GET` on the routes that write (/set /rm /clear /join /leave: a
 *  HEAD there writes nothing) and `Allow: GET, HEAD` on the others. An
 *  unknown path gets 404 UNKNOWN_ROUTE (405 for methods other than GET and
 *  HEAD, which come first), and the 414 for a too long target comes after
 *  both.
 *
 *  Counters (kv_http_counters, and /status as "gateway": {"counters": ...}).
 *  The registry has no labels, so a counter's name is its family followed by
 *  its label values, each after a '_'; the last value never holds a '_':
 *  - kv_gateway_requests_total_<route>_<class>: requests answered, by route
 *    (set, get, rm, is, clear, get_keys, get_values, get_all, healthcheck,
 *    settings, status, join, leave, unknown) and status class (2xx, 4xx,
 *    5xx), counted when the response is queued;
 *  - kv_gateway_request_transitions_total_<from>_<to>: a request's state
 *    changes, one counter per legal move (states: new, receiving, waiting,
 *    suspended, ready, streaming, refilling, answered, orphan, done);
 *  - kv_gateway_request_illegal_transitions_total: moves refused as illegal,
 *    always 0 unless the gateway has a bug.
 *  An exporter turns kv_gateway_requests_total_get_2xx into
 *  kv_gateway_requests_total{route="get",class="2xx"}.
 *
 *  Bulk reads stream: the response is chunked and produced by a content
 *  reader that fetches one partition page at a time (suspending the
 *  connection while a page is on its way), so the gateway holds one page
 *  however many keys the cluster has. With limit=N the page is gathered
 *  first, so that X-Next-Cursor can go in the headers.
 */
#ifndef KV_HTTP_H
#define KV_HTTP_H

#include "kv_backend.h"
#include "kv_counters.h"

typedef struct {
    const char *host;            /* address to listen on ("0.0.0.0" for all) */
    long port;                   /* TCP port */
    long threads;                /* worker threads: each an MHD daemon and a backend */
    long timeout_ms;             /* per backend call (reported in /settings) */
    const char *coordinator;     /* coordinator ROUTER endpoint (tables on request) */
    const char *coordinator_pub; /* coordinator PUB endpoint (tables as they change) */
} kv_http_config_t;

typedef struct _kv_http_t kv_http_t;

/* Starts serving. Returns NULL (after logging why) when it cannot listen. */
kv_http_t *kv_http_new(const kv_http_config_t *config);

/* Stops accepting, lets requests in flight finish (each is bounded by the
 * backend timeout), then stops the server. Sets *self_p to NULL. */
void kv_http_destroy(kv_http_t **self_p);

/* The server's counters (above), for exporters and tests; NULL for NULL.
 * Valid until kv_http_destroy. */
const kv_counters_t *kv_http_counters(const kv_http_t *self);

#endif
