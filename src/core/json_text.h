/* json_text.h: writing JSON strings by hand, for the places that build JSON
 * faster than a DOM would (function events, Runtime and Invoke API errors),
 * and UTF-8 validation, which JSON text needs.
 *
 * Any bytes at all come out as a valid JSON string: '"', '\\' and control
 * characters are escaped, well-formed UTF-8 is copied as it is, and each
 * maximal ill-formed subsequence becomes one U+FFFD (the Unicode
 * "substitution of maximal subparts" practice). */
#ifndef LV_CORE_JSON_TEXT_H
#define LV_CORE_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/slice.h"

/* Length of the well-formed UTF-8 sequence at p (1 to 4 bytes), or minus the
 * length of the maximal ill-formed prefix there (-1 to -3). Well-formed means
 * Unicode table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF. n (bytes available at p) >= 1. */
int lv_utf8_seq(const unsigned char *p, size_t n);

/* True if s is entirely well-formed UTF-8 with no NUL byte: text that a JSON
 * string carries without loss. */
bool lv_utf8_text(const char *s, size_t n);

/* Appends the escaped contents of a JSON string for s[0..n) to b, without
 * the quotes. With lower, ASCII letters are lower-cased (HTTP header names).
 * ASCII runs are copied 8 bytes per step. */
void lv_json_chars(lv_buf_t *b, const char *s, size_t n, bool lower);

/* Appends s as a quoted JSON string. */
void lv_json_string(lv_buf_t *b, lv_slice_t s);

#endif
