"""A deployment behind each real proxy: ``authz serve`` and the sample API in proxy mode over
plain HTTP on loopback, and nginx, HAProxy or Apache in front of both, configured from deploy/.

One deployment per test class (each proxy's class is in its own module), started once and
shared by the class's tests; the PKI and the store of registered clients are the session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.proxies import PROXIES, RunningProxy, Site
from tests.resource.wire import start_sample_api
from tests.support.server import RunningServer, authz_cli, free_port, start_server
from tests.wire.client import WireClient
from tests.wire.material import WirePKI, build_wire_pki, register_clients

# Clients of the wire suite this package uses, and one for the sample API (its scope).
CLIENTS = ["dn-client", "dns-client", "self-signed-client", "intermediate-client"]
API_CLIENT = "api-client"
API_SCOPE = "accounts:read"


@dataclass
class PublicServer(RunningServer):
    """A server reached through the proxy: requests go to the proxy's public URL, the log is
    the server's own."""

    public_url: str = ""

    @property
    def base_url(self) -> str:
        return self.public_url

    @property
    def direct_url(self) -> str:
        """The server itself, around the proxy (plain HTTP on loopback)."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Deployment:
    kind: str
    pki: WirePKI
    proxy: RunningProxy
    authz: PublicServer
    api: PublicServer

    def client(self, via: str) -> WireClient:
        """Requests to authz through the proxy."""
        return WireClient(via, self.authz, self.pki.server_ca)

    def api_client(self, via: str) -> WireClient:
        """Requests to the sample API through the proxy."""
        return WireClient(via, self.api, self.pki.server_ca)


@pytest.fixture(params=["curl", "httpx"])
def via(request: pytest.FixtureRequest) -> str:
    """The TLS client a test goes through: every test using it runs once with each."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> WirePKI:
    return build_wire_pki(tmp_path_factory.mktemp("deploy-pki"))


@pytest.fixture(scope="session")
def data_dir(pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deploy-data")
    register_clients(pki, directory, CLIENTS)
    # The sample API wants accounts:read; its client presents dns-client's certificate.
    authz_cli("clients", "add", API_CLIENT, "--auth-method", "tls_client_auth", "--subject-dn", "CN=dns,O=authz tests",
              "--scope", API_SCOPE, data_dir=directory)
    return directory


def public(server: RunningServer, public_url: str) -> PublicServer:
    """``server`` as clients know it, at ``public_url``."""
    return PublicServer(server.process, server.port, server.data_dir, server.log_path, server.ca_file,
                        scheme=server.scheme, extra=server.extra, public_url=public_url)


@pytest.fixture(scope="class")
def deployment(request: pytest.FixtureRequest, pki: WirePKI, data_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The class's proxy (its ``proxy_kind``) in front of a fresh authz and sample API."""
    kind = PROXIES[request.cls.proxy_kind]
    directory = tmp_path_factory.mktemp(f"deploy-{kind.name}")
    ports = {"authz": free_port(), "sample-api": free_port()}
    issuer = f"https://127.0.0.1:{ports['authz']}"
    proxy_mode = ["--proxy-cert-header", kind.header_format, "--trusted-proxy", "127.0.0.1"]
    intermediates = ["--intermediate", str(pki.intermediate)] if request.cls.authz_knows_intermediates else []
    started: list[RunningServer | RunningProxy] = []
    try:
        authz = start_server(tls_cert=None, tls_key=None, ca_file=pki.server_ca, data_dir=data_dir,
                             log_path=directory / "authz.log", trust_anchors=[pki.trust_anchor],
                             extra_args=[*proxy_mode, "--issuer", issuer, *intermediates])
        started.append(authz)
        # The proxy before the API: the API fetches authz's metadata through it as it starts.
        api_port = free_port()
        sites = {service: Site(service, ports[service], upstream, pki.server_cert, pki.server_key, pki.trust_anchor)
                 for service, upstream in (("authz", authz.port), ("sample-api", api_port))}
        proxy = kind.start(directory / "proxy", sites)
        started.append(proxy)
        api = start_sample_api(directory, "sample-api", issuer=issuer, ca_file=pki.server_ca, tls=None,
                               extra_args=proxy_mode, port=api_port)
        started.append(api)
        yield Deployment(kind.name, pki, proxy, public(authz, issuer), public(api, f"https://127.0.0.1:{ports['sample-api']}"))
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture(scope="class")
def jwks(deployment: Deployment) -> dict[str, Any]:
    """The JWK Set authz publishes, fetched through the proxy."""
    response = deployment.client("httpx").get("/jwks")
    assert response.status == 200
    keys: dict[str, Any] = response.json()
    return keys
