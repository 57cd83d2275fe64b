"""A client record that is not even JSON (edited by hand, truncated) is refused like any other
unusable registration: 401 invalid_client for the client, one line with the storage error for
the operator, never a 500. Reachable without a certificate: the lookup comes first."""

import sqlite3
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer
from tests.wire.client import WireClient, assert_invalid_client, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients

pytestmark = pytest.mark.wire

UNUSABLE = "the registration of this client is not usable; contact the server operator"


@pytest.fixture(scope="module")
def corrupt_store_server(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                         ) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("corrupt-data")
    register_clients(pki, data_dir, ["dn-client", "self-signed-client"])
    with sqlite3.connect(data_dir / "authz.sqlite3") as db:
        db.execute("UPDATE records SET value = '{not json' WHERE kind = 'client' AND id = 'self-signed-client'")
    server = start_wire_server(data_dir)
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("with_certificate", [False, True], ids=["no-cert", "cert"])
def test_corrupt_record_is_invalid_client(via: str, pki: WirePKI, corrupt_store_server: RunningServer, path: str,
                                          with_certificate: bool) -> None:
    client = WireClient(via, corrupt_store_server, pki.server_ca)
    credentials = pki["self-signed-client"] if with_certificate else None
    form = {"grant_type": "client_credentials", "client_id": "self-signed-client", "token": "x.y.z"}
    response = client.post(path, credentials, form)
    assert_invalid_client(response, UNUSABLE, "self-signed-client")
    assert response.failures()[0]["detail"].startswith("record client/self-signed-client is not valid JSON")
    assert not [e for e in response.events if e.get("event") == "unhandled_error"]


def test_operator_is_told_which_record_and_why(via: str, pki: WirePKI, corrupt_store_server: RunningServer) -> None:
    WireClient(via, corrupt_store_server, pki.server_ca).token(None, "self-signed-client")
    # Written when the record is loaded; the refusal is cached with the registration.
    [logged] = [e for e in corrupt_store_server.events() if e.get("event") == "client_registration_unusable"]
    assert logged["client_id"] == "self-signed-client" and logged["level"] == "error"
    assert logged["reason"].startswith("record client/self-signed-client is not valid JSON")
    assert "unhandled_error" not in corrupt_store_server.log()


def test_other_clients_are_unaffected(via: str, pki: WirePKI, corrupt_store_server: RunningServer) -> None:
    client = WireClient(via, corrupt_store_server, pki.server_ca)
    assert_token_response(client.token(pki["dn-client"], "dn-client"))
