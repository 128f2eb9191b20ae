/*  kv_counters.c: a fixed array of named relaxed atomic counters.
 *
 *  The array never moves (no realloc), so a handle is an index that stays
 *  valid for the registry's life and readers need no lock.
 */
#include "kv_counters.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[KV_COUNTER_NAME_MAX + 1]; /* Prometheus-style name */
    const char *help;                   /* one line, static storage, or NULL */
    _Atomic uint64_t value;             /* the count */
} s_counter_t;

struct _kv_counters_t {
    s_counter_t slots[KV_COUNTERS_MAX]; /* registration order */
    size_t used;                        /* slots taken */
};

kv_counters_t *kv_counters_new(void) {
    return calloc(1, sizeof(kv_counters_t));
}

void kv_counters_destroy(kv_counters_t **self_p) {
    if (!self_p || !*self_p) return;
    free(*self_p);
    *self_p = NULL;
}

static size_t s_find(const kv_counters_t *self, const char *name) {
    for (size_t i = 0; i < self->used; i++)
        if (strcmp(self->slots[i].name, name) == 0) return i;
    return KV_COUNTER_INVALID;
}

size_t kv_counters_register(kv_counters_t *self, const char *name, const char *help) {
    if (!self || !name || !*name) return KV_COUNTER_INVALID;
    size_t len = strlen(name);
    if (len > KV_COUNTER_NAME_MAX) return KV_COUNTER_INVALID;
    size_t found = s_find(self, name);
    if (found != KV_COUNTER_INVALID) return found;
    if (self->used == KV_COUNTERS_MAX) return KV_COUNTER_INVALID; /* full */
    s_counter_t *slot = &self->slots[self->used];
    memcpy(slot->name, name, len + 1);
    slot->help = help;
    atomic_init(&slot->value, 0);
    return self->used++;
}

void kv_counters_add(kv_counters_t *self, size_t handle, uint64_t n) {
    if (!self || handle >= self->used) return; /* failed registration */
    atomic_fetch_add_explicit(&self->slots[handle].value, n, memory_order_relaxed);
}

void kv_counters_inc(kv_counters_t *self, size_t handle) {
    kv_counters_add(self, handle, 1);
}

uint64_t kv_counters_value(const kv_counters_t *self, size_t handle) {
    if (!self || handle >= self->used) return 0;
    return atomic_load_explicit(&self->slots[handle].value, memory_order_relaxed);
}

uint64_t kv_counters_get(const kv_counters_t *self, const char *name) {
    if (!self || !name) return 0;
    return kv_counters_value(self, s_find(self, name));
}

size_t kv_counters_count(const kv_counters_t *self) {
    return self ? self->used : 0;
}

const char *kv_counters_name(const kv_counters_t *self, size_t i) {
    return self && i < self->used ? self->slots[i].name : NULL;
}

const char *kv_counters_help(const kv_counters_t *self, size_t i) {
    return self && i < self->used ? self->slots[i].help : NULL;
}
