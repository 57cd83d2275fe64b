"""``authz keys``: the token signing keys."""

from __future__ import annotations

from pathlib import Path

import click

from authz.cli.options import data_dir_option, echo_json, with_store
from authz.keys.signing import SigningKeys
from authz.storage.base import RecordStore

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Token signing keys (created on first start)."""


@keys.command("list")
@data_dir_option
def list_(data_dir: Path) -> None:
    """The published JWK Set (active key first)."""

    async def fetch(store: RecordStore) -> dict[str, object]:
        signing = SigningKeys(store)
        await signing.load()
        return signing.jwks

    echo_json(with_store(data_dir, fetch))


@keys.command("rotate")
@data_dir_option
def rotate(data_dir: Path) -> None:
    """Sign new tokens with a new key; the old key stays published until retired."""

    async def run(store: RecordStore) -> str:
        return (await SigningKeys(store).rotate()).kid

    click.echo(f"active signing key is now {with_store(data_dir, run)}")


@keys.command("retire")
@click.argument("kid")
@data_dir_option
def retire(kid: str, data_dir: Path) -> None:
    """Stop publishing retired key KID (tokens it signed stop verifying)."""

    async def run(store: RecordStore) -> bool:
        signing = SigningKeys(store)
        await signing.load()
        try:
            return await signing.retire(kid)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc

    if not with_store(data_dir, run):
        raise click.ClickException(f"no retired key {kid!r}")
    click.echo(f"retired {kid}")
