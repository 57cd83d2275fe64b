"""The registered subject of a ``tls_client_auth`` client (RFC 8705 §2.1.2) and how a
certificate is matched against it. A client registers exactly one of these."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from cryptography import x509

from authz.certificates.distinguished_name import DistinguishedName, InvalidDistinguishedName, openssl_form
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import RejectionReason

__all__ = ["SUBJECT_PARAMETERS", "InvalidSubject", "SubjectMatcher", "subject_matcher"]

SubjectParameter = Literal[
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
]
SUBJECT_PARAMETERS: tuple[SubjectParameter, ...] = (
    "tls_client_auth_subject_dn",
    "tls_client_auth_san_dns",
    "tls_client_auth_san_uri",
    "tls_client_auth_san_ip",
    "tls_client_auth_san_email",
)


class InvalidSubject(ValueError):
    """A registered subject value that cannot be used (unparsable DN, bad IP address...)."""


class SubjectMatcher:
    parameter: ClassVar[SubjectParameter]
    mismatch: ClassVar[RejectionReason]

    def matches(self, cert: PresentedCertificate) -> bool:
        raise NotImplementedError

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        """What the certificate holds of this kind, as text: for ``authz explain`` to show
        beside the registered value (never used to decide)."""
        raise NotImplementedError


def _san_values(cert: PresentedCertificate, kind: type[x509.GeneralName]) -> list[object]:
    san = cert.subject_alt_names
    return list(san.get_values_for_type(kind)) if san is not None else []  # type: ignore[arg-type]


@dataclass(frozen=True)
class SubjectDN(SubjectMatcher):
    parameter: ClassVar[SubjectParameter] = "tls_client_auth_subject_dn"
    mismatch: ClassVar[RejectionReason] = RejectionReason.SUBJECT_DN_MISMATCH
    dn: DistinguishedName

    def matches(self, cert: PresentedCertificate) -> bool:
        return self.dn.matches(cert.subject_dn)

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        return [cert.leaf.subject.rfc4514_string()]


def _dns_form(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError as exc:
        raise InvalidSubject(f"{name!r} is not a valid DNS name: {exc}") from exc


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _is_dns_name(name: str) -> bool:
    """A registered dNSName (already lowercased, IDNA-encoded): LDH labels, optionally a
    leading "*" label, since a certificate's SAN may be a wildcard (matched as a plain label)."""
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return 0 < len(name) <= 253 and bool(labels) and all(_DNS_LABEL.fullmatch(label) for label in labels)


@dataclass(frozen=True)
class SanDNS(SubjectMatcher):
    parameter: ClassVar[SubjectParameter] = "tls_client_auth_san_dns"
    mismatch: ClassVar[RejectionReason] = RejectionReason.SAN_DNS_MISMATCH
    name: str

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        return [str(value) for value in _san_values(cert, x509.DNSName)]

    def matches(self, cert: PresentedCertificate) -> bool:
        # Exact (case-insensitive) match: a wildcard in the certificate is just a label.
        return any(str(v).rstrip(".").lower() == self.name for v in _san_values(cert, x509.DNSName))


@dataclass(frozen=True)
class SanURI(SubjectMatcher):
    parameter: ClassVar[SubjectParameter] = "tls_client_auth_san_uri"
    mismatch: ClassVar[RejectionReason] = RejectionReason.SAN_URI_MISMATCH
    uri: str

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        return [str(value) for value in _san_values(cert, x509.UniformResourceIdentifier)]

    def matches(self, cert: PresentedCertificate) -> bool:
        return any(v == self.uri for v in _san_values(cert, x509.UniformResourceIdentifier))


@dataclass(frozen=True)
class SanIP(SubjectMatcher):
    parameter: ClassVar[SubjectParameter] = "tls_client_auth_san_ip"
    mismatch: ClassVar[RejectionReason] = RejectionReason.SAN_IP_MISMATCH
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        return [str(value) for value in _san_values(cert, x509.IPAddress)]

    def matches(self, cert: PresentedCertificate) -> bool:
        # Binary compare: "2001:db8::1" and "2001:0DB8:0:0:0:0:0:1" are one address.
        packed = self.address.packed
        return any(getattr(v, "packed", None) == packed for v in _san_values(cert, x509.IPAddress))


def _email_form(address: str) -> str:
    # RFC 5280 §4.2.1.6: the local part is case-sensitive, the domain is not.
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidSubject(f"{address!r} is not an e-mail address (local@domain)")
    return f"{local}@{domain.lower()}"


@dataclass(frozen=True)
class SanEmail(SubjectMatcher):
    parameter: ClassVar[SubjectParameter] = "tls_client_auth_san_email"
    mismatch: ClassVar[RejectionReason] = RejectionReason.SAN_EMAIL_MISMATCH
    address: str

    def presented_values(self, cert: PresentedCertificate) -> list[str]:
        return [str(value) for value in _san_values(cert, x509.RFC822Name)]

    def matches(self, cert: PresentedCertificate) -> bool:
        for value in _san_values(cert, x509.RFC822Name):
            try:
                if _email_form(str(value)) == self.address:
                    return True
            except InvalidSubject:
                continue
        return False


def _printed_form_problem(value: str, form: str, rfc4514: str) -> str:
    how = {
        "one-line": "as OpenSSL prints a subject by default (most general RDN first, spaces around '='), which "
                    "as RFC 4514 names the reverse DN",
        "slash": "in OpenSSL's slash form (most general RDN first)",
        "labelled": "with the label openssl prints before it",
    }[form]
    return (f"tls_client_auth_subject_dn: {value!r} is written {how}; RFC 4514 lists the most specific RDN "
            f"first: use '{rfc4514}' (as openssl x509 -noout -subject -nameopt RFC2253 prints it)")


def subject_matcher(parameter: str, value: str) -> SubjectMatcher:
    """Build the matcher for one registered subject parameter; ``InvalidSubject`` if the
    value cannot be used."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSubject(f"{parameter} must be a non-empty string")
    if parameter == "tls_client_auth_subject_dn":
        printed = openssl_form(value)
        if printed is not None:
            raise InvalidSubject(_printed_form_problem(value, *printed))
        try:
            return SubjectDN(DistinguishedName.parse(value))
        except InvalidDistinguishedName as exc:
            raise InvalidSubject(f"tls_client_auth_subject_dn: {exc}") from exc
    if parameter == "tls_client_auth_san_dns":
        try:
            name = _dns_form(value)
        except InvalidSubject as exc:
            raise InvalidSubject(f"tls_client_auth_san_dns: {exc}") from exc
        if not _is_dns_name(name):
            raise InvalidSubject(f"tls_client_auth_san_dns: {value!r} is not a DNS name (letters, digits and "
                                 "hyphens in dot-separated labels of at most 63 characters)")
        return SanDNS(name)
    if parameter == "tls_client_auth_san_uri":
        if ":" not in value:
            raise InvalidSubject(f"tls_client_auth_san_uri: {value!r} is not an absolute URI")
        return SanURI(value)
    if parameter == "tls_client_auth_san_ip":
        try:
            return SanIP(ipaddress.ip_address(value.strip()))
        except ValueError as exc:
            raise InvalidSubject(f"tls_client_auth_san_ip: {exc}") from exc
    if parameter == "tls_client_auth_san_email":
        try:
            return SanEmail(_email_form(value))
        except InvalidSubject as exc:
            raise InvalidSubject(f"tls_client_auth_san_email: {exc}") from exc
    raise InvalidSubject(f"unknown subject parameter {parameter!r}; use one of {', '.join(SUBJECT_PARAMETERS)}")
