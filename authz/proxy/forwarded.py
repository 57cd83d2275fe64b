"""The client's own address behind trusted proxies, for log lines: the nearest entry of
``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` that no trusted proxy wrote."""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["FORWARDING_HEADERS", "forwarded_client"]

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for")
# Entries read from the nearest end: a chain of proxies longer than this is not plausible, and
# the header is client input (the first proxy appends to whatever the client sent).
_MAX_HOPS = 32


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` node of each element of an RFC 7239 ``Forwarded`` header."""
    nodes = []
    for element in value.split(",")[-_MAX_HOPS:]:
        for pair in element.split(";"):
            name, _, node = pair.partition("=")
            if name.strip().lower() == "for":
                nodes.append(_strip_node(node.strip().strip('"')))
    return nodes


def _strip_node(node: str) -> str:
    """``[2001:db8::1]:4711`` -> ``2001:db8::1``; ``192.0.2.1:80`` -> ``192.0.2.1``."""
    if node.startswith("["):
        return node[1:node.find("]")] if "]" in node else node
    host, colon, port = node.rpartition(":")
    return host if colon and host.count(":") == 0 and port.isdigit() else node


def forwarded_client(headers: Mapping[str, str], is_trusted: Callable[[str], bool]) -> str | None:
    """The address of the client, as the proxies forwarded it, or None if they did not."""
    if "forwarded" in headers:
        nodes = _forwarded_for(headers["forwarded"])
    elif "x-forwarded-for" in headers:
        nodes = [_strip_node(n.strip()) for n in headers["x-forwarded-for"].split(",")[-_MAX_HOPS:]]
    else:
        return None
    nodes = [n for n in nodes if n]
    for node in reversed(nodes):
        if not is_trusted(node):
            return node[:64]
    return nodes[0][:64] if nodes else None
