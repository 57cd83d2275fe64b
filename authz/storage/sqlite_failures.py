"""Why the SQLite store failed, in the words of the operator who has to fix it.

Every failure of the file system or of SQLite becomes one ``StorageError`` here, naming the
file and the cause. An ``OSError`` carries its cause already (errno). SQLite reports most
file-system trouble with codes that do not ("unable to open database file", "attempt to
write a readonly database", "disk I/O error"): for those the file system is asked why.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from authz.storage.base import StorageError

__all__ = ["store_failure"]

# SQLite's codes for "the file could not be opened, created or written", whatever the reason.
_VAGUE_CODES = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_PERM")


def store_failure(action: str, path: Path, exc: OSError | sqlite3.Error, *, busy_timeout: float,
                  step: str | None = None) -> StorageError:
    """``cannot ACTION the store at PATH: CAUSE (STEP)``. May ask the file system (blocking
    system calls): call it off the event loop."""
    cause = _cause(path, exc, busy_timeout) + (f" ({step})" if step else "")
    return StorageError(f"cannot {action} the store at {path}: {cause}")


def _cause(path: Path, exc: OSError | sqlite3.Error, busy_timeout: float) -> str:
    if isinstance(exc, OSError):
        return _os_cause(exc, path)
    said = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code.startswith("SQLITE_FULL"):
        return f"disk full (SQLite: {said})"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"locked by another process for longer than the {busy_timeout:g} s busy timeout (SQLite: {said})"
    if code.startswith(_VAGUE_CODES):
        found = _file_system_cause(path)
        if found is not None:
            return f"{found} (SQLite: {said})"
    return said


def _os_cause(exc: OSError, path: Path) -> str:
    if not exc.strerror:
        return str(exc)
    cause = exc.strerror[0].lower() + exc.strerror[1:]  # "Read-only file system" -> "read-only file system"
    if exc.errno == errno.ENOSPC:
        cause = f"disk full: {cause}"
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) != path:
        cause += f" ({os.fsdecode(exc.filename)})"
    return cause


def _file_system_cause(path: Path) -> str | None:
    """What keeps this process from opening, creating or writing ``path`` and its companion
    files (``-wal``, ``-shm``, created beside it), or None if the file system sees nothing."""
    directory = path.parent
    try:
        file_system = os.statvfs(directory)
        exists = path.exists()
    except OSError as exc:
        return _os_cause(exc, path)
    if file_system.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"permission denied: this user may not create files in {directory}"
    if exists and not os.access(path, os.R_OK | os.W_OK):
        return "permission denied: this user may not read and write it"
    if file_system.f_bavail == 0:
        return "disk full: no space left on the file system"
    return None
