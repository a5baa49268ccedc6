/* consumer_policy_test.c: when a filling batch goes out, and what follows
 * each kind of invocation result (stream/consumer_policy.h), branch by
 * branch. */
#include "stream/consumer_policy.h"

#include "test.h"

static void test_batch_wait(void)
{
    const uint64_t now = 1763802000000ull;
    /* Nothing to send. */
    CHECK(lv_consumer_batch_wait_ms(0, 100, false, 1000, now, now) == UINT64_MAX);
    CHECK(lv_consumer_batch_wait_ms(0, 100, true, 0, now, now) == UINT64_MAX);
    /* No window: at once, whatever the count. */
    CHECK_EQ(lv_consumer_batch_wait_ms(1, 100, false, 0, now, now), 0);
    /* Full by count or by size: at once. */
    CHECK_EQ(lv_consumer_batch_wait_ms(100, 100, false, 5000, now, now), 0);
    CHECK_EQ(lv_consumer_batch_wait_ms(101, 100, false, 5000, now, now), 0);
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, true, 5000, now, now), 0);
    /* The window counts from the first record's arrival. */
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, false, 1000, now, now), 1000);
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, false, 1000, now - 400, now), 600);
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, false, 1000, now - 1000, now), 0);
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, false, 1000, now - 86400000, now), 0);
    /* A record from the future (clock stepped back) waits one window, no
     * more. */
    CHECK_EQ(lv_consumer_batch_wait_ms(3, 100, false, 1000, now + 60000, now), 1000);
    CHECK_EQ(lv_consumer_batch_wait_ms(1, 1, false, 1000, now, now), 0);
}

static void test_backoff(void)
{
    CHECK_EQ(lv_consumer_backoff_ms(1000, 1), 1000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 2), 2000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 3), 4000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 6), 32000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 7), 60000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 10000), 60000);
    CHECK_EQ(lv_consumer_backoff_ms(1000, 0xffffffffu), 60000);
    CHECK_EQ(lv_consumer_backoff_ms(7, 3), 28);
    CHECK_EQ(lv_consumer_backoff_ms(0, 5), 0);
    CHECK_EQ(lv_consumer_backoff_ms(-5, 5), 0);
    /* A first wait already past a minute is kept, not doubled. */
    CHECK_EQ(lv_consumer_backoff_ms(120000, 1), 120000);
    CHECK_EQ(lv_consumer_backoff_ms(120000, 5), 120000);
    CHECK_EQ(lv_consumer_backoff_ms(INT64_MAX, 5), INT64_MAX);
}

static void test_after_invoke(void)
{
    uint64_t delay = 99;
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_OK, 0, -1, 1000, 0, &delay), LV_CONSUMER_NEXT);
    CHECK_EQ(delay, 0);
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_OK, 50, 0, 1000, 0, &delay), LV_CONSUMER_NEXT);

    /* Throttled and stopping: wait, uncounted, whatever the retries. */
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_THROTTLED, 0, 0, 1000, 3, &delay), LV_CONSUMER_WAIT);
    CHECK_EQ(delay, 3000);
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_THROTTLED, 1000, 0, 1000, 0, &delay), LV_CONSUMER_WAIT);
    CHECK_EQ(delay, 1000);
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_SHUTDOWN, 1000, 0, 1000, 0, &delay), LV_CONSUMER_WAIT);
    CHECK_EQ(delay, LV_CONSUMER_REQUEUE_MS);

    /* Each failing status counts. */
    static const lv_fn_status_t failing[] = {LV_FN_ERROR, LV_FN_TIMEOUT, LV_FN_CRASHED, LV_FN_TOO_LARGE};
    for (size_t i = 0; i < sizeof failing / sizeof failing[0]; i++) {
        /* max_retries 0: the first failure gives up. */
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 1, 0, 1000, 0, &delay), LV_CONSUMER_GIVE_UP);
        CHECK_EQ(delay, 0);
        /* max_retries 2: three runs in all. */
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 1, 2, 1000, 0, &delay), LV_CONSUMER_RETRY);
        CHECK_EQ(delay, 1000);
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 2, 2, 1000, 0, &delay), LV_CONSUMER_RETRY);
        CHECK_EQ(delay, 2000);
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 3, 2, 1000, 0, &delay), LV_CONSUMER_GIVE_UP);
        /* -1: never gives up; the wait stops growing at a minute. */
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 1, -1, 1000, 0, &delay), LV_CONSUMER_RETRY);
        CHECK_EQ(delay, 1000);
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 100000, -1, 1000, 0, &delay), LV_CONSUMER_RETRY);
        CHECK_EQ(delay, 60000);
        /* The largest max_retries the config allows. */
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 10000, 10000, 1000, 0, &delay), LV_CONSUMER_RETRY);
        CHECK_EQ(lv_consumer_after_invoke(failing[i], 10001, 10000, 1000, 0, &delay), LV_CONSUMER_GIVE_UP);
    }
    /* failures 0 is read as the first. */
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_ERROR, 0, 0, 500, 0, &delay), LV_CONSUMER_GIVE_UP);
    CHECK_EQ(lv_consumer_after_invoke(LV_FN_ERROR, 0, -1, 500, 0, &delay), LV_CONSUMER_RETRY);
    CHECK_EQ(delay, 500);
}

int main(void)
{
    LV_RUN(test_batch_wait);
    LV_RUN(test_backoff);
    LV_RUN(test_after_invoke);
    return lv_test_summary();
}
