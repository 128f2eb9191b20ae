/*  kv_bulk.c: see kv_bulk.h. */
#include "kv_bulk.h"

#include <stdio.h>
#include <string.h>

static int s_hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int kv_cursor_parse(const char *text, size_t len, uint32_t partitions, kv_cursor_t *cursor) {
    memset(cursor, 0, sizeof(*cursor));
    size_t pos = 0;
    uint64_t partition = 0;
    while (pos < len && text[pos] >= '0' && text[pos] <= '9' && pos < 10)
        partition = partition * 10 + (uint64_t)(text[pos++] - '0');
    if (pos == 0 || partition > partitions) return -1; /* == partitions: the read is over */
    cursor->partition = (uint32_t)partition;
    if (pos == len) return 0;
    if (text[pos++] != '.') return -1;
    size_t hex = len - pos;
    if (hex == 0 || hex % 2 || hex / 2 > KV_MAX_KEY_BYTES) return -1;
    for (size_t i = 0; i < hex / 2; i++) {
        int high = s_hex_value(text[pos + 2 * i]);
        int low = s_hex_value(text[pos + 2 * i + 1]);
        if (high < 0 || low < 0) return -1;
        cursor->after[i] = (char)(high << 4 | low);
    }
    cursor->has_after = 1;
    cursor->alen = hex / 2;
    return 0;
}

void kv_cursor_format(const kv_cursor_t *cursor, char *out) {
    static const char hex[] = "0123456789abcdef";
    int pos = snprintf(out, KV_CURSOR_TEXT_MAX, "%u", cursor->partition);
    if (pos < 0) pos = 0;
    if (!cursor->has_after) return;
    out[pos++] = '.';
    for (size_t i = 0; i < cursor->alen; i++) {
        unsigned char c = (unsigned char)cursor->after[i];
        out[pos++] = hex[c >> 4];
        out[pos++] = hex[c & 15];
    }
    out[pos] = '\0';
}

size_t kv_bulk_entry(kv_bulk_kind_t kind, int first, const char *key, size_t klen,
                     const char *value, size_t vlen, char *out, size_t cap) {
    if (cap < KV_BULK_ENTRY_MAX) return 0;
    size_t pos = 0;
    if (!first) out[pos++] = ',';
    if (kind == KV_BULK_KEYS) return pos + kv_json_string(out + pos, cap - pos, key, klen);
    if (kind == KV_BULK_VALUES) return pos + kv_json_string(out + pos, cap - pos, value, vlen);
    memcpy(out + pos, "{\"k\":", 5);
    pos += 5;
    pos += kv_json_string(out + pos, cap - pos, key, klen);
    memcpy(out + pos, ",\"v\":", 5);
    pos += 5;
    pos += kv_json_string(out + pos, cap - pos, value, vlen);
    out[pos++] = '}';
    return pos;
}
