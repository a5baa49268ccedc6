/* pool_test.c: worker pools and the Runtime API (functions/pool.h) with real
 * processes on a real home loop.
 *
 * One home loop (index 0) and one other loop (index 1) run in threads for
 * the whole program; the test thread posts work to them and waits. Every
 * function is runtime `provided` with a bootstrap written into a scratch
 * directory: a python3 runtime (http.client, as a custom runtime would be
 * written) whose behaviour each event picks with "op" (echo, error, sleep,
 * exit, kill, print, abandon, and probes that send malformed Runtime API
 * calls and report the statuses), and whose init is steered by the
 * function's env (INIT_MODE=exit|hang|initerror). One test uses a bash +
 * curl bootstrap as in the AWS custom-runtime tutorial.
 *
 * The pure parts of the Runtime API (path classification, error bodies,
 * JSON strings) are checked first, then the 4xx answers against a stand-in
 * worker (the 410 for a late answer to a timed-out invocation is a race on
 * a real one: the worker is killed at once). The whole program checks at
 * the end that no file descriptor leaked. */
#include "functions/pool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "functions/pool_internal.h"
#include "http/server.h"
#include "test.h"

/* ---- loops ---- */

static lv_loop_t *home, *other;
static pthread_t home_thread, other_thread;

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

static uint64_t now_ms(void) { return lv_clock_ns() / 1000000; }

typedef struct {
    lv_post_cb cb;
    void *arg;
    int done;
} sync_call_t;

static void run_sync(lv_loop_t *loop, void *arg)
{
    sync_call_t *s = arg;
    s->cb(loop, s->arg);
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}

/* Runs cb(loop, arg) on loop's thread and waits for it. */
static void run_on(lv_loop_t *loop, lv_post_cb cb, void *arg)
{
    sync_call_t s = {cb, arg, 0};
    lv_loop_post(loop, run_sync, &s);
    while (!__atomic_load_n(&s.done, __ATOMIC_SEQ_CST))
        sleep_ms(1);
}

static void nothing(lv_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
}

#define WAIT_FOR(cond, ms)                                                      \
    do {                                                                        \
        uint64_t until_ = now_ms() + (ms);                                      \
        while (!(cond) && now_ms() < until_)                                    \
            sleep_ms(5);                                                        \
    } while (0)

/* ---- scratch directory and bootstraps ---- */

static char scratch[PATH_MAX];

static const char *python_bootstrap =
    "#!/usr/bin/python3\n"
    "import http.client, json, os, socket, sys, threading, time\n"
    "host, port = os.environ['AWS_LAMBDA_RUNTIME_API'].split(':')\n"
    "port = int(port)\n"
    "mode = os.environ.get('INIT_MODE', '')\n"
    "print('init pid=%d mode=%s' % (os.getpid(), mode), flush=True)\n"
    "if mode == 'exit':\n"
    "    sys.exit(3)\n"
    "if mode == 'hang':\n"
    "    time.sleep(600)\n"
    "API = '/2018-06-01/runtime'\n"
    "def call(method, path, body=None, headers=None):\n"
    "    c = http.client.HTTPConnection(host, port)\n"
    "    c.request(method, path, body=body, headers=headers or {})\n"
    "    r = c.getresponse()\n"
    "    data = r.read()\n"
    "    c.close()\n"
    "    return r.status\n"
    "def raw(data):\n"
    "    s = socket.create_connection((host, port))\n"
    "    s.sendall(data)\n"
    "    line = s.makefile('rb').readline()\n"
    "    s.close()\n"
    "    return int(line.split()[1]) if line else 0\n"
    "if mode == 'initerror':\n"
    "    call('POST', API + '/init/error', json.dumps({'errorMessage': 'bad config', 'errorType': 'Runtime.ConfigInvalid'}),\n"
    "         {'Lambda-Runtime-Function-Error-Type': 'Runtime.ConfigInvalid'})\n"
    "    sys.exit(1)\n"
    "report = {}\n"
    "readers = []\n"
    "conn = http.client.HTTPConnection(host, port)\n"
    "while True:\n"
    "    conn.request('GET', API + '/invocation/next')\n"
    "    r = conn.getresponse()\n"
    "    body = r.read()\n"
    "    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')\n"
    "    base = API + '/invocation/' + rid\n"
    "    ev = json.loads(body)\n"
    "    op = ev.get('op', 'echo')\n"
    "    out = None\n"
    "    if op == 'echo':\n"
    "        out = {'echo': ev, 'pid': os.getpid(), 'headers': {k.lower(): v for k, v in r.getheaders()},\n"
    "               'init_type': os.environ.get('AWS_LAMBDA_INITIALIZATION_TYPE'), 'status': r.status}\n"
    "    elif op == 'error':\n"
    "        h = {'Lambda-Runtime-Function-Error-Type': ev['type']} if ev.get('type') else {}\n"
    "        conn.request('POST', base + '/error', json.dumps({'errorMessage': 'boom', 'errorType': 'MyError', 'trace': []}), h)\n"
    "        conn.getresponse().read()\n"
    "        continue\n"
    "    elif op == 'sleep':\n"
    "        time.sleep(ev['s'])\n"
    "        out = {'slept': ev['s'], 'pid': os.getpid()}\n"
    "    elif op == 'exit':\n"
    "        os._exit(ev.get('code', 7))\n"
    "    elif op == 'kill':\n"
    "        os.kill(os.getpid(), 9)\n"
    "    elif op == 'print':\n"
    "        block = (('x' * 99 + '\\n') * 10486).encode()\n"
    "        for i in range(ev['mib']):\n"
    "            sys.stdout.buffer.write(block)\n"
    "        sys.stdout.buffer.flush()\n"
    "        out = {'printed': ev['mib']}\n"
    "    elif op == 'tail':\n"
    "        print('first line of the tail')\n"
    "        print('last line of the tail', flush=True)\n"
    "        out = {'ok': True}\n"
    "    elif op == 'abandon':\n"
    "        continue\n"
    "    elif op == 'probe':\n"
    "        report['bogus_id'] = call('POST', API + '/invocation/not-the-id/response', '{}')\n"
    "        report['post_next'] = call('POST', API + '/invocation/next', '')\n"
    "        report['unknown_path'] = call('GET', API + '/nope')\n"
    "        report['other_version'] = call('GET', '/2099-01-01/runtime/invocation/next')\n"
    "        report['init_error_late'] = call('POST', API + '/init/error', '{}')\n"
    "        report['get_response'] = call('GET', base + '/response')\n"
    "        report['malformed'] = raw(b'GARBAGE\\r\\n\\r\\n')\n"
    "        report['bad_length'] = raw(b'POST ' + (base + '/response').encode() + b' HTTP/1.1\\r\\nContent-Length: x\\r\\n\\r\\n')\n"
    "        out = report\n"
    "    elif op == 'twice':\n"
    "        report['first'] = call('POST', base + '/response', '\"one\"')\n"
    "        report['second'] = call('POST', base + '/response', '\"two\"')\n"
    "        report['error_after'] = call('POST', base + '/error', '{}')\n"
    "        continue\n"
    "    elif op == 'too_large':\n"
    "        report['too_large'] = call('POST', base + '/response', 'x' * (7 * 1024 * 1024))\n"
    "        continue\n"
    "    elif op == 'double_next':\n"
    "        conn.request('POST', base + '/response', json.dumps({'ok': True}))\n"
    "        conn.getresponse().read()\n"
    "        a = socket.create_connection((host, port))\n"
    "        a.sendall(('GET ' + API + '/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n').encode())\n"
    "        time.sleep(0.2)\n"
    "        def read_a(a=a):\n"
    "            line = a.makefile('rb').readline()\n"
    "            report['replaced'] = int(line.split()[1]) if line else 0\n"
    "            a.close()\n"
    "        readers.append(threading.Thread(target=read_a))\n"
    "        readers[-1].start()\n"
    "        continue\n"
    "    elif op == 'report':\n"
    "        for t in readers: t.join()\n"
    "        out = report\n"
    "    conn.request('POST', base + '/response', json.dumps(out))\n"
    "    conn.getresponse().read()\n";

/* As in the AWS custom-runtime tutorial: curl for /next, the handler is a
 * shell function, curl again for the response. */
static const char *bash_bootstrap =
    "#!/bin/bash\n"
    "set -euo pipefail\n"
    "handler() { echo \"{\\\"shell\\\":true,\\\"event\\\":$1}\"; }\n"
    "while true; do\n"
    "  HEADERS=$(mktemp)\n"
    "  EVENT_DATA=$(curl -sS -LD \"$HEADERS\" \"http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next\")\n"
    "  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id \"$HEADERS\" | tr -d '[:space:]' | cut -d: -f2)\n"
    "  rm -f \"$HEADERS\"\n"
    "  echo \"handling $REQUEST_ID\"\n"
    "  RESPONSE=$(handler \"$EVENT_DATA\")\n"
    "  curl -sS \"http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response\" -d \"$RESPONSE\" >/dev/null\n"
    "done\n";

static const char *make_code(const char *name, const char *bootstrap)
{
    static char paths[16][PATH_MAX + 64];
    static unsigned next;
    char *dir = paths[next++ % 16];
    snprintf(dir, sizeof paths[0], "%s/%s", scratch, name);
    mkdir(dir, 0755);
    char file[PATH_MAX + 80];
    snprintf(file, sizeof file, "%s/bootstrap", dir);
    FILE *f = fopen(file, "we");
    if (!f) {
        perror(file);
        abort();
    }
    fputs(bootstrap, f);
    fclose(f);
    chmod(file, 0755);
    return dir;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[PATH_MAX + 300];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- configs ---- */

typedef struct {
    lv_config_t cfg;
    lv_config_function_t fn[3];
    lv_config_header_t env[3][1];
    lv_config_schedule_t sched[2];
} setup_t;

static void fn_init(setup_t *s, size_t i, const char *name, const char *code)
{
    lv_config_function_t *f = &s->fn[i];
    memset(f, 0, sizeof *f);
    f->name = (char *)name;
    f->runtime = LV_RUNTIME_PROVIDED;
    f->code = (char *)code;
    f->memory_mb = 256;
    f->timeout_ms = 3000;
    f->init_timeout_ms = 5000;
    f->max = 4;
    f->warm = 0;
    f->idle_timeout_ms = 300000;
    f->queue = (lv_config_queue_t){.enabled = true, .max = 100, .timeout_ms = 3000};
    f->pos = (lv_config_pos_t){(int)i + 1, 1};
    s->cfg.functions = s->fn;
    s->cfg.num_functions = i + 1;
    s->cfg.path = "test.yaml";
}

static void fn_env(setup_t *s, size_t i, const char *name, const char *value)
{
    s->env[i][0] = (lv_config_header_t){(char *)name, (char *)value};
    s->fn[i].env = s->env[i];
    s->fn[i].num_env = 1;
}

/* ---- pools ---- */

static void do_start(lv_loop_t *loop, void *arg) { lv_functions_start(arg, loop); }

static lv_functions_t *start_fns(setup_t *s, lv_metrics_t *metrics)
{
    lv_config_errors_t errs = {0};
    lv_functions_t *fns = lv_functions_new(&s->cfg, metrics, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "  config: %s\n", errs.items[i]);
    lv_config_errors_free(&errs);
    if (fns)
        run_on(home, do_start, fns);
    return fns;
}

typedef struct {
    lv_functions_t *fns;
    uint64_t grace_ms;
    int stopped;
} stop_t;

static void on_stopped(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    (void)loop;
    __atomic_store_n(&st->stopped, 1, __ATOMIC_SEQ_CST);
}

static void do_stop(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    lv_functions_stop(st->fns, lv_loop_now_ms(loop) + st->grace_ms, on_stopped, st);
}

static void do_free(lv_loop_t *loop, void *arg)
{
    (void)loop;
    lv_functions_free(arg);
}

/* Stops, waits until every worker is gone, lets both loops run the
 * callbacks still posted, and frees. Returns false if stopping hung. */
static bool stop_fns(lv_functions_t *fns, uint64_t grace_ms)
{
    stop_t st = {fns, grace_ms, 0};
    run_on(home, do_stop, &st);
    WAIT_FOR(__atomic_load_n(&st.stopped, __ATOMIC_SEQ_CST), 10000);
    bool ok = st.stopped;
    if (ok) {
        run_on(other, nothing, NULL);
        run_on(home, do_free, fns);
    }
    return ok;
}

/* ---- calls ---- */

typedef struct {
    lv_fn_t *fn;
    lv_loop_t *loop;
    char *payload;
    unsigned flags;
    const char *request_id, *client_context;
    int done;
    bool right_loop;
    lv_fn_status_t status;
    char *body;
    char error_type[LV_FN_TYPE_MAX];
    char *tail;
    unsigned retry_after;
    bool cold_start;
    uint64_t started_ms, finished_ms;
} call_t;

static void on_done(void *arg, const lv_fn_result_t *r)
{
    call_t *c = arg;
    c->right_loop = lv_loop_current() == c->loop;
    c->status = r->status;
    c->body = lv_memdup0(r->payload.ptr ? r->payload.ptr : "", r->payload.len);
    c->tail = lv_memdup0(r->log_tail.ptr ? r->log_tail.ptr : "", r->log_tail.len);
    snprintf(c->error_type, sizeof c->error_type, "%s", r->error_type ? r->error_type : "");
    c->retry_after = r->retry_after;
    c->cold_start = r->cold_start;
    c->finished_ms = now_ms();
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
}

static void do_invoke(lv_loop_t *loop, void *arg)
{
    call_t *c = arg;
    lv_fn_invoke_t in = {
        .payload = lv_slice_cstr(c->payload),
        .client_context = lv_slice_cstr(c->client_context),
        .request_id = lv_slice_cstr(c->request_id),
        .flags = c->flags,
    };
    lv_fn_invoke(c->fn, loop, &in, on_done, c);
}

static call_t *invoke_on(lv_loop_t *loop, lv_fn_t *fn, const char *payload, unsigned flags)
{
    call_t *c = lv_calloc(1, sizeof *c);
    c->fn = fn;
    c->loop = loop;
    c->payload = lv_strdup(payload);
    c->flags = flags;
    c->started_ms = now_ms();
    lv_loop_post(loop, do_invoke, c);
    return c;
}

static call_t *invoke(lv_fn_t *fn, const char *payload) { return invoke_on(home, fn, payload, 0); }

static bool wait_call(call_t *c, unsigned ms)
{
    WAIT_FOR(__atomic_load_n(&c->done, __ATOMIC_SEQ_CST), ms);
    return __atomic_load_n(&c->done, __ATOMIC_SEQ_CST);
}

static void call_free(call_t *c)
{
    if (!c)
        return;
    free(c->payload);
    free(c->body);
    free(c->tail);
    free(c);
}

/* Invokes and waits; NULL if no result came within ms. */
static call_t *invoke_wait(lv_fn_t *fn, const char *payload, unsigned ms)
{
    call_t *c = invoke(fn, payload);
    if (!wait_call(c, ms)) {
        fprintf(stderr, "  no result for %s within %u ms\n", payload, ms);
        return NULL; /* leaked on purpose: the callback may still come */
    }
    return c;
}

static json_t *body_json(const call_t *c)
{
    json_error_t err;
    return json_loads(c->body, JSON_DECODE_ANY, &err);
}

static long long json_int_at(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *json_str_at(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static lv_fn_stats_t stats(lv_fn_t *fn)
{
    lv_fn_stats_t st;
    lv_fn_stats(fn, &st);
    return st;
}

static uint64_t workers_of(lv_fn_t *fn)
{
    lv_fn_stats_t st = stats(fn);
    return st.idle + st.busy + st.starting;
}

typedef struct {
    lv_fn_t *fn;
    size_t n;
} count_t;

static void do_count(lv_loop_t *loop, void *arg)
{
    count_t *c = arg;
    (void)loop;
    c->n = c->fn->nworkers;
}

/* Processes, stopping ones included (read on the home loop). */
static size_t processes_of(lv_fn_t *fn)
{
    count_t c = {fn, 0};
    run_on(home, do_count, &c);
    return c.n;
}

/* ---- pure parts of the Runtime API ---- */

static void test_parse_target(void)
{
    lv_rapi_target_t t;
    lv_rapi_parse_target(LV_SLICE_LIT("GET"), LV_SLICE_LIT("/2018-06-01/runtime/invocation/next"), &t);
    CHECK_EQ(t.route, LV_RAPI_NEXT);
    CHECK(t.method_ok);
    lv_rapi_parse_target(LV_SLICE_LIT("POST"), LV_SLICE_LIT("/2018-06-01/runtime/invocation/next"), &t);
    CHECK_EQ(t.route, LV_RAPI_NEXT);
    CHECK(!t.method_ok);
    CHECK_STR(t.allow, "GET");
    lv_rapi_parse_target(LV_SLICE_LIT("POST"), LV_SLICE_LIT("/2018-06-01/runtime/invocation/abc-1/response"), &t);
    CHECK_EQ(t.route, LV_RAPI_RESPONSE);
    CHECK(t.method_ok);
    CHECK_SLICE(t.request_id, "abc-1");
    lv_rapi_parse_target(LV_SLICE_LIT("PUT"), LV_SLICE_LIT("/2018-06-01/runtime/invocation/x/error"), &t);
    CHECK_EQ(t.route, LV_RAPI_ERROR);
    CHECK(!t.method_ok);
    CHECK_STR(t.allow, "POST");
    CHECK_SLICE(t.request_id, "x");
    lv_rapi_parse_target(LV_SLICE_LIT("POST"), LV_SLICE_LIT("/2018-06-01/runtime/init/error"), &t);
    CHECK_EQ(t.route, LV_RAPI_INIT_ERROR);
    CHECK(t.method_ok);
    static const char *not_found[] = {
        "/", "", "/2018-06-01/runtime/", "/2018-06-01/runtime/invocation//response",
        "/2018-06-01/runtime/invocation/a/b/response", "/2018-06-01/runtime/invocation/response",
        "/2018-06-01/runtime/invocation/next/", "/2018-06-01/runtime/init/error/", "/2019-01-01/runtime/init/error",
        "/2018-06-01/runtime/invocation/x/responses", "/2018-06-01/runtime/invocation/x/",
    };
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        lv_rapi_parse_target(LV_SLICE_LIT("POST"), lv_slice_cstr(not_found[i]), &t);
        if (t.route != LV_RAPI_NOT_FOUND)
            LV_FAIL_("%s parsed as route %d", not_found[i], t.route);
    }
}

static void test_error_payload(void)
{
    char type[LV_FN_TYPE_MAX];
    lv_buf_t b = LV_BUF_INIT;
    /* A JSON object passes through; the header's type wins. */
    lv_rapi_error_payload(LV_SLICE_LIT("{\"errorMessage\":\"m\",\"errorType\":\"Body\",\"trace\":[]}"),
                          LV_SLICE_LIT("Header.Type"), &b, type);
    CHECK_SLICE(lv_buf_slice(&b), "{\"errorMessage\":\"m\",\"errorType\":\"Body\",\"trace\":[]}");
    CHECK_STR(type, "Header.Type");
    /* No header: the body's errorType. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(LV_SLICE_LIT("{\"errorType\":\"Body\"}"), lv_slice(NULL, 0), &b, type);
    CHECK_STR(type, "Body");
    /* Neither: Unhandled; text becomes the message. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(LV_SLICE_LIT("it \"broke\"\n"), lv_slice(NULL, 0), &b, type);
    CHECK_STR(type, "Unhandled");
    CHECK_SLICE(lv_buf_slice(&b), "{\"errorMessage\":\"it \\\"broke\\\"\\n\",\"errorType\":\"Unhandled\"}");
    /* A JSON string body: its value is the message. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(LV_SLICE_LIT("\"oops\""), LV_SLICE_LIT("T"), &b, type);
    CHECK_SLICE(lv_buf_slice(&b), "{\"errorMessage\":\"oops\",\"errorType\":\"T\"}");
    /* Empty body. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(lv_slice(NULL, 0), lv_slice(NULL, 0), &b, type);
    CHECK_SLICE(lv_buf_slice(&b), "{\"errorMessage\":\"Unknown error\",\"errorType\":\"Unhandled\"}");
    /* A type with control characters and quotes is cut to printable text. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(LV_SLICE_LIT("{}"), LV_SLICE_LIT("  A\x01\x7f\"B  "), &b, type);
    CHECK_STR(type, "A\"B");
    /* A non-string errorType is ignored. */
    lv_buf_clear(&b);
    lv_rapi_error_payload(LV_SLICE_LIT("{\"errorType\":5}"), lv_slice(NULL, 0), &b, type);
    CHECK_STR(type, "Unhandled");
    lv_buf_free(&b);
}

static void test_id_and_header_checks(void)
{
    CHECK(lv_rapi_id_ok(LV_SLICE_LIT("8476a536-e9f4-11e8-9739-2dfe598c3fcd")));
    CHECK(!lv_rapi_id_ok(LV_SLICE_LIT("a/b")));
    CHECK(!lv_rapi_id_ok(LV_SLICE_LIT("a b")));
    CHECK(!lv_rapi_id_ok(LV_SLICE_LIT("")));
    CHECK(lv_rapi_header_value_ok(LV_SLICE_LIT("{\"a\": 1}")));
    CHECK(!lv_rapi_header_value_ok(LV_SLICE_LIT("x\r\nEvil: 1")));
}

/* ---- the 4xx answers, against a stand-in worker ---- */

static int connect_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends one request on a new connection; returns the status (0 if none)
 * and the answer in out. */
static int raw_request(uint16_t port, const char *req, char *out, size_t outlen)
{
    int fd = connect_port(port);
    if (fd < 0)
        return 0;
    size_t len = strlen(req);
    if (write(fd, req, len) != (ssize_t)len) {
        close(fd);
        return 0;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, out + got, outlen - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        out[got] = 0;
        char *end = strstr(out, "\r\n\r\n");
        if (end) {
            char *cl = strstr(out, "Content-Length: ");
            size_t want = cl ? (size_t)atol(cl + 16) : 0;
            if (got >= (size_t)(end + 4 - out) + want)
                break;
        }
        if (got == outlen - 1)
            break;
    }
    out[got] = 0;
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.1 %d", &status);
    return status;
}

typedef struct {
    lv_http_server_t *server;
    lv_fn_worker_t *w;
    int fd;
} standin_t;

static void standin_attach(lv_loop_t *loop, void *arg)
{
    standin_t *s = arg;
    lv_http_server_attach(s->server, loop, s->fd);
}

static void standin_release(lv_loop_t *loop, void *arg)
{
    standin_t *s = arg;
    lv_http_server_release(s->server, loop);
}

static void test_rapi_statuses_standin(void)
{
    lv_fn_worker_t *w = lv_calloc(1, sizeof *w);
    w->state = LV_W_BUSY;
    strcpy(w->last_id, "late-one");
    w->last_id_len = strlen(w->last_id);
    w->last_end = LV_LAST_TIMED_OUT;
    static const lv_config_limits_t limits = {16, 65536, 1 << 20, 10000, 60000, 60000, 0};
    standin_t s = {lv_http_server_new(&limits, 1, lv_rapi_handle, w), w, -1};
    char err[128];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s.fd = lv_http_listen((struct sockaddr *)&a, sizeof a, err, sizeof err);
    CHECK(s.fd >= 0);
    socklen_t alen = sizeof a;
    getsockname(s.fd, (struct sockaddr *)&a, &alen);
    uint16_t port = ntohs(a.sin_port);
    run_on(home, standin_attach, &s);
    char out[4096];
    const char *body = "Content-Length: 2\r\n\r\n{}";
    char req[512];
    snprintf(req, sizeof req, "POST /2018-06-01/runtime/invocation/late-one/response HTTP/1.1\r\nHost: x\r\n%s", body);
    CHECK_EQ(raw_request(port, req, out, sizeof out), 410);
    CHECK(strstr(out, "\"errorType\":\"InvocationTimedOut\"") != NULL);
    w->last_end = LV_LAST_ANSWERED;
    snprintf(req, sizeof req, "POST /2018-06-01/runtime/invocation/late-one/error HTTP/1.1\r\nHost: x\r\n%s", body);
    CHECK_EQ(raw_request(port, req, out, sizeof out), 403);
    CHECK(strstr(out, "InvalidStateTransition") != NULL);
    snprintf(req, sizeof req, "POST /2018-06-01/runtime/invocation/other/response HTTP/1.1\r\nHost: x\r\n%s", body);
    CHECK_EQ(raw_request(port, req, out, sizeof out), 400);
    CHECK(strstr(out, "{\"errorMessage\":\"Invalid request ID\",\"errorType\":\"InvalidRequestID\"}") != NULL);
    CHECK_EQ(raw_request(port, "GET /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nHost: x\r\n\r\n", out,
                         sizeof out),
             405);
    CHECK(strstr(out, "Allow: POST\r\n") != NULL);
    CHECK_EQ(raw_request(port, "DELETE /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n", out,
                         sizeof out),
             405);
    CHECK(strstr(out, "Allow: GET\r\n") != NULL);
    CHECK_EQ(raw_request(port, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof out), 404);
    snprintf(req, sizeof req, "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n%s", body);
    CHECK_EQ(raw_request(port, req, out, sizeof out), 403); /* not initialising */
    CHECK_EQ(raw_request(port, "BAD\r\n\r\n", out, sizeof out), 400);
    /* Over the listener's body limit: the server's own 413. */
    CHECK_EQ(raw_request(port,
                         "POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 99999999\r\n\r\n",
                         out, sizeof out),
             413);
    run_on(home, standin_release, &s);
    run_on(home, nothing, NULL);
    free(w);
}

/* ---- pools with real workers ---- */

static void test_warm_and_echo(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "echo", make_code("echo", python_bootstrap));
    s.fn[0].warm = 2;
    lv_metrics_t *m = lv_metrics_new(2);
    lv_functions_t *fns = start_fns(&s, m);
    CHECK(fns != NULL);
    lv_fn_t *fn = lv_functions_find(fns, LV_SLICE_LIT("echo"));
    CHECK(fn != NULL);
    CHECK(lv_functions_find(fns, LV_SLICE_LIT("nope")) == NULL);
    CHECK_EQ(lv_functions_count(fns), 1);
    CHECK(lv_functions_at(fns, 0) == fn);
    CHECK(lv_fn_config(fn) == &s.fn[0]);
    WAIT_FOR(stats(fn).idle == 2, 5000);
    CHECK_EQ(stats(fn).idle, 2);
    CHECK_EQ(stats(fn).warm_target, 2);

    call_t *c = invoke(fn, "{\"op\":\"echo\",\"n\":1}");
    CHECK(wait_call(c, 5000));
    CHECK_EQ(c->status, LV_FN_OK);
    CHECK(c->right_loop);
    CHECK(!c->cold_start);
    CHECK_STR(c->error_type, "");
    json_t *j = body_json(c);
    CHECK(j != NULL);
    json_t *h = json_object_get(j, "headers");
    CHECK_EQ(json_int_at(j, "status"), 200);
    CHECK_EQ(json_int_at(json_object_get(j, "echo"), "n"), 1);
    CHECK_EQ(strlen(json_str_at(h, "lambda-runtime-aws-request-id")), 36);
    CHECK_EQ(strlen(json_str_at(h, "lambda-runtime-invocation-id")), 36);
    CHECK_STR(json_str_at(h, "lambda-runtime-invoked-function-arn"),
              "arn:aws:lambda:us-east-1:000000000000:function:echo");
    CHECK_STR(json_str_at(h, "content-type"), "application/json");
    const char *trace = json_str_at(h, "lambda-runtime-trace-id");
    CHECK_EQ(strlen(trace), strlen("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0"));
    CHECK(strncmp(trace, "Root=1-", 7) == 0);
    long long deadline = atoll(json_str_at(h, "lambda-runtime-deadline-ms"));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long wall = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    CHECK_INT(deadline, >, wall + 1000);
    CHECK_INT(deadline, <=, wall + 3000);
    CHECK(json_object_get(h, "lambda-runtime-client-context") == NULL);
    CHECK_STR(json_str_at(j, "init_type"), "provisioned-concurrency");
    json_decref(j);
    call_free(c);

    /* Given request id and client context reach the runtime. */
    c = lv_calloc(1, sizeof *c);
    c->fn = fn;
    c->loop = home;
    c->payload = lv_strdup("{\"op\":\"echo\"}");
    c->request_id = "my-request-1";
    c->client_context = "{\"client\":{\"app\":\"x\"}}";
    lv_loop_post(home, do_invoke, c);
    CHECK(wait_call(c, 5000));
    j = body_json(c);
    h = json_object_get(j, "headers");
    CHECK_STR(json_str_at(h, "lambda-runtime-aws-request-id"), "my-request-1");
    CHECK_STR(json_str_at(h, "lambda-runtime-client-context"), "{\"client\":{\"app\":\"x\"}}");
    json_decref(j);
    call_free(c);

    /* A client context that would break the header is dropped; a bad id
     * is replaced. */
    c = lv_calloc(1, sizeof *c);
    c->fn = fn;
    c->loop = home;
    c->payload = lv_strdup("{\"op\":\"echo\"}");
    c->request_id = "bad id/with slash";
    c->client_context = "{}\r\nX-Evil: 1";
    lv_loop_post(home, do_invoke, c);
    CHECK(wait_call(c, 5000));
    j = body_json(c);
    h = json_object_get(j, "headers");
    CHECK_EQ(strlen(json_str_at(h, "lambda-runtime-aws-request-id")), 36);
    CHECK(json_object_get(h, "lambda-runtime-client-context") == NULL);
    CHECK(json_object_get(h, "x-evil") == NULL);
    json_decref(j);
    call_free(c);

    /* Sequential invocations reuse the warm workers. */
    for (int i = 0; i < 20; i++) {
        c = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
        CHECK(c && c->status == LV_FN_OK);
        call_free(c);
    }
    CHECK_EQ(processes_of(fn), 2);
    CHECK_INT(stats(fn).invocations, ==, 23);
    CHECK_EQ(stats(fn).cold_starts, 0);

    /* The metrics are there. */
    lv_buf_t text = LV_BUF_INIT;
    lv_metrics_render(m, &text);
    lv_buf_append(&text, "", 1);
    const char *t = lv_buf_data(&text);
    CHECK(strstr(t, "levee_function_invocations_total{function=\"echo\"} 23") != NULL);
    CHECK(strstr(t, "levee_function_worker_starts_total{function=\"echo\",reason=\"warm\"} 2") != NULL);
    CHECK(strstr(t, "levee_function_workers{function=\"echo\",state=\"idle\"} 2") != NULL);
    CHECK(strstr(t, "levee_function_warm_target{function=\"echo\"} 2") != NULL);
    CHECK(strstr(t, "levee_function_cold_start_seconds_count{function=\"echo\"} 2") != NULL);
    CHECK(strstr(t, "levee_function_spawn_seconds_count{function=\"echo\"} 2") != NULL);
    CHECK(strstr(t, "levee_function_duration_seconds_count{function=\"echo\"} 23") != NULL);
    CHECK(strstr(t, "levee_function_queue_depth{function=\"echo\"} 0") != NULL);
    lv_buf_free(&text);
    CHECK(stop_fns(fns, 1000));
    lv_metrics_free(m);
}

static void test_errors_and_tail(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "errs", make_code("errs", python_bootstrap));
    s.fn[0].warm = 1;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);

    call_t *c = invoke_wait(fn, "{\"op\":\"error\",\"type\":\"Custom.Type\"}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_ERROR);
    CHECK_STR(c->error_type, "Custom.Type");
    CHECK_STR(c->body, "{\"errorMessage\": \"boom\", \"errorType\": \"MyError\", \"trace\": []}");
    call_free(c);
    c = invoke_wait(fn, "{\"op\":\"error\"}", 5000);
    CHECK(c && c->status == LV_FN_ERROR);
    CHECK_STR(c->error_type, "MyError");
    call_free(c);

    /* The log tail holds this invocation's output only. */
    c = invoke_on(home, fn, "{\"op\":\"tail\"}", LV_FN_WANT_LOG_TAIL);
    CHECK(wait_call(c, 5000));
    CHECK_EQ(c->status, LV_FN_OK);
    CHECK_STR(c->tail, "first line of the tail\nlast line of the tail\n");
    call_free(c);
    c = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(c && c->status == LV_FN_OK && c->tail[0] == 0);
    call_free(c);

    /* A runtime that goes back to /next without answering fails the
     * invocation and keeps working. */
    c = invoke_wait(fn, "{\"op\":\"abandon\"}", 5000);
    CHECK(c && c->status == LV_FN_ERROR);
    CHECK_STR(c->error_type, "Runtime.Unknown");
    call_free(c);
    c = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    call_free(c);
    CHECK_EQ(stats(fn).errors, 3);
    CHECK(stop_fns(fns, 1000));
}

static void test_timeout_replaces_worker(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "slow", make_code("slow", python_bootstrap));
    s.fn[0].warm = 1;
    s.fn[0].timeout_ms = 400;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    WAIT_FOR(stats(fn).idle == 1, 5000);
    call_t *before = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(before && before->status == LV_FN_OK);
    json_t *j = body_json(before);
    long long pid1 = json_int_at(j, "pid");
    json_decref(j);

    call_t *c = invoke_wait(fn, "{\"op\":\"sleep\",\"s\":30}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_TIMEOUT);
    CHECK_STR(c->error_type, "Sandbox.Timeout");
    CHECK(strstr(c->body, "Task timed out after 0.40 seconds") != NULL);
    CHECK(strstr(c->body, "{\"errorMessage\":\"20") == c->body); /* starts with the time */
    CHECK_INT(c->finished_ms - c->started_ms, <, 1500);
    /* The worker was killed and a new one started for the warm target. */
    WAIT_FOR(stats(fn).idle == 1, 5000);
    call_t *after = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(after && after->status == LV_FN_OK);
    j = body_json(after);
    CHECK(json_int_at(j, "pid") != pid1);
    CHECK(kill((pid_t)pid1, 0) < 0); /* gone, and reaped */
    json_decref(j);
    CHECK_EQ(stats(fn).timeouts, 1);
    call_free(before);
    call_free(c);
    call_free(after);
    CHECK(stop_fns(fns, 1000));
}

static void test_crash(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "crash", make_code("crash", python_bootstrap));
    s.fn[0].warm = 1;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    call_t *c = invoke_wait(fn, "{\"op\":\"exit\",\"code\":7}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_CRASHED);
    CHECK_STR(c->error_type, "Runtime.ExitError");
    CHECK(strstr(c->body, "Error: Runtime exited with error: exit status 7\"") != NULL);
    CHECK(strstr(c->body, "\"errorType\":\"Runtime.ExitError\"") != NULL);
    call_free(c);
    c = invoke_wait(fn, "{\"op\":\"kill\"}", 5000);
    CHECK(c && c->status == LV_FN_CRASHED);
    CHECK(strstr(c->body, "Runtime exited with error: signal: killed") != NULL);
    call_free(c);
    /* Replaced: the next call works. */
    c = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    call_free(c);
    lv_fn_stats_t st = stats(fn);
    CHECK_EQ(st.errors, 2);
    CHECK(stop_fns(fns, 1000));
}

static void test_init_failures(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "initexit", make_code("initexit", python_bootstrap));
    fn_env(&s, 0, "INIT_MODE", "exit");
    fn_init(&s, 1, "initerr", make_code("initerr", python_bootstrap));
    fn_env(&s, 1, "INIT_MODE", "initerror");
    fn_init(&s, 2, "inithang", make_code("inithang", python_bootstrap));
    fn_env(&s, 2, "INIT_MODE", "hang");
    s.fn[2].init_timeout_ms = 400;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fexit = lv_functions_at(fns, 0), *ferr = lv_functions_at(fns, 1), *fhang = lv_functions_at(fns, 2);

    call_t *c = invoke_wait(fexit, "{}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_CRASHED);
    CHECK_STR(c->error_type, "Runtime.ExitError");
    CHECK(strstr(c->body, "Runtime exited with error: exit status 3") != NULL);
    CHECK(c->cold_start == false);
    call_free(c);
    /* Backing off with no worker: the next call fails at once with the
     * same error. */
    c = invoke_wait(fexit, "{}", 5000);
    CHECK(c && c->status == LV_FN_CRASHED);
    CHECK_INT(c->finished_ms - c->started_ms, <, 100);
    CHECK(strstr(c->body, "exit status 3") != NULL);
    call_free(c);
    CHECK_EQ(processes_of(fexit), 0);

    c = invoke_wait(ferr, "{}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_CRASHED);
    CHECK_STR(c->error_type, "Runtime.ConfigInvalid");
    CHECK_STR(c->body, "{\"errorMessage\": \"bad config\", \"errorType\": \"Runtime.ConfigInvalid\"}");
    call_free(c);

    c = invoke_wait(fhang, "{}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_CRASHED);
    CHECK_STR(c->error_type, "Sandbox.Timeout");
    CHECK(strstr(c->body, "init_timeout of 0.40 seconds") != NULL);
    CHECK_INT(c->finished_ms - c->started_ms, <, 2000);
    call_free(c);

    /* After the backoff (1 s) it tries again (and fails again). */
    sleep_ms(1100);
    c = invoke_wait(fexit, "{}", 5000);
    CHECK(c && c->status == LV_FN_CRASHED);
    CHECK_INT(c->finished_ms - c->started_ms, >, 5); /* a real attempt this time */
    call_free(c);
    CHECK(stop_fns(fns, 1000));
}

static void test_throttles(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "narrow", make_code("narrow", python_bootstrap));
    s.fn[0].warm = 1;
    s.fn[0].max = 1;
    s.fn[0].queue = (lv_config_queue_t){.enabled = true, .max = 1, .timeout_ms = 300};
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    WAIT_FOR(stats(fn).idle == 1, 5000);
    call_t *busy = invoke(fn, "{\"op\":\"sleep\",\"s\":1}");
    WAIT_FOR(stats(fn).busy == 1, 2000);
    call_t *queued = invoke(fn, "{\"op\":\"echo\"}");
    WAIT_FOR(stats(fn).queued == 1, 2000);
    CHECK_EQ(stats(fn).queued, 1);
    call_t *over = invoke_wait(fn, "{\"op\":\"echo\"}", 2000);
    CHECK(over != NULL);
    CHECK_EQ(over->status, LV_FN_THROTTLED); /* queue full: at once */
    CHECK_INT(over->retry_after, >=, 1);
    CHECK_STR(over->error_type, "TooManyRequestsException");
    CHECK_INT(over->finished_ms - over->started_ms, <, 100);
    CHECK(wait_call(queued, 2000));
    CHECK_EQ(queued->status, LV_FN_THROTTLED); /* queue timeout */
    CHECK_INT(queued->retry_after, >=, 1);
    CHECK_INT(queued->finished_ms - queued->started_ms, >=, 290);
    CHECK_INT(queued->finished_ms - queued->started_ms, <, 900);
    CHECK(wait_call(busy, 3000));
    CHECK_EQ(busy->status, LV_FN_OK);
    CHECK_EQ(stats(fn).throttles, 2);
    CHECK_EQ(processes_of(fn), 1);
    call_free(busy);
    call_free(queued);
    call_free(over);
    CHECK(stop_fns(fns, 1000));
}

static void test_max_and_scale_down(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "burst", make_code("burst", python_bootstrap));
    s.fn[0].warm = 1;
    s.fn[0].max = 2;
    s.fn[0].idle_timeout_ms = 300;
    s.fn[0].queue.timeout_ms = 3000;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    WAIT_FOR(stats(fn).idle == 1, 5000);
    call_t *calls[6];
    for (int i = 0; i < 6; i++)
        calls[i] = invoke(fn, "{\"op\":\"sleep\",\"s\":0.3}");
    size_t most = 0;
    for (int round = 0; round < 400; round++) {
        size_t n = processes_of(fn), counted = (size_t)workers_of(fn);
        most = n > most ? n : most;
        most = counted > most ? counted : most;
        bool all = true;
        for (int i = 0; i < 6; i++)
            all = all && __atomic_load_n(&calls[i]->done, __ATOMIC_SEQ_CST);
        if (all)
            break;
        sleep_ms(5);
    }
    CHECK_INT(most, <=, 2);
    long long pids[6];
    int cold = 0;
    for (int i = 0; i < 6; i++) {
        CHECK(wait_call(calls[i], 3000));
        CHECK_EQ(calls[i]->status, LV_FN_OK);
        json_t *j = body_json(calls[i]);
        pids[i] = json_int_at(j, "pid");
        json_decref(j);
        cold += calls[i]->cold_start;
    }
    int distinct = 0;
    for (int i = 0; i < 6; i++) {
        bool seen = false;
        for (int k = 0; k < i; k++)
            seen = seen || pids[k] == pids[i];
        distinct += !seen;
    }
    CHECK_EQ(distinct, 2);
    CHECK_INT(cold, >=, 1); /* at least one waited for the second worker */
    CHECK_EQ(stats(fn).cold_starts, (uint64_t)cold);
    /* Back to warm (1) once the extra worker idled 300 ms. */
    WAIT_FOR(processes_of(fn) == 1, 3000);
    CHECK_EQ(processes_of(fn), 1);
    CHECK_EQ(stats(fn).idle, 1);
    for (int i = 0; i < 6; i++)
        call_free(calls[i]);
    CHECK(stop_fns(fns, 1000));

    /* warm: 0 scales to zero. */
    setup_t z = {0};
    fn_init(&z, 0, "zero", make_code("zero", python_bootstrap));
    z.fn[0].idle_timeout_ms = 200;
    fns = start_fns(&z, NULL);
    fn = lv_functions_at(fns, 0);
    CHECK_EQ(processes_of(fn), 0);
    call_t *c = invoke_wait(fn, "{\"op\":\"echo\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    CHECK(c->cold_start);
    call_free(c);
    CHECK_EQ(processes_of(fn), 1);
    WAIT_FOR(processes_of(fn) == 0, 3000);
    CHECK_EQ(processes_of(fn), 0);
    CHECK(stop_fns(fns, 1000));
}

static void test_schedule(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000;
    setup_t s = {0};
    fn_init(&s, 0, "sched", make_code("sched", python_bootstrap));
    fn_init(&s, 1, "past", make_code("past", python_bootstrap));
    s.sched[0] = (lv_config_schedule_t){.at_ms = wall - 3600000, .until_ms = wall + 3600000, .warm = 2};
    s.fn[0].schedule = &s.sched[0];
    s.fn[0].num_schedule = 1;
    s.sched[1] = (lv_config_schedule_t){.at_ms = wall - 7200000, .until_ms = wall - 3600000, .warm = 3};
    s.fn[1].schedule = &s.sched[1];
    s.fn[1].num_schedule = 1;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *now_fn = lv_functions_at(fns, 0), *past_fn = lv_functions_at(fns, 1);
    CHECK_EQ(stats(now_fn).warm_target, 2);
    CHECK_EQ(stats(past_fn).warm_target, 0);
    WAIT_FOR(stats(now_fn).idle == 2, 5000);
    CHECK_EQ(stats(now_fn).idle, 2);
    CHECK_EQ(processes_of(past_fn), 0);
    CHECK(stop_fns(fns, 1000));
}

static void test_loud_worker_does_not_block(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "loud", make_code("loud", python_bootstrap));
    fn_init(&s, 1, "quiet", make_code("quiet", python_bootstrap));
    s.fn[0].warm = 1;
    s.fn[1].warm = 1;
    s.fn[0].timeout_ms = 20000;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *loud = lv_functions_at(fns, 0), *quiet = lv_functions_at(fns, 1);
    WAIT_FOR(stats(loud).idle == 1 && stats(quiet).idle == 1, 5000);
    /* The lines really are logged (to /dev/null), so the cost is real. */
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(devnull, 2);
    lv_log_set_level(LV_LOG_INFO);
    call_t *big = invoke(loud, "{\"op\":\"print\",\"mib\":20}");
    uint64_t worst = 0;
    int calls = 0;
    while (!__atomic_load_n(&big->done, __ATOMIC_SEQ_CST) && calls < 2000) {
        call_t *c = invoke_wait(quiet, "{\"op\":\"echo\"}", 5000);
        if (!c)
            break;
        uint64_t took = c->finished_ms - c->started_ms;
        worst = took > worst ? took : worst;
        if (c->status != LV_FN_OK)
            worst = 99999;
        calls++;
        call_free(c);
    }
    bool finished = wait_call(big, 20000);
    lv_log_set_level(LV_LOG_WARN);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    CHECK(finished);
    CHECK_EQ(big->status, LV_FN_OK);
    CHECK_INT(calls, >=, 3);
    CHECK_INT(worst, <, 250);
    fprintf(stderr, "  20 MiB of output: %d calls to another function meanwhile, slowest %llu ms\n", calls,
            (unsigned long long)worst);
    call_free(big);
    CHECK(stop_fns(fns, 1000));
}

static void test_rapi_statuses_from_worker(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "probe", make_code("probe", python_bootstrap));
    s.fn[0].warm = 1;
    s.fn[0].max = 1;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    call_t *c = invoke_wait(fn, "{\"op\":\"probe\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    json_t *j = body_json(c);
    CHECK_EQ(json_int_at(j, "bogus_id"), 400);
    CHECK_EQ(json_int_at(j, "post_next"), 405);
    CHECK_EQ(json_int_at(j, "unknown_path"), 404);
    CHECK_EQ(json_int_at(j, "other_version"), 404);
    CHECK_EQ(json_int_at(j, "init_error_late"), 403);
    CHECK_EQ(json_int_at(j, "get_response"), 405);
    CHECK_EQ(json_int_at(j, "malformed"), 400);
    CHECK_EQ(json_int_at(j, "bad_length"), 400);
    json_decref(j);
    call_free(c);

    c = invoke_wait(fn, "{\"op\":\"twice\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    CHECK_STR(c->body, "\"one\"");
    call_free(c);
    c = invoke_wait(fn, "{\"op\":\"too_large\"}", 5000);
    CHECK(c != NULL);
    CHECK_EQ(c->status, LV_FN_TOO_LARGE);
    CHECK_STR(c->error_type, "Function.ResponseSizeTooLarge");
    CHECK(strstr(c->body, "exceeded maximum allowed payload size (6291556 bytes)") != NULL);
    call_free(c);
    /* A second /next while one is held: the newest wins, the older gets 403. */
    c = invoke_wait(fn, "{\"op\":\"double_next\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    call_free(c);
    sleep_ms(300);
    c = invoke_wait(fn, "{\"op\":\"report\"}", 5000);
    CHECK(c && c->status == LV_FN_OK);
    j = body_json(c);
    CHECK_EQ(json_int_at(j, "replaced"), 403);
    CHECK_EQ(json_int_at(j, "first"), 202);
    CHECK_EQ(json_int_at(j, "second"), 403);
    CHECK_EQ(json_int_at(j, "error_after"), 403);
    CHECK_EQ(json_int_at(j, "too_large"), 413);
    json_decref(j);
    call_free(c);
    CHECK_EQ(processes_of(fn), 1); /* none of it cost the worker */
    CHECK(stop_fns(fns, 1000));
}

static void test_second_loop_and_bash(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "shell", make_code("shell", bash_bootstrap));
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    call_t *c = invoke_on(other, fn, "{\"from\":\"loop1\"}", 0);
    CHECK(wait_call(c, 5000));
    CHECK_EQ(c->status, LV_FN_OK);
    CHECK(c->right_loop);
    CHECK(c->cold_start);
    CHECK_STR(c->body, "{\"shell\":true,\"event\":{\"from\":\"loop1\"}}");
    call_free(c);
    /* Many at once from both loops. */
    call_t *many[40];
    for (int i = 0; i < 40; i++)
        many[i] = invoke_on(i % 2 ? other : home, fn, "{\"n\":1}", 0);
    for (int i = 0; i < 40; i++) {
        CHECK(wait_call(many[i], 10000));
        CHECK_EQ(many[i]->status, LV_FN_OK);
        CHECK(many[i]->right_loop);
        call_free(many[i]);
    }
    CHECK(stop_fns(fns, 1000));
}

static void test_shutdown(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "stopper", make_code("stopper", python_bootstrap));
    s.fn[0].warm = 2;
    s.fn[0].max = 2;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    WAIT_FOR(stats(fn).idle == 2, 5000);
    call_t *quick = invoke(fn, "{\"op\":\"sleep\",\"s\":0.2}");
    call_t *stuck = invoke(fn, "{\"op\":\"sleep\",\"s\":30}");
    WAIT_FOR(stats(fn).busy == 2, 2000);
    call_t *queued[3];
    for (int i = 0; i < 3; i++)
        queued[i] = invoke(fn, "{\"op\":\"echo\"}");
    WAIT_FOR(stats(fn).queued == 3, 2000);
    uint64_t t0 = now_ms();
    CHECK(stop_fns(fns, 700));
    uint64_t took = now_ms() - t0;
    CHECK_INT(took, <, 3000);
    for (int i = 0; i < 3; i++) {
        CHECK(wait_call(queued[i], 100));
        CHECK_EQ(queued[i]->status, LV_FN_SHUTDOWN);
        CHECK_STR(queued[i]->error_type, "ServiceException");
        call_free(queued[i]);
    }
    CHECK(wait_call(quick, 100));
    CHECK_EQ(quick->status, LV_FN_OK); /* finished within the grace */
    CHECK(wait_call(stuck, 100));
    CHECK_EQ(stuck->status, LV_FN_SHUTDOWN);
    call_free(quick);
    call_free(stuck);

    /* Before start and after stop: SHUTDOWN, still posted. */
    setup_t n = {0};
    fn_init(&n, 0, "never", make_code("never", python_bootstrap));
    lv_config_errors_t errs = {0};
    fns = lv_functions_new(&n.cfg, NULL, &errs);
    CHECK(fns != NULL);
    call_t *c = invoke(lv_functions_at(fns, 0), "{}");
    CHECK(wait_call(c, 1000));
    CHECK_EQ(c->status, LV_FN_SHUTDOWN);
    call_free(c);
    CHECK(stop_fns(fns, 0));
}

/* Levee's own CPU per invocation: chains of invocations run back to back
 * (each result starts the next, on the home loop) against warm workers; the
 * process's CPU time (the workers are children, not counted) over the
 * count. Printed, and bounded loosely so a sanitizer build passes too. */
typedef struct {
    lv_fn_t *fn;
    int left;
    int *running;
} chain_t;

static void chain_next(lv_loop_t *loop, chain_t *ch);

static void chain_done(void *arg, const lv_fn_result_t *r)
{
    chain_t *ch = arg;
    if (r->status != LV_FN_OK)
        ch->left = 0;
    chain_next(lv_loop_current(), ch);
}

static void chain_next(lv_loop_t *loop, chain_t *ch)
{
    if (ch->left-- <= 0) {
        __atomic_fetch_sub(ch->running, 1, __ATOMIC_SEQ_CST);
        return;
    }
    lv_fn_invoke_t in = {.payload = LV_SLICE_LIT("{\"op\":\"echo\"}")};
    lv_fn_invoke(ch->fn, loop, &in, chain_done, ch);
}

static void chain_start(lv_loop_t *loop, void *arg) { chain_next(loop, arg); }

static double user_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void test_cpu_per_invocation(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "cpu", make_code("cpu", python_bootstrap));
    s.fn[0].warm = 4;
    s.fn[0].max = 4;
    lv_functions_t *fns = start_fns(&s, NULL);
    lv_fn_t *fn = lv_functions_at(fns, 0);
    WAIT_FOR(stats(fn).idle == 4, 5000);
    enum { CHAINS = 8, PER_CHAIN = 500 };
    int running = CHAINS;
    chain_t chains[CHAINS];
    double cpu0 = cpu_seconds(), user0 = user_seconds();
    uint64_t t0 = now_ms();
    for (int i = 0; i < CHAINS; i++) {
        chains[i] = (chain_t){fn, PER_CHAIN, &running};
        lv_loop_post(home, chain_start, &chains[i]);
    }
    WAIT_FOR(__atomic_load_n(&running, __ATOMIC_SEQ_CST) == 0, 30000);
    double cpu = cpu_seconds() - cpu0, user = user_seconds() - user0;
    uint64_t wall = now_ms() - t0;
    CHECK_EQ(running, 0);
    CHECK_EQ(stats(fn).invocations, CHAINS * PER_CHAIN);
    CHECK_EQ(stats(fn).errors, 0);
    double us = cpu * 1e6 / (CHAINS * PER_CHAIN);
    fprintf(stderr, "  %d invocations in %llu ms: levee CPU %.1f us per invocation (%.1f us user), workers excluded\n",
            CHAINS * PER_CHAIN, (unsigned long long)wall, us, user * 1e6 / (CHAINS * PER_CHAIN));
    CHECK(stop_fns(fns, 1000));
}

static void test_config_problems(void)
{
    setup_t s = {0};
    fn_init(&s, 0, "nocode", "/nonexistent/levee/code");
    char dir[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/empty", scratch);
    mkdir(dir, 0755);
    fn_init(&s, 1, "noboot", dir);
    lv_config_errors_t errs = {0};
    lv_functions_t *fns = lv_functions_new(&s.cfg, NULL, &errs);
    CHECK(fns == NULL);
    CHECK_EQ(errs.count, 2);
    if (errs.count == 2) {
        CHECK(strncmp(errs.items[0], "test.yaml:1:1: function nocode: ", 32) == 0);
        CHECK(strncmp(errs.items[1], "test.yaml:2:1: function noboot: ", 32) == 0);
    }
    lv_config_errors_free(&errs);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the DIR itself */
}

/* `pool_test NAME` runs only the tests whose name contains NAME. */
static const char *only;
#define RUN(fn)                                  \
    do {                                         \
        if (!only || strstr(#fn, only))          \
            LV_RUN(fn);                          \
    } while (0)

int main(int argc, char **argv)
{
    only = argc > 1 ? argv[1] : NULL;
    signal(SIGPIPE, SIG_IGN);
    lv_log_set_level(LV_LOG_WARN);
    snprintf(scratch, sizeof scratch, "/tmp/levee-pool-test-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    home = lv_loop_new(0);
    other = lv_loop_new(1);
    pthread_create(&home_thread, NULL, loop_main, home);
    pthread_create(&other_thread, NULL, loop_main, other);
    run_on(home, nothing, NULL);
    int fds_before = count_fds();

    RUN(test_parse_target);
    RUN(test_error_payload);
    RUN(test_id_and_header_checks);
    RUN(test_rapi_statuses_standin);
    RUN(test_config_problems);
    RUN(test_warm_and_echo);
    RUN(test_errors_and_tail);
    RUN(test_timeout_replaces_worker);
    RUN(test_crash);
    RUN(test_init_failures);
    RUN(test_throttles);
    RUN(test_max_and_scale_down);
    RUN(test_schedule);
    RUN(test_loud_worker_does_not_block);
    RUN(test_rapi_statuses_from_worker);
    RUN(test_second_loop_and_bash);
    RUN(test_shutdown);
    RUN(test_cpu_per_invocation);

    run_on(home, nothing, NULL);
    run_on(other, nothing, NULL);
    int fds_after = count_fds();
    if (fds_after != fds_before) {
        fprintf(stderr, "  FAIL: file descriptors %d before, %d after\n", fds_before, fds_after);
        lv_tests_failed++;
    }
    lv_loop_stop(home);
    lv_loop_stop(other);
    pthread_join(home_thread, NULL);
    pthread_join(other_thread, NULL);
    lv_loop_free(home);
    lv_loop_free(other);
    remove_tree(scratch);
    return lv_test_summary();
}
