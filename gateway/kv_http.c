/*  kv_http.c: the gateway's HTTP server (see kv_http.h).
 *
 *  Threads: `threads` workers, each with its own MHD daemon (external epoll
 *  mode, all listening on the port with SO_REUSEPORT so the kernel spreads
 *  connections) and its own kv_backend, driven by one loop that waits in
 *  kv_poller (one epoll set over MHD's epoll fd, the stop pipe and the
 *  ZMQ_FDs of the backend's sockets). A request never leaves its worker
 *  thread: that saves the thread hand-offs a shared I/O thread costs.
 *
 *  Routes: one table, S_ROUTES, gives each route its path, its handlers,
 *  the backend call it makes, whether it is read-only (HEAD is served,
 *  nothing is ever written) and whether it is an admin route (/join, /leave,
 *  /clear: what the admin token will guard). Dispatch, the method check and
 *  the counters all read it; nothing else lists the routes.
 *
 *  A request's life is a state machine (s_state_t), changed in one place,
 *  s_goto, which refuses and counts any move not drawn here:
 *
 *    NEW -> RECEIVING       the handler's first call, with the headers
 *    RECEIVING -> ANSWERED  s_start answered at once (errors, 405, 404, ...)
 *    RECEIVING -> WAITING   a keyed call is out (connection not suspended)
 *    RECEIVING -> SUSPENDED any other call is out (connection suspended)
 *    WAITING, SUSPENDED -> READY        the call ended (s_call_done)
 *    READY -> ANSWERED | STREAMING      s_answer queued the response
 *    READY -> SUSPENDED                 a page of a limit=N read needs more
 *    STREAMING <-> REFILLING            the body's reader waits for a page
 *    WAITING, SUSPENDED, REFILLING -> ORPHAN   the connection closed while
 *                                              the call was out
 *    ORPHAN -> DONE         the call ended: freed then
 *    NEW, RECEIVING, READY, STREAMING, ANSWERED -> DONE   MHD completed it
 *
 *  s_uri_log copies the raw query (before MHD decodes anything) into a new
 *  request; s_start validates it and either answers at once or submits a
 *  backend call; when the call is done, the next MHD_run calls s_handler
 *  again, which answers from the call. Fixed bodies (success, the
 *  validation errors, ...) are built once at start and shared by every
 *  connection: MHD responses are reference counted.
 *
 *  Keyed requests (/get /set /rm /is) wait WAITING, not suspended, while
 *  their call is out. Suspending costs an epoll_ctl to leave MHD's epoll
 *  set, another to come back and a recv that finds nothing after the
 *  resume: three system calls per request, about a tenth of the gateway's
 *  CPU. Unsuspended, a waiting connection stays on MHD's ready list and
 *  s_handler is asked again on every MHD_run (a few function calls) until
 *  it answers. The price: MHD then always reports "work pending"
 *  (MHD_get_timeout 0), so the loop sleeps on its own deadlines instead
 *  (s_worker_timeout), and a connection can close while its call is out:
 *  the request is then ORPHAN and freed when the call ends (every call
 *  ends, by its deadline at the latest). Bulk reads and cluster calls,
 *  rarer and sometimes long, still suspend.
 */
#include "kv_http.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "kv_bulk.h"
#include "kv_clock.h"
#include "kv_counters.h"
#include "kv_endpoint.h"
#include "kv_json.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_mget.h"
#include "kv_txn.h"
#include "kv_poller.h"
#include "kv_query.h"

#define KV_PAGE_MAX 10000     /* entries per page when a client asks for more */
#define KV_SCAN_CHUNK 4096    /* entries per SCAN while streaming */
#define KV_STREAM_BLOCK 32768 /* MHD's buffer for streamed bodies */
/* Per connection: an 8 KiB target fits. MHD clears part of the pool for
 * every request, so its size is paid on each one (128 KiB cost 14 % of
 * /set's throughput); s_uri_log keeps MHD from filling it with a record
 * per query parameter, which is what a 1000-key /mget would need. */
#define KV_CONNECTION_MEMORY (16 * 1024)

/* Every route, once: X(ID, path, name in counters and logs, start, answer,
 * backend call, read-only, admin). Read-only routes never write, so HEAD is
 * served on them; admin routes change the cluster as a whole. Expanded
 * into s_route_t here and into s_routes below, after the handlers. */
#define S_ROUTES(X)                                                                                \
    X(SET, "/set", "set", s_start_keyed, s_answer_set, KV_CALL_SET, false, false)                  \
    X(GET, "/get", "get", s_start_keyed, s_answer_get, KV_CALL_GET, true, false)                   \
    X(RM, "/rm", "rm", s_start_keyed, s_answer_rm, KV_CALL_RM, false, false)                       \
    X(IS, "/is", "is", s_start_keyed, s_answer_is, KV_CALL_IS, true, false)                        \
    X(EXPIRE, "/expire", "expire", s_start_keyed, s_answer_set, KV_CALL_EXPIRE, false, false)      \
    X(PERSIST, "/persist", "persist", s_start_keyed, s_answer_set, KV_CALL_EXPIRE, false, false)   \
    X(TTL, "/ttl", "ttl", s_start_keyed, s_answer_ttl, KV_CALL_IS, true, false)                    \
    X(MGET, "/mget", "mget", s_start_mget, s_answer_mget, KV_CALL_GET, true, false)                \
    X(TX, "/tx", "tx", s_start_tx, s_answer_tx, KV_CALL_TX_PREPARE, false, false)                  \
    X(CLEAR, "/clear", "clear", s_start_call, s_answer_result, KV_CALL_CLEAR, false, true)         \
    X(KEYS, "/getKeys", "get_keys", s_start_bulk, s_answer_bulk, KV_CALL_SCAN, true, false)        \
    X(VALUES, "/getValues", "get_values", s_start_bulk, s_answer_bulk, KV_CALL_SCAN, true, false)  \
    X(ALL, "/getAll", "get_all", s_start_bulk, s_answer_bulk, KV_CALL_SCAN, true, false)           \
    X(HEALTH, "/healthcheck", "healthcheck", s_start_call, s_answer_health, KV_CALL_TABLE, true,   \
      false)                                                                                       \
    X(SETTINGS, "/settings", "settings", s_start_call, s_answer_settings, KV_CALL_TABLE, true,     \
      false)                                                                                       \
    X(STATUS, "/status", "status", s_start_call, s_answer_status, KV_CALL_STATUS, true, false)     \
    X(JOIN, "/join", "join", s_start_membership, s_answer_membership, KV_CALL_JOIN, false, true)   \
    X(LEAVE, "/leave", "leave", s_start_membership, s_answer_membership, KV_CALL_LEAVE, false, true)

/* clang-format off */
typedef enum {
#define S_ROUTE_ID(id, ...) R_##id,
    S_ROUTES(S_ROUTE_ID)
#undef S_ROUTE_ID
    R_UNKNOWN, /* no route has the path: 404 */
    R_COUNT,
} s_route_t;
/* clang-format on */

/* A request's life: the diagram at the top of the file. */
typedef enum {
    S_NEW,       /* made by s_uri_log; the handler has not run yet */
    S_RECEIVING, /* headers seen; waiting for the end of the request */
    S_WAITING,   /* a keyed call is out; the connection stays on MHD's list */
    S_SUSPENDED, /* another call is out; the connection is suspended */
    S_READY,     /* the call ended: the handler answers from it */
    S_STREAMING, /* a streamed body is queued; its reader writes it */
    S_REFILLING, /* the reader waits, suspended, for the next page */
    S_ANSWERED,  /* a whole response is queued */
    S_ORPHAN,    /* the connection closed while a call was out */
    S_DONE,      /* over: freed at once */
    S_COUNT,
} s_state_t;

/* In logs and counter names, so one word each. */
static const char *const s_state_names[S_COUNT] = {
    [S_NEW] = "new",
    [S_RECEIVING] = "receiving",
    [S_WAITING] = "waiting",
    [S_SUSPENDED] = "suspended",
    [S_READY] = "ready",
    [S_STREAMING] = "streaming",
    [S_REFILLING] = "refilling",
    [S_ANSWERED] = "answered",
    [S_ORPHAN] = "orphan",
    [S_DONE] = "done",
};

/* Status classes counted per route: the gateway answers 2xx, 4xx and 5xx. */
#define S_STATUS_CLASSES 6 /* indexed by status / 100 */
static const char *const s_status_classes[S_STATUS_CLASSES] = {
    [2] = "2xx", [4] = "4xx", [5] = "5xx"};

/* Bodies that never change, built once. */
typedef enum {
    F_SUCCESS,
    F_MISSING_RECORD,
    F_UNAVAILABLE,
    F_CONTENDED, /* 503 too, from /mget and /tx: the keys kept changing */
    F_TIMEOUT,
    F_OUT_OF_MEMORY,
    F_INTERNAL,
    F_METHOD,       /* 405 with Allow: GET, HEAD (read-only routes, unknown paths) */
    F_METHOD_WRITE, /* 405 with Allow: GET (routes that write) */
    F_UNKNOWN_ROUTE,
    F_URI_TOO_LONG,
    F_HEALTH_OK,
    F_HEALTH_BAD,
    F_NO_TABLE,
    F_INVALID_LIMIT,
    F_INVALID_CURSOR,
    F_INVALID_NODE,
    F_UNKNOWN_NODE,
    F_NODE_UNREACHABLE,
    F_NO_COORDINATOR,
    F_CANNOT_DRAIN,
    F_QUERY, /* + kv_query_err_t: the validation errors */
    F_COUNT = F_QUERY + KV_QUERY_ERR_LAST + 1,
} s_fixed_t;

typedef struct {
    unsigned status;               /* HTTP status */
    struct MHD_Response *response; /* shared body */
} s_fixed_response_t;

typedef struct _s_worker_t s_worker_t;

struct _kv_http_t {
    kv_http_config_t config;                   /* settings */
    char hostname[256];                        /* for /settings and /status */
    s_fixed_response_t fixed[F_COUNT];         /* shared bodies */
    s_worker_t *workers;                       /* config.threads of them */
    int stop_pipe[2];                          /* a byte written here stops every worker */
    kv_counters_t *counters;                   /* the gateway's counters (kv_http.h) */
    size_t answers[R_COUNT][S_STATUS_CLASSES]; /* handles: answers by route and class */
    size_t transitions[S_COUNT][S_COUNT];      /* handles: legal moves by from, to */
    size_t illegal;                            /* handle: moves s_goto refused */
};

/* One event loop: an MHD daemon and a backend, owned by one thread. */
struct _s_worker_t {
    kv_http_t *server;         /* owner */
    pthread_t thread;          /* runs s_worker_run */
    struct MHD_Daemon *daemon; /* this thread's HTTP server */
    kv_backend_t *backend;     /* this thread's door to the cluster */
    kv_poller_t *poller;       /* waits on MHD and the backend's sockets */
    int in_flight;             /* calls submitted, not yet answered */
    int waiting;               /* requests WAITING: keyed calls of unsuspended connections */
    int answered;              /* waiting calls finished since the last MHD_run */
    int streams;               /* bulk bodies being streamed */
    int started;               /* the thread was created */
    sem_t ready;               /* posted once the loop runs (or failed) */
    int failed;                /* start-up failed */
};

typedef struct {
    kv_http_t *server;           /* owner */
    s_worker_t *worker;          /* the thread serving the connection */
    struct MHD_Connection *conn; /* the connection */
    s_route_t route;             /* what was asked; R_UNKNOWN until s_start */
    s_state_t state;             /* where it is in its life; changed by s_goto only */
    int uri_too_long;            /* the target exceeded KV_MAX_URI_BYTES */
    bool head;                   /* a HEAD: answered like GET, without the body */
    kv_call_t call;              /* the backend call in progress */
    kv_mget_t *mget;             /* /mget: its rounds of calls, instead of call */
    kv_txn_t *txn;               /* /tx: its phases of calls, instead of call */
    kv_query_t query;            /* parameters, pointing into query_buf */
    /* bulk reads */
    kv_bulk_kind_t kind; /* keys, values or both */
    kv_cursor_t cursor;  /* position of the next SCAN */
    uint32_t partitions; /* P */
    uint32_t limit;      /* entries per page, 0 when streaming */
    uint32_t emitted;    /* entries written */
    int page_ready;      /* call holds a SCAN page not yet consumed */
    size_t entry_pos;    /* next entry of that page */
    int failed;          /* a SCAN failed mid-stream */
    int finished;        /* the closing ']' is in out */
    char *out;           /* body bytes not yet handed to MHD */
    size_t out_len, out_pos, out_cap;
    size_t query_len; /* bytes in query_buf */
    char query_buf[]; /* the raw query, decoded in place */
} s_request_t;

typedef enum MHD_Result (*s_route_fn)(s_request_t *req);

/* One route: a row of S_ROUTES. */
typedef struct {
    const char *path;  /* "/getKeys"; NULL for R_UNKNOWN */
    const char *name;  /* in counter names and logs: "get_keys" */
    s_route_fn start;  /* validates, then answers at once or submits a call */
    s_route_fn answer; /* answers from the finished call */
    kv_call_op_t op;   /* the backend call it makes */
    bool read_only;    /* never writes: HEAD is served, like GET without a body */
    bool admin;        /* changes the whole cluster: the admin token's routes */
} s_route_def_t;

static const s_route_def_t s_routes[R_COUNT]; /* defined after the handlers */

/* --- the request's state machine ------------------------------------------- */

/* True when the diagram at the top of the file has an arrow from -> to. */
static bool s_state_legal(s_state_t from, s_state_t to) {
    switch (from) {
    case S_NEW:
        return to == S_RECEIVING || to == S_DONE;
    case S_RECEIVING:
        return to == S_ANSWERED || to == S_WAITING || to == S_SUSPENDED || to == S_DONE;
    case S_WAITING:
    case S_SUSPENDED:
        return to == S_READY || to == S_ORPHAN;
    case S_READY:
        return to == S_ANSWERED || to == S_STREAMING || to == S_SUSPENDED || to == S_DONE;
    case S_STREAMING:
        return to == S_REFILLING || to == S_DONE;
    case S_REFILLING:
        return to == S_STREAMING || to == S_ORPHAN;
    case S_ANSWERED:
    case S_ORPHAN:
        return to == S_DONE;
    default:
        return false; /* S_DONE ends it */
    }
}

/* Moves req to `to`: the only place a request's state changes. A legal
 * move is counted and logged at debug level. An illegal one is a bug of
 * ours: refused (the state stays), logged, counted, and fatal in a debug
 * build. Returns 0, or -1 when refused. */
static int s_goto(s_request_t *req, s_state_t to) {
    kv_http_t *server = req->server;
    s_state_t from = req->state;
    bool legal = s_state_legal(from, to);
    if (!legal) {
        kv_counters_inc(server->counters, server->illegal);
        kv_log_error("request %p %s: illegal transition %s -> %s refused", (void *)req,
                     s_routes[req->route].name, s_state_names[from], s_state_names[to]);
        assert(legal && "illegal request state transition");
        return -1;
    }
    req->state = to;
    kv_counters_inc(server->counters, server->transitions[from][to]);
    kv_log_debug("request %p %s: %s -> %s", (void *)req, s_routes[req->route].name,
                 s_state_names[from], s_state_names[to]);
    return 0;
}

/* --- responses ------------------------------------------------------------ */

static struct MHD_Response *s_json_response(const char *body, size_t len,
                                            enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *response = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (response) MHD_add_response_header(response, "Content-Type", "application/json");
    return response;
}

/* Queues response with status, counts the answer by route and status
 * class, and moves req on to `to`: ANSWERED, or STREAMING when a reader
 * writes the body. The response stays the caller's. */
static enum MHD_Result s_respond(s_request_t *req, unsigned status, struct MHD_Response *response,
                                 s_state_t to) {
    enum MHD_Result result = MHD_queue_response(req->conn, status, response);
    if (result != MHD_YES) return result; /* MHD closes the connection */
    if (status / 100 < S_STATUS_CLASSES)
        kv_counters_inc(req->server->counters, req->server->answers[req->route][status / 100]);
    s_goto(req, to);
    return result;
}

static enum MHD_Result s_queue(s_request_t *req, unsigned status, const char *body, size_t len) {
    struct MHD_Response *response = s_json_response(body, len, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    enum MHD_Result result = s_respond(req, status, response, S_ANSWERED);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result s_queue_json(s_request_t *req, unsigned status, json_t *json) {
    char *body = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!body) return MHD_NO;
    enum MHD_Result result = s_queue(req, status, body, strlen(body));
    free(body);
    return result;
}

static enum MHD_Result s_queue_fixed(s_request_t *req, s_fixed_t which) {
    s_fixed_response_t *fixed = &req->server->fixed[which];
    return s_respond(req, fixed->status, fixed->response, S_ANSWERED);
}

static int s_add_fixed(kv_http_t *self, s_fixed_t which, unsigned status, const char *body) {
    struct MHD_Response *response = s_json_response(body, strlen(body), MHD_RESPMEM_MUST_COPY);
    if (!response) return -1;
    if (which == F_METHOD) MHD_add_response_header(response, "Allow", "GET, HEAD");
    if (which == F_METHOD_WRITE) MHD_add_response_header(response, "Allow", "GET");
    self->fixed[which] = (s_fixed_response_t){status, response};
    return 0;
}

static int s_add_error(kv_http_t *self, s_fixed_t which, unsigned status, const char *code,
                       const char *message) {
    char *body = kv_json_error(code, message);
    int rc = body ? s_add_fixed(self, which, status, body) : -1;
    free(body);
    return rc;
}

static int s_build_fixed(kv_http_t *self) {
    int rc = s_add_fixed(self, F_SUCCESS, 200, "{\"success\":true}");
    rc |= s_add_fixed(self, F_HEALTH_OK, 200, "{\"status\":\"ok\"}");
    rc |= s_add_fixed(self, F_HEALTH_BAD, 503,
                      "{\"status\":\"unavailable\",\"error\":\"UNAVAILABLE\",\"message\":"
                      "\"some partition has no live owner\"}");
    rc |= s_add_error(self, F_MISSING_RECORD, 404, "MISSING_RECORD", "no record for this key");
    rc |= s_add_error(self, F_UNAVAILABLE, 503, "UNAVAILABLE",
                      "the key's partition has no live owner; nothing was written");
    rc |= s_add_error(self, F_CONTENDED, 503, "UNAVAILABLE",
                      "the keys kept changing: no consistent snapshot was found in time; "
                      "nothing was written, retry");
    rc |=
        s_add_error(self, F_TIMEOUT, 504, "TIMEOUT",
                    "the owning node did not answer in time; a write may or may not have happened");
    rc |= s_add_error(self, F_OUT_OF_MEMORY, 507, "OUT_OF_MEMORY",
                      "the owning node is at its memory limit; nothing was written");
    rc |= s_add_error(self, F_INTERNAL, 500, "INTERNAL_ERROR",
                      "the node refused the request as malformed");
    rc |= s_add_error(self, F_METHOD, 405, "METHOD_NOT_ALLOWED", "only GET and HEAD are served");
    rc |= s_add_error(self, F_METHOD_WRITE, 405, "METHOD_NOT_ALLOWED",
                      "this route writes: only GET is served (HEAD never writes)");
    rc |= s_add_error(self, F_UNKNOWN_ROUTE, 404, "UNKNOWN_ROUTE", "no such route");
    rc |= s_add_error(self, F_URI_TOO_LONG, 414, "URI_TOO_LONG",
                      "the request target is longer than 8192 bytes");
    rc |= s_add_error(self, F_NO_TABLE, 503, "UNAVAILABLE",
                      "the gateway has no routing table from the coordinator yet");
    rc |= s_add_error(self, F_INVALID_LIMIT, 400, "INVALID_LIMIT",
                      "limit must be a whole number from 1 up");
    rc |= s_add_error(self, F_INVALID_CURSOR, 400, "INVALID_CURSOR",
                      "cursor must be a value from an X-Next-Cursor header");
    rc |= s_add_error(self, F_INVALID_NODE, 400, "INVALID_NODE_ADDRESS",
                      "node must be a ZeroMQ endpoint such as tcp://host:5601");
    rc |= s_add_error(self, F_UNKNOWN_NODE, 404, "UNKNOWN_NODE", "no node with this id");
    rc |= s_add_error(self, F_NODE_UNREACHABLE, 502, "NODE_UNREACHABLE",
                      "no node answered at that endpoint in time");
    rc |= s_add_error(self, F_NO_COORDINATOR, 503, "UNAVAILABLE",
                      "the coordinator cannot be reached; membership cannot change now");
    rc |= s_add_error(self, F_CANNOT_DRAIN, 503, "UNAVAILABLE",
                      "no other node can take this node's partitions");
    for (int err = KV_QUERY_MISSING_KEY; err <= KV_QUERY_ERR_LAST; err++)
        rc |= s_add_error(self, (s_fixed_t)(F_QUERY + err), 400, kv_query_err_code(err),
                          kv_query_err_message(err));
    return rc ? -1 : 0;
}

static enum MHD_Result s_queue_result(s_request_t *req, kv_call_result_t result) {
    switch (result) {
    case KV_CALL_OK:
        return s_queue_fixed(req, F_SUCCESS);
    case KV_CALL_NOT_FOUND:
        return s_queue_fixed(req, F_MISSING_RECORD);
    case KV_CALL_TIMEOUT:
        return s_queue_fixed(req, F_TIMEOUT);
    case KV_CALL_NO_MEMORY:
        return s_queue_fixed(req, F_OUT_OF_MEMORY);
    case KV_CALL_FAILED:
        return s_queue_fixed(req, F_INTERNAL);
    case KV_CALL_CONTENDED:
        return s_queue_fixed(req, F_CONTENDED);
    default:
        return s_queue_fixed(req, F_UNAVAILABLE);
    }
}

/* --- calls ---------------------------------------------------------------- */

static void s_request_free(s_request_t *req) {
    kv_call_reset(&req->call);
    kv_mget_destroy(&req->mget);
    kv_txn_destroy(&req->txn);
    free(req->out);
    free(req);
}

/* The call is finished: the request is READY (or back to STREAMING) and
 * its connection is woken: a suspended one is resumed, a WAITING one is
 * asked on the next MHD_run anyway. An ORPHAN is freed. Runs on the
 * request's worker thread. */
static void s_call_done(kv_call_t *call) {
    s_request_t *req = call->arg;
    s_worker_t *worker = req->worker;
    worker->in_flight--;
    if (req->state == S_ORPHAN) { /* nobody to answer: the connection is gone */
        s_goto(req, S_DONE);
        s_request_free(req);
        return;
    }
    req->page_ready = call->op == KV_CALL_SCAN && call->result == KV_CALL_OK;
    req->failed = call->op == KV_CALL_SCAN && call->result != KV_CALL_OK;
    req->entry_pos = 0;
    switch (req->state) {
    case S_WAITING:
        worker->waiting--;
        worker->answered++;
        s_goto(req, S_READY);
        return;
    case S_REFILLING: /* MHD asks the reader again once resumed */
        s_goto(req, S_STREAMING);
        MHD_resume_connection(req->conn);
        return;
    default: /* SUSPENDED; s_goto refuses anything else */
        if (s_goto(req, S_READY) == 0) MHD_resume_connection(req->conn);
        return;
    }
}

static int s_is_keyed(kv_call_op_t op) {
    return op == KV_CALL_GET || op == KV_CALL_SET || op == KV_CALL_RM || op == KV_CALL_IS;
}

/* Hands the prepared call to the backend: the request WAITING if the call
 * is keyed (see the top of the file), else SUSPENDED (REFILLING from
 * STREAMING) with its connection suspended. The suspend comes before the
 * submit: the backend may finish before submit returns. */
static enum MHD_Result s_submit(s_request_t *req, kv_call_op_t op) {
    s_state_t to = req->state == S_STREAMING ? S_REFILLING
                   : s_is_keyed(op)          ? S_WAITING
                                             : S_SUSPENDED;
    if (s_goto(req, to) != 0) return MHD_NO;
    req->call.op = op;
    req->call.done = s_call_done;
    req->call.arg = req;
    req->worker->in_flight++;
    if (to == S_WAITING)
        req->worker->waiting++;
    else
        MHD_suspend_connection(req->conn);
    if (kv_backend_submit(req->worker->backend, &req->call) != 0) {
        req->call.result = KV_CALL_UNAVAILABLE;
        s_call_done(&req->call);
    }
    return MHD_YES;
}

/* --- keyed routes --------------------------------------------------------- */

/* ifVersion (/set, /rm) and ttl (/set; /expire, which needs one), where
 * the route takes them, into the call. When both are malformed the one
 * sent first is reported (the contract's precedence: per parameter in
 * request order; both point into the query, decoded in place). */
static kv_query_err_t s_check_options(s_request_t *req) {
    const kv_param_t *if_version = &req->query.if_version;
    const kv_param_t *ttl = &req->query.ttl;
    bool conditional = (req->route == R_SET || req->route == R_RM) && if_version->present;
    bool expiring = req->route == R_EXPIRE || (req->route == R_SET && ttl->present);
    uint64_t seconds = 0;
    /* on /rm, "only if absent" removes nothing: refused */
    kv_query_err_t version_err =
        conditional ? kv_query_version(if_version, req->route == R_SET, &req->call.if_version)
                    : KV_QUERY_OK;
    kv_query_err_t ttl_err = expiring ? kv_query_ttl(ttl, &seconds) : KV_QUERY_OK;
    req->call.has_if_version = conditional;
    req->call.ttl = (uint32_t)seconds;
    if (version_err != KV_QUERY_OK && ttl_err != KV_QUERY_OK)
        return if_version->ptr < ttl->ptr ? version_err : ttl_err;
    return version_err != KV_QUERY_OK ? version_err : ttl_err;
}

static enum MHD_Result s_start_keyed(s_request_t *req) {
    kv_query_err_t err = kv_query_check(&req->query, req->route == R_SET);
    if (err == KV_QUERY_OK) err = s_check_options(req);
    if (err != KV_QUERY_OK) return s_queue_fixed(req, (s_fixed_t)(F_QUERY + err));
    req->call.key = req->query.k.ptr;
    req->call.klen = req->query.k.len;
    if (req->route == R_SET) {
        req->call.value = req->query.v.ptr;
        req->call.vlen = req->query.v.len;
    }
    return s_submit(req, s_routes[req->route].op);
}

/* /clear: the call's result is the whole answer. */
static enum MHD_Result s_answer_result(s_request_t *req) {
    return s_queue_result(req, req->call.result);
}

/* 200 with body and the key's version in X-Version (/get, /is). */
static enum MHD_Result s_queue_versioned(s_request_t *req, const char *body, size_t len) {
    struct MHD_Response *response = s_json_response(body, len, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    char version[24];
    snprintf(version, sizeof(version), "%" PRIu64, req->call.version);
    MHD_add_response_header(response, "X-Version", version);
    enum MHD_Result result = s_respond(req, 200, response, S_ANSWERED);
    MHD_destroy_response(response);
    return result;
}

/* 409 VERSION_CONFLICT naming the key and its current version. */
static enum MHD_Result s_queue_conflict(s_request_t *req) {
    json_t *body =
        json_pack("{s:s, s:s, s:s%, s:I}", "error", "VERSION_CONFLICT", "message",
                  "the key's version is not the one ifVersion names; nothing written", "k",
                  req->query.k.ptr, req->query.k.len, "version", (json_int_t)req->call.version);
    return s_queue_json(req, 409, body);
}

static enum MHD_Result s_answer_get(s_request_t *req) {
    if (req->call.result != KV_CALL_OK) return s_queue_result(req, req->call.result);
    char body[KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES)];
    const kv_bytes_t *value = &req->call.msg.value;
    size_t len = kv_json_string(body, sizeof(body), value->ptr ? value->ptr : "", value->len);
    return s_queue_versioned(req, body, len);
}

static enum MHD_Result s_answer_is(s_request_t *req) {
    if (req->call.result != KV_CALL_OK) return s_queue_result(req, req->call.result);
    static const char body[] = "{\"success\":true}";
    return s_queue_versioned(req, body, sizeof(body) - 1);
}

/* {"success": true, "version": N}: the version the write gave the key. */
static enum MHD_Result s_answer_set(s_request_t *req) {
    if (req->call.result == KV_CALL_CONFLICT) return s_queue_conflict(req);
    if (req->call.result != KV_CALL_OK) return s_queue_result(req, req->call.result);
    char body[64];
    int len = snprintf(body, sizeof(body), "{\"success\":true,\"version\":%" PRIu64 "}",
                       req->call.version);
    return s_queue(req, 200, body, (size_t)len);
}

/* {"ttl": S}: whole seconds left, rounded up, or -1 when the key never
 * expires. */
static enum MHD_Result s_answer_ttl(s_request_t *req) {
    if (req->call.result != KV_CALL_OK) return s_queue_result(req, req->call.result);
    char body[48];
    uint64_t ms = req->call.ttl_ms;
    int len = ms ? snprintf(body, sizeof(body), "{\"ttl\":%" PRIu64 "}", (ms + 999) / 1000)
                 : snprintf(body, sizeof(body), "{\"ttl\":-1}");
    return s_queue_versioned(req, body, (size_t)len);
}

static enum MHD_Result s_answer_rm(s_request_t *req) {
    if (req->call.result == KV_CALL_CONFLICT) return s_queue_conflict(req);
    return s_queue_result(req, req->call.result);
}

/* --- /mget ------------------------------------------------------------------ */

/* Suspends the connection while a request of many calls runs. */
static int s_suspend(s_request_t *req) {
    if (s_goto(req, S_SUSPENDED) != 0) return -1;
    req->worker->in_flight++;
    MHD_suspend_connection(req->conn);
    return 0;
}

/* Answers status with a malloc'd JSON body (taken; NULL: out of memory). */
static enum MHD_Result s_queue_body(s_request_t *req, unsigned status, char *body, size_t len) {
    if (!body) return s_queue_fixed(req, F_INTERNAL);
    struct MHD_Response *response = s_json_response(body, len, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result answered = s_respond(req, status, response, S_ANSWERED);
    MHD_destroy_response(response);
    return answered;
}

/* A request of many calls (/mget, /tx) is over: like s_call_done for the
 * one call of other routes. */
static void s_calls_done(s_request_t *req) {
    req->worker->in_flight--;
    if (req->state == S_ORPHAN) {
        s_goto(req, S_DONE);
        s_request_free(req);
        return;
    }
    if (s_goto(req, S_READY) == 0) MHD_resume_connection(req->conn);
}

static void s_mget_done(kv_mget_t *mget, void *arg) {
    (void)mget;
    s_calls_done(arg);
}

/* Parses the raw query (kv_query_parse left it alone for this route), then
 * runs the rounds with the connection suspended. */
static enum MHD_Result s_start_mget(s_request_t *req) {
    kv_query_err_t err = KV_QUERY_OK;
    req->mget = kv_mget_new(req->query_buf, req->query_len, &err);
    if (!req->mget && err > KV_QUERY_ERR_LAST) return s_queue_fixed(req, F_INTERNAL);
    if (!req->mget) return s_queue_fixed(req, (s_fixed_t)(F_QUERY + err));
    if (s_suspend(req) != 0) return MHD_NO;
    kv_mget_start(req->mget, req->worker->backend, s_mget_done, req);
    return MHD_YES;
}

static enum MHD_Result s_answer_mget(s_request_t *req) {
    kv_call_result_t result = kv_mget_result(req->mget);
    if (result != KV_CALL_OK) return s_queue_result(req, result);
    size_t len = 0;
    char *body = kv_mget_body(req->mget, &len);
    return s_queue_body(req, 200, body, len);
}

/* --- /tx -------------------------------------------------------------------- */

static void s_txn_done(kv_txn_t *txn, void *arg) {
    (void)txn;
    s_calls_done(arg);
}

/* A 400 with the validation code and what exactly was wrong. */
static enum MHD_Result s_queue_invalid(s_request_t *req, kv_query_err_t err, const char *detail) {
    if (!*detail) return s_queue_fixed(req, (s_fixed_t)(F_QUERY + err));
    json_t *body = json_pack("{s:s, s:s}", "error", kv_query_err_code(err), "message", detail);
    return s_queue_json(req, 400, body);
}

static enum MHD_Result s_start_tx(s_request_t *req) {
    kv_query_err_t err = KV_QUERY_OK;
    char detail[160] = "";
    req->txn = kv_txn_new(req->query_buf, req->query_len, &err, detail, sizeof(detail));
    if (!req->txn && err > KV_QUERY_ERR_LAST) return s_queue_fixed(req, F_INTERNAL);
    if (!req->txn) return s_queue_invalid(req, err, detail);
    if (s_suspend(req) != 0) return MHD_NO;
    kv_txn_start(req->txn, req->worker->backend, s_txn_done, req);
    return MHD_YES;
}

static enum MHD_Result s_answer_tx(s_request_t *req) {
    kv_call_result_t result = kv_txn_result(req->txn);
    if (result == KV_CALL_TX_ABORTED) {
        json_t *body = json_pack("{s:s, s:s}", "error", "TX_ABORTED", "message",
                                 "gave way to a concurrent transaction: nothing written, "
                                 "safe to retry");
        return s_queue_json(req, 409, body);
    }
    if (result != KV_CALL_OK && result != KV_CALL_CONFLICT) return s_queue_result(req, result);
    size_t len = 0;
    char *body = kv_txn_body(req->txn, &len);
    return s_queue_body(req, result == KV_CALL_OK ? 200 : 409, body, len);
}

/* --- bulk routes ---------------------------------------------------------- */

static int s_out_reserve(s_request_t *req, size_t more) {
    if (req->out_cap - req->out_len >= more) return 0;
    size_t cap = (req->out_cap + more) * 2;
    char *out = realloc(req->out, cap);
    if (!out) return -1;
    req->out = out;
    req->out_cap = cap;
    return 0;
}

static int s_out_append(s_request_t *req, const char *bytes, size_t len) {
    if (s_out_reserve(req, len) != 0) return -1;
    memcpy(req->out + req->out_len, bytes, len);
    req->out_len += len;
    return 0;
}

static enum MHD_Result s_fetch(s_request_t *req) {
    kv_call_reset(&req->call);
    req->call.partition = req->cursor.partition;
    req->call.has_after = req->cursor.has_after;
    req->call.after = req->cursor.after;
    req->call.alen = req->cursor.alen;
    req->call.limit = req->limit ? req->limit - req->emitted : KV_SCAN_CHUNK;
    if (req->call.limit > KV_SCAN_CHUNK) req->call.limit = KV_SCAN_CHUNK;
    req->page_ready = 0;
    return s_submit(req, KV_CALL_SCAN);
}

/* Moves the cursor past a consumed page. */
static void s_page_consumed(s_request_t *req) {
    const kv_msg_t *msg = &req->call.msg;
    req->page_ready = 0;
    if (msg->more && req->cursor.has_after) return; /* resume after the last key */
    req->cursor.partition++;
    req->cursor.has_after = 0;
    req->cursor.alen = 0;
}

/* Formats the page's next entry into out. Returns 0, or -1 when the page
 * is exhausted (the cursor has then moved on). */
static int s_next_entry(s_request_t *req) {
    kv_msg_entry_t entry;
    if (kv_msg_entry_next(&req->call.msg, &req->entry_pos, &entry) != 0) {
        s_page_consumed(req);
        return -1;
    }
    const kv_bytes_t key = entry.key, value = entry.value;
    if (key.len <= KV_MAX_KEY_BYTES) { /* remember it: the next page starts after it */
        memcpy(req->cursor.after, key.ptr, key.len);
        req->cursor.alen = key.len;
        req->cursor.has_after = 1;
    }
    if (s_out_reserve(req, KV_BULK_ENTRY_MAX) != 0) {
        req->page_ready = 0;
        req->failed = 1;
        req->call.result = KV_CALL_UNAVAILABLE;
        return -1;
    }
    req->out_len += kv_bulk_entry(req->kind, req->emitted == 0, key.ptr ? key.ptr : "", key.len,
                                  value.ptr ? value.ptr : "", value.len, req->out + req->out_len,
                                  req->out_cap - req->out_len);
    req->emitted++;
    return 0;
}

static ssize_t s_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    s_request_t *req = cls;
    size_t given = 0;
    for (;;) {
        size_t pending = req->out_len - req->out_pos;
        size_t take = pending < max - given ? pending : max - given;
        memcpy(buf + given, req->out + req->out_pos, take);
        given += take;
        req->out_pos += take;
        if (req->out_pos < req->out_len) return (ssize_t)given; /* buf is full */
        req->out_len = req->out_pos = 0;
        if (req->finished) return given ? (ssize_t)given : MHD_CONTENT_READER_END_OF_STREAM;
        if (req->page_ready) {
            s_next_entry(req);
            continue;
        }
        if (req->failed) /* headers are gone: all we can do is cut the body short */
            return given ? (ssize_t)given : MHD_CONTENT_READER_END_WITH_ERROR;
        if (req->cursor.partition >= req->partitions) {
            req->finished = 1;
            if (s_out_append(req, "]", 1) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        if (given) return (ssize_t)given; /* send what we have before waiting */
        s_fetch(req);
        return 0; /* suspended; MHD calls again once the page is here */
    }
}

static enum MHD_Result s_start_stream(s_request_t *req) {
    struct MHD_Response *response = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, KV_STREAM_BLOCK, s_stream_read, req, NULL);
    if (!response || s_out_append(req, "[", 1) != 0) {
        if (response) MHD_destroy_response(response);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "application/json");
    enum MHD_Result result = s_respond(req, 200, response, S_STREAMING);
    MHD_destroy_response(response);
    if (result == MHD_YES) req->worker->streams++;
    return result;
}

static enum MHD_Result s_finish_page(s_request_t *req) {
    if (s_out_append(req, "]", 1) != 0) return MHD_NO;
    struct MHD_Response *response = s_json_response(req->out, req->out_len, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    if (req->cursor.partition < req->partitions) {
        char cursor[KV_CURSOR_TEXT_MAX];
        kv_cursor_format(&req->cursor, cursor);
        MHD_add_response_header(response, "X-Next-Cursor", cursor);
    }
    enum MHD_Result result = s_respond(req, 200, response, S_ANSWERED);
    MHD_destroy_response(response);
    return result;
}

/* After a page arrived: stream it, or gather it into the page body. */
static enum MHD_Result s_answer_bulk(s_request_t *req) {
    if (req->failed) return s_queue_result(req, req->call.result);
    /* MHD (0.9.75) ends a chunked body with "0\r\n\r\n" even for HEAD,
     * bytes a keep-alive client would take for the next response: a HEAD
     * gets the first page's verdict with an empty body instead. */
    if (!req->limit && req->head) return s_queue(req, 200, "", 0);
    if (!req->limit) return s_start_stream(req);
    while (req->page_ready && req->emitted < req->limit) s_next_entry(req);
    if (req->page_ready) { /* limit reached inside the page: the cursor is the last key */
        req->page_ready = 0;
        if (!req->call.msg.more && req->entry_pos >= req->call.msg.entries.len) {
            req->cursor.partition++;
            req->cursor.has_after = 0;
        }
    }
    if (req->emitted < req->limit && req->cursor.partition < req->partitions) return s_fetch(req);
    return s_finish_page(req);
}

static int s_parse_limit(const kv_param_t *param, uint32_t *limit) {
    if (!param->present) return 0;
    if (param->bad_escape || param->len == 0 || param->len > 10) return -1;
    uint64_t value = 0;
    for (size_t i = 0; i < param->len; i++) {
        char c = param->ptr[i];
        if (c < '0' || c > '9') return -1;
        value = value * 10 + (uint64_t)(c - '0');
    }
    if (value == 0) return -1;
    *limit = value > KV_PAGE_MAX ? KV_PAGE_MAX : (uint32_t)value;
    return 0;
}

static enum MHD_Result s_start_bulk(s_request_t *req) {
    req->kind = req->route == R_KEYS     ? KV_BULK_KEYS
                : req->route == R_VALUES ? KV_BULK_VALUES
                                         : KV_BULK_ALL;
    req->partitions = kv_backend_partitions(req->worker->backend);
    if (s_parse_limit(&req->query.limit, &req->limit) != 0)
        return s_queue_fixed(req, F_INVALID_LIMIT);
    if (req->partitions == 0) return s_queue_fixed(req, F_NO_TABLE);
    if (req->limit && s_out_append(req, "[", 1) != 0) return MHD_NO;
    const kv_param_t *cursor = &req->query.cursor;
    if (cursor->present && cursor->len > 0 && /* "cursor=" starts from the beginning */
        (cursor->bad_escape || kv_cursor_parse(cursor->ptr ? cursor->ptr : "", cursor->len,
                                               req->partitions, &req->cursor) != 0))
        return s_queue_fixed(req, F_INVALID_CURSOR);
    if (req->cursor.partition >= req->partitions) { /* a cursor past the end: empty page */
        if (req->limit) return s_finish_page(req);
        return s_queue(req, 200, "[]", 2);
    }
    return s_fetch(req);
}

/* --- cluster routes ------------------------------------------------------- */

/* /clear /healthcheck /settings /status: no parameters, one call. */
static enum MHD_Result s_start_call(s_request_t *req) {
    return s_submit(req, s_routes[req->route].op);
}

static enum MHD_Result s_answer_health(s_request_t *req) {
    int healthy = req->call.table && kv_table_healthy(req->call.table);
    return s_queue_fixed(req, healthy ? F_HEALTH_OK : F_HEALTH_BAD);
}

static enum MHD_Result s_answer_settings(s_request_t *req) {
    const kv_table_t *table = req->call.table;
    kv_http_t *server = req->server;
    json_t *body = json_pack(
        "{s:s, s:s, s:I, s:i, s:i, s:o, s:o, s:I, s:I, s:s, s:I}", "version", KV_VERSION,
        "hostname", server->hostname, "port", (json_int_t)server->config.port, "maxKeyLength",
        KV_MAX_KEY_CHARS, "maxValueLength", KV_MAX_VALUE_CHARS, "partitions",
        table ? json_integer(kv_table_partitions(table)) : json_null(), "replicationFactor",
        table ? json_integer(kv_table_replication(table)) : json_null(), "threads",
        (json_int_t)server->config.threads, "timeoutMs", (json_int_t)server->config.timeout_ms,
        "coordinator", server->config.coordinator, "epoch",
        (json_int_t)(table ? kv_table_epoch(table) : 0));
    return s_queue_json(req, 200, body);
}

/* A node's counters as {"name": value, ...}; null when it did not answer. */
static json_t *s_status_counters(const kv_node_stats_t *stats) {
    if (!stats->answered) return json_null();
    json_t *counters = json_object();
    const kv_msg_t reply = {.type = KV_MSG_STATS_REPLY,
                            .version = stats->version,
                            .counters = {(const char *)stats->counters, stats->counters_len}};
    size_t pos = 0;
    kv_msg_counter_t counter;
    while (counters && kv_msg_counter_next(&reply, &pos, &counter) == 0)
        json_object_setn_new(counters, counter.name.ptr ? counter.name.ptr : "", counter.name.len,
                             json_integer((json_int_t)counter.value));
    return counters;
}

/* A node's figure; null when it did not answer, or (bytes 0) has no limit. */
static json_t *s_status_limit(const kv_node_stats_t *stats, uint64_t bytes) {
    return stats->answered && bytes ? json_integer((json_int_t)bytes) : json_null();
}

/* A node's counter name, from its STATS_REPLY: 0 when it has none (an
 * older node), null when it did not answer. */
static json_t *s_status_counter(const kv_node_stats_t *stats, const char *name) {
    if (!stats->answered) return json_null();
    const kv_msg_t reply = {.type = KV_MSG_STATS_REPLY,
                            .version = stats->version,
                            .counters = {(const char *)stats->counters, stats->counters_len}};
    size_t pos = 0, len = strlen(name);
    kv_msg_counter_t counter;
    while (kv_msg_counter_next(&reply, &pos, &counter) == 0)
        if (counter.name.len == len && memcmp(counter.name.ptr, name, len) == 0)
            return json_integer((json_int_t)counter.value);
    return json_integer(0);
}

/* The memory fields of a node (docs/api.md, /status). */
static int s_status_memory(json_t *object, const kv_node_stats_t *stats) {
    return json_object_set_new(object, "maxMemoryBytes", s_status_limit(stats, stats->max_memory)) |
           json_object_set_new(object, "usedMemoryBytes",
                               stats->answered ? json_integer((json_int_t)stats->used_memory)
                                               : json_null()) |
           json_object_set_new(object, "evictedKeys",
                               s_status_counter(stats, "kv_node_evicted_keys_total")) |
           json_object_set_new(object, "expiredKeys",
                               s_status_counter(stats, "kv_node_expired_keys_total"));
}

static json_t *s_status_node(const kv_table_t *table, const kv_node_stats_t *stats, uint16_t i) {
    const kv_table_node_t *node = kv_table_node(table, i);
    json_t *limit = s_status_limit(stats, stats->memory_limit); /* unknown, or no limit */
    json_t *object = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:b, s:o}", "id", node->id, "address",
        node->endpoint, "state", kv_node_state_name(node->state), "primaries",
        (json_int_t)kv_table_count_primaries(table, i), "replicas",
        (json_int_t)kv_table_count_replicas(table, i), "keys",
        stats->answered ? json_integer((json_int_t)stats->keys) : json_null(), "memoryBytes",
        stats->answered ? json_integer((json_int_t)stats->memory) : json_null(), "memoryLimitBytes",
        limit, "reachable", stats->answered, "counters", s_status_counters(stats));
    if (object && s_status_memory(object, stats) != 0) {
        json_decref(object);
        return NULL;
    }
    return object;
}

/* Partitions being copied to a new owner right now. */
static json_int_t s_moving(const kv_table_t *table) {
    json_int_t moving = 0;
    uint32_t partitions = table ? kv_table_partitions(table) : 0;
    for (uint32_t p = 0; p < partitions; p++) moving += kv_table_learner(table, p) != KV_NO_NODE;
    return moving;
}

/* This gateway's own part of /status: {"counters": {name: value, ...}}. */
static json_t *s_status_gateway(const kv_http_t *server) {
    json_t *counters = json_object();
    for (size_t i = 0; i < kv_counters_count(server->counters); i++)
        json_object_set_new(counters, kv_counters_name(server->counters, i),
                            json_integer((json_int_t)kv_counters_value(server->counters, i)));
    return json_pack("{s:o}", "counters", counters);
}

static enum MHD_Result s_answer_status(s_request_t *req) {
    const kv_table_t *table = req->call.table;
    json_t *nodes = json_array();
    uint64_t records = 0;
    for (uint32_t i = 0; table && req->call.stats && i < kv_table_node_count(table); i++) {
        records += req->call.stats[i].primary_keys;
        json_array_append_new(nodes, s_status_node(table, &req->call.stats[i], (uint16_t)i));
    }
    json_t *body = json_pack(
        "{s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:b, s:o}", "hostname", req->server->hostname,
        "maxKeyLength", KV_MAX_KEY_CHARS, "maxValueLength", KV_MAX_VALUE_CHARS, "availableRecords",
        (json_int_t)records, "epoch", (json_int_t)(table ? kv_table_epoch(table) : 0), "partitions",
        (json_int_t)(table ? kv_table_partitions(table) : 0), "replicationFactor",
        (json_int_t)(table ? kv_table_replication(table) : 0), "healthy",
        table && kv_table_healthy(table), "nodes", nodes);
    json_object_set_new(body, "movingPartitions", json_integer(s_moving(table)));
    json_object_set_new(body, "gateway", s_status_gateway(req->server));
    return s_queue_json(req, 200, body);
}

/* /join?node=ENDPOINT and /leave?node=ID go to the coordinator. */
static enum MHD_Result s_start_membership(s_request_t *req) {
    const kv_param_t *node = &req->query.node;
    int bad = !node->present || node->len == 0 || node->bad_escape ||
              memchr(node->ptr, '\0', node->len) != NULL;
    if (req->route == R_JOIN) {
        char endpoint[KV_ENDPOINT_MAX + 1];
        if (bad || node->len > KV_ENDPOINT_MAX) return s_queue_fixed(req, F_INVALID_NODE);
        memcpy(endpoint, node->ptr, node->len);
        endpoint[node->len] = '\0';
        if (!kv_endpoint_is_valid(endpoint)) return s_queue_fixed(req, F_INVALID_NODE);
    } else if (bad || node->len > KV_NODE_ID_MAX)
        return s_queue_fixed(req, F_UNKNOWN_NODE);
    req->call.key = node->ptr;
    req->call.klen = node->len;
    return s_submit(req, s_routes[req->route].op);
}

static enum MHD_Result s_answer_membership(s_request_t *req) {
    kv_call_result_t result = req->call.result;
    if (result == KV_CALL_OK) {
        const kv_bytes_t *id = &req->call.msg.node_id;
        json_t *body =
            json_pack("{s:b, s:s%}", "success", 1, "node", id->ptr ? id->ptr : "", id->len);
        if (req->route == R_LEAVE) json_object_del(body, "node");
        return s_queue_json(req, 200, body);
    }
    if (req->route == R_JOIN) {
        if (result == KV_CALL_BAD_REQUEST) return s_queue_fixed(req, F_INVALID_NODE);
        if (result == KV_CALL_UNAVAILABLE && req->call.msg.type == KV_MSG_CLUSTER_REPLY)
            return s_queue_fixed(req, F_NODE_UNREACHABLE);
        if (result == KV_CALL_TIMEOUT) return s_queue_fixed(req, F_NODE_UNREACHABLE);
        return s_queue_fixed(req, F_NO_COORDINATOR);
    }
    if (result == KV_CALL_NOT_FOUND) return s_queue_fixed(req, F_UNKNOWN_NODE);
    if (req->call.msg.type == KV_MSG_CLUSTER_REPLY && req->call.msg.status == KV_STATUS_NOT_READY)
        return s_queue_fixed(req, F_NO_COORDINATOR); /* restarted, still learning the nodes */
    if (result == KV_CALL_UNAVAILABLE && req->call.msg.type == KV_MSG_CLUSTER_REPLY)
        return s_queue_fixed(req, F_CANNOT_DRAIN);
    if (result == KV_CALL_TIMEOUT) return s_queue_fixed(req, F_TIMEOUT);
    return s_queue_fixed(req, F_NO_COORDINATOR);
}

/* --- the route table ----------------------------------------------------- */

/* clang-format off */
static const s_route_def_t s_routes[R_COUNT] = {
#define S_ROUTE_ROW(id, path, name, start, answer, op, read_only, admin)                           \
    [R_##id] = {path, name, start, answer, op, read_only, admin},
    S_ROUTES(S_ROUTE_ROW)
#undef S_ROUTE_ROW
    [R_UNKNOWN] = {NULL, "unknown", NULL, NULL, KV_CALL_TABLE, true, false},
};
/* clang-format on */

static s_route_t s_route_of(const char *url) {
    for (int r = 0; r < R_UNKNOWN; r++)
        if (strcmp(url, s_routes[r].path) == 0) return (s_route_t)r;
    return R_UNKNOWN;
}

/* GET everywhere; HEAD where nothing is written (an unknown path too: it
 * answers 404 to GET and HEAD alike). */
static bool s_method_allowed(const s_route_def_t *route, const char *method) {
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0) return true;
    return route->read_only && strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* --- MHD callbacks -------------------------------------------------------- */

/* The end of the request: the API's error precedence (405, then 404, then
 * 414, then the route's own checks), then the route's start. */
static enum MHD_Result s_start(s_request_t *req, const char *url, const char *method) {
    req->route = s_route_of(url);
    const s_route_def_t *route = &s_routes[req->route];
    if (!s_method_allowed(route, method))
        return s_queue_fixed(req, route->read_only ? F_METHOD : F_METHOD_WRITE);
    if (req->route == R_UNKNOWN) return s_queue_fixed(req, F_UNKNOWN_ROUTE);
    if (req->uri_too_long) return s_queue_fixed(req, F_URI_TOO_LONG);
    req->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    /* Decodes in place; /mget reads its repeated k from the raw query. */
    if (req->route != R_MGET && req->route != R_TX)
        kv_query_parse(req->query_buf, req->query_len, &req->query);
    return route->start(req);
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls) {
    s_request_t *req = *req_cls;
    if (!req) return MHD_NO; /* out of memory in s_uri_log: close the connection */
    if (*upload_data_size) { /* GET has no body: discard it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    req->conn = conn;
    switch (req->state) {
    case S_NEW:
        /* The first call comes with the headers; answering then makes MHD
         * close the connection (it cannot know the body is empty), so we
         * wait for the second call, at the end of the request, and
         * keep-alive survives. */
        s_goto(req, S_RECEIVING);
        return MHD_YES;
    case S_RECEIVING:
        return s_start(req, url, method);
    case S_READY:
        return s_routes[req->route].answer(req);
    default:
        return MHD_YES; /* WAITING: asked on every MHD_run until the call ends */
    }
}

/* Runs before MHD parses the target: the only place to see the raw query. */
static void *s_uri_log(void *cls, const char *uri, struct MHD_Connection *conn) {
    size_t len = strlen(uri);
    const char *mark = strchr(uri, '?');
    int too_long = len > KV_MAX_URI_BYTES;
    size_t qlen = mark && !too_long ? len - (size_t)(mark + 1 - uri) : 0;
    s_request_t *req = calloc(1, sizeof(*req) + qlen + 1);
    if (!req) return NULL;
    req->worker = cls;
    req->server = req->worker->server;
    req->route = R_UNKNOWN;
    req->state = S_NEW;
    req->uri_too_long = too_long;
    req->query_len = qlen;
    if (qlen) memcpy(req->query_buf, mark + 1, qlen);
    /* The query is ours now (kv_query parses it). MHD would also parse it,
     * into a record per parameter in the connection's pool, right after
     * this callback, starting at the character after the '?' it found
     * before calling us: ending the string there leaves it nothing to
     * parse. That saves its work on every request and lets 1000 /mget
     * keys fit the pool (libmicrohttpd 0.9.75's order: log callback, then
     * arguments; it_api's 1000-key row fails if that order changes). */
    if (mark) ((char *)mark)[1] = '\0';
    kv_call_init(&req->call);
    return req;
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                        enum MHD_RequestTerminationCode code) {
    s_request_t *req = *req_cls;
    *req_cls = NULL;
    if (!req) return;
    switch (req->state) {
    case S_WAITING: /* off MHD's ready list: it no longer keeps MHD busy */
        req->worker->waiting--;
        s_goto(req, S_ORPHAN);
        return; /* the backend still points at req->call: freed when it ends */
    case S_REFILLING:
        req->worker->streams--;
        s_goto(req, S_ORPHAN);
        return;
    case S_SUSPENDED:
        s_goto(req, S_ORPHAN);
        return;
    case S_STREAMING:
        req->worker->streams--;
        break;
    default:
        break;
    }
    s_goto(req, S_DONE);
    s_request_free(req);
}

/* We decode the query ourselves (kv_query), so MHD must leave it alone. */
static size_t s_unescape_none(void *cls, struct MHD_Connection *conn, char *text) {
    return strlen(text);
}

/* --- workers ---------------------------------------------------------- */

static struct MHD_Daemon *s_start_daemon(s_worker_t *worker) {
    const kv_http_config_t *config = &worker->server->config;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)config->port)};
    if (inet_pton(AF_INET, config->host, &addr.sin_addr) != 1) return NULL;
    return MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, (uint16_t)config->port, NULL,
        NULL, s_handler, worker, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_URI_LOG_CALLBACK,
        s_uri_log, worker, MHD_OPTION_NOTIFY_COMPLETED, s_completed, worker,
        MHD_OPTION_UNESCAPE_CALLBACK, s_unescape_none, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)KV_CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
}

#define KV_WORKER_ITEMS (2 + 2 + KV_MAX_NODES) /* MHD, stop, backend sockets */

static int s_worker_items(s_worker_t *worker, zmq_pollitem_t *items) {
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(worker->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    items[0] = (zmq_pollitem_t){NULL, info ? info->epoll_fd : -1, ZMQ_POLLIN, 0};
    items[1] = (zmq_pollitem_t){NULL, worker->server->stop_pipe[0], ZMQ_POLLIN, 0};
    return 2 + kv_backend_poll_items(worker->backend, items + 2);
}

/* How long the loop may sleep. While keyed calls wait unsuspended, MHD
 * says 0 (they sit on its ready list) whatever else it has to do, so its
 * answer cannot be used: the loop then sleeps until the backend's next
 * deadline, at most KV_WAITING_SLEEP_MS, or 1 ms while a stream may have
 * more to write without a socket event (MHD writes a block per run). */
#define KV_WAITING_SLEEP_MS 20

static long s_worker_timeout(s_worker_t *worker) {
    long timeout = kv_backend_timeout(worker->backend);
    if (worker->waiting > 0) {
        long cap = worker->streams > 0 ? 1 : KV_WAITING_SLEEP_MS;
        return timeout < cap ? timeout : cap;
    }
    MHD_UNSIGNED_LONG_LONG mhd = 0;
    if (MHD_get_timeout(worker->daemon, &mhd) == MHD_YES && (long long)mhd < timeout)
        timeout = (long)mhd;
    return timeout > 1000 ? 1000 : timeout;
}

/* Lets MHD read requests and write answers. Calls that finished since the
 * last run are answered by s_handler inside the first run, which leaves
 * their responses queued: a second run writes them now instead of one
 * loop turn later. */
static void s_worker_run_mhd(s_worker_t *worker) {
    int answered = worker->answered;
    worker->answered = 0;
    MHD_run(worker->daemon);
    if (answered) MHD_run(worker->daemon);
}

/* The loop: wait for HTTP or ZeroMQ (kv_poller), let the backend finish
 * calls (which wakes their requests), then let MHD read requests and write answers. On
 * stop it stops accepting and lets calls in flight end (by their deadline
 * at the latest) before it closes anything. */
static void s_worker_loop(s_worker_t *worker) {
    zmq_pollitem_t items[KV_WORKER_ITEMS];
    int count = s_worker_items(worker, items);
    int64_t stop_deadline = 0;
    for (;;) {
        if (kv_backend_items_changed(worker->backend)) count = s_worker_items(worker, items);
        int rc = kv_poller_wait(worker->poller, items, count, s_worker_timeout(worker));
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN) && !stop_deadline) {
            MHD_socket listener = MHD_quiesce_daemon(worker->daemon);
            if (listener != MHD_INVALID_SOCKET) close(listener);
            stop_deadline = kv_clock_mono_ms() + 2 * worker->server->config.timeout_ms;
            items[1].events = 0; /* the byte stays in the pipe for the other workers */
        }
        kv_backend_process(worker->backend, items + 2, rc > 0 ? count - 2 : 0);
        s_worker_run_mhd(worker);
        if (stop_deadline && (worker->in_flight == 0 || kv_clock_mono_ms() > stop_deadline)) break;
    }
}

static void *s_worker_run(void *arg) {
    s_worker_t *worker = arg;
    kv_backend_config_t config = {worker->server->config.coordinator,
                                  worker->server->config.coordinator_pub,
                                  worker->server->config.timeout_ms};
    worker->backend = kv_backend_new(&config);
    worker->poller = kv_poller_new(KV_WORKER_ITEMS);
    worker->daemon = worker->backend && worker->poller ? s_start_daemon(worker) : NULL;
    worker->failed = !worker->daemon;
    sem_post(&worker->ready);
    if (!worker->failed) s_worker_loop(worker);
    kv_backend_destroy(&worker->backend); /* fails what still waits: resumes connections */
    kv_poller_destroy(&worker->poller);
    if (worker->daemon) {
        MHD_run(worker->daemon);
        MHD_stop_daemon(worker->daemon);
    }
    return NULL;
}

/* Registers the counters kv_http.h names; the handles go in self. A
 * handle that failed to register is ignored when counted. */
static int s_register_counters(kv_http_t *self) {
    self->counters = kv_counters_new();
    if (!self->counters) return -1;
    char name[KV_COUNTER_NAME_MAX + 1];
    for (int r = 0; r < R_COUNT; r++) {
        for (int c = 0; c < S_STATUS_CLASSES; c++) {
            self->answers[r][c] = KV_COUNTER_INVALID;
            if (!s_status_classes[c]) continue; /* never answered */
            snprintf(name, sizeof(name), "kv_gateway_requests_total_%s_%s", s_routes[r].name,
                     s_status_classes[c]);
            self->answers[r][c] = kv_counters_register(
                self->counters, name, "requests answered, by route and status class");
        }
    }
    for (int from = 0; from < S_COUNT; from++) {
        for (int to = 0; to < S_COUNT; to++) {
            self->transitions[from][to] = KV_COUNTER_INVALID;
            if (!s_state_legal((s_state_t)from, (s_state_t)to)) continue;
            snprintf(name, sizeof(name), "kv_gateway_request_transitions_total_%s_%s",
                     s_state_names[from], s_state_names[to]);
            self->transitions[from][to] = kv_counters_register(
                self->counters, name, "request state changes, by state left and state entered");
        }
    }
    self->illegal =
        kv_counters_register(self->counters, "kv_gateway_request_illegal_transitions_total",
                             "request state changes refused as illegal (a bug)");
    return 0;
}

kv_http_t *kv_http_new(const kv_http_config_t *config) {
    kv_http_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->config = *config;
    self->stop_pipe[0] = self->stop_pipe[1] = -1;
    if (gethostname(self->hostname, sizeof(self->hostname) - 1) != 0)
        strcpy(self->hostname, "localhost");
    self->workers = calloc((size_t)config->threads, sizeof(*self->workers));
    if (!self->workers || s_register_counters(self) != 0 || s_build_fixed(self) != 0 ||
        pipe(self->stop_pipe) != 0) {
        kv_log_error("out of memory or file descriptors");
        kv_http_destroy(&self);
        return NULL;
    }
    int failed = 0;
    for (long i = 0; i < config->threads; i++) {
        s_worker_t *worker = &self->workers[i];
        worker->server = self;
        sem_init(&worker->ready, 0, 0);
        worker->started = pthread_create(&worker->thread, NULL, s_worker_run, worker) == 0;
        if (worker->started) sem_wait(&worker->ready);
        failed |= !worker->started || worker->failed;
    }
    if (failed) {
        kv_log_error("cannot listen on %s:%ld", config->host, config->port);
        kv_http_destroy(&self);
        return NULL;
    }
    kv_log_info("gateway listening on http://%s:%ld with %ld threads", config->host, config->port,
                config->threads);
    return self;
}

void kv_http_destroy(kv_http_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_http_t *self = *self_p;
    if (self->stop_pipe[1] >= 0 && write(self->stop_pipe[1], "x", 1) != 1)
        kv_log_error("cannot stop the HTTP workers");
    for (long i = 0; self->workers && i < self->config.threads; i++) {
        if (self->workers[i].started) pthread_join(self->workers[i].thread, NULL);
        sem_destroy(&self->workers[i].ready);
    }
    for (int i = 0; i < 2; i++)
        if (self->stop_pipe[i] >= 0) close(self->stop_pipe[i]);
    for (int i = 0; i < F_COUNT; i++)
        if (self->fixed[i].response) MHD_destroy_response(self->fixed[i].response);
    kv_counters_destroy(&self->counters);
    free(self->workers);
    free(self);
    *self_p = NULL;
}

const kv_counters_t *kv_http_counters(const kv_http_t *self) {
    return self ? self->counters : NULL;
}
