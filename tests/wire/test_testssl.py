"""testssl.sh (Debian's package) against a real ``authz serve`` on loopback: no finding rated
LOW or above, and testssl's own view of the TLS profile (authz.tls.tls_profile).

testssl.sh 3.0 rates the CBC suites ("obsolete CBC ciphers", LUCKY13) LOW, so LOW fails too:
MEDIUM and above would have let issue 9's finding 2 through. Scan problems (WARN, FATAL)
fail as well: a scan that could not test proves nothing. Nothing is excluded. And testssl
rates the groups and session resumption OK or INFO whatever they are, so its verdicts on
those are compared with the profile.

It runs the checks that concern the TLS configuration: protocols (-p), cipher categories
(-s), forward secrecy (-f), server defaults (-S: certificate, session resumption) and
vulnerabilities (-U). Left out: client simulation (-c) and HTTP headers (-h, not TLS).
The scan took 27-35 s on a shared, loaded 2-core machine (about 12 s of CPU); splitting it
into two parallel scans was no faster there, nor was --fast.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.debian import require_command
from tests.support.pki import TestCA
from tests.support.server import RunningServer, start_server

pytestmark = pytest.mark.wire

FAILING_SEVERITIES = {"LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"}
# testssl's own view of the profile, which it rates OK or INFO whatever it is; and the
# finite-field groups the server accepts would be listed as DH_groups.
PROFILE_VIEW = {
    "PFS_ECDHE_curves": "prime256v1 secp384r1 X25519",
    "SSL_sessionID_support": "no",
    "sessionresumption_ID": "No Session ID, no resumption",
    "sessionresumption_ticket": "not supported",
}
ABSENT_IDS = {"DH_groups"}
# One finding per group of checks that must have run: an empty or cut-short scan must not pass.
EXPECTED_IDS = {"TLS1_3", "cipherlist_AVERAGE", "cert_chain_of_trust", "heartbleed", "LUCKY13", "ROBOT", *PROFILE_VIEW}
SCAN_TIMEOUT = 300  # seconds; testssl's own per-connection timeouts below keep each step short


@pytest.fixture(scope="module")
def scanned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``authz serve`` with a server certificate like a real one as testssl checks it: valid
    for 90 days (testssl warns under 60, and over 825), and naming a CRL distribution point
    (it is never fetched: testssl runs without --phone-out)."""
    directory = tmp_path_factory.mktemp("testssl")
    ca = TestCA("CN=testssl Server CA,O=authz tests")
    ca_file = ca.write(directory / "server-ca.pem")
    now = datetime.datetime.now(datetime.UTC)
    cert, key = ca.issue("CN=127.0.0.1", san_ip=["127.0.0.1"], eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                         not_after=now + datetime.timedelta(days=90),
                         crl_uri="http://127.0.0.1/testssl-server-ca.crl").write(directory, "server")
    server = start_server(tls_cert=cert, tls_key=key, ca_file=ca_file, data_dir=directory / "data",
                          log_path=directory / "authz.log")
    yield server
    server.stop()


def run_testssl(server: RunningServer, json_file: Path) -> list[dict[str, Any]]:
    testssl = require_command("testssl", "testssl.sh")
    openssl = require_command("openssl", "openssl")
    args = [testssl, "--quiet", "--color", "0", "--warnings", "batch",
            "--nodns", "none",  # loopback only: no DNS (CAA, PTR) lookups
            "--openssl", openssl, "--connect-timeout", "10", "--openssl-timeout", "10",
            "--add-ca", str(server.ca_file),  # trust findings are real: the chain must verify
            "-p", "-s", "-f", "-S", "-U", "--jsonfile", str(json_file), f"127.0.0.1:{server.port}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=SCAN_TIMEOUT)
    assert json_file.exists(), f"testssl wrote no findings ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    findings: list[dict[str, Any]] = json.loads(json_file.read_text())
    return findings


def test_testssl_finds_nothing(scanned_server: RunningServer, tmp_path: Path) -> None:
    started = time.monotonic()
    findings = run_testssl(scanned_server, tmp_path / "testssl.json")
    elapsed = time.monotonic() - started
    by_id = {f["id"]: f for f in findings}
    problems = [f"{f['severity']} {f['id']}: {f['finding']}" for f in findings if f["severity"] in FAILING_SEVERITIES]
    problems += [f"{i}: {by_id[i]['finding']!r}, expected {want!r}" for i, want in PROFILE_VIEW.items()
                 if i in by_id and by_id[i]["finding"] != want]
    problems += [f"{i}: {by_id[i]['finding']!r}, expected no such finding" for i in ABSENT_IDS & by_id.keys()]
    problems += [f"{i}: missing from the scan" for i in sorted(EXPECTED_IDS - by_id.keys())]
    assert not problems, f"testssl.sh ({elapsed:.0f} s):\n" + "\n".join(problems)
