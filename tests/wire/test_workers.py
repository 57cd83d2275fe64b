"""``authz serve --workers 2`` on a fresh store: both workers agree on one signing key and
issue tokens for both methods."""

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kept_connection import client_context
from tests.support.server import RunningServer
from tests.wire.client import WireClient, assert_token_response, verified_token
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients

pytestmark = pytest.mark.wire

CLIENTS = ["dn-client", "self-signed-client"]


@pytest.fixture(scope="module")
def two_workers(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("workers-data")
    register_clients(pki, data_dir, CLIENTS)
    server = start_wire_server(data_dir, ["--workers", "2"], ready_count=2)
    yield server
    server.stop()


def test_two_worker_processes_serve(two_workers: RunningServer) -> None:
    assert two_workers.log().count("Started server process") == 2


def test_both_methods_get_tokens_signed_with_one_key(via: str, two_workers: RunningServer, pki: WirePKI) -> None:
    client = WireClient(via, two_workers, pki.server_ca)
    jwks = client.get("/jwks").json()
    assert len(jwks["keys"]) == 1  # the workers raced to create the first key; one won
    for _ in range(4):
        for client_id in CLIENTS:
            body = assert_token_response(client.token(pki[client_id], client_id))
            header, claims = verified_token(body["access_token"], jwks)
            assert header["kid"] == jwks["keys"][0]["kid"]
            assert claims["client_id"] == client_id
            assert claims["cnf"] == {"x5t#S256": pki[client_id].thumbprint}


def _established_per_process(pids: list[int], port: int, state: str = "01") -> dict[int, int]:
    """How many TCP sockets on local ``port`` in ``state`` (01: established, 0A: listening)
    each process holds (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local_port, socket_state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
                if local_port == port and socket_state == state:
                    inodes.add(inode)
    counts = {}
    for pid in pids:
        descriptors = Path(f"/proc/{pid}/fd")
        links = [os.readlink(fd) for fd in descriptors.iterdir()]
        counts[pid] = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
    return counts


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_keep_alive_connections_spread_over_the_workers(two_workers: RunningServer, pki: WirePKI) -> None:
    # Each worker listens on a socket of its own (SO_REUSEPORT): the kernel spreads new
    # connections over them by a hash of their addresses. On one shared socket, a burst of
    # connections went to whichever worker woke first, which accepted the whole backlog (one
    # worker took 15-16 of 16 keep-alive connections). So: 32 TCP connections at once, then
    # their TLS handshakes and a request each. A split worse than 4/28 by chance has a
    # probability of about 1e-6.
    processes = _children(two_workers.process.pid)  # the workers (and multiprocessing's helper)
    raw = [socket.create_connection(("127.0.0.1", two_workers.port), timeout=10) for _ in range(32)]
    context = client_context(pki.server_ca)
    connections = [context.wrap_socket(sock, server_hostname="127.0.0.1") for sock in raw]
    try:
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")
        counts = _established_per_process(processes, two_workers.port)
    finally:
        for connection in connections:
            connection.close()
    serving = {pid: count for pid, count in counts.items() if count}
    assert sum(serving.values()) == 32, counts
    assert len(serving) == 2 and min(serving.values()) >= 4, counts


def test_a_worker_that_dies_is_replaced_on_its_own_socket_and_the_port_stays_taken(
        start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("workers-restart")
    register_clients(pki, data_dir, ["dn-client"])
    server = start_wire_server(data_dir, ["--workers", "2"], ready_count=2)
    try:
        supervisor = server.process.pid
        # The supervisor holds one listening socket per worker: the port stays taken (nobody
        # else can listen on it) while workers come and go.
        assert _established_per_process([supervisor], server.port, state="0A") == {supervisor: 2}
        workers = [pid for pid in _children(supervisor)
                   if _established_per_process([pid], server.port, state="0A")[pid] == 1]
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        server.wait_for_log('"event":"worker_died"')
        server.wait_for_log("Application startup complete", count=3)  # its successor serves
        assert _established_per_process([supervisor], server.port, state="0A") == {supervisor: 2}
        successors = [pid for pid in _children(supervisor)
                      if _established_per_process([pid], server.port, state="0A")[pid] == 1]
        assert len(successors) == 2 and workers[0] not in successors and workers[1] in successors
        client = WireClient("httpx", server, pki.server_ca)
        for _ in range(4):
            assert_token_response(client.token(pki["dn-client"], "dn-client"))
    finally:
        server.stop()
