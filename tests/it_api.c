/*  it_api.c: the HTTP API contract (shared/spec/API.md) against real
 *  clusters of 1 and 3 nodes started from this build's executables.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv_harness.h"

/* GETs target and checks the status and, for errors, the code. */
static void s_expect(int port, const char *target, long status, const char *code) {
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, target, &reply), 0, "no response to %s", target);
    cr_expect_eq(reply.status, status, "%s: status %ld, expected %ld (%s)", target, reply.status,
                 status, reply.body);
    cr_expect_str_eq(reply.content_type, "application/json", "%s: content type", target);
    json_t *body = kv_reply_json(&reply);
    cr_expect_not_null(body, "%s: body is not JSON: %s", target, reply.body);
    if (code && body) {
        cr_expect_str_eq(json_string_value(json_object_get(body, "error")), code, "%s: %s", target,
                         reply.body);
        cr_expect(json_is_string(json_object_get(body, "message")), "%s: message", target);
    }
    json_decref(body);
    kv_reply_free(&reply);
}

static void s_expect_success(int port, const char *target) {
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, target, &reply), 0);
    cr_expect_eq(reply.status, 200, "%s: %ld %s", target, reply.status, reply.body);
    json_t *body = kv_reply_json(&reply);
    cr_expect(json_is_true(json_object_get(body, "success")), "%s: %s", target, reply.body);
    json_decref(body);
    kv_reply_free(&reply);
}

/* /get?k=key must answer 200 with exactly value as a JSON string. */
static void s_expect_value(int port, const char *key, const char *value, size_t vlen) {
    char *encoded = kv_urlencode(key, strlen(key));
    char target[4096];
    snprintf(target, sizeof(target), "/get?k=%s", encoded);
    free(encoded);
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, target, &reply), 0);
    cr_expect_eq(reply.status, 200, "%s: %ld %s", target, reply.status, reply.body);
    json_t *body = kv_reply_json(&reply);
    cr_assert(json_is_string(body), "%s: %s", target, reply.body);
    cr_expect_eq(json_string_length(body), vlen, "%s", target);
    cr_expect_eq(memcmp(json_string_value(body), value, vlen), 0, "%s: %s", target, reply.body);
    json_decref(body);
    kv_reply_free(&reply);
}

static void s_set(int port, const char *key, const char *value) {
    char *k = kv_urlencode(key, strlen(key)), *v = kv_urlencode(value, strlen(value));
    char target[8192];
    snprintf(target, sizeof(target), "/set?k=%s&v=%s", k, v);
    free(k);
    free(v);
    s_expect_success(port, target);
}

static char *s_repeat(const char *unit, int times) {
    size_t len = strlen(unit);
    char *out = malloc(len * (size_t)times + 1);
    for (int i = 0; i < times; i++) memcpy(out + len * (size_t)i, unit, len);
    out[len * (size_t)times] = '\0';
    return out;
}

static void s_check_crud(int port) {
    s_expect_success(port, "/set?k=alpha&v=1");
    s_expect_value(port, "alpha", "1", 1);
    s_expect_success(port, "/is?k=alpha");
    s_expect_success(port, "/set?k=alpha&v=2"); /* overwrite */
    s_expect_value(port, "alpha", "2", 1);
    s_expect_success(port, "/rm?k=alpha");
    s_expect(port, "/get?k=alpha", 404, "MISSING_RECORD");
    s_expect(port, "/is?k=alpha", 404, "MISSING_RECORD");
    s_expect(port, "/rm?k=alpha", 404, "MISSING_RECORD");
    s_expect_success(port, "/set?k=empty&v="); /* v= is a valid empty value */
    s_expect_value(port, "empty", "", 0);
    s_expect_success(port, "/set?k=plus+sign&v=a+b%2Bc");
    s_expect_value(port, "plus sign", "a b+c", 5);
    const char *tricky = "quote\" back\\ nl\n tab\t ctl\x01 é ✓ 😀";
    s_set(port, "tricky", tricky);
    s_expect_value(port, "tricky", tricky, strlen(tricky));
}

static void s_check_validation(int port) {
    s_expect(port, "/get", 400, "MISSING_KEY_PARAM");
    s_expect(port, "/set?v=1", 400, "MISSING_KEY_PARAM");
    s_expect(port, "/get?k=", 400, "EMPTY_KEY");
    s_expect(port, "/set?k=&v=%zz", 400, "EMPTY_KEY");
    s_expect(port, "/get?k=%zz", 400, "INVALID_ENCODING");
    s_expect(port, "/get?k=%4", 400, "INVALID_ENCODING");
    s_expect(port, "/get?k=%FF", 400, "INVALID_ENCODING");
    s_expect(port, "/get?k=a%00b", 400, "INVALID_ENCODING");
    s_expect(port, "/set?k=a&v=%C0%AF", 400, "INVALID_ENCODING");
    s_expect(port, "/set?k=a", 400, "MISSING_VALUE_PARAM");
    char *key64 = s_repeat("k", 64), *key65 = s_repeat("k", 65);
    char *cyr64 = s_repeat("%D0%96", 64), *cyr65 = s_repeat("%D0%96", 65);
    char *val256 = s_repeat("%F0%9F%98%80", 256), *val257 = s_repeat("v", 257);
    char target[8192];
    snprintf(target, sizeof(target), "/set?k=%s&v=1", key64);
    s_expect(port, target, 200, NULL);
    snprintf(target, sizeof(target), "/set?k=%s&v=1", key65);
    s_expect(port, target, 400, "MAXIMUM_KEY_LENGTH_REACHED");
    snprintf(target, sizeof(target), "/set?k=%s&v=1", cyr64);
    s_expect(port, target, 200, NULL);
    snprintf(target, sizeof(target), "/get?k=%s", cyr65);
    s_expect(port, target, 400, "MAXIMUM_KEY_LENGTH_REACHED");
    snprintf(target, sizeof(target), "/set?k=emoji&v=%s", val256);
    s_expect(port, target, 200, NULL);
    snprintf(target, sizeof(target), "/set?k=long&v=%s", val257);
    s_expect(port, target, 400, "MAXIMUM_VALUE_LENGTH_REACHED");
    snprintf(target, sizeof(target), "/set?k=%s&v=%s", key65, val257); /* key is checked first */
    s_expect(port, target, 400, "MAXIMUM_KEY_LENGTH_REACHED");
    free(key64), free(key65), free(cyr64), free(cyr65), free(val256), free(val257);
}

static void s_check_protocol(int port) {
    s_expect(port, "/nope", 404, "UNKNOWN_ROUTE");
    s_expect(port, "/", 404, "UNKNOWN_ROUTE");
    kv_reply_t reply;
    cr_assert_eq(kv_request(port, "POST", "/set?k=a&v=1", &reply), 0);
    cr_expect_eq(reply.status, 405);
    cr_expect(strstr(reply.body, "METHOD_NOT_ALLOWED") != NULL, "%s", reply.body);
    kv_reply_free(&reply);
    cr_assert_eq(kv_request(port, "DELETE", "/rm?k=a", &reply), 0);
    cr_expect_eq(reply.status, 405);
    kv_reply_free(&reply);
    cr_assert_eq(kv_request(port, "HEAD", "/healthcheck", &reply), 0);
    cr_expect_eq(reply.status, 200);
    kv_reply_free(&reply);
    char *huge = s_repeat("x", 9000);
    char target[9100];
    snprintf(target, sizeof(target), "/get?k=%s", huge);
    cr_assert_eq(kv_get(port, target, &reply), 0);
    cr_expect(reply.status >= 400 && reply.status < 500, "long target: %ld", reply.status);
    kv_reply_free(&reply);
    free(huge);
    s_expect(port, "/healthcheck", 200, NULL); /* still healthy */
    s_expect(port, "/join", 400, "INVALID_NODE_ADDRESS");
}

/* The number in "prefixN", or -1. */
static int s_number_after(const char *text, const char *prefix) {
    size_t len = strlen(prefix);
    if (!text || strncmp(text, prefix, len) != 0) return -1;
    char *end = NULL;
    long n = strtol(text + len, &end, 10);
    return end && *end == '\0' && end != text + len ? (int)n : -1;
}

/* Every key of 0..count-1 must appear exactly once in the array. */
static void s_expect_keys_once(json_t *keys, int count) {
    cr_assert(json_is_array(keys));
    cr_expect_eq(json_array_size(keys), (size_t)count);
    char *seen = calloc((size_t)count, 1);
    size_t i;
    json_t *key;
    json_array_foreach(keys, i, key) {
        int n = s_number_after(json_string_value(key), "bulk-");
        cr_assert(n >= 0 && n < count);
        cr_expect_eq(seen[n], 0, "key bulk-%d twice", n);
        seen[n] = 1;
    }
    free(seen);
}

static json_t *s_get_json(int port, const char *target) {
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, target, &reply), 0);
    cr_assert_eq(reply.status, 200, "%s: %ld %s", target, reply.status, reply.body);
    json_t *body = kv_reply_json(&reply);
    kv_reply_free(&reply);
    return body;
}

static void s_check_bulk(int port, int count) {
    s_expect_success(port, "/clear");
    json_t *empty = s_get_json(port, "/getKeys");
    cr_expect_eq(json_array_size(empty), 0);
    json_decref(empty);
    for (int i = 0; i < count; i++) {
        char target[64];
        snprintf(target, sizeof(target), "/set?k=bulk-%d&v=value-%d", i, i);
        s_expect_success(port, target);
    }
    json_t *keys = s_get_json(port, "/getKeys");
    s_expect_keys_once(keys, count);
    json_decref(keys);
    json_t *values = s_get_json(port, "/getValues");
    cr_expect_eq(json_array_size(values), (size_t)count);
    json_decref(values);
    json_t *all = s_get_json(port, "/getAll");
    cr_expect_eq(json_array_size(all), (size_t)count);
    size_t i;
    json_t *entry;
    json_array_foreach(all, i, entry) {
        int k = s_number_after(json_string_value(json_object_get(entry, "k")), "bulk-");
        int v = s_number_after(json_string_value(json_object_get(entry, "v")), "value-");
        cr_expect_eq(k, v, "pair %zu does not match", i);
    }
    json_decref(all);
    /* Pages of 37: every key exactly once across pages, no page over 37. */
    json_t *paged = json_array();
    char cursor[1024] = "";
    int pages = 0;
    do {
        char target[1200];
        snprintf(target, sizeof(target), "/getKeys?limit=37%s%s", *cursor ? "&cursor=" : "",
                 cursor);
        kv_reply_t reply;
        cr_assert_eq(kv_get(port, target, &reply), 0);
        cr_assert_eq(reply.status, 200, "%s", reply.body);
        json_t *page = kv_reply_json(&reply);
        cr_assert(json_array_size(page) <= 37);
        json_array_extend(paged, page);
        json_decref(page);
        snprintf(cursor, sizeof(cursor), "%s", reply.next_cursor);
        kv_reply_free(&reply);
        cr_assert(++pages < count, "too many pages");
    } while (*cursor);
    s_expect_keys_once(paged, count);
    json_decref(paged);
    s_expect(port, "/getKeys?limit=0", 400, "INVALID_LIMIT");
    s_expect(port, "/getKeys?limit=ten", 400, "INVALID_LIMIT");
    s_expect(port, "/getAll?limit=5&cursor=zz", 400, "INVALID_CURSOR");
}

static void s_check_status(int port, int nodes, int keys) {
    json_t *status = s_get_json(port, "/status");
    cr_expect_eq(json_integer_value(json_object_get(status, "availableRecords")), keys);
    cr_expect_eq(json_integer_value(json_object_get(status, "maxKeyLength")), 64);
    cr_expect_eq(json_integer_value(json_object_get(status, "maxValueLength")), 256);
    cr_expect(json_integer_value(json_object_get(status, "epoch")) >= 1);
    cr_expect(json_is_string(json_object_get(status, "hostname")));
    json_t *list = json_object_get(status, "nodes");
    cr_assert_eq(json_array_size(list), (size_t)nodes);
    int holding = 0;
    json_int_t sum = 0;
    size_t i;
    json_t *node;
    json_array_foreach(list, i, node) {
        const char *fields[] = {"id",       "address", "state",      "primaries",
                                "replicas", "keys",    "memoryBytes"};
        for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
            cr_expect_not_null(json_object_get(node, fields[f]), "node lacks %s", fields[f]);
        cr_expect_str_eq(json_string_value(json_object_get(node, "state")), "active");
        json_int_t held = json_integer_value(json_object_get(node, "keys"));
        holding += held > 0;
        sum += held;
    }
    cr_expect_eq(sum, keys);
    if (nodes > 1) cr_expect(holding > 1, "keys should spread over the nodes");
    json_decref(status);
    json_t *settings = s_get_json(port, "/settings");
    const char *fields[] = {"version",          "hostname",       "port",
                            "maxKeyLength",     "maxValueLength", "partitions",
                            "replicationFactor"};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        cr_expect_not_null(json_object_get(settings, fields[f]), "settings lack %s", fields[f]);
    cr_expect_eq(json_integer_value(json_object_get(settings, "partitions")), 1024);
    json_decref(settings);
    json_t *health = s_get_json(port, "/healthcheck");
    cr_expect_str_eq(json_string_value(json_object_get(health, "status")), "ok");
    json_decref(health);
}

static void s_contract(int nodes) {
    kv_cluster_t *cluster = kv_cluster_start(nodes, NULL);
    cr_assert_not_null(cluster, "cluster did not start");
    int port = cluster->http_port;
    s_check_crud(port);
    s_check_validation(port);
    s_check_protocol(port);
    s_check_bulk(port, 500);
    s_check_status(port, nodes, 500);
    s_expect_success(port, "/clear");
    json_t *keys = s_get_json(port, "/getKeys");
    cr_expect_eq(json_array_size(keys), 0);
    json_decref(keys);
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

Test(api, contract_on_one_node, .timeout = 120) {
    s_contract(1);
}

Test(api, contract_on_three_nodes, .timeout = 120) {
    s_contract(3);
}

/* After a node woke up: /get?k=a answers 200 again within 5 s. */
static void s_expect_back(int port, const char *what) {
    long long deadline = kv_now_ms() + 5000;
    kv_reply_t reply = {0};
    do {
        kv_reply_free(&reply);
        usleep(50 * 1000);
        kv_get(port, "/get?k=a", &reply);
    } while (reply.status != 200 && kv_now_ms() < deadline);
    cr_expect_eq(reply.status, 200, "%s: %s", what, reply.body);
    kv_reply_free(&reply);
}

/* One node holding a=1, then frozen (SIGSTOP); the gateway waits
 * timeout_ms for a node. */
static kv_cluster_t *s_start_frozen(const char *timeout_ms) {
    const char *args[] = {"--timeout-ms", timeout_ms, NULL};
    kv_cluster_t *cluster = kv_cluster_start(1, args);
    cr_assert_not_null(cluster);
    s_expect_success(cluster->http_port, "/set?k=a&v=1");
    kv_cluster_signal_node(cluster, 0, SIGSTOP);
    return cluster;
}

/* A node that stops answering costs the client 504 within the timeout, the
 * gateway stays healthy, and once the node is declared down the partition
 * answers 503 until it is back. */
Test(api, frozen_node_gives_timeout_then_unavailable, .timeout = 120) {
    kv_cluster_t *cluster = s_start_frozen("300");
    int port = cluster->http_port;
    long long start = kv_now_ms();
    s_expect(port, "/get?k=a", 504, "TIMEOUT");
    cr_expect(kv_now_ms() - start < 2000, "timeout took %lld ms", kv_now_ms() - start);
    usleep(750 * 1000); /* twice: past the coordinator's 1 s failure timeout */
    usleep(750 * 1000);
    s_expect(port, "/get?k=a", 503, "UNAVAILABLE");
    s_expect(port, "/healthcheck", 503, NULL);
    kv_cluster_signal_node(cluster, 0, SIGCONT);
    s_expect_back(port, "the node did not come back");
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}

/* Sends one raw GET on a fresh connection and closes it before any answer:
 * the client gave up (with reset: a RST, which MHD notices at once; else a
 * FIN, noticed when the answer is written). Returns 0 once sent. */
static int s_send_and_hang_up(int port, const char *target, int reset) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char request[256];
    int len = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    int sent = send(fd, request, (size_t)len, MSG_NOSIGNAL) == len;
    usleep(20 * 1000); /* the gateway has read it and sent the call */
    struct linger linger = {1, 0};
    if (reset) setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
    close(fd);
    return sent ? 0 : -1;
}

/* Keyed calls wait without suspending their connection (gateway/kv_http.c),
 * so a client can hang up while its call is out: the request must outlive
 * the connection until the call ends (here by its deadline), then go, with
 * nothing leaked or touched after free (the gateway runs under ASan in
 * `make test` and must exit cleanly). */
Test(api, client_gone_while_its_call_is_out, .timeout = 120) {
    kv_cluster_t *cluster = s_start_frozen("400");
    int port = cluster->http_port;
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(s_send_and_hang_up(port, i % 2 ? "/get?k=a" : "/set?k=b&v=2", i % 4 < 2), 0);
    }
    usleep(600 * 1000); /* past the deadline: every orphaned call has ended */
    s_expect(port, "/settings", 200, NULL);
    kv_cluster_signal_node(cluster, 0, SIGCONT);
    s_expect_back(port, "the gateway did not recover");
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}
