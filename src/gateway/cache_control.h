/* cache_control.h: parses an origin's Cache-Control header and decides
 * whether, and for how long, the gateway's micro-cache keeps a response.
 *
 * The parser is pure and zero-copy: it reads the header value in place and
 * fills plain fields, keeping nothing that points into the value. The
 * decision combines those fields with the route's `cache:` settings from
 * levee.yaml (route settings win over the origin, except that no-store and
 * private are always honoured). docs/cache.md explains the rules for users.
 */
#ifndef LV_GATEWAY_CACHE_CONTROL_H
#define LV_GATEWAY_CACHE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/slice.h"

/* Delta-seconds above this are read as this (RFC 9111 section 1.2.2). */
#define LV_CACHE_CONTROL_MAX_SECONDS 2147483648LL

/* The directives that matter to a shared cache. Seconds are -1 when absent,
 * else 0..LV_CACHE_CONTROL_MAX_SECONDS. */
typedef struct {
    int64_t max_age_s, s_maxage_s, swr_s, sie_s; /* -1 when absent */
    bool no_store, no_cache, private_, public_;
    bool must_revalidate, proxy_revalidate;      /* forbid serving stale on the origin's behalf */
} lv_cache_control_t;

/* Sets every duration to -1 and every flag to false. Call once per response
 * before feeding it the response's Cache-Control lines. */
void lv_cache_control_init(lv_cache_control_t *cc);

/* Parses one header value into cc: comma-separated directives, names
 * case-insensitive, arguments a token or a quoted-string (quoted digits are
 * accepted for the numeric ones). Unknown directives are ignored; a
 * malformed one is skipped without failing the others, except that the
 * restrictive ones (no-store, no-cache, private, must-revalidate,
 * proxy-revalidate) count whatever their argument looks like. Repeated
 * headers are fed one after another; when a numeric directive appears more
 * than once the first occurrence wins (RFC 9111 section 4.2.1). */
void lv_cache_control_parse(lv_slice_t value, lv_cache_control_t *cc);

typedef struct {
    bool cacheable;
    int64_t ttl_ms, swr_ms, sie_ms; /* all 0 when not cacheable */
} lv_cache_decision_t;

/* Decides whether and how long to cache a response for a route.
 * route: the route's cache settings; NULL means the defaults (no overrides,
 *   default statuses, Set-Cookie not cached); a route with enabled == false
 *   caches nothing.
 * Not cacheable when: the status is not in route->statuses (or, when that is
 *   NULL, not 2xx/3xx or is 206 or 304); Vary: * (vary_star); Set-Cookie is
 *   present (has_set_cookie) unless route->cache_set_cookie; no-store or
 *   private, even with a route ttl (the origin says the answer is for one
 *   user: caching it could leak it to another).
 * TTL: route->ttl_ms >= 0 wins over the origin, no-cache included (the
 *   operator asked for it). Otherwise no-cache means not cacheable, then
 *   s-maxage, then max-age give it; with neither, not cacheable (Expires is
 *   not consulted).
 * SWR/SIE: route values >= 0 win; otherwise the header's
 *   stale-while-revalidate / stale-if-error, ignored when must-revalidate or
 *   proxy-revalidate is present; otherwise 0.
 * Cacheable also needs ttl_ms > 0 or swr_ms > 0. */
lv_cache_decision_t lv_cache_decide(const lv_config_route_cache_t *route, int status,
                                    const lv_cache_control_t *cc, bool has_set_cookie,
                                    bool vary_star);

#endif
