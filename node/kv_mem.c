/*  kv_mem.c: see kv_mem.h. */
#include "kv_mem.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_MEM_FRAME_HEAD 16 /* bytes before a counted frame's data: its size */

static _Atomic uint64_t s_frame_bytes; /* kv_mem_frame bytes libzmq has not freed */

uint64_t kv_mem_cgroup_limit(void) {
    const char *paths[] = {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        FILE *file = fopen(paths[i], "r");
        if (!file) continue;
        char text[64] = "";
        char *line = fgets(text, sizeof(text), file);
        fclose(file);
        if (!line) continue;
        unsigned long long limit = strtoull(text, NULL, 10);
        /* "max" parses as 0; v1 says "no limit" with a huge number */
        return limit >= (1ULL << 60) ? 0 : (uint64_t)limit;
    }
    return 0;
}

/* percent % of bytes, without overflow (bytes * percent could overflow). */
static uint64_t s_share(uint64_t bytes, uint64_t percent) {
    return bytes / 100 * percent + bytes % 100 * percent / 100;
}

/* The multiplier of a size suffix, 0 when unknown. */
static uint64_t s_unit(const char *suffix) {
    if (!*suffix) return 1;
    if (suffix[1]) return 0;
    switch (tolower((unsigned char)*suffix)) {
    case 'k':
        return 1ULL << 10;
    case 'm':
        return 1ULL << 20;
    case 'g':
        return 1ULL << 30;
    default:
        return 0;
    }
}

int kv_mem_parse_limit(const char *text, uint64_t cgroup, uint64_t *limit) {
    if (!text || !*text) {
        *limit = s_share(cgroup, KV_MEM_DEFAULT_PERCENT);
        return 0;
    }
    if (strcmp(text, "none") == 0) {
        *limit = 0;
        return 0;
    }
    if (!isdigit((unsigned char)*text)) return -1; /* strtoull would take "-1" */
    char *end = NULL;
    errno = 0;
    unsigned long long number = strtoull(text, &end, 10);
    if (errno || end == text) return -1;
    if (strcmp(end, "%") == 0) {
        if (number < 1 || number > 100) return -1;
        *limit = s_share(cgroup, number);
        return 0;
    }
    uint64_t unit = s_unit(end);
    if (!unit || number > UINT64_MAX / unit) return -1;
    *limit = number * unit;
    return 0;
}

void kv_mem_trim(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

uint64_t kv_mem_room(uint64_t limit, uint64_t used) {
    if (!limit) return KV_MEM_NO_LIMIT;
    return used < limit ? limit - used : 0;
}

int kv_mem_fits(uint64_t room, int64_t grow) {
    return grow <= 0 || (uint64_t)grow <= room;
}

/* libzmq's free function of a counted frame (called from any thread). */
static void s_frame_free(void *data, void *hint) {
    (void)hint;
    uint8_t *head = (uint8_t *)data - KV_MEM_FRAME_HEAD;
    size_t size;
    memcpy(&size, head, sizeof(size));
    atomic_fetch_sub(&s_frame_bytes, size);
    free(head);
}

int kv_mem_frame(zmq_msg_t *frame, size_t size) {
    uint8_t *head = malloc(KV_MEM_FRAME_HEAD + size);
    if (!head) return -1;
    memcpy(head, &size, sizeof(size));
    atomic_fetch_add(&s_frame_bytes, size);
    if (zmq_msg_init_data(frame, head + KV_MEM_FRAME_HEAD, size, s_frame_free, NULL) != 0) {
        atomic_fetch_sub(&s_frame_bytes, size);
        free(head);
        return -1;
    }
    /* cppcheck-suppress memleak ; the frame owns head now: s_frame_free frees it */
    return 0;
}

uint64_t kv_mem_frame_bytes(void) {
    return atomic_load(&s_frame_bytes);
}

int kv_mem_hwm(uint64_t budget, size_t frame_bytes, int pipes, int cap) {
    if (!budget || !frame_bytes || pipes < 1) return cap;
    uint64_t hwm = budget / frame_bytes / (uint64_t)pipes;
    if (hwm < KV_MEM_HWM_MIN) hwm = KV_MEM_HWM_MIN;
    return hwm < (uint64_t)cap ? (int)hwm : cap;
}
