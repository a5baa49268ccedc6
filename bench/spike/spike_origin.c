/* spike_origin.c: the slow origin behind levee in the spike test, with a
 * capacity that is known in advance.
 *
 *     spike_origin PORT SERVICE_MS WORKERS [LIFETIME_S]
 *
 * Every request (any method, any path) takes SERVICE_MS of service time, and
 * at most WORKERS requests are in service at once, so the origin serves at
 * most WORKERS * 1000 / SERVICE_MS requests per second. Requests beyond that
 * wait, first come first served, the way a thread-pooled application server
 * makes them wait. Capacity is the point: the spike test must know what the
 * origin can take to say what "overload" means.
 *
 * How it works: one thread per client connection (levee keeps at most its
 * origin's max_conns open) reads HTTP/1.1 requests with keep-alive, waits
 * for one of the WORKERS slots, sleeps SERVICE_MS, and answers 200 with a
 * short text body. Slots are handed over first come first served: a request
 * that finds them all taken queues with its own condition variable, and the
 * request that finishes passes its slot straight to the head of the queue
 * (waking one thread, not all of them, however long the queue).
 *
 * GET /__stats answers at once (no service time) with JSON counters: requests
 * served, and per first path segment (`/flood/...` counts under "flood") the
 * number served and the most that were ever in service at the same time.
 * That peak is what the origin saw of levee's bulkheads: with
 * `concurrency: 16` on a route, its peak here must not pass 16.
 *
 * Bounds: requests with more than 16 KiB of headers or with a body are
 * refused and the connection closed; at most MAX_CONNS connections (more are
 * closed at once); an idle connection is dropped after 120 s; the process
 * exits by itself after LIFETIME_S (default 900) so that a crashed harness
 * never leaves it behind. Listens on 127.0.0.1 only. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define MAX_HEADER_BYTES (16 * 1024)
#define MAX_PREFIXES 32
#define PREFIX_MAX_LEN 31
#define IDLE_TIMEOUT_S 120

typedef struct {
    char name[PREFIX_MAX_LEN + 1];
    uint64_t served;
    unsigned in_service, peak_in_service;
} prefix_stats_t;

/* A request waiting for a slot; lives on its thread's stack. */
typedef struct waiter {
    pthread_cond_t granted_cv;
    bool granted;
    struct waiter *next;
} waiter_t;

/* Everything below is guarded by `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static waiter_t *queue_head, *queue_tail;
static unsigned in_service, peak_in_service, waiting, peak_waiting;
static uint64_t served;
static prefix_stats_t prefixes[MAX_PREFIXES];
static size_t num_prefixes;

static atomic_uint open_conns;
static unsigned workers;
static unsigned service_ms;

/* Returns the stats entry for the first segment of `path`, creating it; the
 * catch-all entry "other" once MAX_PREFIXES names are taken. Under `lock`. */
static prefix_stats_t *prefix_for(const char *path, size_t path_len)
{
    size_t start = (path_len > 0 && path[0] == '/') ? 1 : 0, end = start;
    while (end < path_len && path[end] != '/' && path[end] != '?' && end - start < PREFIX_MAX_LEN)
        end++;
    size_t len = end - start;
    const char *name = path + start;
    for (size_t i = 0; i < num_prefixes; i++)
        if (strlen(prefixes[i].name) == len && memcmp(prefixes[i].name, name, len) == 0)
            return &prefixes[i];
    if (num_prefixes >= MAX_PREFIXES - 1) {
        name = "other";
        len = 5;
        for (size_t i = 0; i < num_prefixes; i++)
            if (strcmp(prefixes[i].name, "other") == 0)
                return &prefixes[i];
    }
    prefix_stats_t *p = &prefixes[num_prefixes++];
    memcpy(p->name, name, len);
    p->name[len] = '\0';
    return p;
}

static bool write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static bool answer(int fd, int status, const char *content_type, const char *body, size_t body_len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n\r\n",
                     status, status == 200 ? "OK" : "Bad Request", content_type, body_len);
    return write_all(fd, head, (size_t)n) && write_all(fd, body, body_len);
}

static bool answer_stats(int fd)
{
    char body[8192];
    size_t len = 0;
    pthread_mutex_lock(&lock);
    len += (size_t)snprintf(body + len, sizeof body - len,
                            "{\"workers\":%u,\"service_ms\":%u,\"served\":%llu,\"peak_in_service\":%u,"
                            "\"peak_waiting\":%u,\"in_service\":%u,\"waiting\":%u,\"prefixes\":{",
                            workers, service_ms, (unsigned long long)served, peak_in_service, peak_waiting,
                            in_service, waiting);
    for (size_t i = 0; i < num_prefixes && len < sizeof body - 128; i++)
        len += (size_t)snprintf(body + len, sizeof body - len, "%s\"%s\":{\"served\":%llu,\"peak_in_service\":%u}",
                                i ? "," : "", prefixes[i].name, (unsigned long long)prefixes[i].served,
                                prefixes[i].peak_in_service);
    pthread_mutex_unlock(&lock);
    len += (size_t)snprintf(body + len, sizeof body - len, "}}\n");
    return answer(fd, 200, "application/json", body, len);
}

/* Takes a place in line, waits for a worker, serves, frees the worker. */
static void serve_slowly(const char *path, size_t path_len)
{
    pthread_mutex_lock(&lock);
    prefix_stats_t *p = prefix_for(path, path_len);
    if (in_service < workers && !queue_head) {
        in_service++;
    } else {
        /* The slot is handed over with in_service unchanged (release). */
        waiter_t self = {.granted = false, .next = NULL};
        pthread_cond_init(&self.granted_cv, NULL);
        if (queue_tail)
            queue_tail->next = &self;
        else
            queue_head = &self;
        queue_tail = &self;
        if (++waiting > peak_waiting)
            peak_waiting = waiting;
        while (!self.granted)
            pthread_cond_wait(&self.granted_cv, &lock);
        pthread_cond_destroy(&self.granted_cv);
    }
    if (in_service > peak_in_service)
        peak_in_service = in_service;
    if (++p->in_service > p->peak_in_service)
        p->peak_in_service = p->in_service;
    pthread_mutex_unlock(&lock);

    struct timespec t = {.tv_sec = service_ms / 1000, .tv_nsec = (long)(service_ms % 1000) * 1000000L};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) == EINTR)
        ;

    pthread_mutex_lock(&lock);
    p->in_service--;
    p->served++;
    served++;
    waiter_t *next = queue_head;
    if (next) {
        queue_head = next->next;
        if (!queue_head)
            queue_tail = NULL;
        waiting--;
        next->granted = true;
        pthread_cond_signal(&next->granted_cv);
    } else {
        in_service--;
    }
    pthread_mutex_unlock(&lock);
}

/* Case-insensitive search for header `name` in the header block; returns its
 * value (up to the line end) or NULL. */
static const char *header_value(const char *headers, const char *end, const char *name, size_t *value_len)
{
    size_t name_len = strlen(name);
    for (const char *line = headers; line < end;) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *value_len = (size_t)(eol - v);
            return v;
        }
        line = eol + 2;
    }
    return NULL;
}

static void *connection_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[MAX_HEADER_BYTES + 1];
    size_t len = 0;
    for (;;) {
        char *end_of_head = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
        if (!end_of_head) {
            if (len == MAX_HEADER_BYTES)
                break;
            ssize_t n = read(fd, buf + len, MAX_HEADER_BYTES - len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
            continue;
        }
        size_t head_len = (size_t)(end_of_head - buf) + 4;
        /* Request line: METHOD SP PATH SP VERSION */
        char *eol = memmem(buf, head_len, "\r\n", 2);
        char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
        char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
        size_t vlen;
        const char *cl = header_value(eol + 2, end_of_head + 2, "Content-Length", &vlen);
        bool has_body = (cl && !(vlen == 1 && cl[0] == '0')) ||
                        header_value(eol + 2, end_of_head + 2, "Transfer-Encoding", &vlen);
        if (!sp2 || has_body) {
            answer(fd, 400, "text/plain", "bad request\n", 12);
            break;
        }
        const char *conn = header_value(eol + 2, end_of_head + 2, "Connection", &vlen);
        bool close_after = (conn && vlen == 5 && strncasecmp(conn, "close", 5) == 0) ||
                           (size_t)(eol - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/1.1", 8) != 0;
        const char *path = sp1 + 1;
        size_t path_len = (size_t)(sp2 - path);

        bool ok;
        if (path_len == 8 && memcmp(path, "/__stats", 8) == 0) {
            ok = answer_stats(fd);
        } else {
            serve_slowly(path, path_len);
            char body[128];
            int n = snprintf(body, sizeof body, "slow origin served %.*s\n", (int)(path_len > 80 ? 80 : path_len),
                             path);
            ok = answer(fd, 200, "text/plain", body, (size_t)n);
        }
        if (!ok || close_after)
            break;
        memmove(buf, buf + head_len, len - head_len);
        len -= head_len;
    }
    close(fd);
    atomic_fetch_sub(&open_conns, 1);
    return NULL;
}

static unsigned parse_uint(const char *s, const char *what, unsigned lo, unsigned hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "spike_origin: %s must be a number from %u to %u, got '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: spike_origin PORT SERVICE_MS WORKERS [LIFETIME_S]\n");
        return 2;
    }
    unsigned port = parse_uint(argv[1], "PORT", 1, 65535);
    service_ms = parse_uint(argv[2], "SERVICE_MS", 0, 60000);
    workers = parse_uint(argv[3], "WORKERS", 1, 100000);
    unsigned lifetime = argc == 5 ? parse_uint(argv[4], "LIFETIME_S", 1, 86400) : 900;

    signal(SIGPIPE, SIG_IGN);
    alarm(lifetime); /* SIGALRM's default action ends the process */

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "spike_origin: cannot listen on 127.0.0.1:%u: %s\n", port, strerror(errno));
        return 1;
    }
    fprintf(stderr, "spike_origin: 127.0.0.1:%u, %u ms per request, %u workers (%.0f req/s at most)\n", port,
            service_ms, workers, service_ms ? workers * 1000.0 / service_ms : 0.0);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* Out of descriptors: back off instead of spinning. */
            usleep(10000);
            continue;
        }
        if (atomic_fetch_add(&open_conns, 1) >= MAX_CONNS) {
            atomic_fetch_sub(&open_conns, 1);
            close(fd);
            continue;
        }
        struct timeval idle = {.tv_sec = IDLE_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, &attr, connection_main, (void *)(intptr_t)fd) != 0) {
            atomic_fetch_sub(&open_conns, 1);
            close(fd);
        }
    }
}
