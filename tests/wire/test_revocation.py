"""Revocation checking over real TLS, against a CA run with the openssl command line: its
certificates issued by ``openssl ca``, its CRLs made by ``openssl ca -gencrl`` and served by a
local HTTP server (the distribution points the certificates name), its OCSP answers given by
``openssl ocsp`` from the same database. Each policy has a server of its own.

The PKI: a root (a trust anchor beside the suite's), an issuing CA under it, a second issuing CA
the root revoked, a third whose leaves name no distribution point (its CRL is a ``--crl`` file),
and an impostor CA with the issuing CA's name and another key (its CRL: a bad signature)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authz.certificates.rejection import RejectionReason
from tests.support.http_files import RevocationHTTPServer
from tests.support.openssl_ca import OCSPResponder, OpenSSLCA
from tests.support.server import RunningServer, authz_cli, authz_cli_all, free_port
from tests.wire.client import WireClient, WireResponse, assert_invalid_client, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import Credentials, WirePKI

pytestmark = pytest.mark.wire

ORG = "O=authz tests"


@dataclass
class RevocationPKI:
    root: OpenSSLCA
    issuing: OpenSSLCA
    file_ca: OpenSSLCA
    crl_file: Path
    http: RevocationHTTPServer
    credentials: dict[str, Credentials]
    responders: list[OCSPResponder]

    def __getitem__(self, name: str) -> Credentials:
        return self.credentials[name]


def _credentials(ca: OpenSSLCA, name: str, **urls: str) -> Credentials:
    cert, key = ca.issue(name, f"CN={name},{ORG}", **urls)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    return Credentials(cert, key, leaf.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def revocation_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocationPKI]:
    directory = tmp_path_factory.mktemp("revocation-pki")
    (directory / "www").mkdir()
    http = RevocationHTTPServer(directory / "www")
    root_ocsp, issuing_ocsp, down = (f"http://127.0.0.1:{free_port()}" for _ in range(3))
    published_by_root = {"crl_url": f"{http.url}/root.crl", "ocsp_url": root_ocsp}
    root = OpenSSLCA(directory / "root", f"CN=Revocation Wire Root,{ORG}")
    issuing = OpenSSLCA(directory / "issuing", f"CN=Revocation Wire Issuing CA,{ORG}", parent=root,
                        **published_by_root)
    revoked_ca = OpenSSLCA(directory / "revoked-ca", f"CN=Revocation Wire Revoked CA,{ORG}", parent=root,
                           **published_by_root)
    file_ca = OpenSSLCA(directory / "file-ca", f"CN=Revocation Wire File CA,{ORG}", parent=root,
                        **published_by_root)
    impostor = OpenSSLCA(directory / "impostor", f"CN=Revocation Wire Issuing CA,{ORG}")
    credentials = {
        "crl-good": _credentials(issuing, "crl-good", crl_url=f"{http.url}/issuing.crl"),
        "crl-revoked": _credentials(issuing, "crl-revoked", crl_url=f"{http.url}/issuing.crl"),
        "crl-under-revoked-ca": _credentials(revoked_ca, "crl-under-revoked-ca",
                                             crl_url=f"{http.url}/revoked-ca.crl"),
        "crl-stale": _credentials(issuing, "crl-stale", crl_url=f"{http.url}/issuing-stale.crl"),
        "crl-forged": _credentials(issuing, "crl-forged", crl_url=f"{http.url}/issuing-forged.crl"),
        "crl-down": _credentials(issuing, "crl-down", crl_url=f"{down}/issuing.crl"),
        "file-client": _credentials(file_ca, "file-client"),  # no distribution point: the --crl file
        "ocsp-good": _credentials(issuing, "ocsp-good", ocsp_url=issuing_ocsp),
        "ocsp-revoked": _credentials(issuing, "ocsp-revoked", ocsp_url=issuing_ocsp),
        "ocsp-down": _credentials(issuing, "ocsp-down", ocsp_url=down),
    }
    root.revoke(revoked_ca.cert, "CACompromise")
    issuing.revoke(credentials["crl-revoked"].cert, "keyCompromise")
    issuing.revoke(credentials["ocsp-revoked"].cert, "keyCompromise")
    www = directory / "www"
    root.gencrl(www / "root.crl", der=True)
    issuing.gencrl(www / "issuing.crl", der=True)
    revoked_ca.gencrl(www / "revoked-ca.crl", der=True)
    # Signed by the issuing CA, but its nextUpdate passed long ago.
    issuing.gencrl(www / "issuing-stale.crl", der=True, last_update="20200101000000Z",
                   next_update="20200102000000Z")
    # The issuing CA's name, another key.
    impostor.gencrl(www / "issuing-forged.crl", der=True)
    crl_file = file_ca.gencrl(directory / "file-ca.crl")
    responders = [root.ocsp_responder(int(root_ocsp.rsplit(":", 1)[1]), directory / "root-ocsp.log"),
                  issuing.ocsp_responder(int(issuing_ocsp.rsplit(":", 1)[1]), directory / "issuing-ocsp.log")]
    yield RevocationPKI(root, issuing, file_ca, crl_file, http, credentials, responders)
    for responder in responders:
        responder.stop()
    http.stop()


@pytest.fixture(scope="module")
def revocation_data(revocation_pki: RevocationPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one tls_client_auth client per certificate, registered by its subject DN."""
    directory = tmp_path_factory.mktemp("revocation-data")
    authz_cli_all([["clients", "add", name, "--auth-method", "tls_client_auth", "--subject-dn", f"CN={name},{ORG}"]
                   for name in revocation_pki.credentials], data_dir=directory)
    return directory


def _server(start: StartServer, data_dir: Path, pki: RevocationPKI, *options: str) -> RunningServer:
    return start(data_dir, ["--trust-anchor", str(pki.root.cert), "--revocation-fetch-timeout", "2",
                            "--revocation-max-wait", "3", *options])


@pytest.fixture(scope="module")
def crl_hard(start_wire_server: StartServer, revocation_data: Path, revocation_pki: RevocationPKI,
             server: RunningServer) -> Iterator[RunningServer]:
    # After ``server``: the store's signing key is created once, by the suite's first server.
    started = _server(start_wire_server, revocation_data, revocation_pki, "--revocation-check", "crl",
                      "--crl", str(revocation_pki.crl_file))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def crl_soft(start_wire_server: StartServer, revocation_data: Path, revocation_pki: RevocationPKI,
             crl_hard: RunningServer) -> Iterator[RunningServer]:
    started = _server(start_wire_server, revocation_data, revocation_pki, "--revocation-check", "crl",
                      "--revocation-policy", "soft-fail")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def ocsp_hard(start_wire_server: StartServer, revocation_data: Path, revocation_pki: RevocationPKI,
              crl_hard: RunningServer) -> Iterator[RunningServer]:
    started = _server(start_wire_server, revocation_data, revocation_pki, "--revocation-check", "ocsp")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def ocsp_soft(start_wire_server: StartServer, revocation_data: Path, revocation_pki: RevocationPKI,
              crl_hard: RunningServer) -> Iterator[RunningServer]:
    started = _server(start_wire_server, revocation_data, revocation_pki, "--revocation-check", "ocsp",
                      "--revocation-policy", "soft-fail")
    yield started
    started.stop()


def _token(via: str, server: RunningServer, pki: WirePKI, credentials: Credentials, client_id: str) -> WireResponse:
    return WireClient(via, server, pki.server_ca).token(credentials, client_id)


def _logged(server: RunningServer, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("event") == event
            and all(e.get(k) == v for k, v in fields.items())]


# --- CRLs, hard-fail --------------------------------------------------------------------------

def test_crl_a_good_leaf_gets_a_token(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                      crl_hard: RunningServer) -> None:
    assert_token_response(_token(via, crl_hard, pki, revocation_pki["crl-good"], "crl-good"))
    http = revocation_pki.http.url
    assert _logged(crl_hard, "crl_loaded", source=f"{http}/issuing.crl", entries=2)
    assert _logged(crl_hard, "crl_loaded", source=f"{http}/root.crl", entries=1)  # the intermediate's
    # Fetched once, whatever the number of requests.
    assert revocation_pki.http.requests["/issuing.crl"] == 1


def test_crl_a_revoked_leaf_is_refused(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                       crl_hard: RunningServer) -> None:
    credentials = revocation_pki["crl-revoked"]
    response = _token(via, crl_hard, pki, credentials, "crl-revoked")
    assert_invalid_client(response, RejectionReason.REVOKED, "crl-revoked")
    assert response.json()["error_description"] == "the client certificate has been revoked"
    [failure] = response.failures()
    assert (failure["revocation_reason"], failure["revocation_reason_code"]) == ("key_compromise", 1)
    assert failure["revocation_source"] == f"CRL {revocation_pki.http.url}/issuing.crl"
    [revoked] = _logged(crl_hard, "client_certificate_revoked", cert_sha256=credentials.sha256_hex)
    assert revoked["revoked_issuer"] == f"CN=Revocation Wire Issuing CA,{ORG}"
    assert revoked["revocation_reason_code"] == 1 and revoked["revoked_certificate"] == "leaf"


def test_crl_a_leaf_of_a_revoked_intermediate_is_refused(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                                         crl_hard: RunningServer) -> None:
    response = _token(via, crl_hard, pki, revocation_pki["crl-under-revoked-ca"], "crl-under-revoked-ca")
    assert_invalid_client(response, RejectionReason.CA_REVOKED, "crl-under-revoked-ca")
    [failure] = response.failures()
    assert failure["revoked_certificate"] == "intermediate 1"
    assert (failure["revocation_reason"], failure["revocation_reason_code"]) == ("ca_compromise", 2)


@pytest.mark.parametrize(("name", "why"), [("crl-stale", "stale"), ("crl-forged", "bad_signature"),
                                           ("crl-down", None)])
def test_crl_hard_fail_without_a_usable_crl(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                            crl_hard: RunningServer, name: str, why: str | None) -> None:
    response = _token(via, crl_hard, pki, revocation_pki[name], name)
    assert_invalid_client(response, RejectionReason.REVOCATION_UNKNOWN, name)
    [failure] = response.failures()
    assert failure["revocation_policy"] == "hard-fail"
    url = revocation_pki[name].cert  # (only for the message below)
    if why is not None:
        assert _logged(crl_hard, "crl_rejected", why=why), f"no crl_rejected ({why}) for {url}"
    else:
        assert any("issuing.crl" in e["source"] for e in _logged(crl_hard, "crl_fetch_failed"))


def test_crl_file_is_reloaded_when_it_changes(pki: WirePKI, revocation_pki: RevocationPKI,
                                              crl_hard: RunningServer) -> None:
    # Once (not per TLS client): the file changes in between.
    credentials = revocation_pki["file-client"]
    source = str(revocation_pki.crl_file)
    assert_token_response(_token("curl", crl_hard, pki, credentials, "file-client"))
    assert len(_logged(crl_hard, "crl_loaded", source=source)) == 1
    revocation_pki.file_ca.revoke(credentials.cert, "superseded")
    revocation_pki.file_ca.gencrl(revocation_pki.crl_file)
    crl_hard.wait_for_log(f'"source":"{source}"', count=2)
    [reloaded] = _logged(crl_hard, "crl_loaded", source=source, entries=1)
    assert reloaded["crl_number"] == 2
    response = _token("httpx", crl_hard, pki, credentials, "file-client")
    assert_invalid_client(response, RejectionReason.REVOKED, "file-client")
    [failure] = response.failures()
    assert (failure["revocation_source"], failure["revocation_reason_code"]) == (f"CRL {source}", 4)


# --- CRLs, soft-fail ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["crl-stale", "crl-down"])
def test_crl_soft_fail_accepts_and_logs(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                        crl_soft: RunningServer, name: str) -> None:
    credentials = revocation_pki[name]
    response = _token(via, crl_soft, pki, credentials, name)
    assert_token_response(response)
    unknown = _logged(crl_soft, "revocation_status_unknown", cert_sha256=credentials.sha256_hex)
    assert unknown and unknown[0]["policy"] == "soft-fail" and unknown[0]["outcome"] == "accepted"


def test_crl_soft_fail_still_refuses_a_revoked_leaf(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                                    crl_soft: RunningServer) -> None:
    response = _token(via, crl_soft, pki, revocation_pki["crl-revoked"], "crl-revoked")
    assert_invalid_client(response, RejectionReason.REVOKED, "crl-revoked")


# --- OCSP -------------------------------------------------------------------------------------

def test_ocsp_a_good_leaf_gets_a_token(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                       ocsp_hard: RunningServer) -> None:
    credentials = revocation_pki["ocsp-good"]
    assert_token_response(_token(via, ocsp_hard, pki, credentials, "ocsp-good"))
    checked = _logged(ocsp_hard, "ocsp_checked", status="good")
    assert {e["certificate"] for e in checked} == {"leaf", "intermediate 1"}  # answers kept: once each
    assert len(checked) == 2


def test_ocsp_a_revoked_leaf_is_refused(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                        ocsp_hard: RunningServer) -> None:
    response = _token(via, ocsp_hard, pki, revocation_pki["ocsp-revoked"], "ocsp-revoked")
    assert_invalid_client(response, RejectionReason.REVOKED, "ocsp-revoked")
    [failure] = response.failures()
    assert failure["revocation_reason_code"] == 1
    assert failure["revocation_source"] == f"OCSP {revocation_pki.responders[1].url}"


def test_ocsp_hard_fail_when_the_responder_is_down(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                                   ocsp_hard: RunningServer) -> None:
    response = _token(via, ocsp_hard, pki, revocation_pki["ocsp-down"], "ocsp-down")
    assert_invalid_client(response, RejectionReason.REVOCATION_UNKNOWN, "ocsp-down")
    assert _logged(ocsp_hard, "ocsp_failed", certificate="leaf")


def test_ocsp_soft_fail_when_the_responder_is_down(via: str, pki: WirePKI, revocation_pki: RevocationPKI,
                                                   ocsp_soft: RunningServer) -> None:
    credentials = revocation_pki["ocsp-down"]
    assert_token_response(_token(via, ocsp_soft, pki, credentials, "ocsp-down"))
    assert _logged(ocsp_soft, "revocation_status_unknown", cert_sha256=credentials.sha256_hex)


# --- authz explain: the same check, with the same revocation data -----------------------------

def _explain(pki: RevocationPKI, data_dir: Path, name: str, *options: str) -> tuple[int, str]:
    credentials = pki[name]
    result = authz_cli("explain", "--cert", str(credentials.cert), "--client-id", name,
                       "--trust-anchor", str(pki.root.cert), "--revocation-fetch-timeout", "2", *options,
                       data_dir=data_dir, check=False)
    return result.returncode, result.stdout


def _step(output: str, name: str) -> str:
    return next(line.split(None, 2)[0] + " " + line.split(None, 2)[2] for line in output.splitlines()
                if line.split()[1:2] == [name])


@pytest.mark.parametrize(("name", "mode"), [("crl-good", "crl"), ("ocsp-good", "ocsp"), ("crl-good", "crl+ocsp")])
def test_explain_fetches_what_the_server_would_and_passes_a_good_leaf(
        revocation_pki: RevocationPKI, revocation_data: Path, name: str, mode: str) -> None:
    code, out = _explain(revocation_pki, revocation_data, name, "--revocation-check", mode)
    assert code == 0, out
    assert _step(out, "revocation").startswith("ok neither the certificate nor an intermediate")
    assert f"check   {mode}" in out and "policy  hard-fail" in out


@pytest.mark.parametrize(("name", "mode", "extra", "fix"), [
    ("crl-revoked", "crl", (), "fix: the certificate is revoked: issue the client a new certificate"),
    ("ocsp-revoked", "ocsp", (), "fix: the certificate is revoked: issue the client a new certificate"),
    ("crl-under-revoked-ca", "crl", (), "fix: a CA of its chain is revoked (intermediate 1 serial "),
    ("crl-down", "crl", (), "fix: no fresh revocation data (hard-fail: leaf (serial "),
    ("crl-stale", "crl", (), "fix: no fresh revocation data (hard-fail: leaf (serial "),
])
def test_explain_refuses_what_the_server_refuses(revocation_pki: RevocationPKI, revocation_data: Path,
                                                 name: str, mode: str, extra: tuple[str, ...], fix: str) -> None:
    code, out = _explain(revocation_pki, revocation_data, name, "--revocation-check", mode, *extra)
    assert code == 1, out
    assert _step(out, "revocation").startswith("FAIL ")
    assert any(line.startswith(fix) for line in out.splitlines()), out


def test_explain_reads_the_crl_files(revocation_pki: RevocationPKI, revocation_data: Path, tmp_path: Path) -> None:
    # A CA of its own (other tests revoke in the file CA's database and count its CRL's
    # entries), whose certificates name no distribution point: only a --crl file answers.
    name = "explain-file-client"
    ca = OpenSSLCA(tmp_path / "ca", f"CN=Explain File CA,{ORG}", parent=revocation_pki.root,
                   crl_url=f"{revocation_pki.http.url}/root.crl")
    credentials = _credentials(ca, name)
    revocation_pki.credentials[name] = credentials
    authz_cli("clients", "add", name, "--auth-method", "tls_client_auth", "--subject-dn", f"CN={name},{ORG}",
              data_dir=revocation_data)
    code, out = _explain(revocation_pki, revocation_data, name, "--revocation-check", "crl")
    assert code == 1 and "fix: no fresh revocation data" in out, out
    before = ca.gencrl(tmp_path / "before.crl")
    code, out = _explain(revocation_pki, revocation_data, name, "--revocation-check", "crl", "--crl", str(before))
    assert code == 0, out
    ca.revoke(credentials.cert, "superseded")
    after = ca.gencrl(tmp_path / "after.crl")
    code, out = _explain(revocation_pki, revocation_data, name, "--revocation-check", "crl", "--crl", str(after))
    assert code == 1, out
    assert f"revoked (reason superseded) according to CRL {after}" in _step_detail(out), out


def _step_detail(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("detail"))


def test_explain_soft_fail_accepts_as_the_server_does(revocation_pki: RevocationPKI, revocation_data: Path) -> None:
    code, out = _explain(revocation_pki, revocation_data, "crl-down", "--revocation-check", "crl",
                         "--revocation-policy", "soft-fail")
    assert code == 0, out
    assert "policy  soft-fail" in out


def test_explain_without_revocation_checking_says_so(revocation_pki: RevocationPKI, revocation_data: Path) -> None:
    code, out = _explain(revocation_pki, revocation_data, "crl-revoked")
    assert code == 0, out
    assert _step(out, "revocation") == "skip not checked: revocation checking is off (--revocation-check)"
