#!/usr/bin/env python3
"""Abuse benchmark: what each anonymous attack does to a legitimate client of ``authz serve``.

    .venv/bin/python tests/bench/abuse.py --quick                 # every attack, short windows, ~3 min
    .venv/bin/python tests/bench/abuse.py --attack bomb,dheat     # some attacks, default windows
    .venv/bin/python tests/bench/abuse.py --list                  # the attacks and what they send

For each selected attack, one fresh server (``authz serve``, one worker, a PKI generated at run
time, clients ``bench-pki`` (tls_client_auth) and ``bench-selfsigned``) is started on a free
loopback port. The legitimate client is the shared C load generator
(../shared/bench/peer/loadgen.c, built on first use): 16 connections requesting tokens with
``tls_client_auth``, keep-alive and/or a new TLS connection per token. It is measured without
the attack, then again while the attack runs; the server's VmRSS/VmHWM (/proc) is read before
and after. The attacker is this process (threads), unauthenticated: no attack uses a key or
certificate that the server trusts. Printed: one table with tokens/s, p99 and their ratios
(under attack / without), one with the server's memory and what the attacker did.

Not part of the test suite. Everything listens on and connects to 127.0.0.1; every loop is
bounded in count and time; the server and load generator are stopped on exit.
"""

from __future__ import annotations

import _ssl
import argparse
import contextlib
import ctypes
import datetime
import json
import os
import resource
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.support

from tests.bench.bench_resource import cpu_ticks, machine_busy  # noqa: E402  # the same /proc accounting

HOST = "127.0.0.1"
HZ = os.sysconf("SC_CLK_TCK")
LOADGEN = Path(tempfile.gettempdir()) / "authz-abuse-bench" / "loadgen"
PKI_CLIENT_ID = "bench-pki"
PKI_CLIENT_DN = "CN=bench-client,O=Bench"
SELF_CLIENT_ID = "bench-selfsigned"
# Certificates of the parsed-certificate cache attack stay under the server's cacheable size
# (authz.certificates.presented.CACHEABLE_CHAIN_BYTES, 16 KiB of DER); the big one stays under
# OpenSSL's default limit on a peer's certificate list (100 KiB).
CACHEABLE_CERT_BYTES = 15_500
BIG_CERT_BYTES = 96_000


# ---------------------------------------------------------------- certificates (made before measuring)

def _x509() -> Any:
    from cryptography import x509

    return x509


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _der_len(cert: Any) -> int:
    from cryptography.hazmat.primitives import serialization

    return len(cert.public_bytes(serialization.Encoding.DER))


def write_key(path: Path, key: Any) -> Path:
    path.write_bytes(_pem_key(key))
    path.chmod(0o600)
    return path


def stuffed_self_signed(key: Any, target_bytes: int, tag: str) -> tuple[Any, Callable[[str, int], Any]]:
    """A self-signed client certificate of about ``target_bytes`` of DER (under it), filled with
    DNS subjectAltNames; and a function making more like it (same SANs, another CN and serial)."""
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = _now()

    def builder(count: int) -> Any:
        sans = x509.SubjectAlternativeName(
            [x509.DNSName(f"h{i:05d}.{tag}.abuse-bench.example") for i in range(count)])
        return (x509.CertificateBuilder().public_key(key.public_key())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(sans, critical=False))

    def make(base: Any, cn: str, serial: int) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return base.subject_name(name).issuer_name(name).serial_number(serial).sign(key, hashes.SHA256())

    count = max(1, target_bytes // 40)
    for _ in range(6):  # proportional steps to just under the target
        size = _der_len(make(builder(count), f"{tag}-000000", 1))
        if size <= target_bytes and size > target_bytes - 200:
            break
        count = max(1, int(count * (target_bytes - 100) / size))
    base = builder(count)
    first = make(base, f"{tag}-000000", 1)
    assert _der_len(first) <= target_bytes, "could not size the certificate"
    return first, lambda cn, serial: make(base, cn, serial)


def loop_chain(directory: Path) -> tuple[Path, Path, int]:
    """The path-building bomb: a leaf with the registered client's subject DN, issued by two
    self-issued P-521 "CA" certificates that share one subject and one key (each one verifies
    the other and itself). Returns (chain file leaf first, leaf key, chain bytes)."""
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = _now()
    ca_key = ec.generate_private_key(ec.SECP521R1())
    ca_name = x509.Name.from_rfc4514_string("CN=Loop CA,O=abuse bench")

    def base(subject: Any, public_key: Any, serial: int) -> Any:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                .serial_number(serial).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    cas = [base(ca_name, ca_key.public_key(), serial)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
           .sign(ca_key, hashes.SHA512()) for serial in (1, 2)]
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (base(x509.Name.from_rfc4514_string(PKI_CLIENT_DN), leaf_key.public_key(), 3)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA512()))
    chain = directory / "bomb-chain.crt"
    chain.write_bytes(b"".join(_pem(c) for c in (leaf, *cas)))
    return chain, write_key(directory / "bomb.key", leaf_key), sum(_der_len(c) for c in (leaf, *cas))


@dataclass
class Material:
    """What every server and client of a run shares; generated once into a temp dir."""

    directory: Path
    ca_file: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    selfsigned: tuple[Path, Path]
    data_dir: Path
    _big: tuple[Path, Path, int] | None = None

    def big_cert(self) -> tuple[Path, Path, int]:
        """A ~96 KB self-signed certificate stuffed with SANs, its key, its DER size."""
        if self._big is None:
            from cryptography.hazmat.primitives.asymmetric import ec

            key = ec.generate_private_key(ec.SECP256R1())
            cert, _ = stuffed_self_signed(key, BIG_CERT_BYTES, "big")
            path = self.directory / "big.crt"
            path.write_bytes(_pem(cert))
            self._big = (path, write_key(self.directory / "big.key", key), _der_len(cert))
        return self._big


def make_material(directory: Path) -> Material:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.support.pki import TestCA, self_signed
    from tests.support.server import authz_cli

    ca = TestCA("CN=Abuse Bench CA,O=Bench")
    ca_file = ca.write(directory / "ca.crt")
    server = ca.issue("CN=localhost", san_ip=["127.0.0.1"], san_dns=["localhost"],
                      eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(directory, "server")
    client = ca.issue(PKI_CLIENT_DN).write(directory, "client")
    selfsigned = self_signed("CN=bench-selfsigned,O=Bench").write(directory, "selfsigned")
    data_dir = directory / "data"
    authz_cli("clients", "add", PKI_CLIENT_ID, "--auth-method", "tls_client_auth", "--subject-dn", PKI_CLIENT_DN,
              data_dir=data_dir)
    authz_cli("clients", "add", SELF_CLIENT_ID, "--auth-method", "self_signed_tls_client_auth",
              "--cert", str(selfsigned[0]), data_dir=data_dir)
    return Material(directory, ca_file, server, client, selfsigned, data_dir)


# ---------------------------------------------------------------- attacker's plumbing

def client_context(cert: Path | None = None, key: Path | None = None, *,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """An attacker's context: it does not care who the server is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        context.maximum_version = max_version
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


class HTTPConnection:
    """Just enough HTTP/1.1 to POST /token again and again on one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def token(self, client_id: str) -> tuple[int, bool]:
        """One token request; (status, the server closes the connection after it)."""
        body = f"grant_type=client_credentials&client_id={client_id}".encode()
        self.sock.sendall(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(b":") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            self._more()
        self.buffer = self.buffer[length:]
        return status, headers.get(b"connection", b"").lower() == b"close"


def _ssl_ctx_pointer(context: ssl.SSLContext) -> tuple[ctypes.CDLL, int]:
    """OpenSSL's SSL_CTX* of a Python context, as authz/tls/accept_any.py finds it."""
    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_verify_mode(pointer) != 0:  # SSL_VERIFY_NONE, as set
        raise RuntimeError("cannot locate the SSL_CTX of a Python SSLContext on this Python")
    return lib, pointer


SSL_CTRL_SET_GROUPS_LIST = 92
FFDHE8192 = 0x0104


def ffdhe8192_client_hello() -> bytes:
    """A TLS 1.3 ClientHello whose only group is ffdhe8192 (with its 1024-byte key share),
    made once with OpenSSL through a MemoryBIO; replaying it costs the attacker nothing."""
    context = client_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    lib, pointer = _ssl_ctx_pointer(context)
    if lib.SSL_CTX_ctrl(pointer, SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(b"ffdhe8192")) != 1:
        raise RuntimeError("this OpenSSL refuses the group list ffdhe8192")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    groups, shares = _hello_groups(hello)
    if groups != [FFDHE8192] or shares != [(FFDHE8192, 1024)]:
        raise RuntimeError(f"unexpected ClientHello: groups {groups}, key shares {shares}")
    return hello


def _hello_groups(record: bytes) -> tuple[list[int], list[tuple[int, int]]]:
    """supported_groups and key_share (group, length) of a ClientHello record."""
    body = record[5 + 4:]  # record header, handshake header
    at = 2 + 32  # legacy_version, random
    at += 1 + body[at]  # session id
    at += 2 + int.from_bytes(body[at:at + 2], "big")  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + int.from_bytes(body[at:at + 2], "big")
    at += 2
    groups: list[int] = []
    shares: list[tuple[int, int]] = []
    while at < end:
        kind, length = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
        data = body[at + 4:at + 4 + length]
        if kind == 10:  # supported_groups
            groups = [int.from_bytes(data[i:i + 2], "big") for i in range(2, len(data), 2)]
        elif kind == 51:  # key_share
            i = 2
            while i < len(data):
                size = int.from_bytes(data[i + 2:i + 4], "big")
                shares.append((int.from_bytes(data[i:i + 2], "big"), size))
                i += 4 + size
        at += 4 + length
    return groups, shares


# ---------------------------------------------------------------- attacks

class Attack:
    """Threads that run from start() until stop(), their count or their deadline, whichever
    comes first, and count what they did."""

    name: ClassVar[str] = ""
    about: ClassVar[str] = ""
    bounded_count: ClassVar[bool] = False  # finish() waits for the count to be done

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.deadline = 0.0
        self.started = 0.0
        self.finished = 0.0
        self.ok = 0
        self.failed = 0
        self.claimed = 0
        self.seconds = 0.0
        self.statuses: Counter[str] = Counter()
        self.first_error = ""

    # what a subclass provides
    def prepare(self, material: Material) -> str:
        """Make what the attack sends, before any measurement; return a description."""
        return ""

    def threads(self) -> int:
        return 1

    def count(self) -> int | None:
        return None

    def worker(self, port: int) -> None:
        raise NotImplementedError

    def details(self) -> str:
        return ""

    # shared
    def running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def claim(self) -> bool:
        """One more unit of a counted attack, if any is left and time remains."""
        if not self.running():
            return False
        with self._lock:
            limit = self.count()
            if limit is not None and self.claimed >= limit:
                return False
            self.claimed += 1
            return True

    def record(self, seconds: float, ok: bool, status: str = "", error: BaseException | None = None) -> None:
        with self._lock:
            if ok:
                self.ok += 1
                self.seconds += seconds
            else:
                self.failed += 1
            if status:
                self.statuses[status] += 1
            if error is not None and not self.first_error:
                self.first_error = f"{type(error).__name__}: {error}"[:160]

    def start(self, port: int, limit: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + limit
        for index in range(self.threads()):
            thread = threading.Thread(target=self._run, args=(port,), name=f"{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, port: int) -> None:
        try:
            self.worker(port)
        except Exception as exc:  # a broken attacker must not hang the benchmark
            self.record(0.0, False, "attacker-error", exc)
        finally:
            with self._lock:
                self.finished = max(self.finished, time.monotonic())

    def ready(self) -> None:
        """Return once the attack is in full swing (the measurement under attack starts then)."""
        time.sleep(min(1.0, self.options.warmup))

    def finish(self) -> None:
        """After the measurement: a counted attack completes its count (within its deadline)."""
        if self.bounded_count:
            for thread in self._threads:
                thread.join(max(0.0, self.deadline - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def coverage(self, window: tuple[float, float]) -> float:
        """The share of a measured window during which the attack ran (call after stop())."""
        end = self.finished or time.monotonic()
        overlap = min(end, window[1]) - max(self.started, window[0])
        return max(0.0, overlap) / max(1e-9, window[1] - window[0])

    def elapsed(self) -> float:
        end = self.finished if self._threads and not any(t.is_alive() for t in self._threads) else time.monotonic()
        return end - self.started

    def summary(self) -> str:
        mean = f", {1000 * self.seconds / self.ok:.1f} ms each" if self.ok else ""
        text = f"{self.ok} done, {self.failed} failed in {self.elapsed():.1f} s{mean}"
        if self.statuses:
            text += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        if self.details():
            text += "; " + self.details()
        if self.first_error:
            text += f"; first error: {self.first_error}"
        return text


class DHEat(Attack):
    name = "dheat"
    about = ("a replayed TLS 1.3 ClientHello offering only ffdhe8192 with a constant key share, on new TCP "
             "connections (--dheat-inflight per thread at once); the attacker waits for the server's first bytes "
             "(its key share: the server has done its 8192-bit DH work), then closes")

    def prepare(self, material: Material) -> str:
        self.hello = ffdhe8192_client_hello()
        return (f"ClientHello of {len(self.hello)} bytes (groups: ffdhe8192 only); {self.options.dheat_threads} "
                f"thread(s) x {self.options.dheat_inflight} connection(s) in flight")

    def threads(self) -> int:
        return int(self.options.dheat_threads)

    def worker(self, port: int) -> None:
        selector = selectors.DefaultSelector()
        try:
            while self.running():
                while len(selector.get_map()) < self.options.dheat_inflight and self.running():
                    try:
                        sock = socket.create_connection((HOST, port), timeout=10)
                        sock.sendall(self.hello)
                    except OSError as exc:
                        self.record(0.0, False, "socket-error", exc)
                        time.sleep(0.01)
                        continue
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, time.monotonic())
                now = time.monotonic()
                for key in list(selector.get_map().values()):  # no answer within 10 s: give up on it
                    if now - key.data > 10:
                        selector.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
                        self.record(0.0, False, "timeout")
                for key, _ in selector.select(0.2):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        answered = bool(sock.recv(1))
                    except OSError:
                        answered = False
                    self.record(time.monotonic() - key.data, answered, "" if answered else "closed")
                    selector.unregister(sock)
                    sock.close()
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


class KeepAliveFlood(Attack):
    """POST /token as fast as the server answers, on keep-alive connection(s) presenting a
    certificate the server does not trust for this client."""

    client_id: ClassVar[str] = ""

    def credentials(self) -> tuple[Path, Path]:
        raise NotImplementedError

    def flood(self, port: int, context: ssl.SSLContext, client_id: str, until: Callable[[], bool]) -> None:
        while until():
            try:
                with socket.create_connection((HOST, port), timeout=10) as raw, context.wrap_socket(raw) as sock:
                    connection = HTTPConnection(sock)
                    while until():
                        start = time.monotonic()
                        status, close = connection.token(client_id)
                        self.record(time.monotonic() - start, True, str(status))
                        if close:
                            break
            except (OSError, ValueError) as exc:
                self.record(0.0, False, "connection-error", exc)
                time.sleep(0.01)

    def worker(self, port: int) -> None:
        self.flood(port, client_context(*self.credentials()), self.client_id, self.running)


class Bomb(KeepAliveFlood):
    name = "bomb"
    about = ("a ~1.5 KB chain (leaf with bench-pki's subject DN, two self-issued P-521 'CA' certificates sharing "
             "one subject and key) sent to /token with client_id=bench-pki, on keep-alive connection(s), as fast "
             "as the server answers")
    client_id = PKI_CLIENT_ID

    def prepare(self, material: Material) -> str:
        chain, key, size = loop_chain(material.directory)
        self._credentials = (chain, key)
        return f"chain of 3 certificates, {size} bytes of DER; {self.options.bomb_conns} connection(s)"

    def credentials(self) -> tuple[Path, Path]:
        return self._credentials

    def threads(self) -> int:
        return int(self.options.bomb_conns)


class BigCert(KeepAliveFlood):
    name = "bigcert"
    about = ("one keep-alive connection presenting a ~96 KB self-signed certificate (SANs), /token with "
             "client_id=bench-selfsigned (not its certificate) as fast as the server answers; before the "
             "measurement, the same client with the registered small certificate for comparison")
    client_id = SELF_CLIENT_ID

    def prepare(self, material: Material) -> str:
        cert, key, size = material.big_cert()
        self._credentials = (cert, key)
        self._small = material.selfsigned
        return f"certificate of {size} bytes of DER"

    def credentials(self) -> tuple[Path, Path]:
        return self._credentials

    def start(self, port: int, limit: float) -> None:
        # Reference: the same loop with the small registered certificate, 1 s, counted apart.
        probe = KeepAliveFlood(self.options)
        probe.deadline = time.monotonic() + 1.0
        probe.started = time.monotonic()
        probe.flood(port, client_context(*self._small), SELF_CLIENT_ID, probe.running)
        self.reference = f"small registered certificate: {1000 * probe.seconds / max(1, probe.ok):.2f} ms each"
        super().start(port, limit)

    def details(self) -> str:
        return getattr(self, "reference", "")


class SessionCache(Attack):
    name = "sessions"
    about = ("TLS 1.2 handshakes presenting a ~96 KB self-signed client certificate, each closed cleanly "
             "(close_notify), no HTTP request: what the server's TLS 1.2 session cache keeps")
    bounded_count = True

    def prepare(self, material: Material) -> str:
        cert, key, size = material.big_cert()
        self._credentials = (cert, key)
        return f"{self.options.sessions} handshakes, certificate of {size} bytes of DER"

    def threads(self) -> int:
        return 2

    def count(self) -> int:
        return int(self.options.sessions)

    def worker(self, port: int) -> None:
        context = client_context(*self._credentials, max_version=ssl.TLSVersion.TLSv1_2)
        while self.claim():
            start = time.monotonic()
            try:
                with socket.create_connection((HOST, port), timeout=10) as raw:
                    sock = context.wrap_socket(raw)
                    version = sock.version() or "?"
                    try:
                        sock.unwrap()  # close_notify both ways: a clean close keeps the session cached
                        clean = "clean close"
                    except (OSError, ValueError):
                        clean = "unclean close"
                self.record(time.monotonic() - start, True, f"{version} {clean}")
            except OSError as exc:
                self.record(0.0, False, "handshake-error", exc)


class CertCache(Attack):
    name = "certcache"
    about = ("distinct self-signed ~15 KB certificates (SANs; one key, serial and CN vary), each on a new TLS "
             "connection with one /token request (client_id=abuse-unknown, not registered)")
    bounded_count = True

    def prepare(self, material: Material) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        start = time.monotonic()
        key = ec.generate_private_key(ec.SECP256R1())
        self._key = write_key(material.directory / "certcache.key", key)
        first, more = stuffed_self_signed(key, CACHEABLE_CERT_BYTES, "cache")
        self._ders = [first.public_bytes(serialization.Encoding.DER)]
        self._ders += [more(f"cache-{i:06d}", i + 1).public_bytes(serialization.Encoding.DER)
                       for i in range(1, int(self.options.certs))]
        self._directory = material.directory
        self._next = 0
        return (f"{len(self._ders)} certificates of {len(self._ders[0])} bytes of DER, made in "
                f"{time.monotonic() - start:.1f} s")

    def threads(self) -> int:
        return 2

    def count(self) -> int:
        return len(self._ders)

    def worker(self, port: int) -> None:
        cert_file = self._directory / f"certcache-{threading.get_ident()}.crt"
        while self.claim():
            with self._lock:
                der, self._next = self._ders[self._next], self._next + 1
            cert_file.write_text(ssl.DER_cert_to_PEM_cert(der))
            start = time.monotonic()
            try:
                context = client_context(cert_file, self._key)
                with socket.create_connection((HOST, port), timeout=10) as raw, context.wrap_socket(raw) as sock:
                    status, _ = HTTPConnection(sock).token("abuse-unknown")
                self.record(time.monotonic() - start, True, str(status))
            except (OSError, ValueError) as exc:
                self.record(0.0, False, "connection-error", exc)


class Idle(Attack):
    name = "idle"
    about = ("TCP connections that never send a byte (no TLS ClientHello), held open; the attacker notes when "
             "the server closes them")

    def prepare(self, material: Material) -> str:
        hold = f", held at least {self.options.idle_hold:g} s" if self.options.idle_hold else ""
        return f"{self.options.idle} connections{hold}"

    def worker(self, port: int) -> None:
        selector = selectors.DefaultSelector()
        opened_at: dict[int, float] = {}
        self.closed_after: list[float] = []
        try:
            for _ in range(int(self.options.idle)):
                if not self.running():
                    break
                try:
                    sock = socket.create_connection((HOST, port), timeout=5)
                except OSError as exc:
                    self.record(0.0, False, "connect-error", exc)
                    continue
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
                opened_at[sock.fileno()] = time.monotonic()
                self.record(0.0, True)
            self.all_open = time.monotonic()
            while self.running() and selector.get_map():
                for key, _ in selector.select(0.2):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        self.closed_after.append(time.monotonic() - opened_at[sock.fileno()])
                        selector.unregister(sock)
                        sock.close()
        finally:
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
            selector.close()

    def ready(self) -> None:
        deadline = time.monotonic() + 30
        while not hasattr(self, "all_open") and time.monotonic() < deadline and self._threads[0].is_alive():
            time.sleep(0.05)

    def finish(self) -> None:
        hold_until = self.started + float(self.options.idle_hold)
        while time.monotonic() < min(hold_until, self.deadline) and self._threads[0].is_alive():
            time.sleep(0.2)

    def details(self) -> str:
        closed = sorted(getattr(self, "closed_after", []))
        held = time.monotonic() - self.started
        if not closed:
            return f"none closed by the server within {held:.0f} s"
        return (f"{len(closed)} closed by the server, after {closed[0]:.1f}-{closed[-1]:.1f} s "
                f"(attack {held:.0f} s)")

    def summary(self) -> str:
        text = f"{self.ok} opened, {self.failed} failed"
        if self.first_error:
            text += f" (first error: {self.first_error})"
        return f"{text}; {self.details()}"


ATTACKS: dict[str, type[Attack]] = {a.name: a for a in (DHEat, Bomb, SessionCache, CertCache, BigCert, Idle)}


# ---------------------------------------------------------------- the legitimate client and the server

def build_loadgen(peer_dir: Path) -> Path:
    source = peer_dir / "loadgen.c"
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= source.stat().st_mtime:
        return LOADGEN
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", str(LOADGEN), str(source), "-lssl", "-lcrypto", "-lpthread"], check=True)
    return LOADGEN


def wait_for_quiet(max_wait: float, busy_pct: float = 25.0) -> None:
    """Wait (up to max_wait s) until the whole box is less than busy_pct busy."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = machine_busy()
        time.sleep(1.0)
        b1, t1 = machine_busy()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0)
        if busy < busy_pct or time.monotonic() > deadline:
            print(f"  box {busy:.0f}% busy (all cores) before measuring"
                  + ("" if busy < busy_pct else f" (gave up waiting after {max_wait:g} s)"), flush=True)
            return


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB; empty once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS", "VmHWM"))}
    except OSError:
        return {}


RUNNING: list[subprocess.Popen[Any]] = []


def measure(loadgen: Path, port: int, pid: int, mode: str, material: Material, options: argparse.Namespace,
            attacker_cpu: Callable[[], float] = lambda: 0.0) -> dict[str, Any]:
    """One run of the legitimate client; its figures, the server's CPU and the box's other load."""
    cert, key = material.client if options.client == "pki" else material.selfsigned
    client_id = PKI_CLIENT_ID if options.client == "pki" else SELF_CLIENT_ID
    args = [str(loadgen), "-u", f"https://{HOST}:{port}/token", "--cert", str(cert), "--key", str(key),
            "--cacert", str(material.ca_file), "-b", f"grant_type=client_credentials&client_id={client_id}",
            "--expect", '"access_token"', "-m", mode, "-c", str(options.conns), "-t", "1",
            "-d", str(options.duration), "-w", str(options.warmup), "--timeout", str(options.timeout), "--json"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    RUNNING.append(process)
    try:
        time.sleep(options.warmup)
        ticks0, busy0, wall0, attacker0 = cpu_ticks(pid), machine_busy(), time.monotonic(), attacker_cpu()
        out, err = process.communicate(timeout=options.warmup + options.duration + options.timeout + 30)
        ticks1, busy1, wall1, attacker1 = cpu_ticks(pid), machine_busy(), time.monotonic(), attacker_cpu()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        RUNNING.remove(process)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no result ({process.returncode}): {err}\n{out}")
    result: dict[str, Any] = json.loads(lines[-1])
    wall = wall1 - wall0
    result["server_cpu_pct"] = 100.0 * (ticks1 - ticks0) / HZ / wall
    result["attacker_cpu_pct"] = 100.0 * (attacker1 - attacker0) / wall
    machine = 100.0 * (os.cpu_count() or 1) * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    result["foreign_cpu_pct"] = max(0.0, machine - result["server_cpu_pct"] - result["loadgen_cpu_pct"]
                                    - result["attacker_cpu_pct"])
    first_error = next((line.split(":", 1)[1].strip() for line in out.splitlines() if "first error" in line), "")
    result["first_error"] = first_error
    result["window"] = (wall0, wall1)
    return result


def line(mode: str, result: dict[str, Any], label: str) -> str:
    p99 = f"{result['p99_ms']:.1f}" if result["requests"] else "-"
    return (f"  {label:>14} {mode:>9}: {result['rps']:8.1f} tok/s  p99 {p99:>7} ms  errors {result['errors']}  "
            f"server {result['server_cpu_pct']:.0f}% of a core  attacker {result['attacker_cpu_pct']:.0f}%  "
            f"other load {result['foreign_cpu_pct']:.0f}%"
            + (f"  first error: {result['first_error']}" if result["first_error"] else ""))


@contextlib.contextmanager
def server_for(material: Material, log: Path) -> Iterator[Any]:
    from tests.support.server import start_server

    server = start_server(tls_cert=material.server[0], tls_key=material.server[1], ca_file=material.ca_file,
                          data_dir=material.data_dir, log_path=log, trust_anchors=[material.ca_file],
                          extra_args=["--log-level", "info", "--workers", "1"], timeout=30)
    try:
        yield server
    finally:
        server.stop()


def run_attack(attack: Attack, loadgen: Path, material: Material, options: argparse.Namespace,
               modes: list[str]) -> dict[str, Any]:
    print(f"\n=== {attack.name}: {attack.about}", flush=True)
    log = material.directory / f"server-{attack.name}.log"
    with server_for(material, log) as server:
        pid = server.process.pid
        print(f"  server pid {pid} port {server.port}", flush=True)
        memory: dict[str, dict[str, int]] = {"start": memory_kb(pid)}
        wait_for_quiet(options.quiet_wait)
        base = {}
        for mode in modes:
            base[mode] = measure(loadgen, server.port, pid, mode, material, options)
            print(line(mode, base[mode], "without attack"), flush=True)
        memory["before"] = memory_kb(pid)
        attacker0, wall0 = own_cpu(), time.monotonic()
        limit = options.attack_limit + (options.idle_hold if attack.name == "idle" else 0)
        try:
            attack.start(server.port, limit)
            attack.ready()
            under = {}
            for mode in modes:
                under[mode] = measure(loadgen, server.port, pid, mode, material, options, own_cpu)
                print(line(mode, under[mode], "under attack"), flush=True)
            if not attack.bounded_count:  # right after the windows: idle's hold may outlast its connections
                memory["under"] = memory_kb(pid)
            attack.finish()
            if attack.bounded_count:  # once the whole count was sent
                memory["under"] = memory_kb(pid)
        finally:
            attack.stop()
        attacker_pct = 100.0 * (own_cpu() - attacker0) / (time.monotonic() - wall0)
        for mode in modes:
            under[mode]["attack_coverage"] = attack.coverage(under[mode]["window"])
        summary = attack.summary()
        time.sleep(1.0)  # the server closes what the attacker left
        memory["after"] = memory_kb(pid)
        alive = server.process.poll() is None
    print(f"  attacker: {summary}; its CPU {attacker_pct:.0f}% of a core over the attack", flush=True)
    if not alive:
        print("  THE SERVER EXITED during the attack", flush=True)
    return {"attack": attack.name, "base": base, "under": under, "memory": memory, "attacker": summary,
            "attacker_cpu_pct": attacker_pct, "server_alive": alive}


# ---------------------------------------------------------------- report

def _mb(memory: dict[str, int], key: str = "VmRSS") -> str:
    return f"{memory[key] / 1024:.0f}" if key in memory else "-"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def report(results: list[dict[str, Any]], modes: list[str], options: argparse.Namespace) -> None:
    print(f"\nLegitimate client: {options.client} ({PKI_CLIENT_ID if options.client == 'pki' else SELF_CLIENT_ID}), "
          f"{options.conns} connections, {options.duration:g} s measured after {options.warmup:g} s; "
          "ratio = under attack / without; attack % = share of the measured window during which the attack ran")
    header = (f"{'attack':<10} {'mode':<9} {'tok/s without':>13} {'tok/s under':>11} {'ratio':>7} "
              f"{'p99 ms without':>14} {'p99 ms under':>12} {'p99 x':>7} {'errors w/u':>11} {'srv %core w/u':>13} "
              f"{'attack %':>8}")
    print(header)
    print("-" * len(header))
    for result in results:
        for mode in modes:
            b, u = result["base"][mode], result["under"][mode]
            p99b = b["p99_ms"] if b["requests"] else 0.0
            p99u = u["p99_ms"] if u["requests"] else 0.0
            errors = f"{b['errors']}/{u['errors']}"
            cpu = f"{b['server_cpu_pct']:.0f}/{u['server_cpu_pct']:.0f}"
            cells = [
                f"{result['attack']:<10}", f"{mode:<9}", f"{b['rps']:13.1f}", f"{u['rps']:11.1f}",
                f"{_ratio(u['rps'], b['rps']):>7}", f"{(f'{p99b:.1f}' if p99b else '-'):>14}",
                f"{(f'{p99u:.1f}' if p99u else '-'):>12}", f"{_ratio(p99u, p99b) if p99u else '-':>7}",
                f"{errors:>11}", f"{cpu:>13}", f"{100 * u.get('attack_coverage', 0):8.0f}",
            ]
            print(" ".join(cells))
    print("\nServer memory (MB): VmRSS at start, before the attack (after the unattacked runs), under attack (after "
          "the measured windows; for sessions and certcache once the whole count was sent), 1 s after the attack "
          "stopped (idle: after --idle-hold); growth = after - before; VmHWM = peak")
    header = f"{'attack':<10} {'start':>6} {'before':>7} {'under':>6} {'after':>6} {'growth':>7} {'VmHWM':>6}"
    print(header)
    print("-" * len(header))
    for result in results:
        m = result["memory"]
        growth = (f"{round((m['after']['VmRSS'] - m['before']['VmRSS']) / 1024):+d}"
                  if "VmRSS" in m["after"] and "VmRSS" in m["before"] else "-")
        print(f"{result['attack']:<10} {_mb(m['start']):>6} {_mb(m['before']):>7} {_mb(m['under']):>6} "
              f"{_mb(m['after']):>6} {growth:>7} {_mb(m['after'] or m['under'], 'VmHWM'):>6}"
              + ("" if result["server_alive"] else "  server exited"))
    print("\nAttacker (this process):")
    for result in results:
        print(f"  {result['attack']:<10} {result['attacker']}; {result['attacker_cpu_pct']:.0f}% of a core")
    foreign = max((r[w][m]["foreign_cpu_pct"] for r in results for w in ("base", "under") for m in modes), default=0)
    print(f"\nOther processes on the box used up to {foreign:.0f}% of a core during a measurement "
          "(figures from a shared 2-core machine are noisy).")


# ---------------------------------------------------------------- main

def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--attack", default=",".join(ATTACKS), help="comma-separated attacks, in order")
    parser.add_argument("--list", action="store_true", help="describe the attacks and exit")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 s windows, 1 s warm-up, smaller counts (explicit options win)")
    parser.add_argument("--modes", default="keepalive,handshake",
                        help="legitimate client: keepalive and/or handshake (a new TLS connection per token)")
    parser.add_argument("--client", choices=["pki", "selfsigned"], default="pki", help="legitimate client")
    parser.add_argument("--duration", type=float, help="measured seconds per run [10; quick 3]")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring [2; quick 1]")
    parser.add_argument("--conns", type=int, default=16, help="legitimate client's connections")
    parser.add_argument("--quiet-wait", type=float,
                        help="before each attack's unattacked runs, wait up to this long for an idle box, s "
                             "[30; quick 0]")
    parser.add_argument("--timeout", type=int, default=10, help="legitimate client's per-request timeout, s")
    parser.add_argument("--attack-limit", type=float,
                        help="hard limit on one attack's duration, s [modes x (warmup + duration + 5) + 300]")
    parser.add_argument("--dheat-threads", type=int, default=2, help="dheat: attacker threads")
    parser.add_argument("--dheat-inflight", type=int, default=1,
                        help="dheat: connections each thread keeps waiting for the server's answer")
    parser.add_argument("--bomb-conns", type=int, default=1, help="bomb: keep-alive connections")
    parser.add_argument("--sessions", type=int, help="sessions: TLS 1.2 handshakes [2000; quick 400]")
    parser.add_argument("--certs", type=int, help="certcache: distinct certificates [4500; quick 600]")
    parser.add_argument("--idle", type=int, help="idle: connections [1000; quick 500]")
    parser.add_argument("--idle-hold", type=float,
                        help="idle: hold the connections at least this long, s (uvloop closes them at 60) "
                             "[70; quick 0]")
    parser.add_argument("--peer-dir", type=Path, default=Path(os.environ.get("PEER_DIR", REPO.parent / "shared" /
                                                                            "bench" / "peer")),
                        help="where loadgen.c is (env PEER_DIR)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (PKI, server logs)")
    options = parser.parse_args()
    quick = options.quick
    defaults = {"duration": (10.0, 3.0), "warmup": (2.0, 1.0), "sessions": (2000, 400), "certs": (4500, 600),
                "idle": (1000, 500), "idle_hold": (70.0, 0.0), "quiet_wait": (30.0, 0.0)}  # (full, quick)
    for name, (full, small) in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, small if quick else full)
    if options.list:
        for attack in ATTACKS.values():
            print(f"{attack.name:<10} {attack.about}")
        return 0
    names = [n.strip() for n in options.attack.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    modes = [m.strip() for m in options.modes.split(",") if m.strip()]
    if not modes or any(m not in ("keepalive", "handshake") for m in modes):
        parser.error("--modes: keepalive and/or handshake")
    if options.attack_limit is None:
        # Only counted attacks (sessions, certcache) can run that long: the others stop after the windows.
        options.attack_limit = len(modes) * (options.warmup + options.duration + 5) + 300

    # Ctrl-C and SIGTERM both unwind through the finally blocks (server, loadgen, attackers).
    signal.signal(signal.SIGTERM, _interrupt)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # idle holds thousands of sockets; the server inherits the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    loadgen = build_loadgen(options.peer_dir)
    tmp = Path(tempfile.mkdtemp(prefix="authz-abuse-bench-"))
    results: list[dict[str, Any]] = []
    try:
        start = time.monotonic()
        material = make_material(tmp)
        attacks = [ATTACKS[name](options) for name in names]
        for attack in attacks:  # everything the attacker sends is made before any measurement
            print(f"prepared {attack.name}: {attack.prepare(material)}", flush=True)
        print(f"PKI, clients and attack material ready in {time.monotonic() - start:.1f} s (in {tmp})", flush=True)
        for attack in attacks:
            results.append(run_attack(attack, loadgen, material, options, modes))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    finally:
        for process in list(RUNNING):
            process.kill()
        if results:
            report(results, modes, options)
            out = REPO / "tests" / "bench" / "results"
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"abuse-{time.strftime('%Y%m%d-%H%M%S')}.json"
            path.write_text(json.dumps({"options": {k: str(v) for k, v in vars(options).items()},
                                        "results": results}, indent=1))
            print(f"results: {path.relative_to(REPO)}")
        if options.keep_tmp:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
