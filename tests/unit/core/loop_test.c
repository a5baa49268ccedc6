/* loop_test.c: the event loop (core/loop.h) and its timer wheel.
 *
 * The wheel tests include loop.c itself, as h2o's unit tests do, so they can
 * reach its statics and drive time by hand: set loop->now_ms, call
 * advance_timers(), and look at which timers ran and at which tick. Nothing
 * sleeps, so they are exact and fast. A probe records every run of its
 * timer; checks compare the records with the tick each timer is due at,
 * after the advance, so a timer that ran twice or early or late is caught
 * even if its callback could not tell. The random test uses a fixed seed
 * (LV_TEST_SEED=n overrides it) so a failure can be replayed.
 *
 * The last tests run the real loop briefly: posting and stopping from
 * another thread, io watchers on socketpairs, lv_io_stop and lv_io_pause
 * dropping or holding events of the current iteration. alarm() turns a hang
 * into a visible failure instead of a stuck test run.
 *
 * Wheel tests keep their loop in cur_loop and their heap in cur_mem; the
 * RUN wrapper unlinks every armed timer and frees both after each test, so
 * a failed check (which returns early) does not also report leaks. */
#include "../../../src/core/loop.c"

#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

#include "test.h"

/* ---- harness ---- */

static lv_loop_t *cur_loop;
static void *cur_mem;

/* Unlinks every armed timer (the loop does not own them) and frees. */
static void free_wheel_loop(lv_loop_t *loop)
{
    for (unsigned i = 0; i < L0_SIZE; i++)
        while (loop->l0[i])
            lv_timer_stop(loop->l0[i]);
    for (unsigned level = 0; level < NUM_UPPER; level++)
        for (unsigned i = 0; i < LN_SIZE; i++)
            while (loop->upper[level][i])
                lv_timer_stop(loop->upper[level][i]);
    lv_loop_free(loop);
}

#define RUN(fn)                                                          \
    do {                                                                 \
        LV_RUN(fn);                                                      \
        if (cur_loop)                                                    \
            free_wheel_loop(cur_loop);                                   \
        free(cur_mem);                                                   \
        cur_loop = NULL;                                                 \
        cur_mem = NULL;                                                  \
        probe_pool_used = 0;                                             \
    } while (0)

/* Counts problems and prints the first few, so one failing test shows the
 * pattern (which delays, which ticks) instead of only the first mismatch. */
typedef struct {
    unsigned count;
    unsigned late_on_edge; /* of which: ran 1 ms late, due on a multiple of 256 */
} problems_t;

static void problem(problems_t *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems_t *pr, const char *fmt, ...)
{
    if (pr->count++ < 10) {
        va_list ap;
        va_start(ap, fmt);
        fputs("    ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    } else if (pr->count == 11) {
        fputs("    ...\n", stderr);
    }
}

/* A loop whose clock and wheel both stand at base, with no real time in it. */
static lv_loop_t *wheel_loop(uint64_t base)
{
    lv_loop_t *loop = lv_loop_new(0);
    loop->now_ms = loop->tick = base;
    loop->now_ns = base * 1000000u;
    return loop;
}

static void advance_to(lv_loop_t *loop, uint64_t now)
{
    loop->now_ms = now;
    loop->now_ns = now * 1000000u;
    advance_timers(loop);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: good enough spread, trivially reproducible */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t test_seed(void)
{
    const char *s = getenv("LV_TEST_SEED");
    return s ? strtoull(s, NULL, 0) : 20240611u;
}

/* ---- probes ---- */

enum { P_IDLE, P_ARMED, P_DONE, P_STOPPED };

typedef struct probe {
    lv_timer_t timer;
    int state;
    uint64_t armed_at, delay;
    uint64_t due;         /* the tick the current arming must run at */
    unsigned runs;        /* since the last arming */
    uint64_t run_tick;    /* loop->tick during the last run */
    uint64_t run_now;     /* loop->now_ms during the last run */
    uint64_t seq;         /* global order of the last run */
    /* What the callback does besides recording. */
    int rearm_left;       /* re-arm itself this many more times */
    uint64_t rearm_delay;
    struct probe **stop_list; /* stop these (NULL-terminated) */
} probe_t;

static uint64_t run_seq;

/* Probes live in static storage, not on a test's stack: a failed check
 * returns early, and RUN unlinks the still-armed ones afterwards. */
static probe_t probe_pool[256];
static size_t probe_pool_used;

static probe_t *probes(size_t n)
{
    if (probe_pool_used + n > sizeof probe_pool / sizeof probe_pool[0]) {
        fprintf(stderr, "probe pool exhausted\n");
        abort();
    }
    probe_t *p = &probe_pool[probe_pool_used];
    probe_pool_used += n;
    memset(p, 0, n * sizeof *p);
    return p;
}

static void on_probe(lv_loop_t *loop, lv_timer_t *t)
{
    probe_t *p = t->data;
    p->runs++;
    p->run_tick = loop->tick;
    p->run_now = loop->now_ms;
    p->seq = ++run_seq;
    if (p->stop_list)
        for (probe_t **o = p->stop_list; *o; o++)
            lv_timer_stop(&(*o)->timer);
    if (p->rearm_left > 0) {
        p->rearm_left--;
        lv_timer_start(loop, &p->timer, p->rearm_delay);
    }
}

/* Arms p on a loop whose wheel is caught up (tick == now). A zero delay is
 * due on the next tick: that is the documented rule that keeps a timer
 * re-armed at "now" from running again in the same pass. */
static void arm(lv_loop_t *loop, probe_t *p, uint64_t delay)
{
    p->timer.cb = on_probe;
    p->timer.data = p;
    p->state = P_ARMED;
    p->armed_at = loop->now_ms;
    p->delay = delay;
    p->due = loop->now_ms + (delay ? delay : 1);
    p->runs = 0;
    lv_timer_start(loop, &p->timer, delay);
}

/* Checks every probe against the current time: armed ones due by now ran
 * exactly once at their due tick, others did not run. Marks ran ones DONE. */
static void check_probes(lv_loop_t *loop, probe_t *p, size_t n, uint64_t base, problems_t *pr)
{
    uint64_t now = loop->now_ms;
    for (size_t i = 0; i < n; i++) {
        switch (p[i].state) {
        case P_ARMED:
            if (p[i].due <= now) {
                if (p[i].runs != 1 || p[i].run_tick != p[i].due) {
                    pr->late_on_edge += p[i].due % 256 == 0 && (p[i].runs == 0 || p[i].run_tick == p[i].due + 1);
                    problem(pr, "timer armed at +%llu for %llu ms (due +%llu, due %% 256 = %llu): "
                            "%u runs, last at tick +%llu; wheel advanced to +%llu",
                            (unsigned long long)(p[i].armed_at - base), (unsigned long long)p[i].delay,
                            (unsigned long long)(p[i].due - base), (unsigned long long)(p[i].due % 256),
                            p[i].runs, (unsigned long long)(p[i].runs ? p[i].run_tick - base : 0),
                            (unsigned long long)(now - base));
                }
                p[i].state = P_DONE;
            } else if (p[i].runs) {
                problem(pr, "timer armed at +%llu for %llu ms (due +%llu) ran early at tick +%llu",
                        (unsigned long long)(p[i].armed_at - base), (unsigned long long)p[i].delay,
                        (unsigned long long)(p[i].due - base), (unsigned long long)(p[i].run_tick - base));
                p[i].state = P_DONE;
            }
            break;
        case P_DONE:
            if (p[i].runs != 1) {
                problem(pr, "timer due +%llu ran again (%u runs)", (unsigned long long)(p[i].due - base),
                        p[i].runs);
                p[i].runs = 1;
            }
            break;
        case P_STOPPED:
            if (p[i].runs) {
                problem(pr, "stopped timer (was due +%llu) ran at +%llu", (unsigned long long)(p[i].due - base),
                        (unsigned long long)(p[i].run_tick - base));
                p[i].runs = 0;
            }
            break;
        }
    }
}

static size_t count_armed(const probe_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i].state == P_ARMED;
    return k;
}

/* Runs of distinct due ticks happened in due order. */
static void check_order(const probe_t *p, size_t n, problems_t *pr)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (p[i].runs && p[j].runs && p[i].due < p[j].due && p[i].seq > p[j].seq)
                problem(pr, "timer due %llu ran after timer due %llu", (unsigned long long)p[i].due,
                        (unsigned long long)p[j].due);
}

static const uint64_t small_delays[] = {0,     1,     2,     3,     100,   254,   255,    256,   257,  511,
                                        512,   513,   1000,  16383, 16384, 16385, 20000,  65535, 65536, 65537,
                                        99999, 100000};
#define NUM_SMALL (sizeof small_delays / sizeof small_delays[0])

/* ---- wheel: exact expiry ---- */

/* Advancing one millisecond at a time, each timer runs in the advance that
 * reaches its due tick, never before, and with the wheel at that tick. Two
 * bases: one aligned to every level, one not. */
static void test_wheel_expiry_stepwise(void)
{
    static const uint64_t bases[] = {(uint64_t)1 << 32, ((uint64_t)1 << 32) + 1000003};
    problems_t pr = {0};
    for (size_t b = 0; b < 2; b++) {
        uint64_t base = bases[b];
        lv_loop_t *loop = cur_loop = wheel_loop(base);
        probe_t *p = probes(NUM_SMALL);
        for (size_t i = 0; i < NUM_SMALL; i++)
            arm(loop, &p[i], small_delays[i]);
        CHECK_EQ(loop->ntimers, NUM_SMALL);
        for (uint64_t now = base + 1; now <= base + 100001; now++) {
            advance_to(loop, now);
            check_probes(loop, p, NUM_SMALL, base, &pr);
        }
        check_order(p, NUM_SMALL, &pr);
        CHECK_EQ(loop->ntimers, 0);
        free_wheel_loop(loop);
        cur_loop = NULL;
    }
    CHECK_EQ(pr.count, 0);
}

/* One advance across everything, up to beyond the top level's span: all
 * run once, each at its due tick, in due order. The base is not aligned and
 * no delay lands on a multiple of 256 (see the cascade-boundary test). */
static void test_wheel_expiry_one_jump(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 1000003;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    static const uint64_t big[] = {(1u << 20) - 1, 1u << 20, (1u << 20) + 1, (1u << 26) - 1, 1u << 26,
                                   (1u << 26) + 1, (1u << 27) - 1, 1u << 27};
    enum { NBIG = sizeof big / sizeof big[0] };
    probe_t *p = probes(NUM_SMALL + NBIG);
    for (size_t i = 0; i < NUM_SMALL; i++)
        arm(loop, &p[i], small_delays[i]);
    for (size_t i = 0; i < NBIG; i++)
        arm(loop, &p[NUM_SMALL + i], big[i]);
    advance_to(loop, base + ((uint64_t)1 << 27) + 10);
    problems_t pr = {0};
    check_probes(loop, p, NUM_SMALL + NBIG, base, &pr);
    check_order(p, NUM_SMALL + NBIG, &pr);
    CHECK_EQ(pr.count, 0);
    CHECK_EQ(loop->ntimers, 0);
}

/* A timer whose expiry is a multiple of 256 ms and whose delay was at least
 * 256 ms sits in an upper level and is cascaded at exactly its expiry tick.
 * It must run in that same tick. */
static void test_wheel_cascade_boundary_expiry(void)
{
    problems_t pr = {0};
    /* (base, delay): expiries on multiples of 256 (twice), 2^14 and 2^20,
     * and one whose delay was clamped at first. */
    static const uint64_t cases[][2] = {
        {(uint64_t)1 << 32, 256},
        {((uint64_t)1 << 32) + 100, 156 + 256 * 10},
        {((uint64_t)1 << 32) + 5, (1u << 14) - 5},
        {((uint64_t)1 << 32) + 7, (1u << 20) - 7},
        {((uint64_t)1 << 32) + 9, (1u << 27) - 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t base = cases[c][0];
        lv_loop_t *loop = cur_loop = wheel_loop(base);
        probe_t *p = probes(1);
        arm(loop, p, cases[c][1]);
        advance_to(loop, p->due - 1);
        if (p->runs)
            problem(&pr, "delay %llu ran before its due tick", (unsigned long long)p->delay);
        advance_to(loop, p->due);
        unsigned runs_at_due = p->runs;
        advance_to(loop, p->due + 1);
        if (runs_at_due != 1 || p->run_tick != p->due)
            problem(&pr, "delay %llu from base %% 256 = %llu: advanced exactly to its due tick +%llu: "
                    "%u runs; after one more ms: %u runs, at tick +%llu",
                    (unsigned long long)p->delay, (unsigned long long)(base % 256), (unsigned long long)p->delay,
                    runs_at_due, p->runs, (unsigned long long)(p->run_tick - base));
        free_wheel_loop(loop);
        cur_loop = NULL;
    }
    CHECK_EQ(pr.count, 0);
}

/* ---- wheel: random ---- */

/* Log-uniform over [0, 2^27], with some delays aimed exactly at wheel
 * boundaries (level edges, the clamp) and at one either side. */
static uint64_t random_delay(uint64_t now)
{
    if (rnd() % 8 == 0) {
        static const unsigned shifts[] = {L0_BITS, L0_BITS + LN_BITS, L0_BITS + 2 * LN_BITS,
                                          L0_BITS + 3 * LN_BITS};
        unsigned s = shifts[rnd() % 4];
        uint64_t edge = ((now >> s) + 1 + rnd() % 2) << s;
        uint64_t d = edge - now + rnd() % 3 - 1;
        return d > ((uint64_t)1 << 27) ? (uint64_t)1 << 27 : d;
    }
    unsigned k = (unsigned)(rnd() % 28);
    return rnd() % (((uint64_t)1 << k) + 1);
}

/* 1 ms to about 4.6 hours, log-uniform. */
static uint64_t random_step(void)
{
    unsigned k = (unsigned)(rnd() % 25);
    return 1 + rnd() % ((uint64_t)1 << k);
}

/* The shortest wait until an armed probe is due, by brute force. */
static uint64_t min_wait(const probe_t *p, size_t n, uint64_t now)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (p[i].state == P_ARMED && p[i].due - now < best)
            best = p[i].due - now;
    return best;
}

/* Thousands of timers with random delays; time moves in random steps (and
 * sometimes by exactly what next_timeout() says, as the real loop does);
 * between steps timers are re-armed, moved and stopped at random. Every
 * arming must run exactly once at its due tick; a stopped one never;
 * ntimers must match; next_timeout() must never exceed the true wait. */
static void test_wheel_random(void)
{
    enum { N = 4000, STEPS = 1500 };
    uint64_t seed = test_seed();
    rng_state = seed;
    uint64_t base = ((uint64_t)1 << 32) + rnd() % 1000000;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = cur_mem = lv_calloc(N, sizeof *p);
    problems_t pr = {0}, timeout_pr = {0}, count_pr = {0};
    uint64_t armings = 0, now = base;

    for (size_t i = 0; i < N; i++, armings++)
        arm(loop, &p[i], random_delay(now));

    for (unsigned step = 0; step < STEPS + 100000 && loop->ntimers; step++) {
        /* next_timeout() against the brute-force minimum. */
        int nt = next_timeout(loop);
        uint64_t truth = min_wait(p, N, now);
        if (nt < 1 || (uint64_t)nt > truth)
            problem(&timeout_pr, "step %u: next_timeout() = %d but the earliest timer is due in %llu ms",
                    step, nt, (unsigned long long)truth);

        now += rnd() % 4 == 0 && nt > 0 ? (uint64_t)nt : random_step();
        advance_to(loop, now);
        check_probes(loop, p, N, base, &pr);
        size_t linked = 0;
        for (size_t i = 0; i < N; i++)
            linked += lv_timer_armed(&p[i].timer);
        if (loop->ntimers != linked)
            problem(&count_pr, "step %u: ntimers %zu, timers armed %zu", step, loop->ntimers, linked);

        if (step >= STEPS)
            continue; /* wind down: let everything run */
        for (unsigned k = rnd() % 40; k; k--) {
            probe_t *q = &p[rnd() % N];
            if (q->state == P_ARMED && rnd() % 2) {
                lv_timer_stop(&q->timer);
                q->state = P_STOPPED;
                q->runs = 0;
            } else {
                arm(loop, q, random_delay(now)); /* also moves an armed one */
                armings++;
            }
        }
    }
    uint64_t total_runs = 0;
    for (size_t i = 0; i < N; i++)
        total_runs += p[i].state == P_DONE;
    if (pr.count || timeout_pr.count || count_pr.count)
        fprintf(stderr, "    (seed %llu, %llu armings: %u timing problems, of which %u late on a 256 edge; "
                "%u next_timeout problems; %u count problems)\n",
                (unsigned long long)seed, (unsigned long long)armings, pr.count, pr.late_on_edge,
                timeout_pr.count, count_pr.count);
    CHECK_EQ(pr.count, 0);
    CHECK_EQ(timeout_pr.count, 0);
    CHECK_EQ(count_pr.count, 0);
    CHECK_EQ(loop->ntimers, 0);
    CHECK_EQ(count_armed(p, N), 0);
    CHECK_INT(total_runs, >, N / 2);
    CHECK_INT(armings, >, N);
}

/* ---- wheel: stop, re-arm, callbacks ---- */

static void test_wheel_stop_before_expiry(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 77;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(5);

    /* Never armed (zeroed): stop is harmless. */
    p[4].timer.cb = on_probe;
    p[4].timer.data = &p[4];
    lv_timer_stop(&p[4].timer);
    CHECK(!lv_timer_armed(&p[4].timer));
    CHECK_EQ(loop->ntimers, 0);

    arm(loop, &p[0], 5);          /* level 0 */
    arm(loop, &p[1], 300);        /* upper, cascaded down before it is stopped */
    arm(loop, &p[2], 100000);     /* upper, stopped while still high */
    arm(loop, &p[3], 1u << 27);   /* clamped */
    CHECK_EQ(loop->ntimers, 4);
    for (int i = 0; i < 4; i++)
        CHECK(lv_timer_armed(&p[i].timer));

    lv_timer_stop(&p[0].timer);
    lv_timer_stop(&p[0].timer); /* twice: harmless */
    CHECK(!lv_timer_armed(&p[0].timer));
    CHECK_EQ(loop->ntimers, 3);

    advance_to(loop, base + 299);
    CHECK_EQ(p[1].runs, 0);
    lv_timer_stop(&p[1].timer);
    advance_to(loop, base + 50000);
    lv_timer_stop(&p[2].timer);
    lv_timer_stop(&p[3].timer);
    CHECK_EQ(loop->ntimers, 0);
    advance_to(loop, base + ((uint64_t)1 << 28));
    for (int i = 0; i < 5; i++)
        CHECK_EQ(p[i].runs, 0);

    /* Starting an armed timer moves it: it runs once, at the new time. */
    arm(loop, &p[0], 100);
    arm(loop, &p[0], 50);
    CHECK_EQ(loop->ntimers, 1);
    uint64_t t0 = loop->now_ms;
    advance_to(loop, t0 + 49);
    CHECK_EQ(p[0].runs, 0);
    advance_to(loop, t0 + 500);
    CHECK_EQ(p[0].runs, 1);
    CHECK_EQ(p[0].run_tick, t0 + 50);
    CHECK_EQ(loop->ntimers, 0);
}

/* A callback re-arming its own timer with 0, stepping 1 ms at a time (the
 * wheel is never behind the clock): one run per advance, never two. */
static void test_wheel_rearm_zero_stepwise(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 250; /* crosses a 256 edge on the way */
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(1);
    arm(loop, p, 3);
    p->rearm_left = 10;
    p->rearm_delay = 0;
    advance_to(loop, base + 2);
    CHECK_EQ(p->runs, 0);
    for (unsigned i = 1; i <= 11; i++) {
        advance_to(loop, base + 2 + i);
        CHECK_EQ(p->runs, i);
        CHECK_EQ(p->run_tick, base + 2 + i);
    }
    CHECK(!lv_timer_armed(&p->timer));
    advance_to(loop, base + 100);
    CHECK_EQ(p->runs, 11);
    CHECK_EQ(loop->ntimers, 0);
}

/* Re-arming with a delay from inside a callback, during an advance that
 * jumps well past the due tick: the delay counts from the loop's now (the
 * cached clock), so it runs once in this advance and again delay ms later. */
static void test_wheel_rearm_delay_in_jump(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 1;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(1);
    arm(loop, p, 5);
    p->rearm_left = 1;
    p->rearm_delay = 7;
    advance_to(loop, base + 100);
    CHECK_EQ(p->runs, 1);
    CHECK_EQ(p->run_tick, base + 5);
    CHECK_EQ(p->run_now, base + 100);
    CHECK(lv_timer_armed(&p->timer));
    CHECK_EQ(loop->ntimers, 1);
    advance_to(loop, base + 106);
    CHECK_EQ(p->runs, 1);
    advance_to(loop, base + 107);
    CHECK_EQ(p->runs, 2);
    CHECK_EQ(p->run_tick, base + 107);
    CHECK_EQ(loop->ntimers, 0);
}

/* The same with a zero delay: loop.h promises that a timer re-armed at
 * "now" by its own callback waits for the next iteration. When the wheel
 * is behind the clock (a jump, as after any poll that slept or any slow
 * iteration), the new expiry (now) is still ahead of the tick being run. */
static void test_wheel_rearm_zero_in_jump(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 1;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(1);
    arm(loop, p, 5);
    p->rearm_left = 1;
    p->rearm_delay = 0;
    advance_to(loop, base + 100);
    unsigned runs_in_first_advance = p->runs;
    advance_to(loop, base + 101);
    unsigned runs_after_next = p->runs;
    CHECK_EQ(runs_in_first_advance, 1);
    CHECK_EQ(runs_after_next, 2);
    CHECK_EQ(loop->ntimers, 0);
}

/* A callback stops other timers: ones in the same slot (already taken off
 * the wheel into the run list), ones due later in the same advance, ones
 * still in upper levels. None of them runs; ntimers stays right. */
static void test_wheel_stop_others_in_callback(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 1;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(8);

    /* Three due on the same tick; whichever runs first stops the other two. */
    probe_t *all3[4] = {&p[0], &p[1], &p[2], NULL};
    for (int i = 0; i < 3; i++) {
        arm(loop, &p[i], 20);
        p[i].stop_list = all3;
    }
    /* p[3] due at 10 stops p[4] (due 50, level 0) and p[5] (due 5000, upper). */
    probe_t *later[3] = {&p[4], &p[5], NULL};
    arm(loop, &p[3], 10);
    p[3].stop_list = later;
    arm(loop, &p[4], 50);
    arm(loop, &p[5], 5000);
    /* p[6] and p[7], due on the same tick, each stop both: the other, and
     * itself (already off the wheel while it runs: harmless). */
    probe_t *self_and_next[3] = {&p[6], &p[7], NULL};
    arm(loop, &p[7], 30);
    arm(loop, &p[6], 30);
    p[6].stop_list = self_and_next;
    p[7].stop_list = self_and_next;
    CHECK_EQ(loop->ntimers, 8);

    advance_to(loop, base + 10000);
    CHECK_EQ(p[0].runs + p[1].runs + p[2].runs, 1);
    CHECK_EQ(p[3].runs, 1);
    CHECK_EQ(p[4].runs, 0);
    CHECK_EQ(p[5].runs, 0);
    CHECK_EQ(p[6].runs + p[7].runs, 1);
    CHECK_EQ(loop->ntimers, 0);
    for (int i = 0; i < 8; i++)
        CHECK(!lv_timer_armed(&p[i].timer));
}

/* ---- wheel: next_timeout ---- */

/* Sleeping exactly what next_timeout() says, as the real loop does, never
 * oversleeps a timer, from several alignments and for delays at every
 * level. */
static void test_wheel_next_timeout_never_oversleeps(void)
{
    static const uint64_t delays[] = {1, 2, 100, 255, 256, 257, 300, 5000, 16385, 1u << 20, 12345678};
    static const uint64_t offsets[] = {0, 1, 128, 255, 77777};
    problems_t pr = {0};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        for (size_t d = 0; d < sizeof delays / sizeof delays[0]; d++) {
            uint64_t base = ((uint64_t)1 << 32) + offsets[o];
            lv_loop_t *loop = cur_loop = wheel_loop(base);
            CHECK_EQ(next_timeout(loop), -1);
            probe_t *p = probes(1);
            arm(loop, p, delays[d]);
            unsigned wakeups = 0;
            while (!p->runs && wakeups < 1000000) {
                int nt = next_timeout(loop);
                if (loop->now_ms >= p->due) {
                    problem(&pr, "base+%llu delay %llu: the wheel reached the due tick and it has not run",
                            (unsigned long long)offsets[o], (unsigned long long)delays[d]);
                    break;
                }
                if (nt < 1 || loop->now_ms + (uint64_t)nt > p->due) {
                    problem(&pr, "base+%llu delay %llu: at +%llu next_timeout %d oversleeps due +%llu",
                            (unsigned long long)offsets[o], (unsigned long long)delays[d],
                            (unsigned long long)(loop->now_ms - base), nt, (unsigned long long)delays[d]);
                    break;
                }
                advance_to(loop, loop->now_ms + (uint64_t)nt);
                wakeups++;
            }
            if (p->runs && p->run_tick != p->due)
                problem(&pr, "base+%llu delay %llu: ran at +%llu", (unsigned long long)offsets[o],
                        (unsigned long long)delays[d], (unsigned long long)(p->run_tick - base));
            /* Long timers wake the loop about every 256 ms, not more often. */
            if (wakeups > p->delay / 256 + 8)
                problem(&pr, "delay %llu took %u wake-ups", (unsigned long long)delays[d], wakeups);
            free_wheel_loop(loop);
            cur_loop = NULL;
        }
    }
    CHECK_EQ(pr.count, 0);
}

/* A slot left marked by a stopped timer does not shorten or lengthen the
 * answer wrongly. */
static void test_wheel_next_timeout_stale_bits(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 10;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *a = probes(1), *b = probes(1);
    arm(loop, a, 5);
    lv_timer_stop(&a->timer);
    arm(loop, b, 300);
    int nt = next_timeout(loop);
    CHECK_INT(nt, >=, 1);
    CHECK_INT(nt, <=, 300);
    lv_timer_stop(&b->timer);
    CHECK_EQ(next_timeout(loop), -1);
}

/* next_timeout() looks for the first busy level-0 slot; a timer still in
 * an upper level is cascaded down at the next 256 ms edge and may be due
 * soon after it, before that level-0 slot. Here: A is armed for 300 ms at
 * an aligned tick (upper level, due at +300); 200 ms later B is armed for
 * 250 ms (level 0, due at +450). The next wait must be at most 100 ms. */
static void test_wheel_next_timeout_upper_before_l0(void)
{
    uint64_t base = (uint64_t)1 << 32;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *a = probes(1), *b = probes(1);
    arm(loop, a, 300);
    advance_to(loop, base + 200);
    arm(loop, b, 250);
    int first_wait = next_timeout(loop);
    /* Sleep as told until A has run. */
    uint64_t overslept = 0;
    for (int guard = 0; !a->runs && guard < 100; guard++) {
        int nt = next_timeout(loop);
        if (loop->now_ms + (uint64_t)nt > a->due && !overslept)
            overslept = loop->now_ms + (uint64_t)nt - a->due;
        advance_to(loop, loop->now_ms + (uint64_t)(nt > 0 ? nt : 1));
    }
    CHECK_INT(first_wait, <=, 100);
    CHECK_EQ(overslept, 0);
    CHECK_EQ(a->run_tick, base + 300);
}

/* lv_loop_update_time (documented for long callbacks) moves now_ms ahead of
 * the wheel's tick; a timer armed after that counts from the fresh now, and
 * the next poll must not wait longer than its delay. */
static void test_wheel_next_timeout_after_update_time(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 10;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    loop->now_ms = base + 50; /* what lv_loop_update_time does 50 ms later */
    probe_t *p = probes(1);
    p->timer.cb = on_probe;
    p->timer.data = p;
    lv_timer_start(loop, &p->timer, 10);
    int nt = next_timeout(loop);
    CHECK_INT(nt, <=, 10);
}

/* ---- wheel: clamp and extremes ---- */

/* Delays beyond the top level's span are clamped and re-inserted; they
 * still run exactly once at their own due tick. */
static void test_wheel_clamped_delays(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 31;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    static const uint64_t delays[] = {MAX_DELAY - 1, MAX_DELAY, MAX_DELAY + 1, MAX_DELAY + 12345,
                                      2 * MAX_DELAY - 1, 2 * MAX_DELAY + 1};
    enum { ND = sizeof delays / sizeof delays[0] };
    probe_t *p = probes(ND);
    for (size_t i = 0; i < ND; i++)
        arm(loop, &p[i], delays[i]);
    problems_t pr = {0};
    /* Hop to one tick before each due, then onto it. */
    for (size_t i = 0; i < ND; i++) {
        advance_to(loop, p[i].due - 1);
        check_probes(loop, p, ND, base, &pr);
        advance_to(loop, p[i].due);
        check_probes(loop, p, ND, base, &pr);
    }
    CHECK_EQ(pr.count, 0);
    CHECK_EQ(loop->ntimers, 0);

    /* Very far: still pending after 2^28 ms. */
    probe_t *far = probes(1);
    arm(loop, far, (uint64_t)1 << 40);
    advance_to(loop, loop->now_ms + ((uint64_t)1 << 28));
    CHECK_EQ(far->runs, 0);
    CHECK(lv_timer_armed(&far->timer));
    lv_timer_stop(&far->timer);
    CHECK_EQ(loop->ntimers, 0);
}

/* A delay so large that now + delay overflows (UINT64_MAX reads as
 * "never") must not wrap around into the past and run at once. */
static void test_wheel_overflowing_delay(void)
{
    uint64_t base = ((uint64_t)1 << 32) + 31;
    lv_loop_t *loop = cur_loop = wheel_loop(base);
    probe_t *p = probes(1);
    p->timer.cb = on_probe;
    p->timer.data = p;
    lv_timer_start(loop, &p->timer, UINT64_MAX);
    advance_to(loop, base + 1000);
    unsigned runs = p->runs;
    lv_timer_stop(&p->timer);
    CHECK_EQ(runs, 0);
}

/* ---- the real loop ---- */

typedef struct {
    lv_loop_t *loop;
    pthread_t loop_thread;
    int calls, wrong_thread, next_expected, out_of_order;
    int stop_after;
} post_ctx_t;

/* Posted callbacks carry (ctx, sequence number) pairs from a static table,
 * so a thread can post many without allocating. */
typedef struct {
    post_ctx_t *ctx;
    int seq;
} post_arg_t;

static void on_posted_seq(lv_loop_t *loop, void *arg)
{
    post_arg_t *a = arg;
    post_ctx_t *ctx = a->ctx;
    ctx->calls++;
    if (!pthread_equal(pthread_self(), ctx->loop_thread) || lv_loop_current() != loop)
        ctx->wrong_thread++;
    if (a->seq != ctx->next_expected)
        ctx->out_of_order++;
    ctx->next_expected = a->seq + 1;
    if (ctx->calls == ctx->stop_after)
        lv_loop_stop(loop);
}

enum { NPOSTS = 2000 };
static post_arg_t post_args[NPOSTS];

static void *post_many(void *arg)
{
    post_ctx_t *ctx = arg;
    for (int i = 0; i < NPOSTS; i++) {
        post_args[i] = (post_arg_t){ctx, i};
        lv_loop_post(ctx->loop, on_posted_seq, &post_args[i]);
        if (i % 100 == 0)
            usleep(100); /* let the loop catch up now and then: more wake-ups */
    }
    return NULL;
}

/* Another thread posts; every callback runs on the loop's thread, in the
 * order posted, and the last one's lv_loop_stop ends lv_loop_run. */
static void test_loop_post_from_thread(void)
{
    alarm(10);
    post_ctx_t ctx = {0};
    ctx.loop = lv_loop_new(0);
    CHECK(ctx.loop);
    ctx.loop_thread = pthread_self();
    ctx.stop_after = NPOSTS;
    pthread_t th;
    pthread_create(&th, NULL, post_many, &ctx);
    CHECK(lv_loop_current() == NULL);
    lv_loop_run(ctx.loop);
    CHECK(lv_loop_current() == NULL);
    pthread_join(th, NULL);
    lv_loop_free(ctx.loop);
    alarm(0);
    CHECK_EQ(ctx.calls, NPOSTS);
    CHECK_EQ(ctx.wrong_thread, 0);
    CHECK_EQ(ctx.out_of_order, 0);
}

static void *stop_later(void *arg)
{
    usleep(30000);
    lv_loop_stop(arg);
    return NULL;
}

/* A loop with nothing to do sleeps in epoll_wait(-1); lv_loop_stop from
 * another thread still ends lv_loop_run. */
static void test_loop_stop_from_thread(void)
{
    alarm(10);
    lv_loop_t *loop = lv_loop_new(3);
    CHECK(loop);
    CHECK_EQ(lv_loop_index(loop), 3);
    pthread_t th;
    pthread_create(&th, NULL, stop_later, loop);
    uint64_t t0 = lv_clock_ns();
    lv_loop_run(loop);
    uint64_t waited_ms = (lv_clock_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    lv_loop_free(loop);
    alarm(0);
    CHECK_INT(waited_ms, >=, 25);
}

typedef struct {
    lv_timer_t timer;
    int order[8];
    int n;
    int chain_left;
} defer_ctx_t;

static void note(defer_ctx_t *d, int what)
{
    if (d->n < 8)
        d->order[d->n++] = what;
}

static void on_deferred(lv_loop_t *loop, void *arg)
{
    defer_ctx_t *d = arg;
    note(d, 2);
    lv_loop_stop(loop);
}

static void on_defer_timer(lv_loop_t *loop, lv_timer_t *t)
{
    defer_ctx_t *d = t->data;
    note(d, 1);
    lv_loop_post(loop, on_deferred, d);
    note(d, 3);
}

static void on_chain(lv_loop_t *loop, void *arg)
{
    defer_ctx_t *d = arg;
    if (--d->chain_left > 0)
        lv_loop_post(loop, on_chain, d);
    else
        lv_loop_stop(loop);
}

/* A real timer runs no sooner than asked; posting from the loop's own
 * thread defers to the end of the iteration; a chain of self-posting
 * callbacks does not block in epoll_wait between links. */
static void test_loop_timer_and_deferral(void)
{
    alarm(10);
    lv_loop_t *loop = lv_loop_new(0);
    defer_ctx_t d = {0};
    d.timer.cb = on_defer_timer;
    d.timer.data = &d;
    lv_loop_update_time(loop);
    uint64_t t0 = lv_loop_now_ms(loop);
    lv_timer_start(loop, &d.timer, 30);
    lv_loop_run(loop);
    uint64_t elapsed = lv_loop_now_ms(loop) - t0;
    CHECK_EQ(d.n, 3);
    CHECK_EQ(d.order[0], 1);
    CHECK_EQ(d.order[1], 3);
    CHECK_EQ(d.order[2], 2);
    CHECK_INT(elapsed, >=, 30);
    CHECK_INT(elapsed, <, 2000);
    lv_loop_free(loop);

    /* A fresh loop: lv_loop_stop is final for a loop. */
    loop = lv_loop_new(0);
    d.chain_left = 10000;
    uint64_t c0 = lv_clock_ns();
    lv_loop_post(loop, on_chain, &d);
    lv_loop_run(loop);
    uint64_t chain_ms = (lv_clock_ns() - c0) / 1000000;
    lv_loop_free(loop);
    alarm(0);
    CHECK_EQ(d.chain_left, 0);
    CHECK_INT(chain_ms, <, 2000);
}

static int freed_posts;

static void on_count_free(lv_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    freed_posts++;
}

/* Callbacks still queued when the loop is freed run (nothing leaks). */
static void test_loop_free_runs_posted(void)
{
    lv_loop_t *loop = lv_loop_new(0);
    freed_posts = 0;
    for (int i = 0; i < 5; i++)
        lv_loop_post(loop, on_count_free, NULL);
    lv_loop_free(loop);
    CHECK_EQ(freed_posts, 5);
}

/* ---- io ---- */

typedef struct {
    lv_io_t io;
    int calls;
    unsigned events;  /* union of what was reported */
    char got[64];
    size_t got_len;
    bool stop_loop_on_read;
    bool read_data;
    lv_io_t *stop_other; /* lv_io_stop this one from the callback */
} watch_t;

static void on_watch(lv_loop_t *loop, lv_io_t *io, unsigned events)
{
    watch_t *w = io->data;
    w->calls++;
    w->events |= events;
    if (w->stop_other) {
        lv_io_stop(loop, w->stop_other);
        w->stop_other = NULL;
    }
    if ((events & LV_IO_READ) && w->read_data) {
        ssize_t n;
        while ((n = read(io->fd, w->got + w->got_len, sizeof w->got - w->got_len)) > 0)
            w->got_len += (size_t)n;
    }
    if ((events & LV_IO_READ) && w->stop_loop_on_read)
        lv_loop_stop(loop);
}

static void watch_init(watch_t *w, int fd)
{
    memset(w, 0, sizeof *w);
    w->io = (lv_io_t){.fd = fd, .cb = on_watch, .data = w};
    w->read_data = true;
}

static void noop_post(lv_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
}

/* One iteration that does not block: a posted no-op makes the poll timeout 0. */
static void run_one_iteration(lv_loop_t *loop)
{
    lv_loop_post(loop, noop_post, NULL);
    current_loop = loop;
    run_once(loop);
    current_loop = NULL;
}

/* A watcher on a socketpair reports READ when the peer writes, and
 * READ|HUP when the peer closes. */
static void test_io_read_and_hup(void)
{
    alarm(10);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    lv_loop_t *loop = lv_loop_new(0);
    watch_t w;
    watch_init(&w, sv[0]);
    w.stop_loop_on_read = true;
    CHECK_EQ(lv_io_start(loop, &w.io), 0);
    CHECK_EQ(write(sv[1], "hello", 5), 5);
    lv_loop_run(loop);
    CHECK(w.events & LV_IO_READ);
    CHECK_EQ(w.got_len, 5);
    CHECK(memcmp(w.got, "hello", 5) == 0);
    CHECK(!(w.events & LV_IO_HUP));
    lv_io_stop(loop, &w.io);
    lv_loop_free(loop);

    loop = lv_loop_new(0);
    CHECK_EQ(lv_io_start(loop, &w.io), 0);
    w.events = 0;
    close(sv[1]);
    run_one_iteration(loop);
    CHECK(w.events & LV_IO_HUP);
    CHECK(w.events & LV_IO_READ);
    lv_io_stop(loop, &w.io);
    /* Starting the same fd twice is refused, not silently doubled. */
    CHECK_EQ(lv_io_start(loop, &w.io), 0);
    CHECK_EQ(lv_io_start(loop, &w.io), -EEXIST);
    lv_io_stop(loop, &w.io);
    close(sv[0]);
    lv_loop_free(loop);
    alarm(0);
}

/* Two watchers ready in the same iteration: whichever runs first stops the
 * other, whose already-collected event must then be dropped. Later data
 * for the stopped one reaches nobody. */
static void test_io_stop_drops_pending_event(void)
{
    alarm(10);
    int a[2], b[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    lv_loop_t *loop = lv_loop_new(0);
    watch_t wa, wb;
    watch_init(&wa, a[0]);
    watch_init(&wb, b[0]);
    wa.stop_other = &wb.io;
    wb.stop_other = &wa.io;
    CHECK_EQ(lv_io_start(loop, &wa.io), 0);
    CHECK_EQ(lv_io_start(loop, &wb.io), 0);
    CHECK_EQ(write(a[1], "x", 1), 1);
    CHECK_EQ(write(b[1], "y", 1), 1);
    run_one_iteration(loop);
    int total = wa.calls + wb.calls;
    int first_calls = wa.calls ? wa.calls : wb.calls;
    watch_t *stopped = wa.calls ? &wb : &wa;
    watch_t *alive = wa.calls ? &wa : &wb;
    CHECK_EQ(total, 1);
    CHECK_EQ(first_calls, 1);
    CHECK_EQ(stopped->calls, 0);

    /* More data for the stopped watcher: still nothing. */
    CHECK_EQ(write(stopped == &wa ? a[1] : b[1], "z", 1), 1);
    run_one_iteration(loop);
    CHECK_EQ(stopped->calls, 0);
    lv_io_stop(loop, &alive->io);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    lv_loop_free(loop);
    alarm(0);
}

/* A paused watcher reports nothing even when data arrives; resuming makes
 * the pending readiness reported again (edge-triggered, so re-arming must
 * not lose it). */
static void test_io_pause_resume(void)
{
    alarm(10);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    lv_loop_t *loop = lv_loop_new(0);
    watch_t w;
    watch_init(&w, sv[0]);
    w.read_data = false; /* leave the bytes in the socket */
    CHECK_EQ(lv_io_start(loop, &w.io), 0);
    run_one_iteration(loop); /* the initial WRITE edge */
    CHECK_EQ(lv_io_pause(loop, &w.io), 0);
    w.calls = 0;
    w.events = 0;
    CHECK_EQ(write(sv[1], "abc", 3), 3);
    run_one_iteration(loop);
    run_one_iteration(loop);
    CHECK_EQ(w.calls, 0);
    CHECK_EQ(lv_io_resume(loop, &w.io), 0);
    run_one_iteration(loop);
    CHECK_EQ(w.calls, 1);
    CHECK(w.events & LV_IO_READ);
    lv_io_stop(loop, &w.io);
    close(sv[0]);
    close(sv[1]);
    lv_loop_free(loop);
    alarm(0);
}

int main(void)
{
    RUN(test_wheel_expiry_stepwise);
    RUN(test_wheel_expiry_one_jump);
    RUN(test_wheel_cascade_boundary_expiry);
    RUN(test_wheel_random);
    RUN(test_wheel_stop_before_expiry);
    RUN(test_wheel_rearm_zero_stepwise);
    RUN(test_wheel_rearm_delay_in_jump);
    RUN(test_wheel_rearm_zero_in_jump);
    RUN(test_wheel_stop_others_in_callback);
    RUN(test_wheel_next_timeout_never_oversleeps);
    RUN(test_wheel_next_timeout_stale_bits);
    RUN(test_wheel_next_timeout_upper_before_l0);
    RUN(test_wheel_next_timeout_after_update_time);
    RUN(test_wheel_clamped_delays);
    RUN(test_wheel_overflowing_delay);
    RUN(test_loop_post_from_thread);
    RUN(test_loop_stop_from_thread);
    RUN(test_loop_timer_and_deferral);
    RUN(test_loop_free_runs_posted);
    RUN(test_io_read_and_hup);
    RUN(test_io_stop_drops_pending_event);
    RUN(test_io_pause_resume);
    return lv_test_summary();
}
