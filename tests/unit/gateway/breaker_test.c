/* breaker_test.c: the circuit breaker, the retry budget and backoff.
 *
 * Time is explicit: every call gets a now_ns built from T0 (an arbitrary
 * monotonic instant) plus milliseconds, so each test is deterministic. The
 * threaded tests start all threads on a barrier so that they really ask at
 * the same moment, and check the invariants that the locking must keep:
 * one probe per half-open, one opening per burst of failures, no lost
 * request counts. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/breaker.h"
#include "test.h"

#define T0 (1000ull * 1000000000ull) /* 1000 s after boot */
#define MS(n) (T0 + (uint64_t)(n) * 1000000ull)
#define SEC 1000

/* ---- circuit breaker ---- */

static void test_opens_after_exactly_failures(void)
{
    lv_breaker_t *b = lv_breaker_new(5, 10 * SEC, 5 * SEC);
    bool probe = true;
    CHECK(lv_breaker_allow(b, MS(0), &probe));
    CHECK(!probe);
    for (int i = 0; i < 4; i++)
        lv_breaker_record(b, MS(100 * i), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(400)), LV_BREAKER_CLOSED);
    CHECK(lv_breaker_allow(b, MS(400), &probe));
    /* Successes do not reset the count: the window counts failures only. */
    lv_breaker_record(b, MS(450), true, false);
    CHECK_EQ(lv_breaker_state(b, MS(450)), LV_BREAKER_CLOSED);
    lv_breaker_record(b, MS(500), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(500)), LV_BREAKER_OPEN);
    CHECK(!lv_breaker_allow(b, MS(501), &probe));
    CHECK(!probe);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, 1);
    CHECK_EQ(st.probes, 0);
    CHECK_EQ(st.rejected, 1);
    lv_breaker_free(b);
}

static void test_failures_spread_beyond_window_do_not_open(void)
{
    /* One failure every 3 s: any 10 s hold at most 4 of them. */
    lv_breaker_t *b = lv_breaker_new(5, 10 * SEC, 5 * SEC);
    for (int i = 0; i < 100; i++) {
        lv_breaker_record(b, MS(3 * SEC * i), false, false);
        CHECK_EQ(lv_breaker_state(b, MS(3 * SEC * i)), LV_BREAKER_CLOSED);
    }
    lv_breaker_free(b);

    /* Two failures exactly one window apart are not in the same window. */
    b = lv_breaker_new(2, 10 * SEC, 5 * SEC);
    lv_breaker_record(b, MS(0), false, false);
    lv_breaker_record(b, MS(10 * SEC), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(10 * SEC)), LV_BREAKER_CLOSED);
    /* ...but 9.5 s apart (19/20 of the window, the guaranteed part) they
     * are, whatever the bucket boundaries. */
    lv_breaker_record(b, MS(19500), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(19500)), LV_BREAKER_OPEN);
    lv_breaker_free(b);

    /* The same with the first failure just after a bucket boundary. */
    b = lv_breaker_new(2, 10 * SEC, 5 * SEC);
    lv_breaker_record(b, MS(1), false, false);
    lv_breaker_record(b, MS(9501), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(9501)), LV_BREAKER_OPEN);
    lv_breaker_free(b);
}

static void test_open_refuses_until_open_for(void)
{
    lv_breaker_t *b = lv_breaker_new(1, 10 * SEC, 5 * SEC);
    lv_breaker_record(b, MS(0), false, false);
    bool probe = true;
    for (int ms = 0; ms < 5 * SEC; ms += 250) {
        CHECK(!lv_breaker_allow(b, MS(ms), &probe));
        CHECK(!probe);
        CHECK_EQ(lv_breaker_state(b, MS(ms)), LV_BREAKER_OPEN);
    }
    CHECK(!lv_breaker_allow(b, MS(5 * SEC) - 1, &probe));
    /* Once open_for has passed, the state already shows HALF_OPEN. */
    CHECK_EQ(lv_breaker_state(b, MS(5 * SEC)), LV_BREAKER_HALF_OPEN);
    CHECK(lv_breaker_allow(b, MS(5 * SEC), &probe));
    CHECK(probe);
    CHECK_EQ(lv_breaker_state(b, MS(5 * SEC)), LV_BREAKER_HALF_OPEN);
    for (int i = 0; i < 10; i++) {
        CHECK(!lv_breaker_allow(b, MS(5 * SEC + 100 * i), &probe));
        CHECK(!probe);
    }
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, 1);
    CHECK_EQ(st.probes, 1);
    CHECK_EQ(st.rejected, 20 + 1 + 10);
    lv_breaker_free(b);
}

/* Opens b at `at` with `failures` failures and lets a probe out 5 s later. */
static bool open_and_probe(lv_breaker_t *b, unsigned failures, uint64_t at)
{
    for (unsigned i = 0; i < failures; i++)
        lv_breaker_record(b, at, false, false);
    bool probe = false;
    return lv_breaker_allow(b, at + 5000000000ull, &probe) && probe;
}

static void test_probe_success_closes(void)
{
    lv_breaker_t *b = lv_breaker_new(3, 10 * SEC, 5 * SEC);
    CHECK(open_and_probe(b, 3, MS(0)));
    lv_breaker_record(b, MS(5200), true, true);
    CHECK_EQ(lv_breaker_state(b, MS(5200)), LV_BREAKER_CLOSED);
    bool probe = true;
    CHECK(lv_breaker_allow(b, MS(5201), &probe));
    CHECK(!probe);
    /* The window was cleared: it takes 3 new failures to open again. */
    lv_breaker_record(b, MS(5300), false, false);
    lv_breaker_record(b, MS(5300), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(5300)), LV_BREAKER_CLOSED);
    lv_breaker_record(b, MS(5300), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(5300)), LV_BREAKER_OPEN);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, 2);
    CHECK_EQ(st.probes, 1);
    lv_breaker_free(b);
}

static void test_probe_failure_reopens(void)
{
    lv_breaker_t *b = lv_breaker_new(3, 10 * SEC, 5 * SEC);
    CHECK(open_and_probe(b, 3, MS(0)));
    lv_breaker_record(b, MS(6000), false, true);
    CHECK_EQ(lv_breaker_state(b, MS(6000)), LV_BREAKER_OPEN);
    /* Another full open_for from the probe's failure, not from the first
     * opening. */
    CHECK_EQ(lv_breaker_retry_after(b, MS(6000)), 5);
    bool probe = true;
    CHECK(!lv_breaker_allow(b, MS(10999), &probe));
    CHECK(!probe);
    CHECK(lv_breaker_allow(b, MS(11000), &probe));
    CHECK(probe);
    lv_breaker_record(b, MS(11010), true, true);
    CHECK_EQ(lv_breaker_state(b, MS(11010)), LV_BREAKER_CLOSED);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, 2);
    CHECK_EQ(st.probes, 2);
    CHECK_EQ(st.rejected, 1);
    lv_breaker_free(b);
}

static void test_retry_after_counts_down(void)
{
    lv_breaker_t *b = lv_breaker_new(1, 10 * SEC, 5 * SEC);
    CHECK_EQ(lv_breaker_retry_after(b, MS(0)), 1); /* closed */
    lv_breaker_record(b, MS(0), false, false);
    CHECK_EQ(lv_breaker_retry_after(b, MS(0)), 5);
    CHECK_EQ(lv_breaker_retry_after(b, MS(1)), 5); /* 4.999 s rounds up */
    CHECK_EQ(lv_breaker_retry_after(b, MS(999)), 5);
    CHECK_EQ(lv_breaker_retry_after(b, MS(1000)), 4);
    CHECK_EQ(lv_breaker_retry_after(b, MS(2500)), 3);
    CHECK_EQ(lv_breaker_retry_after(b, MS(4000)), 1);
    CHECK_EQ(lv_breaker_retry_after(b, MS(4999)), 1);
    CHECK_EQ(lv_breaker_retry_after(b, MS(5000)), 1);
    CHECK_EQ(lv_breaker_retry_after(b, MS(60000)), 1);
    bool probe;
    CHECK(lv_breaker_allow(b, MS(5000), &probe) && probe);
    CHECK_EQ(lv_breaker_retry_after(b, MS(5000)), 1); /* probe out */
    lv_breaker_free(b);

    /* Long open_for: minutes, still exact. */
    b = lv_breaker_new(1, 10 * SEC, 300 * SEC);
    lv_breaker_record(b, MS(0), false, false);
    CHECK_EQ(lv_breaker_retry_after(b, MS(0)), 300);
    CHECK_EQ(lv_breaker_retry_after(b, MS(100 * SEC)), 200);
    lv_breaker_free(b);
}

static void test_late_outcomes_are_ignored(void)
{
    lv_breaker_t *b = lv_breaker_new(2, 10 * SEC, 5 * SEC);
    bool probe;
    for (int i = 0; i < 10; i++)
        CHECK(lv_breaker_allow(b, MS(0), &probe) && !probe);
    lv_breaker_record(b, MS(10), false, false);
    lv_breaker_record(b, MS(10), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(10)), LV_BREAKER_OPEN);
    /* Requests sent before it opened report now: failures do not extend
     * the open period, successes do not close it. */
    lv_breaker_record(b, MS(4000), false, false);
    lv_breaker_record(b, MS(4000), true, false);
    CHECK_EQ(lv_breaker_state(b, MS(4000)), LV_BREAKER_OPEN);
    CHECK_EQ(lv_breaker_retry_after(b, MS(4000)), 2);
    CHECK(lv_breaker_allow(b, MS(5010), &probe) && probe);
    /* And while the probe is out. */
    lv_breaker_record(b, MS(5020), true, false);
    lv_breaker_record(b, MS(5020), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(5020)), LV_BREAKER_HALF_OPEN);
    CHECK(!lv_breaker_allow(b, MS(5020), &probe));
    lv_breaker_record(b, MS(5030), true, true);
    CHECK_EQ(lv_breaker_state(b, MS(5030)), LV_BREAKER_CLOSED);
    lv_breaker_free(b);
}

static void test_lost_probe_is_replaced(void)
{
    lv_breaker_t *b = lv_breaker_new(1, 10 * SEC, 5 * SEC);
    CHECK(open_and_probe(b, 1, MS(0)));
    bool probe;
    /* The probe went out at 5 s and never reports. */
    CHECK(!lv_breaker_allow(b, MS(5 * SEC + LV_BREAKER_PROBE_LOST_MS - 1), &probe));
    CHECK(lv_breaker_allow(b, MS(5 * SEC + LV_BREAKER_PROBE_LOST_MS), &probe));
    CHECK(probe);
    CHECK(!lv_breaker_allow(b, MS(5 * SEC + LV_BREAKER_PROBE_LOST_MS), &probe));
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.probes, 2);
    /* The second probe succeeds; the first finally fails: by now it is an
     * ordinary request of a closed breaker, and one failure opens it. */
    lv_breaker_record(b, MS(70 * SEC), true, true);
    CHECK_EQ(lv_breaker_state(b, MS(70 * SEC)), LV_BREAKER_CLOSED);
    lv_breaker_record(b, MS(71 * SEC), false, true);
    CHECK_EQ(lv_breaker_state(b, MS(71 * SEC)), LV_BREAKER_OPEN);
    lv_breaker_free(b);

    /* With open_for longer than the constant, the probe gets open_for. */
    b = lv_breaker_new(1, 10 * SEC, 120 * SEC);
    CHECK(!open_and_probe(b, 1, MS(0))); /* 5 s is too early */
    CHECK(lv_breaker_allow(b, MS(120 * SEC), &probe) && probe);
    CHECK(!lv_breaker_allow(b, MS(239 * SEC), &probe));
    CHECK(lv_breaker_allow(b, MS(240 * SEC), &probe) && probe);
    lv_breaker_free(b);
}

static void test_clock_going_backwards(void)
{
    /* Loops cache their own clock, so outcomes can arrive slightly out of
     * order; an earlier time is taken as the latest one seen. */
    lv_breaker_t *b = lv_breaker_new(3, 10 * SEC, 5 * SEC);
    lv_breaker_record(b, MS(20 * SEC), false, false);
    lv_breaker_record(b, MS(19 * SEC), false, false);
    lv_breaker_record(b, MS(0), false, false);
    CHECK_EQ(lv_breaker_state(b, MS(20 * SEC)), LV_BREAKER_OPEN);
    /* Opened at 20 s (the latest time seen), not at 0. */
    bool probe;
    CHECK(!lv_breaker_allow(b, MS(24 * SEC), &probe));
    CHECK(lv_breaker_allow(b, MS(25 * SEC), &probe) && probe);
    /* A probe report stamped before the probe was sent still counts. */
    lv_breaker_record(b, MS(1), true, true);
    CHECK_EQ(lv_breaker_state(b, MS(25 * SEC)), LV_BREAKER_CLOSED);
    lv_breaker_free(b);
}

static void test_null_and_clamped_parameters(void)
{
    bool probe = true;
    CHECK(lv_breaker_allow(NULL, MS(0), &probe));
    CHECK(!probe);
    lv_breaker_record(NULL, MS(0), false, false);
    CHECK_EQ(lv_breaker_state(NULL, MS(0)), LV_BREAKER_CLOSED);
    CHECK_EQ(lv_breaker_retry_after(NULL, MS(0)), 1);
    lv_breaker_stats_t st = {1, 2, 3};
    lv_breaker_stats(NULL, &st);
    CHECK_EQ(st.opened + st.probes + st.rejected, 0);
    lv_breaker_stats(NULL, NULL);
    lv_breaker_free(NULL);

    /* failures 0 acts as 1; a zero or negative span acts as 1 ms. */
    lv_breaker_t *b = lv_breaker_new(0, 0, -5);
    CHECK(lv_breaker_allow(b, 0, NULL));
    lv_breaker_record(b, 0, false, false);
    CHECK_EQ(lv_breaker_state(b, 0), LV_BREAKER_OPEN);
    CHECK_EQ(lv_breaker_retry_after(b, 0), 1);
    CHECK(!lv_breaker_allow(b, 999999, NULL));
    CHECK(lv_breaker_allow(b, 1000000, &probe) && probe);
    lv_breaker_record(b, 1000000, true, true);
    CHECK_EQ(lv_breaker_state(b, 1000000), LV_BREAKER_CLOSED);
    lv_breaker_free(b);

    /* Huge spans are clamped to a year and the clock at its very end does
     * not overflow the deadline. */
    b = lv_breaker_new(UINT32_MAX, INT64_MAX, INT64_MAX);
    lv_breaker_free(b);
    b = lv_breaker_new(1, INT64_MAX, INT64_MAX);
    lv_breaker_record(b, UINT64_MAX - 10, false, false);
    CHECK_EQ(lv_breaker_state(b, UINT64_MAX - 10), LV_BREAKER_OPEN);
    CHECK(!lv_breaker_allow(b, UINT64_MAX - 1, NULL));
    CHECK_EQ(lv_breaker_retry_after(b, 0), 365u * 24 * 3600); /* never above open_for */
    lv_breaker_free(b);
    b = lv_breaker_new(1, 10 * SEC, INT64_MAX);
    lv_breaker_record(b, MS(0), false, false);
    CHECK_EQ(lv_breaker_retry_after(b, MS(0)), 365u * 24 * 3600);
    lv_breaker_free(b);

    CHECK_STR(lv_breaker_state_name(LV_BREAKER_CLOSED), "closed");
    CHECK_STR(lv_breaker_state_name(LV_BREAKER_OPEN), "open");
    CHECK_STR(lv_breaker_state_name(LV_BREAKER_HALF_OPEN), "half_open");
    CHECK_STR(lv_breaker_state_name((lv_breaker_state_t)42), "unknown");
}

/* ---- the breaker against a model ---- */

/* A straightforward model of the breaker that keeps every failure's exact
 * time. Random sequences of allow/record (with a monotonic clock) must give
 * the same answers, states, Retry-After and counters as the real one. The
 * only freedom is the bucketed window: with w = window/20 (in ns, rounded
 * down), a failure younger than 19w must count and one of 20w or older
 * must not, so when the real breaker opens (or not) the model checks that
 * this was allowed and follows it. */
typedef struct {
    lv_breaker_state_t state;
    uint64_t deadline, open_for, lost, w;
    unsigned failures;
    uint64_t times[64];
    size_t ntimes;
    uint64_t opened, probes, rejected;
} model_t;

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static unsigned model_failures_younger(const model_t *m, uint64_t now, uint64_t age)
{
    unsigned n = 0;
    for (size_t i = 0; i < m->ntimes; i++)
        n += now - m->times[i] < age;
    return n;
}

static void model_open(model_t *m, uint64_t now)
{
    m->state = LV_BREAKER_OPEN;
    m->deadline = now + m->open_for;
    m->ntimes = 0;
    m->opened++;
}

static void run_model_sequence(uint64_t seed)
{
    uint64_t x = seed;
    model_t m = {.state = LV_BREAKER_CLOSED, .failures = 1 + (unsigned)(rnd(&x) % 5)};
    int64_t window_ms = 20 + (int64_t)(rnd(&x) % 2000), open_for_ms = 1 + (int64_t)(rnd(&x) % 1000);
    m.open_for = (uint64_t)open_for_ms * 1000000;
    m.w = (uint64_t)window_ms * 1000000 / 20;
    m.lost = m.open_for > LV_BREAKER_PROBE_LOST_MS * 1000000ull ? m.open_for : LV_BREAKER_PROBE_LOST_MS * 1000000ull;
    lv_breaker_t *b = lv_breaker_new(m.failures, window_ms, open_for_ms);
    bool outstanding[16]; /* probe flags of requests allowed, not yet recorded */
    size_t nout = 0;
    uint64_t now = T0 + rnd(&x) % 1000000000;
    for (int op = 0; op < 400; op++) {
        /* Mostly small steps, sometimes past open_for or the window. */
        now += rnd(&x) % 8 == 0 ? rnd(&x) % (m.open_for + m.w * 20) : rnd(&x) % (m.w / 2 + 1);
        if (m.state == LV_BREAKER_HALF_OPEN && rnd(&x) % 50 == 0)
            now += m.lost; /* a probe gets lost */
        lv_breaker_state_t expect_state = m.state == LV_BREAKER_OPEN && now >= m.deadline
                                              ? LV_BREAKER_HALF_OPEN : m.state;
        CHECK_EQ(lv_breaker_state(b, now), expect_state);
        unsigned expect_ra = 1;
        if (m.state == LV_BREAKER_OPEN && now < m.deadline)
            expect_ra = (unsigned)((m.deadline - now + 999999999) / 1000000000);
        CHECK_EQ(lv_breaker_retry_after(b, now), expect_ra);

        if (nout < 16 && (nout == 0 || rnd(&x) % 2)) {
            bool probe, expect_allow = true, expect_probe = false;
            if (m.state != LV_BREAKER_CLOSED) {
                if (now < m.deadline) {
                    expect_allow = false;
                    m.rejected++;
                } else {
                    expect_probe = true;
                    m.state = LV_BREAKER_HALF_OPEN;
                    m.deadline = now + m.lost;
                    m.probes++;
                }
            }
            bool allowed = lv_breaker_allow(b, now, &probe);
            CHECK_EQ(allowed, expect_allow);
            CHECK_EQ(probe, expect_probe);
            if (allowed)
                outstanding[nout++] = probe;
        } else {
            size_t i = rnd(&x) % nout;
            bool probe = outstanding[i], success = rnd(&x) % 3 == 0;
            outstanding[i] = outstanding[--nout];
            bool was_closed = m.state == LV_BREAKER_CLOSED;
            lv_breaker_record(b, now, success, probe);
            if (probe && m.state == LV_BREAKER_HALF_OPEN) {
                if (success) {
                    m.state = LV_BREAKER_CLOSED;
                    m.ntimes = 0;
                } else {
                    model_open(&m, now);
                }
            } else if (!success && was_closed) {
                if (m.ntimes == 64) /* keep the newest: the oldest are out of any window */
                    memmove(m.times, m.times + 1, sizeof m.times - sizeof m.times[0]), m.ntimes--;
                m.times[m.ntimes++] = now;
                bool opened = lv_breaker_state(b, now) == LV_BREAKER_OPEN;
                if (opened) {
                    CHECK_INT(model_failures_younger(&m, now, 20 * m.w), >=, m.failures);
                    model_open(&m, now);
                } else {
                    CHECK_INT(model_failures_younger(&m, now, 19 * m.w), <, m.failures);
                }
            }
        }
    }
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, m.opened);
    CHECK_EQ(st.probes, m.probes);
    CHECK_EQ(st.rejected, m.rejected);
    lv_breaker_free(b);
}

static void test_breaker_matches_model(void)
{
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        run_model_sequence(seed * 0x9E3779B97F4A7C15ull);
        if (lv_test_failed_now) {
            fprintf(stderr, "  (seed %llu)\n", (unsigned long long)seed);
            return;
        }
    }
}

/* ---- threaded breaker tests ---- */

#define NTHREADS 8

typedef struct {
    lv_breaker_t *b;
    pthread_barrier_t *start;
    uint64_t now;
    int allowed, probes;
} asker_t;

static void *ask_once(void *arg)
{
    asker_t *a = arg;
    pthread_barrier_wait(a->start);
    bool probe = false;
    a->allowed = lv_breaker_allow(a->b, a->now, &probe);
    a->probes = probe;
    return NULL;
}

static void test_threads_get_exactly_one_probe(void)
{
    lv_breaker_t *b = lv_breaker_new(1, 10 * SEC, 5 * SEC);
    lv_breaker_record(b, MS(0), false, false);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    const int rounds = 300;
    for (int round = 0; round < rounds; round++) {
        /* Every round begins 5 s after the last failure. */
        uint64_t now = MS(5 * SEC * (round + 1));
        asker_t askers[NTHREADS];
        pthread_t tids[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            askers[i] = (asker_t){.b = b, .start = &start, .now = now};
            pthread_create(&tids[i], NULL, ask_once, &askers[i]);
        }
        int allowed = 0, probes = 0;
        for (int i = 0; i < NTHREADS; i++) {
            pthread_join(tids[i], NULL);
            allowed += askers[i].allowed;
            probes += askers[i].probes;
        }
        CHECK_EQ(allowed, 1);
        CHECK_EQ(probes, 1);
        lv_breaker_record(b, now, false, true); /* re-open for the next round */
    }
    pthread_barrier_destroy(&start);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.probes, rounds);
    CHECK_EQ(st.opened, rounds + 1);
    CHECK_EQ(st.rejected, rounds * (NTHREADS - 1));
    lv_breaker_free(b);
}

typedef struct {
    lv_breaker_t *b;
    pthread_barrier_t *start;
    int id;
    unsigned long allowed, probes;
} hammer_t;

/* Every thread asks and reports as fast as it can for a while: a mix of
 * failures, probe successes and probe failures, with a clock that each
 * thread advances on its own (so times interleave out of order). */
static void *hammer(void *arg)
{
    hammer_t *h = arg;
    pthread_barrier_wait(h->start);
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(h->id + 1);
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t now = MS(i) + (x % 3000000);
        bool probe;
        if (lv_breaker_allow(h->b, now, &probe)) {
            h->allowed++;
            h->probes += probe;
            lv_breaker_record(h->b, now + 1000, (x >> 20) % 4 == 0, probe);
        }
        lv_breaker_state(h->b, now);
        lv_breaker_retry_after(h->b, now);
    }
    return NULL;
}

static void test_threads_hammer_consistent_counters(void)
{
    lv_breaker_t *b = lv_breaker_new(10, 50, 20);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    hammer_t hs[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        hs[i] = (hammer_t){.b = b, .start = &start, .id = i};
        pthread_create(&tids[i], NULL, hammer, &hs[i]);
    }
    unsigned long allowed = 0, probes = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        allowed += hs[i].allowed;
        probes += hs[i].probes;
    }
    pthread_barrier_destroy(&start);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.probes, probes);
    CHECK_EQ(allowed + st.rejected, NTHREADS * 20000ul);
    CHECK_INT(st.opened, >, 0);
    /* Each opening after the first follows a probe, or a close that
     * followed one: openings can never outrun probes by more than one. */
    CHECK_INT(st.opened, <=, st.probes + 1);
    lv_breaker_free(b);
}

typedef struct {
    lv_breaker_t *b;
    pthread_barrier_t *start;
} failer_t;

static void *fail_many(void *arg)
{
    failer_t *f = arg;
    pthread_barrier_wait(f->start);
    for (int i = 0; i < 1000; i++)
        lv_breaker_record(f->b, MS(i), false, false);
    return NULL;
}

static void test_threads_open_once(void)
{
    /* 8000 concurrent failures, 100 needed: one opening, the rest of the
     * failures report while open and are ignored. */
    lv_breaker_t *b = lv_breaker_new(100, 10 * SEC, 60 * SEC);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    failer_t f = {b, &start};
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&tids[i], NULL, fail_many, &f);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&start);
    lv_breaker_stats_t st;
    lv_breaker_stats(b, &st);
    CHECK_EQ(st.opened, 1);
    CHECK_EQ(lv_breaker_state(b, MS(1000)), LV_BREAKER_OPEN);
    lv_breaker_free(b);
}

/* ---- retry budget ---- */

/* Sends n first attempts evenly over [from_ms, from_ms + span_ms), each one
 * failing and asking for a retry; returns the retries granted. */
static int fail_all(lv_retry_budget_t *r, int n, uint64_t from_ms, uint64_t span_ms)
{
    int granted = 0;
    for (int i = 0; i < n; i++) {
        uint64_t now = MS(from_ms + span_ms * (uint64_t)i / (uint64_t)n);
        lv_retry_budget_request(r, now);
        granted += lv_retry_budget_try(r, now);
    }
    return granted;
}

static void test_budget_ratio_under_constant_failure(void)
{
    /* 1000 requests over 10 s, all failing: 10% from the ratio, plus the
     * minimum (1 at the start, then one a second). */
    lv_retry_budget_t *r = lv_retry_budget_new(0.1, 1.0);
    int granted = fail_all(r, 1000, 0, 10 * SEC);
    CHECK_INT(granted, >=, 100 + 10);
    CHECK_INT(granted, <=, 100 + 11);
    lv_retry_budget_stats_t st;
    lv_retry_budget_stats(r, &st);
    CHECK_EQ(st.granted, granted);
    CHECK_EQ(st.denied, 1000 - granted);
    lv_retry_budget_free(r);

    /* Without the minimum: exactly the ratio. */
    r = lv_retry_budget_new(0.1, 0);
    CHECK_EQ(fail_all(r, 1000, 0, 10 * SEC), 100);
    lv_retry_budget_free(r);

    /* Sustained for a minute at 100 requests a second: about 10% + 1/s
     * over the whole run too (the window slides, it does not reset). */
    r = lv_retry_budget_new(0.1, 1.0);
    granted = fail_all(r, 6000, 0, 60 * SEC);
    CHECK_INT(granted, >=, 600 + 60);
    CHECK_INT(granted, <=, 600 + 61);
    lv_retry_budget_free(r);

    /* A burst: 1000 requests in one second. */
    r = lv_retry_budget_new(0.2, 0);
    CHECK_EQ(fail_all(r, 1000, 0, 1 * SEC), 200);
    lv_retry_budget_free(r);
}

static void test_budget_minimum_at_low_traffic(void)
{
    /* No traffic to speak of: the ratio allows nothing, the minimum one
     * retry a second. */
    lv_retry_budget_t *r = lv_retry_budget_new(0.1, 1.0);
    for (int i = 0; i < 5; i++)
        lv_retry_budget_request(r, MS(0));
    CHECK(lv_retry_budget_try(r, MS(0)));
    CHECK(!lv_retry_budget_try(r, MS(0)));
    CHECK(!lv_retry_budget_try(r, MS(999)));
    CHECK(lv_retry_budget_try(r, MS(1999)));
    CHECK(!lv_retry_budget_try(r, MS(1999)));
    /* A long quiet spell does not bank more than one second's worth. */
    CHECK(lv_retry_budget_try(r, MS(100 * SEC)));
    CHECK(!lv_retry_budget_try(r, MS(100 * SEC)));
    lv_retry_budget_free(r);

    /* Half a retry a second: one every two seconds. */
    r = lv_retry_budget_new(0.1, 0.5);
    CHECK(lv_retry_budget_try(r, MS(0)));
    CHECK(!lv_retry_budget_try(r, MS(1000)));
    CHECK(lv_retry_budget_try(r, MS(2000)));
    lv_retry_budget_free(r);

    /* Three a second: a burst of three, then one every third of a second. */
    r = lv_retry_budget_new(0, 3);
    CHECK_EQ(lv_retry_budget_try(r, MS(0)) + lv_retry_budget_try(r, MS(0)) +
             lv_retry_budget_try(r, MS(0)) + lv_retry_budget_try(r, MS(0)), 3);
    CHECK(lv_retry_budget_try(r, MS(334)));
    CHECK(!lv_retry_budget_try(r, MS(334)));
    lv_retry_budget_free(r);

    /* No minimum: ten requests fund exactly one retry at 10%. */
    r = lv_retry_budget_new(0.1, 0);
    for (int i = 0; i < 9; i++)
        lv_retry_budget_request(r, MS(0));
    CHECK(!lv_retry_budget_try(r, MS(0)));
    lv_retry_budget_request(r, MS(0));
    CHECK(lv_retry_budget_try(r, MS(0)));
    CHECK(!lv_retry_budget_try(r, MS(0)));
    lv_retry_budget_free(r);
}

static void test_budget_recovers(void)
{
    lv_retry_budget_t *r = lv_retry_budget_new(0.1, 0);
    CHECK_EQ(fail_all(r, 1000, 0, 10 * SEC), 100);
    /* Spent: more failures right after get nothing. */
    CHECK(!lv_retry_budget_try(r, MS(10 * SEC)));
    /* The outage ends; ten seconds later the old retries have left the
     * window along with the old requests, and new traffic funds retries
     * again. */
    CHECK_EQ(fail_all(r, 100, 20 * SEC, 1 * SEC), 10);
    lv_retry_budget_free(r);

    /* Requests in the window keep funding retries as older retries age
     * out: 100 requests in second 0, 10 retries in second 5, then at
     * second 9 nothing, at 10 (requests gone) still nothing. */
    r = lv_retry_budget_new(0.1, 0);
    for (int i = 0; i < 100; i++)
        lv_retry_budget_request(r, MS(0));
    for (int i = 0; i < 10; i++)
        CHECK(lv_retry_budget_try(r, MS(5 * SEC)));
    CHECK(!lv_retry_budget_try(r, MS(9 * SEC)));
    CHECK(!lv_retry_budget_try(r, MS(10 * SEC)));
    for (int i = 0; i < 100; i++)
        lv_retry_budget_request(r, MS(12 * SEC));
    /* The 10 retries of second 5 still count until second 15. */
    CHECK(!lv_retry_budget_try(r, MS(14 * SEC)));
    CHECK(lv_retry_budget_try(r, MS(15 * SEC)));
    lv_retry_budget_free(r);
}

static void test_budget_null_and_parameters(void)
{
    CHECK(lv_retry_budget_try(NULL, MS(0)));
    lv_retry_budget_request(NULL, MS(0));
    lv_retry_budget_stats_t st = {1, 1};
    lv_retry_budget_stats(NULL, &st);
    CHECK_EQ(st.granted + st.denied, 0);
    lv_retry_budget_free(NULL);

    lv_retry_budget_t *r = lv_retry_budget_new(NAN, -1);
    CHECK_EQ(fail_all(r, 1000, 0, SEC), 0);
    lv_retry_budget_free(r);
    r = lv_retry_budget_new(INFINITY, INFINITY);
    CHECK_EQ(fail_all(r, 1000, 0, SEC), 1000);
    lv_retry_budget_free(r);
    r = lv_retry_budget_new(-0.5, NAN);
    CHECK_EQ(fail_all(r, 10, 0, SEC), 0);
    lv_retry_budget_free(r);

    /* Time zero and the far end of the clock. */
    r = lv_retry_budget_new(1, 0);
    lv_retry_budget_request(r, 0);
    CHECK(lv_retry_budget_try(r, 0));
    CHECK(!lv_retry_budget_try(r, 0));
    lv_retry_budget_request(r, UINT64_MAX);
    CHECK(lv_retry_budget_try(r, UINT64_MAX));
    CHECK(!lv_retry_budget_try(r, UINT64_MAX));
    lv_retry_budget_free(r);
}

static void test_budget_clock_out_of_order(void)
{
    lv_retry_budget_t *r = lv_retry_budget_new(0.5, 0);
    /* A loop a little behind counts into the same window. */
    lv_retry_budget_request(r, MS(5 * SEC));
    lv_retry_budget_request(r, MS(4 * SEC + 990));
    CHECK(lv_retry_budget_try(r, MS(5 * SEC)));
    CHECK(!lv_retry_budget_try(r, MS(4 * SEC))); /* taken as 5 s */
    /* A loop ten seconds behind lands in a bucket already reused for a
     * newer second: it is counted there rather than resetting it. */
    lv_retry_budget_request(r, MS(15 * SEC));
    lv_retry_budget_request(r, MS(5 * SEC));
    CHECK(lv_retry_budget_try(r, MS(15 * SEC)));
    CHECK(!lv_retry_budget_try(r, MS(15 * SEC)));
    lv_retry_budget_free(r);
}

static void test_budget_count_saturates(void)
{
    /* Past 2^24 - 1 requests in one second the count sticks instead of
     * spilling into the second it is tagged with. */
    const long n = (1l << 24) + 5;
    lv_retry_budget_t *r = lv_retry_budget_new(1e-6, 0);
    for (long i = 0; i < n; i++)
        lv_retry_budget_request(r, MS(0));
    /* 16777215 * 1e-6 = 16.8: sixteen retries, not one for a wrapped count. */
    int granted = 0;
    for (int i = 0; i < 40; i++)
        granted += lv_retry_budget_try(r, MS(0));
    CHECK_EQ(granted, 16);
    lv_retry_budget_free(r);
}

typedef struct {
    lv_retry_budget_t *r;
    pthread_barrier_t *start;
} counter_t;

static void *count_requests(void *arg)
{
    counter_t *c = arg;
    pthread_barrier_wait(c->start);
    for (int i = 0; i < 25000; i++)
        lv_retry_budget_request(c->r, MS(i % 2000)); /* two buckets, contended */
    return NULL;
}

static void test_budget_threads_lose_no_request(void)
{
    lv_retry_budget_t *r = lv_retry_budget_new(0.01, 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    counter_t c = {r, &start};
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&tids[i], NULL, count_requests, &c);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&start);
    /* 200000 requests at 1%: exactly 2000 retries. */
    int granted = 0;
    for (int i = 0; i < 2100; i++)
        granted += lv_retry_budget_try(r, MS(2000));
    CHECK_EQ(granted, 2000);
    lv_retry_budget_free(r);
}

/* ---- backoff ---- */

static void test_backoff_bounds(void)
{
    const double almost1 = 0.999999;
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, 0), 0);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, 0.5), 50);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, almost1), 99);
    CHECK_EQ(lv_retry_backoff_ms(0, 100, 1000, almost1), 99); /* 0 acts as 1 */
    CHECK_EQ(lv_retry_backoff_ms(2, 100, 1000, almost1), 199);
    CHECK_EQ(lv_retry_backoff_ms(3, 100, 1000, almost1), 399);
    CHECK_EQ(lv_retry_backoff_ms(4, 100, 1000, almost1), 799);
    CHECK_EQ(lv_retry_backoff_ms(5, 100, 1000, almost1), 999); /* capped */
    CHECK_EQ(lv_retry_backoff_ms(5, 100, 1000, 0.5), 500);
    CHECK_EQ(lv_retry_backoff_ms(64, 100, 1000, 0.5), 500);
    CHECK_EQ(lv_retry_backoff_ms(UINT32_MAX, 100, 1000, 0.5), 500);
    /* A cap below base wins. */
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 10, 0.5), 5);
    /* Out-of-range randoms are clamped, never out of bounds. */
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, 1.0), 99);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, 7.5), 99);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, INFINITY), 99);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, -0.5), 0);
    CHECK_EQ(lv_retry_backoff_ms(1, 100, 1000, NAN), 0);
    /* Degenerate parameters. */
    CHECK_EQ(lv_retry_backoff_ms(3, 0, 1000, 0.5), 0);
    CHECK_EQ(lv_retry_backoff_ms(3, -100, 1000, 0.5), 0);
    CHECK_EQ(lv_retry_backoff_ms(3, 100, 0, 0.5), 0);
    CHECK_EQ(lv_retry_backoff_ms(3, 100, -1, 0.5), 0);
    CHECK_EQ(lv_retry_backoff_ms(1, 1, 1000, almost1), 0);
    /* No overflow at the extremes. */
    CHECK_EQ(lv_retry_backoff_ms(70, INT64_MAX / 3, INT64_MAX, 0), 0);
    int64_t v = lv_retry_backoff_ms(70, INT64_MAX / 3, INT64_MAX, 1.0);
    CHECK_INT(v, <, INT64_MAX);
    CHECK_INT(v, >, INT64_MAX / 2);
    v = lv_retry_backoff_ms(UINT32_MAX, 1, INT64_MAX, 0.5);
    CHECK_INT(v, >=, INT64_MAX / 2 - 1024);
    CHECK_INT(v, <=, INT64_MAX / 2 + 1024);
}

static void test_backoff_distribution(void)
{
    /* Full jitter over [0, 400) for retry 3 with base 100: uniform, so the
     * mean is near 200 and each quarter gets about a quarter. */
    uint64_t x = 88172645463325252ull;
    int quarters[4] = {0};
    double sum = 0;
    int64_t lo = INT64_MAX, hi = -1;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double r01 = (double)(x >> 11) * 0x1p-53;
        int64_t v = lv_retry_backoff_ms(3, 100, 5000, r01);
        CHECK_INT(v, >=, 0);
        CHECK_INT(v, <, 400);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += (double)v;
        quarters[v / 100]++;
    }
    CHECK_EQ(lo, 0);
    CHECK_EQ(hi, 399);
    double mean = sum / n;
    CHECK_INT(mean, >=, 197); /* uniform over 0..399: 199.5 */
    CHECK_INT(mean, <=, 202);
    for (int q = 0; q < 4; q++) {
        CHECK_INT(quarters[q], >=, n / 4 - n / 100);
        CHECK_INT(quarters[q], <=, n / 4 + n / 100);
    }
}

int main(void)
{
    LV_RUN(test_opens_after_exactly_failures);
    LV_RUN(test_failures_spread_beyond_window_do_not_open);
    LV_RUN(test_open_refuses_until_open_for);
    LV_RUN(test_probe_success_closes);
    LV_RUN(test_probe_failure_reopens);
    LV_RUN(test_retry_after_counts_down);
    LV_RUN(test_late_outcomes_are_ignored);
    LV_RUN(test_lost_probe_is_replaced);
    LV_RUN(test_clock_going_backwards);
    LV_RUN(test_null_and_clamped_parameters);
    LV_RUN(test_breaker_matches_model);
    LV_RUN(test_threads_get_exactly_one_probe);
    LV_RUN(test_threads_hammer_consistent_counters);
    LV_RUN(test_threads_open_once);
    LV_RUN(test_budget_ratio_under_constant_failure);
    LV_RUN(test_budget_minimum_at_low_traffic);
    LV_RUN(test_budget_recovers);
    LV_RUN(test_budget_null_and_parameters);
    LV_RUN(test_budget_clock_out_of_order);
    LV_RUN(test_budget_count_saturates);
    LV_RUN(test_budget_threads_lose_no_request);
    LV_RUN(test_backoff_bounds);
    LV_RUN(test_backoff_distribution);
    return lv_test_summary();
}
