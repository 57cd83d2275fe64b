"""The ASGI base of every endpoint a client calls with its certificate (token, introspection,
revocation): read the form and resolve the client (async), so that authlib's synchronous core
finds everything ready, then send its ``JSONReply``.

These endpoints are plain ASGI apps under Starlette's router (which still answers 404/405 and
turns exceptions into JSON 500s): the token endpoint is the server's hot path, and a Starlette
``Request``/``Response`` pair around it costs more than authlib's whole grant.
"""

from __future__ import annotations

from typing import ClassVar

import structlog
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from authz.clients.directory import UnusableRegistration
from authz.clients.model import RegisteredClient
from authz.context import ServerContext
from authz.oauth.reply import JSONReply
from authz.oauth.request import ClientDisconnected, ClientRequest, MalformedForm, peer_address, read_form
from authz.oauth.server import oauth_error_response

__all__ = ["ClientEndpoint"]

log = structlog.get_logger("authz.endpoints")


class ClientEndpoint:
    """Subclasses name the endpoint and its path, and ``answer`` a resolved request."""

    name: ClassVar[str]  # in log lines: "token", "introspection", "revocation"
    path: ClassVar[str]

    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            resolved = await self.resolve(scope, receive)
        except ClientDisconnected:
            log.info("client_disconnected", endpoint=self.name, peer=peer_address(scope))
            return
        reply = resolved if isinstance(resolved, JSONReply) else await self.answer(resolved)
        await reply.send(send)

    async def resolve(self, scope: Scope, receive: Receive) -> ClientRequest | JSONReply:
        """The request with its form read and its client looked up, or the refusal of a
        malformed one."""
        headers = Headers(scope=scope)
        try:
            form = await read_form(headers, receive)
        except MalformedForm as exc:
            return oauth_error_response(InvalidRequestError(str(exc)), endpoint=self.name, peer=peer_address(scope))
        client: RegisteredClient | UnusableRegistration | None = None
        client_id = form.get("client_id")
        if client_id:
            try:
                client = await self.context.clients.get(client_id)
            except UnusableRegistration as unusable:
                client = unusable
        return ClientRequest(
            endpoint=self.name,
            uri=self.context.issuer + self.path,
            headers=headers,
            form=form,
            scope=scope,
            client=client,
        )

    async def answer(self, request: ClientRequest) -> JSONReply:
        raise NotImplementedError
