/*  kv_utf8.h: strict UTF-8 validation and code point counting.
 *
 *  Keys and values are UTF-8 text without NUL, and their limits count code
 *  points, not bytes (docs/api.md). Strict means: no overlong forms, no
 *  UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 *  sequence, no stray continuation byte.
 */
#ifndef KV_UTF8_H
#define KV_UTF8_H

#include <stddef.h>

/* Returns the number of code points in s[0..len), or -1 when the bytes are
 * not strict UTF-8 or contain a NUL. */
long kv_utf8_count(const char *s, size_t len);

#endif
