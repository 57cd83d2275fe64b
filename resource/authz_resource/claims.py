"""Claim checks shared by the JWT and the introspection paths (``authz_resource.policy`` runs
them): issuer, audience, presence, time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from authz_resource.errors import InvalidToken

__all__ = ["check_audience", "check_issuer", "check_required", "check_time", "numeric_date"]


def check_issuer(claims: Mapping[str, Any], issuer: str, *, required: bool) -> None:
    iss = claims.get("iss")
    if iss is None and not required:
        return
    if iss != issuer:
        raise InvalidToken("wrong_issuer", "the access token was not issued by the expected authorization server",
                           detail=f"iss {iss!r}, expected {issuer!r}")


def check_required(claims: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Each of ``names`` is present (RFC 9068 §2.2 lists the claims a JWT access token MUST
    carry); the type of each is checked where it is used."""
    missing = [name for name in names if claims.get(name) is None]
    if missing:
        raise InvalidToken("malformed_claims", f"the access token lacks required claims: {', '.join(missing)} "
                           "(RFC 9068 section 2.2)", detail=f"missing {missing}")


def check_audience(claims: Mapping[str, Any], audience: str, source: Literal["jwt", "introspection"]) -> None:
    """``aud`` (a string or an array of strings, RFC 7519 §4.1.3) includes ``audience``.
    Required in both modes: see ``authz_resource.policy``."""
    aud = claims.get("aud")
    # Named in the description: the client learns which identifier to request its tokens
    # for (RFC 8707 resource), and it is no secret.
    if aud is None:
        if source == "jwt":
            raise InvalidToken("wrong_audience", f"the access token is not meant for this resource server: it has no "
                               f"aud claim (expected {audience})", detail=f"aud absent, expected {audience!r}")
        raise InvalidToken(
            "wrong_audience",
            "the access token is not meant for this resource server: the authorization server's introspection "
            f"answer has no aud (expected {audience})",
            detail=f"introspection answer without aud, expected {audience!r} (members {sorted(claims)[:20]}); "
                   "the authorization server must include aud in its answers (optional in RFC 7662 section 2.2, "
                   "required here)",
        )
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if audiences is None or not all(isinstance(a, str) for a in audiences):
        raise InvalidToken("malformed_claims", "the access token's aud claim is not a string or an array of strings",
                           detail=f"aud={repr(aud)[:100]}")
    if audience not in audiences:
        where = "" if source == "jwt" else " (introspection answer)"
        raise InvalidToken("wrong_audience", f"the access token is not meant for this resource server: its aud does "
                           f"not include {audience}",
                           detail=f"aud {repr(aud)[:300]}{where}, expected {audience!r}")


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """``claims[name]`` as a NumericDate (RFC 7519 §2), None when absent.

    Only finite numbers: Python's JSON reader accepts ``NaN`` and ``Infinity``, and an
    ``exp`` of NaN compares false with every time, so it would never expire; an integer of
    hundreds of digits does not even convert to a float."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken("malformed_claims", f"the access token's {name} claim is not a number",
                           detail=f"{name}={str(value)[:40]!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidToken("malformed_claims", f"the access token's {name} claim is not a valid time",
                           detail=f"{name}={str(value)[:40]!r}")
    return number


def check_time(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """``exp``, ``nbf`` and ``iat`` against ``now``, with ``leeway`` seconds of tolerance
    for clock skew between the authorization server and this host. Each, when present,
    must be a finite number; whether ``exp`` is required is the caller's decision."""
    exp = numeric_date(claims, "exp")
    if exp is not None and now >= exp + leeway:
        raise InvalidToken("expired", "the access token has expired",
                           detail=f"exp {exp:.0f}, now {now:.0f}, leeway {leeway}s")
    nbf = numeric_date(claims, "nbf")
    if nbf is not None and now < nbf - leeway:
        raise InvalidToken("not_yet_valid", "the access token is not valid yet (nbf is in the future)",
                           detail=f"nbf {nbf:.0f}, now {now:.0f}, leeway {leeway}s")
    iat = numeric_date(claims, "iat")
    if iat is not None and now < iat - leeway:
        raise InvalidToken("not_yet_valid", "the access token is not valid yet (issued in the future, iat)",
                           detail=f"iat {iat:.0f}, now {now:.0f}, leeway {leeway}s")
