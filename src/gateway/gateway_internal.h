/* gateway_internal.h: what gateway.c, proxy.c and admin.c share. Not for
 * use outside src/gateway. */
#ifndef LV_GATEWAY_INTERNAL_H
#define LV_GATEWAY_INTERNAL_H

#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/list.h"
#include "gateway/admit.h"
#include "gateway/breaker.h"
#include "gateway/cache.h"
#include "gateway/capture.h"
#include "gateway/gateway.h"
#include "gateway/redirect.h"
#include "gateway/router.h"
#include "functions/pool.h"
#include "http/client.h"
#include "metrics/metrics.h"

enum { CLASS_1XX, CLASS_2XX, CLASS_3XX, CLASS_4XX, CLASS_5XX, NUM_CLASSES };

/* Per-route runtime state, built from one lv_config_route_t. */
typedef struct route {
    const lv_config_route_t *cfg;
    lv_buf_t fixed_headers;          /* respond: pre-serialised header lines */
    lv_redirect_table_t *table;      /* redirect */
    lv_upstream_t *upstream;         /* origin */
    const lv_config_origin_t *origin;
    lv_breaker_t *breaker;           /* the origin's, or NULL */
    lv_retry_budget_t *retry_budget; /* the origin's, or NULL */
    lv_counter_t *shed_breaker;      /* fast-fails by the origin's breaker, or NULL */
    lv_fn_t *function;               /* function */
    lv_buf_t route_key;              /* function: "METHOD /path" for the event's routeKey */
    lv_counter_t *by_class[NUM_CLASSES];
    lv_histogram_t *latency;
    /* Admission (admit_stage.c); `admission` false when the route has none. */
    bool admission;
    lv_token_bucket_t *throttle;
    lv_client_limiter_t *client_limiter;
    lv_slice_t client_header;        /* throttle_per_client key header:Name, or empty for the IP */
    lv_bulkhead_t *bulkhead;
    lv_counter_t *throttled_route, *throttled_client, *queued;
    lv_counter_t *shed_queue_full, *shed_queue_timeout, *shed_policy, *shed_memory, *client_gone;
    lv_histogram_t *queue_wait;
    lv_gauge_t *in_flight;
    /* Capture (capture.h); NULL when the route has no `capture:`. */
    lv_capture_t *capture;
} route_t;

typedef struct {
    lv_counter_t *hit, *miss, *stale, *updating, *pass, *coalesced;
} cache_counters_t;

struct lv_gateway {
    const lv_config_t *cfg;
    unsigned nloops;
    lv_router_t *router;
    route_t *routes;
    size_t num_routes;
    lv_upstream_t **upstreams;       /* one per lv_config_t.origins entry */
    lv_breaker_t **breakers;         /* per origin, NULL without `breaker` */
    lv_retry_budget_t **budgets;     /* per origin, NULL without `retries` */
    lv_cache_t *cache;
    lv_functions_t *functions;       /* NULL without `functions:` */
    lv_streams_t *streams;           /* borrowed (lv_gateway_set_streams), NULL until set */
    lv_buf_t *fn_events;             /* per loop: the event being built (function_target.c) */
    lv_metrics_t *metrics;
    lv_http_server_t *server;        /* for connection counters, may be NULL */
    route_t unmatched;               /* counts 404/405 answers */
    cache_counters_t cache_results;
    struct scrape *scrapes;          /* values read at scrape time (admin.c) */
    int over_memory;                 /* atomic: RSS above limits.max_memory (admit_stage.c) */
    int closing;                     /* atomic: loops are shutting down */
    lv_list_t *admit_queues;         /* per loop: requests queued for a bulkhead slot */
    lv_timer_t *memory_timers;       /* one per loop, when max_memory is set */
    size_t num_scrapes;
    uint64_t started_ms;             /* wall clock */
};

/* Answers req and records the route's metrics; on a captured route, then
 * builds and queues the request's record. */
void gw_finish(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status,
               const lv_slice_t *header_parts, size_t nparts, lv_slice_t body);

/* The same, saying how the cache answered (proxy.c), for the record. */
void gw_finish_cached(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status,
                      const lv_slice_t *header_parts, size_t nparts, lv_slice_t body, lv_capture_cache_t cache);

/* A short plain-text error answer ("502 Bad Gateway\n"). */
void gw_error(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status);

/* The same with a Retry-After header of that many seconds (none when 0). */
void gw_error_retry_after(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after);

/* The same, saying how the cache answered (proxy.c), for the record. */
void gw_error_cached(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after,
                     lv_capture_cache_t cache);

/* Proxies req to the route's origin, through the cache when configured. */
void gw_proxy(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m);

/* Runs the route's function for req (function_target.c). */
void gw_function(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m);

/* Registers the metrics whose values are read from other modules at scrape
 * time (connections, cache, origins). */
void gw_register_scrape_metrics(lv_gateway_t *gw);

/* Builds a route's admission state and metrics (admit_stage.c). */
void gw_admission_build(lv_gateway_t *gw, route_t *route);
void gw_admission_free(route_t *route);

/* The admit stage: throttles, memory guard, bulkhead and queue. Returns true
 * when the request may go on to its target now. Otherwise it has been
 * answered (429/503) or queued, and the stage runs the target itself when a
 * slot is granted. */
bool gw_admit(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m);

/* Runs the route's target for an admitted request (gateway.c). */
void gw_run_target(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m);

/* Gives back the bulkhead slot a request holds, if any (called when it is
 * answered). */
void gw_release(route_t *route, lv_http_req_t *req);

/* Starts the per-loop memory watch (on the loop's thread) / stops it. */
void gw_memory_watch_start(lv_gateway_t *gw, lv_loop_t *loop);
void gw_memory_watch_stop(lv_gateway_t *gw, lv_loop_t *loop);

/* At shutdown, on the loop's thread: answers 503 to every request still
 * queued on this loop. */
void gw_admission_close_loop(lv_gateway_t *gw, lv_loop_t *loop);

/* Wall-clock milliseconds (coarse clock), for cache ages. */
int64_t gw_wall_ms(void);

#endif
