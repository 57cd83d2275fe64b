"""What an unexpected error becomes, wherever it happens: a JSON 500 that says nothing of the
cause, and one log line with the traceback for the operator."""

from __future__ import annotations

import structlog

__all__ = ["SERVER_ERROR", "SERVER_ERROR_HEADERS", "log_unhandled"]

log = structlog.get_logger("authz.app")

SERVER_ERROR = {"error": "server_error", "error_description": "internal error; the server log has the details"}
SERVER_ERROR_HEADERS = {"Cache-Control": "no-store"}


def log_unhandled(path: str, exc: BaseException) -> None:
    log.error("unhandled_error", path=path, error=repr(exc), exc_info=exc)
