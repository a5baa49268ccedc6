/* crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum that frames records in levee's journals and stream logs (the same
 * one iSCSI, ext4 and Kafka use, so a torn or flipped record is caught with
 * the strength those formats rely on).
 *
 * On x86-64 CPUs with SSE4.2 the `crc32` instruction does the work, 8 bytes
 * per instruction; elsewhere a slicing-by-8 table does. Both give the same
 * values; which one runs is decided per call from the CPU's feature bits
 * (a cached load), so a binary built on one machine runs right on another. */
#ifndef LV_CORE_CRC32C_H
#define LV_CORE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extends crc (the value returned for the bytes before; 0 to start) over
 * data[0..len). Chaining is exact: lv_crc32c(lv_crc32c(0, a), b) equals the
 * CRC of a followed by b. lv_crc32c(0, "123456789", 9) == 0xE3069283.
 * data may be NULL when len is 0. Any thread. */
uint32_t lv_crc32c(uint32_t crc, const void *data, size_t len);

/* The two implementations, for tests and benchmarks. lv_crc32c_hw must only
 * be called when lv_crc32c_hw_available() is true. */
uint32_t lv_crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t lv_crc32c_hw(uint32_t crc, const void *data, size_t len);
bool lv_crc32c_hw_available(void);

#endif
