/* breaker.h: origin protection — a circuit breaker, a retry budget and
 * jittered backoff. Pure state machines: no sockets, no loop, no clock of
 * their own (every call takes the caller's monotonic now_ns, normally
 * lv_loop_now_ns), so tests drive time explicitly.
 *
 * Circuit breaker. CLOSED lets everything through and counts failures in a
 * sliding window; `failures` of them within `window` open it. OPEN refuses
 * everything for `open_for`; then exactly one caller is handed a probe and
 * the state is HALF_OPEN, refusing the rest until the probe reports. A
 * successful probe closes the breaker (with an empty window); a failed one
 * re-opens it for another `open_for`.
 *
 *   CLOSED --failures in window--> OPEN --open_for passed, one allow--> HALF_OPEN
 *     ^                             ^                                    |
 *     +-------- probe succeeded ----|------------------------------------+
 *                                   +--------- probe failed -------------+
 *
 * The window is a ring of 20 buckets, each window/20 long; a failure counts
 * while its bucket is one of the newest 20. So a failure never counts once
 * it is `window` old, and always counts while younger than 19/20 of it: the
 * window is exact to 5%, erring on the short side. Memory is constant
 * whatever `failures` is.
 *
 * Outcomes of requests that were allowed while CLOSED but report after the
 * breaker opened are ignored: only the probe decides when to close. A probe
 * that never reports (a caller bug: every allowed request must be recorded
 * once) is presumed lost after max(open_for, LV_BREAKER_PROBE_LOST_MS) and
 * the next caller gets a new probe, so a breaker can never stay stuck. A
 * probe reporting late is still a probe while the breaker is HALF_OPEN, and
 * an ordinary request once it is CLOSED again.
 *
 * Retry budget. Retries may be at most `ratio` of the first attempts seen
 * over the last 10 seconds (ten one-second buckets: the window is 9 to 10 s
 * long), plus `min_per_s` retries a second (a token bucket holding at most
 * max(1, min_per_s)) so an origin with little traffic can still retry. The
 * ratio part is spent first; the minimum is the fallback.
 *
 * Threads: one breaker and one budget per origin, shared by every loop. All
 * functions are safe from any thread. The common paths take no lock: allow
 * while CLOSED, allow while OPEN or waiting for the probe (refusal), record
 * of a success outside a probe, and budget_request are a few atomic
 * operations. State changes, failures and retry decisions take a small
 * mutex. now_ns values from different threads may be slightly out of order
 * (each loop caches its own clock); a time earlier than one already seen is
 * treated as that time.
 *
 * Ownership: the caller owns what *_new returns and frees it with the
 * matching *_free once no thread uses it. NULL stands for "no protection"
 * everywhere: a NULL breaker allows everything and a NULL budget grants
 * every retry, so callers need not special-case origins without them. */
#ifndef LV_GATEWAY_BREAKER_H
#define LV_GATEWAY_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

/* ---- circuit breaker ---- */

typedef enum { LV_BREAKER_CLOSED, LV_BREAKER_OPEN, LV_BREAKER_HALF_OPEN } lv_breaker_state_t;

typedef struct lv_breaker lv_breaker_t;

/* A probe outstanding for max(open_for, this) is presumed lost. */
#define LV_BREAKER_PROBE_LOST_MS 60000

/* Counters since creation. opened counts every move to OPEN, including a
 * re-open after a failed probe; probes counts probes handed out; rejected
 * counts allow calls answered false. */
typedef struct {
    uint64_t opened, probes, rejected;
} lv_breaker_stats_t;

/* Creates a CLOSED breaker. failures 0 is taken as 1; window_ms and
 * open_for_ms are clamped to [1 ms, 365 days]. */
lv_breaker_t *lv_breaker_new(unsigned failures, int64_t window_ms, int64_t open_for_ms);

/* Frees b (NULL is fine). No other thread may be using it. */
void lv_breaker_free(lv_breaker_t *b);

/* May a request go to the origin now? CLOSED: yes. OPEN: no until open_for
 * has passed, then exactly one caller gets a probe (returns true with
 * *probe = true) and the state is HALF_OPEN; others are refused until the
 * probe reports. *probe is set on every call (probe may be NULL). Every
 * request allowed must later be reported with lv_breaker_record. */
bool lv_breaker_allow(lv_breaker_t *b, uint64_t now_ns, bool *probe);

/* Reports the outcome of an allowed request, passing back the probe flag
 * allow gave it. success false means a failure of the origin (error or
 * timeout). While CLOSED, failures inside the sliding window count toward
 * `failures` and reaching it opens the breaker. A probe's success closes it
 * (and clears the window); a probe's failure re-opens it for another
 * open_for. Other outcomes while not CLOSED are ignored. */
void lv_breaker_record(lv_breaker_t *b, uint64_t now_ns, bool success, bool probe);

/* The state at now_ns, for /status and metrics. An OPEN breaker whose
 * open_for has passed reports HALF_OPEN: the next request will probe. */
lv_breaker_state_t lv_breaker_state(lv_breaker_t *b, uint64_t now_ns);

/* "closed", "open" or "half_open" (for /status and metric labels). */
const char *lv_breaker_state_name(lv_breaker_state_t st);

/* Seconds until the breaker may let a probe through, rounded up, for
 * Retry-After on fast-fail 503s; at least 1 (also when CLOSED or when a
 * probe is already out: its answer may come at any moment). */
unsigned lv_breaker_retry_after(lv_breaker_t *b, uint64_t now_ns);

/* Copies the counters into *out (a consistent-enough snapshot: each
 * counter is read atomically, not all three together). */
void lv_breaker_stats(lv_breaker_t *b, lv_breaker_stats_t *out);

/* ---- retry budget ---- */

typedef struct lv_retry_budget lv_retry_budget_t;

/* Retries granted and refused since creation. */
typedef struct {
    uint64_t granted, denied;
} lv_retry_budget_stats_t;

/* Creates a budget allowing retries of at most ratio (e.g. 0.1) of the
 * first attempts over the last 10 s, plus min_per_s a second. Negative or
 * NaN values are taken as 0; values above 1e6 as 1e6. */
lv_retry_budget_t *lv_retry_budget_new(double ratio, double min_per_s);

/* Frees r (NULL is fine). No other thread may be using it. */
void lv_retry_budget_free(lv_retry_budget_t *r);

/* Counts one first attempt (not a retry). Lock-free. Per-second counts
 * saturate at 16.7 million. */
void lv_retry_budget_request(lv_retry_budget_t *r, uint64_t now_ns);

/* May we retry now? Consumes one retry from the budget when it answers
 * true. */
bool lv_retry_budget_try(lv_retry_budget_t *r, uint64_t now_ns);

/* Copies the counters into *out. */
void lv_retry_budget_stats(lv_retry_budget_t *r, lv_retry_budget_stats_t *out);

/* ---- backoff ---- */

/* Backoff before retry `attempt` (1-based; 0 is taken as 1): full jitter,
 * floor(random01 * ceiling) with ceiling = min(cap_ms, base_ms * 2^(attempt-1)),
 * so the result lies in [0, ceiling) (0 when ceiling is 0). random01 is a
 * uniform random value in [0, 1) from the caller; values outside it (or NaN)
 * are clamped. Never overflows; negative base or cap are taken as 0. */
int64_t lv_retry_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, double random01);

#endif
