"""Proxy mode over real sockets: the certificate in a trusted proxy's header authenticates
exactly as it would over direct TLS; from anyone else the header is ignored (issue 10)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.certificates.rejection import RejectionReason
from tests.resource.wire import start_sample_api
from tests.support.server import RunningServer
from tests.wire.client import (
    WireResponse,
    assert_invalid_client,
    assert_token_response,
    client_ssl_context,
    verified_token,
)
from tests.wire.conftest import StartServer
from tests.wire.material import Credentials, WirePKI

pytestmark = pytest.mark.wire

PUBLIC_ISSUER = "https://as.example:8443"


def _rfc9440(credentials: Credentials) -> dict[str, str]:
    """The headers a proxy writes for this client's certificate (RFC 9440)."""
    ders = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(credentials.cert.read_bytes())]
    headers = {"Client-Cert": f":{base64.b64encode(ders[0]).decode()}:"}
    if len(ders) > 1:
        headers["Client-Cert-Chain"] = ", ".join(f":{base64.b64encode(d).decode()}:" for d in ders[1:])
    return headers


def _token(server: RunningServer, client_id: str, headers: dict[str, str], *,
           cert: Credentials | None = None) -> WireResponse:
    """POST /token to ``server`` with ``headers`` (as a proxy would send them), over TLS with
    ``cert`` on the connection if the server speaks TLS."""
    offset = server.log_offset()
    context = client_ssl_context(cert, server.ca_file) if server.scheme == "https" else True
    with httpx.Client(verify=context, timeout=15) as client:
        response = client.post(server.base_url + "/token", headers=headers,
                               data={"grant_type": "client_credentials", "client_id": client_id})
    issuer = PUBLIC_ISSUER if server.extra.get("issuer") == PUBLIC_ISSUER else f"https://127.0.0.1:{server.port}"
    return WireResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                        response.content, issuer, server.events(offset))


@pytest.fixture(scope="module")
def behind_proxy(start_wire_server: StartServer, data_dir: Path, server: RunningServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Plain HTTP to a proxy on 127.0.0.1; depends on ``server``, which created the store."""
    started = start_wire_server(data_dir, ["--proxy-cert-header", "rfc9440", "--trusted-proxy", "127.0.0.1",
                                           "--issuer", PUBLIC_ISSUER], tls=False)
    started.extra["issuer"] = PUBLIC_ISSUER
    yield started
    started.stop()


@pytest.mark.parametrize(("client_id", "cert"), [
    ("dn-client", "dn-client"), ("self-signed-client", "self-signed-client"),
    ("intermediate-client", "intermediate-client"), ("dns-client", "dns-client"),
])
def test_both_methods_through_the_proxy_header(behind_proxy: RunningServer, pki: WirePKI, jwks: dict[str, Any],
                                               client_id: str, cert: str) -> None:
    body = assert_token_response(_token(behind_proxy, client_id, _rfc9440(pki[cert])))
    claims = verified_token(body["access_token"], jwks)[1]
    assert claims["cnf"] == {"x5t#S256": pki[cert].thumbprint}  # the same thumbprint as direct TLS
    assert claims["iss"] == PUBLIC_ISSUER


@pytest.mark.parametrize(("client_id", "cert", "reason"), [
    ("dn-client", "untrusted-ca", RejectionReason.UNTRUSTED_CHAIN),
    ("dn-client", "expired", RejectionReason.EXPIRED),
    ("dn-client", "other-subject", RejectionReason.SUBJECT_DN_MISMATCH),
    ("dn-client", "chain-of-12", RejectionReason.CHAIN_TOO_LARGE),
    ("self-signed-client", "unregistered-self-signed", RejectionReason.NOT_REGISTERED),
])
def test_refusals_through_the_proxy_header(behind_proxy: RunningServer, pki: WirePKI, client_id: str, cert: str,
                                           reason: RejectionReason) -> None:
    assert_invalid_client(_token(behind_proxy, client_id, _rfc9440(pki[cert])), reason, client_id)


def test_no_header_from_the_proxy_means_no_certificate(behind_proxy: RunningServer) -> None:
    assert_invalid_client(_token(behind_proxy, "dn-client", {}), RejectionReason.NO_CERTIFICATE, "dn-client")


def test_a_header_that_does_not_decode_is_named(behind_proxy: RunningServer) -> None:
    response = _token(behind_proxy, "dn-client", {"Client-Cert": "MIIB"})
    description = (f"{RejectionReason.PROXY_HEADER_UNUSABLE.public_description} "
                   "(Client-Cert: not a structured-field byte sequence (:base64:))")
    assert_invalid_client(response, description, "dn-client")
    assert response.failures()[0]["reason"] == "proxy_header_unusable"


def test_the_client_address_the_proxy_forwarded_is_logged(behind_proxy: RunningServer, pki: WirePKI) -> None:
    headers = {**_rfc9440(pki["dn-client"]), "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    response = _token(behind_proxy, "dn-client", headers)
    assert_token_response(response)
    issued = next(e for e in response.events if e.get("event") == "token_issued")
    assert issued["peer"] == "203.0.113.9:0"


def test_metadata_names_the_public_urls(behind_proxy: RunningServer) -> None:
    metadata = httpx.get(behind_proxy.base_url + "/.well-known/oauth-authorization-server").json()
    assert (metadata["issuer"], metadata["token_endpoint"]) == (PUBLIC_ISSUER, PUBLIC_ISSUER + "/token")


@pytest.fixture(scope="module")
def trusting_another_address(start_wire_server: StartServer, data_dir: Path,
                             server: RunningServer) -> Iterator[RunningServer]:
    started = start_wire_server(data_dir, ["--proxy-cert-header", "rfc9440", "--trusted-proxy", "127.0.0.2"],
                                tls=False)
    yield started
    started.stop()


def test_a_header_from_an_untrusted_peer_is_ignored(trusting_another_address: RunningServer, pki: WirePKI) -> None:
    response = _token(trusting_another_address, "dn-client", _rfc9440(pki["dn-client"]))
    assert_invalid_client(response, RejectionReason.NO_CERTIFICATE, "dn-client")
    ignored = next(e for e in response.events if e.get("event") == "proxy_certificate_header_ignored")
    assert ignored["header"] == "client-cert" and ignored["peer"].startswith("127.0.0.1:")


@pytest.fixture(scope="module")
def trusting_a_proxy_certificate(start_wire_server: StartServer, data_dir: Path, server: RunningServer,
                                 pki: WirePKI) -> Iterator[RunningServer]:
    """Over TLS; only a peer presenting the proxy's certificate may set the header."""
    started = start_wire_server(data_dir, ["--proxy-cert-header", "rfc9440", "--trusted-proxy-cert",
                                           str(pki["two-certs-client-b"].cert)])
    yield started
    started.stop()


def test_a_proxy_authenticated_by_its_certificate(trusting_a_proxy_certificate: RunningServer,
                                                  pki: WirePKI) -> None:
    proxy = pki["two-certs-client-b"]
    headers = _rfc9440(pki["dn-client"])
    assert_token_response(_token(trusting_a_proxy_certificate, "dn-client", headers, cert=proxy))
    # Another certificate on the connection: the header is ignored, and so is that certificate.
    response = _token(trusting_a_proxy_certificate, "dn-client", headers, cert=pki["self-signed-client"])
    assert_invalid_client(response, RejectionReason.NO_CERTIFICATE, "dn-client")


def test_the_sample_api_behind_a_proxy(server: RunningServer, pki: WirePKI, tmp_path: Path) -> None:
    direct = _token(server, "dn-client", {}, cert=pki["dn-client"])
    token = assert_token_response(direct)["access_token"]
    api = start_sample_api(tmp_path, "api", issuer=server.base_url, ca_file=pki.server_ca,
                           tls=(pki.server_cert, pki.server_key),
                           extra_args=["--proxy-cert-header", "rfc9440", "--trusted-proxy", "127.0.0.1"])
    try:
        with httpx.Client(verify=client_ssl_context(None, pki.server_ca), timeout=15) as client:
            bearer = {"Authorization": f"Bearer {token}"}
            ok = client.get(api.base_url + "/accounts", headers={**bearer, **_rfc9440(pki["dn-client"])})
            other = client.get(api.base_url + "/accounts", headers={**bearer, **_rfc9440(pki["dns-client"])})
    finally:
        api.stop()
    # The binding holds (dn-client has no accounts scope, which is checked after the binding).
    assert (ok.status_code, ok.json()["error"]) == (403, "insufficient_scope"), ok.text
    assert other.status_code == 401
    assert other.json()["error_description"] == (
        "the client certificate does not match the token's binding (cnf x5t#S256)")


@pytest.fixture(scope="module")
def trusting_a_proxy_ca(start_wire_server: StartServer, data_dir: Path, server: RunningServer,
                        pki: WirePKI) -> Iterator[RunningServer]:
    """Over TLS; a peer whose certificate the given CA issued may set the header."""
    started = start_wire_server(data_dir, ["--proxy-cert-header", "rfc9440", "--trusted-proxy-ca",
                                           str(pki.trust_anchor)])
    yield started
    started.stop()


def test_a_proxy_authenticated_by_its_ca(trusting_a_proxy_ca: RunningServer, pki: WirePKI) -> None:
    headers = _rfc9440(pki["self-signed-client"])
    # A certificate of the proxies' CA on the connection: the header is believed.
    assert_token_response(_token(trusting_a_proxy_ca, "self-signed-client", headers, cert=pki["dns-client"]))
    # One of another CA, twice (the second from the remembered refusal): the header is ignored.
    for _ in range(2):
        response = _token(trusting_a_proxy_ca, "self-signed-client", headers, cert=pki["untrusted-ca"])
        assert_invalid_client(response, RejectionReason.NO_CERTIFICATE, "self-signed-client")
