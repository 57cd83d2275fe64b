"""SIGHUP reloads the sample API's server certificate and key (issue 13, part 3), over real
TLS: the connection kept open goes on, a new one gets the new certificate, a key that is not
the certificate's is refused with the old pair still in use."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.resource.wire import start_sample_api
from tests.support.kept_connection import KeptConnection, client_context, presented_server_certificate
from tests.support.pki import Issued, TestCA
from tests.support.server import RunningServer

pytestmark = pytest.mark.wire


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("CN=Sample API Reload CA,O=authz tests")


def _server_certificate(ca: TestCA) -> Issued:
    return ca.issue("CN=127.0.0.1", san_ip=["127.0.0.1"], eku=[ExtendedKeyUsageOID.SERVER_AUTH])


def _install(directory: Path, cert: bytes, key: bytes) -> None:
    for name, data in (("api.crt", cert), ("api.key", key)):
        (directory / f"{name}.tmp").write_bytes(data)
        os.replace(directory / f"{name}.tmp", directory / name)


@pytest.fixture(scope="module")
def api(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    directory = tmp_path_factory.mktemp("sample-api-reload")
    first = _server_certificate(ca)
    _install(directory, first.pem, first.write(directory / "first", "api")[1].read_bytes())
    ca_file = ca.write(directory / "ca.pem")
    # Nothing at the issuer: /health needs no token, so the API never asks it.
    server = start_sample_api(directory, "api", issuer="https://127.0.0.1:9", ca_file=ca_file,
                              tls=(directory / "api.crt", directory / "api.key"),
                              audience="https://accounts.api.test")
    yield server, directory
    server.stop()


def _reload(server: RunningServer, event: str, keep: KeptConnection) -> dict[str, Any]:
    offset = server.log_offset()
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        lines = [e for e in server.events(offset) if e.get("event") == event]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline and server.process.poll() is None, server.log()[-3000:]
        time.sleep(0.2)
        assert keep.request("GET", "/health")[0] == 200  # and the kept connection does not idle out


def test_the_sample_api_rotates_its_certificate_without_dropping_connections(
        api: tuple[RunningServer, Path], ca: TestCA) -> None:
    server, directory = api
    ca_file = directory / "ca.pem"
    kept = KeptConnection(server.port, client_context(ca_file))
    old = kept.server_certificate
    assert kept.request("GET", "/health")[0] == 200

    rotated = _server_certificate(ca)
    _install(directory, rotated.pem, rotated.write(directory / "rotated", "api")[1].read_bytes())
    line = _reload(server, "reload_completed", kept)
    assert line["server_certificate"]["serial"] == format(rotated.cert.serial_number, "x")
    assert presented_server_certificate(server.port, ca_file) == rotated.der
    assert kept.request("GET", "/health")[0] == 200 and kept.server_certificate == old

    # A key that is not the certificate's: refused, the rotated pair stays.
    other = _server_certificate(ca)
    _install(directory, other.pem, rotated.write(directory / "mismatch", "api")[1].read_bytes())
    refused = _reload(server, "reload_refused", kept)
    assert refused["file"] == str(directory / "api.key")
    assert "the private key does not match the certificate" in refused["reason"]
    assert presented_server_certificate(server.port, ca_file) == rotated.der
    assert kept.requests >= 3
    kept.close()
