/* stream_test.c: the stream engine (stream/stream.h) on real files.
 *
 * One event loop runs on its own thread for the whole file and receives
 * every callback; test code waits for them on condition variables (with a
 * timeout, so a lost callback fails instead of hanging). Each test works in
 * a fresh directory under /tmp and builds its lv_config_t by hand.
 *
 * Covered: hashing and shard ranges; append/read round trips across shards
 * and segments, also after a restart; read positions by seq and by time and
 * the limits; group commit from many threads (every callback once, seqs
 * gap-free and in call order per shard, more than one record per fsync);
 * durability batch; retention (while running and at open); recovery from a
 * last segment cut at every byte offset or with any byte flipped, and
 * refusal of damage elsewhere; a crash test that SIGKILLs a child process
 * appending in a loop and checks every acknowledged record afterwards;
 * a full disk (a small tmpfs, when this process may mount one); delete with
 * references outstanding; EAGAIN and EINVAL; create through the API and
 * persistence; the directory lock; stop. The last test measures throughput
 * with 16 threads and prints it. */
#include "stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "stream/segment.h"
#include "stream/store.h"
#include "stream/stream_internal.h"
#include "test.h"

#define WAIT_MS 10000

static lv_loop_t *g_loop;

/* ---------------------------------------------------------------------
 * Scaffolding
 * --------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/lv_stream_test_XXXXXX";
    return lv_strdup(mkdtemp(tmpl));
}

static void remove_dir(char *dir)
{
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

typedef struct {
    lv_config_t cfg;
    lv_config_stream_t streams[4];
} cfg_t;

static void cfg_init(cfg_t *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    c->cfg.path = (char *)"test.yaml";
    c->cfg.data_dir = (char *)dir;
    c->cfg.streams = c->streams;
}

static lv_config_stream_t *cfg_add(cfg_t *c, const char *name, unsigned shards)
{
    lv_config_stream_t *s = &c->streams[c->cfg.num_streams++];
    *s = (lv_config_stream_t){.name = (char *)name, .shards = shards, .retention_ms = 24 * 3600 * 1000LL,
                              .durability = LV_DURABILITY_FSYNC, .sync_interval_ms = 5,
                              .segment_bytes = 64u << 20, .max_pending_bytes = 64u << 20};
    return s;
}

/* Opens the streams; on failure returns NULL and, if msgs is given,
 * copies the first message there. */
static lv_streams_t *open_streams(cfg_t *c, lv_metrics_t *m, char *msgs, size_t msgs_len)
{
    lv_config_errors_t errs = {0};
    lv_streams_t *set = lv_streams_open(&c->cfg, m, &errs);
    if (msgs && msgs_len)
        snprintf(msgs, msgs_len, "%s", errs.count ? errs.items[0] : "");
    if (!set && !msgs)
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  open: %s\n", errs.items[i]);
    lv_config_errors_free(&errs);
    return set;
}

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
} signal_t;

#define SIGNAL_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static void signal_post(signal_t *s)
{
    pthread_mutex_lock(&s->m);
    s->calls++;
    pthread_cond_broadcast(&s->c);
    pthread_mutex_unlock(&s->m);
}

/* Waits until calls >= n; false on timeout. */
static bool signal_wait(signal_t *s, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&s->m);
    int rc = 0;
    while (s->calls < n && rc == 0)
        rc = pthread_cond_timedwait(&s->c, &s->m, &ts);
    bool ok = s->calls >= n;
    pthread_mutex_unlock(&s->m);
    return ok;
}

static void on_stopped(lv_loop_t *loop, void *arg)
{
    signal_post(arg);
}

static bool stop_streams(lv_streams_t *set)
{
    signal_t sig = SIGNAL_INIT;
    lv_streams_stop(set, g_loop, on_stopped, &sig);
    return signal_wait(&sig, 1);
}

static void close_streams(lv_streams_t *set)
{
    if (!stop_streams(set))
        fprintf(stderr, "  stop did not complete\n");
    lv_streams_free(set);
}

typedef struct {
    signal_t sig;
    lv_stream_put_result_t res[LV_STREAM_MAX_PUT];
    size_t n;
} put_wait_t;

static void on_put(void *arg, const lv_stream_put_result_t *r, size_t n)
{
    put_wait_t *w = arg;
    memcpy(w->res, r, n * sizeof *r);
    w->n = n;
    signal_post(&w->sig);
}

/* Appends and waits. Returns the immediate error, or the callback's. */
static int put_sync(lv_stream_t *s, const lv_stream_put_t *recs, size_t n, lv_stream_put_result_t *out)
{
    put_wait_t *w = lv_calloc(1, sizeof *w);
    w->sig = (signal_t)SIGNAL_INIT;
    int err = lv_stream_append(s, recs, n, g_loop, on_put, w);
    if (!err) {
        if (!signal_wait(&w->sig, 1))
            err = ETIMEDOUT;
        else {
            err = w->res[0].err;
            if (out)
                memcpy(out, w->res, n * sizeof *out);
        }
    }
    free(w);
    return err;
}

static int put_one(lv_stream_t *s, unsigned shard, const char *key, const char *data, size_t data_len,
                   lv_stream_put_result_t *out)
{
    lv_stream_put_t r = {.shard = shard, .partition_key = lv_slice_cstr(key), .data = lv_slice(data, data_len)};
    return put_sync(s, &r, 1, out);
}

typedef struct {
    uint64_t seq, arrival;
    char *key, *data;
    size_t key_len, data_len;
} rec_t;

typedef struct {
    signal_t sig;
    int err;
    rec_t *recs;
    size_t n;
    uint64_t next_seq, shard_next_seq, last_arrival;
} got_t;

static void on_read(void *arg, const lv_stream_read_t *res)
{
    got_t *g = arg;
    g->err = res->err;
    g->n = res->n;
    g->next_seq = res->next_seq;
    g->shard_next_seq = res->shard_next_seq;
    g->last_arrival = res->last_arrival_ms;
    g->recs = lv_calloc(res->n ? res->n : 1, sizeof *g->recs);
    for (size_t i = 0; i < res->n; i++) {
        const lv_stream_record_t *r = &res->records[i];
        g->recs[i] = (rec_t){.seq = r->seq, .arrival = r->arrival_ms,
                             .key = lv_memdup0(r->partition_key.ptr, r->partition_key.len),
                             .key_len = r->partition_key.len,
                             .data = lv_memdup0(r->data.ptr, r->data.len), .data_len = r->data.len};
    }
    signal_post(&g->sig);
}

static void got_free(got_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->recs[i].key);
        free(g->recs[i].data);
    }
    free(g->recs);
    g->recs = NULL;
    g->n = 0;
}

static bool read_sync(lv_stream_t *s, unsigned shard, lv_read_from_t kind, uint64_t from, size_t max_records,
                      size_t max_bytes, got_t *g)
{
    memset(g, 0, sizeof *g);
    g->sig = (signal_t)SIGNAL_INIT;
    lv_stream_read(s, shard, kind, from, max_records, max_bytes, g_loop, on_read, g);
    return signal_wait(&g->sig, 1);
}

/* The data of record k of a test: recognisable and of varied length. */
static size_t data_of(uint64_t k, char *out, size_t max)
{
    int n = snprintf(out, max, "data-%llu-", (unsigned long long)k);
    size_t len = (size_t)n + (size_t)(k * 37 % 200);
    if (len > max)
        len = max;
    for (size_t i = (size_t)n; i < len; i++)
        out[i] = (char)('a' + (k + i) % 26);
    return len;
}

static size_t count_files(const char *dir, const char *sub)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------------
 * Hashing and shard ranges
 * --------------------------------------------------------------------- */

static void test_hashing(void)
{
    /* MD5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    unsigned __int128 h = lv_stream_hash_key(LV_SLICE_LIT("a"));
    CHECK((uint64_t)(h >> 64) == 0x0cc175b9c0f1b6a8ull);
    CHECK((uint64_t)h == 0x31c399e269772661ull);
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "h1", 1);
    cfg_add(&c, "h3", 3);
    cfg_add(&c, "h4", 4);
    cfg_add(&c, "h7", 7);
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    const unsigned __int128 max = ~(unsigned __int128)0;
    static const char *const names[] = {"h1", "h3", "h4", "h7"};
    for (size_t k = 0; k < 4; k++) {
        lv_stream_t *s = lv_streams_find(set, lv_slice_cstr(names[k]));
        CHECK(s != NULL);
        unsigned n = lv_stream_info(s).shards;
        unsigned __int128 expect_start = 0;
        for (unsigned i = 0; i < n; i++) {
            lv_shard_info_t si = lv_stream_shard_info(s, i);
            CHECK(si.hash_start == expect_start);
            CHECK(si.hash_end >= si.hash_start);
            CHECK_EQ(lv_stream_shard_for(s, si.hash_start), i);
            CHECK_EQ(lv_stream_shard_for(s, si.hash_end), i);
            CHECK_EQ(si.first_seq, 1);
            CHECK_EQ(si.next_seq, 1);
            CHECK_EQ(si.last_arrival_ms, 0);
            expect_start = si.hash_end + 1;
            if (i + 1 == n)
                CHECK(si.hash_end == max);
        }
        if (n == 4)
            CHECK(lv_stream_shard_info(s, 1).hash_start == (unsigned __int128)1 << 126);
        CHECK_EQ(lv_stream_shard_for(s, max), n - 1);
        CHECK_EQ(lv_stream_shard_for(s, 0), 0);
        lv_stream_unref(s);
    }
    CHECK(lv_streams_find(set, LV_SLICE_LIT("nope")) == NULL);
    lv_streams_free(set); /* never started: free alone is enough */
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Round trips
 * --------------------------------------------------------------------- */

#define RT_RECORDS 1500u
#define RT_SHARDS 3u

typedef struct {
    uint64_t k[RT_RECORDS];     /* the record numbers of a shard, in seq order */
    size_t n;
} shard_log_t;

static void check_shard_content(lv_stream_t *s, unsigned shard, const shard_log_t *log, uint64_t first_seq)
{
    uint64_t from = first_seq;
    size_t seen = 0;
    while (seen < log->n) {
        got_t g;
        CHECK(read_sync(s, shard, LV_READ_AT_SEQ, from, 97, 1 << 20, &g));
        CHECK_EQ(g.err, 0);
        if (g.n == 0) {
            got_free(&g);
            LV_FAIL_("shard %u: no records from seq %llu (%zu of %zu seen)", shard, (unsigned long long)from, seen,
                     log->n);
        }
        for (size_t i = 0; i < g.n; i++, seen++) {
            char want_key[32], want[256];
            snprintf(want_key, sizeof want_key, "k%llu", (unsigned long long)log->k[seen]);
            size_t len = data_of(log->k[seen], want, sizeof want);
            if (g.recs[i].seq != first_seq + seen || strcmp(g.recs[i].key, want_key) != 0 ||
                g.recs[i].data_len != len || memcmp(g.recs[i].data, want, len) != 0) {
                got_free(&g);
                LV_FAIL_("shard %u: record %zu differs", shard, seen);
            }
        }
        from = g.next_seq;
        CHECK_EQ(from, first_seq + seen);
        got_free(&g);
    }
}

static void test_roundtrip(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "rt", RT_SHARDS)->segment_bytes = 4096;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("rt"));
    static shard_log_t logs[RT_SHARDS];
    memset(logs, 0, sizeof logs);
    static char data[RT_RECORDS][256];
    static char keys[RT_RECORDS][32];
    lv_stream_put_t recs[LV_STREAM_MAX_PUT];
    lv_stream_put_result_t res[LV_STREAM_MAX_PUT];
    uint64_t k = 0, last_seq[RT_SHARDS] = {0}, last_arrival[RT_SHARDS] = {0};
    for (size_t n = 1; k < RT_RECORDS; n = n * 3 % 499 + 1) {
        size_t take = n < RT_RECORDS - k ? n : RT_RECORDS - k;
        for (size_t i = 0; i < take; i++) {
            uint64_t kk = k + i;
            snprintf(keys[kk], sizeof keys[kk], "k%llu", (unsigned long long)kk);
            size_t len = data_of(kk, data[kk], sizeof data[kk]);
            recs[i] = (lv_stream_put_t){.shard = (unsigned)(kk % RT_SHARDS), .partition_key = lv_slice_cstr(keys[kk]),
                                        .data = lv_slice(data[kk], len)};
        }
        CHECK_EQ(put_sync(s, recs, take, res), 0);
        for (size_t i = 0; i < take; i++) {
            unsigned sh = recs[i].shard;
            CHECK_EQ(res[i].err, 0);
            CHECK_EQ(res[i].seq, last_seq[sh] + 1);
            CHECK(res[i].arrival_ms >= last_arrival[sh]);
            last_seq[sh] = res[i].seq;
            last_arrival[sh] = res[i].arrival_ms;
            logs[sh].k[logs[sh].n++] = k + i;
        }
        k += take;
    }
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        check_shard_content(s, i, &logs[i], 1);
        lv_shard_info_t si = lv_stream_shard_info(s, i);
        CHECK_EQ(si.first_seq, 1);
        CHECK_EQ(si.next_seq, logs[i].n + 1);
        CHECK_EQ(si.last_arrival_ms, last_arrival[i]);
    }
    char sub[64];
    snprintf(sub, sizeof sub, "streams/rt/0000");
    CHECK_INT(count_files(dir, sub), >, 5);
    lv_stream_unref(s);
    close_streams(set);

    /* After a restart: the same records, and seqs continue. */
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    s = lv_streams_find(set, LV_SLICE_LIT("rt"));
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        check_shard_content(s, i, &logs[i], 1);
        lv_stream_put_result_t r;
        CHECK_EQ(put_one(s, i, "again", "x", 1, &r), 0);
        CHECK_EQ(r.seq, logs[i].n + 1);
        CHECK(r.arrival_ms >= last_arrival[i]);
    }
    lv_stream_unref(s);
    close_streams(set);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Read positions and limits
 * --------------------------------------------------------------------- */

static void test_read_positions(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "rp", 1)->segment_bytes = 2048;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("rp"));
    char data[100];
    memset(data, 'd', sizeof data);
    lv_stream_put_result_t r, first_b = {0};
    for (int i = 0; i < 50; i++)
        CHECK_EQ(put_one(s, 0, "key", data, sizeof data, &r), 0);
    uint64_t last_a = r.arrival_ms;
    sleep_ms(30);
    for (int i = 0; i < 50; i++) {
        CHECK_EQ(put_one(s, 0, "key", data, sizeof data, &r), 0);
        if (i == 0)
            first_b = r;
    }
    CHECK_INT(first_b.arrival_ms, >, last_a);
    CHECK_EQ(first_b.seq, 51);
    got_t g;
    /* By seq, from before the start, in the middle, at and past the end. */
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 0, 10, 1 << 20, &g));
    CHECK_EQ(g.n, 10);
    CHECK_EQ(g.recs[0].seq, 1);
    CHECK_EQ(g.next_seq, 11);
    CHECK_EQ(g.shard_next_seq, 101);
    CHECK_EQ(g.last_arrival, r.arrival_ms);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 37, 5, 1 << 20, &g));
    CHECK_EQ(g.n, 5);
    CHECK_EQ(g.recs[0].seq, 37);
    CHECK_EQ(g.recs[4].seq, 41);
    CHECK_EQ(g.next_seq, 42);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 101, 5, 1 << 20, &g));
    CHECK_EQ(g.n, 0);
    CHECK_EQ(g.next_seq, 101);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 500, 5, 1 << 20, &g));
    CHECK_EQ(g.n, 0);
    CHECK_EQ(g.next_seq, 500);
    got_free(&g);
    /* Limits: at least one record; about max_bytes (key + data = 103). */
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 100, 1, &g));
    CHECK_EQ(g.n, 1);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 100, 250, &g));
    CHECK_EQ(g.n, 2);
    CHECK_EQ(g.next_seq, 3);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 0, 1 << 20, &g));
    CHECK_EQ(g.n, 1);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 1000000, 1 << 20, &g));
    CHECK_EQ(g.n, 100);
    CHECK_EQ(g.recs[99].seq, 100);
    CHECK_EQ(g.next_seq, 101);
    got_free(&g);
    /* By time. */
    CHECK(read_sync(s, 0, LV_READ_AT_TIME, first_b.arrival_ms, 1000, 1 << 20, &g));
    CHECK_EQ(g.n, 50);
    CHECK_EQ(g.recs[0].seq, 51);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_TIME, last_a, 3, 1 << 20, &g));
    CHECK_EQ(g.n, 3);
    CHECK(g.recs[0].arrival == last_a);
    CHECK(g.recs[0].seq <= 50);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_TIME, 0, 2, 1 << 20, &g));
    CHECK_EQ(g.recs[0].seq, 1);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_TIME, r.arrival_ms + 100000, 2, 1 << 20, &g));
    CHECK_EQ(g.n, 0);
    CHECK_EQ(g.next_seq, 101);
    got_free(&g);
    /* A shard that does not exist. */
    CHECK(read_sync(s, 0 + 1, LV_READ_AT_SEQ, 1, 2, 1 << 20, &g));
    CHECK_EQ(g.err, EINVAL);
    got_free(&g);
    lv_stream_unref(s);
    close_streams(set);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Group commit
 * --------------------------------------------------------------------- */

#define GC_THREADS 8
#define GC_CALLS 100
#define GC_SHARDS 4u

typedef struct {
    lv_stream_t *s;
    int t;
    int callbacks;
    int bad;
    uint64_t *seqs[GC_SHARDS]; /* every seq this thread got, per shard */
    size_t nseqs[GC_SHARDS];
} gc_thread_t;

static void *gc_main(void *arg)
{
    gc_thread_t *t = arg;
    for (int call = 0; call < GC_CALLS; call++) {
        unsigned a = (unsigned)(t->t + call) % GC_SHARDS, b = (a + 1) % GC_SHARDS;
        unsigned shards[5] = {a, a, b, a, b};
        lv_stream_put_t recs[5];
        char data[5][48];
        for (int i = 0; i < 5; i++) {
            snprintf(data[i], sizeof data[i], "%d.%d.%d", t->t, call, i);
            recs[i] = (lv_stream_put_t){.shard = shards[i], .partition_key = LV_SLICE_LIT("p"),
                                        .data = lv_slice_cstr(data[i])};
        }
        put_wait_t *w = lv_calloc(1, sizeof *w);
        w->sig = (signal_t)SIGNAL_INIT;
        if (lv_stream_append(t->s, recs, 5, g_loop, on_put, w) != 0 || !signal_wait(&w->sig, 1)) {
            t->bad++;
            free(w);
            continue;
        }
        /* Let other callbacks race: a second call would show here. */
        t->callbacks += w->sig.calls;
        if (w->n != 5 || w->res[0].err)
            t->bad++;
        /* Records of one call to one shard: consecutive, in order. */
        if (w->res[1].seq != w->res[0].seq + 1 || w->res[3].seq != w->res[1].seq + 1 ||
            w->res[4].seq != w->res[2].seq + 1)
            t->bad++;
        for (int i = 0; i < 5; i++)
            t->seqs[shards[i]][t->nseqs[shards[i]]++] = w->res[i].seq;
        free(w);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_group_commit(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "gc", GC_SHARDS);
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("gc"));
    static gc_thread_t th[GC_THREADS];
    pthread_t tid[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++) {
        th[i] = (gc_thread_t){.s = s, .t = i};
        for (unsigned k = 0; k < GC_SHARDS; k++)
            th[i].seqs[k] = lv_calloc(GC_CALLS * 5, sizeof(uint64_t));
        pthread_create(&tid[i], NULL, gc_main, &th[i]);
    }
    for (int i = 0; i < GC_THREADS; i++)
        pthread_join(tid[i], NULL);
    sleep_ms(20); /* a duplicate callback would have arrived by now */
    size_t total = 0;
    for (int i = 0; i < GC_THREADS; i++) {
        CHECK_EQ(th[i].bad, 0);
        CHECK_EQ(th[i].callbacks, GC_CALLS);
    }
    for (unsigned k = 0; k < GC_SHARDS; k++) {
        size_t n = 0;
        for (int i = 0; i < GC_THREADS; i++)
            n += th[i].nseqs[k];
        uint64_t *all = lv_calloc(n ? n : 1, sizeof *all);
        n = 0;
        for (int i = 0; i < GC_THREADS; i++) {
            memcpy(all + n, th[i].seqs[k], th[i].nseqs[k] * sizeof *all);
            n += th[i].nseqs[k];
        }
        qsort(all, n, sizeof *all, cmp_u64);
        size_t gap = n;
        for (size_t i = 0; i < n && gap == n; i++)
            if (all[i] != i + 1)
                gap = i;
        free(all);
        if (gap != n)
            LV_FAIL_("shard %u: seq %zu is missing or repeated", k, gap + 1);
        CHECK_EQ(lv_stream_shard_info(s, k).next_seq, n + 1);
        total += n;
    }
    for (int i = 0; i < GC_THREADS; i++)
        for (unsigned k = 0; k < GC_SHARDS; k++)
            free(th[i].seqs[k]);
    CHECK_EQ(total, GC_THREADS * GC_CALLS * 5);
    uint64_t appended = lv_counter_value(s->m_appends);
    uint64_t commits = lv_histogram_count(s->m_records_per_sync);
    uint64_t syncs = lv_counter_value(s->m_syncs);
    CHECK_EQ(appended, total);
    printf("  group commit: %llu records, %llu commits (%.1f records each), %llu fdatasyncs\n",
           (unsigned long long)appended, (unsigned long long)commits, (double)appended / (double)commits,
           (unsigned long long)syncs);
    CHECK_INT(commits, <, GC_THREADS * GC_CALLS);   /* some commits covered several appends */
    CHECK_INT(appended, >, commits);
    CHECK_EQ(lv_stream_pending_bytes(s), 0);
    lv_stream_unref(s);
    close_streams(set);
    remove_dir(dir);
}

static void test_batch_durability(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    lv_config_stream_t *cs = cfg_add(&c, "bd", 2);
    cs->durability = LV_DURABILITY_BATCH;
    cs->sync_interval_ms = 5;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("bd"));
    CHECK_EQ(lv_stream_info(s).durability, LV_DURABILITY_BATCH);
    lv_stream_put_result_t r;
    for (int i = 0; i < 20; i++)
        CHECK_EQ(put_one(s, (unsigned)i % 2, "k", "v", 1, &r), 0);
    uint64_t deadline = now_ms() + 2000;
    while (lv_counter_value(s->m_syncs) == 0 && now_ms() < deadline)
        sleep_ms(2);
    CHECK_INT(lv_counter_value(s->m_syncs), >, 0);
    got_t g;
    CHECK(read_sync(s, 1, LV_READ_AT_SEQ, 1, 100, 1 << 20, &g));
    CHECK_EQ(g.n, 10);
    got_free(&g);
    lv_stream_unref(s);
    close_streams(set);
    /* The data survived the stop (which syncs) and the restart. */
    set = open_streams(&c, NULL, NULL, 0);
    s = lv_streams_find(set, LV_SLICE_LIT("bd"));
    CHECK_EQ(lv_stream_shard_info(s, 0).next_seq, 11);
    lv_stream_unref(s);
    lv_streams_free(set);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Retention
 * --------------------------------------------------------------------- */

static void test_retention(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    lv_config_stream_t *cs = cfg_add(&c, "ret", 1);
    cs->retention_ms = 300;
    cs->segment_bytes = 1024;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("ret"));
    char data[200];
    memset(data, 'r', sizeof data);
    for (int i = 0; i < 30; i++)
        CHECK_EQ(put_one(s, 0, "k", data, sizeof data, NULL), 0);
    size_t before = count_files(dir, "streams/ret/0000");
    CHECK_INT(before, >=, 5);
    sleep_ms(350);
    lv_stream_put_result_t r;
    CHECK_EQ(put_one(s, 0, "k", data, sizeof data, &r), 0); /* lands in the last segment */
    uint64_t deadline = now_ms() + 3000;
    while (lv_stream_shard_info(s, 0).first_seq != r.seq && now_ms() < deadline)
        sleep_ms(5);
    lv_shard_info_t si = lv_stream_shard_info(s, 0);
    CHECK_EQ(si.first_seq, 31); /* 5 records a segment: the 31st started a new one */
    CHECK_EQ(si.next_seq, 32);
    CHECK_EQ(count_files(dir, "streams/ret/0000"), 1); /* only the one being written */
    got_t g;
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 100, 1 << 20, &g));
    CHECK_INT(g.n, >=, 1);
    CHECK_EQ(g.recs[0].seq, si.first_seq);
    CHECK_EQ(g.recs[g.n - 1].seq, 31);
    got_free(&g);
    CHECK_INT(lv_counter_value(s->m_segments_removed), >=, (uint64_t)before - 1);
    /* At open, too: write more segments, stop, wait, open. */
    for (int i = 0; i < 20; i++)
        CHECK_EQ(put_one(s, 0, "k", data, sizeof data, NULL), 0);
    lv_stream_unref(s);
    close_streams(set);
    CHECK_INT(count_files(dir, "streams/ret/0000"), >, 2);
    sleep_ms(350);
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    CHECK_EQ(count_files(dir, "streams/ret/0000"), 1);
    s = lv_streams_find(set, LV_SLICE_LIT("ret"));
    si = lv_stream_shard_info(s, 0);
    CHECK_INT(si.first_seq, >, 32);
    CHECK_EQ(si.next_seq, 52);
    lv_stream_unref(s);
    lv_streams_free(set);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Recovery
 * --------------------------------------------------------------------- */

static int write_file(const char *path, const char *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, p, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return NULL;
    char *p = lv_malloc((size_t)st.st_size + 1);
    *len = (size_t)read(fd, p, (size_t)st.st_size);
    close(fd);
    return p;
}

static uint64_t file_size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* The last segment's records: where each ends. */
static size_t record_ends(const char *p, size_t len, size_t *ends, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < len && n < max) {
        lv_seg_record_t r;
        ssize_t got = lv_seg_decode(p + pos, len - pos, &r);
        if (got <= 0)
            break;
        pos += (size_t)got;
        ends[n++] = pos;
    }
    return n;
}

/* Opens after damage; checks that the shard keeps exactly `keep` records
 * of the last segment (which starts at seq first), that the file was cut
 * to where they end, and (with full) that they read back and appends
 * continue. */
static void check_recovered(cfg_t *c, const char *seg_path, uint64_t first, size_t keep, uint64_t keep_bytes,
                            bool full, const char *what, size_t at)
{
    lv_streams_t *set = open_streams(c, NULL, NULL, 0);
    if (!set)
        LV_FAIL_("%s at %zu: open failed", what, at);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("rec"));
    lv_shard_info_t si = lv_stream_shard_info(s, 0);
    bool ok = si.next_seq == first + keep && file_size_of(seg_path) == keep_bytes;
    if (ok && full) {
        lv_streams_start(set);
        got_t g;
        ok = read_sync(s, 0, LV_READ_AT_SEQ, first, 1000, 1 << 20, &g) && g.n == keep &&
             (keep == 0 || g.recs[keep - 1].seq == first + keep - 1);
        got_free(&g);
        lv_stream_put_result_t r;
        ok = ok && put_one(s, 0, "after", "x", 1, &r) == 0 && r.seq == first + keep;
        stop_streams(set);
    }
    lv_stream_unref(s);
    lv_streams_free(set);
    if (!ok)
        LV_FAIL_("%s at %zu: next_seq %llu (want %llu), size %llu (want %llu)", what, at,
                 (unsigned long long)si.next_seq, (unsigned long long)(first + keep),
                 (unsigned long long)file_size_of(seg_path), (unsigned long long)keep_bytes);
}

/* The body of test_recovery, in dir. */
static void recovery_in(char *dir)
{
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "rec", 1)->segment_bytes = 1000;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("rec"));
    char data[256];
    for (uint64_t k = 0; k < 26; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%llu", (unsigned long long)k);
        CHECK_EQ(put_one(s, 0, key, data, data_of(k, data, 150), NULL), 0);
    }
    lv_stream_unref(s);
    close_streams(set);
    /* Find the last segment. */
    char shard_dir[512];
    snprintf(shard_dir, sizeof shard_dir, "%s/streams/rec/0000", dir);
    int sdfd = open(shard_dir, O_RDONLY | O_DIRECTORY);
    uint64_t *firsts;
    size_t nsegs;
    CHECK_EQ(lv_store_list_segments(sdfd, &firsts, &nsegs, NULL, NULL), 0);
    close(sdfd);
    CHECK_INT(nsegs, >=, 3);
    uint64_t first = firsts[nsegs - 1], mid_first = firsts[(nsegs - 1) / 2];
    free(firsts);
    char seg_path[600], name[LV_SEG_NAME_MAX];
    lv_seg_name(first, name);
    snprintf(seg_path, sizeof seg_path, "%s/%s", shard_dir, name);
    size_t len;
    char *orig = read_file(seg_path, &len);
    size_t ends[64];
    size_t nrec = record_ends(orig, len, ends, 64);
    CHECK_INT(nrec, >=, 2);
    CHECK_EQ(ends[nrec - 1], len);

    /* Cut at every offset: the records wholly before the cut stay. */
    for (size_t cut = 0; cut <= len; cut++) {
        CHECK_EQ(write_file(seg_path, orig, cut), 0);
        size_t keep = 0;
        while (keep < nrec && ends[keep] <= cut)
            keep++;
        check_recovered(&c, seg_path, first, keep, keep ? ends[keep - 1] : 0, cut % 11 == 0, "cut", cut);
        if (lv_test_failed_now)
            break;
    }
    /* Flip each byte: everything from the record holding it is cut. */
    for (size_t at = 0; at < len && !lv_test_failed_now; at++) {
        char *copy = lv_memdup0(orig, len);
        copy[at] ^= 0x5a;
        CHECK_EQ(write_file(seg_path, copy, len), 0);
        free(copy);
        size_t keep = 0;
        while (keep < nrec && ends[keep] <= at)
            keep++;
        check_recovered(&c, seg_path, first, keep, keep ? ends[keep - 1] : 0, at % 13 == 0, "flip", at);
    }
    CHECK_EQ(write_file(seg_path, orig, len), 0);
    free(orig);

    /* Damage in an earlier segment: refused, pointing to check-data. */
    lv_seg_name(mid_first, name);
    char mid_path[600];
    snprintf(mid_path, sizeof mid_path, "%s/%s", shard_dir, name);
    char *mid = read_file(mid_path, &len);
    mid[len / 2] ^= 1; /* somewhere in a record: its head or its data */
    mid[20] ^= 1;      /* in the first record's arrival time: heads only do not see it */
    mid[25] ^= 0x04;   /* its key length, past the limit: seen without a CRC */
    CHECK_EQ(write_file(mid_path, mid, len), 0);
    char msg[1024];
    set = open_streams(&c, NULL, msg, sizeof msg);
    CHECK(set == NULL);
    CHECK(strstr(msg, "check-data") != NULL);
    CHECK(strstr(msg, name) != NULL);
    CHECK(strstr(msg, "offset 0") != NULL);
    mid[25] ^= 0x04;
    mid[20] ^= 1;
    mid[len / 2] ^= 1;
    CHECK_EQ(write_file(mid_path, mid, len), 0);
    free(mid);
    /* A gap between segments (a file renamed): refused. */
    char moved[700];
    snprintf(moved, sizeof moved, "%s/%020llu.seg", shard_dir, (unsigned long long)mid_first + 1000);
    CHECK_EQ(rename(mid_path, moved), 0);
    set = open_streams(&c, NULL, msg, sizeof msg);
    CHECK(set == NULL);
    CHECK(strstr(msg, "should start at seq") != NULL);
    CHECK_EQ(rename(moved, mid_path), 0);
    /* Bad meta.json: refused. */
    char meta[600];
    snprintf(meta, sizeof meta, "%s/streams/rec/meta.json", dir);
    size_t mlen;
    char *m = read_file(meta, &mlen);
    CHECK_EQ(write_file(meta, "{\"format\": 1}", 13), 0);
    set = open_streams(&c, NULL, msg, sizeof msg);
    CHECK(set == NULL);
    CHECK(strstr(msg, "meta.json") != NULL);
    CHECK_EQ(write_file(meta, m, mlen), 0);
    free(m);
    /* And whole again. */
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_free(set);
    /* A data byte flipped in an older segment passes the heads-only scan at
     * start; reads stop before that record and then fail with EIO. */
    mid = read_file(mid_path, &len);
    mid[30] ^= 1; /* in the first record's data (its key is 2 or 3 bytes) */
    CHECK_EQ(write_file(mid_path, mid, len), 0);
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    s = lv_streams_find(set, LV_SLICE_LIT("rec"));
    got_t g;
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 1000, 1 << 20, &g));
    CHECK_EQ(g.err, 0);
    CHECK_EQ(g.n, mid_first - 1);
    CHECK_EQ(g.next_seq, mid_first);
    got_free(&g);
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, mid_first, 1000, 1 << 20, &g));
    CHECK_EQ(g.err, EIO);
    CHECK_EQ(g.n, 0);
    got_free(&g);
    lv_stream_unref(s);
    close_streams(set);
    mid[30] ^= 1;
    CHECK_EQ(write_file(mid_path, mid, len), 0);
    free(mid);
    printf("  recovery: last segment of %zu bytes, %zu records: cut at every offset, every byte flipped\n",
           (size_t)file_size_of(seg_path), nrec);
}

/* Thousands of opens, each cutting and fsyncing a file: on a tmpfs when
 * this process may mount one (the logic is the same, and a slow shared
 * disk does not stretch the test), else in /tmp. */
static void test_recovery(void)
{
    lv_log_set_level(LV_LOG_OFF); /* thousands of "cut N bytes" warnings */
    char *dir = make_dir();
    bool mounted = mount("tmpfs", dir, "tmpfs", 0, "size=16m") == 0;
    recovery_in(dir);
    if (mounted)
        umount2(dir, MNT_DETACH);
    lv_log_set_level(LV_LOG_ERROR);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Crash test: SIGKILL a writer at random moments
 * --------------------------------------------------------------------- */

#define CRASH_ROUNDS 24
#define CRASH_SHARDS 2u

typedef struct {
    int fd;                     /* where acknowledged records are reported */
    _Atomic int inflight;
} child_t;

typedef struct {
    child_t *ch;
    uint64_t k0;                /* record number of the first record of the call */
    size_t n;
} child_call_t;

static void child_acked(void *arg, const lv_stream_put_result_t *res, size_t n)
{
    child_call_t *call = arg;
    char line[64 * LV_STREAM_MAX_PUT];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (res[i].err)
            continue;
        len += (size_t)snprintf(line + len, sizeof line - len, "%llu %u %llu\n",
                                (unsigned long long)(call->k0 + i), (unsigned)((call->k0 + i) % CRASH_SHARDS),
                                (unsigned long long)res[i].seq);
    }
    /* Short lines: each write is atomic on a pipe. */
    if (len && write(call->ch->fd, line, len) != (ssize_t)len)
        _exit(3);
    atomic_fetch_sub(&call->ch->inflight, 1);
    free(call);
}

static void *child_loop_main(void *arg)
{
    lv_loop_run(arg);
    return NULL;
}

/* The child: appends records k0, k0+1, ... until killed. */
static void crash_child(const char *dir, int fd, uint64_t k0)
{
    lv_log_set_level(LV_LOG_OFF);
    lv_loop_t *loop = lv_loop_new(0);
    pthread_t th;
    pthread_create(&th, NULL, child_loop_main, loop);
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "crash", CRASH_SHARDS)->segment_bytes = 16 * 1024;
    lv_config_errors_t errs = {0};
    lv_streams_t *set = lv_streams_open(&c.cfg, NULL, &errs);
    if (!set)
        _exit(2);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("crash"));
    child_t ch = {.fd = fd};
    char keys[4][32], data[4][256];
    for (uint64_t k = k0;;) {
        while (atomic_load(&ch.inflight) > 32)
            sleep_ms(1);
        size_t n = 1 + k % 4;
        lv_stream_put_t recs[4];
        for (size_t i = 0; i < n; i++) {
            snprintf(keys[i], sizeof keys[i], "k%llu", (unsigned long long)(k + i));
            size_t len = data_of(k + i, data[i], sizeof data[i]);
            recs[i] = (lv_stream_put_t){.shard = (unsigned)((k + i) % CRASH_SHARDS),
                                        .partition_key = lv_slice_cstr(keys[i]), .data = lv_slice(data[i], len)};
        }
        child_call_t *call = lv_calloc(1, sizeof *call);
        *call = (child_call_t){.ch = &ch, .k0 = k, .n = n};
        atomic_fetch_add(&ch.inflight, 1);
        if (lv_stream_append(s, recs, n, loop, child_acked, call) != 0) {
            atomic_fetch_sub(&ch.inflight, 1);
            free(call);
            sleep_ms(1);
            continue;
        }
        k += n;
    }
}

typedef struct {
    uint64_t k, seq;
    unsigned shard;
} ack_t;

static void test_crash(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "crash", CRASH_SHARDS)->segment_bytes = 16 * 1024;
    srand((unsigned)time(NULL));
    size_t acks_cap = 1 << 16, nacks = 0;
    ack_t *acks = lv_malloc(acks_cap * sizeof *acks);
    uint64_t total_records = 0;
    for (int round = 0; round < CRASH_ROUNDS && !lv_test_failed_now; round++) {
        int p[2];
        CHECK_EQ(pipe(p), 0);
        uint64_t k0 = (uint64_t)(round + 1) * 100000000ull;
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            crash_child(dir, p[1], k0);
            _exit(0);
        }
        close(p[1]);
        /* Kill it at a random moment after its first acknowledgement. */
        char buf[65536], line[128];
        size_t line_len = 0;
        uint64_t kill_at = 0, give_up = now_ms() + 10000;
        bool dead = false;
        for (;;) {
            if (!kill_at && now_ms() > give_up)
                kill_at = now_ms();
            struct pollfd pfd = {.fd = p[0], .events = POLLIN};
            int timeout = 5;
            poll(&pfd, 1, timeout);
            if (!dead && kill_at && now_ms() >= kill_at) {
                kill(pid, SIGKILL);
                dead = true;
            }
            if (!(pfd.revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t got = read(p[0], buf, sizeof buf);
            if (got <= 0)
                break;
            if (!kill_at)
                kill_at = now_ms() + (uint64_t)(rand() % 120);
            for (ssize_t i = 0; i < got; i++) {
                if (buf[i] != '\n') {
                    if (line_len < sizeof line - 1)
                        line[line_len++] = buf[i];
                    continue;
                }
                line[line_len] = '\0';
                line_len = 0;
                unsigned long long k, seq;
                unsigned shard;
                if (sscanf(line, "%llu %u %llu", &k, &shard, &seq) != 3)
                    continue;
                if (nacks == acks_cap) {
                    acks_cap *= 2;
                    acks = lv_realloc(acks, acks_cap * sizeof *acks);
                }
                acks[nacks++] = (ack_t){.k = k, .seq = seq, .shard = shard};
            }
        }
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* Everything acknowledged is there, once, in order, as written. */
        lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
        CHECK(set != NULL);
        lv_streams_start(set);
        lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("crash"));
        uint64_t *by_seq[CRASH_SHARDS];
        uint64_t counts[CRASH_SHARDS];
        total_records = 0;
        for (unsigned sh = 0; sh < CRASH_SHARDS; sh++) {
            counts[sh] = lv_stream_shard_info(s, sh).next_seq - 1;
            total_records += counts[sh];
            by_seq[sh] = lv_calloc(counts[sh] + 1, sizeof(uint64_t));
            uint64_t from = 1;
            while (from <= counts[sh]) {
                got_t g;
                CHECK(read_sync(s, sh, LV_READ_AT_SEQ, from, 10000, 64 << 20, &g));
                CHECK_EQ(g.err, 0);
                CHECK_INT(g.n, >, 0);
                for (size_t i = 0; i < g.n; i++) {
                    CHECK_EQ(g.recs[i].seq, from + i);
                    unsigned long long k = strtoull(g.recs[i].key + 1, NULL, 10);
                    char want[256];
                    size_t len = data_of(k, want, sizeof want);
                    if (g.recs[i].data_len != len || memcmp(g.recs[i].data, want, len) != 0 ||
                        k % CRASH_SHARDS != sh) {
                        got_free(&g);
                        LV_FAIL_("round %d: shard %u seq %llu holds wrong data", round, sh,
                                 (unsigned long long)(from + i));
                    }
                    by_seq[sh][from + i] = k;
                }
                from = g.next_seq;
                got_free(&g);
            }
        }
        for (size_t i = 0; i < nacks; i++) {
            const ack_t *a = &acks[i];
            if (a->shard >= CRASH_SHARDS || a->seq > counts[a->shard] || by_seq[a->shard][a->seq] != a->k)
                LV_FAIL_("round %d: acknowledged record %llu (shard %u seq %llu) is missing", round,
                         (unsigned long long)a->k, a->shard, (unsigned long long)a->seq);
        }
        /* No record twice: record numbers only grow along a shard (each
         * child writes its own range, in order). */
        for (unsigned sh = 0; sh < CRASH_SHARDS; sh++) {
            for (uint64_t q = 2; q <= counts[sh]; q++)
                if (by_seq[sh][q] <= by_seq[sh][q - 1])
                    LV_FAIL_("round %d: shard %u: record %llu after %llu", round, sh,
                             (unsigned long long)by_seq[sh][q], (unsigned long long)by_seq[sh][q - 1]);
            free(by_seq[sh]);
        }
        lv_stream_unref(s);
        close_streams(set);
    }
    printf("  crash test: %d rounds, %zu acknowledged records checked, %llu records in the log\n", CRASH_ROUNDS,
           nacks, (unsigned long long)total_records);
    CHECK_INT(nacks, >, 0);
    free(acks);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * A full disk
 * --------------------------------------------------------------------- */

/* The body of test_enospc, on a mounted tmpfs at dir; block is 256 KiB of
 * zeros. test_enospc unmounts whatever happens here. */
static void enospc_on(const char *dir, char *block)
{
    char filler[600];
    snprintf(filler, sizeof filler, "%s/filler", dir);
    int ffd = open(filler, O_WRONLY | O_CREAT, 0644);
    CHECK_EQ(write(ffd, block, 256 * 1024), 256 * 1024);
    close(ffd);
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "full", 1)->segment_bytes = 200 * 1024;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("full"));
    uint64_t last_good = 0;
    int err = 0;
    size_t size = 0;
    for (int i = 0; i < 400 && !err; i++) {
        lv_stream_put_result_t r;
        size = 7000 + (size_t)i * 13;
        err = put_one(s, 0, "k", block, size, &r);
        if (!err)
            last_good = r.seq;
    }
    int still = put_one(s, 0, "k", block, size + 1000, NULL); /* still full */
    CHECK_EQ(lv_stream_pending_bytes(s), 0);
    uint64_t enospc_count = lv_counter_value(s->m_errors[4]);
    /* No segment holds a partial record. */
    char shard_dir[600];
    snprintf(shard_dir, sizeof shard_dir, "%s/streams/full/0000", dir);
    int sdfd = open(shard_dir, O_RDONLY | O_DIRECTORY);
    uint64_t *firsts;
    size_t n;
    lv_store_list_segments(sdfd, &firsts, &n, NULL, NULL);
    uint64_t expect = 1;
    int problems = 0;
    for (size_t i = 0; i < n; i++) {
        char name[LV_SEG_NAME_MAX];
        lv_seg_name(firsts[i], name);
        int fd = openat(sdfd, name, O_RDONLY);
        struct stat st;
        fstat(fd, &st);
        lv_seg_reader_t rd;
        lv_seg_scan_t scan;
        lv_seg_reader_file(&rd, fd, 0, (uint64_t)st.st_size);
        lv_seg_scan(&rd, true, expect, &scan, NULL, NULL);
        lv_seg_reader_free(&rd);
        close(fd);
        problems += scan.problem != 0 || scan.good_bytes != (uint64_t)st.st_size;
        expect = scan.next_seq;
    }
    free(firsts);
    close(sdfd);
    /* Space returns: the stream works again, with no gap in seqs. */
    unlink(filler);
    lv_stream_put_result_t r = {0};
    int again = put_one(s, 0, "k", block, size, &r);
    got_t g;
    bool read = read_sync(s, 0, LV_READ_AT_SEQ, last_good, 10, 64 << 20, &g);
    size_t got = g.n;
    got_free(&g);
    lv_stream_unref(s);
    close_streams(set);
    set = open_streams(&c, NULL, NULL, 0);
    uint64_t next_after_restart = 0;
    if (set) {
        s = lv_streams_find(set, LV_SLICE_LIT("full"));
        next_after_restart = lv_stream_shard_info(s, 0).next_seq;
        lv_stream_unref(s);
        lv_streams_free(set);
    }
    printf("  enospc: %llu records fitted, then ENOSPC\n", (unsigned long long)last_good);
    CHECK_EQ(err, ENOSPC);
    CHECK_INT(last_good, >, 10);
    CHECK_EQ(still, ENOSPC);
    CHECK_INT(enospc_count, >=, 2);
    CHECK_EQ(problems, 0);
    CHECK_EQ(expect, last_good + 1);
    CHECK_EQ(again, 0);
    CHECK_EQ(r.seq, last_good + 1);
    CHECK(read);
    CHECK_EQ(got, 2);
    CHECK_EQ(next_after_restart, last_good + 2);
}

static void test_enospc(void)
{
    char *dir = make_dir();
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        printf("  enospc: skipped (cannot mount a tmpfs: %s)\n", strerror(errno));
        remove_dir(dir);
        return;
    }
    lv_log_set_level(LV_LOG_OFF);
    char *block = lv_calloc(1, 256 * 1024);
    enospc_on(dir, block);
    free(block);
    lv_log_set_level(LV_LOG_ERROR);
    umount2(dir, MNT_DETACH);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Create and delete through the API
 * --------------------------------------------------------------------- */

typedef struct {
    signal_t sig;
    int err;
    lv_stream_t *s;
} created_t;

static void on_created(void *arg, const lv_stream_created_t *res)
{
    created_t *c = arg;
    c->err = res->err;
    c->s = res->stream;
    if (c->s)
        lv_stream_ref(c->s);
    signal_post(&c->sig);
}

static int create_sync(lv_streams_t *set, const char *name, unsigned shards, lv_stream_t **out)
{
    created_t c = {.sig = SIGNAL_INIT};
    lv_streams_create(set, lv_slice_cstr(name), shards, g_loop, on_created, &c);
    if (!signal_wait(&c.sig, 1))
        return ETIMEDOUT;
    if (out)
        *out = c.s;
    else if (c.s)
        lv_stream_unref(c.s);
    return c.err;
}

static bool collect_name(void *arg, lv_slice_t name)
{
    lv_buf_t *b = arg;
    lv_buf_append(b, name.ptr, name.len);
    lv_buf_append(b, " ", 1);
    return true;
}

static bool exists(const char *dir, const char *sub)
{
    char path[600];
    snprintf(path, sizeof path, "%s/streams/%s", dir, sub);
    return access(path, F_OK) == 0;
}

static bool has_deleted_dir(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/streams", dir);
    DIR *d = opendir(path);
    bool found = false;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        found |= strstr(de->d_name, "~deleted-") != NULL;
    if (d)
        closedir(d);
    return found;
}

static void test_create_and_delete(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "conf", 1);
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *made;
    CHECK_EQ(create_sync(set, "made", 2, &made), 0);
    CHECK(made != NULL);
    CHECK_EQ(create_sync(set, "made", 2, NULL), EEXIST);
    CHECK_EQ(create_sync(set, "conf", 2, NULL), EEXIST);
    CHECK_EQ(create_sync(set, "bad/name", 2, NULL), EINVAL);
    CHECK_EQ(create_sync(set, "zero", 0, NULL), EINVAL);
    CHECK_EQ(create_sync(set, "many", 1025, NULL), EINVAL);
    CHECK_EQ(create_sync(set, "alpha", 1, NULL), 0);
    lv_stream_info_t info = lv_stream_info(made);
    CHECK_SLICE(info.name, "made");
    CHECK_EQ(info.shards, 2);
    CHECK(info.id != 0);
    CHECK_EQ(info.durability, LV_DURABILITY_FSYNC);
    CHECK_EQ(info.retention_ms, 24 * 3600 * 1000LL);
    uint64_t id = info.id;
    lv_stream_put_result_t r;
    CHECK_EQ(put_one(made, 1, "k", "hello", 5, &r), 0);
    CHECK_EQ(r.seq, 1);
    lv_buf_t names = LV_BUF_INIT;
    lv_streams_each(set, lv_slice(NULL, 0), collect_name, &names);
    CHECK_SLICE(lv_buf_slice(&names), "alpha conf made ");
    lv_buf_clear(&names);
    lv_streams_each(set, LV_SLICE_LIT("alpha"), collect_name, &names);
    CHECK_SLICE(lv_buf_slice(&names), "conf made ");
    lv_buf_clear(&names);
    lv_streams_each(set, LV_SLICE_LIT("b"), collect_name, &names);
    CHECK_SLICE(lv_buf_slice(&names), "conf made ");
    lv_buf_free(&names);
    lv_stream_unref(made);
    close_streams(set);

    /* Persisted: back after a restart without being in the config. */
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    made = lv_streams_find(set, LV_SLICE_LIT("made"));
    CHECK(made != NULL);
    CHECK(lv_stream_info(made).id == id);
    got_t g;
    CHECK(read_sync(made, 1, LV_READ_AT_SEQ, 1, 10, 1 << 20, &g));
    CHECK_EQ(g.n, 1);
    CHECK_STR(g.recs[0].data, "hello");
    got_free(&g);

    /* Delete with a reference outstanding: gone from find and each at once,
     * appends and reads fail, files stay until the reference goes. */
    lv_stream_t *other = lv_streams_find(set, LV_SLICE_LIT("made"));
    CHECK_EQ(lv_streams_delete(set, LV_SLICE_LIT("made")), 0);
    CHECK_EQ(lv_streams_delete(set, LV_SLICE_LIT("made")), ENOENT);
    CHECK(lv_streams_find(set, LV_SLICE_LIT("made")) == NULL);
    lv_stream_put_t put = {.shard = 0, .partition_key = LV_SLICE_LIT("k"), .data = LV_SLICE_LIT("x")};
    CHECK_EQ(lv_stream_append(made, &put, 1, g_loop, on_put, NULL), ENOENT);
    CHECK(read_sync(made, 1, LV_READ_AT_SEQ, 1, 10, 1 << 20, &g));
    CHECK_EQ(g.err, ENOENT);
    got_free(&g);
    CHECK_SLICE(lv_stream_info(made).name, "made");
    uint64_t deadline = now_ms() + 3000;
    while (exists(dir, "made") && now_ms() < deadline)
        sleep_ms(2);
    CHECK(!exists(dir, "made"));
    CHECK(has_deleted_dir(dir));
    /* The name is free again at once; the new stream is a new one. */
    lv_stream_t *again;
    CHECK_EQ(create_sync(set, "made", 3, &again), 0);
    CHECK(lv_stream_info(again).id != id);
    CHECK_EQ(lv_stream_shard_info(again, 1).next_seq, 1);
    lv_stream_unref(again);
    lv_stream_unref(made);
    CHECK(has_deleted_dir(dir));
    lv_stream_unref(other);
    deadline = now_ms() + 3000;
    while (has_deleted_dir(dir) && now_ms() < deadline)
        sleep_ms(2);
    CHECK(!has_deleted_dir(dir));
    CHECK(exists(dir, "made/meta.json"));
    /* A config stream can be deleted; it comes back empty at the next start. */
    CHECK_EQ(lv_streams_delete(set, LV_SLICE_LIT("conf")), 0);
    close_streams(set);
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_stream_t *conf = lv_streams_find(set, LV_SLICE_LIT("conf"));
    CHECK(conf != NULL);
    lv_stream_unref(conf);
    made = lv_streams_find(set, LV_SLICE_LIT("made"));
    CHECK_EQ(lv_stream_info(made).shards, 3);
    lv_stream_unref(made);
    lv_streams_free(set);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Refusals
 * --------------------------------------------------------------------- */

static void test_refusals(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "ea", 2)->max_pending_bytes = 1000;
    lv_streams_t *set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("ea"));
    /* Not started: appends wait in the queue. */
    static char data[2 * 1024 * 1024];
    memset(data, 'e', sizeof data);
    put_wait_t *w1 = lv_calloc(1, sizeof *w1), *w2 = lv_calloc(1, sizeof *w2);
    w1->sig = w2->sig = (signal_t)SIGNAL_INIT;
    lv_stream_put_t p = {.shard = 1, .partition_key = LV_SLICE_LIT("k"), .data = lv_slice(data, 570)};
    CHECK_EQ(lv_stream_append(s, &p, 1, g_loop, on_put, w1), 0);
    CHECK_EQ(lv_stream_pending_bytes(s), 26 + 1 + 570);
    CHECK_EQ(lv_stream_append(s, &p, 1, g_loop, on_put, w2), EAGAIN);
    p.data.len = 300;
    CHECK_EQ(lv_stream_append(s, &p, 1, NULL, NULL, NULL), 0); /* fits; nobody waits for it */
    CHECK_EQ(lv_stream_pending_bytes(s), 26 + 1 + 570 + 26 + 1 + 300);
    CHECK_EQ(lv_counter_value(s->m_errors[1]), 1); /* EAGAIN */
    lv_streams_start(set);
    CHECK(signal_wait(&w1->sig, 1));
    CHECK_EQ(w1->res[0].err, 0);
    CHECK_EQ(w1->res[0].seq, 1);
    uint64_t deadline = now_ms() + 2000;
    while (lv_stream_pending_bytes(s) && now_ms() < deadline)
        sleep_ms(1);
    CHECK_EQ(lv_stream_pending_bytes(s), 0);
    /* One append larger than the whole budget is taken when nothing waits. */
    p.data.len = 5000;
    CHECK_EQ(put_sync(s, &p, 1, NULL), 0);
    /* Bad records. */
    lv_stream_put_t many[LV_STREAM_MAX_PUT + 1];
    for (size_t i = 0; i <= LV_STREAM_MAX_PUT; i++)
        many[i] = (lv_stream_put_t){.shard = 0, .partition_key = LV_SLICE_LIT("k")};
    CHECK_EQ(lv_stream_append(s, many, 0, g_loop, on_put, w2), EINVAL);
    CHECK_EQ(lv_stream_append(s, many, LV_STREAM_MAX_PUT + 1, g_loop, on_put, w2), EINVAL);
    CHECK_EQ(put_sync(s, many, LV_STREAM_MAX_PUT, NULL), 0);
    lv_stream_put_t bad = {.shard = 2, .partition_key = LV_SLICE_LIT("k")};
    CHECK_EQ(lv_stream_append(s, &bad, 1, g_loop, on_put, w2), EINVAL);
    bad = (lv_stream_put_t){.shard = 0, .partition_key = lv_slice("", 0)};
    CHECK_EQ(lv_stream_append(s, &bad, 1, g_loop, on_put, w2), EINVAL);
    bad.partition_key = lv_slice(data, LV_STREAM_MAX_KEY + 1);
    CHECK_EQ(lv_stream_append(s, &bad, 1, g_loop, on_put, w2), EINVAL);
    bad.partition_key = lv_slice(data, LV_STREAM_MAX_KEY);
    bad.data = lv_slice(data, LV_STREAM_MAX_DATA - LV_STREAM_MAX_KEY + 1);
    CHECK_EQ(lv_stream_append(s, &bad, 1, g_loop, on_put, w2), EINVAL);
    bad.data.len--;
    CHECK_EQ(put_sync(s, &bad, 1, NULL), 0); /* the largest record */
    CHECK_EQ(lv_counter_value(s->m_errors[0]), 501 + 4); /* EINVAL, counted in records */
    /* A second levee on the same directory is refused. */
    char msg[512];
    CHECK(open_streams(&c, NULL, msg, sizeof msg) == NULL);
    CHECK(strstr(msg, "in use") != NULL);
    /* After stop: appends, reads and creates fail with ESHUTDOWN. */
    p.data.len = 10;
    for (int i = 0; i < 50;) {
        int err = lv_stream_append(s, &p, 1, NULL, NULL, NULL);
        CHECK(err == 0 || err == EAGAIN);
        if (err == 0)
            i++;
    }
    CHECK(stop_streams(set));
    CHECK_EQ(lv_stream_pending_bytes(s), 0); /* stop acknowledged all of it first */
    CHECK_EQ(lv_stream_shard_info(s, 1).next_seq, 2 + 1 + 1 + 50);
    CHECK_EQ(lv_stream_append(s, &p, 1, g_loop, on_put, w2), ESHUTDOWN);
    got_t g;
    CHECK(read_sync(s, 0, LV_READ_AT_SEQ, 1, 10, 1 << 20, &g));
    CHECK_EQ(g.err, ESHUTDOWN);
    got_free(&g);
    CHECK_EQ(create_sync(set, "late", 1, NULL), ESHUTDOWN);
    lv_stream_unref(s);
    lv_streams_free(set);
    free(w1);
    free(w2);
    /* A config stream whose shard count changed keeps the disk's. */
    c.streams[0].shards = 4;
    set = open_streams(&c, NULL, NULL, 0);
    CHECK(set != NULL);
    s = lv_streams_find(set, LV_SLICE_LIT("ea"));
    CHECK_EQ(lv_stream_info(s).shards, 2);
    lv_stream_unref(s);
    lv_streams_free(set);
    /* No data_dir, and bad names, are refused. */
    c.cfg.data_dir = NULL;
    CHECK(open_streams(&c, NULL, msg, sizeof msg) == NULL);
    c.cfg.data_dir = dir;
    c.streams[0].name = (char *)"a/b";
    CHECK(open_streams(&c, NULL, msg, sizeof msg) == NULL);
    CHECK(strstr(msg, "not valid") != NULL);
    remove_dir(dir);
}

/* ---------------------------------------------------------------------
 * Measurement (printed, not asserted)
 * --------------------------------------------------------------------- */

#define BENCH_THREADS 16
#define BENCH_BATCH 500
#define BENCH_SECONDS 3

typedef struct {
    lv_stream_t *s;
    int t;
    uint64_t stop_at;
    uint64_t records;
} bench_t;

static void *bench_main(void *arg)
{
    bench_t *b = arg;
    static char payload[100];
    memset(payload, 'b', sizeof payload);
    lv_stream_put_t recs[BENCH_BATCH];
    char keys[BENCH_BATCH][16];
    put_wait_t *w = lv_calloc(1, sizeof *w);
    for (uint64_t round = 0; now_ms() < b->stop_at; round++) {
        for (int i = 0; i < BENCH_BATCH; i++) {
            snprintf(keys[i], sizeof keys[i], "u%d-%d", b->t, i);
            lv_slice_t key = lv_slice_cstr(keys[i]);
            recs[i] = (lv_stream_put_t){.shard = lv_stream_shard_for(b->s, lv_stream_hash_key(key)),
                                        .partition_key = key, .data = lv_slice(payload, sizeof payload)};
        }
        w->sig = (signal_t)SIGNAL_INIT;
        if (lv_stream_append(b->s, recs, BENCH_BATCH, g_loop, on_put, w) != 0) {
            sleep_ms(1);
            continue;
        }
        if (!signal_wait(&w->sig, 1) || w->res[0].err)
            break;
        b->records += BENCH_BATCH;
    }
    free(w);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_measure(void)
{
    char *dir = make_dir();
    /* Raw fdatasync latency of a 4 KiB append on this file system. */
    char path[600];
    snprintf(path, sizeof path, "%s/probe", dir);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    char block[4096];
    memset(block, 'p', sizeof block);
    double lat[200];
    for (int i = 0; i < 200; i++) {
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            break;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        fdatasync(fd);
        clock_gettime(CLOCK_MONOTONIC, &b);
        lat[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    close(fd);
    qsort(lat, 200, sizeof lat[0], cmp_double);
    double sum = 0;
    for (int i = 0; i < 200; i++)
        sum += lat[i];
    printf("  fdatasync of a 4 KiB append: mean %.0f us, p50 %.0f us, p99 %.0f us (200 runs)\n", sum / 200,
           lat[100], lat[198]);

    cfg_t c;
    cfg_init(&c, dir);
    cfg_add(&c, "bench", 4);
    lv_metrics_t *m = lv_metrics_new(1);
    lv_streams_t *set = open_streams(&c, m, NULL, 0);
    CHECK(set != NULL);
    lv_streams_start(set);
    lv_stream_t *s = lv_streams_find(set, LV_SLICE_LIT("bench"));
    static bench_t bt[BENCH_THREADS];
    pthread_t tid[BENCH_THREADS];
    uint64_t t0 = now_ms();
    for (int i = 0; i < BENCH_THREADS; i++) {
        bt[i] = (bench_t){.s = s, .t = i, .stop_at = t0 + BENCH_SECONDS * 1000};
        pthread_create(&tid[i], NULL, bench_main, &bt[i]);
    }
    uint64_t records = 0;
    for (int i = 0; i < BENCH_THREADS; i++) {
        pthread_join(tid[i], NULL);
        records += bt[i].records;
    }
    double secs = (double)(now_ms() - t0) / 1000.0;
    uint64_t syncs = lv_counter_value(s->m_syncs), commits = lv_histogram_count(s->m_records_per_sync);
    double sync_mean_us = syncs ? (double)lv_histogram_sum_ns(s->m_sync_seconds) / (double)syncs / 1000.0 : 0;
    printf("  %d threads x batches of %d records of ~100 bytes, 4 shards, durability fsync:\n"
           "    %.0f records/s (%llu records in %.1f s), %.0f records per fdatasync, %.0f records per group "
           "commit, fdatasync mean %.0f us\n",
           BENCH_THREADS, BENCH_BATCH, (double)records / secs, (unsigned long long)records, secs,
           syncs ? (double)records / (double)syncs : 0, commits ? (double)records / (double)commits : 0,
           sync_mean_us);
    CHECK_INT(records, >, 0);
    lv_stream_unref(s);
    close_streams(set);
    lv_metrics_free(m);
    remove_dir(dir);
}

static void *loop_main(void *arg)
{
    lv_loop_run(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    lv_log_set_level(LV_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    g_loop = lv_loop_new(0);
    pthread_t th;
    pthread_create(&th, NULL, loop_main, g_loop);
    const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(fn)                                       \
    do {                                              \
        if (!only || strcmp(only, #fn) == 0) {        \
            uint64_t t0_ = now_ms();                  \
            LV_RUN(fn);                               \
            printf("  %s: %llu ms\n", #fn, (unsigned long long)(now_ms() - t0_)); \
        }                                             \
    } while (0)
    RUN(test_hashing);
    RUN(test_roundtrip);
    RUN(test_read_positions);
    RUN(test_group_commit);
    RUN(test_batch_durability);
    RUN(test_retention);
    RUN(test_recovery);
    RUN(test_crash);
    RUN(test_enospc);
    RUN(test_create_and_delete);
    RUN(test_refusals);
    RUN(test_measure);
    lv_loop_stop(g_loop);
    pthread_join(th, NULL);
    lv_loop_free(g_loop);
    return lv_test_summary();
}
