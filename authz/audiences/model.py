"""A registered resource server: its identifier (the ``aud`` of tokens for it), the scopes that
belong to it, and the clients that may introspect tokens issued for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MAX_RESOURCE_CHARS", "InvalidResourceServer", "ResourceServer", "resource_uri_problem"]

# Long enough for any real API identifier; bounds what a token request can make us compare.
MAX_RESOURCE_CHARS = 512


class InvalidResourceServer(ValueError):
    """The registration cannot be used; the message names the field and the problem."""


def resource_uri_problem(value: object) -> str | None:
    """Why ``value`` is not a resource indicator (RFC 8707 §2: an absolute URI without a
    fragment), or None if it is one."""
    if not isinstance(value, str) or not value:
        return "is not a non-empty string"
    if len(value) > MAX_RESOURCE_CHARS:
        return f"is longer than {MAX_RESOURCE_CHARS} characters"
    if not value.isascii() or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "contains characters a URI cannot (spaces, controls, non-ASCII: percent-encode them)"
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "https://[::1": an IPv6 host left open
        return f"is not a valid URI ({exc})"
    if not parts.scheme or not (parts.netloc or parts.path):
        return "is not an absolute URI (RFC 8707 section 2)"
    if "#" in value:
        return "has a fragment, which RFC 8707 section 2 forbids"
    return None


@dataclass(frozen=True)
class ResourceServer:
    identifier: str
    scopes: tuple[str, ...]
    introspectors: frozenset[str]  # client_ids allowed to introspect tokens for this audience

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ResourceServer:
        identifier = record.get("identifier")
        problem = resource_uri_problem(identifier)
        if problem is not None:
            raise InvalidResourceServer(f"identifier {problem}")
        assert isinstance(identifier, str)
        scopes = record.get("scopes", [])
        if not isinstance(scopes, list) or any(not _is_scope_token(s) for s in scopes):
            raise InvalidResourceServer("scopes must be a list of scope tokens (RFC 6749 section 3.3)")
        introspectors = record.get("introspectors", [])
        if not isinstance(introspectors, list) or any(not isinstance(c, str) or not c for c in introspectors):
            raise InvalidResourceServer("introspectors must be a list of client_ids")
        return cls(identifier, tuple(dict.fromkeys(scopes)), frozenset(introspectors))

    def to_record(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "scopes": list(self.scopes),
                "introspectors": sorted(self.introspectors)}


def _is_scope_token(token: object) -> bool:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return isinstance(token, str) and bool(token) and all(
        c == "\x21" or "\x23" <= c <= "\x5b" or "\x5d" <= c <= "\x7e" for c in token)
