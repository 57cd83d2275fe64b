"""RFC 6750 §3 responses: ``WWW-Authenticate: Bearer ...`` plus a small JSON body."""

from __future__ import annotations

import json
import re

from authz_resource.errors import ContentTooLarge, InsufficientScope, NoToken, Refusal, VerificationUnavailable

__all__ = ["check_realm", "render", "www_authenticate"]

# RFC 6750 §3: error_description and realm are quoted strings limited to
# %x20-21 / %x23-5B / %x5D-7E (printable ASCII without '"' and '\').
_NOT_QUOTABLE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_MAX_DESCRIPTION = 400


def _quotable(text: str) -> str:
    text = text.replace('"', "'").replace("\\", "/")
    return _NOT_QUOTABLE.sub("?", text)[:_MAX_DESCRIPTION]


def check_realm(realm: str) -> str:
    """Validate a configured realm: it goes verbatim into a quoted header parameter."""
    if not realm or _NOT_QUOTABLE.search(realm):
        raise ValueError(f"realm {realm!r} must be non-empty printable ASCII without '\"' or '\\'")
    return realm


def www_authenticate(refusal: Refusal, realm: str) -> str:
    params = [f'realm="{realm}"']
    if refusal.error is not None and not isinstance(refusal, NoToken):
        params.append(f'error="{refusal.error}"')
        params.append(f'error_description="{_quotable(refusal.description)}"')
    if isinstance(refusal, InsufficientScope):
        # Scope tokens are NQCHAR (RFC 6749 §3.3), which fits a quoted string as is.
        params.append(f'scope="{_quotable(" ".join(sorted(refusal.required)))}"')
    return "Bearer " + ", ".join(params)


def render(refusal: Refusal, realm: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for ``refusal``."""
    body: dict[str, str] = {}
    if refusal.error is not None and not isinstance(refusal, NoToken):
        body["error"] = refusal.error
    body["error_description"] = refusal.description
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
    ]
    if isinstance(refusal, VerificationUnavailable):
        headers.append((b"retry-after", b"1"))
    elif isinstance(refusal, ContentTooLarge):
        # uvicorn would otherwise read (and drop) the rest of the body to keep the
        # connection: however large it is.
        headers.append((b"connection", b"close"))
    else:
        headers.append((b"www-authenticate", www_authenticate(refusal, realm).encode("ascii")))
    if isinstance(refusal, InsufficientScope):
        body["scope"] = " ".join(sorted(refusal.required))
    payload = json.dumps(body).encode()
    headers.append((b"content-length", str(len(payload)).encode("ascii")))
    return refusal.status, headers, payload
