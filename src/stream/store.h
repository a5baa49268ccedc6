/* store.h (private to src/stream): the layout of DATA_DIR/streams/ and the
 * metadata file of a stream, shared by the engine (stream.c) and
 * `levee check-data` (check.c).
 *
 *     DATA_DIR/streams/
 *         ~lock                         flock'd by the levee using the directory
 *         NAME/                         one stream
 *             meta.json                 its fixed facts (lv_stream_meta_t)
 *             0000/ 0001/ ...           one directory per shard (4 digits)
 *                 00000000000000000001.seg   segments, named by first seq
 *         NAME~new-ID/                  a create interrupted by a crash
 *         NAME~deleted-ID/              a delete interrupted by a crash
 *
 * '~' is not allowed in stream names, so nothing levee writes for itself
 * can be taken for a stream. A stream directory appears under its name only
 * complete: it is built under NAME~new-ID (shard directories, meta.json,
 * all fsynced) and renamed. It leaves the same way: renamed to
 * NAME~deleted-ID first, then removed. Leftovers of either are removed at
 * the next start.
 *
 * meta.json is JSON: {"format": 1, "name", "id" (16 hex digits),
 * "created_ms", "shards", "retention_ms", "durability": "fsync"|"batch"};
 * unknown keys are ignored so a later version can add some. It is replaced
 * atomically (temp file, fsync, rename, directory fsync). */
#ifndef LV_STREAM_STORE_H
#define LV_STREAM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/slice.h"
#include "stream/stream.h"

#define LV_STORE_LOCK_FILE "~lock"
#define LV_STORE_META_FILE "meta.json"
#define LV_STORE_META_MAX (64u * 1024u) /* a larger meta.json is damage */

typedef struct {
    char name[LV_STREAM_MAX_NAME + 1];
    uint64_t id;
    uint64_t created_ms;
    unsigned shards;
    int64_t retention_ms;
    lv_durability_t durability;
} lv_stream_meta_t;

/* True for [a-zA-Z0-9_.-]{1,128} other than "." and "..". */
bool lv_stream_name_ok(lv_slice_t name);

/* Appends meta as the JSON text of meta.json (with a final newline). */
void lv_stream_meta_encode(const lv_stream_meta_t *m, lv_buf_t *out);

/* Parses meta.json's text. Returns 0, or -1 with a reason in err. */
int lv_stream_meta_parse(const char *p, size_t len, lv_stream_meta_t *m, char *err, size_t errlen);

/* Replaces dirfd/meta.json atomically. Returns 0 or an errno. */
int lv_stream_meta_write(int dirfd, const lv_stream_meta_t *m);

/* Reads dirfd/meta.json. Returns 0; an errno when it cannot be read; or
 * EINVAL when its content is wrong (reason in err either way). */
int lv_stream_meta_read(int dirfd, lv_stream_meta_t *m, char *err, size_t errlen);

/* A shard's directory name. */
#define LV_STORE_SHARD_NAME_MAX 16
void lv_store_shard_name(unsigned shard, char out[LV_STORE_SHARD_NAME_MAX]);

/* fsync of a directory (makes names created or removed in it durable).
 * Returns 0 or an errno. */
int lv_store_sync_dir(int dirfd);

/* Removes parentfd/name and everything under it. Returns 0 or an errno
 * (ENOENT when there was nothing). */
int lv_store_remove_tree(int parentfd, const char *name);

/* mkdir -p. Returns 0 or an errno. */
int lv_store_mkdirs(const char *path);

/* The segments of a shard directory: first seqs, ascending, in *firsts
 * (caller frees). Entries that are not segment names are passed to
 * `other` (may be NULL). Returns 0 or an errno. */
int lv_store_list_segments(int shard_dirfd, uint64_t **firsts, size_t *n,
                           void (*other)(void *arg, const char *name), void *arg);

/* Wall-clock Unix milliseconds. */
uint64_t lv_store_wall_ms(void);

#endif
