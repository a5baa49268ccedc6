// router.h: maps a request's method and path to the route that serves it.
// (Line comments, because the patterns quoted below contain slash-star.)
//
// Routes are "METHOD /pattern". METHOD is an upper-case token (GET, POST,
// PURGE, ...) or ANY, which accepts every method. A pattern is a '/'
// followed by segments separated by '/':
//   literal   matches exactly those bytes (e.g. "hello" in /hello);
//   {name}    matches one non-empty segment; its value is reported as a
//             parameter called name (letters, digits, '_'; not starting
//             with a digit; unique within the pattern);
//   *         only as the last segment: matches the rest of the path, which
//             may be empty or contain further '/'. /events/* matches
//             /events/ (rest "") and /events/a/b (rest "a/b"), not /events.
// Examples: /hello, /r/{code}, /events/*, /users/{id}/orders/{oid}, /*.
// Literal bytes are visible ASCII other than { } * ? #; other bytes must be
// written percent-encoded, as they appear on the wire.
//
// Paths are matched as raw bytes, exactly as they arrived: no percent-
// decoding, no case folding, no dot-segment removal. The caller passes the
// path without the query string ('?' is an ordinary byte here). A path that
// is empty or does not start with '/' matches nothing.
//
// Slashes: the path is split at every '/', so a trailing slash yields an
// empty last segment and "//" an empty segment in the middle. An empty
// segment never matches {name}. A pattern may end with '/' (then it
// requires the trailing empty segment: /hello/ matches "/hello/" and not
// "/hello", and /hello matches "/hello" only), but may not contain "//";
// so a path with "//" in it can only be matched by a '*'.
//
// Which route wins. A route is a candidate when its pattern matches the
// path and its method accepts the request's method. Among candidates:
//   1. Patterns are compared segment by segment from the left; at the first
//      position where they differ in kind, literal beats {name} beats '*'.
//      (Two patterns that match the same path and have the same kind at
//      every position are the same pattern: patterns that differ only in
//      parameter names are one pattern.)
//   2. For one pattern, a route for exactly the request's method beats a
//      GET route serving a HEAD request, which beats an ANY route.
// So specificity of the path comes first: GET /users/{id} serves
// "GET /users/me" when the only /users/me route is POST, and a more
// specific GET route serves HEAD before a less specific HEAD route does.
// A HEAD request is accepted by a GET route of the same pattern when that
// pattern has no HEAD route.
//
// Results: LV_ROUTE_FOUND when there is a candidate; otherwise
// LV_ROUTE_METHOD_NOT_ALLOWED (405) when some pattern matches the path but
// none of its routes accepts the method, and LV_ROUTE_NOT_FOUND (404) when
// no pattern matches. A path matched by an ANY route is never 405.
//
// Cost: a segment trie. Matching walks the path once, looking up each
// segment among the literal children of the current node (a hash index
// when there are many), falling back to the {name} and '*' children when a
// deeper match fails. It allocates nothing and takes no lock.
//
// Ownership and threads: the router copies the method and pattern strings
// it is given; targets are opaque and never dereferenced or freed. Build the
// router on one thread with lv_router_add, then share it read-only:
// lv_router_match and lv_router_allow are safe from any number of threads
// as long as nobody adds routes or frees the router meanwhile.
#ifndef LV_GATEWAY_ROUTER_H
#define LV_GATEWAY_ROUTER_H

#include <stddef.h>

#include "core/slice.h"

typedef struct lv_router lv_router_t;

/* Most {name} segments one pattern may have. */
#define LV_ROUTE_MAX_PARAMS 16

/* Most segments in one pattern, and most distinct methods in one router
 * (ANY not counted; HEAD counts once a GET route exists). */
#define LV_ROUTE_MAX_SEGMENTS 256
#define LV_ROUTE_MAX_METHODS 64

/* One captured parameter. name points into the router (valid until
 * lv_router_free), value into the matched path (valid as long as the path). */
typedef struct {
    lv_slice_t name, value;
} lv_route_param_t;

/* Filled by lv_router_match. Parameters appear in pattern order. */
typedef struct {
    void *target;                                  /* as given to lv_router_add */
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    size_t num_params;
    lv_slice_t rest;                               /* what a trailing * matched ("" if none) */
} lv_route_match_t;

typedef enum { LV_ROUTE_FOUND, LV_ROUTE_NOT_FOUND, LV_ROUTE_METHOD_NOT_ALLOWED } lv_route_result_t;

/* An empty router (matches nothing). Free with lv_router_free. */
lv_router_t *lv_router_new(void);

/* Adds the route "method pattern" serving target. The method is ANY or 1 to
 * 32 characters of A-Z, 0-9, '-' and '_' starting with a letter. Returns 0,
 * or -1 with a message in err (NUL-terminated, truncated to errlen) when
 * the method or pattern is invalid, when the same method and pattern were already added
 * (patterns differing only in parameter names are the same pattern), or
 * when a limit above would be exceeded. A failed add leaves the router as
 * it was. Not thread-safe: call before sharing the router. */
int lv_router_add(lv_router_t *r, const char *method, const char *pattern, void *target, char *err,
                  size_t errlen);

/* Finds the route for method and path (see the rules above) and fills *m:
 * on LV_ROUTE_FOUND its target, parameters and rest; on the other results
 * target is NULL, num_params 0 and rest empty. The method is compared
 * case-sensitively, as HTTP methods are. */
lv_route_result_t lv_router_match(const lv_router_t *r, lv_slice_t method, lv_slice_t path,
                                  lv_route_match_t *m);

/* Writes the Allow header value for path into buf: every method named by a
 * route whose pattern matches the path, sorted, unique, with HEAD included
 * whenever GET is, e.g. "GET, HEAD, POST". ANY routes add nothing (a path
 * they match is never 405). The result is NUL-terminated; when buf is too
 * small, whole method names that do not fit are left out. Returns the
 * length written (0 when no route matches the path or buflen is 0). */
size_t lv_router_allow(const lv_router_t *r, lv_slice_t path, char *buf, size_t buflen);

/* Releases the router and everything it copied. NULL is fine. */
void lv_router_free(lv_router_t *r);

#endif
