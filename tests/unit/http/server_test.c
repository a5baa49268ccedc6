/* server_test.c: the HTTP/1.1 server (http/server.h) over real sockets.
 *
 * Each test runs in a forked child with its own lv_loop_t and
 * lv_http_server_t on a loopback port, the loop in a thread of the child;
 * the test body talks to it with plain blocking sockets. The child exits
 * with the test's verdict (and, under ASan, LeakSanitizer's), and an
 * alarm() bounds it, so a server that hangs or crashes fails one test and
 * not the run.
 *
 * The handler answers with the request path as the body, either at once or
 * later: /timer/... after 30 ms from a loop timer, /post/... from a posted
 * callback, /hold until the test releases it, /body/... echoes the request
 * body. write(2) is wrapped to count response writes, so the promise that
 * a batch of pipelined answers goes out in one system call can be checked. */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "test.h"

/* ---- counting response writes ---- */

static int response_writes; /* atomic */

/* Interposes libc's write for this program (the server calls write(2) for
 * its output); counts the writes that start an HTTP response. */
ssize_t write(int fd, const void *buf, size_t n)
{
    if (n >= 9 && memcmp(buf, "HTTP/1.1 ", 9) == 0)
        __atomic_fetch_add(&response_writes, 1, __ATOMIC_SEQ_CST);
    return syscall(SYS_write, fd, buf, n);
}

static int writes_now(void)
{
    return __atomic_load_n(&response_writes, __ATOMIC_SEQ_CST);
}

/* ---- the server under test ---- */

typedef struct {
    lv_loop_t *loop;
    lv_http_server_t *server;
    pthread_t thread;
    int port;
    int listen_fd;
    /* /hold */
    lv_http_req_t *held;  /* atomic */
    int released;         /* atomic */
    int gone_at_release;  /* lv_http_req_client_gone when the answer was made */
} server_t;

static server_t srv;

typedef struct {
    lv_timer_t timer;
    lv_http_req_t *req;
} late_t;

static void answer_path(lv_http_req_t *req)
{
    lv_http_respond(req, 200, LV_SLICE_LIT("Content-Type: text/plain\r\n"), req->head.path);
}

static void on_late_timer(lv_loop_t *loop, lv_timer_t *t)
{
    late_t *late = t->data;
    (void)loop;
    answer_path(late->req);
    free(late);
}

static void on_late_post(lv_loop_t *loop, void *arg)
{
    (void)loop;
    answer_path(arg);
}

static bool starts_with(lv_slice_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && memcmp(s.ptr, prefix, n) == 0;
}

static void handler(lv_http_req_t *req, void *ctx)
{
    server_t *s = ctx;
    lv_slice_t path = req->head.path;
    if (starts_with(path, "/timer/")) {
        late_t *late = lv_calloc(1, sizeof *late);
        late->req = req;
        late->timer.cb = on_late_timer;
        late->timer.data = late;
        lv_timer_start(req->loop, &late->timer, 30);
    } else if (starts_with(path, "/post/")) {
        lv_loop_post(req->loop, on_late_post, req);
    } else if (starts_with(path, "/hold")) {
        __atomic_store_n(&s->held, req, __ATOMIC_SEQ_CST);
    } else if (starts_with(path, "/body/")) {
        lv_http_respond(req, 200, LV_SLICE_LIT(""), req->body);
    } else {
        answer_path(req);
    }
}

static void *loop_main(void *arg)
{
    lv_loop_run(arg);
    return NULL;
}

static void attach_on_loop(lv_loop_t *loop, void *arg)
{
    server_t *s = arg;
    lv_http_server_attach(s->server, loop, s->listen_fd);
}

static void start_server(void)
{
    memset(&srv, 0, sizeof srv);
    lv_log_set_level(LV_LOG_ERROR);
    lv_config_limits_t limits = {
        .max_connections = 100,
        .max_header_bytes = 16384,
        .max_body_bytes = 1 << 20,
        .header_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .request_timeout_ms = 5000,
    };
    srv.loop = lv_loop_new(0);
    srv.server = lv_http_server_new(&limits, 1, handler, &srv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char err[128];
    srv.listen_fd = lv_http_listen((struct sockaddr *)&a, sizeof a, err, sizeof err);
    if (srv.listen_fd < 0) {
        fprintf(stderr, "listen: %s\n", err);
        exit(2);
    }
    socklen_t alen = sizeof a;
    getsockname(srv.listen_fd, (struct sockaddr *)&a, &alen);
    srv.port = ntohs(a.sin_port);
    lv_loop_post(srv.loop, attach_on_loop, &srv);
    pthread_create(&srv.thread, NULL, loop_main, srv.loop);
}

static void close_and_stop(lv_loop_t *loop, void *arg)
{
    server_t *s = arg;
    lv_http_server_close_all(s->server, loop);
    lv_loop_stop(loop);
}

/* Closes everything on the loop, joins it, frees. A loop that does not
 * stop (stuck in a callback) ends the child with a message. */
static void stop_server(void)
{
    lv_loop_post(srv.loop, close_and_stop, &srv);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 3;
    if (pthread_timedjoin_np(srv.thread, NULL, &deadline) != 0) {
        fprintf(stderr, "    the loop thread did not stop within 3 s (stuck in a callback?)\n");
        fflush(stderr);
        _exit(1);
    }
    lv_loop_free(srv.loop);
    lv_http_server_free(srv.server);
}

/* ---- a minimal client ---- */

static int connect_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(2);
    }
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0) {
            perror("send");
            return;
        }
        s += n;
        len -= (size_t)n;
    }
}

typedef struct {
    int status;
    char body[256];
    bool conn_close;
} resp_t;

/* Reads until n complete responses arrived (or EOF, or timeout_ms passed
 * without progress). Returns how many were parsed. *eof tells whether the
 * server closed the connection. */
static int read_responses(int fd, resp_t *out, int n, int timeout_ms, bool *eof)
{
    static char buf[1 << 16];
    size_t len = 0;
    int parsed = 0;
    if (eof)
        *eof = false;
    while (parsed < n) {
        /* Parse what we have. */
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (end) {
            size_t head_len = (size_t)(end - buf) + 4;
            resp_t *r = &out[parsed];
            memset(r, 0, sizeof *r);
            sscanf(buf, "HTTP/1.1 %d", &r->status);
            size_t body_len = 0;
            char *cl = memmem(buf, head_len, "Content-Length: ", 16);
            if (cl)
                body_len = strtoul(cl + 16, NULL, 10);
            r->conn_close = memmem(buf, head_len, "Connection: close", 17) != NULL;
            if (len >= head_len + body_len) {
                size_t copy = body_len < sizeof r->body - 1 ? body_len : sizeof r->body - 1;
                memcpy(r->body, buf + head_len, copy);
                memmove(buf, buf + head_len + body_len, len - head_len - body_len);
                len -= head_len + body_len;
                parsed++;
                continue;
            }
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        ssize_t got = recv(fd, buf + len, sizeof buf - len, 0);
        if (got <= 0) {
            if (eof)
                *eof = true;
            break;
        }
        len += (size_t)got;
    }
    return parsed;
}

static void wait_until(int (*cond)(void), int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && !cond(); waited += 5)
        usleep(5000);
}

/* ---- running each test in a child ---- */

/* Forks; the child runs body and exits with its verdict; the parent fails
 * the test if the child failed, crashed, leaked (ASan) or timed out. */
static void in_child(void (*body)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(15);
        lv_test_failed_now = 0;
        body();
        exit(lv_test_failed_now ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        fprintf(stderr, "    child killed by signal %d%s\n", WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timed out: server hung?)" : "");
    int child_exited = WIFEXITED(status);
    int child_exit_code = child_exited ? WEXITSTATUS(status) : -1;
    CHECK(child_exited);
    CHECK_EQ(child_exit_code, 0);
}

#define SERVER_TEST(name)                                               \
    static void body_##name(void);                                      \
    static void name(void) { in_child(body_##name); }                   \
    static void body_##name(void)

#define REQ(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests ---- */

/* One request, then another on the same keep-alive connection. */
SERVER_TEST(test_simple_keep_alive)
{
    start_server();
    int fd = connect_client();
    resp_t r[2];
    send_str(fd, REQ("/ok"));
    CHECK_EQ(read_responses(fd, r, 1, 3000, NULL), 1);
    CHECK_EQ(r[0].status, 200);
    CHECK_STR(r[0].body, "/ok");
    CHECK(!r[0].conn_close);
    send_str(fd, REQ("/again"));
    CHECK_EQ(read_responses(fd, r + 1, 1, 3000, NULL), 1);
    CHECK_STR(r[1].body, "/again");
    close(fd);
    stop_server();
}

/* Three requests in one packet: three answers, in order, in one write. */
SERVER_TEST(test_pipelined_one_batch)
{
    start_server();
    int fd = connect_client();
    /* Warm up: the connection is accepted and idle before the batch. */
    send_str(fd, REQ("/warm"));
    resp_t r[3];
    CHECK_EQ(read_responses(fd, r, 1, 3000, NULL), 1);
    int before = writes_now();
    send_str(fd, REQ("/a") REQ("/b") REQ("/c"));
    CHECK_EQ(read_responses(fd, r, 3, 3000, NULL), 3);
    CHECK_STR(r[0].body, "/a");
    CHECK_STR(r[1].body, "/b");
    CHECK_STR(r[2].body, "/c");
    CHECK_EQ(writes_now() - before, 1);
    close(fd);
    stop_server();
}

/* Answers made later (from a timer, from a posted callback) keep their
 * place: the pipelined requests behind them are answered after them. */
SERVER_TEST(test_pipelined_late_answers_keep_order)
{
    start_server();
    int fd = connect_client();
    send_str(fd, REQ("/timer/1") REQ("/a") REQ("/post/2") REQ("/b") REQ("/timer/3"));
    resp_t r[5];
    CHECK_EQ(read_responses(fd, r, 5, 3000, NULL), 5);
    CHECK_STR(r[0].body, "/timer/1");
    CHECK_STR(r[1].body, "/a");
    CHECK_STR(r[2].body, "/post/2");
    CHECK_STR(r[3].body, "/b");
    CHECK_STR(r[4].body, "/timer/3");
    close(fd);
    stop_server();
}

/* A request with a Content-Length body and another request right behind
 * it in the same packet (pipelined after a POST). */
SERVER_TEST(test_pipelined_after_body)
{
    start_server();
    int fd = connect_client();
    send_str(fd, "POST /body/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" REQ("/after"));
    resp_t r[2];
    int got = read_responses(fd, r, 2, 2000, NULL);
    if (got != 2) {
        fprintf(stderr, "    got %d of 2 answers within 2 s\n", got);
        /* A stuck loop cannot be stopped: stop_server ends the child. */
    }
    close(fd);
    stop_server();
    CHECK_EQ(got, 2);
    CHECK_STR(r[0].body, "hello");
    CHECK_STR(r[1].body, "/after");
}

static int is_held(void)
{
    return __atomic_load_n(&srv.held, __ATOMIC_SEQ_CST) != NULL;
}

static int is_released(void)
{
    return __atomic_load_n(&srv.released, __ATOMIC_SEQ_CST);
}

static void release_held(lv_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    lv_http_req_t *req = __atomic_exchange_n(&srv.held, NULL, __ATOMIC_SEQ_CST);
    srv.gone_at_release = lv_http_req_client_gone(req);
    answer_path(req);
    __atomic_store_n(&srv.released, 1, __ATOMIC_SEQ_CST);
}

/* The client goes away while the handler holds its request; answering
 * afterwards must be safe (ASan watches), and the server keeps serving. */
static void client_gone_while_held(bool reset)
{
    start_server();
    int fd = connect_client();
    send_str(fd, REQ("/hold") REQ("/queued"));
    wait_until(is_held, 3000);
    CHECK(is_held());
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
    usleep(100000); /* the loop sees the close */
    lv_loop_post(srv.loop, release_held, NULL);
    wait_until(is_released, 3000);
    CHECK(is_released());

    /* Still serving. */
    int fd2 = connect_client();
    send_str(fd2, REQ("/ok"));
    resp_t r;
    CHECK_EQ(read_responses(fd2, &r, 1, 3000, NULL), 1);
    CHECK_STR(r.body, "/ok");
    close(fd2);
    stop_server();
}

SERVER_TEST(test_client_closes_while_held)
{
    client_gone_while_held(false);
}

SERVER_TEST(test_client_resets_while_held)
{
    client_gone_while_held(true);
}

/* server.h: lv_http_req_client_gone is "true once the client has closed or
 * reset its side while the request was being handled". */
SERVER_TEST(test_client_gone_is_reported)
{
    start_server();
    int fd = connect_client();
    send_str(fd, REQ("/hold"));
    wait_until(is_held, 3000);
    CHECK(is_held());
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    usleep(100000);
    lv_loop_post(srv.loop, release_held, NULL);
    wait_until(is_released, 3000);
    int gone = srv.gone_at_release;
    stop_server();
    CHECK_EQ(gone, 1);
}

static void close_all_on_loop(lv_loop_t *loop, void *arg)
{
    (void)arg;
    lv_http_server_close_all(srv.server, loop);
}

/* The server closes every connection (shutdown) while a handler holds a
 * request; the late answer is then dropped without harm. */
SERVER_TEST(test_close_all_while_held)
{
    start_server();
    int fd = connect_client();
    send_str(fd, REQ("/hold"));
    wait_until(is_held, 3000);
    CHECK(is_held());
    lv_loop_post(srv.loop, close_all_on_loop, NULL);
    bool eof = false;
    resp_t r;
    CHECK_EQ(read_responses(fd, &r, 1, 3000, &eof), 0);
    CHECK(eof);
    lv_loop_post(srv.loop, release_held, NULL);
    wait_until(is_released, 3000);
    CHECK(is_released());
    CHECK_EQ(srv.gone_at_release, 1);
    close(fd);
    stop_server();
}

/* Connection: close is answered with Connection: close, then EOF. */
SERVER_TEST(test_connection_close)
{
    start_server();
    int fd = connect_client();
    send_str(fd, "GET /bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    resp_t r[2];
    bool eof = false;
    CHECK_EQ(read_responses(fd, r, 2, 3000, &eof), 1);
    CHECK_STR(r[0].body, "/bye");
    CHECK(r[0].conn_close);
    CHECK(eof);
    close(fd);
    stop_server();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    LV_RUN(test_simple_keep_alive);
    LV_RUN(test_pipelined_one_batch);
    LV_RUN(test_pipelined_late_answers_keep_order);
    LV_RUN(test_pipelined_after_body);
    LV_RUN(test_client_closes_while_held);
    LV_RUN(test_client_resets_while_held);
    LV_RUN(test_client_gone_is_reported);
    LV_RUN(test_close_all_while_held);
    LV_RUN(test_connection_close);
    return lv_test_summary();
}
