"""A tls_client_auth client pinned to its CA (``authz clients add --pin-ca``), over real TLS: the
server trusts two more roots, and a certificate with the client's subject DN from the other one
(or from the pinned CA's own root, not through the pinned intermediate) does not authenticate it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.certificates.path import spki_sha256
from authz.certificates.rejection import RejectionReason
from tests.support.pki import TestCA
from tests.support.server import RunningServer, authz_cli
from tests.wire.client import WireClient, assert_invalid_client, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import Credentials, WirePKI

pytestmark = pytest.mark.wire

DN = "CN=pinned-client,O=authz tests"


class PinPKI:
    def __init__(self, directory: Path) -> None:
        self.root_a = TestCA("CN=Pin Root A,O=authz tests")
        self.issuing_a = TestCA("CN=Pin Issuing A,O=authz tests", parent=self.root_a)
        self.root_b = TestCA("CN=Pin Root B,O=authz tests")
        self.anchors = [self.root_a.write(directory / "root-a.pem"), self.root_b.write(directory / "root-b.pem")]
        self.pinned_ca = self.issuing_a.write(directory / "issuing-a.pem")
        self.credentials: dict[str, Credentials] = {}
        for name, ca in (("from-pinned-ca", self.issuing_a), ("from-other-root", self.root_b),
                         ("from-pinned-cas-root", self.root_a)):
            issued = ca.issue(DN)
            cert, key = issued.write(directory, name)
            self.credentials[name] = Credentials(cert, key, issued.der)


@pytest.fixture(scope="module")
def pin_pki(tmp_path_factory: pytest.TempPathFactory) -> PinPKI:
    return PinPKI(tmp_path_factory.mktemp("pin-pki"))


@pytest.fixture(scope="module")
def pin_server(start_wire_server: StartServer, pin_pki: PinPKI, server: RunningServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("pin-data")
    authz_cli("clients", "add", "pinned-client", "--auth-method", "tls_client_auth", "--subject-dn", DN,
              "--pin-ca", str(pin_pki.pinned_ca), data_dir=data_dir)
    authz_cli("clients", "add", "unpinned-client", "--auth-method", "tls_client_auth", "--subject-dn", DN,
              data_dir=data_dir)
    anchors = [arg for anchor in pin_pki.anchors for arg in ("--trust-anchor", str(anchor))]
    started = start_wire_server(data_dir, anchors)
    yield started
    started.stop()


def test_the_pinned_cas_certificate_authenticates(via: str, pki: WirePKI, pin_pki: PinPKI,
                                                  pin_server: RunningServer) -> None:
    client = WireClient(via, pin_server, pki.server_ca)
    assert_token_response(client.token(pin_pki.credentials["from-pinned-ca"], "pinned-client"))


@pytest.mark.parametrize("cert", ["from-other-root", "from-pinned-cas-root"])
def test_another_trusted_ca_with_the_same_subject_does_not(via: str, pki: WirePKI, pin_pki: PinPKI,
                                                           pin_server: RunningServer, cert: str) -> None:
    client = WireClient(via, pin_server, pki.server_ca)
    response = client.token(pin_pki.credentials[cert], "pinned-client")
    assert_invalid_client(response, RejectionReason.CA_PIN_MISMATCH, "pinned-client")
    assert response.json()["error_description"] == (
        "the client certificate was not issued by the CA this client is pinned to")
    [failure] = response.failures()
    # The operator sees the pin and the CAs the certificate's path went through.
    assert spki_sha256(pin_pki.issuing_a.cert).hex() in failure["detail"]
    root = pin_pki.root_b if cert == "from-other-root" else pin_pki.root_a
    assert failure["path_cas"] == [f"{root.cert.subject.rfc4514_string()} (spki sha256 {spki_sha256(root.cert).hex()})"]
    # The same certificate authenticates a client registered with that DN and no pin.
    assert_token_response(client.token(pin_pki.credentials[cert], "unpinned-client"))
