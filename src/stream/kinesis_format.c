/* kinesis_format.c: the text forms of the Kinesis API (see
 * kinesis_format.h). 128-bit numbers go through unsigned __int128, the same
 * way stream/seqnum.c does it; everything else is byte-by-byte checks with
 * explicit lengths, so no input is ever read past its end. */
#include "stream/kinesis_format.h"

#include <stdio.h>
#include <string.h>

#include "core/base64.h"
#include "core/json_text.h"
#include "stream/stream.h"

static const char *const err_names[LV_KERR_COUNT] = {
    [LV_KERR_NONE] = "ok",
    [LV_KERR_RESOURCE_NOT_FOUND] = "ResourceNotFoundException",
    [LV_KERR_RESOURCE_IN_USE] = "ResourceInUseException",
    [LV_KERR_VALIDATION] = "ValidationException",
    [LV_KERR_INVALID_ARGUMENT] = "InvalidArgumentException",
    [LV_KERR_EXPIRED_ITERATOR] = "ExpiredIteratorException",
    [LV_KERR_THROUGHPUT_EXCEEDED] = "ProvisionedThroughputExceededException",
    [LV_KERR_SERIALIZATION] = "SerializationException",
    [LV_KERR_UNKNOWN_OPERATION] = "UnknownOperationException",
    [LV_KERR_LIMIT_EXCEEDED] = "LimitExceededException",
    [LV_KERR_INTERNAL_FAILURE] = "InternalFailure",
};

const char *lv_kinesis_err_name(lv_kinesis_err_t e)
{
    return (unsigned)e < LV_KERR_COUNT ? err_names[e] : "InternalFailure";
}

int lv_kinesis_err_status(lv_kinesis_err_t e)
{
    return e == LV_KERR_INTERNAL_FAILURE || (unsigned)e >= LV_KERR_COUNT ? 500 : 400;
}

void lv_kinesis_error_json(lv_buf_t *out, lv_kinesis_err_t e, lv_slice_t message)
{
    lv_buf_append_str(out, "{\"__type\":\"");
    lv_buf_append_str(out, lv_kinesis_err_name(e));
    lv_buf_append_str(out, "\",\"message\":");
    lv_json_string(out, message);
    lv_buf_append(out, "}", 1);
}

size_t lv_kinesis_u128_format(unsigned __int128 v, char out[LV_KINESIS_U128_MAX])
{
    char rev[LV_KINESIS_U128_MAX];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

static bool all_digits(lv_slice_t s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
    return true;
}

/* 0|([1-9]\d{0,max_more}) */
static bool decimal_pattern(lv_slice_t s, size_t max_more)
{
    if (s.len == 0 || s.len > max_more + 1 || !all_digits(s))
        return false;
    return s.len == 1 || s.ptr[0] != '0';
}

int lv_kinesis_u128_parse(lv_slice_t s, unsigned __int128 *v)
{
    if (!decimal_pattern(s, 38))
        return -1;
    unsigned __int128 acc = 0;
    const unsigned __int128 max = ~(unsigned __int128)0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned)(s.ptr[i] - '0');
        if (acc > (max - d) / 10)
            return 1;
        acc = acc * 10 + d;
    }
    *v = acc;
    return 0;
}

bool lv_kinesis_seq_pattern(lv_slice_t s)
{
    return decimal_pattern(s, 128);
}

size_t lv_kinesis_shard_id(unsigned shard, char out[LV_KINESIS_SHARD_ID_MAX])
{
    int n = snprintf(out, LV_KINESIS_SHARD_ID_MAX, "shardId-%012u", shard);
    return n > 0 ? (size_t)n : 0;
}

int lv_kinesis_parse_shard_id(lv_slice_t s, unsigned *shard)
{
    static const char prefix[] = "shardId-";
    size_t plen = sizeof prefix - 1;
    if (s.len <= plen || s.len > plen + 12 || memcmp(s.ptr, prefix, plen) != 0)
        return -1;
    lv_slice_t digits = lv_slice(s.ptr + plen, s.len - plen);
    if (!all_digits(digits))
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < digits.len; i++)
        v = v * 10 + (unsigned)(digits.ptr[i] - '0');
    if (v > 0xffffffffull)
        return -1;
    *shard = (unsigned)v;
    return 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

bool lv_kinesis_valid_stream_name(lv_slice_t s)
{
    if (s.len == 0 || s.len > LV_STREAM_MAX_NAME)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!name_char(s.ptr[i]))
            return false;
    return true;
}

/* The next ':'-separated field of s from *pos, which moves past it. */
static bool next_field(lv_slice_t s, size_t *pos, lv_slice_t *field)
{
    if (*pos > s.len)
        return false;
    const char *colon = memchr(s.ptr + *pos, ':', s.len - *pos);
    size_t end = colon ? (size_t)(colon - s.ptr) : s.len;
    *field = lv_slice(s.ptr + *pos, end - *pos);
    *pos = end + 1;
    return true;
}

int lv_kinesis_parse_arn(lv_slice_t arn, lv_slice_t *region, lv_slice_t *name)
{
    lv_slice_t f[5];
    size_t pos = 0;
    if (arn.len == 0)
        return -1;
    for (int i = 0; i < 5; i++) {
        if (!next_field(arn, &pos, &f[i]) || pos > arn.len)
            return -1; /* fewer than six fields */
    }
    lv_slice_t resource = lv_slice(arn.ptr + pos, arn.len - pos);
    if (!lv_slice_eq_cstr(f[0], "arn") || f[1].len < 3 || memcmp(f[1].ptr, "aws", 3) != 0 ||
        !lv_slice_eq_cstr(f[2], "kinesis") || f[4].len != 12 || !all_digits(f[4]))
        return -1;
    for (size_t i = 3; i < f[1].len; i++)
        if (!((f[1].ptr[i] >= 'a' && f[1].ptr[i] <= 'z') || f[1].ptr[i] == '-'))
            return -1;
    if (f[3].len > 32)
        return -1;
    for (size_t i = 0; i < f[3].len; i++) {
        char c = f[3].ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return -1;
    }
    static const char kind[] = "stream/";
    if (resource.len < sizeof kind || memcmp(resource.ptr, kind, sizeof kind - 1) != 0)
        return -1;
    lv_slice_t n = lv_slice(resource.ptr + sizeof kind - 1, resource.len - (sizeof kind - 1));
    if (!lv_kinesis_valid_stream_name(n))
        return -1;
    *region = f[3];
    *name = n;
    return 0;
}

void lv_kinesis_arn(lv_buf_t *out, lv_slice_t region, lv_slice_t name)
{
    lv_buf_append_str(out, "arn:aws:kinesis:");
    if (region.len)
        lv_buf_append(out, region.ptr, region.len);
    else
        lv_buf_append_str(out, LV_KINESIS_DEFAULT_REGION);
    lv_buf_append_str(out, ":" LV_KINESIS_ACCOUNT ":stream/");
    lv_buf_append(out, name.ptr, name.len);
}

void lv_kinesis_timestamp(lv_buf_t *out, uint64_t ms)
{
    lv_buf_printf(out, "%llu.%03u", (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
}

size_t lv_kinesis_utf8_chars(lv_slice_t s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++)
        if (((unsigned char)s.ptr[i] & 0xc0) != 0x80)
            n++;
    return n;
}

#define STREAMS_TOKEN "levee/streams/"
#define SHARDS_TOKEN "levee/shards/"

void lv_kinesis_streams_token(lv_buf_t *out, lv_slice_t last_name)
{
    lv_buf_t raw = LV_BUF_INIT;
    lv_buf_append_str(&raw, STREAMS_TOKEN);
    lv_buf_append(&raw, last_name.ptr, last_name.len);
    lv_base64_encode(lv_buf_slice(&raw), out);
    lv_buf_free(&raw);
}

/* Decodes token and checks that it starts with prefix; the rest is left in
 * *rest (pointing into raw). */
static int open_token(lv_slice_t token, const char *prefix, lv_buf_t *raw, lv_slice_t *rest)
{
    size_t plen = strlen(prefix);
    /* Longer than any token levee makes: do not decode megabytes for it. */
    if (token.len > 512 || lv_base64_decode(token, raw, true) != 0)
        return -1;
    lv_slice_t t = lv_buf_slice(raw);
    if (t.len < plen || memcmp(t.ptr, prefix, plen) != 0)
        return -1;
    *rest = lv_slice(t.ptr + plen, t.len - plen);
    return 0;
}

int lv_kinesis_parse_streams_token(lv_slice_t token, char *name_out, size_t *name_len)
{
    lv_buf_t raw = LV_BUF_INIT;
    lv_slice_t name;
    int rc = -1;
    if (open_token(token, STREAMS_TOKEN, &raw, &name) == 0 && lv_kinesis_valid_stream_name(name)) {
        memcpy(name_out, name.ptr, name.len);
        *name_len = name.len;
        rc = 0;
    }
    lv_buf_free(&raw);
    return rc;
}

void lv_kinesis_shards_token(lv_buf_t *out, lv_slice_t stream, unsigned last_shard)
{
    lv_buf_t raw = LV_BUF_INIT;
    lv_buf_printf(&raw, SHARDS_TOKEN "%u/", last_shard);
    lv_buf_append(&raw, stream.ptr, stream.len);
    lv_base64_encode(lv_buf_slice(&raw), out);
    lv_buf_free(&raw);
}

int lv_kinesis_parse_shards_token(lv_slice_t token, char *name_out, size_t *name_len, unsigned *last_shard)
{
    lv_buf_t raw = LV_BUF_INIT;
    lv_slice_t rest;
    int rc = -1;
    if (open_token(token, SHARDS_TOKEN, &raw, &rest) == 0) {
        const char *slash = memchr(rest.ptr, '/', rest.len);
        lv_slice_t digits = lv_slice(rest.ptr, slash ? (size_t)(slash - rest.ptr) : 0);
        lv_slice_t name = slash ? lv_slice(slash + 1, rest.len - digits.len - 1) : lv_slice(NULL, 0);
        if (slash && digits.len >= 1 && digits.len <= 10 && all_digits(digits) &&
            (digits.len == 1 || digits.ptr[0] != '0') && lv_kinesis_valid_stream_name(name)) {
            unsigned long long v = 0;
            for (size_t i = 0; i < digits.len; i++)
                v = v * 10 + (unsigned)(digits.ptr[i] - '0');
            if (v <= 0xffffffffull) {
                memcpy(name_out, name.ptr, name.len);
                *name_len = name.len;
                *last_shard = (unsigned)v;
                rc = 0;
            }
        }
    }
    lv_buf_free(&raw);
    return rc;
}
