/*  kv_clock.h: monotonic clocks for timeouts and heartbeats.
 *
 *  Deadlines use CLOCK_MONOTONIC so a wall-clock jump can never fire or
 *  suppress a failure detection.
 */
#ifndef KV_CLOCK_H
#define KV_CLOCK_H

#include <stdint.h>

/* Milliseconds since an arbitrary fixed point. */
int64_t kv_clock_mono_ms(void);

/* Microseconds since the same point. */
int64_t kv_clock_mono_us(void);

/* Wall-clock milliseconds since the epoch: only for deadlines that travel
 * between nodes (a transaction intent's), where a monotonic clock means
 * nothing; the nodes' clocks are assumed synchronised (NTP) to well within
 * such a deadline. */
int64_t kv_clock_wall_ms(void);

#endif
