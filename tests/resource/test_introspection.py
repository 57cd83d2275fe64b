"""IntrospectionValidator against the fake authorization server: cache, single flight,
what an introspection answer must say for the token to be accepted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from authz_resource import AuthorizationServer, InvalidToken, VerificationUnavailable
from authz_resource.authorization_server import metadata_url
from tests.resource.fake_as import AUDIENCE, ISSUER, FakeAuthorizationServer
from tests.resource.inprocess import introspection_validator


@pytest.fixture
def fake() -> FakeAuthorizationServer:
    fake = FakeAuthorizationServer()
    fake.introspection["good"] = {"active": True, "token_type": "Bearer", **fake.claims(),
                                  "cnf": {"x5t#S256": "abc"}}
    return fake


async def refused(validator: Any, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    return info.value


async def test_active_token_and_the_request_sent(fake: FakeAuthorizationServer) -> None:
    token = await introspection_validator(fake).validate("good")
    assert token.source == "introspection" and token.certificate_thumbprint == "abc"
    assert token.scopes == {"accounts:read"}
    assert fake.introspection_forms == [{"token": ["good"], "token_type_hint": ["access_token"], "client_id": ["rs"]}]


async def test_answers_are_cached_for_the_ttl(fake: FakeAuthorizationServer) -> None:
    now = [time.time()]
    validator = introspection_validator(fake, cache_ttl=30, clock=lambda: now[0])
    for _ in range(5):
        await validator.validate("good")
        assert (await refused(validator, "unknown")).reason == "inactive"
    assert fake.hits["/introspect"] == 2
    now[0] += 31
    await validator.validate("good")
    assert fake.hits["/introspect"] == 3


async def test_cache_never_outlives_the_token(fake: FakeAuthorizationServer) -> None:
    now = [time.time()]
    fake.introspection["short"] = {"active": True, **fake.claims(exp=int(now[0]) + 5)}
    validator = introspection_validator(fake, cache_ttl=300, leeway=0, clock=lambda: now[0])
    await validator.validate("short")
    now[0] += 6
    assert (await refused(validator, "short")).reason == "expired"


async def test_concurrent_requests_share_one_introspection(fake: FakeAuthorizationServer) -> None:
    validator = introspection_validator(fake)
    results = await asyncio.gather(*(validator.validate("good") for _ in range(25)))
    assert len(results) == 25 and fake.hits["/introspect"] == 1


async def test_ttl_zero_means_no_cache(fake: FakeAuthorizationServer) -> None:
    validator = introspection_validator(fake, cache_ttl=0)
    await validator.validate("good")
    await validator.validate("good")
    assert fake.hits["/introspect"] == 2


@pytest.mark.parametrize(("answer", "reason"), [
    ({"active": False}, "inactive"),
    ({"active": "true"}, "inactive"),
    ({}, "inactive"),
    ({"active": True, "token_type": "refresh_token"}, "wrong_token_type"),
    ({"active": True, "iss": "https://other.test"}, "wrong_issuer"),
    ({"active": True, "aud": "https://other.test"}, "wrong_audience"),
    ({"active": True}, "wrong_audience"),
    ({"active": True, "aud": AUDIENCE, "exp": 1}, "expired"),
    ({"active": True, "aud": AUDIENCE, "nbf": 4_000_000_000}, "not_yet_valid"),
    ({"active": True, "aud": AUDIENCE, "scope": 5}, "malformed_claims"),
])
async def test_answers_that_do_not_accept_the_token(fake: FakeAuthorizationServer, answer: dict[str, Any],
                                                   reason: str) -> None:
    fake.introspection["t"] = answer
    assert (await refused(introspection_validator(fake), "t")).reason == reason


async def test_minimal_active_answer(fake: FakeAuthorizationServer) -> None:
    fake.introspection["t"] = {"active": True, "aud": AUDIENCE}
    token = await introspection_validator(fake).validate("t")
    assert token.expires_at == float("inf") and token.scopes == frozenset() and token.certificate_thumbprint is None


async def test_an_answer_without_aud_is_refused(fake: FakeAuthorizationServer) -> None:
    """The audience is required in both modes now (it used to be optional here, with
    audience=None accepting any answer): the AS answers "active" for every resource server's
    tokens, and only aud says this one is meant for us."""
    fake.introspection["t"] = {"active": True, **fake.claims(aud=None)}
    refusal = await refused(introspection_validator(fake), "t")
    assert refusal.reason == "wrong_audience"
    assert refusal.description == ("the access token is not meant for this resource server: the authorization "
                                   f"server's introspection answer has no aud (expected {AUDIENCE})")
    assert "introspection answer without aud" in refusal.detail and "'client_id'" in refusal.detail
    assert refusal.log_fields == {"client_id": "alice", "sub": "alice", "jti": fake.introspection["t"]["jti"],
                                  "token_source": "introspection"}


@pytest.mark.parametrize("aud", ["https://other.test", [], ["https://other.test", AUDIENCE + "/"]])
async def test_an_answer_for_another_audience_is_refused(fake: FakeAuthorizationServer, aud: Any) -> None:
    fake.introspection["t"] = {"active": True, **fake.claims(aud=aud)}
    refusal = await refused(introspection_validator(fake), "t")
    assert refusal.reason == "wrong_audience"
    assert refusal.description == f"the access token is not meant for this resource server: its aud does not " \
                                  f"include {AUDIENCE}"
    assert refusal.detail == f"aud {aud!r} (introspection answer), expected {AUDIENCE!r}"


@pytest.mark.parametrize("aud", [5, {"a": 1}, [AUDIENCE, 5]], ids=["number", "object", "list-with-number"])
async def test_a_malformed_aud_is_refused(fake: FakeAuthorizationServer, aud: Any) -> None:
    fake.introspection["t"] = {"active": True, "aud": aud}
    refusal = await refused(introspection_validator(fake), "t")
    assert (refusal.reason, refusal.description) == (
        "malformed_claims", "the access token's aud claim is not a string or an array of strings")


async def test_aud_may_list_several_resource_servers(fake: FakeAuthorizationServer) -> None:
    fake.introspection["t"] = {"active": True, "aud": ["https://other.test", AUDIENCE]}
    assert (await introspection_validator(fake).validate("t")).source == "introspection"


@pytest.mark.parametrize("missing", ["iss", "exp", "sub", "client_id", "iat", "jti"])
async def test_only_aud_is_required_of_an_introspection_answer(fake: FakeAuthorizationServer, missing: str) -> None:
    """RFC 7662 §2.2 makes every member but active optional: active already says the token
    is valid now, iss is the endpoint's, and the others only identify the token. A JWT must
    carry them all (test_jwt_validator.py)."""
    fake.introspection["t"] = {"active": True, **fake.claims(**{missing: None})}
    assert (await introspection_validator(fake).validate("t")).source == "introspection"


async def test_failures_are_not_cached(fake: FakeAuthorizationServer) -> None:
    validator = introspection_validator(fake)
    fake.down = True
    with pytest.raises(VerificationUnavailable):
        await validator.validate("good")
    fake.down = False
    await validator.validate("good")


async def test_mtls_endpoint_alias_is_preferred() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json={
                "issuer": ISSUER, "jwks_uri": ISSUER + "/jwks", "introspection_endpoint": ISSUER + "/introspect",
                "mtls_endpoint_aliases": {"introspection_endpoint": "https://mtls.as.test/introspect"}})
        return httpx.Response(200, json={"active": True, "aud": AUDIENCE})

    server = AuthorizationServer(ISSUER, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    from authz_resource import IntrospectionValidator

    await IntrospectionValidator(server, client_id="rs", audience=AUDIENCE).validate("t")
    assert seen[-1] == "https://mtls.as.test/introspect"


@pytest.mark.parametrize(("status", "body"), [(401, b'{"error":"invalid_client"}'), (200, b"not json"),
                                              (200, b"[1]"), (500, b""), (200, b"[" * 50_000),
                                              (200, b" " * (1024 * 1024 + 1))],
                         ids=["401", "not-json", "not-object", "500", "deep-nesting", "over-1-MiB"])
async def test_bad_answers_are_unavailable(status: int, body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json={"issuer": ISSUER, "introspection_endpoint": ISSUER + "/introspect"})
        return httpx.Response(status, content=body)

    server = AuthorizationServer(ISSUER, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    from authz_resource import IntrospectionValidator

    with pytest.raises(VerificationUnavailable) as info:
        await IntrospectionValidator(server, client_id="rs", audience=AUDIENCE).validate("t")
    assert info.value.reason == "introspection_failed"


async def test_an_oversized_streamed_answer_is_not_read_to_the_end() -> None:
    chunks_read: list[int] = []

    async def endless() -> Any:
        for _ in range(10_000):  # 640 MiB if it were read to the end
            chunks_read.append(1)
            yield b" " * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json={"issuer": ISSUER, "introspection_endpoint": ISSUER + "/introspect"})
        return httpx.Response(200, content=endless())

    server = AuthorizationServer(ISSUER, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    from authz_resource import IntrospectionValidator

    with pytest.raises(VerificationUnavailable) as info:
        await IntrospectionValidator(server, client_id="rs", audience=AUDIENCE).validate("t")
    assert info.value.reason == "introspection_failed" and "larger than 1 MiB" in info.value.detail
    assert len(chunks_read) < 100


async def test_a_malformed_endpoint_url_in_the_metadata_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": ISSUER, "introspection_endpoint": "https://[::1/introspect"})

    server = AuthorizationServer(ISSUER, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    from authz_resource import IntrospectionValidator

    with pytest.raises(VerificationUnavailable) as info:
        await IntrospectionValidator(server, client_id="rs", audience=AUDIENCE).validate("t")
    assert info.value.reason == "introspection_unreachable"


def test_metadata_url_per_rfc8414() -> None:
    assert metadata_url("https://as.test") == "https://as.test/.well-known/oauth-authorization-server"
    assert metadata_url("https://as.test/tenant/1") == \
        "https://as.test/.well-known/oauth-authorization-server/tenant/1"


def test_configuration_is_validated(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="issuer"):
        AuthorizationServer("http://as.test")
    with pytest.raises(ValueError, match="go together"):
        AuthorizationServer(ISSUER, client_cert="c.pem")
    with pytest.raises(ValueError, match="ca_file"):
        AuthorizationServer(ISSUER, ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="client_cert"):
        AuthorizationServer(ISSUER, client_cert=tmp_path / "c.pem", client_key=tmp_path / "k.pem")


@pytest.mark.parametrize("times", [{"exp": float("nan")}, {"exp": 10**400}, {"nbf": 10**400}, {"iat": float("inf")}],
                         ids=["exp-nan", "exp-huge", "nbf-huge", "iat-inf"])
async def test_time_members_must_be_finite_numbers(fake: FakeAuthorizationServer, times: dict[str, Any]) -> None:
    fake.introspection["t"] = {"active": True, "aud": AUDIENCE, **times}
    assert (await refused(introspection_validator(fake), "t")).reason == "malformed_claims"


async def test_cache_memory_does_not_grow_with_token_length(fake: FakeAuthorizationServer) -> None:
    """Inactive answers are cached too: keyed by the raw token, 10,000 made-up 16 KiB tokens
    would pin 160 MiB. Keys are SHA-256 digests, and the token itself is not kept."""
    validator = introspection_validator(fake, cache_size=100)
    tokens = [f"{i:05d}" + "a" * 16_000 for i in range(20)]
    for token in tokens:
        assert (await refused(validator, token)).reason == "inactive"
    keys = list(validator._cache._entries)
    assert len(keys) == 20 and all(isinstance(k, bytes) and len(k) == 32 for k in keys)
    assert (await refused(validator, tokens[0])).reason == "inactive"
    assert fake.hits["/introspect"] == 20  # the digest-keyed cache still answers


def test_introspection_needs_the_resource_servers_certificate() -> None:
    from authz_resource import IntrospectionValidator

    server = AuthorizationServer(ISSUER)  # no client_cert/client_key: cannot authenticate (RFC 8705 §2)
    with pytest.raises(ValueError, match="client certificate"):
        IntrospectionValidator(server, client_id="rs", audience=AUDIENCE)


@pytest.mark.parametrize(("option", "value"), [("leeway", -1), ("leeway", 301), ("leeway", float("nan")),
                                               ("cache_ttl", -1), ("cache_ttl", 3601)])
def test_validator_configuration_is_validated(fake: FakeAuthorizationServer, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        introspection_validator(fake, **{option: value})
