"""Run the real server (``authz serve``) as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunningServer", "authz_cli", "free_port", "start_server"]

AUTHZ = [sys.executable, "-m", "authz"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authz_cli(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``authz ARGS --data-dir DATA_DIR`` and return the completed process."""
    result = subprocess.run([*AUTHZ, *args, "--data-dir", str(data_dir)], capture_output=True, text=True,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"authz {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    ca_file: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

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
    tls_cert: Path,
    tls_key: Path,
    ca_file: Path,
    data_dir: Path,
    log_path: Path,
    trust_anchors: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> RunningServer:
    """Start ``authz serve`` and wait until it accepts TLS connections."""
    port = free_port()
    args = [*AUTHZ, "serve", "--tls-cert", str(tls_cert), "--tls-key", str(tls_key), "--port", str(port),
            "--data-dir", str(data_dir), "--log-format", "json", *extra_args]
    for anchor in trust_anchors:
        args += ["--trust-anchor", str(anchor)]
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    process_env.update(env or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=process_env)
    server = RunningServer(process, port, data_dir, log_path, ca_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"authz serve exited with {process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if "Application startup complete" in server.log():
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"authz serve did not start within {timeout}s:\n{server.log()}")
