/*  kv_http.h: the gateway's HTTP server (libmicrohttpd).
 *
 *  `threads` worker threads, each running an MHD daemon and a kv_backend in
 *  one event loop. A request is parsed and validated on its worker;
 *  anything that needs the cluster becomes a kv_call_t for the worker's
 *  backend while the connection is suspended, and is resumed when the
 *  backend's answer arrives. No worker ever blocks on a node.
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

typedef struct {
    const char *host;            /* address to listen on ("0.0.0.0" for all) */
    long port;                   /* TCP port */
    long threads;                /* MHD thread pool size */
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

#endif
