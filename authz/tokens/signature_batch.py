"""Sign the access tokens of one event-loop turn back to back.

An ECDSA P-256 signature costs about 20 µs when the one before it has just run, and 40-50
µs when about 150 µs of other request handling ran in between (measured on this project's
2-core benchmark box): OpenSSL's fixed-base tables and code are no longer in the CPU caches.
Under load, the requests that arrive in one turn of the event loop reach the token endpoint
one after the other; each one queues its signing input here, and one callback in the next
turn signs them all in a row. With one request in flight, that costs a future and one
extra event-loop turn.

A batch serves the event loop of one server process (each worker has its own context): it
is not shared between threads or event loops.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = ["SignatureBatch", "TwoStepSigner"]


class TwoStepSigner(Protocol):
    """What ``authz.tokens.compact_signer.ES256CompactSigner`` offers: the signing input now,
    the signature later."""

    def signing_input(self, claims: dict[str, Any]) -> bytes: ...

    def sign_input(self, signing_input: bytes) -> str: ...


class SignatureBatch:
    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: list[tuple[TwoStepSigner, bytes, asyncio.Future[str]]] = []

    def sign(self, signer: TwoStepSigner, claims: dict[str, Any]) -> asyncio.Future[str]:
        """The compact JWS of ``claims``, signed in the next turn of the running event loop."""
        loop = asyncio.get_running_loop()
        signing_input = signer.signing_input(claims)  # claims it cannot encode fail here, queuing nothing
        signed: asyncio.Future[str] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._sign_queued)
        self._queue.append((signer, signing_input, signed))
        return signed

    def _sign_queued(self) -> None:
        queue, self._queue = self._queue, []
        for signer, signing_input, signed in queue:
            if signed.cancelled():  # the request's task was cancelled (client gone)
                continue
            try:
                signed.set_result(signer.sign_input(signing_input))
            except Exception as exc:  # reaches the awaiting endpoint, which answers a JSON 500
                signed.set_exception(exc)
