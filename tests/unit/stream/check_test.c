/* check_test.c: `levee check-data` (stream/check.h) against data dirs
 * written by the engine and then damaged by hand: clean; a flipped byte in
 * an old segment; a torn tail; a segment whose name breaks the sequence; a
 * bad meta.json; a missing shard directory; a data_dir in use. Each damage
 * is reported with its file and offset and exit code 1; --repair cuts it
 * (exit 0), a second check is clean, and the engine opens the repaired
 * stream and continues its seqs where the repair says. */
#include "stream/check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "stream/segment.h"
#include "stream/store.h"
#include "stream/stream.h"
#include "test.h"

static lv_loop_t *g_loop;

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
    int err;
} waiter_t;

static void wake(waiter_t *w)
{
    pthread_mutex_lock(&w->m);
    w->calls++;
    pthread_cond_broadcast(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void wait_for(waiter_t *w)
{
    pthread_mutex_lock(&w->m);
    while (!w->calls)
        pthread_cond_wait(&w->c, &w->m);
    pthread_mutex_unlock(&w->m);
}

static void on_put(void *arg, const lv_stream_put_result_t *r, size_t n)
{
    waiter_t *w = arg;
    w->err = r[0].err;
    wake(w);
}

static void on_stop(lv_loop_t *loop, void *arg)
{
    wake(arg);
}

typedef struct {
    lv_config_t cfg;
    lv_config_stream_t streams[2];
} cfg_t;

static void cfg_init(cfg_t *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    c->cfg.path = (char *)"test.yaml";
    c->cfg.data_dir = (char *)dir;
    c->cfg.streams = c->streams;
    c->cfg.num_streams = 2;
    c->streams[0] = (lv_config_stream_t){.name = (char *)"one", .shards = 2, .retention_ms = 86400000,
                                         .sync_interval_ms = 5, .segment_bytes = 700, .max_pending_bytes = 1 << 20};
    c->streams[1] = c->streams[0];
    c->streams[1].name = (char *)"two";
    c->streams[1].shards = 1;
}

/* Writes n records of ~150 bytes to each shard of both streams. */
static void fill(const char *dir, int n)
{
    cfg_t c;
    cfg_init(&c, dir);
    lv_config_errors_t errs = {0};
    lv_streams_t *set = lv_streams_open(&c.cfg, NULL, &errs);
    lv_config_errors_free(&errs);
    if (!set)
        return;
    lv_streams_start(set);
    static const char *const names[] = {"one", "two"};
    char data[150];
    memset(data, 'c', sizeof data);
    for (int k = 0; k < 2; k++) {
        lv_stream_t *s = lv_streams_find(set, lv_slice_cstr(names[k]));
        for (unsigned sh = 0; sh < lv_stream_info(s).shards; sh++) {
            for (int i = 0; i < n; i++) {
                waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
                lv_stream_put_t p = {.shard = sh, .partition_key = LV_SLICE_LIT("key"),
                                     .data = lv_slice(data, sizeof data)};
                if (lv_stream_append(s, &p, 1, g_loop, on_put, &w) == 0)
                    wait_for(&w);
            }
        }
        lv_stream_unref(s);
    }
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    lv_streams_stop(set, g_loop, on_stop, &w);
    wait_for(&w);
    lv_streams_free(set);
}

/* Runs check-data into a buffer; returns the exit code. */
static int run_check(const char *dir, bool repair, char **report)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    int rc = lv_stream_check_data(dir, repair, out, out);
    fclose(out);
    if (report)
        *report = text;
    else
        free(text);
    return rc;
}

/* next_seq of a shard as the engine sees it after opening; 0 if refused. */
static uint64_t engine_next_seq(const char *dir, const char *stream, unsigned shard)
{
    cfg_t c;
    cfg_init(&c, dir);
    lv_config_errors_t errs = {0};
    lv_streams_t *set = lv_streams_open(&c.cfg, NULL, &errs);
    lv_config_errors_free(&errs);
    if (!set)
        return 0;
    lv_stream_t *s = lv_streams_find(set, lv_slice_cstr(stream));
    uint64_t next = lv_stream_shard_info(s, shard).next_seq;
    lv_stream_unref(s);
    lv_streams_free(set);
    return next;
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/lv_check_test_XXXXXX";
    return lv_strdup(mkdtemp(tmpl));
}

static void seg_path(const char *dir, const char *stream, unsigned shard, uint64_t first, char *out, size_t len)
{
    char name[LV_SEG_NAME_MAX];
    lv_seg_name(first, name);
    snprintf(out, len, "%s/streams/%s/%04u/%s", dir, stream, shard, name);
}

static uint64_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* 26 + 3 + 150 = 179 bytes a record; 700-byte segments roll after 4. */
#define REC 179u

static void test_clean(void)
{
    char *dir = make_dir();
    fill(dir, 10);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "stream one: id ") != NULL);
    CHECK(strstr(report, "shard 0001: 3 segments, 10 records (seq 1..10), 1790 bytes: ok") != NULL);
    CHECK(strstr(report, "2 streams, 3 shards, 30 records, 5370 bytes: clean") != NULL);
    free(report);
    /* An empty data_dir is clean; a missing one is unusable. */
    char *empty = make_dir();
    CHECK_EQ(run_check(empty, false, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "no streams") != NULL);
    free(report);
    rmdir(empty);
    CHECK_EQ(run_check(empty, false, NULL), LV_CHECK_UNUSABLE);
    free(empty);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void flip(const char *path, uint64_t at)
{
    int fd = open(path, O_RDWR);
    char c;
    if (pread(fd, &c, 1, (off_t)at) == 1) {
        c ^= 0x10;
        if (pwrite(fd, &c, 1, (off_t)at) != 1)
            c = 0;
    }
    close(fd);
}

static void test_flipped_byte(void)
{
    char *dir = make_dir();
    fill(dir, 10);
    /* Shard 1 of "one": segments 1 (records 1-4), 5 (5-8), 9 (9-10).
     * Damage record 6, in the middle segment. */
    char mid[600], last[600];
    seg_path(dir, "one", 1, 5, mid, sizeof mid);
    seg_path(dir, "one", 1, 9, last, sizeof last);
    flip(mid, REC + 100);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_DAMAGED);
    CHECK(strstr(report, "DAMAGE: 0001/00000000000000000005.seg at offset 179: corrupt record") != NULL);
    CHECK(strstr(report, "where seq 6 should be") != NULL);
    CHECK(strstr(report, "after the damage: 1 later segment (358 bytes)") != NULL);
    CHECK(strstr(report, "shard 0000: 3 segments, 10 records (seq 1..10), 1790 bytes: ok") != NULL);
    CHECK(strstr(report, "1 damaged;") != NULL);
    free(report);
    /* The engine reads old segments head by head at start, so a flipped
     * data byte there is check-data's to find (reads of it fail with EIO). */
    CHECK_EQ(engine_next_seq(dir, "one", 1), 11);
    CHECK_EQ(run_check(dir, true, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "repaired: cut 0001/00000000000000000005.seg to 179 bytes") != NULL);
    CHECK(strstr(report, "repaired: removed 0001/00000000000000000009.seg (358 bytes)") != NULL);
    CHECK(strstr(report, "the shard continues at seq 6") != NULL);
    free(report);
    CHECK_EQ(size_of(mid), REC);
    CHECK_EQ(size_of(last), UINT64_MAX);
    CHECK_EQ(run_check(dir, false, NULL), LV_CHECK_CLEAN);
    CHECK_EQ(engine_next_seq(dir, "one", 1), 6);
    CHECK_EQ(engine_next_seq(dir, "one", 0), 11);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void test_torn_tail_and_first_record(void)
{
    char *dir = make_dir();
    fill(dir, 10);
    char last[600];
    seg_path(dir, "two", 0, 9, last, sizeof last);
    CHECK_EQ(truncate(last, REC + 50), 0);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_DAMAGED);
    CHECK(strstr(report, "at offset 179: torn record") != NULL);
    CHECK(strstr(report, "a torn tail: levee cuts it at start") != NULL);
    free(report);
    CHECK_EQ(run_check(dir, true, NULL), LV_CHECK_CLEAN);
    CHECK_EQ(size_of(last), REC);
    CHECK_EQ(engine_next_seq(dir, "two", 0), 10);
    /* Damage in the very first record of a shard's only segment after the
     * first: the segment is cut to nothing and kept, so seqs continue. */
    flip(last, 30);
    CHECK_EQ(run_check(dir, true, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "cut 0000/00000000000000000009.seg to 0 bytes") != NULL);
    free(report);
    CHECK_EQ(size_of(last), 0);
    CHECK_EQ(engine_next_seq(dir, "two", 0), 9);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void test_bad_name(void)
{
    char *dir = make_dir();
    fill(dir, 10);
    char from[600], to[600];
    seg_path(dir, "one", 0, 9, from, sizeof from);
    seg_path(dir, "one", 0, 12, to, sizeof to);
    CHECK_EQ(rename(from, to), 0);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_DAMAGED);
    CHECK(strstr(report, "0000/00000000000000000012.seg should start at seq 9") != NULL);
    free(report);
    CHECK_EQ(run_check(dir, true, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "removed 0000/00000000000000000012.seg") != NULL);
    free(report);
    CHECK_EQ(engine_next_seq(dir, "one", 0), 9);
    /* Stray files are noted, not damage. */
    char stray[600];
    snprintf(stray, sizeof stray, "%s/streams/one/0000/notes.txt", dir);
    FILE *f = fopen(stray, "w");
    fclose(f);
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "ignoring notes.txt") != NULL);
    free(report);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void test_meta_and_shard_dir(void)
{
    char *dir = make_dir();
    fill(dir, 3);
    char meta[600];
    snprintf(meta, sizeof meta, "%s/streams/two/meta.json", dir);
    FILE *f = fopen(meta, "w");
    fputs("{\"format\": 1, \"name\": \"two\"", f);
    fclose(f);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_DAMAGED);
    CHECK(strstr(report, "stream two: DAMAGE: meta.json: not valid JSON") != NULL);
    free(report);
    CHECK_EQ(run_check(dir, true, &report), LV_CHECK_DAMAGED); /* not repairable here */
    CHECK(strstr(report, "not repairable") != NULL);
    free(report);
    lv_store_remove_tree(AT_FDCWD, meta);
    char path[600];
    snprintf(path, sizeof path, "%s/streams/two", dir);
    lv_store_remove_tree(AT_FDCWD, path);
    /* A shard directory gone: repaired as an empty shard. */
    snprintf(path, sizeof path, "%s/streams/one/0001", dir);
    CHECK_EQ(lv_store_remove_tree(AT_FDCWD, path), 0);
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_DAMAGED);
    CHECK(strstr(report, "shard 0001: DAMAGE: its directory is missing") != NULL);
    free(report);
    CHECK_EQ(run_check(dir, true, NULL), LV_CHECK_CLEAN);
    CHECK_EQ(engine_next_seq(dir, "one", 1), 1);
    /* Leftovers of an interrupted create are mentioned, not damage. */
    snprintf(path, sizeof path, "%s/streams/x~new-0000000000000001", dir);
    mkdir(path, 0755);
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_CLEAN);
    CHECK(strstr(report, "interrupted create or delete") != NULL);
    free(report);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void test_in_use(void)
{
    char *dir = make_dir();
    cfg_t c;
    cfg_init(&c, dir);
    lv_config_errors_t errs = {0};
    lv_streams_t *set = lv_streams_open(&c.cfg, NULL, &errs);
    CHECK(set != NULL);
    char *report;
    CHECK_EQ(run_check(dir, false, &report), LV_CHECK_UNUSABLE);
    CHECK(strstr(report, "in use by a running levee") != NULL);
    free(report);
    lv_streams_free(set);
    CHECK_EQ(run_check(dir, false, NULL), LV_CHECK_CLEAN);
    lv_config_errors_free(&errs);
    lv_store_remove_tree(AT_FDCWD, dir);
    free(dir);
}

static void *loop_main(void *arg)
{
    lv_loop_run(arg);
    return NULL;
}

int main(void)
{
    lv_log_set_level(LV_LOG_OFF);
    g_loop = lv_loop_new(0);
    pthread_t th;
    pthread_create(&th, NULL, loop_main, g_loop);
    LV_RUN(test_clean);
    LV_RUN(test_flipped_byte);
    LV_RUN(test_torn_tail_and_first_record);
    LV_RUN(test_bad_name);
    LV_RUN(test_meta_and_shard_dir);
    LV_RUN(test_in_use);
    lv_loop_stop(g_loop);
    pthread_join(th, NULL);
    lv_loop_free(g_loop);
    return lv_test_summary();
}
