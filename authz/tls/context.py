"""The server's TLS context: request a client certificate, accept any, hand it to the app."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from authz.tls import accept_any, tls_profile
from authz.tls.self_test import TLSSelfTestError, run_self_test
from authz.tls.ssl_ctx import OpenSSLAccessError

__all__ = [
    "ServerTLSError",
    "build_server_context",
    "configure_for_mtls",
    "uvicorn_mtls_options",
    "uvicorn_plain_options",
    "uvicorn_ssl_context_factory",
]


class ServerTLSError(RuntimeError):
    """The server cannot serve mutual TLS as RFC 8705 needs it; the message says why."""


def configure_for_mtls(context: ssl.SSLContext) -> ssl.SSLContext:
    """Turn a server context (certificate already loaded) into one that serves the TLS
    profile (``authz.tls.tls_profile``) and collects client certificates, then prove both
    with handshakes."""
    # No trust store on purpose: OpenSSL must not advertise CA names (Go and Java clients
    # then withhold self-signed certificates) and its verdict is never used.
    try:
        tls_profile.apply(context)
        accept_any.install(context)
        run_self_test(context)
    except (OpenSSLAccessError, tls_profile.TLSProfileError, accept_any.AcceptAnyCertificateError,
            TLSSelfTestError) as exc:
        raise ServerTLSError(
            f"refusing to start: the TLS layer cannot be set up as this server needs it: {exc}. "
            "Run it on a supported CPython (3.11-3.13) with the OpenSSL it was built with."
        ) from exc
    return context


def build_server_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return configure_for_mtls(context)


def uvicorn_ssl_context_factory(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """``uvicorn.Config(ssl_context_factory=...)``: importable, so it works with --workers.
    The context's files are recorded, so that ``SIGHUP`` reloads them (``authz.tls.credentials``)."""
    from authz.tls.credentials import register_credentials

    context = configure_for_mtls(default_factory())
    register_credentials(context, config.ssl_certfile, config.ssl_keyfile)
    return context


def uvicorn_plain_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` serving plain HTTP to a trusted proxy (proxy
    mode without TLS): the same HTTP layer and loop as over TLS."""
    return {
        "http": "authz.tls.protocol:MutualTLSHttpToolsProtocol",
        # uvloop, with TLS servers that bound connections and handshake time (authz.tls.listener).
        "loop": "authz.tls.listener:new_event_loop",
        # The TCP peer is the client: uvicorn would otherwise take X-Forwarded-For from
        # loopback peers as the client address, and log lines would name a forged peer. Proxy
        # mode reads the forwarding headers itself, from trusted proxies only (authz.proxy).
        "proxy_headers": False,
        "server_header": False,
    }


def uvicorn_mtls_options(certfile: str, keyfile: str) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that serve mutual TLS the way this project needs.

    Builds the context once first: that loads the files and runs the start-up self-test, so
    a server that could not see client certificates refuses to start (``ServerTLSError``,
    ``OSError``) instead of refusing every client later. Worker processes build their own
    context through the importable factory and protocol.
    """
    build_server_context(certfile, keyfile)
    return {
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "ssl_context_factory": uvicorn_ssl_context_factory,
        **uvicorn_plain_options(),
    }
