"""OAuth errors as authlib classes, with the header this server sends for a refused client."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError

__all__ = ["MutualTLSClientError"]


class MutualTLSClientError(InvalidClientError):  # type: ignore[misc]
    """``invalid_client`` (401) for a client that tried to authenticate with TLS.

    RFC 6749 §5.2 lets a 401 announce the supported HTTP authentication scheme. TLS client
    authentication has no registered scheme, and announcing ``Basic`` (authlib's default)
    would invite clients to send secrets this server never accepts; the challenge names
    ``MutualTLS`` with the issuer as realm.
    """

    def __init__(self, description: str, realm: str) -> None:
        super().__init__(description=description, status_code=401)
        self.realm = realm
        # The authenticator logs each refusal with the certificate's details.
        self.logged = True

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = list(super(InvalidClientError, self).get_headers())
        headers.append(
            (
                "WWW-Authenticate",
                f'MutualTLS realm="{self.realm}", error="{self.error}", '
                f'error_description="{self.get_error_description()}"',
            )
        )
        return headers

    def __call__(self, uri: Any = None) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return super().__call__(uri)  # type: ignore[no-any-return]
