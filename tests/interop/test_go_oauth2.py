"""Go's golang.org/x/oauth2/clientcredentials (Debian's package): the README's recipe
(go/recipe.go), run by go/harness.go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.conftest import REFUSAL_BODY, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop, run_go

pytestmark = pytest.mark.wire


def test_token_bound_to_the_certificate(interop: Interop, go_harness: Path, client_id: str) -> None:
    result = run_go(go_harness, interop.issuer, client_id, interop.files(client_id))
    assert result["ok"], result
    assert result["token_type"] == "Bearer"
    interop.assert_bound_token(result["access_token"], client_id)


def test_refused_certificate(interop: Interop, go_harness: Path) -> None:
    with interop.refusal_logged():
        result = run_go(go_harness, interop.issuer, REFUSED_CLIENT_ID, interop.files(REFUSED_CERTIFICATE))
    print(json.dumps(result, indent=2))
    # x/oauth2 0.3.0 (Debian 12) keeps the body as it came, in the message too; later releases
    # also parse it into RetrieveError.ErrorCode and ErrorDescription.
    assert result["error_type"] == "*oauth2.RetrieveError"
    assert result["status"] == 401
    assert json.loads(result["body"]) == REFUSAL_BODY
    assert result["message"] == f"oauth2: cannot fetch token: 401 Unauthorized\nResponse: {result['body']}"
