/* capture.c: route capture (see capture.h for the contract).
 *
 * Three layers, each usable alone:
 *
 *   pure       the record builder, the partition-key choice, the path
 *              parameters and the buffer accounting: no loop, no stream,
 *              so unit tests and the fuzz driver call them directly.
 *   per loop   each loop owns one capture_loop_t per captured route: its
 *              share of the buffer, the batch being filled, the batches
 *              waiting to be appended, the batches appended and not yet
 *              acknowledged, and one timer (flush or retry). Only that loop's thread
 *              touches it (stream callbacks are posted back to it), so the
 *              hot path takes no lock and no atomic read-modify-write.
 *   stream     a batch is one lv_stream_append. It leaves the loop's buffer
 *              only when the stream acknowledges it; a refusal or failure
 *              puts it back at the head of the waiting queue and re-arms the
 *              timer with a backoff that doubles from 1 ms to 1 s.
 *
 * A batch keeps its records as bytes (key, then JSON) in one buffer with
 * offsets, so growing the buffer never invalidates anything; the
 * lv_stream_put_t array is built just before each append (the shards are
 * computed then too, off the request path, and again if the stream was
 * re-created with another shard count).
 *
 * A batch is sent by a timer 1 ms after its first record, or at once when
 * it reaches 500 records. Sending at the end of every loop iteration
 * instead made batches of a few records at moderate load, and each batch
 * costs a committer wake-up and an acknowledgement posted back: per
 * millisecond, that cost is paid once whatever the request rate. */
#include "gateway/capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/uuid.h"

#define BATCH_MAX 500
/* A batch is sent this long after its first record at the latest. */
#define FLUSH_MS 1
#define RETRY_FIRST_MS 1
#define RETRY_MAX_MS 1000
/* A loop logs append failures at most this often (with a count of the
 * ones it kept quiet about), so a full disk does not flood the log. */
#define LOG_EVERY_MS 10000

/* ---- the record ---------------------------------------------------------- */

const char *lv_capture_cache_name(lv_capture_cache_t cache)
{
    switch (cache) {
    case LV_CAPTURE_CACHE_HIT: return "HIT";
    case LV_CAPTURE_CACHE_MISS: return "MISS";
    case LV_CAPTURE_CACHE_STALE: return "STALE";
    case LV_CAPTURE_CACHE_UPDATING: return "UPDATING";
    case LV_CAPTURE_CACHE_BYPASS: return "BYPASS";
    default: return NULL;
    }
}

/* The longest prefix of s[0..n) of at most cap bytes that does not end
 * inside a UTF-8 sequence (well-formed or not, a cut there would turn a
 * good character into U+FFFD). */
static size_t cut_utf8(const char *s, size_t n, size_t cap)
{
    if (n <= cap)
        return n;
    size_t k = cap;
    /* Back over at most three continuation bytes to the lead byte, and
     * cut before it. */
    for (int i = 0; i < 3 && k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80; i++)
        k--;
    if (((unsigned char)s[k] & 0xc0) == 0x80)
        return cap; /* not UTF-8 here at all: any cut is as good */
    return k;
}

/* Appends literal bytes; the record's room was reserved up front, so this
 * grows the buffer only if a caller's bound was wrong. */
static inline void put(lv_buf_t *b, const char *s, size_t n)
{
    if (lv_buf_room(b) < n)
        lv_buf_reserve(b, n);
    memcpy(lv_buf_tail(b), s, n);
    lv_buf_commit(b, n);
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

static void put_u64(lv_buf_t *b, uint64_t v)
{
    /* Two digits per division: the time has 13 of them. */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24];
    size_t i = sizeof tmp;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100);
        v /= 100;
        tmp[--i] = pairs[2 * d + 1];
        tmp[--i] = pairs[2 * d];
    }
    if (v >= 10) {
        tmp[--i] = pairs[2 * v + 1];
        tmp[--i] = pairs[2 * v];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    put(b, tmp + i, sizeof tmp - i);
}

static void put_i64(lv_buf_t *b, int64_t v)
{
    if (v < 0) {
        PUT_LIT(b, "-");
        put_u64(b, (uint64_t)0 - (uint64_t)v);
        return;
    }
    put_u64(b, (uint64_t)v);
}

/* The escaped contents of s cut to in_cap input bytes and held to out_cap
 * output bytes: text escapes to at most twice its size unless it is made
 * of control bytes, and for those the input is halved until it fits.
 * Returns the output bytes written. */
static size_t put_chars_capped(lv_buf_t *b, lv_slice_t s, size_t in_cap, size_t out_cap)
{
    size_t n = cut_utf8(s.ptr, s.len, in_cap);
    size_t mark = b->end;
    lv_json_chars(b, s.ptr, n, false);
    while (b->end - mark > out_cap) {
        b->end = mark;
        n = cut_utf8(s.ptr, n, n / 2);
        lv_json_chars(b, s.ptr, n, false);
    }
    return b->end - mark;
}

/* The contents of a string field, between quotes the caller writes (a
 * NULL slice is empty), held to twice its cap. */
static void put_chars(lv_buf_t *b, lv_slice_t s, size_t cap)
{
    put_chars_capped(b, s, cap, 2 * cap);
}

/* A whole value: a quoted string, or null for a slice with no pointer. */
static void put_nullable(lv_buf_t *b, lv_slice_t s, size_t cap)
{
    if (!s.ptr) {
        PUT_LIT(b, "null");
        return;
    }
    PUT_LIT(b, "\"");
    put_chars(b, s, cap);
    PUT_LIT(b, "\"");
}

size_t lv_capture_record(const lv_capture_fields_t *f, lv_buf_t *out)
{
    static const char *const caches[] = {"null", "\"HIT\"", "\"MISS\"", "\"STALE\"", "\"UPDATING\"", "\"BYPASS\""};
    size_t start = lv_buf_len(out);
    lv_buf_reserve(out, LV_CAPTURE_MAX_RECORD);
    /* Each literal closes one string and opens the next. */
    PUT_LIT(out, "{\"time\":");
    put_i64(out, f->time_ms);
    PUT_LIT(out, ",\"route\":\"");
    put_chars(out, f->route, LV_CAPTURE_CAP_ROUTE);
    PUT_LIT(out, "\",\"method\":\"");
    put_chars(out, f->method, LV_CAPTURE_CAP_METHOD);
    PUT_LIT(out, "\",\"path\":\"");
    put_chars(out, f->path, LV_CAPTURE_CAP_PATH);
    PUT_LIT(out, "\",\"query\":\"");
    put_chars(out, f->query, LV_CAPTURE_CAP_QUERY);
    PUT_LIT(out, "\",\"status\":");
    put_i64(out, f->status);
    PUT_LIT(out, ",\"cache\":");
    const char *cache = (unsigned)f->cache < sizeof caches / sizeof caches[0] ? caches[f->cache] : caches[0];
    put(out, cache, strlen(cache));
    PUT_LIT(out, ",\"latency_us\":");
    put_u64(out, f->latency_us < (uint64_t)INT64_MAX ? f->latency_us : (uint64_t)INT64_MAX);
    PUT_LIT(out, ",\"ip\":\"");
    put_chars(out, f->ip, LV_CAPTURE_CAP_IP);
    PUT_LIT(out, "\",\"ua\":");
    put_nullable(out, f->ua, LV_CAPTURE_CAP_HEADER);
    PUT_LIT(out, ",\"referer\":");
    put_nullable(out, f->referer, LV_CAPTURE_CAP_HEADER);
    PUT_LIT(out, ",\"params\":{");
    /* The values share one output budget, so many parameters cannot add
     * up past the record's bound. */
    size_t budget = 2 * LV_CAPTURE_CAP_PARAMS;
    size_t nparams = f->num_params < LV_ROUTE_MAX_PARAMS ? f->num_params : LV_ROUTE_MAX_PARAMS;
    for (size_t i = 0; i < nparams; i++) {
        if (i)
            PUT_LIT(out, ",\"");
        else
            PUT_LIT(out, "\"");
        put_chars(out, f->params[i].name, LV_CAPTURE_CAP_PARAM_NAME);
        PUT_LIT(out, "\":\"");
        size_t out_cap = budget < 2 * LV_CAPTURE_CAP_PARAM ? budget : 2 * LV_CAPTURE_CAP_PARAM;
        budget -= put_chars_capped(out, f->params[i].value, LV_CAPTURE_CAP_PARAM, out_cap);
        PUT_LIT(out, "\"");
    }
    PUT_LIT(out, "},\"request_id\":\"");
    put_chars(out, f->request_id, LV_CAPTURE_CAP_REQUEST_ID);
    PUT_LIT(out, "\"}");
    return lv_buf_len(out) - start;
}

/* ---- parameters and keys --------------------------------------------------- */

static size_t segment_end(lv_slice_t s, size_t from)
{
    const char *slash = from < s.len ? memchr(s.ptr + from, '/', s.len - from) : NULL;
    return slash ? (size_t)(slash - s.ptr) : s.len;
}

size_t lv_capture_path_params(lv_slice_t pattern, lv_slice_t path, lv_route_param_t *out, size_t max)
{
    if (!pattern.len || !path.len || pattern.ptr[0] != '/' || path.ptr[0] != '/')
        return 0;
    size_t n = 0, i = 1, j = 1;
    while (n < max) {
        size_t pe = segment_end(pattern, i), qe = segment_end(path, j);
        lv_slice_t seg = lv_slice(pattern.ptr + i, pe - i);
        if (seg.len == 1 && seg.ptr[0] == '*')
            break;
        if (seg.len >= 2 && seg.ptr[0] == '{' && seg.ptr[seg.len - 1] == '}')
            out[n++] = (lv_route_param_t){lv_slice(seg.ptr + 1, seg.len - 2), lv_slice(path.ptr + j, qe - j)};
        if (pe >= pattern.len || qe >= path.len)
            break;
        i = pe + 1;
        j = qe + 1;
    }
    return n;
}

/* The raw value of the first query parameter called name, or an empty
 * slice. "a" alone (no '=') has an empty value. */
static lv_slice_t query_param(lv_slice_t query, lv_slice_t name)
{
    const char *p = query.ptr, *end = query.ptr + query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        lv_slice_t k = lv_slice(p, (size_t)((eq ? eq : stop) - p));
        if (lv_slice_eq(k, name))
            return eq ? lv_slice(eq + 1, (size_t)(stop - eq - 1)) : lv_slice(stop, 0);
        p = stop + 1;
    }
    return lv_slice("", 0);
}

lv_slice_t lv_capture_partition_key(const lv_config_capture_t *cfg, const lv_http_request_t *head,
                                    lv_slice_t ip, const lv_route_param_t *params, size_t num_params)
{
    lv_slice_t v = {"", 0};
    lv_slice_t name = lv_slice_cstr(cfg->key_name);
    switch (cfg->key) {
    case LV_CAPTURE_KEY_CLIENT_IP:
        v = ip;
        break;
    case LV_CAPTURE_KEY_PATH:
        for (size_t i = 0; i < num_params; i++)
            if (lv_slice_eq(params[i].name, name)) {
                v = params[i].value;
                break;
            }
        break;
    case LV_CAPTURE_KEY_HEADER:
        if (head && name.len) {
            const lv_http_header_t *h = lv_http_find_header(head->headers, head->num_headers, name);
            if (h)
                v = h->value;
        }
        break;
    case LV_CAPTURE_KEY_QUERY:
        if (head && name.len)
            v = query_param(head->query, name);
        break;
    case LV_CAPTURE_KEY_REQUEST_ID:
    default:
        break;
    }
    if (!v.ptr)
        return lv_slice("", 0);
    v.len = cut_utf8(v.ptr, v.len, LV_STREAM_MAX_KEY);
    return v;
}

/* ---- snapshot -------------------------------------------------------------- */

static lv_slice_t keep(lv_capture_snapshot_t *s, lv_slice_t v, size_t cap)
{
    if (!v.ptr)
        return v;
    size_t n = cut_utf8(v.ptr, v.len, cap);
    if (n > sizeof s->bytes - s->used)
        n = sizeof s->bytes - s->used; /* cannot happen: bytes[] is the sum of the caps */
    char *dst = s->bytes + s->used;
    if (n)
        memcpy(dst, v.ptr, n);
    s->used += n;
    return lv_slice(dst, n);
}

void lv_capture_snapshot(lv_capture_snapshot_t *s, const lv_capture_fields_t *f, lv_slice_t key)
{
    s->used = 0;
    s->f = *f;
    s->f.method = keep(s, f->method, LV_CAPTURE_CAP_METHOD);
    s->f.path = keep(s, f->path, LV_CAPTURE_CAP_PATH);
    s->f.query = keep(s, f->query, LV_CAPTURE_CAP_QUERY);
    s->f.ua = keep(s, f->ua, LV_CAPTURE_CAP_HEADER);
    s->f.referer = keep(s, f->referer, LV_CAPTURE_CAP_HEADER);
    s->f.ip = keep(s, f->ip, LV_CAPTURE_CAP_IP);
    size_t n = f->num_params < LV_ROUTE_MAX_PARAMS ? f->num_params : LV_ROUTE_MAX_PARAMS;
    size_t budget = LV_CAPTURE_CAP_PARAMS;
    for (size_t i = 0; i < n; i++) {
        size_t cap = budget < LV_CAPTURE_CAP_PARAM ? budget : LV_CAPTURE_CAP_PARAM;
        s->params[i].name = f->params[i].name;
        s->params[i].value = keep(s, f->params[i].value, cap);
        budget -= s->params[i].value.len;
    }
    s->f.params = s->params;
    s->f.num_params = n;
    s->f.request_id = lv_slice("", 0);
    s->key = keep(s, key, LV_STREAM_MAX_KEY);
}

/* ---- the bounded buffer ---------------------------------------------------- */

bool lv_capture_budget_reserve(lv_capture_budget_t *b)
{
    if (b->reserved + b->used + LV_CAPTURE_SLOT_BYTES > b->limit)
        return false;
    b->reserved += LV_CAPTURE_SLOT_BYTES;
    return true;
}

bool lv_capture_budget_charge(lv_capture_budget_t *b, uint64_t bytes, bool had_slot)
{
    if (had_slot && b->reserved >= LV_CAPTURE_SLOT_BYTES && bytes <= LV_CAPTURE_SLOT_BYTES) {
        b->reserved -= LV_CAPTURE_SLOT_BYTES;
        b->used += bytes;
        return true;
    }
    if (had_slot)
        lv_capture_budget_unreserve(b); /* a record larger than its slot: a bug, but never leak the slot */
    if (b->reserved + b->used + bytes > b->limit)
        return false;
    b->used += bytes;
    return true;
}

void lv_capture_budget_unreserve(lv_capture_budget_t *b)
{
    b->reserved = b->reserved >= LV_CAPTURE_SLOT_BYTES ? b->reserved - LV_CAPTURE_SLOT_BYTES : 0;
}

void lv_capture_budget_release(lv_capture_budget_t *b, uint64_t bytes)
{
    b->used = b->used >= bytes ? b->used - bytes : 0;
}

/* ---- per-loop state -------------------------------------------------------- */

/* Where one record's bytes are in its batch. random_shard: its key is the
 * request id, which only has to spread records, so it is placed by a
 * random hash key (Kinesis' ExplicitHashKey) instead of the MD5 of the
 * key, which would cost more than building the record. */
typedef struct {
    uint32_t key_off, key_len, data_off, data_len : 31, random_shard : 1;
} rec_ref_t;

typedef struct capture_loop capture_loop_t;

/* Up to BATCH_MAX records, appended as one unit. */
typedef struct {
    lv_list_t link;              /* in waiting or in_flight */
    capture_loop_t *owner;
    lv_buf_t bytes;              /* key then JSON, per record */
    size_t n;
    uint64_t charged;            /* bytes charged to the budget */
    uint64_t shards_of;          /* id of the stream shard[] was computed for (0: none); an id, not a
                                    pointer, so a re-created stream at the same address is told apart */
    rec_ref_t recs[BATCH_MAX];
    unsigned shard[BATCH_MAX];
} batch_t;

/* What scrapes read from another thread: stored with relaxed atomics by
 * the owner after each change. */
typedef struct {
    uint64_t records, bytes, reserved;
} published_t;

struct capture_loop {
    lv_capture_t *cap;
    lv_loop_t *loop;             /* set on first use */
    lv_stream_t *stream;         /* this loop's reference, or NULL */
    lv_capture_budget_t budget;
    uint64_t held_records;       /* in batches: open, waiting, in flight */
    batch_t *open;               /* being filled */
    batch_t *spare;              /* one emptied batch kept for reuse */
    lv_list_t waiting;           /* to append, oldest first */
    lv_list_t in_flight;         /* appended, not acknowledged */
    bool backing_off, closed;
    lv_timer_t timer;            /* the next flush: 1 ms after a batch opens, or a retry's backoff */
    uint64_t backoff_ms;
    uint64_t last_log_ms, quiet_failures;
    lv_stream_put_t puts[BATCH_MAX];
    published_t pub;
} __attribute__((aligned(64)));

enum { ERR_EAGAIN, ERR_ENOSPC, ERR_EIO, ERR_ENOENT, ERR_ESHUTDOWN, ERR_OTHER, NUM_ERRS };

struct lv_capture {
    const lv_config_capture_t *cfg;
    const char *stream_name;
    const char *route_name;
    lv_streams_t *streams;
    unsigned nloops;
    uint64_t limit_bytes;
    capture_loop_t *loops;
    lv_counter_t *records, *dropped, *shed, *shed_all, *errors[NUM_ERRS];
};

static void publish(capture_loop_t *L)
{
    __atomic_store_n(&L->pub.records, L->held_records, __ATOMIC_RELAXED);
    __atomic_store_n(&L->pub.bytes, L->budget.used, __ATOMIC_RELAXED);
    __atomic_store_n(&L->pub.reserved, L->budget.reserved / LV_CAPTURE_SLOT_BYTES, __ATOMIC_RELAXED);
}

static capture_loop_t *loop_state(lv_capture_t *c, lv_loop_t *loop)
{
    unsigned i = lv_loop_index(loop);
    capture_loop_t *L = &c->loops[i < c->nloops ? i : 0];
    L->loop = loop;
    return L;
}

static batch_t *batch_get(capture_loop_t *L)
{
    batch_t *b = L->spare;
    if (b) {
        L->spare = NULL;
    } else {
        b = lv_malloc(sizeof *b);
        b->bytes = LV_BUF_INIT;
    }
    b->link = (lv_list_t){0};
    b->owner = L;
    b->n = 0;
    b->charged = 0;
    b->shards_of = 0;
    lv_buf_clear(&b->bytes);
    return b;
}

static void batch_free(batch_t *b)
{
    lv_buf_free(&b->bytes);
    free(b);
}

/* The batch's records are acknowledged (or given up): out of the buffer. */
static void batch_done(capture_loop_t *L, batch_t *b)
{
    lv_capture_budget_release(&L->budget, b->charged);
    L->held_records -= b->n;
    publish(L);
    /* Keep one for reuse, unless a burst grew it past what a batch of
     * ordinary records needs. */
    if (!L->spare && b->bytes.capacity <= 4u * 1024 * 1024)
        L->spare = b;
    else
        batch_free(b);
}

static int err_index(int err)
{
    switch (err) {
    case EAGAIN: return ERR_EAGAIN;
    case ENOSPC: return ERR_ENOSPC;
    case EIO: return ERR_EIO;
    case ENOENT: return ERR_ENOENT;
    case ESHUTDOWN: return ERR_ESHUTDOWN;
    default: return ERR_OTHER;
    }
}

static void log_failure(capture_loop_t *L, int err)
{
    if (err == EAGAIN)
        return; /* the stream is busy: that is what the buffer is for */
    uint64_t now = lv_loop_now_ms(L->loop);
    if (L->last_log_ms && now - L->last_log_ms < LOG_EVERY_MS) {
        L->quiet_failures++;
        return;
    }
    lv_log_warn("capture", "route %s: appending to stream %s failed: %s (%llu more since the last message); "
                "records stay buffered and are retried",
                L->cap->route_name, L->cap->stream_name, strerror(err), (unsigned long long)L->quiet_failures);
    L->last_log_ms = now ? now : 1;
    L->quiet_failures = 0;
}

static void flush(capture_loop_t *L);

static void on_timer(lv_loop_t *loop, lv_timer_t *t)
{
    capture_loop_t *L = t->data;
    (void)loop;
    L->backing_off = false; /* the wait is over; a new refusal starts another */
    flush(L);
}

/* The stream said no: try again after the backoff (a flush already due
 * sooner waits for it too, so a refusing stream is not asked again every
 * millisecond). */
static void retry_later(capture_loop_t *L)
{
    if (L->closed || (L->backing_off && lv_timer_armed(&L->timer)))
        return;
    L->backing_off = true;
    lv_timer_start(L->loop, &L->timer, L->backoff_ms);
    L->backoff_ms = L->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : L->backoff_ms * 2;
}

static void drop_stream(capture_loop_t *L)
{
    if (L->stream)
        lv_stream_unref(L->stream);
    L->stream = NULL;
}

/* Runs on the loop that appended the batch, once the stream has
 * acknowledged or failed all of it. */
static void on_appended(void *arg, const lv_stream_put_result_t *results, size_t n)
{
    batch_t *b = arg;
    capture_loop_t *L = b->owner;
    lv_capture_t *c = L->cap;
    lv_list_remove(&b->link);
    int err = 0;
    for (size_t i = 0; i < n && !err; i++)
        err = results[i].err;
    if (!err) {
        lv_counter_add(c->records, b->n);
        batch_done(L, b);
        return;
    }
    lv_counter_inc(c->errors[err_index(err)]);
    log_failure(L, err);
    if (err == ENOENT)
        drop_stream(L); /* deleted: find it again by name, it may be re-created */
    /* Back to the head of the queue: it is older than what waits. */
    lv_list_insert_before(L->waiting.next, &b->link);
    retry_later(L);
}

static void compute_shards(capture_loop_t *L, batch_t *b, lv_stream_info_t info)
{
    for (size_t i = 0; i < b->n; i++) {
        unsigned __int128 hash;
        if (info.shards <= 1) {
            b->shard[i] = 0;
            continue;
        }
        if (b->recs[i].random_shard) {
            hash = (unsigned __int128)lv_random64() << 64 | lv_random64();
        } else {
            lv_slice_t key = lv_slice(lv_buf_data(&b->bytes) + b->recs[i].key_off, b->recs[i].key_len);
            hash = lv_stream_hash_key(key);
        }
        b->shard[i] = lv_stream_shard_for(L->stream, hash);
    }
    b->shards_of = info.id;
}

/* Appends the waiting batches in order until the stream says no. */
static void flush(capture_loop_t *L)
{
    lv_capture_t *c = L->cap;
    /* After close, only the loop's own last iteration may append: a loop
     * being freed runs leftover callbacks on another thread, and an append
     * from there would have its answer posted to a loop that is gone. */
    if (L->closed && lv_loop_current() != L->loop)
        return;
    if (L->open && L->open->n) {
        lv_list_push_back(&L->waiting, &L->open->link);
        L->open = NULL;
    }
    while (!lv_list_empty(&L->waiting)) {
        if (!L->stream && c->streams)
            L->stream = lv_streams_find(c->streams, lv_slice_cstr(c->stream_name));
        if (!L->stream) {
            retry_later(L);
            return;
        }
        batch_t *b = lv_list_entry(L->waiting.next, batch_t, link);
        lv_stream_info_t info = lv_stream_info(L->stream);
        if (b->shards_of != info.id || !info.id)
            compute_shards(L, b, info);
        const char *base = lv_buf_data(&b->bytes);
        for (size_t i = 0; i < b->n; i++)
            L->puts[i] = (lv_stream_put_t){
                .shard = b->shard[i],
                .partition_key = lv_slice(base + b->recs[i].key_off, b->recs[i].key_len),
                .data = lv_slice(base + b->recs[i].data_off, b->recs[i].data_len),
            };
        lv_list_remove(&b->link);
        lv_list_push_back(&L->in_flight, &b->link);
        int rc = lv_stream_append(L->stream, L->puts, b->n, L->loop, on_appended, b);
        if (rc < 0)
            rc = -rc;
        if (rc == 0) {
            L->backoff_ms = RETRY_FIRST_MS;
            L->backing_off = false;
            continue;
        }
        lv_list_remove(&b->link);
        lv_counter_inc(c->errors[err_index(rc)]);
        if (rc == EINVAL) {
            /* Records this module built and the stream calls invalid: a
             * bug on one side, and retrying cannot help. */
            lv_log_error("capture", "route %s: stream %s refused a batch of %zu records as invalid; dropped",
                         c->route_name, c->stream_name, b->n);
            lv_counter_add(c->dropped, b->n);
            batch_done(L, b);
            continue;
        }
        lv_list_insert_before(L->waiting.next, &b->link);
        log_failure(L, rc);
        if (rc == ENOENT)
            drop_stream(L);
        retry_later(L);
        return;
    }
}

/* ---- the capture ----------------------------------------------------------- */

static double buffer_records(void *arg)
{
    lv_capture_stats_t st;
    lv_capture_stats(arg, &st);
    return (double)st.buffer_records;
}

lv_capture_t *lv_capture_new(const lv_config_t *cfg, const lv_config_capture_t *capture, const char *route_name,
                             uint64_t buffer_bytes, unsigned nloops, lv_metrics_t *metrics)
{
    if (!capture->enabled || capture->stream < 0 || (size_t)capture->stream >= cfg->num_streams)
        return NULL;
    const lv_config_stream_t *sc = &cfg->streams[capture->stream];
    lv_capture_t *c = lv_calloc(1, sizeof *c);
    c->cfg = capture;
    c->stream_name = sc->name;
    c->route_name = route_name;
    c->nloops = nloops ? nloops : 1;
    uint64_t share;
    if (buffer_bytes) {
        share = buffer_bytes / c->nloops;
        if (share < LV_CAPTURE_SLOT_BYTES)
            share = LV_CAPTURE_SLOT_BYTES;
    } else {
        share = sc->max_pending_bytes / c->nloops;
        if (share < LV_CAPTURE_MIN_LOOP_BUFFER)
            share = LV_CAPTURE_MIN_LOOP_BUFFER;
    }
    c->limit_bytes = share * c->nloops;
    c->loops = aligned_alloc(64, sizeof *c->loops * c->nloops);
    if (!c->loops)
        abort();
    memset(c->loops, 0, sizeof *c->loops * c->nloops);
    for (unsigned i = 0; i < c->nloops; i++) {
        capture_loop_t *L = &c->loops[i];
        L->cap = c;
        L->budget.limit = share;
        L->backoff_ms = RETRY_FIRST_MS;
        L->timer = (lv_timer_t){.cb = on_timer, .data = L};
        lv_list_init(&L->waiting);
        lv_list_init(&L->in_flight);
    }

    char esc[512], labels[640];
    lv_metrics_label_escape(route_name, esc, sizeof esc);
    snprintf(labels, sizeof labels, "route=\"%s\"", esc);
    c->records = lv_metrics_counter(metrics, "levee_capture_records_total",
                                    "Captured records acknowledged by the stream, by route.", labels);
    c->dropped = lv_metrics_counter(metrics, "levee_capture_dropped_total",
                                    "Captured records dropped (on_full: drop with the buffer full), by route.", labels);
    c->shed = lv_metrics_counter(metrics, "levee_capture_shed_total",
                                 "Requests answered 503 because the capture buffer was full (on_full: shed_request).",
                                 labels);
    lv_metrics_gauge_fn(metrics, "levee_capture_buffer_records",
                        "Captured records held until the stream acknowledges them, by route.", labels,
                        buffer_records, c);
    static const char *const errs[NUM_ERRS] = {"EAGAIN", "ENOSPC", "EIO", "ENOENT", "ESHUTDOWN", "other"};
    for (int i = 0; i < NUM_ERRS; i++) {
        snprintf(labels, sizeof labels, "route=\"%s\",error=\"%s\"", esc, errs[i]);
        c->errors[i] = lv_metrics_counter(metrics, "levee_capture_append_errors_total",
                                          "Stream appends of captured records refused or failed, by route and error.",
                                          labels);
    }
    snprintf(labels, sizeof labels, "route=\"%s\",reason=\"capture\"", esc);
    c->shed_all = lv_metrics_counter(metrics, "levee_shed_total", "Requests answered 503 by admission, by reason.",
                                     labels);
    return c;
}

void lv_capture_set_streams(lv_capture_t *c, lv_streams_t *streams)
{
    c->streams = streams;
}

bool lv_capture_reserve(lv_capture_t *c, lv_loop_t *loop)
{
    if (c->cfg->on_full == LV_CAPTURE_DROP)
        return true;
    capture_loop_t *L = loop_state(c, loop);
    if (lv_capture_budget_reserve(&L->budget)) {
        publish(L);
        return true;
    }
    lv_counter_inc(c->shed);
    lv_counter_inc(c->shed_all);
    return false;
}

void lv_capture_submit(lv_capture_t *c, lv_loop_t *loop, lv_capture_snapshot_t *s)
{
    capture_loop_t *L = loop_state(c, loop);
    char request_id[LV_UUID_LEN + 1];
    lv_uuid4(request_id);
    s->f.request_id = lv_slice(request_id, LV_UUID_LEN);
    lv_slice_t key = s->key.len ? s->key : s->f.request_id;

    if (!L->open)
        L->open = batch_get(L);
    batch_t *b = L->open;
    lv_buf_t *buf = &b->bytes;
    size_t key_off = lv_buf_len(buf);
    lv_buf_reserve(buf, key.len + LV_CAPTURE_MAX_RECORD);
    memcpy(lv_buf_tail(buf), key.ptr, key.len);
    lv_buf_commit(buf, key.len);
    size_t data_len = lv_capture_record(&s->f, buf);
    uint64_t charge = key.len + data_len + LV_CAPTURE_RECORD_OVERHEAD;
    bool had_slot = c->cfg->on_full == LV_CAPTURE_SHED;
    if (!lv_capture_budget_charge(&L->budget, charge, had_slot)) {
        buf->end = buf->start + key_off; /* take the record back out */
        lv_counter_inc(c->dropped);
        publish(L);
        return;
    }
    b->recs[b->n++] = (rec_ref_t){(uint32_t)key_off, (uint32_t)key.len, (uint32_t)(key_off + key.len),
                                  (uint32_t)data_len, s->key.len == 0};
    b->charged += charge;
    L->held_records++;
    publish(L);

    if (b->n == BATCH_MAX || L->closed) {
        /* A full batch goes now (unless the stream is being waited for);
         * after close the loop may not run another iteration. */
        lv_list_push_back(&L->waiting, &b->link);
        L->open = NULL;
        if (!(L->backing_off && lv_timer_armed(&L->timer)) || L->closed)
            flush(L);
        return;
    }
    if (!lv_timer_armed(&L->timer))
        lv_timer_start(loop, &L->timer, FLUSH_MS);
}

void lv_capture_close_loop(lv_capture_t *c, lv_loop_t *loop)
{
    capture_loop_t *L = loop_state(c, loop);
    lv_timer_stop(&L->timer);
    L->closed = true;
    flush(L);
}

static uint64_t free_list(lv_list_t *head)
{
    uint64_t lost = 0;
    while (!lv_list_empty(head)) {
        batch_t *b = lv_list_entry(head->next, batch_t, link);
        lv_list_remove(&b->link);
        lost += b->n;
        batch_free(b);
    }
    return lost;
}

void lv_capture_free(lv_capture_t *c)
{
    if (!c)
        return;
    uint64_t lost = 0;
    for (unsigned i = 0; i < c->nloops; i++) {
        capture_loop_t *L = &c->loops[i];
        lv_timer_stop(&L->timer);
        if (L->open) {
            lost += L->open->n;
            batch_free(L->open);
        }
        if (L->spare)
            batch_free(L->spare);
        lost += free_list(&L->waiting);
        lost += free_list(&L->in_flight);
        drop_stream(L);
    }
    if (lost) {
        lv_counter_add(c->dropped, lost);
        lv_log_warn("capture", "route %s: %llu captured records were never acknowledged by stream %s (lost at shutdown)",
                    c->route_name, (unsigned long long)lost, c->stream_name);
    }
    free(c->loops);
    free(c);
}

void lv_capture_stats(const lv_capture_t *c, lv_capture_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->records = lv_counter_value(c->records);
    out->dropped = lv_counter_value(c->dropped);
    out->shed = lv_counter_value(c->shed);
    for (int i = 0; i < NUM_ERRS; i++)
        out->append_errors += lv_counter_value(c->errors[i]);
    for (unsigned i = 0; i < c->nloops; i++) {
        const published_t *p = &c->loops[i].pub;
        out->buffer_records += __atomic_load_n(&p->records, __ATOMIC_RELAXED);
        out->buffer_bytes += __atomic_load_n(&p->bytes, __ATOMIC_RELAXED);
        out->reserved += __atomic_load_n(&p->reserved, __ATOMIC_RELAXED);
    }
    out->limit_bytes = c->limit_bytes;
}

const lv_config_capture_t *lv_capture_config(const lv_capture_t *c)
{
    return c->cfg;
}

const char *lv_capture_stream_name(const lv_capture_t *c)
{
    return c->stream_name;
}
