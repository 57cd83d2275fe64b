"""``authz store``: operations on the store as a whole (moving a single-host install to Redis)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from authz.audiences.registry import KIND as RESOURCE_SERVER_KIND
from authz.cli.options import store_option
from authz.clients.directory import KIND as CLIENT_KIND
from authz.keys.signing import KIND as SIGNING_KEY_KIND
from authz.storage.base import CorruptRecord, RecordStore, StorageError
from authz.storage.config import StoreConfig, StoreLocationError
from authz.tokens.revocation import KIND as REVOCATION_KIND

__all__ = ["store"]

# Everything the server keeps. Signing keys before clients: a target that gets the clients
# but not the keys would have servers mint a new key, and tokens already issued stop verifying.
KINDS = (SIGNING_KEY_KIND, RESOURCE_SERVER_KIND, CLIENT_KIND, REVOCATION_KIND)


@click.group()
def store() -> None:
    """The store as a whole."""


@dataclass
class CopyReport:
    copied: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # "kind/id": different in the target
    unreadable: list[str] = field(default_factory=list)  # "kind/id: why"


@store.command("copy")
@click.option("--from", "source", required=True, metavar="DIR_OR_URL",
              help="The store to copy from: a data directory (embedded SQLite) or a Redis URL.")
@click.option("--replace", is_flag=True,
              help="Overwrite records the target holds with other content (default: report them, copy nothing "
                   "over them, exit 1).")
@store_option
def copy(source: str, replace: bool, store: StoreConfig) -> None:
    """Copy every record (signing keys, clients, revocations with their expiry) from --from into the
    store that --store/--data-dir (or AUTHZ_STORE/AUTHZ_DATA_DIR) name.

    Records already in the target with the same content are left alone, so the command can be run
    again. Run it before the servers use the target: a server started on an empty target makes a
    signing key of its own, which then conflicts with the copied one.
    """
    source_config = _source(source, store)
    if source_config == store:
        raise click.UsageError("--from names the store being copied into")
    target_store = store.build()
    source_store = source_config.build()
    if source_config.embedded:
        from authz.storage.sqlite import SQLiteRecordStore

        if isinstance(source_store, SQLiteRecordStore) and not source_store.exists():
            raise click.ClickException(f"no store at {source_store.path}: check --from")
    try:
        report = asyncio.run(_copy(source_store, target_store, overwrite=replace))
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    for kind in KINDS:
        click.echo(f"{kind}: {report.copied.get(kind, 0)} copied, {report.unchanged.get(kind, 0)} already there")
    for problem in report.unreadable:
        click.secho(f"not copied, unreadable in the source: {problem}", fg="yellow", err=True)
    for conflict in report.conflicts:
        click.secho(f"not copied, the target holds another version: {conflict} (--replace overwrites)",
                    fg="yellow", err=True)
    if report.unreadable or report.conflicts:
        raise SystemExit(1)


def _source(value: str, target: StoreConfig) -> StoreConfig:
    if "://" in value:
        config = replace(target, url=value)
        try:
            config.check()
        except StoreLocationError as exc:
            raise click.UsageError(f"--from: {exc}") from None
        return config
    return StoreConfig(data_dir=Path(value))


async def _copy(source: RecordStore, target: RecordStore, *, overwrite: bool) -> CopyReport:
    report = CopyReport()
    await source.open()
    try:
        await target.open()
        try:
            for kind in KINDS:
                for record_id, record, expires_at in await source.dump(kind):
                    if isinstance(record, CorruptRecord):
                        report.unreadable.append(str(record))
                        continue
                    await _copy_one(target, kind, record_id, record, expires_at, overwrite, report)
        finally:
            await target.close()
    finally:
        await source.close()
    return report


async def _copy_one(target: RecordStore, kind: str, record_id: str, record: dict[str, object],
                    expires_at: float | None, overwrite: bool, report: CopyReport) -> None:
    if await target.insert(kind, record_id, record, expires_at=expires_at):
        report.copied[kind] = report.copied.get(kind, 0) + 1
        return
    try:
        existing = await target.find(kind, record_id)
    except CorruptRecord:
        existing = None
    if existing is not None and _same(existing, record):
        report.unchanged[kind] = report.unchanged.get(kind, 0) + 1
    elif overwrite:
        await target.upsert(kind, record_id, record, expires_at=expires_at)
        report.copied[kind] = report.copied.get(kind, 0) + 1
    else:
        report.conflicts.append(f"{kind}/{record_id}")


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
