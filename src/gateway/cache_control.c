/* cache_control.c: the Cache-Control parser and the caching decision.
 *
 * The parser walks the value once. Each list element is
 *   token [ "=" ( token / quoted-string ) ]
 * surrounded by optional whitespace (RFC 9111 section 5.2, RFC 9110 section
 * 5.6). An element that does not fit the grammar is skipped up to the next
 * comma outside a quoted-string, so one broken directive never hides the
 * ones after it. Quoted-strings may hold commas and backslash escapes; an
 * unterminated one swallows the rest of the value, as it would for any
 * strict parser.
 *
 * Permissive directives (max-age, s-maxage, stale-*) only count when well
 * formed: a value we cannot read must not make something cacheable.
 * Restrictive ones (no-store, private, ...) count whenever their name is
 * seen, so `private="x"` or `no-store junk` still keep the answer out. */
#include "gateway/cache_control.h"

#include <stddef.h>

typedef enum {
    D_UNKNOWN,
    D_MAX_AGE,
    D_S_MAXAGE,
    D_SWR,
    D_SIE,
    D_NO_STORE,
    D_NO_CACHE,
    D_PRIVATE,
    D_PUBLIC,
    D_MUST_REVALIDATE,
    D_PROXY_REVALIDATE,
} directive_t;

static const struct {
    lv_slice_t name;
    directive_t kind;
} directives[] = {
    {LV_SLICE_LIT("max-age"), D_MAX_AGE},
    {LV_SLICE_LIT("s-maxage"), D_S_MAXAGE},
    {LV_SLICE_LIT("stale-while-revalidate"), D_SWR},
    {LV_SLICE_LIT("stale-if-error"), D_SIE},
    {LV_SLICE_LIT("no-store"), D_NO_STORE},
    {LV_SLICE_LIT("no-cache"), D_NO_CACHE},
    {LV_SLICE_LIT("private"), D_PRIVATE},
    {LV_SLICE_LIT("public"), D_PUBLIC},
    {LV_SLICE_LIT("must-revalidate"), D_MUST_REVALIDATE},
    {LV_SLICE_LIT("proxy-revalidate"), D_PROXY_REVALIDATE},
};

void lv_cache_control_init(lv_cache_control_t *cc)
{
    *cc = (lv_cache_control_t){
        .max_age_s = -1,
        .s_maxage_s = -1,
        .swr_s = -1,
        .sie_s = -1,
    };
}

/* tchar from RFC 9110 section 5.6.2. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    switch (ch) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Returns the position just past the next comma that is outside a
 * quoted-string, or end. */
static const char *skip_element(const char *p, const char *end)
{
    bool quoted = false;
    while (p < end) {
        char ch = *p++;
        if (quoted) {
            if (ch == '\\') {
                if (p < end)
                    p++;
            } else if (ch == '"') {
                quoted = false;
            }
        } else if (ch == '"') {
            quoted = true;
        } else if (ch == ',') {
            break;
        }
    }
    return p;
}

static directive_t classify(lv_slice_t name)
{
    for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++)
        if (lv_slice_eq_nocase(name, directives[i].name))
            return directives[i].kind;
    return D_UNKNOWN;
}

/* delta-seconds: 1*DIGIT, saturating at LV_CACHE_CONTROL_MAX_SECONDS. */
static bool parse_seconds(lv_slice_t arg, int64_t *out)
{
    if (arg.len == 0)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < arg.len; i++) {
        char ch = arg.ptr[i];
        if (ch < '0' || ch > '9')
            return false;
        if (v < LV_CACHE_CONTROL_MAX_SECONDS) /* bounded, so v * 10 cannot overflow */
            v = v * 10 + (ch - '0');
    }
    *out = v > LV_CACHE_CONTROL_MAX_SECONDS ? LV_CACHE_CONTROL_MAX_SECONDS : v;
    return true;
}

static void set_seconds(int64_t *field, bool well_formed, bool has_arg, lv_slice_t arg)
{
    int64_t v;
    if (*field >= 0 || !well_formed || !has_arg || !parse_seconds(arg, &v))
        return;
    *field = v;
}

static void apply(lv_cache_control_t *cc, directive_t kind, bool well_formed, bool has_arg,
                  lv_slice_t arg)
{
    switch (kind) {
    case D_MAX_AGE: set_seconds(&cc->max_age_s, well_formed, has_arg, arg); break;
    case D_S_MAXAGE: set_seconds(&cc->s_maxage_s, well_formed, has_arg, arg); break;
    case D_SWR: set_seconds(&cc->swr_s, well_formed, has_arg, arg); break;
    case D_SIE: set_seconds(&cc->sie_s, well_formed, has_arg, arg); break;
    case D_NO_STORE: cc->no_store = true; break;
    case D_NO_CACHE: cc->no_cache = true; break;
    case D_PRIVATE: cc->private_ = true; break;
    case D_PUBLIC:
        if (well_formed)
            cc->public_ = true;
        break;
    case D_MUST_REVALIDATE: cc->must_revalidate = true; break;
    case D_PROXY_REVALIDATE: cc->proxy_revalidate = true; break;
    case D_UNKNOWN: break;
    }
}

void lv_cache_control_parse(lv_slice_t value, lv_cache_control_t *cc)
{
    if (!value.ptr)
        return;
    const char *p = value.ptr, *end = value.ptr + value.len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;

        const char *name_start = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        lv_slice_t name = lv_slice(name_start, (size_t)(p - name_start));
        if (name.len == 0) {
            p = skip_element(p, end);
            continue;
        }

        bool well_formed = true, has_arg = false;
        lv_slice_t arg = lv_slice(NULL, 0);
        if (p < end && *p == '=') {
            p++;
            has_arg = true;
            if (p < end && *p == '"') {
                const char *start = ++p;
                bool closed = false;
                while (p < end) {
                    if (*p == '\\') {
                        p += (end - p >= 2) ? 2 : 1;
                    } else if (*p == '"') {
                        closed = true;
                        break;
                    } else {
                        p++;
                    }
                }
                if (closed) {
                    /* escapes are left in: no directive we read has a use for them */
                    arg = lv_slice(start, (size_t)(p - start));
                    p++;
                } else {
                    well_formed = false;
                }
            } else {
                const char *start = p;
                while (p < end && is_tchar((unsigned char)*p))
                    p++;
                arg = lv_slice(start, (size_t)(p - start));
                if (arg.len == 0)
                    well_formed = false;
            }
        }
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p != ',') {
            well_formed = false;
            p = skip_element(p, end);
        }
        apply(cc, classify(name), well_formed, has_arg, arg);
    }
}

static bool status_cacheable(const lv_config_route_cache_t *route, int status)
{
    if (route->statuses && route->num_statuses > 0) {
        for (size_t i = 0; i < route->num_statuses; i++)
            if (route->statuses[i] == status)
                return true;
        return false;
    }
    return status >= 200 && status <= 399 && status != 206 && status != 304;
}

static int64_t seconds_to_ms(int64_t s)
{
    if (s > LV_CACHE_CONTROL_MAX_SECONDS)
        s = LV_CACHE_CONTROL_MAX_SECONDS;
    return s * 1000;
}

lv_cache_decision_t lv_cache_decide(const lv_config_route_cache_t *route, int status,
                                    const lv_cache_control_t *cc, bool has_set_cookie,
                                    bool vary_star)
{
    static const lv_config_route_cache_t defaults = {
        .enabled = true,
        .ttl_ms = -1,
        .stale_while_revalidate_ms = -1,
        .stale_if_error_ms = -1,
    };
    lv_cache_control_t none;
    const lv_cache_decision_t no = {false, 0, 0, 0};

    if (!route)
        route = &defaults;
    if (!cc) {
        lv_cache_control_init(&none);
        cc = &none;
    }
    if (!route->enabled || !status_cacheable(route, status) || vary_star)
        return no;
    if (has_set_cookie && !route->cache_set_cookie)
        return no;
    if (cc->no_store || cc->private_)
        return no;

    int64_t ttl;
    if (route->ttl_ms >= 0)
        ttl = route->ttl_ms;
    else if (cc->no_cache)
        return no;
    else if (cc->s_maxage_s >= 0)
        ttl = seconds_to_ms(cc->s_maxage_s);
    else if (cc->max_age_s >= 0)
        ttl = seconds_to_ms(cc->max_age_s);
    else
        return no;

    bool origin_forbids_stale = cc->must_revalidate || cc->proxy_revalidate;
    int64_t swr = 0, sie = 0;
    if (route->stale_while_revalidate_ms >= 0)
        swr = route->stale_while_revalidate_ms;
    else if (!origin_forbids_stale && cc->swr_s >= 0)
        swr = seconds_to_ms(cc->swr_s);
    if (route->stale_if_error_ms >= 0)
        sie = route->stale_if_error_ms;
    else if (!origin_forbids_stale && cc->sie_s >= 0)
        sie = seconds_to_ms(cc->sie_s);

    if (ttl <= 0 && swr <= 0)
        return no;
    return (lv_cache_decision_t){true, ttl, swr, sie};
}
