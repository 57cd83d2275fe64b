"""The metrics listener: ``/metrics``, ``/healthz`` and ``/readyz`` in plain HTTP on their own
address (``--metrics-listen``), never on the public mutual-TLS port.

It runs in the process ``authz serve`` starts, on a thread with an event loop of its own,
whatever the number of workers: with ``--workers N`` that process is uvicorn's supervisor,
which serves no requests and outlives the workers it restarts; with one worker it is the
serving process, and the thread sleeps in ``epoll`` between scrapes. Either way it reads
what every worker wrote into the multiprocess directory (prometheus-client's multiprocess
mode), so the counts are the sums over the workers, including workers that have since died.

Next to the workers' metrics it exposes what is known without them: the expiry of the server
certificate, of each trust anchor and intermediate (from the settings, at start-up), and of
each registered self-signed client certificate (read from the store, again when the store's
change feed reports a change to a client). ``/readyz`` checks the store itself (its own
connection, a cheap read, cached for a second), the workers' published signing-key state and
revocation data.

The HTTP side is deliberately small: one request per connection (``Connection: close``), a
head of at most ``_HEAD_LIMIT`` bytes read within ``_READ_TIMEOUT``, at most
``_MAX_CONNECTIONS`` at once. Scrapers and probes need no more, and nothing more can be
asked of it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import glob
import hashlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from authz.certificates.thumbprint import x5t_s256
from authz.metrics.health import (
    HEALTH_HEADERS,
    CheckResult,
    Readiness,
    health_document,
    readiness_document,
    revocation_result_from,
    store_check,
)
from authz.settings import Settings
from authz.storage.base import RecordStore, StorageError
from authz.storage.changes import ChangeFeed

__all__ = ["MetricsListener"]

log = structlog.get_logger("authz.metrics")

_HEAD_LIMIT = 16 * 1024
_READ_TIMEOUT = 5.0
_WRITE_TIMEOUT = 10.0
_MAX_CONNECTIONS = 32
_START_TIMEOUT = 15.0
_STORE_OPEN_TIMEOUT = 5.0
# Registered self-signed certificates exported, the ones that expire first: registrations
# bound the series, and this bounds them again should there be very many.
MAX_CLIENT_CERTIFICATE_SERIES = 1000
_CLIENT_POLL_INTERVAL = 5.0
# Without a working change feed, the client certificates are read again at most this often.
_CLIENT_REFRESH_INTERVAL = 10.0
# And with one, at least this often (a change missed while the feed reconnected).
_CLIENT_FULL_REFRESH_INTERVAL = 300.0
_SELF_SIGNED = "self_signed_tls_client_auth"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


@dataclass(frozen=True, slots=True)
class _Expiry:
    labels: tuple[str, ...]
    not_after: float


def _not_after(certificate: x509.Certificate) -> float:
    return certificate.not_valid_after_utc.timestamp()


def _ca_expiries(paths: Iterable[Path]) -> list[_Expiry]:
    expiries: list[_Expiry] = []
    for path in paths:
        for certificate in x509.load_pem_x509_certificates(Path(path).read_bytes()):
            der = certificate.public_bytes(Encoding.DER)
            expiries.append(_Expiry((certificate.subject.rfc4514_string(), x5t_s256(der)), _not_after(certificate)))
    return expiries


class _ClientCertificates:
    """The registered self-signed certificates and their expiry, re-read on demand."""

    def __init__(self) -> None:
        self.expiries: tuple[_Expiry, ...] = ()
        self.dirty = True
        self.read_at = -_CLIENT_FULL_REFRESH_INTERVAL
        self.truncated = False
        self._parsed: dict[bytes, float] = {}  # SHA-256 of a DER -> notAfter, across reads

    def parse(self, entries: list[tuple[str, Any]]) -> None:
        """(In a thread: certificates are parsed.)"""
        parsed: dict[bytes, float] = {}
        expiries: list[_Expiry] = []
        for client_id, record in entries:
            if not isinstance(record, dict) or record.get("token_endpoint_auth_method") != _SELF_SIGNED:
                continue
            keys = record.get("jwks", {}).get("keys") if isinstance(record.get("jwks"), dict) else None
            for jwk in keys if isinstance(keys, list) else ():
                chain = jwk.get("x5c") if isinstance(jwk, dict) else None
                if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
                    continue
                try:
                    der = base64.b64decode(chain[0], validate=True)
                except (binascii.Error, ValueError):
                    continue
                digest = hashlib.sha256(der).digest()
                not_after = self._parsed.get(digest) or parsed.get(digest)
                if not_after is None:
                    try:
                        not_after = _not_after(x509.load_der_x509_certificate(der))
                    except ValueError:
                        continue  # an unusable registration: the workers log it when it is used
                parsed[digest] = not_after
                thumbprint = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
                expiries.append(_Expiry((client_id, thumbprint), not_after))
        expiries.sort(key=lambda expiry: (expiry.not_after, expiry.labels))
        truncated = len(expiries) > MAX_CLIENT_CERTIFICATE_SERIES
        if truncated and not self.truncated:
            log.warning("client_certificate_expiry_truncated", registered=len(expiries),
                        exported=MAX_CLIENT_CERTIFICATE_SERIES, detail="only the certificates that expire first are "
                        "exported as authz_client_certificate_not_after_timestamp_seconds")
        self.truncated = truncated
        self._parsed = parsed
        self.expiries = tuple(expiries[:MAX_CLIENT_CERTIFICATE_SERIES])


def _gauge(name: str, documentation: str, labels: tuple[str, ...], expiries: Iterable[_Expiry]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for expiry in expiries:
        family.add_metric(list(expiry.labels), expiry.not_after)
    return family


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A worker that exited but was not reaped yet is no longer a worker.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split(" ", 1)[0] not in ("Z", "X")
    return True


class _Collector:
    """What ``/metrics`` exposes (``collect`` runs in a thread: it reads files)."""

    def __init__(self, listener: MetricsListener) -> None:
        self._listener = listener

    def collect(self) -> Iterator[Metric]:
        listener = self._listener
        yield from listener.worker_families()
        if listener.server_certificate_not_after is not None:
            yield GaugeMetricFamily(
                "authz_server_certificate_not_after_timestamp_seconds",
                "notAfter of the server certificate (the earliest in its file's chain), as Unix time.",
                value=listener.server_certificate_not_after)
        yield _gauge("authz_trust_anchor_not_after_timestamp_seconds",
                     "notAfter of each trust anchor (--trust-anchor), as Unix time.",
                     ("subject", "x5t_s256"), listener.trust_anchors)
        yield _gauge("authz_intermediate_not_after_timestamp_seconds",
                     "notAfter of each configured intermediate CA (--intermediate), as Unix time.",
                     ("subject", "x5t_s256"), listener.intermediates)
        yield _gauge("authz_client_certificate_not_after_timestamp_seconds",
                     "notAfter of each registered self-signed client certificate, as Unix time "
                     f"(the {MAX_CLIENT_CERTIFICATE_SERIES} that expire first).",
                     ("client_id", "x5t_s256"), listener.clients.expiries)
        yield GaugeMetricFamily("authz_workers_configured", "Worker processes the server runs (--workers).",
                                value=listener.settings.workers)


class MetricsListener:
    def __init__(self, settings: Settings, directory: Path) -> None:
        address = settings.metrics_address
        if address is None:
            raise ValueError("metrics are off (no --metrics-listen)")
        self.settings = settings
        self.directory = directory
        self.host, self.port = address
        # From files the start-up already checked; the server never reloads them.
        self.server_certificate_not_after = (
            min(_not_after(c) for c in x509.load_pem_x509_certificates(Path(settings.tls_cert).read_bytes()))
            if settings.tls_cert is not None else None)
        self.trust_anchors = _ca_expiries(settings.trust_anchors)
        self.intermediates = _ca_expiries(settings.intermediates)
        self.clients = _ClientCertificates()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._store: RecordStore | None = None
        self._feed: ChangeFeed | None = None
        self._store_lock: asyncio.Lock | None = None
        self._readiness = Readiness({"store": self._check_store, "signing_key": self._check_workers,
                                     "revocation_data": self._check_revocation_data})
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._connections = 0

    # --- life cycle (called from the main thread) ------------------------------------------

    def start(self) -> None:
        """Bind (``OSError`` if the address is taken) and serve on a thread of its own."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._socket = listener
        self._thread = threading.Thread(target=self._run, name="authz-metrics", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT) or self._failure is not None:
            raise RuntimeError(f"the metrics listener did not start: {self._failure!r}")
        log.info("metrics_listening", address=f"http://{_url_host(self.host)}:{self.port}",
                 paths=["/metrics", "/healthz", "/readyz"], multiprocess_directory=str(self.directory))

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended already
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()

    def remove_directory(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(), or logged once serving
            self._failure = exc
            self._started.set()
            log.error("metrics_listener_failed", error=repr(exc), exc_info=exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._store_lock = asyncio.Lock()
        assert self._socket is not None
        server = await asyncio.start_server(self._serve, sock=self._socket, limit=_HEAD_LIMIT)
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            await self._close_store()

    # --- the store (on the listener's loop) --------------------------------------------------

    async def _open_store(self) -> RecordStore:
        assert self._store_lock is not None
        async with self._store_lock:
            if self._store is None:
                store = self.settings.store_config().build()
                await asyncio.wait_for(store.open(), _STORE_OPEN_TIMEOUT)
                self._store = store
                try:
                    # Expiry dates need no second-by-second freshness: a slower poll (SQLite)
                    # wakes this thread, in a serving process with one worker, less often.
                    feed = store.change_feed(poll_interval=max(self.settings.store_poll_interval,
                                                               _CLIENT_POLL_INTERVAL),
                                             max_stale=self.settings.store_max_stale)
                    feed.on_change("client", self._clients_changed)
                    await feed.start()
                    self._feed = feed
                except (StorageError, TimeoutError) as exc:
                    # Without a feed the certificates are re-read every _CLIENT_REFRESH_INTERVAL.
                    log.warning("metrics_change_feed_unavailable", error=str(exc))
            return self._store

    def _clients_changed(self, client_id: str | None) -> None:
        self.clients.dirty = True

    async def _close_store(self) -> None:
        if self._feed is not None:
            await self._feed.stop()
            self._feed = None
        if self._store is not None:
            with contextlib.suppress(StorageError):
                await self._store.close()
            self._store = None

    async def _check_store(self) -> CheckResult:
        try:
            store = await self._open_store()
        except TimeoutError:
            return CheckResult(False, f"the store could not be opened within {_STORE_OPEN_TIMEOUT:g} s")
        except StorageError as exc:
            return CheckResult(False, str(exc))
        return await store_check(store)()

    async def _refresh_clients(self) -> None:
        clients = self.clients
        feed_current = self._feed is not None and self._feed.current()
        now = time.monotonic()
        since = now - clients.read_at
        due = since >= _CLIENT_FULL_REFRESH_INTERVAL or (
            clients.dirty and (feed_current or since >= _CLIENT_REFRESH_INTERVAL))
        if not due:
            return
        try:
            store = await self._open_store()
            clients.dirty = False  # a change announced while reading makes it dirty again
            entries = await store.entries("client")
        except (StorageError, TimeoutError) as exc:
            clients.dirty = True
            log.warning("client_certificate_expiry_not_refreshed", error=str(exc))
            return
        await asyncio.to_thread(clients.parse, entries)
        clients.read_at = now

    # --- the workers' metrics ------------------------------------------------------------------

    def worker_families(self) -> list[Metric]:
        """Every worker's metrics, summed (or min/max for gauges) by prometheus-client; the
        files of live-gauges of workers that have exited go first (uvicorn restarts workers
        under new pids). Blocking: reads files."""
        for path in glob.glob(os.path.join(self.directory, "gauge_live*.db")):
            match = _LIVE_GAUGE_FILE.match(os.path.basename(path))
            if match and not _pid_alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), str(self.directory))  # type: ignore[no-untyped-call]
        collector = MultiProcessCollector(None, str(self.directory))  # type: ignore[no-untyped-call]
        return list(collector.collect())  # type: ignore[no-untyped-call]

    def _published(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in self.worker_families():
            for sample in family.samples:
                values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
        return values

    async def _check_workers(self) -> CheckResult:
        published = await asyncio.to_thread(self._published)
        loaded = int(sum(published.get("authz_signing_key_loaded", {}).values()))
        detail = f"{loaded} of {self.settings.workers} worker process(es) have loaded the signing key"
        # One serving worker serves the port: the others are being (re)started by uvicorn.
        return CheckResult(loaded >= 1, detail)

    async def _check_revocation_data(self) -> CheckResult:
        published = await asyncio.to_thread(self._published)
        next_updates = {dict(labels)["source"]: value for labels, value in
                        published.get("authz_revocation_data_next_update_timestamp_seconds", {}).items()}
        hard_fail = {dict(labels)["source"]: value >= 1 for labels, value in
                     published.get("authz_revocation_data_hard_fail", {}).items()}
        return revocation_result_from(next_updates, hard_fail)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            if self._connections > _MAX_CONNECTIONS:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, headers, body = await self._answer(head)
            head_lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in headers),
                          f"Content-Length: {len(body)}", "Connection: close", "", ""]
            # HEAD (HAProxy's checks can use it): the GET's head, without its body.
            writer.write("\r\n".join(head_lines).encode("latin-1") + (b"" if head.startswith(b"HEAD ") else body))
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(writer.drain(), _WRITE_TIMEOUT)
        finally:
            self._connections -= 1
            writer.close()

    async def _answer(self, head: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _json(400, {"error": "invalid_request", "error_description": "not an HTTP/1.x request"})
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if path not in ("/metrics", "/healthz", "/readyz"):
            return _json(404, {"error": "not_found", "error_description": "this listener serves /metrics, /healthz "
                                                                          "and /readyz"})
        if method not in ("GET", "HEAD"):
            status, headers, body = _json(405, {"error": "invalid_request", "error_description": "use GET"})
            return status, [*headers, ("Allow", "GET, HEAD")], body
        if path == "/healthz":
            status, headers, body = _json(200, health_document())
        elif path == "/readyz":
            status, document = readiness_document(await self._readiness.evaluate(), details=True)
            status, headers, body = _json(status, document)
        else:
            accept = next((line.split(":", 1)[1].strip() for line in lines[1:]
                           if line.lower().startswith("accept:")), "")
            await self._refresh_clients()
            encoder, content_type = choose_encoder(accept)
            body = await asyncio.to_thread(encoder, self.registry)
            status, headers = 200, [("Content-Type", content_type), ("Cache-Control", "no-store")]
        return status, headers, body


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


def _json(status: int, document: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json"), *HEALTH_HEADERS.items()], orjson.dumps(document)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
