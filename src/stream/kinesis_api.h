/* kinesis_api.h: the Kinesis Data Streams API on the api listener, over
 * levee's streams (stream/stream.h).
 *
 * Requests are POST / with X-Amz-Target: Kinesis_20131202.<Operation> and
 * a JSON 1.1 body (Content-Type application/x-amz-json-1.1); any
 * credentials are accepted, signatures are not checked (the api listener
 * is loopback only). Operations: CreateStream, DeleteStream,
 * DescribeStream, DescribeStreamSummary, ListStreams, ListShards,
 * PutRecord, PutRecords, GetShardIterator, GetRecords; StreamARN is
 * accepted wherever StreamName is. Answers and errors have Kinesis's
 * shapes: HTTP 400 (500 for InternalFailure) with
 * {"__type":"...","message":"..."}. docs/kinesis.md has the details and
 * the differences from Kinesis.
 *
 * Sequence numbers are stream/seqnum.h's. Shard iterators are
 * kinesis_iterator.h's, signed with a key kept in DATA_DIR/api/, and expire
 * 5 minutes after they are issued (LEVEE_TEST_ITERATOR_TTL_MS, read once
 * by lv_kinesis_api_new, shortens that for tests).
 *
 * Metrics: levee_kinesis_requests_total{operation, result}, result "ok" or
 * the error type.
 *
 * Lifetimes: the api borrows the streams and the metrics registry, which
 * must outlive it. A request waiting for an append, a read or a creation
 * holds a reference to its stream, and the api; free the api only after the
 * listener's connections are closed and the streams have stopped (which
 * completes every append and read in flight). */
#ifndef LV_STREAM_KINESIS_API_H
#define LV_STREAM_KINESIS_API_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"
#include "metrics/metrics.h"
#include "stream/stream.h"

typedef struct lv_kinesis_api lv_kinesis_api_t;

/* Builds the API over streams, loading (or creating) the iterator key in
 * data_dir. Returns NULL with a message in err if the key cannot be read
 * or made. */
lv_kinesis_api_t *lv_kinesis_api_new(lv_streams_t *streams, const char *data_dir, lv_metrics_t *metrics, char *err,
                                     size_t errlen);

void lv_kinesis_api_free(lv_kinesis_api_t *api);

/* True if an X-Amz-Target value is for Kinesis (Kinesis_20131202.*). */
bool lv_kinesis_is_target(lv_slice_t target);

/* If req carries a Kinesis X-Amz-Target, handles it (answering now or
 * later, on req's loop) and returns true; otherwise returns false and req
 * is untouched. On a loop thread. */
bool lv_kinesis_api_handle(lv_kinesis_api_t *api, lv_http_req_t *req);

#endif
