"""One PKI and one server (``authz serve`` with every client of the suite registered) for
the whole session; ``wire`` runs each test through curl and through httpx."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# The Redis fixtures, for the tests of this directory (the names are what pytest looks for).
from tests.support.redis_servers import (  # noqa: F401
    redis_cluster,
    redis_cluster_servers,
    redis_sentinel,
    redis_sentinel_servers,
    redis_servers,
)
from tests.support.server import RunningServer, start_server
from tests.wire.client import WireClient
from tests.wire.material import WirePKI, build_wire_pki, register_clients

StartServer = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> WirePKI:
    return build_wire_pki(tmp_path_factory.mktemp("wire-pki"))


@pytest.fixture(scope="session")
def start_wire_server(pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Start ``authz serve`` with the suite's TLS certificate and trust anchor; every server
    started through it is stopped at the end of the session at the latest."""
    started: list[RunningServer] = []

    def start(data_dir: Path, extra_args: Sequence[str] = (), *, tls: bool = True, **options: Any) -> RunningServer:
        log_path = tmp_path_factory.mktemp("server-log") / "authz.log"
        server = start_server(tls_cert=pki.server_cert if tls else None, tls_key=pki.server_key if tls else None,
                              ca_file=pki.server_ca,
                              data_dir=data_dir, log_path=log_path, trust_anchors=[pki.trust_anchor],
                              extra_args=extra_args, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def data_dir(pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with every client of the suite registered through the CLI."""
    directory = tmp_path_factory.mktemp("wire-data")
    register_clients(pki, directory)
    return directory


@pytest.fixture(scope="session")
def server(start_wire_server: StartServer, data_dir: Path) -> RunningServer:
    return start_wire_server(data_dir)


@pytest.fixture(scope="session")
def jwks(server: RunningServer, pki: WirePKI) -> dict[str, Any]:
    """The JWK Set the main server publishes (servers sharing its store publish the same)."""
    response = WireClient("httpx", server, pki.server_ca).get("/jwks")
    assert response.status == 200
    keys: dict[str, Any] = response.json()
    return keys


@pytest.fixture(params=["curl", "httpx"])
def via(request: pytest.FixtureRequest) -> str:
    """The TLS client a test goes through: every test using it runs once with each."""
    name: str = request.param
    return name


@pytest.fixture
def wire(via: str, server: RunningServer, pki: WirePKI) -> WireClient:
    return WireClient(via, server, pki.server_ca)
