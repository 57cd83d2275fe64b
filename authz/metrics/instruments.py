"""The metrics a serving process updates, created once and bound to their label values ahead
of use, so that counting on the hot path is an attribute read and an ``inc``.

Label values never come from unauthenticated input: refusals are labelled by endpoint, error
and reason (all fixed in the code), issued tokens by the authenticated client, with a cap per
process (``--metrics-client-labels``) beyond which clients count as ``client_id="other"``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``authz serve`` with metrics on, whatever the number of
workers), prometheus-client keeps each value in a memory-mapped file of that directory, one
file per process and type, and the metrics listener (``authz.metrics.listener``) adds them
up. Without it (an application built in-process, in tests) the values live in ``registry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from authz.metrics import state
from authz.metrics.batch import LocalCounter, LocalHistogram
from authz.metrics.revocation import REVOCATION_DATA, RevocationData

__all__ = [
    "ENDPOINTS",
    "FLUSH_INTERVAL",
    "LATENCY_BUCKETS",
    "OTHER",
    "STORE_OPERATIONS",
    "ServerMetrics",
    "install",
    "multiprocess_mode",
]

OTHER = "other"
# Request duration per endpoint: these names, "health" and "other" (any other path). Few
# buckets, each a value kept per process: a token takes 1-5 ms on an idle server.
ENDPOINTS = ("token", "introspection", "revocation", "registration", "metadata", "jwks", "health", OTHER)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
STORE_OPERATIONS = ("find", "upsert", "insert", "destroy", "all", "entries", "dump")
# A store call takes under a millisecond (SQLite) to a few (Redis on the network); the
# store's own timeout is 2 s by default.
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5)
# Seconds a count on the token path may wait before a scrape sees it (authz.metrics.batch).
FLUSH_INTERVAL = 1.0
# "ok": a full handshake; "resumed": a session ticket accepted (--tls-resumption tickets).
HANDSHAKE_OUTCOMES = ("ok", "resumed", "tls_error", "timeout", "closed")
# Distinct (endpoint, error, reason) triples kept; they are fixed in the code, so this is only
# a guard against a future label that is not.
_MAX_REFUSAL_SERIES = 500


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps values in ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class ServerMetrics:
    def __init__(self, *, client_labels: int, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self._client_labels = client_labels
        self.tokens_issued = Counter(
            "authz_tokens_issued", "Access tokens issued, by client authentication method and client "
            "(client_id 'other' past the per-process cap of distinct clients).",
            ["method", "client_id"], registry=registry)
        self.refusals = Counter(
            "authz_refusals", "Requests refused, by endpoint ('http': before any endpoint), OAuth error and reason.",
            ["endpoint", "error", "reason"], registry=registry)
        self.request_duration = Histogram(
            "authz_request_duration_seconds", "Time from the request's arrival at the application to its answer sent.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.handshakes = Counter(
            "authz_tls_handshakes",
            "TLS handshakes on the main port, by outcome (ok: full, resumed, tls_error, timeout, closed).",
            ["outcome"], registry=registry)
        self.connections_open = Gauge(
            "authz_connections_open", "Connections open on the main port (handshaking or established), all workers.",
            registry=registry, multiprocess_mode="livesum")
        self.connection_limit_reached = Counter(
            "authz_connection_limit_reached", "Times a worker reached --max-connections and stopped accepting.",
            registry=registry)
        self.store_duration = Histogram(
            "authz_store_operation_seconds", "Duration of store operations (failed ones included).",
            ["operation"], buckets=STORE_BUCKETS, registry=registry)
        self.store_errors = Counter(
            "authz_store_errors", "Store operations that failed (the store unreachable, a disk full...).",
            ["operation"], registry=registry)
        self.signing_key_loaded = Gauge(
            "authz_signing_key_loaded", "Worker processes that have loaded the signing key (are serving).",
            registry=registry, multiprocess_mode="livesum")
        self.revocation_next_update = Gauge(
            "authz_revocation_data_next_update_timestamp_seconds",
            "nextUpdate of each source of revocation data (CRL, OCSP), the earliest over the workers.",
            ["source"], registry=registry, multiprocess_mode="livemin")
        self.revocation_last_update = Gauge(
            "authz_revocation_data_last_update_timestamp_seconds",
            "Last successful fetch of each source of revocation data, the oldest over the workers.",
            ["source"], registry=registry, multiprocess_mode="livemin")
        self.revocation_hard_fail = Gauge(
            "authz_revocation_data_hard_fail", "1 if certificates are refused when this source's data is stale.",
            ["source"], registry=registry, multiprocess_mode="livemax")

        # Bound now: the series exist (at zero) from the start, and the hot path never builds
        # labels. Request durations and issued tokens are counted locally and flushed once a
        # second (authz.metrics.batch); the rest is rare enough to be written at once.
        self.latency = {endpoint: LocalHistogram(self.request_duration.labels(endpoint)) for endpoint in ENDPOINTS}
        self.handshake = {outcome: self.handshakes.labels(outcome) for outcome in HANDSHAKE_OUTCOMES}
        self.store_latency = {op: self.store_duration.labels(op) for op in STORE_OPERATIONS}
        self.store_error = {op: self.store_errors.labels(op) for op in STORE_OPERATIONS}
        self._issued: dict[tuple[str, str], LocalCounter] = {}
        self._issued_other: dict[str, LocalCounter] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._refused: dict[tuple[str, str, str], Any] = {}

    def token_issued(self, method: str, client_id: str) -> None:
        """Count a token for an authenticated client."""
        child = self._issued.get((method, client_id))
        if child is None:
            child = self._bind_client(method, client_id)
        child.inc()

    def _bind_client(self, method: str, client_id: str) -> LocalCounter:
        if len(self._issued) < self._client_labels:
            child = self._issued[(method, client_id)] = LocalCounter(self.tokens_issued.labels(method, client_id))
            return child
        # Past the cap, the client is not remembered either: the map stays bounded too.
        other = self._issued_other.get(method)
        if other is None:
            other = self._issued_other[method] = LocalCounter(self.tokens_issued.labels(method, OTHER))
        return other

    def flush(self) -> None:
        """Add what the hot path counted to the shared values."""
        for histogram in self.latency.values():
            histogram.flush()
        for counter in (*self._issued.values(), *self._issued_other.values()):
            counter.flush()

    def start(self) -> None:
        """Flush every ``FLUSH_INTERVAL`` seconds on the running loop, until ``stop``."""
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_periodically(),
                                                                    name="authz-metrics-flush")

    async def stop(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
            self._flushing = None
        self.flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()

    def refused(self, endpoint: str | None, error: str, reason: str) -> None:
        key = (endpoint or "http", error, reason)
        child = self._refused.get(key)
        if child is None:
            if len(self._refused) >= _MAX_REFUSAL_SERIES:
                key = (key[0], key[1], OTHER)
            child = self._refused.get(key) or self.refusals.labels(*key)
            self._refused[key] = child
        child.inc()

    def revocation_data(self, data: RevocationData) -> None:
        self.revocation_next_update.labels(data.source).set(data.next_update)
        self.revocation_last_update.labels(data.source).set(data.updated_at)
        self.revocation_hard_fail.labels(data.source).set(1 if data.hard_fail else 0)


def install(client_labels: int) -> ServerMetrics:
    """Create this process's metrics and make them ``state.ACTIVE``.

    Under ``authz serve`` the values go to the multiprocess directory; a process that has that
    variable but imported prometheus-client before it was set would count into memory nobody
    reads, so that is refused here rather than discovered as empty dashboards."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not multiprocess_mode():
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
                           "its values would not reach the metrics listener")
    metrics = ServerMetrics(client_labels=client_labels,
                            registry=None if multiprocess_mode() else CollectorRegistry(auto_describe=True))
    REVOCATION_DATA.subscribe(metrics.revocation_data)
    state.ACTIVE = metrics
    return metrics
