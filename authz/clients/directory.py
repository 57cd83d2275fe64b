"""Registered clients with an in-process cache in front of the store.

The token endpoint looks clients up on every request; a cache hit is a dict lookup.
Entries are dropped when this process writes a client and, through the store's change feed,
when another process does. Unknown client_ids are cached too (bounded), so garbage ids
cannot make every request reach the store. While the feed cannot vouch for the cache (Redis
unreachable for longer than ``--store-max-stale``), lookups bypass it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import structlog

from authz.clients.audit import audit_change
from authz.clients.model import InvalidClientMetadata, RegisteredClient
from authz.storage.base import CorruptRecord, RecordStore
from authz.storage.changes import ChangeFeed

__all__ = ["ClientDirectory", "UnusableRegistration", "stored_client"]

log = structlog.get_logger("authz.clients")

KIND = "client"


def stored_client(key: str, metadata: Mapping[str, Any]) -> RegisteredClient:
    """The client that the record stored under ``key`` registers; ``InvalidClientMetadata``
    if the server cannot use it."""
    client = RegisteredClient.from_metadata(metadata)
    if client.client_id != key:
        # A record edited or copied by hand: tokens would be minted for another identity.
        raise InvalidClientMetadata(f"the record stored as {key!r} names client_id {client.client_id!r}")
    return client


class UnusableRegistration(Exception):
    """A stored registration cannot be used: it fails validation, or is not even a JSON
    object (edited by hand, from an older version, truncated)."""

    def __init__(self, client_id: str, reason: str) -> None:
        super().__init__(f"registration of {client_id!r} is unusable: {reason}")
        self.client_id = client_id
        self.reason = reason


class ClientDirectory:
    def __init__(self, store: RecordStore, feed: ChangeFeed | None = None, cache_size: int = 10_000) -> None:
        self._store = store
        self._cache: OrderedDict[str, RegisteredClient | UnusableRegistration | None] = OrderedDict()
        self._cache_size = cache_size
        self._feed = feed
        # Moves at every invalidation: a lookup that read the store before a change was
        # announced must not cache what it read after the announcement dropped the entry.
        self._generation = 0
        self._loading: dict[tuple[str, int], asyncio.Future[RegisteredClient | UnusableRegistration | None]] = {}
        if feed is not None:
            feed.on_change(KIND, self._forget)

    def invalidate(self) -> None:
        self._forget(None)

    def _forget(self, client_id: str | None) -> None:
        self._generation += 1
        if client_id is None:
            self._cache.clear()
        else:
            self._cache.pop(client_id, None)

    async def get(self, client_id: str) -> RegisteredClient | None:
        """The client, None if unknown; ``UnusableRegistration`` if stored but invalid."""
        if self._feed is not None and not self._feed.current():
            self.invalidate()  # nothing cached before or during the outage may be trusted
            entry = await self._load(client_id)
        else:
            try:
                entry = self._cache[client_id]
            except KeyError:
                generation = self._generation
                entry = await self._shared_load(client_id, generation)
                if generation == self._generation:
                    self._cache[client_id] = entry
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        if isinstance(entry, UnusableRegistration):
            raise entry
        return entry

    async def _shared_load(self, client_id: str, generation: int) -> RegisteredClient | UnusableRegistration | None:
        """One store read per client and generation, however many requests miss the cache at
        once (a cold worker, or every request right after an invalidation): the others wait
        for it. Shielded: a request that goes away does not cancel the others' read."""
        key = (client_id, generation)
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(client_id))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, client_id: str) -> RegisteredClient | UnusableRegistration | None:
        try:
            metadata = await self._store.find(KIND, client_id)
            if metadata is None:
                return None
            return stored_client(client_id, metadata)
        # A record that does not decode is as unusable as one that does not validate: the
        # client gets the same refusal and the operator the same line. A store that fails as
        # a whole (StorageError) is still a server error.
        except (CorruptRecord, InvalidClientMetadata) as exc:
            log.error("client_registration_unusable", client_id=client_id, reason=str(exc))
            return UnusableRegistration(client_id, str(exc))

    async def register(self, metadata: Mapping[str, Any], *, replace: bool = False,
                       actor: str = "internal") -> RegisteredClient:
        """Validate and store. Raises ``InvalidClientMetadata``, or ``KeyError`` if the
        client_id is taken and ``replace`` is false. ``actor`` names who made the change, for
        its audit line."""
        client = RegisteredClient.from_metadata(metadata)
        record = dict(client.metadata)
        record.setdefault("client_id_issued_at", int(time.time()))
        before = None
        if replace:
            with contextlib.suppress(CorruptRecord):
                before = await self._store.find(KIND, client.client_id)
            await self._store.upsert(KIND, client.client_id, record)
        elif not await self._store.insert(KIND, client.client_id, record):
            raise KeyError(client.client_id)
        self._changed()
        audit_change(actor=actor, action="updated" if before is not None else "created", client_id=client.client_id,
                     before=before, after=record)
        return RegisteredClient.from_metadata(record)

    async def remove(self, client_id: str, *, actor: str = "internal") -> bool:
        before = None
        with contextlib.suppress(CorruptRecord):
            before = await self._store.find(KIND, client_id)
        removed = await self._store.destroy(KIND, client_id)
        self._changed()
        if removed:
            audit_change(actor=actor, action="deleted", client_id=client_id, before=before, after=None)
        return removed

    async def all_metadata(self) -> list[tuple[str, dict[str, Any] | CorruptRecord]]:
        """Every stored registration under its key, in key order; one that cannot be decoded
        is its ``CorruptRecord``."""
        return await self._store.entries(KIND)

    async def metadata(self, client_id: str) -> dict[str, Any] | None:
        return await self._store.find(KIND, client_id)

    def _changed(self) -> None:
        # Our own write: only our cache is stale. Other processes learn of it through their
        # change feed (SQLite's data_version moves for every other connection; Redis publishes).
        self.invalidate()
