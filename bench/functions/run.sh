#!/bin/bash
# run.sh: levee's functions side by side with serverless-offline (issue 4,
# "Performance"), with the method of ../shared/bench/README.md: the system
# under test on CPU 0, wrk on CPU 1, CPU time from /proc, one run, ratios.
#
# "The system under test" is the whole of it. serverless-offline runs the
# handler inside its own node process; levee runs it in worker processes it
# starts. Both are started under `taskset -c 0`, and levee's workers inherit
# that affinity, so each system gets exactly one core for everything it does.
#
# Steps, in order (ONLY=a,b,... runs a subset):
#   peer       serverless offline --useInProcess --noTimeout (its fastest
#              setting; the ratio is against this), then with no flags (as
#              most people run it: a worker thread per function), GET /hello
#   levee      levee, route ANY /hello -> function hello (levee's nodejs
#              bootstrap), warm = max = N for each N in WARM_LIST; levee's own
#              CPU and its workers' CPU are read apart
#   proxyref   the reference for levee's own CPU: levee as a reverse proxy
#              to nginx `return 200` on CPU 0, max_conns N for N in
#              PROXY_LIST (1): the same two loopback hops, no Runtime API
#   coldstart  four functions (nodejs, python, provided bash, aws-lambda-ric
#              via command), warm 0, max 1, idle_timeout 0s: COLD_N sequential
#              requests each, every one after its function scaled to zero;
#              cold start and spawn time from levee's /metrics
#   burst      wrk -c16 from zero against warm = max = 4 (provisioned) and
#              against warm 0, max 4 (on demand): cold starts in the request
#              path, from /metrics before and after
#
# Every load is wrk with a fixed -d: a WARMUP run that is thrown away, then
# the DURATION run that is measured. peer and levee runs are repeated in
# REPEAT interleaved rounds and the median run of each is reported. The
# whole pass takes about 5 minutes (plus up to QUIET_WAIT first).
#
# Knobs (environment): DURATION (10s) WARMUP (3s) CONNS (16) WARM_LIST
# ("1 2 4") PROXY_LIST ("1") REPEAT (3: interleaved rounds of the peer,
# levee and proxy runs, medians reported) COLD_N (20) BURST (3s)
# ONLY (peer,levee,proxyref,coldstart,burst)
# LEVEE (./levee) DESC (functions) OUT (bench/results/DATE-DESC.md)
# QUIET_WAIT (120: seconds to wait for both CPUs under 15 % busy first)
# RAW (keep the JSON lines here as well). Ports (must be free): 9300, 9301
# (serverless-offline), 9310-9313 (levee public, admin, api; nginx origin).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
HERE=$ROOT/bench/functions
PY=/usr/bin/python3
LEVEE=${LEVEE:-$ROOT/levee}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-16}
WARM_LIST=${WARM_LIST:-1 2 4}
COLD_N=${COLD_N:-20}
REPEAT=${REPEAT:-3}
BURST=${BURST:-3s}
PROXY_LIST=${PROXY_LIST:-1}
ONLY=${ONLY:-peer,levee,proxyref,coldstart,burst}
DESC=${DESC:-functions}
OUT=${OUT:-$ROOT/bench/results/$(date +%F)-$DESC.md}
RIC_BIN=${RIC_BIN:-$ROOT/tests/node/node_modules/.bin/aws-lambda-ric}

P_SLS=9300 P_SLS_LAMBDA=9301 P_LEVEE=9310 P_ADMIN=9311 P_API=9312 P_ORIGIN=9313

die() {
    echo "run.sh: $*" >&2
    [ -s "${TMP:-/nonexistent}/levee.log" ] && { echo "-- levee's log:" >&2; tail -8 "$TMP/levee.log" >&2; }
    [ -s "${TMP:-/nonexistent}/sls.log" ] && { echo "-- serverless's log:" >&2; tail -8 "$TMP/sls.log" >&2; }
    exit 1
}
note() { echo "== $*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

[ -x "$LEVEE" ] || die "no levee binary at $LEVEE (run make)"
for t in wrk taskset curl node; do command -v $t >/dev/null || die "$t is missing (bench/functions/setup.sh)"; done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: the system under test on CPU 0, wrk on CPU 1"
if wants proxyref && ! command -v nginx >/dev/null; then
    echo "run.sh: no nginx: the proxy reference is skipped (scripts/install-deps.sh bench)" >&2
    ONLY=${ONLY//proxyref/}
fi
if wants peer && [ ! -x "$HERE/peer/node_modules/.bin/serverless" ]; then
    die "serverless-offline is not installed: run bench/functions/setup.sh"
fi

TMP=$(mktemp -d /tmp/levee-fnbench.XXXX)
RAW_FILE=$TMP/results.jsonl
: >"$RAW_FILE"
# Private copies of the binary and of its bootstraps: a `make` or an edit
# elsewhere in the tree during the run must not change them between steps.
cp "$LEVEE" "$TMP/levee" || exit 1
cp -r "$ROOT/runtimes" "$TMP/runtimes" || exit 1
LEVEE_SRC=$LEVEE LEVEE=$TMP/levee
START_S=$(date +%s)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
wait_port() { # PORT SECONDS
    local n=$(( ${2:-5} * 20 ))
    for _ in $(seq $n); do port_busy "$1" && return 0; sleep 0.05; done
    die "nothing listening on port $1 after ${2:-5} s"
}
for p in $P_SLS $P_SLS_LAMBDA $P_LEVEE $P_ADMIN $P_API $P_ORIGIN; do
    port_busy $p && die "port $p is in use"
done
record() { echo "$*" >>"$TMP/commands"; }
# One line of JSON for the report: kind, then key=value pairs (strings).
raw() { $PY -c 'import json,sys; d=dict(a.split("=",1) for a in sys.argv[2:]); d["kind"]=sys.argv[1]; print(json.dumps(d))' "$@" >>"$RAW_FILE"; }
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
fnbench() { $PY "$HERE/fnbench.py" "$@" --out "$RAW_FILE" >/dev/null || die "fnbench.py $1 failed"; }
# "cpu0 N% cpu1 M%": how busy each CPU is over one second.
cpu_busy_now() {
    local a b
    a=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat); sleep 1
    b=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    paste -d' ' <(echo "$a") <(echo "$b") |
        awk '{ busy = $5 - $2; idle = $6 - $3; printf "%s %.0f%% ", $1, busy * 100 / (busy + idle) }'
}
body_of() { curl -s --max-time 10 "$1"; }

# Other work on the machine skews every figure (see bench/README.md,
# "Noise"): wait up to QUIET_WAIT seconds for both CPUs to be under 15 %
# busy, then go on anyway; the report shows what it was.
QUIET_WAIT=${QUIET_WAIT:-120}
quiet_deadline=$(( $(date +%s) + QUIET_WAIT ))
while :; do
    busy=$(cpu_busy_now)
    echo "$busy" | awk '{ gsub("%", ""); exit !($2 < 15 && $4 < 15) }' && break
    if [ "$(date +%s)" -ge $quiet_deadline ]; then
        echo "run.sh: the machine is not quiet ($busy); measuring anyway" >&2
        break
    fi
    echo "run.sh: waiting for a quiet machine ($busy)" >&2
    sleep 4
done

# ---- the machine, for the report ----
raw machine \
    "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "cpu=$(nproc) × $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)" \
    "kernel=$(uname -srm)" \
    "node=$(node --version)" \
    "python=$(/usr/bin/python3 --version 2>&1)" \
    "wrk=$(wrk --version 2>&1 | head -1 | awk '{print $2}')" \
    "serverless=$(node -p 'require(process.argv[1]).version' "$HERE/peer/node_modules/serverless/package.json" 2>/dev/null || echo none)" \
    "serverless_offline=$(node -p 'require(process.argv[1]).version' "$HERE/peer/node_modules/serverless-offline/package.json" 2>/dev/null || echo none)" \
    "aws_lambda_ric=$(node -p 'require(process.argv[1]).version' "$(dirname "$(readlink -f "$RIC_BIN" 2>/dev/null || echo /x)")/../package.json" 2>/dev/null || echo none)" \
    "levee=$("$LEVEE" --version 2>&1 | head -1), built $(date -r "$LEVEE_SRC" '+%F %T'), sha256 $(sha256sum "$LEVEE" | cut -c1-12)" \
    "runtimes=runtimes/ (levee's bootstraps) sha256 $(cd "$TMP/runtimes" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-12)" \
    "git=$(git -C "$ROOT" rev-parse --short HEAD)$([ -n "$(git -C "$ROOT" status --porcelain -- src runtimes 2>/dev/null)" ] && echo ' + uncommitted changes in src/ or runtimes/')" \
    "load_start=$(cut -d' ' -f1-3 /proc/loadavg)" \
    "busy_start=$busy" \
    "top_start=$(ps -eo pcpu,comm --sort=-pcpu --no-headers | head -5 | awk '{printf "%s %s%%, ", $2, $1}')"

# ---- levee configs ----
# Everything below the header is the function under test and its route.
levee_header() {
    cat <<EOF
listen: 127.0.0.1:$P_LEVEE
threads: 1
admin: { listen: 127.0.0.1:$P_ADMIN }
api: { listen: 127.0.0.1:$P_API }
data_dir: $TMP/data
runtime_dir: $TMP/runtimes
log_level: warn
EOF
}
config_hello() { # FILE WARM MAX
    { levee_header; cat <<EOF
functions:
  hello:
    runtime: nodejs
    handler: index.handler
    code: $HERE/app
    concurrency: { max: $3, warm: $2 }
routes:
  - match: ANY /hello
    function: hello
EOF
    } >"$1"
}
COLD_FNS=node,python,provided
[ -x "$RIC_BIN" ] && COLD_FNS+=,ric
config_cold() { # FILE
    { levee_header
      echo "functions:"
      local common="concurrency: { max: 1, warm: 0 }
    idle_timeout: 0s"
      cat <<EOF
  node:
    runtime: nodejs
    handler: index.handler
    code: $HERE/app
    $common
  python:
    runtime: python
    handler: hello.handler
    code: $HERE/app
    $common
  provided:
    runtime: provided
    code: $HERE/provided
    $common
EOF
      [ -x "$RIC_BIN" ] && cat <<EOF
  ric:
    runtime: command
    command: [$RIC_BIN, index.handler]
    code: $HERE/app
    $common
EOF
      echo "routes:"
      for f in ${COLD_FNS//,/ }; do printf '  - match: ANY /%s\n    function: %s\n' "$f" "$f"; done
    } >"$1"
}

start_levee() { # CONFIG
    "$LEVEE" check -c "$1" >"$TMP/check.out" 2>&1 || { cat "$TMP/check.out" >&2; die "levee check -c $1 failed"; }
    record "taskset -c 0 levee serve -c $(basename "$1")"
    taskset -c 0 "$LEVEE" serve -c "$1" >>"$TMP/levee.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_port $P_LEVEE 10
    wait_port $P_ADMIN 5
}
save_config() { cp "$1" "$TMP/$(basename "$1").keep"; raw config "name=$(basename "$1")" "text=$(cat "$1")"; }

# ---- 1 and 2: serverless-offline, then levee with warm = max = N ----
# Keep the framework offline and quiet: no telemetry, update checks,
# notifications or deprecation notices; dummy credentials so the aws
# provider never goes looking for real ones.
export SLS_TELEMETRY_DISABLED=1 SLS_TRACKING_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
    SLS_DEPRECATION_DISABLE='*' SLS_INTERACTIVE_SETUP_DISABLE=1 SLS_AUTOUPDATE_DISABLE=1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 CI=1
# Its fastest setting: handlers run in serverless-offline's own process and
# are reused (no worker thread per function), and no timeout timer is armed
# per invocation. PEER_DEFAULT=1 (the default) also measures it with no flags at all, as
# most people run it (worker threads), for reference.
SLS_FAST="--useInProcess --noTimeout"

measure_peer() { # ROUND LABEL FLAGS...
    local round=$1 label=$2; shift 2
    note "round $round: serverless-offline $*, warm-up $WARMUP, then wrk -c$CONNS -d$DURATION"
    [ "$round" = 1 ] && record "cd bench/functions/peer && taskset -c 0 node node_modules/serverless/bin/serverless.js offline start $*"
    (cd "$HERE/peer" && exec taskset -c 0 node node_modules/serverless/bin/serverless.js offline start "$@") \
        >>"$TMP/sls.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port $P_SLS 60
    [ "$(body_of http://127.0.0.1:$P_SLS/hello)" = ok ] || die "serverless-offline /hello did not answer 'ok'"
    record "fnbench.py load --pid $pid --url http://127.0.0.1:$P_SLS/hello --conns $CONNS --duration $DURATION --warmup $WARMUP"
    fnbench load --label "$label" --round "$round" --pid "$pid" --url "http://127.0.0.1:$P_SLS/hello" \
        --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP"
    [ "$(body_of http://127.0.0.1:$P_SLS/hello)" = ok ] || die "serverless-offline stopped answering 'ok'"
    stop_pid "$pid"
}

measure_levee() { # ROUND N
    local n=$2 cfg=$TMP/levee-hello-$2.yaml pid
    note "round $1: levee, warm = max = $n, warm-up $WARMUP, then wrk -c$CONNS -d$DURATION"
    if [ "$1" = 1 ]; then config_hello "$cfg" "$n" "$n"; save_config "$cfg"; fi
    start_levee "$cfg"
    pid=$STARTED
    $PY "$HERE/fnbench.py" wait --admin 127.0.0.1:$P_ADMIN --function hello --want "$n" --timeout 30 ||
        die "levee: $n warm workers never became idle"
    [ "$(body_of http://127.0.0.1:$P_LEVEE/hello)" = ok ] || die "levee /hello did not answer 'ok'"
    record "fnbench.py load --pid $pid --url http://127.0.0.1:$P_LEVEE/hello --admin 127.0.0.1:$P_ADMIN --conns $CONNS --duration $DURATION --warmup $WARMUP"
    fnbench load --label "levee-warm$n" --round "$1" --pid "$pid" --url "http://127.0.0.1:$P_LEVEE/hello" \
        --admin 127.0.0.1:$P_ADMIN --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP"
    [ "$1" = "$REPEAT" ] && fnbench metrics --label "levee-warm$n" --admin 127.0.0.1:$P_ADMIN
    [ "$(body_of http://127.0.0.1:$P_LEVEE/hello)" = ok ] || die "levee stopped answering 'ok'"
    stop_pid "$pid"
}

# The reference for levee's own CPU per invocation: levee as a plain reverse
# proxy to an origin that costs next to nothing (nginx `return 200 "ok"`),
# the origin on CPU 0 where the workers would be, at most N connections to
# it as N workers would be. Per request levee then does what it does per
# invocation minus the Runtime API (one request and answer each way, on two
# loopback connections): the part of the CPU no function code path can save.
config_proxy() { # FILE N
    { levee_header; cat <<EOF
origins:
  ok: { url: http://127.0.0.1:$P_ORIGIN, max_conns: $2 }
routes:
  - match: ANY /hello
    origin: ok
EOF
    } >"$1"
}
measure_proxy() { # ROUND N
    local n=$2 cfg=$TMP/levee-proxy-$2.yaml pid ngx
    note "round $1: levee proxy to nginx, max_conns $n, warm-up $WARMUP, then wrk -c$CONNS -d$DURATION"
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
error_log $TMP/nginx/error.log warn;
pid $TMP/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$P_ORIGIN;
    location / { default_type text/plain; return 200 "ok"; }
  }
}
EOF
    if [ "$1" = 1 ]; then
        config_proxy "$cfg" "$n"; save_config "$cfg"
        record "taskset -c 0 nginx -c nginx.conf   # master_process off, return 200 \"ok\" on $P_ORIGIN"
    fi
    taskset -c 0 nginx -c "$TMP/nginx/nginx.conf" >>"$TMP/nginx/out.log" 2>&1 &
    ngx=$!
    PIDS+=("$ngx")
    wait_port $P_ORIGIN 5
    start_levee "$cfg"
    pid=$STARTED
    [ "$(body_of http://127.0.0.1:$P_LEVEE/hello)" = ok ] || die "levee proxy /hello did not answer 'ok'"
    record "fnbench.py load --pid $pid --origin-pid $ngx --url http://127.0.0.1:$P_LEVEE/hello --conns $CONNS --duration $DURATION --warmup $WARMUP"
    fnbench load --label "proxy$n" --round "$1" --pid "$pid" --origin-pid "$ngx" --url "http://127.0.0.1:$P_LEVEE/hello" \
        --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP"
    stop_pid "$pid"
    stop_pid "$ngx"
}

# Rounds interleave the systems, so a noisy minute on the machine hits all
# of them rather than one; the report takes each one's median.
for round in $(seq "$REPEAT"); do
    if wants peer; then
        # shellcheck disable=SC2086
        measure_peer "$round" peer $SLS_FAST
        [ "${PEER_DEFAULT:-1}" = 1 ] && measure_peer "$round" peer-default
    fi
    if wants levee; then
        for n in $WARM_LIST; do measure_levee "$round" "$n"; done
    fi
    if wants proxyref; then
        for n in $PROXY_LIST; do measure_proxy "$round" "$n"; done
    fi
done

# ---- 3. cold starts per runtime ----
if wants coldstart; then
    note "cold starts: $COLD_N sequential requests each to $COLD_FNS, each after scale to zero"
    [ -x "$RIC_BIN" ] || echo "run.sh: no aws-lambda-ric at $RIC_BIN: the command runtime is skipped (RIC=1 bench/functions/setup.sh)" >&2
    cfg=$TMP/levee-cold.yaml
    config_cold "$cfg"
    save_config "$cfg"
    start_levee "$cfg"
    pid=$STARTED
    record "fnbench.py coldstart --public 127.0.0.1:$P_LEVEE --admin 127.0.0.1:$P_ADMIN --functions $COLD_FNS -n $COLD_N"
    fnbench coldstart --label cold --public 127.0.0.1:$P_LEVEE --admin 127.0.0.1:$P_ADMIN \
        --functions "$COLD_FNS" -n "$COLD_N" --timeout 30
    fnbench metrics --label cold --admin 127.0.0.1:$P_ADMIN
    stop_pid "$pid"
fi

# ---- 4. burst from zero to full load ----
if wants burst; then
    for mode in provisioned on-demand; do
        if [ $mode = provisioned ]; then warm=4; else warm=0; fi
        note "burst: warm $warm, max 4, wrk -c$CONNS -d$BURST started cold"
        cfg=$TMP/levee-burst-$mode.yaml
        config_hello "$cfg" "$warm" 4
        save_config "$cfg"
        start_levee "$cfg"
        pid=$STARTED
        if [ $warm -gt 0 ]; then
            $PY "$HERE/fnbench.py" wait --admin 127.0.0.1:$P_ADMIN --function hello --want $warm --timeout 30 ||
                die "levee: $warm warm workers never became idle"
        fi
        record "fnbench.py burst --url http://127.0.0.1:$P_LEVEE/hello --admin 127.0.0.1:$P_ADMIN --conns $CONNS --duration $BURST"
        fnbench burst --label "burst-$mode" --url "http://127.0.0.1:$P_LEVEE/hello" \
            --admin 127.0.0.1:$P_ADMIN --conns "$CONNS" --duration "$BURST"
        stop_pid "$pid"
    done
fi

raw end "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" "seconds=$(( $(date +%s) - START_S ))" \
    "knobs=DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS WARM_LIST=\"$WARM_LIST\" PROXY_LIST=\"$PROXY_LIST\" REPEAT=$REPEAT COLD_N=$COLD_N BURST=$BURST ONLY=$ONLY"
raw commands "text=$(cat "$TMP/commands")"
[ -n "${RAW:-}" ] && cp "$RAW_FILE" "$RAW"
$PY "$HERE/report.py" --raw "$RAW_FILE" --out "$OUT" || die "report.py failed"
echo "run.sh: results in ${OUT#"$ROOT"/}" >&2
