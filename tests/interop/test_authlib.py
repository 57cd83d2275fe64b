"""authlib: the README's recipe (recipes/authlib_client.py), with RFC 8414 discovery."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from tests.interop.conftest import REFUSAL, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop
from tests.interop.recipes.authlib_client import fetch_token
from tests.wire.client import client_ssl_context

pytestmark = pytest.mark.wire


def test_metadata_validates(interop: Interop) -> None:
    """authlib's RFC 8414 validation, unmodified, accepts the document the recipe discovers."""
    with httpx.Client(verify=client_ssl_context(None, interop.pki.server_ca)) as client:
        document: dict[str, Any] = client.get(f"{interop.issuer}/.well-known/oauth-authorization-server").json()
    metadata = AuthorizationServerMetadata(document)
    metadata.validate()
    assert metadata["issuer"] == interop.issuer
    assert metadata["token_endpoint"] == f"{interop.issuer}/token"
    assert metadata["token_endpoint_auth_methods_supported"] == ["tls_client_auth", "self_signed_tls_client_auth"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is True


def test_token_bound_to_the_certificate(interop: Interop, client_id: str) -> None:
    files = interop.files(client_id)
    token = fetch_token(interop.issuer, client_id, files.cert, files.key, files.ca)
    interop.assert_bound_token(token["access_token"], client_id)


def test_refused_certificate(interop: Interop) -> None:
    files = interop.files(REFUSED_CERTIFICATE)
    with interop.refusal_logged(), pytest.raises(OAuthError) as raised:
        fetch_token(interop.issuer, REFUSED_CLIENT_ID, files.cert, files.key, files.ca)
    print(f"{type(raised.value).__name__}: {raised.value}")
    assert (raised.value.error, raised.value.description) == ("invalid_client", REFUSAL.public_description)
    assert str(raised.value) == f"invalid_client: {REFUSAL.public_description}"
