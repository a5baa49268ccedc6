/* breaker.c: the circuit breaker, the retry budget and jittered backoff
 * (behaviour and guarantees in breaker.h).
 *
 * How the breaker stays cheap under load: its state and its deadline are
 * atomics, so the decisions that happen on every request (let through while
 * CLOSED, refuse while OPEN or while a probe is out, ignore a success) are
 * an atomic load or two and never block. Only a change of state, a failure
 * or a deadline that has passed takes the mutex, and those paths re-check
 * the state under it. So at most one caller can turn OPEN into HALF_OPEN:
 * that caller holds the only probe. A fast path that raced with a change
 * can only refuse a request the breaker was refusing a moment before, never
 * let an extra one through while OPEN.
 *
 * The deadline means "when a probe may go" while OPEN and "when the
 * outstanding probe is presumed lost" while HALF_OPEN; it is always written
 * before the state (release) and read after it (acquire).
 *
 * The retry budget counts first attempts lock-free: each one-second bucket
 * is one 64-bit word holding (second << 24 | count), updated by CAS, so a
 * bucket is reset and counted in one step and readers never see a count
 * belonging to another second. Retries are rare (only after a failure), so
 * their ring and the minimum token bucket live under a mutex. */
#include "gateway/breaker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/mem.h"

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define MAX_SPAN_MS (365ll * 24 * 3600 * 1000)

/* ---- circuit breaker ---- */

/* Enough buckets that the window is exact to 5%, few enough that summing
 * them on each failure costs nothing. */
#define BREAKER_BUCKETS 20

typedef struct {
    uint64_t epoch; /* now / bucket_ns of the failures counted here */
    uint32_t count;
} failure_bucket_t;

struct lv_breaker {
    _Atomic int state;           /* lv_breaker_state_t */
    _Atomic uint64_t deadline_ns; /* see the file comment */
    _Atomic uint64_t opened, probes, rejected;
    unsigned failures; /* the parameters never change after creation */
    uint64_t open_for_ns, bucket_ns, probe_lost_ns;

    pthread_mutex_t lock; /* guards the fields below and every state change */
    uint64_t latest_ns;   /* the newest now_ns seen under the lock */
    failure_bucket_t buckets[BREAKER_BUCKETS];
};

static uint64_t clamp_span_ns(int64_t ms)
{
    if (ms < 1)
        ms = 1;
    if (ms > MAX_SPAN_MS)
        ms = MAX_SPAN_MS;
    return (uint64_t)ms * NS_PER_MS;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

lv_breaker_t *lv_breaker_new(unsigned failures, int64_t window_ms, int64_t open_for_ms)
{
    lv_breaker_t *b = lv_calloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    b->failures = failures ? failures : 1;
    uint64_t window_ns = clamp_span_ns(window_ms);
    /* Rounded down, so that 20 buckets never span more than the window. */
    b->bucket_ns = window_ns / BREAKER_BUCKETS;
    if (b->bucket_ns == 0)
        b->bucket_ns = 1;
    b->open_for_ns = clamp_span_ns(open_for_ms);
    uint64_t lost_ns = (uint64_t)LV_BREAKER_PROBE_LOST_MS * NS_PER_MS;
    b->probe_lost_ns = b->open_for_ns > lost_ns ? b->open_for_ns : lost_ns;
    atomic_init(&b->state, LV_BREAKER_CLOSED);
    atomic_init(&b->deadline_ns, 0);
    atomic_init(&b->opened, 0);
    atomic_init(&b->probes, 0);
    atomic_init(&b->rejected, 0);
    return b;
}

void lv_breaker_free(lv_breaker_t *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Under the lock: a now_ns that never goes backwards. */
static uint64_t monotonic_now(lv_breaker_t *b, uint64_t now_ns)
{
    if (now_ns < b->latest_ns)
        return b->latest_ns;
    b->latest_ns = now_ns;
    return now_ns;
}

/* Under the lock. The deadline is stored first so that a lock-free reader
 * that sees the new state also sees its deadline. */
static void set_state(lv_breaker_t *b, lv_breaker_state_t st, uint64_t deadline_ns)
{
    atomic_store_explicit(&b->deadline_ns, deadline_ns, memory_order_relaxed);
    atomic_store_explicit(&b->state, (int)st, memory_order_release);
}

static void clear_window(lv_breaker_t *b)
{
    for (size_t i = 0; i < BREAKER_BUCKETS; i++)
        b->buckets[i].count = 0;
}

static void open_breaker(lv_breaker_t *b, uint64_t now)
{
    clear_window(b);
    atomic_fetch_add_explicit(&b->opened, 1, memory_order_relaxed);
    set_state(b, LV_BREAKER_OPEN, add_sat(now, b->open_for_ns));
}

static void hand_out_probe(lv_breaker_t *b, uint64_t now)
{
    atomic_fetch_add_explicit(&b->probes, 1, memory_order_relaxed);
    set_state(b, LV_BREAKER_HALF_OPEN, add_sat(now, b->probe_lost_ns));
}

/* Under the lock, while CLOSED: counts one failure and opens the breaker
 * when the window now holds `failures` of them. */
static void count_failure(lv_breaker_t *b, uint64_t now)
{
    uint64_t epoch = now / b->bucket_ns;
    failure_bucket_t *slot = &b->buckets[epoch % BREAKER_BUCKETS];
    if (slot->epoch != epoch) {
        slot->epoch = epoch;
        slot->count = 0;
    }
    slot->count++;
    /* Time never goes backwards under the lock, so no bucket is newer than
     * epoch and the subtraction cannot wrap. */
    uint64_t total = 0;
    for (size_t i = 0; i < BREAKER_BUCKETS; i++)
        if (epoch - b->buckets[i].epoch < BREAKER_BUCKETS)
            total += b->buckets[i].count;
    if (total >= b->failures)
        open_breaker(b, now);
}

static bool refuse(lv_breaker_t *b)
{
    atomic_fetch_add_explicit(&b->rejected, 1, memory_order_relaxed);
    return false;
}

bool lv_breaker_allow(lv_breaker_t *b, uint64_t now_ns, bool *probe)
{
    bool dummy;
    if (!probe)
        probe = &dummy;
    *probe = false;
    if (!b)
        return true;
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    if (st == LV_BREAKER_CLOSED)
        return true;
    if (now_ns < atomic_load_explicit(&b->deadline_ns, memory_order_relaxed))
        return refuse(b);

    /* The deadline passed: a probe may go, but only one caller may send it. */
    pthread_mutex_lock(&b->lock);
    uint64_t now = monotonic_now(b, now_ns);
    bool allowed;
    st = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (st == LV_BREAKER_CLOSED) {
        allowed = true;
    } else if (now >= atomic_load_explicit(&b->deadline_ns, memory_order_relaxed)) {
        /* OPEN long enough, or HALF_OPEN with a probe presumed lost. */
        hand_out_probe(b, now);
        *probe = true;
        allowed = true;
    } else {
        allowed = refuse(b);
    }
    pthread_mutex_unlock(&b->lock);
    return allowed;
}

void lv_breaker_record(lv_breaker_t *b, uint64_t now_ns, bool success, bool probe)
{
    /* A success outside a probe changes nothing in any state: the window
     * counts only failures, and only the probe may close the breaker. */
    if (!b || (success && !probe))
        return;
    pthread_mutex_lock(&b->lock);
    uint64_t now = monotonic_now(b, now_ns);
    int st = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (probe && st == LV_BREAKER_HALF_OPEN) {
        if (success) {
            clear_window(b);
            set_state(b, LV_BREAKER_CLOSED, 0);
        } else {
            open_breaker(b, now);
        }
    } else if (!success && st == LV_BREAKER_CLOSED) {
        /* Also a probe that was presumed lost and reports after another
         * probe closed the breaker: by then it is an ordinary request. */
        count_failure(b, now);
    }
    pthread_mutex_unlock(&b->lock);
}

lv_breaker_state_t lv_breaker_state(lv_breaker_t *b, uint64_t now_ns)
{
    if (!b)
        return LV_BREAKER_CLOSED;
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    if (st == LV_BREAKER_OPEN && now_ns >= atomic_load_explicit(&b->deadline_ns, memory_order_relaxed))
        return LV_BREAKER_HALF_OPEN;
    return (lv_breaker_state_t)st;
}

const char *lv_breaker_state_name(lv_breaker_state_t st)
{
    switch (st) {
    case LV_BREAKER_CLOSED:
        return "closed";
    case LV_BREAKER_OPEN:
        return "open";
    case LV_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

unsigned lv_breaker_retry_after(lv_breaker_t *b, uint64_t now_ns)
{
    if (!b)
        return 1;
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    uint64_t deadline = atomic_load_explicit(&b->deadline_ns, memory_order_relaxed);
    if (st != LV_BREAKER_OPEN || now_ns >= deadline)
        return 1;
    /* Never more than open_for (at most 365 days, so the seconds fit an
     * unsigned), even for a now_ns older than the opening. */
    uint64_t left = deadline - now_ns;
    if (left > b->open_for_ns)
        left = b->open_for_ns;
    return (unsigned)((left + NS_PER_S - 1) / NS_PER_S);
}

void lv_breaker_stats(lv_breaker_t *b, lv_breaker_stats_t *out)
{
    if (!out)
        return;
    if (!b) {
        *out = (lv_breaker_stats_t){0};
        return;
    }
    out->opened = atomic_load_explicit(&b->opened, memory_order_relaxed);
    out->probes = atomic_load_explicit(&b->probes, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&b->rejected, memory_order_relaxed);
}

/* ---- retry budget ---- */

/* Ten one-second buckets: a window of 9 to 10 s, coarse enough that a
 * burst of failures cannot reset it and fine enough to recover quickly. */
#define BUDGET_BUCKETS 10
#define COUNT_BITS 24
#define COUNT_MAX ((1ull << COUNT_BITS) - 1)
#define MAX_BUDGET_PARAM 1e6

typedef struct {
    uint64_t second;
    uint64_t count;
} retry_bucket_t;

struct lv_retry_budget {
    double ratio, min_per_s, min_depth; /* never change after creation */
    /* First attempts per second: (second << COUNT_BITS) | count. A second
     * fits in 40 bits for any uint64_t now_ns. */
    _Atomic uint64_t requests[BUDGET_BUCKETS];
    _Atomic uint64_t granted, denied;

    pthread_mutex_t lock; /* guards the fields below */
    retry_bucket_t retries[BUDGET_BUCKETS]; /* retries granted from the ratio */
    double tokens;                          /* the minimum's token bucket */
    uint64_t refilled_ns;
    bool started;
    uint64_t latest_ns;
};

static double sane_param(double v)
{
    if (!(v > 0)) /* also NaN */
        return 0;
    return v > MAX_BUDGET_PARAM ? MAX_BUDGET_PARAM : v;
}

lv_retry_budget_t *lv_retry_budget_new(double ratio, double min_per_s)
{
    lv_retry_budget_t *r = lv_calloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->ratio = sane_param(ratio);
    r->min_per_s = sane_param(min_per_s);
    r->min_depth = r->min_per_s > 0 && r->min_per_s < 1 ? 1 : r->min_per_s;
    for (size_t i = 0; i < BUDGET_BUCKETS; i++)
        atomic_init(&r->requests[i], 0);
    atomic_init(&r->granted, 0);
    atomic_init(&r->denied, 0);
    return r;
}

void lv_retry_budget_free(lv_retry_budget_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void lv_retry_budget_request(lv_retry_budget_t *r, uint64_t now_ns)
{
    if (!r)
        return;
    uint64_t second = now_ns / NS_PER_S;
    _Atomic uint64_t *slot = &r->requests[second % BUDGET_BUCKETS];
    uint64_t old = atomic_load_explicit(slot, memory_order_relaxed);
    for (;;) {
        uint64_t old_second = old >> COUNT_BITS, next;
        if (old_second >= second) {
            /* This second, or (from a thread whose clock lags by ten
             * seconds or more) a newer one: count it there. */
            if ((old & COUNT_MAX) == COUNT_MAX)
                return;
            next = old + 1;
        } else {
            next = (second << COUNT_BITS) | 1;
        }
        if (atomic_compare_exchange_weak_explicit(slot, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

/* First attempts in the window ending at `second` (buckets from a lagging
 * clock's future count too: they are recent). */
static uint64_t recent_requests(lv_retry_budget_t *r, uint64_t second)
{
    uint64_t total = 0;
    for (size_t i = 0; i < BUDGET_BUCKETS; i++) {
        uint64_t w = atomic_load_explicit(&r->requests[i], memory_order_relaxed);
        if ((w >> COUNT_BITS) + BUDGET_BUCKETS > second)
            total += w & COUNT_MAX;
    }
    return total;
}

/* Under the lock: ratio-funded retries in the window ending at `second`. */
static uint64_t recent_retries(lv_retry_budget_t *r, uint64_t second)
{
    uint64_t total = 0;
    for (size_t i = 0; i < BUDGET_BUCKETS; i++)
        if (second - r->retries[i].second < BUDGET_BUCKETS)
            total += r->retries[i].count;
    return total;
}

/* Under the lock: takes one token from the minimum's bucket if it has one. */
static bool take_minimum(lv_retry_budget_t *r, uint64_t now)
{
    if (r->min_per_s <= 0)
        return false;
    if (!r->started) {
        r->started = true;
        r->tokens = r->min_depth;
    } else {
        r->tokens += (double)(now - r->refilled_ns) / (double)NS_PER_S * r->min_per_s;
        if (r->tokens > r->min_depth)
            r->tokens = r->min_depth;
    }
    r->refilled_ns = now;
    if (r->tokens < 1)
        return false;
    r->tokens -= 1;
    return true;
}

bool lv_retry_budget_try(lv_retry_budget_t *r, uint64_t now_ns)
{
    if (!r)
        return true;
    pthread_mutex_lock(&r->lock);
    if (now_ns < r->latest_ns)
        now_ns = r->latest_ns;
    r->latest_ns = now_ns;
    uint64_t second = now_ns / NS_PER_S;

    double allowance = r->ratio * (double)recent_requests(r, second);
    /* The tolerance keeps products such as 0.29 * 100 = 28.999... whole. */
    bool ok = (double)(recent_retries(r, second) + 1) <= allowance * (1 + 1e-12) + 1e-9;
    if (ok) {
        retry_bucket_t *slot = &r->retries[second % BUDGET_BUCKETS];
        if (slot->second != second) {
            slot->second = second;
            slot->count = 0;
        }
        slot->count++;
    } else {
        ok = take_minimum(r, now_ns);
    }
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_add_explicit(ok ? &r->granted : &r->denied, 1, memory_order_relaxed);
    return ok;
}

void lv_retry_budget_stats(lv_retry_budget_t *r, lv_retry_budget_stats_t *out)
{
    if (!out)
        return;
    if (!r) {
        *out = (lv_retry_budget_stats_t){0};
        return;
    }
    out->granted = atomic_load_explicit(&r->granted, memory_order_relaxed);
    out->denied = atomic_load_explicit(&r->denied, memory_order_relaxed);
}

/* ---- backoff ---- */

int64_t lv_retry_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, double random01)
{
    if (base_ms <= 0 || cap_ms <= 0)
        return 0;
    if (attempt == 0)
        attempt = 1;
    int64_t ceiling = base_ms < cap_ms ? base_ms : cap_ms;
    /* Doubling stops at the cap, so this runs at most 63 times and never
     * overflows. */
    for (unsigned i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms - ceiling ? cap_ms : ceiling * 2;
    if (!(random01 > 0)) /* also NaN */
        return 0;
    if (random01 >= 1)
        random01 = 0x1.fffffffffffffp-1; /* the largest double below 1 */
    /* random01 < 1, so the product stays below 2^63 even when rounding
     * ceiling to a double rounds it up; the clamp undoes that rounding. */
    int64_t v = (int64_t)(random01 * (double)ceiling);
    return v >= ceiling ? ceiling - 1 : v;
}
