"""``BearerTokenMiddleware``: plain ASGI middleware protecting every HTTP (and WebSocket)
route of an application with certificate-bound access tokens (RFC 6750 + RFC 8705 §3).

Per request: take the token from the Authorization header, have the validator verify it
(JWT signature or introspection, issuer, audience, time), check that it is bound to the
client certificate of this TLS connection, check the middleware-wide scopes, read the
body up to ``max_body_bytes`` when set, then hand the verified ``AccessToken`` to the
application as ``scope["auth"]`` (Starlette: ``request.auth``). Routes declare the scopes
they need with ``authz_resource.scopes``. Every refusal is answered per RFC 6750 §3 and logged
once, with the reason the client is not told.

The token comes before the body: a client without a valid token is refused without a byte
of its body being read.

All per-request state lives in locals; the instance only holds configuration and the
validator's caches, so one instance serves concurrent requests.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection, Iterable
from typing import Any

import structlog

from authz_resource._asgi import ASGIApp, Message, Receive, Scope, Send
from authz_resource.bearer import bearer_token
from authz_resource.binding import UNPARSABLE_CERTIFICATE, check_binding, connection_certificate
from authz_resource.body import ClientGone, bounded_body
from authz_resource.challenge import check_realm, render
from authz_resource.errors import ContentTooLarge, InsufficientScope, InvalidToken, Refusal
from authz_resource.token import AccessToken
from authz_resource.validator import TokenValidator

__all__ = ["CHALLENGE_KEY", "BearerTokenMiddleware", "Challenger"]

log = structlog.get_logger("authz_resource.bearer")

# scope key under which the middleware leaves its Challenger, for route-level scope checks.
CHALLENGE_KEY = "authz_resource.challenger"


class Challenger:
    """Answers and logs refusals for one protection space (realm)."""

    def __init__(self, realm: str) -> None:
        self.realm = check_realm(realm)

    def log(self, refusal: Refusal, scope: Scope, token: AccessToken | None = None, *, level: str | None = None,
            **fields: Any) -> None:
        client = scope.get("client")
        line: dict[str, Any] = {
            "status": refusal.status,
            "error": refusal.error,
            "reason": refusal.reason,
            "error_description": refusal.description,
            "detail": refusal.detail or None,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "peer": f"{client[0]}:{client[1]}" if client else None,
        }
        # Merged, not passed as separate **kwargs: a field name used twice must not turn a
        # refusal into a TypeError (HTTP 500).
        if token is not None:
            line.update(token.log_fields())
        line.update(refusal.log_fields)
        line.update(fields)
        event = getattr(log, level or ("warning" if refusal.status >= 500 else "info"))
        event(refusal.log_event, **line)

    def response(self, refusal: Refusal) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return render(refusal, self.realm)

    async def send(self, refusal: Refusal, scope: Scope, send: Send) -> None:
        status, headers, body = render(refusal, self.realm)
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403;
            # the close reason carries what a Bearer challenge would have said. A close
            # reason is at most 123 bytes of UTF-8, and descriptions can quote token input.
            reason = refusal.description.encode("ascii", "replace").decode("ascii")[:120]
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BearerTokenMiddleware:
    """Protect ``app``.

    ``validator``: ``JWTAccessTokenValidator`` or ``IntrospectionValidator`` (or your own
    ``TokenValidator``). ``realm``: the protection space named in challenges.
    ``exempt_paths``: exact paths served without a token (health checks); everything else
    needs one. ``required_scopes``: scopes every protected request needs, on top of the
    per-route ones. ``allow_unbound_tokens``: accept tokens without ``cnf`` (off by
    default: RFC 8705 deployments exist to refuse replayable tokens). ``max_body_bytes``:
    a larger request body is answered 413 before the application runs, on exempt paths
    too (see ``authz_resource.body``); None: no limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        validator: TokenValidator,
        *,
        realm: str,
        exempt_paths: Iterable[str] = (),
        required_scopes: Collection[str] = (),
        allow_unbound_tokens: bool = False,
        max_body_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.validator = validator
        self.challenger = Challenger(realm)
        self.exempt_paths = frozenset(exempt_paths)
        if any(not p.startswith("/") for p in self.exempt_paths):
            raise ValueError("exempt_paths are absolute paths, e.g. '/health'")
        self.required_scopes = frozenset(required_scopes)
        self.allow_unbound_tokens = allow_unbound_tokens
        if max_body_bytes is not None and (isinstance(max_body_bytes, bool) or max_body_bytes < 0):
            raise ValueError(f"max_body_bytes must be a number of bytes (0 or more), or None; got {max_body_bytes!r}")
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope[CHALLENGE_KEY] = self.challenger
        token: AccessToken | None = None
        if scope["path"] not in self.exempt_paths:
            token = await self._verified_token(scope, send)
            if token is None:
                return
            scope["auth"] = token
        if self.max_body_bytes is not None and kind == "http":
            try:
                receive = await bounded_body(scope, receive, self.max_body_bytes)
            except ContentTooLarge as refusal:
                self.challenger.log(refusal, scope, token)
                await self.challenger.send(refusal, scope, send)
                return
            except ClientGone:
                return
        await self.app(scope, receive, send)

    async def _verified_token(self, scope: Scope, send: Send) -> AccessToken | None:
        """The request's verified token, or None once the refusal is answered and logged."""
        token: AccessToken | None = None
        try:
            raw = bearer_token(scope)
            certificate = connection_certificate(scope)
            token = await self.validator.validate(raw)
            check_binding(token, certificate, allow_unbound=self.allow_unbound_tokens)
            if self.required_scopes and not self.required_scopes <= token.scopes:
                raise InsufficientScope(self.required_scopes, token.scopes)
        except Refusal as refusal:
            self.challenger.log(refusal, scope, token, **_certificate_fields(scope, refusal))
            await self.challenger.send(refusal, scope, send)
            return None
        except Exception as exc:
            # Last resort for a defect in a validator (ours or a custom one): fail closed as
            # invalid_token, never a 500 with a stack trace; the operator gets the traceback.
            # The application's own errors are not caught: it runs outside this block.
            failure = InvalidToken("verification_error", "the access token could not be verified",
                                   detail=f"{type(exc).__name__}: {exc}"[:500])
            self.challenger.log(failure, scope, token, level="error", traceback=_traceback(exc),
                                **_certificate_fields(scope))
            await self.challenger.send(failure, scope, send)
            return None
        return token

    def _lifespan_receive(self, receive: Receive) -> Receive:
        # Warm the validator up at start-up and close its HTTP client at shutdown, whatever
        # the wrapped application does with lifespan itself.
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.validator.warm_up()
            elif message["type"] == "lifespan.shutdown":
                await self.validator.aclose()
            return message

        return wrapped


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-4000:]


def _certificate_fields(scope: Scope, refusal: Refusal | None = None) -> dict[str, Any]:
    """Which certificate was on the connection, for the refusal log line."""
    if refusal is not None and refusal.reason == UNPARSABLE_CERTIFICATE:
        return {"cert": "unparsable"}  # the refusal itself says so: no second parse
    try:
        certificate = connection_certificate(scope)
    except Refusal:
        return {"cert": "unparsable"}
    if certificate is None:
        return {"cert": None}
    return certificate.log_fields()
