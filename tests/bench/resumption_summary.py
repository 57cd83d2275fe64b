#!/usr/bin/env python3
"""Summary of ``bench_resumption.sh``: per client and side, the medians over the rounds, then
the ratios of paired rounds (ours resuming over ours with full handshakes, and over the peer
resuming). Standard library only.

    python3 tests/bench/resumption_summary.py RESULTS.jsonl [--sides "ours-resume ours-full peer-resume"]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

# (numerator side, denominator side): the ratios issue 13 §7 asks for, when both sides ran.
RATIOS = [("ours-resume", "ours-full"), ("ours-resume", "peer-resume"), ("ours-tickets-full", "ours-full"),
          ("peer-resume", "peer-full")]


def cpu_us_per_token(row: dict) -> float:
    # server_cpu_pct is % of one core over the run: pct * 10_000 / rps = µs per token.
    return float(row["server_cpu_pct"]) * 10_000.0 / float(row["rps"]) if row.get("rps") else float("nan")


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in
                                enumerate(zip(r, widths, strict=True))) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--sides", default="ours-resume ours-full peer-resume")
    args = parser.parse_args()
    sides = args.sides.split()

    runs: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)  # (client, side) -> round -> row
    for line in args.results.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[(row["label"], row["side"])][int(row["round"])] = row
    clients = sorted({client for client, _ in runs}, key=lambda c: c != "pki")

    rows = []
    for client in clients:
        for side in sides:
            measured = list(runs.get((client, side), {}).values())
            if not measured:
                continue
            rows.append([
                client, side, measured[0]["mode"], str(len(measured)),
                f"{statistics.median(r['rps'] for r in measured):.0f}",
                f"{statistics.median(r['p50_ms'] for r in measured):.2f}",
                f"{statistics.median(r['p99_ms'] for r in measured):.2f}",
                f"{statistics.median(cpu_us_per_token(r) for r in measured):.0f}",
                str(sum(int(r.get("errors") or 0) for r in measured)),
                f"{max(float(r.get('foreign_cpu_pct') or 0) for r in measured):.0f}",
            ])
    print("Medians over the rounds (tokens/s: successful tokens per second; CPU: the server's, per token):\n")
    print(table(["client", "side", "mode", "rounds", "tokens/s", "p50 ms", "p99 ms", "CPU µs/token", "errors",
                 "foreign %core max"], rows))

    ratio_rows = []
    for client in clients:
        for numerator, denominator in RATIOS:
            a, b = runs.get((client, numerator), {}), runs.get((client, denominator), {})
            paired = [(a[r], b[r]) for r in sorted(a) if r in b and a[r].get("rps") and b[r].get("rps")]
            if not paired:
                continue
            rps = [x["rps"] / y["rps"] for x, y in paired]
            cpu = [cpu_us_per_token(x) / cpu_us_per_token(y) for x, y in paired]
            p99 = [x["p99_ms"] / y["p99_ms"] for x, y in paired if y["p99_ms"]]
            ratio_rows.append([
                client, f"{numerator} / {denominator}", str(len(paired)),
                f"{statistics.median(rps):.2f}x ({min(rps):.2f}-{max(rps):.2f})",
                f"{statistics.median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f})",
                f"{statistics.median(p99):.2f}x" if p99 else "-",
            ])
    if ratio_rows:
        print("\nRatios of the measurements of the same round (median, lowest-highest round):\n")
        print(table(["client", "ratio", "rounds", "tokens/s", "CPU per token", "p99"], ratio_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
