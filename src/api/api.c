/* api.c: the api listener's dispatcher (see api.h). X-Amz-Target is looked
 * at first: JSON-protocol clients (Kinesis) always send it and always POST
 * to "/", so the path alone cannot tell them apart; the REST-style Lambda
 * API never sends it. */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/mem.h"
#include "core/uuid.h"
#include "functions/event_queue.h"
#include "functions/invoke_api.h"
#include "stream/kinesis_api.h"

struct lv_api {
    lv_event_queues_t *queues;   /* NULL without functions */
    lv_invoke_api_t *invoke;     /* NULL without functions */
    lv_kinesis_api_t *kinesis;   /* NULL without streams */
    lv_counter_t *unknown;
};

lv_api_t *lv_api_new(const lv_config_t *cfg, lv_functions_t *fns, lv_streams_t *streams, lv_metrics_t *metrics,
                     lv_config_errors_t *errs)
{
    lv_api_t *api = lv_calloc(1, sizeof *api);
    if (streams) {
        char err[512];
        api->kinesis = lv_kinesis_api_new(streams, cfg->data_dir, metrics, err, sizeof err);
        if (!api->kinesis) {
            lv_config_error(errs, cfg->path, (lv_config_pos_t){0, 0}, "%s", err);
            free(api);
            return NULL;
        }
    }
    if (fns) {
        api->queues = lv_event_queues_open(cfg, fns, metrics, errs);
        if (!api->queues) {
            lv_kinesis_api_free(api->kinesis);
            free(api);
            return NULL;
        }
        api->invoke = lv_invoke_api_new(fns, api->queues, metrics);
    }
    api->unknown = lv_metrics_counter(metrics, "levee_api_unknown_requests_total",
                                      "Requests on the api listener for no known service.", NULL);
    return api;
}

void lv_api_free(lv_api_t *api)
{
    if (!api)
        return;
    lv_invoke_api_free(api->invoke);
    lv_event_queues_free(api->queues);
    lv_kinesis_api_free(api->kinesis);
    free(api);
}

/* UnknownOperationException, with a request id as every AWS answer has. */
static void answer_unknown(lv_api_t *api, lv_http_req_t *req, int status, const char *content_type,
                           const char *message)
{
    lv_counter_inc(api->unknown);
    char rid[LV_UUID_LEN + 1], head[256], body[160];
    lv_uuid4(rid);
    int hn = snprintf(head, sizeof head,
                      "Content-Type: %s\r\nX-Amzn-ErrorType: UnknownOperationException\r\nx-amzn-RequestId: %s\r\n",
                      content_type, rid);
    int bn = snprintf(body, sizeof body, "{\"__type\":\"UnknownOperationException\",\"message\":\"%s\"}", message);
    lv_http_respond(req, status, lv_slice(head, (size_t)hn), lv_slice(body, (size_t)bn));
}

void lv_api_handle(lv_http_req_t *req, void *ctx)
{
    lv_api_t *api = ctx;
    const lv_http_header_t *target =
        lv_http_find_header(req->head.headers, req->head.num_headers, LV_SLICE_LIT("X-Amz-Target"));
    if (target) {
        if (api->kinesis && lv_kinesis_api_handle(api->kinesis, req))
            return;
        answer_unknown(api, req, 400, "application/x-amz-json-1.1", "levee serves no operation by this X-Amz-Target");
        return;
    }
    if (api->invoke && lv_invoke_api_handle(api->invoke, req))
        return;
    answer_unknown(api, req, 404, "application/json", "No service at this path");
}

void lv_api_start(lv_api_t *api, lv_loop_t *home)
{
    if (api->queues)
        lv_event_queues_start(api->queues, home);
}

void lv_api_stop(lv_api_t *api, lv_post_cb done, void *arg)
{
    if (api->queues) {
        lv_event_queues_stop(api->queues, done, arg);
        return;
    }
    lv_loop_post(lv_loop_current(), done, arg);
}
