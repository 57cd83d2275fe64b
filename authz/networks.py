"""IP networks named by operators (trusted proxies, the jwks_uri allow-list)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Network", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], *, strict: bool) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``::1``, ``192.0.2.7``: an address alone is a network of one.
    ``ValueError`` naming the bad entry; with ``strict``, a network with host bits set
    (``10.0.0.1/8``, most likely a typo) is one."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=strict))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an address or CIDR network ({exc})") from None
    return tuple(networks)
