"""The resource server before a token is trusted: ``bearer_token`` (the Authorization header and
the query), ``JWTAccessTokenValidator.validate`` (compact JWT parsing, header checks, signature,
claims) and ``AccessToken.from_claims``.

Properties: any header and query is a b64token or a ``NoToken``/``InvalidRequest`` refusal;
any JWT-ish string is an ``InvalidToken`` refusal with one of the documented reasons, never
another exception (the middleware would turn that into ``verification_error``, logged as a
defect), and a token is accepted only if the authorization server's key really signed it, with
``alg`` ES256, ``typ`` at+jwt and claims that pass every check."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from authz_resource import AccessToken, InvalidToken
from authz_resource.bearer import bearer_token
from authz_resource.errors import InvalidRequest, NoToken
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import json_values
from tests.resource.fake_as import AUDIENCE, ISSUER, FakeAuthorizationServer, b64url
from tests.resource.inprocess import jwt_validator

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# --- the Authorization header -----------------------------------------------------------------------

_SCHEMES = st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b"DPoP", b"Bearer\t", b"", b"Bearerx"])
_CREDENTIALS = st.sampled_from([b"abc.def.ghi", b"a", b"=", b"abc==", b"a=b", b"a b", b"\xff", b"\x00", b"e30.e30.",
                                b"x" * 16_385, b"~+/-._"]) | st.binary(max_size=30)
authorization_values = st.builds(lambda s, sp, c, tail: s + sp + c + tail, _SCHEMES,
                                 st.sampled_from([b" ", b"  ", b"", b"\t"]), _CREDENTIALS,
                                 st.sampled_from([b"", b" ", b"\r", b"=="])) | st.binary(max_size=40)
_HEADER_NAMES = st.sampled_from([b"authorization", b"authorization", b"Authorization", b"proxy-authorization"]) \
    | st.binary(min_size=1, max_size=12)
_QUERIES = st.sampled_from([b"", b"access_token=x", b"a=1&access_token", b"access_token", b"x=access_token",
                            b"%61ccess_token=x", b"access_token=%ff", b"\xff&access_token=1"]) | st.binary(max_size=30)


@budget(500)
@given(st.lists(st.tuples(_HEADER_NAMES, authorization_values), max_size=3), _QUERIES)
def test_any_authorization_header_is_a_b64token_or_a_refusal(headers: list[tuple[bytes, bytes]],
                                                              query: bytes) -> None:
    try:
        token = bearer_token({"headers": headers, "query_string": query})
    except (NoToken, InvalidRequest) as refusal:
        assert refusal.reason and refusal.description.isascii()
        return
    assert _B64TOKEN.fullmatch(token) and len(token) <= 16 * 1024, token
    [value] = [v for n, v in headers if n == b"authorization"]
    assert token.encode() in value


# --- compact JWTs -------------------------------------------------------------------------------

_FAKE = FakeAuthorizationServer()
_KID = _FAKE.active.thumbprint()
_SIGNER = _FAKE.active.get_op_key("sign")
_DOCUMENTED_REASONS = {"not_a_jwt", "malformed_jwt", "algorithm_not_allowed", "wrong_typ", "crit_header",
                       "unknown_kid", "algorithm_mismatch", "bad_signature", "wrong_issuer", "wrong_audience",
                       "malformed_claims", "expired", "not_yet_valid", "unsupported_binding"}


def _es256(signing_input: bytes) -> bytes:
    assert isinstance(_SIGNER, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(_SIGNER.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _now() -> int:
    return int(time.time())


_HEADER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "alg": st.sampled_from(["ES256", "ES256", "none", "HS256", "RS256", "ES384", "EdDSA", "es256", ""]),
    "typ": st.sampled_from(["at+jwt", "at+jwt", "AT+JWT", "application/at+jwt", "JWT", ""]),
    "kid": st.sampled_from([_KID, _KID, "other", ""]),
    "crit": st.sampled_from([["exp"], [], "b64"]),
    "b64": st.booleans(),
}
_CLAIM_VALUES: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "iss": lambda: st.sampled_from([ISSUER, ISSUER, ISSUER + "/", "https://evil.example"]),
    "aud": lambda: st.sampled_from([AUDIENCE, [AUDIENCE], ["x", AUDIENCE], "x", [], [[AUDIENCE]]]),
    "sub": lambda: st.sampled_from(["alice", ""]),
    "client_id": lambda: st.sampled_from(["alice", ""]),
    "jti": lambda: st.text(min_size=1, max_size=8),
    "exp": lambda: st.sampled_from([_now() + 600, _now() - 600, _now() + 10**12, 1e308, "soon", True, 10**400]),
    "iat": lambda: st.sampled_from([_now(), _now() + 3600, -1, 0.5]),
    "nbf": lambda: st.sampled_from([_now() - 10, _now() + 3600]),
    "scope": lambda: st.sampled_from(["accounts:read", "a b", "", ["a"]]),
    "cnf": lambda: st.sampled_from([{"x5t#S256": "abc"}, {"jkt": "x"}, {"x5t#S256": ""}, "x", {}]),
}


@st.composite
def _mutated(draw: st.DrawFn, valid: dict[str, Any], plausible: dict[str, Any]) -> Any:
    """``valid`` with a few members replaced (by a plausible or any JSON value) or dropped, and
    now and then something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values | st.binary(max_size=20))
    out = dict(valid)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(plausible)))
        action = draw(st.sampled_from(["plausible", "plausible", "any", "drop"]))
        if action == "drop":
            out.pop(name, None)
        else:
            values = plausible[name]
            out[name] = draw((values() if callable(values) else values) if action == "plausible" else json_values)
    return out


def _segment(value: Any) -> str:
    return b64url(value if isinstance(value, bytes) else json.dumps(value).encode())


@st.composite
def jwt_like(draw: st.DrawFn) -> tuple[str, bool]:
    """A compact JWT-ish string and whether the AS's key signed exactly it."""
    header = draw(_mutated({"alg": "ES256", "typ": "at+jwt", "kid": _KID}, _HEADER_VALUES))
    payload = draw(_mutated(_FAKE.claims(cnf={"x5t#S256": "abc"}), _CLAIM_VALUES))
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    signed = draw(st.sampled_from(["real", "real", "real", "random", "empty", "flipped"]))
    if signed == "real":
        signature = _es256(signing_input.encode())
    elif signed == "flipped":
        good = bytearray(_es256(signing_input.encode()))
        good[draw(st.integers(0, 63))] ^= 1 << draw(st.integers(0, 7))
        signature = bytes(good)
    else:
        signature = draw(st.binary(min_size=0, max_size=80)) if signed == "random" else b""
    token = pristine = f"{signing_input}.{b64url(signature)}"
    mangle = draw(st.sampled_from(["none"] * 10 + ["pad", "dot", "drop", "chars", "std-b64"]))
    if mangle == "pad":
        token += "=="
    elif mangle == "dot":
        token += "."
    elif mangle == "drop":
        token = token.rpartition(".")[0]
    elif mangle == "chars":
        position = draw(st.integers(0, len(token)))
        token = token[:position] + draw(st.sampled_from(["~", "+", "/", "=", "%", " ", "\x00"])) + token[position:]
    elif mangle == "std-b64":
        token = token.replace("-", "+").replace("_", "/")
    # A mangling may change nothing (no "-" or "_" to replace): what counts is the string.
    return token, signed == "real" and token == pristine


def _check_verdict(verdict: AccessToken | InvalidToken, token: str, really_signed: bool) -> None:
    if isinstance(verdict, InvalidToken):
        assert verdict.reason in _DOCUMENTED_REASONS, (verdict.reason, verdict.detail)
        return
    # Accepted: then it is what the authorization server signed, and it says what it must.
    assert really_signed, token
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["typ"].lower() in ("at+jwt", "application/at+jwt")
    assert "crit" not in header
    claims = verdict.claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE or AUDIENCE in claims["aud"]
    assert verdict.expires_at > time.time() - 30 and all(claims.get(n) is not None for n in ("sub", "client_id",
                                                                                                  "iat", "jti"))


def test_any_compact_jwt_is_refused_as_invalid_token_unless_really_signed() -> None:
    with asyncio.Runner() as runner:
        validator = jwt_validator(_FAKE)

        async def verdict(token: str) -> AccessToken | InvalidToken:
            try:
                return await validator.validate(token)
            except InvalidToken as refusal:
                return refusal

        seen: Counter[str] = Counter()

        @budget(500)
        @given(jwt_like())
        def check(case: tuple[str, bool]) -> None:
            token, really_signed = case
            result = runner.run(verdict(token))
            seen[result.reason if isinstance(result, InvalidToken) else "accepted"] += 1
            _check_verdict(result, token, really_signed)

        try:
            check()
        finally:
            runner.run(validator.aclose())
        # Not vacuous: tokens got deep enough to be accepted, and to be refused for their claims.
        claims_refusals = ("wrong_issuer", "wrong_audience", "malformed_claims", "expired", "not_yet_valid")
        assert seen["accepted"] and seen["bad_signature"] and sum(seen[r] for r in claims_refusals), seen


@budget(300)
@given(st.dictionaries(st.sampled_from(["exp", "nbf", "iat", "scope", "client_id", "sub", "jti", "cnf", "x"]),
                       json_values), st.sampled_from(["jwt", "introspection"]))
def test_any_claims_are_an_access_token_or_invalid_token(claims: dict[str, Any], source: Any) -> None:
    try:
        token = AccessToken.from_claims(claims, source)
    except InvalidToken as refusal:
        assert refusal.reason in _DOCUMENTED_REASONS, refusal.reason
        return
    assert isinstance(token.scopes, frozenset) and token.expires_at == token.expires_at  # not NaN
