/*  kv_intents.c: a node's transaction intents (see kv_intents.h).
 *
 *  One czmq hash over "PPPPPPPP" (the partition, 8 hex digits) followed by
 *  the key: keys hold no NUL, so the pair is a C string. Every read of the
 *  node asks whether its key holds an intent; with none (nearly always)
 *  that is one size check.
 */
#include "kv_intents.h"

#include <czmq.h>

#include "kv_limits.h"

#define S_NAME_MAX (8 + KV_MAX_KEY_BYTES + 1)

/* One intent with its own copy of the value and of its name. */
typedef struct {
    kv_intent_t intent;
    uint32_t partition;
    size_t klen;
    char *name;  /* the hash key: partition then key */
    char data[]; /* the value */
} s_item_t;

struct _kv_intents_t {
    zhashx_t *items; /* name -> s_item_t, owned */
};

static void s_item_destroy(void **item_p) {
    s_item_t *item = *item_p;
    if (!item) return;
    free(item->name);
    free(item);
    *item_p = NULL;
}

/* Writes the hash key of (partition, key) into name; -1 when key is empty,
 * too long or holds a NUL. */
static int s_name(char name[S_NAME_MAX], uint32_t partition, const char *key, size_t klen) {
    if (klen == 0 || klen > KV_MAX_KEY_BYTES || memchr(key, '\0', klen)) return -1;
    snprintf(name, 9, "%08x", partition);
    memcpy(name + 8, key, klen);
    name[8 + klen] = '\0';
    return 0;
}

kv_intents_t *kv_intents_new(void) {
    kv_intents_t *self = calloc(1, sizeof(*self));
    if (self) self->items = zhashx_new();
    if (!self || !self->items) {
        free(self);
        return NULL;
    }
    zhashx_set_destructor(self->items, s_item_destroy);
    return self;
}

void kv_intents_destroy(kv_intents_t **self_p) {
    if (!self_p || !*self_p) return;
    zhashx_destroy(&(*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

int kv_intents_put(kv_intents_t *self, uint32_t partition, const char *key, size_t klen,
                   const kv_intent_t *intent) {
    char name[S_NAME_MAX];
    if (s_name(name, partition, key, klen) != 0) return -1;
    const s_item_t *held = zhashx_lookup(self->items, name);
    if (held && held->intent.txid != intent->txid) return 1; /* locked by another */
    size_t vlen = intent->kind == KV_INTENT_SET ? intent->vlen : 0;
    s_item_t *item = calloc(1, sizeof(*item) + vlen);
    char *copy = item ? strdup(name) : NULL;
    if (!copy) {
        free(item);
        return -1;
    }
    item->intent = *intent;
    item->intent.vlen = vlen;
    if (vlen) memcpy(item->data, intent->value, vlen);
    item->intent.value = item->data;
    item->partition = partition;
    item->klen = klen;
    item->name = copy;
    zhashx_update(self->items, name, item); /* frees the one it replaces */
    return 0;
}

const kv_intent_t *kv_intents_get(const kv_intents_t *self, uint32_t partition, const char *key,
                                  size_t klen) {
    char name[S_NAME_MAX];
    if (zhashx_size(self->items) == 0 || s_name(name, partition, key, klen) != 0) return NULL;
    const s_item_t *item = zhashx_lookup(self->items, name);
    return item ? &item->intent : NULL;
}

/* Calls fn on the item (its key is the name past the partition). */
static void s_call(kv_intents_fn *fn, const s_item_t *item, void *arg) {
    if (fn) fn(item->partition, item->name + 8, item->klen, &item->intent, arg);
}

/* The items matching (partition, txid), or every item of partition when
 * any_txid; collected first, since the hash cannot change while walked. */
static zlistx_t *s_matching(const kv_intents_t *self, uint32_t partition, uint64_t txid,
                            int any_txid) {
    zlistx_t *found = zlistx_new();
    if (!found) return NULL;
    for (s_item_t *item = zhashx_first(self->items); item; item = zhashx_next(self->items))
        if (item->partition == partition && (any_txid || item->intent.txid == txid))
            zlistx_add_end(found, item);
    return found;
}

/* Removes the items of list (and calls fn on each first); their count. */
static size_t s_remove(kv_intents_t *self, zlistx_t *list, kv_intents_fn *fn, void *arg) {
    size_t count = 0;
    for (s_item_t *item = zlistx_first(list); item; item = zlistx_next(list)) {
        s_call(fn, item, arg);
        zhashx_delete(self->items, item->name); /* frees item */
        count++;
    }
    zlistx_destroy(&list);
    return count;
}

size_t kv_intents_take(kv_intents_t *self, uint32_t partition, uint64_t txid, kv_intents_fn *fn,
                       void *arg) {
    zlistx_t *found = s_matching(self, partition, txid, 0);
    return found ? s_remove(self, found, fn, arg) : 0;
}

void kv_intents_drop_partition(kv_intents_t *self, uint32_t partition) {
    zlistx_t *found = s_matching(self, partition, 0, 1);
    if (found) s_remove(self, found, NULL, NULL);
}

size_t kv_intents_expired(const kv_intents_t *self, int64_t now_ms, kv_intents_fn *fn, void *arg) {
    size_t count = 0;
    for (s_item_t *item = zhashx_first(self->items); item; item = zhashx_next(self->items)) {
        if (item->intent.deadline_ms >= now_ms) continue;
        s_call(fn, item, arg);
        count++;
    }
    return count;
}

size_t kv_intents_size(const kv_intents_t *self) {
    return zhashx_size(self->items);
}
