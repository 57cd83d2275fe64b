"""What the store raises: shared by every backend and by the change feeds."""

from __future__ import annotations

__all__ = ["CorruptRecord", "StorageError"]


class StorageError(RuntimeError):
    """The backend failed (unreachable, corrupt); the message says which and where."""


class CorruptRecord(StorageError):
    """One stored record cannot be decoded (edited by hand, truncated) while the backend
    itself works: callers that can do without that one record (a client lookup) refuse it
    instead of failing the request."""

    def __init__(self, kind: str, record_id: str, problem: str) -> None:
        super().__init__(f"record {kind}/{record_id} {problem}")
        self.kind = kind
        self.record_id = record_id
