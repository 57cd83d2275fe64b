"""The accepted JWS algorithms: chosen by the operator (ES256 by default), never ``none`` nor
HMAC, checked before any key is looked up; and a published key must fit the token's
algorithm. Tokens are really signed, with keys made here and published by the fake AS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from authz_resource import ASYMMETRIC_ALGORITHMS, InvalidToken
from authz_resource.access_jwt import accepted_algorithms
from tests.resource.fake_as import FakeAuthorizationServer, b64url, unsigned
from tests.resource.inprocess import jwt_validator

_RSA = RSAKey.generate_key(2048, private=True)  # 2048-bit generation takes a while: once per module


def make_key(alg: str) -> Key:
    if alg.startswith(("RS", "PS")):
        return RSAKey.import_key(_RSA.as_dict(private=True))
    if alg in ("EdDSA", "Ed25519"):
        return OKPKey.generate_key("Ed25519", private=True)
    if alg == "Ed448":
        return OKPKey.generate_key("Ed448", private=True)
    return ECKey.generate_key({"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg], private=True)


async def refused(validator: Any, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    return info.value


# --- configuration -----------------------------------------------------------------------------

def test_es256_is_the_default(fake: FakeAuthorizationServer) -> None:
    assert jwt_validator(fake).algorithms == {"ES256"}


@pytest.mark.parametrize(("algorithms", "message"), [
    (["none"], "'none' is not allowed: it means unsigned tokens, which anyone can make"),
    (["ES256", "None"], "'None' is not allowed: it means unsigned tokens"),
    (["HS256"], "'HS256' is not allowed: HMAC would verify with the key the authorization server publishes, so "
                "anyone could sign tokens"),
    (["RS256", "hs512"], "'hs512' is not allowed: HMAC"),
    (["HS384"], "'HS384' is not allowed: HMAC"),
    ([], "name at least one of ES256"),
    ("ES256", "algorithms is a list of names, e.g. ['ES256']"),
    (["es256"], "'es256' is not supported; choose from ES256, ES384, ES512, Ed25519, Ed448, EdDSA, PS256"),
    (["ES256K"], "'ES256K' is not supported"),
    (["A256GCM"], "'A256GCM' is not supported"),
])
def test_unsafe_or_unknown_algorithms_are_refused_at_configuration(fake: FakeAuthorizationServer, algorithms: Any,
                                                                   message: str) -> None:
    with pytest.raises(ValueError, match="algorithms") as info:
        jwt_validator(fake, algorithms=algorithms)
    assert message in str(info.value)


def test_the_allowed_list() -> None:
    expected = {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA", "Ed25519",
                "Ed448"}
    assert expected == ASYMMETRIC_ALGORITHMS
    assert accepted_algorithms(("RS256", "EdDSA")) == {"RS256", "EdDSA"}


# --- real tokens -------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", sorted(ASYMMETRIC_ALGORITHMS - {"ES256"}))
async def test_a_configured_algorithm_verifies_real_tokens(fake: FakeAuthorizationServer, alg: str) -> None:
    key = fake.publish(make_key(alg), alg)
    token = fake.sign(fake.claims(), key=key)
    accepted = await jwt_validator(fake, algorithms=["ES256", alg]).validate(token)
    assert accepted.client_id == "alice"
    # One bit of the signature flipped: the algorithm really verifies.
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    forged = ".".join([header, payload, b64url(bytes(raw))])
    assert (await refused(jwt_validator(fake, algorithms=[alg]), forged)).reason == "bad_signature"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
async def test_an_algorithm_not_configured_is_refused_before_any_key_lookup(fake: FakeAuthorizationServer,
                                                                            alg: str) -> None:
    key = fake.publish(make_key(alg), alg)
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(), key=key))
    assert refusal.reason == "algorithm_not_allowed"
    assert refusal.description == f"the access token's signing algorithm is not accepted (alg '{alg}'; accepted: ES256)"
    assert not fake.hits  # neither the metadata nor the JWK Set was fetched


async def test_eddsa_tokens_do_not_warn_per_request(fake: FakeAuthorizationServer) -> None:
    """joserfc warns that RFC 9864 deprecates the name EdDSA, on every verification."""
    key = fake.publish(make_key("EdDSA"), "EdDSA")
    validator = jwt_validator(fake, algorithms=["EdDSA"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        await validator.validate(fake.sign(fake.claims(), key=key))
    assert not seen, [str(w.message) for w in seen]


# --- algorithm confusion -----------------------------------------------------------------------

def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize("secret_form", ["pem", "jwk-json", "n"])
async def test_hs256_keyed_with_the_published_rsa_key(fake: FakeAuthorizationServer, secret_form: str) -> None:
    """The classic confusion: a verifier that takes the alg from the token would check an
    HMAC keyed with the public key, which anyone can compute."""
    key = fake.publish(make_key("RS256"), "RS256")
    published = next(k for k in fake.jwks()["keys"] if k["kid"] == key.thumbprint())
    secret = {"pem": key.as_pem(private=False), "jwk-json": json.dumps(published).encode(),
              "n": published["n"].encode()}[secret_form]
    token = hs256({"alg": "HS256", "typ": "at+jwt", "kid": key.thumbprint()}, fake.claims(), secret)
    validator = jwt_validator(fake, algorithms=sorted(ASYMMETRIC_ALGORITHMS))  # every algorithm we accept
    refusal = await refused(validator, token)
    assert refusal.reason == "algorithm_not_allowed" and "alg 'HS256'" in refusal.description
    assert not fake.hits


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "HS512", "rs256", ""])
async def test_unsigned_hmac_and_case_variants_are_refused(fake: FakeAuthorizationServer, alg: str) -> None:
    key = fake.publish(make_key("RS256"), "RS256")
    token = unsigned({"alg": alg, "typ": "at+jwt", "kid": key.thumbprint()}, fake.claims(), b"" if "n" in alg else b"x")
    assert (await refused(jwt_validator(fake, algorithms=["RS256"]), token)).reason == "algorithm_not_allowed"


async def test_a_key_published_for_rs256_does_not_verify_ps256(fake: FakeAuthorizationServer) -> None:
    key = fake.publish(make_key("RS256"), "RS256")
    token = fake.sign(fake.claims(), key=key, alg="PS256")  # a real PS256 signature of that key
    refusal = await refused(jwt_validator(fake, algorithms=["RS256", "PS256"]), token)
    assert refusal.reason == "algorithm_mismatch"
    assert refusal.description == "the access token's algorithm does not match its key"
    assert refusal.detail == f"alg PS256, key {key.thumbprint()!r} is for RS256"


async def test_a_key_without_alg_verifies_both_rsa_paddings(fake: FakeAuthorizationServer) -> None:
    key = fake.publish(make_key("RS256"), None)  # the JWK names no alg: its type decides
    validator = jwt_validator(fake, algorithms=["RS256", "PS256"])
    for alg in ("RS256", "PS256"):
        await validator.validate(fake.sign(fake.claims(jti=alg), key=key, alg=alg))


@pytest.mark.parametrize(("token_alg", "key_alg"), [
    ("ES256", "RS256"),   # an RSA key under an ES256 token's kid
    ("RS256", "ES256"),   # an EC key under an RS256 token's kid
    ("EdDSA", "ES256"),   # an EC key under an EdDSA token's kid
    ("ES384", "ES256"),   # P-256 key, P-384 algorithm
    ("Ed25519", "Ed448"),  # Ed448 key, Ed25519 algorithm
])
async def test_a_key_of_another_type_or_curve_is_refused(fake: FakeAuthorizationServer, token_alg: str,
                                                         key_alg: str) -> None:
    """The JWK names no alg, so only its type and curve can tell: joserfc checks both."""
    key = fake.publish(make_key(key_alg), None)
    signer = make_key(token_alg)
    token = fake.sign(fake.claims(), key=signer, alg=token_alg, kid=key.thumbprint())
    refusal = await refused(jwt_validator(fake, algorithms=["ES256", token_alg]), token)
    assert refusal.reason == "algorithm_mismatch", refusal.detail
    assert refusal.detail.startswith(f"alg {token_alg}, key {key.thumbprint()!r}: ")


async def test_an_x25519_key_never_verifies_eddsa(fake: FakeAuthorizationServer) -> None:
    x25519 = OKPKey.generate_key("X25519", private=True)
    fake.publish(x25519, None)
    token = fake.sign(fake.claims(), key=make_key("EdDSA"), alg="EdDSA", kid=x25519.thumbprint())
    assert (await refused(jwt_validator(fake, algorithms=["EdDSA"]), token)).reason == "algorithm_mismatch"


async def test_rsa_keys_under_2048_bits_are_not_used(fake: FakeAuthorizationServer) -> None:
    weak_private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc warns, and would use it
        weak = RSAKey.import_key(weak_private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    fake.publish(weak, "RS256")
    refusal = await refused(jwt_validator(fake, algorithms=["RS256"]), fake.sign(fake.claims(), key=weak))
    assert refusal.reason == "unknown_kid"
    assert f"kid {weak.thumbprint()!r} is published but not usable: RSA key of 1024 bits (at least 2048" \
        in refusal.detail


async def test_a_symmetric_key_in_the_jwks_is_named_in_the_detail(fake: FakeAuthorizationServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original = fake.jwks
    monkeypatch.setattr(fake, "jwks", lambda: {"keys": [*original()["keys"],
                                                        {"kty": "oct", "k": b64url(b"s" * 32), "kid": "hmac"}]})
    token = hs256({"alg": "HS256", "typ": "at+jwt", "kid": "hmac"}, fake.claims(), b"s" * 32)
    # Even configured for ES256 only, the HS256 token stops at the algorithm; an ES256 token
    # naming the symmetric key stops at the key.
    assert (await refused(jwt_validator(fake), token)).reason == "algorithm_not_allowed"
    refusal = await refused(jwt_validator(fake), fake.sign(fake.claims(), kid="hmac"))
    assert refusal.reason == "unknown_kid"
    assert "kid 'hmac' is published but not usable: a symmetric (oct) key is never a verification key" \
        in refusal.detail
