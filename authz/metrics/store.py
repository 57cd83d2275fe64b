"""The store, timed and counted: one wrapper around whichever backend is configured, so that
every backend reports the same ``authz_store_operation_seconds`` and ``authz_store_errors_total``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from authz.metrics.instruments import ServerMetrics
from authz.storage.base import CorruptRecord, Record, RecordStore, StorageError
from authz.storage.changes import ChangeFeed

__all__ = ["InstrumentedStore"]

T = TypeVar("T")


class InstrumentedStore:
    """A ``RecordStore`` that times each verb of ``inner`` and counts its failures. A record
    that does not decode (``CorruptRecord``) is the record's problem, not the store's: timed,
    not counted as an error."""

    def __init__(self, inner: RecordStore, metrics: ServerMetrics) -> None:
        self.inner = inner
        self._latency = metrics.store_latency
        self._errors = metrics.store_error

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await call()
        except CorruptRecord:
            raise
        except StorageError:
            self._errors[operation].inc()
            raise
        finally:
            self._latency[operation].observe(time.perf_counter() - started)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def find(self, kind: str, record_id: str) -> Record | None:
        return await self._timed("find", lambda: self.inner.find(kind, record_id))

    async def upsert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> None:
        await self._timed("upsert", lambda: self.inner.upsert(kind, record_id, value, expires_at=expires_at))

    async def insert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> bool:
        return await self._timed("insert", lambda: self.inner.insert(kind, record_id, value, expires_at=expires_at))

    async def destroy(self, kind: str, record_id: str) -> bool:
        return await self._timed("destroy", lambda: self.inner.destroy(kind, record_id))

    async def all(self, kind: str) -> list[Record]:
        return await self._timed("all", lambda: self.inner.all(kind))

    async def entries(self, kind: str) -> list[tuple[str, Record | CorruptRecord]]:
        return await self._timed("entries", lambda: self.inner.entries(kind))

    async def dump(self, kind: str) -> list[tuple[str, Record | CorruptRecord, float | None]]:
        return await self._timed("dump", lambda: self.inner.dump(kind))

    def change_feed(self, *, poll_interval: float, max_stale: float) -> ChangeFeed:
        return self.inner.change_feed(poll_interval=poll_interval, max_stale=max_stale)

    @property
    def location(self) -> str:
        return self.inner.location
