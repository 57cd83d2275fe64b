"""Options shared by several commands, and how a command reaches the store."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from authz.storage.base import RecordStore, StorageError
from authz.storage.config import StoreConfig, StoreLocationError

__all__ = ["cli_actor", "echo_json", "store_location_options", "store_option", "with_store"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_FILE = click.Path(dir_okay=False, path_type=Path)


def store_location_options(*, environment: bool) -> Callable[[F], F]:
    """The options that say which store to use. ``environment``: click reads the
    ``AUTHZ_*`` variables itself (management commands); otherwise the settings do (serve)."""

    def env(name: str) -> dict[str, Any]:
        return {"envvar": f"AUTHZ_{name}", "show_envvar": True} if environment else {}

    def help_env(name: str) -> str:
        return "" if environment else f" (env AUTHZ_{name})"

    def decorate(command: F) -> F:
        for option in reversed([
            # Not click's readable=True: whether this user may use the store is the store's to
            # say, with the file and the cause (authz.storage.sqlite_failures).
            click.option("--data-dir", type=click.Path(file_okay=False, readable=False, path_type=Path),
                         **({"default": "authz-data", "show_default": True} if environment else {}),  # type: ignore[arg-type]
                         **env("DATA_DIR"),
                         help=f"Directory of the embedded SQLite store, used without --store{help_env('DATA_DIR')}."),
            click.option("--store", **env("STORE"),
                         help="A Redis URL shared by several instances: redis://[USER@]HOST:PORT/DB, rediss:// "
                              "(TLS), redis+cluster://HOST:PORT,HOST:PORT, redis+sentinel://HOST:PORT,.../SERVICE"
                              f"[/DB]. Default: the embedded SQLite store{help_env('STORE')}."),
            click.option("--store-password-file", type=_FILE, **env("STORE_PASSWORD_FILE"),
                         help="File holding the Redis password (keeps it out of ps)"
                              f"{help_env('STORE_PASSWORD_FILE')}."),
            click.option("--store-tls-ca", type=_FILE, **env("STORE_TLS_CA"),
                         help=f"CA (PEM) of the Redis server's certificate, rediss://{help_env('STORE_TLS_CA')}."),
            click.option("--store-tls-cert", type=_FILE, **env("STORE_TLS_CERT"),
                         help=f"Client certificate (PEM) for Redis{help_env('STORE_TLS_CERT')}."),
            click.option("--store-tls-key", type=_FILE, **env("STORE_TLS_KEY"),
                         help=f"Its private key (PEM){help_env('STORE_TLS_KEY')}."),
            click.option("--store-prefix", **env("STORE_PREFIX"),
                         help=f"Prefix of every Redis key (default authz){help_env('STORE_PREFIX')}."),
            click.option("--store-timeout", type=float, **env("STORE_TIMEOUT"),
                         help=f"Seconds a Redis command may take (default 2){help_env('STORE_TIMEOUT')}."),
            click.option("--store-wait-replicas", type=int, **env("STORE_WAIT_REPLICAS"),
                         help="Redis replicas that must hold a write before it is acknowledged (WAIT; default 1 with "
                              "Sentinel, else 0)"
                              f"{help_env('STORE_WAIT_REPLICAS')}."),
        ]):
            command = option(command)
        return command

    return decorate


def store_option(command: F) -> F:
    """Give a management command the store options, as one ``store: StoreConfig`` argument."""

    @functools.wraps(command)
    def with_config(*args: Any, **options: Any) -> Any:
        names = ("password_file", "tls_ca", "tls_cert", "tls_key", "prefix", "timeout", "wait_replicas")
        given = {name: options.pop(f"store_{name}") for name in names}
        config = StoreConfig(url=options.pop("store") or "", data_dir=options.pop("data_dir"),
                             **{k: v for k, v in given.items() if v is not None})
        try:
            config.check()
        except StoreLocationError as exc:
            raise click.UsageError(str(exc)) from None
        _log_to_stderr()
        return command(*args, store=config, **options)

    return store_location_options(environment=True)(with_config)  # type: ignore[return-value]


def _log_to_stderr() -> None:
    """The command's log lines (audit lines of the changes it makes, store events) go to
    stderr, so that its output on stdout stays data; JSON with AUTHZ_LOG_FORMAT=json."""
    import os

    from authz.logs import configure_logging

    fmt = "json" if os.environ.get("AUTHZ_LOG_FORMAT") == "json" else "console"
    configure_logging(os.environ.get("AUTHZ_LOG_LEVEL", "info"), fmt)


def with_store(config: StoreConfig, action: Callable[[RecordStore], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store, run ``action`` with it, close it; store errors become CLI errors.

    Only commands that write (``create=True``) may create an embedded store: a mistyped
    --data-dir must not look like an empty server."""
    store = config.build()

    async def run() -> T:
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        if not create and config.embedded:
            _require_embedded_store(config)
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


def _require_embedded_store(config: StoreConfig) -> None:
    from authz.storage.sqlite import SQLiteRecordStore

    store = SQLiteRecordStore(config.data_dir)
    if not store.exists():
        raise click.ClickException(
            f"no store at {store.path}: check --data-dir (env AUTHZ_DATA_DIR), or --store for a Redis store; "
            "`authz clients add` or `authz serve` creates it"
        )


def cli_actor() -> str:
    """Who changes the store from this command line, for audit lines: ``cli:USER``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        import os

        return f"cli:uid={os.getuid()}"


def echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, indent=2, sort_keys=True))
