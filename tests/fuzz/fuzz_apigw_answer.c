/* fuzz_apigw_answer.c: libFuzzer driver for functions/apigw.c, both ways.
 *
 * 1. The whole input is a function's result for lv_apigw_answer (from an
 *    exactly sized copy, so over-reads trip ASan). When it is accepted, the
 *    status is 100..599 and the header block is nothing but lines
 *    "token: value\r\n" whose value holds no control character but HTAB,
 *    one of them a Content-Type, none of them a header the server writes
 *    itself; when it is refused, there is a reason and the answer is empty.
 *    The same answer struct is then reused for a second call.
 * 2. The same bytes, split at '\n', become a request (method, path, query,
 *    a header name and value, a Cookie header, a path parameter, and the
 *    rest as body) for lv_apigw_event: the event must parse as a JSON object
 *    (jansson checks UTF-8 too; see hide_nul_escapes), and its body must
 *    give back the request body exactly, as text or through base64. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/buf.h"
#include "functions/apigw.h"
#include "http/parser.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool name_is(const char *p, size_t n, const char *lit)
{
    return lv_slice_eq_nocase(lv_slice(p, n), lv_slice_cstr(lit));
}

static void check_header_block(lv_slice_t h)
{
    static const char *const server_owned[] = {"content-length", "date", "server", "connection",
                                               "transfer-encoding", "keep-alive", "upgrade"};
    size_t i = 0, content_types = 0;
    while (i < h.len) {
        const char *line = h.ptr + i;
        const char *crlf = memmem(line, h.len - i, "\r\n", 2);
        REQUIRE(crlf);
        size_t len = (size_t)(crlf - line);
        const char *colon = memchr(line, ':', len);
        REQUIRE(colon && colon > line);
        size_t name_len = (size_t)(colon - line);
        for (size_t k = 0; k < name_len; k++)
            REQUIRE(tchar((unsigned char)line[k]));
        REQUIRE(name_len + 2 <= len && colon[1] == ' ');
        for (const char *v = colon + 2; v < crlf; v++) {
            unsigned char c = (unsigned char)*v;
            REQUIRE(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        for (size_t k = 0; k < sizeof server_owned / sizeof server_owned[0]; k++)
            REQUIRE(!name_is(line, name_len, server_owned[k]));
        content_types += name_is(line, name_len, "content-type");
        i += len + 2;
    }
    REQUIRE(content_types >= 1);
}

static void check_answer(const char *in, size_t size, lv_apigw_answer_t *a)
{
    char err[96] = "";
    int rc = lv_apigw_answer(lv_slice(in, size), a, err, sizeof err);
    if (rc == 0) {
        REQUIRE(a->status >= 100 && a->status <= 599);
        check_header_block(lv_buf_slice(&a->headers));
    } else {
        REQUIRE(rc == -1);
        REQUIRE(err[0]);
        REQUIRE(a->status == 0 && lv_buf_len(&a->headers) == 0 && lv_buf_len(&a->body) == 0);
    }
}

/* jansson refuses U+0000 in object keys, which RFC 8259 allows (and Node
 * and Python accept); a query parameter name "%00" gives one. Rewriting each
 * \u0000 escape in the text as \u0001 keeps the text's validity as it was.
 * A body holding NUL is sent base64, so the body check below never sees
 * the change. */
static void hide_nul_escapes(char *t, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (t[i] != '\\')
            continue;
        if (t[i + 1] == 'u' && i + 5 < n && memcmp(t + i + 2, "0000", 4) == 0)
            t[i + 5] = '1';
        i++; /* the escaped character is never the start of an escape */
    }
}

/* Next '\n'-separated field of [*p, end), or the rest if it is the last. */
static lv_slice_t field(const char **p, const char *end, bool last)
{
    const char *start = *p;
    const char *nl = last ? NULL : memchr(start, '\n', (size_t)(end - start));
    *p = nl ? nl + 1 : end;
    return lv_slice(start, (size_t)((nl ? nl : end) - start));
}

static void check_event(const char *in, size_t size)
{
    const char *p = in, *end = in + size;
    lv_http_request_t head;
    memset(&head, 0, sizeof head);
    head.method = field(&p, end, false);
    head.path = field(&p, end, false);
    head.query = field(&p, end, false);
    head.headers[0].name = field(&p, end, false);
    head.headers[0].value = field(&p, end, false);
    head.headers[1].name = LV_SLICE_LIT("Cookie");
    head.headers[1].value = field(&p, end, false);
    head.headers[2].name = LV_SLICE_LIT("Host");
    head.headers[2].value = head.host = head.headers[0].value;
    head.num_headers = 3;
    head.minor_version = size & 1;
    lv_apigw_param_t param = {LV_SLICE_LIT("p"), field(&p, end, false)};
    lv_slice_t body = field(&p, end, true);
    lv_apigw_request_t r = {
        .head = &head,
        .body = body,
        .route_key = head.path,
        .params = &param,
        .num_params = 1,
        .source_ip = head.method,
        .request_id = head.query,
        .time_ms = (int64_t)size * 1234567891LL - 1000000000000LL,
    };
    lv_buf_t text = LV_BUF_INIT;
    lv_apigw_event(&r, &text);
    hide_nul_escapes(lv_buf_data(&text), lv_buf_len(&text));
    json_error_t jerr;
    json_t *ev = json_loadb(lv_buf_data(&text), lv_buf_len(&text), JSON_ALLOW_NUL, &jerr);
    if (!ev)
        fprintf(stderr, "event is not JSON: %s\n%.*s\n", jerr.text, (int)lv_buf_len(&text), lv_buf_data(&text));
    REQUIRE(ev && json_is_object(ev));
    json_t *b = json_object_get(ev, "body"), *b64 = json_object_get(ev, "isBase64Encoded");
    REQUIRE(json_is_boolean(b64));
    if (!body.len) {
        REQUIRE(!b && json_is_false(b64));
    } else {
        REQUIRE(json_is_string(b));
        lv_slice_t got = lv_slice(json_string_value(b), json_string_length(b));
        if (json_is_true(b64)) {
            lv_buf_t dec = LV_BUF_INIT;
            REQUIRE(lv_base64_decode(got, &dec, true) == 0);
            REQUIRE(lv_slice_eq(lv_buf_slice(&dec), body));
            lv_buf_free(&dec);
        } else {
            REQUIRE(lv_slice_eq(got, body));
        }
    }
    json_decref(ev);
    lv_buf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);

    lv_apigw_answer_t a = {0};
    check_answer(in, size, &a);
    check_answer(in, size, &a); /* reuse: same outcome from a used struct */
    lv_apigw_answer_free(&a);

    check_event(in, size);
    free(in);
    return 0;
}
