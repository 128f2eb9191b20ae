/*  kv_history.c: see kv_history.h. */
#include "kv_history.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_harness.h"

struct _kv_history_t {
    pthread_mutex_t lock;         /* guards the records */
    kv_history_record_t *records; /* in recording order */
    size_t count, cap;
};

struct _kv_history_client_t {
    kv_history_t *history; /* where records go */
    int id;                /* client id */
    char base_url[128];    /* gateway */
    long timeout_ms;       /* per request */
    CURL *curl;            /* kept: one keep-alive connection */
    char *body;            /* last response body */
    size_t body_len;
};

static long long s_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

kv_history_t *kv_history_new(void) {
    kv_history_t *self = calloc(1, sizeof(*self));
    if (self) pthread_mutex_init(&self->lock, NULL);
    return self;
}

void kv_history_destroy(kv_history_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_history_t *self = *self_p;
    pthread_mutex_destroy(&self->lock);
    free(self->records);
    free(self);
    *self_p = NULL;
}

static void s_append(kv_history_t *self, const kv_history_record_t *record) {
    pthread_mutex_lock(&self->lock);
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 4096;
        kv_history_record_t *grown = realloc(self->records, cap * sizeof(*grown));
        if (!grown) { /* out of memory in a test: the check will say so */
            pthread_mutex_unlock(&self->lock);
            fprintf(stderr, "kv_history: out of memory, record dropped\n");
            return;
        }
        self->records = grown;
        self->cap = cap;
    }
    self->records[self->count++] = *record;
    pthread_mutex_unlock(&self->lock);
}

kv_history_client_t *kv_history_client_new(kv_history_t *history, int id, const char *base_url,
                                           int timeout_ms) {
    kv_history_client_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->history = history;
    self->id = id;
    snprintf(self->base_url, sizeof(self->base_url), "%s", base_url);
    self->timeout_ms = timeout_ms;
    self->curl = curl_easy_init();
    if (!self->curl) kv_history_client_destroy(&self);
    return self;
}

void kv_history_client_destroy(kv_history_client_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_history_client_t *self = *self_p;
    if (self->curl) curl_easy_cleanup(self->curl);
    free(self->body);
    free(self);
    *self_p = NULL;
}

static size_t s_on_body(char *data, size_t size, size_t count, void *arg) {
    kv_history_client_t *self = arg;
    size_t bytes = size * count;
    char *grown = realloc(self->body, self->body_len + bytes + 1);
    if (!grown) return 0;
    memcpy(grown + self->body_len, data, bytes);
    self->body = grown;
    self->body_len += bytes;
    grown[self->body_len] = '\0';
    return bytes;
}

/* Sends GET base_url + target. Returns the HTTP status, 0 when no answer
 * came (timeout, refused or broken connection). */
static long s_get(kv_history_client_t *self, const char *target) {
    self->body_len = 0;
    if (self->body) self->body[0] = '\0';
    char url[512];
    snprintf(url, sizeof(url), "%s%s", self->base_url, target);
    curl_easy_setopt(self->curl, CURLOPT_URL, url);
    curl_easy_setopt(self->curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(self->curl, CURLOPT_WRITEDATA, self);
    curl_easy_setopt(self->curl, CURLOPT_TIMEOUT_MS, self->timeout_ms);
    curl_easy_setopt(self->curl, CURLOPT_CONNECTTIMEOUT_MS, self->timeout_ms);
    curl_easy_setopt(self->curl, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    if (curl_easy_perform(self->curl) == CURLE_OK)
        curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* The outcome an HTTP status means for op (see kv_history.h). */
static kv_history_outcome_t s_outcome(kv_history_op_t op, long status) {
    if (status == 200) return KV_HISTORY_OK;
    if (status == 404 && op != KV_HISTORY_SET) return KV_HISTORY_OK;
    if ((status >= 400 && status < 500) || status == 503) return KV_HISTORY_FAIL;
    return KV_HISTORY_UNKNOWN;
}

/* A /get body is a JSON string: the value read. */
static void s_read_value(kv_history_client_t *self, kv_history_record_t *record) {
    json_t *value =
        self->body ? json_loadb(self->body, self->body_len, JSON_DECODE_ANY, NULL) : NULL;
    if (json_is_string(value)) {
        snprintf(record->value, sizeof(record->value), "%s", json_string_value(value));
    } else { /* a 200 that is not a value: nothing to trust */
        record->outcome = KV_HISTORY_UNKNOWN;
        fprintf(stderr, "kv_history: /get answered 200 with %s\n", self->body ? self->body : "");
    }
    json_decref(value);
}

kv_history_record_t kv_history_client_do(kv_history_client_t *self, kv_history_op_t op,
                                         const char *key, const char *value) {
    static const char *const routes[] = {"/get", "/set", "/rm"};
    kv_history_record_t record = {.client = self->id, .op = op};
    snprintf(record.key, sizeof(record.key), "%s", key);
    if (op == KV_HISTORY_SET) snprintf(record.value, sizeof(record.value), "%s", value);
    char *k = kv_urlencode(key, strlen(key));
    char *v = op == KV_HISTORY_SET ? kv_urlencode(value, strlen(value)) : NULL;
    char target[384];
    snprintf(target, sizeof(target), "%s?k=%s%s%s", routes[op], k ? k : "", v ? "&v=" : "",
             v ? v : "");
    free(k);
    free(v);
    record.call_ns = s_now_ns();
    record.status = s_get(self, target);
    record.return_ns = s_now_ns();
    record.outcome = s_outcome(op, record.status);
    record.found = record.status == 200;
    if (op == KV_HISTORY_GET && record.status == 200) s_read_value(self, &record);
    s_append(self->history, &record);
    return record;
}

void kv_history_counts(kv_history_t *self, size_t *ok, size_t *failed, size_t *unknown) {
    size_t counts[3] = {0, 0, 0};
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->count; i++) counts[self->records[i].outcome]++;
    pthread_mutex_unlock(&self->lock);
    *ok = counts[KV_HISTORY_OK];
    *failed = counts[KV_HISTORY_FAIL];
    *unknown = counts[KV_HISTORY_UNKNOWN];
}

void kv_history_each(kv_history_t *self, void (*fn)(const kv_history_record_t *record, void *arg),
                     void *arg) {
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->count; i++) fn(&self->records[i], arg);
    pthread_mutex_unlock(&self->lock);
}

/* One record as a JSON object (the checker's Record). */
static json_t *s_record_json(const kv_history_record_t *record) {
    static const char *const ops[] = {"get", "set", "rm"};
    static const char *const outcomes[] = {"ok", "fail", "unknown"};
    json_t *line =
        json_pack("{s:i, s:s, s:s, s:I, s:I, s:s, s:I}", "client", record->client, "op",
                  ops[record->op], "key", record->key, "call", (json_int_t)record->call_ns, "ret",
                  (json_int_t)record->return_ns, "outcome", outcomes[record->outcome], "status",
                  (json_int_t)record->status);
    if (!line) return NULL;
    int reports_found = record->op != KV_HISTORY_SET && record->outcome == KV_HISTORY_OK;
    if (reports_found) json_object_set_new(line, "found", json_boolean(record->found));
    if (record->op == KV_HISTORY_SET || (reports_found && record->found))
        json_object_set_new(line, "value", json_string(record->value));
    return line;
}

int kv_history_write(kv_history_t *self, const char *path) {
    FILE *file = fopen(path, "w");
    if (!file) return -1;
    int failed = 0;
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->count && !failed; i++) {
        json_t *line = s_record_json(&self->records[i]);
        failed = !line || json_dumpf(line, file, JSON_COMPACT) != 0 || fputc('\n', file) == EOF;
        json_decref(line);
    }
    pthread_mutex_unlock(&self->lock);
    failed |= fclose(file) != 0;
    return failed ? -1 : 0;
}
