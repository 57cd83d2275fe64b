"""The ASGI base of every endpoint a client calls with its certificate (token, introspection,
revocation): read the form and resolve the client (async), so that authlib's synchronous core
finds everything ready, then send its ``JSONReply``.

These endpoints are plain ASGI apps that ``authz.app`` calls before Starlette, so they turn
their own errors into JSON answers (a failing store into 503, the unexpected into 500): the
token endpoint is the server's hot path, and Starlette's ``Request``/``Response`` and
middleware around it cost more than authlib's grant.
"""

from __future__ import annotations

import dataclasses
from time import perf_counter
from typing import ClassVar

import structlog
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from authz.certificates.presented import presented_certificate
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
                await self._prepare_chain(scope)
            elif isinstance(client, RegisteredClient) and client.jwks_uri is not None:
                client = await self._with_fetched_certificates(client, client.jwks_uri, scope)
        return ClientRequest(
            endpoint=self.name,
            uri=self.uri,
            headers=headers,
            form=form,
            scope=scope,
            client=client,
        )

    async def _with_fetched_certificates(self, client: RegisteredClient, jwks_uri: str,
                                         scope: Scope) -> RegisteredClient:
        """The client with the certificates of its jwks_uri as registered ones (fetched first
        when the presented certificate is not among those cached, within the cooldown), so that
        client authentication checks them like registered jwks, in the same one place."""
        try:
            presented = presented_certificate(scope)
        except CertificateRejected:
            presented = None  # refused by client authentication, with its reason; no fetch for it
        certificates = await self.context.jwks_uri_certificates.certificates(
            client.client_id, jwks_uri, presented.leaf_der if presented is not None else None)
        return dataclasses.replace(client, registered_certificates=certificates)

    async def _prepare_chain(self, scope: Scope) -> None:
        """Validate the presented chain off the event loop, and get its revocation data (at
        most ``--revocation-max-wait`` seconds), so that client authentication (synchronous,
        inside authlib) finds both verdicts remembered. Two lookups when they are."""
        try:
            presented = presented_certificate(scope)
        except CertificateRejected:
            return  # refused, with its reason, by client authentication
        if presented is None:
            return
        validator = self.context.validator
        if not validator.has_verdict(presented):
            await validator.prepare(presented)
        revocation = self.context.certificate_revocation
        if revocation is not None and not revocation.has_verdict(presented):
            path = validator.validated_path(presented)
            if path is not None:  # a refused chain needs no revocation data
                await revocation.prepare(presented, path)

    async def answer(self, request: ClientRequest) -> JSONReply:
        raise NotImplementedError
