#!/bin/bash
# run.sh: levee side by side with nginx and the do-nothing ceiling, using the
# method in ../shared/bench (README.md there): every server pinned to CPU 0,
# every client on CPU 1, the server's own CPU time per request read from
# /proc before and after each wrk run (shared cpu_per_req.sh), each levee
# figure reported as a ratio to its peer measured in the same run.
#
# Benchmarks, in order (ONLY=a,b,... runs a subset):
#   fixed     ceiling, nginx `return 200`, levee `respond`, levee redirect hit
#   cache     10 s micro-cache hit: nginx (shared nginx-microcache.sh) vs levee,
#             both in front of the shared slow_origin.py
#   pipeline  the same fixed answers, HTTP/1.1 pipelined x16 (shared pipeline.lua)
#   coalesce  1,000 concurrent requests for one cold key: origin requests seen
#             by counting_origin.py, through levee and through nginx
#   memory    RSS growth per idle keep-alive connection, 10,000 of them,
#             levee and (for reference) nginx
#   table     a 1-million-row redirect table: `levee check` time, startup,
#             memory, and CPU per random lookup under wrk
#
# Prints a table and writes bench/results/DATE-DESC.md (machine, commands,
# raw numbers, ratios, targets). Knobs, all environment variables:
#   DESC (full)  DURATION (10s)  WARMUP (1s)  REPEAT (1: interleaved runs per
#   workload, the median is reported)  CONNS (64)  DEPTH (16)
#   COALESCE_N (1000)  IDLE_CONNS (10000)  TABLE_ROWS (1000000)
#   LEVEE (./levee)  SHARED (../shared/bench)  OUT (results file)
# Ports used (must be free): 9000-9004, 9010, 9100, 9101, 9902.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BENCH=$ROOT/bench
SHARED=${SHARED:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd)}
LEVEE=${LEVEE:-$ROOT/levee}
DESC=${DESC:-full}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
REPEAT=${REPEAT:-1}
CONNS=${CONNS:-64}
export DEPTH=${DEPTH:-16}
COALESCE_N=${COALESCE_N:-1000}
IDLE_CONNS=${IDLE_CONNS:-10000}
TABLE_ROWS=${TABLE_ROWS:-1000000}
ONLY=${ONLY:-fixed,cache,pipeline,coalesce,memory,table}
OUT=${OUT:-$BENCH/results/$(date +%F)-$DESC.md}
PY=/usr/bin/python3

P_CEILING=9000 P_NGINX=9001 P_LEVEE=9002 P_NGINX_COUNT=9003 P_LEVEE_TABLE=9004
P_NGINX_IDLE=9010 P_ORIGIN=9100 P_COUNT=9101 P_ADMIN=9902

die() {
    echo "run.sh: $*" >&2
    [ -s "${TMP:-/nonexistent}/levee.log" ] && { echo "-- levee's log:" >&2; tail -5 "$TMP/levee.log" >&2; }
    exit 1
}
note() { echo "== $*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
dur_s() { local d=$1; d=${d%s}; echo "$d"; }

[ -x "$LEVEE" ] || die "no levee binary at $LEVEE (run make)"
[ -n "$SHARED" ] && [ -x "$SHARED/cpu_per_req.sh" ] || die "shared bench files not found (set SHARED=)"
for t in wrk nginx taskset gcc curl; do command -v $t >/dev/null || die "$t is missing (scripts/install-deps.sh all)"; done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: the server on CPU 0, the client on CPU 1"

# 10k idle connections need 10k descriptors on each side (root may raise the
# hard limit; otherwise take what the hard limit allows).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_CONNS + 200)) ]; then
    IDLE_CONNS=$(( $(ulimit -n) - 200 ))
    echo "run.sh: ulimit -n is $(ulimit -n): only $IDLE_CONNS idle connections" >&2
fi

TMP=$(mktemp -d /tmp/levee-bench.XXXX)
# A private copy: a `make` elsewhere in the tree during the run must not
# swap the binary between two benchmarks.
cp "$LEVEE" "$TMP/levee" || exit 1
LEVEE_SRC=$LEVEE LEVEE=$TMP/levee
LEVEE_BUILT=$(date -r "$LEVEE_SRC" '+%F %T')
SRC_STATE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)
[ -n "$(git -C "$ROOT" status --porcelain -- src 2>/dev/null)" ] && SRC_STATE+=" + uncommitted changes in src/"
export ROWS=$TABLE_ROWS   # for redirect_random.lua
PIDS=()          # everything started here, stopped on exit (by PID)
NGINX_DIRS=()    # nginx prefix dirs, stopped by their pid file

stop_nginx_dir() {
    local d=$1
    [ -f "$d/nginx.pid" ] && kill "$(cat "$d/nginx.pid")" 2>/dev/null
    sleep 0.2; rm -rf "$d"
}
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for d in "${NGINX_DIRS[@]}"; do stop_nginx_dir "$d"; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
wait_port() {
    for _ in $(seq 100); do port_busy "$1" && return 0; sleep 0.05; done
    die "nothing listening on port $1"
}
for p in $P_CEILING $P_NGINX $P_LEVEE $P_NGINX_COUNT $P_LEVEE_TABLE $P_NGINX_IDLE $P_ORIGIN $P_COUNT $P_ADMIN; do
    port_busy $p && die "port $p is in use"
done

# Ticks CPU 0 has spent busy (everything but idle and iowait) since boot.
cpu0_busy() { awk '$1 == "cpu0" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# "cpu0 N% cpu1 M%": how busy each CPU is over one second, before we start.
cpu_busy_now() {
    local a b
    a=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat); sleep 1
    b=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    paste -d' ' <(echo "$a") <(echo "$b") |
        awk '{ busy = $5 - $2; idle = $6 - $3; printf "%s %.0f%% ", $1, busy * 100 / (busy + idle) }'
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# The status code an URL answers with, or 000.
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }
expect_status() {
    local got; got=$(status_of "$1")
    [ "$got" = "$2" ] || die "$1 answered $got, expected $2"
}

# These two set STARTED to the PID to measure; not run in $(...), so that
# the PID lists kept for cleanup are updated in this shell.
# nginx-microcache.sh prints the worker PID; the master (its parent) knows
# the prefix dir, which is what we stop and remove at the end.
start_nginx_micro() { # PORT ORIGIN_PORT
    local master dir
    STARTED=$("$SHARED/nginx-microcache.sh" "$1" "$2") || die "nginx-microcache.sh $1 $2 failed"
    master=$(ps -o ppid= -p "$STARTED" | tr -d ' ')
    # nginx rewrites its argv: "nginx: master process nginx -c DIR/nginx.conf"
    dir=$(tr '\0' ' ' < "/proc/$master/cmdline" | grep -o '/[^ ]*/nginx\.conf' | sed 's,/nginx\.conf$,,')
    [ -n "$dir" ] || die "cannot find the prefix of nginx $master"
    NGINX_DIRS+=("$dir")
}
start_levee() { # CONFIG PORT
    taskset -c 0 "$LEVEE" serve -c "$1" >>"$TMP/levee.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port "$2"
}
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# ---- bookkeeping for the report ----
declare -A RESULT   # name -> "rps reqs p99 cpu" (the median run)
declare -A ALLCPU   # name -> every run's CPU us/req
declare -A WHAT     # name -> "server, URL"
declare -A INVALID  # name -> why a run of it cannot be trusted
declare -A OTHERS   # name -> share of CPU 0 used by other processes, per run
RAW=()              # every cpu_per_req.sh line, with its command
CMDS=()             # the exact commands, in order
ORDER=()            # names, in order of first measurement
cmd() { CMDS+=("$*"); }

levee_accepted() {
    curl -s --max-time 2 http://127.0.0.1:$P_ADMIN/metrics | awk '$1 == "levee_connections_accepted_total" {print $2}'
}
# check_answer URL STATUS [BODY]: one request after a run, as a spot check
# that the server still answers correctly (a fast wrong answer is no result).
check_answer() {
    local out code
    out=$(curl -s --max-time 2 -w '\n%{http_code}' "$1") || return 1
    code=${out##*$'\n'}
    [ "$code" = "$2" ] && { [ -z "${3:-}" ] || [ "${out%$'\n'*}" = "$3" ]; }
}

# measure NAME PID URL LABEL EXPECT [wrk args]: warm up, then one
# cpu_per_req.sh run. EXPECT is "STATUS" or "STATUS BODY", checked after the
# run; for levee, connections accepted during the run are counted too (wrk
# reconnects only when the server closed a connection or sent garbage).
measure() {
    local name=$1 pid=$2 url=$3 label=$4 expect=$5; shift 5
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$WARMUP" "$@" "$url" >/dev/null 2>&1
    local c="$SHARED/cpu_per_req.sh $pid $url -t1 -c$CONNS -d$DURATION --latency $*"
    local a0="" a1 line bad="" b0 b1
    [ "$pid" = "${LEVEE_PID:-}" ] && a0=$(levee_accepted)
    b0=$(cpu0_busy)
    line=$("$SHARED/cpu_per_req.sh" "$pid" "$url" -t1 -c"$CONNS" -d"$DURATION" --latency "$@")
    b1=$(cpu0_busy)
    # CPU 0's busy time not spent by the server: other processes (noise).
    OTHERS[$name]+="$(awk -v b="$((b1 - b0))" -v t="$(getconf CLK_TCK)" -v d="$(dur_s "$DURATION")" \
        -v l="$line" 'BEGIN{ split(l, f, /[ =]/); for (i = 1; i in f; i += 2) v[f[i]] = f[i + 1];
        o = b / t - v["cpu_us_per_req"] * v["reqs"] / 1e6; printf "%.0f%%", (o < 0 ? 0 : o) / d * 100 }') "
    if [ -n "$a0" ]; then
        a1=$(levee_accepted)
        [ $((a1 - a0)) -gt $((CONNS * 2)) ] && bad="$((a1 - a0)) connections for $CONNS clients (server closed them under load)"
    fi
    check_answer "$url" ${expect%% *} "$( [[ $expect == *" "* ]] && echo "${expect#* }")" || bad="${bad:+$bad; }wrong answer after the run"
    [[ $line == *" reqs=0 "* || -z $line ]] && bad="${bad:+$bad; }no answers"
    [[ -z "${WHAT[$name]:-}" ]] && { ORDER+=("$name"); WHAT[$name]=$label; cmd "$c"; }
    RAW+=("$name: $line${bad:+   # INVALID: $bad}")
    [ -n "$bad" ] && INVALID[$name]="${INVALID[$name]:+${INVALID[$name]}; }$bad"
    ALLCPU[$name]="${ALLCPU[$name]:-} $(echo "$line" | sed -n 's/.*cpu_us_per_req=\([0-9.]*\).*/\1/p')"
    RESULT[$name]+="$line"$'\n'
    printf '%-22s %s%s\n' "$name" "$line" "${bad:+   INVALID: $bad}" >&2
}
# After all repeats: keep the run whose CPU/request is the median.
settle_results() {
    local name
    for name in "${ORDER[@]}"; do
        RESULT[$name]=$(printf '%s' "${RESULT[$name]}" | sed '/^$/d' |
            awk -F'cpu_us_per_req=' '{print $2, $0}' | sort -n | awk '{a[NR]=$0} END{print a[int((NR+1)/2)]}' |
            sed 's/^[^ ]* //')
    done
}
field() { # NAME KEY
    echo "${RESULT[$1]:-}" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a != "n/a" && a != "" && a + 0 <= b + 0) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN{ exit !(a != "n/a" && a != "" && a + 0 < b + 0) }'; }
verdict() { if "$@"; then echo "met"; else echo "**missed**"; fi; }
# verdict_of "NAMES" TEST...: as verdict, unless a run it rests on is invalid.
verdict_of() {
    local n names=$1; shift
    for n in $names; do
        [ -n "${INVALID[$n]:-}" ] && { echo "**invalid** ($n: ${INVALID[$n]})"; return; }
    done
    verdict "$@"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_START=$(ps -eo pcpu=,comm= --sort=-pcpu | head -5 | awk '{printf "%s %s%%, ", $2, $1}' | sed 's/, $//')
BUSY_CPUS=$(cpu_busy_now)
START_TS=$(date +%s)

# ---- servers ----
note "starting origins, ceiling, nginx, levee (tmp: $TMP)"
gcc -O2 -o "$TMP/ceiling" "$SHARED/ceiling.c" || die "cannot build ceiling.c"
cmd "gcc -O2 -o ceiling $SHARED/ceiling.c"
taskset -c 1 $PY "$SHARED/slow_origin.py" $P_ORIGIN & PIDS+=($!)
taskset -c 1 $PY "$BENCH/counting_origin.py" $P_COUNT 1.0 & PIDS+=($!)
cmd "taskset -c 1 python3 $SHARED/slow_origin.py $P_ORIGIN"
cmd "taskset -c 1 python3 bench/counting_origin.py $P_COUNT 1.0"
taskset -c 0 "$TMP/ceiling" $P_CEILING & CEILING_PID=$!; PIDS+=("$CEILING_PID")
cmd "taskset -c 0 ./ceiling $P_CEILING"
wait_port $P_ORIGIN; wait_port $P_COUNT; wait_port $P_CEILING
start_nginx_micro $P_NGINX $P_ORIGIN; NGINX_PID=$STARTED
start_nginx_micro $P_NGINX_COUNT $P_COUNT
cmd "$SHARED/nginx-microcache.sh $P_NGINX $P_ORIGIN    # prints the worker PID"
cmd "$SHARED/nginx-microcache.sh $P_NGINX_COUNT $P_COUNT    # for the coalescing run"
LEVEE_CFG=$BENCH/configs/levee.yaml
start_levee "$LEVEE_CFG" $P_LEVEE; LEVEE_PID=$STARTED
cmd "taskset -c 0 ./levee serve -c bench/configs/levee.yaml"

U_CEIL=http://127.0.0.1:$P_CEILING/
U_NGX_FIXED=http://127.0.0.1:$P_NGINX/fixed
U_NGX_CACHE=http://127.0.0.1:$P_NGINX/events/list
U_LV_FIXED=http://127.0.0.1:$P_LEVEE/fixed
U_LV_REDIR=http://127.0.0.1:$P_LEVEE/r/tv-ad-2026
U_LV_CACHE=http://127.0.0.1:$P_LEVEE/events/list
expect_status $U_CEIL 200; expect_status $U_NGX_FIXED 200; expect_status $U_LV_FIXED 200
expect_status $U_LV_REDIR 302; expect_status $U_NGX_CACHE 200; expect_status $U_LV_CACHE 200
curl -s -D - -o /dev/null $U_LV_CACHE | grep -qi '^x-cache: *hit' || die "levee does not answer $U_LV_CACHE from its cache"

EVENTS='{"events":[{"artist":"x","city":"y"}]}'   # slow_origin.py's body
PIPE=(-s "$SHARED/pipeline.lua")
for r in $(seq "$REPEAT"); do
    [ "$REPEAT" -gt 1 ] && note "round $r of $REPEAT"
    if wants fixed; then
        note "fixed answers, $CONNS keep-alive connections"
        measure ceiling_fixed "$CEILING_PID" $U_CEIL "ceiling (ceiling.c)" "200 Hello, World!"
        measure nginx_fixed "$NGINX_PID" $U_NGX_FIXED "nginx return 200" "200 Hello, World!"
        measure levee_fixed "$LEVEE_PID" $U_LV_FIXED "levee respond" "200 Hello, World!"
        measure levee_redirect "$LEVEE_PID" $U_LV_REDIR "levee redirect hit" 302
    fi
    if wants cache; then
        note "10 s micro-cache hit"
        measure nginx_cache "$NGINX_PID" $U_NGX_CACHE "nginx micro-cache hit" "200 $EVENTS"
        measure levee_cache "$LEVEE_PID" $U_LV_CACHE "levee cache hit" "200 $EVENTS"
    fi
    if wants pipeline; then
        note "pipelined x$DEPTH"
        measure ceiling_pipe "$CEILING_PID" $U_CEIL "ceiling, pipelined x$DEPTH" "200 Hello, World!" "${PIPE[@]}"
        measure nginx_pipe "$NGINX_PID" $U_NGX_FIXED "nginx return 200, pipelined x$DEPTH" "200 Hello, World!" "${PIPE[@]}"
        measure levee_fixed_pipe "$LEVEE_PID" $U_LV_FIXED "levee respond, pipelined x$DEPTH" "200 Hello, World!" "${PIPE[@]}"
        measure levee_redirect_pipe "$LEVEE_PID" $U_LV_REDIR "levee redirect, pipelined x$DEPTH" 302 "${PIPE[@]}"
    fi
done
[ "$REPEAT" -gt 1 ] && settle_results
for n in "${ORDER[@]}"; do RESULT[$n]=$(printf '%s' "${RESULT[$n]}" | sed '/^$/d' | head -1); done

# ---- coalescing ----
declare -A CO
coalesce() { # NAME PORT
    local key="/coalesce/$1-$$-$RANDOM" line count
    line=$(taskset -c 1 $PY "$BENCH/coalesce.py" 127.0.0.1 "$2" "$key" "$COALESCE_N" 20)
    count=$(curl -s --max-time 5 http://127.0.0.1:$P_COUNT/__count |
        $PY -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$key")
    CO[$1]="$line"; CO[$1_origin]=$count
    cmd "taskset -c 1 python3 bench/coalesce.py 127.0.0.1 $2 $key $COALESCE_N 20; curl http://127.0.0.1:$P_COUNT/__count"
    printf '%-22s origin_requests=%s %s\n' "coalesce_$1" "$count" "$line" >&2
}
if wants coalesce; then
    note "coalescing: $COALESCE_N concurrent requests for one cold key"
    coalesce levee $P_LEVEE
    coalesce nginx $P_NGINX_COUNT
fi

# ---- memory per idle connection ----
declare -A MEM
# idle_rss NAME PID PORT: RSS before, with N connections open, and with N
# idle keep-alive connections that have each been answered once.
idle_rss() {
    local name=$1 pid=$2 port=$3 line n k r0 r1 r2 r3
    curl -s -o /dev/null http://127.0.0.1:$port/fixed
    sleep 0.5
    r0=$(rss_kb "$pid")
    coproc IDLE { taskset -c 1 $PY "$BENCH/idle_conns.py" 127.0.0.1 "$port" /fixed "$IDLE_CONNS"; }
    local ipid=$IDLE_PID
    read -r -t 120 line <&"${IDLE[0]}"; n=${line#connected }
    sleep 1; r1=$(rss_kb "$pid")
    echo go >&"${IDLE[1]}"
    read -r -t 120 line <&"${IDLE[0]}"; k=${line#answered }
    sleep 1; r2=$(rss_kb "$pid")
    echo go >&"${IDLE[1]}"
    read -r -t 60 line <&"${IDLE[0]}"
    wait "$ipid" 2>/dev/null
    sleep 1; r3=$(rss_kb "$pid")
    MEM[$name]="$n $k $r0 $r1 $r2 $r3"
    cmd "taskset -c 1 python3 bench/idle_conns.py 127.0.0.1 $port /fixed $IDLE_CONNS   # VmRSS of PID $pid read between steps"
    printf '%-22s conns=%s answered=%s rss_kb: before=%s connected=%s idle_after_request=%s closed=%s -> %s B/conn\n' \
        "idle_$name" "$n" "$k" "$r0" "$r1" "$r2" "$r3" "$(per_conn "$r0" "$r2" "$k")" >&2
}
per_conn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{ if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "n/a" }'; }
if wants memory; then
    note "memory: $IDLE_CONNS idle keep-alive connections"
    # A fresh levee, so no memory freed by earlier runs is reused.
    stop_pid "$LEVEE_PID"
    start_levee "$LEVEE_CFG" $P_LEVEE; LEVEE_PID=$STARTED
    idle_rss levee "$LEVEE_PID" $P_LEVEE
    ndir=$TMP/nginx-idle; mkdir -p "$ndir"; chmod 755 "$ndir"
    sed -e "s,@DIR@,$ndir,g" -e "s,@PORT@,$P_NGINX_IDLE,g" "$BENCH/configs/nginx-idle.conf" > "$ndir/nginx.conf"
    taskset -c 0 nginx -c "$ndir/nginx.conf" && NGINX_DIRS+=("$ndir")
    cmd "taskset -c 0 nginx -c bench/configs/nginx-idle.conf   # @DIR@, @PORT@=$P_NGINX_IDLE filled in"
    wait_port $P_NGINX_IDLE
    idle_rss nginx "$(pgrep -P "$(cat "$ndir/nginx.pid")" | head -1)" $P_NGINX_IDLE
fi

# ---- 1M-row redirect table ----
declare -A TB
if wants table; then
    note "redirect table: $TABLE_ROWS rows"
    tdir=$TMP/table; mkdir -p "$tdir"
    awk -v n="$TABLE_ROWS" 'BEGIN{print "code,url"; for (i = 0; i < n; i++) printf "c%07d,https://shop.example.com/landing?src=qr&id=%d\n", i, i}' > "$tdir/redirects.csv"
    cat > "$tdir/levee.yaml" <<YAML
listen: 127.0.0.1:$P_LEVEE_TABLE
threads: 1
admin: { listen: off }
log_level: warn
routes:
  - match: GET /r/{code}
    redirect: { table: ./redirects.csv, status: 302 }
YAML
    TB[csv_bytes]=$(stat -c %s "$tdir/redirects.csv")
    cmd "awk ... > redirects.csv   # header, then $TABLE_ROWS rows: c0000000,https://shop.example.com/landing?src=qr&id=0 ..."
    TB[check]=""
    for _ in 1 2 3; do
        taskset -c 0 /usr/bin/time -o "$tdir/time" -f '%e %U %S %M' "$LEVEE" check -c "$tdir/levee.yaml" \
            >"$tdir/check.out" 2>&1 || die "levee check failed on the big table: $(head -3 "$tdir/check.out")"
        TB[check]+="$(cat "$tdir/time");"
    done
    cmd "taskset -c 0 /usr/bin/time -f '%e %U %S %M' levee check -c levee-1m.yaml   # 3 times"
    t0=$(date +%s.%N)
    taskset -c 0 "$LEVEE" serve -c "$tdir/levee.yaml" >>"$TMP/levee.log" 2>&1 & TPID=$!; PIDS+=("$TPID")
    for _ in $(seq 600); do port_busy $P_LEVEE_TABLE && break; sleep 0.01; done
    t1=$(date +%s.%N)
    TB[startup_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
    TB[rss_kb]=$(rss_kb $TPID)
    expect_status http://127.0.0.1:$P_LEVEE_TABLE/r/c0000042 302
    expect_status http://127.0.0.1:$P_LEVEE_TABLE/r/nope 404
    measure levee_table_random "$TPID" http://127.0.0.1:$P_LEVEE_TABLE/r/c0000000 \
        "levee redirect, random code of $TABLE_ROWS" 302 -s "$BENCH/redirect_random.lua"
    RESULT[levee_table_random]=$(printf '%s' "${RESULT[levee_table_random]}" | sed '/^$/d' | head -1)
    cmd "taskset -c 0 levee serve -c levee-1m.yaml   # startup: until the port accepts"
    printf '%-22s csv=%s bytes check(wall user sys maxrss_kb)=%s startup_s=%s rss_kb=%s\n' table "${TB[csv_bytes]}" \
        "${TB[check]}" "${TB[startup_s]}" "${TB[rss_kb]}" >&2
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - START_TS ))

# ---- report ----
cpu() { field "$1" cpu_us_per_req; }
row() { # NAME: | what | rps | p99 | CPU us/req | server CPU share |
    local n=$1
    [ -n "${RESULT[$n]:-}" ] || return 0
    local share
    share=$(awk -v c="$(cpu "$n")" -v r="$(field "$n" reqs)" -v d="$(dur_s "$DURATION")" \
        'BEGIN{ printf "%.0f%%", c * r / 1e6 / d * 100 }')
    echo "| $n | ${WHAT[$n]} | $(field "$n" rps) | $(field "$n" p99) | $(cpu "$n") | $share | ${OTHERS[$n]:-} | ${INVALID[$n]:+**invalid**: ${INVALID[$n]}} |"
}
targets() {
    echo "| target | levee | peer | ratio | goal | result |"
    echo "|---|---|---|---|---|---|"
    local r
    if [ -n "${RESULT[levee_cache]:-}" ] && [ -n "${RESULT[nginx_cache]:-}" ]; then
        r=$(ratio "$(cpu levee_cache)" "$(cpu nginx_cache)")
        echo "| cache hit, CPU/req vs nginx micro-cache | $(cpu levee_cache) µs | $(cpu nginx_cache) µs | ${r}x | ≤ 0.6x | $(verdict_of "levee_cache nginx_cache" le "$r" 0.6) |"
    fi
    if [ -n "${RESULT[levee_fixed]:-}" ]; then
        r=$(ratio "$(cpu levee_fixed)" "$(cpu nginx_fixed)")
        echo "| respond, CPU/req vs nginx return 200 | $(cpu levee_fixed) µs | $(cpu nginx_fixed) µs | ${r}x | ≤ 1.0x | $(verdict_of "levee_fixed nginx_fixed" le "$r" 1.0) |"
        r=$(ratio "$(cpu levee_redirect)" "$(cpu nginx_fixed)")
        echo "| redirect hit, CPU/req vs nginx return 200 | $(cpu levee_redirect) µs | $(cpu nginx_fixed) µs | ${r}x | ≤ 1.0x | $(verdict_of "levee_redirect nginx_fixed" le "$r" 1.0) |"
    fi
    if [ -n "${RESULT[levee_fixed_pipe]:-}" ]; then
        local c
        for n in levee_fixed_pipe levee_redirect_pipe; do
            c=$(cpu $n)
            echo "| ${WHAT[$n]}, CPU/req | $c µs | ceiling $(cpu ceiling_pipe) µs | $(ratio "$c" "$(cpu ceiling_pipe)")x ceiling | < 1.5 µs | $(verdict_of $n lt "$c" 1.5) |"
        done
    fi
    if [ -n "${CO[levee]:-}" ]; then
        local ok; ok=$(echo "${CO[levee]}" | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
        echo "| coalescing: origin requests for $COALESCE_N concurrent cold requests | ${CO[levee_origin]} (answered 200: $ok) | nginx ${CO[nginx_origin]} | – | exactly 1, all answered | $(verdict test "${CO[levee_origin]}" = 1 -a "$ok" = "$COALESCE_N") |"
    fi
    if [ -n "${MEM[levee]:-}" ]; then
        set -- ${MEM[levee]}
        local b; b=$(per_conn "$3" "$5" "$2")
        local nb=n/a; [ -n "${MEM[nginx]:-}" ] && { set -- ${MEM[nginx]}; nb=$(per_conn "$3" "$5" "$2"); }
        echo "| memory per idle keep-alive connection (RSS growth) | $b B | nginx $nb B | $(ratio "$b" "$nb")x | < 4096 B | $(verdict lt "$b" 4096) |"
    fi
}

{
echo "# levee benchmarks: $DESC ($(date '+%F %H:%M %Z'))"
echo
echo "Produced by \`bench/run.sh\` (DURATION=$DURATION WARMUP=$WARMUP REPEAT=$REPEAT CONNS=$CONNS DEPTH=$DEPTH"
echo "COALESCE_N=$COALESCE_N IDLE_CONNS=$IDLE_CONNS TABLE_ROWS=$TABLE_ROWS ONLY=$ONLY) in ${ELAPSED} s."
echo "Method: ../shared/bench/README.md — server on CPU 0, client on CPU 1, server CPU"
echo "time per request from /proc (\`cpu_per_req.sh\`), peers side by side in one run."
echo
echo "## Machine"
echo
echo "| | |"
echo "|---|---|"
echo "| CPUs | $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
echo "| kernel | $(uname -srm) |"
echo "| compiler | $(gcc --version | head -1) |"
echo "| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //') |"
echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{print $2}') |"
echo "| levee | $LEVEE_SRC: $("$LEVEE" version 2>&1 | head -1), built $LEVEE_BUILT, sha256 $(sha256sum "$LEVEE" | cut -c1-12), git $SRC_STATE |"
echo "| load average | start $LOAD_START, end $LOAD_END |"
echo "| CPU use before starting (1 s) | $BUSY_CPUS |"
echo "| busiest processes at start (ps, lifetime %CPU) | $BUSY_START |"
echo
echo "## Targets"
echo
targets
echo
echo "## Throughput runs"
echo
echo "wrk -t1 -c$CONNS -d$DURATION (keep-alive; pipelined rows send $DEPTH requests per write)."
echo "\"server CPU\" is the share of one core the server used during the run: 100% means"
echo "the server was the bottleneck; much less means the client (or a noisy neighbour on CPU 0) was."
echo "\"others on CPU 0\" is CPU 0's busy time not spent by the server, per run: other processes (noise)."
echo
echo "| run | server, workload | req/s | p99 | CPU µs/req | server CPU | others on CPU 0 | problems |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${ORDER[@]}"; do row "$n"; done
if [ -n "${RESULT[levee_fixed]:-}" ] && [ -n "${RESULT[ceiling_fixed]:-}" ]; then
    echo
    echo "Against the ceiling: levee respond $(ratio "$(cpu levee_fixed)" "$(cpu ceiling_fixed)")x,"\
         "redirect $(ratio "$(cpu levee_redirect)" "$(cpu ceiling_fixed)")x, nginx return 200 $(ratio "$(cpu nginx_fixed)" "$(cpu ceiling_fixed)")x."
fi
if [ -n "${RESULT[levee_fixed_pipe]:-}" ]; then
    echo "Pipelined: levee respond / nginx $(ratio "$(cpu levee_fixed_pipe)" "$(cpu nginx_pipe)")x,"\
         "levee respond / ceiling $(ratio "$(cpu levee_fixed_pipe)" "$(cpu ceiling_pipe)")x."
fi
if [ "$REPEAT" -gt 1 ]; then
    echo
    echo "Each row is the median of $REPEAT interleaved runs by CPU/request; every run's CPU µs/req:"
    echo
    for n in "${ORDER[@]}"; do echo "- $n:${ALLCPU[$n]}"; done
fi
if [ -n "${CO[levee]:-}" ]; then
    echo
    echo "## Coalescing"
    echo
    echo "$COALESCE_N connections opened first, then the same GET for a never-seen key written on all"
    echo "of them in one loop; the origin (counting_origin.py, 1 s per request) counts what reaches it."
    echo
    echo "| through | origin requests | client result |"
    echo "|---|---|---|"
    echo "| levee | ${CO[levee_origin]} | ${CO[levee]} |"
    echo "| nginx (proxy_cache_lock) | ${CO[nginx_origin]} | ${CO[nginx]} |"
fi
if [ -n "${MEM[levee]:-}" ]; then
    echo
    echo "## Memory per idle connection"
    echo
    echo "VmRSS of the server process (kB): before; with the connections open (nothing sent);"
    echo "after one request and answer on each (idle keep-alive); after the client closed them."
    echo "Per connection = (idle keep-alive − before) / connections answered."
    echo
    echo "| server | connections | answered | before | connected | idle keep-alive | closed | bytes/conn (open only) | bytes/conn (keep-alive) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for s in levee nginx; do
        [ -n "${MEM[$s]:-}" ] || continue
        set -- ${MEM[$s]}
        echo "| $s | $1 | $2 | $3 | $4 | $5 | $6 | $(per_conn "$3" "$4" "$1") | $(per_conn "$3" "$5" "$2") |"
    done
fi
if [ -n "${TB[check]:-}" ]; then
    echo
    echo "## Redirect table, $TABLE_ROWS rows"
    echo
    echo "CSV of $(awk -v b="${TB[csv_bytes]}" 'BEGIN{printf "%.1f MB", b / 1e6}'), codes c0000000…, URLs of ~50 bytes."
    echo
    echo "| measure | value |"
    echo "|---|---|"
    IFS=';' read -ra runs <<< "${TB[check]}"
    for t in "${runs[@]}"; do
        [ -n "$t" ] || continue
        set -- $t
        echo "| \`levee check\`: wall / user / sys / max RSS | $1 s / $2 s / $3 s / $(awk -v k="$4" 'BEGIN{printf "%.0f MiB", k / 1024}') |"
    done
    echo "| \`levee serve\` until the port accepts | ${TB[startup_s]} s |"
    echo "| RSS of the serving process | $(awk -v k="${TB[rss_kb]}" 'BEGIN{printf "%.0f MiB", k / 1024}') |"
    echo "| random-code lookups under wrk | $(field levee_table_random rps) req/s, $(cpu levee_table_random) µs CPU/req (hot single code: $(cpu levee_redirect) µs) |"
fi
echo
echo "## Commands"
echo
echo '```'
for c in "${CMDS[@]}"; do echo "$c"; done
echo '```'
echo
echo "## Raw output (cpu_per_req.sh)"
echo
echo '```'
for l in "${RAW[@]}"; do echo "$l"; done
echo '```'
} > "$TMP/report.md"

mkdir -p "$(dirname "$OUT")"
cp "$TMP/report.md" "$OUT"
echo
sed -n '/^## Targets/,/^## Commands/p' "$OUT" | sed '$d'
echo "(full report: ${OUT#$ROOT/})"
