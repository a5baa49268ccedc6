/* fuzz_capture.c: libFuzzer driver for gateway/capture.c's pure parts.
 *
 * The input, split at '\n', gives a route pattern, a path, a query, a
 * User-Agent, a Referer, a header value and a key name; the first byte
 * also picks the partition key kind, and the last piece drives a sequence
 * of buffer operations. Each piece is copied to its own exactly sized
 * allocation, so any over-read trips ASan. Checked:
 *   - path parameters: names lie inside the pattern, values inside the
 *     path, at most the maximum asked for;
 *   - the partition key lies inside its source, is at most
 *     LV_STREAM_MAX_KEY bytes, and is empty for the request-id kind;
 *   - the snapshot's copies equal their sources' prefixes;
 *   - the record parses as one JSON object with the 13 fields, fits
 *     LV_CAPTURE_MAX_RECORD, and gives back short well-formed values
 *     exactly;
 *   - the buffer never holds more than its limit, and a charge made with a
 *     slot always succeeds. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json_text.h"
#include "gateway/capture.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { PATTERN, PATH, QUERY, UA, REFERER, HEADER, KEY_NAME, OPS, NUM_PIECES };

static bool inside(lv_slice_t part, const char *base, size_t len)
{
    return part.len == 0 || (part.ptr >= base && part.ptr + part.len <= base + len);
}

/* Short, well-formed, NUL-free text comes back from the JSON exactly. */
static void check_round_trip(json_t *obj, const char *field, lv_slice_t in, size_t cap)
{
    json_t *v = json_object_get(obj, field);
    REQUIRE(json_is_string(v));
    if (in.len <= cap / 6 && lv_utf8_text(in.ptr, in.len)) {
        REQUIRE(json_string_length(v) == in.len);
        REQUIRE(in.len == 0 || memcmp(json_string_value(v), in.ptr, in.len) == 0);
    }
}

static void check_budget(const uint8_t *ops, size_t n)
{
    lv_capture_budget_t b = {.limit = (uint64_t)(n % 7) * LV_CAPTURE_SLOT_BYTES + (n % 5) * 1000};
    uint64_t slots = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t amount = (uint64_t)ops[i] * 97 % LV_CAPTURE_SLOT_BYTES;
        switch (ops[i] & 3) {
        case 0:
            if (lv_capture_budget_reserve(&b))
                slots++;
            break;
        case 1:
            if (slots) {
                REQUIRE(lv_capture_budget_charge(&b, amount, true));
                slots--;
                held += amount;
            } else if (lv_capture_budget_charge(&b, amount, false)) {
                held += amount;
            }
            break;
        case 2:
            lv_capture_budget_release(&b, held / 2);
            held -= held / 2;
            break;
        default:
            if (slots) {
                lv_capture_budget_unreserve(&b);
                slots--;
            }
            break;
        }
        REQUIRE(b.reserved == slots * LV_CAPTURE_SLOT_BYTES);
        REQUIRE(b.used == held);
        REQUIRE(b.reserved + b.used <= b.limit);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *piece[NUM_PIECES];
    size_t len[NUM_PIECES];
    const char *p = (const char *)data, *end = p + size;
    for (int i = 0; i < NUM_PIECES; i++) {
        const char *nl = i + 1 < NUM_PIECES ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        const char *stop = nl ? nl : end;
        len[i] = (size_t)(stop - p);
        piece[i] = malloc(len[i] ? len[i] : 1);
        if (len[i])
            memcpy(piece[i], p, len[i]);
        p = nl ? nl + 1 : end;
    }
    /* Parameter names come from the pattern and become object keys, which
     * jansson cannot hold with a NUL in them (JSON can: the record writes
     * \u0000). Real names are [A-Za-z0-9_] (router.h). */
    for (size_t i = 0; i < len[PATTERN]; i++)
        if (!piece[PATTERN][i])
            piece[PATTERN][i] = '0';
    lv_slice_t s[NUM_PIECES];
    for (int i = 0; i < NUM_PIECES; i++)
        s[i] = lv_slice(piece[i], len[i]);

    /* Path parameters. */
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    size_t max = size % (LV_ROUTE_MAX_PARAMS + 1);
    size_t np = lv_capture_path_params(s[PATTERN], s[PATH], params, max);
    REQUIRE(np <= max);
    for (size_t i = 0; i < np; i++) {
        REQUIRE(inside(params[i].name, piece[PATTERN], len[PATTERN]));
        REQUIRE(inside(params[i].value, piece[PATH], len[PATH]));
    }

    /* The partition key, for the kind the first byte picks. */
    lv_http_request_t head;
    memset(&head, 0, sizeof head);
    head.method = LV_SLICE_LIT("GET");
    head.path = s[PATH];
    head.query = s[QUERY];
    head.headers[0] = (lv_http_header_t){LV_SLICE_LIT("user-agent"), s[UA]};
    head.headers[1] = (lv_http_header_t){LV_SLICE_LIT("referer"), s[REFERER]};
    head.headers[2] = (lv_http_header_t){s[KEY_NAME], s[HEADER]};
    head.num_headers = 3;
    char *key_name = malloc(len[KEY_NAME] + 1);
    memcpy(key_name, piece[KEY_NAME], len[KEY_NAME]);
    key_name[len[KEY_NAME]] = '\0';
    lv_config_capture_t cc = {.enabled = true, .key = (lv_capture_key_kind_t)(size ? data[0] % 6 : 0),
                              .key_name = size > 1 && data[1] & 1 ? NULL : key_name};
    lv_slice_t ip = LV_SLICE_LIT("192.0.2.1");
    lv_slice_t key = lv_capture_partition_key(&cc, &head, ip, params, np);
    REQUIRE(key.len <= LV_STREAM_MAX_KEY);
    if (cc.key == LV_CAPTURE_KEY_REQUEST_ID || cc.key > LV_CAPTURE_KEY_QUERY)
        REQUIRE(key.len == 0);
    if (key.len && cc.key == LV_CAPTURE_KEY_QUERY)
        REQUIRE(inside(key, piece[QUERY], len[QUERY]));
    if (key.len && cc.key == LV_CAPTURE_KEY_PATH)
        REQUIRE(inside(key, piece[PATH], len[PATH]));

    /* Snapshot, then the record from it. */
    lv_capture_fields_t f = {
        .time_ms = (int64_t)size * 1000003,
        .route = s[PATTERN],
        .method = head.method,
        .path = s[PATH],
        .query = s[QUERY],
        .status = size ? data[0] * 3 : 0,
        .cache = (lv_capture_cache_t)(size % 7),
        .latency_us = size,
        .ip = ip,
        .ua = size > 2 && data[2] & 1 ? (lv_slice_t){NULL, 0} : s[UA],
        .referer = s[REFERER],
        .params = params,
        .num_params = np,
    };
    lv_capture_snapshot_t *snap = malloc(sizeof *snap);
    lv_capture_snapshot(snap, &f, key);
    REQUIRE(snap->used <= sizeof snap->bytes);
    REQUIRE(snap->key.len == key.len && (key.len == 0 || memcmp(snap->key.ptr, key.ptr, key.len) == 0));
    REQUIRE(snap->f.path.len <= LV_CAPTURE_CAP_PATH && snap->f.path.len <= f.path.len);
    REQUIRE(snap->f.path.len == 0 || memcmp(snap->f.path.ptr, f.path.ptr, snap->f.path.len) == 0);
    REQUIRE((snap->f.ua.ptr == NULL) == (f.ua.ptr == NULL));
    snap->f.request_id = LV_SLICE_LIT("00000000-0000-4000-8000-000000000000");

    lv_buf_t out = LV_BUF_INIT;
    size_t n = lv_capture_record(&snap->f, &out);
    REQUIRE(n == lv_buf_len(&out));
    REQUIRE(n <= LV_CAPTURE_MAX_RECORD);
    json_error_t err;
    json_t *j = json_loadb(lv_buf_data(&out), n, JSON_ALLOW_NUL, &err);
    REQUIRE(j && json_is_object(j));
    REQUIRE(json_object_size(j) == 13);
    check_round_trip(j, "path", f.path, LV_CAPTURE_CAP_PATH);
    check_round_trip(j, "query", f.query, LV_CAPTURE_CAP_QUERY);
    check_round_trip(j, "referer", f.referer, LV_CAPTURE_CAP_HEADER);
    REQUIRE(json_is_object(json_object_get(j, "params")));
    REQUIRE(json_object_size(json_object_get(j, "params")) <= np);
    REQUIRE(json_integer_value(json_object_get(j, "status")) == f.status);
    json_decref(j);
    lv_buf_free(&out);
    free(snap);
    free(key_name);

    check_budget((const uint8_t *)piece[OPS], len[OPS]);
    for (int i = 0; i < NUM_PIECES; i++)
        free(piece[i]);
    return 0;
}
