"""``POST /introspect`` (RFC 7662) and ``POST /revoke`` (RFC 7009)."""

from __future__ import annotations

import structlog

from authz.clients.directory import UnusableRegistration
from authz.endpoints.client import ClientEndpoint
from authz.endpoints.failure import store_unavailable
from authz.oauth.reply import JSONReply
from authz.oauth.request import ClientRequest
from authz.storage.base import StorageError

__all__ = ["IntrospectionEndpoint", "RevocationEndpoint"]

log = structlog.get_logger("authz.tokens")


class _TokenManagementEndpoint(ClientEndpoint):
    """``name`` is also the authlib endpoint's ``ENDPOINT_NAME``."""

    async def answer(self, request: ClientRequest) -> JSONReply:
        # authlib's endpoint classes are synchronous: verify the token and look up its
        # revocation state first.
        token = self.context.token_verifier.verify(request.form.get("token", ""))
        if token is not None and (await self.context.revocations.is_revoked(token.jti)
                                  or not await self._client_registered(token.client_id)):
            token = type(token)(token.claims, revoked=True)
        request.resolved_token = token
        reply: JSONReply = self.context.server.create_endpoint_response(self.name, request)
        return reply

    async def _client_registered(self, client_id: str) -> bool:
        """Whether the token's client is still registered (and usable): removing a client
        ends its tokens, as revoking each would."""
        try:
            return await self.context.clients.get(client_id) is not None
        except UnusableRegistration:
            return False


class IntrospectionEndpoint(_TokenManagementEndpoint):
    name = "introspection"
    path = "/introspect"


class RevocationEndpoint(_TokenManagementEndpoint):
    name = "revocation"
    path = "/revoke"

    async def answer(self, request: ClientRequest) -> JSONReply:
        reply = await super().answer(request)
        token = request.pending_revocation
        if token is not None and not token.is_revoked():
            try:
                await self.context.revocations.revoke(token.jti, client_id=token.client_id,
                                                      expires_at=token.expires_at)
            except StorageError as exc:  # the token stays valid: the client must retry
                return store_unavailable(self.name, request.peer, exc, client_id=token.client_id, jti=token.jti)
            log.info("token_revoked", jti=token.jti, client_id=token.client_id)
        return reply
