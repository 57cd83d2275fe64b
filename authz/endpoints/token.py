"""``POST /token``: the token endpoint (RFC 6749 §3.2) with mTLS client authentication."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnsupportedGrantTypeError
from starlette.requests import Request
from starlette.responses import Response

from authz.context import ServerContext
from authz.endpoints.client_request import client_request
from authz.oauth.server import oauth_error_response

__all__ = ["token_endpoint"]


class _UnsupportedGrantType(UnsupportedGrantTypeError):  # type: ignore[misc]
    def __init__(self, grant_type: str) -> None:
        super().__init__(grant_type)
        # authlib would echo the grant_type, which is client input: name what is supported.
        self.description = "only grant_type=client_credentials is supported"

    def get_error_description(self) -> str:
        return str(self.description)


async def token_endpoint(request: Request) -> Response:
    context: ServerContext = request.app.state.context
    resolved = await client_request(request, "token", "/token")
    if isinstance(resolved, Response):
        return resolved
    grant_type = resolved.form.get("grant_type")
    if not grant_type:
        return oauth_error_response(InvalidRequestError("grant_type is required"), endpoint="token",
                                    peer=resolved.peer, client_id=resolved.form.get("client_id"))
    if grant_type != "client_credentials":
        return oauth_error_response(_UnsupportedGrantType(grant_type), endpoint="token", peer=resolved.peer,
                                    client_id=resolved.form.get("client_id"), grant_type=grant_type[:100])
    response: Response = context.server.create_token_response(resolved)
    return response
