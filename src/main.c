/* main.c: the levee command line.
 *
 *   levee serve [-c FILE]          run in the foreground (default ./levee.yaml)
 *   levee check [-c FILE]          validate a config: print every problem, exit 1
 *   levee check-data DIR [--repair] verify (and repair) the stream logs of a data_dir
 *   levee version
 *
 * `serve` loads and validates the config exactly as `check` does, builds the
 * gateway, opens the streams (data_dir), the api services and the stream
 * consumers, binds one SO_REUSEPORT socket per listen address per loop,
 * starts one thread per loop, and waits for SIGINT/SIGTERM on the main
 * thread. Then it drains: listeners close, idle connections close, busy
 * ones finish their current answer, bounded by shutdown_timeout. Then, in
 * order: every loop hands its captured records to the streams; on loop 0
 * the consumers, the async invocation queues, the function pools and the
 * streams stop (the streams write and acknowledge everything they
 * accepted); the loops stop, and the process exits 0. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/version.h"
#include "gateway/gateway.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "stream/consumer.h"
#include "stream/stream.h"
#include "stream/check.h"

/* The smallest body limit of the api listener: above the 6 MiB of a
 * synchronous Invoke payload, with room for the envelope. */
#define API_MAX_BODY_BYTES (7u << 20)

typedef struct {
    lv_http_server_t *public_server;
    lv_http_server_t *admin_server; /* attached to loop 0 only; may be NULL */
    lv_http_server_t *api_server;   /* on every loop; may be NULL */
    lv_gateway_t *gateway;
    lv_api_t *api;
    lv_streams_t *streams;
    lv_consumers_t *consumers;
    sem_t services_stopped;         /* posted once the functions, queues and streams have stopped */
    sem_t captures_flushed;         /* posted by each loop once its captured records are handed over */
} app_t;

typedef struct {
    lv_loop_t *loop;
    app_t *app;
    pthread_t thread;
} worker_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: levee serve [-c FILE]    run the gateway (default config ./levee.yaml)\n"
               "       levee check [-c FILE]    validate a config and print every problem\n"
               "       levee check-data DIR [--repair]\n"
               "                                verify the stream logs in a data_dir (--repair cuts damage)\n"
               "       levee version            print the version\n");
}

static const char *config_path(int argc, char **argv)
{
    const char *path = "levee.yaml";
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "levee: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            exit(2);
        }
    }
    return path;
}

static unsigned loop_count(const lv_config_t *cfg)
{
    if (cfg->threads > 0)
        return (unsigned)cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void print_errors(const lv_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "%s\n", errs->items[i]);
}

/* Loads the config and builds the gateway: the whole of `check`, and the
 * first half of `serve`. Returns NULL after printing every problem. */
static lv_gateway_t *load(const char *path, lv_config_t *cfg, unsigned *nloops)
{
    lv_config_errors_t errs = {0};
    if (lv_config_load(path, cfg, &errs) < 0) {
        print_errors(&errs);
        lv_config_errors_free(&errs);
        return NULL;
    }
    *nloops = loop_count(cfg);
    lv_gateway_t *gw = lv_gateway_new(cfg, *nloops, &errs);
    if (!gw) {
        print_errors(&errs);
        lv_config_errors_free(&errs);
        lv_config_free(cfg);
        return NULL;
    }
    lv_config_errors_free(&errs);
    return gw;
}

static int cmd_check(const char *path)
{
    lv_config_t cfg;
    unsigned nloops;
    lv_gateway_t *gw = load(path, &cfg, &nloops);
    if (!gw)
        return 1;
    printf("%s: ok (%zu routes, %zu origins, %zu functions)\n", path, cfg.num_routes, cfg.num_origins,
           cfg.num_functions);
    lv_gateway_free(gw);
    lv_config_free(&cfg);
    return 0;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    lv_metrics_thread_init(lv_loop_index(w->loop));
    lv_gateway_start_loop(w->app->gateway, w->loop);
    if (lv_loop_index(w->loop) == 0)
        lv_api_start(w->app->api, w->loop);
    if (lv_loop_index(w->loop) == 0)
        lv_consumers_start(w->app->consumers, w->loop);
    lv_loop_run(w->loop);
    return NULL;
}

/* Posted to every loop when a signal arrives. */
/* Posted to every loop after draining, before the streams stop. */
static void flush_captures(lv_loop_t *loop, void *arg)
{
    app_t *app = arg;
    lv_gateway_flush_captures(app->gateway, loop);
    sem_post(&app->captures_flushed);
}

static void drain_loop(lv_loop_t *loop, void *arg)
{
    app_t *app = arg;
    lv_http_server_drain(app->public_server, loop);
    if (app->admin_server && lv_loop_index(loop) == 0)
        lv_http_server_drain(app->admin_server, loop);
    if (app->api_server)
        lv_http_server_drain(app->api_server, loop);
}

/* On loop 0, after draining: the async queues stop, then the function pools
 * (whose last results are posted to the loops before stop_loop is), then
 * the streams (which acknowledge every append they accepted and finish the
 * reads in flight, so the Kinesis API's last answers are written before the
 * loops stop), then the main thread is told. */
static void streams_stopped(lv_loop_t *loop, void *arg)
{
    (void)loop;
    app_t *app = arg;
    sem_post(&app->services_stopped);
}

static void functions_stopped(lv_loop_t *loop, void *arg)
{
    app_t *app = arg;
    lv_streams_stop(app->streams, loop, streams_stopped, app);
}

static void queues_stopped(lv_loop_t *loop, void *arg)
{
    app_t *app = arg;
    lv_functions_t *fns = lv_gateway_functions(app->gateway);
    if (fns)
        lv_functions_stop(fns, lv_loop_now_ms(loop), functions_stopped, app);
    else
        functions_stopped(loop, app);
}

static void consumers_stopped(lv_loop_t *loop, void *arg)
{
    (void)loop;
    app_t *app = arg;
    lv_api_stop(app->api, queues_stopped, app);
}

static void stop_services(lv_loop_t *loop, void *arg)
{
    (void)loop;
    app_t *app = arg;
    lv_consumers_stop(app->consumers, consumers_stopped, app);
}

/* Posted to every loop once draining is over (or timed out). */
static void stop_loop(lv_loop_t *loop, void *arg)
{
    app_t *app = arg;
    lv_http_server_close_all(app->public_server, loop);
    if (app->admin_server && lv_loop_index(loop) == 0)
        lv_http_server_close_all(app->admin_server, loop);
    if (app->api_server)
        lv_http_server_close_all(app->api_server, loop);
    lv_gateway_close_loop(app->gateway, loop);
    lv_loop_stop(loop);
}

static int bind_all(const lv_config_listen_t *addrs, size_t n, unsigned nloops, lv_http_server_t *server,
                    worker_t *workers)
{
    char err[256];
    for (size_t a = 0; a < n; a++)
        for (unsigned i = 0; i < nloops; i++) {
            int fd = lv_http_listen((const struct sockaddr *)&addrs[a].addr, addrs[a].addr_len, err, sizeof err);
            if (fd < 0) {
                lv_log_error("main", "cannot listen on %s: %s", addrs[a].text, err);
                return -1;
            }
            lv_http_server_attach(server, workers[i].loop, fd);
        }
    return 0;
}

static void wait_for_drain(const app_t *app, int64_t timeout_ms)
{
    uint64_t deadline = lv_clock_ns() + (uint64_t)timeout_ms * 1000000u;
    while (lv_clock_ns() < deadline) {
        uint64_t open = lv_http_server_open_connections(app->public_server);
        if (app->admin_server)
            open += lv_http_server_open_connections(app->admin_server);
        if (app->api_server)
            open += lv_http_server_open_connections(app->api_server);
        if (open == 0)
            return;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    lv_log_warn("main", "shutdown_timeout reached with connections still open: closing them");
}

static int cmd_serve(const char *path)
{
    lv_config_t cfg;
    unsigned nloops;
    lv_gateway_t *gw = load(path, &cfg, &nloops);
    if (!gw)
        return 1;
    lv_log_set_level((lv_log_level_t)cfg.log_level);

    /* Signals are taken synchronously by the main thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    app_t app = {.gateway = gw};
    sem_init(&app.services_stopped, 0, 0);
    sem_init(&app.captures_flushed, 0, 0);
    lv_config_errors_t errs = {0};
    app.streams = lv_streams_open(&cfg, lv_gateway_metrics(gw), &errs);
    if (app.streams)
        app.api = lv_api_new(&cfg, lv_gateway_functions(gw), app.streams, lv_gateway_metrics(gw), &errs);
    if (app.api)
        app.consumers = lv_consumers_open(&cfg, app.streams, lv_gateway_functions(gw), lv_gateway_metrics(gw), &errs);
    if (!app.consumers) {
        lv_api_free(app.api);
        app.api = NULL;
    }
    if (!app.api) {
        print_errors(&errs);
        lv_config_errors_free(&errs);
        lv_streams_free(app.streams);
        lv_gateway_free(gw);
        lv_config_free(&cfg);
        return 1;
    }
    lv_config_errors_free(&errs);
    lv_gateway_set_streams(gw, app.streams);
    lv_streams_start(app.streams);
    /* The api listener takes the public limits, except that its bodies may
     * exceed the largest request an AWS API accepts (6 MiB for a synchronous
     * Invoke), so that such a request gets the API's own JSON error
     * (RequestTooLargeException) instead of the listener's plain 413. */
    lv_config_limits_t api_limits = cfg.limits;
    if (api_limits.max_body_bytes < API_MAX_BODY_BYTES)
        api_limits.max_body_bytes = API_MAX_BODY_BYTES;
    if (cfg.api_enabled)
        app.api_server = lv_http_server_new(&api_limits, nloops, lv_api_handle, app.api);
    app.public_server = lv_http_server_new(&cfg.limits, nloops, lv_gateway_handle, gw);
    lv_gateway_set_server(gw, app.public_server);
    if (cfg.admin_enabled)
        app.admin_server = lv_http_server_new(&cfg.limits, nloops, lv_gateway_admin_handle, gw);

    worker_t *workers = lv_calloc(nloops, sizeof *workers);
    int rc = 0;
    for (unsigned i = 0; i < nloops; i++) {
        workers[i].loop = lv_loop_new(i);
        workers[i].app = &app;
        if (!workers[i].loop) {
            lv_log_error("main", "cannot create event loop: %s", strerror(errno));
            return 1;
        }
    }
    if (bind_all(cfg.listen, cfg.num_listen, nloops, app.public_server, workers) < 0 ||
        (app.admin_server && bind_all(&cfg.admin_listen, 1, 1, app.admin_server, workers) < 0) ||
        (app.api_server && bind_all(&cfg.api_listen, 1, nloops, app.api_server, workers) < 0))
        return 1;

    for (unsigned i = 0; i < nloops; i++)
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    for (size_t a = 0; a < cfg.num_listen; a++)
        lv_log_info("main", "levee %s listening on %s (%u threads)", LV_VERSION, cfg.listen[a].text, nloops);
    if (app.admin_server)
        lv_log_info("main", "admin on %s (/metrics, /status)", cfg.admin_listen.text);
    if (app.api_server)
        lv_log_info("main", "AWS-compatible api on %s", cfg.api_listen.text);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    lv_log_info("main", "%s: draining (up to %lld ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                (long long)cfg.shutdown_timeout_ms);
    for (unsigned i = 0; i < nloops; i++)
        lv_loop_post(workers[i].loop, drain_loop, &app);
    wait_for_drain(&app, cfg.shutdown_timeout_ms);
    for (unsigned i = 0; i < nloops; i++)
        lv_loop_post(workers[i].loop, flush_captures, &app);
    for (unsigned i = 0; i < nloops; i++)
        while (sem_wait(&app.captures_flushed) != 0) {
        }
    lv_loop_post(workers[0].loop, stop_services, &app);
    while (sem_wait(&app.services_stopped) != 0) {
    }
    for (unsigned i = 0; i < nloops; i++)
        lv_loop_post(workers[i].loop, stop_loop, &app);
    for (unsigned i = 0; i < nloops; i++)
        pthread_join(workers[i].thread, NULL);
    for (unsigned i = 0; i < nloops; i++)
        lv_loop_free(workers[i].loop);
    free(workers);
    lv_http_server_free(app.public_server);
    lv_http_server_free(app.admin_server);
    lv_http_server_free(app.api_server);
    lv_api_free(app.api);
    lv_consumers_free(app.consumers);
    sem_destroy(&app.services_stopped);
    sem_destroy(&app.captures_flushed);
    /* The gateway's captures drop their stream references as it is freed,
     * so the streams go after it. */
    lv_gateway_free(gw);
    lv_streams_free(app.streams);
    lv_config_free(&cfg);
    lv_log_info("main", "stopped");
    return rc;
}

/* levee check-data DIR [--repair]: see stream/check.h. Exits 0 when
 * clean (or repaired), 1 when damaged, 2 on a usage error or a data_dir it
 * cannot check. */
static int cmd_check_data(int argc, char **argv)
{
    const char *dir = NULL;
    bool repair = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--repair") == 0)
            repair = true;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "levee: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    return lv_stream_check_data(dir, repair, stdout, stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("levee %s\n", LV_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(config_path(argc, argv));
    if (strcmp(cmd, "check-data") == 0)
        return cmd_check_data(argc, argv);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(config_path(argc, argv));
    fprintf(stderr, "levee: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
