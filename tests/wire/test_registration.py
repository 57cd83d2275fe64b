"""The registration API over real TLS (RFC 7591, RFC 7592): who may register (an administrator's
certificate-bound token for the API, an initial access token; never anonymously), the same
validation as the CLI, the registration access token's reach, and one audit line per change."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509

from authz.clients.model import jwk_for_certificate
from tests.support.server import RunningServer, authz_cli
from tests.wire.client import WireClient, WireResponse, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import SAN_DNS, WirePKI, registrations

pytestmark = pytest.mark.wire

JSON = "application/json"


@pytest.fixture(scope="module")
def registration_server(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("registration-data")
    authz_cli("clients", "add", "email-client", *registrations(pki)["email-client"], data_dir=data_dir)
    server = start_wire_server(data_dir, env={"AUTHZ_STORE_POLL_INTERVAL": "0.1"})
    # The administrator: a client allowed this server's registration API, with its scope.
    admin = [a for a in registrations(pki)["dn-client"]]
    admin[admin.index("--scope") + 1] = "clients:manage"
    authz_cli("clients", "add", "dn-client", *admin, "--resource", server.base_url + "/register",
              data_dir=data_dir)
    yield server
    server.stop()


@pytest.fixture
def wire(registration_server: RunningServer, pki: WirePKI) -> WireClient:
    return WireClient("httpx", registration_server, pki.server_ca)


def eventually(request: Callable[[], WireResponse], status: int, within: float = 5.0) -> WireResponse:
    deadline = time.monotonic() + within
    while True:
        response = request()
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def admin_token(wire: WireClient, pki: WirePKI) -> str:
    response = eventually(lambda: wire.token(pki["dn-client"], "dn-client"), 200)
    return str(assert_token_response(response)["access_token"])


def call(wire: WireClient, method: str, path: str, *, token: str | None, who: str | None = "dn-client",
         pki: WirePKI, body: Any = None, raw: bytes | None = None, content_type: str = JSON) -> WireResponse:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return wire.request(method, path, pki[who] if who else None, content, headers)


DNS_CLIENT = {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": SAN_DNS,
              "scope": "read", "client_name": "reporting job", "contacts": ["ops@example.test"]}


def audit_lines(response: WireResponse) -> list[dict[str, Any]]:
    return [e for e in response.events if e.get("event") == "client_registration_changed"]


def test_an_administrator_registers_and_the_client_gets_tokens(wire: WireClient, pki: WirePKI) -> None:
    response = call(wire, "POST", "/register", token=admin_token(wire, pki), pki=pki,
                    body={**DNS_CLIENT, "unknown_field": "ignored"})
    assert response.status == 201, response.body
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    client_id = document["client_id"]
    assert document["registration_access_token"].startswith("authz-rat.")
    assert document["registration_client_uri"] == f"{wire.server.base_url}/register/{client_id}"
    assert "unknown_field" not in document and document["client_name"] == "reporting job"
    [audit] = audit_lines(response)
    assert (audit["actor"], audit["action"], audit["client_id"]) == ("admin:dn-client", "created", client_id)
    assert audit["after"]["tls_client_auth_san_dns"] == SAN_DNS and audit["before"] is None
    token = assert_token_response(eventually(lambda: wire.token(pki["dns-client"], client_id), 200))
    assert token["scope"] == "read"


@pytest.mark.parametrize(("metadata", "description"), [
    ({**DNS_CLIENT, "tls_client_auth_subject_dn": "CN=x"},
     "a tls_client_auth client registers exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, "
     "tls_client_auth_san_uri, tls_client_auth_san_ip, tls_client_auth_san_email (RFC 8705 §2.1.2); got 2: "
     "tls_client_auth_subject_dn, tls_client_auth_san_dns"),
    ({**DNS_CLIENT, "token_endpoint_auth_method": "client_secret_basic"},
     "token_endpoint_auth_method must be one of tls_client_auth, self_signed_tls_client_auth "
     "(got 'client_secret_basic')"),
    ({**DNS_CLIENT, "scope": "read\twrite"}, "scope must be a space-separated list of scope tokens (RFC 6749 §3.3)"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": {"keys": [{"kty": "EC"}]}},
     "jwks.keys[0] has no x5c certificate"),
    ({**DNS_CLIENT, "allowed_resources": ["api"]}, "allowed_resources[0] is not an absolute URI (RFC 8707 section 2)"),
    ({**DNS_CLIENT, "client_id": "chosen"}, "client_id is issued by the server (RFC 7591 section 3.2.1); do not "
                                            "send one"),
    ([1, 2], "the body must be a JSON object of client metadata (RFC 7591 section 2)"),
])
def test_invalid_metadata_names_the_field(wire: WireClient, pki: WirePKI, metadata: Any, description: str) -> None:
    response = call(wire, "POST", "/register", token=admin_token(wire, pki), pki=pki, body=metadata)
    assert (response.status, response.json()) == (400, {"error": "invalid_client_metadata",
                                                        "error_description": description})
    [line] = [e for e in response.events if e.get("event") == "client_registration_refused"]
    assert line["error_description"] == description and line["actor"] == "admin:dn-client"
    assert not audit_lines(response)


def test_no_anonymous_registration(wire: WireClient, pki: WirePKI) -> None:
    response = call(wire, "POST", "/register", token=None, who="dns-client", pki=pki, body=DNS_CLIENT)
    assert response.status == 401 and response.headers["www-authenticate"].startswith('Bearer realm="registration"')


def test_a_token_for_another_api_or_without_the_scope_is_refused(wire: WireClient, pki: WirePKI) -> None:
    other = str(assert_token_response(wire.token(pki["email-client"], "email-client"))["access_token"])
    response = call(wire, "POST", "/register", token=other, who="email-client", pki=pki, body=DNS_CLIENT)
    assert response.status == 401
    assert response.json()["error_description"] == (
        f"the access token is not meant for this API (aud): request it with resource={wire.server.base_url}/register")


def test_the_administrator_s_token_works_with_its_certificate_only(wire: WireClient, pki: WirePKI) -> None:
    response = call(wire, "POST", "/register", token=admin_token(wire, pki), who="email-client", pki=pki,
                    body=DNS_CLIENT)
    assert response.status == 401
    assert response.json()["error_description"] == (
        "the client certificate does not match the token's binding (cnf x5t#S256)")


def register(wire: WireClient, pki: WirePKI, metadata: dict[str, Any]) -> dict[str, Any]:
    response = call(wire, "POST", "/register", token=admin_token(wire, pki), pki=pki, body=metadata)
    assert response.status == 201, response.body
    return dict(response.json())


def test_the_registration_access_token_manages_its_own_client(wire: WireClient, pki: WirePKI) -> None:
    certificate = x509.load_der_x509_certificate(pki["self-signed-client"].leaf_der)
    metadata = {"token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [jwk_for_certificate(certificate)]}, "scope": "read write"}
    document = register(wire, pki, metadata)
    client_id, rat = document["client_id"], document["registration_access_token"]
    path = f"/register/{client_id}"
    read = call(wire, "GET", path, token=rat, who=None, pki=pki)
    assert read.status == 200 and read.json()["scope"] == "read write"
    assert "registration_access_token" not in read.json()
    # Another client's configuration endpoint: refused.
    other = register(wire, pki, DNS_CLIENT)
    refused = call(wire, "GET", f"/register/{other['client_id']}", token=rat, who=None, pki=pki)
    assert refused.status == 401 and refused.json()["error"] == "invalid_token"
    # PUT replaces the metadata (RFC 7592 §2.2): the scope is now "read" only.
    replaced = call(wire, "PUT", path, token=rat, who=None, pki=pki, body={**metadata, "scope": "read",
                                                                          "client_id": client_id})
    assert replaced.status == 200 and replaced.json()["scope"] == "read"
    [audit] = audit_lines(replaced)
    assert (audit["actor"], audit["action"]) == ("registration_access_token", "updated")
    assert (audit["before"]["scope"], audit["after"]["scope"]) == ("read write", "read")
    assert len(audit["after"]["cert_x5t_s256"]) == 1 and "x5c" not in json.dumps(audit)
    token = assert_token_response(eventually(lambda: wire.token(pki["self-signed-client"], client_id), 200))
    assert token["scope"] == "read"
    # DELETE: the client is gone, its token no longer active, its registration token useless.
    deleted = call(wire, "DELETE", path, token=rat, who=None, pki=pki)
    assert deleted.status == 204 and audit_lines(deleted)[0]["action"] == "deleted"
    eventually(lambda: wire.token(pki["self-signed-client"], client_id), 401)
    introspected = wire.post("/introspect", pki["dn-client"], {"client_id": "dn-client",
                                                               "token": str(token["access_token"])})
    assert introspected.json() == {"active": False}
    assert call(wire, "GET", path, token=rat, who=None, pki=pki).status == 401


def test_an_initial_access_token_registers_once(wire: WireClient, pki: WirePKI,
                                                 registration_server: RunningServer) -> None:
    initial = authz_cli("registration", "initial-token", data_dir=registration_server.data_dir).stdout.strip()
    assert initial.startswith("authz-iat.")
    first = call(wire, "POST", "/register", token=initial, who=None, pki=pki, body=DNS_CLIENT)
    assert first.status == 201, first.body
    assert audit_lines(first)[0]["actor"].startswith("initial_access_token:")
    second = call(wire, "POST", "/register", token=initial, who=None, pki=pki, body=DNS_CLIENT)
    assert (second.status, second.json()["error_description"]) == (
        401, "the initial access token is unknown, used or expired")
    misuse = call(wire, "GET", f"/register/{first.json()['client_id']}", token=initial, who=None, pki=pki)
    assert misuse.status == 401


def test_bodies_that_are_too_large_or_not_json(wire: WireClient, pki: WirePKI) -> None:
    token = admin_token(wire, pki)
    large = call(wire, "POST", "/register", token=token, pki=pki, raw=b"{" + b" " * 70_000 + b"}")
    assert (large.status, large.json()["error_description"]) == (413, "the body exceeds 65536 bytes")
    form = call(wire, "POST", "/register", token=token, pki=pki, raw=b"a=b",
                content_type="application/x-www-form-urlencoded")
    assert form.status == 400 and form.json()["error_description"] == (
        "the body must be application/json (RFC 7591 section 3.1)")
    broken = call(wire, "POST", "/register", token=token, pki=pki, raw=b"{not json")
    assert broken.status == 400 and broken.json()["error_description"].startswith("the body is not valid JSON")
    nested = call(wire, "POST", "/register", token=token, pki=pki, raw=b"[" * 30_000 + b"]" * 30_000)
    assert (nested.status, nested.json()["error_description"]) == (
        400, "the body is not valid client metadata: JSON nested too deeply")


def test_metadata_announces_the_endpoint(wire: WireClient) -> None:
    assert wire.get("/.well-known/oauth-authorization-server").json()["registration_endpoint"] == (
        wire.server.base_url + "/register")


def test_a_token_for_the_api_without_its_scope_is_403(wire: WireClient, pki: WirePKI,
                                                      registration_server: RunningServer) -> None:
    # A client allowed the registration API but not its scope: the token has aud, no scope.
    authz_cli("clients", "add", "uri-client", *registrations(pki)["uri-client"], "--resource",
              registration_server.base_url + "/register", data_dir=registration_server.data_dir)
    body = assert_token_response(eventually(lambda: wire.token(pki["uri-client"], "uri-client"), 200))
    assert "scope" not in body  # "read" belongs to no scope of the registration API
    response = call(wire, "POST", "/register", token=str(body["access_token"]), who="uri-client", pki=pki,
                    body=DNS_CLIENT)
    assert (response.status, response.json()["error"]) == (403, "insufficient_scope")
    assert 'scope="clients:manage"' in response.headers["www-authenticate"]
