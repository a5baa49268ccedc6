/* fuzz_http_request.c: libFuzzer driver for lv_http_parse_request and, when
 * the request is chunked, lv_http_chunked_decode.
 *
 * The input is parsed whole, then again in two calls split at an offset taken
 * from the input (first a prefix, then all of it with prev_len = the prefix),
 * and the answers must be identical: same result, same status, same fields.
 * A first call that already decides must agree with the whole parse too.
 * The head size limit is taken from the input, so 414/431 come up often.
 * Every slice must lie inside the buffer. The body after a chunked head is
 * decoded whole and in two pieces, which must give the same bytes. The input
 * is copied to a buffer of exactly its size so ASan sees any over-read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunked_check.h"
#include "http/parser.h"


static bool slice_inside(lv_slice_t s, const char *buf, size_t len)
{
    if (s.len == 0)
        return s.ptr != NULL;
    if (s.len == 1 && s.ptr[0] == '/' && (s.ptr < buf || s.ptr >= buf + len))
        return true; /* the implied path of "http://host" */
    return s.ptr >= buf && s.ptr + s.len <= buf + len;
}

static void check_inside(const lv_http_request_t *r, const char *buf, size_t len)
{
    if (!slice_inside(r->method, buf, len) || !slice_inside(r->target, buf, len) ||
        !slice_inside(r->path, buf, len) || !slice_inside(r->query, buf, len) ||
        !slice_inside(r->host, buf, len) || r->num_headers > LV_HTTP_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < r->num_headers; i++)
        if (!slice_inside(r->headers[i].name, buf, len) ||
            !slice_inside(r->headers[i].value, buf, len) || r->headers[i].name.len == 0)
            abort();
    if (r->minor_version != 0 && r->minor_version != 1)
        abort();
    if (r->chunked && r->content_length >= 0)
        abort();
}

static void check_same(const lv_http_request_t *a, const lv_http_request_t *b)
{
    if (!lv_slice_eq(a->method, b->method) || !lv_slice_eq(a->target, b->target) ||
        !lv_slice_eq(a->path, b->path) || !lv_slice_eq(a->query, b->query) ||
        !lv_slice_eq(a->host, b->host) || a->minor_version != b->minor_version ||
        a->num_headers != b->num_headers || a->content_length != b->content_length ||
        a->chunked != b->chunked || a->keep_alive != b->keep_alive ||
        a->expect_continue != b->expect_continue)
        abort();
    for (size_t i = 0; i < a->num_headers; i++)
        if (!lv_slice_eq(a->headers[i].name, b->headers[i].name) ||
            !lv_slice_eq(a->headers[i].value, b->headers[i].value))
            abort();
}

static bool known_status(int s)
{
    return s == 400 || s == 414 || s == 431 || s == 501 || s == 505;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lv_http_request_t whole, split;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    size_t cut = size ? (size_t)data[0] * 7 % (size + 1) : 0;
    /* the head size limit, 32..4112, from a byte in the middle of the input */
    size_t max_head = size ? 32 + (size_t)data[size / 2] * 16 : 4096;

    int status = 0;
    ssize_t r = lv_http_parse_request(buf, size, 0, max_head, &whole, &status);
    if (r == LV_HTTP_ERROR) {
        if (!known_status(status))
            abort();
    } else if (r >= 0) {
        if (r == 0 || (size_t)r > size || (size_t)r > max_head)
            abort();
        check_inside(&whole, buf, size);
    } else if (r != LV_HTTP_INCOMPLETE || size >= max_head) {
        abort();
    }

    int s1 = 0;
    ssize_t r1 = lv_http_parse_request(buf, cut, 0, max_head, &split, &s1);
    if (r1 == LV_HTTP_INCOMPLETE)
        r1 = lv_http_parse_request(buf, size, cut, max_head, &split, &s1);
    if (r1 != r || (r == LV_HTTP_ERROR && s1 != status))
        abort();
    if (r >= 0)
        check_same(&whole, &split);

    if (r >= 0) {
        /* exercise the helpers on what was parsed */
        lv_http_find_header(whole.headers, whole.num_headers, LV_SLICE_LIT("content-type"));
        for (size_t i = 0; i < whole.num_headers; i++)
            lv_http_list_has_token(whole.headers[i].value, LV_SLICE_LIT("close"));
        if (whole.chunked) {
            size_t body_len = size - (size_t)r;
            check_chunked(buf + r, body_len, body_len ? cut % (body_len + 1) : 0);
        }
    }
    free(buf);
    return 0;
}
