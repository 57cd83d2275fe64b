"""The change feed of the Redis store: a subscription to the channel its writes publish on.

Every write script publishes ``[kind, id]`` atomically with the write, so an instance that is
subscribed hears of every change within milliseconds and drops just that record from its
caches. A subscription can only miss messages while it is down; so whenever it is
(re-)established, every cache is told that anything may have changed.

While the subscription is down (Redis restarting, a failover, a network cut), caches stay
trusted for ``max_stale`` seconds (``--store-max-stale``): a cached client keeps getting
tokens through a short outage. After that, ``current()`` is false and the caches are bypassed,
so an instance cut off from Redis cannot keep serving a client removed meanwhile.

Each second the feed publishes a heartbeat of its own through the command connection (which
reaches the current master) and expects to hear it on its subscription. Three seconds without
it, the subscription is taken for dead and made again. This proves the whole path a change
takes, whatever the topology: it catches a half-open connection after a network cut, and a
subscription left on a node that a Sentinel failover turned into a replica (Sentinel does not
disconnect subscribers). With Sentinel, each heartbeat also asks the Sentinels which node is the
master, and subscribes again when it is not the one subscribed to: a replica, where PUBLISH
works too, would hear the heartbeats without hearing the master's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import TYPE_CHECKING

import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from authz.storage.base import StorageError
from authz.storage.changes import ChangeCallback, ChangeListeners, cancel_task

if TYPE_CHECKING:
    from authz.storage.redis_store import RedisRecordStore

__all__ = ["RedisChangeFeed"]

log = structlog.get_logger("authz.storage")

# Seconds between heartbeats, and how long the subscription may miss its own before it is
# taken for dead.
_HEARTBEAT_EVERY = 1.0
_DEAD_AFTER = 3.0
# The "kind" of heartbeat messages; no record kind can be empty.
_HEARTBEAT = ""
# Reconnection back-off, from first to largest (seconds).
_RETRY_FIRST, _RETRY_MAX = 0.05, 1.0


class RedisChangeFeed:
    def __init__(self, store: RedisRecordStore, *, max_stale: float) -> None:
        self._store = store
        self._max_stale = max_stale
        self._listeners = ChangeListeners()
        self._task: asyncio.Task[None] | None = None
        self._lost_since: float | None = None  # monotonic time the subscription went down
        self._subscribed = asyncio.Event()
        self._attempt = 0
        self._nonce = secrets.token_hex(8)  # tells our heartbeats from other instances'
        self._heard_heartbeat = 0.0

    def on_change(self, kind: str, callback: ChangeCallback) -> None:
        self._listeners.add(kind, callback)

    def current(self) -> bool:
        return self._lost_since is None or time.monotonic() - self._lost_since < self._max_stale

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="authz-store-changes")
        # Until subscribed, a change could be missed: start-up waits for it (bounded, since a
        # store that just answered PING should accept a SUBSCRIBE at once).
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=self._store_timeout() * 3)
        except TimeoutError:
            await self.stop()
            raise StorageError(f"cannot subscribe to {self._store.channel} on the store at {self._store.location}: "
                               "no confirmation in time") from None

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    def _store_timeout(self) -> float:
        return float(self._store.clients.connection_options["socket_timeout"])

    async def _run(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                if self._lost_since is None:
                    self._lost_since = time.monotonic()
                    log.warning("store_change_feed_lost", store=self._store.location, error=str(exc) or repr(exc),
                                caches_trusted_for=self._max_stale)
                self._attempt += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            else:  # pragma: no cover - _listen returns only by raising
                delay = _RETRY_FIRST

    async def _listen(self) -> None:
        client = self._store.clients.subscriber(self._attempt)
        pubsub = client.pubsub()
        heartbeat = json.dumps([_HEARTBEAT, self._nonce])
        try:
            await pubsub.subscribe(self._store.channel)
            self._heard_heartbeat = time.monotonic()
            sent = 0.0
            while True:
                message = await pubsub.get_message(timeout=_HEARTBEAT_EVERY / 4)
                if message is not None:
                    self._handle(message)
                now = time.monotonic()
                if now - self._heard_heartbeat > _DEAD_AFTER:
                    raise RedisError(f"the subscription missed this instance's heartbeats for {_DEAD_AFTER:g} s")
                if now - sent >= _HEARTBEAT_EVERY:
                    sent = now
                    await self._store.clients.commands.publish(self._store.channel, heartbeat)
                    await self._require_master(pubsub)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if client is not self._store.clients.commands:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    async def _require_master(self, pubsub: PubSub) -> None:
        master = await self._store.clients.master_address()
        connection = pubsub.connection
        if master is None or connection is None:
            return
        subscribed = (str(getattr(connection, "host", "")), int(getattr(connection, "port", 0)))
        if subscribed != master:
            raise RedisError(f"subscribed to {subscribed[0]}:{subscribed[1]}, no longer the master "
                             f"({master[0]}:{master[1]} is)")

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._on_subscribed()
        elif kind == "message":
            self._on_message(message.get("data"))

    def _on_subscribed(self) -> None:
        if self._lost_since is not None:
            log.info("store_change_feed_restored", store=self._store.location,
                     down_for=round(time.monotonic() - self._lost_since, 3))
            self._lost_since = None
            # Redis is back: the lookups that refill the caches dropped below must reach it,
            # not fail fast because of a command that failed while it was away (a cached
            # client would get 503 for up to FAIL_FAST_SECONDS after every outage).
            self._store.reached()
            # Changes made while unsubscribed were not heard: forget everything cached.
            self._listeners.everything_changed()
        self._subscribed.set()

    def _on_message(self, data: object) -> None:
        try:
            kind, record_id = json.loads(data)  # type: ignore[arg-type]
            if not isinstance(kind, str) or not isinstance(record_id, str):
                raise TypeError("not two strings")
        except (TypeError, ValueError) as exc:
            # Someone else publishes on our channel: be safe, forget everything.
            log.warning("store_change_message_unreadable", message=repr(data)[:200], error=str(exc))
            self._listeners.everything_changed()
            return
        if kind == _HEARTBEAT:
            if record_id == self._nonce:
                self._heard_heartbeat = time.monotonic()
            return
        self._listeners.changed(kind, record_id)
