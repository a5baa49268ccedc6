/* parser_test.c: unit tests for src/http/parser.c.
 *
 * Most cases are one line in a table: the input, the expected result (or
 * status) and, for accepted requests, the fields. Every input is parsed every
 * way a server meets it, and all the ways must agree:
 *   - whole, from a copy that ends exactly at a PROT_NONE guard page, so any
 *     read past the end crashes even without ASan (picohttpparser's trick);
 *   - a byte at a time, each prefix also ending at the guard page, both
 *     resuming (prev_len = bytes seen before) and starting over (prev_len 0).
 * Chunked bodies are decoded whole, split at every byte boundary, and a byte
 * at a time. */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http/parser.h"
#include "test.h"

#define IN(s) s, sizeof(s) - 1
#define ALL (-100) /* the whole input is the head */
#define INC LV_HTTP_INCOMPLETE
#define ERR LV_HTTP_ERROR
#define MAX_HEAD 8192

/* ------------------------------------------------------------------------ */
/* Guard pages                                                              */

#define GUARD_PAGES 32 /* readable pages between the two guards */

/* Two areas: one holds the whole-buffer parse, whose slices must stay valid
 * while the other is reused for every prefix. */
enum { WHOLE, STEP };
static char *guard_area[2];
static size_t page_size;

static void guard_init(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < 2; i++) {
        guard_area[i] = mmap(NULL, (GUARD_PAGES + 2) * page_size, PROT_NONE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (guard_area[i] == MAP_FAILED ||
            mprotect(guard_area[i] + page_size, GUARD_PAGES * page_size,
                     PROT_READ | PROT_WRITE) != 0) {
            perror("guard pages");
            exit(2);
        }
    }
}

/* Copies s[0..len) into an area so that its last byte is the last readable
 * byte before a PROT_NONE page. */
static char *guarded(int area, const char *s, size_t len)
{
    if (len > GUARD_PAGES * page_size)
        abort();
    char *p = guard_area[area] + (GUARD_PAGES + 1) * page_size - len;
    memcpy(p, s, len);
    return p;
}

static void print_escaped(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "  %s: \"", what);
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"%s\n", n > 400 ? "..." : "");
}

/* ------------------------------------------------------------------------ */
/* Parsing every way                                                        */

static bool same_slice(lv_slice_t a, lv_slice_t b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static bool same_request(const lv_http_request_t *a, const lv_http_request_t *b)
{
    if (!same_slice(a->method, b->method) || !same_slice(a->target, b->target) ||
        !same_slice(a->path, b->path) || !same_slice(a->query, b->query) ||
        !same_slice(a->host, b->host) || a->minor_version != b->minor_version ||
        a->num_headers != b->num_headers || a->content_length != b->content_length ||
        a->chunked != b->chunked || a->keep_alive != b->keep_alive ||
        a->expect_continue != b->expect_continue)
        return false;
    for (size_t i = 0; i < a->num_headers; i++)
        if (!same_slice(a->headers[i].name, b->headers[i].name) ||
            !same_slice(a->headers[i].value, b->headers[i].value))
            return false;
    return true;
}

/* A slice must lie inside buf[0..len), or be one of the parser's static
 * strings (an empty value or the implied "/" of an absolute URL). */
static bool inside(lv_slice_t s, const char *buf, size_t len)
{
    if (s.len == 0 || (s.len == 1 && s.ptr[0] == '/' && !(s.ptr >= buf && s.ptr < buf + len)))
        return true;
    return s.ptr >= buf && s.ptr + s.len <= buf + len;
}

static bool request_inside(const lv_http_request_t *r, const char *buf, size_t len)
{
    if (!inside(r->method, buf, len) || !inside(r->target, buf, len) ||
        !inside(r->path, buf, len) || !inside(r->query, buf, len) || !inside(r->host, buf, len))
        return false;
    for (size_t i = 0; i < r->num_headers; i++)
        if (!inside(r->headers[i].name, buf, len) || !inside(r->headers[i].value, buf, len))
            return false;
    return true;
}

static lv_http_request_t req_whole, req_step;

/* Parses in[0..len) every way; all must agree. Leaves the result and fields of
 * the whole-buffer parse in *r, *status and req_whole. */
static void parse_request_every_way(const char *in, size_t len, size_t max, ssize_t *r, int *status)
{
    char *g = guarded(WHOLE, in, len);
    *status = 0;
    *r = lv_http_parse_request(g, len, 0, max, &req_whole, status);
    if (*r >= 0 && !request_inside(&req_whole, g, len)) {
        print_escaped("input", in, len);
        CHECK(!"a slice points outside the buffer");
    }
    if (*r == ERR && (*status < 400 || *status > 599)) {
        print_escaped("input", in, len);
        CHECK_INT(*status, >=, 400);
    }

    /* A byte at a time, resuming; and each prefix again from scratch. */
    ssize_t rs = INC;
    int ss = 0;
    size_t i, prev = 0;
    for (i = 0; i <= len; i++) {
        g = guarded(STEP, in, i);
        int s0 = 0;
        ssize_t r0 = lv_http_parse_request(g, i, 0, max, &req_step, &s0);
        ss = 0;
        rs = lv_http_parse_request(g, i, prev, max, &req_step, &ss);
        if (rs != r0 || (rs == ERR && ss != s0)) {
            print_escaped("input", in, len);
            fprintf(stderr, "  prefix %zu: resumed %zd/%d, from scratch %zd/%d\n", i, rs, ss, r0,
                    s0);
            CHECK(!"resuming changed the answer");
        }
        if (rs != INC)
            break;
        prev = i;
    }
    if (rs != *r || (rs == ERR && ss != *status) || (rs >= 0 && !same_request(&req_whole, &req_step))) {
        print_escaped("input", in, len);
        fprintf(stderr, "  whole: %zd/%d, byte at a time: %zd/%d after %zu bytes\n", *r, *status,
                rs, ss, i);
        CHECK(!"byte-at-a-time parse disagrees with the whole-buffer parse");
    }
}

/* ------------------------------------------------------------------------ */
/* Accept / reject table                                                    */

typedef struct {
    const char *in;
    size_t len;
    ssize_t want; /* ALL, INC, ERR or a head length */
    int status;   /* with ERR */
} req_case_t;

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"

static const req_case_t request_cases[] = {
    /* basics */
    {IN("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"), ALL, 0},
    {IN("GET / HTTP/1.0\r\n\r\n"), ALL, 0},
    {IN("get /x HTTP/1.1\r\nHost: a\r\n\r\n"), ALL, 0},           /* methods are case-sensitive tokens */
    {IN("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},    /* '*' is for OPTIONS only */
    {IN("X!#$%&'*+-.^_`|~9 / HTTP/1.1\r\nHost: a\r\n\r\n"), ALL, 0}, /* every tchar */
    {IN(H11 "X: \x80\xff\t\"v\"\r\n\r\n"), ALL, 0},             /* obs-text, HTAB, quotes in values */
    {IN(H11 "X:\r\n\r\n"), ALL, 0},                              /* empty value */
    {IN(H11 "X:    \t \r\n\r\n"), ALL, 0},                       /* value of only OWS */
    {IN(H11 "\r\nGET"), sizeof(H11 "\r\n") - 1, 0},              /* pipelined: stops after the head */
    /* incomplete */
    {IN(""), INC, 0},
    {IN("G"), INC, 0},
    {IN("GET / HTT"), INC, 0},
    {IN("GET / HTTP/1.1"), INC, 0},
    {IN("GET / HTTP/1.1\r"), INC, 0},
    {IN(H11), INC, 0},
    {IN(H11 "\r"), INC, 0},
    {IN(H11 "X: y"), INC, 0},
    {IN("\r"), INC, 0},
    {IN("\r\n\r\n"), INC, 0},
    /* leading empty lines: skipped and counted, up to 8 */
    {IN("\r\n" H11 "\r\n"), ALL, 0},
    {IN("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" H11 "\r\n"), ALL, 0},
    {IN("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" H11 "\r\n"), ERR, 400},
    {IN("\n" H11 "\r\n"), ERR, 400},
    {IN("\r\r\n" H11 "\r\n"), ERR, 400},
    /* request line */
    {IN(" / HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},             /* empty method */
    {IN("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},         /* two SP */
    {IN("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},         /* HTAB as separator */
    {IN("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), ERR, 400},         /* trailing SP */
    {IN("GET /\r\n\r\n"), ERR, 400},                              /* HTTP/0.9 */
    {IN("G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},          /* not a token */
    {IN("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},      /* raw non-ASCII in the target */
    {IN("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},     /* fragments are never sent */
    {IN("GET a HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},          /* not origin-form */
    {IN("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), ALL, 0},
    {IN("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"), ERR, 501},
    {IN("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},   /* empty authority */
    {IN("GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400}, /* userinfo */
    {IN("GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET http://[::1]:8080/x HTTP/1.1\r\nHost: a\r\n\r\n"), ALL, 0},
    /* versions */
    {IN("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), ERR, 505},
    {IN("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), ERR, 505},
    {IN("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), ERR, 505},
    {IN("GET / HTTP/3.1\r\nHost: a\r\n\r\n"), ERR, 505},
    {IN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ERR, 505},
    {IN("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/11.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / http/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / FOO\r\nHost: a\r\n\r\n"), ERR, 400},
    /* line endings and control characters */
    {IN("GET / HTTP/1.1\nHost: a\r\n\r\n"), ERR, 400},            /* bare LF */
    {IN("GET / HTTP/1.1\r\nHost: a\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a\r\n\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a\n\n"), ERR, 400},
    {IN("GET / HTTP/1.1\rHost: a\r\n\r\n"), ERR, 400},            /* bare CR */
    {IN(H11 "X: a\rb\r\n\r\n"), ERR, 400},
    {IN(H11 "X: a\r\r\n\r\n"), ERR, 400},
    {IN(H11 "\r\r"), ERR, 400},
    {IN(H11 "X: a\x00b\r\n\r\n"), ERR, 400},                      /* NUL */
    {IN("GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN(H11 "X\x00: a\r\n\r\n"), ERR, 400},
    {IN(H11 "X: a\x01\r\n\r\n"), ERR, 400},
    {IN(H11 "X: a\x1f\r\n\r\n"), ERR, 400},
    {IN(H11 "X: a\x7f\r\n\r\n"), ERR, 400},                       /* DEL */
    {IN(H11 "X: a\x0b\r\n\r\n"), ERR, 400},                       /* VT */
    {IN("GET /\x01"), ERR, 400},                                  /* decided before the head ends */
    {IN("GET / HTTP/1.1\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a\rX"), ERR, 400},
    {IN("GET  / HTTP/1.1"), INC, 0},                            /* bad, but the line is not over */
    {IN("GET  / HTTP/1.1\r\n"), ERR, 400},                       /* a bad line is decided at its end */
    {IN(H11 "X : y\r\n"), ERR, 400},
    {IN(H11 " X: y\r\n"), ERR, 400},
    {IN(H11 "X: y\r\n \r\n"), ERR, 400},
    {IN("GET / HTTP/2.0\r\nHost: a\r\n"), INC, 0},                /* semantic errors wait for the end */
    {IN(P11 "Content-Length: 1\r\nContent-Length: 1\r\n"), INC, 0},
    /* header field syntax */
    {IN(H11 "X: a\r\n b\r\n\r\n"), ERR, 400},                     /* obs-fold */
    {IN(H11 "X: a\r\n\tb\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), ERR, 400},
    {IN(H11 "X : a\r\n\r\n"), ERR, 400},                          /* space before colon */
    {IN(H11 "X\t: a\r\n\r\n"), ERR, 400},
    {IN(H11 ": a\r\n\r\n"), ERR, 400},                            /* empty name */
    {IN(H11 "X\r\n\r\n"), ERR, 400},                              /* no colon */
    {IN(H11 "X-(a): b\r\n\r\n"), ERR, 400},                       /* not a token */
    {IN(H11 "X/Y: b\r\n\r\n"), ERR, 400},
    {IN(H11 "X\x80: b\r\n\r\n"), ERR, 400},
    {IN(H11 "X:a\r\n\r\n"), ALL, 0},
    /* Host */
    {IN("GET / HTTP/1.1\r\n\r\n"), ERR, 400},                     /* 1.1 needs Host */
    {IN("GET http://a/ HTTP/1.1\r\n\r\n"), ERR, 400},             /* even with an absolute URL */
    {IN("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost:\r\n\r\n"), ALL, 0},              /* empty is allowed */
    {IN("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), ERR, 400},
    {IN("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), ALL, 0},
    {IN("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), ALL, 0},           /* port = *DIGIT */
    {IN("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example_1~%41\r\n\r\n"), ALL, 0},
    /* Content-Length */
    {IN(P11 "Content-Length: 5\r\n\r\n"), ALL, 0},
    {IN(P11 "Content-Length: 007\r\n\r\n"), ALL, 0},
    {IN(P11 "Content-Length: 9223372036854775807\r\n\r\n"), ALL, 0},
    {IN(P11 "Content-Length: 9223372036854775808\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 99999999999999999999999\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5\r\ncontent-length: 6\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5, 5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: \r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: +5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: -5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5a\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 0x5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5 5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 1.0\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length : 5\r\n\r\n"), ERR, 400},
    /* Transfer-Encoding */
    {IN(P11 "Transfer-Encoding: chunked\r\n\r\n"), ALL, 0},
    {IN(P11 "Transfer-Encoding: ChUnKeD\r\n\r\n"), ALL, 0},
    {IN(P11 "Transfer-Encoding:   chunked  \r\n\r\n"), ALL, 0},
    {IN(P11 "Transfer-Encoding: gzip, chunked\r\n\r\n"), ERR, 501},
    {IN(P11 "Transfer-Encoding: gzip,chunked\r\n\r\n"), ERR, 501},
    {IN(P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), ERR, 501},
    {IN(P11 "Transfer-Encoding: chunked, gzip\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked, chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: gzip\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: identity\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: \r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked,\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: ,chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked;q=1\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: \"chunked\"\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: xchunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), ERR, 400},
    {IN("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding : chunked\r\n\r\n"), ERR, 400},
    {IN(P11 "Transfer-Encoding:\tchunked\r\n\r\n"), ALL, 0},
    {IN(P11 "Transfer_Encoding: chunked\r\n\r\n"), ALL, 0},       /* just another field */
    {IN(P11 "Transfer-Encoding: chunked\r\n Transfer-Encoding: x\r\n\r\n"), ERR, 400},
};

static const char *reason_for_failure(ssize_t want, ssize_t got)
{
    return want == got ? "status" : "result";
}

static void test_request_table(void)
{
    for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
        const req_case_t *c = &request_cases[i];
        ssize_t r;
        int status;
        parse_request_every_way(c->in, c->len, MAX_HEAD, &r, &status);
        if (lv_test_failed_now)
            return;
        ssize_t want = c->want == ALL ? (ssize_t)c->len : c->want;
        if (r != want || (want == ERR && status != c->status)) {
            print_escaped("input", c->in, c->len);
            fprintf(stderr, "  case %zu: want %zd/%d, got %zd/%d (%s)\n", i, want, c->status, r,
                    status, reason_for_failure(want, r));
            CHECK(!"request table case failed");
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Fields of accepted requests                                              */

typedef struct {
    const char *in;
    size_t len;
    const char *method, *target, *path, *query, *host;
    int minor;
    int64_t content_length;
    bool chunked, keep_alive, expect_continue;
    size_t num_headers;
} req_fields_t;

static const req_fields_t field_cases[] = {
    {IN("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"),
     "GET", "/", "/", "", "127.0.0.1:8080", 1, -1, false, true, false, 1},
    {IN("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GET", "/a/b?x=1&y=2", "/a/b", "x=1&y=2", "h", 1, -1, false, true, false, 1},
    {IN("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GET", "/a?b?c", "/a", "b?c", "h", 1, -1, false, true, false, 1},
    {IN("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n"),
     "GET", "/a?", "/a", "", "h", 1, -1, false, true, false, 1},
    {IN("GET /? HTTP/1.0\r\n\r\n"),
     "GET", "/?", "/", "", "", 0, -1, false, false, false, 0},
    {IN("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
     "GET", "/", "/", "", "", 0, -1, false, true, false, 1},
    {IN("GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n"),
     "GET", "/", "/", "", "", 0, -1, false, false, false, 1},
    {IN("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
     "GET", "/", "/", "", "h", 1, -1, false, false, false, 2},
    {IN("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade ,  CLOSE\r\n\r\n"),
     "GET", "/", "/", "", "h", 1, -1, false, false, false, 2},
    {IN("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"),
     "GET", "/", "/", "", "h", 1, -1, false, true, false, 2},
    {IN("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"),
     "GET", "/", "/", "", "h", 1, -1, false, false, false, 3},
    {IN("PUT /o HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\nExpect: 100-continue\r\n\r\n"),
     "PUT", "/o", "/o", "", "h", 1, 42, false, true, true, 3},
    {IN("PUT /o HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nExpect: 100-Continue\r\n\r\n"),
     "PUT", "/o", "/o", "", "h", 1, 0, false, true, true, 3},
    {IN("PUT /o HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"),
     "PUT", "/o", "/o", "", "", 0, 1, false, false, false, 2}, /* 1.0: must ignore it */
    {IN("PUT /o HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"),
     "PUT", "/o", "/o", "", "h", 1, -1, false, true, false, 2},
    {IN("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
     "POST", "/up", "/up", "", "h", 1, -1, true, true, false, 2},
    {IN("GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n"),
     "GET", "http://Example.com:8080/p?q", "/p", "q", "Example.com:8080", 1, -1, false, true, false, 1},
    {IN("GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n"),
     "GET", "HTTPS://example.com", "/", "", "example.com", 1, -1, false, true, false, 1},
    {IN("GET http://example.com?a=b HTTP/1.1\r\nHost: x\r\n\r\n"),
     "GET", "http://example.com?a=b", "/", "a=b", "example.com", 1, -1, false, true, false, 1},
    {IN("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
     "OPTIONS", "*", "*", "", "h", 1, -1, false, true, false, 1},
    {IN("\r\n\r\nDELETE /k HTTP/1.1\r\nHost: h\r\n\r\n"),
     "DELETE", "/k", "/k", "", "h", 1, -1, false, true, false, 1},
};

static void test_request_fields(void)
{
    for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
        const req_fields_t *c = &field_cases[i];
        ssize_t r;
        int status;
        parse_request_every_way(c->in, c->len, MAX_HEAD, &r, &status);
        if (lv_test_failed_now)
            return;
        const lv_http_request_t *q = &req_whole;
        if (r != (ssize_t)c->len)
            print_escaped("input", c->in, c->len);
        CHECK_EQ(r, (ssize_t)c->len);
        CHECK_SLICE(q->method, c->method);
        CHECK_SLICE(q->target, c->target);
        CHECK_SLICE(q->path, c->path);
        CHECK_SLICE(q->query, c->query);
        CHECK_SLICE(q->host, c->host);
        CHECK_EQ(q->minor_version, c->minor);
        CHECK_EQ(q->content_length, c->content_length);
        CHECK_EQ(q->chunked, c->chunked);
        CHECK_EQ(q->keep_alive, c->keep_alive);
        CHECK_EQ(q->expect_continue, c->expect_continue);
        CHECK_EQ(q->num_headers, c->num_headers);
    }
}

static void test_header_slices(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t one two \t\r\n"
                             "x-b:\r\nX-C:   \r\nX-D: \x80\xfe\r\n\r\n";
    lv_http_request_t *q = &req_whole;
    int status = 0;
    CHECK_EQ(lv_http_parse_request(in, sizeof(in) - 1, 0, 0, q, &status), sizeof(in) - 1);
    CHECK_EQ(q->num_headers, 5);
    CHECK_SLICE(q->headers[0].name, "Host");
    CHECK_SLICE(q->headers[0].value, "h");
    CHECK_SLICE(q->headers[1].name, "X-A");
    CHECK_SLICE(q->headers[1].value, "one two");
    CHECK_SLICE(q->headers[2].name, "x-b");
    CHECK_SLICE(q->headers[2].value, "");
    CHECK_SLICE(q->headers[3].value, "");
    CHECK_SLICE(q->headers[4].value, "\x80\xfe");
    /* slices point into the caller's buffer */
    CHECK(q->headers[1].value.ptr == in + 31);
    CHECK(q->method.ptr == in);

    const lv_http_header_t *h = lv_http_find_header(q->headers, q->num_headers, LV_SLICE_LIT("X-B"));
    CHECK(h == &q->headers[2]);
    CHECK(lv_http_find_header(q->headers, q->num_headers, LV_SLICE_LIT("X-E")) == NULL);
    CHECK(lv_http_find_header(q->headers, q->num_headers, LV_SLICE_LIT("X")) == NULL);
}

#define PIPE_1 "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
#define PIPE_2 "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
#define PIPE_3 "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"

static void test_pipelined(void)
{
    static const char in[] = PIPE_1 PIPE_2 "abc" PIPE_3;
    size_t len = sizeof(in) - 1, off = 0;
    lv_http_request_t *q = &req_whole;
    int status = 0;
    ssize_t r = lv_http_parse_request(in, len, 0, MAX_HEAD, q, &status);
    CHECK_EQ(r, sizeof(PIPE_1) - 1);
    CHECK_SLICE(q->path, "/1");
    off += (size_t)r;
    r = lv_http_parse_request(in + off, len - off, 0, MAX_HEAD, q, &status);
    CHECK_EQ(r, sizeof(PIPE_2) - 1);
    CHECK_SLICE(q->path, "/2");
    CHECK_EQ(q->content_length, 3);
    off += (size_t)r + 3;
    r = lv_http_parse_request(in + off, len - off, 0, MAX_HEAD, q, &status);
    CHECK_EQ(r, (ssize_t)(len - off));
    CHECK_SLICE(q->path, "/3");
}

/* A request arriving in pieces of every size, resuming each time, gives the
 * same answer, and an error is reported no later than the byte that decides it. */
static void test_resume_chunks(void)
{
    static const char in[] = "GET /abc?d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n"
                             "Accept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    size_t len = sizeof(in) - 1;
    lv_http_request_t *q = &req_step;
    for (size_t step = 1; step <= len; step++) {
        size_t have = 0, prev = 0;
        ssize_t r = INC;
        int status = 0;
        while (r == INC && have < len) {
            have = have + step > len ? len : have + step;
            r = lv_http_parse_request(in, have, prev, MAX_HEAD, q, &status);
            prev = have;
        }
        CHECK_EQ(r, (ssize_t)len);
        CHECK_SLICE(q->query, "d");
        CHECK_SLICE(q->headers[3].value, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    }
    /* a bad byte in the middle of a head is an error as soon as it arrives */
    static const char bad[] = "GET / HTTP/1.1\r\nHost: a\r\nX: \x01";
    int status = 0;
    CHECK_EQ(lv_http_parse_request(bad, sizeof(bad) - 2, 0, MAX_HEAD, q, &status), INC);
    CHECK_EQ(lv_http_parse_request(bad, sizeof(bad) - 1, sizeof(bad) - 2, MAX_HEAD, q, &status),
             ERR);
    CHECK_EQ(status, 400);
    /* a syntax error is reported when its line ends */
    static const char bad2[] = "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\nZ: z\r\n\r\n";
    CHECK_EQ(lv_http_parse_request(bad2, 30, 0, MAX_HEAD, q, &status), INC);
    CHECK_EQ(lv_http_parse_request(bad2, 31, 30, MAX_HEAD, q, &status), INC); /* ...y\r */
    CHECK_EQ(lv_http_parse_request(bad2, 32, 31, MAX_HEAD, q, &status), ERR); /* ...y\r\n */
    CHECK_EQ(status, 400);
    /* and a semantic one when the head ends */
    static const char bad3[] = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nZ: z\r\n\r\n";
    CHECK_EQ(lv_http_parse_request(bad3, sizeof(bad3) - 2, 0, MAX_HEAD, q, &status), INC);
    CHECK_EQ(lv_http_parse_request(bad3, sizeof(bad3) - 1, 30, MAX_HEAD, q, &status), ERR);
    CHECK_EQ(status, 400);
}

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */

static char big[65536];

static void test_limits(void)
{
    ssize_t r;
    int status;
    /* a head of exactly max bytes is fine; one byte more is not. The request
     * line is 26 bytes with its CRLF, the head 37. */
    static const char head[] = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    size_t hl = sizeof(head) - 5;
    parse_request_every_way(head, hl, hl, &r, &status);
    CHECK_EQ(r, (ssize_t)hl);
    parse_request_every_way(head, hl, hl - 1, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 431);
    /* the request line alone does not fit */
    parse_request_every_way(head, hl, 20, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 414);
    /* the error comes as soon as len reaches the limit, head incomplete */
    CHECK_EQ(lv_http_parse_request(head, 24, 0, 25, &req_whole, &status), INC);
    CHECK_EQ(lv_http_parse_request(head, 25, 24, 25, &req_whole, &status), ERR);
    CHECK_EQ(status, 414);
    CHECK_EQ(lv_http_parse_request(head, 26, 25, 26, &req_whole, &status), ERR);
    CHECK_EQ(status, 431); /* the request line fits exactly */
    CHECK_EQ(lv_http_parse_request(head, 30, 0, 30, &req_whole, &status), ERR);
    CHECK_EQ(status, 431);
    /* more bytes than the limit, but the head fits: the rest is the body */
    CHECK_EQ(lv_http_parse_request(head, hl + 4, 0, hl, &req_whole, &status), (ssize_t)hl);
    CHECK_EQ(lv_http_parse_request(head, hl + 4, 30, hl, &req_whole, &status), (ssize_t)hl);
    /* a syntax error inside the limit wins over the limit */
    static const char bad[] = "GET / HTTP/1.1\r\nHo st: a\r\nX: aaaaaaaaaaaaaaaaaaaaaaaa";
    parse_request_every_way(bad, sizeof(bad) - 1, 40, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 400);
    /* a long method or target: 414 */
    memset(big, 'A', 10000);
    parse_request_every_way(big, 10000, MAX_HEAD, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 414);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 9000);
    parse_request_every_way(big, 9005, MAX_HEAD, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 414);
    /* a huge header value: 431 */
    size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'v', 9000);
    parse_request_every_way(big, n + 9000, MAX_HEAD, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 431);
    /* no limit */
    memcpy(big + n + 9000, "\r\n\r\n", 4);
    parse_request_every_way(big, n + 9004, 0, &r, &status);
    CHECK_EQ(r, (ssize_t)(n + 9004));
    CHECK_EQ(req_whole.headers[1].value.len, 9000);
}

static void test_too_many_headers(void)
{
    size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < LV_HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(big + n, "X-%d: %d\r\n", i, i);
    memcpy(big + n, "\r\n", 2);
    ssize_t r;
    int status;
    parse_request_every_way(big, n + 2, 0, &r, &status);
    CHECK_EQ(r, (ssize_t)n + 2);
    CHECK_EQ(req_whole.num_headers, LV_HTTP_MAX_HEADERS);
    n += (size_t)sprintf(big + n, "X-last: 1\r\n\r\n");
    parse_request_every_way(big, n, 0, &r, &status);
    CHECK_EQ(r, ERR);
    CHECK_EQ(status, 431);
    /* still incomplete until the 101st line is complete */
    CHECK_EQ(lv_http_parse_request(big, n - 4, 0, 0, &req_whole, &status), INC);
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */

static lv_http_response_t res_whole, res_step;

static void parse_response_every_way(const char *in, size_t len, size_t max, ssize_t *r)
{
    char *g = guarded(WHOLE, in, len);
    *r = lv_http_parse_response(g, len, 0, max, &res_whole);
    if (*r >= 0 && !inside(res_whole.reason, g, len))
        CHECK(!"reason outside the buffer");
    ssize_t rs = INC;
    size_t prev = 0;
    for (size_t i = 0; i <= len; i++) {
        g = guarded(STEP, in, i);
        ssize_t r0 = lv_http_parse_response(g, i, 0, max, &res_step);
        rs = lv_http_parse_response(g, i, prev, max, &res_step);
        if (rs != r0) {
            print_escaped("input", in, len);
            CHECK(!"resuming changed the answer");
        }
        if (rs != INC)
            break;
        prev = i;
    }
    if (rs != *r || (rs >= 0 && (res_step.status != res_whole.status ||
                                 !same_slice(res_step.reason, res_whole.reason) ||
                                 res_step.num_headers != res_whole.num_headers))) {
        print_escaped("input", in, len);
        CHECK(!"byte-at-a-time parse disagrees with the whole-buffer parse");
    }
}

typedef struct {
    const char *in;
    size_t len;
    ssize_t want;
    int status, minor;
    const char *reason;
    int64_t content_length;
    bool chunked, keep_alive;
    lv_http_body_kind_t kind, kind_for_head;
} res_case_t;

#define RES_OK(s, st, mi, re, cl, ch, ka, k) {IN(s), ALL, st, mi, re, cl, ch, ka, k, LV_HTTP_BODY_NONE}
#define RES_BAD(s) {IN(s), ERR, 0, 0, NULL, 0, false, false, 0, 0}
#define RES_INC(s) {IN(s), INC, 0, 0, NULL, 0, false, false, 0, 0}

static const res_case_t response_cases[] = {
    RES_OK("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 1, "OK", 5, false, true,
         LV_HTTP_BODY_LENGTH),
    RES_OK("HTTP/1.1 404 Not Found\r\n\r\n", 404, 1, "Not Found", -1, false, true,
         LV_HTTP_BODY_UNTIL_CLOSE),
    RES_OK("HTTP/1.1 200\r\n\r\n", 200, 1, "", -1, false, true, LV_HTTP_BODY_UNTIL_CLOSE),
    RES_OK("HTTP/1.1 200 \r\n\r\n", 200, 1, "", -1, false, true, LV_HTTP_BODY_UNTIL_CLOSE),
    RES_OK("HTTP/1.1 599 \x80 we\tird \r\nContent-Length: 0\r\n\r\n", 599, 1, "\x80 we\tird ", 0,
         false, true, LV_HTTP_BODY_LENGTH),
    RES_OK("HTTP/1.0 200 OK\r\n\r\n", 200, 0, "OK", -1, false, false, LV_HTTP_BODY_UNTIL_CLOSE),
    RES_OK("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", 200, 0, "OK",
         2, false, true, LV_HTTP_BODY_LENGTH),
    RES_OK("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", 200, 1, "OK", 2,
         false, false, LV_HTTP_BODY_LENGTH),
    RES_OK("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 1, "OK", -1, true, true,
         LV_HTTP_BODY_CHUNKED),
    RES_OK("HTTP/1.1 100 Continue\r\n\r\n", 100, 1, "Continue", -1, false, true,
         LV_HTTP_BODY_NONE),
    RES_OK("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 101, 1,
         "Switching Protocols", -1, false, true, LV_HTTP_BODY_NONE),
    RES_OK("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, 1, "No Content", 10,
         false, true, LV_HTTP_BODY_NONE),
    RES_OK("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, 1, "Not Modified", 10,
         false, true, LV_HTTP_BODY_NONE),
    RES_OK("HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n", 205, 1, "Reset Content", 0,
         false, true, LV_HTTP_BODY_LENGTH),
    RES_INC(""),
    RES_INC("HTTP/1.1 200 OK\r\n"),
    RES_INC("HTTP/1.1 200 OK\r\nX: y\r\n\r"),
    RES_INC("HTTP/1.1 20"),
    RES_INC("HTTP/2.0 200 OK\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nX : y\r\n"),
    RES_BAD("HTTP/1.1 20 OK\r\n"),
    RES_BAD("\r\n"),
    RES_BAD("HTTP/1.1 20 OK\r\n\r\n"),
    RES_BAD("HTTP/1.1 2000 OK\r\n\r\n"),
    RES_BAD("HTTP/1.1 099 X\r\n\r\n"),
    RES_BAD("HTTP/1.1 600 X\r\n\r\n"),
    RES_BAD("HTTP/1.1  200 OK\r\n\r\n"),
    RES_BAD("HTTP/1.1 2x0 OK\r\n\r\n"),
    RES_BAD("HTTP/2.0 200 OK\r\n\r\n"),
    RES_BAD("HTTP/1.2 200 OK\r\n\r\n"),
    RES_BAD("http/1.1 200 OK\r\n\r\n"),
    RES_BAD("ICY 200 OK\r\n\r\n"),
    RES_BAD("\r\nHTTP/1.1 200 OK\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\n\n"),
    RES_BAD("HTTP/1.1 200 O\rK\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 O\x00K\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    RES_BAD("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RES_BAD("HTTP/1.1 200 OK\r\nX: \x7f\r\n"), /* decided before the head ends */
};

static void test_response_table(void)
{
    for (size_t i = 0; i < sizeof(response_cases) / sizeof(response_cases[0]); i++) {
        const res_case_t *c = &response_cases[i];
        ssize_t r;
        parse_response_every_way(c->in, c->len, MAX_HEAD, &r);
        if (lv_test_failed_now)
            return;
        ssize_t want = c->want == ALL ? (ssize_t)c->len : c->want;
        if (r != want) {
            print_escaped("input", c->in, c->len);
            fprintf(stderr, "  case %zu: want %zd, got %zd\n", i, want, r);
        }
        CHECK_EQ(r, want);
        if (r < 0)
            continue;
        const lv_http_response_t *s = &res_whole;
        CHECK_EQ(s->status, c->status);
        CHECK_EQ(s->minor_version, c->minor);
        CHECK_SLICE(s->reason, c->reason);
        CHECK_EQ(s->content_length, c->content_length);
        CHECK_EQ(s->chunked, c->chunked);
        CHECK_EQ(s->keep_alive, c->keep_alive);
        CHECK_EQ(lv_http_response_body_kind(s, false), c->kind);
        CHECK_EQ(lv_http_response_body_kind(s, true), c->kind_for_head);
    }
}

static void test_response_limits(void)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody";
    ssize_t r;
    parse_response_every_way(in, sizeof(in) - 1, 0, &r);
    CHECK_EQ(r, sizeof(in) - 5);
    parse_response_every_way(in, sizeof(in) - 1, sizeof(in) - 5, &r);
    CHECK_EQ(r, sizeof(in) - 5);
    parse_response_every_way(in, sizeof(in) - 1, sizeof(in) - 6, &r);
    CHECK_EQ(r, ERR);
    size_t n = (size_t)sprintf(big, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= LV_HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(big + n, "X-%d: %d\r\n", i, i);
    memcpy(big + n, "\r\n", 2);
    parse_response_every_way(big, n + 2, 0, &r);
    CHECK_EQ(r, ERR);
}

/* ------------------------------------------------------------------------ */
/* Chunked bodies                                                           */

typedef struct {
    const char *in;
    size_t len;
    ssize_t want;        /* bytes after the body, INC or ERR */
    const char *decoded; /* for want >= 0 and INC */
    size_t decoded_len;
} chunk_case_t;

#define CH_OK(s, out, rest) {IN(s), rest, IN(out)}
#define CH_BAD(s) {IN(s), ERR, NULL, 0}
#define CH_INC(s, out) {IN(s), INC, IN(out)}

static const chunk_case_t chunk_cases[] = {
    CH_OK("5\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CH_OK("0\r\n\r\n", "", 0),
    CH_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello world", 16),
    CH_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 0),
    CH_OK("0005\r\nhello\r\n000\r\n\r\n", "hello", 0),
    CH_OK("5;ext\r\nhello\r\n0;last=yes\r\n\r\n", "hello", 0),
    CH_OK("5;a=b;c;d=\"x y\\\"z\\\\\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CH_OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CH_OK("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n", 0), /* data is opaque */
    CH_OK("0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\nnext", "", 4),
    CH_OK("3\r\n\x00\xff\x80\r\n0\r\nT: \x80\t\r\n\r\n", "\x00\xff\x80", 0),
    CH_INC("5\r\nhel", "hel"),
    CH_INC("5\r\nhello\r\n", "hello"),
    CH_INC("5\r\nhello\r\n0\r\n", "hello"),
    CH_INC("5\r\nhello\r\n0\r\nX: y\r\n", "hello"),
    CH_INC("5;a=\"b", ""),
    CH_INC("", ""),
    CH_BAD("0x5\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("+5\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("-5\r\nhello\r\n0\r\n\r\n"),
    CH_BAD(" 5\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5 \r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5\t\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5 ;a\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5; a\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a =b\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("1g\r\nx\r\n0\r\n\r\n"), /* longest-valid-prefix */
    CH_BAD("\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5\nhello\r\n0\r\n\r\n"),
    CH_BAD("5\rhello\r\n0\r\n\r\n"),
    CH_BAD("5\r\nhello0\r\n\r\n"),
    CH_BAD("5\r\nhelloX\r\n0\r\n\r\n"),
    CH_BAD("5\r\nhello\n0\r\n\r\n"),
    CH_BAD("5\r\nhello\r\n0\n\r\n"),
    CH_BAD("5\r\nhello\r\n0\r\n\n"),
    CH_BAD("5\r\nhello\r\n0\r\n\r\r"),
    CH_BAD("8000000000000000\r\n"), /* 2^63 */
    CH_BAD("10000000000000000\r\n"),
    CH_BAD("ffffffffffffffffffffffff\r\n"),
    CH_BAD("5;\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;=b\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=b=c\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=\"b\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("5;a\x00\r\nhello\r\n0\r\n\r\n"),
    CH_BAD("0\r\nX: a\r\n b\r\n\r\n"), /* obs-fold in a trailer */
    CH_BAD("0\r\n X: a\r\n\r\n"),
    CH_BAD("0\r\nX : a\r\n\r\n"),
    CH_BAD("0\r\n: a\r\n\r\n"),
    CH_BAD("0\r\nX\r\n\r\n"),
    CH_BAD("0\r\nX: a\n\r\n"),
    CH_BAD("0\r\nX: a\rb\r\n\r\n"),
    CH_BAD("0\r\nX: \x00\r\n\r\n"),
    CH_BAD("0\r\nX: \x7f\r\n\r\n"),
};

/* Feeds in[0..len) to a fresh decoder in pieces cut at the given offsets,
 * collecting the decoded bytes; returns the final result. Each piece is
 * copied to end at the guard page, so the decoder can neither read nor write
 * past it. */
static ssize_t decode_pieces(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                             char *out, size_t *out_len, char *rest, size_t *rest_len)
{
    lv_http_chunked_t d = {0};
    size_t start = 0;
    *out_len = 0;
    *rest_len = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t stop = k < ncuts ? cuts[k] : len;
        size_t n = stop - start;
        char *g = guarded(STEP, in + start, n);
        ssize_t r = lv_http_chunked_decode(&d, g, &n);
        if (r != ERR) {
            memcpy(out + *out_len, g, n);
            *out_len += n;
        }
        if (r >= 0) {
            memcpy(rest, g + n, (size_t)r);
            *rest_len = (size_t)r;
            /* the rest is what followed the body in this piece, plus later pieces */
            memcpy(rest + *rest_len, in + stop, len - stop);
            *rest_len += len - stop;
            return (ssize_t)*rest_len;
        }
        if (r == ERR)
            return ERR;
        start = stop;
    }
    return INC;
}

static char out_buf[65536], rest_buf[65536];

static void check_decode(const chunk_case_t *c, const size_t *cuts, size_t ncuts)
{
    size_t out_len, rest_len;
    ssize_t r = decode_pieces(c->in, c->len, cuts, ncuts, out_buf, &out_len, rest_buf, &rest_len);
    bool ok = r == c->want;
    if (ok && r != ERR)
        ok = out_len == c->decoded_len && memcmp(out_buf, c->decoded, out_len) == 0;
    if (ok && r >= 0)
        ok = memcmp(rest_buf, c->in + c->len - (size_t)r, (size_t)r) == 0;
    if (!ok) {
        print_escaped("input", c->in, c->len);
        fprintf(stderr, "  cuts:");
        for (size_t k = 0; k < ncuts; k++)
            fprintf(stderr, " %zu", cuts[k]);
        fprintf(stderr, "\n  want %zd, got %zd\n", c->want, r);
        print_escaped("decoded", out_buf, out_len);
        CHECK(!"chunked decoding case failed");
    }
}

static void test_chunked_table(void)
{
    size_t cuts[8192];
    for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
        const chunk_case_t *c = &chunk_cases[i];
        check_decode(c, NULL, 0);
        if (lv_test_failed_now)
            return;
        for (size_t k = 0; k <= c->len; k++) { /* split in two at every byte */
            cuts[0] = k;
            check_decode(c, cuts, 1);
            if (lv_test_failed_now)
                return;
        }
        for (size_t k = 0; k < c->len; k++) /* a byte at a time */
            cuts[k] = k + 1;
        check_decode(c, cuts, c->len ? c->len - 1 : 0);
        if (lv_test_failed_now)
            return;
    }
}

static void test_chunked_limits(void)
{
    lv_http_chunked_t d = {0};
    size_t n;
    /* a size line of exactly the cap is fine, one byte more is not */
    n = (size_t)sprintf(big, "1;x=");
    memset(big + n, 'a', LV_HTTP_MAX_CHUNK_LINE - n - 2);
    n = LV_HTTP_MAX_CHUNK_LINE - 2;
    n += (size_t)sprintf(big + n, "\r\nz\r\n0\r\n\r\n");
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(big[0], 'z');
    memset(&d, 0, sizeof(d));
    n = (size_t)sprintf(big, "1;x=");
    memset(big + n, 'a', LV_HTTP_MAX_CHUNK_LINE - n - 1);
    n = LV_HTTP_MAX_CHUNK_LINE - 1;
    n += (size_t)sprintf(big + n, "\r\nz\r\n0\r\n\r\n");
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), ERR);
    /* errors are sticky */
    n = 5;
    memcpy(big, "0\r\n\r\n", 5);
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), ERR);
    /* leading zeros count towards the line cap too */
    memset(&d, 0, sizeof(d));
    memset(big, '0', 5000);
    n = 5000;
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), ERR);
    /* trailers: up to 16 KiB in total */
    memset(&d, 0, sizeof(d));
    n = (size_t)sprintf(big, "0\r\n");
    while (n < 3 + LV_HTTP_MAX_TRAILER_BYTES - 100)
        n += (size_t)sprintf(big + n, "X-T: %090d\r\n", 0);
    n += (size_t)sprintf(big + n, "\r\n");
    size_t total = n;
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), 0);
    memset(&d, 0, sizeof(d));
    n = (size_t)sprintf(big, "0\r\n");
    while (n < 3 + LV_HTTP_MAX_TRAILER_BYTES + 100)
        n += (size_t)sprintf(big + n, "X-T: %090d\r\n", 0);
    n += (size_t)sprintf(big + n, "\r\n");
    CHECK_INT(n, >, total);
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), ERR);
    /* a large chunk arriving in pieces */
    memset(&d, 0, sizeof(d));
    n = 8;
    memcpy(big, "10000\r\nx", 8);
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), INC);
    CHECK_EQ(n, 1);
    for (int i = 0; i < 15; i++) {
        memset(big, 'y', 4096);
        n = 4096;
        CHECK_EQ(lv_http_chunked_decode(&d, big, &n), INC);
        CHECK_EQ(n, 4096);
    }
    memset(big, 'y', 4095);
    memcpy(big + 4095, "\r\n0\r\n\r\n", 7);
    n = 4102;
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), 0);
    CHECK_EQ(n, 4095);
    /* the largest allowed size is 2^63 - 1 */
    memset(&d, 0, sizeof(d));
    n = 18;
    memcpy(big, "7fffffffffffffff\r\n", 18);
    CHECK_EQ(lv_http_chunked_decode(&d, big, &n), INC);
    CHECK_EQ(n, 0);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static void test_list_has_token(void)
{
    CHECK(lv_http_list_has_token(LV_SLICE_LIT("close"), LV_SLICE_LIT("close")));
    CHECK(lv_http_list_has_token(LV_SLICE_LIT("Upgrade, Close"), LV_SLICE_LIT("close")));
    CHECK(lv_http_list_has_token(LV_SLICE_LIT(" ,, keep-alive\t ,x"), LV_SLICE_LIT("KEEP-ALIVE")));
    CHECK(!lv_http_list_has_token(LV_SLICE_LIT("closed"), LV_SLICE_LIT("close")));
    CHECK(!lv_http_list_has_token(LV_SLICE_LIT("xclose"), LV_SLICE_LIT("close")));
    CHECK(!lv_http_list_has_token(LV_SLICE_LIT("clo se"), LV_SLICE_LIT("close")));
    CHECK(!lv_http_list_has_token(LV_SLICE_LIT(""), LV_SLICE_LIT("close")));
    CHECK(!lv_http_list_has_token(LV_SLICE_LIT(" , "), LV_SLICE_LIT("")));
}

static void test_status_reason(void)
{
    CHECK_STR(lv_http_status_reason(200), "OK");
    CHECK_STR(lv_http_status_reason(404), "Not Found");
    CHECK_STR(lv_http_status_reason(414), "URI Too Long");
    CHECK_STR(lv_http_status_reason(431), "Request Header Fields Too Large");
    CHECK_STR(lv_http_status_reason(505), "HTTP Version Not Supported");
    CHECK_STR(lv_http_status_reason(299), "Unknown");
    CHECK_STR(lv_http_status_reason(-1), "Unknown");
}

int main(void)
{
    guard_init();
    LV_RUN(test_request_table);
    LV_RUN(test_request_fields);
    LV_RUN(test_header_slices);
    LV_RUN(test_pipelined);
    LV_RUN(test_resume_chunks);
    LV_RUN(test_limits);
    LV_RUN(test_too_many_headers);
    LV_RUN(test_response_table);
    LV_RUN(test_response_limits);
    LV_RUN(test_chunked_table);
    LV_RUN(test_chunked_limits);
    LV_RUN(test_list_has_token);
    LV_RUN(test_status_reason);
    return lv_test_summary();
}
