/* metrics.h: counters, gauges and histograms, rendered as Prometheus text
 * (for /metrics) and as JSON (for /status).
 *
 * Updates run on the hot path of every event-loop thread, millions of times a
 * second, so they cost about what a plain increment costs: no lock, no atomic
 * read-modify-write on a line another thread writes. Every series has one slot
 * per loop thread plus one shared slot. Memory is laid out as per-thread
 * blocks: thread t's slots of many series sit together in lines no other
 * thread writes. A loop thread (one that called lv_metrics_thread_init)
 * updates its own slot with a relaxed atomic load and store, which is a plain
 * load and store on x86; any other thread adds to the shared slot with an
 * atomic add. A scrape sums all slots. It may miss an update that is still in
 * flight, but it never sees a torn value and no update is ever lost.
 *
 * Registration happens mostly at start-up and is not fast: it validates the
 * name and labels and looks the series up. A name or label set that would
 * produce invalid exposition text, or a type that conflicts with an earlier
 * registration, is logged as an error. In that case the caller still gets a
 * working series that is never rendered, so a mistake never takes the process
 * down and never corrupts /metrics.
 *
 * Ownership: the registry owns every series. The lv_counter_t, lv_gauge_t and
 * lv_histogram_t pointers it hands out stay valid until lv_metrics_free.
 * Registration copies the strings it is given.
 *
 * Threads: registration and rendering take the registry's mutex and may run on
 * any thread. Updates and the *_value readers take no lock and may run on any
 * thread. */
#ifndef LV_METRICS_METRICS_H
#define LV_METRICS_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct lv_metrics lv_metrics_t;
typedef struct lv_counter lv_counter_t;
typedef struct lv_gauge lv_gauge_t;
typedef struct lv_histogram lv_histogram_t;

/* Creates an empty registry for nthreads loop threads (clamped to
 * LV_METRICS_MAX_THREADS). Threads with an index at or above nthreads, and
 * threads that never called lv_metrics_thread_init, use the shared slot. */
#define LV_METRICS_MAX_THREADS 1024u
lv_metrics_t *lv_metrics_new(unsigned nthreads);

/* Frees the registry and every series. All handles become invalid, and no
 * thread may still be updating them. */
void lv_metrics_free(lv_metrics_t *m);

/* Sets which slot the calling thread updates, in every registry. Call it
 * once on each loop thread with index < nthreads. Each index may be used by
 * only one running thread at a time, because the owner of a slot writes it
 * without an atomic add. LV_METRICS_SHARED_SLOT puts the thread back on the
 * shared slot. */
#define LV_METRICS_SHARED_SLOT ((unsigned)-1)
void lv_metrics_thread_init(unsigned index);

/* Registration. name is the full metric name without labels, e.g.
 * "levee_requests_total", and must match [a-zA-Z_:][a-zA-Z0-9_:]*. help is
 * the HELP text (any text, escaped on output; NULL means none). labels is the
 * label set in Prometheus syntax without braces, e.g.
 * "route=\"GET /x\",class=\"2xx\"", or NULL/"" for none. Label names must
 * match [a-zA-Z_][a-zA-Z0-9_]* and must not start with "__" (reserved).
 * Label values must be valid UTF-8, escaped as lv_metrics_label_escape does.
 *
 * Series with the same name form one family, which gets one HELP and one
 * TYPE line. The first registration sets the family's help. A later different
 * help is logged and ignored. A different type is an error, and the series
 * returned is then never rendered. Registering the same name and labels again
 * returns the same series. The result is never NULL. */
lv_counter_t *lv_metrics_counter(lv_metrics_t *m, const char *name, const char *help, const char *labels);
lv_gauge_t *lv_metrics_gauge(lv_metrics_t *m, const char *name, const char *help, const char *labels);

/* A gauge whose value fn(arg) computes at scrape time (cache bytes, open
 * connections...). fn runs on the scraping thread with the registry's mutex
 * held, so it must not register metrics. arg must stay valid until
 * lv_metrics_free. Registering the same name and labels again replaces fn and
 * arg. */
void lv_metrics_gauge_fn(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                         double (*fn)(void *arg), void *arg);

/* The same for a counter kept by another module (connections accepted,
 * origin errors...): fn must never decrease. Rendered with TYPE counter. */
void lv_metrics_counter_fn(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                           double (*fn)(void *arg), void *arg);

/* A histogram with upper bounds in seconds, ascending; +Inf is implicit.
 * Bounds are compared at nanosecond precision. Bounds that are not finite, not
 * >= 0, or not above the previous one are dropped with a warning, as is
 * anything past LV_METRICS_MAX_BOUNDS. The label name "le" is reserved. */
#define LV_METRICS_MAX_BOUNDS 64u
lv_histogram_t *lv_metrics_histogram(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds);

/* A default bucket set for request latency, 50 µs .. 10 s (17 bounds). */
extern const double lv_metrics_latency_buckets[];
extern const size_t lv_metrics_latency_nbuckets;

/* Adds n to a counter. */
static inline void lv_counter_add(lv_counter_t *c, uint64_t n);
static inline void lv_counter_inc(lv_counter_t *c);

/* Adds delta (may be negative) to a gauge. Each thread keeps its own running
 * delta and a scrape sums them, so a gauge counts things that come and go
 * (in-flight requests: +1 on start, -1 on end, even on different threads). */
static inline void lv_gauge_add(lv_gauge_t *g, int64_t delta);

/* Records one observation of ns nanoseconds. */
static inline void lv_histogram_observe_ns(lv_histogram_t *h, uint64_t ns);

/* Sums over all threads, for /status and tests. */
uint64_t lv_counter_value(const lv_counter_t *c);
int64_t lv_gauge_value(const lv_gauge_t *g);
uint64_t lv_histogram_count(const lv_histogram_t *h);
uint64_t lv_histogram_sum_ns(const lv_histogram_t *h);

/* Appends the whole registry in the Prometheus text exposition format 0.0.4:
 * families in registration order, each with # HELP and # TYPE, then its
 * series in registration order. Histograms are rendered as cumulative
 * _bucket{le=...} lines ending with le="+Inf", then _sum in seconds and
 * _count. _count is derived from the buckets, so it always equals the +Inf
 * bucket even while other threads are observing. */
void lv_metrics_render(lv_metrics_t *m, lv_buf_t *out);

/* Appends one JSON object {"name{labels}": value, ...} of every counter and
 * gauge (histograms are left out). A gauge_fn value that is NaN or infinite is
 * written as null. */
void lv_metrics_render_json(lv_metrics_t *m, lv_buf_t *out);

/* Escapes a label value for use between the quotes of a label set: backslash,
 * double quote and newline get a backslash, and bytes that are not valid
 * UTF-8 become U+FFFD. Writes at most outlen bytes, NUL included, and
 * truncates between characters, never inside an escape or a UTF-8 sequence.
 * Returns out, or "" when outlen is 0. A NULL value is taken as "". */
const char *lv_metrics_label_escape(const char *value, char *out, size_t outlen);

/* ---- Private: what the inline updates below need. Do not use. ---- */

/* Slots per thread block: 1 KiB. A compile-time constant, so that finding a
 * thread's slot is a shift, not a multiply by a loaded value. */
#define LV_METRICS_BLOCK_SLOTS_ 128u

/* Where a series' slots live: thread t's first slot is
 * first + t * LV_METRICS_BLOCK_SLOTS_, and the shared one is at t == nthreads. */
typedef struct {
    _Atomic uint64_t *first;
    unsigned nthreads;
} lv_metrics_slots_t;

struct lv_counter {
    lv_metrics_slots_t slots_;
};

struct lv_gauge {
    lv_metrics_slots_t slots_;
};

/* Slots 0..nbounds are the bucket counts (not cumulative), with the last one
 * for +Inf. Slot nbounds + 1 is the sum in ns.
 *
 * The bucket search starts from a table indexed by the bit length of ns,
 * k = 64 - clz(ns | 1). ns then lies in the "octave" [2^(k-1), 2^k), or in
 * [0, 2) when k = 1. octave_start_[k] counts the bounds below that octave.
 * What is left is to count the bounds inside the octave that are below ns,
 * at most octave_steps_ of them. That count is the same fixed number of
 * compare-and-add steps for every ns: one step for bucket sets spaced 2x or
 * more apart, as the default latency buckets are. */
struct lv_histogram {
    lv_metrics_slots_t slots_;
    uint32_t nbounds_;
    uint32_t octave_steps_;      /* most bounds in any one octave */
    uint8_t octave_start_[65];   /* by k; index 0 unused */
    uint64_t bounds_ns_[];       /* nbounds_ ascending, then UINT64_MAX */
};

/* This thread's slot index; LV_METRICS_SHARED_SLOT until
 * lv_metrics_thread_init. */
extern _Thread_local unsigned lv_metrics_thread_slot_;

/* Adds n to the slot at offset. On the loop thread that owns the slot, a
 * relaxed load and store are enough: no other thread writes it, and the
 * scraper only reads it. */
__attribute__((always_inline)) static inline void lv_metrics_slot_add_(const lv_metrics_slots_t *s, size_t offset,
                                                                      uint64_t n)
{
    unsigned t = lv_metrics_thread_slot_;
    if (__builtin_expect(t < s->nthreads, 1)) {
        _Atomic uint64_t *p = s->first + (size_t)t * LV_METRICS_BLOCK_SLOTS_ + offset;
        atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(s->first + (size_t)s->nthreads * LV_METRICS_BLOCK_SLOTS_ + offset, n, memory_order_relaxed);
    }
}

static inline void lv_counter_add(lv_counter_t *c, uint64_t n)
{
    lv_metrics_slot_add_(&c->slots_, 0, n);
}

static inline void lv_counter_inc(lv_counter_t *c)
{
    lv_metrics_slot_add_(&c->slots_, 0, 1);
}

static inline void lv_gauge_add(lv_gauge_t *g, int64_t delta)
{
    /* Two's complement wrap-around makes the per-thread sums add up to the
     * signed total. */
    lv_metrics_slot_add_(&g->slots_, 0, (uint64_t)delta);
}

static inline void lv_histogram_observe_ns(lv_histogram_t *h, uint64_t ns)
{
    /* The step count is fixed per histogram, so the loop branch is always
     * predicted and the search costs the same whatever ns is. The
     * UINT64_MAX after the last bound stops the count there. */
    const size_t nbounds = h->nbounds_;
    size_t bucket = h->octave_start_[64 - __builtin_clzll(ns | 1)];
    for (uint32_t i = 0; i < h->octave_steps_; i++)
        bucket += h->bounds_ns_[bucket] < ns;
    const lv_metrics_slots_t *s = &h->slots_;
    unsigned t = lv_metrics_thread_slot_;
    if (__builtin_expect(t < s->nthreads, 1)) {
        _Atomic uint64_t *p = s->first + (size_t)t * LV_METRICS_BLOCK_SLOTS_;
        atomic_store_explicit(p + bucket, atomic_load_explicit(p + bucket, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        _Atomic uint64_t *sum = p + nbounds + 1;
        atomic_store_explicit(sum, atomic_load_explicit(sum, memory_order_relaxed) + ns, memory_order_relaxed);
    } else {
        _Atomic uint64_t *p = s->first + (size_t)s->nthreads * LV_METRICS_BLOCK_SLOTS_;
        atomic_fetch_add_explicit(p + bucket, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(p + nbounds + 1, ns, memory_order_relaxed);
    }
}

#endif
