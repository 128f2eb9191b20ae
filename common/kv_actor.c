/*  kv_actor.c: see kv_actor.h. */
#include "kv_actor.h"

#include <signal.h>

static volatile sig_atomic_t s_signal; /* the last SIGINT or SIGTERM, 0 before */

zactor_t *kv_actor_start(zactor_fn *fn, void *args) {
    zactor_t *actor = zactor_new(fn, args);
    if (!actor) return NULL;
    char *report = zstr_recv(actor);
    int ok = report && streq(report, "READY");
    zstr_free(&report);
    if (!ok) zactor_destroy(&actor);
    return actor;
}

void kv_actor_ready(zsock_t *pipe, int ok) {
    zstr_send(pipe, ok ? "READY" : "FAILED");
}

static void s_on_signal(int signal) {
    s_signal = signal;
}

void kv_signals_init(void) {
    zsys_handler_set(NULL); /* czmq's handler would turn SIGTERM into SIGINT */
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = s_on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

/* Polls rather than blocks: the signal may land on any thread, and only a
 * flag is seen by all of them. */
int kv_actor_wait(zactor_t *actor, char **message) {
    while (!s_signal) {
        zmq_pollitem_t item = {actor ? zsock_resolve(actor) : NULL, 0, ZMQ_POLLIN, 0};
        int rc = actor ? zmq_poll(&item, 1, 100) : (zclock_sleep(100), 0);
        if (rc > 0 && (item.revents & ZMQ_POLLIN)) {
            char *text = zstr_recv(actor);
            if (message)
                *message = text;
            else
                zstr_free(&text);
            return 0;
        }
    }
    int signal = s_signal;
    s_signal = 0;
    return signal;
}
