"""HAProxy configured from deploy/haproxy/authz-remote.cfg: authz over TLS, trusting HAProxy by
the client certificate it presents, not by its address."""

from typing import ClassVar

import pytest

from tests.deploy.scenarios import ChainForwarding, ProxyScenarios
from tests.deploy.test_haproxy import ANSWERED_BY_HAPROXY

pytestmark = pytest.mark.wire


class TestHAProxyToRemoteAuthz(ProxyScenarios, ChainForwarding):
    proxy_kind = "haproxy"
    authz_over_tls = True
    answered_otherwise: ClassVar[dict[str, tuple[int, dict[str, str], str | None]]] = ANSWERED_BY_HAPROXY
