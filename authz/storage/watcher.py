"""Tell in-process caches when another process (a worker, the CLI) changed the store.

One background task asks the backend's ``change_marker`` every ``interval`` seconds and
calls the registered invalidation callbacks when it moved: a change made elsewhere is seen
within one interval, and the hot path never waits on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable

import structlog

from authz.storage.base import RecordStore

__all__ = ["ChangeWatcher"]

log = structlog.get_logger("authz.storage")


class ChangeWatcher:
    def __init__(self, store: RecordStore, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._marker: Hashable = None

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        for callback in self._callbacks:
            callback()

    async def start(self) -> None:
        self._marker = await self._store.change_marker()
        self._task = asyncio.create_task(self._run(), name="authz-store-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                marker = await self._store.change_marker()
            except Exception as exc:  # keep watching: a transient store error must not stop invalidation
                log.warning("store_watch_failed", error=str(exc))
                continue
            if marker != self._marker:
                self._marker = marker
                self.notify()
