/* pool.h: function workers, the Lambda Runtime API they talk to, and the
 * scheduler that hands invocations to them.
 *
 * Every function in the config gets a pool of worker processes. A worker is
 * a process that speaks the AWS Lambda Runtime API (2018-06-01) over
 * loopback: it long-polls GET /2018-06-01/runtime/invocation/next, runs the
 * event, and POSTs .../{id}/response or .../{id}/error. Each worker gets its
 * own Runtime API listener (127.0.0.1, a port the kernel picks), named in its
 * AWS_LAMBDA_RUNTIME_API, so levee always knows which process is calling and
 * one worker can never answer for another. One invocation at a time per
 * worker, as in Lambda.
 *
 * All pool state is owned by one event loop, the "home" loop (loop 0): the
 * Runtime API connections, the process watchers (pidfd), the output pipes,
 * the timers. lv_fn_invoke may be called from any loop; a call from another
 * loop is posted to the home loop, and the result is posted back to the
 * caller's loop. On the home loop nothing crosses a thread.
 *
 * Scaling: `warm` workers are started when the pool starts and kept ready
 * (`schedule:` entries raise or lower that target at their times). An
 * invocation that finds no idle worker starts one (up to `max`) and waits in
 * the function's queue. Workers above the target stop after `idle_timeout`.
 * Processes are started by a spawner thread (posix_spawn), never on a loop.
 *
 * Failure: an invocation past its deadline fails with a timeout and its
 * worker is killed (the whole process group) and replaced; a worker that
 * exits fails its invocation with Runtime.ExitError; a worker that fails to
 * initialise fails the invocations waiting for it with its init error, and
 * restarts back off. No concurrency slot outlives its worker.
 *
 * Lifetimes: lv_functions_t borrows the config (which must outlive it). A
 * result handed to a callback is valid only during the callback. */
#ifndef LV_FUNCTIONS_POOL_H
#define LV_FUNCTIONS_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/loop.h"
#include "core/slice.h"
#include "metrics/metrics.h"

typedef struct lv_functions lv_functions_t;
typedef struct lv_fn lv_fn_t;

/* Builds a pool for every function in cfg and registers its metrics.
 * Problems found only now (missing `code` directory, no executable
 * `bootstrap` for runtime: provided, a command that is not found, the
 * runtime directory missing) are appended to errs at the function's config
 * position and NULL is returned. No process is started yet. */
lv_functions_t *lv_functions_new(const lv_config_t *cfg, lv_metrics_t *metrics, lv_config_errors_t *errs);

/* Frees everything. lv_functions_stop must have completed (or start never
 * been called). */
void lv_functions_free(lv_functions_t *fns);

/* On the home loop's thread, before or while it runs: starts the spawner
 * thread, the warm workers and the scaler. */
void lv_functions_start(lv_functions_t *fns, lv_loop_t *home);

/* On the home loop's thread at shutdown: fails every queued invocation with
 * LV_FN_SHUTDOWN (results are posted to their callers' loops as usual, so
 * those loops must still run their posted callbacks afterwards), lets running
 * invocations finish until deadline_ms (monotonic, lv_loop_now_ms clock) and
 * fails the rest, sends SIGTERM then SIGKILL to every worker, reaps them and
 * stops the spawner. `done(home, arg)` is called on the home loop once every
 * worker is gone. */
void lv_functions_stop(lv_functions_t *fns, uint64_t deadline_ms, lv_post_cb done, void *arg);

/* The function named name, or NULL. Any thread. */
lv_fn_t *lv_functions_find(lv_functions_t *fns, lv_slice_t name);

/* The function's config. */
const lv_config_function_t *lv_fn_config(const lv_fn_t *fn);

typedef enum {
    LV_FN_OK,          /* payload: the function's response body */
    LV_FN_ERROR,       /* the function reported an error through /error */
    LV_FN_TIMEOUT,     /* the deadline passed; the worker was killed */
    LV_FN_CRASHED,     /* the worker exited or failed to initialise */
    LV_FN_TOO_LARGE,   /* the response exceeded 6 MiB (Function.ResponseSizeTooLarge) */
    LV_FN_THROTTLED,   /* queue full, or no worker within the queue timeout */
    LV_FN_SHUTDOWN,    /* levee is stopping */
} lv_fn_status_t;

typedef struct {
    lv_fn_status_t status;
    /* For LV_FN_OK the response body as posted. For every other status a
     * JSON error object: what the worker posted to /error (passed through
     * as is when it is a JSON object), otherwise one levee wrote, e.g.
     * {"errorType":"Runtime.ExitError","errorMessage":"RequestId: ... Error:
     * Runtime exited with error: exit status 1"} or {"errorMessage":"...
     * Task timed out after 3.00 seconds"}. */
    lv_slice_t payload;
    /* NULL for LV_FN_OK; otherwise the error type: the worker's
     * Lambda-Runtime-Function-Error-Type (or errorType from its body), or
     * "Runtime.ExitError", "Sandbox.Timeout", "Function.ResponseSizeTooLarge",
     * "TooManyRequestsException", "ServiceException" (shutdown). */
    const char *error_type;
    /* The last 4 KiB of the worker's output during this invocation (empty
     * unless LV_FN_WANT_LOG_TAIL was asked for). */
    lv_slice_t log_tail;
    unsigned retry_after;   /* LV_FN_THROTTLED: seconds, >= 1 */
    bool cold_start;        /* a worker was started for this invocation */
    uint64_t duration_ns;   /* from dispatch to the worker until the result */
} lv_fn_result_t;

/* Runs on the caller's loop. */
typedef void (*lv_fn_done_cb)(void *arg, const lv_fn_result_t *result);

enum {
    LV_FN_WANT_LOG_TAIL = 1,   /* keep the invocation's last 4 KiB of output */
};

typedef struct {
    lv_slice_t payload;        /* the event, copied; must be what the function expects (JSON) */
    lv_slice_t client_context; /* Lambda-Runtime-Client-Context value (JSON), copied; may be empty */
    lv_slice_t request_id;     /* copied; empty = levee makes a UUID */
    unsigned flags;            /* LV_FN_WANT_LOG_TAIL */
} lv_fn_invoke_t;

/* Queues an invocation. Call it on a loop thread (`caller`); `done` is later
 * called exactly once on that loop, never inside this call. Before
 * lv_functions_start and after lv_functions_stop began, the result is
 * LV_FN_SHUTDOWN. */
void lv_fn_invoke(lv_fn_t *fn, lv_loop_t *caller, const lv_fn_invoke_t *inv, lv_fn_done_cb done, void *arg);

/* A snapshot for /status (any thread; values may be a moment old). */
typedef struct {
    uint64_t warm_target;       /* current target: `warm`, or a schedule entry's */
    uint64_t max;
    uint64_t idle, busy, starting;
    uint64_t queued;
    uint64_t invocations, errors, timeouts, throttles, cold_starts;
} lv_fn_stats_t;

void lv_fn_stats(const lv_fn_t *fn, lv_fn_stats_t *out);

/* Number of functions and the i-th (config order), for /status. */
size_t lv_functions_count(const lv_functions_t *fns);
lv_fn_t *lv_functions_at(lv_functions_t *fns, size_t i);

#endif
