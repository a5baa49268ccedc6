/* capture.h: route capture. Every answered request of a route with
 * `capture:` becomes one compact JSON record appended to a stream, after
 * the answer has been handed to the server, without ever waiting for the
 * disk.
 *
 * The parts:
 *
 *   record     lv_capture_record writes the JSON object for one request;
 *              every string is escaped and every field that comes from the
 *              client is capped, so a record never exceeds
 *              LV_CAPTURE_MAX_RECORD bytes whatever the request held.
 *   key        lv_capture_partition_key picks the record's partition key as
 *              the route's `partition_key` says (a path parameter, the
 *              client IP, a header, a query parameter), falling back to the
 *              request id when that is empty or missing. A record goes to
 *              the shard whose hash range holds the MD5 of its key, as in
 *              Kinesis, except one keyed by its request id: that key only
 *              has to spread records, so its shard comes from a random
 *              hash key (Kinesis' ExplicitHashKey), saving the MD5.
 *   buffer     each loop holds a bounded buffer per captured route: records
 *              built and not yet acknowledged by the stream, plus slots
 *              reserved by requests that were let in and are not answered
 *              yet (lv_capture_budget_t, below).
 *   batches    records are appended per loop in batches of up to 500 (one
 *              lv_stream_append each), sent 1 ms after a batch's first
 *              record or as soon as it is full.
 *
 * The guarantee (`on_full: shed_request`, the default): a request is let in
 * only if it can reserve a slot in its loop's buffer (lv_capture_reserve);
 * otherwise it is answered 503 with Retry-After before anything else runs.
 * Its record always fits in the slot it holds, and a record leaves the
 * buffer only when the stream has acknowledged it: records the stream
 * refuses (EAGAIN: its own pending bytes are full) or fails (ENOSPC, EIO,
 * a deleted stream) stay and are retried by a timer. So every answered
 * request is recorded, and when the stream cannot keep up the route sheds
 * load instead of losing records. With `on_full: drop` nothing is reserved:
 * a record that does not fit is dropped and counted.
 *
 * Threads: an lv_capture_t is shared by every loop, but each loop touches
 * only its own part: lv_capture_reserve, lv_capture_submit and
 * lv_capture_close_loop run on the loop that owns the request. Stream
 * callbacks come back to that same loop. lv_capture_stats may run anywhere.
 *
 * Lifetimes: the capture borrows its config and its metrics registry
 * (both must outlive it) and holds its own references to the stream, one
 * per loop. lv_capture_free releases everything, including records never
 * appended (they are counted and logged as lost); by then every loop must
 * have stopped and no stream callback may still be due. */
#ifndef LV_GATEWAY_CAPTURE_H
#define LV_GATEWAY_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/slice.h"
#include "gateway/router.h"
#include "http/parser.h"
#include "metrics/metrics.h"
#include "stream/stream.h"

/* ---- the record ---------------------------------------------------------- */

/* Input caps in bytes: longer values are cut (at a UTF-8 character
 * boundary). Each field's escaped text is also held to twice its cap (the
 * parameter values together to twice LV_CAPTURE_CAP_PARAMS), so a hostile
 * value full of control bytes is cut shorter. */
#define LV_CAPTURE_CAP_ROUTE 256u
#define LV_CAPTURE_CAP_METHOD 32u
#define LV_CAPTURE_CAP_PATH 1024u
#define LV_CAPTURE_CAP_QUERY 1024u
#define LV_CAPTURE_CAP_HEADER 512u   /* ua, referer */
#define LV_CAPTURE_CAP_IP 64u
#define LV_CAPTURE_CAP_REQUEST_ID 64u
#define LV_CAPTURE_CAP_PARAM_NAME 64u
#define LV_CAPTURE_CAP_PARAM 256u    /* one parameter value */
#define LV_CAPTURE_CAP_PARAMS 1024u  /* all parameter values together */

/* The largest record lv_capture_record can write: twice the caps of the
 * eight single strings (6976) plus 16 parameter names (2048) and the
 * values' budget (2048), about 300 bytes of keys, quotes and numbers, and
 * some room to spare. Tested with every field hostile. */
#define LV_CAPTURE_MAX_RECORD (12u * 1024u)

/* How the cache answered (proxy.c knows); NONE: the route has no cache or
 * the answer did not come from a cache decision. */
typedef enum {
    LV_CAPTURE_CACHE_NONE,       /* "cache": null */
    LV_CAPTURE_CACHE_HIT,
    LV_CAPTURE_CACHE_MISS,
    LV_CAPTURE_CACHE_STALE,      /* served stale because the origin failed (stale-if-error) */
    LV_CAPTURE_CACHE_UPDATING,   /* served stale while a refresh runs */
    LV_CAPTURE_CACHE_BYPASS,     /* a cached route that fetched without the cache */
} lv_capture_cache_t;

/* The text of a cache status ("HIT"...), or NULL for NONE. */
const char *lv_capture_cache_name(lv_capture_cache_t cache);

/* What one record says. Slices are borrowed for the call. A slice with a
 * NULL ptr is written as null (a header that was not sent); an empty one
 * as "". */
typedef struct {
    int64_t time_ms;             /* when the request arrived, Unix ms */
    lv_slice_t route;            /* the route's name */
    lv_slice_t method, path, query;  /* query: raw, without '?' */
    int status;
    lv_capture_cache_t cache;
    uint64_t latency_us;         /* head complete to answer */
    lv_slice_t ip;               /* the client's address */
    lv_slice_t ua, referer;
    const lv_route_param_t *params;  /* the route's {name} parameters */
    size_t num_params;
    lv_slice_t request_id;
} lv_capture_fields_t;

/* Appends one compact JSON object for f to out:
 * {"time":..,"route":..,"method":..,"path":..,"query":..,"status":..,
 *  "cache":..,"latency_us":..,"ip":..,"ua":..,"referer":..,"params":{..},
 *  "request_id":..}. Returns the bytes appended, at most
 * LV_CAPTURE_MAX_RECORD. */
size_t lv_capture_record(const lv_capture_fields_t *f, lv_buf_t *out);

/* Fills out[] with the {name} parameters of the route pattern (router.h
 * syntax) taken from path, which the pattern matched: names point into
 * pattern, values into path. Stops at a trailing '*' or at max. Returns
 * the count. A path that does not fit the pattern yields fewer. */
size_t lv_capture_path_params(lv_slice_t pattern, lv_slice_t path, lv_route_param_t *out, size_t max);

/* The partition key the route's capture config asks for: the path
 * parameter, the client IP, the header (case-insensitive) or the query
 * parameter (exact raw name, first occurrence, value raw) named in cfg. It
 * points into params, ip or head and is cut to LV_STREAM_MAX_KEY bytes.
 * Empty (len 0) when the kind is the request id or the value is empty or
 * missing: the caller then uses the request id. */
lv_slice_t lv_capture_partition_key(const lv_config_capture_t *cfg, const lv_http_request_t *head,
                                    lv_slice_t ip, const lv_route_param_t *params, size_t num_params);

/* ---- keeping a request's facts past its answer ----------------------------- */

/* The request's bytes are gone once it is answered, and the record is
 * built after that: gateway.c copies what the record needs here first
 * (capped, so the copy is bounded too). About 4 KiB; lives on the stack. */
typedef struct {
    lv_capture_fields_t f;       /* slices point into bytes[] or into config strings */
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    lv_slice_t key;              /* partition key; empty: use the request id */
    size_t used;
    char bytes[LV_CAPTURE_CAP_METHOD + LV_CAPTURE_CAP_PATH + LV_CAPTURE_CAP_QUERY + 2 * LV_CAPTURE_CAP_HEADER +
               LV_CAPTURE_CAP_IP + LV_CAPTURE_CAP_PARAMS + LV_STREAM_MAX_KEY];
} lv_capture_snapshot_t;

/* Copies f (whose request-derived slices may die after this call) and key
 * into s, capped. f->route, the parameter names, time, status, cache and
 * latency are kept as they are (they do not live in the request);
 * request_id is left empty: lv_capture_submit makes one. */
void lv_capture_snapshot(lv_capture_snapshot_t *s, const lv_capture_fields_t *f, lv_slice_t key);

/* ---- the bounded buffer ---------------------------------------------------- */

/* What a reservation holds: the largest record, the largest key, and the
 * bookkeeping for one record. */
#define LV_CAPTURE_RECORD_OVERHEAD 32u
#define LV_CAPTURE_SLOT_BYTES (LV_CAPTURE_MAX_RECORD + LV_STREAM_MAX_KEY + LV_CAPTURE_RECORD_OVERHEAD)

/* One loop's share of a capture's buffer, in bytes. Pure accounting:
 * capture.c keeps one per loop and tests drive it directly. */
typedef struct {
    uint64_t limit;
    uint64_t reserved;           /* LV_CAPTURE_SLOT_BYTES per request let in and not answered */
    uint64_t used;               /* records held until the stream acknowledges them */
} lv_capture_budget_t;

/* Takes a slot. False when reserved + used + a slot would pass limit. */
bool lv_capture_budget_reserve(lv_capture_budget_t *b);

/* Charges a record of `bytes` (<= LV_CAPTURE_SLOT_BYTES). With a slot
 * (from lv_capture_budget_reserve) it always fits: the slot is given back
 * and the record's bytes taken. Without one it fits only if there is room;
 * false means: drop it. */
bool lv_capture_budget_charge(lv_capture_budget_t *b, uint64_t bytes, bool had_slot);

/* Gives back a slot that will not be used / bytes of records acknowledged. */
void lv_capture_budget_unreserve(lv_capture_budget_t *b);
void lv_capture_budget_release(lv_capture_budget_t *b, uint64_t bytes);

/* ---- the capture of one route ---------------------------------------------- */

typedef struct lv_capture lv_capture_t;

/* A capture for the route named route_name, into the stream the config
 * names (cfg->streams[capture->stream]); NULL if there is no such stream.
 * buffer_bytes: the whole buffer, split evenly between nloops loops (each
 * share at least one slot); 0 (what the gateway passes) takes the
 * stream's max_pending_bytes, each loop's share then at least
 * LV_CAPTURE_MIN_LOOP_BUFFER. Registers the levee_capture_* metrics for
 * the route. */
#define LV_CAPTURE_MIN_LOOP_BUFFER (4u * 1024u * 1024u)
lv_capture_t *lv_capture_new(const lv_config_t *cfg, const lv_config_capture_t *capture, const char *route_name,
                             uint64_t buffer_bytes, unsigned nloops, lv_metrics_t *metrics);

/* Where the stream is found (by name, on each loop when it first needs
 * it, and again after the stream was deleted). NULL: no streams yet;
 * records wait in the buffer. Before the loops start. */
void lv_capture_set_streams(lv_capture_t *c, lv_streams_t *streams);

/* The capture stage, on the request's loop, before admission and target:
 * true when the request may go on (under `shed_request` it now holds a
 * slot that its lv_capture_submit uses); false when the buffer is full and
 * the request must be answered 503 without a record (counted as shed). */
bool lv_capture_reserve(lv_capture_t *c, lv_loop_t *loop);

/* On the request's loop, once it was answered: makes the request id,
 * chooses the key, builds the record from s and queues it for the next
 * batch. Uses the slot lv_capture_reserve took (shed_request), or drops
 * and counts the record if the buffer is full (drop). */
void lv_capture_submit(lv_capture_t *c, lv_loop_t *loop, lv_capture_snapshot_t *s);

/* On each loop at shutdown: appends what this loop holds and stops its
 * retry timer. Records submitted afterwards are appended at once, never
 * retried. */
void lv_capture_close_loop(lv_capture_t *c, lv_loop_t *loop);

/* Frees the capture (see Lifetimes above). NULL is a no-op. */
void lv_capture_free(lv_capture_t *c);

/* Sums over loops, read without locks (values may be a moment old). */
typedef struct {
    uint64_t records;            /* acknowledged by the stream */
    uint64_t dropped;            /* on_full: drop, buffer full (and records lost at shutdown) */
    uint64_t shed;               /* requests answered 503: no slot */
    uint64_t append_errors;      /* lv_stream_append calls refused or failed */
    uint64_t buffer_records;     /* built, not yet acknowledged */
    uint64_t buffer_bytes;       /* their charge */
    uint64_t reserved;           /* slots held by requests in progress */
    uint64_t limit_bytes;        /* the whole buffer */
} lv_capture_stats_t;
void lv_capture_stats(const lv_capture_t *c, lv_capture_stats_t *out);

/* The config this capture follows and the stream's name. */
const lv_config_capture_t *lv_capture_config(const lv_capture_t *c);
const char *lv_capture_stream_name(const lv_capture_t *c);

#endif
