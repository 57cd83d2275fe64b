"""The cache of jwks_uri certificate sets (authz.clients.jwks_uri.cache), with a fetcher and a
clock under the test's control: when it fetches, when it may not, what it keeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from authz.clients.jwks_uri import cache as cache_module
from authz.clients.jwks_uri.cache import FetchedCertificates
from authz.clients.jwks_uri.fetcher import FetchedKeySet, JwksFetchFailed

URI = "https://keys.example/jwks"
A, B, C = b"certificate A", b"certificate B", b"certificate C"
COOLDOWN = 60.0
MAX_AGE = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Publisher:
    """Serves ``published`` (or raises ``failure``), once ``gate`` is open; counts fetches."""

    def __init__(self, *published: bytes) -> None:
        self.published: frozenset[bytes] = frozenset(published)
        self.failure: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.fetches: list[str] = []

    async def fetch(self, uri: str) -> FetchedKeySet:
        self.fetches.append(uri)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return FetchedKeySet(self.published, len(self.published), 200, MAX_AGE, "192.0.2.1")


class Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def _record(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, "level": level, **fields})

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == name]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(cache_module, "log", recorder)
    return recorder


@pytest.fixture
def clock() -> Clock:
    return Clock()


def certificates(publisher: Publisher, clock: Clock, **options: Any) -> FetchedCertificates:
    return FetchedCertificates(publisher, refresh_cooldown=COOLDOWN, clock=clock, **options)


async def test_the_first_request_fetches_and_the_next_ones_use_the_set(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A, B)
    cache = certificates(publisher, clock)
    assert await cache.certificates("c", URI, A) == {A, B}
    clock.now += 100
    assert await cache.certificates("c", URI, B) == {A, B}
    assert publisher.fetches == [URI]
    [fetched] = log.events("jwks_uri_fetched")
    assert {k: fetched[k] for k in ("client_id", "uri", "keys", "status", "max_age", "address")} == {
        "client_id": "c", "uri": URI, "keys": 2, "status": 200, "max_age": MAX_AGE, "address": "192.0.2.1"}
    assert isinstance(fetched["ms"], float)


async def test_unknown_certificates_refresh_at_most_once_per_cooldown(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock)
    await cache.certificates("c", URI, A)
    clock.now += 10
    for n in range(100):  # made-up certificates: one fetch per cooldown at most, whatever their number
        assert await cache.certificates("c", URI, b"random %d" % n) == {A}
    assert len(publisher.fetches) == 1
    skipped = log.events("jwks_uri_refresh_skipped")
    assert len(skipped) == 100
    assert {k: skipped[0][k] for k in ("client_id", "uri", "reason", "retry_in", "cached_keys")} == {
        "client_id": "c", "uri": URI, "reason": "cooldown", "retry_in": 50.0, "cached_keys": 1}
    clock.now += 50  # the cooldown since the last attempt is over
    await cache.certificates("c", URI, b"random again")
    assert len(publisher.fetches) == 2
    clock.now += 1
    await cache.certificates("c", URI, b"and again")
    assert len(publisher.fetches) == 2


async def test_a_rotated_certificate_is_accepted_after_the_refresh(clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock)
    await cache.certificates("c", URI, A)
    publisher.published = frozenset({B})  # the client rotates A out, B in
    clock.now += COOLDOWN
    assert await cache.certificates("c", URI, B) == {B}
    # A is no longer in the set: the refresh it asks for is within the cooldown, so it gets the
    # set as it is, without A (client authentication refuses it).
    assert await cache.certificates("c", URI, A) == {B}
    assert len(publisher.fetches) == 2


async def test_concurrent_requests_share_one_fetch(clock: Clock) -> None:
    publisher = Publisher(A)
    publisher.gate.clear()
    cache = certificates(publisher, clock)
    waiting = [asyncio.ensure_future(cache.certificates("c", URI, A)) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert len(publisher.fetches) == 1 and not any(w.done() for w in waiting)
    publisher.gate.set()
    assert await asyncio.gather(*waiting) == [frozenset({A})] * 50
    assert len(publisher.fetches) == 1


async def test_a_failed_fetch_keeps_the_last_good_set(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock)
    await cache.certificates("c", URI, A)
    publisher.failure = JwksFetchFailed("http_status", "HTTP 503")
    clock.now += COOLDOWN
    assert await cache.certificates("c", URI, C) == {A}  # C unknown; the refresh fails
    [failed] = log.events("jwks_uri_fetch_failed")
    assert {k: failed[k] for k in ("level", "client_id", "uri", "reason", "detail", "kept_keys")} == {
        "level": "warning", "client_id": "c", "uri": URI, "reason": "http_status", "detail": "HTTP 503",
        "kept_keys": 1}
    assert await cache.certificates("c", URI, A) == {A}  # A still authenticates
    clock.now += MAX_AGE  # past the max age: refreshed (it fails again), and A still in use
    assert await cache.certificates("c", URI, A) == {A}
    assert len(publisher.fetches) == 3 and len(log.events("jwks_uri_fetch_failed")) == 2


async def test_a_set_past_its_max_age_is_fetched_again(clock: Clock) -> None:
    publisher = Publisher(A, B)
    cache = certificates(publisher, clock)
    await cache.certificates("c", URI, A)
    publisher.published = frozenset({A})  # B withdrawn (compromised, say)
    clock.now += MAX_AGE - 1
    assert await cache.certificates("c", URI, B) == {A, B}  # not yet: B is in the set
    clock.now += 1
    assert await cache.certificates("c", URI, B) == {A}
    assert len(publisher.fetches) == 2


async def test_a_client_whose_set_never_arrived_gets_an_empty_set(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A)
    publisher.failure = JwksFetchFailed("timeout", "no complete answer within 5 s")
    cache = certificates(publisher, clock)
    assert await cache.certificates("c", URI, A) == frozenset()
    assert await cache.certificates("c", URI, A) == frozenset()  # within the cooldown: no second fetch
    assert len(publisher.fetches) == 1
    assert log.events("jwks_uri_fetch_failed")[0]["kept_keys"] == 0


async def test_no_certificate_no_fetch(clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock)
    assert await cache.certificates("c", URI, None) == frozenset()
    assert publisher.fetches == [] and len(cache) == 0


async def test_each_client_and_uri_has_its_own_entry(clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock)
    await cache.certificates("c1", URI, A)
    await cache.certificates("c2", URI, A)  # another client: its own cooldown
    await cache.certificates("c1", URI + "?v=2", A)  # a changed registration starts afresh
    assert len(publisher.fetches) == 3 and len(cache) == 3


async def test_entries_are_bounded_without_forgetting_a_cooldown(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A)
    cache = certificates(publisher, clock, max_entries=2)
    await cache.certificates("c1", URI, A)
    await cache.certificates("c2", URI, A)
    clock.now += 10
    # Evicting c1 now would forget that it fetched 10 s ago; so c3 waits.
    assert await cache.certificates("c3", URI, A) == frozenset()
    assert len(publisher.fetches) == 2 and len(cache) == 2
    assert log.events("jwks_uri_refresh_skipped")[-1]["reason"] == "cache_full"
    clock.now += COOLDOWN
    assert await cache.certificates("c3", URI, A) == {A}  # c1, least recently used and cooled down, goes
    assert len(publisher.fetches) == 3 and len(cache) == 2


async def test_a_request_that_goes_away_does_not_cancel_the_fetch(clock: Clock) -> None:
    publisher = Publisher(A)
    publisher.gate.clear()
    cache = certificates(publisher, clock)
    first = asyncio.ensure_future(cache.certificates("c", URI, A))
    await asyncio.sleep(0.01)
    first.cancel()  # its client disconnected
    second = asyncio.ensure_future(cache.certificates("c", URI, A))
    publisher.gate.set()
    assert await second == {A}
    assert first.cancelled() and len(publisher.fetches) == 1


async def test_an_unexpected_error_is_logged_and_answered(log: Recorder, clock: Clock) -> None:
    publisher = Publisher(A)
    publisher.failure = RuntimeError("bug")
    cache = certificates(publisher, clock)
    assert await cache.certificates("c", URI, A) == frozenset()
    [failed] = log.events("jwks_uri_fetch_failed")
    assert (failed["level"], failed["reason"], failed["detail"]) == ("error", "unexpected_error", "RuntimeError: bug")


async def test_close_cancels_a_running_fetch(clock: Clock) -> None:
    publisher = Publisher(A)
    publisher.gate.clear()
    cache = certificates(publisher, clock)
    waiting = asyncio.ensure_future(cache.certificates("c", URI, A))
    await asyncio.sleep(0.01)
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiting
