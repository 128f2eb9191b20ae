/*  kv_poller.h: zmq_poll's job, at a fraction of its system calls.
 *
 *  zmq_poll over N ZeroMQ sockets makes 2N + 2 system calls on a wait that
 *  sleeps: a first poll() with no timeout, then ZMQ_EVENTS on every socket
 *  (each a poll() on the socket's mailbox when it holds no command), then
 *  the real poll() and the N checks again. Under load a node or gateway
 *  loop waits thousands of times a second, and those calls were a third of
 *  a node's CPU under writes.
 *
 *  kv_poller keeps one epoll set with each socket's ZMQ_FD (and any plain
 *  file descriptor), registered once, and asks ZMQ_EVENTS only of the
 *  sockets that need it:
 *  - a socket reported readable last time (the caller may have left
 *    messages behind: batch limits);
 *  - a socket the caller may send on: a send can process the socket's
 *    pending commands, including "new messages arrived", and so clear
 *    ZMQ_FD without the messages having been read. Every socket is taken
 *    to be such unless its item's events carry KV_POLLER_RECV_ONLY.
 *  Any of them readable: no sleep. Otherwise one epoll_wait; a socket whose
 *  ZMQ_FD fired is reported readable (the caller's receive may then find
 *  nothing, which is harmless).
 *
 *  The contract for the caller: receive from every item reported readable
 *  (until EAGAIN or a batch limit) before waiting again, as with zmq_poll.
 *  Items: ZMQ_POLLIN only (an item without it is ignored). The items array may change between
 * calls; the epoll set follows (rebuilt when the sockets or descriptors differ).
 */
#ifndef KV_POLLER_H
#define KV_POLLER_H

#include <zmq.h>

/* In zmq_pollitem_t.events with ZMQ_POLLIN: we never send on this socket
 * (SUB, a pipe we only read), so its ZMQ_FD alone tells when to look. */
#define KV_POLLER_RECV_ONLY 0x100

typedef struct _kv_poller_t kv_poller_t;

/* A poller for up to max_items items. NULL when out of memory or fds. */
kv_poller_t *kv_poller_new(int max_items);

/* Closes its epoll set, frees it, sets *self_p to NULL. */
void kv_poller_destroy(kv_poller_t **self_p);

/* Waits up to timeout_ms (-1: no limit) for an item to be readable; sets
 * revents like zmq_poll. Returns how many are readable, 0 on timeout, -1
 * on error (errno set; EINTR when a signal came). */
int kv_poller_wait(kv_poller_t *self, zmq_pollitem_t *items, int count, long timeout_ms);

#endif
