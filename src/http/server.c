/* server.c: HTTP/1.1 connections on the event loops (see server.h).
 *
 * A connection moves through four states:
 *
 *   READ_HEAD  waiting for / parsing a request head (idle or header timeout)
 *   READ_BODY  the head is parsed, the body is being read (body timeout)
 *   HANDLING   the request is with the handler; nothing more is read
 *   LINGER     an error answer was sent; the write side is shut and input is
 *              drained briefly so the client can read the answer before close
 *
 * Input is parsed in place: the head's slices point into `in`, and a chunked
 * body is decoded in place right behind the head, so a complete request is
 * one contiguous run of `in` (head, then body). Reading pauses while a
 * request is HANDLING, so the buffer cannot move under the handler; if it
 * moved while the body was read, the head is parsed again before dispatch.
 *
 * Answers are appended to `out`; `out` is written once per batch of input
 * processed, so pipelined requests are answered with one write(2). When
 * `out` passes a high-water mark (a client pipelining without reading),
 * processing and reading stop until it drains.
 *
 * Closing never frees a connection under a running callback: lv_http_conn
 * memory is released in a posted callback at the end of the loop iteration,
 * or, if the handler still holds the request, when it answers. */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mem.h"

#define READ_CHUNK 16384
#define OUT_HIGH_WATER (256 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
#define RESUME_CHECK_MS 100
#define POOL_BUF_SIZE 16384 /* lv_buf_reserve(READ_CHUNK) on an empty buffer gives exactly this */
#define POOL_MAX 256

typedef enum { CONN_READ_HEAD, CONN_READ_BODY, CONN_HANDLING, CONN_LINGER, CONN_CLOSED } conn_state_t;

typedef struct loop_state {
    lv_http_server_t *server;
    lv_loop_t *loop;
    lv_io_t *listeners;     /* one per listen address */
    size_t nlisteners;
    bool listening, paused, draining;
    lv_timer_t resume_timer;
    lv_list_t conns;        /* every open connection of this loop */
    lv_http_server_stats_t stats;
    char date_line[64];
    size_t date_len;
    time_t date_sec;
    /* Recycled storage, so an idle keep-alive connection holds neither an
     * I/O buffer nor a request struct (10k idle clients stay cheap). */
    char *free_bufs[POOL_MAX];
    size_t num_free_bufs;
    lv_http_req_t *free_reqs[POOL_MAX];
    size_t num_free_reqs;
    size_t conns_allocated; /* accepted and not yet freed (closed ones included) */
} loop_state_t;

struct lv_http_server {
    lv_config_limits_t limits;
    unsigned nloops;
    lv_http_handler_cb handler;
    lv_http_too_large_cb too_large;
    void *ctx;
    loop_state_t *loops;
    uint64_t open; /* atomic: connections open on all loops */
    bool release_pending; /* lv_http_server_release: free when the last connection is freed */
};

struct lv_http_conn {
    lv_io_t io;
    loop_state_t *ls;
    lv_loop_t *loop;
    lv_list_t link;         /* in loop_state_t.conns while open */
    lv_buf_t in, out;
    lv_timer_t timer;
    conn_state_t state;
    bool readable, writable, peer_closed, keep_alive, close_after_write, in_process;
    bool answered_in_handler, free_posted;
    size_t parse_prev;  /* bytes of the head already seen incomplete */
    size_t head_len;
    size_t body_len;    /* CL body length, or decoded chunked length so far */
    size_t linger_bytes;
    lv_http_chunked_t chunk;
    const char *head_base; /* where the head was parsed, to notice a moved buffer */
    uint64_t head_started_ms;
    lv_http_req_t *req;     /* from the loop's pool while a request is under way */
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
};

#define STAT_INC(ls, field) __atomic_fetch_add(&(ls)->stats.field, 1, __ATOMIC_RELAXED)

static void conn_read(lv_http_conn_t *c);
static void process_input(lv_http_conn_t *c);
static void flush_output(lv_http_conn_t *c);
static void conn_close(lv_http_conn_t *c);
static void reset_request_state(lv_http_conn_t *c);

/* ---- small helpers ---- */

static size_t in_len(const lv_http_conn_t *c) { return lv_buf_len(&c->in); }

static void arm_timer(lv_http_conn_t *c, int64_t ms)
{
    lv_timer_start(c->loop, &c->timer, ms > 0 ? (uint64_t)ms : 1);
}

/* Gives b storage from the loop's pool (if it has none). */
static void buf_take(loop_state_t *ls, lv_buf_t *b)
{
    if (b->data || !ls->num_free_bufs)
        return;
    b->data = ls->free_bufs[--ls->num_free_bufs];
    b->capacity = POOL_BUF_SIZE;
    b->start = b->end = 0;
}

/* Returns an empty buffer's storage to the pool (or frees it if it grew). */
static void buf_give(loop_state_t *ls, lv_buf_t *b)
{
    if (!b->data || lv_buf_len(b))
        return;
    if (b->capacity == POOL_BUF_SIZE && ls->num_free_bufs < POOL_MAX)
        ls->free_bufs[ls->num_free_bufs++] = b->data;
    else
        free(b->data);
    *b = LV_BUF_INIT;
}

static void req_take(lv_http_conn_t *c)
{
    loop_state_t *ls = c->ls;
    if (c->req)
        return;
    c->req = ls->num_free_reqs ? ls->free_reqs[--ls->num_free_reqs] : lv_malloc(sizeof *c->req);
    c->req->conn = c;
}

static void req_give(lv_http_conn_t *c)
{
    loop_state_t *ls = c->ls;
    if (!c->req)
        return;
    if (ls->num_free_reqs < POOL_MAX)
        ls->free_reqs[ls->num_free_reqs++] = c->req;
    else
        free(c->req);
    c->req = NULL;
}

/* The client hung up (or half-closed) and everything it sent has been
 * answered and written: nothing more can come, so close now rather than at
 * the idle timeout. */
static bool close_if_finished(lv_http_conn_t *c)
{
    if (c->peer_closed && c->state == CONN_READ_HEAD && in_len(c) == 0 && lv_buf_len(&c->out) == 0) {
        conn_close(c);
        return true;
    }
    return false;
}

/* Between requests with nothing buffered: hand the storage back. */
static void release_if_idle(lv_http_conn_t *c)
{
    if ((c->state != CONN_READ_HEAD && c->state != CONN_CLOSED) || in_len(c) || lv_buf_len(&c->out))
        return;
    buf_give(c->ls, &c->in);
    buf_give(c->ls, &c->out);
    req_give(c);
}

static const lv_config_limits_t *limits_of(const lv_http_conn_t *c)
{
    return &c->ls->server->limits;
}

static void refresh_date(loop_state_t *ls)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec == ls->date_sec && ls->date_len)
        return;
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    ls->date_len = strftime(ls->date_line, sizeof ls->date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    ls->date_sec = ts.tv_sec;
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* ---- connection lifecycle ---- */

static void free_conn(lv_loop_t *loop, void *arg)
{
    lv_http_conn_t *c = arg;
    loop_state_t *ls = c->ls;
    (void)loop;
    lv_buf_clear(&c->in);
    lv_buf_clear(&c->out);
    release_if_idle(c);
    free(c);
    /* A released server waits for its last connection's memory, which is
     * the last thing that points at it. */
    if (--ls->conns_allocated == 0 && ls->server->release_pending)
        lv_http_server_free(ls->server);
}

static void maybe_resume_accepting(loop_state_t *ls)
{
    lv_http_server_t *s = ls->server;
    if (ls->paused && ls->listening && !ls->draining &&
        __atomic_load_n(&s->open, __ATOMIC_RELAXED) < s->limits.max_connections) {
        ls->paused = false;
        lv_timer_stop(&ls->resume_timer);
        for (size_t i = 0; i < ls->nlisteners; i++)
            lv_io_resume(ls->loop, &ls->listeners[i]);
    }
}

static void conn_close(lv_http_conn_t *c)
{
    if (c->state == CONN_CLOSED)
        return;
    bool handler_holds_req = c->state == CONN_HANDLING && !c->answered_in_handler;
    c->state = CONN_CLOSED;
    lv_io_stop(c->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    lv_timer_stop(&c->timer);
    lv_list_remove(&c->link);
    __atomic_fetch_sub(&c->ls->server->open, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&c->ls->stats.connections_open, 1, __ATOMIC_RELAXED);
    maybe_resume_accepting(c->ls);
    /* The handler still owns the request: it frees the connection when it
     * answers. Otherwise free after this iteration's callbacks unwind. */
    if (!handler_holds_req && !c->free_posted) {
        c->free_posted = true;
        lv_loop_post(c->loop, free_conn, c);
    }
}

static void start_linger(lv_http_conn_t *c)
{
    c->state = CONN_LINGER;
    shutdown(c->io.fd, SHUT_WR);
    lv_buf_clear(&c->in);
    arm_timer(c, LINGER_MS);
    if (c->readable || c->peer_closed)
        conn_read(c);
}

/* Everything queued was written: close or linger if that was asked for. */
static void output_drained(lv_http_conn_t *c)
{
    if (!c->close_after_write || c->state == CONN_CLOSED || c->state == CONN_LINGER)
        return;
    if (c->state == CONN_HANDLING)
        return; /* closes after the handler's answer */
    if (in_len(c) == 0 && c->peer_closed)
        conn_close(c);
    else
        start_linger(c);
}

static void flush_output(lv_http_conn_t *c)
{
    while (lv_buf_len(&c->out) && c->state != CONN_CLOSED) {
        ssize_t n = write(c->io.fd, lv_buf_data(&c->out), lv_buf_len(&c->out));
        if (n > 0) {
            bool partial = (size_t)n < lv_buf_len(&c->out);
            lv_buf_consume(&c->out, (size_t)n);
            if (partial) {
                c->writable = false;
                break;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->writable = false;
            break;
        }
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return;
    }
    if (c->state == CONN_CLOSED)
        return;
    if (lv_buf_len(&c->out)) {
        /* The client is not reading: bound how long we wait for it. */
        if (c->state != CONN_HANDLING && c->state != CONN_LINGER)
            arm_timer(c, limits_of(c)->idle_timeout_ms);
        return;
    }
    output_drained(c);
}

/* ---- answers ---- */

static void append_status_line(lv_buf_t *out, int status)
{
    lv_buf_append_str(out, "HTTP/1.1 ");
    lv_buf_append_u64(out, (unsigned)status);
    lv_buf_append(out, " ", 1);
    lv_buf_append_str(out, lv_http_status_reason(status));
    lv_buf_append(out, "\r\n", 2);
}

static void append_response(lv_http_conn_t *c, int status, const lv_slice_t *parts, size_t nparts,
                            lv_slice_t body, bool send_body, bool keep_alive, int minor_version)
{
    loop_state_t *ls = c->ls;
    refresh_date(ls);
    buf_take(ls, &c->out);
    size_t need = 64 + ls->date_len + 64 + (send_body ? body.len : 0);
    for (size_t i = 0; i < nparts; i++)
        need += parts[i].len;
    lv_buf_reserve(&c->out, need);
    append_status_line(&c->out, status);
    lv_buf_append(&c->out, ls->date_line, ls->date_len);
    lv_buf_append_str(&c->out, "Server: levee\r\n");
    for (size_t i = 0; i < nparts; i++)
        lv_buf_append(&c->out, parts[i].ptr, parts[i].len);
    if (status_has_body(status)) {
        lv_buf_append_str(&c->out, "Content-Length: ");
        lv_buf_append_u64(&c->out, body.len);
        lv_buf_append(&c->out, "\r\n", 2);
    }
    if (!keep_alive)
        lv_buf_append_str(&c->out, "Connection: close\r\n");
    else if (minor_version == 0)
        lv_buf_append_str(&c->out, "Connection: keep-alive\r\n");
    lv_buf_append(&c->out, "\r\n", 2);
    if (send_body && status_has_body(status))
        lv_buf_append(&c->out, body.ptr, body.len);
}

/* Answers a request the server itself rejects, then closes. */
static void send_error(lv_http_conn_t *c, int status)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status, lv_http_status_reason(status));
    lv_slice_t hdr = LV_SLICE_LIT("Content-Type: text/plain\r\n");
    append_response(c, status, &hdr, 1, lv_slice(body, (size_t)n), true, false, 1);
    /* No further request is read: with the input dropped and close_after_write
     * set, processing stops and output_drained turns the close into a linger. */
    lv_buf_clear(&c->in);
    reset_request_state(c);
    c->state = CONN_READ_HEAD;
    c->close_after_write = true;
    c->keep_alive = false;
}

static void count_parse_error(loop_state_t *ls, int status)
{
    if (status == 414 || status == 431)
        STAT_INC(ls, header_too_large);
    else if (status == 413)
        STAT_INC(ls, body_too_large);
    else
        STAT_INC(ls, bad_requests);
}

/* ---- request processing ---- */

static void reset_request_state(lv_http_conn_t *c)
{
    c->head_len = 0;
    c->body_len = 0;
    c->parse_prev = 0;
    memset(&c->chunk, 0, sizeof c->chunk);
    c->head_started_ms = 0;
}

static void dispatch(lv_http_conn_t *c)
{
    const char *base = lv_buf_data(&c->in);
    if (base != c->head_base) {
        /* The buffer moved while the body was read: parse the head again
         * so its slices point at the bytes' new home. */
        int status = 0;
        ssize_t r = lv_http_parse_request(base, c->head_len, 0, limits_of(c)->max_header_bytes,
                                          &c->req->head, &status);
        if (r != (ssize_t)c->head_len) {
            lv_log_error("http", "request head changed on re-parse (%zd vs %zu)", r, c->head_len);
            send_error(c, 500);
            return;
        }
        c->head_base = base;
    }
    lv_timer_stop(&c->timer);
    c->state = CONN_HANDLING;
    c->answered_in_handler = false;
    lv_http_req_t *req = c->req;
    req->body = lv_slice(base + c->head_len, c->body_len);
    req->loop = c->loop;
    req->start_ns = lv_loop_now_ns(c->loop);
    req->is_head = lv_slice_eq(req->head.method, LV_SLICE_LIT("HEAD"));
    req->user = NULL;
    req->conn = c;
    c->keep_alive = req->head.keep_alive && !c->ls->draining && !c->close_after_write;
    STAT_INC(c->ls, requests);
    c->ls->server->handler(req, c->ls->server->ctx);
}

/* Returns true when the whole body of the current request is in `in`. */
static void refuse_too_large(lv_http_conn_t *c, uint64_t size)
{
    STAT_INC(c->ls, body_too_large);
    lv_http_server_t *s = c->ls->server;
    if (s->too_large)
        s->too_large(&c->req->head, size, s->ctx);
    send_error(c, 413);
}

static bool body_complete(lv_http_conn_t *c)
{
    const lv_config_limits_t *lim = limits_of(c);
    if (!c->req->head.chunked)
        return in_len(c) >= c->head_len + c->body_len;
    char *raw = lv_buf_data(&c->in) + c->head_len + c->body_len;
    size_t raw_len = in_len(c) - c->head_len - c->body_len;
    if (raw_len == 0)
        return false;
    size_t n = raw_len;
    ssize_t r = lv_http_chunked_decode(&c->chunk, raw, &n);
    c->body_len += n;
    if (r == LV_HTTP_ERROR) {
        STAT_INC(c->ls, bad_requests);
        send_error(c, 400);
        return false;
    }
    if (c->body_len > lim->max_body_bytes) {
        refuse_too_large(c, c->body_len);
        return false;
    }
    /* Drop the raw bytes the decoder consumed: decoded data, then whatever
     * followed the body (pipelined requests), stay contiguous. */
    size_t leftover = r == LV_HTTP_INCOMPLETE ? 0 : (size_t)r;
    c->in.end = c->in.start + c->head_len + c->body_len + leftover;
    return r != LV_HTTP_INCOMPLETE;
}

/* The head of a request was parsed: decide how its body is read. */
static void start_body(lv_http_conn_t *c)
{
    const lv_http_request_t *h = &c->req->head;
    const lv_config_limits_t *lim = limits_of(c);
    if (h->content_length > 0 && (uint64_t)h->content_length > lim->max_body_bytes) {
        refuse_too_large(c, (uint64_t)h->content_length);
        return;
    }
    c->body_len = h->content_length > 0 ? (size_t)h->content_length : 0;
    if (!h->chunked && c->body_len == 0) {
        dispatch(c);
        return;
    }
    c->state = CONN_READ_BODY;
    /* Room for the whole body at once, so it arrives without regrowing.
     * The buffer may already hold all of it and the next pipelined request. */
    if (!h->chunked && in_len(c) < c->head_len + c->body_len)
        lv_buf_reserve(&c->in, c->head_len + c->body_len - in_len(c));
    if (h->expect_continue && h->minor_version >= 1 && !body_complete(c) && c->state == CONN_READ_BODY) {
        lv_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        flush_output(c);
    }
    arm_timer(c, lim->request_timeout_ms);
}

static void process_input(lv_http_conn_t *c)
{
    const lv_config_limits_t *lim = limits_of(c);
    c->in_process = true;
    while (c->state == CONN_READ_HEAD || c->state == CONN_READ_BODY) {
        if (lv_buf_len(&c->out) > OUT_HIGH_WATER)
            break; /* let the client read what it asked for first */
        if (c->state == CONN_READ_HEAD) {
            if (in_len(c) == 0)
                break;
            if (c->close_after_write)
                break; /* an error answer is pending: read no further requests */
            req_take(c);
            if (c->head_started_ms == 0) {
                c->head_started_ms = lv_loop_now_ms(c->loop);
                arm_timer(c, lim->header_timeout_ms);
            }
            int status = 400;
            ssize_t r = lv_http_parse_request(lv_buf_data(&c->in), in_len(c), c->parse_prev,
                                              lim->max_header_bytes, &c->req->head, &status);
            if (r == LV_HTTP_INCOMPLETE) {
                c->parse_prev = in_len(c);
                break;
            }
            if (r < 0) {
                count_parse_error(c->ls, status);
                send_error(c, status);
                break;
            }
            c->head_len = (size_t)r;
            c->parse_prev = 0;
            c->head_base = lv_buf_data(&c->in);
            start_body(c);
            continue;
        }
        /* READ_BODY */
        if (!body_complete(c))
            break;
        dispatch(c);
    }
    c->in_process = false;
    flush_output(c);
    if (c->state != CONN_CLOSED && !close_if_finished(c))
        release_if_idle(c);
}

static void conn_read(lv_http_conn_t *c)
{
    while (c->readable && c->state != CONN_CLOSED && c->state != CONN_HANDLING) {
        if (c->state != CONN_LINGER && lv_buf_len(&c->out) > OUT_HIGH_WATER)
            return; /* resumed when the output drains */
        if (c->state == CONN_LINGER) {
            char sink[4096];
            ssize_t n = lv_io_read(c->io.fd, sink, sizeof sink);
            if (n == LV_IO_AGAIN) {
                c->readable = false;
                return;
            }
            c->linger_bytes += (size_t)n;
            if (n == 0 || c->linger_bytes > LINGER_MAX_BYTES) {
                conn_close(c);
                return;
            }
            continue;
        }
        buf_take(c->ls, &c->in);
        lv_buf_reserve(&c->in, READ_CHUNK);
        size_t room = lv_buf_room(&c->in);
        ssize_t n = lv_io_read(c->io.fd, lv_buf_tail(&c->in), room);
        if (n == LV_IO_AGAIN) {
            c->readable = false;
            return;
        }
        if (n > 0) {
            lv_buf_commit(&c->in, (size_t)n);
            /* A short read drained the socket, unless the client also hung
             * up: then read on to see the end of the stream. */
            if ((size_t)n < room && !c->peer_closed)
                c->readable = false;
            process_input(c);
            continue;
        }
        /* EOF or error: a client may close after its last request; the
         * answers already queued still go out if the socket allows. */
        c->peer_closed = true;
        c->readable = false;
        if (lv_buf_len(&c->out) && n == 0) {
            c->close_after_write = true;
            flush_output(c);
            return;
        }
        conn_close(c);
        return;
    }
}

static void on_conn_io(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    lv_http_conn_t *c = io->data;
    (void)loop;
    if (events & LV_IO_WRITE) {
        c->writable = true;
        if (lv_buf_len(&c->out)) {
            flush_output(c);
            if (c->state == CONN_CLOSED)
                return;
            if (lv_buf_len(&c->out) <= OUT_HIGH_WATER &&
                (c->state == CONN_READ_HEAD || c->state == CONN_READ_BODY) && in_len(c)) {
                process_input(c); /* was paused by backpressure */
                if (c->state == CONN_CLOSED)
                    return;
            }
            if (close_if_finished(c))
                return;
            release_if_idle(c);
        }
    }
    if (events & LV_IO_HUP)
        c->peer_closed = true;
    if (events & LV_IO_READ) {
        c->readable = true;
        conn_read(c);
    }
}

static void on_conn_timer(lv_loop_t *loop, lv_timer_t *t)
{
    lv_http_conn_t *c = t->data;
    (void)loop;
    if (lv_buf_len(&c->out) && c->state != CONN_LINGER && c->state != CONN_HANDLING) {
        STAT_INC(c->ls, write_timeouts);
        conn_close(c);
        return;
    }
    switch (c->state) {
    case CONN_READ_HEAD:
        if (c->head_started_ms == 0 && in_len(c) == 0) {
            STAT_INC(c->ls, idle_timeouts);
            conn_close(c);
        } else {
            STAT_INC(c->ls, header_timeouts);
            send_error(c, 408);
            flush_output(c);
        }
        break;
    case CONN_READ_BODY:
        STAT_INC(c->ls, body_timeouts);
        send_error(c, 408);
        flush_output(c);
        break;
    case CONN_LINGER:
        conn_close(c);
        break;
    default:
        break;
    }
}

/* ---- answering ---- */

void lv_http_respondv(lv_http_req_t *req, int status, const lv_slice_t *header_parts, size_t nparts,
                      lv_slice_t body)
{
    lv_http_conn_t *c = req->conn;
    if (c->state == CONN_CLOSED) {
        /* The client went away while the handler worked: drop the answer. */
        if (!c->free_posted) {
            c->free_posted = true;
            lv_loop_post(c->loop, free_conn, c);
        }
        return;
    }
    c->answered_in_handler = true;
    bool keep_alive = c->keep_alive && !c->close_after_write && !c->ls->draining;
    append_response(c, status, header_parts, nparts, body, !req->is_head, keep_alive,
                    req->head.minor_version);
    lv_buf_consume(&c->in, c->head_len + c->body_len);
    reset_request_state(c);
    c->state = CONN_READ_HEAD;
    if (!keep_alive) {
        c->close_after_write = true;
        lv_buf_clear(&c->in);
    } else if (in_len(c) == 0) {
        arm_timer(c, limits_of(c)->idle_timeout_ms);
    }
    if (!c->in_process) {
        /* Answered later from the loop: carry on with pipelined input. */
        process_input(c);
        if (c->state != CONN_CLOSED && c->readable)
            conn_read(c);
        if (c->state != CONN_CLOSED)
            close_if_finished(c);
    }
}

void lv_http_respond(lv_http_req_t *req, int status, lv_slice_t header_lines, lv_slice_t body)
{
    lv_http_respondv(req, status, &header_lines, 1, body);
}

void lv_http_req_set_close(lv_http_req_t *req)
{
    req->conn->keep_alive = false;
}

const struct sockaddr_storage *lv_http_req_peer(const lv_http_req_t *req)
{
    return &req->conn->peer;
}

const char *lv_http_req_peer_ip(const lv_http_req_t *req)
{
    lv_http_conn_t *c = req->conn;
    if (!c->peer_ip[0]) {
        if (c->peer.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&c->peer)->sin6_addr, c->peer_ip, sizeof c->peer_ip);
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)&c->peer)->sin_addr, c->peer_ip, sizeof c->peer_ip);
    }
    return c->peer_ip;
}

bool lv_http_req_client_gone(const lv_http_req_t *req)
{
    /* Reading is paused while the handler holds the request, so the peer's
     * close shows up only as the hang-up flag from the loop. */
    return req->conn->state == CONN_CLOSED || req->conn->peer_closed;
}

/* ---- accepting ---- */

static void on_resume_timer(lv_loop_t *loop, lv_timer_t *t)
{
    loop_state_t *ls = t->data;
    maybe_resume_accepting(ls);
    if (ls->paused)
        lv_timer_start(loop, &ls->resume_timer, RESUME_CHECK_MS);
}

static void pause_accepting(loop_state_t *ls)
{
    if (ls->paused)
        return;
    ls->paused = true;
    STAT_INC(ls, max_connections_hits);
    lv_log_warn("http", "max_connections (%llu) reached: accepting paused",
                (unsigned long long)ls->server->limits.max_connections);
    for (size_t i = 0; i < ls->nlisteners; i++)
        lv_io_pause(ls->loop, &ls->listeners[i]);
    lv_timer_start(ls->loop, &ls->resume_timer, RESUME_CHECK_MS);
}

static void on_accept(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    loop_state_t *ls = io->data;
    lv_http_server_t *s = ls->server;
    (void)events;
    while (ls->listening && !ls->paused) {
        if (__atomic_load_n(&s->open, __ATOMIC_RELAXED) >= s->limits.max_connections) {
            pause_accepting(ls);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lv_log_warn("http", "accept: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        lv_http_conn_t *c = lv_calloc(1, sizeof *c);
        c->ls = ls;
        c->loop = loop;
        c->peer = peer;
        c->io = (lv_io_t){.fd = fd, .cb = on_conn_io, .data = c};
        c->timer.cb = on_conn_timer;
        c->timer.data = c;
        c->state = CONN_READ_HEAD;
        ls->conns_allocated++;
        lv_list_push_back(&ls->conns, &c->link);
        __atomic_fetch_add(&s->open, 1, __ATOMIC_RELAXED);
        STAT_INC(ls, connections_open);
        STAT_INC(ls, connections_accepted);
        if (lv_io_start(loop, &c->io) < 0) {
            conn_close(c);
            continue;
        }
        arm_timer(c, s->limits.idle_timeout_ms);
    }
}

/* ---- server ---- */

lv_http_server_t *lv_http_server_new(const lv_config_limits_t *limits, unsigned nloops,
                                     lv_http_handler_cb handler, void *ctx)
{
    lv_http_server_t *s = lv_calloc(1, sizeof *s);
    s->limits = *limits;
    s->nloops = nloops;
    s->handler = handler;
    s->ctx = ctx;
    s->loops = lv_calloc(nloops, sizeof *s->loops);
    for (unsigned i = 0; i < nloops; i++) {
        s->loops[i].server = s;
        lv_list_init(&s->loops[i].conns);
    }
    return s;
}

void lv_http_server_free(lv_http_server_t *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->nloops; i++) {
        loop_state_t *ls = &s->loops[i];
        free(ls->listeners);
        while (ls->num_free_bufs)
            free(ls->free_bufs[--ls->num_free_bufs]);
        while (ls->num_free_reqs)
            free(ls->free_reqs[--ls->num_free_reqs]);
    }
    free(s->loops);
    free(s);
}

int lv_http_listen(const struct sockaddr *addr, socklen_t addr_len, char *err, size_t errlen)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, addr, addr_len) < 0 || listen(fd, 4096) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void lv_http_server_attach(lv_http_server_t *s, lv_loop_t *loop, int listen_fd)
{
    loop_state_t *ls = &s->loops[lv_loop_index(loop)];
    if (ls->listening)
        for (size_t i = 0; i < ls->nlisteners; i++)
            lv_io_stop(loop, &ls->listeners[i]); /* re-registered below: the array moves */
    ls->loop = loop;
    ls->listeners = lv_realloc(ls->listeners, (ls->nlisteners + 1) * sizeof *ls->listeners);
    ls->listeners[ls->nlisteners++] = (lv_io_t){.fd = listen_fd, .cb = on_accept, .data = ls};
    ls->resume_timer.cb = on_resume_timer;
    ls->resume_timer.data = ls;
    ls->listening = true;
    for (size_t i = 0; i < ls->nlisteners; i++)
        lv_io_start(loop, &ls->listeners[i]);
}

static void stop_listening(loop_state_t *ls)
{
    if (!ls->listening)
        return;
    ls->listening = false;
    lv_timer_stop(&ls->resume_timer);
    for (size_t i = 0; i < ls->nlisteners; i++) {
        lv_io_stop(ls->loop, &ls->listeners[i]);
        close(ls->listeners[i].fd);
        ls->listeners[i].fd = -1;
    }
}

void lv_http_server_drain(lv_http_server_t *s, lv_loop_t *loop)
{
    loop_state_t *ls = &s->loops[lv_loop_index(loop)];
    ls->draining = true;
    stop_listening(ls);
    lv_list_t *node = ls->conns.next;
    while (node != &ls->conns) {
        lv_http_conn_t *c = lv_list_entry(node, lv_http_conn_t, link);
        node = node->next;
        if (c->state == CONN_READ_HEAD && in_len(c) == 0 && !lv_buf_len(&c->out))
            conn_close(c);
        else
            c->keep_alive = false;
    }
}

void lv_http_server_close_all(lv_http_server_t *s, lv_loop_t *loop)
{
    loop_state_t *ls = &s->loops[lv_loop_index(loop)];
    stop_listening(ls);
    lv_list_t *node;
    while ((node = lv_list_first(&ls->conns)) != NULL)
        conn_close(lv_list_entry(node, lv_http_conn_t, link));
}

void lv_http_server_release(lv_http_server_t *s, lv_loop_t *loop)
{
    loop_state_t *ls = &s->loops[lv_loop_index(loop)];
    lv_http_server_close_all(s, loop);
    if (ls->conns_allocated == 0)
        lv_http_server_free(s);
    else
        s->release_pending = true;
}

void lv_http_server_on_too_large(lv_http_server_t *s, lv_http_too_large_cb cb)
{
    s->too_large = cb;
}

uint64_t lv_http_server_open_connections(const lv_http_server_t *s)
{
    return __atomic_load_n(&s->open, __ATOMIC_RELAXED);
}

void lv_http_server_stats(const lv_http_server_t *s, lv_http_server_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < s->nloops; i++) {
        const uint64_t *src = (const uint64_t *)&s->loops[i].stats;
        uint64_t *dst = (uint64_t *)out;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
            dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
}
