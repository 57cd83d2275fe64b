"""Revocation checking in-process: CRLs and OCSP answers made with cryptography, served over
real HTTP on loopback (``RevocationHTTPServer``), checked by ``RevocationChecker`` for paths
``ChainValidator`` validated. The wire tests (tests/wire/test_revocation.py) do the same with
``openssl ca`` and ``openssl ocsp`` through real TLS."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from authz.certificates.chain import ChainValidator
from authz.certificates.path import PathCA
from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.revocation.checker import RevocationChecker
from authz.certificates.revocation.config import Mode, Policy, RevocationConfig
from authz.certificates.revocation.crl import CRLUnusable, parse_crl, signature_problem
from authz.certificates.revocation.ocsp import _key_bits
from tests.support.http_files import RevocationHTTPServer
from tests.support.pki import NOW, Issued, TestCA

HOUR = datetime.timedelta(hours=1)


# --- material ---------------------------------------------------------------------------------

def make_crl(ca: TestCA, revoked: dict[int, x509.ReasonFlags | None] | None = None, *,
             last_update: datetime.datetime | None = None, next_update: datetime.datetime | None = None,
             key: ec.EllipticCurvePrivateKey | None = None, number: int = 1,
             extensions: list[tuple[x509.ExtensionType, bool]] = ()) -> bytes:  # type: ignore[assignment]
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.name)
               .last_update(last_update or NOW - HOUR).next_update(next_update or NOW + 24 * HOUR)
               .add_extension(x509.CRLNumber(number), critical=False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for serial, reason in (revoked or {}).items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - HOUR)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key or ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def presented(issued: Issued) -> PresentedCertificate:
    chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in [issued.cert, *issued.chain]]
    found = presented_certificate({"extensions": {"tls": {"client_cert_chain": chain}}})
    assert found is not None
    return found


@pytest.fixture(autouse=True)
def _fresh_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Structlog's defaults and a logger not cached by an earlier test: a test that configured
    logging (``configure_logging``: level filtering, loggers cached on first use) would hide
    the lines from ``capture_logs``."""
    from authz.certificates.revocation import checker

    structlog.reset_defaults()
    monkeypatch.setattr(checker, "log", structlog.get_logger("authz.revocation"))


@pytest.fixture
def http(tmp_path: Path) -> Iterator[RevocationHTTPServer]:
    server = RevocationHTTPServer(tmp_path)
    yield server
    server.stop()


class Setup:
    """A root, an intermediate under it (its certificate's CRL at /root.crl), and a checker."""

    def __init__(self, http: RevocationHTTPServer) -> None:
        self.http = http
        self.root = TestCA("CN=Revocation Root,O=authz tests")
        self.intermediate = TestCA("CN=Revocation Intermediate,O=authz tests", parent=self.root,
                                   crl_uri=f"{http.url}/root.crl", ocsp_uri=f"{http.url}/ocsp")
        self.validator = ChainValidator([self.root.cert])
        self.serve("root.crl", make_crl(self.root))
        self.serve("intermediate.crl", make_crl(self.intermediate))

    def serve(self, name: str, data: bytes) -> None:
        (self.http.directory / name).write_bytes(data)

    def leaf(self, crl: str | None = "intermediate.crl", ocsp_path: str | None = None, **kwargs: Any) -> Issued:
        return self.intermediate.issue(
            "CN=leaf,O=authz tests", crl_uri=f"{self.http.url}/{crl}" if crl else None,
            ocsp_uri=f"{self.http.url}{ocsp_path}" if ocsp_path else None, **kwargs)

    def checker(self, mode: Mode = "crl", policy: Policy = "hard-fail", **options: Any) -> RevocationChecker:
        return RevocationChecker(RevocationConfig(mode=mode, policy=policy, **{"max_wait": 5.0, **options}))

    async def check(self, checker: RevocationChecker, issued: Issued) -> CertificateRejected | None:
        found = presented(issued)
        path = self.validator.validate(found)
        await checker.prepare(found, path)
        try:
            checker.check(found, path)
        except CertificateRejected as rejected:
            return rejected
        return None


@pytest.fixture
def setup(http: RevocationHTTPServer) -> Setup:
    return Setup(http)


@pytest.fixture
async def checkers() -> Any:
    """Closes every checker a test starts (their fetch tasks, client and thread)."""
    started: list[RevocationChecker] = []
    yield started
    for checker in started:
        await checker.close()


async def started(checkers: list[RevocationChecker], checker: RevocationChecker,
                  known: list[PathCA] | None = None) -> RevocationChecker:
    checkers.append(checker)
    await checker.start(known or [])
    return checker


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- CRLs ---------------------------------------------------------------------------------------

async def test_a_leaf_not_on_the_crls_is_accepted_and_the_crls_are_fetched_once(
        setup: Setup, checkers: list[RevocationChecker]) -> None:
    checker = await started(checkers, setup.checker())
    leaf = setup.leaf()
    with structlog.testing.capture_logs() as logs:
        assert await setup.check(checker, leaf) is None
        assert await setup.check(checker, leaf) is None
    loaded = events(logs, "crl_loaded")
    assert {e["source"] for e in loaded} == {f"{setup.http.url}/intermediate.crl", f"{setup.http.url}/root.crl"}
    assert setup.http.requests == {"/intermediate.crl": 1, "/root.crl": 1}
    # Remembered: the second request found the verdict.
    assert checker.has_verdict(presented(leaf))


async def test_a_revoked_leaf_is_refused_with_its_reason_code(setup: Setup,
                                                              checkers: list[RevocationChecker]) -> None:
    leaf = setup.leaf()
    setup.serve("intermediate.crl", make_crl(setup.intermediate, {leaf.cert.serial_number:
                                                                  x509.ReasonFlags.key_compromise}))
    checker = await started(checkers, setup.checker())
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOKED
    assert rejected.public_description == "the client certificate has been revoked"
    assert rejected.log_fields["revocation_reason_code"] == 1
    assert rejected.log_fields["revocation_reason"] == "key_compromise"
    [revoked] = events(logs, "client_certificate_revoked")
    assert revoked["revoked_serial"] == format(leaf.cert.serial_number, "x")
    assert revoked["revoked_issuer"] == "CN=Revocation Intermediate,O=authz tests"
    assert revoked["revocation_source"] == f"CRL {setup.http.url}/intermediate.crl"
    assert revoked["revocation_reason_code"] == 1
    assert checker.counters.refused_revoked == 1


async def test_a_revoked_intermediate_refuses_its_leaves(setup: Setup, checkers: list[RevocationChecker]) -> None:
    setup.serve("root.crl", make_crl(setup.root, {setup.intermediate.cert.serial_number:
                                                  x509.ReasonFlags.ca_compromise}))
    checker = await started(checkers, setup.checker())
    rejected = await setup.check(checker, setup.leaf())
    assert rejected is not None and rejected.reason is RejectionReason.CA_REVOKED
    assert rejected.log_fields["revoked_certificate"] == "intermediate 1"
    assert rejected.log_fields["revocation_reason_code"] == 2


@pytest.mark.parametrize("policy", ["hard-fail", "soft-fail"])
async def test_a_stale_crl_is_not_used(setup: Setup, checkers: list[RevocationChecker], policy: Policy) -> None:
    setup.serve("intermediate.crl", make_crl(setup.intermediate, last_update=NOW - 48 * HOUR,
                                             next_update=NOW - 24 * HOUR))
    checker = await started(checkers, setup.checker(policy=policy))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, setup.leaf())
    [stale] = [e for e in events(logs, "crl_rejected") if e["why"] == "stale"]
    assert stale["source"] == f"{setup.http.url}/intermediate.crl"
    if policy == "hard-fail":
        assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
        assert "stale" in rejected.detail or "nextUpdate" in rejected.detail
    else:
        assert rejected is None
        [unknown] = events(logs, "revocation_status_unknown")
        assert unknown["policy"] == "soft-fail" and "nextUpdate" in unknown["problems"]


async def test_a_stale_crl_is_used_within_the_grace(setup: Setup, checkers: list[RevocationChecker]) -> None:
    setup.serve("intermediate.crl", make_crl(setup.intermediate, last_update=NOW - 3 * HOUR,
                                             next_update=NOW - HOUR))
    checker = await started(checkers, setup.checker(crl_grace=7200))
    assert await setup.check(checker, setup.leaf()) is None


async def test_a_crl_held_is_not_used_once_stale(setup: Setup, checkers: list[RevocationChecker],
                                                 tmp_path: Path) -> None:
    # A --crl file that nobody replaced, and a fetched CRL whose distribution point is gone.
    crl_file = tmp_path / "root.crl"
    crl_file.write_bytes(make_crl(setup.root, last_update=NOW - 3 * HOUR, next_update=NOW - HOUR))
    clock = [time.time()]
    config = RevocationConfig(mode="crl", crl_files=(crl_file,), crl_grace=600, max_wait=5.0)
    with structlog.testing.capture_logs() as logs:
        checker = await started(checkers, RevocationChecker(config, clock=lambda: clock[0]),
                                known=setup.validator.known_cas())
    [stale] = events(logs, "crl_rejected")
    assert (stale["why"], stale["source"]) == ("stale", str(crl_file))
    rejected = await setup.check(checker, setup.root.issue("CN=leaf,O=authz tests"))
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert f"{crl_file}: stale (nextUpdate" in rejected.detail
    # Fetched while fresh; then the server stops publishing and nextUpdate + grace passes.
    leaf = setup.intermediate.issue("CN=leaf,O=authz tests", crl_uri=f"{setup.http.url}/intermediate.crl")
    crl_file.write_bytes(make_crl(setup.root, number=2))
    await checker._load_files()
    assert await setup.check(checker, leaf) is None
    (setup.http.directory / "intermediate.crl").unlink()
    clock[0] = (NOW + 24 * HOUR).timestamp() + 601
    rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "intermediate.crl: stale (nextUpdate" in rejected.detail
    assert "HTTP status 404" in rejected.detail


async def test_a_crl_with_a_bad_signature_is_not_used(setup: Setup, checkers: list[RevocationChecker]) -> None:
    forged = make_crl(setup.intermediate, key=ec.generate_private_key(ec.SECP256R1()))
    setup.serve("intermediate.crl", forged)
    checker = await started(checkers, setup.checker())
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, setup.leaf())
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    [bad] = events(logs, "crl_rejected")
    assert bad["why"] == "bad_signature"
    assert "does not verify" in bad["detail"]


@pytest.mark.parametrize("policy", ["hard-fail", "soft-fail"])
async def test_a_distribution_point_that_is_down(setup: Setup, checkers: list[RevocationChecker],
                                                 policy: Policy) -> None:
    from tests.support.server import free_port

    leaf = setup.intermediate.issue("CN=leaf,O=authz tests", crl_uri=f"http://127.0.0.1:{free_port()}/x.crl")
    checker = await started(checkers, setup.checker(policy=policy))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, leaf)
    [failed] = events(logs, "crl_fetch_failed")
    assert failed["attempt"] == 1 and failed["retry_in"] == 5.0
    if policy == "hard-fail":
        assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    else:
        assert rejected is None
        assert checker.counters.accepted_unknown == 1
    # Not fetched again before the retry: the next request does not wait for it.
    with structlog.testing.capture_logs() as logs:
        await setup.check(checker, leaf)
    assert not events(logs, "crl_fetch_failed")


@pytest.mark.parametrize("announced", [True, False])
async def test_a_crl_over_the_size_limit_is_not_fetched(setup: Setup, checkers: list[RevocationChecker],
                                                        announced: bool) -> None:
    many: dict[int, x509.ReasonFlags | None] = dict.fromkeys(range(1, 200))
    setup.serve("intermediate.crl", make_crl(setup.intermediate, many))
    if not announced:  # no Content-Length: the body is counted as it arrives
        setup.http.without_length.add("/intermediate.crl")
    checker = await started(checkers, setup.checker(crl_max_bytes=2048))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, setup.leaf())
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    [failed] = events(logs, "crl_fetch_failed")
    assert ("bytes announced (limit 2048)" if announced else "more than 2048 bytes") in failed["error"]


async def test_a_request_waits_at_most_max_wait_and_the_fetch_goes_on(
        setup: Setup, checkers: list[RevocationChecker]) -> None:
    setup.http.delays["/intermediate.crl"] = 1.5
    checker = await started(checkers, setup.checker(max_wait=0.2))
    leaf = setup.leaf()
    started_at = time.monotonic()
    rejected = await setup.check(checker, leaf)
    assert time.monotonic() - started_at < 1.0
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "being fetched" in rejected.detail
    # The fetch went on in the background: a later request finds the CRL.
    for _ in range(50):
        await asyncio.sleep(0.1)
        if f"{setup.http.url}/intermediate.crl" in checker.crl_next_updates():
            break
    assert await setup.check(checker, leaf) is None
    assert setup.http.requests["/intermediate.crl"] == 1


async def test_a_crl_is_refreshed_before_its_next_update_and_replaces_the_verdict(
        setup: Setup, checkers: list[RevocationChecker]) -> None:
    clock = [time.time()]
    checker = await started(checkers, RevocationChecker(RevocationConfig(mode="crl", max_wait=5.0),
                                                        clock=lambda: clock[0]))
    leaf = setup.leaf()
    found = presented(leaf)
    assert await setup.check(checker, leaf) is None
    assert checker.has_verdict(found)
    source = checker._sources[f"{setup.http.url}/intermediate.crl"]
    # Fetched again 5 minutes before nextUpdate (NOW + 24 h): the verdict is kept until then.
    assert source.refresh_at == pytest.approx((NOW + 24 * HOUR).timestamp() - 300, abs=1)  # CRL times: seconds
    setup.serve("intermediate.crl", make_crl(setup.intermediate, {leaf.cert.serial_number: None},
                                             last_update=NOW, next_update=NOW + 48 * HOUR, number=2))
    clock[0] = source.refresh_at + 1
    assert not checker.has_verdict(found)
    generation = checker.generation
    # The CRL held is still usable: the request is answered from it, the refresh goes on.
    assert await setup.check(checker, leaf) is None
    assert source.task is not None
    await source.task
    assert checker.generation > generation and not checker.has_verdict(found)
    rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOKED
    assert rejected.log_fields["revocation_reason"] is None  # none given: none invented
    assert setup.http.requests["/intermediate.crl"] == 2


async def test_crl_files_are_checked_against_the_issuer_and_reloaded(
        setup: Setup, checkers: list[RevocationChecker], tmp_path: Path) -> None:
    leaf = setup.leaf(crl=None)  # no distribution point: only the file speaks for it
    crl_file = tmp_path / "files" / "intermediate.crl"
    crl_file.parent.mkdir()
    crl_file.write_bytes(make_crl(setup.intermediate))
    root_file = tmp_path / "files" / "root.crl"
    root_file.write_bytes(make_crl(setup.root))
    checker = await started(checkers, setup.checker(crl_files=(crl_file, root_file)),
                            known=setup.validator.known_cas())
    assert await setup.check(checker, leaf) is None
    assert setup.http.requests["/root.crl"] == 0  # the file of the root was enough
    with structlog.testing.capture_logs() as logs:
        crl_file.write_bytes(make_crl(setup.intermediate, {leaf.cert.serial_number:
                                                           x509.ReasonFlags.superseded}, number=2))
        await checker._load_files()
    [loaded] = events(logs, "crl_loaded")
    assert loaded["source"] == str(crl_file) and loaded["entries"] == 1
    rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOKED
    assert rejected.log_fields["revocation_source"] == f"CRL {crl_file}"
    # A broken file: the CRL loaded before stays in use.
    with structlog.testing.capture_logs() as logs:
        crl_file.write_bytes(b"not a CRL")
        await checker._load_files()
    assert events(logs, "crl_rejected")[0]["why"] == "unparsable"
    assert (await setup.check(checker, leaf)).reason is RejectionReason.REVOKED  # type: ignore[union-attr]


async def test_a_crl_file_signed_by_another_key_is_not_used(
        setup: Setup, checkers: list[RevocationChecker], tmp_path: Path) -> None:
    crl_file = tmp_path / "forged.crl"
    crl_file.write_bytes(make_crl(setup.root, key=ec.generate_private_key(ec.SECP256R1())))
    with structlog.testing.capture_logs() as logs:
        checker = await started(checkers, setup.checker(crl_files=(crl_file,)), known=setup.validator.known_cas())
    assert [e["why"] for e in events(logs, "crl_rejected")] == ["bad_signature"]
    leaf = setup.root.issue("CN=leaf,O=authz tests")
    rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "bad signature" in rejected.detail


async def test_without_any_crl_hard_fail_refuses(setup: Setup, checkers: list[RevocationChecker]) -> None:
    checker = await started(checkers, setup.checker())
    rejected = await setup.check(checker, setup.root.issue("CN=no distribution point,O=authz tests"))
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "no --crl file" in rejected.detail


def test_crls_the_checker_cannot_use_are_refused_when_parsed() -> None:
    ca = TestCA()
    with pytest.raises(CRLUnusable) as delta:
        parse_crl(make_crl(ca, extensions=[(x509.DeltaCRLIndicator(1), True)]), "delta")
    assert delta.value.why == "delta_crl"
    indirect = x509.IssuingDistributionPoint(None, None, False, False, None, True, False)
    with pytest.raises(CRLUnusable) as info:
        parse_crl(make_crl(ca, extensions=[(indirect, True)]), "indirect")
    assert info.value.why == "unsupported"
    with pytest.raises(CRLUnusable) as info:
        parse_crl(b"\x30\x03\x02\x01\x00", "garbage")
    assert info.value.why == "unparsable"


def test_a_crl_signer_needs_the_issuers_name_key_and_crl_sign_usage() -> None:
    ca = TestCA("CN=Signer,O=authz tests")
    loaded = parse_crl(make_crl(ca), "crl")
    assert signature_problem(loaded, PathCA(ca.cert, anchor=True)) is None
    same_name = TestCA("CN=Signer,O=authz tests")
    assert "does not verify" in (signature_problem(loaded, PathCA(same_name.cert, anchor=True)) or "")
    other_name = TestCA("CN=Other,O=authz tests")
    assert "issuer is not" in (signature_problem(loaded, PathCA(other_name.cert, anchor=True)) or "")
    no_crl_sign = TestCA("CN=Signer,O=authz tests", key_usage_crl_sign=False)
    loaded = parse_crl(make_crl(no_crl_sign), "crl")
    assert "cRLSign" in (signature_problem(loaded, PathCA(no_crl_sign.cert, anchor=True)) or "")


def test_a_crl_limited_to_ca_certificates_does_not_cover_leaves() -> None:
    ca = TestCA()
    only_cas = x509.IssuingDistributionPoint(None, None, False, True, None, False, False)
    loaded = parse_crl(make_crl(ca, extensions=[(only_cas, True)]), "cas")
    assert loaded.covers((), is_ca=True) and not loaded.covers((), is_ca=False)
    scoped = x509.IssuingDistributionPoint([x509.UniformResourceIdentifier("http://a/x.crl")], None, False, False,
                                           None, False, False)
    loaded = parse_crl(make_crl(ca, extensions=[(scoped, True)]), "scoped")
    assert loaded.covers(("http://a/x.crl",), is_ca=False) and not loaded.covers(("http://b/y.crl",), is_ca=False)


# --- OCSP ---------------------------------------------------------------------------------------

class Responder:
    """A cryptography-built OCSP responder for one CA, on the test HTTP server at /ocsp."""

    def __init__(self, ca: TestCA) -> None:
        self.ca = ca
        self.statuses: dict[int, ocsp.OCSPCertStatus] = {}
        self.signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] = (ca.cert, ca.key)
        self.include: list[x509.Certificate] = []
        self.nonce: bytes | None = None  # echoed instead of the request's when set
        self.next_update: datetime.timedelta | None = datetime.timedelta(minutes=5)
        self.certificates: dict[int, x509.Certificate] = {}
        self.tamper = False  # flip a bit of the signature

    def __call__(self, body: bytes) -> tuple[int, bytes]:
        request = ocsp.load_der_ocsp_request(body)
        certificate = self.certificates[request.serial_number]
        status = self.statuses.get(request.serial_number, ocsp.OCSPCertStatus.GOOD)
        revoked = status == ocsp.OCSPCertStatus.REVOKED
        builder = ocsp.OCSPResponseBuilder().add_response(
            certificate, self.ca.cert, hashes.SHA1(), status, NOW - HOUR,
            NOW + self.next_update if self.next_update is not None else None,
            NOW - HOUR if revoked else None, x509.ReasonFlags.key_compromise if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.signer[0])
        if self.include:
            builder = builder.certificates(self.include)
        try:
            nonce = self.nonce or request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        except x509.ExtensionNotFound:
            pass
        der = builder.sign(self.signer[1], hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        if self.tamper:  # the last byte is the signature's (no certificates follow it)
            der = der[:-1] + bytes([der[-1] ^ 1])
        return 200, der


@pytest.fixture
def responder(setup: Setup) -> Responder:
    responder = Responder(setup.intermediate)
    setup.http.handlers["/ocsp"] = responder
    return responder


def ocsp_leaf(setup: Setup, responder: Responder) -> Issued:
    leaf = setup.leaf(crl=None, ocsp_path="/ocsp")
    responder.certificates[leaf.cert.serial_number] = leaf.cert
    return leaf


def root_responder(setup: Setup) -> Responder:
    """The intermediate's status, from its issuer (the root)."""
    responder = Responder(setup.root)
    responder.certificates[setup.intermediate.cert.serial_number] = setup.intermediate.cert
    original = setup.http.handlers["/ocsp"]

    def either(body: bytes) -> tuple[int, bytes]:
        serial = ocsp.load_der_ocsp_request(body).serial_number
        return (responder if serial == setup.intermediate.cert.serial_number else original)(body)

    setup.http.handlers["/ocsp"] = either
    return responder


async def test_ocsp_good_and_revoked(setup: Setup, responder: Responder, checkers: list[RevocationChecker]) -> None:
    root_responder(setup)
    checker = await started(checkers, setup.checker("ocsp", ocsp_nonce=True))
    good, revoked = ocsp_leaf(setup, responder), ocsp_leaf(setup, responder)
    responder.statuses[revoked.cert.serial_number] = ocsp.OCSPCertStatus.REVOKED
    with structlog.testing.capture_logs() as logs:
        assert await setup.check(checker, good) is None
        rejected = await setup.check(checker, revoked)
    assert rejected is not None and rejected.reason is RejectionReason.REVOKED
    assert rejected.log_fields["revocation_source"] == f"OCSP {setup.http.url}/ocsp"
    assert rejected.log_fields["revocation_reason_code"] == 1
    checked = events(logs, "ocsp_checked")
    assert sorted(e["status"] for e in checked) == ["good", "good", "revoked"]  # the intermediate once
    # Answers are kept until their nextUpdate.
    assert await setup.check(checker, good) is None
    assert setup.http.requests["/ocsp"] == 3


async def test_ocsp_unknown_status_and_revoked_intermediate(setup: Setup, responder: Responder,
                                                            checkers: list[RevocationChecker]) -> None:
    root = root_responder(setup)
    checker = await started(checkers, setup.checker("ocsp"))
    leaf = ocsp_leaf(setup, responder)
    responder.statuses[leaf.cert.serial_number] = ocsp.OCSPCertStatus.UNKNOWN
    rejected = await setup.check(checker, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "does not know the certificate" in rejected.detail
    root.statuses[setup.intermediate.cert.serial_number] = ocsp.OCSPCertStatus.REVOKED
    checker2 = await started(checkers, setup.checker("ocsp"))
    responder.statuses.clear()
    rejected = await setup.check(checker2, leaf)
    assert rejected is not None and rejected.reason is RejectionReason.CA_REVOKED


def _delegate(ca: TestCA, eku: list[x509.ObjectIdentifier]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    issued = ca.issue("CN=OCSP responder,O=authz tests", eku=eku)
    return issued.cert, issued.key


@pytest.mark.parametrize(("signer", "accepted"), [
    ("delegate", True), ("delegate-without-eku", False), ("other-ca", False), ("tampered", False)])
async def test_ocsp_responder_authorisation(setup: Setup, responder: Responder, checkers: list[RevocationChecker],
                                            signer: str, accepted: bool) -> None:
    root_responder(setup)
    if signer == "delegate":
        responder.signer = _delegate(setup.intermediate, [ExtendedKeyUsageOID.OCSP_SIGNING])
        responder.include = [responder.signer[0]]
    elif signer == "delegate-without-eku":
        responder.signer = _delegate(setup.intermediate, [ExtendedKeyUsageOID.CLIENT_AUTH])
        responder.include = [responder.signer[0]]
    elif signer == "other-ca":
        responder.signer = _delegate(TestCA("CN=Revocation Intermediate,O=authz tests"),
                                     [ExtendedKeyUsageOID.OCSP_SIGNING])
        responder.include = [responder.signer[0]]
    else:  # signed by the CA, but the signature does not match the response
        responder.tamper = True
    checker = await started(checkers, setup.checker("ocsp"))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, ocsp_leaf(setup, responder))
    if accepted:
        assert rejected is None
    else:
        assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
        [failed] = events(logs, "ocsp_failed")
        assert "unauthorised_responder" in failed["error"] or "bad_signature" in failed["error"]


async def test_an_ocsp_nonce_of_another_request_is_refused(setup: Setup, responder: Responder,
                                                           checkers: list[RevocationChecker]) -> None:
    root_responder(setup)
    responder.nonce = b"0123456789abcdef"
    checker = await started(checkers, setup.checker("ocsp", ocsp_nonce=True))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, ocsp_leaf(setup, responder))
    assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    assert "nonce_mismatch" in [e for e in logs if e["event"] == "ocsp_failed"][-1]["error"]


@pytest.mark.parametrize("policy", ["hard-fail", "soft-fail"])
async def test_an_ocsp_responder_that_is_down(setup: Setup, checkers: list[RevocationChecker],
                                              policy: Policy) -> None:
    from tests.support.server import free_port

    leaf = setup.intermediate.issue("CN=leaf,O=authz tests", ocsp_uri=f"http://127.0.0.1:{free_port()}/")
    responder = Responder(setup.root)  # the intermediate's own status is good
    responder.certificates[setup.intermediate.cert.serial_number] = setup.intermediate.cert
    setup.http.handlers["/ocsp"] = responder
    checker = await started(checkers, setup.checker("ocsp", policy))
    with structlog.testing.capture_logs() as logs:
        rejected = await setup.check(checker, leaf)
    assert events(logs, "ocsp_failed")
    if policy == "hard-fail":
        assert rejected is not None and rejected.reason is RejectionReason.REVOCATION_UNKNOWN
    else:
        assert rejected is None and events(logs, "revocation_status_unknown")


async def test_crl_and_ocsp_either_fresh_answer_is_enough(setup: Setup, responder: Responder,
                                                          checkers: list[RevocationChecker]) -> None:
    root_responder(setup)
    from tests.support.server import free_port

    leaf = setup.intermediate.issue("CN=leaf,O=authz tests", crl_uri=f"http://127.0.0.1:{free_port()}/x.crl",
                                    ocsp_uri=f"{setup.http.url}/ocsp")
    responder.certificates[leaf.cert.serial_number] = leaf.cert
    checker = await started(checkers, setup.checker("crl+ocsp"))
    assert await setup.check(checker, leaf) is None  # the CRL is down, OCSP answers


def test_ocsp_key_hash_is_over_the_public_key_bits() -> None:
    # RFC 6960 KeyHash and RFC 5280 key identifier method 1 hash the same bytes.
    ca = TestCA()
    digest = hashes.Hash(hashes.SHA1())
    digest.update(_key_bits(ca.cert))
    ski = ca.cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert digest.finalize() == ski.digest  # type: ignore[attr-defined]
