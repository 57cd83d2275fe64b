#!/usr/bin/env python3
"""Summary of ``ab_ours.sh``: each pair of runs (A and B taken back to back) and, per client
and mode, the medians of B/A for req/s and for server CPU per token. Standard library only.

    python3 tests/bench/ab_summary.py RESULTS.jsonl --a LABEL --b LABEL
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def cpu_us_per_token(row: dict) -> float:
    # server_cpu_pct is % of one core over the run: pct * 10_000 / rps = µs per request.
    return float(row["server_cpu_pct"]) * 10_000.0 / float(row["rps"]) if row.get("rps") else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--a", default="A")
    ap.add_argument("--b", default="B")
    args = ap.parse_args()

    runs: dict[tuple[str, str, int], dict[str, dict]] = defaultdict(dict)
    for line in args.results.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[(row["label"], row["mode"], int(row["pair"]))][row["side"]] = row

    print(f"A: {args.a}\nB: {args.b}\n")
    by_cell: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    p99s: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"A": [], "B": []})
    for (label, mode, pair), sides in sorted(runs.items()):
        a, b = sides.get("A"), sides.get("B")
        if a is None or b is None or not a.get("rps") or not b.get("rps"):
            print(f"{label}/{mode} pair {pair}: incomplete, left out")
            continue
        rps_ratio = b["rps"] / a["rps"]
        cpu_ratio = cpu_us_per_token(b) / cpu_us_per_token(a)
        errors = int(a.get("errors") or 0) + int(b.get("errors") or 0)
        print(f"{label}/{mode} pair {pair}: req/s A {a['rps']:.0f} B {b['rps']:.0f} (B/A {rps_ratio:.3f});"
              f" CPU µs/token A {cpu_us_per_token(a):.0f} B {cpu_us_per_token(b):.0f} (B/A {cpu_ratio:.3f});"
              f" p99 ms A {a['p99_ms']:.2f} B {b['p99_ms']:.2f}; errors {errors}")
        by_cell[(label, mode)].append((rps_ratio, cpu_ratio))
        p99s[(label, mode)]["A"].append(float(a["p99_ms"]))
        p99s[(label, mode)]["B"].append(float(b["p99_ms"]))

    print()
    for (label, mode), ratios in by_cell.items():
        rps = [r for r, _ in ratios]
        cpu = [c for _, c in ratios]
        better = sum(c < 1.0 for c in cpu)
        print(f"{label}/{mode}: B/A req/s median {statistics.median(rps):.3f} ({min(rps):.3f}-{max(rps):.3f}),"
              f" CPU per token median {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f});"
              f" B cheaper in {better} of {len(cpu)} pairs;"
              f" p99 ms median A {statistics.median(p99s[(label, mode)]['A']):.1f}"
              f" B {statistics.median(p99s[(label, mode)]['B']):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
