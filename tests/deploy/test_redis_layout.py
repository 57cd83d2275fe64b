"""The full layout of several instances: nginx, configured from deploy/nginx/authz.conf with its
second upstream server line, in front of two ``authz serve`` in proxy mode (plain HTTP on
loopback) that share one Redis store and one issuer (nginx's public URL).

Clients see one server: tokens come from both instances (each one's log says so), all signed
with one key set, and a revocation made through nginx, whichever instance took it, holds at
both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.clients import request_from
from tests.deploy.conftest import PublicServer, public
from tests.deploy.headers import certificate_headers
from tests.deploy.proxies import PROXIES, RunningProxy, Site
from tests.support.redis_servers import RedisServer, RedisServers
from tests.support.server import RunningServer, authz_cli, free_port, start_server
from tests.wire.client import WireClient, WireResponse, assert_token_response, verified_token
from tests.wire.material import WirePKI, registrations

pytestmark = pytest.mark.wire

NAMES = ("A", "B")
CLIENTS = ["dn-client", "self-signed-client"]


@dataclass
class Layout:
    pki: WirePKI
    proxy: RunningProxy
    issuer: str  # nginx's public URL
    instances: dict[str, RunningServer]  # each reached directly, around nginx

    def through_nginx(self, via: str) -> WireClient:
        """Requests to nginx's public URL (the events are A's: see ``issued_by``)."""
        entry: PublicServer = public(self.instances["A"], self.issuer)
        return WireClient(via, entry, self.pki.server_ca)

    def introspect_at(self, name: str, client_id: str, token: str) -> WireResponse:
        """Introspection straight at instance ``name``, as nginx sends it: from 127.0.0.1 (a
        trusted proxy), with the certificate header nginx writes for the client's certificate."""
        server = self.instances[name]
        headers = certificate_headers("nginx", [self.pki[client_id].leaf_der])
        return request_from("127.0.0.1", server, f"{server.base_url}/introspect",
                            form={"client_id": client_id, "token": token}, headers=headers)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    servers = RedisServers(tmp_path_factory.mktemp("layout-redis"))
    try:
        yield servers.start()
    finally:
        servers.close()


@pytest.fixture(scope="module")
def layout(pki: WirePKI, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    directory = tmp_path_factory.mktemp("redis-layout")
    public_port = free_port()
    issuer = f"https://127.0.0.1:{public_port}"
    every = registrations(pki)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: authz_cli("clients", "add", c, *every[c], "--store", redis.url, data_dir=directory),
                      CLIENTS))
    # What systemd/authz-behind-proxy.service runs, once per instance, plus the shared store.
    options = ["--proxy-cert-header", "nginx", "--trusted-proxy", "127.0.0.1", "--issuer", issuer,
               "--store", redis.url]
    started: list[RunningServer | RunningProxy] = []

    def start(name: str) -> RunningServer:
        server = start_server(tls_cert=None, tls_key=None, ca_file=pki.server_ca, data_dir=directory,
                              log_path=directory / f"authz-{name}.log", trust_anchors=[pki.trust_anchor],
                              extra_args=options)
        started.append(server)
        return server

    try:
        with ThreadPoolExecutor(len(NAMES)) as pool:  # side by side: each takes about a second
            instances = dict(zip(NAMES, pool.map(start, NAMES), strict=True))
        site = Site("authz", public_port, instances["A"].port, pki.server_cert, pki.server_key, pki.trust_anchor,
                    more_upstream_ports=(instances["B"].port,))
        proxy = PROXIES["nginx"].start(directory / "proxy", {"authz": site})
        started.append(proxy)
        yield Layout(pki, proxy, issuer, instances)
    finally:
        for process in reversed(started):
            process.stop()


def issued_by(layout: Layout, offsets: dict[str, int]) -> Counter[str]:
    """Tokens each instance logged as issued since ``offsets``."""
    return Counter({name: sum(1 for e in server.events(offsets[name]) if e["event"] == "token_issued")
                    for name, server in layout.instances.items()})


def test_tokens_through_nginx_come_from_both_instances(layout: Layout) -> None:
    offsets = {name: server.log_offset() for name, server in layout.instances.items()}
    tokens = []
    for round_ in range(4):
        for client_id in CLIENTS:
            response = layout.through_nginx("curl" if round_ % 2 else "httpx").token(layout.pki[client_id], client_id)
            tokens.append((client_id, str(assert_token_response(response)["access_token"])))
    served = issued_by(layout, offsets)
    assert sum(served.values()) == len(tokens) and all(served[name] > 0 for name in NAMES), served
    # One issuer and one key set, whichever instance signed.
    jwks: dict[str, Any] = layout.through_nginx("httpx").get("/jwks").json()
    for client_id, token in tokens:
        claims = verified_token(token, jwks)[1]
        assert claims["iss"] == layout.issuer and claims["client_id"] == client_id
        assert claims["cnf"] == {"x5t#S256": layout.pki[client_id].thumbprint}
    print(f"\n[nginx] {len(tokens)} tokens through nginx: {dict(served)} by instance")


def test_a_revocation_through_nginx_holds_at_both_instances(layout: Layout) -> None:
    client = layout.through_nginx("httpx")
    credentials = layout.pki["dn-client"]
    token = str(assert_token_response(client.token(credentials, "dn-client"))["access_token"])
    for name in NAMES:  # the token is valid at both, before
        assert layout.introspect_at(name, "dn-client", token).json()["active"] is True
    offsets = {name: server.log_offset() for name, server in layout.instances.items()}
    revoked = client.post("/revoke", credentials, {"client_id": "dn-client", "token": token})
    assert revoked.status == 200, revoked.body
    revoked_by = [name for name, server in layout.instances.items()
                  if any(e["event"] == "token_revoked" for e in server.events(offsets[name]))]
    assert len(revoked_by) == 1
    for name in NAMES:
        assert layout.introspect_at(name, "dn-client", token).json() == {"active": False}
    # ... and through nginx, whichever instance answers.
    for _ in range(4):
        assert client.post("/introspect", credentials, {"client_id": "dn-client", "token": token}).json() == {
            "active": False}
    print(f"\n[nginx] revoked through nginx by {revoked_by[0]}, inactive at both instances")
