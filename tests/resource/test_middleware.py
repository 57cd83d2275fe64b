"""BearerTokenMiddleware in-process: RFC 6750 answers, RFC 8705 binding, scopes, logging.
The client certificate is injected as the ASGI TLS extension (the wire tests cover the
same paths through real handshakes)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authz.certificates.presented import presented_certificate
from authz_resource import RequireScopes, require_scopes
from tests.resource.conftest import RecordingLog
from tests.resource.fake_as import FakeAuthorizationServer
from tests.resource.inprocess import Harness, chain_of, harness, introspection_validator, jwt_validator, thumbprint
from tests.support.pki import Issued, TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def alice(ca: TestCA) -> Issued:
    return ca.issue("CN=alice,O=t")


@pytest.fixture(scope="module")
def bob(ca: TestCA) -> Issued:
    return ca.issue("CN=bob,O=t")


async def test_bound_token_reaches_the_app_as_request_auth(h: Harness, alice: Issued) -> None:
    response = await h.get(token=h.fake.token(thumbprint(alice), scope="accounts:read accounts:write"))
    assert response.status_code == 200, response.text
    assert response.json() == {"client_id": "alice", "scopes": ["accounts:read", "accounts:write"], "source": "jwt"}


async def test_replay_with_another_certificate(h: Harness, alice: Issued, bob: Issued,
                                               refusal_log: RecordingLog) -> None:
    h.tls.chain = chain_of(bob)
    response = await h.get(token=h.fake.token(thumbprint(alice)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="test", error="invalid_token", error_description="the client certificate does not match '
        "the token's binding (cnf x5t#S256)\""
    )
    [line] = refusal_log.refusals()
    assert line["reason"] == "certificate_mismatch" and line["status"] == 401
    assert thumbprint(alice) in line["detail"] and thumbprint(bob) in line["detail"]
    assert line["cert_subject"] == "CN=bob,O=t" and line["client_id"] == "alice" and line["path"] == "/whoami"


@pytest.mark.parametrize("chain", [None, []], ids=["no-tls", "tls-without-certificate"])
async def test_no_client_certificate(h: Harness, alice: Issued, chain: list[str] | None,
                                     refusal_log: RecordingLog) -> None:
    h.tls.chain = chain
    response = await h.get(token=h.fake.token(thumbprint(alice)))
    assert response.status_code == 401
    assert "no client certificate was presented" in response.json()["error_description"]
    assert refusal_log.refusals()[0]["cert"] is None


async def test_unparsable_client_certificate(h: Harness, alice: Issued, refusal_log: RecordingLog,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from authz_resource import binding

    reads: list[object] = []

    def counted(scope: Any) -> Any:
        reads.append(scope)
        return presented_certificate(scope)

    monkeypatch.setattr(binding, "presented_certificate", counted)
    h.tls.chain = ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]
    response = await h.get(token=h.fake.token(thumbprint(alice)))
    assert response.status_code == 401
    assert "could not be parsed" in response.json()["error_description"]
    [line] = refusal_log.refusals()
    assert line["reason"] == "unparsable_certificate" and line["cert"] == "unparsable"
    assert len(reads) == 1  # the log line does not parse it a second time


async def test_unbound_tokens_refused_unless_allowed(fake: FakeAuthorizationServer, alice: Issued) -> None:
    token = fake.token(None)
    strict = harness(fake)
    strict.tls.chain = chain_of(alice)
    response = await strict.get(token=token)
    assert response.status_code == 401 and "not bound" in response.json()["error_description"]
    lenient = harness(fake, allow_unbound_tokens=True)
    lenient.tls.chain = None
    assert (await lenient.get(token=token)).status_code == 200
    # a bound token is still checked in lenient mode
    assert (await lenient.get(token=fake.token(thumbprint(alice)))).status_code == 401


async def test_unknown_confirmation_method_is_not_treated_as_unbound(fake: FakeAuthorizationServer) -> None:
    lenient = harness(fake, allow_unbound_tokens=True)
    token = fake.sign(fake.claims(cnf={"jkt": "abc"}))
    response = await lenient.get(token=token)
    assert response.status_code == 401 and "other than x5t#S256" in response.json()["error_description"]


@pytest.mark.parametrize(("headers", "query", "status", "error"), [
    ({}, "", 401, None),
    ({"authorization": "Basic YTpi"}, "", 401, None),
    ({"authorization": "Bearer"}, "", 400, "invalid_request"),
    ({"authorization": "Bearer "}, "", 400, "invalid_request"),
    ({"authorization": "Bearer a b"}, "", 400, "invalid_request"),
    ({"authorization": "Bearer a\"b"}, "", 400, "invalid_request"),
    ({"authorization": "Bearer a=b"}, "", 400, "invalid_request"),
    ({"authorization": "Bearer =="}, "", 400, "invalid_request"),
    ({"authorization": "Bearer " + "a" * 20000}, "", 400, "invalid_request"),
    ({}, "access_token=abc", 400, "invalid_request"),
    ({}, "x=1&access_token=abc", 400, "invalid_request"),
])
async def test_rfc6750_request_errors(h: Harness, headers: dict[str, str], query: str, status: int,
                                      error: str | None) -> None:
    response = await h.client.get("/whoami" + (f"?{query}" if query else ""), headers=headers)
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    if error is None:
        assert challenge == 'Bearer realm="test"'
        assert "error" not in response.json()
    else:
        assert challenge.startswith(f'Bearer realm="test", error="{error}", error_description="')
        assert response.json()["error"] == error
        # The description is RFC 6750 §3 ASCII as written: header and body say the same thing.
        assert f'error_description="{response.json()["error_description"]}"' in challenge
    assert response.headers["cache-control"] == "no-store"


async def test_scheme_is_case_insensitive_and_spaces_tolerated(h: Harness, alice: Issued) -> None:
    token = h.fake.token(thumbprint(alice))
    for value in (f"bearer {token}", f"BEARER   {token}"):
        assert (await h.client.get("/whoami", headers={"authorization": value})).status_code == 200


async def test_repeated_authorization_header(h: Harness, alice: Issued) -> None:
    token = h.fake.token(thumbprint(alice))
    response = await h.client.get("/whoami", headers=[("authorization", f"Bearer {token}"),
                                                      ("authorization", f"Bearer {token}")])
    assert response.status_code == 400 and "more than one Authorization" in response.json()["error_description"]


async def test_query_parameter_with_a_similar_name_is_not_a_token(h: Harness, alice: Issued) -> None:
    response = await h.get("/whoami?my_access_token=1", token=h.fake.token(thumbprint(alice)))
    assert response.status_code == 200


async def test_exempt_paths_are_exact(h: Harness) -> None:
    assert (await h.client.get("/open")).json() == {"open": True, "auth": False}
    assert (await h.client.get("/open/")).status_code == 401
    assert (await h.client.get("/open?access_token=x")).status_code == 200  # not looked at


async def test_route_scopes_403(h: Harness, alice: Issued, refusal_log: RecordingLog) -> None:
    response = await h.client.post("/write", headers={
        "authorization": f"Bearer {h.fake.token(thumbprint(alice), scope='accounts:read')}"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="test", error="insufficient_scope", error_description="the access token lacks the scope '
        'this resource needs: accounts:write", scope="accounts:write"'
    )
    assert response.json() == {"error": "insufficient_scope", "scope": "accounts:write",
                               "error_description": "the access token lacks the scope this resource needs: "
                                                    "accounts:write"}
    [line] = refusal_log.refusals()
    assert line["status"] == 403 and line["client_id"] == "alice"
    ok = await h.client.post("/write", headers={
        "authorization": f"Bearer {h.fake.token(thumbprint(alice), scope='accounts:write')}"})
    assert ok.status_code == 200


async def test_middleware_wide_required_scopes(fake: FakeAuthorizationServer, alice: Issued) -> None:
    setup = harness(fake, required_scopes={"admin"})
    setup.tls.chain = chain_of(alice)
    response = await setup.get(token=fake.token(thumbprint(alice)))
    assert response.status_code == 403 and 'scope="admin"' in response.headers["www-authenticate"]


class Accounts(HTTPEndpoint):
    @require_scopes("accounts:read")
    async def get(self, request: Request) -> JSONResponse:
        return JSONResponse({"kind": "endpoint"})


@require_scopes("accounts:read")
def sync_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"kind": "sync"})


def dependency_endpoint(request: Request) -> JSONResponse:
    token = RequireScopes("accounts:write")(request)  # what FastAPI's Depends() would call
    return JSONResponse({"kind": "dependency", "client_id": token.client_id})


def variant_routes() -> list[Route]:
    return [Route("/endpoint", Accounts), Route("/sync", sync_endpoint), Route("/dependency", dependency_endpoint)]


@pytest.mark.parametrize("path", ["/endpoint", "/sync", "/dependency"])
async def test_scope_declarations_in_every_form(fake: FakeAuthorizationServer, alice: Issued, path: str) -> None:
    setup = harness(fake, routes=variant_routes)
    setup.tls.chain = chain_of(alice)
    needed = "accounts:write" if path == "/dependency" else "accounts:read"
    denied = await setup.get(path, token=fake.token(thumbprint(alice), scope="other"))
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert f'scope="{needed}"' in denied.headers["www-authenticate"]
    allowed = await setup.get(path, token=fake.token(thumbprint(alice), scope=needed))
    assert allowed.status_code == 200, allowed.text


async def test_scope_check_without_the_middleware_fails_closed(h: Harness) -> None:
    # /open is exempt, so no token was verified: the decorated route must not run.
    setup = harness(h.fake, routes=lambda: [Route("/open", require_scopes("x")(sync_endpoint))])
    response = await setup.client.get("/open")
    assert response.status_code == 401 and response.headers["www-authenticate"] == 'Bearer realm="test"'


def test_scope_declarations_are_validated() -> None:
    for bad in ((), ("",), ("a b",), ('a"',)):
        with pytest.raises(ValueError, match="scope tokens"):
            require_scopes(*bad)


async def test_websocket_without_token_is_closed(h: Harness) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b"", "client": ("127.0.0.1", 1)}
    await h.tls(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": sent[0]["reason"]}]


async def test_lifespan_warms_up_and_closes(fake: FakeAuthorizationServer) -> None:
    setup = harness(fake)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await setup.middleware({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert fake.hits["/jwks"] == 1  # fetched at start-up, before any request


async def test_as_unreachable_is_503_not_invalid_token(fake: FakeAuthorizationServer, alice: Issued,
                                                       refusal_log: RecordingLog) -> None:
    fake.down = True
    setup = harness(fake, validator=jwt_validator(fake, jwks_refresh_cooldown=0))
    setup.tls.chain = chain_of(alice)
    token = fake.token(thumbprint(alice))
    response = await setup.get(token=token)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "www-authenticate" not in response.headers
    assert refusal_log.refusals()[0]["reason"] == "metadata_unreachable"
    fake.down = False
    assert (await setup.get(token=token)).status_code == 200


async def test_metadata_for_another_issuer_is_not_trusted(fake: FakeAuthorizationServer, alice: Issued,
                                                          refusal_log: RecordingLog) -> None:
    fake.metadata_issuer = "https://evil.test"
    setup = harness(fake)
    setup.tls.chain = chain_of(alice)
    assert (await setup.get(token=fake.token(thumbprint(alice)))).status_code == 503
    assert refusal_log.refusals()[0]["reason"] == "metadata_issuer_mismatch"
    assert fake.hits["/jwks"] == 0


async def test_revoked_token_in_introspection_mode(fake: FakeAuthorizationServer, alice: Issued,
                                                   refusal_log: RecordingLog) -> None:
    now = [time.time()]
    validator = introspection_validator(fake, cache_ttl=5, clock=lambda: now[0])
    setup = harness(fake, validator=validator)
    setup.tls.chain = chain_of(alice)
    fake.introspection["opaque-1"] = {"active": True, "token_type": "Bearer",
                                      **fake.claims(cnf={"x5t#S256": thumbprint(alice)})}
    assert (await setup.get(token="opaque-1")).status_code == 200
    fake.introspection["opaque-1"] = {"active": False}  # revoked at the authorization server
    assert (await setup.get(token="opaque-1")).status_code == 200  # cached answer, for cache_ttl at most
    now[0] += 6
    response = await setup.get(token="opaque-1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="test", error="invalid_token", '
                                                           'error_description="the access token is not active')
    assert refusal_log.refusals()[-1]["reason"] == "inactive"


async def test_binding_is_compared_in_constant_time(h: Harness, alice: Issued, bob: Issued,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording_compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("authz_resource.binding.hmac.compare_digest", recording_compare_digest)
    token = h.fake.token(thumbprint(alice))
    assert (await h.get(token=token)).status_code == 200
    h.tls.chain = chain_of(bob)
    assert (await h.get(token=token)).status_code == 401
    assert compared == [(thumbprint(alice).encode(), thumbprint(alice).encode()),
                        (thumbprint(alice).encode(), thumbprint(bob).encode())]
