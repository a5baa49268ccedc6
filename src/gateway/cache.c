/* cache.c: the sharded micro-cache declared in cache.h.
 *
 * Layout. A key's XXH3 hash picks the shard (top bits) and the bucket of
 * the shard's chained hash table (low bits). An entry is one allocation:
 * the bookkeeping below followed by the key bytes. An entry is always in
 * one of three states, and is removed as soon as it is in none:
 *   stored        obj != NULL (and maybe filling: a refresh is running)
 *   filling       obj == NULL, filling: a fetch runs; waiters queue here
 *   hit-for-miss  obj == NULL, !filling, pass_until_ms set
 *
 * Accounting. A shard charges every entry ENTRY_OVERHEAD + key length, plus
 * the object size when it holds one, and keeps the sum under its budget by
 * evicting before it adds. Entries without an object that are filling sit
 * in no queue, so they cannot be evicted; if nothing evictable is left, a
 * new key is not tracked (the caller gets PASS) rather than going over.
 *
 * Eviction is S3-FIFO (Yang et al., SOSP 2023), per shard: new entries go
 * to a small FIFO (~10% of the bytes), the rest live in a main FIFO. Each
 * entry has a 2-bit access counter. When the small queue is over its share,
 * its oldest entry moves to main if it was accessed since insertion, else
 * it leaves and its hash is remembered in a ghost table; a key that comes
 * back while still in the ghost table goes straight to main. Main's oldest
 * entry is reinserted with its counter decremented while the counter is
 * non-zero. So one-hit wonders (scans) only ever churn the small queue and
 * a hot set survives them, which LRU does not give; and unlike LRU a hit
 * only bumps a counter, never relinks a list. Entries already past every
 * serving window are dropped first whatever their counter. W-TinyLFU would
 * resist scans as well, but it costs a count-min sketch update (several
 * hashed counters, periodic halving) plus LRU relinking on every hit, all
 * under the shard lock; S3-FIFO gets comparable hit ratios with a 2-bit
 * counter, which keeps the hit path short.
 *
 * The ghost table is a fixed, lossy, 4-way set-associative table of 32-bit
 * fingerprints stamped with an insertion sequence number (a full set drops
 * its oldest); a fingerprint counts as present while it is among the last N
 * insertions, N being the number of entries in the shard. It has one slot
 * (8 bytes) per 512 bytes of budget, so ~1.6% of the budget, and that comes
 * out of the budget.
 *
 * Locking. Everything in a shard is under its mutex. Objects are immutable
 * once stored and refcounted, so a hit leaves the lock holding a reference.
 * Objects and entries that leave the cache are collected during the critical
 * section and freed after unlock; waiters are woken after unlock too. */
#include "gateway/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/mem.h"

enum { Q_NONE, Q_SMALL, Q_MAIN };

#define FREQ_MAX 3
#define MIN_SHARD_BYTES (64 * 1024)
#define DEFAULT_SHARDS 16
#define MAX_SHARDS 256
#define DEFAULT_FILL_TIMEOUT_MS 30000
#define GHOST_WAYS 4
#define GHOST_MIN_SLOTS 64
#define GHOST_MAX_SLOTS (1 << 17)
#define GHOST_BYTES_PER_SLOT 512
#define GHOST_MIN_WINDOW 64

typedef struct entry entry_t;
struct entry {
    entry_t *hnext;              /* hash chain */
    entry_t *qprev, *qnext;      /* small or main FIFO, when queued */
    uint64_t hash;
    lv_cache_obj_t *obj;         /* the cache's reference, or NULL */
    lv_cache_waiter_t *wait_head, *wait_tail;
    int64_t fill_started_ms;
    int64_t pass_until_ms;       /* hit-for-miss marker; 0 when not one */
    size_t key_len;
    uint32_t nwaiters;
    uint8_t freq;                /* accesses since insertion, saturating at FREQ_MAX */
    uint8_t queue;               /* where it is now: Q_NONE, Q_SMALL, Q_MAIN */
    uint8_t home;                /* where it goes when (re)queued with an object */
    bool filling;
    char key[];
};

/* The bucket slot is charged per entry too, as the table grows with them. */
#define ENTRY_OVERHEAD (sizeof(entry_t) + sizeof(entry_t *))

typedef struct {
    entry_t *head, *tail;        /* head: newest; tail: the next to leave */
    size_t bytes, count;
} fifo_t;

typedef struct {
    uint32_t fingerprint;        /* 0: empty */
    uint32_t seq;
} ghost_slot_t;

typedef struct {
    pthread_mutex_t lock;
    entry_t **buckets;
    size_t bucket_mask;
    size_t nentries, nobjects, nwaiting;
    size_t bytes, budget, small_target;
    fifo_t small, main;
    ghost_slot_t *ghost;         /* ghost_set_mask + 1 sets of GHOST_WAYS slots */
    uint32_t ghost_set_mask, ghost_seq;
    lv_cache_stats_t n;          /* only the counters are used here */
    char pad[64];                /* keeps neighbouring shards' locks off one cache line */
} shard_t;

struct lv_cache {
    shard_t *shards;
    unsigned nshards;
    size_t max_bytes, max_obj;
    int64_t lock_age_ms;
};

/* Whatever leaves the cache during a critical section, freed after unlock.
 * Objects that do not fit the array are unreferenced on the spot: that is
 * only an atomic decrement unless we held the last reference. */
#define GARBAGE_OBJS 16
typedef struct {
    entry_t *entries;            /* linked through hnext */
    lv_cache_obj_t *objs[GARBAGE_OBJS];
    unsigned nobjs;
} garbage_t;

/* ---- objects ---------------------------------------------------------- */

lv_cache_obj_t *lv_cache_obj_new(int status, const void *headers, size_t headers_len,
                                 const void *body, size_t body_len)
{
    size_t size = sizeof(lv_cache_obj_t) + headers_len + 1 + body_len + 1;
    lv_cache_obj_t *o = lv_malloc(size);
    char *h = (char *)(o + 1);
    char *b = h + headers_len + 1;
    if (headers_len)
        memcpy(h, headers, headers_len);
    h[headers_len] = '\0';
    if (body_len)
        memcpy(b, body, body_len);
    b[body_len] = '\0';
    o->status = status;
    o->headers = lv_slice(h, headers_len);
    o->body = lv_slice(b, body_len);
    o->stored_at_ms = o->fresh_until_ms = o->stale_until_ms = o->error_until_ms = 0;
    o->priv_size = size;
    atomic_init(&o->priv_refs, 1);
    return o;
}

/* Saturating, so absurd TTLs or clocks cannot overflow (UB) the times. */
static int64_t add_ms(int64_t t, int64_t d)
{
    if (d > 0 && t > INT64_MAX - d)
        return INT64_MAX;
    if (d < 0 && t < INT64_MIN - d)
        return INT64_MIN;
    return t + d;
}

void lv_cache_obj_set_lifetime(lv_cache_obj_t *o, int64_t now_ms, int64_t ttl_ms, int64_t swr_ms,
                               int64_t sie_ms)
{
    o->stored_at_ms = now_ms;
    o->fresh_until_ms = add_ms(now_ms, ttl_ms > 0 ? ttl_ms : 0);
    o->stale_until_ms = add_ms(o->fresh_until_ms, swr_ms > 0 ? swr_ms : 0);
    /* error_until is compared with <=, so "no window" must end before freshness does */
    o->error_until_ms = sie_ms > 0 ? add_ms(o->fresh_until_ms, sie_ms) : add_ms(o->fresh_until_ms, -1);
}

void lv_cache_obj_ref(lv_cache_obj_t *o)
{
    atomic_fetch_add_explicit(&o->priv_refs, 1, memory_order_relaxed);
}

static void obj_ref_n(lv_cache_obj_t *o, unsigned n)
{
    if (n)
        atomic_fetch_add_explicit(&o->priv_refs, n, memory_order_relaxed);
}

void lv_cache_obj_unref(lv_cache_obj_t *o)
{
    if (!o)
        return;
    /* acq_rel: every holder's reads happen before the free. (A release
     * decrement plus an acquire fence would do, but ThreadSanitizer does
     * not model fences; on x86 both are the same instruction.) */
    if (atomic_fetch_sub_explicit(&o->priv_refs, 1, memory_order_acq_rel) == 1)
        free(o);
}

/* ---- small helpers ---------------------------------------------------- */

static uint64_t hash_key(lv_slice_t key)
{
    return XXH3_64bits(key.ptr, key.len);
}

static shard_t *shard_of(lv_cache_t *c, uint64_t h)
{
    return &c->shards[(h >> 56) & (c->nshards - 1)];
}

static size_t entry_charge(const entry_t *e)
{
    return ENTRY_OVERHEAD + e->key_len + (e->obj ? e->obj->priv_size : 0);
}

/* True once nothing about the entry can be served any more. */
static bool is_dead(const entry_t *e, int64_t now)
{
    const lv_cache_obj_t *o = e->obj;
    if (o)
        return now >= o->fresh_until_ms && now >= o->stale_until_ms && now > o->error_until_ms;
    return !e->filling && e->pass_until_ms <= now;
}

/* A fill younger than the lock age is presumed alive. A clock that went
 * backwards also counts as alive. Unsigned arithmetic avoids overflow. */
static bool fill_alive(const lv_cache_t *c, const entry_t *e, int64_t now)
{
    if (!e->filling)
        return false;
    if (now < e->fill_started_ms)
        return true;
    return (uint64_t)now - (uint64_t)e->fill_started_ms < (uint64_t)c->lock_age_ms;
}

static void garbage_obj(garbage_t *g, lv_cache_obj_t *o)
{
    if (g->nobjs < GARBAGE_OBJS)
        g->objs[g->nobjs++] = o;
    else
        lv_cache_obj_unref(o);
}

static void garbage_flush(garbage_t *g)
{
    for (unsigned i = 0; i < g->nobjs; i++)
        lv_cache_obj_unref(g->objs[i]);
    while (g->entries) {
        entry_t *e = g->entries;
        g->entries = e->hnext;
        free(e);
    }
}

/* ---- hash table ------------------------------------------------------- */

static entry_t *find(const shard_t *s, uint64_t h, lv_slice_t key)
{
    for (entry_t *e = s->buckets[h & s->bucket_mask]; e; e = e->hnext)
        if (e->hash == h && e->key_len == key.len && (key.len == 0 || memcmp(e->key, key.ptr, key.len) == 0))
            return e;
    return NULL;
}

/* Doubling at load factor 1 keeps chains short; the table never shrinks. */
static void hash_insert(shard_t *s, entry_t *e)
{
    if (s->nentries >= s->bucket_mask + 1) {
        size_t n = (s->bucket_mask + 1) * 2;
        entry_t **nb = lv_calloc(n, sizeof(*nb));
        for (size_t i = 0; i <= s->bucket_mask; i++) {
            entry_t *x = s->buckets[i];
            while (x) {
                entry_t *next = x->hnext;
                x->hnext = nb[x->hash & (n - 1)];
                nb[x->hash & (n - 1)] = x;
                x = next;
            }
        }
        free(s->buckets);
        s->buckets = nb;
        s->bucket_mask = n - 1;
    }
    entry_t **slot = &s->buckets[e->hash & s->bucket_mask];
    e->hnext = *slot;
    *slot = e;
    s->nentries++;
}

static void hash_remove(shard_t *s, entry_t *e)
{
    entry_t **pp = &s->buckets[e->hash & s->bucket_mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    s->nentries--;
}

/* ---- FIFOs and ghost table -------------------------------------------- */

static fifo_t *queue_of(shard_t *s, const entry_t *e)
{
    return e->queue == Q_MAIN ? &s->main : &s->small;
}

static void fifo_push(shard_t *s, entry_t *e, uint8_t which)
{
    fifo_t *q = which == Q_MAIN ? &s->main : &s->small;
    e->queue = which;
    e->qprev = NULL;
    e->qnext = q->head;
    if (q->head)
        q->head->qprev = e;
    else
        q->tail = e;
    q->head = e;
    q->bytes += entry_charge(e);
    q->count++;
}

static void unqueue(shard_t *s, entry_t *e)
{
    if (e->queue == Q_NONE)
        return;
    fifo_t *q = queue_of(s, e);
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else
        q->head = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else
        q->tail = e->qprev;
    q->bytes -= entry_charge(e);
    q->count--;
    e->queue = Q_NONE;
    e->qprev = e->qnext = NULL;
}

static uint32_t ghost_fingerprint(uint64_t h)
{
    return (uint32_t)h | 1;
}

static ghost_slot_t *ghost_set(shard_t *s, uint64_t h)
{
    return &s->ghost[((h >> 32) & s->ghost_set_mask) * GHOST_WAYS];
}

/* Takes an empty slot of the key's set, else the one inserted longest ago. */
static void ghost_add(shard_t *s, uint64_t h)
{
    ghost_slot_t *set = ghost_set(s, h), *victim = &set[0];
    uint32_t seq = ++s->ghost_seq;
    for (int i = 0; i < GHOST_WAYS; i++) {
        if (set[i].fingerprint == 0) {
            victim = &set[i];
            break;
        }
        if ((uint32_t)(seq - set[i].seq) > (uint32_t)(seq - victim->seq))
            victim = &set[i];
    }
    victim->fingerprint = ghost_fingerprint(h);
    victim->seq = seq;
}

/* Returns whether h was evicted recently, forgetting it if so. */
static bool ghost_take(shard_t *s, uint64_t h)
{
    ghost_slot_t *set = ghost_set(s, h);
    uint32_t fp = ghost_fingerprint(h);
    size_t window = s->small.count + s->main.count;
    if (window < GHOST_MIN_WINDOW)
        window = GHOST_MIN_WINDOW;
    for (int i = 0; i < GHOST_WAYS; i++) {
        if (set[i].fingerprint == fp) {
            set[i].fingerprint = 0;
            return (uint32_t)(s->ghost_seq - set[i].seq) < window;
        }
    }
    return false;
}

/* ---- entry state changes (shard lock held) ---------------------------- */

/* The entry must not be queued: queue byte counts include the object. */
static void detach_obj(shard_t *s, entry_t *e, garbage_t *g)
{
    if (!e->obj)
        return;
    s->bytes -= e->obj->priv_size;
    s->nobjects--;
    garbage_obj(g, e->obj);
    e->obj = NULL;
}

static void remove_entry(shard_t *s, entry_t *e, garbage_t *g)
{
    unqueue(s, e);
    detach_obj(s, e, g);
    hash_remove(s, e);
    s->bytes -= ENTRY_OVERHEAD + e->key_len;
    e->hnext = g->entries;
    g->entries = e;
}

/* Takes a dequeued victim out. A fill in progress keeps its entry (the
 * filler will call fill_done, waiters hang on it): only the object goes. */
static void evict(shard_t *s, entry_t *e, garbage_t *g)
{
    s->n.evictions++;
    if (e->filling) {
        detach_obj(s, e, g);
        e->home = Q_SMALL;
        return;
    }
    remove_entry(s, e, g);
}

/* One S3-FIFO eviction; false when nothing is evictable. */
static bool evict_one(shard_t *s, int64_t now, garbage_t *g)
{
    for (;;) {
        if (s->small.tail && (s->small.bytes > s->small_target || !s->main.tail)) {
            entry_t *e = s->small.tail;
            unqueue(s, e);
            bool dead = is_dead(e, now);
            if (e->obj && e->freq > 0 && !dead) {
                e->home = Q_MAIN;
                fifo_push(s, e, Q_MAIN);
                continue;
            }
            if (e->obj && !dead)
                ghost_add(s, e->hash);
            evict(s, e, g);
            return true;
        }
        if (s->main.tail) {
            entry_t *e = s->main.tail;
            unqueue(s, e);
            if (e->freq > 0 && !is_dead(e, now)) {
                e->freq--;
                fifo_push(s, e, Q_MAIN);
                continue;
            }
            evict(s, e, g);
            return true;
        }
        return false;
    }
}

static bool make_room(shard_t *s, size_t need, int64_t now, garbage_t *g)
{
    if (need > s->budget)
        return false;
    while (s->bytes + need > s->budget)
        if (!evict_one(s, now, g))
            return false;
    return true;
}

/* A new, unqueued entry with no state yet; NULL if it cannot be afforded. */
static entry_t *new_entry(lv_cache_t *c, shard_t *s, uint64_t h, lv_slice_t key, int64_t now,
                          garbage_t *g)
{
    size_t charge = ENTRY_OVERHEAD + key.len;
    if (key.len > c->max_obj || !make_room(s, charge, now, g))
        return NULL;
    entry_t *e = lv_calloc(1, sizeof(*e) + key.len);
    if (key.len)
        memcpy(e->key, key.ptr, key.len);
    e->key_len = key.len;
    e->hash = h;
    e->home = Q_SMALL;
    if (ghost_take(s, h)) {
        e->home = Q_MAIN;
        s->n.ghost_hits++;
    }
    hash_insert(s, e);
    s->bytes += charge;
    return e;
}

/* Publishes obj in an unqueued entry without an object. */
static bool attach_obj(shard_t *s, entry_t *e, lv_cache_obj_t *obj, int64_t now, garbage_t *g)
{
    if (!make_room(s, obj->priv_size, now, g))
        return false;
    e->obj = obj;
    e->pass_until_ms = 0;
    s->bytes += obj->priv_size;
    s->nobjects++;
    fifo_push(s, e, e->home);
    return true;
}

/* Clears an entry down to "no object, no marker", unqueued. */
static void reset_entry(shard_t *s, entry_t *e, garbage_t *g)
{
    unqueue(s, e);
    detach_obj(s, e, g);
    e->pass_until_ms = 0;
}

static void remove_if_empty(shard_t *s, entry_t *e, garbage_t *g)
{
    if (!e->obj && !e->filling && e->pass_until_ms == 0)
        remove_entry(s, e, g);
}

static void start_fill(entry_t *e, int64_t now)
{
    e->filling = true;
    e->fill_started_ms = now;
}

static void queue_waiter(shard_t *s, entry_t *e, lv_cache_waiter_t *w)
{
    w->next = NULL;
    w->prev = e->wait_tail;
    if (e->wait_tail)
        e->wait_tail->next = w;
    else
        e->wait_head = w;
    e->wait_tail = w;
    w->priv_entry = e;
    w->priv_shard = s;
    e->nwaiters++;
    s->nwaiting++;
}

/* Unhooks the whole waiting list; the caller wakes it after unlock. */
static lv_cache_waiter_t *take_waiters(shard_t *s, entry_t *e, unsigned *n)
{
    lv_cache_waiter_t *list = e->wait_head;
    for (lv_cache_waiter_t *w = list; w; w = w->next)
        w->priv_entry = NULL;
    *n = e->nwaiters;
    s->nwaiting -= e->nwaiters;
    e->nwaiters = 0;
    e->wait_head = e->wait_tail = NULL;
    return list;
}

static void wake(lv_cache_waiter_t *list, lv_cache_obj_t *obj, lv_cache_woken_t how)
{
    while (list) {
        lv_cache_waiter_t *w = list;
        list = w->next;          /* on_ready may free w */
        w->woken = how;
        w->on_ready(w, obj);
    }
}

/* ---- public API ------------------------------------------------------- */

lv_cache_t *lv_cache_new(size_t max_bytes, unsigned nshards)
{
    if (nshards == 0)
        nshards = DEFAULT_SHARDS;
    if (nshards > MAX_SHARDS)
        nshards = MAX_SHARDS;
    unsigned n = 1;
    while (n < nshards)
        n *= 2;
    while (n > 1 && max_bytes / n < MIN_SHARD_BYTES)
        n /= 2;

    lv_cache_t *c = lv_calloc(1, sizeof(*c));
    c->nshards = n;
    c->max_bytes = max_bytes;
    c->lock_age_ms = 2 * (int64_t)DEFAULT_FILL_TIMEOUT_MS;
    c->shards = lv_calloc(n, sizeof(shard_t));

    size_t per_shard = max_bytes / n;
    size_t slots = GHOST_MIN_SLOTS;
    while (slots < GHOST_MAX_SLOTS && slots * 2 <= per_shard / GHOST_BYTES_PER_SLOT)
        slots *= 2;
    size_t ghost_bytes = slots * sizeof(ghost_slot_t);
    size_t budget = per_shard > ghost_bytes ? per_shard - ghost_bytes : 0;
    c->max_obj = budget / 8;

    /* Critical sections are a few dozen instructions: under contention a
     * short spin beats going to sleep in the kernel. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    for (unsigned i = 0; i < n; i++) {
        shard_t *s = &c->shards[i];
        pthread_mutex_init(&s->lock, &attr);
        s->bucket_mask = 15;
        s->buckets = lv_calloc(s->bucket_mask + 1, sizeof(entry_t *));
        s->ghost = lv_calloc(slots, sizeof(ghost_slot_t));
        s->ghost_set_mask = (uint32_t)(slots / GHOST_WAYS - 1);
        s->budget = budget;
        s->small_target = budget / 10;
    }
    pthread_mutexattr_destroy(&attr);
    return c;
}

void lv_cache_set_fill_timeout(lv_cache_t *c, int64_t fill_timeout_ms)
{
    if (fill_timeout_ms < 1)
        fill_timeout_ms = 1;
    c->lock_age_ms = fill_timeout_ms > INT64_MAX / 2 ? INT64_MAX : 2 * fill_timeout_ms;
}

lv_cache_result_t lv_cache_lookup(lv_cache_t *c, lv_slice_t key, int64_t now_ms,
                                  lv_cache_waiter_t *w, lv_cache_obj_t **obj)
{
    uint64_t h = hash_key(key);
    shard_t *s = shard_of(c, h);
    garbage_t g;
    g.entries = NULL;
    g.nobjs = 0;
    lv_cache_result_t r;
    *obj = NULL;
    if (w)
        w->priv_entry = w->priv_shard = NULL;

    pthread_mutex_lock(&s->lock);
    entry_t *e = find(s, h, key);
    if (!e) {
        e = new_entry(c, s, h, key, now_ms, &g);
        if (e) {
            start_fill(e, now_ms);
            s->n.misses++;
            r = LV_CACHE_MISS_FILL;
        } else {
            s->n.passes++;
            r = LV_CACHE_PASS;
        }
        goto out;
    }

    lv_cache_obj_t *o = e->obj;
    if (e->freq < FREQ_MAX)
        e->freq++;
    if (o && now_ms < o->fresh_until_ms) {
        lv_cache_obj_ref(o);
        *obj = o;
        s->n.hits++;
        r = LV_CACHE_HIT;
        goto out;
    }
    bool alive = fill_alive(c, e, now_ms);
    if (o && now_ms < o->stale_until_ms) {
        lv_cache_obj_ref(o);
        *obj = o;
        if (alive) {
            s->n.stale_hits++;
            r = LV_CACHE_STALE;
        } else {
            if (e->filling)
                s->n.lock_takeovers++;
            start_fill(e, now_ms);
            s->n.refreshes++;
            r = LV_CACHE_STALE_REFRESH;
        }
        goto out;
    }
    if (!o && !e->filling) {
        if (now_ms < e->pass_until_ms) {
            s->n.passes++;
            r = LV_CACHE_PASS;
            goto out;
        }
        reset_entry(s, e, &g); /* the hit-for-miss marker ran out: an ordinary miss now */
    }
    if (alive) {
        if (!w) {
            s->n.passes++;
            r = LV_CACHE_PASS;
            goto out;
        }
        queue_waiter(s, e, w);
        s->n.waits++;
        r = LV_CACHE_MISS_WAIT;
        goto out;
    }
    if (e->filling)
        s->n.lock_takeovers++;
    /* Past its stale window the copy is kept only while it may still serve
     * a failed fill (stale-if-error). */
    if (o && now_ms > o->error_until_ms)
        reset_entry(s, e, &g);
    start_fill(e, now_ms);
    s->n.misses++;
    r = LV_CACHE_MISS_FILL;

out:
    pthread_mutex_unlock(&s->lock);
    garbage_flush(&g);
    return r;
}

lv_cache_obj_t *lv_cache_fill_done(lv_cache_t *c, lv_slice_t key, int64_t now_ms,
                                   lv_cache_obj_t *obj, bool store, int64_t pass_ms)
{
    uint64_t h = hash_key(key);
    shard_t *s = shard_of(c, h);
    garbage_t g;
    g.entries = NULL;
    g.nobjs = 0;
    lv_cache_waiter_t *waiters = NULL;
    unsigned nwaiters = 0;
    lv_cache_obj_t *serve = NULL;
    lv_cache_woken_t how = LV_CACHE_WOKEN_FAILED;

    pthread_mutex_lock(&s->lock);
    entry_t *e = find(s, h, key);
    if (e && e->filling) {
        waiters = take_waiters(s, e, &nwaiters);
        e->filling = false;
    }
    if (obj) {
        serve = obj; /* the caller's reference, unless the cache keeps it */
        how = LV_CACHE_WOKEN_NOT_STORED;
        unsigned refs = nwaiters;
        if (!store) {
            s->n.uncacheable++;
            if (!e && pass_ms > 0)
                e = new_entry(c, s, h, key, now_ms, &g);
            if (e) {
                reset_entry(s, e, &g);
                if (pass_ms > 0) {
                    e->pass_until_ms = add_ms(now_ms, pass_ms);
                    if (e->pass_until_ms == 0) /* 0 means "no marker" */
                        e->pass_until_ms = 1;
                    fifo_push(s, e, Q_SMALL);
                }
            }
        } else if (obj->priv_size > c->max_obj) {
            s->n.too_big++;
            if (e)
                reset_entry(s, e, &g);
        } else {
            if (!e)
                e = new_entry(c, s, h, key, now_ms, &g);
            if (e) {
                reset_entry(s, e, &g);
                if (attach_obj(s, e, obj, now_ms, &g)) {
                    s->n.stores++;
                    refs++;
                    how = LV_CACHE_WOKEN_STORED;
                }
            }
        }
        obj_ref_n(obj, refs);
    } else {
        s->n.fill_failures++;
        if (e && e->obj && now_ms <= e->obj->error_until_ms) {
            serve = e->obj;
            how = LV_CACHE_WOKEN_STALE;
            obj_ref_n(serve, nwaiters + 1);
            s->n.stale_if_error += nwaiters + 1;
        } else if (e && e->obj && is_dead(e, now_ms)) {
            reset_entry(s, e, &g);
        }
    }
    if (e)
        remove_if_empty(s, e, &g);
    pthread_mutex_unlock(&s->lock);

    garbage_flush(&g);
    wake(waiters, serve, how);
    return serve;
}

bool lv_cache_wait_cancel(lv_cache_t *c, lv_cache_waiter_t *w)
{
    (void)c;
    shard_t *s = w->priv_shard;
    if (!s)
        return false;
    pthread_mutex_lock(&s->lock);
    entry_t *e = w->priv_entry;
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return false;
    }
    if (w->prev)
        w->prev->next = w->next;
    else
        e->wait_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        e->wait_tail = w->prev;
    e->nwaiters--;
    s->nwaiting--;
    w->priv_entry = NULL;
    w->next = w->prev = NULL;
    pthread_mutex_unlock(&s->lock);
    return true;
}

lv_cache_obj_t *lv_cache_get_for_error(lv_cache_t *c, lv_slice_t key, int64_t now_ms)
{
    uint64_t h = hash_key(key);
    shard_t *s = shard_of(c, h);
    lv_cache_obj_t *o = NULL;
    pthread_mutex_lock(&s->lock);
    entry_t *e = find(s, h, key);
    if (e && e->obj && now_ms <= e->obj->error_until_ms) {
        o = e->obj;
        lv_cache_obj_ref(o);
        s->n.stale_if_error++;
    }
    pthread_mutex_unlock(&s->lock);
    return o;
}

void lv_cache_stats(lv_cache_t *c, lv_cache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->max_bytes = c->max_bytes;
    out->max_object_bytes = c->max_obj;
    out->nshards = c->nshards;
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_t *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        out->bytes += s->bytes;
        out->objects += s->nobjects;
        out->entries += s->nentries;
        out->waiting += s->nwaiting;
        out->hits += s->n.hits;
        out->stale_hits += s->n.stale_hits;
        out->refreshes += s->n.refreshes;
        out->misses += s->n.misses;
        out->waits += s->n.waits;
        out->passes += s->n.passes;
        out->stores += s->n.stores;
        out->uncacheable += s->n.uncacheable;
        out->too_big += s->n.too_big;
        out->fill_failures += s->n.fill_failures;
        out->stale_if_error += s->n.stale_if_error;
        out->lock_takeovers += s->n.lock_takeovers;
        out->evictions += s->n.evictions;
        out->ghost_hits += s->n.ghost_hits;
        pthread_mutex_unlock(&s->lock);
    }
    /* the ghost tables are charged too: they come out of max_bytes */
    for (unsigned i = 0; i < c->nshards; i++)
        out->bytes += ((size_t)c->shards[i].ghost_set_mask + 1) * GHOST_WAYS * sizeof(ghost_slot_t);
}

void lv_cache_free(lv_cache_t *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_t *s = &c->shards[i];
        for (size_t b = 0; b <= s->bucket_mask; b++) {
            entry_t *e = s->buckets[b];
            while (e) {
                entry_t *next = e->hnext;
                unsigned n;
                wake(take_waiters(s, e, &n), NULL, LV_CACHE_WOKEN_FAILED);
                lv_cache_obj_unref(e->obj);
                free(e);
                e = next;
            }
        }
        free(s->buckets);
        free(s->ghost);
        pthread_mutex_destroy(&s->lock);
    }
    free(c->shards);
    free(c);
}
