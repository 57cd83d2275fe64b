"""uvicorn protocol that puts the ASGI TLS extension into every request's scope, and refuses
what uvicorn would let through or answer in plain text.

uvicorn (0.54) does not expose the peer certificate. Its protocols call
``connection_made`` after the TLS handshake, so the extension is built there, once per
connection, and attached to each request scope as it begins. The same hook wraps the
transport so that each response leaves in one TLS record (``write_coalescing``).

The HTTP layer's own refusals (``http_refusal``) are JSON OAuth errors with a log line:
- a request that is not valid HTTP/1.1: 400 with the parser's reason (uvicorn: text/plain);
- a request head larger than ``REQUEST_HEAD_LIMIT``: 431 (uvicorn: no limit);
- a request not received whole within ``REQUEST_READ_TIMEOUT``: 408 (uvicorn: no limit);
- ``Connection: upgrade``: 400. httptools stops parsing at such a head, so uvicorn ran the
  endpoint without the body and dropped whatever followed on the connection.
A connection that sends nothing is closed after uvicorn's keep-alive timeout, as an idle
keep-alive connection is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from authz.clipping import clipped
from authz.metrics import state as metrics
from authz.tls import request_deadline
from authz.tls.extension import tls_extension
from authz.tls.http_refusal import log_http_refusal, refusal_response
from authz.tls.write_coalescing import WriteCoalescingTransport

__all__ = ["REQUEST_HEAD_LIMIT", "MutualTLSHttpToolsProtocol"]

# Request line and headers. A token request's head is a few hundred bytes; 32 KiB is what
# nginx accepts by default (large_client_header_buffers 4 8k).
REQUEST_HEAD_LIMIT = 32 * 1024
_LOGGED_TARGET_CHARS = 200


class MutualTLSHttpToolsProtocol(HttpToolsProtocol):
    _tls: dict[str, Any] | None = None
    # While the current request's head is incomplete: the bytes received since it began (what
    # the parser may be holding as a partial header). The size of the chunk being parsed
    # bounds the rest. Counting per chunk, not per header, keeps the check off the per-header
    # path of every request.
    _in_head = False
    _head_chunk_bytes = 0
    _chunk_bytes = 0
    _refused = False
    # loop.time() by which the current request must have arrived whole (request_deadline).
    request_deadline: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = tls_extension(ssl_object, server_cert_pem=None)
        # uvicorn reads self.transport for every write of every request on this connection;
        # its flow control (self.flow) keeps the real transport.
        self.transport = WriteCoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        # uvicorn arms its idle timer only after a response: a connection that never sends a
        # request would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        request_deadline.watch(self.loop, self.server_state)

    def connection_lost(self, exc: Exception | None) -> None:
        self.request_deadline = None
        slot = getattr(self, "connection_slot", None)  # set by authz.tls.listener
        if slot is not None:
            slot.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the parser's reason kept and the head size counted.
        if self._refused:
            return
        # uvicorn cancels the idle timer on any byte; here a request must begin first
        # (on_message_begin), or CRLFs, which the parser skips, would keep a connection for ever.
        self._chunk_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return  # refused in on_headers_complete
        except httptools.HttpParserError as exc:
            self._refuse(400, "the request is not valid HTTP/1.1", detail=f"HTTP parser: {exc}", reason="invalid_http")
            return
        if self._in_head and not self._refused:
            # Counted after parsing, so a chunk that completes a head is measured exactly in
            # on_headers_complete instead.
            self._head_chunk_bytes += len(data)
            self._check_head_size(self._head_chunk_bytes, "received without the end of the request head")

    def _check_head_size(self, size: int, what: str) -> None:
        if size > REQUEST_HEAD_LIMIT:
            self._refuse(
                431,
                f"the request line and headers exceed {REQUEST_HEAD_LIMIT // 1024} KiB",
                detail=f"{size} bytes {what} (limit {REQUEST_HEAD_LIMIT})",
                reason="head_too_large",
            )

    def on_message_begin(self) -> None:
        self._unset_keepalive_if_required()
        super().on_message_begin()
        self._in_head = True
        self._head_chunk_bytes = 0
        self.request_deadline = self.loop.time() + request_deadline.REQUEST_READ_TIMEOUT
        if self._tls is not None:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions["tls"] = self._tls

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        if self._head_chunk_bytes + self._chunk_bytes > REQUEST_HEAD_LIMIT:
            # Only a head that may be too large is measured: request line and header fields.
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            self._check_head_size(size, "in the request line and headers")
            if self._refused:
                return
        if self.parser.should_upgrade():
            upgrade = next((v for n, v in self.headers if n == b"upgrade"), b"")
            self._refuse(
                400,
                "protocol upgrades are not supported: send the request without 'Connection: upgrade'",
                detail=f"Upgrade: {upgrade[:100].decode('latin-1')}",
                reason="upgrade",
            )
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.request_deadline = None
        if not self._refused:
            super().on_message_complete()

    def request_too_slow(self) -> None:
        """Called by the request_deadline sweep once the current request is late."""
        self.request_deadline = None
        if self.transport.is_closing():
            return
        part = "head" if self._in_head else "body"
        self._refuse(
            408,
            f"the request was not received whole within {request_deadline.REQUEST_READ_TIMEOUT:g} s",
            detail=f"request {part} incomplete",
            reason="request_timeout",
        )

    def _method(self) -> str | None:
        # Before a method is parsed, httptools reports its default (DELETE): not what was sent.
        # The request target follows the method, so any target byte means a parsed method.
        if not getattr(self, "url", b""):
            return None
        try:
            return self.parser.get_method().decode("latin-1")[:20] or None
        except Exception:  # no parser any more
            return None

    def _refuse(self, status: int, description: str, *, detail: str, reason: str) -> None:
        """Answer ``status`` with a JSON error, log it, count it (``reason``), and close the connection."""
        if self._refused:
            return
        self._refused = True
        counter = metrics.ACTIVE
        if counter is not None:
            counter.refused("http", "invalid_request", reason)
        self.request_deadline = None
        target = clipped(getattr(self, "url", b"").decode("latin-1"), _LOGGED_TARGET_CHARS)
        log_http_refusal(
            status,
            description,
            peer=f"{self.client[0]}:{self.client[1]}" if self.client else None,
            detail=detail,
            method=self._method(),
            request_target=target or None,
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if not cycle.more_body:
                # The refused request follows one whose answer is still being produced: that
                # answer goes out first, then uvicorn closes the connection.
                cycle.keep_alive = False
                self.flow.pause_reading()
                return
            # The refused request is the one being answered: its endpoint stops waiting.
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.write(refusal_response(status, description))
            self.transport.close()
