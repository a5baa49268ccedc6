/* gateway.h: the request pipeline behind the public and admin listeners.
 *
 * lv_gateway_new turns a loaded config into everything the hot path needs,
 * built once and read-only afterwards: the router, each route's target
 * (a pre-serialised fixed answer, a redirect table, an origin pool), the
 * shared micro-cache and the metrics. lv_gateway_handle is the handler for
 * the public listener: route, then answer from the target (through the cache
 * where the route has one). lv_gateway_admin_handle serves /metrics and
 * /status on the admin listener.
 *
 * Lifetimes: the gateway borrows the config (which must outlive it) and owns
 * everything else it builds. */
#ifndef LV_GATEWAY_GATEWAY_H
#define LV_GATEWAY_GATEWAY_H

#include "core/config.h"
#include "core/loop.h"
#include "functions/pool.h"
#include "http/server.h"
#include "stream/stream.h"

typedef struct lv_gateway lv_gateway_t;

/* Builds the gateway for nloops event loops. Problems that only show when
 * building (a redirect table that does not parse, conflicting routes, an
 * origin host that does not resolve) are appended to errs at the config
 * position they come from, and NULL is returned. */
lv_gateway_t *lv_gateway_new(const lv_config_t *cfg, unsigned nloops, lv_config_errors_t *errs);

/* Frees the gateway; every loop must have been stopped. */
void lv_gateway_free(lv_gateway_t *gw);

/* Lets the admin endpoints report the public server's connection counters. */
void lv_gateway_set_server(lv_gateway_t *gw, lv_http_server_t *server);

/* Gives routes with `capture:` the streams they append to (borrowed: they
 * must outlive the gateway's last use of them, see capture.h). Before the
 * loops start. Until it is called, captured records wait in their bounded
 * buffers. */
void lv_gateway_set_streams(lv_gateway_t *gw, lv_streams_t *streams);

/* lv_http_handler_cb for the public listener (ctx is the gateway). */
void lv_gateway_handle(lv_http_req_t *req, void *ctx);

/* lv_http_handler_cb for the admin listener (ctx is the gateway). */
void lv_gateway_admin_handle(lv_http_req_t *req, void *ctx);

/* On a loop's thread before it runs: starts the loop's periodic work (the
 * memory watch, when limits.max_memory is set) and, on loop 0 (the home of
 * the function pools), the functions. */
void lv_gateway_start_loop(lv_gateway_t *gw, lv_loop_t *loop);

/* The function pools (NULL without `functions:`) and the metrics registry,
 * for the other listeners' APIs. Owned by the gateway. */
lv_functions_t *lv_gateway_functions(lv_gateway_t *gw);
lv_metrics_t *lv_gateway_metrics(lv_gateway_t *gw);

/* On a loop's thread at shutdown, after draining and before the streams
 * stop: hands every captured record this loop holds to its stream now
 * (records of answers still to come go straight out), so the streams'
 * stop writes them. */
void lv_gateway_flush_captures(lv_gateway_t *gw, lv_loop_t *loop);

/* On a loop's thread at shutdown: answers what is still queued, closes
 * its origin connections, and appends the captured records this loop
 * still holds. */
void lv_gateway_close_loop(lv_gateway_t *gw, lv_loop_t *loop);

#endif
