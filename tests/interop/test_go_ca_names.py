"""Go's crypto/tls and the CA names of the CertificateRequest (``--advertise-ca-names``), both
ways: with ``tls.Config.Certificates``, Go sends only a certificate issued by an advertised CA.

- Off (the default): a self-signed client gets its token; a client holding two certificates
  sends the first one, even when it is the wrong one.
- On: the self-signed client sends nothing and is refused as if it had no certificate; the
  client holding two certificates sends the one the trust anchor issued, which is what the
  option is for.

The Go program is go/certificates/main.go (standard library only); the off server is the
interop suite's own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz.certificates.rejection import RejectionReason
from tests.interop.conftest import CLIENT_OF_METHOD, GO_DIR, Interop, go_build
from tests.support.server import RunningServer, start_server
from tests.wire.client import client_ssl_context, verified_token
from tests.wire.material import Credentials, register_clients

pytestmark = pytest.mark.wire

SELF_SIGNED = "self-signed-client"  # registered as self_signed_tls_client_auth with this certificate
DN_CLIENT = "dn-client"  # tls_client_auth: its certificate is issued by the trust anchor
# The certificate Go holds first: the dn-client's subject, from a CA the server does not trust.
UNRELATED_CA = "untrusted-ca"


@pytest.fixture(scope="module")
def go_certificates(go_build_directory: Path) -> Path:
    return go_build(go_build_directory, "certificates", GO_DIR / "certificates", "main.go")


@pytest.fixture(scope="module")
def advertising(interop: Interop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server like the interop suite's, with ``--advertise-ca-names``."""
    pki = interop.pki
    data_dir = tmp_path_factory.mktemp("ca-names-data")
    register_clients(pki, data_dir, list(CLIENT_OF_METHOD.values()))
    server = start_server(tls_cert=pki.server_cert, tls_key=pki.server_key, ca_file=pki.server_ca,
                          data_dir=data_dir, log_path=tmp_path_factory.mktemp("ca-names-log") / "authz.log",
                          trust_anchors=[pki.trust_anchor], extra_args=["--advertise-ca-names"])
    yield server
    server.stop()


def _request(program: Path, server: RunningServer, client_id: str,
             certificates: Sequence[Credentials]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Go's token request: the status, the body, and the refusals the server logged meanwhile."""
    offset = server.log_offset()
    files = [str(path) for credentials in certificates for path in (credentials.cert, credentials.key)]
    result = subprocess.run([str(program), server.token_url, client_id, str(server.ca_file), *files],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    refusals = [e for e in server.events(offset) if e.get("event") == "client_authentication_failed"]
    return output["status"], json.loads(output["body"]), refusals


def _assert_bound(server: RunningServer, body: dict[str, Any], client_id: str, credentials: Credentials) -> None:
    with httpx.Client(verify=client_ssl_context(None, server.ca_file)) as client:
        jwks = client.get(server.base_url + "/jwks").raise_for_status().json()
    _, claims = verified_token(body["access_token"], jwks)
    assert claims["client_id"] == client_id
    assert claims["cnf"] == {"x5t#S256": credentials.thumbprint}


def test_without_ca_names_a_self_signed_go_client_gets_a_token(interop: Interop, go_certificates: Path) -> None:
    status, body, _ = _request(go_certificates, interop.server, SELF_SIGNED, [interop.pki[SELF_SIGNED]])
    assert status == 200, body
    _assert_bound(interop.server, body, SELF_SIGNED, interop.pki[SELF_SIGNED])


def test_with_ca_names_a_self_signed_go_client_sends_no_certificate(
        advertising: RunningServer, interop: Interop, go_certificates: Path) -> None:
    status, body, refusals = _request(go_certificates, advertising, SELF_SIGNED, [interop.pki[SELF_SIGNED]])
    # No anchor issued the certificate, so Go withheld it: the server's answer to no certificate.
    assert status == 401
    assert body == {"error": "invalid_client", "error_description": RejectionReason.NO_CERTIFICATE.public_description}
    assert body["error_description"] == "no client certificate was presented on the TLS connection"
    assert [(r["client_id"], r["reason"], r["cert"]) for r in refusals] == [(SELF_SIGNED, "no_certificate", None)]


def test_with_ca_names_go_picks_the_certificate_the_anchor_issued(
        advertising: RunningServer, interop: Interop, go_certificates: Path) -> None:
    held = [interop.pki[UNRELATED_CA], interop.pki[DN_CLIENT]]
    status, body, refusals = _request(go_certificates, advertising, DN_CLIENT, held)
    assert status == 200, body
    assert refusals == []
    _assert_bound(advertising, body, DN_CLIENT, interop.pki[DN_CLIENT])


def test_without_ca_names_go_sends_its_first_certificate(interop: Interop, go_certificates: Path) -> None:
    held = [interop.pki[UNRELATED_CA], interop.pki[DN_CLIENT]]
    status, body, refusals = _request(go_certificates, interop.server, DN_CLIENT, held)
    assert status == 401
    assert body == {"error": "invalid_client",
                    "error_description": RejectionReason.UNTRUSTED_CHAIN.public_description}
    # The certificate refused is the first one Go holds, not the one that would authenticate.
    assert [(r["client_id"], r["reason"], r["cert_sha256"]) for r in refusals] == [
        (DN_CLIENT, "untrusted_chain", interop.pki[UNRELATED_CA].sha256_hex)]
