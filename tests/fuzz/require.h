/* require.h: REQUIRE(cond), the fuzz drivers' assertion. Unlike assert() it
 * stays on in every build and names the failed condition before aborting,
 * which libFuzzer reports as a crash with the input that caused it. */
#ifndef LV_FUZZ_REQUIRE_H
#define LV_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                                        \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif
