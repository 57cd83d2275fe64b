"""A real HTTPS server publishing JWK Sets, for the tests of ``jwks_uri``: each path is a route
whose answer a test sets (a set, a status, a redirect, a slow or huge body), and which counts
the requests it got. The server also counts TCP connections, so a test can show that a refused
destination was never even connected to.

Threads (``ThreadingHTTPServer``), not asyncio: the tests drive it from synchronous wire tests
as well as from async tests whose event loop runs the fetcher.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.clients.model import jwk_for_certificate
from tests.support.pki import Issued, TestCA

__all__ = ["JWKS_HOST", "JwksPKI", "JwksServer", "Route", "build_jwks_pki", "jwk_set"]


def jwk_set(*certificates: Issued) -> dict[str, Any]:
    """The JWK Set registering ``certificates`` (each key with its x5c), as a client publishes it."""
    return {"keys": [jwk_for_certificate(c.cert) for c in certificates]}


@dataclass
class Route:
    """What one path answers. ``mode``: "ok" (the set), "slow" (the set, one byte every
    ``trickle`` seconds), "huge" (``huge_bytes`` of JSON-looking data without Content-Length),
    "redirect" (302 to ``location``), "status" (``status`` with a short body), "raw" (``body``
    as is), "close" (the connection closed without an answer)."""

    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    mode: str = "ok"
    status: int = 200
    content_type: str = "application/jwk-set+json"
    headers: dict[str, str] = field(default_factory=dict)
    location: str = ""
    body: bytes = b""
    trickle: float = 0.1
    delay: float = 0.0  # seconds before answering ("ok" mode)
    huge_bytes: int = 64 * 1024 * 1024
    requests: list[dict[str, str]] = field(default_factory=list)  # the headers of each request
    aborted: list[int] = field(default_factory=list)  # bytes sent before the client went away

    @property
    def count(self) -> int:
        return len(self.requests)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._answer(404, b"no such route", "text/plain")
            return
        route.requests.append({k.lower(): v for k, v in self.headers.items()})
        if route.mode == "redirect":
            self._answer(302, b"", "text/plain", {"Location": route.location})
        elif route.mode == "status":
            self._answer(route.status, b'{"error": "failing on purpose"}', "application/json")
        elif route.mode == "raw":
            self._answer(route.status, route.body, route.content_type, route.headers)
        elif route.mode == "close":
            self.close_connection = True  # no answer at all
        elif route.mode == "huge":
            self._stream(route)
        else:
            body = json.dumps(route.document).encode()
            if route.mode == "slow":
                self._trickle(route, body)
            else:
                time.sleep(route.delay)
                self._answer(200, body, route.content_type, route.headers)

    def _answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, route: Route, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for sent in range(len(body)):
            try:
                self.wfile.write(body[sent:sent + 1])
                self.wfile.flush()
            except OSError:
                route.aborted.append(sent)
                return
            time.sleep(route.trickle)

    def _stream(self, route: Route) -> None:
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Connection", "close")  # no length: the body ends with the connection
        self.end_headers()
        chunk = b'{"keys": [' + b" " * (64 * 1024 - 10)
        sent = 0
        try:
            while sent < route.huge_bytes:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            route.aborted.append(sent)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.routes: dict[str, Route] = {}
        self.connections = 0
        self.server_names: list[str | None] = []
        context.sni_callback = self._sni

    def _sni(self, sock: Any, name: str | None, context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        self.connections += 1
        # The handshake happens in the handler's thread, at its first read: a client that
        # never completes one cannot hold up the others.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is what several tests do on purpose


class JwksServer:
    """``with JwksServer(cert, key) as server: server.route("/a", Route(...)); server.url("/a")``."""

    def __init__(self, cert: Path, key: Path, *, host: str = "127.0.0.1", port: int = 0,
                 url_host: str | None = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self._server = _Server((host, port), context)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url_host = url_host or host
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, path: str, route: Route | None = None) -> Route:
        route = route or Route()
        self._server.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return f"https://{self.url_host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def server_names(self) -> Sequence[str | None]:
        return list(self._server.server_names)


@dataclass(frozen=True)
class JwksPKI:
    """The CA (to pass as --jwks-uri-ca) and the certificate of the JWKS servers: valid for
    JWKS_HOST, 127.0.0.1 and 127.0.0.2."""

    ca_file: Path
    cert: Path
    key: Path


JWKS_HOST = "jwks.test"


def build_jwks_pki(directory: Path) -> JwksPKI:
    ca = TestCA("CN=JWKS Server CA,O=authz tests")
    cert, key = ca.issue("CN=jwks.test", san_dns=[JWKS_HOST], san_ip=["127.0.0.1", "127.0.0.2"],
                         eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(directory, "jwks-server")
    return JwksPKI(ca.write(directory / "jwks-ca.pem"), cert, key)
