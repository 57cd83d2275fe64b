"""The floor: the cheapest HTTPS server on our serving stack, to measure what the stack costs.

    python -P tests/bench/tls_floor_server.py --port PORT --tls-cert server.crt --tls-key server.key

Same event loop (uvloop), same TLS context (``authz.tls.context.build_server_context``: a
client certificate requested, any accepted, no session tickets), and it reads the client's
certificate on every connection, as our server does. But no HTTP framework and no OAuth: every
request gets the same canned token-shaped JSON. Whatever this server costs per token with a new
TLS connection per request (accept, handshake, one record each way, close) no server on this
stack can avoid; ``ab_ours.sh floor HEAD`` measures our server against it, pair by pair.

Not a server for anything but this measurement: it trusts Content-Length, ignores the method
and path, and has no limits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

import uvloop

from authz.tls.context import build_server_context

BODY = b'{"access_token":"floor","token_type":"Bearer","expires_in":300}'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: %d\r\n" % len(
    BODY
)


class CannedTokenProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.peer_certificate: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = self.transport.get_extra_info("ssl_object")
        # Our server reads the certificate once per connection too (authz.tls.extension).
        self.peer_certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            close = b"connection: close" in head
            self.transport.write(HEAD + (b"connection: close\r\n\r\n" if close else b"\r\n") + BODY)
            if close:
                self.transport.close()
                return


async def serve(host: str, port: int, certfile: str, keyfile: str) -> None:
    context = build_server_context(certfile, keyfile)
    server = await asyncio.get_running_loop().create_server(CannedTokenProtocol, host, port, ssl=context, backlog=2048)
    print(f"tls floor server on https://{host}:{port}", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.tls_cert, args.tls_key))


if __name__ == "__main__":
    main()
