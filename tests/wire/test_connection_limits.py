"""How many connections a worker holds and how long a TLS handshake may take, over real
sockets (issue 9, finding 6): uvloop held a silent connection for 60 s and accepted without
limit."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.resource.wire import start_sample_api
from tests.support.server import RunningServer
from tests.wire.client import client_ssl_context
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire


def _closed_by_server_within(port: int, seconds: float, greeting: bytes = b"") -> float:
    """Open a TCP connection, send ``greeting`` (maybe part of a ClientHello) and nothing more;
    how long until the server closes it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as silent:
        silent.sendall(greeting)
        try:
            while silent.recv(4096):
                pass
        except ConnectionResetError:
            pass
    return time.monotonic() - started


@pytest.fixture(scope="module")
def strict_server(start_wire_server: StartServer, data_dir: Path, server: RunningServer) -> Iterator[RunningServer]:
    started = start_wire_server(data_dir, ["--tls-handshake-timeout", "1", "--max-connections", "3"])
    yield started
    started.stop()


@pytest.mark.parametrize("greeting", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
                         ids=["nothing", "part-of-a-client-hello"])
def test_a_silent_connection_is_closed_after_the_handshake_timeout(strict_server: RunningServer,
                                                                  greeting: bytes) -> None:
    offset = strict_server.log_offset()
    timeouts_before = strict_server.log().count('"reason":"timeout"')
    held = _closed_by_server_within(strict_server.port, 10, greeting)
    assert 0.8 < held < 3.0, held
    strict_server.wait_for_log('"reason":"timeout"', count=timeouts_before + 1)
    line = next(e for e in strict_server.events(offset) if e.get("event") == "tls_handshake_failed")
    assert line["reason"] == "timeout" and line["detail"] == "no complete TLS handshake within 1 s"
    assert line["peer"].startswith("127.0.0.1:")


def test_at_the_connection_limit_new_connections_wait_until_one_closes(strict_server: RunningServer,
                                                                       pki: WirePKI) -> None:
    offset = strict_server.log_offset()
    silent = [socket.create_connection(("127.0.0.1", strict_server.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        credentials = pki["dn-client"]
        with httpx.Client(verify=client_ssl_context(credentials, pki.server_ca), timeout=15) as client:
            response = client.post(strict_server.token_url,
                                   data={"grant_type": "client_credentials", "client_id": "dn-client"})
        waited = time.monotonic() - started
    finally:
        for connection in silent:
            connection.close()
    assert response.status_code == 200, response.text
    # Accepted only once the silent connections had timed out (1 s after they were opened).
    assert waited > 0.5, waited
    events = [e["event"] for e in strict_server.events(offset)]
    assert "connection_limit_reached" in events and "accepting_connections_again" in events
    reached = next(e for e in strict_server.events(offset) if e["event"] == "connection_limit_reached")
    assert reached["max_connections"] == 3


def test_a_connection_that_completes_its_handshake_is_not_timed_out(strict_server: RunningServer,
                                                                   pki: WirePKI) -> None:
    body = b"grant_type=client_credentials&client_id=dn-client"
    request = (b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    context: ssl.SSLContext = client_ssl_context(pki["dn-client"], pki.server_ca)
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        for _ in range(2):
            tls.sendall(request)
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(1.5)  # longer than the handshake timeout, shorter than the keep-alive one


def test_the_sample_api_has_the_same_bounds(pki: WirePKI, server: RunningServer, tmp_path: Path) -> None:
    api = start_sample_api(tmp_path, "api", issuer=server.base_url, ca_file=pki.server_ca,
                           tls=(pki.server_cert, pki.server_key), extra_args=["--tls-handshake-timeout", "1"])
    try:
        held = _closed_by_server_within(api.port, 10)
        assert 0.8 < held < 3.0, held
    finally:
        api.stop()


def test_limits_are_settings_with_precise_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from authz.cli import main

    result = CliRunner().invoke(main, ["serve", "--tls-cert", "c", "--tls-key", "k", "--max-connections", "0"])
    assert result.exit_code != 0
    assert "--max-connections (AUTHZ_MAX_CONNECTIONS)" in result.output


def test_plain_http_behind_a_proxy_has_the_same_connection_limit(start_wire_server: StartServer, data_dir: Path,
                                                                  server: RunningServer) -> None:
    plain = start_wire_server(data_dir, ["--proxy-cert-header", "nginx", "--trusted-proxy", "127.0.0.1",
                                         "--max-connections", "2"], tls=False)
    try:
        offset = plain.log_offset()
        held = [socket.create_connection(("127.0.0.1", plain.port)) for _ in range(2)]
        threading.Timer(0.5, lambda: [c.close() for c in held]).start()
        started = time.monotonic()
        response = httpx.get(plain.base_url + "/jwks", timeout=10)
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert waited >= 0.4, waited  # accepted only once a held connection closed
        assert "connection_limit_reached" in [e["event"] for e in plain.events(offset)]
    finally:
        plain.stop()
