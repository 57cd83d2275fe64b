"""Options shared by several commands, and how a command reaches the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from authz.storage.base import RecordStore, StorageError
from authz.storage.sqlite import SQLiteRecordStore

__all__ = ["data_dir_option", "with_store"]

T = TypeVar("T")

# Not click's readable=True: whether this user may use the store is the store's to say, with
# the file and the cause (authz.storage.sqlite_failures).
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, readable=False, path_type=Path),
    envvar="AUTHZ_DATA_DIR",
    default="authz-data",
    show_default=True,
    help="Directory of the embedded store (same as the server's). Env: AUTHZ_DATA_DIR.",
)


def with_store(data_dir: Path, action: Callable[[RecordStore], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store, run ``action`` with it, close it; store errors become CLI errors.

    Only commands that write (``create=True``) may create a store: a mistyped --data-dir must
    not look like an empty server."""
    store = SQLiteRecordStore(data_dir)

    async def run() -> T:
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        if not create and not store.exists():
            raise click.ClickException(
                f"no store at {store.path}: check --data-dir (env AUTHZ_DATA_DIR); `authz clients add` or "
                "`authz serve` creates it"
            )
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))
