/* md5.h: MD5 (RFC 1321) of a byte string, one call.
 *
 * Kinesis maps every partition key to a shard by the MD5 of the key, so
 * every captured record and every PutRecords entry is hashed. Through
 * OpenSSL's EVP interface a short key costs about 450 ns, mostly in setting
 * up and tearing down a digest context; this plain implementation needs no
 * context and no allocation. Not for anything where MD5's weakness matters:
 * it only spreads keys. */
#ifndef LV_CORE_MD5_H
#define LV_CORE_MD5_H

#include <stddef.h>
#include <stdint.h>

/* Writes the 16-byte digest of data[0..len) to out. */
void lv_md5(const void *data, size_t len, uint8_t out[16]);

#endif
