/* gateway.c: builds the gateway from the config and runs the request
 * pipeline for the public listener: route, then the route's target.
 *
 * Fixed answers (`respond`) are serialised once at start; a redirect is a
 * table lookup and a Location header; origins go through proxy.c. Every
 * answer passes through gw_finish, which records the route's metrics: one
 * counter by status class and one latency histogram per route; on a route
 * with `capture:` it then hands the request's record to capture.c, after
 * the answer (the capture stage's reservation happens right after
 * routing, in lv_gateway_handle). */
#include "gateway/gateway_internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/mem.h"

#define MAX_RESPONSE_BYTES (64u * 1024 * 1024)
/* Retries may add at most 10% to an origin's load, plus one a second so a
 * quiet origin can still retry. */
#define RETRY_RATIO 0.1
#define RETRY_MIN_PER_S 1.0

int64_t gw_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- answering ---- */

/* The two request headers a record carries, found in one pass. */
static void find_ua_referer(const lv_http_request_t *h, lv_slice_t *ua, lv_slice_t *referer)
{
    *ua = *referer = (lv_slice_t){NULL, 0};
    for (size_t i = 0; i < h->num_headers; i++) {
        lv_slice_t name = h->headers[i].name;
        if (!ua->ptr && name.len == 10 && lv_slice_eq_nocase(name, LV_SLICE_LIT("user-agent")))
            *ua = h->headers[i].value;
        else if (!referer->ptr && name.len == 7 && lv_slice_eq_nocase(name, LV_SLICE_LIT("referer")))
            *referer = h->headers[i].value;
    }
}

/* The wall-clock time of a monotonic instant, in Unix ms: the offset
 * between the two clocks is read once a second per thread (now is the
 * monotonic time already read), which keeps a clock_gettime off every
 * captured request and still follows a stepped clock within a second. */
static int64_t wall_ms_of(uint64_t mono_ns, uint64_t now)
{
    static __thread int64_t offset_ns;
    static __thread uint64_t offset_read_ns;
    if (!offset_read_ns || now - offset_read_ns > 1000000000u) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        offset_ns = ((int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec) - (int64_t)now;
        offset_read_ns = now;
    }
    return ((int64_t)mono_ns + offset_ns) / 1000000;
}

/* Copies what the record needs out of req, which is gone once answered. */
static void capture_snapshot(const route_t *route, const lv_http_req_t *req, int status, lv_capture_cache_t cache,
                             uint64_t latency_ns, lv_capture_snapshot_t *snap)
{
    const lv_config_route_t *rc = route->cfg;
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    size_t nparams = lv_capture_path_params(lv_slice_cstr(rc->path), req->head.path, params, LV_ROUTE_MAX_PARAMS);
    lv_capture_fields_t f = {
        .time_ms = wall_ms_of(req->start_ns, req->start_ns + latency_ns),
        .route = lv_slice_cstr(rc->name),
        .method = req->head.method,
        .path = req->head.path,
        .query = req->head.query,
        .status = status,
        .cache = cache,
        .latency_us = latency_ns / 1000u,
        .ip = lv_slice_cstr(lv_http_req_peer_ip(req)),
        .params = params,
        .num_params = nparams,
    };
    find_ua_referer(&req->head, &f.ua, &f.referer);
    lv_slice_t key = lv_capture_partition_key(lv_capture_config(route->capture), &req->head, f.ip, params, nparams);
    lv_capture_snapshot(snap, &f, key);
}

/* Every answer of every route ends here. record is false only for the
 * capture stage's own refusal, which holds no slot for a record. */
static void finish(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, const lv_slice_t *header_parts,
                   size_t nparts, lv_slice_t body, lv_capture_cache_t cache, bool record)
{
    gw_release(route, req);
    int cls = status / 100 - 1;
    if (cls < 0 || cls >= NUM_CLASSES)
        cls = CLASS_5XX;
    lv_counter_inc(route->by_class[cls]);
    uint64_t now = lv_clock_ns();
    uint64_t latency = now > req->start_ns ? now - req->start_ns : 0;
    lv_histogram_observe_ns(route->latency, latency);
    if (!record || !route->capture) {
        lv_http_respondv(req, status, header_parts, nparts, body);
        return;
    }
    /* The answer goes first; the record is built from a copy after it. */
    lv_capture_snapshot_t snap;
    capture_snapshot(route, req, status, cache, latency, &snap);
    lv_loop_t *loop = req->loop;
    lv_http_respondv(req, status, header_parts, nparts, body);
    lv_capture_submit(route->capture, loop, &snap);
}

void gw_finish(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status,
               const lv_slice_t *header_parts, size_t nparts, lv_slice_t body)
{
    finish(gw, route, req, status, header_parts, nparts, body, LV_CAPTURE_CACHE_NONE, true);
}

void gw_finish_cached(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status,
                      const lv_slice_t *header_parts, size_t nparts, lv_slice_t body, lv_capture_cache_t cache)
{
    finish(gw, route, req, status, header_parts, nparts, body, cache, true);
}

static void error_answer(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after,
                         lv_capture_cache_t cache, bool record)
{
    char hdr[96], body[96];
    int hn = retry_after ? snprintf(hdr, sizeof hdr, "Content-Type: text/plain\r\nRetry-After: %u\r\n", retry_after)
                         : snprintf(hdr, sizeof hdr, "Content-Type: text/plain\r\n");
    int bn = snprintf(body, sizeof body, "%d %s\n", status, lv_http_status_reason(status));
    lv_slice_t h = lv_slice(hdr, (size_t)hn);
    finish(gw, route, req, status, &h, 1, lv_slice(body, (size_t)bn), cache, record);
}

void gw_error_cached(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after,
                     lv_capture_cache_t cache)
{
    error_answer(gw, route, req, status, retry_after, cache, true);
}

void gw_error_retry_after(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after)
{
    error_answer(gw, route, req, status, retry_after, LV_CAPTURE_CACHE_NONE, true);
}

void gw_error(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status)
{
    gw_error_retry_after(gw, route, req, status, 0);
}

static void answer_redirect(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m)
{
    const lv_config_redirect_t *rc = &route->cfg->redirect;
    lv_slice_t code = m->rest;
    for (size_t i = 0; i < m->num_params; i++)
        if (lv_slice_eq(m->params[i].name, LV_SLICE_LIT("code")) || i + 1 == m->num_params)
            code = m->params[i].value;
    lv_slice_t url;
    if (!lv_redirect_table_lookup(route->table, code, &url)) {
        if (!rc->missing) {
            gw_error(gw, route, req, 404);
            return;
        }
        url = lv_slice_cstr(rc->missing);
    }
    lv_slice_t parts[3] = {LV_SLICE_LIT("Location: "), url, LV_SLICE_LIT("\r\n")};
    gw_finish(gw, route, req, rc->status, parts, 3, (lv_slice_t){"", 0});
}

void lv_gateway_handle(lv_http_req_t *req, void *ctx)
{
    lv_gateway_t *gw = ctx;
    lv_route_match_t m;
    switch (lv_router_match(gw->router, req->head.method, req->head.path, &m)) {
    case LV_ROUTE_NOT_FOUND:
        gw_error(gw, &gw->unmatched, req, 404);
        return;
    case LV_ROUTE_METHOD_NOT_ALLOWED: {
        char allow[256];
        size_t n = lv_router_allow(gw->router, req->head.path, allow, sizeof allow);
        char body[] = "405 Method Not Allowed\n";
        lv_slice_t parts[3] = {LV_SLICE_LIT("Content-Type: text/plain\r\nAllow: "), lv_slice(allow, n),
                               LV_SLICE_LIT("\r\n")};
        gw_finish(gw, &gw->unmatched, req, 405, parts, 3, lv_slice(body, sizeof body - 1));
        return;
    }
    case LV_ROUTE_FOUND:
        break;
    }
    route_t *route = m.target;
    /* Capture comes before admission so that admission's own refusals are
     * recorded too: a flood shows in the stream even when it is throttled.
     * Without a slot for its record, a request does not get in at all. */
    if (route->capture && !lv_capture_reserve(route->capture, req->loop)) {
        error_answer(gw, route, req, 503, 1, LV_CAPTURE_CACHE_NONE, false);
        return;
    }
    if (route->admission && !gw_admit(gw, route, req, &m))
        return; /* answered, or queued: the stage runs the target later */
    gw_run_target(gw, route, req, &m);
}

void gw_run_target(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m)
{
    switch (route->cfg->kind) {
    case LV_TARGET_RESPOND: {
        lv_slice_t h = lv_buf_slice(&route->fixed_headers);
        gw_finish(gw, route, req, route->cfg->respond.status, &h, 1,
                  lv_slice(route->cfg->respond.body, route->cfg->respond.body_len));
        return;
    }
    case LV_TARGET_REDIRECT:
        answer_redirect(gw, route, req, m);
        return;
    case LV_TARGET_ORIGIN:
        gw_proxy(gw, route, req, m);
        return;
    case LV_TARGET_FUNCTION:
        gw_function(gw, route, req, m);
        return;
    default:
        gw_error(gw, route, req, 500);
        return;
    }
}

/* ---- building ---- */

static void register_route_metrics(lv_gateway_t *gw, route_t *route, const char *name)
{
    static const char *const classes[NUM_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    char esc[512], labels[640];
    lv_metrics_label_escape(name, esc, sizeof esc);
    for (int i = 0; i < NUM_CLASSES; i++) {
        snprintf(labels, sizeof labels, "route=\"%s\",class=\"%s\"", esc, classes[i]);
        route->by_class[i] = lv_metrics_counter(gw->metrics, "levee_requests_total",
                                                "Requests answered, by route and status class.", labels);
    }
    snprintf(labels, sizeof labels, "route=\"%s\"", esc);
    route->latency = lv_metrics_histogram(gw->metrics, "levee_request_duration_seconds",
                                          "Time from a complete request head to its answer, by route.", labels,
                                          lv_metrics_latency_buckets, lv_metrics_latency_nbuckets);
}

static int resolve_origin(const lv_config_origin_t *o, struct sockaddr_storage *addr, socklen_t *len, char *err,
                          size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", o->port);
    int r = getaddrinfo(o->host, port, &hints, &res);
    if (r != 0 || !res) {
        snprintf(err, errlen, "cannot resolve origin host '%s': %s", o->host, gai_strerror(r));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void build_fixed_headers(route_t *route)
{
    const lv_config_respond_t *rc = &route->cfg->respond;
    for (size_t i = 0; i < rc->num_headers; i++)
        lv_buf_printf(&route->fixed_headers, "%s: %s\r\n", rc->headers[i].name, rc->headers[i].value);
}

static int build_route(lv_gateway_t *gw, route_t *route, lv_config_errors_t *errs)
{
    const lv_config_route_t *rc = route->cfg;
    char err[512];
    switch (rc->kind) {
    case LV_TARGET_RESPOND:
        build_fixed_headers(route);
        break;
    case LV_TARGET_REDIRECT:
        route->table = lv_redirect_table_load(rc->redirect.table, err, sizeof err);
        if (!route->table) {
            lv_config_error(errs, gw->cfg->path, rc->redirect.table_pos, "redirect table %s: %s",
                            rc->redirect.table, err);
            return -1;
        }
        break;
    case LV_TARGET_ORIGIN:
        route->origin = &gw->cfg->origins[rc->origin];
        route->upstream = gw->upstreams[rc->origin];
        route->breaker = gw->breakers[rc->origin];
        route->retry_budget = gw->budgets[rc->origin];
        if (route->breaker) {
            char esc[512], labels[640];
            lv_metrics_label_escape(rc->name, esc, sizeof esc);
            snprintf(labels, sizeof labels, "route=\"%s\",reason=\"breaker\"", esc);
            route->shed_breaker = lv_metrics_counter(gw->metrics, "levee_shed_total",
                                                     "Requests answered 503 by admission, by reason.", labels);
        }
        break;
    case LV_TARGET_FUNCTION: {
        const lv_config_function_t *fc = &gw->cfg->functions[rc->function];
        route->function = lv_functions_find(gw->functions, lv_slice_cstr(fc->name));
        lv_buf_printf(&route->route_key, "%s %s", rc->method, rc->path);
        break;
    }
    default:
        break;
    }
    if (lv_router_add(gw->router, rc->method, rc->path, route, err, sizeof err) < 0) {
        lv_config_error(errs, gw->cfg->path, rc->pos, "%s", err);
        return -1;
    }
    register_route_metrics(gw, route, rc->name);
    if (rc->capture.enabled) {
        route->capture = lv_capture_new(gw->cfg, &rc->capture, rc->name, 0, gw->nloops, gw->metrics);
        if (!route->capture) {
            lv_config_error(errs, gw->cfg->path, rc->capture.pos, "capture: no such stream");
            return -1;
        }
    }
    route->admission = rc->throttle.enabled || rc->throttle_per_client.enabled || rc->concurrency ||
                       gw->cfg->limits.max_memory;
    if (route->admission)
        gw_admission_build(gw, route);
    return 0;
}

static int build_upstreams(lv_gateway_t *gw, lv_config_errors_t *errs)
{
    const lv_config_t *cfg = gw->cfg;
    int failed = 0;
    gw->upstreams = lv_calloc(cfg->num_origins ? cfg->num_origins : 1, sizeof *gw->upstreams);
    gw->breakers = lv_calloc(cfg->num_origins ? cfg->num_origins : 1, sizeof *gw->breakers);
    gw->budgets = lv_calloc(cfg->num_origins ? cfg->num_origins : 1, sizeof *gw->budgets);
    for (size_t i = 0; i < cfg->num_origins; i++) {
        const lv_config_origin_t *o = &cfg->origins[i];
        struct sockaddr_storage addr;
        socklen_t len;
        char err[256];
        if (resolve_origin(o, &addr, &len, err, sizeof err) < 0) {
            lv_config_error(errs, cfg->path, o->pos, "%s", err);
            failed = -1;
            continue;
        }
        if (o->breaker.enabled)
            gw->breakers[i] = lv_breaker_new((unsigned)o->breaker.failures, o->breaker.window_ms,
                                             o->breaker.open_for_ms);
        if (o->retries)
            gw->budgets[i] = lv_retry_budget_new(RETRY_RATIO, RETRY_MIN_PER_S);
        lv_upstream_config_t uc = {
            .name = o->name,
            .addr = (struct sockaddr *)&addr,
            .addr_len = len,
            .max_conns = o->max_conns,
            .max_pending = o->max_pending,
            .connect_timeout_ms = o->connect_timeout_ms,
            .timeout_ms = o->timeout_ms,
            .max_response_bytes = MAX_RESPONSE_BYTES,
            .max_header_bytes = cfg->limits.max_header_bytes * 4,
        };
        gw->upstreams[i] = lv_upstream_new(&uc, gw->nloops);
    }
    return failed;
}

lv_gateway_t *lv_gateway_new(const lv_config_t *cfg, unsigned nloops, lv_config_errors_t *errs)
{
    lv_gateway_t *gw = lv_calloc(1, sizeof *gw);
    gw->cfg = cfg;
    gw->nloops = nloops;
    gw->started_ms = (uint64_t)gw_wall_ms();
    gw->metrics = lv_metrics_new(nloops);
    gw->router = lv_router_new();
    gw->admit_queues = lv_calloc(nloops, sizeof *gw->admit_queues);
    for (unsigned i = 0; i < nloops; i++)
        lv_list_init(&gw->admit_queues[i]);
    /* A few shards per loop keep lock contention negligible; fewer shards
     * keep each shard's budget, and so the largest storable object, big. */
    gw->cache = lv_cache_new(cfg->cache_max_bytes, 4 * nloops);
    int failed = build_upstreams(gw, errs);
    gw->fn_events = lv_calloc(nloops, sizeof *gw->fn_events);
    if (cfg->num_functions) {
        gw->functions = lv_functions_new(cfg, gw->metrics, errs);
        if (!gw->functions)
            failed = -1;
    }
    int64_t longest = 1000;
    for (size_t i = 0; i < cfg->num_origins; i++)
        if (cfg->origins[i].timeout_ms + cfg->origins[i].connect_timeout_ms > longest)
            longest = cfg->origins[i].timeout_ms + cfg->origins[i].connect_timeout_ms;
    lv_cache_set_fill_timeout(gw->cache, longest);
    gw->routes = lv_calloc(cfg->num_routes ? cfg->num_routes : 1, sizeof *gw->routes);
    gw->num_routes = cfg->num_routes;
    for (size_t i = 0; i < cfg->num_routes; i++) {
        gw->routes[i].cfg = &cfg->routes[i];
        bool needs_built = cfg->routes[i].kind == LV_TARGET_ORIGIN || cfg->routes[i].kind == LV_TARGET_FUNCTION;
        if (failed == 0 || !needs_built)
            if (build_route(gw, &gw->routes[i], errs) < 0)
                failed = -1;
    }
    register_route_metrics(gw, &gw->unmatched, "(unmatched)");
    static const lv_config_route_t unmatched_cfg = {.name = "(unmatched)"};
    gw->unmatched.cfg = &unmatched_cfg;
    gw_register_scrape_metrics(gw);
    if (failed) {
        lv_gateway_free(gw);
        return NULL;
    }
    return gw;
}

void lv_gateway_set_server(lv_gateway_t *gw, lv_http_server_t *server)
{
    gw->server = server;
}

void lv_gateway_set_streams(lv_gateway_t *gw, lv_streams_t *streams)
{
    gw->streams = streams;
    for (size_t i = 0; i < gw->num_routes; i++) {
        lv_capture_t *c = gw->routes[i].capture;
        if (!c)
            continue;
        lv_capture_set_streams(c, streams);
        lv_stream_t *s = streams ? lv_streams_find(streams, lv_slice_cstr(lv_capture_stream_name(c))) : NULL;
        if (!s)
            lv_log_warn("gateway", "route %s captures into stream %s, which is not open: its records wait in "
                        "the capture buffer", gw->routes[i].cfg->name, lv_capture_stream_name(c));
        else
            lv_stream_unref(s);
    }
}

void lv_gateway_start_loop(lv_gateway_t *gw, lv_loop_t *loop)
{
    gw_memory_watch_start(gw, loop);
    if (gw->functions && lv_loop_index(loop) == 0)
        lv_functions_start(gw->functions, loop);
}

lv_functions_t *lv_gateway_functions(lv_gateway_t *gw)
{
    return gw->functions;
}

lv_metrics_t *lv_gateway_metrics(lv_gateway_t *gw)
{
    return gw->metrics;
}

void lv_gateway_flush_captures(lv_gateway_t *gw, lv_loop_t *loop)
{
    for (size_t i = 0; i < gw->num_routes; i++)
        if (gw->routes[i].capture)
            lv_capture_close_loop(gw->routes[i].capture, loop);
}

void lv_gateway_close_loop(lv_gateway_t *gw, lv_loop_t *loop)
{
    __atomic_store_n(&gw->closing, 1, __ATOMIC_RELAXED);
    gw_memory_watch_stop(gw, loop);
    gw_admission_close_loop(gw, loop);
    for (size_t i = 0; i < gw->cfg->num_origins; i++)
        if (gw->upstreams[i])
            lv_upstream_close_loop(gw->upstreams[i], loop);
    /* Last: the answers above are captured too. */
    for (size_t i = 0; i < gw->num_routes; i++)
        if (gw->routes[i].capture)
            lv_capture_close_loop(gw->routes[i].capture, loop);
}

void lv_gateway_free(lv_gateway_t *gw)
{
    if (!gw)
        return;
    for (size_t i = 0; i < gw->num_routes; i++) {
        lv_buf_free(&gw->routes[i].fixed_headers);
        lv_buf_free(&gw->routes[i].route_key);
        gw_admission_free(&gw->routes[i]);
        lv_capture_free(gw->routes[i].capture);
        lv_redirect_table_free(gw->routes[i].table);
    }
    for (size_t i = 0; i < gw->cfg->num_origins; i++) {
        lv_upstream_free(gw->upstreams[i]);
        lv_breaker_free(gw->breakers[i]);
        lv_retry_budget_free(gw->budgets[i]);
    }
    free(gw->upstreams);
    free(gw->breakers);
    free(gw->budgets);
    free(gw->routes);
    lv_router_free(gw->router);
    lv_cache_free(gw->cache);
    lv_functions_free(gw->functions);
    for (unsigned i = 0; gw->fn_events && i < gw->nloops; i++)
        lv_buf_free(&gw->fn_events[i]);
    free(gw->fn_events);
    lv_metrics_free(gw->metrics);
    free(gw->scrapes);
    free(gw->admit_queues);
    free(gw->memory_timers);
    free(gw);
}
