/* client.h: HTTP/1.1 client connections to an origin, pooled per loop.
 *
 * An lv_upstream_t is one origin (address, limits). Each loop keeps its own
 * pool of keep-alive connections to it; the total number of connections over
 * all loops never exceeds max_conns. A request that finds no idle connection
 * and no room for a new one waits in its loop's FIFO, bounded by wait_ms;
 * a connection released on another loop while requests wait here is closed
 * there so this loop can open one (work-conserving without sharing sockets
 * between threads).
 *
 * The caller serialises the request (head and body) itself; the client
 * sends those bytes, parses the answer (Content-Length, chunked, or until
 * close; 1xx interim answers skipped) and calls back on the same loop with
 * the complete response. A request sent on a reused connection that the
 * origin had already closed is retried once on a fresh connection when the
 * caller marked it idempotent.
 *
 * Lifetimes: the lv_upstream_t lives for the whole run (freed after every
 * loop stopped). The result passed to the callback, and every slice in it,
 * is valid only during the callback. */
#ifndef LV_HTTP_CLIENT_H
#define LV_HTTP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/loop.h"
#include "http/parser.h"

typedef struct lv_upstream lv_upstream_t;

typedef enum {
    LV_UPSTREAM_OK = 0,
    LV_UPSTREAM_REFUSED,         /* could not connect (refused, unreachable): 502 */
    LV_UPSTREAM_CONNECT_TIMEOUT, /* connect took longer than connect_timeout: 504 */
    LV_UPSTREAM_TIMEOUT,         /* no complete answer within timeout: 504 */
    LV_UPSTREAM_BAD_RESPONSE,    /* unparseable or oversized answer: 502 */
    LV_UPSTREAM_CLOSED,          /* origin closed before the answer was complete: 502 */
    LV_UPSTREAM_NO_CONNECTION,   /* waited wait_ms for a free connection: 503 */
    LV_UPSTREAM_PENDING_FULL,    /* max_pending requests already wait for a connection: 503 */
} lv_upstream_status_t;

typedef struct {
    lv_upstream_status_t status;
    const lv_http_response_t *head; /* NULL unless status is OK */
    lv_slice_t body;                /* de-chunked */
} lv_upstream_result_t;

typedef void (*lv_upstream_cb)(const lv_upstream_result_t *res, void *arg);

typedef struct {
    const char *name;            /* for logs */
    const struct sockaddr *addr; /* copied */
    socklen_t addr_len;
    int max_conns;
    int max_pending;             /* requests waiting for a connection, over all loops */
    int64_t connect_timeout_ms;
    int64_t timeout_ms;          /* from sending to the complete answer */
    uint64_t max_response_bytes; /* head + body */
    size_t max_header_bytes;
} lv_upstream_config_t;

/* Counters, summed over loops (any thread). */
typedef struct {
    uint64_t requests, responses, retries;
    uint64_t refused, connect_timeouts, timeouts, bad_responses, closed, no_connection, pending_full;
    uint64_t open_connections, waiting;
} lv_upstream_stats_t;

/* Creates an origin for nloops loops. */
lv_upstream_t *lv_upstream_new(const lv_upstream_config_t *cfg, unsigned nloops);

/* Closes the connections of one loop (on that loop's thread, at shutdown). */
void lv_upstream_close_loop(lv_upstream_t *u, lv_loop_t *loop);

/* Frees the origin; every loop's connections must be closed. */
void lv_upstream_free(lv_upstream_t *u);

/* Sends a serialised request (its bytes are taken from *request, which is
 * left empty). is_head tells the parser the answer has no body; idempotent
 * allows one retry on a fresh connection when a reused one was dead.
 * wait_ms bounds the wait for a connection. cb runs exactly once, on loop. */
void lv_upstream_send(lv_upstream_t *u, lv_loop_t *loop, lv_buf_t *request, bool is_head,
                      bool idempotent, int64_t wait_ms, lv_upstream_cb cb, void *arg);

void lv_upstream_stats(const lv_upstream_t *u, lv_upstream_stats_t *out);

/* The HTTP status the gateway answers for a failed status (502/503/504). */
int lv_upstream_status_code(lv_upstream_status_t st);

/* A short name for the status, for logs and metrics labels. */
const char *lv_upstream_status_name(lv_upstream_status_t st);

#endif
