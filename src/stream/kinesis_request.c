/* kinesis_request.c: checks a Kinesis request (see kinesis_request.h).
 *
 * jansson parses the body; each operation then reads its members through a
 * few getters that know three outcomes: absent (missing or null), present
 * with the right JSON type, or present with a wrong type. A wrong type is a
 * SerializationException and ends the parse at once, as AWS's deserializer
 * does. Constraint violations are collected, so one answer lists every
 * one of them (the first few in full), as AWS does. The rules between
 * members come last and the first one broken is the answer; they are only
 * looked at when the members are each valid, so their messages can quote
 * them safely.
 *
 * Record data is base64-decoded into one buffer. Slices into it are taken
 * only after the last record is decoded, because the buffer may move while
 * it grows. */
#include "stream/kinesis_request.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/mem.h"
#include "stream/seqnum.h"

#define NAME_PATTERN "[a-zA-Z0-9_.-]+"
#define ARN_PATTERN "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"
#define MAX_ARN 2048u
#define MAX_SHARD_COUNT_MODEL 100000  /* the model's bound; levee's is LV_STREAM_MAX_SHARDS */
#define MAX_NEXT_TOKEN 1048576u
#define VIOLATIONS_SHOWN 10u          /* listed in full; the rest only counted */
#define VALUE_SHOWN 128u              /* bytes of a bad value quoted in a message */

static const char *const op_names[LV_KOP_COUNT] = {
    [LV_KOP_CREATE_STREAM] = "CreateStream",
    [LV_KOP_DELETE_STREAM] = "DeleteStream",
    [LV_KOP_DESCRIBE_STREAM] = "DescribeStream",
    [LV_KOP_DESCRIBE_STREAM_SUMMARY] = "DescribeStreamSummary",
    [LV_KOP_LIST_STREAMS] = "ListStreams",
    [LV_KOP_LIST_SHARDS] = "ListShards",
    [LV_KOP_PUT_RECORD] = "PutRecord",
    [LV_KOP_PUT_RECORDS] = "PutRecords",
    [LV_KOP_GET_SHARD_ITERATOR] = "GetShardIterator",
    [LV_KOP_GET_RECORDS] = "GetRecords",
    [LV_KOP_UNKNOWN] = "unknown",
};

const char *lv_kinesis_op_name(lv_kinesis_op_t op)
{
    return (unsigned)op < LV_KOP_COUNT ? op_names[op] : "unknown";
}

lv_kinesis_op_t lv_kinesis_op_from_name(lv_slice_t name)
{
    for (int op = 0; op < LV_KOP_UNKNOWN; op++)
        if (lv_slice_eq_cstr(name, op_names[op]))
            return (lv_kinesis_op_t)op;
    return LV_KOP_UNKNOWN;
}

void lv_kinesis_error_set(lv_kinesis_error_t *err, lv_kinesis_err_t type, const char *fmt, ...)
{
    err->type = type;
    lv_buf_clear(&err->message);
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&err->message, fmt, ap);
    va_end(ap);
}

void lv_kinesis_error_free(lv_kinesis_error_t *err)
{
    lv_buf_free(&err->message);
    err->type = LV_KERR_NONE;
}

void lv_kinesis_req_free(lv_kinesis_req_t *req)
{
    json_decref(req->doc);
    free(req->records);
    lv_buf_free(&req->decoded);
    memset(req, 0, sizeof *req);
}

/* ======================================================================
 * Members
 * ====================================================================== */

typedef struct {
    lv_kinesis_req_t *req;
    lv_kinesis_error_t *err;
    bool failed;                 /* a SerializationException is set: stop */
    unsigned violations;
    lv_buf_t listed;             /* the first VIOLATIONS_SHOWN, "; "-separated */
    lv_kinesis_err_t rule;       /* the first broken rule between members */
    lv_buf_t rule_message;
} parser_t;

static void serialization(parser_t *p, const char *member, const char *expected, json_t *got)
{
    if (p->failed)
        return;
    static const char *const kinds[] = {"an object", "an array", "a string", "an integer", "a number",
                                        "true",      "false",    "null"};
    int t = json_typeof(got);
    const char *kind = t >= 0 && t < (int)(sizeof kinds / sizeof kinds[0]) ? kinds[t] : "a value";
    lv_kinesis_error_set(p->err, LV_KERR_SERIALIZATION, "%s must be %s, not %s", member, expected, kind);
    p->failed = true;
}

/* Records "Value V at 'path' failed to satisfy constraint: C". value NULL
 * means null; shown_bytes (when value is NULL and shown_bytes is set) says
 * a blob of that size. */
static void violation(parser_t *p, lv_slice_t *value, size_t blob_bytes, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void violation(parser_t *p, lv_slice_t *value, size_t blob_bytes, const char *path, const char *fmt, ...)
{
    if (p->violations++ >= VIOLATIONS_SHOWN)
        return;
    lv_buf_t *b = &p->listed;
    if (lv_buf_len(b))
        lv_buf_append_str(b, "; ");
    if (value) {
        lv_buf_append_str(b, "Value '");
        lv_buf_append(b, value->ptr, value->len < VALUE_SHOWN ? value->len : VALUE_SHOWN);
        lv_buf_append_str(b, value->len > VALUE_SHOWN ? "...'" : "'");
    } else if (blob_bytes) {
        lv_buf_printf(b, "Value of %zu bytes", blob_bytes);
    } else {
        lv_buf_append_str(b, "Value null");
    }
    lv_buf_printf(b, " at '%s' failed to satisfy constraint: ", path);
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void rule(parser_t *p, lv_kinesis_err_t type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void rule(parser_t *p, lv_kinesis_err_t type, const char *fmt, ...)
{
    if (p->rule != LV_KERR_NONE)
        return;
    p->rule = type;
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&p->rule_message, fmt, ap);
    va_end(ap);
}

/* Getters: 1 present (out set), 0 absent or null, -1 wrong type (the
 * parse has failed). */
static int get_string(parser_t *p, json_t *obj, const char *member, lv_slice_t *out)
{
    json_t *v = json_object_get(obj, member);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        serialization(p, member, "a string", v);
        return -1;
    }
    *out = lv_slice(json_string_value(v), json_string_length(v));
    return 1;
}

static int get_int(parser_t *p, json_t *obj, const char *member, long long *out)
{
    json_t *v = json_object_get(obj, member);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (long long)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        /* AWS truncates a fraction; keep clear of the conversion's UB. */
        double d = json_real_value(v);
        if (isfinite(d) && d > -9.0e18 && d < 9.0e18) {
            *out = (long long)d;
            return 1;
        }
    }
    serialization(p, member, "an integer", v);
    return -1;
}

static int get_number(parser_t *p, json_t *obj, const char *member, double *out)
{
    json_t *v = json_object_get(obj, member);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        serialization(p, member, "a number (epoch seconds)", v);
        return -1;
    }
    *out = json_number_value(v);
    return 1;
}

static int get_object(parser_t *p, json_t *obj, const char *member, json_t **out)
{
    json_t *v = json_object_get(obj, member);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        serialization(p, member, "an object", v);
        return -1;
    }
    *out = v;
    return 1;
}

static bool present(json_t *obj, const char *member)
{
    json_t *v = json_object_get(obj, member);
    return v && !json_is_null(v);
}

static bool name_pattern(lv_slice_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* Length 1..max (in characters) and, if pattern, [a-zA-Z0-9_.-]+. Returns
 * true if the value is good. */
static bool check_text(parser_t *p, lv_slice_t v, const char *path, size_t max, bool pattern)
{
    bool ok = true;
    size_t chars = lv_kinesis_utf8_chars(v);
    if (chars < 1) {
        violation(p, &v, 0, path, "Member must have length greater than or equal to 1");
        ok = false;
    }
    if (chars > max) {
        violation(p, &v, 0, path, "Member must have length less than or equal to %zu", max);
        ok = false;
    }
    if (pattern && v.len && !name_pattern(v)) {
        violation(p, &v, 0, path, "Member must satisfy regular expression pattern: " NAME_PATTERN);
        ok = false;
    }
    return ok;
}

/* An optional integer member in [min, max]; *out keeps its default when
 * absent. */
static void int_member(parser_t *p, json_t *obj, const char *member, const char *path, long long min,
                       long long max, long long *out)
{
    long long v;
    if (get_int(p, obj, member, &v) != 1)
        return;
    char text[24];
    snprintf(text, sizeof text, "%lld", v);
    lv_slice_t shown = lv_slice_cstr(text);
    if (v < min)
        violation(p, &shown, 0, path, "Member must have value greater than or equal to %lld", min);
    else if (v > max)
        violation(p, &shown, 0, path, "Member must have value less than or equal to %lld", max);
    else
        *out = v;
}

/* StreamName and StreamARN. */
static void stream_member(parser_t *p, json_t *obj, bool arn_allowed, bool required)
{
    lv_kinesis_req_t *req = p->req;
    lv_slice_t name = {0}, arn = {0}, arn_name = {0}, region = {0};
    int has_name = get_string(p, obj, "StreamName", &name);
    int has_arn = arn_allowed ? get_string(p, obj, "StreamARN", &arn) : 0;
    if (has_name < 0 || has_arn < 0)
        return;
    bool name_ok = has_name && check_text(p, name, "streamName", LV_STREAM_MAX_NAME, true);
    bool arn_ok = false;
    if (has_arn) {
        if (arn.len < 1)
            violation(p, &arn, 0, "streamARN", "Member must have length greater than or equal to 1");
        else if (arn.len > MAX_ARN)
            violation(p, &arn, 0, "streamARN", "Member must have length less than or equal to %u", MAX_ARN);
        else if (lv_kinesis_parse_arn(arn, &region, &arn_name) != 0)
            violation(p, &arn, 0, "streamARN", "Member must satisfy regular expression pattern: " ARN_PATTERN);
        else
            arn_ok = true;
    }
    if (!has_name && !has_arn && required)
        violation(p, NULL, 0, "streamName", "Member must not be null");
    if (name_ok && arn_ok && !lv_slice_eq(name, arn_name))
        rule(p, LV_KERR_INVALID_ARGUMENT, "StreamARN and StreamName name different streams.");
    if (arn_ok) {
        req->stream = arn_name;
        req->region = region;
    } else if (name_ok) {
        req->stream = name;
    }
}

static void limit_member(parser_t *p, json_t *obj, const char *member, const char *path, unsigned dflt)
{
    long long v = dflt;
    int_member(p, obj, member, path, 1, LV_KINESIS_MAX_LIMIT, &v);
    p->req->limit = (unsigned)v;
}

static void start_shard_member(parser_t *p, json_t *obj, const char *member, const char *path)
{
    lv_slice_t v;
    if (get_string(p, obj, member, &v) == 1 && check_text(p, v, path, 128, true)) {
        p->req->has_start_shard = true;
        p->req->start_shard = v;
    }
}

/* ======================================================================
 * Operations
 * ====================================================================== */

static void parse_create(parser_t *p, json_t *obj)
{
    stream_member(p, obj, false, true);
    long long shards = -1;
    int_member(p, obj, "ShardCount", "shardCount", 1, MAX_SHARD_COUNT_MODEL, &shards);
    json_t *mode;
    bool on_demand = false;
    if (get_object(p, obj, "StreamModeDetails", &mode) == 1) {
        lv_slice_t m;
        int has = get_string(p, mode, "StreamMode", &m);
        if (has == 0)
            violation(p, NULL, 0, "streamModeDetails.streamMode", "Member must not be null");
        else if (has == 1 && lv_slice_eq_cstr(m, "ON_DEMAND"))
            on_demand = true;
        else if (has == 1 && !lv_slice_eq_cstr(m, "PROVISIONED"))
            violation(p, &m, 0, "streamModeDetails.streamMode",
                      "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]");
    }
    if (on_demand && shards > 0)
        rule(p, LV_KERR_INVALID_ARGUMENT, "ShardCount must not be given for a stream in ON_DEMAND mode.");
    if (shards > (long long)LV_STREAM_MAX_SHARDS)
        rule(p, LV_KERR_LIMIT_EXCEEDED,
             "This request would exceed the shard limit for the account " LV_KINESIS_ACCOUNT
             ": levee streams have at most %u shards (ShardCount %lld).",
             LV_STREAM_MAX_SHARDS, shards);
    p->req->shard_count = shards > 0 && shards <= (long long)LV_STREAM_MAX_SHARDS ? (unsigned)shards
                                                                                  : LV_KINESIS_DEFAULT_SHARDS;
}

static void parse_describe(parser_t *p, json_t *obj)
{
    stream_member(p, obj, true, true);
    limit_member(p, obj, "Limit", "limit", 100);
    start_shard_member(p, obj, "ExclusiveStartShardId", "exclusiveStartShardId");
}

static void parse_list_streams(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    limit_member(p, obj, "Limit", "limit", 100);
    lv_slice_t start, token;
    if (get_string(p, obj, "ExclusiveStartStreamName", &start) == 1 &&
        check_text(p, start, "exclusiveStartStreamName", LV_STREAM_MAX_NAME, true))
        req->start_stream = start;
    if (get_string(p, obj, "NextToken", &token) == 1 &&
        check_text(p, token, "nextToken", MAX_NEXT_TOKEN, false)) {
        size_t n;
        if (lv_kinesis_parse_streams_token(token, req->token_name, &n) == 0)
            req->start_stream = lv_slice(req->token_name, n);
        else
            rule(p, LV_KERR_INVALID_ARGUMENT, "Invalid NextToken.");
    }
}

static void parse_list_shards(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    stream_member(p, obj, true, false);
    limit_member(p, obj, "MaxResults", "maxResults", 1000);
    start_shard_member(p, obj, "ExclusiveStartShardId", "exclusiveStartShardId");
    bool has_stream = present(obj, "StreamName") || present(obj, "StreamARN");
    lv_slice_t token;
    int has_token = get_string(p, obj, "NextToken", &token);
    json_t *filter;
    int has_filter = get_object(p, obj, "ShardFilter", &filter);
    if (has_filter == 1) {
        lv_slice_t type, id;
        int has_type = get_string(p, filter, "Type", &type);
        int has_id = get_string(p, filter, "ShardId", &id);
        double ts;
        (void)get_number(p, filter, "Timestamp", &ts); /* every filter by time matches every shard */
        if (has_id == 1)
            check_text(p, id, "shardFilter.shardId", 128, true);
        if (has_type == 0) {
            violation(p, NULL, 0, "shardFilter.type", "Member must not be null");
        } else if (has_type == 1 && lv_slice_eq_cstr(type, "AFTER_SHARD_ID")) {
            if (has_id != 1)
                rule(p, LV_KERR_INVALID_ARGUMENT, "ShardFilter of type AFTER_SHARD_ID needs a ShardId.");
            else if (!req->has_start_shard) {
                req->has_start_shard = true;
                req->start_shard = id;
            }
        } else if (has_type == 1 && !lv_slice_eq_cstr(type, "AT_TRIM_HORIZON") &&
                   !lv_slice_eq_cstr(type, "FROM_TRIM_HORIZON") && !lv_slice_eq_cstr(type, "AT_LATEST") &&
                   !lv_slice_eq_cstr(type, "AT_TIMESTAMP") && !lv_slice_eq_cstr(type, "FROM_TIMESTAMP")) {
            violation(p, &type, 0, "shardFilter.type",
                      "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, "
                      "AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]");
        }
    }
    if (has_token == 1 && check_text(p, token, "nextToken", MAX_NEXT_TOKEN, false)) {
        size_t n;
        unsigned last;
        if (has_stream)
            rule(p, LV_KERR_INVALID_ARGUMENT, "NextToken and StreamName cannot be provided together.");
        else if (req->has_start_shard || has_filter == 1)
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "NextToken cannot be provided together with ExclusiveStartShardId or ShardFilter.");
        else if (lv_kinesis_parse_shards_token(token, req->token_name, &n, &last) != 0)
            rule(p, LV_KERR_INVALID_ARGUMENT, "Invalid NextToken.");
        else {
            req->stream = lv_slice(req->token_name, n);
            req->has_start_shard = true;
            req->start_shard = lv_slice(req->token_shard, lv_kinesis_shard_id(last, req->token_shard));
        }
    } else if (has_token == 0 && !has_stream) {
        rule(p, LV_KERR_INVALID_ARGUMENT, "Either NextToken or StreamName should be provided.");
    }
}

/* One record's PartitionKey, Data and ExplicitHashKey. path_prefix is ""
 * for PutRecord and "records.N.member." for PutRecords. data_at receives
 * the offset of the data in req->decoded. */
static void record_members(parser_t *p, json_t *obj, const char *path_prefix, lv_kinesis_record_t *rec,
                           size_t *data_at)
{
    lv_kinesis_req_t *req = p->req;
    char path[64];
    lv_slice_t key, data, hash, order;
    int has_key = get_string(p, obj, "PartitionKey", &key);
    int has_data = get_string(p, obj, "Data", &data);
    int has_hash = get_string(p, obj, "ExplicitHashKey", &hash);
    int has_order = path_prefix[0] ? 0 : get_string(p, obj, "SequenceNumberForOrdering", &order);
    if (p->failed)
        return;

    snprintf(path, sizeof path, "%spartitionKey", path_prefix);
    if (has_key == 0)
        violation(p, NULL, 0, path, "Member must not be null");
    else if (check_text(p, key, path, LV_STREAM_MAX_KEY, false)) {
        rec->partition_key = key;
        if (key.len > LV_STREAM_MAX_KEY)
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "PartitionKey of %zu characters takes %zu bytes in UTF-8; levee keeps keys of at most %u bytes.",
                 lv_kinesis_utf8_chars(key), key.len, LV_STREAM_MAX_KEY);
    }

    snprintf(path, sizeof path, "%sdata", path_prefix);
    if (has_data == 0) {
        violation(p, NULL, 0, path, "Member must not be null");
    } else {
        size_t before = lv_buf_len(&req->decoded);
        if (lv_base64_decode(data, &req->decoded, false) != 0) {
            lv_kinesis_error_set(p->err, LV_KERR_SERIALIZATION, "%s is not valid base64.", path);
            p->failed = true;
            return;
        }
        *data_at = before;
        rec->data = lv_slice(NULL, lv_buf_len(&req->decoded) - before);
        if (rec->data.len > LV_STREAM_MAX_DATA)
            violation(p, NULL, rec->data.len, path, "Member must have length less than or equal to %u",
                      LV_STREAM_MAX_DATA);
        else if (rec->partition_key.len && rec->data.len + rec->partition_key.len > LV_STREAM_MAX_DATA)
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "A record's data and partition key take %zu bytes; the limit is %u (1 MiB).",
                 rec->data.len + rec->partition_key.len, LV_STREAM_MAX_DATA);
    }

    if (has_hash == 1) {
        snprintf(path, sizeof path, "%sexplicitHashKey", path_prefix);
        int rc = lv_kinesis_u128_parse(hash, &rec->hash_key);
        if (rc < 0)
            violation(p, &hash, 0, path, "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})");
        else if (rc > 0)
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value "
                 "was %.*s",
                 (int)hash.len, hash.ptr);
        else
            rec->has_hash_key = true;
    }
    if (has_order == 1 && !lv_kinesis_seq_pattern(order))
        violation(p, &order, 0, "sequenceNumberForOrdering",
                  "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})");
}

/* Points every record's data into the decoded buffer, now that it no
 * longer grows. */
static void place_data(lv_kinesis_req_t *req, const size_t *at)
{
    const char *base = lv_buf_data(&req->decoded);
    for (size_t i = 0; i < req->num_records; i++)
        req->records[i].data.ptr = req->records[i].data.len ? base + at[i] : "";
}

static void parse_put_record(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    stream_member(p, obj, true, true);
    req->records = lv_calloc(1, sizeof *req->records);
    req->num_records = 1;
    size_t at = 0;
    record_members(p, obj, "", &req->records[0], &at);
    place_data(req, &at);
}

static void parse_put_records(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    stream_member(p, obj, true, true);
    json_t *recs = json_object_get(obj, "Records");
    if (!recs || json_is_null(recs)) {
        violation(p, NULL, 0, "records", "Member must not be null");
        return;
    }
    if (!json_is_array(recs)) {
        serialization(p, "Records", "an array", recs);
        return;
    }
    size_t n = json_array_size(recs);
    if (n < 1 || n > LV_KINESIS_MAX_RECORDS) {
        char shown[32];
        snprintf(shown, sizeof shown, "[%zu records]", n);
        lv_slice_t s = lv_slice_cstr(shown);
        violation(p, &s, 0, "records", "Member must have length %s %u",
                  n < 1 ? "greater than or equal to" : "less than or equal to", n < 1 ? 1u : LV_KINESIS_MAX_RECORDS);
        return; /* members of a list this long are not worth reading */
    }
    req->records = lv_calloc(n, sizeof *req->records);
    req->num_records = n;
    size_t *at = lv_calloc(n, sizeof *at);
    size_t total = 0;
    for (size_t i = 0; i < n && !p->failed; i++) {
        json_t *r = json_array_get(recs, i);
        char prefix[40];
        snprintf(prefix, sizeof prefix, "records.%zu.member.", i + 1);
        if (!json_is_object(r)) {
            serialization(p, "Records[]", "an object", r);
            break;
        }
        record_members(p, r, prefix, &req->records[i], &at[i]);
        total += req->records[i].data.len + req->records[i].partition_key.len;
    }
    if (!p->failed) {
        place_data(req, at);
        if (total > LV_KINESIS_MAX_PUT_BYTES)
            rule(p, LV_KERR_INVALID_ARGUMENT, "Records size exceeds 5 MB limit (%zu bytes of data and keys).",
                 total);
    }
    free(at);
}

static const struct {
    const char *name;
    lv_kinesis_iter_type_t type;
} iter_types[] = {
    {"AT_SEQUENCE_NUMBER", LV_KITER_AT_SEQUENCE_NUMBER},
    {"AFTER_SEQUENCE_NUMBER", LV_KITER_AFTER_SEQUENCE_NUMBER},
    {"TRIM_HORIZON", LV_KITER_TRIM_HORIZON},
    {"LATEST", LV_KITER_LATEST},
    {"AT_TIMESTAMP", LV_KITER_AT_TIMESTAMP},
};

static void parse_get_shard_iterator(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    stream_member(p, obj, true, true);
    lv_slice_t shard_id, type, seq = {0};
    double ts = 0;
    int has_shard = get_string(p, obj, "ShardId", &shard_id);
    int has_type = get_string(p, obj, "ShardIteratorType", &type);
    int has_seq = get_string(p, obj, "StartingSequenceNumber", &seq);
    int has_ts = get_number(p, obj, "Timestamp", &ts);
    if (p->failed)
        return;

    if (has_shard == 0)
        violation(p, NULL, 0, "shardId", "Member must not be null");
    else if (check_text(p, shard_id, "shardId", 128, true)) {
        req->shard_id = shard_id;
        req->shard_valid = lv_kinesis_parse_shard_id(shard_id, &req->shard) == 0;
    }
    bool type_ok = false;
    if (has_type == 0) {
        violation(p, NULL, 0, "shardIteratorType", "Member must not be null");
    } else {
        for (size_t i = 0; i < sizeof iter_types / sizeof iter_types[0]; i++)
            if (lv_slice_eq_cstr(type, iter_types[i].name)) {
                req->iter_type = iter_types[i].type;
                type_ok = true;
            }
        if (!type_ok)
            violation(p, &type, 0, "shardIteratorType",
                      "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, "
                      "TRIM_HORIZON, LATEST, AT_TIMESTAMP]");
    }
    bool seq_ok = has_seq == 1 && lv_kinesis_seq_pattern(seq);
    if (has_seq == 1 && !seq_ok)
        violation(p, &seq, 0, "startingSequenceNumber",
                  "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})");
    if (!type_ok)
        return;

    bool by_seq = req->iter_type == LV_KITER_AT_SEQUENCE_NUMBER || req->iter_type == LV_KITER_AFTER_SEQUENCE_NUMBER;
    if (by_seq && has_seq == 0)
        rule(p, LV_KERR_INVALID_ARGUMENT, "Must specify a StartingSequenceNumber for iterator type %.*s.",
             (int)type.len, type.ptr);
    if (!by_seq && has_seq == 1)
        rule(p, LV_KERR_INVALID_ARGUMENT, "Request should not have a StartingSequenceNumber for iterator type %.*s.",
             (int)type.len, type.ptr);
    if (req->iter_type == LV_KITER_AT_TIMESTAMP && has_ts == 0)
        rule(p, LV_KERR_INVALID_ARGUMENT,
             "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no "
             "timestamp parameter.");
    if (req->iter_type != LV_KITER_AT_TIMESTAMP && has_ts == 1)
        rule(p, LV_KERR_INVALID_ARGUMENT, "Request should not have a Timestamp for iterator type %.*s.",
             (int)type.len, type.ptr);
    if (has_ts == 1) {
        if (!isfinite(ts))
            rule(p, LV_KERR_INVALID_ARGUMENT, "Timestamp must be a finite number of seconds.");
        else if (ts <= 0)
            req->timestamp_ms = 0;
        else if (ts >= 1e15) /* far past any record; keeps the conversion defined */
            req->timestamp_ms = (uint64_t)1e18;
        else
            req->timestamp_ms = (uint64_t)llround(ts * 1000.0);
    }
    if (by_seq && seq_ok && req->stream.len && req->shard_id.len) {
        unsigned seq_shard;
        char id[LV_KINESIS_SHARD_ID_MAX];
        if (lv_seqnum_parse(seq, &seq_shard, &req->seq) != 0)
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "StartingSequenceNumber %.*s used in GetShardIterator on shard %.*s in stream %.*s under account "
                 LV_KINESIS_ACCOUNT " is invalid.",
                 (int)seq.len, seq.ptr, (int)req->shard_id.len, req->shard_id.ptr, (int)req->stream.len,
                 req->stream.ptr);
        else if (req->shard_valid && seq_shard != req->shard) {
            lv_kinesis_shard_id(seq_shard, id);
            rule(p, LV_KERR_INVALID_ARGUMENT,
                 "Invalid StartingSequenceNumber. It encodes %s, while it was used in a call to a shard with %.*s",
                 id, (int)req->shard_id.len, req->shard_id.ptr);
        }
    }
}

static void parse_get_records(parser_t *p, json_t *obj)
{
    lv_kinesis_req_t *req = p->req;
    stream_member(p, obj, true, false);
    limit_member(p, obj, "Limit", "limit", LV_KINESIS_MAX_LIMIT);
    lv_slice_t it;
    int has = get_string(p, obj, "ShardIterator", &it);
    if (has == 0)
        violation(p, NULL, 0, "shardIterator", "Member must not be null");
    else if (has == 1 && check_text(p, it, "shardIterator", LV_KINESIS_MAX_ITERATOR, false))
        req->shard_iterator = it;
}

/* ======================================================================
 * Entry point
 * ====================================================================== */

int lv_kinesis_parse(lv_slice_t target, lv_slice_t body, lv_kinesis_req_t *req, lv_kinesis_error_t *err)
{
    memset(req, 0, sizeof *req);
    err->type = LV_KERR_NONE;
    lv_buf_clear(&err->message);

    size_t plen = sizeof LV_KINESIS_TARGET_PREFIX - 1;
    lv_slice_t name = target.len >= plen && memcmp(target.ptr, LV_KINESIS_TARGET_PREFIX, plen) == 0
                          ? lv_slice(target.ptr + plen, target.len - plen)
                          : lv_slice(NULL, 0);
    req->op = lv_kinesis_op_from_name(name);
    if (req->op == LV_KOP_UNKNOWN) {
        lv_kinesis_error_set(err, LV_KERR_UNKNOWN_OPERATION, "levee does not serve the operation %.*s",
                             (int)(target.len < VALUE_SHOWN ? target.len : VALUE_SHOWN), target.ptr ? target.ptr : "");
        return -1;
    }

    json_error_t jerr;
    json_t *doc = body.len ? json_loadb(body.ptr, body.len, JSON_ALLOW_NUL, &jerr) : json_object();
    if (!doc) {
        lv_kinesis_error_set(err, LV_KERR_SERIALIZATION, "The request body is not valid JSON: %s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
        return -1;
    }
    req->doc = doc;
    if (!json_is_object(doc)) {
        lv_kinesis_error_set(err, LV_KERR_SERIALIZATION, "The request body must be a JSON object.");
        lv_kinesis_req_free(req);
        return -1;
    }

    parser_t p = {.req = req, .err = err};
    switch (req->op) {
    case LV_KOP_CREATE_STREAM:
        parse_create(&p, doc);
        break;
    case LV_KOP_DELETE_STREAM:
    case LV_KOP_DESCRIBE_STREAM_SUMMARY:
        stream_member(&p, doc, true, true);
        break;
    case LV_KOP_DESCRIBE_STREAM:
        parse_describe(&p, doc);
        break;
    case LV_KOP_LIST_STREAMS:
        parse_list_streams(&p, doc);
        break;
    case LV_KOP_LIST_SHARDS:
        parse_list_shards(&p, doc);
        break;
    case LV_KOP_PUT_RECORD:
        parse_put_record(&p, doc);
        break;
    case LV_KOP_PUT_RECORDS:
        parse_put_records(&p, doc);
        break;
    case LV_KOP_GET_SHARD_ITERATOR:
        parse_get_shard_iterator(&p, doc);
        break;
    case LV_KOP_GET_RECORDS:
        parse_get_records(&p, doc);
        break;
    default:
        break;
    }

    int rc = 0;
    if (p.failed) {
        rc = -1;
    } else if (p.violations) {
        lv_kinesis_error_set(err, LV_KERR_VALIDATION, "%u validation error%s detected: ", p.violations,
                             p.violations == 1 ? "" : "s");
        lv_buf_append(&err->message, lv_buf_data(&p.listed), lv_buf_len(&p.listed));
        if (p.violations > VIOLATIONS_SHOWN)
            lv_buf_printf(&err->message, "; and %u more", p.violations - VIOLATIONS_SHOWN);
        rc = -1;
    } else if (p.rule != LV_KERR_NONE) {
        err->type = p.rule;
        lv_buf_clear(&err->message);
        lv_buf_append(&err->message, lv_buf_data(&p.rule_message), lv_buf_len(&p.rule_message));
        rc = -1;
    }
    lv_buf_free(&p.listed);
    lv_buf_free(&p.rule_message);
    if (rc != 0) {
        lv_kinesis_op_t op = req->op;
        lv_kinesis_req_free(req);
        req->op = op; /* the caller still counts the request by operation */
    }
    return rc;
}
