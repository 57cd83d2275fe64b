"""The sample API serves the authorization server's TLS profile (authz.tls.tls_profile):
checked over the wire with ``openssl s_client`` (the full set: tests/wire/test_tls_profile.py)."""

from __future__ import annotations

import pytest

from tests.resource.wire import Deployment
from tests.support.s_client import s_client

pytestmark = pytest.mark.wire


@pytest.mark.parametrize("api", ["jwt", "introspection"])
def test_finite_field_groups_get_no_handshake_and_x25519_does(deployment: Deployment, api: str) -> None:
    port = deployment.apis[api].port
    refused = s_client(port, "-groups", "ffdhe2048:ffdhe8192", ca_file=deployment.ca_file)
    assert refused.connections == [("New", "(NONE)", "(NONE)")], refused.output
    accepted = s_client(port, "-tls1_3", "-groups", "X25519", ca_file=deployment.ca_file)
    assert accepted.established, accepted.output
    assert accepted.field("Server Temp Key") == "X25519, 253 bits"


@pytest.mark.parametrize("api", ["jwt", "introspection"])
def test_tls12_cbc_suites_get_no_handshake_and_aead_does(deployment: Deployment, api: str) -> None:
    port = deployment.apis[api].port
    refused = s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384",
                       ca_file=deployment.ca_file)
    assert refused.connections == [("New", "(NONE)", "(NONE)")], refused.output
    accepted = s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", ca_file=deployment.ca_file)
    assert accepted.connections == [("New", "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")], accepted.output


def test_the_sample_api_resumes_no_session(deployment: Deployment) -> None:
    result = s_client(deployment.apis["jwt"].port, "-tls1_2", "-reconnect", ca_file=deployment.ca_file)
    assert result.established, result.output
    assert [kind for kind, _, _ in result.connections] == ["New"] * 6, result.output
