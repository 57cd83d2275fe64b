"""The keys a client's certificates may carry (authz.certificates.limits): only those whose
signatures cost little to verify, in the leaf and in every intermediate it sends."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from authz.certificates.chain import ChainValidator
from authz.certificates.presented import presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from tests.support.pki import NOW, TestCA


def _certificate(key: Any, *, ca: bool = False, subject: str = "CN=keyed", issuer_key: Any = None,
                 issuer: str | None = None) -> x509.Certificate:
    signer = issuer_key or key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(subject))
        .issuer_name(x509.Name.from_rfc4514_string(issuer or subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, algorithm)
    )


def _scope(*certificates: x509.Certificate) -> dict[str, Any]:
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates]
    return {"extensions": {"tls": {"client_cert_chain": pems}}}


@pytest.mark.parametrize("key", [
    rsa.generate_private_key(65537, 2048),
    ec.generate_private_key(ec.SECP256R1()),
    ec.generate_private_key(ec.SECP384R1()),
    ec.generate_private_key(ec.SECP521R1()),
    ed25519.Ed25519PrivateKey.generate(),
    ed448.Ed448PrivateKey.generate(),
], ids=["rsa-2048", "p-256", "p-384", "p-521", "ed25519", "ed448"])
def test_accepted_leaf_keys(key: Any) -> None:
    assert presented_certificate(_scope(_certificate(key))) is not None


@pytest.mark.parametrize(("key", "problem"), [
    (rsa.generate_private_key(65537, 1024), "leaf: RSA key of 1024 bits"),
    (ec.generate_private_key(ec.SECP256K1()), "leaf: EC key on curve secp256k1"),
    (dsa.generate_private_key(2048), "leaf: DSA key"),
], ids=["rsa-1024", "secp256k1", "dsa"])
def test_refused_leaf_keys(key: Any, problem: str) -> None:
    with pytest.raises(CertificateRejected) as info:
        presented_certificate(_scope(_certificate(key)))
    assert (info.value.reason, info.value.detail) == (RejectionReason.UNSUPPORTED_KEY, problem)
    assert info.value.cert_sha256 is not None


def test_an_intermediate_with_a_refused_key_never_reaches_the_path_builder() -> None:
    root = TestCA()
    weak = rsa.generate_private_key(65537, 1024)
    intermediate = _certificate(weak, ca=True, subject="CN=weak intermediate", issuer_key=root.key,
                                issuer=root.name.rfc4514_string())
    leaf = _certificate(ec.generate_private_key(ec.SECP256R1()), issuer_key=weak, issuer="CN=weak intermediate")
    found = presented_certificate(_scope(leaf, intermediate))
    assert found is not None
    with pytest.raises(CertificateRejected) as info:
        ChainValidator([root.cert]).validate(found)
    assert (info.value.reason, info.value.detail) == (RejectionReason.UNSUPPORTED_KEY,
                                                      "intermediate 1: RSA key of 1024 bits")
