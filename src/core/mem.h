/* mem.h: allocation that never returns NULL.
 *
 * Running out of memory is not a case callers handle: these wrappers log and
 * abort, so every other module can treat allocation as infallible. Memory
 * budgets (limits.*, cache.max_bytes) are what keep levee away from that
 * point; this is the last line, not the policy. */
#ifndef LV_CORE_MEM_H
#define LV_CORE_MEM_H

#include <stddef.h>

/* malloc/calloc/realloc that abort with a message on failure. */
void *lv_malloc(size_t size);
void *lv_calloc(size_t count, size_t size);
void *lv_realloc(void *ptr, size_t size);

/* A NUL-terminated copy of s (lv_strdup) or of its first len bytes
 * (lv_strndup, which also stops at an embedded NUL). Free with free(). */
char *lv_strdup(const char *s);
char *lv_strndup(const char *s, size_t len);

/* A NUL-terminated copy of exactly len bytes, embedded NULs included. */
char *lv_memdup0(const void *p, size_t len);

#endif
