/*  kv_log.h: one line per event, to stderr, with a level and the process.
 *
 *  Lines look like "2026-11-26T21:15:48.123Z node-1 INFO partition 7 moved
 *  (epoch 4)". Callers put the facts needed to debug a cluster in the
 *  message: node id, partition, epoch, sequence. Thread-safe: each line is
 *  formatted into one buffer and written with one write(2).
 */
#ifndef KV_LOG_H
#define KV_LOG_H

typedef enum {
    KV_LOG_ERROR = 0, /* something failed and was not recovered */
    KV_LOG_WARN,      /* bad input, a peer misbehaving, a retry */
    KV_LOG_INFO,      /* membership, routing and lifecycle events */
    KV_LOG_DEBUG,     /* per-request detail; off by default */
} kv_log_level_t;

/* Sets the name printed on every line (copied) and the lowest level shown. */
void kv_log_init(const char *name, kv_log_level_t level);

/* Parses "error", "warn", "info" or "debug". Returns the level or -1. */
int kv_log_level_parse(const char *text);

/* True when messages at level would be printed (to skip costly formatting). */
int kv_log_enabled(kv_log_level_t level);

/* Prints one line at level. */
void kv_log(kv_log_level_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#define kv_log_error(...) kv_log(KV_LOG_ERROR, __VA_ARGS__)
#define kv_log_warn(...) kv_log(KV_LOG_WARN, __VA_ARGS__)
#define kv_log_info(...) kv_log(KV_LOG_INFO, __VA_ARGS__)
#define kv_log_debug(...)                                                                          \
    do {                                                                                           \
        if (kv_log_enabled(KV_LOG_DEBUG)) kv_log(KV_LOG_DEBUG, __VA_ARGS__);                       \
    } while (0)

#endif
