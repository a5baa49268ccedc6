/* config.h: levee.yaml, parsed into plain structs.
 *
 * lv_config_load reads the file with libyaml, checks every key against the
 * schema (unknown keys are errors), fills defaults, and collects *every*
 * problem as "FILE:LINE:COL: message" instead of stopping at the first, so
 * `levee check` can print them all. Later stages (router, redirect tables)
 * that find problems in a route report them through lv_config_error with the
 * route's recorded position, so all messages share one format.
 *
 * Units: durations are milliseconds (int64_t), sizes are bytes (uint64_t).
 * "Not set" for an optional duration is -1.
 *
 * Ownership: lv_config_t owns every string and array it points to;
 * lv_config_free releases them. Paths in the config (redirect tables) are
 * stored resolved against the directory of the config file. */
#ifndef LV_CORE_CONFIG_H
#define LV_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Where a value appeared in the file (1-based), for error messages. */
typedef struct {
    int line, col;
} lv_config_pos_t;

/* Every problem found, formatted "FILE:LINE:COL: message". */
typedef struct {
    char **items;
    size_t count;
} lv_config_errors_t;

/* A listening address: "127.0.0.1:8080", "[::1]:8080", "*:8080", ":8080",
 * "localhost:8080" or a bare port "8080" (which means 127.0.0.1). */
typedef struct {
    char *text;                   /* as written */
    struct sockaddr_storage addr; /* resolved, numeric */
    socklen_t addr_len;
    lv_config_pos_t pos;
} lv_config_listen_t;

typedef struct {
    char *name;  /* lower-case as written is kept; matching is case-insensitive */
    char *value;
} lv_config_header_t;

typedef enum {
    LV_TARGET_NONE = 0,
    LV_TARGET_RESPOND,
    LV_TARGET_REDIRECT,
    LV_TARGET_ORIGIN,
    LV_TARGET_FUNCTION,
} lv_target_kind_t;

/* respond: { status, body, headers } */
typedef struct {
    int status;                   /* default 200 */
    char *body;                   /* default "" */
    size_t body_len;
    lv_config_header_t *headers;
    size_t num_headers;
} lv_config_respond_t;

/* redirect: { table, status, missing } */
typedef struct {
    char *table;                  /* path to the CSV, resolved */
    lv_config_pos_t table_pos;
    int status;                   /* 301, 302, 303, 307 or 308; default 302 */
    char *missing;                /* URL for unknown codes; NULL means 404 */
} lv_config_redirect_t;

/* cache: on a route. Absent means the route is not cached. */
typedef struct {
    bool enabled;
    int64_t ttl_ms;               /* -1: the origin's Cache-Control decides */
    int64_t stale_while_revalidate_ms; /* -1: from Cache-Control, else 0 */
    int64_t stale_if_error_ms;         /* -1: from Cache-Control, else 0 */
    int *statuses;                /* cacheable statuses; NULL: any 2xx/3xx except 206, 304 */
    size_t num_statuses;
    bool cache_set_cookie;        /* cache responses carrying Set-Cookie (default false) */
} lv_config_route_cache_t;

/* throttle: { rate, burst } and throttle_per_client: { rate, burst, key,
 * max_clients } on a route. Absent means no throttle. */
typedef struct {
    bool enabled;
    double rate;                  /* tokens (requests) per second, > 0 */
    double burst;                 /* bucket depth, >= 1; default max(1, rate) */
    char *key;                    /* per client only: "ip" (default) or "header:Name" */
    uint64_t max_clients;         /* per client only: clients tracked at most; default 100000 */
    lv_config_pos_t pos;
} lv_config_throttle_t;

/* queue: { max, timeout } on a route with `concurrency`. */
typedef struct {
    bool enabled;
    uint64_t max;                 /* requests waiting at most; default 1000 */
    int64_t timeout_ms;           /* longest wait; default 1 s, at most limits.request_timeout */
    lv_config_pos_t pos;
} lv_config_queue_t;

/* How a captured request's partition key is chosen. */
typedef enum {
    LV_CAPTURE_KEY_REQUEST_ID,    /* a fresh id per request: records spread over every shard (default) */
    LV_CAPTURE_KEY_CLIENT_IP,     /* `client_ip` */
    LV_CAPTURE_KEY_PATH,          /* `path.NAME`: the route's {NAME} path parameter */
    LV_CAPTURE_KEY_HEADER,        /* `header.NAME`: a request header (empty key -> request id) */
    LV_CAPTURE_KEY_QUERY,         /* `query.NAME`: a query parameter (empty key -> request id) */
} lv_capture_key_kind_t;

/* What capture does when the stream's pending-append buffer is full. */
typedef enum {
    LV_CAPTURE_SHED,              /* `shed_request` (default): answer 503 before the target runs, so
                                     every answered request has its record */
    LV_CAPTURE_DROP,              /* `drop`: answer anyway, count the lost record */
} lv_capture_on_full_t;

/* A route's `capture: STREAM` or `capture: { stream, partition_key, on_full }`. */
typedef struct {
    bool enabled;
    int stream;                   /* index into lv_config_t.streams; -1 when not enabled */
    lv_capture_key_kind_t key;
    char *key_name;               /* NAME for PATH / HEADER (lower-case) / QUERY; NULL otherwise */
    lv_capture_on_full_t on_full;
    lv_config_pos_t pos;          /* of the `capture:` value */
} lv_config_capture_t;

typedef struct {
    char *method;                 /* upper-case token, or "ANY" */
    char *path;                   /* pattern: /lit/{name}/... with optional trailing * */
    char *name;                   /* label for metrics: `name:` or "METHOD path" */
    lv_config_pos_t pos;          /* of the route's `match:` value */
    lv_target_kind_t kind;
    lv_config_respond_t respond;
    lv_config_redirect_t redirect;
    int origin;                   /* index into lv_config_t.origins; -1 unless kind is ORIGIN */
    int function;                 /* index into lv_config_t.functions; -1 unless kind is FUNCTION */
    lv_config_route_cache_t cache;
    lv_config_throttle_t throttle;            /* for the whole route */
    lv_config_throttle_t throttle_per_client;
    uint64_t concurrency;         /* bulkhead: in flight at most; 0 = no limit */
    lv_config_pos_t concurrency_pos;
    lv_config_queue_t queue;
    lv_config_capture_t capture;
} lv_config_route_t;

/* origins: name: { url, max_conns, connect_timeout, timeout }. A route whose
 * `origin:` is a URL gets an entry here too, named by that URL. */
typedef struct {
    char *name;
    char *url;                    /* as written, e.g. http://127.0.0.1:3000/base */
    char *host;                   /* host part (no brackets), used to connect */
    char *host_header;            /* value for Host: "host[:port]" as in the URL */
    uint16_t port;                /* default 80 */
    char *base_path;              /* path prefix from the URL, "" when none; no trailing '/' */
    int max_conns;                /* default 64 */
    int64_t connect_timeout_ms;   /* default 1000 */
    int64_t timeout_ms;           /* whole response; default 30000 */
    int max_pending;              /* requests waiting for a connection at most; default 1024 */
    int retries;                  /* extra attempts for idempotent requests; default 0 */
    struct {
        bool enabled;
        int failures;             /* errors or timeouts within window that open it */
        int64_t window_ms;        /* default 10 s */
        int64_t open_for_ms;      /* default 5 s */
    } breaker;
    lv_config_pos_t pos;
} lv_config_origin_t;

typedef enum {
    LV_RUNTIME_NODEJS,            /* levee's nodejs bootstrap (runtimes/nodejs) */
    LV_RUNTIME_PYTHON,            /* levee's python bootstrap (runtimes/python) */
    LV_RUNTIME_PROVIDED,          /* the executable `bootstrap` in `code` */
    LV_RUNTIME_COMMAND,           /* `command:` as given */
} lv_runtime_kind_t;

/* One entry of a function's `schedule:`: from `at` until `until`, keep
 * `warm` workers ready instead of the function's own `warm`. */
typedef struct {
    int64_t at_ms;                /* Unix epoch milliseconds (UTC) */
    int64_t until_ms;             /* Unix epoch milliseconds; -1 = no end */
    uint64_t warm;                /* <= concurrency.max */
    lv_config_pos_t pos;
} lv_config_schedule_t;

/* functions: name: { runtime, handler, code, command, env, memory_mb,
 * timeout, init_timeout, concurrency: {max, warm}, idle_timeout, queue,
 * schedule, async }. */
typedef struct {
    char *name;                   /* [A-Za-z0-9_-]{1,64}, as Lambda allows */
    lv_runtime_kind_t runtime;
    char *handler;                /* "index.handler"; required for nodejs and python; may be NULL */
    char *code;                   /* absolute directory: cwd and LAMBDA_TASK_ROOT */
    char **command;               /* runtime: command, argv (>= 1 element); NULL otherwise */
    size_t num_command;
    lv_config_header_t *env;      /* extra environment; name = variable */
    size_t num_env;
    uint64_t memory_mb;           /* default 128; 16..10240 */
    int64_t timeout_ms;           /* one invocation at most; default 3 s; at most 900 s */
    int64_t init_timeout_ms;      /* start to first /next at most; default 10 s */
    uint64_t max;                 /* concurrency.max: workers at most; default 16 */
    uint64_t warm;                /* concurrency.warm: workers kept ready; default 0; <= max */
    int64_t idle_timeout_ms;      /* workers above warm stop after idling this long; default 5 min */
    lv_config_queue_t queue;      /* waiting for a worker: max default 1000, timeout default 1 s */
    lv_config_schedule_t *schedule;
    size_t num_schedule;
    struct {
        int retries;              /* async (Event) invocations: extra attempts; default 2; 0..2 */
        int64_t backoff_ms;       /* wait before the first retry, doubled each time; default 60 s */
        char *on_failure;         /* absolute path of the dead-letter file (JSON lines);
                                     default DATA_DIR/functions/NAME/dead-letter.jsonl */
    } async;
    lv_config_pos_t pos;          /* of the function's key */
} lv_config_function_t;

typedef enum {
    LV_DURABILITY_FSYNC,          /* `fsync` (default): acknowledged after the fdatasync covering it */
    LV_DURABILITY_BATCH,          /* `batch`: acknowledged after the write; syncs every sync_interval */
} lv_durability_t;

/* streams: name: { shards, retention, durability, sync_interval,
 * segment_bytes, max_pending_bytes }. Streams in the config exist from the
 * start; the Kinesis API can create more (those persist in data_dir). */
typedef struct {
    char *name;                   /* [a-zA-Z0-9_.-]{1,128}, as Kinesis allows */
    unsigned shards;              /* default 1; 1..1024 */
    int64_t retention_ms;         /* default 24 h; 1 h..8760 h */
    lv_durability_t durability;
    int64_t sync_interval_ms;     /* durability batch: time between syncs; default 5 ms; 1 ms..10 s */
    uint64_t segment_bytes;       /* a segment file is closed past this size; default 64 MiB; 1 MiB..1 GiB */
    uint64_t max_pending_bytes;   /* appends accepted but not yet on disk, at most; default 64 MiB;
                                     past it appends fail fast (capture follows its on_full) */
    lv_config_pos_t pos;          /* of the stream's key */
} lv_config_stream_t;

typedef enum {
    LV_START_TRIM_HORIZON,        /* the oldest record kept (default) */
    LV_START_LATEST,              /* only records appended after the consumer first starts */
    LV_START_AT_TIMESTAMP,        /* records that arrived at or after starting_timestamp */
} lv_start_position_t;

/* consumers: a list of { stream, function, batch_size, batching_window,
 * starting_position, starting_timestamp, max_retries, on_failure }. A
 * consumer reads each shard of the stream in order and invokes the function
 * with Kinesis events; its position is checkpointed in data_dir. */
typedef struct {
    char *name;                   /* checkpoint name: `name:` or "STREAM-FUNCTION"; unique */
    int stream;                   /* index into lv_config_t.streams */
    int function;                 /* index into lv_config_t.functions */
    unsigned batch_size;          /* records per invocation at most; default 100; 1..10000 */
    int64_t batching_window_ms;   /* wait up to this long to fill a batch; default 0; 0..300 s */
    lv_start_position_t starting_position;
    int64_t starting_timestamp_ms; /* LV_START_AT_TIMESTAMP: Unix epoch milliseconds */
    int max_retries;              /* retries of a failed batch; -1 (default) = until it succeeds
                                     or its records expire; 0..10000 */
    int64_t retry_backoff_ms;     /* first wait before a retry, doubled each time up to 1 min;
                                     default 1 s */
    char *on_failure;             /* absolute path of the dead-letter file for batches that used up
                                     their retries (JSON lines); default
                                     DATA_DIR/consumers/NAME/dead-letter.jsonl */
    lv_config_pos_t pos;          /* of the list entry */
} lv_config_consumer_t;

typedef struct {
    uint64_t max_connections;     /* default 100000 */
    uint64_t max_header_bytes;    /* default 16 KiB */
    uint64_t max_body_bytes;      /* default 6 MiB */
    int64_t header_timeout_ms;    /* default 10 s */
    int64_t idle_timeout_ms;      /* default 60 s */
    int64_t request_timeout_ms;   /* default 30 s */
    uint64_t max_memory;          /* shed new requests with 503 past it (RSS); 0 = no limit */
} lv_config_limits_t;

typedef struct {
    char *path;                   /* the file this came from */
    char *dir;                    /* its directory (absolute; "." for lv_config_load_string) */
    lv_config_listen_t *listen;   /* at least one; default 127.0.0.1:8080 */
    size_t num_listen;
    int threads;                  /* 0 = auto (one per core) */
    bool admin_enabled;           /* true unless `admin: { listen: off }` (admin_listen then keeps its default) */
    lv_config_listen_t admin_listen; /* default 127.0.0.1:9901 */
    bool api_enabled;             /* true unless `api: { listen: off }` */
    lv_config_listen_t api_listen; /* AWS-compatible APIs; default 127.0.0.1:4566 */
    char *data_dir;               /* absolute; default DIR/levee-data (DIR = the config's directory) */
    char *runtime_dir;            /* absolute directory holding nodejs/ and python/ bootstraps;
                                     NULL = found next to the levee binary (see functions/spawn.h) */
    uint64_t cache_max_bytes;     /* default 256 MiB */
    int64_t shutdown_timeout_ms;  /* default 10 s */
    int log_level;                /* lv_log_level_t; `log_level: debug|info|warn|error` */
    lv_config_limits_t limits;
    lv_config_origin_t *origins;
    size_t num_origins;
    lv_config_route_t *routes;
    size_t num_routes;
    lv_config_function_t *functions;
    size_t num_functions;
    lv_config_stream_t *streams;
    size_t num_streams;
    lv_config_consumer_t *consumers;
    size_t num_consumers;
} lv_config_t;

/* Reads and validates the file at path. Returns 0 with *cfg filled, or -1
 * with every problem appended to errs (cfg is then freed and zeroed). */
int lv_config_load(const char *path, lv_config_t *cfg, lv_config_errors_t *errs);

/* The same from memory; `name` stands in for the file name in messages and
 * relative paths resolve against the current directory. */
int lv_config_load_string(const char *name, const char *yaml, size_t len, lv_config_t *cfg,
                          lv_config_errors_t *errs);

/* Releases everything the config owns and zeroes it. */
void lv_config_free(lv_config_t *cfg);

/* Appends "FILE:LINE:COL: message" to errs, or "FILE: message" when
 * pos.line <= 0 (problems with the file as a whole: unreadable, too big). */
void lv_config_error(lv_config_errors_t *errs, const char *file, lv_config_pos_t pos,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Releases the messages. */
void lv_config_errors_free(lv_config_errors_t *errs);

/* Parsers for the value syntaxes, shared with other modules and tests.
 * Each returns 0 on success, -1 on bad syntax. */
int lv_config_parse_duration(const char *s, int64_t *ms);   /* "250ms" "10s" "5m" "2h" "1d"; bare number = seconds */
int lv_config_parse_size(const char *s, uint64_t *bytes);   /* "512", "64KiB", "256MiB", "1GiB", "10KB", "1MB" */
int lv_config_parse_number(const char *s, double *out);     /* "2000", "0.5": finite, no sign, no junk */
int lv_config_parse_listen(const char *s, lv_config_listen_t *out); /* fills addr/addr_len, not text/pos */
/* An RFC 3339 time, "2026-11-27T15:00:00Z", optionally with a fraction
 * (":00.5Z") or an offset instead of Z ("+01:00", "-05:30"), as Unix epoch
 * milliseconds UTC (the fraction is cut to milliseconds). Dates before 1970
 * are refused. On failure *why, when why is not NULL, says what is wrong. */
int lv_config_parse_time(const char *s, int64_t *ms, const char **why);

#endif
