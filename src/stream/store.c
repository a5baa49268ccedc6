/* store.c: meta.json and the directory helpers of DATA_DIR/streams/ (see
 * store.h for the layout). Everything works relative to directory file
 * descriptors (openat and friends), so a stream's files stay reachable
 * while its directory is renamed away by a delete. */
#include "stream/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "stream/segment.h"

bool lv_stream_name_ok(lv_slice_t name)
{
    if (name.len < 1 || name.len > LV_STREAM_MAX_NAME)
        return false;
    if (lv_slice_eq_cstr(name, ".") || lv_slice_eq_cstr(name, ".."))
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void lv_stream_meta_encode(const lv_stream_meta_t *m, lv_buf_t *out)
{
    /* The name is checked at creation ([a-zA-Z0-9_.-]), so it needs no
     * JSON escaping. */
    lv_buf_printf(out,
                  "{\"format\": 1, \"name\": \"%s\", \"id\": \"%016" PRIx64 "\", \"created_ms\": %" PRIu64
                  ", \"shards\": %u, \"retention_ms\": %" PRId64 ", \"durability\": \"%s\"}\n",
                  m->name, m->id, m->created_ms, m->shards, m->retention_ms,
                  m->durability == LV_DURABILITY_BATCH ? "batch" : "fsync");
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* A JSON integer in [lo, hi]. */
static bool get_int(json_t *obj, const char *key, json_int_t lo, json_int_t hi, json_int_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool parse_id(const char *s, uint64_t *out)
{
    if (strlen(s) != 16)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

/* Fills m from the parsed object; returns 0 or -1 with a reason. */
static int meta_fields(json_t *root, lv_stream_meta_t *m, char *err, size_t errlen)
{
    json_int_t x;
    if (!json_is_object(root))
        return fail(err, errlen, "not a JSON object");
    if (!get_int(root, "format", 1, 1, &x))
        return fail(err, errlen, "\"format\" is missing or not 1");
    json_t *name = json_object_get(root, "name");
    if (!json_is_string(name) || !lv_stream_name_ok(lv_slice(json_string_value(name), json_string_length(name))))
        return fail(err, errlen, "\"name\" is missing or not a valid stream name");
    memcpy(m->name, json_string_value(name), json_string_length(name) + 1);
    const char *id = json_string_value(json_object_get(root, "id"));
    if (!id || !parse_id(id, &m->id))
        return fail(err, errlen, "\"id\" is missing or not 16 lower-case hex digits");
    if (!get_int(root, "created_ms", 0, INT64_MAX, &x))
        return fail(err, errlen, "\"created_ms\" is missing or not a non-negative integer");
    m->created_ms = (uint64_t)x;
    if (!get_int(root, "shards", 1, LV_STREAM_MAX_SHARDS, &x))
        return fail(err, errlen, "\"shards\" is missing or not 1..1024");
    m->shards = (unsigned)x;
    if (!get_int(root, "retention_ms", 1, INT64_MAX, &x))
        return fail(err, errlen, "\"retention_ms\" is missing or not a positive integer");
    m->retention_ms = x;
    const char *dur = json_string_value(json_object_get(root, "durability"));
    if (dur && strcmp(dur, "fsync") == 0)
        m->durability = LV_DURABILITY_FSYNC;
    else if (dur && strcmp(dur, "batch") == 0)
        m->durability = LV_DURABILITY_BATCH;
    else
        return fail(err, errlen, "\"durability\" is missing or not \"fsync\" or \"batch\"");
    return 0;
}

int lv_stream_meta_parse(const char *p, size_t len, lv_stream_meta_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    json_error_t jerr;
    json_t *root = json_loadb(p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "not valid JSON (%s at line %d)", jerr.text, jerr.line);
        return -1;
    }
    int rc = meta_fields(root, m, err, errlen);
    json_decref(root);
    return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return ENOSPC;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int lv_stream_meta_write(int dirfd, const lv_stream_meta_t *m)
{
    static const char tmp[] = LV_STORE_META_FILE "~tmp";
    lv_buf_t b = LV_BUF_INIT;
    lv_stream_meta_encode(m, &b);
    int err = 0;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        err = errno;
    if (!err)
        err = write_all(fd, lv_buf_data(&b), lv_buf_len(&b));
    if (!err && fsync(fd) != 0)
        err = errno;
    if (fd >= 0 && close(fd) != 0 && !err)
        err = errno;
    if (!err && renameat(dirfd, tmp, dirfd, LV_STORE_META_FILE) != 0)
        err = errno;
    if (!err)
        err = lv_store_sync_dir(dirfd);
    if (err)
        unlinkat(dirfd, tmp, 0);
    lv_buf_free(&b);
    return err;
}

int lv_stream_meta_read(int dirfd, lv_stream_meta_t *m, char *err, size_t errlen)
{
    int fd = openat(dirfd, LV_STORE_META_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", LV_STORE_META_FILE, strerror(e));
        return e;
    }
    char *buf = lv_malloc(LV_STORE_META_MAX + 1);
    size_t len = 0;
    int e = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, LV_STORE_META_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = errno;
            break;
        }
        if (n == 0 || (len += (size_t)n) > LV_STORE_META_MAX)
            break;
    }
    close(fd);
    if (e)
        snprintf(err, errlen, "cannot read %s: %s", LV_STORE_META_FILE, strerror(e));
    else if (len > LV_STORE_META_MAX) {
        snprintf(err, errlen, "%s is larger than %u bytes", LV_STORE_META_FILE, LV_STORE_META_MAX);
        e = EINVAL;
    } else if (lv_stream_meta_parse(buf, len, m, err, errlen) != 0)
        e = EINVAL;
    free(buf);
    return e;
}

void lv_store_shard_name(unsigned shard, char out[LV_STORE_SHARD_NAME_MAX])
{
    snprintf(out, LV_STORE_SHARD_NAME_MAX, "%04u", shard);
}

int lv_store_sync_dir(int dirfd)
{
    return fsync(dirfd) == 0 ? 0 : errno;
}

int lv_store_remove_tree(int parentfd, const char *name)
{
    if (unlinkat(parentfd, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return errno;
    int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    int err = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int e = lv_store_remove_tree(fd, de->d_name);
        if (e && e != ENOENT && !err)
            err = e;
    }
    closedir(d);
    if (!err && unlinkat(parentfd, name, AT_REMOVEDIR) != 0)
        err = errno;
    return err;
}

int lv_store_mkdirs(const char *path)
{
    char *p = lv_strdup(path);
    int err = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (!err && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)))
        err = errno ? errno : ENOTDIR;
    free(p);
    return err;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int lv_store_list_segments(int shard_dirfd, uint64_t **firsts, size_t *n,
                           void (*other)(void *arg, const char *name), void *arg)
{
    *firsts = NULL;
    *n = 0;
    int fd = openat(shard_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        uint64_t first = lv_seg_parse_name(de->d_name);
        if (!first) {
            if (other)
                other(arg, de->d_name);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *firsts = lv_realloc(*firsts, cap * sizeof **firsts);
        }
        (*firsts)[(*n)++] = first;
    }
    closedir(d);
    if (*n > 1)
        qsort(*firsts, *n, sizeof **firsts, cmp_u64);
    return 0;
}

uint64_t lv_store_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
