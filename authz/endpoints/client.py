"""The ASGI base of every endpoint a client calls with its certificate (token, introspection,
revocation): read the form and resolve the client (async), so that authlib's synchronous core
finds everything ready, then send its ``JSONReply``.

These endpoints are plain ASGI apps that ``authz.app`` calls before Starlette, so they turn
their own errors into JSON answers (a failing store into 503, the unexpected into 500): the
token endpoint is the server's hot path, and Starlette's ``Request``/``Response`` and
middleware around it cost more than authlib's grant.
"""

from __future__ import annotations

from time import perf_counter
from typing import ClassVar

import structlog
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected
from authz.clients.directory import UnusableRegistration
from authz.clients.model import RegisteredClient
from authz.context import ServerContext
from authz.endpoints.failure import ERROR_HEADERS, SERVER_ERROR, log_unhandled, store_unavailable
from authz.oauth.reply import JSONReply
from authz.oauth.request import ClientDisconnected, ClientRequest, MalformedForm, peer_address, read_form
from authz.oauth.server import oauth_error_response
from authz.storage.base import StorageError

__all__ = ["ClientEndpoint"]

log = structlog.get_logger("authz.endpoints")


class ClientEndpoint:
    """Subclasses name the endpoint and its path, and ``answer`` a resolved request."""

    name: ClassVar[str]  # in log lines: "token", "introspection", "revocation"
    path: ClassVar[str]

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.uri = context.issuer + self.path
        # With metrics on, this endpoint's request duration (timed here rather than by a
        # wrapper: one coroutine less per token).
        self.latency = context.metrics.latency[self.name] if context.metrics is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        try:
            resolved = await self.resolve(scope, receive)
            reply = resolved if isinstance(resolved, JSONReply) else await self.answer(resolved)
        except ClientDisconnected:
            log.info("client_disconnected", endpoint=self.name, peer=peer_address(scope))
            return
        except StorageError as exc:
            reply = store_unavailable(self.name, peer_address(scope), exc)
        except Exception as exc:  # nothing has been sent yet: the client gets a clean 500
            log_unhandled(self.path, exc)
            reply = JSONReply.of(500, SERVER_ERROR, ERROR_HEADERS.items())
        await reply.send(send)
        if self.latency is not None:
            self.latency.observe(perf_counter() - started)

    async def resolve(self, scope: Scope, receive: Receive) -> ClientRequest | JSONReply:
        """The request with its form read and its client looked up, or the refusal of a
        malformed one."""
        headers = Headers(scope=scope)
        try:
            form = await read_form(headers, receive)
        except MalformedForm as exc:
            error = InvalidRequestError(str(exc), status_code=exc.status)
            return oauth_error_response(error, endpoint=self.name, peer=peer_address(scope))
        client: RegisteredClient | UnusableRegistration | None = None
        client_id = form.get("client_id")
        if client_id:
            try:
                client = await self.context.clients.get(client_id)
            except UnusableRegistration as unusable:
                client = unusable
            if isinstance(client, RegisteredClient) and client.auth_method == "tls_client_auth":
                unvalidated = self._chain_without_verdict(scope)
                if unvalidated is not None:
                    # Validated off the event loop, so that client authentication (synchronous,
                    # inside authlib) finds the verdict remembered.
                    await self.context.validator.prepare(unvalidated)
        return ClientRequest(
            endpoint=self.name,
            uri=self.uri,
            headers=headers,
            form=form,
            scope=scope,
            client=client,
        )

    def _chain_without_verdict(self, scope: Scope) -> PresentedCertificate | None:
        """The presented chain, if the validator has no verdict on it yet."""
        try:
            presented = presented_certificate(scope)
        except CertificateRejected:
            return None  # refused, with its reason, by client authentication
        if presented is None or self.context.validator.has_verdict(presented):
            return None
        return presented

    async def answer(self, request: ClientRequest) -> JSONReply:
        raise NotImplementedError
