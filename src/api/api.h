/* api.h: the api listener (127.0.0.1:4566 by default), where AWS SDK
 * clients reach levee's AWS-compatible services.
 *
 * One handler serves the listener and hands each request to the service it
 * is for. A request with an X-Amz-Target header is for a JSON-protocol
 * service: Kinesis_20131202.* goes to the Kinesis API (stream/kinesis_api.h),
 * any other target gets 400 UnknownOperationException. Without one, paths
 * under /2015-03-31/functions/ go to the Lambda Invoke API. A request for
 * no known service gets 404 with an AWS-style JSON error.
 *
 * The api also owns the durable queues of asynchronous invocations, since
 * only the Invoke API feeds them.
 *
 * Lifetimes: borrows the config, the function pools, the streams and the
 * metrics registry, which must outlive it. */
#ifndef LV_API_API_H
#define LV_API_API_H

#include "core/config.h"
#include "core/loop.h"
#include "functions/pool.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "stream/stream.h"

typedef struct lv_api lv_api_t;

/* Builds the services. fns may be NULL (no functions configured); streams
 * may be NULL (no Kinesis API: its requests get UnknownOperationException).
 * Problems (an async queue directory that cannot be created, an unreadable
 * shard iterator key...) are appended to errs and NULL is returned.
 * Touches the disk (data_dir), so `levee check` does not call it. */
lv_api_t *lv_api_new(const lv_config_t *cfg, lv_functions_t *fns, lv_streams_t *streams, lv_metrics_t *metrics,
                     lv_config_errors_t *errs);

void lv_api_free(lv_api_t *api);

/* lv_http_handler_cb for the api listener (ctx is the api). */
void lv_api_handle(lv_http_req_t *req, void *ctx);

/* On the home loop (loop 0) before it runs: starts the async queues. */
void lv_api_start(lv_api_t *api, lv_loop_t *home);

/* On the home loop at shutdown: stops the async queues, then calls
 * done(home, arg). */
void lv_api_stop(lv_api_t *api, lv_post_cb done, void *arg);

#endif
