"""SIGHUP reloads the server certificate and key and the trust anchors of a running ``authz
serve`` (issue 13, part 3), over real TLS: a connection kept open goes on working with the
certificate it started with, a new one gets the new certificate, a bad file changes nothing and
the log says why; with ``--workers 2`` no worker is replaced."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.kept_connection import KeptConnection, client_context, presented_server_certificate
from tests.support.pki import Issued, TestCA
from tests.support.server import RunningServer, authz_cli, start_server
from tests.wire.material import WirePKI, register_clients

pytestmark = pytest.mark.wire

RELOAD_CLIENT_DN = "CN=reload-client,O=authz tests"


@dataclass
class Files:
    """The files a server is started with, which the tests replace."""

    directory: Path
    server_ca: Path
    server_ca_issuer: TestCA
    cert: Path
    key: Path
    anchors: Path

    def install(self, issued: Issued, *, key_of: Issued | None = None) -> None:
        """Replace the server's certificate (and key: ``issued``'s own, or ``key_of``'s)."""
        cert_path, key_path = issued.write(self.directory / "new", "server")
        if key_of is not None:
            key_path = key_of.write(self.directory / "other", "server")[1]
        _replace(self.cert, cert_path.read_bytes())
        _replace(self.key, key_path.read_bytes())

    def new_server_certificate(self) -> Issued:
        return self.server_ca_issuer.issue("CN=127.0.0.1", san_ip=["127.0.0.1"], eku=[ExtendedKeyUsageOID.SERVER_AUTH])


def _replace(path: Path, data: bytes) -> None:
    """Write as operators should: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def reload_ca() -> TestCA:
    """A client CA the server does not trust at first."""
    return TestCA("CN=Reload Client CA,O=authz tests")


@pytest.fixture(scope="module")
def reload_client(reload_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return reload_ca.issue(RELOAD_CLIENT_DN).write(tmp_path_factory.mktemp("reload-client"), "reload-client")


def _files(directory: Path, pki: WirePKI) -> Files:
    issuer = TestCA("CN=Reload Server CA,O=authz tests")
    files = Files(directory, issuer.write(directory / "server-ca.pem"), issuer, directory / "server.crt",
                  directory / "server.key", directory / "anchors.pem")
    files.install(files.new_server_certificate())
    files.anchors.write_bytes(pki.trust_anchor.read_bytes())
    return files


def _start(files: Files, pki: WirePKI, tmp: Path, *extra: str, ready_count: int = 1) -> RunningServer:
    data_dir = tmp / "data"
    register_clients(pki, data_dir, ["dn-client"])
    authz_cli("clients", "add", "reload-client", "--auth-method", "tls_client_auth", "--subject-dn",
              RELOAD_CLIENT_DN, "--scope", "read", data_dir=data_dir)
    return start_server(tls_cert=files.cert, tls_key=files.key, ca_file=files.server_ca, data_dir=data_dir,
                        log_path=tmp / "authz.log", trust_anchors=[files.anchors], extra_args=list(extra),
                        ready_count=ready_count)


@pytest.fixture(scope="module")
def one_worker(pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Files]]:
    tmp = tmp_path_factory.mktemp("reload")
    files = _files(tmp, pki)
    server = _start(files, pki, tmp)
    yield server, files
    server.stop()


def _reload(server: RunningServer, event: str, *, count: int = 1, keep: KeptConnection | None = None,
            pid: int | None = None) -> list[dict[str, Any]]:
    """Send SIGHUP and wait for ``count`` ``event`` lines (``reload_completed`` or
    ``reload_refused``); meanwhile ``keep`` sends a request a second, so that it does not go
    idle (5 s) while the server reloads. The reload lines."""
    offset = server.log_offset()
    os.kill(pid or server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    last_ping = time.monotonic()
    while True:
        lines = [e for e in server.events(offset) if e.get("event") in ("reload_completed", "reload_refused")]
        if len([e for e in lines if e["event"] == event]) >= count:
            return lines
        assert time.monotonic() < deadline, f"no {event} after SIGHUP:\n{server.log()[-3000:]}"
        assert server.process.poll() is None, server.log()
        if keep is not None and time.monotonic() - last_ping > 1:
            assert keep.request("GET", "/.well-known/oauth-authorization-server")[0] == 200
            last_ping = time.monotonic()
        time.sleep(0.05)


def _token(connection: KeptConnection, client_id: str) -> tuple[int, dict[str, Any]]:
    status, body = connection.request("POST", "/token", urlencode(
        {"grant_type": "client_credentials", "client_id": client_id}).encode())
    return status, json.loads(body)


def _fresh_token(server: RunningServer, files: Files, cert: Path, key: Path, client_id: str
                 ) -> tuple[int, dict[str, Any]]:
    connection = KeptConnection(server.port, client_context(files.server_ca, cert, key))
    try:
        return _token(connection, client_id)
    finally:
        connection.close()


def test_a_rotated_certificate_serves_new_connections_and_open_ones_go_on(
        one_worker: tuple[RunningServer, Files], pki: WirePKI) -> None:
    server, files = one_worker
    dn = pki["dn-client"]
    kept = KeptConnection(server.port, client_context(files.server_ca, dn.cert, dn.key))
    old = kept.server_certificate
    assert _token(kept, "dn-client")[0] == 200

    rotated = files.new_server_certificate()
    files.install(rotated)
    [line] = _reload(server, "reload_completed", keep=kept)
    assert line["server_certificate"]["serial"] == format(rotated.cert.serial_number, "x")
    assert line["server_certificate"]["not_after"] == rotated.cert.not_valid_after_utc.isoformat()
    assert line["trust_anchors"] == "unchanged"

    # The open connection: still there, its certificate unchanged, tokens still issued on it.
    status, body = _token(kept, "dn-client")
    assert status == 200, body
    assert kept.server_certificate == old
    # A new connection: the new certificate (its chain verified by the client).
    assert presented_server_certificate(server.port, files.server_ca) == rotated.der
    assert _fresh_token(server, files, dn.cert, dn.key, "dn-client")[0] == 200
    assert kept.request("GET", "/jwks")[0] == 200
    kept.close()


def test_unchanged_files_are_not_reloaded(one_worker: tuple[RunningServer, Files]) -> None:
    server, _ = one_worker
    [line] = _reload(server, "reload_completed")
    assert line["server_certificate"] == "unchanged" and line["trust_anchors"] == "unchanged"


@pytest.mark.parametrize("mistake", ["key-of-another-certificate", "certificate-unparsable", "key-unparsable",
                                     "certificate-missing"])
def test_a_bad_server_certificate_or_key_is_refused_and_the_old_one_stays(
        one_worker: tuple[RunningServer, Files], mistake: str) -> None:
    server, files = one_worker
    in_use = presented_server_certificate(server.port, files.server_ca)
    candidate = files.new_server_certificate()
    files.install(candidate)
    expected_file, reason = files.key, "the private key does not match the certificate"
    if mistake == "key-of-another-certificate":
        files.install(candidate, key_of=files.new_server_certificate())
    elif mistake == "certificate-unparsable":
        _replace(files.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        expected_file, reason = files.cert, "not a PEM certificate"
    elif mistake == "key-unparsable":
        _replace(files.key, files.cert.read_bytes())
        reason = "the key file is a certificate, not a private key"
    else:
        files.cert.unlink()
        expected_file, reason = files.cert, "cannot read the certificate: No such file or directory"
    try:
        kept = KeptConnection(server.port, client_context(files.server_ca))
        lines = _reload(server, "reload_refused", keep=kept)
        [refused] = lines
        assert refused["part"] == "server_certificate"
        assert refused["file"] == str(expected_file)
        assert reason in refused["reason"], refused
        assert "the material in use stays" in refused["detail"]
        assert presented_server_certificate(server.port, files.server_ca) == in_use
        assert kept.request("GET", "/jwks")[0] == 200
        kept.close()
    finally:
        files.install(candidate)
    _reload(server, "reload_completed")
    assert presented_server_certificate(server.port, files.server_ca) == candidate.der


def test_a_client_of_a_ca_added_by_a_reload_authenticates(
        one_worker: tuple[RunningServer, Files], reload_ca: TestCA, reload_client: tuple[Path, Path],
        pki: WirePKI) -> None:
    server, files = one_worker
    cert, key = reload_client
    status, body = _fresh_token(server, files, cert, key, "reload-client")
    assert status == 401
    assert body["error_description"] == "the client certificate chain does not lead to a trusted anchor"
    original = files.anchors.read_bytes()
    _replace(files.anchors, original + reload_ca.pem)
    try:
        [line] = _reload(server, "reload_completed")
        assert line["trust_anchors"]["anchors"] == 2
        assert line["trust_anchors"]["anchors_added"] == ["CN=Reload Client CA,O=authz tests"]
        # Refused a moment ago, and that refusal was remembered (10 minutes): forgotten now.
        status, body = _fresh_token(server, files, cert, key, "reload-client")
        assert status == 200, body
    finally:
        # And an anchor taken away: its clients are refused at once (their verdicts forgotten).
        _replace(files.anchors, reload_ca.pem)
        [line] = _reload(server, "reload_completed")
        assert line["trust_anchors"]["anchors_removed"] == ["CN=Wire Root CA,O=authz tests"]
        dn = pki["dn-client"]
        assert _fresh_token(server, files, dn.cert, dn.key, "dn-client")[0] == 401
        _replace(files.anchors, original)
        _reload(server, "reload_completed")
    assert _fresh_token(server, files, dn.cert, dn.key, "dn-client")[0] == 200


def test_one_bad_file_keeps_every_file_of_the_reload_out(one_worker: tuple[RunningServer, Files], pki: WirePKI
                                                         ) -> None:
    """A good new certificate and a trust anchor that is not a CA: neither is taken."""
    server, files = one_worker
    in_use = presented_server_certificate(server.port, files.server_ca)
    candidate = files.new_server_certificate()
    files.install(candidate)
    original = files.anchors.read_bytes()
    _replace(files.anchors, original + pki["dn-client"].cert.read_bytes())
    try:
        [refused] = _reload(server, "reload_refused")
        assert refused["part"] == "trust_anchors" and refused["file"] == str(files.anchors)
        assert "is not a CA" in refused["reason"]
        assert presented_server_certificate(server.port, files.server_ca) == in_use
    finally:
        _replace(files.anchors, original)
    [line] = _reload(server, "reload_completed")
    assert line["server_certificate"]["serial"] == format(candidate.cert.serial_number, "x")
    assert presented_server_certificate(server.port, files.server_ca) == candidate.der


def test_with_two_workers_sighup_to_the_main_process_reloads_both_in_place(
        pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("reload-workers")
    files = _files(tmp, pki)
    server = _start(files, pki, tmp, "--workers", "2", ready_count=2)
    try:
        kept = KeptConnection(server.port, client_context(files.server_ca))
        old = kept.server_certificate
        rotated = files.new_server_certificate()
        files.install(rotated)
        lines = _reload(server, "reload_completed", count=2, keep=kept)
        assert len({line["pid"] for line in lines}) == 2
        requested = [e for e in server.events() if e.get("event") == "reload_requested"]
        assert len(requested) == 1 and sorted(requested[0]["workers"]) == sorted(line["pid"] for line in lines)
        # No worker was replaced: uvicorn's own SIGHUP handling would start two more.
        assert "restarting processes" not in server.log()
        assert server.log().count("Started server process") == 2
        assert kept.request("GET", "/jwks")[0] == 200 and kept.server_certificate == old
        # Whichever worker accepts it, a new connection gets the new certificate.
        for _ in range(6):
            assert presented_server_certificate(server.port, files.server_ca) == rotated.der
        kept.close()
    finally:
        server.stop()


# --- --watch-files: the same reloads, without a signal ----------------------------------------


def _wait_for(server: RunningServer, offset: int, event: str, count: int = 1,
              where: Callable[[dict[str, Any]], bool] = lambda line: True) -> list[dict[str, Any]]:
    """The ``event`` lines since ``offset`` that satisfy ``where``, once ``count`` processes (the
    workers, by pid) have logged one: a worker may log another reload first (a poll between the
    two renames of a certificate and its key), which says "unchanged" or is refused."""
    deadline = time.monotonic() + 20
    while True:
        lines = [e for e in server.events(offset) if e.get("event") == event and where(e)]
        if len({line.get("pid") for line in lines}) >= count:
            return lines
        assert time.monotonic() < deadline, f"no {event}:\n{server.log()[-3000:]}"
        assert server.process.poll() is None, server.log()
        time.sleep(0.05)


def _serves(issued: Issued) -> Callable[[dict[str, Any]], bool]:
    serial = format(issued.cert.serial_number, "x")

    def serves(line: dict[str, Any]) -> bool:
        certificate = line.get("server_certificate")
        return isinstance(certificate, dict) and certificate["serial"] == serial

    return serves


def test_watched_files_reload_when_they_change(pki: WirePKI, reload_ca: TestCA, reload_client: tuple[Path, Path],
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("reload-watch")
    files = _files(tmp, pki)
    server = _start(files, pki, tmp, "--watch-files", "--workers", "2", ready_count=2)
    try:
        # A renewed certificate, written as cert-manager does (new files renamed over the old).
        offset = server.log_offset()
        renewed = files.new_server_certificate()
        files.install(renewed)
        _wait_for(server, offset, "reload_completed", count=2, where=_serves(renewed))  # each worker
        assert str(files.cert) in _wait_for(server, offset, "reload_files_changed")[0]["files"]
        assert presented_server_certificate(server.port, files.server_ca) == renewed.der

        # A bad key: refused, the renewed certificate stays; the right key: taken.
        offset = server.log_offset()
        candidate = files.new_server_certificate()
        files.install(candidate, key_of=files.new_server_certificate())
        refused = _wait_for(server, offset, "reload_refused", count=2)
        assert {line["file"] for line in refused} == {str(files.key)}
        assert presented_server_certificate(server.port, files.server_ca) == renewed.der
        offset = server.log_offset()
        files.install(candidate)
        _wait_for(server, offset, "reload_completed", count=2, where=_serves(candidate))
        assert presented_server_certificate(server.port, files.server_ca) == candidate.der

        # A trust anchor added to its file: its clients authenticate, without a signal.
        cert, key = reload_client
        assert _fresh_token(server, files, cert, key, "reload-client")[0] == 401
        offset = server.log_offset()
        _replace(files.anchors, files.anchors.read_bytes() + reload_ca.pem)
        _wait_for(server, offset, "reload_completed", count=2, where=lambda line: isinstance(
            line.get("trust_anchors"), dict) and line["trust_anchors"]["anchors_added"] == [
            "CN=Reload Client CA,O=authz tests"])
        for _ in range(4):  # whichever worker answers
            status, body = _fresh_token(server, files, cert, key, "reload-client")
            assert status == 200, body
    finally:
        server.stop()
