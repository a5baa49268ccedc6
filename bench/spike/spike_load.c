/* spike_load.c: an open-loop HTTP/1.1 load generator for the spike test.
 *
 *     spike_load --port 9200 --route flood,/flood/item,1500,5,0.5,15 \
 *                --route calm,/calm/item,50,0,0,22 --pid LEVEE_PID \
 *                --csv requests.csv --samples samples.csv
 *
 * Each --route NAME,PATH,RATE,START,RAMP,HOLD sends GET PATH at RATE
 * requests per second, starting START seconds into the run, rising linearly
 * from 0 to RATE over RAMP seconds (0: at once), then holding RATE for HOLD
 * seconds. Arrivals are evenly spaced on that curve.
 *
 * Open loop: a request is sent at its scheduled time whether or not earlier
 * ones were answered, on an idle keep-alive connection of its route if there
 * is one, else on a new connection (up to --max-conns; past that it waits in
 * the route's backlog, and the report says so). A slow server therefore
 * faces the full offered rate, as it would from a crowd of independent
 * clients, instead of the politely reduced rate closed-loop tools (wrk) send
 * once answers slow down. Latency is measured from the scheduled time, so a
 * late send or a wait for a connection counts against the server and no
 * slow answer hides the ones that would have followed it.
 *
 * One thread, epoll, level-triggered, non-blocking sockets; a timerfd armed
 * at the next scheduled send wakes the loop on time. Every answer is parsed
 * (Content-Length, chunked, or until close; 1xx skipped) and classified:
 *   ok                 2xx
 *   429, 503           with a Retry-After header (the shedding contract)
 *   429-no-retry-after, 503-no-retry-after, 5xx (any other), other-status
 *   reset              ECONNRESET/EPIPE while connecting, writing or reading
 *   refused            ECONNREFUSED on connect
 *   connect-error      any other connect failure (e.g. no ephemeral port)
 *   closed             the server closed before a complete answer
 *   bad-response       unparseable, oversized, or unsolicited bytes
 *   timeout            no answer --timeout seconds after the scheduled time
 *                      (also requests still unanswered when the run ends)
 * Everything but ok, 429 and 503 is an error.
 *
 * Output: a line per second on stderr (per route: offered, ok, 429, 503,
 * errors, p99 of the ok answers completed that second; open connections;
 * RSS of --pid), a summary on stdout (from log-linear latency histograms,
 * ~1.6% resolution), and optionally every request in --csv
 * (route,intended_ms,sent_ms,done_ms,status,outcome; times from the start
 * of the run) for exact windowed analysis by report.py.
 *
 * Every 250 ms it samples the server under test (--pid: VmRSS and CPU
 * time), the origin (--origin-pid: CPU time), itself, and how busy CPUs 0
 * and 1 were (/proc/stat), and writes them to --samples (t_s, rss_kb, then
 * cumulative clock ticks: levee_cpu, origin_cpu, load_cpu, cpu0_busy,
 * cpu0_total, cpu1_busy, cpu1_total). With the server pinned to CPU 0 and
 * everything else here on CPU 1, what the CPUs did beyond these processes
 * is other work on the machine: noise that the report shows second by
 * second next to the latencies.
 *
 * Bounds: at most MAX_ROUTES routes and MAX_REQUESTS scheduled requests; the
 * run ends at the last scheduled send plus --timeout at the latest; answers
 * larger than MAX_ANSWER_BYTES are bad responses. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUTES 32
#define MAX_REQUESTS 4000000
#define MAX_ANSWER_BYTES (1024 * 1024)
#define MAX_HEAD_BYTES (64 * 1024)
#define TICK_NS 10000000LL         /* housekeeping: timeouts, per-second lines */
#define SAMPLE_EVERY_NS 250000000LL
#define NS_PER_S 1000000000LL
#define SENDS_PER_TURN 4096        /* keeps I/O flowing if sends fall behind */

/* ---- outcomes ---- */

typedef enum {
    OUT_OK,
    OUT_429,
    OUT_503,
    OUT_429_NO_RA,
    OUT_503_NO_RA,
    OUT_5XX,
    OUT_OTHER_STATUS,
    OUT_RESET,
    OUT_REFUSED,
    OUT_CONNECT,
    OUT_CLOSED,
    OUT_BAD,
    OUT_TIMEOUT,
    NUM_OUTCOMES
} outcome_t;

static const char *const outcome_names[NUM_OUTCOMES] = {
    "ok", "429", "503", "429-no-retry-after", "503-no-retry-after", "5xx", "other-status",
    "reset", "refused", "connect-error", "closed", "bad-response", "timeout",
};

static bool is_error(outcome_t o) { return o > OUT_503; }

/* ---- log-linear latency histogram, microseconds ---- */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
#define HIST_MAX_EXP 40 /* 2^40 us: 12 days, far past any timeout */
#define HIST_BUCKETS (HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_HALF)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_us;
} hist_t;

/* Values below HIST_SUB are exact; above, each power of two is cut into
 * HIST_HALF equal buckets, so a bucket is at most 1/64 of its value wide. */
static size_t hist_index(uint64_t us)
{
    if (us < HIST_SUB)
        return (size_t)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us);
    if (e > HIST_MAX_EXP) {
        e = HIST_MAX_EXP;
        us = (2ull << HIST_MAX_EXP) - 1;
    }
    unsigned shift = e - (HIST_SUB_BITS - 1);
    return HIST_SUB + (e - HIST_SUB_BITS) * HIST_HALF + (size_t)((us >> shift) - HIST_HALF);
}

/* The highest value that lands in bucket `i`. */
static uint64_t hist_bucket_top(size_t i)
{
    if (i < HIST_SUB)
        return i;
    size_t j = i - HIST_SUB;
    unsigned e = HIST_SUB_BITS + (unsigned)(j / HIST_HALF);
    uint64_t mantissa = HIST_HALF + j % HIST_HALF;
    unsigned shift = e - (HIST_SUB_BITS - 1);
    return ((mantissa + 1) << shift) - 1;
}

static void hist_add(hist_t *h, uint64_t us)
{
    h->counts[hist_index(us)]++;
    h->total++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The value at quantile q (0..1): the top of the bucket holding it, capped
 * at the exact maximum. */
static uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t top = hist_bucket_top(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}

/* ---- routes, requests, connections ---- */

typedef struct {
    int64_t intended_ns; /* scheduled send time, from the start of the run */
    int64_t sent_ns;     /* when its last byte was written, -1 if never */
    int64_t done_ns;     /* when it was answered or failed */
    uint16_t status;
    uint8_t route;
    uint8_t outcome;
} request_t;

typedef struct conn conn_t;

typedef struct {
    char name[32];
    char *request; /* the bytes of one GET, sent for every request */
    size_t request_len;
    double rate, start_s, ramp_s, hold_s;
    uint64_t total;      /* requests it will send */
    uint64_t first;      /* index of its first request in `requests` */
    uint64_t next;       /* how many have been scheduled so far */
    conn_t *idle;        /* idle keep-alive connections, doubly linked */
    uint64_t *backlog;   /* ring of request indices waiting for a connection */
    uint64_t backlog_head, backlog_len, backlog_peak;
    /* statistics */
    uint64_t outcomes[NUM_OUTCOMES];
    hist_t ok_latency;
    uint64_t sec_offered, sec_outcomes[NUM_OUTCOMES];
    hist_t sec_ok_latency;
} route_t;

typedef enum { C_FREE, C_CONNECTING, C_SENDING, C_READING, C_IDLE } conn_state_t;

struct conn {
    int fd;
    conn_state_t state;
    uint32_t events; /* what epoll watches for it */
    int route;
    int64_t req; /* index of the request it carries, -1 if none */
    size_t sent; /* bytes of the request written so far */
    char *buf;   /* the answer read so far */
    size_t len, cap;
    conn_t *prev, *next; /* in its route's idle list */
};

static route_t routes[MAX_ROUTES];
static int num_routes;
static request_t *requests;
static uint64_t num_requests;
static conn_t *conns;
static int *free_slots;
static int num_free;
static int max_conns = 8000;
static int open_conns, peak_conns;
static uint64_t opened_total, connect_blocked; /* new connections; sends that had to wait for one */
static int epfd, timer_fd;
static struct sockaddr_in server;
static char host_header[64];
static int64_t t0_ns; /* CLOCK_MONOTONIC at the start of the run */
static int64_t timeout_ns = 10 * NS_PER_S;
static uint64_t finished;
static bool quiet;

/* Sampling every SAMPLE_EVERY_NS: the server under test (--pid), the
 * origin (--origin-pid), this process and CPUs 0 and 1. */
static int watch_pid;
static int origin_pid;
typedef struct {
    double t_s;
    long rss_kb;
    /* Cumulative clock ticks (USER_HZ): CPU time of each process (-1 when
     * not watched or gone), busy and total time of CPUs 0 and 1. */
    long long levee_cpu, origin_cpu, load_cpu;
    long long cpu_busy[2], cpu_total[2];
} sample_t;
static sample_t *samples;
static size_t num_samples, cap_samples;
static long rss_last_kb = -1, rss_peak_kb = -1;
static bool watched_gone;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t now_ns(void) { return mono_ns() - t0_ns; }

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spike_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- the schedule ---- */

/* Requests a route has sent `t` seconds after its start: the area under a
 * rate that climbs linearly over ramp_s then stays flat. */
static double sent_by(const route_t *r, double t)
{
    if (t <= 0)
        return 0;
    if (t < r->ramp_s)
        return r->rate * t * t / (2 * r->ramp_s);
    double hold = t - r->ramp_s;
    if (hold > r->hold_s)
        hold = r->hold_s;
    return r->rate * r->ramp_s / 2 + r->rate * hold;
}

/* When the route's request number k is due: the inverse of sent_by. */
static int64_t due_ns(const route_t *r, uint64_t k)
{
    double ramp_count = r->rate * r->ramp_s / 2, t;
    if ((double)k < ramp_count)
        t = sqrt(2 * r->ramp_s * (double)k / r->rate);
    else
        t = r->ramp_s + ((double)k - ramp_count) / r->rate;
    return (int64_t)((r->start_s + t) * 1e9);
}

static int64_t route_end_ns(const route_t *r)
{
    return (int64_t)((r->start_s + r->ramp_s + r->hold_s) * 1e9);
}

/* ---- statistics ---- */

static void record(uint64_t k, outcome_t outcome, int status)
{
    request_t *q = &requests[k];
    route_t *r = &routes[q->route];
    q->done_ns = now_ns();
    q->outcome = (uint8_t)outcome;
    q->status = (uint16_t)status;
    r->outcomes[outcome]++;
    r->sec_outcomes[outcome]++;
    if (outcome == OUT_OK) {
        int64_t lat = q->done_ns - q->intended_ns;
        uint64_t us = lat > 0 ? (uint64_t)(lat / 1000) : 0;
        hist_add(&r->ok_latency, us);
        hist_add(&r->sec_ok_latency, us);
    }
    finished++;
}

static outcome_t outcome_of_status(int status, bool retry_after)
{
    if (status >= 200 && status < 300)
        return OUT_OK;
    if (status == 429)
        return retry_after ? OUT_429 : OUT_429_NO_RA;
    if (status == 503)
        return retry_after ? OUT_503 : OUT_503_NO_RA;
    if (status >= 500)
        return OUT_5XX;
    return OUT_OTHER_STATUS;
}

static outcome_t outcome_of_errno(int err, bool connecting)
{
    switch (err) {
    case ECONNRESET:
    case EPIPE:
        return OUT_RESET;
    case ECONNREFUSED:
        return OUT_REFUSED;
    default:
        return connecting ? OUT_CONNECT : OUT_CLOSED;
    }
}

/* ---- the answer parser ---- */

/* Finds `name` (lower case) at the start of a header line, case-insensitively. */
static bool header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static bool contains_token(const char *v, size_t len, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(v + i, token, n) == 0)
            return true;
    return false;
}

typedef struct {
    int status;
    bool retry_after;
    bool keep_alive;
    size_t consumed; /* bytes of the buffer the answer took */
} answer_t;

/* Parses a chunked body starting at p; returns its length including the
 * final CRLF after the trailers, 0 if incomplete, -1 if malformed. */
static long chunked_length(const char *p, size_t len)
{
    size_t at = 0;
    for (;;) {
        const char *eol = memmem(p + at, len - at, "\r\n", 2);
        if (!eol)
            return len - at > 64 ? -1 : 0;
        size_t size = 0, digits = 0;
        const char *c = p + at;
        for (; c < eol; c++, digits++) {
            int v = (*c >= '0' && *c <= '9') ? *c - '0'
                    : (*c >= 'a' && *c <= 'f') ? *c - 'a' + 10
                    : (*c >= 'A' && *c <= 'F') ? *c - 'A' + 10 : -1;
            if (v < 0)
                break;
            if (size > MAX_ANSWER_BYTES)
                return -1;
            size = size * 16 + (size_t)v;
        }
        if (digits == 0 || (c < eol && *c != ';' && *c != ' '))
            return -1;
        at = (size_t)(eol - p) + 2;
        if (size == 0) {
            /* Trailers, then an empty line. */
            for (;;) {
                const char *tl = memmem(p + at, len - at, "\r\n", 2);
                if (!tl)
                    return 0;
                bool empty = tl == p + at;
                at = (size_t)(tl - p) + 2;
                if (empty)
                    return (long)at;
            }
        }
        if (len - at < size + 2)
            return 0;
        if (memcmp(p + at + size, "\r\n", 2) != 0)
            return -1;
        at += size + 2;
    }
}

/* Returns 1 with `a` filled when buf holds a complete answer, 0 when more
 * bytes are needed (at eof: the server closed too early), -1 when it is not
 * HTTP. `eof`: the server has closed, which ends a body without a length. */
static int parse_answer(const char *buf, size_t len, bool eof, answer_t *a)
{
    size_t start = 0;
    for (;;) {
        const char *p = buf + start;
        size_t plen = len - start;
        const char *end = memmem(p, plen, "\r\n\r\n", 4);
        if (!end)
            return plen > MAX_HEAD_BYTES ? -1 : 0;
        size_t head_len = (size_t)(end - p) + 4;
        if (head_len < 14 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
            return -1;
        if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
            (p[12] != ' ' && p[12] != '\r'))
            return -1;
        int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        bool http10 = p[7] == '0';
        a->status = status;
        a->retry_after = false;
        a->keep_alive = !http10;
        long content_length = -1;
        bool chunked = false;
        const char *line = memmem(p, head_len, "\r\n", 2) + 2;
        while (line < end + 2) {
            const char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
            size_t ll = (size_t)(eol - line);
            const char *colon = memchr(line, ':', ll);
            if (!colon || colon == line)
                return -1;
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(eol - v);
            if (header_is(line, ll, "content-length")) {
                long n = 0;
                if (vl == 0 || vl > 9)
                    return -1;
                for (size_t i = 0; i < vl; i++) {
                    if (v[i] < '0' || v[i] > '9')
                        return -1;
                    n = n * 10 + (v[i] - '0');
                }
                if (content_length >= 0 && content_length != n)
                    return -1;
                content_length = n;
            } else if (header_is(line, ll, "transfer-encoding")) {
                chunked = contains_token(v, vl, "chunked");
            } else if (header_is(line, ll, "connection")) {
                if (contains_token(v, vl, "close"))
                    a->keep_alive = false;
                else if (http10 && contains_token(v, vl, "keep-alive"))
                    a->keep_alive = true;
            } else if (header_is(line, ll, "retry-after")) {
                a->retry_after = vl > 0;
            }
            line = eol + 2;
        }
        if (status >= 100 && status < 200 && status != 101) {
            start += head_len; /* an interim answer; the real one follows */
            continue;
        }
        if (content_length > MAX_ANSWER_BYTES)
            return -1;
        size_t total;
        if (status == 204 || status == 304 || status == 101) {
            total = head_len;
        } else if (chunked) {
            long body = chunked_length(p + head_len, plen - head_len);
            if (body < 0)
                return -1;
            if (body == 0)
                return 0;
            total = head_len + (size_t)body;
        } else if (content_length >= 0) {
            total = head_len + (size_t)content_length;
            if (plen < total)
                return 0;
        } else {
            /* Body until the server closes. */
            a->keep_alive = false;
            if (!eof)
                return 0;
            total = plen;
        }
        a->consumed = start + total;
        return 1;
    }
}

/* ---- connections ---- */

static void idle_push(route_t *r, conn_t *c)
{
    c->state = C_IDLE;
    c->prev = NULL;
    c->next = r->idle;
    if (r->idle)
        r->idle->prev = c;
    r->idle = c;
}

static void idle_remove(route_t *r, conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void set_events(conn_t *c, uint32_t events)
{
    if (c->events == events)
        return;
    c->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void start_on(conn_t *c, uint64_t k);
static void serve_backlogs(void);

static void close_conn(conn_t *c)
{
    if (c->state == C_IDLE)
        idle_remove(&routes[c->route], c);
    close(c->fd);
    c->fd = -1;
    c->state = C_FREE;
    c->req = -1;
    c->len = 0;
    free_slots[num_free++] = (int)(c - conns);
    open_conns--;
}

/* The connection's request failed: record why and drop the connection. */
static void fail(conn_t *c, outcome_t outcome)
{
    if (c->req >= 0)
        record((uint64_t)c->req, outcome, 0);
    close_conn(c);
    serve_backlogs();
}

/* The next request waiting in the route's backlog, or -1. */
static int64_t backlog_pop(route_t *r)
{
    if (r->backlog_len == 0)
        return -1;
    uint64_t k = r->backlog[r->backlog_head];
    r->backlog_head = (r->backlog_head + 1) % r->total;
    r->backlog_len--;
    return (int64_t)k;
}

/* A connection finished a request and may carry another. */
static void reuse_conn(conn_t *c)
{
    route_t *r = &routes[c->route];
    c->req = -1;
    c->len = 0;
    int64_t k = backlog_pop(r);
    if (k >= 0) {
        start_on(c, (uint64_t)k);
    } else {
        idle_push(r, c);
        set_events(c, EPOLLIN | EPOLLRDHUP);
    }
}

static void send_request(conn_t *c)
{
    route_t *r = &routes[c->route];
    while (c->sent < r->request_len) {
        ssize_t n = send(c->fd, r->request + c->sent, r->request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->state = C_SENDING;
            set_events(c, EPOLLOUT);
            return;
        }
        if (n <= 0) {
            fail(c, outcome_of_errno(n < 0 ? errno : EPIPE, false));
            return;
        }
        c->sent += (size_t)n;
    }
    requests[c->req].sent_ns = now_ns();
    c->state = C_READING;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void start_on(conn_t *c, uint64_t k)
{
    c->req = (int64_t)k;
    c->sent = 0;
    c->len = 0;
    c->state = C_SENDING;
    send_request(c);
}

/* Opens a new connection for request k; false when no slot is free even
 * after closing an idle connection of any route. */
static bool open_for(route_t *r, uint64_t k)
{
    for (int i = 0; i < num_routes && num_free == 0; i++)
        if (routes[i].idle)
            close_conn(routes[i].idle);
    if (num_free == 0)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        record(k, OUT_CONNECT, 0);
        return true;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_t *c = &conns[free_slots[--num_free]];
    c->fd = fd;
    c->route = (int)(r - routes);
    c->req = (int64_t)k;
    c->sent = 0;
    c->len = 0;
    c->state = C_CONNECTING;
    c->events = EPOLLOUT;
    open_conns++;
    opened_total++;
    if (open_conns > peak_conns)
        peak_conns = open_conns;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
        /* Not fail(): it would serve the backlog from here, recursing once
         * per waiting request when every connect fails at once. */
        record(k, outcome_of_errno(errno, true), 0);
        c->req = -1;
        close_conn(c);
    }
    return true;
}

/* Request k is due: send it on an idle connection, a new one, or queue it. */
static void dispatch(route_t *r, uint64_t k)
{
    if (r->idle) {
        conn_t *c = r->idle;
        idle_remove(r, c);
        start_on(c, k);
        return;
    }
    if (r->backlog_len == 0 && open_for(r, k))
        return;
    connect_blocked++;
    r->backlog[(r->backlog_head + r->backlog_len) % r->total] = k;
    if (++r->backlog_len > r->backlog_peak)
        r->backlog_peak = r->backlog_len;
}

/* Connection slots freed: give them to requests waiting for one. */
static void serve_backlogs(void)
{
    bool progress = true;
    while (num_free > 0 && progress) {
        progress = false;
        for (int i = 0; i < num_routes && num_free > 0; i++) {
            int64_t k = backlog_pop(&routes[i]);
            if (k >= 0) {
                open_for(&routes[i], (uint64_t)k);
                progress = true;
            }
        }
    }
}

static void on_readable(conn_t *c)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            if (c->cap >= MAX_ANSWER_BYTES + MAX_HEAD_BYTES) {
                fail(c, OUT_BAD);
                return;
            }
            c->cap = c->cap ? c->cap * 2 : 16384;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf)
                die("out of memory");
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        bool eof = n <= 0;
        if (c->state == C_IDLE) {
            /* The server closed (or spoke on) a connection with no request
             * on it: normal keep-alive housekeeping, not an error. */
            close_conn(c);
            serve_backlogs();
            return;
        }
        if (n < 0) {
            fail(c, outcome_of_errno(errno, false));
            return;
        }
        c->len += (size_t)n;
        answer_t a;
        int got = parse_answer(c->buf, c->len, eof, &a);
        if (got < 0 || (got == 1 && a.consumed != c->len)) {
            fail(c, eof && c->len == 0 ? OUT_CLOSED : OUT_BAD);
            return;
        }
        if (got == 0 && eof) {
            fail(c, OUT_CLOSED);
            return;
        }
        if (got == 1) {
            record((uint64_t)c->req, outcome_of_status(a.status, a.retry_after), a.status);
            if (a.keep_alive && !eof) {
                reuse_conn(c);
            } else {
                c->req = -1;
                close_conn(c);
                serve_backlogs();
            }
            return;
        }
    }
}

static void on_event(conn_t *c, uint32_t events)
{
    switch (c->state) {
    case C_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            fail(c, outcome_of_errno(err, true));
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        c->state = C_SENDING;
        send_request(c);
        return;
    }
    case C_SENDING:
        if (events & EPOLLERR) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            fail(c, outcome_of_errno(err ? err : ECONNRESET, false));
            return;
        }
        send_request(c);
        return;
    case C_READING:
    case C_IDLE:
        on_readable(c);
        return;
    case C_FREE:
        return;
    }
}

/* ---- housekeeping ---- */

static void expire(int64_t now)
{
    for (int i = 0; i < max_conns; i++) {
        conn_t *c = &conns[i];
        if (c->state != C_FREE && c->state != C_IDLE && c->req >= 0 &&
            now - requests[c->req].intended_ns > timeout_ns)
            fail(c, OUT_TIMEOUT);
    }
    for (int i = 0; i < num_routes; i++) {
        route_t *r = &routes[i];
        while (r->backlog_len > 0 && now - requests[r->backlog[r->backlog_head]].intended_ns > timeout_ns)
            record((uint64_t)backlog_pop(r), OUT_TIMEOUT, 0);
    }
}

/* utime + stime of a process from /proc/PID/stat, in clock ticks, or -1. */
static long long process_cpu(const char *stat_path)
{
    FILE *f = fopen(stat_path, "r");
    if (!f)
        return -1;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are counted
     * from the last ')'. utime and stime are fields 14 and 15; the state,
     * field 3, comes right after the ')'. */
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    long long utime, stime;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

/* Busy and total ticks of CPUs 0 and 1 from /proc/stat (busy: user, nice,
 * system, irq, softirq, steal; total adds idle and iowait). */
static void cpu_ticks(long long busy[2], long long total[2])
{
    busy[0] = busy[1] = total[0] = total[1] = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int cpu;
        long long v[8] = {0};
        if (sscanf(line, "cpu%d %lld %lld %lld %lld %lld %lld %lld %lld", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) == 9 && cpu >= 0 && cpu < 2) {
            busy[cpu] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            total[cpu] = busy[cpu] + v[3] + v[4];
        }
    }
    fclose(f);
}

static void take_sample(int64_t now)
{
    sample_t smp = {.t_s = (double)now / 1e9, .rss_kb = -1, .levee_cpu = -1, .origin_cpu = -1};
    char path[64];
    if (watch_pid && !watched_gone) {
        snprintf(path, sizeof path, "/proc/%d/status", watch_pid);
        FILE *f = fopen(path, "r");
        if (f) {
            char line[256];
            while (fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld kB", &smp.rss_kb) == 1)
                    break;
            fclose(f);
        }
        snprintf(path, sizeof path, "/proc/%d/stat", watch_pid);
        smp.levee_cpu = process_cpu(path);
        if (smp.rss_kb < 0) {
            watched_gone = true;
            fprintf(stderr, "spike_load: process %d is gone\n", watch_pid);
        }
        rss_last_kb = smp.rss_kb;
        if (smp.rss_kb > rss_peak_kb)
            rss_peak_kb = smp.rss_kb;
    }
    if (origin_pid) {
        snprintf(path, sizeof path, "/proc/%d/stat", origin_pid);
        smp.origin_cpu = process_cpu(path);
    }
    smp.load_cpu = process_cpu("/proc/self/stat");
    cpu_ticks(smp.cpu_busy, smp.cpu_total);
    if (num_samples == cap_samples) {
        cap_samples = cap_samples ? cap_samples * 2 : 1024;
        samples = realloc(samples, cap_samples * sizeof *samples);
        if (!samples)
            die("out of memory");
    }
    samples[num_samples++] = smp;
}

static void print_second(int64_t second)
{
    if (!quiet) {
        fprintf(stderr, "[%4llds]", (long long)second);
        for (int i = 0; i < num_routes; i++) {
            route_t *r = &routes[i];
            uint64_t errors = 0;
            for (int o = OUT_429_NO_RA; o < NUM_OUTCOMES; o++)
                errors += r->sec_outcomes[o];
            fprintf(stderr, " %s: sent %llu ok %llu 429 %llu 503 %llu err %llu p99 %.1fms |", r->name,
                    (unsigned long long)r->sec_offered, (unsigned long long)r->sec_outcomes[OUT_OK],
                    (unsigned long long)r->sec_outcomes[OUT_429], (unsigned long long)r->sec_outcomes[OUT_503],
                    (unsigned long long)errors, (double)hist_quantile(&r->sec_ok_latency, 0.99) / 1000);
        }
        fprintf(stderr, " conns %d", open_conns);
        if (watch_pid)
            fprintf(stderr, " rss %ldkB", rss_last_kb);
        fputc('\n', stderr);
    }
    for (int i = 0; i < num_routes; i++) {
        route_t *r = &routes[i];
        r->sec_offered = 0;
        memset(r->sec_outcomes, 0, sizeof r->sec_outcomes);
        memset(&r->sec_ok_latency, 0, sizeof r->sec_ok_latency);
    }
}

/* ---- setup and output ---- */

static double parse_number(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0)
        die("%s: not a number >= 0: '%s'", what, s);
    return v;
}

/* NAME,PATH,RATE,START,RAMP,HOLD */
static void add_route(const char *spec)
{
    if (num_routes == MAX_ROUTES)
        die("at most %d routes", MAX_ROUTES);
    char *copy = strdup(spec), *fields[6], *save = NULL;
    if (!copy)
        die("out of memory");
    int n = 0;
    for (char *f = strtok_r(copy, ",", &save); f && n < 6; f = strtok_r(NULL, ",", &save))
        fields[n++] = f;
    if (n != 6 || strtok_r(NULL, ",", &save))
        die("--route wants NAME,PATH,RATE,START,RAMP,HOLD, got '%s'", spec);
    route_t *r = &routes[num_routes++];
    if (strlen(fields[0]) >= sizeof r->name)
        die("route name too long: '%s'", fields[0]);
    strcpy(r->name, fields[0]);
    if (fields[1][0] != '/' || strpbrk(fields[1], " \r\n") || strlen(fields[1]) > 2000)
        die("route path must start with / and have no spaces: '%s'", fields[1]);
    r->rate = parse_number(fields[2], "RATE");
    r->start_s = parse_number(fields[3], "START");
    r->ramp_s = parse_number(fields[4], "RAMP");
    r->hold_s = parse_number(fields[5], "HOLD");
    if (r->rate <= 0 || r->rate > 1e6 || r->start_s > 3600 || r->ramp_s > 3600 || r->hold_s > 3600)
        die("route %s: RATE must be in (0, 1e6], times at most 3600 s", r->name);
    size_t cap = strlen(fields[1]) + 256;
    r->request = xcalloc(cap, 1);
    r->request_len = (size_t)snprintf(r->request, cap,
                                      "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: spike_load\r\nAccept: */*\r\n\r\n",
                                      fields[1], host_header);
    free(copy);
}

static void write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fprintf(f, "route,intended_ms,sent_ms,done_ms,status,outcome\n");
    for (uint64_t k = 0; k < num_requests; k++) {
        const request_t *q = &requests[k];
        fprintf(f, "%s,%.3f,", routes[q->route].name, (double)q->intended_ns / 1e6);
        if (q->sent_ns >= 0)
            fprintf(f, "%.3f", (double)q->sent_ns / 1e6);
        fprintf(f, ",%.3f,%u,%s\n", (double)q->done_ns / 1e6, q->status, outcome_names[q->outcome]);
    }
    if (fclose(f) != 0)
        die("cannot write %s", path);
}

static void write_samples(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fprintf(f, "t_s,rss_kb,levee_cpu,origin_cpu,load_cpu,cpu0_busy,cpu0_total,cpu1_busy,cpu1_total\n");
    for (size_t i = 0; i < num_samples; i++) {
        const sample_t *m = &samples[i];
        fprintf(f, "%.3f,%ld,%lld,%lld,%lld,%lld,%lld,%lld,%lld\n", m->t_s, m->rss_kb, m->levee_cpu, m->origin_cpu,
                m->load_cpu, m->cpu_busy[0], m->cpu_total[0], m->cpu_busy[1], m->cpu_total[1]);
    }
    if (fclose(f) != 0)
        die("cannot write %s", path);
}

static void print_summary(double elapsed_s)
{
    printf("spike_load: %.1f s, %llu requests, %llu connections opened, peak %d open", elapsed_s,
           (unsigned long long)num_requests, (unsigned long long)opened_total, peak_conns);
    if (connect_blocked)
        printf(", %llu requests waited for a connection slot (--max-conns %d)",
               (unsigned long long)connect_blocked, max_conns);
    printf("\n");
    for (int i = 0; i < num_routes; i++) {
        route_t *r = &routes[i];
        double active = r->ramp_s / 2 + r->hold_s;
        printf("route %s: %llu requests over %.1f s (%.0f/s offered)", r->name, (unsigned long long)r->total,
               r->ramp_s + r->hold_s, active > 0 ? (double)r->total / active : 0.0);
        printf("; ok %llu, p50 %.1f ms, p99 %.1f ms, max %.1f ms", (unsigned long long)r->outcomes[OUT_OK],
               (double)hist_quantile(&r->ok_latency, 0.5) / 1000, (double)hist_quantile(&r->ok_latency, 0.99) / 1000,
               (double)r->ok_latency.max_us / 1000);
        for (int o = OUT_429; o < NUM_OUTCOMES; o++)
            if (r->outcomes[o] || o <= OUT_503)
                printf("; %s %llu", outcome_names[o], (unsigned long long)r->outcomes[o]);
        uint64_t errors = 0;
        for (int o = 0; o < NUM_OUTCOMES; o++)
            if (is_error((outcome_t)o))
                errors += r->outcomes[o];
        printf("; errors %llu\n", (unsigned long long)errors);
    }
    if (watch_pid)
        printf("rss of %d: peak %ld kB, last %ld kB%s\n", watch_pid, rss_peak_kb, rss_last_kb,
               watched_gone ? " (the process went away during the run)" : "");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: spike_load --port PORT --route NAME,PATH,RATE,START,RAMP,HOLD [--route ...]\n"
            "                  [--host 127.0.0.1] [--timeout 10] [--max-conns 8000] [--pid PID]\n"
            "                  [--origin-pid PID] [--csv FILE] [--samples FILE] [--quiet]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'h'},  {"port", required_argument, 0, 'p'},
        {"route", required_argument, 0, 'r'}, {"timeout", required_argument, 0, 't'},
        {"max-conns", required_argument, 0, 'm'}, {"pid", required_argument, 0, 'P'},
        {"csv", required_argument, 0, 'c'},   {"samples", required_argument, 0, 's'},
        {"origin-pid", required_argument, 0, 'O'},
        {"quiet", no_argument, 0, 'q'},       {0, 0, 0, 0},
    };
    const char *host = "127.0.0.1", *csv_path = NULL, *samples_path = NULL;
    const char *route_specs[MAX_ROUTES];
    int num_specs = 0, port = 0;
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = (int)parse_number(optarg, "--port"); break;
        case 'r':
            if (num_specs == MAX_ROUTES)
                die("at most %d routes", MAX_ROUTES);
            route_specs[num_specs++] = optarg;
            break;
        case 't': timeout_ns = (int64_t)(parse_number(optarg, "--timeout") * 1e9); break;
        case 'm': max_conns = (int)parse_number(optarg, "--max-conns"); break;
        case 'P': watch_pid = (int)parse_number(optarg, "--pid"); break;
        case 'c': csv_path = optarg; break;
        case 's': samples_path = optarg; break;
        case 'O': origin_pid = (int)parse_number(optarg, "--origin-pid"); break;
        case 'q': quiet = true; break;
        default: usage();
        }
    }
    if (optind != argc || port < 1 || port > 65535 || num_specs == 0)
        usage();
    if (max_conns < 1 || max_conns > 1000000 || timeout_ns <= 0)
        die("--max-conns must be 1..1000000 and --timeout more than 0");
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
        die("--host must be an IPv4 address: '%s'", host);
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    for (int i = 0; i < num_specs; i++)
        add_route(route_specs[i]);

    /* The schedule, laid out in full so every request has a record. */
    int64_t last_due = 0;
    for (int i = 0; i < num_routes; i++) {
        route_t *r = &routes[i];
        r->total = (uint64_t)floor(sent_by(r, r->ramp_s + r->hold_s) + 1e-9);
        r->first = num_requests;
        num_requests += r->total;
        if (num_requests > MAX_REQUESTS)
            die("more than %d requests scheduled", MAX_REQUESTS);
        r->backlog = xcalloc(r->total, sizeof *r->backlog);
        if (route_end_ns(r) > last_due)
            last_due = route_end_ns(r);
    }
    requests = xcalloc(num_requests, sizeof *requests);
    for (int i = 0; i < num_routes; i++)
        for (uint64_t k = 0; k < routes[i].total; k++) {
            request_t *q = &requests[routes[i].first + k];
            q->route = (uint8_t)i;
            q->intended_ns = due_ns(&routes[i], k);
            q->sent_ns = -1;
            q->done_ns = -1;
        }
    conns = xcalloc((size_t)max_conns, sizeof *conns);
    free_slots = xcalloc((size_t)max_conns, sizeof *free_slots);
    for (int i = max_conns - 1; i >= 0; i--) {
        conns[i].fd = -1;
        conns[i].req = -1;
        free_slots[num_free++] = i;
    }

    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || timer_fd < 0)
        die("epoll/timerfd: %s", strerror(errno));
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &tev);

    /* Start a little in the future so setup costs no request its slot. */
    t0_ns = mono_ns() + 20000000LL;
    int64_t next_tick = 0, next_sample = 0, next_second = NS_PER_S;
    int64_t hard_end = last_due + timeout_ns + NS_PER_S;
    struct epoll_event events[256];
    for (;;) {
        int64_t now = now_ns();
        /* Send what is due, oldest first across routes. */
        for (int sends = 0; sends < SENDS_PER_TURN; sends++) {
            route_t *due = NULL;
            int64_t due_at = INT64_MAX;
            for (int i = 0; i < num_routes; i++) {
                route_t *r = &routes[i];
                if (r->next < r->total && requests[r->first + r->next].intended_ns < due_at) {
                    due = r;
                    due_at = requests[r->first + r->next].intended_ns;
                }
            }
            if (!due || due_at > now)
                break;
            uint64_t k = due->first + due->next++;
            due->sec_offered++;
            dispatch(due, k);
        }
        if (now >= next_tick) {
            expire(now);
            next_tick = now + TICK_NS;
        }
        if (now >= next_sample) {
            take_sample(now);
            next_sample += SAMPLE_EVERY_NS;
        }
        if (now >= next_second) {
            print_second(next_second / NS_PER_S);
            next_second += NS_PER_S;
        }
        if (finished == num_requests || now >= hard_end)
            break;

        int64_t wake = next_tick < next_sample ? next_tick : next_sample;
        for (int i = 0; i < num_routes; i++) {
            route_t *r = &routes[i];
            if (r->next < r->total && requests[r->first + r->next].intended_ns < wake)
                wake = requests[r->first + r->next].intended_ns;
        }
        int64_t at = t0_ns + (wake > now ? wake : now + 1000);
        struct itimerspec its = {.it_value = {.tv_sec = at / NS_PER_S, .tv_nsec = at % NS_PER_S}};
        timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(epfd, events, 256, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                uint64_t expirations;
                if (read(timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    die("timerfd: %s", strerror(errno));
                continue;
            }
            conn_t *c = events[i].data.ptr;
            if (c->state != C_FREE)
                on_event(c, events[i].events);
        }
    }
    /* Whatever is still out at the hard end never got an answer. */
    for (int i = 0; i < max_conns; i++)
        if (conns[i].state != C_FREE) {
            if (conns[i].req >= 0 && conns[i].state != C_IDLE)
                record((uint64_t)conns[i].req, OUT_TIMEOUT, 0);
            conns[i].req = -1;
            close_conn(&conns[i]);
        }
    for (int i = 0; i < num_routes; i++)
        for (int64_t k; (k = backlog_pop(&routes[i])) >= 0;)
            record((uint64_t)k, OUT_TIMEOUT, 0);
    double elapsed = (double)now_ns() / 1e9;
    take_sample(now_ns());

    print_summary(elapsed);
    if (csv_path)
        write_csv(csv_path);
    if (samples_path)
        write_samples(samples_path);
    uint64_t errors = 0;
    for (int i = 0; i < num_routes; i++)
        for (int o = 0; o < NUM_OUTCOMES; o++)
            if (is_error((outcome_t)o))
                errors += routes[i].outcomes[o];
    return errors ? 1 : 0;
}
