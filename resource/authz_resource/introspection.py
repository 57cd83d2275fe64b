"""Token introspection (RFC 7662) at the authorization server, with a bounded cache.

The resource server authenticates as an OAuth client with its own certificate (RFC 8705
§2), exactly like at the token endpoint. Answers, active or not, are cached for
``cache_ttl`` seconds (never past the token's ``exp``): that is the longest a revocation
can go unnoticed, and the price of not asking the authorization server on every request
(RFC 7662 §4). Concurrent requests with the same uncached token share one introspection.

The cache is keyed by the SHA-256 digest of the token: inactive answers are cached too,
so anyone can fill it, and 10,000 made-up 16 KiB tokens would otherwise pin 160 MiB.

An answer is accepted when ``active`` is true, ``token_type`` (if any) is Bearer, and its
members pass ``authz_resource.policy`` as a JWT's claims do; ``aud`` is required there in
both modes, since the authorization server answers "active" for the tokens of every
resource server it serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from authz_resource.authorization_server import AuthorizationServer
from authz_resource.cache import TokenCache
from authz_resource.errors import InvalidToken, VerificationUnavailable
from authz_resource.policy import TokenPolicy
from authz_resource.token import AccessToken
from authz_resource.validator import TokenValidator

__all__ = ["IntrospectionValidator"]

log = structlog.get_logger("authz_resource.introspection")

_INACTIVE = "the access token is not active: it is expired, revoked or unknown to the authorization server"


class IntrospectionValidator(TokenValidator):
    """Validates tokens by asking the authorization server (RFC 7662).

    ``client_id``: this resource server's registration at the authorization server, which
    it authenticates to with ``server``'s client certificate. ``audience``: this resource
    server's identifier, an absolute URI; the answer's ``aud`` must include it.
    """

    def __init__(
        self,
        server: AuthorizationServer,
        *,
        client_id: str,
        audience: str,
        leeway: float = 30.0,
        cache_ttl: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is required: the resource server's registration at the authorization server")
        if not server.presents_client_certificate:
            raise ValueError("introspection needs the resource server's client certificate (RFC 8705 section 2): "
                             "AuthorizationServer(issuer, client_cert=..., client_key=...)")
        if not 0 <= cache_ttl <= 3600:
            raise ValueError("cache_ttl must be between 0 and 3600 seconds")
        self.policy = TokenPolicy(server.issuer, audience, leeway)
        self.server = server
        self.client_id = client_id
        self.audience = self.policy.audience
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: TokenCache[bytes, AccessToken | InvalidToken] = TokenCache(cache_size)
        self._in_flight: dict[bytes, asyncio.Task[AccessToken | InvalidToken]] = {}
        self.introspection_count = 0

    async def validate(self, token: str) -> AccessToken:
        now = self._clock()
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        verdict = self._cache.get(key, now)
        if verdict is None:
            task = self._in_flight.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._introspect(token, key))
                self._in_flight[key] = task
                task.add_done_callback(lambda _: self._in_flight.pop(key, None))
            # shield: one cancelled request must not cancel the introspection others await.
            verdict = await asyncio.shield(task)
        if isinstance(verdict, InvalidToken):
            # A fresh exception per request: the cached one only records the verdict.
            raise InvalidToken(verdict.reason, verdict.description, detail=verdict.detail, **verdict.log_fields)
        if now >= verdict.expires_at + self.leeway:
            raise InvalidToken("expired", "the access token has expired",
                               detail=f"exp {verdict.expires_at}, now {now:.0f} (cached introspection)")
        return verdict

    async def _introspect(self, token: str, key: bytes) -> AccessToken | InvalidToken:
        self.introspection_count += 1
        # VerificationUnavailable propagates and is not cached: the next request asks again.
        response = await self.server.introspect(token, self.client_id)
        now = self._clock()
        verdict: AccessToken | InvalidToken
        try:
            verdict = self._accept(response, now)
            until = min(now + self.cache_ttl, verdict.expires_at + self.leeway)
        except InvalidToken as refusal:
            # Without its traceback: a cached verdict must not keep this call's frames alive.
            verdict, until = refusal.with_traceback(None), now + self.cache_ttl
        if self.cache_ttl > 0:
            self._cache.put(key, verdict, until)
        return verdict

    def _accept(self, response: Mapping[str, Any], now: float) -> AccessToken:
        if response.get("active") is not True:
            raise InvalidToken("inactive", _INACTIVE, detail=f"introspection: active={response.get('active')!r}")
        token_type = response.get("token_type")
        if token_type is not None and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
            raise InvalidToken("wrong_token_type", "the token is not a bearer access token",
                               detail=f"introspection: token_type={token_type!r}")
        return self.policy.accept(response, now, "introspection")

    async def warm_up(self) -> None:
        try:
            await self.server.endpoint("introspection_endpoint")
        except VerificationUnavailable as exc:
            log.warning("authorization_server_not_ready", issuer=self.server.issuer, reason=exc.reason,
                        detail=exc.detail)

    async def aclose(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await self.server.aclose()
