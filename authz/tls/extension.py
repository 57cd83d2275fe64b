"""Build the ASGI TLS extension (``scope["extensions"]["tls"]``) for one connection.

Keys follow the ASGI TLS extension spec (v0.2): ``server_cert``, ``client_cert_chain`` (PEM
strings, leaf first), ``client_cert_name`` (RFC 4514), ``client_cert_error``,
``tls_version`` and ``cipher_suite``; and one of this project's, ``SESSION_RESUMED_KEY``,
true on a resumed TLS session (whose chain is the leaf alone). The dict is built once per
connection and shared by every request on it; consumers must treat it as read-only.
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509

from authz.certificates.limits import chain_size_problem
from authz.certificates.presented import SESSION_RESUMED_KEY

__all__ = ["peer_certificate_chain", "tls_extension"]

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def peer_certificate_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The DER certificates the client sent, leaf first; empty when it sent none.

    On a resumed TLS session OpenSSL only remembers the leaf: the chain is the leaf alone
    (``authz.tls.resumption``).
    """
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        # CPython 3.11's private get_unverified_chain() returns [None] without a
        # certificate: check the leaf first.
        return []
    get_chain = getattr(ssl_object, "get_unverified_chain", None)  # public from 3.13
    if get_chain is None:
        get_chain = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    chain = get_chain() if get_chain is not None else None
    if not chain:
        return [leaf]
    ders = [cert.public_bytes(_ssl_der_encoding()) for cert in chain if cert is not None]
    if not ders or ders[0] != leaf:
        ders.insert(0, leaf)
    return ders


def _ssl_der_encoding() -> int:
    import _ssl

    return int(_ssl.ENCODING_DER)


def _cipher_ids(context: ssl.SSLContext) -> dict[str, int]:
    # OpenSSL cipher ids carry the IANA two-byte code in their low 16 bits.
    return {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}


_cipher_id_cache: dict[int, dict[str, int]] = {}


def tls_extension(ssl_object: ssl.SSLObject, server_cert_pem: str | None) -> dict[str, Any]:
    """The ASGI TLS extension for the connection that ``ssl_object`` terminates."""
    chain_pem, client_cert_name = _certificate_fields(peer_certificate_chain(ssl_object))
    cipher = ssl_object.cipher()
    cipher_suite: int | None = None
    version: int | None = None
    if cipher is not None:
        ids = _cipher_id_cache.get(id(ssl_object.context))
        if ids is None:
            ids = _cipher_id_cache[id(ssl_object.context)] = _cipher_ids(ssl_object.context)
        cipher_suite = ids.get(cipher[0])
        version = _TLS_VERSIONS.get(ssl_object.version() or "")
    return {
        "server_cert": server_cert_pem,
        "client_cert_chain": list(chain_pem),
        "client_cert_name": client_cert_name,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": cipher_suite,
        SESSION_RESUMED_KEY: ssl_object.session_reused,
    }


def _certificate_fields(chain: list[bytes]) -> tuple[tuple[str, ...], str | None]:
    """PEM chain and subject name of a client chain. Per connection, never cached across
    connections: an anonymous client can send a new certificate on each one. A chain over the
    limits is not parsed for its name (the application refuses it unparsed)."""
    client_cert_name: str | None = None
    if chain and chain_size_problem([len(der) for der in chain]) is None:
        try:
            client_cert_name = x509.load_der_x509_certificate(chain[0]).subject.rfc4514_string()
        except ValueError:
            # Undecodable subject: the application will parse the certificate again and
            # refuse it with a precise reason; the name is only informative.
            client_cert_name = None
    return tuple(ssl.DER_cert_to_PEM_cert(der) for der in chain), client_cert_name
