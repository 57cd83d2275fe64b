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


async def _with_token(request: Request, endpoint: str, path: str) -> ClientRequest | Response:
    """The resolved request with its ``token`` verified and its revocation state known."""
    context: ServerContext = request.app.state.context
    resolved = await client_request(request, endpoint, path)
    if isinstance(resolved, Response):
        return resolved
    token = context.token_verifier.verify(resolved.form.get("token", ""))
    if token is not None and await context.revocations.is_revoked(token.jti):
        token = type(token)(token.claims, revoked=True)
    resolved.resolved_token = token
    return resolved


async def introspection_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    resolved = await _with_token(request, "introspection", "/introspect")
    if isinstance(resolved, Response):
        return resolved
    response: Response = context.server.create_endpoint_response("introspection", resolved)
    return response


async def revocation_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    resolved = await _with_token(request, "revocation", "/revoke")
    if isinstance(resolved, Response):
        return resolved
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
