/* apigw_test.c: the payload 2.0 event (built from hand-made request heads
 * and from the real parser, then read back with jansson member by member)
 * and the mapping of function results to HTTP answers (every shape API
 * Gateway accepts and every error). Ends with two timing loops that print
 * ns per event and per answer; nothing is asserted on them. */
#include <jansson.h>
#include <stdlib.h>
#include <time.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/mem.h"
#include "functions/apigw.h"
#include "http/parser.h"
#include "test.h"

/* CHECK_SLICE on a buffer's bytes; an empty buffer may have no storage, and
 * memcmp must not see its NULL pointer even for zero bytes. */
static inline lv_slice_t buf_bytes(const lv_buf_t *b)
{
    lv_slice_t s = lv_buf_slice(b);
    return s.ptr ? s : lv_slice("", 0);
}
#define CHECK_BUF(b, str) CHECK_SLICE(buf_bytes(b), str)

/* ---- Event helpers ------------------------------------------------------ */

typedef struct {
    lv_http_request_t head;
    lv_apigw_param_t params[8];
    lv_apigw_request_t r;
} fixture_t;

static void fixture_init(fixture_t *f, const char *method, const char *path, const char *query)
{
    memset(f, 0, sizeof *f);
    f->head.method = lv_slice_cstr(method);
    f->head.path = lv_slice_cstr(path);
    f->head.query = lv_slice_cstr(query);
    f->head.minor_version = 1;
    f->head.content_length = -1;
    f->r = (lv_apigw_request_t){
        .head = &f->head,
        .route_key = LV_SLICE_LIT("$default"),
        .params = f->params,
        .source_ip = LV_SLICE_LIT("127.0.0.1"),
        .request_id = LV_SLICE_LIT("req-1"),
        .time_ms = 1583348638390,
    };
}

static void fixture_header(fixture_t *f, const char *name, const char *value)
{
    lv_http_header_t *h = &f->head.headers[f->head.num_headers++];
    h->name = lv_slice_cstr(name);
    h->value = lv_slice_cstr(value);
    if (lv_slice_eq_nocase(h->name, LV_SLICE_LIT("host")))
        f->head.host = h->value;
}

static void fixture_param(fixture_t *f, const char *name, const char *value)
{
    f->params[f->r.num_params++] = (lv_apigw_param_t){lv_slice_cstr(name), lv_slice_cstr(value)};
}

/* Builds the event into text and parses it back (NULL, after printing the
 * text, if it is not a valid JSON object: jansson also checks UTF-8). */
static json_t *build(const fixture_t *f, lv_buf_t *text)
{
    lv_buf_clear(text);
    lv_apigw_event(&f->r, text);
    json_error_t err;
    json_t *ev = json_loadb(lv_buf_data(text), lv_buf_len(text), JSON_ALLOW_NUL, &err);
    if (!ev || !json_is_object(ev))
        fprintf(stderr, "  bad event JSON (%s): %.*s\n", err.text, (int)lv_buf_len(text), lv_buf_data(text));
    return ev;
}

/* The member at a dotted path ("requestContext.http.method"), or NULL. */
static json_t *at(json_t *v, const char *path)
{
    char key[64];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return v;
}

static const char *str_at(json_t *v, const char *path)
{
    json_t *m = at(v, path);
    return json_is_string(m) ? json_string_value(m) : NULL;
}

/* ---- Event tests -------------------------------------------------------- */

static void test_event_typical(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/r/abc", "a=1&b=2");
    fixture_header(&f, "Host", "api.example.com");
    fixture_header(&f, "User-Agent", "curl/7.88");
    fixture_header(&f, "Cookie", "c1=v1; c2=v2");
    fixture_header(&f, "Accept", "*/*");
    fixture_param(&f, "code", "abc");
    f.r.route_key = LV_SLICE_LIT("GET /r/{code}");
    f.r.request_id = LV_SLICE_LIT("JKJaXmPLvHcESHA=");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK_EQ(json_object_size(ev), 10); /* no body */
    CHECK_STR(str_at(ev, "version"), "2.0");
    CHECK_STR(str_at(ev, "routeKey"), "GET /r/{code}");
    CHECK_STR(str_at(ev, "rawPath"), "/r/abc");
    CHECK_STR(str_at(ev, "rawQueryString"), "a=1&b=2");
    json_t *cookies = at(ev, "cookies");
    CHECK(json_is_array(cookies) && json_array_size(cookies) == 2);
    CHECK_STR(json_string_value(json_array_get(cookies, 0)), "c1=v1");
    CHECK_STR(json_string_value(json_array_get(cookies, 1)), "c2=v2");
    CHECK_EQ(json_object_size(at(ev, "headers")), 3);
    CHECK_STR(str_at(ev, "headers.host"), "api.example.com");
    CHECK_STR(str_at(ev, "headers.user-agent"), "curl/7.88");
    CHECK_STR(str_at(ev, "headers.accept"), "*/*");
    CHECK(!at(ev, "headers.cookie"));
    CHECK_EQ(json_object_size(at(ev, "queryStringParameters")), 2);
    CHECK_STR(str_at(ev, "queryStringParameters.a"), "1");
    CHECK_STR(str_at(ev, "queryStringParameters.b"), "2");
    CHECK_STR(str_at(ev, "requestContext.accountId"), "000000000000");
    CHECK_STR(str_at(ev, "requestContext.apiId"), "levee");
    CHECK_STR(str_at(ev, "requestContext.domainName"), "api.example.com");
    CHECK_STR(str_at(ev, "requestContext.domainPrefix"), "api");
    CHECK_STR(str_at(ev, "requestContext.http.method"), "GET");
    CHECK_STR(str_at(ev, "requestContext.http.path"), "/r/abc");
    CHECK_STR(str_at(ev, "requestContext.http.protocol"), "HTTP/1.1");
    CHECK_STR(str_at(ev, "requestContext.http.sourceIp"), "127.0.0.1");
    CHECK_STR(str_at(ev, "requestContext.http.userAgent"), "curl/7.88");
    CHECK_STR(str_at(ev, "requestContext.requestId"), "JKJaXmPLvHcESHA=");
    CHECK_STR(str_at(ev, "requestContext.routeKey"), "GET /r/{code}");
    CHECK_STR(str_at(ev, "requestContext.stage"), "$default");
    CHECK_STR(str_at(ev, "requestContext.time"), "04/Mar/2020:19:03:58 +0000");
    CHECK(json_is_integer(at(ev, "requestContext.timeEpoch")));
    CHECK_EQ(json_integer_value(at(ev, "requestContext.timeEpoch")), 1583348638390LL);
    CHECK_EQ(json_object_size(at(ev, "pathParameters")), 1);
    CHECK_STR(str_at(ev, "pathParameters.code"), "abc");
    CHECK(!at(ev, "body"));
    CHECK(json_is_false(at(ev, "isBase64Encoded")));
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_from_parser(void)
{
    static const char raw[] = "POST /orders/42%2F7/items?x=%41+b&flag HTTP/1.0\r\n"
                              "Host: shop.local:8080\r\n"
                              "X-Trace: one\r\n"
                              "Cookie: s=1\r\n"
                              "x-trace: two\r\n"
                              "Content-Length: 2\r\n"
                              "\r\n";
    char *copy = lv_memdup0(raw, sizeof raw - 1);
    fixture_t f;
    fixture_init(&f, "", "", "");
    int status = 0;
    ssize_t n = lv_http_parse_request(copy, sizeof raw - 1, 0, 0, &f.head, &status);
    CHECK_EQ(n, (ssize_t)sizeof raw - 1);
    fixture_param(&f, "id", "42%2F7");
    f.r.body = LV_SLICE_LIT("{}");
    f.r.route_key = LV_SLICE_LIT("POST /orders/{id}/items");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK_STR(str_at(ev, "rawPath"), "/orders/42%2F7/items");
    CHECK_STR(str_at(ev, "rawQueryString"), "x=%41+b&flag");
    CHECK_STR(str_at(ev, "queryStringParameters.x"), "A b");
    CHECK_STR(str_at(ev, "queryStringParameters.flag"), "");
    CHECK_STR(str_at(ev, "headers.x-trace"), "one,two");
    CHECK_STR(str_at(ev, "headers.content-length"), "2");
    CHECK_EQ(json_array_size(at(ev, "cookies")), 1);
    CHECK_STR(json_string_value(json_array_get(at(ev, "cookies"), 0)), "s=1");
    CHECK_STR(str_at(ev, "requestContext.http.protocol"), "HTTP/1.0");
    CHECK_STR(str_at(ev, "requestContext.http.method"), "POST");
    CHECK_STR(str_at(ev, "requestContext.domainName"), "shop.local:8080");
    CHECK_STR(str_at(ev, "requestContext.domainPrefix"), "shop");
    CHECK_STR(str_at(ev, "requestContext.http.userAgent"), "");
    CHECK_STR(str_at(ev, "pathParameters.id"), "42/7");
    CHECK_STR(str_at(ev, "body"), "{}");
    CHECK(json_is_false(at(ev, "isBase64Encoded")));
    json_decref(ev);
    lv_buf_free(&text);
    free(copy);
}

static void test_event_minimal_omits_members(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK(!at(ev, "cookies"));
    CHECK(!at(ev, "queryStringParameters"));
    CHECK(!at(ev, "pathParameters"));
    CHECK(!at(ev, "body"));
    CHECK(json_is_object(at(ev, "headers")) && json_object_size(at(ev, "headers")) == 0);
    CHECK_STR(str_at(ev, "rawQueryString"), "");
    CHECK_STR(str_at(ev, "requestContext.domainName"), "");
    CHECK_STR(str_at(ev, "requestContext.domainPrefix"), "");
    CHECK_STR(str_at(ev, "requestContext.http.userAgent"), "");
    CHECK(json_is_false(at(ev, "isBase64Encoded")));
    json_decref(ev);
    /* A query made only of separators has no parameters either. */
    fixture_init(&f, "GET", "/", "&&&");
    ev = build(&f, &text);
    CHECK(ev);
    CHECK_STR(str_at(ev, "rawQueryString"), "&&&");
    CHECK(!at(ev, "queryStringParameters"));
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_headers_lowercased_and_joined(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    fixture_header(&f, "X-A", "1");
    fixture_header(&f, "X-B", "b");
    fixture_header(&f, "x-a", "2");
    fixture_header(&f, "CONTENT-TYPE", "text/plain");
    fixture_header(&f, "X-a", "");
    fixture_header(&f, "X-A", "3");
    fixture_header(&f, "Accept-Encoding", "gzip, br");
    fixture_header(&f, "accept-encoding", "zstd");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK_EQ(json_object_size(at(ev, "headers")), 4);
    CHECK_STR(str_at(ev, "headers.x-a"), "1,2,,3");
    CHECK_STR(str_at(ev, "headers.x-b"), "b");
    CHECK_STR(str_at(ev, "headers.content-type"), "text/plain");
    CHECK_STR(str_at(ev, "headers.accept-encoding"), "gzip, br,zstd");
    /* First-seen order is kept in the text. */
    const char *t = lv_buf_data(&text);
    const char *xa = strstr(t, "\"x-a\""), *xb = strstr(t, "\"x-b\""), *ct = strstr(t, "\"content-type\"");
    CHECK(xa && xb && ct && xa < xb && xb < ct);
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_all_headers(void)
{
    /* A full header table of one repeated name and of distinct names. */
    static char names[LV_HTTP_MAX_HEADERS][16];
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    for (int i = 0; i < LV_HTTP_MAX_HEADERS; i++)
        fixture_header(&f, "X-Same", "v");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK_EQ(json_object_size(at(ev, "headers")), 1);
    CHECK_EQ(strlen(str_at(ev, "headers.x-same")), 2 * LV_HTTP_MAX_HEADERS - 1);
    json_decref(ev);
    fixture_init(&f, "GET", "/", "");
    for (int i = 0; i < LV_HTTP_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof names[i], "H%d", i);
        fixture_header(&f, names[i], names[i]);
    }
    ev = build(&f, &text);
    CHECK(ev);
    CHECK_EQ(json_object_size(at(ev, "headers")), LV_HTTP_MAX_HEADERS);
    CHECK_STR(str_at(ev, "headers.h99"), "H99");
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_cookies(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    fixture_header(&f, "Cookie", "a=1; b=2;c=3 ; ;;  d=4\t");
    fixture_header(&f, "X-Other", "x");
    fixture_header(&f, "COOKIE", "e=5");
    fixture_header(&f, "cookie", "");
    fixture_header(&f, "cookie", " ; ");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    json_t *c = at(ev, "cookies");
    static const char *const want[] = {"a=1", "b=2", "c=3", "d=4", "e=5"};
    CHECK(json_is_array(c));
    CHECK_EQ(json_array_size(c), 5);
    for (size_t i = 0; i < 5; i++)
        CHECK_STR(json_string_value(json_array_get(c, i)), want[i]);
    CHECK_EQ(json_object_size(at(ev, "headers")), 1);
    json_decref(ev);
    /* Only empty cookie headers: no member at all. */
    fixture_init(&f, "GET", "/", "");
    fixture_header(&f, "Cookie", ";");
    ev = build(&f, &text);
    CHECK(ev);
    CHECK(!at(ev, "cookies"));
    CHECK_EQ(json_object_size(at(ev, "headers")), 0);
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_query(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/", "a=1&b&a=2&c=&=x&&d=%41%42+c%2b&e=%zz&f=%4&a=3&g=1=2&h%3Dk=v&%C3%A9=%E2%82%AC");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    json_t *q = at(ev, "queryStringParameters");
    CHECK_EQ(json_object_size(q), 10);
    CHECK_STR(str_at(q, "a"), "1,2,3");
    CHECK_STR(str_at(q, "b"), "");
    CHECK_STR(str_at(q, "c"), "");
    CHECK_STR(json_string_value(json_object_get(q, "")), "x");
    CHECK_STR(str_at(q, "d"), "AB c+");
    CHECK_STR(str_at(q, "e"), "%zz");
    CHECK_STR(str_at(q, "f"), "%4");
    CHECK_STR(str_at(q, "g"), "1=2");
    CHECK_STR(json_string_value(json_object_get(q, "h=k")), "v");
    CHECK_STR(json_string_value(json_object_get(q, "\xc3\xa9")), "\xe2\x82\xac");
    /* Names appear in first-seen order. */
    const char *t = strstr(lv_buf_data(&text), "queryStringParameters");
    CHECK(t);
    const char *pa = strstr(t, "\"a\""), *pb = strstr(t, "\"b\""), *pd = strstr(t, "\"d\"");
    CHECK(pa && pb && pd && pa < pb && pb < pd);
    json_decref(ev);

    /* Decoded bytes that are not UTF-8, or are control characters, still
     * give valid JSON. */
    fixture_init(&f, "GET", "/", "x=%FF%00%0A&%22%5C=%01");
    ev = build(&f, &text);
    CHECK(ev);
    q = at(ev, "queryStringParameters");
    json_t *x = json_object_get(q, "x");
    CHECK(json_is_string(x));
    CHECK_EQ(json_string_length(x), 5);
    CHECK(memcmp(json_string_value(x), "\xef\xbf\xbd\0\n", 5) == 0);
    CHECK_STR(json_string_value(json_object_get(q, "\"\\")), "\x01");
    json_decref(ev);

    /* A NUL in a name is valid JSON (jansson alone refuses it in keys). */
    fixture_init(&f, "GET", "/", "a%00b=1");
    lv_buf_clear(&text);
    lv_apigw_event(&f.r, &text);
    lv_buf_append(&text, "", 1);
    CHECK(strstr(lv_buf_data(&text), ",\"queryStringParameters\":{\"a\\u0000b\":\"1\"},"));
    lv_buf_free(&text);
}

static void test_event_query_many_params(void)
{
    /* Thousands of parameters, half of them one repeated name: grouping
     * must stay correct (and fast: this is sorted, not pairwise). */
    lv_buf_t q = LV_BUF_INIT;
    enum { N = 6000 };
    for (int i = 0; i < N; i++)
        lv_buf_printf(&q, "%sk%d=%d&rep=%d", i ? "&" : "", i, i, i);
    lv_buf_append(&q, "", 1);
    fixture_t f;
    fixture_init(&f, "GET", "/", lv_buf_data(&q));
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    json_t *qs = at(ev, "queryStringParameters");
    CHECK_EQ(json_object_size(qs), N + 1);
    CHECK_STR(str_at(qs, "k5999"), "5999");
    const char *rep = str_at(qs, "rep");
    CHECK(rep);
    CHECK(strncmp(rep, "0,1,2,3,", 8) == 0);
    CHECK(strlen(rep) > 5 && strcmp(rep + strlen(rep) - 5, ",5999") == 0);
    json_decref(ev);
    lv_buf_free(&text);
    lv_buf_free(&q);
}

static void test_event_path_params(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/x", "");
    fixture_param(&f, "plain", "abc");
    fixture_param(&f, "utf8", "caf%C3%A9");
    fixture_param(&f, "plus", "a+b");
    fixture_param(&f, "slash", "a%2Fb");
    fixture_param(&f, "bad", "%FF%zz%");
    fixture_param(&f, "empty", "");
    fixture_param(&f, "quote", "%22%5C%0d");
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    json_t *p = at(ev, "pathParameters");
    CHECK_EQ(json_object_size(p), 7);
    CHECK_STR(str_at(p, "plain"), "abc");
    CHECK_STR(str_at(p, "utf8"), "caf\xc3\xa9");
    CHECK_STR(str_at(p, "plus"), "a+b");
    CHECK_STR(str_at(p, "slash"), "a/b");
    CHECK_STR(str_at(p, "bad"), "\xef\xbf\xbd%zz%");
    CHECK_STR(str_at(p, "empty"), "");
    CHECK_STR(str_at(p, "quote"), "\"\\\r");
    json_decref(ev);
    /* A value longer than the on-stack scratch. */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    fixture_init(&f, "GET", "/x", "");
    fixture_param(&f, "big", big);
    ev = build(&f, &text);
    CHECK(ev);
    CHECK_STR(str_at(ev, "pathParameters.big"), big);
    json_decref(ev);
    lv_buf_free(&text);
}

/* A string literal and its length, embedded NULs included. */
#define B(s) s, sizeof(s) - 1

static void test_event_body(void)
{
    static const struct {
        const char *body;
        size_t len;
        bool base64;
        const char *want; /* body member as sent */
    } cases[] = {
        {B("hello"), false, "hello"},
        {B("{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\"}"), false, "{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\"}"},
        {B("line\r\n\ttab \x01\x1f\x7f \"q\" \\"), false, "line\r\n\ttab \x01\x1f\x7f \"q\" \\"},
        {B("a\0b"), true, "YQBi"},
        {B("\xff\xfe"), true, "//4="},
        {B("caf\xc3"), true, "Y2Fmww=="},      /* truncated sequence at the end */
        {B("\xed\xa0\x80"), true, "7aCA"},     /* a surrogate */
        {B("\xc0\xaf"), true, "wK8="},         /* overlong */
        {B("\xf4\x90\x80\x80"), true, "9JCAgA=="}, /* above U+10FFFF */
    };
    lv_buf_t text = LV_BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t f;
        fixture_init(&f, "POST", "/", "");
        char *copy = lv_malloc(cases[i].len);
        memcpy(copy, cases[i].body, cases[i].len);
        f.r.body = lv_slice(copy, cases[i].len);
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_STR(str_at(ev, "body"), cases[i].want);
        CHECK(json_is_boolean(at(ev, "isBase64Encoded")));
        if (json_is_true(at(ev, "isBase64Encoded")) != cases[i].base64)
            LV_FAIL_("case %zu: isBase64Encoded should be %d", i, cases[i].base64);
        json_decref(ev);
        free(copy);
    }
    /* NUL, a lone continuation byte, a 2-byte character or plain text at
     * each position of a 19-byte body (the text check goes 8 bytes a step). */
    static const char *const inserts[] = {"\0", "\x80", "\xc3\xa9", "x"};
    for (size_t k = 0; k < 4; k++) {
        for (size_t pos = 0; pos < 18; pos++) {
            char body[19];
            memset(body, 'b', sizeof body);
            memcpy(body + pos, inserts[k], k == 2 ? 2 : 1);
            fixture_t f;
            fixture_init(&f, "POST", "/", "");
            f.r.body = lv_slice(body, sizeof body);
            json_t *ev = build(&f, &text);
            CHECK(ev);
            bool text_body = k >= 2;
            CHECK_EQ(json_is_true(at(ev, "isBase64Encoded")), !text_body);
            if (text_body)
                CHECK(json_string_length(at(ev, "body")) == sizeof body &&
                      memcmp(json_string_value(at(ev, "body")), body, sizeof body) == 0);
            json_decref(ev);
        }
    }
    lv_buf_free(&text);
}

static void test_event_escaping(void)
{
    /* Every control character, quote and backslash in a header value: the
     * text uses the short escapes where JSON has them, \u00XX otherwise,
     * and reads back as the same bytes. */
    char value[40];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        value[n++] = (char)c;
    value[n++] = '"';
    value[n++] = '\\';
    value[n++] = 0x7f;
    value[n] = 0;
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    fixture_header(&f, "X-Ctl", value);
    lv_buf_t text = LV_BUF_INIT;
    json_t *ev = build(&f, &text);
    CHECK(ev);
    CHECK_STR(str_at(ev, "headers.x-ctl"), value);
    lv_buf_append(&text, "", 1);
    const char *t = lv_buf_data(&text);
    CHECK(strstr(t, "\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e"));
    CHECK(strstr(t, "\\u001f\\\"\\\\\x7f\""));
    json_decref(ev);
    lv_buf_free(&text);
}

static void test_event_escaping_every_position(void)
{
    /* The escaper copies plain ASCII a word at a time: each byte that needs
     * care (every byte value but NUL, which ends the C string here) at
     * each position of a 19-byte value must still come out right. */
    lv_buf_t text = LV_BUF_INIT;
    for (int c = 1; c < 256; c++) {
        for (int pos = 0; pos < 19; pos++) {
            char value[20];
            memset(value, 'v', 19);
            value[19] = 0;
            value[pos] = (char)c;
            fixture_t f;
            fixture_init(&f, "GET", "/", "");
            fixture_header(&f, "X", value);
            json_t *ev = build(&f, &text);
            CHECK(ev);
            const char *got = str_at(ev, "headers.x");
            CHECK(got);
            if (c < 0x80) {
                CHECK_STR(got, value);
            } else {
                /* a lone byte >= 0x80 is never valid UTF-8 */
                CHECK_EQ(strlen(got), 18 + 3);
                CHECK(memcmp(got + pos, "\xef\xbf\xbd", 3) == 0);
            }
            json_decref(ev);
        }
    }
    lv_buf_free(&text);
}

static void test_event_invalid_utf8_replaced(void)
{
    /* One U+FFFD per maximal ill-formed subsequence (Unicode 3.9). */
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\x80z", "a\xef\xbf\xbdz"},
        {"\xe2\x82", "\xef\xbf\xbd"},                         /* truncated at the end */
        {"\xe2\x82z", "\xef\xbf\xbdz"},                       /* truncated in the middle */
        {"\xf0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong 4-byte lead */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},             /* overlong '/' */
        {"\xf8\x88\x80\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},             /* U+10FFFF is fine */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xef\xbb\xbf\xe2\x82\xac", "\xef\xbb\xbf\xe2\x82\xac"}, /* BOM, euro: valid */
        {"\xff", "\xef\xbf\xbd"},
    };
    lv_buf_t text = LV_BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t f;
        fixture_init(&f, "GET", "/", "");
        fixture_header(&f, "X-V", cases[i].in);
        fixture_header(&f, cases[i].in, "name");
        f.r.route_key = lv_slice_cstr(cases[i].in);
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_STR(str_at(ev, "headers.x-v"), cases[i].out);
        CHECK_STR(str_at(ev, "routeKey"), cases[i].out);
        CHECK_STR(json_string_value(json_object_get(at(ev, "headers"), cases[i].out)), "name");
        json_decref(ev);
    }
    lv_buf_free(&text);
}

static void test_event_domain(void)
{
    static const struct {
        const char *host, *prefix;
    } cases[] = {
        {"abc123.execute-api.us-east-1.amazonaws.com", "abc123"},
        {"localhost", "localhost"},
        {"localhost:8080", "localhost"},
        {"127.0.0.1:9000", "127"},
        {"[::1]:8080", "[::1]"},
        {"[::1", "[::1"},
        {".x", ""},
    };
    lv_buf_t text = LV_BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t f;
        fixture_init(&f, "GET", "/", "");
        fixture_header(&f, "Host", cases[i].host);
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_STR(str_at(ev, "requestContext.domainName"), cases[i].host);
        CHECK_STR(str_at(ev, "requestContext.domainPrefix"), cases[i].prefix);
        json_decref(ev);
    }
    lv_buf_free(&text);
}

static void test_event_time(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {0, "01/Jan/1970:00:00:00 +0000"},
        {999, "01/Jan/1970:00:00:00 +0000"},
        {-1, "31/Dec/1969:23:59:59 +0000"},
        {-1000, "31/Dec/1969:23:59:59 +0000"},
        {-1001, "31/Dec/1969:23:59:58 +0000"},
        {951782400000, "29/Feb/2000:00:00:00 +0000"},
        {4107542399000, "28/Feb/2100:23:59:59 +0000"},
        {4107542400000, "01/Mar/2100:00:00:00 +0000"},
        {253402300799999, "31/Dec/9999:23:59:59 +0000"},
        {253402300800000, "01/Jan/10000:00:00:00 +0000"},
        {-62167219200000, "01/Jan/0000:00:00:00 +0000"},
        {-62167219201000, "31/Dec/-1:23:59:59 +0000"},
    };
    lv_buf_t text = LV_BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t f;
        fixture_init(&f, "GET", "/", "");
        f.r.time_ms = cases[i].ms;
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_STR(str_at(ev, "requestContext.time"), cases[i].want);
        CHECK_EQ(json_integer_value(at(ev, "requestContext.timeEpoch")), cases[i].ms);
        json_decref(ev);
    }
    /* Against gmtime_r over a spread of instants (C month names). */
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    srand(2020);
    for (int i = 0; i < 3000; i++) {
        int64_t ms = ((int64_t)rand() << 20 ^ rand()) % 9000000000000LL - 1000000000000LL;
        time_t secs = (time_t)(ms / 1000 - (ms % 1000 < 0));
        struct tm tm;
        gmtime_r(&secs, &tm);
        char want[64];
        snprintf(want, sizeof want, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        fixture_t f;
        fixture_init(&f, "GET", "/", "");
        f.r.time_ms = ms;
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_STR(str_at(ev, "requestContext.time"), want);
        json_decref(ev);
    }
    /* The extremes still give valid JSON with the exact epoch. */
    const int64_t extremes[] = {INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < 2; i++) {
        fixture_t f;
        fixture_init(&f, "GET", "/", "");
        f.r.time_ms = extremes[i];
        json_t *ev = build(&f, &text);
        CHECK(ev);
        CHECK_EQ(json_integer_value(at(ev, "requestContext.timeEpoch")), extremes[i]);
        json_decref(ev);
    }
    lv_buf_free(&text);
}

static void test_event_appends(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/", "");
    lv_buf_t text = LV_BUF_INIT;
    lv_buf_append_str(&text, "prefix");
    lv_apigw_event(&f.r, &text);
    CHECK(lv_buf_len(&text) > 6);
    CHECK(memcmp(lv_buf_data(&text), "prefix{\"version\":\"2.0\"", 22) == 0);
    CHECK_EQ(lv_buf_data(&text)[lv_buf_len(&text) - 1], '}');
    lv_buf_free(&text);
}

static void test_event_random_bytes(void)
{
    /* Arbitrary bytes in every slice: the event is always valid JSON. */
    srand(8259);
    lv_buf_t text = LV_BUF_INIT;
    for (int iter = 0; iter < 3000; iter++) {
        char pool[9][24];
        for (int s = 0; s < 9; s++) {
            for (int i = 0; i < 23; i++) {
                int r = rand() % 10;
                pool[s][i] = (char)(r < 3 ? rand() : r < 5 ? "%&=+;,\\\"A"[rand() % 9] : 'a' + rand() % 3);
            }
            pool[s][23] = 0;
        }
        fixture_t f;
        fixture_init(&f, pool[0], pool[1], pool[2]);
        fixture_header(&f, pool[3], pool[4]);
        fixture_header(&f, "cookie", pool[5]);
        fixture_header(&f, "host", pool[6]);
        fixture_param(&f, pool[7], pool[8]);
        f.r.body = lv_slice(pool[(iter % 9)], (size_t)(rand() % 24));
        f.head.minor_version = iter & 1;
        json_t *ev = build(&f, &text);
        CHECK(ev);
        json_decref(ev);
    }
    lv_buf_free(&text);
}

/* ---- Answer helpers ----------------------------------------------------- */

typedef struct {
    int rc;
    lv_apigw_answer_t a;
    char err[128];
} mapped_t;

/* Maps result (an exactly sized heap copy, so over-reads trip ASan). */
static void map_n(mapped_t *m, const char *result, size_t n)
{
    char *copy = n ? lv_malloc(n) : NULL;
    if (n)
        memcpy(copy, result, n);
    m->err[0] = 0;
    m->rc = lv_apigw_answer(lv_slice(copy, n), &m->a, m->err, sizeof m->err);
    free(copy);
}

static void map(mapped_t *m, const char *result)
{
    map_n(m, result, strlen(result));
}

/* ---- Answer tests ------------------------------------------------------- */

static void test_answer_plain_values(void)
{
    static const struct {
        const char *result, *body;
    } cases[] = {
        {"\"Hello from Lambda!\"", "Hello from Lambda!"},
        {"{ \"message\": \"Hello from Lambda!\" }", "{ \"message\": \"Hello from Lambda!\" }"},
        {"{\"status\":200}", "{\"status\":200}"},
        {"{\"StatusCode\":500}", "{\"StatusCode\":500}"},
        {"42", "42"},
        {"-1.5e3", "-1.5e3"},
        {"null", "null"},
        {"true", "true"},
        {"[1, {\"statusCode\": 500}]", "[1, {\"statusCode\": 500}]"},
        {" {\"a\":1}\n", " {\"a\":1}\n"},
        {"\"esc \\\"q\\\" \\u00e9 \\n\"", "esc \"q\" \xc3\xa9 \n"},
        {"\"\"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mapped_t m = {.a = {0}};
        map(&m, cases[i].result);
        CHECK_EQ(m.rc, 0);
        CHECK_EQ(m.a.status, 200);
        CHECK_BUF(&m.a.headers, "Content-Type: application/json\r\n");
        CHECK_BUF(&m.a.body, cases[i].body);
        lv_apigw_answer_free(&m.a);
    }
}

static void test_answer_empty_result(void)
{
    mapped_t m = {.a = {0}};
    map(&m, "");
    CHECK_EQ(m.rc, 0);
    CHECK_EQ(m.a.status, 200);
    CHECK_EQ(lv_buf_len(&m.a.body), 0);
    CHECK_BUF(&m.a.headers, "Content-Type: application/json\r\n");
    lv_apigw_answer_free(&m.a);
}

static void test_answer_string_with_nul(void)
{
    mapped_t m = {.a = {0}};
    map(&m, "\"a\\u0000b\"");
    CHECK_EQ(m.rc, 0);
    CHECK_EQ(lv_buf_len(&m.a.body), 3);
    CHECK(memcmp(lv_buf_data(&m.a.body), "a\0b", 3) == 0);
    lv_apigw_answer_free(&m.a);
}

static void test_answer_structured(void)
{
    mapped_t m = {.a = {0}};
    map(&m, "{\"statusCode\":201,"
            "\"headers\":{\"X-A\":\"1\",\"Content-Type\":\"text/plain\",\"X-Int\":5,\"X-Neg\":-7,"
            "\"X-Real\":1.5,\"X-Tenth\":0.1,\"X-Big\":1e300,\"X-T\":true,\"X-F\":false,\"X-Null\":null,"
            "\"X-Trim\":\"  v w \\t\",\"X-Utf8\":\"caf\\u00e9\",\"set-cookie\":\"h=1\"},"
            "\"cookies\":[\"a=1\",\"b=2; Path=/; HttpOnly\"],"
            "\"body\":\"created\",\"isBase64Encoded\":false}");
    CHECK_EQ(m.rc, 0);
    CHECK_EQ(m.a.status, 201);
    CHECK_BUF(&m.a.headers, "X-A: 1\r\n"
                                            "Content-Type: text/plain\r\n"
                                            "X-Int: 5\r\n"
                                            "X-Neg: -7\r\n"
                                            "X-Real: 1.5\r\n"
                                            "X-Tenth: 0.1\r\n"
                                            "X-Big: 1e+300\r\n"
                                            "X-T: true\r\n"
                                            "X-F: false\r\n"
                                            "X-Trim: v w\r\n"
                                            "X-Utf8: caf\xc3\xa9\r\n"
                                            "set-cookie: h=1\r\n"
                                            "Set-Cookie: a=1\r\n"
                                            "Set-Cookie: b=2; Path=/; HttpOnly\r\n");
    CHECK_BUF(&m.a.body, "created");
    lv_apigw_answer_free(&m.a);
}

static void test_answer_structured_minimal(void)
{
    static const struct {
        const char *result;
        int status;
        const char *headers, *body;
    } cases[] = {
        {"{\"statusCode\":204}", 204, "Content-Type: application/json\r\n", ""},
        {"{\"statusCode\":100}", 100, "Content-Type: application/json\r\n", ""},
        {"{\"statusCode\":599,\"body\":null,\"headers\":null,\"cookies\":null,\"isBase64Encoded\":null}", 599,
         "Content-Type: application/json\r\n", ""},
        {"{\"statusCode\":404,\"body\":\"{\\\"e\\\":1}\"}", 404, "Content-Type: application/json\r\n", "{\"e\":1}"},
        {"{\"statusCode\":200,\"headers\":{\"content-type\":\"text/html\"},\"body\":\"<p>\"}", 200,
         "content-type: text/html\r\n", "<p>"},
        {"{\"statusCode\":200,\"headers\":{},\"cookies\":[]}", 200, "Content-Type: application/json\r\n", ""},
        {"{\"statusCode\":302,\"headers\":{\"Location\":\"/x\"},\"extra\":[1,2]}", 302,
         "Location: /x\r\nContent-Type: application/json\r\n", ""},
        {"{\"body\":\"x\",\"statusCode\":200}", 200, "Content-Type: application/json\r\n", "x"},
        {"{\"statusCode\":200,\"body\":\"a\\u0000b\"}", 200, "Content-Type: application/json\r\n", "a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mapped_t m = {.a = {0}};
        map(&m, cases[i].result);
        CHECK_EQ(m.rc, 0);
        CHECK_EQ(m.a.status, cases[i].status);
        CHECK_BUF(&m.a.headers, cases[i].headers);
        /* CHECK_SLICE stops at a NUL in the expectation; compare the length too */
        if (i == 8)
            CHECK(lv_buf_len(&m.a.body) == 3 && memcmp(lv_buf_data(&m.a.body), "a\0b", 3) == 0);
        else
            CHECK_BUF(&m.a.body, cases[i].body);
        lv_apigw_answer_free(&m.a);
    }
}

static void test_answer_dropped_headers(void)
{
    mapped_t m = {.a = {0}};
    map(&m, "{\"statusCode\":200,\"headers\":{\"Content-Length\":\"999\",\"Transfer-Encoding\":\"chunked\","
            "\"Connection\":\"close\",\"Keep-Alive\":\"timeout=5\",\"Date\":\"x\",\"Server\":\"fn\","
            "\"Upgrade\":\"h2c\",\"TE\":\"trailers\",\"Trailer\":\"X\",\"Proxy-Connection\":\"x\","
            "\"proxy-authenticate\":\"x\",\"PROXY-AUTHORIZATION\":\"x\",\"X-Kept\":\"yes\"},"
            "\"multiValueHeaders\":{\"content-length\":[\"1\"]},\"body\":\"ok\"}");
    CHECK_EQ(m.rc, 0);
    CHECK_BUF(&m.a.headers, "X-Kept: yes\r\nContent-Type: application/json\r\n");
    CHECK_BUF(&m.a.body, "ok");
    lv_apigw_answer_free(&m.a);
}

static void test_answer_multi_value_headers(void)
{
    mapped_t m = {.a = {0}};
    map(&m, "{\"statusCode\":200,\"headers\":{\"X-One\":\"1\",\"X-Both\":\"from headers\"},"
            "\"multiValueHeaders\":{\"X-Both\":[\"m1\",\"m2\"],\"X-Num\":[1,true],\"X-Empty\":[],"
            "\"X-Nothing\":null,\"Content-Type\":[\"text/csv\"]}}");
    CHECK_EQ(m.rc, 0);
    CHECK_BUF(&m.a.headers, "X-One: 1\r\n"
                                            "X-Both: m1\r\n"
                                            "X-Both: m2\r\n"
                                            "X-Num: 1\r\n"
                                            "X-Num: true\r\n"
                                            "Content-Type: text/csv\r\n");
    lv_apigw_answer_free(&m.a);
}

static void test_answer_base64_body(void)
{
    static const struct {
        const char *result;
        const char *body;
        size_t len;
    } cases[] = {
        {"{\"statusCode\":200,\"body\":\"aGk=\",\"isBase64Encoded\":true}", "hi", 2},
        {"{\"statusCode\":200,\"body\":\"aGk\",\"isBase64Encoded\":true}", "hi", 2},
        {"{\"statusCode\":200,\"body\":\"AP8A\",\"isBase64Encoded\":true}", "\0\xff\0", 3},
        {"{\"statusCode\":200,\"body\":\"\",\"isBase64Encoded\":true}", "", 0},
        {"{\"statusCode\":200,\"isBase64Encoded\":true}", "", 0},
        {"{\"statusCode\":200,\"body\":\"aGk=\",\"isBase64Encoded\":false}", "aGk=", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mapped_t m = {.a = {0}};
        map(&m, cases[i].result);
        CHECK_EQ(m.rc, 0);
        CHECK_EQ(lv_buf_len(&m.a.body), cases[i].len);
        CHECK(cases[i].len == 0 || memcmp(lv_buf_data(&m.a.body), cases[i].body, cases[i].len) == 0);
        lv_apigw_answer_free(&m.a);
    }
}

static void test_answer_errors(void)
{
    static const struct {
        const char *result, *err;
    } cases[] = {
        {"not json", "result is not JSON"},
        {"{", "result is not JSON"},
        {"  ", "result is not JSON"},
        {"{} x", "result is not JSON"},
        {"\"unterminated", "result is not JSON"},
        {"\"\xff\"", "result is not JSON"},
        {"{\"statusCode\":100000000000000000000000}", "result is not JSON"},
        {"{\"statusCode\":\"200\"}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":99}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":600}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":-200}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":200.0}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":null}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":true}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":9223372036854775807}", "statusCode is not an integer between 100 and 599"},
        {"{\"statusCode\":200,\"headers\":[]}", "headers is not an object"},
        {"{\"statusCode\":200,\"headers\":\"X-A: 1\"}", "headers is not an object"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":{}}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":[\"1\"]}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":\"a\\r\\nX-Evil: 1\"}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":\"a\\nb\"}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":\"a\\rb\"}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":\"a\\u0000b\"}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"X-A\":\"a\\u007fb\"}}", "bad header value"},
        {"{\"statusCode\":200,\"headers\":{\"Bad Name\":\"1\"}}", "bad header name"},
        {"{\"statusCode\":200,\"headers\":{\"\":\"1\"}}", "bad header name"},
        {"{\"statusCode\":200,\"headers\":{\"a:b\":\"1\"}}", "bad header name"},
        {"{\"statusCode\":200,\"headers\":{\"X\\r\\nY\":\"1\"}}", "bad header name"},
        {"{\"statusCode\":200,\"headers\":{\"caf\\u00e9\":\"1\"}}", "bad header name"},
        /* jansson refuses NUL in object keys outright */
        {"{\"statusCode\":200,\"headers\":{\"X-Null-Name\\u0000\":\"1\"}}", "result is not JSON"},
        {"{\"statusCode\":200,\"multiValueHeaders\":[]}", "multiValueHeaders is not an object"},
        {"{\"statusCode\":200,\"multiValueHeaders\":{\"X-A\":\"1\"}}", "multiValueHeaders value is not an array"},
        {"{\"statusCode\":200,\"multiValueHeaders\":{\"X-A\":[{}]}}", "bad header value"},
        {"{\"statusCode\":200,\"multiValueHeaders\":{\"X-A\":[\"ok\",\"a\\nb\"]}}", "bad header value"},
        {"{\"statusCode\":200,\"multiValueHeaders\":{\"X Y\":[\"1\"]}}", "bad header name"},
        {"{\"statusCode\":200,\"cookies\":\"a=1\"}", "cookies is not an array of strings"},
        {"{\"statusCode\":200,\"cookies\":[1]}", "cookies is not an array of strings"},
        {"{\"statusCode\":200,\"cookies\":[\"a=1\",null]}", "cookies is not an array of strings"},
        {"{\"statusCode\":200,\"cookies\":[\"a=1\\r\\nX: y\"]}", "bad cookie"},
        {"{\"statusCode\":200,\"body\":5}", "body is not a string"},
        {"{\"statusCode\":200,\"body\":{\"a\":1}}", "body is not a string"},
        {"{\"statusCode\":200,\"isBase64Encoded\":\"true\"}", "isBase64Encoded is not a boolean"},
        {"{\"statusCode\":200,\"isBase64Encoded\":1}", "isBase64Encoded is not a boolean"},
        {"{\"statusCode\":200,\"body\":\"a=b\",\"isBase64Encoded\":true}", "body is not valid base64"},
        {"{\"statusCode\":200,\"body\":\"aGk=\\n\",\"isBase64Encoded\":true}", "body is not valid base64"},
        {"{\"statusCode\":200,\"body\":\"a\",\"isBase64Encoded\":true}", "body is not valid base64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mapped_t m = {.a = {0}};
        /* The answer buffers hold a previous answer: an error leaves them empty. */
        map(&m, "{\"statusCode\":200,\"headers\":{\"X\":\"1\"},\"body\":\"old\"}");
        CHECK_EQ(m.rc, 0);
        map(&m, cases[i].result);
        if (m.rc != -1)
            LV_FAIL_("case %zu (%s) was accepted", i, cases[i].result);
        CHECK_STR(m.err, cases[i].err);
        CHECK_EQ(m.a.status, 0);
        CHECK_EQ(lv_buf_len(&m.a.headers), 0);
        CHECK_EQ(lv_buf_len(&m.a.body), 0);
        lv_apigw_answer_free(&m.a);
    }
}

static void test_answer_err_buffer(void)
{
    lv_apigw_answer_t a = {0};
    CHECK_EQ(lv_apigw_answer(LV_SLICE_LIT("nope"), &a, NULL, 0), -1);
    char small[7];
    CHECK_EQ(lv_apigw_answer(LV_SLICE_LIT("nope"), &a, small, sizeof small), -1);
    CHECK_STR(small, "result");
    lv_apigw_answer_free(&a);
}

static void test_answer_reuse(void)
{
    /* A second answer replaces the first; free leaves a zeroed answer. */
    lv_apigw_answer_t a = {0};
    char err[64];
    CHECK_EQ(lv_apigw_answer(LV_SLICE_LIT("{\"statusCode\":201,\"body\":\"one\"}"), &a, err, sizeof err), 0);
    CHECK_EQ(lv_apigw_answer(LV_SLICE_LIT("\"two\""), &a, err, sizeof err), 0);
    CHECK_EQ(a.status, 200);
    CHECK_BUF(&a.body, "two");
    CHECK_BUF(&a.headers, "Content-Type: application/json\r\n");
    lv_apigw_answer_free(&a);
    CHECK(a.headers.data == NULL && a.body.data == NULL && a.status == 0);
    lv_apigw_answer_free(&a);
}

static void test_answer_large_body(void)
{
    /* 1 MB of base64 through the structured path. */
    enum { N = 1 << 20 };
    char *raw = lv_malloc(N);
    for (size_t i = 0; i < N; i++)
        raw[i] = (char)(i * 7);
    lv_buf_t enc = LV_BUF_INIT, doc = LV_BUF_INIT;
    lv_base64_encode(lv_slice(raw, N), &enc);
    lv_buf_append_str(&doc, "{\"statusCode\":200,\"isBase64Encoded\":true,\"body\":\"");
    lv_buf_append(&doc, lv_buf_data(&enc), lv_buf_len(&enc));
    lv_buf_append_str(&doc, "\"}");
    mapped_t m = {.a = {0}};
    map_n(&m, lv_buf_data(&doc), lv_buf_len(&doc));
    CHECK_EQ(m.rc, 0);
    CHECK_EQ(lv_buf_len(&m.a.body), N);
    CHECK(memcmp(lv_buf_data(&m.a.body), raw, N) == 0);
    lv_apigw_answer_free(&m.a);
    lv_buf_free(&enc);
    lv_buf_free(&doc);
    free(raw);
}

/* ---- Timing (printed, not asserted) ------------------------------------- */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void test_timing(void)
{
    fixture_t f;
    fixture_init(&f, "GET", "/r/abc123", "utm_source=news&utm_medium=email&page=2");
    fixture_header(&f, "Host", "api.example.com");
    fixture_header(&f, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
    fixture_header(&f, "Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
    fixture_header(&f, "Accept-Language", "en-US,en;q=0.5");
    fixture_header(&f, "Accept-Encoding", "gzip, deflate, br, zstd");
    fixture_header(&f, "Referer", "https://example.com/newsletter");
    fixture_header(&f, "Connection", "keep-alive");
    fixture_header(&f, "Cookie", "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark");
    fixture_header(&f, "Upgrade-Insecure-Requests", "1");
    fixture_header(&f, "X-Forwarded-For", "203.0.113.7");
    fixture_param(&f, "code", "abc123");
    f.r.route_key = LV_SLICE_LIT("GET /r/{code}");
    f.r.request_id = LV_SLICE_LIT("c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
    lv_buf_t text = LV_BUF_INIT;
    enum { EVENTS = 200000, ANSWERS = 100000 };
    double t0 = now_ns();
    for (int i = 0; i < EVENTS; i++) {
        lv_buf_clear(&text);
        lv_apigw_event(&f.r, &text);
    }
    double ev_ns = (now_ns() - t0) / EVENTS;
    size_t ev_len = lv_buf_len(&text);

    static const char answer[] = "{\"statusCode\":200,\"headers\":{\"Content-Type\":\"text/html; charset=utf-8\","
                                 "\"Cache-Control\":\"max-age=60\",\"X-Request-Id\":\"abc\"},"
                                 "\"body\":\"<html><body><h1>Hello from Lambda!</h1></body></html>\"}";
    lv_apigw_answer_t a = {0};
    char err[64];
    t0 = now_ns();
    for (int i = 0; i < ANSWERS; i++)
        if (lv_apigw_answer(LV_SLICE_LIT(answer), &a, err, sizeof err) != 0)
            LV_FAIL_("timing answer failed: %s", err);
    double ans_ns = (now_ns() - t0) / ANSWERS;
    printf("timing: event (10 headers, 3 query params, 1 path param, no body, %zu bytes) %.0f ns; "
           "answer {statusCode, 3 headers, body} %.0f ns\n",
           ev_len, ev_ns, ans_ns);
    lv_apigw_answer_free(&a);
    lv_buf_free(&text);
}

int main(void)
{
    LV_RUN(test_event_typical);
    LV_RUN(test_event_from_parser);
    LV_RUN(test_event_minimal_omits_members);
    LV_RUN(test_event_headers_lowercased_and_joined);
    LV_RUN(test_event_all_headers);
    LV_RUN(test_event_cookies);
    LV_RUN(test_event_query);
    LV_RUN(test_event_query_many_params);
    LV_RUN(test_event_path_params);
    LV_RUN(test_event_body);
    LV_RUN(test_event_escaping);
    LV_RUN(test_event_escaping_every_position);
    LV_RUN(test_event_invalid_utf8_replaced);
    LV_RUN(test_event_domain);
    LV_RUN(test_event_time);
    LV_RUN(test_event_appends);
    LV_RUN(test_event_random_bytes);
    LV_RUN(test_answer_plain_values);
    LV_RUN(test_answer_empty_result);
    LV_RUN(test_answer_string_with_nul);
    LV_RUN(test_answer_structured);
    LV_RUN(test_answer_structured_minimal);
    LV_RUN(test_answer_dropped_headers);
    LV_RUN(test_answer_multi_value_headers);
    LV_RUN(test_answer_base64_body);
    LV_RUN(test_answer_errors);
    LV_RUN(test_answer_err_buffer);
    LV_RUN(test_answer_reuse);
    LV_RUN(test_answer_large_body);
    LV_RUN(test_timing);
    return lv_test_summary();
}
