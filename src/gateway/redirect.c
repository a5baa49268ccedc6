/* redirect.c: loading and looking up the redirect table of redirect.h.
 *
 * Loading reads the whole file into one buffer and parses it in place: each
 * valid row's code and URL (unquoted where needed) are moved down to the
 * end of the rows kept so far, so the buffer becomes the arena without a
 * second copy, and is shrunk to size at the end. This works because a row
 * never takes more room in the arena than it did in the file: the comma,
 * quotes and line end are dropped, and "" becomes one byte. Each row is
 * inserted into the hash table a few rows after it is parsed (so that the
 * cache misses of inserting overlap; see queue_row), which is also when
 * duplicates are found; a scratch array parallel to the slots remembers each
 * row's line number for that message and is freed once loading is done.
 *
 * The table is sized from a count of the file's lines so that a normal file
 * is loaded without rehashing; the estimate is capped by the file size so a
 * file of nothing but line breaks cannot ask for a huge table (it grows by
 * doubling instead, should rows really be that short). Slot positions come
 * from the high 32 bits of the hash (multiply-shift onto any capacity, so
 * the table need not be a power of two and can stay close to 70% full); the
 * low 32 bits are kept in the slot to skip most non-matching codes without
 * touching the arena. */
#include "gateway/redirect.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/mem.h"

/* One row. code_len 0 marks a free slot: codes are never empty. */
typedef struct {
    uint32_t tag;      /* low 32 bits of the code's hash */
    uint32_t off;      /* arena offset of the code; the URL follows it */
    uint32_t url_len;
    uint16_t code_len;
    uint16_t unused;
} slot_t;

struct lv_redirect_table {
    char *arena;
    size_t arena_len;
    slot_t *slots;
    size_t cap;
    size_t count;
};

/* Rows are kept at most this full (in tenths) so probe runs stay short. */
#define MAX_LOAD_TENTHS 7
/* Rows are assumed to average at least this many bytes when sizing the
 * table up front; shorter rows only cost a rehash. */
#define MIN_EXPECTED_ROW_BYTES 16
/* How much of a code a message quotes. */
#define CODE_SHOWN 60

/* Asks for transparent huge pages over the 2 MiB-aligned part of a large
 * allocation that has not been touched yet. Lookups and inserts land at
 * random across tens of MB, where 4 KiB pages make nearly every access a
 * TLB miss as well as a cache miss. Advice only: failure changes nothing. */
static void advise_huge_pages(void *p, size_t len)
{
    const uintptr_t huge = 2u << 20;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + len) & ~(huge - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
}

static size_t slot_index(uint64_t hash, size_t cap)
{
    return (size_t)(((hash >> 32) * (uint64_t)cap) >> 32);
}

/* ---- lookup ------------------------------------------------------------ */

bool lv_redirect_table_lookup(const lv_redirect_table_t *t, lv_slice_t code, lv_slice_t *url)
{
    if (!t || t->count == 0 || code.len == 0 || code.len > LV_REDIRECT_CODE_MAX)
        return false;
    uint64_t h = XXH3_64bits(code.ptr, code.len);
    uint32_t tag = (uint32_t)h;
    for (size_t i = slot_index(h, t->cap);;) {
        const slot_t *s = &t->slots[i];
        if (s->code_len == 0)
            return false;
        if (s->tag == tag && s->code_len == code.len && memcmp(t->arena + s->off, code.ptr, code.len) == 0) {
            *url = lv_slice(t->arena + s->off + s->code_len, s->url_len);
            return true;
        }
        if (++i == t->cap)
            i = 0;
    }
}

size_t lv_redirect_table_count(const lv_redirect_table_t *t)
{
    return t ? t->count : 0;
}

size_t lv_redirect_table_memory(const lv_redirect_table_t *t)
{
    return t ? sizeof(*t) + t->arena_len + t->cap * sizeof(slot_t) : 0;
}

void lv_redirect_table_foreach(const lv_redirect_table_t *t,
                               void (*fn)(void *ctx, lv_slice_t code, lv_slice_t url), void *ctx)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        const slot_t *s = &t->slots[i];
        if (s->code_len)
            fn(ctx, lv_slice(t->arena + s->off, s->code_len),
               lv_slice(t->arena + s->off + s->code_len, s->url_len));
    }
}

void lv_redirect_table_free(lv_redirect_table_t *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->slots);
    free(t);
}

/* ---- parsing ----------------------------------------------------------- */

/* A parsed row waiting to be inserted (see queue_row). */
typedef struct {
    uint64_t hash;
    uint32_t off, url_len, line;
    uint16_t code_len;
} pending_t;

/* Rows in flight between parsing and insertion: enough to cover a memory
 * access's latency with the parsing of the rows that follow. */
#define PIPELINE 16

typedef struct {
    char *buf;            /* the CSV; rows are compacted into buf[0..w) */
    size_t len;
    size_t w;
    size_t line;          /* of the line being parsed, from 1 */
    bool header_possible; /* no row seen yet */
    uint32_t *lines;      /* line of the row in each slot */
    pending_t pending[PIPELINE];
    size_t pending_head, num_pending;
    lv_redirect_table_t *t;
    char *err;
    size_t errlen;
} parser_t;

static int fail(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(parser_t *p, const char *fmt, ...)
{
    if (!p->err || p->errlen == 0)
        return -1;
    int n = snprintf(p->err, p->errlen, "line %zu: ", p->line);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void table_alloc(parser_t *p, size_t cap)
{
    p->t->cap = cap;
    p->t->slots = lv_calloc(cap, sizeof(slot_t));
    advise_huge_pages(p->t->slots, cap * sizeof(slot_t));
    p->lines = lv_malloc(cap * sizeof(uint32_t));
    advise_huge_pages(p->lines, cap * sizeof(uint32_t));
}

/* Doubles the table, re-placing every row (hashes are recomputed from the
 * arena: cheaper than storing them for the rare file that needs this). */
static void table_grow(parser_t *p)
{
    lv_redirect_table_t *t = p->t;
    slot_t *old = t->slots;
    uint32_t *old_lines = p->lines;
    size_t old_cap = t->cap;
    table_alloc(p, old_cap * 2);
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].code_len)
            continue;
        size_t j = slot_index(XXH3_64bits(p->buf + old[i].off, old[i].code_len), t->cap);
        while (t->slots[j].code_len)
            if (++j == t->cap)
                j = 0;
        t->slots[j] = old[i];
        p->lines[j] = old_lines[i];
    }
    free(old);
    free(old_lines);
}

/* Puts a row into the table, or fails if its code is already there. */
static int table_insert(parser_t *p, const pending_t *row)
{
    lv_redirect_table_t *t = p->t;
    if ((t->count + 1) * 10 > t->cap * MAX_LOAD_TENTHS)
        table_grow(p);
    const char *code = p->buf + row->off;
    size_t i = slot_index(row->hash, t->cap);
    for (; t->slots[i].code_len; i = i + 1 == t->cap ? 0 : i + 1) {
        const slot_t *s = &t->slots[i];
        if (s->tag == (uint32_t)row->hash && s->code_len == row->code_len &&
            memcmp(p->buf + s->off, code, row->code_len) == 0) {
            p->line = row->line; /* parsing stops here, so the message may claim the line */
            size_t shown = row->code_len < CODE_SHOWN ? row->code_len : CODE_SHOWN;
            return fail(p, "duplicate code \"%.*s%s\" (first on line %u)", (int)shown, code,
                        row->code_len > CODE_SHOWN ? "..." : "", p->lines[i]);
        }
    }
    t->slots[i] = (slot_t){(uint32_t)row->hash, row->off, row->url_len, row->code_len, 0};
    p->lines[i] = row->line;
    t->count++;
    return 0;
}

/* Inserts the oldest pending row. */
static int insert_oldest(parser_t *p)
{
    const pending_t *row = &p->pending[p->pending_head];
    p->pending_head = (p->pending_head + 1) % PIPELINE;
    p->num_pending--;
    return table_insert(p, row);
}

/* Inserts every pending row, in file order. */
static int drain(parser_t *p)
{
    while (p->num_pending)
        if (insert_oldest(p) < 0)
            return -1;
    return 0;
}

/* Queues the row whose code is at buf[w..w+code_len) and URL right after.
 * Inserting a row means reading a random slot, a cache miss on any big
 * table; prefetching the slot now and inserting PIPELINE rows later lets
 * those misses overlap instead of being paid one after another. Rows are
 * still inserted in file order, so the first duplicate is found as it would
 * be without the delay; a parse error drains the queue before it is
 * reported so that an earlier duplicate wins. */
static int queue_row(parser_t *p, size_t code_len, size_t url_len)
{
    if (p->num_pending == PIPELINE && insert_oldest(p) < 0)
        return -1;
    uint64_t h = XXH3_64bits(p->buf + p->w, code_len);
    size_t i = slot_index(h, p->t->cap);
    __builtin_prefetch(&p->t->slots[i], 1);
    __builtin_prefetch(&p->lines[i], 1);
    p->pending[(p->pending_head + p->num_pending++) % PIPELINE] =
        (pending_t){h, (uint32_t)p->w, (uint32_t)url_len, (uint32_t)p->line, (uint16_t)code_len};
    return 0;
}

/* Parses the field starting at *pos on a line ending at end. A quoted field
 * is unquoted in place, starting where its opening quote was. On success
 * *start and *len give the field's bytes and *pos is at the ',' after it or
 * at end. */
static int parse_field(parser_t *p, size_t *pos, size_t end, size_t *start, size_t *len)
{
    char *buf = p->buf;
    size_t i = *pos;
    if (i < end && buf[i] == '"') {
        size_t out = i;
        i++;
        for (;;) {
            const char *q = memchr(buf + i, '"', end - i);
            if (!q)
                return fail(p, "unterminated quote");
            size_t qi = (size_t)(q - buf);
            memmove(buf + out, buf + i, qi - i);
            out += qi - i;
            if (qi + 1 < end && buf[qi + 1] == '"') {
                buf[out++] = '"';
                i = qi + 2;
                continue;
            }
            i = qi + 1;
            break;
        }
        if (i < end && buf[i] != ',') {
            unsigned char c = (unsigned char)buf[i];
            if (c > 0x20 && c < 0x7f)
                return fail(p, "unexpected '%c' after a closing quote", c);
            return fail(p, "unexpected byte 0x%02X after a closing quote", c);
        }
        *start = *pos;
        *len = out - *pos;
        *pos = i;
        return 0;
    }
    const char *comma = memchr(buf + i, ',', end - i);
    size_t fend = comma ? (size_t)(comma - buf) : end;
    if (memchr(buf + i, '"', fend - i))
        return fail(p, "quote inside an unquoted field (quote the whole field and double the quote)");
    *start = i;
    *len = fend - i;
    *pos = fend;
    return 0;
}

/* Case-insensitive prefix test against a lower-case prefix of letters, ':'
 * and '/'. OR-ing 0x20 lower-cases letters and leaves ':' and '/' alone; the
 * only other bytes it would map onto them are control characters, which the
 * caller has already refused. */
static bool has_scheme(const char *url, size_t len, const char *prefix, size_t n)
{
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)url[i] | 0x20) != (unsigned char)prefix[i])
            return false;
    return true;
}

/* True when all eight bytes of w are visible ASCII (0x21-0x7E). The two
 * terms are the classic "some byte below n" and "some byte above n" bit
 * tricks; borrows and carries between bytes only arise from a byte that is
 * out of range itself, so the answer is exact even if it cannot say which
 * byte it was. */
static bool all_visible(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t below = (w - ones * 0x21) & ~w & highs;
    uint64_t above = ((w + ones * (0x7f - 0x7e)) | w) & highs;
    return (below | above) == 0;
}

static int check_code(parser_t *p, const char *code, size_t len)
{
    if (len == 0)
        return fail(p, "empty code");
    if (len > LV_REDIRECT_CODE_MAX)
        return fail(p, "code longer than %d bytes", LV_REDIRECT_CODE_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)code[i];
        if (c < 0x20 || c == 0x7f)
            return fail(p, "control character 0x%02X in code", c);
    }
    return 0;
}

static int check_url(parser_t *p, const char *url, size_t len)
{
    if (len == 0)
        return fail(p, "empty URL");
    /* Eight bytes at a time while all is well (this is most of the time
     * spent loading a big table), then byte by byte to name the culprit. */
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, url + i, 8);
        if (!all_visible(w))
            break;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if ((unsigned)(c - 0x21) <= 0x7e - 0x21)
            continue;
        if (c == ' ')
            return fail(p, "space in URL (write it as %%20)");
        if (c >= 0x80)
            return fail(p, "non-ASCII byte 0x%02X in URL (percent-encode it)", c);
        return fail(p, "control character 0x%02X in URL", c);
    }
    if (url[0] == '/') {
        if (len > 1 && (url[1] == '/' || url[1] == '\\'))
            return fail(p, "URL starting with \"%c%c\" would lead to another host; write http:// or https://",
                        url[0], url[1]);
        return 0;
    }
    size_t host;
    if (has_scheme(url, len, "http://", 7))
        host = 7;
    else if (has_scheme(url, len, "https://", 8))
        host = 8;
    else
        return fail(p, "URL must be an absolute http:// or https:// URL or a path starting with '/'");
    if (host == len || url[host] == '/' || url[host] == '?' || url[host] == '#')
        return fail(p, "URL has no host");
    return 0;
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

/* Parses the line buf[start..end) (line end already removed). */
static int parse_line(parser_t *p, size_t start, size_t end)
{
    char *buf = p->buf;
    if (blank(buf + start, end - start) || buf[start] == '#')
        return 0;
    if (p->header_possible) {
        p->header_possible = false;
        if (end - start == 8 && memcmp(buf + start, "code,url", 8) == 0)
            return 0;
    }
    size_t pos = start, fstart[2] = {0, 0}, flen[2] = {0, 0};
    int nfields = 0;
    for (;;) {
        size_t s = 0, n = 0;
        if (parse_field(p, &pos, end, &s, &n) < 0)
            return -1;
        if (nfields < 2) {
            fstart[nfields] = s;
            flen[nfields] = n;
        }
        nfields++;
        if (pos == end)
            break;
        pos++;
    }
    if (nfields != 2)
        return fail(p, "expected 2 fields (code,url), found %d", nfields);
    if (check_code(p, buf + fstart[0], flen[0]) < 0 || check_url(p, buf + fstart[1], flen[1]) < 0)
        return -1;
    /* Compact: w never passes the start of the current line, and the URL
     * lies past the end of the code's new place (see the file comment). */
    memmove(buf + p->w, buf + fstart[0], flen[0]);
    memmove(buf + p->w + flen[0], buf + fstart[1], flen[1]);
    if (queue_row(p, flen[0], flen[1]) < 0)
        return -1;
    p->w += flen[0] + flen[1];
    return 0;
}

static size_t estimate_rows(const char *buf, size_t len)
{
    size_t lines = 1;
    for (const char *s = buf, *end = buf + len; (s = memchr(s, '\n', (size_t)(end - s))); s++)
        lines++;
    size_t bound = len / MIN_EXPECTED_ROW_BYTES + 16;
    return lines < bound ? lines : bound;
}

/* Parses buf (malloc'd, len bytes), which becomes the table's arena. Takes
 * ownership of buf whatever happens. */
static lv_redirect_table_t *build(char *buf, size_t len, char *err, size_t errlen)
{
    if (len > UINT32_MAX) {
        free(buf);
        if (err && errlen)
            snprintf(err, errlen, "redirect table larger than 4 GiB");
        return NULL;
    }
    parser_t p = {.buf = buf, .len = len, .header_possible = true, .err = err, .errlen = errlen};
    p.t = lv_calloc(1, sizeof(*p.t));
    size_t rows = estimate_rows(buf, len);
    table_alloc(&p, rows * 10 / MAX_LOAD_TENTHS + 16);

    size_t pos = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < len) {
        p.line++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t next = nl ? end + 1 : len;
        if (end > pos && buf[end - 1] == '\r')
            end--;
        if (parse_line(&p, pos, end) < 0) {
            drain(&p);
            goto failed;
        }
        pos = next;
    }
    if (drain(&p) < 0)
        goto failed;
    free(p.lines);
    p.t->arena = lv_realloc(buf, p.w);
    p.t->arena_len = p.w;
    return p.t;

failed:
    free(p.lines);
    p.t->arena = buf;
    lv_redirect_table_free(p.t);
    return NULL;
}

lv_redirect_table_t *lv_redirect_table_parse(const char *data, size_t len, char *err, size_t errlen)
{
    char *buf = lv_malloc(len);
    if (len)
        memcpy(buf, data, len);
    return build(buf, len, err, errlen);
}

static void os_error(char *err, size_t errlen, const char *path, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, what);
}

lv_redirect_table_t *lv_redirect_table_load(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        os_error(err, errlen, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    size_t cap = 64 * 1024;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > UINT32_MAX) {
            close(fd);
            os_error(err, errlen, path, "larger than 4 GiB");
            return NULL;
        }
        /* One byte more than the size, so the read that sees EOF needs no
         * growth. */
        cap = (size_t)st.st_size + 1;
    }
    char *buf = lv_malloc(cap);
    advise_huge_pages(buf, cap);
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > UINT32_MAX) {
                free(buf);
                close(fd);
                os_error(err, errlen, path, "larger than 4 GiB");
                return NULL;
            }
            cap *= 2;
            buf = lv_realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            os_error(err, errlen, path, strerror(e));
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    return build(buf, len, err, errlen);
}
