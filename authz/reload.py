"""Changing certificates and trust material without a restart: ``SIGHUP``, or a change of
the files themselves with ``--watch-files``.

A running process (the authorization server, a worker of ``authz serve --workers N``, the
sample API) reloads on ``SIGHUP`` whatever registered a hook here: the server certificate and
key (``authz.tls.credentials``), the trust anchors and intermediates (``authz.context``), and
whatever else a module registers (CRL files, for example). Open connections keep the material
they were set up with; new handshakes and new validations use the new one.

A reload happens in two phases, so that one bad file changes nothing at all:

1. every hook *prepares*, on a worker thread (files are read and parsed there, and the TLS
   self-test runs there: none of it on the event loop): it loads its files, validates them
   (parse, key matches certificate, anchors are CAs, the new TLS context passes its self-test)
   and returns a ``PreparedChange``, or None when its files did not change, or raises
   ``ReloadRefused`` naming the file and the reason;
2. only when every hook prepared, each change is *committed*, on the event loop: a commit only
   swaps references, so requests never see half of a reload.

A refused reload logs ``reload_refused`` (the part, the file, the reason) and keeps
everything in use; a completed one logs ``reload_completed`` with what changed.

With ``--watch-files`` (``Reloader.watch``), a process also reloads when a file a hook named
at registration changes (its inode, size or modification time; a stat per file every
``WATCH_INTERVAL`` seconds, off the event loop): what Kubernetes does to a mounted Secret or
cert-manager to a certificate, where nobody sends a signal. A change seen half-way (a key
written after its certificate) gives a refused reload, and the next change a completed one.

Registering a hook (for example, the revocation lists)::

    from authz.reload import PreparedChange, ReloadRefused, reload_hooks

    def prepare_crls() -> PreparedChange | None:      # runs on a worker thread
        crls = load_crls(paths)                        # raise ReloadRefused(path, why) if unusable
        return PreparedChange(lambda: checker.replace(crls), {"crls": len(crls)})

    unregister = reload_hooks.register("crls", prepare_crls)
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

__all__ = ["PreparedChange", "ReloadHook", "ReloadRefused", "Reloader", "install_reload_signal", "reload_hooks"]

log = structlog.get_logger("authz.reload")

# Seconds between two looks at the watched files (--watch-files): a stat each.
WATCH_INTERVAL = 2.0


class ReloadRefused(Exception):
    """A file of a reload cannot be used; nothing is changed."""

    def __init__(self, file: Path | str | None, reason: str) -> None:
        super().__init__(f"{file}: {reason}" if file is not None else reason)
        self.file = None if file is None else str(file)
        self.reason = reason


@dataclass(frozen=True)
class PreparedChange:
    """What a hook has loaded and validated: ``commit`` puts it in use (on the event loop: it
    must only swap references), ``summary`` says what changes, for ``reload_completed``."""

    commit: Callable[[], None]
    summary: dict[str, Any] = field(default_factory=dict)


# Loads and validates, on a worker thread; never changes what is in use. None: nothing to do.
ReloadHook = Callable[[], PreparedChange | None]


class Reloader:
    """The hooks of one process, and the reloads ``SIGHUP`` asks for."""

    def __init__(self) -> None:
        self._hooks: dict[str, ReloadHook] = {}
        self._files: dict[str, tuple[Path, ...]] = {}
        self._running: asyncio.Task[bool] | None = None
        self._again = False

    def register(self, name: str, hook: ReloadHook, *, files: Iterable[Path | str] = ()) -> Callable[[], None]:
        """Run ``hook`` at every reload, under ``name`` (the ``part`` of the log lines), and
        reload when one of ``files`` changes if the process watches them (``watch``); returns
        the function that unregisters it. A process serves one application, so a second hook
        under a name replaces the first (in tests, a server started after another)."""
        self._hooks[name] = hook
        self._files[name] = tuple(Path(file) for file in files)

        def unregister() -> None:
            if self._hooks.get(name) is hook:
                del self._hooks[name]
                del self._files[name]

        return unregister

    @property
    def watched_files(self) -> tuple[Path, ...]:
        """The files of every hook, each once."""
        return tuple(dict.fromkeys(file for files in self._files.values() for file in files))

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Reload whenever a watched file changes, until cancelled. A file a hook names later
        is watched from then on; one that disappears and comes back counts as changed."""
        seen = await asyncio.to_thread(_stamps, self.watched_files)
        while True:
            await asyncio.sleep(interval)
            try:
                stamps = await asyncio.to_thread(_stamps, self.watched_files)
                changed = [str(file) for file, stamp in stamps.items() if file in seen and seen[file] != stamp]
                seen = stamps
                if changed:
                    log.info("reload_files_changed", pid=os.getpid(), files=changed)
                    self.request()
            except Exception as exc:  # a bug here must not end the watching silently
                log.error("watch_files_failed", pid=os.getpid(), error=f"{type(exc).__name__}: {exc}",
                          detail="watching goes on; SIGHUP still reloads")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._hooks)

    def request(self) -> None:
        """Start a reload (the ``SIGHUP`` handler, on the event loop). A request during a
        reload runs another one after it: the files may have changed again meanwhile."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.get_running_loop().create_task(self._reload_until_settled())

    async def _reload_until_settled(self) -> bool:
        completed = await self.reload()
        while self._again:
            self._again = False
            completed = await self.reload()
        return completed

    async def reload(self) -> bool:
        """Prepare every hook off the event loop, then commit all of them, or none; True
        when the reload completed."""
        hooks = list(self._hooks.items())
        try:
            prepared = await asyncio.to_thread(_prepare_all, hooks)
        except _Refusal as refusal:
            log.error("reload_refused", pid=os.getpid(), part=refusal.part, file=refusal.refused.file,
                      reason=refusal.refused.reason, detail="nothing was changed: the material in use stays")
            return False
        changed: dict[str, Any] = {}
        for name, change in prepared:
            if change is None:
                changed[name] = "unchanged"
            else:
                change.commit()
                changed[name] = change.summary or "reloaded"
        log.info("reload_completed", pid=os.getpid(), **changed)
        return True


_Stamp = tuple[int, int, int] | None


def _stamps(files: Iterable[Path]) -> dict[Path, _Stamp]:
    """Inode, size and modification time of each file (None: missing or unreadable). Followed
    through symbolic links: a Kubernetes volume swaps the directory they point into."""
    stamps: dict[Path, _Stamp] = {}
    for file in files:
        try:
            status = os.stat(file)
        except OSError:
            stamps[file] = None
        else:
            stamps[file] = (status.st_ino, status.st_size, status.st_mtime_ns)
    return stamps


class _Refusal(Exception):
    def __init__(self, part: str, refused: ReloadRefused) -> None:
        super().__init__(part)
        self.part = part
        self.refused = refused


def _prepare_all(hooks: list[tuple[str, ReloadHook]]) -> list[tuple[str, PreparedChange | None]]:
    prepared: list[tuple[str, PreparedChange | None]] = []
    for name, hook in hooks:
        try:
            prepared.append((name, hook()))
        except ReloadRefused as refused:
            raise _Refusal(name, refused) from refused
        except Exception as exc:  # a hook's bug must not kill the process or half-reload it
            raise _Refusal(name, ReloadRefused(None, f"unexpected error: {type(exc).__name__}: {exc}")) from exc
    return prepared


# The process's hooks: one process serves one application.
reload_hooks = Reloader()


def install_reload_signal(loop: asyncio.AbstractEventLoop, reloader: Reloader = reload_hooks) -> bool:
    """Make ``SIGHUP`` reload (``reloader.request``) on ``loop``; False where signals cannot
    be handled (not the main thread, not POSIX)."""
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        return False
    try:
        loop.add_signal_handler(sighup, reloader.request)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        log.debug("reload_signal_unavailable", detail=str(exc))
        return False
    return True
