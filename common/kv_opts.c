/*  kv_opts.c: see kv_opts.h. */
#include "kv_opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_OPTS_MAX 64 /* flags one program may declare */

/* Stores text into opt's target. Returns 0, or -1 after printing why not. */
static int s_assign(const kv_opt_t *opt, const char *text, const char *source) {
    if (opt->type == KV_OPT_STRING) {
        *(const char **)opt->target = text;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || value < opt->min || value > opt->max) {
        fprintf(stderr, "invalid value '%s' for %s: expected an integer in [%ld, %ld]\n", text,
                source, opt->min, opt->max);
        return -1;
    }
    *(long *)opt->target = value;
    return 0;
}

static int s_parse_env(const kv_opt_t *opts, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const char *text = opts[i].env ? getenv(opts[i].env) : NULL;
        if (text && *text && s_assign(&opts[i], text, opts[i].env) != 0) return -1;
    }
    return 0;
}

void kv_opts_usage(const kv_opt_t *opts, size_t count, const char *program, const char *summary) {
    printf("Usage: %s [options]\n\n%s\n\nOptions (flag, environment variable, default):\n", program,
           summary);
    for (size_t i = 0; i < count; i++) {
        const kv_opt_t *opt = &opts[i];
        char fallback[64];
        if (opt->type == KV_OPT_STRING) {
            const char *value = *(const char **)opt->target;
            snprintf(fallback, sizeof(fallback), "%s", value ? value : "(none)");
        } else
            snprintf(fallback, sizeof(fallback), "%ld", *(long *)opt->target);
        printf("  --%-18s %s\n  %-20s env %s, default %s\n", opt->name, opt->help, "",
               opt->env ? opt->env : "-", fallback);
    }
    printf("  --%-18s %s\n", "help", "print this help and exit");
}

int kv_opts_parse(const kv_opt_t *opts, size_t count, int argc, char **argv, const char *summary) {
    if (count >= KV_OPTS_MAX) return -1;
    if (s_parse_env(opts, count) != 0) return -1;
    struct option longopts[KV_OPTS_MAX + 1];
    memset(longopts, 0, sizeof(longopts));
    for (size_t i = 0; i < count; i++)
        longopts[i] = (struct option){opts[i].name, required_argument, NULL, (int)i};
    longopts[count] = (struct option){"help", no_argument, NULL, 'h' + 256};
    optind = 0; /* 0, not 1: also drops a half-read "-abc" group left by an earlier parse */
    int index;
    while ((index = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (index == 'h' || index == 'h' + 256) {
            kv_opts_usage(opts, count, argv[0], summary);
            return 1;
        }
        if (index < 0 || (size_t)index >= count) {
            fprintf(stderr, "try '%s --help'\n", argv[0]);
            return -1;
        }
        char source[80];
        snprintf(source, sizeof(source), "--%s", opts[index].name);
        if (s_assign(&opts[index], optarg, source) != 0) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "unexpected argument '%s'; try '%s --help'\n", argv[optind], argv[0]);
        return -1;
    }
    return 0;
}
