"""The CA certificates of a validated path, and what revocation checking and CA pinning read
from certificates.

``ChainValidator`` remembers, per chain, the CAs its path went through (the leaf's issuer
first, the trust anchor last). Each CA is a ``PathCA`` made once per certificate and shared by
every path through it: its SPKI digest (CA pinning), its subject and key (CRL and OCSP
signatures) and its own distribution points (an intermediate is checked against its issuer's
CRL) are computed once, not per request.
"""

from __future__ import annotations

import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

__all__ = ["MAX_URLS_PER_CERTIFICATE", "PathCA", "crl_urls", "ocsp_urls", "spki_sha256"]

# A certificate naming more distribution points or responders than this is odd; only the first
# are tried (each is a fetch).
MAX_URLS_PER_CERTIFICATE = 4


def spki_sha256(certificate: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo (what a CA pin names)."""
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _http_urls(names: list[x509.GeneralName]) -> tuple[str, ...]:
    """The http:// URIs among ``names``. Revocation data is signed, so plain HTTP is what CAs
    publish it over; an https:// one would need a TLS validation of its own (and LDAP and file
    URIs are not fetched at all)."""
    urls = [n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)]
    return tuple(u for u in urls if u.lower().startswith("http://"))[:MAX_URLS_PER_CERTIFICATE]


def crl_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    """The HTTP URLs of the certificate's CRL distribution points (full names only)."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    names: list[x509.GeneralName] = []
    for point in points:
        # A point limited to some reasons, or with another CRL issuer, covers only part of
        # the revocations: not usable as the complete CRL.
        if point.full_name and point.reasons is None and point.crl_issuer is None:
            names.extend(point.full_name)
    return _http_urls(names)


def ocsp_urls(certificate: x509.Certificate) -> tuple[str, ...]:
    """The HTTP URLs of the certificate's OCSP responders (authority information access)."""
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return _http_urls([d.access_location for d in access if d.access_method == AuthorityInformationAccessOID.OCSP])


class PathCA:
    """A CA certificate (intermediate or trust anchor) of validated paths."""

    def __init__(self, certificate: x509.Certificate, *, anchor: bool) -> None:
        self.certificate = certificate
        self.anchor = anchor
        self.spki_sha256 = spki_sha256(certificate)
        self.subject = certificate.subject

    @functools.cached_property
    def label(self) -> str:
        """The CA as the operator's log names it: subject and SPKI digest (hex)."""
        try:
            subject = self.subject.rfc4514_string()
        except ValueError:
            subject = "<undecodable subject>"
        return f"{subject} (spki sha256 {self.spki_sha256.hex()})"

    @functools.cached_property
    def crl_urls(self) -> tuple[str, ...]:
        return crl_urls(self.certificate)

    @functools.cached_property
    def ocsp_urls(self) -> tuple[str, ...]:
        return ocsp_urls(self.certificate)

    def __repr__(self) -> str:
        return f"PathCA({self.label}{', anchor' if self.anchor else ''})"
