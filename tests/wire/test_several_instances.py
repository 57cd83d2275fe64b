"""Two ``authz serve`` instances on one Redis store behave as one server, over real TLS.

What an operator changes anywhere (a registration, a scope, a removal, a key rotation with the
CLI; a revocation at either instance) holds at both instances within a second, their caches
warm; Redis killed and started again, or failed over by Sentinel, costs what the documentation
says and loses nothing that was acknowledged; concurrent writers lose nothing. On one Redis
server and on a Redis Cluster (the cheap cases run on both).

Each test prints the delays it measured (``pytest -s``): from the moment the change was
acknowledged (the CLI returned, the revocation was answered) to the first request of each
instance that showed it; that request's own time is included.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.resource.wire import start_sample_api
from tests.support.redis_servers import RedisClusterServers, RedisSentinelServers, RedisServer, RedisServers
from tests.support.server import REPO
from tests.wire.client import WireClient, WireResponse, assert_token_response, verified_token
from tests.wire.conftest import StartServer
from tests.wire.instances import (
    ANSWER_WITHIN,
    Instances,
    Traffic,
    milliseconds,
    propagation,
    start_instances,
    stop_instances,
)
from tests.wire.material import DN_CLIENT_SUBJECT, WirePKI

pytestmark = pytest.mark.wire

NAMES = ("A", "B")
CLIENT = "dn-client"  # the client every test gets tokens for (tls_client_auth, subject DN)
STORE_UNAVAILABLE = {"error": "temporarily_unavailable",
                     "error_description": "the server cannot use its store right now; retry later"}

RedisStore = RedisServer | RedisClusterServers


def on_both(check: Callable[[str], bool]) -> dict[str, Callable[[], bool]]:
    """``check`` bound to each instance's name, for ``propagation``."""
    return {name: functools.partial(check, name) for name in NAMES}


def assert_store_unavailable(response: WireResponse) -> None:
    """The documented answer of an instance that needs the store and cannot reach it."""
    assert response.status == 503, (response.status, response.body)
    assert response.json() == STORE_UNAVAILABLE
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "5"
    assert response.headers["cache-control"] == "no-store"


def jwks(instances: Instances, name: str) -> dict[str, Any]:
    """The key set instance ``name`` publishes."""
    response = instances.client(name).get("/jwks")
    assert response.status == 200
    keys: dict[str, Any] = response.json()
    return keys


# --- two instances on one Redis server, and on a Redis Cluster ------------------------------


@pytest.fixture(scope="module")
def single_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    servers = RedisServers(tmp_path_factory.mktemp("several-redis"))
    try:
        yield servers.start()
    finally:
        servers.close()


@pytest.fixture(scope="module", params=["redis", "redis+cluster"])
def topology(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def redis_store(topology: str, request: pytest.FixtureRequest) -> RedisStore:
    store: RedisStore = request.getfixturevalue("single_redis" if topology == "redis" else "redis_cluster_servers")
    return store


@pytest.fixture(scope="module")
def instances(redis_store: RedisStore, start_wire_server: StartServer, pki: WirePKI,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instances]:
    """A and B on the module's store, sharing it with the tests of their topology (each test
    uses client ids and tokens of its own)."""
    started = start_instances(start_wire_server, redis_store.url, pki, tmp_path_factory.mktemp("several-cli"))
    try:
        started.register([CLIENT])
        yield started
    finally:
        stop_instances(started)


def test_a_token_revoked_through_b_is_inactive_at_a(instances: Instances, pki: WirePKI, topology: str) -> None:
    dn = pki[CLIENT]
    token = assert_token_response(instances.token("A", dn, CLIENT))["access_token"]
    # A has answered for this token: anything it might keep about it is in place.
    assert instances.is_active("A", dn, CLIENT, token)
    revoked = instances.revoke("B", dn, CLIENT, token)
    assert revoked.status == 200, revoked.body
    acknowledged = time.monotonic()
    assert [e["jti"] for e in revoked.events if e["event"] == "token_revoked"]  # B did it, not a no-op
    delays = propagation({"A": lambda: not instances.is_active("A", dn, CLIENT, token)}, since=acknowledged)
    assert not instances.is_active("B", dn, CLIENT, token)
    print(f"\n[{topology}] revoked through B, inactive at A after {milliseconds(delays)}")


def test_cli_registration_change_and_removal_reach_both_instances(instances: Instances, pki: WirePKI,
                                                                  topology: str) -> None:
    dn = pki[CLIENT]
    client_id = "late-client"

    def status(name: str) -> int:
        return instances.token(name, dn, client_id).status

    def granted(name: str) -> str | None:
        response = instances.token(name, dn, client_id)
        return str(response.json()["scope"]) if response.status == 200 else None

    # Both instances refused the id, and keep that it is unknown (bounded negative cache).
    for name in NAMES:
        instances.assert_unknown_client(instances.token(name, dn, client_id), client_id)
    since = instances.add_dn_client(client_id, scope="read")
    registered = propagation(on_both(lambda name: status(name) == 200), since=since)
    assert all(granted(name) == "read" for name in NAMES)  # both now have it cached, as "read"

    since = instances.add_dn_client(client_id, scope="read write", replace=True)
    changed = propagation(on_both(lambda name: granted(name) == "read write"), since=since)

    assert instances.cli("clients", "remove", client_id).stdout.strip() == f"removed {client_id}"
    since = time.monotonic()
    removed = propagation(on_both(lambda name: status(name) == 401), since=since)
    for name in NAMES:
        instances.assert_unknown_client(instances.token(name, dn, client_id), client_id)
    print(f"\n[{topology}] CLI registration seen after {milliseconds(registered)}; scope change after "
          f"{milliseconds(changed)}; removal after {milliseconds(removed)}")


@pytest.mark.parametrize("topology", ["redis"], indirect=True)
def test_a_key_rotation_reaches_both_instances_and_the_resource_server(instances: Instances, pki: WirePKI,
                                                                       tmp_path: Path) -> None:
    """The sample API knows the key set of A only (the issuer's metadata names A's /jwks); it
    takes tokens of both instances, signed before and after a rotation made with the CLI."""
    dn = pki[CLIENT]
    instances.add_dn_client("api-client", scope="accounts:read")
    # A low cooldown: the API fetches the key set again as soon as it meets the new kid.
    api = start_sample_api(tmp_path, "sample-api", issuer=instances.issuer, ca_file=pki.server_ca,
                           tls=(pki.server_cert, pki.server_key), extra_args=["--jwks-refresh-cooldown", "0.1"])
    try:
        api_client = WireClient("httpx", api, pki.server_ca)

        def api_takes(token: str) -> bool:
            response = api_client.request("GET", "/accounts", dn, None, {"Authorization": f"Bearer {token}"})
            assert response.status in (200, 401), (response.status, response.body)
            return response.status == 200 and response.json()["client_id"] == "api-client"

        def new_token(name: str) -> tuple[str, str]:
            """A token from instance ``name``, and the kid it is signed with."""
            token = str(assert_token_response(instances.token(name, dn, "api-client"))["access_token"])
            return token, verified_token(token, jwks(instances, name))[0]["kid"]

        before = {name: new_token(name) for name in NAMES}
        old_kid = jwks(instances, "A")["keys"][0]["kid"]
        assert {kid for _, kid in before.values()} == {old_kid}
        assert all(api_takes(token) for token, _ in before.values())

        rotated = instances.cli("keys", "rotate").stdout.strip()
        since = time.monotonic()
        new_kid = rotated.removeprefix("active signing key is now ")
        assert new_kid != rotated and new_kid != old_kid
        seen = propagation(on_both(lambda name: new_token(name)[1] == new_kid), since=since)

        # One key set, the same at both: the new key first, the old one still published.
        assert jwks(instances, "A") == jwks(instances, "B")
        assert [key["kid"] for key in jwks(instances, "A")["keys"]] == [new_kid, old_kid]
        after = {name: new_token(name) for name in NAMES}
        assert {kid for _, kid in after.values()} == {new_kid}
        taken = {f"{name} {when}": api_takes(token) for when, tokens in (("before", before), ("after", after))
                 for name, (token, _) in tokens.items()}
        assert all(taken.values()), taken
        print(f"\n[redis] rotation seen in new tokens after {milliseconds(seen)}")
    finally:
        api.stop()


# Registers clients through the CLI's own command (click's ``main``), once per registration,
# each opening and closing its store as ``authz clients add`` does: a new interpreter per
# registration would spend 0.4 s importing for a write of a millisecond, and two of them would
# hardly ever write at the same moment. Waits for a line on stdin, so that both start together;
# prints when it began and ended its writes.
WRITER = """
import json, sys, time
from authz.cli import main
commands = json.loads(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
began = time.time()
for arguments in commands:
    main(arguments, standalone_mode=False)
print(json.dumps([began, time.time()]), flush=True)
"""


def test_concurrent_writers_lose_nothing(instances: Instances, redis_store: RedisStore, pki: WirePKI,
                                         topology: str) -> None:
    """Two CLIs register 20 clients each while both instances revoke tokens, at the same time:
    every client is listed with exactly what was registered, every revoked token is inactive at
    both instances, every record decodes."""
    dn = pki[CLIENT]
    per_writer = 20
    expected = {f"writer-{w}-{n:02d}" for w in "ab" for n in range(per_writer)}
    commands = {w: [["clients", "add", f"writer-{w}-{n:02d}", "--auth-method", "tls_client_auth", "--subject-dn",
                     DN_CLIENT_SUBJECT, "--scope", f"writer-{w}-{n:02d}", "--store", instances.store]
                    for n in range(per_writer)] for w in "ab"}
    # Tokens issued by each instance, each to be revoked through the other one.
    with ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(lambda name: (name, str(assert_token_response(instances.token(name, dn, CLIENT))
                                                       ["access_token"])), NAMES * 10))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(commands[w])], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=environment)
               for w in "ab"]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        with ThreadPoolExecutor(8) as pool:
            revocations = list(pool.map(lambda item: instances.revoke("B" if item[0] == "A" else "A", dn, CLIENT,
                                                                      item[1]), tokens))
        outputs = [writer.communicate(timeout=60) for writer in writers]
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
    spans = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert max(began for began, _ in spans) < min(ended for _, ended in spans), f"the writers did not overlap: {spans}"
    assert all(response.status == 200 for response in revocations), [r.body for r in revocations if r.status != 200]

    # Every registration, intact: the CLI lists each as usable, with its own scope.
    listed = {line.split("\t")[0]: line for line in instances.cli("clients", "list").stdout.splitlines()}
    assert expected <= set(listed)
    damaged = [line for client_id, line in listed.items() if client_id in expected and line != (
        f"{client_id}\ttls_client_auth\ttls_client_auth_subject_dn={DN_CLIENT_SUBJECT}\tscope={client_id!r}")]
    assert not damaged
    # ... and usable at both instances.
    for name, client_id in (("A", "writer-b-00"), ("B", "writer-a-00")):
        assert assert_token_response(instances.token(name, dn, client_id))["scope"] == client_id

    # Every revocation, at both instances, and its record intact in Redis.
    checks = [(name, token) for name in NAMES for _, token in tokens]
    with ThreadPoolExecutor(8) as pool:
        active = list(pool.map(lambda check: instances.is_active(check[0], dn, CLIENT, check[1]), checks))
    still = [name for (name, _), is_active in zip(checks, active, strict=True) if is_active]
    assert not still, f"revoked tokens still active at {still}"
    key_set = jwks(instances, "A")
    raw = redis_store.client()
    for _, token in tokens:
        jti = verified_token(token, key_set)[1]["jti"]
        stored = raw.get(f"authz:{{revoked_access_token}}:r:{jti}")
        assert isinstance(stored, str) and json.loads(stored)["client_id"] == CLIENT
    overlap = min(ended for _, ended in spans) - max(began for began, _ in spans)
    print(f"\n[{topology}] 2 x {per_writer} registrations and {len(tokens)} revocations at once "
          f"(writers overlapping for {overlap * 1000:.0f} ms): nothing lost")


# --- Redis killed and started again -------------------------------------------------------

OUTAGE_PASSWORD = "outage-pw-7c1d"  # a test server's; no log line may show it


@pytest.fixture
def outage(redis_servers: RedisServers, start_wire_server: StartServer, pki: WirePKI,
           tmp_path: Path) -> Iterator[tuple[RedisServer, Instances]]:
    """A Redis server with a password, and two instances of their own on it (this test kills
    it). ``--store-max-stale 30``: longer than the outage, so cached clients are served
    throughout."""
    redis = redis_servers.start(password=OUTAGE_PASSWORD)
    started = start_instances(start_wire_server, redis.url, pki, tmp_path, extra_args=["--store-max-stale", "30"])
    try:
        started.register([CLIENT])
        yield redis, started
    finally:
        stop_instances(started)


def test_redis_killed_and_started_again(outage: tuple[RedisServer, Instances], pki: WirePKI) -> None:
    redis, instances = outage
    dn = pki[CLIENT]
    offsets = {name: instances[name].log_offset() for name in NAMES}
    for name in NAMES:  # both instances have the client cached
        assert_token_response(instances.token(name, dn, CLIENT))
    kept = str(assert_token_response(instances.token("A", dn, CLIENT))["access_token"])
    revoked = str(assert_token_response(instances.token("A", dn, CLIENT))["access_token"])
    # Acknowledged just before the crash: a registration (the CLI returned) and a revocation.
    instances.add_dn_client("registered-before-kill", scope="read")
    assert instances.revoke("B", dn, CLIENT, revoked).status == 200

    # Clients go on asking throughout: the cached one, and one the instances cannot know
    # without Redis (whose failed lookups are what makes an instance fail fast).
    traffic = Traffic(instances, {"cached": lambda client: client.token(dn, CLIENT),
                                  "unknown": lambda client: client.token(dn, "never-registered")})
    with traffic:
        redis.kill()
        for name in NAMES:
            # What needs Redis is refused at once, as documented: introspection, revocation
            # (an id not cached: the traffic's). JWKS and metadata need no store.
            assert_store_unavailable(instances.introspect(name, dn, CLIENT, kept))
            assert_store_unavailable(instances.revoke(name, dn, CLIENT, kept))
            for path in ("/jwks", "/.well-known/oauth-authorization-server"):
                assert instances.client(name).get(path).status == 200
            instances[name].wait_for_log('"store_change_feed_lost"', timeout=ANSWER_WITHIN)
        traffic.wait_until(time.monotonic())

        redis.start()
        # Recovery without a restart: a registration made now works at both within a second.
        since = instances.add_dn_client("registered-after-restart", scope="read")
        recovered = propagation(on_both(lambda name: instances.token(name, dn, "registered-after-restart").status
                                        == 200), since=since)
        for name in NAMES:
            instances[name].wait_for_log('"store_change_feed_restored"', timeout=ANSWER_WITHIN)
        # The resubscription dropped every cache: the traffic goes on past it (and past the
        # second an instance may refuse commands after a failed one, FAIL_FAST_SECONDS).
        traffic.wait_until(time.monotonic() + 1.0)

    # A cached client got tokens throughout: before, during and after the outage.
    assert not traffic.unexpected("cached", lambda response: response.status == 200)
    # An id that must be looked up: the documented 503 while Redis is away, then refused as
    # unknown; never a 500 nor a hang.
    assert not traffic.unexpected("unknown", lambda response: response.status in (401, 503))
    assert traffic.count("unknown", lambda response: response.status == 503) > 0
    for answer in traffic.answers:
        if answer.request == "unknown" and answer.response is not None:
            if answer.response.status == 503:
                assert_store_unavailable(answer.response)
            else:
                instances.assert_unknown_client(answer.response, "never-registered")

    redacted = f"redis://127.0.0.1:{redis.port}/0"
    for name in NAMES:
        events = instances[name].events(offsets[name])
        [line, *_] = [e for e in events if e["event"] == "store_unavailable"]
        assert redacted in line["error"], line
        assert line["level"] == "error"
        feed = [(e["event"], e["store"]) for e in events if e["event"].startswith("store_change_feed")]
        assert feed == [("store_change_feed_lost", redacted), ("store_change_feed_restored", redacted)]
        # Whatever the line: the password is in no log line.
        assert OUTAGE_PASSWORD not in instances[name].log()
        # Nothing acknowledged before the crash was lost (AOF, appendfsync always) ...
        assert_token_response(instances.token(name, dn, "registered-before-kill"))
        assert not instances.is_active(name, dn, CLIENT, revoked)
        # ... and what was refused during the outage was not done.
        assert instances.is_active(name, dn, CLIENT, kept)
    print(f"\n[redis] during the outage, {traffic.count('cached')} tokens for the cached client, all 200; "
          f"after the restart, a new registration works after {milliseconds(recovered)}")


# --- a Sentinel failover -------------------------------------------------------------------


@pytest.fixture
def sentinel_instances(redis_sentinel: RedisSentinelServers, start_wire_server: StartServer, pki: WirePKI,
                       tmp_path: Path) -> Iterator[Instances]:
    # --store-timeout 1: a revocation whose write cannot reach the replica (WAIT, default 1
    # replica with Sentinel) is refused after a second, not two.
    started = start_instances(start_wire_server, redis_sentinel.url, pki, tmp_path,
                              extra_args=["--store-timeout", "1"])
    try:
        started.register([CLIENT])
        yield started
    finally:
        stop_instances(started)


def test_sentinel_failover_while_tokens_are_issued_and_revoked(redis_sentinel: RedisSentinelServers,
                                                               sentinel_instances: Instances, pki: WirePKI) -> None:
    """Sentinel promotes the replica while both instances issue tokens, introspect and revoke:
    tokens and introspection never fail (a cached client needs no store; a read finds the old
    master, then the new one); a revocation is acknowledged only once a replica holds it (the
    default --store-wait-replicas 1), so every acknowledged one holds after the failover."""
    instances = sentinel_instances
    dn = pki[CLIENT]
    for name in NAMES:
        assert_token_response(instances.token(name, dn, CLIENT))  # cached at both
    kept = str(assert_token_response(instances.token("A", dn, CLIENT))["access_token"])
    attempts: list[tuple[str, WireResponse]] = []  # (token, answer) of each revocation

    def revoke(client: WireClient) -> WireResponse:
        """A new token from this instance, revoked there at once."""
        token = str(assert_token_response(client.token(dn, CLIENT))["access_token"])
        response = client.post("/revoke", dn, {"client_id": CLIENT, "token": token})
        attempts.append((token, response))
        return response

    issuing = Traffic(instances, {"token": lambda client: client.token(dn, CLIENT),
                                  "introspection": lambda client: client.post(
                                      "/introspect", dn, {"client_id": CLIENT, "token": kept})})
    revoking = Traffic(instances, {"revocation": revoke})
    with issuing, revoking:
        issuing.wait_until(time.monotonic())
        revoking.wait_until(time.monotonic())
        before = redis_sentinel.master_address()
        after = redis_sentinel.failover(settled=True)
        assert after != before

    assert not issuing.unexpected("token", lambda response: response.status == 200)
    assert not issuing.unexpected("introspection", lambda response: response.status == 200
                                  and response.json()["active"] is True)
    assert not revoking.unexpected("revocation", lambda response: response.status in (200, 503))
    for _, response in attempts:
        if response.status == 503:
            assert_store_unavailable(response)
    # An acknowledged revocation holds at both instances once the failover is over; a refused
    # one may or may not have been written (the master took it, no replica confirmed it).
    acknowledged = [token for token, response in attempts if response.status == 200]
    checks = [(name, token) for name in NAMES for token in acknowledged]
    with ThreadPoolExecutor(4) as pool:
        active = list(pool.map(lambda check: instances.is_active(check[0], dn, CLIENT, check[1]), checks))
    lost = [name for (name, _), still_active in zip(checks, active, strict=True) if still_active]
    assert not lost, f"acknowledged revocations lost in the failover, still active at {lost}"
    refused = len(attempts) - len(acknowledged)
    print(f"\n[redis+sentinel] failover in {redis_sentinel.timings['failover']:.1f} s: "
          f"{issuing.count('token')} tokens and {issuing.count('introspection')} introspections, all 200 "
          f"(slowest {max(a.seconds for a in issuing.answers) * 1000:.0f} ms); revocations: {len(acknowledged)} "
          f"acknowledged, {refused} refused (503)")
