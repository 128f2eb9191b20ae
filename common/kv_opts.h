/*  kv_opts.h: command-line flags with environment-variable fallbacks.
 *
 *  Every executable describes its settings once, as a table of kv_opt_t;
 *  the same table drives parsing, validation and --help, so the help text
 *  can never drift from what is parsed. Precedence: flag, then environment
 *  variable, then the default already stored in the target.
 */
#ifndef KV_OPTS_H
#define KV_OPTS_H

#include <stddef.h>

typedef enum {
    KV_OPT_STRING, /* target is a const char ** */
    KV_OPT_LONG,   /* target is a long *, checked against [min, max] */
} kv_opt_type_t;

typedef struct {
    const char *name;   /* long flag without the leading "--" */
    const char *env;    /* environment variable, or NULL */
    kv_opt_type_t type; /* how to parse the text */
    void *target;       /* where the value goes; holds the default on entry */
    long min;           /* KV_OPT_LONG: smallest accepted value */
    long max;           /* KV_OPT_LONG: largest accepted value */
    const char *help;   /* one line for --help */
} kv_opt_t;

/* Parses the environment, then argv, into the targets. Returns 0 to go on,
 * 1 when --help was printed (exit 0), -1 after printing an error (exit 2). */
int kv_opts_parse(const kv_opt_t *opts, size_t count, int argc, char **argv, const char *summary);

/* Prints usage: the summary, then every flag, its variable and default. */
void kv_opts_usage(const kv_opt_t *opts, size_t count, const char *program, const char *summary);

#endif
