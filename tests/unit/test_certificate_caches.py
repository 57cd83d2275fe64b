"""What the server keeps of the certificates clients send: each connection's parse, for as
long as the connection lives, and verdicts on chains keyed by a digest, with refusals apart
from successes. Nothing an anonymous client sends fills a process-wide cache of parses
(issue 9, finding 5)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import threading
import time
import weakref
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from authz.certificates import chain, presented
from authz.certificates.chain import ChainValidator
from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.tls import extension
from tests.support.pki import NOW, Issued, TestCA, path_building_bomb, self_signed


def _connection(*certificates: x509.Certificate) -> dict[str, Any]:
    """The scope of a request, with the TLS extension of a new connection."""
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates]
    return {"extensions": {"tls": {"client_cert_chain": pems}}}


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every DER the certificate reader parses."""
    seen: list[bytes] = []
    load = x509.load_der_x509_certificate

    def counting(data: bytes) -> x509.Certificate:
        seen.append(data)
        return load(data)

    monkeypatch.setattr(presented.x509, "load_der_x509_certificate", counting)
    return seen


def test_a_connection_parses_its_certificate_once(parses: list[bytes]) -> None:
    client = self_signed()
    scope = _connection(client.cert)
    first = presented_certificate(scope)
    assert presented_certificate(scope) is first  # the next request on the connection
    assert presented_certificate(_connection(client.cert)) is not first  # a new connection
    assert parses == [client.der, client.der]


def test_nothing_outlives_the_connection() -> None:
    scope = _connection(self_signed().cert)
    parsed = weakref.ref(presented_certificate(scope))  # type: ignore[arg-type]
    del scope
    gc.collect()
    assert parsed() is None
    assert not hasattr(presented, "_cache") and not hasattr(extension, "_cached_certificate_fields")


def test_a_refusal_is_remembered_for_the_connection(parses: list[bytes]) -> None:
    bogus = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
    scope = {"extensions": {"tls": {"client_cert_chain": [bogus]}}}
    depths = []
    for _ in range(3):
        with pytest.raises(CertificateRejected) as info:
            presented_certificate(scope)
        assert info.value.reason is RejectionReason.UNPARSABLE
        depths.append(len(info.traceback))
    assert len(parses) == 1
    assert depths == [depths[0]] * 3  # raising the remembered refusal again does not grow it


def _many_sans(ca: TestCA, count: int) -> Issued:
    return ca.issue("CN=big,O=t", san_dns=[f"host-{i:05d}.{'x' * 80}.example" for i in range(count)])


def test_chains_over_the_limits_are_refused_unparsed(parses: list[bytes]) -> None:
    ca = TestCA()
    big = _many_sans(ca, 400)
    assert len(big.der) > 32 * 1024
    with pytest.raises(CertificateRejected) as info:
        presented_certificate(_connection(big.cert))
    assert info.value.reason is RejectionReason.CHAIN_TOO_LARGE
    assert info.value.detail == f"{len(big.der)} bytes of certificates sent (limit 32768)"
    assert info.value.cert_sha256 is not None
    small = ca.issue()
    with pytest.raises(CertificateRejected) as info:
        presented_certificate(_connection(*[small.cert] * 10))
    assert (info.value.reason, info.value.detail) == (RejectionReason.CHAIN_TOO_LARGE,
                                                      "10 certificates sent (limit 9)")
    assert parses == []


def test_the_extension_does_not_parse_a_chain_over_the_limits() -> None:
    big = _many_sans(TestCA(), 400)
    assert extension._certificate_fields([big.der]) == (
        (big.cert.public_bytes(serialization.Encoding.PEM).decode(),), None)
    small = TestCA().issue("CN=small,O=t")
    assert extension._certificate_fields([small.der])[1] == "CN=small,O=t"


def test_extensions_are_decoded_only_when_a_matcher_needs_them() -> None:
    # A SAN extension whose content is not a GeneralNames: parsing the certificate succeeds,
    # asking for its SANs is a precise refusal (never a 500 in a matcher).
    key = self_signed().key
    name = x509.Name.from_rfc4514_string("CN=broken san")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x00"),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    parsed = presented_certificate(_connection(cert))
    assert parsed is not None
    with pytest.raises(CertificateRejected) as info:
        _ = parsed.subject_alt_names
    assert info.value.reason is RejectionReason.UNPARSABLE and info.value.detail.startswith("extensions:")


def test_refusals_do_not_evict_what_legitimate_clients_need(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain, "_REFUSAL_CACHE_SIZE", 8)
    root = TestCA()
    validator = ChainValidator([root.cert])
    good = presented_certificate(_connection(root.issue().cert))
    assert good is not None
    validator.validate(good)
    for _ in range(20):  # more refused chains than refusals are remembered
        rogue = presented_certificate(_connection(TestCA("CN=Rogue").issue().cert))
        assert rogue is not None
        with pytest.raises(CertificateRejected):
            validator.validate(rogue)
    assert len(validator._refused) == 8
    assert good.chain_digest in validator._valid_until


def _bomb(root: TestCA) -> PresentedCertificate:
    bomb = path_building_bomb("CN=client,O=authz tests")
    found = presented_certificate(_connection(bomb.cert, *bomb.chain))
    assert found is not None
    return found


def test_a_bomb_never_reaches_the_path_builder_and_its_refusal_is_remembered() -> None:
    root = TestCA()
    validator = ChainValidator([root.cert])
    bomb = _bomb(root)
    started = time.perf_counter()
    with pytest.raises(CertificateRejected) as first:
        validator.validate(bomb)
    assert time.perf_counter() - started < 0.05  # unpruned: about 80 ms of signature checks
    assert first.value.reason is RejectionReason.UNTRUSTED_CHAIN
    assert first.value.detail.endswith("2 certificate(s) the client sent left out")
    with pytest.raises(CertificateRejected) as again:
        validator.validate(bomb)
    assert again.value.detail.endswith("(refusal remembered)")


async def test_prepare_validates_off_the_event_loop_once_per_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    root = TestCA()
    validator = ChainValidator([root.cert])
    good = presented_certificate(_connection(root.issue().cert))
    assert good is not None
    threads: list[str] = []
    validate_uncached = validator._validate_uncached

    def recording(p: PresentedCertificate, now: Any) -> float:
        threads.append(threading.current_thread().name)
        return validate_uncached(p, now)

    monkeypatch.setattr(validator, "_validate_uncached", recording)
    await asyncio.gather(*(validator.prepare(good) for _ in range(5)))
    assert len(threads) == 1 and threads[0].startswith("authz-chain-validation")
    validator.validate(good)  # remembered: no further validation
    assert len(threads) == 1
    validator.close()


def test_an_expired_refusal_is_no_verdict() -> None:
    """Past its time a remembered refusal is validated again, off the event loop (prepare),
    not inline by client authentication."""
    root = TestCA()
    now = [NOW]
    validator = ChainValidator([root.cert], clock=lambda: now[0])
    rogue = presented_certificate(_connection(TestCA("CN=Rogue").issue().cert))
    assert rogue is not None
    assert not validator.has_verdict(rogue)
    with pytest.raises(CertificateRejected):
        validator.validate(rogue)
    assert validator.has_verdict(rogue)
    now[0] = NOW + datetime.timedelta(seconds=chain.REFUSAL_TTL + 1)
    assert not validator.has_verdict(rogue)
