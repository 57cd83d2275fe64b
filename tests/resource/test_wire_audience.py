"""The audience over the wire, against the real authorization server: its tokens carry
aud = the deployment's API identifier (``authz serve --audience``), so a sample API started for
another identifier must refuse them, in JWT mode and in introspection mode, saying why to the
client and to its operator. The claims RFC 9068 requires are checked on minted tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.resource.wire import API_AUDIENCE, Deployment, start_sample_api
from tests.support.server import RunningServer

pytestmark = pytest.mark.wire

OTHER = "https://payments.api.test"


@pytest.fixture(scope="module")
def other_apis(deployment: Deployment) -> Iterator[dict[str, RunningServer]]:
    """Sample APIs of the same deployment, but for another resource server's identifier."""
    rs = deployment.identities["rs"]
    common: dict[str, Any] = {"issuer": deployment.issuer, "ca_file": deployment.ca_file, "audience": OTHER,
                              "tls": (deployment.directory / "server.crt", deployment.directory / "server.key")}
    apis: dict[str, RunningServer] = {}
    try:
        apis["jwt"] = start_sample_api(deployment.directory, "api-other-jwt", **common)
        apis["introspection"] = start_sample_api(
            deployment.directory, "api-other-introspection", **common,
            extra_args=["--introspection", "--client-cert", str(rs.cert), "--client-key", str(rs.key),
                        "--client-id", "rs"])
        for name, api in apis.items():
            deployment.apis[f"other-{name}"] = api
        yield apis
    finally:
        for name, api in apis.items():
            deployment.apis.pop(f"other-{name}", None)
            api.stop()


def refusal_lines(api: RunningServer, since: int, event: str = "bearer_token_refused") -> list[dict[str, Any]]:
    return [line for line in api.events(since) if line.get("event") == event]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_real_as_issues_tokens_for_the_configured_audience(deployment: Deployment) -> None:
    token = deployment.token("alice", "accounts:read")
    assert claims_of(token)["aud"] == API_AUDIENCE
    for mode in ("jwt", "introspection"):
        assert deployment.call(mode, "/accounts", who="alice", token=token).status_code == 200


@pytest.mark.parametrize("mode", ["jwt", "introspection"])
def test_a_token_for_another_api_is_refused(deployment: Deployment, other_apis: dict[str, RunningServer],
                                            mode: str) -> None:
    token = deployment.token("alice", "accounts:read")
    since = other_apis[mode].log_offset()
    response = deployment.call(f"other-{mode}", "/accounts", who="alice", token=token)
    description = f"the access token is not meant for this resource server: its aud does not include {OTHER}"
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": description}
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="accounts", error="invalid_token", error_description="{description}"')
    [line] = refusal_lines(other_apis[mode], since)
    where = " (introspection answer)" if mode == "introspection" else ""
    assert line["reason"] == "wrong_audience" and line["status"] == 401
    assert line["detail"] == f"aud {API_AUDIENCE!r}{where}, expected {OTHER!r}"
    assert (line["client_id"], line["sub"], line["jti"], line["token_source"]) == (
        "alice", "alice", claims_of(token)["jti"], mode)
    assert line["cert_subject"] == "CN=alice,O=authz tests"


def test_an_aud_list_that_includes_ours_is_accepted(deployment: Deployment) -> None:
    token = deployment.mint(aud=["https://payments.api.test", API_AUDIENCE])
    assert deployment.call("jwt", "/accounts", who="alice", token=token).status_code == 200


@pytest.mark.parametrize(("missing", "description"), [
    ("aud", f"the access token is not meant for this resource server: it has no aud claim (expected {API_AUDIENCE})"),
    ("iss", "the access token was not issued by the expected authorization server"),
    ("exp", "the access token lacks required claims: exp (RFC 9068 section 2.2)"),
    ("sub", "the access token lacks required claims: sub (RFC 9068 section 2.2)"),
    ("client_id", "the access token lacks required claims: client_id (RFC 9068 section 2.2)"),
    ("iat", "the access token lacks required claims: iat (RFC 9068 section 2.2)"),
    ("jti", "the access token lacks required claims: jti (RFC 9068 section 2.2)"),
])
def test_a_jwt_without_an_rfc9068_claim_is_refused(deployment: Deployment, missing: str, description: str) -> None:
    """Signed by the AS's own key: only the missing claim is wrong."""
    token = deployment.mint(**{missing: None})
    api = deployment.apis["jwt"]
    since = api.log_offset()
    response = deployment.call("jwt", "/accounts", who="alice", token=token)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": description}
    [line] = refusal_lines(api, since)
    assert line["error_description"] == description
    assert line.get("client_id") == (None if missing == "client_id" else "alice")
