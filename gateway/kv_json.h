/*  kv_json.h: the JSON the gateway writes.
 *
 *  Structured bodies (errors, /status, /settings) are built with jansson.
 *  The hot paths (a /get value, the entries of a bulk read) only ever write
 *  a JSON string, and building a jansson object per request for that would
 *  allocate twice; kv_json_string writes it straight into a buffer. Inputs
 *  are already valid UTF-8 (the gateway validated them on the way in), so
 *  only '"', '\\' and control characters need escaping.
 */
#ifndef KV_JSON_H
#define KV_JSON_H

#include <stddef.h>

/* Bytes kv_json_string may need for len input bytes (worst case). */
#define KV_JSON_STRING_MAX(len) ((len)*6 + 2)

/* Writes s[0..len) as a quoted JSON string into out (cap bytes, at least
 * KV_JSON_STRING_MAX(len)). Returns the bytes written, or 0 when cap is
 * too small. */
size_t kv_json_string(char *out, size_t cap, const char *s, size_t len);

/* A new "{"error": code, "message": message}" body (malloc'd, NUL-ended),
 * or NULL when out of memory. */
char *kv_json_error(const char *code, const char *message);

#endif
