"""Per-route scope requirements (RFC 6750 §3.1 ``insufficient_scope``).

Two forms, one check:

- ``@require_scopes("accounts:read")`` on a Starlette endpoint (function or
  ``HTTPEndpoint`` method, sync or async): answers 403 itself;
- ``RequireScopes("accounts:read")`` as a FastAPI dependency
  (``dependencies=[Depends(RequireScopes("accounts:write"))]``, or a parameter to get the
  ``AccessToken``): raises ``HTTPException`` with the same status and challenge.

Both need ``BearerTokenMiddleware`` in front; without it (or on an exempt path) they refuse
with 401, so a forgotten middleware fails closed.
"""

# No "from __future__ import annotations" here: FastAPI reads RequireScopes.__call__'s
# annotations at runtime to inject the connection.
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from authz_resource._asgi import Scope
from authz_resource.errors import InsufficientScope, NoToken, Refusal
from authz_resource.middleware import CHALLENGE_KEY, Challenger
from authz_resource.token import AccessToken

__all__ = ["RequireScopes", "check_scopes", "require_scopes"]

F = TypeVar("F", bound=Callable[..., Any])

_FALLBACK = Challenger("resource")


def _scope_set(scopes: tuple[str, ...]) -> frozenset[str]:
    required = frozenset(scopes)
    if not required or any(not s or " " in s or '"' in s or "\\" in s for s in required):
        raise ValueError(f"scopes must be non-empty scope tokens (RFC 6749 §3.3), got {scopes!r}")
    return required


def check_scopes(scope: Scope, required: frozenset[str]) -> tuple[AccessToken | None, Refusal | None, Challenger]:
    """The verified token, or the refusal to answer (already logged)."""
    challenger: Challenger = scope.get(CHALLENGE_KEY, _FALLBACK)
    token = scope.get("auth")
    refusal: Refusal | None = None
    if not isinstance(token, AccessToken):
        refusal = NoToken(
            "no_verified_token",
            "this resource needs an access token: send Authorization: Bearer <token>",
            detail="no verified token in scope['auth']: is BearerTokenMiddleware installed, and is this path exempt?",
        )
        token = None
    elif not required <= token.scopes:
        refusal = InsufficientScope(required, token.scopes)
    if refusal is not None:
        challenger.log(refusal, scope, token)
        return token, refusal, challenger
    return token, None, challenger


def _refusal_response(refusal: Refusal, challenger: Challenger) -> Response:
    status, headers, body = challenger.response(refusal)
    response = Response(body, status_code=status, media_type="application/json")
    for name, value in headers:
        if name not in (b"content-type", b"content-length"):
            response.headers[name.decode()] = value.decode()
    return response


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """Decorate a Starlette endpoint so that it runs only for tokens carrying ``scopes``."""
    required = _scope_set(scopes)

    def decorate(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):
            @functools.wraps(endpoint)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                # The request is the last positional argument (after self for HTTPEndpoint).
                _, refusal, challenger = check_scopes(args[-1].scope, required)
                if refusal is not None:
                    return _refusal_response(refusal, challenger)
                return await endpoint(*args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(endpoint)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            _, refusal, challenger = check_scopes(args[-1].scope, required)
            if refusal is not None:
                return _refusal_response(refusal, challenger)
            return endpoint(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


class RequireScopes:
    """A FastAPI dependency (any callable taking the connection works): returns the
    ``AccessToken`` or raises ``HTTPException`` carrying the RFC 6750 challenge."""

    def __init__(self, *scopes: str) -> None:
        self.required = _scope_set(scopes)

    def __call__(self, connection: HTTPConnection) -> AccessToken:
        token, refusal, challenger = check_scopes(connection.scope, self.required)
        if refusal is not None:
            # The challenge headers as the middleware renders them; the body is FastAPI's.
            _, headers, _ = challenger.response(refusal)
            kept = {name.decode(): value.decode() for name, value in headers
                    if name in (b"www-authenticate", b"retry-after")}
            raise HTTPException(refusal.status, detail=refusal.description, headers=kept)
        assert token is not None
        return token
