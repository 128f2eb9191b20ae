/*  kv_msg_counts.c: see kv_msg_counts.h. */
#include "kv_msg_counts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_register_type(kv_msg_counts_t *self, const char *prefix, int type) {
    char name[KV_COUNTER_NAME_MAX + 1];
    int len = snprintf(name, sizeof(name), "%s_%s_total", prefix, kv_msg_type_name(type));
    for (int i = (int)strlen(prefix); i < len && name[i]; i++)
        name[i] = (char)tolower((unsigned char)name[i]);
    self->handles[type] = kv_counters_register(self->counters, name, "messages received, by type");
}

void kv_msg_counts_register(kv_msg_counts_t *self, kv_counters_t *counters, const char *prefix) {
    self->counters = counters;
    for (int type = 0; type < KV_MSG_COUNTS_TYPES; type++) self->handles[type] = KV_COUNTER_INVALID;
#define KV_MSG_COUNTS_REGISTER_(NAME, code) s_register_type(self, prefix, code);
    KV_MSG_TYPES(KV_MSG_COUNTS_REGISTER_)
#undef KV_MSG_COUNTS_REGISTER_
}

void kv_msg_counts_inc(const kv_msg_counts_t *self, int type) {
    if (type >= 0 && type < KV_MSG_COUNTS_TYPES)
        kv_counters_inc(self->counters, self->handles[type]);
}

kv_bytes_t kv_msg_counts_blob(const kv_counters_t *counters, uint8_t **buf_p) {
    size_t count = kv_counters_count(counters);
    size_t cap = count * (1 + KV_COUNTER_NAME_MAX + 8);
    uint8_t *buf = cap ? malloc(cap) : NULL;
    size_t pos = 0;
    for (size_t i = 0; buf && i < count; i++)
        kv_msg_counter_put(buf, cap, &pos, kv_counters_name(counters, i),
                           kv_counters_value(counters, i));
    *buf_p = buf;
    return (kv_bytes_t){buf ? (const char *)buf : NULL, buf ? pos : 0};
}
