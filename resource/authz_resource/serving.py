"""Serve an ASGI application over direct TLS the way the authorization server does: request
a client certificate, accept any at the TLS layer (the application decides), and put it
in every request's scope as the ASGI TLS extension (``authz.tls``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from authz.tls.context import uvicorn_mtls_options

__all__ = ["uvicorn_tls_options"]


def uvicorn_tls_options(tls_cert: Path, tls_key: Path) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: the authorization server's
    own serving options (``authz.tls.context.uvicorn_mtls_options``).

    Raises ``ServerTLSError`` or ``OSError`` when the files cannot be loaded or the TLS layer
    fails its start-up self-test.
    """
    return uvicorn_mtls_options(str(tls_cert), str(tls_key))
