/*  kv_repl.c: the replication engine (protocol in kv_repl.h). */
#include "kv_repl.h"

#include "kv_clock.h"
#include "kv_limits.h"
#include "kv_log.h"
#include "kv_peers.h"
#include "kv_poller.h"

#define KV_BEACON_MS 100                   /* primary beacon period */
#define KV_SNAPSHOT_RETRY_MS 2000          /* re-ask a snapshot after this silence */
#define KV_WORK_BUDGET_US 5000             /* snapshot work per wake-up: heartbeats go on */
#define KV_SNAPSHOT_CHUNK 2048             /* entries per SNAPSHOT frame */
#define KV_PENDING_EXPIRY_MS 10000         /* forget unconfirmed writes after this */
#define KV_BUFFER_MAX 100000               /* updates buffered during a snapshot */
#define KV_DRAIN_BATCH 4096                /* frames per socket per wake-up */
#define KV_SCAN_MS 20                      /* period of the per-partition housekeeping walk */
#define KV_ACKERS (KV_REPLICATION_MAX + 1) /* replicas + a learner */
#define KV_UPDATE_MAX (KV_MAX_KEY_BYTES + KV_MAX_VALUE_BYTES + 64)

typedef enum { ROLE_NONE, ROLE_PRIMARY, ROLE_REPLICA } s_role_t;

/* One write waiting for replica confirmations. CLEAR shares one group. */
typedef struct _s_group_t {
    zmq_msg_t identity; /* the gateway to answer */
    uint64_t req_id;    /* its request */
    uint32_t waiting;   /* partitions still unconfirmed */
} s_group_t;

typedef struct _s_pending_t {
    struct _s_pending_t *next; /* FIFO by seq */
    uint64_t seq;              /* confirmed once replicas applied this */
    int64_t since;             /* mono ms, for expiry */
    s_group_t *group;          /* the reply it is part of */
} s_pending_t;

/* A snapshot asked of us, served when the loop has time (kv_repl_work). */
typedef struct _s_snap_job_t {
    struct _s_snap_job_t *next;
    zmq_msg_t identity; /* the replica's DEALER */
    uint64_t req_id;    /* its latest request */
    uint32_t partition;
} s_snap_job_t;

/* An update received while a snapshot is on its way. */
typedef struct _s_buffered_t {
    struct _s_buffered_t *next;
    size_t len;
    uint8_t data[];
} s_buffered_t;

typedef struct {
    uint8_t role;                        /* s_role_t */
    uint8_t learner;                     /* replica role held as the table's learner */
    uint8_t live;                        /* replica: snapshot applied, following the stream */
    uint8_t ready;                       /* learner: applied the fenced stream to its end */
    uint8_t fenced;                      /* primary: writes refused, FENCE published */
    uint16_t heir;                       /* primary, fenced: the learner taking over */
    uint16_t primary;                    /* replica: the node we follow */
    uint64_t seq;                        /* primary: last assigned; replica: last applied */
    uint64_t snap_req;                   /* snapshot request in progress, 0 when none */
    uint32_t snap_chunk;                 /* next chunk expected */
    int64_t snap_asked;                  /* mono ms of the request */
    s_buffered_t *buffer, *buffer_tail;  /* updates held during a snapshot */
    uint32_t buffered;                   /* their count */
    s_pending_t *pending, *pending_tail; /* writes awaiting confirmation */
    uint16_t acker[KV_ACKERS];           /* nodes that confirmed something, KV_NO_NODE free */
    uint64_t acked[KV_ACKERS];           /* the highest seq each confirmed */
    uint8_t dirty;                       /* replica: applied something not yet acknowledged */
} s_part_t;

struct _kv_repl_t {
    kv_repl_config_t config; /* settings */
    kv_store_t *store;       /* the data (borrowed) */
    uint32_t partitions;     /* P */
    s_part_t *parts;         /* P entries */
    kv_table_t *table;       /* copy of the current table */
    int self;                /* our index in it, -1 when absent */
    zsock_t *sub;            /* updates and beacons of the primaries we follow */
    kv_peers_t *peers;       /* DEALER to each node: ACK, SNAPSHOT_REQ */
    char subscribed_to[KV_MAX_NODES][KV_ENDPOINT_MAX + 1]; /* SUB connections */
    uint64_t next_req;                                     /* snapshot request ids */
    int64_t next_beacon;                                   /* mono ms */
    int64_t next_scan;    /* mono ms of the next walk over all partitions */
    int reports_dirty;    /* a report changed since the last heartbeat */
    uint32_t *dirty_list; /* partitions with unacknowledged applies */
    uint32_t dirty_count;
    s_snap_job_t *jobs, *jobs_tail; /* snapshots to serve, FIFO */
    int want_peers;                 /* poll the peer sockets: a snapshot may come */
    int items_changed;              /* want_peers changed since kv_repl_poll_items */
};

/* The peer DEALERs only ever receive SNAPSHOT chunks, so they are polled
 * only while some replica waits for one: every socket in the poll set costs
 * a poll() system call per zmq_poll in libzmq, which with the peers in was
 * a third of a node's CPU under writes. */
static void s_want_peers(kv_repl_t *self, int want) {
    if (self->want_peers == want) return;
    self->want_peers = want;
    self->items_changed = 1;
}

/* --- helpers ---------------------------------------------------------------- */

static uint64_t s_epoch(const kv_repl_t *self) {
    return self->table ? self->table->epoch : 0;
}

static int s_usable(const kv_repl_t *self, uint16_t node) {
    if (!self->table || node >= self->table->node_count) return 0;
    uint8_t state = self->table->nodes[node].state;
    return state != KV_NODE_DOWN && state != KV_NODE_LEFT;
}

/* Confirmations a write of this partition needs. */
static uint32_t s_required(const kv_repl_t *self) {
    if (!self->table || self->table->replication < 2) return 0;
    uint32_t cap = self->table->replication - 1;
    return (uint32_t)self->config.write_acks < cap ? (uint32_t)self->config.write_acks : cap;
}

/* The nodes that may confirm writes of partition: replicas and learner. */
static uint32_t s_ackers(const kv_repl_t *self, uint32_t partition, uint16_t *nodes) {
    uint32_t count = 0;
    for (uint32_t slot = 1; slot < self->table->replication; slot++) {
        uint16_t node = kv_table_owner(self->table, partition, slot);
        if (node != KV_NO_NODE && s_usable(self, node)) nodes[count++] = node;
    }
    uint16_t learner = kv_table_learner(self->table, partition);
    for (uint32_t i = 0; i < count; i++)
        if (nodes[i] == learner) return count; /* a replica taking the primary slot: once */
    if (learner != KV_NO_NODE && s_usable(self, learner)) nodes[count++] = learner;
    return count;
}

static void s_topic(uint32_t partition, uint8_t topic[4]) {
    topic[0] = (uint8_t)(partition >> 24);
    topic[1] = (uint8_t)(partition >> 16);
    topic[2] = (uint8_t)(partition >> 8);
    topic[3] = (uint8_t)partition;
}

static void s_subscribe(kv_repl_t *self, uint32_t partition, int on) {
    uint8_t topic[4];
    s_topic(partition, topic);
    zmq_setsockopt(zsock_resolve(self->sub), on ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, topic, 4);
}

static void s_report_changed(kv_repl_t *self) {
    self->reports_dirty = 1;
}

/* --- replies and pending writes ------------------------------------------- */

void kv_repl_reply(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id, kv_status_t status,
                   const char *value, size_t vlen) {
    uint8_t buf[KV_MAX_VALUE_BYTES + 64];
    kv_msg_t reply = {.type = KV_MSG_REPLY, .req_id = req_id, .status = (uint8_t)status};
    reply.epoch = s_epoch(self);
    reply.value = (kv_bytes_t){value, vlen};
    size_t size = kv_msg_encode(&reply, buf, sizeof(buf));
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, identity);
    if (size && zmq_msg_send(&copy, self->config.router, ZMQ_SNDMORE) >= 0)
        zmq_send(self->config.router, buf, size, ZMQ_DONTWAIT);
    zmq_msg_close(&copy);
}

static s_group_t *s_group_new(zmq_msg_t *identity, uint64_t req_id) {
    s_group_t *group = calloc(1, sizeof(*group));
    if (!group) return NULL;
    zmq_msg_init(&group->identity);
    zmq_msg_copy(&group->identity, identity);
    group->req_id = req_id;
    return group;
}

static void s_group_destroy(s_group_t **group_p) {
    zmq_msg_close(&(*group_p)->identity);
    free(*group_p);
    *group_p = NULL;
}

/* One partition of group is confirmed (or abandoned: then no reply). */
static void s_group_done(kv_repl_t *self, s_group_t *group, int confirmed) {
    if (confirmed && group->req_id && group->waiting == 1)
        kv_repl_reply(self, &group->identity, group->req_id, KV_STATUS_OK, NULL, 0);
    if (!confirmed) group->req_id = 0; /* never answer: the gateway times out */
    if (--group->waiting == 0) s_group_destroy(&group);
}

static int s_pending_add(s_part_t *part, uint64_t seq, s_group_t *group) {
    s_pending_t *pending = calloc(1, sizeof(*pending));
    if (!pending) return -1;
    pending->seq = seq;
    pending->since = kv_clock_mono_ms();
    pending->group = group;
    group->waiting++;
    if (part->pending_tail)
        part->pending_tail->next = pending;
    else
        part->pending = pending;
    part->pending_tail = pending;
    return 0;
}

/* Answers the pending writes up to seq (confirmed) or all of them
 * (abandoned, when the partition changes hands: the gateway times out and
 * says the write may or may not have happened, which is the truth). */
static void s_pending_release(kv_repl_t *self, s_part_t *part, uint64_t seq, int confirmed) {
    while (part->pending && (!confirmed || part->pending->seq <= seq)) {
        s_pending_t *pending = part->pending;
        part->pending = pending->next;
        if (!part->pending) part->pending_tail = NULL;
        s_group_done(self, pending->group, confirmed);
        free(pending);
    }
}

/* The highest seq that `required` ackers have all applied. */
static uint64_t s_confirmed_seq(const kv_repl_t *self, uint32_t partition, const s_part_t *part) {
    uint16_t nodes[KV_ACKERS];
    uint32_t count = s_ackers(self, partition, nodes);
    uint32_t required = s_required(self);
    if (required == 0) return part->seq;
    if (count < required) return 0;
    uint64_t seqs[KV_ACKERS] = {0};
    for (uint32_t i = 0; i < count; i++) {
        seqs[i] = 0;
        for (int a = 0; a < KV_ACKERS; a++)
            if (part->acker[a] == nodes[i]) seqs[i] = part->acked[a];
    }
    for (uint32_t i = 1; i < count; i++) /* insertion sort, descending: count <= 6 */
        for (uint32_t j = i; j > 0 && seqs[j] > seqs[j - 1]; j--) {
            uint64_t swap = seqs[j];
            seqs[j] = seqs[j - 1];
            seqs[j - 1] = swap;
        }
    return seqs[required - 1];
}

static void s_record_ack(s_part_t *part, uint16_t node, uint64_t seq) {
    int free_slot = -1;
    for (int a = 0; a < KV_ACKERS; a++) {
        if (part->acker[a] == node) {
            if (seq > part->acked[a]) part->acked[a] = seq;
            return;
        }
        if (part->acker[a] == KV_NO_NODE && free_slot < 0) free_slot = a;
    }
    if (free_slot < 0) free_slot = 0; /* a stale acker: the table changed */
    part->acker[free_slot] = node;
    part->acked[free_slot] = seq;
}

void kv_repl_on_ack(kv_repl_t *self, const kv_msg_t *ack) {
    if (!self->table) return;
    size_t count = ack->items.len / KV_MSG_ITEM_SIZE;
    for (size_t i = 0; i < count; i++) {
        kv_msg_item_t item = kv_msg_item_read(&ack->items, i);
        if (item.partition >= self->partitions) continue;
        s_part_t *part = &self->parts[item.partition];
        if (part->role != ROLE_PRIMARY) continue; /* a late ack for a past role */
        s_record_ack(part, ack->sender, item.seq);
        s_pending_release(self, part, s_confirmed_seq(self, item.partition, part), 1);
    }
}

/* --- primary side --------------------------------------------------------- */

static void s_publish(kv_repl_t *self, uint32_t partition, uint8_t op, uint64_t seq, kv_bytes_t key,
                      kv_bytes_t value) {
    uint8_t topic[4], buf[KV_UPDATE_MAX];
    s_topic(partition, topic);
    kv_msg_t update = {.type = KV_MSG_UPDATE, .partition = partition, .op = op, .seq = seq};
    update.sender = (uint16_t)self->self;
    update.epoch = s_epoch(self);
    update.key = key;
    update.value = value;
    size_t size = kv_msg_encode(&update, buf, sizeof(buf));
    if (!size) return;
    if (zmq_send(self->config.pub, topic, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 4)
        zmq_send(self->config.pub, buf, size, ZMQ_DONTWAIT);
}

/* Enough live ackers for a safe write of partition? */
static int s_can_write(const kv_repl_t *self, uint32_t partition) {
    uint16_t nodes[KV_ACKERS];
    return s_ackers(self, partition, nodes) >= s_required(self);
}

static kv_status_t s_apply_write(kv_repl_t *self, const kv_msg_t *req) {
    if (req->type == KV_MSG_SET) {
        if (kv_store_put(self->store, req->partition, req->key.ptr, req->key.len, req->value.ptr,
                         req->value.len) != 0)
            return KV_STATUS_NO_MEMORY;
        return KV_STATUS_OK;
    }
    return kv_store_delete(self->store, req->partition, req->key.ptr, req->key.len) == 0
               ? KV_STATUS_OK
               : KV_STATUS_NOT_FOUND;
}

void kv_repl_write(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    s_part_t *part = &self->parts[req->partition];
    if (!s_can_write(self, req->partition)) { /* refuse before applying anything */
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_UNAVAILABLE, NULL, 0);
        return;
    }
    kv_status_t status = s_apply_write(self, req);
    if (status != KV_STATUS_OK) { /* nothing changed, nothing to replicate */
        kv_repl_reply(self, identity, req->req_id, status, NULL, 0);
        return;
    }
    uint64_t seq = ++part->seq;
    s_publish(self, req->partition, req->type == KV_MSG_SET ? KV_OP_SET : KV_OP_RM, seq, req->key,
              req->value);
    if (s_required(self) == 0) {
        kv_repl_reply(self, identity, req->req_id, KV_STATUS_OK, NULL, 0);
        return;
    }
    s_group_t *group = s_group_new(identity, req->req_id);
    if (!group || s_pending_add(part, seq, group) != 0) {
        if (group) s_group_destroy(&group);
        return; /* out of memory: no reply, the gateway answers 504 */
    }
}

void kv_repl_clear(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    for (uint32_t p = 0; p < self->partitions; p++) { /* all or nothing */
        if (self->parts[p].role != ROLE_PRIMARY) continue;
        if (self->parts[p].fenced || !s_can_write(self, p)) {
            kv_repl_reply(self, identity, req->req_id,
                          self->parts[p].fenced ? KV_STATUS_MOVED : KV_STATUS_UNAVAILABLE, NULL, 0);
            return;
        }
    }
    s_group_t *group = s_group_new(identity, req->req_id);
    if (!group) return;
    group->waiting = 1; /* held until every partition is queued */
    for (uint32_t p = 0; p < self->partitions; p++) {
        s_part_t *part = &self->parts[p];
        if (part->role != ROLE_PRIMARY) continue;
        kv_store_clear_partition(self->store, p);
        s_publish(self, p, KV_OP_CLEAR, ++part->seq, (kv_bytes_t){NULL, 0}, (kv_bytes_t){NULL, 0});
        if (s_required(self) > 0) s_pending_add(part, part->seq, group);
    }
    s_group_done(self, group, 1);
}

int kv_repl_is_fenced(const kv_repl_t *self, uint32_t partition) {
    return partition < self->partitions && self->parts[partition].fenced;
}

typedef struct {
    kv_repl_t *repl;     /* engine */
    zmq_msg_t *identity; /* the replica's DEALER */
    kv_msg_t msg;        /* SNAPSHOT header being filled */
    uint8_t *entries;    /* encoded entries of the current chunk */
    size_t cap, pos;     /* their buffer */
    int failed;          /* out of memory */
} s_snapshot_t;

static void s_snapshot_send(s_snapshot_t *snap, int more) {
    snap->msg.more = (uint8_t)more;
    snap->msg.entries = (kv_bytes_t){(const char *)snap->entries, snap->pos};
    size_t size = kv_msg_encoded_size(&snap->msg);
    zmq_msg_t frame, copy;
    if (!size || zmq_msg_init_size(&frame, size) != 0) {
        snap->failed = 1;
        return;
    }
    kv_msg_encode(&snap->msg, zmq_msg_data(&frame), size);
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, snap->identity);
    if (zmq_msg_send(&copy, snap->repl->config.router, ZMQ_SNDMORE) < 0 ||
        zmq_msg_send(&frame, snap->repl->config.router, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&frame);
    zmq_msg_close(&copy);
    snap->msg.chunk++;
    snap->msg.count = 0;
    snap->pos = 0;
}

static int s_snapshot_entry(const kv_entry_t *entry, void *arg) {
    s_snapshot_t *snap = arg;
    size_t need = kv_msg_entry_size(kv_entry_klen(entry), kv_entry_vlen(entry));
    if (snap->msg.count >= KV_SNAPSHOT_CHUNK || snap->cap - snap->pos < need)
        s_snapshot_send(snap, 1);
    if (snap->cap - snap->pos < need) {
        size_t cap = snap->cap * 2 + need;
        uint8_t *grown = realloc(snap->entries, cap);
        if (!grown) {
            snap->failed = 1;
            return 1;
        }
        snap->entries = grown;
        snap->cap = cap;
    }
    kv_msg_entry_put(snap->entries, snap->cap, &snap->pos, kv_entry_key(entry),
                     kv_entry_klen(entry), kv_entry_value(entry), kv_entry_vlen(entry));
    snap->msg.count++;
    return snap->failed;
}

/* The whole partition goes out within this call: no write can interleave,
 * so the chunks are the partition at exactly msg.seq. */
static void s_serve_snapshot(kv_repl_t *self, zmq_msg_t *identity, uint64_t req_id,
                             uint32_t partition) {
    s_snapshot_t snap = {self, identity, {.type = KV_MSG_SNAPSHOT}, NULL, 0, 0, 0};
    snap.msg.req_id = req_id;
    snap.msg.partition = partition;
    int primary = partition < self->partitions && self->parts[partition].role == ROLE_PRIMARY;
    snap.msg.status = primary ? KV_STATUS_OK : KV_STATUS_MOVED;
    if (primary) {
        snap.msg.seq = self->parts[partition].seq;
        kv_store_foreach(self->store, partition, s_snapshot_entry, &snap);
    }
    if (snap.failed) {
        snap.msg.status = KV_STATUS_NO_MEMORY;
        snap.msg.count = 0;
        snap.pos = 0;
    }
    s_snapshot_send(&snap, 0);
    free(snap.entries);
}

static int s_same_peer(zmq_msg_t *a, zmq_msg_t *b) {
    return zmq_msg_size(a) == zmq_msg_size(b) &&
           memcmp(zmq_msg_data(a), zmq_msg_data(b), zmq_msg_size(a)) == 0;
}

/* Requests are queued, not served at once: a learner taking many
 * partitions asks for all of them together, and copying them all in one
 * turn of the loop would starve our heartbeats (the coordinator would think
 * us dead). A request repeated while queued (the replica retried) replaces
 * the queued one instead of adding a second copy. */
void kv_repl_on_snapshot_req(kv_repl_t *self, zmq_msg_t *identity, const kv_msg_t *req) {
    for (s_snap_job_t *job = self->jobs; job; job = job->next)
        if (job->partition == req->partition && s_same_peer(&job->identity, identity)) {
            job->req_id = req->req_id;
            return;
        }
    s_snap_job_t *job = calloc(1, sizeof(*job));
    if (!job) return; /* out of memory: the replica asks again after a silence */
    zmq_msg_init(&job->identity);
    zmq_msg_copy(&job->identity, identity);
    job->req_id = req->req_id;
    job->partition = req->partition;
    if (self->jobs_tail)
        self->jobs_tail->next = job;
    else
        self->jobs = job;
    self->jobs_tail = job;
}

static s_snap_job_t *s_job_pop(kv_repl_t *self) {
    s_snap_job_t *job = self->jobs;
    if (!job) return NULL;
    self->jobs = job->next;
    if (!self->jobs) self->jobs_tail = NULL;
    return job;
}

static void s_job_free(s_snap_job_t *job) {
    zmq_msg_close(&job->identity);
    free(job);
}

/* Serves queued snapshots until the budget is spent (one at least). */
static void s_serve_jobs(kv_repl_t *self, int64_t budget_us) {
    int64_t start = kv_clock_mono_us();
    s_snap_job_t *job;
    while ((job = s_job_pop(self)) != NULL) {
        s_serve_snapshot(self, &job->identity, job->req_id, job->partition);
        s_job_free(job);
        if (kv_clock_mono_us() - start >= budget_us) break;
    }
}

int kv_repl_busy(const kv_repl_t *self) {
    return self->jobs != NULL;
}

static void s_beacon(kv_repl_t *self) {
    int64_t now = kv_clock_mono_ms();
    if (now < self->next_beacon || self->self < 0) return;
    self->next_beacon = now + KV_BEACON_MS;
    uint8_t *items = malloc((size_t)self->partitions * KV_MSG_ITEM_SIZE);
    if (!items) return;
    size_t count = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        if (self->parts[p].role != ROLE_PRIMARY) continue;
        kv_msg_item_t item = {p, self->parts[p].seq, self->parts[p].fenced};
        kv_msg_item_write(items, count++, &item);
    }
    kv_msg_t beacon = {.type = KV_MSG_BEACON, .sender = (uint16_t)self->self};
    beacon.epoch = s_epoch(self);
    beacon.items = (kv_bytes_t){(const char *)items, count * KV_MSG_ITEM_SIZE};
    size_t size = kv_msg_encoded_size(&beacon);
    uint8_t *buf = malloc(size);
    uint8_t topic[4];
    s_topic(KV_TOPIC_BEACON, topic);
    if (buf && kv_msg_encode(&beacon, buf, size) == size &&
        zmq_send(self->config.pub, topic, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 4)
        zmq_send(self->config.pub, buf, size, ZMQ_DONTWAIT);
    free(buf);
    free(items);
}

/* --- replica side --------------------------------------------------------- */

static void s_buffer_clear(s_part_t *part) {
    while (part->buffer) {
        s_buffered_t *next = part->buffer->next;
        free(part->buffer);
        part->buffer = next;
    }
    part->buffer_tail = NULL;
    part->buffered = 0;
}

static void s_ask_snapshot(kv_repl_t *self, uint32_t partition) {
    s_part_t *part = &self->parts[partition];
    if (part->live || part->ready) s_report_changed(self);
    part->live = 0;
    part->ready = 0;
    part->snap_req = 0;
    part->snap_asked = kv_clock_mono_ms();
    s_buffer_clear(part);
    if (part->primary == KV_NO_NODE || !s_usable(self, part->primary)) return; /* retried later */
    kv_msg_t req = {.type = KV_MSG_SNAPSHOT_REQ, .partition = partition};
    req.req_id = ++self->next_req;
    req.sender = (uint16_t)self->self;
    uint8_t buf[64];
    size_t size = kv_msg_encode(&req, buf, sizeof(buf));
    if (kv_peers_send(self->peers, part->primary, buf, size) == 0) {
        part->snap_req = req.req_id;
        part->snap_chunk = 0;
        s_want_peers(self, 1);
    }
}

static void s_resync(kv_repl_t *self, uint32_t partition, const char *why) {
    kv_log_info("node %s: partition %u resyncs from node %u at seq %" PRIu64 ": %s",
                self->config.node_id, partition, self->parts[partition].primary,
                self->parts[partition].seq, why);
    s_ask_snapshot(self, partition);
}

static void s_mark_dirty(kv_repl_t *self, uint32_t partition) {
    s_part_t *part = &self->parts[partition];
    if (part->dirty) return;
    part->dirty = 1;
    self->dirty_list[self->dirty_count++] = partition;
}

/* Applies one in-order update to the store. */
static void s_apply_update(kv_repl_t *self, s_part_t *part, const kv_msg_t *update) {
    switch (update->op) {
    case KV_OP_SET:
        if (kv_store_put(self->store, update->partition, update->key.ptr, update->key.len,
                         update->value.ptr, update->value.len) != 0)
            kv_log_error("node %s: out of memory applying partition %u seq %" PRIu64,
                         self->config.node_id, update->partition, update->seq);
        break;
    case KV_OP_RM:
        kv_store_delete(self->store, update->partition, update->key.ptr, update->key.len);
        break;
    case KV_OP_CLEAR:
        kv_store_clear_partition(self->store, update->partition);
        break;
    default:
        break;
    }
    part->seq = update->seq;
}

static void s_on_update(kv_repl_t *self, const kv_msg_t *update) {
    if (update->partition >= self->partitions) return;
    s_part_t *part = &self->parts[update->partition];
    if (part->role != ROLE_REPLICA || update->sender != part->primary)
        return; /* not a partition we follow, or not from its primary: fenced out */
    if (update->op == KV_OP_FENCE) {
        if (part->live && part->seq == update->seq && part->learner && !part->ready) {
            part->ready = 1;
            s_report_changed(self);
        } else if (part->live && part->seq != update->seq)
            s_resync(self, update->partition, "fence mark ahead of us");
        return;
    }
    if (!part->live) return;              /* buffered by the caller while snapshotting */
    if (update->seq <= part->seq) return; /* already applied (snapshot overlap) */
    if (update->seq != part->seq + 1) {
        s_resync(self, update->partition, "gap in the update stream");
        return;
    }
    s_apply_update(self, part, update);
    s_mark_dirty(self, update->partition);
}

static void s_buffer_add(kv_repl_t *self, s_part_t *part, const uint8_t *data, size_t len,
                         uint32_t partition) {
    if (part->buffered >= KV_BUFFER_MAX) { /* the snapshot is too slow: start over */
        s_resync(self, partition, "update buffer full during snapshot");
        return;
    }
    s_buffered_t *item = malloc(sizeof(*item) + len);
    if (!item) return;
    item->next = NULL;
    item->len = len;
    memcpy(item->data, data, len);
    if (part->buffer_tail)
        part->buffer_tail->next = item;
    else
        part->buffer = item;
    part->buffer_tail = item;
    part->buffered++;
}

static void s_on_sub_frame(kv_repl_t *self, const uint8_t *data, size_t len) {
    kv_msg_t msg;
    if (kv_msg_decode(data, len, &msg) != 0) return;
    if (msg.type == KV_MSG_UPDATE && msg.partition < self->partitions) {
        s_part_t *part = &self->parts[msg.partition];
        if (part->role == ROLE_REPLICA && !part->live && part->snap_req &&
            msg.sender == part->primary)
            s_buffer_add(self, part, data, len, msg.partition);
        else
            s_on_update(self, &msg);
        return;
    }
    if (msg.type != KV_MSG_BEACON) return;
    size_t count = msg.items.len / KV_MSG_ITEM_SIZE;
    for (size_t i = 0; i < count; i++) {
        kv_msg_item_t item = kv_msg_item_read(&msg.items, i);
        if (item.partition >= self->partitions) continue;
        s_part_t *part = &self->parts[item.partition];
        if (part->role != ROLE_REPLICA || part->primary != msg.sender || !part->live) continue;
        if (part->seq != item.seq) { /* updates were dropped, or we hold extra ones */
            s_resync(self, item.partition,
                     part->seq < item.seq ? "behind the beacon" : "ahead of the beacon");
            continue;
        }
        if (item.flag && part->learner && !part->ready) {
            part->ready = 1;
            s_report_changed(self);
        }
    }
}

/* Sends one ACK per primary for the partitions applied since the last. */
static void s_flush_acks(kv_repl_t *self) {
    if (self->dirty_count == 0) return;
    uint8_t *items = malloc((size_t)self->dirty_count * KV_MSG_ITEM_SIZE);
    while (items && self->dirty_count > 0) {
        uint16_t primary = self->parts[self->dirty_list[0]].primary;
        size_t count = 0;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < self->dirty_count; i++) {
            uint32_t p = self->dirty_list[i];
            if (self->parts[p].primary != primary) {
                self->dirty_list[kept++] = p;
                continue;
            }
            kv_msg_item_t item = {p, self->parts[p].seq, 0};
            kv_msg_item_write(items, count++, &item);
            self->parts[p].dirty = 0;
        }
        self->dirty_count = kept;
        kv_msg_t ack = {.type = KV_MSG_ACK, .sender = (uint16_t)self->self};
        ack.items = (kv_bytes_t){(const char *)items, count * KV_MSG_ITEM_SIZE};
        size_t size = kv_msg_encoded_size(&ack);
        uint8_t *buf = malloc(size);
        if (buf && kv_msg_encode(&ack, buf, size) == size)
            kv_peers_send(self->peers, primary, buf, size);
        free(buf);
    }
    if (!items) { /* out of memory: the beacon will make them resync if need be */
        for (uint32_t i = 0; i < self->dirty_count; i++) self->parts[self->dirty_list[i]].dirty = 0;
        self->dirty_count = 0;
    }
    free(items);
}

/* Applies the updates buffered during the snapshot, then resumes live. */
static void s_replay_buffer(kv_repl_t *self, uint32_t partition) {
    s_part_t *part = &self->parts[partition];
    s_buffered_t *list = part->buffer;
    part->buffer = part->buffer_tail = NULL;
    part->buffered = 0;
    while (list) {
        s_buffered_t *next = list->next;
        kv_msg_t msg;
        if (part->live && kv_msg_decode(list->data, list->len, &msg) == 0) s_on_update(self, &msg);
        free(list);
        list = next;
    }
}

static void s_on_snapshot(kv_repl_t *self, const kv_msg_t *msg) {
    if (msg->partition >= self->partitions) return;
    s_part_t *part = &self->parts[msg->partition];
    if (part->role != ROLE_REPLICA || part->snap_req != msg->req_id) return; /* stale */
    if (msg->status != KV_STATUS_OK || msg->chunk != part->snap_chunk) {
        part->snap_req = 0; /* asked again on the next tick */
        return;
    }
    if (msg->chunk == 0) kv_store_clear_partition(self->store, msg->partition);
    size_t pos = 0;
    kv_bytes_t key, value;
    while (kv_msg_entry_next(&msg->entries, &pos, &key, &value) == 0)
        kv_store_put(self->store, msg->partition, key.ptr, key.len, value.ptr, value.len);
    part->snap_chunk++;
    part->snap_asked = kv_clock_mono_ms(); /* the retry measures silence, not total time */
    if (msg->more) return;
    part->snap_req = 0;
    part->seq = msg->seq;
    part->live = 1;
    kv_log_debug("node %s: partition %u synced at seq %" PRIu64, self->config.node_id,
                 msg->partition, msg->seq);
    s_report_changed(self);
    s_replay_buffer(self, msg->partition);
    s_mark_dirty(self, msg->partition);
}

static void s_drain_sub(kv_repl_t *self) {
    void *handle = zsock_resolve(self->sub);
    for (int i = 0; i < KV_DRAIN_BATCH; i++) {
        zmq_msg_t topic, body;
        zmq_msg_init(&topic);
        if (zmq_msg_recv(&topic, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&topic);
            break;
        }
        zmq_msg_init(&body);
        if (zmq_msg_more(&topic) && zmq_msg_recv(&body, handle, 0) >= 0 && !zmq_msg_more(&body))
            s_on_sub_frame(self, zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&topic);
    }
}

/* Snapshot chunks are applied within a time budget per wake-up, like they
 * are served: what is left waits in the socket for the next turn. */
static void s_drain_peer(kv_repl_t *self, void *handle) {
    int64_t start = kv_clock_mono_us();
    for (int i = 0; i < KV_DRAIN_BATCH && kv_clock_mono_us() - start < KV_WORK_BUDGET_US; i++) {
        zmq_msg_t frame;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frame);
            return;
        }
        kv_msg_t msg;
        if (kv_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &msg) == 0 &&
            msg.type == KV_MSG_SNAPSHOT)
            s_on_snapshot(self, &msg);
        zmq_msg_close(&frame);
    }
}

int kv_repl_poll_items(kv_repl_t *self, zmq_pollitem_t *items) {
    uint16_t nodes[KV_MAX_NODES];
    self->items_changed = 0;
    items[0] = (zmq_pollitem_t){zsock_resolve(self->sub), 0, ZMQ_POLLIN | KV_POLLER_RECV_ONLY, 0};
    return 1 + (self->want_peers ? kv_peers_poll_items(self->peers, items + 1, nodes) : 0);
}

int kv_repl_items_changed(const kv_repl_t *self) {
    return self->items_changed;
}

void kv_repl_on_readable(kv_repl_t *self, const zmq_pollitem_t *items, int count) {
    if (count > 0 && (items[0].revents & ZMQ_POLLIN)) s_drain_sub(self);
    for (int i = 1; i < count; i++)
        if (items[i].revents & ZMQ_POLLIN) s_drain_peer(self, items[i].socket);
    s_flush_acks(self);
}

/* --- roles ---------------------------------------------------------------- */

static void s_drop(kv_repl_t *self, uint32_t partition) {
    s_part_t *part = &self->parts[partition];
    if (part->role == ROLE_REPLICA) s_subscribe(self, partition, 0);
    /* A fenced primary hands over to its learner only once the learner has
     * applied the whole stream (kv_plan.h): when the table makes that
     * learner primary while we are up, our waiting writes are safe, confirm
     * them. Any other loss of the role (a failover while we were fenced
     * included: we are down in that table, and whoever was promoted may
     * lack them) leaves them unanswered (504: may have happened). */
    int handed_over = part->fenced && part->heir != KV_NO_NODE && self->self >= 0 &&
                      kv_table_owner(self->table, partition, 0) == part->heir &&
                      self->table->nodes[self->self].state != KV_NODE_DOWN;
    s_pending_release(self, part, UINT64_MAX, handed_over);
    s_buffer_clear(part);
    kv_store_clear_partition(self->store, partition);
    memset(part, 0, sizeof(*part));
    for (int a = 0; a < KV_ACKERS; a++) part->acker[a] = KV_NO_NODE;
    part->primary = part->heir = KV_NO_NODE;
}

static void s_become_primary(kv_repl_t *self, uint32_t partition, const kv_table_t *table) {
    s_part_t *part = &self->parts[partition];
    if (part->role == ROLE_REPLICA) {
        s_subscribe(self, partition, 0);
        s_buffer_clear(part);
        kv_log_info("node %s: primary of partition %u at epoch %" PRIu64 ", seq %" PRIu64 "%s",
                    self->config.node_id, partition, table->epoch, part->seq,
                    part->live ? "" : " (was not in sync)");
    }
    if (part->role != ROLE_PRIMARY) {
        for (int a = 0; a < KV_ACKERS; a++) part->acker[a] = KV_NO_NODE;
        part->role = ROLE_PRIMARY;
        part->live = part->learner = part->ready = 0;
        part->snap_req = 0;
        part->primary = (uint16_t)self->self;
        s_report_changed(self);
    }
    int fenced = (kv_table_flags(table, partition) & KV_PART_FENCED) != 0;
    if (fenced && !part->fenced) /* mark the end of our stream for the learner */
        s_publish(self, partition, KV_OP_FENCE, part->seq, (kv_bytes_t){NULL, 0},
                  (kv_bytes_t){NULL, 0});
    part->fenced = (uint8_t)fenced;
    part->heir = fenced ? kv_table_learner(table, partition) : KV_NO_NODE;
}

static void s_become_replica(kv_repl_t *self, uint32_t partition, const kv_table_t *table,
                             int learner) {
    s_part_t *part = &self->parts[partition];
    uint16_t primary = kv_table_owner(table, partition, 0);
    if (part->role == ROLE_PRIMARY) { /* demoted: we may hold unacknowledged writes */
        kv_log_info("node %s: no longer primary of partition %u (epoch %" PRIu64 "), resyncing",
                    self->config.node_id, partition, table->epoch);
        s_drop(self, partition);
    }
    if (part->role != ROLE_REPLICA) {
        part->role = ROLE_REPLICA;
        part->live = 0;
        s_subscribe(self, partition, 1);
        s_report_changed(self);
    }
    if ((uint8_t)learner != part->learner || (part->ready && !learner)) {
        part->learner = (uint8_t)learner;
        part->ready = 0;
        s_report_changed(self);
    }
    if (part->primary != primary) {
        part->primary = primary;
        part->snap_req = 0; /* a request to the old primary will never be answered */
        if (!part->live) s_buffer_clear(part);
    }
    if (!part->live && !part->snap_req) s_ask_snapshot(self, partition);
}

static void s_connect_subs(kv_repl_t *self, const kv_table_t *table) {
    for (uint32_t i = 0; i < table->node_count && i < KV_MAX_NODES; i++) {
        const char *endpoint = table->nodes[i].pub_endpoint;
        if ((int)i == self->self || !*endpoint || streq(self->subscribed_to[i], endpoint)) continue;
        if (self->subscribed_to[i][0]) zsock_disconnect(self->sub, "%s", self->subscribed_to[i]);
        if (zsock_connect(self->sub, "%s", endpoint) == 0)
            snprintf(self->subscribed_to[i], sizeof(self->subscribed_to[i]), "%s", endpoint);
    }
}

int kv_repl_on_table(kv_repl_t *self, const kv_table_t *table, int node) {
    kv_table_t *copy = kv_table_dup(table);
    if (!copy) return 0;
    kv_table_destroy(&self->table);
    self->table = copy;
    self->self = node;
    s_connect_subs(self, table);
    int changed = kv_peers_update(self->peers, table);
    for (uint32_t p = 0; p < self->partitions; p++) {
        int role = node < 0 ? -1 : kv_table_role(table, p, (uint16_t)node);
        if (role == 0)
            s_become_primary(self, p, table);
        else if (role > 0) /* a replica may also be the learner: taking the primary slot */
            s_become_replica(self, p, table, kv_table_learner(table, p) == (uint16_t)node);
        else if (self->parts[p].role != ROLE_NONE) {
            s_drop(self, p);
            s_report_changed(self);
        }
    }
    return changed;
}

/* --- ticks, reports, life cycle -------------------------------------------- */

static void s_expire_pending(kv_repl_t *self, s_part_t *part, int64_t now) {
    while (part->pending && now - part->pending->since > KV_PENDING_EXPIRY_MS) {
        s_pending_t *pending = part->pending;
        part->pending = pending->next;
        if (!part->pending) part->pending_tail = NULL;
        s_group_done(self, pending->group, 0);
        free(pending);
    }
}

void kv_repl_tick(kv_repl_t *self) {
    int64_t now = kv_clock_mono_ms();
    s_beacon(self);
    s_flush_acks(self);
    s_serve_jobs(self, KV_WORK_BUDGET_US);
    if (now < self->next_scan) return; /* the walk below costs O(P): not every wake-up */
    self->next_scan = now + KV_SCAN_MS;
    int syncing = 0;
    for (uint32_t p = 0; p < self->partitions; p++) {
        s_part_t *part = &self->parts[p];
        if (part->role == ROLE_PRIMARY) s_expire_pending(self, part, now);
        if (part->role != ROLE_REPLICA || part->live) continue;
        syncing = 1;
        int64_t wait = part->snap_req ? KV_SNAPSHOT_RETRY_MS : KV_SCAN_MS;
        if (now - part->snap_asked >= wait) s_ask_snapshot(self, p);
    }
    if (!syncing && self->want_peers) { /* in sync: what still comes is stale, drop it */
        zmq_pollitem_t items[KV_MAX_NODES];
        uint16_t nodes[KV_MAX_NODES];
        int count = kv_peers_poll_items(self->peers, items, nodes);
        for (int i = 0; i < count; i++) s_drain_peer(self, items[i].socket);
        s_want_peers(self, 0);
    }
}

uint8_t *kv_repl_reports(kv_repl_t *self, size_t *len) {
    self->reports_dirty = 0;
    uint8_t *blob = malloc((size_t)self->partitions * KV_MSG_REPORT_SIZE + 1);
    size_t count = 0;
    for (uint32_t p = 0; blob && p < self->partitions; p++) {
        const s_part_t *part = &self->parts[p];
        if (part->role == ROLE_NONE) continue;
        kv_msg_report_t report = {p, 0, 0, part->seq};
        if (part->role == ROLE_REPLICA) {
            report.role = part->learner ? KV_ROLE_LEARNER : 1;
            report.state =
                (uint8_t)((part->live ? KV_REPORT_LIVE : 0) | (part->ready ? KV_REPORT_READY : 0));
        }
        kv_msg_report_write(blob, count++, &report);
    }
    *len = count * KV_MSG_REPORT_SIZE;
    return blob;
}

int kv_repl_reports_dirty(const kv_repl_t *self) {
    return self->reports_dirty;
}

kv_repl_t *kv_repl_new(const kv_repl_config_t *config, kv_store_t *store, uint32_t partitions) {
    kv_repl_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->config = *config;
    self->store = store;
    self->partitions = partitions;
    self->self = -1;
    self->parts = calloc(partitions, sizeof(*self->parts));
    self->dirty_list = calloc(partitions, sizeof(*self->dirty_list));
    self->sub = zsock_new(ZMQ_SUB);
    self->peers = kv_peers_new(KV_NO_NODE);
    if (!self->parts || !self->dirty_list || !self->sub || !self->peers) {
        kv_repl_destroy(&self);
        return NULL;
    }
    for (uint32_t p = 0; p < partitions; p++) {
        self->parts[p].primary = self->parts[p].heir = KV_NO_NODE;
        for (int a = 0; a < KV_ACKERS; a++) self->parts[p].acker[a] = KV_NO_NODE;
    }
    kv_peers_set_heartbeats(self->sub);
    uint8_t topic[4];
    s_topic(KV_TOPIC_BEACON, topic);
    zmq_setsockopt(zsock_resolve(self->sub), ZMQ_SUBSCRIBE, topic, 4);
    return self;
}

void kv_repl_destroy(kv_repl_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_repl_t *self = *self_p;
    for (uint32_t p = 0; self->parts && p < self->partitions; p++) {
        s_pending_release(self, &self->parts[p], 0, 0);
        s_buffer_clear(&self->parts[p]);
    }
    s_snap_job_t *job;
    while ((job = s_job_pop(self)) != NULL) s_job_free(job);
    free(self->parts);
    free(self->dirty_list);
    zsock_destroy(&self->sub);
    kv_peers_destroy(&self->peers);
    kv_table_destroy(&self->table);
    free(self);
    *self_p = NULL;
}
