/* gateway_internal.h: what gateway.c, proxy.c and admin.c share. Not for
 * use outside src/gateway. */
#ifndef LV_GATEWAY_INTERNAL_H
#define LV_GATEWAY_INTERNAL_H

#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "gateway/cache.h"
#include "gateway/gateway.h"
#include "gateway/redirect.h"
#include "gateway/router.h"
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
    lv_counter_t *by_class[NUM_CLASSES];
    lv_histogram_t *latency;
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
    lv_cache_t *cache;
    lv_metrics_t *metrics;
    lv_http_server_t *server;        /* for connection counters, may be NULL */
    route_t unmatched;               /* counts 404/405 answers */
    cache_counters_t cache_results;
    struct scrape *scrapes;          /* values read at scrape time (admin.c) */
    size_t num_scrapes;
    uint64_t started_ms;             /* wall clock */
};

/* Answers req and records the route's metrics. */
void gw_finish(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status,
               const lv_slice_t *header_parts, size_t nparts, lv_slice_t body);

/* A short plain-text error answer ("502 Bad Gateway\n"). */
void gw_error(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status);

/* Proxies req to the route's origin, through the cache when configured. */
void gw_proxy(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m);

/* Registers the metrics whose values are read from other modules at scrape
 * time (connections, cache, origins). */
void gw_register_scrape_metrics(lv_gateway_t *gw);

/* Wall-clock milliseconds (coarse clock), for cache ages. */
int64_t gw_wall_ms(void);

#endif
