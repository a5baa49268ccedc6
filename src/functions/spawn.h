/* spawn.h: starting worker processes, off the event loops.
 *
 * A spawner is one thread that runs posix_spawn for the pools: starting a
 * process from a large multi-threaded server costs time the loops must not
 * lose, so requests are queued to the thread and each result is posted back
 * to the loop that asked.
 *
 * What a worker gets (the environment a Lambda runtime receives):
 *   - argv from the runtime: nodejs -> node RUNTIME_DIR/nodejs/bootstrap.js,
 *     python -> python3 RUNTIME_DIR/python/bootstrap.py, provided -> CODE/bootstrap,
 *     command -> the configured argv. argv[0] without a '/' is looked up in
 *     the worker's PATH when the command is built.
 *   - cwd = the function's `code`.
 *   - environment: AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT, _HANDLER,
 *     LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, AWS_LAMBDA_FUNCTION_NAME,
 *     AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_FUNCTION_VERSION=$LATEST,
 *     AWS_LAMBDA_INITIALIZATION_TYPE, AWS_LAMBDA_LOG_GROUP_NAME,
 *     AWS_LAMBDA_LOG_STREAM_NAME, AWS_REGION and AWS_DEFAULT_REGION (levee's
 *     AWS_REGION, else us-east-1), AWS_EXECUTION_ENV (nodejs/python only),
 *     placeholder AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
 *     TZ=UTC, LANG=en_US.UTF-8, PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin,
 *     LD_LIBRARY_PATH, NODE_PATH / PYTHONPATH as Lambda sets them, HOME=/tmp
 *     (npx needs one), then the function's `env:` (which may override the
 *     unreserved ones, PATH included, but not the reserved ones: a reserved
 *     name there is ignored with a warning). AWS_LAMBDA_LOG_STREAM_NAME is
 *     new for every process, as each Lambda execution environment has its
 *     own stream. LAMBDA_RUNTIME_DIR is RUNTIME_DIR/nodejs or /python, and
 *     /var/runtime (as in Lambda) for provided and command.
 *   - stdin from /dev/null; stdout and stderr into one pipe whose read end
 *     goes back to the pool (non-blocking, close-on-exec).
 *   - its own process group (pgid = pid), so a timeout kills npx and the
 *     node it started together.
 *   - memory: RLIMIT_DATA = memory_mb (RLIMIT_AS would stop V8 from
 *     reserving its address space; RLIMIT_DATA counts only memory actually
 *     made writable, so it bounds the heap of node and python alike). It is
 *     set with prlimit right after exec, so the program's first microseconds
 *     run without it.
 *   - no file descriptor of levee's: everything else is close-on-exec, and
 *     the child closes every descriptor above 2 before exec anyway.
 *   - every signal at its default action and none blocked.
 *
 * Ownership: a result is heap-allocated and belongs to the callback, which
 * frees it with lv_spawn_result_free (closing any fd it did not take).
 * The process is levee's child: whoever holds the result reaps it
 * (waitpid(pid) or waitid(P_PIDFD)) once the pidfd is readable, so levee
 * must never set SIGCHLD to SIG_IGN, which would reap it first. */
#ifndef LV_FUNCTIONS_SPAWN_H
#define LV_FUNCTIONS_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "core/loop.h"

typedef struct lv_spawner lv_spawner_t;

/* What to start: built on the caller's thread (lv_spawn_prepare), copied. */
typedef struct lv_spawn_spec lv_spawn_spec_t;

typedef struct {
    int err;            /* 0, or the errno of the failure (then pid is -1) */
    char message[256];  /* what failed, for the log and the caller's error */
    pid_t pid;          /* also the process group id */
    int pidfd;          /* readable once the process has exited; -1 if unset */
    int out_fd;         /* read end of the stdout+stderr pipe, non-blocking; -1 if unset */
    uint64_t spawn_ns;  /* how long posix_spawn took: levee's share of a cold start */
    uint64_t started_ns;/* lv_clock_ns() just before posix_spawn */
    void *arg;          /* as given to lv_spawner_spawn */
} lv_spawn_result_t;

/* Runs on the loop given to lv_spawner_spawn. */
typedef void (*lv_spawn_cb)(lv_loop_t *loop, lv_spawn_result_t *result);

/* Finds the directory with levee's bootstraps (nodejs/bootstrap.js and
 * python/bootstrap.py): `configured` if not NULL, else $LEVEE_RUNTIME_DIR,
 * else "runtimes" next to the levee executable or in its parent directory.
 * Returns a malloc'd absolute path, or NULL. */
char *lv_spawn_find_runtime_dir(const char *configured);

/* Builds the argv and environment for one function. `runtime_dir` may be
 * NULL unless the runtime is nodejs or python. Returns NULL with a message
 * in err when the command cannot be run (no executable bootstrap in code,
 * argv[0] not found in PATH, code not a directory, the runtime directory
 * or its bootstrap missing). Reads levee's environment (AWS_REGION,
 * credentials), so it belongs to startup, not beside a setenv. */
lv_spawn_spec_t *lv_spawn_prepare(const lv_config_function_t *fn, const char *runtime_dir, char *err,
                                  size_t errlen);
void lv_spawn_spec_free(lv_spawn_spec_t *spec);

/* The spec's argv (NULL-terminated) and environment ("NAME=value",
 * NULL-terminated), for tests and logs. The entries filled per spawn
 * (AWS_LAMBDA_RUNTIME_API, _INITIALIZATION_TYPE, _LOG_STREAM_NAME) hold
 * example values here: port 0, on-demand. Valid while the spec lives. */
char *const *lv_spawn_spec_argv(const lv_spawn_spec_t *spec);
char *const *lv_spawn_spec_env(const lv_spawn_spec_t *spec);

/* Starts the spawner thread. NULL (errno set) if the thread cannot start. */
lv_spawner_t *lv_spawner_new(void);

/* Stops the thread after the queued spawns (their results are still
 * posted) and frees it. Waits for those spawns; no lv_spawner_spawn may
 * run concurrently or afterwards. */
void lv_spawner_free(lv_spawner_t *sp);

/* Queues one start of spec (which must outlive the call only; what is
 * needed is copied) with AWS_LAMBDA_RUNTIME_API=127.0.0.1:port and
 * AWS_LAMBDA_INITIALIZATION_TYPE = provisioned ? "provisioned-concurrency" :
 * "on-demand". cb(loop, result) runs on `loop` when it is done. Any thread. */
void lv_spawner_spawn(lv_spawner_t *sp, const lv_spawn_spec_t *spec, uint16_t port, bool provisioned,
                      lv_loop_t *loop, lv_spawn_cb cb, void *arg);

/* Closes what the result still holds (pidfd, out_fd when >= 0) and frees it. */
void lv_spawn_result_free(lv_spawn_result_t *r);

#endif
