/* parser.c: the HTTP/1.1 head parser and chunked decoder declared in parser.h.
 *
 * How it works. A head is parsed by one left-to-right pass ("full parse")
 * driven by a 256-entry character-class table, with word-at-a-time scanning
 * over header values and request targets. Every decision the pass makes
 * depends only on the bytes before the point where it makes it, so parsing a
 * prefix of a buffer either agrees with parsing the whole buffer or reports
 * LV_HTTP_INCOMPLETE.
 *
 * Resuming. Re-running the full pass on every new byte would make a slow
 * client cost O(n^2). Instead, a call that resumes (prev_len > 0) only scans
 * the new bytes for a "decisive" one (find_decisive): the LF ending the head,
 * the LF ending a line that is malformed on its own, or a byte that can never
 * appear in a valid head (a control character, a bare CR or LF). Only then,
 * or at the size limit, does it run the full pass. So a syntax error is
 * reported when its line ends, and an error that needs the whole head
 * (duplicates, framing, a missing Host) when the head ends. A first call
 * (prev_len == 0) runs the full pass straight away, which is the fast path
 * for a request that arrives in one piece, and if that fails it checks for a
 * decisive byte before reporting the error. The answer is thus a function of
 * the buffer alone, never of how it was split, which the tests and the
 * fuzzers check.
 *
 * The chunked decoder is a byte-at-a-time state machine for the framing, and
 * memmove for chunk data, compacting the decoded bytes at the start of the
 * caller's buffer. */
#include "http/parser.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Character classes                                                        */

enum {
    C_TCHAR = 1,   /* RFC 9110 token character */
    C_TARGET = 2,  /* allowed in a request-target: VCHAR except '#' */
    C_VALUE = 4,   /* field-value / reason-phrase: HTAB, SP, VCHAR, obs-text */
    C_HEX = 8,     /* hex digit */
    C_HOST = 16,   /* reg-name: unreserved, sub-delims, '%' */
    C_QDTEXT = 32, /* inside a quoted-string, except '\\' and '"' */
    C_STOP = 64,   /* CTLs except HTAB (CR, LF and DEL included) */
};

/* Generated; rows are 16 bytes, the comment gives the first byte's value. */
static const uint8_t cls[256] = {
     64,  64,  64,  64,  64,  64,  64,  64,  64,  36,  64,  64,  64,  64,  64,  64, /* 0x00 */
     64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64,  64, /* 0x10 */
     36,  55,   6,  37,  55,  55,  55,  55,  54,  54,  55,  55,  54,  55,  55,  38, /* 0x20 */
     63,  63,  63,  63,  63,  63,  63,  63,  63,  63,  38,  54,  38,  54,  38,  38, /* 0x30 */
     38,  63,  63,  63,  63,  63,  63,  55,  55,  55,  55,  55,  55,  55,  55,  55, /* 0x40 */
     55,  55,  55,  55,  55,  55,  55,  55,  55,  55,  55,  38,   6,  38,  39,  55, /* 0x50 */
     39,  63,  63,  63,  63,  63,  63,  55,  55,  55,  55,  55,  55,  55,  55,  55, /* 0x60 */
     55,  55,  55,  55,  55,  55,  55,  55,  55,  55,  55,  38,  39,  38,  55,  64, /* 0x70 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0x80 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0x90 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xa0 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xb0 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xc0 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xd0 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xe0 */
     36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36,  36, /* 0xf0 */
};

#define IS(c, k) ((cls[(uint8_t)(c)] & (k)) != 0)
#define IS_OWS(c) ((c) == ' ' || (c) == '\t')
#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* Empty slices point here rather than at NULL, so memcmp and friends never
 * see a NULL pointer. */
static const char empty_str[1] = "";
static const char root_path[] = "/";

/* ------------------------------------------------------------------------ */
/* Scanning                                                                 */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Whether any byte of w is below n (n <= 128). Exact as a yes/no answer. */
static inline bool word_has_below(uint64_t w, unsigned n)
{
    return ((w - ONES * n) & ~w & HIGHS) != 0;
}

static inline bool word_has_byte(uint64_t w, unsigned b)
{
    uint64_t x = w ^ (ONES * b);
    return ((x - ONES) & ~x & HIGHS) != 0;
}

static inline const char *scan_class(const char *p, const char *end, uint8_t k)
{
    while (p < end && IS(*p, k))
        p++;
    return p;
}

/* Skips field-value bytes; returns the first other byte (normally CR) or end.
 * Whole words free of CTLs and DEL are skipped eight bytes at a time; a word
 * that has one (HTAB is the only legitimate case) is walked byte by byte. */
static inline const char *scan_value(const char *p, const char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t w = load64(p);
            if (word_has_below(w, 0x20) || word_has_byte(w, 0x7f))
                break;
            p += 8;
        }
        const char *stop = end - p >= 8 ? p + 8 : end;
        for (; p < stop; p++)
            if (!IS(*p, C_VALUE))
                return p;
        if (p == end)
            return p;
    }
}

/* Same for request-target bytes (VCHAR except '#'); stops at SP normally. */
static inline const char *scan_target(const char *p, const char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t w = load64(p);
            if (word_has_below(w, 0x21) || (w & HIGHS) || word_has_byte(w, 0x7f) ||
                word_has_byte(w, '#'))
                break;
            p += 8;
        }
        const char *stop = end - p >= 8 ? p + 8 : end;
        for (; p < stop; p++)
            if (!IS(*p, C_TARGET))
                return p;
        if (p == end)
            return p;
    }
}

/* Compares n tchar bytes at s with a lowercase literal of letters and '-'.
 * OR-ing 0x20 folds case; no other tchar folds onto a letter or '-'. */
static inline bool tchar_eq_lower(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != lower[i])
            return false;
    return true;
}

static inline lv_slice_t mkslice(const char *p, const char *end)
{
    return (lv_slice_t){p, (size_t)(end - p)};
}

static inline lv_slice_t empty_slice(void)
{
    return (lv_slice_t){empty_str, 0};
}

static inline ssize_t fail(int *status, int code)
{
    *status = code;
    return LV_HTTP_ERROR;
}

/* Line grammars, checked on their own when a line's CRLF arrives (see
 * find_decisive). Each is exactly what the full pass accepts for that line,
 * before any semantic check (version numbers, duplicates, values). */
static bool request_line_ok(const char *p, const char *end)
{
    const char *s = p;
    p = scan_class(p, end, C_TCHAR);
    if (p == s || p == end || *p != ' ')
        return false;
    s = ++p;
    p = scan_target(p, end);
    if (p == s || p == end || *p != ' ')
        return false;
    p++;
    return end - p == 8 && memcmp(p, "HTTP/", 5) == 0 && IS_DIGIT(p[5]) && p[6] == '.' &&
           IS_DIGIT(p[7]);
}

static bool status_line_ok(const char *p, const char *end)
{
    if (end - p < 12 || memcmp(p, "HTTP/", 5) != 0 || !IS_DIGIT(p[5]) || p[6] != '.' ||
        !IS_DIGIT(p[7]) || p[8] != ' ' || !IS_DIGIT(p[9]) || !IS_DIGIT(p[10]) ||
        !IS_DIGIT(p[11]))
        return false;
    p += 12;
    return p == end || (*p == ' ' && scan_value(p + 1, end) == end);
}

static bool field_line_ok(const char *p, const char *end)
{
    const char *s = p;
    p = scan_class(p, end, C_TCHAR);
    return p != s && p != end && *p == ':' && scan_value(p + 1, end) == end;
}

/* Whether buf[0..n) is at most max_blank empty lines (CR/LF bytes only; any
 * other mix of them is decided elsewhere as a bare CR or LF). */
static bool only_blank_lines(const char *buf, size_t n, size_t max_blank)
{
    if (n > 2 * max_blank)
        return false;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != '\r' && buf[i] != '\n')
            return false;
    return true;
}

/* Finds the first byte in buf[from..limit) that settles an incomplete head,
 * and returns the offset just past it (0 if there is none):
 *   - the LF of the empty line ending the head (leading empty lines of a
 *     request, up to max_blank of them, do not count);
 *   - the LF ending a line that is not valid on its own (so the full pass
 *     must fail on it, if not before), which reports malformed lines at once
 *     instead of waiting for a head end that may never come;
 *   - a bare LF, a CR followed by something other than LF, any other CTL
 *     (HTAB excepted) or DEL.
 * A CR in the last position is not decisive yet. Each line is checked when
 * its LF is seen, by walking back to its start, so a head fed a byte at a
 * time still costs O(n) in total. */
static size_t find_decisive(const char *buf, size_t from, size_t limit, bool is_request)
{
    for (size_t i = from; i < limit; i++) {
        if (!IS(buf[i], C_STOP))
            continue;
        if (buf[i] == '\r') {
            if (i + 1 < limit && buf[i + 1] != '\n')
                return i + 1;
            continue;
        }
        if (buf[i] != '\n' || i == 0 || buf[i - 1] != '\r')
            return i + 1;
        size_t start = i - 1; /* the line is buf[start..i-1) */
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (start == i - 1) {
            /* An empty line: a tolerated leading one, or the end of the head. */
            if (is_request && only_blank_lines(buf, start, LV_HTTP_MAX_LEADING_CRLF - 1))
                continue;
            return i + 1;
        }
        bool first = is_request ? only_blank_lines(buf, start, LV_HTTP_MAX_LEADING_CRLF)
                                : start == 0;
        const char *p = buf + start, *end = buf + i - 1;
        bool ok = !first ? field_line_ok(p, end)
                         : is_request ? request_line_ok(p, end) : status_line_ok(p, end);
        if (!ok)
            return i + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Field semantics                                                          */

/* What the header fields say about framing and the connection, gathered while
 * parsing them. */
typedef struct {
    int64_t content_length;     /* -1 until a Content-Length is seen */
    lv_slice_t host;
    unsigned host_count;
    bool te_seen;               /* any Transfer-Encoding field */
    bool te_last_chunked;       /* the last coding so far is chunked */
    bool te_other;              /* some coding other than chunked */
    bool conn_close, conn_keep_alive;
    bool expect_continue;
} head_info_t;

/* Content-Length = 1*DIGIT, fitting an int64. Lists, signs and blanks fail. */
static bool parse_content_length(lv_slice_t v, int64_t *out)
{
    if (v.len == 0)
        return false;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (!IS_DIGIT(v.ptr[i]))
            return false;
        int d = v.ptr[i] - '0';
        if (n > (INT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* Transfer-Encoding is a list of codings, possibly over several fields. Only
 * bare tokens are accepted (no parameters, no empty elements), and chunked may
 * only be the last coding. Returns 0, or the status to fail with. Whether the
 * final list ends in chunked, and has other codings, is judged at the end. */
static int note_transfer_encoding(lv_slice_t v, head_info_t *info)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    info->te_seen = true;
    for (;;) {
        const char *s = p;
        p = scan_class(p, end, C_TCHAR);
        if (p == s)
            return 400;
        if (info->te_last_chunked)
            return 400; /* chunked must be the final coding */
        if (p - s == 7 && tchar_eq_lower(s, "chunked", 7))
            info->te_last_chunked = true;
        else
            info->te_other = true;
        while (p < end && IS_OWS(*p))
            p++;
        if (p == end)
            return 0;
        if (*p != ',')
            return 400;
        p++;
        while (p < end && IS_OWS(*p))
            p++;
    }
}

static bool valid_port(const char *p, const char *end)
{
    if (end - p > 5)
        return false;
    unsigned n = 0;
    for (; p < end; p++) {
        if (!IS_DIGIT(*p))
            return false;
        n = n * 10 + (unsigned)(*p - '0');
    }
    return n <= 65535;
}

/* uri-host [ ":" port ] (RFC 3986): a reg-name or a bracketed IP literal.
 * The Host field may be empty; a URL's authority may not. */
static bool valid_host(lv_slice_t v, bool allow_empty)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    if (p == end)
        return allow_empty;
    if (*p == '[') {
        p++;
        const char *s = p;
        while (p < end && (IS(*p, C_HOST) || *p == ':'))
            p++;
        if (p == s || p == end || *p != ']')
            return false;
        p++;
    } else {
        const char *s = p;
        p = scan_class(p, end, C_HOST);
        if (p == s)
            return false;
    }
    if (p == end)
        return true;
    if (*p != ':')
        return false;
    return valid_port(p + 1, end);
}

/* Looks at one header field; returns 0 or the status to fail with. */
static int note_header(const char *name, size_t name_len, lv_slice_t value, head_info_t *info,
                       bool is_request, int minor_version)
{
    switch (name_len) {
    case 4:
        if (is_request && tchar_eq_lower(name, "host", 4)) {
            if (++info->host_count > 1 || !valid_host(value, true))
                return 400;
            info->host = value;
        }
        break;
    case 6:
        if (is_request && tchar_eq_lower(name, "expect", 6)) {
            if (minor_version == 1 && value.len == 12 &&
                strncasecmp(value.ptr, "100-continue", 12) == 0)
                info->expect_continue = true;
        }
        break;
    case 10:
        if (tchar_eq_lower(name, "connection", 10)) {
            if (lv_http_list_has_token(value, LV_SLICE_LIT("close")))
                info->conn_close = true;
            if (lv_http_list_has_token(value, LV_SLICE_LIT("keep-alive")))
                info->conn_keep_alive = true;
        }
        break;
    case 14:
        if (tchar_eq_lower(name, "content-length", 14)) {
            if (info->content_length >= 0 || !parse_content_length(value, &info->content_length))
                return 400;
        }
        break;
    case 17:
        if (tchar_eq_lower(name, "transfer-encoding", 17)) {
            if (minor_version == 0)
                return 400; /* RFC 9112 6.1: 1.0 had no chunked; the framing is suspect */
            return note_transfer_encoding(value, info);
        }
        break;
    }
    return 0;
}

/* Applies the rules that need every field: CL with TE, TE ending in chunked.
 * Returns 0 or the status to fail with. */
static int check_framing(const head_info_t *info)
{
    if (!info->te_seen)
        return 0;
    if (info->content_length >= 0)
        return 400; /* both: the classic smuggling setup */
    if (!info->te_last_chunked)
        return 400; /* the body length cannot be determined */
    if (info->te_other)
        return 501; /* well-formed, but we cannot decode gzip & co */
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Heads                                                                    */

/* Parses header lines from p up to and including the empty line. Returns the
 * head's length (from buf), LV_HTTP_INCOMPLETE or LV_HTTP_ERROR. */
static ssize_t parse_fields(const char *buf, const char *p, const char *end,
                            lv_http_header_t *headers, size_t *num_headers, head_info_t *info,
                            bool is_request, int minor_version, int *status)
{
    size_t n = 0;
    for (;;) {
        if (p == end)
            return LV_HTTP_INCOMPLETE;
        if (*p == '\r') {
            if (p + 1 == end)
                return LV_HTTP_INCOMPLETE;
            if (p[1] != '\n')
                return fail(status, 400);
            *num_headers = n;
            return p + 2 - buf;
        }
        /* A name is a token directly followed by ':'. This one test rejects
         * obs-fold (line starting with SP/HTAB), whitespace before the colon,
         * empty names, bare LF and control characters. */
        const char *name = p;
        p = scan_class(p, end, C_TCHAR);
        if (p == end)
            return LV_HTTP_INCOMPLETE;
        if (*p != ':' || p == name)
            return fail(status, 400);
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && IS_OWS(*p))
            p++;
        const char *value = p;
        p = scan_value(p, end);
        if (p == end)
            return LV_HTTP_INCOMPLETE;
        if (*p != '\r')
            return fail(status, 400);
        if (p + 1 == end)
            return LV_HTTP_INCOMPLETE;
        if (p[1] != '\n')
            return fail(status, 400);
        const char *value_end = p;
        while (value_end > value && IS_OWS(value_end[-1]))
            value_end--;
        p += 2;
        if (n == LV_HTTP_MAX_HEADERS)
            return fail(status, 431);
        headers[n].name = (lv_slice_t){name, name_len};
        headers[n].value = mkslice(value, value_end);
        n++;
        int code = note_header(name, name_len, headers[n - 1].value, info, is_request,
                               minor_version);
        if (code)
            return fail(status, code);
    }
}

/* Matches "HTTP/" DIGIT "." DIGIT at p. Returns 0 and the digits, or
 * LV_HTTP_INCOMPLETE if what is there is a prefix of that, or LV_HTTP_ERROR. */
static int match_version(const char *p, const char *end, int *major, int *minor)
{
    static const char pattern[8] = {'H', 'T', 'T', 'P', '/', '0', '.', '0'};
    size_t avail = (size_t)(end - p);
    if (avail >= 8 && memcmp(p, "HTTP/1.1", 8) == 0) {
        *major = 1;
        *minor = 1;
        return 0;
    }
    size_t n = avail < 8 ? avail : 8;
    for (size_t i = 0; i < n; i++) {
        if (i == 5 || i == 7) {
            if (!IS_DIGIT(p[i]))
                return LV_HTTP_ERROR;
        } else if (p[i] != pattern[i]) {
            return LV_HTTP_ERROR;
        }
    }
    if (avail < 8)
        return LV_HTTP_INCOMPLETE;
    *major = p[5] - '0';
    *minor = p[7] - '0';
    return 0;
}

static bool starts_with_nocase(const char *p, const char *end, const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && strncasecmp(p, lit, n) == 0;
}

/* Splits the request-target into path/query (and host for absolute-form).
 * Returns 0 or the status to fail with. */
static int classify_target(lv_http_request_t *req, lv_slice_t *url_host)
{
    const char *t = req->target.ptr, *end = t + req->target.len;
    const char *path = t;
    *url_host = empty_slice();
    if (*t != '/') {
        if (req->target.len == 1 && *t == '*') {
            if (!lv_slice_eq(req->method, LV_SLICE_LIT("OPTIONS")))
                return 400;
            req->path = req->target;
            req->query = (lv_slice_t){end, 0};
            return 0;
        }
        const char *a;
        if (starts_with_nocase(t, end, "http://", 7))
            a = t + 7;
        else if (starts_with_nocase(t, end, "https://", 8))
            a = t + 8;
        else
            return 400;
        path = a;
        while (path < end && *path != '/' && *path != '?')
            path++;
        lv_slice_t authority = mkslice(a, path);
        /* userinfo is deprecated and a classic way to disguise a host */
        if (memchr(authority.ptr, '@', authority.len) || !valid_host(authority, false))
            return 400;
        *url_host = authority;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    const char *path_end = q ? q : end;
    req->path = path == path_end ? (lv_slice_t){root_path, 1} : mkslice(path, path_end);
    req->query = q ? mkslice(q + 1, end) : (lv_slice_t){end, 0};
    return 0;
}

/* The whole request head in one pass over buf[0..len). *in_request_line says
 * whether an INCOMPLETE result stopped inside the request line (for 414). */
static ssize_t parse_request_full(const char *buf, size_t len, lv_http_request_t *req,
                                  int *status, bool *in_request_line)
{
    const char *p = buf, *end = buf + len;
    *in_request_line = true;

    for (unsigned blank = 0; p < end && *p == '\r'; p += 2) {
        if (p + 1 == end)
            return LV_HTTP_INCOMPLETE;
        if (p[1] != '\n' || ++blank > LV_HTTP_MAX_LEADING_CRLF)
            return fail(status, 400);
    }

    const char *method = p;
    p = scan_class(p, end, C_TCHAR);
    if (p == end)
        return LV_HTTP_INCOMPLETE;
    if (*p != ' ' || p == method)
        return fail(status, 400);
    req->method = mkslice(method, p);

    const char *target = ++p;
    p = scan_target(p, end);
    if (p == end)
        return LV_HTTP_INCOMPLETE;
    if (*p != ' ' || p == target)
        return fail(status, 400);
    req->target = mkslice(target, p);
    p++;

    int major, minor;
    int r = match_version(p, end, &major, &minor);
    if (r == LV_HTTP_INCOMPLETE)
        return LV_HTTP_INCOMPLETE;
    if (r == LV_HTTP_ERROR)
        return fail(status, 400);
    p += 8;
    if (p == end || p + 1 == end)
        return p == end || *p == '\r' ? LV_HTTP_INCOMPLETE : fail(status, 400);
    if (p[0] != '\r' || p[1] != '\n')
        return fail(status, 400);
    p += 2;
    *in_request_line = false;

    if (major != 1 || minor > 1)
        return fail(status, 505);
    if (lv_slice_eq(req->method, LV_SLICE_LIT("CONNECT")))
        return fail(status, 501);
    lv_slice_t url_host;
    int code = classify_target(req, &url_host);
    if (code)
        return fail(status, code);
    req->minor_version = minor;

    head_info_t info = {.content_length = -1};
    ssize_t n = parse_fields(buf, p, end, req->headers, &req->num_headers, &info, true, minor,
                             status);
    if (n < 0)
        return n;
    if ((code = check_framing(&info)) != 0)
        return fail(status, code);
    if (minor == 1 && info.host_count == 0)
        return fail(status, 400);
    req->content_length = info.content_length;
    req->chunked = info.te_seen;
    req->keep_alive = minor == 1 ? !info.conn_close : info.conn_keep_alive && !info.conn_close;
    req->expect_continue = info.expect_continue;
    if (url_host.len)
        req->host = url_host;
    else if (info.host_count)
        req->host = info.host;
    else
        req->host = empty_slice();
    return n;
}

static ssize_t parse_response_full(const char *buf, size_t len, lv_http_response_t *res)
{
    const char *p = buf, *end = buf + len;
    int major, minor, status;
    int r = match_version(p, end, &major, &minor);
    if (r != 0)
        return r;
    if (major != 1 || minor > 1)
        return LV_HTTP_ERROR;
    p += 8;
    if (p == end)
        return LV_HTTP_INCOMPLETE;
    if (*p++ != ' ')
        return LV_HTTP_ERROR;
    int code = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (p == end)
            return LV_HTTP_INCOMPLETE;
        if (!IS_DIGIT(*p))
            return LV_HTTP_ERROR;
        code = code * 10 + (*p - '0');
    }
    if (code < 100 || code > 599)
        return LV_HTTP_ERROR;
    if (p == end)
        return LV_HTTP_INCOMPLETE;
    /* RFC 9112 4 wants SP before an empty reason; some servers omit it. */
    const char *reason = p;
    if (*p == ' ') {
        reason = ++p;
        p = scan_value(p, end);
        if (p == end)
            return LV_HTTP_INCOMPLETE;
    }
    if (*p != '\r')
        return LV_HTTP_ERROR;
    if (p + 1 == end)
        return LV_HTTP_INCOMPLETE;
    if (p[1] != '\n')
        return LV_HTTP_ERROR;
    res->minor_version = minor;
    res->status = code;
    res->reason = reason == p ? (lv_slice_t){p, 0} : mkslice(reason, p);
    p += 2;

    head_info_t info = {.content_length = -1};
    ssize_t n = parse_fields(buf, p, end, res->headers, &res->num_headers, &info, false, minor,
                             &status);
    if (n < 0)
        return n;
    if (check_framing(&info) != 0)
        return LV_HTTP_ERROR;
    res->content_length = info.content_length;
    res->chunked = info.te_seen;
    res->keep_alive = minor == 1 ? !info.conn_close : info.conn_keep_alive && !info.conn_close;
    return n;
}

ssize_t lv_http_parse_request(const char *buf, size_t len, size_t prev_len,
                              size_t max_header_bytes, lv_http_request_t *req, int *status)
{
    bool at_limit = max_header_bytes != 0 && len >= max_header_bytes;
    size_t limit = at_limit ? max_header_bytes : len;
    bool in_line;
    ssize_t r;

    if (prev_len == 0 || prev_len > len) {
        r = parse_request_full(buf, limit, req, status, &in_line);
        if (r >= 0)
            return r;
        if (r == LV_HTTP_ERROR && (at_limit || find_decisive(buf, 0, limit, true)))
            return r;
        if (!at_limit)
            return LV_HTTP_INCOMPLETE;
    } else {
        size_t from = prev_len > 3 ? prev_len - 3 : 0, q;
        while ((q = find_decisive(buf, from, limit, true)) != 0) {
            r = parse_request_full(buf, limit, req, status, &in_line);
            if (r != LV_HTTP_INCOMPLETE)
                return r;
            from = q; /* not reached: a decisive byte settles the head */
        }
        if (!at_limit)
            return LV_HTTP_INCOMPLETE;
        r = parse_request_full(buf, limit, req, status, &in_line);
    }
    if (r != LV_HTTP_INCOMPLETE)
        return r;
    return fail(status, in_line ? 414 : 431);
}

ssize_t lv_http_parse_response(const char *buf, size_t len, size_t prev_len,
                               size_t max_header_bytes, lv_http_response_t *res)
{
    bool at_limit = max_header_bytes != 0 && len >= max_header_bytes;
    size_t limit = at_limit ? max_header_bytes : len;
    ssize_t r;

    if (prev_len == 0 || prev_len > len) {
        r = parse_response_full(buf, limit, res);
        if (r >= 0)
            return r;
        if (at_limit || (r == LV_HTTP_ERROR && find_decisive(buf, 0, limit, false)))
            return LV_HTTP_ERROR;
        return LV_HTTP_INCOMPLETE;
    }
    /* No leading empty lines in a response: the first decisive byte settles it. */
    size_t from = prev_len > 3 ? prev_len - 3 : 0;
    if (!find_decisive(buf, from, limit, false) && !at_limit)
        return LV_HTTP_INCOMPLETE;
    r = parse_response_full(buf, limit, res);
    return r >= 0 ? r : LV_HTTP_ERROR;
}

lv_http_body_kind_t lv_http_response_body_kind(const lv_http_response_t *res, bool request_was_head)
{
    if (request_was_head || res->status < 200 || res->status == 204 || res->status == 304)
        return LV_HTTP_BODY_NONE;
    if (res->chunked)
        return LV_HTTP_BODY_CHUNKED;
    if (res->content_length >= 0)
        return LV_HTTP_BODY_LENGTH;
    return LV_HTTP_BODY_UNTIL_CLOSE;
}

/* ------------------------------------------------------------------------ */
/* Chunked bodies                                                           */

enum {
    CH_SIZE_FIRST,      /* first hex digit of a chunk size */
    CH_SIZE,            /* more hex digits, ';' or CR */
    CH_EXT_NAME_FIRST,  /* after ';' */
    CH_EXT_NAME,
    CH_EXT_VALUE_FIRST, /* after '=' */
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_ESC,  /* after a backslash in a quoted-string */
    CH_EXT_QUOTED_END,  /* after the closing quote */
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,   /* start of a trailer line, or the final CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_FINAL_LF,
    CH_DONE,
    CH_ERROR,
};

static int hex_value(char c)
{
    if (IS_DIGIT(c))
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* The state after one framing byte c, or CH_ERROR. Size lines and trailers
 * are consumed a byte at a time; they are short, chunk data is not. */
static uint8_t chunk_step(lv_http_chunked_t *d, char c)
{
    switch (d->state) {
    case CH_SIZE_FIRST:
        if (!IS(c, C_HEX))
            return CH_ERROR;
        d->remaining = (uint64_t)hex_value(c);
        return CH_SIZE;
    case CH_SIZE:
        if (IS(c, C_HEX)) {
            if (d->remaining >> 59) /* keep it below 2^63 */
                return CH_ERROR;
            d->remaining = d->remaining << 4 | (uint64_t)hex_value(c);
            return CH_SIZE;
        }
        if (c == ';')
            return CH_EXT_NAME_FIRST;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_NAME_FIRST:
        return IS(c, C_TCHAR) ? CH_EXT_NAME : CH_ERROR;
    case CH_EXT_NAME:
    case CH_EXT_TOKEN:
        if (IS(c, C_TCHAR))
            return d->state;
        if (c == '=' && d->state == CH_EXT_NAME)
            return CH_EXT_VALUE_FIRST;
        /* fall through */
    case CH_EXT_QUOTED_END:
        if (c == ';')
            return CH_EXT_NAME_FIRST;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_VALUE_FIRST:
        if (c == '"')
            return CH_EXT_QUOTED;
        return IS(c, C_TCHAR) ? CH_EXT_TOKEN : CH_ERROR;
    case CH_EXT_QUOTED:
        if (c == '"')
            return CH_EXT_QUOTED_END;
        if (c == '\\')
            return CH_EXT_QUOTED_ESC;
        return IS(c, C_QDTEXT) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_EXT_QUOTED_ESC:
        return IS(c, C_VALUE) ? CH_EXT_QUOTED : CH_ERROR;
    case CH_SIZE_LF:
        if (c != '\n')
            return CH_ERROR;
        d->line_bytes = 0;
        return d->remaining ? CH_DATA : CH_TRAILER_START;
    case CH_DATA_CR:
        return c == '\r' ? CH_DATA_LF : CH_ERROR;
    case CH_DATA_LF:
        return c == '\n' ? CH_SIZE_FIRST : CH_ERROR;
    case CH_TRAILER_START:
        if (c == '\r')
            return CH_FINAL_LF;
        return IS(c, C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_NAME:
        if (IS(c, C_TCHAR))
            return CH_TRAILER_NAME;
        return c == ':' ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_VALUE:
        if (IS(c, C_VALUE))
            return CH_TRAILER_VALUE;
        return c == '\r' ? CH_TRAILER_LF : CH_ERROR;
    case CH_TRAILER_LF:
        return c == '\n' ? CH_TRAILER_START : CH_ERROR;
    case CH_FINAL_LF:
        return c == '\n' ? CH_DONE : CH_ERROR;
    default:
        return CH_ERROR;
    }
}

ssize_t lv_http_chunked_decode(lv_http_chunked_t *d, char *buf, size_t *len)
{
    const char *in = buf, *end = buf + *len;
    char *out = buf;

    while (in < end && d->state != CH_DONE && d->state != CH_ERROR) {
        if (d->state == CH_DATA) {
            size_t avail = (size_t)(end - in);
            size_t n = d->remaining < avail ? (size_t)d->remaining : avail;
            if (out != in)
                memmove(out, in, n);
            out += n;
            in += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        if (d->state >= CH_TRAILER_START) {
            if (++d->trailer_bytes > LV_HTTP_MAX_TRAILER_BYTES) {
                d->state = CH_ERROR;
                break;
            }
        } else if (d->state <= CH_SIZE_LF) {
            if (++d->line_bytes > LV_HTTP_MAX_CHUNK_LINE) {
                d->state = CH_ERROR;
                break;
            }
        }
        d->state = chunk_step(d, *in++);
    }

    *len = (size_t)(out - buf);
    if (d->state == CH_ERROR)
        return LV_HTTP_ERROR;
    if (d->state != CH_DONE)
        return LV_HTTP_INCOMPLETE;
    size_t rest = (size_t)(end - in);
    if (rest && out != in)
        memmove(out, in, rest);
    return (ssize_t)rest;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

const lv_http_header_t *lv_http_find_header(const lv_http_header_t *h, size_t n, lv_slice_t name)
{
    for (size_t i = 0; i < n; i++)
        if (lv_slice_eq_nocase(h[i].name, name))
            return &h[i];
    return NULL;
}

bool lv_http_list_has_token(lv_slice_t value, lv_slice_t token)
{
    const char *p = value.ptr, *end = value.ptr + value.len;
    while (p < end) {
        while (p < end && (IS_OWS(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && IS_OWS(e[-1]))
            e--;
        if ((size_t)(e - s) == token.len && token.len && strncasecmp(s, token.ptr, token.len) == 0)
            return true;
    }
    return false;
}

const char *lv_http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
