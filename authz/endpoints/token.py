"""``POST /token``: the token endpoint (RFC 6749 §3.2) with mTLS client authentication."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnsupportedGrantTypeError

from authz.clipping import clipped
from authz.endpoints.client import ClientEndpoint
from authz.oauth.reply import JSONReply, TokenReply
from authz.oauth.request import ClientRequest
from authz.oauth.server import oauth_error_response

__all__ = ["TokenEndpoint"]

_LOGGED_GRANT_TYPE_CHARS = 100  # the longest registered grant type URNs are about 60


class _UnsupportedGrantType(UnsupportedGrantTypeError):  # type: ignore[misc]
    def __init__(self, grant_type: str) -> None:
        super().__init__(grant_type)
        # authlib would echo the grant_type, which is client input: name what is supported.
        self.description = "only grant_type=client_credentials is supported"

    def get_error_description(self) -> str:
        return str(self.description)


class TokenEndpoint(ClientEndpoint):
    name = "token"
    path = "/token"

    async def answer(self, request: ClientRequest) -> JSONReply:
        grant_type = request.form.get("grant_type")
        if not grant_type:
            description = "grant_type is required"
            if request.asgi_scope.get("query_string"):
                # RFC 6749 §3.2: parameters travel in the body; a client that put them in the
                # URL would otherwise not see why they were not read.
                description += " in the request body (parameters in the URL query are not read)"
            return oauth_error_response(InvalidRequestError(description), endpoint=self.name,
                                        peer=request.peer, client_id=request.logged_client_id)
        if grant_type != "client_credentials":
            return oauth_error_response(_UnsupportedGrantType(grant_type), endpoint=self.name, peer=request.peer,
                                        client_id=request.logged_client_id,
                                        grant_type=clipped(grant_type, _LOGGED_GRANT_TYPE_CHARS))
        reply: JSONReply | TokenReply = self.context.server.create_token_response(request)
        return await reply.signed() if isinstance(reply, TokenReply) else reply
