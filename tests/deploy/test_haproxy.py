"""HAProxy (Debian's package) configured from deploy/haproxy/, in front of authz and the sample
API."""

from typing import ClassVar

import pytest

from tests.deploy.scenarios import ChainForwarding, ProxyScenarios

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
