/* crc32c.c: CRC-32C with the SSE4.2 instruction when the CPU has it, and a
 * slicing-by-8 table otherwise.
 *
 * Both work on the inverted register (the CRC's "~crc in, ~crc out"
 * convention), which is what lets callers chain calls over pieces of a
 * record. The hardware path aligns to 8 bytes with single-byte steps, then
 * folds 8 bytes per instruction; one dependent chain already runs at several
 * GB/s, far beyond what the disk behind a journal can take, so the
 * three-stream interleaving some libraries use is not worth its extra tables.
 *
 * The slicing-by-8 tables (8 KiB) are built once, on first use, under
 * pthread_once: table[k][b] is the CRC of byte b followed by k zero bytes,
 * so eight lookups fold eight input bytes at once. */
#include "core/crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY_REFLECTED 0x82F63B78u

static uint32_t tables[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = (c >> 1) ^ (POLY_REFLECTED & (0u - (c & 1u)));
        tables[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            tables[k][b] = (tables[k - 1][b] >> 8) ^ tables[0][tables[k - 1][b] & 0xff];
}

uint32_t lv_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&tables_once, build_tables);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ tables[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        /* Little-endian word order: the first byte of the block is the low
         * byte, the one the register folds first. */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
            tables[4][lo >> 24] ^ tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]] ^ tables[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ tables[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__)

bool lv_crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t lv_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi(c, *p++);
        len--;
    }
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c64 = __builtin_ia32_crc32di(c64, word);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return ~c;
}

#else

bool lv_crc32c_hw_available(void)
{
    return false;
}

uint32_t lv_crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    return lv_crc32c_sw(crc, data, len);
}

#endif

uint32_t lv_crc32c(uint32_t crc, const void *data, size_t len)
{
    if (lv_crc32c_hw_available())
        return lv_crc32c_hw(crc, data, len);
    return lv_crc32c_sw(crc, data, len);
}
