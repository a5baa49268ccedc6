/* redirect.h: the redirect table, a CSV of code,url loaded once at start.
 *
 * File format (UTF-8 text):
 *   - one row per line, "code,url"; lines end in \n or \r\n; the last line
 *     may lack its line end; a UTF-8 byte order mark at the very start is
 *     skipped (spreadsheets write one);
 *   - the first row may be the header, exactly `code,url`; it is skipped;
 *   - blank lines (nothing, or only spaces and tabs) and lines whose first
 *     byte is '#' are ignored (quote a code that starts with '#');
 *   - a field may be double-quoted, RFC 4180 style: inside quotes a comma
 *     is data and "" is one literal quote. A quoted field ends on its own
 *     line (neither a code nor a URL may contain a line break), and a quote
 *     inside an unquoted field is an error;
 *   - exactly two fields per row. Nothing is trimmed: spaces are data.
 * A code is 1 to 256 bytes with no control characters; it is matched byte
 * for byte (case-sensitive, no decoding). A URL is either an absolute
 * http:// or https:// URL with a host, or a path starting with a single '/'
 * ("//host" and "/\host" are refused: browsers read them as another host).
 * Every URL byte is visible ASCII (0x21-0x7E): control characters, space
 * and raw non-ASCII bytes are refused, so a URL can go into a Location
 * header as it is, with no way to inject a header. A code that appears
 * twice is an error naming both lines.
 *
 * Errors read "line N: problem" (N counts from 1), or "path: OS error" when
 * the file cannot be read. An empty file is a valid, empty table.
 *
 * Layout: all codes and URLs live in one arena (each code immediately
 * followed by its URL), indexed by an open-addressing hash table (XXH3,
 * linear probing, at most 70% full) whose 16-byte slots hold a hash tag,
 * the arena offset and both lengths. A lookup hashes the code once and
 * usually touches one slot and the arena bytes; it allocates nothing.
 * Files up to 4 GiB.
 *
 * Ownership and threads: the table owns its memory; URLs handed out by
 * lookups point into it and stay valid until lv_redirect_table_free. The
 * table never changes after loading, so any number of threads may look up
 * concurrently without locks. */
#ifndef LV_GATEWAY_REDIRECT_H
#define LV_GATEWAY_REDIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/slice.h"

typedef struct lv_redirect_table lv_redirect_table_t;

/* Longest code accepted. */
#define LV_REDIRECT_CODE_MAX 256

/* Loads the CSV at path. Returns the table, or NULL with "line N: problem"
 * (or "path: OS error") in err, NUL-terminated and truncated to errlen. */
lv_redirect_table_t *lv_redirect_table_load(const char *path, char *err, size_t errlen);

/* The same from len bytes of CSV in memory (which are copied; data need
 * not outlive the call nor be NUL-terminated). */
lv_redirect_table_t *lv_redirect_table_parse(const char *data, size_t len, char *err, size_t errlen);

/* Finds code; on success sets *url (not NUL-terminated, valid for the
 * table's lifetime) and returns true. */
bool lv_redirect_table_lookup(const lv_redirect_table_t *t, lv_slice_t code, lv_slice_t *url);

/* Number of rows. */
size_t lv_redirect_table_count(const lv_redirect_table_t *t);

/* Bytes of memory held by the table (arena and hash slots), for metrics. */
size_t lv_redirect_table_memory(const lv_redirect_table_t *t);

/* Calls fn once per row, in no particular order. The slices are valid for
 * the table's lifetime. */
void lv_redirect_table_foreach(const lv_redirect_table_t *t,
                               void (*fn)(void *ctx, lv_slice_t code, lv_slice_t url), void *ctx);

/* Releases the table. NULL is fine. */
void lv_redirect_table_free(lv_redirect_table_t *t);

#endif
