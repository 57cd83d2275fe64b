"""The per-certificate caches (parsed chain, TLS extension fields) stay small whatever clients
send: ordinary chains are cached, oversized ones are handled every time."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from authz.certificates import presented
from authz.certificates.presented import CACHEABLE_CHAIN_BYTES, presented_certificate
from authz.tls import extension
from tests.support.pki import Issued, TestCA


def _scope(issued: Issued) -> dict[str, object]:
    pem = issued.cert.public_bytes(serialization.Encoding.PEM).decode()
    return {"extensions": {"tls": {"client_cert_chain": [pem]}}}


def _der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.DER)


def test_ordinary_chains_are_cached_and_oversized_ones_are_not() -> None:
    ca = TestCA()
    small = ca.issue("CN=small,O=t")
    big = ca.issue("CN=big,O=t", san_dns=[f"host-{i:05d}.{'x' * 40}.example" for i in range(400)])
    assert len(_der(small)) < CACHEABLE_CHAIN_BYTES < len(_der(big))

    first = presented_certificate(_scope(small))
    assert presented_certificate(_scope(small)) is first  # served from the cache

    parsed = presented_certificate(_scope(big))
    assert parsed is not None and parsed.leaf_der == _der(big)  # still parsed and usable
    assert presented_certificate(_scope(big)) is not parsed
    assert not any(len("".join(key)) > CACHEABLE_CHAIN_BYTES * 4 // 3 for key in presented._cache)


def test_tls_extension_fields_are_cached_only_for_ordinary_chains() -> None:
    ca = TestCA()
    small = _der(ca.issue("CN=small,O=t"))
    big = _der(ca.issue("CN=big,O=t", san_dns=[f"host-{i:05d}.{'x' * 40}.example" for i in range(400)]))
    extension._cached_certificate_fields.cache_clear()

    class FakeSSLObject:
        context = None

        def __init__(self, chain: bytes) -> None:
            self.der = chain

        def getpeercert(self, binary_form: bool) -> bytes:
            return self.der

        def cipher(self) -> None:
            return None

    for der in (small, small, big, big):
        fields = extension.tls_extension(FakeSSLObject(der), None)  # type: ignore[arg-type]
        assert fields["client_cert_name"] in ("CN=small,O=t", "CN=big,O=t")
    info = extension._cached_certificate_fields.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)
