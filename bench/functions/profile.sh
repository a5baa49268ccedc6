#!/bin/bash
# profile.sh [WARM] [SECONDS]: where levee's own CPU goes while it serves the
# functions benchmark (trivial Node handler, route ANY /hello, warm = max =
# WARM, default 2), from `perf record -e cpu-clock -g` on the levee process
# only (its workers are not sampled) while wrk -c16 drives it. Kept out of
# run.sh because sampling adds CPU to the process being measured.
#
# Prints the top symbols by self time, levee's kernel vs user share and the
# system calls it made per invocation (from `perf stat`, a second run), and
# leaves the data in /tmp/levee-fn-perf.data. Ports 9310-9312 must be free.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
LEVEE=${LEVEE:-$ROOT/levee}
warm=${1:-2}; secs=${2:-8}
command -v perf >/dev/null || { echo "profile.sh: perf is not installed" >&2; exit 1; }
tmp=$(mktemp -d /tmp/levee-fnprof.XXXX)
pids=()
# shellcheck disable=SC2154
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"' EXIT
cat >"$tmp/levee.yaml" <<EOF
listen: 127.0.0.1:9310
threads: 1
admin: { listen: 127.0.0.1:9311 }
api: { listen: 127.0.0.1:9312 }
data_dir: $tmp/data
runtime_dir: $ROOT/runtimes
log_level: warn
functions:
  hello:
    runtime: nodejs
    handler: index.handler
    code: $ROOT/bench/functions/app
    concurrency: { max: $warm, warm: $warm }
routes:
  - match: ANY /hello
    function: hello
EOF
taskset -c 0 "$LEVEE" serve -c "$tmp/levee.yaml" >"$tmp/levee.log" 2>&1 & lv=$!; pids+=("$lv")
/usr/bin/python3 bench/functions/fnbench.py wait --admin 127.0.0.1:9311 --function hello --want "$warm" --timeout 30 ||
    { cat "$tmp/levee.log" >&2; exit 1; }
url=http://127.0.0.1:9310/hello
taskset -c 1 wrk -t1 -c16 -d2s "$url" >/dev/null

invocations() { curl -s 127.0.0.1:9311/metrics | awk '/^levee_function_invocations_total\{function="hello"\}/ { print $2 }'; }
taskset -c 1 wrk -t1 -c16 -d$((secs + 2))s "$url" >"$tmp/wrk.out" &
wrk_pid=$!
sleep 1
perf record -q -e cpu-clock -g -p "$lv" -o /tmp/levee-fn-perf.data -- sleep "$secs" 2>/dev/null
wait $wrk_pid
grep -E 'Requests/sec|requests in' "$tmp/wrk.out"
echo "--- levee by symbol (self time) ---"
perf report -i /tmp/levee-fn-perf.data --stdio --no-children --sort symbol -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -40
perf report -i /tmp/levee-fn-perf.data --stdio --no-children --sort symbol -g none 2>/dev/null |
    awk '$1 ~ /%$/ { p = $1 + 0; if ($2 == "[k]") k += p; else u += p }
         END { printf "--- levee: kernel %.1f%%, user space %.1f%% ---\n", k, u }'

# System calls per invocation: perf stat over a window of a second wrk run,
# the invocations counted from /metrics at the window's two ends.
taskset -c 1 wrk -t1 -c16 -d$((secs + 2))s "$url" >/dev/null &
wrk_pid=$!
sleep 1
n0=$(invocations)
workers=$(pgrep -d, -P "$lv")
perf stat -e 'raw_syscalls:sys_enter,context-switches,task-clock' -p "$lv" -o "$tmp/stat.out" -- sleep "$secs" 2>/dev/null &
stat_pid=$!
perf stat -e 'raw_syscalls:sys_enter,context-switches,task-clock' -p "$workers" -o "$tmp/stat-workers.out" -- sleep "$secs" 2>/dev/null
wait $stat_pid
n1=$(invocations)
wait $wrk_pid
for who in levee workers; do
    f=$tmp/stat.out; [ $who = workers ] && f=$tmp/stat-workers.out
    awk -v n=$((n1 - n0)) -v who=$who '/raw_syscalls:sys_enter|context-switches|task-clock/ {
        gsub(",", "", $1); v = $1 / n; u = $2
        if (u == "msec") { v *= 1000; u = "us of CPU (task-clock)" }
        printf "--- %s: %.2f %s per invocation (%d invocations)\n", who, v, u, n }' "$f"
done
