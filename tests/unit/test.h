/* test.h: the unit-test framework, small enough to read in one sitting.
 *
 * A test file defines functions `static void test_xxx(void)` and a main that
 * calls LV_RUN(test_xxx) for each, then returns lv_test_summary(). A failed
 * check prints file, line, the expression and both values, marks the test
 * failed and returns from the test function. The last line printed is
 * "N passed, N failed". */
#ifndef LV_TEST_H
#define LV_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int lv_test_failed_now, lv_tests_passed, lv_tests_failed;

#define LV_FAIL_(...)                                                   \
    do {                                                                \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                                   \
        fputc('\n', stderr);                                            \
        lv_test_failed_now = 1;                                         \
        return;                                                         \
    } while (0)

#define CHECK(cond)                                                     \
    do { if (!(cond)) LV_FAIL_("CHECK(%s)", #cond); } while (0)

#define CHECK_INT(a, op, b)                                             \
    do {                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);           \
        if (!(va_ op vb_))                                              \
            LV_FAIL_("%s %s %s (%lld vs %lld)", #a, #op, #b, va_, vb_); \
    } while (0)
#define CHECK_EQ(a, b) CHECK_INT(a, ==, b)

#define CHECK_STR(a, b)                                                 \
    do {                                                                \
        const char *sa_ = (a), *sb_ = (b);                              \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                      \
            LV_FAIL_("%s == %s (\"%s\" vs \"%s\")", #a, #b,            \
                     sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");       \
    } while (0)

/* Compares a slice (ptr, len) with a C string. */
#define CHECK_SLICE(s, str)                                             \
    do {                                                                \
        lv_slice_t s_ = (s); const char *c_ = (str);                    \
        if (s_.len != strlen(c_) || (s_.len && memcmp(s_.ptr, c_, s_.len) != 0)) \
            LV_FAIL_("%s == \"%s\" (got \"%.*s\")", #s, c_,             \
                     (int)s_.len, s_.ptr ? s_.ptr : "");                \
    } while (0)

#define LV_RUN(fn)                                                      \
    do {                                                                \
        lv_test_failed_now = 0;                                         \
        fn();                                                           \
        if (lv_test_failed_now) {                                       \
            lv_tests_failed++;                                          \
            fprintf(stderr, "not ok %s\n", #fn);                        \
        } else {                                                        \
            lv_tests_passed++;                                          \
        }                                                               \
    } while (0)

static inline int lv_test_summary(void)
{
    printf("%d passed, %d failed\n", lv_tests_passed, lv_tests_failed);
    return lv_tests_failed ? 1 : 0;
}

#endif
