"""``authz clients update``: change part of a registration, keeping the rest.

``clients add --replace`` replaces the whole registration (an option left out is gone, as with
RFC 7592's PUT); ``update`` reads the registration, applies the changes asked for, validates the
result as any registration, and writes it back.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import click

from authz.cli.certificate_files import ca_pin, read_certificates
from authz.cli.clients import cert_for_tls_client_auth, echo_warnings, subject_for_self_signed
from authz.cli.options import cli_actor, store_option, with_store
from authz.clients.directory import ClientDirectory
from authz.clients.model import CA_PIN_PARAMETER, InvalidClientMetadata, RegisteredClient, jwk_for_certificate
from authz.clients.review import review_registration
from authz.storage.base import CorruptRecord, RecordStore
from authz.storage.config import StoreConfig

__all__ = ["update"]

_SUBJECTS = {"subject_dn": "tls_client_auth_subject_dn", "san_dns": "tls_client_auth_san_dns",
             "san_uri": "tls_client_auth_san_uri", "san_ip": "tls_client_auth_san_ip",
             "san_email": "tls_client_auth_san_email"}
_CERT = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("update")
@click.argument("client_id")
@click.option("--scope", help="Replace the scopes (space-separated).")
@click.option("--add-scope", "add_scopes", multiple=True, metavar="SCOPE", help="Add a scope, repeatable.")
@click.option("--remove-scope", "remove_scopes", multiple=True, metavar="SCOPE", help="Remove a scope, repeatable.")
@click.option("--add-cert", "add_certs", multiple=True, type=_CERT,
              help="Register one more certificate (self_signed_tls_client_auth: rotation), repeatable.")
@click.option("--remove-cert", "remove_certs", multiple=True, metavar="FILE_OR_X5T",
              help="Unregister a certificate, by its file or its x5t#S256 thumbprint, repeatable.")
@click.option("--add-resource", "add_resources", multiple=True, metavar="URI", help="Allow a resource server.")
@click.option("--remove-resource", "remove_resources", multiple=True, metavar="URI", help="Disallow one.")
@click.option("--subject-dn", help="Replace the registered subject by this DN (tls_client_auth).")
@click.option("--san-dns", help="... by this dNSName SAN.")
@click.option("--san-uri", help="... by this URI SAN.")
@click.option("--san-ip", help="... by this iPAddress SAN.")
@click.option("--san-email", help="... by this rfc822Name SAN.")
@click.option("--bound-tokens/--unbound-tokens", default=None,
              help="Certificate-bound access tokens (cnf) or not.")
@click.option("--pin-ca", type=_CERT, help="Pin the client to this CA certificate (tls_client_auth).")
@click.option("--no-pin-ca", is_flag=True, help="Remove the client's CA pin.")
@click.option("--refuse-expired", is_flag=True,
              help="Refuse the change if a registered certificate has expired (otherwise a warning).")
@store_option
def update(client_id: str, scope: str | None, add_scopes: tuple[str, ...], remove_scopes: tuple[str, ...],
           add_certs: tuple[Path, ...], remove_certs: tuple[str, ...], add_resources: tuple[str, ...],
           remove_resources: tuple[str, ...], bound_tokens: bool | None, pin_ca: Path | None, no_pin_ca: bool,
           refuse_expired: bool, store: StoreConfig, **subjects: str | None) -> None:
    """Change part of CLIENT_ID's registration; everything not named stays as it is."""
    if pin_ca is not None and no_pin_ca:
        raise click.UsageError("give --pin-ca or --no-pin-ca, not both")
    pin = ca_pin(pin_ca) if pin_ca is not None else None
    given = {_SUBJECTS[k]: v for k, v in subjects.items() if v is not None}
    if len(given) > 1:
        raise click.UsageError("give at most one of --subject-dn, --san-dns, --san-uri, --san-ip, --san-email")
    if scope is not None and (add_scopes or remove_scopes):
        raise click.UsageError("--scope replaces the scopes: do not combine it with --add-scope/--remove-scope")

    def change(metadata: dict[str, Any]) -> dict[str, Any]:
        changed = dict(metadata)
        scopes = (scope or "").split() if scope is not None else changed.get("scope", "").split()
        scopes = [s for s in dict.fromkeys([*scopes, *add_scopes]) if s not in remove_scopes]
        changed["scope"] = " ".join(scopes)
        resources = [r for r in dict.fromkeys([*changed.get("allowed_resources", []), *add_resources])
                     if r not in remove_resources]
        if resources:
            changed["allowed_resources"] = resources
        else:
            changed.pop("allowed_resources", None)
        if given:
            for name in _SUBJECTS.values():
                changed.pop(name, None)
            changed.update(given)
        if bound_tokens is not None:
            changed["tls_client_certificate_bound_access_tokens"] = bound_tokens
        if pin is not None:
            changed[CA_PIN_PARAMETER] = pin
        elif no_pin_ca:
            changed.pop(CA_PIN_PARAMETER, None)
        if add_certs or remove_certs:
            changed["jwks"] = {"keys": _certificates(changed, add_certs, remove_certs)}
        return changed

    async def run(records: RecordStore) -> list[str]:
        directory = ClientDirectory(records)
        try:
            current = await directory.metadata(client_id)
        except CorruptRecord as exc:
            raise click.ClickException(f"{exc}: repair or remove it (authz clients remove {client_id})") from exc
        if current is None:
            raise click.ClickException(f"no client {client_id!r}")
        _check_options_fit(current.get("token_endpoint_auth_method"), given, add_certs, remove_certs)
        changed = change(current)
        try:
            warnings = review_registration(RegisteredClient.from_metadata(changed), refuse_expired=refuse_expired)
            await directory.register(changed, replace=True, actor=cli_actor())
        except InvalidClientMetadata as exc:
            raise click.ClickException(f"invalid client metadata after the change: {exc}") from exc
        return warnings

    warnings = with_store(store, run)
    click.echo(f"updated {client_id}")
    echo_warnings(warnings)


def _check_options_fit(method: Any, subjects: dict[str, str], add_certs: tuple[Path, ...],
                       remove_certs: tuple[str, ...]) -> None:
    """Options of the other method: say which method they belong to (an update does not
    change the method; ``clients add --replace`` does)."""
    if method == "tls_client_auth" and (add_certs or remove_certs):
        raise click.UsageError(cert_for_tls_client_auth(add_certs, "--add-cert" if add_certs else "--remove-cert"))
    if method == "self_signed_tls_client_auth" and subjects:
        raise click.UsageError(subject_for_self_signed(subjects))


def _certificates(metadata: dict[str, Any], add: tuple[Path, ...], remove: tuple[str, ...]) -> list[dict[str, Any]]:
    jwks = metadata.get("jwks") or {}
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    removed = {_thumbprint_of(value) for value in remove}
    kept = [k for k in keys if _x5t(k) not in removed]
    missing = removed - {_x5t(k) for k in keys}
    if missing:
        raise click.BadParameter(f"not registered for this client: {', '.join(sorted(m for m in missing if m))}",
                                 param_hint="--remove-cert")
    try:
        added = [jwk_for_certificate(c) for c in read_certificates(add)]
    except InvalidClientMetadata as exc:
        raise click.BadParameter(str(exc), param_hint="--add-cert") from exc
    known = {_x5t(k) for k in kept}
    return kept + [k for k in added if _x5t(k) not in known]


def _thumbprint_of(value: str) -> str:
    """A --remove-cert value: a certificate file, or an x5t#S256 thumbprint as in cnf."""
    path = Path(value)
    if path.is_file():
        from cryptography.hazmat.primitives import serialization

        [certificate] = read_certificates((path,))
        return _b64(hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest())
    return value


def _x5t(jwk: dict[str, Any]) -> str | None:
    try:
        return _b64(hashlib.sha256(base64.b64decode(jwk["x5c"][0], validate=True)).digest())
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
