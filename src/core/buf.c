/* buf.c: growth policy and formatting for lv_buf_t (see buf.h). */
#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void lv_buf_reserve(lv_buf_t *b, size_t n)
{
    if (b->capacity - b->end >= n)
        return;
    size_t len = b->end - b->start;
    /* Compacting is enough when the consumed front would make the room. */
    if (b->start && b->capacity - len >= n && len <= b->capacity / 2) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return;
    }
    if (n > SIZE_MAX / 2 - len) {
        fprintf(stderr, "levee: fatal: buffer reservation of %zu bytes is impossible\n", n);
        abort();
    }
    size_t cap = b->capacity ? b->capacity : 256;
    while (cap - len < n)
        cap *= 2;
    if (b->start) {
        char *d = lv_malloc(cap);
        memcpy(d, b->data + b->start, len);
        free(b->data);
        b->data = d;
        b->start = 0;
        b->end = len;
    } else {
        b->data = lv_realloc(b->data, cap);
    }
    b->capacity = cap;
}

void lv_buf_consume(lv_buf_t *b, size_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0;
}

void lv_buf_append(lv_buf_t *b, const void *p, size_t n)
{
    if (!n)
        return;
    lv_buf_reserve(b, n);
    memcpy(b->data + b->end, p, n);
    b->end += n;
}

void lv_buf_append_str(lv_buf_t *b, const char *s)
{
    lv_buf_append(b, s, strlen(s));
}

void lv_buf_vprintf(lv_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    lv_buf_reserve(b, 64);
    int n = vsnprintf(lv_buf_tail(b), lv_buf_room(b), fmt, ap);
    if (n >= 0 && (size_t)n >= lv_buf_room(b)) {
        lv_buf_reserve(b, (size_t)n + 1);
        n = vsnprintf(lv_buf_tail(b), lv_buf_room(b), fmt, ap2);
    }
    va_end(ap2);
    if (n > 0)
        b->end += (size_t)n;
}

void lv_buf_printf(lv_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void lv_buf_append_u64(lv_buf_t *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lv_buf_append(b, tmp + i, sizeof tmp - i);
}

void lv_buf_free(lv_buf_t *b)
{
    free(b->data);
    *b = LV_BUF_INIT;
}
