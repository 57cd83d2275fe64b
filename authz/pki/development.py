"""Generate a development PKI with cryptography: a CA, a server certificate for
localhost/127.0.0.1/::1, a CA-issued client certificate and a self-signed one."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["DevelopmentPKI", "create_development_pki"]

PKI_CLIENT_DN = "CN=demo-pki-client,O=authz demo"
SELF_SIGNED_CLIENT_DN = "CN=demo-self-signed-client,O=authz demo"


@dataclass(frozen=True)
class DevelopmentPKI:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    @property
    def server_cert(self) -> Path:
        return self.path("server.crt")

    @property
    def server_key(self) -> Path:
        return self.path("server.key")

    @property
    def client_cert(self) -> Path:
        return self.path("client.crt")

    @property
    def client_key(self) -> Path:
        return self.path("client.key")

    @property
    def self_signed_cert(self) -> Path:
        return self.path("selfsigned.crt")

    @property
    def self_signed_key(self) -> Path:
        return self.path("selfsigned.key")

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.server_cert, self.server_key, self.client_cert,
                                        self.client_key, self.self_signed_cert, self.self_signed_key))


def _name(rfc4514: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(rfc4514)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=float(days)))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_usage(builder: x509.CertificateBuilder, eku: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    )


def create_development_pki(directory: Path, days: int = 90) -> DevelopmentPKI:
    pki = DevelopmentPKI(Path(directory))
    pki.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("CN=authz development CA,O=authz demo")
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        _leaf_usage(_builder(_name("CN=localhost"), ca_name, server_key.public_key(), days),
                    ExtendedKeyUsageOID.SERVER_AUTH)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        _leaf_usage(_builder(_name(PKI_CLIENT_DN), ca_name, client_key.public_key(), days),
                    ExtendedKeyUsageOID.CLIENT_AUTH)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("demo-pki-client.example")]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    self_key = ec.generate_private_key(ec.SECP256R1())
    self_name = _name(SELF_SIGNED_CLIENT_DN)
    self_signed = _leaf_usage(_builder(self_name, self_name, self_key.public_key(), days),
                              ExtendedKeyUsageOID.CLIENT_AUTH).sign(self_key, hashes.SHA256())

    _write_cert(pki.ca_cert, ca)
    _write_key(pki.path("ca.key"), ca_key)
    _write_cert(pki.server_cert, server)
    _write_key(pki.server_key, server_key)
    _write_cert(pki.client_cert, client)
    _write_key(pki.client_key, client_key)
    _write_cert(pki.self_signed_cert, self_signed)
    _write_key(pki.self_signed_key, self_key)
    return pki
