"""Readiness and the store metrics when the store really fails: a Redis server killed and
started again, a SQLite store on a file system that fills up (``small_fs``, as in
test_store_failures.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_servers import RedisServers
from tests.support.server import authz_cli
from tests.wire.client import WireClient, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients, registrations
from tests.wire.metrics import MetricsEndpoint
from tests.wire.test_metrics import start_with_metrics
from tests.wire.test_store_failures import SmallFileSystem, small_fs  # noqa: F401 - the fixture

pytestmark = pytest.mark.wire


def wait_for_readiness(metrics: MetricsEndpoint, client: WireClient, status: int,
                       timeout: float = 20.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both listeners' /readyz once they answer ``status`` (each caches its checks 1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        listener_status, listener_body = metrics.readiness()
        main = client.get("/readyz")
        if listener_status == status and main.status == status:
            return listener_body, main.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"not {status} within {timeout} s: {listener_status} {listener_body}, "
                                 f"main port {main.status} {main.body!r}")
        time.sleep(0.2)


def test_readiness_follows_a_redis_store_down_and_up(start_wire_server: StartServer, pki: WirePKI,
                                                      redis_servers: RedisServers, tmp_path: Path) -> None:
    redis = redis_servers.start()
    authz_cli("clients", "add", "dn-client", *registrations(pki)["dn-client"], "--store", redis.url,
              data_dir=tmp_path / "cli")
    server, metrics = start_with_metrics(start_wire_server, tmp_path / "unused", "--store", redis.url,
                                         "--store-timeout", "0.5")
    client = WireClient("httpx", server, pki.server_ca)
    assert_token_response(client.token(pki["dn-client"], "dn-client"))
    ready, _ = wait_for_readiness(metrics, client, 200)
    assert ready["checks"]["store"]["status"] == "ok"
    assert f"127.0.0.1:{redis.address[1]}" in ready["checks"]["store"]["detail"]

    since = server.log_offset()
    redis.kill()
    down, main_down = wait_for_readiness(metrics, client, 503)
    assert down["status"] == "not_ready"
    assert down["checks"]["store"]["status"] == "failing"
    assert "127.0.0.1" in down["checks"]["store"]["detail"]
    assert down["checks"]["signing_key"]["status"] == "ok"
    # The main port names the failing check, not the store's address.
    assert main_down == {"status": "not_ready", "checks": {"store": {"status": "failing"},
                                                           "signing_key": {"status": "ok"},
                                                           "revocation_data": {"status": "ok"}}}
    # Liveness does not depend on the store.
    assert metrics.get("/healthz").status_code == 200 and client.get("/healthz").status == 200
    failing = [e for e in server.events(since) if e["event"] == "readiness_check_failing"]
    assert {e["check"] for e in failing} == {"store"}
    assert len(failing) <= 2  # the worker's line and the listener's: once each, not once per probe

    redis.start()
    wait_for_readiness(metrics, client, 200)
    assert any(e["event"] == "readiness_check_passing" for e in server.events(since))
    assert_token_response(client.token(pki["dn-client"], "dn-client"))
    # Every failed store call was counted (the worker's probe reads, at least).
    assert metrics.scrape().value("authz_store_errors_total", operation="find") >= 1


def test_a_full_disk_counts_store_errors_and_keeps_the_server_ready(
        start_wire_server: StartServer, pki: WirePKI, small_fs: SmallFileSystem) -> None:  # noqa: F811
    data_dir = small_fs.root / "data"
    register_clients(pki, data_dir, ["dn-client"])
    server, metrics = start_with_metrics(start_wire_server, data_dir)
    try:
        client = WireClient("httpx", server, pki.server_ca)
        credentials = pki["dn-client"]
        access_token = assert_token_response(client.token(credentials, "dn-client"))["access_token"]
        wait_for_readiness(metrics, client, 200)
        before = metrics.scrape()

        small_fs.fill()
        refused = client.post("/revoke", credentials, {"client_id": "dn-client", "token": access_token})
        assert refused.status == 503, refused.body
        after = metrics.scrape()
        assert after.value("authz_store_errors_total", operation="upsert") - before.value(
            "authz_store_errors_total", operation="upsert") == 1
        unavailable = dict(endpoint="revocation", error="temporarily_unavailable", reason="store_unavailable")
        assert after.value("authz_refusals_total", **unavailable) - before.value(
            "authz_refusals_total", **unavailable) == 1
        # Reads work: tokens are issued, and the server stays in its load balancer's pool.
        assert_token_response(client.token(credentials, "dn-client"))
        wait_for_readiness(metrics, client, 200)
        small_fs.free()
    finally:
        server.stop()
