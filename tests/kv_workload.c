/*  kv_workload.c: see kv_workload.h. */
#include "kv_workload.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_harness.h"

/* What the cluster may hold for one key. */
typedef struct {
    int64_t acked;     /* last acknowledged value number; -1 when absent */
    int64_t next;      /* next value number to write */
    int64_t maybe_low; /* values in [maybe_low, next) may have landed ... */
    int maybe_removed; /* ... or a remove whose outcome is unknown */
    int uncertain;     /* an unknown outcome since the last acknowledgement */
} s_key_t;

typedef struct {
    kv_workload_t *owner;    /* shared state */
    int first, count;        /* key range */
    unsigned seed;           /* rand_r state */
    long long failing_since; /* mono ms of the first failed write in a row, 0 if none */
    pthread_t thread;
} s_worker_t;

struct _kv_workload_t {
    int port;       /* gateway */
    unsigned seed;  /* names keys */
    int keys;       /* total */
    s_key_t *model; /* per key; each owned by one worker */
    s_worker_t *workers;
    int threads;
    atomic_int stop;      /* ask the workers to stop */
    int stopped;          /* joined */
    pthread_mutex_t lock; /* guards stats */
    kv_workload_stats_t stats;
};

static void s_key_name(const kv_workload_t *self, int key, char *out, size_t cap) {
    snprintf(out, cap, "wl-%u-%d", self->seed, key);
}

static void s_count(kv_workload_t *self, long status, int conn_failed, int unexpected) {
    pthread_mutex_lock(&self->lock);
    self->stats.requests++;
    if (conn_failed)
        self->stats.failed_conn++;
    else if (status >= 500) {
        self->stats.failed_5xx++;
        self->stats.failed_503 += status == 503;
    } else if (unexpected)
        self->stats.failed_other++;
    else
        self->stats.ok++;
    pthread_mutex_unlock(&self->lock);
}

/* Tracks runs of failed writes: how long writes to some key were refused. */
static void s_write_outcome(s_worker_t *worker, int failed) {
    kv_workload_t *self = worker->owner;
    long long now = kv_now_ms();
    if (failed) {
        if (!worker->failing_since) worker->failing_since = now;
        return;
    }
    if (worker->failing_since) {
        long long run = now - worker->failing_since;
        pthread_mutex_lock(&self->lock);
        if (run > self->stats.longest_refusal_ms) self->stats.longest_refusal_ms = run;
        pthread_mutex_unlock(&self->lock);
    }
    worker->failing_since = 0;
}

/* A write whose answer we do not have may or may not have happened. */
static void s_uncertain(s_key_t *key, int removing) {
    if (!key->uncertain) key->maybe_low = key->next - 1;
    key->uncertain = 1;
    if (removing) key->maybe_removed = 1;
}

static void s_acked(kv_workload_t *self, s_key_t *key, int64_t value) {
    key->acked = value;
    key->uncertain = 0;
    key->maybe_removed = 0;
    pthread_mutex_lock(&self->lock);
    self->stats.acked_writes++;
    pthread_mutex_unlock(&self->lock);
}

/* May a read of key return value (-1: absent)? */
static int s_allowed(const s_key_t *key, int64_t value) {
    if (value == key->acked) return 1;
    if (!key->uncertain) return 0;
    if (value < 0) return key->maybe_removed;
    return value >= key->maybe_low && value < key->next;
}

static int64_t s_parse_value(const kv_reply_t *reply) {
    json_t *body = kv_reply_json(reply);
    const char *text = json_string_value(body);
    int64_t value = -2;
    if (text && strncmp(text, "v", 1) == 0) value = strtoll(text + 1, NULL, 10);
    json_decref(body);
    return value;
}

static void s_do_set(s_worker_t *worker, s_key_t *key, const char *name) {
    char target[256];
    int64_t value = key->next++;
    snprintf(target, sizeof(target), "/set?k=%s&v=v%lld", name, (long long)value);
    kv_reply_t reply;
    int failed = kv_get(worker->owner->port, target, &reply) != 0;
    s_count(worker->owner, reply.status, failed, !failed && reply.status != 200);
    if (!failed && reply.status == 200)
        s_acked(worker->owner, key, value);
    else if (failed || reply.status == 504 || reply.status == 502)
        s_uncertain(key, 0); /* 503 means refused before anything was applied */
    s_write_outcome(worker, failed || reply.status != 200);
    kv_reply_free(&reply);
}

static void s_do_rm(s_worker_t *worker, s_key_t *key, const char *name) {
    char target[256];
    snprintf(target, sizeof(target), "/rm?k=%s", name);
    kv_reply_t reply;
    int failed = kv_get(worker->owner->port, target, &reply) != 0;
    int expected = !failed && (reply.status == 200 || reply.status == 404);
    s_count(worker->owner, reply.status, failed, !failed && !expected && reply.status < 500);
    if (!failed && reply.status == 404 && !s_allowed(key, -1) && !key->uncertain) {
        pthread_mutex_lock(&worker->owner->lock);
        worker->owner->stats.stale_reads++; /* it said absent; we know it is there */
        pthread_mutex_unlock(&worker->owner->lock);
    }
    if (expected)
        s_acked(worker->owner, key, -1);
    else if (failed || reply.status == 504 || reply.status == 502)
        s_uncertain(key, 1);
    s_write_outcome(worker, !expected);
    kv_reply_free(&reply);
}

static void s_do_get(s_worker_t *worker, s_key_t *key, const char *name) {
    char target[256];
    snprintf(target, sizeof(target), "/get?k=%s", name);
    kv_reply_t reply;
    int failed = kv_get(worker->owner->port, target, &reply) != 0;
    int64_t value = -2;
    if (!failed && reply.status == 200) value = s_parse_value(&reply);
    if (!failed && reply.status == 404) value = -1;
    int answered = value >= -1;
    s_count(worker->owner, reply.status, failed, !failed && !answered && reply.status < 500);
    if (answered && !s_allowed(key, value)) {
        pthread_mutex_lock(&worker->owner->lock);
        worker->owner->stats.stale_reads++;
        pthread_mutex_unlock(&worker->owner->lock);
    }
    if (answered && key->uncertain) { /* the read settles what happened */
        key->acked = value;
        key->uncertain = 0;
        key->maybe_removed = 0;
    }
    kv_reply_free(&reply);
}

static void *s_worker_run(void *arg) {
    s_worker_t *worker = arg;
    kv_workload_t *self = worker->owner;
    while (!atomic_load(&self->stop)) {
        int index = worker->first + (int)(rand_r(&worker->seed) % (unsigned)worker->count);
        s_key_t *key = &self->model[index];
        char name[64];
        s_key_name(self, index, name, sizeof(name));
        int dice = (int)(rand_r(&worker->seed) % 10);
        if (dice < 5)
            s_do_set(worker, key, name);
        else if (dice < 9)
            s_do_get(worker, key, name);
        else
            s_do_rm(worker, key, name);
    }
    return NULL;
}

kv_workload_t *kv_workload_start(int port, int keys, int threads, unsigned seed) {
    if (keys < threads || threads < 1) return NULL;
    curl_global_init(CURL_GLOBAL_ALL); /* before threads: curl's lazy init is not thread-safe */
    kv_workload_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->port = port;
    self->seed = seed;
    self->keys = keys;
    self->threads = threads;
    pthread_mutex_init(&self->lock, NULL);
    self->model = calloc((size_t)keys, sizeof(*self->model));
    self->workers = calloc((size_t)threads, sizeof(*self->workers));
    if (!self->model || !self->workers) {
        kv_workload_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < keys; i++) self->model[i] = (s_key_t){-1, 1, 0, 0, 0};
    int per = keys / threads;
    for (int t = 0; t < threads; t++) {
        s_worker_t *worker = &self->workers[t];
        worker->owner = self;
        worker->first = t * per;
        worker->count = t == threads - 1 ? keys - t * per : per;
        worker->seed = seed * 7919u + (unsigned)t;
        pthread_create(&worker->thread, NULL, s_worker_run, worker);
    }
    return self;
}

void kv_workload_stop(kv_workload_t *self) {
    if (!self || self->stopped) return;
    atomic_store(&self->stop, 1);
    for (int t = 0; t < self->threads; t++) pthread_join(self->workers[t].thread, NULL);
    self->stopped = 1;
}

kv_workload_stats_t kv_workload_stats(kv_workload_t *self) {
    pthread_mutex_lock(&self->lock);
    kv_workload_stats_t stats = self->stats;
    pthread_mutex_unlock(&self->lock);
    return stats;
}

int kv_workload_verify(kv_workload_t *self, int port, int *checked) {
    int wrong = 0;
    for (int i = 0; i < self->keys; i++) {
        char name[64], target[128];
        s_key_name(self, i, name, sizeof(name));
        snprintf(target, sizeof(target), "/get?k=%s", name);
        kv_reply_t reply;
        int64_t value = -2;
        if (kv_get(port, target, &reply) == 0) {
            if (reply.status == 200) value = s_parse_value(&reply);
            if (reply.status == 404) value = -1;
        }
        const s_key_t *key = &self->model[i];
        if (!s_allowed(key, value)) {
            if (wrong < 10)
                fprintf(stderr, "key %s: read %lld (HTTP %ld), acknowledged %lld\n", name,
                        (long long)value, reply.status, (long long)key->acked);
            wrong++;
        }
        kv_reply_free(&reply);
    }
    if (checked) *checked = self->keys;
    return wrong;
}

void kv_workload_each_present(kv_workload_t *self, void (*fn)(const char *key, void *arg),
                              void *arg) {
    for (int i = 0; i < self->keys; i++) {
        if (self->model[i].acked < 0 || self->model[i].uncertain) continue;
        char name[64];
        s_key_name(self, i, name, sizeof(name));
        fn(name, arg);
    }
}

void kv_workload_destroy(kv_workload_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_workload_t *self = *self_p;
    if (self->workers) kv_workload_stop(self);
    pthread_mutex_destroy(&self->lock);
    free(self->model);
    free(self->workers);
    free(self);
    *self_p = NULL;
}
