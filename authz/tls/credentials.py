"""The server's certificate and key, reloadable without a restart (``authz.reload``).

uvicorn builds a worker's TLS context once (``uvicorn_ssl_context_factory``) and hands it to
the loop's ``create_server``. The factory records here which files that context came from
(``ServerCredentials``); the listener (``authz.tls.listener``) then asks the credentials for
the current context at every accepted connection. A reload builds a whole new context from
the files and swaps it in: connections already set up keep the ``SSLObject`` of the old
context, and with it its certificate, so none is dropped.

Before the swap, the new files must be what a start-up would accept, and more precisely named:
a PEM certificate, a PEM private key that is this certificate's key, and a context that passes
the TLS self-test (``configure_for_mtls``). Anything else is ``ReloadRefused`` with the file.

With ``--advertise-ca-names`` the trust anchor files are inputs of the context too (the
CertificateRequest names their subjects, ``authz.tls.ca_names``): when they change, the
context is rebuilt the same way, so new handshakes advertise the new anchors.
"""

from __future__ import annotations

import hashlib
import ssl
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from authz.reload import PreparedChange, Reloader, ReloadRefused, reload_hooks
from authz.tls.ca_names import distinct_subjects
from authz.tls.resumption import ResumptionConfig, resumption_of

__all__ = ["ServerCredentials", "certificate_summary", "credentials_of", "register_credentials"]


def certificate_summary(certificate: x509.Certificate) -> dict[str, Any]:
    """What identifies a server certificate in log lines."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }


@dataclass(frozen=True)
class _Loaded:
    context: ssl.SSLContext
    digest: bytes  # of both files' bytes: an unchanged pair is not rebuilt
    summary: dict[str, Any]


class ServerCredentials:
    """A certificate file and a key file (and, with ``--advertise-ca-names``, the files of the
    CAs it names), and the TLS context currently built from them."""

    def __init__(self, certfile: Path | str, keyfile: Path | str | None, context: ssl.SSLContext,
                 ca_name_files: Sequence[Path | str] = ()) -> None:
        self.certfile = Path(certfile)
        self.keyfile = Path(keyfile) if keyfile is not None else None
        self.ca_name_files = tuple(Path(file) for file in ca_name_files)
        self._context = context
        # Of the files the context was built from, as far as we can tell: uvicorn read them
        # just before. A reload with every file unchanged then rebuilds nothing.
        try:
            self._digest = _digest(self.certfile.read_bytes(),
                                   self.keyfile.read_bytes() if self.keyfile is not None else b"",
                                   [file.read_bytes() for file in self.ca_name_files])
        except OSError:
            self._digest = b""

    @property
    def context(self) -> ssl.SSLContext:
        """The context for new connections."""
        return self._context

    def prepare(self) -> PreparedChange | None:
        """A reload hook (``authz.reload``): load and validate the files, build and self-test
        their context; None when neither file changed since the last load."""
        # The new context resumes sessions as the one it replaces (a new ticket key: tickets
        # issued before the reload get a full handshake).
        loaded = load_credentials(self.certfile, self.keyfile, self.ca_name_files, unless_digest=self._digest,
                                  resumption_config=resumption_of(self._context))
        if loaded is None:
            return None

        def commit() -> None:
            self._context = loaded.context
            self._digest = loaded.digest

        return PreparedChange(commit, loaded.summary)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReloadRefused(path, f"cannot read the {what}: {exc.strerror or exc}") from exc


def load_credentials(certfile: Path, keyfile: Path | None, ca_name_files: Sequence[Path] = (), *,
                     unless_digest: bytes = b"", resumption_config: ResumptionConfig | None = None) -> _Loaded | None:
    """Validate a certificate and key pair and build its server context, advertising the
    subjects of the certificates in ``ca_name_files`` and resuming sessions as
    ``resumption_config`` says; ``ReloadRefused`` naming the file. None when the files' bytes
    hash to ``unless_digest``."""
    # Imported here: authz.tls.context imports this module for its uvicorn factory.
    from authz.tls.context import ServerTLSError, build_server_context

    cert_bytes = _read(certfile, "certificate")
    key_bytes = _read(keyfile, "private key") if keyfile is not None else b""
    ca_bytes = [_read(file, "trust anchors") for file in ca_name_files]
    digest = _digest(cert_bytes, key_bytes, ca_bytes)
    if digest == unless_digest:
        return None
    ca_names = _ca_names(ca_name_files, ca_bytes)
    try:
        chain = x509.load_pem_x509_certificates(cert_bytes)
    except ValueError as exc:
        raise ReloadRefused(certfile, f"not a PEM certificate ({exc})") from exc
    key = _private_key(keyfile, key_bytes) if keyfile is not None else _private_key(certfile, cert_bytes)
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise ReloadRefused(keyfile or certfile, f"the private key does not match the certificate in {certfile} "
                            f"({leaf.subject.rfc4514_string()}, serial {leaf.serial_number:x})")
    try:
        context = build_server_context(str(certfile), str(keyfile) if keyfile is not None else None, ca_names,
                                       resumption_config=resumption_config)
    except (ssl.SSLError, OSError) as exc:
        raise ReloadRefused(certfile, f"OpenSSL refused the certificate and key: {exc}") from exc
    except ServerTLSError as exc:
        raise ReloadRefused(certfile, str(exc)) from exc
    summary = certificate_summary(leaf)
    if ca_name_files:
        summary["ca_names_advertised"] = len(ca_names)
    return _Loaded(context, digest, summary)


def _ca_names(files: Sequence[Path], contents: list[bytes]) -> list[x509.Name]:
    certificates: list[x509.Certificate] = []
    for file, data in zip(files, contents, strict=True):
        try:
            certificates.extend(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise ReloadRefused(file, f"the trust anchor file holds no PEM certificate ({exc})") from exc
    return distinct_subjects(certificates)


def _digest(cert_bytes: bytes, key_bytes: bytes, ca_bytes: Sequence[bytes] = ()) -> bytes:
    parts = [cert_bytes, key_bytes, *ca_bytes]
    return hashlib.sha256(b"".join(hashlib.sha256(part).digest() for part in parts)).digest()


def _private_key(path: Path, data: bytes) -> PrivateKeyTypes:
    if b"PRIVATE KEY-----" not in data:
        what = "empty" if not data.strip() else (
            "a certificate, not a private key" if b"CERTIFICATE-----" in data else "not a PEM private key")
        raise ReloadRefused(path, f"the key file is {what}")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted: the server could not be started with it either
        raise ReloadRefused(path, "the private key is encrypted; the server needs it unencrypted") from exc
    except ValueError as exc:
        raise ReloadRefused(path, f"the private key cannot be parsed ({exc})") from exc


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


# Context built by the uvicorn factory -> the credentials it came from. Weak: a context no
# server uses any more (tests build many) takes its entry with it.
_CREDENTIALS: weakref.WeakKeyDictionary[ssl.SSLContext, ServerCredentials] = weakref.WeakKeyDictionary()


def register_credentials(context: ssl.SSLContext, certfile: str, keyfile: str | None,
                         reloader: Reloader = reload_hooks, *,
                         ca_name_files: Sequence[Path | str] = ()) -> ServerCredentials:
    """Record that ``context`` was built from these files, and reload them on ``SIGHUP`` (or
    when they change, with ``--watch-files``)."""
    credentials = ServerCredentials(certfile, keyfile, context, ca_name_files)
    _CREDENTIALS[context] = credentials
    files = [certfile, *([keyfile] if keyfile is not None else []), *ca_name_files]
    reloader.register("server_certificate", credentials.prepare, files=files)
    return credentials


def credentials_of(context: ssl.SSLContext | None) -> ServerCredentials | None:
    """The reloadable credentials ``context`` was built from, if the factory recorded them."""
    return None if context is None else _CREDENTIALS.get(context)
