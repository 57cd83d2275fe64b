#!/usr/bin/env python3
"""Measurements and tables of ``run_store_bench.sh``: the Redis store against SQLite, 2 workers
and 2 instances against 1, and against the peer with 2 workers.

    store_bench.py measure --out FILE.jsonl --side S --run N --client pki --mode keepalive \\
        --loadgen BIN --pki DIR --client-id ID --duration 10 --warmup 2 \\
        --target URL CONNS [--target URL CONNS] --side-pid PID [--side-pid PID] \\
        --bench-pid PID ... [--redis-port P --redis-pid PID] [--peer-dir DIR]
        One measurement of one side: every --target gets its own load generator, all started at
        once (8 connections each for a side of two instances), and the CPU of every process is
        read from /proc before and after. Appends one JSON line to FILE.
    store_bench.py table FILE.jsonl [--sides "..."] [--max-foreign 15] [--console FILE] [--notes FILE]
        The tables: per side, the ratios of the sides measured in the same round, Redis's
        commands per token, and the 2-worker figure taken apart.

CPU accounting (``/proc``, clock ticks): the side's processes are the trees under its
``--side-pid`` s (a uvicorn master and its workers, a node cluster primary and its workers, or
the two processes of two instances), listed one by one; the load generators' CPU is
``RUSAGE_CHILDREN`` of this process (they are its children, reaped); Redis is ``--redis-pid``;
the other sides' servers, idle meanwhile, are the trees under the other ``--bench-pid`` s;
``foreign`` is what is left of the box's busy time (``/proc/stat``) once all of those are taken
out. All in percent of ONE core over the window (warm-up included); the box has two.

Redis commands: ``INFO commandstats`` read before and after the measurement, the bench's own
``INFO``/``PUBSUB`` calls left out. Each serving process holds a subscription that PINGs once
a second: that is the expected background, independent of the load; anything else divided by
the tokens served in the window is what the hot path costs in Redis round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The same paired-round ratios as the proxy benchmark (run as scripts: this directory is on sys.path).
from proxy_compare import fmt_ratio, round_ratios

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
CHANNEL = "authz:changes"
# The bench's own Redis calls, not counted.
OWN_COMMANDS = {"info", "pubsub|numsub", "config|resetstat"}
# ss -Htnp state established: "Recv-Q Send-Q LOCAL:PORT PEER:PORT users:(("name",pid=N,fd=M),...)"
SS_LINE = re.compile(r"^\s*\d+\s+\d+\s+\S+:(\d+)\s+\S+")
SS_PID = re.compile(r"pid=(\d+)")

# (numerator, denominator, target or None, what it says)
RATIOS: list[tuple[str, str, float | None, str]] = [
    ("redis", "sqlite", 0.9, "Redis store / SQLite store, 1 worker each"),
    ("redis-w2", "redis", None, "--workers 2 / 1 worker, Redis"),
    ("redis-2inst", "redis", None, "2 instances (8+8 conns) / 1 instance, Redis"),
    ("redis-2inst", "redis-w2", None, "2 instances / --workers 2"),
    ("redis-w2", "peer-w2", None, "ours --workers 2 / peer 2 workers"),
    ("redis-2inst", "peer-w2", None, "ours 2 instances / peer 2 workers"),
    ("redis-2inst", "peer-2inst", None, "ours 2 instances / peer 2 instances"),
    ("peer-w2", "peer-w1", None, "peer 2 workers / 1 worker"),
    ("peer-2inst", "peer-w2", None, "peer 2 instances / 2 workers"),
    ("redis", "peer-w1", None, "ours 1 worker / peer 1 worker"),
    ("sqlite-w2", "sqlite", None, "--workers 2 / 1 worker, SQLite"),
    ("redis-w2", "sqlite-w2", None, "Redis / SQLite, --workers 2 each"),
]

WHAT = {
    "sqlite": "ours, 1 worker, SQLite store",
    "redis": "ours, 1 worker, Redis store",
    "redis-w2": "ours, --workers 2, Redis",
    "redis-2inst": "ours, 2 instances, Redis",
    "sqlite-w2": "ours, --workers 2, SQLite",
    "peer-w1": "peer, 1 process",
    "peer-w2": "peer, 2 workers (cluster)",
    "peer-2inst": "peer, 2 processes",
}


# ------------------------------------------------------------------------------------ /proc

def machine() -> tuple[int, int]:
    """(busy, steal) clock ticks of all cores since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - v[3] - v[4], v[7]


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime ticks)."""
    out: dict[int, tuple[int, int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            out[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def nivcsw(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(procs: dict[int, tuple[int, int]], root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in procs.items():
        children[ppid].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def role(pid: int, roots: list[int]) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmd = ""
    if "resource_tracker" in cmd:
        return "tracker"
    if pid in roots:
        return "main"
    return "worker"


class Snapshot:
    def __init__(self, side_roots: list[int], bench_roots: list[int], redis: Any) -> None:
        self.time = time.monotonic()
        self.busy, self.steal = machine()
        self.procs = processes()
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children_cpu = r.ru_utime + r.ru_stime
        self.children_nivcsw = r.ru_nivcsw
        self.side = {p: self.procs[p][1] for root in side_roots for p in tree(self.procs, root)}
        self.side_nivcsw = {p: nivcsw(p) for p in self.side}
        self.others = sum(self.procs[p][1] for root in bench_roots if root not in side_roots
                          for p in tree(self.procs, root))
        self.redis = redis_stats(redis) if redis is not None else None


def redis_stats(client: Any) -> dict[str, Any]:
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    numsub = dict(client.pubsub_numsub(CHANNEL))
    return {"calls": calls, "subscribers": int(next(iter(numsub.values()), 0))}


# --------------------------------------------------------------------------------- measure

def loadgen_args(a: argparse.Namespace, url: str, conns: int) -> list[str]:
    cert = "client" if a.client == "pki" else "selfsigned"
    return [a.loadgen, "-u", url, "--cert", f"{a.pki}/{cert}.crt", "--key", f"{a.pki}/{cert}.key",
            "--cacert", f"{a.pki}/ca.crt", "-b", f"grant_type=client_credentials&client_id={a.client_id}",
            "--expect", '"access_token"', "-m", a.mode, "-c", str(conns), "-d", str(a.duration),
            "-w", str(a.warmup), "--json"]


def once(a: argparse.Namespace, redis: Any) -> dict[str, Any]:
    side_roots = a.side_pid
    bench_roots = sorted(set(a.bench_pid) | set(side_roots))
    before = Snapshot(side_roots, bench_roots, redis)
    loadgens = [subprocess.Popen(loadgen_args(a, url, int(conns)), stdout=subprocess.PIPE, text=True)
                for url, conns in a.target]
    try:
        # Redis's counters once the warm-up is over: the measured window starts about then.
        time.sleep(max(0.0, before.time + a.warmup + 0.2 - time.monotonic()))
        warm = (time.monotonic(), redis_stats(redis) if redis is not None else None)
        # Halfway through the measured window: which process holds which connection.
        time.sleep(max(0.0, before.time + a.warmup + a.duration / 2 - time.monotonic()))
        held = connections_per_pid({urlsplit(url).port or 443 for url, _ in a.target})
        outputs = [p.communicate()[0] for p in loadgens]
    finally:
        for p in loadgens:
            if p.poll() is None:
                p.kill()
                p.wait()
    after = Snapshot(side_roots, bench_roots, redis)
    wall = after.time - before.time

    def pct(ticks: float) -> float:
        return round(100.0 * ticks / HZ / wall, 1)

    results = []
    for url, out in zip([t[0] for t in a.target], outputs, strict=True):
        lines = [line for line in out.splitlines() if line.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"rps": 0, "errors": -1, "error": "no JSON from the load generator"}
        res["url"] = url
        results.append(res)
        for line in out.splitlines():
            if not line.startswith("{"):
                print(f"  {line}")
    procs = []
    for pid in sorted(set(before.side) & set(after.side)):
        ticks = after.side[pid] - before.side[pid]
        procs.append({"pid": pid, "role": role(pid, side_roots), "cpu_pct": pct(ticks), "conns": held.get(pid, 0),
                      "nivcsw_per_s": round((after.side_nivcsw[pid] - before.side_nivcsw[pid]) / wall, 1)})
    server = sum(after.side[p] - before.side[p] for p in procs_pids(procs))
    loadgen_s = after.children_cpu - before.children_cpu
    redis_ticks = 0
    if a.redis_pid:
        redis_ticks = (after.procs.get(a.redis_pid, (0, 0))[1] - before.procs.get(a.redis_pid, (0, 0))[1])
    others = after.others - before.others
    busy = after.busy - before.busy
    foreign = max(0.0, busy - server - loadgen_s * HZ - redis_ticks - others)
    rps = sum(float(r.get("rps") or 0) for r in results)
    requests = sum(int(r.get("requests") or 0) for r in results)
    row: dict[str, Any] = {
        "side": a.side, "run": a.run, "label": a.client, "mode": a.mode,
        "conns": sum(int(c) for _, c in a.target), "loadgens": len(results),
        "rps": round(rps, 1), "requests": requests,
        "errors": sum(int(r.get("errors") or 0) for r in results),
        # Two load generators: the worse of the two (their percentiles cannot be merged).
        "p50_ms": max(float(r.get("p50_ms") or 0) for r in results),
        "p99_ms": max(float(r.get("p99_ms") or 0) for r in results),
        "per_loadgen": [{k: r.get(k) for k in ("url", "conns", "rps", "errors", "p50_ms", "p99_ms", "error")}
                        for r in results],
        "window_s": round(wall, 3), "measured_s": max(float(r.get("measured_s") or 0) for r in results),
        "server_cpu_pct": pct(server), "procs": procs,
        "loadgen_cpu_pct": round(100.0 * loadgen_s / wall, 1),
        "loadgen_nivcsw_per_s": round((after.children_nivcsw - before.children_nivcsw) / wall, 1),
        "redis_cpu_pct": pct(redis_ticks), "idle_sides_cpu_pct": pct(others),
        "foreign_cpu_pct": pct(foreign), "busy_cpu_pct": pct(busy),
        "steal_pct": pct(after.steal - before.steal), "ncpu": NCPU,
    }
    if before.redis is not None and after.redis is not None and warm[1] is not None:
        def calls(x: dict[str, Any], y: dict[str, Any]) -> dict[str, int]:
            return {k: v - x["calls"].get(k, 0) for k, v in y["calls"].items()
                    if k not in OWN_COMMANDS and v - x["calls"].get(k, 0)}

        delta = calls(warm[1], after.redis)
        seconds = after.time - warm[0]
        # Tokens served from the end of the warm-up on, at the measured rate.
        tokens = rps * seconds
        non_ping = sum(v for k, v in delta.items() if k != "ping")
        row["redis"] = {
            "commands": delta, "total": sum(delta.values()), "non_ping": non_ping,
            "warmup_commands": calls(before.redis, warm[1]), "seconds": round(seconds, 3),
            "tokens_in_window": round(tokens), "subscribers": after.redis["subscribers"],
            "per_token": round(sum(delta.values()) / tokens, 6) if tokens else None,
            "non_ping_per_token": round(non_ping / tokens, 6) if tokens else None,
            "ping_per_s": round(delta.get("ping", 0) / seconds, 2),
        }
    return row


def connections_per_pid(ports: set[int]) -> dict[int, int]:
    """Established TCP connections whose local port is one of ``ports``, per owning process (ss)."""
    try:
        out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    held: dict[int, int] = defaultdict(int)
    for line in out.splitlines():
        m = SS_LINE.search(line)
        if m and int(m.group(1)) in ports:
            for pid in {int(p) for p in SS_PID.findall(line)}:
                held[pid] += 1
    return dict(held)


def procs_pids(procs: list[dict[str, Any]]) -> list[int]:
    return [p["pid"] for p in procs]


def measure(a: argparse.Namespace) -> int:
    sys.path.insert(0, a.peer_dir)
    import measure as peer_measure  # the peer's quiet-box wait, as run-peer-bench.sh uses it

    redis = None
    if a.redis_port:
        import redis as redis_py

        redis = redis_py.Redis(host="127.0.0.1", port=a.redis_port, socket_timeout=5)
    row: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for attempt in range(a.retries + 1):
        peer_measure.quiet(a.quiet_wait, 10)
        print(f"== run {a.run} side={a.side} client={a.client} mode={a.mode} "
              f"targets={' '.join(f'{u}x{c}' for u, c in a.target)}{f' (retry {attempt})' if attempt else ''}",
              flush=True)
        row = once(a, redis)
        row["attempt"] = attempt
        procs = " + ".join(f"{p['role']} {p['cpu_pct']:.0f}" for p in row["procs"] if p["cpu_pct"] >= 0.5)
        print(f"   {row['rps']:.0f} tok/s, p50/p99 {row['p50_ms']:.2f}/{row['p99_ms']:.2f} ms, errors "
              f"{row['errors']}; %core: server {row['server_cpu_pct']:.0f} ({procs}), loadgen "
              f"{row['loadgen_cpu_pct']:.0f}, redis {row['redis_cpu_pct']:.0f}, idle sides "
              f"{row['idle_sides_cpu_pct']:.0f}, foreign {row['foreign_cpu_pct']:.0f}, box "
              f"{row['busy_cpu_pct']:.0f} of {100 * NCPU}, steal {row['steal_pct']:.0f}", flush=True)
        if "redis" in row:
            r = row["redis"]
            print(f"   redis: {r['total']} commands in the {r['seconds']:.1f} s after the warm-up "
                  f"({json.dumps(r['commands'], sort_keys=True)}), ~{r['tokens_in_window']} tokens: "
                  f"{r['per_token']} per token, {r['non_ping_per_token']} other than PING; "
                  f"{r['subscribers']} subscribers; during the warm-up: "
                  f"{json.dumps(r['warmup_commands'], sort_keys=True)}", flush=True)
        # Of the attempts, the one other processes disturbed least is kept.
        if not kept or row["foreign_cpu_pct"] < kept["foreign_cpu_pct"]:
            kept = row
        if row["foreign_cpu_pct"] <= a.max_foreign:
            break
        if attempt < a.retries:
            print(f"   other processes used {row['foreign_cpu_pct']:.0f}% of a core during this run "
                  f"(> {a.max_foreign:g}): retrying", flush=True)
        else:
            print(f"   WARNING: other processes used more than {a.max_foreign:g}% of a core during every attempt;"
                  f" kept attempt {kept['attempt']} ({kept['foreign_cpu_pct']:.0f}%)", flush=True)
    kept["attempts"] = attempt + 1
    with open(a.out, "a") as f:
        f.write(json.dumps(kept) + "\n")
    return 0


# ----------------------------------------------------------------------------------- table

def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r.get(key) or 0) for r in rows)


def us_per_token(row: dict[str, Any]) -> float | None:
    return float(row["server_cpu_pct"]) * 10_000.0 / row["rps"] if row.get("rps") else None


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(fmt(r) for r in rows)])


def per_process(rows: list[dict[str, Any]]) -> str:
    """Median %core [connections held] of the side's processes by rank, busiest first, e.g.
    '97[16] + 1[0]': the workers and single processes always, an idle master or tracker not."""
    ranked = []
    for r in rows:
        procs = [p for p in r["procs"] if p["role"] == "worker" or (p["role"] == "main" and (
            p["cpu_pct"] >= 0.5 or p.get("conns")))]
        ranked.append(sorted(((p["cpu_pct"], p.get("conns", 0)) for p in procs), reverse=True))
    n = max((len(x) for x in ranked), default=0)
    parts = []
    for i in range(n):
        cpu = statistics.median(x[i][0] if i < len(x) else 0 for x in ranked)
        conns = statistics.median(x[i][1] if i < len(x) else 0 for x in ranked)
        parts.append(f"{cpu:.0f}[{conns:.0f}]")
    return " + ".join(parts) or "0"


def render(a: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in a.results.read_text().splitlines() if line.strip()]
    cells: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cells[(row["label"], row["mode"])][row["side"]].append(row)
    sides = a.sides.split() if a.sides else sorted({r["side"] for r in rows})
    keys = sorted(cells, key=lambda k: (k[0] != "pki", k[1] != "keepalive", k))
    ncpu = rows[0].get("ncpu", NCPU) if rows else NCPU

    print("Token endpoint: Redis store vs SQLite, 2 workers / 2 instances vs 1, vs the peer; rounds interleaved")
    print(f"results: {a.results}\n")
    header = ["client", "mode", "side", "what", "conns", "tokens/s", "p50 / p99 ms", "CPU µs/tok",
              "server %core (per process [conns])", "loadgen %core", "redis %core", f"box %core (of {100 * ncpu})",
              "errors", "foreign max"]
    out = []
    for key in keys:
        for side in sides:
            g = cells[key].get(side)
            if not g:
                continue
            cpu = statistics.median(x for x in (us_per_token(r) for r in g) if x is not None) \
                if any(r.get("rps") for r in g) else 0.0
            out.append([key[0], key[1], side, WHAT.get(side, side),
                        "+".join(str(p["conns"]) for p in g[0]["per_loadgen"]), f"{med(g, 'rps'):.0f}",
                        f"{med(g, 'p50_ms'):.2f} / {med(g, 'p99_ms'):.2f}", f"{cpu:.0f}",
                        f"{med(g, 'server_cpu_pct'):.0f} ({per_process(g)})", f"{med(g, 'loadgen_cpu_pct'):.0f}",
                        f"{med(g, 'redis_cpu_pct'):.1f}", f"{med(g, 'busy_cpu_pct'):.0f}",
                        f"{sum(float(r.get('errors') or 0) for r in g):.0f}",
                        f"{max(float(r.get('foreign_cpu_pct') or 0) for r in g):.0f}"])
    print(table(header, out))
    print(f"\nMedians over {max((r['run'] for r in rows), default=0)} rounds. tokens/s: the sum over the side's load"
          " generators (2 instances: one per instance, half the connections each); p50/p99: the worse of them."
          " CPU µs/tok: the side's processes (all workers, the master) per token. %core: percent of ONE core over"
          f" the window (warm-up included); the box has {ncpu} cores, shared by the server, the load generator"
          " and Redis. per process: busiest first, [the connections it held halfway through the window]."
          " box: all CPU used on the box during the window.")

    header = ["client", "mode", "ratio", "what", "tokens/s", "CPU per token", "server %core", "target"]
    out = []
    verdicts = []
    for key in keys:
        for num, den, target, what in RATIOS:
            x, y = cells[key].get(num), cells[key].get(den)
            if not x or not y:
                continue
            rps = round_ratios(x, y, lambda r: r.get("rps"))
            verdict = ""
            if target is not None and key[1] == "keepalive" and rps:
                ok = statistics.median(rps) >= target
                verdict = f">= {target}: {'PASS' if ok else 'FAIL'}"
                if ok and min(rps) < target:
                    verdict += " (lowest round below)"
                verdicts.append(f"{num}/{den} {key[0]}/{key[1]}: {statistics.median(rps):.2f}x, {verdict}")
            out.append([key[0], key[1], f"{num} / {den}", what, fmt_ratio(rps),
                        fmt_ratio(round_ratios(x, y, us_per_token)),
                        fmt_ratio(round_ratios(x, y, lambda r: r.get("server_cpu_pct"))), verdict])
    print()
    print(table(header, out))
    print("\nratio: the median over the rounds of numerator / denominator, each pair measured in the same round,"
          " seconds apart (lowest-highest round).")

    redis_rows = [(key, side, cells[key][side]) for key in keys for side in sides
                  if cells[key].get(side) and all("redis" in r for r in cells[key][side])]
    if redis_rows:
        print("\nRedis commands while serving (INFO commandstats at the end of the warm-up and at the end of the"
              " measurement, the bench's own INFO/PUBSUB left out). Every side's servers stay up, idle when not"
              " measured, and each subscribed process PINGs once a second whatever the load: PING/s ~ subscribers.")
        header = ["client", "mode", "side", "tokens (all runs)", "commands after warm-up (all runs)", "per token",
                  "non-PING per token", "PING/s", "subscribers", "during warm-ups (all runs)"]
        out = []

        def summed(g: list[dict[str, Any]], field: str) -> dict[str, int]:
            total: dict[str, int] = defaultdict(int)
            for r in g:
                for k, v in r["redis"].get(field, {}).items():
                    total[k] += v
            return total

        def listed(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

        for key, side, g in redis_rows:
            total = summed(g, "commands")
            tokens = sum(r["redis"]["tokens_in_window"] for r in g)
            non_ping = sum(r["redis"]["non_ping"] for r in g)
            out.append([key[0], key[1], side, f"{tokens}", listed(total),
                        f"{sum(total.values()) / tokens:.6f}" if tokens else "-",
                        f"{non_ping / tokens:.6f}" if tokens else "-",
                        f"{statistics.median(r['redis']['ping_per_s'] for r in g):.1f}",
                        f"{statistics.median(r['redis']['subscribers'] for r in g):.0f}",
                        listed(summed(g, "warmup_commands"))])
        print(table(header, out))
        all_non_ping = sum(r["redis"]["non_ping"] for _, _, g in redis_rows for r in g)
        print(f"hot path with warm caches: {all_non_ping} Redis commands other than PING after the warm-ups of all"
              f" Redis measurements -> {'PASS (no round trip per token)' if all_non_ping == 0 else 'FAIL'}."
              " A command during a warm-up is a process's first request (a worker that had served none yet):"
              " its cache was cold.")
        verdicts.append(f"no Redis round trip per token once warm: {'PASS' if all_non_ping == 0 else 'FAIL'} "
                        f"({all_non_ping} non-PING commands after the warm-ups)")

    explain(cells, keys, ncpu)

    print("\nVerdicts")
    for v in verdicts:
        print(f"  {v}")
    print(f"\nMachine load (runs with foreign CPU > {a.max_foreign:g}% of a core were retried, the least"
          " disturbed attempt kept)")
    for side in sides:
        side_rows = [r for r in rows if r["side"] == side]
        if not side_rows:
            continue
        fc = [float(r.get("foreign_cpu_pct") or 0) for r in side_rows]
        st = [float(r.get("steal_pct") or 0) for r in side_rows]
        print(f"  {side}: {len(side_rows)} runs, foreign CPU median {statistics.median(fc):.1f}% max {max(fc):.1f}%"
              f" of a core, {sum(1 for x in fc if x > a.max_foreign)} kept above the limit,"
              f" {sum(int(r.get('attempts') or int(r.get('attempt') or 0) + 1) - 1 for r in side_rows)} retries;"
              f" steal max {max(st):.1f}%")
    if a.console and a.console.exists():
        text = a.console.read_text(errors="replace")
        print(f"  measurements started on a busy box (quiet wait timed out): {text.count('WARNING: machine still')}")
    if a.notes and a.notes.exists():
        print()
        print(a.notes.read_text().rstrip())
    return 0


def explain(cells: dict[tuple[str, str], dict[str, list[dict[str, Any]]]], keys: list[tuple[str, str]],
            ncpu: int) -> None:
    """The 2-process figures taken apart: tokens/s = server CPU / CPU per token, so the ratio to one
    worker = (the CPU the servers got) x (tokens per unit of CPU); and where the box's cores went."""
    total = 100 * ncpu
    lines = []
    for key in keys:
        one = cells[key].get("redis")
        if not one:
            continue
        s1, l1, b1 = med(one, "server_cpu_pct"), med(one, "loadgen_cpu_pct"), med(one, "busy_cpu_pct")
        lines.append(f"{key[0]}/{key[1]}: 1 worker: {med(one, 'rps'):.0f} tok/s. Its one event loop used {s1:.0f} % of"
                     f" a core (the ceiling of one process is 100), the load generator {l1:.0f} %, the whole box"
                     f" {b1:.0f} of {total} %: {max(0.0, total - b1):.0f} % unused, what a second process can take.")
        for side, what in (("redis-2inst", "2 instances, 8+8 connections"), ("redis-w2", "--workers 2"),
                           ("peer-w2", "the peer, 2 workers")):
            two = cells[key].get(side)
            if not two:
                continue
            s2, l2, b2 = med(two, "server_cpu_pct"), med(two, "loadgen_cpu_pct"), med(two, "busy_cpu_pct")
            rest = med(two, "redis_cpu_pct") + med(two, "idle_sides_cpu_pct") + med(two, "foreign_cpu_pct")
            head = f"  {side} ({what}): {med(two, 'rps'):.0f} tok/s"
            if not side.startswith("peer"):
                head += (f" = {fmt_ratio(round_ratios(two, one, lambda r: r.get('rps')))} of 1 worker"
                         f" = {fmt_ratio(round_ratios(two, one, lambda r: r.get('server_cpu_pct')))} the CPU"
                         f" x {fmt_ratio(round_ratios(one, two, us_per_token))} tokens per unit of CPU")
            lines.append(head + ".")
            lines.append(f"    The {total} % of the box: servers {s2:.0f} ({per_process(two)}), load generator"
                         f" {l2:.0f}, Redis + idle sides + foreign {rest:.0f}, unused {max(0.0, total - b2):.0f}."
                         f" Server preemptions/s {preempt(two):.0f} (1 worker: {preempt(one):.0f}).")
            if not side.startswith("peer"):
                room = total - l2 - med(two, "redis_cpu_pct") - med(two, "idle_sides_cpu_pct")
                lines.append(f"    Without other sessions' load, the most the servers could get here is {total} % - the"
                             f" load generator - Redis - the idle sides = {room:.0f} % = {room / 100:.2f}x the one core"
                             f" a single worker can use; they got {s2 / 100:.2f} cores.")
            held = [max((p.get("conns", 0) for p in r["procs"]), default=0) / max(1, r["conns"]) for r in two]
            if side.endswith("-w2") and key[1] == "keepalive" and statistics.median(held) >= 0.75:
                lines.append(f"    One process held {100 * statistics.median(held):.0f} % of the {two[0]['conns']}"
                             " keep-alive connections (median over the rounds): the load did not spread over the"
                             " workers. Where the other worker held one or two connections and still used much CPU"
                             " (closed loop: a lone connection on an idle worker gets its answers fastest), it served"
                             " each token alone (a wake-up, a read and a write per token, nothing shared with other"
                             " connections), which costs more CPU per token than a worker full of connections.")
    if not lines:
        return
    print("\nThe 2-process figure, taken apart (medians; ratios: median over the rounds, lowest-highest)")
    print("\n".join(lines))
    print("Why: one worker is one Python event loop, capped at one core; with keep-alive connections the load"
          " generator needs only a small share of the other core, so one worker leaves most of a core idle. Two"
          " processes take that core too, but they share the two cores with the load generator (which has twice"
          " the tokens to send and read), Redis and the kernel's loopback TCP work: they cannot get 2x the CPU on"
          " this box, and every token costs a little more when both cores are busy (preemptions, caches). With"
          " uvicorn's --workers, the workers share one listening socket, and the connections the load generator"
          " opens at once go to whichever worker wakes first: the keep-alive load may stay on one worker (the"
          " [conns] above). The peer's cluster primary accepts and deals connections round-robin. On a"
          " production host the load comes from the network, not from a process on the same two cores.")


def preempt(rows: list[dict[str, Any]]) -> float:
    return statistics.median(sum(p.get("nivcsw_per_s", 0) for p in r["procs"]) for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--side", required=True)
    m.add_argument("--run", type=int, required=True)
    m.add_argument("--client", default="pki", choices=["pki", "selfsigned"])
    m.add_argument("--client-id", required=True)
    m.add_argument("--mode", default="keepalive")
    m.add_argument("--loadgen", required=True)
    m.add_argument("--pki", required=True)
    m.add_argument("--duration", type=float, default=10)
    m.add_argument("--warmup", type=float, default=2)
    m.add_argument("--target", nargs=2, action="append", required=True, metavar=("URL", "CONNS"))
    m.add_argument("--side-pid", type=int, action="append", required=True)
    m.add_argument("--bench-pid", type=int, action="append", default=[])
    m.add_argument("--redis-port", type=int, default=0)
    m.add_argument("--redis-pid", type=int, default=0)
    m.add_argument("--peer-dir", required=True, help="where the peer's measure.py is")
    m.add_argument("--quiet-wait", type=float, default=60)
    m.add_argument("--max-foreign", type=float, default=15)
    m.add_argument("--retries", type=int, default=3)
    t = sub.add_parser("table")
    t.add_argument("results", type=Path)
    t.add_argument("--sides", default="")
    t.add_argument("--max-foreign", type=float, default=15)
    t.add_argument("--console", type=Path)
    t.add_argument("--notes", type=Path)
    args = ap.parse_args()
    return measure(args) if args.command == "measure" else render(args)


if __name__ == "__main__":
    raise SystemExit(main())
