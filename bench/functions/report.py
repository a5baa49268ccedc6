#!/usr/bin/python3
"""report.py: turns the JSON lines of bench/functions/run.sh into its
results markdown and a summary on stdout.

Every figure is computed here from the raw records (fnbench.py's output),
which are also appended to the report, so a reader can recompute any of
them. Targets come from issue 4, "Performance".
"""

import argparse
import json
import re
import statistics
import sys
import time

TARGET_RATIO = 10.0      # levee req/s over serverless-offline's
TARGET_CPU_US = 15.0     # levee's own CPU per invocation
TARGET_SPAWN_MS = 2.0    # levee's share of a cold start


def pct(values, p):
    """The p-th percentile by nearest rank (no interpolation: a real sample)."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def f(x, fmt="{:.2f}", none="–"):
    return none if x is None else fmt.format(x)


def verdict(ok):
    return "met" if ok else "**missed**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--commands")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    recs = [json.loads(l) for l in open(a.raw) if l.strip()]
    one = lambda kind: next((r for r in recs if r["kind"] == kind), {})
    machine, end = one("machine"), one("end")
    loads = [r for r in recs if r["kind"] == "load"]
    # Each configuration ran REPEAT times, interleaved with the others; its
    # figure is its median run by req/s (a whole run, so req/s, p99 and CPU
    # stay consistent with each other), among its quiet runs if it has any.
    runs = {}
    for r in loads:
        runs.setdefault(r["label"], []).append(r)
    medians = {label: median_run(rs) for label, rs in runs.items()}
    peer = medians.get("peer")
    levees = [r for label, r in medians.items() if label.startswith("levee")]
    proxies = [r for label, r in medians.items() if label.startswith("proxy")]
    best = max(levees, key=lambda r: r["rps"]) if levees else None
    colds = [r for r in recs if r["kind"] == "coldstart"]
    bursts = {r["label"]: r for r in recs if r["kind"] == "burst"}
    metrics = [r for r in recs if r["kind"] == "metrics"]
    configs = [r for r in recs if r["kind"] == "config"]
    commands = open(a.commands).read().strip() if a.commands else one("commands").get("text", "")

    md = []
    w = md.append
    when = machine.get("date") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    w(f"# levee functions vs serverless-offline ({when})\n")
    w(f"Produced by `bench/functions/run.sh` ({end.get('knobs', '')}) in {end.get('seconds', '?')} s.")
    w("Method: ../shared/bench/README.md. Each system under test runs under `taskset -c 0` with "
      "everything it needs (serverless-offline's one node process; levee and the worker processes it "
      "starts, which inherit the affinity); wrk runs on CPU 1. CPU time is utime+stime from "
      "`/proc/PID/stat` (fields 14, 15) before and after the measured run, read apart for levee's own "
      "process and for each worker.\n")

    w("## Machine\n")
    w("| | |\n|---|---|")
    for k, label in [("cpu", "CPUs"), ("kernel", "kernel"), ("node", "node"), ("python", "python"),
                     ("wrk", "wrk"), ("serverless", "serverless"), ("serverless_offline", "serverless-offline"),
                     ("aws_lambda_ric", "aws-lambda-ric"), ("levee", "levee"), ("runtimes", "bootstraps"), ("git", "source")]:
        w(f"| {label} | {machine.get(k, '?')} |")
    w(f"| load average | start {machine.get('load_start', '?')}, end {end.get('load_end', '?')} |")
    w(f"| CPU use before starting (1 s) | {machine.get('busy_start', '?')} |")
    w(f"| busiest processes at start (lifetime %CPU) | {machine.get('top_start', '?')} |")
    w("")

    # ---------------- targets ----------------
    summary, summary_runs = [], []
    w("## Targets\n")
    w("| target | levee | peer / limit | ratio | goal | result |\n|---|---|---|---|---|---|")
    if peer and best:
        ratio = best["rps"] / peer["rps"] if peer["rps"] else float("inf")
        row = (f"| req/s, trivial Node handler, wrk -c{conns(best)} | {best['rps']:,.0f} ({best['label']}) | "
               f"serverless-offline {peer['rps']:,.0f} | {ratio:.1f}x | ≥ {TARGET_RATIO:g}x | {verdict(ratio >= TARGET_RATIO)} |")
        w(row)
        lower = best["p99_ms"] is not None and peer["p99_ms"] is not None and best["p99_ms"] < peer["p99_ms"]
        w(f"| p99 latency, same runs | {f(best['p99_ms'], '{:.2f} ms')} | {f(peer['p99_ms'], '{:.2f} ms')} | "
          f"{f(best['p99_ms'] / peer['p99_ms'] if peer['p99_ms'] else None, '{:.2f}x')} | lower | {verdict(lower)} |")
        summary.append(f"req/s   levee {best['rps']:,.0f} ({best['label']}) vs serverless-offline {peer['rps']:,.0f}: {ratio:.1f}x (goal ≥ 10x)")
        summary.append(f"p99     levee {f(best['p99_ms'], '{:.2f} ms')} vs serverless-offline {f(peer['p99_ms'], '{:.2f} ms')}")
    if best:
        cpu = best["server_cpu_us_per_req"]
        w(f"| levee's own CPU per invocation ({best['label']}) | {cpu:.2f} µs | {TARGET_CPU_US:g} µs | – | "
          f"< {TARGET_CPU_US:g} µs | {verdict(cpu < TARGET_CPU_US)} |")
        summary.append(f"levee CPU/invocation {cpu:.2f} µs (goal < 15), workers {best['workers_cpu_us_per_req']:.2f} µs")
        low = min(levees, key=lambda r: r["server_cpu_us_per_req"])
        if low is not best:
            w(f"| levee's own CPU per invocation, lowest ({low['label']}) | {low['server_cpu_us_per_req']:.2f} µs | "
              f"{TARGET_CPU_US:g} µs | – | < {TARGET_CPU_US:g} µs | {verdict(low['server_cpu_us_per_req'] < TARGET_CPU_US)} |")
        for p in proxies:
            w(f"| reference: levee's CPU per proxied request, same setup ({run_name(p['label'])}) | "
              f"{p['server_cpu_us_per_req']:.2f} µs | – | – | – | (not a target) |")
            summary.append(f"reference: levee as a proxy to nginx ({p['label']}) {p['server_cpu_us_per_req']:.2f} µs/req")
    for c in colds:
        sp = [s["spawn_ms"] for s in c["samples"] if s["spawn_ms"] is not None]
        if sp:
            med = statistics.median(sp)
            w(f"| levee's share of a cold start (spawn), {c['function']}, median / p90 | "
              f"{med:.3f} / {pct(sp, 90):.3f} ms ({sum(1 for x in sp if x >= TARGET_SPAWN_MS)} of {len(sp)} ≥ {TARGET_SPAWN_MS:g} ms) | "
              f"{TARGET_SPAWN_MS:g} ms | – | < {TARGET_SPAWN_MS:g} ms (p90) | "
              f"{verdict(pct(sp, 90) < TARGET_SPAWN_MS)} |")
    prov, ondemand = bursts.get("burst-provisioned"), bursts.get("burst-on-demand")
    if prov:
        n = prov["cold_start_invocations_after"] - prov["cold_start_invocations_before"]
        n2 = (ondemand["cold_start_invocations_after"] - ondemand["cold_start_invocations_before"]) if ondemand else None
        w(f"| burst 0 → wrk -c{conns(prov)}, warm = max = 4: invocations that waited for a cold start | {n:g} | "
          f"warm 0: {f(n2, '{:g}')} | – | 0 (and > 0 with warm 0) | {verdict(n == 0 and (n2 is None or n2 > 0))} |")
        summary.append(f"burst   cold-start invocations: warm 4 → {n:g}, warm 0 → {f(n2, '{:g}')}")
    w("")

    # ---------------- throughput ----------------
    if loads:
        w("## Throughput: trivial Node handler behind an HTTP route\n")
        w(f"Handler `bench/functions/app/index.js`: `exports.handler = async () => ({{statusCode: 200, body: 'ok'}})`. "
          f"wrk -t1 -c{conns(loads[0])} -d{duration(loads[0])} --latency after a "
          f"{loads[0]['warmup']} warm-up run that is discarded. *levee CPU* is levee's process alone; "
          "*workers CPU* is the sum over its worker processes; for serverless-offline everything is one process "
          "(*server CPU*). *Shares* are of one core over the run: server + workers close to 100 % means the system "
          "under test was the bottleneck. *Others on CPU 0 / 1* is each core's busy time not spent by the system "
          "under test (CPU 0) or by wrk (CPU 1): other processes and interrupts, a few % on a quiet machine; a run "
          f"above {NOISY * 100:.0f}% on either is marked noisy and its figures are not trusted.\n")
        w("| run | req/s | p50 | p90 | p99 | server / levee CPU µs/req | workers CPU µs/req | total µs/req | "
          "server share | workers share | others on CPU 0 / 1 | non-2xx | socket errors |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in medians.values():
            tot = r["server_cpu_us_per_req"] + r["workers_cpu_us_per_req"]
            name = run_name(r["label"])
            w(f"| {name} | {r['rps']:,.0f} | {f(r.get('p50_ms'), '{:.2f} ms')} | {f(r.get('p90_ms'), '{:.2f} ms')} | "
              f"{f(r.get('p99_ms'), '{:.2f} ms')} | {r['server_cpu_us_per_req']:.2f} | {r['workers_cpu_us_per_req']:.2f} | "
              f"{tot:.2f} | {r['server_cpu_share'] * 100:.0f}% | {r['workers_cpu_share'] * 100:.0f}% | "
              f"{others(r)[0] * 100:.0f}% / {others(r)[1] * 100:.0f}%{' (noisy)' if noisy(r) else ''} | {r['non2xx']} | {r['socket_errors']} |")
            summary_runs.append(f"  {name:46s} {r['rps']:>9,.0f} req/s  p99 {f(r.get('p99_ms'), '{:.2f} ms'):>9}  "
                           f"server {r['server_cpu_us_per_req']:7.2f} µs/req  workers {r['workers_cpu_us_per_req']:7.2f} µs/req")
        w("")
        if any(len(rs) > 1 for rs in runs.values()):
            w(f"Each row is the median by req/s of the quiet runs among {max(len(rs) for rs in runs.values())} "
              "interleaved ones (of all of them when none was quiet). Every run (req/s, p99, server or levee CPU "
              "µs/req, workers CPU µs/req, others on CPU 0 / 1):\n")
            for label, rs in runs.items():
                w(f"- {label}: " + "; ".join(
                    f"{r['rps']:,.0f}, {f(r.get('p99_ms'), '{:.2f} ms')}, {r['server_cpu_us_per_req']:.2f}, "
                    f"{r['workers_cpu_us_per_req']:.2f}, {others(r)[0] * 100:.0f}% / {others(r)[1] * 100:.0f}%"
                    + (" **noisy**" if noisy(r) else "") for r in sorted(rs, key=lambda r: r.get("round", 1))))
            w("")
        w("CPU time of every process of each run (ticks of 1/100 s during the measured run; *reaped* is the "
          "change in the process's cutime+cstime, which would hold a worker's CPU had one exited and been "
          "reaped during the run — it must be 0 for the split above to hold):\n")
        for r in loads:
            parts = [f"{p['role']} {p['pid']} ({p['comm']}) {p['ticks']} ticks" + (f", reaped {p['child_ticks']}" if p["child_ticks"] else "")
                     + ("" if p["seen"] == "both" else f" [{p['seen']} only]") for p in r["processes"]]
            w(f"- {r['label']} (round {r.get('round', 1)}): " + "; ".join(parts) + f"; server reaped {r['server_reaped_ticks']}")
            if r.get("cold_start_invocations") is not None:
                w(f"  - cold starts during the run: {r['cold_starts']:g}, invocations that waited for one: {r['cold_start_invocations']:g}")
        w("")

    # ---------------- cold start ----------------
    if colds:
        w("## Cold start per runtime\n")
        w("One levee with four functions, each `concurrency: { max: 1, warm: 0 }` and `idle_timeout: 0s`; "
          f"{len(colds[0]['samples'])} sequential requests each, interleaved across the functions, every one sent "
          "only after /metrics showed its function back at zero workers. Per request, the change in "
          "`levee_function_cold_start_seconds_sum` (spawn to the worker's first /next) and in "
          "`levee_function_spawn_seconds_sum` (levee's share: posix_spawn) between the scrapes before and after "
          "it is that one cold start. *client* is the whole first request as the client saw it (connect, cold "
          "start, invocation, answer). Nearest-rank percentiles.\n")
        w("| runtime | samples | cold start median | p90 | max | spawn median | p90 | max | spawns ≥ 2 ms | client median | p90 | not 200 |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        names = {"node": "nodejs (levee's bootstrap)", "python": "python (levee's bootstrap)",
                 "provided": "provided (bash bootstrap)", "ric": "command: aws-lambda-ric"}
        for c in colds:
            s = c["samples"]
            cs = [x["cold_start_ms"] for x in s if x["cold_start_ms"] is not None]
            sp = [x["spawn_ms"] for x in s if x["spawn_ms"] is not None]
            cl = [x["client_ms"] for x in s]
            bad = sum(1 for x in s if x["status"] != 200)
            w(f"| {names.get(c['function'], c['function'])} | {len(cs)} of {len(s)} | "
              f"{f(statistics.median(cs) if cs else None, '{:.1f} ms')} | {f(pct(cs, 90), '{:.1f} ms')} | {f(max(cs) if cs else None, '{:.1f} ms')} | "
              f"{f(statistics.median(sp) if sp else None, '{:.3f} ms')} | {f(pct(sp, 90), '{:.3f} ms')} | {f(max(sp) if sp else None, '{:.3f} ms')} | "
              f"{sum(1 for x in sp if x >= TARGET_SPAWN_MS)} | {f(statistics.median(cl), '{:.1f} ms')} | {f(pct(cl, 90), '{:.1f} ms')} | {bad} |")
            summary.append(f"cold    {c['function']:9s} start median {f(statistics.median(cs) if cs else None, '{:.1f} ms')}, "
                           f"p90 {f(pct(cs, 90), '{:.1f} ms')}; spawn median {f(statistics.median(sp) if sp else None, '{:.3f} ms')}, p90 {f(pct(sp, 90), '{:.3f} ms')}")
        w("")
        w("Every sample (cold start ms / spawn ms / client ms):\n")
        for c in colds:
            w(f"- {c['function']}: " + ", ".join(
                f"{f(x['cold_start_ms'], '{:.1f}')}/{f(x['spawn_ms'], '{:.3f}')}/{x['client_ms']:.1f}"
                + ("" if x["status"] == 200 else f" [{x['status']}]") for x in c["samples"]))
        w("")

    # ---------------- burst ----------------
    if bursts:
        w("## Burst: zero to full load at once\n")
        w("A fresh levee; wrk opens its connections and sends on all of them at once (0 → full load in well "
          "under a second); /metrics is read just before and just after. "
          "`levee_function_cold_start_invocations_total` counts invocations that waited for a worker being "
          "started.\n")
        w("| config | req/s | p99 | idle workers before | cold starts during | invocations that waited for one | non-2xx |")
        w("|---|---|---|---|---|---|---|")
        for label, r in bursts.items():
            w(f"| {label.replace('burst-', '')}: {'warm 4' if 'prov' in label else 'warm 0'}, max 4 | {r['rps']:,.0f} | "
              f"{f(r.get('p99_ms'), '{:.2f} ms')} | {r['workers_before']['idle']:g} | "
              f"{r['cold_starts_after'] - r['cold_starts_before']:g} | "
              f"{r['cold_start_invocations_after'] - r['cold_start_invocations_before']:g} | {r['non2xx']} |")
        w("")

    if metrics:
        w("## levee's function metrics after each run (non-zero series)\n")
        for m in metrics:
            w(f"{m['label']}:\n\n```\n" + "\n".join(m["lines"]) + "\n```\n")

    w("## Configurations\n")
    for c in configs:
        w(f"`{c['name']}`:\n\n```yaml\n{c['text']}\n```\n")
    w("serverless-offline: `bench/functions/peer/serverless.yml` (httpApi event `ANY /hello`, handler "
      "`../app/index.handler`, the same file), run with `--useInProcess --noTimeout` (handlers reused in its "
      "own process, no per-invocation timer: its fastest setting; `--reloadHandler` is off by default).\n")

    w("## Commands\n")
    w("```\nbench/functions/setup.sh\n" + commands + "\n```\n")
    w("## Raw wrk output\n")
    for r in loads + list(bursts.values()):
        w(f"{r['label']}{' (round %d)' % r['round'] if 'round' in r else ''}: `{r['command']}`\n\n```\n{r['wrk_output'].strip()}\n```\n")

    with open(a.out, "w") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    print("\n".join(["median runs:"] + summary_runs + summary))


NOISY = 0.10   # other work's share of either core above which a run is not trusted


def others(r):
    """(CPU 0, CPU 1) busy share not spent by the system under test / by wrk."""
    o0 = r["cpu0_busy_share"] - r["server_cpu_share"] - r["workers_cpu_share"]
    o1 = r.get("cpu1_busy_share", 0.0) - r.get("client_cpu_share", 0.0)
    return max(0.0, o0), max(0.0, o1)


def noisy(r):
    return max(others(r)) > NOISY


def median_run(rs):
    pool = [r for r in rs if not noisy(r)] or rs
    return sorted(pool, key=lambda r: r["rps"])[(len(pool) - 1) // 2]


def run_name(label):
    if label == "peer":
        return "serverless-offline --useInProcess --noTimeout"
    if label == "peer-default":
        return "serverless-offline, default flags"
    if label.startswith("proxy"):
        return f"reference: levee proxy → nginx, max_conns {label[5:]}"
    return label.replace("levee-warm", "levee, warm = max = ")


def conns(r):
    return re.search(r" -c(\d+)", r["command"]).group(1)


def duration(r):
    return re.search(r" -d(\S+)", r["command"]).group(1)


if __name__ == "__main__":
    sys.exit(main())
