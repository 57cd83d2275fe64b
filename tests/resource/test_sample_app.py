"""The sample API in-process: what a client with the right token can send it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from authz_resource.sample.app import MAX_BODY_BYTES, create_app
from tests.resource.fake_as import FakeAuthorizationServer
from tests.resource.inprocess import TLSLayer, chain_of, jwt_validator, thumbprint
from tests.support.pki import Issued, TestCA


@pytest.fixture(scope="module")
def alice() -> Issued:
    return TestCA().issue("CN=alice,O=t")


@pytest.fixture
async def client(alice: Issued) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    fake = FakeAuthorizationServer()
    tls = TLSLayer(create_app(jwt_validator(fake)))
    tls.chain = chain_of(alice)
    token = fake.token(thumbprint(alice), scope="accounts:read accounts:write")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tls), base_url="https://api.test",
                                 headers={"authorization": f"Bearer {token}"}) as http:
        yield http, token


@pytest.mark.parametrize("body", [
    {"owner": "Ada", "currency": ["EUR"]},
    {"owner": "Ada", "currency": {"EUR": 1}},
    {"owner": "Ada", "currency": None},
    {"owner": ["Ada"]},
    {"owner": ""},
    {"owner": "x" * 201},
    ["owner"],
    "owner",
    None,
], ids=["currency-list", "currency-object", "currency-null", "owner-list", "owner-empty", "owner-long",
        "body-list", "body-string", "body-null"])
async def test_bad_account_bodies_are_422(client: tuple[httpx.AsyncClient, str], body: Any) -> None:
    http, _ = client
    response = await http.post("/accounts", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_account"


@pytest.mark.parametrize("content", [b"not json", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b""],
                         ids=["not-json", "not-utf8", "deep-nesting", "empty"])
async def test_unreadable_bodies_are_422(client: tuple[httpx.AsyncClient, str], content: bytes) -> None:
    http, _ = client
    response = await http.post("/accounts", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


async def test_oversized_body_is_413_and_not_read_to_the_end(client: tuple[httpx.AsyncClient, str]) -> None:
    """The limit is the middleware's now (it used to be the endpoint's, with error
    "body_too_large"): the answer is the invalid_request JSON the AS's own 413 has."""
    http, _ = client
    sent: list[int] = []

    async def chunks() -> Any:
        for _ in range(1000):  # 64 MiB if it were read to the end
            sent.append(1)
            yield b" " * 65536

    response = await http.post("/accounts", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "invalid_request", "error_description": "the request body exceeds 16384 bytes"}
    assert response.headers["connection"] == "close"
    assert len(sent) < 1000


async def test_a_body_of_exactly_the_limit_reaches_the_endpoint(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    body = b'{"owner": "Ada", "currency": "EUR"}'
    response = await http.post("/accounts", content=body + b" " * (MAX_BODY_BYTES - len(body)))
    assert response.status_code == 201, response.text
    response = await http.post("/accounts", content=body + b" " * (MAX_BODY_BYTES + 1 - len(body)))
    assert response.status_code == 413


async def test_create_then_read(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    created = await http.post("/accounts", json={"owner": "Grace", "currency": "USD"})
    assert created.status_code == 201
    fetched = await http.get(f"/accounts/{created.json()['id']}")
    assert fetched.json()["owner"] == "Grace"
    assert (await http.get("/accounts/nope")).status_code == 404
