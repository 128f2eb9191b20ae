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

#endif
