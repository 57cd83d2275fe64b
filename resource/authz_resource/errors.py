"""Why a request is refused, as exceptions that know their RFC 6750 §3 wire form.

Each refusal carries three things: a short machine ``reason`` (for logs and tests), a public
``description`` (sent as ``error_description``: say what is wrong without leaking
internals) and a private ``detail`` that only goes to the operator's log.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ContentTooLarge",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "NoToken",
    "Refusal",
    "VerificationUnavailable",
]


class Refusal(Exception):
    """Base class: a request the resource server will not serve."""

    status: ClassVar[int] = 401
    error: ClassVar[str | None] = None
    log_event: ClassVar[str] = "bearer_token_refused"

    def __init__(self, reason: str, description: str, *, detail: str = "", **log_fields: Any) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.detail = detail
        self.log_fields = log_fields


class NoToken(Refusal):
    """RFC 6750 §3.1: no authentication information; the challenge carries no error code."""

    status = 401
    error = None


class InvalidRequest(Refusal):
    status = 400
    error = "invalid_request"


class InvalidToken(Refusal):
    """Expired, revoked, malformed, wrongly signed or wrongly bound access token."""

    status = 401
    error = "invalid_token"


class InsufficientScope(Refusal):
    status = 403
    error = "insufficient_scope"

    def __init__(self, required: frozenset[str], granted: frozenset[str], **log_fields: Any) -> None:
        missing = " ".join(sorted(required - granted))
        super().__init__(
            "insufficient_scope",
            f"the access token lacks the scope this resource needs: {missing}",
            detail=f"required {sorted(required)}, token has {sorted(granted)}",
            **log_fields,
        )
        self.required = required


class VerificationUnavailable(Refusal):
    """The token could not be checked (authorization server unreachable or answering
    nonsense). Not the client's fault, so not ``invalid_token``: a client that got 401 would
    throw a good token away."""

    status = 503
    error = "temporarily_unavailable"


class ContentTooLarge(Refusal):
    """RFC 9110 §15.5.14: the request body is over the configured limit. Not about the
    token, so no Bearer challenge; the connection is closed after the answer, so that the
    rest of the body is not read."""

    status = 413
    error = "invalid_request"
    log_event = "request_refused"

    def __init__(self, limit: int, *, detail: str) -> None:
        super().__init__("body_too_large", f"the request body exceeds {limit} bytes", detail=detail)
        self.limit = limit
