"""Serve an ASGI application over direct TLS the way the authorization server does: request
a client certificate, accept any at the TLS layer (the application decides), and put it
in every request's scope as the ASGI TLS extension (``authz.tls``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authz.tls.context import build_server_context, uvicorn_ssl_context_factory

__all__ = ["uvicorn_tls_options"]


def uvicorn_tls_options(tls_cert: Path, tls_key: Path) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``.

    Builds the server context once first: that loads the files and runs ``authz.tls``'s
    start-up self-test, so a server that could not see client certificates refuses to
    start (``ServerTLSError``, ``OSError``) instead of refusing every token later.
    """
    build_server_context(str(tls_cert), str(tls_key))
    return {
        "ssl_certfile": str(tls_cert),
        "ssl_keyfile": str(tls_key),
        "ssl_context_factory": uvicorn_ssl_context_factory,
        "http": "authz.tls.protocol:MutualTLSHttpToolsProtocol",
        "loop": "uvloop",
    }
