"""Certificate files given on the command line (PEM or DER, one certificate each)."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509

__all__ = ["read_certificates"]


def read_certificates(paths: tuple[Path, ...]) -> list[x509.Certificate]:
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
            raise click.BadParameter(f"{path} is {what} ({exc})", param_hint="--cert") from exc
        if len(found) != 1:
            raise click.BadParameter(f"{path} holds {len(found)} certificates; give one per --cert",
                                     param_hint="--cert")
        certificates.append(found[0])
    return certificates
