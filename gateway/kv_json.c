/*  kv_json.c: see kv_json.h. */
#include "kv_json.h"

#include <jansson.h>

/* Escape for each byte below 0x20, '"' and '\\': 0 means copy as is. */
static char s_short_escape(unsigned char c) {
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

size_t kv_json_string(char *out, size_t cap, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    if (cap < KV_JSON_STRING_MAX(len)) return 0;
    size_t pos = 0;
    out[pos++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            out[pos++] = (char)c;
            continue;
        }
        out[pos++] = '\\';
        char escape = s_short_escape(c);
        if (escape) {
            out[pos++] = escape;
            continue;
        }
        out[pos++] = 'u';
        out[pos++] = '0';
        out[pos++] = '0';
        out[pos++] = hex[c >> 4];
        out[pos++] = hex[c & 15];
    }
    out[pos++] = '"';
    return pos;
}

char *kv_json_error(const char *code, const char *message) {
    json_t *body = json_pack("{s:s, s:s}", "error", code, "message", message);
    if (!body) return NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}
