/* md5.c: MD5 as RFC 1321 specifies it: the message padded with 0x80, zeros
 * and its bit length to a multiple of 64 bytes, each 64-byte block mixed
 * into four 32-bit words by 64 steps of four round functions. Blocks are
 * read in place; only the last one or two, holding the padding, are copied. */
#include "core/md5.h"

#include <string.h>

/* Per-step additive constants: floor(abs(sin(i + 1)) * 2^32). */
static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/* Left-rotation amounts, four per round. */
static const uint8_t S[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

static inline uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void block(uint32_t h[4], const uint8_t *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    /* One step: a = b + ((a + f + K[i] + m[g]) <<< s), then the words turn. */
#define STEP(f, g)                                                      \
    do {                                                                \
        uint32_t sum = a + (f) + K[i] + m[g]; /* f reads b, c, d first */ \
        a = d;                                                          \
        d = c;                                                          \
        c = b;                                                          \
        b = b + rotl(sum, S[(i / 16) * 4 + i % 4]);                     \
    } while (0)
    unsigned i = 0;
    for (; i < 16; i++)
        STEP((b & c) | (~b & d), i);
    for (; i < 32; i++)
        STEP((d & b) | (~d & c), (5 * i + 1) % 16);
    for (; i < 48; i++)
        STEP(b ^ c ^ d, (3 * i + 5) % 16);
    for (; i < 64; i++)
        STEP(c ^ (b | ~d), (7 * i) % 16);
#undef STEP
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

void lv_md5(const void *data, size_t len, uint8_t out[16])
{
    uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    const uint8_t *p = data;
    size_t full = len / 64;
    for (size_t i = 0; i < full; i++)
        block(h, p + 64 * i);
    uint8_t tail[128] = {0};
    size_t rest = len % 64;
    if (rest)
        memcpy(tail, p + 64 * full, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 8 + i] = (uint8_t)(bits >> (8 * i));
    block(h, tail);
    if (tail_len == 128)
        block(h, tail + 64);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (8 * j));
}
