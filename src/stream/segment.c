/* segment.c: the segment record codec and the segment reader (see
 * segment.h for the format). The reader keeps one window of the file in a
 * buffer and refills it with one pread of at least CHUNK bytes whenever the
 * record it needs is not wholly inside, so scanning costs a system call per
 * CHUNK, not per record. */
#include "stream/segment.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/mem.h"

#define CHUNK (256u * 1024u)

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* The CRC covers the length field and the body, skipping the CRC field. */
static uint32_t record_crc(const unsigned char *rec, uint32_t length)
{
    return lv_crc32c(lv_crc32c(0, rec, 4), rec + LV_SEG_FRAME_BYTES, length);
}

void lv_seg_encode(char *out, uint64_t seq, uint64_t arrival_ms, lv_slice_t key, lv_slice_t data)
{
    unsigned char *p = (unsigned char *)out;
    uint32_t length = (uint32_t)(LV_SEG_FIXED_BYTES + key.len + data.len);
    put_u32(p, length);
    put_u64(p + 8, seq);
    put_u64(p + 16, arrival_ms);
    put_u16(p + 24, (uint16_t)key.len);
    if (key.len)
        memcpy(p + LV_SEG_HEAD_BYTES, key.ptr, key.len);
    if (data.len)
        memcpy(p + LV_SEG_HEAD_BYTES + key.len, data.ptr, data.len);
    put_u32(p + 4, record_crc(p, length));
}

ssize_t lv_seg_decode_head(const char *data, size_t len, lv_seg_record_t *rec)
{
    const unsigned char *p = (const unsigned char *)data;
    if (len < LV_SEG_HEAD_BYTES)
        return LV_SEG_TORN;
    uint32_t length = get_u32(p);
    if (length < LV_SEG_FIXED_BYTES + 1 || length > LV_SEG_FIXED_BYTES + LV_STREAM_MAX_DATA)
        return LV_SEG_CORRUPT;
    uint16_t key_len = get_u16(p + 24);
    if (key_len < 1 || key_len > LV_STREAM_MAX_KEY || key_len > length - LV_SEG_FIXED_BYTES)
        return LV_SEG_CORRUPT;
    rec->seq = get_u64(p + 8);
    rec->arrival_ms = get_u64(p + 16);
    rec->key = lv_slice(NULL, 0);
    rec->data = lv_slice(NULL, 0);
    return (ssize_t)(LV_SEG_FRAME_BYTES + length);
}

ssize_t lv_seg_decode(const char *data, size_t len, lv_seg_record_t *rec)
{
    lv_seg_record_t r;
    ssize_t size = lv_seg_decode_head(data, len, &r);
    if (size < 0)
        return size;
    if ((size_t)size > len)
        return LV_SEG_TORN;
    const unsigned char *p = (const unsigned char *)data;
    uint32_t length = (uint32_t)size - LV_SEG_FRAME_BYTES;
    if (record_crc(p, length) != get_u32(p + 4))
        return LV_SEG_CORRUPT;
    size_t key_len = get_u16(p + 24);
    r.key = lv_slice(data + LV_SEG_HEAD_BYTES, key_len);
    r.data = lv_slice(data + LV_SEG_HEAD_BYTES + key_len, (size_t)size - LV_SEG_HEAD_BYTES - key_len);
    *rec = r;
    return size;
}

void lv_seg_name(uint64_t first_seq, char out[LV_SEG_NAME_MAX])
{
    snprintf(out, LV_SEG_NAME_MAX, "%020llu.seg", (unsigned long long)first_seq);
}

uint64_t lv_seg_parse_name(const char *name)
{
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return strcmp(name + 20, ".seg") == 0 ? v : 0;
}

/* ---- reader ---- */

void lv_seg_reader_file(lv_seg_reader_t *r, int fd, uint64_t start, uint64_t end)
{
    *r = (lv_seg_reader_t){.fd = fd, .end = end, .pos = start};
}

void lv_seg_reader_mem(lv_seg_reader_t *r, const char *p, size_t len)
{
    *r = (lv_seg_reader_t){.fd = -1, .mem = p, .end = len};
}

void lv_seg_reader_free(lv_seg_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->buf_cap = r->buf_len = 0;
}

/* Points *out at bytes [off, off + need) of the segment, reading them in if
 * the window does not hold them. need <= r->end - off. Returns 0, or
 * LV_SEG_TORN when the file is shorter than r->end says (cut meanwhile),
 * or LV_SEG_IOERR. */
static int window(lv_seg_reader_t *r, uint64_t off, size_t need, const char **out)
{
    if (r->fd < 0) {
        *out = r->mem + off;
        return 0;
    }
    if (off >= r->buf_off && off + need <= r->buf_off + r->buf_len) {
        *out = r->buf + (off - r->buf_off);
        return 0;
    }
    uint64_t left = r->end - off;
    size_t want = need > CHUNK ? need : CHUNK;
    if (want > left)
        want = (size_t)left;
    if (want > r->buf_cap) {
        free(r->buf);
        r->buf = lv_malloc(want);
        r->buf_cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r->err = errno;
            r->buf_len = 0;
            return LV_SEG_IOERR;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r->buf_off = off;
    r->buf_len = got;
    if (got < need)
        return LV_SEG_TORN;
    *out = r->buf;
    return 0;
}

ssize_t lv_seg_reader_next(lv_seg_reader_t *r, bool verify, lv_seg_record_t *rec)
{
    if (r->pos >= r->end)
        return 0;
    uint64_t left = r->end - r->pos;
    if (left < LV_SEG_HEAD_BYTES)
        return LV_SEG_TORN;
    const char *p;
    int st = window(r, r->pos, LV_SEG_HEAD_BYTES, &p);
    if (st < 0)
        return st;
    ssize_t size = lv_seg_decode_head(p, LV_SEG_HEAD_BYTES, rec);
    if (size < 0)
        return size;
    if ((uint64_t)size > left)
        return LV_SEG_TORN;
    if (verify) {
        st = window(r, r->pos, (size_t)size, &p);
        if (st < 0)
            return st;
        ssize_t got = lv_seg_decode(p, (size_t)size, rec);
        if (got < 0)
            return got;
    }
    r->pos += (uint64_t)size;
    return size;
}

void lv_seg_scan(lv_seg_reader_t *r, bool verify, uint64_t first_seq, lv_seg_scan_t *out, lv_seg_record_cb each,
                 void *arg)
{
    *out = (lv_seg_scan_t){.good_bytes = r->pos, .next_seq = first_seq};
    for (;;) {
        uint64_t off = r->pos;
        lv_seg_record_t rec;
        ssize_t n = lv_seg_reader_next(r, verify, &rec);
        if (n == 0)
            return;
        if (n > 0 && rec.seq != out->next_seq) {
            r->pos = off;
            n = LV_SEG_BAD_SEQ;
        }
        if (n < 0) {
            out->problem = (int)n;
            out->err = n == LV_SEG_IOERR ? r->err : 0;
            return;
        }
        if (each)
            each(arg, &rec, off);
        if (out->records++ == 0)
            out->first_arrival_ms = rec.arrival_ms;
        out->last_arrival_ms = rec.arrival_ms;
        out->next_seq++;
        out->good_bytes = r->pos;
    }
}

const char *lv_seg_problem_str(int problem)
{
    switch (problem) {
    case 0: return "ok";
    case LV_SEG_TORN: return "torn record (the file ends inside it)";
    case LV_SEG_CORRUPT: return "corrupt record (bad length or CRC)";
    case LV_SEG_BAD_SEQ: return "record out of sequence";
    case LV_SEG_IOERR: return "read error";
    default: return "unknown problem";
    }
}
