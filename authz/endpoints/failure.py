"""What the server answers when no endpoint does, in one place: the refusals of the HTTP layer
(no such path, wrong method), a store that fails, and unexpected errors. Each is JSON with the
headers of every OAuth error answer (authlib sends them with its errors), and one log line for
the operator."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog

from authz.clipping import clipped
from authz.metrics import state as metrics
from authz.oauth.reply import JSONReply
from authz.storage.base import StorageError

__all__ = ["ERROR_HEADERS", "SERVER_ERROR", "http_refusal", "log_unhandled", "store_unavailable"]

log = structlog.get_logger("authz.app")

# RFC 6749 §5.1/§5.2: no cache may keep an answer of these endpoints, errors included.
ERROR_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

SERVER_ERROR = {"error": "server_error", "error_description": "internal error; the server log has the details"}

_LOGGED_PATH_CHARS = 200

STORE_UNAVAILABLE = {"error": "temporarily_unavailable",
                     "error_description": "the server cannot use its store right now; retry later"}
# Seconds: a store that failed (disk full, locked) needs its operator or another process first.
_STORE_RETRY_AFTER = "5"


def log_unhandled(path: str, exc: BaseException) -> None:
    log.error("unhandled_error", path=path, error=repr(exc), exc_info=exc)


def store_unavailable(endpoint: str, peer: str | None, exc: StorageError, **context: Any) -> JSONReply:
    """The answer to a request the store could not serve (a write on a full disk, a read of a
    database locked too long): 503, not 500, since the request was right and will succeed
    once the store works again, with no restart. The log line names the file and the cause."""
    counter = metrics.ACTIVE
    if counter is not None:
        counter.refused(endpoint, "temporarily_unavailable", "store_unavailable")
    log.error("store_unavailable", endpoint=endpoint, peer=peer, error=str(exc), **context)
    return JSONReply.of(503, STORE_UNAVAILABLE, [("Retry-After", _STORE_RETRY_AFTER), *ERROR_HEADERS.items()])


def http_refusal(*, method: str, path: str, peer: str | None, status: int, detail: str,
                 headers: Mapping[str, str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of the answer to a request the router refused (404, 405), and its
    ``request_refused`` line."""
    answer_headers = dict(ERROR_HEADERS)
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = sorted(m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip())
        answer_headers["Allow"] = ", ".join(allowed)
        reason, description = "method_not_allowed", f"use {' or '.join(allowed)} for this endpoint"
    elif status == HTTPStatus.NOT_FOUND:
        reason, description = "not_found", "there is no endpoint at this path"
    else:  # the router raises no other; should that change, the answer stays honest
        reason, description = "http_error", detail
    error = "invalid_request" if status < 500 else "server_error"
    counter = metrics.ACTIVE
    if counter is not None:
        counter.refused("http", error, reason)
    log.warning("request_refused", method=method, path=clipped(path, _LOGGED_PATH_CHARS), peer=peer, status=status,
                error=error, error_description=description, reason=reason)
    return {"error": error, "error_description": description}, answer_headers
