"""In-process harness: a Starlette app behind ``BearerTokenMiddleware``, the TLS layer
played by an ASGI wrapper that injects the ASGI TLS extension, the authorization server
played by ``FakeAuthorizationServer``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authz.certificates.thumbprint import x5t_s256
from authz_resource import (
    AuthorizationServer,
    BearerTokenMiddleware,
    IntrospectionValidator,
    JWTAccessTokenValidator,
    TokenValidator,
    require_scopes,
)
from tests.resource.fake_as import AUDIENCE, ISSUER, FakeAuthorizationServer
from tests.support.pki import Issued


def chain_of(issued: Issued) -> list[str]:
    return [issued.cert.public_bytes(serialization.Encoding.PEM).decode()]


def thumbprint(issued: Issued) -> str:
    return x5t_s256(issued.der)


class TLSLayer:
    """Plays uvicorn + ``authz.tls.protocol``: puts ``chain`` into each request's scope
    (``None``: a connection without TLS at all)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chain: list[str] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.chain is not None:
            scope["extensions"] = {"tls": {"client_cert_chain": self.chain, "tls_version": 0x0304}}
        await self.app(scope, receive, send)


async def whoami(request: Request) -> JSONResponse:
    token = request.auth
    return JSONResponse({"client_id": token.client_id, "scopes": sorted(token.scopes), "source": token.source})


@require_scopes("accounts:write")
async def write(request: Request) -> JSONResponse:
    return JSONResponse({"written": True})


async def open_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"open": True, "auth": "auth" in request.scope})


def app_routes() -> list[Route]:
    return [Route("/whoami", whoami), Route("/write", write, methods=["POST"]), Route("/open", open_endpoint)]


@dataclass
class Harness:
    fake: FakeAuthorizationServer
    tls: TLSLayer
    validator: TokenValidator
    middleware: BearerTokenMiddleware
    client: httpx.AsyncClient

    async def get(self, path: str = "/whoami", token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return await self.client.get(path, headers=headers, **kwargs)


def authorization_server(fake: FakeAuthorizationServer) -> AuthorizationServer:
    return AuthorizationServer(ISSUER, http_client=httpx.AsyncClient(transport=fake.transport(), base_url=ISSUER))


def jwt_validator(fake: FakeAuthorizationServer, **kwargs: Any) -> JWTAccessTokenValidator:
    return JWTAccessTokenValidator(authorization_server(fake), **{"audience": AUDIENCE, **kwargs})


def introspection_validator(fake: FakeAuthorizationServer, **kwargs: Any) -> IntrospectionValidator:
    return IntrospectionValidator(authorization_server(fake), client_id="rs", **{"audience": AUDIENCE, **kwargs})


def harness(fake: FakeAuthorizationServer, validator: TokenValidator | None = None,
            routes: Callable[[], list[Route]] = app_routes, **middleware: Any) -> Harness:
    validator = validator or jwt_validator(fake)
    protected = BearerTokenMiddleware(Starlette(routes=routes()), validator, realm="test", exempt_paths={"/open"},
                                      **middleware)
    tls = TLSLayer(protected)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=tls), base_url="https://api.test")  # type: ignore[arg-type]
    return Harness(fake, tls, validator, protected, client)
