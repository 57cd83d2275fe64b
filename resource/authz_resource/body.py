"""A bound on the request body, enforced before the application runs.

The body is read whole, up to the limit, and replayed to the application: whatever the
application does with it (``await request.json()``, a form parser, a framework that reads
everything), it never holds more than the limit plus one chunk of the HTTP server (uvicorn
pauses reading at 64 KiB). The limit is applied to what arrives, so it holds for chunked
bodies and for a ``Content-Length`` that understates the body (the HTTP server ends the body
at the declared length anyway; the rest is parsed as the next request). A declared length
over the limit is refused at once, without reading and without ``100 Continue``.
"""

from __future__ import annotations

from authz_resource._asgi import Message, Receive, Scope
from authz_resource.errors import ContentTooLarge

__all__ = ["ClientGone", "bounded_body"]


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


async def bounded_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    """A ``receive`` that replays the body, read whole; ``ContentTooLarge`` if it is over
    ``limit`` bytes (declared or received), ``ClientGone`` if the client left."""
    declared = _declared_length(scope)
    if declared is not None and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise ContentTooLarge(limit, detail=f"Content-Length {declared[:30]}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(limit, detail=f"more than {limit} bytes received"
                                  + (f", Content-Length {declared}" if declared is not None else " (chunked)"))
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return _replay(b"".join(chunks), receive)


def _declared_length(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # Leading zeros off: int() refuses more than 4300 digits (a ValueError, a 500).
            # A malformed value is the HTTP server's to refuse; the reading enforces the limit
            # regardless. (bytes.isdigit() is ASCII-only.)
            digits = value.strip().lstrip(b"0") or b"0"
            return digits.decode("ascii") if digits.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: http.disconnect, when the client goes

    return replay
