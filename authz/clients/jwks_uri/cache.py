"""The certificates of ``jwks_uri`` clients, as last fetched: one entry per client and URI.

Rules, each there because a token request is unauthenticated until it succeeds:

- the presented certificate is in the set, and the set is younger than its max age: no fetch;
- otherwise (first use, a set past its max age, a certificate the set lacks: the client may
  have rotated): fetch, but at most once per ``refresh_cooldown`` per entry, counted from the
  last attempt, failed or not. Without the cooldown, every request with a made-up certificate
  would make the server fetch; with it, the fetches one client's name can cause are bounded;
- concurrent requests share one fetch (single flight), and wait at most as long as the fetch
  may take (the fetcher's time limit);
- a failed fetch keeps the last good set in use, and says so in its log line;
- entries are bounded (least recently used first out), and an entry still cooling down is
  never evicted: forgetting it would forget its cooldown, and a client cycling through many
  client_ids could then make the server fetch on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from authz.clients.jwks_uri.fetcher import FetchedKeySet, JwksFetchFailed

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_REFRESH_COOLDOWN", "FetchedCertificates", "KeySetFetcher"]

log = structlog.get_logger("authz.clients.jwks_uri")

DEFAULT_REFRESH_COOLDOWN = 60.0
# jwks_uri clients in use at once; each entry holds at most MAX_KEYS certificates.
DEFAULT_MAX_ENTRIES = 1000


class KeySetFetcher(Protocol):
    async def fetch(self, uri: str) -> FetchedKeySet: ...


@dataclass
class _Entry:
    certificates: frozenset[bytes] = frozenset()  # the last good set; empty: none yet
    expires_at: float = 0.0
    attempted_at: float | None = None
    in_flight: asyncio.Task[None] | None = field(default=None, repr=False)


class FetchedCertificates:
    def __init__(
        self,
        fetcher: KeySetFetcher,
        *,
        refresh_cooldown: float = DEFAULT_REFRESH_COOLDOWN,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh_cooldown <= 0 or max_entries < 1:
            raise ValueError("refresh_cooldown must be positive and max_entries at least 1")
        self._fetcher = fetcher
        self._cooldown = refresh_cooldown
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    async def certificates(self, client_id: str, uri: str, presented: bytes | None) -> frozenset[bytes]:
        """The client's certificates (DER) to check ``presented`` (a DER leaf, None if the request
        has no usable certificate) against; empty if no set could be fetched yet."""
        key = (client_id, uri)
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None:
            self._entries.move_to_end(key)
            if entry.certificates and now < entry.expires_at and (presented is None or presented in entry.certificates):
                return entry.certificates
        if presented is None:
            # Nothing to decide with: the request is refused for its certificate, fetch or not.
            return entry.certificates if entry is not None else frozenset()
        if entry is None:
            entry = self._admit(key)
            if entry is None:
                log.warning("jwks_uri_refresh_skipped", client_id=client_id, uri=uri, reason="cache_full",
                            detail=f"{self._max_entries} jwks_uri clients fetched within the last "
                                   f"{self._cooldown:g} s")
                return frozenset()
        task = entry.in_flight
        if task is None:
            if self._cooling_down(entry, now):
                assert entry.attempted_at is not None
                log.info("jwks_uri_refresh_skipped", client_id=client_id, uri=uri, reason="cooldown",
                         retry_in=round(self._cooldown - (now - entry.attempted_at), 1),
                         cached_keys=len(entry.certificates))
                return entry.certificates
            entry.attempted_at = now
            task = entry.in_flight = asyncio.get_running_loop().create_task(self._refresh(entry, client_id, uri))
        # shield: a request that goes away (its client disconnected) must not cancel the fetch
        # the others wait for. The wait is bounded by the fetcher's time limit.
        await asyncio.shield(task)
        return entry.certificates

    def _cooling_down(self, entry: _Entry, now: float) -> bool:
        return entry.attempted_at is not None and now - entry.attempted_at < self._cooldown

    def _admit(self, key: tuple[str, str]) -> _Entry | None:
        if len(self._entries) >= self._max_entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.in_flight is not None or self._cooling_down(oldest, self._clock()):
                # Every entry was used within the cooldown: evicting one would forget its
                # cooldown. Better to refuse this client's keys until one is old enough.
                return None
            del self._entries[oldest_key]
        entry = self._entries[key] = _Entry()
        return entry

    async def _refresh(self, entry: _Entry, client_id: str, uri: str) -> None:
        started = time.perf_counter()
        try:
            fetched = await self._fetcher.fetch(uri)
        except JwksFetchFailed as exc:
            self._failed(entry, client_id, uri, started, exc.reason, exc.detail)
        except Exception as exc:  # a bug, not the URI's fault: the requests still get an answer
            log.exception("jwks_uri_fetch_failed", client_id=client_id, uri=uri, reason="unexpected_error",
                          detail=f"{type(exc).__name__}: {exc}", ms=_ms_since(started),
                          kept_keys=len(entry.certificates))
        else:
            entry.certificates = fetched.certificates
            entry.expires_at = self._clock() + fetched.max_age
            log.info("jwks_uri_fetched", client_id=client_id, uri=uri, keys=fetched.keys,
                     certificates=len(fetched.certificates), status=fetched.status, ms=_ms_since(started),
                     max_age=fetched.max_age, address=fetched.address)
        finally:
            entry.in_flight = None

    def _failed(self, entry: _Entry, client_id: str, uri: str, started: float, reason: str, detail: str) -> None:
        # The last good set stays in use (its max age passed or not): a JWKS host being down
        # must not lock out a client whose certificate has not changed.
        log.warning("jwks_uri_fetch_failed", client_id=client_id, uri=uri, reason=reason, detail=detail,
                    ms=_ms_since(started), kept_keys=len(entry.certificates), next_attempt_after=self._cooldown)

    async def aclose(self) -> None:
        """Cancel fetches still running (at shutdown)."""
        tasks = [entry.in_flight for entry in self._entries.values() if entry.in_flight is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __len__(self) -> int:
        return len(self._entries)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
