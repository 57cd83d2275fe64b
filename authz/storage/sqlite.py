"""The embedded default backend: one SQLite file in the data directory.

It needs no service and survives restarts; several worker processes and the CLI share it
(WAL mode, busy timeout). Every query runs on aiosqlite's thread, never on the event loop;
the hot path does not reach it at all (see the caches in ``authz.clients.directory`` and
``authz.keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Hashable
from pathlib import Path

import aiosqlite

from authz.storage.base import CorruptRecord, Record, StorageError
from authz.storage.changes import ChangeFeed
from authz.storage.sqlite_failures import store_failure
from authz.storage.watcher import PollingChangeFeed

__all__ = ["SQLiteRecordStore"]

# Bounds the wait for aiosqlite's thread to stop after a failed connect (it stops at once).
_WORKER_STOP_TIMEOUT = 5.0

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
    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(data_dir) / "authz.sqlite3"
        # How long a query waits for another process's write lock before failing.
        self._busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    def change_feed(self, *, poll_interval: float, max_stale: float) -> ChangeFeed:
        return PollingChangeFeed(self.change_marker, poll_interval)

    def exists(self) -> bool:
        """Whether the store file exists (a quick stat, for the CLI before it opens the store)."""
        try:
            return self.path.exists()
        except OSError as exc:  # not allowed into the directory
            raise store_failure("open", self.path, exc, busy_timeout=self._busy_timeout) from exc

    async def open(self) -> None:
        step = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = await _connect(self.path, self._busy_timeout)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            await self._db.execute(_SCHEMA)
            await self._db.commit()
            # The store holds the token signing key: readable by the owner only. A store this
            # user cannot make private (another user's file, a read-only file system) is refused.
            step = "chmod 0600"
            os.chmod(self.path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            with contextlib.suppress(StorageError):  # the failure to report is the first one
                await self.close()
            raise await self._failure("open", exc, step) from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                await db.close()
            except sqlite3.Error as exc:
                raise await self._failure("close", exc) from exc

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the store is not open")
        return self._db

    @contextlib.asynccontextmanager
    async def _using(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for one verb: a failure becomes a ``StorageError`` naming the file
        and the cause, and leaves no transaction open."""
        db = self.db
        try:
            yield db
        except (OSError, sqlite3.Error) as exc:
            # After a full disk, an I/O error or a busy database SQLite may or may not have
            # rolled the transaction back; one left open would hold the write lock against every
            # other process. SQLite's advice: roll back (harmless if it was done).
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            raise await self._failure(action, exc) from exc

    async def _failure(self, action: str, exc: OSError | sqlite3.Error, step: str | None = None) -> StorageError:
        # Finding the cause may ask the file system: not on the event loop.
        return await asyncio.to_thread(store_failure, action, self.path, exc, busy_timeout=self._busy_timeout,
                                       step=step)

    async def find(self, kind: str, record_id: str) -> Record | None:
        async with self._using("read") as db, db.execute(
            "SELECT value FROM records WHERE kind = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (kind, record_id, time.time()),
        ) as cursor:
            row = await cursor.fetchone()
        return _decode(row[0], kind, record_id) if row else None

    async def upsert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> None:
        async with self._using("write") as db:
            await db.execute(
                "INSERT INTO records (kind, id, value, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (kind, record_id, json.dumps(value), expires_at),
            )
            await db.commit()

    async def insert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> bool:
        async with self._using("write") as db:
            # An expired record does not block a new one.
            await db.execute(
                "DELETE FROM records WHERE kind = ? AND id = ? AND expires_at IS NOT NULL AND expires_at <= ?",
                (kind, record_id, time.time()),
            )
            cursor = await db.execute(
                "INSERT OR IGNORE INTO records (kind, id, value, expires_at) VALUES (?, ?, ?, ?)",
                (kind, record_id, json.dumps(value), expires_at),
            )
            await db.commit()
        return cursor.rowcount == 1

    async def destroy(self, kind: str, record_id: str) -> bool:
        async with self._using("write") as db:
            cursor = await db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, record_id))
            await db.commit()
        return cursor.rowcount > 0

    async def all(self, kind: str) -> list[Record]:
        return [_decode(value, kind, record_id) for record_id, value, _ in await self._rows(kind)]

    async def entries(self, kind: str) -> list[tuple[str, Record | CorruptRecord]]:
        return [(record_id, record) for record_id, record, _ in await self.dump(kind)]

    async def dump(self, kind: str) -> list[tuple[str, Record | CorruptRecord, float | None]]:
        dumped: list[tuple[str, Record | CorruptRecord, float | None]] = []
        for record_id, value, expires_at in await self._rows(kind):
            try:
                dumped.append((record_id, _decode(value, kind, record_id), expires_at))
            except CorruptRecord as exc:
                dumped.append((record_id, exc, expires_at))
        return dumped

    async def _rows(self, kind: str) -> list[tuple[str, str, float | None]]:
        async with self._using("read") as db, db.execute(
            "SELECT id, value, expires_at FROM records WHERE kind = ? AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY id",
            (kind, time.time()),
        ) as cursor:
            return [(str(record_id), str(value), None if expires_at is None else float(expires_at))
                    for record_id, value, expires_at in await cursor.fetchall()]

    async def change_marker(self) -> Hashable:
        # data_version changes when *another* connection committed; this connection's own
        # writes are announced by the repositories that make them.
        async with self._using("read") as db, db.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def _connect(path: Path, busy_timeout: float) -> aiosqlite.Connection:
    connection = aiosqlite.connect(path, timeout=busy_timeout)
    # aiosqlite runs each connection on a thread of its own, which keeps the process alive
    # until the connection is closed. The store closes it on every path; should one be missed
    # (a bug, an interrupt), a daemon thread still lets a process that reported its error
    # exit instead of hanging. That loses nothing: SQLite's journal keeps what was committed
    # and voids the rest, as after a kill. aiosqlite 0.22 holds the thread in a private
    # attribute: should that change, the close on every path remains.
    worker = getattr(connection, "_thread", None)
    if isinstance(worker, threading.Thread):
        worker.daemon = True
    try:
        return await connection
    except BaseException:
        # aiosqlite stops its thread after a failed connect but does not wait for it: the
        # caller could close the event loop first, and the thread die printing a traceback
        # ("Event loop is closed") after the one-line error.
        if isinstance(worker, threading.Thread) and worker.is_alive():
            await asyncio.to_thread(worker.join, _WORKER_STOP_TIMEOUT)
        raise


def _decode(text: str, kind: str, record_id: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptRecord(kind, record_id, f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CorruptRecord(kind, record_id, "is not a JSON object")
    return value
