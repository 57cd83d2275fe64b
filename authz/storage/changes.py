"""How in-process caches learn that the store changed under them.

Each cache registers a callback for the kind of record it holds; a feed calls it with the
record's id, or with None when anything of that kind may have changed (a poll that saw
"something moved", a reconnection after which missed messages cannot be known).

``current`` says whether caches may still be trusted: a feed that lost its source (Redis
unreachable) keeps them trusted for ``max_stale`` seconds, so that an outage of a few seconds
does not stop token issuance, and not longer, so that an instance cut off from the store does
not serve a removed client for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from authz.storage.errors import StorageError

__all__ = ["ChangeCallback", "ChangeFeed", "ChangeListeners", "Reloader", "cancel_task"]

log = structlog.get_logger("authz.storage")

ChangeCallback = Callable[[str | None], None]


class ChangeFeed(Protocol):
    def on_change(self, kind: str, callback: ChangeCallback) -> None:
        """Call ``callback(record_id or None)`` when records of ``kind`` change."""

    def current(self) -> bool:
        """Whether cached records may be used (the feed works, or failed less than its
        ``max_stale`` ago)."""

    async def start(self) -> None:
        """Begin watching; once it returns, no change made after it is missed."""

    async def stop(self) -> None: ...


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped (None: nothing to do)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ChangeListeners:
    """The callbacks of one feed, by kind; shared by the feed implementations."""

    def __init__(self) -> None:
        self._callbacks: defaultdict[str, list[ChangeCallback]] = defaultdict(list)

    def add(self, kind: str, callback: ChangeCallback) -> None:
        self._callbacks[kind].append(callback)

    def changed(self, kind: str, record_id: str | None) -> None:
        for callback in self._callbacks.get(kind, ()):
            self._call(callback, record_id)

    def everything_changed(self) -> None:
        for callbacks in list(self._callbacks.values()):
            for callback in callbacks:
                self._call(callback, None)

    @staticmethod
    def _call(callback: ChangeCallback, record_id: str | None) -> None:
        try:
            callback(record_id)
        except Exception as exc:  # one broken cache must not keep the others stale
            log.error("store_change_callback_failed", callback=repr(callback), error=repr(exc), exc_info=exc)


class Reloader:
    """Runs ``load`` again when told that its records changed: one reload at a time, and one
    more if a change is announced while it reads (it may have read before that change). A
    reload that fails leaves what was loaded in use; the next change, or the feed's
    reconnection, tries again."""

    def __init__(self, load: Callable[[], Awaitable[None]], failure_event: str) -> None:
        self._load = load
        self._failure_event = failure_event
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self, record_id: str | None = None) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        else:
            self._again = True

    async def close(self) -> None:
        """Wait for a reload in flight, so it never outlives the store."""
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self._load()
            except StorageError as exc:
                log.error(self._failure_event, error=str(exc))
                return
