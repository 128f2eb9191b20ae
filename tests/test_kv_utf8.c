/*  test_kv_utf8.c: kv_utf8_count, strict UTF-8 without NUL.
 *
 *  Hand-picked sequences pin the edges of Table 3-7 of the Unicode Standard;
 *  the exhaustive tests compare every short input with a reference decoder
 *  written the other way round (decode the bits, then reject what decodes to
 *  an overlong form, a surrogate or too large a code point), inside ASCII
 *  padding so the eight-bytes-at-a-time scan crosses every sequence.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv_utf8.h"

/* A string literal that may hold a NUL, as the (bytes, length) pair. */
#define BYTES(literal) (literal), (sizeof(literal) - 1)

static const char s_emoji[4] = {'\xF0', '\x9F', '\x98', '\x80'}; /* 😀, U+1F600 */
static const char s_zhe[2] = {'\xD0', '\xB6'};                   /* ж, U+0436 */

/* Counts a copy of bytes[0..len) in a buffer of exactly len bytes, so that
 * AddressSanitizer catches any read past the end. */
static long s_count_bytes(const char *bytes, size_t len) {
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, bytes, len);
    long count = kv_utf8_count(copy, len);
    free(copy);
    return count;
}

static long s_count(const char *text) {
    return s_count_bytes(text, strlen(text));
}

/* The reference: the code point count of s[0..len), or -1. */
static long s_reference_count(const unsigned char *s, size_t len) {
    static const unsigned long smallest[] = {0, 0, 0x80, 0x800, 0x10000}; /* by length */
    long count = 0;
    for (size_t i = 0; i < len; count++) {
        unsigned char lead = s[i];
        if (lead == 0) return -1;
        if (lead < 0x80) {
            i++;
            continue;
        }
        size_t length = (lead & 0xE0) == 0xC0   ? 2
                        : (lead & 0xF0) == 0xE0 ? 3
                        : (lead & 0xF8) == 0xF0 ? 4
                                                : 0;
        if (length == 0 || i + length > len) return -1;
        unsigned long code_point = lead & (0x7F >> length);
        for (size_t j = 1; j < length; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return -1;
            code_point = code_point << 6 | (s[i + j] & 0x3F);
        }
        if (code_point < smallest[length] || code_point > 0x10FFFF) return -1;
        if (code_point >= 0xD800 && code_point <= 0xDFFF) return -1;
        i += length;
    }
    return count;
}

/* Checks bytes[0..len) between eight ASCII bytes on each side against the
 * reference; returns false on a mismatch. */
static bool s_agrees_padded(const unsigned char *bytes, size_t len) {
    unsigned char text[8 + 4 + 8];
    memset(text, 'a', sizeof text);
    memcpy(text + 8, bytes, len);
    return kv_utf8_count((const char *)text, len + 16) == s_reference_count(text, len + 16);
}

Test(kv_utf8, empty_text_has_no_code_points) {
    cr_assert_eq(kv_utf8_count(NULL, 0), 0);
    cr_assert_eq(s_count(""), 0);
}

Test(kv_utf8, ascii_counts_one_per_byte) {
    cr_assert_eq(s_count("a"), 1);
    cr_assert_eq(s_count("hello, world"), 12);
    cr_assert_eq(s_count("\x01\x7F"), 2);
    cr_assert_eq(s_count("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), 62);
}

Test(kv_utf8, multibyte_characters_count_once) {
    cr_assert_eq(s_count("\xD0\xB6"), 1);         /* ж, 2 bytes */
    cr_assert_eq(s_count("\xE4\xB8\xAD"), 1);     /* 中, 3 bytes */
    cr_assert_eq(s_count("\xF0\x9F\x98\x80"), 1); /* 😀, 4 bytes */
    cr_assert_eq(s_count("a\xD0\xB6\xE4\xB8\xAD\xF0\x9F\x98\x80z"), 5);
    cr_assert_eq(s_count("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82"), 6); /* Привет */
}

Test(kv_utf8, first_and_last_code_points_of_each_length_are_valid) {
    cr_assert_eq(s_count("\xC2\x80"), 1);         /* U+0080 */
    cr_assert_eq(s_count("\xDF\xBF"), 1);         /* U+07FF */
    cr_assert_eq(s_count("\xE0\xA0\x80"), 1);     /* U+0800 */
    cr_assert_eq(s_count("\xEF\xBF\xBF"), 1);     /* U+FFFF */
    cr_assert_eq(s_count("\xF0\x90\x80\x80"), 1); /* U+10000 */
    cr_assert_eq(s_count("\xF4\x8F\xBF\xBF"), 1); /* U+10FFFF */
}

Test(kv_utf8, code_points_next_to_the_surrogates_are_valid) {
    cr_assert_eq(s_count("\xED\x9F\xBF"), 1); /* U+D7FF */
    cr_assert_eq(s_count("\xEE\x80\x80"), 1); /* U+E000 */
}

Test(kv_utf8, overlong_forms_are_rejected) {
    cr_assert_eq(s_count("\xC0\xAF"), -1);              /* '/' in two bytes */
    cr_assert_eq(s_count_bytes(BYTES("\xC0\x80")), -1); /* NUL in two bytes */
    cr_assert_eq(s_count("\xC1\xBF"), -1);
    cr_assert_eq(s_count("\xE0\x80\xAF"), -1);
    cr_assert_eq(s_count("\xE0\x9F\xBF"), -1); /* U+07FF in three bytes */
    cr_assert_eq(s_count("\xF0\x80\x80\xAF"), -1);
    cr_assert_eq(s_count("\xF0\x8F\xBF\xBF"), -1); /* U+FFFF in four bytes */
}

Test(kv_utf8, surrogates_are_rejected) {
    cr_assert_eq(s_count("\xED\xA0\x80"), -1);             /* U+D800 */
    cr_assert_eq(s_count("\xED\xAF\xBF"), -1);             /* U+DBFF */
    cr_assert_eq(s_count("\xED\xB0\x80"), -1);             /* U+DC00 */
    cr_assert_eq(s_count("\xED\xBF\xBF"), -1);             /* U+DFFF */
    cr_assert_eq(s_count("\xED\xA0\xBD\xED\xB8\x80"), -1); /* 😀 as a CESU-8 pair */
}

Test(kv_utf8, code_points_above_10FFFF_are_rejected) {
    cr_assert_eq(s_count("\xF4\x90\x80\x80"), -1); /* U+110000 */
    cr_assert_eq(s_count("\xF5\x80\x80\x80"), -1);
    cr_assert_eq(s_count("\xF7\xBF\xBF\xBF"), -1);
    cr_assert_eq(s_count("\xF8\x88\x80\x80\x80"), -1);     /* old five-byte form */
    cr_assert_eq(s_count("\xFC\x84\x80\x80\x80\x80"), -1); /* old six-byte form */
    cr_assert_eq(s_count("\xFE"), -1);
    cr_assert_eq(s_count("\xFF"), -1);
}

Test(kv_utf8, truncated_sequences_are_rejected) {
    cr_assert_eq(s_count("\xD0"), -1);
    cr_assert_eq(s_count("\xE4\xB8"), -1);
    cr_assert_eq(s_count("\xF0\x9F\x98"), -1);
    cr_assert_eq(s_count("abc\xF0\x9F"), -1);
    cr_assert_eq(s_count("\xD0\x61\x62"), -1);                                 /* then "ab" */
    cr_assert_eq(s_count("\xE4\xB8\x61"), -1);                                 /* then "a" */
    cr_assert_eq(s_count("\xF0\x9F\x98\x61\x62\x63\x64\x65\x66\x67\x68"), -1); /* then "abcdefgh" */
}

Test(kv_utf8, stray_continuation_bytes_are_rejected) {
    cr_assert_eq(s_count("\x80"), -1);
    cr_assert_eq(s_count("\xBF"), -1);
    cr_assert_eq(s_count("a\x80z"), -1);
    cr_assert_eq(s_count("\xD0\xB6\xB6"), -1); /* one continuation too many */
    cr_assert_eq(s_count("\xF0\x9F\x98\x80\x80"), -1);
}

Test(kv_utf8, nul_is_rejected_at_every_position) {
    char text[40];
    for (size_t len = 1; len <= sizeof text; len++) {
        for (size_t at = 0; at < len; at++) {
            memset(text, 'a', len);
            text[at] = '\0';
            cr_assert_eq(s_count_bytes(text, len), -1, "NUL at %zu of %zu", at, len);
        }
    }
}

Test(kv_utf8, bad_byte_is_found_at_every_position_of_ascii_text) {
    char text[40];
    for (size_t at = 0; at < sizeof text; at++) {
        memset(text, 'a', sizeof text);
        text[at] = '\xFF';
        cr_assert_eq(s_count_bytes(text, sizeof text), -1, "0xFF at %zu", at);
    }
}

Test(kv_utf8, multibyte_character_is_counted_at_every_position_of_ascii_text) {
    char text[40];
    for (size_t at = 0; at + 4 <= sizeof text; at++) {
        memset(text, 'a', sizeof text);
        memcpy(text + at, s_emoji, sizeof s_emoji);
        cr_assert_eq(s_count_bytes(text, sizeof text), (long)sizeof text - 3, "emoji at %zu", at);
    }
}

Test(kv_utf8, unaligned_text_counts_the_same) {
    char buffer[8 + 64];
    for (size_t offset = 0; offset < 8; offset++) {
        memset(buffer, 'x', sizeof buffer);
        memcpy(buffer + offset + 20, s_zhe, sizeof s_zhe);
        cr_assert_eq(kv_utf8_count(buffer + offset, 64), 63, "offset %zu", offset);
    }
}

Test(kv_utf8, long_texts_count_every_character) {
    char text[256 * 4];
    for (size_t i = 0; i < 256; i++) memcpy(text + i * 4, s_emoji, sizeof s_emoji);
    cr_assert_eq(s_count_bytes(text, sizeof text), 256);
    memset(text, 'a', sizeof text);
    cr_assert_eq(s_count_bytes(text, sizeof text), (long)sizeof text);
}

Test(kv_utf8, every_sequence_of_up_to_three_bytes_matches_the_reference) {
    unsigned char bytes[3];
    for (unsigned a = 0; a < 256; a++) {
        bytes[0] = (unsigned char)a;
        cr_assert(s_agrees_padded(bytes, 1), "%02X", a);
        for (unsigned b = 0; b < 256; b++) {
            bytes[1] = (unsigned char)b;
            cr_assert(s_agrees_padded(bytes, 2), "%02X %02X", a, b);
            for (unsigned c = 0; c < 256; c++) {
                bytes[2] = (unsigned char)c;
                cr_assert(s_agrees_padded(bytes, 3), "%02X %02X %02X", a, b, c);
            }
        }
    }
}

Test(kv_utf8, four_byte_sequences_match_the_reference) {
    /* Every lead and second byte; the last two bytes from each range edge. */
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90,
                                          0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xF0, 0xFF};
    unsigned char bytes[4];
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (size_t c = 0; c < sizeof tails; c++) {
                for (size_t d = 0; d < sizeof tails; d++) {
                    bytes[0] = (unsigned char)a;
                    bytes[1] = (unsigned char)b;
                    bytes[2] = tails[c];
                    bytes[3] = tails[d];
                    cr_assert(s_agrees_padded(bytes, 4), "%02X %02X %02X %02X", a, b, tails[c],
                              tails[d]);
                }
            }
        }
    }
}
