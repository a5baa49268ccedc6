/* consumer_format.c: Kinesis events, checkpoint files and dead-letter lines
 * for stream consumers (see consumer_format.h).
 *
 * Events are written by hand into a buffer rather than through a JSON DOM:
 * a batch can hold 10000 records, and a record is a fixed template with
 * four values in it. The template's pieces are named constants so that
 * lv_consumer_event_record_max adds up exactly the bytes the writer emits.
 *
 * The checkpoint decoder walks the file line by line with a cursor that
 * never passes the end, accepts only the canonical form, and checks the
 * CRC last. */
#include "stream/consumer_format.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base64.h"
#include "core/crc32c.h"
#include "core/json_text.h"
#include "stream/seqnum.h"

#define ACCOUNT "000000000000"
#define REGION "us-east-1"

/* The pieces of one event record, in the order written. */
#define REC_OPEN "{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\",\"partitionKey\":"
#define REC_SEQ ",\"sequenceNumber\":\""
#define REC_DATA "\",\"data\":\""
#define REC_TIME "\",\"approximateArrivalTimestamp\":"
#define REC_ID                                                                                  \
    "},\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\",\"eventID\":\""
#define REC_TAIL                                                                                \
    "\",\"eventName\":\"aws:kinesis:record\",\"invokeIdentityArn\":\"arn:aws:iam::" ACCOUNT     \
    ":role/levee\",\"awsRegion\":\"" REGION "\",\"eventSourceARN\":\"arn:aws:kinesis:" REGION   \
    ":" ACCOUNT ":stream/"
#define REC_CLOSE "\"}"
#define LIT_LEN(s) (sizeof(s) - 1)

/* "%llu.%03u" of a uint64_t millisecond count: 17 digits, '.', 3 digits
 * at most; 24 leaves room. */
#define TIME_MAX 24

size_t lv_consumer_shard_id(unsigned shard, char out[LV_SHARD_ID_MAX])
{
    int n = snprintf(out, LV_SHARD_ID_MAX, "shardId-%012u", shard);
    return n > 0 ? (size_t)n : 0;
}

/* The most bytes lv_json_chars can write for s: a control character
 * becomes \u00XX, a quote or backslash gets a backslash, and a byte of
 * ill-formed UTF-8 becomes U+FFFD (3 bytes; well-formed UTF-8 is copied). */
static size_t json_chars_max(lv_slice_t s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        n += c < 0x20 ? 6 : c == '"' || c == '\\' ? 2 : c >= 0x80 ? 3 : 1;
    }
    return n;
}

size_t lv_consumer_event_record_max(lv_consumer_source_t src, lv_slice_t partition_key, size_t data_len)
{
    return 1 /* the comma before every record but the first */ + LIT_LEN(REC_OPEN) + 2 +
           json_chars_max(partition_key) + LIT_LEN(REC_SEQ) + (LV_SEQNUM_MAX - 1) + LIT_LEN(REC_DATA) +
           lv_base64_encoded_len(data_len) + LIT_LEN(REC_TIME) + TIME_MAX + LIT_LEN(REC_ID) +
           (LV_SHARD_ID_MAX - 1) + 1 + (LV_SEQNUM_MAX - 1) + LIT_LEN(REC_TAIL) + json_chars_max(src.stream) +
           LIT_LEN(REC_CLOSE);
}

static void append_lit(lv_buf_t *b, const char *s, size_t n) { lv_buf_append(b, s, n); }
#define APPEND_LIT(b, s) append_lit((b), (s), LIT_LEN(s))

/* Seconds with the milliseconds as a fraction, as Lambda writes
 * approximateArrivalTimestamp. */
static void append_seconds(lv_buf_t *b, uint64_t ms)
{
    lv_buf_printf(b, "%llu.%03u", (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
}

void lv_consumer_event(lv_buf_t *out, lv_consumer_source_t src, const lv_stream_record_t *recs, size_t n)
{
    char shard_id[LV_SHARD_ID_MAX];
    size_t shard_id_len = lv_consumer_shard_id(src.shard, shard_id);
    APPEND_LIT(out, "{\"Records\":[");
    for (size_t i = 0; i < n; i++) {
        const lv_stream_record_t *r = &recs[i];
        char seq[LV_SEQNUM_MAX];
        size_t seq_len = lv_seqnum_format(src.shard, r->seq, seq);
        if (i)
            APPEND_LIT(out, ",");
        APPEND_LIT(out, REC_OPEN);
        lv_json_string(out, r->partition_key);
        APPEND_LIT(out, REC_SEQ);
        lv_buf_append(out, seq, seq_len);
        APPEND_LIT(out, REC_DATA);
        lv_base64_encode(r->data, out);
        APPEND_LIT(out, REC_TIME);
        append_seconds(out, r->arrival_ms);
        APPEND_LIT(out, REC_ID);
        lv_buf_append(out, shard_id, shard_id_len);
        APPEND_LIT(out, ":");
        lv_buf_append(out, seq, seq_len);
        APPEND_LIT(out, REC_TAIL);
        lv_json_chars(out, src.stream.ptr, src.stream.len, false);
        APPEND_LIT(out, REC_CLOSE);
    }
    APPEND_LIT(out, "]}");
}

/* ======================================================================
 * Checkpoints
 * ====================================================================== */

#define CP_MAGIC "levee-consumer-checkpoint 1\n"

void lv_checkpoint_encode(lv_buf_t *out, const lv_checkpoint_t *cp)
{
    size_t start = lv_buf_len(out);
    lv_buf_printf(out,
                  CP_MAGIC "stream %s\nstream-id %016llx\nshard %u\nnext-seq %llu\nlast-arrival-ms %llu\n",
                  cp->stream, (unsigned long long)cp->stream_id, cp->shard, (unsigned long long)cp->next_seq,
                  (unsigned long long)cp->last_arrival_ms);
    uint32_t crc = lv_crc32c(0, lv_buf_data(out) + start, lv_buf_len(out) - start);
    lv_buf_printf(out, "crc32c %08x\n", crc);
}

/* A cursor over the file's bytes. */
typedef struct {
    const char *p, *end;
} cursor_t;

/* Consumes the literal s if the input starts with it. */
static bool take_lit(cursor_t *c, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* A decimal number, canonical ("0" or no leading zero), then '\n'. */
static bool take_decimal_line(cursor_t *c, uint64_t max, uint64_t *out)
{
    const char *start = c->p;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
        c->p++;
    }
    size_t digits = (size_t)(c->p - start);
    if (digits == 0 || (digits > 1 && *start == '0'))
        return false;
    *out = v;
    return take_lit(c, "\n");
}

/* Exactly `digits` lower-case hex digits, then '\n'. */
static bool take_hex_line(cursor_t *c, size_t digits, uint64_t *out)
{
    if ((size_t)(c->end - c->p) < digits)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        char ch = c->p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    c->p += digits;
    *out = v;
    return take_lit(c, "\n");
}

static bool stream_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '.' || ch == '-';
}

const char *lv_checkpoint_decode(const char *data, size_t len, lv_checkpoint_t *cp)
{
    if (len > LV_CHECKPOINT_MAX_BYTES)
        return "too long for a checkpoint";
    cursor_t c = {data, data + len};
    memset(cp, 0, sizeof *cp);
    if (!take_lit(&c, CP_MAGIC))
        return "not a levee consumer checkpoint (version 1)";
    if (!take_lit(&c, "stream "))
        return "bad stream line";
    size_t name_len = 0;
    while (c.p + name_len < c.end && stream_name_char(c.p[name_len]) && name_len <= LV_STREAM_MAX_NAME)
        name_len++;
    if (name_len == 0 || name_len > LV_STREAM_MAX_NAME)
        return "bad stream name";
    memcpy(cp->stream, c.p, name_len);
    cp->stream[name_len] = '\0';
    c.p += name_len;
    if (!take_lit(&c, "\n"))
        return "bad stream name";
    uint64_t shard;
    if (!take_lit(&c, "stream-id ") || !take_hex_line(&c, 16, &cp->stream_id))
        return "bad stream-id line";
    if (!take_lit(&c, "shard ") || !take_decimal_line(&c, LV_STREAM_MAX_SHARDS - 1, &shard))
        return "bad shard line";
    cp->shard = (unsigned)shard;
    if (!take_lit(&c, "next-seq ") || !take_decimal_line(&c, UINT64_MAX, &cp->next_seq) || cp->next_seq == 0)
        return "bad next-seq line";
    if (!take_lit(&c, "last-arrival-ms ") || !take_decimal_line(&c, UINT64_MAX, &cp->last_arrival_ms))
        return "bad last-arrival-ms line";
    size_t covered = (size_t)(c.p - data);
    uint64_t crc;
    if (!take_lit(&c, "crc32c ") || !take_hex_line(&c, 8, &crc))
        return "bad crc32c line";
    if (c.p != c.end)
        return "bytes after the crc32c line";
    if ((uint32_t)crc != lv_crc32c(0, data, covered))
        return "crc32c mismatch";
    return NULL;
}

/* ======================================================================
 * Dead letters
 * ====================================================================== */

static void append_iso_time(lv_buf_t *b, uint64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    lv_buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* The function's error as compact JSON (one line) if it is JSON, else as a
 * string: the line must stay one valid JSON line whatever the function
 * sent. */
static void append_error_value(lv_buf_t *b, lv_slice_t error)
{
    json_t *v = error.len ? json_loadb(error.ptr, error.len, JSON_DECODE_ANY, NULL) : NULL;
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (text)
        lv_buf_append_str(b, text);
    else
        lv_json_string(b, error);
    free(text);
}

void lv_consumer_dead_letter_line(lv_buf_t *out, const lv_consumer_dead_letter_t *dl)
{
    char shard_id[LV_SHARD_ID_MAX], first[LV_SEQNUM_MAX], last[LV_SEQNUM_MAX];
    lv_consumer_shard_id(dl->src.shard, shard_id);
    const lv_stream_record_t *r0 = &dl->records[0], *rn = &dl->records[dl->n - 1];
    lv_seqnum_format(dl->src.shard, r0->seq, first);
    lv_seqnum_format(dl->src.shard, rn->seq, last);

    APPEND_LIT(out, "{\"version\":\"1.0\",\"timestamp\":");
    append_iso_time(out, dl->now_ms);
    APPEND_LIT(out, ",\"consumer\":");
    lv_json_string(out, dl->consumer);
    APPEND_LIT(out, ",\"stream\":");
    lv_json_string(out, dl->src.stream);
    lv_buf_printf(out, ",\"shardId\":\"%s\",\"firstSequenceNumber\":\"%s\",\"lastSequenceNumber\":\"%s\"", shard_id,
                  first, last);
    APPEND_LIT(out, ",\"requestContext\":{\"functionArn\":\"arn:aws:lambda:" REGION ":" ACCOUNT ":function:");
    lv_json_chars(out, dl->function.ptr, dl->function.len, false);
    lv_buf_printf(out, ":$LATEST\",\"condition\":\"RetryAttemptsExhausted\",\"approximateInvokeCount\":%u}",
                  dl->attempts);
    APPEND_LIT(out, ",\"responseContext\":{\"statusCode\":200,\"executedVersion\":\"$LATEST\","
                    "\"functionError\":\"Unhandled\"}");
    APPEND_LIT(out, ",\"errorType\":");
    lv_json_string(out, dl->error_type);
    APPEND_LIT(out, ",\"error\":");
    append_error_value(out, dl->error);
    lv_buf_printf(out, ",\"KinesisBatchInfo\":{\"shardId\":\"%s\",\"startSequenceNumber\":\"%s\","
                       "\"endSequenceNumber\":\"%s\",\"approximateArrivalOfFirstRecord\":",
                  shard_id, first, last);
    append_iso_time(out, r0->arrival_ms);
    APPEND_LIT(out, ",\"approximateArrivalOfLastRecord\":");
    append_iso_time(out, rn->arrival_ms);
    lv_buf_printf(out, ",\"batchSize\":%zu,\"streamArn\":\"arn:aws:kinesis:" REGION ":" ACCOUNT ":stream/",
                  dl->n);
    lv_json_chars(out, dl->src.stream.ptr, dl->src.stream.len, false);
    APPEND_LIT(out, "\"},\"records\":[");
    for (size_t i = 0; i < dl->n; i++) {
        const lv_stream_record_t *r = &dl->records[i];
        char seq[LV_SEQNUM_MAX];
        lv_seqnum_format(dl->src.shard, r->seq, seq);
        if (i)
            APPEND_LIT(out, ",");
        lv_buf_printf(out, "{\"sequenceNumber\":\"%s\",\"partitionKey\":", seq);
        lv_json_string(out, r->partition_key);
        APPEND_LIT(out, ",\"data\":\"");
        lv_base64_encode(r->data, out);
        APPEND_LIT(out, "\",\"approximateArrivalTimestamp\":");
        append_seconds(out, r->arrival_ms);
        APPEND_LIT(out, "}");
    }
    APPEND_LIT(out, "]}\n");
}
