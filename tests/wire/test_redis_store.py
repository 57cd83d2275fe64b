"""The Redis store against real Redis servers: one server, a three-master Cluster, and a
Sentinel set-up. The verbs behave as the SQLite store's; every write reaches the other
instances' caches through the change feed; outages answer fast and recover by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from authz.clients.directory import ClientDirectory
from authz.keys.signing import SigningKeys
from authz.storage.base import CorruptRecord, StorageError
from authz.storage.config import StoreConfig
from authz.storage.redis_store import RedisRecordStore
from authz.tokens.revocation import RevocationList
from tests.support.redis_servers import RedisClusterServers, RedisSentinelServers, RedisServers
from tests.support.server import REPO

pytestmark = pytest.mark.wire

CLIENT = {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth",
          "tls_client_auth_san_dns": "c1.example", "scope": "read"}


async def _open(url: str, **options: Any) -> RedisRecordStore:
    store = StoreConfig(url=url, **options).build()
    assert isinstance(store, RedisRecordStore)
    await store.open()
    return store


async def _eventually(condition: Callable[[], Any], within: float, what: str) -> float:
    """Seconds until ``await condition()`` is true; fails after ``within``."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within, f"{what} not seen within {within} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture(params=["single", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest, redis_servers: RedisServers) -> str:
    """The URL of each topology, empty."""
    if request.param == "single":
        return redis_servers.start().url
    fixture = "redis_cluster" if request.param == "cluster" else "redis_sentinel"
    servers: RedisClusterServers | RedisSentinelServers = request.getfixturevalue(fixture)
    return servers.url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisRecordStore]:
    opened = await _open(redis_url)
    yield opened
    await opened.close()


async def test_verbs(store: RedisRecordStore) -> None:
    assert await store.find("k", "a") is None
    assert await store.insert("k", "a", {"v": 1})
    assert not await store.insert("k", "a", {"v": 2})  # first writer wins
    assert await store.find("k", "a") == {"v": 1}
    await store.upsert("k", "a", {"v": 3})
    await store.upsert("k", "b", {"v": 4})
    assert await store.all("k") == [{"v": 3}, {"v": 4}]
    assert await store.entries("k") == [("a", {"v": 3}), ("b", {"v": 4})]
    assert await store.all("other") == []
    assert await store.destroy("k", "a")
    assert not await store.destroy("k", "a")
    assert await store.entries("k") == [("b", {"v": 4})]


async def test_expiry_is_redis_s_own(store: RedisRecordStore) -> None:
    expires_at = time.time() + 0.4
    await store.upsert("k", "soon", {"v": 1}, expires_at=expires_at)
    await store.upsert("k", "past", {"v": 2}, expires_at=time.time() - 1)  # written already gone
    await store.upsert("k", "kept", {"v": 3})
    [(_, record, expiry)] = [d for d in await store.dump("k") if d[0] == "soon"]
    assert record == {"v": 1} and expiry == pytest.approx(expires_at, abs=0.002)
    assert await store.find("k", "past") is None
    await asyncio.sleep(0.5)
    assert await store.find("k", "soon") is None
    assert await store.entries("k") == [("kept", {"v": 3})]
    assert await store.insert("k", "soon", {"v": 4})  # an expired record does not block


async def test_a_corrupt_record_is_reported_beside_the_others(store: RedisRecordStore, redis_url: str) -> None:
    await store.upsert("k", "a", {"v": 1})
    await store.upsert("k", "b", {"v": 2})
    await store.clients.commands.set("authz:{k}:r:a", b"{not json")
    [(first, corrupt), second] = await store.entries("k")
    assert first == "a" and isinstance(corrupt, CorruptRecord) and "not valid JSON" in str(corrupt)
    assert second == ("b", {"v": 2})
    with pytest.raises(CorruptRecord):
        await store.all("k")


async def test_every_kind_is_in_one_slot_and_kinds_spread(redis_cluster: RedisClusterServers) -> None:
    """The hash tag keeps a kind's records and index together (one atomic script per write),
    while different kinds land on different nodes of the Cluster."""
    store = await _open(redis_cluster.url)
    try:
        kinds = [f"kind{n}" for n in range(12)]
        for kind in kinds:
            for n in range(3):
                await store.upsert(kind, f"id{n}", {"n": n})
        for kind in kinds:
            assert [record_id for record_id, _ in await store.entries(kind)] == ["id0", "id1", "id2"]
        client = redis_cluster.client()
        slots = {client.keyslot(f"authz:{{{kind}}}:index") for kind in kinds}
        nodes = {client.nodes_manager.get_node_from_slot(slot).name for slot in slots}
        assert len(nodes) > 1, "every kind landed on one node: the test proves nothing about slots"
    finally:
        await store.close()


async def test_concurrent_writers_lose_nothing(redis_url: str) -> None:
    """Two processes' worth of stores writing at once: every distinct record is there, and of
    many inserts of one id exactly one wins."""
    first, second = await _open(redis_url), await _open(redis_url)
    try:
        writes = [store.upsert("k", f"{name}-{n}", {"by": name, "n": n})
                  for n in range(100) for name, store in (("a", first), ("b", second))]
        inserts = [store.insert("k", "contested", {"by": name, "n": n})
                   for n in range(20) for name, store in (("a", first), ("b", second))]
        results = await asyncio.gather(*writes, *inserts)
        assert sum(1 for won in results[len(writes):] if won) == 1
        entries = dict(await first.entries("k"))
        assert len(entries) == 201
        assert all(entries[f"{name}-{n}"] == {"by": name, "n": n} for n in range(100) for name in "ab")
    finally:
        await first.close()
        await second.close()


async def test_every_change_reaches_the_other_instance_within_a_second(redis_url: str) -> None:
    """Registration, change and removal of a client, and a key rotation, made through one
    store, are seen by another instance's caches (which never poll)."""
    server, cli = await _open(redis_url), await _open(redis_url, timeout=2.0)
    feed = server.change_feed(poll_interval=3600, max_stale=60)
    directory = ClientDirectory(server, feed)
    keys = SigningKeys(server, feed)
    await feed.start()
    try:
        await keys.load()
        assert await directory.get("c1") is None  # cached as unknown
        await ClientDirectory(cli).register(CLIENT)
        seen = [await _eventually(lambda: _has_client(directory), 1.0, "the registration")]
        await ClientDirectory(cli).register({**CLIENT, "scope": "read write"}, replace=True)
        seen.append(await _eventually(lambda: _scopes_are(directory, ("read", "write")), 1.0, "the change"))
        await ClientDirectory(cli).remove("c1")
        seen.append(await _eventually(lambda: _no_client(directory), 1.0, "the removal"))
        rotated = (await SigningKeys(cli).rotate()).kid
        seen.append(await _eventually(lambda: _active_is(keys, rotated), 1.0, "the rotation"))
        assert len(keys.jwks["keys"]) == 2  # the old key stays published
        print(f"changes seen after {', '.join(f'{s * 1000:.1f}' for s in seen)} ms")
    finally:
        await feed.stop()
        await keys.close()
        await server.close()
        await cli.close()


async def _has_client(directory: ClientDirectory) -> bool:
    return await directory.get("c1") is not None


async def _no_client(directory: ClientDirectory) -> bool:
    return await directory.get("c1") is None


async def _scopes_are(directory: ClientDirectory, scopes: tuple[str, ...]) -> bool:
    client = await directory.get("c1")
    return client is not None and client.scopes == scopes


async def _active_is(keys: SigningKeys, kid: str) -> bool:
    return keys.active.kid == kid


async def test_outage_cached_clients_for_max_stale_then_503_then_recovery(redis_servers: RedisServers) -> None:
    redis = redis_servers.start()
    store = await _open(redis.url, timeout=1.0)
    feed = store.change_feed(poll_interval=3600, max_stale=2.0)
    directory = ClientDirectory(store, feed)
    revocations = RevocationList(store)
    await feed.start()
    try:
        await directory.register(CLIENT)
        await revocations.revoke("jti-1", client_id="c1", expires_at=int(time.time()) + 600)
        await _eventually(lambda: _has_client(directory), 1.0, "the client")
        await asyncio.sleep(0.1)  # our own write's message has come back: the cache entry stays
        redis.kill()
        # Within max_stale: the cached client is served, without touching Redis.
        assert await directory.get("c1") is not None
        # Not cached: an immediate StorageError (no hang), whatever the number of attempts.
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(StorageError, match="unreachable"):
                await directory.get("unknown")
        with pytest.raises(StorageError):
            await revocations.is_revoked("jti-1")
        assert time.monotonic() - started < 1.5
        # Past max_stale (counted from when the feed noticed: at most 3 s of silence).
        await _eventually(lambda: _feed_stale(feed), 6.0, "the end of max_stale")
        with pytest.raises(StorageError):
            await directory.get("c1")
        redis.start()
        # Recovery without restart, and nothing acknowledged lost (AOF, fsync always).
        await _eventually(lambda: _feed_current(feed), 5.0, "the feed's return")
        await _eventually(lambda: _has_client_now(directory), 3.0, "the client after recovery")
        assert await revocations.is_revoked("jti-1")
    finally:
        await feed.stop()
        await store.close()


async def _feed_stale(feed: Any) -> bool:
    return not feed.current()


async def _feed_current(feed: Any) -> bool:
    return bool(feed.current())


async def _has_client_now(directory: ClientDirectory) -> bool:
    try:
        return await directory.get("c1") is not None
    except StorageError:
        return False


async def test_a_server_that_stops_answering_costs_the_timeout_not_a_hang(redis_servers: RedisServers) -> None:
    redis = redis_servers.start()
    store = await _open(redis.url, timeout=0.5)
    pid = redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"no answer within 0.5 s \(--store-timeout\)"):
            await store.find("k", "a")
        assert time.monotonic() - started < 1.5  # the timeout, and one retry at most
        with pytest.raises(StorageError, match="not retried"):  # then fail fast
            await store.find("k", "a")
    finally:
        os.kill(pid, signal.SIGCONT)
        await store.close()


async def test_credentials_and_tls(redis_servers: RedisServers, tmp_path: Path) -> None:
    redis = redis_servers.start(username="authz", password="s3cret-pw", tls=True, tls_auth_clients="yes")
    assert redis.tls is not None
    base = redis.url.replace("authz:s3cret-pw@", "authz@")
    password_file = tmp_path / "password"
    password_file.write_text("s3cret-pw\n")
    tls = {"tls_ca": redis.tls.ca_file, "tls_cert": redis.tls.client_cert_file, "tls_key": redis.tls.client_key_file}
    good = await _open(base, password_file=password_file, **tls)
    await good.upsert("k", "a", {"v": 1})
    await good.close()
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    with pytest.raises(StorageError, match="authentication refused") as refused:
        await _open(base, password_file=wrong, **tls)
    assert "nope" not in str(refused.value) and "s3cret" not in str(refused.value)
    with pytest.raises(StorageError, match=r"cannot connect to the store at rediss://authz@127\.0\.0\.1"):
        await _open(base, password_file=password_file)  # neither our CA nor a client certificate


def test_cli_copies_a_single_host_install_into_redis(redis_servers: RedisServers, tmp_path: Path) -> None:
    """``authz store copy``: clients, keys and revocations, each revocation with its expiry;
    running it again copies nothing twice."""
    redis = redis_servers.start()
    data_dir = tmp_path / "data"
    _cli("clients", "add", "c1", "--auth-method", "tls_client_auth", "--san-dns", "c1.example",
         "--data-dir", str(data_dir))
    _cli("keys", "rotate", "--data-dir", str(data_dir))
    expires_at = time.time() + 300

    async def revoke() -> None:
        sqlite = StoreConfig(data_dir=data_dir).build()
        await sqlite.open()
        await RevocationList(sqlite).revoke("jti-1", client_id="c1", expires_at=int(expires_at))
        await sqlite.close()

    asyncio.run(revoke())
    first = _cli("store", "copy", "--from", str(data_dir), "--store", redis.url)
    assert "client: 1 copied" in first.stdout and "revoked_access_token: 1 copied" in first.stdout
    again = _cli("store", "copy", "--from", str(data_dir), "--store", redis.url)
    assert "client: 0 copied, 1 already there" in again.stdout
    assert _cli("clients", "list", "--store", redis.url).stdout.startswith("c1\t")
    assert _cli("keys", "list", "--store", redis.url).stdout == _cli("keys", "list", "--data-dir",
                                                                     str(data_dir)).stdout
    ttl = redis.client().pttl("authz:{revoked_access_token}:r:jti-1")
    assert (expires_at + 60 - time.time()) * 1000 - 2000 < ttl <= (expires_at + 60 - time.time()) * 1000 + 100
    # A changed target is a conflict: reported, not overwritten, exit 1.
    redis.client().set("authz:{client}:r:c1", b'{"client_id": "c1"}')
    conflict = _cli("store", "copy", "--from", str(data_dir), "--store", redis.url, check=False)
    assert conflict.returncode == 1 and "client/c1 (--replace overwrites)" in conflict.stderr


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    result = subprocess.run([sys.executable, "-m", "authz", *args], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


async def test_sentinel_failover_loses_no_acknowledged_write(redis_sentinel: RedisSentinelServers) -> None:
    """Writes go on through a failover; with --store-wait-replicas 1 every write that was
    acknowledged is on the new master (a write the old master took alone, in the seconds it
    still believes it is the master, is refused, not lost); the change feed follows."""
    store = await _open(redis_sentinel.url, timeout=1.0, wait_replicas=1)
    other = await _open(redis_sentinel.url, timeout=1.0)
    feed = store.change_feed(poll_interval=3600, max_stale=60)
    directory = ClientDirectory(store, feed)
    await feed.start()
    acknowledged: list[str] = []
    refused = 0
    try:
        await directory.register(CLIENT)
        before = redis_sentinel.master_address()
        writing = asyncio.create_task(_write_for(store, 5.0, acknowledged))
        await asyncio.sleep(0.3)
        after = await asyncio.to_thread(redis_sentinel.failover, settled=True)
        refused = await writing
        assert after != before
        master = redis_sentinel.client()  # through the Sentinels: the new master
        assert master.info("replication")["role"] == "master"
        lost = [record_id for record_id in acknowledged if master.get(f"authz:{{k}}:r:{record_id}") is None]
        assert not lost, f"acknowledged writes lost in the failover: {lost}"
        assert len(acknowledged) > 20 and refused >= 0
        print(f"{len(acknowledged)} writes acknowledged, {refused} refused during the failover")
        await _eventually(lambda: _feed_current(feed), 10.0, "the feed after the failover")
        await ClientDirectory(other).remove("c1")
        await _eventually(lambda: _no_client(directory), 1.0, "a removal after the failover")
    finally:
        await feed.stop()
        await store.close()
        await other.close()


async def _write_for(store: RedisRecordStore, seconds: float, acknowledged: list[str]) -> int:
    """Write records one after the other for ``seconds``; the ids of those acknowledged go to
    ``acknowledged``; returns how many were refused."""
    refused = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            await store.upsert("k", f"w{n}", {"n": n})
            acknowledged.append(f"w{n}")
        except StorageError:
            refused += 1
            await asyncio.sleep(0.05)
    return refused


async def test_a_write_no_replica_acknowledges_is_refused_and_the_store_keeps_answering(
        redis_servers: RedisServers) -> None:
    """--store-wait-replicas 1 on a server without replicas: WAIT answers "0 replicas" within
    the store's timeout, and the write is refused saying so. That is not an unreachable store:
    the next command is tried at once, not refused for FAIL_FAST_SECONDS (WAIT used to be given
    the whole --store-timeout, so the socket timed out just before Redis answered, and every
    read of the instance failed for a second after each write made during a failover)."""
    redis = redis_servers.start()
    store = await _open(redis.url, timeout=0.6, wait_replicas=1)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"reached the master but 0 of the 1 replicas required"):
            await store.upsert("k", "a", {"v": 1})
        assert time.monotonic() - started < 0.6
        assert await store.find("k", "a") == {"v": 1}  # on the master: only unacknowledged
    finally:
        await store.close()




async def test_a_write_refused_by_the_former_master_does_not_stop_the_store(
        redis_sentinel: RedisSentinelServers) -> None:
    """In a failover, a command in flight on a connection to the master being demoted fails
    (Sentinel drops its clients); redis-py sends it again on the same connection, reconnected
    to the address it had (redis-py 8.1 asks Sentinel only when the pool hands a connection
    out): a write is refused there, "The previous master is now a slave", a ConnectionError.
    That write is refused, not acknowledged; but the server answered, and the store must not
    take it for unreachable and refuse every command for FAIL_FAST_SECONDS.

    Set up as that retry leaves it: a pooled connection reconnected, without Sentinel, to the
    former master after the failover."""
    store = await _open(redis_sentinel.url, timeout=1.0)
    assert isinstance(store.clients.commands, AsyncRedis)  # the master Sentinel names
    pool = store.clients.commands.connection_pool
    try:
        await store.upsert("k", "before", {"v": 0})
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        await asyncio.to_thread(redis_sentinel.failover, settled=True)
        await connection.disconnect()
        await connection.connect_check_health()  # what send_packed_command does: no Sentinel
        assert (connection.host, connection.port) != redis_sentinel.master_address()
        await pool.release(connection)
        with pytest.raises(StorageError, match="previous master"):
            await store.upsert("k", "refused", {"v": 1})
        assert await store.find("k", "before") == {"v": 0}  # at once, from the new master
        await store.upsert("k", "after", {"v": 2})
    finally:
        await store.close()


async def test_the_feed_subscribing_again_ends_fail_fast(redis_servers: RedisServers,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """When the change feed subscribes again after an outage it drops every cache; the lookups
    that refill them must reach Redis, which just answered the feed, rather than fail fast
    because of a command that failed while it was away: a cached client would get 503 for up
    to FAIL_FAST_SECONDS after every outage. (Fail-fast made longer than the test here, so
    that only the feed's return can end it.)"""
    monkeypatch.setattr("authz.storage.redis_store.FAIL_FAST_SECONDS", 60.0)
    redis = redis_servers.start()
    store = await _open(redis.url, timeout=1.0)
    feed = store.change_feed(poll_interval=3600, max_stale=60)
    dropped: list[str | None] = []
    feed.on_change("k", dropped.append)
    await feed.start()
    try:
        redis.kill()
        with pytest.raises(StorageError, match="unreachable"):
            await store.find("k", "a")
        with pytest.raises(StorageError, match="not retried"):
            await store.find("k", "a")
        redis.start()
        await _eventually(lambda: _contains(dropped, None), 5.0, "the feed subscribing again")
        assert await store.find("k", "a") is None
    finally:
        await feed.stop()
        await store.close()


async def _contains(items: list[Any], item: Any) -> bool:
    return item in items
