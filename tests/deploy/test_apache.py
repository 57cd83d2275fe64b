"""Apache httpd (Debian's package) configured from deploy/apache/, in front of authz and the
sample API."""

from typing import ClassVar

import pytest

from tests.deploy.scenarios import ChainForwarding, ProxyScenarios

pytestmark = pytest.mark.wire


class TestApache(ProxyScenarios, ChainForwarding):
    proxy_kind = "apache"
    # mod_ssl ends the handshake over these whatever SSLVerifyClient says (deploy/apache/authz.conf).
    refused_in_handshake: ClassVar[dict[str, str]] = {"expired": "alert certificate expired",
                                                      "not-yet-valid": "alert bad certificate",
                                                      "not-for-client-auth": "alert unsupported certificate"}
