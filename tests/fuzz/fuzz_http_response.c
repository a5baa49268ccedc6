/* fuzz_http_response.c: libFuzzer driver for lv_http_parse_response,
 * lv_http_response_body_kind and, for chunked responses,
 * lv_http_chunked_decode.
 *
 * As for requests: the input is parsed whole and in two calls split at an
 * offset taken from the input, and both must agree exactly; slices must lie
 * inside the buffer; a chunked body is decoded whole and in two pieces with
 * the same outcome. The first byte also picks whether the request was HEAD,
 * and a byte in the middle the head size limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunked_check.h"
#include "http/parser.h"


static bool slice_inside(lv_slice_t s, const char *buf, size_t len)
{
    if (s.len == 0)
        return s.ptr != NULL;
    return s.ptr >= buf && s.ptr + s.len <= buf + len;
}

static void check_response(const lv_http_response_t *r, const char *buf, size_t len)
{
    if (r->status < 100 || r->status > 599 || (r->minor_version != 0 && r->minor_version != 1) ||
        !slice_inside(r->reason, buf, len) || r->num_headers > LV_HTTP_MAX_HEADERS ||
        (r->chunked && r->content_length >= 0))
        abort();
    for (size_t i = 0; i < r->num_headers; i++)
        if (!slice_inside(r->headers[i].name, buf, len) ||
            !slice_inside(r->headers[i].value, buf, len) || r->headers[i].name.len == 0)
            abort();
}

static void check_same(const lv_http_response_t *a, const lv_http_response_t *b)
{
    if (a->status != b->status || a->minor_version != b->minor_version ||
        !lv_slice_eq(a->reason, b->reason) || a->num_headers != b->num_headers ||
        a->content_length != b->content_length || a->chunked != b->chunked ||
        a->keep_alive != b->keep_alive)
        abort();
    for (size_t i = 0; i < a->num_headers; i++)
        if (!lv_slice_eq(a->headers[i].name, b->headers[i].name) ||
            !lv_slice_eq(a->headers[i].value, b->headers[i].value))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lv_http_response_t whole, split;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    size_t cut = size ? (size_t)data[0] * 7 % (size + 1) : 0;
    /* the head size limit, 32..4112, from a byte in the middle of the input */
    size_t max_head = size ? 32 + (size_t)data[size / 2] * 16 : 4096;
    bool was_head = size && (data[0] & 1);

    ssize_t r = lv_http_parse_response(buf, size, 0, max_head, &whole);
    if (r >= 0) {
        if (r == 0 || (size_t)r > size || (size_t)r > max_head)
            abort();
        check_response(&whole, buf, size);
    } else if (r != LV_HTTP_ERROR && (r != LV_HTTP_INCOMPLETE || size >= max_head)) {
        abort();
    }

    ssize_t r1 = lv_http_parse_response(buf, cut, 0, max_head, &split);
    if (r1 == LV_HTTP_INCOMPLETE)
        r1 = lv_http_parse_response(buf, size, cut, max_head, &split);
    if (r1 != r)
        abort();
    if (r >= 0) {
        check_same(&whole, &split);
        lv_http_body_kind_t kind = lv_http_response_body_kind(&whole, was_head);
        if (kind == LV_HTTP_BODY_CHUNKED) {
            size_t body_len = size - (size_t)r;
            check_chunked(buf + r, body_len, body_len ? cut % (body_len + 1) : 0);
        } else if (kind != LV_HTTP_BODY_NONE && kind != LV_HTTP_BODY_LENGTH &&
                   kind != LV_HTTP_BODY_UNTIL_CLOSE) {
            abort();
        }
    }
    free(buf);
    return 0;
}
