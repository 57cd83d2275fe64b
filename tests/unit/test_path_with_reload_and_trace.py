"""Path-returning validation together with hot reload (``replace_trust``) and ``authz explain``
traces: the CA pin and revocation record their steps, a trust reload rebuilds the shared
PathCA table, and a verdict reached on replaced trust is dropped."""

from __future__ import annotations

import asyncio

import pytest

from authz.certificates.chain import ChainValidator
from authz.certificates.check import check_client_certificate
from authz.certificates.path import spki_sha256
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.trace import CheckTrace, StepVerdict
from tests.support.pki import TestCA
from tests.unit.test_ca_pin import DN, client, presented


@pytest.fixture(scope="module")
def cas() -> tuple[TestCA, TestCA]:
    return TestCA("CN=Merge Root A,O=authz tests"), TestCA("CN=Merge Root B,O=authz tests")


def test_a_trace_records_the_ca_pin_and_revocation(cas: tuple[TestCA, TestCA]) -> None:
    validator = ChainValidator([cas[0].cert, cas[1].cert])
    certificate = presented(cas[0].issue(DN))
    trace = CheckTrace()
    check_client_certificate(client(spki_sha256(cas[0].cert)), certificate, validator, trace=trace)
    pin = trace.step("ca_pin")
    assert pin is not None and pin.verdict is StepVerdict.PASSED
    revocation = trace.step("revocation")
    assert revocation is not None and revocation.verdict is StepVerdict.SKIPPED
    trace = CheckTrace()
    with pytest.raises(CertificateRejected) as info:
        check_client_certificate(client(spki_sha256(cas[1].cert)), certificate, validator, trace=trace)
    assert info.value.reason is RejectionReason.CA_PIN_MISMATCH
    pin = trace.step("ca_pin")
    assert pin is not None and pin.verdict is StepVerdict.FAILED
    assert trace.step("revocation") is None  # not reached


def test_replace_trust_rebuilds_the_shared_cas_and_the_paths(cas: tuple[TestCA, TestCA]) -> None:
    validator = ChainValidator([cas[0].cert])
    certificate = presented(cas[0].issue(DN))
    [before] = validator.validate(certificate)
    assert before.anchor and before.spki_sha256 == spki_sha256(cas[0].cert)
    assert validator.validated_path(certificate) == (before,)
    validator.replace_trust([cas[1].cert], [])
    assert validator.validated_path(certificate) is None
    assert [ca.spki_sha256 for ca in validator.known_cas()] == [spki_sha256(cas[1].cert)]
    with pytest.raises(CertificateRejected) as info:
        validator.validate(certificate)
    assert info.value.reason is RejectionReason.UNTRUSTED_CHAIN
    validator.replace_trust([cas[0].cert, cas[1].cert], [])
    [after] = validator.validate(certificate)
    assert after is not before and after.anchor  # a new table, from the new anchors


async def test_a_verdict_in_flight_on_replaced_trust_is_dropped(cas: tuple[TestCA, TestCA]) -> None:
    validator = ChainValidator([cas[0].cert])
    certificate = presented(cas[0].issue(DN))
    try:
        pending = asyncio.ensure_future(validator.prepare(certificate))
        await asyncio.sleep(0)
        validator.replace_trust([cas[1].cert], [])
        await pending
        assert not validator.has_verdict(certificate)
        with pytest.raises(CertificateRejected):
            validator.validate(certificate)
    finally:
        validator.close()
