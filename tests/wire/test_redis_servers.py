"""The Redis test helpers (tests/support/redis_servers.py) against real servers from Debian's
packages: what the tests of the Redis store will rely on, proven once here.

A single server loses no acknowledged write to a crash (AOF, appendfsync always); TLS needs
the test CA (and, when required, the client certificate); the cluster is three masters
covering every slot; the sentinels fail over to the replica, and clients asking the
sentinels then write to the new master.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_servers import (
    CLUSTER_SLOTS,
    RedisClusterServers,
    RedisSentinelServers,
    RedisServer,
    RedisServers,
)

pytestmark = pytest.mark.wire

# redis-py retries a refused connection three times with backoff (3.5 s) by default.
NO_RETRY = Retry(NoBackoff(), 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _dbsize(node: RedisServer) -> int:
    with node.client() as client:
        size = client.dbsize()
    assert isinstance(size, int)
    return size


def test_a_password_server_keeps_acknowledged_writes_through_a_crash(redis_servers: RedisServers) -> None:
    server = redis_servers.start(password="s3cret")
    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        for value in range(100):
            client.set(f"key:{value}", value)
        client.incrby("counter", 42)
    with pytest.raises(redis.exceptions.AuthenticationError), server.client(password=None) as anonymous:
        anonymous.get("counter")

    port, pid = server.port, server.pid
    server.kill()  # SIGKILL: nothing flushed on the way out
    assert pid is not None and not _alive(pid)
    server.start()
    assert server.port == port and server.pid != pid
    with server.client() as client:
        assert client.get("counter") == "42"
        assert client.dbsize() == 101
    assert list((server.directory / "appendonlydir").iterdir())  # Redis 7's multi-part AOF


def test_an_acl_user_and_no_default_user(redis_servers: RedisServers) -> None:
    server = redis_servers.start(username="authz", password="pw")
    assert server.url == f"redis://authz:pw@127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        assert client.acl_whoami() == "authz"
    with pytest.raises(redis.exceptions.AuthenticationError), server.client(username=None, password=None) as anonymous:
        anonymous.ping()


def test_tls_needs_the_test_ca(redis_servers: RedisServers) -> None:
    server = redis_servers.start(tls=True)
    assert server.tls is not None
    assert server.url == f"rediss://127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url, ssl_ca_certs=str(server.tls.ca_file)) as client:
        assert client.ping()
    # Without the test CA (the system's CAs only), then in clear text.
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"), \
            redis.Redis.from_url(server.url, retry=NO_RETRY) as untrusting:
        untrusting.ping()
    with pytest.raises(redis.exceptions.ConnectionError), server.client(ssl=False, socket_timeout=2) as clear:
        clear.ping()


def test_tls_client_certificates_when_required(redis_servers: RedisServers) -> None:
    server = redis_servers.start(tls=True, tls_auth_clients="yes")
    with server.client() as client:  # client() presents the test client certificate
        assert client.ping()
    with pytest.raises(redis.exceptions.ConnectionError), \
            server.client(ssl_certfile=None, ssl_keyfile=None, socket_timeout=2) as anonymous:
        anonymous.ping()


def test_a_server_that_fails_to_start_says_why(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "broken", extra_config=["appendfsync sometimes"])
    with pytest.raises(RuntimeError, match=r"(?s)exited with 1.*appendfsync"):
        server.start()
    assert not server.running


def test_a_first_start_moves_off_a_port_taken_meanwhile(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "moving")
    taken = server.port
    with socket.create_server(("127.0.0.1", taken)), server:  # another process took the port
        assert server.port != taken
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client() as client:
            assert client.ping()
    assert not server.running


def test_the_cluster_has_three_masters_sharing_every_slot(redis_cluster: RedisClusterServers) -> None:
    ports = redis_cluster.ports
    assert redis_cluster.url == f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]},127.0.0.1:{ports[2]}"
    for node in redis_cluster.nodes:
        info = redis_cluster.cluster_info(node)
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_ok"] == str(CLUSTER_SLOTS)
        assert info["cluster_size"] == "3"  # masters serving slots
        # The bus on a port of its own, not the data port + 10000.
        with node.client() as client:
            assert f"127.0.0.1:{node.port}@{node.cluster_port}" in client.execute_command("CLUSTER", "NODES")

    with redis_cluster.client() as cluster:
        assert sorted(node.port for node in cluster.get_primaries()) == sorted(ports)
        assert cluster.get_replicas() == []
        keys = [f"client:{index}" for index in range(30)]
        for key in keys:
            cluster.set(key, key)
        owners = {cluster.get_node_from_key(key).port for key in keys}
        assert owners == set(ports)  # 30 keys cannot all hash to one third of the slots
        assert cluster.mget_nonatomic(keys) == keys
    # Each key on the node owning its slot, and nowhere else.
    assert sum(_dbsize(node) for node in redis_cluster.nodes) == len(keys)


def test_a_cluster_node_crash_loses_nothing(redis_cluster: RedisClusterServers) -> None:
    with redis_cluster.client() as cluster:
        cluster.set("survivor", "yes")
        node = next(node for node in redis_cluster.nodes if node.port == cluster.get_node_from_key("survivor").port)
    node.kill()
    redis_cluster.start()  # the killed node only, on its port; then until cluster_state:ok
    assert node.running
    with redis_cluster.client() as cluster:
        assert cluster.get("survivor") == "yes"


def test_the_fixture_hands_out_an_empty_cluster(redis_cluster: RedisClusterServers) -> None:
    # The tests above wrote keys: redis_cluster flushed every master before this one.
    assert [_dbsize(node) for node in redis_cluster.nodes] == [0, 0, 0]


def test_sentinel_failover_moves_writes_to_the_replica(redis_sentinel: RedisSentinelServers) -> None:
    ports = redis_sentinel.ports
    assert redis_sentinel.url == ("redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in ports)
                                  + "/mymaster/0")
    sentinels = redis.sentinel.Sentinel([("127.0.0.1", port) for port in ports])  # type: ignore[no-untyped-call]
    assert sentinels.discover_master("mymaster") == redis_sentinel.master_address()  # type: ignore[no-untyped-call]
    old, replica = redis_sentinel.master(), redis_sentinel.replica()
    with redis_sentinel.client() as client:
        client.set("before", "1")
        assert client.execute_command("WAIT", 1, 5000) == 1  # on the replica before it is promoted

    new = redis_sentinel.failover()
    assert new == replica.address != old.address
    assert replica.role()[0] == "master"
    master: redis.Redis = sentinels.master_for("mymaster", decode_responses=True)  # type: ignore[no-untyped-call]
    with master:
        master.set("after", "2")
        assert master.get("before") == "1"
    with replica.client() as direct:
        assert direct.get("after") == "2"


def test_the_fixture_hands_out_a_healthy_sentinel_set_up(redis_sentinel: RedisSentinelServers) -> None:
    # Whichever data node the last failover left as master, the other replicates from it.
    master, replica = redis_sentinel.master(), redis_sentinel.replica()
    assert replica.role()[:4] == ["slave", "127.0.0.1", master.port, "connected"]
    with redis_sentinel.client() as client:
        assert client.dbsize() == 0

