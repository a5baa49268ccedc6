/* cache_test.c: the micro-cache store. The state machine (HIT, MISS_FILL,
 * MISS_WAIT, STALE, STALE_REFRESH, PASS) is driven with explicit now_ms
 * values; reference counts are read back from the objects so a leaked or
 * missing reference fails the test even without ASan. Threaded tests check
 * coalescing (8 threads x 125 lookups of one cold key: one fetch) and run a
 * random mix of operations on several threads. The eviction test shows a
 * hot set surviving a scan that a plain LRU of the same size loses. The
 * last test prints the cost of a hit (lookup + unref). */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/mem.h"
#include "gateway/cache.h"
#include "test.h"

#define KEY(s) LV_SLICE_LIT(s)

static unsigned refs(lv_cache_obj_t *o)
{
    return atomic_load(&o->priv_refs);
}

/* A response stored at now with the given windows (ms). */
static lv_cache_obj_t *make_obj(const char *body, int64_t now, int64_t ttl, int64_t swr, int64_t sie)
{
    static const char hdr[] = "Content-Type: text/plain\r\nX-Test: 1\r\n";
    lv_cache_obj_t *o = lv_cache_obj_new(200, hdr, sizeof(hdr) - 1, body, strlen(body));
    lv_cache_obj_set_lifetime(o, now, ttl, swr, sie);
    return o;
}

static lv_cache_obj_t *make_sized(size_t body_len, int64_t now, int64_t ttl)
{
    char *body = lv_malloc(body_len + 1);
    memset(body, 'x', body_len);
    body[body_len] = '\0';
    lv_cache_obj_t *o = make_obj(body, now, ttl, 0, 0);
    free(body);
    return o;
}

typedef struct {
    lv_cache_waiter_t w; /* first: the callback casts back */
    lv_cache_obj_t *got;
    atomic_int called;
} test_waiter_t;

static void on_ready(lv_cache_waiter_t *w, lv_cache_obj_t *obj)
{
    test_waiter_t *t = (test_waiter_t *)w;
    t->got = obj;
    atomic_fetch_add(&t->called, 1);
}

static void waiter_init(test_waiter_t *t)
{
    memset(t, 0, sizeof(*t));
    t->w.on_ready = on_ready;
}

/* Fills key with a fresh object (ttl/swr/sie), returning nothing held. */
static void fill(lv_cache_t *c, lv_slice_t key, int64_t now, int64_t ttl, int64_t swr, int64_t sie,
                 const char *body)
{
    lv_cache_obj_t *o = NULL;
    lv_cache_result_t r = lv_cache_lookup(c, key, now, NULL, &o);
    if (r != LV_CACHE_MISS_FILL && r != LV_CACHE_STALE_REFRESH) {
        lv_cache_obj_unref(o);
        return;
    }
    lv_cache_obj_unref(o);
    lv_cache_obj_unref(lv_cache_fill_done(c, key, now, make_obj(body, now, ttl, swr, sie), true, 0));
}

/* ---- objects ------------------------------------------------------------ */

static void test_obj_layout_and_refs(void)
{
    lv_cache_obj_t *o = lv_cache_obj_new(301, "Location: /x\r\n", 14, "moved", 5);
    CHECK_EQ(o->status, 301);
    CHECK_SLICE(o->headers, "Location: /x\r\n");
    CHECK_SLICE(o->body, "moved");
    CHECK_EQ(o->headers.ptr[o->headers.len], '\0');
    CHECK_EQ(o->body.ptr[o->body.len], '\0');
    CHECK_EQ(refs(o), 1);
    lv_cache_obj_ref(o);
    CHECK_EQ(refs(o), 2);
    lv_cache_obj_unref(o);
    lv_cache_obj_unref(o);
    lv_cache_obj_unref(NULL);

    lv_cache_obj_t *e = lv_cache_obj_new(204, NULL, 0, NULL, 0);
    CHECK_EQ(e->headers.len, 0);
    CHECK_EQ(e->body.len, 0);
    lv_cache_obj_set_lifetime(e, 1000, 10000, 5000, 60000);
    CHECK_EQ(e->stored_at_ms, 1000);
    CHECK_EQ(e->fresh_until_ms, 11000);
    CHECK_EQ(e->stale_until_ms, 16000);
    CHECK_EQ(e->error_until_ms, 71000);
    lv_cache_obj_set_lifetime(e, 1000, 10000, -5, 0);
    CHECK_EQ(e->stale_until_ms, 11000);
    CHECK_INT(e->error_until_ms, <, e->fresh_until_ms); /* no stale-if-error window */
    lv_cache_obj_set_lifetime(e, INT64_MAX - 5, INT64_MAX, INT64_MAX, INT64_MAX);
    CHECK_EQ(e->error_until_ms, INT64_MAX);
    lv_cache_obj_unref(e);
}

/* ---- the state machine --------------------------------------------------- */

static void test_miss_fill_then_hit(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, KEY("GET a/x"), 1000, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK(o == NULL);
    lv_cache_obj_t *v1 = make_obj("v1", 1000, 10000, 0, 0);
    lv_cache_obj_t *served = lv_cache_fill_done(c, KEY("GET a/x"), 1000, v1, true, 0);
    CHECK(served == v1);
    CHECK_EQ(refs(v1), 2); /* cache + filler */
    lv_cache_obj_unref(served);

    CHECK_EQ(lv_cache_lookup(c, KEY("GET a/x"), 5000, NULL, &o), LV_CACHE_HIT);
    CHECK(o == v1);
    CHECK_EQ(refs(v1), 2);
    lv_cache_obj_unref(o);
    CHECK_EQ(lv_cache_lookup(c, KEY("GET a/x"), 10999, NULL, &o), LV_CACHE_HIT);
    lv_cache_obj_unref(o);
    /* keys are exact bytes */
    CHECK_EQ(lv_cache_lookup(c, KEY("GET a/X"), 5000, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK(lv_cache_fill_done(c, KEY("GET a/X"), 5000, NULL, true, 0) == NULL);

    /* at fresh_until with no stale windows: a new fill; the old copy is useless and goes */
    lv_cache_obj_ref(v1); /* watch it */
    CHECK_EQ(lv_cache_lookup(c, KEY("GET a/x"), 11000, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK(o == NULL);
    CHECK_EQ(refs(v1), 1);
    CHECK(lv_cache_fill_done(c, KEY("GET a/x"), 11000, NULL, true, 0) == NULL);
    CHECK_EQ(refs(v1), 1); /* only ours left */
    lv_cache_obj_unref(v1);

    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.objects, 0);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.hits, 2);
    CHECK_EQ(st.misses, 3);
    CHECK_EQ(st.fill_failures, 2);
    lv_cache_free(c);
}

static void test_stale_while_revalidate(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/list");
    fill(c, k, 0, 10000, 5000, 0, "v1");
    lv_cache_obj_t *o = NULL, *o2 = NULL;

    /* first stale lookup refreshes, the others get STALE at once */
    CHECK_EQ(lv_cache_lookup(c, k, 11000, NULL, &o), LV_CACHE_STALE_REFRESH);
    CHECK_SLICE(o->body, "v1");
    lv_cache_obj_unref(o);
    test_waiter_t tw;
    waiter_init(&tw);
    CHECK_EQ(lv_cache_lookup(c, k, 12000, &tw.w, &o2), LV_CACHE_STALE);
    CHECK_SLICE(o2->body, "v1");
    CHECK_EQ(atomic_load(&tw.called), 0);
    lv_cache_obj_unref(o2);
    CHECK_EQ(lv_cache_lookup(c, k, 14999, NULL, &o2), LV_CACHE_STALE);
    lv_cache_obj_unref(o2);

    /* the refresh lands: fresh again */
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 13000, make_obj("v2", 13000, 10000, 5000, 0), true, 0));
    CHECK_EQ(lv_cache_lookup(c, k, 14000, NULL, &o), LV_CACHE_HIT);
    CHECK_SLICE(o->body, "v2");
    lv_cache_obj_unref(o);

    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.refreshes, 1);
    CHECK_EQ(st.stale_hits, 2);
    CHECK_EQ(st.objects, 1);
    lv_cache_free(c);
}

static void test_refresh_running_past_stale_window_waits(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/slow");
    fill(c, k, 0, 10000, 5000, 0, "v1");
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, k, 14000, NULL, &o), LV_CACHE_STALE_REFRESH);
    lv_cache_obj_unref(o);

    test_waiter_t a, b;
    waiter_init(&a);
    waiter_init(&b);
    CHECK_EQ(lv_cache_lookup(c, k, 15000, &a.w, &o), LV_CACHE_MISS_WAIT);
    CHECK(o == NULL);
    CHECK_EQ(lv_cache_lookup(c, k, 16000, &b.w, &o), LV_CACHE_MISS_WAIT);
    /* without a waiter the caller is told to go around the cache */
    CHECK_EQ(lv_cache_lookup(c, k, 16000, NULL, &o), LV_CACHE_PASS);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.waiting, 2);

    lv_cache_obj_t *v2 = make_obj("v2", 17000, 10000, 5000, 0);
    lv_cache_obj_t *served = lv_cache_fill_done(c, k, 17000, v2, true, 0);
    CHECK(served == v2);
    CHECK_EQ(atomic_load(&a.called), 1);
    CHECK_EQ(atomic_load(&b.called), 1);
    CHECK(a.got == v2 && b.got == v2);
    CHECK_EQ(a.w.woken, LV_CACHE_WOKEN_STORED);
    CHECK_EQ(refs(v2), 4); /* cache, filler, two waiters */
    lv_cache_obj_unref(a.got);
    lv_cache_obj_unref(b.got);
    lv_cache_obj_unref(served);
    CHECK_EQ(refs(v2), 1);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.waiting, 0);
    CHECK_EQ(st.waits, 2);
    lv_cache_free(c);
}

static void test_stale_if_error_serves_filler_and_waiters(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/sie");
    fill(c, k, 0, 10000, 2000, 60000, "old");
    lv_cache_obj_t *o = NULL;

    /* past the stale window but inside the error window: a coalesced miss */
    CHECK_EQ(lv_cache_lookup(c, k, 20000, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK(o == NULL);
    test_waiter_t w[3];
    for (int i = 0; i < 3; i++) {
        waiter_init(&w[i]);
        CHECK_EQ(lv_cache_lookup(c, k, 20001 + i, &w[i].w, &o), LV_CACHE_MISS_WAIT);
    }
    lv_cache_obj_t *served = lv_cache_fill_done(c, k, 21000, NULL, true, 0);
    CHECK(served != NULL);
    CHECK_SLICE(served->body, "old");
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(atomic_load(&w[i].called), 1);
        CHECK(w[i].got == served);
        CHECK_EQ(w[i].w.woken, LV_CACHE_WOKEN_STALE);
    }
    CHECK_EQ(refs(served), 5);
    for (int i = 0; i < 3; i++)
        lv_cache_obj_unref(w[i].got);
    lv_cache_obj_unref(served);

    /* the old copy is kept for the next failure */
    lv_cache_obj_t *e = lv_cache_get_for_error(c, k, 70000);
    CHECK(e != NULL);
    lv_cache_obj_unref(e);
    CHECK(lv_cache_get_for_error(c, k, 70001) == NULL);
    CHECK(lv_cache_get_for_error(c, KEY("GET host/other"), 1000) == NULL);

    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.stale_if_error, 5);
    CHECK_EQ(st.fill_failures, 1);
    CHECK_EQ(st.objects, 1);
    lv_cache_free(c);
}

static void test_fill_failure_without_stale_copy(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/none");
    fill(c, k, 0, 10000, 0, 5000, "old");
    lv_cache_obj_t *o = NULL;
    /* past error_until: the old copy cannot help; it is dropped right away */
    CHECK_EQ(lv_cache_lookup(c, k, 16000, NULL, &o), LV_CACHE_MISS_FILL);
    test_waiter_t w;
    waiter_init(&w);
    CHECK_EQ(lv_cache_lookup(c, k, 16001, &w.w, &o), LV_CACHE_MISS_WAIT);
    CHECK(lv_cache_fill_done(c, k, 16500, NULL, true, 0) == NULL);
    CHECK_EQ(atomic_load(&w.called), 1);
    CHECK(w.got == NULL);
    CHECK_EQ(w.w.woken, LV_CACHE_WOKEN_FAILED);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.entries, 0);
    /* a cold key that fails: waiters get NULL, the next request tries again */
    waiter_init(&w);
    CHECK_EQ(lv_cache_lookup(c, k, 17000, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK_EQ(lv_cache_lookup(c, k, 17000, &w.w, &o), LV_CACHE_MISS_WAIT);
    CHECK(lv_cache_fill_done(c, k, 17000, NULL, true, 0) == NULL);
    CHECK(w.got == NULL && atomic_load(&w.called) == 1);
    CHECK_EQ(lv_cache_lookup(c, k, 17001, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 17001, NULL, true, 0));
    lv_cache_free(c);
}

static void test_hit_for_miss(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/private");
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL);
    test_waiter_t w;
    waiter_init(&w);
    CHECK_EQ(lv_cache_lookup(c, k, 1, &w.w, &o), LV_CACHE_MISS_WAIT);
    lv_cache_obj_t *ans = make_obj("for one user", 10, 0, 0, 0);
    lv_cache_obj_t *served = lv_cache_fill_done(c, k, 10, ans, false, 5000);
    /* the waiter still gets the answer: it asked before anyone knew */
    CHECK(served == ans && w.got == ans);
    CHECK_EQ(w.w.woken, LV_CACHE_WOKEN_NOT_STORED);
    CHECK_EQ(refs(ans), 2);
    lv_cache_obj_unref(w.got);
    lv_cache_obj_unref(served);

    /* now: no coalescing, no waiting, for pass_ms */
    test_waiter_t w2;
    waiter_init(&w2);
    CHECK_EQ(lv_cache_lookup(c, k, 100, &w2.w, &o), LV_CACHE_PASS);
    CHECK_EQ(lv_cache_lookup(c, k, 100, &w2.w, &o), LV_CACHE_PASS);
    CHECK_EQ(lv_cache_lookup(c, k, 5009, &w2.w, &o), LV_CACHE_PASS);
    CHECK(lv_cache_wait_cancel(c, &w2.w) == false); /* never queued */
    CHECK_EQ(lv_cache_lookup(c, k, 5010, NULL, &o), LV_CACHE_MISS_FILL);
    /* the answer became cacheable: it replaces the marker */
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 5010, make_obj("now public", 5010, 1000, 0, 60000), true, 0));
    CHECK_EQ(lv_cache_lookup(c, k, 5011, NULL, &o), LV_CACHE_HIT);
    CHECK_SLICE(o->body, "now public");
    lv_cache_obj_unref(o);

    /* a PASS fetch whose answer is cacheable after all may end the marker early */
    lv_slice_t k2 = KEY("GET host/sometimes");
    CHECK_EQ(lv_cache_lookup(c, k2, 5500, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, k2, 5500, make_obj("p", 5500, 0, 0, 0), false, 60000));
    CHECK_EQ(lv_cache_lookup(c, k2, 5600, NULL, &o), LV_CACHE_PASS);
    lv_cache_obj_unref(lv_cache_fill_done(c, k2, 5600, make_obj("c", 5600, 1000, 0, 0), true, 0));
    CHECK_EQ(lv_cache_lookup(c, k2, 5700, NULL, &o), LV_CACHE_HIT);
    CHECK_SLICE(o->body, "c");
    lv_cache_obj_unref(o);

    /* an uncacheable refresh drops the stored copy, stale-if-error window or not */
    CHECK_EQ(lv_cache_lookup(c, k, 7000, NULL, &o), LV_CACHE_MISS_FILL);
    o = lv_cache_get_for_error(c, k, 7000);
    CHECK(o != NULL);
    lv_cache_obj_unref(o);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 7000, make_obj("x", 7000, 0, 0, 0), false, 0));
    CHECK(lv_cache_get_for_error(c, k, 7000) == NULL);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.entries, 1); /* k2 only: pass_ms 0 left no marker for k */
    CHECK_EQ(st.uncacheable, 3);
    CHECK_EQ(st.passes, 4);
    CHECK_EQ(st.stale_if_error, 1);
    lv_cache_free(c);
}

static void test_replace_old_copy(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/replace");
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_t *v1 = make_obj("v1", 0, 1000, 5000, 0);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 0, v1, true, 0));
    lv_cache_obj_ref(v1); /* watch it */
    CHECK_EQ(refs(v1), 2);
    CHECK_EQ(lv_cache_lookup(c, k, 2000, NULL, &o), LV_CACHE_STALE_REFRESH);
    lv_cache_obj_unref(o);
    lv_cache_obj_t *v2 = make_obj("v2", 2000, 1000, 0, 0);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 2000, v2, true, 0));
    CHECK_EQ(refs(v1), 1); /* the cache let go of v1 */
    lv_cache_obj_unref(v1);
    CHECK_EQ(lv_cache_lookup(c, k, 2500, NULL, &o), LV_CACHE_HIT);
    CHECK(o == v2);
    lv_cache_obj_unref(o);
    /* a fill_done for a key the cache does not know still stores */
    lv_cache_obj_unref(lv_cache_fill_done(c, KEY("GET host/unasked"), 0, make_obj("u", 0, 1000, 0, 0), true, 0));
    CHECK_EQ(lv_cache_lookup(c, KEY("GET host/unasked"), 10, NULL, &o), LV_CACHE_HIT);
    lv_cache_obj_unref(o);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.objects, 2);
    CHECK_EQ(st.stores, 3);
    lv_cache_free(c);
}

static void test_big_object_served_not_stored(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_INT(st.max_object_bytes, >, 100000);
    CHECK_INT(st.max_object_bytes, <=, (1 << 20) / 8);
    lv_slice_t k = KEY("GET host/big");
    lv_cache_obj_t *o = NULL;
    fill(c, k, 0, 1000, 0, 60000, "small old copy");
    CHECK_EQ(lv_cache_lookup(c, k, 2000, NULL, &o), LV_CACHE_MISS_FILL);
    test_waiter_t w;
    waiter_init(&w);
    CHECK_EQ(lv_cache_lookup(c, k, 2000, &w.w, &o), LV_CACHE_MISS_WAIT);
    lv_cache_obj_t *big = make_sized(st.max_object_bytes, 2000, 10000);
    lv_cache_obj_t *served = lv_cache_fill_done(c, k, 2000, big, true, 0);
    CHECK(served == big && w.got == big);
    CHECK_EQ(w.w.woken, LV_CACHE_WOKEN_NOT_STORED);
    CHECK_EQ(refs(big), 2);
    lv_cache_obj_unref(w.got);
    lv_cache_obj_unref(served);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.too_big, 1);
    CHECK_EQ(st.objects, 0); /* the outdated small copy went too */
    CHECK_EQ(st.entries, 0);
    /* an object right at the limit is stored */
    lv_cache_obj_t *fits = make_sized(10, 0, 10000);
    size_t overhead = fits->priv_size - 10;
    lv_cache_obj_unref(fits);
    CHECK_EQ(lv_cache_lookup(c, k, 3000, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 3000, make_sized(st.max_object_bytes - overhead, 3000, 10000), true, 0));
    lv_cache_stats(c, &st);
    CHECK_EQ(st.objects, 1);
    lv_cache_free(c);
}

static void test_byte_bound_never_exceeded(void)
{
    const size_t max = 512 * 1024;
    lv_cache_t *c = lv_cache_new(max, 4);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_INT(st.nshards, >=, 1);
    unsigned seed = 7;
    char key[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(key, sizeof(key), "GET host/item/%d", rand_r(&seed) % 3000);
        lv_slice_t k = lv_slice(key, (size_t)n);
        lv_cache_obj_t *o = NULL;
        int64_t now = i;
        lv_cache_result_t r = lv_cache_lookup(c, k, now, NULL, &o);
        lv_cache_obj_unref(o);
        if (r == LV_CACHE_MISS_FILL || r == LV_CACHE_STALE_REFRESH) {
            size_t len = (size_t)(rand_r(&seed) % 20000);
            bool store = rand_r(&seed) % 8 != 0;
            lv_cache_obj_unref(lv_cache_fill_done(c, k, now, make_sized(len, now, 5000), store, 100));
        }
        lv_cache_stats(c, &st);
        if (st.bytes > max)
            LV_FAIL_("step %d: %llu bytes > %zu", i, (unsigned long long)st.bytes, max);
    }
    CHECK_INT(st.evictions, >, 0);
    CHECK_INT(st.bytes, >, max / 2); /* it does use the space */
    lv_cache_free(c);
}

static void test_tiny_cache_passes(void)
{
    /* too small to hold even a key: every lookup is told to go around */
    lv_cache_t *c = lv_cache_new(100, 0);
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, KEY("GET h/"), 0, NULL, &o), LV_CACHE_PASS);
    lv_cache_free(c);
    c = lv_cache_new(0, 0);
    CHECK_EQ(lv_cache_lookup(c, KEY("GET h/"), 0, NULL, &o), LV_CACHE_PASS);
    lv_cache_free(c);
    /* a key longer than an object may be is not tracked either */
    c = lv_cache_new(1 << 20, 1);
    size_t len = 1 << 18;
    char *k = lv_malloc(len);
    memset(k, 'k', len);
    CHECK_EQ(lv_cache_lookup(c, lv_slice(k, len), 0, NULL, &o), LV_CACHE_PASS);
    CHECK_EQ(lv_cache_lookup(c, lv_slice(k, 100), 0, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, lv_slice(k, 100), 0, NULL, true, 0));
    /* the empty key is a key like any other */
    CHECK_EQ(lv_cache_lookup(c, lv_slice(NULL, 0), 0, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, lv_slice(NULL, 0), 0, make_obj("e", 0, 100, 0, 0), true, 0));
    CHECK_EQ(lv_cache_lookup(c, lv_slice("", 0), 1, NULL, &o), LV_CACHE_HIT);
    lv_cache_obj_unref(o);
    free(k);
    lv_cache_free(c);
}

/* ---- eviction policy ----------------------------------------------------- */

/* A plain LRU over the same trace, counting objects, for comparison. */
typedef struct {
    int *keys;
    long *used;
    int n, cap;
    long clock;
} lru_t;

static void lru_access(lru_t *l, int key)
{
    l->clock++;
    for (int i = 0; i < l->n; i++)
        if (l->keys[i] == key) {
            l->used[i] = l->clock;
            return;
        }
    int slot = l->n;
    if (l->n == l->cap) {
        slot = 0;
        for (int i = 1; i < l->n; i++)
            if (l->used[i] < l->used[slot])
                slot = i;
    } else {
        l->n++;
    }
    l->keys[slot] = key;
    l->used[slot] = l->clock;
}

static bool lru_has(const lru_t *l, int key)
{
    for (int i = 0; i < l->n; i++)
        if (l->keys[i] == key)
            return true;
    return false;
}

static lv_slice_t num_key(char *buf, size_t size, int i)
{
    int n = snprintf(buf, size, "GET shop/item?id=%d", i);
    return lv_slice(buf, (size_t)n);
}

static void access_key(lv_cache_t *c, int i, int64_t now)
{
    char buf[64];
    lv_slice_t k = num_key(buf, sizeof(buf), i);
    lv_cache_obj_t *o = NULL;
    lv_cache_result_t r = lv_cache_lookup(c, k, now, NULL, &o);
    lv_cache_obj_unref(o);
    if (r == LV_CACHE_MISS_FILL)
        lv_cache_obj_unref(lv_cache_fill_done(c, k, now, make_sized(1000, now, 1000000000), true, 0));
}

static void test_hot_set_survives_scan(void)
{
    enum { HOT = 60, SCAN = 3000, HOT_HITS = 5 };
    lv_cache_t *c = lv_cache_new(512 * 1024, 1);
    int64_t now = 0;
    for (int round = 0; round < HOT_HITS; round++)
        for (int i = 0; i < HOT; i++)
            access_key(c, i, now++);
    /* a scan of one-hit wonders, many times the cache's capacity */
    for (int i = 0; i < SCAN; i++)
        access_key(c, 1000 + i, now++);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_INT(st.evictions, >, SCAN / 2);
    int capacity = (int)st.objects;

    int survived = 0;
    for (int i = 0; i < HOT; i++) {
        char buf[64];
        lv_cache_obj_t *o = NULL;
        lv_cache_result_t r = lv_cache_lookup(c, num_key(buf, sizeof(buf), i), now, NULL, &o);
        if (r == LV_CACHE_HIT)
            survived++;
        lv_cache_obj_unref(o);
        if (r == LV_CACHE_MISS_FILL)
            lv_cache_obj_unref(lv_cache_fill_done(c, num_key(buf, sizeof(buf), i), now, NULL, true, 0));
    }
    CHECK_EQ(survived, HOT);

    /* the same trace through an LRU holding as many objects loses them all */
    lru_t l = {lv_calloc((size_t)capacity, sizeof(int)), lv_calloc((size_t)capacity, sizeof(long)), 0,
               capacity, 0};
    for (int round = 0; round < HOT_HITS; round++)
        for (int i = 0; i < HOT; i++)
            lru_access(&l, i);
    for (int i = 0; i < SCAN; i++)
        lru_access(&l, 1000 + i);
    int lru_survived = 0;
    for (int i = 0; i < HOT; i++)
        lru_survived += lru_has(&l, i);
    free(l.keys);
    free(l.used);
    printf("eviction: %d objects fit; after a %d-key scan S3-FIFO kept %d/%d hot keys, LRU %d/%d\n",
           capacity, SCAN, survived, HOT, lru_survived, HOT);
    CHECK_EQ(lru_survived, 0);
    lv_cache_free(c);
}

static void test_ghost_readmits_to_main(void)
{
    lv_cache_t *c = lv_cache_new(256 * 1024, 1);
    int64_t now = 0;
    access_key(c, 1, now++); /* key 1 seen once, then scanned out of the small queue */
    for (int i = 0; i < 250; i++)
        access_key(c, 100 + i, now++);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    uint64_t ghosts = st.ghost_hits;
    access_key(c, 1, now++); /* back soon after: admitted to main */
    lv_cache_stats(c, &st);
    CHECK_EQ(st.ghost_hits, ghosts + 1);
    /* and then survives another scan even without a hit */
    for (int i = 0; i < 400; i++)
        access_key(c, 1000 + i, now++);
    char buf[64];
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, num_key(buf, sizeof(buf), 1), now, NULL, &o), LV_CACHE_HIT);
    lv_cache_obj_unref(o);
    lv_cache_free(c);
}

static void test_expired_entries_evicted_first(void)
{
    lv_cache_t *c = lv_cache_new(256 * 1024, 1);
    char buf[64];
    /* a hot key that has expired for good is not worth keeping */
    lv_slice_t k = num_key(buf, sizeof(buf), 5);
    lv_cache_obj_t *o = NULL;
    CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 0, make_sized(1000, 0, 10), true, 0));
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(lv_cache_lookup(c, k, 1, NULL, &o), LV_CACHE_HIT);
        lv_cache_obj_unref(o);
    }
    for (int i = 0; i < 400; i++)
        access_key(c, 100 + i, 100 + i);
    CHECK(lv_cache_get_for_error(c, k, 5) == NULL);
    CHECK_EQ(lv_cache_lookup(c, k, 1000, NULL, &o), LV_CACHE_MISS_FILL);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 1000, NULL, true, 0));
    lv_cache_free(c);
}

/* ---- lock age, cancel, free ---------------------------------------------- */

static void test_lock_age_lets_another_fill(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_cache_set_fill_timeout(c, 1000); /* lock age 2 s */
    lv_slice_t k = KEY("GET host/lost");
    lv_cache_obj_t *o = NULL;
    test_waiter_t a, b;
    waiter_init(&a);
    waiter_init(&b);
    CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL); /* this fill gets lost */
    CHECK_EQ(lv_cache_lookup(c, k, 1999, &a.w, &o), LV_CACHE_MISS_WAIT);
    CHECK_EQ(lv_cache_lookup(c, k, 2000, &b.w, &o), LV_CACHE_MISS_FILL); /* takes over */
    CHECK_EQ(atomic_load(&a.called), 0);
    lv_cache_obj_t *v = make_obj("v", 2500, 10000, 0, 0);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 2500, v, true, 0));
    CHECK_EQ(atomic_load(&a.called), 1); /* woken by the new filler */
    CHECK(a.got == v);
    lv_cache_obj_unref(a.got);
    CHECK_EQ(atomic_load(&b.called), 0);
    /* the lost filler shows up late: harmless */
    lv_cache_obj_t *late = make_obj("late", 3000, 10000, 0, 0);
    lv_cache_obj_t *served = lv_cache_fill_done(c, k, 3000, late, true, 0);
    CHECK(served == late);
    lv_cache_obj_unref(served);

    /* a stale refresh that is lost is taken over the same way */
    fill(c, KEY("GET host/swr"), 0, 1000, 60000, 0, "s");
    CHECK_EQ(lv_cache_lookup(c, KEY("GET host/swr"), 1000, NULL, &o), LV_CACHE_STALE_REFRESH);
    lv_cache_obj_unref(o);
    CHECK_EQ(lv_cache_lookup(c, KEY("GET host/swr"), 2999, NULL, &o), LV_CACHE_STALE);
    lv_cache_obj_unref(o);
    CHECK_EQ(lv_cache_lookup(c, KEY("GET host/swr"), 3000, NULL, &o), LV_CACHE_STALE_REFRESH);
    lv_cache_obj_unref(o);
    lv_cache_obj_unref(lv_cache_fill_done(c, KEY("GET host/swr"), 3000, NULL, true, 0));

    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.lock_takeovers, 2);
    lv_cache_free(c);
}

static void test_wait_cancel(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_slice_t k = KEY("GET host/cancel");
    lv_cache_obj_t *o = NULL;
    test_waiter_t w[4];
    CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL);
    for (int i = 0; i < 4; i++) {
        waiter_init(&w[i]);
        CHECK_EQ(lv_cache_lookup(c, k, 1, &w[i].w, &o), LV_CACHE_MISS_WAIT);
    }
    /* cancel the head, a middle one and the tail */
    CHECK(lv_cache_wait_cancel(c, &w[0].w));
    CHECK(lv_cache_wait_cancel(c, &w[2].w));
    CHECK(lv_cache_wait_cancel(c, &w[3].w));
    CHECK(!lv_cache_wait_cancel(c, &w[3].w));
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.waiting, 1);
    lv_cache_obj_t *v = make_obj("v", 2, 1000, 0, 0);
    lv_cache_obj_unref(lv_cache_fill_done(c, k, 2, v, true, 0));
    CHECK_EQ(atomic_load(&w[0].called) + atomic_load(&w[2].called) + atomic_load(&w[3].called), 0);
    CHECK_EQ(atomic_load(&w[1].called), 1);
    CHECK(!lv_cache_wait_cancel(c, &w[1].w)); /* already woken */
    CHECK_EQ(refs(v), 2);
    lv_cache_obj_unref(w[1].got);
    lv_cache_free(c);
}

static void test_free_wakes_leftover_waiters(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 1);
    lv_cache_obj_t *o = NULL;
    test_waiter_t w;
    waiter_init(&w);
    CHECK_EQ(lv_cache_lookup(c, KEY("k"), 0, NULL, &o), LV_CACHE_MISS_FILL);
    CHECK_EQ(lv_cache_lookup(c, KEY("k"), 0, &w.w, &o), LV_CACHE_MISS_WAIT);
    fill(c, KEY("other"), 0, 1000, 0, 0, "x");
    w.w.woken = LV_CACHE_WOKEN_STORED;
    lv_cache_free(c);
    CHECK_EQ(atomic_load(&w.called), 1);
    CHECK(w.got == NULL);
    CHECK_EQ(w.w.woken, LV_CACHE_WOKEN_FAILED);
    lv_cache_free(NULL);
}

static void test_stats_counts(void)
{
    lv_cache_t *c = lv_cache_new(4 << 20, 8);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.nshards, 8);
    CHECK_EQ(st.max_bytes, 4 << 20);
    CHECK_EQ(st.objects, 0);
    uint64_t empty_bytes = st.bytes; /* the ghost tables */
    CHECK_INT(empty_bytes, <, (4 << 20) / 50);
    char buf[64];
    for (int i = 0; i < 100; i++)
        access_key(c, i, 0);
    for (int i = 0; i < 100; i++)
        access_key(c, i, 1);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.objects, 100);
    CHECK_EQ(st.entries, 100);
    CHECK_EQ(st.misses, 100);
    CHECK_EQ(st.stores, 100);
    CHECK_EQ(st.hits, 100);
    CHECK_EQ(st.evictions, 0);
    CHECK_INT(st.bytes, >, empty_bytes + 100 * 1000);
    CHECK_INT(st.bytes, <, empty_bytes + 100 * 1300 + 100 * strlen(num_key(buf, sizeof(buf), 99).ptr));
    /* the shard count adapts to small budgets and is capped */
    lv_cache_free(c);
    c = lv_cache_new(100 * 1024, 64);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.nshards, 1);
    lv_cache_free(c);
    c = lv_cache_new((size_t)1 << 30, 1000);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.nshards, 256);
    lv_cache_free(c);
    c = lv_cache_new(64 << 20, 5);
    lv_cache_stats(c, &st);
    CHECK_EQ(st.nshards, 8);
    CHECK_INT(st.bytes, <=, st.max_bytes);
    lv_cache_free(c);
}

/* ---- threads ------------------------------------------------------------- */

enum { COALESCE_THREADS = 8, COALESCE_EACH = 125, COALESCE_TOTAL = COALESCE_THREADS * COALESCE_EACH };

typedef struct {
    lv_cache_t *c;
    test_waiter_t *waiters;     /* COALESCE_EACH for this thread */
    atomic_int *done, *fills, *waits, *other;
    pthread_barrier_t *start;
    lv_cache_obj_t *served;     /* set by the filler thread */
} coalesce_arg_t;

static void *coalesce_thread(void *p)
{
    coalesce_arg_t *a = p;
    lv_slice_t k = KEY("GET tickets.example/events?page=1");
    bool filler = false;
    pthread_barrier_wait(a->start);
    for (int i = 0; i < COALESCE_EACH; i++) {
        lv_cache_obj_t *o = NULL;
        switch (lv_cache_lookup(a->c, k, 1000, &a->waiters[i].w, &o)) {
        case LV_CACHE_MISS_FILL: filler = true; atomic_fetch_add(a->fills, 1); break;
        case LV_CACHE_MISS_WAIT: atomic_fetch_add(a->waits, 1); break;
        default: atomic_fetch_add(a->other, 1); lv_cache_obj_unref(o); break;
        }
        atomic_fetch_add(a->done, 1);
    }
    if (filler) {
        /* the "fetch" ends once every request has arrived */
        while (atomic_load(a->done) < COALESCE_TOTAL)
            sched_yield();
        a->served = lv_cache_fill_done(a->c, k, 1010, make_obj("events", 1010, 10000, 0, 0), true, 0);
    }
    return NULL;
}

static void test_threads_coalesce_one_fetch(void)
{
    lv_cache_t *c = lv_cache_new(1 << 20, 4);
    test_waiter_t *waiters = lv_calloc(COALESCE_TOTAL, sizeof(*waiters));
    for (int i = 0; i < COALESCE_TOTAL; i++)
        waiter_init(&waiters[i]);
    atomic_int done = 0, fills = 0, waits = 0, other = 0;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, COALESCE_THREADS);
    pthread_t th[COALESCE_THREADS];
    coalesce_arg_t args[COALESCE_THREADS];
    for (int t = 0; t < COALESCE_THREADS; t++) {
        args[t] = (coalesce_arg_t){c, &waiters[t * COALESCE_EACH], &done, &fills, &waits, &other, &start, NULL};
        pthread_create(&th[t], NULL, coalesce_thread, &args[t]);
    }
    lv_cache_obj_t *served = NULL;
    for (int t = 0; t < COALESCE_THREADS; t++) {
        pthread_join(th[t], NULL);
        if (args[t].served)
            served = args[t].served;
    }
    pthread_barrier_destroy(&start);
    CHECK_EQ(atomic_load(&fills), 1);
    CHECK_EQ(atomic_load(&waits), COALESCE_TOTAL - 1);
    CHECK_EQ(atomic_load(&other), 0);
    CHECK(served != NULL);
    int woken = 0, with_obj = 0;
    for (int i = 0; i < COALESCE_TOTAL; i++) {
        woken += atomic_load(&waiters[i].called);
        with_obj += waiters[i].got == served;
    }
    CHECK_EQ(woken, COALESCE_TOTAL - 1);
    CHECK_EQ(with_obj, COALESCE_TOTAL - 1);
    CHECK_EQ(refs(served), COALESCE_TOTAL + 1); /* cache + filler + 999 waiters */
    for (int i = 0; i < COALESCE_TOTAL; i++)
        lv_cache_obj_unref(waiters[i].got);
    lv_cache_obj_unref(served);
    CHECK_EQ(refs(served), 1);
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    CHECK_EQ(st.misses, 1);
    CHECK_EQ(st.waits, COALESCE_TOTAL - 1);
    CHECK_EQ(st.waiting, 0);
    free(waiters);
    lv_cache_free(c);
}

/* A waiter that records its wake-up for the thread that owns it. */
typedef struct {
    lv_cache_waiter_t w;
    atomic_int ready;
    lv_cache_obj_t *got;
} stress_waiter_t;

static void stress_ready(lv_cache_waiter_t *w, lv_cache_obj_t *obj)
{
    stress_waiter_t *s = (stress_waiter_t *)w;
    s->got = obj;
    atomic_store_explicit(&s->ready, 1, memory_order_release);
}

typedef struct {
    lv_cache_t *c;
    atomic_llong *clock;
    unsigned seed;
    long ops, woken, cancelled, queued;
} stress_arg_t;

enum { STRESS_OPS = 40000, STRESS_PENDING = 64 };

static void stress_reap(stress_arg_t *a, stress_waiter_t **pending, int *np, bool all)
{
    for (int i = 0; i < *np;) {
        stress_waiter_t *sw = pending[i];
        bool done = false;
        if (atomic_load_explicit(&sw->ready, memory_order_acquire)) {
            lv_cache_obj_unref(sw->got);
            a->woken++;
            done = true;
        } else if (!all && rand_r(&a->seed) % 4 == 0 && lv_cache_wait_cancel(a->c, &sw->w)) {
            a->cancelled++;
            done = true;
        }
        if (done) {
            free(sw);
            pending[i] = pending[--*np];
        } else {
            i++;
        }
    }
}

static void *stress_thread(void *p)
{
    stress_arg_t *a = p;
    stress_waiter_t *pending[STRESS_PENDING];
    int np = 0;
    char key[32];
    for (long i = 0; i < STRESS_OPS; i++) {
        int64_t now = atomic_fetch_add(a->clock, 1) / 4;
        int n = snprintf(key, sizeof(key), "k%d", rand_r(&a->seed) % 200);
        lv_slice_t k = lv_slice(key, (size_t)n);
        stress_waiter_t *sw = NULL;
        if (np < STRESS_PENDING) {
            sw = lv_calloc(1, sizeof(*sw));
            sw->w.on_ready = stress_ready;
        }
        lv_cache_obj_t *o = NULL;
        lv_cache_result_t r = lv_cache_lookup(a->c, k, now, sw ? &sw->w : NULL, &o);
        if (r == LV_CACHE_MISS_WAIT) {
            pending[np++] = sw;
            a->queued++;
            sw = NULL;
        }
        free(sw);
        lv_cache_obj_unref(o);
        if (r == LV_CACHE_MISS_FILL || r == LV_CACHE_STALE_REFRESH) {
            unsigned dice = (unsigned)rand_r(&a->seed) % 10;
            for (unsigned y = 0; y < dice % 4; y++)
                sched_yield(); /* a slower fetch: let waiters pile up */
            lv_cache_obj_t *obj = NULL;
            if (dice < 8) {
                obj = make_sized((size_t)(rand_r(&a->seed) % 30000), now, 0);
                lv_cache_obj_set_lifetime(obj, now, rand_r(&a->seed) % 50, rand_r(&a->seed) % 50,
                                          rand_r(&a->seed) % 100);
            }
            lv_cache_obj_unref(lv_cache_fill_done(a->c, k, now, obj, dice != 7, dice == 7 ? 20 : 0));
        }
        if (r == LV_CACHE_PASS && rand_r(&a->seed) % 2)
            lv_cache_obj_unref(lv_cache_get_for_error(a->c, k, now));
        if (i % 16 == 0)
            stress_reap(a, pending, &np, false);
    }
    while (np > 0) {
        stress_reap(a, pending, &np, true);
        sched_yield();
    }
    return NULL;
}

static void test_threads_random_mix(void)
{
    enum { T = 4 };
    const size_t max = 1 << 20;
    lv_cache_t *c = lv_cache_new(max, 4);
    lv_cache_set_fill_timeout(c, 3); /* short lock age: exercise takeovers too */
    atomic_llong clock = 0;
    pthread_t th[T];
    stress_arg_t args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (stress_arg_t){c, &clock, (unsigned)t * 7919u + 1, 0, 0, 0, 0};
        pthread_create(&th[t], NULL, stress_thread, &args[t]);
    }
    long queued = 0, woken = 0, cancelled = 0;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        queued += args[t].queued;
        woken += args[t].woken;
        cancelled += args[t].cancelled;
    }
    lv_cache_stats_t st;
    lv_cache_stats(c, &st);
    printf("random mix: %llu hits %llu stale %llu refreshes %llu misses %llu waits (%ld woken, %ld "
           "cancelled) %llu passes %llu takeovers %llu evictions\n",
           (unsigned long long)st.hits, (unsigned long long)st.stale_hits,
           (unsigned long long)st.refreshes, (unsigned long long)st.misses,
           (unsigned long long)st.waits, woken, cancelled, (unsigned long long)st.passes,
           (unsigned long long)st.lock_takeovers, (unsigned long long)st.evictions);
    CHECK_EQ(queued, woken + cancelled);
    CHECK_EQ((long)st.waits, queued);
    CHECK_EQ(st.waiting, 0);
    CHECK_INT(st.bytes, <=, max);
    CHECK_INT(st.hits, >, 0);
    lv_cache_free(c);
}

/* ---- cost of a hit ------------------------------------------------------- */

/* CPU time of the calling thread: on a shared machine, time spent
 * descheduled must not count as the cache's cost. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef struct {
    lv_cache_t *c;
    int nkeys, iters, offset;
    double ns_per_op;
} bench_arg_t;

static void *bench_hits(void *p)
{
    bench_arg_t *a = p;
    char (*keys)[48] = lv_malloc((size_t)a->nkeys * sizeof(*keys));
    size_t *lens = lv_malloc((size_t)a->nkeys * sizeof(*lens));
    for (int i = 0; i < a->nkeys; i++)
        lens[i] = (size_t)snprintf(keys[i], sizeof(keys[i]), "GET tickets.example/events?id=%d", i);
    int misses = 0;
    double t0 = now_ns();
    for (int i = 0; i < a->iters; i++) {
        int k = (i + a->offset) % a->nkeys;
        lv_cache_obj_t *o = NULL;
        if (lv_cache_lookup(a->c, lv_slice(keys[k], lens[k]), 1000, NULL, &o) != LV_CACHE_HIT)
            misses++;
        lv_cache_obj_unref(o);
    }
    a->ns_per_op = (now_ns() - t0) / a->iters;
    free(keys);
    free(lens);
    if (misses)
        a->ns_per_op = -1;
    return NULL;
}

static void test_bench_hit_cost(void)
{
    enum { KEYS = 1000 };
    lv_cache_t *c = lv_cache_new(64 << 20, 16);
    char buf[48];
    for (int i = 0; i < KEYS; i++) {
        int n = snprintf(buf, sizeof(buf), "GET tickets.example/events?id=%d", i);
        lv_slice_t k = lv_slice(buf, (size_t)n);
        lv_cache_obj_t *o = NULL;
        CHECK_EQ(lv_cache_lookup(c, k, 0, NULL, &o), LV_CACHE_MISS_FILL);
        lv_cache_obj_unref(lv_cache_fill_done(c, k, 0, make_sized(512, 0, 1000000), true, 0));
    }
    bench_arg_t one = {c, KEYS, 2000000, 0, 0};
    bench_hits(&one);
    CHECK_INT(one.ns_per_op, >, 0);
    bench_arg_t hot = {c, 1, 2000000, 0, 0};
    bench_hits(&hot);
    CHECK_INT(hot.ns_per_op, >, 0);
    /* two threads: on different keys, then on the same keys in lockstep
     * (the worst case: same shard lock and same refcount at the same time) */
    double two[2][2];
    for (int same = 0; same < 2; same++) {
        bench_arg_t a[2] = {{c, KEYS, 1000000, 0, 0}, {c, KEYS, 1000000, same ? 0 : KEYS / 2, 0}};
        pthread_t th[2];
        for (int t = 0; t < 2; t++)
            pthread_create(&th[t], NULL, bench_hits, &a[t]);
        for (int t = 0; t < 2; t++)
            pthread_join(th[t], NULL);
        CHECK_INT(a[0].ns_per_op, >, 0);
        CHECK_INT(a[1].ns_per_op, >, 0);
        two[same][0] = a[0].ns_per_op;
        two[same][1] = a[1].ns_per_op;
    }
    printf("hit cost in thread CPU time (lookup + ref + unref, %d keys, 16 shards): %.1f ns/op single thread; "
           "one hot key %.1f ns/op; 2 threads on different keys %.1f / %.1f ns/op, "
           "on the same keys %.1f / %.1f ns/op\n",
           KEYS, one.ns_per_op, hot.ns_per_op, two[0][0], two[0][1], two[1][0], two[1][1]);
    lv_cache_free(c);
}

int main(void)
{
    LV_RUN(test_obj_layout_and_refs);
    LV_RUN(test_miss_fill_then_hit);
    LV_RUN(test_stale_while_revalidate);
    LV_RUN(test_refresh_running_past_stale_window_waits);
    LV_RUN(test_stale_if_error_serves_filler_and_waiters);
    LV_RUN(test_fill_failure_without_stale_copy);
    LV_RUN(test_hit_for_miss);
    LV_RUN(test_replace_old_copy);
    LV_RUN(test_big_object_served_not_stored);
    LV_RUN(test_byte_bound_never_exceeded);
    LV_RUN(test_tiny_cache_passes);
    LV_RUN(test_hot_set_survives_scan);
    LV_RUN(test_ghost_readmits_to_main);
    LV_RUN(test_expired_entries_evicted_first);
    LV_RUN(test_lock_age_lets_another_fill);
    LV_RUN(test_wait_cancel);
    LV_RUN(test_free_wakes_leftover_waiters);
    LV_RUN(test_stats_counts);
    LV_RUN(test_threads_coalesce_one_fetch);
    LV_RUN(test_threads_random_mix);
    LV_RUN(test_bench_hit_cost);
    return lv_test_summary();
}
