"""``--store``: every URL form parses to what redis-py needs, every mistake is named, and no
message ever carries the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.settings import Settings
from authz.storage.config import StoreConfig
from authz.storage.location import StoreLocationError, parse_redis_url
from authz.storage.redis_store import RedisRecordStore
from authz.storage.sqlite import SQLiteRecordStore


@pytest.mark.parametrize(("url", "topology", "addresses", "tls", "db", "service"), [
    ("redis://localhost", "single", (("localhost", 6379),), False, 0, None),
    ("redis://10.0.0.5:6380/3", "single", (("10.0.0.5", 6380),), False, 3, None),
    ("rediss://[::1]:6390/0", "single", (("::1", 6390),), True, 0, None),
    ("redis+cluster://a:7000,b:7001, c", "cluster", (("a", 7000), ("b", 7001), ("c", 6379)), False, 0, None),
    ("rediss+sentinel://s1,s2:26380/my%20master/2", "sentinel", (("s1", 26379), ("s2", 26380)), True, 2,
     "my master"),
])
def test_forms(url: str, topology: str, addresses: tuple[tuple[str, int], ...], tls: bool, db: int,
               service: str | None) -> None:
    location = parse_redis_url(url)
    assert (location.topology, location.addresses, location.tls, location.db, location.service) == (
        topology, addresses, tls, db, service)


def test_credentials_are_parsed_and_never_shown() -> None:
    location = parse_redis_url("redis://authz:p%40ss%3Aword@h:1/0")
    assert (location.username, location.password) == ("authz", "p@ss:word")
    assert location.redacted == "redis://authz@h:1/0"
    assert "p@ss" not in repr(location)
    assert parse_redis_url("redis://:only-password@h").username is None


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert parse_redis_url("redis://u@h", password_file=secret).password == "from-file"
    with pytest.raises(StoreLocationError, match="give only one"):
        parse_redis_url("redis://u:inline@h", password_file=secret)
    with pytest.raises(StoreLocationError, match="cannot read"):
        parse_redis_url("redis://h", password_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(StoreLocationError, match="is empty"):
        parse_redis_url("redis://h", password_file=tmp_path / "empty")


@pytest.mark.parametrize(("url", "problem"), [
    ("postgres://h/0", "must be empty"),
    ("h:6379", "must be empty"),
    ("redis://a:1,b:2/0", "names one server"),
    ("redis://h:99999/0", "is not a port"),
    ("redis://h:port/0", "is not a port"),
    ("redis://:1/0", "missing host"),
    ("redis://h/zero", "is not a number"),
    ("redis://h/0/1", "unexpected path"),
    ("redis://h/0?ssl_ca_certs=/x", "no query"),
    ("redis+sentinel://s1,s2", "needs the service name"),
    ("redis+cluster://a:1,b:2/1", "one database"),
    ("redis://[::1/0", r"is not a valid URL \(Invalid IPv6 URL\)"),
])
def test_mistakes_are_named(url: str, problem: str) -> None:
    with pytest.raises(StoreLocationError, match=problem):
        parse_redis_url(url)


def test_config_checks_the_companion_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with pytest.raises(StoreLocationError, match="need a rediss:// URL"):
        StoreConfig(url="redis://h", tls_ca=ca).check()
    with pytest.raises(StoreLocationError, match="go together"):
        StoreConfig(url="rediss://h", tls_cert=ca).check()
    with pytest.raises(StoreLocationError, match="need a Redis --store URL"):
        StoreConfig(tls_ca=ca).check()
    with pytest.raises(StoreLocationError, match="Cluster replicates per shard"):
        StoreConfig(url="redis+cluster://a,b", wait_replicas=1).check()


def test_backend_and_its_defaults(tmp_path: Path) -> None:
    assert isinstance(StoreConfig(data_dir=tmp_path).build(), SQLiteRecordStore)
    single = StoreConfig(url="redis://h").build()
    sentinel = StoreConfig(url="redis+sentinel://s/m").build()
    explicit = StoreConfig(url="redis+sentinel://s/m", wait_replicas=0).build()
    assert isinstance(single, RedisRecordStore) and isinstance(sentinel, RedisRecordStore)
    assert isinstance(explicit, RedisRecordStore)
    # With Sentinel a write waits for a replica unless told otherwise: a failover loses what
    # only the old master held (tests/wire/test_redis_store.py measures it).
    assert (single._wait_replicas, sentinel._wait_replicas, explicit._wait_replicas) == (0, 1, 0)
    assert single.location == "redis://h:6379/0"


def test_settings_name_the_option() -> None:
    with pytest.raises(ValueError, match="--store must be empty"):
        Settings(store="mysql://x")
    assert Settings(store="redis://h:1/2").store_config().url == "redis://h:1/2"
