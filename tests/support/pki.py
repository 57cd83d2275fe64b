"""Certificates for tests, made with cryptography: any subject, SAN, EKU, validity, issuer.

Every key here is a throwaway generated per test session; nothing is written to the repo.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

__all__ = ["Issued", "TestCA", "forge", "path_building_bomb", "self_signed", "sign_with"]

NOW = datetime.datetime.now(datetime.UTC)


def _name(rfc4514: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(rfc4514)


@dataclass
class Issued:
    """A certificate with its key and the chain to send (leaf first, anchor excluded)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``name.crt`` (leaf then chain) and ``name.key``; return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain]))
        key_path.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
             not_before: datetime.datetime, not_after: datetime.datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _leaf(builder: x509.CertificateBuilder, *, eku: list[x509.ObjectIdentifier] | None,
          san: list[x509.GeneralName] | None, ca: bool = False) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder


def _revocation_pointers(builder: x509.CertificateBuilder, crl_uri: str | None,
                         ocsp_uri: str | None) -> x509.CertificateBuilder:
    if crl_uri is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_uri is not None:
        access = x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_uri))
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return builder


class TestCA:
    """A CA (root, or intermediate when ``parent`` is given) that issues client certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "CN=Test Root CA,O=authz tests", parent: TestCA | None = None, *,
                 crl_uri: str | None = None, ocsp_uri: str | None = None,
                 key_usage_crl_sign: bool = True) -> None:
        """``crl_uri`` and ``ocsp_uri``: where the parent publishes the revocation of this
        (intermediate) CA's certificate."""
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.parent = parent
        signer_key = parent.key if parent else self.key
        issuer = parent.name if parent else self.name
        builder = _builder(self.name, issuer, self.key, NOW - datetime.timedelta(days=1),
                           NOW + datetime.timedelta(days=365))
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, key_usage_crl_sign, False, False), critical=True)
        if parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False)
        builder = _revocation_pointers(builder, crl_uri, ocsp_uri)
        self.cert = builder.sign(signer_key, hashes.SHA256())

    @property
    def chain(self) -> list[x509.Certificate]:
        """Intermediates up to (not including) the root."""
        return [self.cert, *self.parent.chain] if self.parent else []

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem)
        return path

    def issue(
        self,
        subject: str = "CN=client,O=authz tests",
        *,
        san_dns: list[str] | None = None,
        san_uri: list[str] | None = None,
        san_ip: list[str] | None = None,
        san_email: list[str] | None = None,
        eku: list[x509.ObjectIdentifier] | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        ca: bool = False,
        crl_uri: str | None = None,
        ocsp_uri: str | None = None,
    ) -> Issued:
        """Issue a client certificate. ``eku`` defaults to [clientAuth]; pass [] for none.
        ``crl_uri`` adds a CRL distribution point (the certificate of a server a TLS scanner
        checks: a real one names where its revocation is published), ``ocsp_uri`` an OCSP
        responder (authority information access)."""
        key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [x509.DNSName(d) for d in san_dns or []]
        san += [x509.UniformResourceIdentifier(u) for u in san_uri or []]
        san += [x509.IPAddress(ipaddress.ip_address(i)) for i in san_ip or []]
        san += [x509.RFC822Name(e) for e in san_email or []]
        builder = _builder(_name(subject), self.name, key,
                           not_before or NOW - datetime.timedelta(hours=1),
                           not_after or NOW + datetime.timedelta(days=30))
        builder = _leaf(builder, eku=[ExtendedKeyUsageOID.CLIENT_AUTH] if eku is None else eku, san=san, ca=ca)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        builder = _revocation_pointers(builder, crl_uri, ocsp_uri)
        return Issued(builder.sign(self.key, hashes.SHA256()), key, self.chain)


def self_signed(subject: str = "CN=self-signed client,O=authz tests", *, ca: bool = False,
                eku: list[x509.ObjectIdentifier] | None = None, not_before: datetime.datetime | None = None,
                not_after: datetime.datetime | None = None) -> Issued:
    """A self-signed client certificate; ``ca=True`` makes it able to sign others (CA:TRUE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(subject)
    builder = _builder(name, name, key, not_before or NOW - datetime.timedelta(hours=1),
                       not_after or NOW + datetime.timedelta(days=30))
    builder = _leaf(builder, eku=[ExtendedKeyUsageOID.CLIENT_AUTH] if eku is None else eku, san=None, ca=ca)
    return Issued(builder.sign(key, hashes.SHA256()), key)


def sign_with(issuer: Issued, subject: str, *, san_dns: list[str] | None = None) -> Issued:
    """A leaf signed by an arbitrary certificate's key (for forgery tests); chain = [issuer]."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_name(subject), issuer.cert.subject, key, NOW - datetime.timedelta(hours=1),
                       NOW + datetime.timedelta(days=30))
    builder = _leaf(builder, eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
                    san=[x509.DNSName(d) for d in san_dns or []] or None)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key, [issuer.cert])


def forge(ca: TestCA, subject: str) -> Issued:
    """A leaf naming ``ca`` as its issuer (issuer DN and authority key identifier) but signed
    by another key: only the signature tells it apart (for forgery tests)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_name(subject), ca.name, key, NOW - datetime.timedelta(hours=1),
                       NOW + datetime.timedelta(days=30))
    builder = _leaf(builder, eku=[ExtendedKeyUsageOID.CLIENT_AUTH], san=None)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    return Issued(builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()), key, ca.chain)


def path_building_bomb(subject: str) -> Issued:
    """A leaf with ``subject`` issued by a self-issued P-521 "CA", sent with two such CA
    certificates that share one subject and key: each can sign the other and itself, so a
    path builder that follows them runs to its signature-check limit (issue 9, finding 3)."""
    ca_key = ec.generate_private_key(ec.SECP521R1())
    ca_name = _name("CN=Path Building Bomb,O=elsewhere")
    cas = []
    for _ in range(2):
        builder = _builder(ca_name, ca_name, ca_key, NOW - datetime.timedelta(days=1),
                           NOW + datetime.timedelta(days=30))
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        cas.append(builder.sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_name(subject), ca_name, key, NOW - datetime.timedelta(hours=1),
                       NOW + datetime.timedelta(days=30))
    builder = _leaf(builder, eku=[ExtendedKeyUsageOID.CLIENT_AUTH], san=None)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    return Issued(builder.sign(ca_key, hashes.SHA256()), key, cas)
