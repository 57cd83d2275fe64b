"""Requests refused by the HTTP layer, before any endpoint runs: the client's JSON answer and
the operator's log line.

uvicorn answers what its parser rejects with a ``text/plain`` 400 and a log line without the
reason, and it has no limit on the size of a request head nor on the time a client may take to
send a request. The protocol (``authz.tls.protocol``) enforces those limits and refuses through
here, so that these answers look like every other OAuth error of this server.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
import structlog

from authz.endpoints.failure import ERROR_HEADERS

__all__ = ["refusal_response", "log_http_refusal"]

log = structlog.get_logger("authz.http")

# The headers of every error answer of the server, as raw header lines.
_ERROR_HEADER_LINES = b"".join(
    f"{name.lower()}: {value}\r\n".encode("latin-1") for name, value in ERROR_HEADERS.items()
)


def refusal_response(status: int, description: str) -> bytes:
    """A complete HTTP/1.1 response with an ``invalid_request`` JSON body; the connection is
    closed after it (the parser's state, or the client's, cannot be trusted any more)."""
    body = orjson.dumps({"error": "invalid_request", "error_description": description})
    reason = HTTPStatus(status).phrase.encode("ascii")
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            _ERROR_HEADER_LINES,
            b"connection: close\r\n",
            b"content-length: %d\r\n\r\n" % len(body),
            body,
        )
    )


def log_http_refusal(status: int, description: str, *, peer: str | None, detail: str, **fields: object) -> None:
    log.warning(
        "request_refused",
        endpoint=None,
        layer="http",
        peer=peer,
        status=status,
        error="invalid_request",
        error_description=description,
        detail=detail,
        **fields,
    )
