#!/usr/bin/python3
"""report.py: turns one spike run into the markdown report and the four
pass/fail checks (bench/spike/run.sh calls it; it also runs alone on the
files a run kept with KEEP=1).

Inputs: spike_load's per-request CSV and samples CSV (RSS, CPU ticks), the levee config that ran,
the scenario config the targets come from (levee-spike.yaml), the schedule,
and text files run.sh collected (machine, commands, generator output, levee
metrics, origin stats). Every figure is computed here from the per-request
records, exactly (no histogram rounding), over these windows of scheduled
send time:

  idle       calm alone, from WARMUP to the flood's start
  flood      the flood's whole life: its ramp and its hold
  after      calm alone again, after the flood stopped
  throttle   10 s of the flood's hold, from flood start + 3 s, by the time
             the request was actually written (what levee's bucket sees)

The checks (the issue's, with its numbers from the scenario config):
  1. calm p99 during the flood <= 2 x calm p99 at idle, and every calm
     request answered 2xx during the flood;
  2. flood: p99 of admitted (2xx) requests < queue.timeout + service time;
  3. flood: requests admitted past the throttle (answers other than 429) in
     the 10 s window = throttle.rate x 10 s, +-5%;
  4. no resets, no errors of any other kind (anything but 2xx, 429 with
     Retry-After, 503 with Retry-After) on either route, and levee's RSS
     flat after the first seconds of the flood: its highest sample from
     flood start + 3 s to the flood's end exceeds the sample at flood start
     + 3 s by at most max(1 MiB, 5%).

Noise: levee is pinned to CPU 0, origin and generator to CPU 1; CPU time
the samples show on either CPU beyond those processes is other work on the
machine (plus interrupt time charged to no process). A second in which it
passes NOISY_PCT of a CPU is listed, and the report says the run was noisy:
its latencies then say more about the machine than about levee.

Prints the checks and exits 0 when all four pass, 1 otherwise."""
import argparse
import csv
import json
import math
import os
import re
import sys

import yaml

ERRORS = ("429-no-retry-after", "503-no-retry-after", "5xx", "other-status", "reset", "refused",
          "connect-error", "closed", "bad-response", "timeout")
WARMUP_S = 1.0
THROTTLE_SKIP_S = 3.0
THROTTLE_WINDOW_S = 10.0
RSS_SETTLE_S = 3.0
NOISY_PCT = 25.0


def duration_ms(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", str(text).strip())
    if not m:
        raise ValueError("not a duration: %r" % text)
    return int(m.group(1)) * {"ms": 1, "s": 1000, None: 1000, "m": 60000, "h": 3600000, "d": 86400000}[m.group(2)]


def route_conf(config, name):
    for r in config.get("routes") or []:
        if r.get("name") == name or r.get("match", "").startswith("GET /%s/" % name):
            return r
    return {}


def percentile(sorted_values, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def ms(v):
    return "–" if v != v else ("%.1f ms" % v if v < 1000 else "%.2f s" % (v / 1000))


class Window:
    """The requests of one route whose scheduled (or sent) time is in [lo, hi) seconds."""

    def __init__(self, rows, route, lo, hi, by="intended_ms"):
        self.lo, self.hi = lo, hi
        self.rows = [r for r in rows if r["route"] == route and r[by] is not None and lo * 1000 <= r[by] < hi * 1000]
        self.ok_lat = sorted(r["lat"] for r in self.rows if r["outcome"] == "ok")
        self.count = {}
        for r in self.rows:
            self.count[r["outcome"]] = self.count.get(r["outcome"], 0) + 1

    def n(self, *outcomes):
        return sum(self.count.get(o, 0) for o in outcomes)

    def errors(self):
        return self.n(*ERRORS)

    def error_text(self):
        parts = ["%s %d" % (o, self.count[o]) for o in ERRORS if self.count.get(o)]
        return ", ".join(parts) if parts else "0"

    def p(self, q):
        return percentile(self.ok_lat, q)

    def span(self):
        return self.hi - self.lo


def load_rows(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            r["intended_ms"] = float(r["intended_ms"])
            r["sent_ms"] = float(r["sent_ms"]) if r["sent_ms"] else None
            r["done_ms"] = float(r["done_ms"])
            r["lat"] = r["done_ms"] - r["intended_ms"]
            rows.append(r)
    return rows


def load_samples(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def cpu_use(samples, lo, hi):
    """Shares of a CPU (%) from time lo to hi: levee's, and other work's on
    CPU 0 and on CPU 1; None when the samples do not cover the span."""
    a = next((m for m in samples if m["t_s"] >= lo - 0.05), None)
    b = next((m for m in samples if m["t_s"] >= hi - 0.05), None)
    if not a or not b or b is a or min(a["levee_cpu"], b["levee_cpu"], a["cpu0_busy"]) < 0:
        return None
    t0 = b["cpu0_total"] - a["cpu0_total"]
    t1 = b["cpu1_total"] - a["cpu1_total"]
    if t0 <= 0 or t1 <= 0:
        return None
    levee = b["levee_cpu"] - a["levee_cpu"]
    mine = (b["origin_cpu"] - a["origin_cpu"] if a["origin_cpu"] >= 0 and b["origin_cpu"] >= 0 else 0) + \
        (b["load_cpu"] - a["load_cpu"])
    return (100 * levee / t0, max(0.0, 100 * (b["cpu0_busy"] - a["cpu0_busy"] - levee) / t0),
            max(0.0, 100 * (b["cpu1_busy"] - a["cpu1_busy"] - mine) / t1))


def read(path):
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError:
        return "(missing)"


def main():
    ap = argparse.ArgumentParser()
    for name in ("csv", "samples", "config", "targets", "machine", "commands", "generator", "metrics",
                 "origin_stats", "out", "scenario", "desc", "levee_exit"):
        ap.add_argument("--" + name.replace("_", "-"), required=True)
    for name in ("flood_start", "ramp", "hold", "calm_end", "flood_rate", "calm_rate", "service_ms",
                 "workers", "overload"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, required=True)
    a = ap.parse_args()

    rows = load_rows(a.csv)
    samples = load_samples(a.samples)
    rss = [(m["t_s"], int(m["rss_kb"])) for m in samples]
    with open(a.config) as f:
        config = yaml.safe_load(f) or {}
    with open(a.targets) as f:
        targets = yaml.safe_load(f) or {}
    t_flood = route_conf(targets, "flood")
    rate = float(t_flood["throttle"]["rate"])
    queue_timeout_ms = duration_ms(t_flood["queue"]["timeout"])
    run_flood = route_conf(config, "flood")
    admission_keys = [k for k in ("throttle", "throttle_per_client", "concurrency", "queue")
                      if k in run_flood or k in route_conf(config, "calm")]

    fs, fe = a.flood_start, a.flood_start + a.ramp + a.hold
    idle = Window(rows, "calm", WARMUP_S, fs)
    calm_flood = Window(rows, "calm", fs, fe)
    calm_after = Window(rows, "calm", fe, a.calm_end)
    flood = Window(rows, "flood", fs, fe)
    flood_hold = Window(rows, "flood", fs + a.ramp, fe)
    tw_lo = fs + THROTTLE_SKIP_S
    tw_hi = min(tw_lo + THROTTLE_WINDOW_S, fe)
    throttle_win = Window(rows, "flood", tw_lo, tw_hi, by="sent_ms")

    # ---- the checks ----
    checks = []
    idle_p99, calm_p99 = idle.p(0.99), calm_flood.p(0.99)
    calm_not_ok = len(calm_flood.rows) - calm_flood.n("ok")
    ok1 = calm_p99 <= 2 * idle_p99 and calm_not_ok == 0 and len(calm_flood.rows) > 0
    checks.append(("1. calm route p99 during the flood ≤ 2 × its idle p99 (and all 2xx)",
                   "%s vs idle %s (limit %s); %d of %d calm requests not 2xx" %
                   (ms(calm_p99), ms(idle_p99), ms(2 * idle_p99), calm_not_ok, len(calm_flood.rows)), ok1))
    limit2 = queue_timeout_ms + a.service_ms
    flood_p99 = flood.p(0.99)
    ok2 = flood_p99 < limit2
    checks.append(("2. flood route: admitted-request p99 < queue.timeout + origin time",
                   "%s (limit %d + %d = %d ms)" % (ms(flood_p99), queue_timeout_ms, a.service_ms, limit2), ok2))
    passed = len(throttle_win.rows) - throttle_win.n("429")
    admitted_rate = passed / throttle_win.span() if throttle_win.span() > 0 else float("nan")
    dev = (admitted_rate - rate) / rate
    ok3 = abs(dev) <= 0.05 and throttle_win.span() >= THROTTLE_WINDOW_S - 1e-9
    checks.append(("3. throttle admits `rate` ±5%% over %.0f s" % throttle_win.span(),
                   "%.1f req/s past the throttle (%d answers other than 429 sent in %.1f–%.1f s) vs rate %g: %+.1f%%"
                   % (admitted_rate, passed, tw_lo, tw_hi, rate, dev * 100), ok3))
    all_w = [Window(rows, r, -1, 1e9) for r in ("flood", "calm")]
    resets = sum(w.n("reset") for w in all_w)
    errors = sum(w.errors() for w in all_w)
    fives = sum(w.n("5xx", "503-no-retry-after") for w in all_w)
    settle = [s for s in rss if fs + RSS_SETTLE_S <= s[0] <= fe]
    gone = any(kb < 0 for _, kb in rss) or a.levee_exit not in ("0", "running")
    if settle and not gone:
        ref = settle[0][1]
        top = max(kb for _, kb in settle)
        allowed = max(1024, 0.05 * ref)
        rss_ok = top - ref <= allowed
        rss_text = "RSS %d kB at +%.0f s, at most %d kB until the flood ended (+%d kB, allowed +%d kB)" % (
            ref, RSS_SETTLE_S, top, top - ref, allowed)
    else:
        rss_ok = False
        rss_text = "levee went away during the run (exit %s)" % a.levee_exit if gone else "no RSS samples"
    ok4 = resets == 0 and errors == 0 and rss_ok
    checks.append(("4. no resets, no 5xx but 503 with Retry-After, no other errors, RSS flat",
                   "resets %d, 5xx other than 503+Retry-After %d, errors of any kind %d; %s" %
                   (resets, fives, errors, rss_text), ok4))
    all_ok = all(c[2] for c in checks)

    # ---- generator health ----
    lags = sorted(r["sent_ms"] - r["intended_ms"] for r in rows if r["sent_ms"] is not None)
    lag_p99, lag_max = percentile(lags, 0.99), (lags[-1] if lags else float("nan"))
    waited = re.search(r"(\d+) requests waited for a connection slot", read(a.generator))
    gen_ok = lag_p99 <= 5 and not waited
    # The flood's first second: is the crowd really there within a second?
    first_sec = Window(rows, "flood", fs, fs + 1)
    end = int(math.ceil(max(a.calm_end, fe)))
    per_sec_cpu = [cpu_use(samples, s, s + 1) for s in range(end)]
    noisy = [(s, c) for s, c in enumerate(per_sec_cpu) if c and max(c[1], c[2]) > NOISY_PCT]
    idle_cpu, flood_cpu = cpu_use(samples, WARMUP_S, fs), cpu_use(samples, fs, fe)

    # ---- the report ----
    L = []
    w = L.append
    verdict = lambda ok: "**PASS**" if ok else "**FAIL**"
    w("# levee spike test: %s" % a.desc)
    w("")
    config_name = os.path.relpath(a.config)
    w("Produced by `bench/spike/run.sh` (SCENARIO=%s). Config: `%s`%s." % (
        a.scenario, config_name,
        "" if admission_keys else " — **no admission control**: the checks below are the targets of "
        "`levee-spike.yaml`, and this run shows what happens without them"))
    w("")
    conc = t_flood.get("concurrency")
    bulkhead = (" and %.1f × the %.0f req/s its bulkhead of %d lets through" % (
        a.flood_rate / (conc * 1000 / a.service_ms), conc * 1000 / a.service_ms, conc)) if conc else ""
    w("Flash crowd: the flood route goes from 0 to %.0f req/s (%g × its throttle rate of %g/s%s) in %g s "
      "at t = %g s and holds for %g s; the calm route gets a steady %g req/s from t = 0 to %g s. Origin: "
      "`spike_origin`, %d ms per request, %d workers (%.0f req/s at most). Open-loop arrivals, evenly "
      "spaced; latency from each request's scheduled time." % (
          a.flood_rate, a.overload, rate, bulkhead, a.ramp, fs, a.hold, a.calm_rate, a.calm_end, a.service_ms,
          a.workers, a.workers * 1000 / a.service_ms))
    w("")
    w("## Checks: %s" % ("all passed" if all_ok else "%d of 4 failed" % sum(not c[2] for c in checks)))
    w("")
    w("| check | measured | result |")
    w("|---|---|---|")
    for name, text, ok in checks:
        w("| %s | %s | %s |" % (name, text, verdict(ok)))
    w("")
    if noisy:
        w("**Noisy run**: other work took more than %.0f%% of a CPU in %d second(s) (%s); latencies in "
          "those seconds say more about the machine than about levee. Rerun on a quiet machine." % (
              NOISY_PCT, len(noisy), "; ".join("t=%d s: CPU 0 %.0f%%, CPU 1 %.0f%%" % (s, c[1], c[2])
                                               for s, c in noisy[:8]) + ("; …" if len(noisy) > 8 else "")))
        w("")
    if not gen_ok:
        w("**The generator fell behind** (send lag p99 %.1f ms%s): arrivals were not open-loop as "
          "scheduled; latencies include the delay." % (lag_p99, ", " + waited.group(0) if waited else ""))
        w("")
    w("## Per route")
    w("")
    w("Windows by scheduled send time. *admitted/s*: 2xx answers per second of the window; latency "
      "percentiles are of the 2xx answers. *errors*: anything but 2xx, 429 with Retry-After and 503 with "
      "Retry-After.")
    w("")
    w("| route | window | requests | offered/s | admitted/s | p50 | p99 | max | 429 | 503 | errors |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, what, win in (("calm", "idle", idle), ("calm", "during the flood", calm_flood),
                             ("calm", "after the flood", calm_after), ("flood", "ramp + hold", flood),
                             ("flood", "hold", flood_hold)):
        name = "%s, %g–%g s" % (what, win.lo, win.hi)
        sp = win.span()
        w("| %s | %s | %d | %.0f | %.1f | %s | %s | %s | %d | %d | %s |" % (
            label, name, len(win.rows), len(win.rows) / sp if sp else 0, win.n("ok") / sp if sp else 0,
            ms(win.p(0.5)), ms(win.p(0.99)), ms(win.ok_lat[-1] if win.ok_lat else float("nan")),
            win.n("429"), win.n("503"), win.error_text()))
    w("")
    peak = max((kb for _, kb in rss), default=-1)
    before = [kb for t, kb in rss if t <= fs]
    w("levee RSS (VmRSS, sampled every 250 ms): %s kB before the flood, peak %d kB, %s kB at the end." % (
        before[-1] if before else "?", peak, rss[-1][1] if rss else "?"))
    w("Flood ramp: %d requests scheduled in its first second (%.0f req/s reached at +%g s)." % (
        len(first_sec.rows), a.flood_rate, a.ramp))
    w("Generator: send lag (written − scheduled) p99 %.2f ms, max %.2f ms%s." % (
        lag_p99, lag_max, "; " + waited.group(0) if waited else ""))
    for label, c in (("idle", idle_cpu), ("during the flood", flood_cpu)):
        if c:
            w("CPU, %s: levee %.0f%% of CPU 0; other work %.0f%% of CPU 0 and %.0f%% of CPU 1." % (label, *c))
    w("")
    w("## Per second")
    w("")
    w("Requests by the second they were scheduled in; RSS is the last sample of that second; CPU columns "
      "are shares of one CPU over that second (*other*: work on that CPU by anything but levee, or but "
      "the origin and the generator).")
    w("")
    w("| t (s) | flood sent | flood 2xx | 429 | 503 | flood errors | flood p99 | calm sent | calm 2xx | "
      "calm other | calm p99 | levee RSS kB | levee CPU | other CPU 0 | other CPU 1 |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in range(0, end):
        f = Window(rows, "flood", s, s + 1)
        c = Window(rows, "calm", s, s + 1)
        r = [kb for t, kb in rss if s <= t < s + 1]
        u = per_sec_cpu[s]
        w("| %d | %d | %d | %d | %d | %d | %s | %d | %d | %d | %s | %s | %s |" % (
            s, len(f.rows), f.n("ok"), f.n("429"), f.n("503"), f.errors(), ms(f.p(0.99)) if f.ok_lat else "–",
            len(c.rows), c.n("ok"), len(c.rows) - c.n("ok"), ms(c.p(0.99)) if c.ok_lat else "–",
            r[-1] if r else "–", " | ".join("%.0f%%" % v for v in u) if u else "– | – | –"))
    w("")
    w("## What the origin and levee counted")
    w("")
    w("Origin (`/__stats` of spike_origin; *peak_in_service* per route is what the bulkheads let through "
      "at once):")
    w("")
    w("```")
    stats = read(a.origin_stats)
    try:
        w(json.dumps(json.loads(stats), indent=1, sort_keys=True))
    except ValueError:
        w(stats)
    w("```")
    w("")
    w("levee `/metrics` at the end (non-zero samples; histogram buckets and cache series left out); "
      "levee exit status after SIGTERM: %s." % a.levee_exit)
    w("")
    w("```")
    for line in read(a.metrics).splitlines():
        if line.startswith("#") or "_bucket" in line or line.startswith("levee_cache"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) == 2 and parts[1] not in ("0", "0.0"):
            w(line)
    w("```")
    w("")
    w("## Machine")
    w("")
    w(read(a.machine))
    w("")
    w("## Config (%s)" % config_name)
    w("")
    w("```yaml")
    w(read(a.config))
    w("```")
    w("")
    w("## Commands")
    w("")
    w("```")
    w(read(a.commands))
    w("```")
    w("")
    w("## Generator output")
    w("")
    w("```")
    w(read(a.generator))
    w("```")
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")

    for name, text, ok in checks:
        print("%s  %s: %s" % ("PASS" if ok else "FAIL", name, text))
    if not gen_ok:
        print("WARNING: the generator fell behind (lag p99 %.1f ms)" % lag_p99)
    if noisy:
        print("WARNING: noisy run: other work took more than %.0f%% of a CPU in %d second(s)" % (
            NOISY_PCT, len(noisy)))
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
