/* differential_test.c: our parser against nodejs' http_parser 2.9 (Debian's
 * libhttp-parser), as a second opinion.
 *
 * Each input is a complete request (head and body) or a mutation of one: a
 * CR, LF, NUL, SP or HTAB inserted at every position, every byte deleted,
 * every letter's case flipped, every header line duplicated, plus a cross
 * product of Content-Length / Transfer-Encoding combinations and a list of
 * published smuggling payloads. Both parsers read the first message of the
 * input; we compare the outcome (complete, incomplete, rejected) and, when
 * both accept, the method, URL, version, header fields, Content-Length,
 * chunked flag, keep-alive, decoded body and bytes consumed.
 *
 * We are deliberately stricter than http_parser, so they disagree often. Every
 * disagreement must be matched by an entry of `explanations` below: a
 * predicate over the input and both outcomes, and a sentence saying why we
 * differ. An unexplained disagreement fails the test and prints the input
 * escaped. The same list, with counts, is in docs/http-parser.md. */
#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/parser.h"
#include "test.h"

#define MAX_IN 4096
#define MAX_HEAD 8192

/* ------------------------------------------------------------------------ */
/* What a parser made of one input                                          */

typedef enum { OUT_OK, OUT_INCOMPLETE, OUT_ERROR } outcome_t;

static const char *outcome_name[] = {"accepted", "incomplete", "rejected"};

typedef struct {
    outcome_t outcome;
    int status;       /* ours: 4xx/5xx when rejected */
    int hp_errno;     /* theirs: http_errno when rejected */
    bool head_done;   /* the head was accepted (an error, if any, is in the body) */
    char method[32];
    char url[MAX_IN];
    size_t url_len;
    int major, minor;
    size_t num_headers;
    size_t name_off[2 * LV_HTTP_MAX_HEADERS], name_len[2 * LV_HTTP_MAX_HEADERS];
    size_t value_off[2 * LV_HTTP_MAX_HEADERS], value_len[2 * LV_HTTP_MAX_HEADERS];
    char text[2 * MAX_IN]; /* header names and values, back to back */
    size_t text_len;
    int64_t content_length;
    bool chunked, keep_alive;
    char body[MAX_IN];
    size_t body_len;
    size_t consumed;
} view_t;

static void view_reset(view_t *v)
{
    memset(v, 0, offsetof(view_t, name_off));
    v->num_headers = v->text_len = v->body_len = v->consumed = 0;
    v->content_length = -1;
    v->chunked = v->keep_alive = false;
}

static void text_append(view_t *v, const char *p, size_t n)
{
    if (v->text_len + n > sizeof(v->text))
        n = sizeof(v->text) - v->text_len;
    memcpy(v->text + v->text_len, p, n);
    v->text_len += n;
}

/* ------------------------------------------------------------------------ */
/* http_parser                                                              */

static view_t theirs, ours;
static bool hp_in_value, hp_in_trailers;

static int hp_on_url(http_parser *p, const char *at, size_t n)
{
    if (theirs.url_len + n <= sizeof(theirs.url)) {
        memcpy(theirs.url + theirs.url_len, at, n);
        theirs.url_len += n;
    }
    return 0;
}

static int hp_on_header_field(http_parser *p, const char *at, size_t n)
{
    if (hp_in_trailers)
        return 0;
    view_t *v = &theirs;
    if (hp_in_value || v->num_headers == 0) { /* a new field starts */
        if (v->num_headers == 2 * LV_HTTP_MAX_HEADERS)
            return 1;
        v->name_off[v->num_headers] = v->text_len;
        v->name_len[v->num_headers] = 0;
        v->value_len[v->num_headers] = 0;
        v->num_headers++;
        hp_in_value = false;
    }
    text_append(v, at, n);
    v->name_len[v->num_headers - 1] += n;
    return 0;
}

static int hp_on_header_value(http_parser *p, const char *at, size_t n)
{
    if (hp_in_trailers)
        return 0;
    view_t *v = &theirs;
    if (!hp_in_value) {
        v->value_off[v->num_headers - 1] = v->text_len;
        hp_in_value = true;
    }
    text_append(v, at, n);
    v->value_len[v->num_headers - 1] += n;
    return 0;
}

static int hp_on_headers_complete(http_parser *p)
{
    view_t *v = &theirs;
    hp_in_trailers = true;
    v->head_done = true;
    snprintf(v->method, sizeof(v->method), "%s", http_method_str((enum http_method)p->method));
    v->major = p->http_major;
    v->minor = p->http_minor;
    v->content_length = (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : -1;
    v->chunked = (p->flags & F_CHUNKED) != 0;
    v->keep_alive = http_should_keep_alive(p) != 0;
    /* http_parser keeps trailing OWS in values; we trim it. Normalise. */
    for (size_t i = 0; i < v->num_headers; i++)
        while (v->value_len[i] &&
               (v->text[v->value_off[i] + v->value_len[i] - 1] == ' ' ||
                v->text[v->value_off[i] + v->value_len[i] - 1] == '\t'))
            v->value_len[i]--;
    return 0;
}

/* Which input bytes http_parser delivered as body data; the rest of a
 * chunked body is framing (size lines, CRLFs, trailers). */
static bool hp_is_data[MAX_IN];
static const char *hp_input;

static int hp_on_body(http_parser *p, const char *at, size_t n)
{
    memset(hp_is_data + (at - hp_input), 1, n);
    if (theirs.body_len + n <= sizeof(theirs.body)) {
        memcpy(theirs.body + theirs.body_len, at, n);
        theirs.body_len += n;
    }
    return 0;
}

static bool hp_complete;

static int hp_on_message_complete(http_parser *p)
{
    hp_complete = true;
    http_parser_pause(p, 1); /* stop after the first message, like ours */
    return 0;
}

static void run_theirs(const char *in, size_t len)
{
    static const http_parser_settings settings = {
        .on_url = hp_on_url,
        .on_header_field = hp_on_header_field,
        .on_header_value = hp_on_header_value,
        .on_headers_complete = hp_on_headers_complete,
        .on_body = hp_on_body,
        .on_message_complete = hp_on_message_complete,
    };
    http_parser p;
    view_reset(&theirs);
    hp_in_value = hp_in_trailers = hp_complete = false;
    hp_input = in;
    memset(hp_is_data, 0, len);
    http_parser_init(&p, HTTP_REQUEST);
    size_t n = http_parser_execute(&p, &settings, in, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (hp_complete && (e == HPE_OK || e == HPE_PAUSED)) {
        theirs.outcome = OUT_OK;
        theirs.consumed = n;
    } else if (e == HPE_OK && p.upgrade) {
        theirs.outcome = OUT_OK; /* CONNECT / Upgrade: the rest is not HTTP */
        theirs.consumed = n;
    } else if (e == HPE_OK) {
        theirs.outcome = OUT_INCOMPLETE;
    } else {
        theirs.outcome = OUT_ERROR;
        theirs.hp_errno = e;
    }
}

/* ------------------------------------------------------------------------ */
/* Ours                                                                     */

static lv_http_request_t req;
static char scratch[MAX_IN];

static void run_ours(const char *in, size_t len)
{
    view_t *v = &ours;
    view_reset(v);
    int status = 0;
    ssize_t r = lv_http_parse_request(in, len, 0, MAX_HEAD, &req, &status);
    if (r == LV_HTTP_INCOMPLETE) {
        v->outcome = OUT_INCOMPLETE;
        return;
    }
    if (r == LV_HTTP_ERROR) {
        v->outcome = OUT_ERROR;
        v->status = status;
        return;
    }
    v->head_done = true;
    snprintf(v->method, sizeof(v->method), "%.*s", (int)req.method.len, req.method.ptr);
    memcpy(v->url, req.target.ptr, req.target.len);
    v->url_len = req.target.len;
    v->major = 1;
    v->minor = req.minor_version;
    for (size_t i = 0; i < req.num_headers; i++) {
        v->name_off[i] = v->text_len;
        v->name_len[i] = req.headers[i].name.len;
        text_append(v, req.headers[i].name.ptr, req.headers[i].name.len);
        v->value_off[i] = v->text_len;
        v->value_len[i] = req.headers[i].value.len;
        text_append(v, req.headers[i].value.ptr, req.headers[i].value.len);
    }
    v->num_headers = req.num_headers;
    v->content_length = req.content_length;
    v->chunked = req.chunked;
    v->keep_alive = req.keep_alive;

    size_t rest = len - (size_t)r;
    if (req.chunked) {
        lv_http_chunked_t d = {0};
        memcpy(scratch, in + r, rest);
        size_t n = rest;
        ssize_t left = lv_http_chunked_decode(&d, scratch, &n);
        if (left == LV_HTTP_ERROR) {
            v->outcome = OUT_ERROR;
            v->status = 400;
            return;
        }
        if (left == LV_HTTP_INCOMPLETE) {
            v->outcome = OUT_INCOMPLETE;
            return;
        }
        memcpy(v->body, scratch, n);
        v->body_len = n;
        v->consumed = len - (size_t)left;
    } else if (req.content_length >= 0) {
        if ((uint64_t)req.content_length > rest) {
            v->outcome = OUT_INCOMPLETE;
            return;
        }
        memcpy(v->body, in + r, (size_t)req.content_length);
        v->body_len = (size_t)req.content_length;
        v->consumed = (size_t)r + v->body_len;
    } else {
        v->consumed = (size_t)r;
    }
    v->outcome = OUT_OK;
}

/* ------------------------------------------------------------------------ */
/* Comparing                                                                */

/* Which part of two accepted parses differs, or NULL. */
static const char *field_difference(void)
{
    const view_t *a = &ours, *b = &theirs;
    if (strcmp(a->method, b->method) != 0)
        return "method";
    if (a->url_len != b->url_len || memcmp(a->url, b->url, a->url_len) != 0)
        return "url";
    if (a->major != b->major || a->minor != b->minor)
        return "version";
    if (a->num_headers != b->num_headers)
        return "header count";
    for (size_t i = 0; i < a->num_headers; i++) {
        if (a->name_len[i] != b->name_len[i] ||
            memcmp(a->text + a->name_off[i], b->text + b->name_off[i], a->name_len[i]) != 0)
            return "header name";
        if (a->value_len[i] != b->value_len[i] ||
            memcmp(a->text + a->value_off[i], b->text + b->value_off[i], a->value_len[i]) != 0)
            return "header value";
    }
    if (a->content_length != b->content_length)
        return "content length";
    if (a->chunked != b->chunked)
        return "chunked";
    if (a->keep_alive != b->keep_alive)
        return "keep-alive";
    if (a->body_len != b->body_len || memcmp(a->body, b->body, a->body_len) != 0)
        return "body";
    if (a->consumed != b->consumed)
        return "consumed";
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Explanations                                                             */

typedef struct {
    const char *in;
    size_t len;
    const char *diff; /* for two accepted parses, what differs */
} dcase_t;

typedef struct {
    const char *name;
    bool (*applies)(const dcase_t *c);
    const char *why;
    unsigned hits;
} explanation_t;

/* Outcome patterns. "Lenient" is accepted, or still waiting for more bytes:
 * http_parser read past the thing we reject. */
static bool we_reject(int status)
{
    return ours.outcome == OUT_ERROR && ours.status == status;
}

static bool they_are_lenient(void)
{
    return theirs.outcome != OUT_ERROR;
}

static bool they_reject(enum http_errno e)
{
    return theirs.outcome == OUT_ERROR && theirs.hp_errno == (int)e;
}

/* The head as a strict reader sees it: up to the first CRLF CRLF, or all. */
static size_t head_len(const dcase_t *c)
{
    const char *e = memmem(c->in, c->len, "\r\n\r\n", 4);
    return e ? (size_t)(e - c->in) + 4 : c->len;
}

static bool head_has_bare_lf(const dcase_t *c)
{
    size_t n = head_len(c);
    for (size_t i = 0; i < n; i++)
        if (c->in[i] == '\n' && (i == 0 || c->in[i - 1] != '\r'))
            return true;
    return false;
}

static bool head_has_bare_cr(const dcase_t *c)
{
    size_t n = head_len(c);
    for (size_t i = 0; i < n; i++)
        if (c->in[i] == '\r' && (i + 1 == c->len || c->in[i + 1] != '\n'))
            return true;
    return false;
}

static bool is_ctl(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f;
}

static bool head_has_ctl(const dcase_t *c)
{
    size_t n = head_len(c);
    for (size_t i = 0; i < n; i++)
        if (is_ctl((unsigned char)c->in[i]))
            return true;
    return false;
}

/* Calls fn on each line of the head after the request line, split at LF with
 * the CR (if any) dropped; stops and returns true when fn does. */
static bool any_field_line(const dcase_t *c, bool (*fn)(const char *s, const char *e))
{
    const char *p = c->in, *end = c->in + head_len(c);
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    p = memchr(p, '\n', (size_t)(end - p));
    while (p && ++p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *le = e > p && e[-1] == '\r' ? e - 1 : e;
        if (le > p && fn(p, le))
            return true;
        p = nl;
    }
    return false;
}

static bool starts_with_ws(const char *s, const char *e)
{
    return *s == ' ' || *s == '\t';
}

static bool ws_before_colon(const char *s, const char *e)
{
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (!colon)
        return false;
    for (const char *p = s; p < colon; p++)
        if (*p == ' ' || *p == '\t')
            return true;
    return false;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The request line, from the first byte that is not CR or LF. */
static void request_line(const dcase_t *c, const char **s, const char **e)
{
    const char *p = c->in, *end = c->in + c->len;
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *s = p;
    *e = nl ? nl : end;
    if (*e > p && (*e)[-1] == '\r')
        (*e)--;
}

static bool request_line_spacing(const dcase_t *c)
{
    const char *s, *e;
    request_line(c, &s, &e);
    int sp = 0;
    for (const char *p = s; p < e; p++) {
        if (*p == '\t')
            return true;
        if (*p == ' ') {
            sp++;
            if (p == s || p + 1 == e || p[1] == ' ')
                return true;
        }
    }
    return sp != 2;
}

/* Their view of the header fields, looked up by name. */
static size_t their_field_count(const char *name)
{
    size_t n = 0, len = strlen(name);
    for (size_t i = 0; i < theirs.num_headers; i++)
        if (theirs.name_len[i] == len && strncasecmp(theirs.text + theirs.name_off[i], name, len) == 0)
            n++;
    return n;
}

static bool their_field(const char *name, const char **v, size_t *vlen)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < theirs.num_headers; i++)
        if (theirs.name_len[i] == len && strncasecmp(theirs.text + theirs.name_off[i], name, len) == 0) {
            *v = theirs.text + theirs.value_off[i];
            *vlen = theirs.value_len[i];
            return true;
        }
    return false;
}

/* A test oracle for RFC 3986 uri-host [":" port], written independently of
 * the parser's: reg-name characters, or a bracketed literal, then a port. */
static bool oracle_host_ok(const char *v, size_t n)
{
    size_t i = 0;
    if (n && v[0] == '[') {
        const char *close = memchr(v, ']', n);
        if (!close)
            return false;
        i = (size_t)(close - v) + 1;
    } else {
        while (i < n && (isalnum((unsigned char)v[i]) || strchr("-._~!$&'()*+,;=%", v[i])))
            i++;
        if (i == 0 && n)
            return false;
    }
    if (i == n)
        return true;
    if (v[i] != ':' || n - i - 1 > 5)
        return false;
    unsigned long port = 0;
    for (i++; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return false;
        port = port * 10 + (unsigned long)(v[i] - '0');
    }
    return port <= 65535;
}

static bool their_host_invalid(void)
{
    const char *v;
    size_t n;
    return their_field("Host", &v, &n) && !oracle_host_ok(v, n);
}

static bool raw_value_ends_with_tab(const dcase_t *c, const char *name)
{
    char pat[64];
    int n = snprintf(pat, sizeof(pat), "\n%s:", name);
    const char *p = memmem(c->in, head_len(c), pat, (size_t)n);
    if (!p)
        return false;
    const char *eol = memchr(p + 1, '\r', (size_t)(c->in + c->len - p - 1));
    return eol && eol[-1] == '\t';
}

/* --- the explanations ---------------------------------------------------- */

static bool x_unknown_method(const dcase_t *c)
{
    if (ours.outcome != OUT_OK || !they_reject(HPE_INVALID_METHOD))
        return false;
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD",
                                        "PATCH"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(ours.method, known[i]) == 0)
            return false;
    return true;
}

static bool x_bare_lf(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() && head_has_bare_lf(c);
}

static bool x_bare_cr(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() && head_has_bare_cr(c);
}

static bool x_ctl(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() && head_has_ctl(c);
}

static bool x_obs_fold(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() &&
           any_field_line(c, starts_with_ws);
}

static bool x_ws_before_colon(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() &&
           any_field_line(c, ws_before_colon);
}

static bool x_request_line_spacing(const dcase_t *c)
{
    return we_reject(400) && !ours.head_done && they_are_lenient() && request_line_spacing(c);
}

static bool x_host_missing(const dcase_t *c)
{
    return we_reject(400) && theirs.outcome == OUT_OK && theirs.minor == 1 &&
           their_field_count("Host") == 0;
}

static bool x_host_repeated(const dcase_t *c)
{
    return we_reject(400) && theirs.outcome == OUT_OK && their_field_count("Host") > 1;
}

static bool x_host_invalid(const dcase_t *c)
{
    return we_reject(400) && theirs.outcome == OUT_OK && their_host_invalid();
}

static bool x_trailing_tab(const dcase_t *c)
{
    if (ours.outcome != OUT_OK)
        return false;
    if (they_reject(HPE_INVALID_CONTENT_LENGTH))
        return raw_value_ends_with_tab(c, "Content-Length");
    if (they_reject(HPE_INVALID_TRANSFER_ENCODING))
        return raw_value_ends_with_tab(c, "Transfer-Encoding");
    if (theirs.outcome == OUT_OK && c->diff && strcmp(c->diff, "keep-alive") == 0)
        return raw_value_ends_with_tab(c, "Connection");
    return false;
}

static bool x_te_not_decodable(const dcase_t *c)
{
    return we_reject(501) && theirs.outcome == OUT_OK && theirs.chunked;
}

static bool x_version_case(const dcase_t *c)
{
    const char *s, *e;
    request_line(c, &s, &e);
    return we_reject(400) && they_are_lenient() && e - s > 8 &&
           strncasecmp(e - 8, "HTTP/", 5) == 0 && memcmp(e - 8, "HTTP/", 5) != 0;
}

static bool x_target_form(const dcase_t *c)
{
    const char *s, *e;
    request_line(c, &s, &e);
    const char *t = memchr(s, ' ', (size_t)(e - s));
    if (!t || !we_reject(400) || !they_are_lenient())
        return false;
    t++;
    size_t n = (size_t)(e - t);
    return *t != '/' && !(n == 1 && *t == '*') && !(n > 7 && strncasecmp(t, "http://", 7) == 0) &&
           !(n > 8 && strncasecmp(t, "https://", 8) == 0);
}

/* The request-target, as the bytes between the first two SPs. */
static bool target(const dcase_t *c, const char **t, const char **e)
{
    const char *s, *le;
    request_line(c, &s, &le);
    const char *sp = memchr(s, ' ', (size_t)(le - s));
    if (!sp)
        return false;
    *t = sp + 1;
    const char *sp2 = memchr(*t, ' ', (size_t)(le - *t));
    *e = sp2 ? sp2 : le;
    return true;
}

static bool x_target_obs_text(const dcase_t *c)
{
    const char *t, *e;
    if (!we_reject(400) || !they_are_lenient() || !target(c, &t, &e))
        return false;
    for (; t < e; t++)
        if ((unsigned char)*t >= 0x80)
            return true;
    return false;
}

static bool x_authority_invalid(const dcase_t *c)
{
    const char *t, *e;
    if (!we_reject(400) || !they_are_lenient() || !target(c, &t, &e) || e - t < 8 ||
        strncasecmp(t, "http", 4) != 0)
        return false;
    const char *a = memmem(t, (size_t)(e - t), "://", 3);
    if (!a)
        return false;
    a += 3;
    const char *ae = a;
    while (ae < e && *ae != '/' && *ae != '?')
        ae++;
    return ae == a || memchr(a, '@', (size_t)(ae - a)) || !oracle_host_ok(a, (size_t)(ae - a));
}

static bool x_list_empty_elements(const dcase_t *c)
{
    const char *v;
    size_t n;
    return ours.outcome == OUT_OK && theirs.outcome == OUT_OK && c->diff &&
           strcmp(c->diff, "keep-alive") == 0 && their_field("Connection", &v, &n) &&
           (memmem(v, n, ",", 1) != NULL);
}

static bool x_te_http10(const dcase_t *c)
{
    return we_reject(400) && theirs.outcome == OUT_OK && theirs.minor == 0 &&
           their_field_count("Transfer-Encoding") > 0;
}

static bool x_te_chunked_twice(const dcase_t *c)
{
    if (!we_reject(400) || theirs.outcome != OUT_OK || their_field_count("Transfer-Encoding") < 2)
        return false;
    size_t chunked = 0;
    for (size_t i = 0; i < theirs.num_headers; i++)
        if (theirs.name_len[i] == 17 &&
            strncasecmp(theirs.text + theirs.name_off[i], "Transfer-Encoding", 17) == 0 &&
            memmem(theirs.text + theirs.value_off[i], theirs.value_len[i], "chunked", 7))
            chunked++;
    return chunked >= 2;
}

/* Chunked framing as http_parser read it. The body after our head is data
 * runs separated by framing runs; each framing run is the CRLF ending the data
 * before it (none for the first), then a chunk-size line, and after the last
 * chunk the trailer lines. Calls fn on each framing line (with its line
 * terminator) and whether it is a size line; stops when fn returns true. */
static bool any_framing_line(const dcase_t *c,
                             bool (*fn)(const char *s, const char *e, bool size_line))
{
    size_t i = head_len(c), end = theirs.outcome == OUT_OK ? theirs.consumed : c->len;
    bool first_run = true;
    while (i < end) {
        if (hp_is_data[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < end && !hp_is_data[j])
            j++;
        /* framing run [i, j) */
        size_t k = i;
        if (!first_run) { /* the data's own line end */
            while (k < j && c->in[k] != '\n')
                k++;
            k++;
        }
        bool size_line = true;
        while (k < j) {
            const char *nl = memchr(c->in + k, '\n', j - k);
            size_t e = nl ? (size_t)(nl - c->in) + 1 : j;
            if (fn(c->in + k, c->in + e, size_line))
                return true;
            size_line = false;
            k = e;
        }
        first_run = false;
        i = j;
    }
    return false;
}

static bool we_reject_body_only(void)
{
    return we_reject(400) && ours.head_done && ours.chunked && they_are_lenient();
}

static bool line_has_ws(const char *s, const char *e, bool size_line)
{
    if (!size_line)
        return starts_with_ws(s, e) || ws_before_colon(s, e);
    for (const char *p = s; p < e; p++)
        if (*p == ' ' || *p == '\t')
            return true;
    return false;
}

static bool line_has_bad_end(const char *s, const char *e, bool size_line)
{
    for (const char *p = s; p < e; p++) {
        if (*p == '\n' && (p == s || p[-1] != '\r'))
            return true;
        if (*p == '\r' && (p + 1 == e || p[1] != '\n'))
            return true;
    }
    return false;
}

static bool line_has_ctl(const char *s, const char *e, bool size_line)
{
    for (const char *p = s; p < e; p++)
        if (is_ctl((unsigned char)*p))
            return true;
    return false;
}

static bool line_has_empty_ext_value(const char *s, const char *e, bool size_line)
{
    for (const char *p = s; size_line && p + 1 < e; p++)
        if (*p == '=' && (p[1] == ';' || p[1] == '\r' || p[1] == '\n'))
            return true;
    return false;
}

/* A test oracle for a chunk-size line (with its CRLF), written apart from the
 * decoder: 1*HEXDIG *( ";" token [ "=" ( token / quoted-string ) ] ) CRLF. */
static bool oracle_size_line_ok(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && isxdigit((unsigned char)*p))
        p++;
    if (p == s)
        return false;
    while (p < e && *p == ';') {
        s = ++p;
        while (p < e && is_tchar((unsigned char)*p))
            p++;
        if (p == s)
            return false;
        if (p < e && *p == '=') {
            s = ++p;
            if (p < e && *p == '"') {
                for (p++; p < e && *p != '"'; p++)
                    if (*p == '\\' || is_ctl((unsigned char)*p) || *p == '\r' || *p == '\n')
                        return false; /* escapes are not in the mutated inputs */
                if (p == e)
                    return false;
                p++;
            } else {
                while (p < e && is_tchar((unsigned char)*p))
                    p++;
                if (p == s)
                    return false;
            }
        }
    }
    return e - p == 2 && p[0] == '\r' && p[1] == '\n';
}

static bool bad_size_line(const char *s, const char *e, bool size_line)
{
    return size_line && !oracle_size_line_ok(s, e);
}

static bool x_chunk_size_line(const dcase_t *c)
{
    return we_reject_body_only() && any_framing_line(c, bad_size_line);
}

static bool x_chunk_ws(const dcase_t *c)
{
    return we_reject_body_only() && any_framing_line(c, line_has_ws);
}

static bool x_chunk_line_end(const dcase_t *c)
{
    return we_reject_body_only() && any_framing_line(c, line_has_bad_end);
}

static bool x_chunk_ctl(const dcase_t *c)
{
    return we_reject_body_only() && any_framing_line(c, line_has_ctl);
}

static bool x_chunk_ext_empty(const dcase_t *c)
{
    return we_reject_body_only() && any_framing_line(c, line_has_empty_ext_value);
}

#define EXPLAIN(fn, why) {#fn, fn, why, 0}

static explanation_t explanations[] = {
    EXPLAIN(x_unknown_method,
            "Methods are extensible, case-sensitive tokens (RFC 9110 9.1): \"GeT\" or \"PST\" is "
            "a method nobody defined, not a typo of GET. We accept any token and let routing "
            "answer 405/501; http_parser only knows a fixed list and rejects the rest."),
    EXPLAIN(x_bare_lf,
            "We require CRLF. RFC 9112 2.2 lets a recipient accept a bare LF as a line ending, "
            "but parsers that disagree on it (one ends the line, the next one does not) are a "
            "classic request-smuggling pair, and no client we serve sends one."),
    EXPLAIN(x_bare_cr,
            "A bare CR (not followed by LF) must be treated as invalid or replaced by SP (RFC "
            "9112 2.2); we reject. http_parser treats it as a line end or skips it."),
    EXPLAIN(x_ctl,
            "NUL and other control characters are not allowed in a field value or the request "
            "line (RFC 9110 5.5: a recipient MUST reject or replace CR, LF, NUL); we reject "
            "them all. http_parser lets some through inside values."),
    EXPLAIN(x_obs_fold,
            "A line starting with SP/HTAB is obs-fold: a server MUST reject it or replace it by "
            "SP (RFC 9112 5.2). We reject, because unfolding is another point where two parsers "
            "can split fields differently. http_parser unfolds (and, on a whitespace-only line "
            "where the head should end, waits for more)."),
    EXPLAIN(x_ws_before_colon,
            "Whitespace between a field name and the colon MUST be rejected with 400 (RFC 9112 "
            "5.1): it is how \"Transfer-Encoding : chunked\" smuggles past one parser. "
            "http_parser keeps it as part of the name."),
    EXPLAIN(x_request_line_spacing,
            "The request line is method SP target SP version, single spaces (RFC 9112 3). RFC "
            "9112 3 lets recipients be lenient about whitespace, but an extra or missing SP or "
            "an HTAB changes where the target ends for different parsers; we answer 400."),
    EXPLAIN(x_host_missing,
            "An HTTP/1.1 request without Host MUST get 400 (RFC 9112 3.2); http_parser does "
            "not check fields' meaning."),
    EXPLAIN(x_host_repeated,
            "More than one Host field MUST get 400 (RFC 9112 3.2): two hosts is how cache "
            "poisoning and routing confusion start. http_parser does not look."),
    EXPLAIN(x_host_invalid,
            "A Host value that is not uri-host[:port] MUST get 400 (RFC 9112 3.2); the router "
            "and the cache key use it. http_parser does not validate it."),
    EXPLAIN(x_trailing_tab,
            "Field values are trimmed of OWS, SP and HTAB alike (RFC 9112 5.1), so "
            "\"Content-Length: 5<HTAB>\" is 5. http_parser only skips trailing SP when it "
            "interprets Content-Length, Transfer-Encoding and Connection."),
    EXPLAIN(x_version_case,
            "HTTP-name is case-sensitive: \"HTTP\" (RFC 9112 2.3). http_parser accepts any case."),
    EXPLAIN(x_target_form,
            "The request-target must be origin-form (\"/...\"), absolute-form with an http or "
            "https URL, or \"*\" (RFC 9112 3.2); levee is not a proxy for other schemes. "
            "http_parser accepts any scheme-looking prefix."),
    EXPLAIN(x_te_http10,
            "An HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty "
            "framing (RFC 9112 6.1): 1.0 has no chunked, so it was likely forwarded by something "
            "that did not decode it. We answer 400; http_parser decodes it."),
    EXPLAIN(x_te_chunked_twice,
            "chunked applied twice (\"chunked\" in two Transfer-Encoding fields) is not allowed "
            "(RFC 9112 7: a sender MUST NOT apply chunked more than once) and the body is "
            "ambiguous; we answer 400. http_parser decodes it once."),
    EXPLAIN(x_chunk_ws,
            "No whitespace in chunk-size lines and no obs-fold or space before the colon in "
            "trailers. RFC 9112 7.1.1 allows BWS around chunk-ext's ';' and '=', but "
            "\"5 \" read as 5 by one parser and rejected or misread by another is a known "
            "smuggling vector, and no client sends it; we reject. http_parser skips it."),
    EXPLAIN(x_chunk_line_end,
            "Chunk-size lines, the CRLF after chunk data and trailer lines need CRLF, like the "
            "head; http_parser accepts bare LF (and swallows a bare CR)."),
    EXPLAIN(x_chunk_ctl,
            "Control characters in chunk extensions or trailers are rejected, as in the head; "
            "http_parser skips over them."),
    EXPLAIN(x_chunk_ext_empty,
            "A chunk extension's value is a token or a quoted-string (RFC 9112 7.1.1), never "
            "empty; \"ext=\" gets 400. http_parser does not validate extensions."),
    EXPLAIN(x_chunk_size_line,
            "A chunk-size line is 1*HEXDIG, then extensions ';' token [ '=' token / "
            "quoted-string ] (RFC 9112 7.1.1), then CRLF. Anything else, including the "
            "longest-valid-prefix reading of \"5x\" as 5, gets 400; http_parser reads the hex "
            "digits and skips the rest of the line."),
    EXPLAIN(x_target_obs_text,
            "Bytes 0x80-0xFF are not allowed in a request-target (RFC 3986: they must be "
            "percent-encoded) and would reach the router and cache keys raw; we answer 400. "
            "http_parser lets them through."),
    EXPLAIN(x_authority_invalid,
            "The authority of an absolute-form target must be uri-host[:port] without userinfo "
            "(RFC 9110 4.2.1, 4.2.4); levee routes on it. http_parser accepts e.g. a non-numeric "
            "port."),
    EXPLAIN(x_list_empty_elements,
            "Empty list elements (\"Connection: ,keep-alive\") MUST be accepted and ignored "
            "(RFC 9110 5.6.1); we do and see keep-alive, http_parser does not recognise the "
            "token."),
    EXPLAIN(x_te_not_decodable,
            "Transfer-Encoding with a coding before chunked (\"gzip, chunked\"): we cannot "
            "decode gzip, so we answer 501 (RFC 9112 6.1 SHOULD). http_parser strips the "
            "chunked framing and hands the application gzip bytes it did not ask for."),
    {NULL, NULL, NULL, 0},
};

/* ------------------------------------------------------------------------ */
/* Inputs                                                                   */

static unsigned n_inputs, n_agree, n_explained, n_unexplained;

static void print_escaped(const char *s, size_t n)
{
    fputc('"', stderr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputc('"', stderr);
}

static void compare(const char *in, size_t len)
{
    n_inputs++;
    run_ours(in, len);
    run_theirs(in, len);
    dcase_t c = {in, len, NULL};
    if (ours.outcome == theirs.outcome) {
        if (ours.outcome != OUT_OK || (c.diff = field_difference()) == NULL) {
            n_agree++;
            return;
        }
    }
    for (explanation_t *e = explanations; e->name; e++) {
        if (e->applies(&c)) {
            e->hits++;
            n_explained++;
            return;
        }
    }
    n_unexplained++;
    if (n_unexplained <= 200 || getenv("DIFF_ALL")) {
        fprintf(stderr, "  unexplained: ");
        print_escaped(in, len);
        fprintf(stderr, "\n    ours %s", outcome_name[ours.outcome]);
        if (ours.outcome == OUT_ERROR)
            fprintf(stderr, " (%d)", ours.status);
        fprintf(stderr, ", http_parser %s", outcome_name[theirs.outcome]);
        if (theirs.outcome == OUT_ERROR)
            fprintf(stderr, " (%s)", http_errno_name((enum http_errno)theirs.hp_errno));
        if (c.diff)
            fprintf(stderr, ", differing in %s", c.diff);
        fputc('\n', stderr);
    }
}

static const char *const bases[] = {
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "GET /search?q=levee&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n\r\n",
    "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: localhost\r\n"
    "Content-Length: 5\r\nContent-Type: application/json\r\n\r\n{\"a\"}",
    "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET http://example.com/p?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "PUT /k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
};

static char buf[MAX_IN];

static void mutate(const char *base)
{
    static const char inserts[] = {'\r', '\n', '\0', ' ', '\t', '\x7f', '\x80', ':', ',', '"', ';'};
    size_t len = strlen(base);
    compare(base, len);
    for (size_t k = 0; k < sizeof(inserts); k++)
        for (size_t i = 0; i <= len; i++) {
            memcpy(buf, base, i);
            buf[i] = inserts[k];
            memcpy(buf + i + 1, base + i, len - i);
            compare(buf, len + 1);
        }
    for (size_t i = 0; i < len; i++) {
        memcpy(buf, base, i);
        memcpy(buf + i, base + i + 1, len - i - 1);
        compare(buf, len - 1);
    }
    for (size_t i = 0; i < len; i++) {
        char ch = base[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            continue;
        memcpy(buf, base, len);
        buf[i] = (char)(ch ^ 0x20);
        compare(buf, len);
    }
    /* each header line twice */
    const char *line = strstr(base, "\r\n") + 2;
    const char *head_end = strstr(base, "\r\n\r\n") + 2;
    while (line < head_end) {
        const char *eol = strstr(line, "\r\n") + 2;
        size_t a = (size_t)(eol - base), l = (size_t)(eol - line);
        memcpy(buf, base, a);
        memcpy(buf + a, line, l);
        memcpy(buf + a + l, base + a, len - a);
        compare(buf, len + l);
        line = eol;
    }
}

/* Content-Length / Transfer-Encoding combinations, each with a plain and a
 * chunked body, in HTTP/1.1 and 1.0. */
static void framing_combinations(void)
{
    static const char *const fields[] = {
        "Content-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 05\r\n",
        "Content-Length:  5 \r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 18446744073709551621\r\n",
        "Content-Length : 5\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "Transfer-Encoding:  chunked \r\n",
        "Transfer-Encoding:\tchunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: chunked;x=1\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: \r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding: \x0b" "chunked\r\n",
        "Transfer-Encoding\r\n : chunked\r\n",
        "X: y\r\n Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    };
    static const char *const bodies[] = {"hello", "5\r\nhello\r\n0\r\n\r\n"};
    static const char *const versions[] = {"1.1", "1.0"};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        for (size_t b = 0; b < 2; b++)
            for (size_t v = 0; v < 2; v++) {
                int n = snprintf(buf, sizeof(buf), "POST /f HTTP/%s\r\nHost: h\r\n%s\r\n%s",
                                 versions[v], fields[f], bodies[b]);
                compare(buf, (size_t)n);
            }
}

/* Request smuggling payloads from the literature (Watchfire 2005, PortSwigger
 * 2019, "HTTP Garden" 2023), each with a second request behind it. */
static void smuggling_payloads(void)
{
    static const char *const payloads[] = {
        /* CL.TE / TE.CL */
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nSMUGGLED",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        "8\r\nSMUGGLED\r\n0\r\n\r\n",
        /* TE.TE obfuscations */
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n"
        "0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:[tab]chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nX: X\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\r\n: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1;a=\"\r\nX\"\r\n0\r\n\r\n",
        /* chunk-size tricks */
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0000000000000000000000000000042\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10000000000000001\r\nA\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nAB\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\nAB\n0\n\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nAB\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nAB\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nAB\r\n0\r\nX: y\r\nContent-Length: 5\r\n\r\n",
        /* request-line and header tricks */
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /",
        "GET /\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\x00\r\n\r\nhello",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-\x80: y\r\n\r\n",
        /* field-line syntax (both reject these) */
        "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-(a): b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX/Y: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n{x}: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX\"Y: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX@Y: b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        size_t len = strlen(payloads[i]);
        if (strstr(payloads[i], "[tab]")) { /* keep the literal readable */
            const char *t = strstr(payloads[i], "[tab]");
            size_t a = (size_t)(t - payloads[i]);
            memcpy(buf, payloads[i], a);
            buf[a] = '\t';
            memcpy(buf + a + 1, t + 5, len - a - 5);
            len -= 4;
        } else {
            memcpy(buf, payloads[i], len);
        }
        compare(buf, len);
    }
    /* embedded NUL cannot go in a C string literal; built by hand */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    compare(nul, sizeof(nul) - 1);
}

static void test_differential(void)
{
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
        mutate(bases[i]);
    framing_combinations();
    smuggling_payloads();
    printf("%u inputs: %u agree, %u disagreements explained, %u unexplained\n", n_inputs,
           n_agree, n_explained, n_unexplained);
    unsigned unused = 0;
    for (const explanation_t *e = explanations; e->name; e++) {
        printf("  %5u  %s\n", e->hits, e->name);
        if (e->hits == 0) {
            fprintf(stderr, "  explanation %s matched nothing: stale?\n", e->name);
            unused++;
        }
    }
    CHECK_EQ(n_unexplained, 0);
    CHECK_EQ(unused, 0);
}

int main(void)
{
    LV_RUN(test_differential);
    return lv_test_summary();
}
