"""``POST /introspect`` (RFC 7662) and ``POST /revoke`` (RFC 7009)."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authz.context import ServerContext
from authz.endpoints.client_request import client_request
from authz.oauth.request import ClientRequest
from authz.storage.base import StorageError

__all__ = ["introspection_endpoint", "revocation_endpoint"]

log = structlog.get_logger("authz.tokens")


async def _resolve_token(context: ServerContext, request: ClientRequest) -> None:
    token = context.token_verifier.verify(request.form.get("token", ""))
    if token is not None and await context.revocations.is_revoked(token.jti):
        token = type(token)(token.claims, revoked=True)
    request.resolved_token = token


async def introspection_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    resolved = await client_request(request, "introspection", "/introspect")
    if isinstance(resolved, Response):
        return resolved
    await _resolve_token(context, resolved)
    response: Response = context.server.create_endpoint_response("introspection", resolved)
    return response


async def revocation_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    resolved = await client_request(request, "revocation", "/revoke")
    if isinstance(resolved, Response):
        return resolved
    await _resolve_token(context, resolved)
    response: Response = context.server.create_endpoint_response("revocation", resolved)
    token = resolved.pending_revocation
    if token is not None and not token.is_revoked():
        try:
            await context.revocations.revoke(token.jti, client_id=token.client_id, expires_at=token.expires_at)
        except StorageError as exc:
            log.error("revocation_not_stored", jti=token.jti, client_id=token.client_id, error=str(exc))
            return JSONResponse(
                {"error": "temporarily_unavailable", "error_description": "the revocation could not be stored; retry"},
                status_code=503, headers={"Retry-After": "1", "Cache-Control": "no-store"},
            )
        log.info("token_revoked", jti=token.jti, client_id=token.client_id)
    return response
