/* event_queue.h: durable queues of asynchronous (Event) invocations.
 *
 * Each function has a queue stored under DATA_DIR/functions/NAME/: an
 * append-only journal of records, each framed with its length and a CRC32C,
 * saying "event E accepted (payload)", "event E attempt N failed, next try
 * at T" or "event E finished (succeeded or dead-lettered)". An Event
 * invocation is acknowledged (the 202) only after the fdatasync that covers
 * its record; appends that arrive while a sync runs are batched into the
 * next one. Disk work runs on a writer thread, never on a loop.
 *
 * The queue runs its events through lv_fn_invoke (from the home loop). On a
 * function error, crash or timeout it retries after `async.backoff`, then
 * twice that, up to `async.retries` extra attempts; a throttle or shutdown
 * does not count as an attempt and is retried after a short delay. An event
 * whose attempts are spent is appended to the function's dead-letter file
 * (`async.on_failure`, one JSON line per event, fsynced): {"version":"1.0",
 * "timestamp", "requestContext":{"requestId","functionArn","condition":
 * "RetriesExhausted","approximateInvokeCount"},"requestPayload",
 * "responseContext":{"statusCode":200,"executedVersion":"$LATEST",
 * "functionError":"Unhandled"},"responsePayload"}, as Lambda writes an
 * on-failure invocation record.
 *
 * Recovery: on start the journal is read back; a torn or corrupt tail is cut
 * (every acknowledged record is before it), and events not finished are run
 * again (at-least-once, as Lambda). When every event in the journal has
 * finished, the journal is compacted (rewritten empty).
 *
 * Ownership: lv_event_queues_t borrows the config and the pools. */
#ifndef LV_FUNCTIONS_EVENT_QUEUE_H
#define LV_FUNCTIONS_EVENT_QUEUE_H

#include <stdint.h>

#include "core/config.h"
#include "core/loop.h"
#include "core/slice.h"
#include "functions/pool.h"
#include "metrics/metrics.h"

typedef struct lv_event_queues lv_event_queues_t;

/* Opens (creating directories as needed) and recovers the queue of every
 * function: DATA_DIR/functions/NAME/events.journal, locked (flock) so a
 * second levee on the same data_dir is refused. A torn or corrupt tail is
 * cut (logged with the bytes cut); a journal with nothing pending is
 * emptied. Returns NULL with messages in errs if a directory cannot be
 * created or a journal cannot be opened, locked or read. fns may be NULL
 * (tests of recovery alone): events are then recovered and kept, never run,
 * and no event can be enqueued. */
lv_event_queues_t *lv_event_queues_open(const lv_config_t *cfg, lv_functions_t *fns, lv_metrics_t *metrics,
                                        lv_config_errors_t *errs);

/* On the home loop's thread: starts the writer thread and runs recovered
 * events (those whose retry time has not come wait for it).
 *
 * Dispatch: events run through lv_fn_invoke on the home loop, at most
 * ceil(concurrency.max / 2) (at least 1) of one function at a time, so a
 * backlog of events always leaves workers to synchronous callers (with
 * max 1 the one worker is shared). A throttled or shutdown result retries
 * the event after 1 s without counting an attempt. */
void lv_event_queues_start(lv_event_queues_t *qs, lv_loop_t *home);

/* On the home loop's thread: stops taking events (enqueues fail with
 * ESHUTDOWN) and dispatching them, waits for the writer to finish what it
 * holds, then calls done(home, arg). Events not finished stay in the
 * journal for the next start.
 *
 * Invocations in flight are not waited for (one may run for minutes): their
 * results, which lv_functions_stop makes come, are still recorded, on the
 * writer alone, until lv_event_queues_free. So the order is: this stop,
 * then lv_functions_stop, then (with no result callback left to come)
 * lv_event_queues_free. */
void lv_event_queues_stop(lv_event_queues_t *qs, lv_post_cb done, void *arg);

/* Waits for the writer to finish and frees everything. After
 * lv_event_queues_stop has completed, or if lv_event_queues_start was never
 * called; any enqueue callback not yet run then never runs. */
void lv_event_queues_free(lv_event_queues_t *qs);

/* Result of an enqueue: 0 when the event is on disk (fdatasync done), else
 * an errno: ENOSPC, EIO, EFBIG... from the disk (nothing of the event stays
 * in the journal), ESHUTDOWN after stop, ENOENT for a function without a
 * queue, EMSGSIZE for a payload over 1 MiB, ENOBUFS when the function
 * already holds 256 MiB of pending payloads in memory. request_id is the
 * event's (the id the function will see), valid during the call. Runs on
 * the caller's loop. */
typedef void (*lv_event_enqueued_cb)(void *arg, int err, lv_slice_t request_id);

/* Appends an Event invocation for fn (payload copied). done runs on
 * `caller` once the record is durable (or failed), never inside this call.
 * Appends that arrive while the writer syncs share its next fdatasync
 * (group commit). Any loop thread. */
void lv_event_enqueue(lv_event_queues_t *qs, lv_fn_t *fn, lv_loop_t *caller, lv_slice_t payload,
                      lv_event_enqueued_cb done, void *arg);

/* Per-function figures for /status and tests. */
typedef struct {
    uint64_t pending;       /* accepted, not finished */
    uint64_t accepted, succeeded, retried, dead_lettered;
} lv_event_queue_stats_t;

void lv_event_queue_stats(const lv_event_queues_t *qs, const lv_fn_t *fn, lv_event_queue_stats_t *out);

#endif
