/* api.c: the api listener's dispatcher (see api.h). */
#include "api/api.h"

#include <stdlib.h>

#include "core/mem.h"
#include "functions/event_queue.h"
#include "functions/invoke_api.h"

struct lv_api {
    lv_event_queues_t *queues;   /* NULL without functions */
    lv_invoke_api_t *invoke;     /* NULL without functions */
    lv_counter_t *unknown;
};

lv_api_t *lv_api_new(const lv_config_t *cfg, lv_functions_t *fns, lv_metrics_t *metrics, lv_config_errors_t *errs)
{
    lv_api_t *api = lv_calloc(1, sizeof *api);
    if (fns) {
        api->queues = lv_event_queues_open(cfg, fns, metrics, errs);
        if (!api->queues) {
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
    free(api);
}

void lv_api_handle(lv_http_req_t *req, void *ctx)
{
    lv_api_t *api = ctx;
    if (api->invoke && lv_invoke_api_handle(api->invoke, req))
        return;
    lv_counter_inc(api->unknown);
    static const char body[] = "{\"__type\":\"UnknownOperationException\",\"message\":\"No service at this path\"}";
    lv_http_respond(req, 404,
                    LV_SLICE_LIT("Content-Type: application/json\r\nX-Amzn-ErrorType: UnknownOperationException\r\n"),
                    lv_slice(body, sizeof body - 1));
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
