/* admin.c: the admin listener: GET /metrics (Prometheus text) and
 * GET /status (JSON), plus the metrics whose values live in other modules
 * (server connections and limits, cache, origin pools) and are read only when
 * scraped, so the hot path never pays for them. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/version.h"
#include "gateway/gateway_internal.h"

typedef enum { SRC_SERVER, SRC_CACHE, SRC_UPSTREAM, SRC_BREAKER, SRC_BUDGET, SRC_BREAKER_STATE } scrape_source_t;

/* One scrape-time value: a uint64_t field of a stats struct. */
struct scrape {
    lv_gateway_t *gw;
    scrape_source_t source;
    size_t offset;  /* of the field in the stats struct */
    size_t origin;  /* SRC_UPSTREAM: index into gw->upstreams */
};

static double read_scrape(void *arg)
{
    const struct scrape *s = arg;
    const lv_gateway_t *gw = s->gw;
    union {
        lv_http_server_stats_t server;
        lv_cache_stats_t cache;
        lv_upstream_stats_t upstream;
        lv_breaker_stats_t breaker;
        lv_retry_budget_stats_t budget;
    } st;
    memset(&st, 0, sizeof st);
    switch (s->source) {
    case SRC_SERVER:
        if (!gw->server)
            return 0;
        lv_http_server_stats(gw->server, &st.server);
        break;
    case SRC_CACHE:
        lv_cache_stats(gw->cache, &st.cache);
        break;
    case SRC_UPSTREAM:
        if (!gw->upstreams[s->origin])
            return 0;
        lv_upstream_stats(gw->upstreams[s->origin], &st.upstream);
        break;
    case SRC_BREAKER:
        lv_breaker_stats(gw->breakers[s->origin], &st.breaker);
        break;
    case SRC_BUDGET:
        lv_retry_budget_stats(gw->budgets[s->origin], &st.budget);
        break;
    case SRC_BREAKER_STATE:
        /* 0 closed, 1 open, 2 half-open (the next request probes). */
        return (double)lv_breaker_state(gw->breakers[s->origin], lv_clock_ns());
    }
    uint64_t v;
    memcpy(&v, (const char *)&st + s->offset, sizeof v);
    return (double)v;
}

#define SERVER_FIELD(f) SRC_SERVER, offsetof(lv_http_server_stats_t, f), 0
#define CACHE_FIELD(f) SRC_CACHE, offsetof(lv_cache_stats_t, f), 0
#define UPSTREAM_FIELD(f, i) SRC_UPSTREAM, offsetof(lv_upstream_stats_t, f), (i)
#define BREAKER_FIELD(f) SRC_BREAKER, offsetof(lv_breaker_stats_t, f), 0
#define BUDGET_FIELD(f) SRC_BUDGET, offsetof(lv_retry_budget_stats_t, f), 0

typedef struct {
    const char *name, *help, *labels;
    scrape_source_t source;
    size_t offset, origin;
} scrape_def_t;

static const scrape_def_t global_scrapes[] = {
    {"levee_connections_open", "Client connections open now.", NULL, SERVER_FIELD(connections_open)},
    {"levee_connections_accepted_total", "Client connections accepted.", NULL, SERVER_FIELD(connections_accepted)},
    {"levee_limit_hits_total", "Requests or connections stopped by a limit.", "limit=\"bad_request\"", SERVER_FIELD(bad_requests)},
    {"levee_limit_hits_total", NULL, "limit=\"max_header_bytes\"", SERVER_FIELD(header_too_large)},
    {"levee_limit_hits_total", NULL, "limit=\"max_body_bytes\"", SERVER_FIELD(body_too_large)},
    {"levee_limit_hits_total", NULL, "limit=\"header_timeout\"", SERVER_FIELD(header_timeouts)},
    {"levee_limit_hits_total", NULL, "limit=\"request_timeout\"", SERVER_FIELD(body_timeouts)},
    {"levee_limit_hits_total", NULL, "limit=\"idle_timeout\"", SERVER_FIELD(idle_timeouts)},
    {"levee_limit_hits_total", NULL, "limit=\"write_timeout\"", SERVER_FIELD(write_timeouts)},
    {"levee_limit_hits_total", NULL, "limit=\"max_connections\"", SERVER_FIELD(max_connections_hits)},
    {"levee_cache_bytes", "Bytes held by the cache.", NULL, CACHE_FIELD(bytes)},
    {"levee_cache_max_bytes", "The cache's byte budget.", NULL, CACHE_FIELD(max_bytes)},
    {"levee_cache_objects", "Responses stored in the cache.", NULL, CACHE_FIELD(objects)},
    {"levee_cache_waiting", "Requests waiting for another request's fetch of the same key.", NULL, CACHE_FIELD(waiting)},
    {"levee_cache_evictions_total", "Cache entries evicted to make room.", NULL, CACHE_FIELD(evictions)},
    {"levee_cache_stores_total", "Responses stored in the cache.", NULL, CACHE_FIELD(stores)},
    {"levee_cache_uncacheable_total", "Fetches whose answer could not be cached.", NULL, CACHE_FIELD(uncacheable)},
    {"levee_cache_fill_failures_total", "Cache fills that failed (origin error or timeout).", NULL, CACHE_FIELD(fill_failures)},
    {"levee_cache_entries", "Keys tracked by the cache (objects, fills in progress, hit-for-miss markers).", NULL, CACHE_FIELD(entries)},
    {"levee_cache_too_big_total", "Answers too big to store (served, not cached).", NULL, CACHE_FIELD(too_big)},
    {"levee_cache_stale_if_error_total", "Stale copies served because a fill failed.", NULL, CACHE_FIELD(stale_if_error)},
    {"levee_cache_lock_takeovers_total", "Fills handed to a new request because the old one ran past the lock age.", NULL, CACHE_FIELD(lock_takeovers)},
    {"levee_cache_ghost_hits_total", "Misses on recently evicted keys (admitted straight to the main queue).", NULL, CACHE_FIELD(ghost_hits)},
    {"levee_cache_refreshes_total", "Background refreshes started (stale-while-revalidate).", NULL, CACHE_FIELD(refreshes)},
};

static const scrape_def_t origin_scrapes[] = {
    {"levee_origin_requests_total", "Requests sent to an origin.", NULL, UPSTREAM_FIELD(requests, 0)},
    {"levee_origin_retries_total", "Requests retried on a fresh connection after a dead keep-alive one.", NULL, UPSTREAM_FIELD(retries, 0)},
    {"levee_origin_errors_total", "Origin requests that failed, by kind.", "kind=\"refused\"", UPSTREAM_FIELD(refused, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"connect_timeout\"", UPSTREAM_FIELD(connect_timeouts, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"timeout\"", UPSTREAM_FIELD(timeouts, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"bad_response\"", UPSTREAM_FIELD(bad_responses, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"closed\"", UPSTREAM_FIELD(closed, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"no_connection\"", UPSTREAM_FIELD(no_connection, 0)},
    {"levee_origin_errors_total", NULL, "kind=\"pending_full\"", UPSTREAM_FIELD(pending_full, 0)},
    {"levee_origin_open_connections", "Connections open to an origin.", NULL, UPSTREAM_FIELD(open_connections, 0)},
    {"levee_origin_waiting", "Requests waiting for a connection to an origin.", NULL, UPSTREAM_FIELD(waiting, 0)},
};

/* Only for origins with a breaker / with retries. */
static const scrape_def_t breaker_scrapes[] = {
    {"levee_origin_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open.", NULL, SRC_BREAKER_STATE, 0, 0},
    {"levee_origin_breaker_opened_total", "Times the circuit breaker opened.", NULL, BREAKER_FIELD(opened)},
    {"levee_origin_breaker_rejected_total", "Requests failed fast by an open breaker.", NULL, BREAKER_FIELD(rejected)},
    {"levee_origin_breaker_probes_total", "Probe requests let through a half-open breaker.", NULL, BREAKER_FIELD(probes)},
};
static const scrape_def_t budget_scrapes[] = {
    {"levee_origin_retries_budget_total", "Retries asked of the retry budget, by result.", "result=\"granted\"", BUDGET_FIELD(granted)},
    {"levee_origin_retries_budget_total", NULL, "result=\"denied\"", BUDGET_FIELD(denied)},
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Registers the scrape slot just filled in; names ending in _total are
 * counters, the rest gauges. */
static void register_scrape(lv_gateway_t *gw, const scrape_def_t *d, const char *labels)
{
    struct scrape *slot = &gw->scrapes[gw->num_scrapes];
    if (ends_with(d->name, "_total"))
        lv_metrics_counter_fn(gw->metrics, d->name, d->help, labels, read_scrape, slot);
    else
        lv_metrics_gauge_fn(gw->metrics, d->name, d->help, labels, read_scrape, slot);
}

/* Registers one table of per-origin values, labelled with the origin. */
static void register_origin_table(lv_gateway_t *gw, size_t origin, const scrape_def_t *defs, size_t n)
{
    char labels[512], esc[256];
    lv_metrics_label_escape(gw->cfg->origins[origin].name, esc, sizeof esc);
    for (size_t i = 0; i < n; i++) {
        const scrape_def_t *d = &defs[i];
        if (d->labels)
            snprintf(labels, sizeof labels, "origin=\"%s\",%s", esc, d->labels);
        else
            snprintf(labels, sizeof labels, "origin=\"%s\"", esc);
        gw->scrapes[gw->num_scrapes] = (struct scrape){gw, d->source, d->offset, origin};
        register_scrape(gw, d, labels);
        gw->num_scrapes++;
    }
}

void gw_register_scrape_metrics(lv_gateway_t *gw)
{
    const lv_config_t *cfg = gw->cfg;
    size_t total = sizeof global_scrapes / sizeof global_scrapes[0] +
                   cfg->num_origins * (sizeof origin_scrapes / sizeof origin_scrapes[0] +
                                       sizeof breaker_scrapes / sizeof breaker_scrapes[0] +
                                       sizeof budget_scrapes / sizeof budget_scrapes[0]);
    /* Reserve up front: the registry keeps pointers into this array. */
    gw->scrapes = lv_calloc(total ? total : 1, sizeof *gw->scrapes);
    gw->num_scrapes = 0;
    char labels[512];
    for (size_t i = 0; i < sizeof global_scrapes / sizeof global_scrapes[0]; i++) {
        const scrape_def_t *d = &global_scrapes[i];
        gw->scrapes[gw->num_scrapes] = (struct scrape){gw, d->source, d->offset, 0};
        register_scrape(gw, d, d->labels);
        gw->num_scrapes++;
    }
    for (size_t o = 0; o < cfg->num_origins; o++) {
        register_origin_table(gw, o, origin_scrapes, sizeof origin_scrapes / sizeof origin_scrapes[0]);
        if (gw->breakers[o])
            register_origin_table(gw, o, breaker_scrapes, sizeof breaker_scrapes / sizeof breaker_scrapes[0]);
        if (gw->budgets[o])
            register_origin_table(gw, o, budget_scrapes, sizeof budget_scrapes / sizeof budget_scrapes[0]);
    }
    static const char *const results[] = {"hit", "miss", "stale", "updating", "pass", "coalesced"};
    lv_counter_t **slots[] = {&gw->cache_results.hit,      &gw->cache_results.miss, &gw->cache_results.stale,
                              &gw->cache_results.updating, &gw->cache_results.pass, &gw->cache_results.coalesced};
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        snprintf(labels, sizeof labels, "result=\"%s\"", results[i]);
        *slots[i] = lv_metrics_counter(gw->metrics, "levee_cache_requests_total",
                                       "Requests on cached routes by how the cache answered them "
                                       "(coalesced: waited for another request's fetch).",
                                       labels);
    }
}

static const char *target_name(lv_target_kind_t k)
{
    switch (k) {
    case LV_TARGET_RESPOND: return "respond";
    case LV_TARGET_REDIRECT: return "redirect";
    case LV_TARGET_ORIGIN: return "origin";
    case LV_TARGET_FUNCTION: return "function";
    default: return "none";
    }
}

/* Each function's current targets and workers, so an operator can see a
 * scheduled pre-scale take effect. */
static json_t *functions_json(lv_gateway_t *gw)
{
    json_t *list = json_array();
    size_t n = gw->functions ? lv_functions_count(gw->functions) : 0;
    for (size_t i = 0; i < n; i++) {
        lv_fn_t *fn = lv_functions_at(gw->functions, i);
        const lv_config_function_t *fc = lv_fn_config(fn);
        lv_fn_stats_t st;
        lv_fn_stats(fn, &st);
        static const char *const runtimes[] = {"nodejs", "python", "provided", "command"};
        json_t *jf = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name", fc->name, "runtime",
                               runtimes[fc->runtime], "warm_target", (json_int_t)st.warm_target, "max",
                               (json_int_t)st.max, "idle", (json_int_t)st.idle, "busy", (json_int_t)st.busy,
                               "starting", (json_int_t)st.starting, "queued", (json_int_t)st.queued,
                               "configured_warm", (json_int_t)fc->warm);
        json_object_set_new(jf, "invocations",
                            json_pack("{s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)st.invocations, "errors",
                                      (json_int_t)st.errors, "timeouts", (json_int_t)st.timeouts, "throttles",
                                      (json_int_t)st.throttles, "cold_starts", (json_int_t)st.cold_starts));
        json_array_append_new(list, jf);
    }
    return list;
}

/* A captured route's stream, policy and buffer, so an operator can see a
 * buffer filling before requests are shed. */
static json_t *capture_json(const lv_capture_t *c)
{
    static const char *const keys[] = {"request_id", "client_ip", "path", "header", "query"};
    const lv_config_capture_t *cc = lv_capture_config(c);
    lv_capture_stats_t st;
    lv_capture_stats(c, &st);
    char key[320];
    unsigned kind = (unsigned)cc->key < sizeof keys / sizeof keys[0] ? (unsigned)cc->key : 0;
    if (cc->key_name)
        snprintf(key, sizeof key, "%s.%s", keys[kind], cc->key_name);
    else
        snprintf(key, sizeof key, "%s", keys[kind]);
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "stream", lv_capture_stream_name(c),
                     "partition_key", key, "on_full", cc->on_full == LV_CAPTURE_DROP ? "drop" : "shed_request",
                     "records", (json_int_t)st.records, "dropped", (json_int_t)st.dropped, "shed",
                     (json_int_t)st.shed, "append_errors", (json_int_t)st.append_errors, "buffer_records",
                     (json_int_t)st.buffer_records, "buffer_bytes", (json_int_t)st.buffer_bytes, "reserved",
                     (json_int_t)st.reserved, "buffer_limit_bytes", (json_int_t)st.limit_bytes);
}

static char *status_json(lv_gateway_t *gw)
{
    const lv_config_t *cfg = gw->cfg;
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string(LV_VERSION));
    json_object_set_new(root, "uptime_seconds", json_integer((json_int_t)((uint64_t)gw_wall_ms() - gw->started_ms) / 1000));
    json_object_set_new(root, "threads", json_integer(gw->nloops));
    json_t *routes = json_array();
    for (size_t i = 0; i < gw->num_routes; i++) {
        const route_t *r = &gw->routes[i];
        uint64_t answered = 0;
        for (int c = 0; c < NUM_CLASSES; c++)
            answered += lv_counter_value(r->by_class[c]);
        json_t *jr = json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", r->cfg->name, "method", r->cfg->method,
                               "path", r->cfg->path, "target", target_name(r->cfg->kind), "requests",
                               (json_int_t)answered);
        if (r->cfg->kind == LV_TARGET_ORIGIN)
            json_object_set_new(jr, "origin", json_string(r->origin->name));
        if (r->cfg->kind == LV_TARGET_FUNCTION)
            json_object_set_new(jr, "function", json_string(gw->cfg->functions[r->cfg->function].name));
        json_object_set_new(jr, "cached", json_boolean(r->cfg->cache.enabled));
        if (r->bulkhead) {
            lv_bulkhead_stats_t bs;
            lv_bulkhead_stats(r->bulkhead, &bs);
            json_object_set_new(jr, "admission",
                                json_pack("{s:I, s:I, s:I, s:I, s:b, s:I}", "concurrency", (json_int_t)r->cfg->concurrency,
                                          "in_flight", (json_int_t)bs.in_flight, "queued", (json_int_t)bs.queued,
                                          "queue_max", (json_int_t)(r->cfg->queue.enabled ? r->cfg->queue.max : 0),
                                          "overloaded", (int)bs.overloaded, "drain_per_s", (json_int_t)bs.drain_per_s));
        }
        if (r->capture)
            json_object_set_new(jr, "capture", capture_json(r->capture));
        json_array_append_new(routes, jr);
    }
    json_object_set_new(root, "routes", routes);
    json_t *origins = json_array();
    for (size_t i = 0; i < cfg->num_origins; i++) {
        lv_upstream_stats_t us = {0};
        if (gw->upstreams[i])
            lv_upstream_stats(gw->upstreams[i], &us);
        json_t *jo = json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:I}", "name", cfg->origins[i].name, "url",
                               cfg->origins[i].url, "max_conns", cfg->origins[i].max_conns, "max_pending",
                               cfg->origins[i].max_pending, "open_connections", (json_int_t)us.open_connections,
                               "waiting", (json_int_t)us.waiting, "requests", (json_int_t)us.requests);
        if (gw->breakers[i])
            json_object_set_new(jo, "breaker", json_string(lv_breaker_state_name(lv_breaker_state(gw->breakers[i], lv_clock_ns()))));
        json_array_append_new(origins, jo);
    }
    json_object_set_new(root, "origins", origins);
    json_object_set_new(root, "functions", functions_json(gw));
    lv_buf_t counters = LV_BUF_INIT;
    lv_metrics_render_json(gw->metrics, &counters);
    lv_buf_append(&counters, "", 1);
    json_t *jc = json_loads(lv_buf_data(&counters), 0, NULL);
    lv_buf_free(&counters);
    json_object_set_new(root, "counters", jc ? jc : json_object());
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    return text;
}

void lv_gateway_admin_handle(lv_http_req_t *req, void *ctx)
{
    lv_gateway_t *gw = ctx;
    bool get = lv_slice_eq(req->head.method, LV_SLICE_LIT("GET")) || req->is_head;
    lv_slice_t path = req->head.path;
    if (get && lv_slice_eq(path, LV_SLICE_LIT("/metrics"))) {
        lv_buf_t out = LV_BUF_INIT;
        lv_metrics_render(gw->metrics, &out);
        lv_http_respond(req, 200, LV_SLICE_LIT("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
                        lv_buf_slice(&out));
        lv_buf_free(&out);
        return;
    }
    if (get && lv_slice_eq(path, LV_SLICE_LIT("/status"))) {
        char *text = status_json(gw);
        size_t n = strlen(text);
        text[n] = '\n';
        lv_http_respond(req, 200, LV_SLICE_LIT("Content-Type: application/json\r\n"), lv_slice(text, n + 1));
        free(text);
        return;
    }
    if (lv_slice_eq(path, LV_SLICE_LIT("/metrics")) || lv_slice_eq(path, LV_SLICE_LIT("/status"))) {
        lv_http_respond(req, 405, LV_SLICE_LIT("Allow: GET, HEAD\r\nContent-Type: text/plain\r\n"),
                        LV_SLICE_LIT("405 Method Not Allowed\n"));
        return;
    }
    lv_http_respond(req, 404, LV_SLICE_LIT("Content-Type: text/plain\r\n"), LV_SLICE_LIT("404 Not Found\n"));
}
