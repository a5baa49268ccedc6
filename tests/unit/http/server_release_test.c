/* server_release_test.c: lv_http_server_release (http/server.h), freeing a
 * server while its loop keeps running, as the function pools do for every
 * worker that goes away.
 *
 * A loop runs in a thread for the whole program. Each test opens a server
 * on a loopback port, puts connections in the states that outlive a close
 * (idle keep-alive, half-read head, half-read body, a request the handler
 * holds, one answered in the same iteration), releases the server from the
 * loop and checks that every client sees its connection closed. The
 * sanitizer build is what proves the rest: no connection callback or
 * posted free touches the server after it is freed, and nothing leaks. */
#include "http/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "test.h"

static lv_loop_t *loop;
static pthread_t thread;

static void *loop_main(void *arg)
{
    lv_loop_run(arg);
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    lv_post_cb cb;
    void *arg;
    int done;
} sync_call_t;

static void run_sync(lv_loop_t *l, void *arg)
{
    sync_call_t *s = arg;
    s->cb(l, s->arg);
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

static void run_on_loop(lv_post_cb cb, void *arg)
{
    sync_call_t s = {cb, arg, 0};
    lv_loop_post(loop, run_sync, &s);
    while (!__atomic_load_n(&s.done, __ATOMIC_SEQ_CST))
        sleep_ms(1);
}

static void nothing(lv_loop_t *l, void *arg)
{
    (void)l;
    (void)arg;
}

/* ---- the server under test ---- */

typedef struct {
    lv_http_server_t *server;
    int listen_fd;
    uint16_t port;
    lv_http_req_t *held;       /* /hold */
    bool release_in_handler;   /* /release-now releases from inside the handler */
    int handled;
} fixture_t;

static void handler(lv_http_req_t *req, void *ctx)
{
    fixture_t *f = ctx;
    f->handled++;
    if (lv_slice_eq_cstr(req->head.path, "/hold")) {
        f->held = req;
        return;
    }
    if (lv_slice_eq_cstr(req->head.path, "/release-now")) {
        lv_http_respond(req, 200, LV_SLICE_LIT(""), LV_SLICE_LIT("bye"));
        lv_http_server_release(f->server, req->loop);
        f->server = NULL;
        return;
    }
    lv_http_respond(req, 200, LV_SLICE_LIT(""), LV_SLICE_LIT("ok"));
}

static const lv_config_limits_t limits = {64, 16384, 1 << 20, 10000, 60000, 60000, 0};

static void attach(lv_loop_t *l, void *arg)
{
    fixture_t *f = arg;
    lv_http_server_attach(f->server, l, f->listen_fd);
}

static void fixture_open(fixture_t *f)
{
    memset(f, 0, sizeof *f);
    f->server = lv_http_server_new(&limits, 1, handler, f);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char err[128];
    f->listen_fd = lv_http_listen((struct sockaddr *)&a, sizeof a, err, sizeof err);
    socklen_t len = sizeof a;
    getsockname(f->listen_fd, (struct sockaddr *)&a, &len);
    f->port = ntohs(a.sin_port);
    run_on_loop(attach, f);
}

static int client(uint16_t port, const char *send_first)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (send_first) {
        ssize_t w = write(fd, send_first, strlen(send_first));
        (void)w;
    }
    return fd;
}

/* Reads until EOF; true if the server closed (possibly after an answer). */
static bool sees_close(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

static void release(lv_loop_t *l, void *arg)
{
    fixture_t *f = arg;
    lv_http_server_release(f->server, l);
    f->server = NULL;
}

static void answer_held(lv_loop_t *l, void *arg)
{
    fixture_t *f = arg;
    (void)l;
    lv_http_respond(f->held, 200, LV_SLICE_LIT(""), LV_SLICE_LIT("late"));
    f->held = NULL;
}

/* ---- tests ---- */

static void test_release_with_connections(void)
{
    fixture_t f;
    fixture_open(&f);
    int idle = client(f.port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[256];
    CHECK(read(idle, buf, sizeof buf) > 0); /* answered, now idle keep-alive */
    int half_head = client(f.port, "GET /b HTTP/1.1\r\nHo");
    int half_body = client(f.port, "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    int held = client(f.port, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 200 && !__atomic_load_n(&f.held, __ATOMIC_SEQ_CST); i++)
        sleep_ms(5);
    CHECK(f.held != NULL);
    sleep_ms(20); /* let the half-sent ones be read */
    run_on_loop(release, &f);
    CHECK(sees_close(idle));
    CHECK(sees_close(half_head));
    CHECK(sees_close(half_body));
    CHECK(sees_close(held));
    /* The held request is answered after the release: discarded, and the
     * server is freed only now (the sanitizer build checks both). */
    run_on_loop(answer_held, &f);
    run_on_loop(nothing, NULL);
    CHECK(client(f.port, NULL) < 0); /* the listener is closed */
    close(idle);
    close(half_head);
    close(half_body);
    close(held);
}

static void test_release_without_connections(void)
{
    fixture_t f;
    fixture_open(&f);
    run_on_loop(release, &f); /* freed at once */
    run_on_loop(nothing, NULL);
    CHECK(client(f.port, NULL) < 0);
}

static void test_release_from_handler(void)
{
    fixture_t f;
    fixture_open(&f);
    int other = client(f.port, NULL);
    int fd = client(f.port, "GET /release-now HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(sees_close(fd));
    CHECK(sees_close(other));
    run_on_loop(nothing, NULL);
    CHECK_EQ(f.handled, 1); /* the pipelined request was not handled */
    close(fd);
    close(other);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    lv_log_set_level(LV_LOG_ERROR);
    loop = lv_loop_new(0);
    pthread_create(&thread, NULL, loop_main, loop);
    run_on_loop(nothing, NULL);
    int before = count_fds();
    LV_RUN(test_release_with_connections);
    LV_RUN(test_release_without_connections);
    LV_RUN(test_release_from_handler);
    run_on_loop(nothing, NULL);
    if (count_fds() != before) {
        fprintf(stderr, "  FAIL: file descriptors %d before, %d after\n", before, count_fds());
        lv_tests_failed++;
    }
    lv_loop_stop(loop);
    pthread_join(thread, NULL);
    lv_loop_free(loop);
    return lv_test_summary();
}
