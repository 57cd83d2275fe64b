from typing import Any

from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session


def fetch_token(issuer: str, client_id: str, cert: str, key: str, ca: str) -> dict[str, Any]:
    with OAuth2Session(client=BackendApplicationClient(client_id=client_id)) as session:
        # include_client_id: client_id in the body; without it, a Basic header with an empty secret.
        token: dict[str, Any] = session.fetch_token(f"{issuer}/token", include_client_id=True, cert=(cert, key),
                                                    verify=ca)
        return token
