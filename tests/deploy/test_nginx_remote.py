"""nginx configured from deploy/nginx/authz-remote.conf: authz over TLS, trusting nginx by the
client certificate it presents, not by its address."""

import pytest

from tests.deploy.scenarios import ProxyScenarios

pytestmark = pytest.mark.wire


class TestNginxToRemoteAuthz(ProxyScenarios):
    proxy_kind = "nginx"
    authz_over_tls = True
    authz_knows_intermediates = True
