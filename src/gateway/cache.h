/* cache.h: the gateway's shared micro-cache: immutable refcounted responses,
 * one fetch per key (coalescing), stale serving, hit-for-miss, S3-FIFO eviction.
 *
 * One lv_cache_t is shared by every event-loop thread. It is split into
 * shards by key hash, each with its own mutex, byte budget and eviction
 * queues; a lock is held only for a hash lookup and a few field updates.
 * The cache knows nothing about sockets or loops: it says what the caller
 * must do (serve, fetch, wait, bypass) and wakes waiting requests through a
 * callback the gateway implements. docs/cache.md describes the behaviour for
 * users; the comments below give the contract for callers.
 *
 * Ownership and lifetimes:
 * - lv_cache_obj_t is immutable once handed to lv_cache_fill_done and is
 *   refcounted atomically. Whoever receives an object pointer from this API
 *   owns one reference and drops it with lv_cache_obj_unref, from any thread,
 *   without any cache lock. The bytes behind headers/body live as long as
 *   the object.
 * - Keys are copied; the caller's key bytes need to live only for the call.
 * - A lv_cache_waiter_t is owned by the caller (usually embedded in the
 *   request) and must stay valid until on_ready has been called or
 *   lv_cache_wait_cancel returned true.
 */
#ifndef LV_GATEWAY_CACHE_H
#define LV_GATEWAY_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* A stored response. Times are wall-clock milliseconds, compared with the
 * now_ms the caller passes in. Freshness is now < fresh_until_ms; serving
 * stale while revalidating is now < stale_until_ms; serving on error is
 * now <= error_until_ms. */
typedef struct lv_cache_obj {
    int status;
    lv_slice_t headers;     /* serialised "Name: value\r\n" lines (no status line, no final CRLF) */
    lv_slice_t body;
    int64_t stored_at_ms;   /* wall clock ms when the response was received (for Age) */
    int64_t fresh_until_ms; /* HIT until then */
    int64_t stale_until_ms; /* stale_while_revalidate: served STALE until then */
    int64_t error_until_ms; /* stale_if_error: may be served when the origin fails until then */
    /* private to cache.c */
    size_t priv_size;       /* bytes of the single allocation, charged to the cache */
    atomic_uint priv_refs;
} lv_cache_obj_t;

/* One allocation holding the struct, the headers and the body (each followed
 * by a NUL that is not part of the slice); refcount 1, all times 0. The
 * caller sets the times (lv_cache_obj_set_lifetime) before publishing it.
 * headers/body may be NULL when their length is 0. */
lv_cache_obj_t *lv_cache_obj_new(int status, const void *headers, size_t headers_len,
                                 const void *body, size_t body_len);

/* Sets stored_at = now, fresh_until = now + ttl, stale_until = fresh_until +
 * swr and error_until = fresh_until + sie (or fresh_until - 1 when sie is 0,
 * so that no stale copy is served on error). Negative durations count as 0. */
void lv_cache_obj_set_lifetime(lv_cache_obj_t *o, int64_t now_ms, int64_t ttl_ms, int64_t swr_ms,
                               int64_t sie_ms);

/* Takes one more reference. */
void lv_cache_obj_ref(lv_cache_obj_t *o);

/* Drops a reference; frees the object at zero. Thread-safe; NULL is a no-op. */
void lv_cache_obj_unref(lv_cache_obj_t *o);

typedef struct lv_cache lv_cache_t;

/* How the fill a waiter waited for ended; tells the gateway which X-Cache
 * value to send. */
typedef enum {
    LV_CACHE_WOKEN_STORED,     /* obj: the fresh response, now in the cache */
    LV_CACHE_WOKEN_NOT_STORED, /* obj: the fetched response, not stored (uncacheable or too big) */
    LV_CACHE_WOKEN_STALE,      /* the fetch failed; obj: the stale-if-error copy */
    LV_CACHE_WOKEN_FAILED,     /* the fetch failed; obj is NULL */
} lv_cache_woken_t;

/* A request waiting for another request's fetch of the same key. */
typedef struct lv_cache_waiter lv_cache_waiter_t;
struct lv_cache_waiter {
    /* Called once, from whichever thread finishes the fill, with no cache lock
     * held. obj carries a reference owned by the waiter (unref when done) or
     * is NULL when the fill failed with nothing to serve (the waiter then
     * answers with an error or fetches on its own, without the cache). When
     * obj is not NULL it is the answer to use, cacheable or not; `woken`
     * says which case it is. on_ready may free the waiter and may call back
     * into the cache. */
    void (*on_ready)(lv_cache_waiter_t *w, lv_cache_obj_t *obj);
    lv_cache_woken_t woken;    /* set by the cache just before on_ready */
    /* private to the cache */
    lv_cache_waiter_t *next, *prev;
    void *priv_entry;   /* the entry this waiter is queued on; NULL once woken */
    void *priv_shard;
};

typedef enum {
    LV_CACHE_HIT,           /* *obj is fresh (ref taken) */
    LV_CACHE_STALE,         /* *obj is stale within stale_while_revalidate; a refresh is already running */
    LV_CACHE_STALE_REFRESH, /* *obj is stale; THIS caller must refresh in the background and call lv_cache_fill_done */
    LV_CACHE_MISS_FILL,     /* nothing usable: THIS caller must fetch and call lv_cache_fill_done */
    LV_CACHE_MISS_WAIT,     /* a fetch for the key is running: w was queued, on_ready will be called */
    LV_CACHE_PASS,          /* fetch without the cache (no coalescing, no lv_cache_fill_done
                             * required): the key was recently found uncacheable (hit-for-miss),
                             * or the cache cannot track it (key too long, shard full of in-flight
                             * fills), or a fetch is running and no waiter was given. If a PASS
                             * fetch's answer turns out cacheable, the caller may still hand it to
                             * lv_cache_fill_done(store = true): that stores it and ends the
                             * hit-for-miss marker early (Varnish's hit-for-miss) */
} lv_cache_result_t;

/* Counters, summed over the shards. Gauges are marked; the rest only grow. */
typedef struct {
    uint64_t bytes;            /* gauge: charged bytes (objects, keys, per-entry overhead, ghost tables) */
    uint64_t max_bytes;        /* the budget given to lv_cache_new */
    uint64_t max_object_bytes; /* larger objects are served but not stored */
    uint64_t objects;          /* gauge: stored responses */
    uint64_t entries;          /* gauge: keys tracked (objects, fills in progress, hit-for-miss markers) */
    uint64_t waiting;          /* gauge: requests queued on a fill right now */
    uint64_t nshards;
    uint64_t hits;             /* LV_CACHE_HIT */
    uint64_t stale_hits;       /* LV_CACHE_STALE */
    uint64_t refreshes;        /* LV_CACHE_STALE_REFRESH */
    uint64_t misses;           /* LV_CACHE_MISS_FILL */
    uint64_t waits;            /* LV_CACHE_MISS_WAIT */
    uint64_t passes;           /* LV_CACHE_PASS */
    uint64_t stores;           /* objects stored by lv_cache_fill_done */
    uint64_t uncacheable;      /* fills ended with store = false (hit-for-miss markers set) */
    uint64_t too_big;          /* fills whose object exceeded max_object_bytes */
    uint64_t fill_failures;    /* fills ended with obj = NULL */
    uint64_t stale_if_error;   /* stale copies handed out because a fill failed (filler + waiters) */
    uint64_t lock_takeovers;   /* fills handed to a new request because the old one exceeded the lock age */
    uint64_t evictions;        /* entries or objects dropped to make room */
    uint64_t ghost_hits;       /* misses on keys recently evicted from the small queue (go straight to main) */
} lv_cache_stats_t;

/* Creates a cache holding at most max_bytes (objects, keys and per-entry
 * overhead, plus the eviction policy's ghost table). nshards is rounded up
 * to a power of two (0 means 16, at most 256) and halved while a shard's
 * budget would be under 64 KiB. Each shard gets max_bytes / nshards; an
 * object larger than an eighth of a shard's budget is served, not stored. */
lv_cache_t *lv_cache_new(size_t max_bytes, unsigned nshards);

/* Sets the longest a fetch is expected to take (default 30 s, the origin
 * timeout default). A fill that has run for twice that (the lock age) is
 * presumed lost: the next request that would have waited becomes the filler
 * instead (requests already waiting stay queued and are woken by whichever
 * fill ends first). Call before the cache is shared between threads. */
void lv_cache_set_fill_timeout(lv_cache_t *c, int64_t fill_timeout_ms);

/* Looks key up at time now_ms. *obj is set (with a reference the caller
 * owns) for HIT, STALE and STALE_REFRESH, and NULL otherwise. w is queued
 * only for MISS_WAIT; it may be NULL, in which case PASS is returned
 * instead of MISS_WAIT. After MISS_FILL or STALE_REFRESH the caller MUST
 * call lv_cache_fill_done for the key exactly once, on every path. */
lv_cache_result_t lv_cache_lookup(lv_cache_t *c, lv_slice_t key, int64_t now_ms,
                                  lv_cache_waiter_t *w, lv_cache_obj_t **obj);

/* Ends the fetch this caller was told to do (MISS_FILL or STALE_REFRESH).
 * obj: the new response with its *_until_ms fields set, or NULL if the fetch
 *   failed (origin error/timeout/garbage). The caller's reference to obj is
 *   consumed; obj must not be changed afterwards.
 * store: insert obj (replacing any older copy) — false when the response is
 *   uncacheable, in which case the key is marked PASS for pass_ms
 *   (hit-for-miss; pass_ms <= 0 sets no marker) and the old copy, if any, is
 *   dropped. A storable object too big for the cache is not stored and also
 *   drops the old copy, without a PASS marker.
 * Every queued waiter is woken: with obj (each its own ref) when obj != NULL;
 * otherwise with the stale copy if now_ms <= its error_until_ms
 * (stale_if_error), else NULL. A failed fill keeps the old copy.
 * Returns what the filler itself should serve (a new ref: obj, or the
 * stale-if-error copy) or NULL. Safe to call for a key whose fill was taken
 * over or is unknown to the cache (it then just stores or returns). */
lv_cache_obj_t *lv_cache_fill_done(lv_cache_t *c, lv_slice_t key, int64_t now_ms,
                                   lv_cache_obj_t *obj, bool store, int64_t pass_ms);

/* Removes w from the waiting list it was queued on by lv_cache_lookup
 * (MISS_WAIT), e.g. when the request times out or the client goes away.
 * Returns true if it was removed: on_ready will not be called. Returns false
 * if the fill already ended: on_ready has been or is about to be called
 * (possibly on another thread), so w must stay valid until it is. */
bool lv_cache_wait_cancel(lv_cache_t *c, lv_cache_waiter_t *w);

/* For stale_if_error on a PASS/uncached failure path: returns a ref to a
 * copy still within error_until_ms, or NULL. */
lv_cache_obj_t *lv_cache_get_for_error(lv_cache_t *c, lv_slice_t key, int64_t now_ms);

/* Fills *out with the current counters. Takes each shard's lock in turn. */
void lv_cache_stats(lv_cache_t *c, lv_cache_stats_t *out);

/* Frees the cache and drops its references to objects (objects still
 * referenced elsewhere live on). No fills may be in progress; a waiter
 * still queued is woken with NULL. NULL is a no-op. */
void lv_cache_free(lv_cache_t *c);

#endif
