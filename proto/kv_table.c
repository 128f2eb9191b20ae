/*  kv_table.c: see kv_table.h. */
#include "kv_table.h"

#include <stdlib.h>
#include <string.h>

#include "kv_wire.h"

#define KV_TABLE_VERSION 2

struct kv_table_s {
    uint64_t epoch;         /* bumped on every change */
    uint32_t partitions;    /* P, fixed for the cluster's life */
    uint32_t replication;   /* R: owner slots per partition */
    uint32_t node_count;    /* entries used in nodes */
    kv_table_node_t *nodes; /* KV_MAX_NODES entries */
    uint16_t *owners;       /* partitions x replication node indexes */
    uint16_t *learners;     /* per partition: node copying it, or KV_NO_NODE */
    uint8_t *flags;         /* per partition: KV_PART_* */
};

kv_table_t *kv_table_new(uint32_t partitions, uint32_t replication) {
    if (partitions == 0 || partitions > KV_PARTITIONS_MAX) return NULL;
    if (replication == 0 || replication > KV_REPLICATION_MAX) return NULL;
    kv_table_t *self = calloc(1, sizeof(*self));
    if (!self) return NULL;
    self->partitions = partitions;
    self->replication = replication;
    self->nodes = calloc(KV_MAX_NODES, sizeof(*self->nodes));
    self->owners = malloc((size_t)partitions * replication * sizeof(*self->owners));
    self->learners = malloc((size_t)partitions * sizeof(*self->learners));
    self->flags = calloc(partitions, sizeof(*self->flags));
    if (!self->nodes || !self->owners || !self->learners || !self->flags) {
        kv_table_destroy(&self);
        return NULL;
    }
    memset(self->owners, 0xFF, (size_t)partitions * replication * sizeof(*self->owners));
    memset(self->learners, 0xFF, (size_t)partitions * sizeof(*self->learners));
    return self;
}

void kv_table_destroy(kv_table_t **self_p) {
    if (!self_p || !*self_p) return;
    kv_table_t *self = *self_p;
    free(self->nodes);
    free(self->owners);
    free(self->learners);
    free(self->flags);
    free(self);
    *self_p = NULL;
}

kv_table_t *kv_table_dup(const kv_table_t *self) {
    kv_table_t *copy = kv_table_new(self->partitions, self->replication);
    if (!copy) return NULL;
    copy->epoch = self->epoch;
    copy->node_count = self->node_count;
    memcpy(copy->nodes, self->nodes, KV_MAX_NODES * sizeof(*self->nodes));
    memcpy(copy->owners, self->owners,
           (size_t)self->partitions * self->replication * sizeof(*self->owners));
    memcpy(copy->learners, self->learners, (size_t)self->partitions * sizeof(*self->learners));
    memcpy(copy->flags, self->flags, (size_t)self->partitions * sizeof(*self->flags));
    return copy;
}

int kv_table_find(const kv_table_t *self, const char *id) {
    for (uint32_t i = 0; i < self->node_count; i++)
        if (strcmp(self->nodes[i].id, id) == 0) return (int)i;
    return -1;
}

int kv_table_upsert(kv_table_t *self, const char *id, const char *endpoint,
                    const char *pub_endpoint) {
    size_t id_len = strlen(id), endpoint_len = strlen(endpoint), pub_len = strlen(pub_endpoint);
    if (!id_len || id_len > KV_NODE_ID_MAX || endpoint_len > KV_ENDPOINT_MAX) return -1;
    if (pub_len > KV_ENDPOINT_MAX) return -1;
    int index = kv_table_find(self, id);
    if (index < 0) {
        if (self->node_count >= KV_MAX_NODES) return -1; /* full */
        index = (int)self->node_count++;
        kv_table_node_t *node = &self->nodes[index];
        memset(node, 0, sizeof(*node));
        memcpy(node->id, id, id_len + 1);
        node->state = KV_NODE_JOINING;
    }
    kv_table_node_t *node = &self->nodes[index];
    memcpy(node->endpoint, endpoint, endpoint_len + 1);
    memcpy(node->pub_endpoint, pub_endpoint, pub_len + 1);
    return index;
}

uint64_t kv_table_epoch(const kv_table_t *self) {
    return self->epoch;
}

void kv_table_set_epoch(kv_table_t *self, uint64_t epoch) {
    self->epoch = epoch;
}

uint32_t kv_table_partitions(const kv_table_t *self) {
    return self->partitions;
}

uint32_t kv_table_replication(const kv_table_t *self) {
    return self->replication;
}

uint32_t kv_table_node_count(const kv_table_t *self) {
    return self->node_count;
}

const kv_table_node_t *kv_table_node(const kv_table_t *self, uint32_t index) {
    return index < self->node_count ? &self->nodes[index] : NULL;
}

uint8_t kv_table_node_state(const kv_table_t *self, uint32_t index) {
    return index < self->node_count ? self->nodes[index].state : (uint8_t)KV_NODE_LEFT;
}

int kv_table_set_node_state(kv_table_t *self, uint32_t index, int state) {
    if (index >= self->node_count || state < KV_NODE_JOINING || state > KV_NODE_LEFT) return -1;
    self->nodes[index].state = (uint8_t)state;
    return 0;
}

uint16_t kv_table_owner(const kv_table_t *self, uint32_t partition, uint32_t slot) {
    if (partition >= self->partitions || slot >= self->replication) return KV_NO_NODE;
    return self->owners[(size_t)partition * self->replication + slot];
}

void kv_table_set_owner(kv_table_t *self, uint32_t partition, uint32_t slot, uint16_t node) {
    if (partition >= self->partitions || slot >= self->replication) return;
    self->owners[(size_t)partition * self->replication + slot] = node;
}

uint16_t kv_table_learner(const kv_table_t *self, uint32_t partition) {
    return partition < self->partitions ? self->learners[partition] : KV_NO_NODE;
}

void kv_table_set_learner(kv_table_t *self, uint32_t partition, uint16_t node) {
    if (partition < self->partitions) self->learners[partition] = node;
}

uint8_t kv_table_flags(const kv_table_t *self, uint32_t partition) {
    return partition < self->partitions ? self->flags[partition] : 0;
}

void kv_table_set_flags(kv_table_t *self, uint32_t partition, uint8_t flags) {
    if (partition < self->partitions) self->flags[partition] = flags;
}

int kv_table_role(const kv_table_t *self, uint32_t partition, uint16_t node) {
    if (partition >= self->partitions || node == KV_NO_NODE) return -1;
    for (uint32_t slot = 0; slot < self->replication; slot++)
        if (kv_table_owner(self, partition, slot) == node) return (int)slot;
    return self->learners[partition] == node ? (int)self->replication : -1;
}

static uint32_t s_count_slots(const kv_table_t *self, uint16_t node, uint32_t first,
                              uint32_t last) {
    uint32_t count = 0;
    for (uint32_t p = 0; p < self->partitions; p++)
        for (uint32_t slot = first; slot < last; slot++)
            count += kv_table_owner(self, p, slot) == node;
    return count;
}

uint32_t kv_table_count_primaries(const kv_table_t *self, uint16_t node) {
    return s_count_slots(self, node, 0, 1);
}

uint32_t kv_table_count_replicas(const kv_table_t *self, uint16_t node) {
    return s_count_slots(self, node, 1, self->replication);
}

int kv_table_healthy(const kv_table_t *self) {
    for (uint32_t p = 0; p < self->partitions; p++) {
        uint16_t primary = kv_table_owner(self, p, 0);
        if (primary >= self->node_count) return 0; /* unassigned */
        if (self->nodes[primary].state != KV_NODE_ACTIVE) return 0;
    }
    return 1;
}

static size_t s_encode(const kv_table_t *self, uint8_t *buf, size_t cap) {
    kv_writer_t w = {buf, cap, 0, 0};
    kv_wire_put_uint(&w, KV_TABLE_VERSION, 1);
    kv_wire_put_uint(&w, self->epoch, 8);
    kv_wire_put_uint(&w, self->partitions, 4);
    kv_wire_put_uint(&w, self->replication, 1);
    kv_wire_put_uint(&w, self->node_count, 2);
    for (uint32_t i = 0; i < self->node_count; i++) {
        const kv_table_node_t *node = &self->nodes[i];
        kv_wire_put_str(&w, node->id, strlen(node->id), 1);
        kv_wire_put_str(&w, node->endpoint, strlen(node->endpoint), 2);
        kv_wire_put_str(&w, node->pub_endpoint, strlen(node->pub_endpoint), 2);
        kv_wire_put_uint(&w, node->state, 1);
    }
    for (uint32_t p = 0; p < self->partitions; p++) {
        for (uint32_t slot = 0; slot < self->replication; slot++)
            kv_wire_put_uint(&w, kv_table_owner(self, p, slot), 2);
        kv_wire_put_uint(&w, self->learners[p], 2);
        kv_wire_put_uint(&w, self->flags[p], 1);
    }
    return w.failed ? 0 : w.pos;
}

size_t kv_table_encoded_size(const kv_table_t *self) {
    return s_encode(self, NULL, 0);
}

size_t kv_table_encode(const kv_table_t *self, uint8_t *buf, size_t cap) {
    return buf ? s_encode(self, buf, cap) : 0;
}

/* Copies a string field into a fixed buffer of cap bytes plus NUL. */
static void s_get_text(kv_reader_t *r, size_t width, char *dest, size_t cap) {
    size_t len;
    const char *text = kv_wire_get_str(r, width, &len);
    if (len > cap || (text && memchr(text, '\0', len))) {
        r->failed = 1;
        return;
    }
    if (text) memcpy(dest, text, len);
    dest[len] = '\0';
}

static int s_decode_nodes(kv_reader_t *r, kv_table_t *self, uint32_t count) {
    for (uint32_t i = 0; i < count && !r->failed; i++) {
        kv_table_node_t *node = &self->nodes[i];
        s_get_text(r, 1, node->id, KV_NODE_ID_MAX);
        s_get_text(r, 2, node->endpoint, KV_ENDPOINT_MAX);
        s_get_text(r, 2, node->pub_endpoint, KV_ENDPOINT_MAX);
        node->state = (uint8_t)kv_wire_get_uint(r, 1);
        if (node->state > KV_NODE_LEFT || !node->id[0]) r->failed = 1;
    }
    self->node_count = count;
    return r->failed ? -1 : 0;
}

static uint16_t s_get_node_index(kv_reader_t *r, const kv_table_t *self) {
    uint16_t node = (uint16_t)kv_wire_get_uint(r, 2);
    if (node != KV_NO_NODE && node >= self->node_count) r->failed = 1;
    return node;
}

static int s_decode_owners(kv_reader_t *r, kv_table_t *self) {
    for (uint32_t p = 0; p < self->partitions && !r->failed; p++) {
        for (uint32_t slot = 0; slot < self->replication; slot++)
            kv_table_set_owner(self, p, slot, s_get_node_index(r, self));
        self->learners[p] = s_get_node_index(r, self);
        self->flags[p] = (uint8_t)kv_wire_get_uint(r, 1);
        if (self->flags[p] & ~KV_PART_FLAGS_ALL) r->failed = 1;
    }
    return r->failed ? -1 : 0;
}

kv_table_t *kv_table_decode(const uint8_t *buf, size_t len) {
    if (!buf) return NULL;
    kv_reader_t r = {buf, len, 0, 0};
    uint64_t version = kv_wire_get_uint(&r, 1);
    uint64_t epoch = kv_wire_get_uint(&r, 8);
    uint32_t partitions = (uint32_t)kv_wire_get_uint(&r, 4);
    uint32_t replication = (uint32_t)kv_wire_get_uint(&r, 1);
    uint32_t count = (uint32_t)kv_wire_get_uint(&r, 2);
    if (r.failed || version != KV_TABLE_VERSION || count > KV_MAX_NODES) return NULL;
    /* Reject a size claim the frame cannot hold before allocating for it. */
    if ((size_t)partitions * (replication * 2 + 3) > len) return NULL;
    kv_table_t *self = kv_table_new(partitions, replication);
    if (!self) return NULL;
    self->epoch = epoch;
    if (s_decode_nodes(&r, self, count) != 0 || s_decode_owners(&r, self) != 0 || r.pos != len)
        kv_table_destroy(&self);
    return self;
}

const char *kv_node_state_name(int state) {
    static const char *const names[] = {"joining", "active", "leaving", "down", "left"};
    if (state < 0 || state > KV_NODE_LEFT) return "unknown";
    return names[state];
}
