/* kinesis_iterator_test.c: shard iterators (signed, opaque, tamper-proof)
 * and the key file they are signed with. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "stream/kinesis_iterator.h"
#include "test.h"

static lv_kinesis_key_t test_key(uint8_t fill)
{
    lv_kinesis_key_t k;
    memset(k.bytes, fill, sizeof k.bytes);
    return k;
}

static lv_kinesis_iter_t sample(void)
{
    lv_kinesis_iter_t it = {.stream_id = 0x0123456789abcdefull, .shard = 1023, .at_time = false,
                            .position = 987654321ull, .issued_ms = 1700000000123ull};
    memcpy(it.name, "clicks", 6);
    it.name_len = 6;
    return it;
}

static void test_round_trip(void)
{
    lv_kinesis_key_t key = test_key(7);
    lv_kinesis_iter_t it = sample(), back;
    lv_buf_t b = LV_BUF_INIT;
    lv_kinesis_iter_encode(&key, &it, &b);
    CHECK_EQ(lv_kinesis_iter_decode(&key, lv_buf_slice(&b), &back), 0);
    CHECK_SLICE(lv_slice(back.name, back.name_len), "clicks");
    CHECK(back.stream_id == it.stream_id);
    CHECK_EQ(back.shard, 1023);
    CHECK(!back.at_time);
    CHECK(back.position == it.position);
    CHECK(back.issued_ms == it.issued_ms);

    it.at_time = true;
    it.position = UINT64_MAX;
    it.shard = 0xffffffffu;
    lv_buf_clear(&b);
    lv_kinesis_iter_encode(&key, &it, &b);
    CHECK_EQ(lv_kinesis_iter_decode(&key, lv_buf_slice(&b), &back), 0);
    CHECK(back.at_time);
    CHECK(back.position == UINT64_MAX);
    CHECK(back.shard == 0xffffffffu);
    lv_buf_free(&b);
}

static void test_longest_fits_kinesis_limit(void)
{
    lv_kinesis_key_t key = test_key(1);
    lv_kinesis_iter_t it = sample(), back;
    memset(it.name, 'n', sizeof it.name);
    it.name_len = LV_STREAM_MAX_NAME;
    lv_buf_t b = LV_BUF_INIT;
    lv_kinesis_iter_encode(&key, &it, &b);
    CHECK_INT(lv_buf_len(&b), <=, 512);
    CHECK_EQ(lv_kinesis_iter_decode(&key, lv_buf_slice(&b), &back), 0);
    CHECK_EQ(back.name_len, LV_STREAM_MAX_NAME);
    lv_buf_free(&b);
}

/* Every single-bit change of the decoded bytes is refused. */
static void test_tampering(void)
{
    lv_kinesis_key_t key = test_key(7), other = test_key(8);
    lv_kinesis_iter_t it = sample(), back;
    lv_buf_t b = LV_BUF_INIT, raw = LV_BUF_INIT, forged = LV_BUF_INIT;
    lv_kinesis_iter_encode(&key, &it, &b);
    CHECK_EQ(lv_kinesis_iter_decode(&other, lv_buf_slice(&b), &back), -1);
    CHECK_EQ(lv_base64_decode(lv_buf_slice(&b), &raw, true), 0);
    for (size_t i = 0; i < lv_buf_len(&raw); i++)
        for (int bit = 0; bit < 8; bit++) {
            lv_buf_data(&raw)[i] ^= (char)(1 << bit);
            lv_buf_clear(&forged);
            lv_base64_encode(lv_buf_slice(&raw), &forged);
            if (lv_kinesis_iter_decode(&key, lv_buf_slice(&forged), &back) == 0)
                LV_FAIL_("byte %zu bit %d changed and still accepted", i, bit);
            lv_buf_data(&raw)[i] ^= (char)(1 << bit);
        }
    /* Cut short, or made longer. */
    for (size_t n = 0; n < lv_buf_len(&raw); n++) {
        lv_buf_clear(&forged);
        lv_base64_encode(lv_slice(lv_buf_data(&raw), n), &forged);
        if (lv_kinesis_iter_decode(&key, lv_buf_slice(&forged), &back) == 0)
            LV_FAIL_("accepted the first %zu bytes", n);
    }
    lv_buf_append(&raw, "x", 1);
    lv_buf_clear(&forged);
    lv_base64_encode(lv_buf_slice(&raw), &forged);
    CHECK_EQ(lv_kinesis_iter_decode(&key, lv_buf_slice(&forged), &back), -1);

    CHECK_EQ(lv_kinesis_iter_decode(&key, LV_SLICE_LIT("not base64!"), &back), -1);
    CHECK_EQ(lv_kinesis_iter_decode(&key, LV_SLICE_LIT(""), &back), -1);
    lv_buf_clear(&forged);
    for (int i = 0; i < 600; i++)
        lv_buf_append(&forged, "A", 1);
    CHECK_EQ(lv_kinesis_iter_decode(&key, lv_buf_slice(&forged), &back), -1);
    lv_buf_free(&b);
    lv_buf_free(&raw);
    lv_buf_free(&forged);
}

static void test_key_file(void)
{
    char dir[] = "/tmp/kinesis_key_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char data_dir[128], path[160], err[512];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir); /* does not exist yet */
    snprintf(path, sizeof path, "%s/api/iterator.key", data_dir);
    lv_kinesis_key_t a, b;
    CHECK_EQ(lv_kinesis_key_load(data_dir, &a, err, sizeof err), 0);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_size, 32);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(lv_kinesis_key_load(data_dir, &b, err, sizeof err), 0);
    CHECK(memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0); /* the same key after a restart */

    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "x", 1), 1);
    close(fd);
    CHECK_EQ(lv_kinesis_key_load(data_dir, &b, err, sizeof err), -1);
    CHECK(strstr(err, "32-byte") != NULL);

    unlink(path);
    CHECK_EQ(lv_kinesis_key_load(data_dir, &b, err, sizeof err), 0);
    CHECK(memcmp(a.bytes, b.bytes, sizeof a.bytes) != 0); /* a new one */

    char bad[200];
    snprintf(bad, sizeof bad, "%s/file", dir);
    fd = open(bad, O_WRONLY | O_CREAT, 0600);
    close(fd);
    CHECK_EQ(lv_kinesis_key_load(bad, &b, err, sizeof err), -1); /* data_dir is a file */

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
}

int main(void)
{
    LV_RUN(test_round_trip);
    LV_RUN(test_longest_fits_kinesis_limit);
    LV_RUN(test_tampering);
    LV_RUN(test_key_file);
    return lv_test_summary();
}
