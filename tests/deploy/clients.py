"""Requests the wire suite's client (tests/wire/client.py) does not make: from another loopback
address, straight to a server around its proxy, and handshakes a proxy refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support.server import RunningServer
from tests.wire.client import FORM, WireResponse, client_ssl_context, curl_command
from tests.wire.material import Credentials

__all__ = ["established_connections", "handshake_refusal", "request_from"]


def request_from(source: str, server: RunningServer, url: str, *, credentials: Credentials | None = None,
                 server_ca: Path | None = None, form: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> WireResponse:
    """POST ``form`` (GET without one) to ``url`` from the loopback address ``source``; the
    events are those ``server`` logged meanwhile, and the realm it names is the public issuer
    (``server.base_url``)."""
    verify = client_ssl_context(credentials, server_ca) if server_ca else False
    offset = server.log_offset()
    transport = httpx.HTTPTransport(verify=verify, local_address=source)
    with httpx.Client(transport=transport, timeout=15, trust_env=False) as client:
        if form is None:
            response = client.get(url, headers=headers)
        else:
            response = client.post(url, data=form, headers={"Content-Type": FORM, **(headers or {})})
    return WireResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content,
                        server.base_url, server.events(offset))


def handshake_refusal(via: str, url: str, credentials: Credentials, server_ca: Path) -> str:
    """The error a client gets when the server ends the TLS handshake over its certificate
    (fails the test if a response arrives instead)."""
    if via == "curl":
        result = subprocess.run([*curl_command(credentials, server_ca), url], capture_output=True, timeout=30)
        assert result.returncode != 0, f"curl got an answer: {result.stdout.decode(errors='replace')}"
        return result.stderr.decode(errors="replace")
    try:
        with httpx.Client(verify=client_ssl_context(credentials, server_ca), timeout=15, trust_env=False) as client:
            response = client.get(url)
    except httpx.TransportError as exc:
        return str(exc)
    raise AssertionError(f"httpx got an answer: {response.status_code} {response.text}")


def established_connections(port: int) -> set[int]:
    """The TCP connections to local ``port`` (IPv4) that are established now (accepted by the
    server and closed by neither side), by the port they come from."""
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
            peers.add(int(fields[2].rsplit(":", 1)[1], 16))
    return peers
