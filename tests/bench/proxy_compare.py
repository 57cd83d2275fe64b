#!/usr/bin/env python3
"""Helpers and the table of ``run_proxy_bench.sh``. Standard library only (and compare.py).

    proxy_compare.py annotate RESULT.jsonl --side S --run N --ticks-before U N --ticks-after U N
        one measure.py RESULT line of run-peer-bench.sh (RUNS=1), with the side, the run and the
        split of the side's CPU between its upstream server and its nginx (clock ticks of each
        process tree before and after the measurement), printed as one JSON line;
    proxy_compare.py table RESULTS.jsonl [--sides "ours-direct ours-nginx peer-nginx"] ...
        per client, mode and side: medians over the runs; then the ratios of sides, each the
        median over the runs of the ratio of the two measurements taken in the same round.

``server_cpu_pct`` is measure.py's: the CPU of the TARGET_PID's process tree, percent of ONE
core over the run's window. For a side behind nginx that tree holds nginx and the upstream;
``upstream_cpu_pct`` and ``nginx_cpu_pct`` split it in proportion to the two trees' ticks over
the whole run-peer-bench.sh call (its sanity requests and quiet wait cost next to nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from compare import Group, table

# (numerator, denominator) sides whose per-round ratios are reported, when both were measured.
RATIOS = [
    ("ours-nginx", "ours-direct"),
    ("ours-nginx", "peer-nginx"),
    ("ours-direct", "peer-nginx"),
    ("peer-nginx", "peer-direct"),
    ("ours-direct", "peer-direct"),
]


def annotate(args: argparse.Namespace) -> int:
    lines = [line for line in args.result.read_text().splitlines() if line.strip()]
    if len(lines) != 1:
        raise SystemExit(f"{args.result}: {len(lines)} results, expected 1 (RUNS=1, one client, one mode)")
    row = json.loads(lines[0])
    upstream = max(0, args.ticks_after[0] - args.ticks_before[0])
    nginx = max(0, args.ticks_after[1] - args.ticks_before[1])
    share = nginx / (upstream + nginx) if upstream + nginx else 0.0
    total = float(row.get("server_cpu_pct") or 0)
    row.update(side=args.side, run=args.run, upstream_ticks=upstream, nginx_ticks=nginx,
               nginx_cpu_pct=round(total * share, 1), upstream_cpu_pct=round(total * (1 - share), 1))
    print(json.dumps(row))
    return 0


def per_token_us(row: dict) -> float | None:
    # % of one core over the window * 10_000 / (tokens/s) = µs of CPU per token
    return float(row.get("server_cpu_pct") or 0) * 10_000.0 / row["rps"] if row.get("rps") else None


def round_ratios(num: list[dict], den: list[dict], key) -> list[float]:
    """Ratios of the measurements of the same run (taken in the same round, seconds apart)."""
    by_run = {r["run"]: r for r in den}
    out = []
    for r in num:
        d = by_run.get(r["run"])
        a, b = key(r), key(d) if d else None
        if a and b:
            out.append(a / b)
    return out


def fmt_ratio(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def render(args: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    cells: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cells[(row["label"], row["mode"])][row["side"]].append(row)
    sides = args.sides.split() if args.sides else sorted({r["side"] for r in rows})
    keys = sorted(cells, key=lambda k: (k[0] != "pki", k[1] != "keepalive", k))

    print("Token endpoint through nginx: one process per server, one nginx worker, same load generator;"
          " rounds interleaved")
    print(f"results: {args.results}\n")
    header = ["client", "mode", "side", "conns", "tokens/s", "p50 / p99 ms", "CPU µs/tok",
              "cores: server + nginx", "loadgen cores", "errors", "foreign %core (max)"]
    out: list[list[str]] = []
    for key in keys:
        for side in sides:
            runs = cells[key].get(side)
            if not runs:
                continue
            g = Group(runs)
            nginx = g.med("nginx_cpu_pct") / 100 if side.endswith("-nginx") else None
            cores = f"{g.med('upstream_cpu_pct') / 100:.2f} + {nginx:.2f}" if nginx is not None \
                else f"{g.med('server_cpu_pct') / 100:.2f}"
            out.append([key[0], key[1], side, str(g.conns), f"{g.med('rps'):.0f}",
                        f"{g.med('p50_ms'):.2f} / {g.med('p99_ms'):.2f}", f"{g.cpu_us_per_token:.0f}", cores,
                        f"{g.med('loadgen_cpu_pct_window') / 100:.2f}", f"{sum(g.values('errors')):.0f}",
                        f"{max(g.values('foreign_cpu_pct')):.0f}"])
    print(table(header, out))
    print("\ntokens/s, p50/p99, cores: medians over the runs. CPU µs/tok: the side's server CPU per token"
          " (behind nginx: the server's plus nginx's), median over the runs. cores: CPU used during the"
          " run's window (warm-up included) in cores of the box's 2; the load generator shares them.")

    header = ["client", "mode", "ratio", "tokens/s", "CPU per token", "p99 ms"]
    out = []
    for key in keys:
        for num, den in RATIOS:
            a, b = cells[key].get(num), cells[key].get(den)
            if not a or not b:
                continue
            out.append([key[0], key[1], f"{num} / {den}",
                        fmt_ratio(round_ratios(a, b, lambda r: r.get("rps"))),
                        fmt_ratio(round_ratios(a, b, per_token_us)),
                        f"{Group(a).med('p99_ms'):.2f} / {Group(b).med('p99_ms'):.2f}"])
    print()
    print(table(header, out))
    print("\nratio: median over the runs of (numerator / denominator) of the two measurements taken in the"
          " same round (lowest-highest); p99: the two sides' medians.")

    print(f"\nMachine load (runs with foreign CPU > {args.max_foreign:.0f}% of a core were retried;"
          " kept ones flagged)")
    for side in sides:
        side_rows = [r for r in rows if r["side"] == side]
        if not side_rows:
            continue
        fc = [float(r.get("foreign_cpu_pct") or 0) for r in side_rows]
        flagged = [r for r in side_rows if float(r.get("foreign_cpu_pct") or 0) > args.max_foreign]
        print(f"  {side}: {len(side_rows)} runs kept, foreign CPU median {statistics.median(fc):.1f}%"
              f" max {max(fc):.1f}% of a core; {len(flagged)} kept above the limit")
    if args.console and args.console.exists():
        text = args.console.read_text(errors="replace")
        print(f"  all sides: {text.count('discarded, retrying')} runs discarded and repeated (foreign CPU),"
              f" {text.count('WARNING: machine still')} measurements started on a busy box (quiet wait timed out)")
        for line in text.splitlines():
            if line.startswith(("knobs:", "box:")) or ": our server: " in line or ": peer: " in line \
                    or ": nginx: " in line:
                print(f"  {line}")
    if args.notes and args.notes.exists():
        print()
        print(args.notes.read_text().rstrip())
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("annotate")
    a.add_argument("result", type=Path)
    a.add_argument("--side", required=True)
    a.add_argument("--run", type=int, required=True)
    a.add_argument("--ticks-before", type=int, nargs=2, required=True, metavar=("UPSTREAM", "NGINX"))
    a.add_argument("--ticks-after", type=int, nargs=2, required=True, metavar=("UPSTREAM", "NGINX"))
    t = sub.add_parser("table")
    t.add_argument("results", type=Path)
    t.add_argument("--sides", default="", help="the order of the sides in the table")
    t.add_argument("--max-foreign", type=float, default=15.0, help="MAX_FOREIGN of run-peer-bench.sh")
    t.add_argument("--console", type=Path, help="the invocation's console output")
    t.add_argument("--notes", type=Path, help="a text file printed at the end")
    args = ap.parse_args()
    return annotate(args) if args.command == "annotate" else render(args)


if __name__ == "__main__":
    raise SystemExit(main())
