"""The CA names of the CertificateRequest (``--advertise-ca-names``, ``authz.tls.ca_names``):
the ctypes helper, the start-up self-test's proof, the reloadable context and the settings.
Handshakes are in memory (``authz.tls.self_test``); tests/wire/test_ca_names.py sees the
names on the wire."""

from __future__ import annotations

import ssl
import types
from pathlib import Path

import click
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.cli.serve import _settings
from authz.reload import ReloadRefused
from authz.tls.ca_names import (
    CANamesError,
    advertise_ca_names,
    advertised_ca_names,
    distinct_subjects,
    read_ca_names,
    received_ca_names,
)
from authz.tls.context import ServerTLSError, build_server_context, uvicorn_mtls_options
from authz.tls.credentials import ServerCredentials, load_credentials
from authz.tls.self_test import TLSSelfTestError, _client_context, _handshake, run_self_test
from tests.support.pki import TestCA

# Subjects with what DER and RFC 4514 make interesting: escaped characters, a non-ASCII
# letter, a multi-valued RDN.
SUBJECTS = ("CN=Anchor One,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH", "CN=Anchor Two+OU=Ops,O=authz tests")
VERSIONS = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)


@pytest.fixture(scope="module")
def anchors() -> list[TestCA]:
    return [TestCA(subject) for subject in SUBJECTS]


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    issued = TestCA("CN=Server CA").issue("CN=localhost", san_dns=["localhost"], eku=[])
    return issued.write(tmp_path_factory.mktemp("server"), "server")


def _ders(names: list[x509.Name]) -> list[bytes]:
    return [name.public_bytes() for name in names]


def _received(context: ssl.SSLContext, version: ssl.TLSVersion) -> list[bytes]:
    return _ders(received_ca_names(_handshake(context, _client_context(version)).client))


def test_the_names_round_trip_through_openssl_in_order(server_pem: tuple[Path, Path],
                                                        anchors: list[TestCA]) -> None:
    context = build_server_context(*map(str, server_pem))
    names = distinct_subjects(anchor.cert for anchor in anchors)
    advertise_ca_names(context, names)
    assert _ders(advertised_ca_names(context)) == _ders(names)
    assert [name.rfc4514_string() for name in advertised_ca_names(context)] == [
        anchor.cert.subject.rfc4514_string() for anchor in anchors]
    for version in VERSIONS:
        assert _received(context, version) == _ders(names)
    # A second call replaces the list (OpenSSL frees the first).
    advertise_ca_names(context, names[1:])
    assert _received(context, ssl.TLSVersion.TLSv1_3) == _ders(names[1:])


def test_the_advertised_name_is_the_certificates_own_subject_encoding(anchors: list[TestCA]) -> None:
    # Clients compare bytes (Go: bytes.Equal with the leaf's RawIssuer): the name sent must be
    # the subject exactly as the anchor encodes it, not a re-encoding.
    for anchor in anchors:
        assert anchor.cert.subject.public_bytes() in anchor.cert.public_bytes(Encoding.DER)


def test_no_names_by_default_and_an_empty_list_sends_none(server_pem: tuple[Path, Path]) -> None:
    context = build_server_context(*map(str, server_pem))
    assert advertised_ca_names(context) == []
    for version in VERSIONS:
        assert _received(context, version) == []
    advertise_ca_names(context, [])
    assert advertised_ca_names(context) == []
    assert _received(context, ssl.TLSVersion.TLSv1_3) == []


def test_a_ca_renewed_under_the_same_name_is_named_once(anchors: list[TestCA]) -> None:
    renewed = TestCA(SUBJECTS[0])  # another key, the same subject
    names = distinct_subjects([anchors[0].cert, anchors[1].cert, renewed.cert])
    assert _ders(names) == _ders([anchors[0].cert.subject, anchors[1].cert.subject])


def test_the_server_context_is_built_and_self_tested_with_the_names(server_pem: tuple[Path, Path],
                                                                     anchors: list[TestCA]) -> None:
    names = [anchor.cert.subject for anchor in anchors]
    context = build_server_context(*map(str, server_pem), names)  # runs the self-test
    assert _received(context, ssl.TLSVersion.TLSv1_2) == _ders(names)


def test_the_self_test_catches_names_that_did_not_go_out(server_pem: tuple[Path, Path],
                                                         anchors: list[TestCA]) -> None:
    context = build_server_context(*map(str, server_pem))  # advertises nothing
    with pytest.raises(TLSSelfTestError, match=r"the TLS 1.3 CertificateRequest carries 0 CA name\(s\), not the 2"):
        run_self_test(context, [anchor.cert.subject for anchor in anchors])


class _NotAName:
    """Stands for a name OpenSSL cannot take: its DER is given."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def public_bytes(self) -> bytes:
        return self.der

    def rfc4514_string(self) -> str:
        return "not a name"


@pytest.mark.parametrize("der", [b"\x30\x03\x02\x01\x01", b"trailing"],
                         ids=["a SEQUENCE of an INTEGER", "a name with trailing bytes"])
def test_a_name_openssl_cannot_decode_changes_nothing(server_pem: tuple[Path, Path], anchors: list[TestCA],
                                                      der: bytes) -> None:
    context = build_server_context(*map(str, server_pem))
    kept = [anchors[0].cert.subject]
    advertise_ca_names(context, kept)
    if der == b"trailing":
        der = anchors[1].cert.subject.public_bytes() + b"\x00"
    # The first name is decoded and pushed, then the list is freed with it (OPENSSL_sk_pop_free).
    with pytest.raises(CANamesError, match="OpenSSL could not decode the CA name 'not a name'"):
        advertise_ca_names(context, [anchors[1].cert.subject, _NotAName(der)])  # type: ignore[list-item]
    assert _ders(advertised_ca_names(context)) == _ders(kept)


def test_reading_the_names_from_a_client_needs_the_expected_layout() -> None:
    with pytest.raises(CANamesError, match="no _sslobj"):
        received_ca_names(types.SimpleNamespace())  # type: ignore[arg-type]


def test_read_ca_names_names_the_file(tmp_path: Path, anchors: list[TestCA]) -> None:
    both = tmp_path / "anchors.pem"
    both.write_bytes(anchors[0].pem + anchors[1].pem)
    assert _ders(read_ca_names([both])) == _ders([anchors[0].cert.subject, anchors[1].cert.subject])
    with pytest.raises(CANamesError, match=f"cannot read {tmp_path / 'missing.pem'}"):
        read_ca_names([tmp_path / "missing.pem"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CANamesError, match=f"{garbage} holds no PEM certificate"):
        read_ca_names([garbage])


def test_the_serving_options_refuse_unreadable_anchors(server_pem: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ServerTLSError, match="refusing to start: --advertise-ca-names: cannot read"):
        uvicorn_mtls_options(*map(str, server_pem), [tmp_path / "missing.pem"])


def test_the_worker_factory_is_bound_to_the_files(server_pem: tuple[Path, Path], tmp_path: Path,
                                                  anchors: list[TestCA]) -> None:
    import pickle

    anchor_file = anchors[0].write(tmp_path / "anchor.pem")
    options = uvicorn_mtls_options(*map(str, server_pem), [anchor_file])
    factory = pickle.loads(pickle.dumps(options["ssl_context_factory"]))  # as --workers hands it over
    config = types.SimpleNamespace(ssl_certfile=str(server_pem[0]), ssl_keyfile=str(server_pem[1]))

    def default_factory() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*server_pem)
        return context

    context = factory(config, default_factory)
    assert _ders(advertised_ca_names(context)) == [anchors[0].cert.subject.public_bytes()]


# --- reload: the context follows the anchor files ----------------------------------------------

def test_a_reload_rebuilds_the_context_when_the_anchors_change(server_pem: tuple[Path, Path], tmp_path: Path,
                                                               anchors: list[TestCA]) -> None:
    anchor_file = anchors[0].write(tmp_path / "anchors.pem")
    loaded = load_credentials(*server_pem, [anchor_file])
    assert loaded is not None and loaded.summary["ca_names_advertised"] == 1
    credentials = ServerCredentials(*server_pem, loaded.context, [anchor_file])
    assert credentials.prepare() is None  # nothing changed
    anchor_file.write_bytes(anchors[0].pem + anchors[1].pem)
    change = credentials.prepare()
    assert change is not None and change.summary["ca_names_advertised"] == 2
    assert _received(credentials.context, ssl.TLSVersion.TLSv1_3) == [anchors[0].cert.subject.public_bytes()]
    change.commit()
    assert _received(credentials.context, ssl.TLSVersion.TLSv1_3) == _ders([a.cert.subject for a in anchors])
    assert credentials.prepare() is None


def test_a_reload_with_an_unusable_anchor_file_is_refused(server_pem: tuple[Path, Path], tmp_path: Path,
                                                          anchors: list[TestCA]) -> None:
    anchor_file = anchors[0].write(tmp_path / "anchors.pem")
    anchor_file.write_text("garbage")
    with pytest.raises(ReloadRefused) as refused:
        load_credentials(*server_pem, [anchor_file])
    assert refused.value.file == str(anchor_file)
    assert refused.value.reason.startswith("the trust anchor file holds no PEM certificate")


# --- settings ------------------------------------------------------------------------------------

@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHZ_ADVERTISE_CA_NAMES", "AUTHZ_TRUST_ANCHORS", "AUTHZ_PROXY_CERT_HEADER", "AUTHZ_TRUSTED_PROXIES",
                 "AUTHZ_TLS_CERT", "AUTHZ_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_environment")
def test_the_option_needs_trust_anchors() -> None:
    with pytest.raises(click.ClickException) as raised:
        _settings({"advertise_ca_names": True})
    assert raised.value.message == (
        "invalid settings: --advertise-ca-names (AUTHZ_ADVERTISE_CA_NAMES) needs --trust-anchor (AUTHZ_TRUST_ANCHORS): "
        "the names advertised are the trust anchors' subjects")


@pytest.mark.usefixtures("clean_environment")
def test_the_option_is_refused_behind_a_proxy() -> None:
    with pytest.raises(click.ClickException) as raised:
        _settings({"advertise_ca_names": True, "trust_anchors": ["ca.pem"], "proxy_cert_header": "nginx",
                   "trusted_proxies": ["127.0.0.1"]})
    assert raised.value.message.startswith(
        "invalid settings: --advertise-ca-names (AUTHZ_ADVERTISE_CA_NAMES) applies to this server's own TLS listener, "
        "not behind a proxy (--proxy-cert-header)")


@pytest.mark.usefixtures("clean_environment")
def test_the_option_is_off_by_default_and_reaches_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings({}).advertise_ca_names is False
    settings = _settings({"advertise_ca_names": True, "trust_anchors": ["ca.pem"]})
    for name, value in settings.to_environment().items():
        monkeypatch.setenv(name, value)
    assert _settings({}).advertise_ca_names is True
