/* router.c: the segment trie behind router.h.
 *
 * Each trie node stands for a sequence of pattern segments from the root.
 * A node has up to three kinds of children: literal edges (one per distinct
 * literal segment), one {param} child shared by every parameter name, and
 * one '*' child, which is always a leaf. Routes hang off the node where
 * their pattern ends, one per method.
 *
 * Matching is a depth-first walk that tries, at every segment, the literal
 * child first, then the {param} child, then '*'; the first node reached in
 * that order that has a route accepting the method is the answer. Because
 * the order of trial is literal < {param} < '*' at each position from the
 * left, the first hit is exactly the most specific route as defined in
 * router.h, without ranking routes against each other. Every node has one
 * depth and one parent, so a walk visits each node at most once: the cost is
 * bounded by the path's segments times the (usually tiny) amount of
 * backtracking the route set allows, never by a scan over all routes.
 *
 * Methods are interned into at most 64 ids so that the set of methods
 * allowed at a node is one 64-bit mask, which makes the Allow header a few
 * OR operations. */
#include "gateway/router.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/mem.h"

#define METHOD_MAX_LEN 32
/* Method ids are 0..LV_ROUTE_MAX_METHODS-1; these two are outside that. */
#define ANY_METHOD LV_ROUTE_MAX_METHODS
#define NO_METHOD (-1)
/* Up to this many literal children are found by a linear scan, which beats
 * hashing for the short fan-outs most nodes have. */
#define LINEAR_EDGES_MAX 8

typedef struct node node_t;

/* One route at the node where its pattern ends. Owns pattern; param_names
 * point into it. */
typedef struct {
    int method;
    void *target;
    char *pattern;
    lv_slice_t param_names[LV_ROUTE_MAX_PARAMS];
    size_t num_params;
} route_t;

/* A literal child. Owns seg (NUL-terminated copy) and child. */
typedef struct {
    char *seg;
    size_t len;
    node_t *child;
} edge_t;

struct node {
    edge_t *edges;
    size_t num_edges, edges_cap;
    uint32_t *index;     /* open addressing: edge number + 1, 0 free; NULL while few edges */
    size_t index_cap;    /* power of two, at least twice num_edges */
    node_t *param;
    node_t *star;        /* a leaf: its routes take whatever is left of the path */
    route_t *routes;
    size_t num_routes;
    uint64_t allow_mask; /* ids of the explicit methods routed here, HEAD with GET */
};

struct lv_router {
    node_t root;
    char *methods[LV_ROUTE_MAX_METHODS];
    size_t method_lens[LV_ROUTE_MAX_METHODS];
    int sorted_methods[LV_ROUTE_MAX_METHODS]; /* ids in name order, for Allow */
    size_t num_methods;
    int get_id, head_id;
};

typedef enum { SEG_LITERAL, SEG_PARAM, SEG_STAR } seg_kind_t;

/* A pattern segment, pointing into the pattern string; for SEG_PARAM the
 * bytes are the parameter's name without braces. */
typedef struct {
    seg_kind_t kind;
    const char *ptr;
    size_t len;
} seg_t;

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Text quoted in messages is cut short, so that the problem itself, which
 * comes after, still fits in a typical error buffer, and bytes that are not
 * visible ASCII become '?', so that a message cannot break a log line. */
#define SHOWN_MAX 60

static const char *shown(const char *s, char out[SHOWN_MAX + 4])
{
    size_t n = 0;
    for (; s[n] && n < SHOWN_MAX; n++)
        out[n] = (s[n] > 0x20 && s[n] < 0x7f) ? s[n] : '?';
    strcpy(out + n, s[n] ? "..." : "");
    return out;
}

static void pattern_err(char *err, size_t errlen, const char *pattern, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void pattern_err(char *err, size_t errlen, const char *pattern, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    char quoted[SHOWN_MAX + 4];
    int n = snprintf(err, errlen, "pattern \"%s\": ", shown(pattern, quoted));
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- building ---------------------------------------------------------- */

lv_router_t *lv_router_new(void)
{
    lv_router_t *r = lv_calloc(1, sizeof(*r));
    r->get_id = r->head_id = NO_METHOD;
    return r;
}

static bool valid_method(const char *m, size_t len)
{
    if (len == 0 || len > METHOD_MAX_LEN || m[0] < 'A' || m[0] > 'Z')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = m[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int find_method(const lv_router_t *r, const char *m, size_t len)
{
    for (size_t i = 0; i < r->num_methods; i++)
        if (r->method_lens[i] == len && memcmp(r->methods[i], m, len) == 0)
            return (int)i;
    return NO_METHOD;
}

/* The caller has checked that there is room. */
static int intern_method(lv_router_t *r, const char *m)
{
    size_t len = strlen(m);
    int id = find_method(r, m, len);
    if (id != NO_METHOD)
        return id;
    id = (int)r->num_methods++;
    r->methods[id] = lv_strdup(m);
    r->method_lens[id] = len;
    /* Insertion keeps sorted_methods in name order; at most 64 entries. */
    size_t pos = (size_t)id;
    while (pos > 0 && strcmp(r->methods[r->sorted_methods[pos - 1]], m) > 0) {
        r->sorted_methods[pos] = r->sorted_methods[pos - 1];
        pos--;
    }
    r->sorted_methods[pos] = id;
    if (strcmp(m, "GET") == 0)
        r->get_id = id;
    else if (strcmp(m, "HEAD") == 0)
        r->head_id = id;
    return id;
}

static bool param_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* Splits and validates a pattern. Returns the number of segments, or -1
 * with err set. */
static int parse_pattern(const char *pattern, seg_t *segs, size_t *num_params, char *err, size_t errlen)
{
    if (!pattern || !*pattern) {
        set_err(err, errlen, "empty pattern");
        return -1;
    }
    if (pattern[0] != '/') {
        pattern_err(err, errlen, pattern, "must start with '/'");
        return -1;
    }
    size_t nsegs = 0, nparams = 0;
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        bool last = !end;
        if (last)
            end = p + strlen(p);
        size_t len = (size_t)(end - p);
        if (nsegs == LV_ROUTE_MAX_SEGMENTS) {
            pattern_err(err, errlen, pattern, "more than %d segments", LV_ROUTE_MAX_SEGMENTS);
            return -1;
        }
        seg_t *s = &segs[nsegs++];
        *s = (seg_t){SEG_LITERAL, p, len};
        if (len == 0 && !last) {
            pattern_err(err, errlen, pattern, "empty segment (\"//\")");
            return -1;
        }
        if (len == 1 && p[0] == '*') {
            if (!last) {
                pattern_err(err, errlen, pattern, "'*' must be the last segment");
                return -1;
            }
            s->kind = SEG_STAR;
        } else if (len > 0 && p[0] == '{') {
            if (len < 3 || p[len - 1] != '}') {
                pattern_err(err, errlen, pattern, "a parameter is a whole segment written {name}");
                return -1;
            }
            s->kind = SEG_PARAM;
            s->ptr = p + 1;
            s->len = len - 2;
            for (size_t i = 0; i < s->len; i++) {
                if (!param_name_char(s->ptr[i], i == 0)) {
                    pattern_err(err, errlen, pattern,
                                "parameter name \"%.*s\" must be letters, digits and '_', not starting with a digit",
                                (int)(s->len < 40 ? s->len : 40), s->ptr);
                    return -1;
                }
            }
            for (size_t i = 0; i + 1 < nsegs; i++) {
                if (segs[i].kind == SEG_PARAM && segs[i].len == s->len && memcmp(segs[i].ptr, s->ptr, s->len) == 0) {
                    pattern_err(err, errlen, pattern, "parameter {%.*s} appears twice",
                                (int)(s->len < 40 ? s->len : 40), s->ptr);
                    return -1;
                }
            }
            if (++nparams > LV_ROUTE_MAX_PARAMS) {
                pattern_err(err, errlen, pattern, "more than %d parameters", LV_ROUTE_MAX_PARAMS);
                return -1;
            }
        } else {
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c == '{' || c == '}') {
                    pattern_err(err, errlen, pattern, "a parameter is a whole segment written {name}");
                    return -1;
                }
                if (c == '*') {
                    pattern_err(err, errlen, pattern, "'*' must be a whole segment");
                    return -1;
                }
                if (c == '?' || c == '#') {
                    pattern_err(err, errlen, pattern, "'%c' not allowed (only the path is matched)", c);
                    return -1;
                }
                if (c <= 0x20 || c >= 0x7f) {
                    pattern_err(err, errlen, pattern, "byte 0x%02X not allowed (write it percent-encoded)", c);
                    return -1;
                }
            }
        }
        if (last)
            break;
        p = end + 1;
    }
    *num_params = nparams;
    return (int)nsegs;
}

static node_t *find_edge(const node_t *n, const char *seg, size_t len)
{
    if (n->index) {
        size_t mask = n->index_cap - 1;
        for (size_t i = (size_t)XXH3_64bits(seg, len) & mask;; i = (i + 1) & mask) {
            uint32_t e = n->index[i];
            if (e == 0)
                return NULL;
            const edge_t *ed = &n->edges[e - 1];
            if (ed->len == len && memcmp(ed->seg, seg, len) == 0)
                return ed->child;
        }
    }
    for (size_t i = 0; i < n->num_edges; i++)
        if (n->edges[i].len == len && memcmp(n->edges[i].seg, seg, len) == 0)
            return n->edges[i].child;
    return NULL;
}

static void index_insert(node_t *n, size_t edge_no)
{
    const edge_t *ed = &n->edges[edge_no];
    size_t mask = n->index_cap - 1;
    size_t i = (size_t)XXH3_64bits(ed->seg, ed->len) & mask;
    while (n->index[i])
        i = (i + 1) & mask;
    n->index[i] = (uint32_t)(edge_no + 1);
}

static node_t *add_edge(node_t *n, const char *seg, size_t len)
{
    if (n->num_edges == n->edges_cap) {
        n->edges_cap = n->edges_cap ? n->edges_cap * 2 : 4;
        n->edges = lv_realloc(n->edges, n->edges_cap * sizeof(*n->edges));
    }
    edge_t *ed = &n->edges[n->num_edges++];
    ed->seg = lv_memdup0(seg, len);
    ed->len = len;
    ed->child = lv_calloc(1, sizeof(node_t));
    if (n->num_edges > LINEAR_EDGES_MAX) {
        /* Keep the index at most half full so probes stay short. */
        if (n->num_edges * 2 > n->index_cap) {
            free(n->index);
            n->index_cap = 32;
            while (n->index_cap < n->num_edges * 4)
                n->index_cap *= 2;
            n->index = lv_calloc(n->index_cap, sizeof(*n->index));
            for (size_t i = 0; i < n->num_edges; i++)
                index_insert(n, i);
        } else {
            index_insert(n, n->num_edges - 1);
        }
    }
    return ed->child;
}

/* Follows segs from the root; with create, makes missing nodes, otherwise
 * returns NULL when one is missing. */
static node_t *walk_pattern(lv_router_t *r, const seg_t *segs, size_t nsegs, bool create)
{
    node_t *n = &r->root;
    for (size_t i = 0; i < nsegs && n; i++) {
        node_t *next;
        switch (segs[i].kind) {
        case SEG_LITERAL:
            next = find_edge(n, segs[i].ptr, segs[i].len);
            if (!next && create)
                next = add_edge(n, segs[i].ptr, segs[i].len);
            break;
        case SEG_PARAM:
            if (!n->param && create)
                n->param = lv_calloc(1, sizeof(node_t));
            next = n->param;
            break;
        default:
            if (!n->star && create)
                n->star = lv_calloc(1, sizeof(node_t));
            next = n->star;
            break;
        }
        n = next;
    }
    return n;
}

int lv_router_add(lv_router_t *r, const char *method, const char *pattern, void *target, char *err,
                  size_t errlen)
{
    if (!method || !valid_method(method, strlen(method))) {
        char quoted[SHOWN_MAX + 4];
        set_err(err, errlen, "invalid method \"%s\": expected an upper-case token such as GET, or ANY",
                shown(method ? method : "", quoted));
        return -1;
    }
    seg_t segs[LV_ROUTE_MAX_SEGMENTS];
    size_t nparams;
    int nsegs = parse_pattern(pattern, segs, &nparams, err, errlen);
    if (nsegs < 0)
        return -1;

    bool is_any = strcmp(method, "ANY") == 0;
    int id = is_any ? ANY_METHOD : find_method(r, method, strlen(method));
    size_t new_methods = 0;
    if (!is_any) {
        new_methods += id == NO_METHOD;
        if (strcmp(method, "GET") == 0 && r->head_id == NO_METHOD)
            new_methods++;
    }
    if (r->num_methods + new_methods > LV_ROUTE_MAX_METHODS) {
        char quoted[SHOWN_MAX + 4];
        set_err(err, errlen, "%s %s: more than %d distinct methods", method, shown(pattern, quoted),
                LV_ROUTE_MAX_METHODS);
        return -1;
    }
    const node_t *existing = walk_pattern(r, segs, (size_t)nsegs, false);
    if (existing && id != NO_METHOD) {
        for (size_t i = 0; i < existing->num_routes; i++) {
            if (existing->routes[i].method == id) {
                char quoted[SHOWN_MAX + 4], earlier[SHOWN_MAX + 4];
                set_err(err, errlen, "duplicate route %s %s (already added as %s %s)", method,
                        shown(pattern, quoted), method, shown(existing->routes[i].pattern, earlier));
                return -1;
            }
        }
    }

    /* Everything is checked: from here on the add cannot fail. */
    if (!is_any) {
        id = intern_method(r, method);
        if (id == r->get_id)
            intern_method(r, "HEAD");
    }
    node_t *n = walk_pattern(r, segs, (size_t)nsegs, true);
    n->routes = lv_realloc(n->routes, (n->num_routes + 1) * sizeof(*n->routes));
    route_t *rt = &n->routes[n->num_routes++];
    rt->method = id;
    rt->target = target;
    rt->pattern = lv_strdup(pattern);
    rt->num_params = 0;
    for (int i = 0; i < nsegs; i++)
        if (segs[i].kind == SEG_PARAM)
            rt->param_names[rt->num_params++] = lv_slice(rt->pattern + (segs[i].ptr - pattern), segs[i].len);
    if (!is_any) {
        n->allow_mask |= UINT64_C(1) << id;
        if (id == r->get_id)
            n->allow_mask |= UINT64_C(1) << r->head_id;
    }
    return 0;
}

/* ---- matching ---------------------------------------------------------- */

/* State of one walk over a request path. */
typedef struct {
    const lv_router_t *r;
    const char *path;
    size_t len;
    int method;          /* interned id, or NO_METHOD when no route names it */
    bool is_head;
    bool path_matched;   /* some node with routes matched the whole path */
    uint64_t allow_mask; /* lv_router_allow: union over every matching node */
    bool collect_all;    /* lv_router_allow: visit every match, pick none */
    lv_slice_t values[LV_ROUTE_MAX_PARAMS];
    size_t num_values;
    lv_route_match_t *m;
} walk_t;

static const route_t *pick_route(const walk_t *w, const node_t *n)
{
    const route_t *exact = NULL, *get = NULL, *any = NULL;
    for (size_t i = 0; i < n->num_routes; i++) {
        const route_t *rt = &n->routes[i];
        if (rt->method == w->method && w->method != NO_METHOD)
            exact = rt;
        else if (w->is_head && rt->method == w->r->get_id)
            get = rt;
        else if (rt->method == ANY_METHOD)
            any = rt;
    }
    return exact ? exact : get ? get : any;
}

/* The path ends at node n; rest_at is where a '*' took over (or len).
 * Returns true when the walk should stop. */
static bool arrive(walk_t *w, const node_t *n, size_t rest_at)
{
    if (n->num_routes == 0)
        return false;
    w->path_matched = true;
    if (w->collect_all) {
        w->allow_mask |= n->allow_mask;
        return false;
    }
    const route_t *rt = pick_route(w, n);
    if (!rt)
        return false;
    lv_route_match_t *m = w->m;
    m->target = rt->target;
    /* Every parameter on the way here belongs to this pattern, so the
     * counts agree; the min only guards the array bounds. */
    m->num_params = rt->num_params < w->num_values ? rt->num_params : w->num_values;
    for (size_t i = 0; i < m->num_params; i++) {
        m->params[i].name = rt->param_names[i];
        m->params[i].value = w->values[i];
    }
    m->rest = lv_slice(w->path + rest_at, w->len - rest_at);
    return true;
}

/* Matches the segment starting at pos (just after a '/') and what follows
 * against the children of n, most specific first. */
static bool walk(walk_t *w, const node_t *n, size_t pos)
{
    const char *seg = w->path + pos;
    const char *slash = memchr(seg, '/', w->len - pos);
    size_t seg_len = slash ? (size_t)(slash - seg) : w->len - pos;
    size_t next = pos + seg_len + 1;

    const node_t *child = find_edge(n, seg, seg_len);
    if (child && (slash ? walk(w, child, next) : arrive(w, child, w->len)))
        return true;
    if (n->param && seg_len > 0 && w->num_values < LV_ROUTE_MAX_PARAMS) {
        w->values[w->num_values++] = lv_slice(seg, seg_len);
        if (slash ? walk(w, n->param, next) : arrive(w, n->param, w->len))
            return true;
        w->num_values--;
    }
    if (n->star && arrive(w, n->star, pos))
        return true;
    return false;
}

static void walk_init(walk_t *w, const lv_router_t *r, lv_slice_t method, lv_slice_t path)
{
    w->r = r;
    w->path = path.ptr;
    w->len = path.len;
    w->method = method.ptr ? find_method(r, method.ptr, method.len) : NO_METHOD;
    w->is_head = lv_slice_eq(method, LV_SLICE_LIT("HEAD"));
    w->path_matched = false;
    w->allow_mask = 0;
    w->collect_all = false;
    w->num_values = 0;
    w->m = NULL;
}

static bool path_walkable(lv_slice_t path)
{
    return path.ptr && path.len > 0 && path.ptr[0] == '/';
}

lv_route_result_t lv_router_match(const lv_router_t *r, lv_slice_t method, lv_slice_t path, lv_route_match_t *m)
{
    m->target = NULL;
    m->num_params = 0;
    m->rest = lv_slice("", 0);
    if (!path_walkable(path))
        return LV_ROUTE_NOT_FOUND;
    walk_t w;
    walk_init(&w, r, method, path);
    w.m = m;
    if (walk(&w, &r->root, 1))
        return LV_ROUTE_FOUND;
    m->target = NULL;
    m->num_params = 0;
    m->rest = lv_slice("", 0);
    return w.path_matched ? LV_ROUTE_METHOD_NOT_ALLOWED : LV_ROUTE_NOT_FOUND;
}

size_t lv_router_allow(const lv_router_t *r, lv_slice_t path, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return 0;
    buf[0] = '\0';
    if (!path_walkable(path))
        return 0;
    walk_t w;
    walk_init(&w, r, lv_slice(NULL, 0), path);
    w.collect_all = true;
    walk(&w, &r->root, 1);

    size_t out = 0;
    for (size_t i = 0; i < r->num_methods; i++) {
        int id = r->sorted_methods[i];
        if (!(w.allow_mask & (UINT64_C(1) << id)))
            continue;
        size_t sep = out ? 2 : 0, len = r->method_lens[id];
        if (out + sep + len + 1 > buflen)
            break;
        memcpy(buf + out, ", ", sep);
        memcpy(buf + out + sep, r->methods[id], len);
        out += sep + len;
    }
    buf[out] = '\0';
    return out;
}

/* ---- teardown ---------------------------------------------------------- */

/* Recursion depth is bounded by LV_ROUTE_MAX_SEGMENTS. */
static void node_free(node_t *n)
{
    for (size_t i = 0; i < n->num_edges; i++) {
        node_free(n->edges[i].child);
        free(n->edges[i].child);
        free(n->edges[i].seg);
    }
    free(n->edges);
    free(n->index);
    if (n->param) {
        node_free(n->param);
        free(n->param);
    }
    if (n->star) {
        node_free(n->star);
        free(n->star);
    }
    for (size_t i = 0; i < n->num_routes; i++)
        free(n->routes[i].pattern);
    free(n->routes);
}

void lv_router_free(lv_router_t *r)
{
    if (!r)
        return;
    node_free(&r->root);
    for (size_t i = 0; i < r->num_methods; i++)
        free(r->methods[i]);
    free(r);
}
