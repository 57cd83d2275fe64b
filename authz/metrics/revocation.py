"""How fresh the server's certificate revocation data is (CRLs, OCSP responses).

The code that fetches that data (CRL/OCSP checking of client certificates) reports each
successful fetch here; nothing else is needed from it:

    from authz.metrics import revocation_data_updated

    revocation_data_updated("crl:https://ca.example/ca.crl", next_update=crl.next_update_utc.timestamp(),
                            hard_fail=True)

``source`` names one set of data (a CRL distribution point, an OCSP responder): a metric
label, so it must come from the configuration, never from a client's certificate. At most
``MAX_SOURCES`` sources are kept; more are refused with a log line. From these reports come:

- the gauges ``authz_revocation_data_next_update_timestamp_seconds{source}`` and
  ``authz_revocation_data_last_update_timestamp_seconds{source}`` (the earliest over the
  worker processes), and ``authz_revocation_data_hard_fail{source}``;
- the ``revocation_data`` readiness check: a hard-fail source whose ``next_update`` has passed
  makes ``/readyz`` answer 503, since such a server refuses every certificate that source
  covers. Soft-fail sources are reported, never fatal.

The registry lives in each process whether metrics are on or not (``/readyz`` on the main port
uses it too), and costs nothing until something reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

__all__ = ["MAX_SOURCES", "REVOCATION_DATA", "RevocationData", "RevocationDataRegistry", "revocation_data_updated"]

log = structlog.get_logger("authz.metrics")

# Sources come from the configuration (a few CAs, each with a CRL or an OCSP responder); the
# cap keeps a bug that names sources after something variable from growing the metrics.
MAX_SOURCES = 64
MAX_SOURCE_CHARS = 300


@dataclass(frozen=True, slots=True)
class RevocationData:
    source: str
    next_update: float  # POSIX time after which the data must not be trusted any more
    updated_at: float  # POSIX time of the fetch
    hard_fail: bool  # whether certificates are refused when the data is unavailable


class RevocationDataRegistry:
    def __init__(self) -> None:
        self._sources: dict[str, RevocationData] = {}
        self._listeners: list[Callable[[RevocationData], None]] = []
        self._refusal_logged = False

    def updated(self, source: str, *, next_update: float, hard_fail: bool, updated_at: float | None = None) -> None:
        """Record a successful fetch of ``source``'s data, valid until ``next_update``."""
        if not source or len(source) > MAX_SOURCE_CHARS:
            raise ValueError(f"a revocation data source is 1-{MAX_SOURCE_CHARS} characters")
        if source not in self._sources and len(self._sources) >= MAX_SOURCES:
            if not self._refusal_logged:
                log.error("revocation_data_source_refused", source=source, max_sources=MAX_SOURCES,
                          detail="too many revocation data sources to report; this one is not monitored")
                self._refusal_logged = True
            return
        data = RevocationData(source, float(next_update), time.time() if updated_at is None else float(updated_at),
                              hard_fail)
        self._sources[source] = data
        for listener in self._listeners:
            listener(data)

    def sources(self) -> list[RevocationData]:
        return sorted(self._sources.values(), key=lambda data: data.source)

    def stale_hard_fail_sources(self, now: float | None = None) -> list[str]:
        """The hard-fail sources whose data has passed its ``next_update``."""
        moment = time.time() if now is None else now
        return [data.source for data in self.sources() if data.hard_fail and data.next_update <= moment]

    def subscribe(self, listener: Callable[[RevocationData], None]) -> None:
        """Call ``listener`` with every update from now on, and with what is known already."""
        self._listeners.append(listener)
        for data in self.sources():
            listener(data)

    def clear(self) -> None:
        """Forget every source and listener (tests)."""
        self._sources.clear()
        self._listeners.clear()
        self._refusal_logged = False


REVOCATION_DATA = RevocationDataRegistry()


def revocation_data_updated(source: str, *, next_update: float, hard_fail: bool,
                            updated_at: float | None = None) -> None:
    """``REVOCATION_DATA.updated``: see the module's documentation."""
    REVOCATION_DATA.updated(source, next_update=next_update, hard_fail=hard_fail, updated_at=updated_at)
