"""``AccessToken``: what the application gets once a token is verified (``scope["auth"]``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from authz_resource.claims import numeric_date
from authz_resource.errors import InvalidToken

__all__ = ["AccessToken", "parse_scope"]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token. ``claims`` are the JWT claims (RFC 9068) or the members of
    the introspection response (RFC 7662); the other fields are typed views of them."""

    claims: Mapping[str, Any]
    scopes: frozenset[str]
    expires_at: float
    not_before: float | None
    client_id: str | None
    subject: str | None
    jti: str | None
    # cnf["x5t#S256"] (RFC 8705 §3.1): the thumbprint of the certificate the token is bound to.
    certificate_thumbprint: str | None
    source: Literal["jwt", "introspection"]

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], source: Literal["jwt", "introspection"]) -> AccessToken:
        """Typed view of already authenticated claims; raises ``InvalidToken`` for members
        of the wrong type (a token is refused, never half-understood).

        ``exp`` is required in a JWT (RFC 9068 §2.2); an introspection response may omit it
        (RFC 7662 §2.2), and the token then lives as long as the authorization server says."""
        exp = numeric_date(claims, "exp")
        if exp is None:
            if source != "introspection":
                raise InvalidToken("malformed_claims", "the access token has no valid exp claim", detail="exp=None")
            exp = math.inf
        return cls(
            # Read-only: a cached token is shared by every request that presents it.
            claims=MappingProxyType(dict(claims)),
            scopes=parse_scope(claims.get("scope")),
            expires_at=exp,
            not_before=numeric_date(claims, "nbf"),
            client_id=_optional_str(claims, "client_id"),
            subject=_optional_str(claims, "sub"),
            jti=_optional_str(claims, "jti"),
            certificate_thumbprint=_thumbprint(claims),
            source=source,
        )

    def log_fields(self) -> dict[str, Any]:
        """Identifies the token in a log line without the token itself."""
        return {"client_id": self.client_id, "sub": self.subject, "jti": self.jti, "token_source": self.source}


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidToken("malformed_claims", f"the access token's {name} claim is not a string",
                           detail=f"{name}={value!r}")
    return value


def _thumbprint(claims: Mapping[str, Any]) -> str | None:
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    thumbprint = cnf.get("x5t#S256") if isinstance(cnf, Mapping) else None
    if thumbprint is None and isinstance(cnf, Mapping):
        # A confirmation method this server does not know (e.g. DPoP's jkt): it cannot
        # check the binding, so it must not treat the token as unbound either.
        raise InvalidToken("unsupported_binding",
                           "the access token is bound by a confirmation method other than x5t#S256",
                           detail=f"cnf members {sorted(cnf)}")
    if not isinstance(thumbprint, str) or not thumbprint:
        raise InvalidToken("malformed_claims", "the access token's cnf claim is malformed", detail=f"cnf={cnf!r}")
    return thumbprint


def parse_scope(value: object) -> frozenset[str]:
    """RFC 9068 §2.2.3 / RFC 7662: ``scope`` is one space-separated string."""
    if value is None:
        return frozenset()
    if not isinstance(value, str):
        raise InvalidToken("malformed_claims", "the access token's scope claim is not a string",
                           detail=f"scope={value!r}")
    return frozenset(value.split())
