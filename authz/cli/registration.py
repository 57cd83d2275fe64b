"""``authz registration``: initial access tokens for the registration API (RFC 7591 §3)."""

from __future__ import annotations

import time

import click

from authz.cli.options import cli_actor, store_option, with_store
from authz.registration.credentials import RegistrationCredentials
from authz.storage.base import RecordStore
from authz.storage.config import StoreConfig

__all__ = ["registration"]


@click.group()
def registration() -> None:
    """The registration API (POST /register)."""


@registration.command("initial-token")
@click.option("--expires-in", type=click.IntRange(60, 30 * 86_400), default=3600, show_default=True,
              help="Seconds the token stays valid.")
@click.option("--reusable", is_flag=True, help="Allow several registrations until it expires (default: one).")
@store_option
def initial_token(expires_in: int, reusable: bool, store: StoreConfig) -> None:
    """Print a new initial access token: POST /register with it as the bearer token registers one
    client (or several with --reusable) without an administrator's access token. Only its digest
    is stored: keep the printed value, it cannot be shown again."""

    async def create(records: RecordStore) -> str:
        return await RegistrationCredentials(records).create_initial_token(
            created_by=cli_actor(), expires_at=time.time() + expires_in, single_use=not reusable)

    click.echo(with_store(store, create, create=True))
