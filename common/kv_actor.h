/*  kv_actor.h: start a czmq actor, learn whether it came up, and wait for
 *  the signals that stop a process.
 *
 *  zactor_new returns once the actor signals, but cannot say whether the
 *  actor's set-up (binding its sockets, say) worked. Our actors signal at
 *  once, set up, then report "READY" or "FAILED" on the pipe with
 *  kv_actor_ready; kv_actor_start waits for that report, so a caller gets
 *  either a working actor or NULL, never one that died on start.
 *
 *  Signals: SIGINT stops a process at once; SIGTERM asks it to stop
 *  gracefully (a node drains its partitions first). czmq's own handler
 *  cannot tell the two apart, so kv_signals_init replaces it.
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

/* Installs SIGINT and SIGTERM handlers (call after zsys_init). */
void kv_signals_init(void);

/* Waits until a signal arrives or actor (may be NULL) sends a message.
 * Returns the signal number, or 0 when the actor spoke; *message (when
 * given) then holds its first frame (free with zstr_free). */
int kv_actor_wait(zactor_t *actor, char **message);

#endif
