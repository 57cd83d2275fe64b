"""One raw ASGI exchange and checks of its answer, shared by the end-to-end fuzz modules.

Raw ASGI rather than an HTTP client: header bytes a client library would refuse to send (NUL,
8-bit, a lone CR, repeated framing headers) reach the application as a server may pass them."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

__all__ = ["QUERIES", "Answer", "check_error_answer", "exchange", "require_seen"]

# Query strings as the HTTP layer passes them: llhttp refuses a request target with any byte
# outside 0x21-0x7E ("Invalid char in url query"), so nothing else reaches an application.
# (Starlette's request.url decodes the query as UTF-8 and raises on anything else.)
QUERIES = st.sampled_from([b"", b"", b"access_token=x", b"a=1&access_token", b"grant_type=client_credentials",
                           b"%ff", b"%61ccess_token=x", b"a=%zz&&=", b"?"]) \
    | st.binary(max_size=30).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E and c != 0x23))

# RFC 6749 §5.2 (and RFC 6750 §3): error and error_description are limited to these.
_OAUTH_CHARS = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    chunks_read: int

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(app: Any, *, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes],
                   query: bytes = b"", tls: dict[str, Any] | None = None) -> Answer:
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
        "path": path, "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": query, "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 443),
    }
    if tls is not None:
        scope["extensions"] = {"tls": tls}
    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start", sent
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(start["status"], dict(start.get("headers", [])), body, read)


def check_error_answer(answer: Answer, *, error_required: bool = True, oauth: bool = True,
                       rfc6749_description: bool = True) -> dict[str, Any]:
    """A 4xx answer: JSON with an ``error`` code (``error_required``: RFC 6750 §3.1 leaves it out
    when no token was sent). ``oauth``: an answer of the OAuth layer, so also an
    ``error_description`` and no cache may keep it; a sample API route's own 404 or 422 only
    promises the JSON ``error``. ``rfc6749_description``: the description is limited to RFC 6749
    §5.2's characters (the authorization server's answers; a resource server's JSON body is
    not, only its challenge header is, RFC 6750 §3)."""
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    document = answer.json()
    assert isinstance(document, dict), document
    error = document.get("error")
    if error_required:
        assert isinstance(error, str) and error and _OAUTH_CHARS.fullmatch(error), document
    if oauth:
        description = document.get("error_description")
        assert isinstance(description, str) and description, document
        assert not rfc6749_description or _OAUTH_CHARS.fullmatch(description), document
        assert answer.headers.get(b"cache-control") == b"no-store", answer.headers
    return document


def require_seen(seen: Counter[str], kinds: tuple[str, ...]) -> None:
    """The examples reached each of ``kinds`` (answer kinds, by prefix): the properties were not
    checked only on early refusals. Prints what was seen (``pytest -s`` shows it)."""
    print("\n".join(f"{count:6} {kind}" for kind, count in seen.most_common()))
    for kind in kinds:
        assert any(k.startswith(kind) for k in seen), (kind, seen)
