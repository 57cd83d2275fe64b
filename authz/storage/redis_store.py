"""The shared backend: Redis (one server, Sentinel-managed, or a Cluster), for several instances.

Layout. A record is one string key holding its JSON, ``PREFIX:{KIND}:r:ID``, with a Redis
expiry when the record has one. Beside it, ``PREFIX:{KIND}:index`` is a sorted set of the
kind's ids scored by expiry (``inf`` for none), so that listing a kind needs no SCAN across a
Cluster's nodes. The braces are a Cluster hash tag: every key of one kind is in one slot, so
the write of a record and of its index entry is one atomic script on one node, and a listing
is one range read and one MGET; different kinds spread over the cluster.

Changes. Each write script also PUBLISHes ``[kind, id]`` on ``PREFIX:changes`` in the same
atomic step: a write that succeeded has been announced (a Cluster relays PUBLISH to every node).
``authz.storage.redis_changes`` turns those messages into cache invalidations.

Failures. Every redis-py error becomes a ``StorageError`` naming the store (password removed)
and the cause, which the endpoints answer with 503 ``temporarily_unavailable``. After a
connection failure the store answers at once for ``FAIL_FAST_SECONDS`` (or until the change
feed reaches Redis again) instead of letting every request wait for its own connect timeout
against a server known to be down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from authz.storage.base import CorruptRecord, Record, StorageError
from authz.storage.changes import ChangeFeed
from authz.storage.location import RedisLocation
from authz.storage.redis_connection import MAX_COMMANDS_IN_FLIGHT, RedisClients, RedisTLS, connect

__all__ = ["FAIL_FAST_SECONDS", "RedisRecordStore"]

log = structlog.get_logger("authz.storage")

T = TypeVar("T")

# After a connection failure, how long the store fails at once before trying Redis again.
FAIL_FAST_SECONDS = 1.0
# Ids per MGET when listing a kind: bounds one command's size however many records there are.
_LIST_BATCH = 500

# KEYS: record, index. ARGV: json, expires_at_ms ('' for none), id, channel, message,
# only_if_absent ('1'/'0'), now_ms. Returns 1 if written, 0 if only_if_absent found a record.
_WRITE = """
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] ~= '' and tonumber(ARGV[2]) <= tonumber(ARGV[7]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
elseif ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

# KEYS: record, index. ARGV: id, channel, message. Returns the number of records deleted.
_DESTROY = """
local deleted = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if deleted > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return deleted
"""


class RedisRecordStore:
    def __init__(self, location: RedisLocation, *, tls: RedisTLS | None = None, prefix: str = "authz",
                 timeout: float = 2.0, wait_replicas: int = 0) -> None:
        self._location = location
        self._tls = tls or RedisTLS()
        self._prefix = prefix
        self._timeout = timeout
        # Replicas that must hold a write before it is acknowledged (Redis WAIT): with a
        # Sentinel failover, a write only the old master had is lost.
        self._wait_replicas = wait_replicas
        self._clients: RedisClients | None = None
        self._unreachable_until = 0.0
        self._last_failure = ""
        # redis-py refuses a command when its pool is exhausted: queue them here instead.
        self._in_flight = asyncio.Semaphore(MAX_COMMANDS_IN_FLIGHT)

    @property
    def location(self) -> str:
        return self._location.redacted

    @property
    def channel(self) -> str:
        return f"{self._prefix}:changes"

    @property
    def clients(self) -> RedisClients:
        if self._clients is None:
            raise StorageError("the store is not open")
        return self._clients

    def change_feed(self, *, poll_interval: float, max_stale: float) -> ChangeFeed:
        from authz.storage.redis_changes import RedisChangeFeed

        return RedisChangeFeed(self, max_stale=max_stale)

    async def open(self) -> None:
        self._clients = connect(self._location, self._tls, self._timeout)
        # Fail at start-up, with the reason, rather than at the first request.
        await self._call("connect to", lambda redis: redis.ping())

    async def close(self) -> None:
        if self._clients is not None:
            clients, self._clients = self._clients, None
            try:
                await clients.close()
            except RedisError as exc:
                raise self._failure("close", exc) from exc

    def _record_key(self, kind: str, record_id: str) -> str:
        return f"{self._prefix}:{{{kind}}}:r:{record_id}"

    def _index_key(self, kind: str) -> str:
        return f"{self._prefix}:{{{kind}}}:index"

    async def find(self, kind: str, record_id: str) -> Record | None:
        raw = await self._call("read", lambda redis: redis.get(self._record_key(kind, record_id)))
        return None if raw is None else _decode(raw, kind, record_id)

    async def upsert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> None:
        await self._write(kind, record_id, value, expires_at, only_if_absent=False)

    async def insert(self, kind: str, record_id: str, value: Record, *, expires_at: float | None = None) -> bool:
        return await self._write(kind, record_id, value, expires_at, only_if_absent=True)

    async def destroy(self, kind: str, record_id: str) -> bool:
        message = json.dumps([kind, record_id])
        keys = [self._record_key(kind, record_id), self._index_key(kind)]
        deleted = await self._call("write", lambda redis: redis.eval(_DESTROY, 2, *keys, record_id, self.channel,
                                                                     message))
        if deleted:
            await self._await_replicas()
        return bool(deleted)

    async def all(self, kind: str) -> list[Record]:
        records: list[Record] = []
        for _, record in await self.entries(kind):
            if isinstance(record, CorruptRecord):
                raise record
            records.append(record)
        return records

    async def entries(self, kind: str) -> list[tuple[str, Record | CorruptRecord]]:
        return [(record_id, record) for record_id, record, _ in await self.dump(kind)]

    async def dump(self, kind: str) -> list[tuple[str, Record | CorruptRecord, float | None]]:
        now_ms = int(time.time() * 1000)
        scored = await self._call("read", lambda redis: redis.zrangebyscore(self._index_key(kind), now_ms, "+inf",
                                                                           withscores=True))
        expiry = {raw.decode(): (None if score == float("inf") else score / 1000) for raw, score in scored}
        ids = sorted(expiry)
        dumped: list[tuple[str, Record | CorruptRecord, float | None]] = []
        for start in range(0, len(ids), _LIST_BATCH):
            batch = ids[start:start + _LIST_BATCH]
            keys = [self._record_key(kind, record_id) for record_id in batch]
            values = await self._call("read", lambda redis, keys=keys: redis.mget(keys))  # type: ignore[misc]
            for record_id, raw in zip(batch, values, strict=True):
                if raw is None:  # expired or removed between the two reads
                    continue
                try:
                    record: Record | CorruptRecord = _decode(raw, kind, record_id)
                except CorruptRecord as exc:
                    record = exc
                dumped.append((record_id, record, expiry[record_id]))
        return dumped

    async def _write(self, kind: str, record_id: str, value: Record, expires_at: float | None, *,
                     only_if_absent: bool) -> bool:
        expires_ms = "" if expires_at is None else str(int(expires_at * 1000))
        message = json.dumps([kind, record_id])
        keys = [self._record_key(kind, record_id), self._index_key(kind)]
        args = [json.dumps(value), expires_ms, record_id, self.channel, message, "1" if only_if_absent else "0",
                str(int(time.time() * 1000))]
        written = await self._call("write", lambda redis: redis.eval(_WRITE, 2, *keys, *args))
        if written:
            await self._await_replicas()
        return bool(written)

    async def _await_replicas(self) -> None:
        if self._wait_replicas <= 0:
            return
        # Half the timeout: Redis must answer "not enough replicas" before the socket times
        # out, or a refused write would look like an unreachable store (and fail fast).
        timeout_ms = max(1, int(self._timeout * 500))
        reached = await self._call("write", lambda redis: redis.execute_command("WAIT", self._wait_replicas,
                                                                               timeout_ms))
        if int(reached) < self._wait_replicas:
            raise StorageError(f"cannot write to the store at {self.location}: the write reached the master but "
                               f"{reached} of the {self._wait_replicas} replicas required (--store-wait-replicas) "
                               f"within {timeout_ms / 1000:g} s; it is not acknowledged")

    async def _call(self, action: str, command: Callable[[Any], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now < self._unreachable_until:
            raise StorageError(f"cannot {action} the store at {self.location}: {self._last_failure} "
                               f"(not retried for {self._unreachable_until - now:.1f} s more)")
        try:
            async with asyncio.timeout(self._timeout):
                await self._in_flight.acquire()
        except TimeoutError:
            raise StorageError(f"cannot {action} the store at {self.location}: {MAX_COMMANDS_IN_FLIGHT} commands "
                               f"in flight for over {self._timeout:g} s (--store-timeout)") from None
        try:
            return await command(self.clients.commands)
        except RedisError as exc:
            failure = self._failure(action, exc)
            if isinstance(exc, RedisConnectionError | RedisTimeoutError) and not isinstance(exc, AuthenticationError) \
                    and not _demoted(exc):
                self._unreachable_until = time.monotonic() + FAIL_FAST_SECONDS
                self._last_failure = _cause(exc, self._timeout)
            raise failure from exc
        except OSError as exc:  # a TLS file that cannot be read, raised at connect
            raise StorageError(f"cannot {action} the store at {self.location}: {exc}") from exc
        finally:
            self._in_flight.release()

    def reached(self) -> None:
        """Redis answered another connection (the change feed subscribed again): the next
        command tries it instead of failing fast."""
        self._unreachable_until = 0.0

    def _failure(self, action: str, exc: RedisError) -> StorageError:
        return StorageError(f"cannot {action} the store at {self.location}: {_cause(exc, self._timeout)}")


def _demoted(exc: RedisError) -> bool:
    """Whether ``exc`` is redis-py's Sentinel connection refusing a master that answered as a
    read-only replica ("The previous master is now a slave", a ConnectionError raised while
    handling the ReadOnlyError): in a failover, a command retried on a connection to the former
    master. The server answered; the next command, on a connection handed out by the pool,
    asks Sentinel for the master: nothing to fail fast for."""
    return isinstance(exc, RedisConnectionError) and isinstance(exc.__context__, ReadOnlyError)


def _cause(exc: RedisError, timeout: float) -> str:
    said = str(exc) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return f"authentication refused (check the user and password): {said}"
    if isinstance(exc, NoPermissionError):
        return f"the Redis user lacks a permission (ACL): {said}"
    if isinstance(exc, RedisTimeoutError):
        return f"no answer within {timeout:g} s (--store-timeout): {said}"
    if _demoted(exc):
        return f"the master was demoted to a replica (a failover in progress?): {said}"
    if isinstance(exc, RedisConnectionError):
        return f"unreachable: {said}"
    if isinstance(exc, ResponseError) and said.startswith("READONLY"):
        return f"the server is a read-only replica (a failover in progress?): {said}"
    return said


def _decode(raw: bytes, kind: str, record_id: str) -> Record:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRecord(kind, record_id, f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CorruptRecord(kind, record_id, "is not a JSON object")
    return value
