/* fuzz_metrics.c: libFuzzer driver for the metrics module's input handling.
 *
 * The input is split at the first NUL into a metric name and a label set, and
 * the last byte picks an output size for lv_metrics_label_escape. Checks:
 * registration never crashes; an accepted series renders as exactly three
 * lines (HELP, TYPE, sample), so no label can inject a line; the JSON
 * rendering always parses; and any escaped value is accepted as a label. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "metrics/metrics.h"

static size_t count_lines(const lv_buf_t *b)
{
    size_t n = 0;
    for (size_t i = 0; i < lv_buf_len(b); i++)
        n += lv_buf_data(b)[i] == '\n';
    return n;
}

static void check_json(lv_metrics_t *m)
{
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render_json(m, &b);
    json_error_t err;
    json_t *root = json_loadb(lv_buf_data(&b), lv_buf_len(&b), 0, &err);
    if (!root)
        abort();
    json_decref(root);
    lv_buf_free(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    lv_log_set_level((lv_log_level_t)(LV_LOG_ERROR + 1)); /* rejections log by design */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t outlen = data[size - 1];
    /* name NUL labels NUL NUL: labels is "" when the input has no NUL. */
    char *copy = calloc(1, size + 1);
    memcpy(copy, data, size - 1);
    const char *name = copy;
    const char *labels = copy + strlen(copy) + 1;

    lv_metrics_t *m = lv_metrics_new(1);
    lv_counter_inc(lv_metrics_counter(m, name, "h", labels));
    lv_buf_t b = LV_BUF_INIT;
    lv_metrics_render(m, &b);
    if (lv_buf_len(&b) && count_lines(&b) != 3)
        abort();
    lv_buf_free(&b);
    check_json(m);
    lv_metrics_free(m);

    /* Escaping: bounded output, always a valid label value. */
    char *out = malloc(outlen ? outlen : 1);
    const char *esc = lv_metrics_label_escape(name, outlen ? out : NULL, outlen);
    if (strlen(esc) >= (outlen ? outlen : 1))
        abort();
    size_t lablen = strlen(esc) + 8;
    char *lab = malloc(lablen);
    snprintf(lab, lablen, "k=\"%s\"", esc);
    m = lv_metrics_new(0);
    lv_metrics_gauge(m, "g", "h", lab);
    lv_metrics_histogram(m, "h_seconds", "h", lab, lv_metrics_latency_buckets, 3);
    b = LV_BUF_INIT;
    lv_metrics_render(m, &b);
    if (count_lines(&b) != 2 + 1 + 2 + 6) /* gauge: 3 lines; histogram: 2 + 4 buckets + sum + count */
        abort();
    lv_buf_free(&b);
    check_json(m);
    lv_metrics_free(m);
    free(lab);
    free(out);
    free(copy);
    return 0;
}
