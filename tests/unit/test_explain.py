"""``authz explain`` (issue 13, part 4): each failure prints the failed step with the values it
compared and the change that fixes it; exit status 0 only when the certificate would
authenticate; and the verdict is the token endpoint's own."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.certificates.chain import ChainValidator
from authz.certificates.check import check_client_certificate
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected
from authz.cli.main import main
from authz.clients.directory import ClientDirectory
from authz.clients.model import jwk_for_certificate
from authz.storage.sqlite import SQLiteRecordStore
from tests.support.pki import NOW, Issued, TestCA, self_signed


@dataclass
class Setup:
    data_dir: Path
    anchors: Path
    files: dict[str, tuple[Path, Path]]
    issued: dict[str, Issued]
    root: TestCA
    issuing: TestCA


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    tmp = tmp_path_factory.mktemp("explain")
    root = TestCA("CN=Explain Root CA,O=authz tests")
    issuing = TestCA("CN=Explain Issuing CA,O=authz tests", parent=root)
    issued = {
        "good": root.issue("CN=svc,O=Example", san_dns=["svc.example"]),
        "other-dn": root.issue("CN=other,O=Example", san_dns=["other.example", "www.other.example"]),
        "expired": root.issue("CN=svc,O=Example", not_before=NOW - datetime.timedelta(days=30),
                              not_after=NOW - datetime.timedelta(days=2)),
        "server-auth": root.issue("CN=svc,O=Example", eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "untrusted": TestCA("CN=Elsewhere CA,O=else").issue("CN=svc,O=Example"),
        "self-signed": self_signed("CN=svc,O=Example"),
        "registered-self-signed": self_signed("CN=mine,O=Example"),
        "via-intermediate": issuing.issue("CN=svc,O=Example"),
    }
    files = {name: certificate.write(tmp / "pki", name) for name, certificate in issued.items()}
    # The leaf alone, its intermediate apart (files[...] holds the chain after the leaf).
    files["via-intermediate"] = (_write(tmp / "pki" / "leaf-only.crt", issued["via-intermediate"].pem),
                                 files["via-intermediate"][1])
    anchors = root.write(tmp / "anchors.pem")
    data_dir = tmp / "data"

    async def register() -> None:
        store = SQLiteRecordStore(data_dir)
        await store.open()
        clients = ClientDirectory(store)
        for metadata in (
            {"client_id": "svc", "token_endpoint_auth_method": "tls_client_auth",
             "tls_client_auth_subject_dn": "CN=svc,O=Example"},
            {"client_id": "dns", "token_endpoint_auth_method": "tls_client_auth",
             "tls_client_auth_san_dns": "svc.example"},
            {"client_id": "mine", "token_endpoint_auth_method": "self_signed_tls_client_auth",
             "jwks": {"keys": [jwk_for_certificate(issued["registered-self-signed"].cert)]}},
        ):
            await clients.register(metadata)
        await store.close()

    data_dir.mkdir()
    asyncio.run(register())
    return Setup(data_dir, anchors, files, issued, root, issuing)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import os

    for name in [n for n in os.environ if n.startswith("AUTHZ_")]:
        monkeypatch.delenv(name)
    yield


def _explain(setup: Setup, cert: str, client_id: str, *extra: str, anchors: bool = True) -> tuple[int, str]:
    args = ["explain", "--cert", str(setup.files[cert][0]), "--client-id", client_id,
            "--data-dir", str(setup.data_dir), *(["--trust-anchor", str(setup.anchors)] if anchors else []), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _line(output: str, start: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.strip().startswith(start))


def test_a_certificate_that_authenticates_exits_0_with_each_step(setup: Setup) -> None:
    code, out = _explain(setup, "good", "svc", "--key", str(setup.files["good"][1]))
    assert code == 0, out
    assert _line(out, "ok    chain").endswith("built to the trust anchor CN=Explain Root CA,O=authz tests")
    assert f"(in {setup.anchors})" in _line(out, "anchor sha256")
    assert _line(out, "ok    validity").startswith("ok    validity    valid now")
    assert "clientAuth is allowed" in _line(out, "ok    eku")
    assert "not checked" in _line(out, "skip  revocation")
    assert "matches the registered tls_client_auth_subject_dn" in _line(out, "ok    subject")
    assert _line(out, "ok    key")
    assert f"thumbprint (cnf x5t#S256): {PresentedCertificate.from_der([setup.issued['good'].der]).x5t_s256}" in out
    assert "verdict: the certificate authenticates the client" in out and "fix:" not in out


def test_a_wrong_dn_shows_both_side_by_side_and_the_update_that_fixes_it(setup: Setup) -> None:
    code, out = _explain(setup, "other-dn", "svc")
    assert code == 1
    assert "no match for the registered tls_client_auth_subject_dn" in _line(out, "FAIL  subject")
    assert _line(out, "registered") == "registered  CN=svc,O=Example"
    assert _line(out, "presented") == "presented   CN=other,O=Example"
    assert "verdict: refused: the certificate subject DN does not match the one registered for this client" in out
    assert "fix: register what the certificate carries (authz clients update svc --subject-dn " \
           "CN=other,O=Example), or issue a certificate with the subject DN 'CN=svc,O=Example'" in out


def test_a_san_mismatch_lists_what_the_certificate_carries(setup: Setup) -> None:
    code, out = _explain(setup, "other-dn", "dns")
    assert code == 1
    assert _line(out, "presented") == "presented   other.example | www.other.example"
    assert "authz clients update dns --san-dns other.example or authz clients update dns --san-dns " \
           "www.other.example" in out


def test_an_expired_certificate(setup: Setup) -> None:
    code, out = _explain(setup, "expired", "svc")
    assert code == 1
    assert _line(out, "FAIL  validity").startswith("FAIL  validity    expired on ")
    expired = setup.issued["expired"].cert.not_valid_after_utc
    assert f"fix: renew the certificate: it expired on {expired:%Y-%m-%d %H:%M} UTC" in out
    assert "not reached" in _line(out, "--    subject")


def test_a_certificate_without_client_auth(setup: Setup) -> None:
    code, out = _explain(setup, "server-auth", "svc")
    assert code == 1
    assert _line(out, "extended key usage") == "extended key usage  serverAuth"
    assert "FAIL  eku" in out and "ok    validity" in out
    assert "fix: issue the certificate with extendedKeyUsage clientAuth (it allows: serverAuth)" in out


def test_a_certificate_from_an_untrusted_ca(setup: Setup) -> None:
    code, out = _explain(setup, "untrusted", "svc")
    assert code == 1
    assert "the client certificate chain does not lead to a trusted anchor" in _line(out, "FAIL  chain")
    assert _line(out, "issuer  ").endswith("CN=Elsewhere CA,O=else")
    assert f"fix: its issuer (CN=Elsewhere CA,O=else) leads to no trust anchor (anchors: {setup.anchors}): add " \
           "the CA that issued it with --trust-anchor" in out


def test_a_self_signed_certificate_for_a_tls_client_auth_client(setup: Setup) -> None:
    code, out = _explain(setup, "self-signed", "svc")
    assert code == 1
    assert "verdict: refused: the certificate is self-signed; this client uses tls_client_auth" in out
    assert f"authz clients add svc --replace --auth-method self_signed_tls_client_auth --cert " \
           f"{setup.files['self-signed'][0]}" in out


def test_a_key_that_is_not_the_certificates(setup: Setup) -> None:
    code, out = _explain(setup, "good", "svc", "--key", str(setup.files["other-dn"][1]))
    assert code == 1
    assert "is not the certificate's private key: the TLS handshake would fail" in _line(out, "FAIL  key")
    assert "ok    subject" in out  # the check itself passes: only the pair is wrong
    assert "verdict: refused: the TLS handshake would fail" in out
    assert "fix: configure the client with the private key this certificate was issued for" in out


def test_the_intermediates_the_client_sends(setup: Setup, tmp_path: Path) -> None:
    code, out = _explain(setup, "via-intermediate", "svc")
    assert code == 1 and "FAIL  chain" in out
    chain = _write(tmp_path / "chain.pem", setup.issuing.pem)
    code, out = _explain(setup, "via-intermediate", "svc", "--chain", str(chain))
    assert code == 0, out
    assert _line(out, "path").endswith(
        "CN=svc,O=Example <- CN=Explain Issuing CA,O=authz tests <- CN=Explain Root CA,O=authz tests")
    assert "1 intermediate(s)" in _line(out, "sent with it")


def test_self_signed_clients(setup: Setup) -> None:
    code, out = _explain(setup, "registered-self-signed", "mine")
    assert code == 0, out
    assert "skip  validity" in out and "ok    registered" in out
    code, out = _explain(setup, "self-signed", "mine")
    assert code == 1
    registered = PresentedCertificate.from_der([setup.issued["registered-self-signed"].der]).x5t_s256
    assert _line(out, "registered  ") == f"registered  {registered}"
    assert f"fix: register this certificate beside the client's others: authz clients update mine --add-cert " \
           f"{setup.files['self-signed'][0]}" in out


def test_an_unknown_client_and_unusable_questions(setup: Setup, tmp_path: Path) -> None:
    code, out = _explain(setup, "good", "nobody")
    assert code == 1 and "verdict: refused: unknown client_id" in out
    assert "FAIL  client      no client 'nobody' is registered" in out
    result = CliRunner().invoke(main, ["explain", "--cert", str(setup.files["good"][0]), "--client-id", "svc",
                                       "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no store at" in result.output
    result = CliRunner().invoke(main, ["explain", "--cert", str(setup.files["good"][1]), "--client-id", "svc",
                                       "--data-dir", str(setup.data_dir)])
    assert result.exit_code == 2 and "holds a private key, not a certificate" in result.output


def test_the_trust_configuration_comes_from_serves_settings(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _explain(setup, "good", "svc", anchors=False)[0] == 1  # no anchors: nothing leads anywhere
    monkeypatch.setenv("AUTHZ_TRUST_ANCHORS", str(setup.anchors))
    assert _explain(setup, "good", "svc", anchors=False)[0] == 0
    monkeypatch.setenv("AUTHZ_TRUST_ANCHORS", str(setup.files["good"][0]))  # a leaf: serve refuses it too
    code, out = _explain(setup, "good", "svc", anchors=False)
    assert code == 2 and "is not a CA" in out


@pytest.mark.parametrize(("cert", "client_id"), [
    ("good", "svc"), ("other-dn", "svc"), ("other-dn", "dns"), ("expired", "svc"), ("server-auth", "svc"),
    ("untrusted", "svc"), ("self-signed", "svc"), ("registered-self-signed", "mine"), ("self-signed", "mine"),
])
def test_the_verdict_is_the_token_endpoints(setup: Setup, cert: str, client_id: str) -> None:
    """The endpoint's call (no trace, remembered verdicts) and explain's agree."""

    async def client() -> object:
        store = SQLiteRecordStore(setup.data_dir)
        await store.open()
        try:
            return await ClientDirectory(store).get(client_id)
        finally:
            await store.close()

    registered = asyncio.run(client())
    validator = ChainValidator([setup.root.cert])
    presented = PresentedCertificate.from_der([setup.issued[cert].der])
    try:
        check_client_certificate(registered, presented, validator)  # type: ignore[arg-type]
        expected = "verdict: the certificate authenticates the client"
    except CertificateRejected as rejected:
        expected = f"verdict: refused: {rejected.public_description}"
    assert expected in _explain(setup, cert, client_id)[1]
