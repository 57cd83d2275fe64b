"""The sample API behind ``BearerTokenMiddleware`` end to end in process (JWT validation, opaque
tokens introspected at a fake authorization server): any method, path, headers, token,
certificate and body.

Properties: never a 500; every 4xx is JSON with an ``error`` (except RFC 6750 §3.1's answer to
a request without a token, which has none and says so in its challenge); a refusal of the
middleware carries a well-formed ``WWW-Authenticate: Bearer`` challenge; and a protected route
answers 2xx only to a valid token bound to the certificate of the connection."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from authz_resource.sample.app import create_app
from tests.fuzz.asgi import QUERIES, Answer, check_error_answer, exchange, require_seen
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import chance, json_values
from tests.fuzz.test_bearer import _FAKE, jwt_like
from tests.resource.fake_as import FakeAuthorizationServer
from tests.resource.inprocess import chain_of, introspection_validator, jwt_validator, thumbprint
from tests.support.pki import TestCA

_CA = TestCA()
_ALICE = _CA.issue("CN=alice,O=t")
_MALLORY = _CA.issue("CN=mallory,O=t")

# RFC 6750 §3: realm, then error and error_description (and scope), quoted strings of
# printable ASCII without '"' and '\'.
_QUOTED = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_CHALLENGE = re.compile(rf'Bearer realm={_QUOTED}(, error="[a-z_]+", error_description={_QUOTED}'
                        rf'(, scope={_QUOTED})?)?')
_PROTECTED = ("/accounts", "/accounts/acc-1001", "/accounts/acc-0000")


def _tokens(fake: FakeAuthorizationServer) -> dict[str, str]:
    """Tokens by what they should get: "valid" ones are bound to alice's certificate."""
    everything = "accounts:read accounts:write"
    bound = {"x5t#S256": thumbprint(_ALICE)}
    fake.introspection["opaque-valid"] = {"active": True, **fake.claims(scope=everything, cnf=bound)}
    fake.introspection["opaque-read"] = {"active": True, **fake.claims(cnf=bound)}
    fake.introspection["opaque-unbound"] = {"active": True, **fake.claims(scope=everything)}
    return {
        "valid": fake.token(thumbprint(_ALICE), scope=everything),
        "valid-read": fake.token(thumbprint(_ALICE)),
        "opaque-valid": "opaque-valid",
        "opaque-read": "opaque-read",
        "unbound": fake.sign(fake.claims(scope=everything)),
        "mallory": fake.token(thumbprint(_MALLORY), scope=everything),
        "expired": fake.token(thumbprint(_ALICE), exp=1, iat=0),
        "wrong-audience": fake.token(thumbprint(_ALICE), aud="https://other.example"),
        "opaque-unbound": "opaque-unbound",
        "opaque-unknown": "opaque-unknown",
    }


_ACCOUNTS = st.sampled_from([{"owner": "Ada", "currency": "EUR"}, {"owner": "Ada"}]) | st.fixed_dictionaries(
    {}, optional={"owner": st.sampled_from(["Ada", "", "x" * 201]) | json_values,
                  "currency": st.sampled_from(["EUR", "eur", "XXX", ""]) | json_values}) | json_values


@st.composite
def requests(draw: st.DrawFn, tokens: dict[str, str]) -> dict[str, Any]:
    # The routes first (weighted by repetition), then any method on any path.
    route = draw(st.sampled_from([("GET", "/accounts"), ("POST", "/accounts"), ("GET", "/accounts/acc-1001")] * 2
                                 + [("GET", "/accounts/acc-0000"), ("GET", "/health"), None, None, None]))
    if route is not None:
        method, path = route
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
        path = draw(st.sampled_from([*_PROTECTED, "/health", "/accounts/", "/nowhere", "/", "/accounts/x/y"]))
    headers: list[tuple[bytes, bytes]] = []
    kind = draw(st.sampled_from(["valid", "valid", "opaque-valid", "valid-read", "fuzzed", "fuzzed", "other", "none",
                                 "raw"]))
    if kind == "other":
        kind = draw(st.sampled_from(sorted(tokens)))
    if kind in tokens:
        headers.append((b"authorization", b"Bearer " + tokens[kind].encode()))
    elif kind == "fuzzed":
        headers.append((b"authorization", b"Bearer " + draw(jwt_like())[0].encode()))
    elif kind == "raw":
        headers.append((b"authorization", draw(st.binary(max_size=40))))
    body = draw(st.sampled_from(["json", "json", "raw", "none", "deep", "large"]))
    if body == "json":
        chunks = [json.dumps(draw(_ACCOUNTS)).encode()]
    elif body == "raw":
        chunks = [draw(st.binary(max_size=60))]
    elif body == "deep":
        chunks = [b"[" * 20_000 + b"]" * 20_000]
    elif body == "large":
        chunks = [b"x" * 10_000] * draw(st.integers(1, 4))
    else:
        chunks = [b""]
    headers.append((b"content-type", draw(st.sampled_from([b"application/json", b"text/plain", b"\xff"]))))
    if draw(chance(1, 5)):
        headers += draw(st.lists(st.tuples(st.binary(min_size=1, max_size=8).map(bytes.lower),
                                           st.binary(max_size=16)), max_size=2))
    chain = draw(st.sampled_from(["alice", "alice", "alice", "mallory", "none", "garbage"]))
    return {
        "method": method, "path": path, "headers": headers, "chunks": chunks,
        "query": draw(QUERIES) if draw(chance(1, 5)) else b"",
        "tls": None if chain == "none" else {"client_cert_chain": ["garbage"] if chain == "garbage" else
                                             chain_of(_ALICE if chain == "alice" else _MALLORY)},
        "token": kind, "chain": chain,
    }


def _check(request: dict[str, Any], answer: Answer) -> str:
    assert answer.status < 500, (request, answer.status, answer.body)
    challenge = answer.headers.get(b"www-authenticate")
    if challenge is not None:
        assert _CHALLENGE.fullmatch(challenge.decode("ascii")), challenge
    if answer.status >= 400:
        from_middleware = challenge is not None
        # RFC 6750 §3.1: a request without a token gets a challenge without an error code.
        no_token = answer.status == 401 and challenge is not None and b"error=" not in challenge
        # The router's 404 and 405 are the authorization server's JSON refusals; the routes' own
        # answers (an unknown account's 404, 413, 422) only promise an error code.
        routed = request["path"].startswith("/accounts/acc-") and request["method"] == "GET"
        router_refusal = answer.status == 405 or (answer.status == 404 and not routed)
        document = check_error_answer(answer, error_required=not no_token, oauth=from_middleware or router_refusal,
                                      rfc6749_description=router_refusal)
        return f"{answer.status} {document.get('error', '(no token)')}"
    document = answer.json()
    if request["path"] != "/health":
        # Served: only with a valid token bound to the certificate on the connection, and a
        # write only with a token that grants it.
        bound_to = {"valid": "alice", "valid-read": "alice", "opaque-valid": "alice", "opaque-read": "alice",
                    "mallory": "mallory"}
        assert bound_to.get(request["token"]) == request["chain"], (request["token"], request["chain"])
        if request["method"] == "POST":
            assert request["token"] in ("valid", "opaque-valid", "mallory"), request["token"]
    return f"{answer.status} {request['method']} {document.get('status') or request['path']}"


def _request(tokens: dict[str, str], method: str, path: str, kind: str, body: bytes = b"") -> dict[str, Any]:
    """A request of alice's, with her certificate and the token of ``kind``."""
    return {"method": method, "path": path, "headers": [(b"authorization", b"Bearer " + tokens[kind].encode())],
            "chunks": [body], "query": b"", "tls": {"client_cert_chain": chain_of(_ALICE)}, "token": kind,
            "chain": "alice"}


def test_no_request_makes_the_sample_api_answer_500() -> None:
    fake = _FAKE  # the authorization server whose key signs jwt_like()'s tokens
    tokens = _tokens(fake)
    with asyncio.Runner() as runner:
        validator = jwt_validator(fake, opaque=introspection_validator(fake))
        app = create_app(validator, realm="accounts")
        seen: Counter[str] = Counter()

        # The answers the properties check for their content, whatever hypothesis generates.
        @example(_request(tokens, "GET", "/accounts", "valid"))
        @example(_request(tokens, "POST", "/accounts", "valid", b'{"owner": "Ada", "currency": "EUR"}'))
        @example(_request(tokens, "POST", "/accounts", "valid-read", b'{"owner": "Ada"}'))
        @example(_request(tokens, "POST", "/accounts", "valid", b'{"owner": ""}'))
        @example(_request(tokens, "GET", "/accounts/acc-0000", "opaque-valid"))
        @budget(600, deadline_ms=2000)
        @given(requests(tokens))
        def check(request: dict[str, Any]) -> None:
            request = dict(request)
            kind, chain = request.pop("token"), request.pop("chain")
            answer = runner.run(exchange(app, **request))
            seen[_check({**request, "token": kind, "chain": chain}, answer)] += 1

        try:
            check()
        finally:
            runner.run(validator.aclose())
    require_seen(seen, ("200 GET", "201 POST", "401 invalid_token", "401 (no token)", "403 insufficient_scope", "404 ",
                 "405 ", "422 "))
