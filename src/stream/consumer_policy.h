/* consumer_policy.h: the decisions a stream consumer makes about a batch
 * (private to src/stream/consumer*.c and their tests): when a batch that is
 * still filling goes out, and what follows an invocation's result.
 *
 * Pure functions of their arguments (the clock is passed in), so every
 * branch is tested without a loop, a stream or a function. */
#ifndef LV_STREAM_CONSUMER_POLICY_H
#define LV_STREAM_CONSUMER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "functions/pool.h"

/* How often a caught-up shard is looked at again for new records. */
#define LV_CONSUMER_POLL_MS 100u
/* Retry backoff doubles up to this (or stays at retry_backoff if that is
 * already longer). */
#define LV_CONSUMER_MAX_BACKOFF_MS 60000u
/* Wait before trying again when the pool is stopping. */
#define LV_CONSUMER_REQUEUE_MS 1000u

/* How long to wait before a batch of n records goes out, in ms: 0 means
 * now. It goes now when it holds batch_size records, when `full` (the next
 * record would make the event too big), when there is no batching window,
 * or when window_ms have passed since the first record's arrival
 * (first_arrival_ms, Unix ms; a first record from the future counts as
 * just arrived, so a clock step never makes a batch wait longer than the
 * window). With n == 0 there is nothing to send: UINT64_MAX. */
uint64_t lv_consumer_batch_wait_ms(size_t n, unsigned batch_size, bool full, int64_t window_ms,
                                   uint64_t first_arrival_ms, uint64_t now_ms);

typedef enum {
    LV_CONSUMER_NEXT,      /* done: checkpoint past the batch and go on */
    LV_CONSUMER_RETRY,     /* a failure that counts: the same batch again after the delay */
    LV_CONSUMER_WAIT,      /* not the function's failure (throttled, pool stopping): the same
                              batch again after the delay, not counted */
    LV_CONSUMER_GIVE_UP,   /* retries spent: dead-letter the batch, then checkpoint past it */
} lv_consumer_action_t;

/* What follows an invocation that ended with status. failures is the
 * number of counted failures of this batch including this one (ignored
 * for LV_FN_OK, LV_FN_THROTTLED and LV_FN_SHUTDOWN); max_retries is the
 * config's (-1: no limit); backoff_ms its retry_backoff; retry_after_s the
 * result's (throttled). *delay_ms is set for RETRY and WAIT, 0 otherwise. */
lv_consumer_action_t lv_consumer_after_invoke(lv_fn_status_t status, unsigned failures, int max_retries,
                                              int64_t backoff_ms, unsigned retry_after_s, uint64_t *delay_ms);

/* The wait before retry number `failures` (>= 1): backoff_ms, doubled for
 * each failure after the first, at most LV_CONSUMER_MAX_BACKOFF_MS (or
 * backoff_ms when that is longer). A negative backoff counts as 0. */
uint64_t lv_consumer_backoff_ms(int64_t backoff_ms, unsigned failures);

#endif
