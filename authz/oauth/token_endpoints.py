"""Token introspection (RFC 7662, with ``cnf`` per RFC 8705 §3.2) and revocation (RFC 7009)
on authlib's endpoint classes, authenticated with the same mTLS client authentication as
the token endpoint.

authlib's endpoints are synchronous: the Starlette endpoint verifies the token and looks up
its revocation state first (``ClientRequest.resolved_token``), and performs the revocation
write after authlib accepted the request, before answering.
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnauthorizedClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from authz.clients.model import MTLS_AUTH_METHODS, RegisteredClient
from authz.oauth.request import ClientRequest
from authz.tokens.verification import IssuedAccessToken

__all__ = ["MutualTLSIntrospectionEndpoint", "MutualTLSRevocationEndpoint"]

_INTROSPECTED_CLAIMS = ("iss", "sub", "client_id", "aud", "exp", "iat", "nbf", "jti", "scope", "cnf")


class _ResolvedTokenMixin:
    """What both endpoints share: mTLS client auth, and the token resolved beforehand."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(MTLS_AUTH_METHODS)

    def check_params(self, request: ClientRequest, client: RegisteredClient) -> None:
        if not request.form.get("token"):
            raise InvalidRequestError("token is required")
        # RFC 7009 §2.1 / RFC 7662 §2.1: the hint is only a hint; an unknown value is ignored.

    def authenticate_token(self, request: ClientRequest, client: RegisteredClient) -> IssuedAccessToken | None:
        self.check_params(request, client)
        token: IssuedAccessToken | None = request.resolved_token
        return token


class MutualTLSIntrospectionEndpoint(_ResolvedTokenMixin, IntrospectionEndpoint):  # type: ignore[misc]

    def check_permission(self, token: IssuedAccessToken, client: RegisteredClient, request: ClientRequest) -> bool:
        # Any authenticated client may introspect: resource servers are registered clients.
        return True

    def introspect_token(self, token: IssuedAccessToken) -> dict[str, Any]:
        payload = {name: token.claims[name] for name in _INTROSPECTED_CLAIMS if name in token.claims}
        return {"active": True, "token_type": "Bearer", **payload}


class MutualTLSRevocationEndpoint(_ResolvedTokenMixin, RevocationEndpoint):  # type: ignore[misc]
    def authenticate_token(self, request: ClientRequest, client: RegisteredClient) -> IssuedAccessToken | None:
        token = super().authenticate_token(request, client)
        if token is not None and not token.check_client(client):
            # RFC 7009 §2.1: a client may only revoke the tokens issued to it.
            raise UnauthorizedClientError(description="the token was not issued to this client")
        return token

    def revoke_token(self, token: IssuedAccessToken, request: ClientRequest) -> None:
        # Performed (awaited) by the Starlette endpoint before the 200 goes out.
        request.pending_revocation = token
