"""Real Redis servers (Debian's redis-server) run from the files of deploy/redis/.

The shipped redis.conf is used as it is: the tests change only what differs between a
server and a test run, on redis-server's command line after the file (the port, the
directory, the listening address, the users file; for a replica, the lines redis.conf has
commented for replicas) or, for sentinel.conf, by exact replacement of the values it holds.
The users file is the shipped users.acl with the placeholder password hashes replaced (and
the users a set-up needs switched on), so that the users and their rights are the shipped
ones. Each server runs from a copy of its file in a directory of its own: a Sentinel rewrites
its file, and a failover makes Redis rewrite its own (CONFIG REWRITE), which must never
touch the repository.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.deploy.proxies import render
from tests.support.debian import require_command
from tests.support.server import REPO, free_port

__all__ = ["REDIS_FILES", "USERS", "RedisServer", "RedisServers", "connect", "store_options"]

REDIS_FILES = REPO / "deploy" / "redis"
# The users of users.acl, and the hash every one of them ships with (nobody can log in).
USERS = ("authz", "admin", "replica", "sentinel")
PLACEHOLDER = "#" + "0" * 64
# What each kind of process logs once it serves (a Sentinel never logs the first).
READY = "Ready to accept connections"
SENTINEL_READY = "+monitor master authz"


def _hashed(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


@dataclass
class RedisServer:
    """One redis-server (or Sentinel) process, and how to start it again as it was."""

    command: list[str]
    port: int
    directory: Path
    passwords: dict[str, str]
    ready: str = READY
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:  # appended: a restart keeps the first run's lines
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.log().count(self.ready) < self.starts:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.command[0]} did not start:\n{self.log()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9: no shutdown, no last write; what Redis acknowledged must be on disk."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, user: str) -> redis.Redis:
        """A connection as ``user`` of users.acl (close it: the tests turn warnings into errors)."""
        return connect(self.port, user, self.passwords[user])

    def url(self, db: int = 0) -> str:
        return f"redis://authz@127.0.0.1:{self.port}/{db}"


@dataclass
class RedisServers:
    """Starts Redis servers from deploy/redis/ in ``root``; ``stop_all`` ends every one."""

    root: Path
    executable: str = field(default_factory=lambda: require_command("redis-server", "redis-server"))
    started: list[RedisServer] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=lambda: {user: secrets.token_urlsafe(18) for user in USERS})

    def password_file(self, user: str = "authz") -> Path:
        """The file --store-password-file reads (the password stays out of argv)."""
        path = self.root / f"{user}.password"
        path.write_text(self.passwords[user] + "\n")
        path.chmod(0o600)
        return path

    def users_file(self, directory: Path, *, enabled: Sequence[str] = ()) -> Path:
        """The shipped users.acl with this run's passwords, and the ``enabled`` users switched on."""
        lines = []
        for line in (REDIS_FILES / "users.acl").read_text().splitlines():
            words = line.split()
            if words[1] in self.passwords:
                assert PLACEHOLDER in words, f"users.acl: {words[1]} no longer has the placeholder hash"
                words[words.index(PLACEHOLDER)] = _hashed(self.passwords[words[1]])
            if words[1] in enabled:
                words[words.index("off")] = "on"
            lines.append(" ".join(words))
        path = directory / "users.acl"
        path.write_text("\n".join(lines) + "\n")
        return path

    def redis(self, name: str, *options: str, config: str | None = None, enabled: Sequence[str] = (),
              port_option: str = "--port") -> RedisServer:
        """A Redis from redis.conf (or ``config``, a variant of its text), with ``options`` appended
        to its command line, and the ``enabled`` users of users.acl switched on. Its port is
        set by ``port_option`` (``--tls-port`` for the TLS variant)."""
        directory = self.root / name
        directory.mkdir()
        conf = directory / "redis.conf"
        if config is None:
            shutil.copyfile(REDIS_FILES / "redis.conf", conf)
        else:
            conf.write_text(config)
        port = free_port()
        command = [self.executable, str(conf), port_option, str(port), "--dir", str(directory), "--bind", "127.0.0.1",
                   "--aclfile", str(self.users_file(directory, enabled=enabled)), *options]
        return self._start(RedisServer(command, port, directory, self.passwords))

    def sentinel(self, name: str, master: RedisServer) -> RedisServer:
        """A Sentinel from sentinel.conf, watching ``master`` alone (quorum 1)."""
        directory = self.root / name
        directory.mkdir()
        conf = directory / "sentinel.conf"
        conf.write_text(render(REDIS_FILES / "sentinel.conf", {
            "sentinel monitor authz 10.0.0.11 6379 2": f"sentinel monitor authz 127.0.0.1 {master.port} 1",
            "sentinel auth-pass authz CHANGE-ME": f"sentinel auth-pass authz {self.passwords['sentinel']}",
        }))
        port = free_port()
        command = [self.executable, str(conf), "--sentinel", "--port", str(port), "--dir", str(directory),
                   "--bind", "127.0.0.1"]
        return self._start(RedisServer(command, port, directory, self.passwords, SENTINEL_READY))

    def _start(self, server: RedisServer) -> RedisServer:
        self.started.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in reversed(self.started):
            server.stop()


def connect(port: int, user: str | None = None, password: str | None = None) -> redis.Redis:
    """A client that tries once: redis-py would retry a refused login with back-off for seconds."""
    return redis.Redis(host="127.0.0.1", port=port, username=user, password=password, socket_timeout=5,
                       retry=Retry(NoBackoff(), 0))


def store_options(url: str, password_file: Path, *more: str) -> list[str]:
    """The --store options of authz serve and of the management commands."""
    return ["--store", url, "--store-password-file", str(password_file), *more]

