/* admit.h: admission control for a route — a shared token bucket, per-client
 * token buckets in a bounded table, and a bulkhead (a cap on requests in
 * flight) with a bounded waiting queue and an overload policy.
 *
 * Pure state machines: no sockets, no loop, no clock of their own. Every call
 * takes the caller's monotonic now_ns (lv_clock_ns or lv_loop_now_ns), so
 * tests drive time explicitly. now_ns values from different threads may be
 * slightly out of order (each loop caches its own clock): a bucket judges a
 * take at the time it is given, so a stale time can only be refused more,
 * never admitted more; a bulkhead counts a time earlier than one it has
 * seen as that time. now_ns must stay below 2^60 (36 years of uptime).
 *
 * Threads: everything here may be called from any thread at any time. The
 * token bucket is one atomic word (compare-and-swap, no lock); the client
 * limiter has one mutex per shard; a bulkhead has one mutex. No callback is
 * ever called with a lock held.
 *
 * Retry-After: every refusal comes with a number of whole seconds, at least
 * 1 and at most LV_ADMIT_RETRY_AFTER_MAX, computed from the refill rate
 * (throttles) or the measured rate at which slots free up (bulkhead).
 *
 * Ownership: the caller owns what *_new returns and frees it with the
 * matching *_free once no thread uses it; *_free(NULL) is a no-op. Waiters
 * belong to the caller (usually embedded in its per-request state); the
 * bulkhead only links them while they are queued. */
#ifndef LV_GATEWAY_ADMIT_H
#define LV_GATEWAY_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "core/slice.h"

/* The longest Retry-After any function here returns, in seconds. */
#define LV_ADMIT_RETRY_AFTER_MAX 86400u

/* ---- token bucket (one per route) ---- */

/* Token bucket shared by all threads: it holds at most `burst` tokens,
 * starts full, and is refilled at `rate` tokens per second; each request
 * takes one. Implemented as GCRA (one "theoretical arrival time" word
 * updated by compare-and-swap), which admits exactly what the token bucket
 * admits. rate is clamped to [1e-6, 1e9] and burst to [1, 1e9] (NaN counts
 * as the lower bound). */
typedef struct lv_token_bucket lv_token_bucket_t;

/* Creates a full bucket. Never NULL (aborts on OOM). */
lv_token_bucket_t *lv_token_bucket_new(double rate, double burst);

/* Frees the bucket; no thread may be using it. NULL is a no-op. */
void lv_token_bucket_free(lv_token_bucket_t *b);

/* Takes one token at now_ns. Returns true if taken; otherwise false and
 * *retry_after_s = whole seconds until a token is available (rounded up,
 * >= 1). retry_after_s may be NULL. */
bool lv_token_bucket_take(lv_token_bucket_t *b, uint64_t now_ns, unsigned *retry_after_s);

/* ---- per-client token buckets ---- */

/* A token bucket per client key (an IP, an API key), all with the same rate
 * and burst, in a table that holds at most max_clients keys. When it is full
 * the least recently used key is forgotten to make room. The trade: a
 * forgotten client starts again with a full bucket, so a client that
 * cycles through more than max_clients keys escapes its per-client limit
 * (never the route's own throttle); in exchange memory is fixed, about
 * 100 bytes per key whatever a million distinct keys do. Size max_clients
 * above the number of clients active within burst/rate seconds.
 *
 * Keys are arbitrary bytes and are copied: up to 48 bytes verbatim, longer
 * ones as their SHA-256 digest (so a long API key costs no more memory).
 * The table is split into up to 16 shards by a hash seeded at random (so
 * chosen keys cannot pile into one chain), each with its own lock, its own
 * LRU list and an equal share of max_clients (at least 512 keys, so tables
 * under 1024 keys are one shard with exact LRU order; larger ones are LRU
 * per shard). A take that is refused still counts as a use. */
typedef struct lv_client_limiter lv_client_limiter_t;

/* Creates an empty table; rate and burst are clamped as for
 * lv_token_bucket_new. max_clients 0 means 100000. Never NULL. */
lv_client_limiter_t *lv_client_limiter_new(double rate, double burst, size_t max_clients);

/* Frees the table and every key; no thread may be using it. NULL is a
 * no-op. */
void lv_client_limiter_free(lv_client_limiter_t *l);

/* Takes one token from key's bucket at now_ns, creating the bucket (full)
 * if the key is not held. Same results as lv_token_bucket_take. */
bool lv_client_limiter_take(lv_client_limiter_t *l, lv_slice_t key, uint64_t now_ns, unsigned *retry_after_s);

/* Keys held right now, for metrics (never more than max_clients). */
size_t lv_client_limiter_size(lv_client_limiter_t *l);

/* ---- bulkhead with a bounded queue ---- */

/* At most `concurrency` requests hold a slot at once. When all slots are
 * taken a request may wait in a queue of at most queue_max waiters; a slot
 * that frees up is handed straight to a waiter.
 *
 * Overload policy (CoDel with adaptive LIFO, after Facebook's "Fail at
 * Scale"). The queue is normally FIFO. If its oldest waiter has been
 * waiting longer than `target` continuously for `interval`, the queue is a
 * standing queue, not a burst being absorbed, and the bulkhead is
 * "overloaded" until the oldest waiter is again younger than target (or the
 * queue empties). While overloaded:
 *   - slots go to the newest waiter first (LIFO): a request that just
 *     arrived is likely still wanted and can be served before it goes
 *     stale, instead of every request waiting the whole queue;
 *   - waiters older than 2 x target are shed at once (SHED), so their
 *     clients get a prompt 503 instead of one at the queue timeout;
 *   - a full queue sheds its oldest waiter to make room for a new one.
 * Whatever the mode, a waiter past its deadline (waited longer than
 * queue_timeout) is shed, never granted, so stale work is not started.
 * Defaults: target = queue_timeout / 10 clamped to [5 ms, 1 s] (100 ms
 * without a timeout), interval = 100 ms; see lv_bulkhead_set_overload.
 *
 * Retry-After for a refusal is the time the current queue (plus the new
 * request) needs to drain at the rate slots were freed over the last
 * second or two; with no slot freed in that time, the queue timeout (or 1 s). */
typedef struct lv_bulkhead lv_bulkhead_t;
typedef struct lv_admit_waiter lv_admit_waiter_t;

typedef enum {
    LV_ADMIT_GRANTED, /* the waiter now holds a slot */
    LV_ADMIT_SHED,    /* dropped by the overload policy or its deadline: answer 503 */
} lv_admit_outcome_t;

/* Why a waiter was shed, for metrics. */
typedef enum {
    LV_ADMIT_SHED_OVERLOAD, /* waited over 2 x target while overloaded, or made room in a full queue */
    LV_ADMIT_SHED_EXPIRED,  /* waited over queue_timeout before a slot came */
} lv_admit_shed_reason_t;

/* A request that may wait for a slot. Owned by the caller; it must stay
 * valid from lv_bulkhead_enter returning QUEUED until lv_bulkhead_cancel
 * returns true or on_admit has been called. */
struct lv_admit_waiter {
    /* Called once, from whichever thread frees a slot (or sheds), with no
     * lock held. GRANTED: the waiter now holds a slot and must call
     * lv_bulkhead_leave when done. SHED: it holds nothing. on_admit may
     * free the waiter and may call back into the bulkhead. */
    void (*on_admit)(lv_admit_waiter_t *w, lv_admit_outcome_t outcome);
    uint64_t enqueued_ns;               /* set by lv_bulkhead_enter */
    lv_admit_shed_reason_t shed_reason; /* set just before on_admit(SHED) */
    /* private to the bulkhead */
    lv_list_t link;                     /* in the queue; zero when not queued */
    lv_admit_waiter_t *priv_next;       /* chain of waiters to call after unlock */
};

typedef enum {
    LV_BULKHEAD_ADMITTED, /* holds a slot now: call lv_bulkhead_leave when done */
    LV_BULKHEAD_QUEUED,   /* waits: on_admit will be called (unless cancelled) */
    LV_BULKHEAD_FULL,     /* no queue or the queue is full: answer 503 */
} lv_bulkhead_result_t;

/* Counters. Gauges are marked; the rest only grow. */
typedef struct {
    uint64_t in_flight;           /* gauge: slots held */
    uint64_t queued;              /* gauge: waiters in the queue */
    uint64_t admitted;            /* entered without waiting (ADMITTED) */
    uint64_t queued_total;        /* entered the queue (QUEUED) */
    uint64_t granted;             /* waiters handed a slot (on_admit GRANTED) */
    uint64_t shed_full;           /* refused at enter: no queue or queue full (FULL) */
    uint64_t shed_policy;         /* waiters shed by the overload policy (SHED, OVERLOAD) */
    uint64_t shed_expired;        /* waiters shed past their deadline (SHED, EXPIRED) */
    uint64_t timeouts_or_cancels; /* waiters removed by lv_bulkhead_cancel */
    uint64_t overloaded;          /* gauge: 1 while the overload policy is active */
    uint64_t overload_episodes;   /* times the bulkhead became overloaded */
    uint64_t drain_per_s;         /* gauge: slots freed per second, measured (rounded) */
} lv_bulkhead_stats_t;

/* Creates a bulkhead with the default overload policy. concurrency 0
 * counts as 1. queue_max 0 means no queue (enter is ADMITTED or FULL).
 * queue_timeout_ms <= 0 means waiters have no deadline here (the caller may
 * still cancel them). Never NULL. */
lv_bulkhead_t *lv_bulkhead_new(unsigned concurrency, size_t queue_max, int64_t queue_timeout_ms);

/* Sets the overload policy: target_ms and interval_ms as described above.
 * target_ms 0 turns the policy off (plain FIFO: waiters leave only when
 * granted, expired or cancelled). Call before the bulkhead is shared
 * between threads. */
void lv_bulkhead_set_overload(lv_bulkhead_t *b, int64_t target_ms, int64_t interval_ms);

/* Frees the bulkhead. Every waiter should have been cancelled: any still
 * queued are unlinked and never called. */
void lv_bulkhead_free(lv_bulkhead_t *b);

/* Asks for a slot at now_ns; sets w->enqueued_ns = now_ns. w->on_admit
 * must be set. May shed other waiters (their on_admit runs on this thread
 * before it returns). */
lv_bulkhead_result_t lv_bulkhead_enter(lv_bulkhead_t *b, lv_admit_waiter_t *w, uint64_t now_ns);

/* Frees a slot: hands it to the next waiter (on_admit GRANTED, called on
 * this thread before it returns) or returns it. Waiters past their deadline
 * or shed by the policy get on_admit SHED on this thread too. A leave with
 * no slot held is ignored. */
void lv_bulkhead_leave(lv_bulkhead_t *b, uint64_t now_ns);

/* Removes a queued waiter (its timeout passed or its client left). Returns
 * true if removed (on_admit will not be called); false if it was already
 * granted or shed, or was never queued: then on_admit has been or is about
 * to be called (possibly on another thread), so the caller must wait for it
 * and, if GRANTED, leave. */
bool lv_bulkhead_cancel(lv_bulkhead_t *b, lv_admit_waiter_t *w);

/* Seconds a refused client should wait before retrying: the time the queue
 * and one more request need to drain at the measured rate (ceil, >= 1). */
unsigned lv_bulkhead_retry_after(lv_bulkhead_t *b, uint64_t now_ns);

/* Fills *out with the current counters. */
void lv_bulkhead_stats(lv_bulkhead_t *b, lv_bulkhead_stats_t *out);

#endif
