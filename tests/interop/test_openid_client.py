"""Node's openid-client (v6, from npm): the README's recipe (node/recipe.mjs), run by
node/harness.mjs: RFC 8414 discovery (``algorithm: 'oauth2'``), then client_credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.conftest import REFUSAL, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop, run_node

pytestmark = pytest.mark.wire


def test_token_bound_to_the_certificate(interop: Interop, node_modules: Path, client_id: str) -> None:
    files = interop.files(client_id)
    result = run_node(node_modules, "token", interop.issuer, client_id, files.cert, files.key, files.ca)
    assert result["ok"], result
    assert result["tokens"]["token_type"] == "bearer"  # openid-client normalises the case
    interop.assert_bound_token(result["tokens"]["access_token"], client_id)


def test_refused_certificate(interop: Interop, node_modules: Path) -> None:
    """openid-client throws ResponseBodyError with our error and description: with a
    WWW-Authenticate challenge on the 401 it threw WWWAuthenticateChallengeError instead,
    ``error`` undefined."""
    files = interop.files(REFUSED_CERTIFICATE)
    with interop.refusal_logged():
        result = run_node(node_modules, "token", interop.issuer, REFUSED_CLIENT_ID, files.cert, files.key, files.ca)
    print(json.dumps(result, indent=2))
    assert result["constructor"] == "ResponseBodyError" and result["responseBodyError"]
    assert (result["error"], result["error_description"]) == ("invalid_client", REFUSAL.public_description)
    assert result["status"] == 401
    assert result["message"] == "server responded with an error in the response body"


def test_default_discovery_finds_no_openid_configuration(interop: Interop, node_modules: Path) -> None:
    """Without ``algorithm: 'oauth2'``, openid-client asks for /.well-known/openid-configuration:
    this server is no OpenID provider and does not serve one."""
    files = interop.files("dn-client")
    result = run_node(node_modules, "discover-oidc", interop.issuer, "dn-client", files.cert, files.key, files.ca)
    print(json.dumps(result, indent=2))
    assert (result["constructor"], result["code"], result["message"], result["cause"]) == (
        "ClientError", "OAUTH_RESPONSE_IS_NOT_CONFORM", "unexpected HTTP response status code",
        {"status": 404, "url": f"{interop.issuer}/.well-known/openid-configuration"})
