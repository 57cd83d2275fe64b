import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authz.clients.directory import ClientDirectory, UnusableRegistration
from authz.context import ServerContext
from authz.keys.signing import SigningKeys
from authz.settings import Settings
from authz.storage.base import CorruptRecord, StorageError
from authz.storage.sqlite import SQLiteRecordStore
from authz.tokens.revocation import RevocationList

CLIENT = {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth",
          "tls_client_auth_san_dns": "c1.example", "scope": "read"}


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteRecordStore(tmp_path)
    await s.open()
    yield s
    await s.close()


async def test_verbs(store: SQLiteRecordStore) -> None:
    assert await store.find("k", "a") is None
    assert await store.insert("k", "a", {"v": 1})
    assert not await store.insert("k", "a", {"v": 2})  # first writer wins
    assert await store.find("k", "a") == {"v": 1}
    await store.upsert("k", "a", {"v": 3})
    assert await store.all("k") == [{"v": 3}]
    assert await store.destroy("k", "a")
    assert not await store.destroy("k", "a")


async def test_entries_keep_the_readable_records_beside_a_corrupt_one(store: SQLiteRecordStore) -> None:
    await store.upsert("k", "a", {"v": 1})
    await store.upsert("k", "b", {"v": 2})
    await store.db.execute("UPDATE records SET value = '{not json' WHERE kind = 'k' AND id = 'a'")
    await store.db.commit()
    [(first, corrupt), second] = await store.entries("k")
    assert first == "a" and isinstance(corrupt, CorruptRecord) and corrupt.record_id == "a"
    assert second == ("b", {"v": 2})
    with pytest.raises(CorruptRecord):
        await store.all("k")


async def test_expiry(store: SQLiteRecordStore) -> None:
    await store.upsert("k", "gone", {"v": 1}, expires_at=time.time() - 1)
    assert await store.find("k", "gone") is None
    assert await store.all("k") == []
    assert await store.insert("k", "gone", {"v": 2})  # an expired record does not block


async def test_persists_across_reopen(tmp_path: Path) -> None:
    first = SQLiteRecordStore(tmp_path)
    await first.open()
    await first.upsert("k", "a", {"v": 1})
    await first.close()
    second = SQLiteRecordStore(tmp_path)
    await second.open()
    assert await second.find("k", "a") == {"v": 1}
    assert (tmp_path / "authz.sqlite3").stat().st_mode & 0o077 == 0
    await second.close()


async def test_cache_sees_writes_from_another_process(tmp_path: Path) -> None:
    server_store, cli_store = SQLiteRecordStore(tmp_path), SQLiteRecordStore(tmp_path)
    await server_store.open()
    await cli_store.open()
    watcher = server_store.change_feed(poll_interval=0.05, max_stale=60)
    directory = ClientDirectory(server_store, watcher)
    await watcher.start()
    try:
        assert await directory.get("c1") is None  # cached as unknown
        await ClientDirectory(cli_store).register(CLIENT)  # "another process"
        deadline = time.monotonic() + 5
        while await directory.get("c1") is None:
            assert time.monotonic() < deadline, "the cache never saw the new client"
            await asyncio.sleep(0.02)
        await ClientDirectory(cli_store).remove("c1")
        while await directory.get("c1") is not None:
            assert time.monotonic() < deadline, "the cache never saw the removal"
            await asyncio.sleep(0.02)
    finally:
        await watcher.stop()
        await server_store.close()
        await cli_store.close()


async def test_unusable_stored_registration_is_reported(store: SQLiteRecordStore) -> None:
    await store.upsert("client", "broken", {"client_id": "broken", "token_endpoint_auth_method": "tls_client_auth"})
    with pytest.raises(UnusableRegistration, match="exactly one"):
        await ClientDirectory(store).get("broken")


async def test_register_refuses_duplicates(store: SQLiteRecordStore) -> None:
    directory = ClientDirectory(store)
    await directory.register(CLIENT)
    with pytest.raises(KeyError):
        await directory.register(CLIENT)
    await directory.register({**CLIENT, "scope": "read write"}, replace=True)
    client = await directory.get("c1")
    assert client is not None and client.scopes == ("read", "write")


async def test_concurrent_first_start_agrees_on_one_signing_key(tmp_path: Path) -> None:
    stores = [SQLiteRecordStore(tmp_path) for _ in range(4)]
    for s in stores:
        await s.open()
    keys = [SigningKeys(s) for s in stores]
    await asyncio.gather(*(k.load() for k in keys))
    assert len({k.active.kid for k in keys}) == 1
    assert len(keys[0].jwks["keys"]) == 1
    for s in stores:
        await s.close()


async def test_rotation_keeps_the_old_key_published(store: SQLiteRecordStore) -> None:
    keys = SigningKeys(store)
    await keys.load()
    old = keys.active.kid
    new = (await keys.rotate()).kid
    assert new != old
    assert [k["kid"] for k in keys.jwks["keys"]] == [new, old]
    assert all("d" not in k for k in keys.jwks["keys"])  # never the private part
    with pytest.raises(ValueError):
        await keys.retire(new)
    assert await keys.retire(old)
    assert [k["kid"] for k in keys.jwks["keys"]] == [new]


@pytest.mark.parametrize(("stored", "problem"), [("{not json", "is not valid JSON"),
                                                 ("[1, 2]", "is not a JSON object")])
async def test_corrupt_stored_registration_is_unusable_not_a_store_failure(
    store: SQLiteRecordStore, stored: str, problem: str
) -> None:
    await store.upsert("client", "corrupt", {"client_id": "corrupt"})
    await store.db.execute("UPDATE records SET value = ? WHERE kind = 'client' AND id = 'corrupt'", (stored,))
    await store.db.commit()
    directory = ClientDirectory(store)
    with pytest.raises(UnusableRegistration) as raised:
        await directory.get("corrupt")
    assert raised.value.reason.startswith(f"record client/corrupt {problem}")
    with pytest.raises(UnusableRegistration):  # cached like any other unusable registration
        await directory.get("corrupt")


async def test_corrupt_revocation_record_still_revokes(store: SQLiteRecordStore) -> None:
    revocations = RevocationList(store)
    await revocations.revoke("jti-1", client_id="c1", expires_at=int(time.time()) + 300)
    await store.db.execute("UPDATE records SET value = '{not json' WHERE id = 'jti-1'")
    await store.db.commit()
    assert await revocations.is_revoked("jti-1")
    assert not await revocations.is_revoked("jti-2")


async def test_a_write_locked_out_past_the_busy_timeout_names_the_cause_and_the_next_one_succeeds(
        tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path, busy_timeout=0.2)
    await store.open()
    other_process = sqlite3.connect(store.path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")  # holds the write lock
        other_process.execute("INSERT INTO records VALUES ('k', 'theirs', '{}', NULL)")
        with pytest.raises(StorageError) as raised:
            await store.upsert("k", "mine", {"v": 1})
        assert str(raised.value) == (f"cannot write the store at {store.path}: locked by another process for "
                                     "longer than the 0.2 s busy timeout (SQLite: database is locked)")
        other_process.execute("COMMIT")
        await store.upsert("k", "mine", {"v": 1})
        assert [await store.find("k", key) for key in ("theirs", "mine")] == [{}, {"v": 1}]
    finally:
        other_process.close()
        await store.close()


def test_a_store_left_open_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    # Defence in depth behind closing the store on every path: aiosqlite's thread is a daemon.
    script = ("import asyncio, sys\n"
              "from authz.storage.sqlite import SQLiteRecordStore\n"
              "store = SQLiteRecordStore(sys.argv[1])\n"  # referenced until the interpreter ends
              "asyncio.run(store.open())\n")
    repository = Path(__file__).resolve().parents[2]
    try:
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=repository, check=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit within 10 s of its last statement")


async def test_a_failed_server_start_up_closes_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An open store would outlive the failed start-up, and its thread the worker process.
    context = ServerContext.build(Settings(data_dir=tmp_path, log_level="error"))

    async def failing_load() -> None:
        raise StorageError("cannot write the store at /data/authz.sqlite3: disk full")

    monkeypatch.setattr(context.keys, "load", failing_load)
    with pytest.raises(StorageError, match="disk full"):
        await context.start()
    store = context.store
    assert isinstance(store, SQLiteRecordStore)
    with pytest.raises(StorageError, match="the store is not open"):
        store.db


async def test_concurrent_misses_share_one_store_read(store: SQLiteRecordStore) -> None:
    await ClientDirectory(store).register(CLIENT)
    directory = ClientDirectory(store)
    reads = 0
    find = store.find

    async def counting_find(kind: str, record_id: str) -> object:
        nonlocal reads
        reads += 1
        return await find(kind, record_id)

    store.find = counting_find  # type: ignore[method-assign,assignment]
    clients = await asyncio.gather(*(directory.get("c1") for _ in range(50)))
    assert all(c is not None and c.client_id == "c1" for c in clients)
    assert reads == 1
