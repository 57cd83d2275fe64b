"""Recognise this server's own access tokens (for introspection and revocation)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from authz.keys.signing import SigningKeys

__all__ = ["AccessTokenVerifier", "IssuedAccessToken"]


@dataclass(frozen=True)
class IssuedAccessToken:
    """A token this server signed; authlib's token interface for RFC 7009 / RFC 7662."""

    claims: dict[str, Any]
    revoked: bool = False

    @property
    def jti(self) -> str:
        return str(self.claims.get("jti", ""))

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id", ""))

    @property
    def expires_at(self) -> int:
        return int(self.claims.get("exp", 0))

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return [aud]
        return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []

    def check_client(self, client: Any) -> bool:
        return bool(self.client_id == client.client_id)

    def is_expired(self) -> bool:
        return float(self.expires_at) <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked


class AccessTokenVerifier:
    """Checks signature (against every published key), ``typ`` and ``iss``; expiry and
    revocation are the caller's decision (an expired token is "inactive", not "unknown")."""

    def __init__(self, keys: SigningKeys, issuer: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._key_set: KeySet | None = None
        self._key_set_source: object = None

    def _current_key_set(self) -> KeySet:
        jwks = self._keys.jwks
        if self._key_set is None or self._key_set_source is not jwks:
            self._key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            self._key_set_source = jwks
        return self._key_set

    def verify(self, token: str) -> IssuedAccessToken | None:
        if not token or len(token) > 8192 or token.count(".") != 2:
            return None
        try:
            decoded = jwt.decode(token, self._current_key_set(), algorithms=["ES256"])
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        if decoded.header.get("typ") != "at+jwt" or decoded.claims.get("iss") != self._issuer:
            return None
        if not isinstance(decoded.claims.get("jti"), str) or not isinstance(decoded.claims.get("exp"), int):
            return None
        return IssuedAccessToken(dict(decoded.claims))
