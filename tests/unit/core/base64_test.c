/* base64_test.c: lv_base64_encode / lv_base64_decode against the RFC 4648
 * vectors, every way an input can be malformed, strict versus lenient
 * padding and trailing bits, and round trips over all 1- and 2-byte inputs
 * and random lengths. Inputs are copied into exactly sized heap buffers so
 * ASan catches any read past the end. */
#include <stdint.h>
#include <stdlib.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/mem.h"
#include "test.h"

/* CHECK_SLICE on a buffer's bytes; an empty buffer may have no storage, and
 * memcmp must not see its NULL pointer even for zero bytes. */
static inline lv_slice_t buf_bytes(const lv_buf_t *b)
{
    lv_slice_t s = lv_buf_slice(b);
    return s.ptr ? s : lv_slice("", 0);
}
#define CHECK_BUF(b, str) CHECK_SLICE(buf_bytes(b), str)

/* Runs a decode on an exactly sized copy of s (length n). */
static int decode_n(const char *s, size_t n, lv_buf_t *out, bool strict)
{
    char *copy = n ? lv_malloc(n) : NULL;
    if (n)
        memcpy(copy, s, n);
    int rc = lv_base64_decode(lv_slice(copy, n), out, strict);
    free(copy);
    return rc;
}

static int decode(const char *s, lv_buf_t *out, bool strict)
{
    return decode_n(s, strlen(s), out, strict);
}

static const struct {
    const char *plain, *encoded;
} rfc_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void)
{
    for (size_t i = 0; i < sizeof rfc_vectors / sizeof rfc_vectors[0]; i++) {
        lv_buf_t b = LV_BUF_INIT;
        lv_base64_encode(lv_slice_cstr(rfc_vectors[i].plain), &b);
        CHECK_BUF(&b, rfc_vectors[i].encoded);
        CHECK_EQ(lv_buf_len(&b), lv_base64_encoded_len(strlen(rfc_vectors[i].plain)));
        lv_buf_clear(&b);
        CHECK_EQ(decode(rfc_vectors[i].encoded, &b, true), 0);
        CHECK_BUF(&b, rfc_vectors[i].plain);
        lv_buf_clear(&b);
        CHECK_EQ(decode(rfc_vectors[i].encoded, &b, false), 0);
        CHECK_BUF(&b, rfc_vectors[i].plain);
        lv_buf_free(&b);
    }
}

static void test_whole_alphabet(void)
{
    /* 48 bytes whose sextets are 0, 1, ..., 63 in order. */
    uint8_t bytes[48];
    for (int i = 0; i < 16; i++) {
        uint32_t v = (uint32_t)(4 * i) << 18 | (uint32_t)(4 * i + 1) << 12 | (uint32_t)(4 * i + 2) << 6 |
                     (uint32_t)(4 * i + 3);
        bytes[3 * i] = (uint8_t)(v >> 16);
        bytes[3 * i + 1] = (uint8_t)(v >> 8);
        bytes[3 * i + 2] = (uint8_t)v;
    }
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    lv_buf_t b = LV_BUF_INIT;
    lv_base64_encode(lv_slice((const char *)bytes, sizeof bytes), &b);
    CHECK_BUF(&b, alphabet);
    lv_buf_clear(&b);
    CHECK_EQ(decode(alphabet, &b, true), 0);
    CHECK_EQ(lv_buf_len(&b), sizeof bytes);
    CHECK(memcmp(lv_buf_data(&b), bytes, sizeof bytes) == 0);
    lv_buf_clear(&b);
    lv_base64_encode(lv_slice("\xfb\xff", 2), &b);
    CHECK_BUF(&b, "+/8=");
    lv_buf_free(&b);
}

static void test_appends(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "x:");
    lv_base64_encode(LV_SLICE_LIT("hi"), &b);
    CHECK_BUF(&b, "x:aGk=");
    CHECK_EQ(decode("aGk=", &b, true), 0);
    CHECK_BUF(&b, "x:aGk=hi");
    /* Nothing in, nothing out, and no allocation needed. */
    lv_buf_t e = LV_BUF_INIT;
    lv_base64_encode(lv_slice(NULL, 0), &e);
    CHECK_EQ(decode_n(NULL, 0, &e, true), 0);
    CHECK_EQ(decode_n(NULL, 0, &e, false), 0);
    CHECK_EQ(lv_buf_len(&e), 0);
    lv_buf_free(&b);
    lv_buf_free(&e);
}

static void test_missing_padding(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {{"Zg", "f"}, {"Zm8", "fo"}, {"Zm9vYg", "foob"}, {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lv_buf_t b = LV_BUF_INIT;
        CHECK_EQ(decode(cases[i].in, &b, false), 0);
        CHECK_BUF(&b, cases[i].out);
        lv_buf_clear(&b);
        int strict_rc = decode(cases[i].in, &b, true);
        CHECK_EQ(strict_rc, strlen(cases[i].in) % 4 == 0 ? 0 : -1);
        lv_buf_free(&b);
    }
}

static void test_trailing_bits(void)
{
    /* "Zh==" and "Zm9=" carry set bits below the last byte: not canonical. */
    static const struct {
        const char *in, *lenient;
    } cases[] = {{"Zh==", "f"}, {"Zm9=", "fo"}, {"Zh", "f"}, {"Zm9", "fo"}, {"Zm9vY///", "foo\x63\xff\xff"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lv_buf_t b = LV_BUF_INIT;
        CHECK_EQ(decode(cases[i].in, &b, false), 0);
        CHECK_BUF(&b, cases[i].lenient);
        lv_buf_clear(&b);
        int want = i < 4 ? -1 : 0;
        CHECK_EQ(decode(cases[i].in, &b, true), want);
        lv_buf_free(&b);
    }
}

static const char *const malformed[] = {
    "Z", "Zm9vY", "Zm9vYmFyZ", /* a lone character in the last group */
    "Zg=", "Zm8==", "Z=", "Zm9vYg=",      /* padding that does not complete a group */
    "=", "==", "===", "====", "Z===", "A===", "Zm9vY===", /* too much padding */
    "Zg==Zg==", "Zg=a", "Z=g=", "=Zm9", "Zm=v", /* '=' before the end */
    "Zm9v\n", "Zm9v\r\n", " Zm9v", "Zm 9v", "Zm9\tv", "Zm9v ", /* whitespace */
    "Zm-v", "Zm_v", "Zm.v", "Zm9v!", "Zm9v@AAA", /* outside the alphabet (url-safe too) */
    "Zm9\x80", "\xffZm9", "Zm9\x7f",
};

static void test_malformed_rejected(void)
{
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        for (int strict = 0; strict < 2; strict++) {
            lv_buf_t b = LV_BUF_INIT;
            lv_buf_append_str(&b, "keep");
            if (decode(malformed[i], &b, strict) != -1)
                LV_FAIL_("\"%s\" (strict %d) was accepted", malformed[i], strict);
            CHECK_BUF(&b, "keep");
            lv_buf_free(&b);
        }
    }
}

static void test_nul_rejected(void)
{
    lv_buf_t b = LV_BUF_INIT;
    CHECK_EQ(decode_n("Zm9\0", 4, &b, false), -1);
    CHECK_EQ(decode_n("\0\0\0\0", 4, &b, true), -1);
    CHECK_EQ(lv_buf_len(&b), 0);
    lv_buf_free(&b);
}

static void test_error_in_last_group_keeps_out(void)
{
    /* The full groups are written into the tail before the bad last group
     * is seen; none of it may show. */
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "prefix");
    CHECK_EQ(decode("Zm9vYmFyZm9vYmFy!A==", &b, false), -1);
    CHECK_BUF(&b, "prefix");
    CHECK_EQ(decode("Zm9vYmFyZm9vYmFyZh==", &b, true), -1);
    CHECK_BUF(&b, "prefix");
    lv_buf_free(&b);
}

static void test_every_byte_in_every_position(void)
{
    /* Each byte value as each character of a 4-character group: valid iff it
     * is in the alphabet, whatever the position. */
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int c = 0; c < 256; c++) {
        bool in_alphabet = c && strchr(alphabet, c) != NULL;
        for (int pos = 0; pos < 4; pos++) {
            char group[4] = {'Q', 'U', 'J', 'D'};
            group[pos] = (char)c;
            lv_buf_t b = LV_BUF_INIT;
            int rc = decode_n(group, 4, &b, false);
            if (c == '=' && pos == 3)
                CHECK_EQ(rc, 0); /* "QUJ=" is valid padding */
            else
                CHECK_EQ(rc, in_alphabet ? 0 : -1);
            lv_buf_free(&b);
        }
    }
}

static void test_round_trip_all_short_inputs(void)
{
    lv_buf_t enc = LV_BUF_INIT, dec = LV_BUF_INIT;
    for (unsigned v = 0; v < 65536 + 256; v++) {
        uint8_t in[2];
        size_t n = v < 256 ? 1 : 2;
        if (n == 1) {
            in[0] = (uint8_t)v;
        } else {
            in[0] = (uint8_t)((v - 256) >> 8);
            in[1] = (uint8_t)(v - 256);
        }
        lv_buf_clear(&enc);
        lv_buf_clear(&dec);
        lv_base64_encode(lv_slice((const char *)in, n), &enc);
        CHECK_EQ(lv_buf_len(&enc), 4);
        CHECK_EQ(decode_n(lv_buf_data(&enc), 4, &dec, true), 0);
        CHECK_EQ(lv_buf_len(&dec), n);
        CHECK(memcmp(lv_buf_data(&dec), in, n) == 0);
        /* Without its padding it still decodes, leniently. */
        lv_buf_clear(&dec);
        CHECK_EQ(decode_n(lv_buf_data(&enc), n + 1, &dec, false), 0);
        CHECK(lv_buf_len(&dec) == n && memcmp(lv_buf_data(&dec), in, n) == 0);
    }
    lv_buf_free(&enc);
    lv_buf_free(&dec);
}

static void test_round_trip_random(void)
{
    srand(4648);
    lv_buf_t enc = LV_BUF_INIT, dec = LV_BUF_INIT;
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(rand() % 700);
        if (iter == 0)
            n = 1 << 20;
        uint8_t *in = lv_malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)rand();
        lv_buf_clear(&enc);
        lv_buf_clear(&dec);
        lv_base64_encode(lv_slice((const char *)in, n), &enc);
        CHECK_EQ(lv_buf_len(&enc), lv_base64_encoded_len(n));
        CHECK_EQ(decode_n(lv_buf_data(&enc), lv_buf_len(&enc), &dec, true), 0);
        CHECK_EQ(lv_buf_len(&dec), n);
        CHECK(n == 0 || memcmp(lv_buf_data(&dec), in, n) == 0);
        free(in);
    }
    lv_buf_free(&enc);
    lv_buf_free(&dec);
}

static void test_encoded_len(void)
{
    CHECK_EQ(lv_base64_encoded_len(0), 0);
    CHECK_EQ(lv_base64_encoded_len(1), 4);
    CHECK_EQ(lv_base64_encoded_len(2), 4);
    CHECK_EQ(lv_base64_encoded_len(3), 4);
    CHECK_EQ(lv_base64_encoded_len(4), 8);
    CHECK_EQ(lv_base64_encoded_len(3000), 4000);
}

int main(void)
{
    LV_RUN(test_rfc4648_vectors);
    LV_RUN(test_whole_alphabet);
    LV_RUN(test_appends);
    LV_RUN(test_missing_padding);
    LV_RUN(test_trailing_bits);
    LV_RUN(test_malformed_rejected);
    LV_RUN(test_nul_rejected);
    LV_RUN(test_error_in_last_group_keeps_out);
    LV_RUN(test_every_byte_in_every_position);
    LV_RUN(test_round_trip_all_short_inputs);
    LV_RUN(test_round_trip_random);
    LV_RUN(test_encoded_len);
    return lv_test_summary();
}
