"""Each response leaves in one write; nothing written before close is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from authz.tls.write_coalescing import WriteCoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


async def test_writes_of_one_loop_turn_leave_as_one() -> None:
    real = RecordingTransport()
    transport = WriteCoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_was_written_first() -> None:
    real = RecordingTransport()
    transport = WriteCoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.close()
    assert real.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert real.closed
    await asyncio.sleep(0)  # the scheduled flush was cancelled: no second write
    assert len(real.writes) == 1


async def test_nothing_is_written_to_a_closing_transport_and_the_rest_passes_through() -> None:
    real = RecordingTransport()
    transport = WriteCoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"late")
    real.closed = True  # the peer went away before the loop turn ended
    await asyncio.sleep(0)
    assert real.writes == []
    assert transport.get_extra_info("peername") == "info:peername"
