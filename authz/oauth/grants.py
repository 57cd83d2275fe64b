"""The client_credentials grant (RFC 6749 §4.4) with mTLS client authentication."""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from authz.audiences.selection import select_audience
from authz.clients.model import MTLS_AUTH_METHODS, RegisteredClient

__all__ = ["MutualTLSClientCredentialsGrant"]


def _is_scope_token(token: str) -> bool:
    return all(c == "\x21" or "\x23" <= c <= "\x5b" or "\x5d" <= c <= "\x7e" for c in token)


class MutualTLSClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(MTLS_AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        """Grant the requested scopes if the client registered them all; no scope asked
        means every registered scope (RFC 6749 §3.3 lets the server pick the default). Then
        the audience (``authz.audiences.selection``), which may cut the scopes to those of the
        requested resources."""
        client: RegisteredClient = self.request.client
        requested = self.request.payload.scope
        scopes = client.scopes if requested is None else self._requested_scopes(client, requested)
        audience = select_audience(client, self.request.resources, scopes, requested_scope=requested is not None,
                                   servers=self.server.resource_servers,
                                   default_audience=self.server.token_issuer.audience)
        self.request.audience = audience.aud
        self.request.scope = " ".join(audience.scopes)

    @staticmethod
    def _requested_scopes(client: RegisteredClient, requested: str) -> tuple[str, ...]:
        tokens = requested.split(" ")
        if not requested or any(not t or not _is_scope_token(t) for t in tokens):
            raise InvalidScopeError(
                description="scope must be space-separated scope tokens (RFC 6749 section 3.3)"
            )
        unknown = [t for t in dict.fromkeys(tokens) if t not in client.scopes]
        if unknown:
            raise InvalidScopeError(
                description=f"scope not registered for this client: {' '.join(unknown)[:200]}"
            )
        return tuple(dict.fromkeys(tokens))

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: RegisteredClient = self.request.client
        presented = self.request.presented_certificate
        thumbprint = presented.x5t_s256 if client.certificate_bound_access_tokens else None
        token = self.server.token_issuer.issue(
            client_id=client.client_id, scope=self.request.scope, certificate_thumbprint=thumbprint,
            audience=self.request.audience,
        )
        self.server.log_issued(self.request, token, thumbprint)
        return 200, token, self.TOKEN_RESPONSE_HEADER
