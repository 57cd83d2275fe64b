"""Claim checks shared by the JWT and the introspection paths: issuer, audience, time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz_resource.errors import InvalidToken

__all__ = ["check_audience", "check_issuer", "check_time"]


def check_issuer(claims: Mapping[str, Any], issuer: str, *, required: bool) -> None:
    iss = claims.get("iss")
    if iss is None and not required:
        return
    if iss != issuer:
        raise InvalidToken("wrong_issuer", "the access token was not issued by the expected authorization server",
                           detail=f"iss {iss!r}, expected {issuer!r}")


def check_audience(claims: Mapping[str, Any], audience: str, *, required: bool) -> None:
    aud = claims.get("aud")
    if aud is None and not required:
        return
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise InvalidToken("wrong_audience", "the access token is not meant for this resource server (aud)",
                           detail=f"aud {aud!r}, expected {audience!r}")


def check_time(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """``exp`` (required), ``nbf`` and ``iat`` against ``now``, with ``leeway`` seconds of
    tolerance for clock skew between the authorization server and this host."""
    exp = claims.get("exp")
    if _number(exp) and now >= exp + leeway:  # type: ignore[operator]
        raise InvalidToken("expired", "the access token has expired",
                           detail=f"exp {exp}, now {now:.0f}, leeway {leeway}s")
    nbf = claims.get("nbf")
    if _number(nbf) and now < nbf - leeway:  # type: ignore[operator]
        raise InvalidToken("not_yet_valid", "the access token is not valid yet (nbf is in the future)",
                           detail=f"nbf {nbf}, now {now:.0f}, leeway {leeway}s")
    iat = claims.get("iat")
    if _number(iat) and now < iat - leeway:  # type: ignore[operator]
        raise InvalidToken("not_yet_valid", "the access token is not valid yet (issued in the future, iat)",
                           detail=f"iat {iat}, now {now:.0f}, leeway {leeway}s")
    if iat is not None and not _number(iat):
        raise InvalidToken("malformed_claims", "the access token's iat claim is not a number", detail=f"iat={iat!r}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
