"""``authz clients``: register and inspect clients in the store."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from authz.cli.certificate_files import ca_pin, certificate_lines, read_certificates
from authz.cli.options import cli_actor, echo_json, store_option, with_store
from authz.clients.directory import ClientDirectory, stored_client
from authz.clients.jwks_uri.uri import jwks_uri_problem
from authz.clients.model import (
    CA_PIN_PARAMETER,
    MTLS_AUTH_METHODS,
    InvalidClientMetadata,
    RegisteredClient,
    jwk_for_certificate,
)
from authz.clients.review import review_registration
from authz.storage.base import CorruptRecord, RecordStore
from authz.storage.config import StoreConfig

__all__ = ["clients"]

_SUBJECT_OPTIONS = {
    "subject_dn": "tls_client_auth_subject_dn",
    "san_dns": "tls_client_auth_san_dns",
    "san_uri": "tls_client_auth_san_uri",
    "san_ip": "tls_client_auth_san_ip",
    "san_email": "tls_client_auth_san_email",
}


@click.group()
def clients() -> None:
    """Registered OAuth clients."""


@clients.command("add")
@click.argument("client_id")
@click.option("--auth-method", type=click.Choice(MTLS_AUTH_METHODS), required=True)
@click.option("--subject-dn", help="RFC 4514 subject DN, e.g. 'CN=client,O=Example' (tls_client_auth).")
@click.option("--san-dns", help="dNSName SAN the certificate must carry (tls_client_auth).")
@click.option("--san-uri", help="URI SAN the certificate must carry (tls_client_auth).")
@click.option("--san-ip", help="iPAddress SAN (IPv4 or IPv6, any form) (tls_client_auth).")
@click.option("--san-email", help="rfc822Name SAN (tls_client_auth).")
@click.option("--cert", "certs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Certificate of a self_signed_tls_client_auth client (repeat it for rotation).")
@click.option("--jwks-uri", metavar="URL",
              help="https URL of the JWK Set (keys with x5c) of a self_signed_tls_client_auth client, fetched by "
                   "the server; instead of --cert.")
@click.option("--scope", default="", help='Space-separated scopes the client may request, e.g. "read write".')
@click.option("--resource", "resources", multiple=True, metavar="URI",
              help="A resource server (registered with `authz resources add`) this client may get tokens for, "
                   "repeatable. None: tokens for the default audience.")
@click.option("--unbound-tokens", is_flag=True,
              help="Issue access tokens without cnf (tls_client_certificate_bound_access_tokens=false).")
@click.option("--pin-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Certificate of the CA (trust anchor or intermediate) this tls_client_auth client's certificates "
                   "must be issued under; stored as the SHA-256 of its public key (tls_client_auth_ca_spki_sha256).")
@click.option("--replace", is_flag=True, help="Replace an existing registration of CLIENT_ID.")
@click.option("--refuse-expired", is_flag=True,
              help="Refuse a --cert that has expired (otherwise a warning; the server accepts it all the same).")
@store_option
def add(client_id: str, auth_method: str, certs: tuple[Path, ...], scope: str, resources: tuple[str, ...],
        unbound_tokens: bool, pin_ca: Path | None, replace: bool, refuse_expired: bool, store: StoreConfig,
        jwks_uri: str | None = None,
        **subjects: str | None) -> None:
    """Register CLIENT_ID (tls_client_auth with exactly one subject option, or
    self_signed_tls_client_auth with one or more --cert, or --jwks-uri)."""
    given = {_SUBJECT_OPTIONS[k]: v for k, v in subjects.items() if v is not None}
    if auth_method == "tls_client_auth":
        if certs:
            raise click.UsageError(cert_for_tls_client_auth(certs))
        if len(given) != 1:
            raise click.UsageError(
                "tls_client_auth needs exactly one of --subject-dn, --san-dns, --san-uri, --san-ip, --san-email"
                + (f" (got {len(given)})" if given else "")
            )
        if jwks_uri is not None:
            raise click.UsageError("--jwks-uri is for self_signed_tls_client_auth clients")
    else:
        if given:
            raise click.UsageError(subject_for_self_signed(given))
        if certs and jwks_uri is not None:
            # RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
            raise click.UsageError("--cert and --jwks-uri exclude each other: register certificates or a URL")
        if not certs and jwks_uri is None:
            raise click.UsageError("self_signed_tls_client_auth needs at least one --cert, or --jwks-uri")
        if jwks_uri is not None and (problem := jwks_uri_problem(jwks_uri)) is not None:
            raise click.BadParameter(f"jwks_uri {problem}", param_hint="--jwks-uri")
    metadata: dict[str, Any] = {
        "client_id": client_id,
        "token_endpoint_auth_method": auth_method,
        "grant_types": ["client_credentials"],
        "scope": scope,
        "tls_client_certificate_bound_access_tokens": not unbound_tokens,
        **given,
    }
    if resources:
        metadata["allowed_resources"] = list(resources)
    if pin_ca is not None:
        if auth_method != "tls_client_auth":
            raise click.UsageError("--pin-ca is for tls_client_auth clients")
        metadata[CA_PIN_PARAMETER] = ca_pin(pin_ca)
    if jwks_uri is not None:
        metadata["jwks_uri"] = jwks_uri
    if certs:
        try:
            metadata["jwks"] = {"keys": [jwk_for_certificate(c) for c in read_certificates(certs)]}
        except InvalidClientMetadata as exc:
            raise click.BadParameter(str(exc), param_hint="--cert") from exc

    try:
        warnings = review_registration(RegisteredClient.from_metadata(metadata), refuse_expired=refuse_expired)
    except InvalidClientMetadata as exc:
        raise click.ClickException(f"invalid client metadata: {exc}") from exc

    async def register(records: RecordStore) -> None:
        try:
            await ClientDirectory(records).register(metadata, replace=replace, actor=cli_actor())
        except InvalidClientMetadata as exc:
            raise click.ClickException(f"invalid client metadata: {exc}") from exc
        except KeyError:
            raise click.ClickException(f"client {client_id!r} exists; pass --replace to overwrite it") from None

    with_store(store, register, create=True)
    click.echo(f"registered {client_id} ({auth_method})")
    echo_warnings(warnings)


def echo_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


_SUBJECT_FLAGS = {value: "--" + key.replace("_", "-") for key, value in _SUBJECT_OPTIONS.items()}


def cert_for_tls_client_auth(certs: tuple[Path, ...], flag: str = "--cert") -> str:
    """Why a certificate file cannot register a tls_client_auth client, and what would."""
    message = (f"{flag} belongs to self_signed_tls_client_auth (the client's own certificate, matched byte for "
               "byte); this client uses tls_client_auth, which registers the subject its CA-issued certificates "
               "carry: --subject-dn, --san-dns, --san-uri, --san-ip or --san-email")
    try:
        [certificate] = read_certificates(certs[:1])
        message += f" (this certificate's subject: --subject-dn {shlex.quote(certificate.subject.rfc4514_string())})"
    except (click.BadParameter, OSError, ValueError):
        pass
    return message


def subject_for_self_signed(given: dict[str, str]) -> str:
    """Why subject options cannot register a self_signed_tls_client_auth client."""
    flags = ", ".join(_SUBJECT_FLAGS[name] for name in given)
    return (f"{flags} belong(s) to tls_client_auth (certificates from a CA the server trusts, matched by subject); "
            "this client uses self_signed_tls_client_auth, which registers its certificates themselves: --cert FILE")


def _way_out(key: str) -> str:
    return f"the server refuses this client until the record is repaired, or removed (authz clients remove {key})"


def _corrupt(exc: CorruptRecord) -> click.ClickException:
    return click.ClickException(f"{exc}; {_way_out(exc.record_id)}")


def _summary(key: str, metadata: dict[str, Any] | CorruptRecord) -> str:
    """One line of ``clients list``, under the key the server looks the client up by; a
    registration the server cannot use says why, and how to get rid of it."""
    if isinstance(metadata, CorruptRecord):
        return f"{key}\tUNUSABLE: {metadata}; {_way_out(key)}"
    try:
        client = stored_client(key, metadata)
    except InvalidClientMetadata as exc:
        return f"{key}\tUNUSABLE: {exc}; {_way_out(key)}"
    if client.subject is not None:
        subject = f"{client.subject.parameter}={client.subject_value}"
    elif client.jwks_uri is not None:
        subject = f"jwks_uri={client.jwks_uri}"
    else:
        subject = f"{len(client.registered_certificates)} certificate(s)"
    return f"{client.client_id}\t{client.auth_method}\t{subject}\tscope={metadata.get('scope', '')!r}"


@clients.command("list")
@store_option
def list_(store: StoreConfig) -> None:
    """One line per client: id, method, subject or number of certificates, scopes."""

    async def fetch(records: RecordStore) -> list[tuple[str, dict[str, Any] | CorruptRecord]]:
        return await ClientDirectory(records).all_metadata()

    for key, metadata in with_store(store, fetch):
        click.echo(_summary(key, metadata))


@clients.command("show")
@click.argument("client_id")
@store_option
def show(client_id: str, store: StoreConfig) -> None:
    """The stored metadata of CLIENT_ID, as JSON."""

    async def fetch(records: RecordStore) -> dict[str, Any] | None:
        try:
            return await ClientDirectory(records).metadata(client_id)
        except CorruptRecord as exc:
            raise _corrupt(exc) from exc

    metadata = with_store(store, fetch)
    if metadata is None:
        raise click.ClickException(f"no client {client_id!r}")
    echo_json(metadata)
    try:
        client = stored_client(client_id, metadata)
    except InvalidClientMetadata as exc:
        click.echo(f"warning: the server refuses this client: its registration is unusable: {exc}", err=True)
        return
    # On stderr, so that stdout stays the JSON document.
    for line in certificate_lines(client.registered_certificates):
        click.echo(line, err=True)


@clients.command("remove")
@click.argument("client_id")
@store_option
def remove(client_id: str, store: StoreConfig) -> None:
    """Delete CLIENT_ID. Running servers stop accepting it within a second."""

    async def delete(records: RecordStore) -> bool:
        return await ClientDirectory(records).remove(client_id, actor=cli_actor())

    if not with_store(store, delete):
        raise click.ClickException(f"no client {client_id!r}")
    click.echo(f"removed {client_id}")
