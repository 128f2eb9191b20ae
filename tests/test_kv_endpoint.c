/*  test_kv_endpoint.c: which ZeroMQ endpoints the store accepts, and what
 *  a process advertises for the endpoint it binds.
 *
 *  A node binds to a wildcard host ("*" or 0.0.0.0) but must tell the
 *  coordinator an address the others can connect to; the advertise tests
 *  show the wildcard replaced by the host name and every other endpoint
 *  passed through unchanged.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kv_endpoint.h"
#include "kv_limits.h"

static void s_expect_valid(const char *endpoint) {
    cr_expect(kv_endpoint_is_valid(endpoint), "%s should be valid", endpoint);
}

static void s_expect_invalid(const char *endpoint) {
    cr_expect_not(kv_endpoint_is_valid(endpoint), "%s should be invalid", endpoint);
}

/* An endpoint of exactly len bytes: prefix, then 'a's, then suffix. */
static void s_endpoint_of(char *out, size_t len, const char *prefix, const char *suffix) {
    int fill = (int)(len - strlen(prefix) - strlen(suffix));
    char as[KV_ENDPOINT_MAX + 1];
    memset(as, 'a', sizeof as);
    snprintf(out, len + 1, "%s%.*s%s", prefix, fill, as, suffix);
    cr_assert_eq(strlen(out), len);
}

static void s_hostname(char *out, size_t cap) {
    cr_assert_eq(gethostname(out, cap), 0);
    out[cap - 1] = '\0';
}

//  --------------------------------------------------------------------------
//  Validation

Test(kv_endpoint, tcp_with_host_and_port_is_valid) {
    s_expect_valid("tcp://127.0.0.1:5601");
    s_expect_valid("tcp://node-1:5601");
    s_expect_valid("tcp://kv-node-0.kv.default.svc.cluster.local:5601");
    s_expect_valid("tcp://[::1]:5601");
}

Test(kv_endpoint, ipc_and_inproc_are_valid) {
    s_expect_valid("ipc:///tmp/kv-node.sock");
    s_expect_valid("ipc://relative");
    s_expect_valid("inproc://node-1");
}

Test(kv_endpoint, port_range_is_1_to_65535) {
    s_expect_invalid("tcp://host:0");
    s_expect_valid("tcp://host:1");
    s_expect_valid("tcp://host:65535");
    s_expect_invalid("tcp://host:65536");
    s_expect_invalid("tcp://host:99999");
    s_expect_valid("tcp://host:00080");
    s_expect_invalid("tcp://host:000080");
}

Test(kv_endpoint, malformed_ports_are_invalid) {
    s_expect_invalid("tcp://host");
    s_expect_invalid("tcp://host:");
    s_expect_invalid("tcp://host:-1");
    s_expect_invalid("tcp://host:+80");
    s_expect_invalid("tcp://host:80a");
    s_expect_invalid("tcp://host:8 0");
    s_expect_invalid("tcp://host:80/");
    s_expect_invalid("tcp://host:*");
}

Test(kv_endpoint, malformed_hosts_are_invalid) {
    s_expect_invalid("tcp://:5601");
    s_expect_invalid("tcp://host name:5601");
    s_expect_invalid("tcp://a/b:5601");
    s_expect_invalid("tcp://ho\tst:5601");
}

/* A wildcard can be bound but not connected to, so it is never valid to
 * advertise. */
Test(kv_endpoint, wildcard_hosts_are_invalid) {
    s_expect_invalid("tcp://*:5601");
    s_expect_invalid("tcp://*.example:5601");
    s_expect_invalid("tcp://0.0.0.0:5601");
}

Test(kv_endpoint, other_transports_and_empty_names_are_invalid) {
    s_expect_invalid(NULL);
    s_expect_invalid("");
    s_expect_invalid("tcp://");
    s_expect_invalid("ipc://");
    s_expect_invalid("inproc://");
    s_expect_invalid("udp://host:5601");
    s_expect_invalid("pgm://eth0;239.192.1.1:5555");
    s_expect_invalid("TCP://host:5601");
    s_expect_invalid("host:5601");
    s_expect_invalid("tcp:/host:5601");
}

Test(kv_endpoint, length_limit_is_inclusive) {
    char endpoint[KV_ENDPOINT_MAX + 2];
    s_endpoint_of(endpoint, KV_ENDPOINT_MAX, "inproc://", "");
    s_expect_valid(endpoint);
    s_endpoint_of(endpoint, KV_ENDPOINT_MAX + 1, "inproc://", "");
    s_expect_invalid(endpoint);
    s_endpoint_of(endpoint, KV_ENDPOINT_MAX, "tcp://", ":5601");
    s_expect_valid(endpoint);
    s_endpoint_of(endpoint, KV_ENDPOINT_MAX + 1, "tcp://", ":5601");
    s_expect_invalid(endpoint);
    s_endpoint_of(endpoint, KV_ENDPOINT_MAX + 1, "ipc:///", "");
    s_expect_invalid(endpoint);
}

//  --------------------------------------------------------------------------
//  Advertising

static void s_expect_advertised(const char *bind, const char *want) {
    char out[KV_ENDPOINT_MAX + 1];
    cr_assert_eq(kv_endpoint_advertise(bind, out, sizeof out), 0, "%s", bind);
    cr_expect_str_eq(out, want, "%s", bind);
}

Test(kv_endpoint, advertise_replaces_wildcards_with_the_host_name) {
    char host[256];
    s_hostname(host, sizeof host);
    char want[300];
    snprintf(want, sizeof want, "tcp://%s:5601", host);
    s_expect_advertised("tcp://*:5601", want);
    s_expect_advertised("tcp://0.0.0.0:5601", want);
    s_expect_valid(want);
}

Test(kv_endpoint, advertise_leaves_other_endpoints_alone) {
    const char *endpoints[] = {"tcp://127.0.0.1:5601", "tcp://node-1:5601",  "tcp://0.0.0.01:5601",
                               "tcp://*.example:5601", "ipc:///tmp/kv.sock", "inproc://node-1"};
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
        s_expect_advertised(endpoints[i], endpoints[i]);
}

Test(kv_endpoint, advertise_into_too_small_buffer_fails) {
    const char *bind = "tcp://127.0.0.1:5601";
    char out[64];
    cr_expect_eq(kv_endpoint_advertise(bind, out, strlen(bind)), -1, "no room for the NUL");
    cr_expect_eq(kv_endpoint_advertise(bind, out, strlen(bind) + 1), 0);
    cr_expect_eq(kv_endpoint_advertise(bind, NULL, 0), -1);

    char host[256];
    s_hostname(host, sizeof host);
    size_t need = strlen("tcp://") + strlen(host) + strlen(":5601") + 1;
    char wide[300];
    cr_expect_eq(kv_endpoint_advertise("tcp://*:5601", wide, need - 1), -1);
    cr_expect_eq(kv_endpoint_advertise("tcp://*:5601", wide, need), 0);
    cr_expect_eq(strlen(wide) + 1, need);
}
