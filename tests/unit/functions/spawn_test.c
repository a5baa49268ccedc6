/* spawn_test.c: the spawner (functions/spawn.h) against real processes.
 *
 * The prepare tests build specs for each runtime in a scratch directory
 * (fake code directories, a runtime directory with empty bootstraps, fake
 * interpreters on a PATH of the function's own) and read back argv and the
 * environment. The spawn tests start real children through a real lv_loop_t
 * and look at them from outside while they run: a `provided` bootstrap
 * sleeps 0.2 s first, which leaves time to read its /proc entries (process
 * group, memory limit, open descriptors) before it prints its environment
 * and exits; a `sleep` started through sh shows the signal state and that
 * killing the process group reaches the shell's own children; real node
 * and python3 run stand-in bootstraps under the default memory limit.
 * The benchmark test starts processes back to back and one at a time and
 * prints the median and maximum spawn_ns, levee's share of a cold start.
 *
 * lv_loop_run cannot be restarted after lv_loop_stop, so each wait uses a
 * fresh loop. alarm() turns a lost result into a visible failure. */
#include "functions/spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "test.h"

/* ---- harness ---- */

static char scratch[PATH_MAX]; /* the test's temporary directory */
static char runtime_dir[PATH_MAX + 16];

static char *path_in(const char *rel)
{
    static char paths[8][PATH_MAX * 2];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", scratch, rel);
    return p;
}

static void make_dir(const char *path) { mkdir(path, 0755); }

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "we");
    if (!f) {
        perror(path);
        abort();
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static lv_config_function_t make_fn(const char *name, lv_runtime_kind_t runtime, const char *code)
{
    lv_config_function_t fn;
    memset(&fn, 0, sizeof fn);
    fn.name = (char *)name;
    fn.runtime = runtime;
    fn.code = (char *)code;
    fn.memory_mb = 256;
    return fn;
}

/* The value of NAME in a NULL-terminated environment, or NULL. */
static const char *env_get(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (; *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

/* Each name appears once. */
static int count_duplicates(char *const *env)
{
    int dups = 0;
    for (size_t i = 0; env[i]; i++)
        for (size_t j = i + 1; env[j]; j++) {
            size_t n = strcspn(env[i], "=");
            if (strncmp(env[i], env[j], n + 1) == 0)
                dups++;
        }
    return dups;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static bool is_log_stream(const char *s)
{
    /* YYYY/MM/DD/[$LATEST] then 32 hex digits */
    if (!s || strlen(s) != 10 + 10 + 32 || s[4] != '/' || s[7] != '/')
        return false;
    if (strncmp(s + 10, "/[$LATEST]", 10) != 0)
        return false;
    for (size_t i = 20; i < 52; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Results collected by on_spawned on the loop's thread. */
#define MAX_RESULTS 64
static lv_spawn_result_t *results[MAX_RESULTS];
static size_t num_results, want_results;
static bool delivered_off_loop;

static void on_spawned(lv_loop_t *loop, lv_spawn_result_t *r)
{
    if (lv_loop_current() != loop)
        delivered_off_loop = true;
    if (num_results < MAX_RESULTS)
        results[num_results++] = r;
    else
        lv_spawn_result_free(r);
    if (num_results >= want_results)
        lv_loop_stop(loop);
}

static void wait_results(lv_loop_t *loop, size_t n)
{
    want_results = n;
    alarm(30);
    if (num_results < n)
        lv_loop_run(loop);
    alarm(0);
}

static void reap(lv_spawn_result_t *r, int *status)
{
    if (r->pid > 0)
        while (waitpid(r->pid, status, 0) < 0 && errno == EINTR)
            ;
}

static void free_results(void)
{
    for (size_t i = 0; i < num_results; i++) {
        int status;
        reap(results[i], &status);
        lv_spawn_result_free(results[i]);
    }
    num_results = 0;
    delivered_off_loop = false;
}

/* ---- prepare ---- */

static void test_prepare_nodejs(void)
{
    char *code = path_in("node-fn");
    make_dir(code);
    lv_config_header_t env[] = {
        {"TABLE", "orders"},
        {"TZ", "Europe/Paris"},          /* unreserved: replaced */
        {"AWS_REGION", "mars-north-1"},  /* reserved: ignored */
        {"AWS_LAMBDA_RUNTIME_API", "1.2.3.4:5"},
        {"TABLE", "orders-v2"},          /* the last one wins */
    };
    lv_config_function_t fn = make_fn("checkout", LV_RUNTIME_NODEJS, code);
    fn.handler = "index.handler";
    fn.env = env;
    fn.num_env = sizeof env / sizeof env[0];
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, runtime_dir, err, sizeof err);
    CHECK(spec);
    char *const *argv = lv_spawn_spec_argv(spec);
    char *const *e = lv_spawn_spec_env(spec);
    char expect[PATH_MAX * 8];

    CHECK(argv[0][0] == '/' && ends_with(argv[0], "/node"));
    CHECK(access(argv[0], X_OK) == 0);
    snprintf(expect, sizeof expect, "%s/nodejs/bootstrap.js", runtime_dir);
    CHECK_STR(argv[1], expect);
    CHECK(argv[2] == NULL);

    CHECK_STR(e[0], "AWS_LAMBDA_RUNTIME_API=127.0.0.1:0");
    CHECK_STR(e[1], "AWS_LAMBDA_INITIALIZATION_TYPE=on-demand");
    CHECK(is_log_stream(env_get(e, "AWS_LAMBDA_LOG_STREAM_NAME")));
    CHECK_STR(env_get(e, "_HANDLER"), "index.handler");
    CHECK_STR(env_get(e, "LAMBDA_TASK_ROOT"), code);
    snprintf(expect, sizeof expect, "%s/nodejs", runtime_dir);
    CHECK_STR(env_get(e, "LAMBDA_RUNTIME_DIR"), expect);
    CHECK_STR(env_get(e, "AWS_LAMBDA_FUNCTION_NAME"), "checkout");
    CHECK_STR(env_get(e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "256");
    CHECK_STR(env_get(e, "AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST");
    CHECK_STR(env_get(e, "AWS_LAMBDA_LOG_GROUP_NAME"), "/aws/lambda/checkout");
    CHECK_STR(env_get(e, "AWS_REGION"), "us-east-1");
    CHECK_STR(env_get(e, "AWS_DEFAULT_REGION"), "us-east-1");
    CHECK_STR(env_get(e, "AWS_EXECUTION_ENV"), "AWS_Lambda_nodejs20.x");
    CHECK_STR(env_get(e, "AWS_ACCESS_KEY_ID"), "levee");
    CHECK_STR(env_get(e, "AWS_SECRET_ACCESS_KEY"), "levee");
    CHECK_STR(env_get(e, "AWS_SESSION_TOKEN"), "levee");
    CHECK_STR(env_get(e, "LANG"), "en_US.UTF-8");
    CHECK_STR(env_get(e, "PATH"), "/usr/local/bin:/usr/bin:/bin:/opt/bin");
    CHECK_STR(env_get(e, "HOME"), "/tmp");
    snprintf(expect, sizeof expect,
             "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:%s/nodejs/node_modules:%s/nodejs:%s",
             runtime_dir, runtime_dir, code);
    CHECK_STR(env_get(e, "NODE_PATH"), expect);
    snprintf(expect, sizeof expect, "/lib64:/usr/lib64:%s/nodejs:%s/nodejs/lib:%s:%s/lib:/opt/lib",
             runtime_dir, runtime_dir, code, code);
    CHECK_STR(env_get(e, "LD_LIBRARY_PATH"), expect);
    CHECK(env_get(e, "PYTHONPATH") == NULL);
    /* the function's own env */
    CHECK_STR(env_get(e, "TZ"), "Europe/Paris");
    CHECK_STR(env_get(e, "TABLE"), "orders-v2");
    CHECK_EQ(count_duplicates(e), 0);
    lv_spawn_spec_free(spec);
}

static void test_prepare_python(void)
{
    char *code = path_in("py-fn");
    make_dir(code);
    lv_config_function_t fn = make_fn("report", LV_RUNTIME_PYTHON, code);
    fn.handler = "app.main";
    fn.memory_mb = 0; /* a hand-built config: Lambda's default */
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, runtime_dir, err, sizeof err);
    CHECK(spec);
    char *const *argv = lv_spawn_spec_argv(spec);
    char *const *e = lv_spawn_spec_env(spec);
    char expect[PATH_MAX * 8];
    CHECK(argv[0][0] == '/' && ends_with(argv[0], "/python3"));
    snprintf(expect, sizeof expect, "%s/python/bootstrap.py", runtime_dir);
    CHECK_STR(argv[1], expect);
    CHECK(argv[2] == NULL);
    snprintf(expect, sizeof expect, "%s/python", runtime_dir);
    CHECK_STR(env_get(e, "LAMBDA_RUNTIME_DIR"), expect);
    CHECK_STR(env_get(e, "PYTHONPATH"), expect);
    CHECK_STR(env_get(e, "AWS_EXECUTION_ENV"), "AWS_Lambda_python3.11");
    CHECK_STR(env_get(e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "128");
    CHECK_STR(env_get(e, "_HANDLER"), "app.main");
    CHECK(env_get(e, "NODE_PATH") == NULL);
    CHECK_EQ(count_duplicates(e), 0);
    lv_spawn_spec_free(spec);
}

static void test_prepare_provided(void)
{
    char *code = path_in("provided-fn");
    make_dir(code);
    char *bootstrap = path_in("provided-fn/bootstrap");
    write_file(bootstrap, "#!/bin/sh\nexit 0\n", 0755);
    lv_config_function_t fn = make_fn("custom", LV_RUNTIME_PROVIDED, code);
    fn.handler = "function.handler";
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err); /* no runtime dir needed */
    CHECK(spec);
    char *const *argv = lv_spawn_spec_argv(spec);
    char *const *e = lv_spawn_spec_env(spec);
    CHECK_STR(argv[0], bootstrap);
    CHECK(argv[1] == NULL);
    CHECK_STR(env_get(e, "LAMBDA_RUNTIME_DIR"), "/var/runtime");
    CHECK_STR(env_get(e, "_HANDLER"), "function.handler");
    CHECK(env_get(e, "AWS_EXECUTION_ENV") == NULL);
    CHECK(env_get(e, "NODE_PATH") == NULL);
    CHECK(env_get(e, "PYTHONPATH") == NULL);
    CHECK_EQ(count_duplicates(e), 0);
    lv_spawn_spec_free(spec);
}

static void test_prepare_command(void)
{
    char *code = path_in("cmd-fn");
    make_dir(code);
    make_dir(path_in("cmd-fn/bin"));
    char *tool = path_in("cmd-fn/bin/mytool");
    write_file(tool, "#!/bin/sh\n", 0755);
    write_file(path_in("cmd-fn/run.sh"), "#!/bin/sh\n", 0755);
    char err[256];

    /* argv[0] from the function's PATH, which also reaches the worker */
    char path_env[PATH_MAX * 2];
    snprintf(path_env, sizeof path_env, "/nonexistent:%s/cmd-fn/bin:/usr/bin", scratch);
    lv_config_header_t env[] = {{"PATH", path_env}};
    char *cmd[] = {"mytool", "aws-lambda-ric", "index.handler"};
    lv_config_function_t fn = make_fn("ric", LV_RUNTIME_COMMAND, code);
    fn.command = cmd;
    fn.num_command = 3;
    fn.env = env;
    fn.num_env = 1;
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    char *const *argv = lv_spawn_spec_argv(spec);
    char *const *e = lv_spawn_spec_env(spec);
    CHECK_STR(argv[0], tool);
    CHECK_STR(argv[1], "aws-lambda-ric");
    CHECK_STR(argv[2], "index.handler");
    CHECK(argv[3] == NULL);
    CHECK_STR(env_get(e, "PATH"), path_env);
    CHECK_STR(env_get(e, "_HANDLER"), "index.handler"); /* the last argument, as RIE does */
    CHECK_STR(env_get(e, "LAMBDA_RUNTIME_DIR"), "/var/runtime");
    CHECK(env_get(e, "AWS_EXECUTION_ENV") == NULL);
    CHECK_EQ(count_duplicates(e), 0);
    lv_spawn_spec_free(spec);

    /* a relative PATH entry resolves against code, like the worker's cwd */
    env[0].value = "bin";
    char *one[] = {"mytool"};
    fn.command = one;
    fn.num_command = 1;
    fn.handler = "explicit.handler";
    spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    char expect[PATH_MAX * 8];
    snprintf(expect, sizeof expect, "%s/bin/mytool", code);
    CHECK_STR(lv_spawn_spec_argv(spec)[0], expect);
    CHECK_STR(env_get(lv_spawn_spec_env(spec), "_HANDLER"), "explicit.handler");
    lv_spawn_spec_free(spec);

    /* a path with '/' is taken relative to code, not looked up */
    char *rel[] = {"./run.sh", "x"};
    fn.command = rel;
    fn.num_command = 2;
    fn.num_env = 0;
    spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    snprintf(expect, sizeof expect, "%s/./run.sh", code);
    CHECK_STR(lv_spawn_spec_argv(spec)[0], expect);
    lv_spawn_spec_free(spec);

    /* the default PATH finds system commands */
    char *sys[] = {"true"};
    fn.command = sys;
    fn.num_command = 1;
    spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    CHECK(ends_with(lv_spawn_spec_argv(spec)[0], "/true"));
    lv_spawn_spec_free(spec);
}

static void test_prepare_path_override(void)
{
    char *code = path_in("node-override");
    make_dir(code);
    make_dir(path_in("fakebin"));
    char *fake_node = path_in("fakebin/node");
    write_file(fake_node, "#!/bin/sh\n", 0755);
    lv_config_header_t env[] = {{"PATH", path_in("fakebin")}};
    lv_config_function_t fn = make_fn("n", LV_RUNTIME_NODEJS, code);
    fn.handler = "index.handler";
    fn.env = env;
    fn.num_env = 1;
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, runtime_dir, err, sizeof err);
    CHECK(spec);
    CHECK_STR(lv_spawn_spec_argv(spec)[0], fake_node);
    CHECK_STR(env_get(lv_spawn_spec_env(spec), "PATH"), path_in("fakebin"));
    lv_spawn_spec_free(spec);

    /* a PATH without node is an error, even though the default has one */
    env[0].value = "/nonexistent";
    spec = lv_spawn_prepare(&fn, runtime_dir, err, sizeof err);
    CHECK(!spec);
    CHECK_STR(err, "runtime nodejs: node not found in PATH /nonexistent");
}

static void test_prepare_errors(void)
{
    char err[256];
    char expect[PATH_MAX * 8];

    lv_config_function_t fn = make_fn("f", LV_RUNTIME_PROVIDED, path_in("no-such-dir"));
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    snprintf(expect, sizeof expect, "code directory %s: No such file or directory", fn.code);
    CHECK_STR(err, expect);

    write_file(path_in("a-file"), "", 0644);
    fn.code = path_in("a-file");
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    snprintf(expect, sizeof expect, "code directory %s: Not a directory", fn.code);
    CHECK_STR(err, expect);

    /* provided: missing, not executable, a directory */
    char *code = path_in("bad-provided");
    make_dir(code);
    fn.code = code;
    snprintf(expect, sizeof expect, "no executable bootstrap in %s (Runtime.InvalidEntrypoint)", code);
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK_STR(err, expect);
    write_file(path_in("bad-provided/bootstrap"), "#!/bin/sh\n", 0644);
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK_STR(err, expect);
    unlink(path_in("bad-provided/bootstrap"));
    make_dir(path_in("bad-provided/bootstrap"));
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK_STR(err, expect);

    /* command: not found, empty, a relative path that is not there */
    char *missing[] = {"no-such-command-xyz", "arg"};
    fn.runtime = LV_RUNTIME_COMMAND;
    fn.command = missing;
    fn.num_command = 2;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK_STR(err, "command no-such-command-xyz: not found in PATH /usr/local/bin:/usr/bin:/bin:/opt/bin");
    char *empty[] = {""};
    fn.command = empty;
    fn.num_command = 1;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    fn.num_command = 0;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    fn.command = NULL;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK_STR(err, "runtime: command needs a non-empty command");
    char *rel[] = {"bin/tool"};
    fn.command = rel;
    fn.num_command = 1;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    snprintf(expect, sizeof expect, "command %s/bin/tool: no such file", code);
    CHECK_STR(err, expect);

    /* nodejs/python: no runtime directory, or one without the bootstrap */
    fn.runtime = LV_RUNTIME_NODEJS;
    fn.command = NULL;
    fn.num_command = 0;
    CHECK(!lv_spawn_prepare(&fn, NULL, err, sizeof err));
    CHECK(strstr(err, "runtime nodejs: no runtime directory"));
    make_dir(path_in("empty-runtimes"));
    fn.runtime = LV_RUNTIME_PYTHON;
    CHECK(!lv_spawn_prepare(&fn, path_in("empty-runtimes"), err, sizeof err));
    snprintf(expect, sizeof expect, "runtime python: %s/python/bootstrap.py is missing",
             path_in("empty-runtimes"));
    CHECK_STR(err, expect);

    /* no place for a message, no function */
    CHECK(!lv_spawn_prepare(&fn, NULL, NULL, 0));
    CHECK(!lv_spawn_prepare(NULL, NULL, err, sizeof err));
    lv_spawn_spec_free(NULL);
}

static void test_credentials_and_region(void)
{
    char *code = path_in("cred-fn");
    make_dir(code);
    lv_config_function_t fn = make_fn("creds", LV_RUNTIME_COMMAND, code);
    char *cmd[] = {"true"};
    fn.command = cmd;
    fn.num_command = 1;
    char err[256];

    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    setenv("AWS_DEFAULT_REGION", "eu-central-1", 1);
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK(spec);
    char *const *e = lv_spawn_spec_env(spec);
    CHECK_STR(env_get(e, "AWS_ACCESS_KEY_ID"), "AKIDEXAMPLE");
    CHECK_STR(env_get(e, "AWS_SECRET_ACCESS_KEY"), "secret");
    CHECK(env_get(e, "AWS_SESSION_TOKEN") == NULL); /* levee has none: no placeholder beside real keys */
    CHECK_STR(env_get(e, "AWS_REGION"), "eu-central-1");
    CHECK_STR(env_get(e, "AWS_DEFAULT_REGION"), "eu-central-1");
    lv_spawn_spec_free(spec);

    setenv("AWS_REGION", "ap-south-1", 1);
    spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    CHECK(spec);
    e = lv_spawn_spec_env(spec);
    CHECK_STR(env_get(e, "AWS_REGION"), "ap-south-1");
    CHECK_STR(env_get(e, "AWS_DEFAULT_REGION"), "ap-south-1");
    CHECK_STR(env_get(e, "AWS_SESSION_TOKEN"), "levee");
    lv_spawn_spec_free(spec);
}

static void test_find_runtime_dir(void)
{
    char *full = path_in("rt-full");
    make_dir(full);
    make_dir(path_in("rt-full/python"));
    write_file(path_in("rt-full/python/bootstrap.py"), "", 0644);
    make_dir(path_in("rt-empty"));

    char *found = lv_spawn_find_runtime_dir(full);
    CHECK_STR(found, full);
    free(found);
    CHECK(lv_spawn_find_runtime_dir(path_in("rt-empty")) == NULL); /* explicit and wrong: no fallback */
    CHECK(lv_spawn_find_runtime_dir(path_in("rt-missing")) == NULL);

    setenv("LEVEE_RUNTIME_DIR", runtime_dir, 1);
    found = lv_spawn_find_runtime_dir(NULL);
    CHECK_STR(found, runtime_dir);
    free(found);
    setenv("LEVEE_RUNTIME_DIR", path_in("rt-empty"), 1);
    CHECK(lv_spawn_find_runtime_dir(NULL) == NULL);
    unsetenv("LEVEE_RUNTIME_DIR");

    /* next to the executable (this test binary), then in its parent */
    char exe_dir[PATH_MAX], rt[PATH_MAX + 32], sub[PATH_MAX + 64], file[PATH_MAX + 96];
    CHECK(realpath("/proc/self/exe", exe_dir));
    *strrchr(exe_dir, '/') = '\0';
    snprintf(rt, sizeof rt, "%s/runtimes", exe_dir);
    snprintf(sub, sizeof sub, "%s/nodejs", rt);
    snprintf(file, sizeof file, "%s/bootstrap.js", sub);
    CHECK(mkdir(rt, 0755) == 0);
    mkdir(sub, 0755);
    write_file(file, "", 0644);
    found = lv_spawn_find_runtime_dir(NULL);
    unlink(file);
    rmdir(sub);
    rmdir(rt);
    CHECK_STR(found, rt);
    free(found);
}

/* ---- spawning ---- */

static lv_spawner_t *spawner;

/* Reads fd (non-blocking) until EOF into out. */
static size_t read_all(int fd, char *out, size_t cap)
{
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = read(fd, out + len, cap - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            if (len == cap - 1)
                break;
        } else if (n == 0 || errno != EAGAIN) {
            break;
        }
    }
    out[len] = '\0';
    return len;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static void read_proc(pid_t pid, const char *what, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void test_spawn_provided_child(void)
{
    char *code = path_in("live-fn");
    make_dir(code);
    char *bootstrap = path_in("live-fn/bootstrap");
    write_file(bootstrap,
               "#!/bin/sh\n"
               "sleep 0.2\n"
               "echo \"cwd=$(pwd)\"\n"
               "read line; echo \"stdin=$?\"\n"
               "echo to-stderr >&2\n"
               "env\n"
               "exit 3\n",
               0755);
    lv_config_function_t fn = make_fn("live", LV_RUNTIME_PROVIDED, code);
    fn.handler = "function.handler";
    fn.memory_mb = 200;
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);

    /* levee's state the child must not get: a descriptor without
     * close-on-exec, a variable. */
    int leak_fd = open("/dev/null", O_RDONLY);
    setenv("LEVEE_ONLY_VARIABLE", "1", 1);

    lv_loop_t *loop = lv_loop_new(0);
    int marker;
    uint64_t before = lv_clock_ns();
    lv_spawner_spawn(spawner, spec, 9123, true, loop, on_spawned, &marker);
    lv_spawn_spec_free(spec); /* the spawner copied what it needs */
    wait_results(loop, 1);
    lv_loop_free(loop);
    close(leak_fd);
    unsetenv("LEVEE_ONLY_VARIABLE");
    CHECK_EQ(num_results, 1);
    CHECK(!delivered_off_loop);
    lv_spawn_result_t *r = results[0];
    CHECK_EQ(r->err, 0);
    CHECK_STR(r->message, "");
    CHECK(r->arg == &marker);
    CHECK_INT(r->pid, >, 0);
    CHECK_INT(r->pidfd, >, 2);
    CHECK_INT(r->out_fd, >, 2);
    CHECK_INT(r->started_ns, >=, before);
    CHECK_INT(r->spawn_ns, >, 0);
    CHECK(fcntl(r->out_fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(r->out_fd, F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(r->pidfd, F_GETFD) & FD_CLOEXEC);

    /* While it sleeps: its process group, memory limit, descriptors. */
    char text[8192];
    read_proc(r->pid, "stat", text, sizeof text);
    char *after_comm = strrchr(text, ')');
    CHECK(after_comm);
    int pgrp = 0;
    CHECK_EQ(sscanf(after_comm + 1, " %*c %*d %d", &pgrp), 1);
    CHECK_EQ(pgrp, r->pid);

    read_proc(r->pid, "limits", text, sizeof text);
    char *data_line = strstr(text, "Max data size");
    CHECK(data_line);
    unsigned long long soft = 0, hard = 0;
    CHECK_EQ(sscanf(data_line, "Max data size %llu %llu", &soft, &hard), 2);
    CHECK_EQ(soft, 200ull << 20);
    CHECK_EQ(hard, 200ull << 20);

    /* Descriptors: 0 is /dev/null, 1 and 2 our pipe; the shell may hold its
     * own script open; nothing else (leak_fd included). */
    struct stat pipe_st;
    CHECK(fstat(r->out_fd, &pipe_st) == 0);
    char pipe_link[64];
    snprintf(pipe_link, sizeof pipe_link, "pipe:[%llu]", (unsigned long long)pipe_st.st_ino);
    char fd_dir[64];
    snprintf(fd_dir, sizeof fd_dir, "/proc/%d/fd", (int)r->pid);
    DIR *d = opendir(fd_dir);
    CHECK(d);
    int seen = 0, strangers = 0;
    for (struct dirent *ent; (ent = readdir(d));) {
        if (ent->d_name[0] == '.')
            continue;
        char link_path[384], target[PATH_MAX];
        snprintf(link_path, sizeof link_path, "%s/%s", fd_dir, ent->d_name);
        ssize_t n = readlink(link_path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        int fd = atoi(ent->d_name);
        if (fd == 0 && strcmp(target, "/dev/null") == 0)
            seen |= 1;
        else if ((fd == 1 || fd == 2) && strcmp(target, pipe_link) == 0)
            seen |= 1 << fd;
        else if (fd > 2 && strcmp(target, bootstrap) == 0)
            ; /* dash reading its script */
        else {
            fprintf(stderr, "    child fd %d -> %s\n", fd, target);
            strangers++;
        }
    }
    closedir(d);
    CHECK_EQ(seen, 7);
    CHECK_EQ(strangers, 0);

    /* Its output, until EOF: environment, cwd, stdin at EOF, stderr too. */
    static char out[65536];
    read_all(r->out_fd, out, sizeof out);
    char expect[PATH_MAX * 8];
    snprintf(expect, sizeof expect, "cwd=%s", code);
    CHECK(has_line(out, expect));
    CHECK(has_line(out, "stdin=1"));
    CHECK(has_line(out, "to-stderr"));
    CHECK(has_line(out, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9123"));
    CHECK(has_line(out, "AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency"));
    CHECK(has_line(out, "AWS_LAMBDA_FUNCTION_NAME=live"));
    CHECK(has_line(out, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=200"));
    CHECK(has_line(out, "_HANDLER=function.handler"));
    snprintf(expect, sizeof expect, "LAMBDA_TASK_ROOT=%s", code);
    CHECK(has_line(out, expect));
    char *stream = strstr(out, "AWS_LAMBDA_LOG_STREAM_NAME=");
    CHECK(stream);
    char stream_value[128];
    CHECK_EQ(sscanf(stream + strlen("AWS_LAMBDA_LOG_STREAM_NAME="), "%127s", stream_value), 1);
    CHECK(is_log_stream(stream_value));
    CHECK(!strstr(out, "LEVEE_ONLY_VARIABLE"));

    /* The pidfd turns readable on exit; waitpid has the status. */
    struct pollfd p = {.fd = r->pidfd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 5000), 1);
    int status = 0;
    CHECK_EQ(waitpid(r->pid, &status, 0), r->pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 3);
    r->pid = -1; /* reaped */
}

/* The child's signal state, and a kill of its process group reaching a
 * process it started. The shell is not asked about its own signal mask
 * (dash blocks everything while it forks and waits); sleep is. */
static void test_spawn_signals_and_group(void)
{
    char *code = path_in("group-fn");
    make_dir(code);
    char *cmd[] = {"sh", "-c", "sleep 30 & echo $!; exec sleep 30"};
    lv_config_function_t fn = make_fn("group", LV_RUNTIME_COMMAND, code);
    fn.command = cmd;
    fn.num_command = 3;
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);

    signal(SIGPIPE, SIG_IGN); /* as main.c does */
    lv_loop_t *loop = lv_loop_new(0);
    lv_spawner_spawn(spawner, spec, 1, false, loop, on_spawned, NULL);
    wait_results(loop, 1);
    lv_loop_free(loop);
    signal(SIGPIPE, SIG_DFL);
    lv_spawn_spec_free(spec);
    CHECK_EQ(num_results, 1);
    lv_spawn_result_t *r = results[0];
    CHECK_EQ(r->err, 0);

    /* the background sleep's pid, printed by the shell before its exec */
    char line[64] = "";
    struct pollfd p = {.fd = r->out_fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 5000), 1);
    CHECK_INT(read(r->out_fd, line, sizeof line - 1), >, 0);
    pid_t grandchild = (pid_t)atoi(line);
    CHECK_INT(grandchild, >, 0);

    /* after the exec, the worker is sleep itself */
    char text[4096] = "";
    for (int tries = 0; tries < 500 && !strstr(text, "Name:\tsleep"); tries++) {
        usleep(2000);
        read_proc(r->pid, "status", text, sizeof text);
    }
    unsigned long long blocked = ~0ull, ignored = ~0ull;
    char *at = strstr(text, "SigBlk:");
    CHECK(at && sscanf(at, "SigBlk: %llx", &blocked) == 1);
    at = strstr(text, "SigIgn:");
    CHECK(at && sscanf(at, "SigIgn: %llx", &ignored) == 1);
    CHECK_EQ(blocked, 0); /* the spawner thread blocks every signal */
    /* the test ignored SIGPIPE; none of the standard signals may stay
     * ignored (glibc's posix_spawn itself ignores its internal 32 and 33) */
    CHECK_EQ(ignored & 0x7fffffffull, 0);

    CHECK_EQ(kill(-r->pid, SIGKILL), 0);
    CHECK_EQ(poll(&(struct pollfd){.fd = r->pidfd, .events = POLLIN}, 1, 5000), 1);
    int status = 0;
    CHECK_EQ(waitpid(r->pid, &status, 0), r->pid);
    r->pid = -1;
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* the grandchild died too (it may linger as a zombie until init reaps it) */
    bool gone = false;
    for (int tries = 0; tries < 500 && !gone; tries++) {
        read_proc(grandchild, "stat", text, sizeof text);
        char *state = strrchr(text, ')');
        gone = !state || state[2] == 'Z' || state[2] == 'X';
        if (!gone)
            usleep(2000);
    }
    CHECK(gone);
}

/* Real node and python3 start under the default memory limit (128 MiB of
 * RLIMIT_DATA) with levee's environment and run a stand-in bootstrap. */
static void test_spawn_real_interpreters(void)
{
    char *rt = path_in("rt-real");
    make_dir(rt);
    make_dir(path_in("rt-real/nodejs"));
    make_dir(path_in("rt-real/python"));
    write_file(path_in("rt-real/nodejs/bootstrap.js"),
               "console.log(process.env.AWS_EXECUTION_ENV + ' ' + process.cwd() + ' ' +"
               " process.env._HANDLER);\n",
               0644);
    write_file(path_in("rt-real/python/bootstrap.py"),
               "import os, sys\n"
               "print(os.environ['AWS_EXECUTION_ENV'], os.getcwd(), os.environ['_HANDLER'],"
               " os.environ['PYTHONPATH'] in sys.path)\n",
               0644);
    char *code = path_in("real-fn");
    make_dir(code);
    lv_runtime_kind_t kinds[] = {LV_RUNTIME_NODEJS, LV_RUNTIME_PYTHON};
    const char *expect_fmt[] = {
        "AWS_Lambda_nodejs20.x %s index.handler\n",
        "AWS_Lambda_python3.11 %s index.handler True\n",
    };
    for (size_t k = 0; k < 2; k++) {
        lv_config_function_t fn = make_fn("real", kinds[k], code);
        fn.handler = "index.handler";
        fn.memory_mb = 128;
        char err[256];
        lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, rt, err, sizeof err);
        if (!spec) {
            printf("skipped %s: %s\n", k ? "python" : "nodejs", err);
            continue;
        }
        lv_loop_t *loop = lv_loop_new(0);
        lv_spawner_spawn(spawner, spec, 1, false, loop, on_spawned, NULL);
        lv_spawn_spec_free(spec);
        wait_results(loop, 1);
        lv_loop_free(loop);
        CHECK_EQ(num_results, 1);
        lv_spawn_result_t *r = results[0];
        CHECK_EQ(r->err, 0);
        static char out[4096];
        read_all(r->out_fd, out, sizeof out);
        char expect[PATH_MAX * 8];
        snprintf(expect, sizeof expect, expect_fmt[k], code);
        CHECK_STR(out, expect);
        int status = -1;
        reap(r, &status);
        r->pid = -1;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        free_results();
    }
}

static void test_spawn_failures(void)
{
    char *code = path_in("vanishing-fn");
    make_dir(code);
    char *bootstrap = path_in("vanishing-fn/bootstrap");
    write_file(bootstrap, "#!/bin/sh\n", 0755);
    lv_config_function_t fn = make_fn("vanishing", LV_RUNTIME_PROVIDED, code);
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    int fds_before = count_open_fds();

    lv_loop_t *loop = lv_loop_new(0);
    unlink(bootstrap); /* gone between prepare and spawn */
    lv_spawner_spawn(spawner, spec, 1, false, loop, on_spawned, NULL);
    wait_results(loop, 1);
    lv_loop_free(loop);
    write_file(bootstrap, "#!/bin/sh\n", 0644); /* there, but not executable */
    loop = lv_loop_new(0);
    lv_spawner_spawn(spawner, spec, 1, false, loop, on_spawned, NULL);
    wait_results(loop, 2);
    lv_loop_free(loop);
    lv_spawn_spec_free(spec);

    CHECK_EQ(num_results, 2);
    CHECK_EQ(results[0]->err, ENOENT);
    CHECK_STR(results[0]->message, "spawn vanishing: No such file or directory");
    CHECK_EQ(results[0]->pid, -1);
    CHECK_EQ(results[0]->pidfd, -1);
    CHECK_EQ(results[0]->out_fd, -1);
    CHECK_EQ(results[1]->err, EACCES);
    CHECK_STR(results[1]->message, "spawn vanishing: Permission denied");
    CHECK_EQ(results[1]->pid, -1);
    free_results();
    CHECK_EQ(count_open_fds(), fds_before); /* no pipe left behind */
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Spawns n copies of command (argv[0] looked up in PATH) and prints the
 * median and maximum spawn_ns. Back to back, all n are queued at once, as
 * when a pool scales up, and the spawner competes for the two cores with
 * the children it already started; one at a time, each child is reaped
 * before the next is queued, which shows the cost of a spawn alone. */
static bool spawn_many(const char *label, char **command, size_t argc, size_t n, bool one_at_a_time)
{
    char *code = path_in("bench-fn");
    make_dir(code);
    lv_config_function_t fn = make_fn("bench", LV_RUNTIME_COMMAND, code);
    fn.command = command;
    fn.num_command = argc;
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    if (!spec)
        return false;
    uint64_t ns[MAX_RESULTS];
    bool ok = true;
    for (size_t done = 0; done < n;) {
        size_t batch = one_at_a_time ? 1 : n;
        lv_loop_t *loop = lv_loop_new(0);
        for (size_t i = 0; i < batch; i++)
            lv_spawner_spawn(spawner, spec, (uint16_t)(10000 + i), false, loop, on_spawned, (void *)i);
        wait_results(loop, batch);
        lv_loop_free(loop);
        ok = ok && num_results == batch;
        for (size_t i = 0; i < num_results; i++) {
            lv_spawn_result_t *r = results[i];
            ok = ok && r->err == 0 && r->pid > 0 && r->spawn_ns > 0 && r->arg == (void *)i;
            ns[done + i] = r->spawn_ns;
            int status = -1;
            reap(r, &status);
            ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
            r->pid = -1;
        }
        free_results();
        done += batch;
    }
    lv_spawn_spec_free(spec);
    if (ok) {
        qsort(ns, n, sizeof ns[0], compare_u64);
        printf("spawn_ns, %zu spawns of %s, %s: median %.1f us, max %.1f us\n", n, label,
               one_at_a_time ? "one at a time" : "back to back", (double)ns[n / 2] / 1000.0,
               (double)ns[n - 1] / 1000.0);
    }
    return ok;
}

static void test_spawn_fifty(void)
{
    int fds_before = count_open_fds();
    char *cmd[] = {"true"};
    CHECK(spawn_many("/usr/bin/true", cmd, 1, 50, false));
    CHECK(spawn_many("/usr/bin/true", cmd, 1, 50, true));
    char *sh[] = {"sh", "-c", ":"};
    CHECK(spawn_many("/bin/sh -c :", sh, 3, 50, false));
    CHECK(spawn_many("/bin/sh -c :", sh, 3, 50, true));
    if (access("/usr/bin/node", X_OK) == 0) {
        char *node[] = {"node", "-e", "0"};
        CHECK(spawn_many("node -e 0", node, 3, 20, false));
        CHECK(spawn_many("node -e 0", node, 3, 20, true));
    }
    CHECK_EQ(count_open_fds(), fds_before);
}

static void test_free_runs_the_queue(void)
{
    /* Spawns queued before lv_spawner_free still run and are posted. */
    lv_spawner_t *sp = lv_spawner_new();
    CHECK(sp);
    char *code = path_in("queued-fn");
    make_dir(code);
    lv_config_function_t fn = make_fn("queued", LV_RUNTIME_COMMAND, code);
    char *cmd[] = {"true"};
    fn.command = cmd;
    fn.num_command = 1;
    char err[256];
    lv_spawn_spec_t *spec = lv_spawn_prepare(&fn, NULL, err, sizeof err);
    CHECK(spec);
    lv_loop_t *loop = lv_loop_new(0);
    for (int i = 0; i < 5; i++)
        lv_spawner_spawn(sp, spec, 1, false, loop, on_spawned, NULL);
    lv_spawn_spec_free(spec);
    lv_spawner_free(sp);
    wait_results(loop, 5);
    lv_loop_free(loop);
    CHECK_EQ(num_results, 5);
    for (size_t i = 0; i < num_results; i++)
        CHECK_EQ(results[i]->err, 0);
    free_results();

    lv_spawner_free(lv_spawner_new()); /* nothing queued */
    lv_spawner_free(NULL);
}

int main(void)
{
    lv_log_set_level(LV_LOG_ERROR);
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("LEVEE_RUNTIME_DIR");

    char tmpl[] = "/tmp/lv-spawn-test-XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, scratch)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(runtime_dir, sizeof runtime_dir, "%s/runtimes", scratch);
    make_dir(runtime_dir);
    make_dir(path_in("runtimes/nodejs"));
    make_dir(path_in("runtimes/python"));
    write_file(path_in("runtimes/nodejs/bootstrap.js"), "", 0644);
    write_file(path_in("runtimes/python/bootstrap.py"), "", 0644);

    spawner = lv_spawner_new();
    if (!spawner) {
        perror("lv_spawner_new");
        return 1;
    }

    LV_RUN(test_prepare_nodejs);
    LV_RUN(test_prepare_python);
    LV_RUN(test_prepare_provided);
    LV_RUN(test_prepare_command);
    LV_RUN(test_prepare_path_override);
    LV_RUN(test_prepare_errors);
    LV_RUN(test_credentials_and_region);
    LV_RUN(test_find_runtime_dir);
    LV_RUN(test_spawn_provided_child);
    free_results();
    LV_RUN(test_spawn_signals_and_group);
    free_results();
    LV_RUN(test_spawn_real_interpreters);
    free_results();
    LV_RUN(test_spawn_failures);
    free_results();
    LV_RUN(test_spawn_fifty);
    LV_RUN(test_free_runs_the_queue);
    free_results();

    lv_spawner_free(spawner);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", scratch);
    return lv_test_summary();
}
