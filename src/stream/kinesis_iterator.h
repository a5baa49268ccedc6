/* kinesis_iterator.h: Kinesis shard iterators as levee makes them (private
 * to src/stream/kinesis_*.c).
 *
 * An iterator names a stream (by name and by the random id it got at
 * creation, so a deleted and re-created stream's old iterators are
 * refused), a shard, a position (a sequence number, or an arrival time for
 * AT_TIMESTAMP until the first read turns it into a sequence number) and
 * the wall-clock time it was issued (iterators expire). These fields are
 * packed into a fixed binary layout, followed by an HMAC-SHA256 of them
 * under a secret key, and sent as base64: a client can read nothing useful
 * from it and can neither forge one nor point one at another stream or
 * shard. At most 191 bytes, 256 characters of base64 (Kinesis allows 512).
 *
 * The key is 32 random bytes in DATA_DIR/api/iterator.key, created (mode
 * 0600) on the first start, so iterators stay valid across restarts. */
#ifndef LV_STREAM_KINESIS_ITERATOR_H
#define LV_STREAM_KINESIS_ITERATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"
#include "stream/stream.h"

#define LV_KINESIS_KEY_BYTES 32u

typedef struct {
    uint8_t bytes[LV_KINESIS_KEY_BYTES];
} lv_kinesis_key_t;

typedef struct {
    char name[LV_STREAM_MAX_NAME];   /* the stream's name, name_len bytes, not NUL-terminated */
    size_t name_len;                 /* 1..LV_STREAM_MAX_NAME */
    uint64_t stream_id;              /* lv_stream_info().id */
    unsigned shard;
    bool at_time;                    /* position is Unix ms (AT_TIMESTAMP), not a sequence number */
    uint64_t position;               /* the next record to read: its seq, or the earliest arrival time */
    uint64_t issued_ms;              /* Unix ms (wall clock: iterators outlive a restart) */
} lv_kinesis_iter_t;

/* Reads DATA_DIR/api/iterator.key, creating the directory and the key
 * (from getrandom, written to a temporary file, fsynced, renamed) when it
 * does not exist. Returns 0, or -1 with a message in err (unreadable, not
 * exactly 32 bytes, cannot be created). */
int lv_kinesis_key_load(const char *data_dir, lv_kinesis_key_t *key, char *err, size_t errlen);

/* Appends the base64 iterator for it. it->name_len must be 1..128. */
void lv_kinesis_iter_encode(const lv_kinesis_key_t *key, const lv_kinesis_iter_t *it, lv_buf_t *out);

/* Reads an iterator made by lv_kinesis_iter_encode under the same key.
 * Returns 0 with *it filled, or -1 if text is not one (bad base64, wrong
 * length or version, or an HMAC that does not match). */
int lv_kinesis_iter_decode(const lv_kinesis_key_t *key, lv_slice_t text, lv_kinesis_iter_t *it);

#endif
