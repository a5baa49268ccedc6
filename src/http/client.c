/* client.c: pooled HTTP/1.1 connections to origins (see client.h).
 *
 * Per loop, a pool holds idle connections (LIFO, so the warmest is reused)
 * and a FIFO of requests waiting for one. A connection carries at most one
 * request at a time and goes through: CONNECTING -> SENDING -> RECEIVING ->
 * IDLE (or closed). One timer per connection covers the phase it is in: the
 * connect timeout, the response timeout, or the idle keep-alive period.
 *
 * Global limit: `open` counts connections over all loops. When a connection
 * is released on a loop that has no waiters while others do (`waiting` > 0),
 * it is closed instead of kept idle and every other loop is poked to open
 * connections for its waiters. */
#include "http/client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/list.h"
#include "core/log.h"
#include "core/mem.h"

#define IDLE_KEEPALIVE_MS 30000
#define READ_CHUNK 16384

typedef struct pool pool_t;
typedef struct uconn uconn_t;

typedef struct pending {
    lv_list_t link;     /* in pool_t.waiting while it waits for a connection */
    pool_t *pool;
    lv_buf_t request;
    bool is_head, idempotent, retried;
    lv_upstream_cb cb;
    void *arg;
    lv_timer_t wait_timer;
} pending_t;

typedef enum { UC_CONNECTING, UC_SENDING, UC_RECEIVING, UC_IDLE } uconn_state_t;

struct uconn {
    lv_io_t io;
    pool_t *pool;
    lv_list_t idle_link;    /* in pool_t.idle while idle */
    lv_list_t link;         /* in pool_t.conns: every connection, idle or busy */
    uconn_state_t state;
    lv_timer_t timer;
    lv_buf_t in;
    size_t sent;
    bool reused;        /* carried an earlier request: may be stale */
    bool got_bytes;     /* any answer byte arrived for the current request */
    bool readable;
    bool peer_closed;   /* the origin hung up (FIN or reset seen) */
    pending_t *req;
    /* Parsing state of the current answer. */
    lv_http_response_t head;   /* slices into `in` at head_base */
    const char *head_base;     /* where the head was parsed; `in` may move later */
    size_t head_len;
    size_t parse_prev;
    lv_http_body_kind_t body_kind;
    size_t body_len;
    lv_http_chunked_t chunk;
};

struct pool {
    lv_upstream_t *u;
    lv_loop_t *loop;
    lv_list_t idle;         /* idle connections, most recently used first */
    lv_list_t conns;        /* all connections, for shutdown */
    lv_list_t waiting;      /* requests waiting for a connection, FIFO */
    lv_upstream_stats_t stats;
};

struct lv_upstream {
    lv_upstream_config_t cfg;
    char *name;
    struct sockaddr_storage addr;
    unsigned nloops;
    pool_t *pools;
    uint64_t open;    /* atomic */
    uint64_t waiting; /* atomic */
};

#define STAT_INC(p, f) __atomic_fetch_add(&(p)->stats.f, 1, __ATOMIC_RELAXED)

static void start_request(uconn_t *uc, pending_t *p);
static void uconn_read(uconn_t *uc);
static void dispatch_waiters(pool_t *pool);
static void request_failed(uconn_t *uc, lv_upstream_status_t st);

/* ---- queues ---- */

static void unqueue(pending_t *p)
{
    pool_t *pool = p->pool;
    lv_list_remove(&p->link);
    lv_timer_stop(&p->wait_timer);
    __atomic_fetch_sub(&pool->u->waiting, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&pool->stats.waiting, 1, __ATOMIC_RELAXED);
}

/* Queues p for a connection (at the front for a retry), bounded by wait_ms. */
static void enqueue(pending_t *p, bool front, int64_t wait_ms)
{
    pool_t *pool = p->pool;
    if (front)
        lv_list_push_front(&pool->waiting, &p->link);
    else
        lv_list_push_back(&pool->waiting, &p->link);
    __atomic_fetch_add(&pool->u->waiting, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&pool->stats.waiting, 1, __ATOMIC_RELAXED);
    lv_timer_start(pool->loop, &p->wait_timer, wait_ms > 0 ? (uint64_t)wait_ms : 1);
}

/* Takes the most recently used idle connection, or NULL. */
static uconn_t *take_idle(pool_t *pool)
{
    lv_list_t *node = lv_list_first(&pool->idle);
    if (!node)
        return NULL;
    lv_list_remove(node);
    return lv_list_entry(node, uconn_t, idle_link);
}

/* ---- completion ---- */

static void finish(pending_t *p, lv_upstream_status_t st, const lv_http_response_t *head, lv_slice_t body)
{
    pool_t *pool = p->pool;
    switch (st) {
    case LV_UPSTREAM_OK: STAT_INC(pool, responses); break;
    case LV_UPSTREAM_REFUSED: STAT_INC(pool, refused); break;
    case LV_UPSTREAM_CONNECT_TIMEOUT: STAT_INC(pool, connect_timeouts); break;
    case LV_UPSTREAM_TIMEOUT: STAT_INC(pool, timeouts); break;
    case LV_UPSTREAM_BAD_RESPONSE: STAT_INC(pool, bad_responses); break;
    case LV_UPSTREAM_CLOSED: STAT_INC(pool, closed); break;
    case LV_UPSTREAM_NO_CONNECTION: STAT_INC(pool, no_connection); break;
    case LV_UPSTREAM_PENDING_FULL: STAT_INC(pool, pending_full); break;
    }
    lv_upstream_result_t res = {.status = st, .head = st == LV_UPSTREAM_OK ? head : NULL, .body = body};
    lv_buf_free(&p->request);
    lv_upstream_cb cb = p->cb;
    void *arg = p->arg;
    free(p);
    cb(&res, arg);
}

/* ---- connections ---- */

static void poke_other_loop(lv_loop_t *loop, void *arg)
{
    (void)loop;
    dispatch_waiters(arg);
}

static void uconn_close(uconn_t *uc)
{
    pool_t *pool = uc->pool;
    lv_upstream_t *u = pool->u;
    lv_io_stop(pool->loop, &uc->io);
    close(uc->io.fd);
    lv_timer_stop(&uc->timer);
    lv_buf_free(&uc->in);
    lv_list_remove(&uc->link);
    if (lv_list_linked(&uc->idle_link))
        lv_list_remove(&uc->idle_link);
    free(uc);
    __atomic_fetch_sub(&u->open, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&pool->stats.open_connections, 1, __ATOMIC_RELAXED);
    /* Room for a new connection: waiters here or on other loops may use it. */
    if (!lv_list_empty(&pool->waiting))
        dispatch_waiters(pool);
    else if (__atomic_load_n(&u->waiting, __ATOMIC_RELAXED) > 0)
        for (unsigned i = 0; i < u->nloops; i++)
            if (&u->pools[i] != pool && u->pools[i].loop)
                lv_loop_post(u->pools[i].loop, poke_other_loop, &u->pools[i]);
}

static void on_uconn_timer(lv_loop_t *loop, lv_timer_t *t)
{
    uconn_t *uc = t->data;
    (void)loop;
    pending_t *p = uc->req;
    switch (uc->state) {
    case UC_IDLE:
        uconn_close(uc);
        return;
    case UC_CONNECTING:
        uc->req = NULL;
        uconn_close(uc);
        finish(p, LV_UPSTREAM_CONNECT_TIMEOUT, NULL, (lv_slice_t){0});
        return;
    default:
        lv_log_warn("upstream", "%s: no complete answer within %lld ms", uc->pool->u->name,
                    (long long)uc->pool->u->cfg.timeout_ms);
        uc->req = NULL;
        uconn_close(uc);
        finish(p, LV_UPSTREAM_TIMEOUT, NULL, (lv_slice_t){0});
        return;
    }
}

/* The answer is complete: hand it over, then keep or drop the connection. */
static void response_done(uconn_t *uc, size_t total_len, bool reusable)
{
    if (lv_buf_data(&uc->in) != uc->head_base) {
        /* The buffer grew while the body arrived: point the head's slices at
         * the bytes' new home (same bytes, same result). */
        ssize_t r = lv_http_parse_response(lv_buf_data(&uc->in), uc->head_len, 0,
                                           uc->pool->u->cfg.max_header_bytes, &uc->head);
        if (r != (ssize_t)uc->head_len) {
            request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
            return;
        }
        uc->head_base = lv_buf_data(&uc->in);
    }
    pending_t *p = uc->req;
    pool_t *pool = uc->pool;
    lv_upstream_t *u = pool->u;
    uc->req = NULL;
    lv_timer_stop(&uc->timer);
    reusable = reusable && uc->head.keep_alive && lv_buf_len(&uc->in) == total_len;
    /* The callback may send a new request on this loop: decide the
     * connection's fate only after it returns, keeping the bytes alive. */
    uc->state = UC_IDLE;
    finish(p, LV_UPSTREAM_OK, &uc->head,
           lv_slice(lv_buf_data(&uc->in) + uc->head_len, uc->body_len));
    lv_buf_clear(&uc->in);
    if (!reusable) {
        uconn_close(uc);
        return;
    }
    uc->reused = true;
    lv_list_t *first = lv_list_first(&pool->waiting);
    if (first) {
        pending_t *next = lv_list_entry(first, pending_t, link);
        unqueue(next);
        start_request(uc, next);
        return;
    }
    if (__atomic_load_n(&u->waiting, __ATOMIC_RELAXED) > 0) {
        uconn_close(uc); /* let a loop with waiters open one */
        return;
    }
    lv_list_push_front(&pool->idle, &uc->idle_link);
    lv_timer_start(pool->loop, &uc->timer, IDLE_KEEPALIVE_MS);
}

/* The connection failed mid-request. Retry once when that is safe. */
static void request_failed(uconn_t *uc, lv_upstream_status_t st)
{
    pending_t *p = uc->req;
    pool_t *pool = uc->pool;
    bool stale_keepalive = uc->reused && !uc->got_bytes && (st == LV_UPSTREAM_CLOSED);
    uc->req = NULL;
    uconn_close(uc);
    if (stale_keepalive && p->idempotent && !p->retried) {
        /* The origin closed an idle connection as we reused it: nothing was
         * processed, so send the whole request again, first in line. */
        p->retried = true;
        STAT_INC(pool, retries);
        enqueue(p, true, pool->u->cfg.timeout_ms);
        dispatch_waiters(pool);
        return;
    }
    if (st == LV_UPSTREAM_CLOSED)
        lv_log_warn("upstream", "%s: connection closed before the answer was complete", pool->u->name);
    finish(p, st, NULL, (lv_slice_t){0});
}

static void uconn_flush(uconn_t *uc)
{
    pending_t *p = uc->req;
    while (uc->sent < lv_buf_len(&p->request)) {
        ssize_t n = write(uc->io.fd, lv_buf_data(&p->request) + uc->sent, lv_buf_len(&p->request) - uc->sent);
        if (n > 0) {
            uc->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        request_failed(uc, LV_UPSTREAM_CLOSED);
        return;
    }
    uc->state = UC_RECEIVING;
    if (uc->readable)
        uconn_read(uc);
}

/* Parses what has arrived. Returns true while the answer is incomplete and
 * uc waits for more bytes; false once the answer was handed over or failed,
 * after which uc may have been freed or given another request. */
static bool parse_answer(uconn_t *uc, bool eof)
{
    lv_upstream_t *u = uc->pool->u;
    for (;;) {
        if (uc->head_len == 0) {
            ssize_t r = lv_http_parse_response(lv_buf_data(&uc->in), lv_buf_len(&uc->in), uc->parse_prev,
                                               u->cfg.max_header_bytes, &uc->head);
            if (r == LV_HTTP_INCOMPLETE) {
                uc->parse_prev = lv_buf_len(&uc->in);
                if (!eof)
                    return true;
                request_failed(uc, LV_UPSTREAM_CLOSED);
                return false;
            }
            if (r < 0) {
                lv_log_warn("upstream", "%s: unparseable answer", u->name);
                request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
                return false;
            }
            uc->parse_prev = 0;
            if (uc->head.status >= 100 && uc->head.status < 200 && uc->head.status != 101) {
                lv_buf_consume(&uc->in, (size_t)r); /* interim answer: skip */
                continue;
            }
            if (uc->head.status == 101) {
                request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
                return false;
            }
            uc->head_len = (size_t)r;
            uc->head_base = lv_buf_data(&uc->in); /* before any reserve below moves it */
            uc->body_kind = lv_http_response_body_kind(&uc->head, uc->req->is_head);
            uc->body_len = uc->body_kind == LV_HTTP_BODY_LENGTH ? (size_t)uc->head.content_length : 0;
            if (uc->body_kind == LV_HTTP_BODY_LENGTH && uc->head_len + uc->body_len > u->cfg.max_response_bytes) {
                request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
                return false;
            }
            /* Room for the whole body now, so it arrives without regrowing. */
            if (uc->body_kind == LV_HTTP_BODY_LENGTH && lv_buf_len(&uc->in) < uc->head_len + uc->body_len)
                lv_buf_reserve(&uc->in, uc->head_len + uc->body_len - lv_buf_len(&uc->in));
        }
        break;
    }
    size_t have = lv_buf_len(&uc->in);
    switch (uc->body_kind) {
    case LV_HTTP_BODY_NONE:
        response_done(uc, uc->head_len, true);
        return false;
    case LV_HTTP_BODY_LENGTH:
        if (have >= uc->head_len + uc->body_len)
            response_done(uc, uc->head_len + uc->body_len, true);
        else if (eof)
            request_failed(uc, LV_UPSTREAM_CLOSED);
        else
            return true;
        return false;
    case LV_HTTP_BODY_UNTIL_CLOSE:
        uc->body_len = have - uc->head_len;
        if (have > u->cfg.max_response_bytes)
            request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
        else if (eof)
            response_done(uc, have, false);
        else
            return true;
        return false;
    case LV_HTTP_BODY_CHUNKED: {
        char *raw = lv_buf_data(&uc->in) + uc->head_len + uc->body_len;
        size_t n = have - uc->head_len - uc->body_len;
        if (n == 0) {
            if (!eof)
                return true;
            request_failed(uc, LV_UPSTREAM_CLOSED);
            return false;
        }
        ssize_t r = lv_http_chunked_decode(&uc->chunk, raw, &n);
        uc->body_len += n;
        if (r == LV_HTTP_ERROR || uc->head_len + uc->body_len > u->cfg.max_response_bytes) {
            request_failed(uc, LV_UPSTREAM_BAD_RESPONSE);
            return false;
        }
        size_t leftover = r == LV_HTTP_INCOMPLETE ? 0 : (size_t)r;
        uc->in.end = uc->in.start + uc->head_len + uc->body_len + leftover;
        if (r == LV_HTTP_INCOMPLETE) {
            if (!eof)
                return true;
            request_failed(uc, LV_UPSTREAM_CLOSED);
            return false;
        }
        response_done(uc, uc->head_len + uc->body_len, true);
        return false;
    }
    }
    return false;
}

static void uconn_read(uconn_t *uc)
{
    while (uc->readable) {
        if (uc->state == UC_IDLE) {
            /* An idle connection that becomes readable was closed by the
             * origin (or sent garbage): drop it. */
            uconn_close(uc);
            return;
        }
        lv_buf_reserve(&uc->in, READ_CHUNK);
        size_t room = lv_buf_room(&uc->in);
        ssize_t n = lv_io_read(uc->io.fd, lv_buf_tail(&uc->in), room);
        if (n == LV_IO_AGAIN) {
            uc->readable = false;
            return;
        }
        if (n > 0) {
            lv_buf_commit(&uc->in, (size_t)n);
            uc->got_bytes = true;
            /* A short read drained the socket, unless the origin also hung
             * up: then read on to see the end of the stream. */
            if ((size_t)n < room && !uc->peer_closed)
                uc->readable = false;
            if (!parse_answer(uc, false))
                return; /* finished or failed: uc may be gone or reused */
            continue;
        }
        /* End of stream or error. */
        uc->readable = false;
        if (uc->state == UC_RECEIVING)
            parse_answer(uc, true);
        else
            request_failed(uc, LV_UPSTREAM_CLOSED);
        return;
    }
}

static void on_uconn_io(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    uconn_t *uc = io->data;
    (void)loop;
    if (uc->state == UC_CONNECTING && (events & (LV_IO_WRITE | LV_IO_HUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(uc->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            pending_t *p = uc->req;
            uc->req = NULL;
            lv_log_warn("upstream", "%s: connect: %s", uc->pool->u->name, strerror(err));
            uconn_close(uc);
            finish(p, LV_UPSTREAM_REFUSED, NULL, (lv_slice_t){0});
            return;
        }
        uc->state = UC_SENDING;
        lv_timer_start(uc->pool->loop, &uc->timer, (uint64_t)uc->pool->u->cfg.timeout_ms);
    }
    if (events & LV_IO_READ)
        uc->readable = true;
    if (events & LV_IO_HUP)
        uc->peer_closed = true;
    if (uc->state == UC_SENDING && (events & LV_IO_WRITE)) {
        uconn_flush(uc);
        return;
    }
    if (uc->readable)
        uconn_read(uc);
}

static void start_request(uconn_t *uc, pending_t *p)
{
    uc->req = p;
    uc->sent = 0;
    uc->head_len = 0;
    uc->parse_prev = 0;
    uc->body_len = 0;
    uc->got_bytes = false;
    memset(&uc->chunk, 0, sizeof uc->chunk);
    lv_buf_clear(&uc->in);
    uc->state = UC_SENDING;
    lv_timer_start(uc->pool->loop, &uc->timer, (uint64_t)uc->pool->u->cfg.timeout_ms);
    uconn_flush(uc);
}

/* Opens a connection for p. The caller has already counted it in `open`. */
static void open_connection(pool_t *pool, pending_t *p)
{
    lv_upstream_t *u = pool->u;
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        __atomic_fetch_sub(&u->open, 1, __ATOMIC_RELAXED);
        lv_log_warn("upstream", "%s: socket: %s", u->name, strerror(errno));
        finish(p, LV_UPSTREAM_REFUSED, NULL, (lv_slice_t){0});
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uconn_t *uc = lv_calloc(1, sizeof *uc);
    uc->pool = pool;
    uc->io = (lv_io_t){.fd = fd, .cb = on_uconn_io, .data = uc};
    uc->timer.cb = on_uconn_timer;
    uc->timer.data = uc;
    uc->req = p;
    lv_list_push_back(&pool->conns, &uc->link);
    __atomic_fetch_add(&pool->stats.open_connections, 1, __ATOMIC_RELAXED);
    int r = connect(fd, (struct sockaddr *)&u->addr, u->cfg.addr_len);
    if (r < 0 && errno != EINPROGRESS) {
        int err = errno;
        uc->req = NULL;
        lv_log_warn("upstream", "%s: connect: %s", u->name, strerror(err));
        uc->io.fd = fd;
        lv_io_start(pool->loop, &uc->io);
        uconn_close(uc);
        finish(p, LV_UPSTREAM_REFUSED, NULL, (lv_slice_t){0});
        return;
    }
    uc->state = UC_CONNECTING;
    lv_timer_start(pool->loop, &uc->timer, (uint64_t)u->cfg.connect_timeout_ms);
    lv_io_start(pool->loop, &uc->io);
}

/* Reserves a slot in the global connection budget. */
static bool take_slot(lv_upstream_t *u)
{
    uint64_t cur = __atomic_load_n(&u->open, __ATOMIC_RELAXED);
    while (cur < (uint64_t)u->cfg.max_conns)
        if (__atomic_compare_exchange_n(&u->open, &cur, cur + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return true;
    return false;
}

static void dispatch_waiters(pool_t *pool)
{
    lv_list_t *first;
    while ((first = lv_list_first(&pool->waiting)) != NULL) {
        pending_t *p = lv_list_entry(first, pending_t, link);
        uconn_t *uc = take_idle(pool);
        if (uc) {
            unqueue(p);
            start_request(uc, p);
            continue;
        }
        if (!take_slot(pool->u))
            return;
        unqueue(p);
        open_connection(pool, p);
    }
}

static void on_wait_timeout(lv_loop_t *loop, lv_timer_t *t)
{
    pending_t *p = t->data;
    (void)loop;
    unqueue(p);
    lv_log_warn("upstream", "%s: no free connection (max_conns %d) within the wait limit", p->pool->u->name,
                p->pool->u->cfg.max_conns);
    finish(p, LV_UPSTREAM_NO_CONNECTION, NULL, (lv_slice_t){0});
}

static void reclaim_idle(lv_loop_t *loop, void *arg)
{
    pool_t *pool = arg;
    (void)loop;
    if (__atomic_load_n(&pool->u->waiting, __ATOMIC_RELAXED) > 0) {
        uconn_t *uc = take_idle(pool);
        if (uc)
            uconn_close(uc);
    }
}

void lv_upstream_send(lv_upstream_t *u, lv_loop_t *loop, lv_buf_t *request, bool is_head, bool idempotent,
                      int64_t wait_ms, lv_upstream_cb cb, void *arg)
{
    pool_t *pool = &u->pools[lv_loop_index(loop)];
    pool->loop = loop;
    pending_t *p = lv_calloc(1, sizeof *p);
    p->pool = pool;
    p->request = *request;
    *request = LV_BUF_INIT;
    p->is_head = is_head;
    p->idempotent = idempotent;
    p->cb = cb;
    p->arg = arg;
    p->wait_timer.cb = on_wait_timeout;
    p->wait_timer.data = p;
    STAT_INC(pool, requests);
    if (lv_list_empty(&pool->waiting)) {
        uconn_t *uc = take_idle(pool);
        if (uc) {
            start_request(uc, p);
            return;
        }
        if (take_slot(u)) {
            open_connection(pool, p);
            return;
        }
    }
    /* Wait for a connection, FIFO, bounded in number and in time. */
    if (__atomic_load_n(&u->waiting, __ATOMIC_RELAXED) >= (uint64_t)u->cfg.max_pending) {
        finish(p, LV_UPSTREAM_PENDING_FULL, NULL, (lv_slice_t){0});
        return;
    }
    enqueue(p, false, wait_ms);
    /* Idle connections parked on other loops count against max_conns. */
    for (unsigned i = 0; i < u->nloops; i++)
        if (&u->pools[i] != pool && u->pools[i].loop)
            lv_loop_post(u->pools[i].loop, reclaim_idle, &u->pools[i]);
}

/* ---- lifecycle ---- */

lv_upstream_t *lv_upstream_new(const lv_upstream_config_t *cfg, unsigned nloops)
{
    lv_upstream_t *u = lv_calloc(1, sizeof *u);
    u->cfg = *cfg;
    u->name = lv_strdup(cfg->name);
    u->cfg.name = u->name;
    memcpy(&u->addr, cfg->addr, cfg->addr_len);
    u->cfg.addr = (struct sockaddr *)&u->addr;
    u->nloops = nloops;
    u->pools = lv_calloc(nloops, sizeof *u->pools);
    for (unsigned i = 0; i < nloops; i++) {
        pool_t *pool = &u->pools[i];
        pool->u = u;
        lv_list_init(&pool->idle);
        lv_list_init(&pool->conns);
        lv_list_init(&pool->waiting);
    }
    return u;
}

void lv_upstream_close_loop(lv_upstream_t *u, lv_loop_t *loop)
{
    pool_t *pool = &u->pools[lv_loop_index(loop)];
    /* Requests still waiting or in flight fail now, so their callers can
     * answer (or drop) them and nothing outlives the loop. */
    lv_list_t *node;
    while ((node = lv_list_first(&pool->waiting)) != NULL) {
        pending_t *p = lv_list_entry(node, pending_t, link);
        unqueue(p);
        finish(p, LV_UPSTREAM_NO_CONNECTION, NULL, (lv_slice_t){0});
    }
    while ((node = lv_list_first(&pool->conns)) != NULL) {
        uconn_t *uc = lv_list_entry(node, uconn_t, link);
        pending_t *p = uc->req;
        uc->req = NULL;
        uconn_close(uc);
        if (p)
            finish(p, LV_UPSTREAM_CLOSED, NULL, (lv_slice_t){0});
    }
}

void lv_upstream_free(lv_upstream_t *u)
{
    if (!u)
        return;
    free(u->pools);
    free(u->name);
    free(u);
}

void lv_upstream_stats(const lv_upstream_t *u, lv_upstream_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < u->nloops; i++) {
        const uint64_t *src = (const uint64_t *)&u->pools[i].stats;
        uint64_t *dst = (uint64_t *)out;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
            dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
}

int lv_upstream_status_code(lv_upstream_status_t st)
{
    switch (st) {
    case LV_UPSTREAM_OK: return 200;
    case LV_UPSTREAM_CONNECT_TIMEOUT:
    case LV_UPSTREAM_TIMEOUT: return 504;
    case LV_UPSTREAM_NO_CONNECTION:
    case LV_UPSTREAM_PENDING_FULL: return 503;
    default: return 502;
    }
}

const char *lv_upstream_status_name(lv_upstream_status_t st)
{
    static const char *const names[] = {"ok",     "refused",       "connect_timeout", "timeout",
                                        "bad_response", "closed", "no_connection",   "pending_full"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "unknown";
}
