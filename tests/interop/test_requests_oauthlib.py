"""requests-oauthlib: the README's recipe (recipes/requests_oauthlib_client.py)."""

from __future__ import annotations

import pytest
from oauthlib.oauth2.rfc6749.errors import InvalidClientError

from tests.interop.conftest import REFUSAL, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop
from tests.interop.recipes.requests_oauthlib_client import fetch_token

pytestmark = pytest.mark.wire


def test_token_bound_to_the_certificate(interop: Interop, client_id: str) -> None:
    files = interop.files(client_id)
    token = fetch_token(interop.issuer, client_id, files.cert, files.key, files.ca)
    interop.assert_bound_token(token["access_token"], client_id)


def test_refused_certificate(interop: Interop) -> None:
    files = interop.files(REFUSED_CERTIFICATE)
    with interop.refusal_logged(), pytest.raises(InvalidClientError) as raised:
        fetch_token(interop.issuer, REFUSED_CLIENT_ID, files.cert, files.key, files.ca)
    print(f"{type(raised.value).__name__}: {raised.value}")
    assert (raised.value.error, raised.value.description) == ("invalid_client", REFUSAL.public_description)
    assert raised.value.status_code == 401
    assert str(raised.value) == f"(invalid_client) {REFUSAL.public_description}"
