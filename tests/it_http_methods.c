/*  it_http_methods.c: which HTTP methods each route serves, over real HTTP
 *  against a one-node cluster.
 *
 *  GET is served everywhere; HEAD, like GET without a body, only on the
 *  read-only routes; on the routes that write, HEAD gets 405 with
 *  `Allow: GET` and writes nothing. Any other method gets 405 with the
 *  route's Allow. The error precedence: 405, then 404 UNKNOWN_ROUTE, then
 *  414. And the gateway's counters, in /status, count what it answered.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv_harness.h"

#define ALLOW_READ "GET, HEAD"
#define ALLOW_WRITE "GET"

static const char *s_read_only[] = {"/get?k=kept", "/is?k=kept",   "/getKeys",  "/getValues",
                                    "/getAll",     "/healthcheck", "/settings", "/status"};
static const char *s_writes[] = {"/set?k=absent&v=1", "/rm?k=kept", "/clear",
                                 "/join?node=tcp://127.0.0.1:1", "/leave?node=node-1"};

/* A response with the headers these tests look at. */
typedef struct {
    long status;           /* 0 when no response came */
    char allow[64];        /* Allow header, "" when absent */
    char content_type[64]; /* Content-Type header */
    char *body;            /* NUL-terminated */
    size_t len;            /* body bytes */
} s_reply_t;

static void s_copy_header(const char *line, size_t len, const char *name, char *out, size_t cap) {
    size_t name_len = strlen(name);
    if (len <= name_len || strncasecmp(line, name, name_len) != 0) return;
    const char *value = line + name_len;
    size_t vlen = len - name_len;
    while (vlen && (*value == ' ')) value++, vlen--;
    while (vlen && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n')) vlen--;
    if (vlen >= cap) vlen = cap - 1;
    memcpy(out, value, vlen);
    out[vlen] = '\0';
}

static size_t s_on_header(char *data, size_t size, size_t count, void *arg) {
    s_reply_t *reply = arg;
    s_copy_header(data, size * count, "Allow:", reply->allow, sizeof(reply->allow));
    s_copy_header(data, size * count, "Content-Type:", reply->content_type,
                  sizeof(reply->content_type));
    return size * count;
}

static size_t s_on_body(char *data, size_t size, size_t count, void *arg) {
    s_reply_t *reply = arg;
    size_t bytes = size * count;
    char *body = realloc(reply->body, reply->len + bytes + 1);
    if (!body) return 0;
    memcpy(body + reply->len, data, bytes);
    reply->body = body;
    reply->len += bytes;
    body[reply->len] = '\0';
    return bytes;
}

/* Sends method target (sent as is) and fills reply. */
static void s_send(int port, const char *method, const char *target, s_reply_t *reply) {
    memset(reply, 0, sizeof(*reply));
    CURL *curl = curl_easy_init();
    cr_assert_not_null(curl);
    char url[16384];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, target);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
    curl_easy_cleanup(curl);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, target, curl_easy_strerror(rc));
    if (!reply->body) reply->body = strdup("");
}

static void s_reply_free(s_reply_t *reply) {
    free(reply->body);
    reply->body = NULL;
}

/* The body's "error" code, or "" when there is none. */
static void s_error_code(const s_reply_t *reply, char *out, size_t cap) {
    out[0] = '\0';
    json_t *body = json_loadb(reply->body, reply->len, JSON_DECODE_ANY, NULL);
    const char *code = json_string_value(json_object_get(body, "error"));
    if (code) snprintf(out, cap, "%s", code);
    json_decref(body);
}

/* method target must get status, with the error code when code is set and
 * the Allow header when allow is set. */
static void s_expect(int port, const char *method, const char *target, long status,
                     const char *code, const char *allow) {
    s_reply_t reply;
    s_send(port, method, target, &reply);
    cr_expect_eq(reply.status, status, "%s %.60s: status %ld, expected %ld (%s)", method, target,
                 reply.status, status, reply.body);
    cr_expect_str_eq(reply.content_type, "application/json", "%s %.60s", method, target);
    if (code) {
        char got[64];
        s_error_code(&reply, got, sizeof(got));
        cr_expect_str_eq(got, code, "%s %.60s: %s", method, target, reply.body);
    }
    if (allow)
        cr_expect_str_eq(reply.allow, allow, "%s %.60s: Allow", method, target);
    else
        cr_expect_str_eq(reply.allow, "", "%s %.60s: an Allow header on a %ld", method, target,
                         reply.status);
    s_reply_free(&reply);
}

/* GET /get?k=key: 200 with the JSON string value, or 404 when value is NULL. */
static void s_expect_value(int port, const char *key, const char *value) {
    char target[256];
    snprintf(target, sizeof(target), "/get?k=%s", key);
    s_reply_t reply;
    s_send(port, "GET", target, &reply);
    if (!value) {
        cr_expect_eq(reply.status, 404, "%s: %ld %s (written by a HEAD?)", target, reply.status,
                     reply.body);
    } else {
        char want[256];
        snprintf(want, sizeof(want), "\"%s\"", value);
        cr_expect_eq(reply.status, 200, "%s: %ld %s", target, reply.status, reply.body);
        cr_expect_str_eq(reply.body, want, "%s", target);
    }
    s_reply_free(&reply);
}

/* The whole raw response to "HEAD target" on a connection the server
 * closes after it (into out, NUL-terminated). */
static size_t s_raw_head(int port, const char *target, char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    char request[512];
    int len = snprintf(request, sizeof(request),
                       "HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", target);
    cr_assert_eq(write(fd, request, (size_t)len), len);
    size_t got = 0;
    ssize_t n;
    while (got < cap - 1 && (n = read(fd, out + got, cap - 1 - got)) > 0) got += (size_t)n;
    close(fd);
    out[got] = '\0';
    return got;
}

static kv_cluster_t *s_start(void) {
    static const char *const args[] = {"--log-level", "debug", NULL}; /* logs every transition */
    kv_cluster_t *cluster = kv_cluster_start(1, args);
    cr_assert_not_null(cluster, "cluster did not start");
    s_expect(cluster->http_port, "GET", "/set?k=kept&v=1", 200, NULL, NULL);
    return cluster;
}

static void s_stop(kv_cluster_t **cluster_p) {
    cr_expect_eq(kv_cluster_stop(cluster_p), 0, "processes did not stop cleanly");
}

Test(http_methods, head_is_served_on_read_only_routes_like_get, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    int port = cluster->http_port;
    for (size_t i = 0; i < sizeof(s_read_only) / sizeof(s_read_only[0]); i++) {
        s_reply_t get, head;
        s_send(port, "GET", s_read_only[i], &get);
        s_send(port, "HEAD", s_read_only[i], &head);
        cr_expect_eq(get.status, 200, "GET %s: %ld %s", s_read_only[i], get.status, get.body);
        cr_expect_eq(head.status, get.status, "HEAD %s: %ld", s_read_only[i], head.status);
        cr_expect_str_eq(head.content_type, "application/json", "HEAD %s", s_read_only[i]);
        cr_expect_str_eq(head.allow, "", "HEAD %s: Allow on a success", s_read_only[i]);
        s_reply_free(&get);
        s_reply_free(&head);
    }
    s_expect(port, "HEAD", "/get?k=absent", 404, NULL, NULL);
    s_expect(port, "HEAD", "/get", 400, NULL, NULL);
    /* Nothing after the headers, whether the body is fixed, built or streamed. */
    static const char *raw[] = {"/get?k=kept", "/status", "/getKeys", "/getValues",
                                "/getAll?limit=1"};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        char response[8192];
        size_t len = s_raw_head(port, raw[i], response, sizeof(response));
        cr_expect(strncmp(response, "HTTP/1.1 200", 12) == 0, "HEAD %s: %s", raw[i], response);
        const char *end = strstr(response, "\r\n\r\n");
        cr_expect(end && (size_t)(end + 4 - response) == len, "HEAD %s sent a body: %s", raw[i],
                  response);
    }
    s_stop(&cluster);
}

Test(http_methods, head_on_write_routes_is_refused_and_writes_nothing, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    int port = cluster->http_port;
    for (size_t i = 0; i < sizeof(s_writes) / sizeof(s_writes[0]); i++)
        s_expect(port, "HEAD", s_writes[i], 405, NULL, ALLOW_WRITE);
    s_expect(port, "HEAD", "/set?k=kept&v=2", 405, NULL, ALLOW_WRITE);
    s_expect(port, "HEAD", "/set", 405, NULL, ALLOW_WRITE); /* before its 400 */
    s_expect_value(port, "kept", "1");    /* not cleared, removed or overwritten */
    s_expect_value(port, "absent", NULL); /* not set */
    s_expect(port, "GET", "/status", 200, NULL, NULL);
    s_stop(&cluster);
}

Test(http_methods, other_methods_get_405_with_the_routes_allow, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    int port = cluster->http_port;
    static const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        for (size_t i = 0; i < sizeof(s_read_only) / sizeof(s_read_only[0]); i++)
            s_expect(port, methods[m], s_read_only[i], 405, "METHOD_NOT_ALLOWED", ALLOW_READ);
        for (size_t i = 0; i < sizeof(s_writes) / sizeof(s_writes[0]); i++)
            s_expect(port, methods[m], s_writes[i], 405, "METHOD_NOT_ALLOWED", ALLOW_WRITE);
    }
    s_expect_value(port, "kept", "1");
    s_expect_value(port, "absent", NULL);
    s_stop(&cluster);
}

Test(http_methods, unknown_paths_and_the_error_precedence, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    int port = cluster->http_port;
    static const char *unknown[] = {"/nope", "/", "/GET?k=kept", "/get/?k=kept", "/sets?k=a&v=1"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        s_expect(port, "GET", unknown[i], 404, "UNKNOWN_ROUTE", NULL);
        s_expect(port, "HEAD", unknown[i], 404, NULL, NULL);
        s_expect(port, "POST", unknown[i], 405, "METHOD_NOT_ALLOWED", ALLOW_READ); /* 405 first */
    }
    char *target = malloc(9200);
    cr_assert_not_null(target);
    char *tail = target + sprintf(target, "/get?k=");
    memset(tail, 'x', 9000);
    tail[9000] = '\0';
    s_expect(port, "GET", target, 414, "URI_TOO_LONG", NULL);
    s_expect(port, "HEAD", target, 414, NULL, NULL);
    s_expect(port, "POST", target, 405, "METHOD_NOT_ALLOWED", ALLOW_READ); /* 405 before 414 */
    memcpy(target, "/rm?k=", 6);
    memmove(target + 6, tail, 9001);
    s_expect(port, "HEAD", target, 405, NULL, ALLOW_WRITE);
    memcpy(target, "/no?k=", 6);
    s_expect(port, "GET", target, 404, "UNKNOWN_ROUTE", NULL); /* 404 before 414 */
    free(target);
    s_expect(port, "GET", "/healthcheck", 200, NULL, NULL);
    s_stop(&cluster);
}

/* The counter called name in the "gateway" part of a /status body. */
static json_int_t s_counter(json_t *status, const char *name) {
    json_t *value =
        json_object_get(json_object_get(json_object_get(status, "gateway"), "counters"), name);
    cr_assert(json_is_integer(value), "no counter %s in /status", name);
    return json_integer_value(value);
}

Test(http_methods, gateway_counters_in_status_count_the_answers, .timeout = 120) {
    kv_cluster_t *cluster = s_start();
    int port = cluster->http_port;
    s_expect(port, "HEAD", "/clear", 405, NULL, ALLOW_WRITE);
    s_expect(port, "POST", "/clear", 405, NULL, ALLOW_WRITE);
    s_expect(port, "GET", "/get?k=kept", 200, NULL, NULL);
    s_expect(port, "GET", "/get?k=", 400, "EMPTY_KEY", NULL);
    s_expect(port, "GET", "/nope", 404, "UNKNOWN_ROUTE", NULL);
    s_expect(port, "GET", "/getKeys", 200, NULL, NULL);
    s_reply_t reply;
    s_send(port, "GET", "/status", &reply);
    cr_assert_eq(reply.status, 200, "%s", reply.body);
    json_t *status = json_loadb(reply.body, reply.len, 0, NULL);
    cr_assert_not_null(status, "%s", reply.body);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_clear_4xx"), 2);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_clear_2xx"), 0);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_set_2xx"), 1); /* s_start's */
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_get_2xx"), 1);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_get_4xx"), 1);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_unknown_4xx"), 1);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_get_keys_2xx"), 1);
    cr_expect_eq(s_counter(status, "kv_gateway_requests_total_status_2xx"), 0); /* not yet */
    cr_expect_eq(s_counter(status, "kv_gateway_request_illegal_transitions_total"), 0);
    /* Every request so far was received, and all but this one are done. */
    json_int_t received = s_counter(status, "kv_gateway_request_transitions_total_new_receiving");
    cr_expect_geq(received, 8);
    cr_expect_eq(s_counter(status, "kv_gateway_request_transitions_total_waiting_ready"), 2);
    cr_expect_geq(s_counter(status, "kv_gateway_request_transitions_total_streaming_refilling"), 1);
    json_t *counters = json_object_get(json_object_get(status, "gateway"), "counters");
    const char *name;
    json_t *value;
    json_object_foreach(counters, name, value) {
        cr_expect(strncmp(name, "kv_gateway_", 11) == 0, "counter %s", name);
        cr_expect(json_is_integer(value), "counter %s", name);
    }
    json_decref(status);
    s_reply_free(&reply);
    s_stop(&cluster);
}
