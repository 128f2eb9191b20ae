/*  kv_actor.h: start a czmq actor and learn whether it came up.
 *
 *  zactor_new returns once the actor signals, but cannot say whether the
 *  actor's set-up (binding its sockets, say) worked. Our actors signal at
 *  once, set up, then report "READY" or "FAILED" on the pipe with
 *  kv_actor_ready; kv_actor_start waits for that report, so a caller gets
 *  either a working actor or NULL, never one that died on start.
 */
#ifndef KV_ACTOR_H
#define KV_ACTOR_H

#include <czmq.h>

/* Starts fn(pipe, args) and waits for its report. Returns the actor, or
 * NULL when it reported failure (it has then been destroyed). */
zactor_t *kv_actor_start(zactor_fn *fn, void *args);

/* Called by the actor once after zsock_signal(pipe, 0): ok is 1 when the
 * actor is ready to serve, 0 when it failed and will return. */
void kv_actor_ready(zsock_t *pipe, int ok);

/* Blocks the calling (main) thread until SIGINT or SIGTERM. It polls
 * zsys_interrupted instead of waiting on a socket because the signal may
 * land on any thread, and only a flag is seen by all of them. */
void kv_actor_wait_interrupt(void);

#endif
