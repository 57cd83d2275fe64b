"""Raw bytes into the HTTP layer: ``authz.tls.protocol.MutualTLSHttpToolsProtocol`` (uvicorn's
httptools protocol with this server's limits and refusals) driven in process over a fake
transport, in front of the real authorization server app.

Properties: whatever bytes arrive, in whatever pieces, every response is well-formed HTTP/1.1,
none is a 5xx, every 4xx is a JSON OAuth error, there is at most one response per request
begun, a refused connection is closed, and a request left incomplete is answered 408 when its
deadline passes (the sweep's call is made at once here) with nothing left running."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httptools
from hypothesis import example, given
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from authz.app import create_app
from authz.context import ServerContext
from authz.settings import Settings
from authz.tls.protocol import REQUEST_HEAD_LIMIT, MutualTLSHttpToolsProtocol
from tests.fuzz.asgi import require_seen
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import chance, long_digit_runs, mutated
from tests.fuzz.test_endpoints import _CA, ISSUER, _register


class _Transport(asyncio.Transport):
    """What the protocol writes and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Responses:
    """httptools' response parser callbacks: status and body of each response."""

    def __init__(self) -> None:
        self.done: list[tuple[int, dict[bytes, bytes], bytes]] = []
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.done.append((self.parser.get_status_code(), self.headers, self.body))
        self.headers, self.body = {}, b""


def _responses(raw: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    collected = _Responses()
    parser = httptools.HttpResponseParser(collected)
    collected.parser = parser
    parser.feed_data(raw)  # raises on anything that is not well-formed HTTP/1.1
    return collected.done


# --- requests, well-formed and not -------------------------------------------------------------

_TOKEN_FORM = b"grant_type=client_credentials&client_id=pki"
_FORM_HEAD = b"POST /token HTTP/1.1\r\nHost: as.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    # Weights by repetition (sampled_from picks about uniformly): mostly requests the server
    # serves, so that what follows the head is reached, then any method, target and version.
    # No HEAD: its answer has a Content-Length and no body, which the response parser below
    # cannot be told about.
    route = draw(st.sampled_from([(b"POST", b"/token")] * 6 + [(b"GET", b"/jwks"), (b"POST", b"/introspect")] * 2
                                 + [None] * 4))
    if route is None:
        method = draw(st.sampled_from([b"POST", b"GET", b"PUT", b"OPTIONS", b"CONNECT", b"PRI", b"post", b"P\x00ST",
                                       b""]))
        target = draw(st.sampled_from([b"/token", b"/revoke", b"/nowhere", b"*", b"http://as.example/token",
                                       b"/token?x=%ff", b"/%2e%2e/token", b"/t\xffoken", b"/" + b"a" * 40_000, b""]))
    else:
        method, target = route
    version = draw(st.sampled_from([b"HTTP/1.1"] * 12 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"", b"http/1.1"]))
    body = draw(st.sampled_from([_TOKEN_FORM, _TOKEN_FORM, b"", b"grant_type=client_credentials"]) | st.binary(
        max_size=40))
    headers = [(b"Host", b"as.example")] if draw(chance(9, 10)) else []
    headers.append((b"Content-Type", draw(st.sampled_from([b"application/x-www-form-urlencoded"] * 6 + [
        b"text/plain", b"application/x-www-form-urlencoded\x00"]))))
    framing = draw(st.sampled_from(["length"] * 6 + ["chunked", "chunked", "none", "both", "odd-length",
                                                     "two-lengths"]))
    if framing in ("length", "both"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    if framing in ("chunked", "both"):
        headers.append((b"Transfer-Encoding", draw(st.sampled_from([b"chunked", b"gzip, chunked", b"chunked, gzip",
                                                                    b"identity", b"Chunked"]))))
        size = draw(st.sampled_from([b"%x" % len(body), b"%X" % len(body), b"%x;ext=1" % len(body), b"ffffffffffffff",
                                     b"-1", b"0x10", b""]))
        body = size + b"\r\n" + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
    if framing == "odd-length":
        headers.append((b"Content-Length", draw(long_digit_runs.map(str.encode) | st.sampled_from(
            [b"-1", b"1e3", b" 5", b"5 ", b"0x10", b"", b"99999999999999999999999"]))))
    if framing == "two-lengths":
        headers += [(b"Content-Length", str(len(body)).encode()), (b"Content-Length", b"0")]
    for _ in range(draw(st.sampled_from([0] * 6 + [1, 1, 2]))):
        headers.append(draw(st.sampled_from([
            (b"Connection", b"close"), (b"Connection", b"upgrade"), (b"Upgrade", b"h2c"), (b"Expect", b"100-continue"),
            (b"Authorization", b"Basic cGtpOnM="), (b"X-Folded", b"a\r\n b"), (b"X-Nul", b"a\x00b"),
            (b"X-Big", b"v" * (REQUEST_HEAD_LIMIT + 1)), (b"Bad Name", b"x"), (b"X-8bit", b"\xe9"),
            (b"", b"empty name"), (b"X-Bare-CR", b"a\rb"),
        ])))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in draw(st.permutations(headers)))
    return head + b"\r\n" + body


@st.composite
def connections(draw: st.DrawFn) -> tuple[list[bytes], int]:
    """What a client sends on one connection, cut into the pieces ``data_received`` gets, and
    how many requests it begins."""
    requests = draw(st.lists(request_bytes(), min_size=1, max_size=3))
    raw = b"".join(requests)
    if draw(chance(1, 4)):  # bytes inserted, dropped or replaced anywhere
        raw = draw(mutated(st.just(raw.decode("latin-1")), st.sampled_from(
            [":", "\r", "\n", "\r\n", " ", "\x00", "\xff", "0", "chunked", "HTTP/1.1"]))).encode("latin-1")
    if draw(chance(1, 10)):
        raw = b"\r\n" * draw(st.integers(0, 3)) + draw(st.binary(max_size=60))
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)], len(requests)


# --- the property ----------------------------------------------------------------------------


async def _serve(app: Any, pieces: list[bytes]) -> _Transport:
    loop = asyncio.get_running_loop()
    config = Config(app=app, interface="asgi3", lifespan="off", log_config=None, proxy_headers=False,
                    server_header=False, date_header=False)
    state = ServerState()
    protocol = MutualTLSHttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop)
    transport = _Transport()
    # No TLS on the fake transport, so no certificate: the endpoints refuse client
    # authentication (tests/fuzz/test_endpoints.py covers what follows it).
    protocol.connection_made(transport)
    for piece in pieces:
        if transport.closed:
            break
        protocol.data_received(piece)
        await asyncio.sleep(0)
    # Let the endpoints answer; a request still incomplete gets what the once-a-second sweep
    # gives it after REQUEST_READ_TIMEOUT; then the client leaves.
    await _settle(state, 0.05)
    if protocol.request_deadline is not None:
        protocol.request_too_slow()
        await _settle(state, 0.5)
    protocol.connection_lost(None)
    await _settle(state, 0.5)
    assert not state.tasks, "a request is still being answered after its client left"
    if protocol.timeout_keep_alive_task is not None:
        protocol.timeout_keep_alive_task.cancel()
    return transport


async def _settle(state: ServerState, seconds: float) -> None:
    """Until no request is being answered (or ``seconds``), and the coalesced write is out."""
    for _ in range(int(seconds / 0.001)):
        if not state.tasks:
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0)


def test_no_bytes_make_the_http_layer_answer_5xx_or_malformed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", issuer=ISSUER, trust_anchors=[_CA.write(tmp_path / "ca.pem")],
                        log_level="error")
    with asyncio.Runner() as runner:
        context = ServerContext.build(settings)
        app = create_app(settings, context)
        runner.run(context.start())
        seen: Counter[str] = Counter()
        try:
            runner.run(_register(context))

            # The answers the properties check, whatever hypothesis generates.
            @example(([b"GET /jwks HTTP/1.1\r\nHost: as.example\r\n\r\n"], 1))
            @example(([b"GET /nowhere HTTP/1.1\r\nHost: as.example\r\n\r\n"], 1))
            @example(([_FORM_HEAD + b"Content-Length: 13\r\n\r\nclient_id=pki"], 1))
            @example(([_FORM_HEAD + b"Content-Length: 43\r\n\r\n", _TOKEN_FORM], 1))
            @example(([_FORM_HEAD + b"Content-Length: 43\r\n\r\ngrant_type="], 1))
            @example(([b"GET / HTTP/1.1\r\nX-Big: " + b"v" * REQUEST_HEAD_LIMIT + b"\r\n\r\n"], 1))
            @example(([b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], 1))  # TLS spoken to plain HTTP
            @budget(400, deadline_ms=2000)
            @given(connections())
            def check(connection: tuple[list[bytes], int]) -> None:
                pieces, begun = connection
                transport = runner.run(_serve(app, pieces))
                responses = _responses(bytes(transport.written))
                assert len(responses) <= begun + b"".join(pieces).count(b"\r\n\r\n"), responses
                for status, headers, body in responses:
                    assert status < 500, (status, body)
                    if status == 100:
                        continue
                    if status >= 400:
                        document = json.loads(body)
                        assert isinstance(document.get("error"), str) and document.get("error_description"), body
                        seen[f"{status} {document['error_description'][:40]}"] += 1
                    else:
                        seen[str(status)] += 1
                    if headers.get(b"connection") == b"close":
                        assert transport.closed

            check()
        finally:
            runner.run(context.stop())
    # Not vacuous: requests were served, and the parser's, the size limit's and the endpoints'
    # refusals met.
    require_seen(seen, ("200", "400 the request is not valid HTTP/1.1", "431 ", "408 ", "400 grant_type", "401 ",
                        "404 "))
