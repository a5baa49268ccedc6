#!/bin/bash
# profile.sh WORKLOAD [SECONDS]: where levee's CPU goes on one benchmark
# workload, from `perf record` (cpu-clock sampling, call graphs) on the
# levee process while wrk drives it. Separate from run.sh because sampling
# costs CPU and would skew the per-request numbers measured there.
#
# WORKLOAD is one of: fixed, redirect, cache, fixed-pipe, redirect-pipe.
# Starts its own levee (bench/configs/levee.yaml, CPU 0) and, for `cache`,
# the shared slow_origin.py; prints the top of `perf report` and leaves the
# full data in /tmp/levee-perf.data. Needs perf (linux-perf).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd)}
LEVEE=${LEVEE:-$ROOT/levee}
workload=${1:-}; secs=${2:-10}
case "$workload" in
  fixed) path=/fixed; args=() ;;
  redirect) path=/r/tv-ad-2026; args=() ;;
  cache) path=/events/list; args=() ;;
  fixed-pipe) path=/fixed; args=(-s "$SHARED/pipeline.lua") ;;
  redirect-pipe) path=/r/tv-ad-2026; args=(-s "$SHARED/pipeline.lua") ;;
  *) echo "usage: bench/profile.sh fixed|redirect|cache|fixed-pipe|redirect-pipe [SECONDS]" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "profile.sh: perf is not installed" >&2; exit 1; }
pids=()
# shellcheck disable=SC2154
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
if [ "$workload" = cache ]; then
    taskset -c 1 /usr/bin/python3 "$SHARED/slow_origin.py" 9100 & pids+=("$!")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9100) 2>/dev/null && break; sleep 0.05; done
fi
taskset -c 0 "$LEVEE" serve -c bench/configs/levee.yaml & lv=$!; pids+=("$lv")
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9002) 2>/dev/null && break; sleep 0.05; done
url=http://127.0.0.1:9002$path
curl -s -o /dev/null "$url"
taskset -c 1 wrk -t1 -c64 -d1s "${args[@]}" "$url" >/dev/null
taskset -c 1 wrk -t1 -c64 -d$((secs + 2))s "${args[@]}" "$url" >/tmp/levee-perf.wrk &
wrk_pid=$!
sleep 1
perf record -q -e cpu-clock -g -p "$lv" -o /tmp/levee-perf.data -- sleep "$secs" 2>/dev/null
wait $wrk_pid
grep -E 'Requests/sec|requests in' /tmp/levee-perf.wrk
echo "--- by symbol (self time) ---"
perf report -i /tmp/levee-perf.data --stdio --no-children --sort symbol -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
perf report -i /tmp/levee-perf.data --stdio --no-children --sort symbol -g none 2>/dev/null |
    awk '$1 ~ /%$/ { p = $1 + 0; if ($2 == "[k]") k += p; else u += p }
         END { printf "--- kernel %.1f%%, user space %.1f%% ---\n", k, u }'
