/* admit_test.c: the token bucket, the per-client limiter and the bulkhead.
 *
 * Most tests pass explicit now_ns values (T0 plus milliseconds), so they are
 * deterministic. The overload-policy test is a discrete-event simulation:
 * a minute of arrivals at five times the service rate, with the caller's
 * queue-timeout timers played as events, run once with plain FIFO and once
 * with the CoDel / adaptive-LIFO policy. The threaded tests use the real
 * clock and check what the locking must keep: totals across threads for
 * the buckets, never more than `concurrency` in flight, every waiter called
 * exactly once or cancelled. The last test measures ns per operation. */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/admit.h"
#include "test.h"

#define T0 (1000ull * 1000000000ull) /* 1000 s after boot */
#define MS(n) (T0 + (uint64_t)(n) * 1000000ull)
#define US(n) (T0 + (uint64_t)(n) * 1000ull)
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull
#define NTHREADS 4

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- token bucket ---- */

/* Takes every step_us over [0, seconds] and counts what was admitted. */
static long admitted_over(double rate, double burst, int seconds, unsigned step_us)
{
    lv_token_bucket_t *b = lv_token_bucket_new(rate, burst);
    long n = 0;
    for (uint64_t us = 0; us <= (uint64_t)seconds * 1000000; us += step_us)
        n += lv_token_bucket_take(b, US(us), NULL);
    lv_token_bucket_free(b);
    return n;
}

static void test_bucket_burst_then_rate(void)
{
    /* Over 10 s: rate x 10 + burst, to within one. */
    CHECK_INT(labs(admitted_over(100, 50, 10, 1000) - 1050), <=, 1);
    CHECK_INT(labs(admitted_over(2000, 500, 10, 10) - 20500), <=, 1);
    CHECK_INT(labs(admitted_over(1, 1, 10, 1000) - 11), <=, 1);
    /* Fractions: 3.7/s with a 2.5 bucket admits 37 + 2.5. */
    long n = admitted_over(3.7, 2.5, 10, 1000);
    CHECK_INT(n, >=, 38);
    CHECK_INT(n, <=, 40);

    /* API Gateway's worked example: 5000 at t=0 and 5000 at t=101 ms on a
     * 10000/s bucket of 5000 serve 5000 + 1010. */
    lv_token_bucket_t *b = lv_token_bucket_new(10000, 5000);
    long served = 0;
    for (int i = 0; i < 5000; i++)
        served += lv_token_bucket_take(b, MS(0), NULL);
    CHECK_EQ(served, 5000);
    for (int i = 0; i < 5000; i++)
        served += lv_token_bucket_take(b, MS(101), NULL);
    CHECK_EQ(served, 6010);
    lv_token_bucket_free(b);

    /* The burst is available at once, and not one more. */
    b = lv_token_bucket_new(1, 40);
    for (int i = 0; i < 40; i++)
        CHECK(lv_token_bucket_take(b, MS(0), NULL));
    CHECK(!lv_token_bucket_take(b, MS(0), NULL));
    /* An idle bucket refills to burst, never beyond. */
    for (int i = 0; i < 40; i++)
        CHECK(lv_token_bucket_take(b, MS(3600 * 1000), NULL));
    CHECK(!lv_token_bucket_take(b, MS(3600 * 1000), NULL));
    lv_token_bucket_free(b);
}

static void test_bucket_retry_after(void)
{
    unsigned ra = 0;
    lv_token_bucket_t *b = lv_token_bucket_new(1, 1);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, 1);
    CHECK(!lv_token_bucket_take(b, MS(999), &ra));
    CHECK_EQ(ra, 1); /* 1 ms left rounds up to 1 s */
    CHECK(lv_token_bucket_take(b, MS(1000), &ra));
    lv_token_bucket_free(b);

    /* One token every 10 s: the wait counts down with time. */
    b = lv_token_bucket_new(0.1, 1);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, 10);
    CHECK(!lv_token_bucket_take(b, MS(3000), &ra));
    CHECK_EQ(ra, 7);
    CHECK(!lv_token_bucket_take(b, MS(3001), &ra));
    CHECK_EQ(ra, 7);
    CHECK(!lv_token_bucket_take(b, MS(9500), &ra));
    CHECK_EQ(ra, 1);
    CHECK(lv_token_bucket_take(b, MS(10000), &ra));
    lv_token_bucket_free(b);

    /* 0.25/s, bucket of 2: the third waits 4 s, a fraction of a bucket
     * counts (burst 1.5 leaves half a token: 2 s at 0.25/s). */
    b = lv_token_bucket_new(0.25, 2);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, 4);
    lv_token_bucket_free(b);
    b = lv_token_bucket_new(0.25, 1.5);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, 2);
    CHECK(lv_token_bucket_take(b, MS(2000), &ra));
    lv_token_bucket_free(b);

    /* Fast rates still say at least 1; absurdly slow ones are capped. */
    b = lv_token_bucket_new(1000, 1);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, 1);
    lv_token_bucket_free(b);
    b = lv_token_bucket_new(1e-12, 1);
    CHECK(lv_token_bucket_take(b, MS(0), &ra));
    CHECK(!lv_token_bucket_take(b, MS(0), &ra));
    CHECK_EQ(ra, LV_ADMIT_RETRY_AFTER_MAX);
    lv_token_bucket_free(b);
}

static void test_bucket_odd_inputs(void)
{
    /* Nonsense settings are clamped, never crash, and still admit one. */
    double bad[] = {0, -5, NAN, INFINITY, -INFINITY, 1e300};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
            lv_token_bucket_t *b = lv_token_bucket_new(bad[i], bad[j]);
            unsigned ra = 0;
            CHECK(lv_token_bucket_take(b, MS(0), &ra));
            lv_token_bucket_take(b, MS(0), &ra);
            lv_token_bucket_take(b, UINT64_MAX, &ra);
            lv_token_bucket_take(b, 0, &ra);
            lv_token_bucket_free(b);
        }
    }
    lv_token_bucket_free(NULL);

    /* Time going backwards (another loop's older cached clock) is judged
     * at that time: it can only be refused more, never admitted more. */
    lv_token_bucket_t *b = lv_token_bucket_new(1, 2);
    CHECK(lv_token_bucket_take(b, MS(10000), NULL));
    CHECK(!lv_token_bucket_take(b, MS(9000), NULL));
    CHECK(lv_token_bucket_take(b, MS(10000), NULL));
    CHECK(!lv_token_bucket_take(b, MS(10000), NULL));
    CHECK(!lv_token_bucket_take(b, MS(0), NULL));
    CHECK(lv_token_bucket_take(b, MS(11000), NULL));
    lv_token_bucket_free(b);
}

typedef struct {
    lv_token_bucket_t *bucket;
    lv_client_limiter_t *limiter;
    lv_slice_t key;
    pthread_barrier_t *start;
    uint64_t run_ns;
    long admitted, tries;
    uint64_t first_ns, last_ns;
} hammer_t;

static void *hammer_bucket(void *arg)
{
    hammer_t *h = arg;
    pthread_barrier_wait(h->start);
    uint64_t now = clock_ns(), end = now + h->run_ns;
    h->first_ns = now;
    for (;;) {
        now = clock_ns();
        if (now >= end)
            break;
        h->last_ns = now;
        bool ok = h->bucket ? lv_token_bucket_take(h->bucket, now, NULL)
                            : lv_client_limiter_take(h->limiter, h->key, now, NULL);
        h->admitted += ok;
        h->tries++;
    }
    return NULL;
}

/* NTHREADS threads hammer one bucket (or one client key) for run_ms; the
 * total admitted must be burst + rate x elapsed within 1%. */
static void check_hammer_total(lv_token_bucket_t *bucket, lv_client_limiter_t *limiter, double rate, double burst,
                               const char *what)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    hammer_t hs[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        hs[i] = (hammer_t){.bucket = bucket, .limiter = limiter, .key = LV_SLICE_LIT("hot"), .start = &start,
                           .run_ns = 300 * NS_PER_MS};
        pthread_create(&tids[i], NULL, hammer_bucket, &hs[i]);
    }
    long admitted = 0, tries = 0;
    uint64_t first = UINT64_MAX, last = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        admitted += hs[i].admitted;
        tries += hs[i].tries;
        first = hs[i].first_ns < first ? hs[i].first_ns : first;
        last = hs[i].last_ns > last ? hs[i].last_ns : last;
    }
    pthread_barrier_destroy(&start);
    double expected = burst + rate * (double)(last - first) / NS_PER_S;
    printf("  %s: %d threads, %ld tries, %ld admitted, expected %.0f (%+.2f%%)\n", what, NTHREADS, tries, admitted,
           expected, 100.0 * ((double)admitted - expected) / expected);
    CHECK_INT(tries, >, admitted * 2); /* really over the limit all along */
    CHECK(fabs((double)admitted - expected) <= expected * 0.01);
}

static void test_bucket_threads_share_one_limit(void)
{
    lv_token_bucket_t *b = lv_token_bucket_new(100000, 1000);
    check_hammer_total(b, NULL, 100000, 1000, "token bucket");
    lv_token_bucket_free(b);
}

/* ---- per-client limiter ---- */

static void test_client_keys_are_isolated(void)
{
    lv_client_limiter_t *l = lv_client_limiter_new(1, 2, 100);
    unsigned ra = 0;
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.1"), MS(0), &ra));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.1"), MS(0), &ra));
    CHECK(!lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.1"), MS(0), &ra));
    CHECK_EQ(ra, 1);
    /* Another client is untouched by the first one's exhaustion. */
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.2"), MS(0), &ra));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.2"), MS(0), &ra));
    CHECK(!lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.2"), MS(0), &ra));
    /* Keys are bytes: an embedded NUL or a prefix is another key. */
    CHECK(lv_client_limiter_take(l, lv_slice("10.0.0.1\0x", 10), MS(0), &ra));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0."), MS(0), &ra));
    /* The empty key (and a NULL one) is a key like any other. */
    CHECK(lv_client_limiter_take(l, lv_slice(NULL, 0), MS(0), &ra));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT(""), MS(0), &ra));
    CHECK(!lv_client_limiter_take(l, lv_slice(NULL, 5), MS(0), &ra));
    CHECK_EQ(lv_client_limiter_size(l), 5);
    /* Refill per key, at the rate. */
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.1"), MS(1000), &ra));
    CHECK(!lv_client_limiter_take(l, LV_SLICE_LIT("10.0.0.1"), MS(1000), &ra));
    lv_client_limiter_free(l);
    lv_client_limiter_free(NULL);
}

static void test_client_long_keys(void)
{
    /* Keys longer than the inline 48 bytes are kept as digests: still one
     * bucket per distinct key, including keys differing in the last byte. */
    lv_client_limiter_t *l = lv_client_limiter_new(0.001, 1, 100);
    char a[4096], b[4096];
    memset(a, 'k', sizeof a);
    memcpy(b, a, sizeof b);
    b[sizeof b - 1] = 'x';
    CHECK(lv_client_limiter_take(l, lv_slice(a, sizeof a), MS(0), NULL));
    CHECK(!lv_client_limiter_take(l, lv_slice(a, sizeof a), MS(0), NULL));
    CHECK(lv_client_limiter_take(l, lv_slice(b, sizeof b), MS(0), NULL));
    CHECK(!lv_client_limiter_take(l, lv_slice(b, sizeof b), MS(0), NULL));
    /* Around the boundary: 48 and 49 bytes, and a 32-byte key that could
     * look like a digest. */
    CHECK(lv_client_limiter_take(l, lv_slice(a, 48), MS(0), NULL));
    CHECK(!lv_client_limiter_take(l, lv_slice(a, 48), MS(0), NULL));
    CHECK(lv_client_limiter_take(l, lv_slice(a, 49), MS(0), NULL));
    CHECK(!lv_client_limiter_take(l, lv_slice(a, 49), MS(0), NULL));
    CHECK(lv_client_limiter_take(l, lv_slice(a, 32), MS(0), NULL));
    CHECK_EQ(lv_client_limiter_size(l), 5);
    lv_client_limiter_free(l);
}

static void test_client_lru_eviction_order(void)
{
    /* One token per ~17 minutes: a held key stays exhausted, a forgotten
     * one comes back full, so admission shows which key was evicted. */
    lv_client_limiter_t *l = lv_client_limiter_new(0.001, 1, 3);
#define TAKE(k, t) lv_client_limiter_take(l, LV_SLICE_LIT(k), MS(t), NULL)
    CHECK(TAKE("a", 0));
    CHECK(TAKE("b", 1));
    CHECK(TAKE("c", 2));
    CHECK_EQ(lv_client_limiter_size(l), 3);
    CHECK(!TAKE("a", 3)); /* a refused take is still a use: LRU is b, c, a */
    CHECK(TAKE("d", 4));  /* evicts b */
    CHECK_EQ(lv_client_limiter_size(l), 3);
    CHECK(!TAKE("a", 5));
    CHECK(!TAKE("c", 6));
    CHECK(!TAKE("d", 7)); /* LRU: a, c, d */
    CHECK(TAKE("b", 8));  /* b was forgotten: full again; evicts a */
    CHECK(TAKE("a", 9));  /* a was forgotten; evicts c */
    CHECK(!TAKE("d", 10));
    CHECK(!TAKE("b", 11));
    CHECK(TAKE("c", 12));
    CHECK_EQ(lv_client_limiter_size(l), 3);
#undef TAKE
    lv_client_limiter_free(l);

    /* A one-key table keeps only the latest client. */
    l = lv_client_limiter_new(0.001, 1, 1);
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("x"), MS(0), NULL));
    CHECK(!lv_client_limiter_take(l, LV_SLICE_LIT("x"), MS(0), NULL));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("y"), MS(0), NULL));
    CHECK(lv_client_limiter_take(l, LV_SLICE_LIT("x"), MS(0), NULL));
    CHECK_EQ(lv_client_limiter_size(l), 1);
    lv_client_limiter_free(l);
}

static size_t heap_in_use(void)
{
    return mallinfo2().uordblks; /* 0 under ASan, which has its own heap */
}

static void test_client_million_keys_stay_bounded(void)
{
    /* A million distinct clients through tables of 1000 (one shard) and
     * 100000 (16 shards): the size never passes the bound and, once the
     * table is full, memory does not grow. */
    size_t bounds[] = {1000, 100000};
    for (size_t k = 0; k < 2; k++) {
        lv_client_limiter_t *l = lv_client_limiter_new(10, 20, bounds[k]);
        char key[32];
        size_t heap_full = 0;
        for (int i = 0; i < 1000000; i++) {
            int n = snprintf(key, sizeof key, "198.51.%d.%d", i >> 8, i & 255);
            CHECK(lv_client_limiter_take(l, lv_slice(key, (size_t)n), MS(i / 1000), NULL));
            if (i % 1000 == 0)
                CHECK_INT(lv_client_limiter_size(l), <=, bounds[k]);
            if ((size_t)i == 2 * bounds[k])
                heap_full = heap_in_use();
        }
        /* Hashing spreads a million keys over every shard: all are full. */
        CHECK_EQ(lv_client_limiter_size(l), bounds[k]);
        CHECK_INT(heap_in_use(), <=, heap_full + 4096);
        lv_client_limiter_free(l);
    }
}

static void *hammer_many_keys(void *arg)
{
    hammer_t *h = arg;
    char key[32];
    pthread_barrier_wait(h->start);
    for (int i = 0; i < 200000; i++) {
        int n = snprintf(key, sizeof key, "k%ld", (h->tries * 7919 + i * 31) % 6000);
        h->admitted += lv_client_limiter_take(h->limiter, lv_slice(key, (size_t)n), clock_ns(), NULL);
        if (i % 5000 == 0 && lv_client_limiter_size(h->limiter) > 4096)
            h->last_ns = 1; /* flag: bound exceeded */
    }
    return NULL;
}

static void test_client_threads(void)
{
    /* One client hammered from every thread is one limit, not one per
     * thread. */
    lv_client_limiter_t *l = lv_client_limiter_new(50000, 500, 1000);
    check_hammer_total(NULL, l, 50000, 500, "client limiter, one key");
    lv_client_limiter_free(l);

    /* Many keys from many threads: the bound holds and nothing races (run
     * under the sanitizers). */
    l = lv_client_limiter_new(5, 5, 4096);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    hammer_t hs[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        hs[i] = (hammer_t){.limiter = l, .start = &start, .tries = i};
        pthread_create(&tids[i], NULL, hammer_many_keys, &hs[i]);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        CHECK_EQ(hs[i].last_ns, 0);
    }
    pthread_barrier_destroy(&start);
    CHECK_INT(lv_client_limiter_size(l), <=, 4096);
    lv_client_limiter_free(l);
}

/* ---- bulkhead ---- */

typedef struct {
    lv_admit_waiter_t w;
    int id;
    int calls;
    lv_admit_outcome_t outcome;
    int *log;     /* ids in the order they were called, if set */
    int *log_len;
} tw_t;

static void record_admit(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    tw_t *t = (tw_t *)w;
    t->calls++;
    t->outcome = outcome;
    if (t->log)
        t->log[(*t->log_len)++] = outcome == LV_ADMIT_GRANTED ? t->id : -t->id;
}

static void tw_init(tw_t *t, int id, int *log, int *log_len)
{
    memset(t, 0, sizeof *t);
    t->w.on_admit = record_admit;
    t->id = id;
    t->log = log;
    t->log_len = log_len;
}

static void test_bulkhead_without_queue(void)
{
    lv_bulkhead_t *b = lv_bulkhead_new(2, 0, 0);
    tw_t w[4];
    for (int i = 0; i < 4; i++)
        tw_init(&w[i], i, NULL, NULL);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[2].w, MS(0)), LV_BULKHEAD_FULL);
    lv_bulkhead_leave(b, MS(1));
    CHECK_EQ(lv_bulkhead_enter(b, &w[3].w, MS(1)), LV_BULKHEAD_ADMITTED);
    lv_bulkhead_leave(b, MS(2));
    lv_bulkhead_leave(b, MS(2));
    lv_bulkhead_leave(b, MS(2)); /* nothing held: ignored */
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.admitted, 3);
    CHECK_EQ(st.shed_full, 1);
    CHECK_EQ(st.queued_total, 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(w[i].calls, 0);
    lv_bulkhead_free(b);
    lv_bulkhead_free(NULL);

    /* concurrency 0 counts as 1. */
    b = lv_bulkhead_new(0, 0, 0);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(0)), LV_BULKHEAD_FULL);
    lv_bulkhead_free(b);
}

static void test_bulkhead_fifo_and_queue_max(void)
{
    int log[16], n = 0;
    lv_bulkhead_t *b = lv_bulkhead_new(1, 3, 10000);
    tw_t w[6];
    for (int i = 0; i < 6; i++)
        tw_init(&w[i], i, log, &n);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(1)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[2].w, MS(2)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[3].w, MS(3)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(w[3].w.enqueued_ns, MS(3));
    CHECK_EQ(lv_bulkhead_enter(b, &w[4].w, MS(4)), LV_BULKHEAD_FULL);
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.queued, 3);
    CHECK_EQ(st.in_flight, 1);
    CHECK_EQ(n, 0);
    /* Each leave hands the slot to the oldest waiter. */
    lv_bulkhead_leave(b, MS(10));
    CHECK_EQ(n, 1);
    CHECK_EQ(log[0], 1);
    CHECK_EQ(lv_bulkhead_enter(b, &w[5].w, MS(11)), LV_BULKHEAD_QUEUED);
    lv_bulkhead_leave(b, MS(20));
    lv_bulkhead_leave(b, MS(30));
    lv_bulkhead_leave(b, MS(40));
    CHECK_EQ(n, 4);
    CHECK_EQ(log[1], 2);
    CHECK_EQ(log[2], 3);
    CHECK_EQ(log[3], 5);
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 1);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.granted, 4);
    CHECK_EQ(st.queued_total, 4);
    CHECK_EQ(st.shed_full, 1);
    lv_bulkhead_leave(b, MS(50));
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 0);
    for (int i = 1; i < 6; i++)
        CHECK_EQ(w[i].calls, i == 4 ? 0 : 1);
    lv_bulkhead_free(b);
}

static void test_bulkhead_cancel(void)
{
    lv_bulkhead_t *b = lv_bulkhead_new(1, 10, 10000);
    tw_t w[4];
    for (int i = 0; i < 4; i++)
        tw_init(&w[i], i, NULL, NULL);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK(!lv_bulkhead_cancel(b, &w[0].w)); /* never queued */
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(0)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[2].w, MS(0)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[3].w, MS(0)), LV_BULKHEAD_QUEUED);
    /* Cancelled while queued: removed, never called, and skipped. */
    CHECK(lv_bulkhead_cancel(b, &w[1].w));
    CHECK(!lv_bulkhead_cancel(b, &w[1].w));
    lv_bulkhead_leave(b, MS(1));
    CHECK_EQ(w[1].calls, 0);
    CHECK_EQ(w[2].calls, 1);
    CHECK_EQ(w[2].outcome, LV_ADMIT_GRANTED);
    /* Already granted: cancel says false, the waiter holds the slot. */
    CHECK(!lv_bulkhead_cancel(b, &w[2].w));
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 1);
    CHECK_EQ(st.queued, 1);
    CHECK_EQ(st.timeouts_or_cancels, 1);
    CHECK(lv_bulkhead_cancel(b, &w[3].w));
    lv_bulkhead_leave(b, MS(2));
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.timeouts_or_cancels, 2);
    CHECK_EQ(w[3].calls, 0);
    lv_bulkhead_free(b);
}

static void test_bulkhead_expired_waiters_are_shed(void)
{
    int log[16], n = 0;
    lv_bulkhead_t *b = lv_bulkhead_new(1, 10, 100);
    lv_bulkhead_set_overload(b, 0, 0); /* deadlines alone */
    tw_t w[5];
    for (int i = 0; i < 5; i++)
        tw_init(&w[i], i, log, &n);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(0)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[2].w, MS(10)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[3].w, MS(50)), LV_BULKHEAD_QUEUED);
    /* At 111 ms, 1 and 2 waited more than 100 ms: shed, not started; 3
     * gets the slot. */
    lv_bulkhead_leave(b, MS(111));
    CHECK_EQ(n, 3);
    CHECK_EQ(w[1].outcome, LV_ADMIT_SHED);
    CHECK_EQ(w[1].w.shed_reason, LV_ADMIT_SHED_EXPIRED);
    CHECK_EQ(w[2].outcome, LV_ADMIT_SHED);
    CHECK_EQ(w[3].outcome, LV_ADMIT_GRANTED);
    CHECK(!lv_bulkhead_cancel(b, &w[1].w));
    /* Exactly at the deadline is still in time. */
    CHECK_EQ(lv_bulkhead_enter(b, &w[4].w, MS(111)), LV_BULKHEAD_QUEUED);
    lv_bulkhead_leave(b, MS(211));
    CHECK_EQ(w[4].outcome, LV_ADMIT_GRANTED);
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.shed_expired, 2);
    CHECK_EQ(st.granted, 2);
    CHECK_EQ(st.shed_policy, 0);

    /* A waiter that expired is also shed when someone else enters, without
     * waiting for a slot to free up. */
    tw_t late;
    tw_init(&late, 9, log, &n);
    CHECK_EQ(lv_bulkhead_enter(b, &late.w, MS(300)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(401)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(late.calls, 1);
    CHECK_EQ(late.outcome, LV_ADMIT_SHED);
    CHECK(lv_bulkhead_cancel(b, &w[1].w));
    lv_bulkhead_free(b);
}

static void test_bulkhead_overload_goes_lifo_and_sheds(void)
{
    int log[512], n = 0;
    lv_bulkhead_t *b = lv_bulkhead_new(1, 1000, 10000);
    lv_bulkhead_set_overload(b, 10, 100); /* target 10 ms, interval 100 ms */
    static tw_t w[300];
    for (int i = 0; i < 300; i++)
        tw_init(&w[i], i, log, &n);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    lv_bulkhead_stats_t st;
    /* One arrival per ms and nothing leaves: the oldest (t=1) is over
     * target from t=12, and overload starts a full interval later, at
     * t=112. */
    for (int i = 1; i <= 111; i++) {
        CHECK_EQ(lv_bulkhead_enter(b, &w[i].w, MS(i)), LV_BULKHEAD_QUEUED);
        lv_bulkhead_stats(b, &st);
        CHECK_EQ(st.overloaded, 0);
    }
    CHECK_EQ(n, 0);
    CHECK_EQ(lv_bulkhead_enter(b, &w[112].w, MS(112)), LV_BULKHEAD_QUEUED);
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.overloaded, 1);
    CHECK_EQ(st.overload_episodes, 1);
    /* Everything older than 2 x target (20 ms) was shed at once: the
     * arrivals of t=1..91. */
    CHECK_EQ(st.shed_policy, 91);
    CHECK_EQ(st.queued, 21);
    CHECK_EQ(n, 91);
    CHECK_EQ(w[1].outcome, LV_ADMIT_SHED);
    CHECK_EQ(w[1].w.shed_reason, LV_ADMIT_SHED_OVERLOAD);
    CHECK_EQ(w[92].calls, 0);
    /* The slot goes to the newest waiter. */
    lv_bulkhead_leave(b, MS(113));
    CHECK_EQ(w[112].outcome, LV_ADMIT_GRANTED);
    CHECK_EQ(w[111].calls, 0);
    lv_bulkhead_leave(b, MS(114));
    CHECK_EQ(w[111].outcome, LV_ADMIT_GRANTED);
    CHECK_EQ(w[110].calls, 0);
    /* Quiet: the queue drains, newest first, the oldest still shed as they
     * pass 2 x target, until it is empty and the overload is over. */
    int from = n;
    for (int t = 115; t < 200; t++) {
        lv_bulkhead_leave(b, MS(t));
        lv_bulkhead_stats(b, &st);
        if (st.queued == 0)
            break;
    }
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.overloaded, 0);
    CHECK_EQ(st.granted + st.shed_policy, 112);
    int prev_granted = 111;
    for (int i = from; i < n; i++) {
        if (log[i] > 0) {
            CHECK_INT(log[i], <, prev_granted);
            prev_granted = log[i];
        }
    }
    CHECK_INT(prev_granted, <, 111);
    /* Back to normal: FIFO again. (The last leave found nobody waiting and
     * returned the slot.) */
    CHECK_EQ(lv_bulkhead_enter(b, &w[199].w, MS(300)), LV_BULKHEAD_ADMITTED);
    for (int i = 200; i < 203; i++)
        CHECK_EQ(lv_bulkhead_enter(b, &w[i].w, MS(300)), LV_BULKHEAD_QUEUED);
    lv_bulkhead_leave(b, MS(301));
    CHECK_EQ(log[n - 1], 200);
    CHECK(lv_bulkhead_cancel(b, &w[201].w));
    CHECK(lv_bulkhead_cancel(b, &w[202].w));
    lv_bulkhead_free(b);
}

static void test_bulkhead_overload_full_queue_sheds_oldest(void)
{
    lv_bulkhead_t *b = lv_bulkhead_new(1, 2, 10000);
    lv_bulkhead_set_overload(b, 10, 5);
    tw_t w[6];
    for (int i = 0; i < 6; i++)
        tw_init(&w[i], i, NULL, NULL);
    CHECK_EQ(lv_bulkhead_enter(b, &w[0].w, MS(0)), LV_BULKHEAD_ADMITTED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[1].w, MS(0)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(lv_bulkhead_enter(b, &w[2].w, MS(1)), LV_BULKHEAD_QUEUED);
    /* Full, not yet overloaded (the standing queue is only 1 ms old). */
    CHECK_EQ(lv_bulkhead_enter(b, &w[3].w, MS(12)), LV_BULKHEAD_FULL);
    /* Overloaded now: the oldest makes room for the newcomer. */
    CHECK_EQ(lv_bulkhead_enter(b, &w[4].w, MS(18)), LV_BULKHEAD_QUEUED);
    CHECK_EQ(w[1].calls, 1);
    CHECK_EQ(w[1].outcome, LV_ADMIT_SHED);
    CHECK_EQ(w[1].w.shed_reason, LV_ADMIT_SHED_OVERLOAD);
    CHECK_EQ(w[2].calls, 0);
    lv_bulkhead_leave(b, MS(19));
    CHECK_EQ(w[4].outcome, LV_ADMIT_GRANTED); /* newest first */
    CHECK(lv_bulkhead_cancel(b, &w[2].w));
    lv_bulkhead_free(b);
}

/* A waiter whose on_admit leaves at once and frees itself: callbacks run
 * with no lock held and the bulkhead never touches a waiter after calling
 * it. */
static lv_bulkhead_t *reentrant_bulkhead;
static int reentrant_calls;

static void leave_and_free(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    reentrant_calls++;
    uint64_t t = w->enqueued_ns;
    free(w);
    if (outcome == LV_ADMIT_GRANTED)
        lv_bulkhead_leave(reentrant_bulkhead, t + NS_PER_MS);
}

static void test_bulkhead_callbacks_may_reenter_and_free(void)
{
    lv_bulkhead_t *b = reentrant_bulkhead = lv_bulkhead_new(1, 100, 50);
    reentrant_calls = 0;
    tw_t first;
    tw_init(&first, 0, NULL, NULL);
    CHECK_EQ(lv_bulkhead_enter(b, &first.w, MS(0)), LV_BULKHEAD_ADMITTED);
    for (int i = 0; i < 50; i++) {
        lv_admit_waiter_t *w = calloc(1, sizeof *w);
        w->on_admit = leave_and_free;
        CHECK_EQ(lv_bulkhead_enter(b, w, MS(i)), LV_BULKHEAD_QUEUED);
    }
    /* Some are granted (and leave at once), the rest expire and are shed. */
    lv_bulkhead_leave(b, MS(45));
    CHECK_EQ(reentrant_calls, 50);
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.granted + st.shed_expired + st.shed_policy, 50);
    lv_bulkhead_free(b);

    /* Freeing with waiters still queued forgets them without a call. */
    b = lv_bulkhead_new(1, 10, 1000);
    tw_t w[3];
    for (int i = 0; i < 3; i++)
        tw_init(&w[i], i, NULL, NULL);
    lv_bulkhead_enter(b, &w[0].w, MS(0));
    lv_bulkhead_enter(b, &w[1].w, MS(0));
    lv_bulkhead_enter(b, &w[2].w, MS(0));
    lv_bulkhead_free(b);
    CHECK_EQ(w[1].calls + w[2].calls, 0);
}

/* ---- the overload policy under sustained overload: a simulation ---- */

enum { EV_ARRIVE, EV_DONE, EV_TIMEOUT };

typedef struct {
    uint64_t t, seq;
    int kind, id;
} ev_t;

typedef struct {
    ev_t *v;
    size_t n, cap;
    uint64_t seq;
} heap_t;

static bool ev_before(const ev_t *a, const ev_t *b)
{
    return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static void heap_push(heap_t *h, uint64_t t, int kind, int id)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->v = realloc(h->v, h->cap * sizeof *h->v);
    }
    size_t i = h->n++;
    h->v[i] = (ev_t){t, h->seq++, kind, id};
    while (i && ev_before(&h->v[i], &h->v[(i - 1) / 2])) {
        ev_t tmp = h->v[i];
        h->v[i] = h->v[(i - 1) / 2];
        h->v[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static ev_t heap_pop(heap_t *h)
{
    ev_t top = h->v[0];
    h->v[0] = h->v[--h->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && ev_before(&h->v[l], &h->v[m]))
            m = l;
        if (r < h->n && ev_before(&h->v[r], &h->v[m]))
            m = r;
        if (m == i)
            break;
        ev_t tmp = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = tmp;
        i = m;
    }
    return top;
}

typedef struct {
    lv_admit_waiter_t w;
    int id;
    bool done; /* answered: granted (then served), shed, full or timed out */
} sim_req_t;

typedef struct {
    long arrivals, served, full, shed, timeouts;
    long served_in_window; /* finished while arrivals were still coming */
    double p50_ms, p99_ms, max_ms; /* waits of requests granted from the queue */
} sim_result_t;

static struct {
    heap_t heap;
    uint64_t now;
    lv_bulkhead_t *b;
    double *waits;
    long nwaits;
    sim_result_t *r;
} sim;

#define SIM_SLOTS 10
#define SIM_ARRIVAL_US 2000 /* 500/s */
#define SIM_SECONDS 60
#define SIM_TIMEOUT_MS 2000

/* 80..120 ms, about 100 ms: 10 slots serve ~100/s, a fifth of the
 * arrivals. Drawn in the order requests start, from a generator reset for
 * each run, so both policies get the same sequence of service times. */
static uint32_t service_rng;

static uint64_t service_ns(void)
{
    service_rng = service_rng * 1103515245u + 12345u;
    return (uint64_t)(80 + (service_rng >> 16) % 41u) * NS_PER_MS;
}

static void sim_on_admit(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    sim_req_t *q = (sim_req_t *)w;
    q->done = true;
    if (outcome == LV_ADMIT_SHED) {
        sim.r->shed++;
        return;
    }
    sim.waits[sim.nwaits++] = (double)(sim.now - w->enqueued_ns) / NS_PER_MS;
    heap_push(&sim.heap, sim.now + service_ns(), EV_DONE, q->id);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void simulate(bool policy, sim_result_t *r)
{
    long n = SIM_SECONDS * 1000000L / SIM_ARRIVAL_US;
    sim_req_t *reqs = calloc((size_t)n, sizeof *reqs);
    memset(r, 0, sizeof *r);
    memset(&sim, 0, sizeof sim);
    service_rng = 1;
    sim.r = r;
    sim.waits = calloc((size_t)n, sizeof *sim.waits);
    sim.b = lv_bulkhead_new(SIM_SLOTS, 10000, SIM_TIMEOUT_MS);
    if (!policy)
        lv_bulkhead_set_overload(sim.b, 0, 0);
    for (long i = 0; i < n; i++)
        heap_push(&sim.heap, MS(0) + (uint64_t)i * SIM_ARRIVAL_US * 1000, EV_ARRIVE, (int)i);
    while (sim.heap.n) {
        ev_t e = heap_pop(&sim.heap);
        sim.now = e.t;
        sim_req_t *q = &reqs[e.id];
        switch (e.kind) {
        case EV_ARRIVE:
            r->arrivals++;
            q->id = e.id;
            q->w.on_admit = sim_on_admit;
            switch (lv_bulkhead_enter(sim.b, &q->w, sim.now)) {
            case LV_BULKHEAD_ADMITTED:
                q->done = true;
                heap_push(&sim.heap, sim.now + service_ns(), EV_DONE, e.id);
                break;
            case LV_BULKHEAD_QUEUED:
                /* The caller's queue-timeout timer. */
                heap_push(&sim.heap, sim.now + SIM_TIMEOUT_MS * NS_PER_MS, EV_TIMEOUT, e.id);
                break;
            case LV_BULKHEAD_FULL:
                q->done = true;
                r->full++;
                break;
            }
            break;
        case EV_DONE:
            r->served++;
            r->served_in_window += sim.now < MS(SIM_SECONDS * 1000);
            lv_bulkhead_leave(sim.b, sim.now);
            break;
        case EV_TIMEOUT:
            if (lv_bulkhead_cancel(sim.b, &q->w)) {
                q->done = true;
                r->timeouts++;
            }
            break;
        }
    }
    for (long i = 0; i < n; i++)
        if (!reqs[i].done)
            r->arrivals = -1; /* a request nobody answered */
    qsort(sim.waits, (size_t)sim.nwaits, sizeof *sim.waits, cmp_double);
    if (sim.nwaits) {
        r->p50_ms = sim.waits[sim.nwaits / 2];
        r->p99_ms = sim.waits[sim.nwaits * 99 / 100];
        r->max_ms = sim.waits[sim.nwaits - 1];
    }
    lv_bulkhead_free(sim.b);
    free(sim.waits);
    free(sim.heap.v);
    free(reqs);
}

static void test_policy_bounds_queueing_delay(void)
{
    sim_result_t fifo, codel;
    simulate(false, &fifo);
    simulate(true, &codel);
    const sim_result_t *rs[2] = {&fifo, &codel};
    const char *names[2] = {"plain FIFO", "CoDel+LIFO"};
    for (int i = 0; i < 2; i++)
        printf("  %-10s: %ld arrivals, %ld served (%ld in the minute), %ld timed out, %ld shed, %ld full; "
               "queue wait of granted p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
               names[i], rs[i]->arrivals, rs[i]->served, rs[i]->served_in_window, rs[i]->timeouts, rs[i]->shed, rs[i]->full, rs[i]->p50_ms,
               rs[i]->p99_ms, rs[i]->max_ms);
    long n = SIM_SECONDS * 1000000L / SIM_ARRIVAL_US;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(rs[i]->arrivals, n); /* every request answered exactly once */
        CHECK_EQ(rs[i]->served + rs[i]->timeouts + rs[i]->shed + rs[i]->full, n);
    }
    /* FIFO: everything served has waited about the whole timeout. */
    CHECK(fifo.p50_ms >= 0.9 * SIM_TIMEOUT_MS);
    CHECK(fifo.p99_ms >= 0.95 * SIM_TIMEOUT_MS);
    CHECK(fifo.max_ms <= SIM_TIMEOUT_MS);
    /* The policy: target is timeout/10 = 200 ms; the p99 stays within
     * 2 x target and far from the timeout, most requests barely wait, and
     * refusals come early (shed) rather than at the timeout. */
    CHECK(codel.p99_ms <= 2 * 200);
    CHECK(codel.max_ms <= 2 * 200 + 100);
    CHECK(codel.p50_ms <= 20);
    CHECK_INT(codel.shed, >, codel.timeouts * 10);
    /* Same goodput: the slots are as busy either way (FIFO goes on serving
     * its two-second backlog after the last arrival, hence the window). */
    CHECK(fabs((double)codel.served_in_window - (double)fifo.served_in_window) <= 0.01 * (double)fifo.served_in_window);
}

/* ---- Retry-After from the drain rate ---- */

static void noop_admit(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    (void)w;
    (void)outcome;
}

static void test_bulkhead_retry_after_follows_drain_rate(void)
{
    lv_bulkhead_t *b = lv_bulkhead_new(4, 1000, 60000);
    lv_bulkhead_set_overload(b, 0, 0);
    static lv_admit_waiter_t w[1000];
    int next = 0;
    for (int i = 0; i < 4 + 125; i++) {
        w[next].on_admit = noop_admit;
        lv_bulkhead_enter(b, &w[next++], MS(0));
    }
    /* Nothing has drained yet: the most a waiter would wait, the timeout. */
    CHECK_EQ(lv_bulkhead_retry_after(b, MS(0)), 60);
    /* 50 slots a second, 125 waiting (kept topped up): 126 / 50 = 2.5 s. */
    uint64_t t = 0;
    for (; t < 2000; t += 20) {
        lv_bulkhead_leave(b, MS(t));
        w[next].on_admit = noop_admit;
        lv_bulkhead_enter(b, &w[next++], MS(t));
    }
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(b, &st);
    CHECK_EQ(st.queued, 125);
    CHECK_INT(st.drain_per_s, >=, 48);
    CHECK_INT(st.drain_per_s, <=, 52);
    CHECK_EQ(lv_bulkhead_retry_after(b, MS(t)), 3);
    /* The origin slows to 10 a second: after a couple of seconds the
     * estimate has followed (126 / 10 = 12.6 s). */
    for (; t < 5000; t += 100) {
        lv_bulkhead_leave(b, MS(t));
        w[next].on_admit = noop_admit;
        lv_bulkhead_enter(b, &w[next++], MS(t));
    }
    unsigned ra = lv_bulkhead_retry_after(b, MS(t));
    CHECK_INT(ra, >=, 12);
    CHECK_INT(ra, <=, 14);
    /* And faster again: 500 a second, 126 / 500 = 0.25 s, said as 1. */
    for (; t < 7000; t += 2) {
        lv_bulkhead_leave(b, MS(t));
        w[next % 1000].on_admit = noop_admit;
        lv_bulkhead_enter(b, &w[next++ % 1000], MS(t));
    }
    CHECK_EQ(lv_bulkhead_retry_after(b, MS(t)), 1);
    /* Nothing frees up for seconds: no rate to quote, back to the timeout. */
    CHECK_EQ(lv_bulkhead_retry_after(b, MS(t + 2500)), 60);
    for (int i = 0; i < 1000; i++)
        lv_bulkhead_cancel(b, &w[i]);
    lv_bulkhead_free(b);
}

/* ---- bulkhead under threads ---- */

typedef struct {
    lv_admit_waiter_t w;
    atomic_int done;
    lv_admit_outcome_t outcome;
} thread_waiter_t;

static void signal_admit(lv_admit_waiter_t *w, lv_admit_outcome_t outcome)
{
    thread_waiter_t *t = (thread_waiter_t *)w;
    t->outcome = outcome;
    atomic_store_explicit(&t->done, 1, memory_order_release);
}

static struct {
    lv_bulkhead_t *b;
    atomic_int in_flight, max_in_flight, violations;
    atomic_long runs, cancels, sheds, fulls;
    pthread_barrier_t start;
    unsigned slots;
    int iterations;
    long hold_ns; /* 0: yield once */
} bh;


static void hold_slot(void)
{
    int now = atomic_fetch_add(&bh.in_flight, 1) + 1;
    if (now > (int)bh.slots)
        atomic_fetch_add(&bh.violations, 1);
    int seen = atomic_load(&bh.max_in_flight);
    while (now > seen && !atomic_compare_exchange_weak(&bh.max_in_flight, &seen, now))
        ;
    /* Let another thread run while the slot is held, so that they meet. */
    if (bh.hold_ns)
        nanosleep(&(struct timespec){0, bh.hold_ns}, NULL);
    else
        sched_yield();
    atomic_fetch_sub(&bh.in_flight, 1);
    atomic_fetch_add(&bh.runs, 1);
    lv_bulkhead_leave(bh.b, clock_ns());
}

static void *bulkhead_worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    thread_waiter_t tw;
    pthread_barrier_wait(&bh.start);
    for (int i = 0; i < bh.iterations; i++) {
        memset(&tw, 0, sizeof tw);
        tw.w.on_admit = signal_admit;
        switch (lv_bulkhead_enter(bh.b, &tw.w, clock_ns())) {
        case LV_BULKHEAD_ADMITTED:
            hold_slot();
            break;
        case LV_BULKHEAD_FULL:
            atomic_fetch_add(&bh.fulls, 1);
            break;
        case LV_BULKHEAD_QUEUED:
            /* Now and then the client goes away while it waits. */
            if (rand_r(&seed) % 4 == 0 && lv_bulkhead_cancel(bh.b, &tw.w)) {
                atomic_fetch_add(&bh.cancels, 1);
                break;
            }
            while (!atomic_load_explicit(&tw.done, memory_order_acquire))
                sched_yield();
            if (tw.outcome == LV_ADMIT_GRANTED)
                hold_slot();
            else
                atomic_fetch_add(&bh.sheds, 1);
            break;
        }
    }
    return NULL;
}

/* Threads enter, queue, get cancelled, granted or shed, and leave; the
 * books must balance and the slots never be exceeded. */
static void run_bulkhead_threads(unsigned slots, int64_t timeout_ms, int64_t target_ms, int iterations,
                                 long hold_ns, const char *what)
{
    memset(&bh, 0, sizeof bh);
    bh.slots = slots;
    bh.iterations = iterations;
    bh.hold_ns = hold_ns;
    bh.b = lv_bulkhead_new(slots, 8, timeout_ms);
    lv_bulkhead_set_overload(bh.b, target_ms, target_ms);
    pthread_barrier_init(&bh.start, NULL, NTHREADS);
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&tids[i], NULL, bulkhead_worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&bh.start);
    lv_bulkhead_stats_t st;
    lv_bulkhead_stats(bh.b, &st);
    printf("  bulkhead, %s: %ld runs, max in flight %d, %ld queued, %ld cancelled, %ld shed, %ld full\n", what,
           (long)bh.runs, (int)bh.max_in_flight, (long)st.queued_total, (long)bh.cancels, (long)bh.sheds,
           (long)bh.fulls);
    CHECK_INT(st.queued_total, >, 0); /* the threads did meet */
    CHECK_EQ(bh.violations, 0);
    CHECK_INT(bh.max_in_flight, <=, slots);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.admitted + st.granted, bh.runs);
    CHECK_EQ(st.timeouts_or_cancels, bh.cancels);
    CHECK_EQ(st.shed_policy + st.shed_expired, bh.sheds);
    CHECK_EQ(st.shed_full, bh.fulls);
    CHECK_EQ(st.queued_total, st.granted + st.timeouts_or_cancels + st.shed_policy + st.shed_expired);
    CHECK_EQ(bh.runs + bh.cancels + bh.sheds + bh.fulls, NTHREADS * iterations);
    lv_bulkhead_free(bh.b);
}

static void test_bulkhead_threads_never_exceed_concurrency(void)
{
    run_bulkhead_threads(2, 10000, 1000, 20000, 0, "patient");
    /* One slot held 1.5 ms, deadline 1 ms, target 1 ms: deadlines and the
     * policy shed waiters from other threads, racing with the waiters' own
     * cancels. */
    run_bulkhead_threads(1, 1, 1, 300, 1500000, "1 ms deadline");
    CHECK_INT(bh.sheds, >, 0);
}

/* ---- cost per operation ---- */

static double per_op_ns(uint64_t start, long n)
{
    return (double)(clock_ns() - start) / (double)n;
}

static void test_cost_per_operation(void)
{
    enum { N = 5000000 };
    /* The fastest rate: with now moving 1 ns a call, every take succeeds
     * and writes (the common, admitting path). */
    lv_token_bucket_t *tb = lv_token_bucket_new(1e9, 1);
    long ok = 0;
    uint64_t t = clock_ns();
    for (long i = 0; i < N; i++)
        ok += lv_token_bucket_take(tb, MS(0) + (uint64_t)i, NULL);
    double take_ns = per_op_ns(t, N);
    CHECK_EQ(ok, N);
    /* Refusals (read only). */
    unsigned ra;
    t = clock_ns();
    for (long i = 0; i < N; i++)
        ok -= lv_token_bucket_take(tb, MS(0), &ra);
    double refuse_ns = per_op_ns(t, N);
    lv_token_bucket_free(tb);

    lv_bulkhead_t *b = lv_bulkhead_new(256, 1000, 1000);
    lv_admit_waiter_t w = {.on_admit = noop_admit};
    t = clock_ns();
    for (long i = 0; i < N; i++) {
        ok += lv_bulkhead_enter(b, &w, MS(0) + (uint64_t)i) == LV_BULKHEAD_ADMITTED;
        lv_bulkhead_leave(b, MS(0) + (uint64_t)i);
    }
    double bulkhead_ns = per_op_ns(t, N);
    lv_bulkhead_free(b);

    lv_client_limiter_t *l = lv_client_limiter_new(1e6, 1e6, 100000);
    char keys[1000][24];
    for (int i = 0; i < 1000; i++)
        snprintf(keys[i], sizeof keys[i], "10.1.%d.%d", i / 256, i % 256);
    t = clock_ns();
    for (long i = 0; i < N; i++)
        lv_client_limiter_take(l, lv_slice_cstr(keys[i % 1000]), MS(0) + (uint64_t)i, NULL);
    double client_ns = per_op_ns(t, N);
    lv_client_limiter_free(l);

    printf("  cost (uncontended, one thread): token bucket take %.1f ns (refusal %.1f ns), "
           "bulkhead enter+leave %.1f ns, client limiter take %.1f ns\n",
           take_ns, refuse_ns, bulkhead_ns, client_ns);
}

int main(void)
{
    LV_RUN(test_bucket_burst_then_rate);
    LV_RUN(test_bucket_retry_after);
    LV_RUN(test_bucket_odd_inputs);
    LV_RUN(test_bucket_threads_share_one_limit);
    LV_RUN(test_client_keys_are_isolated);
    LV_RUN(test_client_long_keys);
    LV_RUN(test_client_lru_eviction_order);
    LV_RUN(test_client_million_keys_stay_bounded);
    LV_RUN(test_client_threads);
    LV_RUN(test_bulkhead_without_queue);
    LV_RUN(test_bulkhead_fifo_and_queue_max);
    LV_RUN(test_bulkhead_cancel);
    LV_RUN(test_bulkhead_expired_waiters_are_shed);
    LV_RUN(test_bulkhead_overload_goes_lifo_and_sheds);
    LV_RUN(test_bulkhead_overload_full_queue_sheds_oldest);
    LV_RUN(test_bulkhead_callbacks_may_reenter_and_free);
    LV_RUN(test_policy_bounds_queueing_delay);
    LV_RUN(test_bulkhead_retry_after_follows_drain_rate);
    LV_RUN(test_bulkhead_threads_never_exceed_concurrency);
    LV_RUN(test_cost_per_operation);
    return lv_test_summary();
}
