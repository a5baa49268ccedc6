/* uuid.c: per-thread xoshiro256** streams for request ids (see uuid.h). */
#include "core/uuid.h"

#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static __thread uint64_t state[4];
static __thread bool seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void seed(void)
{
    if (getrandom(state, sizeof state, 0) != (ssize_t)sizeof state) {
        /* Only before the entropy pool is ready: ids need uniqueness, and
         * time plus the thread's address is unique enough for that. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
        state[1] = (uint64_t)(uintptr_t)&seeded;
        state[2] = 0x9e3779b97f4a7c15u;
        state[3] = 0xbf58476d1ce4e5b9u;
    }
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1;
    seeded = true;
}

uint64_t lv_random64(void)
{
    if (!seeded)
        seed();
    uint64_t result = rotl(state[1] * 5, 7) * 9;
    uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

void lv_uuid4(char out[LV_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = lv_random64(), lo = lv_random64();
    hi = (hi & ~0xf000ull) | 0x4000ull;                      /* version 4 */
    lo = (lo & ~(3ull << 62)) | (2ull << 62);                /* variant 10 */
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(hi >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
}
