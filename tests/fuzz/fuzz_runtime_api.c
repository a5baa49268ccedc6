/* fuzz_runtime_api.c: libFuzzer driver for the parsing the Runtime API does
 * on what a worker sends (functions/pool_internal.h): request targets,
 * error bodies and error-type headers, JSON strings, ids and header values.
 *
 * Input: up to three parts separated by a 0xff byte: METHOD SP PATH, the
 * Lambda-Runtime-Function-Error-Type header value, the body. Each part is
 * copied into a buffer of exactly its length, so a read past it is caught.
 *
 * Checked against the rules, not just for crashes:
 *   - a target is NEXT, RESPONSE, ERROR or INIT_ERROR only for the exact
 *     paths; method_ok only for GET (NEXT) or POST (the rest); a request
 *     id is a non-empty slice of the path between "invocation/" and the
 *     last segment, without '/';
 *   - an error payload is always one JSON object (the body itself when the
 *     body is one), and its type is non-empty printable ASCII without
 *     leading or trailing spaces;
 *   - a JSON string parses back (with jansson) to a string;
 *   - an id or header value that is accepted holds no CR, LF or NUL. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "functions/pool_internal.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "/2018-06-01/runtime/"

static bool has_prefix(lv_slice_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.ptr, p, n) == 0;
}

static void check_target(lv_slice_t method, lv_slice_t path)
{
    lv_rapi_target_t t;
    lv_rapi_parse_target(method, path, &t);
    switch (t.route) {
    case LV_RAPI_NOT_FOUND:
        return;
    case LV_RAPI_NEXT:
        REQUIRE(lv_slice_eq_cstr(path, PREFIX "invocation/next"));
        REQUIRE(t.method_ok == lv_slice_eq_cstr(method, "GET"));
        return;
    case LV_RAPI_INIT_ERROR:
        REQUIRE(lv_slice_eq_cstr(path, PREFIX "init/error"));
        REQUIRE(t.method_ok == lv_slice_eq_cstr(method, "POST"));
        return;
    case LV_RAPI_RESPONSE:
    case LV_RAPI_ERROR: {
        REQUIRE(t.method_ok == lv_slice_eq_cstr(method, "POST"));
        REQUIRE(has_prefix(path, PREFIX "invocation/"));
        size_t start = strlen(PREFIX "invocation/");
        const char *suffix = t.route == LV_RAPI_RESPONSE ? "/response" : "/error";
        REQUIRE(t.request_id.ptr == path.ptr + start);
        REQUIRE(t.request_id.len > 0);
        REQUIRE(start + t.request_id.len + strlen(suffix) == path.len);
        REQUIRE(memcmp(path.ptr + start + t.request_id.len, suffix, strlen(suffix)) == 0);
        REQUIRE(memchr(t.request_id.ptr, '/', t.request_id.len) == NULL);
        return;
    }
    }
    REQUIRE(!"unknown route");
}

static void check_error_payload(lv_slice_t body, lv_slice_t type_header)
{
    lv_buf_t out = LV_BUF_INIT;
    char type[LV_FN_TYPE_MAX];
    memset(type, 'Z', sizeof type);
    lv_rapi_error_payload(body, type_header, &out, type);
    size_t tlen = strnlen(type, sizeof type);
    REQUIRE(tlen > 0 && tlen < sizeof type);
    REQUIRE(type[0] != ' ' && type[tlen - 1] != ' ');
    for (size_t i = 0; i < tlen; i++)
        REQUIRE(type[i] >= 0x20 && type[i] < 0x7f);
    json_error_t err;
    /* A body with NUL bytes becomes a message with \u0000, valid JSON
     * that jansson reads only when asked to. */
    json_t *j = json_loadb(lv_buf_data(&out), lv_buf_len(&out), JSON_ALLOW_NUL, &err);
    REQUIRE(json_is_object(j));
    json_t *body_json = body.len ? json_loadb(body.ptr, body.len, JSON_DECODE_ANY, &err) : NULL;
    if (json_is_object(body_json))
        REQUIRE(lv_slice_eq(lv_buf_slice(&out), body));
    else
        REQUIRE(json_is_string(json_object_get(j, "errorMessage")));
    json_decref(body_json);
    json_decref(j);
    lv_buf_free(&out);
}

static void check_json_string(lv_slice_t s)
{
    lv_buf_t out = LV_BUF_INIT;
    lv_json_string(&out, s);
    json_error_t err;
    json_t *j = json_loadb(lv_buf_data(&out), lv_buf_len(&out), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    REQUIRE(json_is_string(j));
    json_decref(j);
    lv_buf_free(&out);
}

static void check_header_safety(lv_slice_t s)
{
    if (lv_rapi_id_ok(s)) {
        REQUIRE(s.len > 0 && s.len <= LV_FN_ID_MAX);
        REQUIRE(!memchr(s.ptr, '\r', s.len) && !memchr(s.ptr, '\n', s.len) && !memchr(s.ptr, 0, s.len));
        REQUIRE(!memchr(s.ptr, '/', s.len));
    }
    if (lv_rapi_header_value_ok(s))
        REQUIRE(!memchr(s.ptr, '\r', s.len) && !memchr(s.ptr, '\n', s.len) && !memchr(s.ptr, 0, s.len));
}

static char *copy_exact(const uint8_t *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (n)
        memcpy(c, p, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *parts[3] = {data, NULL, NULL};
    size_t lens[3] = {size, 0, 0};
    int nparts = 1;
    for (size_t i = 0; i < size && nparts < 3; i++) {
        if (data[i] == 0xff) {
            lens[nparts - 1] = (size_t)(data + i - parts[nparts - 1]);
            parts[nparts] = data + i + 1;
            lens[nparts] = size - i - 1;
            nparts++;
        }
    }
    char *line = copy_exact(parts[0], lens[0]);
    char *type = copy_exact(parts[1] ? parts[1] : data, lens[1]);
    char *body = copy_exact(parts[2] ? parts[2] : data, lens[2]);

    const char *sp = memchr(line, ' ', lens[0]);
    lv_slice_t method = sp ? lv_slice(line, (size_t)(sp - line)) : lv_slice(line, 0);
    lv_slice_t path = sp ? lv_slice(sp + 1, lens[0] - (size_t)(sp + 1 - line)) : lv_slice(line, lens[0]);
    check_target(method, path);
    check_error_payload(lv_slice(body, lens[2]), lv_slice(type, lens[1]));
    check_json_string(lv_slice(line, lens[0]));
    check_header_safety(lv_slice(type, lens[1]));
    check_header_safety(path);

    free(line);
    free(type);
    free(body);
    return 0;
}
