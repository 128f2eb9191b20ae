/*  kv_actor.c: see kv_actor.h. */
#include "kv_actor.h"

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

void kv_actor_wait_interrupt(void) {
    while (!zsys_interrupted) zclock_sleep(100);
}
