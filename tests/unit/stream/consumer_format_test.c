/* consumer_format_test.c: the Kinesis event, the checkpoint file and the
 * dead-letter line of stream consumers (stream/consumer_format.h).
 *
 * Events and dead-letter lines are parsed back with jansson and every field
 * is compared with what went in. Checkpoints are round-tripped, then every
 * truncation, every single-bit flip and every byte replaced by each of a
 * few values must be refused (the format promises that any change is
 * caught), and the canonical-form rules are checked one by one. */
#include "stream/consumer_format.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/crc32c.h"
#include "stream/seqnum.h"
#include "test.h"

static json_t *parse(const lv_buf_t *b)
{
    json_error_t err;
    json_t *v = json_loadb(lv_buf_data(b), lv_buf_len(b), 0, &err);
    if (!v)
        fprintf(stderr, "  json: %s at %d\n", err.text, err.position);
    return v;
}

static const char *str_at(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* ---- event ---- */

static void test_shard_id(void)
{
    char id[LV_SHARD_ID_MAX];
    CHECK_EQ(lv_consumer_shard_id(0, id), 20);
    CHECK_STR(id, "shardId-000000000000");
    lv_consumer_shard_id(1023, id);
    CHECK_STR(id, "shardId-000000001023");
}

static void test_event_fields(void)
{
    static const char binary[] = {0, 1, 2, (char)0xff, (char)0xfe, '"', '\\', '\n'};
    lv_stream_record_t recs[] = {
        {.seq = 1, .arrival_ms = 1545084650987ull, .partition_key = LV_SLICE_LIT("user-1"),
         .data = LV_SLICE_LIT("Hello, this is a test.")},
        {.seq = 2, .arrival_ms = 1545084651000ull, .partition_key = LV_SLICE_LIT("caf\xc3\xa9 \"q\"\t"),
         .data = {binary, sizeof binary}},
        {.seq = 18446744073709551615ull, .arrival_ms = 5, .partition_key = LV_SLICE_LIT("bad\xff"),
         .data = {"", 0}},
    };
    lv_consumer_source_t src = {LV_SLICE_LIT("clicks.v2"), 7};
    lv_buf_t b = LV_BUF_INIT;
    lv_consumer_event(&b, src, recs, 3);
    json_t *root = parse(&b);
    CHECK(root);
    CHECK_EQ(json_object_size(root), 1);
    json_t *arr = json_object_get(root, "Records");
    CHECK(json_is_array(arr));
    CHECK_EQ(json_array_size(arr), 3);
    static const char *const keys[] = {"user-1", "caf\xc3\xa9 \"q\"\t", "bad\xef\xbf\xbd"};
    for (size_t i = 0; i < 3; i++) {
        json_t *r = json_array_get(arr, i);
        CHECK_EQ(json_object_size(r), 8);
        CHECK_STR(str_at(r, "eventSource"), "aws:kinesis");
        CHECK_STR(str_at(r, "eventVersion"), "1.0");
        CHECK_STR(str_at(r, "eventName"), "aws:kinesis:record");
        CHECK_STR(str_at(r, "invokeIdentityArn"), "arn:aws:iam::000000000000:role/levee");
        CHECK_STR(str_at(r, "awsRegion"), "us-east-1");
        CHECK_STR(str_at(r, "eventSourceARN"), "arn:aws:kinesis:us-east-1:000000000000:stream/clicks.v2");
        char seq[LV_SEQNUM_MAX], id[100];
        lv_seqnum_format(7, recs[i].seq, seq);
        snprintf(id, sizeof id, "shardId-000000000007:%s", seq);
        CHECK_STR(str_at(r, "eventID"), id);
        json_t *k = json_object_get(r, "kinesis");
        CHECK_EQ(json_object_size(k), 5);
        CHECK_STR(str_at(k, "kinesisSchemaVersion"), "1.0");
        CHECK_STR(str_at(k, "partitionKey"), keys[i]);
        CHECK_STR(str_at(k, "sequenceNumber"), seq);
        unsigned shard;
        uint64_t s;
        CHECK_EQ(lv_seqnum_parse(lv_slice_cstr(str_at(k, "sequenceNumber")), &shard, &s), 0);
        CHECK_EQ(shard, 7);
        CHECK(s == recs[i].seq);
        lv_buf_t data = LV_BUF_INIT;
        CHECK_EQ(lv_base64_decode(lv_slice_cstr(str_at(k, "data")), &data, true), 0);
        CHECK_EQ(lv_buf_len(&data), recs[i].data.len);
        CHECK(recs[i].data.len == 0 || memcmp(lv_buf_data(&data), recs[i].data.ptr, recs[i].data.len) == 0);
        lv_buf_free(&data);
        json_t *t = json_object_get(k, "approximateArrivalTimestamp");
        CHECK(json_is_real(t));
        CHECK_EQ((long long)(json_real_value(t) * 1000.0 + 0.5), (long long)recs[i].arrival_ms);
    }
    /* The fraction is always written with three digits. */
    CHECK(strstr(lv_buf_data(&b), "\"approximateArrivalTimestamp\":1545084651.000}"));
    CHECK(strstr(lv_buf_data(&b), "\"approximateArrivalTimestamp\":0.005}"));
    json_decref(root);
    lv_buf_free(&b);
}

static void test_event_empty(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_consumer_event(&b, (lv_consumer_source_t){LV_SLICE_LIT("s"), 0}, NULL, 0);
    CHECK_SLICE(lv_buf_slice(&b), "{\"Records\":[]}");
    CHECK_EQ(lv_buf_len(&b), LV_CONSUMER_EVENT_ENVELOPE);
    lv_buf_free(&b);
}

/* The per-record bound holds for the worst keys (every byte escaped), is
 * not wildly loose for ordinary ones, and a batch filled by it stays under
 * the Lambda payload limit. */
static void test_event_size_bound(void)
{
    char key[256];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (char)(i % 3 == 0 ? 0x01 : i % 3 == 1 ? 0xff : '"');
    static char data[1000];
    lv_consumer_source_t src = {LV_SLICE_LIT("a-stream-with-a-long-name_0123456789"), 1023};
    lv_stream_record_t recs[2] = {
        {.seq = UINT64_MAX, .arrival_ms = UINT64_MAX, .partition_key = {key, sizeof key},
         .data = {data, sizeof data}},
        {.seq = 1, .arrival_ms = 1, .partition_key = LV_SLICE_LIT("k"), .data = {data, 10}},
    };
    for (size_t i = 0; i < 2; i++) {
        lv_buf_t b = LV_BUF_INIT;
        lv_consumer_event(&b, src, &recs[i], 1);
        size_t bound = LV_CONSUMER_EVENT_ENVELOPE +
                       lv_consumer_event_record_max(src, recs[i].partition_key, recs[i].data.len);
        CHECK_INT(lv_buf_len(&b), <=, bound);
        CHECK_INT(bound - lv_buf_len(&b), <, 200);
        lv_buf_free(&b);
    }
    /* Fill a batch the way the consumer does. */
    static char big[LV_STREAM_MAX_DATA - 256];
    lv_stream_record_t r = {.seq = 12345, .arrival_ms = 1763802000123ull, .partition_key = {key, sizeof key},
                            .data = {big, sizeof big}};
    lv_stream_record_t batch[16];
    size_t n = 0, total = LV_CONSUMER_EVENT_ENVELOPE;
    for (;;) {
        size_t add = lv_consumer_event_record_max(src, r.partition_key, r.data.len);
        if (n && total + add > LV_CONSUMER_MAX_EVENT)
            break;
        total += add;
        batch[n++] = r;
    }
    CHECK_INT(n, >=, 3);
    lv_buf_t b = LV_BUF_INIT;
    lv_consumer_event(&b, src, batch, n);
    CHECK_INT(lv_buf_len(&b), <=, LV_CONSUMER_MAX_EVENT);
    json_t *root = parse(&b);
    CHECK(root);
    CHECK_EQ(json_array_size(json_object_get(root, "Records")), n);
    json_decref(root);
    lv_buf_free(&b);
}

/* ---- checkpoints ---- */

static lv_checkpoint_t sample_cp(void)
{
    lv_checkpoint_t cp = {.stream_id = 0x5f0c2a9e11d4b7c3ull, .shard = 3, .next_seq = 1042,
                          .last_arrival_ms = 1763802000123ull};
    strcpy(cp.stream, "clicks");
    return cp;
}

static void test_checkpoint_roundtrip(void)
{
    lv_checkpoint_t cp = sample_cp();
    lv_buf_t b = LV_BUF_INIT;
    lv_checkpoint_encode(&b, &cp);
    static const char body[] = "levee-consumer-checkpoint 1\nstream clicks\nstream-id 5f0c2a9e11d4b7c3\nshard 3\n"
                               "next-seq 1042\nlast-arrival-ms 1763802000123\n";
    uint32_t crc = lv_crc32c(0, body, sizeof body - 1);
    char expect[400];
    snprintf(expect, sizeof expect, "%scrc32c %08x\n", body, crc);
    CHECK_SLICE(lv_buf_slice(&b), expect);
    lv_checkpoint_t back;
    const char *why = lv_checkpoint_decode(lv_buf_data(&b), lv_buf_len(&b), &back);
    CHECK(why == NULL);
    CHECK_STR(back.stream, "clicks");
    CHECK(back.stream_id == cp.stream_id);
    CHECK_EQ(back.shard, 3);
    CHECK(back.next_seq == 1042);
    CHECK(back.last_arrival_ms == cp.last_arrival_ms);
    lv_buf_free(&b);

    /* The extremes: longest name, largest numbers, zero id and arrival. */
    memset(cp.stream, 'x', LV_STREAM_MAX_NAME);
    cp.stream[LV_STREAM_MAX_NAME] = '\0';
    cp.stream_id = UINT64_MAX;
    cp.shard = LV_STREAM_MAX_SHARDS - 1;
    cp.next_seq = UINT64_MAX;
    cp.last_arrival_ms = UINT64_MAX;
    lv_checkpoint_encode(&b, &cp);
    CHECK_INT(lv_buf_len(&b), <=, LV_CHECKPOINT_MAX_BYTES);
    CHECK(lv_checkpoint_decode(lv_buf_data(&b), lv_buf_len(&b), &back) == NULL);
    CHECK(memcmp(&back, &cp, sizeof cp) == 0);
    lv_buf_free(&b);
    cp.stream_id = 0;
    cp.last_arrival_ms = 0;
    cp.next_seq = 1;
    cp.shard = 0;
    lv_checkpoint_encode(&b, &cp);
    CHECK(lv_checkpoint_decode(lv_buf_data(&b), lv_buf_len(&b), &back) == NULL);
    CHECK(back.stream_id == 0 && back.last_arrival_ms == 0 && back.next_seq == 1 && back.shard == 0);
    lv_buf_free(&b);
}

static void test_checkpoint_every_damage(void)
{
    lv_checkpoint_t cp = sample_cp(), back;
    lv_buf_t b = LV_BUF_INIT;
    lv_checkpoint_encode(&b, &cp);
    size_t len = lv_buf_len(&b);
    char *copy = malloc(len);
    /* Every truncation, copied to its own allocation so ASan sees any read
     * past the end. */
    for (size_t cut = 0; cut < len; cut++) {
        char *t = malloc(cut ? cut : 1);
        memcpy(t, lv_buf_data(&b), cut);
        const char *why = lv_checkpoint_decode(t, cut, &back);
        free(t);
        if (!why)
            LV_FAIL_("truncation to %zu bytes accepted", cut);
    }
    /* Every bit of every byte. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, lv_buf_data(&b), len);
            copy[i] ^= (char)(1 << bit);
            if (!lv_checkpoint_decode(copy, len, &back))
                LV_FAIL_("flip of bit %d of byte %zu accepted", bit, i);
        }
    }
    /* Every byte replaced by a few telling values. */
    static const char subst[] = {'0', '1', '9', 'a', 'F', ' ', '\n', '\0', (char)0x80};
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(copy, lv_buf_data(&b), len);
            if (copy[i] == subst[k])
                continue;
            copy[i] = subst[k];
            if (!lv_checkpoint_decode(copy, len, &back))
                LV_FAIL_("byte %zu replaced by 0x%02x accepted", i, (unsigned char)subst[k]);
        }
    }
    /* Extra bytes after a valid file. */
    char *longer = malloc(len + 1);
    memcpy(longer, lv_buf_data(&b), len);
    longer[len] = '\n';
    CHECK(lv_checkpoint_decode(longer, len + 1, &back) != NULL);
    free(longer);
    free(copy);
    lv_buf_free(&b);
}

/* Builds a file from its lines with a correct CRC, so the parse rules are
 * tested on their own. */
static const char *decode_lines(const char *body, lv_checkpoint_t *cp)
{
    static char file[1024];
    size_t n = strlen(body);
    snprintf(file, sizeof file, "%scrc32c %08x\n", body, lv_crc32c(0, body, n));
    return lv_checkpoint_decode(file, strlen(file), cp);
}

static void test_checkpoint_canonical(void)
{
    lv_checkpoint_t cp;
#define HEAD "levee-consumer-checkpoint 1\nstream s\nstream-id 0000000000000001\n"
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 1\nlast-arrival-ms 0\n", &cp) == NULL);
    CHECK(decode_lines(HEAD "shard 00\nnext-seq 1\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 1024\nnext-seq 1\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 1023\nnext-seq 1\nlast-arrival-ms 0\n", &cp) == NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 0\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 01\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 18446744073709551615\nlast-arrival-ms 0\n", &cp) == NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 18446744073709551616\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 1\nlast-arrival-ms -1\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq +1\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 1 \nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 1\r\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard  0\nnext-seq 1\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "next-seq 1\nshard 0\nlast-arrival-ms 0\n", &cp) != NULL);
    CHECK(decode_lines(HEAD "shard 0\nnext-seq 1\n", &cp) != NULL);
#undef HEAD
#define TAIL "shard 0\nnext-seq 1\nlast-arrival-ms 0\n"
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream s\nstream-id 000000000000000A\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream s\nstream-id 000000000000000a\n" TAIL, &cp) == NULL);
    CHECK(cp.stream_id == 10);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream s\nstream-id 00000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream s\nstream-id 00000000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 2\nstream s\nstream-id 000000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream \nstream-id 000000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream a/b\nstream-id 000000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream a b\nstream-id 000000000000000a\n" TAIL, &cp) != NULL);
    CHECK(decode_lines("levee-consumer-checkpoint 1\nstream a.b-c_D9\nstream-id 000000000000000a\n" TAIL, &cp) ==
          NULL);
    CHECK_STR(cp.stream, "a.b-c_D9");
    char body[600];
    char name[LV_STREAM_MAX_NAME + 2];
    memset(name, 'n', sizeof name - 1);
    name[LV_STREAM_MAX_NAME + 1] = '\0';
    snprintf(body, sizeof body, "levee-consumer-checkpoint 1\nstream %s\nstream-id 0000000000000001\n" TAIL, name);
    CHECK(decode_lines(body, &cp) != NULL);
    name[LV_STREAM_MAX_NAME] = '\0';
    snprintf(body, sizeof body, "levee-consumer-checkpoint 1\nstream %s\nstream-id 0000000000000001\n" TAIL, name);
    CHECK(decode_lines(body, &cp) == NULL);
#undef TAIL
    /* Upper-case CRC digits are not the canonical form. */
    const char *good = "levee-consumer-checkpoint 1\nstream s\nstream-id 0000000000000001\nshard 0\nnext-seq 1\n"
                       "last-arrival-ms 0\n";
    char file[400];
    snprintf(file, sizeof file, "%scrc32c %08X\n", good, lv_crc32c(0, good, strlen(good)));
    uint32_t crc = lv_crc32c(0, good, strlen(good));
    char lower[9];
    snprintf(lower, sizeof lower, "%08x", crc);
    bool has_letter = strpbrk(lower, "abcdef") != NULL;
    CHECK(!has_letter || lv_checkpoint_decode(file, strlen(file), &cp) != NULL);
    /* Too long, whatever it holds. */
    static char huge[LV_CHECKPOINT_MAX_BYTES + 1];
    CHECK(lv_checkpoint_decode(huge, sizeof huge, &cp) != NULL);
    CHECK(lv_checkpoint_decode("", 0, &cp) != NULL);
}

/* ---- dead letters ---- */

static void test_dead_letter_line(void)
{
    lv_stream_record_t recs[] = {
        {.seq = 10, .arrival_ms = 1763802000123ull, .partition_key = LV_SLICE_LIT("k1"), .data = LV_SLICE_LIT("a")},
        {.seq = 11, .arrival_ms = 1763802001000ull, .partition_key = LV_SLICE_LIT("k\xff"),
         .data = LV_SLICE_LIT("line\nbreak")},
    };
    lv_consumer_dead_letter_t dl = {
        .consumer = LV_SLICE_LIT("clicks-agg"),
        .function = LV_SLICE_LIT("agg"),
        .src = {LV_SLICE_LIT("clicks"), 2},
        .records = recs,
        .n = 2,
        .attempts = 4,
        .error_type = LV_SLICE_LIT("Runtime.ExitError"),
        .error = LV_SLICE_LIT("{\n  \"errorMessage\": \"boom\",\n  \"errorType\": \"MyError\"\n}"),
        .now_ms = 1763802002500ull,
    };
    lv_buf_t b = LV_BUF_INIT;
    lv_consumer_dead_letter_line(&b, &dl);
    /* One line: a newline only at the end. */
    CHECK(lv_buf_len(&b) > 1);
    CHECK_EQ(lv_buf_data(&b)[lv_buf_len(&b) - 1], '\n');
    CHECK(memchr(lv_buf_data(&b), '\n', lv_buf_len(&b) - 1) == NULL);
    json_t *root = parse(&b);
    CHECK(root);
    char first[LV_SEQNUM_MAX], last[LV_SEQNUM_MAX];
    lv_seqnum_format(2, 10, first);
    lv_seqnum_format(2, 11, last);
    CHECK_STR(str_at(root, "version"), "1.0");
    CHECK_STR(str_at(root, "timestamp"), "2025-11-22T09:00:02.500Z");
    CHECK_STR(str_at(root, "consumer"), "clicks-agg");
    CHECK_STR(str_at(root, "stream"), "clicks");
    CHECK_STR(str_at(root, "shardId"), "shardId-000000000002");
    CHECK_STR(str_at(root, "firstSequenceNumber"), first);
    CHECK_STR(str_at(root, "lastSequenceNumber"), last);
    CHECK_STR(str_at(root, "errorType"), "Runtime.ExitError");
    json_t *err = json_object_get(root, "error");
    CHECK_STR(str_at(err, "errorMessage"), "boom");
    CHECK_STR(str_at(err, "errorType"), "MyError");
    json_t *rc = json_object_get(root, "requestContext");
    CHECK_STR(str_at(rc, "functionArn"), "arn:aws:lambda:us-east-1:000000000000:function:agg:$LATEST");
    CHECK_STR(str_at(rc, "condition"), "RetryAttemptsExhausted");
    CHECK_EQ(json_integer_value(json_object_get(rc, "approximateInvokeCount")), 4);
    json_t *bi = json_object_get(root, "KinesisBatchInfo");
    CHECK_STR(str_at(bi, "shardId"), "shardId-000000000002");
    CHECK_STR(str_at(bi, "startSequenceNumber"), first);
    CHECK_STR(str_at(bi, "endSequenceNumber"), last);
    CHECK_STR(str_at(bi, "approximateArrivalOfFirstRecord"), "2025-11-22T09:00:00.123Z");
    CHECK_STR(str_at(bi, "approximateArrivalOfLastRecord"), "2025-11-22T09:00:01.000Z");
    CHECK_EQ(json_integer_value(json_object_get(bi, "batchSize")), 2);
    CHECK_STR(str_at(bi, "streamArn"), "arn:aws:kinesis:us-east-1:000000000000:stream/clicks");
    json_t *rs = json_object_get(root, "records");
    CHECK_EQ(json_array_size(rs), 2);
    CHECK_STR(str_at(json_array_get(rs, 0), "sequenceNumber"), first);
    CHECK_STR(str_at(json_array_get(rs, 0), "partitionKey"), "k1");
    CHECK_STR(str_at(json_array_get(rs, 0), "data"), "YQ==");
    CHECK_STR(str_at(json_array_get(rs, 1), "partitionKey"), "k\xef\xbf\xbd");
    CHECK_STR(str_at(json_array_get(rs, 1), "data"), "bGluZQpicmVhaw==");
    json_decref(root);
    lv_buf_free(&b);

    /* An error that is not JSON is kept as a string, still on one line. */
    dl.error = LV_SLICE_LIT("not json\n{");
    dl.error_type = (lv_slice_t){NULL, 0};
    lv_consumer_dead_letter_line(&b, &dl);
    CHECK(memchr(lv_buf_data(&b), '\n', lv_buf_len(&b) - 1) == NULL);
    root = parse(&b);
    CHECK(root);
    CHECK_STR(str_at(root, "error"), "not json\n{");
    CHECK_STR(str_at(root, "errorType"), "");
    json_decref(root);
    lv_buf_free(&b);
    dl.error = (lv_slice_t){NULL, 0};
    lv_consumer_dead_letter_line(&b, &dl);
    root = parse(&b);
    CHECK(root);
    CHECK_STR(str_at(root, "error"), "");
    json_decref(root);
    lv_buf_free(&b);
}

int main(void)
{
    LV_RUN(test_shard_id);
    LV_RUN(test_event_fields);
    LV_RUN(test_event_empty);
    LV_RUN(test_event_size_bound);
    LV_RUN(test_checkpoint_roundtrip);
    LV_RUN(test_checkpoint_every_damage);
    LV_RUN(test_checkpoint_canonical);
    LV_RUN(test_dead_letter_line);
    return lv_test_summary();
}
