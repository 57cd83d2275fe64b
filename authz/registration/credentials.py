"""The two bearer secrets of registration: RFC 7592 registration access tokens (one per client,
returned at registration) and RFC 7591 initial access tokens (created by the operator's CLI,
single-use or until they expire).

Only their SHA-256 digests are stored: whoever reads the store (a backup, a Redis replica)
learns no usable secret. The prefixes tell the endpoint which check a presented token needs
without trying each, and tell an operator what a leaked string is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from authz.storage.base import CorruptRecord, RecordStore

__all__ = ["IAT_PREFIX", "RAT_PREFIX", "InitialAccess", "RegistrationCredentials"]

RAT_PREFIX = "authz-rat."
IAT_PREFIX = "authz-iat."
_RAT_KIND = "registration_access_token"
_IAT_KIND = "initial_access_token"
_MAX_SECRET_CHARS = 200


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class InitialAccess:
    """An initial access token that was accepted: its public id (the first characters of its
    digest, for audit lines) and who created it."""

    token_id: str
    created_by: str


class RegistrationCredentials:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    async def issue_registration_token(self, client_id: str) -> str:
        """A new registration access token for ``client_id`` (replacing any previous one)."""
        secret = RAT_PREFIX + secrets.token_urlsafe(32)
        await self._store.upsert(_RAT_KIND, client_id, {"sha256": _digest(secret)})
        return secret

    async def registration_token_matches(self, client_id: str, presented: str) -> bool:
        if len(presented) > _MAX_SECRET_CHARS:
            return False
        try:
            record = await self._store.find(_RAT_KIND, client_id)
        except CorruptRecord:
            return False
        expected = record.get("sha256") if record else None
        # Constant time: a comparison must not tell how much of a guess was right.
        return isinstance(expected, str) and hmac.compare_digest(expected, _digest(presented))

    async def forget_registration_token(self, client_id: str) -> None:
        await self._store.destroy(_RAT_KIND, client_id)

    async def create_initial_token(self, *, created_by: str, expires_at: float | None, single_use: bool) -> str:
        secret = IAT_PREFIX + secrets.token_urlsafe(32)
        await self._store.insert(_IAT_KIND, _digest(secret), {"created_by": created_by, "single_use": single_use},
                                 expires_at=expires_at)
        return secret

    async def use_initial_token(self, presented: str) -> InitialAccess | None:
        """The token's identity if it is valid now; a single-use token is consumed by this
        call (of two concurrent uses, exactly one succeeds: ``destroy`` reports who deleted)."""
        if len(presented) > _MAX_SECRET_CHARS:
            return None
        digest = _digest(presented)
        try:
            record = await self._store.find(_IAT_KIND, digest)
        except CorruptRecord:
            return None
        if record is None:
            return None
        if record.get("single_use", True) and not await self._store.destroy(_IAT_KIND, digest):
            return None
        return InitialAccess(token_id=digest[:12], created_by=str(record.get("created_by", "")))
