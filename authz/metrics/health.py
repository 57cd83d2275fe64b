"""``/healthz`` and ``/readyz``: what systemd, HAProxy and Kubernetes probes ask.

- ``/healthz``: the process answers (liveness). On the main port that also says its event loop
  turns; it checks nothing else, so that a store outage never gets a healthy process
  restarted.
- ``/readyz``: whether this server can serve tokens now (readiness): the store answers a
  cheap read within ``STORE_CHECK_TIMEOUT``, the signing key is loaded, and no hard-fail
  source of revocation data is stale. 200 ``{"status": "ready", "checks": {...}}`` or 503
  ``{"status": "not_ready", ...}`` naming each check and its status.

The evaluation is cached for ``CACHE_SECONDS`` and shared by concurrent probes: however often
they come, the store sees at most one probe read per second per process. The details of a
failure (a file name, a Redis address) go to the metrics listener, which is private, and to
the log; the main port names the failing check only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from authz.metrics.revocation import RevocationDataRegistry
from authz.storage.base import RecordStore, StorageError

__all__ = [
    "CACHE_SECONDS",
    "HEALTH_HEADERS",
    "CheckResult",
    "Readiness",
    "health_document",
    "readiness_document",
    "revocation_check",
    "store_check",
]

log = structlog.get_logger("authz.health")

CACHE_SECONDS = 1.0
# A store read takes milliseconds; a probe must answer well within its own timeout (HAProxy's
# and Kubernetes' default to 1-2 s).
STORE_CHECK_TIMEOUT = 1.0
# A record that never exists: reading it exercises the same path as a client lookup.
PROBE_KIND, PROBE_ID = "readiness", "probe"
HEALTH_HEADERS = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str = ""


Check = Callable[[], Awaitable[CheckResult]]


class Readiness:
    def __init__(self, checks: Mapping[str, Check], *, cache_seconds: float = CACHE_SECONDS) -> None:
        self._checks = dict(checks)
        self._cache_seconds = cache_seconds
        self._results: dict[str, CheckResult] | None = None
        self._evaluated_at = 0.0
        self._running: asyncio.Task[dict[str, CheckResult]] | None = None
        self._failing: frozenset[str] = frozenset()

    async def evaluate(self) -> dict[str, CheckResult]:
        if self._results is not None and time.monotonic() - self._evaluated_at < self._cache_seconds:
            return self._results
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._run())
        # Shielded: a probe that gives up does not cancel the evaluation others wait for.
        return await asyncio.shield(self._running)

    async def _run(self) -> dict[str, CheckResult]:
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._checks[name]() for name in names), return_exceptions=True)
        results: dict[str, CheckResult] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                outcome = CheckResult(False, f"the check failed: {outcome!r}")
            results[name] = outcome
        self._log_changes(results)
        self._results, self._evaluated_at = results, time.monotonic()
        return results

    def _log_changes(self, results: dict[str, CheckResult]) -> None:
        """One line when a check starts failing, one when it passes again; not one per probe."""
        failing = frozenset(name for name, result in results.items() if not result.ok)
        for name in sorted(failing - self._failing):
            log.warning("readiness_check_failing", check=name, detail=results[name].detail)
        for name in sorted(self._failing - failing):
            log.info("readiness_check_passing", check=name)
        self._failing = failing


def readiness_document(results: Mapping[str, CheckResult], *, details: bool) -> tuple[int, dict[str, Any]]:
    """The status code and JSON body of ``/readyz``."""
    ready = all(result.ok for result in results.values())
    checks: dict[str, Any] = {}
    for name, result in results.items():
        entry: dict[str, Any] = {"status": "ok" if result.ok else "failing"}
        if details and result.detail:
            entry["detail"] = result.detail
        checks[name] = entry
    return (200 if ready else 503), {"status": "ready" if ready else "not_ready", "checks": checks}


def health_document() -> dict[str, Any]:
    return {"status": "alive"}


def store_check(store: RecordStore, timeout: float = STORE_CHECK_TIMEOUT) -> Check:
    async def check() -> CheckResult:
        try:
            await asyncio.wait_for(store.find(PROBE_KIND, PROBE_ID), timeout)
        except TimeoutError:
            return CheckResult(False, f"the store did not answer within {timeout:g} s ({store.location})")
        except StorageError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, store.location)

    return check


def revocation_check(registry: RevocationDataRegistry) -> Check:
    async def check() -> CheckResult:
        return _revocation_result(registry.stale_hard_fail_sources(), len(registry.sources()))

    return check


def _revocation_result(stale: list[str], sources: int) -> CheckResult:
    if stale:
        return CheckResult(False, "hard-fail revocation data past its nextUpdate: " + ", ".join(stale))
    return CheckResult(True, f"{sources} source(s) fresh" if sources else "no revocation data sources")


def revocation_result_from(next_updates: Mapping[str, float], hard_fail: Mapping[str, bool],
                           now: float | None = None) -> CheckResult:
    """The check from published gauges (the metrics listener's view of every worker)."""
    moment = time.time() if now is None else now
    stale = sorted(source for source, next_update in next_updates.items()
                   if hard_fail.get(source, False) and next_update <= moment)
    return _revocation_result(stale, len(next_updates))
