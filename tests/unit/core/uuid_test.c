/* uuid_test.c: request ids have the UUID v4 shape and do not repeat. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/uuid.h"
#include "test.h"

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static void test_shape(void)
{
    for (int n = 0; n < 1000; n++) {
        char id[LV_UUID_LEN + 1];
        lv_uuid4(id);
        CHECK_INT(strlen(id), ==, LV_UUID_LEN);
        for (int i = 0; i < LV_UUID_LEN; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                CHECK_INT(id[i], ==, '-');
            else
                CHECK(is_hex(id[i]));
        }
        CHECK_INT(id[14], ==, '4');
        CHECK(strchr("89ab", id[19]) != NULL);
    }
}

static int cmp(const void *a, const void *b) { return memcmp(a, b, LV_UUID_LEN); }

#define PER_THREAD 20000
static char ids[2][PER_THREAD][LV_UUID_LEN + 1];

static void *make_ids(void *arg)
{
    char (*out)[LV_UUID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        lv_uuid4(out[i]);
    return NULL;
}

static void test_unique_across_threads(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, make_ids, ids[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    qsort(ids, 2 * PER_THREAD, LV_UUID_LEN + 1, cmp);
    int dups = 0;
    char (*flat)[LV_UUID_LEN + 1] = ids[0];
    for (int i = 1; i < 2 * PER_THREAD; i++)
        dups += memcmp(flat[i - 1], flat[i], LV_UUID_LEN) == 0;
    CHECK_INT(dups, ==, 0);
}

int main(void)
{
    LV_RUN(test_shape);
    LV_RUN(test_unique_across_threads);
    return lv_test_summary();
}
