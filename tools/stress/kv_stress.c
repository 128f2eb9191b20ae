/*  kv_stress.c: kv-stress, an HTTP load generator that also checks answers.
 *
 *  One thread drives --concurrency keep-alive HTTP/1.1 connections, all
 *  non-blocking on one edge-triggered epoll set. Each connection has one
 *  request in flight (no pipelining, like wrk), and writes the next one as
 *  soon as the previous answer is parsed, so the client costs a read, a
 *  parse and a write per request and rarely limits the server it measures.
 *  Sockets are registered once for both directions: no epoll_ctl per request.
 *
 *  Every answer is checked, not only counted: a /set must be 200
 *  {"success":true,"version":N}, a /rm 200 {"success":true}, a /get 200
 *  with exactly the value written (values are a function of the key, see
 *  kv_load.h). Reads and removals only target keys
 *  whose write was acknowledged and that no other in-flight request touches,
 *  since requests on different connections may be served in any order. So on
 *  a healthy store every request succeeds, and any error is a real one.
 *
 *  Latencies go to a log-bucket histogram (kv_hist). Errors are counted by
 *  kind, HTTP statuses by code. Exit status: 0 when every request succeeded,
 *  1 when any failed, 2 on bad flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kv_hist.h"
#include "kv_limits.h"
#include "kv_load.h"
#include "kv_opts.h"

#define S_OUT_MAX 2048            /* one request: a 256-byte value and headers fit */
#define S_IN_MAX 16384            /* one response; larger ones are rejected */
#define S_EVENTS 256              /* epoll events per wait */
#define S_TICK_NS 250000000LL     /* progress and timeout checks, 4 per second */
#define S_PICK_TRIES 8            /* random draws for a key nobody is using */
#define S_STATUS_MAX 600          /* HTTP status codes counted one by one */
#define S_REQUESTS_MAX 1000000000 /* key numbers stay 32-bit */
#define S_HOST_MAX 256            /* host[:port] of the URL */
#define S_BASE_MAX 512            /* path prefix of the URL */

typedef enum {
    E_CONNECT = 0, /* connect() failed or timed out */
    E_TIMEOUT,     /* no complete answer within --timeout-ms */
    E_CLOSED,      /* the server closed the connection mid-request */
    E_IO,          /* read or write failed */
    E_PARSE,       /* not a valid HTTP/1.1 response */
    E_BODY,        /* 200, but not the body the request must get */
    E_STATUS,      /* any status but 200 (counted by code too) */
    E_KINDS,
} s_err_t;

static const char *const s_err_names[E_KINDS] = {
    "connect error", "timeout",  "connection closed", "I/O error",
    "bad response",  "bad body", "HTTP status",
};

typedef enum {
    C_CLOSED = 0, /* no socket; reopened by the main loop while requests remain */
    C_CONNECTING, /* connect() in progress */
    C_IDLE,       /* connected, no request */
    C_BUSY,       /* a request in flight */
} s_state_t;

typedef struct {
    int fd;                /* socket, -1 when closed */
    s_state_t state;       /* see s_state_t */
    int64_t started;       /* ns: when the request (or the connect) began */
    kv_load_op_t op;       /* the request in flight */
    uint32_t key;          /* its key number */
    size_t out_len;        /* bytes of the request */
    size_t out_sent;       /* of which written */
    size_t in_len;         /* bytes of the response received so far */
    char out[S_OUT_MAX];   /* the request */
    char in[S_IN_MAX + 1]; /* the response (NUL-terminated for parsing) */
} s_conn_t;

/* A parsed response. */
typedef struct {
    int status;       /* HTTP status code */
    int close;        /* the server will close the connection after it */
    size_t length;    /* bytes of the whole response in the input */
    const char *body; /* de-chunked body */
    size_t body_len;  /* its bytes */
} s_resp_t;

typedef struct {
    const char *url;  /* http://host[:port][/prefix] */
    const char *mix;  /* operation weights */
    long requests;    /* requests in total */
    long concurrency; /* connections */
    long keys;        /* key space; 0: every set writes a new key */
    long value_size;  /* bytes per value */
    long seed;        /* names keys and seeds the generator */
    long timeout_ms;  /* per request */
    long preload;     /* keys written before the measured run */
    long progress;    /* 1: live progress line on stderr */
    long ttl_min;     /* sets give keys a ttl from ttl_min to ttl_max seconds; 0: none */
    long ttl_max;
} s_config_t;

typedef struct {
    s_config_t config;               /* flags */
    kv_mix_t mix;                    /* parsed --mix */
    struct sockaddr_storage addr;    /* the server */
    socklen_t addr_len;              /* bytes of addr */
    char host[S_HOST_MAX];           /* Host header */
    char base[S_BASE_MAX];           /* path prefix, no trailing slash */
    int epfd;                        /* epoll set of every connection */
    s_conn_t *conns;                 /* concurrency connections */
    long conn_count;                 /* entries in conns */
    kv_keyset_t *live;               /* keys acknowledged written and not removed */
    uint8_t *busy;                   /* by key: a request on it is in flight */
    uint64_t rng;                    /* workload generator */
    uint64_t next_key;               /* next new key (keys 0, or preloading) */
    uint64_t target;                 /* requests of the current phase */
    int preloading;                  /* writing keys 0..preload-1, unmeasured */
    uint64_t issued;                 /* requests started (or failed to connect) */
    uint64_t done;                   /* requests finished, either way */
    uint64_t ok;                     /* requests that succeeded */
    uint64_t ops_ok[KV_LOAD_OPS];    /* successes per operation */
    uint64_t errors[E_KINDS];        /* failures per kind */
    uint64_t statuses[S_STATUS_MAX]; /* failures per HTTP status */
    kv_hist_t *latency;              /* ns, of every answered request */
    int64_t started;                 /* ns: start of the run */
    int64_t last_tick;               /* ns: last progress line */
    uint64_t last_done;              /* done at the last progress line */
    int tty;                         /* stderr is a terminal */
    unsigned ticks;                  /* progress ticks so far */
    char *scratch;                   /* de-chunked bodies */
} s_stress_t;

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal(int sig) {
    (void)sig;
    s_interrupted = 1;
}

static int64_t s_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- the target ----------------------------------------------------------- */

/* Splits "http://host[:port][/prefix]" into self->host (the Host header),
 * self->base and the resolved address. Returns 0, or -1 after printing why. */
static int s_parse_url(s_stress_t *self, const char *url) {
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "kv-stress: --url must start with http:// (got '%s')\n", url);
        return -1;
    }
    const char *authority = url + 7;
    size_t auth_len = strcspn(authority, "/?#");
    if (auth_len == 0 || auth_len >= sizeof(self->host)) {
        fprintf(stderr, "kv-stress: bad host in --url '%s'\n", url);
        return -1;
    }
    memcpy(self->host, authority, auth_len);
    self->host[auth_len] = '\0';
    snprintf(self->base, sizeof(self->base), "%s", authority + auth_len);
    size_t base_len = strlen(self->base);
    while (base_len && self->base[base_len - 1] == '/') self->base[--base_len] = '\0';

    char name[S_HOST_MAX];
    const char *port = "80";
    snprintf(name, sizeof(name), "%s", self->host);
    char *colon = strrchr(name, ':');
    if (name[0] == '[') { /* [v6 address][:port] */
        char *close = strchr(name, ']');
        if (!close) {
            fprintf(stderr, "kv-stress: bad IPv6 host in '%s'\n", url);
            return -1;
        }
        *close = '\0';
        if (close[1] == ':') port = close + 2;
        memmove(name, name + 1, strlen(name + 1) + 1);
    } else if (colon) {
        *colon = '\0';
        port = colon + 1;
    }
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, port, &hints, &found);
    if (rc != 0 || !found) {
        fprintf(stderr, "kv-stress: cannot resolve '%s' port '%s': %s\n", name, port,
                gai_strerror(rc));
        return -1;
    }
    const struct addrinfo *pick = found; /* IPv4 first: the gateway listens on IPv4 */
    for (const struct addrinfo *a = found; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memcpy(&self->addr, pick->ai_addr, pick->ai_addrlen);
    self->addr_len = pick->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

/* --- connections ---------------------------------------------------------- */

static void s_close(s_conn_t *conn) {
    if (conn->fd >= 0) close(conn->fd); /* close() also leaves the epoll set */
    conn->fd = -1;
    conn->state = C_CLOSED;
    conn->in_len = 0;
    conn->out_len = 0;
    conn->out_sent = 0;
}

/* A connection that could not be made costs one request, so a run against
 * a dead server ends (with every request failed) instead of spinning. */
static void s_connect_failed(s_stress_t *self, s_conn_t *conn) {
    s_close(conn);
    self->issued++;
    self->done++;
    self->errors[E_CONNECT]++;
}

/* Starts a non-blocking connect. The socket is registered for input and
 * output, edge-triggered, once for its whole life. */
static void s_open(s_stress_t *self, s_conn_t *conn) {
    int fd = socket(self->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_connect_failed(self, conn);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn->fd = fd;
    conn->state = C_CONNECTING;
    conn->started = s_now_ns();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = conn};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        s_connect_failed(self, conn);
        return;
    }
    if (connect(fd, (const struct sockaddr *)&self->addr, self->addr_len) != 0 &&
        errno != EINPROGRESS)
        s_connect_failed(self, conn);
}

/* --- requests ------------------------------------------------------------- */

/* A live key no in-flight request uses, in *key. Returns 0, or -1 when a few
 * random draws found none (the caller then writes instead). */
static int s_pick_live(s_stress_t *self, uint32_t *key) {
    for (int i = 0; i < S_PICK_TRIES; i++) {
        int64_t n = kv_keyset_pick(self->live, &self->rng);
        if (n < 0) return -1;
        if (!self->busy[n]) {
            *key = (uint32_t)n;
            return 0;
        }
    }
    return -1;
}

/* The key the next write goes to: a new one, or with --keys a random one no
 * in-flight request uses (there is one: keys > 2 x concurrency). */
static uint32_t s_pick_set_key(s_stress_t *self) {
    if (self->config.keys == 0) return (uint32_t)self->next_key++;
    uint64_t space = (uint64_t)self->config.keys;
    uint64_t n = kv_rand_below(&self->rng, space);
    while (self->busy[n]) n = (n + 1) % space;
    return (uint32_t)n;
}

/* Writes the request for (op, key) into conn->out. */
static void s_format_request(s_stress_t *self, s_conn_t *conn) {
    char key[64], value[KV_MAX_VALUE_CHARS + 1], ttl[32] = "";
    kv_load_key(key, sizeof(key), self->config.seed, conn->key);
    int len;
    if (conn->op == KV_LOAD_SET) {
        kv_load_value(value, (size_t)self->config.value_size, self->config.seed, conn->key);
        if (self->config.ttl_min) /* spread over the range by key number */
            snprintf(ttl, sizeof(ttl), "&ttl=%ld",
                     self->config.ttl_min +
                         (long)(conn->key %
                                (uint64_t)(self->config.ttl_max - self->config.ttl_min + 1)));
        len = snprintf(conn->out, sizeof(conn->out),
                       "GET %s/set?k=%s&v=%.*s%s HTTP/1.1\r\nHost: %s\r\n\r\n", self->base, key,
                       (int)self->config.value_size, value, ttl, self->host);
    } else
        len = snprintf(conn->out, sizeof(conn->out), "GET %s/%s?k=%s HTTP/1.1\r\nHost: %s\r\n\r\n",
                       self->base, kv_load_op_name(conn->op), key, self->host);
    conn->out_len = len > 0 && (size_t)len < sizeof(conn->out) ? (size_t)len : 0;
    conn->out_sent = 0;
}

/* Writes what is left of the request; the rest goes on EPOLLOUT. Returns 0,
 * or -1 when the write failed. */
static int s_flush(s_conn_t *conn) {
    while (conn->out_sent < conn->out_len) {
        ssize_t n = send(conn->fd, conn->out + conn->out_sent, conn->out_len - conn->out_sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            conn->out_sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    return 0;
}

static void s_fail(s_stress_t *self, s_conn_t *conn, s_err_t err);

/* Starts the next request on an idle connection, or closes it when every
 * request has been started. */
static void s_issue(s_stress_t *self, s_conn_t *conn) {
    if (self->issued >= self->target) {
        s_close(conn);
        return;
    }
    kv_load_op_t op = self->preloading ? KV_LOAD_SET : kv_mix_pick(&self->mix, &self->rng);
    uint32_t key = 0;
    if (op != KV_LOAD_SET && s_pick_live(self, &key) != 0)
        op = KV_LOAD_SET; /* nothing to read yet */
    if (self->preloading)
        key = (uint32_t)self->next_key++;
    else if (op == KV_LOAD_SET)
        key = s_pick_set_key(self);
    if (op == KV_LOAD_RM) kv_keyset_remove(self->live, key); /* gone, whatever the answer */
    conn->op = op;
    conn->key = key;
    conn->state = C_BUSY;
    conn->in_len = 0;
    conn->started = s_now_ns();
    self->busy[key] = 1;
    self->issued++;
    s_format_request(self, conn);
    if (s_flush(conn) != 0) s_fail(self, conn, E_IO);
}

/* --- responses ------------------------------------------------------------ */

/* Case-insensitive: does the header line [line, end) have this name and a
 * value containing token? */
static int s_header_has(const char *line, const char *end, const char *name, const char *token) {
    size_t name_len = strlen(name);
    if ((size_t)(end - line) <= name_len || strncasecmp(line, name, name_len) != 0 ||
        line[name_len] != ':')
        return 0;
    size_t token_len = strlen(token);
    for (const char *p = line + name_len + 1; p + token_len <= end; p++)
        if (strncasecmp(p, token, token_len) == 0) return 1;
    return 0;
}

/* Decodes a chunked body starting at p (the input ends at end) into out.
 * Returns bytes consumed from p, 0 when incomplete, -1 when malformed. */
static long s_dechunk(const char *p, const char *end, char *out, size_t *out_len) {
    const char *start = p;
    *out_len = 0;
    for (;;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) return 0;
        char *stop = NULL;
        unsigned long size = strtoul(p, &stop, 16);
        if (stop == p || (stop != eol && *stop != ';') || size > S_IN_MAX) return -1;
        p = eol + 2;
        if (size == 0) break;
        if ((size_t)(end - p) < size + 2) return 0;
        if (p[size] != '\r' || p[size + 1] != '\n') return -1;
        memcpy(out + *out_len, p, size);
        *out_len += size;
        p += size + 2;
    }
    const char *trailer_end = memmem(p - 2, (size_t)(end - (p - 2)), "\r\n\r\n", 4);
    if (!trailer_end) return 0; /* trailers (none expected) end with an empty line */
    return (long)(trailer_end + 4 - start);
}

/* Parses the status line and the headers of [in, in + len), whose header
 * block ends at head_end. Fills status, close, and *content_length (-1 when
 * absent) and *chunked. Returns 0 or -1. */
static int s_parse_head(const char *in, const char *head_end, s_resp_t *resp, long *content_length,
                        int *chunked) {
    if (strncmp(in, "HTTP/1.", 7) != 0 || (in[7] != '0' && in[7] != '1') || in[8] != ' ') return -1;
    resp->close = in[7] == '0'; /* HTTP/1.0 closes unless told otherwise */
    char *stop = NULL;
    long status = strtol(in + 9, &stop, 10);
    if (stop != in + 12 || status < 100 || status >= S_STATUS_MAX) return -1;
    resp->status = (int)status;
    *content_length = -1;
    *chunked = 0;
    const char *line = memmem(in, (size_t)(head_end - in), "\r\n", 2) + 2;
    while (line < head_end) {
        const char *eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
        if (strncasecmp(line, "content-length:", 15) == 0) {
            long value = strtol(line + 15, &stop, 10);
            if (stop == line + 15 || value < 0 || value > S_IN_MAX) return -1;
            *content_length = value;
        } else if (s_header_has(line, eol, "transfer-encoding", "chunked"))
            *chunked = 1;
        else if (s_header_has(line, eol, "connection", "close"))
            resp->close = 1;
        else if (s_header_has(line, eol, "connection", "keep-alive"))
            resp->close = 0;
        line = eol + 2;
    }
    return 0;
}

/* Parses conn's input. Returns 1 with *resp filled when a whole response is
 * there, 0 when more bytes are needed, -1 when it is malformed. */
static int s_parse(s_stress_t *self, s_conn_t *conn, s_resp_t *resp) {
    conn->in[conn->in_len] = '\0';
    const char *head_end = memmem(conn->in, conn->in_len, "\r\n\r\n", 4);
    if (!head_end) return conn->in_len >= S_IN_MAX ? -1 : 0;
    long content_length;
    int chunked;
    if (s_parse_head(conn->in, head_end, resp, &content_length, &chunked) != 0) return -1;
    const char *body = head_end + 4, *end = conn->in + conn->in_len;
    if (chunked) {
        long used = s_dechunk(body, end, self->scratch, &resp->body_len);
        if (used <= 0) return (int)used;
        resp->body = self->scratch;
        resp->length = (size_t)(body - conn->in) + (size_t)used;
        return 1;
    }
    if (content_length < 0) return -1; /* a body up to EOF: not keep-alive, not expected */
    if (end - body < content_length) return conn->in_len >= S_IN_MAX ? -1 : 0;
    resp->body = body;
    resp->body_len = (size_t)content_length;
    resp->length = (size_t)(body - conn->in) + (size_t)content_length;
    return 1;
}

/* Does body equal expected once JSON whitespace outside strings is ignored?
 * (Expected bodies hold no whitespace inside their strings.) */
static int s_body_is(const char *body, size_t len, const char *expected) {
    size_t j = 0, expected_len = strlen(expected);
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        if (j >= expected_len || c != expected[j]) return 0;
        j++;
    }
    return j == expected_len;
}

/* Is body {"success":true,"version":N} with N a positive integer (the
 * answer of a /set)? The gateway writes it without whitespace. */
static int s_set_body_is_ok(const char *body, size_t len) {
    static const char head[] = "{\"success\":true,\"version\":";
    size_t i = sizeof(head) - 1, digits = 0;
    if (len <= i || memcmp(body, head, i) != 0) return 0;
    for (; i < len && body[i] >= '0' && body[i] <= '9'; i++) digits++;
    return digits > 0 && body[i - digits] != '0' && i + 1 == len && body[i] == '}';
}

/* Checks a 200 answer's body against what conn's request must get. */
static int s_body_ok(s_stress_t *self, const s_conn_t *conn, const s_resp_t *resp) {
    if (conn->op == KV_LOAD_SET) return s_set_body_is_ok(resp->body, resp->body_len);
    if (conn->op != KV_LOAD_GET) return s_body_is(resp->body, resp->body_len, "{\"success\":true}");
    size_t size = (size_t)self->config.value_size;
    if (resp->body_len != size + 2 || resp->body[0] != '"' || resp->body[size + 1] != '"') return 0;
    char value[KV_MAX_VALUE_CHARS];
    kv_load_value(value, size, self->config.seed, conn->key);
    return memcmp(resp->body + 1, value, size) == 0;
}

/* Ends conn's request: err is -1 for success or an s_err_t, status the HTTP
 * status when there was one. Leaves the connection as it is. */
static void s_finish(s_stress_t *self, s_conn_t *conn, int err, int status) {
    if (status) kv_hist_record(self->latency, (uint64_t)(s_now_ns() - conn->started));
    if (err < 0) {
        self->ok++;
        self->ops_ok[conn->op]++;
        if (conn->op == KV_LOAD_SET && kv_keyset_add(self->live, conn->key) != 0)
            fprintf(stderr, "kv-stress: out of memory tracking keys\n");
    } else {
        self->errors[err]++;
        if (err == E_STATUS) self->statuses[status]++;
    }
    self->busy[conn->key] = 0;
    self->done++;
    conn->state = C_IDLE;
}

/* Handles the complete response in conn's input: judge it, then reuse or
 * close the connection. */
static void s_on_response(s_stress_t *self, s_conn_t *conn, const s_resp_t *resp) {
    int err = -1;
    if (resp->status != 200)
        err = E_STATUS;
    else if (!s_body_ok(self, conn, resp))
        err = E_BODY;
    s_finish(self, conn, err, resp->status);
    if (resp->length != conn->in_len || resp->close) { /* extra bytes: we never pipeline */
        if (resp->length != conn->in_len) self->errors[E_PARSE]++;
        s_close(conn);
        return;
    }
    s_issue(self, conn);
}

/* Ends the request in flight (if any) with err and closes the connection. */
static void s_fail(s_stress_t *self, s_conn_t *conn, s_err_t err) {
    if (conn->state == C_BUSY) s_finish(self, conn, (int)err, 0);
    s_close(conn);
}

/* Reads until the socket is drained (edge-triggered), handling every
 * response completed on the way. */
static void s_read(s_stress_t *self, s_conn_t *conn) {
    while (conn->fd >= 0) {
        ssize_t n = recv(conn->fd, conn->in + conn->in_len, S_IN_MAX - conn->in_len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0) {
            s_fail(self, conn, E_IO);
            return;
        }
        if (n == 0) { /* EOF: harmless between requests, an error during one */
            s_fail(self, conn, E_CLOSED);
            return;
        }
        if (conn->state != C_BUSY) { /* bytes nobody asked for */
            self->errors[E_PARSE]++;
            s_close(conn);
            return;
        }
        conn->in_len += (size_t)n;
        s_resp_t resp = {0, 0, 0, NULL, 0};
        int rc = s_parse(self, conn, &resp);
        if (rc < 0) s_fail(self, conn, E_PARSE);
        if (rc > 0) s_on_response(self, conn, &resp);
    }
}

static void s_on_connected(s_stress_t *self, s_conn_t *conn) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        s_connect_failed(self, conn);
        return;
    }
    conn->state = C_IDLE;
    s_issue(self, conn);
}

static void s_on_event(s_stress_t *self, s_conn_t *conn, uint32_t events) {
    if (conn->state == C_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) s_on_connected(self, conn);
        return;
    }
    if ((events & EPOLLOUT) && conn->state == C_BUSY && s_flush(conn) != 0) {
        s_fail(self, conn, E_IO);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s_read(self, conn);
}

/* Fails requests and connects older than the timeout. */
static void s_check_timeouts(s_stress_t *self, int64_t now) {
    int64_t limit = self->config.timeout_ms * 1000000LL;
    for (long i = 0; i < self->conn_count; i++) {
        s_conn_t *conn = &self->conns[i];
        if (now - conn->started <= limit) continue;
        if (conn->state == C_CONNECTING)
            s_connect_failed(self, conn);
        else if (conn->state == C_BUSY)
            s_fail(self, conn, E_TIMEOUT);
    }
}

/* --- reporting ------------------------------------------------------------ */

static uint64_t s_error_total(const s_stress_t *self) {
    uint64_t total = 0;
    for (int i = 0; i < E_KINDS; i++) total += self->errors[i];
    return total;
}

/* The live line: on a terminal rewritten 4 times a second, otherwise one
 * line a second so logs stay readable. */
static void s_progress(s_stress_t *self, int64_t now) {
    self->ticks++;
    double seconds = (double)(now - self->last_tick) / 1e9;
    double rate = seconds > 0 ? (double)(self->done - self->last_done) / seconds : 0;
    if (!self->config.progress || (!self->tty && self->ticks % 4 != 0)) return;
    self->last_tick = now;
    self->last_done = self->done;
    fprintf(stderr, "%s[kv-stress] left %llu  ok %llu  errors %llu  %.0f req/s%s",
            self->tty ? "\r\033[K" : "", (unsigned long long)(self->target - self->done),
            (unsigned long long)self->ok, (unsigned long long)s_error_total(self), rate,
            self->tty ? "" : "\n");
    fflush(stderr);
}

static void s_print_ms(const char *label, uint64_t ns) {
    printf("  %-4s %8.3f ms", label, (double)ns / 1e6);
}

static void s_report(const s_stress_t *self, int64_t elapsed_ns) {
    double seconds = (double)elapsed_ns / 1e9;
    uint64_t errors = s_error_total(self);
    char mix[128];
    kv_mix_format(&self->mix, mix, sizeof(mix));
    printf("kv-stress: %llu requests to http://%s%s, mix %s, %ld connections, %ld-byte values\n",
           (unsigned long long)self->done, self->host, self->base, mix, self->conn_count,
           self->config.value_size);
    printf("  time        %.3f s\n", seconds);
    printf("  throughput  %.0f req/s\n", seconds > 0 ? (double)self->done / seconds : 0.0);
    printf("  succeeded   %llu (set %llu, get %llu, rm %llu)\n", (unsigned long long)self->ok,
           (unsigned long long)self->ops_ok[KV_LOAD_SET],
           (unsigned long long)self->ops_ok[KV_LOAD_GET],
           (unsigned long long)self->ops_ok[KV_LOAD_RM]);
    printf("  errors      %llu\n", (unsigned long long)errors);
    printf("  latency    ");
    s_print_ms("p50", kv_hist_percentile(self->latency, 50));
    s_print_ms("p90", kv_hist_percentile(self->latency, 90));
    s_print_ms("p99", kv_hist_percentile(self->latency, 99));
    s_print_ms("max", kv_hist_max(self->latency));
    printf("\n");
    if (!errors) return;
    printf("  errors by kind:\n");
    for (int i = 0; i < E_KINDS; i++)
        if (self->errors[i] && i != E_STATUS)
            printf("    %-18s %llu\n", s_err_names[i], (unsigned long long)self->errors[i]);
    for (int code = 0; code < S_STATUS_MAX; code++)
        if (self->statuses[code])
            printf("    HTTP %d (%dxx)      %llu\n", code, code / 100,
                   (unsigned long long)self->statuses[code]);
}

/* --- main ----------------------------------------------------------------- */

static const char *s_summary =
    "kv-stress: HTTP load generator and checker for the key-value store.\n"
    "Sends --requests requests over --concurrency keep-alive connections, checks\n"
    "every answer (status and body), then reports throughput, latency\n"
    "percentiles and errors by kind. Exits 1 if any request failed.\n"
    "\n"
    "--mix weighs set, get and rm, e.g. set=100 or set=50,get=40,rm=10. Keys are\n"
    "k<seed>-<n>; values are derived from the key, so gets are checked byte for\n"
    "byte. With --keys 0 every set writes a new key (n = 0, 1, 2, ...); with\n"
    "--keys K sets overwrite keys n in [0, K), K at least 2 x --concurrency.\n"
    "Gets and rms target keys this run wrote (a set happens while there are none);\n"
    "--preload N first writes keys 0..N-1, unmeasured, e.g. for a read-only mix.\n"
    "--ttl-min S [--ttl-max T] gives every set a ttl from S to T seconds (by key\n"
    "number): a get or rm of a key that expired meanwhile counts as failed.";

/* Checks the flags that kv_opts cannot. Returns 0 or -1 after printing. */
static int s_check_config(s_stress_t *self) {
    s_config_t *c = &self->config;
    if (c->ttl_max == 0) c->ttl_max = c->ttl_min;
    if (c->ttl_max < c->ttl_min || (c->ttl_max && !c->ttl_min)) {
        fprintf(stderr, "kv-stress: --ttl-max must be at least --ttl-min, which is at least 1\n");
        return -1;
    }
    if (kv_mix_parse(c->mix, &self->mix) != 0) {
        fprintf(stderr, "kv-stress: bad --mix '%s' (e.g. set=50,get=40,rm=10)\n", c->mix);
        return -1;
    }
    if (c->keys != 0 && c->keys < 2 * c->concurrency) {
        fprintf(stderr, "kv-stress: --keys must be 0 or at least 2 x --concurrency (%ld)\n",
                2 * c->concurrency);
        return -1;
    }
    return s_parse_url(self, c->url);
}

/* Raises the open-file limit to what the connections need, if allowed. */
static void s_raise_fd_limit(long connections) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    rlim_t want = (rlim_t)connections + 64;
    if (limit.rlim_cur >= want) return;
    limit.rlim_cur = want < limit.rlim_max ? want : limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
}

static int s_setup(s_stress_t *self) {
    const s_config_t *c = &self->config;
    long most = c->requests > c->preload ? c->requests : c->preload;
    self->conn_count = c->concurrency < most ? c->concurrency : most;
    s_raise_fd_limit(self->conn_count);
    size_t key_space = (size_t)c->preload + (size_t)(c->keys > c->requests ? c->keys : c->requests);
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->conns = calloc((size_t)self->conn_count, sizeof(s_conn_t));
    self->busy = calloc(key_space, 1);
    self->live = kv_keyset_new();
    self->latency = kv_hist_new();
    self->scratch = malloc(S_IN_MAX);
    self->rng = (uint64_t)c->seed * 0x2545F4914F6CDD1DULL + 1;
    self->tty = isatty(STDERR_FILENO);
    if (self->epfd < 0 || !self->conns || !self->busy || !self->live || !self->latency ||
        !self->scratch)
        return -1;
    for (long i = 0; i < self->conn_count; i++) self->conns[i].fd = -1;
    return 0;
}

static void s_teardown(s_stress_t *self) {
    for (long i = 0; self->conns && i < self->conn_count; i++) s_close(&self->conns[i]);
    if (self->epfd >= 0) close(self->epfd);
    free(self->conns);
    free(self->busy);
    free(self->scratch);
    kv_keyset_destroy(&self->live);
    kv_hist_destroy(&self->latency);
}

/* Opens closed connections while requests remain. Returns how many are
 * still closed afterwards (their connect failed at once). */
static long s_reopen(s_stress_t *self) {
    long closed = 0;
    for (long i = 0; i < self->conn_count; i++) {
        s_conn_t *conn = &self->conns[i];
        if (conn->state != C_CLOSED || self->issued >= self->target) continue;
        s_open(self, conn);
        closed += conn->state == C_CLOSED;
    }
    return closed;
}

/* Runs target requests (one phase) to the end or until interrupted. Errors
 * add up across phases; the other counters start from zero. */
static void s_run(s_stress_t *self, uint64_t target) {
    struct epoll_event events[S_EVENTS];
    self->target = target;
    self->issued = self->done = self->ok = self->last_done = 0;
    memset(self->ops_ok, 0, sizeof(self->ops_ok));
    kv_hist_reset(self->latency);
    self->started = s_now_ns();
    self->last_tick = self->started;
    int64_t next_tick = self->started + S_TICK_NS;
    while (self->done < self->target && !s_interrupted) {
        long closed = s_reopen(self);
        int n = epoll_wait(self->epfd, events, S_EVENTS, closed ? 0 : 50);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) s_on_event(self, events[i].data.ptr, events[i].events);
        int64_t now = s_now_ns();
        if (now < next_tick) continue;
        next_tick = now + S_TICK_NS;
        s_check_timeouts(self, now);
        s_progress(self, now);
    }
    if (self->config.progress && self->tty) fprintf(stderr, "\r\033[K");
}

/* Writes keys 0..preload-1 so reads have data from the first request on. */
static void s_preload(s_stress_t *self) {
    self->preloading = 1;
    s_run(self, (uint64_t)self->config.preload);
    self->preloading = 0;
    double seconds = (double)(s_now_ns() - self->started) / 1e9;
    printf("kv-stress: preloaded %llu of %ld keys (k%ld-0 to k%ld-%ld) in %.3f s, %llu errors\n",
           (unsigned long long)self->ok, self->config.preload, self->config.seed, self->config.seed,
           self->config.preload - 1, seconds, (unsigned long long)s_error_total(self));
}

int main(int argc, char **argv) {
    s_stress_t self;
    memset(&self, 0, sizeof(self));
    self.epfd = -1;
    self.config = (s_config_t){.url = "http://127.0.0.1:8080",
                               .mix = "set=100",
                               .requests = 100000,
                               .concurrency = 50,
                               .value_size = 32,
                               .seed = 1,
                               .timeout_ms = 5000,
                               .progress = 1};
    s_config_t *c = &self.config;
    const kv_opt_t opts[] = {
        {"url", "KV_STRESS_URL", KV_OPT_STRING, &c->url, 0, 0, "gateway base URL (http only)"},
        {"requests", "KV_STRESS_REQUESTS", KV_OPT_LONG, &c->requests, 1, S_REQUESTS_MAX,
         "requests to send in total"},
        {"concurrency", "KV_STRESS_CONCURRENCY", KV_OPT_LONG, &c->concurrency, 1, 10000,
         "keep-alive connections, one request in flight each"},
        {"mix", "KV_STRESS_MIX", KV_OPT_STRING, &c->mix, 0, 0,
         "operation weights, e.g. set=50,get=40,rm=10"},
        {"keys", "KV_STRESS_KEYS", KV_OPT_LONG, &c->keys, 0, S_REQUESTS_MAX,
         "key space for sets; 0: a new key per set"},
        {"value-size", "KV_STRESS_VALUE_SIZE", KV_OPT_LONG, &c->value_size, 0, KV_MAX_VALUE_CHARS,
         "bytes per value"},
        {"seed", "KV_STRESS_SEED", KV_OPT_LONG, &c->seed, 0, 1000000000,
         "names the keys (k<seed>-<n>) and seeds the mix"},
        {"timeout-ms", "KV_STRESS_TIMEOUT_MS", KV_OPT_LONG, &c->timeout_ms, 1, 600000,
         "a request (or connect) older than this fails"},
        {"progress", "KV_STRESS_PROGRESS", KV_OPT_LONG, &c->progress, 0, 1,
         "1: live progress line on stderr; 0: final report only"},
        {"preload", "KV_STRESS_PRELOAD", KV_OPT_LONG, &c->preload, 0, S_REQUESTS_MAX,
         "first write keys 0..N-1 (unmeasured), then run"},
        {"ttl-min", "KV_STRESS_TTL_MIN", KV_OPT_LONG, &c->ttl_min, 0, KV_MAX_TTL_S,
         "sets give keys a ttl of at least this many seconds; 0: no ttl"},
        {"ttl-max", "KV_STRESS_TTL_MAX", KV_OPT_LONG, &c->ttl_max, 0, KV_MAX_TTL_S,
         "... and at most this many (default: ttl-min)"},
    };
    int parsed = kv_opts_parse(opts, sizeof(opts) / sizeof(opts[0]), argc, argv, s_summary);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    if (s_check_config(&self) != 0) return 2;
    if (s_setup(&self) != 0) {
        fprintf(stderr, "kv-stress: out of memory or file descriptors\n");
        s_teardown(&self);
        return 1;
    }
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    if (c->preload > 0) s_preload(&self);
    if (!s_interrupted) s_run(&self, (uint64_t)c->requests);
    s_report(&self, s_now_ns() - self.started);
    int failed = s_error_total(&self) > 0;
    if (s_interrupted) {
        printf("  interrupted with %llu requests not done\n",
               (unsigned long long)(self.target - self.done));
        failed = 1;
    }
    s_teardown(&self);
    return failed ? 1 : 0;
}
