/* server.h: the HTTP/1.1 server side: listeners, connections, requests.
 *
 * Each event loop accepts on its own SO_REUSEPORT socket, so a connection
 * lives on one loop for its whole life. A connection reads and parses
 * requests (keep-alive, pipelining, chunked and Content-Length bodies,
 * Expect: 100-continue), hands each complete request to the handler, and
 * writes the answers in order. Answers produced while a batch of pipelined
 * requests is being processed are written together in one system call.
 *
 * One request per connection is in the handler at a time. A handler may
 * answer at once (inside the call) or later from its loop (after an origin
 * replied, a cache fill completed...). Either way it must eventually call
 * lv_http_respond exactly once; if the client has gone meanwhile, the answer
 * is discarded. This keeps the lifetime rule simple: an lv_http_req_t and
 * every slice in it stay valid until lv_http_respond returns, and not after.
 *
 * Limits (from lv_config_limits_t): connections, head and body size, header,
 * idle and body-read timeouts. Malformed requests get the parser's 4xx/5xx
 * and the connection is closed after the answer (lingering briefly so the
 * client can read it). */
#ifndef LV_HTTP_SERVER_H
#define LV_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/loop.h"
#include "core/slice.h"
#include "http/parser.h"

typedef struct lv_http_server lv_http_server_t;
typedef struct lv_http_conn lv_http_conn_t;
typedef struct lv_http_req lv_http_req_t;

/* Called on the connection's loop thread for each complete request. */
typedef void (*lv_http_handler_cb)(lv_http_req_t *req, void *ctx);

/* A request being handled. Owned by the connection; valid until
 * lv_http_respond returns. */
struct lv_http_req {
    lv_http_request_t head; /* slices into the connection's input buffer */
    lv_slice_t body;        /* complete body, de-chunked; empty if none */
    lv_loop_t *loop;
    uint64_t start_ns;      /* when the head was complete */
    bool is_head;           /* HEAD: the body of the answer is not sent */
    void *user;             /* free for the handler's per-request state */
    lv_http_conn_t *conn;   /* private */
};

/* Counters kept by the server, summed over loops by lv_http_server_stats. */
typedef struct {
    uint64_t connections_open;
    uint64_t connections_accepted;
    uint64_t requests;
    uint64_t bad_requests;       /* parser rejected the request */
    uint64_t header_too_large;   /* 414 / 431 */
    uint64_t body_too_large;     /* 413 */
    uint64_t header_timeouts;    /* 408 while reading the head */
    uint64_t body_timeouts;      /* 408 while reading the body */
    uint64_t idle_timeouts;      /* keep-alive connections closed idle */
    uint64_t write_timeouts;     /* client stopped reading answers */
    uint64_t max_connections_hits; /* accepting paused at max_connections */
} lv_http_server_stats_t;

/* Creates a server for nloops loops. limits is copied. */
lv_http_server_t *lv_http_server_new(const lv_config_limits_t *limits, unsigned nloops,
                                     lv_http_handler_cb handler, void *ctx);

/* Called when the server itself refuses a request's body as too large
 * (413, before the handler would see the request): head is the parsed
 * request head, valid only during the call; size is its Content-Length, or
 * the decoded bytes so far for a chunked body. A protocol whose client waits
 * for an outcome (a worker's /response) uses it to settle that outcome. */
typedef void (*lv_http_too_large_cb)(const lv_http_request_t *head, uint64_t size, void *ctx);

/* Sets the callback above (ctx is the server's handler ctx). Before attach. */
void lv_http_server_on_too_large(lv_http_server_t *s, lv_http_too_large_cb cb);

/* Frees the server. Every loop must have been stopped and drained. */
void lv_http_server_free(lv_http_server_t *s);

/* Opens a non-blocking listening socket with SO_REUSEPORT on addr.
 * Returns the fd, or -1 with a message in err. */
int lv_http_listen(const struct sockaddr *addr, socklen_t addr_len, char *err, size_t errlen);

/* Starts accepting on listen_fd in loop (on that loop's thread). The server
 * takes ownership of the fd. */
void lv_http_server_attach(lv_http_server_t *s, lv_loop_t *loop, int listen_fd);

/* On loop's thread: stops accepting, closes idle connections, and makes
 * busy ones close after their current answer. */
void lv_http_server_drain(lv_http_server_t *s, lv_loop_t *loop);

/* On loop's thread: closes every remaining connection and listener of this
 * loop at once (after the drain deadline). */
void lv_http_server_close_all(lv_http_server_t *s, lv_loop_t *loop);

/* On loop's thread, while it runs: closes every connection and listener
 * (as lv_http_server_close_all) and frees the server as soon as nothing
 * points at it any more: at once if no connection is left, else when the
 * last closed connection's memory is released (at the end of this loop
 * iteration, or when the handler answers a request it still holds). The
 * handler is not called again. For a server attached to this one loop only
 * (a per-worker listener, say), not one shared by several loops. Requests
 * the handler holds must still be answered; their answers are discarded.
 * `s` must not be used after this call. */
void lv_http_server_release(lv_http_server_t *s, lv_loop_t *loop);

/* Connections still open on all loops (any thread). */
uint64_t lv_http_server_open_connections(const lv_http_server_t *s);

/* Sums the counters of all loops (any thread; values may be a moment old). */
void lv_http_server_stats(const lv_http_server_t *s, lv_http_server_stats_t *out);

/* Sends the complete answer to req and ends it. header_lines holds zero or
 * more "Name: value\r\n" lines; the server adds Date, Server, Content-Length
 * and Connection. The body is not sent for HEAD requests and 1xx/204/304
 * statuses. After this returns, req must not be used. */
void lv_http_respond(lv_http_req_t *req, int status, lv_slice_t header_lines, lv_slice_t body);

/* The same with the header lines given in pieces (concatenated in order). */
void lv_http_respondv(lv_http_req_t *req, int status, const lv_slice_t *header_parts,
                      size_t nparts, lv_slice_t body);

/* Closes the connection after this answer even if keep-alive was possible. */
void lv_http_req_set_close(lv_http_req_t *req);

/* The client's address, and the same as text ("127.0.0.1", "::1"). */
const struct sockaddr_storage *lv_http_req_peer(const lv_http_req_t *req);
const char *lv_http_req_peer_ip(const lv_http_req_t *req);

/* True once the client has closed (or half-closed) its side or reset the
 * connection while the request was being handled. An answer is still
 * attempted; a reset connection discards it. */
bool lv_http_req_client_gone(const lv_http_req_t *req);

#endif
