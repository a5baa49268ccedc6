/* md5_test.c: lv_md5 against the test suite of RFC 1321 (appendix A.5)
 * and against OpenSSL's MD5 for every length from 0 to 300 bytes (every
 * padding case: one and two final blocks, lengths 55, 56, 63, 64...) and
 * random contents; plus what it costs. Inputs are exactly sized heap copies
 * so ASan catches any read past the end. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/md5.h"
#include "core/mem.h"
#include "test.h"

static void hex(const uint8_t d[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_rfc1321_suite(void)
{
    static const struct {
        const char *in, *want;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);
        char *copy = lv_malloc(n ? n : 1);
        memcpy(copy, v[i].in, n);
        uint8_t d[16];
        char got[33];
        lv_md5(copy, n, d);
        hex(d, got);
        CHECK_STR(got, v[i].want);
        free(copy);
    }
}

static void test_against_openssl(void)
{
    srand(1321);
    for (size_t n = 0; n <= 300; n++)
        for (int round = 0; round < 4; round++) {
            unsigned char *in = lv_malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++)
                in[i] = (unsigned char)rand();
            uint8_t a[16];
            unsigned char b[EVP_MAX_MD_SIZE];
            unsigned int blen = 0;
            lv_md5(in, n, a);
            EVP_Digest(in, n, b, &blen, EVP_md5(), NULL);
            if (blen != 16 || memcmp(a, b, 16) != 0) {
                fprintf(stderr, "  length %zu differs from OpenSSL\n", n);
                lv_test_failed_now = 1;
                free(in);
                return;
            }
            free(in);
        }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Printed, not asserted: a 10-byte key, as a partition key usually is. */
static void test_cost(void)
{
    const char key[] = "tv-ad-2026";
    uint8_t d[16];
    unsigned sink = 0;
    enum { N = 1000000 };
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        lv_md5(key, sizeof key - 1, d);
        sink += d[i & 15];
    }
    double t1 = now_s();
    unsigned char b[EVP_MAX_MD_SIZE];
    unsigned int blen;
    for (int i = 0; i < N / 10; i++) {
        EVP_Digest(key, sizeof key - 1, b, &blen, EVP_md5(), NULL);
        sink += b[i & 15];
    }
    double t2 = now_s();
    printf("  10-byte key: lv_md5 %.0f ns, EVP_Digest(EVP_md5) %.0f ns (%u)\n", (t1 - t0) * 1e9 / N,
           (t2 - t1) * 1e9 / (N / 10), sink & 1);
}

int main(void)
{
    LV_RUN(test_rfc1321_suite);
    LV_RUN(test_against_openssl);
    LV_RUN(test_cost);
    return lv_test_summary();
}
