/* admit.c: the token bucket, the per-client limiter and the bulkhead
 * declared in admit.h.
 *
 * Token buckets are GCRA (the generic cell rate algorithm). Instead of a
 * token count and a last-refill time, a bucket keeps one number, the
 * "theoretical arrival time" (TAT): the time at which the bucket would be
 * full again. Taking a token pushes TAT one emission interval T = 1/rate
 * further; a take is allowed while TAT - now stays within the tolerance
 * burst x T. That is the token bucket exactly (tokens = (now + burst x T -
 * TAT) / T, capped at burst), but it is a single word, so the shared bucket
 * is one compare-and-swap with no lock, and a refusal writes nothing. Time
 * is kept in eighths of a nanosecond so that T rarely needs rounding
 * (a rate of 3/s or 3e6/s is exact to better than 1e-4); with now below
 * 2^60 ns every sum stays below 2^64.
 *
 * The client limiter keeps one TAT per key in a hash table split into
 * shards, each under its own mutex, each with a fixed share of max_clients
 * and its own LRU list. Entries are fixed-size (a long key is replaced by
 * its SHA-256 digest) and, once a shard is full, the least recently used
 * entry is reused in place: after warm-up a flood of new keys allocates
 * nothing. A shard's bucket array doubles as it fills, up to one bucket per
 * entry.
 *
 * The bulkhead is a counter of slots and an intrusive FIFO of waiters under
 * one mutex (the critical sections are a few dozen instructions, so a lock
 * costs less than getting a lock-free handover right). Every call first
 * "polices" the queue: it sheds waiters past their deadline from the front,
 * updates the CoDel state from the age of the oldest waiter, and while
 * overloaded sheds waiters older than 2 x target. Waiters to call are
 * chained through priv_next and called after unlock; a waiter's link is
 * zeroed under the lock the moment it leaves the queue, which is what makes
 * lv_bulkhead_cancel's answer exact. The drain rate behind Retry-After is a
 * sliding one-second window over leave() calls. */
#include "gateway/admit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/sha.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/mem.h"

/* ---- shared arithmetic ---- */

#define UNITS_PER_NS 8u
#define UNITS_PER_S (UNITS_PER_NS * 1000000000ull)
#define NOW_MAX ((1ull << 60) - 1)
#define TOLERANCE_MAX (1ull << 61)
#define RATE_MIN 1e-6
#define RATE_MAX 1e9
#define BURST_MAX 1e9

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

static unsigned clamp_retry_s(uint64_t s)
{
    if (s < 1)
        return 1;
    return s > LV_ADMIT_RETRY_AFTER_MAX ? LV_ADMIT_RETRY_AFTER_MAX : (unsigned)s;
}

static uint64_t now_units(uint64_t now_ns)
{
    return (now_ns > NOW_MAX ? NOW_MAX : now_ns) * UNITS_PER_NS;
}

/* T and burst x T in units, from a rate and burst clamped to sane ranges
 * (NaN fails every comparison, hence the negated tests). */
static void gcra_params(double rate, double burst, uint64_t *interval, uint64_t *tolerance)
{
    if (!(rate >= RATE_MIN))
        rate = RATE_MIN;
    if (rate > RATE_MAX)
        rate = RATE_MAX;
    if (!(burst >= 1))
        burst = 1;
    if (burst > BURST_MAX)
        burst = BURST_MAX;
    double t = (double)UNITS_PER_S / rate;
    *interval = (uint64_t)llround(t);
    double tol = t * burst;
    *tolerance = tol >= (double)TOLERANCE_MAX ? TOLERANCE_MAX : (uint64_t)llround(tol);
}

/* One GCRA decision: true and *new_tat when a token may be taken at now;
 * else false and *retry_after_s (if not NULL). */
static bool gcra_take(uint64_t tat, uint64_t now, uint64_t interval, uint64_t tolerance, uint64_t *new_tat,
                      unsigned *retry_after_s)
{
    uint64_t next = (tat > now ? tat : now) + interval;
    if (next - now <= tolerance) {
        *new_tat = next;
        return true;
    }
    if (retry_after_s) {
        uint64_t wait = next - now - tolerance;
        *retry_after_s = clamp_retry_s(wait / UNITS_PER_S + (wait % UNITS_PER_S != 0));
    }
    return false;
}

/* ---- token bucket ---- */

struct lv_token_bucket {
    _Atomic uint64_t tat;
    uint64_t interval, tolerance;
};

lv_token_bucket_t *lv_token_bucket_new(double rate, double burst)
{
    lv_token_bucket_t *b = lv_calloc(1, sizeof *b);
    gcra_params(rate, burst, &b->interval, &b->tolerance);
    return b;
}

void lv_token_bucket_free(lv_token_bucket_t *b)
{
    free(b);
}

bool lv_token_bucket_take(lv_token_bucket_t *b, uint64_t now_ns, unsigned *retry_after_s)
{
    uint64_t now = now_units(now_ns);
    uint64_t tat = atomic_load_explicit(&b->tat, memory_order_relaxed), next;
    do {
        if (!gcra_take(tat, now, b->interval, b->tolerance, &next, retry_after_s))
            return false;
        /* On failure tat is reloaded and the decision is made again. */
    } while (!atomic_compare_exchange_weak_explicit(&b->tat, &tat, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* ---- per-client limiter ---- */

#define KEY_INLINE 48
#define MAX_SHARDS 16
#define MIN_KEYS_PER_SHARD 512
#define MIN_BUCKETS 16
#define DEFAULT_MAX_CLIENTS 100000

typedef struct entry {
    lv_list_t lru;            /* in the shard's LRU list, most recent first */
    struct entry *next;       /* hash chain */
    uint64_t hash;
    uint64_t tat;             /* GCRA state, in units */
    uint8_t key_len;
    bool digest;              /* key holds the SHA-256 of a key longer than KEY_INLINE */
    unsigned char key[KEY_INLINE];
} entry_t;

typedef struct {
    pthread_mutex_t lock;
    entry_t **buckets;
    size_t nbuckets, max_buckets; /* powers of two */
    size_t count, cap;
    lv_list_t lru;
} shard_t;

struct lv_client_limiter {
    uint64_t interval, tolerance;
    uint64_t seed;
    unsigned shard_bits;
    shard_t *shards;
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n && p < ((size_t)1 << (sizeof(size_t) * 8 - 2)))
        p <<= 1;
    return p;
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* Early boot without entropy: weaker, but chains still differ per run. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t mix[2] = {(uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, (uint64_t)(uintptr_t)&seed};
    return XXH3_64bits(mix, sizeof mix);
}

lv_client_limiter_t *lv_client_limiter_new(double rate, double burst, size_t max_clients)
{
    lv_client_limiter_t *l = lv_calloc(1, sizeof *l);
    gcra_params(rate, burst, &l->interval, &l->tolerance);
    l->seed = random_seed();
    if (max_clients == 0)
        max_clients = DEFAULT_MAX_CLIENTS;
    unsigned nshards = 1;
    while (nshards < MAX_SHARDS && max_clients / (nshards * 2) >= MIN_KEYS_PER_SHARD)
        nshards *= 2;
    while ((1u << l->shard_bits) < nshards)
        l->shard_bits++;
    l->shards = lv_calloc(nshards, sizeof *l->shards);
    for (unsigned i = 0; i < nshards; i++) {
        shard_t *s = &l->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        lv_list_init(&s->lru);
        /* The shares add up to max_clients exactly. */
        s->cap = max_clients / nshards + (i < max_clients % nshards);
        s->max_buckets = pow2_at_least(s->cap);
        s->nbuckets = s->max_buckets < MIN_BUCKETS ? s->max_buckets : MIN_BUCKETS;
        s->buckets = lv_calloc(s->nbuckets, sizeof *s->buckets);
    }
    return l;
}

void lv_client_limiter_free(lv_client_limiter_t *l)
{
    if (!l)
        return;
    for (unsigned i = 0; i < (1u << l->shard_bits); i++) {
        shard_t *s = &l->shards[i];
        lv_list_t *node;
        while ((node = lv_list_first(&s->lru)) != NULL) {
            lv_list_remove(node);
            free(lv_list_entry(node, entry_t, lru));
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(l->shards);
    free(l);
}

static void chain_unlink(shard_t *s, entry_t *e)
{
    entry_t **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
}

static void chain_link(shard_t *s, entry_t *e)
{
    entry_t **head = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->next = *head;
    *head = e;
}

static void grow(shard_t *s)
{
    size_t old_n = s->nbuckets;
    entry_t **old = s->buckets;
    s->nbuckets = old_n * 2;
    s->buckets = lv_calloc(s->nbuckets, sizeof *s->buckets);
    for (size_t i = 0; i < old_n; i++) {
        entry_t *e = old[i], *next;
        for (; e; e = next) {
            next = e->next;
            chain_link(s, e);
        }
    }
    free(old);
}

/* The entry for a stored key, made (or recycled from the LRU end) if
 * absent, and moved to the front of the LRU list. */
static entry_t *shard_get(shard_t *s, uint64_t hash, const unsigned char *key, size_t len, bool digest)
{
    for (entry_t *e = s->buckets[hash & (s->nbuckets - 1)]; e; e = e->next) {
        if (e->hash == hash && e->key_len == len && e->digest == digest && memcmp(e->key, key, len) == 0) {
            lv_list_remove(&e->lru);
            lv_list_push_front(&s->lru, &e->lru);
            return e;
        }
    }
    entry_t *e;
    if (s->count < s->cap) {
        e = lv_malloc(sizeof *e);
        s->count++;
        if (s->count > s->nbuckets && s->nbuckets < s->max_buckets)
            grow(s);
    } else {
        e = lv_list_entry(s->lru.prev, entry_t, lru);
        chain_unlink(s, e);
        lv_list_remove(&e->lru);
    }
    e->hash = hash;
    e->tat = 0; /* any TAT at or before now is a full bucket */
    e->key_len = (uint8_t)len;
    e->digest = digest;
    memcpy(e->key, key, len);
    chain_link(s, e);
    lv_list_push_front(&s->lru, &e->lru);
    return e;
}

bool lv_client_limiter_take(lv_client_limiter_t *l, lv_slice_t key, uint64_t now_ns, unsigned *retry_after_s)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    /* memcmp/memcpy want a real pointer even for zero bytes. */
    const unsigned char *stored = key.ptr && key.len ? (const unsigned char *)key.ptr : (const unsigned char *)"";
    size_t len = key.ptr ? key.len : 0;
    bool is_digest = len > KEY_INLINE;
    if (is_digest) {
        SHA256(stored, len, digest);
        stored = digest;
        len = sizeof digest;
    }
    uint64_t hash = XXH3_64bits_withSeed(stored, len, l->seed ^ is_digest);
    shard_t *s = &l->shards[l->shard_bits ? hash >> (64 - l->shard_bits) : 0];
    uint64_t now = now_units(now_ns), next;

    pthread_mutex_lock(&s->lock);
    entry_t *e = shard_get(s, hash, stored, len, is_digest);
    bool ok = gcra_take(e->tat, now, l->interval, l->tolerance, &next, retry_after_s);
    if (ok)
        e->tat = next;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

size_t lv_client_limiter_size(lv_client_limiter_t *l)
{
    size_t n = 0;
    for (unsigned i = 0; i < (1u << l->shard_bits); i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        n += l->shards[i].count;
        pthread_mutex_unlock(&l->shards[i].lock);
    }
    return n;
}

/* ---- bulkhead ---- */

#define DRAIN_WINDOW_NS NS_PER_S
/* A rate measured over less than this is too noisy to quote. */
#define DRAIN_MIN_SPAN_NS (100 * NS_PER_MS)
#define DEFAULT_INTERVAL_MS 100
#define TARGET_MIN_MS 5
#define TARGET_MAX_MS 1000
#define TARGET_NO_TIMEOUT_MS 100

struct lv_bulkhead {
    pthread_mutex_t lock;
    unsigned concurrency, in_flight;
    size_t queue_max, queued;
    uint64_t timeout_ns;        /* 0: no deadline */
    uint64_t target_ns;         /* 0: overload policy off */
    uint64_t interval_ns;
    lv_list_t queue;            /* oldest first */
    uint64_t latest_ns;         /* the latest now seen: time never goes back here */
    bool above;                 /* the oldest waiter is older than target... */
    uint64_t above_since_ns;    /* ...and has been since then */
    bool overloaded;
    /* Drain rate: leaves counted in the current window and the one before. */
    bool drain_started, drain_have_prev;
    uint64_t drain_start_ns, drain_cur, drain_prev;
    lv_bulkhead_stats_t stats;  /* counters only; gauges are filled in on read */
};

lv_bulkhead_t *lv_bulkhead_new(unsigned concurrency, size_t queue_max, int64_t queue_timeout_ms)
{
    lv_bulkhead_t *b = lv_calloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    lv_list_init(&b->queue);
    b->concurrency = concurrency ? concurrency : 1;
    b->queue_max = queue_max;
    b->timeout_ns = queue_timeout_ms > 0 ? (uint64_t)queue_timeout_ms * NS_PER_MS : 0;
    int64_t target_ms = TARGET_NO_TIMEOUT_MS;
    if (queue_timeout_ms > 0) {
        target_ms = queue_timeout_ms / 10;
        target_ms = target_ms < TARGET_MIN_MS ? TARGET_MIN_MS : target_ms > TARGET_MAX_MS ? TARGET_MAX_MS : target_ms;
    }
    lv_bulkhead_set_overload(b, target_ms, DEFAULT_INTERVAL_MS);
    return b;
}

void lv_bulkhead_set_overload(lv_bulkhead_t *b, int64_t target_ms, int64_t interval_ms)
{
    pthread_mutex_lock(&b->lock);
    b->target_ns = target_ms > 0 ? (uint64_t)target_ms * NS_PER_MS : 0;
    b->interval_ns = interval_ms > 0 ? (uint64_t)interval_ms * NS_PER_MS : 0;
    b->above = b->overloaded = false;
    pthread_mutex_unlock(&b->lock);
}

void lv_bulkhead_free(lv_bulkhead_t *b)
{
    if (!b)
        return;
    lv_list_t *node;
    while ((node = lv_list_first(&b->queue)) != NULL)
        lv_list_remove(node);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static uint64_t observe_time(lv_bulkhead_t *b, uint64_t now_ns)
{
    if (now_ns > b->latest_ns)
        b->latest_ns = now_ns;
    return b->latest_ns;
}

static lv_admit_waiter_t *waiter_of(lv_list_t *node)
{
    return lv_list_entry(node, lv_admit_waiter_t, link);
}

/* Takes w out of the queue; its link is zero afterwards (cancel sees that). */
static void unqueue(lv_bulkhead_t *b, lv_admit_waiter_t *w)
{
    lv_list_remove(&w->link);
    b->queued--;
}

static void shed(lv_bulkhead_t *b, lv_admit_waiter_t *w, lv_admit_shed_reason_t why, lv_admit_waiter_t **chain)
{
    unqueue(b, w);
    w->shed_reason = why;
    w->priv_next = *chain;
    *chain = w;
    if (why == LV_ADMIT_SHED_EXPIRED)
        b->stats.shed_expired++;
    else
        b->stats.shed_policy++;
}

static bool expired(const lv_bulkhead_t *b, const lv_admit_waiter_t *w, uint64_t now)
{
    return b->timeout_ns && now - w->enqueued_ns > b->timeout_ns;
}

/* CoDel: overloaded once the oldest waiter has been older than target for a
 * whole interval; back to normal as soon as it is not. */
static void update_overload(lv_bulkhead_t *b, uint64_t now)
{
    lv_list_t *oldest = lv_list_first(&b->queue);
    if (!b->target_ns || !oldest || now - waiter_of(oldest)->enqueued_ns <= b->target_ns) {
        b->above = b->overloaded = false;
        return;
    }
    if (!b->above) {
        b->above = true;
        b->above_since_ns = now;
    }
    if (!b->overloaded && now - b->above_since_ns >= b->interval_ns) {
        b->overloaded = true;
        b->stats.overload_episodes++;
    }
}

/* Sheds what must go from the front of the queue and updates the policy. */
static void police(lv_bulkhead_t *b, uint64_t now, lv_admit_waiter_t **chain)
{
    lv_list_t *node;
    while ((node = lv_list_first(&b->queue)) != NULL && expired(b, waiter_of(node), now))
        shed(b, waiter_of(node), LV_ADMIT_SHED_EXPIRED, chain);
    update_overload(b, now);
    if (!b->overloaded)
        return;
    bool sloughed = false;
    while ((node = lv_list_first(&b->queue)) != NULL && now - waiter_of(node)->enqueued_ns > 2 * b->target_ns) {
        shed(b, waiter_of(node), LV_ADMIT_SHED_OVERLOAD, chain);
        sloughed = true;
    }
    if (sloughed)
        update_overload(b, now);
}

/* The waiter to hand a slot to: the oldest normally, the newest while
 * overloaded; expired ones met on the way are shed. */
static lv_admit_waiter_t *next_waiter(lv_bulkhead_t *b, uint64_t now, lv_admit_waiter_t **chain)
{
    while (!lv_list_empty(&b->queue)) {
        lv_admit_waiter_t *w = waiter_of(b->overloaded ? b->queue.prev : b->queue.next);
        if (expired(b, w, now)) {
            shed(b, w, LV_ADMIT_SHED_EXPIRED, chain);
            continue;
        }
        unqueue(b, w);
        return w;
    }
    return NULL;
}

static void call_shed(lv_admit_waiter_t *chain)
{
    while (chain) {
        lv_admit_waiter_t *next = chain->priv_next; /* on_admit may free it */
        chain->on_admit(chain, LV_ADMIT_SHED);
        chain = next;
    }
}

lv_bulkhead_result_t lv_bulkhead_enter(lv_bulkhead_t *b, lv_admit_waiter_t *w, uint64_t now_ns)
{
    lv_admit_waiter_t *chain = NULL;
    lv_bulkhead_result_t result;
    pthread_mutex_lock(&b->lock);
    uint64_t now = observe_time(b, now_ns);
    w->enqueued_ns = now;
    w->link.prev = w->link.next = NULL;
    w->priv_next = NULL;
    police(b, now, &chain);
    /* A slot is only ever free while nobody waits: leave hands it over. */
    if (b->in_flight < b->concurrency) {
        b->in_flight++;
        b->stats.admitted++;
        result = LV_BULKHEAD_ADMITTED;
    } else if (b->queue_max == 0 || (b->queued >= b->queue_max && !b->overloaded)) {
        b->stats.shed_full++;
        result = LV_BULKHEAD_FULL;
    } else {
        if (b->queued >= b->queue_max) /* overloaded: the oldest is the least likely still wanted */
            shed(b, waiter_of(b->queue.next), LV_ADMIT_SHED_OVERLOAD, &chain);
        lv_list_push_back(&b->queue, &w->link);
        b->queued++;
        b->stats.queued_total++;
        update_overload(b, now);
        result = LV_BULKHEAD_QUEUED;
    }
    pthread_mutex_unlock(&b->lock);
    call_shed(chain);
    return result;
}

/* Moves the drain window forward to now. */
static void drain_advance(lv_bulkhead_t *b, uint64_t now)
{
    uint64_t elapsed = now - b->drain_start_ns;
    if (elapsed < DRAIN_WINDOW_NS)
        return;
    b->drain_prev = elapsed < 2 * DRAIN_WINDOW_NS ? b->drain_cur : 0;
    b->drain_have_prev = true;
    b->drain_cur = 0;
    b->drain_start_ns += elapsed - elapsed % DRAIN_WINDOW_NS;
}

/* Slots freed per second: the current window plus the share of the previous
 * one that still falls within the last second. */
static double drain_rate(lv_bulkhead_t *b, uint64_t now)
{
    if (!b->drain_started)
        return 0;
    drain_advance(b, now);
    uint64_t into = now - b->drain_start_ns;
    if (!b->drain_have_prev) {
        uint64_t span = into < DRAIN_MIN_SPAN_NS ? DRAIN_MIN_SPAN_NS : into;
        return (double)b->drain_cur * NS_PER_S / (double)span;
    }
    double prev_share = (double)(DRAIN_WINDOW_NS - into) / DRAIN_WINDOW_NS;
    return ((double)b->drain_prev * prev_share + (double)b->drain_cur) * NS_PER_S / DRAIN_WINDOW_NS;
}

void lv_bulkhead_leave(lv_bulkhead_t *b, uint64_t now_ns)
{
    lv_admit_waiter_t *chain = NULL, *granted = NULL;
    pthread_mutex_lock(&b->lock);
    uint64_t now = observe_time(b, now_ns);
    if (b->in_flight == 0) {
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (!b->drain_started) {
        b->drain_started = true;
        b->drain_start_ns = now;
    }
    drain_advance(b, now);
    b->drain_cur++;
    police(b, now, &chain);
    granted = next_waiter(b, now, &chain);
    if (granted)
        b->stats.granted++; /* the slot changes hands: in_flight stays */
    else
        b->in_flight--;
    update_overload(b, now);
    pthread_mutex_unlock(&b->lock);
    if (granted)
        granted->on_admit(granted, LV_ADMIT_GRANTED);
    call_shed(chain);
}

bool lv_bulkhead_cancel(lv_bulkhead_t *b, lv_admit_waiter_t *w)
{
    pthread_mutex_lock(&b->lock);
    bool queued = lv_list_linked(&w->link);
    if (queued) {
        unqueue(b, w);
        b->stats.timeouts_or_cancels++;
        update_overload(b, b->latest_ns);
    }
    pthread_mutex_unlock(&b->lock);
    return queued;
}

unsigned lv_bulkhead_retry_after(lv_bulkhead_t *b, uint64_t now_ns)
{
    pthread_mutex_lock(&b->lock);
    uint64_t now = observe_time(b, now_ns);
    double rate = drain_rate(b, now);
    double backlog = (double)b->queued + 1;
    uint64_t timeout_ns = b->timeout_ns;
    pthread_mutex_unlock(&b->lock);
    if (rate <= 0) /* nothing freed lately: the most we would have made it wait */
        return clamp_retry_s((timeout_ns + NS_PER_S - 1) / NS_PER_S);
    double s = ceil(backlog / rate);
    return s >= LV_ADMIT_RETRY_AFTER_MAX ? LV_ADMIT_RETRY_AFTER_MAX : clamp_retry_s((uint64_t)s);
}

void lv_bulkhead_stats(lv_bulkhead_t *b, lv_bulkhead_stats_t *out)
{
    pthread_mutex_lock(&b->lock);
    *out = b->stats;
    out->in_flight = b->in_flight;
    out->queued = b->queued;
    out->overloaded = b->overloaded;
    out->drain_per_s = (uint64_t)llround(drain_rate(b, b->latest_ns));
    pthread_mutex_unlock(&b->lock);
}
