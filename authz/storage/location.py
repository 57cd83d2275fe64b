"""Where the store lives: the ``--store`` setting, parsed once and checked before any connect.

Empty means the embedded SQLite file in the data directory (the zero-config default). Redis
is named by a URL, in the forms redis-py and most Redis tooling use, extended for the two
topologies that need several addresses:

- ``redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]``, ``rediss://`` for TLS;
- ``redis+cluster://HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://``): a Redis Cluster, any
  of its nodes as start-up nodes;
- ``redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`` (``rediss+sentinel://``): the
  master that these Sentinels name ``SERVICE``.

A password in the URL is accepted but shows in ``ps``: ``--store-password-file`` keeps it out
of the command line. Every message that names the store uses ``redacted``, never the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["RedisLocation", "StoreLocationError", "parse_redis_url"]

Topology = Literal["single", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT = {"single": 6379, "cluster": 6379, "sentinel": 26379}


class StoreLocationError(ValueError):
    """The ``--store`` value cannot name a store; the message says which part and why."""


@dataclass(frozen=True)
class RedisLocation:
    topology: Topology
    addresses: tuple[tuple[str, int], ...]
    tls: bool
    db: int = 0
    service: str | None = None  # the Sentinel service name
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        scheme = next(name for name, form in _SCHEMES.items() if form == (self.topology, self.tls))
        user = f"{self.username}@" if self.username else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)
        path = f"/{self.service}/{self.db}" if self.service else ("" if self.topology == "cluster" else f"/{self.db}")
        return f"{scheme}://{user}{hosts}{path}"


def parse_redis_url(url: str, *, password_file: Path | None = None) -> RedisLocation:
    """The Redis store ``url`` names; ``StoreLocationError`` saying what is wrong."""
    scheme, _, rest = url.partition("://")
    if not rest or scheme.lower() not in _SCHEMES:
        forms = ", ".join(f"{name}://" for name in _SCHEMES)
        raise StoreLocationError(f"--store must be empty (embedded SQLite) or a Redis URL ({forms}); got {scheme!r}")
    topology, tls = _SCHEMES[scheme.lower()]
    # urlsplit takes one host only: split the user part and the host list ourselves.
    try:
        parts = urlsplit(f"redis://{rest}")
    except ValueError as exc:  # "redis://[::1": an IPv6 host left open
        raise StoreLocationError(f"--store is not a valid URL ({exc})") from None
    if parts.query or parts.fragment:
        raise StoreLocationError("--store: a Redis URL takes no query or fragment; TLS files and the password "
                                 "file have options of their own (--store-tls-ca, --store-password-file)")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, password = _userinfo(userinfo)
    if password_file is not None:
        if password is not None:
            raise StoreLocationError("--store has a password and --store-password-file is set: give only one")
        password = _read_password(password_file)
    addresses = tuple(_address(item, _DEFAULT_PORT[topology]) for item in hosts.split(","))
    if topology == "single" and len(addresses) != 1:
        raise StoreLocationError("--store: redis:// names one server; for several use redis+cluster:// or "
                                 "redis+sentinel://")
    segments = [s for s in parts.path.split("/") if s]
    service: str | None = None
    if topology == "sentinel":
        if not segments:
            raise StoreLocationError("--store: redis+sentinel:// needs the service name: "
                                     "redis+sentinel://HOST:26379,HOST:26379/SERVICE[/DB]")
        service = unquote(segments.pop(0))
    if topology == "cluster" and segments:
        raise StoreLocationError("--store: a Redis Cluster has one database; redis+cluster:// takes no /DB")
    if len(segments) > 1:
        raise StoreLocationError(f"--store: unexpected path {parts.path!r}; the path is /DB (a number)")
    db = _database(segments[0]) if segments else 0
    return RedisLocation(topology, addresses, tls, db, service, username, password)


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    name, has_password, secret = userinfo.partition(":")
    return (unquote(name) or None), (unquote(secret) if has_password else None)


def _read_password(path: Path) -> str:
    try:
        secret = path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise StoreLocationError(f"--store-password-file: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise StoreLocationError(f"--store-password-file: {path} is not UTF-8 text") from exc
    if not secret:
        raise StoreLocationError(f"--store-password-file: {path} is empty")
    return secret


def _address(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise StoreLocationError(f"--store: missing host in {item!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise StoreLocationError(f"--store: {port_text!r} is not a port (1-65535) in {item!r}")
    return host, int(port_text)


def _database(text: str) -> int:
    if not text.isdigit() or len(text) > 5:
        raise StoreLocationError(f"--store: the database {text!r} is not a number (/0, /1...)")
    return int(text)
