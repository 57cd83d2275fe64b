"""The endpoints in-process, with the client certificate injected as the ASGI TLS extension
(the wire tests cover the same paths through real handshakes)."""

import asyncio
import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import KeySet

from authz.app import create_app
from authz.certificates.rejection import RejectionReason
from authz.context import ServerContext
from authz.endpoints import failure
from authz.endpoints.failure import SERVER_ERROR, STORE_UNAVAILABLE
from authz.keys.signing import SigningKeys
from authz.oauth import client_auth
from authz.settings import Settings
from authz.storage.base import StorageError
from authz.tokens.compact_signer import ES256CompactSigner
from tests.support.pki import Issued, TestCA

ISSUER = "https://as.example"


class InjectCertificate:
    """ASGI wrapper playing the TLS layer: puts ``chain`` into every request's scope."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chain: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {"tls": {"client_cert_chain": self.chain}}
        await self.app(scope, receive, send)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, InjectCertificate, Issued, ServerContext]]:
    ca = TestCA()
    anchor = ca.write(tmp_path / "ca.pem")
    settings = Settings(data_dir=tmp_path / "data", issuer=ISSUER, trust_anchors=[anchor], log_level="error")
    context = ServerContext.build(settings)
    app = create_app(settings, context)
    await context.start()
    await context.clients.register({"client_id": "pki", "token_endpoint_auth_method": "tls_client_auth",
                                    "tls_client_auth_subject_dn": "CN=pki,O=t", "scope": "read write"})
    wrapper = InjectCertificate(app)
    transport = httpx.ASGITransport(app=wrapper)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client, wrapper, ca.issue("CN=pki,O=t"), context
    await context.stop()


def pem(issued: Issued) -> list[str]:
    return [issued.cert.public_bytes(serialization.Encoding.PEM).decode()]


async def test_token_is_bound_and_verifiable(setup: Any) -> None:
    client, wrapper, cert, context = setup
    wrapper.chain = pem(cert)
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki",
                                                 "scope": "read"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "read" and body["token_type"] == "Bearer"
    decoded = jwt.decode(body["access_token"], KeySet.import_key_set(context.keys.jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["cnf"]["x5t#S256"]
    assert decoded.claims["aud"] == ISSUER and decoded.claims["sub"] == "pki"


async def test_concurrent_token_requests_each_get_their_own_valid_token(setup: Any) -> None:
    # Their signatures are made together (authz.tokens.signature_batch): none may get another's.
    client, wrapper, cert, context = setup
    wrapper.chain = pem(cert)
    responses = await asyncio.gather(*(
        client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki", "scope": scope})
        for scope in ["read", "write", "read write"] * 4
    ))
    keys = KeySet.import_key_set(context.keys.jwks)
    claims = [jwt.decode(r.json()["access_token"], keys, algorithms=["ES256"]).claims for r in responses]
    assert [c["scope"] for c in claims] == [r.json()["scope"] for r in responses] == ["read", "write", "read write"] * 4
    assert len({c["jti"] for c in claims}) == 12


async def test_a_failed_signature_is_a_json_500_without_details(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, wrapper, cert, _ = setup
    wrapper.chain = pem(cert)

    def broken(self: Any, signing_input: bytes) -> str:
        raise RuntimeError("key material on fire")

    monkeypatch.setattr(ES256CompactSigner, "sign_input", broken)
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"})
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert "fire" not in response.text


async def test_garbage_certificate_is_invalid_client_not_500(setup: Any) -> None:
    client, wrapper, _, _ = setup
    wrapper.chain = ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"})
    assert response.status_code == 401
    assert response.json()["error_description"] == RejectionReason.UNPARSABLE.public_description


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, "level": "warning", **fields})

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, "level": "error", **fields})


async def test_an_unparsable_certificate_is_logged_with_its_sha256(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Which certificate was it? The operator gets its hash even though it is not X.509.
    client, wrapper, _, _ = setup
    recorder = _Recorder()
    monkeypatch.setattr(client_auth, "log", recorder)
    garbage = b"\x30\x03\x02\x01\x01"
    wrapper.chain = [ssl.DER_cert_to_PEM_cert(garbage)]
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"})
    assert response.status_code == 401
    [line] = [e for e in recorder.lines if e["event"] == "client_authentication_failed"]
    assert (line["cert"], line["cert_sha256"]) == ("unparsable", hashlib.sha256(garbage).hexdigest())
    assert line["cert_parse_error"].startswith("parse error:")


@pytest.mark.parametrize(("body", "headers", "status", "error", "fragment"), [
    (b"grant_type=client_credentials&client_id=pki&client_id=pki", None, 400, "invalid_request", "repeated"),
    (b'{"grant_type":"client_credentials"}', {"content-type": "application/json"}, 400, "invalid_request",
     "x-www-form-urlencoded"),
    (b"grant_type=client_credentials&client_id=\xff", None, 400, "invalid_request", "UTF-8"),
    (b"a" * 20000, None, 413, "invalid_request", "exceeds"),
    (b"client_id=pki", None, 400, "invalid_request", "grant_type is required"),
    (b"grant_type=password&client_id=pki", None, 400, "unsupported_grant_type", "client_credentials"),
    (b'grant_type=%22%5C&client_id=pki', None, 400, "unsupported_grant_type", "client_credentials"),
    (b"grant_type=client_credentials&client_id=pki&scope=admin", None, 400, "invalid_scope", "admin"),
    (b'grant_type=client_credentials&client_id=pki&scope=%22x%5C', None, 400, "invalid_scope", "scope tokens"),
    (b"grant_type=client_credentials&client_id=pki&client_secret=s", None, 400, "invalid_request",
     "more than one client authentication mechanism"),
    (b"grant_type=client_credentials&client_id=pki", {"authorization": "Basic cGtpOnM="}, 400, "invalid_request",
     "Authorization header"),
    (b"grant_type=client_credentials", None, 401, "invalid_client", "client_id is required"),
    (b"grant_type=client_credentials&client_id=%22nobody%5C", None, 401, "invalid_client", "unknown client_id"),
])
async def test_bad_requests_get_precise_errors(setup: Any, body: bytes, headers: dict[str, str] | None,
                                               status: int, error: str, fragment: str) -> None:
    client, wrapper, cert, _ = setup
    wrapper.chain = pem(cert)
    sent = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
    response = await client.post("/token", content=body, headers=sent)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert fragment in response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"


async def test_no_input_causes_a_server_error(setup: Any) -> None:
    client, wrapper, cert, _ = setup
    wrapper.chain = pem(cert)
    odd_values = ["", " ", "\x00", "%", "\u202e", '"', "\\", "a" * 300, "é", "pki\r\nx: y"]
    for path in ("/token", "/introspect", "/revoke"):
        for name in ("grant_type", "client_id", "scope", "token", "token_type_hint"):
            for value in odd_values:
                form = {"grant_type": "client_credentials", "client_id": "pki", "token": "t", name: value}
                response = await client.post(path, data=form)
                assert response.status_code < 500, (path, name, value, response.text)
                json.loads(response.text)


async def test_introspection_and_revocation(setup: Any) -> None:
    client, wrapper, cert, _ = setup
    wrapper.chain = pem(cert)
    token = (await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"})).json()
    access_token = token["access_token"]
    active = (await client.post("/introspect", data={"client_id": "pki", "token": access_token})).json()
    assert active["active"] is True and active["cnf"]["x5t#S256"] and active["client_id"] == "pki"
    assert (await client.post("/revoke", data={"client_id": "pki", "token": access_token})).status_code == 200
    assert (await client.post("/introspect", data={"client_id": "pki", "token": access_token})).json() == \
        {"active": False}
    assert (await client.post("/introspect", data={"client_id": "pki", "token": "x.y.z"})).json() == \
        {"active": False}


async def test_metadata(setup: Any) -> None:
    client, _, _, _ = setup
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint_auth_methods_supported"] == ["tls_client_auth", "self_signed_tls_client_auth"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    assert "mtls_endpoint_aliases" not in metadata
    # The document as clients check it: authlib's RFC 8414 validation, unmodified.
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["response_types_supported"] == ["none"]


class _Exchange:
    """One raw ASGI exchange with the app: the request body in ``messages``, what it sent back."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.pending = list(messages)
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        return self.pending.pop(0) if self.pending else {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8443)}
        await app(scope, self.receive, self.send)

    @property
    def reply(self) -> tuple[int, dict[str, Any]]:
        start, body = self.sent
        return start["status"], json.loads(body["body"])


_FORM = (b"content-type", b"application/x-www-form-urlencoded")


async def test_client_gone_before_its_body_gets_no_answer_and_no_error(setup: Any) -> None:
    _, wrapper, _, _ = setup
    exchange = _Exchange({"type": "http.request", "body": b"grant_type=client_", "more_body": True})
    await exchange.run(wrapper, "/token", [_FORM])
    # Not even a 500: the disconnect is not an unexpected error (that path answers, see below).
    assert exchange.sent == []
    assert exchange.received == 2


async def test_declared_oversized_body_is_refused_before_it_is_read(setup: Any) -> None:
    _, wrapper, _, _ = setup
    exchange = _Exchange({"type": "http.request", "body": b"x" * 10, "more_body": True})
    await exchange.run(wrapper, "/token", [_FORM, (b"content-length", b"999999")])
    assert exchange.received == 0
    status, body = exchange.reply
    assert (status, body["error"]) == (413, "invalid_request")
    assert "exceeds 16384 bytes" in body["error_description"]


# The last two (more digits than int() converts) were a 500, found by tests/fuzz/test_form.py.
@pytest.mark.parametrize("declared", [b"\xb2", b"-1", b"12abc", b"", b"1" * 400, b"0" * 5000 + b"29", b"9" * 5000])
async def test_odd_content_length_is_not_a_server_error(setup: Any, declared: bytes) -> None:
    _, wrapper, _, _ = setup
    exchange = _Exchange({"type": "http.request", "body": b"grant_type=client_credentials", "more_body": False})
    await exchange.run(wrapper, "/token", [_FORM, (b"content-length", declared)])
    status, body = exchange.reply
    assert status < 500, body


async def test_chunked_body_is_refused_once_it_outgrows_the_limit(setup: Any) -> None:
    _, wrapper, _, _ = setup
    chunks = [{"type": "http.request", "body": b"a" * 4096, "more_body": True} for _ in range(10)]
    exchange = _Exchange(*chunks)
    await exchange.run(wrapper, "/token", [_FORM])
    assert exchange.received == 5  # 5 x 4096 > 16384: no more is read
    status, body = exchange.reply
    assert (status, body["error"]) == (413, "invalid_request")


async def test_unexpected_error_is_a_json_500_without_details(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, wrapper, cert, context = setup
    wrapper.chain = pem(cert)

    def broken(request: Any) -> Any:
        raise RuntimeError("storage on fire")

    monkeypatch.setattr(context.server, "create_token_response", broken)
    client, _, _, _ = setup
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"})
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert response.headers["cache-control"] == "no-store"
    assert "fire" not in response.text  # the traceback is the log's (tests/unit/test_logs.py)


async def test_unexpected_error_on_a_starlette_route_is_the_same_500(setup: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, wrapper, _, _ = setup

    def broken(self: Any) -> Any:
        raise RuntimeError("key store on fire")

    monkeypatch.setattr(SigningKeys, "jwks", property(broken))
    # Starlette re-raises after answering; the client must still get the JSON answer.
    transport = httpx.ASGITransport(app=wrapper, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        response = await client.get("/jwks")
    assert response.status_code == 500
    assert response.json() == SERVER_ERROR
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")


@pytest.mark.parametrize(("method", "path", "status", "description"), [
    ("GET", "/token", 405, "use POST for this endpoint"),
    ("PUT", "/introspect", 405, "use POST for this endpoint"),
    ("DELETE", "/revoke", 405, "use POST for this endpoint"),
    ("POST", "/jwks", 405, "use GET or HEAD for this endpoint"),
    ("POST", "/nowhere", 404, "there is no endpoint at this path"),
    ("GET", "/nowhere", 404, "there is no endpoint at this path"),
    ("POST", "/token/", 404, "there is no endpoint at this path"),  # not a redirect to /token
])
async def test_other_methods_and_paths_get_json_errors(setup: Any, method: str, path: str, status: int,
                                                       description: str) -> None:
    client, _, _, _ = setup
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.json() == {"error": "invalid_request", "error_description": description}
    assert (response.headers["cache-control"], response.headers["pragma"]) == ("no-store", "no-cache")


UNUSABLE = "the registration of this client is not usable; contact the server operator"


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("stored", ["{not json", "[]", '{"client_id": "broken"}'])
async def test_unusable_or_corrupt_registration_is_invalid_client(setup: Any, path: str, stored: str) -> None:
    # A corrupt record is refused exactly like a valid one the server cannot use.
    client, wrapper, cert, context = setup
    wrapper.chain = pem(cert)
    await context.store.upsert("client", "broken", {})
    await context.store.db.execute("UPDATE records SET value = ? WHERE kind = 'client' AND id = 'broken'", (stored,))
    await context.store.db.commit()
    form = {"grant_type": "client_credentials", "client_id": "broken", "token": "t"}
    response = await client.post(path, data=form)
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_client", "error_description": UNUSABLE}
    assert response.headers["cache-control"] == "no-store"


async def test_a_record_that_names_another_client_id_is_unusable(setup: Any) -> None:
    # A record copied or edited by hand must not mint tokens for the identity it names.
    client, wrapper, cert, context = setup
    wrapper.chain = pem(cert)
    await context.store.db.execute(
        "INSERT INTO records (kind, id, value, expires_at) SELECT kind, 'copied', value, expires_at FROM records"
        " WHERE kind = 'client' AND id = 'pki'")
    await context.store.db.commit()
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "copied"})
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_client", "error_description": UNUSABLE}


async def test_other_mechanism_without_a_certificate_names_only_what_was_sent(setup: Any) -> None:
    client, wrapper, _, _ = setup
    wrapper.chain = []
    response = await client.post("/token", data={"grant_type": "client_credentials", "client_id": "pki"},
                                 headers={"authorization": "Basic cGtpOnM="})
    # One mechanism, which this server does not support: a failed client authentication.
    assert response.status_code == 401
    # RFC 6749 §5.2: the challenge names the scheme the client used.
    assert response.headers["www-authenticate"].startswith('Basic realm="')
    assert response.json() == {"error": "invalid_client", "error_description": (
        "the request uses client authentication this server does not accept (Authorization header); "
        "authenticate with a TLS client certificate instead")}


async def test_a_store_failure_during_a_request_is_503_temporarily_unavailable(
        setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wire suite makes a real one (a revocation on a full disk); here a client lookup fails.
    client, wrapper, cert, context = setup
    wrapper.chain = pem(cert)

    async def failing_find(kind: str, record_id: str) -> None:
        raise StorageError("cannot read the store at /data/authz.sqlite3: disk I/O error")

    monkeypatch.setattr(context.store, "find", failing_find)
    context.clients.invalidate()
    recorder = _Recorder()
    monkeypatch.setattr(failure, "log", recorder)
    for path, endpoint in {"/token": "token", "/introspect": "introspection", "/revoke": "revocation"}.items():
        response = await client.post(path, data={"grant_type": "client_credentials", "client_id": "pki",
                                                 "token": "t"})
        assert recorder.lines.pop() == {"event": "store_unavailable", "level": "error", "endpoint": endpoint,
                                        "peer": "127.0.0.1:123",
                                        "error": "cannot read the store at /data/authz.sqlite3: disk I/O error"}
        assert response.status_code == 503, (path, response.text)
        assert response.json() == STORE_UNAVAILABLE
        assert response.headers["retry-after"] == "5" and response.headers["cache-control"] == "no-store"
        assert "/data" not in response.text
