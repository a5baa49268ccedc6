/* capture_record.c: what capturing one request costs the loop that answers
 * it, piece by piece, without a stream or a socket.
 *
 * The request is a QR-code scan: GET /r/{code} with a query, a browser's
 * User-Agent and Referer. For N requests (default 2,000,000) it times, in
 * thread CPU time:
 *   params     lv_capture_path_params: the {code} value out of the path;
 *   key        lv_capture_partition_key for `partition_key: path.code`;
 *   snapshot   the capped copy of the request taken before the answer;
 *   uuid       the request id (lv_uuid4);
 *   record     the JSON record, appended to a batch buffer that is emptied
 *              every 500 records, as a real batch is;
 *   md5 shard  lv_stream_hash_key + the shard of a 4-shard range (done at
 *              flush time, once per record, when the stream has > 1 shard);
 *   rnd shard  the random hash key that places records keyed by request id;
 * and then all of it together, as gw_finish and the flush do per request,
 * once keyed by the path parameter and once by the request id.
 * The sum is the capture's CPU per request on the loop, before the batch
 * is handed to the stream; the stream's own work (copying, writing,
 * syncing, on its committer thread) is not in it: measure that end to end
 * with wrk against levee (docs/capture.md, "Cost").
 *
 * Usage: capture_record [N]
 * Build: make micro (build/bench/micro/capture_record) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/uuid.h"
#include "gateway/capture.h"
#include "stream/stream.h"

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint64_t sink;

static const char request[] = "GET/r/Xk3p9QaZutm_source=tv&utm_campaign=spring"
                              "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                              "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
                              "https://www.example-broadcaster.tv/live203.0.113.77";

typedef struct {
    lv_slice_t method, path, query, ua, referer, ip;
} req_t;

static req_t sample(void)
{
    req_t r;
    const char *p = request;
    r.method = lv_slice(p, 3);
    p += 3;
    r.path = lv_slice(p, 13);
    p += 13;
    r.query = lv_slice(p, 33);
    p += 33;
    r.ua = lv_slice(p, 138);
    p += 138;
    r.referer = lv_slice(p, 38);
    p += 38;
    r.ip = lv_slice(p, 12);
    return r;
}

static const lv_config_capture_t cfg = {.enabled = true, .key = LV_CAPTURE_KEY_PATH, .key_name = "code"};
static const lv_slice_t pattern = LV_SLICE_LIT("/r/{code}");

static lv_capture_fields_t fields(const req_t *r, const lv_route_param_t *params, size_t n)
{
    return (lv_capture_fields_t){
        .time_ms = 1795000000000,
        .route = LV_SLICE_LIT("GET /r/{code}"),
        .method = r->method,
        .path = r->path,
        .query = r->query,
        .status = 302,
        .cache = LV_CAPTURE_CACHE_NONE,
        .latency_us = 9,
        .ip = r->ip,
        .ua = r->ua,
        .referer = r->referer,
        .params = params,
        .num_params = n,
    };
}

typedef enum { ONLY_PARAMS, ONLY_KEY, ONLY_SNAPSHOT, ONLY_UUID, ONLY_RECORD, ONLY_MD5, ONLY_RANDOM, ALL, ALL_RID } part_t;

static double run(part_t part, size_t n, size_t *record_bytes)
{
    req_t r = sample();
    lv_route_param_t params[LV_ROUTE_MAX_PARAMS];
    size_t np = lv_capture_path_params(pattern, r.path, params, LV_ROUTE_MAX_PARAMS);
    lv_capture_snapshot_t *snap = malloc(sizeof *snap);
    lv_capture_fields_t f = fields(&r, params, np);
    lv_capture_snapshot(snap, &f, params[0].value);
    char rid[LV_UUID_LEN + 1];
    lv_uuid4(rid);
    snap->f.request_id = lv_slice(rid, LV_UUID_LEN);
    lv_buf_t batch = LV_BUF_INIT;
    lv_buf_reserve(&batch, 500 * 1024);
    uint64_t acc = 0;
    /* Four equal hash ranges, as lv_stream_shard_for splits them. */
    const unsigned __int128 quarter = ((unsigned __int128)1 << 126);
    double t0 = cpu_ns();
    for (size_t i = 0; i < n; i++) {
        switch (part) {
        case ONLY_PARAMS:
            acc += lv_capture_path_params(pattern, r.path, params, LV_ROUTE_MAX_PARAMS);
            break;
        case ONLY_KEY:
            acc += lv_capture_partition_key(&cfg, NULL, r.ip, params, np).len;
            break;
        case ONLY_SNAPSHOT:
            lv_capture_snapshot(snap, &f, params[0].value);
            acc += snap->used;
            break;
        case ONLY_UUID:
            lv_uuid4(rid);
            acc += (unsigned char)rid[7];
            break;
        case ONLY_RECORD:
            if (i % 500 == 0)
                lv_buf_clear(&batch);
            acc += lv_capture_record(&snap->f, &batch);
            break;
        case ONLY_MD5:
            acc += (uint64_t)(lv_stream_hash_key(params[0].value) / quarter);
            break;
        case ONLY_RANDOM:
            acc += (uint64_t)((((unsigned __int128)lv_random64() << 64) | lv_random64()) / quarter);
            break;
        case ALL:
        case ALL_RID: {
            np = lv_capture_path_params(pattern, r.path, params, LV_ROUTE_MAX_PARAMS);
            lv_slice_t key = part == ALL ? lv_capture_partition_key(&cfg, NULL, r.ip, params, np) : lv_slice("", 0);
            lv_capture_fields_t g = fields(&r, params, np);
            lv_capture_snapshot(snap, &g, key);
            lv_uuid4(rid);
            snap->f.request_id = lv_slice(rid, LV_UUID_LEN);
            if (i % 500 == 0)
                lv_buf_clear(&batch);
            lv_slice_t k = snap->key.len ? snap->key : snap->f.request_id;
            lv_buf_append(&batch, k.ptr, k.len);
            acc += lv_capture_record(&snap->f, &batch);
            if (snap->key.len)
                acc += (uint64_t)(lv_stream_hash_key(snap->key) / quarter);
            else
                acc += (uint64_t)((((unsigned __int128)lv_random64() << 64) | lv_random64()) / quarter);
            break;
        }
        }
    }
    double ns = (cpu_ns() - t0) / (double)n;
    if (record_bytes) {
        lv_buf_clear(&batch);
        *record_bytes = lv_capture_record(&snap->f, &batch);
    }
    sink += acc;
    lv_buf_free(&batch);
    free(snap);
    return ns;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 2000000;
    if (n < 1000)
        n = 1000;
    static const struct {
        part_t part;
        const char *name;
    } parts[] = {{ONLY_PARAMS, "params"}, {ONLY_KEY, "key"},       {ONLY_SNAPSHOT, "snapshot"},
                 {ONLY_UUID, "uuid"},     {ONLY_RECORD, "record"}, {ONLY_MD5, "md5 shard"},
                 {ONLY_RANDOM, "rnd shard"}};
    printf("capture_record: %zu requests of a QR scan (GET /r/{code}, partition_key: path.code)\n", n);
    run(ALL, n / 10, NULL); /* warm up caches and the allocator */
    double sum = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        double ns = run(parts[i].part, n, NULL);
        sum += ns;
        printf("  %-10s %7.1f ns\n", parts[i].name, ns);
    }
    size_t bytes = 0;
    double all = run(ALL, n, &bytes), all_rid = run(ALL_RID, n, NULL);
    printf("  %-10s %7.1f ns  partition_key: path.code (MD5 shard); the parts but rnd shard sum to %.1f ns\n",
           "all", all, sum - run(ONLY_RANDOM, n, NULL));
    printf("  %-10s %7.1f ns  partition_key: request_id (random shard)\n", "all (rid)", all_rid);
    printf("record: %zu bytes; the capture's own work: %.2f M records/s per core keyed by path, %.2f M keyed "
           "by request id\n", bytes, 1e3 / all, 1e3 / all_rid);
    return sink == 42 ? 1 : 0;
}
