/* slice.h: the {pointer, length} view used everywhere bytes are passed around.
 *
 * A slice never owns its bytes: it points into a buffer whose owner is named
 * by whoever hands the slice out (a connection's input buffer, a config
 * string, a cache object). It is not NUL-terminated. */
#ifndef LV_CORE_SLICE_H
#define LV_CORE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *ptr;
    size_t len;
} lv_slice_t;

/* A slice over a string literal or any NUL-terminated string. */
#define LV_SLICE_LIT(s) ((lv_slice_t){(s), sizeof(s) - 1})

static inline lv_slice_t lv_slice(const char *ptr, size_t len)
{
    return (lv_slice_t){ptr, len};
}

static inline lv_slice_t lv_slice_cstr(const char *s)
{
    return (lv_slice_t){s, s ? strlen(s) : 0};
}

/* Byte-for-byte equality. */
static inline bool lv_slice_eq(lv_slice_t a, lv_slice_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ASCII case-insensitive equality (header names, tokens). */
static inline bool lv_slice_eq_nocase(lv_slice_t a, lv_slice_t b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool lv_slice_eq_cstr(lv_slice_t a, const char *s)
{
    return lv_slice_eq(a, lv_slice_cstr(s));
}

#endif
