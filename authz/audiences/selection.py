"""Which audience and scopes a token request gets (RFC 8707 resource indicators).

``resource`` (repeatable) names the APIs the token is for: each must be a registered resource
server the client is allowed; the token's ``aud`` is the requested resource(s), and its scopes
those of the request (or of the client's registration) that belong to them. Without
``resource``: a client allowed exactly one resource gets a token for it; a client allowed
none gets the configured default audience, with its registered scopes (as before resource
servers existed); a client allowed several must name one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from authlib.oauth2.rfc6749.errors import InvalidScopeError, OAuth2Error

from authz.audiences.model import MAX_RESOURCE_CHARS, resource_uri_problem
from authz.audiences.registry import ResourceServers
from authz.clients.model import RegisteredClient

__all__ = ["Audience", "InvalidTargetError", "select_audience"]

# Resources one request may name: bounds the work an authenticated client can ask for.
MAX_RESOURCES = 10


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: ``invalid_target`` (400)."""

    error = "invalid_target"
    status_code = 400


class Audience(NamedTuple):  # a tuple: built on every token request, cheaper than a dataclass
    aud: str | list[str]
    scopes: tuple[str, ...]


def select_audience(client: RegisteredClient, resources: Sequence[str], scopes: tuple[str, ...],
                    *, requested_scope: bool, servers: ResourceServers, default_audience: str) -> Audience:
    """``scopes``: the scopes granted so far (requested, or the registered ones when the
    request named none). Raises ``InvalidTargetError`` or ``InvalidScopeError``."""
    if not resources:
        if not client.allowed_resources:
            return Audience(default_audience, scopes)
        if len(client.allowed_resources) > 1:
            raise InvalidTargetError(description=(
                "this client may get tokens for several resources: name the one(s) wanted with the resource "
                "parameter (RFC 8707)"))
        resources = client.allowed_resources
    if len(resources) > MAX_RESOURCES:
        raise InvalidTargetError(description=f"at most {MAX_RESOURCES} resource parameters per request")
    # Nearly every request names one resource (or none): no de-duplication to do then.
    wanted = resources if len(resources) == 1 else list(dict.fromkeys(resources))
    belonging: set[str] = set()
    for resource in wanted:
        server = servers.get(resource)
        if server is None:
            # A registered identifier was checked at registration: only an unknown value needs
            # the URI check, to say what is wrong with it (this runs for every token request).
            problem = resource_uri_problem(resource)
            if problem is not None:
                raise InvalidTargetError(description=f"resource {_shown(resource)} {problem}")
            raise InvalidTargetError(description=f"unknown resource: {_shown(resource)}")
        if resource not in client.allowed_resources:
            raise InvalidTargetError(description=f"resource not allowed for this client: {_shown(resource)}")
        belonging.update(server.scopes)
    if requested_scope:
        outside = [s for s in scopes if s not in belonging]
        if outside:
            raise InvalidScopeError(description=(
                f"scope not part of the requested resource{'s' if len(wanted) > 1 else ''}: "
                f"{' '.join(outside)[:200]}"))
        granted = scopes
    elif belonging.issuperset(scopes):  # the usual case: every registered scope belongs
        granted = scopes
    else:
        granted = tuple(s for s in scopes if s in belonging)
    return Audience(wanted[0] if len(wanted) == 1 else list(wanted), granted)


def _shown(resource: str) -> str:
    # Into error_description: printable ASCII only, without quotes or backslashes (RFC 6749
    # §5.2), and bounded.
    safe = "".join(c for c in resource if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
    return safe[:MAX_RESOURCE_CHARS] or "(unprintable)"
