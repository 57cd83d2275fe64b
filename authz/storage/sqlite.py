"""The embedded default backend: one SQLite file in the data directory.

It needs no service and survives restarts; several worker processes and the CLI share it
(WAL mode, busy timeout). Every query runs on aiosqlite's thread, never on the event loop;
the hot path does not reach it at all (see the caches in ``authz.clients.directory`` and
``authz.keys``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Hashable
from pathlib import Path

import aiosqlite

from authz.storage.base import CorruptRecord, Record, StorageError

__all__ = ["SQLiteRecordStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (kind, id)
)
"""


class SQLiteRecordStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "authz.sqlite3"
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = await aiosqlite.connect(self.path, timeout=10.0)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA busy_timeout=10000")
            await self._db.execute(_SCHEMA)
            await self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            # aiosqlite runs the connection in a (non-daemon) thread: left open, it would keep
            # the process alive after the error is reported.
            await self.close()
            raise StorageError(f"cannot open the store at {self.path}: {exc}") from exc
        # The store holds the token signing key: readable by the owner only.
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not open")
        return self._db

    async def find(self, kind: str, record_id: str) -> Record | None:
        async with self.db.execute(
            "SELECT value FROM records WHERE kind = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (kind, record_id, time.time()),
        ) as cursor:
            row = await cursor.fetchone()
        return _decode(row[0], kind, record_id) if row else None

    async def upsert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> None:
        await self.db.execute(
            "INSERT INTO records (kind, id, value, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (kind, record_id, json.dumps(value), expires_at),
        )
        await self.db.commit()

    async def insert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> bool:
        # An expired record does not block a new one.
        await self.db.execute(
            "DELETE FROM records WHERE kind = ? AND id = ? AND expires_at IS NOT NULL AND expires_at <= ?",
            (kind, record_id, time.time()),
        )
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO records (kind, id, value, expires_at) VALUES (?, ?, ?, ?)",
            (kind, record_id, json.dumps(value), expires_at),
        )
        await self.db.commit()
        return cursor.rowcount == 1

    async def destroy(self, kind: str, record_id: str) -> bool:
        cursor = await self.db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, record_id))
        await self.db.commit()
        return cursor.rowcount > 0

    async def all(self, kind: str) -> list[Record]:
        return [_decode(value, kind, record_id) for record_id, value in await self._rows(kind)]

    async def entries(self, kind: str) -> list[tuple[str, Record | CorruptRecord]]:
        entries: list[tuple[str, Record | CorruptRecord]] = []
        for record_id, value in await self._rows(kind):
            try:
                entries.append((record_id, _decode(value, kind, record_id)))
            except CorruptRecord as exc:
                entries.append((record_id, exc))
        return entries

    async def _rows(self, kind: str) -> list[tuple[str, str]]:
        async with self.db.execute(
            "SELECT id, value FROM records WHERE kind = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY id",
            (kind, time.time()),
        ) as cursor:
            return [(str(record_id), str(value)) for record_id, value in await cursor.fetchall()]

    async def change_marker(self) -> Hashable:
        # data_version changes when *another* connection committed; this connection's own
        # writes are announced by the repositories that make them.
        async with self.db.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


def _decode(text: str, kind: str, record_id: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptRecord(kind, record_id, f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CorruptRecord(kind, record_id, "is not a JSON object")
    return value
