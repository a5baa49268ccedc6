/* event_queue.c: durable queues of asynchronous (Event) invocations (see
 * event_queue.h for the contract and event_journal.h for the record format).
 *
 * Three parts, one per thread that runs them:
 *
 *   - The journal codec and replay (pure functions, any thread). Recovery at
 *     open maps each journal, replays it, cuts a torn or corrupt tail, and
 *     keeps the events that never finished.
 *
 *   - The writer thread owns every file descriptor. Callers hand it "ops"
 *     (accept an event, record a failed attempt, finish an event, dead-letter
 *     an event) through one mutex-protected list. It takes the whole list as
 *     a batch: dead-letter lines are appended and fsynced first (so an event
 *     is never marked finished before its dead-letter line is on disk), then
 *     each journal the batch touches gets one pwrite of all its records and
 *     one fdatasync, and only then are the results posted: the enqueue
 *     callbacks to their callers' loops, the new events and the other
 *     results to the home loop. Ops that arrive during a sync wait for the
 *     next batch, which is the whole of group commit. A failed or short
 *     write truncates the journal back to its last good size, so a full disk
 *     fails the enqueues of that batch (with the errno) and never leaves a
 *     partial record behind. The writer also counts, per journal, the events
 *     accepted and not finished as written; when that reaches zero and the
 *     journal is over 1 MiB it truncates the journal to empty. Deciding this
 *     on the writer, not the home loop, is what makes it safe: an accept
 *     still on its way to the disk is always counted.
 *
 *   - The home loop owns the events once they are durable: a list of all of
 *     them, a FIFO of the ones ready to run, a timer for each one waiting to
 *     be retried. It runs them with lv_fn_invoke, at most
 *     ceil(concurrency.max / 2) (at least 1) of one function at a time, so
 *     a backlog of events never takes every worker from synchronous callers.
 *
 * Shutdown: stop puts a barrier op in the list; its callback runs on the
 * home loop after every earlier result, which is when stop reports done.
 * Ops submitted after that (results of invocations still in flight) are
 * "detached": the writer writes them and frees them itself, posting
 * nothing, because the loops may stop running posted callbacks at any time
 * from then on. Free joins the writer once it has drained the list.
 *
 * Memory: a pending event keeps its payload in memory until it finishes,
 * and a function's pending payload bytes are capped (MAX_PENDING_BYTES);
 * past the cap an enqueue fails with ENOBUFS instead of growing. */
#include "functions/event_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/uuid.h"
#include "functions/event_journal.h"

#define MOD "async"

/* A journal with nothing pending is emptied once it grows past this. */
#define COMPACT_BYTES (1024u * 1024u)
/* Retry delay for an event that was throttled or hit a stopping pool: such
 * a run never counts as an attempt. */
#define REQUEUE_MS 1000u
/* Payload bytes one function may hold pending in memory. */
#define MAX_PENDING_BYTES ((uint64_t)256 << 20)

#define ARN_PREFIX "arn:aws:lambda:us-east-1:000000000000:function:"

/* ======================================================================
 * Journal codec and replay
 * ====================================================================== */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

void lv_ej_encode(lv_buf_t *out, const lv_ej_record_t *rec)
{
    size_t id_len = rec->request_id.len < LV_EJ_MAX_ID ? rec->request_id.len : LV_EJ_MAX_ID;
    size_t pay_len = rec->payload.len < LV_EJ_MAX_PAYLOAD ? rec->payload.len : LV_EJ_MAX_PAYLOAD;
    size_t body;
    switch (rec->type) {
    case LV_EJ_ACCEPT: body = 8 + 8 + 1 + id_len + pay_len; break;
    case LV_EJ_ATTEMPT_FAILED: body = 8 + 4 + 8; break;
    case LV_EJ_FINISHED: body = 8 + 1; break;
    default: return;
    }
    uint32_t length = (uint32_t)(1 + body);
    lv_buf_reserve(out, LV_EJ_HEADER_BYTES + length);
    unsigned char *start = (unsigned char *)lv_buf_tail(out);
    unsigned char *p = start + LV_EJ_HEADER_BYTES;
    *p++ = rec->type;
    put_u64(p, rec->seq);
    p += 8;
    switch (rec->type) {
    case LV_EJ_ACCEPT:
        put_u64(p, rec->accepted_ms);
        p += 8;
        *p++ = (unsigned char)id_len;
        if (id_len)
            memcpy(p, rec->request_id.ptr, id_len);
        p += id_len;
        if (pay_len)
            memcpy(p, rec->payload.ptr, pay_len);
        break;
    case LV_EJ_ATTEMPT_FAILED:
        put_u32(p, rec->attempts);
        put_u64(p + 4, rec->next_at_ms);
        break;
    case LV_EJ_FINISHED:
        *p = rec->outcome;
        break;
    }
    put_u32(start, length);
    put_u32(start + 4, lv_crc32c(0, start + LV_EJ_HEADER_BYTES, length));
    lv_buf_commit(out, LV_EJ_HEADER_BYTES + length);
}

ssize_t lv_ej_decode(const char *data, size_t len, lv_ej_record_t *rec)
{
    const unsigned char *p = (const unsigned char *)data;
    if (len < LV_EJ_HEADER_BYTES)
        return LV_EJ_TORN;
    uint32_t length = get_u32(p);
    if (length < 1 + 8 || length > LV_EJ_MAX_RECORD)
        return LV_EJ_CORRUPT;
    if (len - LV_EJ_HEADER_BYTES < length)
        return LV_EJ_TORN;
    const unsigned char *body = p + LV_EJ_HEADER_BYTES;
    if (lv_crc32c(0, body, length) != get_u32(p + 4))
        return LV_EJ_CORRUPT;
    memset(rec, 0, sizeof *rec);
    rec->type = body[0];
    rec->seq = get_u64(body + 1);
    const unsigned char *f = body + 9;
    size_t left = length - 9;
    switch (rec->type) {
    case LV_EJ_ACCEPT: {
        if (left < 8 + 1)
            return LV_EJ_CORRUPT;
        rec->accepted_ms = get_u64(f);
        size_t id_len = f[8];
        if (id_len > LV_EJ_MAX_ID || left < 9 + id_len || left - 9 - id_len > LV_EJ_MAX_PAYLOAD)
            return LV_EJ_CORRUPT;
        rec->request_id = lv_slice((const char *)f + 9, id_len);
        rec->payload = lv_slice((const char *)f + 9 + id_len, left - 9 - id_len);
        break;
    }
    case LV_EJ_ATTEMPT_FAILED:
        if (left != 4 + 8)
            return LV_EJ_CORRUPT;
        rec->attempts = get_u32(f);
        rec->next_at_ms = get_u64(f + 4);
        break;
    case LV_EJ_FINISHED:
        if (left != 1 || (f[0] != LV_EJ_SUCCEEDED && f[0] != LV_EJ_DEAD_LETTERED))
            return LV_EJ_CORRUPT;
        rec->outcome = f[0];
        break;
    default:
        return LV_EJ_CORRUPT;
    }
    return (ssize_t)(LV_EJ_HEADER_BYTES + length);
}

/* Index of the pending event with this seq, or -1. pending is in seq order. */
static ssize_t find_pending(const lv_ej_pending_t *pending, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pending[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && pending[lo].seq == seq ? (ssize_t)lo : -1;
}

size_t lv_ej_replay(const char *data, size_t len, lv_ej_replay_t *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0, pos = 0;
    /* Finished events are only flagged while reading (the array must stay
     * sorted for the binary search) and dropped in one pass at the end. */
    bool *gone = NULL;
    while (pos < len) {
        lv_ej_record_t r;
        ssize_t n = lv_ej_decode(data + pos, len - pos, &r);
        if (n < 0)
            break;
        if (r.type == LV_EJ_ACCEPT) {
            if (r.seq <= out->max_seq)
                break; /* seqs only grow: this record was not written by the writer */
            if (out->num_pending == cap) {
                cap = cap ? cap * 2 : 16;
                out->pending = lv_realloc(out->pending, cap * sizeof *out->pending);
                gone = lv_realloc(gone, cap * sizeof *gone);
            }
            out->pending[out->num_pending] = (lv_ej_pending_t){
                .seq = r.seq,
                .request_id = r.request_id,
                .payload = r.payload,
                .accepted_ms = r.accepted_ms,
            };
            gone[out->num_pending++] = false;
            out->max_seq = r.seq;
        } else {
            /* A record about an event that is unknown or already finished
             * changes nothing; it is not a reason to distrust the rest. */
            ssize_t i = find_pending(out->pending, out->num_pending, r.seq);
            if (i >= 0 && !gone[i]) {
                if (r.type == LV_EJ_ATTEMPT_FAILED) {
                    out->pending[i].attempts = r.attempts;
                    out->pending[i].next_at_ms = r.next_at_ms;
                } else {
                    gone[i] = true;
                }
            }
        }
        pos += (size_t)n;
        out->records++;
        out->good_len = pos;
    }
    size_t kept = 0;
    for (size_t i = 0; i < out->num_pending; i++)
        if (!gone[i])
            out->pending[kept++] = out->pending[i];
    out->num_pending = kept;
    free(gone);
    return out->good_len;
}

void lv_ej_replay_free(lv_ej_replay_t *out)
{
    free(out->pending);
    memset(out, 0, sizeof *out);
}

/* ======================================================================
 * Types
 * ====================================================================== */

typedef struct fnq fnq_t;

typedef enum {
    EV_IDLE,      /* held, not scheduled (recovered before start, or stopping) */
    EV_WAITING,   /* timer armed until its next try */
    EV_READY,     /* in q->ready */
    EV_RUNNING,   /* lv_fn_invoke in flight */
    EV_FINISHING, /* its FINISHED (or dead-letter) op is with the writer */
} ev_state_t;

/* An accepted event. Built by the enqueuing thread, owned by the writer
 * until its ACCEPT is durable, then by the home loop (which frees it when
 * it finishes, or lv_event_queues_free does). */
typedef struct {
    lv_list_t link;   /* q->events: every event the home loop holds */
    lv_list_t ready;  /* q->ready while EV_READY */
    fnq_t *q;
    uint64_t seq;     /* never changes: the writer reads it while the home loop works */
    char request_id[LV_EJ_MAX_ID + 1];
    size_t request_id_len;
    char *payload;
    size_t payload_len;
    uint64_t accepted_ms;
    uint32_t attempts;     /* failed attempts so far */
    uint64_t next_at_ms;   /* wall clock of the next try (0: now) */
    ev_state_t state;
    /* Attempts spent and the dead-letter write failed: the line to write
     * again at the next timer (the function's result is gone by then). */
    char *dl_line;
    size_t dl_line_len;
    lv_timer_t timer;
} event_t;

typedef enum { OP_ACCEPT, OP_ATTEMPT_FAILED, OP_FINISHED, OP_DEAD_LETTER, OP_BARRIER } op_kind_t;

/* A unit of work for the writer. Allocated by whoever submits it and freed
 * by the thread its result goes to (the writer itself for a detached op). */
typedef struct op {
    struct op *next;
    op_kind_t kind;
    fnq_t *q;                /* NULL for OP_BARRIER */
    event_t *ev;
    int err;                 /* result: 0 when durable */
    /* Submitted after stop: the home loop may not run posted callbacks any
     * more, so the writer finishes the op alone. */
    bool detached;
    /* OP_ACCEPT: where the answer goes, with its own copy of the id (the
     * event may be finished and freed before the answer runs). */
    lv_loop_t *caller;
    lv_event_enqueued_cb done;
    void *arg;               /* also OP_BARRIER's */
    char request_id[LV_EJ_MAX_ID + 1];
    /* OP_BARRIER: posted to the home loop after every earlier result */
    lv_post_cb stop_done;
    /* OP_ATTEMPT_FAILED */
    uint32_t attempts;
    uint64_t next_at_ms;
    /* OP_DEAD_LETTER: the JSON line with its newline; a FINISHED record
     * follows it into the journal once the line is durable. */
    char *line;
    size_t line_len;
} op_t;

struct fnq {
    lv_event_queues_t *qs;
    lv_fn_t *fn;                     /* NULL: events are kept, never run */
    const lv_config_function_t *cfg;
    char *journal_path;
    char *dead_letter_path;
    unsigned max_inflight;

    /* Writer thread (the opening thread before start). */
    int fd;
    int dl_fd;                       /* -1 until the first dead letter */
    uint64_t size;                   /* bytes of good records */
    uint64_t live;                   /* accepted minus finished, as written */
    lv_buf_t batch;                  /* this batch's records */
    size_t batch_records, batch_accepts, batch_finishes;
    int batch_err;
    bool touched;

    /* Under qs->lock. */
    uint64_t next_seq;

    /* Any thread. */
    _Atomic uint64_t pending_bytes;

    /* Home loop. */
    lv_list_t events;
    lv_list_t ready;
    unsigned inflight;

    lv_counter_t *accepted, *succeeded, *retried, *dead_lettered;
    lv_counter_t *records, *fsyncs;
    lv_gauge_t *pending;
};

struct lv_event_queues {
    const lv_config_t *cfg;
    fnq_t *queues;
    size_t count;
    fnq_t **touched;          /* writer scratch: the queues a batch wrote to */
    lv_histogram_t *fsync_seconds;
    lv_loop_t *home;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    op_t *head, **tail;       /* under lock */
    bool accepting;           /* under lock: new events are taken */
    bool writer_exit;         /* under lock: drain the list, then exit */
    bool detach_all;          /* under lock: free is waiting; post nothing to any loop */
    pthread_t writer;
    bool writer_running;

    /* Home loop. */
    bool started, stopping;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void free_event(event_t *ev)
{
    if (ev->q)
        atomic_fetch_sub_explicit(&ev->q->pending_bytes, ev->payload_len, memory_order_relaxed);
    free(ev->payload);
    free(ev->dl_line);
    free(ev);
}

static void free_op(op_t *op)
{
    free(op->line);
    free(op);
}

/* ======================================================================
 * Files
 * ====================================================================== */

/* mkdir -p: creates path and its missing parents. Returns 0 or an errno. */
static int make_dirs(const char *path)
{
    char *p = lv_strdup(path);
    int err = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    if (!err) {
        struct stat st;
        if (stat(p, &st) != 0)
            err = errno;
        else if (!S_ISDIR(st.st_mode))
            err = ENOTDIR;
    }
    free(p);
    return err;
}

/* Makes a new file's name durable: fsync of the directory holding it. */
static void sync_parent_dir(const char *file)
{
    const char *slash = strrchr(file, '/');
    char *dir = slash && slash != file ? lv_strndup(file, (size_t)(slash - file)) : lv_strdup(slash ? "/" : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            lv_log_warn(MOD, "fsync %s: %s", dir, strerror(errno));
        close(dfd);
    }
    free(dir);
}

static int make_parent_dirs(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash || slash == file)
        return 0;
    char *dir = lv_strndup(file, (size_t)(slash - file));
    int err = make_dirs(dir);
    free(dir);
    return err;
}

/* Writes all of data at off; a short write with no errno is a full disk. */
static int pwrite_all(int fd, const char *data, size_t len, uint64_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, data, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return ENOSPC;
        data += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Reads the journal, cuts what cannot be trusted, and loads the pending
 * events into q->events (EV_IDLE until start). Returns 0 or an errno. */
static int recover(fnq_t *q)
{
    struct stat st;
    if (fstat(q->fd, &st) != 0)
        return errno;
    uint64_t size = (uint64_t)st.st_size;
    lv_ej_replay_t rep = {0};
    const char *map = NULL;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, q->fd, 0);
        if (map == MAP_FAILED)
            return errno;
    }
    size_t good = lv_ej_replay(map, (size_t)size, &rep);
    for (size_t i = 0; i < rep.num_pending; i++) {
        const lv_ej_pending_t *p = &rep.pending[i];
        event_t *ev = lv_calloc(1, sizeof *ev);
        ev->q = q;
        ev->seq = p->seq;
        memcpy(ev->request_id, p->request_id.ptr, p->request_id.len);
        ev->request_id_len = p->request_id.len;
        ev->payload = lv_memdup0(p->payload.ptr, p->payload.len);
        ev->payload_len = p->payload.len;
        ev->accepted_ms = p->accepted_ms;
        ev->attempts = p->attempts;
        ev->next_at_ms = p->next_at_ms;
        ev->state = EV_IDLE;
        lv_list_push_back(&q->events, &ev->link);
        atomic_fetch_add_explicit(&q->pending_bytes, ev->payload_len, memory_order_relaxed);
    }
    if (map)
        munmap((void *)map, (size_t)size);
    q->next_seq = rep.max_seq + 1;
    q->live = rep.num_pending;
    lv_gauge_add(q->pending, (int64_t)rep.num_pending);
    uint64_t keep = good;
    if (good < size)
        lv_log_warn(MOD, "%s: cut %llu bytes of torn or corrupt tail at offset %llu (%zu good records)",
                    q->journal_path, (unsigned long long)(size - good), (unsigned long long)good, rep.records);
    if (rep.num_pending == 0)
        keep = 0; /* nothing to run: start from an empty journal */
    else
        lv_log_info(MOD, "%s: %zu pending event%s recovered from %s", q->cfg->name, rep.num_pending,
                    rep.num_pending == 1 ? "" : "s", q->journal_path);
    lv_ej_replay_free(&rep);
    if (keep < size) {
        if (ftruncate(q->fd, (off_t)keep) != 0 || fsync(q->fd) != 0)
            return errno;
    }
    q->size = keep;
    return 0;
}

static int open_queue(fnq_t *q, const char *data_dir, lv_config_errors_t *errs, const lv_config_t *cfg)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "%s/functions/%s", data_dir, q->cfg->name);
    char *dir = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_append_str(&b, "/events.journal");
    q->journal_path = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    if (q->cfg->async.on_failure) {
        q->dead_letter_path = lv_strdup(q->cfg->async.on_failure);
    } else {
        lv_buf_printf(&b, "%s/dead-letter.jsonl", dir);
        q->dead_letter_path = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
        lv_buf_free(&b);
    }
    int err = make_dirs(dir);
    if (err) {
        lv_config_error(errs, cfg->path, q->cfg->pos, "function %s: cannot create %s: %s", q->cfg->name, dir,
                        strerror(err));
        free(dir);
        return -1;
    }
    q->fd = open(q->journal_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (q->fd < 0) {
        lv_config_error(errs, cfg->path, q->cfg->pos, "function %s: cannot open %s: %s", q->cfg->name,
                        q->journal_path, strerror(errno));
        free(dir);
        return -1;
    }
    /* The file's name must survive a crash too, or a first event acknowledged
     * in a new directory could vanish with it. */
    sync_parent_dir(q->journal_path);
    free(dir);
    /* Two processes appending to one journal would interleave records and
     * run each other's events; the lock makes the second one refuse. */
    if (flock(q->fd, LOCK_EX | LOCK_NB) != 0) {
        lv_config_error(errs, cfg->path, q->cfg->pos, "function %s: %s is in use by another levee (%s)",
                        q->cfg->name, q->journal_path, strerror(errno));
        return -1;
    }
    err = recover(q);
    if (err) {
        lv_config_error(errs, cfg->path, q->cfg->pos, "function %s: cannot recover %s: %s", q->cfg->name,
                        q->journal_path, strerror(err));
        return -1;
    }
    return 0;
}

static void register_metrics(fnq_t *q, lv_metrics_t *m)
{
    char name[256], labels[400];
    lv_metrics_label_escape(q->cfg->name, name, sizeof name);
    static const char *const results[] = {"accepted", "succeeded", "retried", "dead_lettered"};
    lv_counter_t **slots[] = {&q->accepted, &q->succeeded, &q->retried, &q->dead_lettered};
    for (size_t i = 0; i < 4; i++) {
        snprintf(labels, sizeof labels, "function=\"%s\",result=\"%s\"", name, results[i]);
        *slots[i] = lv_metrics_counter(m, "levee_function_async_events_total",
                                       "Asynchronous (Event) invocations: accepted (durable), succeeded, "
                                       "retried (an attempt failed), dead_lettered (retries spent).",
                                       labels);
    }
    snprintf(labels, sizeof labels, "function=\"%s\"", name);
    q->pending = lv_metrics_gauge(m, "levee_function_async_pending",
                                  "Asynchronous invocations accepted and not finished.", labels);
    q->records = lv_metrics_counter(m, "levee_function_async_journal_records_total",
                                    "Records written to the async journal; divided by "
                                    "levee_function_async_journal_fsyncs_total, the records per fsync.",
                                    labels);
    q->fsyncs = lv_metrics_counter(m, "levee_function_async_journal_fsyncs_total",
                                   "fdatasync calls on the async journal (one per group commit).", labels);
}

/* ======================================================================
 * Open, free, stats
 * ====================================================================== */

lv_event_queues_t *lv_event_queues_open(const lv_config_t *cfg, lv_functions_t *fns, lv_metrics_t *metrics,
                                        lv_config_errors_t *errs)
{
    lv_event_queues_t *qs = lv_calloc(1, sizeof *qs);
    qs->cfg = cfg;
    qs->count = cfg->num_functions;
    qs->queues = lv_calloc(qs->count ? qs->count : 1, sizeof *qs->queues);
    qs->touched = lv_calloc(qs->count ? qs->count : 1, sizeof *qs->touched);
    pthread_mutex_init(&qs->lock, NULL);
    pthread_cond_init(&qs->wake, NULL);
    qs->tail = &qs->head;
    qs->accepting = true;
    static const double fsync_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
    qs->fsync_seconds = lv_metrics_histogram(metrics, "levee_function_async_fsync_seconds",
                                             "Time of one fdatasync of an async journal (group commit).", NULL,
                                             fsync_bounds, sizeof fsync_bounds / sizeof fsync_bounds[0]);
    for (size_t i = 0; i < qs->count; i++) {
        fnq_t *q = &qs->queues[i];
        q->qs = qs;
        q->cfg = &cfg->functions[i];
        q->fd = q->dl_fd = -1;
        q->next_seq = 1;
        q->fn = fns ? lv_functions_find(fns, lv_slice_cstr(q->cfg->name)) : NULL;
        uint64_t max = q->cfg->max ? q->cfg->max : 1;
        q->max_inflight = (unsigned)((max + 1) / 2);
        lv_list_init(&q->events);
        lv_list_init(&q->ready);
        register_metrics(q, metrics);
    }
    int failed = 0;
    if (qs->count && !cfg->data_dir) {
        lv_config_error(errs, cfg->path, (lv_config_pos_t){0, 0}, "data_dir is not set");
        failed = 1;
    }
    for (size_t i = 0; i < qs->count && !failed; i++)
        if (open_queue(&qs->queues[i], cfg->data_dir, errs, cfg) != 0)
            failed = 1;
    if (failed) {
        lv_event_queues_free(qs);
        return NULL;
    }
    return qs;
}

void lv_event_queues_free(lv_event_queues_t *qs)
{
    if (!qs)
        return;
    if (qs->writer_running) {
        /* The writer finishes what it holds (ops submitted after stop are
         * detached: nothing is posted to a loop any more) and exits. */
        pthread_mutex_lock(&qs->lock);
        qs->accepting = false;
        qs->writer_exit = true;
        qs->detach_all = true;
        pthread_cond_signal(&qs->wake);
        pthread_mutex_unlock(&qs->lock);
        pthread_join(qs->writer, NULL);
        qs->writer_running = false;
    }
    /* Ops no writer took (it never started): their callbacks cannot run any
     * more, the loops they name may be gone. */
    for (op_t *op = qs->head, *next; op; op = next) {
        next = op->next;
        if (op->kind == OP_ACCEPT && op->ev)
            free_event(op->ev);
        free_op(op);
    }
    for (size_t i = 0; i < qs->count; i++) {
        fnq_t *q = &qs->queues[i];
        while (!lv_list_empty(&q->events)) {
            event_t *ev = lv_list_entry(lv_list_first(&q->events), event_t, link);
            lv_list_remove(&ev->link);
            if (lv_timer_armed(&ev->timer))
                lv_timer_stop(&ev->timer);
            free_event(ev);
        }
        if (q->fd >= 0)
            close(q->fd);
        if (q->dl_fd >= 0)
            close(q->dl_fd);
        lv_buf_free(&q->batch);
        free(q->journal_path);
        free(q->dead_letter_path);
    }
    pthread_cond_destroy(&qs->wake);
    pthread_mutex_destroy(&qs->lock);
    free(qs->touched);
    free(qs->queues);
    free(qs);
}

static fnq_t *find_queue(const lv_event_queues_t *qs, const lv_fn_t *fn)
{
    if (!fn)
        return NULL;
    for (size_t i = 0; i < qs->count; i++)
        if (qs->queues[i].fn == fn)
            return &qs->queues[i];
    return NULL;
}

void lv_event_queue_stats(const lv_event_queues_t *qs, const lv_fn_t *fn, lv_event_queue_stats_t *out)
{
    memset(out, 0, sizeof *out);
    const fnq_t *q = find_queue(qs, fn);
    if (!q)
        return;
    int64_t pending = lv_gauge_value(q->pending);
    out->pending = pending > 0 ? (uint64_t)pending : 0;
    out->accepted = lv_counter_value(q->accepted);
    out->succeeded = lv_counter_value(q->succeeded);
    out->retried = lv_counter_value(q->retried);
    out->dead_lettered = lv_counter_value(q->dead_lettered);
}

/* ======================================================================
 * Writer thread
 * ====================================================================== */

static void accept_answered(lv_loop_t *loop, void *arg);
static void event_arrived(lv_loop_t *loop, void *arg);
static void op_finished(lv_loop_t *loop, void *arg);

static int append_dead_letter(fnq_t *q, const char *line, size_t len)
{
    if (q->dl_fd < 0) {
        int err = make_parent_dirs(q->dead_letter_path);
        if (err)
            return err;
        q->dl_fd = open(q->dead_letter_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (q->dl_fd < 0)
            return errno;
        sync_parent_dir(q->dead_letter_path);
    }
    struct stat st;
    if (fstat(q->dl_fd, &st) != 0)
        return errno;
    /* With O_APPEND the line goes at the end whatever offset is given. */
    int err = pwrite_all(q->dl_fd, line, len, (uint64_t)st.st_size);
    if (!err && fdatasync(q->dl_fd) != 0)
        err = errno;
    if (err && ftruncate(q->dl_fd, st.st_size) != 0)
        lv_log_error(MOD, "%s: a partial line may remain: %s", q->dead_letter_path, strerror(errno));
    return err;
}

static void add_record(fnq_t *q, const op_t *op)
{
    const event_t *ev = op->ev;
    lv_ej_record_t rec = {.seq = ev->seq};
    switch (op->kind) {
    case OP_ACCEPT:
        rec.type = LV_EJ_ACCEPT;
        rec.request_id = lv_slice(ev->request_id, ev->request_id_len);
        rec.accepted_ms = ev->accepted_ms;
        rec.payload = lv_slice(ev->payload, ev->payload_len);
        q->batch_accepts++;
        break;
    case OP_ATTEMPT_FAILED:
        rec.type = LV_EJ_ATTEMPT_FAILED;
        rec.attempts = op->attempts;
        rec.next_at_ms = op->next_at_ms;
        break;
    case OP_FINISHED:
    case OP_DEAD_LETTER:
        rec.type = LV_EJ_FINISHED;
        rec.outcome = op->kind == OP_FINISHED ? LV_EJ_SUCCEEDED : LV_EJ_DEAD_LETTERED;
        q->batch_finishes++;
        break;
    case OP_BARRIER:
        return;
    }
    lv_ej_encode(&q->batch, &rec);
    q->batch_records++;
}

/* One pwrite and one fdatasync for all of q's records in this batch. */
static int flush_journal(lv_event_queues_t *qs, fnq_t *q)
{
    int err = pwrite_all(q->fd, lv_buf_data(&q->batch), lv_buf_len(&q->batch), q->size);
    if (!err) {
        uint64_t t0 = lv_clock_ns();
        if (fdatasync(q->fd) != 0)
            err = errno;
        lv_histogram_observe_ns(qs->fsync_seconds, lv_clock_ns() - t0);
        lv_counter_inc(q->fsyncs);
    }
    if (err) {
        /* Nothing of this batch is acknowledged, so nothing of it may stay:
         * a torn record would be cut at the next start anyway, but a whole
         * one would come back as an event no caller was told about. */
        if (ftruncate(q->fd, (off_t)q->size) != 0 || fdatasync(q->fd) != 0)
            lv_log_error(MOD, "%s: cannot cut back to %llu bytes after a failed write: %s", q->journal_path,
                         (unsigned long long)q->size, strerror(errno));
        lv_log_warn(MOD, "%s: write of %zu records failed: %s", q->journal_path, q->batch_records, strerror(err));
        return err;
    }
    lv_counter_add(q->records, q->batch_records);
    q->size += lv_buf_len(&q->batch);
    q->live += q->batch_accepts;
    q->live -= q->batch_finishes < q->live ? q->batch_finishes : q->live;
    if (q->live == 0 && q->size > COMPACT_BYTES) {
        if (ftruncate(q->fd, 0) == 0 && fdatasync(q->fd) == 0) {
            lv_log_debug(MOD, "%s: compacted (%llu bytes, nothing pending)", q->journal_path,
                         (unsigned long long)q->size);
            q->size = 0;
        } else {
            lv_log_warn(MOD, "%s: compaction failed: %s", q->journal_path, strerror(errno));
        }
    }
    return 0;
}

/* A detached op's result: counted here, since no loop will see it. */
static void finish_detached(op_t *op)
{
    if (!op->err && op->kind == OP_FINISHED) {
        lv_counter_inc(op->q->succeeded);
        lv_gauge_add(op->q->pending, -1);
    } else if (!op->err && op->kind == OP_DEAD_LETTER) {
        lv_counter_inc(op->q->dead_lettered);
        lv_gauge_add(op->q->pending, -1);
    }
    free_op(op);
}

static void process_batch(lv_event_queues_t *qs, op_t *batch, bool detach_all)
{
    /* Dead-letter lines first: their FINISHED records go into the journals
     * below only once the line is durable. */
    for (op_t *op = batch; op; op = op->next)
        if (op->kind == OP_DEAD_LETTER)
            op->err = append_dead_letter(op->q, op->line, op->line_len);

    size_t ntouched = 0;
    for (op_t *op = batch; op; op = op->next) {
        fnq_t *q = op->q;
        if (op->err || op->kind == OP_BARRIER)
            continue;
        if (!q->touched) {
            q->touched = true;
            qs->touched[ntouched++] = q;
        }
        add_record(q, op);
    }
    for (size_t i = 0; i < ntouched; i++)
        qs->touched[i]->batch_err = flush_journal(qs, qs->touched[i]);

    /* Results in submission order: a barrier's callback runs after every
     * result posted before it. */
    for (op_t *op = batch, *next; op; op = next) {
        next = op->next;
        op->next = NULL;
        if (op->kind == OP_BARRIER) {
            if (!detach_all)
                lv_loop_post(qs->home, op->stop_done, op->arg);
            free_op(op);
            continue;
        }
        if (!op->err)
            op->err = op->q->batch_err;
        if (op->kind == OP_ACCEPT && detach_all) {
            /* Its caller's loop may be gone; the event, if durable, runs
             * after the next start. */
            free_event(op->ev);
            free_op(op);
        } else if (op->kind == OP_ACCEPT) {
            if (op->err) {
                free_event(op->ev);
            } else {
                lv_counter_inc(op->q->accepted);
                lv_gauge_add(op->q->pending, 1);
                lv_loop_post(qs->home, event_arrived, op->ev);
            }
            op->ev = NULL;
            lv_loop_post(op->caller, accept_answered, op);
        } else if (op->detached || detach_all) {
            finish_detached(op);
        } else {
            lv_loop_post(qs->home, op_finished, op);
        }
    }
    for (size_t i = 0; i < ntouched; i++) {
        fnq_t *q = qs->touched[i];
        /* One burst of large events should not pin its buffer for good. */
        if (q->batch.capacity > 4 * (size_t)LV_EJ_MAX_RECORD)
            lv_buf_free(&q->batch);
        else
            lv_buf_clear(&q->batch);
        q->batch_records = q->batch_accepts = q->batch_finishes = 0;
        q->batch_err = 0;
        q->touched = false;
    }
}

static void *writer_main(void *arg)
{
    lv_event_queues_t *qs = arg;
    for (;;) {
        pthread_mutex_lock(&qs->lock);
        while (!qs->head && !qs->writer_exit)
            pthread_cond_wait(&qs->wake, &qs->lock);
        op_t *batch = qs->head;
        qs->head = NULL;
        qs->tail = &qs->head;
        bool detach_all = qs->detach_all;
        pthread_mutex_unlock(&qs->lock);
        if (!batch)
            break; /* told to exit, and nothing is left */
        process_batch(qs, batch, detach_all);
    }
    return NULL;
}

static void submit(lv_event_queues_t *qs, op_t *op)
{
    pthread_mutex_lock(&qs->lock);
    *qs->tail = op;
    qs->tail = &op->next;
    pthread_cond_signal(&qs->wake);
    pthread_mutex_unlock(&qs->lock);
}

/* An op about ev from the home loop. */
static op_t *new_op(op_kind_t kind, event_t *ev)
{
    op_t *op = lv_calloc(1, sizeof *op);
    op->kind = kind;
    op->q = ev->q;
    op->ev = ev;
    op->detached = ev->q->qs->stopping;
    return op;
}

/* ======================================================================
 * Enqueue (any loop thread)
 * ====================================================================== */

static void accept_answered(lv_loop_t *loop, void *arg)
{
    op_t *op = arg;
    (void)loop;
    op->done(op->arg, op->err, lv_slice_cstr(op->request_id));
    free_op(op);
}

void lv_event_enqueue(lv_event_queues_t *qs, lv_fn_t *fn, lv_loop_t *caller, lv_slice_t payload,
                      lv_event_enqueued_cb done, void *arg)
{
    op_t *op = lv_calloc(1, sizeof *op);
    op->kind = OP_ACCEPT;
    op->caller = caller;
    op->done = done;
    op->arg = arg;
    lv_uuid4(op->request_id);
    fnq_t *q = find_queue(qs, fn);
    if (!q) {
        op->err = ENOENT;
    } else if (payload.len > LV_EJ_MAX_PAYLOAD) {
        op->err = EMSGSIZE;
    } else if (atomic_fetch_add_explicit(&q->pending_bytes, payload.len, memory_order_relaxed) + payload.len >
               MAX_PENDING_BYTES) {
        atomic_fetch_sub_explicit(&q->pending_bytes, payload.len, memory_order_relaxed);
        op->err = ENOBUFS;
    } else {
        event_t *ev = lv_calloc(1, sizeof *ev);
        ev->q = q;
        memcpy(ev->request_id, op->request_id, LV_UUID_LEN);
        ev->request_id_len = LV_UUID_LEN;
        ev->payload = lv_memdup0(payload.ptr, payload.len);
        ev->payload_len = payload.len;
        ev->accepted_ms = wall_ms();
        op->q = q;
        op->ev = ev;
        pthread_mutex_lock(&qs->lock);
        if (qs->accepting) {
            /* The seq is taken under the lock that orders the list, so the
             * journal sees seqs in increasing order, as replay demands. */
            ev->seq = q->next_seq++;
            *qs->tail = op;
            qs->tail = &op->next;
            pthread_cond_signal(&qs->wake);
            op = NULL;
        }
        pthread_mutex_unlock(&qs->lock);
        if (op) {
            free_event(op->ev);
            op->ev = NULL;
            op->err = ESHUTDOWN;
        }
    }
    if (op)
        lv_loop_post(caller, accept_answered, op);
}

/* ======================================================================
 * Dispatch (home loop)
 * ====================================================================== */

static void pump(fnq_t *q);

static void make_ready(event_t *ev)
{
    ev->state = EV_READY;
    lv_list_push_back(&ev->q->ready, &ev->ready);
}

static void on_timer(lv_loop_t *loop, lv_timer_t *t);

static void schedule(event_t *ev, uint64_t delay_ms)
{
    ev->state = EV_WAITING;
    ev->timer.cb = on_timer;
    ev->timer.data = ev;
    lv_timer_start(ev->q->qs->home, &ev->timer, delay_ms);
}

static void submit_dead_letter(event_t *ev, char *line, size_t len)
{
    op_t *op = new_op(OP_DEAD_LETTER, ev);
    op->line = line;
    op->line_len = len;
    ev->state = EV_FINISHING;
    submit(ev->q->qs, op);
}

static void on_timer(lv_loop_t *loop, lv_timer_t *t)
{
    event_t *ev = t->data;
    (void)loop;
    if (ev->dl_line) {
        char *line = ev->dl_line;
        ev->dl_line = NULL;
        submit_dead_letter(ev, line, ev->dl_line_len);
        return;
    }
    make_ready(ev);
    pump(ev->q);
}

/* Payloads are JSON when they come through the Invoke API; anything else
 * is kept as a string rather than lost. */
static json_t *json_value_or_text(const char *p, size_t len)
{
    json_t *v = len ? json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    if (!v)
        v = json_stringn(p ? p : "", len);
    return v ? v : json_null();
}

static void iso_time(uint64_t ms, char out[80])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* The on-failure invocation record Lambda writes for an event whose retries
 * are spent, as one line. */
static char *dead_letter_line(const event_t *ev, lv_slice_t response, size_t *len)
{
    char ts[80], arn[256];
    iso_time(wall_ms(), ts);
    snprintf(arn, sizeof arn, ARN_PREFIX "%s:$LATEST", ev->q->cfg->name);
    json_t *ctx = json_object();
    json_object_set_new(ctx, "requestId", json_stringn(ev->request_id, ev->request_id_len));
    json_object_set_new(ctx, "functionArn", json_string(arn));
    json_object_set_new(ctx, "condition", json_string("RetriesExhausted"));
    json_object_set_new(ctx, "approximateInvokeCount", json_integer(ev->attempts));
    json_t *rctx = json_object();
    json_object_set_new(rctx, "statusCode", json_integer(200));
    json_object_set_new(rctx, "executedVersion", json_string("$LATEST"));
    json_object_set_new(rctx, "functionError", json_string("Unhandled"));
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "timestamp", json_string(ts));
    json_object_set_new(root, "requestContext", ctx);
    json_object_set_new(root, "requestPayload", json_value_or_text(ev->payload, ev->payload_len));
    json_object_set_new(root, "responseContext", rctx);
    json_object_set_new(root, "responsePayload", json_value_or_text(response.ptr, response.len));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t n = text ? strlen(text) : 0;
    char *line = lv_malloc(n + 2);
    if (text)
        memcpy(line, text, n);
    free(text);
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

static void on_result(void *arg, const lv_fn_result_t *r)
{
    event_t *ev = arg;
    fnq_t *q = ev->q;
    lv_event_queues_t *qs = q->qs;
    q->inflight--;
    switch (r->status) {
    case LV_FN_OK:
        ev->state = EV_FINISHING;
        submit(qs, new_op(OP_FINISHED, ev));
        break;
    case LV_FN_THROTTLED:
    case LV_FN_SHUTDOWN:
        /* Not the function's doing: try again later, the attempt uncounted. */
        if (qs->stopping)
            ev->state = EV_IDLE;
        else
            schedule(ev, REQUEUE_MS);
        break;
    default: /* LV_FN_ERROR, LV_FN_TIMEOUT, LV_FN_CRASHED, LV_FN_TOO_LARGE */
        ev->attempts++;
        if (ev->attempts <= (uint32_t)(q->cfg->async.retries > 0 ? q->cfg->async.retries : 0)) {
            /* backoff, then twice that (retries are at most 2 in the config;
             * the shift is capped all the same). */
            uint64_t backoff = q->cfg->async.backoff_ms > 0 ? (uint64_t)q->cfg->async.backoff_ms : 0;
            uint64_t delay = backoff << (ev->attempts - 1 < 16 ? ev->attempts - 1 : 16);
            ev->next_at_ms = wall_ms() + delay;
            op_t *op = new_op(OP_ATTEMPT_FAILED, ev);
            op->attempts = ev->attempts;
            op->next_at_ms = ev->next_at_ms;
            submit(qs, op);
            lv_counter_inc(q->retried);
            lv_log_debug(MOD, "%s: event %s failed (%s), attempt %u; next in %llu ms", q->cfg->name, ev->request_id,
                         r->error_type ? r->error_type : "error", ev->attempts, (unsigned long long)delay);
            if (qs->stopping)
                ev->state = EV_IDLE;
            else
                schedule(ev, delay);
        } else {
            lv_log_warn(MOD, "%s: event %s failed %u times (%s); dead-lettered to %s", q->cfg->name, ev->request_id,
                        ev->attempts, r->error_type ? r->error_type : "error", q->dead_letter_path);
            size_t len;
            char *line = dead_letter_line(ev, r->payload, &len);
            submit_dead_letter(ev, line, len);
        }
        break;
    }
    pump(q);
}

static void pump(fnq_t *q)
{
    lv_event_queues_t *qs = q->qs;
    if (!q->fn)
        return;
    while (!qs->stopping && q->inflight < q->max_inflight) {
        lv_list_t *first = lv_list_first(&q->ready);
        if (!first)
            break;
        event_t *ev = lv_list_entry(first, event_t, ready);
        lv_list_remove(&ev->ready);
        ev->state = EV_RUNNING;
        q->inflight++;
        lv_fn_invoke_t inv = {
            .payload = lv_slice(ev->payload, ev->payload_len),
            .request_id = lv_slice(ev->request_id, ev->request_id_len),
        };
        lv_fn_invoke(q->fn, qs->home, &inv, on_result, ev);
    }
}

static void event_arrived(lv_loop_t *loop, void *arg)
{
    event_t *ev = arg;
    (void)loop;
    lv_list_push_back(&ev->q->events, &ev->link);
    if (ev->q->qs->stopping) {
        ev->state = EV_IDLE; /* durable: it runs after the next start */
        return;
    }
    make_ready(ev);
    pump(ev->q);
}

static void op_finished(lv_loop_t *loop, void *arg)
{
    op_t *op = arg;
    event_t *ev = op->ev;
    fnq_t *q = op->q;
    (void)loop;
    switch (op->kind) {
    case OP_ATTEMPT_FAILED:
        if (op->err)
            lv_log_warn(MOD, "%s: event %s: its failed attempt was not recorded (%s); after a restart it "
                        "may be tried once more", q->cfg->name, ev->request_id, strerror(op->err));
        break;
    case OP_DEAD_LETTER:
        if (op->err) {
            /* The dead-letter line, or the FINISHED record after it, failed.
             * Keep the event and write both again later: a line may then
             * appear twice, which beats losing it. */
            lv_log_error(MOD, "%s: event %s: dead-letter write failed (%s); retrying", q->cfg->name,
                         ev->request_id, strerror(op->err));
            ev->dl_line = op->line;
            ev->dl_line_len = op->line_len;
            op->line = NULL;
            if (q->qs->stopping)
                ev->state = EV_IDLE;
            else
                schedule(ev, q->cfg->async.backoff_ms > 1000 ? (uint64_t)q->cfg->async.backoff_ms : 1000);
            break;
        }
        /* fall through */
    case OP_FINISHED:
        if (op->err)
            lv_log_warn(MOD, "%s: event %s: its end was not recorded (%s); it will run again after a restart",
                        q->cfg->name, ev->request_id, strerror(op->err));
        lv_counter_inc(op->kind == OP_FINISHED ? q->succeeded : q->dead_lettered);
        lv_gauge_add(q->pending, -1);
        lv_list_remove(&ev->link);
        free_event(ev);
        break;
    case OP_ACCEPT:
    case OP_BARRIER:
        break;
    }
    free_op(op);
}

/* ======================================================================
 * Start and stop (home loop)
 * ====================================================================== */

void lv_event_queues_start(lv_event_queues_t *qs, lv_loop_t *home)
{
    qs->home = home;
    qs->started = true;
    /* The writer takes no signals: they belong to the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&qs->writer, NULL, writer_main, qs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        lv_log_error(MOD, "cannot start the journal writer thread: %s", strerror(rc));
        abort();
    }
    qs->writer_running = true;
    uint64_t now = wall_ms();
    for (size_t i = 0; i < qs->count; i++) {
        fnq_t *q = &qs->queues[i];
        for (lv_list_t *l = q->events.next; l != &q->events; l = l->next) {
            event_t *ev = lv_list_entry(l, event_t, link);
            if (ev->state != EV_IDLE)
                continue;
            if (ev->next_at_ms > now)
                schedule(ev, ev->next_at_ms - now);
            else
                make_ready(ev);
        }
        pump(q);
    }
}

void lv_event_queues_stop(lv_event_queues_t *qs, lv_post_cb done, void *arg)
{
    qs->stopping = true;
    pthread_mutex_lock(&qs->lock);
    qs->accepting = false;
    pthread_mutex_unlock(&qs->lock);
    for (size_t i = 0; i < qs->count; i++) {
        fnq_t *q = &qs->queues[i];
        for (lv_list_t *l = q->events.next; l != &q->events; l = l->next) {
            event_t *ev = lv_list_entry(l, event_t, link);
            if (ev->state == EV_WAITING) {
                lv_timer_stop(&ev->timer);
                ev->state = EV_IDLE;
            } else if (ev->state == EV_READY) {
                lv_list_remove(&ev->ready);
                ev->state = EV_IDLE;
            }
        }
    }
    lv_loop_t *home = qs->started ? qs->home : lv_loop_current();
    if (!qs->started || !home) {
        if (home)
            lv_loop_post(home, done, arg);
        else
            done(NULL, arg);
        return;
    }
    /* done runs once everything submitted so far is on disk and its results
     * have run. */
    op_t *barrier = lv_calloc(1, sizeof *barrier);
    barrier->kind = OP_BARRIER;
    barrier->stop_done = done;
    barrier->arg = arg;
    submit(qs, barrier);
}
