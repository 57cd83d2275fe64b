"""Run the real server (``authz serve``) as a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunningServer", "authz_cli", "authz_cli_all", "free_port", "start_server"]

AUTHZ = [sys.executable, "-m", "authz"]
# ``python -m authz`` finds the packages through the working directory: run it from the
# repository whatever directory pytest was started from.
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(extra or {})
    return env


def authz_cli(*args: str, data_dir: Path, check: bool = True, timeout: float = 60,
              run_as: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``authz ARGS --data-dir DATA_DIR`` (through the command ``run_as``, e.g. setpriv as
    another user) and return the completed process."""
    result = subprocess.run([*run_as, *AUTHZ, *args, "--data-dir", str(data_dir)], capture_output=True, text=True,
                            timeout=timeout, cwd=REPO, env=_environment())
    if check and result.returncode != 0:
        raise AssertionError(f"authz {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def authz_cli_all(commands: Sequence[Sequence[str]], *, data_dir: Path, parallel: int = 4) -> None:
    """Run several ``authz`` commands against one store, ``parallel`` at a time (each CLI
    process spends most of its time importing). The first runs alone: it creates the store."""
    if not commands:
        return
    authz_cli(*commands[0], data_dir=data_dir)
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda args: authz_cli(*args, data_dir=data_dir), commands[1:]))


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    ca_file: Path
    extra: dict[str, str] = field(default_factory=dict)
    scheme: str = "https"  # "http": proxy mode without TLS

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_offset(self) -> int:
        """Where the log ends now: pass it to ``events`` to see only what comes after."""
        return self.log_path.stat().st_size

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """The structured (JSON) log lines written after byte offset ``since``."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``text`` occurs ``count`` times in the log (or the process exits)."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} did not appear {count} time(s) in the log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    *,
    tls_cert: Path | None,
    tls_key: Path | None,
    ca_file: Path,
    data_dir: Path,
    log_path: Path,
    trust_anchors: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    ready_count: int = 1,
    port: int | None = None,
) -> RunningServer:
    """Start ``authz serve`` on ``port`` (default: a free one) and wait until it accepts TLS
    connections and ``ready_count`` processes (uvicorn workers) completed their start-up. A
    caller gives the port when the server must be named before it starts (an ``--issuer``
    that several instances share is the first one's URL)."""
    port = port or free_port()
    # Without a certificate (proxy mode behind a TLS-terminating proxy): plain HTTP.
    tls = ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)] if tls_cert and tls_key else []
    args = [*AUTHZ, "serve", *tls, "--port", str(port), "--data-dir", str(data_dir), "--log-format", "json",
            *extra_args]
    for anchor in trust_anchors:
        args += ["--trust-anchor", str(anchor)]
    with open(log_path, "wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=_environment(env), cwd=REPO)
    server = RunningServer(process, port, data_dir, log_path, ca_file, scheme="https" if tls else "http")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"authz serve exited with {process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if server.log().count("Application startup complete") >= ready_count:
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"authz serve did not start within {timeout}s:\n{server.log()}")
