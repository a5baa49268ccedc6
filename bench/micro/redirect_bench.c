/* redirect_bench.c: load time, memory and lookup cost of the redirect table.
 *
 * Writes a CSV of N rows (default 1,000,000) to /tmp, loads it a few times
 * with lv_redirect_table_load (the time includes reading the file, which is
 * in the page cache after it has just been written), then times lookups of
 * present codes in random order, of absent codes, and of one code over and
 * over. Codes are 8 base62 characters, like QR short codes, made unique by
 * scrambling the row number with an odd multiplier modulo 2^47 (a
 * bijection, and 2^47 < 62^8); URLs are https://example.com/l/<code>.
 *
 * Usage: redirect_bench [rows] [csv path]
 * Build: gcc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc bench/micro/redirect_bench.c
 *        src/gateway/redirect.c src/core/mem.c -lxxhash -o /tmp/redirect_bench */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/redirect.h"

#define CODE_LEN 8
#define LOAD_RUNS 5

static double clock_sec(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_sec(void)
{
    return clock_sec(CLOCK_MONOTONIC);
}

/* CPU time of this thread: on a shared machine, wall time also counts the
 * time other processes held the core, CPU time does not. */
static double cpu_sec(void)
{
    return clock_sec(CLOCK_THREAD_CPUTIME_ID);
}

static void make_code(uint64_t i, char *out)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint64_t v = (i * UINT64_C(0x9E3779B97F4A7C15)) & ((UINT64_C(1) << 47) - 1);
    for (int k = CODE_LEN - 1; k >= 0; k--) {
        out[k] = alphabet[v % 62];
        v /= 62;
    }
}

static uint64_t rng_state = 0x1234567;

static uint64_t next_random(void)
{
    /* splitmix64: good enough to shuffle lookup order */
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static size_t write_csv(const char *path, size_t rows)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs("code,url\n", f);
    char code[CODE_LEN];
    for (size_t i = 0; i < rows; i++) {
        make_code(i, code);
        fprintf(f, "%.*s,https://example.com/l/%.*s\n", CODE_LEN, code, CODE_LEN, code);
    }
    long size = ftell(f);
    fclose(f);
    return (size_t)size;
}

static long rss_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0)
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Reading the URLs into this keeps the compiler from dropping the loads. */
static volatile size_t sink;

/* Looks up codes[order[k % n]] for k below total; returns CPU ns per
 * lookup and sets *wall_ns. */
static double time_lookups(const lv_redirect_table_t *t, const char *codes, const uint32_t *order, size_t n,
                           size_t total, size_t *found, double *wall_ns)
{
    size_t hits = 0, sum = 0;
    double start = now_sec(), cpu_start = cpu_sec();
    for (size_t k = 0; k < total; k++) {
        lv_slice_t url;
        const char *code = codes + (size_t)order[k % n] * CODE_LEN;
        if (lv_redirect_table_lookup(t, lv_slice(code, CODE_LEN), &url)) {
            hits++;
            sum += (unsigned char)url.ptr[url.len - 1];
        }
    }
    double ns = (cpu_sec() - cpu_start) * 1e9 / (double)total;
    *wall_ns = (now_sec() - start) * 1e9 / (double)total;
    *found = hits;
    sink += sum;
    return ns;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? (size_t)atol(argv[1]) : 1000000;
    const char *path = argc > 2 ? argv[2] : "/tmp/levee_redirect_bench.csv";

    double t0 = now_sec();
    size_t file_bytes = write_csv(path, rows);
    printf("rows            %zu\n", rows);
    printf("csv             %s, %.1f MB, written in %.0f ms\n", path, (double)file_bytes / 1e6, (now_sec() - t0) * 1e3);

    long rss_before = rss_kib("VmRSS:");
    double runs[LOAD_RUNS], cpu_runs[LOAD_RUNS];
    lv_redirect_table_t *t = NULL;
    char err[256];
    for (int r = 0; r < LOAD_RUNS; r++) {
        lv_redirect_table_free(t);
        double s = now_sec(), c = cpu_sec();
        t = lv_redirect_table_load(path, err, sizeof(err));
        runs[r] = (now_sec() - s) * 1e3;
        cpu_runs[r] = (cpu_sec() - c) * 1e3;
        if (!t) {
            fprintf(stderr, "load: %s\n", err);
            return 1;
        }
    }
    long rss_after = rss_kib("VmRSS:");
    qsort(runs, LOAD_RUNS, sizeof(*runs), cmp_double);
    qsort(cpu_runs, LOAD_RUNS, sizeof(*cpu_runs), cmp_double);
    printf("load            cpu min %.1f ms, median %.1f ms; wall min %.1f ms, median %.1f ms (%d runs)\n",
           cpu_runs[0], cpu_runs[LOAD_RUNS / 2], runs[0], runs[LOAD_RUNS / 2], LOAD_RUNS);
    printf("count           %zu\n", lv_redirect_table_count(t));
    size_t mem = lv_redirect_table_memory(t);
    printf("memory          %.1f MB held by the table (%.1f bytes/row); RSS grew %.1f MB; peak RSS %.1f MB\n",
           (double)mem / 1e6, (double)mem / (double)rows, (double)(rss_after - rss_before) * 1024 / 1e6,
           (double)rss_kib("VmHWM:") * 1024 / 1e6);

    /* Present codes in a random order, so most lookups miss the CPU cache
     * as real traffic over a big table would. */
    char *codes = malloc(rows * 2 * CODE_LEN);
    uint32_t *order = malloc(rows * sizeof(uint32_t));
    for (size_t i = 0; i < 2 * rows; i++)
        make_code(i, codes + i * CODE_LEN);
    for (size_t i = 0; i < rows; i++)
        order[i] = (uint32_t)i;
    for (size_t i = rows - 1; i > 0; i--) {
        size_t j = next_random() % (i + 1);
        uint32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    size_t found;
    size_t total = rows * 5;
    double wall;
    double ns = time_lookups(t, codes, order, rows, total, &found, &wall);
    printf("lookup present  cpu %.1f ns, wall %.1f ns per lookup, random order (%zu of %zu found)\n", ns, wall,
           found, total);
    if (found != total)
        return 1;
    /* rows..2*rows-1 were never written: all absent */
    for (size_t i = 0; i < rows; i++)
        order[i] += (uint32_t)rows;
    ns = time_lookups(t, codes, order, rows, total, &found, &wall);
    printf("lookup absent   cpu %.1f ns, wall %.1f ns per lookup, random order (%zu found)\n", ns, wall, found);
    if (found != 0)
        return 1;
    uint32_t one = 12345 % (uint32_t)rows;
    ns = time_lookups(t, codes, &one, 1, 20000000, &found, &wall);
    printf("lookup hot      cpu %.1f ns, wall %.1f ns per lookup, one code repeated (cache-warm)\n", ns, wall);

    free(codes);
    free(order);
    lv_redirect_table_free(t);
    unlink(path);
    return 0;
}
