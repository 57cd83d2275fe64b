"""What a token must say to be accepted here, in one place for both validators: the claims
of a verified JWT and the members of an introspection answer go through the same
``TokenPolicy.accept``, so the two modes cannot drift apart.

Checked in this order, each refusal naming what is wrong:

1. ``iss`` is the configured issuer (required in a JWT; in an introspection answer, checked
   when present: the answer comes from that issuer's endpoint over authenticated TLS);
2. ``aud`` includes this resource server's identifier, in both modes (RFC 9068 §4,
   RFC 8707): the authorization server signs, or answers "active", for tokens of every
   resource server it serves, so only ``aud`` says a token is meant for this one;
3. the other claims RFC 9068 §2.2 requires of a JWT: ``exp sub client_id iat jti`` (an
   introspection answer need not carry them, RFC 7662 §2.2: ``active`` already says the
   token is valid now, and they only identify it);
4. ``exp``, ``nbf``, ``iat`` against the clock, with leeway;
5. the types of what the application reads (``AccessToken.from_claims``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from authz_resource.claims import check_audience, check_issuer, check_required, check_time
from authz_resource.errors import InvalidToken
from authz_resource.token import AccessToken

__all__ = ["INTROSPECTION_REQUIRED", "JWT_REQUIRED", "TokenPolicy", "audience_uri"]

# RFC 9068 §2.2: REQUIRED in a JWT access token.
JWT_REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
# Of an introspection answer with active: true (see the module docstring, step 3).
INTROSPECTION_REQUIRED = ("aud",)

# RFC 3986 §4.3 absolute-URI: scheme ":" hier-part [ "?" query ], printable ASCII. Also no
# '"' or '\': the identifier is quoted in error descriptions (RFC 6750 §3).
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21\x23-\x5b\x5d-\x7e]+")
_IDENTITY = ("client_id", "sub", "jti")


def audience_uri(value: object) -> str:
    """Validate the configured identifier of this resource server: the value the
    authorization server puts in ``aud``, which clients ask for with RFC 8707 ``resource``.
    Compared as an exact string (RFC 7519 §4.1.3): no normalisation here or there."""
    example = "e.g. https://api.example.com"
    if not value or not isinstance(value, str):
        raise ValueError(f"audience is required: this resource server's identifier, the aud its tokens carry "
                         f"({example})")
    if "#" in value:
        raise ValueError(f"audience {value!r} must not have a fragment (RFC 8707 section 2)")
    parts = urlsplit(value)
    if not _ABSOLUTE_URI.fullmatch(value) or (parts.scheme.lower() in ("http", "https") and not parts.hostname):
        raise ValueError(f"audience {value!r} must be an absolute URI (RFC 8707 section 2), {example}")
    return value


class TokenPolicy:
    """Issuer, audience and clock tolerance of one resource server."""

    def __init__(self, issuer: str, audience: str, leeway: float) -> None:
        if not 0 <= leeway <= 300:  # also refuses NaN
            raise ValueError("leeway must be between 0 and 300 seconds")
        self.issuer = issuer
        self.audience = audience_uri(audience)
        self.leeway = leeway

    def accept(self, claims: Mapping[str, Any], now: float, source: Literal["jwt", "introspection"]) -> AccessToken:
        """The verified token, or ``InvalidToken`` carrying the token's identifiers (when it
        has any) for the operator's log line."""
        try:
            check_issuer(claims, self.issuer, required=source == "jwt")
            check_audience(claims, self.audience, source)
            check_required(claims, JWT_REQUIRED if source == "jwt" else INTROSPECTION_REQUIRED)
            check_time(claims, now, self.leeway)
            return AccessToken.from_claims(claims, source)
        except InvalidToken as refusal:
            # Which client sent a token for another API, say: worth a line in the log.
            refusal.log_fields.update({name: value[:200] for name in _IDENTITY
                                       if isinstance(value := claims.get(name), str)})
            refusal.log_fields.setdefault("token_source", source)
            raise
