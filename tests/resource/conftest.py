"""Fixtures shared by the resource-server tests: in-process (fake authorization server) and
over the wire (real ``authz serve`` and ``authz sample-api`` processes, see wire.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.resource.fake_as import FakeAuthorizationServer
from tests.resource.inprocess import Harness, chain_of, harness
from tests.resource.wire import Deployment, deploy
from tests.support.pki import Issued


class RecordingLog:
    """Stands in for a module's structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return record

    def __getattr__(self, level: str) -> Any:
        return self._record(level)

    def refusals(self, event: str = "bearer_token_refused") -> list[dict[str, Any]]:
        return [fields for _, logged, fields in self.lines if logged == event]


@pytest.fixture
def refusal_log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr("authz_resource.middleware.log", recorder)
    return recorder


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A real authorization server and two sample APIs (JWT mode, introspection mode)."""
    directory: Path = tmp_path_factory.mktemp("deployment")
    with deploy(directory) as running:
        yield running


# In-process harness: a fake AS and the middleware in front of a test app, with the
# connection presenting ``alice`` (each test module defines its own ``alice``).
@pytest.fixture
def fake() -> FakeAuthorizationServer:
    return FakeAuthorizationServer()


@pytest.fixture
async def h(fake: FakeAuthorizationServer, alice: Issued) -> AsyncIterator[Harness]:
    setup = harness(fake)
    setup.tls.chain = chain_of(alice)
    async with setup.client:
        yield setup
    await setup.validator.aclose()
