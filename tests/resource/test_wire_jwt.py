"""The sample API in JWT mode, over real TLS, against a real authorization server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from tests.resource.fake_as import b64url, unsigned
from tests.resource.wire import Deployment
from tests.support.server import authz_cli

pytestmark = pytest.mark.wire


def challenge(response_headers: dict[str, str] | object) -> str:
    return str(response_headers["www-authenticate"])  # type: ignore[index]


def assert_invalid_token(deployment: Deployment, token: str, fragment: str, *, who: str = "alice") -> None:
    response = deployment.call("jwt", "/accounts", who=who, token=token)
    assert response.status_code == 401, response.text
    header = response.headers["www-authenticate"]
    assert header.startswith('Bearer realm="accounts", error="invalid_token", error_description="'), header
    assert fragment in response.json()["error_description"], response.json()
    assert fragment in header


def test_bound_token_reads_accounts(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    response = deployment.call("jwt", "/accounts", who="alice", token=token)
    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == "alice"
    assert {a["id"] for a in response.json()["accounts"]} >= {"acc-1001", "acc-1002"}


def test_write_scope_creates_an_account(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:write accounts:read")
    created = deployment.call("jwt", "/accounts", who="alice", token=token, method="POST",
                              json={"owner": "Grace Hopper", "currency": "USD"})
    assert created.status_code == 201, created.text
    account_id = created.json()["id"]
    fetched = deployment.call("jwt", f"/accounts/{account_id}", who="alice", token=token)
    assert fetched.status_code == 200 and fetched.json()["owner"] == "Grace Hopper"


def test_stolen_token_replayed_with_another_certificate(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    status, headers, body = deployment.curl("jwt", "/accounts", who="bob", token=token)
    assert status == 401
    assert headers["www-authenticate"] == (
        'Bearer realm="accounts", error="invalid_token", error_description="the client certificate does not '
        "match the token's binding (cnf x5t#S256)\""
    )
    assert json.loads(body)["error"] == "invalid_token"
    # also with a certificate the authorization server has never heard of
    assert_invalid_token(deployment, token, "does not match the token's binding", who="mallory")
    # the operator's log has both thumbprints
    line = next(json.loads(raw) for raw in deployment.apis["jwt"].log().splitlines()[::-1]
                if '"certificate_mismatch"' in raw)
    assert deployment.identities["alice"].thumbprint in line["detail"]
    assert line["cert_subject"] == "CN=mallory,O=authz tests" and line["client_id"] == "alice"


def test_bound_token_without_a_client_certificate(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    response = deployment.call("jwt", "/accounts", who=None, token=token)
    assert response.status_code == 401
    assert "no client certificate was presented" in response.headers["www-authenticate"]


def test_no_token_gets_a_plain_challenge(deployment: Deployment) -> None:
    status, headers, _ = deployment.curl("jwt", "/accounts", who="alice")
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="accounts"'
    other_scheme = deployment.call("jwt", "/accounts", who="alice", headers={"authorization": "Basic YTpi"})
    assert other_scheme.status_code == 401 and other_scheme.headers["www-authenticate"] == 'Bearer realm="accounts"'


def test_health_needs_no_token(deployment: Deployment) -> None:
    assert deployment.call("jwt", "/health", who=None).json() == {"status": "ok"}
    # The probe path the authorization server answers too, with the same body.
    liveness = deployment.call("jwt", "/healthz", who=None)
    assert (liveness.status_code, liveness.json()) == (200, {"status": "alive"})


def test_expired_token(deployment: Deployment) -> None:
    now = int(time.time())
    assert_invalid_token(deployment, deployment.mint(iat=now - 700, exp=now - 120), "has expired")


def test_expiry_within_leeway_is_accepted(deployment: Deployment) -> None:
    now = int(time.time())
    response = deployment.call("jwt", "/accounts", who="alice", token=deployment.mint(exp=now - 5))
    assert response.status_code == 200, response.text


def test_not_yet_valid_token(deployment: Deployment) -> None:
    now = int(time.time())
    assert_invalid_token(deployment, deployment.mint(nbf=now + 300), "not valid yet")
    assert_invalid_token(deployment, deployment.mint(iat=now + 300, exp=now + 900), "issued in the future")


def test_wrong_audience(deployment: Deployment) -> None:
    assert_invalid_token(deployment, deployment.mint(aud="https://other-api.example"), "not meant for this resource")
    assert_invalid_token(deployment, deployment.mint(aud=None), "not meant for this resource")


def test_wrong_issuer(deployment: Deployment) -> None:
    assert_invalid_token(deployment, deployment.mint(iss="https://evil.example"), "not issued by the expected")


def test_tampered_payload(deployment: Deployment) -> None:
    header, payload, signature = deployment.token("bob", "accounts:read").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "accounts:read accounts:write"
    forged = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    response = deployment.call("jwt", "/accounts", who="bob", token=forged, method="POST", json={"owner": "x"})
    assert response.status_code == 401
    assert "signature is not valid" in response.json()["error_description"]


def test_tampered_signature(deployment: Deployment) -> None:
    header, payload, signature = deployment.token("alice").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 0x01
    assert_invalid_token(deployment, ".".join([header, payload, b64url(bytes(raw))]), "signature is not valid")


def test_alg_none(deployment: Deployment) -> None:
    kid, _ = deployment.signing_key()
    claims = json.loads(base64.urlsafe_b64decode(deployment.mint().split(".")[1] + "=="))
    token = unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, claims)
    assert_invalid_token(deployment, token, "signing algorithm is not accepted")


@pytest.mark.parametrize("secret_form", ["jwk-json", "pem"])
def test_hs256_signed_with_the_public_key(deployment: Deployment, secret_form: str) -> None:
    """The classic confusion attack: HMAC keyed with the published public key."""
    kid, key = deployment.signing_key()
    with deployment.client(None) as client:
        published = next(k for k in client.get(deployment.issuer + "/jwks").json()["keys"] if k["kid"] == kid)
    secret = json.dumps(published).encode() if secret_form == "jwk-json" else key.as_pem(private=False)
    claims = json.loads(base64.urlsafe_b64decode(deployment.mint().split(".")[1] + "=="))
    signing_input = ".".join([b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode()),
                              b64url(json.dumps(claims).encode())])
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert_invalid_token(deployment, signing_input + "." + b64url(signature), "signing algorithm is not accepted")


def test_wrong_typ(deployment: Deployment) -> None:
    assert_invalid_token(deployment, deployment.mint(header={"typ": "JWT"}), "typ must be at+jwt")


def test_unknown_kid_is_refused(deployment: Deployment) -> None:
    assert_invalid_token(deployment, deployment.mint(header={"kid": "no-such-key"}), "does not publish")


def test_key_rotation_is_picked_up_without_restart(deployment: Deployment) -> None:
    before = deployment.token("alice")
    assert deployment.call("jwt", "/accounts", who="alice", token=before).status_code == 200
    old_kid = json.loads(base64.urlsafe_b64decode(before.split(".")[0] + "=="))["kid"]
    authz_cli("keys", "rotate", data_dir=deployment.authz.data_dir)
    deadline = time.monotonic() + 15
    while True:  # the AS notices the rotation within its store poll interval
        after = deployment.token("alice")
        new_kid = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"]
        if new_kid != old_kid:
            break
        assert time.monotonic() < deadline, "the authorization server did not start signing with the new key"
        time.sleep(0.2)
    time.sleep(0.3)  # past the sample API's --jwks-refresh-cooldown 0.2
    response = deployment.call("jwt", "/accounts", who="alice", token=after)
    assert response.status_code == 200, response.text
    # tokens signed by the old key still verify: it stays published until retired
    assert deployment.call("jwt", "/accounts", who="alice", token=before).status_code == 200


def test_unbound_token_is_refused(deployment: Deployment) -> None:
    token = deployment.token("carol", "accounts:read")  # registered with --unbound-tokens
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert "cnf" not in claims
    assert_invalid_token(deployment, token, "not bound to a client certificate", who="carol")


def test_insufficient_scope(deployment: Deployment) -> None:
    token = deployment.token("bob", "accounts:read")
    since = deployment.apis["jwt"].log_offset()
    response = deployment.call("jwt", "/accounts", who="bob", token=token, method="POST", json={"owner": "Bob"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="accounts", error="insufficient_scope", error_description="the access token lacks the '
        'scope this resource needs: accounts:write", scope="accounts:write"'
    )
    assert response.json()["scope"] == "accounts:write"
    [line] = [e for e in deployment.apis["jwt"].events(since) if e.get("event") == "bearer_token_refused"]
    assert (line["status"], line["reason"], line["client_id"], line["path"]) == (
        403, "insufficient_scope", "bob", "/accounts")
    assert line["detail"] == "required ['accounts:write'], token has ['accounts:read']"


def test_token_in_query_string_is_not_accepted(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    status, headers, body = deployment.curl("jwt", f"/accounts?access_token={token}", who="alice")
    assert status == 400
    assert 'error="invalid_request"' in headers["www-authenticate"]
    assert "not accepted in the URI query" in json.loads(body)["error_description"]
    both = deployment.call("jwt", f"/accounts?access_token={token}", who="alice", token=token)
    assert both.status_code == 400


def test_malformed_authorization_header(deployment: Deployment) -> None:
    response = deployment.call("jwt", "/accounts", who="alice", headers={"authorization": "Bearer a b"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("GET", "/accounts/", 404), ("DELETE", "/accounts", 405), ("POST", "/health", 405),
])
def test_unknown_paths_and_methods_get_json_without_a_redirect(deployment: Deployment, method: str, path: str,
                                                               status: int) -> None:
    token = deployment.token("alice", "accounts:read")
    response = deployment.call("jwt", path, who="alice", token=token, method=method)
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_request"


def test_the_sample_apis_log_is_json_uvicorns_lines_too(deployment: Deployment) -> None:
    lines = [line for line in deployment.apis["jwt"].log().splitlines() if line.strip()]
    assert any('"logger":"uvicorn.error"' in line for line in lines)
    for line in lines:
        json.loads(line)
