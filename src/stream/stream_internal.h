/* stream_internal.h (private to stream.c, commit.c and read.c): the
 * structures behind lv_streams_t and lv_stream_t, and who may touch what.
 *
 * Threads of one lv_streams_t:
 *   - one committer per stream (commit.c): takes appends, writes, syncs,
 *     acknowledges. It alone writes segment files and rolls segments.
 *   - the keeper (stream.c): creates and deletes streams on disk, removes
 *     old segments (retention), runs the shutdown sequence.
 *   - LV_STREAM_READERS reader threads (read.c): serve lv_stream_read.
 * Loop threads only queue work and receive callbacks.
 *
 * A shard's segment list and acknowledged state are shared: the committer
 * appends to them, the keeper removes old segments from the front, readers
 * look positions up. All of that is under the shard's lock, held only for
 * in-memory work; files are read with their own descriptors (readers open
 * a segment by name, and retry the lookup if retention removed it in
 * between), so no descriptor is ever closed under a reader. */
#ifndef LV_STREAM_STREAM_INTERNAL_H
#define LV_STREAM_STREAM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/list.h"
#include "stream/stream.h"

#define LV_STREAM_MOD "stream"
#define LV_STREAM_READERS 2u
/* An index entry every this many bytes of a segment (and one for its
 * first record). */
#define LV_STREAM_INDEX_SPACING 4096u
#define LV_STREAM_MAX_PUT 500u
#define LV_STREAM_MAX_READ 10000u

/* Sparse index entry: the record with this seq starts at off. */
typedef struct {
    uint64_t seq;
    uint64_t off;
    uint64_t arrival_ms;
} lv_stream_index_entry_t;

/* One segment file as readers see it: only acknowledged records count. */
typedef struct {
    uint64_t first_seq;       /* its name */
    uint64_t next_seq;        /* seq after its last acknowledged record */
    uint64_t size;            /* bytes of acknowledged records */
    uint64_t last_arrival_ms; /* of its newest acknowledged record; 0 when empty */
    lv_stream_index_entry_t *index; /* ascending seq (and arrival) */
    size_t nindex, index_cap;
} lv_stream_segment_t;

typedef struct {
    /* Shared, under lock. */
    pthread_mutex_t lock;
    lv_stream_segment_t *segs; /* ascending; the last is the one written to */
    size_t nsegs, segs_cap;
    uint64_t next_seq;         /* acknowledged: every seq below it is readable */
    uint64_t last_arrival_ms;
    int64_t gauge_next_seq, gauge_records; /* values last added to the gauges */

    /* The committer's (the opening thread's before start). */
    int fd;                    /* the last segment, read-write; -1 when there is none */
    uint64_t w_next_seq;       /* next seq to assign */
    uint64_t w_last_arrival_ms;
    uint64_t w_size;           /* bytes written to the last segment */
    uint64_t w_last_index_off; /* offset of its newest index entry */
    bool w_indexed;            /* the last segment has an index entry */
    bool dirty;                /* durability batch: written since its last sync */
    bool broken;               /* a failed write could not be cut back: EIO until restart */
    /* The batch being committed. */
    bool touched;
    lv_buf_t batch;
    uint64_t b_start_size, b_next_seq, b_last_arrival_ms, b_last_index_off;
    bool b_indexed;
    lv_stream_index_entry_t *b_index;
    size_t b_nindex, b_index_cap;

    lv_gauge_t *m_next_seq, *m_records;
} lv_stream_shard_t;

/* One queued lv_stream_append, in one allocation: the struct, results[n],
 * recs[n], then the keys and data. Built by the appending thread, owned by
 * the committer once queued, freed by the loop that runs done (or by the
 * committer when done is NULL). */
typedef struct {
    unsigned shard;
    uint32_t key_len;
    uint32_t data_len;
    size_t at;                 /* key bytes at bytes + at, data right after */
} lv_stream_append_rec_t;

typedef struct lv_stream_append_op {
    struct lv_stream_append_op *next;
    lv_stream_t *s;
    lv_loop_t *caller;
    lv_stream_appended_cb done;
    void *arg;
    size_t n;
    uint64_t bytes;            /* encoded size: what pending_bytes counts */
    lv_stream_put_result_t *results;
    lv_stream_append_rec_t *recs;
    char *data;
} lv_stream_append_op_t;

/* Per-stream settings (config, or the defaults for API streams). */
typedef struct {
    int64_t retention_ms;
    lv_durability_t durability;
    int64_t sync_interval_ms;
    uint64_t segment_bytes;
    uint64_t max_pending_bytes;
} lv_stream_settings_t;

enum { LV_STREAM_NUM_ERRNOS = 8 };

struct lv_stream {
    lv_streams_t *set;
    lv_list_t link;            /* set->all, under set->lock */
    char *name;
    size_t name_len;
    uint64_t id, created_ms;
    unsigned nshards;
    lv_stream_settings_t cfg;
    int dirfd;                 /* its directory; follows the rename of a delete */
    lv_stream_shard_t *shards;
    _Atomic unsigned refs;     /* the table holds one while the stream is live */
    _Atomic bool deleted;
    bool renamed;              /* keeper: the directory is now NAME~deleted-ID */

    /* Appends, under qlock. */
    pthread_mutex_t qlock;
    pthread_cond_t qwake;      /* CLOCK_MONOTONIC */
    lv_stream_append_op_t *qhead, **qtail;
    bool closing;              /* stop: appends fail with ESHUTDOWN */
    bool committer_exit;       /* drain the queue, sync, and exit */
    _Atomic uint64_t pending_bytes;
    pthread_t committer;
    bool committer_running;    /* the thread that started it joins it */

    /* The committer's. */
    uint64_t dirty_since_ns;   /* durability batch: first unsynced write; 0 if none */
    uint64_t dirty_records;    /* records written since the last sync */
    lv_stream_shard_t **touched;
    size_t ntouched;

    lv_counter_t *m_appends, *m_bytes, *m_syncs, *m_segments_removed;
    lv_counter_t *m_errors[LV_STREAM_NUM_ERRNOS];
    lv_histogram_t *m_sync_seconds, *m_records_per_sync;
    lv_gauge_t *m_pending;
};

struct lv_read_job;
struct lv_keeper_job;

struct lv_streams {
    const lv_config_t *cfg;
    lv_metrics_t *metrics, *own_metrics;
    char *dir;                 /* DATA_DIR/streams */
    int dirfd, lockfd;

    pthread_mutex_t lock;      /* everything down to the keeper's fields */
    lv_stream_t **table;       /* live streams, sorted by name */
    size_t ntable, table_cap;
    lv_list_t all;             /* every stream not yet freed, live or deleted */
    bool started, stopping, freeing;
    pthread_cond_t keeper_wake; /* CLOCK_MONOTONIC */
    struct lv_keeper_job *jobs, **jobs_tail;
    bool keeper_exit;
    pthread_t keeper;
    bool keeper_running;

    pthread_mutex_t rlock;     /* the readers' queue */
    pthread_cond_t rwake;
    struct lv_read_job *rhead, **rtail;
    bool readers_exit;
    pthread_t readers[LV_STREAM_READERS];
    bool readers_running;
};

/* ---- stream.c ---- */

/* Adds an index entry at the end of seg's index. */
void lv_stream_index_push(lv_stream_segment_t *seg, uint64_t seq, uint64_t off, uint64_t arrival_ms);

/* Brings the shard's next_seq and records gauges up to date. Call with
 * sh->lock held. */
void lv_stream_shard_gauges(lv_stream_shard_t *sh);

/* Counts n failed records under their errno's name. */
void lv_stream_count_errors(lv_stream_t *s, int err, uint64_t n);

/* "SHARD/FIRSTSEQ.seg", relative to the stream's directory. */
#define LV_STREAM_SEG_PATH_MAX 64
void lv_stream_seg_path(unsigned shard, uint64_t first_seq, char out[LV_STREAM_SEG_PATH_MAX]);

/* Monotonic clock, ns. */
uint64_t lv_stream_now_ns(void);

/* ---- commit.c ---- */

/* Starts the stream's committer. Returns 0 or an errno. */
int lv_stream_committer_start(lv_stream_t *s);

/* Makes the committer drain its queue, sync and exit; closing also makes
 * new appends fail with ESHUTDOWN. join waits for the thread. */
void lv_stream_committer_finish(lv_stream_t *s, bool closing, bool join);

/* Frees appends never taken by a committer (no callback can run any more). */
void lv_stream_drop_queued(lv_stream_t *s);

/* ---- read.c ---- */

/* Starts the reader threads. Returns 0 or an errno. */
int lv_stream_readers_start(lv_streams_t *set);

/* Lets the readers finish every queued read (posting results), then joins
 * them; later reads fail with ESHUTDOWN. */
void lv_stream_readers_finish(lv_streams_t *set);

/* Frees reads never taken by a reader, without callbacks. */
void lv_stream_readers_drop(lv_streams_t *set);

#endif
