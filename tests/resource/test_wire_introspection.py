"""The sample API in introspection mode (RFC 7662): it authenticates to the authorization
server with its own certificate (client "rs") and caches answers for 1 s in these tests."""

from __future__ import annotations

import json
import time

import pytest

from tests.resource.wire import API_AUDIENCE, Deployment, start_sample_api

pytestmark = pytest.mark.wire


def refusal(deployment: Deployment, token: str, who: str = "alice") -> str:
    response = deployment.call("introspection", "/accounts", who=who, token=token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="accounts", error="invalid_token"')
    return str(response.json()["error_description"])


def test_active_bound_token_is_accepted(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    response = deployment.call("introspection", "/accounts", who="alice", token=token)
    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == "alice"


def test_revoked_token_is_refused(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    deployment.revoke("alice", token)
    assert "not active" in refusal(deployment, token)


def test_revocation_is_seen_once_the_cache_entry_expires(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    assert deployment.call("introspection", "/accounts", who="alice", token=token).status_code == 200
    deployment.revoke("alice", token)
    time.sleep(1.2)  # --introspection-cache-ttl 1
    assert "not active" in refusal(deployment, token)


def test_replay_with_another_certificate(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    assert "does not match the token's binding" in refusal(deployment, token, who="bob")


def test_unknown_or_garbage_tokens_are_inactive(deployment: Deployment) -> None:
    assert "not active" in refusal(deployment, "opaque-token-nobody-issued")
    forged = deployment.mint(iss="https://evil.example")  # signed by the AS key, but not its token
    assert "not active" in refusal(deployment, forged)


def test_insufficient_scope(deployment: Deployment) -> None:
    token = deployment.token("bob", "accounts:read")
    since = deployment.apis["introspection"].log_offset()
    response = deployment.call("introspection", "/accounts", who="bob", token=token, method="POST",
                               json={"owner": "Bob"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="accounts", error="insufficient_scope", error_description="the access token lacks the '
        'scope this resource needs: accounts:write", scope="accounts:write"'
    )
    [line] = [e for e in deployment.apis["introspection"].events(since) if e.get("event") == "bearer_token_refused"]
    assert (line["status"], line["reason"], line["client_id"], line["token_source"]) == (
        403, "insufficient_scope", "bob", "introspection")


def test_refused_api_credentials_mean_503_not_401(deployment: Deployment) -> None:
    """When the AS refuses the API's own client authentication, the token was not judged:
    the caller gets 503 (retry), never invalid_token, and the operator gets the AS's answer."""
    rs = deployment.identities["rs"]
    api = start_sample_api(
        deployment.directory, "api-wrong-client-id", issuer=deployment.issuer, ca_file=deployment.ca_file,
        audience=API_AUDIENCE,
        tls=(deployment.directory / "server.crt", deployment.directory / "server.key"),
        extra_args=["--introspection", "--client-cert", str(rs.cert), "--client-key", str(rs.key),
                    "--client-id", "alice"])
    try:
        deployment.apis["wrong-client-id"] = api
        response = deployment.call("wrong-client-id", "/accounts", who="alice", token=deployment.token("alice"))
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable" and response.headers["retry-after"] == "1"
        assert "www-authenticate" not in response.headers
        line = next(json.loads(raw) for raw in api.log().splitlines() if '"bearer_token_refused"' in raw)
        assert line["reason"] == "introspection_failed" and "HTTP 401" in line["detail"]
        assert "invalid_client" in line["detail"]
    finally:
        deployment.apis.pop("wrong-client-id", None)
        api.stop()
