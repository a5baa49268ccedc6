/* seqnum.c: Kinesis sequence numbers (see seqnum.h). 128-bit arithmetic
 * with unsigned __int128: digits are produced by repeated division by ten
 * and read back by multiply-and-add with an overflow check. */
#include "stream/seqnum.h"

#define MARK ((unsigned __int128)1 << 120)
#define SHARD_LIMIT ((unsigned __int128)1 << 56) /* shard * 2^64 must stay below 2^120 */

size_t lv_seqnum_format(unsigned shard, uint64_t seq, char out[LV_SEQNUM_MAX])
{
    unsigned __int128 v = MARK + ((unsigned __int128)shard << 64) + seq;
    char rev[LV_SEQNUM_MAX];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

int lv_seqnum_parse(lv_slice_t s, unsigned *shard, uint64_t *seq)
{
    if (s.len == 0 || s.len >= LV_SEQNUM_MAX || s.ptr[0] == '0')
        return -1;
    unsigned __int128 v = 0;
    const unsigned __int128 max_before_digit = (~(unsigned __int128)0) / 10;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c < '0' || c > '9' || v > max_before_digit)
            return -1;
        unsigned __int128 next = v * 10 + (unsigned)(c - '0');
        if (next < v * 10)
            return -1;
        v = next;
    }
    if (v < MARK)
        return -1;
    v -= MARK;
    unsigned __int128 sh = v >> 64;
    if (sh >= SHARD_LIMIT || sh > 0xffffffffu)
        return -1;
    *shard = (unsigned)sh;
    *seq = (uint64_t)v;
    return 0;
}
