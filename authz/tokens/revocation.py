"""Revoked access tokens (RFC 7009), persisted in the store until the token expires."""

from __future__ import annotations

import time

import structlog

from authz.storage.base import CorruptRecord, RecordStore

__all__ = ["RevocationList"]

KIND = "revoked_access_token"

log = structlog.get_logger("authz.tokens")


class RevocationList:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    async def revoke(self, jti: str, *, client_id: str, expires_at: int) -> None:
        # Kept until the token would have expired anyway; after that it is inactive regardless.
        await self._store.upsert(
            KIND, jti, {"client_id": client_id, "revoked_at": int(time.time())}, expires_at=float(expires_at) + 60
        )

    async def is_revoked(self, jti: str) -> bool:
        try:
            return await self._store.find(KIND, jti) is not None
        except CorruptRecord as exc:
            # The record's presence is the revocation; its content only documents it. A
            # revoked token must never come back to life because its record was damaged.
            log.error("revocation_record_corrupt", jti=jti, error=str(exc))
            return True
