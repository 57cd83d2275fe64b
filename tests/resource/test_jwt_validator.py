"""JWTAccessTokenValidator and its key cache, against the fake authorization server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from authz_resource import InvalidToken, VerificationUnavailable
from tests.resource.fake_as import AUDIENCE, FakeAuthorizationServer, b64url, unsigned
from tests.resource.inprocess import authorization_server, introspection_validator, jwt_validator


@pytest.fixture
def fake() -> FakeAuthorizationServer:
    return FakeAuthorizationServer()


async def refused(validator: Any, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    return info.value


async def test_verified_tokens_are_cached_until_they_expire(fake: FakeAuthorizationServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    validator = jwt_validator(fake, clock=lambda: now[0], leeway=10)
    calls = []
    original = jws.deserialize_compact

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr("authz_resource.access_jwt.jws.deserialize_compact", counting)
    token = fake.sign(fake.claims(exp=int(now[0]) + 60))
    first = await validator.validate(token)
    assert await validator.validate(token) is first and len(calls) == 1
    now[0] += 65  # past exp, within leeway: still accepted from the cache
    assert await validator.validate(token) is first
    now[0] += 10  # past exp + leeway
    assert (await refused(validator, token)).reason == "expired"


async def test_unknown_kid_refreshes_the_keys_once(fake: FakeAuthorizationServer) -> None:
    validator = jwt_validator(fake, jwks_refresh_cooldown=0)
    await validator.validate(fake.sign(fake.claims()))
    new_key = fake.rotate()
    accepted = await validator.validate(fake.sign(fake.claims(), key=new_key))
    assert accepted.client_id == "alice" and fake.hits["/jwks"] == 2


async def test_made_up_kids_cannot_hammer_the_authorization_server(fake: FakeAuthorizationServer) -> None:
    now = [1000.0]
    validator = jwt_validator(fake, jwks_refresh_cooldown=30)
    validator.keys._clock = lambda: now[0]  # the key cache's own (monotonic) clock
    await validator.validate(fake.sign(fake.claims()))
    for i in range(50):
        refusal = await refused(validator, fake.sign(fake.claims(), kid=f"garbage-{i}"))
        assert refusal.reason == "unknown_kid" and "cooldown" in refusal.detail
    assert fake.hits["/jwks"] == 1
    now[0] += 31
    await refused(validator, fake.sign(fake.claims(), kid="garbage-late"))
    assert fake.hits["/jwks"] == 2


async def test_concurrent_requests_share_one_fetch(fake: FakeAuthorizationServer) -> None:
    validator = jwt_validator(fake)
    tokens = [fake.sign(fake.claims(jti=str(i))) for i in range(20)]
    results = await asyncio.gather(*(validator.validate(t) for t in tokens))
    assert len(results) == 20 and fake.hits["/jwks"] == 1 and fake.hits["/.well-known/oauth-authorization-server"] == 1


async def test_a_retired_key_stops_verifying_even_cached_tokens(fake: FakeAuthorizationServer) -> None:
    validator = jwt_validator(fake, jwks_refresh_cooldown=0)
    old_token = fake.sign(fake.claims())
    await validator.validate(old_token)
    new_key = fake.rotate()
    fake.keys = [new_key]  # the old key is retired (no longer published)
    await validator.validate(fake.sign(fake.claims(), key=new_key))  # unknown kid: refresh sees the removal
    assert (await refused(validator, old_token)).reason == "unknown_kid"


async def test_stale_keys_are_refreshed_in_the_background(fake: FakeAuthorizationServer) -> None:
    validator = jwt_validator(fake, jwks_max_age=0.05)
    await validator.validate(fake.sign(fake.claims(jti="1")))
    await asyncio.sleep(0.06)
    await validator.validate(fake.sign(fake.claims(jti="2")))  # served from the stale set
    await asyncio.sleep(0.01)
    assert fake.hits["/jwks"] == 2


@pytest.mark.parametrize(("header", "reason"), [
    ({"alg": "none"}, "algorithm_not_allowed"),
    ({"alg": "HS256"}, "algorithm_not_allowed"),
    ({"alg": "ES384"}, "algorithm_not_allowed"),
    ({"typ": "JWT"}, "wrong_typ"),
    ({"typ": None}, "wrong_typ"),
    ({"crit": ["exp"]}, "crit_header"),
    ({"kid": 7}, "malformed_jwt"),
])
async def test_headers_refused_before_any_key_is_used(fake: FakeAuthorizationServer, header: dict[str, Any],
                                                      reason: str) -> None:
    validator = jwt_validator(fake)
    full = {"alg": "ES256", "typ": "at+jwt", "kid": fake.active.thumbprint(), **header}
    token = unsigned({k: v for k, v in full.items() if v is not None}, fake.claims(), b"x" * 64)
    assert (await refused(validator, token)).reason == reason


async def test_typ_variants_accepted(fake: FakeAuthorizationServer) -> None:
    validator = jwt_validator(fake)
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        await validator.validate(fake.sign(fake.claims(jti=typ), typ=typ))


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c.d", "e30.e30.", "!!!.e30.e30"])
async def test_not_a_jwt(fake: FakeAuthorizationServer, token: str) -> None:
    assert (await refused(jwt_validator(fake), token)).reason in {"not_a_jwt", "malformed_jwt", "wrong_typ",
                                                                  "algorithm_not_allowed"}


async def test_key_published_for_another_algorithm(fake: FakeAuthorizationServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    original = fake.jwks

    def jwks() -> dict[str, Any]:
        document = original()
        document["keys"][0]["alg"] = "ES512"
        return document

    monkeypatch.setattr(fake, "jwks", jwks)
    assert (await refused(jwt_validator(fake), fake.sign(fake.claims()))).reason == "algorithm_mismatch"


async def test_symmetric_and_private_keys_in_the_jwks_are_ignored(fake: FakeAuthorizationServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    kid = fake.active.thumbprint()

    def jwks() -> dict[str, Any]:
        return {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": kid},
                         {**fake.active.as_dict(private=True), "kid": kid}]}

    monkeypatch.setattr(fake, "jwks", jwks)
    assert (await refused(jwt_validator(fake), fake.sign(fake.claims()))).reason == "unknown_kid"


async def test_token_without_kid(fake: FakeAuthorizationServer) -> None:
    await jwt_validator(fake).validate(fake.sign(fake.claims(), kid=None))  # one published key: unambiguous
    fake.rotate()
    two_keys = jwt_validator(fake)
    assert (await refused(two_keys, fake.sign(fake.claims(jti="2"), kid=None))).reason == "unknown_kid"


async def test_a_key_of_another_curve_under_the_token_kid(fake: FakeAuthorizationServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    kid = fake.active.thumbprint()
    p384 = ECKey.generate_key("P-384", private=True)
    monkeypatch.setattr(fake, "jwks", lambda: {"keys": [{**p384.as_dict(private=False), "kid": kid}]})
    assert (await refused(jwt_validator(fake), fake.sign(fake.claims()))).reason == "algorithm_mismatch"


@pytest.mark.parametrize(("claims", "reason"), [
    ({"iss": "https://other.test"}, "wrong_issuer"),
    ({"iss": None}, "wrong_issuer"),
    ({"aud": "https://other.test"}, "wrong_audience"),
    ({"aud": ["https://other.test", "https://x"]}, "wrong_audience"),
    ({"aud": None}, "wrong_audience"),
    ({"exp": None}, "malformed_claims"),
    ({"sub": None}, "malformed_claims"),
    ({"client_id": None}, "malformed_claims"),
    ({"iat": None}, "malformed_claims"),
    ({"jti": None}, "malformed_claims"),
    ({"jti": 7}, "malformed_claims"),
    ({"exp": "tomorrow"}, "malformed_claims"),
    ({"exp": 1}, "expired"),
    ({"nbf": 4_000_000_000}, "not_yet_valid"),
    ({"iat": 4_000_000_000, "exp": 4_000_000_600}, "not_yet_valid"),
    ({"scope": ["accounts:read"]}, "malformed_claims"),
    ({"client_id": 42}, "malformed_claims"),
    ({"cnf": {"x5t#S256": 5}}, "malformed_claims"),
])
async def test_claims(fake: FakeAuthorizationServer, claims: dict[str, Any], reason: str) -> None:
    assert (await refused(jwt_validator(fake), fake.sign(fake.claims(**claims)))).reason == reason


async def test_audience_list_containing_ours(fake: FakeAuthorizationServer) -> None:
    await jwt_validator(fake).validate(fake.sign(fake.claims(aud=["https://x", AUDIENCE])))


async def test_opaque_tokens_go_to_introspection_when_configured(fake: FakeAuthorizationServer) -> None:
    fake.introspection["opaque-1"] = {"active": True, **fake.claims(scope="accounts:read")}
    without = jwt_validator(fake)
    assert (await refused(without, "opaque-1")).reason == "not_a_jwt"
    with_opaque = jwt_validator(fake, opaque=introspection_validator(fake))
    assert (await with_opaque.validate("opaque-1")).source == "introspection"


def test_configuration_is_validated(fake: FakeAuthorizationServer) -> None:
    server = authorization_server(fake)
    for algorithms in (["HS256"], ["none"], ["ES256", "HS512"], []):
        with pytest.raises(ValueError, match="algorithms"):
            jwt_validator(fake, algorithms=algorithms)
    with pytest.raises(ValueError, match="audience"):
        type(jwt_validator(fake))(server, audience="")
    with pytest.raises(ValueError, match="leeway"):
        jwt_validator(fake, leeway=-1)


async def test_keys_unavailable_is_not_invalid_token(fake: FakeAuthorizationServer) -> None:
    fake.down = True
    with pytest.raises(VerificationUnavailable):
        await jwt_validator(fake).validate(fake.sign(fake.claims()))


@pytest.mark.parametrize("alg", [["ES256"], {"alg": "ES256"}, 256, True])
async def test_non_string_alg_is_refused_not_a_crash(fake: FakeAuthorizationServer, alg: Any) -> None:
    token = unsigned({"alg": alg, "typ": "at+jwt", "kid": fake.active.thumbprint()}, fake.claims(), b"x" * 64)
    assert (await refused(jwt_validator(fake), token)).reason == "algorithm_not_allowed"


@pytest.mark.parametrize("segment", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
                                     b'{"alg":' + b"9" * 5000 + b"}", b"\xff\xfe", b'"at+jwt"'])
async def test_hostile_header_json_is_malformed(fake: FakeAuthorizationServer, segment: bytes) -> None:
    token = b64url(segment) + "." + b64url(json.dumps(fake.claims()).encode()) + "." + b64url(b"x" * 64)
    assert (await refused(jwt_validator(fake), token)).reason == "malformed_jwt"


@pytest.mark.parametrize("claims", [
    pytest.param({"exp": float("nan")}, id="exp-nan"),
    pytest.param({"exp": float("inf")}, id="exp-inf"),
    pytest.param({"exp": 10**400}, id="exp-huge"),
    pytest.param({"exp": -(10**400)}, id="exp-huge-negative"),
    pytest.param({"nbf": 10**400}, id="nbf-huge"),
    pytest.param({"nbf": float("nan")}, id="nbf-nan"),
    pytest.param({"nbf": "now"}, id="nbf-string"),
    pytest.param({"iat": 10**400}, id="iat-huge"),
    pytest.param({"iat": float("-inf")}, id="iat-minus-inf"),
    pytest.param({"iat": True}, id="iat-bool"),
])
async def test_time_claims_must_be_finite_numbers(fake: FakeAuthorizationServer, claims: dict[str, Any]) -> None:
    """NaN compares false with everything, so an exp of NaN would never expire."""
    assert (await refused(jwt_validator(fake), fake.sign(fake.claims(**claims)))).reason == "malformed_claims"


def traceback_depth(exc: BaseException) -> int:
    depth, tb = 0, exc.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    return depth


async def test_an_unreachable_authorization_server_is_asked_once_per_cooldown(fake: FakeAuthorizationServer) -> None:
    """And the stored failure is not re-raised as is: raising one instance again and again
    chains every request's frames onto its traceback, which then lives until the next fetch."""
    fake.down = True
    validator = jwt_validator(fake, jwks_refresh_cooldown=30)
    token = fake.sign(fake.claims())
    depths = []
    for _ in range(100):
        with pytest.raises(VerificationUnavailable) as info:
            await validator.validate(token)
        assert info.value.reason == "metadata_unreachable"
        depths.append(traceback_depth(info.value))
    assert sum(fake.hits.values()) == 1
    assert max(depths) == min(depths) < 30, depths[-1]


async def test_keys_are_found_through_the_metadata(fake: FakeAuthorizationServer) -> None:
    fake.jwks_path = "/keys/v2"  # wherever the metadata's jwks_uri says, not a guessed path
    await jwt_validator(fake).validate(fake.sign(fake.claims()))
    assert fake.hits["/.well-known/oauth-authorization-server"] == 1 and fake.hits["/keys/v2"] == 1
    assert fake.hits["/jwks"] == 0


async def test_stale_keys_and_an_unreachable_server_still_mean_one_fetch_per_cooldown(
        fake: FakeAuthorizationServer) -> None:
    """Keys past max_age are refreshed in the background; when that refresh fails, the next
    requests must not each start another one."""
    now = [1000.0]
    validator = jwt_validator(fake, jwks_max_age=60, jwks_refresh_cooldown=30)
    validator.keys._clock = lambda: now[0]
    token = fake.sign(fake.claims())
    await validator.validate(fake.sign(fake.claims(jti="first")))
    fake.down = True
    fake.hits.clear()
    now[0] += 61  # stale
    for i in range(50):
        await validator.validate(fake.sign(fake.claims(jti=str(i))))  # served from the stale keys
        await asyncio.sleep(0)  # let a background refresh run
    assert sum(fake.hits.values()) == 1, fake.hits
    now[0] += 31  # cooldown over: one more attempt
    await validator.validate(token)
    await asyncio.sleep(0)
    assert sum(fake.hits.values()) == 2, fake.hits


@pytest.mark.parametrize("kid", ["as-kid", "attacker-kid"])
async def test_keys_embedded_in_the_token_are_never_used(fake: FakeAuthorizationServer, kid: str) -> None:
    """jwk/jku/x5u headers name a key the attacker controls: verification only ever uses the
    authorization server's published keys."""
    attacker = ECKey.generate_key("P-256", private=True)
    header = {"kid": fake.active.thumbprint() if kid == "as-kid" else attacker.thumbprint(),
              "jwk": attacker.as_dict(private=False), "jku": "https://attacker.test/attacker-jwks",
              "x5u": "https://attacker.test/attacker-cert.pem"}
    token = fake.sign(fake.claims(), key=attacker, **header)
    refusal = await refused(jwt_validator(fake), token)
    assert refusal.reason == ("bad_signature" if kid == "as-kid" else "unknown_kid")
    assert "/jwks" in fake.hits and not any("attacker" in path for path in fake.hits)
