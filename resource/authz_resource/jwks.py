"""The authorization server's signing keys, cached, refreshed when a token names a key the
cache does not know.

Rules:
- first use: fetch (single flight: concurrent requests wait for the same fetch);
- older than ``max_age``: refresh in the background, keep serving the cached keys; after
  a failed refresh, try again only once ``refresh_cooldown`` has passed;
- unknown ``kid``: refresh now, but at most once per ``refresh_cooldown`` seconds (counted
  from the last attempt, failed or not).

So neither tokens with made-up kids nor a failing server's stale keys can turn the
resource server into a load generator against its authorization server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key, RSAKey

from authz_resource.errors import InvalidToken, VerificationUnavailable

__all__ = ["KeyCache", "PublishedKeys"]

log = structlog.get_logger("authz_resource.jwks")

# RFC 7518 §3.3 and §3.5: RS* and PS* keys MUST be at least 2048 bits; joserfc does not check.
MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class PublishedKeys:
    """One fetched JWK Set: signature keys by ``kid``, those without a ``kid``, and why
    the entries that are not used were skipped (for the refusal's detail)."""

    by_kid: Mapping[str, Key]
    without_kid: tuple[Key, ...]
    skipped: Mapping[str, str]

    @classmethod
    def parse(cls, jwks: Mapping[str, Any]) -> PublishedKeys:
        by_kid: dict[str, Key] = {}
        without_kid: list[Key] = []
        skipped: dict[str, str] = {}
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise ValueError("the JWK Set has no 'keys' array")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kid = entry.get("kid")
            try:
                key = _verification_key(entry)
            except _Unusable as exc:
                if entry.get("use", "sig") == "sig":  # an encryption key is simply not for us
                    log.warning("jwk_skipped", kid=kid, error=str(exc))
                if isinstance(kid, str):
                    skipped[kid] = str(exc)
                continue
            if isinstance(kid, str):
                by_kid[kid] = key
            else:
                without_kid.append(key)
        return cls(by_kid, tuple(without_kid), skipped)

    def find(self, kid: str | None) -> Key | None:
        if kid is not None:
            return self.by_kid.get(kid)
        # No kid in the token: unambiguous only when the set holds exactly one key.
        every = [*self.by_kid.values(), *self.without_kid]
        return every[0] if len(every) == 1 else None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self.by_kid)


class _Unusable(Exception):
    """Why a JWK Set entry is not a verification key."""


def _verification_key(entry: Mapping[str, Any]) -> Key:
    if entry.get("use", "sig") != "sig":
        raise _Unusable(f"use {entry.get('use')!r}, not sig")
    if entry.get("kty") == "oct":
        # A symmetric key in a public JWK Set is a misconfiguration at best; it must never
        # become a verification key (HMAC confusion).
        raise _Unusable("a symmetric (oct) key is never a verification key")
    try:
        with warnings.catch_warnings():
            # joserfc warns about (and still returns) an RSA key under 2048 bits: refused
            # below, with a log line that names the key.
            warnings.simplefilter("ignore", SecurityWarning)
            key = JWKRegistry.import_key(dict(entry))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise _Unusable(f"not a valid JWK: {type(exc).__name__}: {exc}") from None
    if key.is_private:
        raise _Unusable("the JWK Set publishes a private key")
    if isinstance(key, RSAKey):
        bits = key.get_op_key("verify").key_size
        if bits < MIN_RSA_BITS:
            raise _Unusable(f"RSA key of {bits} bits (at least {MIN_RSA_BITS}, RFC 7518 section 3.3)")
    return key


class KeyCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[Mapping[str, Any]]],
        *,
        max_age: float = 300.0,
        refresh_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age <= 0 or refresh_cooldown < 0:
            raise ValueError("max_age must be positive and refresh_cooldown not negative")
        self._fetch = fetch
        self._max_age = max_age
        self._cooldown = refresh_cooldown
        self._clock = clock
        self._keys: PublishedKeys | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._last_error: VerificationUnavailable | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self.removal_generation = 0
        """Bumped whenever a key disappears: caches of verified tokens drop their entries."""
        self.fetch_count = 0

    async def load(self) -> None:
        """Fetch the keys now if none are cached (``VerificationUnavailable`` on failure)."""
        if self._keys is None:
            await self._refresh_if_allowed()
            if self._keys is None:
                if self._last_error is not None:
                    raise _again(self._last_error)
                raise VerificationUnavailable(
                    "jwks_unavailable", "the authorization server's keys are not available; retry later")

    async def key(self, kid: str | None) -> Key:
        """The published key for ``kid``; ``InvalidToken`` if there is none (after a refresh
        when allowed), ``VerificationUnavailable`` if the keys cannot be fetched at all."""
        keys = self._keys
        if keys is None:
            await self.load()
            keys = self._keys
            assert keys is not None
        elif self._in_flight is None and self._clock() - self._fetched_at >= self._max_age \
                and not (self._last_error is not None and self._cooling_down()):
            # Stale: refresh behind the scenes, serve what we have. After a failed refresh
            # the keys stay stale, so the cooldown applies: without it every request would
            # start another fetch from a server that is already in trouble.
            self._start_refresh()
        key = keys.find(kid)
        if key is not None:
            return key
        refreshed = await self._refresh_if_allowed()
        if refreshed and self._keys is not None:
            key = self._keys.find(kid)
            if key is not None:
                return key
        if not refreshed and self._last_error is not None and self._attempted_at is not None \
                and self._attempted_at > self._fetched_at:
            raise _again(self._last_error)  # the last refresh failed: we cannot tell
        skipped = self._keys.skipped.get(kid) if self._keys is not None and kid is not None else None
        described = ("has no kid and the key set is not a single key" if kid is None
                     else f"is published but not usable: {skipped}" if skipped else "is not published")
        raise InvalidToken(
            "unknown_kid",
            "the access token was signed with a key the authorization server does not publish",
            detail=f"kid {kid!r} {described}; published {sorted(self._keys.kids) if self._keys else []}; "
                   f"keys fetched {self._clock() - self._fetched_at:.1f}s ago, "
                   f"refresh {'done' if refreshed else 'not allowed yet (cooldown)'}",
        )

    async def _refresh_if_allowed(self) -> bool:
        """Refresh now unless one ran less than ``refresh_cooldown`` ago; True if it ran
        (or was already running) and succeeded."""
        if self._in_flight is None:
            if self._cooling_down():
                return False
            self._start_refresh()
        assert self._in_flight is not None
        # shield: a request cancelled while waiting must not cancel the fetch others share.
        await asyncio.shield(self._in_flight)
        return self._last_error is None

    def _cooling_down(self) -> bool:
        return self._attempted_at is not None and self._clock() - self._attempted_at < self._cooldown

    def _start_refresh(self) -> None:
        self._attempted_at = self._clock()
        self._in_flight = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            self.fetch_count += 1
            document = await self._fetch()
            try:
                keys = PublishedKeys.parse(document)
            except ValueError as exc:
                raise VerificationUnavailable(
                    "jwks_invalid", "the authorization server's keys could not be read; retry later",
                    detail=str(exc)) from exc
            previous = self._keys
            if previous is not None and not previous.kids <= keys.kids:
                self.removal_generation += 1
            if previous is None or previous.kids != keys.kids:
                log.info("jwks_loaded", kids=sorted(keys.kids), keys_without_kid=len(keys.without_kid))
            self._keys, self._fetched_at, self._last_error = keys, self._clock(), None
        except VerificationUnavailable as exc:
            self._last_error = exc.with_traceback(None)
            log.warning("jwks_fetch_failed", reason=exc.reason, detail=exc.detail)
        finally:
            self._in_flight = None

    async def aclose(self) -> None:
        task = self._in_flight
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _again(error: VerificationUnavailable) -> VerificationUnavailable:
    """A new exception with the stored verdict. Raising the stored instance itself would
    chain each request's frames onto its traceback, and keep them alive until the next
    fetch replaces it: a leak that grows with the traffic during an outage."""
    return VerificationUnavailable(error.reason, error.description, detail=error.detail, **error.log_fields)
