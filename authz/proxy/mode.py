"""Proxy mode as ASGI: ``ForwardedCertificate`` wraps an application (the authorization
server, the sample API, any API using the resource-server middleware) and, for each request,
replaces the TLS extension with the certificate a trusted proxy forwarded in a header.

From a peer that is not a trusted proxy the header is ignored and the request has no
certificate (a client that reaches the server around the proxy cannot name one); a line says
so. From a trusted proxy, the header decoded (``authz.proxy.formats``) becomes the extension's
``client_cert_chain``, and a header that does not decode its ``client_cert_error``, which
``authz.certificates.presented`` turns into a refusal naming the header. Trust is decided on
the TCP peer (and its TLS certificate) before anything else: uvicorn's own proxy-header
handling, which would rewrite the peer first, is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send

from authz.certificates.presented import present_chain
from authz.networks import parse_networks
from authz.proxy.formats import CertificateHeaderError, HeaderFormat, header_format
from authz.proxy.forwarded import FORWARDING_HEADERS, forwarded_client
from authz.proxy.trust import ProxyTrust

__all__ = ["ForwardedCertificate", "ProxyMode", "build_proxy_mode"]

log = structlog.get_logger("authz.proxy")


@dataclass(frozen=True)
class ProxyMode:
    format: HeaderFormat
    trust: ProxyTrust
    header: str | None = None  # another name than the format's default, where proxies allow one

    @property
    def header_name(self) -> str:
        return self.header or self.format.default_header


def build_proxy_mode(
    format_name: str,
    *,
    header: str | None = None,
    trusted_proxies: Sequence[str] = (),
    trusted_proxy_certs: Sequence[Path] = (),
    trusted_proxy_cas: Sequence[Path] = (),
) -> ProxyMode:
    """The proxy mode the options describe; ``ValueError`` naming the option otherwise."""
    chosen = header_format(format_name)
    if header is not None and not chosen.header_configurable:
        raise ValueError(f"--proxy-cert-header-name: the {format_name} format's header is "
                         f"{chosen.default_header}; only nginx, haproxy and apache let you choose it")
    try:
        networks = parse_networks(trusted_proxies, strict=False)
    except ValueError as exc:
        raise ValueError(f"--trusted-proxy: {exc}") from None
    trust = ProxyTrust(networks, _certificates(trusted_proxy_certs, "--trusted-proxy-cert"),
                       _certificates(trusted_proxy_cas, "--trusted-proxy-ca"))
    if not trust.configured:
        raise ValueError("--proxy-cert-header needs the proxies it trusts: --trusted-proxy ADDRESS/CIDR, or "
                         "--trusted-proxy-cert / --trusted-proxy-ca for a proxy that presents its own certificate")
    return ProxyMode(chosen, trust, header)


def _certificates(paths: Sequence[Path], option: str) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for path in paths:
        try:
            found.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except OSError as exc:
            raise ValueError(f"{option}: cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"{option}: {path} holds no PEM certificate ({exc})") from None
    return found


class ForwardedCertificate:
    def __init__(self, app: ASGIApp, mode: ProxyMode) -> None:
        self.app = app
        self.mode = mode
        self._read = frozenset(n.encode("latin-1") for n in (*mode.format.header_names(mode.header),
                                                               *FORWARDING_HEADERS))
        # Starlette's app state and lifespan live on the wrapped app.
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.mode.trust.prepare(scope)
            scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        headers = self._headers(scope)
        tls: dict[str, Any] = {"server_cert": None, "client_cert_chain": [], "client_cert_name": None,
                               "client_cert_error": None, "tls_version": None, "cipher_suite": None}
        rewritten = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": tls}}
        sent = [name for name in self.mode.format.header_names(self.mode.header) if name in headers]
        trusted_by = self.mode.trust.trusted_by(scope)
        if trusted_by is None:
            if sent:
                client = scope.get("client")
                log.warning("proxy_certificate_header_ignored", peer=f"{client[0]}:{client[1]}" if client else None,
                            header=sent[0], path=scope.get("path"),
                            detail="the peer is not a trusted proxy: the request has no client certificate")
            return rewritten
        try:
            chain = self.mode.format.decode(headers, self.mode.header)
        except CertificateHeaderError as exc:
            tls["client_cert_error"] = str(exc)
        else:
            if chain:
                present_chain(tls, chain)
        client = forwarded_client(headers, self.mode.trust.is_trusted_address)
        if client is not None:
            rewritten["client"] = (client, 0)
        return rewritten

    def _headers(self, scope: Scope) -> Mapping[str, str]:
        """The headers this mode reads, lower-case; repeated fields joined with ", "."""
        found: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            if raw_name in self._read:
                name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                found[name] = f"{found[name]}, {value}" if name in found else value
        return found
