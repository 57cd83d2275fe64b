"""The README's quick start, as a new user runs it: ``authz dev`` (development PKI, demo
clients, the server), a token with curl, and the sample API accepting it with the certificate
it is bound to, and nothing else."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resource.wire import start_sample_api
from tests.support.server import AUTHZ, REPO, _environment, free_port

pytestmark = pytest.mark.wire

SAMPLE_API = "https://127.0.0.1:8444"  # the identifier authz dev registers the sample API under


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    directory = tmp_path_factory.mktemp("quick-start")
    port = free_port()
    log_path = directory / "dev.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([*AUTHZ, "dev", "--dir", str(directory / ".authz-dev"), "--port", str(port)],
                                   stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, env=_environment())
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    if "server_started" in log_path.read_text():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield directory / ".authz-dev" / "pki", port, log_path.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def curl(pki: Path, cert: str, *args: str) -> tuple[int, dict[str, object]]:
    result = subprocess.run(["/usr/bin/curl", "-s", "-w", "\n%{http_code}", "--cacert", str(pki / "ca.crt"),
                             "--cert", str(pki / f"{cert}.crt"), "--key", str(pki / f"{cert}.key"), *args],
                            capture_output=True, text=True, timeout=30, check=True)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else {}


def test_dev_prints_the_commands_and_where_the_store_is(dev_server: tuple[Path, int, str]) -> None:
    _, port, output = dev_server
    assert f"-d grant_type=client_credentials -d client_id=demo-pki https://127.0.0.1:{port}/token" in output
    assert "The store is " in output and "authz clients list --data-dir" in output


def test_a_token_for_the_sample_api_accepted_with_its_certificate_only(dev_server: tuple[Path, int, str],
                                                                        tmp_path: Path) -> None:
    pki, port, _ = dev_server
    status, token = curl(pki, "client", "-d", "grant_type=client_credentials", "-d", "client_id=demo-pki",
                         f"https://127.0.0.1:{port}/token")
    assert status == 200, token
    api = start_sample_api(tmp_path, "sample", issuer=f"https://127.0.0.1:{port}", ca_file=pki / "ca.crt",
                           tls=(pki / "server.crt", pki / "server.key"), audience=SAMPLE_API)
    try:
        bearer = f"Authorization: Bearer {token['access_token']}"
        url = f"https://127.0.0.1:{api.port}/accounts"
        assert curl(pki, "client", "-H", bearer, url)[0] == 200
        status, refusal = curl(pki, "selfsigned", "-H", bearer, url)
        assert (status, refusal["error_description"]) == (
            401, "the client certificate does not match the token's binding (cnf x5t#S256)")
    finally:
        api.stop()
