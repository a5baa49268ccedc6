#!/bin/bash
# run.sh: the spike test, one command. Takes levee from idle to 5x overload
# on one route in under a second, holds it there, and checks that the other
# route does not notice, that admitted requests stay fast, that the throttle
# admits its rate, and that nothing breaks (README.md "Spike test").
#
#     bench/spike/run.sh                      # levee-spike.yaml (admission control)
#     SCENARIO=baseline bench/spike/run.sh    # levee-spike-baseline.yaml (none)
#
# What runs, all on 127.0.0.1:
#   spike_origin (port 9210)   the slow origin: 60 ms per request, 24 workers
#                              (400 req/s at most)
#   levee        (9200, admin 9201), the scenario config, threads: 1, CPU 0
#   spike_load                 open-loop generator on CPU 1 (with the origin):
#       calm   GET /calm/item  50 req/s from t = 0 to the end
#       flood  GET /flood/item from t = 8 s: 0 -> 5 x throttle.rate (1,500/s)
#              in 0.5 s, held for 15 s
#     It samples levee's RSS and CPU time, and how busy each CPU was, every
#     250 ms (other work on the machine shows up as noise in the report),
#     and writes every request to a CSV.
# report.py turns the CSV into bench/spike/results/DATE-DESC.md with the
# per-route table, a per-second timeline and the four checks; the exit
# status is 0 when all four pass.
#
# Steps: build spike_load and spike_origin (gcc, into a temporary directory),
# run selftest.py (the generator must see resets and errors to vouch for
# their absence), `levee check` the config, start origin and levee, run the
# load, read levee's /metrics and the origin's /__stats, stop both, report.
# About 50 s in all; every wait below is bounded.
#
# Knobs (environment): SCENARIO (admission | baseline | a config path),
# DESC (results file name, default the scenario), OVERLOAD (5), CALM_RATE
# (50), IDLE_S (8: calm alone before the flood), RAMP_S (0.5), FLOOD_S (15:
# the hold after the ramp), AFTER_S (2.5), SERVICE_MS (60), WORKERS (24),
# TIMEOUT_S (10: the generator's per-request timeout), MAX_CONNS (8000),
# SELFTEST (1), KEEP (0: 1 keeps the temporary directory with the CSVs),
# LEVEE (./levee; built with make if missing), OUT (the report's path).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
SPIKE=$ROOT/bench/spike
SCENARIO=${SCENARIO:-admission}
case $SCENARIO in
    admission) CONFIG=$SPIKE/levee-spike.yaml ;;
    baseline) CONFIG=$SPIKE/levee-spike-baseline.yaml ;;
    *) CONFIG=$(realpath "$SCENARIO") ;;
esac
TARGETS=$SPIKE/levee-spike.yaml   # the scenario's numbers, for the checks
DESC=${DESC:-$(basename "${SCENARIO%.yaml}")}
OVERLOAD=${OVERLOAD:-5}
CALM_RATE=${CALM_RATE:-50}
IDLE_S=${IDLE_S:-8}
RAMP_S=${RAMP_S:-0.5}
FLOOD_S=${FLOOD_S:-15}
AFTER_S=${AFTER_S:-2.5}
SERVICE_MS=${SERVICE_MS:-60}
WORKERS=${WORKERS:-24}
TIMEOUT_S=${TIMEOUT_S:-10}
MAX_CONNS=${MAX_CONNS:-8000}
SELFTEST=${SELFTEST:-1}
KEEP=${KEEP:-0}
LEVEE=${LEVEE:-$ROOT/levee}
OUT=${OUT:-$SPIKE/results/$(date +%F)-$DESC.md}
PY=/usr/bin/python3
P_LEVEE=9200 P_ADMIN=9201 P_ORIGIN=9210

die() {
    echo "spike: $*" >&2
    [ -s "${TMP:-/nonexistent}/levee.log" ] && { echo "-- levee's log:" >&2; tail -5 "$TMP/levee.log" >&2; }
    exit 2
}
note() { echo "== $*" >&2; }

for t in gcc taskset curl; do command -v $t >/dev/null || die "$t is missing"; done
$PY -c 'import yaml' 2>/dev/null || die "python3-yaml is missing"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: levee on CPU 0, origin and load on CPU 1"
[ -f "$CONFIG" ] || die "no config $CONFIG"

port_busy() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
wait_port() {
    for _ in $(seq 100); do port_busy "$1" && return 0; sleep 0.05; done
    die "nothing listening on port $1"
}
for p in $P_LEVEE $P_ADMIN $P_ORIGIN; do port_busy $p && die "port $p is in use"; done

if [ ! -x "$LEVEE" ]; then
    note "no levee binary at $LEVEE: make -j2"
    make -j2 >&2 || die "make failed"
fi

TMP=$(mktemp -d /tmp/levee-spike.XXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then echo "spike: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
CMDS=()
cmd() { CMDS+=("$*"); }

# A private copy, so a rebuild elsewhere in the tree during the run changes nothing.
cp "$LEVEE" "$TMP/levee" || die "cannot copy $LEVEE"
LEVEE_SRC=$LEVEE LEVEE=$TMP/levee
CFLAGS=(-std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes)
gcc "${CFLAGS[@]}" -o "$TMP/spike_load" "$SPIKE/spike_load.c" -lm || die "cannot build spike_load"
gcc "${CFLAGS[@]}" -o "$TMP/spike_origin" "$SPIKE/spike_origin.c" -lpthread || die "cannot build spike_origin"
cmd "gcc ${CFLAGS[*]} -o spike_load bench/spike/spike_load.c -lm"
cmd "gcc ${CFLAGS[*]} -o spike_origin bench/spike/spike_origin.c -lpthread"

if [ "$SELFTEST" = 1 ]; then
    note "selftest: the generator's answer and error classification"
    $PY "$SPIKE/selftest.py" "$TMP/spike_load" >&2 || die "selftest.py failed: the generator cannot be trusted"
fi

"$LEVEE" check -c "$CONFIG" >"$TMP/check.out" 2>&1 || {
    cat "$TMP/check.out" >&2
    [ "$SCENARIO" = admission ] && echo "spike: this levee does not take the admission keys yet;" \
        "SCENARIO=baseline runs the same test without them" >&2
    exit 2
}

# The scenario's numbers, from the config the targets come from.
read -r RATE QUEUE_TIMEOUT < <($PY - "$TARGETS" <<'EOF'
import sys, yaml
routes = yaml.safe_load(open(sys.argv[1]))["routes"]
flood = next(r for r in routes if r.get("name") == "flood")
print(flood["throttle"]["rate"], flood["queue"]["timeout"])
EOF
) || die "cannot read throttle.rate and queue.timeout of the flood route in $TARGETS"
FLOOD_RATE=$(awk -v r="$RATE" -v k="$OVERLOAD" 'BEGIN { print r * k }')
CALM_END=$(awk -v a="$IDLE_S" -v b="$RAMP_S" -v c="$FLOOD_S" -v d="$AFTER_S" 'BEGIN { print a + b + c + d }')

# The generator and levee each hold one descriptor per open connection.
ulimit -n $((MAX_CONNS + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---- the machine, before anything starts ----
cpu_busy_now() {
    local a b
    a=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat); sleep 1
    b=$(awk '/^cpu[01] /{ print $1, $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    paste -d' ' <(echo "$a") <(echo "$b") |
        awk '{ busy = $5 - $2; idle = $6 - $3; printf "%s %.0f%% ", $1, busy * 100 / (busy + idle) }'
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_CPUS=$(cpu_busy_now)
BUSY_PROCS=$(ps -eo pcpu=,comm= --sort=-pcpu | head -4 | awk '{ printf "%s %s%%; ", $2, $1 }')
SRC_STATE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)
[ -n "$(git -C "$ROOT" status --porcelain -- src 2>/dev/null)" ] && SRC_STATE+=" + uncommitted changes in src/"

# ---- origin and levee ----
note "origin: $SERVICE_MS ms per request, $WORKERS workers; levee: $(basename "$CONFIG")"
taskset -c 1 "$TMP/spike_origin" $P_ORIGIN "$SERVICE_MS" "$WORKERS" 300 2>>"$TMP/origin.log" &
ORIGIN_PID=$!; PIDS+=("$ORIGIN_PID")
cmd "taskset -c 1 spike_origin $P_ORIGIN $SERVICE_MS $WORKERS 300"
wait_port $P_ORIGIN
taskset -c 0 "$LEVEE" serve -c "$CONFIG" >>"$TMP/levee.log" 2>&1 &
LEVEE_PID=$!; PIDS+=("$LEVEE_PID")
cmd "taskset -c 0 levee serve -c ${CONFIG#$ROOT/}"
wait_port $P_LEVEE
for path in /calm/warmup /flood/warmup; do
    got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$P_LEVEE$path")
    [ "$got" = 200 ] || die "GET $path answered $got, expected 200"
done
sleep 0.5

# ---- the load ----
note "load: calm $CALM_RATE/s for $CALM_END s; flood 0 -> $FLOOD_RATE/s in $RAMP_S s at t = $IDLE_S s, held $FLOOD_S s"
LOAD=(taskset -c 1 "$TMP/spike_load" --port $P_LEVEE --timeout "$TIMEOUT_S" --max-conns "$MAX_CONNS"
      --route "calm,/calm/item,$CALM_RATE,0,0,$CALM_END"
      --route "flood,/flood/item,$FLOOD_RATE,$IDLE_S,$RAMP_S,$FLOOD_S"
      --pid "$LEVEE_PID" --origin-pid "$ORIGIN_PID" --csv "$TMP/requests.csv" --samples "$TMP/samples.csv")
cmd "taskset -c 1 spike_load --port $P_LEVEE --timeout $TIMEOUT_S --max-conns $MAX_CONNS" \
    "--route calm,/calm/item,$CALM_RATE,0,0,$CALM_END --route flood,/flood/item,$FLOOD_RATE,$IDLE_S,$RAMP_S,$FLOOD_S" \
    "--pid LEVEE_PID --origin-pid ORIGIN_PID --csv requests.csv --samples samples.csv"
"${LOAD[@]}" >"$TMP/load.out" 2> >(tee "$TMP/load.err" >&2)
LOAD_RC=$?
sleep 0.2   # let tee finish
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- what levee and the origin counted; stop them ----
curl -s --max-time 5 "http://127.0.0.1:$P_ADMIN/metrics" >"$TMP/metrics.txt"
curl -s --max-time 5 "http://127.0.0.1:$P_ORIGIN/__stats" >"$TMP/origin.json"
cmd "curl http://127.0.0.1:$P_ADMIN/metrics; curl http://127.0.0.1:$P_ORIGIN/__stats"
if kill -0 "$LEVEE_PID" 2>/dev/null; then
    kill "$LEVEE_PID"
    for _ in $(seq 150); do kill -0 "$LEVEE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LEVEE_PID" 2>/dev/null && kill -9 "$LEVEE_PID"
    wait "$LEVEE_PID"; LEVEE_EXIT=$?
else
    wait "$LEVEE_PID"; LEVEE_EXIT="died during the run ($?)"
fi
kill "$ORIGIN_PID" 2>/dev/null; wait "$ORIGIN_PID" 2>/dev/null

{
    echo "| | |"
    echo "|---|---|"
    echo "| CPUs | $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
    echo "| kernel | $(uname -srm) |"
    echo "| compiler | $(gcc --version | head -1) |"
    echo "| levee | ${LEVEE_SRC#$ROOT/}: $("$LEVEE" version 2>&1 | head -1), built $(date -r "$LEVEE_SRC" '+%F %T'), sha256 $(sha256sum "$LEVEE" | cut -c1-12), git $SRC_STATE |"
    echo "| pinning | levee on CPU 0; spike_origin and spike_load on CPU 1 |"
    echo "| load average | start $LOAD_START, end $LOAD_END |"
    echo "| CPU use before starting (1 s) | $BUSY_CPUS |"
    echo "| busiest processes at start (ps, lifetime %CPU) | $BUSY_PROCS |"
} >"$TMP/machine.md"
for c in "${CMDS[@]}"; do echo "$c"; done >"$TMP/commands.txt"
cat "$TMP/load.out" "$TMP/load.err" >"$TMP/generator.txt"
[ "$LOAD_RC" -le 1 ] || die "spike_load failed ($LOAD_RC): $(tail -3 "$TMP/load.err")"

mkdir -p "$(dirname "$OUT")"
$PY "$SPIKE/report.py" --csv "$TMP/requests.csv" --samples "$TMP/samples.csv" --config "${CONFIG#$ROOT/}" \
    --targets "$TARGETS" --machine "$TMP/machine.md" --commands "$TMP/commands.txt" \
    --generator "$TMP/generator.txt" --metrics "$TMP/metrics.txt" --origin-stats "$TMP/origin.json" \
    --out "$OUT" --scenario "$SCENARIO" --desc "$DESC" --levee-exit "$LEVEE_EXIT" \
    --flood-start "$IDLE_S" --ramp "$RAMP_S" --hold "$FLOOD_S" --calm-end "$CALM_END" \
    --flood-rate "$FLOOD_RATE" --calm-rate "$CALM_RATE" --service-ms "$SERVICE_MS" --workers "$WORKERS" \
    --overload "$OVERLOAD"
RC=$?
echo "(queue.timeout of the flood route: $QUEUE_TIMEOUT; full report: ${OUT#$ROOT/})"
exit $RC
