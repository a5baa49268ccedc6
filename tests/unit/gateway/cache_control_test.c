/* cache_control_test.c: the Cache-Control parser (a table of header values
 * and the fields they must give) and lv_cache_decide (a table of route,
 * status and header combinations). Header values are copied into exactly
 * sized heap buffers so ASan catches any read past the end. */
#include <stdlib.h>

#include "core/mem.h"
#include "gateway/cache_control.h"
#include "test.h"

#define ABSENT (-1)
#define BIG LV_CACHE_CONTROL_MAX_SECONDS

typedef struct {
    const char *value;
    int64_t max_age, s_maxage, swr, sie;
    const char *flags; /* letters: S no-store, C no-cache, P private, U public, M must-, X proxy-revalidate */
} parse_case_t;

static const parse_case_t parse_cases[] = {
    {"", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=10", 10, ABSENT, ABSENT, ABSENT, ""},
    {"MAX-AGE=10", 10, ABSENT, ABSENT, ABSENT, ""},
    {"Max-Age=0", 0, ABSENT, ABSENT, ABSENT, ""},
    {"public, max-age=60, s-maxage=10", 60, 10, ABSENT, ABSENT, "U"},
    {"max-age=10, stale-while-revalidate=30, stale-if-error=86400", 10, ABSENT, 30, 86400, ""},
    {"  max-age=5  ,  public  ", 5, ABSENT, ABSENT, ABSENT, "U"},
    {"\tmax-age=5\t,\tprivate", 5, ABSENT, ABSENT, ABSENT, "P"},
    {",,, ,max-age=7,,", 7, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=\"15\"", 15, ABSENT, ABSENT, ABSENT, ""},
    {"no-store", ABSENT, ABSENT, ABSENT, ABSENT, "S"},
    {"no-cache", ABSENT, ABSENT, ABSENT, ABSENT, "C"},
    {"NO-CACHE, No-Store, PRIVATE, Public", ABSENT, ABSENT, ABSENT, ABSENT, "SCPU"},
    {"must-revalidate, proxy-revalidate", ABSENT, ABSENT, ABSENT, ABSENT, "MX"},
    /* qualified forms: restrictive either way */
    {"no-cache=\"Set-Cookie, X-Foo\", max-age=5", 5, ABSENT, ABSENT, ABSENT, "C"},
    {"private=\"X-User\", max-age=5", 5, ABSENT, ABSENT, ABSENT, "P"},
    {"private=x", ABSENT, ABSENT, ABSENT, ABSENT, "P"},
    /* first occurrence wins */
    {"max-age=10, max-age=20", 10, ABSENT, ABSENT, ABSENT, ""},
    /* malformed permissive directives are ignored, the others still count */
    {"max-age=abc, s-maxage=4", ABSENT, 4, ABSENT, ABSENT, ""},
    {"max-age=, public", ABSENT, ABSENT, ABSENT, ABSENT, "U"},
    {"max-age, s-maxage=3", ABSENT, 3, ABSENT, ABSENT, ""},
    {"max-age=-1, s-maxage=3", ABSENT, 3, ABSENT, ABSENT, ""},
    {"max-age=1.5", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=10 20, public", ABSENT, ABSENT, ABSENT, ABSENT, "U"},
    {"max-age = 10", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=\"1\\0\"", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=\"10", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=10 \"junk, no-store\", public", ABSENT, ABSENT, ABSENT, ABSENT, "U"},
    {"=5, max-age=9", 9, ABSENT, ABSENT, ABSENT, ""},
    {"@@@, max-age=9", 9, ABSENT, ABSENT, ABSENT, ""},
    {"no-store junk, max-age=9", 9, ABSENT, ABSENT, ABSENT, "S"},
    {"public=\"unterminated, max-age=9", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    /* a quoted comma does not split; escapes are skipped */
    {"ext=\"a,b\\\"c,d\", max-age=8", 8, ABSENT, ABSENT, ABSENT, ""},
    {"ext=\"\\", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    /* unknown directives are ignored */
    {"immutable, foo=bar, max-age=3", 3, ABSENT, ABSENT, ABSENT, ""},
    {"max-ages=3, xmax-age=4", ABSENT, ABSENT, ABSENT, ABSENT, ""},
    /* huge values saturate at 2^31 */
    {"max-age=2147483648", BIG, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=99999999999999999999999999999", BIG, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=2147483647", 2147483647LL, ABSENT, ABSENT, ABSENT, ""},
    {"max-age=000000000000000000000000000012", 12, ABSENT, ABSENT, ABSENT, ""},
};

static bool has_flag(const char *flags, char f)
{
    return strchr(flags, f) != NULL;
}

static void parse_heap(const char *value, lv_cache_control_t *cc)
{
    size_t len = strlen(value);
    char *copy = lv_malloc(len ? len : 1); /* exact size: no NUL to lean on */
    memcpy(copy, value, len);
    lv_cache_control_parse(lv_slice(copy, len), cc);
    free(copy);
}

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const parse_case_t *t = &parse_cases[i];
        lv_cache_control_t cc;
        lv_cache_control_init(&cc);
        parse_heap(t->value, &cc);
        if (cc.max_age_s != t->max_age || cc.s_maxage_s != t->s_maxage || cc.swr_s != t->swr ||
            cc.sie_s != t->sie || cc.no_store != has_flag(t->flags, 'S') ||
            cc.no_cache != has_flag(t->flags, 'C') || cc.private_ != has_flag(t->flags, 'P') ||
            cc.public_ != has_flag(t->flags, 'U') || cc.must_revalidate != has_flag(t->flags, 'M') ||
            cc.proxy_revalidate != has_flag(t->flags, 'X'))
            LV_FAIL_("case %zu [%s]: got max-age %lld s-maxage %lld swr %lld sie %lld "
                     "S%d C%d P%d U%d M%d X%d",
                     i, t->value, (long long)cc.max_age_s, (long long)cc.s_maxage_s,
                     (long long)cc.swr_s, (long long)cc.sie_s, cc.no_store, cc.no_cache,
                     cc.private_, cc.public_, cc.must_revalidate, cc.proxy_revalidate);
    }
}

static void test_parse_repeated_headers(void)
{
    lv_cache_control_t cc;
    lv_cache_control_init(&cc);
    parse_heap("max-age=10", &cc);
    parse_heap("max-age=99, stale-while-revalidate=5", &cc);
    parse_heap("no-cache", &cc);
    CHECK_EQ(cc.max_age_s, 10);
    CHECK_EQ(cc.swr_s, 5);
    CHECK(cc.no_cache);
    CHECK(!cc.no_store);
}

static void test_parse_null_and_empty(void)
{
    lv_cache_control_t cc;
    lv_cache_control_init(&cc);
    lv_cache_control_parse(lv_slice(NULL, 0), &cc);
    lv_cache_control_parse(lv_slice(NULL, 5), &cc); /* a bad slice is ignored, not read */
    CHECK_EQ(cc.max_age_s, -1);
    CHECK(!cc.no_store);
}

/* ---- decisions ---------------------------------------------------------- */

static lv_config_route_cache_t route_default(void)
{
    return (lv_config_route_cache_t){
        .enabled = true,
        .ttl_ms = -1,
        .stale_while_revalidate_ms = -1,
        .stale_if_error_ms = -1,
    };
}

static lv_cache_decision_t decide(const lv_config_route_cache_t *route, int status, const char *header,
                                  bool set_cookie, bool vary_star)
{
    lv_cache_control_t cc;
    lv_cache_control_init(&cc);
    parse_heap(header, &cc);
    return lv_cache_decide(route, status, &cc, set_cookie, vary_star);
}

#define CHECK_DECISION(d, c, ttl, swr, sie)                                                   \
    do {                                                                                      \
        lv_cache_decision_t d_ = (d);                                                         \
        CHECK_EQ(d_.cacheable, (c));                                                          \
        CHECK_EQ(d_.ttl_ms, (ttl));                                                           \
        CHECK_EQ(d_.swr_ms, (swr));                                                           \
        CHECK_EQ(d_.sie_ms, (sie));                                                           \
    } while (0)

static void test_decide_from_headers(void)
{
    lv_config_route_cache_t r = route_default();
    CHECK_DECISION(decide(&r, 200, "max-age=10", false, false), true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, s-maxage=3", false, false), true, 3000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, stale-while-revalidate=5, stale-if-error=60", false,
                          false),
                   true, 10000, 5000, 60000);
    CHECK_DECISION(decide(&r, 200, "", false, false), false, 0, 0, 0);          /* no freshness info */
    CHECK_DECISION(decide(&r, 200, "public", false, false), false, 0, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=0", false, false), false, 0, 0, 0); /* nothing to keep */
    CHECK_DECISION(decide(&r, 200, "max-age=0, stale-while-revalidate=30", false, false), true, 0,
                   30000, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, no-store", false, false), false, 0, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, no-cache", false, false), false, 0, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, private", false, false), false, 0, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=10, stale-while-revalidate=5, must-revalidate", false,
                          false),
                   true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "s-maxage=10, stale-if-error=5, proxy-revalidate", false, false),
                   true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=2147483648", false, false), true, 2147483648000LL, 0, 0);
    /* NULL route: the defaults; NULL header: no directives */
    CHECK_DECISION(decide(NULL, 200, "max-age=1", false, false), true, 1000, 0, 0);
    CHECK_DECISION(lv_cache_decide(NULL, 200, NULL, false, false), false, 0, 0, 0);
}

static void test_decide_statuses(void)
{
    lv_config_route_cache_t r = route_default();
    static const struct { int status; bool ok; } cases[] = {
        {200, true}, {203, true}, {204, true}, {206, false}, {301, true}, {302, true},
        {304, false}, {308, true}, {199, false}, {400, false}, {404, false}, {500, false},
        {503, false}, {0, false}, {-1, false}, {999, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lv_cache_decision_t d = decide(&r, cases[i].status, "max-age=5", false, false);
        if (d.cacheable != cases[i].ok)
            LV_FAIL_("status %d: cacheable %d", cases[i].status, d.cacheable);
    }
    int list[] = {200, 404};
    r.statuses = list;
    r.num_statuses = 2;
    CHECK(decide(&r, 404, "max-age=5", false, false).cacheable);
    CHECK(decide(&r, 200, "max-age=5", false, false).cacheable);
    CHECK(!decide(&r, 301, "max-age=5", false, false).cacheable);
}

static void test_decide_route_overrides(void)
{
    lv_config_route_cache_t r = route_default();
    r.ttl_ms = 10000;
    /* the route's ttl wins over the header, no-cache included, and needs no header at all */
    CHECK_DECISION(decide(&r, 200, "", false, false), true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=600", false, false), true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "no-cache", false, false), true, 10000, 0, 0);
    CHECK_DECISION(decide(&r, 200, "max-age=0", false, false), true, 10000, 0, 0);
    /* ...but never over no-store or private */
    CHECK_DECISION(decide(&r, 200, "no-store", false, false), false, 0, 0, 0);
    CHECK_DECISION(decide(&r, 200, "private", false, false), false, 0, 0, 0);
    /* header stale windows still apply when the route sets none */
    CHECK_DECISION(decide(&r, 200, "stale-while-revalidate=3, stale-if-error=4", false, false), true,
                   10000, 3000, 4000);
    r.stale_while_revalidate_ms = 1000;
    r.stale_if_error_ms = 0;
    CHECK_DECISION(decide(&r, 200, "stale-while-revalidate=3, stale-if-error=4", false, false), true,
                   10000, 1000, 0);
    /* route stale windows also beat must-revalidate: the operator chose them */
    CHECK_DECISION(decide(&r, 200, "must-revalidate", false, false), true, 10000, 1000, 0);
    r.ttl_ms = 0;
    CHECK_DECISION(decide(&r, 200, "max-age=60", false, false), true, 0, 1000, 0);
    r.stale_while_revalidate_ms = 0;
    CHECK_DECISION(decide(&r, 200, "max-age=60", false, false), false, 0, 0, 0);
    r = route_default();
    r.enabled = false;
    CHECK_DECISION(decide(&r, 200, "max-age=60", false, false), false, 0, 0, 0);
}

static void test_decide_cookies_and_vary(void)
{
    lv_config_route_cache_t r = route_default();
    CHECK(!decide(&r, 200, "max-age=5", true, false).cacheable);
    r.cache_set_cookie = true;
    CHECK(decide(&r, 200, "max-age=5", true, false).cacheable);
    CHECK(!decide(&r, 200, "max-age=5", false, true).cacheable);
    r.ttl_ms = 5000;
    CHECK(!decide(&r, 200, "", false, true).cacheable);
}

int main(void)
{
    LV_RUN(test_parse_table);
    LV_RUN(test_parse_repeated_headers);
    LV_RUN(test_parse_null_and_empty);
    LV_RUN(test_decide_from_headers);
    LV_RUN(test_decide_statuses);
    LV_RUN(test_decide_route_overrides);
    LV_RUN(test_decide_cookies_and_vary);
    return lv_test_summary();
}
