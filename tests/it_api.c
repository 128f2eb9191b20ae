/*  it_api.c: the HTTP API contract (docs/api.md) against real clusters of
 *  1 and 3 nodes started from this build's executables.
 *
 *  The request-by-request contract is a table, tests/api_contract.tsv,
 *  shared with compose/tests/api-contract.sh so both check the same rows;
 *  what a table cannot say (bulk listings and their pages, /status fields,
 *  frozen nodes, clients that hang up) is code here.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
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

/* --- the contract table (tests/api_contract.tsv) ---------------------------- */

/* Where the table is: $KV_CONTRACT_TABLE, else the source tree's copy. */
static const char *s_table_path(void) {
    const char *path = getenv("KV_CONTRACT_TABLE");
    return path && *path ? path : KV_CONTRACT_TABLE;
}

/* Expands {TEXT*N} into TEXT repeated N times; the rest is copied. Returns
 * a new string, or NULL when the result would not fit in cap bytes. */
static char *s_expand(const char *target, size_t cap) {
    char *out = malloc(cap);
    size_t len = 0;
    while (out && *target) {
        const char *open = *target == '{' ? target : NULL;
        const char *star = open ? strchr(open, '*') : NULL;
        const char *close = star ? strchr(star, '}') : NULL;
        if (!close) {
            if (len + 1 >= cap) break;
            out[len++] = *target++;
            continue;
        }
        size_t unit = (size_t)(star - open - 1);
        long times = strtol(star + 1, NULL, 10);
        for (long i = 0; i < times && len + unit < cap; i++, len += unit)
            memcpy(out + len, open + 1, unit);
        target = close + 1;
    }
    if (!out || *target) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    return out;
}

/* The captured value of header name, or NULL when the harness does not
 * capture it. */
static const char *s_header(const kv_reply_t *reply, const char *name) {
    if (strcasecmp(name, "Content-Type") == 0) return reply->content_type;
    if (strcasecmp(name, "Allow") == 0) return reply->allow;
    if (strcasecmp(name, "X-Next-Cursor") == 0) return reply->next_cursor;
    if (strcasecmp(name, "X-Version") == 0) return reply->version;
    return NULL;
}

/* One "Name: value", "Name" or "!Name" of the headers column. */
static void s_check_header(const char *row, const kv_reply_t *reply, char *spec) {
    while (*spec == ' ') spec++;
    int absent = *spec == '!';
    char *name = spec + absent;
    char *colon = strchr(name, ':');
    const char *want = NULL;
    if (colon) {
        *colon = '\0';
        for (want = colon + 1; *want == ' '; want++) continue;
    }
    const char *got = s_header(reply, name);
    cr_assert_not_null(got, "%s: the harness does not capture header %s", row, name);
    if (absent)
        cr_expect_str_empty(got, "%s: %s should be absent, is '%s'", row, name, got);
    else if (want)
        cr_expect_str_eq(got, want, "%s: %s", row, name);
    else
        cr_expect_str_not_empty(got, "%s: %s missing", row, name);
}

/* Checks the body against the expect column (see the table's header). */
static void s_check_body(const char *row, const kv_reply_t *reply, const char *expect) {
    if (strcmp(expect, "(no body)") == 0) {
        cr_expect_eq(reply->len, 0, "%s: body '%s', want none", row, reply->body);
        return;
    }
    json_t *body = kv_reply_json(reply);
    cr_expect_not_null(body, "%s: body is not JSON: %s", row, reply->body);
    if (!body) return;
    if (strspn(expect, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(expect)) {
        cr_expect_str_eq(json_string_value(json_object_get(body, "error")), expect, "%s: %s", row,
                         reply->body);
        cr_expect(json_is_string(json_object_get(body, "message")), "%s: no message", row);
    } else if (expect[0] == '~') { /* an object with at least these members */
        json_t *want = json_loads(expect + 1, 0, NULL);
        cr_assert(json_is_object(want), "%s: the table's expected members are not an object", row);
        const char *member;
        json_t *value;
        json_object_foreach(want, member, value) {
            cr_expect(json_equal(json_object_get(body, member), value), "%s: body %s, want %s", row,
                      reply->body, expect);
        }
        json_decref(want);
    } else if (strcmp(expect, "-") != 0) {
        json_t *want = json_loads(expect, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(want, "%s: the table's expected body is not JSON", row);
        cr_expect(json_equal(body, want), "%s: body %s, want %s", row, reply->body, expect);
        json_decref(want);
    }
    json_decref(body);
}

/* Runs one row: name, method, target, status, expect[, headers]. */
static void s_run_row(int port, char *line) {
    char *fields[6] = {NULL}, *save = NULL;
    int count = 0;
    for (char *field = strtok_r(line, "\t", &save); field && count < 6;
         field = strtok_r(NULL, "\t", &save))
        fields[count++] = field;
    cr_assert(count >= 5, "malformed row: %s", line);
    const char *name = fields[0], *method = fields[1];
    char *target = s_expand(fields[2], 16384);
    cr_assert_not_null(target, "%s: target too long", name);
    kv_reply_t reply;
    cr_assert_eq(kv_request(port, strcmp(method, "GET") ? method : NULL, target, &reply), 0,
                 "%s: no response to %s %s", name, method, fields[2]);
    cr_expect_eq(reply.status, strtol(fields[3], NULL, 10), "%s: %s %.120s: status %ld (%s)", name,
                 method, target, reply.status, reply.body);
    cr_expect_str_eq(reply.content_type, "application/json", "%s: content type", name);
    s_check_body(name, &reply, fields[4]);
    save = NULL;
    for (char *spec = fields[5] ? strtok_r(fields[5], ";", &save) : NULL; spec;
         spec = strtok_r(NULL, ";", &save))
        s_check_header(name, &reply, spec);
    kv_reply_free(&reply);
    free(target);
}

/* Every row of the table, in order; returns how many ran. */
static int s_check_table(int port) {
    FILE *file = fopen(s_table_path(), "r");
    cr_assert_not_null(file, "cannot open the contract table %s", s_table_path());
    char line[4096];
    int rows = 0;
    while (fgets(line, sizeof(line), file)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#') continue;
        s_run_row(port, line);
        rows++;
    }
    fclose(file);
    return rows;
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
        json_t *counters = json_object_get(node, "counters"); /* the node's, via STATS_REPLY */
        cr_expect(json_is_object(counters), "node lacks its counters");
        cr_expect(json_is_integer(json_object_get(counters, "kv_node_bad_frames_total")));
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

/* GET target: its status, the "version" of its body or its X-Version
 * header in *version (0 when neither). */
static long s_versioned(int port, const char *target, uint64_t *version) {
    kv_reply_t reply;
    cr_assert_eq(kv_get(port, target, &reply), 0, "no response to %s", target);
    json_t *body = kv_reply_json(&reply);
    json_t *member = json_is_object(body) ? json_object_get(body, "version") : NULL;
    *version = member ? (uint64_t)json_integer_value(member) : strtoull(reply.version, NULL, 10);
    long status = reply.status;
    json_decref(body);
    kv_reply_free(&reply);
    return status;
}

/* Versions as the contract gives them: every write a larger one, shown by
 * /get and /is, named by a conflict; ifVersion decides the write. */
static void s_check_versions(int port) {
    uint64_t first = 0, second = 0, seen = 0;
    char target[128];
    cr_expect_eq(s_versioned(port, "/set?k=versioned&v=1", &first), 200);
    cr_expect_gt(first, 0);
    cr_expect_eq(s_versioned(port, "/get?k=versioned", &seen), 200);
    cr_expect_eq(seen, first, "X-Version of /get");
    snprintf(target, sizeof(target), "/set?k=versioned&v=2&ifVersion=%" PRIu64, first);
    cr_expect_eq(s_versioned(port, target, &second), 200);
    cr_expect_gt(second, first);
    cr_expect_eq(s_versioned(port, target, &seen), 409, "the same condition twice");
    cr_expect_eq(seen, second, "the conflict names the current version");
    cr_expect_eq(s_versioned(port, "/is?k=versioned", &seen), 200);
    cr_expect_eq(seen, second, "X-Version of /is");
    snprintf(target, sizeof(target), "/rm?k=versioned&ifVersion=%" PRIu64, first);
    cr_expect_eq(s_versioned(port, target, &seen), 409);
    snprintf(target, sizeof(target), "/rm?k=versioned&ifVersion=%" PRIu64, second);
    cr_expect_eq(s_versioned(port, target, &seen), 200);
    cr_expect_eq(s_versioned(port, "/get?k=versioned", &seen), 404);
    cr_expect_eq(s_versioned(port, "/set?k=versioned&v=3&ifVersion=0", &seen), 200);
    cr_expect_gt(seen, second, "removed and set again: above every earlier version");
}

/* The versions a /tx answers are the ones /get shows afterwards, for one
 * partition (applied at once) and several (through the commit); the
 * versions a read shows are the keys'. */
static void s_check_tx_versions(int port) {
    static const char *const keys[] = {"tx-v0", "tx-v1", "tx-v2", "tx-v3", "tx-v4", "tx-v5"};
    json_t *answer = s_get_json(port, "/tx?set.tx-v0=a&set.tx-v1=b&set.tx-v2=c&set.tx-v3=d"
                                      "&set.tx-v4=e&set.tx-v5=f");
    json_t *versions = json_object_get(answer, "versions");
    cr_assert(json_is_object(versions), "no versions in the /tx answer");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char target[64];
        uint64_t seen = 0;
        uint64_t given = (uint64_t)json_integer_value(json_object_get(versions, keys[i]));
        snprintf(target, sizeof(target), "/get?k=%s", keys[i]);
        cr_expect_eq(s_versioned(port, target, &seen), 200);
        cr_expect_gt(given, 0, "%s", keys[i]);
        cr_expect_eq(seen, given, "%s: /get shows the version /tx gave", keys[i]);
    }
    json_decref(answer);
    answer = s_get_json(port, "/tx?get.tx-v0&get.tx-v5");
    uint64_t seen = 0;
    s_versioned(port, "/get?k=tx-v5", &seen);
    json_t *v5 = json_object_get(json_object_get(answer, "values"), "tx-v5");
    cr_expect_str_eq(json_string_value(json_object_get(v5, "v")), "f");
    cr_expect_eq((uint64_t)json_integer_value(json_object_get(v5, "version")), seen);
    json_decref(answer);
}

/* --- /mget ---------------------------------------------------------------- */

typedef struct {
    int port;
    atomic_int stop;
    int written; /* pairs written */
} s_pair_writer_t;

/* Writes pair-a = i, then pair-b = i, for i = 1, 2, ...: at every instant
 * a is b or b + 1. */
static void *s_pair_writer(void *arg) {
    s_pair_writer_t *writer = arg;
    char target[64];
    for (int i = 1; !atomic_load(&writer->stop); i++) {
        kv_reply_t reply;
        snprintf(target, sizeof(target), "/set?k=pair-a&v=%d", i);
        if (kv_get(writer->port, target, &reply) == 0) kv_reply_free(&reply);
        snprintf(target, sizeof(target), "/set?k=pair-b&v=%d", i);
        if (kv_get(writer->port, target, &reply) == 0) kv_reply_free(&reply);
        writer->written = i;
        usleep(2000); /* busy, not hammering: a hammered pair starves /mget (503) */
    }
    return NULL;
}

/* The value of entry i of an /mget answer as a number, 0 when null. */
static long s_mget_number(json_t *answer, size_t i) {
    const char *value = json_string_value(json_object_get(json_array_get(answer, i), "v"));
    return value ? strtol(value, NULL, 10) : 0;
}

/* /mget is one snapshot: while a writer sets pair-a then pair-b, every
 * answer shows a == b or a == b + 1, never b ahead (a read of a before
 * it was written and of b after). The keys sit on different partitions;
 * with three nodes, usually on different nodes. */
static void s_check_mget_snapshot(int port) {
    s_pair_writer_t writer = {.port = port};
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, s_pair_writer, &writer), 0);
    long long end = kv_now_ms() + 2000;
    int answers = 0, torn = 0, contended = 0;
    while (kv_now_ms() < end) {
        kv_reply_t reply;
        cr_assert_eq(kv_get(port, "/mget?k=pair-b&k=pair-a", &reply), 0);
        contended += reply.status == 503;
        json_t *answer = reply.status == 200 ? kv_reply_json(&reply) : NULL;
        kv_reply_free(&reply);
        if (!json_is_array(answer)) {
            json_decref(answer);
            continue;
        }
        long b = s_mget_number(answer, 0), a = s_mget_number(answer, 1);
        if (a != b && a != b + 1 && torn++ < 5) fprintf(stderr, "torn /mget: a=%ld b=%ld\n", a, b);
        answers++;
        json_decref(answer);
    }
    atomic_store(&writer.stop, 1);
    pthread_join(thread, NULL);
    printf("/mget under a writer: %d answers, %d refused for contention, %d pairs written\n",
           answers, contended, writer.written);
    cr_expect_eq(torn, 0, "%d of %d /mget answers showed half a pair", torn, answers);
    cr_expect_gt(answers, 10, "%d answers, %d refused for contention", answers, contended);
    cr_expect_gt(writer.written, 10);
}

/* /mget's values and versions are what /get and /set say. */
static void s_check_mget(int port) {
    uint64_t version = 0;
    cr_expect_eq(s_versioned(port, "/set?k=mget-1&v=one", &version), 200);
    json_t *answer = s_get_json(port, "/mget?k=mget-1&k=mget-absent&k=mget-1");
    cr_assert(json_is_array(answer) && json_array_size(answer) == 3, "not 3 entries");
    json_t *first = json_array_get(answer, 0);
    cr_expect_str_eq(json_string_value(json_object_get(first, "k")), "mget-1");
    cr_expect_str_eq(json_string_value(json_object_get(first, "v")), "one");
    cr_expect_eq((uint64_t)json_integer_value(json_object_get(first, "version")), version);
    json_t *absent = json_array_get(answer, 1);
    cr_expect(json_is_null(json_object_get(absent, "v")));
    cr_expect_eq(json_integer_value(json_object_get(absent, "version")), 0);
    cr_expect(json_equal(first, json_array_get(answer, 2)), "a repeat answers the same");
    json_decref(answer);
}

/* Sum over the nodes of the count of one message type they received. */
static uint64_t s_received(kv_cluster_t *cluster, const char *type) {
    char name[64];
    snprintf(name, sizeof name, "kv_node_messages_%s_total", type);
    return kv_cluster_nodes_counter(cluster, name);
}

/* On a quiet cluster, /mget reads each round with one MGET per node that
 * is primary of some of its keys, no GET (two rounds agree at once). A
 * batch falls back to GETs when a key's partition has a write not yet
 * confirmed (a transaction's late finish, say): tried a few times. */
static void s_check_mget_batched(kv_cluster_t *cluster) {
    int port = cluster->http_port;
    char target[64 * 16 + 8] = "/mget?";
    size_t pos = strlen(target);
    for (int i = 0; i < 60; i++) {
        char set[64];
        snprintf(set, sizeof set, "/set?k=batch-%d&v=%d", i, i);
        s_expect_success(port, set);
        pos += (size_t)snprintf(target + pos, sizeof target - pos, "%sk=batch-%d", i ? "&" : "", i);
    }
    cr_assert_eq(kv_cluster_wait_balanced(cluster, 20000), 0, "partitions still moving");
    uint64_t gets = 1, mgets = 0;
    for (int attempt = 0; attempt < 5 && gets != 0; attempt++) {
        uint64_t gets_before = s_received(cluster, "get");
        uint64_t mgets_before = s_received(cluster, "mget");
        json_t *answer = s_get_json(port, target);
        cr_assert_eq(json_array_size(answer), 60);
        cr_expect_str_eq(json_string_value(json_object_get(json_array_get(answer, 59), "v")), "59");
        json_decref(answer);
        gets = s_received(cluster, "get") - gets_before;
        mgets = s_received(cluster, "mget") - mgets_before;
    }
    cr_expect_eq(gets, 0, "/mget of 60 keys sent %" PRIu64 " GET", gets);
    cr_expect(mgets >= 2 && mgets <= 2 * (uint64_t)cluster->node_count,
              "/mget of 60 keys on %d nodes: %" PRIu64 " MGET in its two rounds",
              cluster->node_count, mgets);
}

static void s_contract(int nodes) {
    kv_cluster_t *cluster = kv_cluster_start(nodes, NULL);
    cr_assert_not_null(cluster, "cluster did not start");
    int port = cluster->http_port;
    cr_expect_gt(s_check_table(port), 50, "the contract table is too short");
    s_check_bulk(port, 500);
    s_check_status(port, nodes, 500);
    s_check_versions(port);
    s_check_tx_versions(port);
    s_check_mget(port);
    s_check_mget_batched(cluster);
    s_check_mget_snapshot(port);
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
    cr_expect_eq(kv_wait_status(port, "/get?k=a", 200, 5000), 0, "%s", what);
}

/* One node holding a=1, then frozen (SIGSTOP); the gateway waits
 * timeout_ms for a node, the coordinator declares it down after
 * node_timeout_ms (NULL: the harness's 1 s). The argument lists are static:
 * they must outlive the cluster. */
static kv_cluster_t *s_start_frozen(const char *timeout_ms, const char *node_timeout_ms) {
    static const char *gateway[] = {"--timeout-ms", NULL, NULL};
    static const char *coordinator[] = {"--node-timeout-ms", NULL, NULL};
    gateway[1] = timeout_ms;
    coordinator[1] = node_timeout_ms;
    kv_cluster_options_t options = {1, 1, 1, gateway, NULL, node_timeout_ms ? coordinator : NULL};
    kv_cluster_t *cluster = kv_cluster_start_with(&options);
    cr_assert_not_null(cluster);
    s_expect_success(cluster->http_port, "/set?k=a&v=1");
    kv_cluster_signal_node(cluster, 0, SIGSTOP);
    return cluster;
}

/* A node that stops answering costs the client 504 within the timeout, the
 * gateway stays healthy, and once the node is declared down the partition
 * answers 503 until it is back. */
Test(api, frozen_node_gives_timeout_then_unavailable, .timeout = 120) {
    kv_cluster_t *cluster = s_start_frozen("300", NULL);
    int port = cluster->http_port;
    long long start = kv_now_ms();
    s_expect(port, "/get?k=a", 504, "TIMEOUT");
    cr_expect(kv_now_ms() - start < 2000, "timeout took %lld ms", kv_now_ms() - start);
    /* The coordinator declares the node down after its 1 s failure timeout
     * (kv_harness.c); until then the answer is 504. */
    cr_expect_eq(kv_wait_status(port, "/get?k=a", 503, 10000), 0, "never 503 UNAVAILABLE");
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
    kv_cluster_t *cluster = s_start_frozen("400", "8000"); /* 504s, never 503 */
    int port = cluster->http_port;
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(s_send_and_hang_up(port, i % 2 ? "/get?k=a" : "/set?k=b&v=2", i % 4 < 2), 0);
    }
    /* A call sent now times out after every orphaned one (same timeout, later
     * start): once it answered 504, they have all ended. */
    s_expect(port, "/get?k=a", 504, "TIMEOUT");
    s_expect(port, "/settings", 200, NULL);
    kv_cluster_signal_node(cluster, 0, SIGCONT);
    s_expect_back(port, "the gateway did not recover");
    cr_expect_eq(kv_cluster_stop(&cluster), 0, "processes did not stop cleanly");
}
