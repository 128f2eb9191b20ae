/*  kv_query.c: the gateway's query-string parser and API validation.
 *
 *  The raw query is split on '&' first and each known value is decoded
 *  afterwards, in place, so an escaped "%26" or "%3D" is data and never a
 *  separator. Decoding only shrinks text, which is what makes in place safe.
 *  Problems are recorded, not acted on: kv_query_check then reports the first
 *  failing check in the API's order (shared/spec/API.md, Validation), which
 *  means both k and v are fully validated before any length is compared.
 */
#include "kv_query.h"

#include <string.h>

#include "kv_limits.h"
#include "kv_utf8.h"

#define S_STRING(x) #x
#define S_EXPAND(x) S_STRING(x) /* a macro's value as a string literal */

#define S_KEY_TOO_LONG "key is longer than " S_EXPAND(KV_MAX_KEY_CHARS) " characters"
#define S_VALUE_TOO_LONG "value is longer than " S_EXPAND(KV_MAX_VALUE_CHARS) " characters"

/* Code and message of each kv_query_err_t, indexed by it. */
static const struct {
    const char *code;    /* the API's error code */
    const char *message; /* for people */
} s_errors[] = {
    [KV_QUERY_OK] = {"OK", "the parameters are valid"},
    [KV_QUERY_MISSING_KEY] = {"MISSING_KEY_PARAM", "the k parameter is missing"},
    [KV_QUERY_EMPTY_KEY] = {"EMPTY_KEY", "the key is empty"},
    [KV_QUERY_INVALID_ENCODING] = {"INVALID_ENCODING",
                                   "k or v has a broken %-escape, bytes that are not UTF-8, "
                                   "or a NUL"},
    [KV_QUERY_KEY_TOO_LONG] = {"MAXIMUM_KEY_LENGTH_REACHED", S_KEY_TOO_LONG},
    [KV_QUERY_MISSING_VALUE] = {"MISSING_VALUE_PARAM",
                                "the v parameter is missing (v= sets an empty value)"},
    [KV_QUERY_VALUE_TOO_LONG] = {"MAXIMUM_VALUE_LENGTH_REACHED", S_VALUE_TOO_LONG},
};

_Static_assert(sizeof s_errors / sizeof s_errors[0] == KV_QUERY_VALUE_TOO_LONG + 1,
               "every kv_query_err_t needs a code and a message");

/* Returns the value of the hex digit c (either case), or -1. */
static int s_hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Returns the byte written as two hex digits at p[0..avail), or -1 when
 * there are not two hex digits there. */
static int s_hex_byte(const char *p, size_t avail) {
    if (avail < 2) return -1; /* '%' at the end, or one digit before it */
    int high = s_hex_digit(p[0]);
    int low = s_hex_digit(p[1]);
    if (high < 0 || low < 0) return -1;
    return high << 4 | low;
}

/* Decodes s[0..len) in place and returns the decoded length. A '%' without
 * two hex digits after it stays as it is and sets *bad_escape; decoding goes
 * on, so the rest of the text is still what the client meant. */
static size_t s_decode(char *s, size_t len, bool *bad_escape) {
    size_t out = 0;
    for (size_t in = 0; in < len; in++) {
        char c = s[in];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int byte = s_hex_byte(s + in + 1, len - in - 1);
            if (byte < 0) {
                *bad_escape = true;
            } else {
                c = (char)byte;
                in += 2;
            }
        }
        s[out++] = c;
    }
    return out;
}

static bool s_name_is(const char *name, size_t len, const char *known) {
    return strlen(known) == len && memcmp(name, known, len) == 0;
}

/* Returns the slot of the parameter called name[0..len), or NULL when the
 * API does not know that name. */
static kv_param_t *s_slot(kv_query_t *q, const char *name, size_t len) {
    if (s_name_is(name, len, "k")) return &q->k;
    if (s_name_is(name, len, "v")) return &q->v;
    if (s_name_is(name, len, "limit")) return &q->limit;
    if (s_name_is(name, len, "cursor")) return &q->cursor;
    if (s_name_is(name, len, "node")) return &q->node;
    return NULL;
}

/* Records one "name=value" (or bare "name") field of the query. */
static void s_parse_field(char *field, size_t len, kv_query_t *q) {
    char *equals = memchr(field, '=', len);
    size_t name_len = equals ? (size_t)(equals - field) : len;
    kv_param_t *param = s_slot(q, field, name_len);
    if (!param) return;         /* unknown names are ignored */
    if (param->present) return; /* the first occurrence wins */
    char *value = equals ? equals + 1 : field + len;
    param->present = true;
    param->ptr = value;
    param->len = s_decode(value, len - (size_t)(value - field), &param->bad_escape);
}

void kv_query_parse(char *query, size_t len, kv_query_t *q) {
    *q = (kv_query_t){0};
    if (len == 0) return; /* query may be NULL then */
    char *field = query;
    char *end = query + len;
    for (;;) {
        char *amp = memchr(field, '&', (size_t)(end - field));
        s_parse_field(field, (size_t)((amp ? amp : end) - field), q);
        if (!amp) return;
        field = amp + 1;
    }
}

/* Returns the code points of a present parameter, or -1 when it is not
 * valid text: a broken escape, bytes that are not UTF-8, or a NUL. */
static long s_chars(const kv_param_t *param) {
    if (param->bad_escape) return -1;
    return kv_utf8_count(param->ptr, param->len);
}

kv_query_err_t kv_query_check(const kv_query_t *q, bool with_value) {
    if (!q->k.present) return KV_QUERY_MISSING_KEY;
    if (q->k.len == 0) return KV_QUERY_EMPTY_KEY;
    bool has_value = with_value && q->v.present; /* /get ignores a v it is sent */
    long key_chars = s_chars(&q->k);
    long value_chars = has_value ? s_chars(&q->v) : 0;
    if (key_chars < 0 || value_chars < 0) return KV_QUERY_INVALID_ENCODING;
    if (key_chars > KV_MAX_KEY_CHARS) return KV_QUERY_KEY_TOO_LONG;
    if (with_value && !q->v.present) return KV_QUERY_MISSING_VALUE;
    if (value_chars > KV_MAX_VALUE_CHARS) return KV_QUERY_VALUE_TOO_LONG;
    return KV_QUERY_OK;
}

static bool s_known(kv_query_err_t err) {
    return (unsigned)err < sizeof s_errors / sizeof s_errors[0];
}

const char *kv_query_err_code(kv_query_err_t err) {
    if (!s_known(err)) return "INTERNAL_ERROR"; /* not a kv_query_err_t: a caller's bug */
    return s_errors[err].code;
}

const char *kv_query_err_message(kv_query_err_t err) {
    if (!s_known(err)) return "unknown validation error";
    return s_errors[err].message;
}
