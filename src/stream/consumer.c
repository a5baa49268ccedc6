/* consumer.c: stream consumers (see consumer.h for the contract,
 * consumer_format.h for the bytes and consumer_policy.h for the decisions).
 *
 * Two parts, one per thread that runs them:
 *
 *   - The home loop drives every shard of every consumer through a small
 *     state machine: READ (lv_stream_read in flight) -> the records are
 *     copied into the shard's batch -> either INVOKE (lv_fn_invoke in
 *     flight) or TIMER (waiting: a poll when caught up, a batching window,
 *     a retry backoff) -> ... A shard holds at most one batch, and it
 *     leaves only when it succeeded or was dead-lettered, which is what
 *     keeps a shard's records in order. Before reading, the shard's
 *     lv_stream_shard_info snapshot says whether anything new is there, so
 *     a caught-up shard costs one mutex-protected read every
 *     LV_CONSUMER_POLL_MS, not a trip to a reader thread.
 *
 *   - The writer thread owns the disk: checkpoints and dead-letter lines.
 *     The home loop hands it ops through one mutex-protected list; it takes
 *     the whole list at once, appends and fsyncs the dead-letter lines
 *     first, then writes each touched shard's newest checkpoint (temp
 *     file, fsync, rename) and fsyncs each touched directory once. A
 *     successful batch does not wait for its checkpoint: the next batch is
 *     read and run while it is written, and checkpoints that pile up for a
 *     shard collapse into the newest. A dead-lettered batch does wait: the
 *     shard moves past it only once its line is on disk.
 *
 * Stop: no new read, invocation or retry starts; when the reads,
 * invocations and dead-letter writes in flight are back, a barrier op goes
 * to the writer, and its callback on the home loop, which runs after every
 * earlier op is on disk, reports done.
 *
 * Metrics: counters and the invocation histogram are updated on the home
 * loop; lag is computed at scrape time from the shard's snapshot and the
 * consumer's position (atomics, so any thread may read them). */
#include "stream/consumer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "stream/consumer_format.h"
#include "stream/consumer_policy.h"

#define MOD "consumer"

/* Wait before reading again after a read failed (EIO). */
#define READ_RETRY_MS 1000u
/* Wait before writing a dead-letter line again after the write failed. */
#define DEAD_LETTER_RETRY_MS 1000u
/* A batch's copy of its records is let go of past this after a batch. */
#define ARENA_KEEP (1024u * 1024u)

/* ======================================================================
 * Types
 * ====================================================================== */

typedef struct consumer consumer_t;

typedef enum {
    SH_IDLE,        /* nothing scheduled: not started, stopping, or between steps */
    SH_TIMER,       /* s->timer armed; s->next says for what */
    SH_READING,     /* lv_stream_read in flight */
    SH_INVOKING,    /* lv_fn_invoke in flight */
    SH_DEAD_LETTER, /* the batch's dead-letter op is with the writer */
    SH_GONE,        /* the stream was deleted: this shard reads no more */
} shard_state_t;

typedef enum { NEXT_READ, NEXT_INVOKE, NEXT_DEAD_LETTER } shard_next_t;

/* One record of the batch; its key and data live in the shard's arena. */
typedef struct {
    uint64_t seq, arrival_ms;
    size_t key_off, key_len, data_off, data_len;
} held_t;

typedef struct {
    consumer_t *c;
    unsigned index;
    char shard_id[LV_SHARD_ID_MAX];
    char *path, *tmp_path;            /* checkpoint file and its temp */

    /* Home loop. */
    shard_state_t state;
    shard_next_t next;
    lv_timer_t timer;
    bool at_time;                     /* AT_TIMESTAMP start: first record not found yet */
    uint64_t read_from;               /* next seq to read (when !at_time) */
    held_t *held;                     /* the batch */
    size_t nheld, held_cap;
    lv_buf_t arena;
    size_t event_bytes;               /* bound on the batch's event size */
    bool full;                        /* a record was left out: the event would be too big */
    unsigned failures;                /* counted failures of this batch */
    unsigned attempts;                /* invocations of this batch */
    uint64_t invoke_started_ns;
    lv_buf_t dl_line;                 /* a dead-letter line whose write failed, to write again */
    bool read_failing;                /* log a failing read once, not every second */

    /* Written on the home loop, read by scrapes and stats on any thread. */
    _Atomic uint64_t done_seq;        /* next seq after everything processed (0: AT_TIMESTAMP
                                         start not found yet) */
    _Atomic uint64_t done_arrival_ms; /* arrival of the last record processed, 0 if unknown */
    _Atomic uint64_t held_arrival_ms; /* arrival of the batch's first record, 0 if none */

    /* Writer thread. */
    bool want_write;                  /* a checkpoint of this batch of ops is to be written */
    lv_checkpoint_t want;
    bool write_failing;

    lv_counter_t *batches_ok, *batches_failed, *batches_dead_lettered;
    lv_counter_t *records_ok, *records_dead_lettered, *records_expired;
    lv_histogram_t *invoke_seconds;
} shard_t;

struct consumer {
    lv_consumers_t *cs;
    const lv_config_consumer_t *cfg;
    const char *stream_name;
    const char *fn_name;
    lv_stream_t *stream;              /* referenced */
    uint64_t stream_id;
    lv_fn_t *fn;
    char *dir;
    char *dead_letter_path;
    shard_t *shards;
    unsigned nshards;
    bool gone_logged;

    /* Writer thread. */
    int dl_fd;                        /* -1 until the first dead letter */
    bool dir_dirty;
};

typedef enum { OP_CHECKPOINT, OP_DEAD_LETTER, OP_BARRIER } op_kind_t;

/* A unit of work for the writer, allocated on the home loop and freed by
 * the writer (OP_CHECKPOINT) or by the home loop when its result comes
 * back. */
typedef struct op {
    struct op *next;
    op_kind_t kind;
    shard_t *s;                       /* NULL for OP_BARRIER */
    lv_consumers_t *cs;               /* OP_BARRIER: whose stop it reports */
    lv_checkpoint_t cp;               /* OP_CHECKPOINT, OP_DEAD_LETTER (written after the line) */
    lv_buf_t line;                    /* OP_DEAD_LETTER, with its newline */
    int err;                          /* OP_DEAD_LETTER: 0 once the line is durable */
} op_t;

struct lv_consumers {
    const lv_config_t *cfg;
    lv_metrics_t *metrics;
    lv_metrics_t *own_metrics;        /* when opened without a registry (tests) */
    consumer_t *list;
    size_t count;
    lv_loop_t *home;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    op_t *head, **tail;               /* under lock */
    bool writer_exit;                 /* under lock */
    pthread_t writer;
    bool writer_running;
    shard_t **touched;                /* writer scratch */
    size_t touched_cap;

    /* Home loop. */
    bool started, stopping, stop_sent;
    unsigned busy;                    /* reads, invocations and dead-letter ops in flight */
    lv_post_cb stop_done;
    void *stop_arg;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ======================================================================
 * Files (the opening thread, then the writer)
 * ====================================================================== */

/* mkdir -p. Returns 0 or an errno. */
static int make_dirs(const char *path)
{
    char *p = lv_strdup(path);
    int err = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char ch = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        *s = ch;
        if (ch == '\0')
            break;
    }
    struct stat st;
    if (!err && stat(p, &st) != 0)
        err = errno;
    else if (!err && !S_ISDIR(st.st_mode))
        err = ENOTDIR;
    free(p);
    return err;
}

/* Makes the names in dir durable (a rename, a new file). */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return err;
}

static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return lv_strdup(".");
    return slash == file ? lv_strdup("/") : lv_strndup(file, (size_t)(slash - file));
}

/* Writes all of data; a write that makes no progress is a full disk. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return ENOSPC;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Replaces the checkpoint file atomically: a reader (the next start) sees
 * the old file or the new one, never a mix. The directory is synced by the
 * caller, once for all the shards it wrote. */
static int write_checkpoint(const shard_t *s, const lv_checkpoint_t *cp)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_checkpoint_encode(&b, cp);
    int err = 0;
    int fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno;
    } else {
        err = write_all(fd, lv_buf_data(&b), lv_buf_len(&b));
        if (!err && fsync(fd) != 0)
            err = errno;
        if (close(fd) != 0 && !err)
            err = errno;
        if (!err && rename(s->tmp_path, s->path) != 0)
            err = errno;
        if (err)
            unlink(s->tmp_path);
    }
    lv_buf_free(&b);
    return err;
}

/* Reads the checkpoint file into b. Returns 0, ENOENT when there is none,
 * EFBIG when it is too long to be one, or another errno. */
static int read_checkpoint_file(const char *path, lv_buf_t *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    /* One byte more than a checkpoint can be, so a longer file shows. */
    lv_buf_reserve(b, LV_CHECKPOINT_MAX_BYTES + 1);
    while (lv_buf_len(b) <= LV_CHECKPOINT_MAX_BYTES) {
        ssize_t r = read(fd, lv_buf_tail(b), LV_CHECKPOINT_MAX_BYTES + 1 - lv_buf_len(b));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = errno;
            break;
        }
        if (r == 0)
            break;
        lv_buf_commit(b, (size_t)r);
    }
    close(fd);
    if (!err && lv_buf_len(b) > LV_CHECKPOINT_MAX_BYTES)
        err = EFBIG;
    return err;
}

static int append_dead_letter(consumer_t *c, const char *line, size_t len)
{
    if (c->dl_fd < 0) {
        char *dir = dir_of(c->dead_letter_path);
        int err = make_dirs(dir);
        if (!err) {
            c->dl_fd = open(c->dead_letter_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (c->dl_fd < 0)
                err = errno;
            else
                sync_dir(dir);
        }
        free(dir);
        if (err)
            return err;
    }
    struct stat st;
    if (fstat(c->dl_fd, &st) != 0)
        return errno;
    int err = write_all(c->dl_fd, line, len);
    if (!err && fdatasync(c->dl_fd) != 0)
        err = errno;
    /* A half-written line would make the file unreadable as JSON lines;
     * cut it (the batch is written again later, whole). */
    if (err && ftruncate(c->dl_fd, st.st_size) != 0)
        lv_log_error(MOD, "%s: a partial line may remain: %s", c->dead_letter_path, strerror(errno));
    return err;
}

/* ======================================================================
 * Writer thread
 * ====================================================================== */

static void dead_letter_written(lv_loop_t *loop, void *arg);
static void barrier_reached(lv_loop_t *loop, void *arg);

static void touch(lv_consumers_t *cs, size_t *ntouched, shard_t *s, const lv_checkpoint_t *cp)
{
    if (!s->want_write) {
        if (*ntouched == cs->touched_cap) {
            cs->touched_cap = cs->touched_cap ? cs->touched_cap * 2 : 16;
            cs->touched = lv_realloc(cs->touched, cs->touched_cap * sizeof *cs->touched);
        }
        cs->touched[(*ntouched)++] = s;
        s->want_write = true;
    }
    /* Ops of one shard come in the order the shard made them, so the last
     * one is the newest position. */
    s->want = *cp;
}

static void process_ops(lv_consumers_t *cs, op_t *ops)
{
    for (op_t *op = ops; op; op = op->next) {
        if (op->kind != OP_DEAD_LETTER)
            continue;
        op->err = append_dead_letter(op->s->c, lv_buf_data(&op->line), lv_buf_len(&op->line));
        if (op->err)
            lv_log_error(MOD, "%s: cannot append to %s: %s", op->s->c->cfg->name, op->s->c->dead_letter_path,
                         strerror(op->err));
    }
    size_t ntouched = 0;
    for (op_t *op = ops; op; op = op->next)
        if (op->kind == OP_CHECKPOINT || (op->kind == OP_DEAD_LETTER && !op->err))
            touch(cs, &ntouched, op->s, &op->cp);
    for (size_t i = 0; i < ntouched; i++) {
        shard_t *s = cs->touched[i];
        s->want_write = false;
        int err = write_checkpoint(s, &s->want);
        if (err && !s->write_failing)
            lv_log_error(MOD, "%s %s: cannot write the checkpoint %s: %s; after a restart the batches "
                         "since the last one written run again", s->c->cfg->name, s->shard_id, s->path,
                         strerror(err));
        else if (!err && s->write_failing)
            lv_log_info(MOD, "%s %s: checkpoint written again", s->c->cfg->name, s->shard_id);
        s->write_failing = err != 0;
        if (!err)
            s->c->dir_dirty = true;
    }
    for (size_t i = 0; i < ntouched; i++) {
        consumer_t *c = cs->touched[i]->c;
        if (c->dir_dirty) {
            c->dir_dirty = false;
            int err = sync_dir(c->dir);
            if (err)
                lv_log_warn(MOD, "fsync %s: %s", c->dir, strerror(err));
        }
    }
    /* Results in the order submitted: a barrier's callback runs after every
     * result before it. */
    for (op_t *op = ops, *next; op; op = next) {
        next = op->next;
        op->next = NULL;
        switch (op->kind) {
        case OP_CHECKPOINT:
            free(op);
            break;
        case OP_DEAD_LETTER:
            lv_loop_post(cs->home, dead_letter_written, op);
            break;
        case OP_BARRIER:
            lv_loop_post(cs->home, barrier_reached, op);
            break;
        }
    }
}

static void *writer_main(void *arg)
{
    lv_consumers_t *cs = arg;
    for (;;) {
        pthread_mutex_lock(&cs->lock);
        while (!cs->head && !cs->writer_exit)
            pthread_cond_wait(&cs->wake, &cs->lock);
        op_t *ops = cs->head;
        cs->head = NULL;
        cs->tail = &cs->head;
        pthread_mutex_unlock(&cs->lock);
        if (!ops)
            break; /* told to exit, and nothing is left */
        process_ops(cs, ops);
    }
    return NULL;
}

static void submit(lv_consumers_t *cs, op_t *op)
{
    pthread_mutex_lock(&cs->lock);
    *cs->tail = op;
    cs->tail = &op->next;
    pthread_cond_signal(&cs->wake);
    pthread_mutex_unlock(&cs->lock);
}

/* ======================================================================
 * Shards (home loop)
 * ====================================================================== */

static void shard_read(shard_t *s);
static void shard_invoke(shard_t *s);
static void maybe_stopped(lv_consumers_t *cs);

static void on_timer(lv_loop_t *loop, lv_timer_t *t);

static void arm(shard_t *s, shard_next_t next, uint64_t delay_ms)
{
    s->state = SH_TIMER;
    s->next = next;
    s->timer.cb = on_timer;
    s->timer.data = s;
    lv_timer_start(s->c->cs->home, &s->timer, delay_ms);
}

static lv_checkpoint_t checkpoint_of(const shard_t *s)
{
    lv_checkpoint_t cp = {
        .stream_id = s->c->stream_id,
        .shard = s->index,
        .next_seq = atomic_load_explicit(&s->done_seq, memory_order_relaxed),
        .last_arrival_ms = atomic_load_explicit(&s->done_arrival_ms, memory_order_relaxed),
    };
    snprintf(cp.stream, sizeof cp.stream, "%s", s->c->stream_name);
    return cp;
}

/* The batch's records, pointing into the arena (valid until it changes). */
static lv_stream_record_t *batch_records(const shard_t *s)
{
    lv_stream_record_t *recs = lv_malloc((s->nheld ? s->nheld : 1) * sizeof *recs);
    /* Partition keys are never empty, so the arena holds bytes whenever
     * the batch holds records. */
    const char *base = lv_buf_data(&s->arena);
    for (size_t i = 0; i < s->nheld; i++) {
        const held_t *h = &s->held[i];
        recs[i] = (lv_stream_record_t){
            .seq = h->seq,
            .arrival_ms = h->arrival_ms,
            .partition_key = lv_slice(base ? base + h->key_off : "", h->key_len),
            .data = lv_slice(base ? base + h->data_off : "", h->data_len),
        };
    }
    return recs;
}

static void clear_batch(shard_t *s)
{
    s->nheld = 0;
    s->event_bytes = LV_CONSUMER_EVENT_ENVELOPE;
    s->full = false;
    s->failures = 0;
    s->attempts = 0;
    atomic_store_explicit(&s->held_arrival_ms, 0, memory_order_relaxed);
    if (s->arena.capacity > ARENA_KEEP)
        lv_buf_free(&s->arena);
    else
        lv_buf_clear(&s->arena);
    lv_buf_free(&s->dl_line);
}

/* The batch is behind the shard now (processed or given up on): move the
 * position past it. */
static void pass_batch(shard_t *s)
{
    const held_t *last = &s->held[s->nheld - 1];
    atomic_store_explicit(&s->done_seq, last->seq + 1, memory_order_relaxed);
    atomic_store_explicit(&s->done_arrival_ms, last->arrival_ms, memory_order_relaxed);
    clear_batch(s);
}

static void hold(shard_t *s, const lv_stream_record_t *r, size_t bound)
{
    if (s->nheld == s->held_cap) {
        s->held_cap = s->held_cap ? s->held_cap * 2 : 16;
        s->held = lv_realloc(s->held, s->held_cap * sizeof *s->held);
    }
    held_t *h = &s->held[s->nheld++];
    h->seq = r->seq;
    h->arrival_ms = r->arrival_ms;
    h->key_off = lv_buf_len(&s->arena);
    h->key_len = r->partition_key.len;
    lv_buf_append(&s->arena, r->partition_key.ptr, r->partition_key.len);
    h->data_off = lv_buf_len(&s->arena);
    h->data_len = r->data.len;
    lv_buf_append(&s->arena, r->data.ptr, r->data.len);
    s->event_bytes += bound;
    if (s->nheld == 1)
        atomic_store_explicit(&s->held_arrival_ms, r->arrival_ms ? r->arrival_ms : 1, memory_order_relaxed);
}

static void note_expired(shard_t *s, uint64_t from, uint64_t to)
{
    uint64_t n = to - from;
    lv_counter_add(s->records_expired, n);
    lv_log_warn(MOD, "%s %s: %llu record%s expired from stream %s before being processed; skipped",
                s->c->cfg->name, s->shard_id, (unsigned long long)n, n == 1 ? "" : "s", s->c->stream_name);
}

/* Sends the batch now, or waits for the window, or reads more. */
static void decide(shard_t *s, bool more_now)
{
    const lv_config_consumer_t *cfg = s->c->cfg;
    uint64_t first_arrival = s->nheld ? s->held[0].arrival_ms : 0;
    uint64_t wait = lv_consumer_batch_wait_ms(s->nheld, cfg->batch_size, s->full, cfg->batching_window_ms,
                                              first_arrival, wall_ms());
    if (wait == 0)
        shard_invoke(s);
    else if (more_now)
        shard_read(s);
    else
        arm(s, NEXT_READ, wait < LV_CONSUMER_POLL_MS ? wait : LV_CONSUMER_POLL_MS);
}

static void on_read(void *arg, const lv_stream_read_t *res)
{
    shard_t *s = arg;
    consumer_t *c = s->c;
    lv_consumers_t *cs = c->cs;
    cs->busy--;
    s->state = SH_IDLE;
    if (cs->stopping) {
        maybe_stopped(cs);
        return;
    }
    if (res->err == ENOENT) {
        s->state = SH_GONE;
        if (!c->gone_logged)
            lv_log_warn(MOD, "%s: stream %s was deleted; the consumer stops until levee restarts", c->cfg->name,
                        c->stream_name);
        c->gone_logged = true;
        return;
    }
    if (res->err) {
        if (!s->read_failing)
            lv_log_error(MOD, "%s %s: reading stream %s failed: %s; trying again every %u ms", c->cfg->name,
                         s->shard_id, c->stream_name, strerror(res->err), READ_RETRY_MS);
        s->read_failing = true;
        arm(s, NEXT_READ, READ_RETRY_MS);
        return;
    }
    if (s->read_failing)
        lv_log_info(MOD, "%s %s: reading works again", c->cfg->name, s->shard_id);
    s->read_failing = false;

    if (!s->at_time) {
        /* A read starts at the oldest record kept when asked for one that
         * is gone: what lies between was lost to retention. */
        uint64_t first = res->n ? res->records[0].seq : res->next_seq;
        if (first > s->read_from) {
            note_expired(s, s->read_from, first);
            if (s->nheld == 0)
                atomic_store_explicit(&s->done_seq, first, memory_order_relaxed);
            s->read_from = first;
        }
    }
    lv_consumer_source_t src = {lv_slice_cstr(c->stream_name), s->index};
    size_t taken = 0;
    for (size_t i = 0; i < res->n; i++) {
        const lv_stream_record_t *r = &res->records[i];
        if (!s->at_time && r->seq < s->read_from)
            continue; /* already held: never expected, harmless to skip */
        size_t bound = lv_consumer_event_record_max(src, r->partition_key, r->data.len);
        if (s->nheld && s->event_bytes + bound > LV_CONSUMER_MAX_EVENT) {
            s->full = true;
            break;
        }
        if (s->at_time) {
            s->at_time = false;
            atomic_store_explicit(&s->done_seq, r->seq, memory_order_relaxed);
        }
        hold(s, r, bound);
        s->read_from = r->seq + 1;
        taken++;
        if (s->nheld >= c->cfg->batch_size)
            break;
    }
    /* More is there right now when this read stopped at its size limit. */
    bool more_now = !s->full && taken == res->n && res->n > 0 && res->next_seq < res->shard_next_seq;
    decide(s, more_now);
}

/* Reads more records into the batch, or waits when there are none. */
static void shard_read(shard_t *s)
{
    consumer_t *c = s->c;
    lv_consumers_t *cs = c->cs;
    s->state = SH_IDLE;
    if (cs->stopping)
        return;
    lv_shard_info_t info = lv_stream_shard_info(c->stream, s->index);
    bool news;
    if (s->at_time)
        news = info.next_seq > info.first_seq && info.last_arrival_ms >= (uint64_t)c->cfg->starting_timestamp_ms;
    else
        news = info.next_seq > s->read_from;
    if (!news) {
        /* Nothing new: maybe the window is over. */
        decide(s, false);
        return;
    }
    size_t want = c->cfg->batch_size > s->nheld ? c->cfg->batch_size - s->nheld : 1;
    size_t room = LV_CONSUMER_MAX_EVENT > s->event_bytes ? LV_CONSUMER_MAX_EVENT - s->event_bytes : 0;
    /* Base64 makes data 4/3 bigger: ask for about what still fits. */
    size_t max_bytes = room / 4 * 3;
    if (max_bytes == 0)
        max_bytes = 1;
    s->state = SH_READING;
    cs->busy++;
    if (s->at_time)
        lv_stream_read(c->stream, s->index, LV_READ_AT_TIME, (uint64_t)c->cfg->starting_timestamp_ms, want,
                       max_bytes, cs->home, on_read, s);
    else
        lv_stream_read(c->stream, s->index, LV_READ_AT_SEQ, s->read_from, want, max_bytes, cs->home, on_read, s);
}

static void submit_dead_letter(shard_t *s)
{
    op_t *op = lv_calloc(1, sizeof *op);
    op->kind = OP_DEAD_LETTER;
    op->s = s;
    /* The position it moves to once the line is on disk. */
    op->cp = checkpoint_of(s);
    op->cp.next_seq = s->held[s->nheld - 1].seq + 1;
    op->cp.last_arrival_ms = s->held[s->nheld - 1].arrival_ms;
    op->line = s->dl_line;
    s->dl_line = LV_BUF_INIT;
    s->state = SH_DEAD_LETTER;
    s->c->cs->busy++;
    submit(s->c->cs, op);
}

static void dead_letter_written(lv_loop_t *loop, void *arg)
{
    op_t *op = arg;
    shard_t *s = op->s;
    lv_consumers_t *cs = s->c->cs;
    (void)loop;
    cs->busy--;
    s->state = SH_IDLE;
    if (op->err) {
        /* Keep the batch and its line; the shard goes no further until the
         * line is on disk (a line may then appear twice, which beats none). */
        s->dl_line = op->line;
        op->line = LV_BUF_INIT;
        if (!cs->stopping)
            arm(s, NEXT_DEAD_LETTER, DEAD_LETTER_RETRY_MS);
    } else {
        lv_counter_inc(s->batches_dead_lettered);
        lv_counter_add(s->records_dead_lettered, s->nheld);
        pass_batch(s);
        if (!cs->stopping)
            shard_read(s);
    }
    lv_buf_free(&op->line);
    free(op);
    maybe_stopped(cs);
}

static void give_up(shard_t *s, const lv_fn_result_t *r)
{
    consumer_t *c = s->c;
    lv_stream_record_t *recs = batch_records(s);
    char first[32], last[32];
    snprintf(first, sizeof first, "%llu", (unsigned long long)s->held[0].seq);
    snprintf(last, sizeof last, "%llu", (unsigned long long)s->held[s->nheld - 1].seq);
    lv_log_warn(MOD, "%s %s: batch of records %s..%s failed %u time%s (%s); written to %s and skipped", c->cfg->name,
                s->shard_id, first, last, s->attempts, s->attempts == 1 ? "" : "s",
                r->error_type ? r->error_type : "error", c->dead_letter_path);
    lv_consumer_dead_letter_t dl = {
        .consumer = lv_slice_cstr(c->cfg->name),
        .function = lv_slice_cstr(c->fn_name),
        .src = {lv_slice_cstr(c->stream_name), s->index},
        .records = recs,
        .n = s->nheld,
        .attempts = s->attempts,
        .error_type = lv_slice_cstr(r->error_type),
        .error = r->payload,
        .now_ms = wall_ms(),
    };
    lv_buf_clear(&s->dl_line);
    lv_consumer_dead_letter_line(&s->dl_line, &dl);
    free(recs);
    submit_dead_letter(s);
}

static void on_invoked(void *arg, const lv_fn_result_t *r)
{
    shard_t *s = arg;
    consumer_t *c = s->c;
    lv_consumers_t *cs = c->cs;
    cs->busy--;
    s->state = SH_IDLE;
    lv_histogram_observe_ns(s->invoke_seconds, lv_clock_ns() - s->invoke_started_ns);
    uint64_t delay;
    unsigned failures = s->failures + 1;
    lv_consumer_action_t action = lv_consumer_after_invoke(r->status, failures, c->cfg->max_retries,
                                                           c->cfg->retry_backoff_ms, r->retry_after, &delay);
    switch (action) {
    case LV_CONSUMER_NEXT: {
        lv_counter_inc(s->batches_ok);
        lv_counter_add(s->records_ok, s->nheld);
        pass_batch(s);
        op_t *op = lv_calloc(1, sizeof *op);
        op->kind = OP_CHECKPOINT;
        op->s = s;
        op->cp = checkpoint_of(s);
        submit(cs, op);
        if (!cs->stopping)
            shard_read(s);
        break;
    }
    case LV_CONSUMER_WAIT:
        s->attempts--; /* it never ran: not an invocation of the batch */
        lv_log_debug(MOD, "%s %s: invocation not run (%s); again in %llu ms", c->cfg->name, s->shard_id,
                     r->error_type ? r->error_type : "throttled", (unsigned long long)delay);
        if (!cs->stopping)
            arm(s, NEXT_INVOKE, delay);
        break;
    case LV_CONSUMER_RETRY:
        s->failures = failures;
        lv_counter_inc(s->batches_failed);
        lv_log_warn(MOD, "%s %s: batch of %zu record%s failed (%s), attempt %u; again in %llu ms", c->cfg->name,
                    s->shard_id, s->nheld, s->nheld == 1 ? "" : "s", r->error_type ? r->error_type : "error",
                    s->attempts, (unsigned long long)delay);
        if (!cs->stopping)
            arm(s, NEXT_INVOKE, delay);
        break;
    case LV_CONSUMER_GIVE_UP:
        s->failures = failures;
        lv_counter_inc(s->batches_failed);
        give_up(s, r);
        break;
    }
    maybe_stopped(cs);
}

/* Runs the batch (again). */
static void shard_invoke(shard_t *s)
{
    consumer_t *c = s->c;
    lv_consumers_t *cs = c->cs;
    s->state = SH_IDLE;
    if (cs->stopping)
        return;
    /* Records that expired while the batch waited are not sent: the batch
     * is dropped and read again from where it started, and the read skips
     * (and counts) what is gone. */
    lv_shard_info_t info = lv_stream_shard_info(c->stream, s->index);
    if (info.first_seq > s->held[0].seq) {
        s->read_from = s->held[0].seq;
        clear_batch(s);
        shard_read(s);
        return;
    }
    lv_stream_record_t *recs = batch_records(s);
    lv_buf_t event = LV_BUF_INIT;
    lv_consumer_event(&event, (lv_consumer_source_t){lv_slice_cstr(c->stream_name), s->index}, recs, s->nheld);
    free(recs);
    s->state = SH_INVOKING;
    s->attempts++;
    cs->busy++;
    s->invoke_started_ns = lv_clock_ns();
    lv_fn_invoke_t inv = {.payload = lv_buf_slice(&event)};
    lv_fn_invoke(c->fn, cs->home, &inv, on_invoked, s);
    lv_buf_free(&event);
}

static void on_timer(lv_loop_t *loop, lv_timer_t *t)
{
    shard_t *s = t->data;
    (void)loop;
    s->state = SH_IDLE;
    switch (s->next) {
    case NEXT_READ:
        shard_read(s);
        break;
    case NEXT_INVOKE:
        shard_invoke(s);
        break;
    case NEXT_DEAD_LETTER:
        submit_dead_letter(s);
        break;
    }
}

/* ======================================================================
 * Start and stop (home loop)
 * ====================================================================== */

void lv_consumers_start(lv_consumers_t *cs, lv_loop_t *home)
{
    cs->home = home;
    cs->started = true;
    /* The writer takes no signals: they belong to the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&cs->writer, NULL, writer_main, cs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        lv_log_error(MOD, "cannot start the checkpoint writer thread: %s", strerror(rc));
        abort();
    }
    cs->writer_running = true;
    for (size_t i = 0; i < cs->count; i++)
        for (unsigned k = 0; k < cs->list[i].nshards; k++)
            shard_read(&cs->list[i].shards[k]);
}

static void barrier_reached(lv_loop_t *loop, void *arg)
{
    op_t *op = arg;
    lv_consumers_t *cs = op->cs;
    free(op);
    cs->stop_done(loop, cs->stop_arg);
}

static void maybe_stopped(lv_consumers_t *cs)
{
    if (!cs->stopping || cs->stop_sent || cs->busy)
        return;
    cs->stop_sent = true;
    /* done runs once everything submitted so far is on disk. */
    op_t *op = lv_calloc(1, sizeof *op);
    op->kind = OP_BARRIER;
    op->cs = cs;
    submit(cs, op);
}

void lv_consumers_stop(lv_consumers_t *cs, lv_post_cb done, void *arg)
{
    cs->stopping = true;
    cs->stop_done = done;
    cs->stop_arg = arg;
    if (!cs->started) {
        cs->stop_sent = true;
        lv_loop_t *loop = lv_loop_current();
        if (loop)
            lv_loop_post(loop, done, arg);
        else
            done(NULL, arg);
        return;
    }
    for (size_t i = 0; i < cs->count; i++) {
        for (unsigned k = 0; k < cs->list[i].nshards; k++) {
            shard_t *s = &cs->list[i].shards[k];
            if (s->state == SH_TIMER) {
                lv_timer_stop(&s->timer);
                s->state = SH_IDLE;
            }
        }
    }
    maybe_stopped(cs);
}

/* ======================================================================
 * Metrics and stats (any thread)
 * ====================================================================== */

static uint64_t lag_records_of(const shard_t *s)
{
    uint64_t done = atomic_load_explicit(&s->done_seq, memory_order_relaxed);
    if (done == 0)
        return 0;
    lv_shard_info_t info = lv_stream_shard_info(s->c->stream, s->index);
    return info.next_seq > done ? info.next_seq - done : 0;
}

/* Newest arrival minus the arrival of the oldest record not processed yet,
 * when the shard holds it in a batch; otherwise minus the arrival of the
 * last record processed (the best known stand-in). */
static uint64_t lag_ms_of(const shard_t *s)
{
    uint64_t done = atomic_load_explicit(&s->done_seq, memory_order_relaxed);
    if (done == 0)
        return 0;
    lv_shard_info_t info = lv_stream_shard_info(s->c->stream, s->index);
    if (info.next_seq <= done)
        return 0;
    uint64_t base = atomic_load_explicit(&s->held_arrival_ms, memory_order_relaxed);
    if (base == 0)
        base = atomic_load_explicit(&s->done_arrival_ms, memory_order_relaxed);
    if (base == 0 || info.last_arrival_ms <= base)
        return 0;
    return info.last_arrival_ms - base;
}

static double lag_records_metric(void *arg) { return (double)lag_records_of(arg); }
static double lag_seconds_metric(void *arg) { return (double)lag_ms_of(arg) / 1000.0; }

/* What a lag gauge reads once the consumers are freed. */
static double freed_metric(void *arg)
{
    (void)arg;
    return 0;
}

static void shard_labels(const shard_t *s, char *out, size_t len)
{
    char consumer[600], stream[300];
    lv_metrics_label_escape(s->c->cfg->name, consumer, sizeof consumer);
    lv_metrics_label_escape(s->c->stream_name, stream, sizeof stream);
    /* shard="N", as the stream's own series label it, so the two join. */
    snprintf(out, len, "consumer=\"%s\",stream=\"%s\",shard=\"%u\"", consumer, stream, s->index);
}

#define LAG_RECORDS_HELP "Records in the shard that the consumer has not processed yet."
#define LAG_SECONDS_HELP                                                                          \
    "Arrival time of the shard's newest record minus that of the oldest record the consumer has " \
    "not processed (or of the last one it processed); 0 when caught up."

static void register_metrics(lv_metrics_t *m, shard_t *s)
{
    char labels[1200], with_result[1300];
    shard_labels(s, labels, sizeof labels);
    static const char *const batch_results[] = {"ok", "failed", "dead_lettered"};
    lv_counter_t **batches[] = {&s->batches_ok, &s->batches_failed, &s->batches_dead_lettered};
    for (size_t i = 0; i < 3; i++) {
        snprintf(with_result, sizeof with_result, "%s,result=\"%s\"", labels, batch_results[i]);
        *batches[i] = lv_metrics_counter(m, "levee_consumer_batches_total",
                                         "Batches a consumer ran: ok (the function succeeded), failed (an "
                                         "invocation failed; each retry counts), dead_lettered (retries spent).",
                                         with_result);
    }
    static const char *const record_results[] = {"ok", "dead_lettered", "expired"};
    lv_counter_t **records[] = {&s->records_ok, &s->records_dead_lettered, &s->records_expired};
    for (size_t i = 0; i < 3; i++) {
        snprintf(with_result, sizeof with_result, "%s,result=\"%s\"", labels, record_results[i]);
        *records[i] = lv_metrics_counter(m, "levee_consumer_records_total",
                                         "Records a consumer is past: ok (processed), dead_lettered (in a batch "
                                         "given up on), expired (gone from the stream before processing).",
                                         with_result);
    }
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1.0,   2.5,    5.0,   10.0, 30.0,  60.0, 300.0, 900.0};
    s->invoke_seconds = lv_metrics_histogram(m, "levee_consumer_invocation_seconds",
                                             "Time from handing a batch to the function to its result "
                                             "(queueing and cold starts included).",
                                             labels, bounds, sizeof bounds / sizeof bounds[0]);
    lv_metrics_gauge_fn(m, "levee_consumer_lag_records", LAG_RECORDS_HELP, labels, lag_records_metric, s);
    lv_metrics_gauge_fn(m, "levee_consumer_lag_seconds", LAG_SECONDS_HELP, labels, lag_seconds_metric, s);
}

/* The registry outlives the consumers: point the lag gauges away from the
 * shard before it is freed. */
static void unregister_metrics(lv_metrics_t *m, shard_t *s)
{
    char labels[1200];
    shard_labels(s, labels, sizeof labels);
    lv_metrics_gauge_fn(m, "levee_consumer_lag_records", LAG_RECORDS_HELP, labels, freed_metric, NULL);
    lv_metrics_gauge_fn(m, "levee_consumer_lag_seconds", LAG_SECONDS_HELP, labels, freed_metric, NULL);
}

size_t lv_consumers_count(const lv_consumers_t *cs) { return cs ? cs->count : 0; }

const char *lv_consumers_name(const lv_consumers_t *cs, size_t i)
{
    return cs && i < cs->count ? cs->list[i].cfg->name : NULL;
}

int lv_consumers_stats(const lv_consumers_t *cs, size_t i, unsigned shard, lv_consumer_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!cs || i >= cs->count || shard >= cs->list[i].nshards)
        return -1;
    const shard_t *s = &cs->list[i].shards[shard];
    out->next_seq = atomic_load_explicit(&s->done_seq, memory_order_relaxed);
    out->lag_records = lag_records_of(s);
    out->lag_ms = lag_ms_of(s);
    out->batches_ok = lv_counter_value(s->batches_ok);
    out->batches_failed = lv_counter_value(s->batches_failed);
    out->batches_dead_lettered = lv_counter_value(s->batches_dead_lettered);
    out->records_ok = lv_counter_value(s->records_ok);
    out->records_dead_lettered = lv_counter_value(s->records_dead_lettered);
    out->records_expired = lv_counter_value(s->records_expired);
    return 0;
}

/* ======================================================================
 * Open and free
 * ====================================================================== */

/* Sets the shard's starting point from its checkpoint, or from the
 * consumer's starting_position when it has none. Returns 0, or -1 with the
 * problem in errs. */
static int load_shard(consumer_t *c, shard_t *s, const lv_config_t *cfg, lv_config_errors_t *errs,
                      bool *wrote)
{
    const lv_config_consumer_t *cc = c->cfg;
    lv_shard_info_t info = lv_stream_shard_info(c->stream, s->index);
    /* A temp file left by a crash mid-write holds nothing the checkpoint
     * does not. */
    if (unlink(s->tmp_path) != 0 && errno != ENOENT)
        lv_log_warn(MOD, "cannot remove %s: %s", s->tmp_path, strerror(errno));
    lv_buf_t b = LV_BUF_INIT;
    int err = read_checkpoint_file(s->path, &b);
    if (err && err != ENOENT) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: cannot read its checkpoint %s: %s", cc->name,
                        s->path, err == EFBIG ? "longer than a checkpoint can be" : strerror(err));
        lv_buf_free(&b);
        return -1;
    }
    bool have = false;
    if (!err) {
        lv_checkpoint_t cp;
        const char *why = lv_checkpoint_decode(lv_buf_data(&b), lv_buf_len(&b), &cp);
        if (why) {
            lv_config_error(errs, cfg->path, cc->pos,
                            "consumer %s: checkpoint %s is damaged (%s); fix or remove it (the shard then "
                            "starts at starting_position)",
                            cc->name, s->path, why);
        } else if (cp.shard != s->index) {
            lv_config_error(errs, cfg->path, cc->pos, "consumer %s: checkpoint %s is for shard %u", cc->name,
                            s->path, cp.shard);
            why = "";
        } else if (strcmp(cp.stream, c->stream_name) != 0) {
            lv_config_error(errs, cfg->path, cc->pos,
                            "consumer %s: checkpoint %s is for stream %s, not %s; give the consumer another "
                            "name, or remove %s",
                            cc->name, s->path, cp.stream, c->stream_name, c->dir);
            why = "";
        } else if (cp.stream_id != c->stream_id) {
            lv_log_warn(MOD, "%s %s: the checkpoint is for an earlier stream %s (deleted since); starting at "
                        "starting_position", cc->name, s->shard_id, c->stream_name);
        } else if (cp.next_seq > info.next_seq) {
            lv_config_error(errs, cfg->path, cc->pos,
                            "consumer %s: checkpoint %s is past the end of %s %s (next sequence %llu, the "
                            "shard's %llu)",
                            cc->name, s->path, c->stream_name, s->shard_id, (unsigned long long)cp.next_seq,
                            (unsigned long long)info.next_seq);
            why = "";
        } else {
            have = true;
            s->read_from = cp.next_seq;
            atomic_store_explicit(&s->done_seq, cp.next_seq, memory_order_relaxed);
            atomic_store_explicit(&s->done_arrival_ms, cp.last_arrival_ms, memory_order_relaxed);
        }
        if (why) {
            lv_buf_free(&b);
            return -1;
        }
    }
    lv_buf_free(&b);
    if (have)
        return 0;
    switch (cc->starting_position) {
    case LV_START_TRIM_HORIZON:
        s->read_from = info.first_seq;
        break;
    case LV_START_LATEST: {
        /* Written now: after a restart, LATEST must still mean "when the
         * consumer first started", or records appended in between would
         * be skipped. */
        s->read_from = info.next_seq;
        atomic_store_explicit(&s->done_seq, info.next_seq, memory_order_relaxed);
        lv_checkpoint_t cp = checkpoint_of(s);
        err = write_checkpoint(s, &cp);
        if (err) {
            lv_config_error(errs, cfg->path, cc->pos, "consumer %s: cannot write its checkpoint %s: %s",
                            cc->name, s->path, strerror(err));
            return -1;
        }
        *wrote = true;
        return 0;
    }
    case LV_START_AT_TIMESTAMP:
        s->at_time = true;
        atomic_store_explicit(&s->done_seq, 0, memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&s->done_seq, s->read_from, memory_order_relaxed);
    return 0;
}

static int open_consumer(lv_consumers_t *cs, consumer_t *c, const lv_config_t *cfg, lv_streams_t *streams,
                         lv_functions_t *fns, lv_config_errors_t *errs)
{
    const lv_config_consumer_t *cc = c->cfg;
    const char *name = cc->name ? cc->name : "";
    /* The name is a directory under data_dir/consumers. */
    if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer name \"%s\" cannot name a directory", name);
        return -1;
    }
    if (cc->stream < 0 || (size_t)cc->stream >= cfg->num_streams || cc->function < 0 ||
        (size_t)cc->function >= cfg->num_functions) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: its stream or function is not in the config",
                        name);
        return -1;
    }
    c->stream_name = cfg->streams[cc->stream].name;
    c->fn_name = cfg->functions[cc->function].name;
    c->stream = lv_streams_find(streams, lv_slice_cstr(c->stream_name));
    if (!c->stream) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: stream %s does not exist", name, c->stream_name);
        return -1;
    }
    c->fn = fns ? lv_functions_find(fns, lv_slice_cstr(c->fn_name)) : NULL;
    if (!c->fn) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: function %s does not exist", name, c->fn_name);
        return -1;
    }
    lv_stream_info_t info = lv_stream_info(c->stream);
    c->stream_id = info.id;
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "%s/consumers/%s", cfg->data_dir, name);
    c->dir = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    if (cc->on_failure && *cc->on_failure) {
        c->dead_letter_path = lv_strdup(cc->on_failure);
    } else {
        lv_buf_printf(&b, "%s/dead-letter.jsonl", c->dir);
        c->dead_letter_path = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_free(&b);
    }
    int err = make_dirs(c->dir);
    if (err) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: cannot create %s: %s", name, c->dir, strerror(err));
        return -1;
    }
    /* Its name must survive a crash, or so would no checkpoint in it. */
    char *parent = dir_of(c->dir);
    sync_dir(parent);
    free(parent);
    c->nshards = info.shards;
    c->shards = lv_calloc(c->nshards ? c->nshards : 1, sizeof *c->shards);
    bool wrote = false;
    int failed = 0;
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_t *s = &c->shards[i];
        s->c = c;
        s->index = i;
        s->event_bytes = LV_CONSUMER_EVENT_ENVELOPE;
        lv_consumer_shard_id(i, s->shard_id);
        lv_buf_printf(&b, "%s/%s.checkpoint", c->dir, s->shard_id);
        s->path = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_append_str(&b, ".tmp");
        s->tmp_path = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_free(&b);
        register_metrics(cs->metrics, s);
        if (!failed && load_shard(c, s, cfg, errs, &wrote) != 0)
            failed = 1;
    }
    if (wrote && (err = sync_dir(c->dir)) != 0) {
        lv_config_error(errs, cfg->path, cc->pos, "consumer %s: cannot sync %s: %s", name, c->dir, strerror(err));
        return -1;
    }
    return failed ? -1 : 0;
}

lv_consumers_t *lv_consumers_open(const lv_config_t *cfg, lv_streams_t *streams, lv_functions_t *fns,
                                  lv_metrics_t *metrics, lv_config_errors_t *errs)
{
    lv_consumers_t *cs = lv_calloc(1, sizeof *cs);
    cs->cfg = cfg;
    /* Counters back the stats too, so there is always a registry. */
    cs->metrics = metrics ? metrics : (cs->own_metrics = lv_metrics_new(1));
    cs->count = cfg->num_consumers;
    cs->list = lv_calloc(cs->count ? cs->count : 1, sizeof *cs->list);
    pthread_mutex_init(&cs->lock, NULL);
    pthread_cond_init(&cs->wake, NULL);
    cs->tail = &cs->head;
    for (size_t i = 0; i < cs->count; i++) {
        cs->list[i].cs = cs;
        cs->list[i].cfg = &cfg->consumers[i];
        cs->list[i].dl_fd = -1;
    }
    int failed = 0;
    if (cs->count && !cfg->data_dir) {
        lv_config_error(errs, cfg->path, (lv_config_pos_t){0, 0}, "data_dir is not set");
        failed = 1;
    }
    for (size_t i = 0; i < cs->count && !failed; i++)
        if (open_consumer(cs, &cs->list[i], cfg, streams, fns, errs) != 0)
            failed = 1;
    if (failed) {
        lv_consumers_free(cs);
        return NULL;
    }
    return cs;
}

void lv_consumers_free(lv_consumers_t *cs)
{
    if (!cs)
        return;
    if (cs->writer_running) {
        pthread_mutex_lock(&cs->lock);
        cs->writer_exit = true;
        pthread_cond_signal(&cs->wake);
        pthread_mutex_unlock(&cs->lock);
        pthread_join(cs->writer, NULL);
        cs->writer_running = false;
    }
    for (op_t *op = cs->head, *next; op; op = next) {
        next = op->next;
        lv_buf_free(&op->line);
        free(op);
    }
    for (size_t i = 0; i < cs->count; i++) {
        consumer_t *c = &cs->list[i];
        for (unsigned k = 0; c->shards && k < c->nshards; k++) {
            shard_t *s = &c->shards[k];
            if (lv_timer_armed(&s->timer))
                lv_timer_stop(&s->timer);
            if (s->path && !cs->own_metrics)
                unregister_metrics(cs->metrics, s);
            free(s->held);
            lv_buf_free(&s->arena);
            lv_buf_free(&s->dl_line);
            free(s->path);
            free(s->tmp_path);
        }
        free(c->shards);
        if (c->dl_fd >= 0)
            close(c->dl_fd);
        if (c->stream)
            lv_stream_unref(c->stream);
        free(c->dir);
        free(c->dead_letter_path);
    }
    pthread_cond_destroy(&cs->wake);
    pthread_mutex_destroy(&cs->lock);
    free(cs->touched);
    free(cs->list);
    lv_metrics_free(cs->own_metrics);
    free(cs);
}
