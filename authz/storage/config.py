"""Which store to open: the ``--store`` setting and its companions, shared by the server and
the CLI so that both reach the same records with the same words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from authz.storage.base import RecordStore
from authz.storage.location import RedisLocation, StoreLocationError, parse_redis_url

__all__ = ["StoreConfig", "StoreLocationError"]


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""  # empty: the embedded SQLite file in data_dir
    data_dir: Path = Path("authz-data")
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    prefix: str = "authz"
    timeout: float = 2.0
    # Replicas a write must reach before it is acknowledged; None: 1 with Sentinel (whose
    # failover would otherwise lose what only the old master took), 0 otherwise.
    wait_replicas: int | None = None

    @property
    def embedded(self) -> bool:
        return not self.url

    def redis_location(self) -> RedisLocation:
        """The parsed ``--store`` URL; ``StoreLocationError`` naming the problem."""
        location = parse_redis_url(self.url, password_file=self.password_file)
        tls_files = self.tls_ca or self.tls_cert or self.tls_key
        if tls_files and not location.tls:
            raise StoreLocationError("--store-tls-ca/--store-tls-cert/--store-tls-key need a rediss:// URL "
                                     "(TLS); the --store URL is not one")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise StoreLocationError("--store-tls-cert and --store-tls-key go together")
        if self.wait_replicas and location.topology == "cluster":
            raise StoreLocationError("--store-wait-replicas is for one server or Sentinel; a Redis Cluster "
                                     "replicates per shard (not supported yet)")
        return location

    def check(self) -> None:
        """Raise ``StoreLocationError`` now rather than at the first connect."""
        if not self.embedded:
            self.redis_location()
        elif self.password_file or self.tls_ca or self.tls_cert or self.tls_key or self.wait_replicas is not None:
            raise StoreLocationError("the --store-* options need a Redis --store URL; without one the store "
                                     "is the embedded SQLite file in --data-dir")

    def build(self) -> RecordStore:
        """The store, not yet open."""
        if self.embedded:
            from authz.storage.sqlite import SQLiteRecordStore

            return SQLiteRecordStore(self.data_dir)
        from authz.storage.redis_connection import RedisTLS
        from authz.storage.redis_store import RedisRecordStore

        location = self.redis_location()
        wait_replicas = self.wait_replicas
        if wait_replicas is None:
            wait_replicas = 1 if location.topology == "sentinel" else 0
        return RedisRecordStore(location, tls=RedisTLS(self.tls_ca, self.tls_cert, self.tls_key),
                                prefix=self.prefix, timeout=self.timeout, wait_replicas=wait_replicas)
