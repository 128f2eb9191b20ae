/*  kv_query.c: the gateway's query-string parser and API validation.
 *
 *  The raw query is split on '&' first, then each field's name from its
 *  value at the first raw '=', and only then are names and values decoded,
 *  so an escaped "%26" or "%3D" is data and never a separator, and a prefix
 *  such as "set." is recognised only when sent raw. Decoding only shrinks
 *  text and never writes ahead of where it reads, which is what makes
 *  kv_query_parse's in-place decoding safe. Problems are recorded, not acted
 *  on: kv_query_check then reports the first failing check in the API's
 *  order (the Validation table of the API), which means both k and v are
 *  fully validated before any length is compared.
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
    [KV_QUERY_INVALID_VERSION] = {"INVALID_VERSION",
                                  "a version is a decimal integer from 1 to 2^53-1 "
                                  "(0, on /set and in if., means the key is absent)"},
    [KV_QUERY_TOO_MANY_KEYS] = {"TOO_MANY_KEYS",
                                "more keys than the route takes (/mget: 1000, /tx: 100)"},
    [KV_QUERY_INVALID_TTL] = {"INVALID_TTL", "a ttl is whole seconds from 1 to 315360000"},
    [KV_QUERY_INVALID_TRANSACTION] = {"INVALID_TRANSACTION",
                                      "a /tx takes if.KEY=N, get.KEY, set.KEY=VALUE, rm.KEY and "
                                      "ttl.KEY=S (with set.KEY), each name once, each key "
                                      "written at most once"},
};

_Static_assert(sizeof s_errors / sizeof s_errors[0] == KV_QUERY_ERR_LAST + 1,
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

/* Decodes src[0..len) into dst and returns the decoded length. dst may be
 * src (in place): the write position never passes the read position. A
 * '%' without two hex digits after it stays as it is and sets *bad_escape;
 * decoding goes on, so the rest of the text is still what the client meant. */
static size_t s_decode(char *dst, const char *src, size_t len, bool *bad_escape) {
    size_t out = 0;
    for (size_t in = 0; in < len; in++) {
        char c = src[in];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int byte = s_hex_byte(src + in + 1, len - in - 1);
            if (byte < 0) {
                *bad_escape = true;
            } else {
                c = (char)byte;
                in += 2;
            }
        }
        dst[out++] = c;
    }
    return out;
}

/* The length of the field starting at query[pos] (up to the next '&'). */
static size_t s_field_len(const char *query, size_t len, size_t pos) {
    const char *amp = memchr(query + pos, '&', len - pos);
    return amp ? (size_t)(amp - (query + pos)) : len - pos;
}

/* The length of the field's name: up to its first raw '=', or all of it. */
static size_t s_name_len(const char *field, size_t len) {
    const char *equals = memchr(field, '=', len);
    return equals ? (size_t)(equals - field) : len;
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
    if (s_name_is(name, len, "ifVersion")) return &q->if_version;
    if (s_name_is(name, len, "ttl")) return &q->ttl;
    return NULL;
}

/* Records one "name=value" (or bare "name") field of the query, decoding
 * its name and, when the API knows the name, its value, in place. */
static void s_parse_field(char *field, size_t len, kv_query_t *q) {
    size_t raw_name_len = s_name_len(field, len);
    bool name_bad = false; /* its '%' stays: no known name matches it */
    size_t name_len = s_decode(field, field, raw_name_len, &name_bad);
    kv_param_t *param = s_slot(q, field, name_len);
    if (!param) return;                                        /* unknown names are ignored */
    if (param->present) return;                                /* the first occurrence wins */
    char *value = field + raw_name_len + (raw_name_len < len); /* past the '=' */
    param->present = true;
    param->ptr = value;
    param->len = s_decode(value, value, len - (size_t)(value - field), &param->bad_escape);
}

void kv_query_parse(char *query, size_t len, kv_query_t *q) {
    *q = (kv_query_t){0};
    if (len == 0) return; /* query may be NULL then */
    for (size_t pos = 0; pos <= len;) {
        size_t field_len = s_field_len(query, len, pos);
        s_parse_field(query + pos, field_len, q);
        pos += field_len + 1; /* past the '&' */
    }
}

/* --- every field, in order ------------------------------------------------ */

/* The name prefixes of /tx, matched on the raw name. */
static const struct {
    const char *text;         /* with its '.' */
    size_t len;               /* of text */
    kv_query_prefix_t prefix; /* what it means */
} s_prefixes[] = {
    {"if.", 3, KV_QUERY_PREFIX_IF},   {"get.", 4, KV_QUERY_PREFIX_GET},
    {"set.", 4, KV_QUERY_PREFIX_SET}, {"rm.", 3, KV_QUERY_PREFIX_RM},
    {"ttl.", 4, KV_QUERY_PREFIX_TTL},
};

/* The prefix raw_name starts with; its length goes to *prefix_len. */
static kv_query_prefix_t s_prefix_of(const char *raw_name, size_t len, size_t *prefix_len) {
    for (size_t i = 0; i < sizeof s_prefixes / sizeof s_prefixes[0]; i++) {
        if (len >= s_prefixes[i].len &&
            memcmp(raw_name, s_prefixes[i].text, s_prefixes[i].len) == 0) {
            *prefix_len = s_prefixes[i].len;
            return s_prefixes[i].prefix;
        }
    }
    *prefix_len = 0;
    return KV_QUERY_PREFIX_NONE;
}

/* Decodes src[0..len) to the end of the iterator's out buffer into param. */
static void s_decode_out(kv_query_iter_t *it, const char *src, size_t len, kv_param_t *param) {
    param->present = true;
    param->ptr = it->out + it->out_len;
    param->len = s_decode(it->out + it->out_len, src, len, &param->bad_escape);
    it->out_len += param->len;
}

void kv_query_iter_init(kv_query_iter_t *it, const char *query, size_t len, char *out) {
    *it = (kv_query_iter_t){.query = query, .len = len, .out = out};
}

bool kv_query_next(kv_query_iter_t *it, kv_query_field_t *field) {
    size_t field_len = 0;
    while (it->pos < it->len && (field_len = s_field_len(it->query, it->len, it->pos)) == 0)
        it->pos++; /* an empty field */
    if (it->pos >= it->len) return false;
    const char *raw = it->query + it->pos;
    it->pos += field_len + 1; /* past the '&' */
    *field = (kv_query_field_t){.raw_name = raw, .raw_name_len = s_name_len(raw, field_len)};
    size_t prefix_len = 0;
    field->prefix = s_prefix_of(raw, field->raw_name_len, &prefix_len);
    s_decode_out(it, raw, field->raw_name_len, &field->name);
    if (field->prefix != KV_QUERY_PREFIX_NONE) { /* the prefix decodes to itself */
        field->key = field->name;
        field->key.ptr += prefix_len;
        field->key.len -= prefix_len;
    }
    if (field->raw_name_len < field_len) { /* a '=' follows the name */
        const char *value = raw + field->raw_name_len + 1;
        s_decode_out(it, value, field_len - field->raw_name_len - 1, &field->value);
    }
    return true;
}

bool kv_query_name_is(const kv_query_field_t *field, const char *name) {
    return s_name_is(field->name.ptr, field->name.len, name);
}

/* Returns the code points of a present parameter, or -1 when it is not
 * valid text: a broken escape, bytes that are not UTF-8, or a NUL. */
static long s_chars(const kv_param_t *param) {
    if (param->bad_escape) return -1;
    return kv_utf8_count(param->ptr, param->len);
}

/* Parses param as decimal digits, at most max (leading zeros allowed):
 * true with *n set, or false. */
static bool s_decimal(const kv_param_t *param, uint64_t max, uint64_t *n) {
    if (!param->present || param->bad_escape || param->len == 0) return false;
    uint64_t value = 0;
    for (size_t i = 0; i < param->len; i++) {
        char c = param->ptr[i];
        if (c < '0' || c > '9') return false;
        value = value * 10 + (uint64_t)(c - '0');
        if (value > max) return false; /* also keeps value from overflowing */
    }
    *n = value;
    return true;
}

kv_query_err_t kv_query_version(const kv_param_t *param, bool zero_ok, uint64_t *version) {
    uint64_t n = 0;
    if (!s_decimal(param, KV_VERSION_MAX, &n) || (n == 0 && !zero_ok))
        return KV_QUERY_INVALID_VERSION;
    *version = n;
    return KV_QUERY_OK;
}

kv_query_err_t kv_query_ttl(const kv_param_t *param, uint64_t *seconds) {
    uint64_t n = 0;
    if (!s_decimal(param, KV_TTL_MAX, &n) || n == 0) return KV_QUERY_INVALID_TTL;
    *seconds = n;
    return KV_QUERY_OK;
}

kv_query_err_t kv_query_check_key(const kv_param_t *key) {
    if (!key->present) return KV_QUERY_MISSING_KEY;
    if (key->len == 0) return KV_QUERY_EMPTY_KEY;
    long chars = s_chars(key);
    if (chars < 0) return KV_QUERY_INVALID_ENCODING;
    if (chars > KV_MAX_KEY_CHARS) return KV_QUERY_KEY_TOO_LONG;
    return KV_QUERY_OK;
}

kv_query_err_t kv_query_check_value(const kv_param_t *value) {
    if (!value->present) return KV_QUERY_MISSING_VALUE;
    long chars = s_chars(value);
    if (chars < 0) return KV_QUERY_INVALID_ENCODING;
    if (chars > KV_MAX_VALUE_CHARS) return KV_QUERY_VALUE_TOO_LONG;
    return KV_QUERY_OK;
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
