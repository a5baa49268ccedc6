/* fuzz_base64.c: libFuzzer driver for lv_base64_decode / lv_base64_encode.
 *
 * The input is decoded as it is, strictly and leniently, from an exactly
 * sized copy (so any over-read trips ASan), into buffers that already hold
 * a few bytes. Invariants checked (abort on violation):
 * - a failed decode leaves the buffer exactly as it was;
 * - strict success implies lenient success with the same bytes, and then
 *   encode(decode(x)) == x: strict accepts only canonical encodings;
 * - lenient success gives the length the input's shape implies, and
 *   re-encoding gives back x up to its padding and unused low bits;
 * - encoding the input and decoding that strictly gives the input back. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char sentinel[] = "sentinel";

static bool holds(const lv_buf_t *b, const void *p, size_t n)
{
    return lv_buf_len(b) == n && (n == 0 || memcmp(lv_buf_data(b), p, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    lv_slice_t x = lv_slice(in, size);
    size_t pre = sizeof sentinel - 1;

    lv_buf_t strict = LV_BUF_INIT, lenient = LV_BUF_INIT, again = LV_BUF_INIT;
    lv_buf_append(&strict, sentinel, pre);
    lv_buf_append(&lenient, sentinel, pre);
    int rs = lv_base64_decode(x, &strict, true);
    int rl = lv_base64_decode(x, &lenient, false);
    REQUIRE(rs == 0 || rs == -1);
    REQUIRE(rl == 0 || rl == -1);
    REQUIRE(memcmp(lv_buf_data(&strict), sentinel, pre) == 0);
    REQUIRE(memcmp(lv_buf_data(&lenient), sentinel, pre) == 0);
    if (rs < 0)
        REQUIRE(lv_buf_len(&strict) == pre);
    if (rl < 0)
        REQUIRE(lv_buf_len(&lenient) == pre);

    if (rs == 0) {
        REQUIRE(rl == 0);
        REQUIRE(size % 4 == 0);
        REQUIRE(holds(&lenient, lv_buf_data(&strict), lv_buf_len(&strict)));
        lv_base64_encode(lv_slice(lv_buf_data(&strict) + pre, lv_buf_len(&strict) - pre), &again);
        REQUIRE(holds(&again, in, size));
    }
    if (rl == 0) {
        size_t pad = 0;
        while (pad < size && pad < 2 && in[size - 1 - pad] == '=')
            pad++;
        size_t chars = size - pad, out = lv_buf_len(&lenient) - pre;
        REQUIRE(out == chars / 4 * 3 + (chars % 4 ? chars % 4 - 1 : 0));
        /* Re-encoding matches every character but the last one that
         * carries bits (its unused low bits may differ) and the padding. */
        lv_buf_clear(&again);
        lv_base64_encode(lv_slice(lv_buf_data(&lenient) + pre, out), &again);
        REQUIRE(lv_buf_len(&again) == lv_base64_encoded_len(out));
        REQUIRE(lv_buf_len(&again) >= chars);
        if (chars)
            REQUIRE(memcmp(lv_buf_data(&again), in, chars - 1) == 0);
    }

    /* And the other way round, for any bytes. */
    lv_buf_t enc = LV_BUF_INIT, dec = LV_BUF_INIT;
    lv_base64_encode(x, &enc);
    REQUIRE(lv_buf_len(&enc) == lv_base64_encoded_len(size));
    REQUIRE(lv_base64_decode(lv_buf_slice(&enc), &dec, true) == 0);
    REQUIRE(holds(&dec, in, size));

    lv_buf_free(&strict);
    lv_buf_free(&lenient);
    lv_buf_free(&again);
    lv_buf_free(&enc);
    lv_buf_free(&dec);
    free(in);
    return 0;
}
