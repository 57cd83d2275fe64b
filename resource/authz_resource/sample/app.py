"""The sample API: accounts, readable with ``accounts:read``, creatable with ``accounts:write``.

    GET  /health, /healthz          no token (exempt): the process answers (probes)
    GET  /accounts                  accounts:read
    GET  /accounts/{account_id}     accounts:read
    POST /accounts                  accounts:write   {"owner": "...", "currency": "EUR"}

Each route declares its scope with ``@require_scopes``: a token without it gets 403
``insufficient_scope`` naming the scope. Request bodies over ``max_body_bytes`` (16 KiB by
default) are refused with 413 by the middleware, before any endpoint runs.

The store is a dict in the application's state: a sample, not a bank.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz.endpoints.failure import http_refusal
from authz.oauth.request import peer_address
from authz_resource import BearerTokenMiddleware, TokenValidator, require_scopes

__all__ = ["create_app", "routes"]

log = structlog.get_logger("authz_resource.sample")

_CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "JPY"})
MAX_BODY_BYTES = 16 * 1024  # an account is two short strings


def _seed() -> dict[str, dict[str, Any]]:
    return {
        "acc-1001": {"id": "acc-1001", "owner": "Ada Lovelace", "currency": "EUR", "balance": "1250.00"},
        "acc-1002": {"id": "acc-1002", "owner": "Alan Turing", "currency": "GBP", "balance": "310.42"},
    }


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def healthz(request: Request) -> JSONResponse:
    # The authorization server's liveness answer, so one probe definition fits both.
    return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


@require_scopes("accounts:read")
async def list_accounts(request: Request) -> JSONResponse:
    accounts = request.app.state.accounts
    return JSONResponse({"accounts": list(accounts.values()), "client_id": request.auth.client_id})


@require_scopes("accounts:read")
async def get_account(request: Request) -> JSONResponse:
    account = request.app.state.accounts.get(request.path_params["account_id"])
    if account is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(account)


@require_scopes("accounts:write")
async def create_account(request: Request) -> JSONResponse:
    raw = await request.body()  # at most max_body_bytes: BearerTokenMiddleware read it first
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        body = None
    owner = body.get("owner") if isinstance(body, dict) else None
    currency = body.get("currency", "EUR") if isinstance(body, dict) else None
    # isinstance before the set lookup: a JSON list or object is not hashable.
    if not isinstance(owner, str) or not 0 < len(owner) <= 200 or not isinstance(currency, str) \
            or currency not in _CURRENCIES:
        return JSONResponse({"error": "invalid_account", "error_description":
                             f"send {{'owner': <1-200 chars>, 'currency': one of {sorted(_CURRENCIES)}}}"},
                            status_code=422)
    account = {"id": f"acc-{secrets.token_hex(4)}", "owner": owner, "currency": currency, "balance": "0.00"}
    request.app.state.accounts[account["id"]] = account
    log.info("account_created", account_id=account["id"], client_id=request.auth.client_id)
    return JSONResponse(account, status_code=201)


def routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/accounts", list_accounts, methods=["GET"]),
        Route("/accounts", create_account, methods=["POST"]),
        Route("/accounts/{account_id}", get_account, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, answered and logged as the authorization server's are."""
    assert isinstance(exc, HTTPException)
    body, headers = http_refusal(method=request.method, path=request.url.path, peer=peer_address(request.scope),
                                 status=exc.status_code, detail=str(exc.detail), headers=exc.headers)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def create_app(validator: TokenValidator, *, realm: str = "accounts", allow_unbound_tokens: bool = False,
               max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The Starlette app wrapped in ``BearerTokenMiddleware`` (``/health`` and ``/healthz`` stay open)."""
    app = Starlette(routes=routes(), exception_handlers={HTTPException: _http_error})
    # GET /accounts/ is a 404 like any unknown path, not a redirect a client might follow
    # with its token.
    app.router.redirect_slashes = False
    app.state.accounts = _seed()
    return BearerTokenMiddleware(app, validator, realm=realm, exempt_paths={"/health", "/healthz"},
                                 allow_unbound_tokens=allow_unbound_tokens, max_body_bytes=max_body_bytes)
