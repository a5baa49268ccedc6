/* spawn.c: worker processes started by one helper thread (see spawn.h for
 * what a worker receives).
 *
 * Two halves. lv_spawn_prepare runs once per function, on whatever thread
 * builds the pools: it checks that the command can run at all (code is a
 * directory, the bootstrap or interpreter exists and is executable) and
 * builds the argv and environment, so that the per-spawn work is a copy and
 * three short strings. The spawner thread does the rest: it takes queued
 * jobs in order, runs posix_spawn, sets the memory limit, opens a pidfd and
 * posts the result to the loop that asked.
 *
 * Per-spawn environment: the first ENV_SLOTS entries of every environment
 * are filled for each spawn on the spawner thread: AWS_LAMBDA_RUNTIME_API
 * (the worker's own port), AWS_LAMBDA_INITIALIZATION_TYPE, and
 * AWS_LAMBDA_LOG_STREAM_NAME, which is new per process as in Lambda, where
 * each execution environment writes its own stream ("YYYY/MM/DD/[$LATEST]"
 * and 32 random hex digits, the date of the spawn in UTC). In a spec those
 * entries hold example values (port 0, on-demand, the date of prepare).
 *
 * Choices where Lambda gives no answer for a host process:
 *   - LAMBDA_RUNTIME_DIR is RUNTIME_DIR/nodejs or RUNTIME_DIR/python for
 *     levee's bootstraps; for provided and command it is /var/runtime, the
 *     value Lambda's custom runtimes and container images see (nothing of
 *     levee's lives there; it only keeps LD_LIBRARY_PATH shaped as Lambda's).
 *   - Credentials: levee's own AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 *     AWS_SESSION_TOKEN when it has an access key (the token only if set:
 *     a placeholder token beside real keys would break their signatures),
 *     else the placeholder "levee" for all three.
 *   - AWS_REGION: levee's AWS_REGION, else its AWS_DEFAULT_REGION, else
 *     us-east-1.
 *   - A reserved name in the function's env: levee's value is kept and a
 *     warning logged (Lambda refuses such a configuration outright).
 *   - _HANDLER: the function's handler; for runtime: command without one,
 *     the command's last argument, as the Runtime Interface Emulator does.
 *   - memory_mb 0 (only from hand-built configs) is treated as Lambda's
 *     default of 128.
 *
 * How a spawn keeps levee's state out of the child: posix_spawn (vfork and
 * exec in glibc, so the cost does not grow with levee's memory) with file
 * actions that chdir to code, put /dev/null on stdin and the pipe on stdout
 * and stderr, then close every descriptor from 3 up. Levee opens everything
 * close-on-exec anyway; the closefrom also covers a descriptor some library
 * opened without it, or one another thread opened a moment ago. The child
 * gets its own process group, an empty signal mask and every signal at its
 * default action (levee ignores SIGPIPE, and a child would inherit that).
 *
 * The memory limit: posix_spawn cannot set rlimits, so prlimit(RLIMIT_DATA)
 * runs right after it returns. glibc's posix_spawn returns once the child
 * has exec'd, so for that window (microseconds, the dynamic loader's start)
 * the new program runs without the limit; it has allocated almost nothing
 * by then, and everything it maps later counts. The spawner thread has
 * every signal blocked so it never runs a handler of levee's. */
#include "functions/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin:/opt/bin"
#define DEFAULT_REGION "us-east-1"
#define DEFAULT_MEMORY_MB 128
#define CUSTOM_RUNTIME_DIR "/var/runtime"
#define PLACEHOLDER_CREDENTIAL "levee"

/* Indices of the per-spawn entries at the front of every environment. */
enum { SLOT_RUNTIME_API, SLOT_INIT_TYPE, SLOT_LOG_STREAM, ENV_SLOTS };

/* Names a function's env may not set (Lambda's reserved variables). */
static const char *const reserved_names[] = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
};

/* A growable NULL-terminated array of malloc'd strings. */
typedef struct {
    char **items;
    size_t len, cap;
} strvec_t;

/* Everything is owned by the spec: name, code, every argv and env string. */
struct lv_spawn_spec {
    char *name;
    char *code;
    char **argv; /* NULL-terminated */
    size_t argc;
    char **env; /* NULL-terminated; the first ENV_SLOTS are examples, see top */
    size_t envc;
    size_t copy_bytes; /* strings a job copies: name, code, argv, env past the slots */
    uint64_t memory_bytes;
};

/* One queued start, a single allocation: the struct, then the argv and env
 * pointer arrays, then the strings they point to (env slots point into the
 * slot buffers instead). Owned by the queue, then by the spawner thread. */
typedef struct job {
    struct job *next;
    lv_loop_t *loop;
    lv_spawn_cb cb;
    void *arg;
    uint16_t port;
    bool provisioned;
    uint64_t memory_bytes;
    const char *name, *code;
    char **argv, **env;
    char slot_api[sizeof "AWS_LAMBDA_RUNTIME_API=127.0.0.1:65535"];
    char slot_init[sizeof "AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency"];
    char slot_stream[96];
    char *ptrs[];
} job_t;

/* The result and the callback it goes to; lv_spawn_result_free frees the
 * whole box through its first member. */
typedef struct {
    lv_spawn_result_t result;
    lv_spawn_cb cb;
} result_box_t;

struct lv_spawner {
    pthread_t thread;
    pthread_mutex_t lock; /* guards the queue and stopping */
    pthread_cond_t wake;
    job_t *head, **tail;
    bool stopping;
};

/* ---- small helpers ---- */

static void strvec_push(strvec_t *v, char *s)
{
    if (v->len + 2 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 32;
        v->items = lv_realloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->len++] = s;
    v->items[v->len] = NULL;
}

static void strvec_free(strvec_t *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(v->items[i]);
    free(v->items);
    *v = (strvec_t){0};
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    lv_buf_t b = LV_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    lv_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *s = lv_memdup0(lv_buf_data(&b), lv_buf_len(&b));
    lv_buf_free(&b);
    return s;
}

static char *join3(const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *s = lv_malloc(la + ls + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, sep, ls);
    memcpy(s + la + ls, b, lb + 1);
    return s;
}

/* "NAME=" matches entry. */
static bool env_has_name(const char *entry, const char *name, size_t name_len)
{
    return strncmp(entry, name, name_len) == 0 && entry[name_len] == '=';
}

static ssize_t env_find(const strvec_t *env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < env->len; i++)
        if (env_has_name(env->items[i], name, n))
            return (ssize_t)i;
    return -1;
}

/* Sets NAME=value, replacing an earlier entry of the same name in place so
 * the order of first appearance is kept. */
static void env_set(strvec_t *env, const char *name, const char *value)
{
    char *entry = join3(name, "=", value);
    ssize_t at = env_find(env, name);
    if (at >= 0) {
        free(env->items[at]);
        env->items[at] = entry;
    } else {
        strvec_push(env, entry);
    }
}

static bool is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof reserved_names / sizeof reserved_names[0]; i++)
        if (strcmp(name, reserved_names[i]) == 0)
            return true;
    return false;
}

static bool is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_executable_file(const char *path)
{
    return is_regular_file(path) && access(path, X_OK) == 0;
}

/* Looks name up in a PATH-style list, as execvp would in a child whose cwd
 * is code (so relative entries resolve against code; empty ones are
 * skipped rather than meaning "."). Returns a malloc'd path or NULL. */
static char *find_in_path(const char *path_list, const char *name, const char *code)
{
    const char *p = path_list;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            char *dir = lv_strndup(p, len);
            char *base = dir[0] == '/' ? dir : join3(code, "/", dir);
            char *candidate = join3(base, "/", name);
            if (base != dir)
                free(base);
            free(dir);
            if (is_executable_file(candidate))
                return candidate;
            free(candidate);
        }
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

/* Fills out with "YYYY/MM/DD/[$LATEST]" and 32 hex digits. The digits only
 * need to be unique, so a failed getrandom falls back to the clock. */
static void format_log_stream(char *out, size_t outlen)
{
    uint64_t words[2];
    if (getrandom(words, sizeof words, GRND_NONBLOCK) != (ssize_t)sizeof words) {
        static _Atomic uint64_t counter;
        uint64_t x = lv_clock_ns() ^ ((uint64_t)getpid() << 32) ^ ++counter;
        for (int i = 0; i < 2; i++) { /* splitmix64 */
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            words[i] = z ^ (z >> 31);
        }
    }
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(out, outlen, "AWS_LAMBDA_LOG_STREAM_NAME=%04d/%02d/%02d/[$LATEST]%016llx%016llx",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, (unsigned long long)words[0],
             (unsigned long long)words[1]);
}

static void format_runtime_api(char *out, size_t outlen, uint16_t port)
{
    snprintf(out, outlen, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%u", (unsigned)port);
}

static void format_init_type(char *out, size_t outlen, bool provisioned)
{
    snprintf(out, outlen, "AWS_LAMBDA_INITIALIZATION_TYPE=%s",
             provisioned ? "provisioned-concurrency" : "on-demand");
}

/* ---- the runtime directory ---- */

static bool has_bootstraps(const char *dir)
{
    char *js = join3(dir, "/", "nodejs/bootstrap.js");
    char *py = join3(dir, "/", "python/bootstrap.py");
    bool ok = is_regular_file(js) || is_regular_file(py);
    free(js);
    free(py);
    return ok;
}

/* realpath(dir) if it holds a bootstrap, else NULL. */
static char *accept_runtime_dir(const char *dir)
{
    char *abs = realpath(dir, NULL);
    if (abs && !has_bootstraps(abs)) {
        free(abs);
        abs = NULL;
    }
    return abs;
}

/* Cuts path at its last '/', keeping "/" for a top-level entry. */
static void cut_last_component(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash)
        slash[slash == path ? 1 : 0] = '\0';
}

char *lv_spawn_find_runtime_dir(const char *configured)
{
    /* An explicit setting that is wrong is an error, not a reason to pick
     * some other directory the user did not mean. */
    if (configured)
        return accept_runtime_dir(configured);
    const char *from_env = getenv("LEVEE_RUNTIME_DIR");
    if (from_env && *from_env)
        return accept_runtime_dir(from_env);

    char *exe = realpath("/proc/self/exe", NULL);
    if (!exe)
        return NULL;
    char *found = NULL;
    for (int up = 0; up < 2 && !found; up++) {
        cut_last_component(exe); /* the binary's directory, then its parent */
        char *candidate = join3(exe, strcmp(exe, "/") == 0 ? "" : "/", "runtimes");
        found = accept_runtime_dir(candidate);
        free(candidate);
    }
    free(exe);
    return found;
}

/* ---- prepare ---- */

static const char *runtime_label(lv_runtime_kind_t kind)
{
    switch (kind) {
    case LV_RUNTIME_NODEJS: return "nodejs";
    case LV_RUNTIME_PYTHON: return "python";
    case LV_RUNTIME_PROVIDED: return "provided";
    case LV_RUNTIME_COMMAND: return "command";
    }
    return "?";
}

/* The function env's value for name, or NULL (the last one wins). */
static const char *fn_env_get(const lv_config_function_t *fn, const char *name)
{
    const char *value = NULL;
    for (size_t i = 0; i < fn->num_env; i++)
        if (fn->env[i].name && strcmp(fn->env[i].name, name) == 0)
            value = fn->env[i].value;
    return value;
}

/* Fills argv for fn. Returns false with a message in err. */
static bool build_argv(const lv_config_function_t *fn, const char *runtime_dir,
                       const char *worker_path, strvec_t *argv, char *err, size_t errlen)
{
    const char *interpreter = NULL, *script = NULL;
    switch (fn->runtime) {
    case LV_RUNTIME_NODEJS:
        interpreter = "node";
        script = "nodejs/bootstrap.js";
        break;
    case LV_RUNTIME_PYTHON:
        interpreter = "python3";
        script = "python/bootstrap.py";
        break;
    case LV_RUNTIME_PROVIDED: {
        char *bootstrap = join3(fn->code, "/", "bootstrap");
        if (!is_executable_file(bootstrap)) {
            snprintf(err, errlen, "no executable bootstrap in %s (Runtime.InvalidEntrypoint)", fn->code);
            free(bootstrap);
            return false;
        }
        strvec_push(argv, bootstrap);
        return true;
    }
    case LV_RUNTIME_COMMAND: {
        if (!fn->command || fn->num_command == 0 || !fn->command[0] || !fn->command[0][0]) {
            snprintf(err, errlen, "runtime: command needs a non-empty command");
            return false;
        }
        const char *cmd = fn->command[0];
        char *resolved;
        if (strchr(cmd, '/')) {
            resolved = cmd[0] == '/' ? lv_strdup(cmd) : join3(fn->code, "/", cmd);
            if (!is_executable_file(resolved)) {
                snprintf(err, errlen, "command %s: %s", resolved,
                         is_regular_file(resolved) ? "not executable" : "no such file");
                free(resolved);
                return false;
            }
        } else {
            resolved = find_in_path(worker_path, cmd, fn->code);
            if (!resolved) {
                snprintf(err, errlen, "command %s: not found in PATH %s", cmd, worker_path);
                return false;
            }
        }
        strvec_push(argv, resolved);
        for (size_t i = 1; i < fn->num_command; i++)
            strvec_push(argv, lv_strdup(fn->command[i] ? fn->command[i] : ""));
        return true;
    }
    }
    if (!interpreter) {
        snprintf(err, errlen, "unknown runtime %d", (int)fn->runtime);
        return false;
    }
    if (!runtime_dir) {
        snprintf(err, errlen,
                 "runtime %s: no runtime directory (runtime_dir:, $LEVEE_RUNTIME_DIR, or runtimes/ "
                 "next to levee)",
                 runtime_label(fn->runtime));
        return false;
    }
    char *bootstrap = join3(runtime_dir, "/", script);
    if (!is_regular_file(bootstrap)) {
        snprintf(err, errlen, "runtime %s: %s is missing", runtime_label(fn->runtime), bootstrap);
        free(bootstrap);
        return false;
    }
    char *resolved = find_in_path(worker_path, interpreter, fn->code);
    if (!resolved) {
        snprintf(err, errlen, "runtime %s: %s not found in PATH %s", runtime_label(fn->runtime),
                 interpreter, worker_path);
        free(bootstrap);
        return false;
    }
    strvec_push(argv, resolved);
    strvec_push(argv, bootstrap);
    return true;
}

static void build_env(const lv_config_function_t *fn, const char *runtime_dir, const char *last_arg,
                      uint64_t memory_mb, strvec_t *env)
{
    char slot[128];
    format_runtime_api(slot, sizeof slot, 0);
    strvec_push(env, lv_strdup(slot));
    format_init_type(slot, sizeof slot, false);
    strvec_push(env, lv_strdup(slot));
    format_log_stream(slot, sizeof slot);
    strvec_push(env, lv_strdup(slot));

    /* Reserved: fixed by levee. */
    const char *handler = fn->handler;
    if (!handler && fn->runtime == LV_RUNTIME_COMMAND)
        handler = last_arg;
    env_set(env, "_HANDLER", handler ? handler : "");
    env_set(env, "LAMBDA_TASK_ROOT", fn->code);
    char *lambda_runtime_dir;
    if (fn->runtime == LV_RUNTIME_NODEJS)
        lambda_runtime_dir = join3(runtime_dir, "/", "nodejs");
    else if (fn->runtime == LV_RUNTIME_PYTHON)
        lambda_runtime_dir = join3(runtime_dir, "/", "python");
    else
        lambda_runtime_dir = lv_strdup(CUSTOM_RUNTIME_DIR);
    env_set(env, "LAMBDA_RUNTIME_DIR", lambda_runtime_dir);
    env_set(env, "AWS_LAMBDA_FUNCTION_NAME", fn->name);
    snprintf(slot, sizeof slot, "%llu", (unsigned long long)memory_mb);
    env_set(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", slot);
    env_set(env, "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    char *group = format("/aws/lambda/%s", fn->name);
    env_set(env, "AWS_LAMBDA_LOG_GROUP_NAME", group);
    free(group);
    const char *region = getenv("AWS_REGION");
    if (!region || !*region)
        region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region)
        region = DEFAULT_REGION;
    env_set(env, "AWS_REGION", region);
    env_set(env, "AWS_DEFAULT_REGION", region);
    if (fn->runtime == LV_RUNTIME_NODEJS)
        env_set(env, "AWS_EXECUTION_ENV", "AWS_Lambda_nodejs20.x");
    else if (fn->runtime == LV_RUNTIME_PYTHON)
        env_set(env, "AWS_EXECUTION_ENV", "AWS_Lambda_python3.11");
    const char *key = getenv("AWS_ACCESS_KEY_ID");
    if (key && *key) {
        const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
        const char *token = getenv("AWS_SESSION_TOKEN");
        env_set(env, "AWS_ACCESS_KEY_ID", key);
        env_set(env, "AWS_SECRET_ACCESS_KEY", secret ? secret : "");
        if (token && *token)
            env_set(env, "AWS_SESSION_TOKEN", token);
    } else {
        env_set(env, "AWS_ACCESS_KEY_ID", PLACEHOLDER_CREDENTIAL);
        env_set(env, "AWS_SECRET_ACCESS_KEY", PLACEHOLDER_CREDENTIAL);
        env_set(env, "AWS_SESSION_TOKEN", PLACEHOLDER_CREDENTIAL);
    }

    /* Unreserved: Lambda's values, which the function's env may replace. */
    env_set(env, "TZ", "UTC");
    env_set(env, "LANG", "en_US.UTF-8");
    env_set(env, "PATH", DEFAULT_PATH);
    char *joined = format("/lib64:/usr/lib64:%s:%s/lib:%s:%s/lib:/opt/lib", lambda_runtime_dir,
                          lambda_runtime_dir, fn->code, fn->code);
    env_set(env, "LD_LIBRARY_PATH", joined);
    free(joined);
    if (fn->runtime == LV_RUNTIME_NODEJS) {
        joined = format("/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:%s/node_modules:%s:%s",
                        lambda_runtime_dir, lambda_runtime_dir, fn->code);
        env_set(env, "NODE_PATH", joined);
        free(joined);
    } else if (fn->runtime == LV_RUNTIME_PYTHON) {
        env_set(env, "PYTHONPATH", lambda_runtime_dir);
    }
    env_set(env, "HOME", "/tmp");
    free(lambda_runtime_dir);

    for (size_t i = 0; i < fn->num_env; i++) {
        const char *name = fn->env[i].name, *value = fn->env[i].value;
        if (!name || !*name || strchr(name, '=')) {
            lv_log_warn("spawn", "function %s: env name \"%s\" cannot be set; ignored", fn->name,
                        name ? name : "");
            continue;
        }
        if (is_reserved(name)) {
            lv_log_warn("spawn", "function %s: env %s is reserved; levee's value is used", fn->name,
                        name);
            continue;
        }
        env_set(env, name, value ? value : "");
    }
}

lv_spawn_spec_t *lv_spawn_prepare(const lv_config_function_t *fn, const char *runtime_dir, char *err,
                                  size_t errlen)
{
    char scratch[1];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (!fn || !fn->name || !fn->code) {
        snprintf(err, errlen, "function without a name or code directory");
        return NULL;
    }
    struct stat st;
    if (stat(fn->code, &st) != 0) {
        snprintf(err, errlen, "code directory %s: %s", fn->code, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "code directory %s: %s", fn->code, strerror(ENOTDIR));
        return NULL;
    }

    /* The interpreter or command is looked up where the worker would look. */
    const char *worker_path = fn_env_get(fn, "PATH");
    if (!worker_path)
        worker_path = DEFAULT_PATH;
    strvec_t argv = {0}, env = {0};
    if (!build_argv(fn, runtime_dir, worker_path, &argv, err, errlen)) {
        strvec_free(&argv);
        return NULL;
    }
    uint64_t memory_mb = fn->memory_mb ? fn->memory_mb : DEFAULT_MEMORY_MB;
    build_env(fn, runtime_dir, argv.len > 1 ? argv.items[argv.len - 1] : NULL, memory_mb, &env);

    lv_spawn_spec_t *spec = lv_calloc(1, sizeof *spec);
    spec->name = lv_strdup(fn->name);
    spec->code = lv_strdup(fn->code);
    spec->argv = argv.items;
    spec->argc = argv.len;
    spec->env = env.items;
    spec->envc = env.len;
    spec->memory_bytes = memory_mb <= (RLIM_INFINITY >> 21) ? memory_mb << 20 : RLIM_INFINITY;
    spec->copy_bytes = strlen(spec->name) + 1 + strlen(spec->code) + 1;
    for (size_t i = 0; i < spec->argc; i++)
        spec->copy_bytes += strlen(spec->argv[i]) + 1;
    for (size_t i = ENV_SLOTS; i < spec->envc; i++)
        spec->copy_bytes += strlen(spec->env[i]) + 1;
    return spec;
}

void lv_spawn_spec_free(lv_spawn_spec_t *spec)
{
    if (!spec)
        return;
    strvec_t argv = {spec->argv, spec->argc, 0}, env = {spec->env, spec->envc, 0};
    strvec_free(&argv);
    strvec_free(&env);
    free(spec->name);
    free(spec->code);
    free(spec);
}

char *const *lv_spawn_spec_argv(const lv_spawn_spec_t *spec) { return spec->argv; }

char *const *lv_spawn_spec_env(const lv_spawn_spec_t *spec) { return spec->env; }

/* ---- the spawner thread ---- */

static char *copy_string(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;
    char *at = *cursor;
    memcpy(at, s, n);
    *cursor += n;
    return at;
}

static job_t *job_from_spec(const lv_spawn_spec_t *spec)
{
    size_t nptrs = spec->argc + 1 + spec->envc + 1;
    job_t *job = lv_malloc(sizeof *job + nptrs * sizeof(char *) + spec->copy_bytes);
    memset(job, 0, sizeof *job);
    job->argv = job->ptrs;
    job->env = job->ptrs + spec->argc + 1;
    char *cursor = (char *)(job->ptrs + nptrs);
    job->name = copy_string(&cursor, spec->name);
    job->code = copy_string(&cursor, spec->code);
    for (size_t i = 0; i < spec->argc; i++)
        job->argv[i] = copy_string(&cursor, spec->argv[i]);
    job->argv[spec->argc] = NULL;
    job->env[SLOT_RUNTIME_API] = job->slot_api;
    job->env[SLOT_INIT_TYPE] = job->slot_init;
    job->env[SLOT_LOG_STREAM] = job->slot_stream;
    for (size_t i = ENV_SLOTS; i < spec->envc; i++)
        job->env[i] = copy_string(&cursor, spec->env[i]);
    job->env[spec->envc] = NULL;
    job->memory_bytes = spec->memory_bytes;
    return job;
}

/* Moves a descriptor above 2. A pipe end on 0, 1 or 2 (possible only when
 * levee was started with those closed) would be overwritten by the child's
 * /dev/null before its dup2, or be dup2'd onto itself, which leaves
 * close-on-exec set. Returns the fd to use. */
static int above_stdio(int fd)
{
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

static void fail(lv_spawn_result_t *r, const char *name, const char *what, int err)
{
    r->err = err;
    snprintf(r->message, sizeof r->message, "spawn %s: %s%s%s", name, what ? what : "",
             what ? ": " : "", strerror(err));
}

/* Runs one job on the spawner thread and fills r. */
static void run_job(job_t *job, lv_spawn_result_t *r)
{
    r->pid = -1;
    r->pidfd = -1;
    r->out_fd = -1;
    format_runtime_api(job->slot_api, sizeof job->slot_api, job->port);
    format_init_type(job->slot_init, sizeof job->slot_init, job->provisioned);
    format_log_stream(job->slot_stream, sizeof job->slot_stream);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        fail(r, job->name, "pipe", errno);
        return;
    }
    pipefd[0] = above_stdio(pipefd[0]);
    pipefd[1] = above_stdio(pipefd[1]);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) {
        fail(r, job->name, "file actions", rc);
        close(pipefd[0]);
        close(pipefd[1]);
        return;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        fail(r, job->name, "attributes", rc);
        posix_spawn_file_actions_destroy(&actions);
        close(pipefd[0]);
        close(pipefd[1]);
        return;
    }
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    /* These fail only for ENOMEM or a bad argument; the first error skips
     * the rest and posix_spawn, and is reported like a failed spawn. */
    if (!rc) rc = posix_spawn_file_actions_addchdir_np(&actions, job->code);
    if (!rc) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
    if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (!rc) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                      POSIX_SPAWN_SETSIGDEF);
    if (!rc) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = posix_spawnattr_setsigmask(&attr, &empty);
    if (!rc) rc = posix_spawnattr_setsigdefault(&attr, &all);

    pid_t pid = -1;
    r->started_ns = lv_clock_ns();
    if (!rc)
        rc = posix_spawn(&pid, job->argv[0], &actions, &attr, job->argv, job->env);
    int pidfd = -1, pidfd_err = 0;
    if (!rc) {
        struct rlimit lim = {job->memory_bytes, job->memory_bytes};
        if (prlimit(pid, RLIMIT_DATA, &lim, NULL) != 0 && errno != ESRCH)
            lv_log_warn("spawn", "%s: pid %d: RLIMIT_DATA not set: %s", job->name, (int)pid,
                        strerror(errno));
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* close-on-exec by definition */
        if (pidfd < 0)
            pidfd_err = errno;
    }
    r->spawn_ns = lv_clock_ns() - r->started_ns;
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    close(pipefd[1]);

    if (rc != 0) {
        fail(r, job->name, NULL, rc);
        close(pipefd[0]);
        return;
    }
    if (pidfd < 0) {
        /* Without a pidfd the pool could never notice the exit: give the
         * process back rather than leave it unwatched. */
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        fail(r, job->name, "pidfd_open", pidfd_err);
        close(pipefd[0]);
        return;
    }
    int flags = fcntl(pipefd[0], F_GETFL);
    if (flags >= 0)
        fcntl(pipefd[0], F_SETFL, flags | O_NONBLOCK);
    r->pid = pid;
    r->pidfd = pidfd;
    r->out_fd = pipefd[0];
}

static void deliver(lv_loop_t *loop, void *arg)
{
    result_box_t *box = arg;
    box->cb(loop, &box->result);
}

static void *spawner_main(void *arg)
{
    lv_spawner_t *sp = arg;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        while (!sp->head && !sp->stopping)
            pthread_cond_wait(&sp->wake, &sp->lock);
        job_t *job = sp->head;
        if (!job)
            break; /* stopping, and the queue is drained */
        sp->head = job->next;
        if (!sp->head)
            sp->tail = &sp->head;
        pthread_mutex_unlock(&sp->lock);

        result_box_t *box = lv_calloc(1, sizeof *box);
        box->cb = job->cb;
        box->result.arg = job->arg;
        run_job(job, &box->result);
        lv_loop_t *loop = job->loop;
        free(job);
        lv_loop_post(loop, deliver, box);

        pthread_mutex_lock(&sp->lock);
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

lv_spawner_t *lv_spawner_new(void)
{
    lv_spawner_t *sp = lv_calloc(1, sizeof *sp);
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->wake, NULL);
    sp->tail = &sp->head;

    /* The thread starts with every signal blocked, so levee's handlers and
     * signalfd see signals on their own threads only. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&sp->thread, NULL, spawner_main, sp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&sp->wake);
        pthread_mutex_destroy(&sp->lock);
        free(sp);
        errno = rc;
        return NULL;
    }
    pthread_setname_np(sp->thread, "lv-spawn");
    return sp;
}

void lv_spawner_free(lv_spawner_t *sp)
{
    if (!sp)
        return;
    pthread_mutex_lock(&sp->lock);
    sp->stopping = true;
    pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    pthread_join(sp->thread, NULL);
    pthread_cond_destroy(&sp->wake);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
}

void lv_spawner_spawn(lv_spawner_t *sp, const lv_spawn_spec_t *spec, uint16_t port, bool provisioned,
                      lv_loop_t *loop, lv_spawn_cb cb, void *arg)
{
    job_t *job = job_from_spec(spec);
    job->port = port;
    job->provisioned = provisioned;
    job->loop = loop;
    job->cb = cb;
    job->arg = arg;
    pthread_mutex_lock(&sp->lock);
    *sp->tail = job;
    sp->tail = &job->next;
    pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
}

void lv_spawn_result_free(lv_spawn_result_t *r)
{
    if (!r)
        return;
    if (r->pidfd >= 0)
        close(r->pidfd);
    if (r->out_fd >= 0)
        close(r->out_fd);
    free(r); /* the result is the first member of its result_box_t */
}
