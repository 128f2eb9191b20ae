/*  kv_query.h: the gateway's query-string parser and API validation.
 *
 *  Parameters come from the raw query string: fields split on '&', a
 *  field's name split from its value at the first raw '=', then names and
 *  values percent-decoded with '+' meaning space (the API's conventions in
 *  README.md). We parse the raw string ourselves rather than take
 *  libmicrohttpd's decoded values because the contract needs to tell a
 *  broken '%' escape or an embedded NUL apart from valid text, and because
 *  the multi-key routes match name prefixes ("set.KEY") before decoding.
 *
 *  Two ways in:
 *  - kv_query_parse, for single-key routes: the parameters the API knows,
 *    the first occurrence of each winning, decoded in place (no copy: this
 *    is every /get and /set).
 *  - kv_query_iter_t, for multi-key routes (/mget's repeated k, /tx's
 *    prefixed names): every field in request order, with its raw and decoded
 *    name, its prefix kind and key, and its value or the absence of one.
 *
 *  Validation follows the API table exactly; the first failing check wins:
 *  MISSING_KEY_PARAM, EMPTY_KEY, INVALID_ENCODING, MAXIMUM_KEY_LENGTH_REACHED,
 *  MISSING_VALUE_PARAM, MAXIMUM_VALUE_LENGTH_REACHED.
 */
#ifndef KV_QUERY_H
#define KV_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One decoded parameter. ptr points into the caller's (decoded) buffer. */
typedef struct {
    const char *ptr; /* decoded bytes, not NUL-terminated; NULL when absent */
    size_t len;      /* decoded length in bytes */
    bool present;    /* the name appeared in the query */
    bool bad_escape; /* a '%' not followed by two hex digits */
} kv_param_t;

/* The parameters the API knows. The first occurrence of a name wins;
 * names are compared after decoding ("%6B=a" is k). */
typedef struct {
    kv_param_t k;          /* key */
    kv_param_t v;          /* value (/set) */
    kv_param_t limit;      /* page size of bulk reads */
    kv_param_t cursor;     /* page cursor of bulk reads */
    kv_param_t node;       /* /join endpoint, /leave id */
    kv_param_t if_version; /* ifVersion: /set and /rm's condition */
    kv_param_t ttl;        /* ttl: /set and /expire's seconds to live */
} kv_query_t;

typedef enum {
    KV_QUERY_OK = 0,
    KV_QUERY_MISSING_KEY,         /* 400 MISSING_KEY_PARAM */
    KV_QUERY_EMPTY_KEY,           /* 400 EMPTY_KEY */
    KV_QUERY_INVALID_ENCODING,    /* 400 INVALID_ENCODING */
    KV_QUERY_KEY_TOO_LONG,        /* 400 MAXIMUM_KEY_LENGTH_REACHED */
    KV_QUERY_MISSING_VALUE,       /* 400 MISSING_VALUE_PARAM */
    KV_QUERY_VALUE_TOO_LONG,      /* 400 MAXIMUM_VALUE_LENGTH_REACHED */
    KV_QUERY_INVALID_VERSION,     /* 400 INVALID_VERSION */
    KV_QUERY_TOO_MANY_KEYS,       /* 400 TOO_MANY_KEYS */
    KV_QUERY_INVALID_TTL,         /* 400 INVALID_TTL */
    KV_QUERY_INVALID_TRANSACTION, /* 400 INVALID_TRANSACTION (/tx's parameters) */
    KV_QUERY_ERR_LAST = KV_QUERY_INVALID_TRANSACTION,
} kv_query_err_t;

/* Versions are positive integers below 2^53 (a JSON number any client
 * reads exactly); 0 in a condition means "absent". */
#define KV_VERSION_MAX ((1ull << 53) - 1)

/* An expiry is 1 second to 10 years (ttl=S, ttl.KEY=S). */
#define KV_TTL_MAX 315360000ull

/* Parses query[0..len) (without the leading '?') into q, percent-decoding
 * the known parameters in place: the buffer is modified, and q's pointers
 * point into it. Unknown parameters are ignored. Never fails: problems are
 * recorded in the parameters for kv_query_check. */
void kv_query_parse(char *query, size_t len, kv_query_t *q);

/* Validates k (and v when with_value, for /set) in the API's order. */
kv_query_err_t kv_query_check(const kv_query_t *q, bool with_value);

/* Parses a version (ifVersion, if.KEY): decimal digits only, at most
 * KV_VERSION_MAX; 0 only when zero_ok. KV_QUERY_OK with *version set, or
 * KV_QUERY_INVALID_VERSION. */
kv_query_err_t kv_query_version(const kv_param_t *param, bool zero_ok, uint64_t *version);

/* Parses an expiry (ttl, ttl.KEY): decimal digits only, 1 to KV_TTL_MAX
 * whole seconds. KV_QUERY_OK with *seconds set, or KV_QUERY_INVALID_TTL. */
kv_query_err_t kv_query_ttl(const kv_param_t *param, uint64_t *seconds);

/* Validates one key, as every route validates keys: MISSING_KEY when key is
 * absent, then EMPTY_KEY, INVALID_ENCODING, KEY_TOO_LONG. */
kv_query_err_t kv_query_check_key(const kv_param_t *key);

/* Validates one value: MISSING_VALUE when absent, then INVALID_ENCODING,
 * VALUE_TOO_LONG. */
kv_query_err_t kv_query_check_value(const kv_param_t *value);

/* --- every field, in order (multi-key routes) ----------------------------- */

/* The prefix of a field's name, matched on the raw name (so "set%2Ea" has
 * none): the part after the prefix's '.' is a key. */
typedef enum {
    KV_QUERY_PREFIX_NONE = 0, /* a plain name: k, v, limit, token, ... */
    KV_QUERY_PREFIX_IF,       /* if.KEY=VERSION: a condition */
    KV_QUERY_PREFIX_GET,      /* get.KEY: a read */
    KV_QUERY_PREFIX_SET,      /* set.KEY=VALUE: a write */
    KV_QUERY_PREFIX_RM,       /* rm.KEY: a removal */
    KV_QUERY_PREFIX_TTL,      /* ttl.KEY=SECONDS: the expiry of a set. */
} kv_query_prefix_t;

/* One "name=value" (or bare "name") field of a query. Decoded parameters
 * point into the iterator's out buffer, the raw name into the query. */
typedef struct {
    const char *raw_name;     /* the name as sent, not NUL-terminated */
    size_t raw_name_len;      /* its bytes */
    kv_query_prefix_t prefix; /* matched on raw_name */
    kv_param_t name;          /* the whole name, decoded ("set.a.b") */
    kv_param_t key;           /* prefixed names: the rest, decoded ("a.b"); else absent */
    kv_param_t value;         /* present when the field has a '=' ("get.k=" has an empty one) */
} kv_query_field_t;

/* A position in a query's fields. The query is not modified. */
typedef struct {
    const char *query; /* the raw query, without the '?' */
    size_t len;        /* its bytes */
    size_t pos;        /* where the next field starts */
    char *out;         /* decoded names and values, one after the other */
    size_t out_len;    /* bytes of out used */
} kv_query_iter_t;

/* Starts iterating over query[0..len). out (at least len bytes; decoding
 * only shrinks text) receives the decoded bytes, which stay valid after
 * later fields are read, so a caller may keep every field at once. */
void kv_query_iter_init(kv_query_iter_t *it, const char *query, size_t len, char *out);

/* Reads the next field into field: true, or false when there is none left.
 * Empty fields ("a=1&&b=2", a trailing '&') are skipped: they carry no name. */
bool kv_query_next(kv_query_iter_t *it, kv_query_field_t *field);

/* True when the field's decoded name is exactly name (a NUL-terminated
 * string), e.g. kv_query_name_is(&field, "k") for /mget's keys. */
bool kv_query_name_is(const kv_query_field_t *field, const char *name);

/* The API error code ("EMPTY_KEY") and a human message for err. */
const char *kv_query_err_code(kv_query_err_t err);
const char *kv_query_err_message(kv_query_err_t err);

#endif
