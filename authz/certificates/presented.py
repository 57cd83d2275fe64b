"""The certificate a client presented on the current connection.

Every mode of deployment fills the same ASGI TLS extension (direct TLS in
``authz.tls.protocol``; a trusted proxy's forwarded certificate later), and this module is
the one place that reads it. It parses only what a decision needs, when it needs it: the size
limits first (``authz.certificates.limits``), then the leaf; its subject and extensions only
when a matcher asks. The result, or the refusal, is remembered in the connection's TLS
extension, so keep-alive requests do not parse again. Nothing outlives the connection: an
anonymous client sending a new certificate on each connection fills no process-wide cache.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from authz.certificates.distinguished_name import DistinguishedName
from authz.certificates.limits import chain_size_problem, public_key_problem
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.thumbprint import x5t_s256

__all__ = ["SESSION_RESUMED_KEY", "PresentedCertificate", "present_chain", "presented_certificate"]

# Where the parse of a connection's chain is remembered: a key of our own in the TLS extension
# dict, which is built once per connection and shared by its requests.
_MEMO_KEY = "authz.presented_certificate"
# Another key of ours in that dict: true when the connection resumed a TLS session
# (``authz.tls.resumption``), whose chain is the leaf alone.
SESSION_RESUMED_KEY = "authz.tls_session_resumed"


@dataclass(frozen=True)
class PresentedCertificate:
    """A parsed client certificate. Objects live as long as their connection, so the derived
    values below are computed once, not once per request."""

    leaf: x509.Certificate
    leaf_der: bytes
    intermediates_der: tuple[bytes, ...]
    x5t_s256: str
    sha256_hex: str
    # Presented on a resumed TLS session: the client sent it in an earlier full handshake, and
    # the session kept the leaf only, not the intermediates that came with it.
    from_resumed_session: bool = False

    @classmethod
    def from_der(cls, chain: Sequence[bytes], *, from_resumed_session: bool = False) -> PresentedCertificate:
        """Parse a chain (leaf first) within the limits; ``CertificateRejected`` if it is too
        large, not X.509, or carries a key this server does not accept."""
        sha256_hex = hashlib.sha256(chain[0]).hexdigest()
        too_large = chain_size_problem([len(der) for der in chain])
        if too_large is not None:
            raise CertificateRejected(RejectionReason.CHAIN_TOO_LARGE, too_large, cert_sha256=sha256_hex)
        try:
            leaf = x509.load_der_x509_certificate(chain[0])
            key_problem = public_key_problem(leaf)
        except ValueError as exc:
            raise CertificateRejected(
                RejectionReason.UNPARSABLE, f"parse error: {exc}", cert_sha256=sha256_hex
            ) from exc
        if key_problem is not None:
            raise CertificateRejected(
                RejectionReason.UNSUPPORTED_KEY, f"leaf: {key_problem}", cert_sha256=sha256_hex
            )
        return cls(
            leaf=leaf,
            leaf_der=chain[0],
            intermediates_der=tuple(chain[1:]),
            x5t_s256=x5t_s256(chain[0]),
            sha256_hex=sha256_hex,
            from_resumed_session=from_resumed_session,
        )

    @functools.cached_property
    def chain_digest(self) -> bytes:
        """One short key for the whole chain (the caches of verdicts are keyed by it)."""
        digest = hashlib.sha256()
        for der in (self.leaf_der, *self.intermediates_der):
            digest.update(len(der).to_bytes(4, "big"))
            digest.update(der)
        return digest.digest()

    @functools.cached_property
    def subject_dn(self) -> DistinguishedName:
        try:
            return DistinguishedName.from_name(self.leaf.subject)
        except ValueError as exc:
            raise self._unparsable("subject", exc) from exc

    @functools.cached_property
    def subject_alt_names(self) -> x509.SubjectAlternativeName | None:
        try:
            return self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        except ValueError as exc:
            raise self._unparsable("extensions", exc) from exc

    def _unparsable(self, part: str, exc: ValueError) -> CertificateRejected:
        # Decoded on demand: a malformed part is found when a matcher needs it.
        return CertificateRejected(RejectionReason.UNPARSABLE, f"{part}: {exc}", cert_sha256=self.sha256_hex)

    def log_fields(self) -> dict[str, Any]:
        """What the operator needs to identify the certificate; never the key material."""
        fields: dict[str, Any] = {
            "cert_x5t_s256": self.x5t_s256,  # as in the token's cnf
            "cert_sha256": self.sha256_hex,
            "cert_subject": _safe_name(self.leaf, "subject"),
            "cert_issuer": _safe_name(self.leaf, "issuer"),
            "cert_serial": format(self.leaf.serial_number, "x"),
            "cert_chain_length": 1 + len(self.intermediates_der),
        }
        if self.from_resumed_session:
            fields["tls_session_resumed"] = True  # why the chain is the leaf alone
        return fields


def _safe_name(cert: x509.Certificate, which: str) -> str:
    try:
        return str(getattr(cert, which).rfc4514_string())
    except ValueError as exc:
        return f"<undecodable {which}: {exc}>"


def _parse(chain_pem: Sequence[str], from_resumed_session: bool) -> PresentedCertificate:
    try:
        ders = [ssl.PEM_cert_to_DER_cert(pem) for pem in chain_pem]
    except ValueError as exc:
        raise CertificateRejected(RejectionReason.UNPARSABLE, f"not PEM: {exc}") from exc
    return PresentedCertificate.from_der(ders, from_resumed_session=from_resumed_session)


def present_chain(tls: dict[str, Any], chain: Sequence[bytes]) -> None:
    """Put a DER chain (leaf first) into a TLS extension dict, parsed already: for producers
    that hold DER (proxy mode), so the reader does not convert the PEM back and parse again."""
    tls["client_cert_chain"] = [ssl.DER_cert_to_PEM_cert(der) for der in chain]
    try:
        tls[_MEMO_KEY] = PresentedCertificate.from_der(chain)
    except CertificateRejected as rejected:
        tls[_MEMO_KEY] = rejected


def presented_certificate(scope: Mapping[str, Any]) -> PresentedCertificate | None:
    """The client certificate of the request, or None when none was presented.

    Raises ``CertificateRejected`` when a certificate arrived but cannot be used: not X.509
    (``UNPARSABLE``), over the limits (``CHAIN_TOO_LARGE``, ``UNSUPPORTED_KEY``), or a
    proxy's certificate header that does not decode (``PROXY_HEADER_UNUSABLE``).
    """
    tls: dict[str, Any] | None = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return None
    memo = tls.get(_MEMO_KEY)
    if memo is None:
        forwarding_error = tls.get("client_cert_error")
        if forwarding_error:
            # Set by proxy mode (authz.proxy.mode): the proxy's header did not decode.
            raise CertificateRejected(RejectionReason.PROXY_HEADER_UNUSABLE, str(forwarding_error),
                                      public_detail=str(forwarding_error))
        chain: Sequence[str] | None = tls.get("client_cert_chain")
        if not chain:
            return None
        try:
            memo = _parse(chain, bool(tls.get(SESSION_RESUMED_KEY)))
        except CertificateRejected as rejected:
            memo = rejected
        tls[_MEMO_KEY] = memo
    if isinstance(memo, CertificateRejected):
        # Without with_traceback(None), each raise of the one object would append its frames.
        raise memo.with_traceback(None)
    return memo
