/* kinesis_iterator.c: shard iterators and their key (see
 * kinesis_iterator.h).
 *
 * Layout before base64, integers big-endian:
 *   0       version (1)
 *   1       flags (bit 0: position is a time)
 *   2..5    shard
 *   6..13   stream id
 *   14..21  position
 *   22..29  issued, Unix ms
 *   30      name length N (1..128)
 *   31..    name (N bytes)
 *   then    HMAC-SHA256 of everything before it (32 bytes)
 * The decoder checks the length first, then the HMAC (in constant time),
 * and only then believes any field. */
#include "stream/kinesis_iterator.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"

#define VERSION 1u
#define FLAG_AT_TIME 1u
#define HEAD_BYTES 31u
#define MAC_BYTES 32u
#define MAX_BYTES (HEAD_BYTES + LV_STREAM_MAX_NAME + MAC_BYTES)
#define MAX_TEXT 512u

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void mac(const lv_kinesis_key_t *key, const uint8_t *data, size_t n, uint8_t out[MAC_BYTES])
{
    unsigned len = MAC_BYTES;
    HMAC(EVP_sha256(), key->bytes, (int)sizeof key->bytes, data, n, out, &len);
}

void lv_kinesis_iter_encode(const lv_kinesis_key_t *key, const lv_kinesis_iter_t *it, lv_buf_t *out)
{
    uint8_t raw[MAX_BYTES];
    size_t name_len = it->name_len <= LV_STREAM_MAX_NAME ? it->name_len : LV_STREAM_MAX_NAME;
    raw[0] = VERSION;
    raw[1] = it->at_time ? FLAG_AT_TIME : 0;
    put32(raw + 2, it->shard);
    put64(raw + 6, it->stream_id);
    put64(raw + 14, it->position);
    put64(raw + 22, it->issued_ms);
    raw[30] = (uint8_t)name_len;
    memcpy(raw + HEAD_BYTES, it->name, name_len);
    size_t n = HEAD_BYTES + name_len;
    mac(key, raw, n, raw + n);
    lv_base64_encode(lv_slice((const char *)raw, n + MAC_BYTES), out);
}

int lv_kinesis_iter_decode(const lv_kinesis_key_t *key, lv_slice_t text, lv_kinesis_iter_t *it)
{
    if (text.len > MAX_TEXT)
        return -1;
    lv_buf_t buf = LV_BUF_INIT;
    int rc = -1;
    if (lv_base64_decode(text, &buf, true) != 0)
        goto out;
    const uint8_t *raw = (const uint8_t *)lv_buf_data(&buf);
    size_t n = lv_buf_len(&buf);
    if (n < HEAD_BYTES + 1 + MAC_BYTES || n > MAX_BYTES)
        goto out;
    size_t name_len = raw[30];
    if (name_len < 1 || name_len > LV_STREAM_MAX_NAME || n != HEAD_BYTES + name_len + MAC_BYTES)
        goto out;
    uint8_t want[MAC_BYTES];
    mac(key, raw, HEAD_BYTES + name_len, want);
    if (CRYPTO_memcmp(want, raw + HEAD_BYTES + name_len, MAC_BYTES) != 0)
        goto out;
    if (raw[0] != VERSION || (raw[1] & ~FLAG_AT_TIME) != 0)
        goto out;
    it->at_time = raw[1] & FLAG_AT_TIME;
    it->shard = get32(raw + 2);
    it->stream_id = get64(raw + 6);
    it->position = get64(raw + 14);
    it->issued_ms = get64(raw + 22);
    it->name_len = name_len;
    memcpy(it->name, raw + HEAD_BYTES, name_len);
    rc = 0;
out:
    lv_buf_free(&buf);
    return rc;
}

/* ======================================================================
 * The key file
 * ====================================================================== */

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "%s: cannot create directory: %s", path, strerror(errno));
    return -1;
}

/* Reads exactly sizeof key bytes from path; 1 if the file does not exist. */
static int read_key(const char *path, lv_kinesis_key_t *key, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t buf[LV_KINESIS_KEY_BYTES + 1];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != LV_KINESIS_KEY_BYTES) {
        snprintf(err, errlen, "%s: expected a %u-byte key; remove the file to make a new one (issued shard "
                              "iterators then stop working)", path, LV_KINESIS_KEY_BYTES);
        return -1;
    }
    memcpy(key->bytes, buf, LV_KINESIS_KEY_BYTES);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int create_key(const char *dir, const char *path, const char *tmp, lv_kinesis_key_t *key, char *err,
                      size_t errlen)
{
    size_t got = 0;
    while (got < sizeof key->bytes) {
        ssize_t r = getrandom(key->bytes + got, sizeof key->bytes - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "getrandom: %s", strerror(errno));
            return -1;
        }
        got += (size_t)r;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write_all(fd, key->bytes, sizeof key->bytes) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    /* The rename itself must survive a crash, or the next start would
     * make a new key and refuse every iterator issued meanwhile. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* A NUL-terminated copy of the printf result, in b. */
static const char *path_of(lv_buf_t *b, const char *fmt, const char *a, const char *c)
{
    lv_buf_printf(b, fmt, a, c);
    lv_buf_append(b, "", 1);
    return lv_buf_data(b);
}

int lv_kinesis_key_load(const char *data_dir, lv_kinesis_key_t *key, char *err, size_t errlen)
{
    lv_buf_t bdir = LV_BUF_INIT, bpath = LV_BUF_INIT, btmp = LV_BUF_INIT;
    const char *dir = path_of(&bdir, "%s/%s", data_dir, "api");
    const char *path = path_of(&bpath, "%s/%s", dir, "iterator.key");
    const char *tmp = path_of(&btmp, "%s%s", path, ".tmp");
    int rc = -1;
    if (make_dir(data_dir, err, errlen) == 0 && make_dir(dir, err, errlen) == 0) {
        rc = read_key(path, key, err, errlen);
        if (rc > 0)
            rc = create_key(dir, path, tmp, key, err, errlen);
    }
    lv_buf_free(&bdir);
    lv_buf_free(&bpath);
    lv_buf_free(&btmp);
    return rc;
}
