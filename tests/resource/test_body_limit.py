"""``max_body_bytes``: a body over the limit is 413 before the application runs, whether it
is declared (Content-Length) or arrives in chunks, and no more than the limit is held."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authz_resource import BearerTokenMiddleware
from tests.resource.conftest import RecordingLog
from tests.resource.fake_as import FakeAuthorizationServer
from tests.resource.inprocess import Harness, chain_of, harness, thumbprint
from tests.support.pki import Issued, TestCA

LIMIT = 1000


@pytest.fixture(scope="module")
def alice() -> Issued:
    return TestCA().issue("CN=alice,O=t")


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "auth": "auth" in request.scope})


def echo_routes() -> list[Route]:
    return [Route("/echo", echo, methods=["POST"]), Route("/open", echo, methods=["POST"])]


@pytest.fixture
def limited(fake: FakeAuthorizationServer, alice: Issued) -> Harness:
    setup = harness(fake, routes=echo_routes, max_body_bytes=LIMIT)
    setup.tls.chain = chain_of(alice)
    return setup


class Conversation:
    """Drives one request through ASGI: the body messages the client sends, what the
    middleware read of them, what it answered."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.pending = list(messages)
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.pending:
            return {"type": "http.disconnect"}
        message = self.pending.pop(0)
        self.read += len(message.get("body", b""))
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return self.sent[0]["status"] if self.sent else None

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def post(h: Harness, messages: list[dict[str, Any]], *, token: str | None, path: str = "/echo",
               headers: list[tuple[bytes, bytes]] = ()) -> Conversation:  # type: ignore[assignment]
    conversation = Conversation(messages)
    sent_headers = [*headers]
    if token is not None:
        sent_headers.append((b"authorization", b"Bearer " + token.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": sent_headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 443)}
    await h.tls(scope, conversation.receive, conversation.send)
    return conversation


def chunks(sizes: list[int]) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": b"x" * size, "more_body": i < len(sizes) - 1}
            for i, size in enumerate(sizes)]


def token_for(h: Harness, alice: Issued) -> str:
    return h.fake.token(thumbprint(alice))


async def test_a_body_up_to_the_limit_reaches_the_application_whole(limited: Harness, alice: Issued) -> None:
    for sizes in ([LIMIT], [0], [300, 300, 400], [0, LIMIT, 0]):
        done = await post(limited, chunks(sizes), token=token_for(limited, alice))
        assert (done.status, done.body) == (200, {"length": sum(sizes), "auth": True}), sizes


async def test_a_declared_length_over_the_limit_is_refused_unread(limited: Harness, alice: Issued,
                                                                  refusal_log: RecordingLog) -> None:
    done = await post(limited, chunks([LIMIT + 1]), token=token_for(limited, alice),
                      headers=[(b"content-length", str(LIMIT + 1).encode())])
    assert done.status == 413 and done.read == 0  # not a byte read (and no 100 Continue)
    assert done.body == {"error": "invalid_request", "error_description": f"the request body exceeds {LIMIT} bytes"}
    assert done.headers[b"connection"] == b"close" and done.headers[b"cache-control"] == b"no-store"
    assert b"www-authenticate" not in done.headers  # the token was fine: no Bearer challenge
    [line] = refusal_log.refusals(event="request_refused")
    assert (line["status"], line["reason"], line["error"], line["detail"]) == (
        413, "body_too_large", "invalid_request", f"Content-Length {LIMIT + 1}")
    assert line["client_id"] == "alice" and line["path"] == "/echo"


@pytest.mark.parametrize("declared", [b"1" + b"0" * 5000, b"0" * 5000 + b"1001", b"99999999999999999999"])
async def test_huge_declared_lengths(limited: Harness, alice: Issued, declared: bytes) -> None:
    done = await post(limited, chunks([10]), token=token_for(limited, alice), headers=[(b"content-length", declared)])
    assert done.status == 413 and done.read == 0


async def test_leading_zeros_do_not_hide_a_small_length(limited: Harness, alice: Issued) -> None:
    done = await post(limited, chunks([10]), token=token_for(limited, alice),
                      headers=[(b"content-length", b"0" * 5000 + b"10")])
    assert done.status == 200


async def test_a_chunked_body_is_cut_at_the_limit(limited: Harness, alice: Issued, refusal_log: RecordingLog) -> None:
    messages = chunks([400] * 1000)  # 400 kB if it were read to the end
    done = await post(limited, messages, token=token_for(limited, alice))
    assert done.status == 413
    assert done.read == 1200  # the chunk that crossed the limit, and nothing after it
    [line] = refusal_log.refusals(event="request_refused")
    assert line["detail"] == f"more than {LIMIT} bytes received (chunked)"


async def test_a_length_that_understates_the_body(limited: Harness, alice: Issued,
                                                  refusal_log: RecordingLog) -> None:
    """The HTTP server ends a body at its Content-Length; should a server pass more, what
    arrives counts."""
    done = await post(limited, chunks([600, 600]), token=token_for(limited, alice),
                      headers=[(b"content-length", b"10")])
    assert done.status == 413
    [line] = refusal_log.refusals(event="request_refused")
    assert line["detail"] == f"more than {LIMIT} bytes received, Content-Length 10"


async def test_the_token_is_checked_before_the_body_is_read(limited: Harness, refusal_log: RecordingLog) -> None:
    done = await post(limited, chunks([LIMIT * 10]), token=None)
    assert done.status == 401 and done.read == 0
    assert [line["reason"] for line in refusal_log.refusals()] == ["no_authorization"]


async def test_exempt_paths_are_limited_too(limited: Harness) -> None:
    assert (await post(limited, chunks([LIMIT]), token=None, path="/open")).body == {"length": LIMIT, "auth": False}
    assert (await post(limited, chunks([LIMIT + 1]), token=None, path="/open")).status == 413


async def test_a_client_that_leaves_mid_body_gets_no_answer(limited: Harness, alice: Issued) -> None:
    messages = [{"type": "http.request", "body": b"x" * 100, "more_body": True}, {"type": "http.disconnect"}]
    done = await post(limited, messages, token=token_for(limited, alice))
    assert done.sent == []  # the application did not run, and there is no one to answer


async def test_after_the_body_the_application_still_sees_the_disconnect(fake: FakeAuthorizationServer,
                                                                        alice: Issued) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = BearerTokenMiddleware(app, harness(fake).validator, realm="test", max_body_bytes=LIMIT,
                                       exempt_paths={"/open"})
    conversation = Conversation(chunks([5, 5]))
    await middleware({"type": "http", "path": "/open", "headers": [], "query_string": b""}, conversation.receive,
                     conversation.send)
    assert seen == [{"type": "http.request", "body": b"x" * 10, "more_body": False}, {"type": "http.disconnect"}]


async def test_without_a_limit_the_body_streams_through(fake: FakeAuthorizationServer, alice: Issued) -> None:
    setup = harness(fake, routes=echo_routes)
    setup.tls.chain = chain_of(alice)
    done = await post(setup, chunks([LIMIT] * 50), token=token_for(setup, alice))
    assert done.body == {"length": LIMIT * 50, "auth": True}


@pytest.mark.parametrize("value", [-1, True])
def test_the_limit_is_validated(fake: FakeAuthorizationServer, value: Any) -> None:
    with pytest.raises(ValueError, match="max_body_bytes must be a number of bytes"):
        harness(fake, max_body_bytes=value)
