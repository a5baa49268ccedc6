/* event_journal.h (private to functions/event_queue.c and its tests): the
 * record format of an async event journal and its replay.
 *
 * A journal is a sequence of records, each
 *
 *     [u32 length][u32 crc32c][u8 type][body]
 *
 * little-endian, where length counts the type byte and the body (so it is at
 * least 1) and the CRC-32C covers the same bytes. Bodies:
 *
 *     ACCEPT          u64 seq, u64 accepted_ms, u8 id_len, id, payload (the rest)
 *     ATTEMPT_FAILED  u64 seq, u32 attempts, u64 next_at_ms
 *     FINISHED        u64 seq, u8 outcome (SUCCEEDED or DEAD_LETTERED)
 *
 * seq numbers an event within its journal: ACCEPT records carry strictly
 * increasing values, and the other records refer to one by its seq, so
 * replay can find an event with a binary search and no hash table. Times
 * are Unix epoch milliseconds (wall clock: they must mean the same after a
 * restart). `attempts` counts the attempts that failed so far.
 *
 * Replay reads records from the start and stops at the first one that is
 * torn (runs past the end), corrupt (impossible length, CRC mismatch) or
 * meaningless (unknown type, a body of the wrong size, an ACCEPT whose seq
 * does not increase): since every record is written whole and acknowledged
 * only after the fsync that covers it, everything before that point is what
 * was acknowledged, and nothing after it can be trusted. The caller cuts
 * the file there.
 *
 * Both functions below are pure (no I/O, no globals), which is what lets
 * the tests cut a journal at every byte offset and the fuzzer feed it
 * anything. */
#ifndef LV_FUNCTIONS_EVENT_JOURNAL_H
#define LV_FUNCTIONS_EVENT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/slice.h"

enum { LV_EJ_ACCEPT = 1, LV_EJ_ATTEMPT_FAILED = 2, LV_EJ_FINISHED = 3 };
enum { LV_EJ_SUCCEEDED = 1, LV_EJ_DEAD_LETTERED = 2 };

#define LV_EJ_HEADER_BYTES 8u
/* The largest payload an event may carry (Lambda's limit for asynchronous
 * invocations). */
#define LV_EJ_MAX_PAYLOAD (1024u * 1024u)
/* The longest request id a record may hold (levee's are 36 characters). */
#define LV_EJ_MAX_ID 64u
/* No valid record is longer; a larger length field is corruption, caught
 * before anything is allocated or read for it. */
#define LV_EJ_MAX_RECORD (1u + 8u + 8u + 1u + LV_EJ_MAX_ID + LV_EJ_MAX_PAYLOAD)

/* One record, decoded. Slices point into the bytes that were decoded. */
typedef struct {
    uint8_t type;
    uint64_t seq;
    lv_slice_t request_id;  /* ACCEPT */
    uint64_t accepted_ms;   /* ACCEPT */
    lv_slice_t payload;     /* ACCEPT */
    uint32_t attempts;      /* ATTEMPT_FAILED */
    uint64_t next_at_ms;    /* ATTEMPT_FAILED */
    uint8_t outcome;        /* FINISHED */
} lv_ej_record_t;

/* Appends the framed record to out. The caller keeps request_id within
 * LV_EJ_MAX_ID and payload within LV_EJ_MAX_PAYLOAD (larger values are
 * truncated to the limit so the record stays decodable). */
void lv_ej_encode(lv_buf_t *out, const lv_ej_record_t *rec);

/* Decodes the record at p[0..len). Returns its size in bytes (header
 * included), LV_EJ_TORN when the bytes end inside the record, or
 * LV_EJ_CORRUPT when they can never be a valid record. */
enum { LV_EJ_TORN = -2, LV_EJ_CORRUPT = -1 };
ssize_t lv_ej_decode(const char *p, size_t len, lv_ej_record_t *rec);

/* An event that replay found accepted and not finished. */
typedef struct {
    uint64_t seq;
    lv_slice_t request_id;  /* into the replayed bytes */
    lv_slice_t payload;     /* into the replayed bytes */
    uint64_t accepted_ms;
    uint32_t attempts;      /* failed attempts so far */
    uint64_t next_at_ms;    /* 0: run as soon as possible */
} lv_ej_pending_t;

/* What replay found. Owns `pending` (not the bytes its slices point into). */
typedef struct {
    lv_ej_pending_t *pending;  /* in seq order */
    size_t num_pending;
    size_t records;            /* good records read */
    uint64_t max_seq;          /* highest seq accepted; 0 if none */
    size_t good_len;           /* end of the last good record: where to cut */
} lv_ej_replay_t;

/* Replays data[0..len) into out (zeroed first). Returns out->good_len. */
size_t lv_ej_replay(const char *data, size_t len, lv_ej_replay_t *out);

/* Frees what lv_ej_replay allocated and zeroes out. */
void lv_ej_replay_free(lv_ej_replay_t *out);

#endif
