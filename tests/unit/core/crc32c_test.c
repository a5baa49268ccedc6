/* crc32c_test.c: CRC-32C against published vectors (the check value and the
 * iSCSI vectors of RFC 3720 appendix B.4), chaining, and the hardware and
 * table paths agreeing on every length 0..1024 at every misalignment. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/crc32c.h"
#include "test.h"

static void test_check_value(void)
{
    CHECK_EQ(lv_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(lv_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(lv_crc32c(0, NULL, 0), 0u);
    CHECK_EQ(lv_crc32c(0x12345678u, NULL, 0), 0x12345678u);
}

static void test_rfc3720_vectors(void)
{
    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    CHECK_EQ(lv_crc32c(0, buf, 32), 0x8A9136AAu);
    CHECK_EQ(lv_crc32c_sw(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    CHECK_EQ(lv_crc32c(0, buf, 32), 0x62A8AB43u);
    CHECK_EQ(lv_crc32c_sw(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    CHECK_EQ(lv_crc32c(0, buf, 32), 0x46DD794Eu);
    CHECK_EQ(lv_crc32c_sw(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    CHECK_EQ(lv_crc32c(0, buf, 32), 0x113FDB5Cu);
    CHECK_EQ(lv_crc32c_sw(0, buf, 32), 0x113FDB5Cu);
}

static void test_chaining(void)
{
    const char *s = "The quick brown fox jumps over the lazy dog, twice over.";
    size_t n = strlen(s);
    uint32_t whole = lv_crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++) {
        CHECK_EQ(lv_crc32c(lv_crc32c(0, s, cut), s + cut, n - cut), whole);
        CHECK_EQ(lv_crc32c_sw(lv_crc32c_sw(0, s, cut), s + cut, n - cut), whole);
    }
}

static void test_hw_matches_table(void)
{
    if (!lv_crc32c_hw_available()) {
        printf("crc32c: no SSE4.2 on this CPU; hardware path not compared\n");
        return;
    }
    enum { MAXLEN = 1024 };
    unsigned char *buf = malloc(MAXLEN + 16);
    srand(12345);
    for (size_t i = 0; i < MAXLEN + 16; i++)
        buf[i] = (unsigned char)rand();
    int bad = 0;
    for (size_t off = 0; off < 8 && !bad; off++) {
        for (size_t len = 0; len <= MAXLEN; len++) {
            uint32_t seed = (uint32_t)(len * 2654435761u);
            if (lv_crc32c_hw(seed, buf + off, len) != lv_crc32c_sw(seed, buf + off, len)) {
                fprintf(stderr, "  mismatch at offset %zu length %zu\n", off, len);
                bad = 1;
                break;
            }
        }
    }
    free(buf);
    CHECK(!bad);
}

static double seconds_for(uint32_t (*fn)(uint32_t, const void *, size_t), const void *buf, size_t len, int reps,
                          uint32_t *sink)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint32_t c = 0;
    for (int i = 0; i < reps; i++)
        c = fn(c, buf, len);
    clock_gettime(CLOCK_MONOTONIC, &b);
    *sink ^= c;
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Not a pass/fail check: prints the rate of each path, so a regression to
 * the table on a machine that has the instruction is visible in the log. */
static void test_report_speed(void)
{
    enum { LEN = 1 << 20, REPS = 64 };
    unsigned char *buf = malloc(LEN);
    memset(buf, 0x5a, LEN);
    uint32_t sink = 0;
    double sw = seconds_for(lv_crc32c_sw, buf, LEN, REPS, &sink);
    printf("crc32c: table %.0f MB/s", (double)LEN * REPS / sw / 1e6);
    if (lv_crc32c_hw_available()) {
        double hw = seconds_for(lv_crc32c_hw, buf, LEN, REPS, &sink);
        printf(", sse4.2 %.0f MB/s", (double)LEN * REPS / hw / 1e6);
    }
    printf(" (%08x)\n", sink);
    free(buf);
}

int main(void)
{
    LV_RUN(test_check_value);
    LV_RUN(test_rfc3720_vectors);
    LV_RUN(test_chaining);
    LV_RUN(test_hw_matches_table);
    LV_RUN(test_report_speed);
    return lv_test_summary();
}
