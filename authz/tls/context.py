"""The server's TLS context: request a client certificate, accept any, hand it to the app."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from authz.tls import accept_any, resumption, tls_profile
from authz.tls.ca_names import CANamesError, advertise_ca_names, read_ca_names
from authz.tls.resumption import ResumptionConfig, ResumptionError
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


def configure_for_mtls(context: ssl.SSLContext, advertised_ca_names: Sequence[x509.Name] = (), *,
                       resumption_config: ResumptionConfig | None = None) -> ssl.SSLContext:
    """Turn a server context (certificate already loaded) into one that serves the TLS
    profile (``authz.tls.tls_profile``) and collects client certificates, then prove both
    with handshakes. ``advertised_ca_names`` (``--advertise-ca-names``: the trust anchors'
    subjects) go in the CertificateRequest; by default it names no CA. Sessions resume as
    ``resumption_config`` says (``--tls-resumption``, ``authz.tls.resumption``): by default not."""
    # No trust store on purpose: OpenSSL's verdict is never used. And no CA names unless asked
    # for: Go and Java clients withhold certificates that no listed CA issued, self-signed
    # ones included (authz.tls.ca_names).
    try:
        tls_profile.apply(context)
        if resumption_config is not None and resumption_config.tickets:
            resumption.enable_tickets(context, resumption_config)
        accept_any.install(context)
        if advertised_ca_names:
            advertise_ca_names(context, advertised_ca_names)
        run_self_test(context, advertised_ca_names)
    except (OpenSSLAccessError, tls_profile.TLSProfileError, accept_any.AcceptAnyCertificateError,
            CANamesError, ResumptionError, TLSSelfTestError) as exc:
        raise ServerTLSError(
            f"refusing to start: the TLS layer cannot be set up as this server needs it: {exc}. "
            "Run it on a supported CPython (3.11-3.13) with the OpenSSL it was built with."
        ) from exc
    return context


def build_server_context(certfile: str, keyfile: str | None, advertised_ca_names: Sequence[x509.Name] = (), *,
                         resumption_config: ResumptionConfig | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return configure_for_mtls(context, advertised_ca_names, resumption_config=resumption_config)


def uvicorn_ssl_context_factory(config: Any, default_factory: Callable[[], ssl.SSLContext], *,
                                ca_name_files: Sequence[str] = (),
                                resumption_config: ResumptionConfig | None = None) -> ssl.SSLContext:
    """``uvicorn.Config(ssl_context_factory=...)``: importable, so it works with --workers
    (``ca_name_files`` and ``resumption_config`` are bound with ``functools.partial``, which
    pickles for the workers). The context's files are recorded, so that ``SIGHUP`` reloads them
    (``authz.tls.credentials``): the certificate and key, and the files whose certificates'
    subjects are the advertised CA names (``--advertise-ca-names``: the trust anchors)."""
    from authz.tls.credentials import register_credentials

    context = configure_for_mtls(default_factory(), _ca_names(ca_name_files), resumption_config=resumption_config)
    register_credentials(context, config.ssl_certfile, config.ssl_keyfile, ca_name_files=ca_name_files)
    return context


def _ca_names(files: Sequence[str]) -> list[x509.Name]:
    try:
        return read_ca_names([Path(file) for file in files])
    except CANamesError as exc:
        raise ServerTLSError(f"refusing to start: --advertise-ca-names: {exc}") from exc


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


def uvicorn_mtls_options(certfile: str, keyfile: str, ca_name_files: Sequence[Path | str] = (), *,
                         resumption_config: ResumptionConfig | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that serve mutual TLS the way this project needs;
    the CertificateRequest names the CAs of the certificates in ``ca_name_files``
    (``--advertise-ca-names``), or none; sessions resume as ``resumption_config`` says
    (``--tls-resumption``), by default not.

    Builds the context once first: that loads the files and runs the start-up self-test, so
    a server that could not see client certificates refuses to start (``ServerTLSError``,
    ``OSError``) instead of refusing every client later. Worker processes build their own
    context through the importable factory and protocol.
    """
    files = tuple(str(file) for file in ca_name_files)
    build_server_context(certfile, keyfile, _ca_names(files), resumption_config=resumption_config)
    return {
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "ssl_context_factory": functools.partial(uvicorn_ssl_context_factory, ca_name_files=files,
                                                 resumption_config=resumption_config),
        **uvicorn_plain_options(),
    }
