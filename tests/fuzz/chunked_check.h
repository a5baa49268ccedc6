/* chunked_check.h: the chunked-body check both HTTP fuzz drivers run.
 * Static, included once per driver: the drivers are separate programs. */
#ifndef LV_FUZZ_CHUNKED_CHECK_H
#define LV_FUZZ_CHUNKED_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

/* Decodes body[0..len) whole, then in two pieces cut at `cut`; both must give
 * the same result, decoded bytes and leftover bytes. */
static void check_chunked(const char *body, size_t len, size_t cut)
{
    char *a = malloc(len ? len : 1), *b = malloc(len ? len : 1);
    memcpy(a, body, len);
    lv_http_chunked_t d = {0};
    size_t alen = len;
    ssize_t ra = lv_http_chunked_decode(&d, a, &alen);
    if (alen > len || (ra >= 0 && alen + (size_t)ra > len))
        abort();

    lv_http_chunked_t e = {0};
    size_t out = 0, n1 = cut;
    memcpy(b, body, cut);
    ssize_t rb = lv_http_chunked_decode(&e, b, &n1);
    out = n1;
    if (rb == LV_HTTP_INCOMPLETE) {
        /* the decoded bytes stay at b[0..out); the next piece goes after them */
        size_t n2 = len - cut;
        memcpy(b + out, body + cut, n2);
        rb = lv_http_chunked_decode(&e, b + out, &n2);
        out += n2; /* any leftover now sits at b + out */
    } else if (rb >= 0) {
        /* finished inside the first piece: the rest of the body follows */
        memcpy(b + out + (size_t)rb, body + cut, len - cut);
        rb += (ssize_t)(len - cut);
    }
    if (ra != rb)
        abort();
    if (ra != LV_HTTP_ERROR && (alen != out || memcmp(a, b, alen) != 0))
        abort();
    if (ra >= 0 && memcmp(a + alen, b + out, (size_t)ra) != 0)
        abort();
    free(a);
    free(b);
}

#endif
