"""An OAuth JSON answer (RFC 6749 §5.1, §5.2), sent straight over ASGI.

The endpoints a client calls with its certificate answer with a ``JSONReply`` rather than a
Starlette ``Response``: authlib hands over status, body and headers, and nothing between
them and the two ASGI messages needs a framework object (see ``authz.endpoints.client``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

__all__ = ["JSONReply", "TokenReply"]

_CONTENT_TYPE = b"content-type"
_JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class JSONReply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, status: int, document: Any, headers: Iterable[tuple[str, str]] = ()) -> JSONReply:
        """``document`` as compact JSON; a ``str`` is taken as already-encoded JSON."""
        body = document.encode() if isinstance(document, str) else orjson.dumps(document)
        raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        if not any(name == _CONTENT_TYPE for name, _ in raw):
            raw.append((_CONTENT_TYPE, _JSON))
        raw.append((b"content-length", str(len(body)).encode("ascii")))
        return cls(status, body, raw)

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


@dataclass(frozen=True, slots=True)
class TokenReply:
    """A token response (RFC 6749 §5.1) whose access token is still being signed
    (``authz.tokens.signature_batch``): the token endpoint awaits ``signed``."""

    status: int
    document: dict[str, Any]
    headers: list[tuple[str, str]]

    @classmethod
    def pending(cls, status: int, document: Any, headers: list[tuple[str, str]]) -> TokenReply | None:
        if isinstance(document, dict) and isinstance(document.get("access_token"), asyncio.Future):
            return cls(status, document, headers)
        return None

    async def signed(self) -> JSONReply:
        document = dict(self.document, access_token=await self.document["access_token"])
        return JSONReply.of(self.status, document, self.headers)
