/* fuzz_config.c: libFuzzer driver for the levee.yaml parser.
 *
 * Loads the input as a configuration and checks the parser's promises:
 * success and "no messages" go together; a failed load leaves the config
 * zeroed; every message is "fuzz.yaml:LINE:COL: text" with positive
 * numbers and nothing unprintable (values are quoted back sanitized); an
 * accepted config holds what config.h promises (at least one listen
 * address, every route complete, origin indexes in range). The same bytes
 * also go through the three value parsers. Leaks are caught by ASan. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const char *msg)
{
    const char *prefix = "fuzz.yaml:";
    REQUIRE(strncmp(msg, prefix, strlen(prefix)) == 0);
    int line = 0, col = 0, used = 0;
    REQUIRE(sscanf(msg + strlen(prefix), "%d:%d: %n", &line, &col, &used) == 2 && used > 0);
    REQUIRE(line >= 1 && col >= 1);
    for (const char *c = msg; *c; c++)
        REQUIRE((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
}

static void check_route(const lv_config_t *cfg, const lv_config_route_t *r)
{
    REQUIRE(r->method && r->path && r->name && r->path[0] == '/');
    REQUIRE(r->pos.line >= 1);
    switch (r->kind) {
    case LV_TARGET_RESPOND:
        REQUIRE(r->respond.status >= 100 && r->respond.status <= 599);
        REQUIRE(r->respond.body != NULL);
        for (size_t i = 0; i < r->respond.num_headers; i++)
            REQUIRE(!strpbrk(r->respond.headers[i].value, "\r\n"));
        break;
    case LV_TARGET_REDIRECT:
        REQUIRE(r->redirect.table != NULL);
        REQUIRE(r->redirect.status >= 301 && r->redirect.status <= 308);
        break;
    case LV_TARGET_ORIGIN:
        REQUIRE(r->origin >= 0 && (size_t)r->origin < cfg->num_origins);
        break;
    case LV_TARGET_FUNCTION:
        REQUIRE(r->function >= 0 && (size_t)r->function < cfg->num_functions);
        break;
    default:
        REQUIRE(!"route without a target");
    }
    REQUIRE(!r->cache.enabled || r->kind == LV_TARGET_ORIGIN);
    REQUIRE((r->function >= 0) == (r->kind == LV_TARGET_FUNCTION));
    for (size_t i = 0; i < r->cache.num_statuses; i++)
        REQUIRE(r->cache.statuses[i] >= 100 && r->cache.statuses[i] <= 599);
    const lv_config_capture_t *c = &r->capture;
    if (c->enabled) {
        REQUIRE(c->stream >= 0 && (size_t)c->stream < cfg->num_streams);
        REQUIRE(c->pos.line >= 1);
        bool named = c->key == LV_CAPTURE_KEY_PATH || c->key == LV_CAPTURE_KEY_HEADER ||
                     c->key == LV_CAPTURE_KEY_QUERY;
        REQUIRE(named == (c->key_name != NULL));
        REQUIRE(!c->key_name || c->key_name[0]);
        if (c->key == LV_CAPTURE_KEY_PATH) {
            char want[512];
            snprintf(want, sizeof want, "{%s}", c->key_name);
            REQUIRE(strstr(r->path, want) != NULL);
        }
        if (c->key == LV_CAPTURE_KEY_HEADER)
            for (const char *ch = c->key_name; *ch; ch++)
                REQUIRE(!(*ch >= 'A' && *ch <= 'Z') && *ch > 0x20 && *ch < 0x7f && *ch != ':');
        REQUIRE(c->on_full == LV_CAPTURE_SHED || c->on_full == LV_CAPTURE_DROP);
    } else {
        REQUIRE(c->stream == -1 && c->key_name == NULL);
    }
}

static void check_function(const lv_config_function_t *fn)
{
    size_t name_len = strlen(fn->name);
    REQUIRE(name_len >= 1 && name_len <= 64 && strspn(fn->name, "abcdefghijklmnopqrstuvwxyz"
                                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == name_len);
    REQUIRE(fn->code && fn->code[0] && fn->async.on_failure && fn->async.on_failure[0]);
    bool bootstrap = fn->runtime == LV_RUNTIME_NODEJS || fn->runtime == LV_RUNTIME_PYTHON;
    REQUIRE(!bootstrap || (fn->handler && strchr(fn->handler, '.')));
    REQUIRE((fn->runtime == LV_RUNTIME_COMMAND) == (fn->command != NULL));
    REQUIRE(!fn->command || (fn->num_command >= 1 && fn->command[0][0]));
    for (size_t i = 0; i < fn->num_env; i++)
        REQUIRE(fn->env[i].name && fn->env[i].value && strcmp(fn->env[i].name, "_HANDLER") != 0);
    REQUIRE(fn->memory_mb >= 16 && fn->memory_mb <= 10240);
    REQUIRE(fn->timeout_ms >= 1 && fn->timeout_ms <= 900000);
    REQUIRE(fn->init_timeout_ms >= 1 && fn->init_timeout_ms <= 900000);
    REQUIRE(fn->max >= 1 && fn->max <= 4096 && fn->warm <= fn->max);
    REQUIRE(fn->idle_timeout_ms >= 0);
    REQUIRE(fn->queue.enabled && fn->queue.timeout_ms >= 1 && fn->queue.timeout_ms <= 900000);
    for (size_t i = 0; i < fn->num_schedule; i++) {
        const lv_config_schedule_t *s = &fn->schedule[i];
        REQUIRE(s->at_ms >= 0 && (s->until_ms == -1 || s->until_ms > s->at_ms));
        REQUIRE(s->warm <= fn->max);
    }
    REQUIRE(fn->async.retries >= 0 && fn->async.retries <= 2 && fn->async.backoff_ms > 0);
}

static void check_config(const lv_config_t *cfg)
{
    REQUIRE(cfg->data_dir && cfg->api_listen.text && cfg->api_listen.addr_len > 0);
    for (size_t i = 0; i < cfg->num_functions; i++)
        check_function(&cfg->functions[i]);
    REQUIRE(cfg->num_listen >= 1);
    for (size_t i = 0; i < cfg->num_listen; i++)
        REQUIRE(cfg->listen[i].text && cfg->listen[i].addr_len > 0);
    REQUIRE(cfg->threads >= 0 && cfg->threads <= 256);
    REQUIRE(cfg->limits.max_header_bytes >= 1024 && cfg->limits.max_header_bytes <= 1 << 20);
    REQUIRE(cfg->limits.idle_timeout_ms > 0 && cfg->limits.request_timeout_ms > 0);
    for (size_t i = 0; i < cfg->num_origins; i++) {
        const lv_config_origin_t *o = &cfg->origins[i];
        REQUIRE(o->name && o->url && o->host && o->host_header && o->base_path);
        REQUIRE(o->port >= 1 && o->max_conns >= 1);
    }
    for (size_t i = 0; i < cfg->num_routes; i++)
        check_route(cfg, &cfg->routes[i]);
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    for (size_t i = 0; i < cfg->num_streams; i++) {
        const lv_config_stream_t *st = &cfg->streams[i];
        size_t len = strlen(st->name);
        REQUIRE(len >= 1 && len <= 128 && strspn(st->name, name_chars) == len);
        REQUIRE(strcmp(st->name, ".") != 0 && strcmp(st->name, "..") != 0);
        for (size_t j = 0; j < i; j++)
            REQUIRE(strcmp(st->name, cfg->streams[j].name) != 0);
        REQUIRE(st->shards >= 1 && st->shards <= 1024);
        REQUIRE(st->retention_ms >= 3600000 && st->retention_ms <= 8760LL * 3600000);
        REQUIRE(st->sync_interval_ms >= 1 && st->sync_interval_ms <= 10000);
        REQUIRE(st->segment_bytes >= 1u << 20 && st->segment_bytes <= 1u << 30);
        REQUIRE(st->max_pending_bytes >= 1u << 20);
    }
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        const lv_config_consumer_t *c = &cfg->consumers[i];
        size_t len = strlen(c->name);
        REQUIRE(len >= 1 && len <= 256 && strspn(c->name, name_chars) == len);
        for (size_t j = 0; j < i; j++)
            REQUIRE(strcmp(c->name, cfg->consumers[j].name) != 0);
        REQUIRE(c->stream >= 0 && (size_t)c->stream < cfg->num_streams);
        REQUIRE(c->function >= 0 && (size_t)c->function < cfg->num_functions);
        REQUIRE(c->batch_size >= 1 && c->batch_size <= 10000);
        REQUIRE(c->batching_window_ms >= 0 && c->batching_window_ms <= 300000);
        REQUIRE((c->starting_position == LV_START_AT_TIMESTAMP) == (c->starting_timestamp_ms >= 0));
        REQUIRE(c->max_retries >= -1 && c->max_retries <= 10000);
        REQUIRE(c->retry_backoff_ms >= 1 && c->retry_backoff_ms <= 60000);
        REQUIRE(c->on_failure && c->on_failure[0]);
    }
}

static void fuzz_value_parsers(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms;
    uint64_t bytes;
    lv_config_listen_t l;
    if (lv_config_parse_duration(s, &ms) == 0)
        REQUIRE(ms >= 0);
    (void)lv_config_parse_size(s, &bytes);
    if (lv_config_parse_listen(s, &l) == 0)
        REQUIRE(l.addr_len > 0 && l.addr_len <= sizeof l.addr);
    const char *why = NULL;
    if (lv_config_parse_time(s, &ms, &why) == 0)
        REQUIRE(ms >= 0 && ms <= 253402300799999);
    else
        REQUIRE(why != NULL);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const lv_config_t zero;
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = lv_config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &errs);
    REQUIRE(rc == 0 || rc == -1);
    REQUIRE((rc == 0) == (errs.count == 0));
    for (size_t i = 0; i < errs.count; i++)
        check_message(errs.items[i]);
    if (rc == 0) {
        check_config(&cfg);
        lv_config_free(&cfg);
    }
    REQUIRE(memcmp(&cfg, &zero, sizeof cfg) == 0);
    lv_config_errors_free(&errs);
    fuzz_value_parsers(data, size);
    return 0;
}
