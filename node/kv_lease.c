/*  kv_lease.c: the node side of primary leases (see kv_lease.h). */
#include "kv_lease.h"

#include <string.h>

void kv_lease_init(kv_lease_t *self, int enabled, int64_t margin_ms) {
    memset(self, 0, sizeof(*self));
    self->enabled = enabled;
    self->margin_us = margin_ms * 1000;
    self->next_no = 1; /* 0 never names a heartbeat */
}

uint64_t kv_lease_heartbeat(kv_lease_t *self, int64_t now_us) {
    uint64_t no = self->next_no++;
    self->sent_no[no % KV_LEASE_RING] = no;
    self->sent_us[no % KV_LEASE_RING] = now_us;
    return no;
}

static void s_extend(kv_lease_t *self, int64_t until_us) {
    if (until_us > self->until_us) self->until_us = until_us;
}

int kv_lease_grant(kv_lease_t *self, uint64_t no, uint64_t grant_epoch, uint32_t duration_ms,
                   uint64_t table_epoch) {
    if (no == 0 || self->sent_no[no % KV_LEASE_RING] != no) return 0; /* not ours, or too old */
    int64_t until =
        self->sent_us[no % KV_LEASE_RING] + (int64_t)duration_ms * 1000 - self->margin_us;
    if (grant_epoch > table_epoch) { /* speaks for a table we do not have yet */
        if (grant_epoch > self->held_epoch ||
            (grant_epoch == self->held_epoch && until > self->held_until_us)) {
            self->held_epoch = grant_epoch;
            self->held_until_us = until;
        }
        return 0;
    }
    int64_t before = self->until_us;
    s_extend(self, until);
    return self->until_us > before;
}

void kv_lease_on_table(kv_lease_t *self, uint64_t table_epoch) {
    if (!self->held_epoch || self->held_epoch > table_epoch) return;
    s_extend(self, self->held_until_us);
    self->held_epoch = 0;
    self->held_until_us = 0;
}

int kv_lease_valid(const kv_lease_t *self, int64_t now_us) {
    return !self->enabled || now_us < self->until_us;
}

int64_t kv_lease_remaining_ms(const kv_lease_t *self, int64_t now_us) {
    if (!self->enabled) return -1;
    return now_us < self->until_us ? (self->until_us - now_us + 999) / 1000 : 0;
}
