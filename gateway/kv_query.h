/*  kv_query.h: the gateway's query-string parser and API validation.
 *
 *  Parameters come from the raw query string, percent-decoded with '+'
 *  meaning space (shared/spec/API.md). We parse the raw string ourselves
 *  rather than take libmicrohttpd's decoded values because the contract needs
 *  to tell a broken '%' escape or an embedded NUL apart from valid text.
 *
 *  Validation follows the API table exactly; the first failing check wins:
 *  MISSING_KEY_PARAM, EMPTY_KEY, INVALID_ENCODING, MAXIMUM_KEY_LENGTH_REACHED,
 *  MISSING_VALUE_PARAM, MAXIMUM_VALUE_LENGTH_REACHED.
 */
#ifndef KV_QUERY_H
#define KV_QUERY_H

#include <stdbool.h>
#include <stddef.h>

/* One decoded parameter. ptr points into the caller's (decoded) buffer. */
typedef struct {
    const char *ptr; /* decoded bytes, not NUL-terminated; NULL when absent */
    size_t len;      /* decoded length in bytes */
    bool present;    /* the name appeared in the query */
    bool bad_escape; /* a '%' not followed by two hex digits */
} kv_param_t;

/* The parameters the API knows. The first occurrence of a name wins. */
typedef struct {
    kv_param_t k;      /* key */
    kv_param_t v;      /* value (/set) */
    kv_param_t limit;  /* page size of bulk reads */
    kv_param_t cursor; /* page cursor of bulk reads */
    kv_param_t node;   /* /join endpoint, /leave id */
} kv_query_t;

typedef enum {
    KV_QUERY_OK = 0,
    KV_QUERY_MISSING_KEY,      /* 400 MISSING_KEY_PARAM */
    KV_QUERY_EMPTY_KEY,        /* 400 EMPTY_KEY */
    KV_QUERY_INVALID_ENCODING, /* 400 INVALID_ENCODING */
    KV_QUERY_KEY_TOO_LONG,     /* 400 MAXIMUM_KEY_LENGTH_REACHED */
    KV_QUERY_MISSING_VALUE,    /* 400 MISSING_VALUE_PARAM */
    KV_QUERY_VALUE_TOO_LONG,   /* 400 MAXIMUM_VALUE_LENGTH_REACHED */
} kv_query_err_t;

/* Parses query[0..len) (without the leading '?') into q, percent-decoding
 * the known parameters in place: the buffer is modified, and q's pointers
 * point into it. Unknown parameters are ignored. Never fails: problems are
 * recorded in the parameters for kv_query_check. */
void kv_query_parse(char *query, size_t len, kv_query_t *q);

/* Validates k (and v when with_value, for /set) in the API's order. */
kv_query_err_t kv_query_check(const kv_query_t *q, bool with_value);

/* The API error code ("EMPTY_KEY") and a human message for err. */
const char *kv_query_err_code(kv_query_err_t err);
const char *kv_query_err_message(kv_query_err_t err);

#endif
