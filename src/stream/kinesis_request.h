/* kinesis_request.h: a Kinesis API request, from X-Amz-Target and JSON body
 * to a checked C struct (private to src/stream/kinesis_*.c, and what the
 * fuzz driver fuzz_kinesis_request exercises).
 *
 * lv_kinesis_parse does every check that needs no stream: the operation,
 * the JSON syntax and member types (SerializationException), the model's
 * constraints (ValidationException, all of them reported together in the
 * AWS "N validation errors detected: ..." form), and the rules between
 * members (InvalidArgumentException, LimitExceededException). What needs
 * the stream (does it exist, is the shard there, is a sequence number
 * past the end) is the caller's.
 *
 * Ownership: a parsed request owns its JSON document and the decoded
 * record data; every slice in it points into them (or into static text)
 * and stays valid until lv_kinesis_req_free. The body given to
 * lv_kinesis_parse is not referenced after it returns. */
#ifndef LV_STREAM_KINESIS_REQUEST_H
#define LV_STREAM_KINESIS_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"
#include "stream/kinesis_format.h"
#include "stream/stream.h"

#define LV_KINESIS_TARGET_PREFIX "Kinesis_20131202."
#define LV_KINESIS_MAX_RECORDS 500u           /* PutRecords */
#define LV_KINESIS_MAX_PUT_BYTES (5u << 20)   /* PutRecords: data + keys of all records */
#define LV_KINESIS_MAX_LIMIT 10000u           /* every Limit / MaxResults */
#define LV_KINESIS_MAX_ITERATOR 512u          /* ShardIterator length */
#define LV_KINESIS_DEFAULT_SHARDS 4u          /* CreateStream without ShardCount, or ON_DEMAND */

typedef enum {
    LV_KOP_CREATE_STREAM,
    LV_KOP_DELETE_STREAM,
    LV_KOP_DESCRIBE_STREAM,
    LV_KOP_DESCRIBE_STREAM_SUMMARY,
    LV_KOP_LIST_STREAMS,
    LV_KOP_LIST_SHARDS,
    LV_KOP_PUT_RECORD,
    LV_KOP_PUT_RECORDS,
    LV_KOP_GET_SHARD_ITERATOR,
    LV_KOP_GET_RECORDS,
    LV_KOP_UNKNOWN,                  /* not an operation levee serves */
    LV_KOP_COUNT
} lv_kinesis_op_t;

/* "CreateStream", ... ("unknown" for LV_KOP_UNKNOWN). */
const char *lv_kinesis_op_name(lv_kinesis_op_t op);

/* The operation named by the part of X-Amz-Target after the prefix. */
lv_kinesis_op_t lv_kinesis_op_from_name(lv_slice_t name);

typedef enum {
    LV_KITER_TRIM_HORIZON,
    LV_KITER_LATEST,
    LV_KITER_AT_SEQUENCE_NUMBER,
    LV_KITER_AFTER_SEQUENCE_NUMBER,
    LV_KITER_AT_TIMESTAMP,
} lv_kinesis_iter_type_t;

typedef struct {
    lv_slice_t partition_key;        /* 1..256 characters and bytes */
    lv_slice_t data;                 /* decoded from base64 */
    bool has_hash_key;               /* ExplicitHashKey given: use hash_key, not MD5 of the key */
    unsigned __int128 hash_key;
} lv_kinesis_record_t;

typedef struct {
    lv_kinesis_op_t op;
    /* The stream, from StreamName or StreamARN (which must agree when both
     * are given) or from a ListShards NextToken; empty when the operation
     * has none (ListStreams, GetRecords without StreamARN). */
    lv_slice_t stream;
    lv_slice_t region;               /* from StreamARN; empty means us-east-1 */

    unsigned shard_count;            /* CreateStream: 1..1024 */
    unsigned limit;                  /* Limit / MaxResults, with the operation's default */

    /* DescribeStream / ListShards: list shards whose id sorts after this
     * text (ExclusiveStartShardId, ShardFilter AFTER_SHARD_ID, NextToken). */
    bool has_start_shard;
    lv_slice_t start_shard;
    /* ListStreams: list names after this one (ExclusiveStartStreamName or
     * NextToken). */
    lv_slice_t start_stream;

    /* GetShardIterator. shard_valid: ShardId is one of levee's ids (its
     * index in shard); otherwise the shard does not exist, whatever the
     * stream. */
    lv_slice_t shard_id;
    bool shard_valid;
    unsigned shard;
    lv_kinesis_iter_type_t iter_type;
    uint64_t seq;                    /* AT/AFTER_SEQUENCE_NUMBER: the position in shard */
    uint64_t timestamp_ms;           /* AT_TIMESTAMP, Unix ms */

    lv_slice_t shard_iterator;       /* GetRecords */

    lv_kinesis_record_t *records;    /* PutRecord (1) and PutRecords (1..500) */
    size_t num_records;

    /* private */
    void *doc;                       /* the json_t document */
    lv_buf_t decoded;                /* every record's data */
    char token_name[LV_STREAM_MAX_NAME];
    char token_shard[LV_KINESIS_SHARD_ID_MAX];
} lv_kinesis_req_t;

typedef struct {
    lv_kinesis_err_t type;           /* LV_KERR_NONE when the request is good */
    lv_buf_t message;
} lv_kinesis_error_t;

/* Parses and checks a request. target is the X-Amz-Target value (with
 * its prefix), body the JSON (empty means {}). Returns 0 with *req filled,
 * or -1 with err->type and err->message set and nothing in *req but its
 * op (LV_KOP_UNKNOWN when the target names none), for counting. Either way
 * call lv_kinesis_req_free and lv_kinesis_error_free afterwards. */
int lv_kinesis_parse(lv_slice_t target, lv_slice_t body, lv_kinesis_req_t *req, lv_kinesis_error_t *err);

void lv_kinesis_req_free(lv_kinesis_req_t *req);
void lv_kinesis_error_free(lv_kinesis_error_t *err);

/* Sets err to type and a printf-formatted message (replacing any). */
void lv_kinesis_error_set(lv_kinesis_error_t *err, lv_kinesis_err_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
