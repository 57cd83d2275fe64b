"""A running server follows ``authz clients remove`` / ``add`` within its store poll
interval (AUTHZ_STORE_POLL_INTERVAL=0.2 here)."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, authz_cli
from tests.wire.client import WireClient, WireResponse, assert_invalid_client, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients

pytestmark = pytest.mark.wire

POLL_INTERVAL = 0.2
# The change must show within one interval; the slack is for a loaded machine.
DEADLINE = POLL_INTERVAL + 2.0


@pytest.fixture(scope="module")
def polling_server(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("removal-data")
    register_clients(pki, data_dir, ["dn-client", "self-signed-client"])
    server = start_wire_server(data_dir, env={"AUTHZ_STORE_POLL_INTERVAL": str(POLL_INTERVAL)})
    yield server
    server.stop()


def poll(request: Callable[[], WireResponse], status: int) -> tuple[WireResponse, float]:
    """Repeat ``request`` until it answers ``status`` or DEADLINE passes; the last response
    and the seconds it took."""
    start = time.monotonic()
    while True:
        response = request()
        elapsed = time.monotonic() - start
        if response.status == status or elapsed > DEADLINE:
            return response, elapsed
        time.sleep(0.02)


def test_removed_client_is_refused_and_readded_client_accepted(via: str, pki: WirePKI,
                                                                polling_server: RunningServer) -> None:
    client = WireClient(via, polling_server, pki.server_ca)
    data_dir: Path = polling_server.data_dir

    def token() -> WireResponse:
        return client.token(pki["dn-client"], "dn-client")

    assert_token_response(token())  # now in the server's client cache
    assert authz_cli("clients", "remove", "dn-client", data_dir=data_dir).stdout.strip() == "removed dn-client"
    refused, elapsed = poll(token, 401)
    assert_invalid_client(refused, "unknown client_id", "dn-client")
    assert elapsed <= DEADLINE
    assert_token_response(client.token(pki["self-signed-client"], "self-signed-client"))  # the others stay

    register_clients(pki, data_dir, ["dn-client"])
    accepted, elapsed = poll(token, 200)  # "unknown" was cached too; the change clears it
    assert_token_response(accepted)
    assert elapsed <= DEADLINE
