/* json_text_test.c: lv_json_string / lv_json_chars escapes (short forms,
 * \u00XX, lower-casing), UTF-8 substitution by maximal subparts, the
 * word-at-a-time fast path at every offset, inputs longer than one block,
 * and random bytes always giving a string jansson reads back;
 * lv_utf8_seq and lv_utf8_text on the edges of table 3-7. Inputs are copied
 * into exactly sized heap buffers so ASan catches any read past the end. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "core/mem.h"
#include "test.h"

#define R "\xef\xbf\xbd" /* U+FFFD */

static char *heap_copy(const char *in, size_t len)
{
    char *p = lv_malloc(len ? len : 1);
    memcpy(p, in, len);
    return p;
}

static void check_json(const char *in, size_t len, const char *want)
{
    char *copy = heap_copy(in, len);
    lv_buf_t b = LV_BUF_INIT;
    lv_json_string(&b, lv_slice(copy, len));
    lv_buf_append(&b, "", 1);
    if (strcmp(lv_buf_data(&b), want) != 0) {
        fprintf(stderr, "  json(%.*s) = %s, want %s\n", (int)len, in, lv_buf_data(&b), want);
        lv_test_failed_now = 1;
    }
    lv_buf_free(&b);
    free(copy);
}

static void test_escapes(void)
{
    check_json("plain", 5, "\"plain\"");
    check_json("", 0, "\"\"");
    check_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    check_json("\n\t\r\b\f\x01\x1f\x7f", 8, "\"\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\"");
    check_json("a\0b", 3, "\"a\\u0000b\"");
    /* The same characters at every offset of an 8-byte word. */
    check_json("12345678\"", 9, "\"12345678\\\"\"");
    check_json("1234567\"8", 9, "\"1234567\\\"8\"");
    check_json("abcdefgh\x01ijklmnop", 17, "\"abcdefgh\\u0001ijklmnop\"");
}

static void test_utf8_substitution(void)
{
    check_json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    check_json("\xff", 1, "\"" R "\"");
    check_json("\xc0\xaf", 2, "\"" R R "\"");          /* overlong: C0 never starts a sequence */
    check_json("\xe0\x80\xaf", 3, "\"" R R R "\"");    /* overlong 3-byte form */
    check_json("\xed\xa0\x80", 3, "\"" R R R "\"");    /* a surrogate */
    check_json("\xf4\x90\x80\x80", 4, "\"" R R R R "\""); /* past U+10FFFF */
    check_json("\xe2\x82", 2, "\"" R "\"");            /* cut short: one maximal subpart */
    check_json("\xe2\x82x", 3, "\"" R "x\"");
    check_json("\xf0\x9f\x98", 3, "\"" R "\"");
    check_json("a\xc3\xa9\xff\xe2\x82", 6, "\"a\xc3\xa9" R R "\"");
}

static void test_lower_and_blocks(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_json_chars(&b, "X-Amz-Target\"", 13, true);
    CHECK_SLICE(lv_buf_slice(&b), "x-amz-target\\\"");
    lv_buf_clear(&b);
    /* Longer than one 4096-byte block, with a sequence across the boundary
     * and escapes on both sides. */
    size_t n = 10000;
    char *in = lv_malloc(n);
    memset(in, 'a', n);
    in[4095] = '\xe2', in[4096] = '\x82', in[4097] = '\xac';
    in[10] = '\n';
    in[9000] = '"';
    lv_json_chars(&b, in, n, false);
    CHECK_EQ(lv_buf_len(&b), n + 2);
    const char *out = lv_buf_data(&b);
    CHECK(memcmp(out + 10, "\\n", 2) == 0);
    CHECK(memcmp(out + 4096, "\xe2\x82\xac", 3) == 0);
    CHECK(memcmp(out + 9001, "\\\"", 2) == 0);
    free(in);
    lv_buf_free(&b);
}

static void test_utf8_seq_and_text(void)
{
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"a", 1), 1);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\xc2\x80", 2), 2);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\xc2\x80", 1), -1);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\xef\xbf\xbf", 3), 3);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\xf4\x8f\xbf\xbf", 4), 4);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\xf4\x8f\xbf", 3), -3);
    CHECK_EQ(lv_utf8_seq((const unsigned char *)"\x80", 1), -1);
    CHECK(lv_utf8_text("", 0));
    CHECK(lv_utf8_text("hello, \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80", 17));
    CHECK(!lv_utf8_text("abc\0def", 7));
    CHECK(!lv_utf8_text("abcdefgh\xff", 9));
    CHECK(!lv_utf8_text("\xed\xa0\x80", 3));
}

/* Any bytes at all come out as a JSON string jansson reads back. */
static void test_random_bytes_are_valid_json(void)
{
    srand(4242);
    char in[64];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand() % (int)sizeof in);
        for (size_t i = 0; i < len; i++)
            in[i] = (char)rand();
        lv_buf_t b = LV_BUF_INIT;
        lv_json_string(&b, lv_slice(in, len));
        json_error_t err;
        json_t *v = json_loadb(lv_buf_data(&b), lv_buf_len(&b), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        lv_buf_free(&b);
        if (!v || !json_is_string(v)) {
            fprintf(stderr, "  round %d: not a JSON string: %s\n", round, err.text);
            json_decref(v);
            lv_test_failed_now = 1;
            return;
        }
        /* Valid UTF-8 input comes back byte for byte. */
        if (lv_utf8_text(in, len) &&
            (json_string_length(v) != len || memcmp(json_string_value(v), in, len) != 0)) {
            fprintf(stderr, "  round %d: valid text changed\n", round);
            lv_test_failed_now = 1;
        }
        json_decref(v);
    }
}

int main(void)
{
    LV_RUN(test_escapes);
    LV_RUN(test_utf8_substitution);
    LV_RUN(test_lower_and_blocks);
    LV_RUN(test_utf8_seq_and_text);
    LV_RUN(test_random_bytes_are_valid_json);
    return lv_test_summary();
}
