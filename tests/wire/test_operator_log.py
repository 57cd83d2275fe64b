"""The operator finds out why a client was refused: one JSON line per refusal on the
server's stderr, naming the client, the failed check and the presented certificate."""

import re
from typing import Any

import pytest
from cryptography import x509

from authz.certificates.rejection import RejectionReason as R
from tests.wire.client import WireClient, assert_invalid_client
from tests.wire.material import DN_CLIENT_SUBJECT, WirePKI

pytestmark = pytest.mark.wire

CASES = [
    ("dn-client", "expired", R.EXPIRED, "tls_client_auth"),
    ("dn-client", "other-subject", R.SUBJECT_DN_MISMATCH, "tls_client_auth"),
    ("dns-client", "dn-client", R.SAN_DNS_MISMATCH, "tls_client_auth"),
    ("dn-client", "untrusted-ca", R.UNTRUSTED_CHAIN, "tls_client_auth"),
    ("self-signed-client", "unregistered-self-signed", R.NOT_REGISTERED, "self_signed_tls_client_auth"),
]


@pytest.mark.parametrize(("client_id", "cert", "reason", "method"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_refusal_is_logged_with_the_certificate(wire: WireClient, pki: WirePKI, client_id: str, cert: str,
                                                reason: R, method: str) -> None:
    response = wire.token(pki[cert], client_id)
    assert response.status == 401
    [line] = response.failures()
    presented = x509.load_pem_x509_certificate(pki[cert].cert.read_bytes())
    assert line["level"] == "warning" and line["endpoint"] == "token" and line["error"] == "invalid_client"
    assert line["client_id"] == client_id and line["method"] == method
    assert line["reason"] == reason.name.lower() and line["error_description"] == reason.public_description
    assert line["detail"]  # the operator's explanation, beyond the public wording
    assert line["cert_sha256"] == pki[cert].sha256_hex
    assert line["cert_subject"] == presented.subject.rfc4514_string()
    assert line["cert_issuer"] == presented.issuer.rfc4514_string()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])


def test_wrong_subject_names_the_registered_subject(wire: WireClient, pki: WirePKI) -> None:
    [line] = wire.token(pki["other-subject"], "dn-client").failures()
    assert DN_CLIENT_SUBJECT in line["detail"]


def test_refusal_without_certificate_is_logged(wire: WireClient) -> None:
    [line] = wire.token(None, "dn-client").failures()
    assert (line["client_id"], line["reason"], line["cert"]) == ("dn-client", "no_certificate", None)


def _refusals(response: Any) -> list[dict[str, Any]]:
    return [e for e in response.events if e.get("event") == "request_refused"]


@pytest.mark.parametrize(
    ("form", "body", "error", "description"),
    [
        (None, b"grant_type=client_credentials&client_id=dn-%FF", "invalid_request",
         "the body is not valid URL-encoded UTF-8"),
        ({"client_id": "dn-client"}, None, "invalid_request", "grant_type is required"),
        ({"grant_type": "password", "client_id": "dn-client"}, None, "unsupported_grant_type",
         "only grant_type=client_credentials is supported"),
        ({"grant_type": "client_credentials", "client_id": "dn-client", "scope": "admin"}, None, "invalid_scope",
         "scope not registered for this client: admin"),
        ({"grant_type": "client_credentials", "client_id": "dn-client", "client_secret": "s"}, None,
         "invalid_request", "the request uses more than one client authentication mechanism "
         "(TLS client certificate and client_secret); send only the certificate"),
    ],
    ids=["not-utf8", "no-grant-type", "unsupported-grant", "unregistered-scope", "two-mechanisms"],
)
def test_every_other_refusal_is_logged_once(wire: WireClient, pki: WirePKI, form: dict[str, str] | None,
                                            body: bytes | None, error: str, description: str) -> None:
    response = wire.post("/token", pki["dn-client"], form, body=body)
    assert response.status == 400 and response.json()["error"] == error
    [line] = _refusals(response)
    assert response.failures() == []
    assert line["level"] == "warning" and line["endpoint"] == "token" and line["status"] == 400
    assert (line["error"], line["error_description"]) == (error, description)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])


def test_a_client_authentication_failure_is_logged_once(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["other-subject"], "dn-client")
    assert len(response.failures()) == 1 and _refusals(response) == []


LONG_SCOPE = " ".join(["x" * 9] * 30)  # 299 characters


@pytest.mark.parametrize(("scope", "logged"), [
    ("read admin", "read admin"),
    (LONG_SCOPE, LONG_SCOPE[:200] + "...[99 more characters]"),
], ids=["short", "cut"])
def test_unregistered_scope_logs_what_was_requested(wire: WireClient, pki: WirePKI, scope: str, logged: str) -> None:
    response = wire.token(pki["dn-client"], "dn-client", scope=scope)
    assert response.status == 400 and response.json()["error"] == "invalid_scope"
    [line] = _refusals(response)
    assert line["scope"] == logged


LONG_CLIENT_ID = "c" * 16_000
LOGGED_CLIENT_ID = "c" * 255 + "...[15745 more characters]"  # registered client_ids have at most 255


def test_long_unknown_client_id_is_logged_cut(wire: WireClient) -> None:
    response = wire.token(None, LONG_CLIENT_ID)
    assert_invalid_client(response, "unknown client_id", LOGGED_CLIENT_ID)


@pytest.mark.parametrize(("form", "fields"), [
    ({"client_id": LONG_CLIENT_ID}, {"client_id": LOGGED_CLIENT_ID}),
    ({"client_id": "c" * 300, "grant_type": "g" * 1000},
     {"client_id": "c" * 255 + "...[45 more characters]", "grant_type": "g" * 100 + "...[900 more characters]"}),
], ids=["no-grant-type", "unsupported-grant-type"])
def test_long_values_are_logged_cut_on_other_refusals(wire: WireClient, pki: WirePKI, form: dict[str, str],
                                                      fields: dict[str, str]) -> None:
    response = wire.post("/token", pki["dn-client"], form)
    assert response.status == 400
    [line] = _refusals(response)
    assert {name: line[name] for name in fields} == fields
