import ssl
from typing import Any

import httpx


def fetch_token(issuer: str, client_id: str, cert: str, key: str, ca: str) -> dict[str, Any]:
    # One SSLContext with both: httpx 0.28 ignores cert=... when verify= is a file name.
    tls = ssl.create_default_context(cafile=ca)
    tls.load_cert_chain(cert, key)
    with httpx.Client(verify=tls) as client:
        response = client.post(f"{issuer}/token", data={"grant_type": "client_credentials", "client_id": client_id})
        response.raise_for_status()
        token: dict[str, Any] = response.json()
        return token
