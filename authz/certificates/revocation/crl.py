"""CRLs: parsed once into the set of revoked serials, checked against their issuer.

``parse_crl`` and ``signature_valid`` run on the revocation thread (a CRL of several MiB takes
a while to parse and to hash); what they return is read on the event loop without further
parsing: a revoked serial is a set lookup.

Not supported, and refused with the reason in ``crl_rejected``: delta CRLs (their base CRL
is used alone, with its own nextUpdate), indirect CRLs and CRLs limited to some reasons (they
are not the complete list for the issuer), CRLs without nextUpdate, and unknown critical
extensions.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from authz.certificates.path import PathCA
from authz.certificates.revocation.unusable import RevocationDataUnusable

__all__ = ["CRLUnusable", "LoadedCRL", "RevokedEntry", "parse_crl", "reason_code", "signature_problem"]

# RFC 5280 §5.3.1 CRLReason codes, as the operator's log gives them beside the name.
_REASON_CODES = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.remove_from_crl: 8,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}
_UNDERSTOOD = {
    ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.ISSUING_DISTRIBUTION_POINT,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME, ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.FRESHEST_CRL,
}


_REASON_NAMES = {code: flag.name for flag, code in _REASON_CODES.items()}


def reason_code(reason: x509.ReasonFlags | None) -> int | None:
    return None if reason is None else _REASON_CODES.get(reason)


class CRLUnusable(RevocationDataUnusable):
    """A CRL that is not used (``unparsable``, ``delta_crl``, ``unsupported``, ``bad_signature``,
    ``stale``, ``not_yet_valid``)."""


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    reason: str | None  # the CRLReason's name (key_compromise, ...), or None without one
    reason_code: int | None


@dataclass(eq=False)
class LoadedCRL:
    source: str  # the --crl file or the distribution point URL
    crl: x509.CertificateRevocationList
    # Revoked serial -> its RFC 5280 reason code (-1: no reason given): read on the event loop,
    # so decoded once here rather than from the CRL's entries (a linear search) on a hit.
    revoked: dict[int, int]
    this_update: float  # POSIX times
    next_update: float
    number: int | None
    size: int
    digest: bytes  # SHA-256 of the DER: the same CRL fetched again changes nothing
    # Issuing distribution point: which certificates of the issuer the CRL covers.
    only_user_certs: bool = False
    only_ca_certs: bool = False
    scope_urls: frozenset[str] | None = None  # None: every certificate of the issuer
    # The issuers (SPKI SHA-256) its signature was checked against: None if it verified,
    # else why not (``signature_problem``).
    signature_checked: dict[bytes, str | None] = field(default_factory=dict)

    @property
    def issuer_name(self) -> x509.Name:
        return self.crl.issuer

    @property
    def issuer_label(self) -> str:
        try:
            return self.crl.issuer.rfc4514_string()
        except ValueError:
            return "<undecodable issuer>"

    def covers(self, crl_urls: tuple[str, ...], is_ca: bool) -> bool:
        """Whether the CRL's scope includes a certificate with these distribution points."""
        if (self.only_user_certs and is_ca) or (self.only_ca_certs and not is_ca):
            return False
        return self.scope_urls is None or not self.scope_urls.isdisjoint(crl_urls)

    def entry(self, serial: int) -> RevokedEntry | None:
        code = self.revoked.get(serial)
        if code is None:
            return None
        return RevokedEntry(serial, _REASON_NAMES.get(code), None if code < 0 else code)

    def log_fields(self) -> dict[str, object]:
        return {
            "source": self.source,
            "crl_issuer": self.issuer_label,
            "entries": len(self.revoked),
            "this_update": _iso(self.this_update),
            "next_update": _iso(self.next_update),
            "crl_number": self.number,
            "bytes": self.size,
        }


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def parse_crl(data: bytes, source: str) -> LoadedCRL:
    """Parse a CRL (DER, or PEM as files often are) into a ``LoadedCRL``; ``CRLUnusable``."""
    try:
        pem = data.lstrip().startswith(b"-----BEGIN")
        crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
        extensions = crl.extensions
    except ValueError as exc:
        raise CRLUnusable("unparsable", f"not an X.509 CRL ({exc})") from None
    only_user_certs = only_ca_certs = False
    scope_urls: frozenset[str] | None = None
    for extension in extensions:
        if extension.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise CRLUnusable("delta_crl", "delta CRLs are not supported (publish or configure the base CRL)")
        if extension.oid == ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            point = extension.value
            assert isinstance(point, x509.IssuingDistributionPoint)
            if point.indirect_crl or point.only_some_reasons or point.only_contains_attribute_certs:
                raise CRLUnusable("unsupported", "indirect CRLs and CRLs limited to some reasons or to "
                                                 "attribute certificates are not supported")
            only_user_certs = point.only_contains_user_certs
            only_ca_certs = point.only_contains_ca_certs
            if point.full_name:
                scope_urls = frozenset(n.value for n in point.full_name
                                                if isinstance(n, x509.UniformResourceIdentifier))
            elif point.relative_name is not None:
                raise CRLUnusable("unsupported", "an issuing distribution point with a relative name")
        elif extension.critical and extension.oid not in _UNDERSTOOD:
            raise CRLUnusable("unsupported", f"unknown critical extension {extension.oid.dotted_string}")
    next_update = crl.next_update_utc
    if next_update is None:
        raise CRLUnusable("unsupported", "the CRL has no nextUpdate")
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    revoked_serials: dict[int, int] = {}
    try:
        for revoked in crl:
            code = -1
            for entry_extension in revoked.extensions:
                # An entry for another issuer's certificate belongs to an indirect CRL.
                if entry_extension.oid == CRLEntryExtensionOID.CERTIFICATE_ISSUER:
                    raise CRLUnusable("unsupported", "indirect CRL entries (certificate issuer) are not supported")
                if isinstance(entry_extension.value, x509.CRLReason):
                    code = _REASON_CODES.get(entry_extension.value.reason, -1)
            revoked_serials[revoked.serial_number] = code
    except ValueError as exc:
        raise CRLUnusable("unparsable", f"an entry does not decode ({exc})") from None
    return LoadedCRL(
        source=source,
        crl=crl,
        revoked=revoked_serials,
        this_update=crl.last_update_utc.timestamp(),
        next_update=next_update.timestamp(),
        number=number,
        size=len(data),
        digest=hashlib.sha256(data).digest(),
        only_user_certs=only_user_certs,
        only_ca_certs=only_ca_certs,
        scope_urls=scope_urls,
    )


def signature_problem(loaded: LoadedCRL, issuer: PathCA) -> str | None:
    """Why ``issuer`` is not the signer of the CRL, or None: its name is the CRL's issuer, its
    key usage (when present) allows cRLSign, and the signature verifies with its key."""
    if loaded.crl.issuer != issuer.subject:
        return f"the CRL's issuer is not {issuer.label}"
    try:
        usage = issuer.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            return f"the key usage of {issuer.label} does not allow cRLSign"
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return f"the key usage of {issuer.label} does not decode"
    try:
        valid = loaded.crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):  # a key or algorithm CRLs cannot be checked with
        valid = False
    return None if valid else f"the signature does not verify with the key of {issuer.label}"
