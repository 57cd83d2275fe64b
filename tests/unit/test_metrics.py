"""authz.metrics in-process: the instruments, the store wrapper, readiness and its cache, the
revocation-data registry, the settings. The listener and multiprocess mode are covered over
real servers in tests/wire/test_metrics.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from authz.metrics import state
from authz.metrics.health import CheckResult, Readiness, readiness_document, revocation_check, store_check
from authz.metrics.instruments import ServerMetrics, install
from authz.metrics.revocation import MAX_SOURCES, RevocationDataRegistry
from authz.metrics.store import InstrumentedStore
from authz.settings import Settings
from authz.storage.base import CorruptRecord, StorageError
from tests.support.server import REPO


@pytest.fixture
def metrics() -> Iterator[ServerMetrics]:
    installed = install(client_labels=2)
    assert installed.registry is not None  # in-process: no multiprocess directory here
    yield installed
    state.ACTIVE = None


def value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    assert metrics.registry is not None
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_the_cli_and_the_server_stack_do_not_import_prometheus_client() -> None:
    """prometheus-client must be imported after authz serve has set PROMETHEUS_MULTIPROC_DIR."""
    code = ("import sys, authz.cli.main, authz.cli.serve, authz.app, authz.context, authz.tls.listener, "
            "authz.tls.protocol; print('prometheus_client' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_a_process_that_imported_prometheus_client_too_early_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="imported before PROMETHEUS_MULTIPROC_DIR was set"):
        install(client_labels=2)


def test_clients_past_the_cap_count_as_other(metrics: ServerMetrics) -> None:
    for client_id in ["a", "b", "a", "c", "d", "c"]:
        metrics.token_issued("tls_client_auth", client_id)
    metrics.token_issued("self_signed_tls_client_auth", "e")
    issued = "authz_tokens_issued_total"
    assert value(metrics, issued, method="tls_client_auth", client_id="a") == 0  # until the flush
    metrics.flush()
    assert value(metrics, issued, method="tls_client_auth", client_id="a") == 2
    assert value(metrics, issued, method="tls_client_auth", client_id="b") == 1
    assert value(metrics, issued, method="tls_client_auth", client_id="other") == 3
    assert value(metrics, issued, method="self_signed_tls_client_auth", client_id="other") == 1
    assert value(metrics, issued, method="tls_client_auth", client_id="c") == 0


def test_request_durations_are_bucketed_exactly_at_the_flush(metrics: ServerMetrics) -> None:
    token = metrics.latency["token"]
    for seconds in (0.0004, 0.001, 0.0011, 0.003, 0.3, 7.0):
        token.observe(seconds)
    metrics.flush()
    metrics.flush()  # nothing new: nothing added

    def bucket(le: str) -> float:
        return value(metrics, "authz_request_duration_seconds_bucket", endpoint="token", le=le)

    assert [bucket(le) for le in ("0.001", "0.0025", "0.005", "0.25", "1.0", "+Inf")] == [2, 3, 4, 4, 5, 6]
    assert value(metrics, "authz_request_duration_seconds_count", endpoint="token") == 6
    assert value(metrics, "authz_request_duration_seconds_sum", endpoint="token") == pytest.approx(7.3055)


def test_without_the_histogram_internals_each_observation_goes_straight_through() -> None:
    from authz.metrics.batch import LocalHistogram

    class Child:
        def __init__(self) -> None:
            self.observed: list[float] = []

        def observe(self, value: float) -> None:
            self.observed.append(value)

    child = Child()
    local = LocalHistogram(child)
    local.observe(0.5)
    local.flush()
    assert child.observed == [0.5]


async def test_the_flush_runs_by_itself_and_at_stop(metrics: ServerMetrics, monkeypatch: pytest.MonkeyPatch) -> None:
    from authz.metrics import instruments

    monkeypatch.setattr(instruments, "FLUSH_INTERVAL", 0.05)
    metrics.start()
    metrics.token_issued("tls_client_auth", "a")
    await asyncio.sleep(0.2)
    assert value(metrics, "authz_tokens_issued_total", method="tls_client_auth", client_id="a") == 1
    metrics.token_issued("tls_client_auth", "a")
    await metrics.stop()
    assert value(metrics, "authz_tokens_issued_total", method="tls_client_auth", client_id="a") == 2


def test_refusals_and_handshakes(metrics: ServerMetrics) -> None:
    metrics.refused("token", "invalid_client", "expired")
    metrics.refused("token", "invalid_client", "expired")
    metrics.refused(None, "invalid_request", "not_found")
    metrics.handshake["timeout"].inc()
    assert value(metrics, "authz_refusals_total", endpoint="token", error="invalid_client", reason="expired") == 2
    assert value(metrics, "authz_refusals_total", endpoint="http", error="invalid_request", reason="not_found") == 1
    assert value(metrics, "authz_tls_handshakes_total", outcome="timeout") == 1


class FlakyStore:
    """A store whose ``find`` fails as told."""

    location = "memory"

    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.delay = 0.0
        self.finds = 0

    async def find(self, kind: str, record_id: str) -> dict[str, Any] | None:
        self.finds += 1
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return None

    async def upsert(self, kind: str, record_id: str, value: dict[str, Any], *,
                     expires_at: float | None = None) -> None:
        raise StorageError("cannot write the store at memory: disk full")


async def test_the_store_wrapper_times_calls_and_counts_store_failures_only(metrics: ServerMetrics) -> None:
    inner = FlakyStore()
    store = InstrumentedStore(inner, metrics)  # type: ignore[arg-type]
    assert await store.find("client", "x") is None
    inner.failure = CorruptRecord("client", "x", "is not valid JSON")
    with pytest.raises(CorruptRecord):
        await store.find("client", "x")
    inner.failure = StorageError("the store at memory is unreachable")
    with pytest.raises(StorageError):
        await store.find("client", "x")
    with pytest.raises(StorageError):
        await store.upsert("client", "x", {})
    assert value(metrics, "authz_store_operation_seconds_count", operation="find") == 3
    assert value(metrics, "authz_store_errors_total", operation="find") == 1
    assert value(metrics, "authz_store_errors_total", operation="upsert") == 1
    assert store.location == "memory"


async def test_readiness_is_cached_and_shared_by_concurrent_probes() -> None:
    store = FlakyStore()
    store.delay = 0.05
    readiness = Readiness({"store": store_check(store)}, cache_seconds=0.5)  # type: ignore[arg-type]
    results = await asyncio.gather(*(readiness.evaluate() for _ in range(20)))
    assert all(result["store"].ok for result in results)
    assert store.finds == 1
    await readiness.evaluate()
    assert store.finds == 1  # within the cache
    await asyncio.sleep(0.55)
    store.failure = StorageError("cannot read the store at memory: I/O error")
    failing = await readiness.evaluate()
    assert store.finds == 2
    assert failing["store"] == CheckResult(False, "cannot read the store at memory: I/O error")


async def test_a_store_that_does_not_answer_fails_the_check_in_time() -> None:
    store = FlakyStore()
    store.delay = 5.0
    started = asyncio.get_running_loop().time()
    result = await store_check(store, timeout=0.2)()  # type: ignore[arg-type]
    assert not result.ok and "did not answer within 0.2 s" in result.detail
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_check_that_raises_is_failing_not_an_error() -> None:
    async def broken() -> CheckResult:
        raise RuntimeError("bug")

    async def fine() -> CheckResult:
        return CheckResult(True, "fine")

    results = await Readiness({"fine": fine, "broken": broken}).evaluate()
    status, document = readiness_document(results, details=True)
    assert status == 503
    assert document == {"status": "not_ready", "checks": {
        "fine": {"status": "ok", "detail": "fine"},
        "broken": {"status": "failing", "detail": "the check failed: RuntimeError('bug')"}}}
    assert readiness_document(results, details=False)[1] == {"status": "not_ready", "checks": {
        "fine": {"status": "ok"}, "broken": {"status": "failing"}}}


async def test_stale_hard_fail_revocation_data_makes_the_server_not_ready() -> None:
    registry = RevocationDataRegistry()
    check = revocation_check(registry)
    assert (await check()) == CheckResult(True, "no revocation data sources")
    registry.updated("crl:https://ca.example/soft.crl", next_update=1.0, hard_fail=False)
    registry.updated("crl:https://ca.example/hard.crl", next_update=4e9, hard_fail=True)
    assert (await check()).ok  # a stale soft-fail source is reported, never fatal
    registry.updated("crl:https://ca.example/hard.crl", next_update=2.0, hard_fail=True)
    assert (await check()) == CheckResult(
        False, "hard-fail revocation data past its nextUpdate: crl:https://ca.example/hard.crl")


def test_revocation_data_reaches_the_gauges_and_sources_are_capped(metrics: ServerMetrics) -> None:
    registry = RevocationDataRegistry()
    registry.updated("ocsp:https://ocsp.example", next_update=2e9, hard_fail=True, updated_at=1.9e9)
    registry.subscribe(metrics.revocation_data)  # replays what is known
    registry.updated("crl:https://ca.example/ca.crl", next_update=3e9, hard_fail=False, updated_at=2.9e9)
    assert value(metrics, "authz_revocation_data_next_update_timestamp_seconds", source="ocsp:https://ocsp.example") \
        == 2e9
    assert value(metrics, "authz_revocation_data_hard_fail", source="ocsp:https://ocsp.example") == 1
    assert value(metrics, "authz_revocation_data_last_update_timestamp_seconds",
                 source="crl:https://ca.example/ca.crl") == 2.9e9
    for n in range(MAX_SOURCES + 10):
        registry.updated(f"crl:{n}", next_update=3e9, hard_fail=False)
    assert len(registry.sources()) == MAX_SOURCES


@pytest.mark.parametrize(("given", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)), ("localhost:1", ("localhost", 1)),
    ("off", None), ("", None)])
def test_metrics_listen_addresses(given: str, expected: tuple[str, int] | None) -> None:
    assert Settings(metrics_listen=given).metrics_address == expected


@pytest.mark.parametrize(("given", "problem"), [
    ("9464", "expected HOST:PORT"), ("127.0.0.1:0", "expected HOST:PORT"), ("::1:9464", "in brackets"),
    ("127.0.0.1:8443", "must not be the main port"), ("0.0.0.0:8443", "must not be the main port")])
def test_bad_metrics_listen_addresses_are_refused(given: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(metrics_listen=given)


def test_metrics_are_off_by_default_and_cost_nothing(tmp_path: Path) -> None:
    from authz.context import ServerContext

    state.ACTIVE = None
    context = ServerContext.build(Settings(data_dir=tmp_path))
    assert context.metrics is None and state.ACTIVE is None
    assert type(context.store).__name__ == "SQLiteRecordStore"  # no wrapper around it
