/* fuzz_invoke_name.c: libFuzzer driver for the Invoke API's request
 * parsing (functions/invoke_internal.h): the input is a request path, a '?'
 * and a query, as the HTTP parser hands them over.
 *
 * Checks: routing only ever names a segment of the path; percent-decoding
 * never writes past its buffer and decodes what it claims; a FunctionName
 * the parser accepts yields a name of 1-64 [A-Za-z0-9_.-] and, if any, a
 * qualifier that is $LATEST or [A-Za-z0-9_-]+, both inside the decoded text;
 * the name found in a full ARN is the same as in the bare name; and every
 * byte string comes out of the JSON escaper as a JSON string jansson reads
 * back. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json_text.h"
#include "functions/invoke_internal.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

static void check_name(lv_slice_t decoded)
{
    lv_slice_t name, qual;
    if (lv_invoke_parse_function_name(decoded, &name, &qual) != 0)
        return;
    REQUIRE(name.len >= 1 && name.len <= 64);
    REQUIRE(name.ptr >= decoded.ptr && name.ptr + name.len <= decoded.ptr + decoded.len);
    for (size_t i = 0; i < name.len; i++)
        REQUIRE(name_char(name.ptr[i]));
    if (qual.len) {
        REQUIRE(qual.ptr > name.ptr && qual.ptr + qual.len <= decoded.ptr + decoded.len);
        bool latest = qual.len == 7 && memcmp(qual.ptr, "$LATEST", 7) == 0;
        for (size_t i = 0; i < qual.len && !latest; i++)
            REQUIRE(name_char(qual.ptr[i]) && qual.ptr[i] != '.');
    }
    /* The same name inside a full ARN parses to the same name. */
    char arn[256];
    int n = snprintf(arn, sizeof arn, "arn:aws:lambda:us-east-1:123456789012:function:%.*s", (int)name.len, name.ptr);
    lv_slice_t again, again_q;
    REQUIRE(n > 0 && (size_t)n < sizeof arn);
    REQUIRE(lv_invoke_parse_function_name(lv_slice(arn, (size_t)n), &again, &again_q) == 0);
    REQUIRE(again.len == name.len && memcmp(again.ptr, name.ptr, name.len) == 0 && again_q.len == 0);
}

static void check_json(lv_slice_t s)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_json_string(&b, s);
    json_t *v = json_loadb(lv_buf_data(&b), lv_buf_len(&b), JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    REQUIRE(v != NULL && json_is_string(v));
    json_decref(v);
    lv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *q = memchr(p, '?', size);
    lv_slice_t path = lv_slice(p, q ? (size_t)(q - p) : size);
    lv_slice_t query = q ? lv_slice(q + 1, size - path.len - 1) : lv_slice(NULL, 0);

    lv_slice_t encoded = {0};
    lv_invoke_route_t r = lv_invoke_route(path, &encoded);
    if (r == LV_INVOKE_INVOCATIONS) {
        REQUIRE(encoded.len > 0 && encoded.ptr >= path.ptr && encoded.ptr + encoded.len <= path.ptr + path.len);
        REQUIRE(memchr(encoded.ptr, '/', encoded.len) == NULL);
    } else {
        encoded = path;
    }
    /* An exact-size heap buffer: any write past it is an ASan report. */
    char *decoded = malloc(LV_INVOKE_MAX_FUNCTION_NAME);
    long n = lv_invoke_percent_decode(encoded, decoded, LV_INVOKE_MAX_FUNCTION_NAME);
    if (n >= 0) {
        REQUIRE(n <= LV_INVOKE_MAX_FUNCTION_NAME && (size_t)n <= encoded.len);
        REQUIRE(memchr(decoded, '\0', (size_t)n) == NULL);
        check_name(lv_slice(decoded, (size_t)n));
    }
    free(decoded);

    lv_slice_t raw;
    if (lv_invoke_query_param(query, "Qualifier", &raw))
        REQUIRE(raw.ptr >= query.ptr && raw.ptr + raw.len <= query.ptr + query.len);
    check_json(lv_slice(p, size));
    return 0;
}
