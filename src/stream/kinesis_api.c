/* kinesis_api.c: the Kinesis Data Streams API (see kinesis_api.h).
 *
 * A request goes: X-Amz-Target and body -> lv_kinesis_parse (every check
 * that needs no stream) -> the stream, found by name and referenced ->
 * the operation. The list and describe operations read snapshots
 * (lv_stream_info, lv_stream_shard_info) and answer at once; CreateStream,
 * PutRecord(s) and GetRecords start work on the streams' threads and
 * answer from its callback, which runs on the connection's loop. The HTTP
 * server keeps the request valid until it is answered.
 *
 * PutRecords makes one append per shard its records touch (in request
 * order within each), so one shard's full buffer (EAGAIN) fails only its
 * own records, with ProvisionedThroughputExceededException, as Kinesis
 * reports throttling per shard; the answer goes out when the last append
 * has been acknowledged. A stream deleted meanwhile fails the request as a
 * whole (ResourceNotFoundException), since Kinesis has no per-record code
 * for it.
 *
 * Iterators carry a position: TRIM_HORIZON is sequence number 0 (reads
 * start at the oldest record kept), LATEST the shard's next sequence
 * number when the iterator was issued, AT_ and AFTER_SEQUENCE_NUMBER the
 * number itself or the one after, AT_TIMESTAMP a time, which stays a time
 * until a read finds a record (a read that finds none must not skip
 * records that arrive later but carry an earlier clock). */
#include "stream/kinesis_api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/json_text.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/uuid.h"
#include "stream/kinesis_format.h"
#include "stream/kinesis_iterator.h"
#include "stream/kinesis_request.h"
#include "stream/seqnum.h"

#define MOD "kinesis"
#define ITERATOR_TTL_MS 300000u          /* Kinesis: 5 minutes */
#define MAX_READ_BYTES (10u << 20)       /* GetRecords: 10 MiB per call, as Kinesis */

struct lv_kinesis_api {
    lv_streams_t *streams;
    lv_metrics_t *metrics;
    lv_kinesis_key_t key;
    uint64_t iterator_ttl_ms;
    /* Registered on first use: most pairs never happen. */
    _Atomic(lv_counter_t *) requests[LV_KOP_COUNT][LV_KERR_COUNT];
};

/* What every answer needs. */
typedef struct {
    lv_kinesis_api_t *api;
    lv_http_req_t *req;
    lv_kinesis_op_t op;
    char request_id[LV_UUID_LEN + 1];
} reply_t;

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ======================================================================
 * Answers
 * ====================================================================== */

static lv_counter_t *counter(lv_kinesis_api_t *api, lv_kinesis_op_t op, lv_kinesis_err_t result)
{
    lv_counter_t *c = atomic_load_explicit(&api->requests[op][result], memory_order_acquire);
    if (!c) {
        /* Two loops may race here; the registry hands both the same series. */
        char labels[128];
        snprintf(labels, sizeof labels, "operation=\"%s\",result=\"%s\"", lv_kinesis_op_name(op),
                 lv_kinesis_err_name(result));
        c = lv_metrics_counter(api->metrics, "levee_kinesis_requests_total",
                               "Kinesis API requests by operation and result (ok, or the error type answered).",
                               labels);
        atomic_store_explicit(&api->requests[op][result], c, memory_order_release);
    }
    return c;
}

static void count(lv_kinesis_api_t *api, lv_kinesis_op_t op, lv_kinesis_err_t result)
{
    if ((unsigned)op < LV_KOP_COUNT && (unsigned)result < LV_KERR_COUNT)
        lv_counter_inc(counter(api, op, result));
}

static void respond(reply_t *r, int status, const char *error_type, lv_slice_t body)
{
    lv_buf_t head = LV_BUF_INIT;
    lv_buf_printf(&head, "Content-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: %s\r\n", r->request_id);
    if (error_type)
        lv_buf_printf(&head, "X-Amzn-ErrorType: %s\r\n", error_type);
    lv_http_respond(r->req, status, lv_buf_slice(&head), body);
    lv_buf_free(&head);
}

static void answer_ok(reply_t *r, const lv_buf_t *body)
{
    count(r->api, r->op, LV_KERR_NONE);
    respond(r, 200, NULL, lv_buf_slice(body));
}

static void answer_error(reply_t *r, lv_kinesis_err_t type, lv_slice_t message)
{
    count(r->api, r->op, type);
    lv_buf_t body = LV_BUF_INIT;
    lv_kinesis_error_json(&body, type, message);
    respond(r, lv_kinesis_err_status(type), lv_kinesis_err_name(type), lv_buf_slice(&body));
    lv_buf_free(&body);
}

static void answer_errorf(reply_t *r, lv_kinesis_err_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void answer_errorf(reply_t *r, lv_kinesis_err_t type, const char *fmt, ...)
{
    lv_buf_t msg = LV_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    answer_error(r, type, lv_buf_slice(&msg));
    lv_buf_free(&msg);
}

/* Names in messages have passed the stream name pattern: plain ASCII. */
static void answer_no_stream(reply_t *r, lv_slice_t name)
{
    answer_errorf(r, LV_KERR_RESOURCE_NOT_FOUND, "Stream %.*s under account " LV_KINESIS_ACCOUNT " not found.",
                  (int)name.len, name.ptr);
}

static void answer_no_shard(reply_t *r, lv_slice_t shard_id, lv_slice_t name)
{
    answer_errorf(r, LV_KERR_RESOURCE_NOT_FOUND,
                  "Shard %.*s in stream %.*s under account " LV_KINESIS_ACCOUNT " does not exist", (int)shard_id.len,
                  shard_id.ptr, (int)name.len, name.ptr);
}

/* An errno from the streams that is levee's fault or the disk's. */
static void answer_failure(reply_t *r, const char *what, int err)
{
    if (err == ESHUTDOWN)
        answer_errorf(r, LV_KERR_INTERNAL_FAILURE, "%s: levee is shutting down.", what);
    else
        answer_errorf(r, LV_KERR_INTERNAL_FAILURE, "%s: %s.", what, strerror(err));
}

/* ======================================================================
 * JSON pieces
 * ====================================================================== */

static void json_key(lv_buf_t *b, const char *key)
{
    lv_buf_append(b, "\"", 1);
    lv_buf_append_str(b, key);
    lv_buf_append(b, "\":", 2);
}

static void json_text(lv_buf_t *b, const char *key, lv_slice_t value)
{
    json_key(b, key);
    lv_json_string(b, value);
}

static void json_arn(lv_buf_t *b, lv_slice_t region, lv_slice_t name)
{
    json_key(b, "StreamARN");
    lv_buf_append(b, "\"", 1);
    lv_kinesis_arn(b, region, name);
    lv_buf_append(b, "\"", 1);
}

static void json_shard(lv_buf_t *b, const lv_stream_t *s, unsigned i)
{
    lv_shard_info_t si = lv_stream_shard_info(s, i);
    char id[LV_KINESIS_SHARD_ID_MAX], lo[LV_KINESIS_U128_MAX], hi[LV_KINESIS_U128_MAX], seq[LV_SEQNUM_MAX];
    lv_kinesis_shard_id(i, id);
    lv_kinesis_u128_format(si.hash_start, lo);
    lv_kinesis_u128_format(si.hash_end, hi);
    /* Fixed for the shard's life, as in Kinesis: the number just before
     * its first record. */
    lv_seqnum_format(i, 0, seq);
    lv_buf_printf(b,
                  "{\"ShardId\":\"%s\",\"HashKeyRange\":{\"StartingHashKey\":\"%s\",\"EndingHashKey\":\"%s\"},"
                  "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"%s\"}}",
                  id, lo, hi, seq);
}

static unsigned retention_hours(const lv_stream_info_t *info)
{
    int64_t h = (info->retention_ms + 3599999) / 3600000;
    return h < 1 ? 1 : (unsigned)h;
}

/* The members DescribeStream, DescribeStreamSummary and ListStreams'
 * summaries share. */
static void json_stream_head(lv_buf_t *b, const lv_stream_info_t *info, lv_slice_t region)
{
    json_text(b, "StreamName", info->name);
    lv_buf_append(b, ",", 1);
    json_arn(b, region, info->name);
    lv_buf_append_str(b, ",\"StreamStatus\":\"ACTIVE\",\"StreamModeDetails\":{\"StreamMode\":\"PROVISIONED\"},"
                         "\"StreamCreationTimestamp\":");
    lv_kinesis_timestamp(b, info->created_ms);
}

/* The first shard whose id sorts after start (ids compare as bytes, and
 * levee's all have the same length, so this is index order). */
static unsigned first_shard_after(bool has_start, lv_slice_t start, unsigned nshards)
{
    if (!has_start)
        return 0;
    unsigned lo = 0, hi = nshards;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        char id[LV_KINESIS_SHARD_ID_MAX];
        size_t n = lv_kinesis_shard_id(mid, id);
        size_t common = n < start.len ? n : start.len;
        int c = memcmp(id, start.ptr, common);
        bool after = c > 0 || (c == 0 && n > start.len);
        if (after)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ======================================================================
 * Control plane
 * ====================================================================== */

typedef struct {
    reply_t r;
    char name[LV_STREAM_MAX_NAME];
    size_t name_len;
} create_call_t;

static void on_created(void *arg, const lv_stream_created_t *res)
{
    create_call_t *c = arg;
    lv_slice_t name = lv_slice(c->name, c->name_len);
    if (res->err == 0) {
        lv_buf_t body = LV_BUF_INIT;
        answer_ok(&c->r, &body);
    } else if (res->err == EEXIST) {
        answer_errorf(&c->r, LV_KERR_RESOURCE_IN_USE, "Stream %.*s under account " LV_KINESIS_ACCOUNT
                      " already exists.", (int)name.len, name.ptr);
    } else if (res->err == EINVAL) {
        answer_errorf(&c->r, LV_KERR_INVALID_ARGUMENT, "Stream %.*s cannot be created with these arguments.",
                      (int)name.len, name.ptr);
    } else {
        answer_failure(&c->r, "The stream could not be created", res->err);
    }
    free(c);
}

static void create_stream(reply_t *r, const lv_kinesis_req_t *kr)
{
    create_call_t *c = lv_calloc(1, sizeof *c);
    c->r = *r;
    memcpy(c->name, kr->stream.ptr, kr->stream.len);
    c->name_len = kr->stream.len;
    lv_streams_create(r->api->streams, lv_slice(c->name, c->name_len), kr->shard_count, r->req->loop, on_created,
                      c);
}

static void delete_stream(reply_t *r, const lv_kinesis_req_t *kr)
{
    if (lv_streams_delete(r->api->streams, kr->stream) != 0) {
        answer_no_stream(r, kr->stream);
        return;
    }
    lv_buf_t body = LV_BUF_INIT;
    answer_ok(r, &body);
}

static void describe_stream(reply_t *r, const lv_kinesis_req_t *kr, lv_stream_t *s)
{
    lv_stream_info_t info = lv_stream_info(s);
    unsigned first = first_shard_after(kr->has_start_shard, kr->start_shard, info.shards);
    unsigned end = info.shards - first > kr->limit ? first + kr->limit : info.shards;
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"StreamDescription\":{");
    json_stream_head(&b, &info, kr->region);
    lv_buf_append_str(&b, ",\"Shards\":[");
    for (unsigned i = first; i < end; i++) {
        if (i > first)
            lv_buf_append(&b, ",", 1);
        json_shard(&b, s, i);
    }
    lv_buf_printf(&b,
                  "],\"HasMoreShards\":%s,\"RetentionPeriodHours\":%u,"
                  "\"EnhancedMonitoring\":[{\"ShardLevelMetrics\":[]}],\"EncryptionType\":\"NONE\"}}",
                  end < info.shards ? "true" : "false", retention_hours(&info));
    answer_ok(r, &b);
    lv_buf_free(&b);
}

static void describe_summary(reply_t *r, const lv_kinesis_req_t *kr, lv_stream_t *s)
{
    lv_stream_info_t info = lv_stream_info(s);
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"StreamDescriptionSummary\":{");
    json_stream_head(&b, &info, kr->region);
    lv_buf_printf(&b,
                  ",\"RetentionPeriodHours\":%u,\"EnhancedMonitoring\":[{\"ShardLevelMetrics\":[]}],"
                  "\"EncryptionType\":\"NONE\",\"OpenShardCount\":%u,\"ConsumerCount\":0}}",
                  retention_hours(&info), info.shards);
    answer_ok(r, &b);
    lv_buf_free(&b);
}

static void list_shards(reply_t *r, const lv_kinesis_req_t *kr, lv_stream_t *s)
{
    lv_stream_info_t info = lv_stream_info(s);
    unsigned first = first_shard_after(kr->has_start_shard, kr->start_shard, info.shards);
    unsigned end = info.shards - first > kr->limit ? first + kr->limit : info.shards;
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"Shards\":[");
    for (unsigned i = first; i < end; i++) {
        if (i > first)
            lv_buf_append(&b, ",", 1);
        json_shard(&b, s, i);
    }
    lv_buf_append(&b, "]", 1);
    if (end < info.shards) {
        lv_buf_append_str(&b, ",\"NextToken\":\"");
        lv_kinesis_shards_token(&b, info.name, end - 1);
        lv_buf_append(&b, "\"", 1);
    }
    lv_buf_append(&b, "}", 1);
    answer_ok(r, &b);
    lv_buf_free(&b);
}

typedef struct {
    lv_buf_t names;     /* the names, back to back */
    size_t *len;        /* of each */
    size_t n, want;     /* collected; stop after want */
} name_list_t;

static bool collect_name(void *arg, lv_slice_t name)
{
    name_list_t *l = arg;
    lv_buf_append(&l->names, name.ptr, name.len);
    l->len[l->n++] = name.len;
    return l->n < l->want;
}

static void list_streams(reply_t *r, const lv_kinesis_req_t *kr)
{
    /* One more than asked for tells whether there are more. */
    name_list_t l = {.names = LV_BUF_INIT, .want = (size_t)kr->limit + 1};
    l.len = lv_calloc(l.want, sizeof *l.len);
    lv_streams_each(r->api->streams, kr->start_stream, collect_name, &l);
    bool more = l.n > kr->limit;
    size_t shown = more ? kr->limit : l.n;

    lv_buf_t names = LV_BUF_INIT, summaries = LV_BUF_INIT;
    const char *p = lv_buf_data(&l.names);
    lv_slice_t last = {0};
    for (size_t i = 0; i < shown; p += l.len[i], i++) {
        lv_slice_t name = lv_slice(p, l.len[i]);
        last = name;
        lv_stream_t *s = lv_streams_find(r->api->streams, name);
        if (!s)
            continue; /* deleted since: leave it out */
        lv_stream_info_t info = lv_stream_info(s);
        if (lv_buf_len(&names)) {
            lv_buf_append(&names, ",", 1);
            lv_buf_append(&summaries, ",", 1);
        }
        lv_json_string(&names, name);
        lv_buf_append(&summaries, "{", 1);
        json_stream_head(&summaries, &info, lv_slice(NULL, 0));
        lv_buf_append(&summaries, "}", 1);
        lv_stream_unref(s);
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"StreamNames\":[");
    lv_buf_append(&b, lv_buf_data(&names), lv_buf_len(&names));
    lv_buf_printf(&b, "],\"HasMoreStreams\":%s,\"StreamSummaries\":[", more ? "true" : "false");
    lv_buf_append(&b, lv_buf_data(&summaries), lv_buf_len(&summaries));
    lv_buf_append(&b, "]", 1);
    if (more) {
        lv_buf_append_str(&b, ",\"NextToken\":\"");
        lv_kinesis_streams_token(&b, last);
        lv_buf_append(&b, "\"", 1);
    }
    lv_buf_append(&b, "}", 1);
    answer_ok(r, &b);
    lv_buf_free(&b);
    lv_buf_free(&names);
    lv_buf_free(&summaries);
    lv_buf_free(&l.names);
    free(l.len);
}

/* ======================================================================
 * PutRecord, PutRecords
 * ====================================================================== */

typedef struct put_call put_call_t;

/* One append: the records of one shard, in request order. */
typedef struct {
    put_call_t *call;
    const size_t *index;      /* positions in the request */
    size_t n;
} put_group_t;

struct put_call {
    reply_t r;
    lv_stream_t *stream;
    char name[LV_STREAM_MAX_NAME];
    size_t name_len;
    size_t n;
    unsigned *shard;          /* of each record */
    size_t *order;            /* record positions grouped by shard */
    put_group_t *groups;
    lv_stream_put_result_t *results;
    size_t pending;           /* appends not acknowledged yet */
};

static void put_call_free(put_call_t *c)
{
    lv_stream_unref(c->stream);
    free(c->shard);
    free(c->order);
    free(c->groups);
    free(c->results);
    free(c);
}

static void finish_put(put_call_t *c)
{
    reply_t *r = &c->r;
    lv_slice_t name = lv_slice(c->name, c->name_len);
    char id[LV_KINESIS_SHARD_ID_MAX], seq[LV_SEQNUM_MAX];
    for (size_t i = 0; i < c->n; i++)
        if (c->results[i].err == ENOENT) {
            answer_no_stream(r, name);
            put_call_free(c);
            return;
        }

    if (r->op == LV_KOP_PUT_RECORD) {
        const lv_stream_put_result_t *res = &c->results[0];
        lv_kinesis_shard_id(c->shard[0], id);
        if (res->err == EAGAIN) {
            answer_errorf(r, LV_KERR_THROUGHPUT_EXCEEDED,
                          "Rate exceeded for shard %s in stream %.*s under account " LV_KINESIS_ACCOUNT ".", id,
                          (int)name.len, name.ptr);
        } else if (res->err) {
            answer_failure(r, "The record could not be written", res->err);
        } else {
            lv_seqnum_format(c->shard[0], res->seq, seq);
            lv_buf_t b = LV_BUF_INIT;
            lv_buf_printf(&b, "{\"ShardId\":\"%s\",\"SequenceNumber\":\"%s\",\"EncryptionType\":\"NONE\"}", id, seq);
            answer_ok(r, &b);
            lv_buf_free(&b);
        }
        put_call_free(c);
        return;
    }

    lv_buf_t recs = LV_BUF_INIT;
    size_t failed = 0;
    for (size_t i = 0; i < c->n; i++) {
        const lv_stream_put_result_t *res = &c->results[i];
        lv_kinesis_shard_id(c->shard[i], id);
        if (i)
            lv_buf_append(&recs, ",", 1);
        if (res->err == 0) {
            lv_seqnum_format(c->shard[i], res->seq, seq);
            lv_buf_printf(&recs, "{\"SequenceNumber\":\"%s\",\"ShardId\":\"%s\"}", seq, id);
            continue;
        }
        failed++;
        if (res->err == EAGAIN)
            lv_buf_printf(&recs,
                          "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded "
                          "for shard %s in stream %.*s under account " LV_KINESIS_ACCOUNT ".\"}",
                          id, (int)name.len, name.ptr);
        else
            lv_buf_printf(&recs, "{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":\"%s\"}",
                          res->err == ESHUTDOWN ? "levee is shutting down." : strerror(res->err));
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "{\"FailedRecordCount\":%zu,\"Records\":[", failed);
    lv_buf_append(&b, lv_buf_data(&recs), lv_buf_len(&recs));
    lv_buf_append_str(&b, "],\"EncryptionType\":\"NONE\"}");
    answer_ok(r, &b);
    lv_buf_free(&b);
    lv_buf_free(&recs);
    put_call_free(c);
}

static void on_appended(void *arg, const lv_stream_put_result_t *results, size_t n)
{
    put_group_t *g = arg;
    put_call_t *c = g->call;
    for (size_t i = 0; i < n && i < g->n; i++)
        c->results[g->index[i]] = results[i];
    if (--c->pending == 0)
        finish_put(c);
}

static void put_records(reply_t *r, const lv_kinesis_req_t *kr, lv_stream_t *s)
{
    lv_stream_info_t info = lv_stream_info(s);
    size_t n = kr->num_records;
    put_call_t *c = lv_calloc(1, sizeof *c);
    c->r = *r;
    c->stream = s;
    memcpy(c->name, info.name.ptr, info.name.len);
    c->name_len = info.name.len;
    c->n = n;
    c->shard = lv_calloc(n, sizeof *c->shard);
    c->order = lv_calloc(n, sizeof *c->order);
    c->results = lv_calloc(n, sizeof *c->results);

    /* Counting sort by shard keeps request order within each shard. */
    unsigned *per_shard = lv_calloc(info.shards + 1u, sizeof *per_shard);
    for (size_t i = 0; i < n; i++) {
        const lv_kinesis_record_t *rec = &kr->records[i];
        unsigned __int128 hash = rec->has_hash_key ? rec->hash_key : lv_stream_hash_key(rec->partition_key);
        c->shard[i] = lv_stream_shard_for(s, hash);
        if (c->shard[i] >= info.shards)
            c->shard[i] = info.shards - 1; /* never, by stream.h; keeps the arrays safe */
        per_shard[c->shard[i] + 1]++;
    }
    size_t ngroups = 0;
    for (unsigned sh = 0; sh < info.shards; sh++) {
        ngroups += per_shard[sh + 1] != 0;
        per_shard[sh + 1] += per_shard[sh];
    }
    for (size_t i = 0; i < n; i++)
        c->order[per_shard[c->shard[i]]++] = i;
    free(per_shard);

    c->groups = lv_calloc(ngroups, sizeof *c->groups);
    lv_stream_put_t *puts = lv_calloc(n, sizeof *puts);
    size_t g = 0;
    for (size_t at = 0; at < n; g++) {
        put_group_t *grp = &c->groups[g];
        size_t end = at;
        while (end < n && c->shard[c->order[end]] == c->shard[c->order[at]])
            end++;
        *grp = (put_group_t){.call = c, .index = c->order + at, .n = end - at};
        for (size_t k = 0; k < grp->n; k++) {
            const lv_kinesis_record_t *rec = &kr->records[grp->index[k]];
            puts[k] = (lv_stream_put_t){.shard = c->shard[grp->index[k]], .partition_key = rec->partition_key,
                                        .data = rec->data};
        }
        c->pending++;
        int err = lv_stream_append(s, puts, grp->n, r->req->loop, on_appended, grp);
        if (err) {
            c->pending--;
            for (size_t k = 0; k < grp->n; k++)
                c->results[grp->index[k]].err = err;
        }
        at = end;
    }
    free(puts);
    /* Callbacks never run inside lv_stream_append, so nothing has finished
     * the call yet; if every append failed at once, nothing ever will. */
    if (c->pending == 0)
        finish_put(c);
}

/* ======================================================================
 * GetShardIterator, GetRecords
 * ====================================================================== */

static void get_shard_iterator(reply_t *r, const lv_kinesis_req_t *kr, lv_stream_t *s)
{
    lv_stream_info_t info = lv_stream_info(s);
    if (!kr->shard_valid || kr->shard >= info.shards) {
        answer_no_shard(r, kr->shard_id, info.name);
        return;
    }
    lv_shard_info_t si = lv_stream_shard_info(s, kr->shard);
    lv_kinesis_iter_t it = {.stream_id = info.id, .shard = kr->shard, .issued_ms = wall_ms()};
    memcpy(it.name, info.name.ptr, info.name.len);
    it.name_len = info.name.len;
    switch (kr->iter_type) {
    case LV_KITER_TRIM_HORIZON:
        it.position = 0;
        break;
    case LV_KITER_LATEST:
        it.position = si.next_seq;
        break;
    case LV_KITER_AT_SEQUENCE_NUMBER:
    case LV_KITER_AFTER_SEQUENCE_NUMBER: {
        bool after = kr->iter_type == LV_KITER_AFTER_SEQUENCE_NUMBER;
        /* A number not handed out yet cannot be read at or after. */
        if (kr->seq > si.next_seq || (after && kr->seq == si.next_seq)) {
            char seq[LV_SEQNUM_MAX];
            lv_seqnum_format(kr->shard, kr->seq, seq);
            answer_errorf(r, LV_KERR_INVALID_ARGUMENT,
                          "StartingSequenceNumber %s used in GetShardIterator on shard %.*s in stream %.*s under "
                          "account " LV_KINESIS_ACCOUNT " is invalid because it is past the shard's last record.",
                          seq, (int)kr->shard_id.len, kr->shard_id.ptr, (int)info.name.len, info.name.ptr);
            return;
        }
        it.position = after ? kr->seq + 1 : kr->seq;
        break;
    }
    case LV_KITER_AT_TIMESTAMP:
        it.at_time = true;
        it.position = kr->timestamp_ms;
        break;
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"ShardIterator\":\"");
    lv_kinesis_iter_encode(&r->api->key, &it, &b);
    lv_buf_append_str(&b, "\"}");
    answer_ok(r, &b);
    lv_buf_free(&b);
}

typedef struct {
    reply_t r;
    lv_stream_t *stream;
    lv_kinesis_iter_t it;
} read_call_t;

static void on_read(void *arg, const lv_stream_read_t *res)
{
    read_call_t *c = arg;
    reply_t *r = &c->r;
    if (res->err == ENOENT) {
        char id[LV_KINESIS_SHARD_ID_MAX];
        size_t n = lv_kinesis_shard_id(c->it.shard, id);
        answer_no_shard(r, lv_slice(id, n), lv_slice(c->it.name, c->it.name_len));
    } else if (res->err) {
        answer_failure(r, "The records could not be read", res->err);
    } else {
        lv_buf_t b = LV_BUF_INIT;
        char seq[LV_SEQNUM_MAX];
        lv_buf_append_str(&b, "{\"Records\":[");
        for (size_t i = 0; i < res->n; i++) {
            const lv_stream_record_t *rec = &res->records[i];
            lv_seqnum_format(c->it.shard, rec->seq, seq);
            lv_buf_printf(&b, "%s{\"SequenceNumber\":\"%s\",\"ApproximateArrivalTimestamp\":", i ? "," : "", seq);
            lv_kinesis_timestamp(&b, rec->arrival_ms);
            lv_buf_append_str(&b, ",\"Data\":\"");
            lv_base64_encode(rec->data, &b);
            lv_buf_append_str(&b, "\",\"PartitionKey\":");
            lv_json_string(&b, rec->partition_key);
            lv_buf_append(&b, "}", 1);
        }
        uint64_t behind = 0;
        if (res->n && res->next_seq < res->shard_next_seq && res->last_arrival_ms > res->records[res->n - 1].arrival_ms)
            behind = res->last_arrival_ms - res->records[res->n - 1].arrival_ms;
        lv_kinesis_iter_t next = c->it;
        next.issued_ms = wall_ms();
        if (res->n || !c->it.at_time) {
            next.at_time = false;
            next.position = res->next_seq;
        }
        lv_buf_append_str(&b, "],\"NextShardIterator\":\"");
        lv_kinesis_iter_encode(&r->api->key, &next, &b);
        lv_buf_printf(&b, "\",\"MillisBehindLatest\":%llu}", (unsigned long long)behind);
        answer_ok(r, &b);
        lv_buf_free(&b);
    }
    lv_stream_unref(c->stream);
    free(c);
}

static void format_time(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a %b %d %H:%M:%S UTC %Y", &tm);
}

static void get_records(reply_t *r, const lv_kinesis_req_t *kr)
{
    lv_kinesis_api_t *api = r->api;
    read_call_t *c = lv_calloc(1, sizeof *c);
    c->r = *r;
    if (lv_kinesis_iter_decode(&api->key, kr->shard_iterator, &c->it) != 0) {
        answer_errorf(r, LV_KERR_INVALID_ARGUMENT, "Invalid ShardIterator.");
        free(c);
        return;
    }
    lv_kinesis_iter_t *it = &c->it;
    lv_slice_t name = lv_slice(it->name, it->name_len);
    uint64_t now = wall_ms();
    if (now > it->issued_ms && now - it->issued_ms > api->iterator_ttl_ms) {
        char issued[64], current[64];
        format_time(it->issued_ms, issued, sizeof issued);
        format_time(now, current, sizeof current);
        answer_errorf(r, LV_KERR_EXPIRED_ITERATOR,
                      "Iterator expired. The iterator was created at time %s while right now it is %s which is "
                      "further in the future than the tolerated delay of %llu milliseconds.",
                      issued, current, (unsigned long long)api->iterator_ttl_ms);
        free(c);
        return;
    }
    if (kr->stream.len && !lv_slice_eq(kr->stream, name)) {
        answer_errorf(r, LV_KERR_INVALID_ARGUMENT, "The ShardIterator is not for the stream named by StreamARN.");
        free(c);
        return;
    }
    char id[LV_KINESIS_SHARD_ID_MAX];
    size_t idlen = lv_kinesis_shard_id(it->shard, id);
    lv_stream_t *s = lv_streams_find(api->streams, name);
    if (s && (lv_stream_info(s).id != it->stream_id || it->shard >= lv_stream_info(s).shards)) {
        lv_stream_unref(s); /* a stream of the same name, made after the iterator's was deleted */
        s = NULL;
    }
    if (!s) {
        answer_no_shard(r, lv_slice(id, idlen), name);
        free(c);
        return;
    }
    c->stream = s;
    lv_stream_read(s, it->shard, it->at_time ? LV_READ_AT_TIME : LV_READ_AT_SEQ, it->position, kr->limit,
                   MAX_READ_BYTES, r->req->loop, on_read, c);
}

/* ======================================================================
 * Dispatch
 * ====================================================================== */

static lv_slice_t header(const lv_http_req_t *req, const char *name)
{
    const lv_http_header_t *h = lv_http_find_header(req->head.headers, req->head.num_headers, lv_slice_cstr(name));
    return h ? h->value : lv_slice(NULL, 0);
}

bool lv_kinesis_is_target(lv_slice_t target)
{
    size_t n = sizeof LV_KINESIS_TARGET_PREFIX - 1;
    return target.len >= n && memcmp(target.ptr, LV_KINESIS_TARGET_PREFIX, n) == 0;
}

static bool contains_nocase(lv_slice_t s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++)
        if (strncasecmp(s.ptr + i, needle, n) == 0)
            return true;
    return false;
}

bool lv_kinesis_api_handle(lv_kinesis_api_t *api, lv_http_req_t *req)
{
    lv_slice_t target = header(req, "X-Amz-Target");
    if (!lv_kinesis_is_target(target))
        return false;
    reply_t r = {.api = api, .req = req, .op = LV_KOP_UNKNOWN};
    lv_uuid4(r.request_id);

    if (contains_nocase(header(req, "Content-Type"), "cbor")) {
        r.op = lv_kinesis_op_from_name(lv_slice(target.ptr + sizeof LV_KINESIS_TARGET_PREFIX - 1,
                                                target.len - (sizeof LV_KINESIS_TARGET_PREFIX - 1)));
        answer_errorf(&r, LV_KERR_SERIALIZATION,
                      "levee speaks the JSON protocol of Kinesis, not CBOR: turn CBOR off in the client "
                      "(AWS_CBOR_DISABLE=1 for the Java SDK v1, aws.cborEnabled=false for v2).");
        return true;
    }
    lv_kinesis_req_t kr;
    lv_kinesis_error_t err = {0};
    int rc = lv_kinesis_parse(target, req->body, &kr, &err);
    r.op = kr.op;
    if (rc == 0 && !lv_slice_eq_cstr(req->head.method, "POST")) {
        lv_kinesis_error_set(&err, LV_KERR_SERIALIZATION, "Kinesis requests are POST /.");
        rc = -1;
    }
    if (rc != 0) {
        answer_error(&r, err.type, lv_buf_slice(&err.message));
        lv_kinesis_req_free(&kr);
        lv_kinesis_error_free(&err);
        return true;
    }
    lv_kinesis_error_free(&err);

    switch (kr.op) {
    case LV_KOP_CREATE_STREAM:
        create_stream(&r, &kr);
        break;
    case LV_KOP_DELETE_STREAM:
        delete_stream(&r, &kr);
        break;
    case LV_KOP_LIST_STREAMS:
        list_streams(&r, &kr);
        break;
    case LV_KOP_GET_RECORDS:
        get_records(&r, &kr);
        break;
    default: {
        lv_stream_t *s = lv_streams_find(api->streams, kr.stream);
        if (!s) {
            answer_no_stream(&r, kr.stream);
            break;
        }
        switch (kr.op) {
        case LV_KOP_DESCRIBE_STREAM:
            describe_stream(&r, &kr, s);
            break;
        case LV_KOP_DESCRIBE_STREAM_SUMMARY:
            describe_summary(&r, &kr, s);
            break;
        case LV_KOP_LIST_SHARDS:
            list_shards(&r, &kr, s);
            break;
        case LV_KOP_GET_SHARD_ITERATOR:
            get_shard_iterator(&r, &kr, s);
            break;
        case LV_KOP_PUT_RECORD:
        case LV_KOP_PUT_RECORDS:
            put_records(&r, &kr, s);
            s = NULL; /* the call holds the reference now */
            break;
        default:
            answer_errorf(&r, LV_KERR_UNKNOWN_OPERATION, "levee does not serve this operation.");
            break;
        }
        if (s)
            lv_stream_unref(s);
        break;
    }
    }
    lv_kinesis_req_free(&kr);
    return true;
}

/* ======================================================================
 * Lifetime
 * ====================================================================== */

lv_kinesis_api_t *lv_kinesis_api_new(lv_streams_t *streams, const char *data_dir, lv_metrics_t *metrics, char *err,
                                     size_t errlen)
{
    lv_kinesis_api_t *api = lv_calloc(1, sizeof *api);
    api->streams = streams;
    api->metrics = metrics;
    api->iterator_ttl_ms = ITERATOR_TTL_MS;
    if (lv_kinesis_key_load(data_dir, &api->key, err, errlen) != 0) {
        free(api);
        return NULL;
    }
    /* A test hook: expiry is otherwise five minutes away. */
    const char *ttl = getenv("LEVEE_TEST_ITERATOR_TTL_MS");
    if (ttl && *ttl) {
        char *end;
        unsigned long long v = strtoull(ttl, &end, 10);
        if (*end == '\0' && v > 0) {
            api->iterator_ttl_ms = v;
            lv_log_warn(MOD, "LEVEE_TEST_ITERATOR_TTL_MS: shard iterators expire after %llu ms (a test setting)", v);
        }
    }
    /* Every operation's "ok" series exists from the start, so a scrape
     * shows zeros rather than nothing. */
    for (int op = 0; op < LV_KOP_UNKNOWN; op++)
        (void)counter(api, (lv_kinesis_op_t)op, LV_KERR_NONE);
    return api;
}

void lv_kinesis_api_free(lv_kinesis_api_t *api)
{
    free(api);
}
