/* proxy.c: the `origin` target: reverse proxy through the micro-cache.
 *
 * Without a cache (or for methods other than GET/HEAD) the request goes
 * straight to the origin ("plain"). With one, the cache decides the mode:
 *
 *   HIT / STALE      answer from the stored copy (X-Cache: HIT / UPDATING)
 *   STALE_REFRESH    answer from the stale copy at once, then refresh it in
 *                    the background: the client never waits for the refresh
 *   MISS_FILL        fetch, store if cacheable, answer (X-Cache: MISS)
 *   MISS_WAIT        another request is fetching this key: wait to be woken
 *                    with its answer (posted to this loop; no polling). An
 *                    answer meant for one user (Set-Cookie, private) is
 *                    never shared: each waiter then fetches its own
 *   PASS             recently uncacheable: fetch without coalescing; an
 *                    answer that is cacheable again is stored, ending it
 *
 * Cache fills always fetch with GET (so a HEAD request can fill the entry for
 * GETs) and without conditional or range headers (so the origin sends a full
 * answer to store). When a fetch fails, a copy within its stale_if_error
 * window is served instead (X-Cache: STALE).
 *
 * Towards the origin, hop-by-hop headers (and those named in Connection) are
 * removed, Host is the origin's, and X-Forwarded-For/-Proto/-Host are set.
 * Towards the client, the origin's hop-by-hop, Date, Server, Content-Length
 * and Age headers are dropped (the server writes its own). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "gateway/cache_control.h"
#include "gateway/gateway_internal.h"

/* How long a key that answered uncacheably bypasses coalescing. */
#define HIT_FOR_MISS_MS 10000
/* Retry backoff: full jitter up to 50 ms, 100 ms, ... at most 1 s. */
#define RETRY_BACKOFF_BASE_MS 50
#define RETRY_BACKOFF_CAP_MS 1000

typedef enum { MODE_PLAIN, MODE_FILL, MODE_REFRESH, MODE_PASS } proxy_mode_t;

typedef struct proxy_req {
    lv_gateway_t *gw;
    route_t *route;
    lv_http_req_t *req;      /* NULL for a background refresh */
    lv_loop_t *loop;
    proxy_mode_t mode;
    lv_capture_cache_t cache; /* for the record: how an answer fetched for this request came */
    char *key;               /* cache key; NULL for plain */
    size_t key_len;
    lv_cache_waiter_t waiter;
    lv_cache_obj_t *woken_obj;
    /* Origin protection: the breaker's probe flag for the attempt in
     * flight, and what a retry needs. */
    bool probe, fetch_is_head, idempotent;
    unsigned attempt;
    uint64_t started_ns;     /* first attempt, for the request deadline */
    lv_buf_t retry_copy;     /* the request's bytes, kept only when it may be retried */
    lv_timer_t retry_timer;
} proxy_req_t;

static bool name_is(lv_slice_t name, const char *lit)
{
    return lv_slice_eq_nocase(name, lv_slice_cstr(lit));
}

static bool is_hop_by_hop(lv_slice_t name)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                      "transfer-encoding", "upgrade", "proxy-authenticate",
                                      "proxy-authorization"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (name_is(name, hop[i]))
            return true;
    return false;
}

/* True if the header is named in the message's Connection header. */
static bool named_in_connection(const lv_http_header_t *hs, size_t n, lv_slice_t name)
{
    for (size_t i = 0; i < n; i++)
        if (name_is(hs[i].name, "connection") && lv_http_list_has_token(hs[i].value, name))
            return true;
    return false;
}

static bool is_conditional(lv_slice_t name)
{
    return name_is(name, "if-none-match") || name_is(name, "if-modified-since") || name_is(name, "if-match") ||
           name_is(name, "if-unmodified-since") || name_is(name, "if-range") || name_is(name, "range");
}

/* Serialises the request for the origin. */
static void build_upstream_request(const route_t *route, const lv_http_req_t *req, bool for_cache,
                                   lv_buf_t *out)
{
    const lv_http_request_t *h = &req->head;
    const lv_config_origin_t *o = route->origin;
    lv_slice_t method = for_cache ? LV_SLICE_LIT("GET") : h->method;
    lv_buf_reserve(out, 512 + h->path.len + h->query.len + req->body.len);
    lv_buf_append(out, method.ptr, method.len);
    lv_buf_append(out, " ", 1);
    lv_buf_append_str(out, o->base_path);
    lv_buf_append(out, h->path.ptr, h->path.len);
    if (h->query.len) {
        lv_buf_append(out, "?", 1);
        lv_buf_append(out, h->query.ptr, h->query.len);
    }
    lv_buf_append_str(out, " HTTP/1.1\r\nHost: ");
    lv_buf_append_str(out, o->host_header);
    lv_buf_append(out, "\r\n", 2);
    lv_slice_t xff = {0};
    for (size_t i = 0; i < h->num_headers; i++) {
        lv_slice_t name = h->headers[i].name;
        if (is_hop_by_hop(name) || name_is(name, "host") || name_is(name, "content-length") ||
            name_is(name, "expect") || name_is(name, "x-forwarded-proto") || name_is(name, "x-forwarded-host") ||
            named_in_connection(h->headers, h->num_headers, name))
            continue;
        if (name_is(name, "x-forwarded-for")) {
            xff = h->headers[i].value;
            continue;
        }
        if (for_cache && is_conditional(name))
            continue;
        lv_buf_append(out, name.ptr, name.len);
        lv_buf_append(out, ": ", 2);
        lv_buf_append(out, h->headers[i].value.ptr, h->headers[i].value.len);
        lv_buf_append(out, "\r\n", 2);
    }
    lv_buf_append_str(out, "X-Forwarded-For: ");
    if (xff.len) {
        lv_buf_append(out, xff.ptr, xff.len);
        lv_buf_append(out, ", ", 2);
    }
    lv_buf_append_str(out, lv_http_req_peer_ip(req));
    lv_buf_append_str(out, "\r\nX-Forwarded-Proto: http\r\n");
    if (h->host.len) {
        lv_buf_append_str(out, "X-Forwarded-Host: ");
        lv_buf_append(out, h->host.ptr, h->host.len);
        lv_buf_append(out, "\r\n", 2);
    }
    bool send_body = !for_cache && (req->body.len || h->content_length >= 0 || h->chunked);
    if (send_body) {
        lv_buf_append_str(out, "Content-Length: ");
        lv_buf_append_u64(out, req->body.len);
        lv_buf_append(out, "\r\n", 2);
    }
    lv_buf_append(out, "\r\n", 2);
    if (send_body)
        lv_buf_append(out, req->body.ptr, req->body.len);
}

/* The origin's header lines that go to the client (and into the cache). */
static void filter_response_headers(const lv_http_response_t *res, lv_buf_t *out)
{
    for (size_t i = 0; i < res->num_headers; i++) {
        lv_slice_t name = res->headers[i].name;
        if (is_hop_by_hop(name) || name_is(name, "date") || name_is(name, "server") ||
            name_is(name, "content-length") || name_is(name, "age") || name_is(name, "x-cache") ||
            named_in_connection(res->headers, res->num_headers, name))
            continue;
        lv_buf_append(out, name.ptr, name.len);
        lv_buf_append(out, ": ", 2);
        lv_buf_append(out, res->headers[i].value.ptr, res->headers[i].value.len);
        lv_buf_append(out, "\r\n", 2);
    }
}

static void serve_obj(proxy_req_t *pr, lv_cache_obj_t *obj, const char *xcache, lv_capture_cache_t cache)
{
    char extra[96];
    int64_t age_ms = gw_wall_ms() - obj->stored_at_ms;
    int n = snprintf(extra, sizeof extra, "Age: %lld\r\nX-Cache: %s\r\n",
                     (long long)(age_ms > 0 ? age_ms / 1000 : 0), xcache);
    lv_slice_t parts[2] = {obj->headers, lv_slice(extra, (size_t)n)};
    gw_finish_cached(pr->gw, pr->route, pr->req, obj->status, parts, 2, obj->body, cache);
}

static void proxy_req_free(proxy_req_t *pr)
{
    lv_timer_stop(&pr->retry_timer);
    lv_buf_free(&pr->retry_copy);
    free(pr->key);
    free(pr);
}

static void count_cache(lv_counter_t *c)
{
    lv_counter_inc(c);
}

/* The origin failed (or its breaker is open): serve a stale copy if one is
 * allowed, else the error, with Retry-After when there is an honest one. */
static void answer_failure(proxy_req_t *pr, int status, unsigned retry_after, lv_cache_obj_t *stale)
{
    if (stale) {
        count_cache(pr->gw->cache_results.stale);
        serve_obj(pr, stale, "STALE", LV_CAPTURE_CACHE_STALE);
        lv_cache_obj_unref(stale);
        return;
    }
    gw_error_cached(pr->gw, pr->route, pr->req, status, retry_after, pr->cache);
}

/* Ends a fetch that produced no answer: stale-if-error or the error. */
static void fetch_failed(proxy_req_t *pr, int status, unsigned retry_after)
{
    lv_gateway_t *gw = pr->gw;
    lv_slice_t key = lv_slice(pr->key, pr->key_len);
    int64_t now = gw_wall_ms();
    lv_cache_obj_t *stale = NULL;
    if (pr->mode == MODE_FILL || pr->mode == MODE_REFRESH)
        stale = lv_cache_fill_done(gw->cache, key, now, NULL, false, 0);
    else if (pr->mode == MODE_PASS)
        stale = lv_cache_get_for_error(gw->cache, key, now);
    if (pr->req)
        answer_failure(pr, status, retry_after, stale);
    else
        lv_cache_obj_unref(stale);
    proxy_req_free(pr);
}

/* What the cache rules say about an origin answer on this route. */
static lv_cache_decision_t decide(const route_t *route, const lv_http_response_t *head)
{
    lv_cache_control_t cc;
    lv_cache_control_init(&cc);
    bool set_cookie = false, vary_star = false;
    for (size_t i = 0; i < head->num_headers; i++) {
        lv_slice_t name = head->headers[i].name;
        if (name_is(name, "cache-control"))
            lv_cache_control_parse(head->headers[i].value, &cc);
        else if (name_is(name, "set-cookie"))
            set_cookie = true;
        else if (name_is(name, "vary") && lv_http_list_has_token(head->headers[i].value, LV_SLICE_LIT("*")))
            vary_star = true;
    }
    return lv_cache_decide(&route->cfg->cache, head->status, &cc, set_cookie, vary_star);
}

/* Ends a fill (or a PASS whose answer proved cacheable) with the origin's
 * answer, and serves what the cache hands back. */
static void finish_fill(proxy_req_t *pr, const lv_upstream_result_t *res, const lv_buf_t *headers,
                        lv_cache_decision_t d, int64_t now)
{
    lv_gateway_t *gw = pr->gw;
    const lv_http_response_t *head = res->head;
    lv_cache_obj_t *obj = lv_cache_obj_new(head->status, lv_buf_data(headers), lv_buf_len(headers),
                                           res->body.ptr, res->body.len);
    lv_cache_obj_set_lifetime(obj, now, d.ttl_ms, d.swr_ms, d.sie_ms);
    lv_cache_obj_t *served = lv_cache_fill_done(gw->cache, lv_slice(pr->key, pr->key_len), now, obj, d.cacheable,
                                                d.cacheable ? 0 : HIT_FOR_MISS_MS);
    if (pr->req && served) {
        count_cache(pr->mode == MODE_PASS ? gw->cache_results.pass : gw->cache_results.miss);
        serve_obj(pr, served, "MISS", pr->cache);
    } else if (pr->req) {
        gw_error_cached(gw, pr->route, pr->req, 502, 0, pr->cache);
    }
    lv_cache_obj_unref(served);
}

/* ---- origin protection: breaker and retries ---- */

static void attempt_fetch(proxy_req_t *pr, lv_buf_t *request);

/* A failure of the origin, for the breaker and for retries: no usable
 * answer, or an answer saying it is overloaded or broken upstream. */
static bool origin_failed(const lv_upstream_result_t *res)
{
    if (res->status == LV_UPSTREAM_NO_CONNECTION || res->status == LV_UPSTREAM_PENDING_FULL)
        return false; /* our own limits, not the origin's health */
    if (res->status != LV_UPSTREAM_OK)
        return true;
    return res->head->status >= 502 && res->head->status <= 504;
}

/* Worth trying again: the request surely did not run (refused, connection
 * closed before an answer) or the origin answered 502/503/504. A timeout is
 * not retried (the origin may still be working on it: a retry doubles the
 * load on a slow origin), nor a garbled answer (it would come again). */
static bool retriable(const lv_upstream_result_t *res)
{
    switch (res->status) {
    case LV_UPSTREAM_REFUSED:
    case LV_UPSTREAM_CONNECT_TIMEOUT:
    case LV_UPSTREAM_CLOSED:
        return true;
    case LV_UPSTREAM_OK:
        return res->head->status >= 502 && res->head->status <= 504;
    default:
        return false;
    }
}

static double random01(void)
{
    static __thread uint64_t state;
    if (!state)
        state = lv_clock_ns() | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / (double)(1ull << 53);
}

static void on_retry_timer(lv_loop_t *loop, lv_timer_t *t)
{
    proxy_req_t *pr = t->data;
    (void)loop;
    lv_buf_t request = LV_BUF_INIT;
    lv_buf_append(&request, lv_buf_data(&pr->retry_copy), lv_buf_len(&pr->retry_copy));
    attempt_fetch(pr, &request);
}

/* Schedules another attempt when the request may be retried and the budget
 * allows. Returns true if one was scheduled. */
static bool retry_later(proxy_req_t *pr, const lv_upstream_result_t *res)
{
    const lv_config_origin_t *o = pr->route->origin;
    uint64_t now = lv_clock_ns();
    if (!pr->idempotent || pr->attempt >= (unsigned)o->retries || !retriable(res) ||
        __atomic_load_n(&pr->gw->closing, __ATOMIC_RELAXED))
        return false;
    int64_t wait = lv_retry_backoff_ms(pr->attempt + 1, RETRY_BACKOFF_BASE_MS, RETRY_BACKOFF_CAP_MS, random01());
    uint64_t deadline = pr->started_ns + (uint64_t)pr->gw->cfg->limits.request_timeout_ms * 1000000u;
    if (now + (uint64_t)wait * 1000000u >= deadline || !lv_retry_budget_try(pr->route->retry_budget, now))
        return false;
    pr->attempt++;
    pr->retry_timer.cb = on_retry_timer;
    pr->retry_timer.data = pr;
    lv_timer_start(pr->loop, &pr->retry_timer, (uint64_t)wait);
    return true;
}

static void on_upstream_done(const lv_upstream_result_t *res, void *arg)
{
    proxy_req_t *pr = arg;
    lv_gateway_t *gw = pr->gw;
    int64_t now = gw_wall_ms();

    /* Requests ended by a loop shutting down say nothing of the origin. */
    bool shutting_down = __atomic_load_n(&gw->closing, __ATOMIC_RELAXED);
    if (origin_failed(res)) {
        if (!shutting_down)
            lv_breaker_record(pr->route->breaker, lv_clock_ns(), false, pr->probe);
        if (retry_later(pr, res))
            return;
    } else {
        lv_breaker_record(pr->route->breaker, lv_clock_ns(), true, pr->probe);
    }
    if (res->status != LV_UPSTREAM_OK) {
        /* Our own wait for an origin connection overflowed: the queue ahead
         * clears within one origin timeout at worst, so say that. */
        unsigned retry_after = 0;
        if (res->status == LV_UPSTREAM_PENDING_FULL || res->status == LV_UPSTREAM_NO_CONNECTION)
            retry_after = (unsigned)((pr->route->origin->timeout_ms + 999) / 1000);
        fetch_failed(pr, lv_upstream_status_code(res->status), retry_after);
        return;
    }

    lv_buf_t headers = LV_BUF_INIT;
    filter_response_headers(res->head, &headers);
    lv_cache_decision_t d = {0};
    bool cached_route = pr->mode != MODE_PLAIN;
    if (cached_route)
        d = decide(pr->route, res->head);
    /* A PASS answer that is cacheable again ends the hit-for-miss marker. */
    if (pr->mode == MODE_FILL || pr->mode == MODE_REFRESH || (pr->mode == MODE_PASS && d.cacheable)) {
        finish_fill(pr, res, &headers, d, now);
    } else {
        lv_slice_t parts[2] = {lv_buf_slice(&headers), LV_SLICE_LIT("X-Cache: MISS\r\n")};
        if (pr->mode == MODE_PASS)
            count_cache(gw->cache_results.pass);
        gw_finish_cached(gw, pr->route, pr->req, res->head->status, parts, cached_route ? 2 : 1, res->body,
                         pr->cache);
    }
    lv_buf_free(&headers);
    proxy_req_free(pr);
}

/* One attempt: through the breaker, then to the origin. */
static void attempt_fetch(proxy_req_t *pr, lv_buf_t *request)
{
    const lv_config_t *cfg = pr->gw->cfg;
    uint64_t now = lv_clock_ns();
    if (!lv_breaker_allow(pr->route->breaker, now, &pr->probe)) {
        /* Fail fast while the origin is known to be down: no connection,
         * no wait, and an honest Retry-After (or a stale copy). */
        lv_buf_free(request);
        if (pr->route->shed_breaker)
            lv_counter_inc(pr->route->shed_breaker);
        fetch_failed(pr, 503, lv_breaker_retry_after(pr->route->breaker, now));
        return;
    }
    lv_upstream_send(pr->route->upstream, pr->loop, request, pr->fetch_is_head, pr->idempotent,
                     cfg->limits.request_timeout_ms, on_upstream_done, pr);
}

static void send_fetch(proxy_req_t *pr, lv_buf_t *request, bool is_head, bool idempotent)
{
    pr->fetch_is_head = is_head;
    pr->idempotent = idempotent;
    if (pr->route->origin->retries && idempotent) {
        lv_buf_clear(&pr->retry_copy);
        lv_buf_append(&pr->retry_copy, lv_buf_data(request), lv_buf_len(request));
    }
    pr->started_ns = lv_clock_ns();
    lv_retry_budget_request(pr->route->retry_budget, pr->started_ns);
    attempt_fetch(pr, request);
}

/* True if a stored header block marks the answer as meant for one user
 * (Set-Cookie, or Cache-Control: private): such an answer, though fetched
 * for a coalesced key, must never be handed to the other waiters. */
static bool is_user_specific(lv_slice_t headers)
{
    const char *p = headers.ptr, *end = headers.ptr + headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon) {
            lv_slice_t name = lv_slice(p, (size_t)(colon - p));
            const char *v = colon + 1, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (name_is(name, "set-cookie"))
                return true;
            if (name_is(name, "cache-control") &&
                lv_http_list_has_token(lv_slice(v, (size_t)(ve - v)), LV_SLICE_LIT("private")))
                return true;
        }
        p = line_end + 1;
    }
    return false;
}

static void send_fetch(proxy_req_t *pr, lv_buf_t *request, bool is_head, bool idempotent);

/* A waiter whose fill ended with an answer for someone else fetches its own,
 * bypassing the cache. */
static void fetch_own(proxy_req_t *pr)
{
    lv_http_req_t *req = pr->req;
    lv_buf_t request = LV_BUF_INIT;
    pr->mode = MODE_PASS;
    pr->cache = LV_CAPTURE_CACHE_BYPASS;
    build_upstream_request(pr->route, req, false, &request);
    bool idempotent = lv_slice_eq(req->head.method, LV_SLICE_LIT("GET")) || req->is_head;
    send_fetch(pr, &request, req->is_head, idempotent);
}

/* Runs on the waiter's loop once the fill it waited for has ended. */
static void serve_woken(lv_loop_t *loop, void *arg)
{
    proxy_req_t *pr = arg;
    cache_counters_t *cr = &pr->gw->cache_results;
    (void)loop;
    switch (pr->waiter.woken) {
    case LV_CACHE_WOKEN_STORED:
        count_cache(cr->coalesced);
        serve_obj(pr, pr->woken_obj, "HIT", LV_CAPTURE_CACHE_HIT);
        break;
    case LV_CACHE_WOKEN_NOT_STORED:
        if (is_user_specific(pr->woken_obj->headers)) {
            lv_cache_obj_unref(pr->woken_obj);
            pr->woken_obj = NULL;
            fetch_own(pr);
            return;
        }
        count_cache(cr->coalesced);
        serve_obj(pr, pr->woken_obj, "MISS", LV_CAPTURE_CACHE_MISS);
        break;
    case LV_CACHE_WOKEN_STALE:
        count_cache(cr->stale);
        serve_obj(pr, pr->woken_obj, "STALE", LV_CAPTURE_CACHE_STALE);
        break;
    case LV_CACHE_WOKEN_FAILED:
        /* The fetch this request waited for failed and nothing stale may be
         * served: fail fast rather than pile another fetch on the origin. */
        gw_error_cached(pr->gw, pr->route, pr->req, 502, 0, LV_CAPTURE_CACHE_MISS);
        break;
    }
    lv_cache_obj_unref(pr->woken_obj);
    proxy_req_free(pr);
}

/* Called on the filler's thread: hand over to the waiter's own loop. */
static void on_cache_ready(lv_cache_waiter_t *w, lv_cache_obj_t *obj)
{
    proxy_req_t *pr = (proxy_req_t *)((char *)w - offsetof(proxy_req_t, waiter));
    pr->woken_obj = obj;
    lv_loop_post(pr->loop, serve_woken, pr);
}

static char *build_cache_key(const lv_http_req_t *req, size_t *len)
{
    const lv_http_request_t *h = &req->head;
    lv_buf_t k = LV_BUF_INIT;
    lv_buf_reserve(&k, 8 + h->host.len + h->path.len + h->query.len);
    lv_buf_append_str(&k, "GET ");
    lv_buf_append(&k, h->host.ptr, h->host.len);
    lv_buf_append(&k, h->path.ptr, h->path.len);
    if (h->query.len) {
        lv_buf_append(&k, "?", 1);
        lv_buf_append(&k, h->query.ptr, h->query.len);
    }
    *len = lv_buf_len(&k);
    return lv_buf_data(&k); /* start is 0: the allocation itself */
}

void gw_proxy(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m)
{
    (void)m;
    proxy_req_t *pr = lv_calloc(1, sizeof *pr);
    pr->gw = gw;
    pr->route = route;
    pr->req = req;
    pr->loop = req->loop;
    lv_buf_t request = LV_BUF_INIT;
    bool is_get = lv_slice_eq(req->head.method, LV_SLICE_LIT("GET"));
    bool idempotent = is_get || req->is_head || lv_slice_eq(req->head.method, LV_SLICE_LIT("OPTIONS"));

    if (!route->cfg->cache.enabled || !(is_get || req->is_head)) {
        pr->mode = MODE_PLAIN;
        pr->cache = route->cfg->cache.enabled ? LV_CAPTURE_CACHE_BYPASS : LV_CAPTURE_CACHE_NONE;
        build_upstream_request(route, req, false, &request);
        send_fetch(pr, &request, req->is_head, idempotent);
        return;
    }

    pr->key = build_cache_key(req, &pr->key_len);
    pr->cache = LV_CAPTURE_CACHE_MISS;
    pr->waiter.on_ready = on_cache_ready;
    lv_cache_obj_t *obj = NULL;
    lv_cache_result_t r = lv_cache_lookup(gw->cache, lv_slice(pr->key, pr->key_len), gw_wall_ms(), &pr->waiter, &obj);
    switch (r) {
    case LV_CACHE_HIT:
        count_cache(gw->cache_results.hit);
        serve_obj(pr, obj, "HIT", LV_CAPTURE_CACHE_HIT);
        lv_cache_obj_unref(obj);
        proxy_req_free(pr);
        return;
    case LV_CACHE_STALE:
        count_cache(gw->cache_results.updating);
        serve_obj(pr, obj, "UPDATING", LV_CAPTURE_CACHE_UPDATING);
        lv_cache_obj_unref(obj);
        proxy_req_free(pr);
        return;
    case LV_CACHE_STALE_REFRESH:
        /* The request must be serialised before it is answered: after the
         * answer its bytes are gone, and the refresh outlives it. */
        build_upstream_request(route, req, true, &request);
        count_cache(gw->cache_results.updating);
        serve_obj(pr, obj, "UPDATING", LV_CAPTURE_CACHE_UPDATING);
        lv_cache_obj_unref(obj);
        pr->req = NULL;
        pr->mode = MODE_REFRESH;
        send_fetch(pr, &request, false, true);
        return;
    case LV_CACHE_MISS_FILL:
        pr->mode = MODE_FILL;
        build_upstream_request(route, req, true, &request);
        send_fetch(pr, &request, false, true);
        return;
    case LV_CACHE_MISS_WAIT:
        return; /* on_cache_ready answers */
    case LV_CACHE_PASS:
        pr->mode = MODE_PASS;
        pr->cache = LV_CAPTURE_CACHE_BYPASS;
        build_upstream_request(route, req, false, &request);
        send_fetch(pr, &request, req->is_head, idempotent);
        return;
    }
}
