"""Chains an anonymous client builds to make the server work: each is refused with its reason,
and at a bounded cost (issue 9, finding 3)."""

from __future__ import annotations

import time

import httpx
import pytest

from authz.certificates.rejection import RejectionReason
from tests.support.server import RunningServer
from tests.wire.client import WireClient, assert_invalid_client, client_ssl_context
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire


def test_chain_over_the_size_limit_is_refused_unparsed(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["oversized"], "dn-client")
    assert_invalid_client(response, RejectionReason.CHAIN_TOO_LARGE, "dn-client")
    failure = response.failures()[0]
    assert failure["cert"] == "refused" and failure["reason"] == "chain_too_large"
    assert failure["cert_problem"].endswith("bytes of certificates sent (limit 32768)")
    assert failure["cert_sha256"] == pki["oversized"].sha256_hex


def test_path_building_bomb_is_refused_and_remembered(server: RunningServer, pki: WirePKI) -> None:
    """The bomb's self-issued "CAs" never reach the path builder, and the refusal is remembered:
    a keep-alive connection hammering the server gets the same answer from memory."""
    bomb = pki["path-building-bomb"]
    form = {"grant_type": "client_credentials", "client_id": "dn-client"}
    offset = server.log_offset()
    started = time.perf_counter()
    with httpx.Client(verify=client_ssl_context(bomb, pki.server_ca), timeout=15) as client:
        responses = [client.post(server.base_url + "/token", data=form) for _ in range(40)]
    elapsed = time.perf_counter() - started
    # Unbounded, the builder spent about 80 ms per request (over 3 s here); now each is an
    # ordinary refusal. Generous for a loaded machine, far below the unbounded cost.
    assert elapsed < 2.0, elapsed
    description = RejectionReason.UNTRUSTED_CHAIN.public_description
    assert all(r.status_code == 401 and r.json()["error_description"] == description for r in responses)
    failures = [e for e in server.events(offset) if e.get("event") == "client_authentication_failed"]
    assert len(failures) == 40
    assert "2 certificate(s) the client sent left out" in failures[0]["detail"]
    assert all(f["detail"].endswith("(refusal remembered)") for f in failures[1:])
