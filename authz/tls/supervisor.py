"""``authz serve --workers N``: uvicorn's supervisor, with ``SIGHUP`` meaning "reload".

uvicorn's supervisor (0.54) answers ``SIGHUP`` by replacing every worker: it starts a new
process, waits until it serves, then shuts the old one down, closing the old worker's
keep-alive connections. Here ``SIGHUP`` reloads certificates and trust material in place
(``authz.reload``): the supervisor sends it on to each worker, which reloads and keeps every
connection. ``kill -HUP <main pid>`` (systemd's ``ExecReload``) is all an operator sends.

A worker that is still starting is sent the signal once it serves: until its event loop
exists, ``SIGHUP`` would end it (the default action), and what it loads while starting is
read from the files as they are then anyway.

Each worker has a listening socket of its own. uvicorn gives every worker the one socket it
bound: the kernel then wakes every worker for a new connection and the first to accept gets
it, and with keep-alive clients one worker took 15-16 of 16 connections (two workers served
1.18x one). Here the supervisor binds one socket per worker slot with ``SO_REUSEPORT`` and
keeps them all open and listening: the kernel spreads connections over the slots by a hash of
their addresses (1.6x one worker), the port stays taken while a worker restarts (nobody else can listen
on it then), and a restarted worker takes over its slot's socket with the connections waiting
in it. Where ``SO_REUSEPORT`` does not exist, the workers share uvicorn's socket as before.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

__all__ = ["ReloadingMultiprocess", "run"]

log = structlog.get_logger("authz.reload")


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's supervisor, forwarding ``SIGHUP`` to the workers instead of replacing them; with
    ``per_worker``, ``sockets[i]`` is the listening socket of worker slot ``i`` alone."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], *, per_worker: bool = False) -> None:
        super().__init__(config, sockets)
        self._per_worker = per_worker

    def _process(self, slot: int) -> Process:
        return Process(self.config, [self.sockets[slot]] if self._per_worker else self.sockets)

    def init_processes(self) -> None:
        for slot in range(self.processes_num):
            process = self._process(slot)
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        # uvicorn 0.54's, but a worker's successor gets the worker's own socket (``_process``).
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: it would fail the same way on every restart.
                log.error("worker_failed_to_start", worker=process.pid, detail="stopping the server")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning("worker_died", worker=process.pid, exitcode=process.exitcode, slot=slot,
                        detail="starting another on the same socket")
            process = self._process(slot)
            process.start()
            self.processes[slot] = process

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
    # What uvicorn.run does for several workers, with the other supervisor and a socket per worker.
    config = uvicorn.Config(app, **options)
    sockets = _sockets_per_worker(config)
    try:
        ReloadingMultiprocess(config, sockets=sockets, per_worker=len(sockets) > 1).run()
    except KeyboardInterrupt:
        pass
    finally:
        for sock in sockets:
            sock.close()


def _sockets_per_worker(config: uvicorn.Config) -> list[socket.socket]:
    """One listening ``SO_REUSEPORT`` socket per worker, bound to the configured address (the
    first binds the port, when ``--port 0`` asks for any); or uvicorn's one socket, bound only,
    where ``SO_REUSEPORT`` does not exist."""
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port is None or config.uds is not None or config.fd is not None:
        return [config.bind_socket()]
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sockets: list[socket.socket] = []
    port = config.port
    try:
        for _ in range(config.workers):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
            sock.bind((config.host, port))
            port = sock.getsockname()[1]
            sock.listen(config.backlog)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        log.error("bind_failed", host=config.host, port=config.port, error=str(exc))
        sys.exit(STARTUP_FAILURE)
    scheme = "https" if config.is_ssl else "http"
    host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    log.info("listening", url=f"{scheme}://{host}:{port}", workers=config.workers, sockets="one per worker")
    return sockets
