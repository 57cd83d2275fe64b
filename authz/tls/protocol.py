"""uvicorn protocol that puts the ASGI TLS extension into every request's scope.

uvicorn (0.54) does not expose the peer certificate. Its protocols call
``connection_made`` after the TLS handshake, so the extension is built there, once per
connection, and attached to each request scope as it begins. The same hook wraps the
transport so that each response leaves in one TLS record (``write_coalescing``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from authz.tls.extension import tls_extension
from authz.tls.write_coalescing import WriteCoalescingTransport

__all__ = ["MutualTLSHttpToolsProtocol"]


class MutualTLSHttpToolsProtocol(HttpToolsProtocol):
    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = tls_extension(ssl_object, server_cert_pem=None)
        # uvicorn reads self.transport for every write of every request on this connection;
        # its flow control (self.flow) keeps the real transport.
        self.transport = WriteCoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions["tls"] = self._tls
