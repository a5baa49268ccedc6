/* commit.c: appends and the committer thread of a stream (group commit).
 *
 * lv_stream_append copies the records into one allocation and queues it
 * under the stream's qlock, refusing with EAGAIN when the bytes accepted
 * and not yet acknowledged would pass max_pending_bytes. The committer
 * takes the whole queue as one batch: it gives each record its seq and
 * arrival time, encodes every shard's records into that shard's buffer,
 * writes each buffer with one pwrite at the end of the shard's last
 * segment, and (durability fsync) runs one fdatasync per file written.
 * Only then are the appends acknowledged, and the records published to
 * readers. Appends that arrive meanwhile wait in the queue and form the
 * next batch: one sync covers all of them, which is the whole of group
 * commit.
 *
 * A batch succeeds or fails as a whole. If any write, sync or new segment
 * fails (ENOSPC, EIO...), every shard written is cut back to its size
 * before the batch (ftruncate), its seqs are handed out again, and every
 * append of the batch fails with that errno. Nothing half-written stays in
 * a segment, and the next batch simply tries again, so the stream works
 * again once space returns. Only if the cut itself fails is the shard
 * marked broken (EIO until a restart, whose recovery cuts the file).
 *
 * durability batch: appends are acknowledged after the write; the dirty
 * files are synced sync_interval after the first unsynced write (the
 * committer waits on its condition variable with that deadline), when a
 * segment is closed, and at stop.
 *
 * A new segment is started when a batch is about to write to a shard whose
 * last segment has reached segment_bytes (a batch never spans two files):
 * the file is created, the shard directory fsynced so its name survives a
 * crash, and the segment published (empty) to readers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "stream/segment.h"
#include "stream/store.h"
#include "stream/stream_internal.h"

/* ---- appending (any thread) ---- */

static int check_records(const lv_stream_t *s, const lv_stream_put_t *recs, size_t n)
{
    if (n < 1 || n > LV_STREAM_MAX_PUT || !recs)
        return EINVAL;
    for (size_t i = 0; i < n; i++) {
        const lv_stream_put_t *r = &recs[i];
        if (r->shard >= s->nshards || r->partition_key.len < 1 || r->partition_key.len > LV_STREAM_MAX_KEY)
            return EINVAL;
        if (r->data.len > LV_STREAM_MAX_DATA - r->partition_key.len)
            return EINVAL;
        if ((r->data.len && !r->data.ptr) || !r->partition_key.ptr)
            return EINVAL;
    }
    return 0;
}

static lv_stream_append_op_t *new_op(lv_stream_t *s, const lv_stream_put_t *recs, size_t n)
{
    size_t payload = 0;
    uint64_t encoded = 0;
    for (size_t i = 0; i < n; i++) {
        payload += recs[i].partition_key.len + recs[i].data.len;
        encoded += lv_seg_record_size(recs[i].partition_key.len, recs[i].data.len);
    }
    size_t head = sizeof(lv_stream_append_op_t) + n * sizeof(lv_stream_put_result_t) +
                  n * sizeof(lv_stream_append_rec_t);
    lv_stream_append_op_t *op = lv_malloc(head + payload);
    *op = (lv_stream_append_op_t){.s = s, .n = n, .bytes = encoded};
    op->results = (lv_stream_put_result_t *)(op + 1);
    op->recs = (lv_stream_append_rec_t *)(op->results + n);
    op->data = (char *)(op->recs + n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const lv_stream_put_t *r = &recs[i];
        op->recs[i] = (lv_stream_append_rec_t){
            .shard = r->shard, .key_len = (uint32_t)r->partition_key.len, .data_len = (uint32_t)r->data.len, .at = at};
        memcpy(op->data + at, r->partition_key.ptr, r->partition_key.len);
        at += r->partition_key.len;
        if (r->data.len)
            memcpy(op->data + at, r->data.ptr, r->data.len);
        at += r->data.len;
        op->results[i] = (lv_stream_put_result_t){0};
    }
    return op;
}

int lv_stream_append(lv_stream_t *s, const lv_stream_put_t *recs, size_t n, lv_loop_t *caller,
                     lv_stream_appended_cb done, void *arg)
{
    int err = check_records(s, recs, n);
    if (!err && done && !caller)
        err = EINVAL;
    if (err) {
        lv_stream_count_errors(s, err, n);
        return err;
    }
    lv_stream_append_op_t *op = new_op(s, recs, n);
    uint64_t bytes = op->bytes; /* op belongs to the committer once queued */
    op->caller = caller;
    op->done = done;
    op->arg = arg;
    pthread_mutex_lock(&s->qlock);
    uint64_t pending = atomic_load_explicit(&s->pending_bytes, memory_order_relaxed);
    if (atomic_load_explicit(&s->deleted, memory_order_acquire))
        err = ENOENT;
    else if (s->closing)
        err = ESHUTDOWN;
    /* An append larger than the whole budget is still taken when nothing
     * is pending, or it could never be. */
    else if (pending > 0 && pending + bytes > s->cfg.max_pending_bytes)
        err = EAGAIN;
    if (!err) {
        atomic_fetch_add_explicit(&s->pending_bytes, bytes, memory_order_relaxed);
        /* Before the committer can take it, so the gauge never dips. */
        lv_gauge_add(s->m_pending, (int64_t)bytes);
        *s->qtail = op;
        s->qtail = &op->next;
        pthread_cond_signal(&s->qwake);
    }
    pthread_mutex_unlock(&s->qlock);
    if (err) {
        free(op);
        lv_stream_count_errors(s, err, n);
        return err;
    }
    return 0;
}

uint64_t lv_stream_pending_bytes(const lv_stream_t *s)
{
    return atomic_load_explicit(&s->pending_bytes, memory_order_relaxed);
}

/* ---- the committer ---- */

static void deliver(lv_loop_t *loop, void *arg)
{
    lv_stream_append_op_t *op = arg;
    op->done(op->arg, op->results, op->n);
    free(op);
}

static int pwrite_all(int fd, const char *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return ENOSPC;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int sync_fd(lv_stream_t *s, int fd)
{
    uint64_t t0 = lv_stream_now_ns();
    int rc = fdatasync(fd);
    int err = rc == 0 ? 0 : errno;
    lv_histogram_observe_ns(s->m_sync_seconds, lv_stream_now_ns() - t0);
    lv_counter_inc(s->m_syncs);
    return err;
}

static void observe_records_per_sync(lv_stream_t *s, uint64_t records)
{
    /* The histogram's bounds are record counts; it takes nanoseconds, so
     * a count is passed as that many "seconds". */
    if (records)
        lv_histogram_observe_ns(s->m_records_per_sync, records * 1000000000ull);
}

/* durability batch: syncs every dirty shard. A failure cannot be reported
 * to anyone (the appends were acknowledged at their write); it is logged
 * and counted. */
static void sync_dirty(lv_stream_t *s)
{
    for (unsigned i = 0; i < s->nshards; i++) {
        lv_stream_shard_t *sh = &s->shards[i];
        if (!sh->dirty)
            continue;
        int err = sync_fd(s, sh->fd);
        if (err) {
            lv_log_error(LV_STREAM_MOD, "stream %s shard %u: fdatasync: %s (acknowledged records may be lost "
                                        "if the machine stops now)",
                         s->name, i, strerror(err));
            lv_stream_count_errors(s, err, s->dirty_records);
        }
        sh->dirty = false;
    }
    observe_records_per_sync(s, s->dirty_records);
    s->dirty_since_ns = 0;
    s->dirty_records = 0;
}

/* Closes the shard's last segment and starts a new one named by the next
 * seq. Returns 0 or an errno (the old segment stays the last one). */
static int roll(lv_stream_t *s, unsigned shard)
{
    lv_stream_shard_t *sh = &s->shards[shard];
    char path[LV_STREAM_SEG_PATH_MAX], dir[LV_STORE_SHARD_NAME_MAX];
    lv_stream_seg_path(shard, sh->w_next_seq, path);
    lv_store_shard_name(shard, dir);
    int fd = openat(s->dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    struct stat st;
    int err = fstat(fd, &st) != 0 ? errno : 0;
    if (!err && st.st_size != 0) {
        /* A file already holding bytes under the name of records not yet
         * written: never overwrite what we do not understand. */
        lv_log_error(LV_STREAM_MOD, "stream %s: %s exists with %lld bytes; not writing over it", s->name, path,
                     (long long)st.st_size);
        err = EIO;
    }
    if (!err) {
        int dfd = openat(s->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        err = dfd < 0 ? errno : lv_store_sync_dir(dfd);
        if (dfd >= 0)
            close(dfd);
    }
    if (err) {
        close(fd);
        return err;
    }
    if (sh->fd >= 0) {
        if (sh->dirty) {
            int e = sync_fd(s, sh->fd);
            if (e)
                lv_log_error(LV_STREAM_MOD, "stream %s shard %u: fdatasync of the closing segment: %s", s->name,
                             shard, strerror(e));
            sh->dirty = false;
        }
        close(sh->fd);
    }
    sh->fd = fd;
    sh->w_size = 0;
    sh->w_indexed = false;
    sh->w_last_index_off = 0;
    pthread_mutex_lock(&sh->lock);
    if (sh->nsegs == sh->segs_cap) {
        sh->segs_cap = sh->segs_cap ? sh->segs_cap * 2 : 4;
        sh->segs = lv_realloc(sh->segs, sh->segs_cap * sizeof *sh->segs);
    }
    sh->segs[sh->nsegs++] = (lv_stream_segment_t){.first_seq = sh->w_next_seq, .next_seq = sh->w_next_seq};
    pthread_mutex_unlock(&sh->lock);
    return 0;
}

/* First record of this batch for the shard: opens a new segment if
 * needed, then remembers where the batch starts. */
static int touch(lv_stream_t *s, unsigned shard)
{
    lv_stream_shard_t *sh = &s->shards[shard];
    if (sh->broken)
        return EIO;
    if (sh->fd < 0 || sh->w_size >= s->cfg.segment_bytes) {
        int err = roll(s, shard);
        if (err)
            return err;
    }
    sh->touched = true;
    s->touched[s->ntouched++] = sh;
    sh->b_start_size = sh->w_size;
    sh->b_next_seq = sh->w_next_seq;
    sh->b_last_arrival_ms = sh->w_last_arrival_ms;
    sh->b_last_index_off = sh->w_last_index_off;
    sh->b_indexed = sh->w_indexed;
    sh->b_nindex = 0;
    lv_buf_clear(&sh->batch);
    return 0;
}

static void add_batch_index(lv_stream_shard_t *sh, uint64_t seq, uint64_t off, uint64_t arrival_ms)
{
    if (sh->b_nindex == sh->b_index_cap) {
        sh->b_index_cap = sh->b_index_cap ? sh->b_index_cap * 2 : 16;
        sh->b_index = lv_realloc(sh->b_index, sh->b_index_cap * sizeof *sh->b_index);
    }
    sh->b_index[sh->b_nindex++] = (lv_stream_index_entry_t){seq, off, arrival_ms};
}

/* Gives every record of the batch its seq and arrival time and encodes it
 * into its shard's buffer. Returns 0 or the errno of a segment that could
 * not be started. */
static int assign(lv_stream_t *s, lv_stream_append_op_t *ops, uint64_t now_ms)
{
    for (lv_stream_append_op_t *op = ops; op; op = op->next) {
        for (size_t i = 0; i < op->n; i++) {
            const lv_stream_append_rec_t *r = &op->recs[i];
            lv_stream_shard_t *sh = &s->shards[r->shard];
            if (!sh->touched) {
                int err = touch(s, r->shard);
                if (err)
                    return err;
            }
            uint64_t seq = sh->w_next_seq++;
            /* Never backwards within a shard, even if the clock steps back. */
            uint64_t arrival = now_ms > sh->w_last_arrival_ms ? now_ms : sh->w_last_arrival_ms;
            sh->w_last_arrival_ms = arrival;
            uint64_t off = sh->w_size + lv_buf_len(&sh->batch);
            if (!sh->w_indexed || off - sh->w_last_index_off >= LV_STREAM_INDEX_SPACING) {
                add_batch_index(sh, seq, off, arrival);
                sh->w_indexed = true;
                sh->w_last_index_off = off;
            }
            lv_slice_t key = lv_slice(op->data + r->at, r->key_len);
            lv_slice_t data = lv_slice(op->data + r->at + r->key_len, r->data_len);
            size_t size = lv_seg_record_size(key.len, data.len);
            lv_buf_reserve(&sh->batch, size);
            lv_seg_encode(lv_buf_tail(&sh->batch), seq, arrival, key, data);
            lv_buf_commit(&sh->batch, size);
            op->results[i] = (lv_stream_put_result_t){.err = 0, .seq = seq, .arrival_ms = arrival};
        }
    }
    return 0;
}

/* Undoes a failed batch: every shard written goes back to its size before
 * the batch, and its seqs are given out again. */
static void roll_back(lv_stream_t *s)
{
    for (size_t i = 0; i < s->ntouched; i++) {
        lv_stream_shard_t *sh = s->touched[i];
        unsigned shard = (unsigned)(sh - s->shards);
        if (ftruncate(sh->fd, (off_t)sh->b_start_size) != 0) {
            lv_log_error(LV_STREAM_MOD, "stream %s shard %u: cannot cut a failed write back to %llu bytes: %s; "
                                        "appends to this shard fail until levee restarts",
                         s->name, shard, (unsigned long long)sh->b_start_size, strerror(errno));
            sh->broken = true;
        }
        sh->w_size = sh->b_start_size;
        sh->w_next_seq = sh->b_next_seq;
        sh->w_last_arrival_ms = sh->b_last_arrival_ms;
        sh->w_last_index_off = sh->b_last_index_off;
        sh->w_indexed = sh->b_indexed;
    }
}

/* Makes the batch's records visible to readers. */
static void publish(lv_stream_t *s)
{
    for (size_t i = 0; i < s->ntouched; i++) {
        lv_stream_shard_t *sh = s->touched[i];
        pthread_mutex_lock(&sh->lock);
        lv_stream_segment_t *seg = &sh->segs[sh->nsegs - 1];
        for (size_t k = 0; k < sh->b_nindex; k++)
            lv_stream_index_push(seg, sh->b_index[k].seq, sh->b_index[k].off, sh->b_index[k].arrival_ms);
        seg->size = sh->w_size;
        seg->next_seq = sh->w_next_seq;
        seg->last_arrival_ms = sh->w_last_arrival_ms;
        sh->next_seq = sh->w_next_seq;
        sh->last_arrival_ms = sh->w_last_arrival_ms;
        lv_stream_shard_gauges(sh);
        pthread_mutex_unlock(&sh->lock);
    }
}

static void commit_batch(lv_stream_t *s, lv_stream_append_op_t *ops)
{
    uint64_t records = 0;
    for (lv_stream_append_op_t *op = ops; op; op = op->next)
        records += op->n;
    s->ntouched = 0;
    int err = atomic_load_explicit(&s->deleted, memory_order_acquire) ? ENOENT : 0;
    if (!err)
        err = assign(s, ops, lv_store_wall_ms());
    for (size_t i = 0; i < s->ntouched && !err; i++) {
        lv_stream_shard_t *sh = s->touched[i];
        err = pwrite_all(sh->fd, lv_buf_data(&sh->batch), lv_buf_len(&sh->batch), sh->b_start_size);
        sh->w_size = sh->b_start_size + lv_buf_len(&sh->batch);
    }
    if (!err && s->cfg.durability == LV_DURABILITY_FSYNC) {
        for (size_t i = 0; i < s->ntouched && !err; i++)
            err = sync_fd(s, s->touched[i]->fd);
        if (!err)
            observe_records_per_sync(s, records);
    }
    if (err) {
        if (err != ENOENT)
            lv_log_warn(LV_STREAM_MOD, "stream %s: %llu records failed: %s", s->name, (unsigned long long)records,
                        strerror(err));
        roll_back(s);
    } else {
        publish(s);
        if (s->cfg.durability == LV_DURABILITY_BATCH) {
            for (size_t i = 0; i < s->ntouched; i++)
                s->touched[i]->dirty = true;
            if (!s->dirty_since_ns && s->ntouched)
                s->dirty_since_ns = lv_stream_now_ns();
            s->dirty_records += records;
        }
    }
    for (size_t i = 0; i < s->ntouched; i++)
        s->touched[i]->touched = false;
    s->ntouched = 0;

    /* Counters and the budget are settled before the acknowledgements go
     * out, so a caller that looks (or appends again) from its callback
     * sees them. */
    uint64_t bytes = 0, payload = 0;
    for (lv_stream_append_op_t *op = ops; op; op = op->next) {
        bytes += op->bytes;
        for (size_t i = 0; i < op->n && !err; i++)
            payload += op->recs[i].key_len + op->recs[i].data_len;
    }
    if (err)
        lv_stream_count_errors(s, err, records);
    else {
        lv_counter_add(s->m_appends, records);
        lv_counter_add(s->m_bytes, payload);
    }
    atomic_fetch_sub_explicit(&s->pending_bytes, bytes, memory_order_relaxed);
    lv_gauge_add(s->m_pending, -(int64_t)bytes);
    for (lv_stream_append_op_t *op = ops, *next; op; op = next) {
        next = op->next;
        if (err)
            for (size_t i = 0; i < op->n; i++)
                op->results[i] = (lv_stream_put_result_t){.err = err};
        if (op->done)
            lv_loop_post(op->caller, deliver, op);
        else
            free(op);
    }
}

static struct timespec deadline_ts(uint64_t at_ns)
{
    return (struct timespec){.tv_sec = (time_t)(at_ns / 1000000000u), .tv_nsec = (long)(at_ns % 1000000000u)};
}

static void *committer_main(void *arg)
{
    lv_stream_t *s = arg;
    pthread_setname_np(pthread_self(), "lv-commit");
    uint64_t interval_ns = (uint64_t)s->cfg.sync_interval_ms * 1000000u;
    pthread_mutex_lock(&s->qlock);
    for (;;) {
        while (!s->qhead && !s->committer_exit) {
            if (!s->dirty_since_ns) {
                pthread_cond_wait(&s->qwake, &s->qlock);
                continue;
            }
            uint64_t due = s->dirty_since_ns + interval_ns;
            if (lv_stream_now_ns() >= due)
                break;
            struct timespec ts = deadline_ts(due);
            pthread_cond_timedwait(&s->qwake, &s->qlock, &ts);
        }
        lv_stream_append_op_t *ops = s->qhead;
        s->qhead = NULL;
        s->qtail = &s->qhead;
        bool exiting = s->committer_exit && !ops;
        pthread_mutex_unlock(&s->qlock);
        if (ops)
            commit_batch(s, ops);
        if (s->dirty_since_ns && (exiting || lv_stream_now_ns() >= s->dirty_since_ns + interval_ns))
            sync_dirty(s);
        pthread_mutex_lock(&s->qlock);
        if (exiting)
            break;
    }
    pthread_mutex_unlock(&s->qlock);
    return NULL;
}

int lv_stream_committer_start(lv_stream_t *s)
{
    if (s->committer_running)
        return 0;
    int err = pthread_create(&s->committer, NULL, committer_main, s);
    if (err)
        return err;
    s->committer_running = true;
    return 0;
}

void lv_stream_committer_finish(lv_stream_t *s, bool closing, bool join)
{
    pthread_mutex_lock(&s->qlock);
    if (closing)
        s->closing = true;
    s->committer_exit = true;
    pthread_cond_signal(&s->qwake);
    pthread_mutex_unlock(&s->qlock);
    if (join && s->committer_running) {
        pthread_join(s->committer, NULL);
        s->committer_running = false;
    }
}

void lv_stream_drop_queued(lv_stream_t *s)
{
    pthread_mutex_lock(&s->qlock);
    lv_stream_append_op_t *op = s->qhead;
    s->qhead = NULL;
    s->qtail = &s->qhead;
    pthread_mutex_unlock(&s->qlock);
    while (op) {
        lv_stream_append_op_t *next = op->next;
        atomic_fetch_sub_explicit(&s->pending_bytes, op->bytes, memory_order_relaxed);
        free(op); /* the pending gauge is left alone: the registry may be gone */
        op = next;
    }
}
