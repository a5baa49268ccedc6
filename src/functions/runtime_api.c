/* runtime_api.c: the Lambda Runtime API (2018-06-01) as each worker sees
 * it, on the worker's own loopback listener.
 *
 *   GET  /2018-06-01/runtime/invocation/next            held until there is work
 *   POST /2018-06-01/runtime/invocation/{id}/response   202 {"status":"OK"}
 *   POST /2018-06-01/runtime/invocation/{id}/error      202 {"status":"OK"}
 *   POST /2018-06-01/runtime/init/error                 202 while initialising, else 403
 *
 * The listener belongs to one worker (the handler's ctx), so the caller is
 * known without looking at the request. An {id} that is not the worker's
 * current invocation is 400 InvalidRequestID, unless it is the invocation
 * the worker just finished: a repeated answer is 403
 * InvalidStateTransition, an answer to one that timed out 410. A body over
 * 6 MiB + 100 bytes is 413 and fails the invocation with
 * Function.ResponseSizeTooLarge. Unknown paths 404, wrong methods 405.
 * Every error answer is JSON {"errorMessage","errorType"}.
 *
 * The /next answer is built without allocating: its fixed header lines
 * (ARN, Content-Type) are made once per function, the per-invocation ones
 * are formatted into a stack buffer, and the event goes from the
 * invocation's buffer straight into the connection's output. */
#include "functions/pool_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/json_text.h"
#include "core/uuid.h"

#define API_PREFIX "/2018-06-01/runtime/"

static const lv_slice_t json_header = LV_SLICE_LIT("Content-Type: application/json\r\n");

/* ---- pure helpers ---- */

static bool take_prefix(lv_slice_t *s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (s->len < n || memcmp(s->ptr, prefix, n) != 0)
        return false;
    s->ptr += n;
    s->len -= n;
    return true;
}

static bool take_suffix(lv_slice_t *s, const char *suffix)
{
    size_t n = strlen(suffix);
    if (s->len < n || memcmp(s->ptr + s->len - n, suffix, n) != 0)
        return false;
    s->len -= n;
    return true;
}

void lv_rapi_parse_target(lv_slice_t method, lv_slice_t path, lv_rapi_target_t *out)
{
    *out = (lv_rapi_target_t){.route = LV_RAPI_NOT_FOUND, .method_ok = false, .allow = "GET"};
    lv_slice_t rest = path;
    if (!take_prefix(&rest, API_PREFIX))
        return;
    if (lv_slice_eq_cstr(rest, "invocation/next")) {
        out->route = LV_RAPI_NEXT;
        out->method_ok = lv_slice_eq_cstr(method, "GET");
        return;
    }
    out->allow = "POST";
    if (lv_slice_eq_cstr(rest, "init/error")) {
        out->route = LV_RAPI_INIT_ERROR;
    } else if (take_prefix(&rest, "invocation/")) {
        lv_rapi_route_t route = LV_RAPI_NOT_FOUND;
        if (take_suffix(&rest, "/response"))
            route = LV_RAPI_RESPONSE;
        else if (take_suffix(&rest, "/error"))
            route = LV_RAPI_ERROR;
        if (route == LV_RAPI_NOT_FOUND || rest.len == 0 || memchr(rest.ptr, '/', rest.len))
            return;
        out->route = route;
        out->request_id = rest;
    } else {
        return;
    }
    out->method_ok = lv_slice_eq_cstr(method, "POST");
}

void lv_rapi_error_object(lv_buf_t *out, const char *type, lv_slice_t message)
{
    lv_buf_append_str(out, "{\"errorMessage\":");
    lv_json_string(out, message);
    lv_buf_append_str(out, ",\"errorType\":");
    lv_json_string(out, lv_slice_cstr(type));
    lv_buf_append(out, "}", 1);
}

/* Copies s into type as printable ASCII, cut to fit. Returns false when
 * nothing printable is left. */
static bool copy_type(lv_slice_t s, char type[LV_FN_TYPE_MAX])
{
    size_t n = 0;
    for (size_t i = 0; i < s.len && n < LV_FN_TYPE_MAX - 1; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 0x20 && c < 0x7f)
            type[n++] = (char)c;
    }
    while (n && type[n - 1] == ' ')
        n--;
    type[n] = 0;
    size_t lead = strspn(type, " ");
    if (lead)
        memmove(type, type + lead, n - lead + 1);
    return type[0] != 0;
}

void lv_rapi_error_payload(lv_slice_t body, lv_slice_t type_header, lv_buf_t *out, char type[LV_FN_TYPE_MAX])
{
    json_t *root = NULL;
    if (body.len) {
        json_error_t jerr;
        root = json_loadb(body.ptr, body.len, JSON_DECODE_ANY, &jerr);
    }
    json_t *body_type = json_is_object(root) ? json_object_get(root, "errorType") : NULL;
    bool have_type = copy_type(type_header, type);
    if (!have_type && json_is_string(body_type))
        have_type = copy_type(lv_slice(json_string_value(body_type), json_string_length(body_type)), type);
    if (!have_type)
        strcpy(type, "Unhandled");
    if (json_is_object(root)) {
        lv_buf_append(out, body.ptr, body.len);
    } else {
        lv_slice_t message = body;
        if (json_is_string(root))
            message = lv_slice(json_string_value(root), json_string_length(root));
        if (message.len == 0)
            message = LV_SLICE_LIT("Unknown error");
        lv_rapi_error_object(out, type, message);
    }
    json_decref(root);
}

bool lv_rapi_id_ok(lv_slice_t s)
{
    if (s.len == 0 || s.len > LV_FN_ID_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '%')
            return false;
    }
    return true;
}

bool lv_rapi_header_value_ok(lv_slice_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- answers ---- */

void lv_rapi_answer_error(lv_http_req_t *req, int status, const char *type, const char *message)
{
    char body[512];
    lv_buf_t b = LV_BUF_INIT;
    lv_rapi_error_object(&b, type, lv_slice_cstr(message));
    size_t n = lv_buf_len(&b) < sizeof body ? lv_buf_len(&b) : sizeof body;
    memcpy(body, lv_buf_data(&b), n);
    lv_buf_free(&b);
    lv_http_respond(req, status, json_header, lv_slice(body, n));
}

static void answer_accepted(lv_http_req_t *req)
{
    lv_http_respond(req, 202, json_header, LV_SLICE_LIT("{\"status\":\"OK\"}"));
}

static void answer_method(lv_http_req_t *req, const char *allow)
{
    char hdr[96];
    int n = snprintf(hdr, sizeof hdr, "Content-Type: application/json\r\nAllow: %s\r\n", allow);
    lv_http_respond(req, 405, lv_slice(hdr, (size_t)n),
                    LV_SLICE_LIT("{\"errorMessage\":\"Method not allowed\",\"errorType\":\"MethodNotAllowed\"}"));
}

/* Appends "Name: " value "\r\n" to a fixed buffer; the caller sized it. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_hex(char *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--)
        *p++ = hex[(v >> (4 * i)) & 15];
    return p;
}

#define PUT_LIT(p, s) put(p, s, sizeof(s) - 1)

void lv_rapi_send_next(lv_fn_worker_t *w, lv_fn_inv_t *inv)
{
    lv_fn_t *fn = w->fn;
    lv_http_req_t *req = w->next_req;
    w->next_req = NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

    /* Request id (<= 128) + invocation id (36) + trace (~90) + names. */
    char hdr[512];
    char *p = hdr;
    p = PUT_LIT(p, "Lambda-Runtime-Aws-Request-Id: ");
    p = put(p, inv->request_id, inv->request_id_len);
    p = PUT_LIT(p, "\r\nLambda-Runtime-Deadline-Ms: ");
    p = put_u64(p, wall_ms + fn->timeout_ms);
    p = PUT_LIT(p, "\r\nLambda-Runtime-Trace-Id: Root=1-");
    p = put_hex(p, (uint64_t)ts.tv_sec, 8);
    *p++ = '-';
    p = put_hex(p, lv_random64(), 16);
    p = put_hex(p, lv_random64(), 8);
    p = PUT_LIT(p, ";Parent=");
    p = put_hex(p, lv_random64(), 16);
    p = PUT_LIT(p, ";Sampled=0\r\nLambda-Runtime-Invocation-Id: ");
    p = put(p, inv->invocation_id, LV_FN_UUID_LEN);
    p = PUT_LIT(p, "\r\n");

    lv_slice_t parts[5];
    size_t nparts = 0;
    parts[nparts++] = lv_slice(hdr, (size_t)(p - hdr));
    parts[nparts++] = lv_slice(fn->next_static_headers, fn->next_static_len);
    if (lv_buf_len(&inv->client_context)) {
        parts[nparts++] = LV_SLICE_LIT("Lambda-Runtime-Client-Context: ");
        parts[nparts++] = lv_buf_slice(&inv->client_context);
        parts[nparts++] = LV_SLICE_LIT("\r\n");
    }
    lv_http_respondv(req, 200, parts, nparts, lv_buf_slice(&inv->payload));
}

/* ---- the handler ---- */

/* A /response or /error for an id that is not the current invocation. */
static void answer_stale(lv_fn_worker_t *w, lv_http_req_t *req, lv_slice_t id)
{
    if (w->last_end != LV_LAST_NONE && lv_slice_eq(id, lv_slice(w->last_id, w->last_id_len))) {
        if (w->last_end == LV_LAST_TIMED_OUT)
            lv_rapi_answer_error(req, 410, "InvocationTimedOut",
                                 "The invocation timed out; its result is no longer accepted");
        else
            lv_rapi_answer_error(req, 403, "InvalidStateTransition",
                                 "This invocation has already been answered");
        return;
    }
    lv_rapi_answer_error(req, 400, "InvalidRequestID", "Invalid request ID");
}

/* Fails inv as too large; answers req with 413 unless the listener does
 * (req NULL). */
static void fail_too_large(lv_fn_inv_t *inv, lv_http_req_t *req, uint64_t size)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Response payload size (%llu bytes) exceeded maximum allowed payload size (%u bytes).",
             (unsigned long long)size, LV_FN_MAX_PAYLOAD);
    lv_buf_clear(&inv->result);
    lv_rapi_error_object(&inv->result, "Function.ResponseSizeTooLarge", lv_slice_cstr(msg));
    strcpy(inv->error_type, "Function.ResponseSizeTooLarge");
    if (req)
        lv_rapi_answer_error(req, 413, "RequestEntityTooLarge", msg);
    lv_fnpool_finish(inv, LV_FN_TOO_LARGE);
}

void lv_rapi_too_large(const lv_http_request_t *head, uint64_t size, void *ctx)
{
    lv_fn_worker_t *w = ctx;
    lv_rapi_target_t t;
    lv_rapi_parse_target(head->method, head->path, &t);
    lv_fn_inv_t *inv = w->inv;
    if ((t.route == LV_RAPI_RESPONSE || t.route == LV_RAPI_ERROR) && t.method_ok && inv &&
        lv_slice_eq(t.request_id, lv_slice(inv->request_id, inv->request_id_len)))
        fail_too_large(inv, NULL, size);
}

static lv_slice_t error_type_header(const lv_http_req_t *req)
{
    const lv_http_header_t *h = lv_http_find_header(req->head.headers, req->head.num_headers,
                                                    LV_SLICE_LIT("Lambda-Runtime-Function-Error-Type"));
    return h ? h->value : lv_slice(NULL, 0);
}

void lv_rapi_handle(lv_http_req_t *req, void *ctx)
{
    lv_fn_worker_t *w = ctx;
    lv_rapi_target_t t;
    lv_rapi_parse_target(req->head.method, req->head.path, &t);
    if (t.route == LV_RAPI_NOT_FOUND) {
        lv_rapi_answer_error(req, 404, "NotFound", "Unknown Runtime API path");
        return;
    }
    if (!t.method_ok) {
        answer_method(req, t.allow);
        return;
    }
    switch (t.route) {
    case LV_RAPI_NEXT:
        lv_fnpool_worker_next(w, req);
        return;
    case LV_RAPI_RESPONSE:
    case LV_RAPI_ERROR: {
        lv_fn_inv_t *inv = w->inv;
        if (!inv || !lv_slice_eq(t.request_id, lv_slice(inv->request_id, inv->request_id_len))) {
            answer_stale(w, req, t.request_id);
            return;
        }
        if (req->body.len > LV_FN_MAX_PAYLOAD) {
            fail_too_large(inv, req, req->body.len);
            return;
        }
        lv_buf_clear(&inv->result);
        lv_fn_status_t status = LV_FN_OK;
        if (t.route == LV_RAPI_RESPONSE) {
            lv_buf_append(&inv->result, req->body.ptr, req->body.len);
            inv->error_type[0] = 0;
        } else {
            lv_rapi_error_payload(req->body, error_type_header(req), &inv->result, inv->error_type);
            status = LV_FN_ERROR;
        }
        answer_accepted(req);
        lv_fnpool_finish(inv, status);
        return;
    }
    case LV_RAPI_INIT_ERROR:
        if (w->state != LV_W_STARTING || w->init_error_posted) {
            lv_rapi_answer_error(req, 403, "InvalidStateTransition",
                                 "Init errors are accepted only while the runtime initialises");
            return;
        }
        if (req->body.len > LV_FN_MAX_PAYLOAD) {
            lv_rapi_answer_error(req, 413, "RequestEntityTooLarge", "Init error body too large");
            return;
        }
        lv_buf_clear(&w->init_error);
        lv_rapi_error_payload(req->body, error_type_header(req), &w->init_error, w->init_error_type);
        answer_accepted(req);
        lv_fnpool_init_failed(w);
        return;
    default:
        lv_rapi_answer_error(req, 404, "NotFound", "Unknown Runtime API path");
        return;
    }
}
