/* kinesis_request_test.c: X-Amz-Target + JSON body -> a checked Kinesis
 * request, or the error Kinesis would answer (type and message). */
#include <stdlib.h>

#include "core/base64.h"
#include "stream/kinesis_request.h"
#include "stream/seqnum.h"
#include "test.h"

static lv_kinesis_req_t req;
static lv_kinesis_error_t err;

/* Parses Kinesis_20131202.<op> with body; returns the error type. */
static lv_kinesis_err_t parse(const char *op, const char *body)
{
    char target[128];
    snprintf(target, sizeof target, "Kinesis_20131202.%s", op);
    lv_kinesis_req_free(&req);
    lv_kinesis_error_free(&err);
    int rc = lv_kinesis_parse(lv_slice_cstr(target), lv_slice_cstr(body), &req, &err);
    if ((rc == 0) != (err.type == LV_KERR_NONE)) {
        fprintf(stderr, "return code %d with error type %d\n", rc, err.type);
        abort();
    }
    return err.type;
}

static lv_slice_t message(void)
{
    return lv_buf_slice(&err.message);
}

static void done(void)
{
    lv_kinesis_req_free(&req);
    lv_kinesis_error_free(&err);
}

static void test_targets(void)
{
    CHECK_EQ(parse("ListStreams", "{}"), LV_KERR_NONE);
    CHECK_EQ(req.op, LV_KOP_LIST_STREAMS);
    CHECK_EQ(parse("SplitShard", "{}"), LV_KERR_UNKNOWN_OPERATION);
    CHECK_EQ(req.op, LV_KOP_UNKNOWN);
    CHECK_EQ(parse("putrecord", "{}"), LV_KERR_UNKNOWN_OPERATION);
    lv_kinesis_req_free(&req);
    lv_kinesis_error_free(&err);
    CHECK_EQ(lv_kinesis_parse(LV_SLICE_LIT("DynamoDB_20120810.PutItem"), LV_SLICE_LIT("{}"), &req, &err), -1);
    CHECK_EQ(err.type, LV_KERR_UNKNOWN_OPERATION);
    lv_kinesis_error_free(&err);
    CHECK_EQ(lv_kinesis_parse(lv_slice(NULL, 0), lv_slice(NULL, 0), &req, &err), -1);
    CHECK_EQ(err.type, LV_KERR_UNKNOWN_OPERATION);
    CHECK_EQ(lv_kinesis_op_from_name(LV_SLICE_LIT("GetRecords")), LV_KOP_GET_RECORDS);
    CHECK_STR(lv_kinesis_op_name(LV_KOP_DESCRIBE_STREAM_SUMMARY), "DescribeStreamSummary");
    done();
}

static void test_bodies(void)
{
    CHECK_EQ(parse("ListStreams", ""), LV_KERR_NONE); /* empty means {} */
    CHECK_EQ(req.limit, 100);
    CHECK_EQ(parse("ListStreams", "{"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("ListStreams", "[]"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("ListStreams", "\"x\""), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("ListStreams", "{} x"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("ListStreams", "{\"Limit\":\"5\"}"), LV_KERR_SERIALIZATION);
    CHECK_SLICE(message(), "Limit must be an integer, not a string");
    CHECK_EQ(parse("ListStreams", "{\"Limit\":5.9}"), LV_KERR_NONE); /* truncated, as AWS does */
    CHECK_EQ(req.limit, 5);
    CHECK_EQ(parse("ListStreams", "{\"Limit\":null,\"Unknown\":[1,2]}"), LV_KERR_NONE);
    CHECK_EQ(req.limit, 100);
    CHECK_EQ(parse("ListStreams", "{\"Limit\":1e300}"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("ListStreams", "{\"Limit\":99999999999999999999999}"), LV_KERR_SERIALIZATION);
    done();
}

static void test_create_stream(void)
{
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\"}"), LV_KERR_NONE);
    CHECK_SLICE(req.stream, "s1");
    CHECK_EQ(req.shard_count, LV_KINESIS_DEFAULT_SHARDS);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":2}"), LV_KERR_NONE);
    CHECK_EQ(req.shard_count, 2);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"StreamModeDetails\":{\"StreamMode\":\"ON_DEMAND\"}}"),
             LV_KERR_NONE);
    CHECK_EQ(req.shard_count, 4);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":3,"
                                   "\"StreamModeDetails\":{\"StreamMode\":\"PROVISIONED\"}}"),
             LV_KERR_NONE);
    CHECK_EQ(req.shard_count, 3);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":3,"
                                   "\"StreamModeDetails\":{\"StreamMode\":\"ON_DEMAND\"}}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"StreamModeDetails\":{\"StreamMode\":\"FAST\"}}"),
             LV_KERR_VALIDATION);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"StreamModeDetails\":\"ON_DEMAND\"}"),
             LV_KERR_SERIALIZATION);

    CHECK_EQ(parse("CreateStream", "{\"ShardCount\":1}"), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: "
                           "Member must not be null");
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":0}"), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: "
                           "Member must have value greater than or equal to 1");
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"a b\",\"ShardCount\":0}"), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "2 validation errors detected: Value 'a b' at 'streamName' failed to satisfy constraint: "
                           "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '0' at "
                           "'shardCount' failed to satisfy constraint: Member must have value greater than or equal "
                           "to 1");
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"\"}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":1025}"), LV_KERR_LIMIT_EXCEEDED);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":1024}"), LV_KERR_NONE);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":100001}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("CreateStream", "{\"StreamName\":5}"), LV_KERR_SERIALIZATION);
    /* CreateStream names its stream by name only. */
    CHECK_EQ(parse("CreateStream", "{\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/x\"}"),
             LV_KERR_VALIDATION);
    done();
}

static void test_stream_arn(void)
{
    CHECK_EQ(parse("DescribeStreamSummary", "{\"StreamARN\":\"arn:aws:kinesis:eu-west-1:000000000000:stream/s1\"}"),
             LV_KERR_NONE);
    CHECK_SLICE(req.stream, "s1");
    CHECK_SLICE(req.region, "eu-west-1");
    CHECK_EQ(parse("DeleteStream", "{\"StreamName\":\"s1\","
                                   "\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/s1\"}"),
             LV_KERR_NONE);
    CHECK_EQ(parse("DeleteStream", "{\"StreamName\":\"s2\","
                                   "\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/s1\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("DescribeStream", "{\"StreamARN\":\"arn:aws:s3:::bucket\"}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("DescribeStream", "{\"StreamARN\":\"\"}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("DescribeStream", "{}"), LV_KERR_VALIDATION);
    done();
}

static void test_describe_and_list(void)
{
    CHECK_EQ(parse("DescribeStream", "{\"StreamName\":\"s\"}"), LV_KERR_NONE);
    CHECK_EQ(req.limit, 100);
    CHECK(!req.has_start_shard);
    CHECK_EQ(parse("DescribeStream", "{\"StreamName\":\"s\",\"Limit\":3,"
                                     "\"ExclusiveStartShardId\":\"shardId-000000000001\"}"),
             LV_KERR_NONE);
    CHECK_EQ(req.limit, 3);
    CHECK(req.has_start_shard);
    CHECK_SLICE(req.start_shard, "shardId-000000000001");
    CHECK_EQ(parse("DescribeStream", "{\"StreamName\":\"s\",\"Limit\":10001}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("DescribeStream", "{\"StreamName\":\"s\",\"Limit\":0}"), LV_KERR_VALIDATION);

    CHECK_EQ(parse("ListStreams", "{\"Limit\":2,\"ExclusiveStartStreamName\":\"b\"}"), LV_KERR_NONE);
    CHECK_SLICE(req.start_stream, "b");
    CHECK_EQ(parse("ListStreams", "{\"NextToken\":\"bGV2ZWUvc3RyZWFtcy9jbGlja3M=\"}"), LV_KERR_NONE);
    CHECK_SLICE(req.start_stream, "clicks");
    CHECK_EQ(parse("ListStreams", "{\"NextToken\":\"garbage\"}"), LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("ListStreams", "{\"ExclusiveStartStreamName\":\"a/b\"}"), LV_KERR_VALIDATION);
    done();
}

static void test_list_shards(void)
{
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\"}"), LV_KERR_NONE);
    CHECK_EQ(req.limit, 1000);
    CHECK_SLICE(req.stream, "s");
    CHECK_EQ(parse("ListShards", "{}"), LV_KERR_INVALID_ARGUMENT);
    /* "levee/shards/1/clicks" */
    CHECK_EQ(parse("ListShards", "{\"NextToken\":\"bGV2ZWUvc2hhcmRzLzEvY2xpY2tz\",\"MaxResults\":2}"), LV_KERR_NONE);
    CHECK_SLICE(req.stream, "clicks");
    CHECK(req.has_start_shard);
    CHECK_SLICE(req.start_shard, "shardId-000000000001");
    CHECK_EQ(req.limit, 2);
    CHECK_EQ(parse("ListShards", "{\"NextToken\":\"bGV2ZWUvc2hhcmRzLzEvY2xpY2tz\",\"StreamName\":\"clicks\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("ListShards", "{\"NextToken\":\"bGV2ZWUvc3RyZWFtcy9jbGlja3M=\"}"), LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":\"AFTER_SHARD_ID\","
                                 "\"ShardId\":\"shardId-000000000002\"}}"),
             LV_KERR_NONE);
    CHECK_SLICE(req.start_shard, "shardId-000000000002");
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":\"AFTER_SHARD_ID\"}}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":\"AT_LATEST\"}}"), LV_KERR_NONE);
    CHECK(!req.has_start_shard);
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":\"SOME\"}}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"ShardFilter\":{}}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("ListShards", "{\"StreamName\":\"s\",\"MaxResults\":10001}"), LV_KERR_VALIDATION);
    done();
}

static void test_put_record(void)
{
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"pk\",\"Data\":\"aGVsbG8=\"}"),
             LV_KERR_NONE);
    CHECK_EQ(req.num_records, 1);
    CHECK_SLICE(req.records[0].partition_key, "pk");
    CHECK_SLICE(req.records[0].data, "hello");
    CHECK(!req.records[0].has_hash_key);
    /* Unpadded base64 is accepted; empty data too. */
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"pk\",\"Data\":\"aGVsbG8\"}"), LV_KERR_NONE);
    CHECK_SLICE(req.records[0].data, "hello");
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"pk\",\"Data\":\"\"}"), LV_KERR_NONE);
    CHECK_EQ(req.records[0].data.len, 0);
    CHECK(req.records[0].data.ptr != NULL);

    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"pk\",\"Data\":\"a$==\"}"),
             LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"pk\",\"Data\":17}"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"Data\":\"aGk=\"}"), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value null at 'partitionKey' failed to satisfy constraint: "
                           "Member must not be null");
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"\",\"Data\":\"aGk=\"}"),
             LV_KERR_VALIDATION);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"k\"}"), LV_KERR_VALIDATION);

    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"aGk=\","
                                "\"ExplicitHashKey\":\"340282366920938463463374607431768211455\","
                                "\"SequenceNumberForOrdering\":\"1\"}"),
             LV_KERR_NONE);
    CHECK(req.records[0].has_hash_key);
    CHECK(req.records[0].hash_key == ~(unsigned __int128)0);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"aGk=\","
                                "\"ExplicitHashKey\":\"340282366920938463463374607431768211456\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"aGk=\","
                                "\"ExplicitHashKey\":\"-1\"}"),
             LV_KERR_VALIDATION);
    CHECK_EQ(parse("PutRecord", "{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"aGk=\","
                                "\"SequenceNumberForOrdering\":\"01\"}"),
             LV_KERR_VALIDATION);
    done();
}

/* {"StreamName":"s","PartitionKey":KEY,"Data":base64 of n bytes} */
static char *put_body(const char *key, size_t n)
{
    lv_buf_t raw = LV_BUF_INIT, b = LV_BUF_INIT;
    lv_buf_reserve(&raw, n + 1);
    memset(lv_buf_tail(&raw), 'd', n);
    lv_buf_commit(&raw, n);
    lv_buf_printf(&b, "{\"StreamName\":\"s\",\"PartitionKey\":\"%s\",\"Data\":\"", key);
    lv_base64_encode(lv_buf_slice(&raw), &b);
    lv_buf_append(&b, "\"}", 3);
    lv_buf_free(&raw);
    return lv_buf_data(&b);
}

static void test_record_sizes(void)
{
    char key[600];
    memset(key, 'k', 256);
    key[256] = '\0';
    char *body = put_body(key, 1024 * 1024 - 256);
    CHECK_EQ(parse("PutRecord", body), LV_KERR_NONE); /* exactly 1 MiB with the key */
    CHECK_EQ(req.records[0].data.len, 1024 * 1024 - 256);
    free(body);
    body = put_body(key, 1024 * 1024 - 255);
    CHECK_EQ(parse("PutRecord", body), LV_KERR_INVALID_ARGUMENT);
    free(body);
    body = put_body("k", 1024 * 1024 + 1);
    CHECK_EQ(parse("PutRecord", body), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value of 1048577 bytes at 'data' failed to satisfy "
                           "constraint: Member must have length less than or equal to 1048576");
    free(body);

    key[256] = 'k';
    key[257] = '\0';
    body = put_body(key, 1);
    CHECK_EQ(parse("PutRecord", body), LV_KERR_VALIDATION);
    free(body);
    /* 200 characters, 400 bytes: fine for Kinesis, too long for levee. */
    for (int i = 0; i < 200; i++)
        memcpy(key + 2 * i, "\xc3\xa9", 2);
    key[400] = '\0';
    body = put_body(key, 1);
    CHECK_EQ(parse("PutRecord", body), LV_KERR_INVALID_ARGUMENT);
    free(body);
    done();
}

static void test_put_records(void)
{
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\",\"Records\":["
                                 "{\"PartitionKey\":\"a\",\"Data\":\"MQ==\"},"
                                 "{\"PartitionKey\":\"b\",\"Data\":\"MjI=\",\"ExplicitHashKey\":\"5\"},"
                                 "{\"PartitionKey\":\"c\",\"Data\":\"MzMz\"}]}"),
             LV_KERR_NONE);
    CHECK_EQ(req.num_records, 3);
    CHECK_SLICE(req.records[0].data, "1");
    CHECK_SLICE(req.records[1].data, "22");
    CHECK_SLICE(req.records[2].data, "333");
    CHECK_SLICE(req.records[2].partition_key, "c");
    CHECK(req.records[1].has_hash_key && req.records[1].hash_key == 5);

    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\",\"Records\":[]}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\"}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\",\"Records\":{}}"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\",\"Records\":[1]}"), LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"s\",\"Records\":[{\"PartitionKey\":\"a\",\"Data\":\"MQ==\"},"
                                 "{\"Data\":\"MQ==\"}]}"),
             LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value null at 'records.2.member.partitionKey' failed to "
                           "satisfy constraint: Member must not be null");
    /* A type error anywhere wins over constraint violations before it. */
    CHECK_EQ(parse("PutRecords", "{\"StreamName\":\"a b\",\"Records\":[{\"Data\":\"MQ==\"},"
                                 "{\"PartitionKey\":\"a\",\"Data\":\"@@\"}]}"),
             LV_KERR_SERIALIZATION);

    lv_buf_t b = LV_BUF_INIT;
    lv_buf_append_str(&b, "{\"StreamName\":\"s\",\"Records\":[");
    for (int i = 0; i < 501; i++)
        lv_buf_append_str(&b, i ? ",{\"PartitionKey\":\"a\",\"Data\":\"\"}" : "{\"PartitionKey\":\"a\",\"Data\":\"\"}");
    lv_buf_append(&b, "]}", 3);
    CHECK_EQ(parse("PutRecords", lv_buf_data(&b)), LV_KERR_VALIDATION);
    CHECK_SLICE(message(), "1 validation error detected: Value '[501 records]' at 'records' failed to satisfy "
                           "constraint: Member must have length less than or equal to 500");
    lv_buf_free(&b);

    /* Six records of 1,000,000 bytes: each fine, 6 MB together is not. */
    lv_buf_t raw = LV_BUF_INIT;
    lv_buf_reserve(&raw, 1000000);
    memset(lv_buf_tail(&raw), 'x', 1000000);
    lv_buf_commit(&raw, 1000000);
    lv_buf_append_str(&b, "{\"StreamName\":\"s\",\"Records\":[");
    for (int i = 0; i < 6; i++) {
        lv_buf_append_str(&b, i ? ",{\"PartitionKey\":\"a\",\"Data\":\"" : "{\"PartitionKey\":\"a\",\"Data\":\"");
        lv_base64_encode(lv_buf_slice(&raw), &b);
        lv_buf_append_str(&b, "\"}");
    }
    lv_buf_append(&b, "]}", 3);
    CHECK_EQ(parse("PutRecords", lv_buf_data(&b)), LV_KERR_INVALID_ARGUMENT);
    lv_buf_free(&b);
    lv_buf_free(&raw);

    /* Many bad records: all counted, the first ten listed. */
    lv_buf_append_str(&b, "{\"StreamName\":\"s\",\"Records\":[");
    for (int i = 0; i < 12; i++)
        lv_buf_append_str(&b, i ? ",{\"Data\":\"\"}" : "{\"Data\":\"\"}");
    lv_buf_append(&b, "]}", 3);
    CHECK_EQ(parse("PutRecords", lv_buf_data(&b)), LV_KERR_VALIDATION);
    CHECK(strncmp(lv_buf_data(&err.message), "12 validation errors detected: ", 31) == 0);
    CHECK(strstr(lv_buf_data(&err.message), "; and 2 more") != NULL);
    lv_buf_free(&b);
    done();
}

static void test_get_shard_iterator(void)
{
    char seq[LV_SEQNUM_MAX], body[512];
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000002\","
                                       "\"ShardIteratorType\":\"TRIM_HORIZON\"}"),
             LV_KERR_NONE);
    CHECK(req.shard_valid);
    CHECK_EQ(req.shard, 2);
    CHECK_EQ(req.iter_type, LV_KITER_TRIM_HORIZON);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shard-2\","
                                       "\"ShardIteratorType\":\"LATEST\"}"),
             LV_KERR_NONE);
    CHECK(!req.shard_valid); /* the caller answers ResourceNotFoundException */
    CHECK_SLICE(req.shard_id, "shard-2");

    lv_seqnum_format(2, 77, seq);
    snprintf(body, sizeof body, "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000002\","
                                "\"ShardIteratorType\":\"AFTER_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"}",
             seq);
    CHECK_EQ(parse("GetShardIterator", body), LV_KERR_NONE);
    CHECK_EQ(req.iter_type, LV_KITER_AFTER_SEQUENCE_NUMBER);
    CHECK_EQ(req.seq, 77);
    /* A number of another shard. */
    snprintf(body, sizeof body, "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000001\","
                                "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"}",
             seq);
    CHECK_EQ(parse("GetShardIterator", body), LV_KERR_INVALID_ARGUMENT);
    CHECK(strstr(lv_buf_data(&err.message), "It encodes shardId-000000000002") != NULL);
    /* A decimal number that levee never made. */
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000001\","
                                       "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\","
                                       "\"StartingSequenceNumber\":\"12345\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000001\","
                                       "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\","
                                       "\"StartingSequenceNumber\":\"12x\"}"),
             LV_KERR_VALIDATION);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000001\","
                                       "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000001\","
                                       "\"ShardIteratorType\":\"LATEST\",\"StartingSequenceNumber\":\"1\"}"),
             LV_KERR_INVALID_ARGUMENT);

    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":1700000000.25}"),
             LV_KERR_NONE);
    CHECK_EQ(req.iter_type, LV_KITER_AT_TIMESTAMP);
    CHECK_EQ(req.timestamp_ms, 1700000000250ll);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":-5}"),
             LV_KERR_NONE);
    CHECK_EQ(req.timestamp_ms, 0);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":1e300}"),
             LV_KERR_NONE);
    CHECK(req.timestamp_ms > 1000000000000000ull);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"AT_TIMESTAMP\"}"),
             LV_KERR_INVALID_ARGUMENT);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"AT_TIMESTAMP\",\"Timestamp\":\"2024-01-01\"}"),
             LV_KERR_SERIALIZATION);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                       "\"ShardIteratorType\":\"OLDEST\"}"),
             LV_KERR_VALIDATION);
    CHECK_EQ(parse("GetShardIterator", "{\"StreamName\":\"s\"}"), LV_KERR_VALIDATION);
    CHECK(strncmp(lv_buf_data(&err.message), "2 validation errors detected", 28) == 0);
    done();
}

static void test_get_records(void)
{
    CHECK_EQ(parse("GetRecords", "{\"ShardIterator\":\"AAAA\"}"), LV_KERR_NONE);
    CHECK_SLICE(req.shard_iterator, "AAAA");
    CHECK_EQ(req.limit, 10000);
    CHECK_EQ(req.stream.len, 0);
    CHECK_EQ(parse("GetRecords", "{\"ShardIterator\":\"AAAA\",\"Limit\":10,"
                                 "\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/s\"}"),
             LV_KERR_NONE);
    CHECK_EQ(req.limit, 10);
    CHECK_SLICE(req.stream, "s");
    CHECK_EQ(parse("GetRecords", "{}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("GetRecords", "{\"ShardIterator\":\"\"}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("GetRecords", "{\"ShardIterator\":\"AAAA\",\"Limit\":0}"), LV_KERR_VALIDATION);
    CHECK_EQ(parse("GetRecords", "{\"ShardIterator\":\"AAAA\",\"Limit\":10001}"), LV_KERR_VALIDATION);
    char body[700];
    memset(body, 'A', sizeof body);
    memcpy(body, "{\"ShardIterator\":\"", 18);
    memcpy(body + 18 + 513, "\"}", 3);
    CHECK_EQ(parse("GetRecords", body), LV_KERR_VALIDATION); /* 513 characters */
    done();
}

int main(void)
{
    LV_RUN(test_targets);
    LV_RUN(test_bodies);
    LV_RUN(test_create_stream);
    LV_RUN(test_stream_arn);
    LV_RUN(test_describe_and_list);
    LV_RUN(test_list_shards);
    LV_RUN(test_put_record);
    LV_RUN(test_record_sizes);
    LV_RUN(test_put_records);
    LV_RUN(test_get_shard_iterator);
    LV_RUN(test_get_records);
    done();
    return lv_test_summary();
}
