/* event_queue_test.c: the async event queue (functions/event_queue.h) and
 * its journal (functions/event_journal.h).
 *
 * Journal layer, pure: records round-trip; every kind of damage is refused;
 * replay keeps accepted-and-unfinished events with their attempt counts; a
 * journal cut at every byte offset, or with any one byte flipped, replays
 * exactly the records before the damage.
 *
 * Files: a journal cut at every offset is recovered by lv_event_queues_open,
 * which trims the file to the last good record (or to empty when nothing is
 * pending).
 *
 * The queue itself runs against a real pool (lv_functions_new) of one
 * `provided` function whose bootstrap is a small Python script in the
 * test's scratch directory: it appends "request-id <TAB> start <TAB> end
 * <TAB> event" to a log for every invocation, reports an error when the
 * event has "fail", and sleeps when it has "sleep". Durability tests keep
 * the pool unstarted, so every dispatch comes back LV_FN_SHUTDOWN and the
 * events stay pending. A full disk is a journal that is a symlink to
 * /dev/full; a write that stops half-way is RLIMIT_FSIZE.
 *
 * lv_loop_run cannot be restarted after lv_loop_stop, so each phase runs on
 * a fresh loop, driven by a timer that calls a step function until it says
 * the phase is over. alarm() turns a hang into a visible failure. */
#include "functions/event_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/crc32c.h"
#include "core/log.h"
#include "core/mem.h"
#include "functions/event_journal.h"
#include "test.h"

/* ======================================================================
 * Journal codec and replay
 * ====================================================================== */

static lv_ej_record_t accept_rec(uint64_t seq, const char *id, const char *payload)
{
    return (lv_ej_record_t){.type = LV_EJ_ACCEPT,
                            .seq = seq,
                            .request_id = lv_slice_cstr(id),
                            .accepted_ms = 1700000000000ull + seq,
                            .payload = lv_slice_cstr(payload)};
}

static lv_ej_record_t attempt_rec(uint64_t seq, uint32_t attempts, uint64_t next_at)
{
    return (lv_ej_record_t){.type = LV_EJ_ATTEMPT_FAILED, .seq = seq, .attempts = attempts, .next_at_ms = next_at};
}

static lv_ej_record_t finished_rec(uint64_t seq, uint8_t outcome)
{
    return (lv_ej_record_t){.type = LV_EJ_FINISHED, .seq = seq, .outcome = outcome};
}

static void test_roundtrip(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_ej_record_t in[] = {
        accept_rec(1, "8476a536-e9f4-41e8-9739-2dfe598c3fcd", "{\"a\":1}"),
        accept_rec(2, "", ""),
        attempt_rec(1, 2, 1700000123456ull),
        finished_rec(2, LV_EJ_SUCCEEDED),
        finished_rec(1, LV_EJ_DEAD_LETTERED),
    };
    for (size_t i = 0; i < 5; i++)
        lv_ej_encode(&b, &in[i]);
    size_t pos = 0;
    for (size_t i = 0; i < 5; i++) {
        lv_ej_record_t r;
        ssize_t n = lv_ej_decode(lv_buf_data(&b) + pos, lv_buf_len(&b) - pos, &r);
        CHECK_INT(n, >, 0);
        CHECK_EQ(r.type, in[i].type);
        CHECK_EQ(r.seq, in[i].seq);
        if (r.type == LV_EJ_ACCEPT) {
            CHECK(lv_slice_eq(r.request_id, in[i].request_id));
            CHECK(lv_slice_eq(r.payload, in[i].payload));
            CHECK_EQ(r.accepted_ms, in[i].accepted_ms);
        } else if (r.type == LV_EJ_ATTEMPT_FAILED) {
            CHECK_EQ(r.attempts, 2);
            CHECK_EQ(r.next_at_ms, 1700000123456ull);
        } else {
            CHECK_EQ(r.outcome, in[i].outcome);
        }
        pos += (size_t)n;
    }
    CHECK_EQ(pos, lv_buf_len(&b));
    /* The header's length counts the type byte and the body. */
    CHECK_EQ((unsigned char)lv_buf_data(&b)[0], 1 + 8 + 8 + 1 + 36 + 7);
    lv_buf_free(&b);
}

static void test_largest_record(void)
{
    char *payload = lv_malloc(LV_EJ_MAX_PAYLOAD + 10);
    memset(payload, 'x', LV_EJ_MAX_PAYLOAD + 10);
    char id[LV_EJ_MAX_ID + 10];
    memset(id, 'i', sizeof id);
    lv_ej_record_t rec = {.type = LV_EJ_ACCEPT,
                          .seq = 7,
                          .request_id = lv_slice(id, sizeof id),
                          .payload = lv_slice(payload, LV_EJ_MAX_PAYLOAD + 10)};
    lv_buf_t b = LV_BUF_INIT;
    lv_ej_encode(&b, &rec);
    CHECK_EQ(lv_buf_len(&b), LV_EJ_HEADER_BYTES + LV_EJ_MAX_RECORD);
    lv_ej_record_t r;
    CHECK_EQ(lv_ej_decode(lv_buf_data(&b), lv_buf_len(&b), &r), (ssize_t)lv_buf_len(&b));
    CHECK_EQ(r.request_id.len, LV_EJ_MAX_ID);
    CHECK_EQ(r.payload.len, LV_EJ_MAX_PAYLOAD);
    lv_buf_free(&b);
    free(payload);
}

/* Frames arbitrary type+body bytes with a correct length and CRC, to reach
 * the checks behind the CRC. */
static size_t frame_raw(char *out, const unsigned char *body, size_t len);

static void test_decode_refuses_damage(void)
{
    lv_ej_record_t r;
    unsigned char hdr[8] = {0};
    CHECK_EQ(lv_ej_decode((const char *)hdr, 0, &r), LV_EJ_TORN);
    CHECK_EQ(lv_ej_decode((const char *)hdr, 7, &r), LV_EJ_TORN);
    CHECK_EQ(lv_ej_decode((const char *)hdr, 8, &r), LV_EJ_CORRUPT); /* length 0 */
    unsigned char huge[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    CHECK_EQ(lv_ej_decode((const char *)huge, 8, &r), LV_EJ_CORRUPT);

    lv_buf_t b = LV_BUF_INIT;
    lv_ej_record_t fin = finished_rec(3, LV_EJ_SUCCEEDED);
    lv_ej_encode(&b, &fin);
    char *p = lv_buf_data(&b);
    size_t n = lv_buf_len(&b);
    CHECK_EQ(lv_ej_decode(p, n, &r), (ssize_t)n);
    CHECK_EQ(lv_ej_decode(p, n - 1, &r), LV_EJ_TORN);
    p[n - 1] ^= 0x40; /* body byte: CRC catches it */
    CHECK_EQ(lv_ej_decode(p, n, &r), LV_EJ_CORRUPT);
    p[n - 1] ^= 0x40;
    p[5] ^= 0x01; /* the CRC itself */
    CHECK_EQ(lv_ej_decode(p, n, &r), LV_EJ_CORRUPT);
    lv_buf_free(&b);

    char out[128];
    unsigned char unknown_type[9] = {9, 1, 0, 0, 0, 0, 0, 0, 0};
    size_t len = frame_raw(out, unknown_type, sizeof unknown_type);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    unsigned char bad_outcome[10] = {LV_EJ_FINISHED, 1, 0, 0, 0, 0, 0, 0, 0, 3};
    len = frame_raw(out, bad_outcome, sizeof bad_outcome);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    unsigned char long_finished[11] = {LV_EJ_FINISHED, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    len = frame_raw(out, long_finished, sizeof long_finished);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    unsigned char short_attempt[20] = {LV_EJ_ATTEMPT_FAILED, 1};
    len = frame_raw(out, short_attempt, sizeof short_attempt);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    unsigned char short_accept[17] = {LV_EJ_ACCEPT, 1};
    len = frame_raw(out, short_accept, sizeof short_accept);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    /* id_len says 65 (over the limit), then says 10 with only 3 bytes left. */
    unsigned char long_id[18 + 65] = {LV_EJ_ACCEPT, 1};
    long_id[17] = 65;
    len = frame_raw(out, long_id, sizeof long_id);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    unsigned char id_past_end[21] = {LV_EJ_ACCEPT, 1};
    id_past_end[17] = 10;
    len = frame_raw(out, id_past_end, sizeof id_past_end);
    CHECK_EQ(lv_ej_decode(out, len, &r), LV_EJ_CORRUPT);
    /* And the same framing accepts a valid body. */
    unsigned char ok_accept[18] = {LV_EJ_ACCEPT, 1};
    len = frame_raw(out, ok_accept, sizeof ok_accept);
    CHECK_EQ(lv_ej_decode(out, len, &r), (ssize_t)len);
}

static void test_replay_bookkeeping(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_ej_record_t recs[] = {
        accept_rec(1, "id-1", "{\"n\":1}"),
        accept_rec(2, "id-2", "{\"n\":2}"),
        accept_rec(5, "id-5", "{\"n\":5}"),
        attempt_rec(2, 1, 1000),
        finished_rec(1, LV_EJ_SUCCEEDED),
        attempt_rec(2, 2, 3000),
        finished_rec(9, LV_EJ_SUCCEEDED),  /* unknown seq: ignored */
        attempt_rec(1, 7, 9),              /* already finished: ignored */
        finished_rec(1, LV_EJ_SUCCEEDED),  /* twice: ignored */
        accept_rec(6, "id-6", "[]"),
        finished_rec(6, LV_EJ_DEAD_LETTERED),
    };
    size_t nrecs = sizeof recs / sizeof recs[0];
    for (size_t i = 0; i < nrecs; i++)
        lv_ej_encode(&b, &recs[i]);
    lv_ej_replay_t rep;
    size_t good = lv_ej_replay(lv_buf_data(&b), lv_buf_len(&b), &rep);
    CHECK_EQ(good, lv_buf_len(&b));
    CHECK_EQ(rep.records, nrecs);
    CHECK_EQ(rep.max_seq, 6);
    CHECK_EQ(rep.num_pending, 2);
    CHECK_EQ(rep.pending[0].seq, 2);
    CHECK_SLICE(rep.pending[0].request_id, "id-2");
    CHECK_SLICE(rep.pending[0].payload, "{\"n\":2}");
    CHECK_EQ(rep.pending[0].attempts, 2);
    CHECK_EQ(rep.pending[0].next_at_ms, 3000);
    CHECK_EQ(rep.pending[0].accepted_ms, 1700000000002ull);
    CHECK_EQ(rep.pending[1].seq, 5);
    CHECK_EQ(rep.pending[1].attempts, 0);
    lv_ej_replay_free(&rep);

    /* An ACCEPT whose seq does not increase ends the trusted part. */
    size_t before = lv_buf_len(&b);
    lv_ej_record_t dup = accept_rec(6, "id-x", "{}");
    lv_ej_encode(&b, &dup);
    lv_ej_record_t after = accept_rec(7, "id-7", "{}");
    lv_ej_encode(&b, &after);
    good = lv_ej_replay(lv_buf_data(&b), lv_buf_len(&b), &rep);
    CHECK_EQ(good, before);
    CHECK_EQ(rep.num_pending, 2);
    lv_ej_replay_free(&rep);

    good = lv_ej_replay(NULL, 0, &rep);
    CHECK_EQ(good, 0);
    CHECK_EQ(rep.num_pending, 0);
    CHECK_EQ(rep.max_seq, 0);
    lv_ej_replay_free(&rep);
    lv_buf_free(&b);
}

/* A journal of varied records, with the end offset of each record and the
 * seqs pending after each prefix, for the cut and flip tests. */
typedef struct {
    lv_buf_t bytes;
    size_t ends[32];
    size_t n;
} journal_t;

static void build_journal(journal_t *j)
{
    memset(j, 0, sizeof *j);
    static const char *payloads[] = {"{}", "{\"order\":42,\"items\":[1,2,3]}", "\"text\"", "[]", "null"};
    lv_ej_record_t recs[] = {
        accept_rec(1, "a", payloads[0]), accept_rec(2, "bb", payloads[1]), attempt_rec(1, 1, 100),
        accept_rec(3, "ccc", payloads[2]), finished_rec(2, LV_EJ_SUCCEEDED), attempt_rec(1, 2, 200),
        accept_rec(4, "dddd", payloads[3]), finished_rec(1, LV_EJ_DEAD_LETTERED), accept_rec(5, "", payloads[4]),
        finished_rec(4, LV_EJ_SUCCEEDED),
    };
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        lv_ej_encode(&j->bytes, &recs[i]);
        j->ends[j->n++] = lv_buf_len(&j->bytes);
    }
}

/* Pending seqs after the first k records of build_journal, as a bit set. */
static unsigned pending_after(size_t k)
{
    static const int accept_of[] = {1, 2, 0, 3, 0, 0, 4, 0, 5, 0};
    static const int finish_of[] = {0, 0, 0, 0, 2, 0, 0, 1, 0, 4};
    unsigned set = 0;
    for (size_t i = 0; i < k; i++) {
        if (accept_of[i])
            set |= 1u << accept_of[i];
        if (finish_of[i])
            set &= ~(1u << finish_of[i]);
    }
    return set;
}

static unsigned pending_set(const lv_ej_replay_t *rep)
{
    unsigned set = 0;
    for (size_t i = 0; i < rep->num_pending; i++)
        set |= 1u << rep->pending[i].seq;
    return set;
}

static void test_replay_cut_at_every_offset(void)
{
    journal_t j;
    build_journal(&j);
    size_t len = lv_buf_len(&j.bytes);
    for (size_t cut = 0; cut <= len; cut++) {
        /* A copy of exactly `cut` bytes, so reading past it is an ASan error. */
        char *copy = lv_malloc(cut ? cut : 1);
        memcpy(copy, lv_buf_data(&j.bytes), cut);
        size_t whole = 0;
        while (whole < j.n && j.ends[whole] <= cut)
            whole++;
        lv_ej_replay_t rep;
        size_t good = lv_ej_replay(copy, cut, &rep);
        CHECK_EQ(good, whole ? j.ends[whole - 1] : 0);
        CHECK_EQ(rep.records, whole);
        CHECK_EQ(pending_set(&rep), pending_after(whole));
        lv_ej_replay_free(&rep);
        free(copy);
    }
    lv_buf_free(&j.bytes);
}

static void test_replay_any_flipped_byte(void)
{
    journal_t j;
    build_journal(&j);
    size_t len = lv_buf_len(&j.bytes);
    char *copy = lv_malloc(len);
    for (size_t at = 0; at < len; at++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, lv_buf_data(&j.bytes), len);
            copy[at] ^= (char)(1 << bit);
            size_t hit = 0;
            while (j.ends[hit] <= at)
                hit++;
            lv_ej_replay_t rep;
            size_t good = lv_ej_replay(copy, len, &rep);
            CHECK_EQ(good, hit ? j.ends[hit - 1] : 0);
            CHECK_EQ(pending_set(&rep), pending_after(hit));
            lv_ej_replay_free(&rep);
        }
    }
    free(copy);
    lv_buf_free(&j.bytes);
}

/* ======================================================================
 * Harness for the file and queue tests
 * ====================================================================== */

static const char bootstrap_py[] =
    "#!/usr/bin/python3\n"
    "# A provided-runtime bootstrap for the event queue tests.\n"
    "import json, os, sys, time, urllib.request\n"
    "api = 'http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/'\n"
    "log = os.environ['EVENT_LOG']\n"
    "def post(url, body):\n"
    "    urllib.request.urlopen(urllib.request.Request(url, data=body, method='POST')).read()\n"
    "while True:\n"
    "    r = urllib.request.urlopen(api + 'next')\n"
    "    rid = r.headers['Lambda-Runtime-Aws-Request-Id']\n"
    "    body = r.read()\n"
    "    start = time.monotonic()\n"
    "    ev = json.loads(body)\n"
    "    if isinstance(ev, dict) and ev.get('sleep'):\n"
    "        time.sleep(ev['sleep'])\n"
    "    end = time.monotonic()\n"
    "    with open(log, 'a') as f:\n"
    "        f.write('%s\\t%.6f\\t%.6f\\t%s\\n' % (rid, start, end, body.decode()))\n"
    "    if isinstance(ev, dict) and ev.get('fail'):\n"
    "        post(api + rid + '/error', json.dumps({'errorType': 'Boom', 'errorMessage': 'asked to fail'}).encode())\n"
    "    else:\n"
    "        post(api + rid + '/response', body)\n";

typedef struct {
    char dir[64];
    char *code, *data, *log;
    lv_config_header_t env[1];
    lv_config_function_t fn;
    lv_config_t cfg;
} fixture_t;

static char *joined(const char *a, const char *b)
{
    lv_buf_t buf = LV_BUF_INIT;
    lv_buf_printf(&buf, "%s/%s", a, b);
    char *s = lv_memdup0(lv_buf_data(&buf), lv_buf_len(&buf));
    lv_buf_free(&buf);
    return s;
}

static void write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len) {
        perror(path);
        abort();
    }
    close(fd);
    chmod(path, mode);
}

static void fixture_init(fixture_t *f, int retries, int64_t backoff_ms, uint64_t max)
{
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/levee-eq-XXXXXX");
    if (!mkdtemp(f->dir))
        abort();
    f->code = joined(f->dir, "code");
    f->data = joined(f->dir, "data");
    f->log = joined(f->dir, "events.log");
    mkdir(f->code, 0755);
    char *boot = joined(f->code, "bootstrap");
    write_file(boot, bootstrap_py, sizeof bootstrap_py - 1, 0755);
    free(boot);
    f->env[0] = (lv_config_header_t){.name = "EVENT_LOG", .value = f->log};
    f->fn = (lv_config_function_t){
        .name = "worker",
        .runtime = LV_RUNTIME_PROVIDED,
        .code = f->code,
        .env = f->env,
        .num_env = 1,
        .memory_mb = 512,
        .timeout_ms = 5000,
        .init_timeout_ms = 10000,
        .max = max,
        .warm = 0,
        .idle_timeout_ms = 60000,
        .queue = {.enabled = true, .max = 1000, .timeout_ms = 5000},
        .async = {.retries = retries, .backoff_ms = backoff_ms},
    };
    f->cfg = (lv_config_t){
        .path = "event_queue_test.yaml",
        .dir = f->dir,
        .data_dir = f->data,
        .threads = 1,
        .shutdown_timeout_ms = 2000,
        .functions = &f->fn,
        .num_functions = 1,
    };
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void fixture_free(fixture_t *f)
{
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->code);
    free(f->data);
    free(f->log);
}

static char *journal_path(const fixture_t *f)
{
    return joined(f->data, "functions/worker/events.journal");
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Lines in a file (0 if it does not exist). */
static size_t count_lines(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

/* Runs a fresh loop, calling step(ctx, loop) every 2 ms until it returns
 * true or timeout_ms passes. Returns false on timeout. */
typedef bool (*step_fn)(void *ctx, lv_loop_t *loop);

typedef struct {
    step_fn step;
    void *ctx;
    uint64_t deadline;
    bool timed_out;
    lv_timer_t timer;
} driver_t;

static void drive(lv_loop_t *loop, lv_timer_t *t)
{
    driver_t *d = t->data;
    if (d->step(d->ctx, loop)) {
        lv_loop_stop(loop);
        return;
    }
    if (lv_loop_now_ms(loop) > d->deadline) {
        d->timed_out = true;
        lv_loop_stop(loop);
        return;
    }
    lv_timer_start(loop, t, 2);
}

static bool run_phase(lv_loop_t *loop, step_fn step, void *ctx, uint64_t timeout_ms)
{
    driver_t d = {.step = step, .ctx = ctx, .deadline = lv_loop_now_ms(loop) + timeout_ms};
    d.timer.cb = drive;
    d.timer.data = &d;
    lv_timer_start(loop, &d.timer, 0);
    lv_loop_run(loop);
    lv_timer_stop(&d.timer);
    return !d.timed_out;
}

/* One running setup: a loop, a registry, a pool (started or not) and the
 * queues over them. */
typedef struct {
    fixture_t *f;
    lv_loop_t *loop;
    lv_metrics_t *metrics;
    lv_functions_t *fns;
    lv_fn_t *fn;
    lv_event_queues_t *qs;
    bool pool_started;
    int stops_done;
    /* enqueue bookkeeping */
    int acked, failed, last_err;
    int to_send, sent, in_flight, window;
    const char *payload;
    size_t payload_len;
    char first_id[LV_EJ_MAX_ID + 1];
    bool answered_inside;
} rig_t;

static bool rig_open(rig_t *r, fixture_t *f, bool start_pool)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->loop = lv_loop_new(0);
    r->metrics = lv_metrics_new(1);
    lv_config_errors_t errs = {0};
    r->fns = lv_functions_new(&f->cfg, r->metrics, &errs);
    if (!r->fns) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        lv_config_errors_free(&errs);
        return false;
    }
    r->fn = lv_functions_find(r->fns, LV_SLICE_LIT("worker"));
    r->qs = lv_event_queues_open(&f->cfg, r->fns, r->metrics, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "  %s\n", errs.items[i]);
    lv_config_errors_free(&errs);
    if (!r->qs)
        return false;
    if (start_pool)
        lv_functions_start(r->fns, r->loop);
    r->pool_started = start_pool;
    lv_event_queues_start(r->qs, r->loop);
    return true;
}

static void count_stop(lv_loop_t *loop, void *arg)
{
    (void)loop;
    ((rig_t *)arg)->stops_done++;
}

static bool stops_done(void *ctx, lv_loop_t *loop)
{
    (void)loop;
    rig_t *r = ctx;
    return r->stops_done == (r->pool_started ? 2 : 1);
}

static void queues_stopped(lv_loop_t *loop, void *arg)
{
    rig_t *r = arg;
    r->stops_done++;
    if (r->pool_started)
        lv_functions_stop(r->fns, lv_loop_now_ms(loop) + 2000, count_stop, r);
}

static bool nothing_to_do(void *ctx, lv_loop_t *loop)
{
    (void)ctx;
    (void)loop;
    return true;
}

static void rig_free(rig_t *r)
{
    lv_event_queues_free(r->qs);
    lv_functions_free(r->fns);
    lv_metrics_free(r->metrics);
    lv_loop_free(r->loop);
}

static void on_enqueued(void *arg, int err, lv_slice_t id)
{
    rig_t *r = arg;
    r->in_flight--;
    if (err) {
        r->failed++;
        r->last_err = err;
    } else {
        if (r->acked == 0 && id.len <= LV_EJ_MAX_ID) {
            memcpy(r->first_id, id.ptr, id.len);
            r->first_id[id.len] = '\0';
        }
        r->acked++;
    }
}

/* Keeps `window` enqueues in flight until to_send were sent: closed-loop
 * clients, the way concurrent HTTP callers behave. */
static bool send_window(void *ctx, lv_loop_t *loop)
{
    rig_t *r = ctx;
    while (r->sent < r->to_send && r->in_flight < r->window) {
        r->sent++;
        r->in_flight++;
        lv_event_enqueue(r->qs, r->fn, loop, lv_slice(r->payload, r->payload_len), on_enqueued, r);
    }
    return r->acked + r->failed == r->to_send;
}

static lv_gauge_t *pending_gauge(lv_metrics_t *m)
{
    return lv_metrics_gauge(m, "levee_function_async_pending", NULL, "function=\"worker\"");
}

/* The stop phase needs the loop that ran the test phases; lv_loop_run
 * cannot run again after lv_loop_stop, so the rigs below run every phase,
 * stop included, inside one run: these steps chain them. */
typedef struct {
    rig_t *r;
    step_fn body;
    void *body_ctx; /* NULL: the rig */
    int stage;
} chain_t;

static bool chained(void *ctx, lv_loop_t *loop)
{
    chain_t *c = ctx;
    if (c->stage == 0) {
        if (!c->body(c->body_ctx ? c->body_ctx : c->r, loop))
            return false;
        c->stage = 1;
        lv_event_queues_stop(c->r->qs, queues_stopped, c->r);
        return false;
    }
    return stops_done(c->r, loop);
}

/* Runs body until it says done, then stops queues and pool, in one loop
 * run. Returns false on timeout. */
static bool run_then_stop(rig_t *r, step_fn body, uint64_t timeout_ms)
{
    chain_t c = {.r = r, .body = body};
    return run_phase(r->loop, chained, &c, timeout_ms);
}

/* ======================================================================
 * Recovery of files
 * ====================================================================== */

/* Writes a journal cut at every offset and opens it each time: the file is
 * trimmed to the last whole record (or emptied when nothing is pending), and
 * the pending gauge shows the events that were whole before the cut. */
static void test_recovery_cut_at_every_offset(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    journal_t j;
    build_journal(&j);
    char *dir = joined(f.data, "functions/worker");
    char *path = journal_path(&f);
    lv_log_set_level(LV_LOG_ERROR); /* every open below logs its cut */
    size_t len = lv_buf_len(&j.bytes);
    for (size_t cut = 0; cut <= len; cut++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (cut == 0 && system(cmd) != 0)
            abort();
        write_file(path, lv_buf_data(&j.bytes), cut, 0644);
        size_t whole = 0;
        while (whole < j.n && j.ends[whole] <= cut)
            whole++;
        unsigned expect = pending_after(whole);
        lv_metrics_t *m = lv_metrics_new(1);
        lv_config_errors_t errs = {0};
        lv_event_queues_t *qs = lv_event_queues_open(&f.cfg, NULL, m, &errs);
        CHECK(qs != NULL);
        CHECK_EQ(lv_gauge_value(pending_gauge(m)), __builtin_popcount(expect));
        CHECK_EQ(file_size(path), expect ? (off_t)j.ends[whole - 1] : 0);
        lv_event_queues_free(qs);
        lv_metrics_free(m);
        lv_config_errors_free(&errs);
    }
    lv_log_set_level(LV_LOG_INFO);
    free(dir);
    free(path);
    lv_buf_free(&j.bytes);
    fixture_free(&f);
}

static void test_open_refuses_second_process(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    lv_metrics_t *m = lv_metrics_new(1);
    lv_config_errors_t errs = {0};
    lv_event_queues_t *a = lv_event_queues_open(&f.cfg, NULL, m, &errs);
    CHECK(a != NULL);
    /* flock is per open file description, so a second open in this process
     * conflicts as another process would. */
    lv_event_queues_t *b = lv_event_queues_open(&f.cfg, NULL, m, &errs);
    CHECK(b == NULL);
    CHECK_EQ(errs.count, 1);
    CHECK(strstr(errs.items[0], "in use by another levee") != NULL);
    lv_event_queues_free(a);
    lv_config_errors_free(&errs);

    /* A data_dir that cannot be created is reported, not fatal. */
    char *file = joined(f.dir, "plainfile");
    write_file(file, "x", 1, 0644);
    f.cfg.data_dir = file;
    lv_event_queues_t *c = lv_event_queues_open(&f.cfg, NULL, m, &errs);
    CHECK(c == NULL);
    CHECK_EQ(errs.count, 1);
    CHECK(strstr(errs.items[0], "cannot create") != NULL);
    f.cfg.data_dir = f.data;
    free(file);
    lv_config_errors_free(&errs);
    lv_metrics_free(m);
    fixture_free(&f);
}

/* ======================================================================
 * The queue
 * ====================================================================== */

/* 2000 events from 64 concurrent callers: every one is acknowledged, the
 * journal holds them after a restart, and one fsync covers many records. */
static void test_group_commit_and_restart(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    r.to_send = 2000;
    r.window = 64;
    r.payload = "{\"hello\":\"world\"}";
    r.payload_len = strlen(r.payload);
    CHECK(run_then_stop(&r, send_window, 20000));
    CHECK_EQ(r.acked, 2000);
    CHECK_EQ(r.failed, 0);
    uint64_t records = lv_counter_value(
        lv_metrics_counter(r.metrics, "levee_function_async_journal_records_total", NULL, "function=\"worker\""));
    uint64_t fsyncs = lv_counter_value(
        lv_metrics_counter(r.metrics, "levee_function_async_journal_fsyncs_total", NULL, "function=\"worker\""));
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
    lv_histogram_t *h = lv_metrics_histogram(r.metrics, "levee_function_async_fsync_seconds", NULL, NULL, bounds,
                                             sizeof bounds / sizeof bounds[0]);
    printf("event_queue: 2000 events from 64 concurrent callers: %llu records in %llu fsyncs (%.1f per fsync, "
           "%.2f ms per fsync)\n",
           (unsigned long long)records, (unsigned long long)fsyncs, fsyncs ? (double)records / (double)fsyncs : 0.0,
           lv_histogram_count(h) ? (double)lv_histogram_sum_ns(h) / 1e6 / (double)lv_histogram_count(h) : 0.0);
    CHECK_EQ(records, 2000);
    CHECK_INT(fsyncs, <, 2000 / 4);
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r.qs, r.fn, &st);
    CHECK_EQ(st.accepted, 2000);
    CHECK_EQ(st.pending, 2000);
    rig_free(&r);

    /* After a restart every acknowledged event is there, none twice. */
    rig_t again;
    CHECK(rig_open(&again, &f, false));
    lv_event_queue_stats(again.qs, again.fn, &st);
    CHECK_EQ(st.pending, 2000);
    CHECK(run_then_stop(&again, nothing_to_do, 2000));
    rig_free(&again);
    fixture_free(&f);
}

/* Enqueues from another loop's thread are answered on that loop. */
typedef struct {
    rig_t *r;
    lv_loop_t *loop;
    int acked;
    pthread_t thread;
    pthread_t answered_on;
} remote_t;

static void remote_done(void *arg, int err, lv_slice_t id)
{
    remote_t *rm = arg;
    (void)id;
    rm->answered_on = pthread_self();
    if (!err && __atomic_add_fetch(&rm->acked, 1, __ATOMIC_RELEASE) == 10)
        lv_loop_stop(rm->loop);
}

static void remote_send(lv_loop_t *loop, void *arg)
{
    remote_t *rm = arg;
    for (int i = 0; i < 10; i++)
        lv_event_enqueue(rm->r->qs, rm->r->fn, loop, LV_SLICE_LIT("{\"from\":\"elsewhere\"}"), remote_done, rm);
}

static void *remote_main(void *arg)
{
    remote_t *rm = arg;
    lv_loop_post(rm->loop, remote_send, rm);
    lv_loop_run(rm->loop);
    return NULL;
}

static bool remote_finished(void *ctx, lv_loop_t *loop)
{
    (void)loop;
    remote_t *rm = ctx;
    return __atomic_load_n(&rm->acked, __ATOMIC_ACQUIRE) == 10;
}

static void test_enqueue_from_another_loop(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    remote_t rm = {.r = &r, .loop = lv_loop_new(1)};
    pthread_create(&rm.thread, NULL, remote_main, &rm);
    chain_t c = {.r = &r, .body = remote_finished, .body_ctx = &rm};
    CHECK(run_phase(r.loop, chained, &c, 5000));
    pthread_join(rm.thread, NULL);
    CHECK_EQ(rm.acked, 10);
    CHECK(pthread_equal(rm.answered_on, rm.thread));
    lv_loop_free(rm.loop);
    rig_free(&r);
    fixture_free(&f);
}

/* A journal on a full disk: the enqueue fails with ENOSPC, nothing is
 * counted as accepted, and the queue keeps working for the next caller. */
static void test_full_disk(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    char *dir = joined(f.data, "functions/worker");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    CHECK(system(cmd) == 0);
    char *path = journal_path(&f);
    CHECK(symlink("/dev/full", path) == 0);
    lv_log_set_level(LV_LOG_OFF); /* the failed cut-back of a device is logged */
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    r.to_send = 5;
    r.window = 1;
    r.payload = "{}";
    r.payload_len = 2;
    CHECK(run_then_stop(&r, send_window, 5000));
    lv_log_set_level(LV_LOG_INFO);
    CHECK_EQ(r.acked, 0);
    CHECK_EQ(r.failed, 5);
    CHECK_EQ(r.last_err, ENOSPC);
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r.qs, r.fn, &st);
    CHECK_EQ(st.accepted, 0);
    CHECK_EQ(st.pending, 0);
    rig_free(&r);
    free(path);
    free(dir);
    fixture_free(&f);
}

/* A write that stops half-way (here at RLIMIT_FSIZE, as a disk filling up
 * mid-write would) fails that batch and leaves the journal exactly as it
 * was: the next start finds no torn tail to cut. */
static void test_short_write_leaves_no_partial_record(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    char *path = journal_path(&f);

    /* Ten good events. */
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    r.to_send = 10;
    r.window = 1;
    r.payload = "{\"small\":1}";
    r.payload_len = strlen(r.payload);
    CHECK(run_then_stop(&r, send_window, 5000));
    CHECK_EQ(r.acked, 10);
    off_t good = file_size(path);
    CHECK_INT(good, >, 0);
    rig_free(&r);

    /* A fresh start with room for 100 more bytes only: a 2000-byte event
     * is written half-way, then fails. */
    static char big[2000];
    memset(big, ' ', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lv_log_set_level(LV_LOG_ERROR);
    rig_t r2;
    CHECK(rig_open(&r2, &f, false));
    struct rlimit lim = {.rlim_cur = (rlim_t)good + 100, .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    r2.to_send = 1;
    r2.window = 1;
    r2.payload = big;
    r2.payload_len = sizeof big;
    CHECK(run_then_stop(&r2, send_window, 5000));
    setrlimit(RLIMIT_FSIZE, &old);
    lv_log_set_level(LV_LOG_INFO);
    CHECK_EQ(r2.failed, 1);
    CHECK_EQ(r2.last_err, EFBIG);
    CHECK_EQ(file_size(path), good);
    rig_free(&r2);

    /* The journal is clean: all ten events, nothing cut. */
    rig_t r3;
    CHECK(rig_open(&r3, &f, false));
    CHECK_EQ(file_size(path), good);
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r3.qs, r3.fn, &st);
    CHECK_EQ(st.pending, 10);
    CHECK(run_then_stop(&r3, nothing_to_do, 2000));
    rig_free(&r3);
    free(path);
    fixture_free(&f);
}

static bool all_finished(void *ctx, lv_loop_t *loop)
{
    rig_t *r = ctx;
    send_window(r, loop);
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r->qs, r->fn, &st);
    return r->acked + r->failed == r->to_send && st.pending == 0 && st.accepted == (uint64_t)r->acked;
}

/* Events run through the real pool and succeed; once nothing is pending
 * and the journal is past 1 MiB it is emptied. */
static void test_events_run_and_journal_compacts(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, true));
    static char payload[100 * 1024];
    memset(payload, 'p', sizeof payload);
    memcpy(payload, "{\"pad\":\"", 8);
    memcpy(payload + sizeof payload - 2, "\"}", 2);
    r.to_send = 12; /* 1.2 MiB of ACCEPT records */
    r.window = 4;
    r.payload = payload;
    r.payload_len = sizeof payload;
    CHECK(run_then_stop(&r, all_finished, 30000));
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r.qs, r.fn, &st);
    CHECK_EQ(st.accepted, 12);
    CHECK_EQ(st.succeeded, 12);
    CHECK_EQ(st.pending, 0);
    CHECK_EQ(count_lines(f.log), 12);
    char *path = journal_path(&f);
    CHECK_EQ(file_size(path), 0);
    free(path);
    rig_free(&r);
    fixture_free(&f);
}

static bool dead_lettered(void *ctx, lv_loop_t *loop)
{
    rig_t *r = ctx;
    send_window(r, loop);
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r->qs, r->fn, &st);
    return st.dead_lettered == 1 && st.pending == 0;
}

/* A failing event is tried 1 + retries times, backoff then twice backoff
 * apart, with the same request id, then written to the dead-letter file in
 * Lambda's on-failure record shape. */
static void test_retries_then_dead_letter(void)
{
    fixture_t f;
    fixture_init(&f, 2, 150, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, true));
    r.to_send = 1;
    r.window = 1;
    r.payload = "{\"fail\":true,\"order\":7}";
    r.payload_len = strlen(r.payload);
    CHECK(run_then_stop(&r, dead_lettered, 30000));
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r.qs, r.fn, &st);
    CHECK_EQ(st.retried, 2);
    CHECK_EQ(st.dead_lettered, 1);
    CHECK_EQ(st.succeeded, 0);

    /* Three runs, one request id, gaps of at least 150 and 300 ms. */
    FILE *fp = fopen(f.log, "re");
    CHECK(fp != NULL);
    char line[4096], ids[3][64];
    double starts[3];
    int n = 0;
    while (n < 3 && fgets(line, sizeof line, fp)) {
        double end;
        CHECK_EQ(sscanf(line, "%63[^\t]\t%lf\t%lf", ids[n], &starts[n], &end), 3);
        n++;
    }
    fclose(fp);
    CHECK_EQ(n, 3);
    CHECK_STR(ids[0], r.first_id);
    CHECK_STR(ids[1], r.first_id);
    CHECK_STR(ids[2], r.first_id);
    CHECK(starts[1] - starts[0] >= 0.140); /* the loop's clock is cached per iteration */
    CHECK(starts[2] - starts[1] >= 0.290);

    char *dl = joined(f.data, "functions/worker/dead-letter.jsonl");
    json_error_t jerr;
    json_t *rec = json_load_file(dl, 0, &jerr);
    CHECK(rec != NULL);
    CHECK_EQ(count_lines(dl), 1);
    CHECK_STR(json_string_value(json_object_get(rec, "version")), "1.0");
    json_t *ctx = json_object_get(rec, "requestContext");
    CHECK_STR(json_string_value(json_object_get(ctx, "requestId")), r.first_id);
    CHECK_STR(json_string_value(json_object_get(ctx, "condition")), "RetriesExhausted");
    CHECK_STR(json_string_value(json_object_get(ctx, "functionArn")),
              "arn:aws:lambda:us-east-1:000000000000:function:worker:$LATEST");
    CHECK_EQ(json_integer_value(json_object_get(ctx, "approximateInvokeCount")), 3);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(rec, "requestPayload"), "order")), 7);
    json_t *rctx = json_object_get(rec, "responseContext");
    CHECK_STR(json_string_value(json_object_get(rctx, "functionError")), "Unhandled");
    CHECK_STR(json_string_value(json_object_get(json_object_get(rec, "responsePayload"), "errorType")), "Boom");
    CHECK(json_string_value(json_object_get(rec, "timestamp")) != NULL);
    json_decref(rec);
    free(dl);
    rig_free(&r);
    fixture_free(&f);
}

static bool n_succeeded(void *ctx, lv_loop_t *loop)
{
    rig_t *r = ctx;
    (void)loop;
    lv_event_queue_stats_t st;
    lv_event_queue_stats(r->qs, r->fn, &st);
    return st.succeeded == (uint64_t)r->to_send;
}

/* Events accepted while the pool was down run after a restart, with the
 * request ids they were given. */
static void test_recovered_events_run(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    r.to_send = 5;
    r.window = 5;
    r.payload = "{\"later\":true}";
    r.payload_len = strlen(r.payload);
    CHECK(run_then_stop(&r, send_window, 5000));
    CHECK_EQ(r.acked, 5);
    char first[LV_EJ_MAX_ID + 1];
    strcpy(first, r.first_id);
    rig_free(&r);
    CHECK_EQ(count_lines(f.log), 0);

    rig_t r2;
    CHECK(rig_open(&r2, &f, true));
    r2.to_send = 5;
    CHECK(run_then_stop(&r2, n_succeeded, 20000));
    CHECK_EQ(count_lines(f.log), 5);
    FILE *fp = fopen(f.log, "re");
    char line[512];
    bool seen = false;
    while (fp && fgets(line, sizeof line, fp))
        seen |= strncmp(line, first, strlen(first)) == 0;
    if (fp)
        fclose(fp);
    CHECK(seen);
    char *path = journal_path(&f);
    rig_free(&r2);

    /* Finished: the next start compacts the journal to nothing. */
    rig_t r3;
    CHECK(rig_open(&r3, &f, false));
    CHECK_EQ(file_size(path), 0);
    CHECK(run_then_stop(&r3, nothing_to_do, 2000));
    rig_free(&r3);
    free(path);
    fixture_free(&f);
}

/* With concurrency.max 4 at most 2 events of the function run at once. */
static void test_dispatch_leaves_room_for_sync_callers(void)
{
    fixture_t f;
    fixture_init(&f, 0, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, true));
    r.to_send = 6;
    r.window = 6;
    r.payload = "{\"sleep\":0.3}";
    r.payload_len = strlen(r.payload);
    CHECK(run_then_stop(&r, all_finished, 30000));
    double s[6], e[6];
    FILE *fp = fopen(f.log, "re");
    CHECK(fp != NULL);
    char line[512], id[64];
    int n = 0;
    while (n < 6 && fgets(line, sizeof line, fp))
        if (sscanf(line, "%63[^\t]\t%lf\t%lf", id, &s[n], &e[n]) == 3)
            n++;
    fclose(fp);
    CHECK_EQ(n, 6);
    int most = 0;
    for (int i = 0; i < n; i++) {
        int overlap = 0;
        for (int k = 0; k < n; k++)
            overlap += s[k] <= s[i] && e[k] > s[i];
        most = overlap > most ? overlap : most;
    }
    CHECK_EQ(most, 2);
    rig_free(&r);
    fixture_free(&f);
}

/* After stop, enqueues fail with ESHUTDOWN (answered on the caller's loop,
 * never inside the call). */
static bool enqueue_after_stop(void *ctx, lv_loop_t *loop)
{
    rig_t *r = ctx;
    if (r->stops_done == 0) {
        if (r->sent == 0) {
            r->sent = 1;
            lv_event_queues_stop(r->qs, queues_stopped, r);
        }
        return false;
    }
    if (r->sent == 1) {
        r->sent = 2;
        r->in_flight = 1;
        lv_event_enqueue(r->qs, r->fn, loop, LV_SLICE_LIT("{}"), on_enqueued, r);
        r->answered_inside = r->failed != 0;
    }
    return r->failed == 1;
}

static void test_enqueue_after_stop(void)
{
    fixture_t f;
    fixture_init(&f, 2, 1000, 4);
    rig_t r;
    CHECK(rig_open(&r, &f, false));
    CHECK(run_phase(r.loop, enqueue_after_stop, &r, 5000));
    CHECK_EQ(r.last_err, ESHUTDOWN);
    CHECK(!r.answered_inside);
    rig_free(&r);
    fixture_free(&f);
}

static size_t frame_raw(char *out, const unsigned char *body, size_t len)
{
    /* The journal's framing: length, CRC-32C, bytes. */
    uint32_t l = (uint32_t)len, c = lv_crc32c(0, body, len);
    for (int i = 0; i < 4; i++) {
        out[i] = (char)(l >> (8 * i));
        out[4 + i] = (char)(c >> (8 * i));
    }
    memcpy(out + 8, body, len);
    return 8 + len;
}

int main(void)
{
    alarm(300);
    LV_RUN(test_roundtrip);
    LV_RUN(test_largest_record);
    LV_RUN(test_decode_refuses_damage);
    LV_RUN(test_replay_bookkeeping);
    LV_RUN(test_replay_cut_at_every_offset);
    LV_RUN(test_replay_any_flipped_byte);
    LV_RUN(test_recovery_cut_at_every_offset);
    LV_RUN(test_open_refuses_second_process);
    LV_RUN(test_group_commit_and_restart);
    LV_RUN(test_enqueue_from_another_loop);
    LV_RUN(test_full_disk);
    LV_RUN(test_short_write_leaves_no_partial_record);
    LV_RUN(test_enqueue_after_stop);
    LV_RUN(test_events_run_and_journal_compacts);
    LV_RUN(test_retries_then_dead_letter);
    LV_RUN(test_recovered_events_run);
    LV_RUN(test_dispatch_leaves_room_for_sync_callers);
    return lv_test_summary();
}
