/* router_test.c: unit tests for src/gateway/router.c.
 *
 * The specificity table is the heart of it: one router with overlapping
 * routes and, for many paths, the route that must win and the parameters it
 * must capture. Targets are the route strings themselves, so a failure
 * prints which route won instead. */
#include "gateway/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

/* Adds "METHOD /pattern" with the route text itself as target. */
static int add(lv_router_t *r, const char *route)
{
    char method[64], err[256];
    const char *sp = strchr(route, ' ');
    snprintf(method, sizeof(method), "%.*s", (int)(sp - route), route);
    int rc = lv_router_add(r, method, sp + 1, (void *)route, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "  add %s: %s\n", route, err);
    return rc;
}

/* Matches "METHOD /path"; m gets the result. */
static lv_route_result_t match(const lv_router_t *r, const char *request, lv_route_match_t *m)
{
    const char *sp = strchr(request, ' ');
    return lv_router_match(r, lv_slice(request, (size_t)(sp - request)), lv_slice_cstr(sp + 1), m);
}

/* params formatted "a=1,b=2" for comparison with the table. */
static void format_params(const lv_route_match_t *m, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < m->num_params && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, "%s%.*s=%.*s", i ? "," : "", (int)m->params[i].name.len,
                              m->params[i].name.ptr, (int)m->params[i].value.len, m->params[i].value.ptr);
}

static const char *specificity_routes[] = {
    "GET /hello",
    "GET /hello/",
    "GET /r/{code}",
    "GET /r/special",
    "GET /r/{code}/stats",
    "GET /events/*",
    "GET /events/live",
    "GET /users/{id}",
    "POST /users/me",
    "GET /users/{id}/orders/{oid}",
    "GET /users/{uid}/orders/latest",
    "GET /users/me/orders/{oid}",
    "GET /users/{id}/*",
    "ANY /users/{id}/settings",
    "PUT /users/{id}/settings",
    "GET /a/{x}/c",
    "GET /a/b/*",
    "GET /a/{x}/{y}",
    "GET /files/*",
    "GET /files/{name}",
    "ANY /*",
    "GET /",
    "GET /x/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}/{p10}/{p11}/{p12}/{p13}/{p14}/{p15}/{p16}",
};

static const struct {
    const char *request, *winner, *params, *rest;
} specificity_cases[] = {
    {"GET /hello", "GET /hello", "", ""},
    {"GET /hello/", "GET /hello/", "", ""},
    {"GET /hello/x", "ANY /*", "", "hello/x"},
    {"GET /r/abc", "GET /r/{code}", "code=abc", ""},
    {"GET /r/special", "GET /r/special", "", ""},
    {"GET /r/special/stats", "GET /r/{code}/stats", "code=special", ""},
    {"GET /r/", "ANY /*", "", "r/"},
    {"GET /r", "ANY /*", "", "r"},
    {"GET /events/", "GET /events/*", "", ""},
    {"GET /events/a/b/c", "GET /events/*", "", "a/b/c"},
    {"GET /events/live", "GET /events/live", "", ""},
    {"GET /events/live/2", "GET /events/*", "", "live/2"},
    {"GET /events", "ANY /*", "", "events"},
    {"GET /users/42", "GET /users/{id}", "id=42", ""},
    /* the only /users/me route is POST: the less specific GET pattern serves it */
    {"GET /users/me", "GET /users/{id}", "id=me", ""},
    {"POST /users/me", "POST /users/me", "", ""},
    {"GET /users/42/orders/7", "GET /users/{id}/orders/{oid}", "id=42,oid=7", ""},
    {"GET /users/42/orders/latest", "GET /users/{uid}/orders/latest", "uid=42", ""},
    {"GET /users/me/orders/latest", "GET /users/me/orders/{oid}", "oid=latest", ""},
    {"GET /users/42/other/x", "GET /users/{id}/*", "id=42", "other/x"},
    {"GET /users/42/", "GET /users/{id}/*", "id=42", ""},
    {"PUT /users/42/settings", "PUT /users/{id}/settings", "id=42", ""},
    {"DELETE /users/42/settings", "ANY /users/{id}/settings", "id=42", ""},
    // GET on the settings pattern: ANY there beats the less specific GET /users/{id}/*
    {"GET /users/42/settings", "ANY /users/{id}/settings", "id=42", ""},
    // literal first: /a/b/* beats /a/{x}/c even though the latter has more literals
    {"GET /a/b/c", "GET /a/b/*", "", "c"},
    {"GET /a/z/c", "GET /a/{x}/c", "x=z", ""},
    {"GET /a/z/q", "GET /a/{x}/{y}", "x=z,y=q", ""},
    {"GET /a/b/q", "GET /a/b/*", "", "q"},
    /* an empty segment never matches {param} */
    {"GET /a//c", "ANY /*", "", "a//c"},
    {"GET /files/report.pdf", "GET /files/{name}", "name=report.pdf", ""},
    {"GET /files/", "GET /files/*", "", ""},
    {"GET /files/dir/report.pdf", "GET /files/*", "", "dir/report.pdf"},
    {"GET /", "GET /", "", ""},
    {"POST /", "ANY /*", "", ""},
    {"GET //", "ANY /*", "", "/"},
    /* raw bytes: nothing is decoded */
    {"GET /r/a%2Fb", "GET /r/{code}", "code=a%2Fb", ""},
    {"GET /hello?x=1", "ANY /*", "", "hello?x=1"},
    {"GET /x/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", "GET /x/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}/{p10}/{p11}/{p12}/{p13}/{p14}/{p15}/{p16}",
     "p1=1,p2=2,p3=3,p4=4,p5=5,p6=6,p7=7,p8=8,p9=9,p10=10,p11=11,p12=12,p13=13,p14=14,p15=15,p16=16", ""},
};

static void test_specificity_table(void)
{
    lv_router_t *r = lv_router_new();
    for (size_t i = 0; i < sizeof(specificity_routes) / sizeof(*specificity_routes); i++)
        CHECK_EQ(add(r, specificity_routes[i]), 0);
    /* Adding in the reverse order must not change any answer. */
    lv_router_t *rev = lv_router_new();
    for (size_t i = sizeof(specificity_routes) / sizeof(*specificity_routes); i-- > 0;)
        CHECK_EQ(add(rev, specificity_routes[i]), 0);

    for (size_t i = 0; i < sizeof(specificity_cases) / sizeof(*specificity_cases); i++) {
        const lv_router_t *routers[2] = {r, rev};
        for (int k = 0; k < 2; k++) {
            lv_route_match_t m;
            char params[512];
            lv_route_result_t res = match(routers[k], specificity_cases[i].request, &m);
            if (res != LV_ROUTE_FOUND) {
                fprintf(stderr, "  %s: result %d\n", specificity_cases[i].request, res);
                CHECK_EQ(res, LV_ROUTE_FOUND);
            }
            if (strcmp((const char *)m.target, specificity_cases[i].winner) != 0) {
                fprintf(stderr, "  %s: won by %s\n", specificity_cases[i].request, (const char *)m.target);
                CHECK_STR((const char *)m.target, specificity_cases[i].winner);
            }
            format_params(&m, params, sizeof(params));
            CHECK_STR(params, specificity_cases[i].params);
            CHECK_SLICE(m.rest, specificity_cases[i].rest);
        }
    }
    lv_router_free(r);
    lv_router_free(rev);
}

static void test_params_point_into_path(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "GET /users/{id}/orders/{oid}"), 0);
    const char *path = "/users/42/orders/7";
    lv_route_match_t m;
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice_cstr(path), &m), LV_ROUTE_FOUND);
    CHECK_EQ(m.num_params, 2);
    CHECK(m.params[0].value.ptr == path + 7);
    CHECK(m.params[1].value.ptr == path + 17);
    CHECK_SLICE(m.params[0].name, "id");
    CHECK_SLICE(m.params[1].name, "oid");
    lv_router_free(r);
}

static void test_head_uses_get(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "GET /page"), 0);
    CHECK_EQ(add(r, "GET /both"), 0);
    CHECK_EQ(add(r, "HEAD /both"), 0);
    CHECK_EQ(add(r, "ANY /any"), 0);
    CHECK_EQ(add(r, "GET /any"), 0);
    CHECK_EQ(add(r, "HEAD /*"), 0);
    CHECK_EQ(add(r, "POST /post"), 0);
    lv_route_match_t m;
    CHECK_EQ(match(r, "HEAD /page", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /page");
    CHECK_EQ(match(r, "HEAD /both", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "HEAD /both");
    CHECK_EQ(match(r, "GET /both", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /both");
    /* GET-for-HEAD beats ANY on the same pattern */
    CHECK_EQ(match(r, "HEAD /any", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /any");
    // the less specific HEAD /* serves what no exact pattern takes
    CHECK_EQ(match(r, "HEAD /post", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "HEAD /*");
    CHECK_EQ(match(r, "HEAD /elsewhere", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "HEAD /*");
    /* HEAD does not reach a GET route of a less specific pattern over nothing */
    CHECK_EQ(match(r, "GET /elsewhere", &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    lv_router_free(r);

    /* A GET route alone, no HEAD route anywhere. */
    r = lv_router_new();
    CHECK_EQ(add(r, "GET /only"), 0);
    CHECK_EQ(match(r, "HEAD /only", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /only");
    CHECK_EQ(match(r, "POST /only", &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    lv_router_free(r);
}

static void check_allow(const lv_router_t *r, const char *path, const char *want)
{
    char buf[256];
    size_t n = lv_router_allow(r, lv_slice_cstr(path), buf, sizeof(buf));
    CHECK_STR(buf, want);
    CHECK_EQ(n, strlen(want));
}

static void test_404_405_and_allow(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "POST /items"), 0);
    CHECK_EQ(add(r, "GET /items"), 0);
    CHECK_EQ(add(r, "DELETE /items/{id}"), 0);
    CHECK_EQ(add(r, "PATCH /items/*"), 0);
    CHECK_EQ(add(r, "PUT /items/{id}"), 0);
    CHECK_EQ(add(r, "POST /jobs"), 0);
    CHECK_EQ(add(r, "ANY /open/{x}"), 0);
    CHECK_EQ(add(r, "POST /open/{x}"), 0);
    lv_route_match_t m;

    CHECK_EQ(match(r, "GET /nothing", &m), LV_ROUTE_NOT_FOUND);
    CHECK(m.target == NULL);
    CHECK_EQ(match(r, "PUT /items", &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    CHECK(m.target == NULL);
    CHECK_EQ(m.num_params, 0);
    check_allow(r, "/items", "GET, HEAD, POST");
    /* the union of every pattern matching the path */
    CHECK_EQ(match(r, "GET /items/3", &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    check_allow(r, "/items/3", "DELETE, PATCH, PUT");
    CHECK_EQ(match(r, "PATCH /items/3", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "PATCH /items/*");
    CHECK_SLICE(m.rest, "3");
    /* no GET here, so no HEAD either */
    check_allow(r, "/jobs", "POST");
    CHECK_EQ(match(r, "HEAD /jobs", &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    /* ANY: never 405, and adds nothing to Allow */
    CHECK_EQ(match(r, "BREW /open/x", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "ANY /open/{x}");
    CHECK_EQ(match(r, "POST /open/x", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "POST /open/{x}");
    check_allow(r, "/open/x", "POST");
    /* no route for the path: empty Allow */
    check_allow(r, "/nothing", "");
    check_allow(r, "", "");
    check_allow(r, "items", "");
    /* methods are case-sensitive */
    CHECK_EQ(match(r, "get /items", &m), LV_ROUTE_METHOD_NOT_ALLOWED);

    /* truncation: whole names only, always NUL-terminated */
    char small[12];
    size_t n = lv_router_allow(r, LV_SLICE_LIT("/items"), small, sizeof(small));
    CHECK_STR(small, "GET, HEAD");
    CHECK_EQ(n, 9);
    n = lv_router_allow(r, LV_SLICE_LIT("/items"), small, 3);
    CHECK_STR(small, "");
    CHECK_EQ(n, 0);
    n = lv_router_allow(r, LV_SLICE_LIT("/items"), small, 4);
    CHECK_STR(small, "GET");
    CHECK_EQ(n, 3);
    CHECK_EQ(lv_router_allow(r, LV_SLICE_LIT("/items"), NULL, 0), 0);
    lv_router_free(r);
}

static void test_any(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "ANY /hook"), 0);
    CHECK_EQ(add(r, "GET /hook"), 0);
    lv_route_match_t m;
    CHECK_EQ(match(r, "GET /hook", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /hook");
    CHECK_EQ(match(r, "HEAD /hook", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /hook");
    CHECK_EQ(match(r, "POST /hook", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "ANY /hook");
    CHECK_EQ(match(r, "ANY /hook", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "ANY /hook");
    CHECK_EQ(match(r, "X-CUSTOM_1 /hook", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "ANY /hook");
    CHECK_EQ(match(r, "POST /hook/", &m), LV_ROUTE_NOT_FOUND);
    lv_router_free(r);
}

static void test_trailing_slash_and_odd_paths(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "GET /hello"), 0);
    CHECK_EQ(add(r, "GET /dir/"), 0);
    CHECK_EQ(add(r, "GET /p/{id}"), 0);
    lv_route_match_t m;
    CHECK_EQ(match(r, "GET /hello", &m), LV_ROUTE_FOUND);
    CHECK_EQ(match(r, "GET /hello/", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /dir/", &m), LV_ROUTE_FOUND);
    CHECK_EQ(match(r, "GET /dir", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /dir//", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /p/", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /p/1/", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET //hello", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /HELLO", &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(match(r, "GET /", &m), LV_ROUTE_NOT_FOUND);
    /* empty, relative, NULL */
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), LV_SLICE_LIT(""), &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), LV_SLICE_LIT("hello"), &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice(NULL, 0), &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(lv_router_match(r, lv_slice(NULL, 0), LV_SLICE_LIT("/hello"), &m), LV_ROUTE_METHOD_NOT_ALLOWED);
    /* an embedded NUL is just a byte */
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice("/hello\0x", 8), &m), LV_ROUTE_NOT_FOUND);
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice("/p/a\0b", 6), &m), LV_ROUTE_FOUND);
    CHECK_EQ(m.params[0].value.len, 3);
    /* the path is not read past its length */
    const char not_terminated[] = {'/', 'h', 'e', 'l', 'l', 'o'};
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice(not_terminated, sizeof(not_terminated)), &m),
             LV_ROUTE_FOUND);
    lv_router_free(r);
}

static void test_star_matches_empty_rest(void)
{
    lv_router_t *r = lv_router_new();
    CHECK_EQ(add(r, "GET /*"), 0);
    CHECK_EQ(add(r, "GET /static/*"), 0);
    lv_route_match_t m;
    const char *path = "/static/";
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice_cstr(path), &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /static/*");
    CHECK_EQ(m.rest.len, 0);
    CHECK(m.rest.ptr == path + 8);
    CHECK_EQ(match(r, "GET /", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /*");
    CHECK_SLICE(m.rest, "");
    CHECK_EQ(match(r, "GET /static", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /*");
    CHECK_SLICE(m.rest, "static");
    CHECK_EQ(match(r, "GET /static//x/", &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "GET /static/*");
    CHECK_SLICE(m.rest, "/x/");
    lv_router_free(r);
}

static void check_rejected(const char *method, const char *pattern, const char *want_in_message)
{
    lv_router_t *r = lv_router_new();
    char err[256] = "";
    CHECK_EQ(lv_router_add(r, method, pattern, NULL, err, sizeof(err)), -1);
    if (!strstr(err, want_in_message)) {
        fprintf(stderr, "  %s %s: message \"%s\" lacks \"%s\"\n", method ? method : "(null)",
                pattern ? pattern : "(null)", err, want_in_message);
        CHECK(strstr(err, want_in_message));
    }
    /* the failed add left nothing behind */
    lv_route_match_t m;
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), LV_SLICE_LIT("/"), &m), LV_ROUTE_NOT_FOUND);
    lv_router_free(r);
}

static void test_invalid_patterns(void)
{
    check_rejected("GET", "", "empty pattern");
    check_rejected("GET", NULL, "empty pattern");
    check_rejected("GET", "hello", "must start with '/'");
    check_rejected("GET", "/a//b", "empty segment");
    check_rejected("GET", "//", "empty segment");
    check_rejected("GET", "/a/*/b", "'*' must be the last segment");
    check_rejected("GET", "/a*", "'*' must be a whole segment");
    check_rejected("GET", "/a/*x", "'*' must be a whole segment");
    check_rejected("GET", "/a/{}", "whole segment written {name}");
    check_rejected("GET", "/a/{id", "whole segment written {name}");
    check_rejected("GET", "/a/x{id}", "whole segment written {name}");
    check_rejected("GET", "/a/{id}x", "whole segment written {name}");
    check_rejected("GET", "/a/id}", "whole segment written {name}");
    check_rejected("GET", "/a/{1d}", "parameter name \"1d\"");
    check_rejected("GET", "/a/{i-d}", "parameter name \"i-d\"");
    check_rejected("GET", "/a/{id}/{id}", "parameter {id} appears twice");
    check_rejected("GET", "/a b", "pattern \"/a?b\": byte 0x20");
    check_rejected("GET", "/a\nb", "pattern \"/a?b\": byte 0x0A");
    check_rejected("GE\nT", "/a", "invalid method \"GE?T\"");
    check_rejected("GET", "/a\tb", "byte 0x09");
    check_rejected("GET", "/caf\xc3\xa9", "byte 0xC3");
    check_rejected("GET", "/a?b=1", "'?' not allowed");
    check_rejected("GET", "/a#top", "'#' not allowed");
    check_rejected("GET", "/x/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}/{p10}/{p11}/{p12}/{p13}/{p14}/{p15}/{p16}/{p17}",
                   "more than 16 parameters");
    check_rejected("get", "/a", "invalid method \"get\"");
    check_rejected("", "/a", "invalid method");
    check_rejected(NULL, "/a", "invalid method");
    check_rejected("G ET", "/a", "invalid method");
    check_rejected("1GET", "/a", "invalid method");
    check_rejected("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG", "/a", "invalid method");

    char deep[LV_ROUTE_MAX_SEGMENTS * 2 + 8];
    size_t n = 0;
    for (int i = 0; i <= LV_ROUTE_MAX_SEGMENTS; i++) {
        deep[n++] = '/';
        deep[n++] = 'a';
    }
    deep[n] = '\0';
    check_rejected("GET", deep, "more than 256 segments");
    deep[n - 2] = '\0';
    lv_router_t *r = lv_router_new();
    CHECK_EQ(lv_router_add(r, "GET", deep, NULL, NULL, 0), 0);
    lv_router_free(r);

    /* a message never overflows the buffer it is given */
    r = lv_router_new();
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    CHECK_EQ(lv_router_add(r, "GET", "/a//b", NULL, tiny, sizeof(tiny)), -1);
    CHECK_EQ(strlen(tiny), 7);
    CHECK_EQ(lv_router_add(r, "GET", "/a//b", NULL, NULL, 0), -1);
    lv_router_free(r);
}

static void test_duplicates(void)
{
    lv_router_t *r = lv_router_new();
    char err[256];
    CHECK_EQ(lv_router_add(r, "GET", "/u/{id}", "a", err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "GET", "/u/{uid}", "b", err, sizeof(err)), -1);
    CHECK(strstr(err, "duplicate route GET /u/{uid} (already added as GET /u/{id})"));
    CHECK_EQ(lv_router_add(r, "GET", "/u/{id}", "b", err, sizeof(err)), -1);
    CHECK_EQ(lv_router_add(r, "POST", "/u/{uid}", "c", err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "ANY", "/u/{x}", "d", err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "ANY", "/u/{y}", "e", err, sizeof(err)), -1);
    CHECK(strstr(err, "duplicate route ANY /u/{y}"));
    CHECK_EQ(lv_router_add(r, "GET", "/u/*", "f", err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "GET", "/u/*", "g", err, sizeof(err)), -1);
    CHECK_EQ(lv_router_add(r, "GET", "/", "h", err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "GET", "/", "i", err, sizeof(err)), -1);

    /* each pattern keeps its own parameter names */
    lv_route_match_t m;
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("POST"), LV_SLICE_LIT("/u/7"), &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "c");
    CHECK_SLICE(m.params[0].name, "uid");
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), LV_SLICE_LIT("/u/7"), &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "a");
    CHECK_SLICE(m.params[0].name, "id");
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("PUT"), LV_SLICE_LIT("/u/7"), &m), LV_ROUTE_FOUND);
    CHECK_STR((const char *)m.target, "d");
    CHECK_SLICE(m.params[0].name, "x");
    lv_router_free(r);
}

static void test_method_limit(void)
{
    lv_router_t *r = lv_router_new();
    char method[16], err[256];
    /* GET brings HEAD along, so 62 more fit */
    CHECK_EQ(lv_router_add(r, "GET", "/m", NULL, err, sizeof(err)), 0);
    for (int i = 0; i < LV_ROUTE_MAX_METHODS - 2; i++) {
        snprintf(method, sizeof(method), "M%d", i);
        CHECK_EQ(lv_router_add(r, method, "/m", NULL, err, sizeof(err)), 0);
    }
    CHECK_EQ(lv_router_add(r, "ONEMORE", "/m", NULL, err, sizeof(err)), -1);
    CHECK(strstr(err, "more than 64 distinct methods"));
    CHECK_EQ(lv_router_add(r, "ANY", "/m", NULL, err, sizeof(err)), 0);
    CHECK_EQ(lv_router_add(r, "M5", "/other", NULL, err, sizeof(err)), 0);
    char allow[1024];
    size_t n = lv_router_allow(r, LV_SLICE_LIT("/m"), allow, sizeof(allow));
    CHECK(strncmp(allow, "GET, HEAD, M0, M1, M10, M11,", 28) == 0);
    CHECK_EQ(n, strlen(allow));
    lv_router_free(r);
}

static void test_thousand_routes(void)
{
    enum { N = 1000 };
    lv_router_t *r = lv_router_new();
    char pattern[64], path[64], err[256];
    for (long i = 0; i < N; i++) {
        snprintf(pattern, sizeof(pattern), "/svc%ld/items/{id}", i);
        CHECK_EQ(lv_router_add(r, "GET", pattern, (void *)(i + 1), err, sizeof(err)), 0);
        snprintf(pattern, sizeof(pattern), "/svc%ld/items/{id}", i);
        CHECK_EQ(lv_router_add(r, "DELETE", pattern, (void *)(i + 1 + N), err, sizeof(err)), 0);
        snprintf(pattern, sizeof(pattern), "/r/c%ld", i);
        CHECK_EQ(lv_router_add(r, "GET", pattern, (void *)(i + 1 + 2 * N), err, sizeof(err)), 0);
    }
    CHECK_EQ(lv_router_add(r, "GET", "/r/{code}", (void *)-1L, err, sizeof(err)), 0);
    for (long i = 0; i < N; i++) {
        lv_route_match_t m;
        snprintf(path, sizeof(path), "/svc%ld/items/x%ld", i, i);
        CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice_cstr(path), &m), LV_ROUTE_FOUND);
        CHECK_EQ((long)m.target, i + 1);
        CHECK_EQ(m.num_params, 1);
        char want[32];
        snprintf(want, sizeof(want), "x%ld", i);
        CHECK_SLICE(m.params[0].value, want);
        CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("DELETE"), lv_slice_cstr(path), &m), LV_ROUTE_FOUND);
        CHECK_EQ((long)m.target, i + 1 + N);
        CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("POST"), lv_slice_cstr(path), &m), LV_ROUTE_METHOD_NOT_ALLOWED);
        snprintf(path, sizeof(path), "/r/c%ld", i);
        CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice_cstr(path), &m), LV_ROUTE_FOUND);
        CHECK_EQ((long)m.target, i + 1 + 2 * N);
        snprintf(path, sizeof(path), "/svc%ld/items/x", i + N);
        CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), lv_slice_cstr(path), &m), LV_ROUTE_NOT_FOUND);
    }
    lv_route_match_t m;
    CHECK_EQ(lv_router_match(r, LV_SLICE_LIT("GET"), LV_SLICE_LIT("/r/c1000"), &m), LV_ROUTE_FOUND);
    CHECK_EQ((long)m.target, -1);
    char allow[64];
    lv_router_allow(r, LV_SLICE_LIT("/svc999/items/1"), allow, sizeof(allow));
    CHECK_STR(allow, "DELETE, GET, HEAD");
    lv_router_free(r);
}

int main(void)
{
    LV_RUN(test_specificity_table);
    LV_RUN(test_params_point_into_path);
    LV_RUN(test_head_uses_get);
    LV_RUN(test_404_405_and_allow);
    LV_RUN(test_any);
    LV_RUN(test_trailing_slash_and_odd_paths);
    LV_RUN(test_star_matches_empty_rest);
    LV_RUN(test_invalid_patterns);
    LV_RUN(test_duplicates);
    LV_RUN(test_method_limit);
    LV_RUN(test_thousand_routes);
    return lv_test_summary();
}
