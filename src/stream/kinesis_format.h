/* kinesis_format.h: the small text forms of the Kinesis API (private to
 * src/stream/kinesis_*.c): 128-bit hash keys as decimal strings, shard ids,
 * stream ARNs, timestamps, the error body, and the opaque NextToken of the
 * list operations.
 *
 * Every function here is pure (no I/O, no global state), so the request
 * parser, the answers and their tests share one definition of each form. */
#ifndef LV_STREAM_KINESIS_FORMAT_H
#define LV_STREAM_KINESIS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"

#define LV_KINESIS_ACCOUNT "000000000000"
#define LV_KINESIS_DEFAULT_REGION "us-east-1"

/* Room for the decimal form of any 128-bit number and its NUL. */
#define LV_KINESIS_U128_MAX 40
/* Room for "shardId-" + 12 digits and a NUL (shard indexes are < 2^32). */
#define LV_KINESIS_SHARD_ID_MAX 24

/* The error types the API answers with (the JSON "__type"). */
typedef enum {
    LV_KERR_NONE = 0,
    LV_KERR_RESOURCE_NOT_FOUND,
    LV_KERR_RESOURCE_IN_USE,
    LV_KERR_VALIDATION,
    LV_KERR_INVALID_ARGUMENT,
    LV_KERR_EXPIRED_ITERATOR,
    LV_KERR_THROUGHPUT_EXCEEDED,
    LV_KERR_SERIALIZATION,
    LV_KERR_UNKNOWN_OPERATION,
    LV_KERR_LIMIT_EXCEEDED,
    LV_KERR_INTERNAL_FAILURE,
    LV_KERR_COUNT
} lv_kinesis_err_t;

/* "ResourceNotFoundException", ... ("ok" for LV_KERR_NONE). */
const char *lv_kinesis_err_name(lv_kinesis_err_t e);

/* The HTTP status of an error type: 500 for InternalFailure, 400 else. */
int lv_kinesis_err_status(lv_kinesis_err_t e);

/* Appends {"__type":TYPE,"message":MESSAGE}; the message may hold request
 * bytes and is escaped. */
void lv_kinesis_error_json(lv_buf_t *out, lv_kinesis_err_t e, lv_slice_t message);

/* Writes the decimal form of v and a NUL; returns its length. */
size_t lv_kinesis_u128_format(unsigned __int128 v, char out[LV_KINESIS_U128_MAX]);

/* Reads a HashKey: the pattern 0|([1-9]\d{0,38}). Returns 0 with *v set; 1
 * when it matches the pattern but is above 2^128 - 1; -1 when it does not
 * match the pattern. */
int lv_kinesis_u128_parse(lv_slice_t s, unsigned __int128 *v);

/* True if s matches the Kinesis SequenceNumber pattern 0|([1-9]\d{0,128}). */
bool lv_kinesis_seq_pattern(lv_slice_t s);

/* Writes "shardId-%012u" and a NUL; returns its length. */
size_t lv_kinesis_shard_id(unsigned shard, char out[LV_KINESIS_SHARD_ID_MAX]);

/* Reads "shardId-" followed by 1 to 12 decimal digits. Returns 0 with
 * *shard set, -1 otherwise. */
int lv_kinesis_parse_shard_id(lv_slice_t s, unsigned *shard);

/* True if s is a valid stream name: [a-zA-Z0-9_.-]{1,128}. */
bool lv_kinesis_valid_stream_name(lv_slice_t s);

/* Splits arn:aws[-a-z]*:kinesis:REGION:ACCOUNT:stream/NAME into region
 * (empty, or [a-z0-9-]{1,32}) and name (a valid stream name), both pointing
 * into arn. ACCOUNT is 12 digits, any of them (levee has one account).
 * Returns 0, or -1 if arn is not of that form. */
int lv_kinesis_parse_arn(lv_slice_t arn, lv_slice_t *region, lv_slice_t *name);

/* Appends "arn:aws:kinesis:REGION:000000000000:stream/NAME"; an empty region
 * is us-east-1. Both are plain ASCII by the time they get here. */
void lv_kinesis_arn(lv_buf_t *out, lv_slice_t region, lv_slice_t name);

/* Appends Unix milliseconds as JSON epoch seconds with a fraction:
 * 1700000000123 -> 1700000000.123 (what the SDKs read as a timestamp). */
void lv_kinesis_timestamp(lv_buf_t *out, uint64_t ms);

/* Counts the Unicode characters of UTF-8 text (bytes that do not start a
 * sequence are not counted). */
size_t lv_kinesis_utf8_chars(lv_slice_t s);

/* NextToken of ListStreams and ListShards: base64 of a short text naming
 * where the next page starts. The streams token holds the last stream name
 * listed; the shards token holds the stream and the last shard listed.
 * Tokens are not secret: anything they could name can be named directly.
 * Both parsers write the name into name_out (LV_STREAM_MAX_NAME bytes,
 * not NUL-terminated) and return 0, or -1 for a token they did not make. */
void lv_kinesis_streams_token(lv_buf_t *out, lv_slice_t last_name);
int lv_kinesis_parse_streams_token(lv_slice_t token, char *name_out, size_t *name_len);
void lv_kinesis_shards_token(lv_buf_t *out, lv_slice_t stream, unsigned last_shard);
int lv_kinesis_parse_shards_token(lv_slice_t token, char *name_out, size_t *name_len, unsigned *last_shard);

#endif
