"""The certificate a client presented on the current connection.

Every mode of deployment fills the same ASGI TLS extension (direct TLS in
``authz.tls.protocol``; a trusted proxy's forwarded certificate later), and this module is
the one place that reads it. Parsing is cached by the PEM strings: on a keep-alive
connection the same string objects come back with every request.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from authz.certificates.distinguished_name import DistinguishedName
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.thumbprint import x5t_s256

__all__ = ["CACHEABLE_CHAIN_BYTES", "PresentedCertificate", "presented_certificate"]


@dataclass(frozen=True)
class PresentedCertificate:
    """A parsed client certificate. Objects are cached per connection, so the derived
    values below are computed once, not once per request."""

    leaf: x509.Certificate
    leaf_der: bytes
    intermediates_der: tuple[bytes, ...]
    x5t_s256: str
    sha256_hex: str

    @classmethod
    def from_der(cls, chain: Sequence[bytes]) -> PresentedCertificate:
        """Parse a chain (leaf first); ``CertificateRejected(UNPARSABLE)`` if it is not X.509."""
        try:
            leaf = x509.load_der_x509_certificate(chain[0])
            # Decode the lazily parsed fields now, so a malformed certificate is refused
            # here with a precise reason rather than failing later in a matcher.
            leaf.subject  # noqa: B018
            leaf.extensions  # noqa: B018
        except ValueError as exc:
            raise CertificateRejected(
                RejectionReason.UNPARSABLE, f"parse error: {exc}", cert_sha256=hashlib.sha256(chain[0]).hexdigest()
            ) from exc
        return cls(
            leaf=leaf,
            leaf_der=chain[0],
            intermediates_der=tuple(chain[1:]),
            x5t_s256=x5t_s256(chain[0]),
            sha256_hex=hashlib.sha256(chain[0]).hexdigest(),
        )

    @property
    def chain_key(self) -> tuple[bytes, ...]:
        return (self.leaf_der, *self.intermediates_der)

    @functools.cached_property
    def subject_dn(self) -> DistinguishedName:
        return DistinguishedName.from_name(self.leaf.subject)

    @functools.cached_property
    def subject_alt_names(self) -> x509.SubjectAlternativeName | None:
        try:
            return self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None

    def log_fields(self) -> dict[str, Any]:
        """What the operator needs to identify the certificate; never the key material."""
        return {
            "cert_sha256": self.sha256_hex,
            "cert_subject": _safe_name(self.leaf, "subject"),
            "cert_issuer": _safe_name(self.leaf, "issuer"),
            "cert_serial": format(self.leaf.serial_number, "x"),
            "cert_chain_length": 1 + len(self.intermediates_der),
        }


def _safe_name(cert: x509.Certificate, which: str) -> str:
    try:
        return str(getattr(cert, which).rfc4514_string())
    except ValueError as exc:
        return f"<undecodable {which}: {exc}>"


_CACHE_SIZE = 4096
# Chains larger than this (ordinary ones are a few KiB; TLS allows about 100 KiB) are parsed
# every time rather than cached: the caches must stay small whatever clients send.
CACHEABLE_CHAIN_BYTES = 16 * 1024
_cache: OrderedDict[tuple[str, ...], PresentedCertificate] = OrderedDict()


def _parse(chain_pem: tuple[str, ...]) -> PresentedCertificate:
    try:
        ders = [ssl.PEM_cert_to_DER_cert(pem) for pem in chain_pem]
    except ValueError as exc:
        raise CertificateRejected(RejectionReason.UNPARSABLE, f"not PEM: {exc}") from exc
    return PresentedCertificate.from_der(ders)


def presented_certificate(scope: Mapping[str, Any]) -> PresentedCertificate | None:
    """The client certificate of the request, or None when none was presented.

    Raises ``CertificateRejected(UNPARSABLE)`` when a certificate arrived but is not X.509.
    """
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return None
    chain: Sequence[str] | None = tls.get("client_cert_chain")
    if not chain:
        return None
    key = tuple(chain)
    cached = _cache.get(key)
    if cached is not None:
        _cache.move_to_end(key)
        return cached
    parsed = _parse(key)
    if sum(map(len, key)) <= CACHEABLE_CHAIN_BYTES * 4 // 3:  # PEM: base64 of the DER
        _cache[key] = parsed
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed
