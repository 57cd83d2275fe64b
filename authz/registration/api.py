"""``/register`` (RFC 7591) and ``/register/{client_id}`` (RFC 7592).

Who may do what, decided by the kind of bearer token presented (its prefix says which):

- an administrator: a client that authenticated with its certificate at the token endpoint
  and got an access token for this API (``aud`` = ``ISSUER/register``, scope
  ``clients:manage``), bound to the certificate of this connection. This project's own
  resource-server middleware checks it, as it would for any API. Any operation on any client;
- an initial access token (``authz-iat.``, created with ``authz registration initial-token``):
  registration only, once or until it expires;
- a registration access token (``authz-rat.``, returned at registration): read, replace and
  delete its own client only.

Anonymous registration is not offered. The metadata is validated by the same code as the CLI
(``RegisteredClient.from_metadata``), and every change writes one audit line.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from authz.clients.directory import ClientDirectory
from authz.clients.model import InvalidClientMetadata, RegisteredClient
from authz.clients.review import review_registration
from authz.oauth.request import peer_address
from authz.registration.constants import REGISTRATION_PATH, REGISTRATION_SCOPE
from authz.registration.credentials import IAT_PREFIX, RAT_PREFIX, RegistrationCredentials
from authz.registration.local_tokens import LocalTokenValidator
from authz.registration.metadata import MAX_BODY_BYTES, public_metadata, requested_metadata
from authz.storage.base import StorageError
from authz_resource.bearer import bearer_token
from authz_resource.errors import InvalidToken, Refusal, VerificationUnavailable
from authz_resource.middleware import BearerTokenMiddleware, Challenger
from authz_resource.token import AccessToken

__all__ = ["REGISTRATION_PATH", "REGISTRATION_SCOPE", "RegistrationAPI"]

log = structlog.get_logger("authz.registration")

_REALM = "registration"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class RegistrationAPI:
    """The ASGI application behind both paths."""

    def __init__(self, clients: ClientDirectory, credentials: RegistrationCredentials, validator: LocalTokenValidator,
                 *, issuer: str, refuse_expired_certificates: bool = False) -> None:
        self._clients = clients
        self._refuse_expired = refuse_expired_certificates
        self._credentials = credentials
        self._issuer = issuer
        self._challenger = Challenger(_REALM)
        self._as_administrator = BearerTokenMiddleware(self._administrator, validator, realm=_REALM,
                                                       required_scopes=[REGISTRATION_SCOPE])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            presented = bearer_token(scope)
        except Refusal:
            presented = ""  # the middleware answers missing or malformed credentials
        if presented.startswith((RAT_PREFIX, IAT_PREFIX)):
            response = await self._with_secret(Request(scope, receive), presented)
            await response(scope, receive, send)
        else:
            await self._as_administrator(scope, receive, send)

    async def _administrator(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = scope["auth"]
        assert isinstance(token, AccessToken)  # the middleware let the request through
        response = await self._operate(Request(scope, receive), actor=f"admin:{token.client_id}")
        await response(scope, receive, send)

    async def _with_secret(self, request: Request, presented: str) -> Response:
        client_id = _path_client_id(request)
        try:
            if presented.startswith(IAT_PREFIX):
                if client_id is not None or request.method != "POST":
                    return self._refuse(request, InvalidToken(
                        "initial_token_misused", "an initial access token only registers a client (POST /register)"))
                access = await self._credentials.use_initial_token(presented)
                if access is None:
                    return self._refuse(request, InvalidToken(
                        "initial_token_unknown", "the initial access token is unknown, used or expired"))
                return await self._operate(request, actor=f"initial_access_token:{access.token_id}")
            if client_id is None or not await self._credentials.registration_token_matches(client_id, presented):
                return self._refuse(request, InvalidToken(
                    "registration_token_mismatch",
                    "the registration access token is not valid for this client's configuration endpoint",
                    detail=f"path client_id {client_id!r}"))
            return await self._operate(request, actor="registration_access_token")
        except StorageError as exc:
            return self._unavailable(request, exc)

    async def _operate(self, request: Request, *, actor: str) -> Response:
        """The operation the method and path name; the caller has decided that ``actor`` may
        perform it on this path."""
        client_id = _path_client_id(request)
        try:
            if client_id is None:
                if request.method != "POST":
                    return _error(405, "invalid_request", "use POST to register a client", Allow="POST")
                return await self._register(request, actor)
            if request.method == "GET":
                return await self._read(client_id)
            if request.method == "PUT":
                return await self._replace(request, client_id, actor)
            if request.method == "DELETE":
                return await self._delete(client_id, actor)
            return _error(405, "invalid_request", "use GET, PUT or DELETE on a client configuration endpoint",
                          Allow="GET, PUT, DELETE")
        except StorageError as exc:
            return self._unavailable(request, exc)

    async def _register(self, request: Request, actor: str) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        client_id = secrets.token_urlsafe(16)
        try:
            if isinstance(body, Mapping) and "client_id" in body:
                raise InvalidClientMetadata("client_id is issued by the server (RFC 7591 section 3.2.1); "
                                            "do not send one")
            metadata = requested_metadata(body, client_id)
            warnings = self._review(metadata)
            client = await self._clients.register(metadata, actor=actor)
        except InvalidClientMetadata as exc:
            return _invalid_metadata(request, str(exc), actor)
        registration_token = await self._credentials.issue_registration_token(client_id)
        document = {**public_metadata(client.metadata), "registration_access_token": registration_token,
                    "registration_client_uri": self._client_uri(client_id), **_warned(warnings, client_id, actor)}
        return JSONResponse(document, status_code=201, headers=_NO_STORE)

    def _review(self, metadata: Mapping[str, Any]) -> list[str]:
        """The warnings about a registration; ``InvalidClientMetadata`` for one refused
        (expired certificates, when the server refuses them)."""
        return review_registration(RegisteredClient.from_metadata(metadata), refuse_expired=self._refuse_expired)

    async def _read(self, client_id: str) -> Response:
        metadata = await self._clients.metadata(client_id)
        if metadata is None:
            return _error(404, "invalid_client", "no client is registered under this client_id")
        return self._document(metadata, client_id)

    async def _replace(self, request: Request, client_id: str, actor: str) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        current = await self._clients.metadata(client_id)
        if current is None:
            return _error(404, "invalid_client", "no client is registered under this client_id")
        try:
            if isinstance(body, Mapping) and body.get("client_id", client_id) != client_id:
                raise InvalidClientMetadata("client_id must be the client's own (RFC 7592 section 2.2)")
            metadata = requested_metadata(body, client_id)
            if "client_id_issued_at" in current:
                metadata["client_id_issued_at"] = current["client_id_issued_at"]
            warnings = self._review(metadata)
            client = await self._clients.register(metadata, replace=True, actor=actor)
        except InvalidClientMetadata as exc:
            return _invalid_metadata(request, str(exc), actor)
        return self._document(client.metadata, client_id, _warned(warnings, client_id, actor))

    async def _delete(self, client_id: str, actor: str) -> Response:
        if not await self._clients.remove(client_id, actor=actor):
            return _error(404, "invalid_client", "no client is registered under this client_id")
        await self._credentials.forget_registration_token(client_id)
        return Response(status_code=204, headers=_NO_STORE)

    def _document(self, metadata: Mapping[str, Any], client_id: str, extra: Mapping[str, Any] | None = None
                  ) -> Response:
        return JSONResponse({**public_metadata(metadata), "registration_client_uri": self._client_uri(client_id),
                             **(extra or {})}, headers=_NO_STORE)

    def _client_uri(self, client_id: str) -> str:
        from urllib.parse import quote

        return f"{self._issuer}{REGISTRATION_PATH}/{quote(client_id, safe='')}"

    def _refuse(self, request: Request, refusal: Refusal) -> Response:
        self._challenger.log(refusal, request.scope)
        status, headers, body = self._challenger.response(refusal)
        response = Response(body, status_code=status)
        response.raw_headers = list(headers)
        return response

    def _unavailable(self, request: Request, exc: StorageError) -> Response:
        refusal = VerificationUnavailable("store_unavailable", "the server cannot use its store right now; retry "
                                          "later", detail=str(exc))
        response = self._refuse(request, refusal)
        response.headers["Retry-After"] = "5"
        return response


def _path_client_id(request: Request) -> str | None:
    """None for ``/register``, the client_id of ``/register/{client_id}``."""
    path: str = request.scope["path"]
    if path == REGISTRATION_PATH:
        return None
    from urllib.parse import unquote

    return unquote(path[len(REGISTRATION_PATH) + 1:])


async def _json_body(request: Request) -> Any:
    """The JSON body, or the response refusing it (413 past ``MAX_BODY_BYTES``, 400 otherwise)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return _error(400, "invalid_request", "the body must be application/json (RFC 7591 section 3.1)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _error(413, "invalid_request", f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)  # joined once, below: not copied once a piece
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, "invalid_request", f"the body is not valid JSON: {exc}"[:200])
    except RecursionError:  # arrays or objects nested thousands deep: no metadata looks like that
        return _error(400, "invalid_request", "the body is not valid client metadata: JSON nested too deeply")


def _warned(warnings: list[str], client_id: str, actor: str) -> dict[str, Any]:
    """The answer's ``warnings`` member (not RFC 7591's: clients ignore members they do not
    know), and the operator's line, when a registration was stored with warnings."""
    if not warnings:
        return {}
    log.warning("client_registration_warning", actor=actor, client_id=client_id, warnings=warnings)
    return {"warnings": warnings}


def _invalid_metadata(request: Request, description: str, actor: str) -> Response:
    log.warning("client_registration_refused", actor=actor, method=request.method, path=request.scope["path"],
                peer=peer_address(request.scope), error="invalid_client_metadata", error_description=description)
    return _error(400, "invalid_client_metadata", description)


def _error(status: int, error: str, description: str, **headers: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**_NO_STORE, **headers})
