"""The registered resource servers, all held in memory.

They are few (one per API) and every token request with ``resource`` consults them, so the
whole set is loaded at start and reloaded when the store's change feed reports a change (from
this process, another instance, or the CLI). Between a change and its reload the previous set
stays in use, as for signing keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from authz.audiences.model import InvalidResourceServer, ResourceServer
from authz.storage.base import CorruptRecord, RecordStore
from authz.storage.changes import ChangeFeed, Reloader

__all__ = ["KIND", "ResourceServers"]

log = structlog.get_logger("authz.audiences")

KIND = "resource_server"


class ResourceServers:
    def __init__(self, store: RecordStore, feed: ChangeFeed | None = None,
                 builtin: tuple[ResourceServer, ...] = ()) -> None:
        self._store = store
        # The server's own APIs (the registration endpoint): always there, never stored.
        self._builtin = {server.identifier: server for server in builtin}
        self._by_identifier: Mapping[str, ResourceServer] = {}
        self._reloader = Reloader(self.load, "resource_servers_reload_failed")
        if feed is not None:
            feed.on_change(KIND, self._reloader)

    def get(self, identifier: str) -> ResourceServer | None:
        return self._builtin.get(identifier) or self._by_identifier.get(identifier)

    def all(self) -> list[ResourceServer]:
        return list(self._by_identifier.values())

    async def load(self) -> None:
        loaded: dict[str, ResourceServer] = {}
        for record_id, record in await self._store.entries(KIND):
            try:
                if isinstance(record, CorruptRecord):
                    raise InvalidResourceServer(str(record))
                server = ResourceServer.from_record(record)
                if server.identifier != record_id:
                    raise InvalidResourceServer(f"the record names identifier {server.identifier!r}")
            except InvalidResourceServer as exc:
                # One damaged registration must not take the others down: tokens for it are
                # refused (unknown resource), and the operator is told why.
                log.error("resource_server_unusable", identifier=record_id, reason=str(exc))
                continue
            loaded[server.identifier] = server
        self._by_identifier = loaded

    async def register(self, server: ResourceServer) -> None:
        await self._store.upsert(KIND, server.identifier, server.to_record())
        await self.load()

    async def remove(self, identifier: str) -> bool:
        removed = await self._store.destroy(KIND, identifier)
        await self.load()
        return removed

    async def close(self) -> None:
        await self._reloader.close()
