"""Token signing keys: generated on first start, persisted in the store, published as JWKS.

The key in use lives in the record ``signing_key/active``. It is created with ``insert``
(first writer wins), so several workers starting at once agree on one key. Rotation copies
the active key to ``signing_key/<kid>`` (still published, so tokens it signed keep
verifying) before a new active key replaces it. Every worker reloads the keys when the
store reports a change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from joserfc.jwk import ECKey

from authz.storage.base import RecordStore, StorageError
from authz.storage.changes import ChangeFeed, Reloader
from authz.tokens.compact_signer import ES256CompactSigner

__all__ = ["ActiveKey", "SigningKeys"]

log = structlog.get_logger("authz.keys")

KIND = "signing_key"
ACTIVE_ID = "active"
ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class ActiveKey:
    kid: str
    algorithm: str
    key: ECKey
    # Signs RFC 9068 access tokens under {"alg", "typ": "at+jwt", "kid"} with this key.
    signer: ES256CompactSigner


def _new_record() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", private=True)
    return {
        "kid": key.thumbprint(),
        "alg": ALGORITHM,
        "jwk": dict(key.as_dict(private=True)),
        "created_at": int(time.time()),
    }


def _import(record: dict[str, Any]) -> ActiveKey:
    try:
        key = ECKey.import_key(record["jwk"])
        if key.private_key is None:
            raise ValueError("the stored JWK has no private part")
        kid, algorithm = str(record["kid"]), str(record["alg"])
        signer = ES256CompactSigner(key.private_key, {"alg": algorithm, "typ": "at+jwt", "kid": kid})
        return ActiveKey(kid=kid, algorithm=algorithm, key=key, signer=signer)
    except (KeyError, ValueError, TypeError) as exc:
        raise StorageError(f"stored signing key {record.get('kid')!r} is unusable: {exc}") from exc


class SigningKeys:
    def __init__(self, store: RecordStore, feed: ChangeFeed | None = None) -> None:
        self._store = store
        self._active: ActiveKey | None = None
        self._jwks: dict[str, Any] = {"keys": []}
        self._reloader = Reloader(self.load, "signing_key_reload_failed")
        if feed is not None:
            feed.on_change(KIND, self._reloader)

    @property
    def active(self) -> ActiveKey:
        if self._active is None:
            raise RuntimeError("signing keys are not loaded")
        return self._active

    @property
    def loaded(self) -> bool:
        return self._active is not None

    @property
    def jwks(self) -> dict[str, Any]:
        """Public JWK Set: the active key and every retired key still kept."""
        return self._jwks

    async def load(self) -> None:
        """Load the keys, creating the first one if the store has none."""
        record = await self._store.find(KIND, ACTIVE_ID)
        if record is None:
            if await self._store.insert(KIND, ACTIVE_ID, _new_record()):
                log.info("signing_key_generated")
            record = await self._store.find(KIND, ACTIVE_ID)
            if record is None:
                raise StorageError("the signing key could not be created")
        active = _import(record)
        published: dict[str, dict[str, Any]] = {}
        for stored in await self._store.all(KIND):
            key = _import(stored)
            published[key.kid] = {
                **key.key.as_dict(private=False),
                "kid": key.kid,
                "alg": key.algorithm,
                "use": "sig",
            }
        self._active = active
        # Active key first: clients that take the first key get the right one.
        self._jwks = {"keys": [published.pop(active.kid), *published.values()]}

    async def rotate(self) -> ActiveKey:
        """Make a new key active; the previous one stays published for verification."""
        current = await self._store.find(KIND, ACTIVE_ID)
        if current is not None:
            await self._store.upsert(KIND, str(current["kid"]), current)
        await self._store.upsert(KIND, ACTIVE_ID, _new_record())
        await self.load()
        return self.active

    async def retire(self, kid: str) -> bool:
        """Stop publishing a retired key (tokens it signed stop verifying)."""
        if self._active is not None and kid == self._active.kid:
            raise ValueError("the active key cannot be retired; rotate first")
        removed = await self._store.destroy(KIND, kid)
        await self.load()
        return removed

    async def close(self) -> None:
        await self._reloader.close()
