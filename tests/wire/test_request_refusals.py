"""Requests the token endpoint refuses before or besides the certificate check."""

import json

import pytest

from tests.wire.client import FORM, WireClient, assert_invalid_client, assert_oauth_error
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

GRANT = {"grant_type": "client_credentials", "client_id": "dn-client"}


def two_mechanisms(other: str) -> str:
    return (f"the request uses more than one client authentication mechanism (TLS client certificate and {other}); "
            "send only the certificate")


@pytest.mark.parametrize("parameter", ["client_secret", "client_assertion"])
def test_secret_in_the_body_with_the_certificate(wire: WireClient, pki: WirePKI, parameter: str) -> None:
    response = wire.post("/token", pki["dn-client"], {**GRANT, parameter: "s3cret"})
    assert_oauth_error(response, 400, "invalid_request", two_mechanisms(parameter))


def test_authorization_header_with_the_certificate(wire: WireClient, pki: WirePKI) -> None:
    response = wire.post("/token", pki["dn-client"], GRANT, headers={"Authorization": "Basic ZG4tY2xpZW50OnMzY3JldA=="})
    assert_oauth_error(response, 400, "invalid_request", two_mechanisms("Authorization header"))


def unaccepted_mechanisms(used: str) -> str:
    return (f"the request uses client authentication this server does not accept ({used}); "
            "authenticate with a TLS client certificate instead")


# Without a certificate, the description must not claim one was sent.
@pytest.mark.parametrize(("form", "headers", "used"), [
    ({}, {"Authorization": "Basic ZG4tY2xpZW50OnMzY3JldA=="}, "Authorization header"),
    ({"client_secret": "s3cret"}, {}, "client_secret"),
    ({"client_secret": "s3cret"}, {"Authorization": "Bearer x"}, "Authorization header, client_secret"),
], ids=["basic", "secret", "both"])
def test_other_mechanism_without_a_certificate(wire: WireClient, form: dict[str, str], headers: dict[str, str],
                                               used: str) -> None:
    # One mechanism, which this server does not support: RFC 6749 §5.2 invalid_client.
    response = wire.post("/token", None, {**GRANT, **form}, headers=headers)
    scheme = headers["Authorization"].split(" ")[0] if "Authorization" in headers else None
    assert_invalid_client(response, unaccepted_mechanisms(used), "dn-client", challenge=scheme)
    [line] = response.failures()
    assert (line["reason"], line["mechanisms"], line["cert"]) == ("unsupported_method", used.split(", "), None)


def test_unregistered_scope(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["dns-client"], "dns-client", scope="read admin")
    assert_oauth_error(response, 400, "invalid_scope", "scope not registered for this client: admin")


def test_scope_is_checked_after_the_certificate(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["other-subject"], "dns-client", scope="admin")
    assert response.status == 401 and response.json()["error"] == "invalid_client"


def test_missing_grant_type(wire: WireClient, pki: WirePKI) -> None:
    response = wire.post("/token", pki["dn-client"], {"client_id": "dn-client"})
    assert_oauth_error(response, 400, "invalid_request", "grant_type is required")


@pytest.mark.parametrize("grant_type", ["password", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"])
def test_unsupported_grant_type(wire: WireClient, pki: WirePKI, grant_type: str) -> None:
    response = wire.post("/token", pki["dn-client"], {**GRANT, "grant_type": grant_type})
    assert_oauth_error(response, 400, "unsupported_grant_type", "only grant_type=client_credentials is supported")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
def test_body_that_is_not_a_form(wire: WireClient, pki: WirePKI, content_type: str) -> None:
    response = wire.post("/token", pki["dn-client"], body=json.dumps(GRANT).encode(), content_type=content_type)
    assert_oauth_error(response, 400, "invalid_request", "the body must be application/x-www-form-urlencoded")


def test_form_with_a_charset_is_a_form(wire: WireClient, pki: WirePKI) -> None:
    response = wire.post("/token", pki["dn-client"], GRANT, content_type=f"{FORM}; charset=UTF-8")
    assert response.status == 200, response.body


@pytest.mark.parametrize("body", ["grant_type=client_credentials&client_id=dn-client&",
                                  "grant_type=client_credentials&&client_id=dn-client"], ids=["trailing", "double"])
def test_form_with_an_empty_field(wire: WireClient, pki: WirePKI, body: str) -> None:
    response = wire.post("/token", pki["dn-client"], body=body.encode())
    assert response.status == 200, response.body


def test_form_that_is_not_utf8(wire: WireClient, pki: WirePKI) -> None:
    response = wire.post("/token", pki["dn-client"], body=b"grant_type=client_credentials&client_id=dn-%FF")
    assert_oauth_error(response, 400, "invalid_request", "the body is not valid URL-encoded UTF-8")


def test_body_over_16_kib(wire: WireClient, pki: WirePKI) -> None:
    # 413 Content Too Large (RFC 9110 §15.5.14), with the OAuth error body clients read.
    response = wire.post("/token", pki["dn-client"], {**GRANT, "padding": "x" * 17_000})
    assert_oauth_error(response, 413, "invalid_request", "the body exceeds 16384 bytes")


@pytest.mark.parametrize("parameter", ["client_id", "grant_type", "scope"])
def test_repeated_parameter(wire: WireClient, pki: WirePKI, parameter: str) -> None:
    form = [*GRANT.items(), ("scope", "read"), (parameter, GRANT.get(parameter, "read"))]
    response = wire.post("/token", pki["dn-client"], form)
    assert_oauth_error(response, 400, "invalid_request", f"parameter {parameter} is repeated")


def test_unknown_client_without_certificate_is_unknown(wire: WireClient) -> None:
    assert_invalid_client(wire.token(None, "no-such-client"), "unknown client_id", "no-such-client")


def test_a_form_in_another_charset_is_refused_not_misread(wire: WireClient, pki: WirePKI) -> None:
    body = "grant_type=client_credentials&client_id=dn-client".encode("utf-16")
    response = wire.post("/token", pki["dn-client"], body=body, content_type=f"{FORM}; charset=utf-16")
    assert_oauth_error(response, 400, "invalid_request", "the form must be UTF-8 (charset=utf-8, or no charset)")


def test_parameters_in_the_query_string_are_named_as_the_problem(wire: WireClient, pki: WirePKI) -> None:
    response = wire.post("/token?grant_type=client_credentials&client_id=dn-client", pki["dn-client"], {})
    assert_oauth_error(response, 400, "invalid_request",
                       "grant_type is required in the request body (parameters in the URL query are not read)")
