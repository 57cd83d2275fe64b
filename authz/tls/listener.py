"""The listening side of a TLS server: how many connections a worker holds, and how long a
TLS handshake may take.

uvloop's own server accepts every connection the kernel hands it and gives each TLS handshake
60 s, and uvicorn exposes neither: 500 TCP connections that never send a ClientHello were held
for a minute each, and enough of them exhaust the worker's file descriptors, after which no
legitimate client gets in. So the event loop that serves mutual TLS (``ServingLoop``, named
in ``uvicorn.run(loop=...)``) creates its servers itself (``BoundedServer``), with TLS, or
plain HTTP behind a TLS-terminating proxy:

- it accepts while fewer than ``max_connections`` connections are open (handshaking or
  established), and otherwise stops accepting: new connections wait in the kernel's backlog
  instead of costing memory and descriptors here. One warning says so, and one line when it
  accepts again;
- each handshake must complete within ``handshake_timeout`` seconds;
- a failed handshake is logged (``tls_handshake_failed``, with OpenSSL's reason), which
  uvloop only does in debug mode; a peer that closes before saying anything (a TCP health
  check) only at debug level.

Per connection this costs one task (about 20 µs) next to a full handshake (about 1 ms).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import uvloop

from authz.metrics import state as metrics
from authz.reload import install_reload_signal
from authz.tls.credentials import ServerCredentials, credentials_of
from authz.tls.resumption import TicketKeyRotation

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "BoundedServer",
    "ConnectionLimits",
    "ServingLoop",
    "new_event_loop",
]

log = structlog.get_logger("authz.tls")

# Server-to-server mTLS completes a handshake in milliseconds; 5 s leaves room for a slow
# network without letting a silent connection hold a slot for long.
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1000
# File descriptors a worker needs besides its connections (store, logs, listening sockets...).
_SPARE_DESCRIPTORS = 64
# Connections accepted per readiness of the listening socket, as asyncio's own loop does.
_ACCEPT_BATCH = 100
# After EMFILE and the like, retry accepting after this long (the kernel keeps the backlog).
_ACCEPT_RETRY_DELAY = 0.5
_LIMIT_LOG_INTERVAL = 10.0

# Environment variables through which ``authz serve`` (and uvicorn's worker processes, which
# build their loop before the application) receive the limits.
HANDSHAKE_TIMEOUT_VARIABLE = "AUTHZ_TLS_HANDSHAKE_TIMEOUT"
MAX_CONNECTIONS_VARIABLE = "AUTHZ_MAX_CONNECTIONS"


@dataclass(frozen=True)
class ConnectionLimits:
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_environment(cls) -> ConnectionLimits:
        # Validated by the settings (or the command line) that exported them.
        return cls(
            handshake_timeout=float(os.environ.get(HANDSHAKE_TIMEOUT_VARIABLE, DEFAULT_HANDSHAKE_TIMEOUT)),
            max_connections=int(os.environ.get(MAX_CONNECTIONS_VARIABLE, DEFAULT_MAX_CONNECTIONS)),
        )

    def environment(self) -> dict[str, str]:
        return {
            HANDSHAKE_TIMEOUT_VARIABLE: repr(self.handshake_timeout),
            MAX_CONNECTIONS_VARIABLE: str(self.max_connections),
        }

    def within_descriptor_limit(self) -> ConnectionLimits:
        """These limits, with ``max_connections`` lowered to what the process may open (after
        raising its soft limit on file descriptors as far as the hard limit allows)."""
        needed = self.max_connections + _SPARE_DESCRIPTORS
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (ValueError, OSError):
                pass
        if soft == resource.RLIM_INFINITY or soft >= needed:
            return self
        lowered = max(1, soft - _SPARE_DESCRIPTORS)
        log.warning("max_connections_lowered", max_connections=self.max_connections, lowered_to=lowered,
                    detail=f"the process may open {soft} files (ulimit -n); raise it to serve more connections")
        return ConnectionLimits(self.handshake_timeout, lowered)


class ServingLoop(uvloop.Loop):
    """uvloop, with servers that bound connections and TLS handshakes (``BoundedServer``)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__()
        self.connection_limits = limits

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
        backlog: int = 100,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        if kwargs:
            # uvloop's stubs overload host/port against sock; this passes on what it was given.
            return await super().create_server(
                protocol_factory, host, port, ssl=ssl, sock=sock, backlog=backlog, **kwargs)  # type: ignore[arg-type]
        if sock is not None:
            # A worker of ``--workers N``: its own socket, listening already (authz.tls.supervisor),
            # or uvicorn's shared one, bound only.
            sock.listen(backlog)
        sockets = [sock] if sock is not None else _listening_sockets(host, port, backlog)
        server = BoundedServer(self, sockets, protocol_factory, ssl, self.connection_limits,
                               credentials=credentials_of(ssl))
        server.start_accepting()
        return server


def new_event_loop() -> ServingLoop:
    """The loop factory named in ``uvicorn.run(loop="authz.tls.listener:new_event_loop")``.

    ``SIGHUP`` reloads certificates and trust material (``authz.reload``). Its handler is
    installed here, before the application starts: SIGHUP's default action ends the process,
    and the supervisor of ``--workers N`` forwards it to each worker."""
    loop = ServingLoop(ConnectionLimits.from_environment().within_descriptor_limit())
    install_reload_signal(loop)
    return loop


def _listening_sockets(host: str | None, port: int | None, backlog: int) -> list[socket.socket]:
    """Bind like asyncio's ``create_server``: every address ``host`` resolves to."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            listener = socket.socket(family, kind, proto)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
    except OSError:
        for listener in sockets:
            listener.close()
        raise
    return sockets


class BoundedServer(asyncio.AbstractServer):
    """Accepts connections (TLS, or plain when ``context`` is None) while fewer than
    ``max_connections`` are open."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext | None,
        limits: ConnectionLimits,
        *,
        credentials: ServerCredentials | None = None,
    ) -> None:
        self._loop = loop
        self._sockets = sockets
        self._protocol_factory = protocol_factory
        self._context = context
        # Reloadable (SIGHUP): each new connection takes the context in use when it arrives.
        self._credentials = credentials
        self._limits = limits
        self.open_connections = 0
        self._accepting = False
        self._closed = False
        self._paused_at: float | None = None
        self._pause_logged = False
        self._pauses_unlogged = 0
        self._last_limit_log = -_LIMIT_LOG_INTERVAL
        # --tls-resumption tickets: the ticket key of the context in use is replaced on this
        # loop, where its handshakes run (authz.tls.resumption); None otherwise.
        self._ticket_key_rotation = TicketKeyRotation.start_for(loop, self.current_context)

    # --- asyncio.AbstractServer -------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed

    async def start_serving(self) -> None:
        self.start_accepting()

    async def serve_forever(self) -> None:
        self.start_accepting()
        await self._loop.create_future()

    def current_context(self) -> ssl.SSLContext | None:
        """The TLS context for a connection accepted now (None: plain HTTP)."""
        return self._context if self._credentials is None else self._credentials.context

    def close(self) -> None:
        """Stop listening; open connections are the application server's to close."""
        if self._closed:
            return
        self.stop_accepting()
        if self._ticket_key_rotation is not None:
            self._ticket_key_rotation.cancel()
        self._closed = True
        for listener in self._sockets:
            listener.close()

    async def wait_closed(self) -> None:
        return None

    # --- accepting ----------------------------------------------------------------------

    def start_accepting(self) -> None:
        if self._accepting or self._closed:
            return
        self._accepting = True
        for listener in self._sockets:
            listener.setblocking(False)
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    def stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for listener in self._sockets:
            self._loop.remove_reader(listener.fileno())

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            if self.open_connections >= self._limits.max_connections:
                self._pause()
                return
            try:
                connection, address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # Out of descriptors or memory (EMFILE, ENOBUFS...): the backlog keeps the
                # connections; try again later rather than spin on a listening socket that is ready.
                log.error("accept_failed", error=os.strerror(exc.errno) if exc.errno else str(exc),
                          open_connections=self.open_connections, retry_in_seconds=_ACCEPT_RETRY_DELAY)
                self.stop_accepting()
                self._loop.call_later(_ACCEPT_RETRY_DELAY, self.start_accepting)
                return
            self.open_connections += 1
            counter = metrics.ACTIVE
            if counter is not None:
                counter.connections_open.inc()
            self._loop.create_task(self._connect(connection, address))

    async def _connect(self, connection: socket.socket, address: Any) -> None:
        started = self._loop.time()
        slot = _ConnectionSlot(self)

        def protocol() -> asyncio.BaseProtocol:
            made = self._protocol_factory()
            made.connection_slot = slot  # type: ignore[attr-defined]  # released in connection_lost
            return made

        context = self.current_context()
        # Plain HTTP (to a proxy) has no handshake to time out.
        timeout = None if context is None else self._limits.handshake_timeout
        try:
            transport, _ = await self._loop.connect_accepted_socket(protocol, connection, ssl=context,
                                                                    ssl_handshake_timeout=timeout)
        except Exception as exc:  # the handshake failed
            connection.close()  # uvloop has detached it already when it made a transport of it
            slot.release()
            outcome = _log_handshake_failure(exc, address, self._loop.time() - started,
                                             self._limits.handshake_timeout)
        else:
            # Whether --tls-resumption tickets saves anything: resumed against full handshakes.
            ssl_object = transport.get_extra_info("ssl_object")
            outcome = "resumed" if ssl_object is not None and ssl_object.session_reused else "ok"
        counter = metrics.ACTIVE
        if counter is not None and self._context is not None:
            counter.handshake[outcome].inc()

    def connection_closed(self) -> None:
        self.open_connections -= 1
        counter = metrics.ACTIVE
        if counter is not None:
            counter.connections_open.dec()
        if self._paused_at is not None and self.open_connections < self._limits.max_connections:
            if self._pause_logged:
                log.info("accepting_connections_again", open_connections=self.open_connections,
                         paused_seconds=round(time.monotonic() - self._paused_at, 3))
            self._paused_at = None
            self.start_accepting()

    def _pause(self) -> None:
        self.stop_accepting()
        if self._paused_at is not None:
            return
        self._paused_at = time.monotonic()
        counter = metrics.ACTIVE
        if counter is not None:
            counter.connection_limit_reached.inc()
        # Under a flood the limit may be reached many times a second: a line per interval at most.
        self._pauses_unlogged += 1
        self._pause_logged = self._paused_at - self._last_limit_log >= _LIMIT_LOG_INTERVAL
        if self._pause_logged:
            log.warning("connection_limit_reached", max_connections=self._limits.max_connections,
                        times=self._pauses_unlogged,
                        detail="not accepting new connections until one closes; they wait in the listen backlog")
            self._last_limit_log = self._paused_at
            self._pauses_unlogged = 0


class _ConnectionSlot:
    """One connection's place in the count; released once, when the connection ends."""

    __slots__ = ("_server",)

    def __init__(self, server: BoundedServer) -> None:
        self._server: BoundedServer | None = server

    def release(self) -> None:
        if self._server is not None:
            self._server.connection_closed()
            self._server = None


def _peer(address: Any) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return None


def _log_handshake_failure(exc: Exception, address: Any, elapsed: float, timeout: float) -> str:
    """Log the failure; return its outcome for ``authz_tls_handshakes_total`` (timeout,
    tls_error, closed: OpenSSL's reasons are many, and the log has them)."""
    # uvloop aborts a handshake past its timeout with ConnectionAbortedError, asyncio with TimeoutError.
    if isinstance(exc, TimeoutError | ConnectionAbortedError) and elapsed >= timeout * 0.99:
        log.info("tls_handshake_failed", peer=_peer(address), reason="timeout",
                 detail=f"no complete TLS handshake within {timeout:g} s")
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        log.info("tls_handshake_failed", peer=_peer(address), reason=exc.reason or type(exc).__name__,
                 detail=str(exc)[:300], seconds=round(elapsed, 3))
        return "tls_error"
    # The peer closed or reset before completing a handshake (port scans, TCP health checks).
    log.debug("tls_handshake_failed", peer=_peer(address), reason="connection_closed",
              detail=f"{type(exc).__name__}: {exc}"[:300], seconds=round(elapsed, 3))
    return "closed"
