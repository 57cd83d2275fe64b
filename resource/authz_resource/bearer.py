"""Find the bearer token of a request: the ``Authorization`` header only (RFC 6750 §2.1).

The form-body (§2.2) and URI-query (§2.3) methods are not accepted: tokens in URIs end up
in logs and browser histories, and reading the body would consume it before the
application sees it. A token in the query is refused explicitly, so the client learns why.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from authz_resource._asgi import Scope
from authz_resource.errors import InvalidRequest, NoToken

__all__ = ["bearer_token"]

# b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
# Checked with bytes.translate (deleting the alphabet must leave nothing): about three
# times cheaper than a regex over a ~800-byte JWT, and this runs on every request.
_B64TOKEN_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
_MAX_TOKEN = 16 * 1024


def bearer_token(scope: Scope) -> str:
    """The token, or a refusal: ``NoToken`` (nothing usable was sent) or ``InvalidRequest``
    (something was sent, wrongly)."""
    header: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if header is not None:
                raise InvalidRequest("repeated_authorization", "the request has more than one Authorization header")
            header = value
    query = scope.get("query_string", b"")
    if query and b"access_token" in query and any(k == "access_token" for k, _ in parse_qsl(query.decode("latin-1"))):
        raise InvalidRequest(
            "token_in_query",
            "access tokens are not accepted in the URI query; send it in the Authorization header "
            "(Authorization: Bearer <token>)",
        )
    if header is None:
        raise NoToken("no_authorization", "this resource needs an access token: send Authorization: Bearer <token>")
    scheme, _, credentials = header.strip(b" ").partition(b" ")
    if scheme.lower() != b"bearer":
        raise NoToken(
            "other_scheme",
            "the Authorization header does not use the Bearer scheme",
            detail=f"scheme {scheme[:20].decode('latin-1')!r}",
        )
    credentials = credentials.lstrip(b" ")
    if not credentials:
        raise InvalidRequest("empty_bearer", "the Authorization header has the Bearer scheme but no token")
    body = credentials.rstrip(b"=")
    if len(credentials) > _MAX_TOKEN or not body or body.translate(None, _B64TOKEN_ALPHABET):
        raise InvalidRequest(
            "malformed_bearer",
            "the bearer token is not a b64token (RFC 6750 section 2.1) or is too long",
            detail=f"length {len(credentials)}",
        )
    return credentials.decode("ascii")
