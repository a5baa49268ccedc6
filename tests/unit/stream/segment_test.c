/* segment_test.c: the stream record format and segment reader
 * (stream/segment.h) and the metadata file (stream/store.h), without
 * threads: records round-trip; every impossible size is refused before
 * anything is read for it; a segment cut at every byte offset or with any
 * byte flipped scans to exactly the records before the damage, from memory
 * and from a file, with heads only or whole; names and meta.json parse
 * strictly. */
#include "stream/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/crc32c.h"
#include "core/mem.h"
#include "stream/store.h"
#include "test.h"

static void encode(lv_buf_t *b, uint64_t seq, uint64_t arrival, const char *key, const char *data, size_t data_len)
{
    size_t size = lv_seg_record_size(strlen(key), data_len);
    lv_buf_reserve(b, size);
    lv_seg_encode(lv_buf_tail(b), seq, arrival, lv_slice_cstr(key), lv_slice(data, data_len));
    lv_buf_commit(b, size);
}

static void test_roundtrip(void)
{
    lv_buf_t b = LV_BUF_INIT;
    encode(&b, 1, 1700000000000ull, "user-1", "hello", 5);
    encode(&b, 2, 1700000000001ull, "k", "", 0);
    CHECK_EQ(lv_buf_len(&b), 26 + 6 + 5 + 26 + 1);
    lv_seg_record_t r;
    ssize_t n = lv_seg_decode(lv_buf_data(&b), lv_buf_len(&b), &r);
    CHECK_EQ(n, 37);
    CHECK_EQ(r.seq, 1);
    CHECK_EQ(r.arrival_ms, 1700000000000ull);
    CHECK_SLICE(r.key, "user-1");
    CHECK_SLICE(r.data, "hello");
    n = lv_seg_decode(lv_buf_data(&b) + 37, lv_buf_len(&b) - 37, &r);
    CHECK_EQ(n, 27);
    CHECK_EQ(r.seq, 2);
    CHECK_SLICE(r.key, "k");
    CHECK_EQ(r.data.len, 0);
    /* The length field counts what follows the CRC. */
    CHECK_EQ((unsigned char)lv_buf_data(&b)[0], 18 + 6 + 5);
    /* Head-only decoding agrees and needs only the head. */
    n = lv_seg_decode_head(lv_buf_data(&b), LV_SEG_HEAD_BYTES, &r);
    CHECK_EQ(n, 37);
    CHECK_EQ(r.seq, 1);
    CHECK_EQ(r.key.len, 0);
    CHECK_EQ(lv_seg_decode_head(lv_buf_data(&b), LV_SEG_HEAD_BYTES - 1, &r), LV_SEG_TORN);
    lv_buf_free(&b);
}

static void test_largest_record(void)
{
    char key[LV_STREAM_MAX_KEY + 1];
    memset(key, 'k', LV_STREAM_MAX_KEY);
    key[LV_STREAM_MAX_KEY] = '\0';
    size_t data_len = LV_STREAM_MAX_DATA - LV_STREAM_MAX_KEY;
    char *data = lv_malloc(data_len);
    memset(data, 'd', data_len);
    lv_buf_t b = LV_BUF_INIT;
    encode(&b, 9, 5, key, data, data_len);
    CHECK_EQ(lv_buf_len(&b), LV_SEG_MAX_RECORD);
    lv_seg_record_t r;
    CHECK_EQ(lv_seg_decode(lv_buf_data(&b), lv_buf_len(&b), &r), (ssize_t)LV_SEG_MAX_RECORD);
    CHECK_EQ(r.key.len, LV_STREAM_MAX_KEY);
    CHECK_EQ(r.data.len, data_len);
    free(data);
    lv_buf_free(&b);
}

static void put32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

/* Re-signs a hand-edited record so only the edited field is wrong. */
static void resign(char *p)
{
    uint32_t length = (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8 |
                      (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
    put32(p + 4, lv_crc32c(lv_crc32c(0, p, 4), p + 8, length));
}

static void test_impossible_sizes(void)
{
    char rec[64];
    lv_seg_encode(rec, 1, 2, LV_SLICE_LIT("key"), LV_SLICE_LIT("data"));
    lv_seg_record_t r;
    char bad[64];
    /* length below the smallest record (18 + a 1-byte key) */
    memcpy(bad, rec, sizeof rec);
    put32(bad, 18);
    resign(bad);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    /* length above the largest: refused even though the bytes are not there */
    put32(bad, 18 + LV_STREAM_MAX_DATA + 1);
    CHECK_EQ(lv_seg_decode_head(bad, LV_SEG_HEAD_BYTES, &r), LV_SEG_CORRUPT);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    put32(bad, 0xffffffffu);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    /* key_len 0, past the limit, past the record */
    memcpy(bad, rec, sizeof rec);
    bad[24] = 0;
    bad[25] = 0;
    resign(bad);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    bad[24] = (char)1;
    bad[25] = (char)1; /* 257 */
    resign(bad);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    bad[24] = 8;
    bad[25] = 0; /* 8 > 3 + 4 */
    resign(bad);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), LV_SEG_CORRUPT);
    bad[24] = 7; /* key "keydata", no data: fine */
    resign(bad);
    CHECK_EQ(lv_seg_decode(bad, sizeof bad, &r), 26 + 7);
    CHECK_SLICE(r.key, "keydata");
}

/* Every byte of a record matters: cutting anywhere is torn, flipping any
 * bit of any byte is corrupt (or, for a length that grows, torn). */
static void test_every_cut_and_flip(void)
{
    char rec[64];
    size_t size = lv_seg_record_size(3, 10);
    lv_seg_encode(rec, 77, 1234, LV_SLICE_LIT("abc"), LV_SLICE_LIT("0123456789"));
    lv_seg_record_t r;
    for (size_t cut = 0; cut < size; cut++)
        CHECK_EQ(lv_seg_decode(rec, cut, &r), LV_SEG_TORN);
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            char c[64];
            memcpy(c, rec, size);
            c[i] ^= (char)(1 << bit);
            ssize_t n = lv_seg_decode(c, size, &r);
            if (n != LV_SEG_CORRUPT && n != LV_SEG_TORN)
                LV_FAIL_("flip of bit %d of byte %zu decoded (%zd)", bit, i, n);
        }
    }
}

static void test_names(void)
{
    char name[LV_SEG_NAME_MAX];
    lv_seg_name(1, name);
    CHECK_STR(name, "00000000000000000001.seg");
    CHECK_EQ(lv_seg_parse_name(name), 1);
    lv_seg_name(UINT64_MAX, name);
    CHECK_STR(name, "18446744073709551615.seg");
    CHECK(lv_seg_parse_name(name) == UINT64_MAX);
    CHECK_EQ(lv_seg_parse_name("00000000000000000000.seg"), 0);
    CHECK_EQ(lv_seg_parse_name("18446744073709551616.seg"), 0);
    CHECK_EQ(lv_seg_parse_name("99999999999999999999.seg"), 0);
    CHECK_EQ(lv_seg_parse_name("0000000000000000001.seg"), 0);
    CHECK_EQ(lv_seg_parse_name("000000000000000000001.seg"), 0);
    CHECK_EQ(lv_seg_parse_name("00000000000000000001.se"), 0);
    CHECK_EQ(lv_seg_parse_name("00000000000000000001.seg~"), 0);
    CHECK_EQ(lv_seg_parse_name("0000000000000000000a.seg"), 0);
    CHECK_EQ(lv_seg_parse_name(""), 0);
    char shard[LV_STORE_SHARD_NAME_MAX];
    lv_store_shard_name(7, shard);
    CHECK_STR(shard, "0007");
    lv_store_shard_name(1023, shard);
    CHECK_STR(shard, "1023");
}

/* A segment of records 5..5+n-1 with varied sizes; ends[i] is where
 * record i ends. */
static size_t build_segment(lv_buf_t *b, size_t n, size_t *ends)
{
    char data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "pk%zu", i);
        encode(b, 5 + i, 1000 + i, key, data, (i * 37) % 300);
        ends[i] = lv_buf_len(b);
    }
    return lv_buf_len(b);
}

/* The scan must stop at the last record that ends at or before `damage`
 * (the cut, or the start of the record holding a flipped byte). */
static uint64_t expected_good(const size_t *ends, size_t n, size_t damage, size_t *records)
{
    uint64_t good = 0;
    *records = 0;
    for (size_t i = 0; i < n && ends[i] <= damage; i++) {
        good = ends[i];
        (*records)++;
    }
    return good;
}

static void test_scan_every_cut(void)
{
    lv_buf_t b = LV_BUF_INIT;
    size_t ends[12];
    size_t total = build_segment(&b, 12, ends);
    const char *seg = lv_buf_data(&b);
    for (size_t cut = 0; cut <= total; cut++) {
        for (int verify = 0; verify < 2; verify++) {
            lv_seg_reader_t r;
            lv_seg_scan_t scan;
            lv_seg_reader_mem(&r, seg, cut);
            lv_seg_scan(&r, verify, 5, &scan, NULL, NULL);
            size_t records;
            uint64_t good = expected_good(ends, 12, cut, &records);
            CHECK_EQ(scan.good_bytes, good);
            CHECK_EQ(scan.records, records);
            CHECK_EQ(scan.next_seq, 5 + records);
            CHECK_EQ(scan.problem, good == cut ? 0 : LV_SEG_TORN);
        }
    }
    lv_buf_free(&b);
}

static void test_scan_every_flip(void)
{
    lv_buf_t b = LV_BUF_INIT;
    size_t ends[8];
    size_t total = build_segment(&b, 8, ends);
    char *copy = lv_malloc(total);
    for (size_t i = 0; i < total; i++) {
        memcpy(copy, lv_buf_data(&b), total);
        copy[i] ^= 0x20;
        size_t rec = 0;
        while (ends[rec] <= i)
            rec++;
        size_t start = rec ? ends[rec - 1] : 0;
        lv_seg_reader_t r;
        lv_seg_scan_t scan;
        lv_seg_reader_mem(&r, copy, total);
        lv_seg_scan(&r, true, 5, &scan, NULL, NULL);
        if (scan.good_bytes != start || scan.records != rec || scan.problem == 0)
            LV_FAIL_("flip at %zu: good %llu records %llu problem %d, want %zu %zu", i,
                     (unsigned long long)scan.good_bytes, (unsigned long long)scan.records, scan.problem, start, rec);
        /* Heads only: a flip in the data goes unseen, one in a head is
         * still caught at or before that record. */
        lv_seg_reader_mem(&r, copy, total);
        lv_seg_scan(&r, false, 5, &scan, NULL, NULL);
        CHECK(scan.good_bytes >= start);
    }
    free(copy);
    lv_buf_free(&b);
}

static void test_scan_seq_order(void)
{
    lv_buf_t b = LV_BUF_INIT;
    encode(&b, 3, 1, "k", "a", 1);
    encode(&b, 4, 1, "k", "b", 1);
    size_t two = lv_buf_len(&b);
    encode(&b, 6, 1, "k", "c", 1); /* a gap */
    lv_seg_reader_t r;
    lv_seg_scan_t scan;
    lv_seg_reader_mem(&r, lv_buf_data(&b), lv_buf_len(&b));
    lv_seg_scan(&r, true, 3, &scan, NULL, NULL);
    CHECK_EQ(scan.problem, LV_SEG_BAD_SEQ);
    CHECK_EQ(scan.good_bytes, two);
    CHECK_EQ(scan.records, 2);
    /* The first record must carry the segment's name. */
    lv_seg_reader_mem(&r, lv_buf_data(&b), lv_buf_len(&b));
    lv_seg_scan(&r, false, 2, &scan, NULL, NULL);
    CHECK_EQ(scan.problem, LV_SEG_BAD_SEQ);
    CHECK_EQ(scan.good_bytes, 0);
    lv_buf_free(&b);
}

typedef struct {
    size_t calls;
    uint64_t last_seq, last_off;
} seen_t;

static void count_record(void *arg, const lv_seg_record_t *rec, uint64_t off)
{
    seen_t *s = arg;
    s->calls++;
    s->last_seq = rec->seq;
    s->last_off = off;
}

/* From a file, with records bigger than the reader's chunk and many small
 * ones around chunk boundaries; and a file shorter than it should be. */
static void test_file_reader(void)
{
    char path[] = "/tmp/lv_segment_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    lv_buf_t b = LV_BUF_INIT;
    size_t big = 700 * 1024;
    char *data = lv_malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7);
    uint64_t seq = 1;
    for (int i = 0; i < 5000; i++, seq++)
        encode(&b, seq, seq, "small", data, (size_t)(i % 97));
    encode(&b, seq, seq, "big", data, big);
    seq++;
    for (int i = 0; i < 3000; i++, seq++)
        encode(&b, seq, seq, "small", data, (size_t)(i % 61));
    encode(&b, seq, seq, "big2", data, big);
    seq++;
    CHECK_EQ(write(fd, lv_buf_data(&b), lv_buf_len(&b)), (ssize_t)lv_buf_len(&b));
    for (int verify = 0; verify < 2; verify++) {
        lv_seg_reader_t r;
        lv_seg_scan_t scan;
        seen_t seen = {0};
        lv_seg_reader_file(&r, fd, 0, lv_buf_len(&b));
        lv_seg_scan(&r, verify, 1, &scan, count_record, &seen);
        lv_seg_reader_free(&r);
        CHECK_EQ(scan.problem, 0);
        CHECK_EQ(scan.records, seq - 1);
        CHECK_EQ(scan.good_bytes, lv_buf_len(&b));
        CHECK_EQ(seen.calls, seq - 1);
        CHECK_EQ(seen.last_seq, seq - 1);
    }
    /* Told the file is longer than it is (cut under the reader). */
    lv_seg_reader_t r;
    lv_seg_scan_t scan;
    lv_seg_reader_file(&r, fd, 0, lv_buf_len(&b) + 100);
    lv_seg_scan(&r, true, 1, &scan, NULL, NULL);
    lv_seg_reader_free(&r);
    CHECK_EQ(scan.problem, LV_SEG_TORN);
    CHECK_EQ(scan.good_bytes, lv_buf_len(&b));
    /* A read error is reported as such. */
    lv_seg_reader_file(&r, -1, 0, 100);
    r.fd = 1000000;
    lv_seg_record_t rec;
    CHECK_EQ(lv_seg_reader_next(&r, true, &rec), LV_SEG_IOERR);
    CHECK_EQ(r.err, EBADF);
    lv_seg_reader_free(&r);
    close(fd);
    free(data);
    lv_buf_free(&b);
}

static void test_stream_names(void)
{
    CHECK(lv_stream_name_ok(LV_SLICE_LIT("clicks")));
    CHECK(lv_stream_name_ok(LV_SLICE_LIT("a.b-c_D9")));
    CHECK(lv_stream_name_ok(LV_SLICE_LIT("...")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT("")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT(".")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT("..")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT("a/b")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT("a~new-1")));
    CHECK(!lv_stream_name_ok(LV_SLICE_LIT("~lock")));
    CHECK(!lv_stream_name_ok(lv_slice("a\0b", 3)));
    char longest[129];
    memset(longest, 'x', 128);
    CHECK(lv_stream_name_ok(lv_slice(longest, 128)));
    CHECK(!lv_stream_name_ok(lv_slice(longest, 129)));
}

static int parse(const char *text, lv_stream_meta_t *m)
{
    char err[256];
    return lv_stream_meta_parse(text, strlen(text), m, err, sizeof err);
}

static void test_meta(void)
{
    lv_stream_meta_t m = {.id = 0x0123456789abcdefull, .created_ms = 1700000000123ull, .shards = 4,
                          .retention_ms = 86400000, .durability = LV_DURABILITY_BATCH};
    strcpy(m.name, "clicks");
    lv_buf_t b = LV_BUF_INIT;
    lv_stream_meta_encode(&m, &b);
    lv_stream_meta_t back;
    char err[256];
    CHECK_EQ(lv_stream_meta_parse(lv_buf_data(&b), lv_buf_len(&b), &back, err, sizeof err), 0);
    CHECK(memcmp(&m, &back, sizeof m) == 0);
    lv_buf_free(&b);

    const char *ok = "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
                     "\"retention_ms\":1,\"durability\":\"fsync\",\"later\":[1,2]}";
    CHECK_EQ(parse(ok, &back), 0);
    CHECK_EQ(back.id, 255);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"format\":1,\"name\":\"s\",\"name\":\"t\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":2,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"a/b\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000FF\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":-1,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":0,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1025,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":0,\"durability\":\"fsync\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"always\"}",
        "{\"format\":1,\"name\":\"s\",\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":\"1\","
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
        "{\"format\":1,\"id\":\"00000000000000ff\",\"created_ms\":0,\"shards\":1,"
        "\"retention_ms\":1,\"durability\":\"fsync\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &back) != -1)
            LV_FAIL_("meta %zu was accepted: %s", i, bad[i]);
    }
}

static void test_meta_file(void)
{
    char dir[] = "/tmp/lv_meta_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    lv_stream_meta_t m = {.id = 42, .created_ms = 5, .shards = 2, .retention_ms = 1000}, back;
    strcpy(m.name, "x");
    char err[256];
    CHECK_EQ(lv_stream_meta_read(dfd, &back, err, sizeof err), ENOENT);
    CHECK_EQ(lv_stream_meta_write(dfd, &m), 0);
    CHECK_EQ(lv_stream_meta_read(dfd, &back, err, sizeof err), 0);
    CHECK_EQ(back.id, 42);
    CHECK_EQ(faccessat(dfd, "meta.json~tmp", F_OK, 0), -1);
    /* Too large a file is damage, read no further. */
    int fd = openat(dfd, "meta.json", O_WRONLY | O_TRUNC);
    char *junk = lv_calloc(1, LV_STORE_META_MAX + 10);
    memset(junk, ' ', LV_STORE_META_MAX + 10);
    CHECK_EQ(write(fd, junk, LV_STORE_META_MAX + 10), LV_STORE_META_MAX + 10);
    close(fd);
    free(junk);
    CHECK_EQ(lv_stream_meta_read(dfd, &back, err, sizeof err), EINVAL);
    CHECK(strstr(err, "larger") != NULL);
    CHECK_EQ(lv_store_remove_tree(AT_FDCWD, dir), 0);
    close(dfd);
}

int main(void)
{
    LV_RUN(test_roundtrip);
    LV_RUN(test_largest_record);
    LV_RUN(test_impossible_sizes);
    LV_RUN(test_every_cut_and_flip);
    LV_RUN(test_names);
    LV_RUN(test_scan_every_cut);
    LV_RUN(test_scan_every_flip);
    LV_RUN(test_scan_seq_order);
    LV_RUN(test_file_reader);
    LV_RUN(test_stream_names);
    LV_RUN(test_meta);
    LV_RUN(test_meta_file);
    return lv_test_summary();
}
