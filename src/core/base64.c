/* base64.c: RFC 4648 base64 with the standard alphabet (see base64.h).
 *
 * Encoding writes straight into the buffer's tail: the output size is known
 * up front, so there is one reserve and no per-byte bounds check.
 *
 * Decoding first settles the shape of the input from its length and its
 * trailing '=' (at most two, and only where they complete a 4-character
 * group), so the main loop can take whole groups of four without looking
 * for padding. Each group goes through a 256-entry table (see sextet) with
 * one validity branch per group. Nothing is committed to the buffer until
 * the whole input has been checked, which is what leaves `out` untouched on
 * error. */
#include "core/base64.h"

#include <stdint.h>

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Sextet value of each byte with bit 6 set (V), or 0 for a byte outside the
 * alphabet. Marking the valid entries rather than the invalid ones lets the
 * table default to zero, and AND-ing four lookups keeps bit 6 only when all
 * four are valid. */
#define V(x) (0x40 | (x))
#define VALID 0x40
static const uint8_t sextet[256] = {
    ['A'] = V(0), ['B'] = V(1), ['C'] = V(2), ['D'] = V(3), ['E'] = V(4), ['F'] = V(5), ['G'] = V(6),
    ['H'] = V(7), ['I'] = V(8), ['J'] = V(9), ['K'] = V(10), ['L'] = V(11), ['M'] = V(12), ['N'] = V(13),
    ['O'] = V(14), ['P'] = V(15), ['Q'] = V(16), ['R'] = V(17), ['S'] = V(18), ['T'] = V(19), ['U'] = V(20),
    ['V'] = V(21), ['W'] = V(22), ['X'] = V(23), ['Y'] = V(24), ['Z'] = V(25), ['a'] = V(26), ['b'] = V(27),
    ['c'] = V(28), ['d'] = V(29), ['e'] = V(30), ['f'] = V(31), ['g'] = V(32), ['h'] = V(33), ['i'] = V(34),
    ['j'] = V(35), ['k'] = V(36), ['l'] = V(37), ['m'] = V(38), ['n'] = V(39), ['o'] = V(40), ['p'] = V(41),
    ['q'] = V(42), ['r'] = V(43), ['s'] = V(44), ['t'] = V(45), ['u'] = V(46), ['v'] = V(47), ['w'] = V(48),
    ['x'] = V(49), ['y'] = V(50), ['z'] = V(51), ['0'] = V(52), ['1'] = V(53), ['2'] = V(54), ['3'] = V(55),
    ['4'] = V(56), ['5'] = V(57), ['6'] = V(58), ['7'] = V(59), ['8'] = V(60), ['9'] = V(61), ['+'] = V(62),
    ['/'] = V(63),
};

void lv_base64_encode(lv_slice_t in, lv_buf_t *out)
{
    size_t n = in.len;
    if (!n)
        return;
    size_t need = lv_base64_encoded_len(n);
    lv_buf_reserve(out, need);
    const uint8_t *s = (const uint8_t *)in.ptr;
    char *d = lv_buf_tail(out);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = alphabet[v >> 18];
        *d++ = alphabet[(v >> 12) & 63];
        *d++ = alphabet[(v >> 6) & 63];
        *d++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *d++ = alphabet[v >> 18];
        *d++ = alphabet[(v >> 12) & 63];
        *d++ = '=';
        *d++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *d++ = alphabet[v >> 18];
        *d++ = alphabet[(v >> 12) & 63];
        *d++ = alphabet[(v >> 6) & 63];
        *d++ = '=';
    }
    lv_buf_commit(out, need);
}

int lv_base64_decode(lv_slice_t in, lv_buf_t *out, bool strict)
{
    const uint8_t *s = (const uint8_t *)in.ptr;
    size_t n = in.len;
    if (!n)
        return 0;

    size_t pad = 0;
    if (s[n - 1] == '=')
        pad = (n >= 2 && s[n - 2] == '=') ? 2 : 1;
    /* Padding only ever completes a group; without it, a lone character in
     * the last group cannot carry a whole byte. A third '=' from the end, or
     * one in the middle, is caught by the table below. */
    if (pad ? n % 4 != 0 : (strict ? n % 4 != 0 : n % 4 == 1))
        return -1;

    size_t data = n - pad;  /* characters that carry bits */
    size_t groups = data / 4, rest = data % 4;
    size_t len = groups * 3 + (rest ? rest - 1 : 0);
    lv_buf_reserve(out, len);
    uint8_t *d = (uint8_t *)lv_buf_tail(out);

    for (size_t g = 0; g < groups; g++, s += 4) {
        uint32_t a = sextet[s[0]], b = sextet[s[1]], c = sextet[s[2]], e = sextet[s[3]];
        if (!(a & b & c & e & VALID))
            return -1;
        a &= 63, b &= 63, c &= 63, e &= 63;
        uint32_t v = a << 18 | b << 12 | c << 6 | e;
        *d++ = (uint8_t)(v >> 16);
        *d++ = (uint8_t)(v >> 8);
        *d++ = (uint8_t)v;
    }
    if (rest == 2) {
        uint32_t a = sextet[s[0]], b = sextet[s[1]];
        if (!(a & b & VALID))
            return -1;
        a &= 63, b &= 63;
        /* Bits below the last whole byte must be zero for the input to be
         * the one encoding of its bytes (RFC 4648 3.5); only strict cares. */
        if (strict && (b & 0x0f))
            return -1;
        *d++ = (uint8_t)(a << 2 | b >> 4);
    } else if (rest == 3) {
        uint32_t a = sextet[s[0]], b = sextet[s[1]], c = sextet[s[2]];
        if (!(a & b & c & VALID))
            return -1;
        a &= 63, b &= 63, c &= 63;
        if (strict && (c & 0x03))
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6;
        *d++ = (uint8_t)(v >> 16);
        *d++ = (uint8_t)(v >> 8);
    }
    lv_buf_commit(out, len);
    return 0;
}
