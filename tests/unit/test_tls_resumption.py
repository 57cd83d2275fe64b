"""Session resumption with stateless tickets (``authz.tls.resumption``), in memory: what
resumes, what the application then sees, what does not resume and why, and the ticket key's
rotation. Over real sockets: ``tests/wire/test_tls_resumption.py``."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from authz.certificates.chain import ChainValidator
from authz.certificates.check import check_client_certificate
from authz.certificates.presented import SESSION_RESUMED_KEY, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.clients.model import RegisteredClient
from authz.settings import Settings
from authz.tls import resumption
from authz.tls.context import build_server_context
from authz.tls.extension import peer_certificate_chain, tls_extension
from authz.tls.resumption import ResumptionConfig, TicketKeyRotation
from authz.tls.self_test import TLSSelfTestError, _client_context, _handshake, run_self_test
from tests.support.pki import Issued, TestCA, self_signed

TICKETS = ResumptionConfig("tickets", 600)
VERSIONS = [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2]


class Material:
    def __init__(self, directory: Path) -> None:
        self.root = TestCA("CN=Resumption Root,O=authz tests")
        self.issuing = TestCA("CN=Resumption Issuing CA,O=authz tests", parent=self.root)
        self.server = self.root.issue("CN=localhost", san_dns=["localhost"], eku=[]).write(directory, "server")
        self.direct: Issued = self.root.issue("CN=direct,O=authz tests")
        self.chained: Issued = self.issuing.issue("CN=chained,O=authz tests")
        self.files = {name: issued.write(directory, name) for name, issued in
                      {"direct": self.direct, "chained": self.chained, "self-signed": self_signed()}.items()}

    def context(self, config: ResumptionConfig | None = TICKETS) -> ssl.SSLContext:
        return build_server_context(*map(str, self.server), resumption_config=config)

    def client(self, name: str, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
        context = _client_context(version)
        context.load_cert_chain(*self.files[name])
        return context


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("resumption"))


@pytest.fixture(autouse=True)
def no_known_cas() -> Iterator[None]:
    resumption.configure_known_cas([])
    yield
    resumption.configure_known_cas([])


def _session(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLSession:
    session = _handshake(server, client).client.session
    assert session is not None and session.has_ticket
    return session


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.3", "tls1.2"])
def test_a_resumed_session_carries_the_client_certificate(material: Material, version: ssl.TLSVersion) -> None:
    server = material.context()
    client = material.client("direct", version)
    full = _handshake(server, client)
    resumed = _handshake(server, client, session=full.client.session)
    assert (full.server.session_reused, resumed.server.session_reused) == (False, True)
    assert resumed.client.session_reused
    assert peer_certificate_chain(resumed.server) == [material.direct.der]
    tls = tls_extension(resumed.server, None)
    assert tls[SESSION_RESUMED_KEY] is True and tls_extension(full.server, None)[SESSION_RESUMED_KEY] is False
    presented = presented_certificate({"extensions": {"tls": tls}})
    assert presented is not None and presented.from_resumed_session
    assert presented.leaf_der == material.direct.der and presented.log_fields()["tls_session_resumed"] is True


def test_tickets_live_as_long_as_their_key(material: Material) -> None:
    server = material.context(ResumptionConfig("tickets", 90.7))
    assert _session(server, material.client("direct")).ticket_lifetime_hint == 90
    assert _session(server, material.client("direct", ssl.TLSVersion.TLSv1_2)).ticket_lifetime_hint == 90


def test_one_ticket_per_tls13_handshake(material: Material) -> None:
    assert material.context().num_tickets == resumption.TICKETS_PER_HANDSHAKE == 1


def test_off_by_default_in_both_versions(material: Material) -> None:
    server = material.context(None)
    for version in VERSIONS:
        client = material.client("direct", version)
        full = _handshake(server, client)
        again = _handshake(server, client, session=full.client.session)
        assert not again.server.session_reused
        assert full.client.session is None or not full.client.session.has_ticket


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.3", "tls1.2"])
def test_a_rotation_retires_earlier_tickets_with_a_full_handshake(material: Material,
                                                                   version: ssl.TLSVersion) -> None:
    server = material.context()
    client = material.client("direct", version)
    session = _session(server, client)
    resumption.rotate_ticket_key(server)
    after = _handshake(server, client, session=session)  # no failure
    assert not after.server.session_reused
    assert peer_certificate_chain(after.server) == [material.direct.der]
    assert _handshake(server, client, session=after.client.session).server.session_reused  # the new key's


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.3", "tls1.2"])
def test_unknown_intermediates_give_a_full_handshake(material: Material, version: ssl.TLSVersion) -> None:
    server = material.context()
    client = material.client("chained", version)
    session = _session(server, client)
    again = _handshake(server, client, session=session)
    assert not again.server.session_reused
    assert len(peer_certificate_chain(again.server)) == 2  # sent again, validated as before

    resumption.configure_known_cas([material.issuing.cert.public_bytes(Encoding.DER)])
    resumed = _handshake(server, client, session=again.client.session)
    assert resumed.server.session_reused and peer_certificate_chain(resumed.server) == [material.chained.der]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.3", "tls1.2"])
def test_a_resumed_connection_gets_no_new_ticket(material: Material, version: ssl.TLSVersion) -> None:
    # The client keeps resuming with its ticket until the key rotates; and the ticket keeps
    # what its client sent in the full handshake, whatever the configuration says later.
    server = material.context()
    client = material.client("chained", version)
    resumption.configure_known_cas([material.issuing.cert.public_bytes(Encoding.DER)])
    offered = _session(server, client)
    for _ in range(2):
        resumed = _handshake(server, client, session=offered)
        assert resumed.server.session_reused
        assert resumed.client.session is not None and resumed.client.session.id == offered.id
    resumption.configure_known_cas([])
    assert not _handshake(server, client, session=offered).server.session_reused


def test_an_anchor_sent_along_does_not_prevent_resumption(material: Material, tmp_path: Path) -> None:
    chain_with_root = Issued(material.chained.cert, material.chained.key, [material.issuing.cert, material.root.cert])
    client = _client_context()
    client.load_cert_chain(*chain_with_root.write(tmp_path, "with-root"))
    server = material.context()
    resumption.configure_known_cas([material.root.cert.public_bytes(Encoding.DER),
                                    material.issuing.cert.public_bytes(Encoding.DER)])
    assert _handshake(server, client, session=_session(server, client)).server.session_reused


def test_the_first_declined_resumption_is_logged_with_the_ca_to_configure(material: Material, capsys: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resumption, "_declined_logged", False)
    server = material.context()
    client = material.client("chained")
    _handshake(server, client, session=_session(server, client))
    out = capsys.readouterr().out
    assert "tls_resumption_declined" in out and "intermediates_not_configured" in out
    assert material.issuing.cert.fingerprint(hashes.SHA256()).hex() in out


# --- the self-test proves the mode --------------------------------------------------------------


def test_the_self_test_proves_tickets(material: Material) -> None:
    run_self_test(material.context())


@pytest.mark.parametrize(("weaken", "message"), [
    (lambda c: setattr(c, "num_tickets", 0), "issued no TLS 1.3 session ticket"),
    (lambda c: setattr(c, "options", c.options | ssl.OP_NO_TICKET), "TLS 1.3 session ticket did not resume"),
], ids=["no-tls13-tickets", "no-stateless-tickets"])
def test_the_self_test_refuses_tickets_that_do_not_work(material: Material, weaken: Any, message: str) -> None:
    context = material.context()
    weaken(context)
    with pytest.raises(TLSSelfTestError, match=message):
        run_self_test(context)


@pytest.mark.parametrize(("weaken", "message"), [
    (lambda c: setattr(c, "num_tickets", 2), r"TLS 1\.3 session ticket although resumption is off"),
    (lambda c: setattr(c, "options", c.options & ~ssl.OP_NO_TICKET), r"resumed a TLS 1\.2 session although"),
], ids=["tls13-tickets", "tls12-tickets"])
def test_the_self_test_refuses_tickets_where_resumption_is_off(material: Material, weaken: Any, message: str) -> None:
    context = material.context(None)
    weaken(context)
    with pytest.raises(TLSSelfTestError, match=message):
        run_self_test(context)


# --- the rotation ------------------------------------------------------------------------------


class _Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Timers:
    """Enough of an event loop for TicketKeyRotation: records what it schedules."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Any, _Timer]] = []

    def call_later(self, delay: float, callback: Any) -> _Timer:
        timer = _Timer()
        self.scheduled.append((delay, callback, timer))
        return timer


def test_the_rotation_replaces_the_key_of_the_context_in_use(material: Material, capsys: Any) -> None:
    every_30s = ResumptionConfig("tickets", 30)
    first, reloaded = material.context(every_30s), material.context(every_30s)
    in_use = [first]
    timers = _Timers()
    rotation = TicketKeyRotation.start_for(timers, lambda: in_use[0])  # type: ignore[arg-type]
    assert rotation is not None and [delay for delay, _, _ in timers.scheduled] == [30]
    client = material.client("direct")
    session = _session(reloaded, client)
    in_use[0] = reloaded  # a SIGHUP reload swapped the context
    timers.scheduled[-1][1]()  # the timer fires
    assert not _handshake(reloaded, client, session=session).server.session_reused
    assert [delay for delay, _, _ in timers.scheduled] == [30, 30]  # and the next one is due
    assert "tls_ticket_key_rotated" in capsys.readouterr().out
    rotation.cancel()
    assert timers.scheduled[-1][2].cancelled


def test_no_rotation_where_resumption_is_off(material: Material) -> None:
    timers = _Timers()
    assert TicketKeyRotation.start_for(timers, lambda: material.context(None)) is None  # type: ignore[arg-type]
    assert TicketKeyRotation.start_for(timers, lambda: None) is None  # type: ignore[arg-type]
    assert timers.scheduled == []


# --- the application's decision on a resumed session --------------------------------------------


def _client(subject: str) -> RegisteredClient:
    return RegisteredClient.from_metadata({"client_id": "c", "token_endpoint_auth_method": "tls_client_auth",
                                           "tls_client_auth_subject_dn": subject})


def _presented(issued: Issued, *, resumed: bool, chain: bool) -> Any:
    ders = [issued.der, *(c.public_bytes(Encoding.DER) for c in issued.chain)] if chain else [issued.der]
    tls = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in ders], SESSION_RESUMED_KEY: resumed}
    return presented_certificate({"extensions": {"tls": tls}})


def test_a_resumed_leaf_without_its_intermediate_is_refused_naming_the_resumption(material: Material) -> None:
    client = _client("CN=chained,O=authz tests")
    validator = ChainValidator([material.root.cert])
    check_client_certificate(client, _presented(material.chained, resumed=False, chain=True), validator)
    with pytest.raises(CertificateRejected) as refused:
        check_client_certificate(client, _presented(material.chained, resumed=True, chain=False), validator)
    assert refused.value.reason is RejectionReason.RESUMED_WITHOUT_INTERMEDIATES
    assert "resuming the TLS session" in refused.value.public_description
    assert "--intermediate" in refused.value.detail and "candidates exhausted" in refused.value.detail
    # The same leaf alone, not resumed: the ordinary refusal.
    with pytest.raises(CertificateRejected) as plain:
        check_client_certificate(client, _presented(material.chained, resumed=False, chain=False), validator)
    assert plain.value.reason is RejectionReason.UNTRUSTED_CHAIN
    # With the intermediate configured, the resumed leaf validates.
    pooled = ChainValidator([material.root.cert], [material.issuing.cert])
    check_client_certificate(client, _presented(material.chained, resumed=True, chain=False), pooled)


def test_other_refusals_on_a_resumed_session_keep_their_reason(material: Material) -> None:
    validator = ChainValidator([material.root.cert])
    with pytest.raises(CertificateRejected) as refused:
        check_client_certificate(_client("CN=someone else"), _presented(material.direct, resumed=True, chain=False),
                                 validator)
    assert refused.value.reason is RejectionReason.SUBJECT_DN_MISMATCH


# --- settings -----------------------------------------------------------------------------------


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().resumption_config() == ResumptionConfig("off", resumption.DEFAULT_TICKET_KEY_ROTATION)
    settings = Settings(tls_resumption="tickets", tls_ticket_key_rotation=120)
    assert settings.resumption_config() == ResumptionConfig("tickets", 120)
    # Worker processes build their settings from the environment authz serve exports.
    for name, value in settings.to_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings().resumption_config() == ResumptionConfig("tickets", 120)
    with pytest.raises(ValidationError):
        Settings(tls_resumption="cache")
    with pytest.raises(ValidationError):
        Settings(tls_ticket_key_rotation=0.5)
    with pytest.raises(ValueError, match="1 to 86400 seconds"):
        ResumptionConfig("tickets", 100_000)


def test_refused_behind_a_proxy() -> None:
    # Between a proxy and this server, a resumed session would carry the proxy's leaf alone,
    # and tickets are checked against the clients' CAs, not the proxies'.
    with pytest.raises(ValidationError, match=r"--tls-resumption \(AUTHZ_TLS_RESUMPTION\) applies to this server's "
                                              r"own clients over direct TLS, not behind a proxy"):
        Settings(tls_resumption="tickets", proxy_cert_header="nginx", trusted_proxies=["127.0.0.1"])
    behind_a_proxy = Settings(tls_resumption="off", proxy_cert_header="nginx", trusted_proxies=["127.0.0.1"])
    assert behind_a_proxy.tls_resumption == "off"
