/* pool.c: worker pools, invocations, scaling and shutdown (see pool.h).
 *
 * Everything runs on the home loop. An invocation is submitted there
 * (posted from other loops), handed to the most recently idle worker, or
 * queued (FIFO, bounded) while a worker starts; its result is always posted
 * back to the caller's loop. Invocation structs come from a free list and
 * keep their buffers, so the steady state allocates nothing per invocation
 * but the loop's post records.
 *
 * A worker moves SPAWNING (the spawner thread runs posix_spawn) -> STARTING
 * (init timer) -> IDLE (its GET /next is held) <-> BUSY (deadline timer;
 * still BUSY after answering, until its next /next) and, when it is told to
 * go, STOPPING (SIGTERM, SIGKILL after 2 s). Whatever the state, the end is
 * the same: its pidfd turns readable, the rest of its process group is
 * killed, it is reaped, its output drained, its invocation failed if it had
 * one (Runtime.ExitError), its listener and connections closed, and a
 * replacement started if the target or the queue needs one. A worker that
 * dies before its first /next is an init failure: restarts back off (1 s,
 * doubling to 30 s, one probe at a time), and with no live worker the
 * queue fails with the init error instead of waiting for nothing.
 *
 * Scaling: a 250 ms scaler keeps live workers (not stopping) at the warm
 * target (`warm`, or the schedule entry in force), starts a worker whenever
 * more invocations wait than workers are starting, and stops idle workers
 * above the target once they idled idle_timeout. `max` bounds processes,
 * stopping ones included, so the host never runs more than `max` per
 * function. Idle workers form a LIFO stack: the busiest few stay hot and
 * the rest age out.
 *
 * Output: each worker's stdout+stderr pipe is read on the home loop, cut
 * into lines (at most 16 KiB; logged in pieces that fit one log line) and
 * logged with the function name and request id. At most 128 KiB is read
 * per wake; the rest is read from a posted callback in a later iteration,
 * so a worker printing without pause cannot starve the loop.
 *
 * Reentrancy: answering a held /next from outside its connection's handler
 * lets the server go on with requests the runtime pipelined behind it,
 * which can call back into this file. So an answer is always the last
 * thing a function does, after every field is consistent, and a worker is
 * freed only from its pidfd or spawn callback, never under a handler. */
#include "functions/pool_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/uuid.h"

#define SCALER_MS 250
#define KILL_GRACE_MS 2000
#define INIT_ERROR_GRACE_MS 1000  /* a runtime that reported an init error gets this long to exit */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define OUT_BUDGET (128 * 1024)   /* output bytes read per wake */
#define DEATH_DRAIN_MAX (1024 * 1024)
#define TAIL_DRAIN_MAX (64 * 1024)
#define LINE_MAX_BYTES (16 * 1024)
#define LOG_PIECE 1792            /* fits one log line (log.c formats into 2 KiB) */
#define FREE_INVS_MAX 1024
#define INV_BUF_KEEP (256 * 1024) /* larger buffers are not kept on the free list */
#define RAPI_BACKLOG 16
#define RETURN_MIN_MS 1000 /* least time a worker gets to come back to /next after answering */

typedef enum { START_WARM, START_DEMAND, START_REPLACE } start_reason_t;

/* The limits of a worker's Runtime API listener. */
static const lv_config_limits_t rapi_limits = {
    .max_connections = 16,
    .max_header_bytes = 64 * 1024,
    .max_body_bytes = 16 * 1024 * 1024,
    .header_timeout_ms = 10000,
    .idle_timeout_ms = 3600 * 1000,
    .request_timeout_ms = 60000,
    .max_memory = 0,
};

static void start_timer_home(lv_fn_t *fn, lv_timer_t *t, uint64_t ms);
static void stop_worker(lv_fn_worker_t *w);
static void kill_worker(lv_fn_worker_t *w);
static void ensure_capacity(lv_fn_t *fn, start_reason_t target_reason, start_reason_t demand_reason);
static bool start_worker(lv_fn_t *fn, start_reason_t reason, bool provisioned);
static void check_stopped(lv_functions_t *fns);
static bool read_output(lv_fn_worker_t *w, size_t budget);
static void defer_output(lv_fn_worker_t *w);

/* ---- small helpers ---- */

static lv_fns_state_t fns_state(const lv_functions_t *fns)
{
    return (lv_fns_state_t)__atomic_load_n(&fns->state, __ATOMIC_ACQUIRE);
}

/* Only the home thread writes the st_ fields; others only read them. */
static void stat_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static void stat_inc(uint64_t *p) { __atomic_store_n(p, *p + 1, __ATOMIC_RELAXED); }

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static lv_loop_t *home_of(const lv_fn_t *fn) { return fn->fns->home; }

static size_t live_workers(const lv_fn_t *fn)
{
    return fn->nspawning + fn->nstarting + fn->nidle + fn->nbusy;
}

static size_t pending_workers(const lv_fn_t *fn) { return fn->nspawning + fn->nstarting; }

static void start_timer_home(lv_fn_t *fn, lv_timer_t *t, uint64_t ms)
{
    lv_timer_start(home_of(fn), t, ms);
}

static uint64_t ms_or(int64_t v, uint64_t dflt) { return v > 0 ? (uint64_t)v : dflt; }

/* ---- worker state bookkeeping ---- */

static void publish_counts(lv_fn_t *fn)
{
    stat_set(&fn->st_idle, fn->nidle);
    stat_set(&fn->st_busy, fn->nbusy);
    stat_set(&fn->st_starting, fn->nspawning + fn->nstarting);
}

/* Adds delta to the counters of w's current state. */
static void count_state(lv_fn_worker_t *w, int delta)
{
    lv_fn_t *fn = w->fn;
    size_t *n = NULL;
    lv_gauge_t *g = NULL;
    switch (w->state) {
    case LV_W_SPAWNING: n = &fn->nspawning; g = fn->m.starting; break;
    case LV_W_STARTING: n = &fn->nstarting; g = fn->m.starting; break;
    case LV_W_IDLE: n = &fn->nidle; g = fn->m.idle; break;
    case LV_W_BUSY: n = &fn->nbusy; g = fn->m.busy; break;
    case LV_W_STOPPING: return;
    }
    if (delta > 0)
        (*n)++;
    else
        (*n)--;
    lv_gauge_add(g, delta);
    publish_counts(fn);
}

static void set_state(lv_fn_worker_t *w, lv_fn_worker_state_t s)
{
    if (w->state == s)
        return;
    count_state(w, -1);
    if (w->state == LV_W_IDLE)
        lv_list_remove(&w->idle_link);
    w->state = s;
    count_state(w, +1);
    if (s == LV_W_IDLE) {
        lv_list_push_front(&w->fn->idle, &w->idle_link);
        w->idle_since_ms = lv_loop_now_ms(home_of(w->fn));
    }
}

static void signal_worker(lv_fn_worker_t *w, int sig)
{
    if (w->pid <= 0)
        return;
    /* The whole group: a runtime started through a wrapper (npx, a shell)
     * must not leave its real process behind. */
    if (kill(-w->pid, sig) < 0 && errno == ESRCH)
        kill(w->pid, sig);
}

/* ---- invocation free list (any thread) ---- */

static void on_inv_timer(lv_loop_t *loop, lv_timer_t *t);

static lv_fn_inv_t *inv_get(lv_functions_t *fns)
{
    pthread_mutex_lock(&fns->free_lock);
    lv_list_t *node = lv_list_first(&fns->free_invs);
    if (node) {
        lv_list_remove(node);
        fns->nfree--;
    }
    pthread_mutex_unlock(&fns->free_lock);
    if (node)
        return lv_list_entry(node, lv_fn_inv_t, link);
    lv_fn_inv_t *inv = lv_calloc(1, sizeof *inv);
    inv->timer.cb = on_inv_timer;
    inv->timer.data = inv;
    return inv;
}

static void inv_free(lv_fn_inv_t *inv)
{
    lv_buf_free(&inv->payload);
    lv_buf_free(&inv->client_context);
    lv_buf_free(&inv->result);
    lv_buf_free(&inv->log_tail);
    free(inv);
}

static void trim_buf(lv_buf_t *b)
{
    if (b->capacity > INV_BUF_KEEP)
        lv_buf_free(b);
    else
        lv_buf_clear(b);
}

static void inv_put(lv_functions_t *fns, lv_fn_inv_t *inv)
{
    trim_buf(&inv->payload);
    trim_buf(&inv->client_context);
    trim_buf(&inv->result);
    trim_buf(&inv->log_tail);
    inv->state = LV_INV_FREE;
    inv->worker = NULL;
    inv->done = NULL;
    inv->arg = NULL;
    inv->error_type[0] = 0;
    inv->retry_after = 0;
    inv->cold_start = false;
    inv->waits_for_start = false;
    inv->duration_ns = 0;
    inv->dispatched_ns = 0;
    pthread_mutex_lock(&fns->free_lock);
    bool keep = fns->nfree < FREE_INVS_MAX;
    if (keep) {
        lv_list_push_front(&fns->free_invs, &inv->link);
        fns->nfree++;
    }
    pthread_mutex_unlock(&fns->free_lock);
    if (!keep)
        inv_free(inv);
}

/* ---- results ---- */

static void set_error(lv_fn_inv_t *inv, const char *type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* vsnprintf into msg, returning the length actually there (truncated
 * messages are cut, never an error). */
static size_t format_into(char *msg, size_t cap, const char *fmt, va_list ap)
{
    int n = vsnprintf(msg, cap, fmt, ap);
    if (n < 0)
        return 0;
    return (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static void set_error(lv_fn_inv_t *inv, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t n = format_into(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lv_buf_clear(&inv->result);
    lv_rapi_error_object(&inv->result, type, lv_slice(msg, n));
    snprintf(inv->error_type, sizeof inv->error_type, "%s", type);
}

static void set_shutdown(lv_fn_inv_t *inv)
{
    set_error(inv, "ServiceException", "RequestId: %s Error: levee is shutting down", inv->request_id);
}

static void set_throttled(lv_fn_inv_t *inv)
{
    set_error(inv, "TooManyRequestsException", "Rate Exceeded.");
    inv->retry_after = 1;
}

/* The function's last init error, worded for this invocation. */
static void set_init_error(lv_fn_inv_t *inv)
{
    lv_fn_t *fn = inv->fn;
    if (fn->init_error_is_json) {
        lv_buf_clear(&inv->result);
        lv_buf_append(&inv->result, lv_buf_data(&fn->init_error), lv_buf_len(&fn->init_error));
        snprintf(inv->error_type, sizeof inv->error_type, "%s", fn->init_error_type);
        return;
    }
    set_error(inv, fn->init_error_type, "RequestId: %s Error: %.*s", inv->request_id,
              (int)lv_buf_len(&fn->init_error), lv_buf_data(&fn->init_error));
}

/* Runs on the caller's loop. */
static void deliver(lv_loop_t *loop, void *arg)
{
    lv_fn_inv_t *inv = arg;
    (void)loop;
    lv_fn_result_t res = {
        .status = inv->status,
        .payload = lv_buf_slice(&inv->result),
        .error_type = inv->status == LV_FN_OK ? NULL : inv->error_type,
        .log_tail = lv_buf_slice(&inv->log_tail),
        .retry_after = inv->retry_after,
        .cold_start = inv->cold_start,
        .duration_ns = inv->duration_ns,
    };
    inv->done(inv->arg, &res);
    inv_put(inv->fn->fns, inv);
}

static void unqueue(lv_fn_inv_t *inv)
{
    lv_fn_t *fn = inv->fn;
    lv_list_remove(&inv->link);
    fn->nqueued--;
    lv_gauge_add(fn->m.queue_depth, -1);
    stat_set(&fn->st_queued, fn->nqueued);
}

static void ring_copy(const lv_fn_worker_t *w, lv_buf_t *out)
{
    lv_buf_clear(out);
    if (w->tail_len < LV_FN_TAIL_BYTES) {
        lv_buf_append(out, w->tail, w->tail_len);
        return;
    }
    lv_buf_append(out, w->tail + w->tail_pos, LV_FN_TAIL_BYTES - w->tail_pos);
    lv_buf_append(out, w->tail, w->tail_pos);
}

static void count_result(lv_fn_t *fn, lv_fn_status_t status)
{
    switch (status) {
    case LV_FN_ERROR: lv_counter_inc(fn->m.err_error); stat_inc(&fn->st_errors); break;
    case LV_FN_CRASHED: lv_counter_inc(fn->m.err_crash); stat_inc(&fn->st_errors); break;
    case LV_FN_TOO_LARGE: lv_counter_inc(fn->m.err_too_large); stat_inc(&fn->st_errors); break;
    case LV_FN_TIMEOUT: lv_counter_inc(fn->m.err_timeout); stat_inc(&fn->st_timeouts); break;
    case LV_FN_THROTTLED: lv_counter_inc(fn->m.throttles); stat_inc(&fn->st_throttles); break;
    case LV_FN_OK:
    case LV_FN_SHUTDOWN: break;
    }
}

/* The worker answered and must now come back to /next. As in Lambda, the
 * invocation's time runs until it does: a worker still away at the
 * invocation's deadline (and at least RETURN_MIN_MS after answering) is
 * killed and replaced, so one that hangs after answering cannot hold its
 * concurrency slot for ever. */
static void watch_return(lv_fn_worker_t *w, uint64_t deadline_ns)
{
    uint64_t now = lv_clock_ns();
    uint64_t ms = deadline_ns > now ? (deadline_ns - now) / 1000000u : 0;
    start_timer_home(w->fn, &w->timer, ms < RETURN_MIN_MS ? RETURN_MIN_MS : ms);
}

void lv_fnpool_finish(lv_fn_inv_t *inv, lv_fn_status_t status)
{
    lv_fn_t *fn = inv->fn;
    lv_timer_stop(&inv->timer);
    if (inv->state == LV_INV_QUEUED)
        unqueue(inv);
    lv_fn_worker_t *w = inv->worker;
    uint64_t deadline_ns = inv->dispatched_ns + fn->timeout_ms * 1000000u;
    if (w) {
        inv->duration_ns = lv_clock_ns() - inv->dispatched_ns;
        lv_histogram_observe_ns(fn->m.duration, inv->duration_ns);
        if (inv->flags & LV_FN_WANT_LOG_TAIL) {
            /* The runtime usually printed before it answered: pick that up
             * (bounded) so the tail is complete. */
            if (read_output(w, TAIL_DRAIN_MAX))
                defer_output(w);
            ring_copy(w, &inv->log_tail);
        }
        w->inv = NULL;
        inv->worker = NULL;
        memcpy(w->last_id, inv->request_id, inv->request_id_len + 1);
        w->last_id_len = inv->request_id_len;
        w->last_end = status == LV_FN_TIMEOUT ? LV_LAST_TIMED_OUT : LV_LAST_ANSWERED;
    }
    if (status == LV_FN_OK)
        inv->error_type[0] = 0;
    inv->status = status;
    inv->state = LV_INV_DONE;
    count_result(fn, status);
    lv_loop_post(inv->caller, deliver, inv);
    if (w && w->state == LV_W_BUSY && fns_state(fn->fns) != LV_FNS_RUNNING)
        stop_worker(w);
    else if (w && w->state == LV_W_BUSY && status != LV_FN_TIMEOUT)
        watch_return(w, deadline_ns);
}

/* Fails every queued invocation: with the init error (CRASHED) or at
 * shutdown. */
static void fail_queue(lv_fn_t *fn, lv_fn_status_t status)
{
    lv_list_t *node;
    while ((node = lv_list_first(&fn->queue)) != NULL) {
        lv_fn_inv_t *inv = lv_list_entry(node, lv_fn_inv_t, link);
        if (status == LV_FN_CRASHED)
            set_init_error(inv);
        else
            set_shutdown(inv);
        lv_fnpool_finish(inv, status);
    }
}

/* ---- dispatch ---- */

static void dispatch(lv_fn_inv_t *inv, lv_fn_worker_t *w)
{
    lv_fn_t *fn = inv->fn;
    uint64_t now = lv_loop_now_ns(home_of(fn));
    if (inv->state == LV_INV_QUEUED)
        unqueue(inv);
    lv_timer_stop(&inv->timer);
    set_state(w, LV_W_BUSY);
    w->inv = inv;
    inv->worker = w;
    inv->state = LV_INV_RUNNING;
    inv->dispatched_ns = lv_clock_ns();
    lv_histogram_observe_ns(fn->m.queue_wait, now > inv->submitted_ns ? now - inv->submitted_ns : 0);
    if (w->ready_ns > inv->submitted_ns) {
        /* It waited for a worker that was still starting: a cold start in
         * the request path. */
        inv->cold_start = true;
        lv_counter_inc(fn->m.cold_start_invocations);
        stat_inc(&fn->st_cold_starts);
    }
    lv_uuid4(inv->invocation_id);
    w->tail_pos = w->tail_len = 0;
    start_timer_home(fn, &inv->timer, fn->timeout_ms);
    lv_rapi_send_next(w, inv); /* last: may run pipelined requests */
}

/* The most recently idle worker whose /next is still there, or NULL. */
static lv_fn_worker_t *take_idle(lv_fn_t *fn)
{
    lv_list_t *node;
    while ((node = lv_list_first(&fn->idle)) != NULL) {
        lv_fn_worker_t *w = lv_list_entry(node, lv_fn_worker_t, idle_link);
        if (w->next_req && !lv_http_req_client_gone(w->next_req))
            return w;
        /* Its poll went away: it is not waiting any more (it asks again
         * on a new connection if it is still alive). */
        lv_http_req_t *req = w->next_req;
        w->next_req = NULL;
        set_state(w, LV_W_BUSY);
        if (req)
            lv_rapi_answer_error(req, 410, "Gone", "This /next request was abandoned");
    }
    return NULL;
}

/* w asked for work (or is back from an invocation). */
static void worker_available(lv_fn_worker_t *w)
{
    lv_list_t *node = lv_list_first(&w->fn->queue);
    if (node) {
        dispatch(lv_list_entry(node, lv_fn_inv_t, link), w);
        return;
    }
    set_state(w, LV_W_IDLE);
}

static void submit(lv_fn_inv_t *inv)
{
    lv_fn_t *fn = inv->fn;
    lv_loop_t *home = home_of(fn);
    inv->submitted_ns = lv_loop_now_ns(home);
    if (fns_state(fn->fns) != LV_FNS_RUNNING) {
        set_shutdown(inv);
        lv_fnpool_finish(inv, LV_FN_SHUTDOWN);
        return;
    }
    lv_counter_inc(fn->m.invocations);
    stat_inc(&fn->st_invocations);
    lv_fn_worker_t *w = take_idle(fn);
    if (w) {
        dispatch(inv, w);
        return;
    }
    if (fn->init_failing && live_workers(fn) == 0 && lv_loop_now_ms(home) < fn->next_start_ms) {
        set_init_error(inv);
        lv_fnpool_finish(inv, LV_FN_CRASHED);
        return;
    }
    if (fn->nqueued >= fn->cfg->queue.max) {
        /* With no room to wait at all (queue max 0) this one is refused,
         * but a worker is still started, one at a time, so that later
         * invocations find one: otherwise a function scaled to zero would
         * refuse every invocation for ever. */
        if (fn->cfg->queue.max == 0 && pending_workers(fn) == 0 && fn->nworkers < fn->cfg->max &&
            fns_state(fn->fns) == LV_FNS_RUNNING && lv_loop_now_ms(home) >= fn->next_start_ms)
            start_worker(fn, START_DEMAND, false);
        set_throttled(inv);
        lv_fnpool_finish(inv, LV_FN_THROTTLED);
        return;
    }
    inv->state = LV_INV_QUEUED;
    lv_list_push_back(&fn->queue, &inv->link);
    fn->nqueued++;
    lv_gauge_add(fn->m.queue_depth, 1);
    stat_set(&fn->st_queued, fn->nqueued);
    ensure_capacity(fn, START_WARM, START_DEMAND);
    /* One a worker is starting for may also wait for that worker's init:
     * if the init fails, it gets the init error rather than a throttle. */
    inv->waits_for_start = pending_workers(fn) >= fn->nqueued;
    uint64_t wait = fn->queue_timeout_ms;
    if (inv->waits_for_start)
        wait += fn->init_timeout_ms;
    lv_timer_start(home, &inv->timer, wait);
}

static void on_posted_invoke(lv_loop_t *loop, void *arg)
{
    (void)loop;
    submit(arg);
}

static void rfc3339_now(char out[48])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 48, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 48 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void on_inv_timer(lv_loop_t *loop, lv_timer_t *t)
{
    lv_fn_inv_t *inv = t->data;
    (void)loop;
    if (inv->state == LV_INV_QUEUED) {
        set_throttled(inv);
        lv_fnpool_finish(inv, LV_FN_THROTTLED);
        return;
    }
    if (inv->state != LV_INV_RUNNING)
        return;
    lv_fn_t *fn = inv->fn;
    lv_fn_worker_t *w = inv->worker;
    char now[48];
    rfc3339_now(now);
    set_error(inv, "Sandbox.Timeout", "%s %s Task timed out after %.2f seconds", now, inv->request_id,
              (double)fn->timeout_ms / 1000.0);
    lv_log_warn("fn", "%s %s timed out after %.2f s: killing worker %llu", fn->cfg->name, inv->request_id,
                (double)fn->timeout_ms / 1000.0, (unsigned long long)w->seq);
    lv_fnpool_finish(inv, LV_FN_TIMEOUT);
    kill_worker(w);
}

/* ---- the Runtime API's calls into the pool ---- */

void lv_fnpool_worker_next(lv_fn_worker_t *w, lv_http_req_t *req)
{
    lv_fn_t *fn = w->fn;
    lv_loop_t *home = home_of(fn);
    /* The newest /next wins: a runtime keeps one poll open, so an older
     * one still held was abandoned (its connection may not have shown its
     * close yet). It is answered last, because answering it may run
     * requests pipelined behind it. */
    lv_http_req_t *old = w->next_req;
    w->next_req = NULL;
    if (w->state == LV_W_SPAWNING || (w->state == LV_W_STARTING && w->init_error_posted)) {
        lv_rapi_answer_error(req, 403, "InvalidStateTransition", "This runtime is not accepting invocations");
        w->next_req = old;
        return;
    }
    w->next_req = req;
    switch (w->state) {
    case LV_W_STARTING: {
        lv_timer_stop(&w->timer);
        w->ready_ns = lv_loop_now_ns(home);
        uint64_t cold = lv_clock_ns() - w->spawn_requested_ns;
        lv_histogram_observe_ns(fn->m.cold_start, cold);
        fn->init_failing = false;
        fn->backoff_ms = 0;
        fn->next_start_ms = 0;
        lv_log_info("fn", "%s: worker %llu ready (pid %d, port %u, %.1f ms after the spawn request)",
                    fn->cfg->name, (unsigned long long)w->seq, (int)w->pid, (unsigned)w->port, (double)cold / 1e6);
        break;
    }
    case LV_W_BUSY:
        lv_timer_stop(&w->timer); /* back in time: the return watch ends */
        if (w->inv) {
            lv_fn_inv_t *inv = w->inv;
            set_error(inv, "Runtime.Unknown",
                      "RequestId: %s Error: the runtime asked for its next invocation without answering this one",
                      inv->request_id);
            lv_fnpool_finish(inv, LV_FN_ERROR);
        }
        break;
    default:
        break;
    }
    if (w->state == LV_W_STARTING || w->state == LV_W_BUSY) {
        if (fns_state(fn->fns) != LV_FNS_RUNNING)
            stop_worker(w); /* its /next stays held until it exits */
        else
            worker_available(w);
    }
    if (old)
        lv_rapi_answer_error(old, 403, "InvalidStateTransition", "Replaced by a newer /next request");
}

void lv_fnpool_init_failed(lv_fn_worker_t *w)
{
    w->init_error_posted = true;
    lv_log_warn("fn", "%s: worker %llu reported an init error (%s)", w->fn->cfg->name, (unsigned long long)w->seq,
                w->init_error_type);
    start_timer_home(w->fn, &w->timer, INIT_ERROR_GRACE_MS);
}

/* ---- output ---- */

static const char *current_id(const lv_fn_worker_t *w)
{
    if (w->inv)
        return w->inv->request_id;
    if (w->state == LV_W_BUSY && w->last_end != LV_LAST_NONE)
        return w->last_id; /* printed after answering, before the next /next */
    return "-";
}

static void log_line(lv_fn_worker_t *w, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return; /* blank lines say nothing */
    const char *id = current_id(w);
    do {
        size_t k = n > LOG_PIECE ? LOG_PIECE : n;
        lv_log_info("fn", "%s %s %.*s", w->fn->cfg->name, id, (int)k, p);
        p += k;
        n -= k;
    } while (n);
}

static void ring_append(lv_fn_worker_t *w, const char *p, size_t n)
{
    if (n >= LV_FN_TAIL_BYTES) {
        memcpy(w->tail, p + n - LV_FN_TAIL_BYTES, LV_FN_TAIL_BYTES);
        w->tail_pos = 0;
        w->tail_len = LV_FN_TAIL_BYTES;
        return;
    }
    size_t first = LV_FN_TAIL_BYTES - w->tail_pos;
    if (first > n)
        first = n;
    memcpy(w->tail + w->tail_pos, p, first);
    memcpy(w->tail, p + first, n - first);
    w->tail_pos = (w->tail_pos + n) % LV_FN_TAIL_BYTES;
    w->tail_len = w->tail_len + n > LV_FN_TAIL_BYTES ? LV_FN_TAIL_BYTES : w->tail_len + n;
}

static void consume_output(lv_fn_worker_t *w, const char *p, size_t n)
{
    if (w->inv && (w->inv->flags & LV_FN_WANT_LOG_TAIL))
        ring_append(w, p, n);
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        size_t used = seg + (nl ? 1 : 0);
        if (!lv_buf_len(&w->line) && nl && seg <= LINE_MAX_BYTES) {
            log_line(w, p, seg); /* the common case: a whole line, no copy */
        } else {
            const char *q = p;
            size_t left = seg;
            while (left) {
                size_t room = LINE_MAX_BYTES - lv_buf_len(&w->line);
                size_t k = left < room ? left : room;
                lv_buf_append(&w->line, q, k);
                q += k;
                left -= k;
                if (lv_buf_len(&w->line) == LINE_MAX_BYTES) {
                    log_line(w, lv_buf_data(&w->line), LINE_MAX_BYTES);
                    lv_buf_clear(&w->line);
                }
            }
            if (nl && lv_buf_len(&w->line)) {
                log_line(w, lv_buf_data(&w->line), lv_buf_len(&w->line));
                lv_buf_clear(&w->line);
            }
        }
        p += used;
        n -= used;
    }
}

static void close_output(lv_fn_worker_t *w)
{
    if (w->out_io.fd < 0)
        return;
    lv_io_stop(home_of(w->fn), &w->out_io);
    close(w->out_io.fd);
    w->out_io.fd = -1;
}

/* Reads at most budget bytes. Returns true when it stopped because of the
 * budget (more may be there), false when the pipe is drained or closed. */
static bool read_output(lv_fn_worker_t *w, size_t budget)
{
    char *scratch = w->fn->fns->scratch;
    while (w->out_io.fd >= 0) {
        if (budget == 0)
            return true;
        size_t want = budget < LV_FN_OUT_CHUNK ? budget : LV_FN_OUT_CHUNK;
        ssize_t n = lv_io_read(w->out_io.fd, scratch, want);
        if (n == LV_IO_AGAIN)
            return false;
        if (n == 0) {
            close_output(w);
            return false;
        }
        consume_output(w, scratch, (size_t)n);
        budget -= (size_t)n;
        if ((size_t)n < want)
            return false; /* a short read from a pipe: it is empty now */
    }
    return false;
}

static void on_output_posted(lv_loop_t *loop, void *arg)
{
    lv_functions_t *fns = arg;
    (void)loop;
    fns->out_posted = false;
    /* One turn each for the workers waiting now; one that still has more
     * goes to the back of the line for the next iteration. */
    lv_list_t batch;
    lv_list_init(&batch);
    if (!lv_list_empty(&fns->out_pending)) {
        batch.next = fns->out_pending.next;
        batch.prev = fns->out_pending.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        lv_list_init(&fns->out_pending);
    }
    lv_list_t *node;
    while ((node = lv_list_first(&batch)) != NULL) {
        lv_fn_worker_t *w = lv_list_entry(node, lv_fn_worker_t, out_link);
        lv_list_remove(node);
        if (read_output(w, OUT_BUDGET))
            defer_output(w);
    }
}

static void defer_output(lv_fn_worker_t *w)
{
    lv_functions_t *fns = w->fn->fns;
    if (!lv_list_linked(&w->out_link))
        lv_list_push_back(&fns->out_pending, &w->out_link);
    if (!fns->out_posted) {
        fns->out_posted = true;
        lv_loop_post(fns->home, on_output_posted, fns);
    }
}

static void on_output(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    lv_fn_worker_t *w = io->data;
    (void)loop;
    (void)events;
    if (lv_list_linked(&w->out_link))
        return; /* already waiting for its next turn */
    if (read_output(w, OUT_BUDGET))
        defer_output(w);
}

/* ---- process lifecycle ---- */

static void record_init_failure(lv_fn_t *fn, const char *type, bool is_json, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Remembers the init error (a message, or the worker's JSON already in
 * fn->init_error when is_json), backs off, and fails the queue if no worker
 * is left to serve it. */
static void record_init_failure(lv_fn_t *fn, const char *type, bool is_json, const char *fmt, ...)
{
    snprintf(fn->init_error_type, sizeof fn->init_error_type, "%s", type);
    fn->init_error_is_json = is_json;
    if (!is_json) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        size_t n = format_into(msg, sizeof msg, fmt, ap);
        va_end(ap);
        lv_buf_clear(&fn->init_error);
        lv_buf_append(&fn->init_error, msg, n);
    }
    fn->init_failing = true;
    fn->backoff_ms = fn->backoff_ms ? fn->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (fn->backoff_ms > BACKOFF_MAX_MS)
        fn->backoff_ms = BACKOFF_MAX_MS;
    fn->next_start_ms = lv_loop_now_ms(home_of(fn)) + fn->backoff_ms;
    lv_log_warn("fn", "%s: worker failed to initialise (%s: %.*s); next start in %llu ms", fn->cfg->name, type,
                (int)(lv_buf_len(&fn->init_error) > 300 ? 300 : lv_buf_len(&fn->init_error)),
                lv_buf_data(&fn->init_error) ? lv_buf_data(&fn->init_error) : "",
                (unsigned long long)fn->backoff_ms);
    if (live_workers(fn) == 0)
        fail_queue(fn, LV_FN_CRASHED);
}

/* The worker is gone (exited, or its spawn failed): clean up, fail what
 * it held, and replace it if needed. exit_text is NULL for a failed spawn,
 * which spawn_fail describes. */
static void worker_gone(lv_fn_worker_t *w, const char *exit_text, const lv_spawn_result_t *spawn_fail)
{
    lv_fn_t *fn = w->fn;
    lv_functions_t *fns = fn->fns;
    lv_loop_t *home = fns->home;
    bool never_ready = w->ready_ns == 0;
    bool expected = w->state == LV_W_STOPPING;
    lv_timer_stop(&w->timer);
    if (w->pid_io.fd >= 0) {
        lv_io_stop(home, &w->pid_io);
        close(w->pid_io.fd);
        w->pid_io.fd = -1;
    }
    if (w->out_io.fd >= 0) {
        read_output(w, DEATH_DRAIN_MAX);
        close_output(w);
    }
    if (lv_buf_len(&w->line)) {
        log_line(w, lv_buf_data(&w->line), lv_buf_len(&w->line));
        lv_buf_clear(&w->line);
    }
    if (lv_list_linked(&w->out_link))
        lv_list_remove(&w->out_link);
    if (exit_text) {
        if (expected)
            lv_log_info("fn", "%s: worker %llu (pid %d) stopped: %s", fn->cfg->name, (unsigned long long)w->seq,
                        (int)w->pid, exit_text);
        else
            lv_log_warn("fn", "%s: worker %llu (pid %d) exited: %s", fn->cfg->name, (unsigned long long)w->seq,
                        (int)w->pid, exit_text);
    }

    /* Out of the counts first, so that what follows sees the pool
     * without it. STOPPING is not counted, and stops stop_worker. */
    set_state(w, LV_W_STOPPING);
    lv_list_remove(&w->link);
    fn->nworkers--;

    if (w->inv) {
        lv_fn_inv_t *inv = w->inv;
        set_error(inv, "Runtime.ExitError", "RequestId: %s Error: Runtime exited with error: %s", inv->request_id,
                  exit_text ? exit_text : "unknown");
        lv_fnpool_finish(inv, LV_FN_CRASHED);
    }
    if (spawn_fail && fns_state(fns) == LV_FNS_RUNNING) {
        int e = spawn_fail->err;
        bool entry = e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR;
        record_init_failure(fn, entry ? "Runtime.InvalidEntrypoint" : "Sandbox.Failure", false, "%s",
                            spawn_fail->message);
    } else if (exit_text && never_ready && fns_state(fns) == LV_FNS_RUNNING) {
        if (w->init_error_posted) {
            lv_buf_clear(&fn->init_error);
            lv_buf_append(&fn->init_error, lv_buf_data(&w->init_error), lv_buf_len(&w->init_error));
            record_init_failure(fn, w->init_error_type, true, "%s", "");
        } else if (w->init_timed_out) {
            record_init_failure(fn, "Sandbox.Timeout",
                                false, "Runtime did not ask for an invocation within the init_timeout of %.2f seconds",
                                (double)fn->init_timeout_ms / 1000.0);
        } else {
            record_init_failure(fn, "Runtime.ExitError", false, "Runtime exited with error: %s", exit_text);
        }
    }

    /* Close the listener and every connection first: then answering the
     * held /next only discards the answer and cannot run anything more on
     * this worker. */
    lv_http_req_t *req = w->next_req;
    w->next_req = NULL;
    if (w->server)
        lv_http_server_release(w->server, home);
    w->server = NULL;
    if (req)
        lv_rapi_answer_error(req, 410, "Gone", "The runtime has exited");
    lv_buf_free(&w->init_error);
    lv_buf_free(&w->line);
    free(w);

    if (fns_state(fns) == LV_FNS_RUNNING)
        ensure_capacity(fn, START_REPLACE, START_REPLACE);
    else
        check_stopped(fns);
}

static const char *signal_text(int sig)
{
    switch (sig) {
    case SIGKILL: return "killed";
    case SIGTERM: return "terminated";
    case SIGSEGV: return "segmentation fault";
    case SIGABRT: return "aborted";
    case SIGBUS: return "bus error";
    case SIGFPE: return "floating point exception";
    case SIGILL: return "illegal instruction";
    case SIGINT: return "interrupt";
    case SIGHUP: return "hangup";
    case SIGQUIT: return "quit";
    case SIGPIPE: return "broken pipe";
    case SIGXCPU: return "CPU time limit exceeded";
    default: return NULL;
    }
}

static void on_pidfd(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    lv_fn_worker_t *w = io->data;
    (void)loop;
    (void)events;
    /* Look without reaping: while the leader is an unreaped zombie its pid
     * (the group id) cannot be reused, so killing the group is safe. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && si.si_pid == 0)
        return; /* not exited after all */
    kill(-w->pid, SIGKILL); /* whatever it started goes with it */
    char text[64];
    int status;
    pid_t got;
    do
        got = waitpid(w->pid, &status, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        snprintf(text, sizeof text, "exit status unknown"); /* reaped elsewhere (SIGCHLD ignored) */
    } else if (WIFEXITED(status)) {
        snprintf(text, sizeof text, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *name = signal_text(WTERMSIG(status));
        if (name)
            snprintf(text, sizeof text, "signal: %s", name);
        else
            snprintf(text, sizeof text, "signal: %d", WTERMSIG(status));
    } else {
        snprintf(text, sizeof text, "exit status unknown");
    }
    worker_gone(w, text, NULL);
}

static void on_worker_timer(lv_loop_t *loop, lv_timer_t *t)
{
    lv_fn_worker_t *w = t->data;
    (void)loop;
    switch (w->state) {
    case LV_W_STARTING:
        if (!w->init_error_posted) {
            w->init_timed_out = true;
            lv_log_warn("fn", "%s: worker %llu did not ask for work within init_timeout: killing it",
                        w->fn->cfg->name, (unsigned long long)w->seq);
        }
        kill_worker(w);
        break;
    case LV_W_STOPPING:
        signal_worker(w, SIGKILL);
        break;
    case LV_W_BUSY:
        if (!w->inv) {
            lv_log_warn("fn", "%s: worker %llu answered but did not ask for its next invocation in time: killing it",
                        w->fn->cfg->name, (unsigned long long)w->seq);
            kill_worker(w);
        }
        break;
    default:
        break;
    }
}

static void on_spawned(lv_loop_t *loop, lv_spawn_result_t *r)
{
    lv_fn_worker_t *w = r->arg;
    lv_fn_t *fn = w->fn;
    if (r->err) {
        lv_log_warn("fn", "%s: %s", fn->cfg->name, r->message);
        worker_gone(w, NULL, r);
        lv_spawn_result_free(r);
        return;
    }
    w->pid = r->pid;
    w->pid_io = (lv_io_t){.fd = r->pidfd, .cb = on_pidfd, .data = w};
    w->out_io = (lv_io_t){.fd = r->out_fd, .cb = on_output, .data = w};
    r->pidfd = -1;
    r->out_fd = -1;
    lv_histogram_observe_ns(fn->m.spawn, r->spawn_ns);
    lv_spawn_result_free(r);
    if (w->out_io.fd >= 0 && lv_io_start(loop, &w->out_io) < 0) {
        close(w->out_io.fd);
        w->out_io.fd = -1;
    }
    set_state(w, LV_W_STARTING);
    lv_timer_start(loop, &w->timer, fn->init_timeout_ms);
    if (lv_io_start(loop, &w->pid_io) < 0) {
        /* Unwatchable: take it back now rather than lose track of it. */
        lv_log_error("fn", "%s: cannot watch worker pid %d", fn->cfg->name, (int)w->pid);
        kill(-w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        close(w->pid_io.fd);
        w->pid_io.fd = -1;
        worker_gone(w, "exit status unknown", NULL);
        return;
    }
    if (w->cancelled || fns_state(fn->fns) != LV_FNS_RUNNING)
        kill_worker(w);
}

/* Opens the worker's Runtime API listener on 127.0.0.1, a port the kernel
 * picks. No SO_REUSEPORT: the port must be this worker's alone. */
static int open_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, RAPI_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* provisioned: started for the warm target (AWS_LAMBDA_INITIALIZATION_TYPE
 * provisioned-concurrency), whatever the reason it is counted under. */
static bool start_worker(lv_fn_t *fn, start_reason_t reason, bool provisioned)
{
    lv_functions_t *fns = fn->fns;
    if (!fns->spawner)
        return false;
    uint16_t port = 0;
    int fd = open_listener(&port);
    if (fd < 0) {
        lv_log_error("fn", "%s: cannot open a Runtime API listener: %s", fn->cfg->name, strerror(errno));
        return false;
    }
    lv_fn_worker_t *w = lv_calloc(1, sizeof *w);
    w->fn = fn;
    w->seq = ++fns->worker_seq;
    w->pid = -1;
    w->pid_io.fd = -1;
    w->out_io.fd = -1;
    w->port = port;
    w->timer.cb = on_worker_timer;
    w->timer.data = w;
    w->provisioned = provisioned;
    w->spawn_requested_ns = lv_clock_ns();
    w->server = lv_http_server_new(&rapi_limits, lv_loop_index(fns->home) + 1, lv_rapi_handle, w);
    lv_http_server_on_too_large(w->server, lv_rapi_too_large);
    lv_http_server_attach(w->server, fns->home, fd);
    w->state = LV_W_SPAWNING;
    count_state(w, +1);
    lv_list_push_back(&fn->workers, &w->link);
    fn->nworkers++;
    lv_counter_inc(reason == START_WARM ? fn->m.starts_warm
                   : reason == START_DEMAND ? fn->m.starts_demand
                                            : fn->m.starts_replace);
    lv_spawner_spawn(fns->spawner, fn->spec, port, w->provisioned, fns->home, on_spawned, w);
    return true;
}

/* Asks w to exit: SIGTERM now, SIGKILL after the grace. */
static void stop_worker(lv_fn_worker_t *w)
{
    if (w->state == LV_W_SPAWNING) {
        w->cancelled = true;
        return;
    }
    if (w->state == LV_W_STOPPING)
        return;
    set_state(w, LV_W_STOPPING);
    signal_worker(w, SIGTERM);
    start_timer_home(w->fn, &w->timer, KILL_GRACE_MS);
}

static void kill_worker(lv_fn_worker_t *w)
{
    if (w->state == LV_W_SPAWNING) {
        w->cancelled = true;
        return;
    }
    set_state(w, LV_W_STOPPING);
    lv_timer_stop(&w->timer);
    signal_worker(w, SIGKILL);
}

/* ---- scaling ---- */

static uint64_t current_target(const lv_fn_t *fn, uint64_t now_wall_ms)
{
    const lv_config_function_t *c = fn->cfg;
    uint64_t target = c->warm;
    for (size_t i = 0; i < c->num_schedule; i++) {
        const lv_config_schedule_t *s = &c->schedule[i];
        if ((int64_t)now_wall_ms >= s->at_ms && (s->until_ms < 0 || (int64_t)now_wall_ms < s->until_ms))
            target = s->warm; /* the last entry in force wins */
    }
    return target > c->max ? c->max : target;
}

static void update_target(lv_fn_t *fn, uint64_t now_wall_ms)
{
    uint64_t target = current_target(fn, now_wall_ms);
    if (target == fn->warm_target)
        return;
    lv_gauge_add(fn->m.warm_target, (int64_t)target - (int64_t)fn->warm_target);
    if (fn->fns->state != LV_FNS_NEW)
        lv_log_info("fn", "%s: warm target %llu -> %llu", fn->cfg->name, (unsigned long long)fn->warm_target,
                    (unsigned long long)target);
    fn->warm_target = target;
    stat_set(&fn->st_warm_target, target);
}

static void ensure_capacity(lv_fn_t *fn, start_reason_t target_reason, start_reason_t demand_reason)
{
    if (fns_state(fn->fns) != LV_FNS_RUNNING)
        return;
    if (lv_loop_now_ms(home_of(fn)) < fn->next_start_ms)
        return;
    uint64_t max = fn->cfg->max;
    /* While init keeps failing, one probe at a time. */
    bool probing = fn->init_failing;
    while (live_workers(fn) < fn->warm_target && fn->nworkers < max) {
        if (probing && pending_workers(fn))
            return;
        if (!start_worker(fn, target_reason, true))
            return;
    }
    while (fn->nqueued > pending_workers(fn) && fn->nworkers < max) {
        if (probing && pending_workers(fn))
            return;
        if (!start_worker(fn, demand_reason, false))
            return;
    }
}

/* Stops idle workers above the target that idled idle_timeout, oldest
 * first (the back of the LIFO stack). */
static void scale_down(lv_fn_t *fn, uint64_t now_ms)
{
    lv_list_t *node = fn->idle.prev;
    while (node != &fn->idle && live_workers(fn) > fn->warm_target) {
        lv_fn_worker_t *w = lv_list_entry(node, lv_fn_worker_t, idle_link);
        node = node->prev;
        if (now_ms - w->idle_since_ms < fn->idle_timeout_ms)
            break; /* the rest idled for less */
        lv_log_info("fn", "%s: stopping idle worker %llu (above the warm target of %llu)", fn->cfg->name,
                    (unsigned long long)w->seq, (unsigned long long)fn->warm_target);
        stop_worker(w);
    }
}

static void on_scaler(lv_loop_t *loop, lv_timer_t *t)
{
    lv_functions_t *fns = t->data;
    uint64_t wall = wall_ms(), now = lv_loop_now_ms(loop);
    for (size_t i = 0; i < fns->nfns; i++) {
        lv_fn_t *fn = fns->fns[i];
        update_target(fn, wall);
        ensure_capacity(fn, START_WARM, START_DEMAND);
        scale_down(fn, now);
        if (fn->init_failing && live_workers(fn) == 0 && now < fn->next_start_ms)
            fail_queue(fn, LV_FN_CRASHED);
    }
    lv_timer_start(loop, t, SCALER_MS);
}

/* ---- public API ---- */

static void register_metrics(lv_fn_t *fn, lv_metrics_t *m)
{
    static const double cold_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const double spawn_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1};
    static const double duration_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900};
    char esc[256], l[384];
    lv_metrics_label_escape(fn->cfg->name, esc, sizeof esc);
#define LBL(extra) (snprintf(l, sizeof l, "function=\"%s\"%s", esc, extra), l)
    fn->m.invocations = lv_metrics_counter(m, "levee_function_invocations_total",
                                           "Invocations received by the function's pool", LBL(""));
    const char *errors_help = "Invocations that failed, by kind";
    fn->m.err_error = lv_metrics_counter(m, "levee_function_errors_total", errors_help, LBL(",type=\"error\""));
    fn->m.err_timeout = lv_metrics_counter(m, "levee_function_errors_total", errors_help, LBL(",type=\"timeout\""));
    fn->m.err_crash = lv_metrics_counter(m, "levee_function_errors_total", errors_help, LBL(",type=\"crash\""));
    fn->m.err_too_large = lv_metrics_counter(m, "levee_function_errors_total", errors_help,
                                             LBL(",type=\"too_large\""));
    fn->m.throttles = lv_metrics_counter(m, "levee_function_throttles_total",
                                         "Invocations refused: queue full or no worker within the queue timeout",
                                         LBL(""));
    const char *starts_help = "Worker processes started, by reason";
    fn->m.starts_warm = lv_metrics_counter(m, "levee_function_worker_starts_total", starts_help,
                                           LBL(",reason=\"warm\""));
    fn->m.starts_demand = lv_metrics_counter(m, "levee_function_worker_starts_total", starts_help,
                                             LBL(",reason=\"demand\""));
    fn->m.starts_replace = lv_metrics_counter(m, "levee_function_worker_starts_total", starts_help,
                                              LBL(",reason=\"replace\""));
    fn->m.cold_start_invocations = lv_metrics_counter(m, "levee_function_cold_start_invocations_total",
                                                      "Invocations that waited for a worker being started",
                                                      LBL(""));
    fn->m.cold_start = lv_metrics_histogram(m, "levee_function_cold_start_seconds",
                                            "Worker start: spawn request to its first /next", LBL(""), cold_bounds,
                                            sizeof cold_bounds / sizeof cold_bounds[0]);
    fn->m.spawn = lv_metrics_histogram(m, "levee_function_spawn_seconds",
                                       "Time levee spent in posix_spawn for a worker", LBL(""), spawn_bounds,
                                       sizeof spawn_bounds / sizeof spawn_bounds[0]);
    fn->m.duration = lv_metrics_histogram(m, "levee_function_duration_seconds",
                                          "Invocation time from dispatch to a worker until its result", LBL(""),
                                          duration_bounds, sizeof duration_bounds / sizeof duration_bounds[0]);
    fn->m.queue_wait = lv_metrics_histogram(m, "levee_function_queue_wait_seconds",
                                            "Time an invocation waited for a worker", LBL(""),
                                            lv_metrics_latency_buckets, lv_metrics_latency_nbuckets);
    const char *workers_help = "Worker processes, by state";
    fn->m.idle = lv_metrics_gauge(m, "levee_function_workers", workers_help, LBL(",state=\"idle\""));
    fn->m.busy = lv_metrics_gauge(m, "levee_function_workers", workers_help, LBL(",state=\"busy\""));
    fn->m.starting = lv_metrics_gauge(m, "levee_function_workers", workers_help, LBL(",state=\"starting\""));
    fn->m.warm_target = lv_metrics_gauge(m, "levee_function_warm_target",
                                         "Workers kept ready now (warm, or the schedule entry in force)", LBL(""));
    fn->m.queue_depth = lv_metrics_gauge(m, "levee_function_queue_depth", "Invocations waiting for a worker",
                                         LBL(""));
#undef LBL
}

static bool needs_runtime_dir(const lv_config_function_t *fc)
{
    return fc->runtime == LV_RUNTIME_NODEJS || fc->runtime == LV_RUNTIME_PYTHON;
}

static void region_of_env(char *out, size_t outlen)
{
    const char *r = getenv("AWS_REGION");
    bool ok = r && *r && strlen(r) < outlen;
    for (const char *p = r; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-';
    snprintf(out, outlen, "%s", ok ? r : "us-east-1");
}

lv_functions_t *lv_functions_new(const lv_config_t *cfg, lv_metrics_t *metrics, lv_config_errors_t *errs)
{
    lv_functions_t *fns = lv_calloc(1, sizeof *fns);
    fns->cfg = cfg;
    if (!metrics)
        metrics = fns->own_metrics = lv_metrics_new(1);
    fns->metrics = metrics;
    lv_list_init(&fns->out_pending);
    lv_list_init(&fns->free_invs);
    pthread_mutex_init(&fns->free_lock, NULL);
    fns->scaler = (lv_timer_t){.cb = on_scaler, .data = fns};
    region_of_env(fns->region, sizeof fns->region);
    const char *file = cfg->path ? cfg->path : "config";
    bool failed = false;

    bool want_dir = false;
    for (size_t i = 0; i < cfg->num_functions; i++)
        want_dir = want_dir || needs_runtime_dir(&cfg->functions[i]);
    if (want_dir)
        fns->runtime_dir = lv_spawn_find_runtime_dir(cfg->runtime_dir);

    fns->fns = lv_calloc(cfg->num_functions ? cfg->num_functions : 1, sizeof *fns->fns);
    for (size_t i = 0; i < cfg->num_functions; i++) {
        const lv_config_function_t *fc = &cfg->functions[i];
        lv_fn_t *fn = lv_calloc(1, sizeof *fn);
        fns->fns[fns->nfns++] = fn;
        fn->fns = fns;
        fn->cfg = fc;
        lv_list_init(&fn->workers);
        lv_list_init(&fn->idle);
        lv_list_init(&fn->queue);
        fn->timeout_ms = ms_or(fc->timeout_ms, 3000);
        fn->init_timeout_ms = ms_or(fc->init_timeout_ms, 10000);
        fn->idle_timeout_ms = fc->idle_timeout_ms >= 0 ? (uint64_t)fc->idle_timeout_ms : 300000;
        fn->queue_timeout_ms = fc->queue.timeout_ms >= 0 ? (uint64_t)fc->queue.timeout_ms : 1000;
        if (needs_runtime_dir(fc) && !fns->runtime_dir) {
            lv_config_error(errs, file, fc->pos,
                            "function %s: the runtime directory (nodejs/ and python/ bootstraps) was not found; "
                            "set runtime_dir or LEVEE_RUNTIME_DIR",
                            fc->name);
            failed = true;
        } else {
            char err[512];
            fn->spec = lv_spawn_prepare(fc, fns->runtime_dir, err, sizeof err);
            if (!fn->spec) {
                lv_config_error(errs, file, fc->pos, "function %s: %s", fc->name, err);
                failed = true;
            }
        }
        lv_buf_t h = LV_BUF_INIT;
        lv_buf_printf(&h,
                      "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:%s:000000000000:function:%s\r\n"
                      "Content-Type: application/json\r\n",
                      fns->region, fc->name);
        fn->next_static_len = lv_buf_len(&h);
        fn->next_static_headers = lv_memdup0(lv_buf_data(&h), lv_buf_len(&h));
        lv_buf_free(&h);
        register_metrics(fn, metrics);
        update_target(fn, wall_ms());
    }
    if (failed) {
        lv_functions_free(fns);
        return NULL;
    }
    return fns;
}

void lv_functions_free(lv_functions_t *fns)
{
    if (!fns)
        return;
    for (size_t i = 0; i < fns->nfns; i++) {
        lv_fn_t *fn = fns->fns[i];
        if (fn->nworkers)
            lv_log_error("fn", "%s: freed with %zu workers still running", fn->cfg->name, fn->nworkers);
        lv_spawn_spec_free(fn->spec);
        free(fn->next_static_headers);
        lv_buf_free(&fn->init_error);
        free(fn);
    }
    free(fns->fns);
    lv_list_t *node;
    while ((node = lv_list_first(&fns->free_invs)) != NULL) {
        lv_list_remove(node);
        inv_free(lv_list_entry(node, lv_fn_inv_t, link));
    }
    lv_spawner_free(fns->spawner);
    pthread_mutex_destroy(&fns->free_lock);
    free(fns->runtime_dir);
    lv_metrics_free(fns->own_metrics);
    free(fns);
}

void lv_functions_start(lv_functions_t *fns, lv_loop_t *home)
{
    if (fns_state(fns) != LV_FNS_NEW)
        return;
    fns->home = home;
    fns->spawner = fns->nfns ? lv_spawner_new() : NULL;
    if (fns->nfns && !fns->spawner)
        lv_log_error("fn", "cannot start the spawner thread: %s; functions will not run", strerror(errno));
    fns->stop_timer.data = fns;
    __atomic_store_n(&fns->state, LV_FNS_RUNNING, __ATOMIC_RELEASE);
    on_scaler(home, &fns->scaler); /* the warm workers, now */
}

static void on_stop_deadline(lv_loop_t *loop, lv_timer_t *t)
{
    lv_functions_t *fns = t->data;
    (void)loop;
    for (size_t i = 0; i < fns->nfns; i++) {
        lv_fn_t *fn = fns->fns[i];
        for (lv_list_t *node = fn->workers.next; node != &fn->workers; node = node->next) {
            lv_fn_worker_t *w = lv_list_entry(node, lv_fn_worker_t, link);
            if (w->inv) {
                set_shutdown(w->inv);
                lv_fnpool_finish(w->inv, LV_FN_SHUTDOWN);
            }
            kill_worker(w);
        }
    }
}

static void check_stopped(lv_functions_t *fns)
{
    if (fns_state(fns) != LV_FNS_STOPPING)
        return;
    for (size_t i = 0; i < fns->nfns; i++)
        if (fns->fns[i]->nworkers)
            return;
    lv_timer_stop(&fns->stop_timer);
    /* Every spawn has reported back (no worker is SPAWNING), so the
     * spawner's queue is empty and this join is immediate. */
    lv_spawner_free(fns->spawner);
    fns->spawner = NULL;
    __atomic_store_n(&fns->state, LV_FNS_STOPPED, __ATOMIC_RELEASE);
    if (fns->stop_done)
        lv_loop_post(fns->home, fns->stop_done, fns->stop_arg);
}

void lv_functions_stop(lv_functions_t *fns, uint64_t deadline_ms, lv_post_cb done, void *arg)
{
    lv_fns_state_t was = fns_state(fns);
    if (was == LV_FNS_STOPPING) {
        lv_log_error("fn", "lv_functions_stop called twice; the second call is ignored");
        return;
    }
    fns->stop_done = done;
    fns->stop_arg = arg;
    if (was != LV_FNS_RUNNING) {
        __atomic_store_n(&fns->state, LV_FNS_STOPPED, __ATOMIC_RELEASE);
        lv_loop_t *loop = fns->home ? fns->home : lv_loop_current();
        if (done && loop)
            lv_loop_post(loop, done, arg);
        else if (done)
            done(NULL, arg);
        return;
    }
    __atomic_store_n(&fns->state, LV_FNS_STOPPING, __ATOMIC_RELEASE);
    lv_loop_t *home = fns->home;
    lv_timer_stop(&fns->scaler);
    for (size_t i = 0; i < fns->nfns; i++) {
        lv_fn_t *fn = fns->fns[i];
        fail_queue(fn, LV_FN_SHUTDOWN);
        for (lv_list_t *node = fn->workers.next; node != &fn->workers; node = node->next) {
            lv_fn_worker_t *w = lv_list_entry(node, lv_fn_worker_t, link);
            if (!w->inv)
                stop_worker(w); /* busy ones get until the deadline */
        }
    }
    fns->stop_timer.cb = on_stop_deadline;
    uint64_t now = lv_loop_now_ms(home);
    lv_timer_start(home, &fns->stop_timer, deadline_ms > now ? deadline_ms - now : 0);
    check_stopped(fns);
}

lv_fn_t *lv_functions_find(lv_functions_t *fns, lv_slice_t name)
{
    for (size_t i = 0; i < fns->nfns; i++)
        if (lv_slice_eq_cstr(name, fns->fns[i]->cfg->name))
            return fns->fns[i];
    return NULL;
}

const lv_config_function_t *lv_fn_config(const lv_fn_t *fn) { return fn->cfg; }

size_t lv_functions_count(const lv_functions_t *fns) { return fns->nfns; }

lv_fn_t *lv_functions_at(lv_functions_t *fns, size_t i) { return i < fns->nfns ? fns->fns[i] : NULL; }

void lv_fn_invoke(lv_fn_t *fn, lv_loop_t *caller, const lv_fn_invoke_t *in, lv_fn_done_cb done, void *arg)
{
    lv_functions_t *fns = fn->fns;
    lv_fn_inv_t *inv = inv_get(fns);
    inv->fn = fn;
    inv->caller = caller;
    inv->done = done;
    inv->arg = arg;
    inv->flags = in->flags;
    inv->status = LV_FN_OK;
    lv_buf_clear(&inv->payload);
    lv_buf_append(&inv->payload, in->payload.ptr, in->payload.len);
    lv_buf_clear(&inv->client_context);
    if (in->client_context.len && lv_rapi_header_value_ok(in->client_context))
        lv_buf_append(&inv->client_context, in->client_context.ptr, in->client_context.len);
    if (lv_rapi_id_ok(in->request_id)) {
        memcpy(inv->request_id, in->request_id.ptr, in->request_id.len);
        inv->request_id[in->request_id.len] = 0;
        inv->request_id_len = in->request_id.len;
    } else {
        lv_uuid4(inv->request_id);
        inv->request_id_len = LV_FN_UUID_LEN;
    }
    if (fns_state(fns) != LV_FNS_RUNNING) {
        set_shutdown(inv);
        inv->status = LV_FN_SHUTDOWN;
        inv->state = LV_INV_DONE;
        lv_loop_post(caller, deliver, inv);
        return;
    }
    if (caller == fns->home)
        submit(inv);
    else
        lv_loop_post(fns->home, on_posted_invoke, inv);
}

void lv_fn_stats(const lv_fn_t *fn, lv_fn_stats_t *out)
{
#define LOAD(f) __atomic_load_n(&fn->f, __ATOMIC_RELAXED)
    out->warm_target = LOAD(st_warm_target);
    out->max = fn->cfg->max;
    out->idle = LOAD(st_idle);
    out->busy = LOAD(st_busy);
    out->starting = LOAD(st_starting);
    out->queued = LOAD(st_queued);
    out->invocations = LOAD(st_invocations);
    out->errors = LOAD(st_errors);
    out->timeouts = LOAD(st_timeouts);
    out->throttles = LOAD(st_throttles);
    out->cold_starts = LOAD(st_cold_starts);
#undef LOAD
}
