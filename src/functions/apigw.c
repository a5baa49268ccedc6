/* apigw.c: API Gateway HTTP API payload 2.0, both directions (see apigw.h).
 *
 * The event is built on every function request, so it is written as JSON
 * text straight into the caller's buffer rather than through a JSON tree.
 * Every string goes through one escaper (lv_json_chars) that copies plain
 * ASCII eight bytes at a time, escapes what RFC 8259 requires (quote,
 * backslash, control characters as \u00XX or their short forms) and
 * replaces each maximal ill-formed UTF-8 subsequence (Unicode 15, section
 * 3.9) with U+FFFD, so whatever bytes a client sends, the event is valid
 * JSON. The request
 * body is the exception: it is sent as a JSON string only when it is valid
 * UTF-8 without NUL, and as base64 otherwise, so no byte is ever lost.
 *
 * Repeated headers are found by a pairwise scan, bounded by the parser's
 * LV_HTTP_MAX_HEADERS. Query parameters are not bounded that way (a long
 * query can hold thousands), so they are grouped by sorting their decoded
 * names instead, which keeps a hostile query at O(n log n).
 *
 * The answer is the other way round and rarer in hot loops: jansson parses
 * the function's result, then each member is checked and turned into
 * header lines. Whatever the function put in its headers, the lines written
 * are "token: value\r\n" with no control character in the value, so a
 * function cannot split or smuggle a response. */
#include "functions/apigw.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/hex.h"
#include "core/json_text.h"
#include "core/mem.h"

/* Appends a string literal. Most of an event is short literals between the
 * escaped values; copying them inline when there is room (the caller's
 * buffer is reused, so there nearly always is) avoids a call per piece. */
#define PUT(b, lit) put_bytes((b), (lit), sizeof(lit) - 1)

static inline void put_bytes(lv_buf_t *b, const char *p, size_t n)
{
    if (lv_buf_room(b) >= n) {
        memcpy(lv_buf_tail(b), p, n);
        lv_buf_commit(b, n);
    } else {
        lv_buf_append(b, p, n);
    }
}

/* ---- JSON text ---------------------------------------------------------- */

static void json_str(lv_buf_t *b, lv_slice_t s)
{
    PUT(b, "\"");
    lv_json_chars(b, s.ptr, s.len, false);
    PUT(b, "\"");
}

static void json_i64(lv_buf_t *b, int64_t v)
{
    if (v < 0) {
        PUT(b, "-");
        lv_buf_append_u64(b, (unsigned long long)-(v + 1) + 1);
    } else {
        lv_buf_append_u64(b, (unsigned long long)v);
    }
}

/* ---- Request pieces ----------------------------------------------------- */

/* Decodes %XX escapes of in into dst (room for in.len bytes), and '+' to a
 * space when plus_space (query strings). A '%' without two hex digits after
 * it is kept as it is: a sloppy client link should still reach the
 * handler. Returns the decoded length. */
static size_t percent_decode(lv_slice_t in, char *dst, bool plus_space)
{
    const unsigned char *p = (const unsigned char *)in.ptr;
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        int hi = p[i] == '%' && i + 2 < in.len ? lv_hex_value(p[i + 1]) : -1;
        int lo = hi >= 0 ? lv_hex_value(p[i + 2]) : -1;
        if (lo >= 0) {
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (p[i] == '+' && plus_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = (char)p[i];
        }
    }
    return o;
}

/* Scratch memory for decoding: on the stack for the usual small sizes. */
typedef struct {
    _Alignas(max_align_t) char local[512]; /* also holds arrays of structs */
    void *heap;
} scratch_t;

static void *scratch_get(scratch_t *s, size_t n)
{
    if (n <= sizeof s->local)
        return s->local;
    s->heap = lv_malloc(n);
    return s->heap;
}

static void scratch_free(scratch_t *s)
{
    free(s->heap);
    s->heap = NULL;
}

static bool is_cookie_header(lv_slice_t name)
{
    return lv_slice_eq_nocase(name, LV_SLICE_LIT("cookie"));
}

static size_t header_count(const lv_http_request_t *h)
{
    return h->num_headers < LV_HTTP_MAX_HEADERS ? h->num_headers : LV_HTTP_MAX_HEADERS;
}

/* Every Cookie header split at ';' into trimmed, non-empty items. */
static void put_cookies(lv_buf_t *out, const lv_http_request_t *h)
{
    bool any = false;
    for (size_t i = 0; i < header_count(h); i++) {
        if (!is_cookie_header(h->headers[i].name))
            continue;
        const char *p = h->headers[i].value.ptr, *end = p + h->headers[i].value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *item_end = semi ? semi : end;
            const char *a = p, *z = item_end;
            while (a < z && (*a == ' ' || *a == '\t'))
                a++;
            while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
                z--;
            if (z > a) {
                if (any) {
                    PUT(out, ",");
                } else {
                    PUT(out, ",\"cookies\":[");
                    any = true;
                }
                json_str(out, lv_slice(a, (size_t)(z - a)));
            }
            p = semi ? semi + 1 : end;
        }
    }
    if (any)
        PUT(out, "]");
}

/* Lower-case names, repeated headers joined with ',' in arrival order. */
static void put_headers(lv_buf_t *out, const lv_http_request_t *h)
{
    size_t n = header_count(h);
    bool done[LV_HTTP_MAX_HEADERS];
    memset(done, 0, n);
    bool first = true;
    PUT(out, ",\"headers\":{");
    for (size_t i = 0; i < n; i++) {
        lv_slice_t name = h->headers[i].name;
        if (done[i] || is_cookie_header(name))
            continue;
        if (!first)
            PUT(out, ",");
        first = false;
        PUT(out, "\"");
        lv_json_chars(out, name.ptr, name.len, true);
        PUT(out, "\":\"");
        lv_json_chars(out, h->headers[i].value.ptr, h->headers[i].value.len, false);
        for (size_t k = i + 1; k < n; k++) {
            if (!done[k] && lv_slice_eq_nocase(h->headers[k].name, name)) {
                done[k] = true;
                PUT(out, ",");
                lv_json_chars(out, h->headers[k].value.ptr, h->headers[k].value.len, false);
            }
        }
        PUT(out, "\"");
    }
    PUT(out, "}");
}

typedef struct {
    lv_slice_t name, value; /* decoded, in scratch memory */
    size_t next;            /* index of the next parameter with this name, or SIZE_MAX */
    bool first;             /* the first parameter with this name */
} qparam_t;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam_t *x = *(const qparam_t *const *)a, *y = *(const qparam_t *const *)b;
    size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int c = n ? memcmp(x->name.ptr, y->name.ptr, n) : 0;
    if (c)
        return c;
    if (x->name.len != y->name.len)
        return x->name.len < y->name.len ? -1 : 1;
    /* Same name: keep arrival order, so values join in the order sent. */
    return x < y ? -1 : x > y;
}

/* queryStringParameters: each '&'-separated item split at its first '=',
 * names and values decoded, repeated names joined with ','. Empty items
 * ("a=1&&b=2") are skipped; an item without '=' has the value "". */
static void put_query(lv_buf_t *out, lv_slice_t query)
{
    if (!query.len)
        return;
    size_t max = 1;
    for (size_t i = 0; i < query.len; i++)
        max += query.ptr[i] == '&';

    scratch_t text_mem = {.heap = NULL}, param_mem = {.heap = NULL}, order_mem = {.heap = NULL};
    char *text = scratch_get(&text_mem, query.len);
    qparam_t *ps = scratch_get(&param_mem, max * sizeof *ps);
    size_t n = 0, used = 0;
    const char *p = query.ptr, *end = query.ptr + query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *item_end = amp ? amp : end;
        if (item_end > p) {
            const char *eq = memchr(p, '=', (size_t)(item_end - p));
            const char *name_end = eq ? eq : item_end;
            qparam_t *q = &ps[n++];
            size_t len = percent_decode(lv_slice(p, (size_t)(name_end - p)), text + used, true);
            q->name = lv_slice(text + used, len);
            used += len;
            len = eq ? percent_decode(lv_slice(eq + 1, (size_t)(item_end - eq - 1)), text + used, true) : 0;
            q->value = lv_slice(text + used, len);
            used += len;
            q->next = SIZE_MAX;
            q->first = false;
        }
        p = amp ? amp + 1 : end;
    }
    if (n) {
        qparam_t **order = scratch_get(&order_mem, n * sizeof *order);
        for (size_t i = 0; i < n; i++)
            order[i] = &ps[i];
        qsort(order, n, sizeof *order, qparam_cmp);
        for (size_t i = 0; i < n; i++) {
            if (i && lv_slice_eq(order[i - 1]->name, order[i]->name))
                order[i - 1]->next = (size_t)(order[i] - ps);
            else
                order[i]->first = true;
        }
        PUT(out, ",\"queryStringParameters\":{");
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (!ps[i].first)
                continue;
            if (!first)
                PUT(out, ",");
            first = false;
            json_str(out, ps[i].name);
            PUT(out, ":\"");
            for (size_t k = i; k != SIZE_MAX; k = ps[k].next) {
                if (k != i)
                    PUT(out, ",");
                lv_json_chars(out, ps[k].value.ptr, ps[k].value.len, false);
            }
            PUT(out, "\"");
        }
        PUT(out, "}");
    }
    scratch_free(&order_mem);
    scratch_free(&param_mem);
    scratch_free(&text_mem);
}

/* Path parameter values are raw path segments: percent-decoded, but '+'
 * stays a '+' in a path. */
static void put_path_params(lv_buf_t *out, const lv_apigw_param_t *params, size_t n)
{
    if (!n)
        return;
    PUT(out, ",\"pathParameters\":{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            PUT(out, ",");
        json_str(out, params[i].name);
        PUT(out, ":");
        scratch_t mem = {.heap = NULL};
        char *text = scratch_get(&mem, params[i].value.len);
        size_t len = percent_decode(params[i].value, text, false);
        json_str(out, lv_slice(text, len));
        scratch_free(&mem);
    }
    PUT(out, "}");
}

/* domainPrefix is the first label of the host name. The port is not part of
 * any label, and an IP literal has no labels to speak of, so it is kept
 * whole (without its port). */
static lv_slice_t domain_prefix(lv_slice_t host)
{
    const char *p = host.ptr, *end = host.ptr + host.len;
    if (host.len && p[0] == '[') {
        const char *close = memchr(p, ']', host.len);
        return close ? lv_slice(p, (size_t)(close - p) + 1) : host;
    }
    const char *q = p;
    while (q < end && *q != '.' && *q != ':')
        q++;
    return lv_slice(p, (size_t)(q - p));
}

static void put2(lv_buf_t *b, unsigned v)
{
    char d[2] = {(char)('0' + v / 10 % 10), (char)('0' + v % 10)};
    lv_buf_append(b, d, 2);
}

/* "12/Mar/2020:19:03:58 +0000", the format API Gateway uses, in UTC and in
 * English whatever the locale. The calendar arithmetic is done here rather
 * than with gmtime_r, which takes glibc's time-zone lock on every call. */
static void put_time(lv_buf_t *b, int64_t time_ms)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int64_t secs = time_ms / 1000 - (time_ms % 1000 < 0);
    int64_t days = secs / 86400 - (secs % 86400 < 0);
    int64_t sod = secs - days * 86400;

    /* Days since 1970-01-01 to a proleptic Gregorian date: shift the epoch to
     * 0000-03-01 so the leap day ends each year, then split into 400-year
     * eras (146097 days), years in the era, and a March-based month. */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* 0..146096 */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
    int64_t mp = (5 * doy + 2) / 153;                                    /* 0 = March */
    unsigned day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    int64_t year = yoe + era * 400 + (month <= 2);

    put2(b, day);
    PUT(b, "/");
    lv_buf_append(b, months[month - 1], 3);
    PUT(b, "/");
    if (year >= 0 && year <= 9999) {
        put2(b, (unsigned)(year / 100));
        put2(b, (unsigned)(year % 100));
    } else {
        json_i64(b, year);
    }
    PUT(b, ":");
    put2(b, (unsigned)(sod / 3600));
    PUT(b, ":");
    put2(b, (unsigned)(sod / 60 % 60));
    PUT(b, ":");
    put2(b, (unsigned)(sod % 60));
    PUT(b, " +0000");
}

static void put_context(lv_buf_t *out, const lv_apigw_request_t *r)
{
    const lv_http_request_t *h = r->head;
    const lv_http_header_t *ua = lv_http_find_header(h->headers, header_count(h), LV_SLICE_LIT("user-agent"));
    PUT(out, ",\"requestContext\":{\"accountId\":\"000000000000\",\"apiId\":\"levee\",\"domainName\":");
    json_str(out, h->host);
    PUT(out, ",\"domainPrefix\":");
    json_str(out, domain_prefix(h->host));
    PUT(out, ",\"http\":{\"method\":");
    json_str(out, h->method);
    PUT(out, ",\"path\":");
    json_str(out, h->path);
    if (h->minor_version == 0)
        PUT(out, ",\"protocol\":\"HTTP/1.0\",\"sourceIp\":");
    else
        PUT(out, ",\"protocol\":\"HTTP/1.1\",\"sourceIp\":");
    json_str(out, r->source_ip);
    PUT(out, ",\"userAgent\":");
    json_str(out, ua ? ua->value : LV_SLICE_LIT(""));
    PUT(out, "},\"requestId\":");
    json_str(out, r->request_id);
    PUT(out, ",\"routeKey\":");
    json_str(out, r->route_key);
    PUT(out, ",\"stage\":\"$default\",\"time\":\"");
    put_time(out, r->time_ms);
    PUT(out, "\",\"timeEpoch\":");
    json_i64(out, r->time_ms);
    PUT(out, "}");
}

static void put_body(lv_buf_t *out, lv_slice_t body)
{
    if (!body.len) {
        PUT(out, ",\"isBase64Encoded\":false");
    } else if (lv_utf8_text(body.ptr, body.len)) {
        PUT(out, ",\"body\":");
        json_str(out, body);
        PUT(out, ",\"isBase64Encoded\":false");
    } else {
        PUT(out, ",\"body\":\"");
        lv_base64_encode(body, out);
        PUT(out, "\",\"isBase64Encoded\":true");
    }
}

void lv_apigw_event(const lv_apigw_request_t *r, lv_buf_t *out)
{
    const lv_http_request_t *h = r->head;
    PUT(out, "{\"version\":\"2.0\",\"routeKey\":");
    json_str(out, r->route_key);
    PUT(out, ",\"rawPath\":");
    json_str(out, h->path);
    PUT(out, ",\"rawQueryString\":");
    json_str(out, h->query);
    put_cookies(out, h);
    put_headers(out, h);
    put_query(out, h->query);
    put_context(out, r);
    put_path_params(out, r->params, r->num_params);
    put_body(out, r->body);
    PUT(out, "}");
}

/* ---- Answer ------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* A field value may hold anything but control characters (HTAB aside):
 * a CR or LF would end the line and let the function write its own headers
 * or a second response. */
static bool is_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Headers the server writes itself or that only concern one connection. */
static bool is_dropped_header(const char *name, size_t n)
{
    static const lv_slice_t dropped[] = {
        LV_SLICE_LIT("content-length"),    LV_SLICE_LIT("date"),
        LV_SLICE_LIT("server"),            LV_SLICE_LIT("connection"),
        LV_SLICE_LIT("keep-alive"),        LV_SLICE_LIT("proxy-connection"),
        LV_SLICE_LIT("te"),                LV_SLICE_LIT("trailer"),
        LV_SLICE_LIT("upgrade"),           LV_SLICE_LIT("transfer-encoding"),
        LV_SLICE_LIT("proxy-authenticate"), LV_SLICE_LIT("proxy-authorization"),
    };
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (lv_slice_eq_nocase(lv_slice(name, n), dropped[i]))
            return true;
    return false;
}

/* The text of a scalar header value, into tmp when it has to be formatted.
 * Returns false for arrays and objects. A real is written with the fewest
 * digits that read back as the same number, as a JavaScript handler would
 * have printed it. */
static bool scalar_text(const json_t *v, char *tmp, size_t tmplen, lv_slice_t *text)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        *text = lv_slice(json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER:
        *text = lv_slice(tmp, (size_t)snprintf(tmp, tmplen, "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
        return true;
    case JSON_REAL: {
        double d = json_real_value(v);
        int len = 0;
        for (int prec = 1; prec <= 17; prec++) {
            len = snprintf(tmp, tmplen, "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        *text = lv_slice(tmp, (size_t)len);
        return true;
    }
    case JSON_TRUE:
        *text = LV_SLICE_LIT("true");
        return true;
    case JSON_FALSE:
        *text = LV_SLICE_LIT("false");
        return true;
    default:
        return false;
    }
}

typedef struct {
    lv_apigw_answer_t *out;
    bool has_content_type;
} answer_ctx_t;

/* Appends "name: value\r\n" after checking both. A JSON null value means no
 * header. Returns NULL or the reason for a 502. */
static const char *add_header(answer_ctx_t *a, const char *name, size_t name_len, const json_t *v)
{
    if (!is_token(name, name_len))
        return "bad header name";
    if (json_is_null(v))
        return NULL;
    char tmp[64];
    lv_slice_t text;
    if (!scalar_text(v, tmp, sizeof tmp, &text))
        return "bad header value";
    const char *p = text.ptr, *end = text.ptr + text.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (!is_field_value(p, (size_t)(end - p)))
        return "bad header value";
    if (is_dropped_header(name, name_len))
        return NULL;
    if (lv_slice_eq_nocase(lv_slice(name, name_len), LV_SLICE_LIT("content-type")))
        a->has_content_type = true;
    lv_buf_t *h = &a->out->headers;
    lv_buf_append(h, name, name_len);
    PUT(h, ": ");
    lv_buf_append(h, p, (size_t)(end - p));
    PUT(h, "\r\n");
    return NULL;
}

/* A member, with JSON null read as absent. */
static json_t *member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static const char *structured_answer(const json_t *root, const json_t *code, lv_apigw_answer_t *out)
{
    if (!json_is_integer(code) || json_integer_value(code) < 100 || json_integer_value(code) > 599)
        return "statusCode is not an integer between 100 and 599";
    out->status = (int)json_integer_value(code);

    json_t *headers = member(root, "headers"), *multi = member(root, "multiValueHeaders");
    if (headers && !json_is_object(headers))
        return "headers is not an object";
    if (multi && !json_is_object(multi))
        return "multiValueHeaders is not an object";
    answer_ctx_t a = {.out = out};
    const char *key, *why;
    size_t key_len;
    json_t *v;
    if (headers) {
        json_object_keylen_foreach(headers, key, key_len, v) {
            /* A name in both takes its values from multiValueHeaders. */
            if (multi && json_object_getn(multi, key, key_len))
                continue;
            if ((why = add_header(&a, key, key_len, v)))
                return why;
        }
    }
    if (multi) {
        json_object_keylen_foreach(multi, key, key_len, v) {
            if (json_is_null(v))
                continue;
            if (!json_is_array(v))
                return "multiValueHeaders value is not an array";
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item) {
                if ((why = add_header(&a, key, key_len, item)))
                    return why;
            }
        }
    }

    json_t *cookies = member(root, "cookies");
    if (cookies) {
        if (!json_is_array(cookies))
            return "cookies is not an array of strings";
        size_t i;
        json_t *c;
        json_array_foreach(cookies, i, c) {
            if (!json_is_string(c))
                return "cookies is not an array of strings";
            if (!is_field_value(json_string_value(c), json_string_length(c)))
                return "bad cookie";
            PUT(&out->headers, "Set-Cookie: ");
            lv_buf_append(&out->headers, json_string_value(c), json_string_length(c));
            PUT(&out->headers, "\r\n");
        }
    }

    json_t *b64 = member(root, "isBase64Encoded"), *body = member(root, "body");
    if (b64 && !json_is_boolean(b64))
        return "isBase64Encoded is not a boolean";
    if (body && !json_is_string(body))
        return "body is not a string";
    if (body) {
        lv_slice_t text = lv_slice(json_string_value(body), json_string_length(body));
        if (json_is_true(b64)) {
            if (lv_base64_decode(text, &out->body, false) < 0)
                return "body is not valid base64";
        } else {
            lv_buf_append(&out->body, text.ptr, text.len);
        }
    }
    if (!a.has_content_type)
        PUT(&out->headers, "Content-Type: application/json\r\n");
    return NULL;
}

int lv_apigw_answer(lv_slice_t result, lv_apigw_answer_t *out, char *err, size_t errlen)
{
    lv_buf_clear(&out->headers);
    lv_buf_clear(&out->body);
    out->status = 200;
    if (!result.len) {
        PUT(&out->headers, "Content-Type: application/json\r\n");
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_loadb(result.ptr, result.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    const char *why = NULL;
    if (!root) {
        why = "result is not JSON";
    } else if (json_is_object(root) && json_object_get(root, "statusCode")) {
        why = structured_answer(root, json_object_get(root, "statusCode"), out);
    } else {
        PUT(&out->headers, "Content-Type: application/json\r\n");
        if (json_is_string(root))
            lv_buf_append(&out->body, json_string_value(root), json_string_length(root));
        else
            lv_buf_append(&out->body, result.ptr, result.len);
    }
    json_decref(root);
    if (why) {
        lv_buf_clear(&out->headers);
        lv_buf_clear(&out->body);
        out->status = 0;
        if (err && errlen)
            snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

void lv_apigw_answer_free(lv_apigw_answer_t *out)
{
    lv_buf_free(&out->headers);
    lv_buf_free(&out->body);
    out->status = 0;
}
