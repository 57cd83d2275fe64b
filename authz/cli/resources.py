"""``authz resources``: the resource servers (APIs) tokens can be issued for (RFC 8707)."""

from __future__ import annotations

import click

from authz.audiences.model import InvalidResourceServer, ResourceServer
from authz.audiences.registry import ResourceServers
from authz.cli.options import echo_json, store_option, with_store
from authz.storage.base import RecordStore
from authz.storage.config import StoreConfig

__all__ = ["resources"]


@click.group()
def resources() -> None:
    """Resource servers: the aud of tokens, their scopes, who may introspect their tokens."""


@resources.command("add")
@click.argument("identifier")
@click.option("--scope", "scopes", default="", help='Space-separated scopes that belong to this API, e.g. '
                                                     '"accounts:read accounts:write".')
@click.option("--introspector", "introspectors", multiple=True, metavar="CLIENT_ID",
              help="A client that may introspect tokens issued for this API (the API's own client), repeatable.")
@store_option
def add(identifier: str, scopes: str, introspectors: tuple[str, ...], store: StoreConfig) -> None:
    """Register (or replace) the resource server IDENTIFIER, an absolute URI: the aud of tokens
    for it and the value clients send as resource."""
    try:
        server = ResourceServer.from_record({"identifier": identifier, "scopes": scopes.split(),
                                             "introspectors": list(introspectors)})
    except InvalidResourceServer as exc:
        raise click.BadParameter(str(exc), param_hint="IDENTIFIER or --scope") from None

    async def register(records: RecordStore) -> None:
        await ResourceServers(records).register(server)

    with_store(store, register, create=True)
    click.echo(f"registered resource server {identifier}")


@resources.command("list")
@store_option
def list_(store: StoreConfig) -> None:
    """Every resource server: identifier, scopes, introspectors."""

    async def fetch(records: RecordStore) -> list[ResourceServer]:
        registry = ResourceServers(records)
        await registry.load()
        return registry.all()

    for server in with_store(store, fetch):
        click.echo(f"{server.identifier}\tscope={' '.join(server.scopes)!r}\t"
                   f"introspectors={','.join(sorted(server.introspectors))}")


@resources.command("show")
@click.argument("identifier")
@store_option
def show(identifier: str, store: StoreConfig) -> None:
    """The stored registration of IDENTIFIER, as JSON."""

    async def fetch(records: RecordStore) -> ResourceServer | None:
        registry = ResourceServers(records)
        await registry.load()
        return registry.get(identifier)

    server = with_store(store, fetch)
    if server is None:
        raise click.ClickException(f"no resource server {identifier!r}")
    echo_json(server.to_record())


@resources.command("remove")
@click.argument("identifier")
@store_option
def remove(identifier: str, store: StoreConfig) -> None:
    """Delete IDENTIFIER: tokens can no longer be requested for it (clients that list it get
    invalid_target); tokens already issued stay valid until they expire."""

    async def delete(records: RecordStore) -> bool:
        return await ResourceServers(records).remove(identifier)

    if not with_store(store, delete):
        raise click.ClickException(f"no resource server {identifier!r}")
    click.echo(f"removed resource server {identifier}")
