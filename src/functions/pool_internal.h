/* pool_internal.h: what pool.c (invocations, processes, scaling) and
 * runtime_api.c (the Lambda Runtime API spoken with each worker) share.
 * Private to src/functions and its tests and fuzz driver.
 *
 * Everything here lives on the home loop and is touched only from its
 * thread, except what is marked "atomic" (read by lv_fn_stats from any
 * thread) and the invocation free list (its own mutex: callers on other
 * loops hand finished invocations back).
 *
 * Ownership: lv_functions_t owns its lv_fn_t; an lv_fn_t owns its workers
 * (list `workers`) and the invocations waiting in its queue; a worker owns
 * its process (pid, pidfd, output pipe), its listener and lv_http_server_t.
 * An invocation belongs to the pool from lv_fn_invoke until its result is
 * posted, then to the caller's loop until the callback returns, when it
 * goes back to the free list. */
#ifndef LV_FUNCTIONS_POOL_INTERNAL_H
#define LV_FUNCTIONS_POOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/list.h"
#include "core/loop.h"
#include "core/slice.h"
#include "functions/pool.h"
#include "functions/spawn.h"
#include "http/server.h"
#include "metrics/metrics.h"

/* Largest /response or /error body, as Lambda's (RIE MaxPayloadSize). */
#define LV_FN_MAX_PAYLOAD (6u * 1024 * 1024 + 100)
#define LV_FN_TAIL_BYTES 4096
#define LV_FN_ID_MAX 128      /* request ids longer than this are replaced */
#define LV_FN_TYPE_MAX 128    /* error types are cut to this, NUL included */
#define LV_FN_UUID_LEN 36

typedef struct lv_fn_worker lv_fn_worker_t;
typedef struct lv_fn_inv lv_fn_inv_t;

typedef enum {
    LV_INV_FREE,
    LV_INV_QUEUED,   /* in fn->queue, timer = queue wait */
    LV_INV_RUNNING,  /* with a worker, timer = deadline */
    LV_INV_DONE,     /* result posted to the caller */
} lv_fn_inv_state_t;

struct lv_fn_inv {
    lv_list_t link;            /* fn->queue while queued; the free list while free */
    lv_fn_t *fn;
    lv_loop_t *caller;
    lv_fn_done_cb done;
    void *arg;
    unsigned flags;
    lv_fn_inv_state_t state;
    lv_buf_t payload;          /* the event */
    lv_buf_t client_context;   /* empty if none (or not safe as a header value) */
    char request_id[LV_FN_ID_MAX + 1];
    size_t request_id_len;
    char invocation_id[LV_FN_UUID_LEN + 1]; /* fresh per dispatch */
    uint64_t submitted_ns, dispatched_ns;
    lv_timer_t timer;
    lv_fn_worker_t *worker;    /* while RUNNING */
    bool waits_for_start;      /* a worker was being started for it when it queued */
    /* The result, filled before the invocation is finished. */
    lv_fn_status_t status;
    lv_buf_t result;
    char error_type[LV_FN_TYPE_MAX];
    lv_buf_t log_tail;
    unsigned retry_after;
    bool cold_start;
    uint64_t duration_ns;
};

typedef enum {
    LV_W_SPAWNING,   /* the spawner thread is starting the process */
    LV_W_STARTING,   /* running, has not asked for work yet (init timer) */
    LV_W_IDLE,       /* its GET /next is held, nothing to give it */
    LV_W_BUSY,       /* running an invocation, or done and not yet back at /next */
    LV_W_STOPPING,   /* signalled; waiting for it to exit */
} lv_fn_worker_state_t;

/* How the worker's last finished invocation ended, so a late or repeated
 * /response for it gets the right status (403 or 410), not 400. */
typedef enum { LV_LAST_NONE, LV_LAST_ANSWERED, LV_LAST_TIMED_OUT } lv_fn_last_end_t;

struct lv_fn_worker {
    lv_list_t link;            /* fn->workers */
    lv_list_t idle_link;       /* fn->idle while IDLE (front = most recently idle) */
    lv_list_t out_link;        /* fns->out_pending while output is left to read */
    lv_fn_t *fn;
    uint64_t seq;              /* for logs */
    lv_fn_worker_state_t state;
    bool provisioned;          /* started for the warm target */
    bool cancelled;            /* stop as soon as the spawn reports back */
    bool init_error_posted;    /* POSTed /runtime/init/error */
    bool init_timed_out;
    pid_t pid;
    lv_io_t pid_io;            /* pidfd: readable once the process exited */
    lv_io_t out_io;            /* stdout+stderr pipe; fd -1 once closed */
    uint16_t port;             /* its Runtime API listener (owned by `server`) */
    lv_http_server_t *server;
    lv_timer_t timer;          /* STARTING: init timeout; BUSY after answering: the return watch;
                                  STOPPING: the SIGKILL grace */
    lv_http_req_t *next_req;   /* the held GET /next */
    lv_fn_inv_t *inv;          /* the invocation it runs */
    char last_id[LV_FN_ID_MAX + 1];
    size_t last_id_len;
    lv_fn_last_end_t last_end;
    uint64_t spawn_requested_ns, ready_ns, idle_since_ms;
    lv_buf_t init_error;       /* the JSON posted to /init/error (normalised) */
    char init_error_type[LV_FN_TYPE_MAX];
    lv_buf_t line;             /* an output line not yet ended by '\n' */
    char tail[LV_FN_TAIL_BYTES]; /* ring of the current invocation's output */
    size_t tail_pos, tail_len;
};

struct lv_fn {
    lv_functions_t *fns;
    const lv_config_function_t *cfg;
    lv_spawn_spec_t *spec;
    char *next_static_headers; /* the /next header lines that never change */
    size_t next_static_len;
    uint64_t timeout_ms, init_timeout_ms, idle_timeout_ms, queue_timeout_ms;
    lv_list_t workers, idle, queue;
    size_t nworkers;           /* processes, stopping ones and spawning ones included */
    size_t nspawning, nstarting, nidle, nbusy, nqueued;
    /* Init failures: restarts back off, and with no live worker the queue
     * fails with the last init error. */
    bool init_failing;
    uint64_t backoff_ms, next_start_ms;
    bool init_error_is_json;   /* init_error is the worker's JSON object, else a message */
    lv_buf_t init_error;
    char init_error_type[LV_FN_TYPE_MAX];
    /* atomic, for lv_fn_stats */
    uint64_t st_warm_target, st_idle, st_busy, st_starting, st_queued;
    uint64_t st_invocations, st_errors, st_timeouts, st_throttles, st_cold_starts;
    uint64_t warm_target;      /* home copy of st_warm_target */
    struct {
        lv_counter_t *invocations, *err_error, *err_timeout, *err_crash, *err_too_large, *throttles;
        lv_counter_t *starts_warm, *starts_demand, *starts_replace, *cold_start_invocations;
        lv_histogram_t *cold_start, *spawn, *duration, *queue_wait;
        lv_gauge_t *idle, *busy, *starting, *warm_target, *queue_depth;
    } m;
};

typedef enum { LV_FNS_NEW, LV_FNS_RUNNING, LV_FNS_STOPPING, LV_FNS_STOPPED } lv_fns_state_t;

#define LV_FN_OUT_CHUNK 65536

struct lv_functions {
    const lv_config_t *cfg;
    lv_metrics_t *metrics;
    lv_metrics_t *own_metrics; /* when lv_functions_new was given none (tests) */
    lv_fn_t **fns;
    size_t nfns;
    char *runtime_dir;
    lv_loop_t *home;
    lv_spawner_t *spawner;
    int state;                 /* lv_fns_state_t, atomic */
    lv_timer_t scaler;
    lv_timer_t stop_timer;
    lv_post_cb stop_done;
    void *stop_arg;
    uint64_t worker_seq;
    lv_list_t out_pending;     /* workers whose output was cut short by the per-wake budget */
    bool out_posted;
    pthread_mutex_t free_lock;
    lv_list_t free_invs;
    size_t nfree;
    char region[64];
    char scratch[LV_FN_OUT_CHUNK];
};

/* ---- pool.c, called by runtime_api.c ---- */

/* A GET /next arrived from w: held until there is work. */
void lv_fnpool_worker_next(lv_fn_worker_t *w, lv_http_req_t *req);

/* Ends an invocation: inv->result and inv->error_type are filled by the
 * caller; this records it, frees the worker for its next /next and posts
 * the result to the caller's loop. */
void lv_fnpool_finish(lv_fn_inv_t *inv, lv_fn_status_t status);

/* w POSTed /runtime/init/error (w->init_error is filled): it is ended
 * after a short grace and its death is reported as an init failure. */
void lv_fnpool_init_failed(lv_fn_worker_t *w);

/* ---- runtime_api.c, called by pool.c ---- */

/* The HTTP handler of every worker's listener; ctx is the worker. */
void lv_rapi_handle(lv_http_req_t *req, void *ctx);

/* The listener's too-large callback (lv_http_server_on_too_large): a
 * /response or /error for the running invocation that is over even the
 * listener's body limit fails that invocation with
 * Function.ResponseSizeTooLarge at once; the listener answers the 413. */
void lv_rapi_too_large(const lv_http_request_t *head, uint64_t size, void *ctx);

/* Answers w's held /next with inv (the event and its Lambda-Runtime-*
 * headers). w->next_req is NULL afterwards. */
void lv_rapi_send_next(lv_fn_worker_t *w, lv_fn_inv_t *inv);

/* Answers req with a Runtime API error {"errorMessage","errorType"}. */
void lv_rapi_answer_error(lv_http_req_t *req, int status, const char *type, const char *message);

/* ---- runtime_api.c, pure (unit-tested and fuzzed) ---- */

typedef enum {
    LV_RAPI_NOT_FOUND,
    LV_RAPI_NEXT,        /* GET  /2018-06-01/runtime/invocation/next */
    LV_RAPI_RESPONSE,    /* POST /2018-06-01/runtime/invocation/{id}/response */
    LV_RAPI_ERROR,       /* POST /2018-06-01/runtime/invocation/{id}/error */
    LV_RAPI_INIT_ERROR,  /* POST /2018-06-01/runtime/init/error */
} lv_rapi_route_t;

typedef struct {
    lv_rapi_route_t route;
    bool method_ok;          /* false: answer 405 with `allow` */
    const char *allow;       /* "GET" or "POST" */
    lv_slice_t request_id;   /* RESPONSE and ERROR: the {id} segment (points into path) */
} lv_rapi_target_t;

/* Classifies a request by method and path (without the query). */
void lv_rapi_parse_target(lv_slice_t method, lv_slice_t path, lv_rapi_target_t *out);

/* Turns what a runtime POSTed to /error or /init/error into the error
 * object levee hands on: the body itself when it is a JSON object, else
 * {"errorMessage":<the body as text>,"errorType":<type>}. The type is the
 * Lambda-Runtime-Function-Error-Type header, else the body's errorType,
 * else "Unhandled", cut to printable ASCII. Appends the object to out and
 * writes the type to `type`. */
void lv_rapi_error_payload(lv_slice_t body, lv_slice_t type_header, lv_buf_t *out, char type[LV_FN_TYPE_MAX]);


/* Appends {"errorMessage":message,"errorType":type}. */
void lv_rapi_error_object(lv_buf_t *out, const char *type, lv_slice_t message);

/* True when s can be sent as an HTTP header value or path segment as is:
 * printable ASCII (and, for header values, spaces and tabs), no CR or LF. */
bool lv_rapi_id_ok(lv_slice_t s);
bool lv_rapi_header_value_ok(lv_slice_t s);

#endif
