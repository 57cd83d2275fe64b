#!/usr/bin/env python3
"""Resource-server benchmark: what certificate-bound token protection costs a route.

    .venv/bin/python tests/bench/bench_resource.py                 # 3 rounds x 8 s per variant, ~2 min
    .venv/bin/python tests/bench/bench_resource.py --rounds 1 --duration 4

One run starts a real authorization server (``authz serve``) and three servers of the same
route, ``GET /accounts/acc-1001`` of the sample API (resource/authz_resource/sample/app.py), each one
uvicorn worker (httptools + uvloop, direct TLS requesting client certificates via
``authz.tls``, exactly like ``authz sample-api``):

- ``open``: the route without BearerTokenMiddleware and without its scope decorator;
- ``jwt``: the sample API verifying JWT access tokens (signature once, then cached);
- ``introspection``: the sample API introspecting at the AS (cache warm after the first call).

The load is the shared C load generator (../shared/bench/peer/loadgen.c, built on first
use): keep-alive connections presenting the client certificate the token is bound to, and
``Authorization: Bearer <token>``; every response must be 200 and contain the account id.
Variants are measured in turn, round after round (order rotated), so drift on this shared
machine hits all of them alike; a measurement during which other processes used more than
``--max-foreign`` % of a core is redone (up to ``--retries`` times). Server and load
generator are pinned to different cores (``--server-cpu``, ``--loadgen-cpu``). Printed per
variant: median req/s, p50/p99, server CPU per request (from /proc, the figure least
disturbed by other load), then the req/s ratios against ``open`` (per round, median) with
the issue's targets (jwt >= 0.75, introspection >= 0.6), and the CPU-cost ratios.
Not part of the test suite. Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The repository root, for tests.support (the server side imports authz_resource, installed).
sys.path.insert(0, str(REPO))

LOADGEN_SOURCE = REPO.parent / "shared" / "bench" / "peer" / "loadgen.c"
LOADGEN = Path(tempfile.gettempdir()) / "authz-resource-bench" / "loadgen"
ROUTE = "/accounts/acc-1001"
TARGETS = {"jwt": 0.75, "introspection": 0.6}
HZ = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- server side (subprocess)

def serve(options: argparse.Namespace) -> None:
    """One variant, in its own process: ``bench_resource.py --serve MODE ...``."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from authz.logs import configure_logging
    from authz_resource import AuthorizationServer, IntrospectionValidator, JWTAccessTokenValidator
    from authz_resource.sample import app as sample
    from authz_resource.serving import uvicorn_tls_options

    configure_logging("warning", "json")
    if options.serve == "open":
        # The sample's own routes and handlers, minus require_scopes, and no middleware.
        routes = [Route(r.path, inspect.unwrap(r.endpoint), methods=sorted(r.methods or ()))
                  for r in sample.routes()]
        app: Any = Starlette(routes=routes)
        app.state.accounts = sample._seed()
    else:
        server = AuthorizationServer(options.issuer, ca_file=options.ca_file, client_cert=options.client_cert,
                                     client_key=options.client_key)
        validator: Any
        if options.serve == "jwt":
            validator = JWTAccessTokenValidator(server, audience=options.issuer)
        else:
            validator = IntrospectionValidator(server, client_id="rs", audience=options.issuer, cache_ttl=30)
        app = sample.create_app(validator)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="info", access_log=False,
                lifespan="on", **uvicorn_tls_options(options.tls_cert, options.tls_key))


# ---------------------------------------------------------------- driver

def build_loadgen() -> Path:
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SOURCE.stat().st_mtime:
        return LOADGEN
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", str(LOADGEN), str(LOADGEN_SOURCE), "-lssl", "-lcrypto", "-lpthread"],
                   check=True)
    return LOADGEN


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def wait_for_quiet(max_wait: float, busy_pct: float = 25.0) -> None:
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = machine_busy()
        time.sleep(1.0)
        b1, t1 = machine_busy()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0)
        if busy < busy_pct or time.monotonic() > deadline:
            print(f"machine busy {busy:.0f}% of all cores before measuring"
                  + ("" if busy < busy_pct else " (gave up waiting)"), flush=True)
            return


def pinned(cpu: int | None, args: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *args] if cpu is not None and shutil.which("taskset") else args


@contextlib.contextmanager
def running(args: list[str], log: Path, marker: str = "Application startup complete") -> Iterator[Any]:
    from tests.support.server import RunningServer

    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    server = RunningServer(process, 0, log.parent, log, log.parent)
    try:
        deadline = time.monotonic() + 30
        while marker not in server.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(args[:6])}... did not start:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def measure(loadgen: Path, url: str, token: str, cert: tuple[Path, Path], ca_file: Path, pid: int,
            options: argparse.Namespace) -> dict[str, Any]:
    args = [str(loadgen), "-u", url, "--cert", str(cert[0]), "--key", str(cert[1]), "--cacert", str(ca_file),
            "-m", "keepalive", "-c", str(options.conns), "-t", "1", "-d", str(options.duration),
            "-w", str(options.warmup), "--expect", "acc-1001", "-H", f"Authorization: Bearer {token}", "--json"]
    process = subprocess.Popen(pinned(options.loadgen_cpu, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(options.warmup)
    ticks0, busy0, wall0 = cpu_ticks(pid), machine_busy(), time.monotonic()
    out, err = process.communicate(timeout=options.warmup + options.duration + 60)
    ticks1, busy1, wall1 = cpu_ticks(pid), machine_busy(), time.monotonic()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen failed ({process.returncode}): {err}\n{out}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    server_seconds = (ticks1 - ticks0) / HZ
    result["server_cpu_us_per_req"] = 1e6 * server_seconds / max(1, result["requests"])
    # CPU of everything else on the box, in % of one core: what makes req/s unreliable.
    machine_pct = 100.0 * (os.cpu_count() or 1) * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    result["server_cpu_pct"] = 100.0 * server_seconds / (wall1 - wall0)
    result["foreign_cpu_pct"] = max(0.0, machine_pct - result["server_cpu_pct"] - result["loadgen_cpu_pct"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per variant and round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--variants", default="open,jwt,introspection")
    parser.add_argument("--server-cpu", type=int, default=1, help="core to pin servers to (-1: no pinning)")
    parser.add_argument("--loadgen-cpu", type=int, default=0, help="core to pin the load generator to (-1: no)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="max seconds to wait for an idle machine")
    parser.add_argument("--max-foreign", type=float, default=15.0,
                        help="%% of a core used by other processes above which a measurement is redone")
    parser.add_argument("--retries", type=int, default=3, help="re-measurements allowed per variant and round")
    parser.add_argument("--serve", choices=["open", "jwt", "introspection"], help=argparse.SUPPRESS)
    for name in ("port", "issuer", "ca-file", "tls-cert", "tls-key", "client-cert", "client-key"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS, type=int if name == "port" else None)
    options = parser.parse_args()
    if options.serve:
        serve(options)
        return 0
    options.server_cpu = None if options.server_cpu < 0 else options.server_cpu
    options.loadgen_cpu = None if options.loadgen_cpu < 0 else options.loadgen_cpu
    variants = options.variants.split(",")
    assert variants[0] == "open", "the first variant must be 'open' (the baseline)"

    import httpx
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.support.pki import TestCA
    from tests.support.server import authz_cli, free_port, start_server

    loadgen = build_loadgen()
    with tempfile.TemporaryDirectory(prefix="authz-resource-bench-") as tmp:
        directory = Path(tmp)
        ca = TestCA("CN=Bench CA")
        ca_file = ca.write(directory / "ca.pem")
        server_tls = ca.issue("CN=localhost", san_ip=["127.0.0.1"], eku=[ExtendedKeyUsageOID.SERVER_AUTH]) \
            .write(directory, "server")
        bench_cert = ca.issue("CN=bench,O=Bench").write(directory, "bench")
        rs_cert = ca.issue("CN=rs,O=Bench").write(directory, "rs")
        data_dir = directory / "data"
        authz_cli("clients", "add", "bench", "--auth-method", "tls_client_auth", "--subject-dn", "CN=bench,O=Bench",
                  "--scope", "accounts:read", data_dir=data_dir)
        authz_cli("clients", "add", "rs", "--auth-method", "tls_client_auth", "--subject-dn", "CN=rs,O=Bench",
                  data_dir=data_dir)
        authz = start_server(tls_cert=server_tls[0], tls_key=server_tls[1], ca_file=ca_file, data_dir=data_dir,
                             log_path=directory / "authz.log", trust_anchors=[ca_file])
        with contextlib.ExitStack() as stack:
            stack.callback(authz.stop)
            context = ssl.create_default_context(cafile=str(ca_file))
            context.load_cert_chain(*bench_cert)
            with httpx.Client(verify=context, trust_env=False) as client:
                response = client.post(authz.token_url, data={"grant_type": "client_credentials",
                                                              "client_id": "bench", "scope": "accounts:read"})
            response.raise_for_status()
            token = response.json()["access_token"]
            servers: dict[str, tuple[Any, str]] = {}
            for variant in variants:
                port = free_port()
                args = [sys.executable, str(Path(__file__).resolve()), "--serve", variant, "--port", str(port),
                        "--issuer", authz.base_url, "--ca-file", str(ca_file), "--tls-cert", str(server_tls[0]),
                        "--tls-key", str(server_tls[1]), "--client-cert", str(rs_cert[0]),
                        "--client-key", str(rs_cert[1])]
                server = stack.enter_context(running(pinned(options.server_cpu, args), directory / f"{variant}.log"))
                url = f"https://127.0.0.1:{port}{ROUTE}"
                with httpx.Client(verify=context, trust_env=False) as client:
                    check = client.get(url, headers={"authorization": f"Bearer {token}"})
                if check.status_code != 200:
                    raise RuntimeError(f"{variant}: {check.status_code} {check.text}")
                servers[variant] = (server, url)
            print(f"servers up: {', '.join(variants)}; {options.rounds} round(s) x {options.duration:g} s, "
                  f"{options.conns} keep-alive connections, 1 worker each, route {ROUTE}", flush=True)
            results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for round_ in range(options.rounds):
                order = variants[round_ % len(variants):] + variants[:round_ % len(variants)]
                wait_for_quiet(options.quiet_wait)
                for variant in order:
                    server, url = servers[variant]
                    for attempt in range(options.retries + 1):
                        result = measure(loadgen, url, token, bench_cert, ca_file, server.process.pid, options)
                        errors = result.get("errors", 0)
                        print(f"  round {round_ + 1} {variant:>13}: {result['rps']:8.0f} req/s  "
                              f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                              f"server {result['server_cpu_us_per_req']:.1f} µs CPU/req "
                              f"({result['server_cpu_pct']:.0f}% of a core)  errors {errors}  "
                              f"foreign load {result['foreign_cpu_pct']:.0f}% of a core", flush=True)
                        if errors:
                            raise RuntimeError(f"{variant}: {errors} errors: {result}")
                        if result["foreign_cpu_pct"] <= options.max_foreign:
                            break
                        if attempt < options.retries:
                            print("    other load on the machine: measuring again", flush=True)
                            wait_for_quiet(options.quiet_wait)
                    results[variant].append(result)
    report(results, variants)
    return 0


def report(results: dict[str, list[dict[str, Any]]], variants: list[str]) -> None:
    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    print("\nmedians over rounds:")
    print(f"{'variant':>14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'µs CPU/req':>11} {'foreign %':>10}")
    for variant in variants:
        print(f"{variant:>14} {med(variant, 'rps'):9.0f} {med(variant, 'p50_ms'):8.2f} {med(variant, 'p99_ms'):8.2f} "
              f"{med(variant, 'server_cpu_us_per_req'):11.1f} {med(variant, 'foreign_cpu_pct'):10.0f}")
    print("\nratios to open (throughput; per round, then the median):")
    base = results["open"]
    for variant in variants[1:]:
        ratios = [r["rps"] / b["rps"] for r, b in zip(results[variant], base, strict=True)]
        cpu = med("open", "server_cpu_us_per_req") / med(variant, "server_cpu_us_per_req")
        target = TARGETS.get(variant)
        passed = target is not None and statistics.median(ratios) >= target
        verdict = "" if target is None else f"target >= {target}: {'PASS' if passed else 'FAIL'}"
        print(f"{variant:>14}: req/s ratio {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}); CPU-cost ratio {cpu:.3f}   {verdict}")


if __name__ == "__main__":
    sys.exit(main())
