"""The change feed of the SQLite store: poll SQLite's ``data_version``.

One background task asks the store every ``interval`` seconds and, when another process (a
worker, the CLI) wrote, tells every cache that anything may have changed: a change made
elsewhere is seen within one interval, and the hot path never waits on the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import structlog

from authz.storage.changes import ChangeCallback, ChangeListeners, cancel_task

__all__ = ["PollingChangeFeed"]

log = structlog.get_logger("authz.storage")


class PollingChangeFeed:
    def __init__(self, change_marker: Callable[[], Awaitable[Hashable]], interval: float) -> None:
        self._change_marker = change_marker
        self._interval = interval
        self._listeners = ChangeListeners()
        self._task: asyncio.Task[None] | None = None
        self._marker: Hashable = None

    def on_change(self, kind: str, callback: ChangeCallback) -> None:
        self._listeners.add(kind, callback)

    def current(self) -> bool:
        # A local file: when it cannot be read, the lookups that miss the cache fail too.
        return True

    async def start(self) -> None:
        self._marker = await self._change_marker()
        self._task = asyncio.create_task(self._run(), name="authz-store-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                marker = await self._change_marker()
            except Exception as exc:  # keep watching: a transient store error must not stop invalidation
                log.warning("store_watch_failed", error=str(exc))
                continue
            if marker != self._marker:
                self._marker = marker
                self._listeners.everything_changed()
