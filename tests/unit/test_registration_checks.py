"""Mistakes caught at registration (issue 13, part 4), in the CLI and the registration API:
a DN as OpenSSL prints it is refused with the RFC 4514 string to use; options of the other
method name the method they belong to; a self-signed certificate that has expired or soon
expires is a warning, or refused on request."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from authz.app import create_app
from authz.certificates.distinguished_name import DistinguishedName
from authz.certificates.subject import InvalidSubject, subject_matcher
from authz.cli.main import main
from authz.clients.model import InvalidClientMetadata, RegisteredClient, jwk_for_certificate
from authz.clients.review import review_registration
from authz.context import ServerContext
from authz.registration.credentials import RegistrationCredentials
from authz.settings import Settings
from tests.fuzz.asgi import exchange
from tests.support.pki import NOW, Issued, TestCA, self_signed

# Subjects in certificate order (most general first), as cryptography builds them from an
# RFC 4514 string (which lists them the other way round).
SUBJECTS = [
    "CN=svc,O=Example,C=US",
    "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH",
    "CN=batch+UID=7,OU=jobs,DC=example,DC=org",
]


def _openssl_subject(issued: Issued, tmp_path: Path, *nameopt: str) -> str:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(issued.pem)
    result = subprocess.run(["openssl", "x509", "-noout", "-subject", *nameopt, "-in", str(cert)],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def root() -> TestCA:
    return TestCA("CN=Registration Root,O=authz tests")


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("nameopt", [(), ("-nameopt", "compat"), ("-nameopt", "utf8")],
                         ids=["default-one-line", "slash", "utf8-unescaped"])
@pytest.mark.parametrize("label", [True, False], ids=["with-label", "without"])
def test_a_dn_as_openssl_prints_it_is_refused_with_the_rfc4514_string(
        root: TestCA, tmp_path: Path, subject: str, nameopt: tuple[str, ...], label: bool) -> None:
    issued = root.issue(subject)
    printed = _openssl_subject(issued, tmp_path, *nameopt)
    assert printed.startswith("subject=")
    value = printed if label else printed.removeprefix("subject=").strip()
    with pytest.raises(InvalidSubject) as info:
        subject_matcher("tls_client_auth_subject_dn", value)
    message = str(info.value)
    suggested = message.split("use '", 1)[1].split("' (as openssl", 1)[0]
    # The suggestion names the certificate's own subject, the DN openssl's RFC 2253 output names.
    assert DistinguishedName.parse(suggested).matches(DistinguishedName.from_name(issued.cert.subject))
    rfc2253 = _openssl_subject(issued, tmp_path, "-nameopt", "RFC2253").removeprefix("subject=")
    assert DistinguishedName.parse(suggested).matches(DistinguishedName.parse(rfc2253))
    assert "RFC 4514 lists the most specific RDN first" in message


def test_the_rfc4514_output_of_openssl_is_accepted(root: TestCA, tmp_path: Path) -> None:
    for subject in SUBJECTS:
        issued = root.issue(subject)
        value = _openssl_subject(issued, tmp_path, "-nameopt", "RFC2253").removeprefix("subject=")
        matcher = subject_matcher("tls_client_auth_subject_dn", value)
        assert matcher.matches(type("P", (), {"subject_dn": DistinguishedName.from_name(issued.cert.subject)})())  # type: ignore[arg-type]


def test_no_suggestion_that_is_no_dn_either() -> None:
    with pytest.raises(InvalidSubject) as info:
        subject_matcher("tls_client_auth_subject_dn", "/Q=1/CN=2")
    assert "use '" not in str(info.value) and "unknown attribute type '/Q'" in str(info.value)


@pytest.mark.parametrize("value", ["CN = svc, O = Example", "CN=svc , O = Example, C = US", "CN = svc"])
def test_spaces_in_a_dn_in_rfc4514_order_are_tolerated(value: str) -> None:
    subject_matcher("tls_client_auth_subject_dn", value)


def test_the_registration_api_path_refuses_it_too() -> None:
    """RFC 7591 metadata goes through RegisteredClient.from_metadata, as the CLI's does."""
    with pytest.raises(InvalidClientMetadata, match="use 'CN=svc,O=Example,C=US'"):
        RegisteredClient.from_metadata({"client_id": "x", "token_endpoint_auth_method": "tls_client_auth",
                                        "tls_client_auth_subject_dn": "C = US, O = Example, CN = svc"})


def test_a_dn_listing_the_most_general_rdn_first_is_a_warning() -> None:
    client = RegisteredClient.from_metadata({"client_id": "x", "token_endpoint_auth_method": "tls_client_auth",
                                             "tls_client_auth_subject_dn": "C=US,O=Example,CN=svc"})
    [warning] = review_registration(client)
    assert "lists the most general RDN first" in warning and "register 'CN=svc,O=Example,C=US'" in warning
    right = RegisteredClient.from_metadata({**client.metadata, "tls_client_auth_subject_dn": "CN=svc,O=Example,C=US"})
    assert review_registration(right) == []


# --- the CLI --------------------------------------------------------------------------------


def _cli(*args: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in [n for n in os.environ if n.startswith("AUTHZ_")]:
        monkeypatch.delenv(name)
    return tmp_path / "data"


def test_cli_refuses_an_openssl_dn_with_the_string_to_use(data_dir: Path) -> None:
    code, out = _cli("clients", "add", "svc", "--auth-method", "tls_client_auth", "--subject-dn",
                     "/C=US/O=Example/CN=svc", data_dir=data_dir)
    assert code == 1
    assert "is written in OpenSSL's slash form" in out and "use 'CN=svc,O=Example,C=US'" in out


def test_cli_names_the_method_a_cert_belongs_to(data_dir: Path, tmp_path: Path) -> None:
    cert, _ = self_signed("CN=mine,O=Example").write(tmp_path, "mine")
    code, out = _cli("clients", "add", "svc", "--auth-method", "tls_client_auth", "--cert", str(cert),
                     data_dir=data_dir)
    assert code == 2
    assert "--cert belongs to self_signed_tls_client_auth" in out and "this client uses tls_client_auth" in out
    assert "(this certificate's subject: --subject-dn CN=mine,O=Example)" in out


def test_cli_names_the_method_subject_options_belong_to(data_dir: Path, tmp_path: Path) -> None:
    cert, _ = self_signed().write(tmp_path, "mine")
    code, out = _cli("clients", "add", "mine", "--auth-method", "self_signed_tls_client_auth", "--cert", str(cert),
                     "--san-dns", "mine.example", data_dir=data_dir)
    assert code == 2
    assert "--san-dns belong(s) to tls_client_auth" in out
    assert "this client uses self_signed_tls_client_auth, which registers its certificates themselves" in out


def test_cli_update_names_the_method_too(data_dir: Path, tmp_path: Path) -> None:
    cert, _ = self_signed().write(tmp_path, "mine")
    assert _cli("clients", "add", "svc", "--auth-method", "tls_client_auth", "--subject-dn", "CN=svc",
                data_dir=data_dir)[0] == 0
    assert _cli("clients", "add", "mine", "--auth-method", "self_signed_tls_client_auth", "--cert", str(cert),
                data_dir=data_dir)[0] == 0
    code, out = _cli("clients", "update", "svc", "--add-cert", str(cert), data_dir=data_dir)
    assert code == 2 and "--add-cert belongs to self_signed_tls_client_auth" in out
    code, out = _cli("clients", "update", "mine", "--subject-dn", "CN=mine", data_dir=data_dir)
    assert code == 2 and "--subject-dn belong(s) to tls_client_auth" in out


def _expiring(days: float) -> Issued:
    return self_signed("CN=mine,O=Example", not_before=NOW - datetime.timedelta(days=400),
                       not_after=NOW + datetime.timedelta(days=days))


def test_cli_warns_of_an_expired_or_expiring_certificate_and_refuses_expired_on_request(
        data_dir: Path, tmp_path: Path) -> None:
    expired, _ = _expiring(-3).write(tmp_path / "expired", "mine")
    soon, _ = _expiring(10).write(tmp_path / "soon", "mine")
    code, out = _cli("clients", "add", "mine", "--auth-method", "self_signed_tls_client_auth", "--cert", str(soon),
                     data_dir=data_dir)
    assert code == 0
    assert "warning: the registered certificate x5t#S256=" in out and "(in 9 day(s))" in out
    code, out = _cli("clients", "update", "mine", "--add-cert", str(expired), data_dir=data_dir)
    assert code == 0 and "expired on" in out and "this server still accepts it" in out
    code, out = _cli("clients", "update", "mine", "--remove-cert", str(soon), "--refuse-expired", data_dir=data_dir)
    assert code == 1 and "expired certificates are refused here" in out
    code, out = _cli("clients", "add", "other", "--auth-method", "self_signed_tls_client_auth", "--cert",
                     str(expired), "--refuse-expired", data_dir=data_dir)
    assert code == 1 and "expired certificates are refused here" in out
    assert "other" not in _cli("clients", "list", data_dir=data_dir)[1]


# --- the registration API ---------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, asyncio.Runner, str]]:
    refuse = getattr(request, "param", False)
    settings = Settings(data_dir=tmp_path / "data", issuer="https://as.test", log_level="error",
                        refuse_expired_certificates=refuse)
    with asyncio.Runner() as runner:
        context = ServerContext.build(settings)
        app = create_app(settings, context)
        runner.run(context.start())
        try:
            token = runner.run(RegistrationCredentials(context.store).create_initial_token(
                created_by="test", expires_at=None, single_use=False))
            yield app, runner, token
        finally:
            runner.run(context.stop())


def _register(api: tuple[Any, asyncio.Runner, str], metadata: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    app, runner, token = api
    answer = runner.run(exchange(app, method="POST", path="/register", chunks=[json.dumps(metadata).encode()],
                                 headers=[(b"content-type", b"application/json"),
                                          (b"authorization", f"Bearer {token}".encode())]))
    return answer.status, answer.json()


def _self_signed_metadata(issued: Issued) -> dict[str, Any]:
    return {"token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": {"keys": [jwk_for_certificate(issued.cert)]}}


def test_api_refuses_an_openssl_dn_and_a_subject_for_a_self_signed_client(api: Any) -> None:
    status, body = _register(api, {"token_endpoint_auth_method": "tls_client_auth",
                                   "tls_client_auth_subject_dn": "C = US, O = Example, CN = svc"})
    assert status == 400 and body["error"] == "invalid_client_metadata"
    assert "use 'CN=svc,O=Example,C=US'" in body["error_description"]
    status, body = _register(api, {**_self_signed_metadata(self_signed()), "tls_client_auth_san_dns": "x.example"})
    assert status == 400
    assert "this client's token_endpoint_auth_method is self_signed_tls_client_auth" in body["error_description"]


def test_api_warns_of_an_expired_certificate(api: Any) -> None:
    status, body = _register(api, _self_signed_metadata(_expiring(-3)))
    assert status == 201
    [warning] = body["warnings"]
    assert "expired on" in warning
    status, body = _register(api, _self_signed_metadata(_expiring(300)))
    assert status == 201 and "warnings" not in body


@pytest.mark.parametrize("api", [True], indirect=True)
def test_api_refuses_an_expired_certificate_when_the_server_says_so(api: Any) -> None:
    status, body = _register(api, _self_signed_metadata(_expiring(-3)))
    assert status == 400 and "expired certificates are refused here" in body["error_description"]
