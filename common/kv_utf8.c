/*  kv_utf8.c: strict UTF-8 validation and code point counting.
 *
 *  Every key and value of every request passes through kv_utf8_count, and
 *  nearly all of them are ASCII, so ASCII is scanned eight bytes at a time and
 *  only the bytes of multi-byte sequences are decoded one by one. Validity
 *  follows Table 3-7 of the Unicode Standard ("well-formed UTF-8 byte
 *  sequences"): the lead byte fixes the length, and the range of the second
 *  byte is what rules out overlong forms, surrogates and code points above
 *  U+10FFFF. NUL is valid UTF-8 but not valid text for us, so it is rejected.
 */
#include "kv_utf8.h"

#include <stdint.h>
#include <string.h>

#define S_ONES 0x0101010101010101ULL  /* 0x01 in every byte */
#define S_HIGHS 0x8080808080808080ULL /* the high bit of every byte */

/* What a lead byte says about the sequence it starts. */
typedef struct {
    int length;        /* bytes in the sequence; 0 when the byte cannot lead one */
    unsigned char min; /* smallest valid second byte */
    unsigned char max; /* largest valid second byte */
} utf8_lead_t;

/* Returns how many leading bytes of p[0..len) are ASCII other than NUL.
 * A word is all such bytes when neither it nor (word - 0x01..01) has a high
 * bit set: a byte of 0x80 or more shows in the word itself, and with every
 * byte below 0x80 the lowest NUL borrows and becomes 0xFF. */
static size_t s_ascii_prefix(const unsigned char *p, size_t len) {
    size_t i = 0;
    while (len - i >= sizeof(uint64_t)) {
        uint64_t word;
        memcpy(&word, p + i, sizeof word); /* unaligned load without UB */
        if ((word | (word - S_ONES)) & S_HIGHS) break;
        i += sizeof word;
    }
    while (i < len && p[i] != 0 && p[i] < 0x80) i++;
    return i;
}

static utf8_lead_t s_lead(unsigned char c) {
    if (c < 0xC2) return (utf8_lead_t){0, 0, 0}; /* NUL, continuation, or overlong C0/C1 */
    if (c <= 0xDF) return (utf8_lead_t){2, 0x80, 0xBF};
    if (c == 0xE0) return (utf8_lead_t){3, 0xA0, 0xBF}; /* E0 80..9F is overlong */
    if (c == 0xED) return (utf8_lead_t){3, 0x80, 0x9F}; /* ED A0..BF is a surrogate */
    if (c <= 0xEF) return (utf8_lead_t){3, 0x80, 0xBF};
    if (c == 0xF0) return (utf8_lead_t){4, 0x90, 0xBF}; /* F0 80..8F is overlong */
    if (c <= 0xF3) return (utf8_lead_t){4, 0x80, 0xBF};
    if (c == 0xF4) return (utf8_lead_t){4, 0x80, 0x8F}; /* F4 90..BF is past U+10FFFF */
    return (utf8_lead_t){0, 0, 0};                      /* F5..FF: past U+10FFFF */
}

/* Returns the length of the sequence starting at p[0..avail), which is not
 * plain ASCII, or -1 when it is not well-formed (a NUL included). */
static int s_sequence_length(const unsigned char *p, size_t avail) {
    utf8_lead_t lead = s_lead(p[0]);
    if (lead.length == 0) return -1;
    if (avail < (size_t)lead.length) return -1; /* truncated by the end of the text */
    if (p[1] < lead.min || p[1] > lead.max) return -1;
    for (int i = 2; i < lead.length; i++)
        if ((p[i] & 0xC0) != 0x80) return -1; /* not a continuation byte */
    return lead.length;
}

long kv_utf8_count(const char *s, size_t len) {
    if (len == 0) return 0; /* s may be NULL then */
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    long count = 0;
    while (i < len) {
        size_t ascii = s_ascii_prefix(p + i, len - i);
        i += ascii;
        count += (long)ascii;
        if (i == len) break;
        int seq = s_sequence_length(p + i, len - i);
        if (seq < 0) return -1;
        i += (size_t)seq;
        count++;
    }
    return count;
}
