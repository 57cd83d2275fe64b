"""The connection limit fits the file descriptors the process may open."""

from __future__ import annotations

import pytest

from authz.tls import listener
from authz.tls.listener import ConnectionLimits


def test_the_soft_descriptor_limit_is_raised_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(listener.resource, "getrlimit", lambda _: (256, 100_000))
    monkeypatch.setattr(listener.resource, "setrlimit", lambda _, limits: set_to.append(limits))
    assert ConnectionLimits(max_connections=1000).within_descriptor_limit().max_connections == 1000
    assert set_to == [(1064, 100_000)]


def test_the_limit_is_lowered_when_the_hard_limit_is_too_low(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener.resource, "getrlimit", lambda _: (256, 512))
    monkeypatch.setattr(listener.resource, "setrlimit", lambda _, limits: None)
    assert ConnectionLimits(max_connections=1000).within_descriptor_limit().max_connections == 512 - 64


def test_limits_travel_to_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = ConnectionLimits(handshake_timeout=2.5, max_connections=77)
    for name, value in limits.environment().items():
        monkeypatch.setenv(name, value)
    assert ConnectionLimits.from_environment() == limits
