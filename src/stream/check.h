/* check.h: `levee check-data DIR [--repair]`, the offline verifier of the
 * stream logs in a data_dir (what redis-check-aof is to an AOF).
 *
 * It reads every stream under DIR/streams: meta.json, the shard
 * directories, and every record of every segment with its CRC, checking
 * that seqs follow each other within and across segment files. It prints a
 * report per stream and shard (segments, records, bytes, and each problem
 * with its file and offset). With repair, each damaged shard is cut at its
 * first bad record (the segment is truncated there and fsynced, and the
 * shard's later segments are removed), so levee can open it again with
 * everything before the damage; every cut and removal is printed.
 *
 * It refuses to run on a data_dir that a running levee holds (the
 * streams lock), since the last segments are being written. */
#ifndef LV_STREAM_CHECK_H
#define LV_STREAM_CHECK_H

#include <stdbool.h>
#include <stdio.h>

/* Exit codes, as `levee check-data` returns them. */
enum {
    LV_CHECK_CLEAN = 0,   /* nothing wrong, or everything wrong was repaired */
    LV_CHECK_DAMAGED = 1, /* damage found (and not repaired, or not repairable) */
    LV_CHECK_UNUSABLE = 2 /* DIR is not a data_dir, or levee is running on it */
};

/* Checks (and with repair, repairs) data_dir, writing the report to out
 * and problems that stop the check to err. Returns one of the codes above. */
int lv_stream_check_data(const char *data_dir, bool repair, FILE *out, FILE *err);

#endif
