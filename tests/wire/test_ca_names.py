"""``--advertise-ca-names`` over the wire, seen by ``openssl s_client``: off (the default, the
suite's server) the CertificateRequest names no CA; on, it names each trust anchor by its exact
subject, in TLS 1.3 and 1.2; with ``--workers 2``, SIGHUP after the anchor file changed makes
every worker advertise the new anchors on new handshakes. Go clients, for which the option
matters, are in tests/interop/test_go_ca_names.py."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pki import TestCA
from tests.support.s_client import SClient, s_client
from tests.support.server import RunningServer, start_server
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

# An anchor whose subject has characters RFC 4514 escapes, besides the suite's root.
SECOND_ANCHOR = "CN=Second Anchor CA,OU=R\\+D,O=Example\\, Inc.,C=CH"
VERSIONS = ["-tls1_3", "-tls1_2"]


def _s_client(server: RunningServer, pki: WirePKI, *args: str) -> SClient:
    """s_client presenting a client certificate, printing names as RFC 4514 strings."""
    client = pki["dn-client"]
    result = s_client(server.port, *args, "-cert", str(client.cert), "-key", str(client.key),
                      "-nameopt", "RFC2253", ca_file=server.ca_file)
    assert result.established, result.output
    return result


def _started(server: RunningServer) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("event") == "server_started"]


@pytest.mark.parametrize("version", VERSIONS)
def test_by_default_no_ca_names_are_sent(server: RunningServer, pki: WirePKI, version: str) -> None:
    result = _s_client(server, pki, version)
    assert "\nNo client certificate CA names sent\n" in result.output
    assert result.acceptable_ca_names is None
    assert [e["ca_names_advertised"] for e in _started(server)] == [0]


@pytest.fixture(scope="module")
def second_anchor(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(SECOND_ANCHOR)


@pytest.fixture(scope="module")
def advertising(start_wire_server: StartServer, second_anchor: TestCA,
                tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    """The suite's trust anchor (given last: the fixture adds it after these arguments) and a
    second one, advertised."""
    second_file = second_anchor.write(tmp_path_factory.mktemp("second-anchor") / "second.pem")
    return start_wire_server(tmp_path_factory.mktemp("ca-names-data"),
                             ["--trust-anchor", str(second_file), "--advertise-ca-names"])


@pytest.mark.parametrize("version", VERSIONS)
def test_with_the_option_each_anchor_is_named_exactly(advertising: RunningServer, pki: WirePKI,
                                                      second_anchor: TestCA, version: str) -> None:
    result = _s_client(advertising, pki, version)
    # In the order of the --trust-anchor options.
    assert result.acceptable_ca_names == [SECOND_ANCHOR, "CN=Wire Root CA,O=authz tests"], result.output
    assert second_anchor.cert.subject.rfc4514_string() == SECOND_ANCHOR
    assert [e["ca_names_advertised"] for e in _started(advertising)] == [2]


# --- SIGHUP, with two workers -------------------------------------------------------------------

@pytest.fixture
def two_workers(pki: WirePKI, tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pki.trust_anchor.read_bytes())
    server = start_server(tls_cert=pki.server_cert, tls_key=pki.server_key, ca_file=pki.server_ca,
                          data_dir=tmp_path / "data", log_path=tmp_path / "authz.log", trust_anchors=[anchors],
                          extra_args=["--workers", "2", "--advertise-ca-names"], ready_count=2)
    yield server, anchors
    server.stop()


def _reload(server: RunningServer, workers: int) -> list[dict[str, Any]]:
    """SIGHUP to the supervisor; each worker's ``reload_completed`` line."""
    offset = server.log_offset()
    os.kill(server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        events = server.events(offset)
        assert not [e for e in events if e.get("event") == "reload_refused"], events
        completed = [e for e in events if e.get("event") == "reload_completed"]
        if len(completed) >= workers:
            return completed
        assert time.monotonic() < deadline, f"no reload_completed after SIGHUP:\n{server.log()[-3000:]}"
        time.sleep(0.05)


def test_a_reload_advertises_the_new_anchors(two_workers: tuple[RunningServer, Path], pki: WirePKI) -> None:
    server, anchors = two_workers
    before = [_s_client(server, pki, "-tls1_3").acceptable_ca_names for _ in range(3)]
    assert before == [["CN=Wire Root CA,O=authz tests"]] * 3
    replacement = TestCA("CN=Replacement Anchor CA,O=authz tests")
    renamed = anchors.with_name("anchors.pem.new")
    renamed.write_bytes(replacement.pem + pki.trust_anchor.read_bytes())
    os.replace(renamed, anchors)
    completed = _reload(server, workers=2)
    # Each worker rebuilt its TLS context from the new anchor file.
    assert len({e["pid"] for e in completed}) == 2
    assert [e["server_certificate"]["ca_names_advertised"] for e in completed] == [2, 2]
    after = [_s_client(server, pki, version).acceptable_ca_names for version in (*VERSIONS, *VERSIONS)]
    assert after == [["CN=Replacement Anchor CA,O=authz tests", "CN=Wire Root CA,O=authz tests"]] * 4
