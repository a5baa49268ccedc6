/* json_text.c: JSON string escaping and UTF-8 validation (see
 * json_text.h).
 *
 * Escaping is on the hot path of every function request (each header,
 * query parameter and text body of the API Gateway event goes through it),
 * so plain ASCII is tested and copied eight bytes at a time, and the output
 * is written to reserved room in the buffer without a bounds check per
 * byte. Escapes follow RFC 8259: quote, backslash, control characters as
 * their short forms or \u00XX. */
#include "core/json_text.h"

#include <stdint.h>
#include <string.h>

/* The second byte's range depends on the first (table 3-7); every later
 * byte is 80..BF. */
int lv_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return -1;
    }
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n || p[i] < lo || p[i] > hi)
            return -i;
        lo = 0x80;
        hi = 0xbf;
    }
    return need + 1;
}

/* True for bytes a JSON string can hold as they are. DEL is allowed. */
static inline bool json_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* True if any of the 8 bytes in x is not json_plain: non-ASCII, a control
 * character, '"' or '\\'. Most header values and bodies are plain ASCII;
 * testing a word at a time lets those be copied 8 bytes per step. The
 * zero-byte test is the classic (v - 0x01..) & ~v & 0x80.. one, exact for
 * the yes/no answer. */
static inline bool needs_care(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t zero_quote = (quote - ones) & ~quote;
    uint64_t zero_backslash = (backslash - ones) & ~backslash;
    uint64_t below_space = (x - ones * 0x20) & ~x;
    return ((x | zero_quote | zero_backslash | below_space) & highs) != 0;
}

/* No input byte turns into more than 6 output bytes (\u00XX), so reserving
 * 6 per byte lets the loop write to the tail without checks. Long inputs
 * (bodies) are taken a block at a time so that bound never means reserving
 * six times a megabyte. A UTF-8 sequence may run up to 3 bytes past a block;
 * it still writes no more than its own length, inside the reserve. */
void lv_json_chars(lv_buf_t *b, const char *s, size_t n, bool lower)
{
    enum { BLOCK = 4096, WORST = 6 };
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t stop = n - i < BLOCK ? n : i + BLOCK;
        lv_buf_reserve(b, (stop - i) * WORST);
        char *start = lv_buf_tail(b), *d = start;
        while (i < stop) {
            if (!lower && stop - i >= 8) {
                uint64_t x;
                memcpy(&x, p + i, 8);
                if (!needs_care(x)) {
                    memcpy(d, &x, 8);
                    d += 8;
                    i += 8;
                    continue;
                }
            }
            unsigned char c = p[i];
            if (json_plain(c)) {
                *d++ = (char)(lower && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
                i++;
                continue;
            }
            if (c >= 0x80) {
                int k = lv_utf8_seq(p + i, n - i);
                if (k > 0) {
                    memcpy(d, p + i, (size_t)k);
                    d += k;
                    i += (size_t)k;
                } else {
                    memcpy(d, "\xef\xbf\xbd", 3);
                    d += 3;
                    i += (size_t)-k;
                }
                continue;
            }
            i++;
            *d++ = '\\';
            switch (c) {
            case '"': *d++ = '"'; break;
            case '\\': *d++ = '\\'; break;
            case '\b': *d++ = 'b'; break;
            case '\f': *d++ = 'f'; break;
            case '\n': *d++ = 'n'; break;
            case '\r': *d++ = 'r'; break;
            case '\t': *d++ = 't'; break;
            default:
                memcpy(d, "u00", 3);
                d[3] = hex[c >> 4];
                d[4] = hex[c & 15];
                d += 5;
            }
        }
        lv_buf_commit(b, (size_t)(d - start));
    }
}

/* True if the bytes can go into the event as a JSON string without loss. */
bool lv_utf8_text(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if (!((x | ((x - ones) & ~x)) & highs)) { /* all ASCII, no NUL */
                i += 8;
                continue;
            }
        }
        if (p[i] >= 0x80) {
            int k = lv_utf8_seq(p + i, n - i);
            if (k < 0)
                return false;
            i += (size_t)k;
        } else if (p[i] == 0) {
            return false;
        } else {
            i++;
        }
    }
    return true;
}

void lv_json_string(lv_buf_t *b, lv_slice_t s)
{
    lv_buf_append(b, "\"", 1);
    lv_json_chars(b, s.ptr, s.len, false);
    lv_buf_append(b, "\"", 1);
}
