/* metrics_test.c: unit tests for src/metrics.
 *
 * These cover exact totals from several threads that update at once while a
 * scraper renders, the exact exposition text of a small registry, bucket
 * edges, label escaping, family grouping, re-registration, registrations that
 * must be refused without crashing, and JSON parsed back with jansson. The
 * last test measures what an update costs and prints it (it asserts
 * nothing about speed: the machine is shared). */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "metrics/metrics.h"
#include "test.h"

static char *render(lv_metrics_t *m)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render(m, &b);
    lv_buf_append(&b, "", 1); /* the NUL, and storage even when nothing was rendered */
    char *s = strdup(lv_buf_data(&b));
    lv_buf_free(&b);
    return s;
}

static char *render_json(lv_metrics_t *m)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render_json(m, &b);
    lv_buf_append(&b, "", 1); /* the NUL, and storage even when nothing was rendered */
    char *s = strdup(lv_buf_data(&b));
    lv_buf_free(&b);
    return s;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- Threads ---- */

#define PER_THREAD 1000000
#define LOOP_THREADS 4

typedef struct {
    int index; /* -1: a helper thread that never calls lv_metrics_thread_init */
    lv_counter_t *counter;
    lv_gauge_t *gauge;
    lv_histogram_t *histogram;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    if (w->index >= 0)
        lv_metrics_thread_init((unsigned)w->index);
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        lv_counter_inc(w->counter);
        lv_gauge_add(w->gauge, (i & 1) ? -1 : 3);
        lv_histogram_observe_ns(w->histogram, (i % 2000) * 1000);
    }
    return NULL;
}

typedef struct {
    lv_metrics_t *m;
    lv_counter_t *counter;
    atomic_bool stop;
    atomic_int problems;
    int scrapes;
} scraper_t;

/* Checks one rendering taken while the workers run: buckets cumulative and
 * the +Inf bucket equal to _count. */
static bool histogram_text_consistent(const char *text)
{
    unsigned long long prev = 0, inf = 0, count = 0, v;
    bool seen_inf = false, seen_count = false;
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        const char *space = strchr(line, ' ');
        if (line[0] == '#' || !space || sscanf(space + 1, "%llu", &v) != 1)
            continue;
        if (strncmp(line, "t_seconds_bucket", 16) == 0) {
            if (v < prev)
                return false;
            prev = v;
            if (strncmp(line, "t_seconds_bucket{le=\"+Inf\"}", 27) == 0) {
                inf = v;
                seen_inf = true;
            }
        } else if (strncmp(line, "t_seconds_count ", 16) == 0) {
            count = v;
            seen_count = true;
        }
    }
    return seen_inf && seen_count && inf == count;
}

static void *scraper_main(void *arg)
{
    scraper_t *s = arg;
    uint64_t last = 0;
    while (!atomic_load(&s->stop)) {
        char *text = render(s->m);
        if (!histogram_text_consistent(text))
            atomic_fetch_add(&s->problems, 1);
        uint64_t now = lv_counter_value(s->counter);
        if (now < last)
            atomic_fetch_add(&s->problems, 1);
        last = now;
        free(text);
        s->scrapes++;
    }
    return NULL;
}

static void test_threads_exact_totals(void)
{
    lv_metrics_t *m = lv_metrics_new(LOOP_THREADS);
    lv_counter_t *c = lv_metrics_counter(m, "t_total", "t", NULL);
    lv_gauge_t *g = lv_metrics_gauge(m, "t_gauge", "t", NULL);
    lv_histogram_t *h = lv_metrics_histogram(m, "t_seconds", "t", NULL, lv_metrics_latency_buckets,
                                             lv_metrics_latency_nbuckets);
    worker_t workers[LOOP_THREADS + 1];
    pthread_t tids[LOOP_THREADS + 1], scraper_tid;
    scraper_t scraper = {.m = m, .counter = c};
    pthread_create(&scraper_tid, NULL, scraper_main, &scraper);
    for (int i = 0; i <= LOOP_THREADS; i++) {
        workers[i] = (worker_t){i < LOOP_THREADS ? i : -1, c, g, h};
        pthread_create(&tids[i], NULL, worker_main, &workers[i]);
    }
    for (int i = 0; i <= LOOP_THREADS; i++)
        pthread_join(tids[i], NULL);
    atomic_store(&scraper.stop, true);
    pthread_join(scraper_tid, NULL);

    const uint64_t threads = LOOP_THREADS + 1;
    CHECK_EQ(lv_counter_value(c), threads * PER_THREAD);
    CHECK_EQ(lv_gauge_value(g), (int64_t)(threads * PER_THREAD)); /* +3 -1 per pair */
    CHECK_EQ(lv_histogram_count(h), threads * PER_THREAD);
    /* Sum of (i % 2000) * 1000 over a million i: 500 rounds of 0..1999. */
    CHECK_EQ(lv_histogram_sum_ns(h), threads * 500ull * (1999ull * 2000 / 2) * 1000);
    CHECK_EQ(atomic_load(&scraper.problems), 0);
    CHECK_INT(scraper.scrapes, >, 0);
    char *text = render(m);
    CHECK(strstr(text, "t_total 5000000\n"));
    /* 0..50 µs, le inclusive: 51 of every 2000 values, 500 rounds, 5 threads. */
    CHECK(strstr(text, "t_seconds_bucket{le=\"5e-05\"} 127500\n"));
    CHECK(strstr(text, "t_seconds_bucket{le=\"+Inf\"} 5000000\n"));
    free(text);
    lv_metrics_free(m);
}

/* A thread whose index is not below nthreads must land in the shared slot,
 * never outside the registry's memory. */
static void *out_of_range_main(void *arg)
{
    lv_counter_t *c = arg;
    lv_metrics_thread_init(7);
    for (int i = 0; i < 1000; i++)
        lv_counter_inc(c);
    return NULL;
}

static void test_thread_index_out_of_range(void)
{
    lv_metrics_t *m = lv_metrics_new(2);
    lv_counter_t *c = lv_metrics_counter(m, "x_total", "x", NULL);
    pthread_t tid;
    pthread_create(&tid, NULL, out_of_range_main, c);
    pthread_join(tid, NULL);
    CHECK_EQ(lv_counter_value(c), 1000);
    lv_metrics_free(m);

    m = lv_metrics_new(0); /* only the shared slot */
    c = lv_metrics_counter(m, "x_total", "x", NULL);
    lv_metrics_thread_init(0);
    lv_counter_add(c, 5);
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);
    lv_counter_add(c, 6);
    CHECK_EQ(lv_counter_value(c), 11);
    lv_metrics_free(m);
}

/* ---- Exposition text ---- */

static double cache_bytes(void *arg)
{
    return *(double *)arg;
}

static void test_render_exact(void)
{
    static const double bounds[] = {0.001, 0.25, 1};
    double bytes = 1536.5;
    lv_metrics_t *m = lv_metrics_new(2);
    lv_metrics_thread_init(0);
    const char *help = "Requests answered, by route and status class.";
    lv_counter_t *ok = lv_metrics_counter(m, "levee_requests_total", help, "route=\"GET /x\",class=\"2xx\"");
    lv_gauge_t *conns = lv_metrics_gauge(m, "levee_connections", "Open connections.\nOne per loop \\ summed.", NULL);
    lv_counter_t *err = lv_metrics_counter(m, "levee_requests_total", help, "route=\"GET /x\",class=\"5xx\"");
    lv_histogram_t *lat = lv_metrics_histogram(m, "levee_request_seconds", "Request latency.", "route=\"GET /x\"",
                                               bounds, 3);
    lv_metrics_gauge_fn(m, "levee_cache_bytes", "Bytes cached.", NULL, cache_bytes, &bytes);
    lv_metrics_counter(m, "levee_empty_total", "Never incremented.", NULL);
    lv_histogram_t *none = lv_metrics_histogram(m, "levee_plain_seconds", "No buckets.", NULL, NULL, 0);

    lv_counter_add(ok, 3);
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);
    lv_counter_add(ok, 2);
    lv_counter_inc(err);
    lv_metrics_thread_init(1);
    lv_gauge_add(conns, 5);
    lv_gauge_add(conns, -7);
    lv_histogram_observe_ns(lat, 500000);     /* 0.0005 s */
    lv_histogram_observe_ns(lat, 1000000);    /* exactly 0.001: le is inclusive */
    lv_histogram_observe_ns(lat, 1000001);    /* just above */
    lv_histogram_observe_ns(lat, 250000000);  /* exactly 0.25 */
    lv_histogram_observe_ns(lat, 2000000000); /* +Inf */
    lv_histogram_observe_ns(none, 1500000);
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);

    static const char expected[] =
        "# HELP levee_requests_total Requests answered, by route and status class.\n"
        "# TYPE levee_requests_total counter\n"
        "levee_requests_total{route=\"GET /x\",class=\"2xx\"} 5\n"
        "levee_requests_total{route=\"GET /x\",class=\"5xx\"} 1\n"
        "# HELP levee_connections Open connections.\\nOne per loop \\\\ summed.\n"
        "# TYPE levee_connections gauge\n"
        "levee_connections -2\n"
        "# HELP levee_request_seconds Request latency.\n"
        "# TYPE levee_request_seconds histogram\n"
        "levee_request_seconds_bucket{route=\"GET /x\",le=\"0.001\"} 2\n"
        "levee_request_seconds_bucket{route=\"GET /x\",le=\"0.25\"} 4\n"
        "levee_request_seconds_bucket{route=\"GET /x\",le=\"1\"} 4\n"
        "levee_request_seconds_bucket{route=\"GET /x\",le=\"+Inf\"} 5\n"
        "levee_request_seconds_sum{route=\"GET /x\"} 2.252500001\n"
        "levee_request_seconds_count{route=\"GET /x\"} 5\n"
        "# HELP levee_cache_bytes Bytes cached.\n"
        "# TYPE levee_cache_bytes gauge\n"
        "levee_cache_bytes 1536.5\n"
        "# HELP levee_empty_total Never incremented.\n"
        "# TYPE levee_empty_total counter\n"
        "levee_empty_total 0\n"
        "# HELP levee_plain_seconds No buckets.\n"
        "# TYPE levee_plain_seconds histogram\n"
        "levee_plain_seconds_bucket{le=\"+Inf\"} 1\n"
        "levee_plain_seconds_sum 0.0015\n"
        "levee_plain_seconds_count 1\n";
    char *text = render(m);
    CHECK_STR(text, expected);
    free(text);

    /* Computed gauges are read at scrape time, special values included. */
    bytes = NAN;
    text = render(m);
    CHECK(strstr(text, "levee_cache_bytes NaN\n"));
    free(text);
    bytes = -INFINITY;
    text = render(m);
    CHECK(strstr(text, "levee_cache_bytes -Inf\n"));
    free(text);
    bytes = 0.1;
    text = render(m);
    CHECK(strstr(text, "levee_cache_bytes 0.1\n"));
    free(text);
    bytes = 1e300;
    text = render(m);
    CHECK(strstr(text, "levee_cache_bytes 1e+300\n"));
    free(text);
    lv_metrics_free(m);

    m = lv_metrics_new(1);
    text = render(m);
    CHECK_STR(text, "");
    free(text);
    lv_metrics_free(m);
}

static void test_default_latency_buckets(void)
{
    CHECK_EQ(lv_metrics_latency_nbuckets, 17);
    CHECK(lv_metrics_latency_buckets[0] == 0.00005);
    CHECK(lv_metrics_latency_buckets[lv_metrics_latency_nbuckets - 1] == 10);
    for (size_t i = 1; i < lv_metrics_latency_nbuckets; i++)
        CHECK(lv_metrics_latency_buckets[i] > lv_metrics_latency_buckets[i - 1]);
}

/* Per-bucket counts of h, summed over threads, read through the private
 * fields so the search can be checked against a plain linear one. */
static void bucket_counts(const lv_histogram_t *h, uint64_t *out)
{
    const lv_metrics_slots_t *s = &h->slots_;
    for (size_t i = 0; i <= h->nbounds_; i++) {
        out[i] = 0;
        for (unsigned t = 0; t <= s->nthreads; t++)
            out[i] += atomic_load(s->first + (size_t)t * LV_METRICS_BLOCK_SLOTS_ + i);
    }
}

static void test_histogram_bucket_search(void)
{
    /* Every bucket count from 0 to 9 bounds, each probed at, around and
     * between its edges, against a linear search. */
    static const double all_bounds[] = {0.000001, 0.00001, 0.0001, 0.001, 0.003, 0.01, 0.1, 0.3, 1};
    for (size_t nb = 0; nb <= 9; nb++) {
        lv_metrics_t *m = lv_metrics_new(1);
        lv_histogram_t *h = lv_metrics_histogram(m, "s_seconds", "s", NULL, all_bounds, nb);
        uint64_t expect[10] = {0}, got[10];
        uint64_t probes[64];
        size_t np = 0;
        probes[np++] = 0;
        probes[np++] = UINT64_MAX;
        for (size_t i = 0; i < 9; i++) {
            uint64_t edge = (uint64_t)llround(all_bounds[i] * 1e9);
            probes[np++] = edge - 1;
            probes[np++] = edge;
            probes[np++] = edge + 1;
        }
        for (size_t p = 0; p < np; p++) {
            size_t bucket = 0;
            while (bucket < nb && probes[p] > (uint64_t)llround(all_bounds[bucket] * 1e9))
                bucket++;
            expect[bucket]++;
            lv_histogram_observe_ns(h, probes[p]);
        }
        bucket_counts(h, got);
        for (size_t i = 0; i <= nb; i++)
            CHECK_EQ(got[i], expect[i]);
        lv_metrics_free(m);
    }
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random bound sets, dense and sparse, against a linear count. */
static void test_histogram_bucket_search_random(void)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 300; round++) {
        size_t nb = xorshift(&x) % (LV_METRICS_MAX_BOUNDS + 1);
        uint64_t ns_bounds[LV_METRICS_MAX_BOUNDS];
        double bounds[LV_METRICS_MAX_BOUNDS];
        uint64_t edge = xorshift(&x) % 3; /* 0 allowed as a first bound */
        for (size_t i = 0; i < nb; i++) {
            ns_bounds[i] = edge;
            bounds[i] = (double)edge / 1e9;
            /* Steps from 1 ns to ~2^40 ns: many bounds per octave or few. */
            edge += 1 + (xorshift(&x) & (((uint64_t)1 << (xorshift(&x) % 41)) - 1));
        }
        lv_metrics_t *m = lv_metrics_new(1);
        lv_histogram_t *h = lv_metrics_histogram(m, "r_seconds", "r", NULL, bounds, nb);
        CHECK_EQ(h->nbounds_, nb);
        uint64_t expect[LV_METRICS_MAX_BOUNDS + 1] = {0}, got[LV_METRICS_MAX_BOUNDS + 1];
        for (int p = 0; p < 200; p++) {
            uint64_t ns;
            switch (p % 4) {
            case 0: ns = nb ? ns_bounds[xorshift(&x) % nb] : 0; break;
            case 1: ns = nb ? ns_bounds[xorshift(&x) % nb] + 1 : 1; break;
            case 2: ns = xorshift(&x) >> (xorshift(&x) % 64); break;
            default: ns = nb ? ns_bounds[xorshift(&x) % nb] - 1 : UINT64_MAX; break;
            }
            size_t bucket = 0;
            while (bucket < nb && ns > ns_bounds[bucket])
                bucket++;
            expect[bucket]++;
            lv_histogram_observe_ns(h, ns);
        }
        bucket_counts(h, got);
        for (size_t i = 0; i <= nb; i++)
            CHECK_EQ(got[i], expect[i]);
        lv_metrics_free(m);
    }
}

static void test_histogram_bad_bounds(void)
{
    const double bounds[] = {0.5, NAN, -1, 0.25, 1, INFINITY, 1, 2};
    lv_metrics_t *m = lv_metrics_new(1);
    lv_histogram_t *h = lv_metrics_histogram(m, "b_seconds", "b", NULL, bounds, 8);
    CHECK_EQ(h->nbounds_, 3); /* 0.5, 1, 2 */
    lv_histogram_observe_ns(h, 700000000);
    char *text = render(m);
    CHECK_STR(text, "# HELP b_seconds b\n# TYPE b_seconds histogram\n"
                    "b_seconds_bucket{le=\"0.5\"} 0\nb_seconds_bucket{le=\"1\"} 1\n"
                    "b_seconds_bucket{le=\"2\"} 1\nb_seconds_bucket{le=\"+Inf\"} 1\n"
                    "b_seconds_sum 0.7\nb_seconds_count 1\n");
    free(text);

    double many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (i + 1) * 0.01;
    h = lv_metrics_histogram(m, "many_seconds", "m", NULL, many, 100);
    CHECK_EQ(h->nbounds_, LV_METRICS_MAX_BOUNDS);
    lv_histogram_observe_ns(h, UINT64_MAX);
    CHECK_EQ(lv_histogram_count(h), 1);
    lv_metrics_free(m);
}

/* ---- Labels, families, registration ---- */

static void test_label_escape(void)
{
    char out[64];
    CHECK_STR(lv_metrics_label_escape("GET /x", out, sizeof out), "GET /x");
    CHECK_STR(lv_metrics_label_escape("a\"b\\c\nd", out, sizeof out), "a\\\"b\\\\c\\nd");
    CHECK_STR(lv_metrics_label_escape("caf\xc3\xa9 \xe2\x82\xac", out, sizeof out), "caf\xc3\xa9 \xe2\x82\xac");
    /* Invalid UTF-8: a lone continuation byte, an overlong '/', a surrogate,
     * and a truncated sequence at the end. */
    CHECK_STR(lv_metrics_label_escape("a\x80" "b", out, sizeof out), "a\xef\xbf\xbd" "b");
    CHECK_STR(lv_metrics_label_escape("\xc0\xaf", out, sizeof out), "\xef\xbf\xbd\xef\xbf\xbd");
    CHECK_STR(lv_metrics_label_escape("\xed\xa0\x80", out, sizeof out),
              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    CHECK_STR(lv_metrics_label_escape("x\xe2\x82", out, sizeof out), "x\xef\xbf\xbd\xef\xbf\xbd");
    CHECK_STR(lv_metrics_label_escape(NULL, out, sizeof out), "");
    CHECK_STR(lv_metrics_label_escape("", out, sizeof out), "");

    /* Truncation stops between characters, never inside one. */
    char small[4];
    CHECK_STR(lv_metrics_label_escape("abcdef", small, sizeof small), "abc");
    CHECK_STR(lv_metrics_label_escape("ab\"c", small, sizeof small), "ab");
    CHECK_STR(lv_metrics_label_escape("a\xe2\x82\xac", small, sizeof small), "a");
    CHECK_STR(lv_metrics_label_escape("\xe2\x82\xac", small, sizeof small), "\xe2\x82\xac");
    char one[1] = {'x'};
    CHECK_STR(lv_metrics_label_escape("abc", one, sizeof one), "");
    CHECK_STR(lv_metrics_label_escape("abc", NULL, 0), "");

    /* What it produces is accepted as a label value. */
    char labels[128];
    snprintf(labels, sizeof labels, "route=\"%s\"", lv_metrics_label_escape("\"}\n\\ \xff", out, sizeof out));
    lv_metrics_t *m = lv_metrics_new(1);
    lv_metrics_counter(m, "e_total", "e", labels);
    char *text = render(m);
    CHECK(strstr(text, "e_total{route=\"\\\"}\\n\\\\ \xef\xbf\xbd\"} 0\n"));
    free(text);
    lv_metrics_free(m);
}

static void test_same_name_one_family(void)
{
    lv_metrics_t *m = lv_metrics_new(1);
    lv_metrics_counter(m, "a_total", "A.", "k=\"1\"");
    lv_metrics_gauge(m, "b", "B.", NULL);
    lv_metrics_counter(m, "a_total", "A.", "k=\"2\"");
    lv_metrics_counter(m, "a_total", NULL, "k=\"3\""); /* NULL help: take the family's */
    char *text = render(m);
    CHECK_EQ(count_substr(text, "# HELP a_total"), 1);
    CHECK_EQ(count_substr(text, "# TYPE a_total"), 1);
    CHECK_STR(text, "# HELP a_total A.\n# TYPE a_total counter\n"
                    "a_total{k=\"1\"} 0\na_total{k=\"2\"} 0\na_total{k=\"3\"} 0\n"
                    "# HELP b B.\n# TYPE b gauge\nb 0\n");
    free(text);
    lv_metrics_free(m);
}

/* HELP text is free-form: backslashes and newlines are escaped, and bytes
 * that are not UTF-8 are replaced so the page always decodes. */
static void test_help_text(void)
{
    lv_metrics_t *m = lv_metrics_new(1);
    lv_metrics_counter(m, "h1_total", "a \\ b\nc \"q\" caf\xc3\xa9 \xff.", NULL);
    lv_metrics_counter(m, "h2_total", NULL, NULL);
    char *text = render(m);
    CHECK_STR(text, "# HELP h1_total a \\\\ b\\nc \"q\" caf\xc3\xa9 \xef\xbf\xbd.\n"
                    "# TYPE h1_total counter\nh1_total 0\n"
                    "# HELP h2_total \n# TYPE h2_total counter\nh2_total 0\n");
    free(text);
    lv_metrics_free(m);
}

static double one(void *arg)
{
    (void)arg;
    return 1;
}

static double two(void *arg)
{
    (void)arg;
    return 2;
}

static void test_reregistration(void)
{
    lv_metrics_t *m = lv_metrics_new(2);
    lv_counter_t *c = lv_metrics_counter(m, "r_total", "r", "a=\"x\"");
    CHECK(c == lv_metrics_counter(m, "r_total", "r", "a=\"x\""));
    CHECK(c != lv_metrics_counter(m, "r_total", "r", "a=\"y\""));
    lv_counter_t *plain = lv_metrics_counter(m, "r_total", "r", NULL);
    CHECK(plain == lv_metrics_counter(m, "r_total", "r", ""));
    CHECK(plain != c);
    lv_gauge_t *g = lv_metrics_gauge(m, "r_gauge", "r", NULL);
    CHECK(g == lv_metrics_gauge(m, "r_gauge", "other help, logged and ignored", NULL));
    lv_histogram_t *h = lv_metrics_histogram(m, "r_seconds", "r", NULL, lv_metrics_latency_buckets, 3);
    CHECK(h == lv_metrics_histogram(m, "r_seconds", "r", NULL, lv_metrics_latency_buckets, 3));
    CHECK(h == lv_metrics_histogram(m, "r_seconds", "r", NULL, lv_metrics_latency_buckets, 5));
    CHECK_EQ(h->nbounds_, 3);
    lv_metrics_gauge_fn(m, "r_fn", "r", NULL, one, NULL);
    lv_metrics_gauge_fn(m, "r_fn", "r", NULL, two, NULL); /* replaces */
    char *text = render(m);
    CHECK(strstr(text, "\nr_fn 2\n"));
    CHECK_EQ(count_substr(text, "r_fn 2"), 1);
    CHECK_EQ(count_substr(text, "r_total{a=\"x\"}"), 1);
    CHECK_EQ(count_substr(text, "# HELP r_gauge r\n"), 1);
    free(text);

    /* Many series: every one found again, none mixed up. */
    lv_counter_t *many[3000];
    char labels[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(labels, sizeof labels, "route=\"r%d\",class=\"%dxx\"", i / 5, i % 5 + 1);
        many[i] = lv_metrics_counter(m, "many_total", "m", labels);
        lv_counter_add(many[i], (uint64_t)i);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(labels, sizeof labels, "route=\"r%d\",class=\"%dxx\"", i / 5, i % 5 + 1);
        CHECK(many[i] == lv_metrics_counter(m, "many_total", "m", labels));
        CHECK_EQ(lv_counter_value(many[i]), i);
    }
    lv_metrics_free(m);
}

/* A registration that cannot be exported is refused with a log line. The
 * caller still gets a working handle, and /metrics stays valid. */
static void test_rejected_registrations(void)
{
    static const char *const bad_names[] = {NULL, "", "9lives", "a-b", "a b", "a{b}", "caf\xc3\xa9"};
    static const char *const bad_labels[] = {
        "a", "a=", "a=x", "a=\"x", "a=\"x\",", ",a=\"x\"", "a=\"x\" ", " a=\"x\"", "a=\"x\"b=\"y\"",
        "a=\"x\",a=\"y\"", "__a=\"x\"", "1a=\"x\"", "a=\"\\t\"", "a=\"\n\"", "a=\"\xff\"", "a=\"x\\\"",
        "a-b=\"x\"", "a=\"\xed\xa0\x80\"",
    };
    lv_metrics_t *m = lv_metrics_new(1);
    lv_metrics_thread_init(0);
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        lv_counter_t *c = lv_metrics_counter(m, bad_names[i], "x", NULL);
        CHECK(c != NULL);
        lv_counter_inc(c);
        CHECK_EQ(lv_counter_value(c), 1);
    }
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        lv_gauge_t *g = lv_metrics_gauge(m, "ok_gauge", "x", bad_labels[i]);
        CHECK(g != NULL);
        lv_gauge_add(g, -1);
        CHECK_EQ(lv_gauge_value(g), -1);
    }
    lv_metrics_counter(m, "t_total", "x", NULL);
    lv_gauge_t *wrong_type = lv_metrics_gauge(m, "t_total", "x", NULL);
    lv_gauge_add(wrong_type, 5);
    lv_histogram_t *h = lv_metrics_histogram(m, "h_seconds", "x", "le=\"1\"", NULL, 0);
    lv_histogram_observe_ns(h, 5);
    lv_metrics_histogram(m, "h_seconds", "x", NULL, lv_metrics_latency_buckets, 2);
    lv_metrics_counter(m, "h_seconds_count", "clashes with the histogram", NULL);
    lv_metrics_gauge(m, "g_sum", "x", NULL);
    lv_metrics_histogram(m, "g", "clashes with g_sum", NULL, NULL, 0);
    lv_metrics_gauge(m, "computed", "x", "a=\"1\"");
    lv_metrics_gauge_fn(m, "computed", "x", "a=\"1\"", one, NULL); /* already a plain gauge */
    lv_metrics_gauge_fn(m, "computed2", "x", NULL, one, NULL);
    lv_gauge_t *g2 = lv_metrics_gauge(m, "computed2", "x", NULL); /* already computed */
    lv_gauge_add(g2, 1);
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);

    char *text = render(m);
    CHECK_STR(text, "# HELP t_total x\n# TYPE t_total counter\nt_total 0\n"
                    "# HELP h_seconds x\n# TYPE h_seconds histogram\n"
                    "h_seconds_bucket{le=\"5e-05\"} 0\nh_seconds_bucket{le=\"0.0001\"} 0\n"
                    "h_seconds_bucket{le=\"+Inf\"} 0\nh_seconds_sum 0\nh_seconds_count 0\n"
                    "# HELP g_sum x\n# TYPE g_sum gauge\ng_sum 0\n"
                    "# HELP computed x\n# TYPE computed gauge\ncomputed{a=\"1\"} 0\n"
                    "# HELP computed2 x\n# TYPE computed2 gauge\ncomputed2 1\n");
    free(text);
    lv_metrics_free(m);
}

/* ---- JSON ---- */

static double not_a_number(void *arg)
{
    (void)arg;
    return NAN;
}

static void test_render_json(void)
{
    lv_metrics_t *m = lv_metrics_new(2);
    char esc[64], labels[128];
    snprintf(labels, sizeof labels, "route=\"%s\"", lv_metrics_label_escape("say \"hi\"\\\n\t", esc, sizeof esc));
    lv_counter_t *c = lv_metrics_counter(m, "j_total", "j", labels);
    lv_counter_add(c, 42);
    lv_gauge_t *g = lv_metrics_gauge(m, "j_gauge", "j", NULL);
    lv_gauge_add(g, -3);
    lv_metrics_gauge_fn(m, "j_bytes", "j", NULL, cache_bytes, &(double){2.5});
    lv_metrics_gauge_fn(m, "j_nan", "j", NULL, not_a_number, NULL);
    lv_histogram_t *h = lv_metrics_histogram(m, "j_seconds", "j", NULL, lv_metrics_latency_buckets, 4);
    lv_histogram_observe_ns(h, 1);

    char *text = render_json(m);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    CHECK(root != NULL);
    CHECK(json_is_object(root));
    CHECK_EQ(json_object_size(root), 4);
    CHECK_EQ(json_integer_value(json_object_get(root, "j_total{route=\"say \\\"hi\\\"\\\\\\n\t\"}")), 42);
    CHECK_EQ(json_integer_value(json_object_get(root, "j_gauge")), -3);
    CHECK(json_real_value(json_object_get(root, "j_bytes")) == 2.5);
    CHECK(json_is_null(json_object_get(root, "j_nan")));
    json_decref(root);
    free(text);
    lv_metrics_free(m);

    m = lv_metrics_new(1);
    text = render_json(m);
    CHECK_STR(text, "{}");
    free(text);
    lv_metrics_free(m);
}

/* ---- Cost ---- */

/* This thread's CPU time: on a shared machine it is far steadier than the
 * wall clock, since time spent descheduled does not count. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void test_cost(void)
{
    enum { N = 20000000 };
    lv_metrics_t *m = lv_metrics_new(4);
    lv_counter_t *c = lv_metrics_counter(m, "bench_total", "b", NULL);
    lv_histogram_t *h = lv_metrics_histogram(m, "bench_seconds", "b", NULL, lv_metrics_latency_buckets,
                                             lv_metrics_latency_nbuckets);
    /* Latencies spread over every bucket, so the search cannot be predicted. */
    static uint64_t samples[4096];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < 4096; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        samples[i] = (x & 0xFFFF) << (x >> 59 & 31) >> 8; /* about log-uniform, 0 .. 550 s */
    }

    /* Most requests of one route take about the same time. */
    static uint64_t typical[4096];
    for (size_t i = 0; i < 4096; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        typical[i] = 200000 + x % 300000; /* 200-500 µs: two buckets */
    }

    lv_metrics_thread_init(1);
    double t0 = now_ns();
    for (uint64_t i = 0; i < N; i++)
        lv_counter_inc(c);
    double t1 = now_ns();
    for (uint64_t i = 0; i < N; i++)
        lv_histogram_observe_ns(h, samples[i & 4095]);
    double t2 = now_ns();
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);
    for (uint64_t i = 0; i < N; i++)
        lv_counter_inc(c);
    double t3 = now_ns();
    for (uint64_t i = 0; i < N; i++)
        lv_histogram_observe_ns(h, samples[i & 4095]);
    double t4 = now_ns();
    lv_metrics_thread_init(1);
    for (uint64_t i = 0; i < N; i++)
        lv_histogram_observe_ns(h, typical[i & 4095]);
    double t5 = now_ns();
    lv_metrics_thread_init(LV_METRICS_SHARED_SLOT);

    printf("cost (ns/call, one thread): lv_counter_inc %.2f, lv_histogram_observe_ns %.2f (latencies over all "
           "buckets) %.2f (200-500 us); on the shared slot (atomic add): %.2f and %.2f\n",
           (t1 - t0) / N, (t2 - t1) / N, (t5 - t4) / N, (t3 - t2) / N, (t4 - t3) / N);
    CHECK_EQ(lv_counter_value(c), 2ull * N);
    CHECK_EQ(lv_histogram_count(h), 3ull * N);
    lv_metrics_free(m);
}

/* A counter computed at scrape time renders as TYPE counter with fn's value,
 * and cannot be confused with an updated counter of the same name. */
static void test_counter_fn(void)
{
    lv_metrics_t *m = lv_metrics_new(2);
    lv_metrics_counter_fn(m, "ext_total", "Kept elsewhere.", "kind=\"a\"", one, NULL);
    lv_metrics_counter_fn(m, "ext_total", "Kept elsewhere.", "kind=\"b\"", two, NULL);
    lv_counter_t *clash = lv_metrics_counter(m, "ext_total", "Kept elsewhere.", "kind=\"a\"");
    lv_counter_inc(clash); /* rejected series: works, never rendered */
    char *text = render(m);
    CHECK(strstr(text, "# TYPE ext_total counter\n"));
    CHECK(strstr(text, "ext_total{kind=\"a\"} 1\n"));
    CHECK(strstr(text, "ext_total{kind=\"b\"} 2\n"));
    CHECK_EQ(count_substr(text, "ext_total{kind=\"a\"}"), 1);
    free(text);
    lv_metrics_free(m);
}

int main(void)
{
    /* Many tests make registration log on purpose. A level above error keeps
     * those expected lines out of the output; the checks say what matters. */
    lv_log_set_level(LV_LOG_OFF);
    LV_RUN(test_threads_exact_totals);
    LV_RUN(test_thread_index_out_of_range);
    LV_RUN(test_render_exact);
    LV_RUN(test_default_latency_buckets);
    LV_RUN(test_histogram_bucket_search);
    LV_RUN(test_histogram_bucket_search_random);
    LV_RUN(test_histogram_bad_bounds);
    LV_RUN(test_label_escape);
    LV_RUN(test_same_name_one_family);
    LV_RUN(test_help_text);
    LV_RUN(test_reregistration);
    LV_RUN(test_rejected_registrations);
    LV_RUN(test_render_json);
    LV_RUN(test_counter_fn);
    LV_RUN(test_cost);
    return lv_test_summary();
}
