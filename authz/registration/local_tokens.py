"""Access tokens checked by the authorization server itself, for the resource servers it is
(the registration API): this project's resource-server middleware in front, with a validator
that reads the server's own keys, revocation list and client registry instead of fetching
JWKS or calling introspection over HTTP."""

from __future__ import annotations

from authz.clients.directory import ClientDirectory, UnusableRegistration
from authz.storage.base import StorageError
from authz.tokens.revocation import RevocationList
from authz.tokens.verification import AccessTokenVerifier
from authz_resource.errors import InvalidToken, VerificationUnavailable
from authz_resource.token import AccessToken
from authz_resource.validator import TokenValidator

__all__ = ["LocalTokenValidator"]


class LocalTokenValidator(TokenValidator):
    def __init__(self, verifier: AccessTokenVerifier, revocations: RevocationList, clients: ClientDirectory,
                 *, audience: str) -> None:
        self._verifier = verifier
        self._revocations = revocations
        self._clients = clients
        self._audience = audience

    async def validate(self, token: str) -> AccessToken:
        verified = self._verifier.verify(token)
        if verified is None:
            raise InvalidToken("unverifiable", "the access token was not issued by this authorization server "
                               "(signature, issuer or format)")
        if verified.is_expired():
            raise InvalidToken("expired", "the access token has expired", detail=f"exp {verified.expires_at}")
        if self._audience not in verified.audiences:
            raise InvalidToken("wrong_audience", f"the access token is not meant for this API (aud): request it "
                               f"with resource={self._audience}", detail=f"aud {verified.audiences!r}")
        try:
            if await self._revocations.is_revoked(verified.jti):
                raise InvalidToken("revoked", "the access token has been revoked", detail=f"jti {verified.jti}")
            if await self._clients.get(verified.client_id) is None:
                raise InvalidToken("client_removed", "the access token's client is no longer registered",
                                   detail=f"client_id {verified.client_id!r}")
        except UnusableRegistration as exc:
            raise InvalidToken("client_unusable", "the access token's client registration is unusable",
                               detail=str(exc)) from None
        except StorageError as exc:
            raise VerificationUnavailable("store_unavailable", "the server cannot check the access token right "
                                          "now; retry later", detail=str(exc)) from None
        return AccessToken.from_claims(verified.claims, "jwt")
