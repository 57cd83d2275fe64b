"""Certificate headers written the way each proxy writes them, for requests that forge them
(a client injecting one through the proxy, or sending one straight to authz) and for the
proxies the tests cannot run (Envoy, Traefik)."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Sequence
from urllib.parse import quote

__all__ = ["certificate_headers"]


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def certificate_headers(kind: str, chain: Sequence[bytes]) -> dict[str, str]:
    """The headers ``kind`` sends for a client that presented ``chain`` (DER, leaf first)."""
    leaf, *intermediates = chain
    if kind == "nginx":  # $ssl_client_escaped_cert; nginx has no variable for the chain
        return {"X-SSL-Client-Cert": quote(_pem(leaf), safe="")}
    if kind == "haproxy":  # %[ssl_c_der,base64], %[ssl_c_chain_der,base64]
        return {"X-SSL-Client-Cert": _b64(leaf), "X-SSL-Client-Cert-Chain": _b64(b"".join(intermediates))}
    if kind == "apache":
        # %{SSL_CLIENT_CERT}s, %{SSL_CLIENT_CERT_CHAIN_n}s: line breaks become spaces (the last
        # one left out here: HTTP clients do not send trailing white space).
        headers = {"X-SSL-Client-Cert": _pem(leaf).replace("\n", " ").strip()}
        for index in range(4):
            headers[f"X-SSL-Client-Cert-Chain-{index}"] = (_pem(intermediates[index]).replace("\n", " ").strip()
                                                           if index < len(intermediates) else "(null)")
        return headers
    if kind == "envoy":
        # forward_client_cert_details SANITIZE_SET with set_current_client_cert_details
        # {cert, chain, subject, uri, dns}: Hash is always there; Cert and Chain (leaf
        # included) are URL-encoded PEM in quotes; Subject is quoted; empty URI and DNS stay.
        from cryptography import x509

        subject = x509.load_der_x509_certificate(leaf).subject.rfc4514_string()
        cert = quote(_pem(leaf), safe="")
        full = quote("".join(_pem(d) for d in chain), safe="")
        return {"X-Forwarded-Client-Cert": f'By=spiffe://authz.test/ns/proxy;Hash={hashlib.sha256(leaf).hexdigest()};'
                                           f'Cert="{cert}";Chain="{full}";Subject="{subject}";URI=;DNS='}
    if kind in ("traefik", "traefik-v2"):
        # PassTLSClientCert pem: true: each certificate's PEM without its armour and line
        # breaks, comma-separated, leaf first; Traefik 2 also URL-escaped it (Go's QueryEscape).
        value = ",".join(_b64(d) for d in chain)
        return {"X-Forwarded-Tls-Client-Cert": quote(value, safe="") if kind == "traefik-v2" else value}
    raise ValueError(f"no header format for {kind}")
