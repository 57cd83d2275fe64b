"""The Redis of deploy/redis/ keeps the store's promises, with Debian's redis-server run from
the shipped files (tests/deploy/shipped_redis.py says what a test may change):

- a registration or a revocation that got a success answer survives kill -9 of Redis;
- the authz user of users.acl is all that the server and the CLI need (tokens over real mTLS,
  revocation, introspection, nothing refused even silently), and it can do nothing else;
- the settings read back as shipped, and a full Redis refuses writes rather than evicting;
- the Sentinel set-up: a write acknowledged with --store-wait-replicas 1 survives the master's
  crash and a failover;
- the TLS variant (the commented lines of redis.conf) serves rediss:// with client certificates.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from tests.deploy.shipped_redis import REDIS_FILES, RedisServers, connect, store_options
from tests.support.pki import TestCA
from tests.support.server import authz_cli, start_server
from tests.wire.client import WireClient, WireResponse, assert_token_response
from tests.wire.material import WirePKI, registrations

pytestmark = pytest.mark.wire

REGISTRATION = ["--auth-method", "tls_client_auth", "--san-dns", "client.example"]


def cli(*args: str, store: list[str], tmp_path: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``authz ARGS`` on the Redis store. The --data-dir the helper adds names a directory that
    must never appear: with --store, no SQLite file is created or read."""
    result = authz_cli(*args, *store, data_dir=tmp_path / "no-sqlite-store", check=check)
    assert not (tmp_path / "no-sqlite-store").exists()
    return result


def eventually(attempt: Callable[[], WireResponse], timeout: float = 10.0) -> WireResponse:
    """The first answer of ``attempt`` that is not 503 (the store not reachable yet)."""
    deadline = time.monotonic() + timeout
    while True:
        response = attempt()
        if response.status != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_an_acknowledged_registration_survives_kill_9(redis_servers: RedisServers, tmp_path: Path) -> None:
    server = redis_servers.redis("store")
    store = store_options(server.url(), redis_servers.password_file())
    added = cli("clients", "add", "crash-client", *REGISTRATION, store=store, tmp_path=tmp_path)
    assert added.stdout == "registered crash-client (tls_client_auth)\n"
    # The instant the CLI reported success: no shutdown, nothing flushed on the way out.
    server.kill()
    server.start()
    assert "DB loaded from append only file" in server.log()
    # Redis logs a write of the AOF it could not replay (and drops it) as CRITICAL: how this
    # test found that the default user must keep its rights (redis.conf, users).
    assert "== CRITICAL ==" not in server.log()
    shown = json.loads(cli("clients", "show", "crash-client", store=store, tmp_path=tmp_path).stdout)
    assert (shown["client_id"], shown["tls_client_auth_san_dns"]) == ("crash-client", "client.example")


def test_the_authz_user_is_all_the_server_needs(redis_servers: RedisServers, pki: WirePKI, tmp_path: Path) -> None:
    server = redis_servers.redis("store")
    store = store_options(server.url(), redis_servers.password_file())
    cli("clients", "add", "dn-client", *registrations(pki)["dn-client"], store=store, tmp_path=tmp_path)
    authz = start_server(tls_cert=pki.server_cert, tls_key=pki.server_key, ca_file=pki.server_ca,
                         data_dir=tmp_path / "no-sqlite-store", log_path=tmp_path / "authz.log",
                         trust_anchors=[pki.trust_anchor], extra_args=store)
    try:
        client = WireClient("httpx", authz, pki.server_ca)
        credentials = pki["dn-client"]
        access_token = assert_token_response(client.token(credentials, "dn-client"))["access_token"]
        form = {"client_id": "dn-client", "token": access_token}
        assert client.post("/introspect", credentials, form).json()["active"] is True
        revoked = client.post("/revoke", credentials, form)
        assert revoked.status == 200, revoked.body
        assert client.post("/introspect", credentials, form).json() == {"active": False}

        # The revocation was acknowledged: it survives kill -9 of Redis. The instance notices the
        # loss, subscribes again once Redis is back, and works without a restart.
        server.kill()
        authz.wait_for_log("store_change_feed_lost")
        server.start()
        authz.wait_for_log("store_change_feed_restored")
        introspected = eventually(lambda: client.post("/introspect", credentials, form))
        assert (introspected.status, introspected.json()) == (200, {"active": False})
        assert_token_response(client.token(credentials, "dn-client"))
        assert client.get("/jwks").status == 200
    finally:
        authz.stop()
    # Nothing the server or the CLI sent was refused, not even a command whose refusal the
    # client would ignore (redis-py's CLIENT SETINFO).
    with server.client("admin") as admin:
        assert admin.acl_log() == []


# Commands the authz user must not run: each a way to lose or read what is not its own.
OUTSIDE_THE_ACL: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "SET", "appendfsync", "no"),
    ("CONFIG", "GET", "requirepass"),
    ("SHUTDOWN", "NOSAVE"),
    ("BGREWRITEAOF",),
    ("ACL", "LIST"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("SELECT", "1"),
    ("SCRIPT", "FLUSH"),
    ("EVALSHA", "0" * 40, "0"),
    ("GET", "other:secret"),  # keys and channels outside the prefix
    ("SET", "other:secret", "x"),
    ("PUBLISH", "other:changes", "x"),
]
# A script runs with its caller's rights: EVAL opens no back door.
SCRIPTS_OUTSIDE_THE_ACL = [
    "return redis.call('FLUSHALL')",
    "return redis.call('SET', 'other:secret', 'x')",
    "return redis.call('INCR', 'authz:{client}:index')",
]


def test_the_authz_user_can_do_nothing_else(redis_servers: RedisServers) -> None:
    server = redis_servers.redis("store")
    allowed = []
    with server.client("authz") as authz:
        for command in OUTSIDE_THE_ACL:
            try:
                authz.execute_command(*command)
            except NoPermissionError:
                continue
            allowed.append(" ".join(command))
        for script in SCRIPTS_OUTSIDE_THE_ACL:
            try:
                authz.eval(script, 0)
            except ResponseError as exc:
                if "The user executing the script can't" in str(exc):
                    continue
                raise
            allowed.append(script)
        with authz.pubsub() as pubsub, pytest.raises(NoPermissionError):
            pubsub.subscribe("other:changes")
            pubsub.get_message(timeout=5)  # the refusal comes as the answer
        assert authz.ping() is True  # still there: SHUTDOWN was refused
    assert allowed == []
    # No anonymous access: the default user is off.
    with connect(server.port) as anonymous, pytest.raises(AuthenticationError):
        anonymous.ping()


def test_the_settings_read_back_as_shipped(redis_servers: RedisServers, tmp_path: Path) -> None:
    server = redis_servers.redis("store")
    with server.client("admin") as admin:
        names = ["appendonly", "appendfsync", "no-appendfsync-on-rewrite", "aof-use-rdb-preamble", "aof-load-truncated",
                 "save", "maxmemory", "maxmemory-policy", "protected-mode", "acl-pubsub-default",
                 "enable-protected-configs", "enable-debug-command", "enable-module-command"]
        assert {name: admin.config_get(name)[name] for name in names} == {
            "appendonly": "yes", "appendfsync": "always", "no-appendfsync-on-rewrite": "no",
            "aof-use-rdb-preamble": "yes", "aof-load-truncated": "yes", "save": "",
            "maxmemory": str(256 * 1024 * 1024), "maxmemory-policy": "noeviction", "protected-mode": "yes",
            "acl-pubsub-default": "resetchannels", "enable-protected-configs": "no", "enable-debug-command": "no",
            "enable-module-command": "no",
        }
        # Full (maxmemory): a write fails, saying why, and what is stored stays.
        store = store_options(server.url(), redis_servers.password_file())
        cli("clients", "add", "kept-client", *REGISTRATION, store=store, tmp_path=tmp_path)
        admin.config_set("maxmemory", 1)
        refused = cli("clients", "add", "one-too-many", *REGISTRATION, store=store, tmp_path=tmp_path, check=False)
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"Error: cannot write the store at {server.url()}: command not allowed "
                                         "when used memory > 'maxmemory'"), refused.stderr
        listed = cli("clients", "list", store=store, tmp_path=tmp_path).stdout
        assert "kept-client" in listed and "one-too-many" not in listed


def test_a_write_acknowledged_with_a_replica_survives_a_failover(redis_servers: RedisServers, tmp_path: Path) -> None:
    # Every Redis of the set runs redis.conf with the replica and sentinel users on. The
    # replica starts its first copy at once, instead of waiting 5 s for more replicas to share it.
    both = ["replica", "sentinel"]
    quick_sync = ["--repl-diskless-sync-delay", "0"]
    master = redis_servers.redis("master", *quick_sync, enabled=both)
    replica = redis_servers.redis("replica", "--replicaof", "127.0.0.1", str(master.port),
                                  "--masteruser", "replica", "--masterauth", redis_servers.passwords["replica"],
                                  *quick_sync, enabled=both)
    sentinel = redis_servers.sentinel("sentinel", master)
    with replica.client("admin") as admin:
        _wait_for(lambda: admin.info("replication")["master_link_status"] == "up", "the replica's first sync")
    url = f"redis+sentinel://authz@127.0.0.1:{sentinel.port}/authz/0"
    store = store_options(url, redis_servers.password_file(), "--store-wait-replicas", "1")
    cli("clients", "add", "replicated-client", *REGISTRATION, store=store, tmp_path=tmp_path)
    with master.client("admin") as admin:
        assert admin.info("commandstats")["cmdstat_wait"]["calls"] == 1  # allowed, and waited for
        assert admin.acl_log() == []  # nothing refused to authz, the replica or the Sentinel

    master.kill()
    with connect(sentinel.port) as sentinels:
        assert sentinels.execute_command("SENTINEL", "FAILOVER", "authz") == b"OK"
        _wait_for(lambda: int(sentinels.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "authz")[1])
                  == replica.port, "the failover")
    shown = json.loads(cli("clients", "show", "replicated-client", store=store, tmp_path=tmp_path).stdout)
    assert shown["client_id"] == "replicated-client"
    # The Sentinel promoted the replica with the sentinel user's rights alone.
    with replica.client("admin") as admin:
        assert admin.info("replication")["role"] == "master"
        assert admin.acl_log() == []


def test_the_tls_variant_serves_rediss_with_client_certificates(redis_servers: RedisServers, tmp_path: Path) -> None:
    ca = TestCA("CN=Redis CA,O=authz tests")
    redis_cert, redis_key = ca.issue("CN=127.0.0.1", san_ip=["127.0.0.1"],
                                     eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(tmp_path, "redis")
    client_cert, client_key = ca.issue("CN=authz,O=authz tests").write(tmp_path, "authz")
    ca_file = ca.write(tmp_path / "ca.pem")
    server = redis_servers.redis("tls", config=tls_variant(redis_cert, redis_key, ca_file), port_option="--tls-port")
    url = f"rediss://authz@127.0.0.1:{server.port}/0"
    password = redis_servers.password_file()
    store = store_options(url, password, "--store-tls-ca", str(ca_file), "--store-tls-cert", str(client_cert),
                          "--store-tls-key", str(client_key))
    cli("clients", "add", "tls-client", *REGISTRATION, store=store, tmp_path=tmp_path)
    assert json.loads(cli("clients", "show", "tls-client", store=store, tmp_path=tmp_path).stdout)["client_id"] == (
        "tls-client")
    # tls-auth-clients: without a client certificate, no connection.
    refused = cli("clients", "list", store=store_options(url, password, "--store-tls-ca", str(ca_file)),
                  tmp_path=tmp_path, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(f"Error: cannot connect to the store at {url}: ")


def tls_variant(cert: Path, key: Path, ca_file: Path) -> str:
    """redis.conf with its commented TLS lines switched on, the test's files in their place."""
    lines = []
    for line in (REDIS_FILES / "redis.conf").read_text().splitlines():
        if line == "# port 0" or line.startswith("# tls-"):
            line = line.removeprefix("# ")
        lines.append(line)
    text = "\n".join(lines) + "\n"
    for shipped, ours in {"/etc/redis/tls/redis.crt": cert, "/etc/redis/tls/redis.key": key,
                          "/etc/redis/tls/ca.pem": ca_file}.items():
        assert f" {shipped}\n" in text, f"redis.conf no longer names {shipped}"
        text = text.replace(shipped, str(ours))
    assert "\nport 0\n" in text and "\ntls-auth-clients yes\n" in text
    return text


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)

