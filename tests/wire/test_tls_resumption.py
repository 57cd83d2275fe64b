"""``authz serve --tls-resumption tickets`` over real TLS on loopback: a resumed connection
carries the client certificate to the application, which checks it on every request as on a
full handshake. Clients are Python's ``ssl`` (``session=`` of an earlier connection) and
``openssl s_client -sess_out/-sess_in``; TLS 1.2 and 1.3.

The PKI is this module's own: a client root (with a CRL file the tests rewrite), an issuing
CA under it, and a server CA whose certificate the rotation test replaces."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.certificates.rejection import RejectionReason
from tests.support.debian import require_command
from tests.support.kept_connection import KeptConnection, client_context
from tests.support.pki import Issued, TestCA, self_signed
from tests.support.server import RunningServer, authz_cli, authz_cli_all, free_port, start_server
from tests.wire.client import verified_token
from tests.wire.metrics import MetricsEndpoint

pytestmark = pytest.mark.wire

ORG = "O=authz tests"
VERSIONS = {"tls1.3": ssl.TLSVersion.TLSv1_3, "tls1.2": ssl.TLSVersion.TLSv1_2}
POLL_INTERVAL = 0.2  # the store's, for the removal and registration-change tests
ROTATION = 4.0  # seconds, for the rotation tests


def _replace(path: Path, data: bytes) -> None:
    """Write as operators should: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _crl(ca: TestCA, revoked: Sequence[x509.Certificate] = ()) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - datetime.timedelta(minutes=1)).next_update(now + datetime.timedelta(days=1))
               .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False))
    for certificate in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(certificate.serial_number).revocation_date(now).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class Material:
    directory: Path
    root: TestCA = field(default_factory=lambda: TestCA(f"CN=Resumption Wire Root,{ORG}"))
    server_ca: TestCA = field(default_factory=lambda: TestCA(f"CN=Resumption Wire Server CA,{ORG}"))
    decoy: TestCA = field(default_factory=lambda: TestCA(f"CN=Resumption Wire Decoy CA,{ORG}"))
    clients: dict[str, Issued] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.issuing = TestCA(f"CN=Resumption Wire Issuing CA,{ORG}", parent=self.root)
        for name in ("direct", "revoked-later", "removed-later", "changed-later"):
            self.clients[name] = self.root.issue(f"CN={name},{ORG}")
        self.clients["chain"] = self.issuing.issue(f"CN=chain,{ORG}")  # sent with its intermediate
        self.clients["self-signed"] = self_signed(f"CN=resumption self-signed,{ORG}")
        for name, issued in self.clients.items():
            issued.write(self.directory, name)
        self.server_ca_file = self.server_ca.write(self.directory / "server-ca.pem")
        self.anchor = self.root.write(self.directory / "root.pem")
        self.root_crl = self.directory / "root.crl"
        self.root_crl.write_bytes(_crl(self.root))
        self.issuing_crl = self.directory / "issuing.crl"
        self.issuing_crl.write_bytes(_crl(self.issuing))

    def server_files(self, directory: Path) -> tuple[Path, Path]:
        return self.new_server_certificate().write(directory, "server")

    def new_server_certificate(self) -> Issued:
        return self.server_ca.issue("CN=127.0.0.1", san_ip=["127.0.0.1"], eku=[ExtendedKeyUsageOID.SERVER_AUTH])

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def thumbprint(self, name: str) -> str:
        digest = hashlib.sha256(self.clients[name].der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def client_context(self, name: str, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = client_context(self.server_ca_file, self.cert(name), self.key(name))
        if version is not None:
            context.minimum_version = context.maximum_version = version
        return context


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(tmp_path_factory.mktemp("resumption-pki"))


def _start(material: Material, tmp: Path, clients: list[str], *args: str, env: dict[str, str] | None = None,
           ready_count: int = 1, server_files: tuple[Path, Path] | None = None) -> RunningServer:
    data_dir = tmp / "data"
    commands = []
    for name in clients:
        if name == "self-signed":
            commands.append(["clients", "add", name, "--auth-method", "self_signed_tls_client_auth",
                             "--cert", str(material.cert(name))])
        else:
            commands.append(["clients", "add", name, "--auth-method", "tls_client_auth", "--subject-dn",
                             f"CN={name},{ORG}"])
    authz_cli_all(commands, data_dir=data_dir)
    cert, key = server_files or material.server_files(tmp)
    return start_server(tls_cert=cert, tls_key=key, ca_file=material.server_ca_file, data_dir=data_dir,
                        log_path=tmp / "authz.log", trust_anchors=[material.anchor],
                        extra_args=["--tls-resumption", "tickets", *args], env=env, ready_count=ready_count)


@dataclass
class Resuming:
    server: RunningServer
    intermediates: Path  # the --intermediate file, which a test replaces
    metrics: MetricsEndpoint


@pytest.fixture(scope="module")
def resuming(material: Material, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resuming]:
    """Tickets with the default rotation; CRL files for revocation; the --intermediate file
    holds an unrelated CA at first."""
    tmp = tmp_path_factory.mktemp("resuming")
    intermediates = material.decoy.write(tmp / "intermediates.pem")
    metrics_port = free_port()
    server = _start(material, tmp, list(material.clients), "--intermediate", str(intermediates),
                    "--metrics-listen", f"127.0.0.1:{metrics_port}",
                    "--revocation-check", "crl", "--crl", str(material.root_crl), "--crl", str(material.issuing_crl),
                    env={"AUTHZ_STORE_POLL_INTERVAL": str(POLL_INTERVAL)})
    yield Resuming(server, intermediates, MetricsEndpoint(metrics_port))
    server.stop()


class Client:
    """One client's TLS context (sessions resume only within one context) and its last session."""

    def __init__(self, material: Material, server: RunningServer, name: str, version: ssl.TLSVersion | None = None):
        self.server = server
        self.name = name
        self.context = material.client_context(name, version)
        self.session: ssl.SSLSession | None = None

    def connect(self, *, resume: bool = True) -> KeptConnection:
        return KeptConnection(self.server.port, self.context, session=self.session if resume else None)

    def token(self, connection: KeptConnection) -> tuple[int, dict[str, Any]]:
        status, body = connection.request("POST", "/token", urlencode(
            {"grant_type": "client_credentials", "client_id": self.name}).encode())
        # TLS 1.3 tickets arrive after the handshake: read with the first response.
        self.session = connection.tls.session
        return status, json.loads(body)

    def token_on_new_connection(self, *, resume: bool = True) -> tuple[bool, int, dict[str, Any]]:
        """(resumed, status, body) of one token request on a new connection."""
        connection = self.connect(resume=resume)
        try:
            status, body = self.token(connection)
            return connection.tls.session_reused, status, body
        finally:
            connection.close()


def _jwks(server: RunningServer, context: ssl.SSLContext) -> dict[str, Any]:
    connection = KeptConnection(server.port, context)
    try:
        status, body = connection.request("GET", "/jwks")
    finally:
        connection.close()
    assert status == 200
    keys: dict[str, Any] = json.loads(body)
    return keys


def _cnf(server: RunningServer, client: Client, body: dict[str, Any]) -> Any:
    return verified_token(body["access_token"], _jwks(server, client.context))[1]["cnf"]


def _refused(status: int, body: dict[str, Any], reason: RejectionReason) -> None:
    assert (status, body.get("error"), body.get("error_description")) == (
        401, "invalid_client", reason.public_description), body


def _failures(server: RunningServer, since: int) -> list[dict[str, Any]]:
    return [e for e in server.events(since) if e.get("event") == "client_authentication_failed"]


def _reload(server: RunningServer) -> dict[str, Any]:
    """SIGHUP, and the reload_completed line."""
    offset = server.log_offset()
    os.kill(server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        for event in server.events(offset):
            assert event.get("event") != "reload_refused", event
            if event.get("event") == "reload_completed":
                return event
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)


def _until(check: Callable[[], tuple[bool, int, dict[str, Any]]], status: int,
           timeout: float = POLL_INTERVAL + 3) -> tuple[bool, int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result[1] == status or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# --- a resumed connection is served as a full one -------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["direct", "self-signed"])
def test_a_resumed_connection_gets_a_token_bound_to_the_same_certificate(
        material: Material, resuming: Resuming, version: str, name: str) -> None:
    client = Client(material, resuming.server, name, VERSIONS[version])
    full_resumed, status, full = client.token_on_new_connection()
    assert (full_resumed, status) == (False, 200), full
    assert client.session is not None and client.session.has_ticket
    for _ in range(2):
        resumed, status, body = client.token_on_new_connection()
        assert (resumed, status) == (True, 200), body
        assert _cnf(resuming.server, client, body) == _cnf(resuming.server, client, full) == {
            "x5t#S256": material.thumbprint(name)}


def test_the_handshake_metric_counts_resumed_handshakes_apart(material: Material, resuming: Resuming) -> None:
    before = resuming.metrics.settled_scrape()
    client = Client(material, resuming.server, "direct")
    assert client.token_on_new_connection()[:2] == (False, 200)
    for _ in range(3):
        assert client.token_on_new_connection()[:2] == (True, 200)
    after = resuming.metrics.settled_scrape()

    def delta(outcome: str) -> float:
        name = "authz_tls_handshakes_total"
        return after.value(name, outcome=outcome) - before.value(name, outcome=outcome)

    assert (delta("ok"), delta("resumed")) == (1, 3)


def _s_client_token(port: int, material: Material, name: str, *args: str) -> tuple[str, str]:
    """(New or Reused, HTTP status line) of one token request through ``openssl s_client``, which
    reads until the server closes (a TLS 1.3 ticket comes after the handshake)."""
    body = urlencode({"grant_type": "client_credentials", "client_id": name})
    request = (f"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}")
    command = [require_command("openssl", "openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
               "-CAfile", str(material.server_ca_file), "-verify_return_error", "-ign_eof",
               "-cert", str(material.cert(name)), "-key", str(material.key(name)), *args]
    result = subprocess.run(command, input=request, capture_output=True, text=True, timeout=30)
    connection = re.search(r"^(New|Reused), ", result.stdout, re.MULTILINE)
    status = re.search(r"^HTTP/1\.1 \d+ .*$", result.stdout, re.MULTILINE)
    assert connection and status, result.stdout + result.stderr
    return connection.group(1), status.group(0).strip()


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_openssl_s_client_resumes(material: Material, resuming: Resuming, version: str, tmp_path: Path) -> None:
    session = str(tmp_path / "session.pem")
    port = resuming.server.port
    assert _s_client_token(port, material, "direct", version, "-sess_out", session) == ("New", "HTTP/1.1 200 OK")
    assert _s_client_token(port, material, "direct", version, "-sess_in", session) == ("Reused", "HTTP/1.1 200 OK")


# --- what changed since the full handshake is seen on the resumed connection ---------------------


def test_a_certificate_revoked_after_the_full_handshake_is_refused_when_resumed(
        material: Material, resuming: Resuming) -> None:
    server = resuming.server
    client = Client(material, server, "revoked-later")
    assert client.token_on_new_connection()[:2] == (False, 200)
    kept = client.connect()  # resumed, opened before the revocation
    assert kept.tls.session_reused and client.token(kept)[0] == 200
    _replace(material.root_crl, _crl(material.root, [material.clients["revoked-later"].cert]))
    _reload(server)  # the CRL file is in use after it (unless its watcher was quicker)
    offset = server.log_offset()
    resumed, status, body = client.token_on_new_connection()
    assert resumed
    _refused(status, body, RejectionReason.REVOKED)
    _refused(*client.token(kept), RejectionReason.REVOKED)  # every request is checked
    kept.close()
    failures = _failures(server, offset)
    assert failures and all(f["reason"] == "revoked" and f["tls_session_resumed"] is True for f in failures)


def test_a_client_removed_after_the_full_handshake_is_refused_when_resumed(
        material: Material, resuming: Resuming) -> None:
    client = Client(material, resuming.server, "removed-later")
    assert client.token_on_new_connection()[:2] == (False, 200)
    authz_cli("clients", "remove", "removed-later", data_dir=resuming.server.data_dir)
    resumed, status, body = _until(client.token_on_new_connection, 401)
    assert resumed and (status, body["error_description"]) == (401, "unknown client_id"), body


def test_a_registration_changed_after_the_full_handshake_is_refused_when_resumed(
        material: Material, resuming: Resuming) -> None:
    client = Client(material, resuming.server, "changed-later")
    assert client.token_on_new_connection()[:2] == (False, 200)
    authz_cli("clients", "update", "changed-later", "--subject-dn", f"CN=someone else,{ORG}",
              data_dir=resuming.server.data_dir)
    resumed, status, body = _until(client.token_on_new_connection, 401)
    assert resumed
    _refused(status, body, RejectionReason.SUBJECT_DN_MISMATCH)


# --- intermediates sent in the full handshake -------------------------------------------------------


def test_a_client_whose_intermediate_is_not_configured_gets_full_handshakes(
        material: Material, resuming: Resuming) -> None:
    server = resuming.server
    assert "without --intermediate" not in server.log()  # the start-up warning: --intermediate is given
    issuing_sha256 = material.issuing.cert.fingerprint(hashes.SHA256()).hex()
    client = Client(material, server, "chain")
    offset = server.log_offset()
    # The --intermediate file holds an unrelated CA: the ticket does not resume, the client
    # sends its chain again, and is served as before.
    assert client.token_on_new_connection()[:2] == (False, 200)
    for _ in range(2):
        resumed, status, body = client.token_on_new_connection()
        assert (resumed, status) == (False, 200), body
    declined = [e for e in server.events(offset) if e.get("event") == "tls_resumption_declined"]
    assert declined and declined[0]["unconfigured_ca_sha256"] == [issuing_sha256]
    assert declined[0]["reason"] == "intermediates_not_configured" and "--intermediate" in declined[0]["detail"]

    # Configured (a reload): its tickets resume, and the leaf alone validates.
    _replace(resuming.intermediates, material.issuing.pem)
    _reload(server)
    kept = client.connect()
    assert kept.tls.session_reused
    assert client.token(kept)[0] == 200

    # Removed again while a resumed connection is open: its next request is refused with the
    # reason, and a new connection is not resumed but served.
    _replace(resuming.intermediates, material.decoy.pem)
    _reload(server)
    offset = server.log_offset()
    _refused(*client.token(kept), RejectionReason.RESUMED_WITHOUT_INTERMEDIATES)
    kept.close()
    [failure] = _failures(server, offset)
    assert failure["reason"] == "resumed_without_intermediates" and failure["tls_session_resumed"] is True
    assert "the TLS session was resumed" in failure["detail"] and "--intermediate" in failure["detail"]
    resumed, status, body = client.token_on_new_connection()
    assert (resumed, status) == (False, 200), body


# --- off by default -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_off_by_default(material: Material, tmp_path: Path, version: str) -> None:
    data_dir = tmp_path / "data"
    authz_cli("clients", "add", "direct", "--auth-method", "tls_client_auth", "--subject-dn", f"CN=direct,{ORG}",
              data_dir=data_dir)
    cert, key = material.server_files(tmp_path)
    server = start_server(tls_cert=cert, tls_key=key, ca_file=material.server_ca_file, data_dir=data_dir,
                          log_path=tmp_path / "authz.log", trust_anchors=[material.anchor])
    try:
        client = Client(material, server, "direct", VERSIONS[version])
        assert client.token_on_new_connection()[:2] == (False, 200)
        assert client.session is None or not client.session.has_ticket
        assert client.token_on_new_connection()[:2] == (False, 200)
        assert "tls_ticket_key_rotation_started" not in server.log()
    finally:
        server.stop()


# --- ticket key rotation ------------------------------------------------------------------------------


@dataclass
class Rotating:
    server: RunningServer
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def rotating(material: Material, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotating]:
    tmp = tmp_path_factory.mktemp("rotating")
    cert, key = material.server_files(tmp)
    server = _start(material, tmp, ["direct"], "--tls-ticket-key-rotation", str(ROTATION), server_files=(cert, key))
    yield Rotating(server, cert, key)
    server.stop()


def _rotations(server: RunningServer, since: int = 0) -> list[int]:
    return [e["rotation"] for e in server.events(since) if e.get("event") == "tls_ticket_key_rotated"]


def _next_rotation(server: RunningServer, since: int) -> int:
    deadline = time.monotonic() + ROTATION * 3
    while not _rotations(server, since):
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.05)
    return _rotations(server, since)[0]


def _ticket_between_rotations(client: Client, server: RunningServer) -> int:
    """A ticket issued well after one rotation and before the next; the log offset just after."""
    for _ in range(3):
        offset = server.log_offset()
        _next_rotation(server, offset)
        time.sleep(ROTATION / 4)
        before = server.log_offset()
        assert client.token_on_new_connection(resume=False)[:2] == (False, 200)
        if not _rotations(server, before):  # no rotation while the handshake ran
            return server.log_offset()
    raise AssertionError("a rotation kept coming in the middle of the handshake")


def test_after_a_rotation_an_old_ticket_gets_a_full_handshake(material: Material, rotating: Rotating) -> None:
    server = rotating.server
    assert "warning: --tls-resumption tickets without --intermediate" in server.log()
    client = Client(material, server, "direct")
    offset = _ticket_between_rotations(client, server)
    assert client.session is not None and client.session.ticket_lifetime_hint == int(ROTATION)
    old = client.session
    assert client.token_on_new_connection()[:2] == (True, 200)  # the key in use resumes it
    client.session = old
    _next_rotation(server, offset)
    # Younger than its lifetime (about ROTATION / 2), but its key is gone: a full handshake.
    resumed, status, body = client.token_on_new_connection()
    assert (resumed, status) == (False, 200), body
    assert client.token_on_new_connection()[:2] == (True, 200)  # the new key's ticket


def test_the_rotation_follows_a_reload_of_the_server_certificate(material: Material, rotating: Rotating) -> None:
    server = rotating.server
    client = Client(material, server, "direct")
    assert client.token_on_new_connection()[1] == 200
    before_reload = client.session
    rotated = material.new_server_certificate()
    _replace(rotating.cert, rotated.pem)
    _replace(rotating.key, rotated.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    assert _reload(server)["server_certificate"] != "unchanged"
    # A new context, a new key: tickets from before the reload get a full handshake...
    resumed, status, _ = client.token_on_new_connection()
    assert (resumed, status) == (False, 200)
    assert client.token_on_new_connection()[:2] == (True, 200)  # ... and its own tickets resume
    # ... until the rotation replaces its key.
    client.session = before_reload
    offset = _ticket_between_rotations(client, server)
    _next_rotation(server, offset)
    assert client.token_on_new_connection()[:2] == (False, 200)


# --- several workers ----------------------------------------------------------------------------------


def test_two_workers_each_rotate_and_serve_resumed_connections(material: Material,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("resumption-workers")
    server = _start(material, tmp, ["direct"], "--workers", "2", ready_count=2)
    try:
        # Each worker logs it once its listener is up, which may be just after its start-up line.
        deadline = time.monotonic() + 10
        while len({e["pid"] for e in server.events() if e.get("event") == "tls_ticket_key_rotation_started"}) < 2:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.05)
        client = Client(material, server, "direct")
        outcomes = [client.token_on_new_connection() for _ in range(30)]
        assert all(status == 200 for _, status, _ in outcomes)
        # A ticket resumes on the worker that issued it; another worker gives a full handshake
        # (and a ticket of its own).
        assert any(resumed for resumed, _, _ in outcomes), outcomes
    finally:
        server.stop()
