"""The contract between the middleware and whatever checks a token: a tiny base class."""

from __future__ import annotations

from authz_resource.token import AccessToken

__all__ = ["TokenValidator"]


class TokenValidator:
    """Turns a bearer token into a verified ``AccessToken``.

    Implement ``validate``: raise ``InvalidToken`` for a token that must not be accepted
    and ``VerificationUnavailable`` when it cannot decide (authorization server
    unreachable). Check signature or activity, issuer, audience and time; the certificate
    binding and the scopes are checked by the middleware, which knows the connection and
    the route.
    """

    async def validate(self, token: str) -> AccessToken:
        raise NotImplementedError

    async def warm_up(self) -> None:
        """Fetch what ``validate`` needs before the first request (called at application
        start-up). Must not raise for a temporary problem: log it; requests will retry."""

    async def aclose(self) -> None:
        """Release connections and background tasks (called at application shutdown)."""
