"""What the HTTP layer refuses before any endpoint runs, over real TLS: requests that are not
valid HTTP/1.1, protocol upgrades, oversized request heads, requests that never arrive whole.
Each gets a JSON OAuth error with no-store and one log line with the reason, and the
connection is closed; nothing is left hanging (authz.tls.protocol)."""

import json
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import urlencode

import pytest

from authz.tls.protocol import REQUEST_HEAD_LIMIT
from authz.tls.request_deadline import REQUEST_READ_TIMEOUT, SWEEP_INTERVAL
from tests.support.server import RunningServer
from tests.wire.client import FORM, client_ssl_context, curl_command
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

BODY = urlencode({"grant_type": "client_credentials", "client_id": "dn-client"})


def _token_request(port: int, *, extra_headers: str = "", body: str = BODY) -> bytes:
    return (f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(body)}\r\n{extra_headers}\r\n{body}").encode()


def _connect(server: RunningServer, pki: WirePKI) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return client_ssl_context(pki["dn-client"], pki.server_ca).wrap_socket(raw, server_hostname="127.0.0.1")


def _read_until_closed(tls: ssl.SSLSocket) -> bytes:
    received = b""
    try:
        while chunk := tls.recv(65536):
            received += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        pass
    return received


def _responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what the server sent into (status, headers, body) responses."""
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(headers["content-length"])
        responses.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return responses


def _assert_refusal(response: tuple[int, dict[str, str], bytes], status: int, description: str) -> None:
    got_status, headers, body = response
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["connection"] == "close"
    assert json.loads(body) == {"error": "invalid_request", "error_description": description}


def _refusal_lines(server: RunningServer, since: int, status: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while True:
        lines = [e for e in server.events(since) if e.get("event") == "request_refused" and e.get("status") == status]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_invalid_http_gets_a_json_400_with_the_parsers_reason_in_the_log(server: RunningServer, pki: WirePKI) -> None:
    since = server.log_offset()
    with _connect(server, pki) as tls:
        tls.sendall(f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: -5\r\n\r\n".encode())
        (response,) = _responses(_read_until_closed(tls))
    _assert_refusal(response, 400, "the request is not valid HTTP/1.1")
    (line,) = _refusal_lines(server, since, 400)
    assert line["layer"] == "http" and line["request_target"] == "/token" and line["method"] == "POST"
    assert "Content-Length" in str(line["detail"])
    assert line["peer"]


def test_an_upgrade_request_is_refused_instead_of_running_without_its_body(server: RunningServer,
                                                                           pki: WirePKI) -> None:
    # httptools stops parsing at "Connection: upgrade": uvicorn used to run the endpoint with an
    # empty body ("grant_type is required") and drop the request pipelined behind it.
    since = server.log_offset()
    with _connect(server, pki) as tls:
        tls.sendall(_token_request(server.port, extra_headers="Connection: Upgrade\r\nUpgrade: h2c\r\n")
                    + _token_request(server.port))
        responses = _responses(_read_until_closed(tls))
    assert len(responses) == 1  # and then the connection was closed
    _assert_refusal(responses[0], 400,
                    "protocol upgrades are not supported: send the request without 'Connection: upgrade'")
    (line,) = _refusal_lines(server, since, 400)
    assert line["detail"] == "Upgrade: h2c"


def test_upgrade_refusal_with_curl(server: RunningServer, pki: WirePKI) -> None:
    result = subprocess.run([*curl_command(pki["dn-client"], pki.server_ca), "-H", "Connection: Upgrade",
                             "-H", "Upgrade: websocket", "--data", BODY, "--write-out", r"\n%{http_code}",
                             server.token_url], capture_output=True, text=True, timeout=30)
    body, _, status = result.stdout.rpartition("\n")
    assert status == "400"
    assert json.loads(body)["error_description"].startswith("protocol upgrades are not supported")


def test_request_heads_up_to_the_limit_are_served(server: RunningServer, pki: WirePKI) -> None:
    with _connect(server, pki) as tls:
        tls.sendall(_token_request(server.port, extra_headers=f"X-Padding: {'a' * (REQUEST_HEAD_LIMIT // 2)}\r\n"
                                   "Connection: close\r\n"))
        (response,) = _responses(_read_until_closed(tls))
    assert response[0] == 200


@pytest.mark.parametrize("pieces", [1, 64], ids=["in-one-write", "in-64-writes"])
def test_an_oversized_request_head_gets_431(server: RunningServer, pki: WirePKI, pieces: int) -> None:
    since = server.log_offset()
    header = f"X-Big: {'a' * (REQUEST_HEAD_LIMIT * 4)}\r\n".encode()
    request = _token_request(server.port, extra_headers=header.decode())
    step = len(request) // pieces + 1
    with _connect(server, pki) as tls:
        try:
            for start in range(0, len(request), step):
                tls.sendall(request[start:start + step])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server may have answered and closed before the last piece
        (response,) = _responses(_read_until_closed(tls))
    _assert_refusal(response, 431, f"the request line and headers exceed {REQUEST_HEAD_LIMIT // 1024} KiB")
    (line,) = _refusal_lines(server, since, 431)
    assert f"(limit {REQUEST_HEAD_LIMIT})" in str(line["detail"])


def test_a_valid_request_pipelined_before_garbage_is_answered_first(server: RunningServer, pki: WirePKI) -> None:
    with _connect(server, pki) as tls:
        tls.sendall(_token_request(server.port) + b"NOT HTTP AT ALL\r\n\r\n")
        responses = _responses(_read_until_closed(tls))
    # The token request's answer, then the connection closes: no refusal overtakes it.
    assert [status for status, _, _ in responses] == [200]


def test_requests_that_never_arrive_whole_get_408_and_idle_connections_are_closed(server: RunningServer,
                                                                                   pki: WirePKI) -> None:
    since = server.log_offset()
    outcomes: dict[str, tuple[float, bytes]] = {}

    def hold(name: str, sent: bytes) -> None:
        with _connect(server, pki) as tls:
            started = time.monotonic()
            if sent:
                tls.sendall(sent)
            received = _read_until_closed(tls)
            outcomes[name] = (time.monotonic() - started, received)

    partial_body = _token_request(server.port, body=BODY)[:-10]
    cases = {"head": b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty", "body": partial_body, "idle": b"",
             "crlf": b"\r\n"}  # the parser skips CRLFs between requests: still idle
    threads = [threading.Thread(target=hold, args=item) for item in cases.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_READ_TIMEOUT + 10)

    for name in ("head", "body"):
        elapsed, received = outcomes[name]
        assert REQUEST_READ_TIMEOUT - 0.5 <= elapsed <= REQUEST_READ_TIMEOUT + SWEEP_INTERVAL + 2, name
        (response,) = _responses(received)
        _assert_refusal(response, 408, f"the request was not received whole within {REQUEST_READ_TIMEOUT:g} s")
    details = sorted(str(line["detail"]) for line in _refusal_lines(server, since, 408))
    assert details == ["request body incomplete", "request head incomplete"]
    # A connection that sends nothing is closed like an idle keep-alive one (uvicorn: 5 s),
    # without an answer: there is no request to answer.
    for name in ("idle", "crlf"):
        elapsed, received = outcomes[name]
        assert received == b"" and elapsed < REQUEST_READ_TIMEOUT - 2, name


def test_every_log_line_is_json_uvicorns_too(server: RunningServer) -> None:
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert any('"logger":"uvicorn.error"' in line.replace(" ", "") for line in lines)
    for line in lines:
        json.loads(line)
