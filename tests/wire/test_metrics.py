"""``authz serve --metrics-listen``: ``/metrics``, ``/healthz`` and ``/readyz`` on their own
plain-HTTP listener, over real servers and real TLS clients.

Counts are asserted as exact differences between two scrapes around real requests, so that a
test fails when a count is missing, doubled, or lands under the wrong labels.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from prometheus_client.mmap_dict import MmapedDict

from authz.certificates.rejection import RejectionReason
from authz.metrics.instruments import FLUSH_INTERVAL
from tests.support.server import REPO, RunningServer, authz_cli, free_port
from tests.wire.client import WireClient, assert_invalid_client, assert_token_response, client_ssl_context
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients
from tests.wire.metrics import MetricsEndpoint

pytestmark = pytest.mark.wire

CLIENTS = ["dn-client", "self-signed-client", "dns-client", "two-certs-client"]
ISSUED = "authz_tokens_issued_total"
REFUSED = "authz_refusals_total"


def not_after(path: Path) -> float:
    return min(c.not_valid_after_utc.timestamp() for c in x509.load_pem_x509_certificates(path.read_bytes()))


def start_with_metrics(start_wire_server: StartServer, data_dir: Path, *extra: str,
                       ready_count: int = 1) -> tuple[RunningServer, MetricsEndpoint]:
    port = free_port()
    server = start_wire_server(data_dir, ["--metrics-listen", f"127.0.0.1:{port}", *extra], ready_count=ready_count)
    return server, MetricsEndpoint(port)


@pytest.fixture(scope="module")
def metered(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[RunningServer, MetricsEndpoint]]:
    """One worker, client labels capped at 2 (dn-client and self-signed-client get them)."""
    data_dir = tmp_path_factory.mktemp("metrics-data")
    register_clients(pki, data_dir, CLIENTS)
    server, metrics = start_with_metrics(start_wire_server, data_dir, "--metrics-client-labels", "2")
    yield server, metrics
    server.stop()


@pytest.fixture
def server(metered: tuple[RunningServer, MetricsEndpoint]) -> RunningServer:
    return metered[0]


@pytest.fixture
def metrics(metered: tuple[RunningServer, MetricsEndpoint]) -> MetricsEndpoint:
    return metered[1]


def test_tokens_issued_count_exactly_per_client_and_method(via: str, server: RunningServer,
                                                           metrics: MetricsEndpoint, pki: WirePKI) -> None:
    client = WireClient(via, server, pki.server_ca)
    before = metrics.scrape()
    for _ in range(3):
        assert_token_response(client.token(pki["dn-client"], "dn-client"))
    for _ in range(2):
        assert_token_response(client.token(pki["self-signed-client"], "self-signed-client"))
    after = metrics.settled_scrape()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(ISSUED, method="tls_client_auth", client_id="dn-client") == 3
    assert delta(ISSUED, method="self_signed_tls_client_auth", client_id="self-signed-client") == 2
    assert delta(ISSUED, method="self_signed_tls_client_auth", client_id="dn-client") == 0
    # Each request, timed under its endpoint; each handshake counted (one connection each).
    assert delta("authz_request_duration_seconds_count", endpoint="token") == 5
    assert delta("authz_request_duration_seconds_bucket", endpoint="token", le="+Inf") == 5
    assert delta("authz_request_duration_seconds_sum", endpoint="token") > 0
    assert delta("authz_tls_handshakes_total", outcome="ok") >= 5  # and the scrapes' none: plain HTTP


def test_refusals_count_by_reason(via: str, server: RunningServer, metrics: MetricsEndpoint, pki: WirePKI) -> None:
    client = WireClient(via, server, pki.server_ca)
    untrusted = dict(endpoint="token", error="invalid_client", reason="untrusted_chain")
    unknown = dict(endpoint="token", error="invalid_client", reason="unknown_client")
    scope = dict(endpoint="token", error="invalid_scope", reason="invalid_scope")
    not_found = dict(endpoint="http", error="invalid_request", reason="not_found")
    before = metrics.scrape()
    assert_invalid_client(client.token(pki["untrusted-ca"], "dn-client"), RejectionReason.UNTRUSTED_CHAIN,
                          "dn-client")
    assert_invalid_client(client.token(pki["dn-client"], "nobody-here"), "unknown client_id", "nobody-here")
    assert client.token(pki["dn-client"], "dn-client", scope="admin").status == 400
    assert client.get("/no-such-endpoint").status == 404
    after = metrics.settled_scrape()
    for labels in (untrusted, unknown, scope, not_found):
        assert after.value(REFUSED, **labels) - before.value(REFUSED, **labels) == 1, labels
    assert after.value(ISSUED, method="tls_client_auth", client_id="dn-client") == before.value(
        ISSUED, method="tls_client_auth", client_id="dn-client")


def test_unauthenticated_input_creates_no_series(server: RunningServer, metrics: MetricsEndpoint,
                                                 pki: WirePKI) -> None:
    """Forty client_ids nobody registered: forty refusals under one series, and none of the
    ids anywhere in the metrics."""
    client = WireClient("httpx", server, pki.server_ca)
    unknown = dict(endpoint="token", error="invalid_client", reason="unknown_client")
    assert client.token(pki["dn-client"], "first-unknown").status == 401  # the series exists from here on
    before = metrics.settled_scrape()
    ids = [f"attacker-{n:03d}-{'x' * 20}" for n in range(40)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: client.token(pki["dn-client"], i).status, ids))
    assert statuses == [401] * len(ids)
    after = metrics.settled_scrape()
    assert after.value(REFUSED, **unknown) - before.value(REFUSED, **unknown) == len(ids)
    assert "attacker-" not in after.text
    assert len(after.samples) == len(before.samples)


def test_clients_past_the_cap_count_as_other(server: RunningServer, metrics: MetricsEndpoint, pki: WirePKI) -> None:
    client = WireClient("httpx", server, pki.server_ca)
    # The first two clients ever to get a token here hold the two labels (whatever ran before).
    assert_token_response(client.token(pki["dn-client"], "dn-client"))
    assert_token_response(client.token(pki["self-signed-client"], "self-signed-client"))
    before = metrics.settled_scrape()
    for _ in range(2):
        assert_token_response(client.token(pki["dns-client"], "dns-client"))
    assert_token_response(client.token(pki["two-certs-client"], "two-certs-client"))
    after = metrics.settled_scrape()
    assert after.value(ISSUED, method="tls_client_auth", client_id="other") - before.value(
        ISSUED, method="tls_client_auth", client_id="other") == 2
    assert after.value(ISSUED, method="self_signed_tls_client_auth", client_id="other") - before.value(
        ISSUED, method="self_signed_tls_client_auth", client_id="other") == 1
    labelled = {series["client_id"] for series in after.series(ISSUED)}
    assert labelled == {"dn-client", "self-signed-client", "other"}


def test_metrics_are_not_served_on_the_mtls_port(via: str, server: RunningServer, pki: WirePKI) -> None:
    response = WireClient(via, server, pki.server_ca).get("/metrics")
    assert response.status == 404
    assert response.json()["error"] == "invalid_request"
    assert b"authz_" not in response.body


def test_the_listener_speaks_plain_http_only_for_its_paths(metrics: MetricsEndpoint) -> None:
    assert metrics.get("/").status_code == 404
    assert metrics.get("/token").status_code == 404
    refused = httpx.post(metrics.base_url + "/metrics", timeout=10)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    head = httpx.head(metrics.base_url + "/readyz", timeout=10)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    openmetrics = metrics.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_health_and_readiness_on_both_listeners(via: str, server: RunningServer, metrics: MetricsEndpoint,
                                                pki: WirePKI) -> None:
    health = metrics.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "alive"})
    status, document = metrics.readiness()
    assert status == 200, document
    assert document["status"] == "ready"
    assert {name: check["status"] for name, check in document["checks"].items()} == {
        "store": "ok", "signing_key": "ok", "revocation_data": "ok"}
    assert document["checks"]["signing_key"]["detail"] == "1 of 1 worker process(es) have loaded the signing key"
    assert document["checks"]["store"]["detail"].endswith("authz.sqlite3")

    # The main port (mutual TLS; a probe sends no certificate): the same checks, no details.
    client = WireClient(via, server, pki.server_ca)
    main_health = client.get("/healthz")
    assert (main_health.status, main_health.json()) == (200, {"status": "alive"})
    main_ready = client.get("/readyz")
    assert main_ready.status == 200
    assert main_ready.headers["cache-control"] == "no-store"
    assert main_ready.json() == {"status": "ready", "checks": {"store": {"status": "ok"},
                                                               "signing_key": {"status": "ok"},
                                                               "revocation_data": {"status": "ok"}}}


def test_expiry_gauges_are_the_certificates_not_after(metrics: MetricsEndpoint, pki: WirePKI, data_dir: Path,
                                                      server: RunningServer) -> None:
    scrape = metrics.scrape()
    assert scrape.value("authz_server_certificate_not_after_timestamp_seconds") == not_after(pki.server_cert)
    anchor = x509.load_pem_x509_certificate(pki.trust_anchor.read_bytes())
    [anchor_series] = scrape.series("authz_trust_anchor_not_after_timestamp_seconds")
    assert anchor_series["subject"] == anchor.subject.rfc4514_string()
    assert scrape.value("authz_trust_anchor_not_after_timestamp_seconds", **anchor_series) == not_after(
        pki.trust_anchor)
    clients = {(s["client_id"], s["x5t_s256"]) for s in scrape.series(
        "authz_client_certificate_not_after_timestamp_seconds")}
    assert clients == {("self-signed-client", pki["self-signed-client"].thumbprint),
                       ("two-certs-client", pki["two-certs-client"].thumbprint),
                       ("two-certs-client", pki["two-certs-client-b"].thumbprint)}
    assert scrape.value("authz_client_certificate_not_after_timestamp_seconds", client_id="self-signed-client",
                        x5t_s256=pki["self-signed-client"].thumbprint) == not_after(pki["self-signed-client"].cert)


def test_client_certificate_gauges_follow_the_registrations(metrics: MetricsEndpoint, pki: WirePKI,
                                                            server: RunningServer) -> None:
    """A certificate added or removed by the CLI while the server runs: the store's change feed
    brings it to the gauges within seconds."""
    gauge = "authz_client_certificate_not_after_timestamp_seconds"
    added = pki["unregistered-self-signed"]
    authz_cli("clients", "update", "self-signed-client", "--add-cert", str(added.cert), data_dir=server.data_dir)
    scrape = metrics.wait_for(lambda s: s.value(gauge, client_id="self-signed-client", x5t_s256=added.thumbprint) > 0)
    assert scrape.value(gauge, client_id="self-signed-client", x5t_s256=added.thumbprint) == not_after(added.cert)
    authz_cli("clients", "remove", "two-certs-client", data_dir=server.data_dir)
    metrics.wait_for(lambda s: not any(series["client_id"] == "two-certs-client" for series in s.series(gauge)))


def test_the_dashboard_uses_metrics_the_server_exposes(metrics: MetricsEndpoint) -> None:
    dashboard = json.loads((REPO / "deploy/grafana/authz.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in expressions for name in re.findall(r"\bauthz_[a-z0-9_]+", expr)}
    assert used, "the dashboard queries no authz metric"
    exposed = metrics.scrape().names()
    # The revocation gauges appear once CRL/OCSP data is reported; their names are fixed in the code.
    exposed |= {"authz_revocation_data_next_update_timestamp_seconds",
                "authz_revocation_data_last_update_timestamp_seconds"}
    assert used - exposed == set()


# --- several workers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_workers(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[RunningServer, MetricsEndpoint]]:
    data_dir = tmp_path_factory.mktemp("metrics-workers-data")
    register_clients(pki, data_dir, ["dn-client"])
    server, metrics = start_with_metrics(start_wire_server, data_dir, "--workers", "2", ready_count=2)
    yield server, metrics
    server.stop()


def _per_process_tokens(directory: Path) -> dict[int, float]:
    """What each worker process wrote to its own counter file."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == ISSUED and labels.get("client_id") == "dn-client":
                counts[pid] = counts.get(pid, 0) + value
    return counts


def test_counts_are_summed_over_the_workers(two_workers: tuple[RunningServer, MetricsEndpoint],
                                            pki: WirePKI) -> None:
    server, metrics = two_workers
    [listening] = [e for e in server.events() if e["event"] == "metrics_listening"]
    directory = Path(listening["multiprocess_directory"])
    assert metrics.scrape().value("authz_signing_key_loaded") == 2
    # New connections, several at once: the kernel hands them to both workers.
    context = client_ssl_context(pki["dn-client"], pki.server_ca)

    def token(_: int) -> int:
        with httpx.Client(verify=context, timeout=15) as client:
            return client.post(server.token_url, data={"grant_type": "client_credentials",
                                                       "client_id": "dn-client"}).status_code

    total = 0
    for _ in range(5):  # until both have issued some (almost always the first round)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(token, range(40))) == {200}
        total += 40
        time.sleep(FLUSH_INTERVAL + 0.5)
        per_process = _per_process_tokens(directory)
        if len([count for count in per_process.values() if count > 0]) >= 2:
            break
    assert len(per_process) == 2 and all(per_process.values()), per_process
    assert sum(per_process.values()) == total
    assert metrics.scrape().value(ISSUED, method="tls_client_auth", client_id="dn-client") == total
    status, document = metrics.readiness()
    assert status == 200
    assert document["checks"]["signing_key"]["detail"] == "2 of 2 worker process(es) have loaded the signing key"


def test_a_restarted_worker_keeps_the_totals_and_leaves_no_gauges(
        two_workers: tuple[RunningServer, MetricsEndpoint], pki: WirePKI) -> None:
    """A worker killed (uvicorn starts another): its counts stay in the totals, its live gauges
    go with it, so the server counts two serving workers, not three."""
    server, metrics = two_workers
    client = WireClient("httpx", server, pki.server_ca)
    for _ in range(4):
        assert_token_response(client.token(pki["dn-client"], "dn-client"))
    before = metrics.settled_scrape()
    issued = before.value(ISSUED, method="tls_client_auth", client_id="dn-client")
    assert issued > 0 and before.value("authz_signing_key_loaded") == 2
    pids = [int(e["event"].split("[")[1].rstrip("]")) for e in server.events()
            if e["event"].startswith("Started server process [")]
    started = server.log().count("Application startup complete")
    os.kill(pids[0], signal.SIGKILL)
    server.wait_for_log("Application startup complete", count=started + 1, timeout=30)
    after = metrics.wait_for(lambda s: s.value("authz_signing_key_loaded") == 2)
    assert after.value(ISSUED, method="tls_client_auth", client_id="dn-client") == issued
    assert metrics.readiness()[0] == 200


def test_health_can_be_kept_off_the_main_port(start_wire_server: StartServer, pki: WirePKI,
                                              tmp_path: Path) -> None:
    register_clients(pki, tmp_path / "data", ["dn-client"])
    server, metrics = start_with_metrics(start_wire_server, tmp_path / "data", "--no-health-on-main-port")
    try:
        client = WireClient("httpx", server, pki.server_ca)
        assert client.get("/readyz").status == 404 and client.get("/healthz").status == 404
        assert metrics.readiness()[0] == 200
    finally:
        server.stop()


def test_the_directory_is_removed_when_the_server_stops(start_wire_server: StartServer, pki: WirePKI,
                                                        tmp_path: Path) -> None:
    register_clients(pki, tmp_path / "data", ["dn-client"])
    server, metrics = start_with_metrics(start_wire_server, tmp_path / "data")
    [listening] = [e for e in server.events() if e["event"] == "metrics_listening"]
    directory = Path(listening["multiprocess_directory"])
    assert directory.is_dir() and metrics.get("/healthz").status_code == 200
    server.stop()
    assert server.process.returncode == 0
    assert not directory.exists()
    with pytest.raises(httpx.ConnectError):
        metrics.get("/healthz")


def test_a_taken_metrics_address_stops_the_start(start_wire_server: StartServer, pki: WirePKI,
                                                 tmp_path: Path) -> None:
    register_clients(pki, tmp_path / "data", ["dn-client"])
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = authz_cli("serve", "--port", str(free_port()), "--tls-cert", str(pki.server_cert),
                           "--tls-key", str(pki.server_key), "--metrics-listen", f"127.0.0.1:{port}",
                           data_dir=tmp_path / "data", check=False, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: --metrics-listen 127.0.0.1:{port}: cannot listen there: ")
