/* invoke_api.h: the Lambda Invoke API on the api listener.
 *
 * POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=...]
 * with X-Amz-Invocation-Type:
 *   RequestResponse (default): runs the function and answers 200 with its
 *     result; a function error (or crash, timeout, oversize response) sets
 *     X-Amz-Function-Error: Unhandled and the body is the error object.
 *     X-Amz-Log-Type: Tail adds X-Amz-Log-Result (the last 4 KiB of the
 *     invocation's output, base64). X-Amz-Executed-Version: $LATEST.
 *   Event: the event is written durably to the function's async queue
 *     (functions/event_queue.h) and 202 is answered after the write is on
 *     disk; the queue runs it, retries it on error, and dead-letters it.
 *   DryRun: 204 once the function is known and the request is valid.
 * FunctionName may be a name, name:qualifier, a partial ARN
 * (123456789012:function:name) or a full ARN; the qualifier, if any, must be
 * $LATEST. The payload must be JSON (empty means {}).
 *
 * Errors are answered in the Lambda REST-JSON shape: status, header
 * X-Amzn-ErrorType: TYPE, body {"Type":"User","message":"..."} (plus
 * "Reason" for throttles): ResourceNotFoundException 404,
 * InvalidRequestContentException 400 (body not JSON),
 * InvalidParameterValueException 400, RequestTooLargeException 413 (6 MiB
 * sync, 1 MiB Event), TooManyRequestsException 429 with Retry-After,
 * ServiceException 500 (shutdown, disk failure), UnsupportedMediaTypeException
 * 415 is not used (any Content-Type is accepted, as boto3 sends none).
 *
 * Credentials and SigV4 signatures are accepted without checking (the api
 * listener is loopback only).
 *
 * Every answer carries x-amzn-RequestId (boto3 reads it into
 * ResponseMetadata); for RequestResponse and Event it is the id the
 * function sees. Choices where Lambda leaves room (X-Amz-Log-Type with
 * Event, client context checks, paths and methods that are not Invoke) are
 * listed at the top of invoke_api.c.
 *
 * Metrics: levee_invoke_api_requests_total{type, result} with type
 * RequestResponse | Event | DryRun (| unknown: a bad invocation type) and
 * result ok | error | throttled | not_found | bad_request.
 *
 * Lifetimes: the api borrows the pools and queues, which must outlive it;
 * a request still waiting for its result holds the api, so free it only
 * after the listener's connections are closed and the pools have stopped. */
#ifndef LV_FUNCTIONS_INVOKE_API_H
#define LV_FUNCTIONS_INVOKE_API_H

#include <stdbool.h>

#include "functions/event_queue.h"
#include "functions/pool.h"
#include "http/server.h"
#include "metrics/metrics.h"

typedef struct lv_invoke_api lv_invoke_api_t;

lv_invoke_api_t *lv_invoke_api_new(lv_functions_t *fns, lv_event_queues_t *queues, lv_metrics_t *metrics);
void lv_invoke_api_free(lv_invoke_api_t *api);

/* If req is for the Invoke API (path under /2015-03-31/functions/), handles
 * it (answering now or later) and returns true. Otherwise returns false and
 * req is untouched. On a loop thread. */
bool lv_invoke_api_handle(lv_invoke_api_t *api, lv_http_req_t *req);

#endif
