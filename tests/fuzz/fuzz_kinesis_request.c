/* fuzz_kinesis_request.c: libFuzzer driver for the Kinesis API's request
 * checks (stream/kinesis_request.h) and the shard iterator decoder.
 *
 * Input: the first byte picks the operation ('a' CreateStream, 'b'
 * DeleteStream, 'c' DescribeStream, 'd' DescribeStreamSummary, 'e'
 * ListStreams, 'f' ListShards, 'g' PutRecord, 'h' PutRecords, 'i'
 * GetShardIterator, 'j' GetRecords, 'k' an operation levee does not serve,
 * then around again); the rest is the JSON body.
 *
 * Checks: a request either parses or gets an error type with a message,
 * never both; the error renders as JSON jansson reads back; a parsed
 * request keeps every limit the API promises (names, keys, data and
 * request sizes, record counts, Limit ranges, shard counts), every byte
 * its slices name is readable (ASan sees an over-read), and a sequence
 * number it decoded formats back to a number that decodes the same. A
 * GetRecords iterator goes through the HMAC decoder, which must refuse
 * anything not made with the key. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "stream/kinesis_format.h"
#include "stream/kinesis_iterator.h"
#include "stream/kinesis_request.h"
#include "stream/seqnum.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void touch(lv_slice_t s)
{
    unsigned h = 0;
    for (size_t i = 0; i < s.len; i++)
        h = h * 31 + (unsigned char)s.ptr[i];
    sink += h;
}

static void check_parsed(const lv_kinesis_req_t *req)
{
    touch(req->stream);
    touch(req->region);
    touch(req->start_shard);
    touch(req->start_stream);
    touch(req->shard_id);
    touch(req->shard_iterator);
    if (req->stream.len)
        REQUIRE(lv_kinesis_valid_stream_name(req->stream));
    REQUIRE(req->region.len <= 32);
    switch (req->op) {
    case LV_KOP_CREATE_STREAM:
        REQUIRE(req->stream.len > 0);
        REQUIRE(req->shard_count >= 1 && req->shard_count <= LV_STREAM_MAX_SHARDS);
        break;
    case LV_KOP_DELETE_STREAM:
    case LV_KOP_DESCRIBE_STREAM_SUMMARY:
    case LV_KOP_LIST_SHARDS:
        REQUIRE(req->stream.len > 0);
        break;
    case LV_KOP_DESCRIBE_STREAM:
    case LV_KOP_LIST_STREAMS:
    case LV_KOP_GET_RECORDS:
        REQUIRE(req->limit >= 1 && req->limit <= LV_KINESIS_MAX_LIMIT);
        break;
    default:
        break;
    }
    if (req->op == LV_KOP_LIST_STREAMS && req->start_stream.len)
        REQUIRE(lv_kinesis_valid_stream_name(req->start_stream));
    if (req->op == LV_KOP_GET_RECORDS)
        REQUIRE(req->shard_iterator.len >= 1 && req->shard_iterator.len <= LV_KINESIS_MAX_ITERATOR);
    if (req->op == LV_KOP_PUT_RECORD || req->op == LV_KOP_PUT_RECORDS) {
        REQUIRE(req->stream.len > 0);
        REQUIRE(req->num_records >= 1 && req->num_records <= LV_KINESIS_MAX_RECORDS);
        REQUIRE(req->op == LV_KOP_PUT_RECORDS || req->num_records == 1);
        size_t total = 0;
        for (size_t i = 0; i < req->num_records; i++) {
            const lv_kinesis_record_t *r = &req->records[i];
            REQUIRE(r->partition_key.len >= 1 && r->partition_key.len <= LV_STREAM_MAX_KEY);
            REQUIRE(r->data.ptr != NULL);
            REQUIRE(r->data.len + r->partition_key.len <= LV_STREAM_MAX_DATA);
            touch(r->partition_key);
            touch(r->data);
            total += r->data.len + r->partition_key.len;
        }
        REQUIRE(total <= LV_KINESIS_MAX_PUT_BYTES);
    }
    if (req->op == LV_KOP_GET_SHARD_ITERATOR) {
        REQUIRE(req->stream.len > 0 && req->shard_id.len > 0);
        if (req->iter_type == LV_KITER_AT_SEQUENCE_NUMBER || req->iter_type == LV_KITER_AFTER_SEQUENCE_NUMBER) {
            char text[LV_SEQNUM_MAX];
            unsigned shard;
            uint64_t seq;
            size_t n = lv_seqnum_format(req->shard_valid ? req->shard : 0, req->seq, text);
            REQUIRE(lv_seqnum_parse(lv_slice(text, n), &shard, &seq) == 0);
            REQUIRE(seq == req->seq);
        }
    }
}

static void check_error(const lv_kinesis_error_t *err)
{
    REQUIRE(err->type > LV_KERR_NONE && err->type < LV_KERR_COUNT);
    REQUIRE(lv_buf_len(&err->message) > 0);
    lv_buf_t body = LV_BUF_INIT;
    lv_kinesis_error_json(&body, err->type, lv_buf_slice(&err->message));
    json_t *doc = json_loadb(lv_buf_data(&body), lv_buf_len(&body), JSON_ALLOW_NUL, NULL);
    REQUIRE(doc != NULL);
    REQUIRE(json_is_string(json_object_get(doc, "__type")));
    json_decref(doc);
    lv_buf_free(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned op = (unsigned)(uint8_t)(data[0] - 'a') % LV_KOP_COUNT;
    char target[64];
    snprintf(target, sizeof target, "%s%s", LV_KINESIS_TARGET_PREFIX,
             op == LV_KOP_UNKNOWN ? "MergeShards" : lv_kinesis_op_name((lv_kinesis_op_t)op));
    lv_slice_t body = lv_slice((const char *)data + 1, size - 1);

    lv_kinesis_req_t req;
    lv_kinesis_error_t err = {0};
    int rc = lv_kinesis_parse(lv_slice_cstr(target), body, &req, &err);
    if (rc == 0) {
        REQUIRE(err.type == LV_KERR_NONE);
        REQUIRE(req.op == (lv_kinesis_op_t)op);
        check_parsed(&req);
        if (req.op == LV_KOP_GET_RECORDS) {
            lv_kinesis_key_t key;
            memset(key.bytes, 0x5a, sizeof key.bytes);
            lv_kinesis_iter_t it;
            REQUIRE(lv_kinesis_iter_decode(&key, req.shard_iterator, &it) == -1);
        }
    } else {
        REQUIRE(rc == -1);
        check_error(&err);
    }
    lv_kinesis_req_free(&req);
    lv_kinesis_error_free(&err);
    return 0;
}
