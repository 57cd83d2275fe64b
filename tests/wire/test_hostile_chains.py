"""Chains an anonymous client builds to make the server work: each is refused with its reason,
and at a bounded cost (issue 9, finding 3)."""

from __future__ import annotations

import datetime
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.certificates.rejection import RejectionReason
from tests.support.pki import NOW
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


def _resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _certificates_with_many_sans(directory: Path, count: int) -> list[tuple[Path, Path]]:
    """``count`` distinct self-signed certificates of about 15 KiB (150 SANs), one key."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = directory / "key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    sans = x509.SubjectAlternativeName([x509.DNSName(f"h{i:03d}.{'x' * 80}.example") for i in range(150)])
    pairs = []
    for serial in range(1, count + 1):
        name = x509.Name.from_rfc4514_string(f"CN=anonymous {serial}")
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=1)).add_extension(sans, critical=False)
            .sign(key, hashes.SHA256())
        )
        cert_path = directory / f"{serial}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pairs.append((cert_path, key_path))
    return pairs


def _one_token_request(server: RunningServer, cert: Path, key: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    context.load_cert_chain(cert, key)
    body = b"grant_type=client_credentials&client_id=nobody"
    request = (b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(request)
        return b"".join(iter(lambda: tls.recv(65536), b""))


def test_distinct_certificates_from_anonymous_clients_do_not_grow_the_server(
    server: RunningServer, tmp_path: Path
) -> None:
    """Each connection's parse goes with the connection: 250 distinct 15 KiB certificates
    (before: about 175 KiB each stayed in a process-wide cache) leave the server's size alone."""
    certificates = _certificates_with_many_sans(tmp_path, 250)
    _one_token_request(server, *certificates[0])  # the server's first allocations for this path
    before = _resident_kib(server.process.pid)
    for cert, key in certificates:
        assert b" 401 " in _one_token_request(server, cert, key).split(b"\r\n", 1)[0]
    grown = _resident_kib(server.process.pid) - before
    assert grown < 8 * 1024, f"{grown} KiB"  # before: 22 MiB grown; now: under 1 MiB
