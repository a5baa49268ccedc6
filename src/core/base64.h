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

/* Appends the decoding of in to out. Padding is required when the input
 * length is not a multiple of 4 only if `strict`; whitespace is never
 * accepted. Returns 0, or -1 on a bad character, bad padding or impossible
 * length, with out restored to its length on entry. */
int lv_base64_decode(lv_slice_t in, lv_buf_t *out, bool strict);

/* Bytes lv_base64_encode appends for n input bytes. */
static inline size_t lv_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

#endif
