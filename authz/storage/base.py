"""The storage contract every backend implements.

Records are JSON objects addressed by ``(kind, id)``, optionally expiring. Five verbs cover
the server's needs and map one to one onto Redis keys with a TTL: ``find``, ``upsert``,
``insert`` (only if absent, atomically: the first writer wins), ``destroy`` and ``all``.
``change_feed`` tells in-process caches about writes made by other processes.
"""

from __future__ import annotations

from typing import Any, Protocol

from authz.storage.changes import ChangeFeed
from authz.storage.errors import CorruptRecord, StorageError

__all__ = ["CorruptRecord", "Record", "RecordStore", "StorageError"]

Record = dict[str, Any]


class RecordStore(Protocol):
    async def open(self) -> None:
        """Connect and create what is missing. Called once before any other verb."""

    async def close(self) -> None: ...

    async def find(self, kind: str, record_id: str) -> Record | None:
        """The record, or None if absent or expired."""

    async def upsert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> None:
        """Create or replace. ``expires_at`` is a POSIX time after which the record is gone."""

    async def insert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> bool:
        """Create only if absent (atomically); True if this call created it."""

    async def destroy(self, kind: str, record_id: str) -> bool:
        """Delete; True if something was deleted."""

    async def all(self, kind: str) -> list[Record]:
        """Every live record of ``kind``, in id order; ``CorruptRecord`` if one cannot be decoded."""

    async def entries(self, kind: str) -> list[tuple[str, Record | CorruptRecord]]:
        """Every live record of ``kind`` with its id, in id order; a record that cannot be
        decoded is its ``CorruptRecord``, so that the others can still be listed."""

    async def dump(self, kind: str) -> list[tuple[str, Record | CorruptRecord, float | None]]:
        """``entries`` with each record's expiry (POSIX time, None for none): what a copy to
        another store needs to keep a revocation no longer than its token."""

    def change_feed(self, *, poll_interval: float, max_stale: float) -> ChangeFeed:
        """The feed that reports writes to this store, by whatever process (not started)."""

    @property
    def location(self) -> str:
        """Where the store is, for messages (never with a password)."""
