/* stream.c: the set of streams (lv_streams_t): opening and recovery,
 * create and delete, references, retention, and the keeper thread that
 * does their disk work. Appends are in commit.c, reads in read.c; the
 * structures and the rules for sharing them in stream_internal.h.
 *
 * Open: DATA_DIR/streams/ is created and flock'd, leftovers of interrupted
 * creates and deletes are removed, and every stream directory is loaded:
 * meta.json read, and each shard's segments scanned in order. Segments
 * before the last are read head by head (no CRC: that is `check-data`'s
 * job) to rebuild the sparse index and to check that every record's seq
 * follows the one before, within and across files. The last segment is
 * read whole and CRC-checked; a torn or corrupt tail is cut (ftruncate,
 * fsync, logged with byte counts). Anything wrong elsewhere refuses the
 * open with a message naming the file and offset and pointing to
 * `levee check-data`. Config streams that do not exist are then created.
 *
 * The keeper thread runs jobs in order: create a stream (a directory built
 * under a temporary name and renamed into place), rename a deleted
 * stream's directory away, remove a deleted stream's files once its last
 * reference is dropped, and the shutdown sequence. Between jobs it applies
 * retention every few seconds: whole segments whose newest record is older
 * than the stream's retention are unlinked, oldest first, never a shard's
 * last segment.
 *
 * References: the table of live streams holds one per stream; find, reads
 * and create callbacks take their own. A deleted stream leaves the table at
 * once (its name can be created again right away: the rename job runs
 * before any later create), and is freed by the keeper when its count
 * reaches zero. */
#include "stream/stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/md5.h"
#include "core/mem.h"
#include "core/uuid.h"
#include "stream/segment.h"
#include "stream/store.h"
#include "stream/stream_internal.h"

#define MOD LV_STREAM_MOD

/* Settings of streams created through the API (CreateStream), the same as
 * the config's defaults for `streams:`. */
#define DEFAULT_RETENTION_MS (24 * 3600 * 1000LL)
#define DEFAULT_SYNC_INTERVAL_MS 5
#define DEFAULT_SEGMENT_BYTES (64ull << 20)
#define DEFAULT_MAX_PENDING_BYTES (64ull << 20)
/* Retention runs at least this often (more often for short retentions). */
#define RETENTION_PERIOD_MS 5000

typedef enum { JOB_CREATE, JOB_RENAME, JOB_CLEANUP, JOB_STOP } job_kind_t;

/* Work for the keeper. Owned by the queue, then by the keeper, which frees
 * it (after the callback, for a create). */
typedef struct lv_keeper_job {
    struct lv_keeper_job *next;
    job_kind_t kind;
    lv_streams_t *set;
    lv_stream_t *s;            /* RENAME (referenced), CLEANUP (unreferenced, owned) */
    char name[LV_STREAM_MAX_NAME + 1];
    unsigned shards;
    lv_loop_t *loop;
    lv_stream_created_cb created;
    lv_post_cb stopped;
    void *arg;
    lv_stream_created_t res;
} lv_keeper_job_t;

/* ======================================================================
 * Small helpers shared with commit.c and read.c
 * ====================================================================== */

uint64_t lv_stream_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void lv_stream_seg_path(unsigned shard, uint64_t first_seq, char out[LV_STREAM_SEG_PATH_MAX])
{
    snprintf(out, LV_STREAM_SEG_PATH_MAX, "%04u/%020" PRIu64 ".seg", shard, first_seq);
}

void lv_stream_index_push(lv_stream_segment_t *seg, uint64_t seq, uint64_t off, uint64_t arrival_ms)
{
    if (seg->nindex == seg->index_cap) {
        seg->index_cap = seg->index_cap ? seg->index_cap * 2 : 16;
        seg->index = lv_realloc(seg->index, seg->index_cap * sizeof *seg->index);
    }
    seg->index[seg->nindex++] = (lv_stream_index_entry_t){seq, off, arrival_ms};
}

void lv_stream_shard_gauges(lv_stream_shard_t *sh)
{
    uint64_t first = sh->nsegs ? sh->segs[0].first_seq : sh->next_seq;
    int64_t next = (int64_t)sh->next_seq, records = (int64_t)(sh->next_seq - first);
    lv_gauge_add(sh->m_next_seq, next - sh->gauge_next_seq);
    lv_gauge_add(sh->m_records, records - sh->gauge_records);
    sh->gauge_next_seq = next;
    sh->gauge_records = records;
}

static const struct {
    int err;
    const char *name;
} errno_names[LV_STREAM_NUM_ERRNOS] = {
    {EINVAL, "EINVAL"}, {EAGAIN, "EAGAIN"}, {ENOENT, "ENOENT"}, {ESHUTDOWN, "ESHUTDOWN"},
    {ENOSPC, "ENOSPC"}, {EIO, "EIO"},       {EDQUOT, "EDQUOT"}, {0, "other"},
};

void lv_stream_count_errors(lv_stream_t *s, int err, uint64_t n)
{
    size_t i = 0;
    while (i < LV_STREAM_NUM_ERRNOS - 1 && errno_names[i].err != err)
        i++;
    lv_counter_add(s->m_errors[i], n);
}

/* ======================================================================
 * Streams in memory
 * ====================================================================== */

static void register_metrics(lv_stream_t *s, lv_metrics_t *m)
{
    static const double sync_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0};
    static const double batch_bounds[] = {1,    2,    5,    10,    20,    50,    100,   200,
                                          500,  1000, 2000, 5000,  10000, 20000, 50000, 100000};
    char esc[LV_STREAM_MAX_NAME * 2 + 8], labels[LV_STREAM_MAX_NAME * 2 + 64];
    lv_metrics_label_escape(s->name, esc, sizeof esc);
    snprintf(labels, sizeof labels, "stream=\"%s\"", esc);
    s->m_appends = lv_metrics_counter(m, "levee_stream_appends_total", "Records appended and acknowledged", labels);
    s->m_bytes = lv_metrics_counter(m, "levee_stream_append_bytes_total",
                                    "Partition key and data bytes of the records acknowledged", labels);
    s->m_syncs = lv_metrics_counter(m, "levee_stream_syncs_total", "fdatasync calls on segment files", labels);
    s->m_segments_removed = lv_metrics_counter(m, "levee_stream_segments_removed_total",
                                               "Segment files removed by retention", labels);
    s->m_sync_seconds = lv_metrics_histogram(m, "levee_stream_sync_seconds", "Time of one fdatasync of a segment",
                                             labels, sync_bounds, sizeof sync_bounds / sizeof sync_bounds[0]);
    s->m_records_per_sync = lv_metrics_histogram(
        m, "levee_stream_records_per_sync",
        "Records made durable by one group commit (the bucket bounds are record counts, not seconds)", labels,
        batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    s->m_pending = lv_metrics_gauge(m, "levee_stream_pending_bytes",
                                    "Bytes of appends accepted and not yet acknowledged", labels);
    for (size_t i = 0; i < LV_STREAM_NUM_ERRNOS; i++) {
        char l[sizeof labels + 32];
        snprintf(l, sizeof l, "%s,error=\"%s\"", labels, errno_names[i].name);
        s->m_errors[i] = lv_metrics_counter(m, "levee_stream_append_errors_total",
                                            "Records whose append failed, by errno", l);
    }
    for (unsigned i = 0; i < s->nshards; i++) {
        char l[sizeof labels + 32];
        snprintf(l, sizeof l, "%s,shard=\"%u\"", labels, i);
        s->shards[i].m_next_seq = lv_metrics_gauge(m, "levee_stream_shard_next_seq",
                                                   "Sequence number the shard's next record gets", l);
        s->shards[i].m_records = lv_metrics_gauge(m, "levee_stream_shard_records", "Records the shard keeps", l);
    }
}

static void init_cond_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

static lv_stream_t *new_stream(lv_streams_t *set, const lv_stream_meta_t *meta, int dirfd,
                               const lv_stream_settings_t *st)
{
    lv_stream_t *s = lv_calloc(1, sizeof *s);
    s->set = set;
    s->name_len = strlen(meta->name);
    s->name = lv_memdup0(meta->name, s->name_len);
    s->id = meta->id;
    s->created_ms = meta->created_ms;
    s->nshards = meta->shards;
    s->cfg = *st;
    s->dirfd = dirfd;
    s->shards = lv_calloc(s->nshards, sizeof *s->shards);
    s->touched = lv_calloc(s->nshards, sizeof *s->touched);
    for (unsigned i = 0; i < s->nshards; i++) {
        lv_stream_shard_t *sh = &s->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->fd = -1;
        sh->next_seq = sh->w_next_seq = 1;
    }
    pthread_mutex_init(&s->qlock, NULL);
    init_cond_monotonic(&s->qwake);
    s->qtail = &s->qhead;
    register_metrics(s, set->metrics);
    return s;
}

static void free_stream(lv_stream_t *s)
{
    for (unsigned i = 0; i < s->nshards; i++) {
        lv_stream_shard_t *sh = &s->shards[i];
        for (size_t k = 0; k < sh->nsegs; k++)
            free(sh->segs[k].index);
        free(sh->segs);
        if (sh->fd >= 0)
            close(sh->fd);
        lv_buf_free(&sh->batch);
        free(sh->b_index);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s->shards);
    free(s->touched);
    if (s->dirfd >= 0)
        close(s->dirfd);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qwake);
    free(s->name);
    free(s);
}

/* Settings for a config stream, with defaults for anything left unset
 * (tests and the config parser both build these). */
static lv_stream_settings_t settings_of(const lv_config_stream_t *c, const lv_stream_meta_t *meta)
{
    lv_stream_settings_t st = {
        .retention_ms = meta ? meta->retention_ms : DEFAULT_RETENTION_MS,
        .durability = meta ? meta->durability : LV_DURABILITY_FSYNC,
        .sync_interval_ms = DEFAULT_SYNC_INTERVAL_MS,
        .segment_bytes = DEFAULT_SEGMENT_BYTES,
        .max_pending_bytes = DEFAULT_MAX_PENDING_BYTES,
    };
    if (c) {
        if (c->retention_ms > 0)
            st.retention_ms = c->retention_ms;
        st.durability = c->durability;
        if (c->sync_interval_ms > 0)
            st.sync_interval_ms = c->sync_interval_ms;
        if (c->segment_bytes > 0)
            st.segment_bytes = c->segment_bytes;
        if (c->max_pending_bytes > 0)
            st.max_pending_bytes = c->max_pending_bytes;
    }
    return st;
}

static const lv_config_stream_t *config_stream(const lv_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_streams; i++)
        if (cfg->streams[i].name && strcmp(cfg->streams[i].name, name) == 0)
            return &cfg->streams[i];
    return NULL;
}

/* ======================================================================
 * Recovery
 * ====================================================================== */

static const char *cfg_file(const lv_streams_t *set)
{
    return set->cfg->path ? set->cfg->path : "levee";
}

/* Reports damage that recovery must not cut, with where to go next. */
static void report_damage(lv_streams_t *set, lv_config_errors_t *errs, const char *stream, const char *what)
{
    const char *dd = set->cfg->data_dir ? set->cfg->data_dir : "DATA_DIR";
    lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0},
                    "stream %s: %s; levee does not serve a stream it cannot read whole: run `levee check-data %s` "
                    "to see the damage and `levee check-data %s --repair` to cut it",
                    stream, what, dd, dd);
}

typedef struct {
    lv_stream_segment_t *seg;
    uint64_t last_off;
} index_builder_t;

static void index_record(void *arg, const lv_seg_record_t *rec, uint64_t off)
{
    index_builder_t *b = arg;
    if (b->seg->nindex == 0 || off - b->last_off >= LV_STREAM_INDEX_SPACING) {
        lv_stream_index_push(b->seg, rec->seq, off, rec->arrival_ms);
        b->last_off = off;
    }
}

static void ignore_file(void *arg, const char *name)
{
    const char *where = arg;
    lv_log_warn(MOD, "%s: ignoring %s (not a segment file)", where, name);
}

/* Loads one shard's segments. Returns 0, or -1 after reporting. */
static int recover_shard(lv_streams_t *set, lv_stream_t *s, unsigned shard, lv_config_errors_t *errs)
{
    lv_stream_shard_t *sh = &s->shards[shard];
    char dir[LV_STORE_SHARD_NAME_MAX], what[512], where[LV_STREAM_MAX_NAME + 64];
    lv_store_shard_name(shard, dir);
    snprintf(where, sizeof where, "stream %s shard %s", s->name, dir);
    int sdfd = openat(s->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sdfd < 0) {
        snprintf(what, sizeof what, "shard directory %s: %s", dir, strerror(errno));
        report_damage(set, errs, s->name, what);
        return -1;
    }
    uint64_t *firsts;
    size_t n;
    int err = lv_store_list_segments(sdfd, &firsts, &n, ignore_file, where);
    if (err) {
        close(sdfd);
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "stream %s: cannot list %s: %s", s->name,
                        dir, strerror(err));
        return -1;
    }
    int rc = 0;
    uint64_t prev_next = 0;
    for (size_t k = 0; k < n && rc == 0; k++) {
        bool last = k + 1 == n;
        char name[LV_SEG_NAME_MAX];
        lv_seg_name(firsts[k], name);
        int fd = openat(sdfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "stream %s: cannot open %s/%s: %s",
                            s->name, dir, name, strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = -1;
            break;
        }
        if (k > 0 && firsts[k] != prev_next) {
            snprintf(what, sizeof what, "%s/%s should start at seq %" PRIu64 " (where the segment before ends)",
                     dir, name, prev_next);
            report_damage(set, errs, s->name, what);
            close(fd);
            rc = -1;
            break;
        }
        if (sh->nsegs == sh->segs_cap) {
            sh->segs_cap = sh->segs_cap ? sh->segs_cap * 2 : 4;
            sh->segs = lv_realloc(sh->segs, sh->segs_cap * sizeof *sh->segs);
        }
        lv_stream_segment_t *seg = &sh->segs[sh->nsegs++];
        *seg = (lv_stream_segment_t){.first_seq = firsts[k]};
        index_builder_t ib = {.seg = seg};
        lv_seg_reader_t r;
        lv_seg_scan_t scan;
        lv_seg_reader_file(&r, fd, 0, (uint64_t)st.st_size);
        lv_seg_scan(&r, last, firsts[k], &scan, index_record, &ib);
        lv_seg_reader_free(&r);
        seg->next_seq = scan.next_seq;
        seg->size = scan.good_bytes;
        seg->last_arrival_ms = scan.last_arrival_ms;
        prev_next = scan.next_seq;
        if (scan.problem == LV_SEG_IOERR) {
            lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "stream %s: cannot read %s/%s: %s",
                            s->name, dir, name, strerror(scan.err));
            rc = -1;
        } else if (scan.problem && !last) {
            snprintf(what, sizeof what, "%s/%s at offset %" PRIu64 ": %s", dir, name, scan.good_bytes,
                     lv_seg_problem_str(scan.problem));
            report_damage(set, errs, s->name, what);
            rc = -1;
        } else if (scan.problem) {
            uint64_t cut = (uint64_t)st.st_size - scan.good_bytes;
            if (ftruncate(fd, (off_t)scan.good_bytes) != 0 || fsync(fd) != 0) {
                lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0},
                                "stream %s: cannot cut the damaged tail of %s/%s: %s", s->name, dir, name,
                                strerror(errno));
                rc = -1;
            } else {
                lv_log_warn(MOD,
                            "stream %s: cut %" PRIu64 " bytes at offset %" PRIu64 " of %s/%s (%s); %" PRIu64
                            " records before it kept, next seq %" PRIu64,
                            s->name, cut, scan.good_bytes, dir, name, lv_seg_problem_str(scan.problem),
                            scan.records, scan.next_seq);
            }
        }
        if (last && rc == 0) {
            sh->fd = fd;
            sh->w_size = seg->size;
            sh->w_indexed = seg->nindex > 0;
            sh->w_last_index_off = seg->nindex ? seg->index[seg->nindex - 1].off : 0;
        } else {
            close(fd);
        }
    }
    free(firsts);
    close(sdfd);
    if (rc)
        return rc;
    if (sh->nsegs)
        sh->next_seq = sh->segs[sh->nsegs - 1].next_seq;
    for (size_t k = sh->nsegs; k-- > 0;) {
        if (sh->segs[k].next_seq != sh->segs[k].first_seq) {
            sh->last_arrival_ms = sh->segs[k].last_arrival_ms;
            break;
        }
    }
    sh->w_next_seq = sh->next_seq;
    sh->w_last_arrival_ms = sh->last_arrival_ms;
    pthread_mutex_lock(&sh->lock);
    lv_stream_shard_gauges(sh);
    pthread_mutex_unlock(&sh->lock);
    return 0;
}

/* Loads DATA_DIR/streams/NAME. Returns the stream (unreferenced, not in
 * the table), or NULL after reporting. */
static lv_stream_t *load_stream(lv_streams_t *set, const char *name, lv_config_errors_t *errs)
{
    int dfd = openat(set->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "stream %s: cannot open %s/%s: %s", name,
                        set->dir, name, strerror(errno));
        return NULL;
    }
    lv_stream_meta_t meta;
    char why[256], what[400];
    int err = lv_stream_meta_read(dfd, &meta, why, sizeof why);
    if (!err && strcmp(meta.name, name) != 0) {
        snprintf(why, sizeof why, "it names stream \"%s\"", meta.name);
        err = EINVAL;
    }
    if (err) {
        snprintf(what, sizeof what, "%s: %s", LV_STORE_META_FILE, why);
        report_damage(set, errs, name, what);
        close(dfd);
        return NULL;
    }
    const lv_config_stream_t *c = config_stream(set->cfg, name);
    lv_stream_settings_t st = settings_of(c, &meta);
    if (c && c->shards && c->shards != meta.shards)
        lv_log_warn(MOD, "stream %s: the config says %u shards; it keeps the %u it was created with", name,
                    c->shards, meta.shards);
    if (c && (meta.retention_ms != st.retention_ms || meta.durability != st.durability)) {
        meta.retention_ms = st.retention_ms;
        meta.durability = st.durability;
        err = lv_stream_meta_write(dfd, &meta);
        if (err)
            lv_log_warn(MOD, "stream %s: cannot update %s with the config's retention and durability: %s", name,
                        LV_STORE_META_FILE, strerror(err));
    }
    lv_stream_t *s = new_stream(set, &meta, dfd, &st);
    for (unsigned i = 0; i < s->nshards; i++) {
        if (recover_shard(set, s, i, errs) != 0) {
            free_stream(s);
            return NULL;
        }
    }
    return s;
}

/* ======================================================================
 * Creating and removing stream directories
 * ====================================================================== */

static void side_name(const char *name, const char *what, uint64_t id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s~%s-%016" PRIx64, name, what, id);
}

/* Builds the directory of a new stream under a temporary name and renames
 * it into place. Returns 0 with *dirfd open on it, or an errno. */
static int make_stream_dir(lv_streams_t *set, const lv_stream_meta_t *meta, int *dirfd)
{
    char tmp[LV_STREAM_MAX_NAME + 64];
    side_name(meta->name, "new", meta->id, tmp, sizeof tmp);
    if (mkdirat(set->dirfd, tmp, 0755) != 0)
        return errno;
    int err = 0;
    int dfd = openat(set->dirfd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        err = errno;
    for (unsigned i = 0; i < meta->shards && !err; i++) {
        char dir[LV_STORE_SHARD_NAME_MAX];
        lv_store_shard_name(i, dir);
        if (mkdirat(dfd, dir, 0755) != 0)
            err = errno;
    }
    if (!err)
        err = lv_stream_meta_write(dfd, meta); /* also fsyncs dfd: the shard names are durable */
    if (!err && renameat2(set->dirfd, tmp, set->dirfd, meta->name, RENAME_NOREPLACE) != 0) {
        err = errno;
        if (err == EINVAL) { /* a file system without RENAME_NOREPLACE */
            err = faccessat(set->dirfd, meta->name, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ? EEXIST : 0;
            if (!err && renameat(set->dirfd, tmp, set->dirfd, meta->name) != 0)
                err = errno;
        }
    }
    if (!err)
        err = lv_store_sync_dir(set->dirfd);
    if (err) {
        if (dfd >= 0)
            close(dfd);
        lv_store_remove_tree(set->dirfd, tmp);
        return err;
    }
    *dirfd = dfd;
    return 0;
}

/* Creates a stream on disk and in memory (unreferenced, not in the table).
 * Returns 0 or an errno. */
static int create_stream(lv_streams_t *set, const char *name, unsigned shards, const lv_stream_settings_t *st,
                         lv_stream_t **out)
{
    lv_stream_meta_t meta = {
        .created_ms = lv_store_wall_ms(),
        .shards = shards,
        .retention_ms = st->retention_ms,
        .durability = st->durability,
    };
    snprintf(meta.name, sizeof meta.name, "%s", name);
    do
        meta.id = lv_random64();
    while (meta.id == 0);
    int dfd = -1;
    int err = make_stream_dir(set, &meta, &dfd);
    if (err)
        return err;
    lv_stream_t *s = new_stream(set, &meta, dfd, st);
    for (unsigned i = 0; i < shards; i++)
        lv_stream_shard_gauges(&s->shards[i]);
    *out = s;
    return 0;
}

/* Moves a deleted stream's directory out of its name. */
static void rename_deleted(lv_streams_t *set, lv_stream_t *s)
{
    if (s->renamed)
        return;
    char gone[LV_STREAM_MAX_NAME + 64];
    side_name(s->name, "deleted", s->id, gone, sizeof gone);
    if (renameat(set->dirfd, s->name, set->dirfd, gone) != 0) {
        lv_log_error(MOD, "stream %s: cannot rename its directory to %s: %s", s->name, gone, strerror(errno));
        return;
    }
    s->renamed = true;
    int err = lv_store_sync_dir(set->dirfd);
    if (err)
        lv_log_warn(MOD, "fsync %s: %s", set->dir, strerror(err));
}

/* ======================================================================
 * The table of live streams (under set->lock)
 * ====================================================================== */

static int cmp_name(lv_slice_t a, const lv_stream_t *s)
{
    size_t n = a.len < s->name_len ? a.len : s->name_len;
    int c = n ? memcmp(a.ptr, s->name, n) : 0;
    if (c)
        return c;
    return a.len < s->name_len ? -1 : a.len > s->name_len;
}

/* Index of the first stream whose name is >= name. */
static size_t table_lower_bound(const lv_streams_t *set, lv_slice_t name)
{
    size_t lo = 0, hi = set->ntable;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_name(name, set->table[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static lv_stream_t *table_get(const lv_streams_t *set, lv_slice_t name)
{
    size_t i = table_lower_bound(set, name);
    return i < set->ntable && cmp_name(name, set->table[i]) == 0 ? set->table[i] : NULL;
}

/* Adds a new stream to the table (which takes a reference) and to `all`. */
static void table_insert(lv_streams_t *set, lv_stream_t *s)
{
    size_t i = table_lower_bound(set, lv_slice(s->name, s->name_len));
    if (set->ntable == set->table_cap) {
        set->table_cap = set->table_cap ? set->table_cap * 2 : 16;
        set->table = lv_realloc(set->table, set->table_cap * sizeof *set->table);
    }
    memmove(&set->table[i + 1], &set->table[i], (set->ntable - i) * sizeof *set->table);
    set->table[i] = s;
    set->ntable++;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    lv_list_push_back(&set->all, &s->link);
}

static void table_remove(lv_streams_t *set, size_t i)
{
    memmove(&set->table[i], &set->table[i + 1], (set->ntable - i - 1) * sizeof *set->table);
    set->ntable--;
}

/* The live streams whose names sort after `after` (all when it is empty),
 * each referenced; the caller unrefs them and frees the array. */
static lv_stream_t **snapshot(lv_streams_t *set, lv_slice_t after, size_t *n)
{
    pthread_mutex_lock(&set->lock);
    size_t from = 0;
    if (after.len) {
        from = table_lower_bound(set, after);
        if (from < set->ntable && cmp_name(after, set->table[from]) == 0)
            from++;
    }
    *n = set->ntable - from;
    lv_stream_t **v = lv_malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) {
        v[i] = set->table[from + i];
        atomic_fetch_add_explicit(&v[i]->refs, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&set->lock);
    return v;
}

static void release(lv_stream_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lv_stream_unref(v[i]);
    free(v);
}

/* ======================================================================
 * Retention
 * ====================================================================== */

/* Removes the stream's expired segments: a prefix of each shard's list,
 * never the last segment. Files go first, then the list entries, so that
 * once first_seq has moved the old files are gone; a reader that looked a
 * segment up in between finds no file and looks again. Only this thread
 * removes segments, so the prefix found stays a prefix. */
static void retain(lv_stream_t *s, uint64_t now_ms)
{
    if (now_ms <= (uint64_t)s->cfg.retention_ms)
        return;
    uint64_t cutoff = now_ms - (uint64_t)s->cfg.retention_ms;
    for (unsigned i = 0; i < s->nshards; i++) {
        lv_stream_shard_t *sh = &s->shards[i];
        uint64_t gone[64];
        size_t k = 0;
        pthread_mutex_lock(&sh->lock);
        while (k + 1 < sh->nsegs && k < 64) {
            const lv_stream_segment_t *seg = &sh->segs[k];
            bool empty = seg->next_seq == seg->first_seq;
            if (!empty && seg->last_arrival_ms >= cutoff)
                break;
            gone[k++] = seg->first_seq;
        }
        pthread_mutex_unlock(&sh->lock);
        if (!k)
            continue;
        size_t removed = 0;
        for (; removed < k; removed++) {
            char path[LV_STREAM_SEG_PATH_MAX];
            lv_stream_seg_path(i, gone[removed], path);
            if (unlinkat(s->dirfd, path, 0) != 0 && errno != ENOENT) {
                lv_log_warn(MOD, "stream %s: cannot remove %s: %s", s->name, path, strerror(errno));
                break;
            }
            lv_log_debug(MOD, "stream %s: removed %s (retention)", s->name, path);
        }
        if (!removed)
            continue;
        pthread_mutex_lock(&sh->lock);
        for (size_t j = 0; j < removed; j++)
            free(sh->segs[j].index);
        memmove(sh->segs, sh->segs + removed, (sh->nsegs - removed) * sizeof *sh->segs);
        sh->nsegs -= removed;
        lv_stream_shard_gauges(sh);
        pthread_mutex_unlock(&sh->lock);
        lv_counter_add(s->m_segments_removed, removed);
        char dir[LV_STORE_SHARD_NAME_MAX];
        lv_store_shard_name(i, dir);
        int dfd = openat(s->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            lv_store_sync_dir(dfd);
            close(dfd);
        }
    }
}

static void retention_sweep(lv_streams_t *set)
{
    size_t n;
    lv_stream_t **v = snapshot(set, lv_slice(NULL, 0), &n);
    uint64_t now = lv_store_wall_ms();
    for (size_t i = 0; i < n; i++)
        retain(v[i], now);
    release(v, n);
}

/* How long until the next sweep: a quarter of the shortest retention, at
 * most RETENTION_PERIOD_MS. Call with set->lock held. */
static uint64_t sweep_period_ms(const lv_streams_t *set)
{
    int64_t p = RETENTION_PERIOD_MS;
    for (size_t i = 0; i < set->ntable; i++) {
        int64_t q = set->table[i]->cfg.retention_ms / 4;
        if (q < 10)
            q = 10;
        if (q < p)
            p = q;
    }
    return (uint64_t)p;
}

/* ======================================================================
 * The keeper
 * ====================================================================== */

static void enqueue_job(lv_streams_t *set, lv_keeper_job_t *job)
{
    job->next = NULL;
    *set->jobs_tail = job;
    set->jobs_tail = &job->next;
    pthread_cond_signal(&set->keeper_wake);
}

static void deliver_created(lv_loop_t *loop, void *arg)
{
    lv_keeper_job_t *job = arg;
    job->created(job->arg, &job->res);
    if (job->res.stream)
        lv_stream_unref(job->res.stream);
    free(job);
}

static void run_create(lv_streams_t *set, lv_keeper_job_t *job)
{
    lv_slice_t name = lv_slice_cstr(job->name);
    pthread_mutex_lock(&set->lock);
    int err = set->stopping ? ESHUTDOWN : table_get(set, name) ? EEXIST : 0;
    pthread_mutex_unlock(&set->lock);
    lv_stream_t *s = NULL;
    if (!err) {
        lv_stream_settings_t st = settings_of(NULL, NULL);
        err = create_stream(set, job->name, job->shards, &st, &s);
        if (err)
            lv_log_warn(MOD, "cannot create stream %s: %s", job->name, strerror(err));
    }
    if (s) {
        pthread_mutex_lock(&set->lock);
        table_insert(set, s);
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); /* the callback's */
        bool started = set->started;
        pthread_mutex_unlock(&set->lock);
        if (started) {
            int e = lv_stream_committer_start(s);
            if (e)
                lv_log_error(MOD, "stream %s: cannot start its committer: %s", s->name, strerror(e));
        }
        lv_log_info(MOD, "stream %s created (%u shards)", s->name, s->nshards);
    }
    job->res = (lv_stream_created_t){.err = err, .stream = s};
    lv_loop_post(job->loop, deliver_created, job);
}

/* Frees a deleted stream whose last reference is gone, and its files. */
static void cleanup(lv_streams_t *set, lv_stream_t *s)
{
    lv_stream_committer_finish(s, true, true);
    lv_stream_drop_queued(s);
    if (!s->renamed)
        rename_deleted(set, s);
    if (s->renamed) {
        char gone[LV_STREAM_MAX_NAME + 64];
        side_name(s->name, "deleted", s->id, gone, sizeof gone);
        int err = lv_store_remove_tree(set->dirfd, gone);
        if (err)
            lv_log_warn(MOD, "stream %s: cannot remove %s/%s: %s (removed at the next start)", s->name, set->dir,
                        gone, strerror(err));
        lv_store_sync_dir(set->dirfd);
    }
    /* lv_streams_free may run after the registry is gone (it is the
     * caller's), so only a running set touches the metrics. */
    for (unsigned i = 0; i < s->nshards && !set->freeing; i++) {
        lv_stream_shard_t *sh = &s->shards[i];
        lv_gauge_add(sh->m_next_seq, -sh->gauge_next_seq);
        lv_gauge_add(sh->m_records, -sh->gauge_records);
    }
    lv_log_info(MOD, "stream %s deleted", s->name);
    pthread_mutex_lock(&set->lock);
    lv_list_remove(&s->link);
    pthread_mutex_unlock(&set->lock);
    free_stream(s);
}

/* Appends are refused from here on and every committer drains, syncs and
 * exits; then the readers finish what they hold; then done is posted. */
static void run_stop(lv_streams_t *set, lv_keeper_job_t *job)
{
    pthread_mutex_lock(&set->lock);
    size_t n = 0;
    for (lv_list_t *l = set->all.next; l != &set->all; l = l->next)
        n++;
    lv_stream_t **v = lv_malloc((n ? n : 1) * sizeof *v);
    n = 0;
    for (lv_list_t *l = set->all.next; l != &set->all; l = l->next)
        v[n++] = lv_list_entry(l, lv_stream_t, link);
    pthread_mutex_unlock(&set->lock);
    /* Only this thread frees streams, so the list cannot change under us. */
    for (size_t i = 0; i < n; i++)
        lv_stream_committer_finish(v[i], true, false);
    for (size_t i = 0; i < n; i++)
        lv_stream_committer_finish(v[i], true, true);
    free(v);
    lv_stream_readers_finish(set);
    if (job->stopped)
        lv_loop_post(job->loop, job->stopped, job->arg);
    pthread_mutex_lock(&set->lock);
    set->keeper_exit = true;
    pthread_mutex_unlock(&set->lock);
}

static void run_job(lv_streams_t *set, lv_keeper_job_t *job)
{
    switch (job->kind) {
    case JOB_CREATE:
        run_create(set, job);
        return; /* freed after its callback */
    case JOB_RENAME:
        rename_deleted(set, job->s);
        lv_stream_unref(job->s);
        break;
    case JOB_CLEANUP:
        cleanup(set, job->s);
        break;
    case JOB_STOP:
        run_stop(set, job);
        break;
    }
    free(job);
}

static void *keeper_main(void *arg)
{
    lv_streams_t *set = arg;
    pthread_setname_np(pthread_self(), "lv-stream-keep");
    pthread_mutex_lock(&set->lock);
    uint64_t next_sweep = lv_stream_now_ns() + sweep_period_ms(set) * 1000000u;
    for (;;) {
        lv_keeper_job_t *job = set->jobs;
        if (job) {
            set->jobs = job->next;
            if (!set->jobs)
                set->jobs_tail = &set->jobs;
            pthread_mutex_unlock(&set->lock);
            run_job(set, job);
            pthread_mutex_lock(&set->lock);
            continue;
        }
        if (set->keeper_exit)
            break;
        if (lv_stream_now_ns() >= next_sweep) {
            pthread_mutex_unlock(&set->lock);
            retention_sweep(set);
            pthread_mutex_lock(&set->lock);
            next_sweep = lv_stream_now_ns() + sweep_period_ms(set) * 1000000u;
            continue;
        }
        struct timespec ts = {.tv_sec = (time_t)(next_sweep / 1000000000u),
                              .tv_nsec = (long)(next_sweep % 1000000000u)};
        pthread_cond_timedwait(&set->keeper_wake, &set->lock, &ts);
    }
    pthread_mutex_unlock(&set->lock);
    return NULL;
}

/* ======================================================================
 * Opening, starting, stopping, freeing
 * ====================================================================== */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in DATA_DIR/streams, sorted. */
static int list_dir(int dirfd, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = lv_realloc(*names, cap * sizeof **names);
        }
        (*names)[(*n)++] = lv_strdup(de->d_name);
    }
    closedir(d);
    if (*n > 1)
        qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

/* Loads or removes whatever DATA_DIR/streams holds. Returns 0 or -1. */
static int load_all(lv_streams_t *set, lv_config_errors_t *errs)
{
    char **names;
    size_t n;
    int err = list_dir(set->dirfd, &names, &n);
    if (err) {
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "cannot list %s: %s", set->dir,
                        strerror(err));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        if (strcmp(name, LV_STORE_LOCK_FILE) == 0)
            continue;
        if (strstr(name, "~new-") || strstr(name, "~deleted-")) {
            err = lv_store_remove_tree(set->dirfd, name);
            if (err)
                lv_log_warn(MOD, "cannot remove %s/%s: %s", set->dir, name, strerror(err));
            else
                lv_log_info(MOD, "removed %s/%s (left by an interrupted create or delete)", set->dir, name);
            continue;
        }
        struct stat st;
        if (!lv_stream_name_ok(lv_slice_cstr(name)) || fstatat(set->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode)) {
            lv_log_warn(MOD, "%s: ignoring %s (not a stream directory)", set->dir, name);
            continue;
        }
        lv_stream_t *s = load_stream(set, name, errs);
        if (!s) {
            rc = -1;
            continue;
        }
        pthread_mutex_lock(&set->lock);
        table_insert(set, s);
        pthread_mutex_unlock(&set->lock);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Creates the config's streams that are not on disk. Returns 0 or -1. */
static int create_config_streams(lv_streams_t *set, lv_config_errors_t *errs)
{
    const lv_config_t *cfg = set->cfg;
    int rc = 0;
    for (size_t i = 0; i < cfg->num_streams; i++) {
        const lv_config_stream_t *c = &cfg->streams[i];
        if (!c->name || !lv_stream_name_ok(lv_slice_cstr(c->name))) {
            lv_config_error(errs, cfg_file(set), c->pos, "stream name '%s' is not valid", c->name ? c->name : "");
            rc = -1;
            continue;
        }
        if (table_get(set, lv_slice_cstr(c->name)))
            continue;
        unsigned shards = c->shards ? c->shards : 1;
        if (shards > LV_STREAM_MAX_SHARDS) {
            lv_config_error(errs, cfg_file(set), c->pos, "stream %s: shards must be 1..1024", c->name);
            rc = -1;
            continue;
        }
        lv_stream_settings_t st = settings_of(c, NULL);
        lv_stream_t *s;
        int err = create_stream(set, c->name, shards, &st, &s);
        if (err) {
            lv_config_error(errs, cfg_file(set), c->pos, "stream %s: cannot create it in %s: %s", c->name,
                            set->dir, strerror(err));
            rc = -1;
            continue;
        }
        lv_log_info(MOD, "stream %s created (%u shards)", c->name, shards);
        pthread_mutex_lock(&set->lock);
        table_insert(set, s);
        pthread_mutex_unlock(&set->lock);
    }
    return rc;
}

/* fsyncs data_dir and the directory holding it, so that a streams/
 * directory (or data_dir itself) created just now survives a crash along
 * with the first records written under it. */
static void sync_parents(const char *data_dir)
{
    char *parent = lv_strdup(data_dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *(slash == parent ? slash + 1 : slash) = '\0';
    const char *dirs[] = {data_dir, slash ? parent : "."};
    for (size_t i = 0; i < 2; i++) {
        int fd = open(dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            lv_store_sync_dir(fd);
            close(fd);
        }
    }
    free(parent);
}

lv_streams_t *lv_streams_open(const lv_config_t *cfg, lv_metrics_t *metrics, lv_config_errors_t *errs)
{
    lv_streams_t *set = lv_calloc(1, sizeof *set);
    set->cfg = cfg;
    set->dirfd = set->lockfd = -1;
    if (!metrics)
        metrics = set->own_metrics = lv_metrics_new(1);
    set->metrics = metrics;
    pthread_mutex_init(&set->lock, NULL);
    init_cond_monotonic(&set->keeper_wake);
    set->jobs_tail = &set->jobs;
    lv_list_init(&set->all);
    pthread_mutex_init(&set->rlock, NULL);
    pthread_cond_init(&set->rwake, NULL);
    set->rtail = &set->rhead;
    if (!cfg->data_dir) {
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "data_dir is not set");
        lv_streams_free(set);
        return NULL;
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "%s/streams", cfg->data_dir);
    set->dir = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    int err = lv_store_mkdirs(set->dir);
    if (!err && (set->dirfd = open(set->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        err = errno;
    if (!err)
        sync_parents(cfg->data_dir);
    if (err) {
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "cannot open %s: %s", set->dir,
                        strerror(err));
        lv_streams_free(set);
        return NULL;
    }
    set->lockfd = openat(set->dirfd, LV_STORE_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (set->lockfd < 0 || flock(set->lockfd, LOCK_EX | LOCK_NB) != 0) {
        lv_config_error(errs, cfg_file(set), (lv_config_pos_t){0, 0}, "%s is in use by another levee (%s)",
                        set->dir, strerror(errno));
        lv_streams_free(set);
        return NULL;
    }
    if (load_all(set, errs) != 0 || create_config_streams(set, errs) != 0) {
        lv_streams_free(set);
        return NULL;
    }
    retention_sweep(set);
    return set;
}

void lv_streams_start(lv_streams_t *streams)
{
    lv_streams_t *set = streams;
    pthread_mutex_lock(&set->lock);
    bool again = set->started;
    set->started = true;
    pthread_mutex_unlock(&set->lock);
    if (again)
        return;
    size_t n;
    lv_stream_t **v = snapshot(set, lv_slice(NULL, 0), &n);
    for (size_t i = 0; i < n; i++) {
        int err = lv_stream_committer_start(v[i]);
        if (err)
            lv_log_error(MOD, "stream %s: cannot start its committer: %s", v[i]->name, strerror(err));
    }
    release(v, n);
    int err = lv_stream_readers_start(set);
    if (err)
        lv_log_error(MOD, "cannot start the stream reader threads: %s", strerror(err));
    err = pthread_create(&set->keeper, NULL, keeper_main, set);
    if (err)
        lv_log_error(MOD, "cannot start the stream keeper thread: %s", strerror(err));
    else
        set->keeper_running = true;
}

void lv_streams_stop(lv_streams_t *streams, lv_loop_t *loop, lv_post_cb done, void *arg)
{
    lv_streams_t *set = streams;
    lv_keeper_job_t *job = lv_calloc(1, sizeof *job);
    *job = (lv_keeper_job_t){.kind = JOB_STOP, .set = set, .loop = loop, .stopped = done, .arg = arg};
    pthread_mutex_lock(&set->lock);
    set->stopping = true;
    bool keeper = set->keeper_running && !set->keeper_exit;
    if (keeper)
        enqueue_job(set, job);
    pthread_mutex_unlock(&set->lock);
    if (!keeper) {
        /* Never started (or already stopped): nothing runs to wait for. */
        if (done)
            lv_loop_post(loop, done, arg);
        free(job);
    }
}

void lv_streams_free(lv_streams_t *streams)
{
    lv_streams_t *set = streams;
    if (!set)
        return;
    pthread_mutex_lock(&set->lock);
    set->freeing = true;
    set->keeper_exit = true;
    pthread_cond_signal(&set->keeper_wake);
    pthread_mutex_unlock(&set->lock);
    if (set->keeper_running) {
        pthread_join(set->keeper, NULL);
        set->keeper_running = false;
    }
    lv_stream_readers_finish(set);
    lv_stream_readers_drop(set);
    /* Jobs nobody ran: a delete's disk work still happens (or the stream
     * would come back at the next start); callbacks cannot run any more. */
    while (set->jobs) {
        lv_keeper_job_t *job = set->jobs;
        set->jobs = job->next;
        if (job->kind == JOB_RENAME) {
            rename_deleted(set, job->s);
            atomic_fetch_sub_explicit(&job->s->refs, 1, memory_order_relaxed);
        } else if (job->kind == JOB_CLEANUP) {
            cleanup(set, job->s);
        }
        free(job);
    }
    set->jobs_tail = &set->jobs;
    while (!lv_list_empty(&set->all)) {
        lv_stream_t *s = lv_list_entry(set->all.next, lv_stream_t, link);
        lv_stream_committer_finish(s, true, true);
        lv_stream_drop_queued(s);
        if (atomic_load(&s->deleted)) {
            cleanup(set, s); /* removes it from the list */
            continue;
        }
        lv_list_remove(&s->link);
        free_stream(s);
    }
    free(set->table);
    if (set->lockfd >= 0)
        close(set->lockfd);
    if (set->dirfd >= 0)
        close(set->dirfd);
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->keeper_wake);
    pthread_mutex_destroy(&set->rlock);
    pthread_cond_destroy(&set->rwake);
    lv_metrics_free(set->own_metrics);
    free(set->dir);
    free(set);
}

/* ======================================================================
 * Finding, references, listing, create, delete
 * ====================================================================== */

lv_stream_t *lv_streams_find(lv_streams_t *streams, lv_slice_t name)
{
    pthread_mutex_lock(&streams->lock);
    lv_stream_t *s = table_get(streams, name);
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&streams->lock);
    return s;
}

void lv_stream_ref(lv_stream_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void lv_stream_unref(lv_stream_t *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    lv_streams_t *set = s->set;
    if (!atomic_load(&s->deleted)) {
        lv_log_error(MOD, "stream %s: a reference was dropped twice", s->name);
        return;
    }
    pthread_mutex_lock(&set->lock);
    if (!set->freeing) {
        lv_keeper_job_t *job = lv_calloc(1, sizeof *job);
        *job = (lv_keeper_job_t){.kind = JOB_CLEANUP, .set = set, .s = s};
        enqueue_job(set, job);
    }
    pthread_mutex_unlock(&set->lock);
}

void lv_streams_each(lv_streams_t *streams, lv_slice_t after, bool (*each)(void *arg, lv_slice_t name), void *arg)
{
    /* Names are read from a referenced snapshot, so each() may call back
     * into this module (find, create, delete) without deadlocking. */
    size_t n;
    lv_stream_t **v = snapshot(streams, after, &n);
    for (size_t i = 0; i < n; i++)
        if (!each(arg, lv_slice(v[i]->name, v[i]->name_len)))
            break;
    release(v, n);
}

void lv_streams_create(lv_streams_t *streams, lv_slice_t name, unsigned shards, lv_loop_t *caller,
                       lv_stream_created_cb done, void *arg)
{
    lv_streams_t *set = streams;
    lv_keeper_job_t *job = lv_calloc(1, sizeof *job);
    *job = (lv_keeper_job_t){.kind = JOB_CREATE, .set = set, .shards = shards, .loop = caller, .created = done,
                             .arg = arg};
    int err = 0;
    if (!lv_stream_name_ok(name) || shards < 1 || shards > LV_STREAM_MAX_SHARDS)
        err = EINVAL;
    else
        memcpy(job->name, name.ptr, name.len);
    if (!err) {
        pthread_mutex_lock(&set->lock);
        if (set->stopping || set->freeing)
            err = ESHUTDOWN;
        else if (table_get(set, name))
            err = EEXIST;
        else
            enqueue_job(set, job);
        pthread_mutex_unlock(&set->lock);
    }
    if (err) {
        job->res.err = err;
        lv_loop_post(caller, deliver_created, job);
    }
}

int lv_streams_delete(lv_streams_t *streams, lv_slice_t name)
{
    lv_streams_t *set = streams;
    pthread_mutex_lock(&set->lock);
    size_t i = table_lower_bound(set, name);
    if (i >= set->ntable || cmp_name(name, set->table[i]) != 0) {
        pthread_mutex_unlock(&set->lock);
        return ENOENT;
    }
    lv_stream_t *s = set->table[i];
    table_remove(set, i);
    pthread_mutex_lock(&s->qlock);
    atomic_store_explicit(&s->deleted, true, memory_order_release);
    s->committer_exit = true; /* it fails what is queued with ENOENT, then exits */
    pthread_cond_signal(&s->qwake);
    pthread_mutex_unlock(&s->qlock);
    lv_keeper_job_t *job = lv_calloc(1, sizeof *job);
    *job = (lv_keeper_job_t){.kind = JOB_RENAME, .set = set, .s = s}; /* takes over the table's reference */
    enqueue_job(set, job);
    pthread_mutex_unlock(&set->lock);
    return 0;
}

/* ======================================================================
 * Facts
 * ====================================================================== */

lv_stream_info_t lv_stream_info(const lv_stream_t *s)
{
    return (lv_stream_info_t){
        .name = lv_slice(s->name, s->name_len),
        .id = s->id,
        .created_ms = s->created_ms,
        .shards = s->nshards,
        .retention_ms = s->cfg.retention_ms,
        .durability = s->cfg.durability,
    };
}

/* The width of each shard's hash range but the last: floor(2^128 / n),
 * for n >= 2 (2^128 itself does not fit). */
static unsigned __int128 range_width(unsigned n)
{
    const unsigned __int128 max = ~(unsigned __int128)0;
    unsigned __int128 q = max / n, r = max % n;
    return r == n - 1 ? q + 1 : q;
}

lv_shard_info_t lv_stream_shard_info(const lv_stream_t *s, unsigned shard)
{
    lv_shard_info_t info = {0};
    if (shard >= s->nshards)
        return info;
    const unsigned __int128 max = ~(unsigned __int128)0;
    if (s->nshards == 1) {
        info.hash_start = 0;
        info.hash_end = max;
    } else {
        unsigned __int128 w = range_width(s->nshards);
        info.hash_start = w * shard;
        info.hash_end = shard + 1 == s->nshards ? max : w * (shard + 1) - 1;
    }
    lv_stream_shard_t *sh = (lv_stream_shard_t *)&s->shards[shard];
    pthread_mutex_lock(&sh->lock);
    info.first_seq = sh->nsegs ? sh->segs[0].first_seq : sh->next_seq;
    info.next_seq = sh->next_seq;
    info.last_arrival_ms = sh->last_arrival_ms;
    pthread_mutex_unlock(&sh->lock);
    return info;
}

unsigned __int128 lv_stream_hash_key(lv_slice_t partition_key)
{
    uint8_t md[16];
    static const char empty[1];
    lv_md5(partition_key.len ? partition_key.ptr : empty, partition_key.len, md);
    unsigned __int128 v = 0;
    for (unsigned i = 0; i < 16; i++)
        v = v << 8 | md[i];
    return v;
}

unsigned lv_stream_shard_for(const lv_stream_t *s, unsigned __int128 hash)
{
    if (s->nshards <= 1)
        return 0;
    unsigned __int128 i = hash / range_width(s->nshards);
    return i >= s->nshards ? s->nshards - 1 : (unsigned)i;
}
