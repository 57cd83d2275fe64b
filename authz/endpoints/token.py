"""``POST /token``: the token endpoint (RFC 6749 §3.2) with mTLS client authentication."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error, UnsupportedGrantTypeError
from starlette.requests import Request
from starlette.responses import Response

from authz.clients.directory import UnusableRegistration
from authz.clients.model import RegisteredClient
from authz.context import ServerContext
from authz.oauth.request import MalformedForm, TokenRequest, read_form
from authz.oauth.server import oauth_error_response

__all__ = ["token_endpoint"]


class _UnsupportedGrantType(UnsupportedGrantTypeError):  # type: ignore[misc]
    def get_error_description(self) -> str:
        # authlib echoes the grant_type; it is client input, so name what is supported instead.
        return "only grant_type=client_credentials is supported"


async def token_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    try:
        form = await read_form(request)
    except MalformedForm as exc:
        return oauth_error_response(InvalidRequestError(str(exc)))
    grant_type = form.get("grant_type")
    if not grant_type:
        return oauth_error_response(InvalidRequestError("grant_type is required"))
    if grant_type != "client_credentials":
        return oauth_error_response(_UnsupportedGrantType(grant_type))
    client: RegisteredClient | UnusableRegistration | None = None
    client_id = form.get("client_id")
    if client_id:
        try:
            client = await context.clients.get(client_id)
        except UnusableRegistration as unusable:
            client = unusable
    oauth_request = TokenRequest(
        uri=context.issuer + "/token",
        headers=request.headers,
        form=form,
        scope=request.scope,
        client=client,
    )
    try:
        response: Response = context.server.create_token_response(oauth_request)
    except OAuth2Error as error:  # raised outside authlib's own handling
        return oauth_error_response(error)
    return response
