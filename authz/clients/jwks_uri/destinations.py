"""Which addresses the server may connect to when it fetches a client's ``jwks_uri``.

A registered ``jwks_uri`` makes the server send requests from inside its own network: without
a check, a URL (or a DNS name) pointing at 127.0.0.1, 10.0.0.0/8 or 169.254.169.254 (cloud
metadata) would reach services that trust their network neighbours (SSRF). So only public
unicast addresses are accepted, unless the operator's allow-list names the network.

The table is ours, from the IANA special-purpose registries (RFC 6890 and successors), not
``ipaddress``'s ``is_private``/``is_global``: those changed between Python patch releases, and
call 64:ff9b::7f00:1 (NAT64 for 127.0.0.1) global. Addresses that embed an IPv4 address
(IPv4-mapped, NAT64, 6to4) are judged by that address: a NAT64 gateway or 6to4 relay would
carry the connection there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from authz.networks import Network, parse_networks

__all__ = ["AddressPolicy", "IPAddress", "IPNetwork", "address_problem", "parse_allow_list"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, what it is), most specific first where they nest.
_SPECIAL_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "reserved ('this network', RFC 791)"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "shared address space (carrier-grade NAT, RFC 6598)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (and cloud metadata services)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "reserved (IETF protocol assignments, RFC 6890)"),
    (_V4("192.0.2.0/24"), "reserved for documentation (RFC 5737)"),
    (_V4("192.31.196.0/24"), "reserved (AS112, RFC 7535)"),
    (_V4("192.52.193.0/24"), "reserved (AMT, RFC 7450)"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay anycast, RFC 7526)"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("192.175.48.0/24"), "reserved (AS112 direct delegation, RFC 7534)"),
    (_V4("198.18.0.0/15"), "reserved for benchmarking (RFC 2544)"),
    (_V4("198.51.100.0/24"), "reserved for documentation (RFC 5737)"),
    (_V4("203.0.113.0/24"), "reserved for documentation (RFC 5737)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved (RFC 1112)"),
)

_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_GLOBAL_UNICAST = _V6("2000::/3")

_SPECIAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private (local-use NAT64, RFC 8215)"),
    (_V6("100::/64"), "reserved (discard-only, RFC 6666)"),
    (_V6("2001::/32"), "reserved (Teredo tunnelling, RFC 4380)"),
    (_V6("2001:db8::/32"), "reserved for documentation (RFC 3849)"),
    (_V6("2001::/23"), "reserved (IETF protocol assignments, RFC 2928)"),
    (_V6("3fff::/20"), "reserved for documentation (RFC 9637)"),
    (_V6("5f00::/16"), "reserved (SRv6 SIDs, RFC 9602)"),
    (_V6("fc00::/7"), "private (unique local, RFC 4193)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private (site-local, deprecated by RFC 3879)"),
    (_V6("ff00::/8"), "multicast"),
)


def address_problem(address: IPAddress) -> str | None:
    """What makes ``address`` unfit for a fetch from the public internet ("loopback",
    "private (RFC 1918)", ...), or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((what for network, what in _SPECIAL_V4 if address in network), None)
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind, ipv4 = embedded
        problem = address_problem(ipv4)
        return None if problem is None else f"{kind} form of {ipv4}, which is {problem}"
    special = next((what for network, what in _SPECIAL_V6 if address in network), None)
    if special is not None:
        return special
    if address not in _GLOBAL_UNICAST:
        # IANA allocates global unicast from 2000::/3 only; the rest is reserved (this also
        # covers the deprecated IPv4-compatible ::a.b.c.d).
        return "reserved (outside 2000::/3, the IPv6 global unicast space)"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address in _MAPPED:
        return "IPv4-mapped", ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _SIX_TO_FOUR:
        return "6to4", ipaddress.IPv4Address((int(address) >> 80) & 0xFFFF_FFFF)
    return None


def parse_allow_list(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The operator's allow-list from CIDR strings ("10.1.2.0/24", "127.0.0.1", "fd00::/8");
    ``ValueError`` naming the bad entry (a network with host bits set is one: a typo)."""
    return parse_networks(values, strict=True)


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses, plus the networks the operator allows (``--jwks-uri-allow``)."""

    allowed: Sequence[IPNetwork] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why the server must not connect to ``address``, or None if it may."""
        problem = address_problem(address)
        if problem is None or self._allowed(address):
            return None
        return f"{address} is {problem}; not in --jwks-uri-allow"

    def _allowed(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 is 10.0.0.1 on the wire: allowing one allows the other.
            candidates.append(address.ipv4_mapped)
        # An address with a zone (fe80::1%eth0) is in a network by its address alone.
        bare = [ipaddress.ip_address(str(c).split("%", 1)[0]) for c in candidates]
        return any(a.version == n.version and a in n for a in bare for n in self.allowed)
