"""What a client must see through each proxy configured from deploy/: the same answers as from
authz over direct TLS. Each proxy's module (test_nginx.py, test_haproxy.py, test_apache.py)
runs these in a subclass that names the proxy and states what it does differently.

- Both RFC 8705 methods get tokens bound to the certificate the client presented, and one
  representative of each refusal of the direct-TLS wire suite (tests/wire/) gets its
  invalid_client answer.
- A client that sends its own certificate header gets the one the proxy writes, and a request
  that reaches authz around the proxy, from an address it does not trust, has no certificate.
- The client's address reaches authz's log lines, forged forwarding headers do not; the proxy
  keeps its connections to authz open; it names no CA in its certificate request.
- The sample API behind the same proxy takes a bound token with its certificate only.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.certificates.rejection import RejectionReason as R
from tests.deploy.clients import established_connections, handshake_refusal, request_from
from tests.deploy.conftest import API_CLIENT, Deployment
from tests.deploy.headers import certificate_headers
from tests.support.s_client import s_client
from tests.wire.client import (
    WireClient,
    assert_invalid_client,
    assert_token_response,
    client_ssl_context,
    verified_token,
)

__all__ = ["ChainForwarding", "ProxyScenarios"]

# (client_id, the certificate it presents)
METHODS = [
    ("dn-client", "dn-client"),  # tls_client_auth, subject DN
    ("dns-client", "dns-client"),  # tls_client_auth, dNSName SAN
    ("self-signed-client", "self-signed-client"),  # self_signed_tls_client_auth
    ("intermediate-client", "intermediate-client"),  # tls_client_auth, issued by an intermediate CA
]

# One certificate of each refusal class of tests/wire/test_certificate_refusals.py and
# test_hostile_chains.py: (client_id, certificate or None, reason).
REFUSALS = {
    "no-certificate": ("dn-client", None, R.NO_CERTIFICATE),
    "untrusted-chain": ("dn-client", "untrusted-ca", R.UNTRUSTED_CHAIN),
    "expired": ("dn-client", "expired", R.EXPIRED),
    "not-yet-valid": ("dn-client", "not-yet-valid", R.NOT_YET_VALID),
    "not-for-client-auth": ("dn-client", "server-auth-only", R.EKU_NOT_CLIENT_AUTH),
    "dn-mismatch": ("dn-client", "other-subject", R.SUBJECT_DN_MISMATCH),
    "san-mismatch": ("dns-client", "other-subject", R.SAN_DNS_MISMATCH),
    "self-signed-not-registered": ("self-signed-client", "unregistered-self-signed", R.NOT_REGISTERED),
    "chain-too-large": ("dn-client", "oversized", R.CHAIN_TOO_LARGE),
}


class ProxyScenarios:
    proxy_kind: ClassVar[str]
    # authz over TLS, trusting the proxy by its client certificate (the authz-remote files).
    authz_over_tls: ClassVar[bool] = False
    # Whether authz gets --intermediate (nginx forwards no chain: the deploy file says to).
    authz_knows_intermediates: ClassVar[bool] = False
    # Refusals the proxy makes itself, in the handshake: case -> words of the TLS alert.
    refused_in_handshake: ClassVar[dict[str, str]] = {}
    # Refusals answered before authz's certificate check: case -> (status, JSON body, the
    # event authz logs, None when the request never reached it).
    answered_otherwise: ClassVar[dict[str, tuple[int, dict[str, str], str | None]]] = {
        # The proxy's header carries the certificate URL-encoded or base64 (a third more than
        # DER): authz's limit on a request head (32 KiB) refuses it before its limit on
        # certificates (32 KiB of DER) would.
        "chain-too-large": (431, {"error": "invalid_request",
                                  "error_description": "the request line and headers exceed 32 KiB"},
                            "request_refused"),
    }

    @pytest.fixture
    def wire(self, deployment: Deployment, via: str) -> WireClient:
        return deployment.client(via)

    # --- certificates through the proxy ------------------------------------------------

    @pytest.mark.parametrize(("client_id", "cert"), METHODS, ids=[m[0] for m in METHODS])
    def test_token_bound_to_the_presented_certificate(self, wire: WireClient, deployment: Deployment,
                                                       jwks: dict[str, Any], client_id: str, cert: str) -> None:
        body = assert_token_response(wire.token(deployment.pki[cert], client_id))
        claims = verified_token(body["access_token"], jwks)[1]
        assert claims["client_id"] == client_id
        assert claims["iss"] == deployment.authz.base_url  # the public URL, not authz's own
        assert claims["cnf"] == {"x5t#S256": deployment.pki[cert].thumbprint}

    @pytest.mark.parametrize("case", list(REFUSALS))
    def test_refusal(self, wire: WireClient, deployment: Deployment, via: str, case: str) -> None:
        client_id, cert, reason = REFUSALS[case]
        credentials = deployment.pki[cert] if cert else None
        if case in self.refused_in_handshake:
            assert credentials is not None
            offset = deployment.authz.log_offset()
            error = handshake_refusal(via, deployment.authz.token_url, credentials, deployment.pki.server_ca)
            assert self.refused_in_handshake[case] in error.lower().replace("_", " "), error
            assert deployment.authz.events(offset) == []  # the request never reached authz
            return
        response = wire.token(credentials, client_id)
        if case in self.answered_otherwise:
            status, body, event = self.answered_otherwise[case]
            assert (response.status, response.json()) == (status, body)
            assert response.headers["cache-control"] == "no-store"
            assert [e["event"] for e in response.events] == ([event] if event else [])
            return
        assert_invalid_client(response, reason, client_id)
        [failure] = response.failures()
        assert failure.get("cert_sha256") == (credentials.sha256_hex if credentials else None)

    def test_metadata_names_the_public_urls(self, wire: WireClient, deployment: Deployment) -> None:
        document = wire.get("/.well-known/oauth-authorization-server").json()
        public = deployment.authz.base_url
        assert document["issuer"] == public
        endpoints = {k: v for k, v in document.items() if k.endswith(("_endpoint", "_uri"))}
        endpoints.update(document.get("mtls_endpoint_aliases", {}))
        assert endpoints and all(url.startswith(public + "/") for url in endpoints.values()), endpoints

    # --- headers a client forges ----------------------------------------------------------

    @pytest.mark.parametrize(("presented", "reason"), [(None, R.NO_CERTIFICATE),
                                                       ("unregistered-self-signed", R.SELF_SIGNED)],
                             ids=["no-certificate", "another-certificate"])
    def test_injected_certificate_header_is_replaced(self, wire: WireClient, deployment: Deployment,
                                                     presented: str | None, reason: R) -> None:
        # The header the proxy would write for dn-client's certificate: if the proxy let it
        # through, authz would issue dn-client a token.
        forged = certificate_headers(deployment.kind, [deployment.pki["dn-client"].leaf_der])
        credentials = deployment.pki[presented] if presented else None
        form = {"grant_type": "client_credentials", "client_id": "dn-client"}
        response = wire.post("/token", credentials, form, headers=forged)
        assert_invalid_client(response, reason, "dn-client")
        [failure] = response.failures()
        assert failure.get("cert_sha256") == (credentials.sha256_hex if credentials else None)

    def test_forged_header_straight_to_authz(self, deployment: Deployment, jwks: dict[str, Any]) -> None:
        """A client reaching authz around the proxy cannot name a certificate: over plain HTTP
        it comes from an address authz does not trust (authz listens on loopback for the
        proxy); over TLS it does not hold the proxy's client certificate, whatever its
        address (here the proxy's own) and whatever certificate it presents."""
        forged = certificate_headers(deployment.kind, [deployment.pki["dn-client"].leaf_der])
        form = {"grant_type": "client_credentials", "client_id": "dn-client"}
        url = deployment.authz.direct_url + "/token"
        tls = {"server_ca": deployment.backend.ca} if self.authz_over_tls else {}
        source, credentials = ("127.0.0.1", deployment.pki["dn-client"]) if self.authz_over_tls else ("127.0.0.2", None)
        response = request_from(source, deployment.authz, url, form=form, headers=forged, credentials=credentials,
                                **tls)
        assert_invalid_client(response, R.NO_CERTIFICATE, "dn-client")
        [ignored] = [e for e in response.events if e["event"] == "proxy_certificate_header_ignored"]
        assert ignored["peer"].startswith(f"{source}:") and ignored["header"] == "x-ssl-client-cert"
        # The same request from the proxy (its address, or its certificate) is believed: that
        # alone protects authz.
        trusted = request_from("127.0.0.1", deployment.authz, url, form=form, headers=forged,
                               credentials=deployment.backend.proxy if self.authz_over_tls else None, **tls)
        body = assert_token_response(trusted)
        assert verified_token(body["access_token"], jwks)[1]["cnf"] == {
            "x5t#S256": deployment.pki["dn-client"].thumbprint}

    def test_client_address_reaches_the_log(self, deployment: Deployment) -> None:
        forged = {"X-Forwarded-For": "203.0.113.7", "Forwarded": "for=203.0.113.8"}
        form = {"grant_type": "client_credentials", "client_id": "dn-client"}
        response = request_from("127.0.0.3", deployment.authz, deployment.authz.token_url, form=form,
                                credentials=deployment.pki["dn-client"], server_ca=deployment.pki.server_ca,
                                headers=forged)
        assert_token_response(response)
        [issued] = [e for e in response.events if e["event"] == "token_issued"]
        assert issued["peer"].split(":")[0] == "127.0.0.3"

    def test_connections_to_authz_are_kept_open(self, deployment: Deployment) -> None:
        """A client that keeps its connection to the proxy: its next request goes to authz on
        the connection the previous one used. Without keep-alive the proxy closes its
        connection to authz once it has the answer, and opens another for the next request."""
        context = client_ssl_context(None, deployment.pki.server_ca)
        seen = []
        with httpx.Client(verify=context, timeout=15, trust_env=False) as client:
            for _ in range(2):
                assert client.get(deployment.authz.base_url + "/jwks").status_code == 200
                time.sleep(0.2)  # time for a connection that is being closed to be closed
                seen.append(established_connections(deployment.authz.port))
        assert seen[0] & seen[1], seen

    def test_no_ca_names_in_the_certificate_request(self, deployment: Deployment) -> None:
        result = s_client(deployment.proxy.sites["authz"].public_port, "-tls1_2",
                          ca_file=deployment.pki.server_ca)
        assert result.established, result.output
        # A certificate was requested (OpenSSL lists the types asked for) with no CA names:
        # clients that pick by those names would otherwise withhold self-signed certificates.
        assert "Client Certificate Types:" in result.output, result.output
        assert "No client certificate CA names sent" in result.output, result.output

    # --- the sample API behind the same proxy -------------------------------------------

    def _token(self, deployment: Deployment) -> str:
        body = assert_token_response(deployment.client("httpx").token(deployment.pki["dns-client"], API_CLIENT))
        return str(body["access_token"])

    def test_api_takes_a_bound_token_with_its_certificate(self, deployment: Deployment, via: str) -> None:
        token = self._token(deployment)
        response = deployment.api_client(via).request("GET", "/accounts", deployment.pki["dns-client"], None,
                                                      {"Authorization": f"Bearer {token}"})
        assert response.status == 200, response.body
        assert response.json()["client_id"] == API_CLIENT

    @pytest.mark.parametrize("forge", [False, True], ids=["plain", "with-forged-header"])
    def test_api_refuses_the_token_with_another_certificate(self, deployment: Deployment, via: str,
                                                            forge: bool) -> None:
        token = self._token(deployment)
        headers = {"Authorization": f"Bearer {token}"}
        if forge:  # the header the proxy would write for the certificate the token is bound to
            headers.update(certificate_headers(deployment.kind, [deployment.pki["dns-client"].leaf_der]))
        response = deployment.api_client(via).request("GET", "/accounts", deployment.pki["dn-client"], None, headers)
        assert response.status == 401, response.body
        assert response.headers["www-authenticate"] == (
            'Bearer realm="accounts", error="invalid_token", error_description="the client certificate does not '
            "match the token's binding (cnf x5t#S256)\""
        )


class ChainForwarding:
    """For proxies that forward the intermediates a client sent (authz has no --intermediate:
    ``intermediate-client`` in METHODS gets its token through the forwarded chain)."""

    def test_injected_chain_header_is_replaced(self, wire: WireClient, deployment: Deployment) -> None:
        # The leaf alone needs the intermediate; a chain header the client adds must not supply it.
        pem = deployment.pki.intermediate.read_bytes()
        intermediate = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        leaf = deployment.pki["intermediate-client-leaf-only"]
        forged = certificate_headers(deployment.kind, [leaf.leaf_der, intermediate])
        form = {"grant_type": "client_credentials", "client_id": "intermediate-client"}
        response = wire.post("/token", leaf, form, headers=forged)
        assert_invalid_client(response, R.UNTRUSTED_CHAIN, "intermediate-client")
