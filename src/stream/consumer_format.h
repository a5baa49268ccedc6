/* consumer_format.h: the bytes a stream consumer produces and reads back
 * (private to src/stream/consumer*.c, and to their tests and fuzz driver):
 *
 *   - the Kinesis event a function receives, as Lambda builds it for a
 *     Kinesis event source mapping;
 *   - the checkpoint file, one per consumer and shard, which says where the
 *     consumer resumes;
 *   - the dead-letter line written for a batch whose retries are spent.
 *
 * Everything here is a pure function of its arguments: no I/O, no clock,
 * no global state, safe on any thread. */
#ifndef LV_STREAM_CONSUMER_FORMAT_H
#define LV_STREAM_CONSUMER_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"
#include "stream/stream.h"

/* Lambda's limit on a synchronous invocation's payload. An event is never
 * built bigger than this (a single record always fits: its key and data are
 * at most LV_STREAM_MAX_DATA bytes). */
#define LV_CONSUMER_MAX_EVENT (6u * 1024u * 1024u)

/* The fixed parts of every record in an event: where the records come from. */
typedef struct {
    lv_slice_t stream;   /* the stream's name ([a-zA-Z0-9_.-], at most LV_STREAM_MAX_NAME) */
    unsigned shard;
} lv_consumer_source_t;

/* Kinesis's name for a shard, "shardId-" and the index in 12 digits. */
#define LV_SHARD_ID_MAX 32
size_t lv_consumer_shard_id(unsigned shard, char out[LV_SHARD_ID_MAX]);

/* Appends the event {"Records":[...]} for recs[0..n) to out, in order:
 * per record kinesis.{kinesisSchemaVersion, partitionKey, sequenceNumber
 * (seqnum.h), data (base64), approximateArrivalTimestamp (seconds with the
 * milliseconds as a fraction)}, eventSource, eventVersion, eventID
 * (SHARDID:SEQNUM), eventName, invokeIdentityArn, awsRegion and
 * eventSourceARN. Partition keys that are not valid UTF-8 get U+FFFD where
 * the bad bytes were (a JSON string cannot carry them). */
void lv_consumer_event(lv_buf_t *out, lv_consumer_source_t src, const lv_stream_record_t *recs, size_t n);

/* At most how many bytes rec adds to an event built by lv_consumer_event
 * (the envelope {"Records":[]} is LV_CONSUMER_EVENT_ENVELOPE bytes). Summing
 * this while filling a batch keeps the event under LV_CONSUMER_MAX_EVENT. */
#define LV_CONSUMER_EVENT_ENVELOPE 14u
size_t lv_consumer_event_record_max(lv_consumer_source_t src, lv_slice_t partition_key, size_t data_len);

/* ---- checkpoints --------------------------------------------------------
 *
 * A checkpoint is a small text file, so that an operator can read it:
 *
 *     levee-consumer-checkpoint 1
 *     stream clicks
 *     stream-id 5f0c2a9e11d4b7c3
 *     shard 0
 *     next-seq 1042
 *     last-arrival-ms 1763802000123
 *     crc32c 4b7b134d
 *
 * next-seq is the sequence number the consumer reads next: every record
 * before it was processed (or dead-lettered, or expired). last-arrival-ms is
 * the arrival time of the last record processed, 0 if none. The CRC-32C
 * covers every byte before the "crc32c" line. The form is canonical (one
 * encoding per value: decimal without leading zeros, lower-case hex, one
 * space, '\n' after every line, nothing after the last), so any change to
 * a file is either a parse error or a CRC mismatch. */

typedef struct {
    char stream[LV_STREAM_MAX_NAME + 1];  /* NUL-terminated */
    uint64_t stream_id;                   /* lv_stream_info_t.id: a re-created stream differs */
    unsigned shard;
    uint64_t next_seq;                    /* >= 1 */
    uint64_t last_arrival_ms;
} lv_checkpoint_t;

/* A checkpoint file is never longer than this. */
#define LV_CHECKPOINT_MAX_BYTES 512u

/* Appends the file's bytes for cp (stream must be a valid stream name). */
void lv_checkpoint_encode(lv_buf_t *out, const lv_checkpoint_t *cp);

/* Reads a checkpoint file. Returns NULL with *cp filled, or why the bytes
 * are not one (a static string, for an error message). Never reads outside
 * data[0..len). */
const char *lv_checkpoint_decode(const char *data, size_t len, lv_checkpoint_t *cp);

/* ---- dead letters ------------------------------------------------------- */

typedef struct {
    lv_slice_t consumer;       /* the consumer's name */
    lv_slice_t function;       /* the function's name */
    lv_consumer_source_t src;
    const lv_stream_record_t *records;
    size_t n;                  /* >= 1 */
    unsigned attempts;         /* invocations made */
    lv_slice_t error_type;     /* e.g. "Runtime.ExitError"; may be empty */
    lv_slice_t error;          /* the function's error payload: kept as JSON when it is JSON,
                                  as a string otherwise */
    uint64_t now_ms;           /* Unix ms, for "timestamp" */
} lv_consumer_dead_letter_t;

/* Appends one JSON line (ending in '\n') describing a batch given up on:
 * the consumer, stream and shard, the first and last sequence numbers, the
 * error, and the records themselves (as in the event, data in base64), so
 * the batch can be replayed by hand. The shape follows the record Lambda
 * sends to an on-failure destination (requestContext, responseContext,
 * KinesisBatchInfo) with levee's additions. */
void lv_consumer_dead_letter_line(lv_buf_t *out, const lv_consumer_dead_letter_t *dl);

#endif
