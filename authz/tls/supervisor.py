"""``authz serve --workers N``: uvicorn's supervisor, with ``SIGHUP`` meaning "reload".

uvicorn's supervisor (0.54) answers ``SIGHUP`` by replacing every worker: it starts a new
process, waits until it serves, then shuts the old one down, closing the old worker's
keep-alive connections. Here ``SIGHUP`` reloads certificates and trust material in place
(``authz.reload``): the supervisor sends it on to each worker, which reloads and keeps every
connection. ``kill -HUP <main pid>`` (systemd's ``ExecReload``) is all an operator sends.

A worker that is still starting is sent the signal once it serves: until its event loop
exists, ``SIGHUP`` would end it (the default action), and what it loads while starting is
read from the files as they are then anyway.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import structlog
import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

__all__ = ["ReloadingMultiprocess", "run"]

log = structlog.get_logger("authz.reload")


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's supervisor, forwarding ``SIGHUP`` to the workers instead of replacing them."""

    def handle_hup(self) -> None:
        forwarded: list[int] = []
        for process in list(self.processes):
            if self.should_exit.is_set():
                return
            if process.pid is None or not process.wait_until_ready(self.config.timeout_worker_healthcheck,
                                                                     self.should_exit):
                log.warning("reload_not_forwarded", worker=process.pid,
                            detail="the worker did not answer; if it is restarted, it loads the files anew")
                continue
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue  # it just ended; keep_subprocess_alive starts its successor
            forwarded.append(process.pid)
        log.info("reload_requested", workers=forwarded)


def run(app: str, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, with ``ReloadingMultiprocess`` as the supervisor of
    several workers."""
    if (options.get("workers") or 1) <= 1:
        uvicorn.run(app, **options)  # one process: its own loop handles SIGHUP (authz.tls.listener)
        return
    # What uvicorn.run does for several workers, with the other supervisor.
    config = uvicorn.Config(app, **options)
    sock = config.bind_socket()
    try:
        ReloadingMultiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
