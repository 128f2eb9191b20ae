/*  kv_wire.h: bounds-checked cursors for writing and reading frames.
 *
 *  The message and table codecs are written as straight lists of fields
 *  against these cursors. A cursor records the first overflow and ignores
 *  every later call, so a codec checks for failure once, at the end, and can
 *  never write or read outside its buffer. A writer without a buffer only
 *  counts, which gives encoded sizes without a second layout description.
 *  Integers are big-endian; strings are a length of 1, 2 or 4 bytes, then
 *  the bytes.
 */
#ifndef KV_WIRE_H
#define KV_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t *buf; /* destination, or NULL to only count */
    size_t cap;   /* bytes available in buf */
    size_t pos;   /* bytes written (or counted) so far */
    int failed;   /* a field did not fit, or was too long for its length */
} kv_writer_t;

typedef struct {
    const uint8_t *buf; /* the frame */
    size_t len;         /* its length */
    size_t pos;         /* next byte to read */
    int failed;         /* a field ran past the end */
} kv_reader_t;

static inline void kv_wire_put(kv_writer_t *w, const void *data, size_t size) {
    if (w->failed) return;
    if (w->buf) {
        if (size > w->cap - w->pos) {
            w->failed = 1;
            return;
        }
        if (size && data) memcpy(w->buf + w->pos, data, size);
    }
    w->pos += size;
}

static inline void kv_wire_put_uint(kv_writer_t *w, uint64_t value, size_t size) {
    uint8_t bytes[8];
    for (size_t i = 0; i < size; i++) bytes[i] = (uint8_t)(value >> (8 * (size - 1 - i)));
    kv_wire_put(w, bytes, size);
}

/* A byte string behind a length field of width (1, 2 or 4) bytes. */
static inline void kv_wire_put_str(kv_writer_t *w, const void *ptr, size_t len, size_t width) {
    if (len >> (8 * width)) w->failed = 1; /* does not fit its length field */
    kv_wire_put_uint(w, len, width);
    kv_wire_put(w, ptr, len);
}

static inline const uint8_t *kv_wire_get(kv_reader_t *r, size_t size) {
    if (r->failed || size > r->len - r->pos) {
        r->failed = 1;
        return NULL;
    }
    const uint8_t *at = r->buf + r->pos;
    r->pos += size;
    return at;
}

static inline uint64_t kv_wire_get_uint(kv_reader_t *r, size_t size) {
    const uint8_t *at = kv_wire_get(r, size);
    uint64_t value = 0;
    for (size_t i = 0; at && i < size; i++) value = value << 8 | at[i];
    return value;
}

/* Reads a string behind a width-byte length; returns its bytes (NULL when
 * empty or on failure) and stores the length in *len. */
static inline const char *kv_wire_get_str(kv_reader_t *r, size_t width, size_t *len) {
    size_t size = (size_t)kv_wire_get_uint(r, width);
    const uint8_t *at = kv_wire_get(r, size);
    *len = at ? size : 0;
    return at && size ? (const char *)at : NULL;
}

#endif
