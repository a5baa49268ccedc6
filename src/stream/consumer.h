/* consumer.h: stream consumers, which feed a stream's records to a function
 * (`consumers:` in the config), in order per shard, at least once, as a
 * Lambda event source mapping for Kinesis does.
 *
 * Each consumer reads every shard of its stream on its own: per shard one
 * batch at a time, so a shard's records reach the function in order and a
 * batch runs only after the one before it succeeded (or was given up on).
 * A batch is up to batch_size records, and no bigger than an event Lambda
 * would take (6 MiB); with batching_window > 0 it waits until it is full or
 * the window since its first record's arrival has passed. The function gets
 * the Kinesis event Lambda sends ({"Records":[{"kinesis":{...}, "eventID",
 * "eventSourceARN", ...}]}).
 *
 * Position: after a batch succeeds, the sequence number after its last
 * record is written to the shard's checkpoint file,
 * DATA_DIR/consumers/NAME/shardId-NNNNNNNNNNNN.checkpoint (temp file,
 * fsync, rename, fsync of the directory, on a writer thread). A shard with
 * no checkpoint starts at starting_position: TRIM_HORIZON at the oldest
 * record kept, LATEST after the newest record when the consumer first
 * opens (written at once, so records appended before the first batch are
 * not skipped after a restart), AT_TIMESTAMP at the first record that
 * arrived at or after starting_timestamp.
 *
 * Failures: a batch whose invocation fails (error, crash, timeout, response
 * too large) runs again after retry_backoff, doubled each time up to a
 * minute, until it succeeds or max_retries retries are spent; then it is
 * appended, with the error, as one JSON line to the on_failure file
 * (fsynced) and the checkpoint moves past it. With max_retries -1 it is
 * retried until its records expire from the stream (retention), and the
 * expired records are skipped with a log line. A throttled invocation is
 * retried after its Retry-After without counting.
 *
 * At least once: a batch may run more than once (a crash after the
 * function succeeded and before the checkpoint was on disk, or a stop while
 * a retry was waiting); a clean stop never makes a successful batch run
 * again.
 *
 * Threads: open and free on any thread while no loop runs consumer work;
 * start, stop and every consumer callback on the home loop (loop 0, the
 * function pools' home); disk work on the consumers' writer thread.
 *
 * Lifetimes: lv_consumers_t borrows the config, the streams, the functions
 * and the metrics registry: all must outlive it (free the consumers before
 * any of them). It holds a reference on each consumer's stream until free. */
#ifndef LV_STREAM_CONSUMER_H
#define LV_STREAM_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/loop.h"
#include "functions/pool.h"
#include "metrics/metrics.h"
#include "stream/stream.h"

typedef struct lv_consumers lv_consumers_t;

/* Sets up every consumer of cfg: finds its stream and function, creates
 * DATA_DIR/consumers/NAME/, reads each shard's checkpoint, writes the LATEST
 * checkpoints of shards that have none, and registers the metrics. A
 * checkpoint that cannot be read or fails its check, one for another
 * stream, or one past the end of its shard is an error in errs (at the
 * consumer's config position), never a silent restart; then NULL is
 * returned. A checkpoint of an earlier stream of the same name (deleted and
 * created again) is logged and the shard starts at starting_position.
 * Call after lv_streams_open and lv_functions_new, before the loops run
 * consumer work. */
lv_consumers_t *lv_consumers_open(const lv_config_t *cfg, lv_streams_t *streams, lv_functions_t *fns,
                                  lv_metrics_t *metrics, lv_config_errors_t *errs);

/* On the home loop's thread: starts the writer thread and every shard's
 * reading. Needs the streams and the function pools started. Once. */
void lv_consumers_start(lv_consumers_t *cs, lv_loop_t *home);

/* On the home loop's thread: no new batch or retry starts; invocations and
 * stream reads in flight are waited for, the checkpoints of batches that
 * succeeded (and dead-letter lines of those given up on) are written, and
 * then done(home, arg) runs on the home loop, never inside this call. A
 * batch that was waiting for a retry or a batching window is not run; it
 * runs after the next start. Call it before lv_functions_stop (or the
 * invocations in flight fail with LV_FN_SHUTDOWN and run again after a
 * restart) and before lv_streams_stop. Also valid when start was never
 * called (done is then posted to the calling thread's loop, or called at
 * once when there is none). */
void lv_consumers_stop(lv_consumers_t *cs, lv_post_cb done, void *arg);

/* Frees everything (NULL is fine). lv_consumers_stop must have completed,
 * or start never been called. The metrics stay registered and read as 0. */
void lv_consumers_free(lv_consumers_t *cs);

/* A snapshot of one consumer's shard, for /status and tests. Any thread;
 * values may be a moment old. */
typedef struct {
    uint64_t next_seq;            /* the next record to process (0 while an AT_TIMESTAMP start
                                     has not found its first record) */
    uint64_t lag_records;         /* shard next_seq - next_seq */
    uint64_t lag_ms;              /* newest arrival - arrival of the last record processed; 0 when
                                     caught up */
    uint64_t batches_ok, batches_failed, batches_dead_lettered;
    uint64_t records_ok, records_dead_lettered, records_expired;
} lv_consumer_stats_t;

/* Number of consumers (config order) and their names. */
size_t lv_consumers_count(const lv_consumers_t *cs);
const char *lv_consumers_name(const lv_consumers_t *cs, size_t i);

/* Stats of consumer i's shard. Returns 0, or -1 if there is no such
 * consumer or shard. */
int lv_consumers_stats(const lv_consumers_t *cs, size_t i, unsigned shard, lv_consumer_stats_t *out);

#endif
