"""RFC 9068 JWT access tokens, verified with joserfc against the authorization server's
published keys.

What is refused before any key is looked up: anything but three base64url segments, an
``alg`` outside the configured list (so ``none`` and ``HS256``-with-the-public-key never
reach a verifier), a ``typ`` other than ``at+jwt``, a ``crit`` header. Then the key named by
``kid`` must be published for that algorithm (its JWK ``alg``, when it has one, and its
type and curve, which joserfc checks) before the signature is verified. The claims are
judged by ``authz_resource.policy``, as introspection answers are.

A verified token is cached (keyed by the whole token, signature included) until it
expires: signature verification costs about 100 µs, a cache hit under 1 µs. Entries are
dropped when a key disappears from the JWK Set, so retiring a key takes effect.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any

import structlog
from joserfc import jws
from joserfc.errors import BadSignatureError, InvalidKeyCurveError, InvalidKeyTypeError, JoseError, SecurityWarning

from authz_resource.authorization_server import AuthorizationServer
from authz_resource.cache import TokenCache
from authz_resource.errors import InvalidToken, VerificationUnavailable
from authz_resource.jwks import KeyCache
from authz_resource.policy import TokenPolicy
from authz_resource.token import AccessToken
from authz_resource.validator import TokenValidator

__all__ = ["ASYMMETRIC_ALGORITHMS", "JWTAccessTokenValidator", "accepted_algorithms"]

log = structlog.get_logger("authz_resource.jwt")

# Public-key signature algorithms only: an HMAC algorithm would let anyone holding the
# published (public) key mint tokens. EdDSA (RFC 8037) is what most issuers still publish;
# Ed25519/Ed448 are its fully specified names (RFC 9864).
ASYMMETRIC_ALGORITHMS = frozenset({
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA", "Ed25519", "Ed448",
})
_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_NOT_A_JWT = "the access token is not a JWT (three base64url segments)"


def accepted_algorithms(algorithms: Collection[str]) -> frozenset[str]:
    """Validate the configured list of JWS algorithms (names as in the token's ``alg``)."""
    if isinstance(algorithms, str):
        raise ValueError(f"algorithms is a list of names, e.g. [{algorithms!r}]")
    if not algorithms:
        raise ValueError(f"algorithms: name at least one of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
    for alg in algorithms:
        if not isinstance(alg, str) or alg.lower() == "none":
            raise ValueError(f"algorithms: {alg!r} is not allowed: it means unsigned tokens, which anyone can make")
        if alg.upper().startswith("HS"):
            raise ValueError(f"algorithms: {alg!r} is not allowed: HMAC would verify with the key the "
                             "authorization server publishes, so anyone could sign tokens; use an asymmetric "
                             "algorithm (ES256 by default)")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"algorithms: {alg!r} is not supported; choose from "
                             f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))} (names are case-sensitive)")
    return frozenset(algorithms)


class JWTAccessTokenValidator(TokenValidator):
    """Validates JWT access tokens of one issuer for one audience.

    ``audience``: this resource server's identifier, an absolute URI; tokens are accepted
    only when their ``aud`` includes it. ``algorithms``: the JWS algorithms accepted
    (``ASYMMETRIC_ALGORITHMS``; ES256 by default). ``opaque``: a validator (typically
    ``IntrospectionValidator``, for the same audience) for tokens that are not JWTs;
    without one, such tokens are ``invalid_token``.
    """

    def __init__(
        self,
        server: AuthorizationServer,
        *,
        audience: str,
        algorithms: Collection[str] = ("ES256",),
        leeway: float = 30.0,
        jwks_max_age: float = 300.0,
        jwks_refresh_cooldown: float = 5.0,
        cache_size: int = 10_000,
        opaque: TokenValidator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = TokenPolicy(server.issuer, audience, leeway)
        self.algorithms = accepted_algorithms(algorithms)
        opaque_policy = getattr(opaque, "policy", None)
        if isinstance(opaque_policy, TokenPolicy) and opaque_policy.audience != self.policy.audience:
            # One resource server, one identifier: a token would otherwise be accepted or
            # refused depending on its format.
            raise ValueError(f"opaque: its audience {opaque_policy.audience!r} differs from {audience!r}")
        self.server = server
        self.issuer = server.issuer
        self.audience = self.policy.audience
        self.leeway = leeway
        self.keys = KeyCache(server.jwks, max_age=jwks_max_age, refresh_cooldown=jwks_refresh_cooldown)
        self._opaque = opaque
        self._clock = clock
        # Keyed by the token itself: only tokens with a valid signature are cached, and the
        # hit path is the hot path (no hashing).
        self._cache: TokenCache[str, AccessToken] = TokenCache(cache_size)
        self._cache_generation = 0

    async def validate(self, token: str) -> AccessToken:
        now = self._clock()
        if self._cache_generation != self.keys.removal_generation:
            self._cache.clear()
            self._cache_generation = self.keys.removal_generation
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        if token.count(".") != 2:
            if self._opaque is not None:
                return await self._opaque.validate(token)
            raise InvalidToken("not_a_jwt", _NOT_A_JWT, detail=f"{token.count('.') + 1} segment(s)")
        verified = await self._verify(token, now)
        # Until exp (plus leeway): check_time has already accepted it for now.
        self._cache.put(token, verified, verified.expires_at + self.leeway)
        return verified

    async def _verify(self, token: str, now: float) -> AccessToken:
        header = _header(token)
        alg = header.get("alg")
        # isinstance first: a list or object would not even be hashable for the set lookup.
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken("algorithm_not_allowed", f"the access token's signing algorithm is not accepted "
                               f"(alg {_short(alg)}; accepted: {', '.join(sorted(self.algorithms))})")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise InvalidToken("wrong_typ", "the token is not a JWT access token (typ must be at+jwt, RFC 9068)",
                               detail=f"typ {_short(typ)}")
        if "crit" in header:
            raise InvalidToken("crit_header", "the access token has critical header parameters this server "
                               "does not understand", detail=f"crit {_short(header['crit'])}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed_jwt", "the access token's kid header is not a string")
        key = await self.keys.key(kid)
        if key.alg is not None and key.alg != alg:
            raise InvalidToken("algorithm_mismatch", "the access token's algorithm does not match its key",
                               detail=f"alg {alg}, key {kid!r} is for {key.alg}")
        try:
            with warnings.catch_warnings():
                # joserfc warns on every EdDSA token that RFC 9864 deprecates the name; the
                # operator chose it, and a warning per request would flood the log.
                warnings.simplefilter("ignore", SecurityWarning)
                verified = jws.deserialize_compact(token, key, algorithms=[alg])
        except BadSignatureError:
            raise InvalidToken("bad_signature", "the access token's signature is not valid",
                               detail=f"kid {kid!r}, alg {alg}") from None
        except (InvalidKeyCurveError, InvalidKeyTypeError) as exc:
            raise InvalidToken("algorithm_mismatch", "the access token's algorithm does not match its key",
                               detail=f"alg {alg}, key {kid!r}: {exc}") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("malformed_jwt", "the access token is not a well-formed JWS",
                               detail=f"{type(exc).__name__}: {exc}") from None
        try:
            claims = json.loads(verified.payload)
        except (TypeError, ValueError, RecursionError):
            claims = None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed_jwt", "the access token's payload is not a JSON object")
        return self.policy.accept(claims, now, "jwt")

    async def warm_up(self) -> None:
        try:
            await self.keys.load()
        except VerificationUnavailable as exc:
            log.warning("authorization_server_not_ready", issuer=self.issuer, reason=exc.reason, detail=exc.detail)

    async def aclose(self) -> None:
        await self.keys.aclose()
        await self.server.aclose()
        if self._opaque is not None:
            await self._opaque.aclose()


def _header(token: str) -> Mapping[str, Any]:
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        # RecursionError: a header of a few thousand nested arrays fits in a 16 KiB token.
        header = None
    if not isinstance(header, dict):
        raise InvalidToken("malformed_jwt", "the access token's JOSE header is not base64url JSON")
    return header


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
