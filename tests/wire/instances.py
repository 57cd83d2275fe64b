"""Several ``authz serve`` instances sharing one Redis store, as one deployment: they are started
with the same ``--store`` and the same ``--issuer`` (a token one instance issued is introspected
and revoked at another), and the management CLI reaches the same store.

Also the measurement every multi-instance test makes: how long after a change was acknowledged
(the CLI returned, the revocation was answered) each instance behaves accordingly.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.server import RunningServer, authz_cli, free_port
from tests.wire.client import WireClient, WireResponse, assert_invalid_client
from tests.wire.material import DN_CLIENT_SUBJECT, Credentials, WirePKI, registrations

__all__ = ["ANSWER_WITHIN", "PROPAGATION", "Answer", "Instances", "Traffic", "milliseconds", "propagation",
           "start_instances", "stop_instances", "timed"]

# What the issue promises for a change made anywhere to be seen by every instance; the
# change feed itself takes milliseconds, the rest is the requests that observe it.
PROPAGATION = 1.0
# A request answered later than this is taken as hanging (a store that does not answer must
# cost a request at most --store-timeout, 2 s, not the client's own timeout).
ANSWER_WITHIN = 3.0

StartServer = Callable[..., RunningServer]


@dataclass
class Instances:
    """Running instances by name ("A", "B"), the store they share, the issuer they all use."""

    store: str
    issuer: str
    servers: dict[str, RunningServer]
    pki: WirePKI
    cli_dir: Path  # the CLI helper appends --data-dir: unused with --store, but required

    def __getitem__(self, name: str) -> RunningServer:
        return self.servers[name]

    def client(self, name: str, via: str = "httpx") -> WireClient:
        return WireClient(via, self.servers[name], self.pki.server_ca)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``authz ARGS --store URL``: the management CLI on the shared store."""
        return authz_cli(*args, "--store", self.store, data_dir=self.cli_dir, check=check)

    def register(self, client_ids: Sequence[str]) -> None:
        """Register clients of the wire suite (tests/wire/material.py), side by side."""
        every = registrations(self.pki)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: self.cli("clients", "add", c, *every[c]), client_ids))

    def add_dn_client(self, client_id: str, *, scope: str, replace: bool = False) -> float:
        """Register ``client_id`` for dn-client's certificate (tls_client_auth, its subject DN);
        returns the monotonic time the CLI returned, i.e. the change was acknowledged."""
        self.cli("clients", "add", client_id, "--auth-method", "tls_client_auth", "--subject-dn", DN_CLIENT_SUBJECT,
                 "--scope", scope, *(["--replace"] if replace else []))
        return time.monotonic()

    def token(self, name: str, credentials: Credentials, client_id: str) -> WireResponse:
        return timed(lambda: self.client(name).token(credentials, client_id))

    def introspect(self, name: str, credentials: Credentials, client_id: str, token: str) -> WireResponse:
        return timed(lambda: self.client(name).post("/introspect", credentials,
                                                     {"client_id": client_id, "token": token}))

    def revoke(self, name: str, credentials: Credentials, client_id: str, token: str) -> WireResponse:
        return timed(lambda: self.client(name).post("/revoke", credentials, {"client_id": client_id, "token": token}))

    def is_active(self, name: str, credentials: Credentials, client_id: str, token: str) -> bool:
        response = self.introspect(name, credentials, client_id, token)
        assert response.status == 200, (name, response.status, response.body)
        return bool(response.json()["active"])

    def assert_unknown_client(self, response: WireResponse, client_id: str) -> None:
        """401 ``unknown client_id``, the realm being the shared issuer (not the URL of the
        instance that answered)."""
        assert_invalid_client(dataclasses.replace(response, issuer=self.issuer), "unknown client_id", client_id)


def timed(request: Callable[[], WireResponse], within: float = ANSWER_WITHIN) -> WireResponse:
    """``request()``, failing the test if the answer took ``within`` seconds or more."""
    started = time.monotonic()
    response = request()
    took = time.monotonic() - started
    assert took < within, f"answered after {took:.2f} s (status {response.status}): taken as a hang"
    return response


def start_instances(start: StartServer, store: str, pki: WirePKI, cli_dir: Path, *, names: Sequence[str] = ("A", "B"),
                    extra_args: Sequence[str] = (), **options: Any) -> Instances:
    """Start one ``authz serve`` per name on ``store``, each through ``start`` (which takes a
    data directory, extra arguments and start_server's options). The first instance's URL is
    every instance's ``--issuer``, as a load balancer's name would be."""
    first_port = free_port()
    issuer = f"https://127.0.0.1:{first_port}"

    def start_one(index: int) -> RunningServer:
        return start(cli_dir, ["--store", store, "--issuer", issuer, *extra_args],
                     port=first_port if index == 0 else None, **options)

    # Side by side: each spends about a second importing and starting.
    with ThreadPoolExecutor(len(names)) as pool:
        started = list(pool.map(start_one, range(len(names))))
    return Instances(store, issuer, dict(zip(names, started, strict=True)), pki, cli_dir)


def stop_instances(instances: Instances) -> None:
    for server in instances.servers.values():
        server.stop()


def propagation(checks: Mapping[str, Callable[[], bool]], *, since: float,
                within: float = PROPAGATION) -> dict[str, float]:
    """Seconds from ``since`` (a ``time.monotonic()``) until each check first held. The checks
    are tried in turn, each as soon as the previous answered (no sleep: each is a request), so
    that one instance's delay is not counted in another's; fails once ``within`` has passed
    with a check still not holding."""
    pending = dict(checks)
    seen: dict[str, float] = {}
    while pending:
        for name, check in list(pending.items()):
            if check():
                seen[name] = time.monotonic() - since
                del pending[name]
        elapsed = time.monotonic() - since
        assert not pending or elapsed < within, f"{sorted(pending)}: not after {elapsed:.3f} s (seen: {seen})"
    return seen


def milliseconds(delays: Mapping[str, float]) -> str:
    """``A 12.3 ms, B 15.0 ms``, for the figures the tests print."""
    return ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in sorted(delays.items()))


@dataclass(frozen=True)
class Answer:
    """One request of ``Traffic``: which instance, which request, what came back (or the
    exception the client raised), how long it took, and when it ended (``time.monotonic()``)."""

    instance: str
    request: str
    response: WireResponse | None
    error: str | None
    seconds: float
    at: float

    def describe(self) -> str:
        if self.response is None:
            what = self.error
        else:  # the cause the instance logged, if any
            causes = [e.get("error") for e in self.response.events if e.get("level") == "error"]
            what = f"{self.response.status} {self.response.body[:100]!r} {causes}"
        return f"{self.request} at {self.instance}: {what} after {self.seconds * 1000:.0f} ms"


class Traffic:
    """What clients keep doing while the store fails: ``requests`` (by name) sent in turn to
    every instance, one after the other in a thread of its own, from ``with`` until its end."""

    def __init__(self, instances: Instances, requests: Mapping[str, Callable[[WireClient], WireResponse]]) -> None:
        self._instances = instances
        self._requests = dict(requests)
        self.answers: list[Answer] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            for name in self._instances.servers:
                for label, request in self._requests.items():
                    started = time.monotonic()
                    try:
                        response, error = request(self._instances.client(name)), None
                    except Exception as exc:  # a refused connection, a client timeout: recorded, not fatal
                        response, error = None, repr(exc)
                    now = time.monotonic()
                    self.answers.append(Answer(name, label, response, error, now - started, now))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def wait_until(self, moment: float, timeout: float = 20.0) -> None:
        """Wait until every request has been answered by every instance after ``moment``."""
        deadline = time.monotonic() + timeout
        expected = {(name, label) for name in self._instances.servers for label in self._requests}
        while {(a.instance, a.request) for a in self.answers if a.at > moment} != expected:
            assert self._thread.is_alive(), "the traffic stopped"
            assert time.monotonic() < deadline, f"the traffic did not go on for {timeout} s"
            time.sleep(0.01)

    def unexpected(self, request: str, expected: Callable[[WireResponse], bool]) -> list[str]:
        """The answers to ``request`` that are not ``expected``, or took ANSWER_WITHIN or more."""
        return [a.describe() for a in self.answers if a.request == request and (
            a.response is None or not expected(a.response) or a.seconds >= ANSWER_WITHIN)]

    def count(self, request: str, expected: Callable[[WireResponse], bool] = lambda _: True) -> int:
        return sum(1 for a in self.answers if a.request == request and a.response is not None and expected(a.response))
