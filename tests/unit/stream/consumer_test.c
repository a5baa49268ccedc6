/* consumer_test.c: stream consumers (stream/consumer.h) with a real stream
 * in a scratch data_dir and real function workers.
 *
 * One home loop (index 0) runs in a thread for the whole program; the test
 * thread posts work to it and waits. Every test builds its own config by
 * hand: one stream, one `provided` function whose python3 bootstrap appends
 * every event it gets to a file (one JSON line per invocation: the time,
 * whether it will succeed, and the event) and then succeeds or fails as
 * its MODE says (ok, fail, crash, fail_first FAILS times, slow), and one
 * consumer. The test reads that file back to see what the function saw.
 *
 * Each test is split in two: test_x sets up, calls check_x, and always
 * tears down (consumers, then functions, then streams, as levee does), so a
 * failed check never leaves workers or threads behind. Waits are bounded;
 * the whole program checks at the end that no file descriptor leaked. */
#include "stream/consumer.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/mem.h"
#include "stream/consumer_format.h"
#include "stream/seqnum.h"
#include "test.h"

/* ---- the loop ---- */

static lv_loop_t *home;
static pthread_t home_thread;

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

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

/* Runs cb(loop, arg) on the home loop and waits for it. */
static void run_home(lv_post_cb cb, void *arg)
{
    sync_call_t s = {cb, arg, 0};
    lv_loop_post(home, run_sync, &s);
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

/* ---- files ---- */

static char scratch[200];

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

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    lv_buf_t b = LV_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        lv_buf_append(&b, chunk, n);
    fclose(f);
    *len = lv_buf_len(&b);
    char *out = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    return out;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static size_t count_lines(const char *path)
{
    size_t len, n = 0;
    char *text = read_file(path, &len);
    for (size_t i = 0; text && i < len; i++)
        n += text[i] == '\n';
    free(text);
    return n;
}

static const char *bootstrap =
    "#!/usr/bin/python3\n"
    "import http.client, json, os, time\n"
    "host, port = os.environ['AWS_LAMBDA_RUNTIME_API'].split(':')\n"
    "out = os.environ['OUT']\n"
    "mode = os.environ.get('MODE', 'ok')\n"
    "fails = int(os.environ.get('FAILS', '0'))\n"
    "counter = out + '.count'\n"
    "API = '/2018-06-01/runtime'\n"
    "conn = http.client.HTTPConnection(host, int(port))\n"
    "while True:\n"
    "    conn.request('GET', API + '/invocation/next')\n"
    "    r = conn.getresponse()\n"
    "    body = r.read()\n"
    "    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')\n"
    "    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "    os.write(fd, b'x')\n"
    "    n = os.fstat(fd).st_size\n"
    "    os.close(fd)\n"
    "    fail = mode in ('fail', 'crash') or (mode == 'fail_first' and n <= fails)\n"
    "    line = json.dumps({'t': time.time(), 'ok': not fail, 'event': json.loads(body)}) + '\\n'\n"
    "    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "    os.write(fd, line.encode())\n"
    "    os.close(fd)\n"
    "    base = API + '/invocation/' + rid\n"
    "    if mode == 'slow':\n"
    "        time.sleep(0.5)\n"
    "    if fail and mode == 'crash':\n"
    "        os._exit(1)\n"
    "    if fail:\n"
    "        conn.request('POST', base + '/error', json.dumps({'errorMessage': 'boom', 'errorType': 'TestError'}),\n"
    "                     {'Lambda-Runtime-Function-Error-Type': 'TestError'})\n"
    "    else:\n"
    "        conn.request('POST', base + '/response', '{}')\n"
    "    conn.getresponse().read()\n";

/* ---- what the function saw ---- */

typedef struct {
    unsigned shard;
    uint64_t seq;
    char data[64];
} seen_rec_t;

typedef struct {
    double t;            /* Unix seconds */
    bool ok;
    size_t first, n;     /* its records in seen_t.rec */
    bool one_shard;      /* every record from the same shard, eventIDs and ARN right */
} seen_inv_t;

typedef struct {
    seen_inv_t inv[512];
    size_t ninv;
    seen_rec_t rec[4096];
    size_t nrec;
    size_t ok_records;
    bool malformed;
} seen_t;

static void seen_load(const char *path, const char *stream, seen_t *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return;
    char arn[256];
    snprintf(arn, sizeof arn, "arn:aws:kinesis:us-east-1:000000000000:stream/%s", stream);
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL && out->ninv < 512; line = nl + 1) {
        json_t *v = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, NULL);
        json_t *recs = json_object_get(json_object_get(v, "event"), "Records");
        if (!v || !json_is_array(recs)) {
            out->malformed = true;
            json_decref(v);
            continue;
        }
        seen_inv_t *inv = &out->inv[out->ninv++];
        inv->t = json_number_value(json_object_get(v, "t"));
        inv->ok = json_is_true(json_object_get(v, "ok"));
        inv->first = out->nrec;
        inv->one_shard = true;
        for (size_t i = 0; i < json_array_size(recs) && out->nrec < 4096; i++) {
            json_t *r = json_array_get(recs, i);
            json_t *k = json_object_get(r, "kinesis");
            seen_rec_t *sr = &out->rec[out->nrec++];
            inv->n++;
            if (lv_seqnum_parse(lv_slice_cstr(json_string_value(json_object_get(k, "sequenceNumber"))), &sr->shard,
                                &sr->seq) != 0)
                out->malformed = true;
            lv_buf_t d = LV_BUF_INIT;
            if (lv_base64_decode(lv_slice_cstr(json_string_value(json_object_get(k, "data"))), &d, true) != 0)
                out->malformed = true;
            snprintf(sr->data, sizeof sr->data, "%.*s", (int)lv_buf_len(&d), lv_buf_data(&d) ? lv_buf_data(&d) : "");
            lv_buf_free(&d);
            char id[128], seq[LV_SEQNUM_MAX];
            lv_seqnum_format(sr->shard, sr->seq, seq);
            snprintf(id, sizeof id, "shardId-%012u:%s", sr->shard, seq);
            const char *got_id = json_string_value(json_object_get(r, "eventID"));
            const char *got_arn = json_string_value(json_object_get(r, "eventSourceARN"));
            if (!got_id || strcmp(got_id, id) != 0 || !got_arn || strcmp(got_arn, arn) != 0 ||
                sr->shard != out->rec[inv->first].shard)
                inv->one_shard = false;
        }
        if (inv->ok)
            out->ok_records += inv->n;
        json_decref(v);
    }
    free(text);
}

static size_t ok_records(const char *path, const char *stream)
{
    seen_t *s = malloc(sizeof *s);
    seen_load(path, stream, s);
    size_t n = s->ok_records;
    free(s);
    return n;
}

/* ---- the environment of one test ---- */

typedef struct {
    char dir[256];
    char data_dir[300];
    char code[300];
    char out[300];
    char dead_letter[600];
    char fails[16];
    lv_config_t cfg;
    lv_config_stream_t stream;
    lv_config_function_t fn;
    lv_config_header_t env[3];
    lv_config_consumer_t cons;
    lv_metrics_t *metrics;
    lv_streams_t *streams;
    lv_stream_t *s;          /* referenced while open */
    lv_functions_t *fns;
    lv_consumers_t *cs;
    bool fns_started, consumers_started, consumers_stopped;
} env_t;

static unsigned test_counter;

static void env_init(env_t *e, unsigned shards, const char *mode, int fails)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "%s/t%u", scratch, ++test_counter);
    mkdir(e->dir, 0755);
    snprintf(e->data_dir, sizeof e->data_dir, "%s/data", e->dir);
    snprintf(e->code, sizeof e->code, "%s/code", e->dir);
    snprintf(e->out, sizeof e->out, "%s/seen.jsonl", e->dir);
    mkdir(e->code, 0755);
    char file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/bootstrap", e->code);
    write_file(file, bootstrap, strlen(bootstrap));
    chmod(file, 0755);

    e->stream = (lv_config_stream_t){
        .name = "clicks",
        .shards = shards,
        .retention_ms = 24 * 3600 * 1000LL,
        .durability = LV_DURABILITY_FSYNC,
        .sync_interval_ms = 5,
        .segment_bytes = 1 << 20,
        .max_pending_bytes = 64 << 20,
    };
    snprintf(e->fails, sizeof e->fails, "%d", fails);
    e->env[0] = (lv_config_header_t){"OUT", e->out};
    e->env[1] = (lv_config_header_t){"MODE", (char *)mode};
    e->env[2] = (lv_config_header_t){"FAILS", e->fails};
    e->fn = (lv_config_function_t){
        .name = "agg",
        .runtime = LV_RUNTIME_PROVIDED,
        .code = e->code,
        .env = e->env,
        .num_env = 3,
        .memory_mb = 128,
        .timeout_ms = 5000,
        .init_timeout_ms = 10000,
        .max = 4,
        .idle_timeout_ms = 300000,
        .queue = {.enabled = true, .max = 100, .timeout_ms = 10000},
        .pos = {1, 1},
    };
    snprintf(e->dead_letter, sizeof e->dead_letter, "%s/consumers/clicks-agg/dead-letter.jsonl", e->data_dir);
    e->cons = (lv_config_consumer_t){
        .name = "clicks-agg",
        .stream = 0,
        .function = 0,
        .batch_size = 100,
        .batching_window_ms = 0,
        .starting_position = LV_START_TRIM_HORIZON,
        .max_retries = -1,
        .retry_backoff_ms = 100,
        .pos = {7, 3},
    };
    e->cfg.path = "test.yaml";
    e->cfg.data_dir = e->data_dir;
    e->cfg.streams = &e->stream;
    e->cfg.num_streams = 1;
    e->cfg.functions = &e->fn;
    e->cfg.num_functions = 1;
    e->cfg.consumers = &e->cons;
    e->cfg.num_consumers = 1;
}

static void print_errors(lv_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "  config: %s\n", errs->items[i]);
    lv_config_errors_free(errs);
}

/* Opens the streams and the function pool (started), not the consumers. */
static bool env_open_base(env_t *e)
{
    lv_config_errors_t errs = {0};
    e->metrics = lv_metrics_new(1);
    e->streams = lv_streams_open(&e->cfg, e->metrics, &errs);
    if (!e->streams) {
        print_errors(&errs);
        return false;
    }
    lv_streams_start(e->streams);
    e->s = lv_streams_find(e->streams, LV_SLICE_LIT("clicks"));
    e->fns = lv_functions_new(&e->cfg, e->metrics, &errs);
    print_errors(&errs);
    return e->s && e->fns;
}

static void do_start_fns(lv_loop_t *loop, void *arg) { lv_functions_start(arg, loop); }
static void do_start_consumers(lv_loop_t *loop, void *arg) { lv_consumers_start(arg, loop); }

static void start_fns(env_t *e)
{
    run_home(do_start_fns, e->fns);
    e->fns_started = true;
}

/* Opens the consumers; false (errors printed unless quiet) if refused. */
static bool env_open_consumers(env_t *e, lv_config_errors_t *errs_out)
{
    lv_config_errors_t errs = {0};
    e->cs = lv_consumers_open(&e->cfg, e->streams, e->fns, e->metrics, &errs);
    if (errs_out)
        *errs_out = errs;
    else
        print_errors(&errs);
    return e->cs != NULL;
}

static void start_consumers(env_t *e)
{
    run_home(do_start_consumers, e->cs);
    e->consumers_started = true;
}

/* With the base open: functions started, consumers opened and started. */
static bool env_up(env_t *e)
{
    start_fns(e);
    if (!env_open_consumers(e, NULL))
        return false;
    start_consumers(e);
    return true;
}

typedef struct {
    env_t *e;
    int done;
    uint64_t at_ms;
} stop_t;

static void stopped(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    (void)loop;
    st->at_ms = now_ms();
    __atomic_store_n(&st->done, 1, __ATOMIC_SEQ_CST);
}

static void do_stop_consumers(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    (void)loop;
    lv_consumers_stop(st->e->cs, stopped, st);
}

/* Stops the consumers and waits; returns when done ran (ms), 0 if it hung. */
static uint64_t stop_consumers(env_t *e)
{
    e->consumers_stopped = true;
    stop_t st = {e, 0, 0};
    run_home(do_stop_consumers, &st);
    WAIT_FOR(__atomic_load_n(&st.done, __ATOMIC_SEQ_CST), 20000);
    return st.done ? st.at_ms : 0;
}

static void do_stop_fns(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    lv_functions_stop(st->e->fns, lv_loop_now_ms(loop) + 2000, stopped, st);
}

static void do_free_fns(lv_loop_t *loop, void *arg)
{
    (void)loop;
    lv_functions_free(arg);
}

static void do_stop_streams(lv_loop_t *loop, void *arg)
{
    stop_t *st = arg;
    lv_streams_stop(st->e->streams, loop, stopped, st);
}

/* Stops and frees everything in levee's order: consumers, functions,
 * streams. Returns false if a stop hung (then things are left as they are:
 * the program is failing anyway). */
static bool env_down(env_t *e)
{
    bool ok = true;
    if (e->cs) {
        if (!e->consumers_stopped)
            ok = stop_consumers(e) != 0;
        if (!ok) {
            fprintf(stderr, "  consumers did not stop\n");
            return false;
        }
        lv_consumers_free(e->cs);
        e->cs = NULL;
    }
    if (e->fns) {
        if (e->fns_started) {
            stop_t st = {e, 0, 0};
            run_home(do_stop_fns, &st);
            WAIT_FOR(__atomic_load_n(&st.done, __ATOMIC_SEQ_CST), 20000);
            if (!st.done) {
                fprintf(stderr, "  functions did not stop\n");
                return false;
            }
        }
        run_home(nothing, NULL);
        run_home(do_free_fns, e->fns);
        e->fns = NULL;
        e->fns_started = false;
    }
    if (e->s) {
        lv_stream_unref(e->s);
        e->s = NULL;
    }
    if (e->streams) {
        stop_t st = {e, 0, 0};
        run_home(do_stop_streams, &st);
        WAIT_FOR(__atomic_load_n(&st.done, __ATOMIC_SEQ_CST), 20000);
        if (!st.done) {
            fprintf(stderr, "  streams did not stop\n");
            return false;
        }
        run_home(nothing, NULL);
        lv_streams_free(e->streams);
        e->streams = NULL;
    }
    /* Rendering after the consumers are gone must not touch them. */
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render(e->metrics, &b);
    lv_buf_free(&b);
    lv_metrics_free(e->metrics);
    e->metrics = NULL;
    e->consumers_started = e->consumers_stopped = false;
    return ok;
}

/* ---- appending ---- */

typedef struct {
    lv_stream_t *s;
    unsigned shard;
    size_t n;
    const char *tag;
    size_t first_index;
    int done, err;
    uint64_t first_seq;
} put_t;

static void put_done(void *arg, const lv_stream_put_result_t *res, size_t n)
{
    put_t *p = arg;
    p->err = n ? res[0].err : EINVAL;
    p->first_seq = n ? res[0].seq : 0;
    __atomic_store_n(&p->done, 1, __ATOMIC_SEQ_CST);
}

static void do_put(lv_loop_t *loop, void *arg)
{
    put_t *p = arg;
    lv_stream_put_t recs[500];
    char keys[500][32], datas[500][64];
    for (size_t i = 0; i < p->n; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%zu", p->first_index + i);
        snprintf(datas[i], sizeof datas[i], "%s-s%u-%zu", p->tag, p->shard, p->first_index + i);
        recs[i] = (lv_stream_put_t){p->shard, lv_slice_cstr(keys[i]), lv_slice_cstr(datas[i])};
    }
    int rc = lv_stream_append(p->s, recs, p->n, loop, put_done, p);
    if (rc) {
        p->err = rc;
        __atomic_store_n(&p->done, 1, __ATOMIC_SEQ_CST);
    }
}

/* Appends n records to one shard, data "TAG-sSHARD-INDEX", and waits for
 * the acknowledgement. Returns the first sequence number, 0 on failure. */
static uint64_t put(env_t *e, unsigned shard, const char *tag, size_t first_index, size_t n)
{
    put_t p = {.s = e->s, .shard = shard, .n = n, .tag = tag, .first_index = first_index};
    run_home(do_put, &p);
    WAIT_FOR(__atomic_load_n(&p.done, __ATOMIC_SEQ_CST), 10000);
    if (!p.done || p.err) {
        fprintf(stderr, "  append failed: %s\n", p.done ? strerror(p.err) : "timed out");
        return 0;
    }
    return p.first_seq;
}

static bool stats_of(env_t *e, unsigned shard, lv_consumer_stats_t *st)
{
    return lv_consumers_stats(e->cs, 0, shard, st) == 0;
}

/* Records the consumer has seen succeed, all shards (the function's own
 * log runs ahead of this: it writes before it answers). */
static uint64_t records_done(env_t *e)
{
    uint64_t n = 0;
    lv_consumer_stats_t st;
    for (unsigned k = 0; lv_consumers_stats(e->cs, 0, k, &st) == 0; k++)
        n += st.records_ok;
    return n;
}

static uint64_t checkpoint_next_seq(env_t *e, unsigned shard)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/consumers/clicks-agg/shardId-%012u.checkpoint", e->data_dir, shard);
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return 0;
    lv_checkpoint_t cp;
    const char *why = lv_checkpoint_decode(text, len, &cp);
    free(text);
    return why ? 0 : cp.next_seq;
}

/* ======================================================================
 * Tests
 * ====================================================================== */

/* Records reach the function in order per shard, each once, in batches of
 * at most batch_size, whether appended before or after the start. */
static void check_order(env_t *e)
{
    CHECK(put(e, 0, "a", 0, 20));
    CHECK(put(e, 1, "a", 0, 20));
    CHECK(env_up(e));
    CHECK(put(e, 0, "a", 20, 5));
    CHECK(put(e, 1, "a", 20, 5));
    CHECK(put(e, 0, "a", 25, 5));
    CHECK(put(e, 1, "a", 25, 5));
    WAIT_FOR(records_done(e) >= 60, 20000);
    sleep_ms(200);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t n = s->nrec, ninv = s->ninv;
    bool malformed = s->malformed;
    uint64_t expect[2] = {1, 1};
    bool in_order = true, one_shard = true, small = true, data_ok = true;
    for (size_t i = 0; i < s->ninv; i++) {
        one_shard &= s->inv[i].one_shard && s->inv[i].ok;
        small &= s->inv[i].n >= 1 && s->inv[i].n <= 7;
    }
    for (size_t i = 0; i < s->nrec; i++) {
        seen_rec_t *r = &s->rec[i];
        if (r->shard > 1 || r->seq != expect[r->shard]) {
            in_order = false;
            continue;
        }
        char want[64];
        snprintf(want, sizeof want, "a-s%u-%llu", r->shard, (unsigned long long)(r->seq - 1));
        data_ok &= strcmp(want, r->data) == 0;
        expect[r->shard]++;
    }
    free(s);
    CHECK(!malformed);
    CHECK_EQ(n, 60);
    CHECK(in_order);
    CHECK(data_ok);
    CHECK(one_shard);
    CHECK(small);
    CHECK_INT(ninv, >=, 10); /* 30 records per shard in batches of at most 7 */
    lv_consumer_stats_t st;
    for (unsigned k = 0; k < 2; k++) {
        CHECK(stats_of(e, k, &st));
        CHECK_EQ(st.next_seq, 31);
        CHECK_EQ(st.records_ok, 30);
        CHECK_EQ(st.lag_records, 0);
        CHECK_EQ(st.lag_ms, 0);
        CHECK_EQ(st.batches_failed, 0);
        CHECK_INT(st.batches_ok, >=, 5);
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render(e->metrics, &b);
    lv_buf_append(&b, "", 1);
    CHECK(strstr(lv_buf_data(&b), "levee_consumer_lag_records{consumer=\"clicks-agg\",stream=\"clicks\","
                                  "shard=\"1\"} 0"));
    CHECK(strstr(lv_buf_data(&b), "levee_consumer_records_total{consumer=\"clicks-agg\",stream=\"clicks\","
                                  "shard=\"0\",result=\"ok\"} 30"));
    CHECK(strstr(lv_buf_data(&b), "levee_consumer_invocation_seconds_count{consumer=\"clicks-agg\""));
    lv_buf_free(&b);
    CHECK(stop_consumers(e));
    CHECK_EQ(checkpoint_next_seq(e, 0), 31);
    CHECK_EQ(checkpoint_next_seq(e, 1), 31);
}

static void test_order_per_shard(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 2, "ok", 0);
    e->cons.batch_size = 7;
    if (env_open_base(e)) {
        check_order(e);
    } else {
        CHECK(!"open");
    }
    env_down(e);
    free(e);
}

/* Lag in records and time while the consumer is not running yet. */
static void check_lag(env_t *e)
{
    CHECK(put(e, 0, "l", 0, 3));
    sleep_ms(30);
    CHECK(put(e, 0, "l", 3, 2));
    CHECK(env_open_consumers(e, NULL));
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.next_seq, 1);
    CHECK_EQ(st.lag_records, 5);
    /* Nothing processed and nothing held yet: the time lag is unknown. */
    CHECK_EQ(st.lag_ms, 0);
    CHECK(lv_consumers_stats(e->cs, 0, 1, &st) == -1);
    CHECK(lv_consumers_stats(e->cs, 1, 0, &st) == -1);
    CHECK_EQ(lv_consumers_count(e->cs), 1);
    CHECK_STR(lv_consumers_name(e->cs, 0), "clicks-agg");
}

static void test_lag_before_start(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    if (env_open_base(e))
        check_lag(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* With a window, records arriving within it go in one batch, sent once the
 * window since the first one's arrival has passed. */
static void check_window(env_t *e)
{
    CHECK(env_up(e));
    uint64_t t0 = wall_ms();
    CHECK(put(e, 0, "w", 0, 1));
    sleep_ms(100);
    CHECK(put(e, 0, "w", 1, 1));
    sleep_ms(100);
    CHECK(put(e, 0, "w", 2, 1));
    WAIT_FOR(ok_records(e->out, "clicks") >= 3, 10000);
    sleep_ms(200);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t ninv = s->ninv, n0 = s->ninv ? s->inv[0].n : 0;
    double t = s->ninv ? s->inv[0].t : 0;
    free(s);
    CHECK_EQ(ninv, 1);
    CHECK_EQ(n0, 3);
    CHECK_INT((long long)(t * 1000), >=, (long long)t0 + 750);
}

static void test_batching_window(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    e->cons.batching_window_ms = 800;
    if (env_open_base(e))
        check_window(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* A full batch does not wait for the window; the rest does. */
static void check_window_full(env_t *e)
{
    CHECK(env_up(e));
    uint64_t t0 = wall_ms();
    CHECK(put(e, 0, "f", 0, 7));
    WAIT_FOR(ok_records(e->out, "clicks") >= 7, 10000);
    sleep_ms(100);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t ninv = s->ninv;
    size_t sizes[3] = {0};
    double last_t = ninv ? s->inv[ninv - 1].t : 0;
    for (size_t i = 0; i < ninv && i < 3; i++)
        sizes[i] = s->inv[i].n;
    free(s);
    CHECK_EQ(ninv, 3);
    CHECK_EQ(sizes[0], 3);
    CHECK_EQ(sizes[1], 3);
    CHECK_EQ(sizes[2], 1);
    CHECK_INT((long long)(last_t * 1000), >=, (long long)t0 + 750);
}

static void test_batch_size_before_window(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    e->cons.batch_size = 3;
    e->cons.batching_window_ms = 800;
    if (env_open_base(e))
        check_window_full(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* After a clean stop and start (of everything), nothing already processed
 * runs again, and what came in between is processed. */
static void check_restart(env_t *e)
{
    CHECK(put(e, 0, "r", 0, 15));
    CHECK(put(e, 1, "r", 0, 15));
    CHECK(env_up(e));
    WAIT_FOR(ok_records(e->out, "clicks") >= 30, 20000);
    CHECK_EQ(ok_records(e->out, "clicks"), 30);
    CHECK(env_down(e));
    CHECK(env_open_base(e));
    CHECK(put(e, 0, "r", 15, 5));
    CHECK(put(e, 1, "r", 15, 5));
    start_fns(e);
    CHECK(env_open_consumers(e, NULL));
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.next_seq, 16);
    CHECK_EQ(st.lag_records, 5);
    start_consumers(e);
    WAIT_FOR(records_done(e) >= 10, 20000);
    sleep_ms(300);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t n = s->nrec;
    int times[2][21] = {{0}};
    bool bad = false;
    for (size_t i = 0; i < s->nrec; i++) {
        if (s->rec[i].shard > 1 || s->rec[i].seq < 1 || s->rec[i].seq > 20)
            bad = true;
        else
            times[s->rec[i].shard][s->rec[i].seq]++;
    }
    free(s);
    CHECK(!bad);
    CHECK_EQ(n, 40);
    for (unsigned k = 0; k < 2; k++)
        for (unsigned q = 1; q <= 20; q++)
            CHECK_EQ(times[k][q], 1);
}

static void test_checkpoint_survives_restart(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 2, "ok", 0);
    if (env_open_base(e))
        check_restart(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* A batch that keeps failing runs 1 + max_retries times with doubling
 * waits, then goes to the dead-letter file and the consumer moves on. */
static void check_dead_letter(env_t *e)
{
    CHECK(put(e, 0, "d", 0, 3));
    CHECK(env_up(e));
    WAIT_FOR(count_lines(e->dead_letter) >= 1, 15000);
    sleep_ms(400);
    CHECK_EQ(count_lines(e->dead_letter), 1);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t ninv = s->ninv;
    double gap1 = ninv >= 2 ? s->inv[1].t - s->inv[0].t : 0, gap2 = ninv >= 3 ? s->inv[2].t - s->inv[1].t : 0;
    size_t n0 = ninv ? s->inv[0].n : 0;
    free(s);
    CHECK_EQ(ninv, 3);
    CHECK_EQ(n0, 3);
    CHECK((long long)(gap1 * 1000) >= 90);
    CHECK((long long)(gap2 * 1000) >= 190);
    size_t len;
    char *text = read_file(e->dead_letter, &len);
    json_t *v = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    CHECK(v);
    char first[LV_SEQNUM_MAX], last[LV_SEQNUM_MAX];
    lv_seqnum_format(0, 1, first);
    lv_seqnum_format(0, 3, last);
    const char *consumer = json_string_value(json_object_get(v, "consumer"));
    const char *fseq = json_string_value(json_object_get(v, "firstSequenceNumber"));
    const char *lseq = json_string_value(json_object_get(v, "lastSequenceNumber"));
    const char *etype = json_string_value(json_object_get(v, "errorType"));
    const char *emsg = json_string_value(json_object_get(json_object_get(v, "error"), "errorMessage"));
    json_t *recs = json_object_get(v, "records");
    size_t nrecs = json_array_size(recs);
    const char *d2 = json_string_value(json_object_get(json_array_get(recs, 2), "data"));
    long long count = json_integer_value(json_object_get(json_object_get(v, "requestContext"), "approximateInvokeCount"));
    bool consumer_ok = consumer && !strcmp(consumer, "clicks-agg");
    bool seqs_ok = fseq && lseq && !strcmp(fseq, first) && !strcmp(lseq, last);
    bool error_ok = etype && !strcmp(etype, "TestError") && emsg && !strcmp(emsg, "boom");
    bool data_ok = d2 && !strcmp(d2, "ZC1zMC0y"); /* "d-s0-2" */
    json_decref(v);
    CHECK(consumer_ok);
    CHECK(seqs_ok);
    CHECK(error_ok);
    CHECK_EQ(nrecs, 3);
    CHECK(data_ok);
    CHECK_EQ(count, 3);
    lv_consumer_stats_t st = {0};
    WAIT_FOR(stats_of(e, 0, &st) && st.batches_dead_lettered >= 1, 5000);
    CHECK_EQ(st.batches_failed, 3);
    CHECK_EQ(st.batches_dead_lettered, 1);
    CHECK_EQ(st.records_dead_lettered, 3);
    CHECK_EQ(st.records_ok, 0);
    CHECK_EQ(st.next_seq, 4);
    CHECK(stop_consumers(e));
    CHECK_EQ(checkpoint_next_seq(e, 0), 4);
}

static void test_retries_then_dead_letter(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "fail", 0);
    e->cons.max_retries = 2;
    if (env_open_base(e))
        check_dead_letter(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* A crashing worker with max_retries 0: one run, then the dead-letter file
 * named by on_failure, with the crash as the error. */
static void check_crash(env_t *e)
{
    CHECK(put(e, 0, "c", 0, 2));
    CHECK(env_up(e));
    WAIT_FOR(count_lines(e->dead_letter) >= 1, 15000);
    sleep_ms(300);
    CHECK_EQ(count_lines(e->dead_letter), 1);
    CHECK_EQ(count_lines(e->out), 1);
    size_t len;
    char *text = read_file(e->dead_letter, &len);
    json_t *v = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    const char *etype = json_string_value(json_object_get(v, "errorType"));
    bool crash_ok = etype && !strcmp(etype, "Runtime.ExitError");
    json_decref(v);
    CHECK(crash_ok);
    /* The consumer went on: the next record runs (and fails) too. */
    CHECK(put(e, 0, "c", 2, 1));
    WAIT_FOR(count_lines(e->dead_letter) >= 2, 15000);
    CHECK_EQ(count_lines(e->dead_letter), 2);
}

static void test_crash_dead_letter_on_failure_path(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "crash", 0);
    e->cons.max_retries = 0;
    snprintf(e->dead_letter, sizeof e->dead_letter, "%s/elsewhere/failed.jsonl", e->dir);
    e->cons.on_failure = e->dead_letter;
    if (env_open_base(e))
        check_crash(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* Failures below max_retries (here unlimited) end in success: no dead
 * letter, and the batch is counted as failed twice, ok once. */
static void check_retry_success(env_t *e)
{
    CHECK(put(e, 0, "s", 0, 4));
    CHECK(env_up(e));
    WAIT_FOR(records_done(e) >= 4, 15000);
    sleep_ms(200);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t ninv = s->ninv;
    bool same = ninv == 3;
    for (size_t i = 0; same && i < 3; i++)
        same = s->inv[i].n == 4 && s->rec[s->inv[i].first].seq == 1 && s->inv[i].ok == (i == 2);
    free(s);
    CHECK_EQ(ninv, 3);
    CHECK(same);
    CHECK_EQ(count_lines(e->dead_letter), 0);
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.batches_failed, 2);
    CHECK_EQ(st.batches_ok, 1);
    CHECK_EQ(st.batches_dead_lettered, 0);
    CHECK_EQ(st.records_ok, 4);
}

static void test_retry_then_success(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "fail_first", 2);
    e->cons.retry_backoff_ms = 50;
    if (env_open_base(e))
        check_retry_success(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* AT_TIMESTAMP starts at the first record that arrived at or after it. */
static void check_at_timestamp(env_t *e)
{
    CHECK(put(e, 0, "t", 0, 5));
    sleep_ms(50);
    e->cons.starting_timestamp_ms = (int64_t)wall_ms();
    sleep_ms(20);
    CHECK(put(e, 0, "t", 5, 5));
    start_fns(e);
    CHECK(env_open_consumers(e, NULL));
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.next_seq, 0); /* not found yet */
    start_consumers(e);
    WAIT_FOR(records_done(e) >= 5, 15000);
    sleep_ms(300);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t n = s->nrec;
    bool right = true;
    for (size_t i = 0; i < s->nrec; i++)
        right &= s->rec[i].seq == 6 + i;
    free(s);
    CHECK_EQ(n, 5);
    CHECK(right);
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.next_seq, 11);
    /* A timestamp in the future: nothing yet, then what comes after it. */
}

static void test_at_timestamp(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    e->cons.starting_position = LV_START_AT_TIMESTAMP;
    if (env_open_base(e))
        check_at_timestamp(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* LATEST is fixed when the consumer first opens: records appended after
 * that are processed, those before are not, and a restart does not move
 * it. */
static void check_latest(env_t *e)
{
    CHECK(put(e, 0, "L", 0, 5));
    start_fns(e);
    CHECK(env_open_consumers(e, NULL));
    CHECK_EQ(checkpoint_next_seq(e, 0), 6);
    CHECK(put(e, 0, "L", 5, 3));
    start_consumers(e);
    CHECK(put(e, 0, "L", 8, 2));
    WAIT_FOR(ok_records(e->out, "clicks") >= 5, 15000);
    sleep_ms(200);
    seen_t *s = malloc(sizeof *s);
    seen_load(e->out, "clicks", s);
    size_t n = s->nrec;
    bool right = true;
    for (size_t i = 0; i < s->nrec; i++)
        right &= s->rec[i].seq == 6 + i;
    free(s);
    CHECK_EQ(n, 5);
    CHECK(right);
    /* Restart everything: nothing runs again. */
    CHECK(env_down(e));
    CHECK(env_open_base(e));
    start_fns(e);
    CHECK(env_open_consumers(e, NULL));
    start_consumers(e);
    sleep_ms(400);
    CHECK_EQ(ok_records(e->out, "clicks"), 5);
    CHECK(put(e, 0, "L", 10, 1));
    WAIT_FOR(ok_records(e->out, "clicks") >= 6, 15000);
    CHECK_EQ(ok_records(e->out, "clicks"), 6);
}

static void test_latest(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    e->cons.starting_position = LV_START_LATEST;
    if (env_open_base(e))
        check_latest(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* Stop waits for the invocation in flight and writes its checkpoint
 * before reporting done. */
static void check_stop_waits(env_t *e)
{
    CHECK(env_up(e));
    CHECK(put(e, 0, "x", 0, 1));
    /* The slow function has logged the event and sleeps 0.5 s. */
    WAIT_FOR(count_lines(e->out) >= 1, 15000);
    CHECK_EQ(count_lines(e->out), 1);
    uint64_t asked = now_ms();
    uint64_t done = stop_consumers(e);
    CHECK(done);
    CHECK_INT(done - asked, >=, 200);
    CHECK_EQ(checkpoint_next_seq(e, 0), 2);
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 0, &st));
    CHECK_EQ(st.batches_ok, 1);
}

static void test_stop_waits_for_invocation(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "slow", 0);
    if (env_open_base(e))
        check_stop_waits(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* A throttled invocation waits and runs again without counting as a
 * failure: one worker (kept warm: without a queue nothing waits for a
 * worker to start), no queue, two shards. */
static void check_throttled(env_t *e)
{
    CHECK(put(e, 0, "h", 0, 3));
    CHECK(put(e, 1, "h", 0, 3));
    CHECK(env_up(e));
    WAIT_FOR(records_done(e) >= 6, 20000);
    CHECK_EQ(ok_records(e->out, "clicks"), 6);
    lv_consumer_stats_t st0, st1;
    CHECK(stats_of(e, 0, &st0));
    CHECK(stats_of(e, 1, &st1));
    CHECK_EQ(st0.batches_failed + st1.batches_failed, 0);
    CHECK_EQ(st0.records_ok + st1.records_ok, 6);
}

static void test_throttled_is_not_a_failure(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 2, "slow", 0);
    e->fn.max = 1;
    e->fn.warm = 1;
    e->fn.queue = (lv_config_queue_t){.enabled = false};
    e->cons.max_retries = 0;
    if (env_open_base(e))
        check_throttled(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* max_retries -1: a failing batch is retried until its records expire
 * from the stream; then they are skipped, counted, and the consumer goes
 * on with what is left. Retention is 400 ms here (the config allows no
 * less than an hour; a hand-built one can) and every append gets its own
 * segment, so the first batch's segment can go once a later one exists. */
static void check_expired(env_t *e)
{
    CHECK(put(e, 0, "e", 0, 3));
    CHECK(env_up(e));
    WAIT_FOR(count_lines(e->out) >= 2, 10000);
    sleep_ms(500);
    CHECK(put(e, 0, "e", 3, 2));
    lv_consumer_stats_t st = {0};
    WAIT_FOR(stats_of(e, 0, &st) && st.records_expired >= 3, 10000);
    CHECK_EQ(st.records_expired, 3);
    CHECK_EQ(st.batches_dead_lettered, 0);
    /* The batch that follows starts at the first record still kept. */
    bool moved_on = false;
    uint64_t until = now_ms() + 10000;
    while (!moved_on && now_ms() < until) {
        seen_t *s = malloc(sizeof *s);
        seen_load(e->out, "clicks", s);
        for (size_t i = 0; i < s->ninv; i++)
            if (s->inv[i].n && s->rec[s->inv[i].first].seq >= 4)
                moved_on = true;
        free(s);
        sleep_ms(20);
    }
    CHECK(moved_on);
    CHECK(stats_of(e, 0, &st));
    CHECK_INT(st.next_seq, >=, 4);
    CHECK_INT(st.batches_failed, >=, 2);
}

static void test_expired_records_are_skipped(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "fail", 0);
    e->stream.retention_ms = 400;
    e->stream.segment_bytes = 1;
    e->cons.retry_backoff_ms = 50;
    if (env_open_base(e))
        check_expired(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* ---- checkpoints that must stop the start ---- */

static void write_checkpoint_for(env_t *e, unsigned shard, const char *stream, uint64_t id, unsigned in_file_shard,
                                 uint64_t next_seq)
{
    char dir[PATH_MAX + 64], path[PATH_MAX + 128];
    snprintf(dir, sizeof dir, "%s/consumers", e->data_dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/consumers/clicks-agg", e->data_dir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/shardId-%012u.checkpoint", dir, shard);
    lv_checkpoint_t cp = {.stream_id = id, .shard = in_file_shard, .next_seq = next_seq, .last_arrival_ms = 1};
    snprintf(cp.stream, sizeof cp.stream, "%s", stream);
    lv_buf_t b = LV_BUF_INIT;
    lv_checkpoint_encode(&b, &cp);
    write_file(path, lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
}

/* Opening fails and errs names the file and the consumer's position. */
static bool refused(env_t *e, const char *expect)
{
    lv_config_errors_t errs = {0};
    bool opened = env_open_consumers(e, &errs);
    bool found = false;
    for (size_t i = 0; i < errs.count; i++)
        found |= strstr(errs.items[i], expect) != NULL && strstr(errs.items[i], "test.yaml:7:3:") != NULL &&
                 strstr(errs.items[i], "shardId-000000000001.checkpoint") != NULL;
    if (!found)
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  got: %s\n", errs.items[i]);
    lv_config_errors_free(&errs);
    if (opened) {
        lv_consumers_free(e->cs);
        e->cs = NULL;
    }
    return !opened && found;
}

static void check_bad_checkpoints(env_t *e)
{
    CHECK(put(e, 1, "b", 0, 4));
    uint64_t id = lv_stream_info(e->s).id;
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/consumers/clicks-agg/shardId-000000000001.checkpoint", e->data_dir);

    write_checkpoint_for(e, 1, "clicks", id, 1, 3);
    const char *cut = "levee-consumer-checkpoint 1\nstream clicks\n";
    write_file(path, cut, strlen(cut));
    CHECK(refused(e, "is damaged (bad stream-id line)"));
    write_checkpoint_for(e, 1, "clicks", id, 1, 3);
    size_t len;
    char *text = read_file(path, &len);
    text[len - 3] ^= 1;
    write_file(path, text, len);
    free(text);
    CHECK(refused(e, "crc32c"));
    write_checkpoint_for(e, 1, "views", id, 1, 3);
    CHECK(refused(e, "is for stream views, not clicks"));
    write_checkpoint_for(e, 1, "clicks", id, 0, 3);
    CHECK(refused(e, "is for shard 0"));
    write_checkpoint_for(e, 1, "clicks", id, 1, 6);
    CHECK(refused(e, "past the end"));
    static char big[LV_CHECKPOINT_MAX_BYTES + 10];
    memset(big, 'x', sizeof big);
    write_file(path, big, sizeof big);
    CHECK(refused(e, "longer than a checkpoint"));

    /* The end of the shard itself is fine (caught up). */
    write_checkpoint_for(e, 1, "clicks", id, 1, 5);
    CHECK(env_open_consumers(e, NULL));
    lv_consumer_stats_t st;
    CHECK(stats_of(e, 1, &st));
    CHECK_EQ(st.next_seq, 5);
    CHECK_EQ(st.lag_records, 0);
    lv_consumers_free(e->cs);
    e->cs = NULL;

    /* A checkpoint of an earlier stream of the same name: a fresh start. */
    write_checkpoint_for(e, 1, "clicks", id ^ 1, 1, 3);
    CHECK(env_open_consumers(e, NULL));
    CHECK(stats_of(e, 1, &st));
    CHECK_EQ(st.next_seq, 1);
    CHECK_EQ(st.lag_records, 4);
    lv_consumers_free(e->cs);
    e->cs = NULL;

    /* A temp file left by a crash is removed, the checkpoint kept. */
    write_checkpoint_for(e, 1, "clicks", id, 1, 2);
    char tmp[PATH_MAX + 160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_file(tmp, "half", 4);
    CHECK(env_open_consumers(e, NULL));
    CHECK(stats_of(e, 1, &st));
    CHECK_EQ(st.next_seq, 2);
    CHECK(access(tmp, F_OK) != 0);
    lv_consumers_free(e->cs);
    e->cs = NULL;

    /* A function or stream the pools and streams do not know. */
    lv_config_errors_t errs = {0};
    e->cs = lv_consumers_open(&e->cfg, e->streams, NULL, e->metrics, &errs);
    CHECK(e->cs == NULL);
    CHECK_EQ(errs.count, 1);
    CHECK(strstr(errs.items[0], "function agg does not exist"));
    lv_config_errors_free(&errs);
    e->cons.stream = 5;
    e->cs = lv_consumers_open(&e->cfg, e->streams, e->fns, e->metrics, &errs);
    e->cons.stream = 0;
    CHECK(e->cs == NULL);
    CHECK_EQ(errs.count, 1);
    lv_config_errors_free(&errs);
    e->cons.name = "..";
    e->cs = lv_consumers_open(&e->cfg, e->streams, e->fns, e->metrics, &errs);
    e->cons.name = "clicks-agg";
    CHECK(e->cs == NULL);
    CHECK_EQ(errs.count, 1);
    lv_config_errors_free(&errs);
}

static void test_bad_checkpoints_refuse_the_start(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 2, "ok", 0);
    if (env_open_base(e))
        check_bad_checkpoints(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
}

/* Stop before start reports done all the same. */
static void check_stop_unstarted(env_t *e)
{
    CHECK(env_open_consumers(e, NULL));
    CHECK(stop_consumers(e));
}

static void test_stop_without_start(void)
{
    env_t *e = malloc(sizeof *e);
    env_init(e, 1, "ok", 0);
    if (env_open_base(e))
        check_stop_unstarted(e);
    else
        CHECK(!"open");
    env_down(e);
    free(e);
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
    lv_log_set_level(getenv("LV_TEST_LOG") ? LV_LOG_DEBUG : LV_LOG_OFF);
    snprintf(scratch, sizeof scratch, "/tmp/levee-consumer-test-XXXXXX");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    home = lv_loop_new(0);
    pthread_create(&home_thread, NULL, loop_main, home);
    run_home(nothing, NULL);
    int fds_before = count_fds();

    RUN(test_order_per_shard);
    RUN(test_lag_before_start);
    RUN(test_batching_window);
    RUN(test_batch_size_before_window);
    RUN(test_checkpoint_survives_restart);
    RUN(test_retries_then_dead_letter);
    RUN(test_crash_dead_letter_on_failure_path);
    RUN(test_retry_then_success);
    RUN(test_at_timestamp);
    RUN(test_latest);
    RUN(test_stop_waits_for_invocation);
    RUN(test_throttled_is_not_a_failure);
    RUN(test_expired_records_are_skipped);
    RUN(test_bad_checkpoints_refuse_the_start);
    RUN(test_stop_without_start);

    run_home(nothing, NULL);
    int fds_after = count_fds();
    if (fds_after != fds_before) {
        fprintf(stderr, "  FAIL: file descriptors %d before, %d after\n", fds_before, fds_after);
        lv_tests_failed++;
    }
    lv_loop_stop(home);
    pthread_join(home_thread, NULL);
    lv_loop_free(home);
    remove_tree(scratch);
    return lv_test_summary();
}
