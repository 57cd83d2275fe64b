"""Revoked access tokens (RFC 7009), persisted in the store until the token expires."""

from __future__ import annotations

import time

from authz.storage.base import RecordStore

__all__ = ["RevocationList"]

KIND = "revoked_access_token"


class RevocationList:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    async def revoke(self, jti: str, *, client_id: str, expires_at: int) -> None:
        # Kept until the token would have expired anyway; after that it is inactive regardless.
        await self._store.upsert(
            KIND, jti, {"client_id": client_id, "revoked_at": int(time.time())}, expires_at=float(expires_at) + 60
        )

    async def is_revoked(self, jti: str) -> bool:
        return await self._store.find(KIND, jti) is not None
