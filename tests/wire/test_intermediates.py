"""A leaf issued by an intermediate CA; the only trust anchor is the root. The client sends
[leaf, intermediate], or the leaf alone, which only a server that knows the intermediate
(``--intermediate FILE``) can complete."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authz.certificates.rejection import RejectionReason
from tests.support.server import RunningServer
from tests.wire.client import WireClient, assert_invalid_client, assert_token_response, verified_token
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire


@pytest.fixture(scope="module")
def server_knowing_the_intermediate(start_wire_server: StartServer, data_dir: Path, pki: WirePKI,
                                    server: RunningServer) -> Iterator[RunningServer]:
    # Depends on ``server``: the store (and its signing key) is shared, and created once.
    started = start_wire_server(data_dir, ["--intermediate", str(pki.intermediate)])
    yield started
    started.stop()


# [leaf, intermediate]; [leaf, intermediate, root]; [leaf, root, intermediate]
@pytest.mark.parametrize("cert", ["intermediate-client", "intermediate-client-with-root",
                                  "intermediate-client-unordered"])
def test_leaf_with_its_intermediate(wire: WireClient, pki: WirePKI, jwks: dict[str, Any], cert: str) -> None:
    body = assert_token_response(wire.token(pki[cert], "intermediate-client"))
    claims = verified_token(body["access_token"], jwks)[1]
    assert claims["client_id"] == "intermediate-client"
    assert claims["cnf"] == {"x5t#S256": pki[cert].thumbprint}


def test_leaf_without_its_intermediate(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["intermediate-client-leaf-only"], "intermediate-client")
    assert_invalid_client(response, RejectionReason.UNTRUSTED_CHAIN, "intermediate-client")


@pytest.mark.parametrize("cert", ["intermediate-client-leaf-only", "intermediate-client"])
def test_server_completes_the_chain_from_its_intermediates(
    via: str, pki: WirePKI, server_knowing_the_intermediate: RunningServer, jwks: dict[str, Any], cert: str
) -> None:
    client = WireClient(via, server_knowing_the_intermediate, pki.server_ca)
    body = assert_token_response(client.token(pki[cert], "intermediate-client"))
    # Same store, same signing key: the first server's JWKS verifies the token.
    assert verified_token(body["access_token"], jwks)[1]["cnf"] == {"x5t#S256": pki[cert].thumbprint}


def test_server_knowing_the_intermediate_still_refuses_other_chains(
    via: str, pki: WirePKI, server_knowing_the_intermediate: RunningServer
) -> None:
    client = WireClient(via, server_knowing_the_intermediate, pki.server_ca)
    response = client.token(pki["untrusted-ca"], "dn-client")
    assert_invalid_client(response, RejectionReason.UNTRUSTED_CHAIN, "dn-client")


@pytest.mark.parametrize("cert", ["chain-of-12", "chain-of-40"])
def test_chain_longer_than_the_server_follows(wire: WireClient, pki: WirePKI, cert: str) -> None:
    # The chain does lead to the anchor, but has more certificates than a client may send.
    response = wire.token(pki[cert], "dn-client")
    assert_invalid_client(response, RejectionReason.CHAIN_TOO_LARGE, "dn-client")
    sent = 1 + int(cert.removeprefix("chain-of-"))  # the leaf and its intermediates
    failure = response.failures()[0]
    assert (failure["cert"], failure["cert_problem"]) == ("refused", f"{sent} certificates sent (limit 9)")
    assert failure["cert_sha256"] == pki[cert].sha256_hex
