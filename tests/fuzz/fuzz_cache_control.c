/* fuzz_cache_control.c: libFuzzer driver for the Cache-Control parser and
 * the caching decision.
 *
 * Input layout: byte 0 picks the route settings and byte 1 the status and
 * flags for lv_cache_decide; the rest is the header value, also split at
 * its first '\n' into two header lines fed one after the other. The value
 * is copied into an exactly sized buffer so any over-read trips ASan.
 * Invariants checked (abort on violation):
 * - durations are -1 or within 0..2^31 s;
 * - parsing is deterministic, and feeding the same value twice changes
 *   nothing (first occurrence wins, flags are sticky);
 * - a later "no-store" line always makes the response uncacheable;
 * - a decision is either "not cacheable" with all zeros, or has
 *   non-negative times, some freshness or SWR, and respects no-store,
 *   private, Vary: *, Set-Cookie and the status rules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cache_control.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ranges(const lv_cache_control_t *cc)
{
    const int64_t v[] = {cc->max_age_s, cc->s_maxage_s, cc->swr_s, cc->sie_s};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        REQUIRE(v[i] == -1 || (v[i] >= 0 && v[i] <= LV_CACHE_CONTROL_MAX_SECONDS));
}

static void parse_lines(const char *p, size_t len, lv_cache_control_t *cc)
{
    const char *nl = memchr(p, '\n', len);
    if (!nl) {
        lv_cache_control_parse(lv_slice(p, len), cc);
        return;
    }
    lv_cache_control_parse(lv_slice(p, (size_t)(nl - p)), cc);
    lv_cache_control_parse(lv_slice(nl + 1, len - (size_t)(nl - p) - 1), cc);
}

static void check_decision(const lv_cache_decision_t *d, const lv_config_route_cache_t *r, int status,
                           const lv_cache_control_t *cc, bool set_cookie, bool vary_star)
{
    if (!d->cacheable) {
        REQUIRE(d->ttl_ms == 0 && d->swr_ms == 0 && d->sie_ms == 0);
        return;
    }
    REQUIRE(d->ttl_ms >= 0 && d->swr_ms >= 0 && d->sie_ms >= 0);
    REQUIRE(d->ttl_ms > 0 || d->swr_ms > 0);
    REQUIRE(!cc->no_store && !cc->private_ && !vary_star);
    REQUIRE(r->enabled);
    REQUIRE(!set_cookie || r->cache_set_cookie);
    if (!r->statuses)
        REQUIRE(status >= 200 && status < 400 && status != 206 && status != 304);
    if (r->ttl_ms >= 0)
        REQUIRE(d->ttl_ms == r->ttl_ms);
    else
        REQUIRE(!cc->no_cache && (cc->s_maxage_s >= 0 || cc->max_age_s >= 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t rbits = data[0], sbits = data[1];
    size_t len = size - 2;
    char *value = malloc(len ? len : 1);
    if (!value)
        return 0;
    if (len)
        memcpy(value, data + 2, len);

    lv_cache_control_t cc, again, twice;
    lv_cache_control_init(&cc);
    parse_lines(value, len, &cc);
    check_ranges(&cc);

    lv_cache_control_init(&again);
    parse_lines(value, len, &again);
    REQUIRE(memcmp(&cc, &again, sizeof(cc)) == 0);

    twice = cc;
    parse_lines(value, len, &twice);
    REQUIRE(memcmp(&cc, &twice, sizeof(cc)) == 0);

    static int statuses[] = {200, 404};
    static const int status_table[] = {200, 203, 204, 206, 301, 304, 404, 500, 503, 302, 0, 599};
    lv_config_route_cache_t route = {
        .enabled = (rbits & 1) == 0,
        .ttl_ms = (rbits & 2) ? (int64_t)(rbits >> 5) * 1000 : -1,
        .stale_while_revalidate_ms = (rbits & 4) ? 5000 : -1,
        .stale_if_error_ms = (rbits & 8) ? 0 : -1,
        .statuses = (rbits & 16) ? statuses : NULL,
        .num_statuses = (rbits & 16) ? 2 : 0,
        .cache_set_cookie = (rbits & 32) != 0,
    };
    int status = status_table[(sbits & 0x3f) % (sizeof(status_table) / sizeof(status_table[0]))];
    bool set_cookie = (sbits & 0x40) != 0, vary_star = (sbits & 0x80) != 0;

    lv_cache_decision_t d = lv_cache_decide(&route, status, &cc, set_cookie, vary_star);
    check_decision(&d, &route, status, &cc, set_cookie, vary_star);
    lv_cache_decision_t dn = lv_cache_decide(NULL, status, &cc, set_cookie, vary_star);
    lv_config_route_cache_t defaults = {
        .enabled = true, .ttl_ms = -1, .stale_while_revalidate_ms = -1, .stale_if_error_ms = -1};
    check_decision(&dn, &defaults, status, &cc, set_cookie, vary_star);

    /* a restrictive line later always wins */
    static const char no_store[] = "no-store";
    lv_cache_control_parse(lv_slice(no_store, sizeof(no_store) - 1), &twice);
    REQUIRE(twice.no_store);
    REQUIRE(!lv_cache_decide(&route, status, &twice, set_cookie, vary_star).cacheable);

    free(value);
    return 0;
}
