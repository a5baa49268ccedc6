/* kinesis_format_test.c: the Kinesis API's text forms (hash keys, shard
 * ids, ARNs, timestamps, NextTokens, the error body). */
#include <jansson.h>
#include <stdlib.h>

#include "stream/kinesis_format.h"
#include "test.h"

static const unsigned __int128 U128_MAX = ~(unsigned __int128)0;

static void test_u128_round_trip(void)
{
    char out[LV_KINESIS_U128_MAX];
    unsigned __int128 v;
    CHECK_EQ(lv_kinesis_u128_format(0, out), 1);
    CHECK_STR(out, "0");
    lv_kinesis_u128_format((unsigned __int128)1 << 64, out);
    CHECK_STR(out, "18446744073709551616");
    CHECK_EQ(lv_kinesis_u128_format(U128_MAX, out), 39);
    CHECK_STR(out, "340282366920938463463374607431768211455");
    CHECK_EQ(lv_kinesis_u128_parse(lv_slice_cstr(out), &v), 0);
    CHECK(v == U128_MAX);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("0"), &v), 0);
    CHECK(v == 0);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("170141183460469231731687303715884105728"), &v), 0);
    CHECK(v == (unsigned __int128)1 << 127);
}

static void test_u128_rejects(void)
{
    unsigned __int128 v = 7;
    /* Matches the pattern, but is 2^128. */
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("340282366920938463463374607431768211456"), &v), 1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("999999999999999999999999999999999999999"), &v), 1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("1000000000000000000000000000000000000000"), &v), -1); /* 40 digits */
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT(""), &v), -1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("01"), &v), -1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("-1"), &v), -1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT("12a"), &v), -1);
    CHECK_EQ(lv_kinesis_u128_parse(LV_SLICE_LIT(" 1"), &v), -1);
    CHECK(v == 7); /* untouched on failure */
}

static void test_seq_pattern(void)
{
    CHECK(lv_kinesis_seq_pattern(LV_SLICE_LIT("0")));
    CHECK(lv_kinesis_seq_pattern(LV_SLICE_LIT("49590338271490256608559692538361571095921575989136588898")));
    CHECK(!lv_kinesis_seq_pattern(LV_SLICE_LIT("")));
    CHECK(!lv_kinesis_seq_pattern(LV_SLICE_LIT("00")));
    CHECK(!lv_kinesis_seq_pattern(LV_SLICE_LIT("1x")));
    char long_num[131];
    memset(long_num, '9', 129);
    long_num[129] = '\0';
    CHECK(lv_kinesis_seq_pattern(lv_slice_cstr(long_num)));
    long_num[129] = '9';
    long_num[130] = '\0';
    CHECK(!lv_kinesis_seq_pattern(lv_slice_cstr(long_num)));
}

static void test_shard_ids(void)
{
    char id[LV_KINESIS_SHARD_ID_MAX];
    unsigned shard = 99;
    CHECK_EQ(lv_kinesis_shard_id(0, id), 20);
    CHECK_STR(id, "shardId-000000000000");
    lv_kinesis_shard_id(1023, id);
    CHECK_STR(id, "shardId-000000001023");
    lv_kinesis_shard_id(0xffffffffu, id);
    CHECK_STR(id, "shardId-004294967295");
    CHECK_EQ(lv_kinesis_parse_shard_id(lv_slice_cstr(id), &shard), 0);
    CHECK(shard == 0xffffffffu);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-000000000007"), &shard), 0);
    CHECK_EQ(shard, 7);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-3"), &shard), 0); /* lenient, as kinesalite */
    CHECK_EQ(shard, 3);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-"), &shard), -1);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-0000000000001"), &shard), -1);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-004294967296"), &shard), -1);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardid-000000000001"), &shard), -1);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("shardId-00000000000x"), &shard), -1);
    CHECK_EQ(lv_kinesis_parse_shard_id(LV_SLICE_LIT("7"), &shard), -1);
}

static void test_stream_names(void)
{
    CHECK(lv_kinesis_valid_stream_name(LV_SLICE_LIT("clicks")));
    CHECK(lv_kinesis_valid_stream_name(LV_SLICE_LIT("a.b-c_D9")));
    CHECK(!lv_kinesis_valid_stream_name(LV_SLICE_LIT("")));
    CHECK(!lv_kinesis_valid_stream_name(LV_SLICE_LIT("a/b")));
    CHECK(!lv_kinesis_valid_stream_name(LV_SLICE_LIT("a b")));
    CHECK(!lv_kinesis_valid_stream_name(lv_slice("a\0b", 3)));
    char name[130];
    memset(name, 'x', sizeof name);
    CHECK(lv_kinesis_valid_stream_name(lv_slice(name, 128)));
    CHECK(!lv_kinesis_valid_stream_name(lv_slice(name, 129)));
}

static void test_arns(void)
{
    lv_slice_t region, name;
    CHECK_EQ(lv_kinesis_parse_arn(LV_SLICE_LIT("arn:aws:kinesis:eu-west-1:123456789012:stream/clicks"), &region,
                                  &name), 0);
    CHECK_SLICE(region, "eu-west-1");
    CHECK_SLICE(name, "clicks");
    CHECK_EQ(lv_kinesis_parse_arn(LV_SLICE_LIT("arn:aws-cn:kinesis::000000000000:stream/a.b"), &region, &name), 0);
    CHECK_SLICE(region, "");
    CHECK_SLICE(name, "a.b");
    static const char *const bad[] = {
        "",
        "arn",
        "arn:aws:kinesis:us-east-1:000000000000",
        "arn:aws:kinesis:us-east-1:000000000000:",
        "arn:aws:kinesis:us-east-1:000000000000:stream/",
        "arn:aws:kinesis:us-east-1:000000000000:table/x",
        "arn:aws:sqs:us-east-1:000000000000:stream/x",
        "arn:gcp:kinesis:us-east-1:000000000000:stream/x",
        "arn:aws:kinesis:us-east-1:00000000000:stream/x",
        "arn:aws:kinesis:us-east-1:0000000000001:stream/x",
        "arn:aws:kinesis:us-east-1:00000000000a:stream/x",
        "arn:aws:kinesis:US-EAST-1:000000000000:stream/x",
        "arn:aws:kinesis:us-east-1:000000000000:stream/x y",
        "arn:aws:kinesis:us-east-1:000000000000:stream/x:y",
        "xrn:aws:kinesis:us-east-1:000000000000:stream/x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lv_kinesis_parse_arn(lv_slice_cstr(bad[i]), &region, &name) == 0)
            LV_FAIL_("accepted %s", bad[i]);

    lv_buf_t b = LV_BUF_INIT;
    lv_kinesis_arn(&b, lv_slice(NULL, 0), LV_SLICE_LIT("s1"));
    CHECK_SLICE(lv_buf_slice(&b), "arn:aws:kinesis:us-east-1:000000000000:stream/s1");
    lv_buf_clear(&b);
    lv_kinesis_arn(&b, LV_SLICE_LIT("ap-south-2"), LV_SLICE_LIT("s1"));
    CHECK_SLICE(lv_buf_slice(&b), "arn:aws:kinesis:ap-south-2:000000000000:stream/s1");
    lv_buf_free(&b);
}

static void test_timestamps(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_kinesis_timestamp(&b, 1700000000123ull);
    CHECK_SLICE(lv_buf_slice(&b), "1700000000.123");
    lv_buf_clear(&b);
    lv_kinesis_timestamp(&b, 5);
    CHECK_SLICE(lv_buf_slice(&b), "0.005");
    lv_buf_clear(&b);
    lv_kinesis_timestamp(&b, 0);
    CHECK_SLICE(lv_buf_slice(&b), "0.000");
    lv_buf_free(&b);
}

static void test_utf8_chars(void)
{
    CHECK_EQ(lv_kinesis_utf8_chars(LV_SLICE_LIT("")), 0);
    CHECK_EQ(lv_kinesis_utf8_chars(LV_SLICE_LIT("abc")), 3);
    CHECK_EQ(lv_kinesis_utf8_chars(LV_SLICE_LIT("\xc3\xa9t\xc3\xa9")), 3);        /* été */
    CHECK_EQ(lv_kinesis_utf8_chars(LV_SLICE_LIT("\xf0\x9f\x98\x80")), 1);         /* one emoji */
}

static void test_tokens(void)
{
    lv_buf_t b = LV_BUF_INIT;
    char name[128];
    size_t len = 0;
    unsigned shard = 0;
    lv_kinesis_streams_token(&b, LV_SLICE_LIT("orders.v2"));
    CHECK_EQ(lv_kinesis_parse_streams_token(lv_buf_slice(&b), name, &len), 0);
    CHECK_SLICE(lv_slice(name, len), "orders.v2");
    /* A streams token is not a shards token. */
    CHECK_EQ(lv_kinesis_parse_shards_token(lv_buf_slice(&b), name, &len, &shard), -1);

    lv_buf_clear(&b);
    lv_kinesis_shards_token(&b, LV_SLICE_LIT("clicks"), 41);
    CHECK_EQ(lv_kinesis_parse_shards_token(lv_buf_slice(&b), name, &len, &shard), 0);
    CHECK_SLICE(lv_slice(name, len), "clicks");
    CHECK_EQ(shard, 41);
    CHECK_EQ(lv_kinesis_parse_streams_token(lv_buf_slice(&b), name, &len), -1);
    lv_buf_free(&b);

    static const char *const bad[] = {
        "", "!!!!", "bGV2ZWU=", /* "levee" */
        "bGV2ZWUvc3RyZWFtcy8=", /* "levee/streams/" with no name */
        "bGV2ZWUvc2hhcmRzLzAxL3g=", /* "levee/shards/01/x": leading zero */
        "bGV2ZWUvc2hhcmRzLzQyOTQ5NjcyOTYveA==", /* "levee/shards/4294967296/x" */
        "bGV2ZWUvc2hhcmRzLzEveCB5", /* "levee/shards/1/x y" */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (lv_kinesis_parse_streams_token(lv_slice_cstr(bad[i]), name, &len) == 0)
            LV_FAIL_("streams token accepted %s", bad[i]);
        if (lv_kinesis_parse_shards_token(lv_slice_cstr(bad[i]), name, &len, &shard) == 0)
            LV_FAIL_("shards token accepted %s", bad[i]);
    }
}

static void test_error_json(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_kinesis_error_json(&b, LV_KERR_RESOURCE_NOT_FOUND, LV_SLICE_LIT("Stream \"x\"\n not found."));
    json_t *doc = json_loadb(lv_buf_data(&b), lv_buf_len(&b), 0, NULL);
    CHECK(doc != NULL);
    CHECK_STR(json_string_value(json_object_get(doc, "__type")), "ResourceNotFoundException");
    CHECK_STR(json_string_value(json_object_get(doc, "message")), "Stream \"x\"\n not found.");
    json_decref(doc);
    lv_buf_free(&b);

    CHECK_EQ(lv_kinesis_err_status(LV_KERR_VALIDATION), 400);
    CHECK_EQ(lv_kinesis_err_status(LV_KERR_THROUGHPUT_EXCEEDED), 400);
    CHECK_EQ(lv_kinesis_err_status(LV_KERR_INTERNAL_FAILURE), 500);
    CHECK_STR(lv_kinesis_err_name(LV_KERR_NONE), "ok");
    CHECK_STR(lv_kinesis_err_name(LV_KERR_EXPIRED_ITERATOR), "ExpiredIteratorException");
    CHECK_STR(lv_kinesis_err_name(LV_KERR_THROUGHPUT_EXCEEDED), "ProvisionedThroughputExceededException");
    CHECK_STR(lv_kinesis_err_name((lv_kinesis_err_t)999), "InternalFailure");
}

int main(void)
{
    LV_RUN(test_u128_round_trip);
    LV_RUN(test_u128_rejects);
    LV_RUN(test_seq_pattern);
    LV_RUN(test_shard_ids);
    LV_RUN(test_stream_names);
    LV_RUN(test_arns);
    LV_RUN(test_timestamps);
    LV_RUN(test_utf8_chars);
    LV_RUN(test_tokens);
    LV_RUN(test_error_json);
    return lv_test_summary();
}
