"""The directory where prometheus-client's multiprocess mode keeps every process's values.

Its own module, free of prometheus-client: the directory must be exported before anything
imports that library (it picks its way of storing values at import)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["MULTIPROC_VARIABLE", "create_multiprocess_directory"]

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def create_multiprocess_directory() -> Path:
    """A fresh directory for this run's metric files, exported as ``PROMETHEUS_MULTIPROC_DIR``
    (workers inherit it) before anything imports prometheus-client.

    On a memory file system when there is one: workers write a value at each count, and those
    writes must never wait for a disk. systemd's ``RuntimeDirectory=`` (``$RUNTIME_DIRECTORY``)
    first, then ``/dev/shm``, then the temporary directory. A fresh directory per run: counts
    start at zero when the server does, as Prometheus expects of a restarted target."""
    # mkdtemp: a new directory of mode 0700, whoever else uses /dev/shm.
    candidates = [os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0], "/dev/shm", tempfile.gettempdir()]  # noqa: S108
    for parent in candidates:
        if parent and os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            directory = Path(tempfile.mkdtemp(prefix="authz-metrics-", dir=parent))
            break
    else:  # pragma: no cover - the temporary directory is writable wherever Python runs
        directory = Path(tempfile.mkdtemp(prefix="authz-metrics-"))
    os.environ[MULTIPROC_VARIABLE] = str(directory)
    return directory
