"""redis-py clients for a ``RedisLocation``: one server, a Cluster, or the master Sentinels name.

Every client gets the same bounds, so that an unreachable Redis costs a request at most the
configured timeout (no retry with back-off, which redis-py does by default for up to seconds):
one immediate retry on a broken connection, since a pooled connection is found dead only
when used (after a Redis restart, every one of them is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from authz.storage.location import RedisLocation

__all__ = ["MAX_COMMANDS_IN_FLIGHT", "RedisClients", "RedisTLS", "connect"]

# Commands one process has in flight at once (the store queues the rest, within its timeout);
# the pools hold a few more connections, for the subscription.
MAX_COMMANDS_IN_FLIGHT = 64


@dataclass(frozen=True)
class RedisTLS:
    """Files for ``rediss://``: the CA that issued the server's certificate (default: the
    system's), and a client certificate when Redis requires one (``tls-auth-clients yes``)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass
class RedisClients:
    """The command client, and a factory for the connection that subscribes to changes."""

    commands: Redis | RedisCluster
    subscriber_addresses: tuple[tuple[str, int], ...]  # cluster: any node relays PUBLISH
    connection_options: dict[str, Any]
    sentinel: Sentinel | None = None
    service: str | None = None

    async def close(self) -> None:
        await self.commands.aclose()
        if self.sentinel is not None:  # its own connections to the Sentinels
            for client in self.sentinel.sentinels:
                await client.aclose()

    async def master_address(self) -> tuple[str, int] | None:
        """The master the Sentinels name now (None without Sentinel)."""
        if self.sentinel is None or self.service is None:
            return None
        host, port = await self.sentinel.discover_master(self.service)
        return str(host), int(port)

    def subscriber(self, attempt: int) -> Redis:
        """A client whose ``pubsub()`` reaches the store's messages; ``attempt`` rotates
        through a Cluster's nodes so that one dead node does not stop the feed."""
        if isinstance(self.commands, Redis):
            return self.commands
        host, port = self.subscriber_addresses[attempt % len(self.subscriber_addresses)]
        return Redis(host=host, port=port, **self.connection_options)


def connect(location: RedisLocation, tls: RedisTLS, timeout: float) -> RedisClients:
    """Clients for ``location`` (no connection is made before the first command)."""
    options: dict[str, Any] = {
        "username": location.username,
        "password": location.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), retries=1),
        "decode_responses": False,
        "max_connections": MAX_COMMANDS_IN_FLIGHT + 4,
    }
    if location.tls:
        options.update(ssl=True, ssl_ca_certs=_path(tls.ca_file), ssl_certfile=_path(tls.cert_file),
                       ssl_keyfile=_path(tls.key_file))
    commands: Redis | RedisCluster
    if location.topology == "single":
        host, port = location.addresses[0]
        commands = Redis(host=host, port=port, db=location.db, **options)
    elif location.topology == "cluster":
        commands = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in location.addresses], **options)
    else:
        assert location.service is not None  # parse_redis_url requires it for Sentinel
        sentinel = Sentinel(list(location.addresses), sentinel_kwargs=_sentinel_options(options),  # type: ignore[no-untyped-call]
                            **options)
        commands = sentinel.master_for(location.service, db=location.db)
        return RedisClients(commands, location.addresses, options, sentinel, location.service)
    return RedisClients(commands, location.addresses, options)


def _sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    # Sentinels are reached with the same TLS and bounds, without the data nodes' credentials:
    # a Sentinel without a password refuses an AUTH, and one with a password of its own would
    # need a setting of its own (not supported yet: protect Sentinels by network and TLS).
    return {k: v for k, v in options.items() if k not in ("username", "password")}


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)
