"""HAProxy (Debian's package) configured from deploy/haproxy/, in front of authz and the sample
API."""

import subprocess
from typing import ClassVar

import pytest

from tests.deploy.conftest import Deployment
from tests.deploy.scenarios import ChainForwarding, ProxyScenarios
from tests.wire.client import curl_command

pytestmark = pytest.mark.wire

ANSWERED_BY_HAPROXY: dict[str, tuple[int, dict[str, str], str | None]] = {
    # Too large for HAProxy's buffer, the header would come out empty (no certificate):
    # deploy/haproxy/authz.cfg answers instead.
    "chain-too-large": (401, {"error": "invalid_client",
                              "error_description": "the client certificate is larger than the proxy forwards"}, None),
}


class TestHAProxy(ProxyScenarios, ChainForwarding):
    proxy_kind = "haproxy"
    answered_otherwise: ClassVar[dict[str, tuple[int, dict[str, str], str | None]]] = ANSWERED_BY_HAPROXY

    def test_own_answer_arrives_whole_over_http2(self, deployment: Deployment) -> None:
        """HAProxy's own answer to a certificate too large waits for the request's body: sent
        earlier, it cancelled the HTTP/2 stream under curl about one time in eight."""
        command = [*curl_command(deployment.pki["oversized"], deployment.pki.server_ca), "--http2",
                   "--output", "/dev/null", "--write-out", "%{http_version} %{http_code}\n",
                   "--data", "grant_type=client_credentials&client_id=dn-client", deployment.authz.token_url]
        results = [subprocess.run(command, capture_output=True, text=True, timeout=30) for _ in range(30)]
        assert [(r.returncode, r.stdout, r.stderr) for r in results] == [(0, "2 401\n", "")] * 30
