"""Issue RFC 9068 JWT access tokens, bound to the client certificate (RFC 8705 §3.1)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from authz.keys.signing import SigningKeys
from authz.tokens.signature_batch import SignatureBatch

__all__ = ["AccessTokenIssuer"]


@dataclass(frozen=True)
class AccessTokenIssuer:
    keys: SigningKeys
    issuer: str
    audience: str  # the default audience: for clients allowed no resource server
    lifetime: int
    signatures: SignatureBatch = field(default_factory=SignatureBatch)

    def issue(self, *, client_id: str, scope: str, certificate_thumbprint: str | None,
              audience: str | list[str] | None = None) -> dict[str, Any]:
        """The token response body (RFC 6749 §5.1) for a client_credentials grant. Its
        ``access_token`` is a future: the JWT is signed in the event loop's next turn, with the
        other tokens of this turn (``authz.tokens.signature_batch``)."""
        active = self.keys.active
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            # RFC 9068 §2.2: with no resource owner, sub is the client's identifier.
            "sub": client_id,
            "client_id": client_id,
            "aud": self.audience if audience is None else audience,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        if scope:
            claims["scope"] = scope
        if certificate_thumbprint is not None:
            claims["cnf"] = {"x5t#S256": certificate_thumbprint}
        token = self.signatures.sign(active.signer, claims)
        response: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        if scope:
            response["scope"] = scope
        return response
