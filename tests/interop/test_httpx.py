"""httpx: the README's recipe (recipes/httpx_client.py), and the pitfall it avoids."""

from __future__ import annotations

import httpx
import pytest

from authz.certificates.rejection import RejectionReason
from tests.interop.conftest import REFUSAL_BODY, REFUSED_CERTIFICATE, REFUSED_CLIENT_ID, Interop
from tests.interop.recipes.httpx_client import fetch_token

pytestmark = pytest.mark.wire


def test_token_bound_to_the_certificate(interop: Interop, client_id: str) -> None:
    files = interop.files(client_id)
    token = fetch_token(interop.issuer, client_id, files.cert, files.key, files.ca)
    interop.assert_bound_token(token["access_token"], client_id)


def test_refused_certificate(interop: Interop) -> None:
    files = interop.files(REFUSED_CERTIFICATE)
    with interop.refusal_logged(), pytest.raises(httpx.HTTPStatusError) as raised:
        fetch_token(interop.issuer, REFUSED_CLIENT_ID, files.cert, files.key, files.ca)
    print(f"{type(raised.value).__name__}: {raised.value}\nresponse body: {raised.value.response.text}")
    # httpx knows no OAuth: its message has the status only, the error is in the response.
    assert str(raised.value).startswith(f"Client error '401 Unauthorized' for url '{interop.issuer}/token'")
    assert raised.value.response.status_code == 401
    assert raised.value.response.json() == REFUSAL_BODY


def test_verify_file_name_drops_the_certificate(interop: Interop) -> None:
    """Why the recipe builds one SSLContext: httpx 0.28, given ``verify=`` a file name, makes its
    context from that alone and never loads ``cert=``; the server sees no certificate."""
    client_id = "dn-client"
    files = interop.files(client_id)
    with pytest.warns(DeprecationWarning), httpx.Client(verify=files.ca, cert=(files.cert, files.key)) as client:
        response = client.post(f"{interop.issuer}/token", data={"grant_type": "client_credentials",
                                                                 "client_id": client_id})
    assert (response.status_code, response.json()) == (401, {
        "error": "invalid_client", "error_description": RejectionReason.NO_CERTIFICATE.public_description})
