/* read.c: lv_stream_read, served by the reader threads of lv_streams_t.
 *
 * A read is a job on one queue shared by LV_STREAM_READERS threads. A
 * reader locates the start under the shard's lock (binary search of the
 * segments, then of the segment's sparse index: the last entry at or before
 * the wanted seq, or the last one that arrived before the wanted time) and
 * copies out what it needs: the segment's name, the offset, and how many of
 * its bytes are acknowledged. It then drops the lock, opens the segment by
 * name and reads forward with the segment reader, CRC-checking every
 * record, skipping those before the start, copying the rest into the job's
 * buffer, and moving on to the next segment until it has max_records,
 * about max_bytes, or everything acknowledged. The result is posted to the
 * caller's loop; its slices point into the job's buffer, freed after the
 * callback.
 *
 * If retention removes a segment between the lookup and the open (ENOENT),
 * the lookup runs again and starts at the new oldest record. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "stream/segment.h"
#include "stream/stream_internal.h"

typedef struct lv_read_job {
    struct lv_read_job *next;
    lv_stream_t *s;            /* referenced until the callback has run */
    unsigned shard;
    lv_read_from_t kind;
    uint64_t from;
    size_t max_records, max_bytes;
    lv_loop_t *caller;
    lv_stream_read_cb done;
    void *arg;
    lv_stream_read_t res;
    lv_stream_record_t *records;
    size_t *key_at;            /* where each record's key starts in bytes (data follows) */
    size_t nrecords, cap;
    size_t payload;            /* key + data bytes taken */
    lv_buf_t bytes;
} lv_read_job_t;

static void free_job(lv_read_job_t *job)
{
    free(job->records);
    free(job->key_at);
    lv_buf_free(&job->bytes);
    free(job);
}

static void deliver(lv_loop_t *loop, void *arg)
{
    lv_read_job_t *job = arg;
    job->done(job->arg, &job->res);
    lv_stream_t *s = job->s;
    free_job(job);
    lv_stream_unref(s);
}

/* Where a read continues within one segment, as found under the lock. */
typedef struct {
    bool found;
    uint64_t seg_first;        /* the segment's name */
    uint64_t off;              /* start reading here */
    uint64_t end;              /* its acknowledged bytes */
    uint64_t seg_next;         /* seq after its last acknowledged record */
} spot_t;

/* The last segment whose first_seq <= seq (segs is not empty). Empty
 * segments share their first_seq with the next one, which this prefers. */
static size_t seg_for_seq(const lv_stream_shard_t *sh, uint64_t seq)
{
    size_t lo = 0, hi = sh->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sh->segs[mid].first_seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

static spot_t spot_at(const lv_stream_segment_t *seg, uint64_t off)
{
    return (spot_t){.found = true, .seg_first = seg->first_seq, .off = off, .end = seg->size,
                    .seg_next = seg->next_seq};
}

/* The start for records with seq >= want. Call with the lock held and
 * first <= want < sh->next_seq. */
static spot_t locate_seq(const lv_stream_shard_t *sh, uint64_t want)
{
    const lv_stream_segment_t *seg = &sh->segs[seg_for_seq(sh, want)];
    size_t lo = 0, hi = seg->nindex;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->index[mid].seq <= want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return spot_at(seg, lo ? seg->index[lo - 1].off : 0);
}

/* The start for records that arrived at or after from: the first segment
 * whose newest record did, from its last index entry that arrived before
 * from. Arrival times never decrease within a shard. */
static spot_t locate_time(const lv_stream_shard_t *sh, uint64_t from)
{
    for (size_t k = 0; k < sh->nsegs; k++) {
        const lv_stream_segment_t *seg = &sh->segs[k];
        if (seg->next_seq == seg->first_seq || seg->last_arrival_ms < from)
            continue;
        size_t lo = 0, hi = seg->nindex;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (seg->index[mid].arrival_ms < from)
                lo = mid + 1;
            else
                hi = mid;
        }
        return spot_at(seg, lo ? seg->index[lo - 1].off : 0);
    }
    return (spot_t){.found = false};
}

static void take(lv_read_job_t *job, const lv_seg_record_t *rec)
{
    if (job->nrecords == job->cap) {
        job->cap = job->cap ? job->cap * 2 : 16;
        job->records = lv_realloc(job->records, job->cap * sizeof *job->records);
        job->key_at = lv_realloc(job->key_at, job->cap * sizeof *job->key_at);
    }
    job->key_at[job->nrecords] = lv_buf_len(&job->bytes);
    lv_buf_append(&job->bytes, rec->key.ptr, rec->key.len);
    if (rec->data.len)
        lv_buf_append(&job->bytes, rec->data.ptr, rec->data.len);
    job->records[job->nrecords++] = (lv_stream_record_t){
        .seq = rec->seq,
        .arrival_ms = rec->arrival_ms,
        .partition_key = lv_slice(NULL, rec->key.len),
        .data = lv_slice(NULL, rec->data.len),
    };
    job->payload += rec->key.len + rec->data.len;
}

/* Reads one segment from spot. Returns 1 when the read is complete (limits
 * reached or an error set), 0 to go on with the next segment. */
static int read_segment(lv_read_job_t *job, const spot_t *spot, int fd, uint64_t *want_seq, bool *by_time)
{
    lv_stream_t *s = job->s;
    lv_seg_reader_t r;
    lv_seg_reader_file(&r, fd, spot->off, spot->end);
    int done = 0;
    for (;;) {
        uint64_t off = r.pos;
        lv_seg_record_t rec;
        ssize_t n = lv_seg_reader_next(&r, true, &rec);
        if (n == 0)
            break;
        if (n < 0) {
            char path[LV_STREAM_SEG_PATH_MAX];
            lv_stream_seg_path(job->shard, spot->seg_first, path);
            lv_log_error(LV_STREAM_MOD, "stream %s: %s at offset %llu: %s%s%s", s->name, path,
                         (unsigned long long)off, lv_seg_problem_str((int)n), n == LV_SEG_IOERR ? ": " : "",
                         n == LV_SEG_IOERR ? strerror(r.err) : "");
            if (job->nrecords == 0)
                job->res.err = EIO;
            done = 1;
            break;
        }
        if (rec.seq < *want_seq || (*by_time && rec.arrival_ms < job->from))
            continue;
        *by_time = false;
        if (job->nrecords > 0 && job->payload + rec.key.len + rec.data.len > job->max_bytes) {
            done = 1;
            break;
        }
        take(job, &rec);
        *want_seq = rec.seq + 1;
        if (job->nrecords >= job->max_records || job->payload >= job->max_bytes) {
            done = 1;
            break;
        }
    }
    lv_seg_reader_free(&r);
    return done;
}

static void run_read(lv_read_job_t *job)
{
    lv_stream_t *s = job->s;
    lv_stream_shard_t *sh = &s->shards[job->shard];
    bool by_time = job->kind == LV_READ_AT_TIME;
    uint64_t want = by_time ? 0 : job->from;
    bool started = false;      /* the first lookup clamps want and sets next_seq */
    int retries = 0;
    for (;;) {
        if (atomic_load_explicit(&s->deleted, memory_order_acquire)) {
            job->res.err = ENOENT;
            return;
        }
        pthread_mutex_lock(&sh->lock);
        uint64_t first = sh->nsegs ? sh->segs[0].first_seq : sh->next_seq;
        uint64_t next = sh->next_seq;
        if (!started) {
            job->res.shard_next_seq = next;
            job->res.last_arrival_ms = sh->last_arrival_ms;
        }
        if (want < first)
            want = first;
        spot_t spot = {.found = false};
        if (want < next)
            spot = by_time ? locate_time(sh, job->from) : locate_seq(sh, want);
        pthread_mutex_unlock(&sh->lock);
        if (!started) {
            job->res.next_seq = by_time ? next : want;
            started = true;
        }
        if (!spot.found)
            return;
        char path[LV_STREAM_SEG_PATH_MAX];
        lv_stream_seg_path(job->shard, spot.seg_first, path);
        int fd = openat(s->dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == ENOENT && retries++ < 16)
                continue; /* removed by retention since the lookup */
            lv_log_error(LV_STREAM_MOD, "stream %s: cannot open %s: %s", s->name, path, strerror(e));
            if (job->nrecords == 0)
                job->res.err = EIO;
            return;
        }
        int complete = read_segment(job, &spot, fd, &want, &by_time);
        close(fd);
        if (job->nrecords)
            job->res.next_seq = want;
        if (complete)
            return;
        /* The rest of the shard is in the following segments. */
        if (spot.seg_next > want)
            want = spot.seg_next;
        by_time = false;
        if (want >= job->res.shard_next_seq)
            return;
        retries = 0;
    }
}

static void finish_result(lv_read_job_t *job)
{
    char *base = lv_buf_data(&job->bytes);
    for (size_t i = 0; i < job->nrecords; i++) {
        lv_stream_record_t *rec = &job->records[i];
        rec->partition_key.ptr = base + job->key_at[i];
        rec->data.ptr = base + job->key_at[i] + rec->partition_key.len;
    }
    job->res.records = job->records;
    job->res.n = job->nrecords;
}

static void *reader_main(void *arg)
{
    lv_streams_t *set = arg;
    pthread_setname_np(pthread_self(), "lv-stream-read");
    pthread_mutex_lock(&set->rlock);
    for (;;) {
        while (!set->rhead && !set->readers_exit)
            pthread_cond_wait(&set->rwake, &set->rlock);
        lv_read_job_t *job = set->rhead;
        if (!job)
            break;
        set->rhead = job->next;
        if (!set->rhead)
            set->rtail = &set->rhead;
        pthread_mutex_unlock(&set->rlock);
        run_read(job);
        finish_result(job);
        lv_loop_post(job->caller, deliver, job);
        pthread_mutex_lock(&set->rlock);
    }
    pthread_mutex_unlock(&set->rlock);
    return NULL;
}

void lv_stream_read(lv_stream_t *s, unsigned shard, lv_read_from_t kind, uint64_t from, size_t max_records,
                    size_t max_bytes, lv_loop_t *caller, lv_stream_read_cb done, void *arg)
{
    lv_streams_t *set = s->set;
    if (!caller || !done) {
        lv_log_error(LV_STREAM_MOD, "stream %s: a read without a loop or a callback is dropped", s->name);
        return;
    }
    lv_read_job_t *job = lv_calloc(1, sizeof *job);
    lv_stream_ref(s);
    job->s = s;
    job->shard = shard;
    job->kind = kind;
    job->from = from;
    job->max_records = max_records < 1 ? 1 : max_records > LV_STREAM_MAX_READ ? LV_STREAM_MAX_READ : max_records;
    job->max_bytes = max_bytes;
    job->caller = caller;
    job->done = done;
    job->arg = arg;
    if (shard >= s->nshards || (kind != LV_READ_AT_SEQ && kind != LV_READ_AT_TIME)) {
        job->res.err = EINVAL;
        lv_loop_post(caller, deliver, job);
        return;
    }
    pthread_mutex_lock(&set->rlock);
    bool refused = set->readers_exit;
    if (!refused) {
        *set->rtail = job;
        set->rtail = &job->next;
        pthread_cond_signal(&set->rwake);
    }
    pthread_mutex_unlock(&set->rlock);
    if (refused) {
        job->res.err = ESHUTDOWN;
        lv_loop_post(caller, deliver, job);
    }
}

int lv_stream_readers_start(lv_streams_t *set)
{
    if (set->readers_running)
        return 0;
    for (unsigned i = 0; i < LV_STREAM_READERS; i++) {
        int err = pthread_create(&set->readers[i], NULL, reader_main, set);
        if (err) {
            pthread_mutex_lock(&set->rlock);
            set->readers_exit = true;
            pthread_cond_broadcast(&set->rwake);
            pthread_mutex_unlock(&set->rlock);
            for (unsigned k = 0; k < i; k++)
                pthread_join(set->readers[k], NULL);
            return err;
        }
    }
    set->readers_running = true;
    return 0;
}

void lv_stream_readers_finish(lv_streams_t *set)
{
    pthread_mutex_lock(&set->rlock);
    set->readers_exit = true;
    pthread_cond_broadcast(&set->rwake);
    pthread_mutex_unlock(&set->rlock);
    if (set->readers_running) {
        for (unsigned i = 0; i < LV_STREAM_READERS; i++)
            pthread_join(set->readers[i], NULL);
        set->readers_running = false;
    }
}

void lv_stream_readers_drop(lv_streams_t *set)
{
    pthread_mutex_lock(&set->rlock);
    lv_read_job_t *job = set->rhead;
    set->rhead = NULL;
    set->rtail = &set->rhead;
    pthread_mutex_unlock(&set->rlock);
    while (job) {
        lv_read_job_t *next = job->next;
        lv_stream_t *s = job->s;
        free_job(job);
        lv_stream_unref(s);
        job = next;
    }
}
