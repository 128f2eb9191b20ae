/*  test_kv_poller.c: the epoll-based wait over ZeroMQ sockets and fds. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "kv_clock.h"
#include "kv_poller.h"

static void *s_ctx;

static void s_setup(void) {
    s_ctx = zmq_ctx_new();
}

static void s_teardown(void) {
    zmq_ctx_term(s_ctx);
}

/* A connected pair over inproc: *reader gets what *writer sends. */
static void s_pair(const char *name, void **reader, void **writer) {
    char endpoint[64];
    snprintf(endpoint, sizeof(endpoint), "inproc://%s", name);
    *reader = zmq_socket(s_ctx, ZMQ_PAIR);
    *writer = zmq_socket(s_ctx, ZMQ_PAIR);
    cr_assert_eq(zmq_bind(*reader, endpoint), 0);
    cr_assert_eq(zmq_connect(*writer, endpoint), 0);
}

static void s_close(void *a, void *b) {
    int zero = 0;
    zmq_setsockopt(a, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(b, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_close(a);
    zmq_close(b);
}

/* A wait on the one item returns it readable well before its 2 s limit. */
static void s_expect_prompt_wake(kv_poller_t *poller, zmq_pollitem_t *items, const char *what) {
    int64_t start = kv_clock_mono_ms();
    cr_expect_eq(kv_poller_wait(poller, items, 1, 2000), 1, "%s", what);
    cr_expect_lt(kv_clock_mono_ms() - start, 1000, "%s", what);
}

TestSuite(poller, .init = s_setup, .fini = s_teardown);

Test(poller, socket_readable_only_when_a_message_waits) {
    void *reader, *writer;
    s_pair("one", &reader, &writer);
    kv_poller_t *poller = kv_poller_new(4);
    cr_assert_not_null(poller);
    zmq_pollitem_t items[] = {{reader, 0, ZMQ_POLLIN, 0}};
    int64_t start = kv_clock_mono_ms();
    cr_expect_eq(kv_poller_wait(poller, items, 1, 100), 0);
    cr_expect_geq(kv_clock_mono_ms() - start, 90, "returned before the timeout");
    cr_assert_eq(zmq_send(writer, "x", 1, 0), 1);
    cr_expect_eq(kv_poller_wait(poller, items, 1, 1000), 1);
    cr_expect_eq(items[0].revents, ZMQ_POLLIN);
    char byte;
    cr_expect_eq(zmq_recv(reader, &byte, 1, ZMQ_DONTWAIT), 1);
    cr_expect_eq(kv_poller_wait(poller, items, 1, 0), 0);
    cr_expect_eq(items[0].revents, 0);
    kv_poller_destroy(&poller);
    cr_expect_null(poller);
    s_close(reader, writer);
}

/* Only the ZMQ_FD edge can wake a receive-only socket's wait: this checks
 * the registration, including after the items changed to a new socket. */
Test(poller, receive_only_socket_wakes_the_wait_through_epoll) {
    void *reader, *writer;
    s_pair("two", &reader, &writer);
    kv_poller_t *poller = kv_poller_new(4);
    zmq_pollitem_t items[] = {{reader, 0, ZMQ_POLLIN | KV_POLLER_RECV_ONLY, 0}};
    cr_expect_eq(kv_poller_wait(poller, items, 1, 0), 0);
    s_close(reader, writer);
    s_pair("three", &reader, &writer); /* may reuse the old addresses */
    items[0].socket = reader;
    cr_expect_eq(kv_poller_wait(poller, items, 1, 0), 0); /* registers the new one */
    cr_assert_eq(zmq_send(writer, "y", 1, 0), 1);
    s_expect_prompt_wake(poller, items, "the wait slept through the message");
    kv_poller_destroy(&poller);
    s_close(reader, writer);
}

/* A send can take the "messages arrived" command off a socket's mailbox
 * (clearing ZMQ_FD) without reading the messages: a socket we send on must
 * still be seen readable. */
Test(poller, messages_stay_visible_after_sends_on_the_same_socket) {
    void *router = zmq_socket(s_ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(s_ctx, ZMQ_DEALER);
    cr_assert_eq(zmq_bind(router, "inproc://four"), 0);
    cr_assert_eq(zmq_connect(dealer, "inproc://four"), 0);
    kv_poller_t *poller = kv_poller_new(4);
    zmq_pollitem_t items[] = {{dealer, 0, ZMQ_POLLIN, 0}};
    cr_expect_eq(kv_poller_wait(poller, items, 1, 0), 0);
    cr_assert_eq(zmq_send(dealer, "hello", 5, 0), 5);
    char identity[256];
    int ilen = zmq_recv(router, identity, sizeof(identity), 0);
    cr_assert_gt(ilen, 0);
    char body[8];
    cr_assert_eq(zmq_recv(router, body, sizeof(body), 0), 5);
    cr_assert_eq(zmq_send(router, identity, (size_t)ilen, ZMQ_SNDMORE), ilen);
    cr_assert_eq(zmq_send(router, "reply", 5, 0), 5);
    for (int i = 0; i < 5; i++) { /* sends process commands about once a millisecond */
        usleep(2000);
        cr_assert_eq(zmq_send(dealer, "more", 4, 0), 4);
    }
    s_expect_prompt_wake(poller, items, "the reply went unseen");
    kv_poller_destroy(&poller);
    s_close(router, dealer);
}

Test(poller, plain_descriptors_and_sockets_together) {
    void *reader, *writer;
    s_pair("five", &reader, &writer);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    kv_poller_t *poller = kv_poller_new(2);
    zmq_pollitem_t items[] = {{reader, 0, ZMQ_POLLIN, 0}, {NULL, fds[0], ZMQ_POLLIN, 0}};
    cr_expect_eq(kv_poller_wait(poller, items, 2, 0), 0);
    cr_assert_eq(write(fds[1], "z", 1), 1);
    cr_expect_eq(kv_poller_wait(poller, items, 2, 1000), 1);
    cr_expect_eq(items[0].revents, 0);
    cr_expect_eq(items[1].revents, ZMQ_POLLIN);
    zmq_pollitem_t three[3] = {items[0], items[1], items[1]};
    cr_expect_eq(kv_poller_wait(poller, three, 3, 0), -1, "more items than room");
    kv_poller_destroy(&poller);
    close(fds[0]);
    close(fds[1]);
    s_close(reader, writer);
}
