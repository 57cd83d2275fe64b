"""Real Redis servers (Debian's ``redis-server``, 7.0 on bookworm) for the tests of the Redis store.

Three set-ups, each a context manager that starts everything on entry and stops everything on
exit, whatever happens in between:

* :class:`RedisServer`, one server, optionally with a password (``requirepass``), an ACL user
  or TLS: ``redis://[[USER]:PASSWORD@]127.0.0.1:PORT/0``, ``rediss://127.0.0.1:PORT/0``;
* :class:`RedisClusterServers`, a real cluster of three masters without replicas, created by
  ``redis-cli --cluster create``: ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``;
* :class:`RedisSentinelServers`, a master, a replica and three sentinels (quorum 2):
  ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0``.

Every data node runs with the persistence of an install that promises that nothing it
acknowledged is lost (``appendonly yes``, ``appendfsync always``, no RDB snapshots), so that
``kill()`` (SIGKILL, a crash) then ``start()`` (same port, same directory) shows what survives.
Each process has a directory of its own (configuration file, data, log ``redis.log``), under
the directory the test gives (``tmp_path``): nothing is written anywhere else.

The pytest fixtures at the end (``redis_servers``, ``redis_cluster``, ``redis_sentinel``)
are made available to a directory of tests by importing them into its conftest.py, as
tests/wire/conftest.py does.
"""

from __future__ import annotations

import atexit
import functools
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import pytest
import redis
import redis.sentinel
import trustme
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from tests.support.debian import require_command
from tests.support.server import free_port

__all__ = [
    "CLUSTER_SLOTS",
    "HOST",
    "RedisClusterServers",
    "RedisProcess",
    "RedisSentinelServers",
    "RedisServer",
    "RedisServers",
    "RedisTLSFiles",
    "SentinelProcess",
    "make_tls_files",
    "redis_cluster",
    "redis_cluster_servers",
    "redis_sentinel",
    "redis_sentinel_servers",
    "redis_servers",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
POLL = 0.02  # seconds between two readiness probes: a server answers within tens of ms
START_TIMEOUT = 20.0  # generous: the suite shares two cores with other test runs
STOP_TIMEOUT = 15.0  # a master may wait up to shutdown-timeout (10 s) for lagging replicas
CLUSTER_SLOTS = 16384
TLSAuthClients = Literal["no", "optional", "yes"]


@functools.cache
def redis_server_binary() -> str:
    """``redis-server`` from Debian's package (installed without starting its service). It
    is also the sentinel, run as ``redis-server CONFIG --sentinel``: on bookworm,
    /usr/bin/redis-server and /usr/bin/redis-sentinel are both symbolic links to
    redis-check-rdb (package redis-tools), one binary that acts on the name it is run by; the
    redis-sentinel package adds only that link, a configuration and a service."""
    return require_command("redis-server", "redis-server")


@functools.cache
def redis_cli_binary() -> str:
    return require_command("redis-cli", "redis-tools")


# Ports handed out in this process, never handed out again: two set-ups of one session must
# not get the same port from the kernel, even when one of them is stopped (a restart takes its
# port back).
_issued_ports: set[int] = set()


def _fresh_port() -> int:
    while True:
        port = free_port()
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port


# Processes still running, killed when the interpreter exits: the context managers and
# fixtures stop everything, but a test run interrupted where no teardown runs must not
# leave servers behind either.
_running: set[RedisProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_running):
        process.kill()


def _first_line(value: Any) -> str:
    return str(value).splitlines()[0] if str(value) else repr(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_until(condition: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``condition`` (which returns ``None`` when satisfied, else why not) every POLL s;
    raise with its last answer after ``timeout`` s. Connection errors and error replies
    (LOADING, NOGOODSLAVE, INPROG...) count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reason = condition()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError,
                OSError) as error:
            reason = f"{type(error).__name__}: {error}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s ({reason})")
        time.sleep(POLL)


@dataclass(frozen=True)
class RedisTLSFiles:
    """PEM files of a test PKI: the CA clients trust, the server's certificate chain and key,
    and a client certificate and key (for ``tls-auth-clients yes``)."""

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_tls_files(directory: Path) -> RedisTLSFiles:
    """A fresh trustme CA, a server certificate for 127.0.0.1 and a client certificate,
    written to ``directory`` (keys readable by their owner only)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="authz tests Redis CA")
    server = ca.issue_cert(HOST)
    client = ca.issue_cert("redis-client.authz.test")
    files = RedisTLSFiles(ca_file=directory / "ca.pem", server_cert_file=directory / "server.pem",
                          server_key_file=directory / "server.key", client_cert_file=directory / "client.pem",
                          client_key_file=directory / "client.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    for leaf, cert_file, key_file in ((server, files.server_cert_file, files.server_key_file),
                                      (client, files.client_cert_file, files.client_key_file)):
        for index, blob in enumerate(leaf.cert_chain_pems):
            blob.write_to_path(str(cert_file), append=index > 0)
        key_file.touch(mode=0o600)
        leaf.private_key_pem.write_to_path(str(key_file))
    return files


class RedisProcess:
    """One ``redis-server`` process (a data node or a sentinel) with a directory of its own:
    the configuration file, written at the first start and kept afterwards (Redis and
    Sentinel rewrite it: a sentinel records what it learnt, and a failover records a new
    ``replicaof`` through CONFIG REWRITE, as on a real install), its data and its log.

    Its ports are chosen when it is created and kept across restarts; the first start moves
    to other free ports if another process took one in the meantime (free_port only proves
    that a port was free when it asked)."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.config_path = directory / "redis.conf"
        self.log_path = directory / "redis.log"
        self.port = port if port is not None else _fresh_port()
        self._pinned = port is not None  # a port chosen by the caller is never changed
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._launched_at = 0.0
        self.start_seconds: float | None = None  # how long the last start took

    # What a subclass defines.

    def _config(self) -> list[str]:
        raise NotImplementedError

    def _arguments(self) -> list[str]:
        return [redis_server_binary(), str(self.config_path)]

    def _reassign_ports(self) -> None:
        self.port = _fresh_port()

    def _ready(self) -> str | None:
        """``None`` once the process serves requests, else why not yet."""
        with self.client(socket_connect_timeout=1, socket_timeout=1) as probe:
            return None if probe.ping() else "no PONG"

    def _after_start(self) -> None:
        """Runtime settings that the configuration file cannot hold."""

    def client(self, **options: Any) -> redis.Redis:
        """A synchronous client of this process (responses decoded to ``str`` unless
        ``decode_responses=False``); ``options`` go to ``redis.Redis``.

        It does not retry: redis-py retries connection errors (a refused password, a failed
        TLS handshake) three times with backoff by default, 3.5 s before a test asserting the
        refusal sees it; and the helpers wait for readiness themselves."""
        settings: dict[str, Any] = {"host": HOST, "port": self.port, "decode_responses": True,
                                    "socket_connect_timeout": 5, "socket_timeout": 10, "retry": Retry(NoBackoff(), 0)}
        settings.update(options)
        return redis.Redis(**settings)

    # Life cycle.

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process (again: same ports, same directory) and wait until it answers."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (set-ups launch their processes together, then
        wait for them with :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self.describe()} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text("".join(f"{line}\n" for line in self._config()))
        self._launched_at = time.monotonic()
        with self.log_path.open("ab") as log_file:  # the child keeps its own descriptor
            self._log_offset = log_file.tell()
            self._process = subprocess.Popen(self._arguments(), stdin=subprocess.DEVNULL, stdout=log_file,
                                             stderr=subprocess.STDOUT, cwd=self.directory)
        _running.add(self)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the launched process answers; on a first start that lost a port to
        another process, launch again on new ports."""
        for attempt in range(5):
            try:
                self._wait_ready_once(timeout)
                break
            except _PortTaken:
                if self._pinned or attempt == 4:
                    raise
                log.info("%s: port taken, moving to other ports", self.describe())
                self._reassign_ports()
                self.config_path.unlink()
                self.launch()
        self._pinned = True  # from now on the set-up's URL names these ports
        self._after_start()
        self.start_seconds = time.monotonic() - self._launched_at
        log.info("%s ready in %.3f s", self.describe(), self.start_seconds)

    def _wait_ready_once(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self._process
        assert process is not None
        reason = "not probed"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _running.discard(self)
                tail = self.log_tail()
                if "Address already in use" in tail:
                    raise _PortTaken(tail)
                raise RuntimeError(f"{self.describe()} exited with {process.returncode}; its log ends with:\n{tail}")
            try:
                answer = self._ready()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
                answer = f"{type(error).__name__}: {_first_line(error)}"
            if answer is None:
                return
            reason = answer
            time.sleep(POLL)
        self.kill()
        raise RuntimeError(f"{self.describe()} did not answer within {timeout:.0f} s ({reason}); "
                           f"its log ends with:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown: the AOF is flushed) and wait; SIGKILL if it hangs."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, to simulate a crash: only what the server had written survives."""
        self._end(signal.SIGKILL, STOP_TIMEOUT)

    def _end(self, signum: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored %s for %.0f s: killed", self.describe(), signum.name, timeout)
                process.kill()
                process.wait()
        _running.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines its last run wrote to its log."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_offset)
                text = log_file.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        return f"{type(self).__name__} on port {self.port} ({self.directory})"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class _PortTaken(RuntimeError):
    pass


class RedisServer(RedisProcess):
    """A Redis data node: alone, in a cluster (``cluster=True``) or behind sentinels
    (``replica_of``). ``password`` alone protects the default user (``requirepass``); with
    ``username`` it belongs to an ACL user allowed everything, and the default user is off.
    With ``tls``, the server listens on TLS only and ``tls_auth_clients`` says whether clients
    must present a certificate."""

    def __init__(self, directory: Path, *, port: int | None = None, password: str | None = None,
                 username: str | None = None, tls: RedisTLSFiles | None = None,
                 tls_auth_clients: TLSAuthClients = "optional", cluster: bool = False,
                 cluster_node_timeout_ms: int = 2000, replica_of: tuple[str, int] | None = None,
                 extra_config: Sequence[str] = ()) -> None:
        if username is not None and password is None:
            raise ValueError("an ACL user needs a password")
        if any(character.isspace() or character in "\"'" for character in (username or "") + (password or "")):
            raise ValueError("no blanks or quotes in the user name and password: they go unquoted into redis.conf")
        super().__init__(directory, port=port)
        self.password = password
        self.username = username
        self.tls = tls
        self.tls_auth_clients: TLSAuthClients = tls_auth_clients
        self.cluster = cluster
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        # The cluster bus gets a port of its own (cluster-port, Redis >= 7.0) instead of the
        # default port + 10000: that one may be taken, or beyond 65535 for a port the kernel
        # hands out (32768-60999).
        self.cluster_port = _fresh_port() if cluster else None
        self.replica_of = replica_of
        self.extra_config = list(extra_config)

    def _config(self) -> list[str]:
        lines = [
            "# written by tests/support/redis_servers.py",
            f"bind {HOST}",
            f"dir {self.directory}",
            'logfile ""',  # standard output, which goes to redis.log
            "daemonize no",
            # Nothing acknowledged is lost: every write is in the AOF, fsynced, before the reply.
            "appendonly yes",
            "appendfsync always",
            'save ""',
            # A replica's full synchronisation (diskless, the default) starts at once instead of
            # after 5 s spent waiting for other replicas to share it.
            "repl-diskless-sync-delay 0",
        ]
        if self.tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.server_cert_file}",
                      f"tls-key-file {self.tls.server_key_file}", f"tls-ca-cert-file {self.tls.ca_file}",
                      f"tls-auth-clients {self.tls_auth_clients}"]
        if self.username is not None:
            lines += [f"user {self.username} on >{self.password} ~* &* +@all", "user default off"]
        elif self.password is not None:
            lines.append(f"requirepass {self.password}")
        if self.cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf", f"cluster-port {self.cluster_port}",
                      f"cluster-node-timeout {self.cluster_node_timeout_ms}"]
        if self.replica_of is not None:
            lines.append(f"replicaof {self.replica_of[0]} {self.replica_of[1]}")
            if self.username is not None:
                lines.append(f"masteruser {self.username}")
            if self.password is not None:
                lines.append(f"masterauth {self.password}")
        return lines + self.extra_config

    def _reassign_ports(self) -> None:
        super()._reassign_ports()
        if self.cluster:
            self.cluster_port = _fresh_port()

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def url(self) -> str:
        scheme = "redis" if self.tls is None else "rediss"
        if self.username is not None:
            credentials = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        elif self.password is not None:
            credentials = f":{quote(self.password, safe='')}@"
        else:
            credentials = ""
        return f"{scheme}://{credentials}{HOST}:{self.port}/0"

    def connection_options(self) -> dict[str, Any]:
        """What ``redis.Redis`` needs besides host and port: credentials, and for TLS the CA
        (and the client certificate when the server requires one)."""
        options: dict[str, Any] = {"password": self.password, "username": self.username}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca_file))
            if self.tls_auth_clients == "yes":
                options.update(ssl_certfile=str(self.tls.client_cert_file), ssl_keyfile=str(self.tls.client_key_file))
        return options

    def client(self, **options: Any) -> redis.Redis:
        return super().client(**{**self.connection_options(), **options})

    def role(self) -> list[Any]:
        """The ROLE reply: ``["master", offset, replicas]`` or
        ``["slave", host, port, state, offset]``."""
        with self.client() as connection:
            reply = connection.role()
        assert isinstance(reply, list)
        return reply


class SentinelProcess(RedisProcess):
    """A sentinel watching one master (``redis-server CONFIG --sentinel``)."""

    # Sentinel's internal periods, lowered through SENTINEL DEBUG (Redis >= 7.0; runtime only,
    # set again at each start): with the defaults, sentinels discover one another by hellos
    # every 2 s, and see a new replica by an INFO every 10 s. Only the tests' waits depend on
    # them. But a sentinel turns an instance it believes a replica and that says it is a
    # master back into a replica 4 publish periods after it said so, and the leader of a
    # failover checks its promoted replica's INFO only every second: with publish-period 100
    # another sentinel demoted the promoted replica (400 ms) before the leader saw it promoted
    # (-failover-abort-slave-timeout). 500 gives 2 s, twice the leader's period.
    DEBUG_PERIODS: tuple[tuple[str, int], ...] = (("info-period", 200), ("publish-period", 500), ("ping-period", 200))

    def __init__(self, directory: Path, *, service: str, master: tuple[str, int], quorum: int,
                 down_after_ms: int, failover_timeout_ms: int, port: int | None = None) -> None:
        super().__init__(directory, port=port)
        self.service = service
        self.master = master
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _config(self) -> list[str]:
        # Sentinel refuses to start without a configuration file it can rewrite: it records
        # there its id, the replicas and sentinels it learns of and each failover.
        name = self.service
        return [
            "# written by tests/support/redis_servers.py, then rewritten by Sentinel",
            f"port {self.port}",
            f"bind {HOST}",
            f"dir {self.directory}",
            'logfile ""',
            "daemonize no",
            f"sentinel monitor {name} {self.master[0]} {self.master[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]

    def _arguments(self) -> list[str]:
        return [*super()._arguments(), "--sentinel"]

    def _after_start(self) -> None:
        with self.client() as connection:
            settings = [str(item) for pair in self.DEBUG_PERIODS for item in pair]
            connection.execute_command("SENTINEL", "DEBUG", *settings)

    def command(self, *args: str) -> Any:
        """``SENTINEL ARGS`` on this sentinel, the raw reply (strings decoded)."""
        with self.client() as connection:
            return connection.execute_command("SENTINEL", *args)


def _stop_all(processes: Sequence[RedisProcess], *, kill: bool = False) -> None:
    """Stop (or kill) every process, even when one of them fails to."""
    errors: list[BaseException] = []
    for process in processes:
        try:
            process.kill() if kill else process.stop()
        except BaseException as error:  # the others must be stopped all the same
            errors.append(error)
    if errors:
        raise errors[0]


def _start_all(processes: Sequence[RedisProcess], timeout: float = START_TIMEOUT) -> None:
    """Start the stopped processes among ``processes`` together, and wait for them."""
    stopped = [process for process in processes if not process.running]
    for process in stopped:
        process.launch()
    for process in stopped:
        process.wait_ready(timeout)


class RedisClusterServers:
    """A Redis Cluster of ``masters`` masters without replicas, each a :class:`RedisServer`
    with ``cluster-enabled yes`` in a subdirectory of ``directory``; the slots are shared out
    by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, *, masters: int = 3, node_timeout_ms: int = 2000,
                 node_config: Sequence[str] = ()) -> None:
        self.directory = directory
        self.nodes = [RedisServer(directory / f"node{index}", cluster=True, cluster_node_timeout_ms=node_timeout_ms,
                                  extra_config=node_config)
                      for index in range(masters)]
        self._created = False
        self.timings: dict[str, float] = {}  # seconds: "nodes", "create", "ok" of the first start

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the nodes that are not running (all of them the first time, then create the
        cluster) and wait until every node says the cluster is ok. A master that restarts
        says ``cluster_state:fail`` for 2 s whatever happens (CLUSTER_WRITABLE_DELAY, so that
        the cluster may reconfigure it first): restarting a node costs 2 s."""
        began = time.monotonic()
        _start_all(self.nodes, timeout)
        if not self._created:
            self.timings["nodes"] = time.monotonic() - began
            self._create(timeout)
            self.timings["create"] = time.monotonic() - began - self.timings["nodes"]
        self.wait_ok(timeout)
        if "ok" not in self.timings:
            self.timings["ok"] = time.monotonic() - began
            log.info("cluster on ports %s ready in %.3f s (%s)", self.ports, self.timings["ok"], self.timings)

    def _create(self, timeout: float) -> None:
        addresses = [f"{HOST}:{port}" for port in self.ports]
        result = subprocess.run([redis_cli_binary(), "--cluster", "create", *addresses, "--cluster-replicas", "0",
                                 "--cluster-yes"], capture_output=True, text=True, timeout=max(timeout, 60),
                                stdin=subprocess.DEVNULL, cwd=self.directory)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({result.returncode}):\n{result.stdout}"
                               f"\n{result.stderr}")
        self._created = True

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        """CLUSTER INFO of ``node``, as a dictionary of strings."""
        with node.client() as connection:
            reply = connection.execute_command("CLUSTER", "INFO")
        if isinstance(reply, dict):
            return {str(key): _text(value) for key, value in reply.items()}
        return dict(line.split(":", 1) for line in _text(reply).splitlines() if ":" in line)

    def _not_ok(self) -> str | None:
        for node in self.nodes:
            info = self.cluster_info(node)
            expected = {"cluster_state": "ok", "cluster_slots_assigned": str(CLUSTER_SLOTS),
                        "cluster_slots_ok": str(CLUSTER_SLOTS), "cluster_known_nodes": str(len(self.nodes))}
            wrong = {key: info.get(key) for key, value in expected.items() if info.get(key) != value}
            if wrong:
                return f"node {node.port}: {wrong}"
        return None

    def wait_ok(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every node reports ``cluster_state:ok`` with every slot assigned and ok."""
        _wait_until(self._not_ok, timeout, f"cluster on ports {self.ports}")

    def stop(self) -> None:
        _stop_all(self.nodes)

    def kill(self) -> None:
        _stop_all(self.nodes, kill=True)

    def client(self, **options: Any) -> redis.RedisCluster:
        """A ``redis.RedisCluster`` knowing every node (responses decoded to ``str`` unless
        ``decode_responses=False``)."""
        settings: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": 5, "socket_timeout": 10}
        settings.update(options)
        nodes = [ClusterNode(HOST, port) for port in self.ports]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=nodes, **settings)

    def flush_all(self) -> None:
        """FLUSHALL on every master: a clean cluster for the next test, without recreating it."""
        for node in self.nodes:
            with node.client() as connection:
                connection.flushall()

    def reset(self, timeout: float = START_TIMEOUT) -> None:
        """Back to a healthy, empty cluster after whatever a test did: start the nodes it
        stopped, wait until the cluster is ok, flush every master."""
        self.start(timeout)
        self.flush_all()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class RedisSentinelServers:
    """A master and a replica (``replicaof``) watched by ``sentinels`` sentinels (quorum
    ``quorum``) that fail over fast: the master is down for them after ``down_after_ms``."""

    def __init__(self, directory: Path, *, service: str = "mymaster", sentinels: int = 3, quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000, data_config: Sequence[str] = ()) -> None:
        self.directory = directory
        self.service = service
        # data_config: e.g. "min-replicas-to-write 1", so that a former master refuses the
        # writes that clients still send it after a failover instead of losing them.
        master = RedisServer(directory / "data0", extra_config=data_config)
        replica = RedisServer(directory / "data1", replica_of=master.address, extra_config=data_config)
        self.data_nodes = [master, replica]
        self.sentinels = [SentinelProcess(directory / f"sentinel{index}", service=service, master=master.address,
                                          quorum=quorum, down_after_ms=down_after_ms,
                                          failover_timeout_ms=failover_timeout_ms)
                          for index in range(sentinels)]
        self._formed = False
        self.timings: dict[str, float] = {}  # seconds: "data", "sentinels", "ready", "failover"

    @property
    def ports(self) -> list[int]:
        """The sentinels' ports, those of the URL."""
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"{HOST}:{port}" for port in self.ports) + f"/{self.service}/0"

    @property
    def processes(self) -> list[RedisProcess]:
        return [*self.data_nodes, *self.sentinels]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start what is not running and wait until the set-up is healthy (see
        :meth:`wait_healthy`). The first time, one after the other: the master, the replica
        (told the master's port only now: a first start may have moved it), and once the
        replica is in sync the sentinels, which learn of replicas from the master's INFO and
        so know it from their first INFO."""
        began = time.monotonic()
        if not self._formed:
            master, replica = self.data_nodes
            _start_all([master], timeout)
            replica.replica_of = master.address
            _start_all([replica], timeout)
            _wait_until(self._replica_not_synced, timeout, "replica in sync")
            self.timings["data"] = time.monotonic() - began
            for sentinel in self.sentinels:
                sentinel.master = master.address
            _start_all(self.sentinels, timeout)
            self.timings["sentinels"] = time.monotonic() - began - self.timings["data"]
        else:
            _start_all(self.processes, timeout)
        self.wait_healthy(timeout)
        if not self._formed:
            self._formed = True
            self.timings["ready"] = time.monotonic() - began
            log.info("sentinel set-up on ports %s ready in %.3f s (%s)", self.ports, self.timings["ready"],
                     self.timings)

    def _replica_not_synced(self) -> str | None:
        role = self.data_nodes[1].role()
        return None if role[0] == "slave" and role[3] == "connected" else f"replica's ROLE {role}"

    def _sentinel_views(self) -> list[tuple[str, int]]:
        views = []
        for sentinel in self.sentinels:
            reply = sentinel.command("GET-MASTER-ADDR-BY-NAME", self.service)
            if not reply:
                raise RuntimeError(f"sentinel {sentinel.port} does not know {self.service}")
            views.append((_text(reply[0]), int(reply[1])))
        return views

    def _unhealthy(self) -> str | None:
        views = self._sentinel_views()
        if len(set(views)) != 1:
            return f"the sentinels disagree on the master: {views}"
        address = views[0]
        master = self.node_at(address)
        if master.role()[0] != "master":
            return f"{address} is not a master: {master.role()}"
        for node in self.data_nodes:
            if node is not master:
                role = node.role()
                if role[:4] != ["slave", address[0], address[1], "connected"]:
                    return f"replica {node.port} not in sync with {address}: {role}"
        for sentinel in self.sentinels:
            # Flat lists of (field, value) pairs whatever the client's response parsing.
            replicas = [_pairs(entry) for entry in sentinel.command("REPLICAS", self.service)]
            healthy = {int(entry["port"]) for entry in replicas
                       if entry.get("flags") == "slave" and entry.get("master-link-status") == "ok"}
            expected = {node.port for node in self.data_nodes if node is not master}
            if not expected <= healthy:
                return f"sentinel {sentinel.port} sees the replicas {replicas}"
            peers = {int(_pairs(entry)["port"]) for entry in sentinel.command("SENTINELS", self.service)}
            if peers != {other.port for other in self.sentinels if other is not sentinel}:
                return f"sentinel {sentinel.port} knows the sentinels {sorted(peers)}"
        return None

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every sentinel names the same master, which answers ROLE as master, the
        other data node is its replica and in sync, and every sentinel knows that replica and
        the other sentinels (so that a failover can happen and reach every client)."""
        _wait_until(self._unhealthy, timeout, f"sentinel set-up on ports {self.ports}")

    def master_address(self) -> tuple[str, int]:
        """The master's address, as the first running sentinel gives it."""
        for sentinel in self.sentinels:
            if sentinel.running:
                reply = sentinel.command("GET-MASTER-ADDR-BY-NAME", self.service)
                return _text(reply[0]), int(reply[1])
        raise RuntimeError("no sentinel is running")

    def node_at(self, address: tuple[str, int]) -> RedisServer:
        for node in self.data_nodes:
            if node.address == address:
                return node
        raise LookupError(f"no data node at {address}")

    def master(self) -> RedisServer:
        return self.node_at(self.master_address())

    def replica(self) -> RedisServer:
        master = self.master()
        return next(node for node in self.data_nodes if node is not master)

    def failover(self, timeout: float = START_TIMEOUT, *, settled: bool = False) -> tuple[str, int]:
        """SENTINEL FAILOVER (no agreement asked of the other sentinels), then wait until every
        sentinel names the replica as master and it answers ROLE as master; returns its
        address. The former master still believes it is a master until a sentinel turns it
        into a replica, 2 s later (see SentinelProcess.DEBUG_PERIODS; 8 s with the default
        periods): ``settled`` waits for that too (wait_healthy), as ``reset`` does."""
        began = time.monotonic()
        old = self.master_address()
        # NOGOODSLAVE while the sentinel's view of the replica is stale, INPROG while a
        # failover runs: errors, which _wait_until retries.
        _wait_until(self._ask_failover, timeout, f"SENTINEL FAILOVER {self.service}")

        def switched() -> str | None:
            views = self._sentinel_views()
            if old in views or len(set(views)) != 1:
                if self._failover_given_up(old):
                    # The sentinel gives a failover up when, as it selects the replica, its last
                    # INFO of it is older than 3 info periods (600 ms here), or when it does not
                    # see it promoted in time: on a loaded machine (a suite run beside others),
                    # it happens. Ask again (an error reply is "not yet" for _wait_until).
                    log.warning("the failover from %s was given up; asking again. The sentinel's log ends "
                                "with:\n%s", old, self.sentinels[0].log_tail(10))
                    self._ask_failover()
                return f"the sentinels name {views}"
            role = self.node_at(views[0]).role()
            return None if role[0] == "master" else f"{views[0]} answers ROLE {role}"

        _wait_until(switched, timeout, f"every sentinel naming another master than {old}")
        if settled:
            self.wait_healthy(timeout)
        self.timings["failover"] = time.monotonic() - began
        new = self.master_address()
        log.info("failover from %s to %s in %.3f s", old, new, self.timings["failover"])
        return new

    def _failover_given_up(self, old: tuple[str, int]) -> bool:
        """Whether the sentinel asked to fail over (the first) names ``old`` still and runs no
        failover: it gave it up."""
        state = _pairs(self.sentinels[0].command("MASTER", self.service))
        address = (state.get("ip"), int(state.get("port", 0)))
        return address == old and "failover_in_progress" not in state.get("flags", "")

    def _ask_failover(self) -> str | None:
        reply = self.sentinels[0].command("FAILOVER", self.service)
        return None if reply in (True, "OK", b"OK") else f"SENTINEL FAILOVER answered {reply!r}"

    def sentinel_client(self, **options: Any) -> redis.sentinel.Sentinel:
        """A ``redis.sentinel.Sentinel`` knowing the three sentinels; ``options`` go to the
        connections to the data nodes."""
        settings: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": 5, "socket_timeout": 10}
        settings.update(options)
        sentinel: redis.sentinel.Sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [(HOST, port) for port in self.ports], **settings)
        return sentinel

    def client(self, **options: Any) -> redis.Redis:
        """A client of the master, found through the sentinels (and found again after a
        failover)."""
        master: redis.Redis = self.sentinel_client(**options).master_for(self.service)  # type: ignore[no-untyped-call]
        return master

    def flush_all(self) -> None:
        """FLUSHALL on the master, and wait (WAIT) until the replica applied it."""
        with self.master().client() as connection:
            connection.flushall()
            connection.execute_command("WAIT", len(self.data_nodes) - 1, 5000)

    def reset(self, timeout: float = START_TIMEOUT) -> None:
        """Back to a healthy, empty set-up after whatever a test did (the master may be either
        data node): start what it stopped, wait until healthy, flush."""
        self.start(timeout)
        self.flush_all()

    def stop(self) -> None:
        """Sentinels first (so that they do not fail over while the data nodes stop), then the
        replica, then the master (which would otherwise wait for it to catch up)."""
        data = sorted(self.data_nodes, key=_is_master)
        _stop_all([*self.sentinels, *data])

    def kill(self) -> None:
        _stop_all(self.processes, kill=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _is_master(node: RedisServer) -> bool:
    """Whether ``node`` answers ROLE as master (not when it does not answer)."""
    try:
        return node.running and node.role()[0] == "master"
    except (redis.exceptions.RedisError, OSError):
        return False


def _pairs(entry: Any) -> dict[str, str]:
    """A SENTINEL REPLICAS / SENTINELS entry as a dictionary, from a flat list of field-value
    pairs or an already parsed dictionary."""
    if isinstance(entry, dict):
        return {_text(key): _text(value) for key, value in entry.items()}
    items = [_text(item) for item in entry]
    return dict(zip(items[::2], items[1::2], strict=True))


class RedisServers:
    """Single servers started by a test, each in a subdirectory of ``directory``; ``close``
    stops those still running."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[RedisServer] = []

    def start(self, *, password: str | None = None, username: str | None = None, tls: bool = False,
              tls_auth_clients: TLSAuthClients = "optional", extra_config: Sequence[str] = ()) -> RedisServer:
        """A running server; with ``tls``, certificates of a new CA in its directory
        (``server.tls.ca_file`` for clients)."""
        directory = self.directory / f"redis{len(self.started)}"
        tls_files = make_tls_files(directory / "tls") if tls else None
        server = RedisServer(directory, password=password, username=username, tls=tls_files,
                             tls_auth_clients=tls_auth_clients, extra_config=extra_config)
        self.started.append(server)
        server.start()
        return server

    def close(self) -> None:
        _stop_all(self.started)


# Fixtures. Cluster and sentinel set-ups take a second or two to form: one per test module,
# cleaned (FLUSHALL, stopped processes started again) before each test that uses it.


@pytest.fixture
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    """Start single servers (``redis_servers.start(password=...)``); all stopped after the test."""
    servers = RedisServers(tmp_path_factory.mktemp("redis"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def redis_cluster_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """The module's cluster, whatever state the last test left it in (see ``redis_cluster``)."""
    with RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The module's cluster, ok and empty."""
    redis_cluster_servers.reset()
    return redis_cluster_servers


@pytest.fixture(scope="module")
def redis_sentinel_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelServers]:
    """The module's sentinel set-up, whatever state the last test left it in."""
    with RedisSentinelServers(tmp_path_factory.mktemp("redis-sentinel")) as servers:
        yield servers


@pytest.fixture
def redis_sentinel(redis_sentinel_servers: RedisSentinelServers) -> RedisSentinelServers:
    """The module's sentinel set-up, healthy and empty (either data node may be the master)."""
    redis_sentinel_servers.reset()
    return redis_sentinel_servers
