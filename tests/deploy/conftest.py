"""A deployment behind each real proxy: ``authz serve`` and the sample API in proxy mode over
plain HTTP on loopback, and nginx, HAProxy or Apache in front of both, configured from deploy/.
Or authz over TLS, trusting the proxy by the client certificate it presents (the
``authz-remote`` files).

One deployment per test class (each proxy's class is in its own module), started once and
shared by the class's tests; the PKIs and the store of registered clients are the session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.deploy.proxies import PROXIES, RunningProxy, Site, UpstreamTLS
from tests.deploy.shipped_redis import RedisServers
from tests.resource.wire import start_sample_api
from tests.support.pki import TestCA
from tests.support.server import RunningServer, authz_cli, free_port, start_server
from tests.wire.client import WireClient
from tests.wire.material import Credentials, WirePKI, build_wire_pki, register_clients

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
        """The server itself, around the proxy."""
        return f"{self.scheme}://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class BackendPKI:
    """authz's server certificate when a proxy reaches it over TLS (for authz.internal, the
    name the authz-remote files use), and the client certificate that proxy presents."""

    ca: Path
    authz_cert: Path
    authz_key: Path
    proxy: Credentials


@dataclass
class Deployment:
    kind: str
    pki: WirePKI
    backend: BackendPKI
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


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> BackendPKI:
    directory = tmp_path_factory.mktemp("deploy-backend-pki")
    ca = TestCA("CN=Backend CA,O=authz tests")
    # 127.0.0.1 too: the tests also reach authz around the proxy.
    authz_cert, authz_key = ca.issue("CN=authz.internal", san_dns=["authz.internal"], san_ip=["127.0.0.1"],
                                     eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(directory, "authz")
    proxy = ca.issue("CN=proxy,O=authz tests")
    proxy_cert, proxy_key = proxy.write(directory, "proxy")
    return BackendPKI(ca.write(directory / "ca.pem"), authz_cert, authz_key,
                      Credentials(proxy_cert, proxy_key, proxy.der))


def public(server: RunningServer, public_url: str) -> PublicServer:
    """``server`` as clients know it, at ``public_url``."""
    return PublicServer(server.process, server.port, server.data_dir, server.log_path, server.ca_file,
                        scheme=server.scheme, extra=server.extra, public_url=public_url)


@pytest.fixture(scope="class")
def deployment(request: pytest.FixtureRequest, pki: WirePKI, backend: BackendPKI, data_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The class's proxy (its ``proxy_kind``) in front of a fresh authz and sample API; authz
    over TLS when the class says ``authz_over_tls``."""
    kind = PROXIES[request.cls.proxy_kind]
    over_tls: bool = request.cls.authz_over_tls
    directory = tmp_path_factory.mktemp(f"deploy-{kind.name}")
    ports = {"authz": free_port(), "sample-api": free_port()}
    issuer = f"https://127.0.0.1:{ports['authz']}"
    header = ["--proxy-cert-header", kind.header_format]
    by_address = [*header, "--trusted-proxy", "127.0.0.1"]
    authz_options = [*header, "--trusted-proxy-cert", str(backend.proxy.cert)] if over_tls else [*by_address]
    if request.cls.authz_knows_intermediates:
        authz_options += ["--intermediate", str(pki.intermediate)]
    started: list[RunningServer | RunningProxy] = []
    try:
        authz = start_server(tls_cert=backend.authz_cert if over_tls else None,
                             tls_key=backend.authz_key if over_tls else None,
                             ca_file=backend.ca, data_dir=data_dir, log_path=directory / "authz.log",
                             trust_anchors=[pki.trust_anchor], extra_args=[*authz_options, "--issuer", issuer])
        started.append(authz)
        # The proxy before the API: the API fetches authz's metadata through it as it starts.
        api_port = free_port()
        upstream_tls = UpstreamTLS(backend.proxy.cert, backend.proxy.key, backend.ca) if over_tls else None
        sites = {
            "authz": Site("authz-remote" if over_tls else "authz", ports["authz"], authz.port, pki.server_cert,
                          pki.server_key, pki.trust_anchor, upstream_tls),
            "sample-api": Site("sample-api", ports["sample-api"], api_port, pki.server_cert, pki.server_key,
                               pki.trust_anchor),
        }
        proxy = kind.start(directory / "proxy", sites)
        started.append(proxy)
        api = start_sample_api(directory, "sample-api", issuer=issuer, ca_file=pki.server_ca, tls=None,
                               extra_args=by_address, port=api_port)
        started.append(api)
        yield Deployment(kind.name, pki, backend, proxy, public(authz, issuer),
                         public(api, f"https://127.0.0.1:{ports['sample-api']}"))
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


@pytest.fixture
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    """Starts Redis servers from deploy/redis/; every one is stopped when the test ends."""
    servers = RedisServers(tmp_path_factory.mktemp("redis"))
    try:
        yield servers
    finally:
        servers.stop_all()
