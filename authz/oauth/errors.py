"""OAuth errors as authlib classes, with the header this server sends for a refused client."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError

__all__ = ["MutualTLSClientError"]


class MutualTLSClientError(InvalidClientError):  # type: ignore[misc]
    """``invalid_client`` (401) for a client that tried to authenticate.

    RFC 6749 §5.2: a ``WWW-Authenticate`` challenge is sent when, and only when, the client
    used the ``Authorization`` header, and it names the scheme that client used. TLS client
    authentication is not an HTTP scheme: a challenge on its refusals has no scheme to name,
    and clients that follow §5.2 take one as a failed HTTP authentication (openid-client then
    throws a generic challenge error with ``error`` undefined instead of reading the body).
    """

    def __init__(self, description: str, realm: str, used_scheme: str | None = None) -> None:
        super().__init__(description=description, status_code=401)
        self.realm = realm
        self.used_scheme = used_scheme
        # The authenticator logs each refusal with the certificate's details.
        self.logged = True

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = list(super(InvalidClientError, self).get_headers())
        if self.used_scheme is not None:
            headers.append(
                (
                    "WWW-Authenticate",
                    f'{self.used_scheme} realm="{self.realm}", error="{self.error}", '
                    f'error_description="{self.get_error_description()}"',
                )
            )
        return headers

    def __call__(self, uri: Any = None) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return super().__call__(uri)  # type: ignore[no-any-return]
