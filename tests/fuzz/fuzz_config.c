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
