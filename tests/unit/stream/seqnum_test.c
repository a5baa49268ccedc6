/* seqnum_test.c: sequence numbers round-trip, sort as numbers within a
 * shard, name their shard, and every malformed string is refused. */
#include <string.h>

#include "stream/seqnum.h"
#include "test.h"

static void test_round_trip(void)
{
    static const unsigned shards[] = {0, 1, 7, 1023, 65535};
    static const uint64_t seqs[] = {0, 1, 2, 9, 10, 999999, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof shards / sizeof shards[0]; i++)
        for (size_t j = 0; j < sizeof seqs / sizeof seqs[0]; j++) {
            char buf[LV_SEQNUM_MAX];
            size_t n = lv_seqnum_format(shards[i], seqs[j], buf);
            CHECK_EQ(n, strlen(buf));
            CHECK_EQ(n, 37);
            unsigned sh = 99;
            uint64_t seq = 0;
            CHECK_EQ(lv_seqnum_parse(lv_slice(buf, n), &sh, &seq), 0);
            CHECK_EQ(sh, shards[i]);
            CHECK(seq == seqs[j]);
        }
}

static void test_order(void)
{
    char a[LV_SEQNUM_MAX], b[LV_SEQNUM_MAX];
    for (uint64_t s = 1; s < 5000; s += 7) {
        lv_seqnum_format(3, s, a);
        lv_seqnum_format(3, s + 1, b);
        CHECK(strcmp(a, b) < 0); /* same length, so byte order is numeric order */
    }
    lv_seqnum_format(0, UINT64_MAX, a);
    lv_seqnum_format(1, 1, b);
    CHECK(strcmp(a, b) < 0);
}

static void test_refused(void)
{
    unsigned sh;
    uint64_t seq;
    static const char *bad[] = {
        "", "0", "01329227995784915872903807060280344577", "abc", "1329227995784915872903807060280344577x",
        "-1329227995784915872903807060280344577", "1", "49590338271490256608559692538361571095921575989136588898",
        "1329227995784915872903807060280344575" /* 2^120 - 1 */, "340282366920938463463374607431768211456",
        "999999999999999999999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lv_seqnum_parse(lv_slice_cstr(bad[i]), &sh, &seq) == 0) {
            fprintf(stderr, "  accepted %s\n", bad[i]);
            lv_test_failed_now = 1;
        }
}

int main(void)
{
    LV_RUN(test_round_trip);
    LV_RUN(test_order);
    LV_RUN(test_refused);
    return lv_test_summary();
}
