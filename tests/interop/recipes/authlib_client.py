from typing import Any

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata


def fetch_token(issuer: str, client_id: str, cert: str, key: str, ca: str) -> dict[str, Any]:
    # On each request: REQUESTS_CA_BUNDLE, when set, wins over a session's own verify.
    tls: dict[str, Any] = {"cert": (cert, key), "verify": ca}
    # "none": client_id in the body and no secret; the certificate authenticates the client.
    with OAuth2Session(client_id, token_endpoint_auth_method="none") as session:
        url = f"{issuer}/.well-known/oauth-authorization-server"
        metadata = AuthorizationServerMetadata(session.get(url, withhold_token=True, **tls).json())
        metadata.validate()
        token: dict[str, Any] = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials",
                                                    **tls)
        return token
