/*  kv_poller.c: epoll over ZeroMQ sockets' ZMQ_FDs (see kv_poller.h). */
#include "kv_poller.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct {
    void *socket; /* ZeroMQ socket, or NULL */
    int fd;       /* plain descriptor, or the socket's ZMQ_FD */
    int hot;      /* reported readable last time: check it again */
    short events; /* as given: ZMQ_POLLIN and KV_POLLER_RECV_ONLY */
} s_slot_t;

struct _kv_poller_t {
    int epoll_fd;               /* one registration per slot, data = slot index */
    int max_items;              /* room in slots */
    int count;                  /* slots registered */
    s_slot_t *slots;            /* mirror of the last items array */
    struct epoll_event *events; /* epoll_wait output */
};

kv_poller_t *kv_poller_new(int max_items) {
    kv_poller_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->max_items = max_items;
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    self->slots = calloc((size_t)max_items, sizeof(*self->slots));
    self->events = calloc((size_t)max_items, sizeof(*self->events));
    if (self->epoll_fd < 0 || !self->slots || !self->events) kv_poller_destroy(&self);
    return self;
}

void kv_poller_destroy(kv_poller_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_poller_t *self = *self_p;
    if (self->epoll_fd >= 0) close(self->epoll_fd);
    free(self->slots);
    free(self->events);
    free(self);
    *self_p = NULL;
}

/* The descriptor to watch for an item: a socket's ZMQ_FD (a plain read of
 * a field in libzmq, no system call), or the item's fd. -1 on error. */
static int s_fd_of(const zmq_pollitem_t *item) {
    if (!item->socket) return item->fd;
    int fd = -1;
    size_t size = sizeof(fd);
    return zmq_getsockopt(item->socket, ZMQ_FD, &fd, &size) == 0 ? fd : -1;
}

/* The items are the ones registered. Descriptors are compared too: a
 * socket destroyed and another created may share an address. */
static int s_same(const kv_poller_t *self, const zmq_pollitem_t *items, int count) {
    if (count != self->count) return 0;
    for (int i = 0; i < count; i++) {
        const s_slot_t *slot = &self->slots[i];
        if (slot->socket != items[i].socket || slot->events != items[i].events ||
            slot->fd != s_fd_of(&items[i]))
            return 0;
    }
    return 1;
}

/* Registers the items afresh: they changed since the last wait (rare: a
 * new routing table, a peer added). */
static int s_rebuild(kv_poller_t *self, const zmq_pollitem_t *items, int count) {
    for (int i = 0; i < self->count; i++) /* a closed fd left the set by itself */
        if (self->slots[i].events & ZMQ_POLLIN)
            epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, self->slots[i].fd, NULL);
    self->count = 0;
    for (int i = 0; i < count; i++) {
        s_slot_t *slot = &self->slots[i];
        slot->socket = items[i].socket;
        slot->events = items[i].events;
        slot->hot = 1; /* unknown state: look at it first */
        slot->fd = s_fd_of(&items[i]);
        if (slot->fd < 0) return -1;
        self->count = i + 1;
        if (!(slot->events & ZMQ_POLLIN)) continue; /* not watched for now */
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, slot->fd, &event) != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* ZMQ_EVENTS says readable now. */
static int s_readable(void *socket) {
    int events = 0;
    size_t size = sizeof(events);
    return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
}

static int s_collect(kv_poller_t *self, zmq_pollitem_t *items, int fired) {
    int ready = 0;
    for (int e = 0; e < fired; e++) {
        uint32_t i = self->events[e].data.u32;
        if ((int)i < self->count && !items[i].revents) items[i].revents = ZMQ_POLLIN;
    }
    for (int i = 0; i < self->count; i++) {
        self->slots[i].hot = items[i].revents != 0;
        ready += self->slots[i].hot;
    }
    return ready;
}

int kv_poller_wait(kv_poller_t *self, zmq_pollitem_t *items, int count, long timeout_ms) {
    if (count > self->max_items) {
        errno = EINVAL;
        return -1;
    }
    if (!s_same(self, items, count) && s_rebuild(self, items, count) != 0) {
        self->count = 0; /* rebuilt from scratch next time */
        return -1;
    }
    int ready = 0;
    for (int i = 0; i < count; i++) {
        items[i].revents = 0;
        const s_slot_t *slot = &self->slots[i];
        int look = slot->socket && (slot->events & ZMQ_POLLIN) &&
                   (slot->hot || !(slot->events & KV_POLLER_RECV_ONLY));
        if (look && s_readable(slot->socket)) {
            items[i].revents = ZMQ_POLLIN;
            ready++;
        }
    }
    int wait = ready ? 0 : (timeout_ms < 0 ? -1 : (int)timeout_ms);
    int fired = epoll_wait(self->epoll_fd, self->events, self->max_items, wait);
    if (fired < 0) {
        if (errno != EINTR || !ready) return -1;
        fired = 0;
    }
    return s_collect(self, items, fired);
}
