"""``authz keys``: the token signing keys."""

from __future__ import annotations

import click

from authz.cli.options import echo_json, store_option, with_store
from authz.keys.signing import SigningKeys
from authz.storage.base import RecordStore
from authz.storage.config import StoreConfig

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Token signing keys (created on first start)."""


@keys.command("list")
@store_option
def list_(store: StoreConfig) -> None:
    """The published JWK Set (active key first)."""

    async def fetch(records: RecordStore) -> dict[str, object]:
        signing = SigningKeys(records)
        await signing.load()
        return signing.jwks

    echo_json(with_store(store, fetch))


@keys.command("rotate")
@store_option
def rotate(store: StoreConfig) -> None:
    """Sign new tokens with a new key; the old key stays published until retired."""

    async def run(records: RecordStore) -> str:
        return (await SigningKeys(records).rotate()).kid

    click.echo(f"active signing key is now {with_store(store, run)}")


@keys.command("retire")
@click.argument("kid")
@store_option
def retire(kid: str, store: StoreConfig) -> None:
    """Stop publishing retired key KID (tokens it signed stop verifying)."""

    async def run(records: RecordStore) -> bool:
        signing = SigningKeys(records)
        await signing.load()
        try:
            return await signing.retire(kid)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc

    if not with_store(store, run):
        raise click.ClickException(f"no retired key {kid!r}")
    click.echo(f"retired {kid}")
