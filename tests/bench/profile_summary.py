#!/usr/bin/env python3
"""Summarise a py-spy profile of the token endpoint (``--format raw`` or ``speedscope``).

    python3 tests/bench/profile_summary.py PROFILE [--us-per-token N] [--top 25]

Prints: cost areas of one token (each sample goes to the first area whose marker frame is on its
stack, in the order below), then the top functions by self samples and by inclusive samples.
With ``--us-per-token`` (server CPU per token measured while sampling) shares become µs/token.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from collections.abc import Iterator
from pathlib import Path

# (area, marker frame prefixes): first match wins, so nested areas come first.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    # The line is written from a done-callback of the token's signature, and the signature
    # from SignatureBatch's loop callback: both run outside the request's own stack.
    ("token log line (structlog JSON, write)", ("MutualTLSAuthorizationServer.log_issued",)),
    ("JWT: claims + jti + ES256 compact signer (ECDSA P-256)", ("AccessTokenIssuer.issue",
                                                                "SignatureBatch._sign_queued")),
    ("response write (uvicorn send -> TLS record -> socket write)", ("RequestResponseCycle.send",)),
    ("form parsing, client lookup, ClientRequest (authlib OAuth2Request)", ("ClientEndpoint.resolve",)),
    ("authlib grant + client auth (certificate check)", ("AuthorizationServer.create_token_response",)),
    ("token endpoint, rest (JSONReply, grant_type checks)", ("ClientEndpoint.__call__",)),
    ("uvicorn ASGI cycle, app dispatch (Starlette: other routes)", ("RequestResponseCycle.run_asgi",)),
    ("uvicorn protocol callbacks (HTTP parse, task creation)", ("HttpToolsProtocol.",)),
    ("event loop, socket read, TLS decrypt (uvloop C code)", ("Runner.run", "run_forever")),
]
UNATTRIBUTED = "unattributed (truncated/inconsistent stacks, other threads)"
_LINE = re.compile(r" \(([^:()]*):\d+\)$")


def _name(frame: str) -> str:
    return _LINE.sub(r" (\1)", frame)


def samples(path: Path) -> Iterator[tuple[list[str], int]]:
    """(stack root first, weight) from a raw (collapsed) or speedscope profile."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        frames = [f"{f['name']} ({f.get('file', '?')})" for f in doc["shared"]["frames"]]
        for profile in doc["profiles"]:
            for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
                yield [frames[i] for i in stack], int(weight)
        return
    for line in text.splitlines():
        if line.strip():
            stack, count = line.rsplit(" ", 1)
            yield [_name(f) for f in stack.split(";")], int(count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path)
    ap.add_argument("--us-per-token", type=float, default=0.0)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    self_: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, n in samples(args.profile):
        total += n
        self_[stack[-1] if stack else "?"] += n
        for frame in set(stack):
            inclusive[frame] += n
        area = next((a for a, markers in AREAS if any(f.startswith(markers) for f in stack)), UNATTRIBUTED)
        areas[area] += n
    if not total:
        print("no samples")
        return 1

    def share(n: int) -> str:
        pct = 100.0 * n / total
        return f"{pct:5.1f}%" + (f" {pct * args.us_per_token / 100:6.1f} µs" if args.us_per_token else "")

    scale = f"; server CPU {args.us_per_token:.0f} µs/token while sampled" if args.us_per_token else ""
    print(f"{total} samples{scale}")
    print("\nCost areas (each sample counted once)")
    for area, _ in AREAS:
        print(f"  {share(areas[area])}  {area}")
    if areas[UNATTRIBUTED]:
        print(f"  {share(areas['other threads / idle'])}  other threads / idle")
    print(f"\nTop {args.top} by self samples (native code called from a Python frame counts as that frame's self)")
    for frame, n in self_.most_common(args.top):
        print(f"  {share(n)}  {frame}")
    print(f"\nTop {args.top} by inclusive samples, below the request handler")
    skip = ("<module>", "Command.", "Group.", "Context.", "serve ", "run_server", "run (uvicorn", "Server.run",
            "asyncio_run", "Runner.run", "run_forever", "Thread.", "_bootstrap")
    shown = 0
    for frame, n in inclusive.most_common():
        if frame.startswith(skip):
            continue
        print(f"  {share(n)}  {frame}")
        shown += 1
        if shown >= args.top:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
