/* function_target.c: routes whose target is a function.
 *
 * The request becomes an API Gateway payload 2.0 event (functions/apigw.h),
 * goes to the function's pool (functions/pool.h), and the result comes back
 * on this loop, where it is mapped to an HTTP answer the way API Gateway
 * maps it. Failures answer as API Gateway does, with a JSON message: a
 * function error, crash or malformed result 502, a timeout 504, no free
 * worker within the function's queue timeout 429 with Retry-After, shutdown
 * 503.
 *
 * The request stays valid until it is answered (server.h), so the result
 * callback answers it directly; if the client left meanwhile the answer is
 * simply discarded by the server. */
#include "gateway/gateway_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/uuid.h"
#include "functions/apigw.h"
#include "functions/pool.h"

/* One function request in flight, from lv_fn_invoke to its result. */
typedef struct {
    lv_gateway_t *gw;
    route_t *route;
    lv_http_req_t *req;
} fn_call_t;

static void answer_json(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, const char *message,
                        unsigned retry_after)
{
    char hdr[96], body[128];
    int hn = retry_after ? snprintf(hdr, sizeof hdr, "Content-Type: application/json\r\nRetry-After: %u\r\n",
                                    retry_after)
                         : snprintf(hdr, sizeof hdr, "Content-Type: application/json\r\n");
    int bn = snprintf(body, sizeof body, "{\"message\":\"%s\"}", message);
    lv_slice_t h = lv_slice(hdr, (size_t)hn);
    gw_finish(gw, route, req, status, &h, 1, lv_slice(body, (size_t)bn));
}

static void on_result(void *arg, const lv_fn_result_t *res)
{
    fn_call_t *call = arg;
    lv_gateway_t *gw = call->gw;
    route_t *route = call->route;
    lv_http_req_t *req = call->req;
    free(call);
    const char *fn_name = route->cfg->name;
    switch (res->status) {
    case LV_FN_OK: {
        lv_apigw_answer_t ans = {0};
        char err[160];
        if (lv_apigw_answer(res->payload, &ans, err, sizeof err) < 0) {
            lv_log_warn("fn", "route %s: malformed function answer: %s", fn_name, err);
            answer_json(gw, route, req, 502, "Internal Server Error", 0);
            return;
        }
        lv_slice_t h = lv_buf_slice(&ans.headers);
        gw_finish(gw, route, req, ans.status, &h, 1, lv_buf_slice(&ans.body));
        lv_apigw_answer_free(&ans);
        return;
    }
    case LV_FN_TIMEOUT:
        answer_json(gw, route, req, 504, "Endpoint request timed out", 0);
        return;
    case LV_FN_THROTTLED:
        answer_json(gw, route, req, 429, "Too Many Requests", res->retry_after ? res->retry_after : 1);
        return;
    case LV_FN_SHUTDOWN:
        answer_json(gw, route, req, 503, "Service Unavailable", 1);
        return;
    case LV_FN_ERROR:
    case LV_FN_CRASHED:
    case LV_FN_TOO_LARGE:
    default:
        lv_log_debug("fn", "route %s: function failed: %s", fn_name, res->error_type ? res->error_type : "?");
        answer_json(gw, route, req, 502, "Internal Server Error", 0);
        return;
    }
}

void gw_function(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m)
{
    lv_apigw_param_t params[LV_ROUTE_MAX_PARAMS];
    for (size_t i = 0; i < m->num_params; i++)
        params[i] = (lv_apigw_param_t){m->params[i].name, m->params[i].value};
    char request_id[LV_UUID_LEN + 1];
    lv_uuid4(request_id);
    lv_apigw_request_t ar = {
        .head = &req->head,
        .body = req->body,
        .route_key = lv_buf_slice(&route->route_key),
        .params = params,
        .num_params = m->num_params,
        .source_ip = lv_slice_cstr(lv_http_req_peer_ip(req)),
        .request_id = lv_slice(request_id, LV_UUID_LEN),
        .time_ms = gw_wall_ms(),
    };
    /* One event buffer per loop, reused: the pool copies the event. */
    lv_buf_t *event = &gw->fn_events[lv_loop_index(req->loop)];
    lv_buf_clear(event);
    lv_apigw_event(&ar, event);
    fn_call_t *call = lv_malloc(sizeof *call);
    *call = (fn_call_t){gw, route, req};
    lv_fn_invoke_t inv = {.payload = lv_buf_slice(event)};
    lv_fn_invoke(route->function, req->loop, &inv, on_result, call);
    /* A large event should not stay pinned in the loop's buffer. */
    if (event->capacity > 1024 * 1024)
        lv_buf_free(event);
}
