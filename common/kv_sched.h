/*  kv_sched.h: how a data-path process asks the kernel to schedule it.
 *
 *  A request crosses several threads on its way (gateway event loop, the
 *  ZeroMQ I/O threads of gateway and node, the node's actor). With the
 *  default policy every wake-up of one of them preempts whichever is
 *  running, so on a busy core each stage runs for one message and hands
 *  the CPU on: a context switch per message instead of per batch.
 *  SCHED_BATCH removes that wake-up preemption (the woken thread waits for
 *  the running one to block or use its slice; fairness is unchanged), so
 *  each stage drains what queued up meanwhile in one go. On this project's
 *  benchmark (servers sharing one core) it raised /get throughput by a
 *  third and lowered p99 (docs/benchmarks.md). An idle CPU still runs a
 *  woken thread at once, so light loads keep their latency.
 */
#ifndef KV_SCHED_H
#define KV_SCHED_H

/* Puts the calling thread under SCHED_BATCH; threads it creates afterwards
 * inherit it, so call it first in main. Returns 0, or -1 (errno set). */
int kv_sched_batch(void);

/* CPUs the calling thread may run on (its affinity mask), at least 1. */
long kv_sched_cpus(void);

#endif
