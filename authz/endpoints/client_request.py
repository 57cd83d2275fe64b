"""The first step of every endpoint a client calls with its certificate: read the form and
resolve the client (async), so that authlib's synchronous core finds everything ready."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from starlette.requests import Request
from starlette.responses import Response

from authz.clients.directory import UnusableRegistration
from authz.clients.model import RegisteredClient
from authz.context import ServerContext
from authz.oauth.request import ClientRequest, MalformedForm, peer_address, read_form
from authz.oauth.server import oauth_error_response

__all__ = ["client_request"]


async def client_request(request: Request, endpoint: str, path: str) -> ClientRequest | Response:
    """The resolved request, or the error response for a malformed one."""
    context: ServerContext = request.app.state.context
    try:
        form = await read_form(request)
    except MalformedForm as exc:
        return oauth_error_response(InvalidRequestError(str(exc)), endpoint=endpoint,
                                    peer=peer_address(request.scope))
    client: RegisteredClient | UnusableRegistration | None = None
    client_id = form.get("client_id")
    if client_id:
        try:
            client = await context.clients.get(client_id)
        except UnusableRegistration as unusable:
            client = unusable
    return ClientRequest(
        endpoint=endpoint,
        uri=context.issuer + path,
        headers=request.headers,
        form=form,
        scope=request.scope,
        client=client,
    )
