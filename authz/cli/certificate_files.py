"""Certificate files given on the command line (PEM or DER, one certificate each)."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509

__all__ = ["ca_pin", "certificate_lines", "read_certificates"]


def ca_pin(path: Path) -> str:
    """The CA pin of a tls_client_auth client (tls_client_auth_ca_spki_sha256): the SHA-256, in
    hex, of the SubjectPublicKeyInfo of the CA certificate in ``path``, which must be a CA."""
    from authz.certificates.path import spki_sha256

    [certificate] = read_certificates((path,), option="--pin-ca")
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise click.BadParameter(f"{path} is not a CA certificate (no basicConstraints CA:TRUE): pin the trust "
                                 "anchor or the intermediate that issues the client's certificates",
                                 param_hint="--pin-ca")
    return spki_sha256(certificate).hex()


def read_certificates(paths: tuple[Path, ...], option: str = "--cert") -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        data = path.read_bytes()
        try:
            found = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                x509.load_der_x509_certificate(data)
            ]
        except ValueError as exc:
            # cryptography's message for DER is its parser's ("ShortData", "MalformedFraming"):
            # say what the file is instead, and keep the parser's words for the curious.
            what = "empty" if not data.strip() else (
                "a private key, not a certificate" if b"PRIVATE KEY-----" in data else "not a PEM or DER certificate")
            raise click.BadParameter(f"{path} is {what} ({exc})", param_hint=option) from exc
        if len(found) != 1:
            raise click.BadParameter(f"{path} holds {len(found)} certificates; give one per {option}",
                                     param_hint=option)
        certificates.append(found[0])
    return certificates


def certificate_lines(ders: frozenset[bytes] | list[bytes]) -> list[str]:
    """One line per registered certificate: its thumbprint as in ``cnf`` (x5t#S256,
    base64url) and in hex, its subject and validity, and how long it has left."""
    import datetime
    import hashlib

    from authz.certificates.thumbprint import x5t_s256

    now = datetime.datetime.now(datetime.UTC)
    lines = []
    for der in sorted(ders):
        certificate = x509.load_der_x509_certificate(der)
        not_after = certificate.not_valid_after_utc
        left = not_after - now
        state = "EXPIRED" if left.total_seconds() <= 0 else f"expires in {left.days} days"
        if certificate.not_valid_before_utc > now:
            state = "NOT YET VALID"
        lines.append(f"certificate x5t#S256={x5t_s256(der)} sha256={hashlib.sha256(der).hexdigest()} "
                     f"subject={certificate.subject.rfc4514_string()!r} "
                     f"valid {certificate.not_valid_before_utc:%Y-%m-%d} .. {not_after:%Y-%m-%d} ({state})")
    return lines
