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

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AUTHZ_DATA_DIR",
    default="authz-data",
    show_default=True,
    help="Directory of the embedded store (same as the server's). Env: AUTHZ_DATA_DIR.",
)


def with_store(data_dir: Path, action: Callable[[RecordStore], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store, run ``action`` with it, close it; store errors become CLI errors.

    Only commands that write (``create=True``) may create a store: a mistyped --data-dir must
    not look like an empty server."""
    store_file = SQLiteRecordStore(data_dir).path
    if not create and not store_file.exists():
        raise click.ClickException(
            f"no store at {store_file}: check --data-dir (env AUTHZ_DATA_DIR); `authz clients add` or "
            "`authz serve` creates it"
        )

    async def run() -> T:
        store = SQLiteRecordStore(data_dir)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))
