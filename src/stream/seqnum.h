/* seqnum.h: Kinesis sequence numbers as levee writes them.
 *
 * A record's position is (shard, seq), seq counting from 1 within its shard
 * (stream.h). Kinesis clients see it as a decimal string; levee's is the
 * decimal form of the 128-bit number 2^120 + shard * 2^64 + seq, so that
 *   - numbers increase with seq within a shard, and compare as numbers;
 *   - every shard has its own range, so a number names its shard and one
 *     given for another shard is recognised as such;
 *   - all numbers have the same length (37 digits), well inside the
 *     Kinesis pattern 0|([1-9]\d{0,128}).
 * Shard iterators and consumer events both use these functions, so a number
 * means the same everywhere. */
#ifndef LV_STREAM_SEQNUM_H
#define LV_STREAM_SEQNUM_H

#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* Room for a formatted number and its NUL. */
#define LV_SEQNUM_MAX 41

/* Writes the decimal string for (shard, seq) and a NUL into out; returns its
 * length. */
size_t lv_seqnum_format(unsigned shard, uint64_t seq, char out[LV_SEQNUM_MAX]);

/* Reads a number written by lv_seqnum_format. Returns 0 with *shard and
 * *seq set, or -1 if s is not one (not decimal, leading zeros, out of range,
 * or not of levee's form). */
int lv_seqnum_parse(lv_slice_t s, unsigned *shard, uint64_t *seq);

#endif
