/* admit_stage.c: the `admit` stage of the request path, between route and
 * target, for routes with throttle, throttle_per_client, concurrency or
 * queue settings, plus the process-wide memory guard.
 *
 * In order, each check cheaper than the next and each refusal honest:
 *
 *   memory guard     RSS past the high-water mark of limits.max_memory → 503
 *   per-client       the client's token bucket (by IP or a header) → 429
 *   route throttle   the route's token bucket, shared by all loops → 429
 *   bulkhead         a slot among `concurrency`, or a place in the queue;
 *                    a full queue, the queue timeout, or the overload
 *                    policy → 503
 *
 * Every 429/503 carries Retry-After from the refill rate or the measured
 * drain rate (admit.h). A request admitted through the bulkhead holds its
 * slot until it is answered (gw_release from gw_finish); req->user marks
 * that it holds one.
 *
 * A queued request waits on its own loop: the module wakes it through
 * on_admit from whichever thread freed a slot, and this file posts the
 * wake-up to the request's loop. Its queue timeout is a timer on that loop. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "gateway/gateway_internal.h"

#define MEMORY_CHECK_MS 100
/* Shed above this share of max_memory, resume below the lower one. */
#define MEMORY_HIGH_WATER 0.90
#define MEMORY_RESUME 0.80

/* req->user for a request that holds a bulkhead slot. */
static char holds_slot;

typedef struct admit_wait {
    lv_admit_waiter_t waiter;
    lv_list_t link;              /* in gw->admit_queues[loop] while queued */
    lv_gateway_t *gw;
    route_t *route;
    lv_http_req_t *req;
    lv_loop_t *loop;
    lv_route_match_t match;
    lv_timer_t timeout;
    lv_admit_outcome_t outcome;
} admit_wait_t;

/* ---- answers ---- */

static void refuse(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, int status, unsigned retry_after,
                   lv_counter_t *reason)
{
    if (reason)
        lv_counter_inc(reason);
    gw_error_retry_after(gw, route, req, status, retry_after ? retry_after : 1);
}

/* ---- the queue ---- */

static void admit_wait_free(admit_wait_t *aw)
{
    lv_timer_stop(&aw->timeout);
    if (lv_list_linked(&aw->link))
        lv_list_remove(&aw->link);
    free(aw);
}

/* On the request's loop: the module granted a slot or shed the request. */
static void resume_queued(lv_loop_t *loop, void *arg)
{
    admit_wait_t *aw = arg;
    route_t *route = aw->route;
    lv_http_req_t *req = aw->req;
    uint64_t now = lv_clock_ns();
    (void)loop;
    lv_timer_stop(&aw->timeout);
    lv_histogram_observe_ns(route->queue_wait, now > aw->waiter.enqueued_ns ? now - aw->waiter.enqueued_ns : 0);
    if (aw->outcome == LV_ADMIT_SHED) {
        lv_counter_t *reason =
            aw->waiter.shed_reason == LV_ADMIT_SHED_EXPIRED ? route->shed_queue_timeout : route->shed_policy;
        refuse(aw->gw, route, req, 503, lv_bulkhead_retry_after(route->bulkhead, now), reason);
        admit_wait_free(aw);
        return;
    }
    req->user = &holds_slot;
    lv_gauge_add(route->in_flight, 1);
    if (__atomic_load_n(&aw->gw->closing, __ATOMIC_RELAXED)) {
        gw_error(aw->gw, route, req, 503); /* shutting down: start nothing new */
    } else if (lv_http_req_client_gone(req)) {
        /* Nobody is waiting for this answer: give the slot to the next one. */
        lv_counter_inc(route->client_gone);
        gw_error(aw->gw, route, req, 503);
    } else {
        gw_run_target(aw->gw, route, req, &aw->match);
    }
    admit_wait_free(aw);
}

/* Any thread: hand over to the request's own loop. */
static void on_admit(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    admit_wait_t *aw = (admit_wait_t *)((char *)w - offsetof(admit_wait_t, waiter));
    aw->outcome = outcome;
    lv_loop_post(aw->loop, resume_queued, aw);
}

static void on_queue_timeout(lv_loop_t *loop, lv_timer_t *t)
{
    admit_wait_t *aw = t->data;
    (void)loop;
    /* If the module already granted or shed it, the posted wake-up decides. */
    if (!lv_bulkhead_cancel(aw->route->bulkhead, &aw->waiter))
        return;
    uint64_t now = lv_clock_ns();
    lv_histogram_observe_ns(aw->route->queue_wait, now - aw->waiter.enqueued_ns);
    refuse(aw->gw, aw->route, aw->req, 503, lv_bulkhead_retry_after(aw->route->bulkhead, now),
           aw->route->shed_queue_timeout);
    admit_wait_free(aw);
}

static bool enter_bulkhead(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m,
                           uint64_t now)
{
    admit_wait_t *aw = lv_calloc(1, sizeof *aw);
    aw->waiter.on_admit = on_admit;
    switch (lv_bulkhead_enter(route->bulkhead, &aw->waiter, now)) {
    case LV_BULKHEAD_ADMITTED:
        free(aw);
        req->user = &holds_slot;
        lv_gauge_add(route->in_flight, 1);
        return true;
    case LV_BULKHEAD_FULL:
        free(aw);
        refuse(gw, route, req, 503, lv_bulkhead_retry_after(route->bulkhead, now), route->shed_queue_full);
        return false;
    case LV_BULKHEAD_QUEUED:
        break;
    }
    lv_counter_inc(route->queued);
    aw->gw = gw;
    aw->route = route;
    aw->req = req;
    aw->loop = req->loop;
    aw->match = *m;
    aw->timeout.cb = on_queue_timeout;
    aw->timeout.data = aw;
    lv_list_push_back(&gw->admit_queues[lv_loop_index(req->loop)], &aw->link);
    lv_timer_start(req->loop, &aw->timeout, (uint64_t)route->cfg->queue.timeout_ms);
    return false;
}

void gw_admission_close_loop(lv_gateway_t *gw, lv_loop_t *loop)
{
    lv_list_t *node;
    while ((node = lv_list_first(&gw->admit_queues[lv_loop_index(loop)])) != NULL) {
        admit_wait_t *aw = lv_list_entry(node, admit_wait_t, link);
        lv_list_remove(node);
        /* Granted or shed already: the posted wake-up answers it. */
        if (!lv_bulkhead_cancel(aw->route->bulkhead, &aw->waiter))
            continue;
        refuse(gw, aw->route, aw->req, 503, 1, aw->route->shed_queue_timeout);
        admit_wait_free(aw);
    }
}

/* ---- throttles ---- */

/* The per-client key: "h:" and a header's value when configured and
 * present, else "i:" and the client's IP. The prefixes keep the two apart,
 * so a header that happens to read like an IP cannot use that IP's bucket. */
static lv_slice_t client_key(const route_t *route, const lv_http_req_t *req, char *buf, size_t buflen)
{
    lv_slice_t v = lv_slice_cstr(lv_http_req_peer_ip(req));
    const char *prefix = "i:";
    if (route->client_header.len) {
        const lv_http_header_t *h =
            lv_http_find_header(req->head.headers, req->head.num_headers, route->client_header);
        if (h && h->value.len) {
            v = h->value;
            prefix = "h:";
        }
    }
    size_t n = v.len < buflen - 2 ? v.len : buflen - 2; /* longer values are cut: still a fair key */
    memcpy(buf, prefix, 2);
    memcpy(buf + 2, v.ptr, n);
    return lv_slice(buf, n + 2);
}

bool gw_admit(lv_gateway_t *gw, route_t *route, lv_http_req_t *req, const lv_route_match_t *m)
{
    if (__atomic_load_n(&gw->over_memory, __ATOMIC_RELAXED)) {
        refuse(gw, route, req, 503, 1, route->shed_memory);
        return false;
    }
    unsigned retry_after = 0;
    /* The loop's clock, read once per iteration: a moment old at most,
     * which only makes the buckets a little stricter. */
    uint64_t now = lv_loop_now_ns(req->loop);
    char key[1024];
    if (route->client_limiter &&
        !lv_client_limiter_take(route->client_limiter, client_key(route, req, key, sizeof key), now, &retry_after)) {
        refuse(gw, route, req, 429, retry_after, route->throttled_client);
        return false;
    }
    if (route->throttle && !lv_token_bucket_take(route->throttle, now, &retry_after)) {
        refuse(gw, route, req, 429, retry_after, route->throttled_route);
        return false;
    }
    if (route->bulkhead)
        return enter_bulkhead(gw, route, req, m, now);
    return true;
}

void gw_release(route_t *route, lv_http_req_t *req)
{
    if (req->user != &holds_slot)
        return;
    req->user = NULL;
    lv_gauge_add(route->in_flight, -1);
    lv_bulkhead_leave(route->bulkhead, lv_loop_now_ns(req->loop));
}

/* ---- memory guard ---- */

static long page_size;
static int statm_fd = -1;

static uint64_t rss_bytes(void)
{
    char buf[128];
    ssize_t n = statm_fd >= 0 ? pread(statm_fd, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long size = 0, resident = 0;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return resident * (uint64_t)page_size;
}

static void on_memory_check(lv_loop_t *loop, lv_timer_t *t)
{
    lv_gateway_t *gw = t->data;
    uint64_t max = gw->cfg->limits.max_memory, rss = rss_bytes();
    int over = __atomic_load_n(&gw->over_memory, __ATOMIC_RELAXED);
    if (!over && rss > (uint64_t)(max * MEMORY_HIGH_WATER)) {
        lv_log_warn("admit", "memory %llu MiB is past 90%% of max_memory (%llu MiB): shedding new requests",
                    (unsigned long long)(rss >> 20), (unsigned long long)(max >> 20));
        __atomic_store_n(&gw->over_memory, 1, __ATOMIC_RELAXED);
    } else if (over && rss < (uint64_t)(max * MEMORY_RESUME)) {
        lv_log_info("admit", "memory back to %llu MiB: accepting requests again", (unsigned long long)(rss >> 20));
        __atomic_store_n(&gw->over_memory, 0, __ATOMIC_RELAXED);
    }
    lv_timer_start(loop, t, MEMORY_CHECK_MS);
}

void gw_memory_watch_start(lv_gateway_t *gw, lv_loop_t *loop)
{
    /* One loop watches for all: the flag is shared. */
    if (!gw->cfg->limits.max_memory || lv_loop_index(loop) != 0)
        return;
    page_size = sysconf(_SC_PAGESIZE);
    if (statm_fd < 0)
        statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (!gw->memory_timers)
        gw->memory_timers = lv_calloc(1, sizeof *gw->memory_timers);
    gw->memory_timers->cb = on_memory_check;
    gw->memory_timers->data = gw;
    lv_timer_start(loop, gw->memory_timers, MEMORY_CHECK_MS);
}

void gw_memory_watch_stop(lv_gateway_t *gw, lv_loop_t *loop)
{
    if (gw->memory_timers && lv_loop_index(loop) == 0)
        lv_timer_stop(gw->memory_timers);
}

/* ---- building ---- */

static double client_table_size(void *arg)
{
    const route_t *route = arg;
    return route->client_limiter ? (double)lv_client_limiter_size(route->client_limiter) : 0;
}

void gw_admission_build(lv_gateway_t *gw, route_t *route)
{
    const lv_config_route_t *rc = route->cfg;
    char esc[512], labels[640];
    lv_metrics_label_escape(rc->name, esc, sizeof esc);
#define ROUTE_COUNTER(field, name, help, extra)                                          \
    do {                                                                                 \
        snprintf(labels, sizeof labels, "route=\"%s\"%s", esc, extra);                   \
        route->field = lv_metrics_counter(gw->metrics, name, help, labels);              \
    } while (0)
    ROUTE_COUNTER(throttled_route, "levee_throttled_total", "Requests answered 429 by a throttle.", ",scope=\"route\"");
    ROUTE_COUNTER(throttled_client, "levee_throttled_total", "Requests answered 429 by a throttle.", ",scope=\"client\"");
    ROUTE_COUNTER(queued, "levee_queued_total", "Requests that waited in a route's queue.", "");
    /* Without a queue, a full bulkhead refuses at once: say so. */
    if (rc->queue.enabled)
        ROUTE_COUNTER(shed_queue_full, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"queue_full\"");
    else
        ROUTE_COUNTER(shed_queue_full, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"concurrency\"");
    ROUTE_COUNTER(shed_queue_timeout, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"queue_timeout\"");
    ROUTE_COUNTER(shed_policy, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"policy\"");
    ROUTE_COUNTER(shed_memory, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"memory\"");
    ROUTE_COUNTER(client_gone, "levee_shed_total", "Requests answered 503 by admission, by reason.", ",reason=\"client_gone\"");
#undef ROUTE_COUNTER
    snprintf(labels, sizeof labels, "route=\"%s\"", esc);
    route->queue_wait = lv_metrics_histogram(gw->metrics, "levee_queue_wait_seconds",
                                             "Time requests spent in a route's queue.", labels,
                                             lv_metrics_latency_buckets, lv_metrics_latency_nbuckets);
    route->in_flight = lv_metrics_gauge(gw->metrics, "levee_in_flight", "Requests holding a route's bulkhead slot.", labels);
    if (rc->throttle.enabled)
        route->throttle = lv_token_bucket_new(rc->throttle.rate, rc->throttle.burst);
    if (rc->throttle_per_client.enabled) {
        lv_metrics_gauge_fn(gw->metrics, "levee_throttle_clients", "Clients tracked by a route's per-client throttle.",
                            labels, client_table_size, route);
        route->client_limiter = lv_client_limiter_new(rc->throttle_per_client.rate, rc->throttle_per_client.burst,
                                                      (size_t)rc->throttle_per_client.max_clients);
        if (strncmp(rc->throttle_per_client.key, "header:", 7) == 0)
            route->client_header = lv_slice_cstr(rc->throttle_per_client.key + 7);
    }
    if (rc->concurrency)
        route->bulkhead = lv_bulkhead_new((unsigned)rc->concurrency, rc->queue.enabled ? (size_t)rc->queue.max : 0,
                                          rc->queue.enabled ? rc->queue.timeout_ms : 0);
}

void gw_admission_free(route_t *route)
{
    lv_token_bucket_free(route->throttle);
    lv_client_limiter_free(route->client_limiter);
    lv_bulkhead_free(route->bulkhead);
}
