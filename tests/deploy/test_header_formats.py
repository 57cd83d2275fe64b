"""Envoy and Traefik (deploy/envoy/, deploy/traefik/) cannot be installed here: authz in their
header format is given the header as each proxy writes it (tests/deploy/headers.py), from the
proxy's address, straight over plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.certificates.rejection import RejectionReason as R
from tests.deploy.clients import request_from
from tests.deploy.conftest import PublicServer, public
from tests.deploy.headers import certificate_headers
from tests.support.server import start_server
from tests.wire.client import WireResponse, assert_invalid_client, assert_token_response, verified_token
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire


@pytest.fixture(scope="module", params=["envoy", "traefik"])
def authz(request: pytest.FixtureRequest, pki: WirePKI, data_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublicServer]:
    """authz reading ``request.param``'s header from 127.0.0.1 (without --intermediate: the
    chain comes in the header)."""
    log_path = tmp_path_factory.mktemp(f"format-{request.param}") / "authz.log"
    server = start_server(tls_cert=None, tls_key=None, ca_file=pki.server_ca, data_dir=data_dir, log_path=log_path,
                          trust_anchors=[pki.trust_anchor],
                          extra_args=["--proxy-cert-header", request.param, "--trusted-proxy", "127.0.0.1",
                                      "--issuer", "https://auth.example.com"])
    server.extra["format"] = request.param
    yield public(server, "https://auth.example.com")
    server.stop()


def _token(authz: PublicServer, client_id: str, headers: dict[str, str]) -> WireResponse:
    form = {"grant_type": "client_credentials", "client_id": client_id}
    return request_from("127.0.0.1", authz, authz.direct_url + "/token", form=form, headers=headers)


def _chain(pki: WirePKI, name: str) -> list[bytes]:
    """The DER chain a client named ``name`` sends: its certificate, and the intermediate for
    intermediate-client."""
    chain = [pki[name].leaf_der]
    if name == "intermediate-client":
        chain.append(x509.load_pem_x509_certificate(pki.intermediate.read_bytes()).public_bytes(Encoding.DER))
    return chain


def _issued_to(response: WireResponse, authz: PublicServer, pki: WirePKI, cert: str) -> None:
    body = assert_token_response(response)
    jwks = request_from("127.0.0.1", authz, authz.direct_url + "/jwks").json()
    assert verified_token(body["access_token"], jwks)[1]["cnf"] == {"x5t#S256": pki[cert].thumbprint}


@pytest.mark.parametrize("client_id", ["intermediate-client", "self-signed-client"])
def test_token_from_the_forwarded_certificate(authz: PublicServer, pki: WirePKI, client_id: str) -> None:
    headers = certificate_headers(authz.extra["format"], _chain(pki, client_id))
    _issued_to(_token(authz, client_id, headers), authz, pki, client_id)


def test_refusal_names_the_check(authz: PublicServer, pki: WirePKI) -> None:
    headers = certificate_headers(authz.extra["format"], _chain(pki, "other-subject"))
    assert_invalid_client(_token(authz, "dn-client", headers), R.SUBJECT_DN_MISMATCH, "dn-client")


@pytest.mark.parametrize("authz", ["envoy"], indirect=True)
def test_envoy_nearest_element_is_the_certificate(authz: PublicServer, pki: WirePKI) -> None:
    """Behind several proxies (APPEND_FORWARD), X-Forwarded-Client-Cert has one element per
    hop: authz reads the last, which the nearest proxy appended, never an earlier one a client
    could have written."""
    [earlier] = certificate_headers("envoy", _chain(pki, "dn-client")).values()
    [nearest] = certificate_headers("envoy", _chain(pki, "unregistered-self-signed")).values()
    response = _token(authz, "dn-client", {"X-Forwarded-Client-Cert": f"{earlier},{nearest}"})
    assert response.status == 401
    [failure] = response.failures()
    assert failure["reason"] == "self_signed"
    assert failure["cert_sha256"] == pki["unregistered-self-signed"].sha256_hex


@pytest.mark.parametrize("authz", ["traefik"], indirect=True)
def test_traefik_2_escaped_header(authz: PublicServer, pki: WirePKI) -> None:
    """Traefik 2 URL-escaped the same value."""
    headers = certificate_headers("traefik-v2", _chain(pki, "intermediate-client"))
    _issued_to(_token(authz, "intermediate-client", headers), authz, pki, "intermediate-client")
