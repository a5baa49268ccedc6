/* uuid.h: random request ids in the UUID version 4 text form, as AWS uses
 * them (e.g. "8476a536-e9f4-41e8-9739-2dfe598c3fcd").
 *
 * Ids are unique, not secret: each thread runs its own xoshiro256** stream
 * seeded once from getrandom, so making one costs a few nanoseconds and no
 * system call or lock. */
#ifndef LV_CORE_UUID_H
#define LV_CORE_UUID_H

#include <stdint.h>

#define LV_UUID_LEN 36

/* Writes LV_UUID_LEN characters and a terminating NUL to out. Any thread. */
void lv_uuid4(char out[LV_UUID_LEN + 1]);

/* 64 random bits from the calling thread's stream (not for secrets). */
uint64_t lv_random64(void);

#endif
