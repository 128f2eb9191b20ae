/*  kv_counters.h: one registry of named event counters per process object.
 *
 *  State machines count their transitions here, the request paths count what
 *  they answer, and everything that reports on a process reads the same
 *  registry: tests (through /status today, instead of grepping logs) and the
 *  metrics exporter later. A registry belongs to one object (a node, a
 *  gateway, a coordinator), not to the process, so several of them can live
 *  in one test process without mixing their counts.
 *
 *  Counters are registered once, by name, before the threads that bump them
 *  start; bumping is a relaxed atomic add, so any thread may count and any
 *  thread may read without a lock. Names follow Prometheus conventions
 *  (snake_case, `_total` for event counts); a name registered twice returns
 *  the same counter, so a module may register what it uses without knowing
 *  who else did.
 */
#ifndef KV_COUNTERS_H
#define KV_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#define KV_COUNTERS_MAX 256    /* counters per registry */
#define KV_COUNTER_NAME_MAX 95 /* bytes of a name, without the NUL */
#define KV_COUNTER_INVALID SIZE_MAX

typedef struct _kv_counters_t kv_counters_t;

/* A new, empty registry; NULL when out of memory. */
kv_counters_t *kv_counters_new(void);

/* Frees the registry; sets *self_p to NULL. Safe on NULL and twice. */
void kv_counters_destroy(kv_counters_t **self_p);

/* Registers a counter (or finds the one already registered under that
 * name) and returns its handle; KV_COUNTER_INVALID when the registry is
 * full or the name is empty or too long. help is a one-line description
 * (static storage; may be NULL). Not thread-safe: register before sharing. */
size_t kv_counters_register(kv_counters_t *self, const char *name, const char *help);

/* Adds n to a counter. An invalid handle is ignored, so a registration
 * that failed costs a count, never a crash. Thread-safe. */
void kv_counters_add(kv_counters_t *self, size_t handle, uint64_t n);

/* Adds one. Thread-safe. */
void kv_counters_inc(kv_counters_t *self, size_t handle);

/* The counter's value; 0 for an invalid handle. Thread-safe. */
uint64_t kv_counters_value(const kv_counters_t *self, size_t handle);

/* The value of the counter registered under name, or 0 when there is
 * none. Thread-safe once registration is over. */
uint64_t kv_counters_get(const kv_counters_t *self, const char *name);

/* Number of counters registered, and the name, help and value of the i-th
 * (registration order), for exporters. NULL name when i is out of range. */
size_t kv_counters_count(const kv_counters_t *self);
const char *kv_counters_name(const kv_counters_t *self, size_t i);
const char *kv_counters_help(const kv_counters_t *self, size_t i);

#endif
