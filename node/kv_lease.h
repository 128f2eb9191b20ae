/*  kv_lease.h: a node's lease, its right to serve as a primary.
 *
 *  Why: a primary cut off from the coordinator (but not from its clients)
 *  must stop serving before the coordinator promotes a replica in its
 *  place, or two primaries answer for one partition and a client reads a
 *  value another primary has already overwritten. The lease gives the
 *  order: the coordinator promotes only once the old primary's lease has
 *  run out, and the primary serves only while its lease holds.
 *
 *  How: every heartbeat carries a number; the coordinator answers it with a
 *  grant (LEASE: that number, its epoch, a duration). The lease then runs
 *  from when WE SENT that heartbeat, on our monotonic clock, for duration
 *  minus margin. The coordinator counts the same lease from when IT
 *  RECEIVED the heartbeat, on its own clock, for duration plus margin. The
 *  send precedes the receipt, so our lease always ends first; the margins
 *  absorb the two clocks' rate difference (ppm in practice) and scheduling.
 *  No wall clock and no clock comparison across machines is involved.
 *
 *  A grant made at epoch E speaks for the coordinator's table E: the
 *  coordinator changes a primary only after the old one's lease ran out,
 *  so a grant made after such a change must not revive the old role. A
 *  grant newer than our table waits until we hold a table at least that
 *  new. A late grant for an old heartbeat is still safe (it counts from
 *  that heartbeat's send time), so it is taken whenever it arrives.
 *
 *  The lease is checked when an answer leaves the primary, not when the
 *  request arrived: a primary frozen mid-request must not answer after it
 *  wakes (kv_lease_valid at send time).
 *
 *  Plain data with no allocation: the node embeds one.
 */
#ifndef KV_LEASE_H
#define KV_LEASE_H

#include <stdint.h>

#define KV_LEASE_RING 64 /* heartbeats remembered (6.4 s at 100 ms) */

typedef struct {
    int enabled;                     /* 0: leases switched off, always valid (tests) */
    int64_t margin_us;               /* taken off every grant */
    uint64_t next_no;                /* number of the next heartbeat */
    uint64_t sent_no[KV_LEASE_RING]; /* heartbeat number in each ring slot */
    int64_t sent_us[KV_LEASE_RING];  /* its send time, mono us */
    int64_t until_us;                /* lease end, mono us; 0 never granted */
    uint64_t held_epoch;             /* grant epoch waiting for our table, 0 none */
    int64_t held_until_us;           /* the end that grant would give */
} kv_lease_t;

/* Initialises a lease (none held yet). margin_ms is taken off every grant;
 * enabled 0 makes kv_lease_valid always true (leases switched off). */
void kv_lease_init(kv_lease_t *self, int enabled, int64_t margin_ms);

/* Records a heartbeat sent at now_us and returns the number it carries. */
uint64_t kv_lease_heartbeat(kv_lease_t *self, int64_t now_us);

/* A grant for heartbeat no, made at the coordinator's epoch grant_epoch,
 * for duration_ms. table_epoch is our table's. Unknown or forgotten
 * heartbeat numbers are ignored. Returns 1 when the lease was extended. */
int kv_lease_grant(kv_lease_t *self, uint64_t no, uint64_t grant_epoch, uint32_t duration_ms,
                   uint64_t table_epoch);

/* We adopted a table: a grant held for it applies now. */
void kv_lease_on_table(kv_lease_t *self, uint64_t table_epoch);

/* True while the lease holds at now_us. */
int kv_lease_valid(const kv_lease_t *self, int64_t now_us);

/* Milliseconds the lease still holds at now_us (0 when it does not; -1
 * when leases are off), for /status and logs. */
int64_t kv_lease_remaining_ms(const kv_lease_t *self, int64_t now_us);

#endif
