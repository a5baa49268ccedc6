/* consumer_policy.c: batching and retry decisions for stream consumers
 * (see consumer_policy.h). Kept apart from the loop code so the rules read
 * in one place and are tested branch by branch. */
#include "stream/consumer_policy.h"

uint64_t lv_consumer_batch_wait_ms(size_t n, unsigned batch_size, bool full, int64_t window_ms,
                                   uint64_t first_arrival_ms, uint64_t now_ms)
{
    if (n == 0)
        return UINT64_MAX;
    if (full || n >= batch_size || window_ms <= 0)
        return 0;
    uint64_t window = (uint64_t)window_ms;
    uint64_t age = now_ms > first_arrival_ms ? now_ms - first_arrival_ms : 0;
    return age >= window ? 0 : window - age;
}

uint64_t lv_consumer_backoff_ms(int64_t backoff_ms, unsigned failures)
{
    if (backoff_ms <= 0)
        return 0;
    uint64_t first = (uint64_t)backoff_ms;
    uint64_t cap = first > LV_CONSUMER_MAX_BACKOFF_MS ? first : LV_CONSUMER_MAX_BACKOFF_MS;
    uint64_t delay = first;
    /* Doubling stops at the cap, so the shift count never matters. */
    for (unsigned i = 1; i < failures && delay < cap; i++)
        delay *= 2;
    return delay < cap ? delay : cap;
}

lv_consumer_action_t lv_consumer_after_invoke(lv_fn_status_t status, unsigned failures, int max_retries,
                                              int64_t backoff_ms, unsigned retry_after_s, uint64_t *delay_ms)
{
    *delay_ms = 0;
    switch (status) {
    case LV_FN_OK:
        return LV_CONSUMER_NEXT;
    case LV_FN_THROTTLED:
        *delay_ms = (uint64_t)(retry_after_s ? retry_after_s : 1) * 1000u;
        return LV_CONSUMER_WAIT;
    case LV_FN_SHUTDOWN:
        *delay_ms = LV_CONSUMER_REQUEUE_MS;
        return LV_CONSUMER_WAIT;
    case LV_FN_ERROR:
    case LV_FN_TIMEOUT:
    case LV_FN_CRASHED:
    case LV_FN_TOO_LARGE:
    default:
        break;
    }
    /* failures counts the first run too: max_retries retries means
     * max_retries + 1 runs in all. */
    if (failures == 0)
        failures = 1;
    if (max_retries >= 0 && failures > (unsigned)max_retries)
        return LV_CONSUMER_GIVE_UP;
    *delay_ms = lv_consumer_backoff_ms(backoff_ms, failures);
    return LV_CONSUMER_RETRY;
}
