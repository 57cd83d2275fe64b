"""A TLS connection kept open for several HTTP/1.1 requests, and the certificate a server
presents to a new connection: what a reload must keep, and what it must change."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

__all__ = ["KeptConnection", "client_context", "presented_server_certificate"]


def client_context(server_ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def presented_server_certificate(port: int, server_ca: Path) -> bytes:
    """The DER certificate the server presents to a new connection (verified against ``server_ca``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client_context(server_ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


class KeptConnection:
    """One TLS connection; ``request`` sends on it, never on another one. ``session``: offer
    this TLS session (of an earlier connection with the same context) for resumption."""

    def __init__(self, port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = context.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        self.requests = 0
        self._buffer = b""

    @property
    def server_certificate(self) -> bytes:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def request(self, method: str, path: str, body: bytes = b"",
                content_type: str = "application/x-www-form-urlencoded") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += f"Content-Type: {content_type}\r\n"
        self.tls.sendall(head.encode() + b"\r\n" + body)
        self.requests += 1
        return self._response()

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        assert headers.get("connection", "").lower() != "close", f"the server closes the connection: {head!r}"
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(status_line.split()[1]), body

    def _receive(self) -> None:
        data = self.tls.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self._buffer += data

    def close(self) -> None:
        self.tls.close()
