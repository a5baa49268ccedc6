/* stream.h: durable, sharded, append-only event streams (the log behind the
 * Kinesis API, route capture and stream consumers).
 *
 * A stream has a fixed number of shards. Each shard is its own log: a
 * directory of segment files under DATA_DIR/streams/STREAM/SHARD/, named by
 * the first sequence number they hold, written only at the end. A record in
 * a segment is framed with its length and a CRC32C and holds the sequence
 * number, the arrival time (Unix ms), the partition key and the data. A
 * sparse index (one entry every few KiB, kept in memory and rebuilt from the
 * segment on start) finds the record at or after a sequence number or an
 * arrival time without reading the shard from the start.
 *
 * Sequence numbers are per shard, start at 1 and increase by one per record,
 * with no gaps, for the life of the stream (a restart continues where it
 * stopped). Arrival times never decrease within a shard (a record that
 * arrives with the clock stepped back takes its predecessor's time).
 *
 * Durability: appends are taken by one committer thread per stream. It
 * writes every append that arrived while the previous write and sync ran in
 * one batch (one write per shard touched, one fdatasync per file), then
 * acknowledges them all: with `durability: fsync` an append is acknowledged
 * only after the fdatasync that covers it; with `durability: batch` after
 * its write, and syncs run every sync_interval. Disk work (writes, syncs,
 * reads, segment deletion) never runs on an event loop.
 *
 * Recovery: on open, the last segment of each shard is scanned; a torn or
 * corrupt tail (a record that runs past the end of the file or fails its
 * CRC) is cut, and everything before it, which includes every acknowledged
 * record, is kept. Damage anywhere else is reported (see check.h) and the
 * stream is refused rather than served half-read.
 *
 * Retention: segments whose newest record is older than the retention are
 * deleted (never the segment being written); reads before the oldest kept
 * record start at it.
 *
 * Threads: every function here may be called from any loop thread unless
 * it says otherwise. Callbacks are posted to the loop given as `caller`
 * and run there, never inside the call that started them.
 *
 * Lifetimes: lv_streams_t borrows the config. A stream found by
 * lv_streams_find is referenced: it stays valid (even if deleted through
 * the API meanwhile, in which case reads and appends fail with ENOENT) until
 * lv_stream_unref. Result structures passed to callbacks are valid only
 * during the callback. */
#ifndef LV_STREAM_STREAM_H
#define LV_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/loop.h"
#include "core/slice.h"
#include "metrics/metrics.h"

typedef struct lv_streams lv_streams_t;
typedef struct lv_stream lv_stream_t;

/* Kinesis limits, which levee keeps. */
#define LV_STREAM_MAX_NAME 128u
#define LV_STREAM_MAX_KEY 256u             /* partition key, bytes (Kinesis: 256 characters) */
#define LV_STREAM_MAX_DATA (1024u * 1024u) /* data + partition key of one record */
#define LV_STREAM_MAX_SHARDS 1024u

/* ---- the set of streams -------------------------------------------------- */

/* Opens DATA_DIR/streams/ (creating it), recovers every stream found there
 * (those created through the API earlier and those from the config), and
 * creates the config's streams that do not exist yet. A config stream whose
 * shard count differs from the one on disk keeps the disk's (logged). The
 * directory is locked (flock) so a second levee on the same data_dir is
 * refused. Returns NULL with messages in errs on an I/O error or damage
 * that recovery must not cut. Registers the stream metrics. Call before the
 * loops start. */
lv_streams_t *lv_streams_open(const lv_config_t *cfg, lv_metrics_t *metrics, lv_config_errors_t *errs);

/* Starts the committer threads. Once, from any thread, before any append. */
void lv_streams_start(lv_streams_t *streams);

/* Stops taking appends (they fail with ESHUTDOWN), writes and syncs what
 * was accepted, acknowledges it, stops the threads, then posts done to
 * loop. Reads in flight complete first. */
void lv_streams_stop(lv_streams_t *streams, lv_loop_t *loop, lv_post_cb done, void *arg);

/* Frees everything; lv_streams_stop must have completed (or start never
 * been called). It does not touch the metrics registry, which may be freed
 * before or after. */
void lv_streams_free(lv_streams_t *streams);

/* The stream named name, referenced, or NULL (not found, or deleted). */
lv_stream_t *lv_streams_find(lv_streams_t *streams, lv_slice_t name);

/* Adds and drops a reference. */
void lv_stream_ref(lv_stream_t *s);
void lv_stream_unref(lv_stream_t *s);

/* Names of every live stream, sorted (bytes), for ListStreams: calls each
 * with every name after `after` (all when after is empty) until it returns
 * false. */
void lv_streams_each(lv_streams_t *streams, lv_slice_t after, bool (*each)(void *arg, lv_slice_t name),
                     void *arg);

typedef struct {
    int err;                 /* 0; EEXIST (name taken), ENOSPC, EIO, ... */
    lv_stream_t *stream;     /* referenced for the callback's duration (NULL on error) */
} lv_stream_created_t;
typedef void (*lv_stream_created_cb)(void *arg, const lv_stream_created_t *res);

/* Creates a stream (CreateStream): its directory and a metadata file,
 * fsynced, on the committer side; done runs on caller. shards 1..1024.
 * Retention, durability and sizes are the config's defaults. */
void lv_streams_create(lv_streams_t *streams, lv_slice_t name, unsigned shards, lv_loop_t *caller,
                       lv_stream_created_cb done, void *arg);

/* Deletes a stream (DeleteStream): it disappears from find and each at
 * once; pending appends fail with ENOENT; its files are removed once the
 * last reference is dropped. A config stream can be deleted too (it is
 * created again, empty, at the next start). Returns 0 or ENOENT. */
int lv_streams_delete(lv_streams_t *streams, lv_slice_t name);

/* ---- one stream ---------------------------------------------------------- */

typedef struct {
    lv_slice_t name;
    uint64_t id;             /* random, fixed at creation: tells a re-created stream of the same
                                name from the old one (shard iterators carry it) */
    uint64_t created_ms;     /* Unix ms */
    unsigned shards;
    int64_t retention_ms;
    lv_durability_t durability;
} lv_stream_info_t;

/* The stream's fixed facts. The name's bytes live as long as the stream. */
lv_stream_info_t lv_stream_info(const lv_stream_t *s);

typedef struct {
    unsigned __int128 hash_start;  /* the shard's range of 128-bit hash keys, inclusive */
    unsigned __int128 hash_end;
    uint64_t first_seq;      /* oldest record kept; == next_seq when the shard is empty */
    uint64_t next_seq;       /* one past the newest acknowledged record: the number the next record
                                appended will get when no append is in flight */
    uint64_t last_arrival_ms; /* arrival time of the newest record, 0 if none */
} lv_shard_info_t;

/* A shard's current state (a snapshot). shard < info.shards. */
lv_shard_info_t lv_stream_shard_info(const lv_stream_t *s, unsigned shard);

/* The 128-bit hash key of a partition key: MD5 of its bytes, as a big-endian
 * number (Kinesis). */
unsigned __int128 lv_stream_hash_key(lv_slice_t partition_key);

/* The shard whose hash range holds hash: the ranges split [0, 2^128) evenly,
 * shard i from i * floor(2^128 / n), the last one up to 2^128 - 1. */
unsigned lv_stream_shard_for(const lv_stream_t *s, unsigned __int128 hash);

/* ---- appending ----------------------------------------------------------- */

typedef struct {
    unsigned shard;          /* from lv_stream_shard_for */
    lv_slice_t partition_key; /* 1..LV_STREAM_MAX_KEY bytes */
    lv_slice_t data;         /* key + data <= LV_STREAM_MAX_DATA */
} lv_stream_put_t;

typedef struct {
    int err;                 /* 0; ENOENT (deleted), ESHUTDOWN, ENOSPC, EIO, EAGAIN (pending full) */
    uint64_t seq;            /* when err == 0 */
    uint64_t arrival_ms;
} lv_stream_put_result_t;

/* results[i] is for recs[i]; all n are durable (or all failed) together. */
typedef void (*lv_stream_appended_cb)(void *arg, const lv_stream_put_result_t *results, size_t n);

/* Appends n records (1..500) as one unit. The records are copied before
 * this returns. done (may be NULL: capture does not wait) runs on caller
 * once every record is acknowledged per the stream's durability, or has
 * failed. Returns 0, or fails at once without calling done: EINVAL (bad
 * shard, key or size), EAGAIN (the stream's max_pending_bytes would be
 * passed; nothing is taken), ENOENT (deleted), ESHUTDOWN. Records of one
 * call to one shard get consecutive sequence numbers in order. */
int lv_stream_append(lv_stream_t *s, const lv_stream_put_t *recs, size_t n, lv_loop_t *caller,
                     lv_stream_appended_cb done, void *arg);

/* Bytes accepted and not yet acknowledged (for capture's buffer depth). */
uint64_t lv_stream_pending_bytes(const lv_stream_t *s);

/* ---- reading ------------------------------------------------------------- */

typedef struct {
    uint64_t seq;
    uint64_t arrival_ms;
    lv_slice_t partition_key;
    lv_slice_t data;
} lv_stream_record_t;

typedef struct {
    int err;                 /* 0; ENOENT (deleted), EIO, EINVAL (no such shard), ESHUTDOWN (after stop) */
    const lv_stream_record_t *records;
    size_t n;
    uint64_t next_seq;       /* where the next read continues: after the last record returned, or
                                where this one started (clamped to first_seq) when none */
    uint64_t shard_next_seq; /* the shard's next_seq when read (for "behind latest") */
    uint64_t last_arrival_ms; /* the shard's newest arrival time when read, 0 if empty */
} lv_stream_read_t;

typedef void (*lv_stream_read_cb)(void *arg, const lv_stream_read_t *res);

typedef enum {
    LV_READ_AT_SEQ,          /* records with seq >= from (from < first_seq starts at first_seq) */
    LV_READ_AT_TIME,         /* records that arrived at or after from (Unix ms) */
} lv_read_from_t;

/* Reads up to max_records records (clamped to 1..10000) and about max_bytes of data
 * (at least one record whatever its size) from one shard, on a reader
 * thread; done runs on caller. Only acknowledged records are returned. */
void lv_stream_read(lv_stream_t *s, unsigned shard, lv_read_from_t kind, uint64_t from, size_t max_records,
                    size_t max_bytes, lv_loop_t *caller, lv_stream_read_cb done, void *arg);

#endif
