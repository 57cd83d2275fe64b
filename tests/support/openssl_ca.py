"""A CA run with the openssl command line, as many private PKIs are: ``openssl ca`` issues and
revokes certificates, ``openssl ca -gencrl`` publishes CRLs, ``openssl ocsp`` answers OCSP
requests from the same database (index.txt). Keys are EC P-256, made per test session.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.debian import require_command
from tests.support.server import free_port

__all__ = ["OCSPResponder", "OpenSSLCA"]

_CONFIG = """\
[ ca ]
default_ca = ca_section

[ ca_section ]
dir = {directory}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_days = 30
default_crl_days = 1
policy = any_subject
unique_subject = no
copy_extensions = none
crl_extensions = crl_extensions

[ any_subject ]
commonName = supplied
organizationName = optional

[ crl_extensions ]
authorityKeyIdentifier = keyid:always
"""


def _openssl(*args: str, cwd: Path | None = None) -> str:
    command = [require_command("openssl", "openssl"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def _extensions(*, ca: bool, crl_url: str | None, ocsp_url: str | None) -> str:
    lines = ["[ ext ]", "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid"]
    if ca:
        lines += ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign"]
    else:
        lines += ["basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature",
                  "extendedKeyUsage = clientAuth"]
    if crl_url:
        lines.append(f"crlDistributionPoints = URI:{crl_url}")
    if ocsp_url:
        lines.append(f"authorityInfoAccess = OCSP;URI:{ocsp_url}")
    return "\n".join(lines) + "\n"


def _subject(rfc4514: str) -> str:
    """``CN=a,O=b`` (RFC 4514, most significant last) as openssl's ``-subj`` (``/O=b/CN=a``)."""
    return "/" + "/".join(reversed([part.strip() for part in rfc4514.split(",")]))


class OpenSSLCA:
    """A CA directory: ``ca.crt``, ``ca.key``, its database and its configuration."""

    def __init__(self, directory: Path, subject: str, *, parent: OpenSSLCA | None = None,
                 crl_url: str | None = None, ocsp_url: str | None = None) -> None:
        """A root (self-signed) or, with ``parent``, an intermediate issued by it, whose own
        certificate names ``crl_url`` and ``ocsp_url`` (where the parent publishes)."""
        self.directory = directory
        self.subject = subject
        self.parent = parent
        (directory / "issued").mkdir(parents=True)
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        (directory / "crlnumber").write_text("01\n")
        self.config = directory / "openssl.cnf"
        self.config.write_text(_CONFIG.format(directory=directory))
        self.cert, self.key = directory / "ca.crt", directory / "ca.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(self.key))
        if parent is None:
            _openssl("req", "-x509", "-new", "-key", str(self.key), "-subj", _subject(subject), "-days", "365",
                     "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash",
                     "-out", str(self.cert))
        else:
            parent._sign(directory / "ca.csr", self.key, subject, self.cert, ca=True, crl_url=crl_url,
                         ocsp_url=ocsp_url)

    @property
    def chain(self) -> list[Path]:
        """This CA's certificate and its parents' but the root's (what a client sends)."""
        if self.parent is None:
            return []
        return [self.cert, *self.parent.chain]

    def issue(self, name: str, subject: str, *, crl_url: str | None = None,
              ocsp_url: str | None = None) -> tuple[Path, Path]:
        """A client certificate: ``name.crt`` (the leaf and this CA's chain, as a client sends
        it) and ``name.key``, in this CA's directory."""
        key = self.directory / f"{name}.key"
        leaf = self.directory / f"{name}.leaf.crt"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
        self._sign(self.directory / f"{name}.csr", key, subject, leaf, ca=False, crl_url=crl_url, ocsp_url=ocsp_url)
        bundle = self.directory / f"{name}.crt"
        bundle.write_bytes(b"".join(p.read_bytes() for p in [leaf, *self.chain]))
        return bundle, key

    def _sign(self, csr: Path, key: Path, subject: str, out: Path, *, ca: bool, crl_url: str | None,
              ocsp_url: str | None) -> None:
        _openssl("req", "-new", "-key", str(key), "-subj", _subject(subject), "-out", str(csr))
        extensions = csr.with_suffix(".ext")
        extensions.write_text(_extensions(ca=ca, crl_url=crl_url, ocsp_url=ocsp_url))
        # -preserveDN: the subject as requested (RDN order too), not rebuilt in the policy's order
        # (the config file's "preserve" did not take with OpenSSL 3.0).
        _openssl("ca", "-config", str(self.config), "-batch", "-notext", "-preserveDN", "-in", str(csr),
                 "-out", str(out), "-extfile", str(extensions), "-extensions", "ext")

    def revoke(self, certificate: Path, reason: str = "keyCompromise") -> None:
        leaf = certificate.with_suffix(".leaf.crt") if certificate.with_suffix(".leaf.crt").exists() else certificate
        _openssl("ca", "-config", str(self.config), "-revoke", str(leaf), "-crl_reason", reason)

    def gencrl(self, out: Path, *, der: bool = False, last_update: str | None = None,
               next_update: str | None = None) -> Path:
        """``openssl ca -gencrl`` (valid for a day, or between the given YYYYMMDDHHMMSSZ times),
        written to ``out`` (PEM, or DER), atomically: a watcher never reads half a file."""
        pem = out.with_name(out.name + ".pem.tmp")
        args = ["ca", "-config", str(self.config), "-gencrl", "-out", str(pem)]
        if last_update:
            args += ["-crl_lastupdate", last_update]
        if next_update:
            args += ["-crl_nextupdate", next_update]
        _openssl(*args)
        if der:
            converted = out.with_name(out.name + ".der.tmp")
            _openssl("crl", "-in", str(pem), "-outform", "DER", "-out", str(converted))
            pem.unlink()
            pem = converted
        pem.replace(out)
        return out

    def ocsp_responder(self, port: int, log: Path) -> OCSPResponder:
        return OCSPResponder(self, port, log)


class OCSPResponder:
    """``openssl ocsp`` answering from the CA's index, signed by the CA itself, nextUpdate in 5
    minutes."""

    def __init__(self, ca: OpenSSLCA, port: int, log: Path) -> None:
        command: Sequence[str] = [
            require_command("openssl", "openssl"), "ocsp", "-index", str(ca.directory / "index.txt"),
            "-port", str(port), "-rsigner", str(ca.cert), "-rkey", str(ca.key), "-CA", str(ca.cert),
            "-nmin", "5", "-ignore_err",
        ]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        with log.open("wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        self._wait_listening(log)

    def _wait_listening(self, log: Path) -> None:
        # From its log, not by connecting: OpenSSL 3.0's responder hangs after a connection
        # that closes without a request (every later request then times out).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited with {self.process.returncode}: {log.read_text()}")
            if "waiting for OCSP client connections" in log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"openssl ocsp did not listen within 15 s: {log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def unused_port() -> int:
    """A loopback port nothing listens on (a responder or distribution point that is down)."""
    return free_port()
