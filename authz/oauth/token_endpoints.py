"""Token introspection (RFC 7662, with ``cnf`` per RFC 8705 §3.2) and revocation (RFC 7009)
on authlib's endpoint classes, authenticated with the same mTLS client authentication as
the token endpoint.

authlib's endpoints are synchronous: the Starlette endpoint verifies the token and looks up
its revocation state first (``ClientRequest.resolved_token``), and performs the revocation
write after authlib accepted the request, before answering.
"""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnauthorizedClientError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from authz.clients.model import MTLS_AUTH_METHODS, RegisteredClient
from authz.oauth.request import ClientRequest
from authz.tokens.verification import IssuedAccessToken

__all__ = ["MutualTLSIntrospectionEndpoint", "MutualTLSRevocationEndpoint"]

log = structlog.get_logger("authz.oauth")

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

    def authenticate_token(self, request: ClientRequest, client: RegisteredClient) -> IssuedAccessToken | None:
        token = super().authenticate_token(request, client)
        if token is None or self._may_introspect(token, client):
            return token
        # RFC 7662 §4: to a client that may not know about the token, it is not active. The
        # operator learns why.
        log.warning("introspection_refused", endpoint=request.endpoint, peer=request.peer,
                    client_id=client.client_id, token_client_id=token.client_id, aud=token.audiences,
                    jti=token.jti, reason="neither the token's client nor an introspector of its audience")
        return None

    def _may_introspect(self, token: IssuedAccessToken, client: RegisteredClient) -> bool:
        """The token's own client, or a client a resource server of the token's audience
        lists among its introspectors. (authlib's IntrospectionEndpoint never calls its
        check_permission hook: the decision is made here.)"""
        if token.check_client(client):
            return True
        servers = self.server.resource_servers
        return any(client.client_id in server.introspectors
                   for server in map(servers.get, token.audiences) if server is not None)

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
