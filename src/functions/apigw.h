/* apigw.h: HTTP requests to function events and function results back to
 * HTTP answers, as API Gateway HTTP APIs do (payload format 2.0).
 *
 * lv_apigw_event builds the event JSON a handler behind an HTTP route
 * receives: version "2.0", routeKey, rawPath, rawQueryString, cookies,
 * lower-case headers (repeated ones joined with ","; Cookie headers go to
 * `cookies` instead), queryStringParameters (repeated ones joined with ",",
 * names and values percent-decoded), pathParameters, requestContext
 * (accountId, apiId, domainName, domainPrefix, http{method, path, protocol,
 * sourceIp, userAgent}, requestId, routeKey, stage "$default", time,
 * timeEpoch), body and isBase64Encoded (false when the body is valid UTF-8
 * without NUL and sent as a string; otherwise it is sent base64 and the flag
 * is true). Members with nothing to say (no cookies, no
 * query, no path parameters, no body) are left out, as API Gateway does.
 *
 * lv_apigw_answer maps what the handler returned, as API Gateway does: a
 * JSON object with `statusCode` is a structured answer (headers, cookies,
 * body, isBase64Encoded); any other JSON value becomes a 200
 * application/json answer whose body is that JSON text (a JSON string
 * becomes its bare contents). Anything that does not parse as JSON, or a
 * structured answer with a bad member, is an error (the caller answers 502).
 *
 * Both are pure functions: no I/O, no global state. */
#ifndef LV_FUNCTIONS_APIGW_H
#define LV_FUNCTIONS_APIGW_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"
#include "http/parser.h"

typedef struct {
    lv_slice_t name, value;
} lv_apigw_param_t;

/* What the event is built from. Slices are borrowed for the call. */
typedef struct {
    const lv_http_request_t *head;  /* method, path, query, version, headers */
    lv_slice_t body;                /* de-chunked */
    lv_slice_t route_key;           /* "GET /r/{code}" or "$default" */
    const lv_apigw_param_t *params; /* path parameters, in pattern order */
    size_t num_params;
    lv_slice_t source_ip;
    lv_slice_t request_id;
    int64_t time_ms;                /* wall clock, Unix epoch milliseconds */
} lv_apigw_request_t;

/* Appends the event JSON to out. */
void lv_apigw_event(const lv_apigw_request_t *r, lv_buf_t *out);

/* The answer to send. headers holds "Name: value\r\n" lines ready for
 * lv_http_respond (Content-Type included; Content-Length, Date, Connection,
 * Transfer-Encoding and other hop-by-hop headers the function set are
 * dropped, since the server writes its own). Both buffers are owned by the
 * caller: zero-initialise, then lv_buf_free after use. */
typedef struct {
    int status;
    lv_buf_t headers;
    lv_buf_t body;
} lv_apigw_answer_t;

/* Fills out from the function's result. Returns 0, or -1 with a short reason
 * in err (e.g. "statusCode is not an integer between 100 and 599", "body is
 * not a string", "result is not JSON") and out left empty. */
int lv_apigw_answer(lv_slice_t result, lv_apigw_answer_t *out, char *err, size_t errlen);

/* Resets out for reuse / frees its buffers. */
void lv_apigw_answer_free(lv_apigw_answer_t *out);

#endif
