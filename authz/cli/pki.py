"""``authz pki``: development certificates."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authz.certificates.thumbprint import x5t_s256
from authz.pki.development import PKI_CLIENT_DN, SELF_SIGNED_CLIENT_DN, create_development_pki

__all__ = ["pki"]


@click.group()
def pki() -> None:
    """Development PKI (never for production)."""


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing PKI in DIRECTORY.")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650))
def init(directory: Path, force: bool, days: int) -> None:
    """Create a CA, a server certificate (localhost, 127.0.0.1, ::1), a CA-issued client
    certificate and a self-signed client certificate in DIRECTORY."""
    if (directory / "ca.crt").exists() and not force:
        raise click.ClickException(f"{directory} already holds a PKI; pass --force to replace it")
    created = create_development_pki(directory, days=days)
    click.secho(
        "WARNING: development PKI. Its private keys are unencrypted files; never use them in production.",
        fg="yellow", err=True,
    )
    for label, path, dn in (
        ("PKI client", created.client_cert, PKI_CLIENT_DN),
        ("self-signed client", created.self_signed_cert, SELF_SIGNED_CLIENT_DN),
    ):
        der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
        click.echo(f"{label:<20} {path}  subject {dn}  x5t#S256 {x5t_s256(der)}")
    click.echo(f"{'CA (trust anchor)':<20} {created.ca_cert}")
    click.echo(f"{'server':<20} {created.server_cert} / {created.server_key}")
