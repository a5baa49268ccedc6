/* fuzz_stream_record.c: libFuzzer driver for the stream segment format
 * (stream/segment.h) and meta.json (stream/store.h).
 *
 * The first byte picks how the rest is used:
 *
 *   0 mod 3: the bytes are a segment as found on disk. Decoding record
 *            after record must stay inside the bytes; every record decoded
 *            re-encodes to exactly the same bytes (the format has one
 *            spelling), and its head decodes to the same size and fields.
 *            A whole-segment scan (from memory, CRC-checked) must stop at
 *            a record boundary found by that walk, and a heads-only scan
 *            never stops earlier than the checked one.
 *
 *   1 mod 3: a script of records (key and data lengths, a seq step),
 *            encoded into a well-framed segment, then cut and possibly hit
 *            by one flipped byte, both taken from the script. Random bytes
 *            almost never carry a valid CRC, so this is what reaches the
 *            scan's bookkeeping. Its result is checked against a model that
 *            knows where each record ends: the scan keeps exactly the
 *            records wholly before the damage, and stops at the first seq
 *            that does not follow.
 *
 *   2 mod 3: meta.json text. Parsing must not crash; what parses must
 *            encode and parse back to the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "stream/segment.h"
#include "stream/store.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_raw(const char *p, size_t len)
{
    size_t pos = 0, boundaries_cap = 64, nb = 0;
    size_t *boundaries = malloc(boundaries_cap * sizeof *boundaries);
    boundaries[nb++] = 0;
    uint64_t first_seq = 0;
    char *re = malloc(LV_SEG_MAX_RECORD);
    while (pos < len) {
        lv_seg_record_t r, h;
        ssize_t n = lv_seg_decode(p + pos, len - pos, &r);
        if (n < 0) {
            REQUIRE(n == LV_SEG_TORN || n == LV_SEG_CORRUPT);
            break;
        }
        REQUIRE(n >= (ssize_t)LV_SEG_HEAD_BYTES + 1 && (size_t)n <= len - pos && (size_t)n <= LV_SEG_MAX_RECORD);
        REQUIRE(r.key.ptr >= p + pos && r.data.ptr + r.data.len == p + pos + (size_t)n);
        REQUIRE(r.key.len >= 1 && r.key.len <= LV_STREAM_MAX_KEY);
        REQUIRE(lv_seg_record_size(r.key.len, r.data.len) == (size_t)n);
        lv_seg_encode(re, r.seq, r.arrival_ms, r.key, r.data);
        REQUIRE(memcmp(re, p + pos, (size_t)n) == 0);
        REQUIRE(lv_seg_decode_head(p + pos, LV_SEG_HEAD_BYTES, &h) == n);
        REQUIRE(h.seq == r.seq && h.arrival_ms == r.arrival_ms);
        if (pos == 0)
            first_seq = r.seq;
        pos += (size_t)n;
        if (nb == boundaries_cap) {
            boundaries_cap *= 2;
            boundaries = realloc(boundaries, boundaries_cap * sizeof *boundaries);
        }
        boundaries[nb++] = pos;
    }
    free(re);
    lv_seg_reader_t rd;
    lv_seg_scan_t full, heads;
    lv_seg_reader_mem(&rd, p, len);
    lv_seg_scan(&rd, true, first_seq, &full, NULL, NULL);
    REQUIRE(full.good_bytes <= len);
    REQUIRE((full.problem == 0) == (full.good_bytes == len));
    bool on_boundary = false;
    for (size_t i = 0; i < nb; i++)
        on_boundary |= boundaries[i] == full.good_bytes;
    REQUIRE(on_boundary);
    lv_seg_reader_mem(&rd, p, len);
    lv_seg_scan(&rd, false, first_seq, &heads, NULL, NULL);
    REQUIRE(heads.good_bytes >= full.good_bytes && heads.good_bytes <= len);
    REQUIRE(heads.records >= full.records);
    free(boundaries);
}

/* Script: per record 4 bytes: key length (1 + b0 % 40), data length
 * (b1 | b2 << 8, then % 3000), seq step (b3 % 8 == 0 ? 2 : 1, so a gap now
 * and then). The last 5 bytes: cut position and flip position (16 bits
 * each, modulo the segment size) and whether to flip. */
static void check_script(const uint8_t *d, size_t size)
{
    if (size < 5)
        return;
    const uint8_t *tail = d + size - 5;
    size_t nrec = (size - 5) / 4;
    if (nrec > 64)
        nrec = 64;
    lv_buf_t b = LV_BUF_INIT;
    size_t ends[64];
    bool follows[64];
    uint64_t seq = 7;
    char key[64], payload[3000];
    memset(key, 'k', sizeof key);
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)i;
    for (size_t i = 0; i < nrec; i++) {
        const uint8_t *s = d + 4 * i;
        size_t klen = 1 + s[0] % 40, dlen = (size_t)(s[1] | s[2] << 8) % 3000;
        bool gap = s[3] % 8 == 0 && i > 0;
        if (gap)
            seq++;
        follows[i] = !gap;
        size_t rsize = lv_seg_record_size(klen, dlen);
        lv_buf_reserve(&b, rsize);
        lv_seg_encode(lv_buf_tail(&b), seq, 1000 + i, lv_slice(key, klen), lv_slice(payload, dlen));
        lv_buf_commit(&b, rsize);
        ends[i] = lv_buf_len(&b);
        seq++;
    }
    size_t total = lv_buf_len(&b);
    size_t cut = total ? (size_t)(tail[0] | tail[1] << 8) % (total + 1) : 0;
    size_t flip_at = total ? (size_t)(tail[2] | tail[3] << 8) % total : 0;
    bool flip = tail[4] & 1 && flip_at < cut;
    char *seg = lv_buf_data(&b);
    if (flip)
        seg[flip_at] ^= (char)(1 + (tail[4] >> 1));
    size_t damage = flip ? flip_at : cut;
    /* The model: records wholly before the damage, up to the first gap. */
    size_t keep = 0;
    while (keep < nrec && ends[keep] <= damage && (keep == 0 || follows[keep]))
        keep++;
    lv_seg_reader_t rd;
    lv_seg_scan_t scan;
    lv_seg_reader_mem(&rd, seg, cut);
    lv_seg_scan(&rd, true, 7, &scan, NULL, NULL);
    REQUIRE(scan.records == keep);
    REQUIRE(scan.good_bytes == (keep ? ends[keep - 1] : 0));
    REQUIRE((scan.problem == 0) == (scan.good_bytes == cut));
    if (scan.problem == LV_SEG_BAD_SEQ)
        REQUIRE(keep < nrec && !follows[keep]);
    lv_buf_free(&b);
}

static void check_meta(const char *p, size_t len)
{
    lv_stream_meta_t m, back;
    char err[256];
    if (lv_stream_meta_parse(p, len, &m, err, sizeof err) != 0) {
        REQUIRE(err[0] != '\0');
        return;
    }
    lv_buf_t b = LV_BUF_INIT;
    lv_stream_meta_encode(&m, &b);
    REQUIRE(lv_stream_meta_parse(lv_buf_data(&b), lv_buf_len(&b), &back, err, sizeof err) == 0);
    REQUIRE(memcmp(&m, &back, sizeof m) == 0);
    lv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: check_raw(p, len); break;
    case 1: check_script(data + 1, len); break;
    default: check_meta(p, len); break;
    }
    return 0;
}
