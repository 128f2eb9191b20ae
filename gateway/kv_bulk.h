/*  kv_bulk.h: cursors and entry formatting for /getKeys, /getValues, /getAll.
 *
 *  A bulk read walks the partitions in order, and each partition in key
 *  order, one page (SCAN) at a time. Its position is a cursor: a partition
 *  and, inside it, the last key returned. Because the order is by key, not
 *  by where a key sits in a hash table, a cursor stays meaningful while
 *  tables grow and while a partition moves to another node, which is how
 *  every key written before the read appears exactly once across pages.
 *
 *  On the wire (the X-Next-Cursor header and the cursor parameter) a cursor
 *  is "PARTITION" or "PARTITION.HEXKEY", e.g. "17.6b6579": opaque to
 *  clients, but readable in logs.
 */
#ifndef KV_BULK_H
#define KV_BULK_H

#include <stddef.h>
#include <stdint.h>

#include "kv_json.h"
#include "kv_limits.h"

typedef enum {
    KV_BULK_KEYS,   /* ["k1", ...] */
    KV_BULK_VALUES, /* ["v1", ...] */
    KV_BULK_ALL,    /* [{"k": "k1", "v": "v1"}, ...] */
} kv_bulk_kind_t;

typedef struct {
    uint32_t partition;           /* next partition to read */
    int has_after;                /* resume inside it, after this key */
    size_t alen;                  /* bytes of after */
    char after[KV_MAX_KEY_BYTES]; /* last key returned from partition */
} kv_cursor_t;

/* Longest cursor text, with its NUL. */
#define KV_CURSOR_TEXT_MAX (10 + 1 + 2 * KV_MAX_KEY_BYTES + 1)

/* Longest formatted entry: a comma, the JSON strings and the object. */
#define KV_BULK_ENTRY_MAX                                                                          \
    (KV_JSON_STRING_MAX(KV_MAX_KEY_BYTES) + KV_JSON_STRING_MAX(KV_MAX_VALUE_BYTES) + 32)

/* Parses cursor text (len bytes) for a cluster of partitions partitions.
 * Returns 0, or -1 when malformed or out of range. */
int kv_cursor_parse(const char *text, size_t len, uint32_t partitions, kv_cursor_t *cursor);

/* Writes cursor as NUL-terminated text into out (KV_CURSOR_TEXT_MAX). */
void kv_cursor_format(const kv_cursor_t *cursor, char *out);

/* Writes one entry (preceded by ',' unless first) into out (cap bytes, at
 * least KV_BULK_ENTRY_MAX). Returns the bytes written. */
size_t kv_bulk_entry(kv_bulk_kind_t kind, int first, const char *key, size_t klen,
                     const char *value, size_t vlen, char *out, size_t cap);

#endif
