"""nginx (Debian's package) configured from deploy/nginx/, in front of authz and the sample API."""

import pytest

from tests.deploy.scenarios import ProxyScenarios

pytestmark = pytest.mark.wire


class TestNginx(ProxyScenarios):
    proxy_kind = "nginx"
    # nginx has no variable for the intermediates a client sent: authz completes the chain.
    authz_knows_intermediates = True
