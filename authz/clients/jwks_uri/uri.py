"""What a registered ``jwks_uri`` may be: checked once, at registration (and whenever the
stored record is loaded), so that the fetcher only ever sees a plain https URL."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MAX_JWKS_URI_CHARS", "jwks_uri_problem"]

# Far above any real JWKS location; bounds what is stored, logged and fetched.
MAX_JWKS_URI_CHARS = 2048


def jwks_uri_problem(value: object) -> str | None:
    """Why ``value`` cannot be a client's ``jwks_uri``, or None if it can. The message follows
    the name of the field (``jwks_uri {problem}``)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_JWKS_URI_CHARS:
        return f"is longer than {MAX_JWKS_URI_CHARS} characters"
    if not value.isascii() or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "contains characters a URL cannot (spaces, controls, non-ASCII: percent-encode them, or use punycode)"
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() != "https":
        # The certificates decide who may authenticate as the client: they must come from
        # whom the client says, unaltered (RFC 7591 §2 asks for https too).
        return f"must be an https URL (got scheme {parts.scheme!r})" if parts.scheme else "must be an https URL"
    if "#" in value:
        return "must not have a fragment"
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs; and "https://good.example@evil.example/" is a
        # classic way to make a URL look like it goes somewhere else.
        return "must not carry a user name or password (userinfo)"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    # Imported here: listing clients (authz clients list) should not load the HTTP client.
    import httpx

    try:
        # The fetcher's own parser: what passed the checks above must be fetchable as well
        # (an IPv4 address like 256.1.1.1, a name IDNA refuses, [v1.x]).
        httpx.URL(value)
    except httpx.InvalidURL as exc:
        return f"is not a valid URL ({exc})"
    return None
