/* buf.h: a growable byte buffer with reserve / commit / consume.
 *
 * Used for connection input and output and for building text (metrics,
 * JSON). The pattern for reading is: lv_buf_reserve(b, n), read into
 * lv_buf_tail(b), lv_buf_commit(b, got). Consumed bytes at the front are
 * dropped lazily (the read offset moves; data is compacted on the next
 * reserve that needs room), so consuming is O(1).
 *
 * Ownership: the lv_buf_t owns its storage; lv_buf_free releases it. Slices
 * into a buffer are valid until the next reserve/append/free. */
#ifndef LV_CORE_BUF_H
#define LV_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/slice.h"

typedef struct {
    char *data;      /* storage, capacity bytes */
    size_t start;    /* first unconsumed byte */
    size_t end;      /* one past the last committed byte */
    size_t capacity;
} lv_buf_t;

#define LV_BUF_INIT ((lv_buf_t){0})

/* Pointer to and length of the unconsumed bytes. */
static inline char *lv_buf_data(const lv_buf_t *b) { return b->data ? b->data + b->start : b->data; }
static inline size_t lv_buf_len(const lv_buf_t *b) { return b->end - b->start; }
static inline lv_slice_t lv_buf_slice(const lv_buf_t *b) { return lv_slice(lv_buf_data(b), b->end - b->start); }

/* Makes room for at least n more bytes after the end (compacting or growing).
 * An impossible size (near SIZE_MAX) aborts, like running out of memory.
 * Appending bytes that live inside the same buffer is not allowed: growing
 * would free them first. */
void lv_buf_reserve(lv_buf_t *b, size_t n);

/* The writable space after the end, and how much of it there is. */
static inline char *lv_buf_tail(lv_buf_t *b) { return b->data ? b->data + b->end : b->data; }
static inline size_t lv_buf_room(const lv_buf_t *b) { return b->capacity - b->end; }

/* Marks n bytes written at the tail as part of the buffer. */
static inline void lv_buf_commit(lv_buf_t *b, size_t n) { b->end += n; }

/* Drops n bytes from the front. Emptying the buffer resets the offsets. */
void lv_buf_consume(lv_buf_t *b, size_t n);

/* Appends bytes, a NUL-terminated string, or printf-formatted text. */
void lv_buf_append(lv_buf_t *b, const void *p, size_t n);
void lv_buf_append_str(lv_buf_t *b, const char *s);
void lv_buf_printf(lv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lv_buf_vprintf(lv_buf_t *b, const char *fmt, va_list ap);

/* Appends the decimal form of v. */
void lv_buf_append_u64(lv_buf_t *b, unsigned long long v);

/* Empties the buffer, keeping its storage. */
static inline void lv_buf_clear(lv_buf_t *b) { b->start = b->end = 0; }

/* Releases the storage; the buffer is LV_BUF_INIT afterwards. */
void lv_buf_free(lv_buf_t *b);

#endif
