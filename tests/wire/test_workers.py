"""``authz serve --workers 2`` on a fresh store: both workers agree on one signing key and
issue tokens for both methods."""

from collections.abc import Iterator

import pytest

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
