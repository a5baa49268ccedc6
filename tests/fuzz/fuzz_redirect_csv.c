/* fuzz_redirect_csv.c: libFuzzer driver for the redirect table's CSV parser.
 *
 * Parses the input as a redirect table. A rejected input must come with a
 * "line N: " message. An accepted one must hold only rows that obey the
 * format's promises (code 1-256 bytes without control characters; URL of
 * visible ASCII starting with '/' or http(s)://), every row must be found
 * again by its code, and writing the rows back out as fully quoted CSV and
 * parsing that must give the same table: this checks quoting and
 * unquoting against each other. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "gateway/redirect.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const lv_redirect_table_t *t;
    lv_buf_t csv;
    size_t rows;
} walk_t;

static void append_quoted(lv_buf_t *b, lv_slice_t s)
{
    lv_buf_append(b, "\"", 1);
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '"')
            lv_buf_append(b, "\"", 1);
        lv_buf_append(b, &s.ptr[i], 1);
    }
    lv_buf_append(b, "\"", 1);
}

static void check_row(void *ctx, lv_slice_t code, lv_slice_t url)
{
    walk_t *w = ctx;
    w->rows++;
    REQUIRE(code.len >= 1 && code.len <= LV_REDIRECT_CODE_MAX);
    for (size_t i = 0; i < code.len; i++)
        REQUIRE((unsigned char)code.ptr[i] >= 0x20 && code.ptr[i] != 0x7f);
    REQUIRE(url.len >= 1);
    for (size_t i = 0; i < url.len; i++)
        REQUIRE((unsigned char)url.ptr[i] > 0x20 && (unsigned char)url.ptr[i] < 0x7f);
    if (url.ptr[0] == '/')
        REQUIRE(url.len == 1 || (url.ptr[1] != '/' && url.ptr[1] != '\\'));
    else
        REQUIRE((url.len > 7 && strncasecmp(url.ptr, "http://", 7) == 0) ||
                (url.len > 8 && strncasecmp(url.ptr, "https://", 8) == 0));

    lv_slice_t found;
    REQUIRE(lv_redirect_table_lookup(w->t, code, &found));
    REQUIRE(found.ptr == url.ptr && found.len == url.len);
    /* a strict prefix is another code, which must map to its own URL */
    if (code.len > 1 && lv_redirect_table_lookup(w->t, lv_slice(code.ptr, code.len - 1), &found))
        REQUIRE(found.ptr != url.ptr);

    append_quoted(&w->csv, code);
    lv_buf_append(&w->csv, ",", 1);
    append_quoted(&w->csv, url);
    lv_buf_append(&w->csv, "\r\n", 2);
}

typedef struct {
    const lv_redirect_table_t *original;
    size_t rows;
} compare_t;

static void compare_row(void *ctx, lv_slice_t code, lv_slice_t url)
{
    compare_t *c = ctx;
    lv_slice_t found;
    REQUIRE(lv_redirect_table_lookup(c->original, code, &found));
    REQUIRE(lv_slice_eq(found, url));
    c->rows++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    memset(err, 'x', sizeof(err));
    lv_redirect_table_t *t = lv_redirect_table_parse((const char *)data, size, err, sizeof(err));
    if (!t) {
        REQUIRE(memchr(err, '\0', sizeof(err)));
        REQUIRE(strncmp(err, "line ", 5) == 0);
        return 0;
    }
    walk_t w = {.t = t, .csv = LV_BUF_INIT};
    lv_redirect_table_foreach(t, check_row, &w);
    REQUIRE(w.rows == lv_redirect_table_count(t));

    lv_redirect_table_t *again = lv_redirect_table_parse(lv_buf_data(&w.csv), lv_buf_len(&w.csv), err, sizeof(err));
    if (!again) {
        fprintf(stderr, "re-parse failed: %s\n", err);
        abort();
    }
    compare_t c = {.original = t};
    lv_redirect_table_foreach(again, compare_row, &c);
    REQUIRE(c.rows == w.rows && lv_redirect_table_count(again) == w.rows);

    lv_redirect_table_free(again);
    lv_buf_free(&w.csv);
    lv_redirect_table_free(t);
    return 0;
}
