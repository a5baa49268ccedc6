/* redirect_test.c: unit tests for src/gateway/redirect.c.
 *
 * Most tests parse CSV from memory (lv_redirect_table_parse); the file
 * loader gets its own tests for OS errors. Each error rule of the format
 * has a case checking the exact "line N: ..." message, so a change in
 * wording is a deliberate change here too. */
#include "gateway/redirect.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* Parses a NUL-terminated CSV. */
static lv_redirect_table_t *parse(const char *csv, char *err, size_t errlen)
{
    return lv_redirect_table_parse(csv, strlen(csv), err, errlen);
}

/* The URL for code, or NULL when absent (kept in a static buffer). */
static const char *url_of(const lv_redirect_table_t *t, const char *code)
{
    static char out[4096];
    lv_slice_t url;
    if (!lv_redirect_table_lookup(t, lv_slice_cstr(code), &url))
        return NULL;
    snprintf(out, sizeof(out), "%.*s", (int)url.len, url.ptr);
    return out;
}

static void test_basic_rows(void)
{
    char err[256] = "";
    lv_redirect_table_t *t = parse("abc,https://example.com/landing?utm=tv\n"
                                   "xyz,/local/path\n"
                                   "Abc,http://example.org\n",
                                   err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 3);
    CHECK_STR(url_of(t, "abc"), "https://example.com/landing?utm=tv");
    CHECK_STR(url_of(t, "xyz"), "/local/path");
    CHECK_STR(url_of(t, "Abc"), "http://example.org");
    CHECK(url_of(t, "ABC") == NULL);
    CHECK(lv_redirect_table_memory(t) > 0);
    lv_redirect_table_free(t);
}

static void test_lookup_absent_and_prefix(void)
{
    char err[256];
    lv_redirect_table_t *t = parse("ab,/ab\nabcd,/abcd\n", err, sizeof(err));
    CHECK(t);
    CHECK_STR(url_of(t, "ab"), "/ab");
    CHECK_STR(url_of(t, "abcd"), "/abcd");
    CHECK(url_of(t, "a") == NULL);
    CHECK(url_of(t, "abc") == NULL);
    CHECK(url_of(t, "abcde") == NULL);
    CHECK(url_of(t, "b") == NULL);
    CHECK(url_of(t, "") == NULL);
    lv_slice_t url = LV_SLICE_LIT("untouched");
    char big[300];
    memset(big, 'a', sizeof(big));
    CHECK(!lv_redirect_table_lookup(t, lv_slice(big, sizeof(big)), &url));
    CHECK(!lv_redirect_table_lookup(t, lv_slice(NULL, 0), &url));
    CHECK(!lv_redirect_table_lookup(NULL, LV_SLICE_LIT("ab"), &url));
    CHECK_SLICE(url, "untouched");
    /* a code need not be NUL-terminated, and only its bytes count */
    const char code[] = {'a', 'b', 'c', 'd'};
    CHECK(lv_redirect_table_lookup(t, lv_slice(code, 2), &url));
    CHECK_SLICE(url, "/ab");
    lv_redirect_table_free(t);
}

static void test_format_features(void)
{
    char err[256] = "";
    /* BOM, header, CRLF, comments, blank and space-only lines, quoting,
     * no line end at the end of the file. */
    const char csv[] = "\xEF\xBB\xBF"
                       "code,url\r\n"
                       "# a comment, with a comma\r\n"
                       "\r\n"
                       "   \t \n"
                       "plain,/p\r\n"
                       "\"quoted\",\"/q\"\n"
                       "\"a,b\",\"https://example.com/?list=1,2,3\"\n"
                       "\"say \"\"hi\"\"\",\"/x\"\"y\"\n"
                       "\"#notcomment\",/hash\n"
                       "caf\xc3\xa9,/cafe\n"
                       " sp ,/spaces-in-code-are-data\n"
                       "UPPER,HTTPS://EXAMPLE.COM/Up\n"
                       "last,/no-newline";
    lv_redirect_table_t *t = lv_redirect_table_parse(csv, sizeof(csv) - 1, err, sizeof(err));
    if (!t)
        fprintf(stderr, "  %s\n", err);
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 9);
    CHECK(url_of(t, "code") == NULL);
    CHECK_STR(url_of(t, "plain"), "/p");
    CHECK_STR(url_of(t, "quoted"), "/q");
    CHECK_STR(url_of(t, "a,b"), "https://example.com/?list=1,2,3");
    CHECK_STR(url_of(t, "say \"hi\""), "/x\"y");
    CHECK_STR(url_of(t, "#notcomment"), "/hash");
    CHECK_STR(url_of(t, "caf\xc3\xa9"), "/cafe");
    CHECK_STR(url_of(t, " sp "), "/spaces-in-code-are-data");
    CHECK_STR(url_of(t, "UPPER"), "HTTPS://EXAMPLE.COM/Up");
    CHECK_STR(url_of(t, "last"), "/no-newline");
    lv_redirect_table_free(t);

    /* The header is recognised only as the first row, and only exactly. */
    t = parse("# leading comment\n\ncode,url\nx,/x\n", err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 1);
    lv_redirect_table_free(t);
    t = parse("x,/x\ncode,url\n", err, sizeof(err));
    CHECK(!t);
    CHECK_STR(err, "line 2: URL must be an absolute http:// or https:// URL or a path starting with '/'");
    t = parse("Code,URL\n", err, sizeof(err));
    CHECK(!t);
    CHECK_STR(err, "line 1: URL must be an absolute http:// or https:// URL or a path starting with '/'");
    /* a code of exactly 256 bytes is fine */
    char row[400];
    memset(row, 'k', 256);
    strcpy(row + 256, ",/k");
    t = parse(row, err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 1);
    lv_redirect_table_free(t);
}

static void test_empty_inputs(void)
{
    char err[256];
    const char *empties[] = {"", "\n", "\r\n\r\n", "code,url\n", "code,url", "# only\n# comments", "\xEF\xBB\xBF"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(*empties); i++) {
        lv_redirect_table_t *t = parse(empties[i], err, sizeof(err));
        CHECK(t);
        CHECK_EQ(lv_redirect_table_count(t), 0);
        lv_slice_t url;
        CHECK(!lv_redirect_table_lookup(t, LV_SLICE_LIT("code"), &url));
        lv_redirect_table_free(t);
    }
    lv_redirect_table_t *t = lv_redirect_table_parse(NULL, 0, err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 0);
    lv_redirect_table_free(t);
}

static const struct {
    const char *csv;
    size_t len; /* 0: strlen(csv) */
    const char *error;
} error_cases[] = {
    {"a\n", 0, "line 1: expected 2 fields (code,url), found 1"},
    {"ok,/1\na,/x,y\n", 0, "line 2: expected 2 fields (code,url), found 3"},
    {"a,/x,\n", 0, "line 1: expected 2 fields (code,url), found 3"},
    {"a,\"/x\",\"y\"\n", 0, "line 1: expected 2 fields (code,url), found 3"},
    {",/x\n", 0, "line 1: empty code"},
    {"\"\",/x\n", 0, "line 1: empty code"},
    {"a\tb,/x\n", 0, "line 1: control character 0x09 in code"},
    {"a\x7f,/x\n", 0, "line 1: control character 0x7F in code"},
    {"a,\n", 0, "line 1: empty URL"},
    {"a,\"\"\n", 0, "line 1: empty URL"},
    {"a,ftp://example.com\n", 0, "line 1: URL must be an absolute http:// or https:// URL or a path starting with '/'"},
    {"a,example.com/x\n", 0, "line 1: URL must be an absolute http:// or https:// URL or a path starting with '/'"},
    {"a,javascript:alert(1)\n", 0, "line 1: URL must be an absolute http:// or https:// URL or a path starting with '/'"},
    {"a,http:/x\n", 0, "line 1: URL must be an absolute http:// or https:// URL or a path starting with '/'"},
    {"a,http://\n", 0, "line 1: URL has no host"},
    {"a,https:///path\n", 0, "line 1: URL has no host"},
    {"a,https://?q\n", 0, "line 1: URL has no host"},
    {"a,//evil.example/x\n", 0, "line 1: URL starting with \"//\" would lead to another host; write http:// or https://"},
    {"a,/\\evil.example/x\n", 0, "line 1: URL starting with \"/\\\" would lead to another host; write http:// or https://"},
    {"a,/x y\n", 0, "line 1: space in URL (write it as %20)"},
    {"a,\"/x y\"\n", 0, "line 1: space in URL (write it as %20)"},
    {"a,\"/x\ty\"\n", 0, "line 1: control character 0x09 in URL"},
    {"a,/x\x01y\n", 0, "line 1: control character 0x01 in URL"},
    {"a,/x\ry\n", 0, "line 1: control character 0x0D in URL"},
    {"a,/x\r\r\n", 0, "line 1: control character 0x0D in URL"},
    {"a,/x\x7f\n", 0, "line 1: control character 0x7F in URL"},
    {"a,/x\0y\n", 7, "line 1: control character 0x00 in URL"},
    {"a,/caf\xc3\xa9\n", 0, "line 1: non-ASCII byte 0xC3 in URL (percent-encode it)"},
    {"a,https://example.com/\r\nSet-Cookie: x=1\n", 0, "line 2: expected 2 fields (code,url), found 1"},
    {"\"abc,/x\n", 0, "line 1: unterminated quote"},
    {"a,\"/x\nb\",/y\n", 0, "line 1: unterminated quote"},
    {"a,\"/x\"\"\n", 0, "line 1: unterminated quote"},
    {"\"a\"b,/x\n", 0, "line 1: unexpected 'b' after a closing quote"},
    {"a,\"/x\" \n", 0, "line 1: unexpected byte 0x20 after a closing quote"},
    {"a,\"/x\"\x01\n", 0, "line 1: unexpected byte 0x01 after a closing quote"},
    {"a\"b,/x\n", 0, "line 1: quote inside an unquoted field (quote the whole field and double the quote)"},
    {"a,/x\"y\n", 0, "line 1: quote inside an unquoted field (quote the whole field and double the quote)"},
    {"a,/1\nb,/2\n\n# c\na,/3\n", 0, "line 5: duplicate code \"a\" (first on line 1)"},
    {"\"x,y\",/1\n\"x,y\",/2\n", 0, "line 2: duplicate code \"x,y\" (first on line 1)"},
    /* the first error in file order is the one reported, whichever kind */
    {"a,/1\nb\na,/2\n", 0, "line 2: expected 2 fields (code,url), found 1"},
    {"a,/1\na,/2\nb\n", 0, "line 2: duplicate code \"a\" (first on line 1)"},
    {"a,/1\nb,/2\n\"c,/3\nb,/4\n", 0, "line 3: unterminated quote"},
};

static void test_errors(void)
{
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(*error_cases); i++) {
        char err[256] = "";
        size_t len = error_cases[i].len ? error_cases[i].len : strlen(error_cases[i].csv);
        lv_redirect_table_t *t = lv_redirect_table_parse(error_cases[i].csv, len, err, sizeof(err));
        if (t || strcmp(err, error_cases[i].error) != 0)
            fprintf(stderr, "  case %zu: got \"%s\"\n", i, t ? "(a table)" : err);
        CHECK(!t);
        CHECK_STR(err, error_cases[i].error);
    }
    /* code length limit */
    char row[400], err[256];
    memset(row, 'k', 257);
    strcpy(row + 257, ",/k");
    CHECK(!parse(row, err, sizeof(err)));
    CHECK_STR(err, "line 1: code longer than 256 bytes");
    /* a long duplicate code is shown cut short */
    char code[201], dup[1024];
    memset(code, 'd', 200);
    code[200] = '\0';
    snprintf(dup, sizeof(dup), "%s,/1\n%s,/2\n", code, code);
    CHECK(!parse(dup, err, sizeof(err)));
    CHECK(strncmp(err, "line 2: duplicate code \"dddd", 28) == 0);
    CHECK(strstr(err, "...\" (first on line 1)"));
    /* the same when the rows are more than the few that are parsed ahead
     * of being inserted */
    char many[4096];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "r%d,/%d\n", i, i);
    snprintf(many + n, sizeof(many) - n, "r0,/again\nbroken\n");
    CHECK(!parse(many, err, sizeof(err)));
    CHECK_STR(err, "line 41: duplicate code \"r0\" (first on line 1)");
    snprintf(many + n, sizeof(many) - n, "broken\nr0,/again\n");
    CHECK(!parse(many, err, sizeof(err)));
    CHECK_STR(err, "line 41: expected 2 fields (code,url), found 1");
    snprintf(many + n, sizeof(many) - n, "r39,/again\n");
    CHECK(!parse(many, err, sizeof(err)));
    CHECK_STR(err, "line 41: duplicate code \"r39\" (first on line 40)");
    /* messages never overflow, and a NULL buffer is fine */
    char tiny[10];
    memset(tiny, 'x', sizeof(tiny));
    CHECK(!parse("a\n", tiny, sizeof(tiny)));
    CHECK_STR(tiny, "line 1: e");
    CHECK(!parse("a\n", tiny, 3));
    CHECK_STR(tiny, "li");
    CHECK(!parse("a\n", NULL, 0));
}

/* Every byte value at every position of a URL long enough for the
 * eight-bytes-at-a-time check: exactly 0x21-0x7E may pass, less what an
 * unquoted field cannot hold (',' and '"') and a second '/' or '\' at the
 * start. */
static void test_url_bytes_exhaustive(void)
{
    for (int pos = 1; pos < 20; pos++) {
        for (int b = 0; b < 256; b++) {
            char csv[64];
            int n = snprintf(csv, sizeof(csv), "c,/abcdefghijklmnopqrst");
            csv[2 + pos] = (char)b;
            char err[256];
            lv_redirect_table_t *t = lv_redirect_table_parse(csv, (size_t)n, err, sizeof(err));
            bool ok = b > 0x20 && b < 0x7f && b != '"' && b != ',' && !(pos == 1 && (b == '/' || b == '\\'));
            if (ok != (t != NULL))
                fprintf(stderr, "  byte 0x%02X at %d: %s\n", b, pos, t ? "accepted" : err);
            CHECK_EQ(ok, t != NULL);
            lv_redirect_table_free(t);
        }
    }
}

static void count_rows(void *ctx, lv_slice_t code, lv_slice_t url)
{
    (void)code;
    (void)url;
    (*(size_t *)ctx)++;
}

/* Short rows, so the table outgrows its first estimate and is rehashed. */
static void test_hundred_thousand_rows(void)
{
    enum { N = 100000 };
    size_t cap = (size_t)N * 24 + 32, len = 0;
    char *csv = malloc(cap);
    len += (size_t)snprintf(csv, cap, "code,url\n");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(csv + len, cap - len, "%x,/%d\n", i, i);
    char err[256] = "";
    lv_redirect_table_t *t = lv_redirect_table_parse(csv, len, err, sizeof(err));
    free(csv);
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), N);
    for (int i = 0; i < N; i++) {
        char code[16], want[16];
        snprintf(code, sizeof(code), "%x", i);
        snprintf(want, sizeof(want), "/%d", i);
        lv_slice_t url;
        if (!lv_redirect_table_lookup(t, lv_slice_cstr(code), &url))
            CHECK(!"row missing");
        CHECK_SLICE(url, want);
        snprintf(code, sizeof(code), "%x", i + N);
        if (lv_redirect_table_lookup(t, lv_slice_cstr(code), &url))
            CHECK(!"absent row found");
    }
    size_t seen = 0;
    lv_redirect_table_foreach(t, count_rows, &seen);
    CHECK_EQ(seen, N);
    lv_redirect_table_free(t);
}

static void test_load_file(void)
{
    char path[] = "/tmp/lv_redirect_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char csv[] = "code,url\nqr1,https://example.com/tv\nqr2,/two\n";
    CHECK_EQ(write(fd, csv, sizeof(csv) - 1), (long long)sizeof(csv) - 1);
    close(fd);
    char err[512] = "";
    lv_redirect_table_t *t = lv_redirect_table_load(path, err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 2);
    CHECK_STR(url_of(t, "qr1"), "https://example.com/tv");
    lv_redirect_table_free(t);

    /* errors carry the line; an empty file is an empty table */
    FILE *f = fopen(path, "w");
    fputs("qr1,/1\nqr1,/2\n", f);
    fclose(f);
    CHECK(!lv_redirect_table_load(path, err, sizeof(err)));
    CHECK_STR(err, "line 2: duplicate code \"qr1\" (first on line 1)");
    f = fopen(path, "w");
    fclose(f);
    t = lv_redirect_table_load(path, err, sizeof(err));
    CHECK(t);
    CHECK_EQ(lv_redirect_table_count(t), 0);
    lv_redirect_table_free(t);
    unlink(path);

    CHECK(!lv_redirect_table_load("/nonexistent/dir/table.csv", err, sizeof(err)));
    CHECK_STR(err, "/nonexistent/dir/table.csv: No such file or directory");
    CHECK(!lv_redirect_table_load("/tmp", err, sizeof(err)));
    CHECK_STR(err, "/tmp: Is a directory");
}

int main(void)
{
    LV_RUN(test_basic_rows);
    LV_RUN(test_lookup_absent_and_prefix);
    LV_RUN(test_format_features);
    LV_RUN(test_empty_inputs);
    LV_RUN(test_errors);
    LV_RUN(test_url_bytes_exhaustive);
    LV_RUN(test_hundred_thousand_rows);
    LV_RUN(test_load_file);
    return lv_test_summary();
}
