/* check.c: `levee check-data` (see check.h). It walks DIR/streams with
 * the same pieces the engine uses (store.h for the layout and meta.json,
 * segment.h for records), but reads everything: every segment of every
 * shard, whole, with CRCs. The first problem of a shard ends its scan,
 * since nothing after it can be trusted to be in order; the report says
 * how many bytes and files lie beyond it, which is what a repair drops. */
#include "stream/check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "stream/segment.h"
#include "stream/store.h"

typedef struct {
    bool repair;
    FILE *out;
    size_t streams, shards, damaged, repaired, unrepairable;
    uint64_t records, bytes;
} check_t;

/* What one shard holds, up to its first problem. */
typedef struct {
    uint64_t *firsts;          /* segment names, ascending */
    size_t nsegs;
    uint64_t records, bytes;
    uint64_t first_seq, next_seq;
    /* The first problem: in segment bad_seg at offset bad_off. */
    bool bad;
    size_t bad_seg;
    uint64_t bad_off;
    uint64_t bad_seg_size;
    bool bad_name;             /* the segment's name does not follow the one before */
    int problem;
    int err;
    uint64_t expected_seq;
} shard_scan_t;

static void print_other(void *arg, const char *name)
{
    check_t *c = arg;
    fprintf(c->out, "    note: ignoring %s (not a segment file)\n", name);
}

static void scan_shard(int sdfd, shard_scan_t *sc)
{
    sc->first_seq = sc->nsegs ? sc->firsts[0] : 1;
    sc->next_seq = sc->first_seq;
    for (size_t k = 0; k < sc->nsegs && !sc->bad; k++) {
        char name[LV_SEG_NAME_MAX];
        lv_seg_name(sc->firsts[k], name);
        int fd = openat(sdfd, name, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            sc->bad = true;
            sc->bad_seg = k;
            sc->problem = LV_SEG_IOERR;
            sc->err = errno;
            if (fd >= 0)
                close(fd);
            return;
        }
        if (k > 0 && sc->firsts[k] != sc->next_seq) {
            sc->bad = true;
            sc->bad_seg = k;
            sc->bad_name = true;
            sc->bad_seg_size = (uint64_t)st.st_size;
            sc->expected_seq = sc->next_seq;
            close(fd);
            return;
        }
        lv_seg_reader_t r;
        lv_seg_scan_t scan;
        lv_seg_reader_file(&r, fd, 0, (uint64_t)st.st_size);
        lv_seg_scan(&r, true, sc->firsts[k], &scan, NULL, NULL);
        lv_seg_reader_free(&r);
        close(fd);
        sc->records += scan.records;
        sc->bytes += scan.good_bytes;
        sc->next_seq = scan.next_seq;
        if (scan.problem) {
            sc->bad = true;
            sc->bad_seg = k;
            sc->bad_off = scan.good_bytes;
            sc->bad_seg_size = (uint64_t)st.st_size;
            sc->problem = scan.problem;
            sc->err = scan.err;
            sc->expected_seq = scan.next_seq;
        }
    }
}

static uint64_t file_size(int sdfd, uint64_t first)
{
    char name[LV_SEG_NAME_MAX];
    lv_seg_name(first, name);
    struct stat st;
    return fstatat(sdfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

/* Cuts the shard at its first problem. Returns true when it is whole
 * again. */
static bool repair_shard(check_t *c, int sdfd, const char *dir, const shard_scan_t *sc)
{
    bool ok = true;
    char name[LV_SEG_NAME_MAX];
    lv_seg_name(sc->firsts[sc->bad_seg], name);
    size_t first_removed = sc->bad_seg + 1;
    if (sc->bad_name) {
        first_removed = sc->bad_seg; /* its records would not follow the ones before */
    } else {
        int fd = openat(sdfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)sc->bad_off) != 0 || fsync(fd) != 0) {
            fprintf(c->out, "    repair FAILED: cannot cut %s/%s: %s\n", dir, name, strerror(errno));
            ok = false;
        } else {
            fprintf(c->out, "    repaired: cut %s/%s to %" PRIu64 " bytes (%" PRIu64 " bytes dropped)\n", dir, name,
                    sc->bad_off, sc->bad_seg_size - sc->bad_off);
        }
        if (fd >= 0)
            close(fd);
    }
    for (size_t k = first_removed; k < sc->nsegs && ok; k++) {
        lv_seg_name(sc->firsts[k], name);
        uint64_t size = file_size(sdfd, sc->firsts[k]);
        if (unlinkat(sdfd, name, 0) != 0) {
            fprintf(c->out, "    repair FAILED: cannot remove %s/%s: %s\n", dir, name, strerror(errno));
            ok = false;
        } else {
            fprintf(c->out, "    repaired: removed %s/%s (%" PRIu64 " bytes)\n", dir, name, size);
        }
    }
    if (fsync(sdfd) != 0) {
        fprintf(c->out, "    repair FAILED: fsync of %s: %s\n", dir, strerror(errno));
        ok = false;
    }
    if (ok)
        fprintf(c->out, "    the shard continues at seq %" PRIu64 "\n", sc->expected_seq);
    return ok;
}

static void report_problem(check_t *c, int sdfd, const char *dir, const shard_scan_t *sc)
{
    char name[LV_SEG_NAME_MAX];
    lv_seg_name(sc->firsts[sc->bad_seg], name);
    bool last = sc->bad_seg + 1 == sc->nsegs;
    if (sc->bad_name)
        fprintf(c->out, "    DAMAGE: %s/%s should start at seq %" PRIu64 " (where the segment before ends)\n", dir,
                name, sc->expected_seq);
    else if (sc->problem == LV_SEG_IOERR)
        fprintf(c->out, "    DAMAGE: %s/%s: %s\n", dir, name, strerror(sc->err));
    else
        fprintf(c->out, "    DAMAGE: %s/%s at offset %" PRIu64 ": %s, where seq %" PRIu64 " should be; %" PRIu64
                        " bytes from there to the end of the file%s\n",
                dir, name, sc->bad_off, lv_seg_problem_str(sc->problem), sc->expected_seq,
                sc->bad_seg_size - sc->bad_off,
                last && sc->problem == LV_SEG_TORN ? " (a torn tail: levee cuts it at start)" : "");
    size_t later = sc->nsegs - sc->bad_seg - 1;
    if (later) {
        uint64_t later_bytes = 0;
        for (size_t k = sc->bad_seg + 1; k < sc->nsegs; k++)
            later_bytes += file_size(sdfd, sc->firsts[k]);
        fprintf(c->out, "    after the damage: %zu later segment%s (%" PRIu64 " bytes)\n", later,
                later == 1 ? "" : "s", later_bytes);
    }
}

static void check_shard(check_t *c, int dfd, unsigned shard)
{
    char dir[LV_STORE_SHARD_NAME_MAX];
    lv_store_shard_name(shard, dir);
    c->shards++;
    int sdfd = openat(dfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sdfd < 0 && errno == ENOENT) {
        fprintf(c->out, "  shard %s: DAMAGE: its directory is missing\n", dir);
        c->damaged++;
        if (c->repair && mkdirat(dfd, dir, 0755) == 0 && fsync(dfd) == 0) {
            fprintf(c->out, "    repaired: created it empty (its records are lost; its seqs start again at 1)\n");
            c->repaired++;
        } else {
            if (c->repair)
                fprintf(c->out, "    repair FAILED: cannot create it: %s\n", strerror(errno));
            c->unrepairable++;
        }
        return;
    }
    if (sdfd < 0) {
        fprintf(c->out, "  shard %s: DAMAGE: cannot open its directory: %s\n", dir, strerror(errno));
        c->damaged++;
        c->unrepairable++;
        return;
    }
    shard_scan_t sc = {0};
    int err = lv_store_list_segments(sdfd, &sc.firsts, &sc.nsegs, print_other, c);
    if (err) {
        fprintf(c->out, "  shard %s: DAMAGE: cannot list it: %s\n", dir, strerror(err));
        c->damaged++;
        c->unrepairable++;
        close(sdfd);
        return;
    }
    scan_shard(sdfd, &sc);
    c->records += sc.records;
    c->bytes += sc.bytes;
    fprintf(c->out, "  shard %s: %zu segment%s, %" PRIu64 " records", dir, sc.nsegs, sc.nsegs == 1 ? "" : "s",
            sc.records);
    if (sc.records)
        fprintf(c->out, " (seq %" PRIu64 "..%" PRIu64 ")", sc.first_seq, sc.next_seq - 1);
    fprintf(c->out, ", %" PRIu64 " bytes: %s\n", sc.bytes, sc.bad ? "DAMAGED" : "ok");
    if (sc.bad) {
        c->damaged++;
        report_problem(c, sdfd, dir, &sc);
        if (c->repair && sc.problem != LV_SEG_IOERR && repair_shard(c, sdfd, dir, &sc))
            c->repaired++;
        else
            c->unrepairable++;
    }
    free(sc.firsts);
    close(sdfd);
}

static void check_stream(check_t *c, int streams_fd, const char *name)
{
    c->streams++;
    int dfd = openat(streams_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        fprintf(c->out, "stream %s: DAMAGE: cannot open its directory: %s\n", name, strerror(errno));
        c->damaged++;
        c->unrepairable++;
        return;
    }
    lv_stream_meta_t m;
    char why[256];
    int err = lv_stream_meta_read(dfd, &m, why, sizeof why);
    if (!err && strcmp(m.name, name) != 0) {
        snprintf(why, sizeof why, "it names stream \"%s\"", m.name);
        err = EINVAL;
    }
    if (err) {
        fprintf(c->out, "stream %s: DAMAGE: %s: %s\n", name, LV_STORE_META_FILE, why);
        fprintf(c->out, "  not repairable here: restore %s/%s, or remove the stream's directory\n", name,
                LV_STORE_META_FILE);
        c->damaged++;
        c->unrepairable++;
        close(dfd);
        return;
    }
    time_t secs = (time_t)(m.created_ms / 1000);
    struct tm tm;
    char created[32] = "?";
    if (gmtime_r(&secs, &tm))
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(c->out, "stream %s: id %016" PRIx64 ", %u shard%s, created %s, retention %" PRId64 " ms, durability %s\n",
            name, m.id, m.shards, m.shards == 1 ? "" : "s", created, m.retention_ms,
            m.durability == LV_DURABILITY_BATCH ? "batch" : "fsync");
    for (unsigned i = 0; i < m.shards; i++)
        check_shard(c, dfd, i);
    close(dfd);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int lv_stream_check_data(const char *data_dir, bool repair, FILE *out, FILE *err)
{
    struct stat st;
    if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(err, "levee check-data: %s is not a directory\n", data_dir);
        return LV_CHECK_UNUSABLE;
    }
    size_t plen = strlen(data_dir) + sizeof "/streams";
    char *path = lv_malloc(plen);
    snprintf(path, plen, "%s/streams", data_dir);
    int sfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        int e = errno;
        if (e == ENOENT) {
            fprintf(out, "%s: no streams\n", data_dir);
            free(path);
            return LV_CHECK_CLEAN;
        }
        fprintf(err, "levee check-data: cannot open %s: %s\n", path, strerror(e));
        free(path);
        return LV_CHECK_UNUSABLE;
    }
    /* Held for the whole check, so levee cannot start writing meanwhile. */
    int lockfd = openat(sfd, LV_STORE_LOCK_FILE, O_RDWR | O_CLOEXEC);
    if (lockfd >= 0 && flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(err, "levee check-data: %s is in use by a running levee; stop it first\n", path);
        close(lockfd);
        close(sfd);
        free(path);
        return LV_CHECK_UNUSABLE;
    }
    int dfd = dup(sfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        fprintf(err, "levee check-data: cannot list %s: %s\n", path, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        if (lockfd >= 0)
            close(lockfd);
        close(sfd);
        free(path);
        return LV_CHECK_UNUSABLE;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, LV_STORE_LOCK_FILE) == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = lv_realloc(names, cap * sizeof *names);
        }
        names[n++] = lv_strdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);

    check_t c = {.repair = repair, .out = out};
    fprintf(out, "levee check-data %s%s\n", data_dir, repair ? " --repair" : "");
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        if (strstr(name, "~new-") || strstr(name, "~deleted-"))
            fprintf(out, "%s: left by an interrupted create or delete; levee removes it at start\n", name);
        else if (!lv_stream_name_ok(lv_slice_cstr(name)) || fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                 !S_ISDIR(st.st_mode))
            fprintf(out, "%s: ignored (not a stream directory)\n", name);
        else
            check_stream(&c, sfd, name);
        free(names[i]);
    }
    free(names);
    fprintf(out, "%zu stream%s, %zu shard%s, %" PRIu64 " records, %" PRIu64 " bytes: ", c.streams,
            c.streams == 1 ? "" : "s", c.shards, c.shards == 1 ? "" : "s", c.records, c.bytes);
    if (!c.damaged)
        fprintf(out, "clean\n");
    else if (repair)
        fprintf(out, "%zu damaged, %zu repaired, %zu not repaired\n", c.damaged, c.repaired, c.unrepairable);
    else
        fprintf(out, "%zu damaged; `levee check-data %s --repair` cuts each at its first bad record\n", c.damaged,
                data_dir);
    if (lockfd >= 0)
        close(lockfd);
    close(sfd);
    free(path);
    if (!c.damaged || (repair && c.unrepairable == 0))
        return LV_CHECK_CLEAN;
    return LV_CHECK_DAMAGED;
}
