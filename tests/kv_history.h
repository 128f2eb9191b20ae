/*  kv_history.h: a recorder of client operations, for linearizability
 *  checks (tools/linearizability, kv-lincheck).
 *
 *  Each operation goes over HTTP to a gateway (libcurl) and is recorded
 *  with its client, key, the value written or read, its invocation and
 *  return times (CLOCK_MONOTONIC, ns) and its outcome:
 *
 *  - ok: the answer is known (200; 404 MISSING_RECORD for get and rm);
 *  - fail: it certainly did not happen (a 4xx refusal, 503: nothing applied);
 *  - unknown: it may or may not have happened (504, any other 5xx, a
 *    timeout, a lost connection).
 *
 *  kv_history_write saves the history as JSON lines, the checker's input.
 *  Thread-safe: one history, many client threads, each with its own
 *  kv_history_client_t.
 */
#ifndef KV_HISTORY_H
#define KV_HISTORY_H

#include <stddef.h>

typedef enum { KV_HISTORY_GET, KV_HISTORY_SET, KV_HISTORY_RM } kv_history_op_t;

typedef enum { KV_HISTORY_OK, KV_HISTORY_FAIL, KV_HISTORY_UNKNOWN } kv_history_outcome_t;

typedef struct {
    int client;                   /* who asked */
    kv_history_op_t op;           /* what */
    char key[72];                 /* on which key */
    char value[72];               /* set: written; get: read (when found) */
    int found;                    /* get, rm with outcome ok: the key was there */
    long long call_ns, return_ns; /* monotonic */
    kv_history_outcome_t outcome; /* see above */
    long status;                  /* HTTP status, 0 when none came */
} kv_history_record_t;

typedef struct _kv_history_t kv_history_t;
typedef struct _kv_history_client_t kv_history_client_t;

kv_history_t *kv_history_new(void);

/* Frees the history; sets *self_p to NULL. Safe on NULL. */
void kv_history_destroy(kv_history_t **self_p);

/* A client: its id (as recorded), the gateway's base URL
 * ("http://10.200.1.14:7000") and how long one request may take before its
 * outcome is unknown. NULL on failure. */
kv_history_client_t *kv_history_client_new(kv_history_t *history, int id, const char *base_url,
                                           int timeout_ms);

/* Frees a client; sets *self_p to NULL. Safe on NULL. */
void kv_history_client_destroy(kv_history_client_t **self_p);

/* Performs one operation (value: what a set writes, else ignored), records
 * it, and returns the record (a copy). */
kv_history_record_t kv_history_client_do(kv_history_client_t *self, kv_history_op_t op,
                                         const char *key, const char *value);

/* Counts of records by outcome so far. */
void kv_history_counts(kv_history_t *self, size_t *ok, size_t *failed, size_t *unknown);

/* Calls fn on every record, in the order they were recorded. */
void kv_history_each(kv_history_t *self, void (*fn)(const kv_history_record_t *record, void *arg),
                     void *arg);

/* Writes the history as JSON lines (tools/linearizability/main.go tells
 * the format). Returns 0 on success. */
int kv_history_write(kv_history_t *self, const char *path);

#endif
