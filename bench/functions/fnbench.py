#!/usr/bin/python3
"""fnbench.py: the measuring half of bench/functions/run.sh.

run.sh starts and stops the servers; this file measures them and writes
what it saw as one JSON object per line (the report is built from those
lines by report.py, so every figure can be recomputed from the raw file).

Subcommands:
  load      one discarded warm-up wrk run, then the measured one, wrk pinned
            to CPU 1. CPU time is read from /proc/PID/stat (utime+stime,
            fields 14 and 15) before and after, for the server process and,
            separately, for each of its descendants (levee's workers). A
            process's own utime+stime never includes its children's: that
            goes to cutime/cstime (16, 17) only when a child is reaped, and
            those are recorded too, to show no worker was reaped mid-run.
  coldstart N sequential requests per function, each one sent only once
            the function has no worker left (idle_timeout: 0s scales it to
            zero); /metrics is read before and after each, so the change in
            a histogram's _sum is exactly that one cold start's duration.
  burst     reads /metrics, runs wrk from zero to full load, reads /metrics
            again: how many invocations had to wait for a cold start.
  wait      waits until a function has the given number of idle workers.
  metrics   prints the non-zero levee_function* series (for the report).

Every load is bounded by wrk's -d; every wait and request has a timeout.
"""

import argparse
import http.client
import json
import os
import re
import resource
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc ----

def proc_stat(pid):
    """(ppid, utime, stime, cutime, cstime, comm) in ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    return (int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]), comm)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root):
    """PIDs of every process below root (workers, and anything they ran)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st:
            children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def snapshot(root):
    """{pid: (utime+stime, cutime+cstime, comm, cmdline)} for root and its descendants."""
    snap = {}
    for pid in [root] + descendants(root):
        st = proc_stat(pid)
        if st:
            snap[pid] = (st[1] + st[2], st[3] + st[4], st[5], cmdline(pid))
    return snap


def cpu_busy_ticks(cpu):
    """Ticks CPU `cpu` has been busy (not idle, not iowait) since boot."""
    with open("/proc/stat") as f:
        for line in f:
            p = line.split()
            if p[0] == f"cpu{cpu}":
                v = [int(x) for x in p[1:]]
                return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return 0


# ------------------------------------------------------------------ wrk ----

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def parse_wrk(out):
    r = {"requests": 0, "rps": 0.0, "non2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        p = line.split()
        if "requests in" in line:
            r["requests"] = int(p[0])
        elif line.startswith("Requests/sec:"):
            r["rps"] = float(p[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            r["non2xx"] = int(p[-1])
        elif line.strip().startswith("Socket errors:"):
            r["socket_errors"] = sum(int(x) for x in re.findall(r"\d+", line))
        elif len(p) == 2 and p[0] in ("50%", "75%", "90%", "99%"):
            r["p" + p[0][:-1] + "_ms"] = to_ms(p[1])
    return r


def run_wrk(url, conns, duration, cpu):
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=to_seconds(duration) + 30)
    return cmd, done.stdout + done.stderr


def to_seconds(d):
    m = re.fullmatch(r"([0-9.]+)(ms|s|m)?", d)
    if not m:
        raise SystemExit(f"fnbench: bad duration {d}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


# -------------------------------------------------------------- metrics ----

def http_get(host, port, path, timeout=10.0):
    """(status, body bytes, seconds) of one GET on a fresh connection."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body, time.monotonic() - t0
    finally:
        c.close()


SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(admin):
    """{(name, frozenset(labels)): value} from levee's /metrics."""
    host, port = admin.rsplit(":", 1)
    status, body, _ = http_get(host, int(port), "/metrics")
    if status != 200:
        raise SystemExit(f"fnbench: {admin}/metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        if not m:
            continue
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return out


def metric(snap, name, **want):
    """Sum of every series `name` whose labels include `want` (0 if none)."""
    total = 0.0
    for (n, labels), v in snap.items():
        if n == name and all((k, str(x)) in labels for k, x in want.items()):
            total += v
    return total


def has_metric(snap, name):
    return any(n == name for n, _ in snap)


# Names levee exports (src/functions/pool.c); kept in one place so the
# script follows a rename in one edit.
M_COLD = "levee_function_cold_start_seconds"
M_SPAWN = "levee_function_spawn_seconds"
M_COLD_INV = "levee_function_cold_start_invocations_total"
M_WORKERS = "levee_function_workers"


def workers(snap, fn, state):
    return metric(snap, M_WORKERS, function=fn, state=state)


def wait_workers(admin, fn, state, want, timeout):
    """Polls /metrics until fn has exactly `want` workers in `state`."""
    deadline = time.monotonic() + timeout
    while True:
        snap = scrape(admin)
        have = workers(snap, fn, state)
        if have == want:
            return snap
        if time.monotonic() > deadline:
            raise SystemExit(f"fnbench: {fn}: {have:g} {state} workers after {timeout}s, wanted {want}")
        time.sleep(0.02)


# ---------------------------------------------------------- subcommands ----

def emit(out, rec):
    line = json.dumps(rec, sort_keys=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    print(line)


def cmd_load(a):
    if a.warmup and to_seconds(a.warmup) > 0:
        run_wrk(a.url, a.conns, a.warmup, a.client_cpu)
    m0 = scrape(a.admin) if a.admin else None
    def snap():
        out = snapshot(a.pid)
        if a.origin_pid:
            out.update({p: v for p, v in snapshot(a.origin_pid).items()})
        return out
    before, busy0, cbusy0 = snap(), cpu_busy_ticks(a.server_cpu), cpu_busy_ticks(a.client_cpu)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd, out = run_wrk(a.url, a.conns, a.duration, a.client_cpu)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after, busy1, cbusy1 = snap(), cpu_busy_ticks(a.server_cpu), cpu_busy_ticks(a.client_cpu)
    m1 = scrape(a.admin) if a.admin else None
    w = parse_wrk(out)
    reqs = max(w["requests"], 1)
    secs = to_seconds(a.duration)
    procs = []
    for pid in sorted(set(before) | set(after)):
        b, e = before.get(pid), after.get(pid)
        ref = e or b
        procs.append({
            "pid": pid,
            "role": "server" if pid == a.pid else "worker",   # an --origin-pid counts as a worker
            "comm": ref[2], "cmd": ref[3][:160],
            # born during the run: all its CPU is the run's; gone: unknown
            "ticks": e[0] - b[0] if b and e else (e[0] if e else None),
            "child_ticks": (e[1] - b[1]) if b and e else None,
            "seen": "both" if b and e else ("before" if b else "after"),
        })
    server = next(p for p in procs if p["role"] == "server")
    wk = [p for p in procs if p["role"] == "worker"]
    worker_ticks = sum(p["ticks"] or 0 for p in wk)
    rec = {
        "kind": "load", "label": a.label, "round": a.round, "url": a.url, "command": " ".join(cmd),
        "warmup": a.warmup, **w,
        "server_cpu_us_per_req": server["ticks"] / CLK_TCK * 1e6 / reqs,
        "workers_cpu_us_per_req": worker_ticks / CLK_TCK * 1e6 / reqs,
        "server_cpu_share": server["ticks"] / CLK_TCK / secs,
        "workers_cpu_share": worker_ticks / CLK_TCK / secs,
        "cpu0_busy_share": (busy1 - busy0) / CLK_TCK / secs,
        # wrk's own CPU (and the client core's whole busy time): a client
        # slowed by other work on its core lowers req/s, not CPU per request.
        "client_cpu_share": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / secs,
        "cpu1_busy_share": (cbusy1 - cbusy0) / CLK_TCK / secs,
        "server_reaped_ticks": server["child_ticks"],
        "workers_changed": [p["pid"] for p in wk if p["seen"] != "both"],
        "processes": procs, "wrk_output": out,
    }
    if m0 is not None:
        rec["cold_start_invocations"] = metric(m1, M_COLD_INV, function=a.function) - \
            metric(m0, M_COLD_INV, function=a.function)
        rec["cold_starts"] = metric(m1, M_COLD + "_count", function=a.function) - \
            metric(m0, M_COLD + "_count", function=a.function)
    emit(a.out, rec)


def cmd_burst(a):
    m0 = scrape(a.admin)
    cmd, out = run_wrk(a.url, a.conns, a.duration, a.client_cpu)
    m1 = scrape(a.admin)
    w = parse_wrk(out)
    f = a.function
    rec = {
        "kind": "burst", "label": a.label, "url": a.url, "command": " ".join(cmd), **w,
        "cold_start_invocations_before": metric(m0, M_COLD_INV, function=f),
        "cold_start_invocations_after": metric(m1, M_COLD_INV, function=f),
        "cold_starts_before": metric(m0, M_COLD + "_count", function=f),
        "cold_starts_after": metric(m1, M_COLD + "_count", function=f),
        "workers_before": {s: workers(m0, f, s) for s in ("idle", "busy", "starting")},
        "workers_after": {s: workers(m1, f, s) for s in ("idle", "busy", "starting")},
        "wrk_output": out,
    }
    emit(a.out, rec)


def cmd_coldstart(a):
    host, port = a.public.rsplit(":", 1)
    fns = a.functions.split(",")
    samples = {f: [] for f in fns}
    for i in range(a.n):
        for f in fns:   # interleaved, so slow moments of the machine hit every runtime alike
            m0 = wait_workers(a.admin, f, "idle", 0, a.timeout)
            if workers(m0, f, "busy") or workers(m0, f, "starting"):
                raise SystemExit(f"fnbench: {f} still has workers before request {i}")
            status, body, secs = http_get(host, int(port), f"/{f}", a.timeout)
            m1 = scrape(a.admin)
            d = lambda name: metric(m1, name, function=f) - metric(m0, name, function=f)
            count = d(M_COLD + "_count")
            samples[f].append({
                "status": status, "body": body[:64].decode(errors="replace"),
                "client_ms": secs * 1e3,
                "cold_starts": count,
                "cold_start_ms": d(M_COLD + "_sum") * 1e3 if count == 1 else None,
                "spawn_ms": d(M_SPAWN + "_sum") * 1e3 if d(M_SPAWN + "_count") == 1 else None,
            })
    for f in fns:
        emit(a.out, {"kind": "coldstart", "label": a.label, "function": f, "samples": samples[f]})


def cmd_wait(a):
    wait_workers(a.admin, a.function, a.state, a.want, a.timeout)


def cmd_metrics(a):
    snap = scrape(a.admin)
    # In levee's own order (a histogram's buckets stay in bound order).
    rows = [(n, sorted(l), v) for (n, l), v in snap.items() if n.startswith("levee_function") and v != 0]
    lines = [n + ("{" + ",".join(f'{k}="{v}"' for k, v in l) + "}" if l else "") + f" {v:g}"
             for n, l, v in rows]
    emit(a.out, {"kind": "metrics", "label": a.label, "lines": lines})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--label", default="")
        p.add_argument("--out", help="append the JSON line to this file too")
        p.add_argument("--admin", help="levee's admin listener, HOST:PORT")
        p.add_argument("--function", default="hello")
        p.add_argument("--timeout", type=float, default=30.0)

    p = sub.add_parser("load"); common(p)
    p.add_argument("--pid", type=int, required=True, help="the server's PID (workers are its descendants)")
    p.add_argument("--url", required=True)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--duration", default="10s")
    p.add_argument("--warmup", default="3s")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--round", type=int, default=1, help="which of REPEAT interleaved rounds")
    p.add_argument("--origin-pid", type=int, help="a process outside the server's tree whose CPU counts "
                   "with the workers' (the origin of the proxy reference)")
    p.set_defaults(fn=cmd_load)

    p = sub.add_parser("burst"); common(p)
    p.add_argument("--url", required=True)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--duration", default="3s")
    p.add_argument("--client-cpu", type=int, default=1)
    p.set_defaults(fn=cmd_burst)

    p = sub.add_parser("coldstart"); common(p)
    p.add_argument("--public", required=True, help="levee's public listener, HOST:PORT")
    p.add_argument("--functions", required=True, help="comma-separated; each routed at /NAME")
    p.add_argument("-n", type=int, default=20)
    p.set_defaults(fn=cmd_coldstart)

    p = sub.add_parser("wait"); common(p)
    p.add_argument("--state", default="idle")
    p.add_argument("--want", type=float, required=True)
    p.set_defaults(fn=cmd_wait)

    p = sub.add_parser("metrics"); common(p)
    p.set_defaults(fn=cmd_metrics)

    a = ap.parse_args()
    if a.cmd in ("burst", "coldstart", "wait", "metrics") and not a.admin:
        ap.error("--admin is required")
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
