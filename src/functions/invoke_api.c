/* invoke_api.c: the Lambda Invoke API (see invoke_api.h for what it
 * answers).
 *
 * A request is checked in the order Lambda checks it, and the first problem
 * found is the answer: the invocation type, the path and method, the
 * FunctionName (percent-decoded, then matched against Lambda's pattern),
 * the qualifier, the function, the log type and client context, then the
 * payload's size and JSON syntax. Only then does anything start:
 * lv_fn_invoke for RequestResponse, lv_event_enqueue for Event (the 202
 * waits for the fsync), nothing for DryRun. The answer to an invocation is
 * written from the result callback, on the connection's loop; the server
 * keeps the request valid until then.
 *
 * Every answer carries x-amzn-RequestId (boto3 puts it in
 * ResponseMetadata): the invocation's id for RequestResponse (the same one
 * the function sees as its awsRequestId), the event's for Event, a fresh
 * one for everything else.
 *
 * Choices where Lambda leaves room:
 *   - An empty payload is sent to the function as {} (what Lambda does;
 *     the Node runtime client would fail on an empty body, JSON.parse('')).
 *   - X-Amz-Log-Type: Tail is ignored for Event and DryRun (Lambda applies
 *     it to synchronous invocations only); any value but None or Tail is
 *     InvalidParameterValueException.
 *   - X-Amz-Client-Context must be base64 (standard, padded) of a JSON
 *     object of at most 3,583 encoded bytes, else
 *     InvalidParameterValueException; it is passed to synchronous
 *     invocations only (the async queue keeps payloads alone).
 *   - A FunctionName that does not match Lambda's pattern is
 *     ValidationException 400, as Lambda answers it.
 *   - Other paths under /2015-03-31/functions/ get UnknownOperationException
 *     404, and another method on .../invocations 405 with Allow: POST.
 *   - An Event that the queue cannot hold in memory (functions/event_queue.c
 *     caps pending bytes per function) is TooManyRequestsException 429;
 *     a failed journal write is ServiceException 500 with the errno text.
 *   - Errors before the invocation type is known are counted with
 *     type="unknown". */
#include "functions/invoke_api.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/hex.h"
#include "core/buf.h"
#include "core/json_text.h"
#include "core/mem.h"
#include "core/uuid.h"
#include "functions/invoke_internal.h"

#define PREFIX "/2015-03-31/functions/"
#define ARN_PREFIX "arn:aws:lambda:us-east-1:000000000000:function:"
#define MAX_SYNC_PAYLOAD (6u * 1024u * 1024u)
#define MAX_ASYNC_PAYLOAD (1024u * 1024u)
#define MAX_CLIENT_CONTEXT 3583u

enum { T_REQUEST_RESPONSE, T_EVENT, T_DRY_RUN, T_UNKNOWN, NTYPES };
enum { R_OK, R_ERROR, R_THROTTLED, R_NOT_FOUND, R_BAD_REQUEST, NRESULTS };

static const char *const type_names[NTYPES] = {"RequestResponse", "Event", "DryRun", "unknown"};
static const char *const result_names[NRESULTS] = {"ok", "error", "throttled", "not_found", "bad_request"};

struct lv_invoke_api {
    lv_functions_t *fns;
    lv_event_queues_t *queues;
    /* NULL where a pair cannot happen (type "unknown" is only ever a bad
     * request). */
    lv_counter_t *requests[NTYPES][NRESULTS];
};

/* One invocation waiting for its result. */
typedef struct {
    lv_invoke_api_t *api;
    lv_http_req_t *req;
    int type;
    bool want_tail;
    char request_id[LV_UUID_LEN + 1];
} call_t;

/* ======================================================================
 * Pure helpers (invoke_internal.h)
 * ====================================================================== */

lv_invoke_route_t lv_invoke_route(lv_slice_t path, lv_slice_t *encoded_name)
{
    static const char suffix[] = "/invocations";
    size_t plen = sizeof PREFIX - 1, slen = sizeof suffix - 1;
    if (path.len < plen || memcmp(path.ptr, PREFIX, plen) != 0)
        return LV_INVOKE_NOT_OURS;
    lv_slice_t rest = lv_slice(path.ptr + plen, path.len - plen);
    if (rest.len <= slen || memcmp(rest.ptr + rest.len - slen, suffix, slen) != 0)
        return LV_INVOKE_OTHER;
    lv_slice_t name = lv_slice(rest.ptr, rest.len - slen);
    if (memchr(name.ptr, '/', name.len))
        return LV_INVOKE_OTHER;
    *encoded_name = name;
    return LV_INVOKE_INVOCATIONS;
}

long lv_invoke_percent_decode(lv_slice_t in, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%') {
            if (in.len - i < 3)
                return -1;
            int hi = lv_hex_value((unsigned char)in.ptr[i + 1]), lo = lv_hex_value((unsigned char)in.ptr[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || n == cap)
            return -1;
        out[n++] = c;
    }
    return (long)n;
}

static bool all_of(lv_slice_t s, const char *extra, size_t min, size_t max)
{
    if (s.len < min || s.len > max)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr(extra, c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

static bool all_digits(lv_slice_t s, size_t count)
{
    if (s.len != count)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
    return true;
}

/* [a-z]{2}(-gov)?-[a-z]+-\d, e.g. us-east-1, us-gov-west-1. */
static bool valid_region(lv_slice_t s)
{
    size_t i = 0;
    if (s.len < 6 || !(s.ptr[0] >= 'a' && s.ptr[0] <= 'z') || !(s.ptr[1] >= 'a' && s.ptr[1] <= 'z'))
        return false;
    i = 2;
    if (s.len - i > 4 && memcmp(s.ptr + i, "-gov", 4) == 0 && s.ptr[i + 4] == '-')
        i += 4;
    if (s.ptr[i++] != '-')
        return false;
    size_t letters = 0;
    while (i < s.len && s.ptr[i] >= 'a' && s.ptr[i] <= 'z') {
        i++;
        letters++;
    }
    return letters > 0 && i + 2 == s.len && s.ptr[i] == '-' && s.ptr[i + 1] >= '0' && s.ptr[i + 1] <= '9';
}

/* aws, aws-cn, aws-us-gov: "aws" then [a-zA-Z-]*. */
static bool valid_partition(lv_slice_t s)
{
    if (s.len < 3 || memcmp(s.ptr, "aws", 3) != 0)
        return false;
    for (size_t i = 3; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
            return false;
    }
    return true;
}

static bool valid_name(lv_slice_t s)
{
    return all_of(s, "_-.", 1, 64);
}

static bool valid_name_qualifier(lv_slice_t s)
{
    return lv_slice_eq_cstr(s, "$LATEST") || all_of(s, "_-", 1, LV_INVOKE_MAX_QUALIFIER);
}

bool lv_invoke_valid_qualifier(lv_slice_t q)
{
    return all_of(q, "$_-", 1, LV_INVOKE_MAX_QUALIFIER);
}

int lv_invoke_parse_function_name(lv_slice_t s, lv_slice_t *name, lv_slice_t *qualifier)
{
    enum { MAXPARTS = 9 };
    lv_slice_t part[MAXPARTS];
    size_t n = 0, start = 0;
    if (s.len == 0 || s.len > LV_INVOKE_MAX_FUNCTION_NAME)
        return -1;
    for (size_t i = 0; i <= s.len; i++) {
        if (i < s.len && s.ptr[i] != ':')
            continue;
        if (n == MAXPARTS)
            return -1;
        part[n++] = lv_slice(s.ptr + start, i - start);
        start = i + 1;
    }
    size_t first; /* index of the name */
    if (n > 2 && lv_slice_eq_cstr(part[0], "arn")) {
        if (n < 7 || n > 8 || !valid_partition(part[1]) || !lv_slice_eq_cstr(part[2], "lambda") ||
            !valid_region(part[3]) || !all_digits(part[4], 12) || !lv_slice_eq_cstr(part[5], "function"))
            return -1;
        first = 6;
    } else if (n >= 3 && lv_slice_eq_cstr(part[1], "function")) {
        if (n > 4 || !all_digits(part[0], 12))
            return -1;
        first = 2;
    } else {
        if (n > 2)
            return -1;
        first = 0;
    }
    if (!valid_name(part[first]))
        return -1;
    *name = part[first];
    *qualifier = lv_slice(NULL, 0);
    if (n == first + 2) {
        if (!valid_name_qualifier(part[first + 1]))
            return -1;
        *qualifier = part[first + 1];
    }
    return 0;
}

bool lv_invoke_query_param(lv_slice_t query, const char *name, lv_slice_t *raw)
{
    size_t nlen = strlen(name), i = 0;
    if (query.len == 0)
        return false; /* and query.ptr may be NULL, which memchr must not get */
    while (i <= query.len) {
        const char *amp = memchr(query.ptr + i, '&', query.len - i);
        size_t end = amp ? (size_t)(amp - query.ptr) : query.len;
        lv_slice_t pair = lv_slice(query.ptr + i, end - i);
        if (pair.len > nlen && memcmp(pair.ptr, name, nlen) == 0 && pair.ptr[nlen] == '=') {
            *raw = lv_slice(pair.ptr + nlen + 1, pair.len - nlen - 1);
            return true;
        }
        if (!amp)
            break;
        i = end + 1;
    }
    return false;
}

/* ======================================================================
 * Answers
 * ====================================================================== */

static void count(lv_invoke_api_t *api, int type, int result)
{
    lv_counter_t *c = api->requests[type][result];
    if (c)
        lv_counter_inc(c);
}

typedef struct {
    int status;
    const char *error_type;   /* X-Amzn-ErrorType */
    unsigned retry_after;     /* 429: seconds */
    bool allow_post;          /* 405 */
} lambda_error_t;

/* The Lambda REST-JSON error shape. `message` may hold request bytes; it is
 * escaped. */
static void answer_error(lv_invoke_api_t *api, lv_http_req_t *req, int type, int result, const char *request_id,
                         lambda_error_t e, lv_slice_t message)
{
    count(api, type, result);
    lv_buf_t body = LV_BUF_INIT, head = LV_BUF_INIT;
    lv_buf_printf(&body, "{\"Type\":\"%s\",\"message\":", e.status >= 500 ? "Service" : "User");
    lv_json_string(&body, message);
    if (e.status == 429)
        lv_buf_printf(&body, ",\"Reason\":\"ReservedFunctionConcurrentInvocationLimitExceeded\","
                             "\"retryAfterSeconds\":\"%u\"",
                      e.retry_after);
    lv_buf_append(&body, "}", 1);
    lv_buf_printf(&head, "X-Amzn-ErrorType: %s\r\nContent-Type: application/json\r\nx-amzn-RequestId: %s\r\n",
                  e.error_type, request_id);
    if (e.status == 429)
        lv_buf_printf(&head, "Retry-After: %u\r\n", e.retry_after);
    if (e.allow_post)
        lv_buf_append_str(&head, "Allow: POST\r\n");
    lv_http_respond(req, e.status, lv_buf_slice(&head), lv_buf_slice(&body));
    lv_buf_free(&body);
    lv_buf_free(&head);
}

static void answer_errorf(lv_invoke_api_t *api, lv_http_req_t *req, int type, int result, const char *request_id,
                          lambda_error_t e, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void answer_errorf(lv_invoke_api_t *api, lv_http_req_t *req, int type, int result, const char *request_id,
                          lambda_error_t e, const char *fmt, ...)
{
    lv_buf_t msg = LV_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    answer_error(api, req, type, result, request_id, e, lv_buf_slice(&msg));
    lv_buf_free(&msg);
}

static const lambda_error_t E_NOT_FOUND = {404, "ResourceNotFoundException", 0, false};
static const lambda_error_t E_PARAM = {400, "InvalidParameterValueException", 0, false};
static const lambda_error_t E_VALIDATION = {400, "ValidationException", 0, false};
static const lambda_error_t E_CONTENT = {400, "InvalidRequestContentException", 0, false};
static const lambda_error_t E_TOO_LARGE = {413, "RequestTooLargeException", 0, false};
static const lambda_error_t E_SERVICE = {500, "ServiceException", 0, false};
static const lambda_error_t E_UNKNOWN_OP = {404, "UnknownOperationException", 0, false};
static const lambda_error_t E_METHOD = {405, "UnknownOperationException", 0, true};

static lambda_error_t throttled(unsigned retry_after)
{
    return (lambda_error_t){429, "TooManyRequestsException", retry_after ? retry_after : 1, false};
}

static void on_invoked(void *arg, const lv_fn_result_t *r)
{
    call_t *call = arg;
    lv_invoke_api_t *api = call->api;
    lv_http_req_t *req = call->req;
    switch (r->status) {
    case LV_FN_THROTTLED:
        answer_error(api, req, call->type, R_THROTTLED, call->request_id, throttled(r->retry_after),
                     LV_SLICE_LIT("Rate Exceeded."));
        break;
    case LV_FN_SHUTDOWN:
        answer_error(api, req, call->type, R_ERROR, call->request_id, E_SERVICE,
                     LV_SLICE_LIT("The function could not run: levee is shutting down."));
        break;
    default: {
        /* OK, or an error of the function's own: both are a 200, as Lambda
         * answers them. */
        bool failed = r->status != LV_FN_OK;
        lv_buf_t head = LV_BUF_INIT;
        lv_buf_printf(&head,
                      "Content-Type: application/json\r\nX-Amz-Executed-Version: $LATEST\r\n"
                      "x-amzn-RequestId: %s\r\n",
                      call->request_id);
        if (failed)
            lv_buf_append_str(&head, "X-Amz-Function-Error: Unhandled\r\n");
        if (call->want_tail) {
            lv_buf_append_str(&head, "X-Amz-Log-Result: ");
            lv_base64_encode(r->log_tail, &head);
            lv_buf_append_str(&head, "\r\n");
        }
        count(api, call->type, failed ? R_ERROR : R_OK);
        lv_http_respond(req, 200, lv_buf_slice(&head), r->payload);
        lv_buf_free(&head);
        break;
    }
    }
    free(call);
}

static void on_enqueued(void *arg, int err, lv_slice_t request_id)
{
    call_t *call = arg;
    lv_invoke_api_t *api = call->api;
    if (err == 0) {
        lv_buf_t head = LV_BUF_INIT;
        lv_buf_append_str(&head, "x-amzn-RequestId: ");
        lv_buf_append(&head, request_id.ptr, request_id.len);
        lv_buf_append_str(&head, "\r\n");
        count(api, T_EVENT, R_OK);
        lv_http_respond(call->req, 202, lv_buf_slice(&head), lv_slice(NULL, 0));
        lv_buf_free(&head);
    } else if (err == ENOBUFS) {
        answer_error(api, call->req, T_EVENT, R_THROTTLED, call->request_id, throttled(1),
                     LV_SLICE_LIT("Rate Exceeded."));
    } else if (err == EMSGSIZE) {
        answer_errorf(api, call->req, T_EVENT, R_BAD_REQUEST, call->request_id, E_TOO_LARGE,
                      "Request must be smaller than %u bytes for the InvokeFunction operation", MAX_ASYNC_PAYLOAD);
    } else {
        answer_errorf(api, call->req, T_EVENT, R_ERROR, call->request_id, E_SERVICE,
                      "The event could not be queued: %s", strerror(err));
    }
    free(call);
}

/* ======================================================================
 * Requests
 * ====================================================================== */

static lv_slice_t header(const lv_http_req_t *req, const char *name)
{
    const lv_http_header_t *h = lv_http_find_header(req->head.headers, req->head.num_headers, lv_slice_cstr(name));
    return h ? h->value : lv_slice(NULL, 0);
}

static bool has_header(const lv_http_req_t *req, const char *name)
{
    return lv_http_find_header(req->head.headers, req->head.num_headers, lv_slice_cstr(name)) != NULL;
}

/* Checks X-Amz-Client-Context and decodes it into out. */
static bool client_context(lv_slice_t value, lv_buf_t *out)
{
    if (value.len > MAX_CLIENT_CONTEXT || lv_base64_decode(value, out, true) != 0)
        return false;
    json_t *obj = json_loadb(lv_buf_data(out), lv_buf_len(out), 0, NULL);
    bool ok = obj && json_is_object(obj);
    json_decref(obj);
    return ok;
}

bool lv_invoke_api_handle(lv_invoke_api_t *api, lv_http_req_t *req)
{
    lv_slice_t encoded;
    lv_invoke_route_t route = lv_invoke_route(req->head.path, &encoded);
    if (route == LV_INVOKE_NOT_OURS)
        return false;
    char rid[LV_UUID_LEN + 1];
    lv_uuid4(rid);

    int type = T_REQUEST_RESPONSE;
    lv_slice_t itype = header(req, "X-Amz-Invocation-Type");
    if (has_header(req, "X-Amz-Invocation-Type")) {
        if (lv_slice_eq_cstr(itype, "RequestResponse"))
            type = T_REQUEST_RESPONSE;
        else if (lv_slice_eq_cstr(itype, "Event"))
            type = T_EVENT;
        else if (lv_slice_eq_cstr(itype, "DryRun"))
            type = T_DRY_RUN;
        else {
            lv_buf_t msg = LV_BUF_INIT;
            lv_buf_append_str(&msg, "Unsupported invocation type: ");
            lv_buf_append(&msg, itype.ptr, itype.len);
            answer_error(api, req, T_UNKNOWN, R_BAD_REQUEST, rid, E_PARAM, lv_buf_slice(&msg));
            lv_buf_free(&msg);
            return true;
        }
    }
    if (route == LV_INVOKE_OTHER) {
        answer_error(api, req, type, R_NOT_FOUND, rid, E_UNKNOWN_OP,
                     LV_SLICE_LIT("levee implements only the Invoke operation of the Lambda API"));
        return true;
    }
    if (!lv_slice_eq_cstr(req->head.method, "POST")) {
        answer_error(api, req, type, R_BAD_REQUEST, rid, E_METHOD,
                     LV_SLICE_LIT("Invoke is POST /2015-03-31/functions/{FunctionName}/invocations"));
        return true;
    }

    char decoded[LV_INVOKE_MAX_FUNCTION_NAME];
    long dlen = lv_invoke_percent_decode(encoded, decoded, sizeof decoded);
    lv_slice_t name, qual;
    if (dlen < 0 || lv_invoke_parse_function_name(lv_slice(decoded, (size_t)dlen), &name, &qual) != 0) {
        lv_buf_t msg = LV_BUF_INIT;
        lv_buf_append_str(&msg, "1 validation error detected: Value '");
        lv_buf_append(&msg, encoded.ptr, encoded.len < 200 ? encoded.len : 200);
        lv_buf_append_str(&msg, "' at 'functionName' failed to satisfy constraint: Member must satisfy regular "
                                "expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?"
                                "(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?");
        answer_error(api, req, type, R_BAD_REQUEST, rid, E_VALIDATION, lv_buf_slice(&msg));
        lv_buf_free(&msg);
        return true;
    }
    lv_slice_t raw_q;
    char qbuf[LV_INVOKE_MAX_QUALIFIER];
    lv_slice_t query_q = lv_slice(NULL, 0);
    if (lv_invoke_query_param(req->head.query, "Qualifier", &raw_q)) {
        long qlen = lv_invoke_percent_decode(raw_q, qbuf, sizeof qbuf);
        query_q = lv_slice(qbuf, qlen > 0 ? (size_t)qlen : 0);
        if (qlen <= 0 || !lv_invoke_valid_qualifier(query_q)) {
            answer_error(api, req, type, R_BAD_REQUEST, rid, E_VALIDATION,
                         LV_SLICE_LIT("1 validation error detected: Value at 'qualifier' failed to satisfy "
                                      "constraint: Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"));
            return true;
        }
    }
    if (qual.len && query_q.len && !lv_slice_eq(qual, query_q)) {
        answer_error(api, req, type, R_BAD_REQUEST, rid, E_PARAM,
                     LV_SLICE_LIT("The derived qualifier from the function name does not match the specified "
                                  "qualifier."));
        return true;
    }
    if (!qual.len)
        qual = query_q;

    lv_fn_t *fn = lv_functions_find(api->fns, name);
    if (!fn || (qual.len && !lv_slice_eq_cstr(qual, "$LATEST"))) {
        /* name and qual matched the pattern: plain ASCII, safe to print. */
        answer_errorf(api, req, type, R_NOT_FOUND, rid, E_NOT_FOUND, "Function not found: " ARN_PREFIX "%.*s%s%.*s",
                      (int)name.len, name.ptr, qual.len ? ":" : "", (int)qual.len, qual.ptr ? qual.ptr : "");
        return true;
    }

    bool want_tail = false;
    if (has_header(req, "X-Amz-Log-Type")) {
        lv_slice_t lt = header(req, "X-Amz-Log-Type");
        if (lv_slice_eq_cstr(lt, "Tail"))
            want_tail = true;
        else if (!lv_slice_eq_cstr(lt, "None")) {
            answer_error(api, req, type, R_BAD_REQUEST, rid, E_PARAM,
                         LV_SLICE_LIT("X-Amz-Log-Type must be None or Tail"));
            return true;
        }
    }
    lv_buf_t ctx = LV_BUF_INIT;
    if (has_header(req, "X-Amz-Client-Context") && !client_context(header(req, "X-Amz-Client-Context"), &ctx)) {
        lv_buf_free(&ctx);
        answer_error(api, req, type, R_BAD_REQUEST, rid, E_PARAM,
                     LV_SLICE_LIT("Client context must be a valid Base64-encoded JSON object of at most 3583 "
                                  "bytes."));
        return true;
    }

    size_t limit = type == T_EVENT ? MAX_ASYNC_PAYLOAD : MAX_SYNC_PAYLOAD;
    if (req->body.len > limit) {
        lv_buf_free(&ctx);
        answer_errorf(api, req, type, R_BAD_REQUEST, rid, E_TOO_LARGE,
                      "Request must be smaller than %zu bytes for the InvokeFunction operation", limit);
        return true;
    }
    lv_slice_t payload = req->body.len ? req->body : LV_SLICE_LIT("{}");
    json_error_t jerr;
    json_t *doc = json_loadb(payload.ptr, payload.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!doc) {
        lv_buf_free(&ctx);
        answer_errorf(api, req, type, R_BAD_REQUEST, rid, E_CONTENT,
                      "Could not parse request body into json: %s (line %d, column %d)", jerr.text, jerr.line,
                      jerr.column);
        return true;
    }
    json_decref(doc);

    if (type == T_DRY_RUN) {
        lv_buf_free(&ctx);
        lv_buf_t head = LV_BUF_INIT;
        lv_buf_printf(&head, "x-amzn-RequestId: %s\r\n", rid);
        count(api, T_DRY_RUN, R_OK);
        lv_http_respond(req, 204, lv_buf_slice(&head), lv_slice(NULL, 0));
        lv_buf_free(&head);
        return true;
    }

    call_t *call = lv_calloc(1, sizeof *call);
    call->api = api;
    call->req = req;
    call->type = type;
    call->want_tail = want_tail;
    memcpy(call->request_id, rid, sizeof rid);
    if (type == T_EVENT) {
        lv_buf_free(&ctx);
        if (!api->queues) {
            free(call);
            answer_error(api, req, type, R_ERROR, rid, E_SERVICE,
                         LV_SLICE_LIT("Asynchronous invocation is not available."));
            return true;
        }
        lv_event_enqueue(api->queues, fn, req->loop, payload, on_enqueued, call);
        return true;
    }
    lv_fn_invoke_t inv = {
        .payload = payload,
        .client_context = lv_buf_slice(&ctx),
        .request_id = lv_slice(call->request_id, LV_UUID_LEN),
        .flags = want_tail ? LV_FN_WANT_LOG_TAIL : 0,
    };
    lv_fn_invoke(fn, req->loop, &inv, on_invoked, call);
    lv_buf_free(&ctx);
    return true;
}

/* ======================================================================
 * Lifetime
 * ====================================================================== */

lv_invoke_api_t *lv_invoke_api_new(lv_functions_t *fns, lv_event_queues_t *queues, lv_metrics_t *metrics)
{
    lv_invoke_api_t *api = lv_calloc(1, sizeof *api);
    api->fns = fns;
    api->queues = queues;
    char labels[96];
    for (int t = 0; t < NTYPES; t++) {
        for (int r = 0; r < NRESULTS; r++) {
            if (t == T_UNKNOWN && r != R_BAD_REQUEST)
                continue;
            snprintf(labels, sizeof labels, "type=\"%s\",result=\"%s\"", type_names[t], result_names[r]);
            api->requests[t][r] =
                lv_metrics_counter(metrics, "levee_invoke_api_requests_total",
                                   "Lambda Invoke API requests by invocation type and outcome (error: the function "
                                   "failed or levee could not run it).",
                                   labels);
        }
    }
    return api;
}

void lv_invoke_api_free(lv_invoke_api_t *api)
{
    free(api);
}
