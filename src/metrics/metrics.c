/* metrics.c: the registry behind metrics.h. It covers slot pages,
 * registration with validation, and the Prometheus text and JSON renderers.
 *
 * Slots live in pages. A page holds nthreads + 1 blocks of PAGE_SLOTS slots:
 * one block per loop thread, and the last one shared. Each block starts on a
 * 128-byte boundary and is a multiple of 128 bytes long. So two
 * threads never write the same cache line, nor the pair of lines that the
 * adjacent-line prefetcher pulls in together. A series takes the same slot
 * range in every block. Thread t's updates to many series therefore stay
 * inside t's own lines, and a scrape walks the blocks to sum them. Pages never
 * move and are freed only with the registry, so handles point straight into
 * them. Registering a series later, while other threads update theirs, is
 * therefore safe.
 *
 * Families are kept in a list in registration order, because there are few of
 * them. Series are also found by a hash of name and labels, so registering
 * thousands of (route, status class) series stays linear. */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/slice.h"

#define LINE_SLOTS 16                       /* 128 bytes: a pair of cache lines */
#define PAGE_SLOTS LV_METRICS_BLOCK_SLOTS_ /* per block */
#define MAX_LABELS 32

_Static_assert(PAGE_SLOTS % LINE_SLOTS == 0, "blocks must stay line-aligned");
_Static_assert(LV_METRICS_MAX_BOUNDS + 2 <= PAGE_SLOTS, "a histogram must fit in one page block");
_Static_assert(LV_METRICS_MAX_BOUNDS <= UINT8_MAX, "octave_start_ holds bucket indexes in a byte");

const double lv_metrics_latency_buckets[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10,
};
const size_t lv_metrics_latency_nbuckets = sizeof lv_metrics_latency_buckets / sizeof lv_metrics_latency_buckets[0];

_Thread_local unsigned lv_metrics_thread_slot_ = LV_METRICS_SHARED_SLOT;

typedef enum { FAMILY_COUNTER, FAMILY_GAUGE, FAMILY_HISTOGRAM } family_type_t;

typedef enum { SERIES_COUNTER, SERIES_COUNTER_FN, SERIES_GAUGE, SERIES_GAUGE_FN, SERIES_HISTOGRAM } series_kind_t;

/* Computed at scrape time by a callback rather than updated by threads. */
static bool is_computed(series_kind_t kind)
{
    return kind == SERIES_GAUGE_FN || kind == SERIES_COUNTER_FN;
}

typedef struct page {
    struct page *next;
    _Atomic uint64_t *slots; /* (nthreads + 1) * PAGE_SLOTS, zeroed */
    size_t used;             /* slots taken in each block */
} page_t;

typedef struct family family_t;

/* One series. The registry owns it, its labels, its handle and its bounds. */
typedef struct series {
    series_kind_t kind;
    family_t *family; /* NULL: rejected at registration, never rendered */
    char *labels;     /* validated unless rejected; "" for none */
    void *handle;     /* lv_counter_t, lv_gauge_t or lv_histogram_t; NULL for gauge_fn */
    double (*fn)(void *arg);
    void *arg;
    double *bounds; /* histogram bounds in seconds, as rendered in le="" */
    size_t nbounds;
    struct series *next; /* in its family, or in the rejected list */
} series_t;

struct family {
    char *name, *help;
    family_type_t type;
    series_t *first, **tail;
    family_t *next;
};

struct lv_metrics {
    pthread_mutex_t lock; /* registration and rendering; never taken by updates */
    unsigned nthreads;
    family_t *families, **families_tail;
    series_t *rejected;
    page_t *pages;     /* every page, newest first */
    page_t *open_page; /* where the next series' slots go */
    series_t **table;  /* open addressing, keyed by family name and labels */
    size_t table_cap, table_used;
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};
static const char *const histogram_suffixes[] = {"_bucket", "_sum", "_count"};
static const char utf8_replacement[] = "\xEF\xBF\xBD"; /* U+FFFD, what invalid UTF-8 becomes */

/* ---- Memory ---- */

static void *zalloc_aligned(size_t align, size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1) != 0) {
        lv_log_error("metrics", "out of memory allocating %zu bytes", size);
        abort();
    }
    memset(p, 0, size);
    return p;
}

/* Memory with whole cache lines to itself, for data every thread reads on
 * every update: no neighbouring allocation that gets written can share them. */
static void *zalloc_lines(size_t size)
{
    return zalloc_aligned(64, (size + 63) / 64 * 64);
}

static lv_metrics_slots_t take_slots(lv_metrics_t *m, size_t n)
{
    page_t *pg = m->open_page;
    if (!pg || pg->used + n > PAGE_SLOTS) {
        pg = lv_calloc(1, sizeof *pg);
        pg->slots = zalloc_aligned(LINE_SLOTS * sizeof(uint64_t),
                                   (size_t)(m->nthreads + 1) * PAGE_SLOTS * sizeof(uint64_t));
        pg->next = m->pages;
        m->pages = pg;
        m->open_page = pg;
    }
    lv_metrics_slots_t s = {pg->slots + pg->used, m->nthreads};
    pg->used += n;
    return s;
}

static uint64_t sum_slot(const lv_metrics_slots_t *s, size_t offset)
{
    uint64_t total = 0;
    for (unsigned t = 0; t <= s->nthreads; t++)
        total += atomic_load_explicit(s->first + (size_t)t * PAGE_SLOTS + offset, memory_order_relaxed);
    return total;
}

/* ---- Validation ---- */

static bool is_label_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_label_char(char c)
{
    return is_label_start(c) || (c >= '0' && c <= '9');
}

static bool valid_metric_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        if (!(is_label_start(s[i]) || s[i] == ':' || (i > 0 && s[i] >= '0' && s[i] <= '9')))
            return false;
    }
    return true;
}

/* Length of the well-formed UTF-8 character at p, or 0. Continuation bytes
 * are checked one at a time, so a NUL stops the check before anything past it
 * is read. Overlong forms, surrogates and code points above U+10FFFF are
 * rejected, as the Prometheus parser would reject them. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

/* A copy of s in which every byte that is not part of well-formed UTF-8
 * becomes U+FFFD, so HELP text can never make the exposition undecodable. */
static char *utf8_sanitized(const char *s)
{
    lv_buf_t b = LV_BUF_INIT;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len = utf8_len(p);
        lv_buf_append(&b, len ? (const char *)p : utf8_replacement, len ? len : 3);
        p += len ? len : 1;
    }
    lv_buf_append(&b, "", 1);
    return b.data;
}

/* Checks a label set such as `a="x",b="y\"z"`. The caller builds it by hand,
 * so whatever it contains is checked against the exposition grammar before
 * it can reach /metrics. On failure *why says what is wrong. */
static bool valid_labels(const char *s, bool histogram, const char **why)
{
    lv_slice_t names[MAX_LABELS];
    size_t count = 0;
    const char *p = s;
    if (!*p)
        return true;
    for (;;) {
        const char *start = p;
        if (!is_label_start(*p)) {
            *why = "label name expected";
            return false;
        }
        while (is_label_char(*p))
            p++;
        lv_slice_t name = lv_slice(start, (size_t)(p - start));
        if (name.len >= 2 && start[0] == '_' && start[1] == '_') {
            *why = "label names starting with __ are reserved";
            return false;
        }
        if (histogram && lv_slice_eq_cstr(name, "le")) {
            *why = "the label name le is reserved for histogram buckets";
            return false;
        }
        for (size_t i = 0; i < count; i++) {
            if (lv_slice_eq(names[i], name)) {
                *why = "duplicate label name";
                return false;
            }
        }
        if (count == MAX_LABELS) {
            *why = "too many labels";
            return false;
        }
        names[count++] = name;
        if (*p != '=') {
            *why = "'=' expected after a label name";
            return false;
        }
        p++;
        if (*p != '"') {
            *why = "label values must be double-quoted";
            return false;
        }
        p++;
        for (;;) {
            if (*p == '"') {
                p++;
                break;
            }
            if (*p == '\0') {
                *why = "unterminated label value";
                return false;
            }
            if (*p == '\n') {
                *why = "raw newline in a label value (escape it as \\n)";
                return false;
            }
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') {
                    *why = "bad escape in a label value (only \\\\, \\\" and \\n)";
                    return false;
                }
                p += 2;
                continue;
            }
            size_t len = utf8_len((const unsigned char *)p);
            if (!len) {
                *why = "label value is not valid UTF-8";
                return false;
            }
            p += len;
        }
        if (*p == '\0')
            return true;
        if (*p != ',') {
            *why = "',' expected between labels";
            return false;
        }
        p++;
    }
}

/* Keeps the bounds a histogram can use: finite, >= 0 and rising, and at most
 * LV_METRICS_MAX_BOUNDS of them. Returns how many were kept in out. */
static size_t clean_bounds(const char *name, const double *in, size_t n, double *out)
{
    size_t kept = 0;
    bool dropped = false;
    if (!in && n) {
        dropped = true;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        double b = in[i];
        if (!isfinite(b) || b < 0 || (kept && b <= out[kept - 1]) || kept == LV_METRICS_MAX_BOUNDS) {
            dropped = true;
            continue;
        }
        out[kept++] = b == 0 ? 0.0 : b; /* no "-0" in le="" */
    }
    if (dropped)
        lv_log_warn("metrics", "%s: dropped histogram bounds that are not finite, >= 0 and rising (or past %u)",
                    name ? name : "(null)", LV_METRICS_MAX_BOUNDS);
    return kept;
}

static uint64_t seconds_to_ns(double seconds)
{
    double ns = seconds * 1e9 + 0.5;
    return ns >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)ns;
}

/* ---- Lookup ---- */

static family_t *find_family(const lv_metrics_t *m, const char *name)
{
    for (family_t *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

/* True when a new family would produce sample names that another family
 * already uses: foo_count next to a histogram foo, or the reverse. */
static bool clashes_with_histogram(const lv_metrics_t *m, const char *name, family_type_t type)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof histogram_suffixes / sizeof histogram_suffixes[0]; i++) {
        const char *sfx = histogram_suffixes[i];
        size_t sl = strlen(sfx);
        for (const family_t *f = m->families; f; f = f->next) {
            size_t fl = strlen(f->name);
            if (f->type == FAMILY_HISTOGRAM && len == fl + sl && memcmp(name, f->name, fl) == 0 &&
                strcmp(name + fl, sfx) == 0)
                return true;
            if (type == FAMILY_HISTOGRAM && fl == len + sl && memcmp(f->name, name, len) == 0 &&
                strcmp(f->name + len, sfx) == 0)
                return true;
        }
    }
    return false;
}

static uint64_t hash_key(const char *name, const char *labels)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xFF) * 1099511628211ull; /* 0xFF never occurs in names or UTF-8 */
    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* The table slot holding the series (name, labels), or the empty slot where
 * it would go. The table is never full (see table_insert). */
static series_t **table_slot(const lv_metrics_t *m, const char *name, const char *labels)
{
    size_t mask = m->table_cap - 1;
    for (size_t i = hash_key(name, labels) & mask;; i = (i + 1) & mask) {
        series_t *s = m->table[i];
        if (!s || (strcmp(s->family->name, name) == 0 && strcmp(s->labels, labels) == 0))
            return &m->table[i];
    }
}

static void table_insert(lv_metrics_t *m, series_t *s)
{
    if ((m->table_used + 1) * 2 > m->table_cap) {
        series_t **old = m->table;
        size_t old_cap = m->table_cap;
        m->table_cap = old_cap ? old_cap * 2 : 64;
        m->table = lv_calloc(m->table_cap, sizeof *m->table);
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i])
                *table_slot(m, old[i]->family->name, old[i]->labels) = old[i];
        }
        free(old);
    }
    *table_slot(m, s->family->name, s->labels) = s;
    m->table_used++;
}

/* ---- Registration ---- */

static family_type_t family_type_of(series_kind_t kind)
{
    switch (kind) {
    case SERIES_COUNTER:
    case SERIES_COUNTER_FN:
        return FAMILY_COUNTER;
    case SERIES_GAUGE:
    case SERIES_GAUGE_FN:
        return FAMILY_GAUGE;
    case SERIES_HISTOGRAM:
        break;
    }
    return FAMILY_HISTOGRAM;
}

/* Fills the octave table that lv_histogram_observe_ns starts from (see
 * metrics.h). Octave k >= 2 is [2^(k-1), 2^k) and octave 1 is [0, 2). */
static void index_octaves(lv_histogram_t *h)
{
    size_t below = 0;
    h->octave_steps_ = 0;
    for (unsigned k = 1; k <= 64; k++) {
        uint64_t low = k == 1 ? 0 : (uint64_t)1 << (k - 1);
        while (below < h->nbounds_ && h->bounds_ns_[below] < low)
            below++;
        size_t inside = below;
        while (inside < h->nbounds_ && (k == 64 || h->bounds_ns_[inside] < (uint64_t)1 << k))
            inside++;
        h->octave_start_[k] = (uint8_t)below;
        if (inside - below > h->octave_steps_)
            h->octave_steps_ = (uint32_t)(inside - below);
    }
}

static series_t *new_series(lv_metrics_t *m, series_kind_t kind, const char *labels, const double *bounds,
                            size_t nbounds)
{
    series_t *s = lv_calloc(1, sizeof *s);
    s->kind = kind;
    s->labels = lv_strdup(labels);
    switch (kind) {
    case SERIES_COUNTER: {
        lv_counter_t *c = zalloc_lines(sizeof *c);
        c->slots_ = take_slots(m, 1);
        s->handle = c;
        break;
    }
    case SERIES_GAUGE: {
        lv_gauge_t *g = zalloc_lines(sizeof *g);
        g->slots_ = take_slots(m, 1);
        s->handle = g;
        break;
    }
    case SERIES_HISTOGRAM: {
        lv_histogram_t *h = zalloc_lines(sizeof *h + (nbounds + 1) * sizeof(uint64_t));
        h->slots_ = take_slots(m, nbounds + 2);
        h->nbounds_ = (uint32_t)nbounds;
        for (size_t i = 0; i < nbounds; i++)
            h->bounds_ns_[i] = seconds_to_ns(bounds[i]);
        h->bounds_ns_[nbounds] = UINT64_MAX;
        index_octaves(h);
        s->bounds = lv_malloc(nbounds * sizeof(double));
        if (nbounds)
            memcpy(s->bounds, bounds, nbounds * sizeof(double));
        s->nbounds = nbounds;
        s->handle = h;
        break;
    }
    case SERIES_GAUGE_FN:
    case SERIES_COUNTER_FN:
        break;
    }
    return s;
}

static bool same_bounds(const series_t *s, const double *bounds, size_t nbounds)
{
    return s->nbounds == nbounds && (nbounds == 0 || memcmp(s->bounds, bounds, nbounds * sizeof(double)) == 0);
}

/* Finds or creates the series. Whatever goes wrong, the caller gets a
 * series whose handle works. When the registration cannot be exported it is
 * kept on the rejected list and never rendered. */
static series_t *register_series(lv_metrics_t *m, series_kind_t kind, const char *name, const char *help,
                                 const char *labels, const double *raw_bounds, size_t raw_nbounds,
                                 double (*fn)(void *), void *arg)
{
    double bounds[LV_METRICS_MAX_BOUNDS];
    size_t nbounds = kind == SERIES_HISTOGRAM ? clean_bounds(name, raw_bounds, raw_nbounds, bounds) : 0;
    family_type_t type = family_type_of(kind);
    const char *why = NULL;
    if (!labels)
        labels = "";
    if (!valid_metric_name(name))
        why = "invalid metric name";
    else
        valid_labels(labels, kind == SERIES_HISTOGRAM, &why);

    pthread_mutex_lock(&m->lock);
    family_t *f = why ? NULL : find_family(m, name);
    if (f && f->type != type)
        why = "already registered with another type";
    if (!why && !f && clashes_with_histogram(m, name, type))
        why = "its sample names clash with a histogram's _bucket/_sum/_count";
    if (f && !why) {
        if (help && strcmp(help, f->help) != 0)
            lv_log_warn("metrics", "%s: registered again with another help text; keeping the first", name);
        series_t *s = *table_slot(m, name, labels);
        if (s && (is_computed(s->kind) != is_computed(kind))) {
            why = "already registered as a series of the other kind (updated vs computed)";
        } else if (s) {
            if (kind == SERIES_HISTOGRAM && !same_bounds(s, bounds, nbounds))
                lv_log_warn("metrics", "%s%s%s%s: registered again with other bounds; keeping the first", name,
                            *labels ? "{" : "", labels, *labels ? "}" : "");
            if (is_computed(kind)) {
                s->fn = fn;
                s->arg = arg;
            }
            pthread_mutex_unlock(&m->lock);
            return s;
        }
    }

    series_t *s = new_series(m, kind, why ? "" : labels, bounds, nbounds);
    s->fn = fn;
    s->arg = arg;
    if (why) {
        lv_log_error("metrics", "%.200s%s%.200s%s: %s; it will not be exported", name ? name : "(null)",
                     *labels ? "{" : "", labels, *labels ? "}" : "", why);
        s->next = m->rejected;
        m->rejected = s;
        pthread_mutex_unlock(&m->lock);
        return s;
    }
    if (!f) {
        f = lv_calloc(1, sizeof *f);
        f->name = lv_strdup(name);
        f->help = utf8_sanitized(help ? help : "");
        f->type = type;
        f->tail = &f->first;
        *m->families_tail = f;
        m->families_tail = &f->next;
    }
    s->family = f;
    *f->tail = s;
    f->tail = &s->next;
    table_insert(m, s);
    pthread_mutex_unlock(&m->lock);
    return s;
}

lv_counter_t *lv_metrics_counter(lv_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return register_series(m, SERIES_COUNTER, name, help, labels, NULL, 0, NULL, NULL)->handle;
}

lv_gauge_t *lv_metrics_gauge(lv_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return register_series(m, SERIES_GAUGE, name, help, labels, NULL, 0, NULL, NULL)->handle;
}

void lv_metrics_counter_fn(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                           double (*fn)(void *arg), void *arg)
{
    register_series(m, SERIES_COUNTER_FN, name, help, labels, NULL, 0, fn, arg);
}

void lv_metrics_gauge_fn(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                         double (*fn)(void *arg), void *arg)
{
    register_series(m, SERIES_GAUGE_FN, name, help, labels, NULL, 0, fn, arg);
}

lv_histogram_t *lv_metrics_histogram(lv_metrics_t *m, const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds)
{
    return register_series(m, SERIES_HISTOGRAM, name, help, labels, bounds, nbounds, NULL, NULL)->handle;
}

/* ---- Life cycle and readers ---- */

lv_metrics_t *lv_metrics_new(unsigned nthreads)
{
    lv_metrics_t *m = lv_calloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->nthreads = nthreads < LV_METRICS_MAX_THREADS ? nthreads : LV_METRICS_MAX_THREADS;
    m->families_tail = &m->families;
    return m;
}

static void free_series_list(series_t *s)
{
    while (s) {
        series_t *next = s->next;
        free(s->labels);
        free(s->handle);
        free(s->bounds);
        free(s);
        s = next;
    }
}

void lv_metrics_free(lv_metrics_t *m)
{
    if (!m)
        return;
    for (family_t *f = m->families, *next; f; f = next) {
        next = f->next;
        free_series_list(f->first);
        free(f->name);
        free(f->help);
        free(f);
    }
    free_series_list(m->rejected);
    for (page_t *pg = m->pages, *next; pg; pg = next) {
        next = pg->next;
        free((void *)pg->slots);
        free(pg);
    }
    free(m->table);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void lv_metrics_thread_init(unsigned index)
{
    lv_metrics_thread_slot_ = index;
}

uint64_t lv_counter_value(const lv_counter_t *c)
{
    return sum_slot(&c->slots_, 0);
}

int64_t lv_gauge_value(const lv_gauge_t *g)
{
    return (int64_t)sum_slot(&g->slots_, 0);
}

uint64_t lv_histogram_count(const lv_histogram_t *h)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= h->nbounds_; i++)
        total += sum_slot(&h->slots_, i);
    return total;
}

uint64_t lv_histogram_sum_ns(const lv_histogram_t *h)
{
    return sum_slot(&h->slots_, h->nbounds_ + 1);
}

/* ---- Rendering ---- */

/* The shortest text that reads back as exactly v, in the forms Prometheus
 * accepts: "NaN", "+Inf", "-Inf" or a decimal/exponent number. (%g follows
 * LC_NUMERIC; levee never calls setlocale, so the point stays a '.'.) */
static const char *format_double(double v, char buf[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, 32, "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static void append_i64(lv_buf_t *out, int64_t v)
{
    if (v < 0) {
        lv_buf_append(out, "-", 1);
        lv_buf_append_u64(out, 0 - (uint64_t)v);
    } else {
        lv_buf_append_u64(out, (uint64_t)v);
    }
}

/* Exact decimal seconds from ns, trailing zeros dropped: 1500000 -> 0.0015. */
static void append_seconds(lv_buf_t *out, uint64_t ns)
{
    char frac[16];
    lv_buf_append_u64(out, ns / 1000000000u);
    uint64_t rest = ns % 1000000000u;
    if (!rest)
        return;
    int n = snprintf(frac, sizeof frac, ".%09llu", (unsigned long long)rest);
    while (n > 1 && frac[n - 1] == '0')
        n--;
    lv_buf_append(out, frac, (size_t)n);
}

static void append_help(lv_buf_t *out, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            lv_buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            lv_buf_append(out, "\\n", 2);
        else
            lv_buf_append(out, p, 1);
    }
}

/* name + suffix + {labels[,le="le"]}, then a space. */
static void append_sample_name(lv_buf_t *out, const char *name, const char *suffix, const char *labels,
                               const char *le)
{
    lv_buf_append_str(out, name);
    lv_buf_append_str(out, suffix);
    if (*labels || le) {
        lv_buf_append(out, "{", 1);
        lv_buf_append_str(out, labels);
        if (le) {
            if (*labels)
                lv_buf_append(out, ",", 1);
            lv_buf_append_str(out, "le=\"");
            lv_buf_append_str(out, le);
            lv_buf_append(out, "\"", 1);
        }
        lv_buf_append(out, "}", 1);
    }
    lv_buf_append(out, " ", 1);
}

static void render_histogram(lv_buf_t *out, const family_t *f, const series_t *s)
{
    const lv_histogram_t *h = s->handle;
    uint64_t cumulative = 0;
    char le[32];
    /* Each bucket is read once and _count is their total, so the output is
     * consistent (cumulative, +Inf == _count) even while threads observe. */
    for (size_t i = 0; i <= h->nbounds_; i++) {
        cumulative += sum_slot(&h->slots_, i);
        const char *bound = i < h->nbounds_ ? format_double(s->bounds[i], le) : "+Inf";
        append_sample_name(out, f->name, "_bucket", s->labels, bound);
        lv_buf_append_u64(out, cumulative);
        lv_buf_append(out, "\n", 1);
    }
    append_sample_name(out, f->name, "_sum", s->labels, NULL);
    append_seconds(out, lv_histogram_sum_ns(h));
    lv_buf_append(out, "\n", 1);
    append_sample_name(out, f->name, "_count", s->labels, NULL);
    lv_buf_append_u64(out, cumulative);
    lv_buf_append(out, "\n", 1);
}

/* The value of a counter or gauge series, as a number valid in both
 * formats. A computed gauge that is NaN or infinite gets nan_text. */
static void append_value(lv_buf_t *out, const series_t *s, const char *nan_text)
{
    char tmp[32];
    switch (s->kind) {
    case SERIES_COUNTER:
        lv_buf_append_u64(out, lv_counter_value(s->handle));
        break;
    case SERIES_GAUGE:
        append_i64(out, lv_gauge_value(s->handle));
        break;
    case SERIES_GAUGE_FN:
    case SERIES_COUNTER_FN: {
        double v = s->fn ? s->fn(s->arg) : NAN;
        lv_buf_append_str(out, nan_text && !isfinite(v) ? nan_text : format_double(v, tmp));
        break;
    }
    case SERIES_HISTOGRAM:
        break;
    }
}

void lv_metrics_render(lv_metrics_t *m, lv_buf_t *out)
{
    pthread_mutex_lock(&m->lock);
    for (const family_t *f = m->families; f; f = f->next) {
        lv_buf_append_str(out, "# HELP ");
        lv_buf_append_str(out, f->name);
        lv_buf_append(out, " ", 1);
        append_help(out, f->help);
        lv_buf_append_str(out, "\n# TYPE ");
        lv_buf_append_str(out, f->name);
        lv_buf_append(out, " ", 1);
        lv_buf_append_str(out, type_names[f->type]);
        lv_buf_append(out, "\n", 1);
        for (const series_t *s = f->first; s; s = s->next) {
            if (s->kind == SERIES_HISTOGRAM) {
                render_histogram(out, f, s);
                continue;
            }
            append_sample_name(out, f->name, "", s->labels, NULL);
            append_value(out, s, NULL);
            lv_buf_append(out, "\n", 1);
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* Labels are valid UTF-8 (checked at registration), so only quotes,
 * backslashes and control bytes need escaping to make a JSON string. */
static void append_json_escaped(lv_buf_t *out, const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            lv_buf_append(out, esc, 2);
        } else if (c < 0x20) {
            lv_buf_printf(out, "\\u%04x", c);
        } else {
            lv_buf_append(out, p, 1);
        }
    }
}

void lv_metrics_render_json(lv_metrics_t *m, lv_buf_t *out)
{
    bool first = true;
    lv_buf_append(out, "{", 1);
    pthread_mutex_lock(&m->lock);
    for (const family_t *f = m->families; f; f = f->next) {
        for (const series_t *s = f->first; s; s = s->next) {
            if (s->kind == SERIES_HISTOGRAM)
                continue;
            lv_buf_append_str(out, first ? "\"" : ",\"");
            first = false;
            lv_buf_append_str(out, f->name);
            if (*s->labels) {
                lv_buf_append(out, "{", 1);
                append_json_escaped(out, s->labels);
                lv_buf_append(out, "}", 1);
            }
            lv_buf_append(out, "\":", 2);
            append_value(out, s, "null");
        }
    }
    pthread_mutex_unlock(&m->lock);
    lv_buf_append(out, "}", 1);
}

/* ---- Label escaping ---- */

const char *lv_metrics_label_escape(const char *value, char *out, size_t outlen)
{
    if (!out || !outlen)
        return "";
    const unsigned char *p = (const unsigned char *)(value ? value : "");
    size_t used = 0;
    while (*p) {
        const char *piece;
        size_t n, consumed = 1;
        char esc[2] = {'\\', 0};
        if (*p == '\\' || *p == '"' || *p == '\n') {
            esc[1] = *p == '\n' ? 'n' : (char)*p;
            piece = esc;
            n = 2;
        } else if ((n = utf8_len(p)) != 0) {
            piece = (const char *)p;
            consumed = n;
        } else {
            piece = utf8_replacement;
            n = 3;
        }
        if (n > outlen - 1 - used)
            break;
        memcpy(out + used, piece, n);
        used += n;
        p += consumed;
    }
    out[used] = '\0';
    return out;
}
