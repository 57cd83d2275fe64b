"""A deadline for receiving each request whole, checked once a second per event loop.

uvicorn has no such limit: a client that sends half a request head, or a Content-Length
larger than its body, holds its connection (and the worker's memory for it) for ever. A timer
per request would cost a ``call_later`` and a ``cancel`` on every token of a keep-alive
connection; instead each connection records when its current request must be complete (one
float), and one sweep a second finds the late ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["REQUEST_READ_TIMEOUT", "SWEEP_INTERVAL", "watch"]

# From a request's first byte to its last. A token request is a few hundred bytes; a client
# that needs more than this is broken or hostile.
REQUEST_READ_TIMEOUT = 10.0
SWEEP_INTERVAL = 1.0


def watch(loop: asyncio.AbstractEventLoop, server_state: Any) -> None:
    """Sweep the connections of one uvicorn server (``server_state.connections``, the live set
    shared by the worker) on ``loop`` from now on; later calls for the same server do nothing."""
    if getattr(server_state, "request_deadline_sweep", False):
        return
    server_state.request_deadline_sweep = True
    connections: set[Any] = server_state.connections

    def sweep() -> None:
        now = loop.time()
        late = [c for c in connections if (d := getattr(c, "request_deadline", None)) is not None and d <= now]
        for connection in late:
            connection.request_too_slow()
        if not loop.is_closed():
            loop.call_later(SWEEP_INTERVAL, sweep)

    loop.call_later(SWEEP_INTERVAL, sweep)
