"""The sample API's body limit (--max-body-bytes, 16 KiB by default) over real TLS, with raw
requests: a declared length over the limit, a chunked body that never ends, a
Content-Length that lies either way."""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Any

import pytest

from tests.resource.wire import Deployment

pytestmark = pytest.mark.wire

LIMIT = 16 * 1024
TOO_LARGE = {"error": "invalid_request", "error_description": f"the request body exceeds {LIMIT} bytes"}


class Connection:
    """One TLS connection to the JWT-mode sample API, with alice's certificate."""

    def __init__(self, deployment: Deployment) -> None:
        raw = socket.create_connection(("127.0.0.1", deployment.apis["jwt"].port), timeout=10)
        self.tls = deployment.ssl_context("alice").wrap_socket(raw, server_hostname="localhost")
        self.token = deployment.token("alice", "accounts:read accounts:write")

    def head(self, *headers: str) -> bytes:
        lines = ["POST /accounts HTTP/1.1", "Host: localhost", f"Authorization: Bearer {self.token}",
                 "Content-Type: application/json", *headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def send(self, data: bytes) -> None:
        self.tls.sendall(data)

    def read_until_closed(self, timeout: float = 10.0) -> bytes:
        """Everything the server sends until it closes the connection (fails on timeout)."""
        self.tls.settimeout(timeout)
        received = b""
        while True:
            try:
                chunk = self.tls.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            received += chunk
        return received

    def close(self) -> None:
        self.tls.close()


def responses(data: bytes) -> list[tuple[int, dict[str, str], Any]]:
    """The HTTP/1.1 responses in ``data`` (each with a Content-Length)."""
    parsed = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        parsed.append((int(status_line.split()[1]), headers, json.loads(rest[:length])))
        data = rest[length:]
    return parsed


@pytest.fixture
def connection(deployment: Deployment) -> Any:
    opened = Connection(deployment)
    yield opened
    opened.close()


def refused_lines(deployment: Deployment, since: int) -> list[dict[str, Any]]:
    return [e for e in deployment.apis["jwt"].events(since) if e.get("event") == "request_refused"]


@pytest.mark.parametrize("sent", [0, 1000], ids=["headers-only", "some-body"])
def test_a_declared_length_over_the_limit_is_413_at_once(deployment: Deployment, connection: Connection,
                                                        sent: int) -> None:
    """Also when the length lies upwards: the API answers without waiting for the bytes."""
    since = deployment.apis["jwt"].log_offset()
    connection.send(connection.head("Content-Length: 1000000000") + b" " * sent)
    started = time.monotonic()
    [(status, headers, body)] = responses(connection.read_until_closed())
    assert time.monotonic() - started < 5  # not the 10 s request-read timeout
    assert (status, body) == (413, TOO_LARGE)
    assert headers["connection"] == "close" and headers["cache-control"] == "no-store"
    [line] = refused_lines(deployment, since)
    assert (line["status"], line["reason"], line["detail"], line["client_id"]) == (
        413, "body_too_large", "Content-Length 1000000000", "alice")
    assert line["error_description"] == TOO_LARGE["error_description"]


def test_a_chunked_body_is_refused_once_over_the_limit(deployment: Deployment, connection: Connection) -> None:
    """The body never ends: the answer comes as soon as the limit is crossed."""
    since = deployment.apis["jwt"].log_offset()
    connection.send(connection.head("Transfer-Encoding: chunked"))
    for _ in range(5):  # 20 KiB, and no last chunk
        connection.send(b"1000\r\n" + b" " * 4096 + b"\r\n")
    [(status, headers, body)] = responses(connection.read_until_closed())
    assert (status, body, headers["connection"]) == (413, TOO_LARGE, "close")
    [line] = refused_lines(deployment, since)
    assert line["detail"] == f"more than {LIMIT} bytes received (chunked)"


def test_a_chunked_body_under_the_limit_is_served(connection: Connection) -> None:
    body = json.dumps({"owner": "Chunked", "currency": "EUR"}).encode()
    connection.send(connection.head("Transfer-Encoding: chunked", "Connection: close"))
    for part in (body[:10], body[10:], b""):
        connection.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    [(status, _, created)] = responses(connection.read_until_closed())
    assert status == 201 and created["owner"] == "Chunked"


def test_a_length_that_understates_the_body(deployment: Deployment, connection: Connection) -> None:
    """The API gets the declared 10 bytes (not JSON: 422); the rest is not a body but the
    next request, which the HTTP layer refuses: the connection closes after the 422."""
    since = deployment.apis["jwt"].log_offset()
    connection.send(connection.head("Content-Length: 10") + b'{"owner": "Ada"}' + b" " * 40_000)
    [(status, headers, body)] = responses(connection.read_until_closed())
    assert (status, body["error"], headers["connection"]) == (422, "invalid_account", "close")
    [line] = refused_lines(deployment, since)
    assert (line["layer"], line["error_description"]) == ("http", "the request is not valid HTTP/1.1")


def test_no_token_is_401_before_any_body_is_read(deployment: Deployment) -> None:
    raw = socket.create_connection(("127.0.0.1", deployment.apis["jwt"].port), timeout=10)
    with deployment.ssl_context("alice").wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"POST /accounts HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n")
        tls.settimeout(5)
        head = tls.recv(65536)
    assert head.startswith(b"HTTP/1.1 401 ")
