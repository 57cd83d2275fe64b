"""The ASGI application: ``create_app()`` (a factory, so ``--workers N`` can import it)."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from authz.context import ServerContext
from authz.endpoints.client import ClientEndpoint
from authz.endpoints.discovery import jwks_endpoint, metadata_endpoint
from authz.endpoints.failure import ERROR_HEADERS, SERVER_ERROR, http_refusal, log_unhandled
from authz.endpoints.token import TokenEndpoint
from authz.endpoints.token_management import IntrospectionEndpoint, RevocationEndpoint
from authz.logs import configure_logging
from authz.metrics.health import HEALTH_HEADERS, health_document, readiness_document
from authz.oauth.request import peer_address
from authz.proxy.mode import ForwardedCertificate
from authz.registration.api import RegistrationAPI
from authz.registration.constants import REGISTRATION_PATH
from authz.registration.credentials import RegistrationCredentials
from authz.registration.local_tokens import LocalTokenValidator
from authz.settings import Settings
from authz.tls.ca_names import distinct_subjects

__all__ = ["AuthorizationServerApp", "create_app"]

log = structlog.get_logger("authz.app")


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405."""
    assert isinstance(exc, HTTPException)
    body, headers = http_refusal(method=request.method, path=request.url.path, peer=peer_address(request.scope),
                                 status=exc.status_code, detail=str(exc.detail), headers=exc.headers)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log_unhandled(request.url.path, exc)
    return JSONResponse(SERVER_ERROR, status_code=500, headers=ERROR_HEADERS)


async def _healthz(request: Request) -> Response:
    return JSONResponse(health_document(), headers=HEALTH_HEADERS)


async def _readyz(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    # The main port is public: the failing check is named, its detail (a file, an address) is
    # in the log and on the metrics listener.
    status, document = readiness_document(await context.readiness.evaluate(), details=False)
    return JSONResponse(document, status_code=status, headers=HEALTH_HEADERS)


HEALTH_PATHS = ("/healthz", "/readyz")


class AuthorizationServerApp:
    """``POST`` to a client endpoint (token, introspection, revocation) goes straight to it;
    everything else (discovery, JWKS, other methods, 404s, lifespan) to Starlette.

    The token endpoint is the server's hot path, and Starlette's middleware stack and router
    cost about as much as authlib's whole grant; ``ClientEndpoint`` guards its own errors.
    The same endpoints are also Starlette routes, so that a GET on them is Starlette's 405.

    With metrics on, each request's duration goes to the histogram of its endpoint: the client
    endpoints time themselves, the others are timed here, bound once per path (``_timers``).
    """

    def __init__(self, starlette: Starlette, endpoints: list[ClientEndpoint],
                 latency: dict[str, Any] | None = None) -> None:
        self.starlette = starlette
        self.state = starlette.state
        self._posted = {endpoint.path: endpoint for endpoint in endpoints}
        self._latency = latency
        if latency is not None:
            self._timers = {"/.well-known/oauth-authorization-server": latency["metadata"],
                            "/jwks": latency["jwks"], REGISTRATION_PATH: latency["registration"],
                            **{path: latency["health"] for path in HEALTH_PATHS},
                            # Their other methods (a GET: 405): under the endpoint's name.
                            **{endpoint.path: latency[endpoint.name] for endpoint in endpoints}}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST":
                endpoint = self._posted.get(scope["path"])
                if endpoint is not None:
                    await endpoint(scope, receive, send)  # times itself
                    return
            if self._latency is not None:
                await self._timed(scope, receive, send)
                return
        await self.starlette(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette's routes (discovery, JWKS, registration, health, 404s), timed."""
        started = time.perf_counter()
        path: str = scope["path"]
        try:
            await self.starlette(scope, receive, send)
        finally:
            timer = self._timers.get(path)
            if timer is None:
                assert self._latency is not None
                timer = self._latency["registration" if path.startswith(REGISTRATION_PATH + "/") else "other"]
            timer.observe(time.perf_counter() - started)


def create_app(
    settings: Settings | None = None, context: ServerContext | None = None
) -> AuthorizationServerApp | ForwardedCertificate:
    """The server; in proxy mode, behind ``ForwardedCertificate`` (certificates from a trusted
    proxy's header)."""
    settings = settings or (context.settings if context else Settings())
    configure_logging(settings.log_level, settings.log_format)
    ctx = context or ServerContext.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.start()
        # Everything alive now (modules, settings, keys, the client cache) lives as long as
        # the process: out of the collector's sight, full collections under load only
        # traverse what requests allocate.
        gc.freeze()
        log.info("server_started", issuer=ctx.issuer, trust_anchors=ctx.validator.anchor_count,
                 # The names in the TLS CertificateRequest (--advertise-ca-names); 0: none.
                 ca_names_advertised=len(distinct_subjects(ctx.validator.anchors)) if settings.advertise_ca_names
                 else 0,
                 signing_kid=ctx.keys.active.kid, revocation_check=settings.revocation_check,
                 **({"revocation_policy": settings.revocation_policy} if settings.revocation_check != "off" else {}))
        try:
            yield
        finally:
            await ctx.stop()

    endpoints: list[ClientEndpoint] = [TokenEndpoint(ctx), IntrospectionEndpoint(ctx), RevocationEndpoint(ctx)]
    registration = RegistrationAPI(
        ctx.clients, RegistrationCredentials(ctx.store),
        LocalTokenValidator(ctx.token_verifier, ctx.revocations, ctx.clients,
                            audience=ctx.issuer + REGISTRATION_PATH),
        issuer=ctx.issuer, refuse_expired_certificates=settings.refuse_expired_certificates)
    health = [Route("/healthz", _healthz, methods=["GET"]), Route("/readyz", _readyz, methods=["GET"])]
    starlette = Starlette(
        routes=[
            *(health if settings.health_on_main_port else []),
            *(Route(endpoint.path, endpoint, methods=["POST"]) for endpoint in endpoints),
            Route("/.well-known/oauth-authorization-server", metadata_endpoint, methods=["GET"]),
            Route("/jwks", jwks_endpoint, methods=["GET"]),
            Route(REGISTRATION_PATH, registration, methods=["POST"]),
            Route(REGISTRATION_PATH + "/{client_id}", registration, methods=["GET", "PUT", "DELETE"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
    # A POST to "/token/" is a 404 like any unknown path: Starlette's redirect to "/token"
    # would invite clients to resend their request (RFC 6749 §3.2 endpoints do not redirect).
    starlette.router.redirect_slashes = False
    starlette.state.context = ctx
    app = AuthorizationServerApp(starlette, endpoints, ctx.metrics.latency if ctx.metrics is not None else None)
    proxy_mode = settings.proxy_mode()
    return app if proxy_mode is None else ForwardedCertificate(app, proxy_mode)
