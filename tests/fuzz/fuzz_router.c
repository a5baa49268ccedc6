/* fuzz_router.c: libFuzzer driver for the router, checked against a
 * brute-force model of router.h's rules.
 *
 * Input: lines. A line starting with '+' adds a route, any other line is a
 * request. The second byte picks the method (see pick_method); the rest of
 * the line is the pattern or the path. Each request path is copied into a
 * buffer of exactly its length, so reading past it is caught.
 *
 * The model keeps every route the router accepted and, for each request,
 * tries them all: a pattern matches when its segments match the path's
 * (literal: same bytes; {name}: non-empty; a final '*': whatever is left,
 * as long as the path reaches that segment); the winner is the matching
 * route with the smallest sequence of segment kinds (literal < {name} <
 * '*'), then the best method rank (exact, GET for HEAD, ANY). The driver
 * requires the router to agree on the result, the target, every parameter
 * (same pointer into the path), the rest, and the Allow list; and to reject
 * a route exactly when the model sees a duplicate of an accepted one. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/router.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROUTES 64
#define MAX_REQUESTS 64
#define MAX_LINE 512

enum { K_LITERAL, K_PARAM, K_STAR };

typedef struct {
    char method[40];
    char pattern[MAX_LINE + 1];
    int kinds[LV_ROUTE_MAX_SEGMENTS];
    lv_slice_t segs[LV_ROUTE_MAX_SEGMENTS]; /* literal bytes or parameter name */
    size_t nsegs;
} model_route_t;

static model_route_t routes[MAX_ROUTES];

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "ANY", "DELETE", "OPTIONS"};
#define NUM_METHODS (sizeof(methods) / sizeof(*methods))

/* Chooses the method for a line from its second byte; one value in eight
 * takes the method from the text up to the first space instead, to reach
 * invalid and unusual methods. Returns the rest of the line. */
static const char *pick_method(const char *line, size_t len, char *method, size_t *rest_len)
{
    if (len < 1) {
        strcpy(method, "GET");
        *rest_len = 0;
        return line;
    }
    unsigned char sel = (unsigned char)line[0];
    if (sel % 8 < NUM_METHODS) {
        strcpy(method, methods[sel % 8]);
        *rest_len = len - 1;
        return line + 1;
    }
    const char *sp = memchr(line + 1, ' ', len - 1);
    size_t mlen = sp ? (size_t)(sp - line - 1) : len - 1;
    if (mlen > 39)
        mlen = 39;
    memcpy(method, line + 1, mlen);
    method[mlen] = '\0';
    const char *rest = sp ? sp + 1 : line + len;
    *rest_len = (size_t)(line + len - rest);
    return rest;
}

/* Splits an accepted pattern (already validated by the router). */
static void model_split(model_route_t *mr)
{
    mr->nsegs = 0;
    const char *p = mr->pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 1 && p[0] == '*') {
            mr->kinds[mr->nsegs] = K_STAR;
            mr->segs[mr->nsegs] = lv_slice(p, 0);
        } else if (len >= 2 && p[0] == '{') {
            mr->kinds[mr->nsegs] = K_PARAM;
            mr->segs[mr->nsegs] = lv_slice(p + 1, len - 2);
        } else {
            mr->kinds[mr->nsegs] = K_LITERAL;
            mr->segs[mr->nsegs] = lv_slice(p, len);
        }
        mr->nsegs++;
        if (!end)
            break;
        p = end + 1;
    }
}

static bool same_shape(const model_route_t *a, const model_route_t *b)
{
    if (a->nsegs != b->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++) {
        if (a->kinds[i] != b->kinds[i])
            return false;
        if (a->kinds[i] == K_LITERAL && !lv_slice_eq(a->segs[i], b->segs[i]))
            return false;
    }
    return true;
}

/* The model's match of one route against a path. */
typedef struct {
    lv_slice_t values[LV_ROUTE_MAX_PARAMS];
    size_t nvalues;
    lv_slice_t rest;
} model_match_t;

static bool model_match(const model_route_t *mr, lv_slice_t path, model_match_t *mm)
{
    if (path.len == 0 || path.ptr[0] != '/')
        return false;
    mm->nvalues = 0;
    mm->rest = lv_slice(path.ptr + path.len, 0);
    size_t pos = 1;
    for (size_t i = 0; i < mr->nsegs; i++) {
        if (mr->kinds[i] == K_STAR) {
            mm->rest = lv_slice(path.ptr + pos, path.len - pos);
            return true;
        }
        const char *slash = memchr(path.ptr + pos, '/', path.len - pos);
        size_t end = slash ? (size_t)(slash - path.ptr) : path.len;
        lv_slice_t seg = lv_slice(path.ptr + pos, end - pos);
        bool last_pattern = i + 1 == mr->nsegs;
        if (last_pattern != !slash)
            return false;
        if (mr->kinds[i] == K_LITERAL && !lv_slice_eq(seg, mr->segs[i]))
            return false;
        if (mr->kinds[i] == K_PARAM) {
            if (seg.len == 0)
                return false;
            mm->values[mm->nvalues++] = seg;
        }
        pos = end + 1;
    }
    return true;
}

/* <0 when a is more specific than b. */
static int compare_kinds(const model_route_t *a, const model_route_t *b)
{
    for (size_t i = 0; i < a->nsegs && i < b->nsegs; i++)
        if (a->kinds[i] != b->kinds[i])
            return a->kinds[i] - b->kinds[i];
    return (int)a->nsegs - (int)b->nsegs;
}

/* 0 exact, 1 GET serving HEAD, 2 ANY, -1 not accepted. */
static int method_rank(const char *route_method, const char *request_method)
{
    if (strcmp(route_method, "ANY") == 0)
        return 2;
    if (strcmp(route_method, request_method) == 0)
        return 0;
    if (strcmp(request_method, "HEAD") == 0 && strcmp(route_method, "GET") == 0)
        return 1;
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void check_request(const lv_router_t *r, size_t nroutes, const char *method, lv_slice_t path)
{
    int best = -1, best_rank = 3;
    bool path_matched = false;
    model_match_t mm, best_mm;
    const char *allow[MAX_ROUTES + 1];
    size_t nallow = 0;
    bool allow_get = false;
    for (size_t i = 0; i < nroutes; i++) {
        if (!model_match(&routes[i], path, &mm))
            continue;
        path_matched = true;
        if (strcmp(routes[i].method, "ANY") != 0) {
            bool seen = false;
            for (size_t k = 0; k < nallow; k++)
                seen |= strcmp(allow[k], routes[i].method) == 0;
            if (!seen)
                allow[nallow++] = routes[i].method;
            allow_get |= strcmp(routes[i].method, "GET") == 0;
        }
        int rank = method_rank(routes[i].method, method);
        if (rank < 0)
            continue;
        int c = best < 0 ? -1 : compare_kinds(&routes[i], &routes[best]);
        if (c < 0 || (c == 0 && rank < best_rank)) {
            best = (int)i;
            best_rank = rank;
            best_mm = mm;
        }
    }

    lv_route_match_t m;
    memset(&m, 0xa5, sizeof(m));
    lv_route_result_t res = lv_router_match(r, lv_slice_cstr(method), path, &m);
    if (best >= 0) {
        REQUIRE(res == LV_ROUTE_FOUND);
        REQUIRE(m.target == &routes[best]);
        REQUIRE(m.num_params == best_mm.nvalues);
        size_t k = 0;
        for (size_t i = 0; i < routes[best].nsegs; i++) {
            if (routes[best].kinds[i] != K_PARAM)
                continue;
            REQUIRE(lv_slice_eq(m.params[k].name, routes[best].segs[i]));
            REQUIRE(m.params[k].value.ptr == best_mm.values[k].ptr);
            REQUIRE(m.params[k].value.len == best_mm.values[k].len);
            REQUIRE(m.params[k].value.ptr >= path.ptr && m.params[k].value.ptr + m.params[k].value.len <= path.ptr + path.len);
            k++;
        }
        REQUIRE(m.rest.ptr == best_mm.rest.ptr && m.rest.len == best_mm.rest.len);
    } else {
        REQUIRE(res == (path_matched ? LV_ROUTE_METHOD_NOT_ALLOWED : LV_ROUTE_NOT_FOUND));
        REQUIRE(m.target == NULL && m.num_params == 0 && m.rest.len == 0);
    }

    if (allow_get) {
        bool seen = false;
        for (size_t k = 0; k < nallow; k++)
            seen |= strcmp(allow[k], "HEAD") == 0;
        if (!seen)
            allow[nallow++] = "HEAD";
    }
    qsort(allow, nallow, sizeof(*allow), cmp_str);
    char want[(MAX_ROUTES + 1) * 42] = "", got[sizeof(want)];
    for (size_t k = 0; k < nallow; k++) {
        if (k)
            strcat(want, ", ");
        strcat(want, allow[k]);
    }
    size_t n = lv_router_allow(r, path, got, sizeof(got));
    REQUIRE(n == strlen(got));
    REQUIRE(strcmp(got, want) == 0);
    /* a short buffer still gets a NUL and never more than fits */
    char small[8];
    n = lv_router_allow(r, path, small, sizeof(small));
    REQUIRE(n < sizeof(small) && n == strlen(small));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lv_router_t *r = lv_router_new();
    size_t nroutes = 0, nrequests = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (len > MAX_LINE)
            continue;
        char method[40];
        size_t rest_len;
        if (len > 0 && line[0] == '+') {
            if (nroutes == MAX_ROUTES)
                continue;
            model_route_t *mr = &routes[nroutes];
            const char *rest = pick_method(line + 1, len - 1, method, &rest_len);
            /* Patterns are C strings: an embedded NUL ends one. */
            memcpy(mr->pattern, rest, rest_len);
            mr->pattern[rest_len] = '\0';
            strcpy(mr->method, method);
            char err[160];
            int rc = lv_router_add(r, method, mr->pattern, mr, err, sizeof(err));
            if (rc != 0) {
                /* The model does not re-implement validation; the loop
                 * below checks that duplicates are among the refusals. */
                REQUIRE(err[0] != '\0' && strlen(err) < sizeof(err));
                continue;
            }
            model_split(mr);
            for (size_t i = 0; i < nroutes; i++)
                REQUIRE(!(strcmp(routes[i].method, mr->method) == 0 && same_shape(&routes[i], mr)));
            nroutes++;
        } else {
            if (nrequests++ == MAX_REQUESTS)
                break;
            const char *rest = pick_method(line, len, method, &rest_len);
            char *path = malloc(rest_len ? rest_len : 1);
            memcpy(path, rest, rest_len);
            check_request(r, nroutes, method, lv_slice(path, rest_len));
            free(path);
        }
    }
    /* Every accepted route is refused when added again, and a path built
     * from its pattern gets the model's answer (the route itself or a more
     * specific one), which random paths rarely reach. */
    for (size_t i = 0; i < nroutes; i++) {
        char err[160];
        REQUIRE(lv_router_add(r, routes[i].method, routes[i].pattern, NULL, err, sizeof(err)) == -1);
        REQUIRE(strstr(err, "duplicate route") != NULL);

        char path[2 * MAX_LINE + 8];
        size_t n = 0;
        for (size_t k = 0; k < routes[i].nsegs; k++) {
            path[n++] = '/';
            if (routes[i].kinds[k] == K_LITERAL) {
                memcpy(path + n, routes[i].segs[k].ptr, routes[i].segs[k].len);
                n += routes[i].segs[k].len;
            } else if (routes[i].kinds[k] == K_PARAM) {
                path[n++] = 'p';
            } else {
                memcpy(path + n, "s/t", 3);
                n += 3;
            }
        }
        char *exact = malloc(n);
        memcpy(exact, path, n);
        lv_route_match_t m;
        REQUIRE(lv_router_match(r, lv_slice_cstr(routes[i].method), lv_slice(exact, n), &m) == LV_ROUTE_FOUND);
        check_request(r, nroutes, routes[i].method, lv_slice(exact, n));
        free(exact);
    }
    lv_router_free(r);
    return 0;
}
