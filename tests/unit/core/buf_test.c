/* buf_test.c: the growable byte buffer (core/buf.h).
 *
 * Directed tests pin the policy the rest of the code relies on: reserve
 * gives at least the room asked for; consume is O(1) and emptying resets
 * the offsets; a reserve compacts in place (same storage, same capacity)
 * when dropping the consumed front is enough and at most half the buffer
 * is live, and grows otherwise; an empty buffer reserving 16 KiB gets
 * exactly 16 KiB (the server's buffer pool counts on it). A random test
 * then runs long sequences of every operation against a plain model of the
 * bytes and checks contents and invariants after each step. A reserve of
 * an impossible size is run in a child process, so a hang there is seen as
 * a failure rather than blocking the run. */
#include "core/buf.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* The invariants every operation must keep. */
#define CHECK_SANE(b)                                                   \
    do {                                                                \
        CHECK_INT((b)->start, <=, (b)->end);                            \
        CHECK_INT((b)->end, <=, (b)->capacity);                         \
        CHECK_EQ(lv_buf_room(b), (b)->capacity - (b)->end);             \
        CHECK_EQ(lv_buf_len(b), (b)->end - (b)->start);                 \
        if ((b)->start == (b)->end)                                     \
            CHECK_EQ((b)->start, 0);                                    \
    } while (0)

static void test_init_and_free(void)
{
    lv_buf_t b = LV_BUF_INIT;
    CHECK_EQ(lv_buf_len(&b), 0);
    CHECK_EQ(b.capacity, 0);
    CHECK(b.data == NULL);
    lv_buf_free(&b); /* freeing an unused buffer is fine */
    CHECK(b.data == NULL);
    lv_buf_append(&b, NULL, 0); /* appending nothing does not allocate */
    CHECK(b.data == NULL);
    lv_buf_append_str(&b, "abc");
    CHECK_SLICE(lv_buf_slice(&b), "abc");
    lv_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_EQ(b.start + b.end + b.capacity, 0);
    /* Usable again after free. */
    lv_buf_append_str(&b, "again");
    CHECK_SLICE(lv_buf_slice(&b), "again");
    lv_buf_free(&b);
}

static void test_reserve_commit_consume(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_reserve(&b, 10);
    CHECK_INT(lv_buf_room(&b), >=, 10);
    CHECK_SANE(&b);
    memcpy(lv_buf_tail(&b), "hello world", 11);
    lv_buf_commit(&b, 5);
    CHECK_SLICE(lv_buf_slice(&b), "hello");
    CHECK(lv_buf_data(&b) == b.data);

    /* Consuming moves the read offset only: no copy. */
    char *storage = b.data;
    lv_buf_consume(&b, 2);
    CHECK_SLICE(lv_buf_slice(&b), "llo");
    CHECK(lv_buf_data(&b) == storage + 2);
    CHECK(b.data == storage);
    CHECK_SANE(&b);

    /* A reserve that already fits changes nothing. */
    lv_buf_reserve(&b, lv_buf_room(&b));
    CHECK(b.data == storage);
    CHECK_EQ(b.start, 2);
    lv_buf_reserve(&b, 0);
    CHECK_EQ(b.start, 2);

    /* Consuming the rest empties and resets; storage is kept. */
    lv_buf_consume(&b, 3);
    CHECK_EQ(lv_buf_len(&b), 0);
    CHECK_EQ(b.start, 0);
    CHECK_EQ(b.end, 0);
    CHECK(b.data == storage);

    /* Consuming nothing, or more than there is, also ends reset. */
    lv_buf_consume(&b, 0);
    CHECK_EQ(b.start + b.end, 0);
    lv_buf_append_str(&b, "xyz");
    lv_buf_consume(&b, 100);
    CHECK_EQ(b.start + b.end, 0);
    CHECK_SANE(&b);

    /* Clear keeps storage too. */
    lv_buf_append_str(&b, "xyz");
    lv_buf_consume(&b, 1);
    lv_buf_clear(&b);
    CHECK_EQ(b.start + b.end, 0);
    CHECK(b.data == storage);
    lv_buf_free(&b);
}

/* With the consumed front large enough and at most half the buffer live,
 * reserve slides the data down in place instead of growing. */
static void test_compaction_in_place(void)
{
    lv_buf_t b = LV_BUF_INIT;
    char src[256];
    for (int i = 0; i < 256; i++)
        src[i] = (char)('a' + i % 26);
    lv_buf_append(&b, src, 200);
    size_t cap = b.capacity;
    char *storage = b.data;
    lv_buf_consume(&b, 150); /* 50 live, 150 consumed */
    size_t need = cap - 200 + 10; /* more than the room at the end */
    lv_buf_reserve(&b, need);
    CHECK_INT(lv_buf_room(&b), >=, need);
    CHECK_EQ(b.capacity, cap);
    CHECK(b.data == storage);
    CHECK_EQ(b.start, 0);
    CHECK_EQ(lv_buf_len(&b), 50);
    CHECK(memcmp(lv_buf_data(&b), src + 150, 50) == 0);
    CHECK_SANE(&b);
    lv_buf_free(&b);
}

/* More than half the buffer live: grow (and drop the consumed front). */
static void test_growth(void)
{
    lv_buf_t b = LV_BUF_INIT;
    char src[600];
    for (int i = 0; i < 600; i++)
        src[i] = (char)(i * 7);
    lv_buf_append(&b, src, 200);
    size_t cap = b.capacity;
    lv_buf_consume(&b, 10); /* 190 live: more than half */
    lv_buf_reserve(&b, cap);
    CHECK_INT(b.capacity, >, cap);
    CHECK_INT(lv_buf_room(&b), >=, cap);
    CHECK_EQ(b.start, 0);
    CHECK_EQ(lv_buf_len(&b), 190);
    CHECK(memcmp(lv_buf_data(&b), src + 10, 190) == 0);
    CHECK_SANE(&b);

    /* Growth without a consumed front keeps the bytes too. */
    lv_buf_t g = LV_BUF_INIT;
    size_t total = 0;
    for (int round = 0; round < 2000; round++) {
        lv_buf_append(&g, src, 600);
        total += 600;
        CHECK_EQ(lv_buf_len(&g), total);
    }
    for (size_t off = 0; off < total; off += 600)
        CHECK(memcmp(lv_buf_data(&g) + off, src, 600) == 0);
    /* Doubling: capacity is a power of two times the first size. */
    CHECK_EQ(g.capacity & (g.capacity - 1), 0);
    CHECK_INT(g.capacity, <, 2 * total);
    lv_buf_free(&g);
    lv_buf_free(&b);
}

/* The server's pool hands out 16 KiB blocks and relies on an empty
 * buffer's reserve(16384) allocating exactly that. */
static void test_reserve_sizes(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_reserve(&b, 16384);
    CHECK_EQ(b.capacity, 16384);
    lv_buf_free(&b);
    lv_buf_reserve(&b, 1);
    CHECK_EQ(b.capacity, 256);
    lv_buf_free(&b);
    lv_buf_reserve(&b, 257);
    CHECK_EQ(b.capacity, 512);
    lv_buf_free(&b);
}

static void fmt_into(lv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fmt_into(lv_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void test_printf(void)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_buf_printf(&b, "%d-%s-%llu", -42, "x", 18446744073709551615ull);
    CHECK_SLICE(lv_buf_slice(&b), "-42-x-18446744073709551615");
    lv_buf_printf(&b, "%s", "");
    CHECK_EQ(lv_buf_len(&b), 26);
    fmt_into(&b, "[%5.1f]", 2.5);
    CHECK_SLICE(lv_buf_slice(&b), "-42-x-18446744073709551615[  2.5]");
    lv_buf_free(&b);

    /* An embedded NUL is counted like any other byte. */
    lv_buf_printf(&b, "a%cb", 0);
    CHECK_EQ(lv_buf_len(&b), 3);
    CHECK(memcmp(lv_buf_data(&b), "a\0b", 3) == 0);
    lv_buf_free(&b);

    /* Long output: far beyond the first try's room. */
    size_t big = 100000;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        s[i] = (char)('A' + i % 23);
    s[big] = '\0';
    lv_buf_append_str(&b, "head:");
    lv_buf_printf(&b, "<%s>", s);
    CHECK_EQ(lv_buf_len(&b), 5 + big + 2);
    CHECK(memcmp(lv_buf_data(&b), "head:<", 6) == 0);
    CHECK(memcmp(lv_buf_data(&b) + 6, s, big) == 0);
    CHECK_EQ(lv_buf_data(&b)[6 + big], '>');
    CHECK_SANE(&b);
    lv_buf_free(&b);

    /* Output lengths around the exact room left, from every offset: the
     * first vsnprintf may fit with one byte to spare, or need the retry. */
    for (size_t pre = 0; pre < 300; pre += 7) {
        for (size_t n = 50; n < 600; n += 13) {
            lv_buf_t t = LV_BUF_INIT;
            lv_buf_append(&t, s, pre);
            lv_buf_consume(&t, pre / 3);
            lv_buf_printf(&t, "%.*s", (int)n, s + 1);
            size_t live = pre - pre / 3;
            bool ok = lv_buf_len(&t) == live + n && memcmp(lv_buf_data(&t) + live, s + 1, n) == 0 &&
                      memcmp(lv_buf_data(&t), s + pre / 3, live) == 0;
            lv_buf_free(&t);
            if (!ok)
                free(s);
            CHECK(ok);
        }
    }
    for (size_t room_left = 60; room_left < 70; room_left++) {
        /* Fill so that exactly room_left bytes remain, then print that many,
         * one fewer and one more. */
        for (int delta = -1; delta <= 1; delta++) {
            lv_buf_t t = LV_BUF_INIT;
            lv_buf_reserve(&t, 1);
            lv_buf_commit(&t, t.capacity - room_left);
            memset(t.data, '.', t.end);
            size_t before = lv_buf_len(&t);
            size_t n = room_left + (size_t)delta;
            lv_buf_printf(&t, "%.*s", (int)n, s);
            bool ok = lv_buf_len(&t) == before + n && memcmp(lv_buf_data(&t) + before, s, n) == 0;
            lv_buf_free(&t);
            if (!ok)
                free(s);
            CHECK(ok);
        }
    }
    free(s);
}

static void test_append_u64(void)
{
    static const unsigned long long values[] = {
        0,          1,          9,          10,          11,           99,          100,
        255,        256,        65535,      4294967295u, 4294967296u,  999999999999ull,
        1000000000000ull,       9223372036854775807ull, 9223372036854775808ull,
        9999999999999999999ull, 10000000000000000000ull, 18446744073709551614ull,
        18446744073709551615ull};
    lv_buf_t b = LV_BUF_INIT;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "%llu", values[i]);
        lv_buf_clear(&b);
        lv_buf_append_u64(&b, values[i]);
        lv_buf_append(&b, "", 1);
        CHECK_STR(lv_buf_data(&b), want);
    }
    /* Every power of ten and its neighbours. */
    unsigned long long p = 1;
    for (int k = 0; k < 20; k++, p *= 10) {
        for (int d = -1; d <= 1; d++) {
            unsigned long long v = p + (unsigned long long)d;
            char want[32];
            snprintf(want, sizeof want, "%llu", v);
            lv_buf_clear(&b);
            lv_buf_append_u64(&b, v);
            lv_buf_append(&b, "", 1);
            CHECK_STR(lv_buf_data(&b), want);
        }
    }
    /* Appends after existing bytes, not over them. */
    lv_buf_clear(&b);
    lv_buf_append_str(&b, "n=");
    lv_buf_append_u64(&b, 0);
    lv_buf_append_str(&b, ",");
    lv_buf_append_u64(&b, 18446744073709551615ull);
    CHECK_SLICE(lv_buf_slice(&b), "n=0,18446744073709551615");
    lv_buf_free(&b);
}

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Random operations against a model: the buffer must always hold exactly
 * the model's bytes, keep its invariants, and honour every reserve. */
static void test_random_against_model(void)
{
    const char *seed_env = getenv("LV_TEST_SEED");
    rng_state = seed_env ? strtoull(seed_env, NULL, 0) : 777;
    enum { MODEL_MAX = 1 << 20 };
    char *model = malloc(MODEL_MAX);
    size_t mlen = 0;
    lv_buf_t b = LV_BUF_INIT;
    char tmp[4096];
    int bad_step = -1;
    for (int step = 0; step < 200000 && bad_step < 0; step++) {
        unsigned op = (unsigned)(rnd() % 7);
        size_t n = (size_t)(rnd() % (rnd() % 8 == 0 ? 4000 : 40));
        if (mlen + n + 32 > MODEL_MAX)
            op = 3; /* make room */
        for (size_t i = 0; i < n; i++)
            tmp[i] = (char)rnd();
        switch (op) {
        case 0:
            lv_buf_append(&b, tmp, n);
            memcpy(model + mlen, tmp, n);
            mlen += n;
            break;
        case 1: { /* reserve, write part of it, commit */
            lv_buf_reserve(&b, n);
            if (lv_buf_room(&b) < n) {
                bad_step = step;
                break;
            }
            size_t k = n ? (size_t)(rnd() % (n + 1)) : 0;
            memcpy(lv_buf_tail(&b), tmp, k);
            lv_buf_commit(&b, k);
            memcpy(model + mlen, tmp, k);
            mlen += k;
            break;
        }
        case 2:
        case 3: {
            size_t k = mlen ? (size_t)(rnd() % (mlen + 1)) : 0;
            if (op == 3 && mlen > MODEL_MAX / 2)
                k = mlen - mlen / 4;
            lv_buf_consume(&b, k);
            memmove(model, model + k, mlen - k);
            mlen -= k;
            break;
        }
        case 4: {
            unsigned long long v = rnd() >> (rnd() % 64);
            int w = snprintf(model + mlen, 32, "%llu", v);
            lv_buf_append_u64(&b, v);
            mlen += (size_t)w;
            break;
        }
        case 5: {
            for (size_t i = 0; i < n; i++)
                tmp[i] = (char)('a' + (unsigned char)tmp[i] % 26);
            int w = snprintf(model + mlen, n + 16, "<%.*s|%d>", (int)n, tmp, (int)n);
            lv_buf_printf(&b, "<%.*s|%d>", (int)n, tmp, (int)n);
            mlen += (size_t)w;
            break;
        }
        case 6:
            if (rnd() % 50 == 0) {
                lv_buf_clear(&b);
                mlen = 0;
            }
            break;
        }
        if (bad_step < 0 && (lv_buf_len(&b) != mlen || (mlen && memcmp(lv_buf_data(&b), model, mlen) != 0) ||
                             b.start > b.end || b.end > b.capacity || (b.start == b.end && b.start != 0)))
            bad_step = step;
    }
    lv_buf_free(&b);
    free(model);
    CHECK_EQ(bad_step, -1);
}

/* A reserve so large that no buffer can hold it (n near SIZE_MAX) must end
 * the process through the out-of-memory path. Each case runs in a child
 * with a one-second limit; the child reports on a pipe if reserve came back, and
 * with what. Cases: empty buffer; 1 live byte at the front; 100 live bytes
 * after a consumed front (the copy-to-new-storage path). */
static void test_reserve_impossible_size(void)
{
    static const struct {
        size_t n, live, consumed;
    } cases[] = {
        {SIZE_MAX, 0, 0},
        {SIZE_MAX, 1, 0},
        {SIZE_MAX / 2 + 2, 1, 0},
        {SIZE_MAX, 100, 50},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds[2];
        CHECK_EQ(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            alarm(1);
            if (!freopen("/dev/null", "w", stderr))
                _exit(3);
            lv_buf_t b = LV_BUF_INIT;
            char bytes[200];
            memset(bytes, 'z', sizeof bytes);
            lv_buf_append(&b, bytes, cases[i].live + cases[i].consumed);
            if (cases[i].live == 0)
                lv_buf_clear(&b); /* storage, nothing live */
            lv_buf_consume(&b, cases[i].consumed);
            lv_buf_reserve(&b, cases[i].n);
            char msg[160];
            int len = snprintf(msg, sizeof msg, "returned with capacity %zu, end %zu, room %zu", b.capacity,
                               b.end, lv_buf_room(&b));
            ssize_t w = write(fds[1], msg, (size_t)len);
            (void)w;
            _exit(0);
        }
        close(fds[1]);
        char msg[160] = "";
        ssize_t got = read(fds[0], msg, sizeof msg - 1);
        msg[got > 0 ? got : 0] = '\0';
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        const char *what = NULL;
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            what = "did not return or abort within 1 s (capacity doubling wrapped to 0)";
        else if (msg[0])
            what = msg;
        if (what) {
            fprintf(stderr, "    reserve(%zu) with %zu live bytes after %zu consumed: %s\n", cases[i].n,
                    cases[i].live, cases[i].consumed, what);
            failures++;
        }
    }
    CHECK_EQ(failures, 0);
}

int main(void)
{
    LV_RUN(test_init_and_free);
    LV_RUN(test_reserve_commit_consume);
    LV_RUN(test_compaction_in_place);
    LV_RUN(test_growth);
    LV_RUN(test_reserve_sizes);
    LV_RUN(test_printf);
    LV_RUN(test_append_u64);
    LV_RUN(test_random_against_model);
    LV_RUN(test_reserve_impossible_size);
    return lv_test_summary();
}
