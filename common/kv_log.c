/*  kv_log.c: see kv_log.h. */
#include "kv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char s_name[64] = "kv";
static kv_log_level_t s_level = KV_LOG_INFO;
static const char *const s_level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void kv_log_init(const char *name, kv_log_level_t level) {
    snprintf(s_name, sizeof(s_name), "%s", name ? name : "kv");
    s_level = level;
}

int kv_log_level_parse(const char *text) {
    if (!text) return -1;
    for (int level = KV_LOG_ERROR; level <= KV_LOG_DEBUG; level++)
        if (strcasecmp(text, s_level_names[level]) == 0) return level;
    if (strcasecmp(text, "warning") == 0) return KV_LOG_WARN;
    return -1;
}

int kv_log_enabled(kv_log_level_t level) {
    return level <= s_level;
}

void kv_log(kv_log_level_t level, const char *format, ...) {
    if (!kv_log_enabled(level)) return;
    char line[1024];
    struct timeval now;
    gettimeofday(&now, NULL);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    int head = snprintf(line + len, sizeof(line) - len, ".%03dZ %s %s ", (int)(now.tv_usec / 1000),
                        s_name, s_level_names[level]);
    if (head > 0) len += (size_t)head;
    va_list args;
    va_start(args, format);
    int body = vsnprintf(line + len, sizeof(line) - len - 1, format, args);
    va_end(args);
    if (body > 0) len += (size_t)body;
    if (len > sizeof(line) - 2) len = sizeof(line) - 2; /* truncated: keep the newline */
    line[len++] = '\n';
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written; /* nowhere left to report a failed log write */
}
