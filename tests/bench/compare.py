#!/usr/bin/env python3
"""Side-by-side table of two ``run-peer-bench.sh`` result files (ours vs the peer), with the
targets of the token-endpoint benchmark checked. Standard library only.

    python3 tests/bench/compare.py --ours OURS.jsonl --peer PEER.jsonl [--ours-hwm-kb N] ...

Each JSONL line is one ``measure.py run`` RESULT: the load generator's JSON (rps, p50_ms,
p99_ms, errors, conns, mode) plus label (pki | selfsigned), server_cpu_pct and foreign_cpu_pct
(percent of ONE core over the run's window). Values are medians over the runs.

With ``--order interleaved`` the i-th run of a (client, mode) on one side was taken right before
or after the i-th run on the other: the ratio is then the median of the per-pair ratios, which
drift of the shared box over the invocation does not bias. Otherwise it is the ratio of the two
medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

# The targets (one worker each, same load generator).
RPS_RATIO_TARGET = {"keepalive": 2.0, "handshake": 1.2}
P99_TARGET_MS = 20.0
P99_TARGET_CONNS = 16
RSS_TARGET_MB = 120.0


@dataclass
class Group:
    rows: list[dict]

    def med(self, key: str) -> float:
        return statistics.median(float(r.get(key) or 0) for r in self.rows)

    def values(self, key: str) -> list[float]:
        return [float(r.get(key) or 0) for r in self.rows]

    @property
    def cpu_us_per_token(self) -> float:
        # server_cpu_pct is % of one core over the window: pct * 10_000 / rps = µs per request.
        return statistics.median(
            float(r.get("server_cpu_pct") or 0) * 10_000.0 / r["rps"] for r in self.rows if r.get("rps")
        ) if any(r.get("rps") for r in self.rows) else 0.0

    @property
    def conns(self) -> int:
        return int(self.rows[0].get("conns") or 0)


def load(path: Path) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            groups.setdefault((row["label"], row["mode"]), Group([])).rows.append(row)
    return groups


def pair_ratios(ours: Group, peer: Group) -> list[float] | None:
    """ours/peer req/s of the runs taken side by side (i-th with i-th), or None if they do not pair."""
    if len(ours.rows) != len(peer.rows) or not all(r.get("rps") for r in peer.rows):
        return None
    return [float(o["rps"]) / float(p["rps"]) for o, p in zip(ours.rows, peer.rows, strict=True)]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        padded = (c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), sep, *(fmt(r) for r in rows)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", type=Path, required=True)
    ap.add_argument("--peer", type=Path, required=True)
    ap.add_argument("--ours-hwm-kb", type=int, default=0, help="VmHWM of our server process (kB)")
    ap.add_argument("--ours-rss-kb", type=int, default=0, help="VmRSS of our server process at the end (kB)")
    ap.add_argument("--peer-hwm-kb", type=int, default=0, help="sampled VmHWM of the peer's node process (kB)")
    ap.add_argument("--max-foreign", type=float, default=15.0, help="MAX_FOREIGN of run-peer-bench.sh")
    ap.add_argument("--order", default="ours peer", help='"interleaved" pairs the i-th runs of both sides')
    ap.add_argument("--server-log-summary", type=Path)
    ap.add_argument("--ours-out", type=Path, help="console output of the run against our server")
    ap.add_argument("--peer-out", type=Path, help="console output of the peer run")
    args = ap.parse_args()

    ours, peer = load(args.ours), load(args.peer)
    keys = sorted(set(ours) | set(peer), key=lambda k: (k[0] != "pki", k[1] != "keepalive", k))
    header = ["client", "mode", "conns", "ours req/s", "peer req/s", "ratio", "ratio range",
              "ours p50/p99 ms", "peer p50/p99 ms", "ours CPU µs/tok", "peer CPU µs/tok",
              "errors ours/peer", "foreign %core ours/peer (max)"]
    rows: list[list[str]] = []
    checks: list[tuple[str, str, bool]] = []
    for key in keys:
        o, p = ours.get(key), peer.get(key)
        label, mode = key
        if o is None or p is None:
            rows.append([label, mode, "", *(["-"] * (len(header) - 3))])
            continue
        o_rps, p_rps = o.med("rps"), p.med("rps")
        paired = pair_ratios(o, p) if args.order == "interleaved" else None
        if paired:
            ratio, lo, hi = statistics.median(paired), min(paired), max(paired)
        else:
            ratio = o_rps / p_rps if p_rps else float("inf")
            lo = min(o.values("rps")) / max(p.values("rps")) if max(p.values("rps")) else float("inf")
            hi = max(o.values("rps")) / min(p.values("rps")) if min(p.values("rps")) else float("inf")
        rows.append([
            label, mode, str(o.conns) if o.conns == p.conns else f"{o.conns}/{p.conns}",
            f"{o_rps:.0f}", f"{p_rps:.0f}", f"{ratio:.2f}x", f"{lo:.2f}-{hi:.2f}x",
            f"{o.med('p50_ms'):.2f} / {o.med('p99_ms'):.2f}", f"{p.med('p50_ms'):.2f} / {p.med('p99_ms'):.2f}",
            f"{o.cpu_us_per_token:.0f}", f"{p.cpu_us_per_token:.0f}",
            f"{sum(o.values('errors')):.0f} / {sum(p.values('errors')):.0f}",
            f"{max(o.values('foreign_cpu_pct')):.0f} / {max(p.values('foreign_cpu_pct')):.0f}",
        ])
        target = RPS_RATIO_TARGET.get(mode)
        if target is not None:
            how = "median of paired runs" if paired else "ratio of medians"
            detail = (f"runs: ours {[round(x) for x in o.values('rps')]}, "
                      f"peer {[round(x) for x in p.values('rps')]}")
            if paired:
                detail += f", pairs {[round(x, 2) for x in paired]}"
            checks.append((f"req/s {label}/{mode}: ours/peer = {ratio:.2f}x, {how} (target >= {target}x)",
                           detail, ratio >= target))
        if o.conns == P99_TARGET_CONNS:
            p99 = o.med("p99_ms")
            checks.append((f"p99 {label}/{mode} at {o.conns} conns: {p99:.2f} ms (target < {P99_TARGET_MS:.0f} ms)",
                           f"runs: {[round(x, 2) for x in o.values('p99_ms')]}", p99 < P99_TARGET_MS))
        errs = sum(o.values("errors"))
        if errs:
            checks.append((f"errors {label}/{mode}: {errs:.0f} (must be 0)", "", False))
    if args.ours_hwm_kb:
        mb = args.ours_hwm_kb / 1024
        checks.append((f"server RSS: peak (VmHWM) {mb:.1f} MB (target < {RSS_TARGET_MB:.0f} MB)",
                       f"VmRSS at the end {args.ours_rss_kb / 1024:.1f} MB", mb < RSS_TARGET_MB))

    print("Token endpoint, client_credentials, one worker each, same load generator and knobs "
          f"(order: {args.order})")
    print(f"ours: {args.ours}\npeer: {args.peer}\n")
    print(table(header, rows))
    if args.order == "interleaved":
        print("\nratio = median over runs of (ours req/s / peer req/s of the run taken next to it); "
              "ratio range = lowest..highest of those pairs;")
    else:
        print("\nratio = median ours req/s / median peer req/s; ratio range = worst..best pairing of single runs;")
    print(
          "CPU µs/tok = server CPU (process tree) per token, median over runs; foreign = other processes on the box.")
    print("\nTargets")
    for text, detail, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}" + (f"   [{detail}]" if detail else ""))
    passed = sum(ok for _, _, ok in checks)
    print(f"  => {passed}/{len(checks)} PASS")

    print("\nMemory")
    print(f"  ours: VmHWM {args.ours_hwm_kb / 1024:.1f} MB, VmRSS at the end {args.ours_rss_kb / 1024:.1f} MB")
    if args.peer_hwm_kb:
        how = "read at the end" if args.order == "interleaved" else "sampled every 2 s"
        print(f"  peer (node, {how}): VmHWM {args.peer_hwm_kb / 1024:.1f} MB")

    print(f"\nMachine load (runs with foreign CPU > {args.max_foreign:.0f}% of a core were retried; kept ones flagged)")
    for name, groups in (("ours", ours), ("peer", peer)):
        rows_all = [r for g in groups.values() for r in g.rows]
        flagged = [r for r in rows_all if float(r.get("foreign_cpu_pct") or 0) > args.max_foreign]
        fc = [float(r.get("foreign_cpu_pct") or 0) for r in rows_all]
        print(f"  {name}: {len(rows_all)} runs kept, foreign CPU median {statistics.median(fc):.1f}% max {max(fc):.1f}%"
              f" of a core; {len(flagged)} kept above the limit"
              + (": " + ", ".join(f"{r['label']}/{r['mode']} {r['foreign_cpu_pct']}%" for r in flagged)
                 if flagged else ""))
    peer_version = ""
    for name, out in (("ours", args.ours_out), ("peer", args.peer_out)):
        if out and out.exists():
            text = out.read_text(errors="replace")
            peer_version = peer_version or next((x for x in text.splitlines() if x.startswith("peer: ")), "")
            print(f"  {name}: {text.count('discarded, retrying')} runs discarded and repeated (foreign CPU),"
                  f" {text.count('WARNING: machine still')} measurements started on a busy box (quiet wait timed out)")
    if args.server_log_summary and args.server_log_summary.exists():
        print("\nOur server")
        for line in args.server_log_summary.read_text().splitlines():
            print(f"  {line}")
    if peer_version:
        print(f"\nPeer\n  {peer_version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
