/* config_test.c: unit tests for the levee.yaml parser (core/config.h).
 *
 * Most tests load YAML from memory under the name "t.yaml" and compare the
 * complete list of messages, joined by newlines, with the exact expected
 * text, so a change in wording or position is a visible test change. The
 * redirect-table check touches the file system: those tests work in a fresh
 * temporary directory. Run under ASan (`make SAN=1`) to check that failed
 * loads free everything. */
#include "core/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "test.h"

static char tmpdir[64];     /* fresh directory for files the tests need */
static char table_csv[128]; /* an existing, readable redirect table in it */

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lv_config_test.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(table_csv, sizeof table_csv, "%s/qr.csv", tmpdir);
    FILE *f = fopen(table_csv, "w");
    if (!f) {
        perror(table_csv);
        exit(1);
    }
    fputs("code,url\n", f);
    fclose(f);
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Every message, one per line, without a trailing newline. */
static char *joined(const lv_config_errors_t *errs)
{
    lv_buf_t b = LV_BUF_INIT;
    for (size_t i = 0; i < errs->count; i++)
        lv_buf_printf(&b, "%s%s", i ? "\n" : "", errs->items[i]);
    lv_buf_append(&b, "", 1);
    char *s = strdup(lv_buf_data(&b));
    lv_buf_free(&b);
    return s;
}

static int load(const char *yaml, lv_config_t *cfg, lv_config_errors_t *errs)
{
    return lv_config_load_string("t.yaml", yaml, strlen(yaml), cfg, errs);
}

static bool is_zeroed(const lv_config_t *cfg)
{
    static const lv_config_t zero;
    return memcmp(cfg, &zero, sizeof zero) == 0;
}

/* Loads yaml expecting failure with exactly `expected` (joined messages).
 * Prints the difference and returns false on mismatch. */
static bool fails_with(const char *yaml, const char *expected)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load(yaml, &cfg, &errs);
    char *got = joined(&errs);
    bool ok = rc == -1 && is_zeroed(&cfg) && strcmp(got, expected) == 0;
    if (!ok)
        fprintf(stderr, "  for YAML:\n%s\n  expected (rc -1):\n%s\n  got (rc %d%s):\n%s\n", yaml,
                expected, rc, is_zeroed(&cfg) ? "" : ", cfg not zeroed", got);
    if (rc == 0)
        lv_config_free(&cfg);
    free(got);
    lv_config_errors_free(&errs);
    return ok;
}

#define CHECK_FAILS(yaml, expected) CHECK(fails_with((yaml), (expected)))

/* ------------------------------------------------------------------ */

static void test_full_config(void)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "listen: [127.0.0.1:8080, '[::1]:8081']\n"
             "threads: 4\n"
             "admin: { listen: 127.0.0.1:9902 }\n"
             "cache: { max_bytes: 64MiB }\n"
             "log_level: warn\n"
             "shutdown_timeout: 2500ms\n"
             "limits: { max_connections: 5000, max_header_bytes: 8KiB, max_body_bytes: 1MB,\n"
             "          header_timeout: 5s, idle_timeout: 2m, request_timeout: 1h }\n"
             "origins:\n"
             "  events: { url: http://127.0.0.1:3000, max_conns: 16, connect_timeout: 250ms,\n"
             "            timeout: 5s }\n"
             "routes:\n"
             "  - match: GET /hello\n"
             "    respond: { status: 201, body: \"hello\\n\", headers: { content-type: text/plain, "
             "X-Id: 7 } }\n"
             "  - match: GET /r/{code}\n"
             "    redirect: { table: %s, status: 301, missing: https://example.com/ }\n"
             "  - match: ANY /events/*\n"
             "    name: events\n"
             "    origin: events\n"
             "    cache: { ttl: 10s, stale_while_revalidate: 60s, stale_if_error: 10m,\n"
             "             statuses: [200, 404], cache_set_cookie: true }\n"
             "  - match: POST /api/{version}/items/{id}\n"
             "    origin: http://10.0.0.2:9000/base/\n",
             table_csv);
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load(yaml, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);
    lv_config_errors_free(&errs);

    CHECK_STR(cfg.path, "t.yaml");
    CHECK_STR(cfg.dir, ".");
    CHECK_EQ(cfg.num_listen, 2);
    CHECK_STR(cfg.listen[0].text, "127.0.0.1:8080");
    CHECK_EQ(cfg.listen[0].pos.line, 1);
    CHECK_EQ(cfg.listen[0].pos.col, 10);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg.listen[0].addr;
    CHECK_EQ(sin->sin_family, AF_INET);
    CHECK_EQ(ntohs(sin->sin_port), 8080);
    CHECK_EQ(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK_EQ(cfg.listen[0].addr_len, sizeof(struct sockaddr_in));
    CHECK_STR(cfg.listen[1].text, "[::1]:8081");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg.listen[1].addr;
    CHECK_EQ(sin6->sin6_family, AF_INET6);
    CHECK_EQ(ntohs(sin6->sin6_port), 8081);
    CHECK(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    CHECK_EQ(cfg.threads, 4);
    CHECK(cfg.admin_enabled);
    CHECK_STR(cfg.admin_listen.text, "127.0.0.1:9902");
    CHECK_EQ(ntohs(((const struct sockaddr_in *)&cfg.admin_listen.addr)->sin_port), 9902);
    CHECK_EQ(cfg.admin_listen.pos.line, 3);
    CHECK_EQ(cfg.admin_listen.pos.col, 18);
    CHECK_EQ(cfg.cache_max_bytes, 64ull << 20);
    CHECK_EQ(cfg.log_level, LV_LOG_WARN);
    CHECK_EQ(cfg.shutdown_timeout_ms, 2500);
    CHECK_EQ(cfg.limits.max_connections, 5000);
    CHECK_EQ(cfg.limits.max_header_bytes, 8192);
    CHECK_EQ(cfg.limits.max_body_bytes, 1000000);
    CHECK_EQ(cfg.limits.header_timeout_ms, 5000);
    CHECK_EQ(cfg.limits.idle_timeout_ms, 120000);
    CHECK_EQ(cfg.limits.request_timeout_ms, 3600000);

    CHECK_EQ(cfg.num_origins, 2);
    const lv_config_origin_t *o = &cfg.origins[0];
    CHECK_STR(o->name, "events");
    CHECK_STR(o->url, "http://127.0.0.1:3000");
    CHECK_STR(o->host, "127.0.0.1");
    CHECK_STR(o->host_header, "127.0.0.1:3000");
    CHECK_EQ(o->port, 3000);
    CHECK_STR(o->base_path, "");
    CHECK_EQ(o->max_conns, 16);
    CHECK_EQ(o->connect_timeout_ms, 250);
    CHECK_EQ(o->timeout_ms, 5000);
    CHECK_EQ(o->pos.line, 10);
    CHECK_EQ(o->pos.col, 3);
    o = &cfg.origins[1];
    CHECK_STR(o->name, "http://10.0.0.2:9000/base/");
    CHECK_STR(o->url, "http://10.0.0.2:9000/base/");
    CHECK_STR(o->host, "10.0.0.2");
    CHECK_STR(o->host_header, "10.0.0.2:9000");
    CHECK_EQ(o->port, 9000);
    CHECK_STR(o->base_path, "/base");
    CHECK_EQ(o->max_conns, 64);
    CHECK_EQ(o->connect_timeout_ms, 1000);
    CHECK_EQ(o->timeout_ms, 30000);
    CHECK_EQ(o->pos.line, 23);
    CHECK_EQ(o->pos.col, 13);

    CHECK_EQ(cfg.num_routes, 4);
    const lv_config_route_t *r = &cfg.routes[0];
    CHECK_STR(r->method, "GET");
    CHECK_STR(r->path, "/hello");
    CHECK_STR(r->name, "GET /hello");
    CHECK_EQ(r->pos.line, 13);
    CHECK_EQ(r->pos.col, 12);
    CHECK_EQ(r->kind, LV_TARGET_RESPOND);
    CHECK_EQ(r->respond.status, 201);
    CHECK_EQ(r->respond.body_len, 6);
    CHECK_STR(r->respond.body, "hello\n");
    CHECK_EQ(r->respond.num_headers, 2);
    CHECK_STR(r->respond.headers[0].name, "content-type");
    CHECK_STR(r->respond.headers[0].value, "text/plain");
    CHECK_STR(r->respond.headers[1].name, "X-Id");
    CHECK_STR(r->respond.headers[1].value, "7");
    CHECK(!r->cache.enabled);
    CHECK_EQ(r->origin, -1);

    r = &cfg.routes[1];
    CHECK_STR(r->name, "GET /r/{code}");
    CHECK_STR(r->path, "/r/{code}");
    CHECK_EQ(r->kind, LV_TARGET_REDIRECT);
    CHECK_STR(r->redirect.table, table_csv);
    CHECK_EQ(r->redirect.table_pos.line, 16);
    CHECK_EQ(r->redirect.table_pos.col, 24);
    CHECK_EQ(r->redirect.status, 301);
    CHECK_STR(r->redirect.missing, "https://example.com/");

    r = &cfg.routes[2];
    CHECK_STR(r->method, "ANY");
    CHECK_STR(r->path, "/events/*");
    CHECK_STR(r->name, "events");
    CHECK_EQ(r->kind, LV_TARGET_ORIGIN);
    CHECK_EQ(r->origin, 0);
    CHECK(r->cache.enabled);
    CHECK_EQ(r->cache.ttl_ms, 10000);
    CHECK_EQ(r->cache.stale_while_revalidate_ms, 60000);
    CHECK_EQ(r->cache.stale_if_error_ms, 600000);
    CHECK_EQ(r->cache.num_statuses, 2);
    CHECK_EQ(r->cache.statuses[0], 200);
    CHECK_EQ(r->cache.statuses[1], 404);
    CHECK(r->cache.cache_set_cookie);

    r = &cfg.routes[3];
    CHECK_STR(r->method, "POST");
    CHECK_STR(r->path, "/api/{version}/items/{id}");
    CHECK_EQ(r->kind, LV_TARGET_ORIGIN);
    CHECK_EQ(r->origin, 1);
    CHECK(!r->cache.enabled);

    lv_config_free(&cfg);
    CHECK(is_zeroed(&cfg));
}

static void check_defaults(const char *yaml)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load(yaml, &cfg, &errs), 0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.num_listen, 1);
    CHECK_STR(cfg.listen[0].text, "127.0.0.1:8080");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg.listen[0].addr;
    CHECK_EQ(ntohs(sin->sin_port), 8080);
    CHECK_EQ(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    CHECK_EQ(cfg.threads, 0);
    CHECK(cfg.admin_enabled);
    CHECK_STR(cfg.admin_listen.text, "127.0.0.1:9901");
    CHECK_EQ(ntohs(((const struct sockaddr_in *)&cfg.admin_listen.addr)->sin_port), 9901);
    CHECK_EQ(cfg.cache_max_bytes, 256ull << 20);
    CHECK_EQ(cfg.shutdown_timeout_ms, 10000);
    CHECK_EQ(cfg.log_level, LV_LOG_INFO);
    CHECK_EQ(cfg.limits.max_connections, 100000);
    CHECK_EQ(cfg.limits.max_header_bytes, 16384);
    CHECK_EQ(cfg.limits.max_body_bytes, 6ull << 20);
    CHECK_EQ(cfg.limits.header_timeout_ms, 10000);
    CHECK_EQ(cfg.limits.idle_timeout_ms, 60000);
    CHECK_EQ(cfg.limits.request_timeout_ms, 30000);
    CHECK_EQ(cfg.num_origins, 0);
    CHECK_EQ(cfg.num_routes, 0);
    CHECK(cfg.api_enabled);
    CHECK_STR(cfg.api_listen.text, "127.0.0.1:4566");
    CHECK_EQ(ntohs(((const struct sockaddr_in *)&cfg.api_listen.addr)->sin_port), 4566);
    CHECK_EQ(cfg.api_listen.pos.line, 0);
    CHECK_STR(cfg.data_dir, "levee-data");
    CHECK(cfg.runtime_dir == NULL);
    CHECK_EQ(cfg.num_functions, 0);
    CHECK(cfg.functions == NULL);
    lv_config_free(&cfg);
}

static void test_defaults(void)
{
    check_defaults("");
    check_defaults("# nothing but a comment\n");
    check_defaults("{}");
    check_defaults("---\n");
    check_defaults("admin:\nlimits: {}\ncache:\norigins:\nroutes: []\n");
    check_defaults("api:\nfunctions:\n");
    check_defaults("api: {}\nfunctions: {}\n");
}

static void test_route_defaults(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load("routes:\n"
                  "  - match: GET /\n"
                  "    respond:\n"
                  "  - match: GET /a\n"
                  "    origin: http://example.com\n"
                  "    cache:\n"
                  "  - match: GET /b\n"
                  "    origin: http://example.com\n"
                  "  - match: DELETE /c\n"
                  "    origin: 'http://[::1]/'\n",
                  &cfg, &errs);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(rc, 0);
    const lv_config_route_t *r = &cfg.routes[0];
    CHECK_EQ(r->kind, LV_TARGET_RESPOND);
    CHECK_EQ(r->respond.status, 200);
    CHECK_STR(r->respond.body, "");
    CHECK_EQ(r->respond.body_len, 0);
    CHECK_EQ(r->respond.num_headers, 0);
    CHECK(!r->cache.enabled);
    r = &cfg.routes[1];
    CHECK(r->cache.enabled);
    CHECK_EQ(r->cache.ttl_ms, -1);
    CHECK_EQ(r->cache.stale_while_revalidate_ms, -1);
    CHECK_EQ(r->cache.stale_if_error_ms, -1);
    CHECK(r->cache.statuses == NULL);
    CHECK_EQ(r->cache.num_statuses, 0);
    CHECK(!r->cache.cache_set_cookie);
    /* One anonymous origin shared by both routes that name the same URL. */
    CHECK_EQ(cfg.num_origins, 2);
    CHECK_EQ(cfg.routes[1].origin, 0);
    CHECK_EQ(cfg.routes[2].origin, 0);
    CHECK_STR(cfg.origins[0].host, "example.com");
    CHECK_STR(cfg.origins[0].host_header, "example.com");
    CHECK_EQ(cfg.origins[0].port, 80);
    CHECK_STR(cfg.origins[0].base_path, "");
    CHECK_EQ(cfg.routes[3].origin, 1);
    CHECK_STR(cfg.origins[1].host, "::1");
    CHECK_STR(cfg.origins[1].host_header, "[::1]");
    CHECK_STR(cfg.origins[1].base_path, "");
    lv_config_free(&cfg);
}

static void test_redirect_defaults(void)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml, "routes:\n  - match: GET /r/{c}\n    redirect: { table: %s }\n",
             table_csv);
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load(yaml, &cfg, &errs), 0);
    CHECK_EQ(cfg.routes[0].redirect.status, 302);
    CHECK(cfg.routes[0].redirect.missing == NULL);
    lv_config_free(&cfg);
}

static void test_admin_off_and_threads_auto(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("threads: auto\nadmin: { listen: off }\nlisten: 9000\n", &cfg, &errs), 0);
    CHECK_EQ(cfg.threads, 0);
    CHECK(!cfg.admin_enabled);
    CHECK_STR(cfg.listen[0].text, "9000");
    lv_config_free(&cfg);
    CHECK_EQ(load("threads: 256\nadmin:\n  listen: '[::]:9901'\n", &cfg, &errs), 0);
    CHECK_EQ(cfg.threads, 256);
    CHECK(cfg.admin_enabled);
    CHECK_EQ(cfg.admin_listen.addr.ss_family, AF_INET6);
    lv_config_free(&cfg);
    /* `off` frees the admin port, so the public side may take it. */
    CHECK_EQ(load("listen: 9901\nadmin: { listen: off }\n", &cfg, &errs), 0);
    lv_config_free(&cfg);
    CHECK_EQ(errs.count, 0);
}

/* Each case is one mistake and the exact message it must produce. */
static const struct {
    const char *yaml, *expected;
} error_cases[] = {
    /* YAML level */
    {"a: [\n", "t.yaml:2:1: syntax error: did not find expected node content (while parsing a "
               "flow node at 2:1)"},
    {"a: 'x\n", "t.yaml:2:1: syntax error: found unexpected end of stream (while scanning a "
                "quoted scalar at 1:4)"},
    {"threads: 2\n\xff\n", "t.yaml:2:1: syntax error: invalid leading UTF-8 octet (0xFF)"},
    {"threads: &n 2\n", "t.yaml:1:10: YAML anchors (&n) are not supported; repeat the value "
                        "instead"},
    {"threads: !!int 2\n", "t.yaml:1:10: YAML tags (tag:yaml.org,2002:int) are not supported; "
                           "quote the value if it must be a string"},
    {"limits: &l {}\nadmin: *l\n",
     "t.yaml:1:9: YAML anchors (&l) are not supported; repeat the value instead\n"
     "t.yaml:2:8: YAML aliases (*l) are not supported; repeat the value instead"},
    {"threads: 2\n---\nthreads: 3\n",
     "t.yaml:2:1: only one YAML document is allowed; remove this '---' and what follows"},
    {"- listen: 8080\n", "t.yaml:1:1: the configuration must be a mapping of keys (like "
                         "'listen: 8080'), not a list"},
    {"? [a]\n: 1\n", "t.yaml:1:3: a key must be a single value, not a list"},
    /* keys */
    {"foo: 1\n", "t.yaml:1:1: unknown key 'foo' at top level; expected one of: listen, threads, "
                 "admin, api, cache, log_level, shutdown_timeout, limits, data_dir, runtime_dir, "
                 "origins, functions, routes, streams, consumers"},
    {"threads: 1\nthreads: 2\n", "t.yaml:2:1: duplicate key 'threads' (first at 1:1)"},
    /* threads */
    {"threads: 0\n", "t.yaml:1:10: 'threads' must be 'auto' or a whole number from 1 to 256, "
                     "got '0'"},
    {"threads: 257\n", "t.yaml:1:10: 'threads' must be 'auto' or a whole number from 1 to 256, "
                       "got '257'"},
    {"threads: [1]\n", "t.yaml:1:10: 'threads' must be a single value, not a list"},
    {"threads:\n", "t.yaml:1:9: 'threads' has no value"},
    {"threads: \"1\\0\"\n", "t.yaml:1:10: 'threads' must not contain NUL characters"},
    /* listen and admin */
    {"listen: {a: 1}\n", "t.yaml:1:9: 'listen' must be an address or a list of addresses, not a "
                         "mapping"},
    {"listen: []\n", "t.yaml:1:9: 'listen' needs at least one address"},
    {"listen: 1.2.3:80\n", "t.yaml:1:9: invalid listen address '1.2.3:80' (use e.g. "
                           "127.0.0.1:8080, [::1]:8080, *:8080 or 8080)"},
    {"listen: 127.0.0.1:0\n", "t.yaml:1:9: invalid listen address '127.0.0.1:0' (use e.g. "
                              "127.0.0.1:8080, [::1]:8080, *:8080 or 8080)"},
    {"listen: [8080, '127.0.0.1:8080']\n",
     "t.yaml:1:16: duplicate listen address '127.0.0.1:8080' (same as '8080' at 1:10)"},
    {"admin: { listen: 8080 }\n",
     "t.yaml:1:18: admin listen address '8080' is also a public listen address"},
    {"listen: 9901\n", "t.yaml:1:9: listen address '9901' is the admin address; use another or "
                       "move admin (admin: { listen: ... })"},
    {"admin: [1]\n", "t.yaml:1:8: 'admin' must be a mapping, not a list"},
    {"admin: { port: 1 }\n", "t.yaml:1:10: unknown key 'port' in admin; expected one of: listen"},
    /* plain values */
    {"log_level: verbose\n", "t.yaml:1:12: 'log_level' must be one of debug, info, warn, error; "
                             "got 'verbose'"},
    {"shutdown_timeout: 10x\n", "t.yaml:1:19: 'shutdown_timeout': invalid duration '10x' (use "
                                "e.g. 250ms, 10s, 5m, 2h, 1d)"},
    {"shutdown_timeout: -1s\n", "t.yaml:1:19: 'shutdown_timeout': invalid duration '-1s' (use "
                                "e.g. 250ms, 10s, 5m, 2h, 1d)"},
    {"cache: { max_bytes: 10k }\n", "t.yaml:1:21: 'max_bytes': invalid size '10k' (use e.g. "
                                    "512, 64KiB, 256MiB, 1GiB, 10MB)"},
    {"cache: { max_bytes: 0 }\n", "t.yaml:1:21: 'max_bytes' must be greater than 0"},
    {"cache: { max_bytes: 99999999999999999999GiB }\n",
     "t.yaml:1:21: 'max_bytes': invalid size '99999999999999999999GiB' (use e.g. 512, 64KiB, "
     "256MiB, 1GiB, 10MB)"},
    /* limits */
    {"limits: { max_header_bytes: 512 }\n",
     "t.yaml:1:29: 'max_header_bytes' must be between 1KiB and 1MiB, got '512'"},
    {"limits: { max_header_bytes: 2MiB }\n",
     "t.yaml:1:29: 'max_header_bytes' must be between 1KiB and 1MiB, got '2MiB'"},
    {"limits: { idle_timeout: 0 }\n", "t.yaml:1:25: 'idle_timeout' must be greater than 0"},
    {"limits: { max_connections: 0 }\n", "t.yaml:1:28: 'max_connections' must be a whole "
                                         "number from 1 to 10000000, got '0'"},
    {"limits: { timeout: 1s }\n",
     "t.yaml:1:11: unknown key 'timeout' in limits; expected one of: max_connections, "
     "max_header_bytes, max_body_bytes, header_timeout, idle_timeout, request_timeout, max_memory"},
    /* origins */
    {"origins: [a]\n", "t.yaml:1:10: 'origins' must be a mapping, not a list"},
    {"origins: { a: { max_conns: 2 } }\n",
     "t.yaml:1:15: origin 'a' is missing required key 'url'"},
    {"origins: { a: { url: https://x } }\n",
     "t.yaml:1:22: https origins are not supported yet"},
    {"origins: { a: { url: ftp://x } }\n",
     "t.yaml:1:22: invalid origin URL 'ftp://x': expected http://host[:port][/base]"},
    {"origins: { a: { url: 'http://x:99999' } }\n",
     "t.yaml:1:22: invalid origin URL 'http://x:99999': the port must be a number from 1 to "
     "65535"},
    {"origins: { a: { url: 'http://:80' } }\n",
     "t.yaml:1:22: invalid origin URL 'http://:80': the host is missing"},
    {"origins: { a: { url: 'http://u@x' } }\n",
     "t.yaml:1:22: invalid origin URL 'http://u@x': user names and passwords in origin URLs are "
     "not supported"},
    {"origins: { a: { url: 'http://x/?q' } }\n",
     "t.yaml:1:22: invalid origin URL 'http://x/?q': it must not contain a query or fragment"},
    {"origins: { a: { url: 'http://[::1/' } }\n",
     "t.yaml:1:22: invalid origin URL 'http://[::1/': '[' without ']'"},
    {"origins: { 'a b': { url: http://x } }\n",
     "t.yaml:1:12: invalid origin name 'a b'; use letters, digits, '-', '.' and '_'"},
    {"origins: { a: { url: http://x, max_conns: 0 } }\n",
     "t.yaml:1:43: 'max_conns' must be a whole number from 1 to 100000, got '0'"},
    {"origins: { a: { url: http://x, timeout: 0s } }\n",
     "t.yaml:1:41: 'timeout' must be greater than 0"},
    {"origins: { a: { url: http://x, weight: 3 } }\n",
     "t.yaml:1:32: unknown key 'weight' in origin; expected one of: url, max_conns, "
     "connect_timeout, timeout, max_pending, retries, breaker"},
    {"origins: { a: { url: http://x }, a: { url: http://y } }\n",
     "t.yaml:1:34: duplicate key 'a' (first at 1:12)"},
    /* routes: shape */
    {"routes: {}\n", "t.yaml:1:9: 'routes' must be a list, not a mapping"},
    {"routes:\n  - 5\n", "t.yaml:2:5: a route must be a mapping with 'match' and a target, not a "
                         "single value"},
    {"routes:\n  - respond: {}\n", "t.yaml:2:5: route is missing required key 'match'"},
    {"routes:\n  - match: GET /\n",
     "t.yaml:2:5: route has no target; add one of: respond, redirect, origin, function"},
    {"routes:\n  - match: GET /\n    respond: {}\n    origin: http://x\n",
     "t.yaml:4:5: 'origin' conflicts with 'respond' at 3:5; a route has exactly one target"},
    {"routes:\n  - match: GET /\n    respond: {}\n    foo: 1\n",
     "t.yaml:4:5: unknown key 'foo' in route; expected one of: match, name, respond, redirect, "
     "origin, function, cache, throttle, throttle_per_client, concurrency, queue, capture"},
    {"routes:\n  - match: GET /\n    name: ''\n    respond: {}\n",
     "t.yaml:3:11: 'name' must not be empty"},
    /* routes: match */
    {"routes:\n- match: GET\n  respond: {}\n",
     "t.yaml:2:10: 'match' must be 'METHOD /path' (e.g. 'GET /hello'), got 'GET'"},
    {"routes:\n- match: GET /a b\n  respond: {}\n",
     "t.yaml:2:10: 'match' must be 'METHOD /path' (e.g. 'GET /hello'), got 'GET /a b'"},
    {"routes:\n- match: get /a\n  respond: {}\n", "t.yaml:2:10: method 'get' must be upper-case"},
    {"routes:\n- match: G(T /a\n  respond: {}\n", "t.yaml:2:10: invalid method 'G(T' in 'match'"},
    {"routes:\n- match: GET a\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern 'a': it must start with '/'"},
    {"routes:\n- match: GET /a//b\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/a//b': it has an empty segment ('//')"},
    {"routes:\n- match: GET /a/*/b\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/a/*/b': '*' is only allowed as the whole last segment"},
    {"routes:\n- match: GET /a*\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/a*': '*' is only allowed as the whole last segment"},
    {"routes:\n- match: GET /r/x{id}\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/r/x{id}': '{' and '}' are only allowed around a whole "
     "segment, like /{name}"},
    {"routes:\n- match: GET /r/{1d}\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/r/{1d}': invalid parameter name '1d' (use letters, "
     "digits and '_', not starting with a digit)"},
    {"routes:\n- match: GET /r/{}\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/r/{}': invalid parameter name '' (use letters, digits "
     "and '_', not starting with a digit)"},
    {"routes:\n- match: GET /r/{id}/{id}\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/r/{id}/{id}': parameter 'id' is used twice"},
    {"routes:\n- match: GET /a?b=1\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/a?b=1': '?' and '#' are not part of a path"},
    {"routes:\n- match: GET /caf\xc3\xa9\n  respond: {}\n",
     "t.yaml:2:10: invalid path pattern '/caf\\xC3\\xA9': it contains a space, control or "
     "non-ASCII character (percent-encode it)"},
    /* routes: respond */
    {"routes:\n- match: GET /\n  respond: { status: 600 }\n",
     "t.yaml:3:22: 'status' must be a whole number from 100 to 599, got '600'"},
    {"routes:\n- match: GET /\n  respond: { status: ok }\n",
     "t.yaml:3:22: 'status' must be a whole number from 100 to 599, got 'ok'"},
    {"routes:\n- match: GET /\n  respond: { status: 204, body: x }\n",
     "t.yaml:3:33: a response with status 204 cannot have a body"},
    {"routes:\n- match: GET /\n  respond: { body: [x] }\n",
     "t.yaml:3:20: 'body' must be a single value, not a list"},
    {"routes:\n- match: GET /\n  respond: { headers: { 'bad name': x } }\n",
     "t.yaml:3:25: invalid header name 'bad name'"},
    {"routes:\n- match: GET /\n  respond: { headers: { Content-Length: 5 } }\n",
     "t.yaml:3:25: header 'Content-Length' is set by levee and cannot be configured"},
    {"routes:\n- match: GET /\n  respond: { headers: { x-a: \"a\\r\\nb\" } }\n",
     "t.yaml:3:30: header 'x-a' must not contain control characters (CR, LF, ...)"},
    {"routes:\n- match: GET /\n  respond: { headers: [a] }\n",
     "t.yaml:3:23: 'headers' must be a mapping, not a list"},
    {"routes:\n- match: GET /\n  respond: { code: 200 }\n",
     "t.yaml:3:14: unknown key 'code' in respond; expected one of: status, body, headers"},
    /* routes: redirect */
    {"routes:\n- match: GET /\n  redirect: { status: 301 }\n",
     "t.yaml:3:13: 'redirect' is missing required key 'table'"},
    {"routes:\n- match: GET /\n  redirect: { table: /nonexistent/levee/qr.csv }\n",
     "t.yaml:3:22: cannot read redirect table '/nonexistent/levee/qr.csv': No such file or "
     "directory"},
    {"routes:\n- match: GET /\n  redirect: { table: /tmp }\n",
     "t.yaml:3:22: cannot read redirect table '/tmp': Is a directory"},
    {"routes:\n- match: GET /\n  redirect: { table: '' }\n",
     "t.yaml:3:22: 'table' must not be empty"},
    /* routes: origin and cache */
    {"routes:\n- match: GET /\n  origin: nope\n",
     "t.yaml:3:11: unknown origin 'nope' (not defined under origins:)"},
    {"routes:\n- match: GET /\n  origin: localhost:3000\n",
     "t.yaml:3:11: invalid origin URL 'localhost:3000': expected http://host[:port][/base]"},
    {"routes:\n- match: GET /\n  origin: https://example.com\n",
     "t.yaml:3:11: https origins are not supported yet"},
    {"routes:\n- match: GET /\n  respond: {}\n  cache: {}\n",
     "t.yaml:4:3: 'cache' is only allowed on routes with an origin"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { ttl: 0 }\n",
     "t.yaml:4:17: 'ttl' must be greater than 0"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { stale_if_error: soon }\n",
     "t.yaml:4:28: 'stale_if_error': invalid duration 'soon' (use e.g. 250ms, 10s, 5m, 2h, 1d)"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { statuses: [] }\n",
     "t.yaml:4:22: 'statuses' must not be empty (leave it out for the default)"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { statuses: 200 }\n",
     "t.yaml:4:22: 'statuses' must be a list, not a single value"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { statuses: [200, 200] }\n",
     "t.yaml:4:28: status 200 is listed twice"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { statuses: [99] }\n",
     "t.yaml:4:23: 'statuses' must be a whole number from 100 to 599, got '99'"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { cache_set_cookie: yes }\n",
     "t.yaml:4:30: 'cache_set_cookie' must be true or false, got 'yes'"},
    {"routes:\n- match: GET /\n  origin: http://x\n  cache: { max_age: 1s }\n",
     "t.yaml:4:12: unknown key 'max_age' in route cache; expected one of: ttl, "
     "stale_while_revalidate, stale_if_error, statuses, cache_set_cookie"},
    /* admission (issue 3) */
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle: { rate: 10, burst: 0 }\n",
     "t.yaml:4:32: 'burst' must be greater than 0"},
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle: { rate: 10, burst: 0.5 }\n",
     "t.yaml:4:32: 'burst' must be at least 1 (a bucket that holds no token admits nothing)"},
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle: { rate: -1 }\n",
     "t.yaml:4:21: 'rate': invalid number '-1' (use e.g. 2000 or 0.5)"},
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle: { rate: 0 }\n",
     "t.yaml:4:21: 'rate' must be greater than 0"},
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle: { burst: 5 }\n",
     "t.yaml:4:13: 'throttle' is missing required key 'rate'"},
    {"routes:\n- match: GET /\n  origin: http://x\n  throttle_per_client: { rate: 1, key: cookie }\n",
     "t.yaml:4:40: 'key' must be 'ip' or 'header:Name', not 'cookie'"},
    {"routes:\n- match: GET /\n  origin: http://x\n  concurrency: 0\n",
     "t.yaml:4:16: 'concurrency' must be a whole number from 1 to 10000000, got '0'"},
    {"routes:\n- match: GET /\n  origin: http://x\n  queue: { max: 5 }\n",
     "t.yaml:4:10: 'queue' needs 'concurrency' on the same route (requests queue for a slot)"},
    {"limits: { request_timeout: 1s }\nroutes:\n- match: GET /\n  origin: http://x\n"
     "  concurrency: 4\n  queue: { timeout: 2s }\n",
     "t.yaml:6:10: queue timeout (2000ms) is longer than limits.request_timeout (1000ms)"},
    {"origins:\n  o: { url: http://x, retries: 11 }\n",
     "t.yaml:2:32: 'retries' must be a whole number from 0 to 10, got '11'"},
    {"origins:\n  o: { url: http://x, breaker: { window: 1s } }\n",
     "t.yaml:2:32: 'breaker' is missing required key 'failures'"},
    {"limits: { max_memory: 1MiB }\n",
     "t.yaml:1:23: 'max_memory' must be at least 16MiB"},
    /* routes: clashes */
    {"routes:\n- match: GET /a\n  respond: {}\n- match: GET /a\n  respond: {}\n",
     "t.yaml:4:10: duplicate route 'GET /a' (first at 2:10)"},
    {"routes:\n- { match: GET /a, name: x, respond: {} }\n"
     "- { match: GET /b, name: x, respond: {} }\n",
     "t.yaml:3:12: route name 'x' is already used by the route at 2:12"},
};

/* The admission keys of a route and the protection keys of an origin. */
static void test_admission_keys(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    const char *yaml = "limits: { request_timeout: 5s, max_memory: 512MiB }\n"
                       "origins:\n"
                       "  shop: { url: http://127.0.0.1:3000, max_pending: 100, retries: 2,\n"
                       "          breaker: { failures: 20, window: 10s, open_for: 5s } }\n"
                       "routes:\n"
                       "- match: POST /checkout\n"
                       "  origin: shop\n"
                       "  throttle: { rate: 2000, burst: 500 }\n"
                       "  throttle_per_client: { rate: 20, burst: 40, key: 'header:X-Api-Key' }\n"
                       "  concurrency: 256\n"
                       "  queue: { max: 10000, timeout: 2s }\n"
                       "- match: GET /slow\n"
                       "  origin: shop\n"
                       "  throttle: { rate: 0.5 }\n"
                       "  throttle_per_client: { rate: 3 }\n";
    CHECK_EQ(load(yaml, &cfg, &errs), 0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.limits.max_memory, 512ull << 20);
    const lv_config_origin_t *o = &cfg.origins[0];
    CHECK_EQ(o->max_pending, 100);
    CHECK_EQ(o->retries, 2);
    CHECK(o->breaker.enabled);
    CHECK_EQ(o->breaker.failures, 20);
    CHECK_EQ(o->breaker.window_ms, 10000);
    CHECK_EQ(o->breaker.open_for_ms, 5000);
    const lv_config_route_t *r = &cfg.routes[0];
    CHECK(r->throttle.enabled);
    CHECK(r->throttle.rate == 2000 && r->throttle.burst == 500);
    CHECK(r->throttle_per_client.enabled);
    CHECK(r->throttle_per_client.rate == 20 && r->throttle_per_client.burst == 40);
    CHECK_STR(r->throttle_per_client.key, "header:X-Api-Key");
    CHECK_EQ(r->throttle_per_client.max_clients, 100000);
    CHECK_EQ(r->concurrency, 256);
    CHECK(r->queue.enabled);
    CHECK_EQ(r->queue.max, 10000);
    CHECK_EQ(r->queue.timeout_ms, 2000);
    /* Defaults: burst follows the rate (at least 1), key is the client IP. */
    r = &cfg.routes[1];
    CHECK(r->throttle.rate == 0.5 && r->throttle.burst == 1);
    CHECK(r->throttle_per_client.burst == 3);
    CHECK_STR(r->throttle_per_client.key, "ip");
    CHECK_EQ(r->concurrency, 0);
    CHECK(!r->queue.enabled);
    /* An origin without the keys gets the defaults. */
    lv_config_free(&cfg);
    CHECK_EQ(load("origins:\n  o: { url: http://x }\n", &cfg, &errs), 0);
    CHECK_EQ(cfg.origins[0].max_pending, 1024);
    CHECK_EQ(cfg.origins[0].retries, 0);
    CHECK(!cfg.origins[0].breaker.enabled);
    CHECK_EQ(cfg.limits.max_memory, 0);
    lv_config_free(&cfg);
}

static void test_error_cases(void)
{
    size_t n = sizeof error_cases / sizeof error_cases[0], failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!fails_with(error_cases[i].yaml, error_cases[i].expected))
            failed++;
    CHECK_EQ(failed, 0);
    CHECK_INT(n, >=, 40);
}

static void test_deep_nesting(void)
{
    char yaml[512];
    memcpy(yaml, "a: ", 3);
    size_t n = 3;
    for (int i = 0; i < 100; i++)
        yaml[n++] = '[';
    yaml[n] = '\0';
    CHECK_FAILS(yaml, "t.yaml:1:67: nested more than 64 levels deep");
}

/* One file, many mistakes: all reported, in file order, even those found
 * only after the whole file is read (unknown origin). */
static void test_many_errors(void)
{
    CHECK_FAILS("threads: lots\n"
                "routes:\n"
                "  - match: GET /a\n"
                "    origin: missing\n"
                "  - match: GET /b\n"
                "    respond: { status: 999 }\n"
                "    redirect: { table: /nonexistent/x.csv }\n"
                "limits: { max_body_bytes: 1.5MiB, idle_timeout: 0 }\n"
                "bogus: 1\n",
                "t.yaml:1:10: 'threads' must be 'auto' or a whole number from 1 to 256, got "
                "'lots'\n"
                "t.yaml:4:13: unknown origin 'missing' (not defined under origins:)\n"
                "t.yaml:6:24: 'status' must be a whole number from 100 to 599, got '999'\n"
                "t.yaml:7:5: 'redirect' conflicts with 'respond' at 6:5; a route has exactly one "
                "target\n"
                "t.yaml:7:24: cannot read redirect table '/nonexistent/x.csv': No such file or "
                "directory\n"
                "t.yaml:8:27: 'max_body_bytes': invalid size '1.5MiB' (use e.g. 512, 64KiB, "
                "256MiB, 1GiB, 10MB)\n"
                "t.yaml:8:49: 'idle_timeout' must be greater than 0\n"
                "t.yaml:9:1: unknown key 'bogus' at top level; expected one of: listen, threads, "
                "admin, api, cache, log_level, shutdown_timeout, limits, data_dir, runtime_dir, "
                "origins, functions, routes, streams, consumers");
}

/* Values quoted back in messages are made printable and cut short. */
static void test_messages_are_sanitized(void)
{
    CHECK_FAILS("log_level: \"a\\tb\\e\"\n",
                "t.yaml:1:12: 'log_level' must be one of debug, info, warn, error; got "
                "'a\\x09b\\x1B'");
    CHECK_FAILS("routes: [{ match: \"GET /{a\xc3\xa9}/{b\\x01}\", respond: {} }]\n",
                "t.yaml:1:19: invalid path pattern '/{a\\xC3\\xA9}/{b\\x01}': invalid parameter "
                "name 'a\\xC3\\xA9' (use letters, digits and '_', not starting with a digit)");
    CHECK_FAILS("origins: { \"a\\tb\": [] }\n",
                "t.yaml:1:12: invalid origin name 'a\\x09b'; use letters, digits, '-', '.' and "
                "'_'\n"
                "t.yaml:1:20: 'a\\x09b' must be a mapping, not a list");
    CHECK_FAILS("log_level: "
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                "t.yaml:1:12: 'log_level' must be one of debug, info, warn, error; got "
                "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

/* ------------------------------------------------------------------ */

static void test_durations(void)
{
    static const struct {
        const char *text;
        int64_t ms; /* -1: rejected */
    } cases[] = {
        {"0", 0},
        {"250ms", 250},
        {"10s", 10000},
        {"10", 10000},
        {"5m", 300000},
        {"2h", 7200000},
        {"1d", 86400000},
        {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
        {"9223372036854775808ms", -1},
        {"9223372036854776s", -1},
        {"9223372036854775s", 9223372036854775000},
        {"99999999999999999999999", -1},
        {"", -1},
        {"s", -1},
        {"-1s", -1},
        {"+1s", -1},
        {"1.5s", -1},
        {"10 s", -1},
        {" 10s", -1},
        {"10s ", -1},
        {"10S", -1},
        {"10sec", -1},
        {"10us", -1},
        {"1h30m", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -7;
        int rc = lv_config_parse_duration(cases[i].text, &ms);
        if (cases[i].ms < 0) {
            CHECK_EQ(rc, -1);
            CHECK_EQ(ms, -7);
        } else {
            CHECK_EQ(rc, 0);
            CHECK_EQ(ms, cases[i].ms);
        }
    }
    CHECK_EQ(lv_config_parse_duration(NULL, &(int64_t){0}), -1);
}

static void test_sizes(void)
{
    static const struct {
        const char *text;
        int ok;
        uint64_t bytes;
    } cases[] = {
        {"0", 1, 0},
        {"512", 1, 512},
        {"512B", 1, 512},
        {"64KiB", 1, 65536},
        {"256MiB", 1, 256ull << 20},
        {"1GiB", 1, 1ull << 30},
        {"2TiB", 1, 2ull << 40},
        {"10KB", 1, 10000},
        {"1MB", 1, 1000000},
        {"3GB", 1, 3000000000ull},
        {"1TB", 1, 1000000000000ull},
        {"18446744073709551615", 1, UINT64_MAX},
        {"18446744073709551616", 0, 0},
        {"16777216TiB", 0, 0},
        {"", 0, 0},
        {"KiB", 0, 0},
        {"10k", 0, 0},
        {"10m", 0, 0},
        {"10g", 0, 0},
        {"10kib", 0, 0},
        {"10 KiB", 0, 0},
        {"-1", 0, 0},
        {"1.5MiB", 0, 0},
        {"1KiBB", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t bytes = 7;
        int rc = lv_config_parse_size(cases[i].text, &bytes);
        CHECK_EQ(rc, cases[i].ok ? 0 : -1);
        CHECK(bytes == (cases[i].ok ? cases[i].bytes : 7));
    }
}

static void test_listen_addresses(void)
{
    static const struct {
        const char *text;
        int family; /* 0: rejected */
        const char *ip;
        int port;
    } cases[] = {
        {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080},
        {"0.0.0.0:80", AF_INET, "0.0.0.0", 80},
        {"*:8080", AF_INET, "0.0.0.0", 8080},
        {":8080", AF_INET, "0.0.0.0", 8080},
        {"localhost:8080", AF_INET, "127.0.0.1", 8080},
        {"8080", AF_INET, "127.0.0.1", 8080},
        {"1", AF_INET, "127.0.0.1", 1},
        {"65535", AF_INET, "127.0.0.1", 65535},
        {"[::1]:8080", AF_INET6, "::1", 8080},
        {"[::]:443", AF_INET6, "::", 443},
        {"[2001:db8::1]:9000", AF_INET6, "2001:db8::1", 9000},
        {"0", 0, NULL, 0},
        {"65536", 0, NULL, 0},
        {"127.0.0.1:0", 0, NULL, 0},
        {"127.0.0.1:65536", 0, NULL, 0},
        {"127.0.0.1", 0, NULL, 0},
        {"127.0.0.1:", 0, NULL, 0},
        {"127.0.0.1:80x", 0, NULL, 0},
        {"127.0.0.1:-80", 0, NULL, 0},
        {"256.0.0.1:80", 0, NULL, 0},
        {"example.com:80", 0, NULL, 0},
        {"::1:8080", 0, NULL, 0},
        {"[::1]", 0, NULL, 0},
        {"[::1]8080", 0, NULL, 0},
        {"[::1:8080", 0, NULL, 0},
        {"[]:8080", 0, NULL, 0},
        {"[127.0.0.1]:8080", 0, NULL, 0},
        {"", 0, NULL, 0},
        {"*", 0, NULL, 0},
        {" 8080", 0, NULL, 0},
        {"008080", 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lv_config_listen_t l = {0};
        int rc = lv_config_parse_listen(cases[i].text, &l);
        if (!cases[i].family) {
            if (rc != -1)
                fprintf(stderr, "  accepted '%s'\n", cases[i].text);
            CHECK_EQ(rc, -1);
            continue;
        }
        CHECK_EQ(rc, 0);
        CHECK_EQ(l.addr.ss_family, cases[i].family);
        char ip[INET6_ADDRSTRLEN];
        int port;
        if (cases[i].family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&l.addr;
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
            port = ntohs(sin->sin_port);
            CHECK_EQ(l.addr_len, sizeof *sin);
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l.addr;
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
            port = ntohs(sin6->sin6_port);
            CHECK_EQ(l.addr_len, sizeof *sin6);
        }
        CHECK_STR(ip, cases[i].ip);
        CHECK_EQ(port, cases[i].port);
    }
}

static void test_origin_urls(void)
{
    static const struct {
        const char *url, *host, *host_header, *base;
        int port;
    } cases[] = {
        {"http://127.0.0.1:3000", "127.0.0.1", "127.0.0.1:3000", "", 3000},
        {"http://api.internal", "api.internal", "api.internal", "", 80},
        {"http://api.internal/", "api.internal", "api.internal", "", 80},
        {"http://api.internal/v1/", "api.internal", "api.internal", "/v1", 80},
        {"http://api.internal:8081/a/b", "api.internal", "api.internal:8081", "/a/b", 8081},
        {"HTTP://Example.COM", "Example.COM", "Example.COM", "", 80},
        {"http://[::1]:9000/x", "::1", "[::1]:9000", "/x", 9000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "origins: { o: { url: '%s' } }\n", cases[i].url);
        lv_config_t cfg;
        lv_config_errors_t errs = {0};
        CHECK_EQ(load(yaml, &cfg, &errs), 0);
        CHECK_STR(cfg.origins[0].url, cases[i].url);
        CHECK_STR(cfg.origins[0].host, cases[i].host);
        CHECK_STR(cfg.origins[0].host_header, cases[i].host_header);
        CHECK_STR(cfg.origins[0].base_path, cases[i].base);
        CHECK_EQ(cfg.origins[0].port, cases[i].port);
        lv_config_free(&cfg);
    }
}

static void test_path_patterns_accepted(void)
{
    static const char *const ok[] = {
        "GET /", "GET /*", "GET /a/", "GET /a/b/c", "ANY /{x}", "PUT /{a}/{b}/*",
        "GET /a-b_c.d~e%20f", "M-SEARCH /x", "GET /{_private9}/x", "GET \t /tabbed",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "routes: [{ match: \"%s\", respond: {} }]\n", ok[i]);
        lv_config_t cfg;
        lv_config_errors_t errs = {0};
        int rc = load(yaml, &cfg, &errs);
        if (rc != 0)
            fprintf(stderr, "  rejected '%s': %s\n", ok[i], errs.items[0]);
        CHECK_EQ(rc, 0);
        lv_config_free(&cfg);
    }
}

static void test_redirect_missing(void)
{
    static const struct {
        const char *missing;
        const char *error; /* NULL: accepted */
    } cases[] = {
        {"https://example.com/", NULL},
        {"http://example.com", NULL},
        {"/not-found", NULL},
        {"/", NULL},
        {"//evil.example", "'missing' must not start with '//' or '/\\' (browsers read that as "
                           "another host); write the full URL (https://host/...)"},
        {"/\\evil.example", "'missing' must not start with '//' or '/\\' (browsers read that as "
                            "another host); write the full URL (https://host/...)"},
        {"ftp://x", "'missing' must be an http:// or https:// URL or a path starting with '/', "
                    "got 'ftp://x'"},
        {"https://", "'missing' must be an http:// or https:// URL or a path starting with '/', "
                     "got 'https://'"},
        {"example.com", "'missing' must be an http:// or https:// URL or a path starting with "
                        "'/', got 'example.com'"},
        {"/a b", "'missing' must not be empty or contain spaces, control or non-ASCII "
                 "characters (percent-encode them)"},
        {"", "'missing' must not be empty or contain spaces, control or non-ASCII characters "
             "(percent-encode them)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[512], expected[512];
        snprintf(yaml, sizeof yaml,
                 "routes:\n- match: GET /\n  redirect: { table: %s, missing: '%s' }\n", table_csv,
                 cases[i].missing);
        int col = 22 + (int)strlen(table_csv) + 11;
        if (cases[i].error) {
            snprintf(expected, sizeof expected, "t.yaml:3:%d: %s", col, cases[i].error);
            CHECK_FAILS(yaml, expected);
            continue;
        }
        lv_config_t cfg;
        lv_config_errors_t errs = {0};
        CHECK_EQ(load(yaml, &cfg, &errs), 0);
        CHECK_STR(cfg.routes[0].redirect.missing, cases[i].missing);
        lv_config_free(&cfg);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* lv_config_load: relative table paths resolve against the file's
 * directory, and a missing file is a message, not a crash. */
static void test_load_file(void)
{
    char path[160], expected[320];
    snprintf(path, sizeof path, "%s/levee.yaml", tmpdir);
    write_file(path, "routes:\n  - match: GET /r/{c}\n    redirect: { table: ./qr.csv }\n");
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(lv_config_load(path, &cfg, &errs), 0);
    CHECK_EQ(errs.count, 0);
    CHECK_STR(cfg.path, path);
    char *real = realpath(tmpdir, NULL);
    CHECK_STR(cfg.dir, real);
    snprintf(expected, sizeof expected, "%s/qr.csv", real);
    CHECK_STR(cfg.routes[0].redirect.table, expected);
    lv_config_free(&cfg);

    write_file(path, "routes:\n  - match: GET /r/{c}\n    redirect: { table: gone.csv }\n");
    CHECK_EQ(lv_config_load(path, &cfg, &errs), -1);
    CHECK(is_zeroed(&cfg));
    snprintf(expected, sizeof expected,
             "%s:3:24: cannot read redirect table 'gone.csv' (%s/gone.csv): No such file or "
             "directory",
             path, real);
    CHECK_EQ(errs.count, 1);
    CHECK_STR(errs.items[0], expected);
    lv_config_errors_free(&errs);
    free(real);

    snprintf(path, sizeof path, "%s/absent.yaml", tmpdir);
    CHECK_EQ(lv_config_load(path, &cfg, &errs), -1);
    CHECK(is_zeroed(&cfg));
    snprintf(expected, sizeof expected, "%s: cannot open: No such file or directory", path);
    CHECK_EQ(errs.count, 1);
    CHECK_STR(errs.items[0], expected);
    lv_config_errors_free(&errs);

    CHECK_EQ(lv_config_load(tmpdir, &cfg, &errs), -1);
    CHECK_EQ(errs.count, 1);
    snprintf(expected, sizeof expected, "%s: cannot read: Is a directory", tmpdir);
    CHECK_STR(errs.items[0], expected);
    lv_config_errors_free(&errs);
}

static void test_unreadable_table(void)
{
    char path[160], yaml[320], expected[320];
    /* A path through a regular file fails for every user, root included. */
    snprintf(path, sizeof path, "%s/x", table_csv);
    snprintf(yaml, sizeof yaml, "routes: [{ match: GET /, redirect: { table: %s } }]\n", path);
    snprintf(expected, sizeof expected,
             "t.yaml:1:45: cannot read redirect table '%s': Not a directory", path);
    CHECK_FAILS(yaml, expected);
    if (geteuid() == 0)
        return; /* root reads anything; a permission check cannot fail */
    snprintf(path, sizeof path, "%s/secret.csv", tmpdir);
    write_file(path, "a,b\n");
    chmod(path, 0);
    snprintf(yaml, sizeof yaml, "routes: [{ match: GET /, redirect: { table: %s } }]\n", path);
    snprintf(expected, sizeof expected,
             "t.yaml:1:45: cannot read redirect table '%s': Permission denied", path);
    CHECK_FAILS(yaml, expected);
}

static void test_error_formatting(void)
{
    lv_config_errors_t errs = {0};
    for (int i = 0; i < 10; i++)
        lv_config_error(&errs, "levee.yaml", (lv_config_pos_t){i + 1, 2 * i + 1}, "problem %d", i);
    lv_config_error(&errs, "levee.yaml", (lv_config_pos_t){0, 0}, "no position");
    CHECK_EQ(errs.count, 11);
    CHECK_STR(errs.items[0], "levee.yaml:1:1: problem 0");
    CHECK_STR(errs.items[9], "levee.yaml:10:19: problem 9");
    CHECK_STR(errs.items[10], "levee.yaml: no position");
    lv_config_errors_free(&errs);
    CHECK_EQ(errs.count, 0);
    CHECK(errs.items == NULL);
}

/* A failed load appends to errors already in the list and leaves cfg
 * zeroed; a second load reuses the list. */
static void test_errors_accumulate(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("threads: x\n", &cfg, &errs), -1);
    CHECK_EQ(load("foo: 1\nbar: 2\n", &cfg, &errs), -1);
    CHECK_EQ(errs.count, 3);
    CHECK(is_zeroed(&cfg));
    CHECK(strncmp(errs.items[2], "t.yaml:2:1: unknown key 'bar'", 29) == 0);
    lv_config_errors_free(&errs);
}

/* The body is kept byte for byte, embedded NUL included. */
static void test_body_bytes(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    const char yaml[] = "routes: [{ match: GET /, respond: { body: \"a\\0b\" } }]\n";
    CHECK_EQ(lv_config_load_string("t.yaml", yaml, sizeof yaml - 1, &cfg, &errs), 0);
    CHECK_EQ(cfg.routes[0].respond.body_len, 3);
    CHECK(memcmp(cfg.routes[0].respond.body, "a\0b", 4) == 0);
    lv_config_free(&cfg);
    CHECK_EQ(lv_config_load_string("t.yaml", NULL, 0, &cfg, &errs), 0);
    lv_config_free(&cfg);
}

/* ------------------------------------------------------------------ */
/* functions (issue 4) */

/* The example from the issue, as written there, with every field checked:
 * those it sets and the defaults of those it leaves out. */
static void test_functions_issue_example(void)
{
    const char *yaml =
        "functions:\n"
        "  checkout:\n"
        "    runtime: nodejs                  # nodejs | python | provided | command\n"
        "    handler: index.handler\n"
        "    code: ./functions/checkout       # working directory and LAMBDA_TASK_ROOT\n"
        "    # command: [npx, aws-lambda-ric, index.handler]   # for runtime: command\n"
        "    env: { TABLE: orders }\n"
        "    memory_mb: 256\n"
        "    timeout: 10s\n"
        "    concurrency: { max: 64, warm: 4 }            # reserved (ceiling) and provisioned\n"
        "    idle_timeout: 5m                              # extra workers above `warm` stop\n"
        "    schedule:                                     # pre-scale ahead of known spikes\n"
        "      - { at: \"2026-11-27T15:00:00Z\", warm: 64, until: \"2026-11-27T16:00:00Z\" }\n"
        "routes:\n"
        "  - match: ANY /checkout/*\n"
        "    function: checkout\n";
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load(yaml, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);

    CHECK_EQ(cfg.num_functions, 1);
    const lv_config_function_t *fn = &cfg.functions[0];
    CHECK_STR(fn->name, "checkout");
    CHECK_EQ(fn->pos.line, 2);
    CHECK_EQ(fn->pos.col, 3);
    CHECK_EQ(fn->runtime, LV_RUNTIME_NODEJS);
    CHECK_STR(fn->handler, "index.handler");
    CHECK_STR(fn->code, "./functions/checkout"); /* load_string: relative to the cwd */
    CHECK(fn->command == NULL);
    CHECK_EQ(fn->num_command, 0);
    CHECK_EQ(fn->num_env, 1);
    CHECK_STR(fn->env[0].name, "TABLE");
    CHECK_STR(fn->env[0].value, "orders");
    CHECK_EQ(fn->memory_mb, 256);
    CHECK_EQ(fn->timeout_ms, 10000);
    CHECK_EQ(fn->init_timeout_ms, 10000);
    CHECK_EQ(fn->max, 64);
    CHECK_EQ(fn->warm, 4);
    CHECK_EQ(fn->idle_timeout_ms, 300000);
    CHECK(fn->queue.enabled);
    CHECK_EQ(fn->queue.max, 1000);
    CHECK_EQ(fn->queue.timeout_ms, 1000);
    CHECK_EQ(fn->num_schedule, 1);
    CHECK_EQ(fn->schedule[0].at_ms, 1795791600000);
    CHECK_EQ(fn->schedule[0].until_ms, 1795795200000);
    CHECK_EQ(fn->schedule[0].warm, 64);
    CHECK_EQ(fn->schedule[0].pos.line, 13);
    CHECK_EQ(fn->schedule[0].pos.col, 9);
    CHECK_EQ(fn->async.retries, 2);
    CHECK_EQ(fn->async.backoff_ms, 60000);
    CHECK_STR(fn->async.on_failure, "levee-data/functions/checkout/dead-letter.jsonl");

    CHECK_EQ(cfg.num_routes, 1);
    const lv_config_route_t *r = &cfg.routes[0];
    CHECK_EQ(r->kind, LV_TARGET_FUNCTION);
    CHECK_EQ(r->function, 0);
    CHECK_EQ(r->origin, -1);
    CHECK_STR(r->name, "ANY /checkout/*");
    CHECK(!r->cache.enabled);
    CHECK_EQ(cfg.num_origins, 0);

    CHECK(cfg.api_enabled);
    CHECK_STR(cfg.api_listen.text, "127.0.0.1:4566");
    CHECK_STR(cfg.data_dir, "levee-data");
    CHECK(cfg.runtime_dir == NULL);
    lv_config_free(&cfg);
    CHECK(is_zeroed(&cfg));
}

/* Every key of a function, of api, data_dir and runtime_dir, in a file, so
 * that paths resolve against its directory. data_dir comes after the
 * functions: the default dead-letter path must still use it. */
static void test_functions_all_keys(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/fn.yaml", tmpdir);
    write_file(path,
               "api: { listen: 127.0.0.1:4567 }\n"
               "runtime_dir: ../runtimes\n"
               "routes:\n"
               "  - match: POST /orders/{id}\n"
               "    function: orders\n"
               "    throttle: { rate: 50 }\n"
               "    concurrency: 100\n"
               "    queue: { max: 10, timeout: 1s }\n"
               "  - match: GET /hi\n"
               "    respond: {}\n"
               "functions:\n"
               "  checkout:\n"
               "    runtime: python\n"
               "    handler: app.main.handler\n"
               "    code: /srv/checkout\n"
               "    env: { PORT: 8080, DEBUG: true, EMPTY: '', PATH: /bin }\n"
               "    memory_mb: 10240\n"
               "    timeout: 15m\n"
               "    init_timeout: 250ms\n"
               "    schedule:\n"
               "      - { at: \"2026-11-28T09:00:00.250+01:00\", warm: 8 }\n"
               "      - at: 2026-11-27T10:00:00-05:30\n"
               "        until: 2026-11-27T16:00:00.5Z\n"
               "        warm: 0\n"
               "    concurrency: { max: 4096, warm: 4096 }\n"
               "    idle_timeout: 0\n"
               "    queue: { max: 0, timeout: 900s }\n"
               "    async: { retries: 0, backoff: 6h, on_failure: dlq/checkout.jsonl }\n"
               "  orders:\n"
               "    runtime: command\n"
               "    code: .\n"
               "    command: [npx, aws-lambda-ric, index.handler]\n"
               "    handler: index.handler\n"
               "  Bootstrap_2-x:\n"
               "    runtime: provided\n"
               "    code: ./bin/\n"
               "    async: { backoff: 1s }\n"
               "data_dir: ./state\n");
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = lv_config_load(path, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);
    char *real = realpath(tmpdir, NULL);
    char expected[320];

    CHECK(cfg.api_enabled);
    CHECK_STR(cfg.api_listen.text, "127.0.0.1:4567");
    CHECK_EQ(ntohs(((const struct sockaddr_in *)&cfg.api_listen.addr)->sin_port), 4567);
    CHECK_EQ(cfg.api_listen.pos.line, 1);
    CHECK_EQ(cfg.api_listen.pos.col, 16);
    snprintf(expected, sizeof expected, "%s/../runtimes", real);
    CHECK_STR(cfg.runtime_dir, expected);
    snprintf(expected, sizeof expected, "%s/state", real);
    CHECK_STR(cfg.data_dir, expected);

    CHECK_EQ(cfg.num_functions, 3);
    const lv_config_function_t *fn = &cfg.functions[0];
    CHECK_STR(fn->name, "checkout");
    CHECK_EQ(fn->runtime, LV_RUNTIME_PYTHON);
    CHECK_STR(fn->handler, "app.main.handler");
    CHECK_STR(fn->code, "/srv/checkout");
    CHECK_EQ(fn->num_env, 4);
    CHECK_STR(fn->env[0].name, "PORT");
    CHECK_STR(fn->env[0].value, "8080");
    CHECK_STR(fn->env[1].name, "DEBUG");
    CHECK_STR(fn->env[1].value, "true");
    CHECK_STR(fn->env[2].name, "EMPTY");
    CHECK_STR(fn->env[2].value, "");
    CHECK_STR(fn->env[3].name, "PATH");
    CHECK_STR(fn->env[3].value, "/bin");
    CHECK_EQ(fn->memory_mb, 10240);
    CHECK_EQ(fn->timeout_ms, 900000);
    CHECK_EQ(fn->init_timeout_ms, 250);
    CHECK_EQ(fn->max, 4096);
    CHECK_EQ(fn->warm, 4096);
    CHECK_EQ(fn->idle_timeout_ms, 0);
    CHECK(fn->queue.enabled);
    CHECK_EQ(fn->queue.max, 0);
    CHECK_EQ(fn->queue.timeout_ms, 900000);
    CHECK_EQ(fn->queue.pos.line, 27);
    CHECK_EQ(fn->num_schedule, 2);
    CHECK_EQ(fn->schedule[0].at_ms, 1795852800250);
    CHECK_EQ(fn->schedule[0].until_ms, -1);
    CHECK_EQ(fn->schedule[0].warm, 8);
    CHECK_EQ(fn->schedule[1].at_ms, 1795793400000);
    CHECK_EQ(fn->schedule[1].until_ms, 1795795200500);
    CHECK_EQ(fn->schedule[1].warm, 0);
    CHECK_EQ(fn->schedule[1].pos.line, 22);
    CHECK_EQ(fn->schedule[1].pos.col, 9);
    CHECK_EQ(fn->async.retries, 0);
    CHECK_EQ(fn->async.backoff_ms, 6 * 3600 * 1000);
    snprintf(expected, sizeof expected, "%s/dlq/checkout.jsonl", real);
    CHECK_STR(fn->async.on_failure, expected);

    fn = &cfg.functions[1];
    CHECK_STR(fn->name, "orders");
    CHECK_EQ(fn->runtime, LV_RUNTIME_COMMAND);
    CHECK_STR(fn->handler, "index.handler");
    CHECK_STR(fn->code, real);
    CHECK_EQ(fn->num_command, 3);
    CHECK_STR(fn->command[0], "npx");
    CHECK_STR(fn->command[1], "aws-lambda-ric");
    CHECK_STR(fn->command[2], "index.handler");
    snprintf(expected, sizeof expected, "%s/state/functions/orders/dead-letter.jsonl", real);
    CHECK_STR(fn->async.on_failure, expected);

    fn = &cfg.functions[2];
    CHECK_STR(fn->name, "Bootstrap_2-x");
    CHECK_EQ(fn->runtime, LV_RUNTIME_PROVIDED);
    CHECK(fn->handler == NULL);
    snprintf(expected, sizeof expected, "%s/bin/", real);
    CHECK_STR(fn->code, expected);
    CHECK_EQ(fn->async.retries, 2);
    CHECK_EQ(fn->async.backoff_ms, 1000);

    /* A function route keeps the admission keys every route has. */
    const lv_config_route_t *r = &cfg.routes[0];
    CHECK_EQ(r->kind, LV_TARGET_FUNCTION);
    CHECK_EQ(r->function, 1);
    CHECK_EQ(r->origin, -1);
    CHECK(r->throttle.enabled);
    CHECK(r->throttle.rate == 50);
    CHECK_EQ(r->concurrency, 100);
    CHECK(r->queue.enabled);
    CHECK_EQ(r->queue.max, 10);
    CHECK_EQ(cfg.routes[1].kind, LV_TARGET_RESPOND);
    CHECK_EQ(cfg.routes[1].function, -1);
    free(real);
    lv_config_free(&cfg);
    CHECK(is_zeroed(&cfg));
}

static void test_function_defaults(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("functions:\n  f: { runtime: provided, code: . }\n"
                  "routes:\n  - { match: GET /, origin: http://x }\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    const lv_config_function_t *fn = &cfg.functions[0];
    CHECK_STR(fn->name, "f");
    CHECK_EQ(fn->runtime, LV_RUNTIME_PROVIDED);
    CHECK(fn->handler == NULL);
    CHECK_STR(fn->code, ".");
    CHECK(fn->command == NULL);
    CHECK_EQ(fn->num_command, 0);
    CHECK(fn->env == NULL);
    CHECK_EQ(fn->num_env, 0);
    CHECK_EQ(fn->memory_mb, 128);
    CHECK_EQ(fn->timeout_ms, 3000);
    CHECK_EQ(fn->init_timeout_ms, 10000);
    CHECK_EQ(fn->max, 16);
    CHECK_EQ(fn->warm, 0);
    CHECK_EQ(fn->idle_timeout_ms, 300000);
    CHECK(fn->queue.enabled);
    CHECK_EQ(fn->queue.max, 1000);
    CHECK_EQ(fn->queue.timeout_ms, 1000);
    CHECK_EQ(fn->queue.pos.line, 2);
    CHECK(fn->schedule == NULL);
    CHECK_EQ(fn->num_schedule, 0);
    CHECK_EQ(fn->async.retries, 2);
    CHECK_EQ(fn->async.backoff_ms, 60000);
    CHECK_STR(fn->async.on_failure, "levee-data/functions/f/dead-letter.jsonl");
    CHECK_EQ(cfg.routes[0].function, -1);
    CHECK_EQ(cfg.routes[0].origin, 0);
    lv_config_free(&cfg);

    /* Empty sections mean the defaults; api can be switched off, which
     * frees its port for the public side. */
    CHECK_EQ(load("listen: 4566\napi: { listen: off }\nfunctions:\n"
                  "  f:\n    runtime: provided\n    code: .\n    env:\n    schedule:\n"
                  "    concurrency:\n    queue:\n    async:\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    CHECK(!cfg.api_enabled);
    CHECK_EQ(cfg.functions[0].num_env, 0);
    CHECK_EQ(cfg.functions[0].num_schedule, 0);
    CHECK_EQ(cfg.functions[0].max, 16);
    CHECK_EQ(cfg.functions[0].queue.max, 1000);
    CHECK_EQ(cfg.functions[0].async.retries, 2);
    lv_config_free(&cfg);

    /* warm may equal the default max; the two listeners may move. */
    CHECK_EQ(load("admin: { listen: 4566 }\napi: { listen: 9901 }\nfunctions:\n"
                  "  f: { runtime: provided, code: ., concurrency: { warm: 16 } }\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.functions[0].warm, 16);
    lv_config_free(&cfg);
}

/* Routes may name functions defined later in the file, and functions with
 * a bad name still exist, so routes naming them add no second message. */
static void test_function_references(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("routes:\n"
                  "  - { match: GET /a, function: b }\n"
                  "  - { match: GET /b, function: a }\n"
                  "  - { match: GET /c, function: a }\n"
                  "functions:\n"
                  "  a: { runtime: provided, code: . }\n"
                  "  b: { runtime: provided, code: . }\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.routes[0].function, 1);
    CHECK_EQ(cfg.routes[1].function, 0);
    CHECK_EQ(cfg.routes[2].function, 0);
    lv_config_free(&cfg);
    CHECK_FAILS("routes: [{ match: GET /, function: a.b }]\n"
                "functions: { a.b: { runtime: provided, code: . } }\n",
                "t.yaml:2:14: invalid function name 'a.b'; use 1 to 64 letters, digits, '-' "
                "and '_'");
}

static const struct {
    const char *yaml, *expected;
} function_error_cases[] = {
    /* api, data_dir, runtime_dir */
    {"api: { listen: 8080 }\n",
     "t.yaml:1:16: api listen address '8080' is also a public listen address"},
    {"listen: 4566\n", "t.yaml:1:9: listen address '4566' is the api address; use another or "
                       "move api (api: { listen: ... })"},
    {"api: { listen: 9901 }\n",
     "t.yaml:1:16: api listen address '9901' is also the admin listen address"},
    {"admin: { listen: 4566 }\n",
     "t.yaml:1:18: admin listen address '4566' is the api address; use another or move api "
     "(api: { listen: ... })"},
    {"api: { listen: nowhere }\n",
     "t.yaml:1:16: invalid listen address 'nowhere' (use e.g. 127.0.0.1:8080, [::1]:8080, "
     "*:8080 or 8080)"},
    {"api: { port: 1 }\n", "t.yaml:1:8: unknown key 'port' in api; expected one of: listen"},
    {"data_dir: ''\n", "t.yaml:1:11: 'data_dir' must not be empty"},
    {"data_dir:\n", "t.yaml:1:10: 'data_dir' has no value"},
    {"runtime_dir: [a]\n", "t.yaml:1:14: 'runtime_dir' must be a single value, not a list"},
    /* functions: shape and names */
    {"functions: [a]\n", "t.yaml:1:12: 'functions' must be a mapping, not a list"},
    {"functions: { f: [] }\n", "t.yaml:1:17: 'f' must be a mapping, not a list"},
    {"functions: { 'a b': { runtime: provided, code: . } }\n",
     "t.yaml:1:14: invalid function name 'a b'; use 1 to 64 letters, digits, '-' and '_'"},
    {"functions:\n  "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
     "{ runtime: provided, code: . }\n",
     "t.yaml:2:3: invalid function name "
     "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'; use 1 to 64 letters, "
     "digits, '-' and '_'"},
    {"functions: { '': { runtime: provided, code: . } }\n",
     "t.yaml:1:14: invalid function name ''; use 1 to 64 letters, digits, '-' and '_'"},
    {"functions:\n  f: { runtime: provided, code: . }\n  f: { runtime: provided, code: . }\n",
     "t.yaml:3:3: duplicate key 'f' (first at 2:3)"},
    {"functions:\n  f: { runtime: provided, code: ., memory: 1 }\n",
     "t.yaml:2:36: unknown key 'memory' in function; expected one of: runtime, handler, code, "
     "command, env, memory_mb, timeout, init_timeout, concurrency, idle_timeout, queue, "
     "schedule, async"},
    /* required keys */
    {"functions:\n  f: { code: . }\n",
     "t.yaml:2:6: function 'f' is missing required key 'runtime'"},
    {"functions:\n  f: { runtime: provided }\n",
     "t.yaml:2:6: function 'f' is missing required key 'code'"},
    {"functions:\n  f: {}\n",
     "t.yaml:2:6: function 'f' is missing required key 'runtime'\n"
     "t.yaml:2:6: function 'f' is missing required key 'code'"},
    {"functions:\n  f: { runtime: java, code: . }\n",
     "t.yaml:2:17: 'runtime' must be one of nodejs, python, provided, command; got 'java'"},
    {"functions:\n  f: { runtime: nodejs, code: . }\n",
     "t.yaml:2:6: function 'f': handler is required for runtime nodejs (e.g. handler: "
     "index.handler)"},
    {"functions:\n  f: { runtime: python, code: . }\n",
     "t.yaml:2:6: function 'f': handler is required for runtime python (e.g. handler: "
     "index.handler)"},
    {"functions:\n  f: { runtime: command, code: . }\n",
     "t.yaml:2:6: function 'f': command is required for runtime command (e.g. command: [npx, "
     "aws-lambda-ric, index.handler])"},
    {"functions:\n  f: { code: '' }\n",
     "t.yaml:2:6: function 'f' is missing required key 'runtime'\n"
     "t.yaml:2:14: 'code' must not be empty"},
    /* handler */
    {"functions:\n  f: { handler: main, runtime: python, code: . }\n",
     "t.yaml:2:17: 'handler' must be module.function for runtime python (e.g. index.handler), "
     "got 'main'"},
    {"functions:\n  f: { runtime: nodejs, code: ., handler: .handler }\n",
     "t.yaml:2:43: 'handler' must be module.function for runtime nodejs (e.g. index.handler), "
     "got '.handler'"},
    {"functions:\n  f: { runtime: nodejs, code: ., handler: index. }\n",
     "t.yaml:2:43: 'handler' must be module.function for runtime nodejs (e.g. index.handler), "
     "got 'index.'"},
    {"functions:\n  f: { runtime: provided, code: ., handler: '' }\n",
     "t.yaml:2:45: 'handler' must not be empty"},
    {"functions:\n  f: { runtime: provided, code: ., handler: \"a\\nb\" }\n",
     "t.yaml:2:45: 'handler' must not contain control characters"},
    /* command */
    {"functions:\n  f: { command: [x], runtime: provided, code: . }\n",
     "t.yaml:2:8: 'command' is only allowed with runtime command, not provided"},
    {"functions:\n  f: { runtime: command, code: ., command: [] }\n",
     "t.yaml:2:44: 'command' needs at least one item (the program to run)"},
    {"functions:\n  f: { runtime: command, code: ., command: npx x }\n",
     "t.yaml:2:44: 'command' must be a list, not a single value"},
    {"functions:\n  f: { runtime: command, code: ., command: ['', x] }\n",
     "t.yaml:2:45: the program (first item of 'command') must not be empty"},
    {"functions:\n  f: { runtime: command, code: ., command: [x, [y], ~] }\n",
     "t.yaml:2:48: 'command' must be a single value, not a list\n"
     "t.yaml:2:53: 'command' has no value"},
    /* env */
    {"functions:\n  f: { runtime: provided, code: ., env: { AWS_LAMBDA_RUNTIME_API: x } }\n",
     "t.yaml:2:43: env: AWS_LAMBDA_RUNTIME_API is reserved (levee sets it for every worker)"},
    {"functions:\n  f: { runtime: provided, code: ., env: { _HANDLER: x, LAMBDA_TASK_ROOT: y } }\n",
     "t.yaml:2:43: env: _HANDLER is reserved (levee sets it for every worker)\n"
     "t.yaml:2:56: env: LAMBDA_TASK_ROOT is reserved (levee sets it for every worker)"},
    {"functions:\n  f: { runtime: provided, code: ., env: { 1A: x, A-B: y } }\n",
     "t.yaml:2:43: invalid environment variable name '1A' (use letters, digits and '_', not "
     "starting with a digit)\n"
     "t.yaml:2:50: invalid environment variable name 'A-B' (use letters, digits and '_', not "
     "starting with a digit)"},
    {"functions:\n  f: { runtime: provided, code: ., env: { A: , B: [x] } }\n",
     "t.yaml:2:46: 'A' has no value\n"
     "t.yaml:2:51: 'B' must be a single value, not a list"},
    {"functions:\n  f: { runtime: provided, code: ., env: { A: 1, A: 2 } }\n",
     "t.yaml:2:49: duplicate key 'A' (first at 2:43)"},
    {"functions:\n  f: { runtime: provided, code: ., env: [A] }\n",
     "t.yaml:2:41: 'env' must be a mapping, not a list"},
    /* numbers and durations */
    {"functions:\n  f: { runtime: provided, code: ., memory_mb: 8 }\n",
     "t.yaml:2:47: 'memory_mb' must be a whole number from 16 to 10240, got '8'"},
    {"functions:\n  f: { runtime: provided, code: ., memory_mb: 10241 }\n",
     "t.yaml:2:47: 'memory_mb' must be a whole number from 16 to 10240, got '10241'"},
    {"functions:\n  f: { runtime: provided, code: ., timeout: 0 }\n",
     "t.yaml:2:45: 'timeout' must be greater than 0"},
    {"functions:\n  f: { runtime: provided, code: ., timeout: 901s }\n",
     "t.yaml:2:45: 'timeout' must be at most 900s"},
    {"functions:\n  f: { runtime: provided, code: ., init_timeout: 16m }\n",
     "t.yaml:2:50: 'init_timeout' must be at most 900s"},
    {"functions:\n  f: { runtime: provided, code: ., idle_timeout: soon }\n",
     "t.yaml:2:50: 'idle_timeout': invalid duration 'soon' (use e.g. 250ms, 10s, 5m, 2h, 1d)"},
    /* concurrency */
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { max: 0 } }\n",
     "t.yaml:2:56: 'max' must be a whole number from 1 to 4096, got '0'"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { max: 4097, warm: 9999 } }\n",
     "t.yaml:2:56: 'max' must be a whole number from 1 to 4096, got '4097'\n"
     "t.yaml:2:68: 'warm' must be a whole number from 0 to 4096, got '9999'"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { warm: 8, max: 4 } }\n",
     "t.yaml:2:57: 'warm' (8) must not be more than 'max' (4)"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { warm: 17 } }\n",
     "t.yaml:2:57: 'warm' (17) must not be more than 'max' (16, the default)"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { max: x, warm: 17 } }\n",
     "t.yaml:2:56: 'max' must be a whole number from 1 to 4096, got 'x'"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: 4 }\n",
     "t.yaml:2:49: 'concurrency' must be a mapping, not a single value"},
    {"functions:\n  f: { runtime: provided, code: ., concurrency: { min: 1 } }\n",
     "t.yaml:2:51: unknown key 'min' in function concurrency; expected one of: max, warm"},
    /* queue */
    {"functions:\n  f: { runtime: provided, code: ., queue: { max: -1, timeout: 0 } }\n",
     "t.yaml:2:50: 'max' must be a whole number from 0 to 10000000, got '-1'\n"
     "t.yaml:2:63: 'timeout' must be greater than 0"},
    {"functions:\n  f: { runtime: provided, code: ., queue: { timeout: 901s } }\n",
     "t.yaml:2:54: 'timeout' must be at most 900s"},
    {"functions:\n  f: { runtime: provided, code: ., queue: { depth: 1 } }\n",
     "t.yaml:2:45: unknown key 'depth' in function queue; expected one of: max, timeout"},
    /* schedule */
    {"functions:\n  f: { runtime: provided, code: ., schedule: { at: x } }\n",
     "t.yaml:2:46: 'schedule' must be a list, not a mapping"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [3, ~] }\n",
     "t.yaml:2:47: a schedule entry must be a mapping like { at: 2026-11-27T15:00:00Z, warm: 8 "
     "}, not a single value\n"
     "t.yaml:2:50: a schedule entry must be a mapping like { at: 2026-11-27T15:00:00Z, warm: 8 "
     "}, not an empty value"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ warm: 2 }, { at: "
     "2026-01-01T00:00:00Z }] }\n",
     "t.yaml:2:47: schedule entry is missing required key 'at'\n"
     "t.yaml:2:60: schedule entry is missing required key 'warm'"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-01T00:00:00Z, "
     "warm: 2, until: 2026-01-01T00:00:00Z }] }\n",
     "t.yaml:2:91: 'until' must be later than 'at'"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-01T01:00:00Z, "
     "warm: 2, until: 2026-01-01T01:30:00+01:00 }] }\n",
     "t.yaml:2:91: 'until' must be later than 'at'"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-13-01T00:00:00Z, "
     "warm: 2 }] }\n",
     "t.yaml:2:53: 'at': invalid time '2026-13-01T00:00:00Z': the month must be 01 to 12 (use "
     "RFC 3339, e.g. 2026-11-27T15:00:00Z)"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-32T00:00:00Z, "
     "warm: 2 }] }\n",
     "t.yaml:2:53: 'at': invalid time '2026-01-32T00:00:00Z': that day does not exist in that "
     "month (use RFC 3339, e.g. 2026-11-27T15:00:00Z)"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: '2026-01-01 00:00:00Z', "
     "warm: 2 }] }\n",
     "t.yaml:2:53: 'at': invalid time '2026-01-01 00:00:00Z': expected 'T' between the date and "
     "the time (2026-11-27T15:00:00Z) (use RFC 3339, e.g. 2026-11-27T15:00:00Z)"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-01T00:00:00Zx, "
     "warm: 2 }] }\n",
     "t.yaml:2:53: 'at': invalid time '2026-01-01T00:00:00Zx': unexpected text after the time "
     "zone (use RFC 3339, e.g. 2026-11-27T15:00:00Z)"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-01T00:00:00Z, "
     "warm: 2, until: 2026-01-01T10:00:00 }] }\n",
     "t.yaml:2:91: 'until': invalid time '2026-01-01T10:00:00': the time zone is missing: end "
     "with Z (UTC) or an offset like +01:00 (use RFC 3339, e.g. 2026-11-27T15:00:00Z)"},
    {"functions:\n  f: { runtime: provided, code: ., schedule: [{ at: 2026-01-01T00:00:00Z, "
     "warm: -1, when: 1 }] }\n",
     "t.yaml:2:81: 'warm' must be a whole number from 0 to 4096, got '-1'\n"
     "t.yaml:2:85: unknown key 'when' in schedule entry; expected one of: at, warm, until"},
    /* schedule warm against concurrency.max, whichever comes first */
    {"functions:\n  f:\n    runtime: provided\n    code: .\n"
     "    schedule: [{ at: 2026-01-01T00:00:00Z, warm: 64 }]\n"
     "    concurrency: { max: 32 }\n",
     "t.yaml:5:50: schedule 'warm' (64) must not be more than concurrency.max (32)"},
    {"functions:\n  f:\n    runtime: provided\n    code: .\n"
     "    schedule: [{ at: 2026-01-01T00:00:00Z, warm: 17 }, { at: 2026-01-02T00:00:00Z, "
     "warm: 16 }]\n",
     "t.yaml:5:50: schedule 'warm' (17) must not be more than concurrency.max (16)"},
    {"functions:\n  f:\n    runtime: provided\n    code: .\n"
     "    concurrency: { max: 0 }\n"
     "    schedule: [{ at: 2026-01-01T00:00:00Z, warm: 64 }]\n",
     "t.yaml:5:25: 'max' must be a whole number from 1 to 4096, got '0'"},
    /* async */
    {"functions:\n  f: { runtime: provided, code: ., async: { retries: 3 } }\n",
     "t.yaml:2:54: 'retries' must be a whole number from 0 to 2, got '3'"},
    {"functions:\n  f: { runtime: provided, code: ., async: { backoff: 0 } }\n",
     "t.yaml:2:54: 'backoff' must be greater than 0"},
    {"functions:\n  f: { runtime: provided, code: ., async: { backoff: 7h } }\n",
     "t.yaml:2:54: 'backoff' must be at most 21600s"},
    {"functions:\n  f: { runtime: provided, code: ., async: { on_failure: '' } }\n",
     "t.yaml:2:57: 'on_failure' must not be empty"},
    {"functions:\n  f: { runtime: provided, code: ., async: { destination: x } }\n",
     "t.yaml:2:45: unknown key 'destination' in function async; expected one of: retries, "
     "backoff, on_failure"},
    /* routes to functions */
    {"routes:\n- match: GET /\n  function: nope\n",
     "t.yaml:3:13: unknown function 'nope' (not defined under functions:)"},
    {"routes:\n- match: GET /\n  function: ''\n", "t.yaml:3:13: 'function' must not be empty"},
    {"routes:\n- match: GET /\n  function: [f]\n",
     "t.yaml:3:13: 'function' must be a single value, not a list"},
    {"functions: { f: { runtime: provided, code: . } }\n"
     "routes:\n- match: GET /\n  function: f\n  origin: http://x\n",
     "t.yaml:5:3: 'origin' conflicts with 'function' at 4:3; a route has exactly one target"},
    {"functions: { f: { runtime: provided, code: . } }\n"
     "routes:\n- match: GET /\n  function: f\n  cache: { ttl: 1s }\n",
     "t.yaml:5:3: 'cache' is not supported on function routes yet"},
    {"functions: { f: { runtime: provided, code: . } }\n"
     "routes:\n- match: GET /\n  function: f\n  queue: { max: 1 }\n",
     "t.yaml:5:10: 'queue' needs 'concurrency' on the same route (requests queue for a slot)"},
};

static void test_function_error_cases(void)
{
    size_t n = sizeof function_error_cases / sizeof function_error_cases[0], failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!fails_with(function_error_cases[i].yaml, function_error_cases[i].expected))
            failed++;
    CHECK_EQ(failed, 0);
}

/* The RFC 3339 parser on its own: what it accepts, to the millisecond, and
 * why it refuses the rest. */
static void test_times(void)
{
    static const struct {
        const char *text;
        int64_t ms;      /* when accepted */
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"2026-11-27T15:00:00Z", 1795791600000, NULL},
        {"2026-11-27t15:00:00z", 1795791600000, NULL},
        {"2026-11-27T16:00:00+01:00", 1795791600000, NULL},
        {"2026-11-27T10:00:00-05:30", 1795793400000, NULL},
        {"2026-11-27T15:00:00.5Z", 1795791600500, NULL},
        {"2026-11-27T15:00:00.123456Z", 1795791600123, NULL},
        {"2026-11-28T09:00:00.250+01:00", 1795852800250, NULL},
        {"2028-02-29T23:59:59Z", 1835481599000, NULL},
        {"1970-01-01T00:00:00Z", 0, NULL},
        {"1970-01-01T00:30:00+00:30", 0, NULL},
        {"9999-12-31T23:59:59.999Z", 253402300799999, NULL},
        {"2026-13-01T00:00:00Z", 0, "the month must be 01 to 12"},
        {"2026-00-01T00:00:00Z", 0, "the month must be 01 to 12"},
        {"2026-01-32T00:00:00Z", 0, "that day does not exist in that month"},
        {"2026-04-31T00:00:00Z", 0, "that day does not exist in that month"},
        {"2026-02-29T00:00:00Z", 0, "that day does not exist in that month"},
        {"2100-02-29T00:00:00Z", 0, "that day does not exist in that month"},
        {"2026-01-00T00:00:00Z", 0, "that day does not exist in that month"},
        {"1969-12-31T23:59:59Z", 0, "the year must be 1970 or later"},
        {"1970-01-01T00:00:00+00:01", 0, "the time must not be before 1970-01-01T00:00:00Z"},
        {"2026-01-01T24:00:00Z", 0, "the hour must be 00 to 23"},
        {"2026-01-01T00:60:00Z", 0, "the minutes must be 00 to 59"},
        {"2026-01-01T00:00:60Z", 0, "the seconds must be 00 to 59"},
        {"2026-01-01 00:00:00Z", 0,
         "expected 'T' between the date and the time (2026-11-27T15:00:00Z)"},
        {"2026-01-01", 0, "expected 'T' between the date and the time (2026-11-27T15:00:00Z)"},
        {"2026-01-01T", 0, "expected a time of day like 15:00:00 (HH:MM:SS) after the 'T'"},
        {"2026-01-01T15:00Z", 0, "expected a time of day like 15:00:00 (HH:MM:SS) after the 'T'"},
        {"2026-01-01T1:00:00Z", 0,
         "expected a time of day like 15:00:00 (HH:MM:SS) after the 'T'"},
        {"2026-1-01T00:00:00Z", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {"26-01-01T00:00:00Z", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {"+2026-01-01T00:00:00Z", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {" 2026-01-01T00:00:00Z", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {"", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {"tomorrow", 0, "expected a date like 2026-11-27 (YYYY-MM-DD)"},
        {"2026-01-01T00:00:00", 0,
         "the time zone is missing: end with Z (UTC) or an offset like +01:00"},
        {"2026-01-01T00:00:00.Z", 0, "expected digits after the '.'"},
        {"2026-01-01T00:00:00Zx", 0, "unexpected text after the time zone"},
        {"2026-01-01T00:00:00Z ", 0, "unexpected text after the time zone"},
        {"2026-01-01T00:00:00+01:00Z", 0, "unexpected text after the time zone"},
        {"2026-01-01T00:00:00 Z", 0, "expected Z or an offset like +01:00 after the time"},
        {"2026-01-01T00:00:00UTC", 0, "expected Z or an offset like +01:00 after the time"},
        {"2026-01-01T00:00:00+1:00", 0, "expected an offset like +01:00 or -05:30"},
        {"2026-01-01T00:00:00+0100", 0, "expected an offset like +01:00 or -05:30"},
        {"2026-01-01T00:00:00+", 0, "expected an offset like +01:00 or -05:30"},
        {"2026-01-01T00:00:00+24:00", 0, "the offset must be at most 23:59"},
        {"2026-01-01T00:00:00-00:60", 0, "the offset must be at most 23:59"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -7;
        const char *why = NULL;
        int rc = lv_config_parse_time(cases[i].text, &ms, &why);
        if (cases[i].why) {
            if (rc != -1 || !why || strcmp(why, cases[i].why) != 0)
                fprintf(stderr, "  '%s': %s\n", cases[i].text, why ? why : "accepted");
            CHECK_EQ(rc, -1);
            CHECK_EQ(ms, -7);
            CHECK_STR(why, cases[i].why);
        } else {
            if (rc != 0)
                fprintf(stderr, "  '%s': %s\n", cases[i].text, why);
            CHECK_EQ(rc, 0);
            CHECK_EQ(ms, cases[i].ms);
        }
    }
    int64_t ms = 0;
    CHECK_EQ(lv_config_parse_time(NULL, &ms, NULL), -1);
    CHECK_EQ(lv_config_parse_time("x", &ms, NULL), -1);
}

/* ------------------------------------------------------------------ */
/* streams, route capture and consumers (issue 5) */

/* The example from the issue, as written there (plus the function it
 * names), with every field checked: those it sets and the defaults of
 * those it leaves out. */
static void test_streams_issue_example(void)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "data_dir: ./levee-data\n"
             "streams:\n"
             "  clicks: { shards: 4, retention: 24h, durability: fsync }   # fsync (default) | "
             "batch\n"
             "routes:\n"
             "  - match: GET /r/{code}\n"
             "    redirect: { table: %s }\n"
             "    capture: clicks                       # or { stream: clicks, partition_key: "
             "path.code }\n"
             "  - match: GET /s/{code}\n"
             "    redirect: { table: %s }\n"
             "    capture: { stream: clicks, partition_key: path.code }\n"
             "consumers:\n"
             "  - stream: clicks\n"
             "    function: aggregate                   # from functions:\n"
             "    batch_size: 500\n"
             "    batching_window: 1s\n"
             "    starting_position: TRIM_HORIZON\n"
             "functions:\n"
             "  aggregate: { runtime: provided, code: ./agg }\n",
             table_csv, table_csv);
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load(yaml, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);

    CHECK_EQ(cfg.num_streams, 1);
    const lv_config_stream_t *st = &cfg.streams[0];
    CHECK_STR(st->name, "clicks");
    CHECK_EQ(st->shards, 4);
    CHECK_EQ(st->retention_ms, 24 * 3600 * 1000LL);
    CHECK_EQ(st->durability, LV_DURABILITY_FSYNC);
    CHECK_EQ(st->sync_interval_ms, 5);
    CHECK_EQ(st->segment_bytes, 64ull << 20);
    CHECK_EQ(st->max_pending_bytes, 64ull << 20);
    CHECK_EQ(st->pos.line, 3);
    CHECK_EQ(st->pos.col, 3);

    CHECK_EQ(cfg.num_routes, 2);
    const lv_config_capture_t *c = &cfg.routes[0].capture;
    CHECK(c->enabled);
    CHECK_EQ(c->stream, 0);
    CHECK_EQ(c->key, LV_CAPTURE_KEY_REQUEST_ID);
    CHECK(c->key_name == NULL);
    CHECK_EQ(c->on_full, LV_CAPTURE_SHED);
    CHECK_EQ(c->pos.line, 7);
    CHECK_EQ(c->pos.col, 14);
    CHECK_EQ(cfg.routes[0].kind, LV_TARGET_REDIRECT);
    c = &cfg.routes[1].capture;
    CHECK(c->enabled);
    CHECK_EQ(c->stream, 0);
    CHECK_EQ(c->key, LV_CAPTURE_KEY_PATH);
    CHECK_STR(c->key_name, "code");
    CHECK_EQ(c->on_full, LV_CAPTURE_SHED);
    CHECK_EQ(c->pos.line, 10);
    CHECK_EQ(c->pos.col, 14);

    CHECK_EQ(cfg.num_consumers, 1);
    const lv_config_consumer_t *con = &cfg.consumers[0];
    CHECK_STR(con->name, "clicks-aggregate");
    CHECK_EQ(con->stream, 0);
    CHECK_EQ(con->function, 0);
    CHECK_EQ(con->batch_size, 500);
    CHECK_EQ(con->batching_window_ms, 1000);
    CHECK_EQ(con->starting_position, LV_START_TRIM_HORIZON);
    CHECK_EQ(con->starting_timestamp_ms, -1);
    CHECK_EQ(con->max_retries, -1);
    CHECK_EQ(con->retry_backoff_ms, 1000);
    CHECK_STR(con->on_failure, "./levee-data/consumers/clicks-aggregate/dead-letter.jsonl");
    CHECK_EQ(con->pos.line, 12);
    CHECK_EQ(con->pos.col, 5);
    CHECK_STR(cfg.data_dir, "./levee-data");
    lv_config_free(&cfg);
    CHECK(is_zeroed(&cfg));
}

/* Every key of a stream and of a consumer, in a file so that paths resolve
 * against its directory. Streams come after the routes and consumers that
 * name them, and data_dir comes last: the default dead-letter path must
 * still use it. */
static void test_streams_all_keys(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/streams.yaml", tmpdir);
    write_file(path,
               "routes:\n"
               "  - match: GET /hi\n"
               "    respond: {}\n"
               "    capture: { stream: views.v2, partition_key: header.X-Client-Id,\n"
               "               on_full: drop }\n"
               "  - match: GET /q\n"
               "    origin: http://127.0.0.1:3000\n"
               "    capture: { on_full: shed_request, partition_key: query.q, stream: clicks }\n"
               "  - match: POST /fn\n"
               "    function: agg\n"
               "    capture: { stream: clicks, partition_key: client_ip }\n"
               "  - match: GET /none\n"
               "    respond: {}\n"
               "consumers:\n"
               "  - name: nightly.rollup\n"
               "    stream: views.v2\n"
               "    function: agg\n"
               "    batch_size: 10000\n"
               "    batching_window: 300s\n"
               "    starting_position: AT_TIMESTAMP\n"
               "    starting_timestamp: 2026-11-27T16:00:00+01:00\n"
               "    max_retries: 10000\n"
               "    retry_backoff: 1m\n"
               "    on_failure: dlq/rollup.jsonl\n"
               "  - { stream: clicks, function: agg, starting_position: LATEST, max_retries: 0,\n"
               "      batch_size: 1, batching_window: 0, retry_backoff: 1ms }\n"
               "  - { name: again, stream: clicks, function: agg, max_retries: -1 }\n"
               "streams:\n"
               "  views.v2:\n"
               "    shards: 1024\n"
               "    retention: 8760h\n"
               "    durability: batch\n"
               "    sync_interval: 10s\n"
               "    segment_bytes: 1GiB\n"
               "    max_pending_bytes: 1MiB\n"
               "  clicks:\n"
               "    durability: fsync\n"
               "    sync_interval: 1ms\n"
               "    retention: 1h\n"
               "    segment_bytes: 1MiB\n"
               "    max_pending_bytes: 16GiB\n"
               "  A-Za-z0-9_.-:\n"
               "functions:\n"
               "  agg: { runtime: provided, code: . }\n"
               "data_dir: ./state\n");
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = lv_config_load(path, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);
    char *real = realpath(tmpdir, NULL);
    char expected[320];

    CHECK_EQ(cfg.num_streams, 3);
    const lv_config_stream_t *st = &cfg.streams[0];
    CHECK_STR(st->name, "views.v2");
    CHECK_EQ(st->shards, 1024);
    CHECK_EQ(st->retention_ms, 8760 * 3600 * 1000LL);
    CHECK_EQ(st->durability, LV_DURABILITY_BATCH);
    CHECK_EQ(st->sync_interval_ms, 10000);
    CHECK_EQ(st->segment_bytes, 1ull << 30);
    CHECK_EQ(st->max_pending_bytes, 1ull << 20);
    CHECK_EQ(st->pos.line, 29);
    CHECK_EQ(st->pos.col, 3);
    st = &cfg.streams[1];
    CHECK_STR(st->name, "clicks");
    CHECK_EQ(st->shards, 1);
    CHECK_EQ(st->retention_ms, 3600 * 1000);
    CHECK_EQ(st->durability, LV_DURABILITY_FSYNC);
    CHECK_EQ(st->sync_interval_ms, 1); /* accepted, and ignored with fsync */
    CHECK_EQ(st->segment_bytes, 1ull << 20);
    CHECK_EQ(st->max_pending_bytes, 16ull << 30);
    st = &cfg.streams[2];
    CHECK_STR(st->name, "A-Za-z0-9_.-");
    CHECK_EQ(st->shards, 1);

    const lv_config_capture_t *c = &cfg.routes[0].capture;
    CHECK_EQ(cfg.routes[0].kind, LV_TARGET_RESPOND);
    CHECK(c->enabled);
    CHECK_EQ(c->stream, 0);
    CHECK_EQ(c->key, LV_CAPTURE_KEY_HEADER);
    CHECK_STR(c->key_name, "x-client-id");
    CHECK_EQ(c->on_full, LV_CAPTURE_DROP);
    CHECK_EQ(c->pos.line, 4);
    CHECK_EQ(c->pos.col, 14);
    c = &cfg.routes[1].capture;
    CHECK_EQ(cfg.routes[1].kind, LV_TARGET_ORIGIN);
    CHECK(c->enabled);
    CHECK_EQ(c->stream, 1);
    CHECK_EQ(c->key, LV_CAPTURE_KEY_QUERY);
    CHECK_STR(c->key_name, "q");
    CHECK_EQ(c->on_full, LV_CAPTURE_SHED);
    c = &cfg.routes[2].capture;
    CHECK_EQ(cfg.routes[2].kind, LV_TARGET_FUNCTION);
    CHECK(c->enabled);
    CHECK_EQ(c->stream, 1);
    CHECK_EQ(c->key, LV_CAPTURE_KEY_CLIENT_IP);
    CHECK(c->key_name == NULL);
    c = &cfg.routes[3].capture;
    CHECK(!c->enabled);
    CHECK_EQ(c->stream, -1);
    CHECK(c->key_name == NULL);

    CHECK_EQ(cfg.num_consumers, 3);
    const lv_config_consumer_t *con = &cfg.consumers[0];
    CHECK_STR(con->name, "nightly.rollup");
    CHECK_EQ(con->stream, 0);
    CHECK_EQ(con->function, 0);
    CHECK_EQ(con->batch_size, 10000);
    CHECK_EQ(con->batching_window_ms, 300000);
    CHECK_EQ(con->starting_position, LV_START_AT_TIMESTAMP);
    CHECK_EQ(con->starting_timestamp_ms, 1795791600000);
    CHECK_EQ(con->max_retries, 10000);
    CHECK_EQ(con->retry_backoff_ms, 60000);
    snprintf(expected, sizeof expected, "%s/dlq/rollup.jsonl", real);
    CHECK_STR(con->on_failure, expected);
    CHECK_EQ(con->pos.line, 15);
    CHECK_EQ(con->pos.col, 5);
    con = &cfg.consumers[1];
    CHECK_STR(con->name, "clicks-agg");
    CHECK_EQ(con->stream, 1);
    CHECK_EQ(con->function, 0);
    CHECK_EQ(con->batch_size, 1);
    CHECK_EQ(con->batching_window_ms, 0);
    CHECK_EQ(con->starting_position, LV_START_LATEST);
    CHECK_EQ(con->starting_timestamp_ms, -1);
    CHECK_EQ(con->max_retries, 0);
    CHECK_EQ(con->retry_backoff_ms, 1);
    snprintf(expected, sizeof expected, "%s/state/consumers/clicks-agg/dead-letter.jsonl", real);
    CHECK_STR(con->on_failure, expected);
    CHECK_EQ(con->pos.line, 25);
    CHECK_EQ(con->pos.col, 5);
    con = &cfg.consumers[2];
    CHECK_STR(con->name, "again");
    CHECK_EQ(con->max_retries, -1);
    snprintf(expected, sizeof expected, "%s/state/consumers/again/dead-letter.jsonl", real);
    CHECK_STR(con->on_failure, expected);
    free(real);
    lv_config_free(&cfg);
    CHECK(is_zeroed(&cfg));
}

/* Empty streams mean the defaults; a config without streams has none, and
 * no route captures. */
static void test_stream_defaults(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("streams:\n  a: {}\n  b:\n  c: { shards: 2 }\n", &cfg, &errs), 0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.num_streams, 3);
    for (size_t i = 0; i < cfg.num_streams; i++) {
        const lv_config_stream_t *st = &cfg.streams[i];
        CHECK_EQ(st->shards, i == 2 ? 2 : 1);
        CHECK_EQ(st->retention_ms, 24 * 3600 * 1000);
        CHECK_EQ(st->durability, LV_DURABILITY_FSYNC);
        CHECK_EQ(st->sync_interval_ms, 5);
        CHECK_EQ(st->segment_bytes, 64ull << 20);
        CHECK_EQ(st->max_pending_bytes, 64ull << 20);
    }
    CHECK_STR(cfg.streams[1].name, "b");
    CHECK_EQ(cfg.num_consumers, 0);
    CHECK(cfg.consumers == NULL);
    lv_config_free(&cfg);

    CHECK_EQ(load("streams:\nconsumers:\nroutes:\n  - { match: GET /, respond: {} }\n", &cfg,
                  &errs),
             0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.num_streams, 0);
    CHECK(cfg.streams == NULL);
    CHECK_EQ(cfg.num_consumers, 0);
    CHECK(!cfg.routes[0].capture.enabled);
    CHECK_EQ(cfg.routes[0].capture.stream, -1);
    CHECK_EQ(cfg.routes[0].capture.key, LV_CAPTURE_KEY_REQUEST_ID);
    CHECK(cfg.routes[0].capture.key_name == NULL);
    lv_config_free(&cfg);

    /* Consumer defaults, with data_dir left out. */
    CHECK_EQ(load("streams: { s: {} }\nfunctions: { f: { runtime: provided, code: . } }\n"
                  "consumers: [{ stream: s, function: f }]\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    const lv_config_consumer_t *con = &cfg.consumers[0];
    CHECK_STR(con->name, "s-f");
    CHECK_EQ(con->stream, 0);
    CHECK_EQ(con->function, 0);
    CHECK_EQ(con->batch_size, 100);
    CHECK_EQ(con->batching_window_ms, 0);
    CHECK_EQ(con->starting_position, LV_START_TRIM_HORIZON);
    CHECK_EQ(con->starting_timestamp_ms, -1);
    CHECK_EQ(con->max_retries, -1);
    CHECK_EQ(con->retry_backoff_ms, 1000);
    CHECK_STR(con->on_failure, "levee-data/consumers/s-f/dead-letter.jsonl");
    lv_config_free(&cfg);
}

/* capture works on every kind of route, and each partition key form is
 * kept as written (header names lower-cased). */
static void test_capture_forms(void)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "routes:\n"
             "  - { match: GET /a, respond: {}, capture: s }\n"
             "  - { match: 'GET /r/{code}', redirect: { table: %s }, capture: s }\n"
             "  - { match: GET /o, origin: http://x, cache: {}, capture: s }\n"
             "  - { match: GET /f, function: f, capture: s }\n"
             "  - { match: 'GET /u/{user_id}/*', respond: {}, capture: { stream: s, "
             "partition_key: path.user_id } }\n"
             "  - { match: GET /h, respond: {}, capture: { stream: s, partition_key: "
             "header.User-Agent } }\n"
             "  - { match: GET /q, respond: {}, capture: { stream: s, partition_key: "
             "'query.a b%%20' } }\n"
             "  - { match: GET /i, respond: {}, capture: { stream: s, partition_key: "
             "request_id, on_full: drop } }\n"
             "streams: { s: }\n"
             "functions: { f: { runtime: provided, code: . } }\n",
             table_csv);
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    int rc = load(yaml, &cfg, &errs);
    char *msgs = joined(&errs);
    CHECK_STR(msgs, "");
    free(msgs);
    CHECK_EQ(rc, 0);
    CHECK_EQ(cfg.num_routes, 8);
    for (size_t i = 0; i < cfg.num_routes; i++) {
        CHECK(cfg.routes[i].capture.enabled);
        CHECK_EQ(cfg.routes[i].capture.stream, 0);
    }
    CHECK_EQ(cfg.routes[0].capture.key, LV_CAPTURE_KEY_REQUEST_ID);
    CHECK_EQ(cfg.routes[2].kind, LV_TARGET_ORIGIN);
    CHECK(cfg.routes[2].cache.enabled);
    CHECK_EQ(cfg.routes[3].kind, LV_TARGET_FUNCTION);
    CHECK_EQ(cfg.routes[4].capture.key, LV_CAPTURE_KEY_PATH);
    CHECK_STR(cfg.routes[4].capture.key_name, "user_id");
    CHECK_EQ(cfg.routes[5].capture.key, LV_CAPTURE_KEY_HEADER);
    CHECK_STR(cfg.routes[5].capture.key_name, "user-agent");
    CHECK_EQ(cfg.routes[6].capture.key, LV_CAPTURE_KEY_QUERY);
    CHECK_STR(cfg.routes[6].capture.key_name, "a b%20");
    CHECK_EQ(cfg.routes[7].capture.key, LV_CAPTURE_KEY_REQUEST_ID);
    CHECK(cfg.routes[7].capture.key_name == NULL);
    CHECK_EQ(cfg.routes[7].capture.on_full, LV_CAPTURE_DROP);
    lv_config_free(&cfg);
}

/* Streams and functions may be defined anywhere in the file; a stream or
 * function with a bad name still exists, so what names it adds no second
 * message. */
static void test_stream_references(void)
{
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(load("consumers:\n"
                  "  - { stream: b, function: g }\n"
                  "  - { stream: a, function: f }\n"
                  "routes:\n"
                  "  - { match: GET /a, respond: {}, capture: b }\n"
                  "  - { match: GET /b, respond: {} }\n"
                  "  - { match: GET /c, respond: {}, capture: { stream: a } }\n"
                  "streams: { a: {}, b: {} }\n"
                  "functions:\n"
                  "  f: { runtime: provided, code: . }\n"
                  "  g: { runtime: provided, code: . }\n",
                  &cfg, &errs),
             0);
    CHECK_EQ(errs.count, 0);
    CHECK_EQ(cfg.routes[0].capture.stream, 1);
    CHECK_EQ(cfg.routes[1].capture.stream, -1);
    CHECK_EQ(cfg.routes[2].capture.stream, 0);
    CHECK_EQ(cfg.consumers[0].stream, 1);
    CHECK_EQ(cfg.consumers[0].function, 1);
    CHECK_STR(cfg.consumers[0].name, "b-g");
    CHECK_EQ(cfg.consumers[1].stream, 0);
    CHECK_EQ(cfg.consumers[1].function, 0);
    CHECK_STR(cfg.consumers[1].name, "a-f");
    lv_config_free(&cfg);
    CHECK_FAILS("routes: [{ match: GET /, respond: {}, capture: a/b }]\n"
                "consumers: [{ stream: a/b, function: f.g }]\n"
                "functions: { f.g: { runtime: provided, code: . } }\n"
                "streams: { a/b: {} }\n",
                "t.yaml:3:14: invalid function name 'f.g'; use 1 to 64 letters, digits, '-' "
                "and '_'\n"
                "t.yaml:4:12: invalid stream name 'a/b'; use 1 to 128 letters, digits, '_', "
                "'.' and '-'");
}

static const struct {
    const char *yaml, *expected;
} stream_error_cases[] = {
    /* streams: shape and names */
    {"streams: [a]\n", "t.yaml:1:10: 'streams' must be a mapping, not a list"},
    {"streams: { a: 4 }\n", "t.yaml:1:15: 'a' must be a mapping, not a single value"},
    {"streams: { 'a b': {} }\n",
     "t.yaml:1:12: invalid stream name 'a b'; use 1 to 128 letters, digits, '_', '.' and '-'"},
    {"streams: { '': {} }\n",
     "t.yaml:1:12: invalid stream name ''; use 1 to 128 letters, digits, '_', '.' and '-'"},
    {"streams: { \"a\\0b\": {} }\n",
     "t.yaml:1:12: invalid stream name 'a\\x00b'; use 1 to 128 letters, digits, '_', '.' and "
     "'-'"},
    {"streams: { caf\xc3\xa9: {} }\n",
     "t.yaml:1:12: invalid stream name 'caf\\xC3\\xA9'; use 1 to 128 letters, digits, '_', '.' "
     "and '-'"},
    {"streams:\n  "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: {}\n",
     "t.yaml:2:3: invalid stream name "
     "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'; use 1 to 128 letters, "
     "digits, '_', '.' and '-'"},
    {"streams: { '..': {}, .: {} }\n",
     "t.yaml:1:12: invalid stream name '..'; '.' and '..' are not allowed (it names a directory "
     "in data_dir)\n"
     "t.yaml:1:22: invalid stream name '.'; '.' and '..' are not allowed (it names a directory "
     "in data_dir)"},
    {"streams:\n  a: {}\n  a: {}\n", "t.yaml:3:3: duplicate key 'a' (first at 2:3)"},
    {"streams: { a: { partitions: 2 } }\n",
     "t.yaml:1:17: unknown key 'partitions' in stream; expected one of: shards, retention, "
     "durability, sync_interval, segment_bytes, max_pending_bytes"},
    {"streams: { a: { shards: 1, shards: 2 } }\n",
     "t.yaml:1:28: duplicate key 'shards' (first at 1:17)"},
    /* shards */
    {"streams: { a: { shards: 0 } }\n",
     "t.yaml:1:25: 'shards' must be a whole number from 1 to 1024, got '0'"},
    {"streams: { a: { shards: 1025 } }\n",
     "t.yaml:1:25: 'shards' must be a whole number from 1 to 1024, got '1025'"},
    {"streams: { a: { shards: -1 } }\n",
     "t.yaml:1:25: 'shards' must be a whole number from 1 to 1024, got '-1'"},
    {"streams: { a: { shards: [1] } }\n",
     "t.yaml:1:25: 'shards' must be a single value, not a list"},
    /* retention */
    {"streams: { a: { retention: 59m } }\n",
     "t.yaml:1:28: 'retention' must be from 1h to 8760h, got '59m'"},
    {"streams: { a: { retention: 8761h } }\n",
     "t.yaml:1:28: 'retention' must be from 1h to 8760h, got '8761h'"},
    {"streams: { a: { retention: 366d } }\n",
     "t.yaml:1:28: 'retention' must be from 1h to 8760h, got '366d'"},
    {"streams: { a: { retention: 0 } }\n",
     "t.yaml:1:28: 'retention' must be from 1h to 8760h, got '0'"},
    {"streams: { a: { retention: 1 day } }\n",
     "t.yaml:1:28: 'retention': invalid duration '1 day' (use e.g. 250ms, 10s, 5m, 2h, 1d)"},
    /* durability and sync_interval */
    {"streams: { a: { durability: always } }\n",
     "t.yaml:1:29: 'durability' must be fsync or batch, got 'always'"},
    {"streams: { a: { durability: FSYNC } }\n",
     "t.yaml:1:29: 'durability' must be fsync or batch, got 'FSYNC'"},
    {"streams: { a: { durability: } }\n", "t.yaml:1:29: 'durability' has no value"},
    {"streams: { a: { durability: batch, sync_interval: 0 } }\n",
     "t.yaml:1:51: 'sync_interval' must be from 1ms to 10s, got '0'"},
    {"streams: { a: { sync_interval: 10001ms } }\n",
     "t.yaml:1:32: 'sync_interval' must be from 1ms to 10s, got '10001ms'"},
    /* sizes */
    {"streams: { a: { segment_bytes: 1023KiB } }\n",
     "t.yaml:1:32: 'segment_bytes' must be from 1MiB to 1GiB, got '1023KiB'"},
    {"streams: { a: { segment_bytes: 2GiB } }\n",
     "t.yaml:1:32: 'segment_bytes' must be from 1MiB to 1GiB, got '2GiB'"},
    {"streams: { a: { segment_bytes: 0 } }\n",
     "t.yaml:1:32: 'segment_bytes' must be from 1MiB to 1GiB, got '0'"},
    {"streams: { a: { segment_bytes: 64M } }\n",
     "t.yaml:1:32: 'segment_bytes': invalid size '64M' (use e.g. 512, 64KiB, 256MiB, 1GiB, "
     "10MB)"},
    {"streams: { a: { max_pending_bytes: 1MB } }\n",
     "t.yaml:1:36: 'max_pending_bytes' must be at least 1MiB, got '1MB'"},
    /* capture: shape */
    {"routes: [{ match: GET /, respond: {}, capture: nope }]\n",
     "t.yaml:1:48: unknown stream 'nope' (not defined under streams:)"},
    {"streams: { a: {} }\n"
     "routes:\n  - match: GET /\n    respond: {}\n    capture: { stream: b, on_full: drop }\n",
     "t.yaml:5:24: unknown stream 'b' (not defined under streams:)"},
    {"routes: [{ match: GET /, respond: {}, capture: '' }]\n",
     "t.yaml:1:48: 'capture' must not be empty"},
    {"routes: [{ match: GET /, respond: {}, capture: [a] }]\n",
     "t.yaml:1:48: 'capture' must be a stream name or a mapping, not a list"},
    {"routes: [{ match: GET /, respond: {}, capture: }]\n",
     "t.yaml:1:48: 'capture' is missing required key 'stream'"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { partition_key: "
     "client_ip } }]\n",
     "t.yaml:2:48: 'capture' is missing required key 'stream'"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, key: x } "
     "}]\n",
     "t.yaml:2:61: unknown key 'key' in capture; expected one of: stream, partition_key, "
     "on_full"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: [a] } }]\n",
     "t.yaml:2:58: 'stream' must be a single value, not a list"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: a, capture: a }]\n",
     "t.yaml:2:51: duplicate key 'capture' (first at 2:39)"},
    {"streams: { a: }\nroutes: [{ match: GET /, capture: a }]\n",
     "t.yaml:2:10: route has no target; add one of: respond, redirect, origin, function"},
    /* capture: partition_key and on_full */
    {"streams: { a: }\nroutes: [{ match: 'GET /r/{id}', respond: {}, capture: { stream: a, "
     "partition_key: path.code } }]\n",
     "t.yaml:2:84: capture: partition_key path.code: the route has no {code} parameter"},
    {"streams: { a: }\nroutes:\n  - capture: { stream: a, partition_key: path.cod }\n"
     "    match: GET /r/{code}/*\n    respond: {}\n",
     "t.yaml:3:42: capture: partition_key path.cod: the route has no {cod} parameter"},
    {"streams: { a: }\nroutes: [{ match: 'GET /r/{code}', respond: {}, capture: { stream: a, "
     "partition_key: 'path.code}/{x' } }]\n",
     "t.yaml:2:86: capture: partition_key path.code}/{x: the route has no {code}/{x} "
     "parameter"},
    {"streams: { a: }\nroutes: [{ match: GET /*, respond: {}, capture: { stream: a, "
     "partition_key: path.* } }]\n",
     "t.yaml:2:77: capture: partition_key path.*: the route has no {*} parameter"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: path. } }]\n",
     "t.yaml:2:76: capture: partition_key 'path.' needs a name (path.NAME)"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: header. } }]\n",
     "t.yaml:2:76: capture: partition_key 'header.' needs a name (header.NAME)"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: query. } }]\n",
     "t.yaml:2:76: capture: partition_key 'query.' needs a name (query.NAME)"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: 'header.x y' } }]\n",
     "t.yaml:2:76: capture: partition_key header.x y: invalid header name"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: \"header.a:b\" } }]\n",
     "t.yaml:2:76: capture: partition_key header.a:b: invalid header name"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: \"query.a\\nb\" } }]\n",
     "t.yaml:2:76: capture: partition_key query.a\\x0Ab: the name must not contain control "
     "characters"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: ip } }]\n",
     "t.yaml:2:76: capture: partition_key must be request_id, client_ip, path.NAME, "
     "header.NAME or query.NAME; got 'ip'"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "partition_key: Path.x } }]\n",
     "t.yaml:2:76: capture: partition_key must be request_id, client_ip, path.NAME, "
     "header.NAME or query.NAME; got 'Path.x'"},
    {"streams: { a: }\nroutes: [{ match: GET /, respond: {}, capture: { stream: a, "
     "on_full: block } }]\n",
     "t.yaml:2:70: 'on_full' must be shed_request or drop, got 'block'"},
    /* A bad match drops the route: its capture is not looked at further. */
    {"routes: [{ match: GET x, respond: {}, capture: { stream: nope, partition_key: path.a } "
     "}]\n",
     "t.yaml:1:19: invalid path pattern 'x': it must start with '/'"},
    /* consumers: shape */
    {"consumers: { stream: a }\n", "t.yaml:1:12: 'consumers' must be a list, not a mapping"},
    {"consumers: [a, ~]\n",
     "t.yaml:1:13: a consumer must be a mapping with 'stream' and 'function', not a single "
     "value\n"
     "t.yaml:1:16: a consumer must be a mapping with 'stream' and 'function', not an empty "
     "value"},
    {"consumers: [{}]\n",
     "t.yaml:1:13: consumer is missing required key 'stream'\n"
     "t.yaml:1:13: consumer is missing required key 'function'"},
    {"streams: { s: }\nconsumers: [{ stream: s, fn: f }]\n",
     "t.yaml:2:13: consumer is missing required key 'function'\n"
     "t.yaml:2:26: unknown key 'fn' in consumer; expected one of: name, stream, function, "
     "batch_size, batching_window, starting_position, starting_timestamp, max_retries, "
     "retry_backoff, on_failure"},
    /* consumers: references */
    {"functions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - stream: clicks\n    function: f\n",
     "t.yaml:3:13: unknown stream 'clicks' (not defined under streams:)"},
    {"streams: { s: }\nconsumers:\n  - stream: s\n    function: aggregate\n",
     "t.yaml:4:15: unknown function 'aggregate' (not defined under functions:)"},
    {"consumers: [{ stream: x, function: y }]\n",
     "t.yaml:1:23: unknown stream 'x' (not defined under streams:)\n"
     "t.yaml:1:36: unknown function 'y' (not defined under functions:)"},
    {"consumers: [{ stream: '', function: [y] }]\n",
     "t.yaml:1:23: 'stream' must not be empty\n"
     "t.yaml:1:37: 'function' must be a single value, not a list"},
    /* consumers: values */
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, batch_size: 0 }\n",
     "t.yaml:4:43: 'batch_size' must be a whole number from 1 to 10000, got '0'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, batch_size: 10001 }\n",
     "t.yaml:4:43: 'batch_size' must be a whole number from 1 to 10000, got '10001'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, batching_window: 301s }\n",
     "t.yaml:4:48: 'batching_window' must be at most 300s"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, max_retries: -2 }\n",
     "t.yaml:4:44: 'max_retries' must be -1 (retry until the batch succeeds or expires) or a "
     "whole number from 0 to 10000, got '-2'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, max_retries: 10001 }\n",
     "t.yaml:4:44: 'max_retries' must be -1 (retry until the batch succeeds or expires) or a "
     "whole number from 0 to 10000, got '10001'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, retry_backoff: 0 }\n",
     "t.yaml:4:46: 'retry_backoff' must be greater than 0"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, retry_backoff: 61s }\n",
     "t.yaml:4:46: 'retry_backoff' must be at most 60s"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, on_failure: '' }\n",
     "t.yaml:4:43: 'on_failure' must not be empty"},
    /* consumers: starting position */
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, starting_position: latest }\n",
     "t.yaml:4:50: 'starting_position' must be one of TRIM_HORIZON, LATEST, AT_TIMESTAMP; got "
     "'latest'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, starting_position: AT_TIMESTAMP }\n",
     "t.yaml:4:50: starting_position AT_TIMESTAMP needs 'starting_timestamp' (an RFC 3339 "
     "time, e.g. 2026-11-27T15:00:00Z)"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, starting_timestamp: 2026-11-27T15:00:00Z }\n",
     "t.yaml:4:31: 'starting_timestamp' is only allowed with starting_position AT_TIMESTAMP, "
     "not TRIM_HORIZON"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - stream: s\n    function: f\n"
     "    starting_timestamp: 2026-11-27T15:00:00Z\n    starting_position: LATEST\n",
     "t.yaml:6:5: 'starting_timestamp' is only allowed with starting_position AT_TIMESTAMP, "
     "not LATEST"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - stream: s\n    function: f\n    starting_position: AT_TIMESTAMP\n"
     "    starting_timestamp: 2026-11-27 15:00\n",
     "t.yaml:7:25: 'starting_timestamp': invalid time '2026-11-27 15:00': expected 'T' "
     "between the date and the time (2026-11-27T15:00:00Z) (use RFC 3339, e.g. "
     "2026-11-27T15:00:00Z)"},
    /* A bad starting_position says so once, without a second message about
     * the timestamp. */
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - stream: s\n    function: f\n    starting_position: AT_SEQUENCE_NUMBER\n"
     "    starting_timestamp: 2026-11-27T15:00:00Z\n",
     "t.yaml:6:24: 'starting_position' must be one of TRIM_HORIZON, LATEST, AT_TIMESTAMP; got "
     "'AT_SEQUENCE_NUMBER'"},
    /* consumers: names */
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f }\n  - { stream: s, function: f }\n",
     "t.yaml:5:5: duplicate consumer name 's-f' (first at 4:5); give consumers of the same "
     "stream and function each a 'name'"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { name: x, stream: s, function: f }\n"
     "  - { stream: s, function: f }\n  - { stream: s, function: f, name: x }\n"
     "  - { stream: s, function: f, name: x }\n",
     "t.yaml:6:37: duplicate consumer name 'x' (first at 4:13)\n"
     "t.yaml:7:37: duplicate consumer name 'x' (first at 4:13)"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f }\n  - { stream: s, function: f, name: s-f }\n",
     "t.yaml:5:37: duplicate consumer name 's-f' (first at 4:5)"},
    {"streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
     "consumers:\n  - { stream: s, function: f, name: 'a/b' }\n"
     "  - { stream: s, function: f, name: .. }\n  - { stream: s, function: f, name: '' }\n",
     "t.yaml:4:37: invalid consumer name 'a/b'; use 1 to 256 letters, digits, '_', '.' and "
     "'-'\n"
     "t.yaml:5:37: invalid consumer name '..'; '.' and '..' are not allowed (it names a "
     "directory in data_dir)\n"
     "t.yaml:6:37: invalid consumer name ''; use 1 to 256 letters, digits, '_', '.' and '-'"},
};

static void test_stream_error_cases(void)
{
    size_t n = sizeof stream_error_cases / sizeof stream_error_cases[0], failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!fails_with(stream_error_cases[i].yaml, stream_error_cases[i].expected))
            failed++;
    CHECK_EQ(failed, 0);
}

/* A long file of consumers that all default to one name: each later one is
 * reported once, against the first, and the check stays fast. */
static void test_many_duplicate_consumers(void)
{
    lv_buf_t yaml = LV_BUF_INIT;
    lv_buf_printf(&yaml, "streams: { s: }\nfunctions: { f: { runtime: provided, code: . } }\n"
                         "consumers:\n");
    for (int i = 0; i < 20000; i++)
        lv_buf_printf(&yaml, "  - { stream: s, function: f }\n");
    lv_config_t cfg;
    lv_config_errors_t errs = {0};
    CHECK_EQ(lv_config_load_string("t.yaml", lv_buf_data(&yaml), lv_buf_len(&yaml), &cfg, &errs),
             -1);
    lv_buf_free(&yaml);
    CHECK_EQ(errs.count, 19999);
    CHECK_STR(errs.items[0], "t.yaml:5:5: duplicate consumer name 's-f' (first at 4:5); give "
                             "consumers of the same stream and function each a 'name'");
    CHECK_STR(errs.items[19998], "t.yaml:20003:5: duplicate consumer name 's-f' (first at 4:5); "
                                 "give consumers of the same stream and function each a 'name'");
    lv_config_errors_free(&errs);
}

int main(void)
{
    make_tmpdir();
    LV_RUN(test_full_config);
    LV_RUN(test_defaults);
    LV_RUN(test_route_defaults);
    LV_RUN(test_redirect_defaults);
    LV_RUN(test_admin_off_and_threads_auto);
    LV_RUN(test_error_cases);
    LV_RUN(test_admission_keys);
    LV_RUN(test_deep_nesting);
    LV_RUN(test_many_errors);
    LV_RUN(test_messages_are_sanitized);
    LV_RUN(test_durations);
    LV_RUN(test_sizes);
    LV_RUN(test_listen_addresses);
    LV_RUN(test_origin_urls);
    LV_RUN(test_path_patterns_accepted);
    LV_RUN(test_redirect_missing);
    LV_RUN(test_load_file);
    LV_RUN(test_unreadable_table);
    LV_RUN(test_error_formatting);
    LV_RUN(test_errors_accumulate);
    LV_RUN(test_body_bytes);
    LV_RUN(test_functions_issue_example);
    LV_RUN(test_functions_all_keys);
    LV_RUN(test_function_defaults);
    LV_RUN(test_function_references);
    LV_RUN(test_function_error_cases);
    LV_RUN(test_times);
    LV_RUN(test_streams_issue_example);
    LV_RUN(test_streams_all_keys);
    LV_RUN(test_stream_defaults);
    LV_RUN(test_capture_forms);
    LV_RUN(test_stream_references);
    LV_RUN(test_stream_error_cases);
    LV_RUN(test_many_duplicate_consumers);
    remove_tmpdir();
    return lv_test_summary();
}
