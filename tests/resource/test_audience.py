"""The audience (RFC 8707, RFC 9068 §4) and the claims a token must carry, in both modes:
one ``TokenPolicy`` judges JWT claims and introspection answers alike."""

from __future__ import annotations

from typing import Any

import pytest

from authz_resource import InvalidToken
from authz_resource.policy import audience_uri
from tests.resource.conftest import RecordingLog
from tests.resource.fake_as import AUDIENCE, ISSUER, FakeAuthorizationServer
from tests.resource.inprocess import chain_of, harness, introspection_validator, jwt_validator, thumbprint
from tests.support.pki import Issued, TestCA


@pytest.fixture(scope="module")
def alice() -> Issued:
    return TestCA().issue("CN=alice,O=t")


async def refused(validator: Any, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    return info.value


# --- the setting -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    (None, "audience is required"),
    ("", "audience is required"),
    ("api.example", "must be an absolute URI"),
    ("/accounts", "must be an absolute URI"),
    ("https://", "must be an absolute URI"),
    ("https:api.example", "must be an absolute URI"),
    ("https://api.example#v1", "must not have a fragment"),
    ("https://api example", "must be an absolute URI"),
    (" https://api.example", "must be an absolute URI"),
    ('https://api.example/"x"', "must be an absolute URI"),
    ("https://api.example/\u00e9", "must be an absolute URI"),
    ("1https://api.example", "must be an absolute URI"),
])
@pytest.mark.parametrize("validator", [jwt_validator, introspection_validator])
def test_the_audience_must_be_an_absolute_uri(fake: FakeAuthorizationServer, validator: Any, value: Any,
                                              message: str) -> None:
    with pytest.raises(ValueError, match="audience") as info:
        validator(fake, audience=value)
    assert message in str(info.value)


@pytest.mark.parametrize("value", ["https://api.example", "https://api.example/", "https://api.example:8444/v1",
                                   "urn:example:accounts", "https://api.example/x?tenant=1"])
def test_absolute_uris_are_accepted_as_they_are(value: str) -> None:
    assert audience_uri(value) == value  # no normalisation: aud is compared exactly


def test_opaque_validator_for_another_audience_is_refused(fake: FakeAuthorizationServer) -> None:
    with pytest.raises(ValueError, match="opaque") as info:
        jwt_validator(fake, opaque=introspection_validator(fake, audience="https://other.test"))
    assert str(info.value) == f"opaque: its audience 'https://other.test' differs from {AUDIENCE!r}"


# --- JWT claims --------------------------------------------------------------------------------

@pytest.mark.parametrize(("missing", "reason", "description"), [
    ("iss", "wrong_issuer", "the access token was not issued by the expected authorization server"),
    ("aud", "wrong_audience", f"the access token is not meant for this resource server: it has no aud claim "
                              f"(expected {AUDIENCE})"),
    ("exp", "malformed_claims", "the access token lacks required claims: exp (RFC 9068 section 2.2)"),
    ("sub", "malformed_claims", "the access token lacks required claims: sub (RFC 9068 section 2.2)"),
    ("client_id", "malformed_claims", "the access token lacks required claims: client_id (RFC 9068 section 2.2)"),
    ("iat", "malformed_claims", "the access token lacks required claims: iat (RFC 9068 section 2.2)"),
    ("jti", "malformed_claims", "the access token lacks required claims: jti (RFC 9068 section 2.2)"),
])
async def test_every_rfc9068_claim_is_required_in_a_jwt(fake: FakeAuthorizationServer, missing: str, reason: str,
                                                        description: str) -> None:
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(**{missing: None})))
    assert (refusal.reason, refusal.description) == (reason, description)


async def test_several_missing_claims_are_named_together(fake: FakeAuthorizationServer) -> None:
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(sub=None, jti=None)))
    assert refusal.description == "the access token lacks required claims: sub, jti (RFC 9068 section 2.2)"


@pytest.mark.parametrize("aud", ["https://other.test", ["https://other.test"], AUDIENCE + "/", AUDIENCE.upper(), []])
async def test_a_jwt_for_another_audience(fake: FakeAuthorizationServer, aud: Any) -> None:
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(aud=aud)))
    assert refusal.reason == "wrong_audience"
    assert refusal.description == f"the access token is not meant for this resource server: its aud does not " \
                                  f"include {AUDIENCE}"
    assert refusal.detail == f"aud {aud!r}, expected {AUDIENCE!r}"


@pytest.mark.parametrize("aud", [5, {"a": 1}, [AUDIENCE, None], True])
async def test_a_malformed_aud_in_a_jwt(fake: FakeAuthorizationServer, aud: Any) -> None:
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(aud=aud)))
    assert (refusal.reason, refusal.description) == (
        "malformed_claims", "the access token's aud claim is not a string or an array of strings")


async def test_audience_is_checked_after_the_issuer(fake: FakeAuthorizationServer) -> None:
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(iss="https://evil.test", aud=None)))
    assert refusal.reason == "wrong_issuer" and refusal.detail == f"iss 'https://evil.test', expected {ISSUER!r}"


# --- the operator's log line, in both modes -----------------------------------------------------

@pytest.mark.parametrize("mode", ["jwt", "introspection"])
@pytest.mark.parametrize("aud", [None, "https://other.test"], ids=["no-aud", "other-aud"])
async def test_audience_refusals_are_answered_and_logged(fake: FakeAuthorizationServer, alice: Issued,
                                                         refusal_log: RecordingLog, mode: str, aud: str | None) -> None:
    claims = fake.claims(aud=aud, cnf={"x5t#S256": thumbprint(alice)})
    if mode == "jwt":
        setup, token = harness(fake), fake.sign(claims)
    else:
        fake.introspection["opaque"] = {"active": True, "token_type": "Bearer", **claims}
        setup, token = harness(fake, validator=introspection_validator(fake)), "opaque"
    setup.tls.chain = chain_of(alice)
    response = await setup.get(token=token)
    assert response.status_code == 401
    description = response.json()["error_description"]
    if aud is None:
        assert description == {
            "jwt": f"the access token is not meant for this resource server: it has no aud claim (expected {AUDIENCE})",
            "introspection": "the access token is not meant for this resource server: the authorization server's "
                             f"introspection answer has no aud (expected {AUDIENCE})",
        }[mode]
    else:
        assert description == f"the access token is not meant for this resource server: its aud does not include " \
                              f"{AUDIENCE}"
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="test", error="invalid_token", error_description="{description}"')
    [line] = refusal_log.refusals()
    assert line["reason"] == "wrong_audience" and line["error_description"] == description
    # The token's identifiers, so that the operator knows which client asked for another API.
    assert (line["client_id"], line["sub"], line["jti"], line["token_source"]) == (
        "alice", "alice", claims["jti"], mode)
    assert (AUDIENCE in line["detail"]) and (aud is None or aud in line["detail"])
    if mode == "introspection" and aud is None:
        assert "the authorization server must include aud in its answers" in line["detail"]
