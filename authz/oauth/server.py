"""authlib's ``AuthorizationServer``, answering with ``JSONReply`` (sent straight over ASGI)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidScopeError, OAuth2Error

from authz.audiences.model import MAX_RESOURCE_CHARS
from authz.audiences.registry import ResourceServers
from authz.audiences.selection import MAX_RESOURCES, InvalidTargetError
from authz.certificates.chain import ChainValidator
from authz.certificates.revocation.checker import RevocationChecker
from authz.clients.model import MTLS_AUTH_METHODS
from authz.clipping import clipped
from authz.metrics import state as metrics
from authz.oauth.client_auth import ClientAuthenticator
from authz.oauth.grants import MutualTLSClientCredentialsGrant
from authz.oauth.reply import JSONReply, TokenReply
from authz.oauth.request import ClientRequest
from authz.oauth.token_endpoints import MutualTLSIntrospectionEndpoint, MutualTLSRevocationEndpoint
from authz.tokens.access_token import AccessTokenIssuer

__all__ = ["MutualTLSAuthorizationServer", "log_refusal", "oauth_error_response"]

log = structlog.get_logger("authz.token")

# The client's description names only the unregistered scopes; the operator sees what was
# asked, up to this many characters.
_LOGGED_SCOPE_CHARS = 200


def log_refusal(error: OAuth2Error, *, endpoint: str, peer: str | None, **fields: Any) -> None:
    """The operator's line for a refused request (client authentication failures have their
    own, richer line: ``authz.oauth.client_auth``), and its count."""
    counter = metrics.ACTIVE
    if counter is not None:
        # error.error is a code of the library or ours; ``reason`` where one error code has
        # several causes worth telling apart (set by whoever raised it).
        counter.refused(endpoint, error.error, getattr(error, "metrics_reason", None) or error.error)
    log.warning(
        "request_refused",
        endpoint=endpoint,
        peer=peer,
        status=error.status_code,
        error=error.error,
        error_description=error.description,  # what the client received
        **fields,
    )


def oauth_error_response(error: OAuth2Error, *, endpoint: str, peer: str | None, **fields: Any) -> JSONReply:
    """Refuse a request before authlib runs (malformed form, missing or unsupported grant)."""
    log_refusal(error, endpoint=endpoint, peer=peer, **fields)
    return JSONReply.of(*error())


class MutualTLSAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, token_issuer: AccessTokenIssuer, validator: ChainValidator,
                 resource_servers: ResourceServers, revocation: RevocationChecker | None = None) -> None:
        super().__init__()
        self.token_issuer = token_issuer
        self.resource_servers = resource_servers
        self.register_grant(MutualTLSClientCredentialsGrant)
        self.register_endpoint(MutualTLSIntrospectionEndpoint)
        self.register_endpoint(MutualTLSRevocationEndpoint)
        self.client_authenticator = ClientAuthenticator(validator, realm=token_issuer.issuer, revocation=revocation)
        for method in MTLS_AUTH_METHODS:
            self.register_client_auth_method(method, self.client_authenticator.for_method(method))

    # --- authlib framework hooks ------------------------------------------------------
    def query_client(self, client_id: str) -> Any:
        # Clients are resolved asynchronously before authlib runs (see ClientRequest).
        raise RuntimeError("query_client is not used: clients are resolved before authlib runs")

    def save_token(self, token: dict[str, Any], request: ClientRequest) -> None:
        # JWT access tokens are self-contained; nothing to store.
        return None

    def create_oauth2_request(self, request: ClientRequest) -> ClientRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> JSONReply | TokenReply:
        return TokenReply.pending(status, body, headers) or JSONReply.of(status, body, headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def handle_error_response(self, request: ClientRequest, error: OAuth2Error) -> JSONReply:
        # Every error authlib's core raises passes here: log it once, unless the client
        # authenticator already wrote its own line for it.
        if not getattr(error, "logged", False):
            fields: dict[str, Any] = {"client_id": request.logged_client_id}
            if isinstance(error, InvalidScopeError):
                fields["scope"] = clipped(request.form.get("scope"), _LOGGED_SCOPE_CHARS)
            if isinstance(error, InvalidScopeError | InvalidTargetError) and request.resources:
                fields["resource"] = [clipped(r, MAX_RESOURCE_CHARS) for r in request.resources[:MAX_RESOURCES]]
            log_refusal(error, endpoint=request.endpoint, peer=request.peer, **fields)
        return super().handle_error_response(request, error)  # type: ignore[no-any-return]

    def log_issued(self, request: ClientRequest, token: dict[str, Any], thumbprint: str | None) -> None:
        """One ``token_issued`` line once the token is signed (``AccessTokenIssuer.issue``): a
        signature that fails is a server error, logged as such, and no token was issued."""
        client = request.client

        def signed(access_token: asyncio.Future[str]) -> None:
            if not access_token.cancelled() and access_token.exception() is None:
                counter = metrics.ACTIVE
                if counter is not None:
                    counter.token_issued(client.auth_method, client.client_id)
                log.info(
                    "token_issued",
                    client_id=client.client_id,
                    method=client.auth_method,
                    scope=token.get("scope"),
                    cnf_x5t_s256=thumbprint,
                    peer=request.peer,
                )

        token["access_token"].add_done_callback(signed)
