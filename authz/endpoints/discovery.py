"""``/.well-known/oauth-authorization-server`` (RFC 8414) and ``/jwks`` (RFC 7517)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from authz.context import ServerContext

__all__ = ["jwks_endpoint", "metadata_endpoint"]


async def metadata_endpoint(request: Request) -> JSONResponse:
    context: ServerContext = request.app.state.context
    return JSONResponse(context.metadata, headers={"Cache-Control": "public, max-age=300"})


async def jwks_endpoint(request: Request) -> JSONResponse:
    context: ServerContext = request.app.state.context
    # Short cache: after a rotation, resource servers should see the new key quickly.
    return JSONResponse(context.keys.jwks, headers={"Cache-Control": "public, max-age=60"})
