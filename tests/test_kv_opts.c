/*  test_kv_opts.c: command-line flags with environment-variable fallbacks.
 *
 *  The table below is how an executable declares its settings; each test
 *  parses one command line against it. Precedence is flag, then
 *  environment variable, then the default stored in the target, and every
 *  bad input makes kv_opts_parse return -1 (the caller exits 2). Output is
 *  redirected so a test can read the help text and errors it printed.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_opts.h"

#define ARGC(argv) ((int)(sizeof(argv) / sizeof((argv)[0])) - 1)

static const char *s_bind;
static long s_port;
static long s_offset;

static const kv_opt_t s_opts[] = {
    {"bind", "KV_TEST_BIND", KV_OPT_STRING, &s_bind, 0, 0, "endpoint to bind"},
    {"port", "KV_TEST_PORT", KV_OPT_LONG, &s_port, 1, 65535, "HTTP port"},
    {"offset", NULL, KV_OPT_LONG, &s_offset, -10, 10, "a flag without a variable"},
};
#define OPT_COUNT (sizeof s_opts / sizeof s_opts[0])

/* Defaults, and no variable left over from the environment. */
static void s_setup(void) {
    s_bind = "tcp://*:5601";
    s_port = 8080;
    s_offset = 0;
    unsetenv("KV_TEST_BIND");
    unsetenv("KV_TEST_PORT");
    cr_redirect_stdout();
    cr_redirect_stderr();
}

static int s_parse(int argc, char **argv) {
    return kv_opts_parse(s_opts, OPT_COUNT, argc, argv, "A test program.");
}

/* Everything the test printed to stream so far, NUL-terminated (static). */
static const char *s_output(FILE *stream) {
    static char text[8192];
    fflush(stream);
    FILE *redirected = stream == stdout ? cr_get_redirected_stdout() : cr_get_redirected_stderr();
    size_t n = fread(text, 1, sizeof text - 1, redirected);
    text[n] = '\0';
    return text;
}

TestSuite(kv_opts, .init = s_setup);

//  --------------------------------------------------------------------------
//  Precedence

Test(kv_opts, defaults_stay_without_flags_or_variables) {
    char *argv[] = {"prog", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 0);
    cr_expect_str_eq(s_bind, "tcp://*:5601");
    cr_expect_eq(s_port, 8080);
    cr_expect_eq(s_offset, 0);
}

Test(kv_opts, environment_overrides_defaults) {
    setenv("KV_TEST_BIND", "tcp://*:7000", 1);
    setenv("KV_TEST_PORT", "9090", 1);
    char *argv[] = {"prog", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 0);
    cr_expect_str_eq(s_bind, "tcp://*:7000");
    cr_expect_eq(s_port, 9090);
}

Test(kv_opts, empty_variable_is_ignored) {
    setenv("KV_TEST_PORT", "", 1);
    char *argv[] = {"prog", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 0);
    cr_expect_eq(s_port, 8080);
}

Test(kv_opts, flags_override_environment) {
    setenv("KV_TEST_BIND", "tcp://*:7000", 1);
    setenv("KV_TEST_PORT", "9090", 1);
    char *argv[] = {"prog", "--port", "1234", "--bind=ipc:///tmp/x", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 0);
    cr_expect_str_eq(s_bind, "ipc:///tmp/x");
    cr_expect_eq(s_port, 1234);
}

Test(kv_opts, last_flag_wins) {
    char *argv[] = {"prog", "--port=1", "--port", "2", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 0);
    cr_expect_eq(s_port, 2);
}

Test(kv_opts, range_bounds_are_inclusive) {
    char *low[] = {"prog", "--port", "1", "--offset", "-10", NULL};
    cr_assert_eq(s_parse(ARGC(low), low), 0);
    cr_expect_eq(s_port, 1);
    cr_expect_eq(s_offset, -10, "a negative number is an argument, not a flag");
    char *high[] = {"prog", "--port=65535", "--offset=10", NULL};
    cr_assert_eq(s_parse(ARGC(high), high), 0);
    cr_expect_eq(s_port, 65535);
    cr_expect_eq(s_offset, 10);
}

/* kv_opts_parse resets getopt itself, so it can run more than once. */
Test(kv_opts, parses_again_in_the_same_process) {
    char *first[] = {"prog", "--port", "1000", NULL};
    cr_assert_eq(s_parse(ARGC(first), first), 0);
    char *second[] = {"prog", "--port", "2000", NULL};
    cr_assert_eq(s_parse(ARGC(second), second), 0);
    cr_expect_eq(s_port, 2000);
}

/* Even when the previous parse stopped halfway through "-hx". */
Test(kv_opts, parses_again_after_stopping_inside_a_short_option_group) {
    char *first[] = {"prog", "-hx", NULL};
    cr_assert_eq(s_parse(ARGC(first), first), 1);
    char *second[] = {"prog", "--port", "2000", NULL};
    cr_assert_eq(s_parse(ARGC(second), second), 0);
    cr_expect_eq(s_port, 2000);
}

//  --------------------------------------------------------------------------
//  Help and errors

Test(kv_opts, help_prints_usage_and_returns_1) {
    char *argv[] = {"prog", "--help", NULL};
    cr_assert_eq(s_parse(ARGC(argv), argv), 1);
    const char *usage = s_output(stdout);
    cr_expect(strstr(usage, "Usage: prog") != NULL, "%s", usage);
    cr_expect(strstr(usage, "A test program.") != NULL);
    cr_expect(strstr(usage, "--port") && strstr(usage, "KV_TEST_PORT") && strstr(usage, "8080"));
    cr_expect(strstr(usage, "--bind") && strstr(usage, "tcp://*:5601"));
    cr_expect(strstr(usage, "--help") != NULL);
}

Test(kv_opts, short_h_is_help_too) {
    char *argv[] = {"prog", "-h", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), 1);
}

/* The first bad value stops the parse; targets parsed before it may be set. */
static void s_expect_rejected(char **argv, int argc, const char *why) {
    cr_expect_eq(s_parse(argc, argv), -1, "%s", why);
}

Test(kv_opts, invalid_integers_are_rejected) {
    char *word[] = {"prog", "--port", "abc", NULL};
    s_expect_rejected(word, ARGC(word), "not a number");
    char *suffix[] = {"prog", "--port", "80x", NULL};
    s_expect_rejected(suffix, ARGC(suffix), "trailing garbage");
    char *empty[] = {"prog", "--port=", NULL};
    s_expect_rejected(empty, ARGC(empty), "empty");
    char *space[] = {"prog", "--port", " ", NULL};
    s_expect_rejected(space, ARGC(space), "blank");
    char *huge[] = {"prog", "--port", "99999999999999999999999", NULL};
    s_expect_rejected(huge, ARGC(huge), "overflows a long");
    cr_expect(strstr(s_output(stderr), "expected an integer in [1, 65535]") != NULL);
}

Test(kv_opts, out_of_range_integers_are_rejected) {
    char *zero[] = {"prog", "--port", "0", NULL};
    s_expect_rejected(zero, ARGC(zero), "below min");
    char *big[] = {"prog", "--port", "65536", NULL};
    s_expect_rejected(big, ARGC(big), "above max");
    char *low[] = {"prog", "--offset=-11", NULL};
    s_expect_rejected(low, ARGC(low), "below a negative min");
}

Test(kv_opts, invalid_variable_is_rejected) {
    setenv("KV_TEST_PORT", "eighty", 1);
    char *argv[] = {"prog", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), -1);
    cr_expect(strstr(s_output(stderr), "KV_TEST_PORT") != NULL, "the error names the variable");
}

/* The environment is read first: a bad variable fails even when a flag
 * would have overridden it. */
Test(kv_opts, invalid_variable_is_rejected_even_with_a_flag) {
    setenv("KV_TEST_PORT", "0", 1);
    char *argv[] = {"prog", "--port", "80", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), -1);
}

Test(kv_opts, unknown_flag_is_rejected) {
    char *argv[] = {"prog", "--nope", "1", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), -1);
    char *short_flag[] = {"prog", "-x", NULL};
    cr_expect_eq(s_parse(ARGC(short_flag), short_flag), -1);
}

Test(kv_opts, flag_without_its_value_is_rejected) {
    char *argv[] = {"prog", "--port", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), -1);
}

Test(kv_opts, positional_argument_is_rejected) {
    char *argv[] = {"prog", "extra", NULL};
    cr_expect_eq(s_parse(ARGC(argv), argv), -1);
    char *after[] = {"prog", "--port", "80", "extra", NULL};
    cr_expect_eq(s_parse(ARGC(after), after), -1);
    cr_expect(strstr(s_output(stderr), "unexpected argument 'extra'") != NULL);
}

Test(kv_opts, too_many_options_are_rejected) {
    static kv_opt_t many[64];
    static long targets[64];
    for (size_t i = 0; i < 64; i++)
        many[i] = (kv_opt_t){"x", NULL, KV_OPT_LONG, &targets[i], 0, 1, "x"};
    char *argv[] = {"prog", NULL};
    cr_expect_eq(kv_opts_parse(many, 64, ARGC(argv), argv, "s"), -1);
    cr_expect_eq(kv_opts_parse(many, 63, ARGC(argv), argv, "s"), 0);
}
