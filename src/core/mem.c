/* mem.c: the aborting allocators declared in mem.h. */
#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(size_t size)
{
    fprintf(stderr, "levee: fatal: out of memory allocating %zu bytes\n", size);
    abort();
}

void *lv_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

void *lv_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        out_of_memory(count * size);
    return p;
}

void *lv_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        out_of_memory(size);
    return p;
}

char *lv_strdup(const char *s)
{
    return lv_memdup0(s, strlen(s));
}

char *lv_strndup(const char *s, size_t len)
{
    return lv_memdup0(s, strnlen(s, len));
}

char *lv_memdup0(const void *p, size_t len)
{
    char *d = lv_malloc(len + 1);
    if (len)
        memcpy(d, p, len);
    d[len] = '\0';
    return d;
}
