"""The ASGI application: ``create_app()`` (a factory, so ``--workers N`` can import it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz.context import ServerContext
from authz.endpoints.discovery import jwks_endpoint, metadata_endpoint
from authz.endpoints.token import TokenEndpoint
from authz.endpoints.token_management import IntrospectionEndpoint, RevocationEndpoint
from authz.logs import configure_logging
from authz.settings import Settings

__all__ = ["create_app"]

log = structlog.get_logger("authz.app")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = "invalid_request" if exc.status_code < 500 else "server_error"
    return JSONResponse({"error": error, "error_description": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, error=repr(exc))
    return JSONResponse(
        {"error": "server_error", "error_description": "internal error; the server log has the details"},
        status_code=500,
    )


def create_app(settings: Settings | None = None, context: ServerContext | None = None) -> Starlette:
    settings = settings or (context.settings if context else Settings())
    configure_logging(settings.log_level, settings.log_format)
    ctx = context or ServerContext.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.start()
        log.info("server_started", issuer=ctx.issuer, trust_anchors=ctx.validator.anchor_count,
                 signing_kid=ctx.keys.active.kid)
        try:
            yield
        finally:
            await ctx.stop()

    app = Starlette(
        routes=[
            # Plain ASGI apps (see authz.endpoints.client): the token endpoint is the hot path.
            Route(TokenEndpoint.path, TokenEndpoint(ctx), methods=["POST"]),
            Route(IntrospectionEndpoint.path, IntrospectionEndpoint(ctx), methods=["POST"]),
            Route(RevocationEndpoint.path, RevocationEndpoint(ctx), methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", metadata_endpoint, methods=["GET"]),
            Route("/jwks", jwks_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
    app.state.context = ctx
    return app
