"""No request input makes the middleware answer 500 or skip its log line: every refusal is
400/401/403 with a Bearer challenge and exactly one ``bearer_token_refused`` line.

Requests are driven straight through ASGI, so header bytes that an HTTP client library
would refuse to send (NUL, 8-bit, lone CR) reach the middleware as a server could pass
them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc import jws

from authz_resource import AccessToken, TokenValidator
from tests.resource.conftest import RecordingLog
from tests.resource.fake_as import FakeAuthorizationServer, b64url, unsigned
from tests.resource.inprocess import Harness, chain_of, harness, thumbprint
from tests.support.pki import Issued, TestCA


@pytest.fixture(scope="module")
def alice() -> Issued:
    return TestCA().issue("CN=alice,O=t")


async def asgi_call(h: Harness, headers: list[tuple[bytes, bytes]], *, method: str = "GET", path: str = "/whoami",
                    query: bytes = b"", body: bytes = b"", kind: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query, "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 443)}
    await h.tls(scope, receive, send)
    return sent


def signed_payload(fake: FakeAuthorizationServer, payload: bytes) -> str:
    """A JWS with a valid signature of the AS's key over an arbitrary payload."""
    header = {"alg": "ES256", "typ": "at+jwt", "kid": fake.active.thumbprint()}
    return jws.serialize_compact(header, payload, fake.active, algorithms=["ES256"])


def hostile_tokens(fake: FakeAuthorizationServer, alice_thumbprint: str) -> dict[str, bytes]:
    kid = fake.active.thumbprint()
    claims = fake.claims(cnf={"x5t#S256": alice_thumbprint})
    signature = b"x" * 64
    tokens: dict[str, str | bytes] = {
        "non-ascii": b"\xc3\xa9t\xc3\xa9",
        "latin-1": b"\xff\xfe\xfd",
        "nul": b"abc\x00def",
        "cr": b"abc\rdef",
        "tab": b"abc\tdef",
        "huge": b"a" * 100_000,
        "dots-only": b"..",
        "four-dots": b"....",
        "empty-segments": b".e30.",
        "header-not-json": b"bm90anNvbg.e30.e30",
        "header-json-string": b64url(b'"x"') + ".e30.e30",
        "header-null": b64url(b"null") + ".e30.e30",
        "header-empty-object": b"e30.e30.e30",
        "deep-header": b64url(b"[" * 5000 + b"]" * 5000) + ".e30.e30",
        "alg-list": unsigned({"alg": ["ES256"], "typ": "at+jwt", "kid": kid}, claims, signature),
        "alg-object": unsigned({"alg": {"ES256": 1}, "typ": "at+jwt", "kid": kid}, claims, signature),
        "alg-none": unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, claims),
        "alg-non-ascii": unsigned({"alg": "\u00e9" * 200, "typ": "at+jwt", "kid": kid}, claims, signature),
        "typ-list": unsigned({"alg": "ES256", "typ": ["at+jwt"], "kid": kid}, claims, signature),
        "kid-object": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": {"a": 1}}, claims, signature),
        "kid-huge": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": "k" * 8000}, claims, signature),
        "crit-garbage": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": kid, "crit": [[]]}, claims, signature),
        "b64-false": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": kid, "b64": False}, claims, signature),
        "signature-not-base64": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": kid}, claims) + "!!!!",
        "signature-empty": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": kid}, claims),
        "signature-short": unsigned({"alg": "ES256", "typ": "at+jwt", "kid": kid}, claims, b"x"),
        "payload-not-json": signed_payload(fake, b"not json"),
        "payload-list": signed_payload(fake, b"[1, 2, 3]"),
        "payload-null": signed_payload(fake, b"null"),
        "payload-deep": signed_payload(fake, b"[" * 5000 + b"]" * 5000),
        "payload-not-utf8": signed_payload(fake, b"\xff\xfe{}"),
        "cnf-string": fake.sign(fake.claims(cnf="x5t#S256")),
        "cnf-list": fake.sign(fake.claims(cnf=[alice_thumbprint])),
        "cnf-empty": fake.sign(fake.claims(cnf={})),
        "cnf-thumbprint-empty": fake.sign(fake.claims(cnf={"x5t#S256": ""})),
        "cnf-thumbprint-object": fake.sign(fake.claims(cnf={"x5t#S256": {"a": 1}})),
        "cnf-thumbprint-non-ascii": fake.sign(fake.claims(cnf={"x5t#S256": "\u00e9" * 43})),
        "scope-list": fake.sign(fake.claims(cnf={"x5t#S256": alice_thumbprint}, scope=["accounts:read"])),
        "aud-object": fake.sign(fake.claims(aud={"https://api.test": True})),
        "iss-list": fake.sign(fake.claims(iss=["https://as.test"])),
        "exp-nan": fake.sign(fake.claims(exp=float("nan"))),
        "exp-huge": fake.sign(fake.claims(exp=10**400)),
        "sub-number": fake.sign(fake.claims(cnf={"x5t#S256": alice_thumbprint}, sub=5)),
    }
    return {name: token if isinstance(token, bytes) else token.encode() for name, token in tokens.items()}


HOSTILE_NAMES = list(hostile_tokens(FakeAuthorizationServer(), "t"))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_tokens_are_refused_and_logged(h: Harness, alice: Issued, refusal_log: RecordingLog,
                                                     name: str) -> None:
    token = hostile_tokens(h.fake, thumbprint(alice))[name]
    sent = await asgi_call(h, [(b"authorization", b"Bearer " + token)])
    start = sent[0]
    assert start["type"] == "http.response.start" and start["status"] in (400, 401), (name, sent)
    headers = dict(start["headers"])
    assert headers[b"www-authenticate"].startswith(b'Bearer realm="test"')
    headers[b"www-authenticate"].decode("ascii")
    body = json.loads(sent[1]["body"])
    assert isinstance(body["error_description"], str)
    [line] = refusal_log.refusals()
    assert line["status"] == start["status"] and line["reason"]


@pytest.mark.parametrize("value", [
    b"", b" ", b"Bearer", b"Bearer ", b"bearer\t", b"Bearer\x00abc", b"\xff\xfe", b"Bearer \xff",
    b"Basic \xff", b"Bearer a b c", b"Bearer ==", b'Bearer "abc"', b"Bearer abc\r\nX-Injected: 1",
    b"Bearer " + b"=" * 20000, b"\xe2\x80\x8bBearer abc",
], ids=repr)
async def test_garbage_authorization_headers(h: Harness, refusal_log: RecordingLog, value: bytes) -> None:
    sent = await asgi_call(h, [(b"authorization", value)])
    assert sent[0]["status"] in (400, 401), sent
    [line] = refusal_log.refusals()
    assert line["status"] == sent[0]["status"]


@pytest.mark.parametrize("query", [
    b"access_token=abc", b"access_token=\xff", b"%61ccess_token=abc", b"a=1&access_token", b"&&&&" * 5000,
    b"access_token=" + b"a" * 100_000, b"x=%ZZ&access_token=1",
], ids=lambda q: repr(q[:30]))
async def test_hostile_query_strings(h: Harness, alice: Issued, refusal_log: RecordingLog, query: bytes) -> None:
    token = h.fake.token(thumbprint(alice)).encode()
    sent = await asgi_call(h, [(b"authorization", b"Bearer " + token)], query=query)
    assert sent[0]["status"] in (200, 400), sent
    if sent[0]["status"] == 400:
        [line] = refusal_log.refusals()
        assert line["reason"] == "token_in_query"


async def test_token_in_the_form_body_is_not_accepted(h: Harness, alice: Issued, refusal_log: RecordingLog) -> None:
    """RFC 6750 §2.2 is not supported: a body token is never read, so the request has no token."""
    token = h.fake.token(thumbprint(alice), scope="accounts:write")
    response = await h.client.post("/write", data={"access_token": token})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="test"'
    assert "written" not in response.text
    [line] = refusal_log.refusals()
    assert line["reason"] == "no_authorization"


async def test_token_in_the_query_is_not_accepted_without_a_header(h: Harness, alice: Issued) -> None:
    token = h.fake.token(thumbprint(alice))
    response = await h.client.get("/whoami", params={"access_token": token})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert "client_id" not in response.text


async def test_websocket_close_reason_stays_ascii_and_short(h: Harness, alice: Issued) -> None:
    token = hostile_tokens(h.fake, thumbprint(alice))["alg-non-ascii"]
    sent = await asgi_call(h, [(b"authorization", b"Bearer " + token)], kind="websocket", path="/ws")
    [close] = sent
    assert close["type"] == "websocket.close" and close["code"] == 1008
    assert len(close["reason"].encode("utf-8")) <= 123 and close["reason"].isascii()


class ExplodingValidator(TokenValidator):
    async def validate(self, token: str) -> AccessToken:
        raise RuntimeError("a bug in a validator, secret=do-not-show")


async def test_an_unexpected_validator_error_is_a_logged_401_not_a_500(fake: FakeAuthorizationServer,
                                                                       refusal_log: RecordingLog) -> None:
    setup = harness(fake, validator=ExplodingValidator())
    response = await setup.get(token="abc")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": "the access token could not be verified"}
    assert "do-not-show" not in response.text
    [line] = refusal_log.refusals()
    assert line["reason"] == "verification_error" and "RuntimeError" in line["detail"]
    level = next(level for level, event, _ in refusal_log.lines if event == "bearer_token_refused")
    assert level == "error"
    assert "ExplodingValidator" in line["traceback"] or "validate" in line["traceback"]


class CollidingValidator(TokenValidator):
    async def validate(self, token: str) -> AccessToken:
        from authz_resource import InvalidToken

        raise InvalidToken("custom", "refused by a custom validator", status="clash", path="/clash", cert="clash")


async def test_refusal_log_fields_may_reuse_standard_names(fake: FakeAuthorizationServer,
                                                           refusal_log: RecordingLog) -> None:
    setup = harness(fake, validator=CollidingValidator())
    response = await setup.get(token="abc")
    assert response.status_code == 401 and response.json()["error_description"] == "refused by a custom validator"
    [line] = refusal_log.refusals()
    assert line["reason"] == "custom"


async def test_application_errors_are_not_swallowed(fake: FakeAuthorizationServer, alice: Issued) -> None:
    from starlette.routing import Route

    async def broken(request: Any) -> Any:
        raise LookupError("the application's own bug")

    setup = harness(fake, routes=lambda: [Route("/whoami", broken)])
    setup.tls.chain = chain_of(alice)
    with pytest.raises(LookupError):
        await setup.get(token=fake.token(thumbprint(alice)))
