/* segment.h (private to src/stream): the record format of a shard's segment
 * files, and reading them back.
 *
 * A segment is a plain sequence of records, nothing before or between them:
 *
 *     [u32 length][u32 crc][u64 seq][u64 arrival_ms][u16 key_len][key][data]
 *
 * little-endian. length counts everything after the crc field (so it is
 * 18 + key_len + data_len); the CRC-32C covers the length field and those
 * bytes, so a flipped length is caught like a flipped data byte. key_len is
 * 1..LV_STREAM_MAX_KEY and key + data at most LV_STREAM_MAX_DATA, which
 * bounds length: anything outside is corruption, refused before a byte of
 * the record is read or allocated for. A segment file is named by the seq
 * of its first record (lv_seg_name), so a shard's files sort by position
 * and a record's seq is also checked against where it sits.
 *
 * Decoding is pure and zero-copy (slices point into the bytes given), which
 * is what lets recovery, reads, `levee check-data` and the fuzz driver share
 * it. The reader below wraps it for files: it reads a segment in large
 * chunks with pread, and can skip records reading only their headers (the
 * index rebuild at start, where CRCs of old segments are not checked). */
#ifndef LV_STREAM_SEGMENT_H
#define LV_STREAM_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/slice.h"
#include "stream/stream.h"

#define LV_SEG_FRAME_BYTES 8u  /* length, crc */
#define LV_SEG_FIXED_BYTES 18u /* seq, arrival_ms, key_len */
/* Enough bytes to read a record's length, seq, arrival and key length. */
#define LV_SEG_HEAD_BYTES (LV_SEG_FRAME_BYTES + LV_SEG_FIXED_BYTES)
/* The largest valid record, frame included. */
#define LV_SEG_MAX_RECORD (LV_SEG_HEAD_BYTES + LV_STREAM_MAX_DATA)

/* Decoder results besides a record's size. BAD_SEQ is used by scans: a
 * well-framed record whose seq is not the one its position calls for. */
enum { LV_SEG_CORRUPT = -1, LV_SEG_TORN = -2, LV_SEG_BAD_SEQ = -3, LV_SEG_IOERR = -4 };

/* One record. key and data point into the decoded bytes; both are empty
 * when only the head was decoded. */
typedef struct {
    uint64_t seq;
    uint64_t arrival_ms;
    lv_slice_t key;
    lv_slice_t data;
} lv_seg_record_t;

/* The bytes a record with this key and data takes on disk. */
static inline size_t lv_seg_record_size(size_t key_len, size_t data_len)
{
    return LV_SEG_HEAD_BYTES + key_len + data_len;
}

/* Writes the framed record at out, which has room for
 * lv_seg_record_size(key.len, data.len) bytes. The caller keeps key and data
 * within the limits above (the API checks them before anything is queued). */
void lv_seg_encode(char *out, uint64_t seq, uint64_t arrival_ms, lv_slice_t key, lv_slice_t data);

/* Decodes and CRC-checks the record at p[0..len). Returns its size, frame
 * included; LV_SEG_TORN when the bytes end inside it; LV_SEG_CORRUPT when
 * they can never be a valid record. */
ssize_t lv_seg_decode(const char *p, size_t len, lv_seg_record_t *rec);

/* Decodes only the head (seq, arrival, and the sizes) without the CRC:
 * needs LV_SEG_HEAD_BYTES (fewer: LV_SEG_TORN). Returns the record's size,
 * which may be more than len, or LV_SEG_CORRUPT for impossible sizes. */
ssize_t lv_seg_decode_head(const char *p, size_t len, lv_seg_record_t *rec);

/* Segment file names: the first seq, 20 digits, ".seg". */
#define LV_SEG_NAME_MAX 32
void lv_seg_name(uint64_t first_seq, char out[LV_SEG_NAME_MAX]);
/* Returns the first seq a file name stands for, or 0 if it is not a
 * segment name (seqs start at 1). */
uint64_t lv_seg_parse_name(const char *name);

/* Sequential reading of one segment, from a file or from memory.
 * Ownership: the reader owns its buffer (lv_seg_reader_free); a memory
 * reader borrows the bytes. Record slices returned by next stay valid until
 * the next call. */
typedef struct {
    int fd;               /* -1 for a memory reader */
    const char *mem;      /* memory reader: the segment */
    uint64_t end;         /* stop at this offset (file size, or acknowledged bytes) */
    uint64_t pos;         /* offset of the next record */
    char *buf;            /* file reader: bytes [buf_off, buf_off + buf_len) of the file */
    size_t buf_cap, buf_len;
    uint64_t buf_off;
    int err;              /* errno after LV_SEG_IOERR */
} lv_seg_reader_t;

void lv_seg_reader_file(lv_seg_reader_t *r, int fd, uint64_t start, uint64_t end);
void lv_seg_reader_mem(lv_seg_reader_t *r, const char *p, size_t len);
void lv_seg_reader_free(lv_seg_reader_t *r);

/* Reads the record at r->pos: the whole record, CRC-checked (verify), or
 * its head only. Returns its size and moves past it; 0 at r->end;
 * LV_SEG_TORN when the segment ends inside it; LV_SEG_CORRUPT; LV_SEG_IOERR
 * with r->err. After an error r->pos stays at the bad record. */
ssize_t lv_seg_reader_next(lv_seg_reader_t *r, bool verify, lv_seg_record_t *rec);

/* What a scan of a whole segment found. */
typedef struct {
    uint64_t records;          /* good records */
    uint64_t good_bytes;       /* end of the last good record: where a cut goes */
    uint64_t next_seq;         /* seq after the last good record */
    uint64_t first_arrival_ms; /* of the first and last good records; 0 if none */
    uint64_t last_arrival_ms;
    int problem;               /* 0, or LV_SEG_TORN / CORRUPT / BAD_SEQ / IOERR at good_bytes */
    int err;                   /* errno for LV_SEG_IOERR */
} lv_seg_scan_t;

/* Called for every good record with its offset (to build an index). */
typedef void (*lv_seg_record_cb)(void *arg, const lv_seg_record_t *rec, uint64_t off);

/* Reads records from r until its end or the first problem: a torn or
 * corrupt record, or one whose seq is not first_seq + its position. Only
 * heads are read unless verify. each may be NULL. */
void lv_seg_scan(lv_seg_reader_t *r, bool verify, uint64_t first_seq, lv_seg_scan_t *out, lv_seg_record_cb each,
                 void *arg);

/* A short description of a problem code ("torn record", ...). */
const char *lv_seg_problem_str(int problem);

#endif
