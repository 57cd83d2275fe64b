"""Which addresses a client's jwks_uri may lead to: public unicast ones, and the networks of
the operator's allow-list (authz.clients.jwks_uri.destinations)."""

from __future__ import annotations

import ipaddress

import pytest

from authz.clients.jwks_uri.destinations import AddressPolicy, address_problem, parse_allow_list

REFUSED = {
    # IPv4
    "0.0.0.0": "unspecified",
    "0.1.2.3": "this network",
    "10.1.2.3": "private (RFC 1918)",
    "172.16.0.1": "private (RFC 1918)",
    "172.31.255.255": "private (RFC 1918)",
    "192.168.1.1": "private (RFC 1918)",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "link-local",
    "192.0.0.8": "IETF protocol assignments",
    "192.0.2.1": "documentation",
    "198.18.0.1": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fe80::1%1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "2001::1": "Teredo",
    "2001:10::1": "IETF protocol assignments",
    "100::1": "discard-only",
    "64:ff9b:1::1": "local-use NAT64",
    "::127.0.0.1": "outside 2000::/3",  # IPv4-compatible, deprecated
    "4000::1": "outside 2000::/3",
    # IPv6 forms of refused IPv4 addresses
    "::ffff:127.0.0.1": "IPv4-mapped form of 127.0.0.1, which is loopback",
    "::ffff:10.0.0.1": "IPv4-mapped form of 10.0.0.1, which is private",
    "::ffff:169.254.169.254": "IPv4-mapped form of 169.254.169.254, which is link-local",
    "::ffff:100.64.0.1": "IPv4-mapped form of 100.64.0.1, which is shared address space",
    "::ffff:0.0.0.0": "IPv4-mapped form of 0.0.0.0, which is unspecified",
    "64:ff9b::7f00:1": "NAT64 form of 127.0.0.1, which is loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 form of 169.254.169.254",
    "2002:7f00:1::1": "6to4 form of 127.0.0.1, which is loopback",
    "2002:c0a8:101::1": "6to4 form of 192.168.1.1, which is private",
}

PUBLIC = ["1.1.1.1", "8.8.8.8", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
          "192.0.1.255", "198.20.0.1", "223.255.255.255", "2606:4700:4700::1111", "2a00:1450:4001::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "fragment"), REFUSED.items(), ids=list(REFUSED))
def test_special_purpose_addresses_are_refused(address: str, fragment: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_are_accepted(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_the_refusal_names_the_address_and_the_option() -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address("10.0.0.5")) == (
        "10.0.0.5 is private (RFC 1918); not in --jwks-uri-allow")


@pytest.mark.parametrize(("allowed", "address", "permitted"), [
    (["127.0.0.1/32"], "127.0.0.1", True),
    (["127.0.0.1/32"], "127.0.0.2", False),
    (["127.0.0.1/32"], "::ffff:127.0.0.1", True),  # the same destination, IPv4-mapped
    (["127.0.0.1/32"], "::1", False),
    (["10.0.0.0/8"], "10.200.1.1", True),
    (["10.0.0.0/8"], "172.16.0.1", False),
    (["10.0.0.0/8"], "64:ff9b::a00:1", False),  # NAT64 goes through a gateway: not the same destination
    (["fd00::/8"], "fd00::5", True),
    (["fd00::/8"], "fc00::5", False),
    (["fe80::/10"], "fe80::1%1", True),
    (["::1"], "::1", True),
    (["0.0.0.0/0"], "169.254.169.254", True),  # the operator's call
])
def test_the_allow_list_permits_its_networks_only(allowed: list[str], address: str, permitted: bool) -> None:
    policy = AddressPolicy(parse_allow_list(allowed))
    assert (policy.refusal(ipaddress.ip_address(address)) is None) is permitted


@pytest.mark.parametrize(("value", "fragment"), [
    ("10.0.0.1/8", "has host bits set"),
    ("localhost", "is not an address or CIDR network"),
    ("10.0.0.0/33", "is not an address or CIDR network"),
    ("", "is not an address or CIDR network"),
])
def test_a_bad_allow_list_entry_is_named(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as raised:
        parse_allow_list([value])
    assert repr(value) in str(raised.value)
