/* capture_test.c: route capture: the record builder (parsed back with
 * jansson, every field, hostile headers, caps), the path parameters, the
 * partition key choice, the snapshot, and the bounded buffer's accounting,
 * including a simulation of a stream that keeps refusing, which checks that
 * under `shed_request` no answered request loses its record and memory
 * stays within the limit. The last tests run the whole capture against a
 * real stream in a temporary data_dir: records read back one per submit,
 * keys in the right shards, a deleted stream (ENOENT) holding records until
 * it is back, and shed vs drop with a tiny buffer. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/loop.h"
#include "gateway/capture.h"
#include "metrics/metrics.h"
#include "stream/stream.h"
#include "test.h"

/* ---- helpers ---- */

static lv_capture_fields_t sample_fields(void)
{
    static const lv_route_param_t params[] = {{LV_SLICE_LIT("code"), LV_SLICE_LIT("abc123")},
                                              {LV_SLICE_LIT("id"), LV_SLICE_LIT("42")}};
    return (lv_capture_fields_t){
        .time_ms = 1795000000123,
        .route = LV_SLICE_LIT("GET /r/{code}/{id}"),
        .method = LV_SLICE_LIT("GET"),
        .path = LV_SLICE_LIT("/r/abc123/42"),
        .query = LV_SLICE_LIT("utm=tv&x=1"),
        .status = 302,
        .cache = LV_CAPTURE_CACHE_HIT,
        .latency_us = 17,
        .ip = LV_SLICE_LIT("203.0.113.9"),
        .ua = LV_SLICE_LIT("Mozilla/5.0 (TV)"),
        .referer = LV_SLICE_LIT("https://tv.example/ad"),
        .params = params,
        .num_params = 2,
        .request_id = LV_SLICE_LIT("8476a536-e9f4-41e8-9739-2dfe598c3fcd"),
    };
}

/* Builds f's record and parses it; NULL (and a failed check) if it is not
 * one JSON object. The caller json_decref's. */
static json_t *record_json(const lv_capture_fields_t *f, size_t *len_out)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "junk before"); /* the record is appended, not written at 0 */
    size_t n = lv_capture_record(f, &b);
    size_t total = lv_buf_len(&b);
    json_error_t err;
    json_t *j = json_loadb(lv_buf_data(&b) + total - n, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!j)
        fprintf(stderr, "  json error: %s in %.*s\n", err.text, (int)(n > 300 ? 300 : n), lv_buf_data(&b) + total - n);
    if (len_out)
        *len_out = n;
    lv_buf_free(&b);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static size_t jstrlen(json_t *o, const char *k)
{
    return json_string_length(json_object_get(o, k));
}

/* ---- the record ---- */

static void test_record_every_field(void)
{
    lv_capture_fields_t f = sample_fields();
    size_t n;
    json_t *j = record_json(&f, &n);
    CHECK(j);
    CHECK(json_is_object(j));
    CHECK_EQ(json_object_size(j), 13);
    CHECK_EQ(json_integer_value(json_object_get(j, "time")), 1795000000123);
    CHECK_STR(jstr(j, "route"), "GET /r/{code}/{id}");
    CHECK_STR(jstr(j, "method"), "GET");
    CHECK_STR(jstr(j, "path"), "/r/abc123/42");
    CHECK_STR(jstr(j, "query"), "utm=tv&x=1");
    CHECK_EQ(json_integer_value(json_object_get(j, "status")), 302);
    CHECK_STR(jstr(j, "cache"), "HIT");
    CHECK_EQ(json_integer_value(json_object_get(j, "latency_us")), 17);
    CHECK_STR(jstr(j, "ip"), "203.0.113.9");
    CHECK_STR(jstr(j, "ua"), "Mozilla/5.0 (TV)");
    CHECK_STR(jstr(j, "referer"), "https://tv.example/ad");
    json_t *p = json_object_get(j, "params");
    CHECK(json_is_object(p));
    CHECK_EQ(json_object_size(p), 2);
    CHECK_STR(jstr(p, "code"), "abc123");
    CHECK_STR(jstr(p, "id"), "42");
    CHECK_STR(jstr(j, "request_id"), "8476a536-e9f4-41e8-9739-2dfe598c3fcd");
    json_decref(j);
    CHECK_INT(n, <, 400);
}

static void test_record_compact_and_ordered(void)
{
    lv_capture_fields_t f = sample_fields();
    f.num_params = 1;
    lv_buf_t b = LV_BUF_INIT;
    lv_capture_record(&f, &b);
    lv_buf_append(&b, "", 1);
    CHECK_STR(lv_buf_data(&b),
              "{\"time\":1795000000123,\"route\":\"GET /r/{code}/{id}\",\"method\":\"GET\",\"path\":\"/r/abc123/42\","
              "\"query\":\"utm=tv&x=1\",\"status\":302,\"cache\":\"HIT\",\"latency_us\":17,\"ip\":\"203.0.113.9\","
              "\"ua\":\"Mozilla/5.0 (TV)\",\"referer\":\"https://tv.example/ad\",\"params\":{\"code\":\"abc123\"},"
              "\"request_id\":\"8476a536-e9f4-41e8-9739-2dfe598c3fcd\"}");
    lv_buf_free(&b);
}

static void test_record_absent_values(void)
{
    lv_capture_fields_t f = {.status = 404, .cache = LV_CAPTURE_CACHE_NONE}; /* every slice NULL */
    json_t *j = record_json(&f, NULL);
    CHECK(j);
    CHECK(json_is_null(json_object_get(j, "cache")));
    CHECK(json_is_null(json_object_get(j, "ua")));
    CHECK(json_is_null(json_object_get(j, "referer")));
    CHECK_STR(jstr(j, "query"), "");
    CHECK_STR(jstr(j, "path"), "");
    CHECK_STR(jstr(j, "route"), "");
    CHECK_STR(jstr(j, "request_id"), "");
    CHECK_EQ(json_object_size(json_object_get(j, "params")), 0);
    CHECK_EQ(json_integer_value(json_object_get(j, "time")), 0);
    json_decref(j);
    /* Present but empty headers are "", not null. */
    f.ua = lv_slice("", 0);
    f.referer = lv_slice("", 0);
    j = record_json(&f, NULL);
    CHECK(j);
    CHECK_STR(jstr(j, "ua"), "");
    CHECK_STR(jstr(j, "referer"), "");
    json_decref(j);
}

static void test_record_cache_names_and_numbers(void)
{
    static const struct {
        lv_capture_cache_t c;
        const char *name;
    } cases[] = {{LV_CAPTURE_CACHE_HIT, "HIT"},         {LV_CAPTURE_CACHE_MISS, "MISS"},
                 {LV_CAPTURE_CACHE_STALE, "STALE"},     {LV_CAPTURE_CACHE_UPDATING, "UPDATING"},
                 {LV_CAPTURE_CACHE_BYPASS, "BYPASS"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lv_capture_fields_t f = sample_fields();
        f.cache = cases[i].c;
        json_t *j = record_json(&f, NULL);
        CHECK(j);
        CHECK_STR(jstr(j, "cache"), cases[i].name);
        json_decref(j);
    }
    CHECK(lv_capture_cache_name(LV_CAPTURE_CACHE_NONE) == NULL);
    CHECK(lv_capture_cache_name((lv_capture_cache_t)99) == NULL);
    lv_capture_fields_t f = sample_fields();
    f.time_ms = -5; /* a clock set before 1970 still makes valid JSON */
    f.status = -1;
    f.latency_us = UINT64_MAX;
    lv_buf_t b = LV_BUF_INIT;
    lv_capture_record(&f, &b);
    lv_buf_append(&b, "", 1);
    CHECK(strstr(lv_buf_data(&b), "\"time\":-5,"));
    CHECK(strstr(lv_buf_data(&b), "\"status\":-1,"));
    /* Held to what JSON readers take as an integer. */
    CHECK(strstr(lv_buf_data(&b), "\"latency_us\":9223372036854775807,"));
    lv_buf_free(&b);
    f.time_ms = INT64_MIN;
    json_t *j = record_json(&f, NULL);
    CHECK(j);
    json_decref(j);
}

static void test_record_hostile_headers(void)
{
    lv_capture_fields_t f = sample_fields();
    static const char ua[] = "x\", \"status\": 200, \"evil\": \"\\\r\n\t\x01\x1f\x7f";
    static const char ref[] = "\xff\xfe bad \xc3( utf8 \xe2\x82 end \xed\xa0\x80 surrogate";
    static const char nul_query[] = "a=1\0b=2";
    f.ua = lv_slice(ua, sizeof ua - 1);
    f.referer = lv_slice(ref, sizeof ref - 1);
    f.query = lv_slice(nul_query, sizeof nul_query - 1);
    f.path = LV_SLICE_LIT("/r/\"}{");
    json_t *j = record_json(&f, NULL);
    CHECK(j);
    CHECK_EQ(json_object_size(j), 13); /* no field injected */
    CHECK_EQ(json_integer_value(json_object_get(j, "status")), 302);
    CHECK_STR(jstr(j, "ua"), ua);      /* exact round trip through the escapes */
    CHECK_EQ(jstrlen(j, "query"), sizeof nul_query - 1);
    CHECK(memcmp(jstr(j, "query"), nul_query, sizeof nul_query - 1) == 0);
    CHECK_STR(jstr(j, "path"), "/r/\"}{");
    /* Ill-formed UTF-8 became U+FFFD; the text around it is kept. */
    const char *r = jstr(j, "referer");
    CHECK(r && strstr(r, "\xef\xbf\xbd"));
    CHECK(r && strstr(r, " bad "));
    CHECK(r && strstr(r, " surrogate"));
    json_decref(j);
}

static void test_record_caps(void)
{
    char *big = malloc(20000);
    memset(big, 'a', 20000);
    lv_capture_fields_t f = sample_fields();
    f.path = lv_slice(big, 20000);
    f.query = lv_slice(big, 20000);
    f.ua = lv_slice(big, 20000);
    f.referer = lv_slice(big, 20000);
    f.route = lv_slice(big, 20000);
    json_t *j = record_json(&f, NULL);
    CHECK(j);
    CHECK_EQ(jstrlen(j, "path"), LV_CAPTURE_CAP_PATH);
    CHECK_EQ(jstrlen(j, "query"), LV_CAPTURE_CAP_QUERY);
    CHECK_EQ(jstrlen(j, "ua"), LV_CAPTURE_CAP_HEADER);
    CHECK_EQ(jstrlen(j, "referer"), LV_CAPTURE_CAP_HEADER);
    CHECK_EQ(jstrlen(j, "route"), LV_CAPTURE_CAP_ROUTE);
    json_decref(j);

    /* Cut at a character boundary: 'é' (2 bytes) straddling the cap is
     * left out whole, not turned into U+FFFD. */
    memset(big, 'a', LV_CAPTURE_CAP_HEADER - 1);
    memcpy(big + LV_CAPTURE_CAP_HEADER - 1, "\xc3\xa9zz", 4);
    f = sample_fields();
    f.ua = lv_slice(big, LV_CAPTURE_CAP_HEADER + 3);
    j = record_json(&f, NULL);
    CHECK(j);
    CHECK_EQ(jstrlen(j, "ua"), LV_CAPTURE_CAP_HEADER - 1);
    CHECK(!strstr(jstr(j, "ua"), "\xef\xbf\xbd"));
    json_decref(j);
    free(big);
}

/* Control bytes escape to six bytes each: the output of a field is held to
 * twice its cap, and the whole record to LV_CAPTURE_MAX_RECORD, whatever
 * every field holds. */
static void test_record_worst_case_size(void)
{
    enum { NPARAMS = LV_ROUTE_MAX_PARAMS + 4 };
    size_t big_n = 64 * 1024;
    /* Control bytes (6x), bad UTF-8 (3x), and one control byte in five,
     * which escapes to just under twice its size: each field then comes
     * closest to its output cap without being cut. */
    const unsigned char fills[3] = {0x01, 0xff, 0};
    char *v_bytes = malloc(big_n), *names[NPARAMS];
    for (int i = 0; i < NPARAMS; i++)
        names[i] = malloc(big_n);
    lv_route_param_t params[NPARAMS];
    for (int k = 0; k < 3; k++) {
        memset(v_bytes, fills[k], big_n);
        for (size_t i = 0; !fills[k] && i < big_n; i++)
            v_bytes[i] = i % 5 ? 'a' : 0x01;
        for (int i = 0; i < NPARAMS; i++) {
            memcpy(names[i], v_bytes, big_n);
            names[i][0] = (char)('a' + i); /* distinct names, the rest as hostile as the values */
            params[i] = (lv_route_param_t){lv_slice(names[i], big_n), lv_slice(v_bytes, big_n)};
        }
        lv_slice_t v = lv_slice(v_bytes, big_n);
        lv_capture_fields_t f = {
            .time_ms = INT64_MIN, .route = v, .method = v, .path = v, .query = v, .status = INT32_MIN,
            .cache = LV_CAPTURE_CACHE_UPDATING, .latency_us = UINT64_MAX, .ip = v, .ua = v, .referer = v,
            .params = params, .num_params = NPARAMS, .request_id = v,
        };
        size_t n = 0;
        json_t *j = record_json(&f, &n);
        bool parsed = j != NULL;
        size_t path_len = j ? jstrlen(j, "path") : 0, nparams = j ? json_object_size(json_object_get(j, "params")) : 0;
        json_decref(j);
        static const char *const kinds[3] = {"control bytes", "bad UTF-8", "one control byte in five"};
        printf("  worst-case record (%s): %zu bytes (limit %u)\n", kinds[k], n, LV_CAPTURE_MAX_RECORD);
        if (!parsed || n > LV_CAPTURE_MAX_RECORD || path_len > 2 * LV_CAPTURE_CAP_PATH ||
            nparams != LV_ROUTE_MAX_PARAMS) {
            free(v_bytes);
            for (int i = 0; i < NPARAMS; i++)
                free(names[i]);
            CHECK(parsed);
            CHECK_INT(n, <=, LV_CAPTURE_MAX_RECORD);
            CHECK_INT(path_len, <=, 2 * LV_CAPTURE_CAP_PATH);
            CHECK_EQ(nparams, LV_ROUTE_MAX_PARAMS);
        }
    }
    free(v_bytes);
    for (int i = 0; i < NPARAMS; i++)
        free(names[i]);
}

static void test_record_params_total_cap(void)
{
    enum { N = 12 };
    char val[300];
    memset(val, 'v', sizeof val);
    lv_route_param_t params[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "p%d", i);
        params[i] = (lv_route_param_t){lv_slice_cstr(names[i]), lv_slice(val, sizeof val)};
    }
    lv_capture_fields_t f = sample_fields();
    f.params = params;
    f.num_params = N;
    json_t *j = record_json(&f, NULL);
    CHECK(j);
    json_t *p = json_object_get(j, "params");
    CHECK_EQ(json_object_size(p), N); /* every name stays, values share the budget */
    size_t total = 0;
    for (int i = 0; i < N; i++)
        total += jstrlen(p, names[i]);
    json_t *first = json_object_get(p, "p0"), *last = json_object_get(p, "p11");
    size_t first_len = json_string_length(first), last_len = json_string_length(last);
    json_decref(j);
    CHECK_EQ(total, 2 * LV_CAPTURE_CAP_PARAMS);
    CHECK_EQ(first_len, LV_CAPTURE_CAP_PARAM);
    CHECK_EQ(last_len, 0);
}

/* ---- path parameters ---- */

static size_t params_of(const char *pattern, const char *path, lv_route_param_t *out)
{
    return lv_capture_path_params(lv_slice_cstr(pattern), lv_slice_cstr(path), out, LV_ROUTE_MAX_PARAMS);
}

static void test_path_params(void)
{
    lv_route_param_t p[LV_ROUTE_MAX_PARAMS];
    CHECK_EQ(params_of("/r/{code}", "/r/abc", p), 1);
    CHECK_SLICE(p[0].name, "code");
    CHECK_SLICE(p[0].value, "abc");
    CHECK_EQ(params_of("/users/{id}/orders/{oid}", "/users/7/orders/x-9", p), 2);
    CHECK_SLICE(p[0].name, "id");
    CHECK_SLICE(p[0].value, "7");
    CHECK_SLICE(p[1].name, "oid");
    CHECK_SLICE(p[1].value, "x-9");
    CHECK_EQ(params_of("/{a}/{b}/", "/1/2/", p), 2);
    CHECK_SLICE(p[1].value, "2");
    CHECK_EQ(params_of("/e/{id}/*", "/e/5/rest/of/it", p), 1);
    CHECK_SLICE(p[0].value, "5");
    CHECK_EQ(params_of("/*", "/a/b", p), 0);
    CHECK_EQ(params_of("/hello", "/hello", p), 0);
    CHECK_EQ(params_of("/r/{code}", "/r/%2Fx", p), 1); /* raw, not decoded */
    CHECK_SLICE(p[0].value, "%2Fx");
    /* Inputs the router would never pair still end cleanly. */
    CHECK_EQ(params_of("/r/{code}", "/r", p), 0);
    CHECK_EQ(params_of("/r/{code}/{x}", "/r/a", p), 1);
    CHECK_EQ(params_of("/{a}", "/", p), 1);
    CHECK_SLICE(p[0].value, "");
    CHECK_EQ(params_of("", "/a", p), 0);
    CHECK_EQ(params_of("/{a}", "", p), 0);
    CHECK_EQ(params_of("x{a}", "/a", p), 0);
    CHECK_EQ(params_of("/{}", "/a", p), 1); /* degenerate name: empty */
    CHECK_EQ(lv_capture_path_params(LV_SLICE_LIT("/{a}/{b}"), LV_SLICE_LIT("/1/2"), p, 1), 1);
}

/* ---- partition keys ---- */

static lv_http_request_t parse_head(const char *text)
{
    lv_http_request_t h;
    int status = 0;
    ssize_t r = lv_http_parse_request(text, strlen(text), 0, 65536, &h, &status);
    if (r <= 0)
        memset(&h, 0, sizeof h);
    return h;
}

static lv_config_capture_t key_cfg(lv_capture_key_kind_t kind, const char *name)
{
    return (lv_config_capture_t){.enabled = true, .stream = 0, .key = kind, .key_name = (char *)name};
}

static void test_partition_key(void)
{
    const char *text = "GET /r/abc?utm=tv&user=u1&flag&empty=&user=u2 HTTP/1.1\r\nHost: x\r\n"
                       "X-Device: dev-7\r\nX-Empty: \r\n\r\n";
    lv_http_request_t h = parse_head(text);
    CHECK(h.method.len == 3);
    lv_route_param_t params[1] = {{LV_SLICE_LIT("code"), LV_SLICE_LIT("abc")}};
    lv_slice_t ip = LV_SLICE_LIT("10.0.0.1");
    lv_config_capture_t c;

    c = key_cfg(LV_CAPTURE_KEY_REQUEST_ID, NULL);
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_CLIENT_IP, NULL);
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "10.0.0.1");
    c = key_cfg(LV_CAPTURE_KEY_PATH, "code");
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "abc");
    c = key_cfg(LV_CAPTURE_KEY_PATH, "nope");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_HEADER, "x-device");
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "dev-7");
    c = key_cfg(LV_CAPTURE_KEY_HEADER, "X-DEVICE"); /* names are case-insensitive */
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "dev-7");
    c = key_cfg(LV_CAPTURE_KEY_HEADER, "x-empty");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_HEADER, "x-missing");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "user");
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "u1"); /* the first one */
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "utm");
    CHECK_SLICE(lv_capture_partition_key(&c, &h, ip, params, 1), "tv");
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "flag");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "empty");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "use"); /* a prefix is not a match */
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    /* No name, no head, an unknown kind: empty, never a crash. */
    c = key_cfg(LV_CAPTURE_KEY_HEADER, NULL);
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
    c = key_cfg(LV_CAPTURE_KEY_QUERY, "user");
    CHECK_EQ(lv_capture_partition_key(&c, NULL, ip, params, 1).len, 0);
    c = key_cfg((lv_capture_key_kind_t)77, "x");
    CHECK_EQ(lv_capture_partition_key(&c, &h, ip, params, 1).len, 0);
}

static void test_partition_key_cap(void)
{
    char val[400];
    memset(val, 'k', sizeof val);
    lv_route_param_t params[1] = {{LV_SLICE_LIT("id"), lv_slice(val, sizeof val)}};
    lv_config_capture_t c = key_cfg(LV_CAPTURE_KEY_PATH, "id");
    CHECK_EQ(lv_capture_partition_key(&c, NULL, LV_SLICE_LIT(""), params, 1).len, LV_STREAM_MAX_KEY);
    /* A 3-byte character across the limit is left out whole. */
    memcpy(val + LV_STREAM_MAX_KEY - 1, "\xe2\x82\xac", 3);
    CHECK_EQ(lv_capture_partition_key(&c, NULL, LV_SLICE_LIT(""), params, 1).len, LV_STREAM_MAX_KEY - 1);
}

/* ---- snapshot ---- */

static void test_snapshot_outlives_request(void)
{
    char req_bytes[256];
    snprintf(req_bytes, sizeof req_bytes, "GET/r/xyz?q=1curl/8ref9.9.9.9devkey");
    lv_route_param_t params[1] = {{LV_SLICE_LIT("code"), lv_slice(req_bytes + 6, 3)}};
    lv_capture_fields_t f = {
        .time_ms = 5,
        .route = LV_SLICE_LIT("GET /r/{code}"),
        .method = lv_slice(req_bytes, 3),
        .path = lv_slice(req_bytes + 3, 6),
        .query = lv_slice(req_bytes + 10, 3),
        .status = 200,
        .latency_us = 3,
        .ip = lv_slice(req_bytes + 22, 7),
        .ua = lv_slice(req_bytes + 13, 6),
        .referer = {NULL, 0},
        .params = params,
        .num_params = 1,
        .request_id = LV_SLICE_LIT("ignored"),
    };
    lv_capture_snapshot_t *s = malloc(sizeof *s);
    lv_capture_snapshot(s, &f, lv_slice(req_bytes + 29, 6));
    memset(req_bytes, '#', sizeof req_bytes); /* the request's bytes are gone */
    CHECK_SLICE(s->f.method, "GET");
    CHECK_SLICE(s->f.path, "/r/xyz");
    CHECK_SLICE(s->f.query, "q=1");
    CHECK_SLICE(s->f.ua, "curl/8");
    CHECK(s->f.referer.ptr == NULL); /* absent stays absent */
    CHECK_SLICE(s->f.ip, "9.9.9.9");
    CHECK_SLICE(s->f.params[0].value, "xyz");
    CHECK_SLICE(s->f.params[0].name, "code");
    CHECK_SLICE(s->key, "devkey");
    CHECK_EQ(s->f.request_id.len, 0); /* made by lv_capture_submit */
    CHECK_EQ(s->f.status, 200);
    s->f.request_id = LV_SLICE_LIT("rid");
    json_t *j = record_json(&s->f, NULL);
    CHECK(j);
    CHECK_STR(jstr(json_object_get(j, "params"), "code"), "xyz");
    json_decref(j);
    free(s);
}

static void test_snapshot_caps(void)
{
    size_t n = 100000;
    char *big = malloc(n);
    memset(big, 'z', n);
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    for (int i = 0; i < LV_ROUTE_MAX_PARAMS; i++)
        params[i] = (lv_route_param_t){LV_SLICE_LIT("p"), lv_slice(big, n)};
    lv_slice_t v = lv_slice(big, n);
    lv_capture_fields_t f = {.method = v, .path = v, .query = v, .ip = v, .ua = v, .referer = v,
                             .params = params, .num_params = LV_ROUTE_MAX_PARAMS + 5};
    lv_capture_snapshot_t *s = malloc(sizeof *s);
    lv_capture_snapshot(s, &f, v);
    CHECK_EQ(s->f.path.len, LV_CAPTURE_CAP_PATH);
    CHECK_EQ(s->f.method.len, LV_CAPTURE_CAP_METHOD);
    CHECK_EQ(s->f.ua.len, LV_CAPTURE_CAP_HEADER);
    CHECK_EQ(s->f.num_params, LV_ROUTE_MAX_PARAMS);
    CHECK_EQ(s->key.len, LV_STREAM_MAX_KEY);
    CHECK_INT(s->used, <=, sizeof s->bytes);
    size_t total = 0;
    for (size_t i = 0; i < s->f.num_params; i++)
        total += s->f.params[i].value.len;
    CHECK_EQ(total, LV_CAPTURE_CAP_PARAMS);
    free(s);
    free(big);
}

/* ---- the buffer ---- */

static void test_budget_reserve_and_charge(void)
{
    lv_capture_budget_t b = {.limit = 3 * LV_CAPTURE_SLOT_BYTES};
    CHECK(lv_capture_budget_reserve(&b));
    CHECK(lv_capture_budget_reserve(&b));
    CHECK(lv_capture_budget_reserve(&b));
    CHECK(!lv_capture_budget_reserve(&b)); /* full: the fourth request is shed */
    /* A record always fits its slot, even the largest. */
    CHECK(lv_capture_budget_charge(&b, LV_CAPTURE_SLOT_BYTES, true));
    CHECK_EQ(b.used, LV_CAPTURE_SLOT_BYTES);
    CHECK_EQ(b.reserved, 2 * LV_CAPTURE_SLOT_BYTES);
    CHECK(lv_capture_budget_charge(&b, 300, true));
    CHECK_EQ(b.reserved, LV_CAPTURE_SLOT_BYTES);
    /* Room freed by a small record lets another request in. */
    CHECK(!lv_capture_budget_reserve(&b));
    lv_capture_budget_release(&b, LV_CAPTURE_SLOT_BYTES);
    CHECK(lv_capture_budget_reserve(&b));
    CHECK(!lv_capture_budget_reserve(&b));
    /* Without a slot (drop), a record fits only in free room. */
    CHECK(!lv_capture_budget_charge(&b, 2 * LV_CAPTURE_SLOT_BYTES, false));
    lv_capture_budget_unreserve(&b);
    lv_capture_budget_unreserve(&b);
    CHECK_EQ(b.reserved, 0);
    CHECK(lv_capture_budget_charge(&b, 1000, false));
    CHECK_EQ(b.used, 1300);
    /* Over-release and over-unreserve clamp at zero. */
    lv_capture_budget_release(&b, 999999);
    lv_capture_budget_unreserve(&b);
    CHECK_EQ(b.used, 0);
    CHECK_EQ(b.reserved, 0);
    /* A "slot" charge with no slot held falls back to free room. */
    CHECK(lv_capture_budget_charge(&b, 100, true));
    CHECK_EQ(b.used, 100);
    b.limit = 0;
    CHECK(!lv_capture_budget_reserve(&b));
}

/* A discrete simulation of one loop under `shed_request`: requests arrive,
 * reserve, are answered later, and their records go to a stream that
 * refuses everything (EAGAIN) for long stretches and takes whatever waits
 * otherwise. Every request that got in must have its record taken by the
 * stream by the end; the buffer never passes its limit. */
static void test_budget_shed_loses_nothing(void)
{
    enum { STEPS = 200000, MAX_INFLIGHT = 4096 };
    lv_capture_budget_t b = {.limit = 64 * LV_CAPTURE_SLOT_BYTES};
    uint64_t inflight[MAX_INFLIGHT];
    size_t ninflight = 0;
    uint64_t admitted = 0, shed = 0, answered = 0, appended = 0, held_bytes = 0, held = 0, peak = 0;
    uint64_t rng = 88172645463325252ull;
    bool stream_down = false;
    for (int step = 0; step < STEPS; step++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if (step % 5000 == 0)
            stream_down = !stream_down;
        unsigned what = (unsigned)(rng % 10);
        if (what < 5) { /* a request arrives */
            if (ninflight < MAX_INFLIGHT && lv_capture_budget_reserve(&b)) {
                inflight[ninflight++] = 100 + rng % (LV_CAPTURE_SLOT_BYTES - 100);
                admitted++;
            } else {
                shed++;
            }
        } else if (what < 9) { /* one is answered: its record goes in */
            if (ninflight) {
                uint64_t sz = inflight[--ninflight];
                if (!lv_capture_budget_charge(&b, sz, true)) {
                    CHECK(!"a record did not fit its slot");
                }
                held_bytes += sz;
                held++;
                answered++;
            }
        } else if (!stream_down && held) { /* the stream takes what waits */
            lv_capture_budget_release(&b, held_bytes);
            appended += held;
            held = held_bytes = 0;
        }
        CHECK_INT(b.used + b.reserved, <=, b.limit);
        if (b.used + b.reserved > peak)
            peak = b.used + b.reserved;
    }
    while (ninflight) {
        CHECK(lv_capture_budget_charge(&b, inflight[--ninflight], true));
        answered++;
        held++;
    }
    appended += held;
    CHECK_EQ(answered, admitted);
    CHECK_EQ(appended, admitted);
    CHECK_INT(shed, >, 0); /* the down stretches did fill it */
    printf("  simulated: %llu admitted, %llu shed, all %llu recorded; peak %llu of %llu bytes\n",
           (unsigned long long)admitted, (unsigned long long)shed, (unsigned long long)appended,
           (unsigned long long)peak, (unsigned long long)b.limit);
}


/* ---- with a real stream ---- */

/* A stream in a temporary data_dir, one capture into it, and a loop run on
 * this thread. A loop runs once (lv_loop_stop is final), so each test is a
 * list of phases run in that one run: its scenario, reading the stream
 * back, and shutting down (capture, then streams). */
typedef bool (*phase_fn)(void *env, unsigned tick); /* true when done */

typedef struct {
    char dir[64];
    lv_config_t cfg;
    lv_config_stream_t scfg;
    lv_config_capture_t ccfg;
    lv_metrics_t *metrics;
    lv_streams_t *streams;
    lv_stream_t *stream;
    lv_loop_t *loop;
    lv_capture_t *cap;
    lv_timer_t tick, deadline;
    const phase_fn *phases;
    size_t nphases, phase;
    unsigned ticks;
    bool timed_out, stopped;
    /* read back */
    bool by_request_id;            /* keys are request ids: placed at random */
    size_t per_shard[8];
    unsigned shards, reads_done;
    size_t total, bad_shard, bad_json, bad_key, nids;
    char (*ids)[40];
} env_t;

#define MAX_IDS 100000

static bool env_open(env_t *e, unsigned shards, uint64_t max_pending, lv_capture_on_full_t on_full,
                     uint64_t buffer_bytes)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/capture_test.XXXXXX");
    if (!mkdtemp(e->dir))
        return false;
    e->scfg = (lv_config_stream_t){.name = "clicks", .shards = shards, .retention_ms = 24 * 3600 * 1000,
                                   .durability = LV_DURABILITY_FSYNC, .sync_interval_ms = 5,
                                   .segment_bytes = 64u << 20, .max_pending_bytes = max_pending};
    e->cfg.path = "capture_test.yaml";
    e->cfg.data_dir = e->dir;
    e->cfg.streams = &e->scfg;
    e->cfg.num_streams = 1;
    e->ccfg = (lv_config_capture_t){.enabled = true, .stream = 0, .key = LV_CAPTURE_KEY_PATH, .key_name = "code",
                                    .on_full = on_full};
    e->metrics = lv_metrics_new(1);
    e->ids = calloc(MAX_IDS, sizeof *e->ids);
    lv_config_errors_t errs = {0};
    e->streams = lv_streams_open(&e->cfg, e->metrics, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "  %s\n", errs.items[i]);
    lv_config_errors_free(&errs);
    if (!e->streams)
        return false;
    lv_streams_start(e->streams);
    e->loop = lv_loop_new(0);
    e->cap = lv_capture_new(&e->cfg, &e->ccfg, "GET /r/{code}", buffer_bytes, 1, e->metrics);
    lv_capture_set_streams(e->cap, e->streams);
    return e->loop && e->cap;
}

static void on_tick(lv_loop_t *loop, lv_timer_t *t)
{
    env_t *e = t->data;
    while (e->phase < e->nphases && e->phases[e->phase](e, e->ticks++)) {
        e->phase++;
        e->ticks = 0;
    }
    if (e->phase == e->nphases) {
        lv_timer_stop(&e->deadline);
        lv_loop_stop(loop);
        return;
    }
    lv_timer_start(loop, t, 1);
}

static void on_deadline(lv_loop_t *loop, lv_timer_t *t)
{
    env_t *e = t->data;
    e->timed_out = true;
    lv_timer_stop(&e->tick);
    lv_loop_stop(loop);
}

/* Runs the phases in order, each called every millisecond until it says
 * it is done, all within timeout_ms. Returns false on timeout (and says
 * which phase was still running). */
static bool env_run(env_t *e, const phase_fn *phases, size_t n, uint64_t timeout_ms)
{
    e->phases = phases;
    e->nphases = n;
    e->tick = (lv_timer_t){.cb = on_tick, .data = e};
    e->deadline = (lv_timer_t){.cb = on_deadline, .data = e};
    lv_timer_start(e->loop, &e->tick, 0);
    lv_timer_start(e->loop, &e->deadline, timeout_ms);
    lv_loop_run(e->loop);
    if (e->timed_out)
        fprintf(stderr, "  timed out in phase %zu\n", e->phase);
    return !e->timed_out;
}

static void on_streams_stopped(lv_loop_t *loop, void *arg)
{
    ((env_t *)arg)->stopped = true;
    (void)loop;
}

/* The last phase: the capture appends what it holds, the streams stop. */
static bool close_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick == 0) {
        lv_capture_close_loop(e->cap, e->loop);
        lv_streams_stop(e->streams, e->loop, on_streams_stopped, e);
    }
    return e->stopped;
}

static void env_free(env_t *e)
{
    if (!e->stopped && e->streams)
        lv_streams_stop(e->streams, NULL, NULL, NULL);
    lv_capture_free(e->cap);
    if (e->stream)
        lv_stream_unref(e->stream);
    if (e->streams)
        lv_streams_free(e->streams);
    lv_loop_free(e->loop);
    lv_metrics_free(e->metrics);
    free(e->ids);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", e->dir);
}

/* One answered request: GET /r/k<i % 50>, keyed by its code. */
static void submit_one(env_t *e, unsigned i)
{
    char path[32], code[16];
    snprintf(code, sizeof code, "k%u", i % 50);
    snprintf(path, sizeof path, "/r/%s", code);
    lv_route_param_t params[1] = {{LV_SLICE_LIT("code"), lv_slice_cstr(code)}};
    lv_capture_fields_t f = {
        .time_ms = 1795000000000 + i, .route = LV_SLICE_LIT("GET /r/{code}"), .method = LV_SLICE_LIT("GET"),
        .path = lv_slice_cstr(path), .query = lv_slice("", 0), .status = 302, .latency_us = i,
        .ip = LV_SLICE_LIT("127.0.0.1"), .ua = LV_SLICE_LIT("test"), .params = params, .num_params = 1,
    };
    lv_capture_snapshot_t *snap = malloc(sizeof *snap);
    lv_capture_snapshot(snap, &f, lv_capture_partition_key(&e->ccfg, NULL, f.ip, params, 1));
    lv_capture_submit(e->cap, e->loop, snap);
    free(snap);
}

/* ---- reading the stream back ---- */

static void on_read(void *arg, const lv_stream_read_t *res)
{
    env_t *e = arg;
    unsigned shard = e->reads_done; /* reads are issued one shard at a time */
    for (size_t i = 0; i < res->n && !res->err; i++) {
        const lv_stream_record_t *r = &res->records[i];
        e->total++;
        if (shard < sizeof e->per_shard / sizeof e->per_shard[0])
            e->per_shard[shard]++;
        if (!e->by_request_id && lv_stream_shard_for(e->stream, lv_stream_hash_key(r->partition_key)) != shard)
            e->bad_shard++;
        json_t *j = json_loadb(r->data.ptr, r->data.len, 0, NULL);
        const char *code = j ? json_string_value(json_object_get(json_object_get(j, "params"), "code")) : NULL;
        const char *rid = j ? json_string_value(json_object_get(j, "request_id")) : NULL;
        if (!j || !code || !rid || json_object_size(j) != 13)
            e->bad_json++;
        else if (!lv_slice_eq(r->partition_key, lv_slice_cstr(e->by_request_id ? rid : code)))
            e->bad_key++;
        if (rid && e->nids < MAX_IDS)
            snprintf(e->ids[e->nids++], 40, "%s", rid);
        json_decref(j);
    }
    if (res->err)
        e->bad_json += 1000000;
    if (!res->err && res->n && res->next_seq < res->shard_next_seq) {
        /* More in this shard than one read returns. */
        lv_stream_read(e->stream, shard, LV_READ_AT_SEQ, res->next_seq, 10000, 64u << 20, e->loop, on_read, e);
        return;
    }
    e->reads_done++;
    if (e->reads_done < e->shards)
        lv_stream_read(e->stream, e->reads_done, LV_READ_AT_SEQ, 0, 10000, 64u << 20, e->loop, on_read, e);
}

static bool read_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick == 0) {
        if (!e->stream)
            e->stream = lv_streams_find(e->streams, LV_SLICE_LIT("clicks"));
        e->shards = e->stream ? lv_stream_info(e->stream).shards : 0;
        if (e->shards)
            lv_stream_read(e->stream, 0, LV_READ_AT_SEQ, 0, 10000, 64u << 20, e->loop, on_read, e);
    }
    return e->reads_done == e->shards;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Wrong shards, bad JSON, wrong keys and duplicate request ids seen. */
static size_t read_problems(env_t *e)
{
    qsort(e->ids, e->nids, sizeof *e->ids, cmp_ids);
    size_t dup = 0;
    for (size_t i = 1; i < e->nids; i++)
        dup += strcmp(e->ids[i - 1], e->ids[i]) == 0;
    size_t n = e->bad_shard + e->bad_json + e->bad_key + dup;
    if (n)
        fprintf(stderr, "  read back: %zu wrong shard, %zu bad JSON, %zu wrong key, %zu duplicate ids\n",
                e->bad_shard, e->bad_json, e->bad_key, dup);
    return n;
}

static uint64_t error_count(env_t *e, const char *err)
{
    char labels[128];
    snprintf(labels, sizeof labels, "route=\"GET /r/{code}\",error=\"%s\"", err);
    return lv_counter_value(lv_metrics_counter(e->metrics, "levee_capture_append_errors_total", NULL, labels));
}

/* ---- scenarios ---- */

static unsigned want_total, submitted, admitted, shed_count, pending_reserved;

static bool all_acked(env_t *e)
{
    lv_capture_stats_t st;
    lv_capture_stats(e->cap, &st);
    return st.records + st.dropped >= want_total && st.buffer_records == 0;
}

/* 300 answered requests a tick for 10 ticks, then wait for the stream. */
static bool burst_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick < 10)
        for (unsigned i = 0; i < 300; i++) {
            if (lv_capture_reserve(e->cap, e->loop))
                submit_one(e, submitted++);
        }
    return tick >= 10 && all_acked(e);
}

static void test_stream_every_record_read_back(void)
{
    env_t e;
    bool ok = env_open(&e, 4, 64u << 20, LV_CAPTURE_SHED, 0);
    submitted = 0;
    want_total = 3000;
    static const phase_fn phases[] = {burst_phase, read_phase, close_phase};
    bool ran = ok && env_run(&e, phases, 3, 30000);
    lv_capture_stats_t st;
    lv_capture_stats(e.cap, &st);
    size_t problems = read_problems(&e);
    size_t n = e.total;
    env_free(&e);
    CHECK(ok);
    CHECK(ran);
    CHECK_EQ(submitted, 3000);
    CHECK_EQ(st.records, 3000);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(st.shed, 0);
    CHECK_EQ(n, 3000);
    CHECK_EQ(problems, 0);
}

/* Keyed by request id, records are placed by a random hash key: they
 * spread over every shard, each with its own id as partition key. */
static void test_stream_request_id_keys_spread(void)
{
    env_t e;
    bool ok = env_open(&e, 4, 64u << 20, LV_CAPTURE_SHED, 0);
    e.ccfg.key = LV_CAPTURE_KEY_REQUEST_ID;
    e.by_request_id = true;
    submitted = 0;
    want_total = 3000;
    static const phase_fn phases[] = {burst_phase, read_phase, close_phase};
    bool ran = ok && env_run(&e, phases, 3, 30000);
    size_t problems = read_problems(&e);
    size_t n = e.total, least = SIZE_MAX;
    for (int i = 0; i < 4; i++)
        least = e.per_shard[i] < least ? e.per_shard[i] : least;
    env_free(&e);
    CHECK(ok);
    CHECK(ran);
    CHECK_EQ(n, 3000);
    CHECK_EQ(problems, 0);
    CHECK_INT(least, >, 600); /* 750 expected per shard */
}

/* Requests reserve in one tick and are answered in the next (in flight
 * meanwhile), 1500 tried a tick, into a 16 MiB buffer and a stream whose
 * pending budget (64 KiB) is far below one batch: the stream says EAGAIN
 * to every batch after the first, the buffer fills, requests are shed, and
 * every admitted request still has its record in the stream. */
static bool shed_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    for (; pending_reserved; pending_reserved--)
        submit_one(e, submitted++);
    if (tick < 100) {
        for (unsigned i = 0; i < 1500; i++) {
            if (lv_capture_reserve(e->cap, e->loop)) {
                admitted++;
                pending_reserved++;
            } else {
                shed_count++;
            }
        }
        return false;
    }
    want_total = admitted;
    return all_acked(e);
}

static void test_stream_shed_keeps_every_record(void)
{
    env_t e;
    bool ok = env_open(&e, 2, 64u << 10, LV_CAPTURE_SHED, 16u << 20);
    submitted = admitted = shed_count = pending_reserved = 0;
    want_total = UINT32_MAX;
    static const phase_fn phases[] = {shed_phase, read_phase, close_phase};
    bool ran = ok && env_run(&e, phases, 3, 60000);
    lv_capture_stats_t st;
    lv_capture_stats(e.cap, &st);
    uint64_t eagain = error_count(&e, "EAGAIN");
    size_t problems = read_problems(&e);
    size_t n = e.total;
    env_free(&e);
    printf("  shed: %u admitted, %u shed, %llu EAGAIN, %zu read back\n", admitted, shed_count,
           (unsigned long long)eagain, n);
    CHECK(ok);
    CHECK(ran);
    CHECK_EQ(submitted, admitted);
    CHECK_INT(shed_count, >, 0);
    CHECK_EQ(st.shed, shed_count);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(st.records, admitted);
    CHECK_EQ(st.reserved, 0);
    CHECK_EQ(n, admitted);
    CHECK_EQ(problems, 0);
    /* Whether the stream also refused appends (EAGAIN) depends on how fast
     * this machine's disk is at the moment: printed, not required. */
}

/* 20000 answered requests in the first tick, then 1500 a tick, into a
 * 1 MiB buffer (on_full: drop) and the same tight stream: records that do
 * not fit are dropped and counted, and every one that was not dropped is
 * in the stream. The first tick alone holds several MiB of records, and no
 * acknowledgement can arrive within a tick, so drops happen however fast
 * the disk is. */
static bool drop_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick < 50) {
        unsigned burst = tick == 0 ? 20000 : 1500;
        for (unsigned i = 0; i < burst; i++) {
            if (!lv_capture_reserve(e->cap, e->loop)) /* drop never refuses */
                shed_count++;
            submit_one(e, submitted++);
        }
        return false;
    }
    want_total = submitted;
    return all_acked(e);
}

static void test_stream_drop_counts_what_it_loses(void)
{
    env_t e;
    bool ok = env_open(&e, 2, 64u << 10, LV_CAPTURE_DROP, 1u << 20);
    submitted = shed_count = 0;
    want_total = UINT32_MAX;
    static const phase_fn phases[] = {drop_phase, read_phase, close_phase};
    bool ran = ok && env_run(&e, phases, 3, 60000);
    lv_capture_stats_t st;
    lv_capture_stats(e.cap, &st);
    uint64_t eagain = error_count(&e, "EAGAIN");
    size_t problems = read_problems(&e);
    size_t n = e.total;
    env_free(&e);
    printf("  drop: %u submitted, %llu recorded, %llu dropped, %llu EAGAIN\n", submitted,
           (unsigned long long)st.records, (unsigned long long)st.dropped, (unsigned long long)eagain);
    CHECK(ok);
    CHECK(ran);
    CHECK_EQ(shed_count, 0);
    CHECK_INT(st.dropped, >, 0);
    CHECK_EQ(st.shed, 0);
    CHECK_EQ(st.records + st.dropped, submitted);
    CHECK_EQ(n, st.records);
    CHECK_EQ(problems, 0);
}

/* The stream is deleted: the records wait (the capture cannot find it, or
 * its appends fail with ENOENT); once a stream of that name exists again,
 * they all land in it. */
static bool created_ok;

static void on_created(void *arg, const lv_stream_created_t *res)
{
    (void)arg;
    created_ok = res->err == 0;
    if (res->err)
        fprintf(stderr, "  create: %s\n", strerror(res->err));
}

static bool enoent_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick == 0)
        for (unsigned i = 0; i < 200; i++)
            if (lv_capture_reserve(e->cap, e->loop))
                submit_one(e, submitted++);
    lv_capture_stats_t st;
    lv_capture_stats(e->cap, &st);
    if (tick == 100) {
        if (st.records != 50 || st.buffer_records != 200)
            return true; /* the checks after the run fail */
        lv_streams_create(e->streams, LV_SLICE_LIT("clicks"), 3, e->loop, on_created, NULL);
    }
    return tick > 100 && st.records == 250 && st.buffer_records == 0;
}

/* An append to a stream deleted after the capture found it fails with
 * ENOENT; the batch waits for the stream to come back. */
static bool delete_later_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick == 0) {
        for (unsigned i = 0; i < 50; i++)
            if (lv_capture_reserve(e->cap, e->loop))
                submit_one(e, submitted++);
        return false;
    }
    want_total = 50;
    if (!all_acked(e))
        return false;
    /* The capture holds the stream now: delete it under its feet. */
    return lv_streams_delete(e->streams, LV_SLICE_LIT("clicks")) == 0;
}

static void test_stream_deleted_then_recreated(void)
{
    env_t e;
    bool ok = env_open(&e, 2, 64u << 20, LV_CAPTURE_SHED, 0);
    submitted = 0;
    created_ok = false;
    static const phase_fn phases[] = {delete_later_phase, enoent_phase, read_phase, close_phase};
    bool ran = ok && env_run(&e, phases, 4, 30000);
    lv_capture_stats_t st;
    lv_capture_stats(e.cap, &st);
    uint64_t enoent = error_count(&e, "ENOENT");
    size_t problems = read_problems(&e);
    size_t n = e.total;
    env_free(&e);
    CHECK(ok);
    CHECK(ran);
    CHECK(created_ok);
    CHECK_EQ(submitted, 250);
    CHECK_EQ(st.records, 250);
    CHECK_EQ(st.dropped, 0);
    CHECK_INT(enoent, >, 0);
    CHECK_EQ(n, 200); /* the re-created stream holds the 200 sent after the delete */
    CHECK_EQ(problems, 0);
}

/* Without streams, records wait in the buffer; freeing the capture counts
 * them as lost and frees everything (ASan checks the leaks). */
static bool no_stream_phase(void *arg, unsigned tick)
{
    env_t *e = arg;
    if (tick == 0)
        for (unsigned i = 0; i < 1200; i++)
            if (lv_capture_reserve(e->cap, e->loop))
                submit_one(e, submitted++);
    if (tick == 20)
        lv_capture_close_loop(e->cap, e->loop);
    return tick >= 20;
}

static void test_no_stream_then_free(void)
{
    env_t e;
    memset(&e, 0, sizeof e);
    e.scfg = (lv_config_stream_t){.name = "clicks", .shards = 1, .max_pending_bytes = 1u << 20};
    e.cfg.streams = &e.scfg;
    e.cfg.num_streams = 1;
    e.ccfg = (lv_config_capture_t){.enabled = true, .stream = 0, .on_full = LV_CAPTURE_SHED};
    e.metrics = lv_metrics_new(1);
    e.loop = lv_loop_new(0);
    e.cap = lv_capture_new(&e.cfg, &e.ccfg, "GET /r/{code}", 0, 1, e.metrics);
    lv_config_capture_t bad = e.ccfg;
    bad.stream = 3;
    CHECK(lv_capture_new(&e.cfg, &bad, "GET /y", 0, 1, e.metrics) == NULL);
    lv_capture_set_streams(e.cap, NULL);
    submitted = 0;
    static const phase_fn phases[] = {no_stream_phase};
    bool ran = env_run(&e, phases, 1, 5000);
    lv_capture_stats_t st;
    lv_capture_stats(e.cap, &st);
    lv_capture_free(e.cap);
    uint64_t dropped = lv_counter_value(lv_metrics_counter(e.metrics, "levee_capture_dropped_total", NULL,
                                                           "route=\"GET /r/{code}\""));
    lv_loop_free(e.loop);
    lv_metrics_free(e.metrics);
    CHECK(ran);
    CHECK_EQ(submitted, 1200);
    CHECK_EQ(st.buffer_records, 1200);
    CHECK_EQ(st.records, 0);
    CHECK_EQ(st.limit_bytes, LV_CAPTURE_MIN_LOOP_BUFFER); /* 1 MiB of max_pending, raised to the floor */
    CHECK_EQ(dropped, 1200);
}

int main(void)
{
    LV_RUN(test_record_every_field);
    LV_RUN(test_record_compact_and_ordered);
    LV_RUN(test_record_absent_values);
    LV_RUN(test_record_cache_names_and_numbers);
    LV_RUN(test_record_hostile_headers);
    LV_RUN(test_record_caps);
    LV_RUN(test_record_worst_case_size);
    LV_RUN(test_record_params_total_cap);
    LV_RUN(test_path_params);
    LV_RUN(test_partition_key);
    LV_RUN(test_partition_key_cap);
    LV_RUN(test_snapshot_outlives_request);
    LV_RUN(test_snapshot_caps);
    LV_RUN(test_budget_reserve_and_charge);
    LV_RUN(test_budget_shed_loses_nothing);
    LV_RUN(test_no_stream_then_free);
    LV_RUN(test_stream_every_record_read_back);
    LV_RUN(test_stream_request_id_keys_spread);
    LV_RUN(test_stream_shed_keeps_every_record);
    LV_RUN(test_stream_drop_counts_what_it_loses);
    LV_RUN(test_stream_deleted_then_recreated);
    return lv_test_summary();
}
