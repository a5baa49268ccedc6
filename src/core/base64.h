/* base64.h: standard base64 (RFC 4648 section 4, with padding), used by the
 * function event mapping and the AWS-compatible APIs. */
#ifndef LV_CORE_BASE64_H
#define LV_CORE_BASE64_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/slice.h"

/* Appends the encoding of in to out. */
void lv_base64_encode(lv_slice_t in, lv_buf_t *out);

/* Appends the decoding of in to out. With `strict`, only the canonical
 * encoding is accepted: the length is a multiple of 4 with '=' padding, and
 * the unused bits of the last character are zero, so encode(decode(x)) == x.
 * Without it, padding may be left out (but if present must be right) and
 * unused bits are ignored, as most decoders do. Either way whitespace, line
 * breaks, '=' before the end and a lone character in the last group (length
 * % 4 == 1) are rejected. Returns 0, or -1 with out holding exactly what it
 * held on entry. The empty input decodes to nothing. */
int lv_base64_decode(lv_slice_t in, lv_buf_t *out, bool strict);

/* Bytes lv_base64_encode appends for n input bytes. */
static inline size_t lv_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

#endif
